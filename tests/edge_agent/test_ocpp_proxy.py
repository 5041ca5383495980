"""The OCPP proxy relay (issue 15, proxy mode) between real peers over real websockets.

charger (the ``ocpp`` package's ChargePoint as a client) -> a tiny test endpoint that hands each
connection to ``relay`` -> backend (the ``ocpp`` package's ChargePoint on the server side with
``@on`` handlers), all on 127.0.0.1 port 0. Both ends record the raw frames they send and
receive, so "unchanged" is checked byte for byte, and the backend records, as each CALL
arrives, how many CALLs the agent's ``on_call`` had already seen ("stored before forwarded").

"Nothing lost" in this design: every frame the charger sent reaches the backend, in order and
unchanged, across a backend outage, except an answer to a backend CALL made on a backend
connection that has since gone (its caller is gone; the relay drops it and says so).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json
import logging
import os
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import websockets.asyncio.client
import websockets.asyncio.server
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from edge_agent.ocpp.proxy import ProxyError, RelayPolicy, Upstream, relay, upstream_ssl_context

MAX_FRAME = 16 * 1024
# Short waits so a test of an outage takes seconds; the relay's logic is the same as with the defaults.
FAST = RelayPolicy(reconnect_first_s=0.2, reconnect_max_s=1.0, hold_seconds=60.0, open_timeout_s=20.0)
WAIT = 20.0  # "should happen" waits: generous, the suite runs on 2 shared cores
OCMF_DIR = Path(__file__).parent.parent / "data" / "ocmf"
V16, V201 = "ocpp1.6", "ocpp2.0.1"


def run(scenario: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(scenario, 120))


async def eventually(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def ocmf_sample() -> tuple[str, str]:
    """A real OCMF record (without the file's trailing newline) and its meter's key hex."""
    record = (OCMF_DIR / "01_keba_kcp30_secp256r1.ocmf").read_text().rstrip("\n")
    key = (OCMF_DIR / "01_keba_kcp30_secp256r1.pubkey.hex").read_text().strip()
    return record, key


class Recording:
    """A websocket as the ``ocpp`` package's ChargePoint uses it, recording each raw frame."""

    def __init__(self, ws: Any, on_receive: Callable[[Any], None] | None = None) -> None:
        self.ws = ws
        self.sent: list[Any] = []
        self.received: list[Any] = []
        self.on_receive = on_receive

    async def send(self, message: Any) -> None:
        self.sent.append(message)
        await self.ws.send(message)

    async def recv(self) -> Any:
        message = await self.ws.recv()
        if self.on_receive is not None:
            self.on_receive(message)
        self.received.append(message)
        return message


# the backend (the operator's CSMS)


class Backend16(ChargePoint16):
    @on(Action16.boot_notification)
    def boot(self, **_: Any) -> Any:
        return result16.BootNotification(current_time=now(), interval=300, status="Accepted")

    @on(Action16.heartbeat)
    def heartbeat(self, **_: Any) -> Any:
        return result16.Heartbeat(current_time=now())

    @on(Action16.status_notification)
    def status(self, **_: Any) -> Any:
        return result16.StatusNotification()

    @on(Action16.authorize)
    def authorize(self, **_: Any) -> Any:
        return result16.Authorize(id_tag_info={"status": "Accepted"})

    @on(Action16.start_transaction)
    def start_transaction(self, **_: Any) -> Any:
        return result16.StartTransaction(transaction_id=7, id_tag_info={"status": "Accepted"})

    @on(Action16.meter_values)
    def meter_values(self, **_: Any) -> Any:
        return result16.MeterValues()

    @on(Action16.stop_transaction)
    def stop_transaction(self, **_: Any) -> Any:
        return result16.StopTransaction(id_tag_info={"status": "Accepted"})


class Backend201(ChargePoint201):
    @on(Action201.boot_notification)
    def boot(self, **_: Any) -> Any:
        return result201.BootNotification(current_time=now(), interval=300, status="Accepted")

    @on(Action201.heartbeat)
    def heartbeat(self, **_: Any) -> Any:
        return result201.Heartbeat(current_time=now())

    @on(Action201.status_notification)
    def status(self, **_: Any) -> Any:
        return result201.StatusNotification()

    @on(Action201.transaction_event)
    def transaction_event(self, **_: Any) -> Any:
        return result201.TransactionEvent()

    @on(Action201.meter_values)
    def meter_values(self, **_: Any) -> Any:
        return result201.MeterValues()


@dataclass
class BackendConnection:
    ws: websockets.asyncio.server.ServerConnection
    cp: Any
    path: str
    headers: Headers
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None


class Backend:
    """A CSMS on 127.0.0.1:0 built with the ``ocpp`` package; records every raw frame it gets."""

    def __init__(
        self,
        agent_log: list[tuple[str, str, str, dict[str, Any]]],
        *,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.agent_log = agent_log
        self.password = password
        self.tls = tls
        self.refusing = False
        self.hang_up = False  # accept the websocket, then close it at once
        self.connections: list[BackendConnection] = []
        self.received: list[Any] = []  # over all connections, in arrival order
        self.sent: list[Any] = []
        # per CALL arrived: (calls the agent had seen at that moment, action, payload)
        self.calls: list[tuple[int, str, dict[str, Any]]] = []
        self.auth_headers: list[str | None] = []
        self.peer_cns: list[str] = []

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Backend]:
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    async def start(self, port: int = 0) -> None:
        self.server = await websockets.asyncio.server.serve(
            self._handle,
            "127.0.0.1",
            port,
            subprotocols=[Subprotocol(V16), Subprotocol(V201)],
            process_request=self._check,
            ssl=self.tls,
            max_size=MAX_FRAME * 4,
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Like a backend process stopping: its connections are closed (1001), its port refuses."""
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}/ocpp"

    @property
    def active(self) -> list[BackendConnection]:
        return [c for c in self.connections if not c.closed.is_set()]

    def _check(
        self, connection: websockets.asyncio.server.ServerConnection, request: Request
    ) -> Response | None:
        self.auth_headers.append(request.headers.get("Authorization"))
        if self.refusing:
            return connection.respond(503, "backend away\n")
        if self.password is not None:
            cp_id = request.path.rsplit("/", 1)[-1]
            token = base64.b64encode(f"{cp_id}:{self.password}".encode()).decode()
            if request.headers.get("Authorization") != f"Basic {token}":
                return connection.respond(401, "bad credentials\n")
        return None

    async def _handle(self, ws: websockets.asyncio.server.ServerConnection) -> None:
        cert = ws.transport.get_extra_info("peercert")
        if cert:
            self.peer_cns.extend(v for rdn in cert["subject"] for k, v in rdn if k == "commonName")
        cp_id = ws.request.path.rsplit("/", 1)[-1]
        recording = Recording(ws, self._arrived)
        recording.sent = self.sent
        recording.received = self.received
        cls = Backend16 if ws.subprotocol == V16 else Backend201
        conn = BackendConnection(ws, cls(cp_id, recording), ws.request.path, ws.request.headers)
        self.connections.append(conn)
        if self.hang_up:
            await ws.close(1011, "not today")
        try:
            await conn.cp.start()
        except ConnectionClosed:
            pass
        finally:
            conn.close_code = ws.close_code
            conn.closed.set()

    def _arrived(self, frame: Any) -> None:
        try:
            message = json.loads(frame, parse_float=Decimal)
        except ValueError:
            return
        if isinstance(message, list) and len(message) == 4 and message[0] == 2:
            self.calls.append((len(self.agent_log), message[2], message[3]))

    async def drop(self, *, abort: bool = False) -> None:
        for conn in self.active:
            if abort:
                conn.ws.transport.abort()
            else:
                await conn.ws.close(1001, "backend restarting")
            await asyncio.wait_for(conn.closed.wait(), WAIT)

    async def connection(self, count: int = 1) -> BackendConnection:
        await eventually(lambda: len(self.connections) >= count, f"backend connection #{count}")
        return self.connections[count - 1]


# the Pi's endpoint (the other helper's real one authenticates; this one just hands over)


class Endpoint:
    def __init__(self, upstream: Upstream, *, fail_on_call: bool = False, policy: RelayPolicy = FAST) -> None:
        self.upstream = upstream
        self.policy = policy
        self.tasks: list[asyncio.Task[Any]] = []
        self.agent_log: list[tuple[str, str, str, dict[str, Any]]] = []
        self.fail_on_call = fail_on_call
        self.started = 0
        self.finished = 0

    async def on_call(self, cp_id: str, subprotocol: str, action: str, payload: dict[str, Any]) -> None:
        self.agent_log.append((cp_id, subprotocol, action, payload))
        if self.fail_on_call:
            raise RuntimeError("the agent's store is full")

    async def _handle(self, ws: websockets.asyncio.server.ServerConnection) -> None:
        self.started += 1
        task = asyncio.current_task()
        assert task is not None
        self.tasks.append(task)
        try:
            assert ws.subprotocol is not None
            await relay(
                ws,
                charge_point_id=ws.request.path.rsplit("/", 1)[-1],
                subprotocol=ws.subprotocol,
                upstream=self.upstream,
                on_call=self.on_call,
                max_frame_bytes=MAX_FRAME,
                policy=self.policy,
            )
        finally:
            self.finished += 1

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Endpoint]:
        async with websockets.asyncio.server.serve(
            self._handle, "127.0.0.1", 0, subprotocols=[Subprotocol(V16), Subprotocol(V201)]
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            yield self

    def url(self, cp_id: str) -> str:
        return f"ws://127.0.0.1:{self.port}/{cp_id}"


# the charger


class Charger16(ChargePoint16):
    release: asyncio.Event

    @on(Action16.change_configuration)
    def change_configuration(self, key: str, value: str, **_: Any) -> Any:
        return result16.ChangeConfiguration(status="Accepted")

    @on(Action16.remote_start_transaction)
    def remote_start(self, id_tag: str, **_: Any) -> Any:
        return result16.RemoteStartTransaction(status="Accepted")

    @on(Action16.data_transfer)
    async def data_transfer(self, vendor_id: str, **_: Any) -> Any:
        await self.release.wait()
        return result16.DataTransfer(status="Accepted")


class Charger201(ChargePoint201):
    @on(Action201.set_variables)
    def set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        return result201.SetVariables(
            set_variable_result=[
                {"attribute_status": "Accepted", "component": d["component"], "variable": d["variable"]}
                for d in set_variable_data
            ]
        )

    @on(Action201.request_start_transaction)
    def request_start(self, remote_start_id: int, **_: Any) -> Any:
        return result201.RequestStartTransaction(status="Accepted")


@dataclass
class Charger:
    cp: Any
    recording: Recording
    ws: websockets.asyncio.client.ClientConnection


@asynccontextmanager
async def charger(endpoint: Endpoint, cp_id: str, version: str) -> AsyncIterator[Charger]:
    async with websockets.asyncio.client.connect(
        endpoint.url(cp_id), subprotocols=[Subprotocol(version)], proxy=None
    ) as ws:
        assert ws.subprotocol == version
        recording = Recording(ws)
        cp = (Charger16 if version == V16 else Charger201)(cp_id, recording, response_timeout=60)
        if version == V16:
            cp.release = asyncio.Event()
            cp.release.set()
        task = asyncio.create_task(cp.start())
        try:
            yield Charger(cp, recording, ws)
        finally:
            task.cancel()
            await asyncio.wait([task])


@asynccontextmanager
async def setup(
    *, password: str | None = None, tls: ssl.SSLContext | None = None, fail_on_call: bool = False, **up: Any
) -> AsyncIterator[tuple[Endpoint, Backend]]:
    agent_log: list[tuple[str, str, str, dict[str, Any]]] = []
    backend = Backend(agent_log, password=password, tls=tls)
    async with backend.running():
        endpoint = Endpoint(Upstream(backend.url, **up), fail_on_call=fail_on_call)
        endpoint.agent_log = agent_log
        async with endpoint.running():
            yield endpoint, backend


def check_stored_before_forwarded(endpoint: Endpoint, backend: Backend, cp_id: str, version: str) -> None:
    """Each CALL the backend got had been through on_call before it arrived, in the same order."""
    assert len(backend.calls) == len(endpoint.agent_log)
    for i, (seen_before, action, payload) in enumerate(backend.calls):
        assert seen_before > i, f"CALL #{i} {action} reached the backend before the agent had it"
        assert endpoint.agent_log[i] == (cp_id, version, action, payload)


def texts(frames: list[Any]) -> list[str]:
    assert all(isinstance(f, str) for f in frames)
    return frames


# sessions


def test_ocpp16_session_passes_unchanged_and_is_stored_first() -> None:
    record, key = ocmf_sample()
    signed = json.dumps(
        {
            "signedMeterData": base64.b64encode(record.encode()).decode(),
            "signingMethod": "",
            "encodingMethod": "OCMF",
            "publicKey": base64.b64encode(f"oca:base16:asn1:{key}".encode()).decode(),
        }
    )

    async def scenario() -> None:
        async with setup() as (endpoint, backend), charger(endpoint, "CP16", V16) as c:
            answer = await c.cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            assert answer.status == "Accepted"
            await c.cp.call(call16.Authorize(id_tag="TAG1"))
            started = await c.cp.call(
                call16.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=259600, timestamp=now())
            )
            assert started.transaction_id == 7
            await c.cp.call(
                call16.MeterValues(
                    connector_id=1,
                    transaction_id=7,
                    meter_value=[
                        {
                            "timestamp": now(),
                            "sampled_value": [
                                {
                                    "value": "259.7",
                                    "measurand": "Energy.Active.Import.Register",
                                    "unit": "kWh",
                                },
                                {"value": signed, "format": "SignedData", "context": "Sample.Periodic"},
                            ],
                        }
                    ],
                )
            )
            # the operator's backend controls the charger through the Pi
            conn = await backend.connection()
            assert conn.path == "/ocpp/CP16"
            changed = await conn.cp.call(
                call16.ChangeConfiguration(key="MeterValueSampleInterval", value="60")
            )
            assert changed.status == "Accepted"
            remote = await conn.cp.call(call16.RemoteStartTransaction(id_tag="TAG1", connector_id=1))
            assert remote.status == "Accepted"
            await c.cp.call(
                call16.StopTransaction(
                    meter_stop=259700,
                    timestamp=now(),
                    transaction_id=7,
                    transaction_data=[
                        {
                            "timestamp": now(),
                            "sampled_value": [
                                {"value": record, "format": "SignedData", "context": "Transaction.End"}
                            ],
                        }
                    ],
                )
            )
            await eventually(
                lambda: len(backend.received) == len(c.recording.sent), "all frames at the backend"
            )
            assert texts(backend.received) == texts(c.recording.sent)  # byte for byte
            assert texts(c.recording.received) == texts(backend.sent)
            check_stored_before_forwarded(endpoint, backend, "CP16", V16)
            actions = [a for _, _, a, _ in endpoint.agent_log]
            assert actions == [
                "BootNotification",
                "Authorize",
                "StartTransaction",
                "MeterValues",
                "StopTransaction",
            ]
            meter = endpoint.agent_log[3][3]["meterValue"][0]["sampledValue"][1]
            assert meter == {"value": signed, "format": "SignedData", "context": "Sample.Periodic"}
            assert endpoint.agent_log[4][3]["transactionData"][0]["sampledValue"][0]["value"] == record
            assert conn.headers.get("Authorization") is None

    run(scenario())


def test_ocpp201_session_passes_unchanged_and_is_stored_first() -> None:
    record, key = ocmf_sample()
    signed = {
        "signed_meter_data": base64.b64encode(record.encode()).decode(),
        "signing_method": "",
        "encoding_method": "OCMF",
        "public_key": base64.b64encode(f"oca:base16:asn1:{key}".encode()).decode(),
    }

    def meter(context: str, wh: float) -> list[dict[str, Any]]:
        return [
            {
                "timestamp": now(),
                "sampled_value": [
                    {"value": wh, "context": context, "measurand": "Energy.Active.Import.Register"},
                    {"value": wh, "context": context, "signed_meter_value": signed},
                ],
            }
        ]

    async def scenario() -> None:
        async with setup() as (endpoint, backend), charger(endpoint, "CP201", V201) as c:
            answer = await c.cp.call(
                call201.BootNotification(
                    charging_station={"model": "M", "vendor_name": "V"}, reason="PowerUp"
                )
            )
            assert answer.status == "Accepted"
            conn = await backend.connection()
            set_result = await conn.cp.call(
                call201.SetVariables(
                    set_variable_data=[
                        {
                            "attribute_value": "true",
                            "component": {"name": "SampledDataCtrlr"},
                            "variable": {"name": "SignReadings"},
                        }
                    ]
                )
            )
            assert set_result.set_variable_result[0]["attribute_status"] == "Accepted"
            remote = await conn.cp.call(
                call201.RequestStartTransaction(
                    id_token={"id_token": "TAG1", "type": "ISO14443"}, remote_start_id=1
                )
            )
            assert remote.status == "Accepted"
            for seq, (event, trigger, context, wh) in enumerate(
                [
                    ("Started", "RemoteStart", "Transaction.Begin", 259.6),
                    ("Updated", "MeterValuePeriodic", "Sample.Periodic", 259.65),
                    ("Ended", "StopAuthorized", "Transaction.End", 259.7),
                ]
            ):
                await c.cp.call(
                    call201.TransactionEvent(
                        event_type=event,
                        timestamp=now(),
                        trigger_reason=trigger,
                        seq_no=seq,
                        transaction_info={"transaction_id": "tx-1"},
                        meter_value=meter(context, wh),
                        evse={"id": 1, "connector_id": 1},
                    )
                )
            await c.cp.call(call201.MeterValues(evse_id=1, meter_value=meter("Sample.Clock", 259.9)))
            await eventually(
                lambda: len(backend.received) == len(c.recording.sent), "all frames at the backend"
            )
            assert texts(backend.received) == texts(c.recording.sent)
            assert texts(c.recording.received) == texts(backend.sent)
            check_stored_before_forwarded(endpoint, backend, "CP201", V201)
            assert [a for _, _, a, _ in endpoint.agent_log] == ["BootNotification"] + [
                "TransactionEvent"
            ] * 3 + ["MeterValues"]
            sampled = endpoint.agent_log[3][3]["meterValue"][0]["sampledValue"][1]
            assert sampled["value"] == Decimal("259.7")  # the digits sent, not a float near them
            assert endpoint.agent_log[2][3]["meterValue"][0]["sampledValue"][0]["value"] == Decimal("259.65")
            assert base64.b64decode(sampled["signedMeterValue"]["signedMeterData"]).decode() == record

    run(scenario())


def test_on_call_failure_is_logged_and_the_frame_still_forwarded(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with setup(fail_on_call=True) as (endpoint, backend), charger(endpoint, "CP1", V16) as c:
            answer = await c.cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            assert answer.status == "Accepted"
            assert texts(backend.received) == texts(c.recording.sent)
            check_stored_before_forwarded(endpoint, backend, "CP1", V16)

    with caplog.at_level(logging.ERROR, "edge_agent.ocpp.proxy"):
        run(scenario())
    assert "CP1: charger->backend: the agent failed to take BootNotification" in caplog.text
    assert "the agent's store is full" in caplog.text  # the traceback names the cause


def test_malformed_frames_pass_unchanged_both_ways(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with setup() as (endpoint, backend):
            async with websockets.asyncio.client.connect(
                endpoint.url("CPX"), subprotocols=[Subprotocol(V16)], proxy=None
            ) as ws:
                odd = [
                    "not json at all",
                    '[2, "m1"]',
                    '{"an": "object"}',
                    '[9, "x", "y"]',
                    '[2,"n","Heartbeat",{"x":NaN}]',
                    '[2,"m2","Heartbeat",{}]',
                ]
                for frame in odd:
                    await ws.send(frame)
                await eventually(lambda: len(backend.received) == len(odd), "odd frames at the backend")
                assert backend.received == odd
                conn = await backend.connection()
                await conn.ws.send('[3, "nobody asked"')
                got: list[Any] = []
                while '[3, "nobody asked"' not in got:  # after the backend's own CallErrors
                    got.append(await asyncio.wait_for(ws.recv(), WAIT))
            assert [a for _, _, a, _ in endpoint.agent_log] == ["Heartbeat"]

    with caplog.at_level(logging.WARNING, "edge_agent.ocpp.proxy"):
        run(scenario())
    assert "CPX: charger->backend: malformed frame forwarded unchanged: not JSON" in caplog.text
    assert "CPX: backend->charger: malformed frame forwarded unchanged" in caplog.text


# either side going away


@pytest.mark.parametrize("abort", [False, True], ids=["backend-closes", "backend-dies"])
def test_backend_away_and_back_loses_nothing(abort: bool, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with setup() as (endpoint, backend), charger(endpoint, "CP9", V16) as c:
            await c.cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            backend.refusing = True
            await backend.drop(abort=abort)
            # the charger stays connected; what it sends now waits at the Pi, already stored
            pending = asyncio.create_task(
                c.cp.call(
                    call16.MeterValues(
                        connector_id=1,
                        meter_value=[{"timestamp": now(), "sampled_value": [{"value": "1234"}]}],
                    )
                )
            )
            await eventually(lambda: len(endpoint.agent_log) == 2, "the agent has the MeterValues")
            await eventually(lambda: len(backend.auth_headers) >= 3, "the relay retrying")
            assert backend.calls[-1][1] == "BootNotification"
            assert c.ws.state.name == "OPEN"
            backend.refusing = False
            await asyncio.wait_for(pending, WAIT)  # answered by the backend once it is back
            await c.cp.call(call16.Heartbeat())
            assert len(backend.connections) == 2
            assert texts(backend.received) == texts(c.recording.sent)
            assert texts(c.recording.received) == texts(backend.sent)
            check_stored_before_forwarded(endpoint, backend, "CP9", V16)

    with caplog.at_level(logging.INFO, "edge_agent.ocpp.proxy"):
        run(scenario())
    assert "CP9: backend connection lost" in caplog.text
    assert "refused with HTTP 503); charger kept connected, 1 frame(s) held" in caplog.text
    assert "CP9: connected to the backend" in caplog.text


def test_backend_restart_loses_nothing_ocpp201(caplog: pytest.LogCaptureFixture) -> None:
    def event(seq: int, kind: str) -> Any:
        return call201.TransactionEvent(
            event_type=kind,
            timestamp=now(),
            trigger_reason="MeterValuePeriodic" if kind == "Updated" else "Authorized",
            seq_no=seq,
            transaction_info={"transaction_id": "tx-9"},
            meter_value=[{"timestamp": now(), "sampled_value": [{"value": 1000 + seq}]}],
        )

    async def scenario() -> None:
        async with setup() as (endpoint, backend), charger(endpoint, "CPR", V201) as c:
            await c.cp.call(event(0, "Started"))
            port = backend.port
            await backend.stop()
            pending = asyncio.create_task(c.cp.call(event(1, "Updated")))
            await eventually(lambda: len(endpoint.agent_log) == 2, "the agent has the update")
            await eventually(lambda: "ConnectionRefusedError" in caplog.text, "the relay retrying")
            await asyncio.sleep(1)
            await backend.start(port)  # the same address, as a restarted backend would have
            await asyncio.wait_for(pending, WAIT)
            await c.cp.call(event(2, "Ended"))
            assert len(backend.connections) == 2
            assert texts(backend.received) == texts(c.recording.sent)
            assert texts(c.recording.received) == texts(backend.sent)
            check_stored_before_forwarded(endpoint, backend, "CPR", V201)

    with caplog.at_level(logging.INFO, "edge_agent.ocpp.proxy"):
        run(scenario())
    assert "CPR: connected to the backend" in caplog.text


def test_answer_to_a_call_of_a_gone_backend_connection_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with setup() as (endpoint, backend), charger(endpoint, "CP2", V16) as c:
            await c.cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            c.cp.release.clear()  # the charger takes its time answering DataTransfer
            conn = await backend.connection()
            asking = asyncio.create_task(conn.cp.call(call16.DataTransfer(vendor_id="acme")))
            await eventually(lambda: len(c.recording.received) == 2, "DataTransfer at the charger")
            await backend.drop()
            asking.cancel()  # the backend's caller is gone with its connection
            await asyncio.wait([asking])
            c.cp.release.set()
            await eventually(lambda: len(c.recording.sent) == 2, "the charger answered")
            await backend.connection(2)
            await c.cp.call(call16.Heartbeat())
            stale = c.recording.sent[1]
            assert json.loads(stale)[0] == 3
            assert texts(backend.received) == [f for f in c.recording.sent if f != stale]

    with caplog.at_level(logging.WARNING, "edge_agent.ocpp.proxy"):
        run(scenario())
    assert (
        "CP2: charger->backend: dropped an answer to a CALL of an earlier backend connection" in caplog.text
    )


def test_a_backend_that_hangs_up_at_once_is_retried_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with setup() as (endpoint, backend):
            backend.hang_up = True
            async with charger(endpoint, "CPH", V16) as c:
                await backend.connection()
                await asyncio.sleep(3)
                # FAST: waits of 0.1-0.2, 0.2-0.4, then 0.5-1 s; a tight loop would make hundreds
                assert 2 <= len(backend.connections) <= 8
                before = len(backend.connections)
                backend.hang_up = False
                # a frame written into a connection the backend is hanging up is lost in flight,
                # as on a direct connection (the charger has no answer and tries again): wait for
                # a connection accepted for good
                await backend.connection(before + 1)
                await c.cp.call(call16.Heartbeat())
                assert texts(backend.received) == texts(c.recording.sent)

    with caplog.at_level(logging.INFO, "edge_agent.ocpp.proxy"):
        run(scenario())
    assert "CPH: the backend connection was brief; reconnecting in" in caplog.text


def test_backend_away_too_long_closes_the_charger(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        backend = Backend([])
        async with backend.running():
            impatient = RelayPolicy(reconnect_first_s=0.2, reconnect_max_s=0.5, hold_seconds=1.5)
            endpoint = Endpoint(Upstream(backend.url), policy=impatient)
            backend.agent_log = endpoint.agent_log
            backend.refusing = True
            async with endpoint.running():
                async with websockets.asyncio.client.connect(
                    endpoint.url("CP3"), subprotocols=[Subprotocol(V16)], proxy=None
                ) as ws:
                    await ws.send('[2,"b1","Heartbeat",{}]')
                    with pytest.raises(ConnectionClosed):
                        await asyncio.wait_for(ws.recv(), WAIT)
                    assert ws.close_code == 1013
                await eventually(lambda: endpoint.finished == 1, "relay ended")
            assert endpoint.agent_log == [("CP3", V16, "Heartbeat", {})]

    with caplog.at_level(logging.WARNING, "edge_agent.ocpp.proxy"):
        run(scenario())
    assert "closing the charger so it goes offline" in caplog.text
    assert "CP3: charger->backend: 1 frame(s) not forwarded" in caplog.text


def test_charger_leaving_closes_upstream_cleanly_and_nothing_leaks() -> None:
    async def scenario() -> None:
        async with setup() as (endpoint, backend):
            await asyncio.sleep(0.1)
            tasks_before = len(asyncio.all_tasks())
            fds_before = len(os.listdir("/proc/self/fd"))
            rounds = 12
            for i in range(rounds):
                version = V16 if i % 2 == 0 else V201
                async with websockets.asyncio.client.connect(
                    endpoint.url(f"CP{i}"), subprotocols=[Subprotocol(version)], proxy=None
                ) as ws:
                    await ws.send(f'[2,"h{i}","Heartbeat",{{}}]')
                    assert json.loads(await asyncio.wait_for(ws.recv(), WAIT))[:2] == [3, f"h{i}"]
                    # the last frame, sent as the charger leaves, still reaches the backend
                    await ws.send(f'[2,"s{i}","Heartbeat",{{}}]')
                conn = await backend.connection(i + 1)
                await asyncio.wait_for(conn.closed.wait(), WAIT)
                assert conn.close_code == 1000
                assert backend.received[-1] == f'[2,"s{i}","Heartbeat",{{}}]'
            await eventually(lambda: endpoint.finished == rounds, "every relay ended")
            assert not backend.active
            await eventually(lambda: len(asyncio.all_tasks()) <= tasks_before, "tasks back to before")
            await eventually(lambda: len(os.listdir("/proc/self/fd")) <= fds_before, "sockets back to before")

    run(scenario())


def test_relay_cancelled_closes_upstream() -> None:
    async def scenario() -> None:
        async with setup() as (endpoint, backend), charger(endpoint, "CPC", V16) as c:
            await c.cp.call(call16.Heartbeat())
            conn = await backend.connection()
            assert endpoint.tasks
            for task in endpoint.tasks:
                task.cancel()
            await asyncio.wait_for(conn.closed.wait(), WAIT)
            assert endpoint.finished == 1

    run(scenario())


# bounds


def test_oversized_frame_from_the_charger_closes_the_charger_only(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with setup() as (endpoint, backend):
            async with websockets.asyncio.client.connect(
                endpoint.url("BIG"), subprotocols=[Subprotocol(V16)], proxy=None
            ) as ws:
                await ws.send('[2,"a","DataTransfer",{"vendorId":"' + "x" * MAX_FRAME + '"}]')
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), WAIT)
                assert ws.close_code == 1009
            await eventually(lambda: endpoint.finished == 1, "the relay ended")
            assert endpoint.agent_log == []
            assert not backend.active
            # the agent's endpoint is fine: the next charger is served
            async with charger(endpoint, "OK1", V16) as c:
                answer = await c.cp.call(
                    call16.BootNotification(charge_point_model="M", charge_point_vendor="V")
                )
                assert answer.status == "Accepted"

    with caplog.at_level(logging.ERROR, "edge_agent.ocpp.proxy"):
        run(scenario())
    assert (
        f"BIG: charger->backend: frame over {MAX_FRAME} bytes; closed the charger's connection" in caplog.text
    )


def test_oversized_frame_from_the_backend_closes_the_backend_connection_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        async with setup() as (endpoint, backend), charger(endpoint, "CPB", V16) as c:
            await c.cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            conn = await backend.connection()
            await conn.ws.send('[2,"big","DataTransfer",{"vendorId":"' + "x" * MAX_FRAME + '"}]')
            await asyncio.wait_for(conn.closed.wait(), WAIT)
            assert conn.close_code == 1009
            await backend.connection(2)
            await c.cp.call(call16.Heartbeat())
            assert c.ws.state.name == "OPEN"
            assert texts(backend.received) == texts(c.recording.sent)

    with caplog.at_level(logging.ERROR, "edge_agent.ocpp.proxy"):
        run(scenario())
    assert (
        f"CPB: backend->charger: frame over {MAX_FRAME} bytes; closed the backend connection" in caplog.text
    )


# security profiles


def test_basic_auth_toward_the_backend(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with (
            setup_auth("0123456789abcdef0123") as (endpoint, backend),
            charger(endpoint, "CPA", V16) as c,
        ):
            answer = await c.cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            assert answer.status == "Accepted"
            token = base64.b64encode(b"CPA:0123456789abcdef0123").decode()
            assert backend.auth_headers == [f"Basic {token}"]
        # a wrong password: the backend refuses, the relay says why
        agent_log: list[tuple[str, str, str, dict[str, Any]]] = []
        backend = Backend(agent_log, password="right-password-1234")
        async with backend.running():
            endpoint = Endpoint(Upstream(backend.url, username="CPA", password="wrong-password-123"))
            async with endpoint.running():
                async with websockets.asyncio.client.connect(
                    endpoint.url("CPA"), subprotocols=[Subprotocol(V16)], proxy=None
                ):
                    await eventually(lambda: len(backend.auth_headers) >= 2, "the relay tried twice")
                assert not backend.connections

    with caplog.at_level(logging.WARNING, "edge_agent.ocpp.proxy"):
        run(scenario())
    assert "refused with HTTP 401 (check the backend username/password or client certificate)" in caplog.text


@asynccontextmanager
async def setup_auth(password: str) -> AsyncIterator[tuple[Endpoint, Backend]]:
    agent_log: list[tuple[str, str, str, dict[str, Any]]] = []
    backend = Backend(agent_log, password=password)
    async with backend.running():
        endpoint = Endpoint(Upstream(backend.url, username="CPA", password=password))
        endpoint.agent_log = agent_log
        async with endpoint.running():
            yield endpoint, backend


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(directory: Path, client_cn: str) -> Pki:
    """A CA, a backend certificate for 127.0.0.1 and a charger's client certificate."""
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    end = start + datetime.timedelta(days=2)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Operator CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, server: bool) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [x509.ExtendedKeyUsageOID.SERVER_AUTH if server else x509.ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    pki = Pki(*(directory / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")))
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for (cert_path, key_path), (cert, key) in [
        ((pki.server_cert, pki.server_key), leaf("127.0.0.1", True)),
        ((pki.client_cert, pki.client_key), leaf(client_cn, False)),
    ]:
        cert_path.write_bytes(cert)
        key_path.write_bytes(key)
    return pki


def test_wss_with_the_chargers_client_certificate(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pki = make_pki(tmp_path, "CPT")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(pki.server_cert, pki.server_key)
    server_tls.load_verify_locations(pki.ca)
    server_tls.verify_mode = ssl.CERT_REQUIRED  # security profile 3: the backend requires the charger's cert

    async def scenario() -> None:
        client_tls = upstream_ssl_context(pki.ca, pki.client_cert, pki.client_key)
        async with (
            setup(tls=server_tls, ssl=client_tls) as (endpoint, backend),
            charger(endpoint, "CPT", V201) as c,
        ):
            answer = await c.cp.call(
                call201.BootNotification(
                    charging_station={"model": "M", "vendor_name": "V"}, reason="PowerUp"
                )
            )
            assert answer.status == "Accepted"
            assert backend.url.startswith("wss://")
            assert backend.peer_cns == ["CPT"]
            assert texts(backend.received) == texts(c.recording.sent)
        # without the client certificate the backend will not talk to the Pi
        async with (
            setup(tls=server_tls, ssl=upstream_ssl_context(pki.ca)) as (endpoint, backend),
            websockets.asyncio.client.connect(
                endpoint.url("CPT"), subprotocols=[Subprotocol(V201)], proxy=None
            ),
        ):
            await eventually(
                lambda: "CPT: backend" in caplog.text and "unreachable" in caplog.text, "a refusal"
            )
            assert not backend.connections

    with caplog.at_level(logging.WARNING, "edge_agent.ocpp.proxy"):
        run(scenario())


def test_upstream_settings_are_checked(tmp_path: Path) -> None:
    assert Upstream("ws://backend.example/ocpp/").url_for("CP 1/x") == "ws://backend.example/ocpp/CP%201%2Fx"
    with pytest.raises(ProxyError, match="ws:// or wss://"):
        Upstream("http://backend.example/ocpp")
    with pytest.raises(ProxyError, match="need a wss:// URL"):
        Upstream("ws://backend.example/ocpp", ssl=ssl.create_default_context())
    with pytest.raises(ProxyError, match="both a username and a password"):
        Upstream("ws://backend.example/ocpp", username="CP1")
    with pytest.raises(ProxyError, match="TLS files unusable"):
        upstream_ssl_context(tmp_path / "missing-ca.pem")
