"""The fleet simulator end to end: enrolment over HTTP, a real broker, receipts, the verifier's rules."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from attest_core.device import EnrolmentStatement
from attest_core.evaluation import Severity
from attest_core.metercheck import MeterValue, check_meter_reading, pagination_problem
from attest_core.meterproof import verify_record_signature
from attest_core.ocmf import parse_ocmf
from attest_core.reading import Envelope, Reading, Trigger, decode_envelope
from tests.edge_agent.conftest import Cli
from tests.edge_agent.fakes import INSTALLER_TOKEN, FakeGateway, ReceiptIssuer
from tests.edge_agent.plausibility import evaluate_devices
from tests.services import Broker

DEVICES = 6
SPEED = 86_400.0  # a simulated day per wall second
DURATION = 2.0  # wall seconds: two simulated days
INTERVAL = 300  # simulated seconds between readings


def test_simulated_fleet_enrols_publishes_and_gets_receipts(
    tmp_path: Path, cli: Cli, gateway: FakeGateway, broker: Broker
) -> None:
    issuer = ReceiptIssuer(broker.host, broker.port, gateway, every=0.1)
    state = tmp_path / "sim"
    args = [
        "simulate", "--devices", str(DEVICES), "--kind", "mixed", "--interval", str(INTERVAL),
        "--speed", str(SPEED), "--duration", str(DURATION), "--gateway", gateway.url,
        "--token", INSTALLER_TOKEN, "--mqtt", f"mqtt://{broker.host}:{broker.port}", "--state", state,
        # The broker drops QoS 1 messages for a subscriber that falls behind (Mosquitto's
        # max_queued_messages): the test's receipt issuer, on a loaded machine.  Devices recover as
        # real ones do, publishing unreceipted readings again (600 s by default: too long here).
        "--resend-after", "15",
        "--start", "2026-06-01T00:00:00Z", "--drain", "90", "--progress", "0.5",
    ]  # fmt: skip
    try:
        result = cli(*args)
    finally:
        issuer.close()
    assert result.code == 0, result.err
    assert "simulating 6 device(s) from 2026-06-01 00:00:00 to 2026-06-03 00:00:00" in result.out
    assert "made " in result.out

    # every device enrolled itself with its own key, through the REST API
    assert len(gateway.devices) == DEVICES
    assert {s.asset_kind.label for s in gateway.devices.values()} == {"charger", "solar"}
    assert len({s.public_key for s in gateway.devices.values()}) == DEVICES

    # every reading of the two days was made, published, verified by the issuer and receipted
    periodic_per_device = int(DURATION * SPEED) // INTERVAL
    assert issuer.bad == 0
    for device_id in gateway.devices:
        seqs = sorted(issuer.received[device_id])
        assert seqs == list(range(1, len(seqs) + 1))
        assert len(seqs) >= periodic_per_device
    db = sqlite3.connect(state / "fleet.db")
    assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    db.close()
    assert "waiting in the outbox 0" in result.out

    # the readings pass the verifier's plausibility rules (rated power, night, chain, time)
    envelopes: list[Envelope] = []
    for device_id, payloads in issuer.envelopes.items():
        envelopes += [decode_envelope(raw) for _, raw in sorted(payloads.items())]
        assert device_id in gateway.devices
    start = 1_780_272_000_000  # 2026-06-01
    enrolments = [(s, gateway.pops[d]) for d, s in gateway.devices.items()]
    evaluation = evaluate_devices(enrolments, envelopes, start, start + 2 * 86_400_000)
    assert [f for f in evaluation.findings if f.severity is Severity.FATAL] == []
    assert evaluation.energy_mwh > 0

    # running it again resumes the same fleet: no new enrolment, chains continue
    resumed = [*args[:-4], "--drain", "0", "--progress", "5"]
    resumed[resumed.index("--duration") + 1] = "0.5"
    again = cli(*resumed)
    assert again.code == 0, again.err
    assert len(gateway.devices) == DEVICES
    assert "simulating 6 device(s) from 2026-06-03 00:" in again.out


def _meter_values(statement: EnrolmentStatement, readings: list[Reading]) -> list[MeterValue]:
    """Check a meter-signed charger's readings as the gateway and the verifier do: each session
    start and end carries a record its enrolled meter signed, bound to the reading exactly, with
    pagination rising from record to record; every register is in whole Wh."""
    key = statement.meter_key
    assert key is not None
    values: list[MeterValue] = []
    for reading in readings:
        assert reading.energy_mwh % 1000 == 0
        carried = reading.meter_record
        if reading.trigger not in (Trigger.SESSION_START, Trigger.SESSION_END):
            assert carried is None
            continue
        assert carried is not None
        record = parse_ocmf(carried.record)
        verify_record_signature(record, key)
        assert record.readings[0].transaction == ("B" if reading.trigger is Trigger.SESSION_START else "E")
        assert record.pagination == f"T{reading.seq}"
        value, problem = check_meter_reading(reading, key)
        assert problem is None
        assert value is not None
        if values:
            assert pagination_problem(values[-1], value) is None
        values.append(value)
    return values


def test_simulated_fleet_meter_signed_chargers(
    tmp_path: Path, cli: Cli, gateway: FakeGateway, broker: Broker
) -> None:
    issuer = ReceiptIssuer(broker.host, broker.port, gateway, every=0.1)
    state = tmp_path / "sim"
    args = [
        "simulate", "--devices", "4", "--kind", "mixed", "--interval", str(INTERVAL),
        "--speed", str(SPEED), "--duration", str(DURATION), "--gateway", gateway.url,
        "--token", INSTALLER_TOKEN, "--mqtt", f"mqtt://{broker.host}:{broker.port}", "--state", state,
        # The broker drops QoS 1 messages for a subscriber that falls behind (Mosquitto's
        # max_queued_messages): the test's receipt issuer, on a loaded machine.  Devices recover as
        # real ones do, publishing unreceipted readings again (600 s by default: too long here).
        "--resend-after", "15",
        "--start", "2026-06-01T00:00:00Z", "--drain", "90", "--progress", "0.5",
    ]  # fmt: skip
    try:
        result = cli(*args, "--meter-signed")
        assert result.code == 0, result.err
        assert "2 meter-signed charger(s)" in result.out
        assert "carry a meter-signed record" in result.out

        # chargers are enrolled with their meter's key (each its own), solar panels without one
        statements = dict(gateway.devices)
        assert len(statements) == 4
        chargers = {d: s for d, s in statements.items() if s.asset_kind.label == "charger"}
        assert len(chargers) == 2
        assert all(s.meter_key is not None for s in chargers.values())
        assert len({s.meter_key for s in chargers.values()}) == 2
        assert all(s.meter_key is None for s in statements.values() if s.asset_kind.label == "solar")

        def readings(device_id: str) -> list[Reading]:
            payloads = issuer.envelopes[device_id]
            return [decode_envelope(raw).reading() for _, raw in sorted(payloads.items())]

        assert issuer.bad == 0
        for device_id, statement in chargers.items():
            assert len(_meter_values(statement, readings(device_id))) >= 2  # two days hold sessions

        # the verifier's rules: nothing fatal, and the chargers' energy between a session's start
        # and end is meter-signed
        envelopes = [
            decode_envelope(raw) for payloads in issuer.envelopes.values() for raw in payloads.values()
        ]
        start = 1_780_272_000_000  # 2026-06-01
        enrolments = [(s, gateway.pops[d]) for d, s in statements.items()]
        evaluation = evaluate_devices(enrolments, envelopes, start, start + 2 * 86_400_000)
        assert [f for f in evaluation.findings if f.severity is Severity.FATAL] == []
        charger_assets = {s.asset_id for s in chargers.values()}
        for asset in evaluation.assets:
            if asset.asset_id in charger_assets:
                assert 0 < asset.meter_signed_mwh <= asset.energy_mwh
            else:
                assert asset.meter_signed_mwh == 0

        # resumed without the flag: the statements say which devices are meter-signed, and the
        # pagination continues from the records before the restart
        before = {d: len(issuer.envelopes[d]) for d in chargers}
        resumed = [*args[:-4], "--drain", "90", "--progress", "5"]
        resumed[resumed.index("--duration") + 1] = "1"
        again = cli(*resumed)
        assert again.code == 0, again.err
        assert "simulating 4 device(s) from 2026-06-03 00:" in again.out
        assert "2 meter-signed charger(s)" in again.out
        assert gateway.devices == statements
        for device_id, statement in chargers.items():
            assert len(issuer.envelopes[device_id]) > before[device_id]
            values = _meter_values(statement, readings(device_id))
            assert values[-1].seq > before[device_id]
    finally:
        issuer.close()


@pytest.mark.parametrize("token", ["wrong"])
def test_simulate_refused_token(
    tmp_path: Path, cli: Cli, gateway: FakeGateway, broker: Broker, token: str
) -> None:
    result = cli(
        "simulate", "--devices", "2", "--gateway", gateway.url, "--token", token, "--state", tmp_path / "s",
        "--mqtt", f"mqtt://{broker.host}:{broker.port}", "--duration", "1",
    )  # fmt: skip
    assert result.code == 4
    assert "refused the installer token" in result.err
