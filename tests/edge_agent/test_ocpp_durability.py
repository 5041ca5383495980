"""The ``ocpp`` meter's promises beyond one session: a kill -9 right after the charger got its answer
loses nothing; TLS with Basic auth (security profile 2); the meter key in the enrolment statement;
``init --meter ocpp`` writes a valid config."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from ocpp.v16 import call as call16
from websockets.asyncio.client import connect

from attest_core.meterproof import MeterKey
from attest_core.reading import decode_envelope
from edge_agent.config import load_config, update_config
from edge_agent.enrol import load_enrolment
from edge_agent.meters.ocpp import STATUS_META
from edge_agent.store import Store
from tests.edge_agent.chaincheck import outbox
from tests.edge_agent.conftest import Cli
from tests.edge_agent.fakes import INSTALLER_TOKEN, FakeGateway
from tests.edge_agent.test_ocpp_agent import CP, PASSWORD, make_site, running
from tests.edge_agent.test_ocpp_support import SimulatedMeter, basic_auth, charge_point, now_iso, raw_exchange
from tests.services import make_certificates


def _listen_port(db: Path, proc: subprocess.Popen[bytes], not_port: int = 0) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the agent died by itself"
        if db.exists():
            try:
                store = Store(db, create=False)
                try:
                    text = store.get_meta(STATUS_META)
                finally:
                    store.close()
            except Exception:  # the schema may not exist yet
                text = None
            port = json.loads(text).get("listen_port") if text else None
            if port and port != not_port:
                return int(port)
        time.sleep(0.05)
    raise AssertionError("the agent's OCPP endpoint did not come up")


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def test_kill_9_after_the_answer_loses_nothing(tmp_path: Path, cli: Cli, gateway: FakeGateway) -> None:
    meter = SimulatedMeter()
    site = make_site(tmp_path, cli, gateway, meter_key=meter.public_hex)
    update_config(site.config.path, "meter", {"interval_s": 3600})
    log = tmp_path / "agent.log"
    record = meter.record([("B", Decimal("40.000")), ("E", Decimal("52.75"))])
    value = json.dumps(meter.signed_meter_value(record))
    stop = {"meterStop": 52750, "timestamp": now_iso(), "transactionId": 1, "transactionData": [
        {"timestamp": now_iso(), "sampledValue": [
            {"value": value, "context": "Transaction.End", "format": "SignedData"}]}]}  # fmt: skip

    async def send_stop(port: int, proc: subprocess.Popen[bytes] | None) -> list[object]:
        async with connect(f"ws://127.0.0.1:{port}/ocpp/{CP}", subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                           additional_headers=basic_auth(CP, PASSWORD), open_timeout=20) as ws:  # fmt: skip
            answer = await raw_exchange(ws, json.dumps([2, "stop-1", "StopTransaction", stop]))
            if proc is not None:
                os.kill(proc.pid, signal.SIGKILL)  # the moment the charger has its answer
            return answer

    def carried() -> list[tuple[int, int]]:
        envelopes = outbox(site.config.db_path, site.config.device_id)
        readings = [decode_envelope(e).reading() for _, e in sorted(envelopes.items())]
        return [(r.meter_record.value_index, r.energy_mwh) for r in readings if r.meter_record]

    proc = _start(site.config.path, log)
    try:
        port = _listen_port(site.config.db_path, proc)
        answer = asyncio.run(send_stop(port, proc))
        assert answer[:2] == [3, "stop-1"]
        proc.wait(20)
        assert carried() == [(0, 40_000_000), (1, 52_750_000)]
        # the charger sends it again (as one that never got the answer would): no second reading of it
        proc = _start(site.config.path, log)
        port = _listen_port(site.config.db_path, proc, not_port=port)
        answer = asyncio.run(send_stop(port, None))
        assert answer[:2] == [3, "stop-1"]
        assert carried() == [(0, 40_000_000), (1, 52_750_000)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(20)
    envelopes = outbox(site.config.db_path, site.config.device_id)
    for envelope in envelopes.values():
        carried_record = decode_envelope(envelope).reading().meter_record
        assert carried_record is None or carried_record.record == record.encode()


def test_tls_with_basic_auth(tmp_path: Path, cli: Cli, gateway: FakeGateway) -> None:
    (tmp_path / "certs").mkdir()
    certs = make_certificates(tmp_path / "certs")
    meter = SimulatedMeter()
    site = make_site(tmp_path, cli, gateway, meter_key=meter.public_hex)
    update_config(
        site.config.path,
        "meter.ocpp",
        {"cert_file": str(certs / "server.crt"), "key_file": str(certs / "server.key")},
    )
    site.config = load_config(site.config.path, environ={})
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))

    async def scenario() -> None:
        async with running(site):
            url = site.url.replace("ws://", "wss://")
            async with connect(f"{url}{CP}", subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                               additional_headers=basic_auth(CP, PASSWORD), ssl=context, open_timeout=20) as ws:  # fmt: skip
                answer = await raw_exchange(ws, '[2, "h1", "Heartbeat", {}]')
                assert answer[:2] == [3, "h1"]
            # plain ws:// to a TLS endpoint does not get in
            try:
                async with connect(f"{site.url}{CP}", subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                                   additional_headers=basic_auth(CP, PASSWORD), open_timeout=20):  # fmt: skip
                    raise AssertionError("a plain connection was accepted by the TLS endpoint")
            except AssertionError:
                raise
            except Exception:
                pass

    asyncio.run(scenario())


def test_enrolment_carries_the_meter_key_and_a_different_key_is_refused(
    tmp_path: Path, cli: Cli, gateway: FakeGateway
) -> None:
    meter = SimulatedMeter()
    site = make_site(tmp_path, cli, gateway, meter_key=f"oca:base16:asn1:{meter.public_der.hex()}")
    statement = load_enrolment(site.config.state_dir)
    assert statement is not None
    assert statement.meter_key == MeterKey.from_text(meter.public_hex)
    # the same enrolment again: fine; another meter key: an enrolment cannot be changed
    args = ["enrol", "--config", site.config.path, "--gateway", gateway.url, "--token", INSTALLER_TOKEN,
            "--asset", "charger-7", "--kind", "charger", "--rated-power", "22000"]  # fmt: skip
    assert cli(*args, "--meter-key", meter.public_hex).code == 0
    other = SimulatedMeter()
    result = cli(*args, "--meter-key", other.public_hex)
    assert result.code == 5, result.err
    assert meter.public_hex in result.err
    result = cli(*args, "--meter-key", "not a key")
    assert result.code == 2
    assert "--meter-key" in result.err


def test_init_writes_a_valid_ocpp_config(tmp_path: Path, cli: Cli) -> None:
    home = tmp_path / "dev"
    assert cli("init", "--dir", home, "--meter", "ocpp").code == 0
    config = load_config(home / "agent.toml", environ={})
    assert config.meter.type == "ocpp"
    assert config.meter.ocpp.mode == "local"
    assert config.meter.ocpp.max_frame_bytes >= 8192
    assert config.meter.ocpp.chargers == {}


def test_a_charger_session_shows_in_status(tmp_path: Path, cli: Cli, gateway: FakeGateway) -> None:
    meter = SimulatedMeter()
    site = make_site(tmp_path, cli, gateway, meter_key=meter.public_hex)

    async def scenario() -> None:
        async with running(site), charge_point(site.url, CP, PASSWORD, "1.6") as cp:
            await cp.call(call16.BootNotification(charge_point_model="Wallbox", charge_point_vendor="Test"))
            result = cli("status", "--config", site.config.path)
            assert result.code == 0
            assert f"{CP}: connected (OCPP 1.6)" in result.out
            assert meter.public_hex in result.out

    asyncio.run(scenario())
