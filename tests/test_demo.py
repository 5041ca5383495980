"""The demo path end to end (make demo, scaled down): embedded defaults and the machine's services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from attest_core.checkpoint import open_checkpoint
from attest_core.note import VerifierKey
from tests.services import REPO, Broker, Postgres

pytestmark = pytest.mark.slow


def run_demo(out: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stack", "demo", "--devices", "4", "--seconds", "10", "--interval", "3600",
         "--certified-sessions", "1", "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def check_outputs(out: Path, result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in ("log-key.txt", "checkpoint.txt", "bundle.json", "report.json"):
        assert (out / name).is_file(), name
    key = VerifierKey.parse((out / "log-key.txt").read_text().strip())
    open_checkpoint((out / "checkpoint.txt").read_text(), key)
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "backed"
    assert report["exit_code"] == 0
    assert len(report["assets"]) == 4
    assert "honest      claim: verifier exit 0 (expected 0) as expected" in result.stdout
    assert "overstated  claim: verifier exit 1 (expected 1) as expected" in result.stdout
    assert "tampered    claim: verifier exit 2 (expected 2) as expected" in result.stdout
    assert "double      claim: refused, HTTP 409 (expected 409) as expected" in result.stdout
    assert "certified   claim: verifier exit 0 (expected 0) as expected" in result.stdout


def test_demo_on_embedded_defaults(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MQTT_URL")}
    result = run_demo(tmp_path / "out", env)
    check_outputs(tmp_path / "out", result)
    assert "embedded server (pgserver)" in result.stdout
    assert "embedded broker (amqtt" in result.stdout


def test_demo_on_the_machines_services(tmp_path: Path, postgres: Postgres, broker: Broker) -> None:
    env = {**os.environ, "DATABASE_URL": postgres.admin_dsn, "MQTT_URL": broker.url}
    result = run_demo(tmp_path / "out", env)
    check_outputs(tmp_path / "out", result)
    assert "PostgreSQL: DATABASE_URL" in result.stdout
    assert "MQTT: MQTT_URL" in result.stdout
