"""How fast incoming readings are framed: the gateway's own reader against MQTT libraries' codecs.

``python -m bench.framing [--readings N] [--version 5|3.1.1]``

One buffer of N QoS 1 PUBLISH packets (a readings topic and a 156-byte envelope,
as the broker sends them to the gateway) is handed over in 64 KiB chunks, as a
socket delivers it, and each reading becomes the (topic, payload, packet id)
that ingest needs. Measured on one core, CPU time, best of three:

* ``mqttwire``: :class:`gateway.mqttwire.PacketReader` and a :class:`gateway.ingest.Message`
  per reading, what ``gateway.mqttconnection.Connection.data_received`` does;
* ``paho-socket``: paho-mqtt with manual acknowledgements, driven as aiomqtt drives
  it: ``loop_read()`` on its non-blocking socket each time it is readable (it reads
  one packet per call, the fixed header a byte at a time); the bytes come through a
  socket pair filled by another thread;
* ``paho-memory``: the same with its socket reads served from memory, so only its
  codec and dispatch are counted;
* ``gmqtt``: gmqtt's packet splitter and PUBLISH handler (automatic acknowledgements
  sent to nowhere: its manual mode needs a coroutine, so a task, per reading), if installed.

Nothing here talks to a broker: it measures the framing alone, which is a small
part of what a reading costs the gateway (its Ed25519 check costs far more).
"""

from __future__ import annotations

import argparse
import importlib
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway import mqttwire as wire
from gateway.ingest import Message

CHUNK = 64 * 1024
PAYLOAD = bytes(range(156))


def publishes(n: int, version: int) -> bytes:
    """n QoS 1 PUBLISH packets from 100 devices, packet ids cycling as a broker's do."""
    return b"".join(
        wire.publish(
            f"attest/v1/meter-{i % 100:04d}/readings",
            PAYLOAD,
            qos=1,
            packet_id=i % 65_535 + 1,
            version=version,
        )
        for i in range(n)
    )


def chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def cpu(run: Callable[[], int], n: int, repeat: int = 3) -> float:
    """The best CPU seconds of ``repeat`` runs; each must deliver n readings."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        got = run()
        best = min(best, time.process_time() - start)
        if got != n:
            raise RuntimeError(f"{got} readings delivered of {n}")
    return best


def mqttwire_run(data: bytes, version: int) -> int:
    reader = wire.PacketReader(version)
    out: list[Message] = []
    for chunk in chunks(data):
        now = time.time()
        for packet in reader.feed(chunk):
            if isinstance(packet, wire.Publish):
                out.append(Message(packet.topic, packet.payload, packet.packet_id, now))
    return len(out)


def _paho_client(version: int, out: list[Message]) -> paho.Client:
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id="bench",
        protocol=paho.MQTTv5 if version == wire.MQTT5 else paho.MQTTv311,
        manual_ack=True,
    )
    client.on_message = lambda c, u, m: out.append(Message(m.topic, bytes(m.payload), m.mid, m.timestamp))
    return client


def paho_socket_run(data: bytes, version: int, n: int) -> int:
    out: list[Message] = []
    client = _paho_client(version, out)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    writer = threading.Thread(target=theirs.sendall, args=(data,), daemon=True)
    writer.start()
    client._sock = ours
    try:
        while len(out) < n:
            if client.loop_read() != paho.MQTT_ERR_SUCCESS:
                raise RuntimeError("paho could not read the packets")
    finally:
        client._sock = None
        writer.join()
        ours.close()
        theirs.close()
    return len(out)


def paho_memory_run(data: bytes, version: int, n: int) -> int:
    out: list[Message] = []
    client = _paho_client(version, out)
    view = memoryview(data)
    pos = 0

    def recv(size: int) -> bytes:
        nonlocal pos
        piece = bytes(view[pos : pos + size])
        pos += len(piece)
        if not piece:
            raise BlockingIOError
        return piece

    client._sock_recv = recv  # type: ignore[method-assign, assignment]
    client._sock = socket.socket()
    try:
        while len(out) < n:
            if client.loop_read() != paho.MQTT_ERR_SUCCESS:
                raise RuntimeError("paho could not read the packets")
    finally:
        assert client._sock is not None
        client._sock.close()
        client._sock = None
    return len(out)


def gmqtt_run(gmqtt: Any, data: bytes, version: int) -> int:
    out: list[Message] = []
    client = gmqtt.Client("bench")
    client._connection_state.protocol_version = 5 if version == wire.MQTT5 else 4
    handler = client._package_handler
    handler._send_puback = lambda mid, reason_code=0: None
    client.on_message = lambda c, topic, payload, qos, props: out.append(Message(topic, payload, 0, 0.0))

    class Splitter:  # the part of gmqtt's protocol object that its packet splitter uses
        _connection = type("Conn", (), {"put_package": staticmethod(handler)})()

    split = gmqtt.mqtt.protocol.MQTTProtocol._read_packet
    splitter = Splitter()
    buf = b""
    for chunk in chunks(data):
        buf += chunk
        buf = buf[split(splitter, buf) :]
    return len(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.framing", description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--version", choices=["5", "3.1.1"], default="5")
    args = parser.parse_args(argv)
    n: int = args.readings
    version = wire.MQTT5 if args.version == "5" else wire.MQTT311
    data = publishes(n, version)
    runs: dict[str, Callable[[], int]] = {
        "mqttwire": lambda: mqttwire_run(data, version),
        "paho-socket": lambda: paho_socket_run(data, version, n),
        "paho-memory": lambda: paho_memory_run(data, version, n),
    }
    try:
        gmqtt = importlib.import_module("gmqtt")
        importlib.import_module("gmqtt.mqtt.protocol")
    except ImportError:
        print("gmqtt is not installed: pip install gmqtt", file=sys.stderr)
    else:
        runs["gmqtt"] = lambda: gmqtt_run(gmqtt, data, version)
    print(f"{n:,} readings, MQTT {args.version}, {len(data) / 1e6:.1f} MB")
    for name, run in runs.items():
        seconds = cpu(run, n)
        print(f"{name:12} {n / seconds:>12,.0f} readings/s  {seconds / n * 1e6:6.2f} µs each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
