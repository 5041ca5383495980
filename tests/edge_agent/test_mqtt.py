"""Publishing through a real broker: envelopes verify, receipts empty the outbox, forgeries do not,
and a broker that goes away and comes back gets the outbox replayed in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from attest_core.reading import decode_envelope
from attest_core.topics import READINGS_FILTER, receipts_topic, status_topic
from edge_agent.agent import run_agent
from edge_agent.config import Config, load_config, update_config
from edge_agent.device import DeviceRuntime
from edge_agent.enrol import load_enrolment
from edge_agent.meters.base import MeterSample
from edge_agent.store import Store
from tests.edge_agent.chaincheck import check_chain, outbox
from tests.edge_agent.fakes import FakeGateway
from tests.services import Broker, free_port, make_certificates, port_open, wait_for
from tests.support import T0, seeded_signer

MOSQUITTO = "/usr/sbin/mosquitto"


class Subscriber:
    """A test client that records (topic, payload, dup) of what it receives."""

    def __init__(
        self, host: str, port: int, topics: list[str], client_id: str = "", persistent: bool = False
    ):
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=not persistent,
        )
        self.client.on_message = self._on_message
        ready = threading.Event()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect(host, port, 30)
        self.client.subscribe([(t, 1) for t in topics])
        self.client.loop_start()
        assert ready.wait(10), "no SUBACK"

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.dup)))

    def payloads(self, topic_end: str) -> list[tuple[bytes, bool]]:
        with self.lock:
            return [(p, dup) for t, p, dup in self.messages if t.endswith(topic_end)]

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(config: Config) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(run_agent(config, stop))
    try:
        yield
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0


def prepare(config_path: Path, host: str, port: int, **mqtt: float) -> Config:
    update_config(config_path, "meter", {"interval_s": 0.05})
    update_config(config_path, "mqtt", {"url": f"mqtt://{host}:{port}", **mqtt})
    return load_config(config_path, environ={})


def test_readings_verify_and_only_a_genuine_receipt_empties_the_outbox(
    enrolled: Path, gateway: FakeGateway, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    config = prepare(enrolled, broker.host, broker.port)
    statement = load_enrolment(config.state_dir)
    assert statement is not None
    device = config.device_id
    sub = Subscriber(broker.host, broker.port, [READINGS_FILTER, status_topic(device)])

    def seqs_in_outbox() -> list[int]:
        return sorted(outbox(config.db_path, device))

    def envelopes() -> dict[int, bytes]:
        return {decode_envelope(raw).reading().seq: raw for raw, _ in sub.payloads(f"{device}/readings")}

    async def scenario() -> None:
        async with running(config):
            await until(lambda: len(sub.payloads(f"{device}/readings")) >= 12, 15, "12 readings")
            for raw, _ in sub.payloads(f"{device}/readings"):
                envelope = decode_envelope(raw)
                envelope.verify(statement.public_key)
                assert envelope.reading().device_id == device
            assert seqs_in_outbox()[:10] == list(range(1, 11))

            # the gateway's log: another entry first, then the device's readings 1..10
            log = gateway.log
            log.append(b"an entry of another device")
            log.log_readings(device, envelopes(), 10)

            # a receipt signed by another key: logged loudly, nothing deleted
            forged = log.receipt(device, 10).sign(seeded_signer("not the log"))
            sub.publish(receipts_topic(device), forged)
            garbage = b"\x01" + b"\x00" * 20
            sub.publish(receipts_topic(device), garbage)
            await until(
                lambda: "REJECTED" in caplog.text and caplog.text.count("REJECTED") >= 2, 5, "rejection"
            )
            assert seqs_in_outbox()[:10] == list(range(1, 11))

            # the genuine receipt proves reading 10 in the log: everything up to seq 10 goes
            genuine = log.signed(device, 10)
            sub.publish(receipts_topic(device), genuine)
            await until(lambda: seqs_in_outbox()[0] == 11, 5, "the outbox to empty up to seq 10")
            assert all(s > 10 for s in seqs_in_outbox())
            store = Store(config.db_path)
            last = store.last_receipt(device)
            store.close()
            assert last is not None
            assert (last.seq, last.log_index, last.tree_size) == (10, 10, 11)
            # an older receipt later deletes nothing more and does not move the last receipt back
            sub.publish(receipts_topic(device), log.signed(device, 4, size=5, from_size=0))
            await asyncio.sleep(0.3)
            assert seqs_in_outbox()[0] == 11
        statuses = [p for p, _ in sub.payloads(f"{device}/status")]
        assert statuses[0] == b"online"
        assert statuses[-1] == b"offline"

    with caplog.at_level(logging.INFO, logger="edge_agent"):
        try:
            asyncio.run(scenario())
        finally:
            sub.close()
    assert "not a receipt signed by the log key" in caplog.text


def start_mosquitto(tmp_path: Path, port: int, settings: str | None = None) -> subprocess.Popen[bytes]:
    """Mosquitto on 127.0.0.1:``port`` with ``settings`` (default: anonymous, persistent, no queue limit)."""
    if settings is None:
        settings = f"allow_anonymous true\npersistence true\npersistence_location {tmp_path}/\nmax_queued_messages 0\n"
    conf = tmp_path / f"mosquitto-{port}.conf"
    # user root: when started as root, mosquitto would otherwise drop to a user that cannot read tmp_path
    conf.write_text(f"user root\nlistener {port} 127.0.0.1\n{settings}")
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    if not wait_for(lambda: port_open("127.0.0.1", port), 10):
        proc.terminate()
        proc.wait(10)
        raise AssertionError("mosquitto did not start")
    return proc


def test_broker_goes_away_and_the_outbox_is_replayed_in_order(
    enrolled: Path, gateway: FakeGateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    mosquitto = start_mosquitto(tmp_path, port)
    config = prepare(enrolled, "127.0.0.1", port, reconnect_min_s=0.2, reconnect_max_s=1.0)
    statement = load_enrolment(config.state_dir)
    assert statement is not None
    device = config.device_id
    # a persistent subscriber, so nothing it should get is lost while the broker restarts
    sub = Subscriber("127.0.0.1", port, [READINGS_FILTER], client_id="test-watcher", persistent=True)

    def received() -> list[int]:
        return [decode_envelope(p).reading().seq for p, dup in sub.payloads("/readings") if not dup]

    async def scenario() -> None:
        nonlocal mosquitto, sub
        async with running(config):
            await until(lambda: len(received()) >= 10, 15, "readings before the outage")
            before = max(received())
            mosquitto.terminate()
            mosquitto.wait(10)
            sub.close()
            await asyncio.sleep(1.5)  # readings keep being taken and stored meanwhile
            made_offline = len(outbox(config.db_path, device))
            assert made_offline > before + 10
            mosquitto = start_mosquitto(tmp_path, port)
            sub = Subscriber("127.0.0.1", port, [READINGS_FILTER], client_id="test-watcher", persistent=True)
            await until(lambda: 1 in received() and max(received()) > made_offline + 5, 20, "the replay")
        # After reconnecting, the agent published its whole outbox again from seq 1, in order, then went on.
        stream = received()
        replay = stream[len(stream) - 1 - stream[::-1].index(1) :]
        assert replay == list(range(1, len(replay) + 1)), replay[:40]
        assert len(replay) > made_offline

    with caplog.at_level(logging.INFO, logger="edge_agent"):
        try:
            asyncio.run(scenario())
        finally:
            sub.close()
            mosquitto.terminate()
            mosquitto.wait(10)
    assert "connection to mqtt://127.0.0.1" in caplog.text
    assert "lost" in caplog.text
    assert "cannot connect to" in caplog.text
    check_chain(config.db_path, device, statement.public_key, statement.chain_anchor())


def test_outbox_warnings_without_dropping(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Policy: warn at 80 % and when full, keep taking (and keeping) every reading."""
    signer = seeded_signer("full")
    store = Store(tmp_path / "a.db")
    runtime = DeviceRuntime(
        device_id="dev-full", asset_id="a-1", anchor=b"\x09" * 32, signer=signer, store=store,
        log_public_key=None, max_outbox=10,
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="edge_agent"):
        for i in range(14):
            reading = runtime.build(T0 + i * 60_000, MeterSample(i * 1000))
            store.append([reading])
            runtime.committed_ok([reading])
            if i == 6:
                assert caplog.text == ""
            if i == 7:
                assert "outbox is at 80 %" in caplog.text
    assert "OUTBOX FULL: 10 readings" in caplog.text
    assert "Nothing is dropped" in caplog.text
    assert sorted(outbox(tmp_path / "a.db", "dev-full")) == list(range(1, 15))
    store.close()


def test_tls_and_per_device_password(
    enrolled: Path, gateway: FakeGateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    certs = make_certificates(tmp_path)
    config = load_config(enrolled, environ={})
    device = config.device_id
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(tmp_path / "passwd"), device, "s3cret"], check=True)
    (tmp_path / "passwd").chmod(0o600)
    mosquitto = start_mosquitto(
        tmp_path,
        port,
        f"cafile {certs}/ca.crt\ncertfile {certs}/server.crt\nkeyfile {certs}/server.key\n"
        f"allow_anonymous false\npassword_file {tmp_path}/passwd\n",
    )
    try:
        update_config(enrolled, "meter", {"interval_s": 0.1})
        update_config(
            enrolled, "mqtt",
            {"url": f"mqtts://127.0.0.1:{port}", "ca_file": str(certs / "ca.crt"), "password": "wrong",
             "reconnect_min_s": 0.2, "reconnect_max_s": 0.5},
        )  # fmt: skip
        config = load_config(enrolled, environ={})

        async def refused() -> None:
            async with running(config):
                await until(lambda: "refused the connection" in caplog.text, 10, "the refusal")

        with caplog.at_level(logging.INFO, logger="edge_agent"):
            asyncio.run(refused())
        assert "check mqtt.username / mqtt.password" in caplog.text

        update_config(enrolled, "mqtt", {"password": "s3cret"})  # user name: the device id
        config = load_config(enrolled, environ={})
        receipts: list[int] = []

        async def works() -> None:
            async with running(config):
                await until(lambda: len(outbox(config.db_path, device)) >= 5, 10, "readings")
                # a receipt through the TLS broker (published by a client with the same login)
                client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2)
                client.tls_set(ca_certs=str(certs / "ca.crt"))
                client.username_pw_set(device, "s3cret")
                client.connect("127.0.0.1", port)
                client.loop_start()
                gateway.log.log_readings(device, outbox(config.db_path, device), 3)
                client.publish(receipts_topic(device), gateway.log.signed(device, 3), qos=1).wait_for_publish(
                    5
                )
                await until(lambda: min(outbox(config.db_path, device)) == 4, 10, "the receipt over TLS")
                receipts.append(3)
                client.loop_stop()
                client.disconnect()

        caplog.clear()
        with caplog.at_level(logging.INFO, logger="edge_agent"):
            asyncio.run(works())
        assert receipts == [3]
        assert "connected to mqtts://127.0.0.1" in caplog.text
    finally:
        mosquitto.terminate()
        mosquitto.wait(10)


def test_a_stall_resends_from_the_oldest_paced_by_receipts(
    enrolled: Path, gateway: FakeGateway, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """No receipt for resend_after_s: the outbox goes out again from its oldest reading, but never
    more than max_inflight beyond the last receipt (a deep outbox must not become a storm)."""
    config = prepare(enrolled, broker.host, broker.port, resend_after_s=1.0, max_inflight=5)
    device = config.device_id
    sub = Subscriber(broker.host, broker.port, [f"attest/v1/{device}/readings"])

    def sent() -> dict[int, int]:
        """How often each seq was published."""
        counts: dict[int, int] = {}
        for raw, _ in sub.payloads(f"{device}/readings"):
            seq = decode_envelope(raw).reading().seq
            counts[seq] = counts.get(seq, 0) + 1
        return counts

    def receipt(seq: int) -> None:
        envelopes = {decode_envelope(raw).reading().seq: raw for raw, _ in sub.payloads(f"{device}/readings")}
        gateway.log.log_readings(device, envelopes, seq)
        sub.publish(receipts_topic(device), gateway.log.signed(device, seq))

    async def scenario() -> None:
        async with running(config):
            await until(lambda: "publishing them again from seq 1" in caplog.text, 10, "the first re-send")
            await asyncio.sleep(0.4)
            counts = sent()
            assert len(counts) >= 20  # readings kept coming at 20/s
            assert {s for s, n in counts.items() if n > 1} <= set(range(1, 6))  # only the oldest window again
            receipt(5)  # 1..5 are in the log: the next window goes out again, 6..10, and no more
            await until(lambda: all(sent().get(s, 0) >= 2 for s in range(6, 11)), 5, "6..10 again")
            await asyncio.sleep(0.3)
            assert {s for s, n in sent().items() if n > 1} <= set(range(1, 11))
            # the gateway catches up: receipts up to the newest reading end the re-sending
            newest = max(sent())
            receipt(newest)
            await until(
                lambda: min(outbox(config.db_path, device), default=newest + 1) > newest, 5, "the receipt"
            )

    with caplog.at_level(logging.INFO, logger="edge_agent"):
        try:
            asyncio.run(scenario())
        finally:
            sub.close()
    assert "at most 5 ahead of the receipts" in caplog.text
