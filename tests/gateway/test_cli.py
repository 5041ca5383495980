"""python -m gateway: keygen, key, migrate, and clear errors."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from attest_core.note import NoteSigner, VerifierKey
from tests.services import REPO


def gateway(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_keygen_creates_a_private_key_once(tmp_path: Path) -> None:
    key_file = tmp_path / "log.key"
    first = gateway("keygen", "--key-file", str(key_file), "--origin", "log.example.org/prod")
    assert first.returncode == 0, first.stderr
    verifier = VerifierKey.parse(first.stdout.strip())
    assert verifier.name == "log.example.org/prod"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert NoteSigner.from_private_key(key_file.read_text().strip()).verifier_key() == verifier
    again = gateway("keygen", "--key-file", str(key_file), "--origin", "log.example.org/prod")
    assert again.returncode == 2
    assert "never overwritten" in again.stderr
    assert key_file.read_text().strip()  # untouched


def test_key_prints_the_verifier_key_and_refuses_an_open_key_file(tmp_path: Path, database: str) -> None:
    key_file = tmp_path / "log.key"
    made = gateway("keygen", "--key-file", str(key_file), "--origin", "o.example/log")
    env = {"DATABASE_URL": database, "GATEWAY_KEY_FILE": str(key_file)}
    shown = gateway("key", env=env)
    assert shown.returncode == 0
    assert shown.stdout == made.stdout
    key_file.chmod(0o644)
    refused = gateway("key", env=env)
    assert refused.returncode == 2
    assert "readable by others" in refused.stderr


def test_migrate(database: str) -> None:
    first = gateway("migrate", env={"DATABASE_URL": database})
    assert first.returncode == 0, first.stderr
    assert "001_initial.sql" in first.stdout
    second = gateway("migrate", env={"DATABASE_URL": database})
    assert "up to date" in second.stdout


def test_configuration_errors_are_clear(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "", "PATH": os.environ["PATH"]}
    no_db = subprocess.run([sys.executable, "-m", "gateway", "migrate"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert no_db.returncode == 2
    assert "no database" in no_db.stderr
    bad = tmp_path / "gw.toml"
    bad.write_text("[gateway]\ncheckpoint_interval = 'soon'\n")
    result = gateway("--config", str(bad), "migrate", env={"DATABASE_URL": "postgresql://x/y"})
    assert result.returncode == 2
    assert "checkpoint_interval must be a float" in result.stderr
    unknown = tmp_path / "gw2.toml"
    unknown.write_text("[gateway]\ncheckpoint_intervall = 1\n")
    result = gateway("--config", str(unknown), "migrate", env={"DATABASE_URL": "postgresql://x/y"})
    assert "unknown settings: checkpoint_intervall" in result.stderr
    bad_mqtt = gateway("migrate", env={"DATABASE_URL": "postgresql://x/y", "MQTT_URL": "http://broker"})
    assert "mqtt://" in bad_mqtt.stderr
