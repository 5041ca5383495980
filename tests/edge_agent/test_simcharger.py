"""The simulated certified charger: its meter's OCMF records, and its charge point against a real
OCPP backend (the mobilityhouse ``ocpp`` package's server side, over a real websocket on
127.0.0.1, an ephemeral port), for OCPP 1.6 and 2.0.1; and its command line as a subprocess.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import json
import ssl
import sys
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from http import HTTPStatus
from itertools import count
from pathlib import Path
from typing import Any, TypeVar

import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ocpp.routing import on
from ocpp.v16 import ChargePoint as Central16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as Central201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from attest_core.errors import SignatureError
from attest_core.meterproof import MeterKey, verify_record_signature
from attest_core.ocmf import MAX_RECORD_BYTES, parse_ocmf
from edge_agent.clock import Clock
from edge_agent.errors import Exit
from edge_agent.simcharger.chargepoint import SimulatedChargePoint
from edge_agent.simcharger.errors import SimChargerError
from edge_agent.simcharger.meter import MeterValue, OcmfMeter, changed_digit, ocmf_time
from edge_agent.simcharger.settings import ENERGY

T = TypeVar("T")
T0 = 1_780_000_000_000  # 2026-05-28T20:26:40Z
WAIT_S = 30.0  # what "should happen" may take on a loaded machine


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(180):
            return await coro

    return asyncio.run(bounded())


async def eventually(check: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(WAIT_S):
        while not check():
            await asyncio.sleep(0.05)
    assert check(), what


# -- the simulated meter ---------------------------------------------------------------------------


def test_records_parse_and_verify_under_the_meter_key() -> None:
    meter = OcmfMeter("test-meter")
    record = meter.record([MeterValue(T0 + 123, 12_345, "B")], id_tag="1A2B3C4D")
    parsed = parse_ocmf(record)
    verify_record_signature(parsed, meter.meter_key())
    assert record.startswith(b"OCMF|{")
    assert parsed.payload_bytes == record.split(b"|")[1]
    reading = parsed.readings[0]
    assert (reading.time, reading.time_status) == ("2026-05-28T20:26:40,123+0000", "S")
    assert (reading.transaction, reading.status, reading.unit, reading.obis) == ("B", "G", "Wh", "1-b:1.8.0")
    assert reading.value == Decimal(12345)
    assert reading.energy_mwh() == 12_345_000
    assert parsed.algorithm == "ECDSA-secp256r1-SHA256"
    assert parsed.curve == "secp256r1"
    payload = json.loads(parsed.payload_bytes)
    for field in ("FV", "GI", "GS", "GV", "PG", "MV", "MM", "MS", "IS", "IL", "IF", "IT", "ID"):
        assert field in payload
    assert (payload["IS"], payload["IT"], payload["ID"]) == (True, "ISO14443", "1A2B3C4D")
    assert payload["RD"][0]["RT"] == "AC"
    assert payload["RD"][0]["EF"] == ""


def test_the_key_is_derived_from_the_seed_and_reads_back_from_its_label() -> None:
    one, same, other = OcmfMeter("seed-1"), OcmfMeter("seed-1"), OcmfMeter("seed-2")
    assert one.public_key_hex() == same.public_key_hex() != other.public_key_hex()
    label = one.public_key_hex()
    assert label == label.upper()
    assert label.startswith("3059301306072A8648CE3D0201")
    assert MeterKey.from_text(label) == one.meter_key() == MeterKey.from_text(one.public_key_oca())
    record = one.record([MeterValue(T0, 1, "B")])
    with pytest.raises(SignatureError) as info:
        verify_record_signature(parse_ocmf(record), other.meter_key())
    assert info.value.code == "meter_signature"


def test_one_changed_digit_fails() -> None:
    meter = OcmfMeter("test-meter")
    record = meter.record([MeterValue(T0, 7_753, "B"), MeterValue(T0 + 5_000, 7_760, "E")])
    tampered = changed_digit(record)
    assert len(tampered) == len(record)
    assert sum(a != b for a, b in zip(record, tampered, strict=True)) == 1
    parsed = parse_ocmf(tampered)
    assert parsed.readings[0].value == Decimal(7754)
    with pytest.raises(SignatureError):
        verify_record_signature(parsed, meter.meter_key())


def test_pagination_rises_per_record() -> None:
    meter = OcmfMeter("test-meter", first_page=41)
    pages = [parse_ocmf(meter.record([MeterValue(T0 + i, i, "C")])).pagination for i in range(4)]
    assert pages == ["T41", "T42", "T43", "T44"]


def test_values_are_exact_in_wh_and_kwh() -> None:
    kwh = OcmfMeter("test-meter", unit="kWh")
    record = kwh.record([MeterValue(T0, Decimal("1234.5"), "B"), MeterValue(T0 + 1, 987_654_321, "E")])
    assert b'"RV":1.2345,' in record
    assert b'"RV":987654.3210,' in record
    parsed = parse_ocmf(record)
    assert [r.energy_mwh() for r in parsed.readings] == [1_234_500, 987_654_321_000]
    verify_record_signature(parsed, kwh.meter_key())
    with pytest.raises(SimChargerError):
        kwh.record([MeterValue(T0, Decimal("0.05"))])  # below 0.1 Wh: no four-decimal kWh value
    with pytest.raises(SimChargerError):
        OcmfMeter("x").record([MeterValue(T0, Decimal("1.5"))])  # Wh meters write whole Wh
    assert ocmf_time(T0 + 7) == "2026-05-28T20:26:40,007+0000 S"


def test_a_manipulated_status_is_signed_as_the_meter_says() -> None:
    meter = OcmfMeter("test-meter")
    parsed = parse_ocmf(meter.record([MeterValue(T0, 10, "E", status="M")]))
    verify_record_signature(parsed, meter.meter_key())  # the meter itself reports the manipulation
    assert parsed.readings[0].status == "M"


def test_records_stay_within_the_ocpp_bound() -> None:
    meter = OcmfMeter("test-meter")
    many = [MeterValue(T0 + i * 1000, 10_000_000 + i, "C") for i in range(8)]
    record = meter.record(many, id_tag="X" * 36)
    assert len(record) <= MAX_RECORD_BYTES
    assert len(base64.b64encode(record)) <= 2500
    with pytest.raises(SimChargerError, match="at most 1875"):
        meter.record([MeterValue(T0 + i * 1000, i, "C") for i in range(20)])


# -- an OCPP backend (the ocpp package's server side) ----------------------------------------------


class _Recording:
    backend: Backend
    id: str

    def note(self, action: str, payload: dict[str, Any]) -> None:
        self.backend.received[self.id].append((action, payload))


class _Backend16(Central16, _Recording):
    @on("BootNotification")
    def boot(self, **kw: Any) -> Any:
        self.note("BootNotification", kw)
        return result16.BootNotification(current_time="2026-01-01T00:00:00Z", interval=self.backend.heartbeat_s,
                                         status="Accepted")  # fmt: skip

    @on("Heartbeat")
    def heartbeat(self, **kw: Any) -> Any:
        self.note("Heartbeat", kw)
        return result16.Heartbeat(current_time="2026-01-01T00:00:00Z")

    @on("StatusNotification")
    def status(self, **kw: Any) -> Any:
        self.note("StatusNotification", kw)
        return result16.StatusNotification()

    @on("Authorize")
    def authorize(self, **kw: Any) -> Any:
        self.note("Authorize", kw)
        return result16.Authorize(id_tag_info={"status": "Accepted"})

    @on("StartTransaction")
    def start_transaction(self, **kw: Any) -> Any:
        self.note("StartTransaction", kw)
        return result16.StartTransaction(transaction_id=next(self.backend.numbers),
                                         id_tag_info={"status": "Accepted"})  # fmt: skip

    @on("MeterValues")
    def meter_values(self, **kw: Any) -> Any:
        self.note("MeterValues", kw)
        return result16.MeterValues()

    @on("StopTransaction")
    def stop_transaction(self, **kw: Any) -> Any:
        self.note("StopTransaction", kw)
        return result16.StopTransaction()


class _Backend201(Central201, _Recording):
    @on("BootNotification")
    def boot(self, **kw: Any) -> Any:
        self.note("BootNotification", kw)
        return result201.BootNotification(current_time="2026-01-01T00:00:00Z", interval=self.backend.heartbeat_s,
                                          status="Accepted")  # fmt: skip

    @on("Heartbeat")
    def heartbeat(self, **kw: Any) -> Any:
        self.note("Heartbeat", kw)
        return result201.Heartbeat(current_time="2026-01-01T00:00:00Z")

    @on("StatusNotification")
    def status(self, **kw: Any) -> Any:
        self.note("StatusNotification", kw)
        return result201.StatusNotification()

    @on("Authorize")
    def authorize(self, **kw: Any) -> Any:
        self.note("Authorize", kw)
        return result201.Authorize(id_token_info={"status": "Accepted"})

    @on("TransactionEvent")
    def transaction_event(self, **kw: Any) -> Any:
        self.note("TransactionEvent", kw)
        return result201.TransactionEvent()


class Backend:
    """A central system on 127.0.0.1 (ephemeral port) that records what each charge point sends."""

    def __init__(
        self, password: str | None = None, heartbeat_s: int = 300, tls: ssl.SSLContext | None = None
    ) -> None:
        self.password = password
        self.tls = tls
        self.heartbeat_s = heartbeat_s
        self.received: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        self.peers: dict[str, Any] = {}
        self.numbers = count(100)
        self.url = ""

    def _auth(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.password is None:
            return None
        name = request.path.rstrip("/").rsplit("/", 1)[-1]
        expected = "Basic " + base64.b64encode(f"{name}:{self.password}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "unauthorized\n")
        return None

    async def _serve(self, ws: ServerConnection) -> None:
        cp_id = ws.request.path.rstrip("/").rsplit("/", 1)[-1] if ws.request else ""
        cls = _Backend16 if ws.subprotocol == "ocpp1.6" else _Backend201
        peer = cls(cp_id, ws)
        peer.backend, peer.id = self, cp_id
        self.peers[cp_id] = peer
        with contextlib.suppress(websockets.ConnectionClosed):
            await peer.start()

    @contextlib.asynccontextmanager
    async def running(self) -> Any:
        async with serve(self._serve, "127.0.0.1", 0, subprotocols=[websockets.Subprotocol("ocpp1.6"),
                         websockets.Subprotocol("ocpp2.0.1")], process_request=self._auth, ssl=self.tls) as server:  # fmt: skip
            port = next(iter(server.sockets)).getsockname()[1]
            self.url = f"{'wss' if self.tls else 'ws'}://127.0.0.1:{port}/ocpp"
            yield self

    async def peer(self, cp_id: str) -> Any:
        await eventually(lambda: cp_id in self.peers, f"{cp_id} connected")
        return self.peers[cp_id]

    def actions(self, cp_id: str) -> list[str]:
        return [action for action, _ in self.received[cp_id]]

    def requests(self, cp_id: str, action: str) -> list[dict[str, Any]]:
        return [payload for name, payload in self.received[cp_id] if name == action]


def signed_values(backend: Backend, cp_id: str, version: str) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(action, context, SignedMeterValueType with camelCase names) of every signed value received."""
    for action, payload in backend.received[cp_id]:
        if version == "1.6":
            groups = payload.get("meter_value") or payload.get("transaction_data") or []
            for group in groups:
                for sample in group["sampled_value"]:
                    if sample.get("format") == "SignedData":
                        assert sample["measurand"] == "Energy.Active.Import.Register"
                        yield action, sample["context"], json.loads(sample["value"])
        else:
            for group in payload.get("meter_value") or []:
                for sample in group["sampled_value"]:
                    if "signed_meter_value" in sample:
                        smv = sample["signed_meter_value"]
                        yield action, sample["context"], {
                            "signedMeterData": smv["signed_meter_data"], "signingMethod": smv["signing_method"],
                            "encodingMethod": smv["encoding_method"], "publicKey": smv["public_key"],
                        }  # fmt: skip


def energy_samples(backend: Backend, cp_id: str, context: str) -> list[int]:
    """The plain (not SignedData) register values of one context, in Wh, in arrival order."""
    found = []
    for _, payload in backend.received[cp_id]:
        for group in payload.get("meter_value") or payload.get("transaction_data") or []:
            for sample in group["sampled_value"]:
                plain = (
                    sample.get("format", "Raw") == "Raw"
                )  # 2.0.1: the value is a number beside the signature
                if plain and sample.get("context") == context and sample.get("measurand") == ENERGY:
                    found.append(int(sample["value"]))
    return found


VERSIONS = pytest.mark.parametrize("version", ["1.6", "2.0.1"])


# -- boot, heartbeats, configuration ----------------------------------------------------------------


async def _configuration(backend: Backend, cp_id: str, version: str) -> dict[str, str]:
    """The signing-related settings as the backend reads them: name -> value or status."""
    peer = await backend.peer(cp_id)
    if version == "1.6":
        got = await peer.call(call16.GetConfiguration(key=["SampledDataSignReadings", "MeterPublicKey[1]",
                              "MeterValueSampleInterval", "PublicKeyWithSignedMeterValue", "NoSuchKey"]))  # fmt: skip
        out = {item["key"]: item["value"] for item in got.configuration_key or []}
        out |= dict.fromkeys(got.unknown_key or [], "unknown")
        return out
    items = [("SampledDataCtrlr", "SignReadings"), ("FiscalMetering", "PublicKey"),
             ("SampledDataCtrlr", "TxUpdatedInterval"), ("SampledDataCtrlr", "NoSuchVariable")]  # fmt: skip
    got = await peer.call(call201.GetVariables(get_variable_data=[
        {"component": {"name": c}, "variable": {"name": v}} for c, v in items]))  # fmt: skip
    return {
        f"{r['component']['name']}.{r['variable']['name']}": r.get("attribute_value", r["attribute_status"])
        for r in got.get_variable_result
    }


async def _change(backend: Backend, cp_id: str, version: str, name: str, value: str) -> str:
    peer = await backend.peer(cp_id)
    if version == "1.6":
        return str((await peer.call(call16.ChangeConfiguration(key=name, value=value))).status)
    component, variable = name.split(".")
    got = await peer.call(call201.SetVariables(set_variable_data=[
        {"attribute_value": value, "component": {"name": component}, "variable": {"name": variable}}]))  # fmt: skip
    return str(got.set_variable_result[0]["attribute_status"])


@VERSIONS
def test_boot_heartbeats_and_configuration(version: str) -> None:
    meter = OcmfMeter("boot")

    async def scenario() -> None:
        backend = Backend(heartbeat_s=1)
        async with (
            backend.running(),
            SimulatedChargePoint(
                backend.url,
                charge_point_id="CP-boot",
                version=version,
                meter=meter,  # type: ignore[arg-type]
            ) as cp,
        ):
            assert await cp.boot() == "Accepted"
            await eventually(lambda: "Heartbeat" in backend.actions("CP-boot"), "a heartbeat")
            assert backend.actions("CP-boot")[:2] == ["BootNotification", "StatusNotification"]
            config = await _configuration(backend, "CP-boot", version)
            if version == "1.6":
                assert config == {
                    "SampledDataSignReadings": "true",
                    "MeterPublicKey[1]": meter.public_key_oca(),
                    "MeterValueSampleInterval": "60",
                    "PublicKeyWithSignedMeterValue": "OncePerTransaction",
                    "NoSuchKey": "unknown",
                }
                changes = [("MeterValueSampleInterval", "15", "Accepted"), ("MeterValueSampleInterval", "soon", "Rejected"),
                           ("MeterPublicKey[1]", "00", "Rejected"), ("NoSuchKey", "1", "NotSupported"),
                           ("MeterValuesSampledData", "Energy.Active.Import.Register,Power.Active.Import", "Accepted"),
                           ("MeterValuesSampledData", "Voltage", "Rejected"),
                           ("PublicKeyWithSignedMeterValue", "EveryMeterValue", "Accepted")]  # fmt: skip
            else:
                assert config == {
                    "SampledDataCtrlr.SignReadings": "true",
                    "FiscalMetering.PublicKey": meter.public_key_oca(),
                    "SampledDataCtrlr.TxUpdatedInterval": "60",
                    "SampledDataCtrlr.NoSuchVariable": "UnknownVariable",
                }
                changes = [("SampledDataCtrlr.TxUpdatedInterval", "15", "Accepted"),
                           ("SampledDataCtrlr.TxUpdatedInterval", "-1", "Rejected"),
                           ("FiscalMetering.PublicKey", "00", "Rejected"), ("Nothing.Here", "1", "UnknownComponent"),
                           ("SampledDataCtrlr.SignReadings", "maybe", "Rejected")]  # fmt: skip
            for name, value, expected in changes:
                assert await _change(backend, "CP-boot", version, name, value) == expected, name
            assert cp.settings.interval_s == 15
            assert MeterKey.from_text(meter.public_key_oca()) == meter.meter_key()

    run(scenario())


@VERSIONS
def test_a_charger_without_signing_says_so_and_sends_no_signed_values(version: str) -> None:
    async def scenario() -> None:
        backend = Backend()
        async with backend.running(), SimulatedChargePoint(
            backend.url, charge_point_id="CP-plain", version=version, signing=False,  # type: ignore[arg-type]
            clock=Clock(speed=600),
        ) as cp:  # fmt: skip
            await cp.boot()
            config = await _configuration(backend, "CP-plain", version)
            if version == "1.6":
                assert config["SampledDataSignReadings"] == config["MeterPublicKey[1]"] == "unknown"
                assert config["MeterValueSampleInterval"] == "60"
                assert (
                    await _change(backend, "CP-plain", version, "SampledDataSignReadings", "true")
                    == "NotSupported"
                )
            else:
                assert config["FiscalMetering.PublicKey"] == "UnknownComponent"
                assert config["SampledDataCtrlr.SignReadings"] == "UnknownVariable"
                assert (
                    await _change(backend, "CP-plain", version, "SampledDataCtrlr.SignReadings", "true")
                    == "UnknownVariable"
                )
            result = await cp.session(energy_wh=1_000, meter_values=1)
            assert result.records == []
            assert list(signed_values(backend, "CP-plain", version)) == []
            assert energy_samples(backend, "CP-plain", "Sample.Periodic") == [500]

    run(scenario())


# -- a charging session with signed begin and end values ------------------------------------------


@VERSIONS
def test_a_session_delivers_signed_begin_and_end_records_that_verify(version: str) -> None:
    meter = OcmfMeter("session")
    cp_id = f"CP-{version}"

    async def scenario() -> None:
        backend = Backend()
        clock = Clock(speed=200)
        async with backend.running(), SimulatedChargePoint(
            backend.url, charge_point_id=cp_id, version=version, meter=meter, clock=clock,  # type: ignore[arg-type]
            register_wh=1_000_000,
        ) as cp:  # fmt: skip
            await cp.boot()
            name = "MeterValueSampleInterval" if version == "1.6" else "SampledDataCtrlr.TxUpdatedInterval"
            assert await _change(backend, cp_id, version, name, "10") == "Accepted"
            before = clock.now_ms()
            result = await cp.session(energy_wh=7_400, meter_values=3)
            after = clock.now_ms()
            assert (result.register_start_wh, result.register_stop_wh) == (1_000_000, 1_007_400)
            assert cp.register_wh == 1_007_400
            actions = backend.actions(cp_id)
            if version == "1.6":
                start = actions.index("StartTransaction")
                assert actions[start - 1] == "Authorize"
                assert actions[start + 1] == "MeterValues"  # the signed begin, at once
                assert actions[-2:] == ["StopTransaction", "StatusNotification"]
                (stop,) = backend.requests(cp_id, "StopTransaction")
                assert stop["meter_stop"] == 1_007_400
                assert backend.requests(cp_id, "StartTransaction")[0]["meter_start"] == 1_000_000
                assert str(stop["transaction_id"]) == result.transaction_id
                assert [g["sampled_value"][0]["context"] for g in stop["transaction_data"]] == [
                    "Transaction.Begin", "Transaction.End"]  # fmt: skip
            else:
                events = [p["event_type"] for p in backend.requests(cp_id, "TransactionEvent")]
                assert events == ["Started", "Updated", "Updated", "Updated", "Ended"]
                seq = [p["seq_no"] for p in backend.requests(cp_id, "TransactionEvent")]
                assert seq == [0, 1, 2, 3, 4]
            assert energy_samples(backend, cp_id, "Sample.Periodic") == [
                1_001_850,
                1_003_700,
                1_005_550,
            ]

            signed = list(signed_values(backend, cp_id, version))
            where = [(action, context) for action, context, _ in signed]
            if version == "1.6":
                assert where == [("MeterValues", "Transaction.Begin"), ("StopTransaction", "Transaction.Begin"),
                                 ("StopTransaction", "Transaction.End")]  # fmt: skip
            else:
                assert where == [
                    ("TransactionEvent", "Transaction.Begin"),
                    ("TransactionEvent", "Transaction.End"),
                ]
            records = []
            for _, _, smv in signed:
                assert (smv["signingMethod"], smv["encodingMethod"]) == ("", "OCMF")
                records.append(base64.b64decode(smv["signedMeterData"], validate=True))
            # OncePerTransaction: the begin value carries the key, as the OCA note spells it (1.6
            # repeats that very value in StopTransaction), the end value none
            key_text = base64.b64decode(signed[0][2]["publicKey"]).decode()
            assert key_text == f"oca:base16:asn1:{meter.public_key_hex()}"
            keyed = [bool(smv["publicKey"]) for _, _, smv in signed]
            assert keyed == ([True, True, False] if version == "1.6" else [True, False])
            key = MeterKey.from_text(signed[0][2]["publicKey"])
            assert key == meter.meter_key()
            assert records[0] == result.records[0]
            assert records[-1] == result.records[-1]
            begin, end = parse_ocmf(records[0]), parse_ocmf(records[-1])
            for record in (begin, end):
                verify_record_signature(record, key)
                assert before - 1000 <= _tm_ms(record.readings[0].time) <= after
            assert (begin.readings[0].transaction, begin.readings[0].energy_mwh()) == ("B", 1_000_000_000)
            assert (end.readings[0].transaction, end.readings[0].energy_mwh()) == ("E", 1_007_400_000)
            assert int(begin.pagination[1:]) + 1 == int(end.pagination[1:])  # type: ignore[index]
            assert json.loads(begin.payload_bytes)["ID"] == "1A2B3C4D"
            # the session took 4 intervals of 10 s on the simulated clock
            assert _tm_ms(end.readings[0].time) - _tm_ms(begin.readings[0].time) >= 40_000

    run(scenario())


def test_signed_periodic_values_and_a_key_with_every_value() -> None:
    meter = OcmfMeter("periodic")

    async def scenario() -> None:
        backend = Backend()
        async with (
            backend.running(),
            SimulatedChargePoint(
                backend.url, charge_point_id="CP-every", version="1.6", meter=meter, clock=Clock(speed=600)
            ) as cp,
        ):
            await cp.boot()
            for key, value in (("SampledDataSignUpdatedReadings", "true"), ("PublicKeyWithSignedMeterValue",
                               "EveryMeterValue"), ("MeterValueSampleInterval", "30")):  # fmt: skip
                assert await _change(backend, "CP-every", "1.6", key, value) == "Accepted"
            result = await cp.session(energy_wh=300, meter_values=2)
            signed = list(signed_values(backend, "CP-every", "1.6"))
            contexts = [context for _, context, _ in signed]
            assert contexts == ["Transaction.Begin", "Sample.Periodic", "Sample.Periodic", "Transaction.Begin",
                                "Transaction.End"]  # fmt: skip
            assert all(MeterKey.from_text(smv["publicKey"]) == meter.meter_key() for _, _, smv in signed)
            parsed = [parse_ocmf(r) for r in result.records]
            assert [p.readings[0].transaction for p in parsed] == ["B", "C", "C", "E"]
            assert [p.readings[0].energy_mwh() for p in parsed] == [0, 100_000, 200_000, 300_000]
            assert [p.pagination for p in parsed] == ["T1", "T2", "T3", "T4"]

    run(scenario())


def test_no_periodic_values_when_the_interval_is_zero() -> None:
    async def scenario() -> None:
        backend = Backend()
        async with (
            backend.running(),
            SimulatedChargePoint(
                backend.url, charge_point_id="CP-zero", version="2.0.1", clock=Clock(speed=600)
            ) as cp,
        ):
            await cp.boot()
            for name, value in (
                ("SampledDataCtrlr.TxUpdatedInterval", "0"),
                ("SampledDataCtrlr.SignUpdatedReadings", "true"),
            ):
                assert await _change(backend, "CP-zero", "2.0.1", name, value) == "Accepted"
            result = await cp.session(energy_wh=100, meter_values=3)
            events = backend.requests("CP-zero", "TransactionEvent")
            assert [(e["event_type"], e["seq_no"]) for e in events] == [("Started", 0), ("Ended", 1)]
            assert [parse_ocmf(r).pagination for r in result.records] == ["T1", "T2"]  # no gaps either

    run(scenario())


def _tm_ms(tm: str) -> int:
    when = datetime.datetime.strptime(tm.replace(",", "."), "%Y-%m-%dT%H:%M:%S.%f%z")
    return int(when.timestamp() * 1000)


# -- authentication ---------------------------------------------------------------------------------


def test_basic_auth_with_the_charge_point_id_as_username() -> None:
    async def scenario() -> None:
        backend = Backend(password="s3cret")
        async with backend.running():
            async with SimulatedChargePoint(backend.url, charge_point_id="CP-auth", password="s3cret") as cp:
                assert await cp.boot() == "Accepted"
            with pytest.raises(SimChargerError) as info:
                async with SimulatedChargePoint(backend.url, charge_point_id="CP-auth", password="wrong"):
                    pass
            assert info.value.code == Exit.REFUSED
            assert "401" in info.value.message

    run(scenario())


def _tls_files(where: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1 it signed: (ca.pem, server.pem, server.key)."""
    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key: Any, issuer: str, signer: Any, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("test CA", ca_key, "test CA", ca_key, ca=True)
    server = certificate("127.0.0.1", server_key, "test CA", ca_key, ca=False)
    paths = where / "ca.pem", where / "server.pem", where / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))  # fmt: skip
    return paths


def test_wss_with_the_installers_ca(tmp_path: Path) -> None:
    ca, cert, key = _tls_files(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)

    async def scenario() -> None:
        backend = Backend(password="pw", tls=tls)
        async with backend.running():
            assert backend.url.startswith("wss://127.0.0.1:")
            async with SimulatedChargePoint(
                backend.url, charge_point_id="CP-tls", password="pw", ca_file=ca
            ) as cp:
                assert await cp.boot() == "Accepted"
            with pytest.raises(SimChargerError) as info:  # the system's CAs do not know this one
                async with SimulatedChargePoint(backend.url, charge_point_id="CP-tls", password="pw"):
                    pass
            assert info.value.code == Exit.UNREACHABLE
            assert "certificate" in info.value.message.lower()

    run(scenario())


# -- the command line ---------------------------------------------------------------------------------


async def _cli(*args: str) -> tuple[int | None, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent.simcharger", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    return process.returncode, out.decode(), err.decode()


@VERSIONS
def test_the_command_line_runs_sessions_against_a_backend_and_its_meter_continues(
    version: str, tmp_path: Path
) -> None:
    state = tmp_path / "meter.json"
    args = ["--id", "CP-cli", "--version", version, "--password", "pw", "--meter-values", "1", "--interval", "10",
            "--speed", "100", "--seed", "cli-seed", "--energy-wh", "2000", "--register-wh", "500",
            "--state", str(state)]  # fmt: skip

    async def scenario() -> tuple[Backend, list[str]]:
        backend = Backend(password="pw")
        outputs = []
        async with backend.running():
            for sessions in ("2", "1"):  # a second run: the meter goes on where it stopped
                code, out, err = await _cli("--url", backend.url, "--sessions", sessions, *args)
                assert code == 0, err
                outputs.append(out)
        return backend, outputs

    backend, (first, second) = run(scenario())
    lines = first.splitlines()
    label = OcmfMeter("cli-seed").public_key_hex()
    assert lines[0] == f"meter public key (secp256r1, DER hex): {label}"
    assert lines[1] == f"meter state: {state} (register 500 Wh, next record T1)"
    assert any(line.startswith("-> BootNotification ") for line in lines)
    assert sum(line.startswith("   OCMF record: OCMF|") for line in lines) == 4
    assert second.splitlines()[1] == f"meter state: {state} (register 4500 Wh, next record T5)"
    assert json.loads(state.read_text()) == {"next_page": 7, "register_wh": 6500}
    key = MeterKey.from_text(label)
    signed = [
        smv for _, context, smv in signed_values(backend, "CP-cli", version) if context == "Transaction.End"
    ]
    ends = [parse_ocmf(base64.b64decode(smv["signedMeterData"])) for smv in signed]
    assert [e.readings[0].energy_mwh() for e in ends] == [2_500_000, 4_500_000, 6_500_000]
    assert [e.pagination for e in ends] == ["T2", "T4", "T6"]
    for record in ends:
        verify_record_signature(record, key)


def test_the_command_line_says_when_the_backend_is_unreachable(tmp_path: Path) -> None:
    async def scenario() -> tuple[int | None, str]:
        backend = Backend()
        async with backend.running():
            url = backend.url
        # the server is closed now: nothing listens on its port
        code, _, err = await _cli("--url", url, "--id", "CP-x", "--state", str(state))
        return code, err

    state = tmp_path / "meter.json"
    code, err = run(scenario())
    assert code == Exit.UNREACHABLE
    assert err.startswith("error: cannot connect to ws://127.0.0.1:")
    assert not state.exists()


def test_the_command_line_refuses_a_damaged_meter_state(tmp_path: Path) -> None:
    state = tmp_path / "meter.json"
    state.write_text("{not json")
    code, _, err = run(_cli("--url", "ws://127.0.0.1:9/ocpp", "--id", "CP-x", "--state", str(state)))
    assert code == Exit.USAGE
    assert "not a simulated meter's state" in err
