"""The gateway's MQTT packets: built to the specification's bytes, parsed from any split of the stream."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import mqttwire as wire


def test_varint_matches_the_specifications_examples() -> None:
    # MQTT 3.1.1 table 2.4 / MQTT 5 section 1.5.5: the boundaries of 1, 2, 3 and 4 bytes
    assert wire.varint(0) == b"\x00"
    assert wire.varint(127) == b"\x7f"
    assert wire.varint(128) == b"\x80\x01"
    assert wire.varint(16_383) == b"\xff\x7f"
    assert wire.varint(16_384) == b"\x80\x80\x01"
    assert wire.varint(2_097_151) == b"\xff\xff\x7f"
    assert wire.varint(2_097_152) == b"\x80\x80\x80\x01"
    assert wire.varint(268_435_455) == b"\xff\xff\xff\x7f"
    with pytest.raises(ValueError):
        wire.varint(268_435_456)


def test_connect_311_persistent_session_with_credentials() -> None:
    packet = wire.connect(
        "gw-1", version=wire.MQTT311, keepalive=30, clean_start=False, username="u", password="p"
    )
    body = b"\x00\x04MQTT\x04\xc0\x00\x1e" + b"\x00\x04gw-1" + b"\x00\x01u" + b"\x00\x01p"
    assert packet == b"\x10" + bytes([len(body)]) + body


def test_connect_5_carries_session_expiry_and_receive_maximum() -> None:
    packet = wire.connect(
        "gw",
        version=wire.MQTT5,
        keepalive=30,
        clean_start=False,
        session_expiry=604_800,
        receive_maximum=5000,
    )
    props = b"\x11\x00\x09\x3a\x80" + b"\x21\x13\x88"
    body = b"\x00\x04MQTT\x05\x00\x00\x1e" + bytes([len(props)]) + props + b"\x00\x02gw"
    assert packet == b"\x10" + bytes([len(body)]) + body


def test_connect_clean_start_without_credentials() -> None:
    packet = wire.connect("", version=wire.MQTT5, keepalive=10, clean_start=True)
    assert packet == b"\x10\x0d\x00\x04MQTT\x05\x02\x00\x0a\x00\x00\x00"


def test_subscribe_311_and_5() -> None:
    assert wire.subscribe(7, "a/+", 1, wire.MQTT311) == b"\x82\x08\x00\x07\x00\x03a/+\x01"
    assert wire.subscribe(7, "a/+", 1, wire.MQTT5) == b"\x82\x09\x00\x07\x00\x00\x03a/+\x01"


def test_publish_qos1_and_dup_flag() -> None:
    assert (
        wire.publish("t", b"xy", qos=1, packet_id=258, version=wire.MQTT311) == b"\x32\x07\x00\x01t\x01\x02xy"
    )
    assert wire.publish("t", b"xy", qos=1, packet_id=258, version=wire.MQTT5, dup=True) == (
        b"\x3a\x08\x00\x01t\x01\x02\x00xy"
    )
    assert wire.publish("t", b"", qos=0, packet_id=0, version=wire.MQTT311) == b"\x30\x03\x00\x01t"


def test_pubacks_are_one_buffer_in_order() -> None:
    assert wire.pubacks([1, 65535, 2]) == b"\x40\x02\x00\x01" + b"\x40\x02\xff\xff" + b"\x40\x02\x00\x02"
    assert wire.pubacks([]) == b""


def _broker_publish(
    topic: str, payload: bytes, qos: int, packet_id: int, version: int, props: bytes
) -> bytes:
    """A PUBLISH as a broker may send it: in MQTT 5 with properties (here: arbitrary bytes)."""
    body = len(topic.encode()).to_bytes(2, "big") + topic.encode()
    if qos:
        body += packet_id.to_bytes(2, "big")
    if version == wire.MQTT5:
        body += wire.varint(len(props)) + props
    body += payload
    return bytes([0x30 | (qos << 1)]) + wire.varint(len(body)) + body


publishes = st.lists(
    st.tuples(
        st.text(min_size=1, max_size=40),
        st.binary(max_size=1500),
        st.integers(0, 1),
        st.integers(1, 65535),
        st.binary(max_size=200),
    ),
    max_size=12,
)


@given(publishes, st.sampled_from([wire.MQTT311, wire.MQTT5]), st.lists(st.integers(1, 400), max_size=20))
def test_any_split_of_the_stream_gives_the_same_packets(
    messages: list[tuple[str, bytes, int, int, bytes]], version: int, cuts: list[int]
) -> None:
    stream = b"".join(_broker_publish(t, p, q, i, version, pr) for t, p, q, i, pr in messages)
    stream += b"\xd0\x00"  # a PINGRESP at the end
    reader = wire.PacketReader(version)
    got: list[wire.Publish | wire.Control] = []
    pos = 0
    for cut in cuts:
        got += reader.feed(stream[pos : pos + cut])
        pos += cut
    got += reader.feed(stream[pos:])
    assert [(p.topic, p.payload, p.packet_id, p.qos) for p in got if isinstance(p, wire.Publish)] == [
        (t, p, i if q else 0, q) for t, p, q, i, _ in messages
    ]
    assert isinstance(got[-1], wire.Control)
    assert got[-1].type == wire.PINGRESP


def test_a_partial_packet_waits_for_the_rest() -> None:
    packet = _broker_publish("attest/v1/d/readings", b"x" * 300, 1, 9, wire.MQTT311, b"")
    reader = wire.PacketReader(wire.MQTT311)
    assert reader.feed(packet[:1]) == []
    assert reader.feed(packet[1:2]) == []  # half of a two-byte remaining length
    assert reader.feed(packet[2:-1]) == []
    [p] = reader.feed(packet[-1:])
    assert isinstance(p, wire.Publish)
    assert (p.packet_id, p.payload) == (9, b"x" * 300)


@given(st.binary(max_size=300), st.sampled_from([wire.MQTT311, wire.MQTT5]))
def test_garbage_raises_only_the_protocol_error(data: bytes, version: int) -> None:
    reader = wire.PacketReader(version)
    with contextlib.suppress(wire.MqttProtocolError):
        reader.feed(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x30\xff\xff\xff\xff\x01", "variable byte integer"),
        (b"\x36\x03\x00\x01t", "malformed PUBLISH"),  # QoS 3
        (b"\x32\x01\x00", "malformed PUBLISH"),  # no room for the topic length
        (b"\x32\x04\x00\x05ab", "malformed PUBLISH"),  # topic longer than the packet
    ],
)
def test_malformed_packets_are_named(data: bytes, message: str) -> None:
    with pytest.raises(wire.MqttProtocolError, match=message):
        wire.PacketReader(wire.MQTT311).feed(data)


def test_connack_and_suback() -> None:
    assert wire.connack_result(b"\x01\x00", wire.MQTT311) == (True, 0)
    assert wire.connack_result(b"\x00\x87\x00", wire.MQTT5) == (False, 0x87)
    assert wire.connack_reason(0x87) == "not authorised"
    assert wire.suback_codes(b"\x00\x05\x01", wire.MQTT311) == (5, [1])
    assert wire.suback_codes(b"\x00\x05\x02\x1f\x00\x87", wire.MQTT5) == (5, [0x87])  # a reason string
    with pytest.raises(wire.MqttProtocolError):
        wire.connack_result(b"\x00", wire.MQTT311)


def test_connack_properties_of_mqtt_5() -> None:
    # session expiry, receive maximum 20, assigned client id, server keep alive 60, a user property
    props = (
        b"\x11\x00\x00\x00\x3c"
        + b"\x21\x00\x14"
        + b"\x12\x00\x03abc"
        + b"\x13\x00\x3c"
        + b"\x26\x00\x01k\x00\x01v"
    )
    connack = wire.parse_connack(b"\x01\x00" + wire.varint(len(props)) + props, wire.MQTT5)
    assert connack == wire.Connack(True, 0, 20, 60)
    assert wire.parse_connack(b"\x00\x00", wire.MQTT311) == wire.Connack(False, 0)
    assert wire.parse_connack(b"\x00\x00\x00", wire.MQTT5).receive_maximum == 65_535
    with pytest.raises(wire.MqttProtocolError, match="unknown MQTT 5 property"):
        wire.parse_connack(b"\x00\x00\x02\x7f\x00", wire.MQTT5)
    with pytest.raises(wire.MqttProtocolError, match="truncated"):
        wire.parse_connack(b"\x00\x00\x02\x21\x00", wire.MQTT5)


@given(st.binary(max_size=60))
def test_property_garbage_raises_only_the_protocol_error(data: bytes) -> None:
    with contextlib.suppress(wire.MqttProtocolError):
        wire.properties(data)


def test_puback_reason_codes() -> None:
    assert wire.puback_result(b"\x00\x07", wire.MQTT5) == (7, 0)  # no reason code: success
    assert wire.puback_result(b"\x00\x07\x87\x00", wire.MQTT5) == (7, 0x87)
    assert wire.puback_result(b"\x00\x07\x10", wire.MQTT5) == (7, 0x10)
    assert wire.puback_result(b"\x00\x07", wire.MQTT311) == (7, 0)
    assert wire.puback_reason(0x97) == "quota exceeded"
    with pytest.raises(wire.MqttProtocolError, match="PUBACK"):
        wire.puback_result(b"\x07", wire.MQTT5)
    packet = wire.publish("attest/v1/d/receipts", b"r", qos=1, packet_id=3, version=wire.MQTT5)
    assert wire.publish_topic(packet) == "attest/v1/d/receipts"


def test_connect_5_advertises_the_maximum_packet_size() -> None:
    packet = wire.connect("gw", version=wire.MQTT5, keepalive=30, clean_start=True, max_packet_size=65_536)
    props = b"\x27\x00\x01\x00\x00"
    body = b"\x00\x04MQTT\x05\x02\x00\x1e" + bytes([len(props)]) + props + b"\x00\x02gw"
    assert packet == b"\x10" + bytes([len(body)]) + body
    # MQTT 3.1.1 has no such property: the same CONNECT as without it
    assert wire.connect(
        "gw", version=wire.MQTT311, keepalive=30, clean_start=True, max_packet_size=65_536
    ) == (wire.connect("gw", version=wire.MQTT311, keepalive=30, clean_start=True))


@pytest.mark.parametrize("version", [wire.MQTT311, wire.MQTT5])
def test_an_oversized_publish_is_read_past_without_being_held(version: int) -> None:
    """A 4 MB PUBLISH, fed in 64 KiB chunks to a reader with a 64 KiB limit: never more than the
    limit is held; a marker (topic, packet id, first bytes, real size) comes out, and the
    packets after it are read as usual."""
    payload = bytes(range(256)) * (4 * 4096)
    stream = (
        _broker_publish("attest/v1/big/readings", payload, 1, 77, version, b"")
        + _broker_publish("attest/v1/small/readings", b"fine", 1, 78, version, b"")
        + b"\xd0\x00"
    )
    reader = wire.PacketReader(version, max_packet_size=65_536)
    got: list[wire.Publish | wire.Control] = []
    for pos in range(0, len(stream), 65_536):
        got += reader.feed(stream[pos : pos + 65_536])
        assert reader.buffered <= 65_536
    big, small, ping = got
    assert isinstance(big, wire.Publish)
    assert (big.topic, big.packet_id, big.qos, big.size) == ("attest/v1/big/readings", 77, 1, len(payload))
    assert big.payload == payload[: wire.OVERSIZED_KEEP]
    assert isinstance(small, wire.Publish)
    assert (small.topic, small.payload, small.packet_id, small.size) == (
        "attest/v1/small/readings",
        b"fine",
        78,
        0,
    )
    assert isinstance(ping, wire.Control)
    assert ping.type == wire.PINGRESP


@given(publishes, st.sampled_from([wire.MQTT311, wire.MQTT5]), st.lists(st.integers(1, 400), max_size=20))
def test_any_split_gives_the_same_packets_and_markers_under_a_small_limit(
    messages: list[tuple[str, bytes, int, int, bytes]], version: int, cuts: list[int]
) -> None:
    limit = 600  # room for any generated topic and properties, not for the larger payloads
    packets = [_broker_publish(t, p, q, i, version, pr) for t, p, q, i, pr in messages]
    stream = b"".join(packets) + b"\xd0\x00"
    reader = wire.PacketReader(version, max_packet_size=limit)
    got: list[wire.Publish | wire.Control] = []
    pos = 0
    for cut in cuts:
        got += reader.feed(stream[pos : pos + cut])
        assert reader.buffered <= limit
        pos += cut
    got += reader.feed(stream[pos:])
    publishes_got = [p for p in got if isinstance(p, wire.Publish)]
    assert len(publishes_got) == len(messages)
    for p, packet, (t, payload, q, i, _) in zip(publishes_got, packets, messages, strict=True):
        assert (p.topic, p.packet_id, p.qos) == (t, i if q else 0, q)
        if len(packet) > limit:
            assert p.size == len(payload)
            assert payload.startswith(p.payload)
        else:
            assert (p.payload, p.size) == (payload, 0)
    assert isinstance(got[-1], wire.Control)


def test_any_other_oversized_packet_is_a_protocol_error() -> None:
    reader = wire.PacketReader(wire.MQTT5, max_packet_size=1024)
    with pytest.raises(wire.MqttProtocolError, match="SUBACK packet of 2004 bytes, over the 1024-byte limit"):
        reader.feed(b"\x90" + wire.varint(2001))  # the header alone is enough to know


@pytest.mark.parametrize("version", [wire.MQTT311, wire.MQTT5])
@pytest.mark.parametrize("chunk", [1, 7, 1000, 100_000])
def test_an_oversized_publish_whose_topic_alone_is_too_long_still_gets_its_marker(
    version: int, chunk: int
) -> None:
    """Its packet id is picked out as it streams past, so it can be acknowledged: otherwise the
    broker would deliver it again on every connection and nothing behind it would get through."""
    topic = "t" * 5000
    stream = _broker_publish(topic, b"payload", 1, 4242, version, b"") + _broker_publish(
        "attest/v1/small/readings", b"fine", 1, 43, version, b""
    )
    reader = wire.PacketReader(version, max_packet_size=1024)
    got: list[wire.Publish | wire.Control] = []
    for pos in range(0, len(stream), chunk):
        got += reader.feed(stream[pos : pos + chunk])
        assert reader.buffered <= 1024
    big, small = got
    assert isinstance(big, wire.Publish)
    assert isinstance(small, wire.Publish)
    assert (big.packet_id, big.qos, big.payload) == (4242, 1, b"")
    assert topic.startswith(big.topic)
    assert big.topic
    assert big.size > 0
    assert (small.topic, small.payload, small.packet_id) == ("attest/v1/small/readings", b"fine", 43)
