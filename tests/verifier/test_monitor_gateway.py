"""The verifier's command line against the REAL gateway (``GatewayThread`` on PostgreSQL):
``monitor`` follows its log while readings flow, ``bundle`` checks bundles it serves.

(tests/gateway/test_api_claims.py checks the gateway's bundles with the core's ``verify_bundle``;
here the same kind of bundle goes through ``python -m verifier bundle``, as an auditor runs it.)
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from attest_core.checkpoint import open_checkpoint
from attest_core.note import NoteSigner, VerifierKey, parse_note
from tests.gateway.apiworld import Api, api_gateway
from tests.services import Broker, Postgres
from tests.support import T0, TestDevice, seeded_signer
from tests.verifier.conftest import ROOT, Result, run_process

MINUTE = 60_000


@pytest.fixture(scope="module")
def api(postgres: Postgres, broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with api_gateway(postgres, broker, tmp_path_factory.mktemp("gateway")) as api:
        yield api


@pytest.fixture(scope="module")
def log_key(api: Api, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """log-key.txt, taken from the gateway's key file (out of band), not from its API."""
    key: VerifierKey = api.gw.gateway.signer.verifier_key()
    assert key == api.log_key()
    path = tmp_path_factory.mktemp("auditor") / "log-key.txt"
    path.write_text(key.to_string() + "\n")
    return path


class Meter:
    """A device enrolled at the gateway whose readings are fed to the gateway's ingest."""

    def __init__(self, api: Api, asset: str) -> None:
        self.api = api
        self.device = TestDevice(f"dev-{uuid.uuid4().hex[:8]}", asset)
        api.enrol(self.device)
        self.n = 0

    def feed(self, count: int) -> None:
        items = []
        for _ in range(count):
            envelope = self.device.reading(T0 + self.n * 10 * MINUTE, self.n * 1_500_000).encode()
            items.append((self.device, envelope))
            self.n += 1
        assert self.api.ingest(items).accepted == count


def accepted_size(state: Path) -> int:
    return int(parse_note((state / "checkpoint.txt").read_text()).text.split("\n")[1])


def monitor_once(api: Api, key: Path | str, state: Path) -> Result:
    r = run_process("monitor", "--gateway", api.gw.url, "--log-key", key, "--state", state, "--once")
    assert r.out == ""
    assert "Traceback" not in r.err
    return r


def test_monitor_follows_the_real_log_as_readings_flow(api: Api, log_key: Path, tmp_path: Path) -> None:
    meter = Meter(api, "mon-1")
    meter.feed(10)
    first = api.wait_checkpoint()
    state = tmp_path / "monitor-state"

    r = monitor_once(api, log_key, state)
    assert r.code == 0, r.err
    assert "first checkpoint accepted (trust on first use)" in r.err
    size1 = accepted_size(state)
    assert size1 >= first

    meter.feed(25)
    second = api.wait_checkpoint()
    r = monitor_once(api, log_key, state)  # a new process: the state on disk carries over
    assert r.code == 0, r.err
    assert f"consistent growth from size {size1} to {second}: accepted" in r.err
    assert accepted_size(state) == second

    r = monitor_once(api, log_key, state)
    assert (r.code, accepted_size(state)) == (0, second)
    assert f"checkpoint unchanged: size {second}" in r.err

    # the monitor as a service while readings keep coming (new checkpoints every 0.2 s)
    stop = threading.Event()
    failures: list[BaseException] = []

    def flow() -> None:
        try:
            while not stop.is_set():
                meter.feed(3)
                time.sleep(0.05)
        except BaseException as exc:  # reported by the test, not lost in the thread
            failures.append(exc)

    feeder = threading.Thread(target=flow, daemon=True)
    # Ctrl-C must reach the monitor even if this test run was started with SIGINT ignored (a
    # background job): a signal with a handler is reset to its default in the new program.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "verifier", "monitor", "--gateway", api.gw.url, "--log-key", str(log_key),
             "--state", str(state), "--interval", "0.2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, previous)
    feeder.start()
    try:
        deadline = time.monotonic() + 30
        seen = {second}  # the sizes the running monitor accepted, one after the other
        while len(seen) < 4:
            assert proc.poll() is None, proc.communicate()
            assert not failures, failures
            assert time.monotonic() < deadline, f"the monitor accepted only {sorted(seen)}"
            seen.add(accepted_size(state))
            time.sleep(0.05)
    finally:
        stop.set()
        feeder.join(10)
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert not failures, failures
    assert proc.returncode == 130, err
    assert "ALERT" not in err
    assert err.count("consistent growth from size") >= 3, err
    assert out == ""

    # after the flow: the log's latest checkpoint is accepted, and it is the gateway's own
    final = api.wait_checkpoint()
    r = monitor_once(api, log_key, state)
    assert r.code == 0, r.err
    assert accepted_size(state) == final
    note = (state / "checkpoint.txt").read_text()
    assert open_checkpoint(note, api.log_key()).checkpoint.size == final
    assert not (state / "evidence").exists()

    # a key the log does not sign with: a fresh monitor alerts; a used state refuses the key
    impostor = NoteSigner(api.log_key().name, seeded_signer("impostor")).verifier_key().to_string()
    r = monitor_once(api, impostor, tmp_path / "fresh-state")
    assert r.code == 2
    assert "ALERT the log served a checkpoint that does not verify with the log key" in r.err
    assert len(list((tmp_path / "fresh-state" / "evidence").iterdir())) == 1
    r = monitor_once(api, impostor, state)
    assert r.code == 3
    assert "does not verify with this --log-key" in r.err


# --- bundles served by the real gateway, checked by the verifier's command line ----------------------------


def claim_body(asset: str, energy: str, amount: str) -> dict[str, Any]:
    return {
        "title": "October 1st",
        "assets": [asset],
        "period_start": "2026-10-01T00:00:00Z",
        "period_end": "2026-10-02T00:00:00Z",
        "tariff": {"currency": "EUR", "price_per_kwh": "0.29"},
        "claimed_energy_kwh": energy,
        "claimed_amount": amount,
    }


def file_claim(api: Api, body: dict[str, Any], supersedes: int | None = None) -> int:
    path = "/v1/claims" if supersedes is None else f"/v1/claims/{supersedes}/supersede"
    claim_id: int = api.ok(api.post(path, "issuer-1", json=body), 201)["id"]
    return claim_id


def test_bundle_cli_on_bundles_from_the_real_gateway(api: Api, log_key: Path, tmp_path: Path) -> None:
    asset = f"ev-{uuid.uuid4().hex[:6]}"
    meter = Meter(api, asset)
    meter.feed(160)  # every 10 minutes from 2026-10-01 00:00, 1.5 kWh each
    twin = f"ev-{uuid.uuid4().hex[:6]}"  # the same readings: the overstated claim is on it
    Meter(api, twin).feed(160)
    probe = file_claim(api, claim_body(asset, "0", "0"))
    api.wait_checkpoint()
    attested = api.ok(api.get(f"/v1/claims/{probe}"))["verdict"]
    assert attested["backed"] is True
    honest = file_claim(api, claim_body(asset, attested["energy_kwh"], attested["revenue"]), supersedes=probe)
    over = file_claim(
        api, claim_body(twin, attested["energy_kwh"], str(Decimal(attested["revenue"]) + Decimal("0.01")))
    )
    api.wait_checkpoint()

    def fetch(claim_id: int, mode: str) -> Path:
        r = api.get(f"/v1/claims/{claim_id}/bundle", "auditor-1", params={"mode": mode})
        assert r.status_code == 200, r.text
        path = tmp_path / f"claim-{claim_id}-{mode}.json"
        path.write_bytes(r.content)
        return path

    for mode in ("full", "boundary"):
        good = run_process("bundle", fetch(honest, mode), "--log-key", log_key)
        assert good.code == 0, good.out + good.err
        assert "BACKED" in good.out
        assert "NOT BACKED" not in good.out
        assert f"{api.log_key().name}  key id {api.log_key().key_id.hex()}" in good.out, good.out
        bad = run_process("bundle", fetch(over, mode), "--log-key", log_key, "--json")
        assert bad.code == 1, bad.out + bad.err
        report = json.loads(bad.out)
        assert report["verdict"] == "not_backed"
        assert report["attested"]["energy_kwh"] == attested["energy_kwh"]
        assert report["attested"]["revenue"] == attested["revenue"]
        assert [f["code"] for f in report["findings"] if f["severity"] == "fatal"] == ["revenue_overclaimed"]
        assert report["assets"][0]["evidence"] == mode
        assert (report["evidence"]["declared"], report["evidence"]["format"]) == (
            mode,
            "iot-attest-evidence/v2",
        )
        checks = {c["check"]: c for c in report["checks"]}
        assert (checks["chain_break"]["full_devices"], checks["chain_break"]["boundary_devices"]) == (
            (1, 0) if mode == "full" else (0, 1)
        )
        # --require-full: boundary evidence is insufficient (exit 1), full evidence suffices
        html = tmp_path / f"{mode}.html"
        strict = run_process(
            "bundle", fetch(honest, mode), "--log-key", log_key, "--require-full", "--html", html
        )
        assert strict.code == (0 if mode == "full" else 1), strict.out + strict.err
        assert "Checks run on which evidence" in strict.out
        assert ("evidence_insufficient" in strict.out) == (mode == "boundary")
        assert ("evidence_insufficient" in html.read_text()) == (mode == "boundary")
    # and a log key that did not sign it makes the same bundle invalid
    impostor = NoteSigner(api.log_key().name, seeded_signer("impostor")).verifier_key().to_string()
    r = run_process("bundle", tmp_path / f"claim-{honest}-full.json", "--log-key", impostor)
    assert r.code == 2, r.out + r.err
