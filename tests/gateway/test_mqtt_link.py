"""The gateway's MQTT link against a real broker (and a broker that falls silent)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from attest_core.broker import parse_broker_url
from gateway import mqttwire as wire
from gateway.ingest import Message
from gateway.mqtt import MqttLink, MQTTv5, probe_protocol
from tests.services import Broker, MosquittoProcess, free_port, make_certificates, port_open, wait_for


def test_the_probe_finds_mqtt_5_on_mosquitto(broker: Broker) -> None:
    if broker.how == "embedded":  # amqtt: 3.1.1 only (the end-to-end test covers that fallback)
        assert asyncio.run(probe_protocol(parse_broker_url(broker.url))) == wire.MQTT311
    else:
        assert asyncio.run(probe_protocol(parse_broker_url(broker.url))) == MQTTv5


def _subscriber(broker: Broker, topic: str) -> tuple[mqtt.Client, list[bytes]]:
    got: list[bytes] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}")
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    client.on_message = lambda c, u, m: got.append(bytes(m.payload))
    client.connect(broker.host, broker.port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    return client, got


async def _until(condition, seconds: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds / 0.05)):
        if condition():
            return True
        await asyncio.sleep(0.05)
    return bool(condition())


def test_receipts_published_before_the_connection_are_sent_once_connected(broker: Broker) -> None:
    topic = f"attest/v1/link-{uuid.uuid4().hex[:8]}/receipts"
    client, got = _subscriber(broker, topic)

    async def go() -> None:
        url = parse_broker_url(broker.url)
        link = MqttLink(
            url, f"gw-{uuid.uuid4().hex[:8]}", protocol=await probe_protocol(url), session_expiry=0
        )
        link.publish(topic, b"receipt 1")  # not connected yet: kept
        link.publish(topic, b"receipt 2")
        link.start()
        try:
            assert await link.wait_connected(10)
            assert await _until(lambda: got == [b"receipt 1", b"receipt 2"])
            assert await _until(lambda: not link.unacked)  # the broker acknowledged both
        finally:
            await link.stop()

    try:
        asyncio.run(go())
    finally:
        client.loop_stop()
        client.disconnect()


def test_readings_are_delivered_and_unacknowledged_ones_come_back(broker: Broker) -> None:
    """Readings not acknowledged before a reconnection are delivered again (the persistent session)."""
    device = f"link-{uuid.uuid4().hex[:8]}"
    topic = f"attest/v1/{device}/readings"
    client_id = f"gw-{uuid.uuid4().hex[:8]}"
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"p-{uuid.uuid4().hex[:8]}")
    if broker.username:
        publisher.username_pw_set(broker.username, broker.password)
    publisher.connect(broker.host, broker.port)
    publisher.loop_start()

    async def go() -> None:
        url = parse_broker_url(broker.url)
        protocol = await probe_protocol(url)
        seen: list[Message] = []
        link = MqttLink(url, client_id, on_message=seen.append, protocol=protocol, session_expiry=60)
        link.start()
        try:
            assert await link.wait_connected(10)
            for n in range(3):
                publisher.publish(topic, f"r{n}".encode(), qos=1).wait_for_publish(5)
            assert await _until(lambda: len([m for m in seen if m.topic == topic]) == 3)
            mine = [m for m in seen if m.topic == topic]
            assert [m.payload for m in mine] == [b"r0", b"r1", b"r2"]
            assert all(m.mid for m in mine)
            link.ack_many([mine[0]])  # only the first is "stored"
        finally:
            await link.stop()
        seen.clear()
        again = MqttLink(url, client_id, on_message=seen.append, protocol=protocol, session_expiry=0)
        again.start()
        try:
            assert await again.wait_connected(10)
            assert await _until(lambda: len([m for m in seen if m.topic == topic]) >= 2)
            await asyncio.sleep(0.3)
            assert [m.payload for m in seen if m.topic == topic] == [b"r1", b"r2"]
            again.ack_many(seen)
        finally:
            await again.stop()

    try:
        asyncio.run(go())
    finally:
        publisher.loop_stop()
        publisher.disconnect()


def _publisher(host: str, port: int, username: str | None = None, password: str | None = None) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"p-{uuid.uuid4().hex[:8]}")
    if username:
        client.username_pw_set(username, password)
    client.connect(host, port)
    client.loop_start()
    return client


def _close(client: mqtt.Client) -> None:
    client.loop_stop()
    client.disconnect()


def test_an_oversized_reading_from_a_311_broker_arrives_as_a_marker_and_is_acknowledged(
    broker: Broker,
) -> None:
    """MQTT 3.1.1 has no Maximum Packet Size: the broker sends a reading of any size. One over the
    link's limit is read past, not held, and delivered as a marker (first bytes, real size, packet
    id); once acknowledged it is not delivered again, and the readings after it flow as usual."""
    device = f"big-{uuid.uuid4().hex[:8]}"
    topic = f"attest/v1/{device}/readings"
    client_id = f"gw-{uuid.uuid4().hex[:8]}"
    publisher = _publisher(broker.host, broker.port, broker.username, broker.password)
    big = bytes(range(256)) * 40  # 10,240 bytes

    async def go() -> None:
        url = parse_broker_url(broker.url)
        seen: list[Message] = []
        link = MqttLink(
            url,
            client_id,
            on_message=seen.append,
            protocol=wire.MQTT311,
            max_packet_size=4096,
            session_expiry=60,
        )
        link.start()
        try:
            assert await link.wait_connected(10)
            publisher.publish(topic, big, qos=1).wait_for_publish(5)
            publisher.publish(topic, b"small", qos=1).wait_for_publish(5)
            assert await _until(lambda: len([m for m in seen if m.topic == topic]) == 2)
            marker, small = [m for m in seen if m.topic == topic]
            assert (marker.size, marker.payload) == (len(big), big[: wire.OVERSIZED_KEEP])
            assert marker.mid
            assert (small.size, small.payload) == (0, b"small")
            link.ack_many([marker, small])
            await asyncio.sleep(0.3)
        finally:
            await link.stop()
        seen.clear()
        again = MqttLink(url, client_id, on_message=seen.append, protocol=wire.MQTT311, max_packet_size=4096)
        again.start()
        try:
            assert await again.wait_connected(10)
            await asyncio.sleep(1.0)
            assert [m for m in seen if m.topic == topic] == []
        finally:
            await again.stop()

    try:
        asyncio.run(go())
    finally:
        _close(publisher)


def test_mqtt_5_advertises_the_limit_and_the_broker_keeps_larger_packets_to_itself(tmp_path: Path) -> None:
    """MQTT 5: the CONNECT carries the Maximum Packet Size, so the broker never sends a larger packet."""
    mosquitto = MosquittoProcess(tmp_path).start()
    topic = f"attest/v1/big5-{uuid.uuid4().hex[:8]}/readings"
    publisher = _publisher(mosquitto.host, mosquitto.port)

    async def go() -> None:
        seen: list[Message] = []
        link = MqttLink(
            parse_broker_url(mosquitto.url), "gw-big5", on_message=seen.append, max_packet_size=4096
        )
        link.start()
        try:
            assert await link.wait_connected(10)
            publisher.publish(topic, b"x" * 10_000, qos=1).wait_for_publish(5)
            publisher.publish(topic, b"small", qos=1).wait_for_publish(5)
            assert await _until(lambda: len(seen) >= 1)
            await asyncio.sleep(0.3)
            assert [(m.payload, m.size) for m in seen] == [(b"small", 0)]
            assert link.connected.is_set()
        finally:
            await link.stop()

    try:
        asyncio.run(go())
    finally:
        _close(publisher)
        mosquitto.stop()


async def _late_acknowledgements_must_not_name_other_readings(
    url: str, lose_the_session: Callable[[MqttLink], Awaitable[None]], publish: Callable[[str, bytes], None]
) -> None:
    """Readings "old" are delivered; the broker then loses the link's session (``lose_the_session``)
    and the link reconnects; readings "new" arrive there under the same packet ids. The old ones,
    stored only now, are acknowledged late: that must not acknowledge the new ones, which the
    broker must still deliver to the next connection (the gateway "crashed" before storing them)."""
    broker_url = parse_broker_url(url)
    client_id = f"gw-{uuid.uuid4().hex[:8]}"
    seen: list[Message] = []
    link = MqttLink(broker_url, client_id, on_message=seen.append, session_expiry=300)
    link.start()
    try:
        assert await link.wait_connected(10)
        for n in range(3):
            publish("old", f"old {n}".encode())
        assert await _until(lambda: len(seen) == 3)
        old = list(seen)
        await lose_the_session(link)
        assert await _until(lambda: link.connections >= 2 and link.connected.is_set(), 15)
        for n in range(3):
            publish("new", f"new {n}".encode())
        assert await _until(lambda: len(seen) == 6)
        new = seen[3:]
        assert [m.payload for m in new] == [b"new 0", b"new 1", b"new 2"]
        assert {m.mid for m in old} & {m.mid for m in new}, "the broker did not reuse the packet ids"
        link.ack_many(old)
        await asyncio.sleep(0.5)
    finally:
        await link.stop()
    seen.clear()
    again = MqttLink(broker_url, client_id, on_message=seen.append, session_expiry=0)
    again.start()
    try:
        assert await again.wait_connected(10)
        assert await _until(lambda: len(seen) >= 3)
        await asyncio.sleep(0.3)
        assert sorted(m.payload for m in seen) == [b"new 0", b"new 1", b"new 2"]
        again.ack_many(seen)
    finally:
        await again.stop()


def test_late_acknowledgements_are_dropped_after_a_broker_restart_without_persistence(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mosquitto = MosquittoProcess(tmp_path, persistence=False).start()
    topic = f"attest/v1/restart-{uuid.uuid4().hex[:8]}/readings"
    publishers: list[mqtt.Client] = []

    def publish(_: str, payload: bytes) -> None:
        if not publishers or not publishers[-1].is_connected():
            publishers.append(_publisher(mosquitto.host, mosquitto.port))
            assert wait_for(publishers[-1].is_connected, 5)
        publishers[-1].publish(topic, payload, qos=1).wait_for_publish(5)

    async def restart(_: MqttLink) -> None:
        await asyncio.to_thread(mosquitto.stop)
        await asyncio.to_thread(mosquitto.start)

    try:
        with caplog.at_level(logging.WARNING, logger="gateway.mqtt"):
            asyncio.run(_late_acknowledgements_must_not_name_other_readings(mosquitto.url, restart, publish))
        assert "had no session for" in caplog.text
    finally:
        for p in publishers:
            _close(p)
        mosquitto.stop()


def test_late_acknowledgements_are_dropped_after_a_takeover_of_the_client_id(tmp_path: Path) -> None:
    """Another client connects with the gateway's client id and a clean start: the broker ends the
    gateway's connection and its session; the gateway reconnects to a new one."""
    mosquitto = MosquittoProcess(tmp_path).start()
    topic = f"attest/v1/takeover-{uuid.uuid4().hex[:8]}/readings"
    publisher = _publisher(mosquitto.host, mosquitto.port)

    def publish(_: str, payload: bytes) -> None:
        publisher.publish(topic, payload, qos=1).wait_for_publish(5)

    async def take_over(link: MqttLink) -> None:
        reader, writer = await asyncio.open_connection(mosquitto.host, mosquitto.port)
        writer.write(wire.connect(link.client_id, version=MQTTv5, keepalive=10, clean_start=True))
        packets = wire.PacketReader(MQTTv5)
        got: list[wire.Publish | wire.Control] = []
        while not got:
            got = packets.feed(await reader.read(4096))
        assert isinstance(got[0], wire.Control)
        assert got[0].type == wire.CONNACK
        writer.write(wire.DISCONNECT_PACKET)
        writer.close()
        await writer.wait_closed()

    try:
        asyncio.run(_late_acknowledgements_must_not_name_other_readings(mosquitto.url, take_over, publish))
    finally:
        _close(publisher)
        mosquitto.stop()


class FakeBroker:
    """An MQTT peer of our own for what a real broker will not do on demand: a small Receive
    Maximum, a Server Keep Alive, silence. It records the PUBLISH packets the link sends."""

    def __init__(
        self, version: int = wire.MQTT5, connack_props: bytes = b"", answer_pings: bool = True
    ) -> None:
        self.version = version
        self.connack_props = connack_props
        self.answer_pings = answer_pings
        self.connections: list[float] = []
        self.publishes: list[int] = []
        self.pings = 0
        self.writer: asyncio.StreamWriter | None = None
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"mqtt://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def puback(self, packet_id: int, reason: int | None = None) -> None:
        assert self.writer is not None
        if reason is None:
            self.writer.write(wire.pubacks([packet_id]))
        else:  # MQTT 5: a reason code and an empty property block
            self.writer.write(
                wire.frame(wire.PUBACK << 4, wire.U16.pack(packet_id) + bytes((reason,)) + b"\x00")
            )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.append(asyncio.get_running_loop().time())
        self.writer = writer
        packets = wire.PacketReader(self.version)
        try:
            while chunk := await reader.read(4096):
                for p in packets.feed(chunk):
                    if isinstance(p, wire.Publish):
                        self.publishes.append(p.packet_id)
                    elif p.type == wire.CONNECT:
                        props = b""
                        if self.version == wire.MQTT5:
                            props = wire.varint(len(self.connack_props)) + self.connack_props
                        writer.write(wire.frame(wire.CONNACK << 4, b"\x00\x00" + props))
                    elif p.type == wire.SUBSCRIBE:
                        granted = (b"\x00" if self.version == wire.MQTT5 else b"") + b"\x01"
                        writer.write(wire.frame(wire.SUBACK << 4, p.body[:2] + granted))
                    elif p.type == wire.PINGREQ:
                        self.pings += 1
                        if self.answer_pings:
                            writer.write(wire.frame(wire.PINGRESP << 4, b""))
        except ConnectionError:
            pass
        finally:
            writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def test_receipts_respect_the_brokers_receive_maximum() -> None:
    """MQTT 5: no more unacknowledged receipts than the broker's Receive Maximum (here 2)."""

    async def go() -> None:
        broker = FakeBroker(connack_props=b"\x21\x00\x02")
        url = await broker.start()
        link = MqttLink(parse_broker_url(url), "gw-quota", protocol=MQTTv5)
        link.start()
        try:
            assert await link.wait_connected(5)
            for n in range(5):
                link.publish(f"attest/v1/d{n}/receipts", b"r")
            assert await _until(lambda: len(broker.publishes) == 2)
            await asyncio.sleep(0.3)
            assert len(broker.publishes) == 2  # the quota is full: the other three wait
            broker.puback(broker.publishes[0])
            assert await _until(lambda: len(broker.publishes) == 3)
            for packet_id in broker.publishes[1:]:
                broker.puback(packet_id)
            assert await _until(lambda: len(broker.publishes) == 5)
            for packet_id in broker.publishes[3:]:
                broker.puback(packet_id)
            assert await _until(lambda: not link.unacked)
            assert len(set(broker.publishes)) == 5
        finally:
            await link.stop()
            broker.close()

    asyncio.run(go())


def test_a_receipt_refused_by_the_broker_is_reported_not_taken_for_delivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """MQTT 5 PUBACK reason codes of 0x80 and above are refusals: logged with the reason and
    reported; 0x10 (no matching subscribers) is a success."""
    refused: list[tuple[str, int]] = []

    async def go() -> None:
        broker = FakeBroker()
        url = await broker.start()
        link = MqttLink(
            parse_broker_url(url),
            "gw-refused",
            protocol=MQTTv5,
            on_publish_refused=lambda topic, code: refused.append((topic, code)),
        )
        link.start()
        try:
            assert await link.wait_connected(5)
            link.publish("attest/v1/d1/receipts", b"r1")
            link.publish("attest/v1/d2/receipts", b"r2")
            assert await _until(lambda: len(broker.publishes) == 2)
            broker.puback(broker.publishes[0], 0x87)
            broker.puback(broker.publishes[1], 0x10)
            assert await _until(lambda: not link.unacked)
        finally:
            await link.stop()
            broker.close()

    with caplog.at_level(logging.WARNING, logger="gateway.mqtt"):
        asyncio.run(go())
    assert refused == [("attest/v1/d1/receipts", 0x87)]
    assert "the broker refused the receipt on attest/v1/d1/receipts: not authorized" in caplog.text
    assert "d2" not in caplog.text


def test_the_brokers_server_keep_alive_replaces_ours() -> None:
    """MQTT 5 Server Keep Alive of 2 s: a silent broker is given up after 3 s, not after 45 s."""

    async def go() -> None:
        broker = FakeBroker(connack_props=b"\x13\x00\x02", answer_pings=False)
        url = await broker.start()
        link = MqttLink(
            parse_broker_url(url), "gw-ska", on_message=lambda m: None, protocol=MQTTv5, keepalive=30
        )
        link.start()
        try:
            assert await link.wait_connected(5)
            assert await _until(lambda: len(broker.connections) >= 2, 8)
        finally:
            await link.stop()
            broker.close()

    asyncio.run(go())


def test_a_server_keep_alive_of_zero_means_no_keep_alive() -> None:
    """MQTT 5 Server Keep Alive 0 switches the keep-alive off: no pings, and a broker that says
    nothing is not taken for a dead one."""

    async def go() -> None:
        broker = FakeBroker(connack_props=b"\x13\x00\x00", answer_pings=False)
        url = await broker.start()
        link = MqttLink(
            parse_broker_url(url), "gw-ska0", on_message=lambda m: None, protocol=MQTTv5, keepalive=30
        )
        link.start()
        try:
            assert await link.wait_connected(5)
            await asyncio.sleep(3.5)
            assert len(broker.connections) == 1
            assert broker.pings == 0
            assert link.connected.is_set()
        finally:
            await link.stop()
            broker.close()

    asyncio.run(go())


@contextlib.contextmanager
def tls_mosquitto(tmp_path: Path, certs: Path, password_file: Path | None = None) -> Iterator[int]:
    """A Mosquitto with TLS only (the certificates of make_certificates), anonymous unless a
    password file is given; yields its port."""
    port = free_port()
    conf = tmp_path / "tls.conf"
    login = (
        f"allow_anonymous false\npassword_file {password_file}\n"
        if password_file
        else "allow_anonymous true\n"
    )
    conf.write_text(
        f"listener {port} 127.0.0.1\ncafile {certs}/ca.crt\ncertfile {certs}/server.crt\n"
        f"keyfile {certs}/server.key\n{login}" + ("user root\n" if os.geteuid() == 0 else "")
    )
    broker = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        assert wait_for(lambda: port_open("127.0.0.1", port), 10), "the TLS broker did not start"
        yield port
    finally:
        broker.terminate()
        broker.wait(10)


def test_tls_and_a_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """mqtts:// with a user and password: the broker's certificate is checked against the trust
    store (here SSL_CERT_FILE, as an operator with a private CA would set it); a wrong password
    is reported as such; with the right one, readings arrive."""
    certs = make_certificates(tmp_path)
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(tmp_path / "passwd"), "gateway", "s3cret"], check=True
    )
    (tmp_path / "passwd").chmod(0o600)
    monkeypatch.setenv("SSL_CERT_FILE", str(certs / "ca.crt"))
    device = f"tls-{uuid.uuid4().hex[:6]}"

    async def go() -> None:
        port = broker_port
        wrong = parse_broker_url(f"mqtts://gateway:wrong@127.0.0.1:{port}")
        assert await probe_protocol(wrong) == MQTTv5  # refused, but in MQTT 5
        link = MqttLink(wrong, "gw-tls", on_message=lambda m: None, protocol=MQTTv5)
        link.start()
        try:
            # Mosquitto says "not authorised" (0x87), others "bad user name or password" (0x86)
            assert await _until(lambda: "check the user name and password in MQTT_URL" in caplog.text, 10)
            assert not link.connected.is_set()
        finally:
            await link.stop()

        seen: list[Message] = []
        right = parse_broker_url(f"mqtts://gateway:s3cret@127.0.0.1:{port}")
        link = MqttLink(right, "gw-tls", on_message=seen.append, protocol=await probe_protocol(right))
        link.start()
        try:
            assert await link.wait_connected(10)
            publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tls-publisher")
            publisher.tls_set(ca_certs=str(certs / "ca.crt"))
            publisher.username_pw_set("gateway", "s3cret")
            publisher.connect("127.0.0.1", port)
            publisher.loop_start()
            try:
                publisher.publish(f"attest/v1/{device}/readings", b"over TLS", qos=1).wait_for_publish(5)
                assert await _until(lambda: [m.payload for m in seen] == [b"over TLS"])
            finally:
                publisher.loop_stop()
                publisher.disconnect()
        finally:
            await link.stop()

    with (
        tls_mosquitto(tmp_path, certs, password_file=tmp_path / "passwd") as broker_port,
        caplog.at_level(logging.WARNING, logger="gateway.mqtt"),
    ):
        asyncio.run(go())


def test_an_untrusted_certificate_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Without the private CA in the trust store, the broker's certificate does not verify."""
    certs = make_certificates(tmp_path)

    async def go(port: int) -> None:
        link = MqttLink(parse_broker_url(f"mqtts://127.0.0.1:{port}"), "gw-untrusted", protocol=MQTTv5)
        link.start()
        try:
            assert await _until(lambda: "CERTIFICATE_VERIFY_FAILED" in caplog.text, 10)
            assert not link.connected.is_set()
        finally:
            await link.stop()

    with tls_mosquitto(tmp_path, certs) as port, caplog.at_level(logging.WARNING, logger="gateway.mqtt"):
        asyncio.run(go(port))


def test_a_full_ingest_backlog_stops_reading_until_it_drains(broker: Broker) -> None:
    """With ingest behind, the link stops reading the socket (TCP keeps the rest at the broker), keeps
    the connection alive meanwhile, and reads on once ingest has taken readings."""
    topic = f"attest/v1/backlog-{uuid.uuid4().hex[:8]}/readings"
    payload = b"x" * 32_000
    count = 400  # 12.8 MB: more than the socket buffers hold

    async def go() -> None:
        url = parse_broker_url(broker.url)
        waiting: list[Message] = []
        link = MqttLink(
            url,
            f"gw-{uuid.uuid4().hex[:8]}",
            on_message=lambda m: waiting.append(m) if m.topic == topic else None,
            backlog=lambda: len(waiting),
            protocol=wire.MQTT311,  # no Receive Maximum: the broker sends all it has
            keepalive=2,
            session_expiry=0,
        )
        link.max_backlog = 10
        link.start()
        publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"p-{uuid.uuid4().hex[:8]}")
        if broker.username:
            publisher.username_pw_set(broker.username, broker.password)
        try:
            assert await link.wait_connected(10)
            publisher.connect(broker.host, broker.port)
            publisher.loop_start()
            for _ in range(count):
                publisher.publish(topic, payload, qos=0)
            assert await _until(lambda: len(waiting) >= 10)
            await asyncio.sleep(4)  # two keep-alives: paused is not silent
            assert link.connected.is_set()
            assert 10 <= len(waiting) < count
            received = 0
            while received < count:  # ingest takes everything delivered, then says so
                received += len(waiting)
                waiting.clear()
                link.resume_reading()
                if received < count:
                    assert await _until(lambda: len(waiting) > 0, 10), f"stuck at {received}"
            assert received == count
        finally:
            publisher.loop_stop()
            publisher.disconnect()
            await link.stop()

    asyncio.run(go())


def test_a_broker_that_falls_silent_is_given_up_and_reconnected() -> None:
    """A peer that answers CONNACK and SUBACK, then nothing: the keep-alive notices and reconnects."""

    async def go() -> None:
        broker = FakeBroker(wire.MQTT311, answer_pings=False)
        url = await broker.start()
        link = MqttLink(
            parse_broker_url(url), "gw-silent", on_message=lambda m: None, protocol=wire.MQTT311, keepalive=2
        )
        link.start()
        try:
            assert await link.wait_connected(5)
            # silent for 1.5 keep-alives (3 s), then a reconnection after a pause of at most 1 s
            assert await _until(lambda: len(broker.connections) >= 2, 8)
            assert broker.connections[1] - broker.connections[0] >= 3.0
        finally:
            await link.stop()
            broker.close()

    asyncio.run(go())


def test_stop_ends_the_link_even_if_a_cancellation_is_swallowed() -> None:
    """Python 3.11's asyncio.wait_for returns the result instead of raising when a cancellation
    lands as the awaited future completes (a CONNACK arriving as the link stops, say): the link's
    task then lives on, reconnecting.  stop() must end it all the same, not wait for ever."""

    async def go() -> None:
        link = MqttLink(parse_broker_url("mqtt://127.0.0.1:1"), "gw-swallow", on_message=lambda m: None)
        swallowed = 0

        async def run() -> None:
            nonlocal swallowed
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    swallowed += 1
                    if swallowed > 1:
                        raise

        link._task = asyncio.create_task(run())
        await asyncio.sleep(0)
        stopping = asyncio.create_task(link.stop())
        done, _ = await asyncio.wait([stopping], timeout=10)
        if not done:
            stopping.cancel()  # the test's own clean-up: this cancellation reaches run() as well
            with contextlib.suppress(asyncio.CancelledError):
                await stopping
        assert done, "stop() still waits on a link task that lost a cancellation"
        assert swallowed == 2

    asyncio.run(go())
