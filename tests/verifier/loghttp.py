"""A small real HTTP server that serves a :class:`~tests.support.MemoryLog` the way the gateway does.

It answers the contract's routes (``/v1/log/checkpoint``, ``/v1/log/key``,
``/v1/log/entries/{i}``, ``/v1/log/proof/inclusion``, ``/v1/log/proof/consistency``)
and records what is POSTed to ``/v1/log/cosignatures``.  Tests change what it
serves (another log, a smaller size, a hand-made note, an outage) to make a log
misbehave.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from attest_core.merkle import consistency_proof, inclusion_proof
from tests.support import MemoryLog


def _b64(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode("ascii") for h in hashes]


@dataclass
class LogServer:
    log: MemoryLog
    size: int | None = None
    """Serve the checkpoint of this size (default: the whole log)."""
    note: str | None = None
    """Serve this note as the checkpoint instead."""
    outage: int | None = None
    """Answer every request with this HTTP status."""
    cosignature_status: int = 201
    cosignatures: list[bytes] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> LogServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, doc: Any) -> None:
                self._send(status, json.dumps(doc).encode(), "application/json")

            def _error(self, status: int, code: str, message: str) -> None:
                self._json(status, {"error": {"code": code, "message": message}})

            def do_GET(self) -> None:
                owner.requests.append(f"GET {self.path}")
                if owner.outage is not None:
                    return self._error(owner.outage, "unavailable", "the log is down for maintenance")
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                log = owner.log
                try:
                    if url.path == "/v1/log/checkpoint":
                        note = owner.note if owner.note is not None else log.checkpoint(owner.size)
                        return self._send(200, note.encode(), "text/plain; charset=utf-8")
                    if url.path == "/v1/log/key":
                        return self._send(200, log.key.to_string().encode() + b"\n", "text/plain")
                    if url.path.startswith("/v1/log/entries/"):
                        index = int(url.path.rsplit("/", 1)[1])
                        return self._send(200, log.entries[index], "application/octet-stream")
                    if url.path == "/v1/log/proof/inclusion":
                        index, size = int(query["index"]), int(query["size"])
                        hashes = inclusion_proof(index, size, log.leaves)
                        return self._json(200, {"index": index, "size": size, "hashes": _b64(hashes)})
                    if url.path == "/v1/log/proof/consistency":
                        m, n = int(query["from"]), int(query["to"])
                        hashes = consistency_proof(m, n, log.leaves)
                        return self._json(200, {"from": m, "to": n, "hashes": _b64(hashes)})
                except (KeyError, ValueError, IndexError) as exc:
                    return self._error(400, "bad_request", str(exc))
                return self._error(404, "not_found", f"no route {url.path}")

            def do_POST(self) -> None:
                owner.requests.append(f"POST {self.path}")
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != "/v1/log/cosignatures":
                    return self._error(404, "not_found", "no such route")
                if owner.cosignature_status >= 400:
                    return self._error(
                        owner.cosignature_status, "unknown_checkpoint", "not a checkpoint of ours"
                    )
                owner.cosignatures.append(body)
                return self._json(owner.cosignature_status, {"accepted": True})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        assert self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
