"""A simulated certified charge point: OCPP 1.6 or 2.0.1 over a real websocket, signed values.

Built on the mobilityhouse ``ocpp`` package (the client side of ``ocpp.v16.ChargePoint`` /
``ocpp.v201.ChargePoint``), so what it sends is what that package's schemas accept.  Usage::

    meter = OcmfMeter("my-seed")
    async with SimulatedChargePoint("ws://pi:9000/ocpp", charge_point_id="CP-1", version="1.6",
                                    meter=meter, password="secret") as cp:
        await cp.boot()                                   # BootNotification, then heartbeats
        result = await cp.session(energy_wh=7_400, meter_values=3)

The URL gets the charge point id as its last path segment (OCPP-J); with a password the
connection carries HTTP Basic auth (username = the id: OCPP security profile 1/2); ``wss://``
with an optional CA file.  The websocket subprotocol is ``ocpp1.6`` or ``ocpp2.0.1``.

**A session** (``session``): Authorize, then the transaction start, ``meter_values`` periodic
values ``Energy.Active.Import.Register`` (Wh) at the configured interval, and the stop.  The
register is the meter's lifetime register in whole Wh, rising linearly by ``energy_wh`` over the
session.  With signing on, the meter signs a ``Transaction.Begin`` and a ``Transaction.End``
record (OCMF, TX ``B`` / ``E``; also TX ``C`` records for periodic values when
``SignUpdatedReadings`` is on), carried as the OCA note "Signed Meter Values in OCPP" says:

* 1.6: the 2.x ``SignedMeterValueType`` object as a JSON string in ``sampledValue.value`` with
  ``format: "SignedData"``.  1.6's StartTransaction has no meter values, so the signed begin
  value goes in a MeterValues request with context ``Transaction.Begin`` right after it (as real
  chargers do); StopTransaction's ``transactionData`` holds the begin and end values again,
  raw and signed.
* 2.0.1: ``sampledValue.signedMeterValue`` of TransactionEvent Started (begin), Updated
  (periodic) and Ended (end).

``signedMeterData`` is base64 of the OCMF record, ``signingMethod`` "", ``encodingMethod``
"OCMF", ``publicKey`` base64 of ``oca:base16:asn1:<hex>`` (or "" when
``PublicKeyWithSignedMeterValue`` says not to send it this time).

**Time** comes from a :class:`edge_agent.clock.Clock`: the default is the system clock; a
faster clock (``Clock(speed=600)``) runs a session of minutes in a fraction of a second.  Every
value's meter time is the clock's time when it is sent, so a receiver's clock agrees with it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar, cast
from urllib.parse import quote

import websockets
from ocpp import routing  # type: ignore[import-untyped]
from ocpp.v16 import ChargePoint as ChargePoint16  # type: ignore[import-untyped]
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as ChargePoint201  # type: ignore[import-untyped]
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from edge_agent.clock import Clock
from edge_agent.errors import Exit
from edge_agent.simcharger.errors import SimChargerError
from edge_agent.simcharger.meter import MeterValue, OcmfMeter
from edge_agent.simcharger.settings import ENERGY, POWER, Known, Settings

log = logging.getLogger("edge_agent.simcharger")

Version = Literal["1.6", "2.0.1"]
SUBPROTOCOLS: dict[str, str] = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}
CONNECTOR = 1
DEFAULT_ID_TAG = "1A2B3C4D"  # an RFID card's UID (ISO 14443, 4 bytes in hex)
_F = TypeVar("_F", bound=Callable[..., Any])


def _on(action: str) -> Callable[[_F], _F]:
    """``ocpp.routing.on``, typed (the package has no type information)."""
    return cast(Callable[[_F], _F], routing.on(action))


def ocpp_time(time_ms: int) -> str:
    """OCPP's dateTime: UTC with milliseconds and a Z."""
    when = dt.datetime.fromtimestamp(time_ms // 1000, tz=dt.UTC)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{time_ms % 1000:03d}Z"


@dataclass
class SessionResult:
    transaction_id: str
    register_start_wh: int
    register_stop_wh: int
    records: list[bytes] = field(default_factory=list)
    """The signed OCMF records of the session, in the order the meter made them (begin first)."""


Sent = Callable[[str, dict[str, Any]], None]
"""Told of every request the charge point sends: the action and its payload (snake_case)."""


class _Handlers16(ChargePoint16):  # type: ignore[misc]  # ocpp is untyped
    """The requests a 1.6 central system may send that this charger answers."""

    def __init__(self, cp_id: str, connection: ClientConnection, known: Known) -> None:
        super().__init__(cp_id, connection)
        self.known = known

    @_on("GetConfiguration")
    def on_get_configuration(self, key: list[str] | None = None, **_: Any) -> Any:
        known = self.known
        found, unknown = [], []
        for name in key if key else [s.key16 for s in known.all()]:
            setting = known.by_key(name)
            if setting is None:
                unknown.append(name)
            else:
                found.append({"key": name, "readonly": setting.parse is None, "value": known.value(setting)})
        return result16.GetConfiguration(configuration_key=found, unknown_key=unknown or None)

    @_on("ChangeConfiguration")
    def on_change_configuration(self, key: str, value: str, **_: Any) -> Any:
        setting = self.known.by_key(key)
        if setting is None:
            status = "NotSupported"
        else:
            status = "Accepted" if self.known.change(setting, value) else "Rejected"
        return result16.ChangeConfiguration(status=status)


class _Handlers201(ChargePoint201):  # type: ignore[misc]  # ocpp is untyped
    """The requests a 2.0.1 CSMS may send that this charging station answers."""

    def __init__(self, cp_id: str, connection: ClientConnection, known: Known) -> None:
        super().__init__(cp_id, connection)
        self.known = known

    def _lookup(self, item: dict[str, Any]) -> tuple[str, Any]:
        component, variable = item["component"]["name"], item["variable"]["name"]
        if item.get("attribute_type", "Actual") != "Actual":
            return "NotSupportedAttributeType", None
        setting = self.known.by_variable(component, variable)
        if setting is not None:
            return "Accepted", setting
        if not self.known.has_component(component):
            return "UnknownComponent", None
        return "UnknownVariable", None

    @_on("GetVariables")
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        results = []
        for item in get_variable_data:
            status, setting = self._lookup(item)
            answer = {
                "attribute_status": status,
                "component": item["component"],
                "variable": item["variable"],
            }
            if setting is not None:
                answer["attribute_value"] = self.known.value(setting)
            results.append(answer)
        return result201.GetVariables(get_variable_result=results)

    @_on("SetVariables")
    def on_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        results = []
        for item in set_variable_data:
            status, setting = self._lookup(item)
            if setting is not None and not self.known.change(setting, item["attribute_value"]):
                status = "Rejected"
            results.append(
                {"attribute_status": status, "component": item["component"], "variable": item["variable"]}
            )
        return result201.SetVariables(set_variable_result=results)


class SimulatedChargePoint:
    """A simulated certified charger with one connector; see the module's docstring."""

    def __init__(
        self,
        url: str,
        *,
        charge_point_id: str,
        version: Version = "1.6",
        meter: OcmfMeter | None = None,
        password: str | None = None,
        signing: bool = True,
        clock: Clock | None = None,
        ca_file: Path | None = None,
        register_wh: int = 0,
        id_tag: str = DEFAULT_ID_TAG,
        vendor: str = "IoT-Attest",
        model: str = "SimCharger AC22",
        sent: Sent | None = None,
    ) -> None:
        if version not in SUBPROTOCOLS:
            raise SimChargerError(f"OCPP version {version!r} is not 1.6 or 2.0.1")
        self.url = url.rstrip("/") + "/" + quote(charge_point_id, safe="")
        self.charge_point_id = charge_point_id
        self.version: Version = version
        self.meter = meter or OcmfMeter(charge_point_id)
        self.password = password
        self.clock = clock or Clock()
        self.ca_file = ca_file
        self.register_wh = register_wh
        """The meter's lifetime import register, whole Wh."""
        self.id_tag = id_tag
        self.vendor, self.model = vendor, model
        self.settings = Settings(signing_supported=signing, public_key=self.meter.public_key_oca())
        self.known = Known(self.settings)
        self._sent = sent
        self._ws: ClientConnection | None = None
        self._cp: Any = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.heartbeat_interval_s: int | None = None

    # -- connection ---------------------------------------------------------------------------

    async def __aenter__(self) -> SimulatedChargePoint:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        subprotocol = SUBPROTOCOLS[self.version]
        headers = {}
        if self.password is not None:
            secret = f"{self.charge_point_id}:{self.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(secret).decode("ascii")
        context: ssl.SSLContext | None = None
        if self.url.startswith("wss://"):
            context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        try:
            self._ws = await connect(
                self.url,
                subprotocols=[Subprotocol(subprotocol)],
                additional_headers=headers,
                ssl=context,
                open_timeout=30,
            )
        except websockets.InvalidStatus as exc:
            code = exc.response.status_code
            hint = " (wrong id or password?)" if code in (401, 403) else ""
            raise SimChargerError(
                f"{self.url} refused the charge point: HTTP {code}{hint}",
                Exit.REFUSED if code in (401, 403) else Exit.UNREACHABLE,
            ) from None
        except (OSError, TimeoutError, websockets.InvalidURI, websockets.InvalidHandshake) as exc:
            raise SimChargerError(f"cannot connect to {self.url}: {exc}", Exit.UNREACHABLE) from None
        if self._ws.subprotocol != subprotocol:
            await self._ws.close()
            raise SimChargerError(f"{self.url} did not accept the websocket subprotocol {subprotocol}")
        handlers = _Handlers16 if self.version == "1.6" else _Handlers201
        self._cp = handlers(self.charge_point_id, self._ws, self.known)
        self._tasks.append(asyncio.create_task(self._serve()))

    async def _serve(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await self._cp.start()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._ws is not None:
            await self._ws.close()
            self._ws = None

    async def _call(self, request: Any) -> Any:
        """Send one request; its response, or SimChargerError on a CallError or a lost connection."""
        if self._cp is None:
            raise SimChargerError("the charge point is not connected")
        action = type(request).__name__
        if self._sent is not None:
            self._sent(action, _as_dict(request))
        try:
            response = await self._cp.call(request, suppress=False)
        except websockets.ConnectionClosed:
            raise SimChargerError(f"the backend closed the connection during {action}") from None
        except TimeoutError:
            raise SimChargerError(f"the backend did not answer {action}") from None
        except Exception as exc:  # the ocpp package raises its OCPPError for a CallError
            raise SimChargerError(f"the backend answered {action} with an error: {exc}") from None
        return response

    # -- boot and heartbeat -------------------------------------------------------------------

    async def boot(self, *, heartbeats: bool = True) -> str:
        """BootNotification; raise unless Accepted; then heartbeats at the interval the backend set."""
        if self.version == "1.6":
            response = await self._call(
                call16.BootNotification(
                    charge_point_model=self.model,
                    charge_point_vendor=self.vendor,
                    charge_point_serial_number=self.charge_point_id,
                    meter_type=self.meter.model,
                    meter_serial_number=self.meter.serial,
                )
            )
        else:
            response = await self._call(
                call201.BootNotification(
                    charging_station={
                        "model": self.model,
                        "vendor_name": self.vendor,
                        "serial_number": self.charge_point_id,
                    },
                    reason="PowerUp",
                )
            )
        if response.status != "Accepted":
            raise SimChargerError(f"the backend answered BootNotification with {response.status}")
        self.heartbeat_interval_s = int(response.interval)
        await self._status("Available")
        if heartbeats and self.heartbeat_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._heartbeats(self.heartbeat_interval_s)))
        return str(response.status)

    async def heartbeat(self) -> str:
        response = await self._call(call16.Heartbeat() if self.version == "1.6" else call201.Heartbeat())
        return str(response.current_time)

    async def _heartbeats(self, interval_s: int) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.heartbeat()
            except SimChargerError as exc:
                log.warning("heartbeat: %s", exc)
                return

    async def _status(self, status: str) -> None:
        now = ocpp_time(self.clock.now_ms())
        if self.version == "1.6":
            request = call16.StatusNotification(
                connector_id=CONNECTOR, error_code="NoError", status=status, timestamp=now
            )
        else:
            request = call201.StatusNotification(
                timestamp=now,
                connector_status="Occupied" if status == "Charging" else status,
                evse_id=1,
                connector_id=CONNECTOR,
            )
        await self._call(request)

    # -- a charging session ---------------------------------------------------------------------

    async def _wait_until(self, time_ms: int) -> None:
        while (delay := self.clock.wall_seconds_until(time_ms)) > 0:
            await asyncio.sleep(min(delay, 5.0))

    def _signed(self, record: bytes, with_key: bool) -> dict[str, str]:
        """The 2.x ``SignedMeterValueType`` of a record (snake_case, as the ocpp package takes it)."""
        key = base64.b64encode(self.meter.public_key_oca().encode("ascii")).decode("ascii")
        return {
            "signed_meter_data": base64.b64encode(record).decode("ascii"),
            "signing_method": "",
            "encoding_method": "OCMF",
            "public_key": key if with_key else "",
        }

    def _sampled(
        self,
        context: str,
        register_wh: int,
        power_w: int,
        measurands: tuple[str, ...],
        signed: dict[str, str] | None,
    ) -> list[dict[str, Any]]:
        """The sampled values of one moment, in the version's shape."""
        values: list[dict[str, Any]] = []
        if self.version == "1.6":
            if ENERGY in measurands:
                values.append(_sample16(context, ENERGY, str(register_wh), "Wh"))
            if POWER in measurands:
                values.append(_sample16(context, POWER, str(power_w), "W"))
            if signed is not None:
                doc = {
                    "signedMeterData": signed["signed_meter_data"],
                    "signingMethod": signed["signing_method"],
                    "encodingMethod": signed["encoding_method"],
                    "publicKey": signed["public_key"],
                }
                sample = _sample16(context, ENERGY, json.dumps(doc, separators=(",", ":")), "Wh")
                sample["format"] = "SignedData"
                values.append(sample)
            return values
        if ENERGY in measurands or signed is not None:
            energy = _sample201(context, ENERGY, register_wh, "Wh")
            if signed is not None:
                energy["signed_meter_value"] = signed
            values.append(energy)
        if POWER in measurands:
            values.append(_sample201(context, POWER, power_w, "W"))
        return values

    async def session(
        self, energy_wh: int, meter_values: int = 2, *, id_tag: str | None = None
    ) -> SessionResult:
        """One charging session of ``energy_wh`` with ``meter_values`` periodic values between its
        start and its stop, one configured interval apart (60 s when the interval is 0: then no
        periodic values are sent)."""
        if energy_wh < 0 or meter_values < 0:
            raise SimChargerError("energy and the number of meter values are never negative")
        tag = id_tag or self.id_tag
        settings = self.settings
        step_ms = (settings.interval_s or 60) * 1000
        steps = meter_values + 1
        power_w = energy_wh * 3_600_000 // (steps * step_ms) if step_ms else 0
        start_wh = self.register_wh
        key_sent = False

        def signed(record: bytes) -> dict[str, str]:
            nonlocal key_sent
            mode = settings.public_key_with
            with_key = mode == "EveryMeterValue" or (mode == "OncePerTransaction" and not key_sent)
            key_sent = key_sent or with_key
            return self._signed(record, with_key)

        await self._authorize(tag)
        t0 = self.clock.now_ms()
        result = SessionResult("", start_wh, start_wh + energy_wh)
        begin_signed = None
        if settings.signing:
            record = self.meter.record([MeterValue(t0, start_wh, "B")], id_tag=tag)
            result.records.append(record)
            begin_signed = signed(record)
        begin = {
            "timestamp": ocpp_time(t0),
            "sampled_value": self._sampled(
                "Transaction.Begin", start_wh, 0, settings.started_measurands, begin_signed
            ),
        }
        result.transaction_id = await self._start(tag, t0, begin, begin_signed is not None)
        await self._status("Charging")
        seq_no = 1  # 2.0.1: TransactionEvent messages are numbered without gaps (Started was 0)

        for k in range(1, steps):
            await self._wait_until(t0 + k * step_ms)
            now = self.clock.now_ms()
            self.register_wh = start_wh + energy_wh * k // steps
            if settings.interval_s == 0:  # periodic values switched off: the meter signs nothing here
                continue
            update_signed = None
            if settings.signing and settings.sign_updated:
                record = self.meter.record([MeterValue(now, self.register_wh, "C")], id_tag=tag)
                result.records.append(record)
                update_signed = signed(record)
            sampled = self._sampled(
                "Sample.Periodic", self.register_wh, power_w, settings.updated_measurands, update_signed
            )
            if sampled:
                await self._update(
                    result.transaction_id, seq_no, {"timestamp": ocpp_time(now), "sampled_value": sampled}
                )
                seq_no += 1

        await self._wait_until(t0 + steps * step_ms)
        t1 = self.clock.now_ms()
        self.register_wh = start_wh + energy_wh
        end_signed = None
        if settings.signing:
            record = self.meter.record([MeterValue(t1, self.register_wh, "E")], id_tag=tag)
            result.records.append(record)
            end_signed = signed(record)
        end = {  # the end carries the started measurands (1.6's StopTxnSampledData is not simulated)
            "timestamp": ocpp_time(t1),
            "sampled_value": self._sampled(
                "Transaction.End", self.register_wh, 0, settings.started_measurands, end_signed
            ),
        }
        await self._stop(result.transaction_id, tag, t1, begin, end, seq_no)
        await self._status("Available")
        return result

    async def _authorize(self, tag: str) -> None:
        if self.version == "1.6":
            response = await self._call(call16.Authorize(id_tag=tag))
            status = response.id_tag_info["status"]
        else:
            response = await self._call(call201.Authorize(id_token={"id_token": tag, "type": "ISO14443"}))
            status = response.id_token_info["status"]
        if status != "Accepted":
            raise SimChargerError(f"the backend did not authorize {tag}: {status}")

    async def _start(self, tag: str, t0: int, begin: dict[str, Any], signed: bool) -> str:
        if self.version == "1.6":
            response = await self._call(
                call16.StartTransaction(
                    connector_id=CONNECTOR, id_tag=tag, meter_start=self.register_wh, timestamp=ocpp_time(t0)
                )
            )
            if response.id_tag_info["status"] != "Accepted":
                raise SimChargerError(
                    f"the backend refused the transaction: {response.id_tag_info['status']}"
                )
            number = int(response.transaction_id)
            if signed:  # 1.6's StartTransaction has no meter values: the signed begin follows at once
                await self._call(
                    call16.MeterValues(connector_id=CONNECTOR, transaction_id=number, meter_value=[begin])
                )
            return str(number)
        transaction_id = str(uuid.uuid4())
        await self._call(
            call201.TransactionEvent(
                event_type="Started",
                timestamp=begin["timestamp"],
                trigger_reason="Authorized",
                seq_no=0,
                transaction_info={"transaction_id": transaction_id, "charging_state": "Charging"},
                id_token={"id_token": tag, "type": "ISO14443"},
                evse={"id": 1, "connector_id": CONNECTOR},
                meter_value=[begin] if begin["sampled_value"] else None,
            )
        )
        return transaction_id

    async def _update(self, transaction_id: str, seq_no: int, value: dict[str, Any]) -> None:
        if self.version == "1.6":
            await self._call(
                call16.MeterValues(
                    connector_id=CONNECTOR, transaction_id=int(transaction_id), meter_value=[value]
                )
            )
            return
        await self._call(
            call201.TransactionEvent(
                event_type="Updated",
                timestamp=value["timestamp"],
                trigger_reason="MeterValuePeriodic",
                seq_no=seq_no,
                transaction_info={"transaction_id": transaction_id, "charging_state": "Charging"},
                meter_value=[value],
            )
        )

    async def _stop(
        self, transaction_id: str, tag: str, t1: int, begin: dict[str, Any], end: dict[str, Any], seq_no: int
    ) -> None:
        if self.version == "1.6":
            data = [item for item in (begin, end) if item["sampled_value"]]
            await self._call(
                call16.StopTransaction(
                    meter_stop=self.register_wh,
                    timestamp=ocpp_time(t1),
                    transaction_id=int(transaction_id),
                    reason="Local",
                    id_tag=tag,
                    transaction_data=data or None,
                )
            )
            return
        await self._call(
            call201.TransactionEvent(
                event_type="Ended",
                timestamp=end["timestamp"],
                trigger_reason="StopAuthorized",
                seq_no=seq_no,
                transaction_info={
                    "transaction_id": transaction_id,
                    "charging_state": "EVConnected",
                    "stopped_reason": "Local",
                },
                id_token={"id_token": tag, "type": "ISO14443"},
                meter_value=[end] if end["sampled_value"] else None,
            )
        )


def _sample16(context: str, measurand: str, value: str, unit: str) -> dict[str, Any]:
    return {
        "value": value,
        "context": context,
        "format": "Raw",
        "measurand": measurand,
        "location": "Outlet",
        "unit": unit,
    }


def _sample201(context: str, measurand: str, value: int, unit: str) -> dict[str, Any]:
    return {
        "value": value,
        "context": context,
        "measurand": measurand,
        "location": "Outlet",
        "unit_of_measure": {"unit": unit},
    }


def _as_dict(request: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(request).items() if v is not None}
