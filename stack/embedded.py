"""Embedded defaults for a machine with nothing installed: PostgreSQL (pgserver) and MQTT (amqtt)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL 16 server from the pgserver wheel, on a Unix socket in its data directory.

    The data directory lives directly under the system's temporary directory:
    run as root, pgserver starts the server as its own user, which must reach it.
    """

    datadir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="iot-attest-pg-")))
    server: Any = None
    url: str = ""

    def start(self) -> EmbeddedPostgres:
        with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set" outside a login session
            warnings.simplefilter("ignore")
            import pgserver

        # pgserver logs from an exit handler, after test runners have closed their streams
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.server = pgserver.get_server(self.datadir, cleanup_mode="stop")  # type: ignore[attr-defined]
        self.url = self.server.get_uri()
        return self

    def stop(self) -> None:
        """Stop the server; its data stays, and start() brings it back."""
        if self.server is not None:
            self.server.cleanup()
            self.server = None

    def remove(self) -> None:
        """Stop the server and delete its data."""
        self.stop()
        shutil.rmtree(self.datadir, ignore_errors=True)


@dataclass
class EmbeddedBroker:
    """An amqtt broker (MQTT 3.1.1) running in this process, in a thread of its own."""

    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _stop: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        ready = threading.Event()
        errors: list[BaseException] = []

        async def serve() -> None:
            from amqtt.broker import Broker

            config = {
                "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                # only anonymous access: no packet logging, no $SYS topics
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
            }
            broker = Broker(config)
            await broker.start()
            self._stop = asyncio.Event()
            ready.set()
            await self._stop.wait()
            await broker.shutdown()

        def run() -> None:
            for name in ("amqtt", "transitions"):
                logging.getLogger(name).setLevel(logging.ERROR)
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(serve())
            except BaseException as exc:
                errors.append(exc)
                ready.set()
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name="amqtt", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or errors:
            raise RuntimeError(
                f"the embedded MQTT broker did not start: {errors[0] if errors else 'timeout'}"
            )
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(15)
