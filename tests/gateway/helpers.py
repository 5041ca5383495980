"""Shared pieces of the gateway tests."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from attest_core.entries import RevokerRole
from attest_core.note import NoteSigner
from attest_core.notekey import encode_private_key
from gateway.config import Settings
from gateway.devices import enrol
from tests.support import LOG_KEY_SEED, LOG_ORIGIN, TestDevice, seeded_signer

T = TypeVar("T")


def settings_for(database: str, tmp_path: Path, **changes: Any) -> Settings:
    """Settings of a test gateway; unless told otherwise, its log key is tests.support.LOG_KEY,
    the key TestDevice's enrolment statements name (v2: by its hash)."""
    values: dict[str, Any] = {
        "database_url": database,
        "origin": LOG_ORIGIN,
        "key_file": str(tmp_path / "log.key"),
        "checkpoint_interval": 0.2,
        "gap_timeout": 1.0,
    }
    values.update(changes)
    key_file = Path(values["key_file"])
    if (
        "key_file" not in changes
        and values["origin"] == LOG_ORIGIN
        and key_file.parent.is_dir()  # not for settings that never start a gateway
        and not key_file.exists()
    ):
        key_file.write_text(encode_private_key(LOG_ORIGIN, LOG_KEY_SEED) + "\n")
        key_file.chmod(0o600)
    return Settings(**values)


def log_signer() -> NoteSigner:
    return NoteSigner("test.example/log", seeded_signer("gateway log key"))


def run(dsn: str, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async def go() -> T:
        conn = await asyncpg.connect(dsn)
        try:
            return await fn(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


async def enrol_device(conn: asyncpg.Connection, device: TestDevice) -> None:
    await enrol(conn, device.statement_bytes, device.pop, "installer-1", role=RevokerRole.INSTALLER)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
