"""The packets the gateway sends, built without I/O; the protocol's numbers and the size limit.

The one MQTT encoder of the project: the gateway's link (:mod:`gateway.mqtt`) and the
benchmark's publisher (``bench.publisher``) build their packets here.
"""

from __future__ import annotations

import struct

from gateway.errors import GatewayError

MQTT311 = 4
"""Protocol level of MQTT 3.1.1 in CONNECT."""
MQTT5 = 5

CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
SUBSCRIBE = 8
SUBACK = 9
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"
"""DISCONNECT with no reason code: a normal disconnection in both versions."""

# MQTT 5 property identifiers the gateway sends
_SESSION_EXPIRY = 0x11
_RECEIVE_MAXIMUM = 0x21
_MAXIMUM_PACKET_SIZE = 0x27

DEFAULT_MAX_PACKET_SIZE = 65_536
"""The largest packet the gateway takes from the broker, in bytes (whole packet, as MQTT 5's
Maximum Packet Size counts it). A reading is at most 1 KiB plus its topic and header: this
leaves a wide margin and still bounds what one packet can cost in memory."""

U16 = struct.Struct(">H")
"""A two-byte integer (lengths, packet ids), most significant byte first."""


class MqttProtocolError(GatewayError):
    """The broker sent bytes that are not a valid MQTT packet, or refused us."""

    code = "mqtt_protocol"


def varint(n: int) -> bytes:
    """MQTT's Variable Byte Integer (remaining length, property lengths)."""
    if not 0 <= n <= 268_435_455:
        raise ValueError(f"{n} does not fit in an MQTT variable byte integer")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def varint_at(buf: bytes, i: int, end: int) -> tuple[int, int] | None:
    """(value, index after it) of the variable byte integer at ``buf[i]``; None if it runs past ``end``."""
    value = 0
    for shift in (0, 7, 14, 21):
        if i >= end:
            return None
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            return value, i
    raise MqttProtocolError("malformed variable byte integer from the broker")


def encode_string(data: bytes) -> bytes:
    """An MQTT string or binary field: its two-byte length, then its bytes."""
    if len(data) > 0xFFFF:
        raise ValueError("an MQTT string is at most 65,535 bytes")
    return U16.pack(len(data)) + data


def frame(first: int, body: bytes) -> bytes:
    """A packet: its first byte (type and flags), its remaining length and its body."""
    return bytes((first,)) + varint(len(body)) + body


def connect(
    client_id: str,
    *,
    version: int,
    keepalive: int,
    clean_start: bool,
    username: str | None = None,
    password: str | None = None,
    session_expiry: int = 0,
    receive_maximum: int = 0,
    max_packet_size: int = 0,
) -> bytes:
    """CONNECT: no will; in MQTT 5 the session expiry, receive maximum and maximum packet size
    properties (0: omitted)."""
    flags = 0x02 if clean_start else 0
    tail = b""
    if username is not None:
        flags |= 0x80
        tail += encode_string(username.encode())
        if password is not None:
            flags |= 0x40
            tail += encode_string(password.encode())
    body = encode_string(b"MQTT") + bytes((version, flags)) + U16.pack(keepalive)
    if version == MQTT5:
        props = b""
        if session_expiry:
            props += bytes((_SESSION_EXPIRY,)) + struct.pack(">I", session_expiry)
        if receive_maximum:
            props += bytes((_RECEIVE_MAXIMUM,)) + U16.pack(receive_maximum)
        if max_packet_size:
            props += bytes((_MAXIMUM_PACKET_SIZE,)) + struct.pack(">I", max_packet_size)
        body += varint(len(props)) + props
    return frame(CONNECT << 4, body + encode_string(client_id.encode()) + tail)


def subscribe(packet_id: int, topic_filter: str, qos: int, version: int) -> bytes:
    """SUBSCRIBE to one filter."""
    body = U16.pack(packet_id)
    if version == MQTT5:
        body += b"\x00"  # no properties
    return frame(0x82, body + encode_string(topic_filter.encode()) + bytes((qos,)))


def publish(
    topic: str, payload: bytes, *, qos: int, packet_id: int, version: int, dup: bool = False
) -> bytes:
    """PUBLISH (not retained)."""
    body = encode_string(topic.encode())
    if qos:
        body += U16.pack(packet_id)
    if version == MQTT5:
        body += b"\x00"  # no properties
    return frame((PUBLISH << 4) | (0x08 if dup else 0) | (qos << 1), body + payload)


def pubacks(packet_ids: list[int]) -> bytes:
    """The PUBACKs of these packet ids, in this order, as one buffer.

    The same bytes in both versions: MQTT 5 lets a PUBACK omit its reason code
    (success) when there are no properties.
    """
    return b"".join([b"\x40\x02" + U16.pack(i) for i in packet_ids])


def publish_topic(packet: bytes) -> str:
    """The topic of a PUBLISH packet as built by :func:`publish`."""
    header = varint_at(packet, 1, len(packet))
    if header is None:
        raise ValueError("not a complete PUBLISH packet")
    i = header[1]
    n = U16.unpack_from(packet, i)[0]
    return packet[i + 2 : i + 2 + n].decode("utf-8", "replace")
