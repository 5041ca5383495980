"""The broker's answers to the gateway: CONNACK (with MQTT 5's limits), SUBACK and PUBACK, and their reason codes."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.mqttwire.packets import MQTT5, U16, MqttProtocolError, varint_at


def connack_result(body: bytes, version: int) -> tuple[bool, int]:
    """(session present, reason code) of a CONNACK body; reason 0 is success."""
    if len(body) < 2:
        raise MqttProtocolError("malformed CONNACK from the broker")
    return bool(body[0] & 0x01), body[1]


# MQTT 5 property identifiers and how their values are encoded (section 2.2.2.2)
_BYTE, _U16P, _U32, _VARINT, _UTF8, _BINARY, _PAIR = range(7)
_PROPERTY_TYPES = {
    0x01: _BYTE, 0x02: _U32, 0x03: _UTF8, 0x08: _UTF8, 0x09: _BINARY, 0x0B: _VARINT,
    0x11: _U32, 0x12: _UTF8, 0x13: _U16P, 0x15: _UTF8, 0x16: _BINARY, 0x17: _BYTE,
    0x18: _U32, 0x19: _BYTE, 0x1A: _UTF8, 0x1C: _UTF8, 0x1F: _UTF8, 0x21: _U16P,
    0x22: _U16P, 0x23: _U16P, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _U32,
    0x28: _BYTE, 0x29: _BYTE, 0x2A: _BYTE,
}  # fmt: skip


def properties(data: bytes) -> dict[int, int]:
    """The numeric MQTT 5 properties in ``data`` (a property block without its length).

    Text, binary and user properties are skipped; an unknown or truncated property
    is a :class:`MqttProtocolError`.
    """
    out: dict[int, int] = {}
    i, end = 0, len(data)
    while i < end:
        ident = data[i]
        kind = _PROPERTY_TYPES.get(ident)
        i += 1
        if kind is None:
            raise MqttProtocolError(f"unknown MQTT 5 property 0x{ident:02x} from the broker")
        if kind == _BYTE:
            size = 1
        elif kind == _U16P:
            size = 2
        elif kind == _U32:
            size = 4
        elif kind == _VARINT:
            value = varint_at(data, i, end)
            if value is None:
                raise MqttProtocolError("truncated MQTT 5 property from the broker")
            out[ident], i = value
            continue
        else:
            size = 0
            for _ in range(2 if kind == _PAIR else 1):
                if i + 2 > end:
                    raise MqttProtocolError("truncated MQTT 5 property from the broker")
                n = U16.unpack_from(data, i)[0]
                size += 2 + n
                i += 2 + n
            i -= size
        if i + size > end:
            raise MqttProtocolError("truncated MQTT 5 property from the broker")
        if kind in (_BYTE, _U16P, _U32):
            out[ident] = int.from_bytes(data[i : i + size], "big")
        i += size
    return out


@dataclass(frozen=True, slots=True)
class Connack:
    session_present: bool
    reason: int
    """0: accepted."""
    receive_maximum: int = 65_535
    """MQTT 5: QoS 1 messages we may have unacknowledged at the broker at once."""
    server_keepalive: int | None = None
    """MQTT 5: the keep-alive the broker imposes instead of ours."""


def parse_connack(body: bytes, version: int) -> Connack:
    """A CONNACK body: the session flag, the reason and, in MQTT 5, the limits the broker sets."""
    present, reason = connack_result(body, version)
    if version != MQTT5 or len(body) == 2:
        return Connack(present, reason)
    block = varint_at(body, 2, len(body))
    if block is None or block[1] + block[0] > len(body):
        raise MqttProtocolError("malformed CONNACK properties from the broker")
    props = properties(body[block[1] : block[1] + block[0]])
    return Connack(present, reason, props.get(0x21, 65_535) or 65_535, props.get(0x13))


def suback_codes(body: bytes, version: int) -> tuple[int, list[int]]:
    """(packet id, reason codes) of a SUBACK body; a code of 0x80 or above is a refusal."""
    if len(body) < 3:
        raise MqttProtocolError("malformed SUBACK from the broker")
    packet_id = U16.unpack_from(body)[0]
    i = 2
    if version == MQTT5:
        props = varint_at(body, i, len(body))
        if props is None:
            raise MqttProtocolError("malformed SUBACK from the broker")
        i = props[1] + props[0]
    return packet_id, list(body[i:])


CONNACK_REASONS = {
    # MQTT 3.1.1 return codes
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
    # MQTT 5 reason codes
    0x80: "unspecified error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorised",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
}


PUBACK_REASONS = {
    0x80: "unspecified error",
    0x83: "implementation specific error",
    0x87: "not authorized",
    0x90: "topic name invalid",
    0x91: "packet identifier in use",
    0x97: "quota exceeded",
    0x99: "payload format invalid",
}


def puback_result(body: bytes, version: int) -> tuple[int, int]:
    """(packet id, reason code) of a PUBACK body; 0x80 or above is a refusal (MQTT 5 only).

    An MQTT 5 PUBACK of only the packet id means success (section 3.4.2.1).
    """
    if len(body) < 2:
        raise MqttProtocolError("malformed PUBACK from the broker")
    reason = body[2] if version == MQTT5 and len(body) > 2 else 0
    return U16.unpack_from(body)[0], reason


def puback_reason(code: int) -> str:
    return PUBACK_REASONS.get(code, f"reason code 0x{code:02x}")


LOGIN_REFUSALS = frozenset({4, 5, 0x86, 0x87})
"""CONNACK codes that mean the broker did not accept the user name, password or client."""


def connack_reason(code: int) -> str:
    return CONNACK_REASONS.get(code, f"reason code 0x{code:02x}")
