"""Test stand-ins for the gateway: its enrolment REST routes and its receipts.

:class:`FakeGateway` is a real HTTP server (``http.server`` in a thread) that
implements ``POST /v1/devices`` (201, 200 for exactly the same statement again,
409 for another statement of an enrolled device) and ``GET /v1/log/key`` with the
documented answers, so ``enrol`` and ``simulate`` talk HTTP for real.  :class:`ReceiptIssuer`
subscribes to ``attest/v1/+/readings`` on a real broker, verifies every envelope
with the enrolled device key and publishes cumulative receipts signed by the test
log key.  :class:`MerkleLog` is the fake gateway's log: a real RFC 6962 tree in memory, so
its receipts carry real inclusion and consistency proofs (a v2 device deletes nothing
without them); the fake serves ``GET /v1/log/proof/consistency`` from it too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from attest_core.device import EnrolmentStatement, verify_enrolment
from attest_core.entries import reading_entry_bytes
from attest_core.errors import AttestError
from attest_core.keys import Ed25519Signer, Signer
from attest_core.merkle import consistency_proof, inclusion_proof, leaf_hash, root_from_leaf_hashes
from attest_core.note import NoteSigner
from attest_core.reading import decode_envelope
from attest_core.receipt import Receipt
from attest_core.topics import READINGS_FILTER, device_of_readings_topic, receipts_topic
from tests.support import seeded_signer

INSTALLER_TOKEN = "installer-secret"
VIEWER_TOKEN = "viewer-secret"
LOG_ORIGIN = "test.example/log"


class MerkleLog:
    """A Merkle log in memory, and the v2 receipts a gateway sends for it (real proofs)."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer
        self.leaves: list[bytes] = []
        self.where: dict[tuple[str, int], int] = {}
        self.logged: dict[str, int] = {}
        """The newest reading of each device in the log."""
        self.sent: dict[str, int] = {}
        """The tree size of the last receipt made for each device (where the next proof starts)."""
        self.lock = threading.Lock()

    def append(self, entry: bytes) -> int:
        with self.lock:
            self.leaves.append(leaf_hash(entry))
            return len(self.leaves) - 1

    def add_reading(self, envelope: bytes) -> int:
        reading = decode_envelope(envelope).reading()
        index = self.append(reading_entry_bytes(envelope))
        self.where[(reading.device_id, reading.seq)] = index
        return index

    def log_readings(self, device_id: str, envelopes: Mapping[int, bytes], upto: int) -> None:
        """Append the device's readings after its newest logged one, up to ``upto``, in order (as the
        sequencer does: reading n only after reading n - 1)."""
        for seq in range(self.logged.get(device_id, 0) + 1, upto + 1):
            self.add_reading(envelopes[seq])
        self.logged[device_id] = max(upto, self.logged.get(device_id, 0))

    def root(self, size: int) -> bytes:
        with self.lock:
            return root_from_leaf_hashes(self.leaves[:size])

    def consistency(self, size1: int, size2: int) -> list[bytes]:
        with self.lock:
            return consistency_proof(size1, size2, self.leaves[:size2])

    def receipt(
        self, device_id: str, seq: int, *, size: int | None = None, from_size: int | None = None
    ) -> Receipt:
        """The receipt for the device's reading ``seq`` in the tree of ``size`` (default: the whole log),
        with the consistency proof from ``from_size`` (default: the last receipt made for the device)."""
        with self.lock:
            size = len(self.leaves) if size is None else size
            start = self.sent.get(device_id, 0) if from_size is None else from_size
            leaves = self.leaves[:size]
            index = self.where[(device_id, seq)]
            proof = consistency_proof(start, size, leaves) if 0 < start < size else []
            receipt = Receipt(
                device_id, seq, index, size, root_from_leaf_hashes(leaves), int(time.time() * 1000),
                tuple(inclusion_proof(index, size, leaves)), start, tuple(proof),
            )  # fmt: skip
            self.sent[device_id] = size
            return receipt

    def signed(self, device_id: str, seq: int, **kwargs: int) -> bytes:
        return self.receipt(device_id, seq, **kwargs).sign(self.signer)


class FakeGateway:
    def __init__(self, log_signer: Ed25519Signer | None = None) -> None:
        self.log_signer = log_signer or seeded_signer("log key")
        self.log = MerkleLog(self.log_signer)
        self.note_signer = NoteSigner(LOG_ORIGIN, self.log_signer)
        self.log_key = self.note_signer.verifier_key().to_string()
        self.devices: dict[str, EnrolmentStatement] = {}
        self.pops: dict[str, bytes] = {}
        self.indices: dict[str, int] = {}
        self.log_index = 0
        self.lock = threading.Lock()
        self.mode = "normal"  # or: garbage-201, html-500, no-key, bad-key, slow, lose-answer
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.bodies: list[bytes] = []  # of the POSTs to /v1/devices
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _error(self, status: int, code: str, message: str) -> None:
                self._send(status, json.dumps({"error": {"code": code, "message": message}}).encode())

            def do_GET(self) -> None:
                gateway.requests.append(("GET", self.path, dict(self.headers)))
                if self.path.startswith("/v1/log/proof/consistency?"):
                    query = dict(p.split("=", 1) for p in self.path.split("?", 1)[1].split("&"))
                    a, b = int(query["from"]), int(query["to"])
                    hashes = [base64.b64encode(h).decode() for h in gateway.log.consistency(a, b)]
                    self._send(200, json.dumps({"from": a, "to": b, "hashes": hashes}).encode())
                elif self.path != "/v1/log/key":
                    self._error(404, "not_found", "no such route")
                elif gateway.mode == "no-key":
                    self._send(503, b"<html>down</html>", "text/html")
                elif gateway.mode == "bad-key":
                    self._send(200, b"this is not a key\n", "text/plain")
                else:
                    self._send(200, (gateway.log_key + "\n").encode(), "text/plain; charset=utf-8")

            def do_POST(self) -> None:
                gateway.requests.append(("POST", self.path, dict(self.headers)))
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.path != "/v1/devices":
                    self._error(404, "not_found", "no such route")
                    return
                gateway.bodies.append(raw)
                if gateway.mode == "slow":
                    time.sleep(1.5)
                auth = self.headers.get("Authorization", "")
                if auth == f"Bearer {VIEWER_TOKEN}":
                    self._error(403, "forbidden", "this token is not an installer token")
                    return
                if auth != f"Bearer {INSTALLER_TOKEN}":
                    self._error(401, "unauthorized", "missing or unknown token")
                    return
                if gateway.mode == "html-500":
                    self._send(500, b"<html><body>Internal Server Error</body></html>", "text/html")
                    return
                try:
                    body = json.loads(raw)
                    pop = base64.b64decode(body["proof_of_possession"], validate=True)
                    statement = verify_enrolment(base64.b64decode(body["statement"], validate=True), pop)
                except (ValueError, KeyError, TypeError) as exc:
                    self._error(400, "bad_request", f"malformed body: {exc}")
                    return
                except AttestError as exc:
                    self._error(422, exc.code, str(exc))
                    return
                if statement.log_origin != LOG_ORIGIN:  # as the gateway: bound to this log, v2 only
                    self._error(400, "wrong_log_origin", f"not this log: {statement.log_origin!r}")
                    return
                if statement.log_key_hash != hashlib.sha256(gateway.log_key.encode()).digest():
                    self._error(400, "wrong_log_key", "not this log's key")
                    return
                status = 201
                with gateway.lock:
                    known = gateway.devices.get(statement.device_id)
                    if known is not None and known.encode() != statement.encode():
                        self._error(409, "already_enrolled", f"device {statement.device_id} is enrolled")
                        return
                    if known is not None:  # exactly the same statement again: 200, the same answer
                        status, index = 200, gateway.indices[statement.device_id]
                    else:
                        gateway.devices[statement.device_id] = statement
                        gateway.pops[statement.device_id] = pop
                        index = gateway.indices[statement.device_id] = gateway.log_index
                        gateway.log_index += 1
                if gateway.mode == "lose-answer":  # enrolled, but the answer never reaches the device
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if gateway.mode == "garbage-201":
                    self._send(201, b"OK!", "text/plain")
                    return
                answer = {
                    "device_id": statement.device_id,
                    "asset_id": statement.asset_id,
                    "log_index": index,
                }
                self._send(status, json.dumps(answer).encode())

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                return  # a client that gave up (the timeout test) is not an error here

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeGateway:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class ReceiptIssuer:
    """Verifies published readings and answers with cumulative signed receipts."""

    def __init__(self, host: str, port: int, gateway: FakeGateway, *, every: float = 0.2) -> None:
        self.gateway = gateway
        self.every = every
        self.received: dict[str, dict[int, bytes]] = defaultdict(dict)  # payloads
        self.envelopes: dict[str, dict[int, bytes]] = defaultdict(dict)
        self.bad = 0
        self.contiguous: dict[str, int] = defaultdict(int)
        self.receipted: dict[str, int] = defaultdict(int)
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id="", clean_session=True
        )
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(READINGS_FILTER, qos=1)
        self.client.connect(host, port, 30)
        self.client.loop_start()
        self.thread = threading.Thread(target=self._issue, daemon=True)
        self.thread.start()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        device_id = device_of_readings_topic(message.topic)
        statement = self.gateway.devices.get(device_id or "")
        if statement is None:
            return  # another test's device on the shared broker: not ours to judge
        try:
            envelope = decode_envelope(message.payload)
            envelope.verify(statement.public_key)
            reading = envelope.reading()
            assert reading.device_id == device_id
        except (AssertionError, AttestError):
            self.bad += 1
            return
        with self.lock:
            seen = self.received[reading.device_id]
            seen.setdefault(reading.seq, envelope.payload)
            self.envelopes[reading.device_id].setdefault(reading.seq, bytes(message.payload))
            n = self.contiguous[reading.device_id]
            while n + 1 in seen:
                n += 1
            self.contiguous[reading.device_id] = n

    def _issue(self) -> None:
        while not self._stop.wait(self.every):
            with self.lock:
                todo = [(d, n) for d, n in self.contiguous.items() if n > self.receipted[d]]
            log = self.gateway.log
            for device_id, seq in todo:
                with self.lock:
                    envelopes = dict(self.envelopes[device_id])
                log.log_readings(device_id, envelopes, seq)
                self.client.publish(receipts_topic(device_id), log.signed(device_id, seq), qos=1)
                self.receipted[device_id] = seq

    def total(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.received.values())

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.client.loop_stop()
        self.client.disconnect()
