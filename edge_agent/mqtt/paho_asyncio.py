"""paho-mqtt driven by the asyncio loop through paho's external-loop hooks.

As in paho's ``loop_asyncio`` example: the socket's reader and writer are the
loop's, not a thread per client, so the fleet simulator can run hundreds of
links in one process.  A hook may fire outside the loop's thread (the connect
runs in an executor); :meth:`PahoOnAsyncio._in_loop` brings it back.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode


class PahoOnAsyncio:
    """The socket hooks of one link's current paho client (the client is replaced at each connect)."""

    _client: paho.Client | None
    _loop: asyncio.AbstractEventLoop | None
    _loop_thread: int | None
    _fds: set[int]
    _misc: asyncio.Task[None] | None

    def _install_socket_hooks(self, client: paho.Client) -> None:
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write

    def _in_loop(self, fn: Callable[[], None]) -> None:
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            fn()
        else:
            self._loop.call_soon_threadsafe(fn)

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        fd = sock.fileno()

        def register() -> None:
            assert self._loop is not None
            if client is not self._client:
                return
            self._fds.add(fd)
            self._loop.add_reader(fd, self._readable, client, sock)
            self._misc = self._loop.create_task(self._misc_loop(client))

        self._in_loop(register)

    def _readable(self, client: paho.Client, sock: Any) -> None:
        client.loop_read()
        # TLS can hold decrypted bytes the selector cannot see.
        while (
            isinstance(sock, ssl.SSLSocket)
            and client is self._client
            and sock.fileno() >= 0
            and sock.pending()
        ):
            if client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        fd = sock.fileno()

        def unregister() -> None:
            assert self._loop is not None
            if fd in self._fds:
                self._fds.discard(fd)
                self._loop.remove_reader(fd)
                self._loop.remove_writer(fd)

        self._in_loop(unregister)

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        fd = sock.fileno()

        def register() -> None:
            assert self._loop is not None
            if client is self._client and fd in self._fds:
                self._loop.add_writer(fd, client.loop_write)

        self._in_loop(register)

    def _on_socket_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        fd = sock.fileno()

        def unregister() -> None:
            assert self._loop is not None
            if fd in self._fds:
                self._loop.remove_writer(fd)

        self._in_loop(unregister)

    async def _misc_loop(self, client: paho.Client) -> None:
        while client is self._client and client.loop_misc() == MQTTErrorCode.MQTT_ERR_SUCCESS:
            await asyncio.sleep(1.0)
