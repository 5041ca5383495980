"""Proxy mode end to end: a charge point (the ocpp package) ↔ the real agent (``run_agent``, mode
``proxy``) ↔ a backend built with the ocpp package, both versions, over real websockets on
127.0.0.1. The backend answers everything; the agent only relays, and the meter-signed values on
the way reach the outbox, carrying the exact record."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from websockets.asyncio.server import ServerConnection, serve

from attest_core.reading import Status, Trigger
from edge_agent.config import load_config, update_config
from tests.edge_agent.conftest import Cli
from tests.edge_agent.fakes import FakeGateway
from tests.edge_agent.test_ocpp_agent import CP, PASSWORD, TAG, check_record, make_site, running
from tests.edge_agent.test_ocpp_support import charge_point, now_iso

BACKEND_USER = "pi-proxy"
BACKEND_PASSWORD = "backend password 0123456789"


class Backend16(ChargePoint16):  # type: ignore[misc]
    actions: list[str]

    @on("BootNotification")  # type: ignore[misc]
    def boot(self, **_: Any) -> Any:
        self.actions.append("BootNotification")
        return result16.BootNotification(current_time=now_iso(), interval=120, status="Accepted")

    @on("StartTransaction")  # type: ignore[misc]
    def start_tx(self, **_: Any) -> Any:
        self.actions.append("StartTransaction")
        return result16.StartTransaction(transaction_id=4711, id_tag_info={"status": "Accepted"})

    @on("StopTransaction")  # type: ignore[misc]
    def stop_tx(self, **_: Any) -> Any:
        self.actions.append("StopTransaction")
        return result16.StopTransaction()


class Backend201(ChargePoint201):  # type: ignore[misc]
    actions: list[str]

    @on("BootNotification")  # type: ignore[misc]
    def boot(self, **_: Any) -> Any:
        self.actions.append("BootNotification")
        return result201.BootNotification(current_time=now_iso(), interval=120, status="Accepted")

    @on("TransactionEvent")  # type: ignore[misc]
    def transaction_event(self, **_: Any) -> Any:
        self.actions.append("TransactionEvent")
        return result201.TransactionEvent()


@contextlib.asynccontextmanager
async def backend() -> AsyncIterator[tuple[str, list[str], list[str]]]:
    """(url, actions received, Authorization headers seen)."""
    actions: list[str] = []
    auth: list[str] = []

    async def handler(connection: ServerConnection) -> None:
        assert connection.request is not None
        auth.append(connection.request.headers.get("Authorization", ""))
        cp_id = connection.request.path.rsplit("/", 1)[-1]
        cls = Backend16 if connection.subprotocol == "ocpp1.6" else Backend201
        cp = cls(cp_id, connection)
        cp.actions = actions
        with contextlib.suppress(Exception):
            await cp.start()

    async with serve(handler, "127.0.0.1", 0, subprotocols=["ocpp1.6", "ocpp2.0.1"]) as server:  # type: ignore[list-item]
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/csms", actions, auth


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_proxy_relays_and_keeps_the_signed_values(
    tmp_path: Path, cli: Cli, gateway: FakeGateway, version: str
) -> None:
    from tests.edge_agent.test_ocpp_support import SimulatedMeter

    meter = SimulatedMeter()
    site = make_site(tmp_path, cli, gateway, meter_key=meter.public_hex)

    async def scenario() -> None:
        async with backend() as (url, actions, auth):
            update_config(
                site.config.path,
                "meter.ocpp",
                {"mode": "proxy", "upstream_url": url, "upstream_username": BACKEND_USER,
                 "upstream_password": BACKEND_PASSWORD},
            )  # fmt: skip
            site.config = load_config(site.config.path, environ={})
            async with running(site), charge_point(site.url, CP, PASSWORD, version) as cp:
                if version == "1.6":
                    boot = await cp.call(
                        call16.BootNotification(charge_point_model="W", charge_point_vendor="T")
                    )
                    assert boot.interval == 120  # the backend's answer, not the agent's
                    started = await cp.call(
                        call16.StartTransaction(
                            connector_id=1, id_tag=TAG, meter_start=3_000, timestamp=now_iso()
                        )
                    )
                    assert started.transaction_id == 4711
                    record = meter.record([("B", Decimal("3.000")), ("E", Decimal("4.5"))])
                    value = json.dumps(meter.signed_meter_value(record))
                    await cp.call(
                        call16.StopTransaction(
                            meter_stop=4_500,
                            timestamp=now_iso(),
                            transaction_id=4711,
                            transaction_data=[
                                {
                                    "timestamp": now_iso(),
                                    "sampled_value": [
                                        {"value": value, "context": "Transaction.End", "format": "SignedData"}
                                    ],
                                }
                            ],
                        )
                    )
                    signed = site.signed()
                    assert len(signed) == 2
                    check_record(signed[0], record, 0, 3_000_000, meter)
                    check_record(signed[1], record, 1, 4_500_000, meter)
                    assert actions == ["BootNotification", "StartTransaction", "StopTransaction"]
                else:
                    boot = await cp.call(
                        call201.BootNotification(
                            charging_station={"model": "W", "vendor_name": "T"}, reason="PowerUp"
                        )
                    )
                    assert boot.interval == 120
                    begin = meter.record([("B", Decimal("10.000"))])
                    end = meter.record([("E", Decimal("12.250"))])
                    for event, seq_no, record, context, kwh in (
                        ("Started", 0, begin, "Transaction.Begin", Decimal("10.000")),
                        ("Ended", 1, end, "Transaction.End", Decimal("12.250")),
                    ):
                        signed_value = meter.signed_meter_value(record)
                        await cp.call(
                            call201.TransactionEvent(
                                event_type=event,
                                timestamp=now_iso(),
                                trigger_reason="Authorized",
                                seq_no=seq_no,
                                transaction_info={"transaction_id": "tx-9"},
                                meter_value=[
                                    {
                                        "timestamp": now_iso(),
                                        "sampled_value": [
                                            {
                                                "value": float(kwh * 1000),
                                                "context": context,
                                                "signed_meter_value": {
                                                    "signed_meter_data": signed_value["signedMeterData"],
                                                    "signing_method": "",
                                                    "encoding_method": "OCMF",
                                                    "public_key": signed_value["publicKey"],
                                                },
                                            }
                                        ],
                                    }
                                ],
                            )
                        )
                    signed = site.signed()
                    assert len(signed) == 2
                    check_record(signed[0], begin, 0, 10_000_000, meter)
                    check_record(signed[1], end, 0, 12_250_000, meter)
                    assert signed[0].trigger is Trigger.SESSION_START
                    assert signed[1].trigger is Trigger.SESSION_END
                    assert actions == ["BootNotification", "TransactionEvent", "TransactionEvent"]
            expected = "Basic " + base64.b64encode(f"{BACKEND_USER}:{BACKEND_PASSWORD}".encode()).decode()
            assert auth == [expected]
        assert all(not r.status & Status.METER_ERROR for r in site.readings())

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mode": "proxy"}, "needs upstream_url"),
        ({"mode": "proxy", "upstream_url": "http://backend.example/ocpp"}, "must start with ws:// or wss://"),
        ({"mode": "proxy", "upstream_url": "wss://backend.example/ocpp", "upstream_ca_file": "/nonexistent/ca.pem"},
         "TLS files unusable"),
    ],
)  # fmt: skip
def test_proxy_settings_are_checked_at_start(
    tmp_path: Path, cli: Cli, gateway: FakeGateway, settings: dict[str, str], message: str
) -> None:
    from edge_agent.agent import run_agent
    from edge_agent.errors import AgentError
    from tests.edge_agent.test_ocpp_support import SimulatedMeter

    site = make_site(tmp_path, cli, gateway, meter_key=SimulatedMeter().public_hex)
    update_config(site.config.path, "meter.ocpp", settings)
    config = load_config(site.config.path, environ={})
    with pytest.raises(AgentError) as failed:
        asyncio.run(asyncio.wait_for(run_agent(config, asyncio.Event()), 30))
    assert message in str(failed.value)
    assert "cannot start the ocpp meter" in str(failed.value)
