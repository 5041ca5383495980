# mypy: disable-error-code="import-untyped,untyped-decorator"
# (the ocpp package ships no type information)
"""Local backend, OCPP 2.0.1: the agent answers the charging station itself (the ocpp package).

As in 1.6 (edge_agent/ocpp/local16.py): every CALL is screened and its meter data stored before
it is answered; after BootNotification the backend sets the sampled-data variables for signed
energy registers (SetVariables) and reads ``FiscalMetering.PublicKey`` (GetVariables), reporting
every answer that is not Accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ocpp.exceptions import OCPPError
from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action, AuthorizationStatusEnumType, RegistrationStatusEnumType

from edge_agent.ocpp.local16 import now_iso
from edge_agent.ocpp.server import Hub, screen_frame
from edge_agent.ocpp.values import REGISTER

log = logging.getLogger("edge_agent.ocpp")


def wanted_variables(sample_interval_s: int) -> list[tuple[str, str, str]]:
    """(component, variable, value) the backend sets at boot."""
    interval = str(sample_interval_s)
    return [
        ("SampledDataCtrlr", "SignReadings", "true"),
        ("SampledDataCtrlr", "TxStartedMeasurands", REGISTER),
        ("SampledDataCtrlr", "TxUpdatedMeasurands", REGISTER),
        ("SampledDataCtrlr", "TxEndedMeasurands", REGISTER),
        ("SampledDataCtrlr", "TxUpdatedInterval", interval),
        ("AlignedDataCtrlr", "Measurands", REGISTER),
        ("AlignedDataCtrlr", "Interval", interval),
        ("AlignedDataCtrlr", "SignReadings", "true"),
        ("OCPPCommCtrlr", "PublicKeyWithSignedMeterValue", "OncePerTransaction"),
    ]


class LocalBackend201(ChargePoint):  # type: ignore[misc]
    def __init__(self, charge_point_id: str, connection: Any, hub: Hub) -> None:
        super().__init__(charge_point_id, connection, response_timeout=30)
        self.hub = hub
        self._configuring: asyncio.Task[None] | None = None

    async def route_message(self, raw_msg: str) -> None:
        error = await screen_frame(
            raw_msg,
            version="2.0.1",
            charge_point_id=self.id,
            subprotocol="ocpp2.0.1",
            on_call=self.hub.on_call,
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

    # ------------------------------------------------------------------ CALLs from the charging station

    @on(Action.boot_notification)
    def on_boot_notification(self, charging_station: dict[str, Any], reason: str, **kwargs: Any) -> Any:
        log.info(
            "OCPP: charger %s booted (%s): %s %s",
            self.id,
            reason,
            charging_station.get("vendor_name"),
            charging_station.get("model"),
        )
        return call_result.BootNotification(
            current_time=now_iso(),
            interval=self.hub.settings.heartbeat_interval_s,
            status=RegistrationStatusEnumType.accepted,
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

    def _id_token_info(self, id_token: dict[str, Any]) -> dict[str, str]:
        token = str(id_token.get("id_token", ""))
        allowed = self.hub.id_tag_allowed(token)
        if not allowed:
            log.warning(
                "OCPP: charger %s: id token %r is not in [meter.ocpp] id_tags: Invalid", self.id, token
            )
        return {
            "status": AuthorizationStatusEnumType.accepted if allowed else AuthorizationStatusEnumType.invalid
        }

    @on(Action.authorize)
    def on_authorize(self, id_token: dict[str, Any], **kwargs: Any) -> Any:
        return call_result.Authorize(id_token_info=self._id_token_info(id_token))

    @on(Action.transaction_event)
    def on_transaction_event(self, id_token: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if id_token is None:
            return call_result.TransactionEvent()
        return call_result.TransactionEvent(id_token_info=self._id_token_info(id_token))

    @on(Action.meter_values)
    def on_meter_values(self, **kwargs: Any) -> Any:
        return call_result.MeterValues()

    @on(Action.notify_report)
    def on_notify_report(self, **kwargs: Any) -> Any:
        return call_result.NotifyReport()

    @on(Action.notify_event)
    def on_notify_event(self, **kwargs: Any) -> Any:
        return call_result.NotifyEvent()

    @on(Action.security_event_notification)
    def on_security_event(self, **kwargs: Any) -> Any:
        return call_result.SecurityEventNotification()

    @on(Action.firmware_status_notification)
    def on_firmware_status(self, **kwargs: Any) -> Any:
        return call_result.FirmwareStatusNotification()

    @on(Action.data_transfer)
    def on_data_transfer(self, **kwargs: Any) -> Any:
        return call_result.DataTransfer(status="UnknownVendorId")

    # ------------------------------------------------------------------ requests to the charging station

    async def configure(self) -> None:
        """Set the signed-reading variables; read the meter's public key (each answer reported)."""
        wanted = wanted_variables(self.hub.settings.sample_interval_s)
        try:
            try:
                result = await self.call(
                    call.SetVariables(
                        set_variable_data=[
                            {"component": {"name": c}, "variable": {"name": v}, "attribute_value": value}
                            for c, v, value in wanted
                        ]
                    ),
                    suppress=False,
                )
            except OCPPError as exc:
                self.hub.config_answer(self.id, "SetVariables", "", f"CallError {exc.code}")
            else:
                values = {(c, v): value for c, v, value in wanted}
                for item in result.set_variable_result or []:
                    component = str(item.get("component", {}).get("name", ""))
                    variable = str(item.get("variable", {}).get("name", ""))
                    name = f"{component}.{variable}"
                    self.hub.config_answer(
                        self.id,
                        name,
                        values.get((component, variable), ""),
                        str(item.get("attribute_status")),
                    )
            try:
                got = await self.call(
                    call.GetVariables(
                        get_variable_data=[
                            {"component": {"name": "FiscalMetering"}, "variable": {"name": "PublicKey"}}
                        ]
                    ),
                    suppress=False,
                )
            except OCPPError as exc:
                self.hub.config_answer(self.id, "GetVariables", "", f"CallError {exc.code}")
                return
            for item in got.get_variable_result or []:
                if item.get("attribute_status") == "Accepted" and item.get("attribute_value"):
                    self.hub.reported_key(
                        self.id, str(item["attribute_value"]), "variable FiscalMetering.PublicKey"
                    )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a station that answers badly or not at all is reported, never fatal
            log.warning("OCPP: charger %s: configuring signed meter values failed: %s", self.id, exc)
            self.hub.config_answer(self.id, "(configuration)", "", f"failed: {exc or type(exc).__name__}")
