"""``make bench`` at toy sizes: every phase runs and bench-results.json has every figure."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import REQUIRED
from tests.services import REPO, Postgres

pytestmark = pytest.mark.slow


def test_bench_smoke(tmp_path: Path, postgres: Postgres) -> None:
    # the session's PostgreSQL (found, started or embedded): the bench creates and drops its own database in it
    env = {**os.environ, "DATABASE_URL": postgres.admin_dsn}
    out = tmp_path / "bench-results.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "bench", "--out", str(out),
            "--devices", "20", "--readings", "10", "--gateways", "1,2", "--paced-seconds", "1",
            "--no-profile", "--log-devices", "20", "--log-readings", "60", "--proof-requests", "30",
            "--portfolio-assets", "20", "--verifier-readings", "300", "--agent-seconds", "4",
            "--starvation-flood", "300", "--starvation-seconds", "3",
        ],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    results = json.loads(out.read_text())
    for key in REQUIRED:
        value = results[key]
        assert isinstance(value, (int, float)), f"{key} is {value!r}"
        assert not isinstance(value, bool), f"{key} is {value!r}"
        assert math.isfinite(value), f"{key} is {value}"
    assert results["lost"] == 0
    assert results["duplicated"] == 0
    assert results["sent"] == results["logged"] > 0
    assert results["log_entries_at_proof_test"] >= 20 * 60
    assert results["portfolio_assets"] == 20
    assert results["portfolio"]["backed"] is True
    assert results["verifier_full_bundle"]["backed"] is True
    assert all(run["root_recomputed_ok"] for run in results["ingest_runs"])
    assert "measured" in done.stdout  # the table
