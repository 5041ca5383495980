"""``python -m verifier bundle --jobs N``: signatures checked in worker processes, same report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import attest_core.bundle.verify as bundle_module
from attest_core.verdict import EvidenceKind
from tests.support import T0, MemoryLog, TestDevice, flat_claim
from tests.verifier.conftest import Cli, Files, run_process
from tests.verifier.test_bundle_jobs import _forged_log


def _comparable(report: str) -> dict[str, Any]:
    """The JSON report without what depends on the clock."""
    doc: dict[str, Any] = json.loads(report)
    doc.pop("generated_at")
    for key in ("seconds", "readings_per_second"):
        doc.get("stats", {}).pop(key, None)
    return doc


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 5 signatures, so that even the small test bundles go to worker processes."""
    monkeypatch.setattr(bundle_module, "SIGNATURE_BATCH", 5)


@pytest.mark.usefixtures("small_batches")
def test_jobs_give_the_same_report_on_a_good_bundle(cli: Cli, files: Files) -> None:
    serial = cli("bundle", files.full, "--log-key", files.log_key, "--json")
    assert serial.code == 0
    for jobs in ("2", "0"):
        parallel = cli("bundle", files.full, "--log-key", files.log_key, "--json", "--jobs", jobs)
        assert parallel.code == 0, parallel.err
        assert _comparable(parallel.out) == _comparable(serial.out)
    assert json.loads(serial.out)["stats"]["readings_verified"] == 78


@pytest.mark.usefixtures("small_batches")
def test_jobs_give_the_same_report_on_a_bad_signature(cli: Cli, tmp_path: Path) -> None:
    log, data = _forged_log(23)
    bundle, key = tmp_path / "forged.json", tmp_path / "log-key.txt"
    bundle.write_bytes(data)
    key.write_text(log.key.to_string() + "\n")
    serial = cli("bundle", bundle, "--log-key", key, "--json")
    parallel = cli("bundle", bundle, "--log-key", key, "--json", "--jobs", "2")
    assert serial.code == parallel.code == 2
    doc = _comparable(parallel.out)
    assert doc == _comparable(serial.out)
    assert doc["verdict"] == "invalid"
    assert doc["error"]["code"] == "bad_signature"
    assert doc["error"]["message"].startswith("log entry 25: ")


@pytest.mark.parametrize(("value", "message"), [("-1", "negative"), ("two", "not a whole number"), ("", "")])
def test_bad_jobs_are_usage_errors(cli: Cli, files: Files, value: str, message: str) -> None:
    r = cli("bundle", files.full, "--log-key", files.log_key, "--jobs", value)
    assert r.code == 3
    assert message in r.err
    assert r.out == ""


def test_jobs_in_a_real_process(tmp_path: Path) -> None:
    """More readings than one batch, so the real pool of `python -m verifier` is used."""
    assert bundle_module.SIGNATURE_BATCH < 2_100
    log = MemoryLog()
    devices = [TestDevice(f"dev-{n}", f"charger-{n}") for n in range(3)]
    indices = [log.enrol(d) for d in devices]
    for k in range(700):
        for d in devices:
            indices.append(log.append_reading(d.reading(T0 + k * 30_000, k * 80_000)))
    claim_index = log.file_claim(flat_claim(tuple(d.asset_id for d in devices)))
    bundle, key = tmp_path / "bundle.json", tmp_path / "log-key.txt"
    bundle.write_bytes(log.bundle_bytes(claim_index, indices, EvidenceKind.BOUNDARY))
    key.write_text(log.key.to_string() + "\n")
    serial = run_process("bundle", bundle, "--log-key", key, "--json")
    parallel = run_process("bundle", bundle, "--log-key", key, "--json", "--jobs", "2")
    assert serial.code == parallel.code == 0, parallel.err
    assert parallel.err == ""
    assert _comparable(parallel.out) == _comparable(serial.out)
    assert json.loads(parallel.out)["stats"]["readings_verified"] == 2_100
