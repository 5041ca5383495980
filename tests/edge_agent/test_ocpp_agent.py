"""The agent's ``ocpp`` meter, local backend mode, end to end: the real agent (``run_agent``) with its
websocket endpoint, charge points built with the ocpp package (1.6 and 2.0.1) over real websockets,
meter-signed OCMF records signed by a simulated meter's P-256 key, readings read back from the
outbox (SQLite)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from attest_core.meterproof import MeterKey, verify_record_signature
from attest_core.ocmf import parse_ocmf
from attest_core.reading import Reading, Status, Trigger, decode_envelope
from edge_agent.agent import run_agent
from edge_agent.config import Config, load_config, update_config
from edge_agent.meters.ocpp import STATUS_META
from edge_agent.store import Store
from tests.edge_agent.chaincheck import outbox
from tests.edge_agent.conftest import Cli
from tests.edge_agent.fakes import INSTALLER_TOKEN, FakeGateway
from tests.edge_agent.test_ocpp_support import (
    SimulatedMeter,
    basic_auth,
    charge_point,
    now_iso,
    raw_exchange,
    until,
)

CP = "CP-1"
PASSWORD = "correct horse battery staple"
TAG = "04A2B3C4D5"


@dataclass
class Site:
    config: Config
    meter: SimulatedMeter
    url: str = ""

    def readings(self) -> list[Reading]:
        envelopes = outbox(self.config.db_path, self.config.device_id)
        return [decode_envelope(envelopes[seq]).reading() for seq in sorted(envelopes)]

    def signed(self) -> list[Reading]:
        return [r for r in self.readings() if r.meter_record is not None]

    def status(self) -> dict[str, Any]:
        store = Store(self.config.db_path, create=False)
        try:
            text = store.get_meta(STATUS_META)
        finally:
            store.close()
        return json.loads(text) if text else {}


def make_site(tmp_path: Path, cli: Cli, gateway: FakeGateway, *, meter_key: str | None) -> Site:
    home = tmp_path / "dev"
    assert cli("init", "--dir", home, "--meter", "ocpp").code == 0
    path = home / "agent.toml"
    update_config(path, "meter", {"interval_s": 0.2})
    update_config(path, "meter.ocpp", {"listen_host": "127.0.0.1", "listen_port": 0})
    text = path.read_text()
    text = text.replace("chargers = {}", f'chargers = {{ "{CP}" = "{PASSWORD}" }}')
    text = text.replace("id_tags = []", f'id_tags = ["{TAG}"]')
    path.write_text(text)
    meter = SimulatedMeter()
    args = ["enrol", "--config", path, "--gateway", gateway.url, "--token", INSTALLER_TOKEN,
            "--asset", "charger-7", "--kind", "charger", "--rated-power", "22000"]  # fmt: skip
    if meter_key is not None:
        args += ["--meter-key", meter_key]
    result = cli(*args)
    assert result.code == 0, result.err
    return Site(load_config(path, environ={}), meter)


@contextlib.asynccontextmanager
async def running(site: Site) -> AsyncIterator[Site]:
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(run_agent(site.config, stop))
    try:
        await until(lambda: task.done() or bool(site.config.db_path.exists() and site.status().get("listen_port")),
                    20, "the OCPP endpoint")  # fmt: skip
        assert not task.done(), task.result()
        site.url = f"ws://127.0.0.1:{site.status()['listen_port']}/ocpp/"
        yield site
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0


@pytest.fixture
def site(tmp_path: Path, cli: Cli, gateway: FakeGateway) -> Site:
    meter = SimulatedMeter()
    made = make_site(tmp_path, cli, gateway, meter_key=meter.public_hex)
    made.meter = meter
    return made


def check_record(reading: Reading, record: str, index: int, energy_mwh: int, meter: SimulatedMeter) -> None:
    carried = reading.meter_record
    assert carried is not None
    assert carried.record == record.encode()
    assert carried.value_index == index
    assert reading.energy_mwh == energy_mwh
    verify_record_signature(parse_ocmf(carried.record), MeterKey.from_text(meter.public_hex))


# --------------------------------------------------------------------------- 1.6


def test_ocpp16_session_with_signed_begin_and_end_in_one_record(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        async with (
            running(site),
            charge_point(site.url, CP, PASSWORD, "1.6", meter_key=site.meter.public_hex) as cp,
        ):
            boot = await cp.call(
                call16.BootNotification(charge_point_model="Wallbox", charge_point_vendor="Test")
            )
            assert boot.status == "Accepted"
            assert boot.interval == 300
            await asyncio.wait_for(cp.got_configuration.wait(), 20)
            assert cp.configured["SampledDataSignReadings"] == "true"
            assert cp.configured["PublicKeyWithSignedMeterValue"] == "OncePerTransaction"
            assert "Energy.Active.Import.Register" in cp.configured["StartTxnSampledData"]
            assert (await cp.call(call16.Heartbeat())).current_time
            ok = await cp.call(call16.Authorize(id_tag=TAG))
            assert ok.id_tag_info["status"] == "Accepted"
            bad = await cp.call(call16.Authorize(id_tag="DEADBEEF"))
            assert bad.id_tag_info["status"] == "Invalid"
            await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))

            started = await cp.call(
                call16.StartTransaction(connector_id=1, id_tag=TAG, meter_start=12_000, timestamp=now_iso())
            )
            assert started.id_tag_info["status"] == "Accepted"
            record = site.meter.record([("B", Decimal("12.000")), ("E", Decimal("19.450"))])
            signed = json.dumps(site.meter.signed_meter_value(record))
            await cp.call(
                call16.StopTransaction(
                    meter_stop=19_450,
                    timestamp=now_iso(),
                    transaction_id=started.transaction_id,
                    id_tag=TAG,
                    transaction_data=[
                        {
                            "timestamp": now_iso(),
                            "sampled_value": [
                                {
                                    "value": signed,
                                    "context": "Transaction.End",
                                    "format": "SignedData",
                                    "measurand": "Energy.Active.Import.Register",
                                    "unit": "Wh",
                                }
                            ],
                        }
                    ],
                )
            )
            # the answer came: the readings are on disk already
            signed_readings = site.signed()
            assert [r.meter_record.value_index for r in signed_readings if r.meter_record] == [0, 1]
            check_record(signed_readings[0], record, 0, 12_000_000, site.meter)
            check_record(signed_readings[1], record, 1, 19_450_000, site.meter)
            assert signed_readings[1].trigger is Trigger.SESSION_END
            starts = [r for r in site.readings() if r.trigger is Trigger.SESSION_START]
            assert [r.energy_mwh for r in starts] == [12_000_000]
            await until(lambda: site.readings()[-1].energy_mwh == 19_450_000 and site.readings()[-1].meter_record is None,
                        20, "a periodic reading at the end register")  # fmt: skip
        readings = site.readings()
        assert all(not r.status & Status.METER_ERROR for r in readings)
        energies = [r.energy_mwh for r in readings]
        assert energies == sorted(energies)
        status = site.status()["chargers"][CP]
        assert status["signed_values"] == 2
        assert status.get("meter_key_reported") == site.meter.public_hex

    asyncio.run(scenario())


def test_ocpp16_charger_that_answers_not_supported_is_reported(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with running(site), charge_point(site.url, CP, PASSWORD, "1.6", refuse=True) as cp:
            await cp.call(call16.BootNotification(charge_point_model="Old", charge_point_vendor="Test"))
            await asyncio.wait_for(cp.got_configuration.wait(), 20)
            await until(lambda: "SampledDataSignReadings" in site.status()["chargers"][CP].get("config", {}), 20,
                        "the configuration answers")  # fmt: skip
            started = await cp.call(
                call16.StartTransaction(connector_id=1, id_tag=TAG, meter_start=5_000, timestamp=now_iso())
            )
            await cp.call(
                call16.StopTransaction(
                    meter_stop=6_000, timestamp=now_iso(), transaction_id=started.transaction_id
                )
            )
            ends = [r for r in site.readings() if r.trigger is Trigger.SESSION_END]
            assert [r.energy_mwh for r in ends] == [6_000_000]
        status = site.status()["chargers"][CP]
        assert status["config"]["SampledDataSignReadings"] == "NotSupported"
        assert "without sending any meter-signed value" in status["warning"]
        assert "answered NotSupported to setting SampledDataSignReadings" in caplog.text
        from edge_agent.agent import collect_status, format_status

        text = format_status(collect_status(site.config))
        assert "NotSupported to SampledDataSignReadings" in text
        assert "without sending any meter-signed value" in text

    asyncio.run(scenario())


def test_ocpp16_meter_key_mismatch_is_refused(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    other = SimulatedMeter()

    async def scenario() -> None:
        async with (
            running(site),
            charge_point(site.url, CP, PASSWORD, "1.6", meter_key=other.public_hex) as cp,
        ):
            await cp.call(call16.BootNotification(charge_point_model="Swapped", charge_point_vendor="Test"))
            await until(
                lambda: bool(site.status()["chargers"][CP].get("key_mismatch")), 20, "the key mismatch"
            )
            started = await cp.call(
                call16.StartTransaction(connector_id=1, id_tag=TAG, meter_start=1_000, timestamp=now_iso())
            )
            record = other.record([("B", Decimal("1.000")), ("E", Decimal("2.000"))])
            await cp.call(
                call16.StopTransaction(
                    meter_stop=2_000,
                    timestamp=now_iso(),
                    transaction_id=started.transaction_id,
                    transaction_data=[
                        {
                            "timestamp": now_iso(),
                            "sampled_value": [
                                {
                                    "value": json.dumps(other.signed_meter_value(record)),
                                    "context": "Transaction.End",
                                    "format": "SignedData",
                                }
                            ],
                        }
                    ],
                )
            )
        assert site.signed() == []
        mismatch = site.status()["chargers"][CP]["key_mismatch"]
        assert other.public_hex in mismatch
        assert site.meter.public_hex in mismatch
        assert "re-enrol" in mismatch
        assert "REFUSED" in caplog.text

    asyncio.run(scenario())


# --------------------------------------------------------------------------- 2.0.1


def _sampled(kwh: Decimal, context: str, signed: dict[str, str] | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {
        "value": float(kwh * 1000),
        "context": context,
        "measurand": "Energy.Active.Import.Register",
        "unit_of_measure": {"unit": "Wh"},
    }
    if signed is not None:
        value["signed_meter_value"] = {
            "signed_meter_data": signed["signedMeterData"],
            "signing_method": signed["signingMethod"],
            "encoding_method": signed["encodingMethod"],
            "public_key": signed["publicKey"],
        }
    return value


def test_ocpp201_session_with_signed_begin_and_end(site: Site) -> None:
    async def scenario() -> None:
        async with (
            running(site),
            charge_point(site.url, CP, PASSWORD, "2.0.1", meter_key=site.meter.oca_base64) as cp,
        ):
            boot = await cp.call(
                call201.BootNotification(
                    charging_station={"model": "Wallbox", "vendor_name": "Test"}, reason="PowerUp"
                )
            )
            assert boot.status == "Accepted"
            await asyncio.wait_for(cp.got_configuration.wait(), 20)
            assert cp.configured["SampledDataCtrlr.SignReadings"] == "true"
            assert cp.configured["SampledDataCtrlr.TxUpdatedMeasurands"] == "Energy.Active.Import.Register"
            ok = await cp.call(call201.Authorize(id_token={"id_token": TAG, "type": "ISO14443"}))
            assert ok.id_token_info["status"] == "Accepted"
            bad = await cp.call(call201.Authorize(id_token={"id_token": "CAFE", "type": "ISO14443"}))
            assert bad.id_token_info["status"] == "Invalid"
            begin = site.meter.record([("B", Decimal("100.250"))])
            tx = {"transaction_id": "tx-1"}
            await cp.call(
                call201.TransactionEvent(
                    event_type="Started",
                    timestamp=now_iso(),
                    trigger_reason="Authorized",
                    seq_no=0,
                    transaction_info=tx,
                    id_token={"id_token": TAG, "type": "ISO14443"},
                    meter_value=[
                        {
                            "timestamp": now_iso(),
                            "sampled_value": [
                                _sampled(
                                    Decimal("100.250"),
                                    "Transaction.Begin",
                                    site.meter.signed_meter_value(begin),
                                )
                            ],
                        }
                    ],
                )
            )
            first = site.signed()
            assert len(first) == 1
            check_record(first[0], begin, 0, 100_250_000, site.meter)
            assert first[0].trigger is Trigger.SESSION_START
            await cp.call(
                call201.TransactionEvent(
                    event_type="Updated",
                    timestamp=now_iso(),
                    trigger_reason="MeterValuePeriodic",
                    seq_no=1,
                    transaction_info=tx,
                    meter_value=[
                        {
                            "timestamp": now_iso(),
                            "sampled_value": [_sampled(Decimal("101.5"), "Sample.Periodic")],
                        }
                    ],
                )
            )
            await until(lambda: site.readings()[-1].energy_mwh == 101_500_000, 20, "a periodic reading")
            end = site.meter.record([("E", Decimal("102.125"))])
            await cp.call(
                call201.TransactionEvent(
                    event_type="Ended",
                    timestamp=now_iso(),
                    trigger_reason="StopAuthorized",
                    seq_no=2,
                    transaction_info=tx,
                    meter_value=[
                        {
                            "timestamp": now_iso(),
                            "sampled_value": [
                                _sampled(
                                    Decimal("102.125"),
                                    "Transaction.End",
                                    site.meter.signed_meter_value(end, with_key=False),
                                )
                            ],
                        }
                    ],
                )
            )
            signed = site.signed()
            assert len(signed) == 2
            check_record(signed[1], end, 0, 102_125_000, site.meter)
            assert signed[1].trigger is Trigger.SESSION_END
        readings = site.readings()
        assert all(not r.status & Status.METER_ERROR for r in readings)
        assert [r.energy_mwh for r in readings] == sorted(r.energy_mwh for r in readings)

    asyncio.run(scenario())


def test_ocpp201_not_supported_variables_are_reported(site: Site) -> None:
    async def scenario() -> None:
        async with running(site), charge_point(site.url, CP, PASSWORD, "2.0.1", refuse=True) as cp:
            await cp.call(
                call201.BootNotification(
                    charging_station={"model": "Old", "vendor_name": "T"}, reason="PowerUp"
                )
            )
            await until(lambda: "SampledDataCtrlr.SignReadings" in site.status()["chargers"][CP].get("config", {}),
                        20, "the SetVariables answers")  # fmt: skip
        assert (
            site.status()["chargers"][CP]["config"]["SampledDataCtrlr.SignReadings"]
            == "NotSupportedAttributeType"
        )

    asyncio.run(scenario())


# --------------------------------------------------------------------------- refusals and malformed frames


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_malformed_frames_get_call_errors_and_the_agent_keeps_serving(site: Site, version: str) -> None:
    subprotocol = "ocpp1.6" if version == "1.6" else "ocpp2.0.1"
    format_code = "FormationViolation" if version == "1.6" else "FormatViolation"

    async def scenario() -> None:
        async with running(site):
            async with connect(f"{site.url}{CP}", subprotocols=[subprotocol],  # type: ignore[list-item]
                               additional_headers=basic_auth(CP, PASSWORD), open_timeout=20) as ws:  # fmt: skip
                answer = await raw_exchange(ws, "this is not json")
                assert answer[0] == 4
                assert answer[1] == "-1"
                assert answer[2] == format_code
                answer = await raw_exchange(ws, '[2, "m1", "MeterValues", {"connectorId": "one"}]')
                assert answer[:2] == [4, "m1"]
                answer = await raw_exchange(ws, '[2, "m2", "NoSuchAction", {}]')
                assert answer[:2] == [4, "m2"]
                assert answer[2] in ("NotImplemented", "NotSupported")
                answer = await raw_exchange(ws, '[7, "m3"]')
                assert answer[0] == 4
                answer = await raw_exchange(ws, '[2, "m4", "Heartbeat", {}]')
                assert answer[:2] == [3, "m4"]
                assert "currentTime" in answer[2]
            # the endpoint still serves a well-behaved charger
            async with charge_point(site.url, CP, PASSWORD, version) as cp:
                if version == "1.6":
                    assert (await cp.call(call16.Heartbeat())).current_time
                else:
                    assert (await cp.call(call201.Heartbeat())).current_time

    asyncio.run(scenario())


def test_unknown_charger_wrong_password_no_subprotocol_and_oversized_frames_are_refused(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with running(site):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"{site.url}CP-X", subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                                   additional_headers=basic_auth("CP-X", PASSWORD), open_timeout=20):  # fmt: skip
                    pass
            assert refused.value.response.status_code == 404
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"{site.url}{CP}", subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                                   additional_headers=basic_auth(CP, "wrong password!"), open_timeout=20):  # fmt: skip
                    pass
            assert refused.value.response.status_code == 401
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"{site.url}{CP}", subprotocols=["ocpp1.6"], open_timeout=20):  # type: ignore[list-item]
                    pass
            assert refused.value.response.status_code == 401
            with pytest.raises(InvalidStatus) as refused:
                async with connect(
                    f"{site.url}{CP}", additional_headers=basic_auth(CP, PASSWORD), open_timeout=20
                ):
                    pass
            assert refused.value.response.status_code == 400
            async with connect(f"{site.url}{CP}", subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                               additional_headers=basic_auth(CP, PASSWORD), open_timeout=20) as ws:  # fmt: skip
                await ws.send('[2, "big", "DataTransfer", {"vendorId": "' + "x" * 100_000 + '"}]')
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 20)
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 1009
            async with charge_point(site.url, CP, PASSWORD, "1.6") as cp:
                assert (await cp.call(call16.Heartbeat())).current_time
        assert "is not in [meter.ocpp] chargers" in caplog.text
        assert "wrong user name or password" in caplog.text
        assert "not ocpp1.6 or ocpp2.0.1" in caplog.text
        assert "over [meter.ocpp] max_frame_bytes" in caplog.text

    asyncio.run(scenario())


def test_charger_disconnect_loses_nothing_received(site: Site) -> None:
    async def scenario() -> None:
        async with running(site):
            record = site.meter.record([("B", Decimal("7.000")), ("E", Decimal("8.500"))])
            async with connect(f"{site.url}{CP}", subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                               additional_headers=basic_auth(CP, PASSWORD), open_timeout=20) as ws:  # fmt: skip
                stop = {"meterStop": 8500, "timestamp": now_iso(), "transactionId": 1, "transactionData": [
                    {"timestamp": now_iso(), "sampledValue": [{"value": json.dumps(site.meter.signed_meter_value(record)),
                     "context": "Transaction.End", "format": "SignedData"}]}]}  # fmt: skip
                await ws.send(json.dumps([2, "stop-1", "StopTransaction", stop]))
                # gone before reading the answer
            await until(lambda: len(site.signed()) == 2, 20, "the two signed readings")
            assert [r.energy_mwh for r in site.signed()] == [7_000_000, 8_500_000]

    asyncio.run(scenario())


def test_without_meter_key_the_charger_still_makes_unsigned_readings(
    tmp_path: Path, cli: Cli, gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    site = make_site(tmp_path, cli, gateway, meter_key=None)

    async def scenario() -> None:
        async with running(site), charge_point(site.url, CP, PASSWORD, "1.6") as cp:
            await cp.call(call16.BootNotification(charge_point_model="Wallbox", charge_point_vendor="Test"))
            await cp.call(call16.MeterValues(connector_id=1, meter_value=[
                {"timestamp": now_iso(), "sampled_value": [{"value": "3456.7", "unit": "Wh"}]}]))  # fmt: skip
            await until(
                lambda: any(r.energy_mwh == 3_456_700 for r in site.readings()), 20, "a periodic reading"
            )
            record = site.meter.record([("B", Decimal("3.000")), ("E", Decimal("3.600"))])
            value = json.dumps(site.meter.signed_meter_value(record))
            sampled = [{"value": value, "context": "Transaction.End", "format": "SignedData"}]
            await cp.call(
                call16.MeterValues(
                    connector_id=1, meter_value=[{"timestamp": now_iso(), "sampled_value": sampled}]
                )
            )
            # the end value as an unsigned reading; the begin value (below the register) not at all
            assert site.readings()[-1].energy_mwh == 3_600_000
        assert site.signed() == []
        assert all(not r.status & Status.METER_ERROR for r in site.readings())
        assert "sends meter-signed values but no meter key was enrolled" in caplog.text
        assert "no meter key was enrolled" in caplog.text

    asyncio.run(scenario())


def test_ocpp16_begin_record_sent_at_the_end_after_later_registers_is_not_carried_backwards(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with running(site), charge_point(site.url, CP, PASSWORD, "1.6") as cp:
            started = await cp.call(
                call16.StartTransaction(connector_id=1, id_tag=TAG, meter_start=1_000, timestamp=now_iso())
            )
            await cp.call(call16.MeterValues(connector_id=1, transaction_id=started.transaction_id, meter_value=[
                {"timestamp": now_iso(), "sampled_value": [{"value": "1500", "context": "Sample.Periodic"}]}]))  # fmt: skip
            await until(lambda: site.readings()[-1].energy_mwh == 1_500_000, 20, "a periodic reading")
            begin = site.meter.record([("B", Decimal("1.000"))])
            end = site.meter.record([("E", Decimal("2.000"))])
            await cp.call(
                call16.StopTransaction(
                    meter_stop=2_000,
                    timestamp=now_iso(),
                    transaction_id=started.transaction_id,
                    transaction_data=[
                        {
                            "timestamp": now_iso(),
                            "sampled_value": [
                                {
                                    "value": json.dumps(site.meter.signed_meter_value(begin)),
                                    "context": "Transaction.Begin",
                                    "format": "SignedData",
                                },
                                {
                                    "value": json.dumps(site.meter.signed_meter_value(end, with_key=False)),
                                    "context": "Transaction.End",
                                    "format": "SignedData",
                                },
                            ],
                        }
                    ],
                )
            )
            signed = site.signed()
            assert len(signed) == 1
            check_record(signed[0], end, 0, 2_000_000, site.meter)
        assert all(not r.status & Status.METER_ERROR for r in site.readings())
        assert "arrived after the register had already reached 1500000 mWh" in caplog.text
        assert site.status()["chargers"][CP]["late_values"] == 1

    asyncio.run(scenario())


def test_records_that_would_not_bind_are_refused_not_carried(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    """An old record (meter time minutes off the agent's clock) and a record replayed after a newer one
    (pagination going back): the gateway would refuse such a reading and stop the device's log, so the
    agent does not carry them."""
    from datetime import UTC, datetime, timedelta

    older = site.meter.record([("C", Decimal("6.500"))])  # page 1 (a higher value: only its page is wrong)
    newer = site.meter.record([("C", Decimal("6.000"))])  # page 2
    stale = site.meter.record([("C", Decimal("7.000"))], when=datetime.now(UTC) - timedelta(minutes=10))

    def meter_values(record: str) -> Any:
        return call201.MeterValues(evse_id=1, meter_value=[{"timestamp": now_iso(), "sampled_value": [
            _sampled(Decimal("0"), "Sample.Periodic", site.meter.signed_meter_value(record))]}])  # fmt: skip

    async def scenario() -> None:
        async with running(site), charge_point(site.url, CP, PASSWORD, "2.0.1") as cp:
            await cp.call(meter_values(newer))
            await cp.call(meter_values(older))
            await cp.call(meter_values(stale))
        carried = [r.meter_record.record for r in site.signed() if r.meter_record]
        assert carried == [newer.encode()]
        assert "meter_pagination" in caplog.text
        assert "meter_time_mismatch" in caplog.text
        assert site.status()["chargers"][CP]["refused_values"] == 2

    asyncio.run(scenario())


def test_no_periodic_reading_from_a_stale_register(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    update_config(site.config.path, "meter.ocpp", {"stale_after_s": 1.0})
    site.config = load_config(site.config.path, environ={})

    async def scenario() -> None:
        async with running(site):
            async with charge_point(site.url, CP, PASSWORD, "1.6") as cp:
                await cp.call(call16.MeterValues(connector_id=1, meter_value=[
                    {"timestamp": now_iso(), "sampled_value": [{"value": "42", "unit": "kWh"}]}]))  # fmt: skip
                await until(lambda: any(r.energy_mwh == 42_000_000 for r in site.readings()), 20, "a reading")
            await until(lambda: "its last register is" in caplog.text, 20, "the register going stale")
            count = len(site.readings())
            await asyncio.sleep(1.0)
            assert len(site.readings()) == count  # no reading from a register nobody vouches for now

    asyncio.run(scenario())


def test_a_meter_reporting_manipulation_makes_a_tamper_reading(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    """OCMF status M: the record cannot be carried (the gateway refuses meter_manipulated), but the alarm
    reaches the log as a reading flagged TAMPER, its register where it was."""
    good = site.meter.record([("C", Decimal("6.000"))])
    manipulated = site.meter.record([("C", Decimal("9.000"))], status="M")

    def meter_values(record: str) -> Any:
        return call201.MeterValues(evse_id=1, meter_value=[{"timestamp": now_iso(), "sampled_value": [
            _sampled(Decimal("0"), "Sample.Periodic", site.meter.signed_meter_value(record))]}])  # fmt: skip

    async def scenario() -> None:
        async with running(site), charge_point(site.url, CP, PASSWORD, "2.0.1") as cp:
            await cp.call(meter_values(good))
            await cp.call(meter_values(manipulated))

    asyncio.run(scenario())
    readings = site.readings()
    tampered = [r for r in readings if r.status & Status.TAMPER]
    assert len(tampered) == 1
    assert tampered[0].meter_record is None
    assert tampered[0].energy_mwh == 6_000_000  # not the manipulated meter's 9 kWh
    assert "manipulation detected" in caplog.text
    assert site.status()["chargers"][CP]["tamper_reports"] == 1
