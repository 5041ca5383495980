"""A gateway running in a background thread, for tests that drive it over MQTT and HTTP."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from gateway.config import Settings
from gateway.service import Gateway


class GatewayThread:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.gateway = Gateway(settings)
        self.started = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="gateway", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.gateway.start())
        except BaseException as exc:
            self.error = exc
            self.started.set()
            return
        self.started.set()
        self.loop.run_until_complete(self.gateway.wait())
        self.loop.run_until_complete(self.gateway.stop())
        self.loop.close()

    def __enter__(self) -> GatewayThread:
        self.thread.start()
        if not self.started.wait(60):
            raise TimeoutError("the gateway did not start within 60 s")
        if self.error is not None:
            raise self.error
        assert self.gateway.link is not None
        connected = asyncio.run_coroutine_threadsafe(self.gateway.link.wait_connected(30), self.loop)
        if not connected.result(35):
            raise TimeoutError("the gateway did not connect to MQTT")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.loop.call_soon_threadsafe(self.gateway.stopping.set)
        self.thread.join(30)

    @property
    def url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"
