"""A TCP relay that can black-hole its connections: a network partition the endpoints cannot see.

``Relay(host, port).start()`` listens on 127.0.0.1:``relay.port`` and forwards every
connection to host:port.  ``blackhole()`` stops forwarding in both directions while
keeping every socket open: no FIN, no RST, and each side's kernel keeps acknowledging
what is sent to it, so neither end learns anything from TCP.  Bytes already read are
held, not dropped; ``heal()`` delivers them and forwards again, as TCP does when a
partition ends.  New connections made during the black hole are accepted by the kernel
and then left hanging until it heals.  ``switch(port)`` makes it a load balancer that moves
to another node: new connections go to ``port``, the open ones are cut.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class Relay:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.flowing = threading.Event()
        self.flowing.set()
        self.closed = threading.Event()
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []

    def start(self) -> Relay:
        threading.Thread(target=self._accept, daemon=True, name="relay-accept").start()
        return self

    def blackhole(self) -> None:
        self.flowing.clear()

    def heal(self) -> None:
        self.flowing.set()

    def switch(self, port: int) -> None:
        """Forward new connections to ``port`` (same host); cut the open ones, as a dead node's are."""
        self.target = (self.target[0], port)
        with self.lock:
            sockets, self.sockets = self.sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.closed.set()
        self.flowing.set()  # wakes every waiting pump, which then sees closed
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                sock.close()
            self.sockets.clear()

    def _wait_flowing(self) -> bool:
        self.flowing.wait()
        return not self.closed.is_set()

    def _accept(self) -> None:
        while self._wait_flowing():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self._wait_flowing():
                client.close()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True, name="relay-pump").start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while self._wait_flowing():
                data = src.recv(65536)
                if not data:
                    break
                # read during the switch to black hole: held until it heals, never lost
                if not self._wait_flowing():
                    break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
