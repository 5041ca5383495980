"""The gateway end to end: real Mosquitto, real PostgreSQL, HTTP API."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from attest_core.checkpoint import open_checkpoint
from attest_core.entries import ReadingEntry, RevokerRole, encode_entry
from attest_core.merkle import leaf_hash, verify_consistency, verify_inclusion
from attest_core.note import VerifierKey
from attest_core.receipt import Receipt, open_receipt
from gateway.devices import enrol
from tests.gateway.helpers import run, settings_for
from tests.gateway.runner import GatewayThread
from tests.services import Broker, free_port
from tests.support import HOUR, T0, TestDevice


class Device:
    """A test device on MQTT: publishes readings, collects verified receipts."""

    def __init__(self, broker: Broker, device: TestDevice) -> None:
        self.device = device
        self.receipts: list[bytes] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{device.device_id}-{uuid.uuid4().hex[:6]}"
        )
        self.client.on_message = lambda c, u, m: self.receipts.append(bytes(m.payload))
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(f"attest/v1/{device.device_id}/receipts", qos=1)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def publish(self, envelope: bytes) -> None:
        self.client.publish(f"attest/v1/{self.device.device_id}/readings", envelope, qos=1).wait_for_publish(
            10
        )

    def last_receipt(self, log_key: bytes) -> Receipt | None:
        return open_receipt(self.receipts[-1], log_key) if self.receipts else None

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_until(predicate, seconds: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def http(gateway: GatewayThread):  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        yield client


@pytest.fixture
def gateway(database: str, broker: Broker, tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = settings_for(
        database, tmp_path,
        mqtt_url=broker.url, api_port=free_port(), mqtt_client_id=f"gw-{uuid.uuid4().hex[:8]}",
        mqtt_session_expiry=5,
    )  # fmt: skip
    with GatewayThread(settings) as gw:
        yield gw


def test_readings_flow_to_signed_checkpoints_and_receipts(
    gateway: GatewayThread, broker: Broker, http: httpx.Client
) -> None:
    devices = [TestDevice(f"e2e-{uuid.uuid4().hex[:6]}-{i}", f"asset-{i}") for i in range(3)]

    async def enrol_all(conn):  # type: ignore[no-untyped-def]
        for d in devices:
            await enrol(conn, d.statement_bytes, d.pop, "installer-1", role=RevokerRole.INSTALLER)

    run(gateway.settings.database_url, enrol_all)
    log_key = VerifierKey.parse(http.get("/v1/log/key").text.strip())
    clients = [Device(broker, d) for d in devices]
    sent: dict[str, list[bytes]] = {}
    try:
        for h in range(20):
            for c in clients:
                envelope = c.device.reading(T0 + h * HOUR, h * 1_000_000).encode()
                sent.setdefault(c.device.device_id, []).append(envelope)
                c.publish(envelope)
        for c in clients:
            wait_until(lambda c=c: (r := c.last_receipt(log_key.public_key)) is not None and r.seq == 20)
    finally:
        for c in clients:
            c.close()

    # the checkpoint verifies under the key the gateway publishes
    note = http.get("/v1/log/checkpoint").text
    cp = open_checkpoint(note, log_key).checkpoint
    assert cp.size >= 3 + 60
    # each receipt names an entry that holds exactly the reading sent, provably in the log
    for c in clients:
        receipt = c.last_receipt(log_key.public_key)
        assert receipt is not None
        entry = http.get(f"/v1/log/entries/{receipt.log_index}").content
        assert entry == encode_entry(ReadingEntry(sent[c.device.device_id][-1]))
        proof = http.get(
            "/v1/log/proof/inclusion", params={"index": receipt.log_index, "size": cp.size}
        ).json()
        assert proof["index"] == receipt.log_index
        assert proof["size"] == cp.size
        verify_inclusion(receipt.log_index, cp.size, leaf_hash(entry), [base64.b64decode(h) for h in proof["hashes"]],
                         cp.root_hash)  # fmt: skip

    # every reading is logged exactly once
    async def count(conn):  # type: ignore[no-untyped-def]
        return await conn.fetchval(
            "SELECT count(*) FROM readings WHERE device_id = ANY($1) AND log_index IS NOT NULL",
            [d.device_id for d in devices],
        )

    assert run(gateway.settings.database_url, count) == 60
    metrics = http.get("/metrics").text
    assert "iot_attest_readings_accepted_total 60.0" in metrics
    assert "iot_attest_checkpoint_age_seconds" in metrics
    assert "iot_attest_mqtt_connected 1.0" in metrics


def test_log_api_errors_are_json_4xx(http: httpx.Client) -> None:
    cases = [
        ("/v1/log/entries/999999", 404, "no_such_entry"),
        ("/v1/log/entries/-1", 400, "bad_index"),
        ("/v1/log/entries/abc", 400, "bad_request"),
        ("/v1/log/proof/inclusion?index=5&size=5", 400, "index_out_of_range"),
        ("/v1/log/proof/inclusion?index=0&size=99999999", 400, "size_beyond_log"),
        ("/v1/log/proof/inclusion?index=x&size=1", 400, "bad_request"),
        ("/v1/log/proof/inclusion?size=1", 400, "bad_request"),
        ("/v1/log/proof/consistency?from=5&to=2", 400, "size_order"),
        ("/v1/log/proof/consistency?from=0&to=99999999", 400, "size_beyond_log"),
        ("/v1/nothing", 404, "not_found"),
    ]
    for path, status, code in cases:
        r = http.get(path)
        assert r.status_code == status, (path, r.text)
        assert r.json()["error"]["code"] == code, (path, r.text)
        assert r.json()["error"]["message"]
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json() == {"status": "ready"}
    assert http.get("/openapi.json").json()["info"]["title"] == "iot-attest gateway"


def test_consistency_between_checkpoints(gateway: GatewayThread, broker: Broker, http: httpx.Client) -> None:
    d = TestDevice(f"e2e-{uuid.uuid4().hex[:6]}", "asset-c")

    async def enrol_one(conn):  # type: ignore[no-untyped-def]
        await enrol(conn, d.statement_bytes, d.pop, "installer-1", role=RevokerRole.INSTALLER)

    run(gateway.settings.database_url, enrol_one)
    log_key = VerifierKey.parse(http.get("/v1/log/key").text.strip())
    client = Device(broker, d)
    notes = []
    try:
        for h in range(3):
            client.publish(d.reading(T0 + h * HOUR, h).encode())
            wait_until(
                lambda h=h: (r := client.last_receipt(log_key.public_key)) is not None and r.seq == h + 1
            )
            notes.append(open_checkpoint(http.get("/v1/log/checkpoint").text, log_key).checkpoint)
    finally:
        client.close()
    for old in notes:
        new = notes[-1]
        proof = http.get("/v1/log/proof/consistency", params={"from": old.size, "to": new.size}).json()
        verify_consistency(old.size, new.size, old.root_hash, new.root_hash,
                           [base64.b64decode(h) for h in proof["hashes"]])  # fmt: skip


def test_on_an_mqtt_311_broker(database: str, tmp_path: Path) -> None:
    """amqtt (the embedded default) speaks MQTT 3.1.1 only: the gateway falls back to it."""
    from stack.embedded import EmbeddedBroker

    embedded = EmbeddedBroker().start()
    try:
        broker = Broker(embedded.host, embedded.port, "embedded")
        settings = settings_for(
            database, tmp_path, mqtt_url=embedded.url, api_port=free_port(), mqtt_client_id="gw-311"
        )
        d = TestDevice(f"e2e-{uuid.uuid4().hex[:6]}", "asset-311")

        async def enrol_one(conn):  # type: ignore[no-untyped-def]
            await enrol(conn, d.statement_bytes, d.pop, "installer-1", role=RevokerRole.INSTALLER)

        with GatewayThread(settings) as gw:
            assert gw.gateway.link is not None
            assert gw.gateway.link.version == "3.1.1"
            run(database, enrol_one)
            client = Device(broker, d)
            try:
                for h in range(5):
                    client.publish(d.reading(T0 + h * HOUR, h).encode())
                key = gw.gateway.signer.public_key
                wait_until(lambda: (r := client.last_receipt(key)) is not None and r.seq == 5)
            finally:
                client.close()
    finally:
        embedded.stop()
