"""The load generator: publishes pre-signed readings to the broker, QoS 1, and records when.

Run as its own process (``python -m bench.publisher``) so that its CPU is not the
gateway's.  It speaks MQTT 3.1.1 over a plain socket with every PUBLISH packet
built before the clock starts (by :mod:`gateway.mqttwire`, the project's one MQTT
encoder): a Python MQTT client (paho) spends more CPU per message than the
gateway's own decoding, and on a 2-core machine that would be taken from the
gateway.  The broker sees an ordinary client: CONNECT (clean
session), PUBLISH QoS 1 with packet ids, PUBACK for every one, DISCONNECT.

Input (``--input``): frames of ``u16 topic length, topic, u16 payload length,
payload``.  Output (``--times``): one float64 per message, the wall-clock time
(``time.time()``) at which its bytes were handed to the socket.  A JSON summary
goes to stdout.  ``--rate`` paces the messages (per second); 0 sends as fast as
the broker takes them.
"""

from __future__ import annotations

import argparse
import array
import json
import socket
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from gateway import mqttwire as wire

MAX_IN_FLIGHT = 30_000  # packet ids are 16-bit: never reuse one that is not acknowledged
PUBACK_BYTE = wire.PUBACK << 4
"""The first byte of a PUBACK; an MQTT 3.1.1 PUBACK is 4 bytes (the Acks thread counts them
without parsing them)."""
CONNACK_BYTE = wire.CONNACK << 4


def read_frames(path: Path) -> list[tuple[bytes, bytes]]:
    data = path.read_bytes()
    out: list[tuple[bytes, bytes]] = []
    pos = 0
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 2], "big")
        topic = data[pos + 2 : pos + 2 + n]
        pos += 2 + n
        m = int.from_bytes(data[pos : pos + 2], "big")
        out.append((topic, data[pos + 2 : pos + 2 + m]))
        pos += 2 + m
    return out


def write_frames(path: Path, messages: Sequence[tuple[str, bytes]]) -> None:
    with open(path, "wb") as fh:
        for topic, payload in messages:
            t = topic.encode()
            fh.write(len(t).to_bytes(2, "big") + t + len(payload).to_bytes(2, "big") + payload)


class Acks:
    """Counts PUBACKs on the socket (the broker sends nothing else to a client that does not subscribe)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.count = 0
        self.cond = threading.Condition()
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, name="pubacks", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError as exc:
                self.error = str(exc)
                chunk = b""
            if not chunk:
                with self.cond:
                    self.error = self.error or "the broker closed the connection"
                    self.cond.notify_all()
                return
            buf += chunk
            n = 0
            while len(buf) >= 4 and buf[0] == PUBACK_BYTE:
                buf = buf[4:]
                n += 1
            if buf and buf[0] != PUBACK_BYTE and len(buf) >= 2:
                with self.cond:
                    self.error = f"unexpected packet type 0x{buf[0]:02x} from the broker"
                    self.cond.notify_all()
                return
            if n:
                with self.cond:
                    self.count += n
                    self.cond.notify_all()

    def wait_below(self, sent: int, limit: int, timeout: float) -> None:
        with self.cond:
            self.cond.wait_for(lambda: sent - self.count <= limit or self.error is not None, timeout)


def build_packets(frames: list[tuple[bytes, bytes]]) -> list[bytes]:
    """The PUBLISH packets (MQTT 3.1.1, QoS 1) of the frames, packet ids cycling through 1..65535."""
    return [
        wire.publish(topic.decode(), payload, qos=1, packet_id=(i % 65535) + 1, version=wire.MQTT311)
        for i, (topic, payload) in enumerate(frames)
    ]


def run(
    host: str, port: int, packets: list[bytes], rate: float, client_id: str
) -> tuple[array.array[float], dict[str, object]]:
    times = array.array("d", bytes(8 * len(packets)))
    sock = socket.create_connection((host, port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(wire.connect(client_id, version=wire.MQTT311, keepalive=0, clean_start=True))
    connack = b""
    while len(connack) < 4:
        chunk = sock.recv(4 - len(connack))
        if not chunk:
            raise ConnectionError("the broker closed the connection before CONNACK")
        connack += chunk
    if connack[0] != CONNACK_BYTE or connack[3] != 0:
        raise ConnectionError(f"the broker refused the connection: {connack.hex()}")
    sock.settimeout(None)
    acks = Acks(sock)
    acks.start()
    chunk_size = 64 if rate <= 0 else max(1, int(rate * 0.005))
    started = time.time()
    cpu0 = time.process_time()
    t0 = time.monotonic()
    sent = 0
    while sent < len(packets):
        if acks.error:
            break
        if rate > 0:
            due = t0 + sent / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        if sent - acks.count > MAX_IN_FLIGHT:
            acks.wait_below(sent, MAX_IN_FLIGHT // 2, 30)
        end = min(sent + chunk_size, len(packets))
        now = time.time()
        for i in range(sent, end):
            times[i] = now
        sock.sendall(b"".join(packets[sent:end]))
        sent = end
    published = time.time()
    acks.wait_below(sent, 0, 120)
    acked_at = time.time()
    cpu = time.process_time() - cpu0
    try:
        sock.sendall(wire.DISCONNECT_PACKET)
        sock.close()
    except OSError:
        pass
    summary: dict[str, object] = {
        "sent": sent,
        "acked": acks.count,
        "started": started,
        "published": published,
        "acked_at": acked_at,
        "publish_rate": sent / max(published - started, 1e-9),
        "cpu_s": round(cpu, 3),
        "error": acks.error if acks.count < sent else None,
    }
    return times, summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.publisher", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--times", type=Path, required=True)
    parser.add_argument(
        "--rate", type=float, default=0.0, help="messages per second (0: as fast as possible)"
    )
    parser.add_argument("--client-id", default="bench-publisher")
    parser.add_argument("--go", type=Path, help="wait until this file exists before publishing")
    args = parser.parse_args(argv)
    packets = build_packets(read_frames(args.input))
    print(json.dumps({"ready": len(packets)}), flush=True)
    if args.go is not None:
        while not args.go.exists():
            time.sleep(0.01)
    times, summary = run(args.host, args.port, packets, args.rate, args.client_id)
    with open(args.times, "wb") as fh:
        times.tofile(fh)
    print(json.dumps(summary), flush=True)
    return 0 if summary["acked"] == summary["sent"] == len(packets) else 1


if __name__ == "__main__":
    sys.exit(main())
