# mypy: disable-error-code="import-untyped,untyped-decorator"
# (the ocpp package ships no type information)
"""Local backend, OCPP 1.6: the agent answers the charger itself (the ocpp package's ChargePoint).

Every CALL is screened first (:func:`edge_agent.ocpp.server.screen_frame`): malformed frames and
invalid payloads get a CallError, and the meter data of a valid CALL is stored before the
package's handler answers it.  After BootNotification the backend asks the charger for signed
meter values (ChangeConfiguration) and reads its meter's public key (GetConfiguration); every
answer that is not Accepted is reported (log and ``status``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from ocpp.exceptions import OCPPError
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus

from edge_agent.ocpp.server import Hub, screen_frame
from edge_agent.ocpp.values import REGISTER

log = logging.getLogger("edge_agent.ocpp")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def wanted_configuration(sample_interval_s: int) -> list[tuple[str, str]]:
    """(key, value) the backend sets at boot: signed energy registers at start, during and at the end."""
    return [
        ("SampledDataSignReadings", "true"),
        ("SampledDataSignStartedReadings", "true"),
        ("SampledDataSignUpdatedReadings", "true"),
        ("StartTxnSampledData", REGISTER),
        ("MeterValuesSampledData", REGISTER),
        ("StopTxnSampledData", REGISTER),
        ("MeterValueSampleInterval", str(sample_interval_s)),
        ("ClockAlignedDataInterval", str(sample_interval_s)),
        ("MeterValuesAlignedData", REGISTER),
        ("PublicKeyWithSignedMeterValue", "OncePerTransaction"),
    ]


class LocalBackend16(ChargePoint):  # type: ignore[misc]
    def __init__(self, charge_point_id: str, connection: Any, hub: Hub) -> None:
        super().__init__(charge_point_id, connection, response_timeout=30)
        self.hub = hub
        self._configuring: asyncio.Task[None] | None = None

    async def route_message(self, raw_msg: str) -> None:
        error = await screen_frame(
            raw_msg, version="1.6", charge_point_id=self.id, subprotocol="ocpp1.6", on_call=self.hub.on_call
        )
        if error is not None:
            await self._send(error)
            return
        await super().route_message(raw_msg)

    async def serve(self) -> None:
        try:
            await self.start()
        finally:
            if self._configuring is not None:
                self._configuring.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._configuring

    # ------------------------------------------------------------------ CALLs from the charger

    @on(Action.boot_notification)
    def on_boot_notification(self, charge_point_vendor: str, charge_point_model: str, **kwargs: Any) -> Any:
        log.info("OCPP: charger %s booted: %s %s", self.id, charge_point_vendor, charge_point_model)
        return call_result.BootNotification(
            current_time=now_iso(),
            interval=self.hub.settings.heartbeat_interval_s,
            status=RegistrationStatus.accepted,
        )

    @after(Action.boot_notification)
    def after_boot_notification(self, **kwargs: Any) -> None:
        if self._configuring is None or self._configuring.done():
            self._configuring = asyncio.get_running_loop().create_task(self.configure())

    @on(Action.heartbeat)
    def on_heartbeat(self) -> Any:
        return call_result.Heartbeat(current_time=now_iso())

    @on(Action.status_notification)
    def on_status_notification(self, **kwargs: Any) -> Any:
        return call_result.StatusNotification()

    def _id_tag_info(self, id_tag: str) -> dict[str, str]:
        allowed = self.hub.id_tag_allowed(id_tag)
        if not allowed:
            log.warning(
                "OCPP: charger %s: id tag %r is not in [meter.ocpp] id_tags: Invalid", self.id, id_tag
            )
        return {"status": AuthorizationStatus.accepted if allowed else AuthorizationStatus.invalid}

    @on(Action.authorize)
    def on_authorize(self, id_tag: str) -> Any:
        return call_result.Authorize(id_tag_info=self._id_tag_info(id_tag))

    @on(Action.start_transaction)
    def on_start_transaction(self, id_tag: str, **kwargs: Any) -> Any:
        return call_result.StartTransaction(
            transaction_id=self.hub.next_transaction_id(), id_tag_info=self._id_tag_info(id_tag)
        )

    @on(Action.stop_transaction)
    def on_stop_transaction(self, **kwargs: Any) -> Any:
        return call_result.StopTransaction()

    @on(Action.meter_values)
    def on_meter_values(self, **kwargs: Any) -> Any:
        return call_result.MeterValues()

    @on(Action.data_transfer)
    def on_data_transfer(self, **kwargs: Any) -> Any:
        return call_result.DataTransfer(status="UnknownVendorId")

    @on(Action.firmware_status_notification)
    def on_firmware_status(self, **kwargs: Any) -> Any:
        return call_result.FirmwareStatusNotification()

    @on(Action.diagnostics_status_notification)
    def on_diagnostics_status(self, **kwargs: Any) -> Any:
        return call_result.DiagnosticsStatusNotification()

    # ------------------------------------------------------------------ requests to the charger

    async def configure(self) -> None:
        """Ask for signed meter values; read the meter's public key (each answer reported)."""
        try:
            for key, value in wanted_configuration(self.hub.settings.sample_interval_s):
                try:
                    result = await self.call(call.ChangeConfiguration(key=key, value=value), suppress=False)
                except OCPPError as exc:
                    self.hub.config_answer(self.id, key, value, f"CallError {exc.code}")
                    continue
                self.hub.config_answer(self.id, key, value, str(result.status))
            try:
                result = await self.call(call.GetConfiguration(), suppress=False)
            except OCPPError as exc:
                self.hub.config_answer(self.id, "GetConfiguration", "", f"CallError {exc.code}")
                return
            for entry in result.configuration_key or []:
                name = str(entry.get("key", ""))
                if name.startswith("MeterPublicKey") and entry.get("value"):
                    self.hub.reported_key(self.id, str(entry["value"]), f"configuration key {name}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a charger that answers badly or not at all is reported, never fatal
            log.warning("OCPP: charger %s: configuring signed meter values failed: %s", self.id, exc)
            self.hub.config_answer(self.id, "(configuration)", "", f"failed: {exc or type(exc).__name__}")
