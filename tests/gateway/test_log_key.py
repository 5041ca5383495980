"""The log key is bound to its log: never a new key for a log that has one, never another log's key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from attest_core.note import NoteSigner
from gateway import logkey
from gateway.errors import KeyFileError
from gateway.migrations import migrate
from gateway.sequencer import Sequencer
from tests.gateway.helpers import enrol_device, run, settings_for
from tests.services import REPO
from tests.support import TestDevice

ORIGIN = "test.example/log"


async def first_checkpoint(conn: asyncpg.Connection, key_file: Path, tmp_path: Path) -> NoteSigner:
    """A log with one entry and one checkpoint, signed by the key in ``key_file`` (created)."""
    await migrate(conn)
    signer, created = await logkey.bind(conn, key_file, ORIGIN)
    assert created
    sequencer = Sequencer(settings_for("unused", tmp_path), signer)
    await sequencer.load(conn)
    await enrol_device(conn, TestDevice("dev-1", "asset-1"))
    await sequencer.step(conn)
    await sequencer.checkpoint(conn)
    return signer


def test_the_key_is_created_for_an_empty_log_and_recorded_with_the_first_checkpoint(
    database: str, tmp_path: Path
) -> None:
    async def go(conn: asyncpg.Connection) -> None:
        signer = await first_checkpoint(conn, tmp_path / "a.key", tmp_path)
        assert await conn.fetchval("SELECT log_key FROM log_state") == signer.verifier_key().to_string()
        again, created = await logkey.bind(conn, tmp_path / "a.key", ORIGIN)
        assert not created
        assert again.verifier_key() == signer.verifier_key()

    run(database, go)


def test_another_key_is_refused_naming_the_logs_key(database: str, tmp_path: Path) -> None:
    async def go(conn: asyncpg.Connection) -> None:
        signer = await first_checkpoint(conn, tmp_path / "a.key", tmp_path)
        logkey.generate_key_file(tmp_path / "b.key", ORIGIN)
        with pytest.raises(KeyFileError) as info:
            await logkey.bind(conn, tmp_path / "b.key", ORIGIN)
        assert info.value.code == "wrong_log_key"
        assert signer.verifier_key().to_string() in info.value.message

    run(database, go)


def test_a_missing_key_file_is_never_replaced_by_a_new_key(database: str, tmp_path: Path) -> None:
    async def go(conn: asyncpg.Connection) -> None:
        signer = await first_checkpoint(conn, tmp_path / "a.key", tmp_path)
        with pytest.raises(KeyFileError) as info:
            await logkey.bind(conn, tmp_path / "gone.key", ORIGIN)
        assert info.value.code == "missing_log_key"
        assert signer.verifier_key().to_string() in info.value.message
        assert not (tmp_path / "gone.key").exists()

    run(database, go)


def test_a_log_with_entries_but_no_checkpoint_yet_needs_its_key_too(database: str, tmp_path: Path) -> None:
    async def go(conn: asyncpg.Connection) -> None:
        await migrate(conn)
        signer, _ = await logkey.bind(conn, tmp_path / "a.key", ORIGIN)
        sequencer = Sequencer(settings_for("unused", tmp_path), signer)
        await sequencer.load(conn)
        await enrol_device(conn, TestDevice("dev-1", "asset-1"))
        await sequencer.step(conn)  # logged; the process dies before its first checkpoint
        with pytest.raises(KeyFileError) as info:
            await logkey.bind(conn, tmp_path / "gone.key", ORIGIN)
        assert "has 1 entries" in info.value.message
        # and a second sequencer with another key never signs this log
        logkey.generate_key_file(tmp_path / "b.key", ORIGIN)
        other = Sequencer(settings_for("unused", tmp_path), logkey.load_key_file(tmp_path / "b.key"))
        await other.load(conn)
        await sequencer.checkpoint(conn)
        with pytest.raises(KeyFileError):
            await other.checkpoint(conn)
        assert await conn.fetchval("SELECT count(*) FROM checkpoints") == 1
        with pytest.raises(KeyFileError):  # nor does it become the sequencer later
            await Sequencer(settings_for("unused", tmp_path), other.signer).load(conn)

    run(database, go)


def test_a_log_from_before_keys_were_recorded_is_bound_by_its_checkpoints(
    database: str, tmp_path: Path
) -> None:
    async def go(conn: asyncpg.Connection) -> None:
        signer = await first_checkpoint(conn, tmp_path / "a.key", tmp_path)
        await conn.execute("UPDATE log_state SET log_key = NULL")
        logkey.generate_key_file(tmp_path / "b.key", ORIGIN)
        with pytest.raises(KeyFileError) as info:
            await logkey.bind(conn, tmp_path / "b.key", ORIGIN)
        key = signer.verifier_key()
        assert f"{key.name}+{key.key_id.hex()}" in info.value.message
        await logkey.bind(conn, tmp_path / "a.key", ORIGIN)
        assert await conn.fetchval("SELECT log_key FROM log_state") == key.to_string()

    run(database, go)


def test_the_gateway_refuses_to_start_with_another_logs_key(database: str, tmp_path: Path) -> None:
    async def go(conn: asyncpg.Connection) -> NoteSigner:
        return await first_checkpoint(conn, tmp_path / "a.key", tmp_path)

    signer = run(database, go)
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "--log-format", "text", "run"],
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": database, "GATEWAY_ORIGIN": ORIGIN,
             "GATEWAY_KEY_FILE": str(tmp_path / "missing.key")},
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "there is no log key file" in done.stderr
    assert signer.verifier_key().to_string() in done.stderr
    assert not (tmp_path / "missing.key").exists()
