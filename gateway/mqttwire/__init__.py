"""MQTT 3.1.1 and 5 packets: the few the gateway sends and reads, built and parsed without I/O.

The gateway's MQTT client (:mod:`gateway.mqtt`) is a small asyncio protocol
over these functions.  It speaks only what the gateway needs: CONNECT with a
persistent session, SUBSCRIBE at QoS 1, PUBLISH in both directions at QoS 0/1,
PUBACK, PINGREQ and DISCONNECT.  Reading is built for throughput: one call
parses every complete packet in a chunk of bytes from the socket, and the
PUBACKs for a batch of readings go out in a single write.

* :mod:`~gateway.mqttwire.packets`: the protocol's numbers, the size limit and the
  encoders (the project's one MQTT encoder: the benchmark's publisher uses it too);
* :mod:`~gateway.mqttwire.reader`: the byte stream from the broker as packets, an
  oversized PUBLISH as a marker;
* :mod:`~gateway.mqttwire.replies`: the broker's CONNACK, SUBACK and PUBACK.

Everything is importable from here (``from gateway import mqttwire as wire``).

References: MQTT 3.1.1 (OASIS, 2014) and MQTT 5.0 (OASIS, 2019), sections 2
(packet format) and 3 (the packets).
"""

from __future__ import annotations

from gateway.mqttwire.packets import (
    CONNACK,
    CONNECT,
    DEFAULT_MAX_PACKET_SIZE,
    DISCONNECT,
    DISCONNECT_PACKET,
    MQTT5,
    MQTT311,
    PINGREQ,
    PINGREQ_PACKET,
    PINGRESP,
    PUBACK,
    PUBLISH,
    SUBACK,
    SUBSCRIBE,
    U16,
    MqttProtocolError,
    connect,
    encode_string,
    frame,
    pubacks,
    publish,
    publish_topic,
    subscribe,
    varint,
    varint_at,
)
from gateway.mqttwire.reader import OVERSIZED_KEEP, Control, PacketReader, Publish
from gateway.mqttwire.replies import (
    CONNACK_REASONS,
    LOGIN_REFUSALS,
    PUBACK_REASONS,
    Connack,
    connack_reason,
    connack_result,
    parse_connack,
    properties,
    puback_reason,
    puback_result,
    suback_codes,
)

__all__ = [
    "CONNACK",
    "CONNACK_REASONS",
    "CONNECT",
    "DEFAULT_MAX_PACKET_SIZE",
    "DISCONNECT",
    "DISCONNECT_PACKET",
    "LOGIN_REFUSALS",
    "MQTT5",
    "MQTT311",
    "OVERSIZED_KEEP",
    "PINGREQ",
    "PINGREQ_PACKET",
    "PINGRESP",
    "PUBACK",
    "PUBACK_REASONS",
    "PUBLISH",
    "SUBACK",
    "SUBSCRIBE",
    "U16",
    "Connack",
    "Control",
    "MqttProtocolError",
    "PacketReader",
    "Publish",
    "connack_reason",
    "connack_result",
    "connect",
    "encode_string",
    "frame",
    "parse_connack",
    "properties",
    "puback_reason",
    "puback_result",
    "pubacks",
    "publish",
    "publish_topic",
    "suback_codes",
    "subscribe",
    "varint",
    "varint_at",
]
