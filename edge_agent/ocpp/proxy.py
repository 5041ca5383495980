"""Proxy mode: relay one charger's OCPP-J frames to the operator's backend, unchanged.

The Pi sits between a charger and the operator's existing backend (issue 15). The agent's
websocket endpoint accepts and authenticates the charger and hands the connection to
:func:`relay`, which opens a connection of its own to the backend (same subprotocol, the
backend's credentials) and copies frames both ways. docs/ocpp-proxy.md is the operator's and
installer's account of what follows; in short:

* Frames are forwarded byte for byte, never re-serialized, in order per direction. (Text
  frames are UTF-8 decoded strictly by websockets and encoded again on send: UTF-8 has one
  encoding per string, so the bytes on the wire are the charger's.)
* Every charger CALL goes through ``on_call`` (where the agent stores meter data) *before* it
  is forwarded. If ``on_call`` fails, the failure is logged and the frame forwarded anyway:
  the operator's billing and control must not break because of the agent.
* Malformed frames are logged and forwarded unchanged; policing the operator's protocol is
  not the proxy's job. A frame over ``max_frame_bytes`` closes the side that sent it (1009).
* The backend going away does not disconnect the charger: frames from the charger are held
  in order (bounded) and forwarded when the backend is back, the connection being retried
  with bounded, jittered backoff. If the backend stays away longer than
  ``RelayPolicy.hold_seconds``, the charger is closed (1013, try again later) so that it
  goes offline and queues its own transaction messages, as OCPP chargers do.
* The charger going away ends the relay: frames already received are flushed to the backend
  (when it is connected), then the backend connection is closed cleanly.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import logging
import random
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import websockets.asyncio.client
import websockets.asyncio.server
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.frames import CloseCode
from websockets.typing import Data, Subprotocol

from edge_agent.errors import AgentError, Exit

log = logging.getLogger(__name__)

OnCall = Callable[[str, str, str, dict[str, Any]], Awaitable[None]]
"""``(charge_point_id, subprotocol, action, payload)`` of a charger CALL, awaited before forwarding.

``subprotocol`` is ``"ocpp1.6"`` or ``"ocpp2.0.1"``; ``payload`` is the JSON object exactly as
sent: camelCase keys, strings untouched, integers as ``int`` and numbers with a fraction or
exponent as ``Decimal`` (exactly the digits sent: OCPP 2.0.1 sends meter values as JSON
numbers, and energy is converted to mWh exactly, never through a float)."""

SUBPROTOCOLS = ("ocpp1.6", "ocpp2.0.1")

# OCPP-J message type ids (the first element of every frame).
CALL, CALLRESULT, CALLERROR = 2, 3, 4

# How much of a malformed frame a log line shows: enough to recognise it, not a flood.
LOG_EXCERPT = 120


class ProxyError(AgentError):
    """A proxy configuration the relay cannot use (bad backend URL, credentials or TLS files)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, Exit.USAGE)


@dataclass(frozen=True)
class Upstream:
    """The operator's backend, as the charger itself would have been configured to reach it."""

    url: str
    """ws:// or wss:// URL *without* the charge point id; the relay appends ``/<charge_point_id>``."""
    username: str | None = None
    """Basic auth toward the backend (OCPP security profiles 1-2); None sends no auth header."""
    password: str | None = None
    ssl: ssl.SSLContext | None = None
    """For wss: the CA to trust and, for security profile 3, the charger's client certificate/key."""

    def __post_init__(self) -> None:
        scheme = urllib.parse.urlsplit(self.url).scheme
        if scheme not in ("ws", "wss"):
            raise ProxyError(f"OCPP backend URL {self.url!r}: must start with ws:// or wss://")
        if self.ssl is not None and scheme != "wss":
            raise ProxyError(f"OCPP backend URL {self.url!r}: TLS settings need a wss:// URL")
        if (self.username is None) != (self.password is None):
            raise ProxyError("OCPP backend credentials: give both a username and a password, or neither")
        if self.username is not None and ":" in self.username:
            raise ProxyError("OCPP backend username: Basic auth cannot carry a ':' in the username")

    def url_for(self, charge_point_id: str) -> str:
        """The backend URL for one charger: the base URL plus ``/<charge_point_id>`` (percent-encoded)."""
        return self.url.rstrip("/") + "/" + urllib.parse.quote(charge_point_id, safe="")

    def headers(self) -> dict[str, str]:
        if self.username is None or self.password is None:
            return {}
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}


def upstream_ssl_context(
    ca_file: str | Path | None = None, cert_file: str | Path | None = None, key_file: str | Path | None = None
) -> ssl.SSLContext:
    """A client TLS context toward the backend.

    ``ca_file``: the CA(s) that signed the backend's certificate (None: the system's CAs).
    ``cert_file``/``key_file``: the charger's client certificate and key (security profile 3;
    the key may be in ``cert_file`` too). Hostnames are checked as usual.
    """
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
        if cert_file is not None:
            context.load_cert_chain(cert_file, key_file)
        elif key_file is not None:
            raise ProxyError("OCPP backend TLS: a client key needs its client certificate (cert_file)")
    except (OSError, ssl.SSLError) as exc:
        raise ProxyError(f"OCPP backend TLS files unusable: {exc}") from exc
    return context


@dataclass(frozen=True)
class RelayPolicy:
    """The relay's timings and bounds; the defaults suit a charger on a site network."""

    reconnect_first_s: float = 1.0
    """First wait before reconnecting to the backend; doubles per failure up to reconnect_max_s."""
    reconnect_max_s: float = 60.0
    hold_seconds: float = 300.0
    """How long the charger stays connected while the backend is away (then it is closed, 1013)."""
    hold_frames: int = 256
    """Charger frames held while the backend is away; when full the charger is not read (backpressure)."""
    open_timeout_s: float = 20.0
    flush_s: float = 10.0
    """How long a leaving charger's last frames may take to reach a connected backend."""


DEFAULT_POLICY = RelayPolicy()


async def relay(
    charger: websockets.asyncio.server.ServerConnection,
    *,
    charge_point_id: str,
    subprotocol: str,
    upstream: Upstream,
    on_call: OnCall,
    max_frame_bytes: int,
    policy: RelayPolicy = DEFAULT_POLICY,
) -> None:
    """Relay until the charger disconnects (or the task is cancelled)."""
    if subprotocol not in SUBPROTOCOLS:
        raise ProxyError(f"OCPP proxy: unknown subprotocol {subprotocol!r} (expected one of {SUBPROTOCOLS})")
    # The endpoint normally bounds frames already; tighten the charger side here in any case
    # (websockets reads max_size per frame, so this applies from the next frame on).
    limit = charger.protocol.max_size
    if limit is None or limit > max_frame_bytes:
        charger.protocol.max_size = max_frame_bytes
    session = _Session(charger, charge_point_id, subprotocol, upstream, on_call, max_frame_bytes, policy)
    await session.run()


@dataclass
class _Outbound:
    frame: Data
    answers_generation: int | None
    """For a result answering a backend CALL: the backend connection the CALL came on."""


@dataclass(frozen=True)
class _Parsed:
    kind: int | None  # CALL / CALLRESULT / CALLERROR, None when malformed
    message_id: str = ""
    action: str = ""
    payload: dict[str, Any] | None = None
    problem: str = ""


def _parse(frame: Data) -> _Parsed:
    """Classify an OCPP-J frame without judging more than the relay needs."""
    if isinstance(frame, bytes):
        return _Parsed(None, problem="binary frame (OCPP-J frames are text)")
    try:
        message = json.loads(frame, parse_float=Decimal, parse_constant=_not_json)
    except ValueError as exc:
        return _Parsed(None, problem=f"not JSON ({exc})")
    if not isinstance(message, list) or len(message) < 3 or not isinstance(message[1], str):
        return _Parsed(None, problem="not an OCPP-J array [type, id, ...]")
    kind, message_id = message[0], message[1]
    if kind == CALL:
        if len(message) != 4 or not isinstance(message[2], str) or not isinstance(message[3], dict):
            return _Parsed(None, problem="CALL is not [2, id, action, {payload}]")
        return _Parsed(CALL, message_id, message[2], message[3])
    if kind in (CALLRESULT, CALLERROR) and not isinstance(kind, bool):
        return _Parsed(kind, message_id)
    return _Parsed(None, problem=f"unknown message type {kind!r}")


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _excerpt(frame: Data) -> str:
    text = repr(frame)
    return text if len(text) <= LOG_EXCERPT else text[:LOG_EXCERPT] + "..."


class _Session:
    """One charger connection and the succession of backend connections serving it."""

    def __init__(
        self,
        charger: websockets.asyncio.server.ServerConnection,
        charge_point_id: str,
        subprotocol: str,
        upstream: Upstream,
        on_call: OnCall,
        max_frame_bytes: int,
        policy: RelayPolicy,
    ) -> None:
        self.charger = charger
        self.cp = charge_point_id
        self.subprotocol = subprotocol
        self.upstream = upstream
        self.on_call = on_call
        self.max_frame_bytes = max_frame_bytes
        self.policy = policy
        self.outbound: collections.deque[_Outbound] = collections.deque()
        self.changed = asyncio.Condition()  # outbound or backend state changed
        self.backend: websockets.asyncio.client.ClientConnection | None = None
        # Counts backend connections; a result answering a CALL of an earlier connection has
        # nobody left to receive it (the backend's caller failed with that connection).
        self.generation = 0
        self.backend_calls: collections.OrderedDict[str, int] = collections.OrderedDict()
        self.leaving = False
        self.ended = asyncio.Event()  # set when the relay is over
        self.delay = policy.reconnect_first_s  # the backoff's current delay
        self.giving_up = False  # the backend stayed away too long: the charger is being closed

    async def run(self) -> None:
        backend_task = asyncio.create_task(self._backend_loop(), name=f"ocpp-proxy backend {self.cp}")
        try:
            code, reason = await self._read_charger()
            self.leaving = True
            await self._flush()
            if self.backend is not None:
                await self.backend.close(code, reason)
        finally:
            self.leaving = True
            self.ended.set()
            backend_task.cancel()
            await asyncio.wait([backend_task])
            if not backend_task.cancelled() and backend_task.exception() is not None:
                log.error("ocpp proxy %s: backend side failed", self.cp, exc_info=backend_task.exception())
            if self.outbound:
                log.warning(
                    "ocpp proxy %s: charger->backend: %d frame(s) not forwarded, the backend being away "
                    "when the charger left (CALLs among them were passed to the agent; the charger had "
                    "no answer, so it sends its transaction messages again)",
                    self.cp,
                    len(self.outbound),
                )

    # charger -> backend

    async def _read_charger(self) -> tuple[int, str]:
        """Read the charger until it leaves; return the close code and reason for the backend."""
        while True:
            try:
                frame = await self.charger.recv()
            except ConnectionClosed as exc:
                return self._charger_gone(exc)
            parsed = _parse(frame)
            answers: int | None = None
            if parsed.kind is None:
                log.warning(
                    "ocpp proxy %s: charger->backend: malformed frame forwarded unchanged: %s: %s",
                    self.cp,
                    parsed.problem,
                    _excerpt(frame),
                )
            elif parsed.kind == CALL:
                assert parsed.payload is not None
                try:
                    await self.on_call(self.cp, self.subprotocol, parsed.action, parsed.payload)
                except Exception:
                    # Forward anyway: the operator's billing must not break because of the agent.
                    log.exception(
                        "ocpp proxy %s: charger->backend: the agent failed to take %s %s; forwarded anyway",
                        self.cp,
                        parsed.action,
                        parsed.message_id,
                    )
            else:
                answers = self.backend_calls.pop(parsed.message_id, None)
            async with self.changed:
                await self.changed.wait_for(
                    lambda: len(self.outbound) < self.policy.hold_frames or self.giving_up
                )
                self.outbound.append(_Outbound(frame, answers))
                self.changed.notify_all()

    def _charger_gone(self, exc: ConnectionClosed) -> tuple[int, str]:
        if exc.sent is not None and exc.sent.code == CloseCode.MESSAGE_TOO_BIG:
            log.error(
                "ocpp proxy %s: charger->backend: frame over %d bytes; closed the charger's connection",
                self.cp,
                self.max_frame_bytes,
            )
        else:
            log.info("ocpp proxy %s: charger disconnected (%s)", self.cp, exc)
        # Pass on a charger's own ordinary close; anything else is the charger going away.
        rcvd = exc.rcvd
        if rcvd is not None and (
            rcvd.code in (CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY) or rcvd.code >= 3000
        ):
            return rcvd.code, rcvd.reason
        return CloseCode.GOING_AWAY, "charger disconnected"

    async def _flush(self) -> None:
        """Let frames already received reach a connected backend before closing it."""
        try:
            async with asyncio.timeout(self.policy.flush_s), self.changed:
                await self.changed.wait_for(lambda: not self.outbound or self.backend is None)
        except TimeoutError:
            log.warning("ocpp proxy %s: charger->backend: backend slow to take the last frames", self.cp)

    # the backend connection

    async def _backend_loop(self) -> None:
        loop = asyncio.get_running_loop()
        brief = False
        while not self.leaving:
            backend = await self._connect(wait_first=brief)
            if backend is None:
                return
            connected_at = loop.time()
            async with self.changed:
                self.backend = backend
                self.changed.notify_all()
            try:
                await self._serve(backend)
            finally:
                async with self.changed:
                    self.backend = None
                    self.generation += 1
                    self.changed.notify_all()
                await backend.close()
            # A backend that accepts and drops at once is retried with backoff, not in a tight
            # loop; after a connection that lived a while the backoff starts afresh.
            brief = loop.time() - connected_at < self.policy.reconnect_max_s
            if not brief:
                self.delay = self.policy.reconnect_first_s

    def _backoff(self) -> float:
        """The next wait before reconnecting: the current delay, jittered; doubles the delay."""
        wait = random.uniform(self.delay / 2, self.delay)  # noqa: S311 - jitter, not a secret
        self.delay = min(self.delay * 2, self.policy.reconnect_max_s)
        return wait

    async def _connect(self, *, wait_first: bool) -> websockets.asyncio.client.ClientConnection | None:
        """Connect to the backend, retrying with backoff; None when the charger is closed instead."""
        loop = asyncio.get_running_loop()
        away_since = loop.time()
        if wait_first:
            wait = self._backoff()
            log.info("ocpp proxy %s: the backend connection was brief; reconnecting in %.1f s", self.cp, wait)
            await asyncio.sleep(wait)
        url = self.upstream.url_for(self.cp)
        attempt = 0
        while not self.leaving:
            attempt += 1
            try:
                backend = await websockets.asyncio.client.connect(
                    url,
                    subprotocols=[Subprotocol(self.subprotocol)],
                    additional_headers=self.upstream.headers(),
                    ssl=self.upstream.ssl,
                    max_size=self.max_frame_bytes,
                    open_timeout=self.policy.open_timeout_s,
                    proxy=None,  # the backend is reached directly, never through an environment proxy
                )
            except InvalidStatus as exc:
                problem = f"refused with HTTP {exc.response.status_code}"
                if exc.response.status_code in (401, 403):
                    problem += " (check the backend username/password or client certificate)"
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                if exc.__cause__ is not None:  # e.g. the TLS alert behind "no valid HTTP response"
                    problem += f" ({type(exc.__cause__).__name__}: {exc.__cause__})"
            else:
                if backend.subprotocol == self.subprotocol:
                    log.info(
                        "ocpp proxy %s: connected to the backend %s (%s)%s",
                        self.cp,
                        url,
                        self.subprotocol,
                        f" after {attempt} attempts" if attempt > 1 else "",
                    )
                    return backend
                problem = (
                    f"backend chose subprotocol {backend.subprotocol!r}, charger speaks {self.subprotocol}"
                )
                await backend.close()
            if loop.time() - away_since >= self.policy.hold_seconds:
                log.error(
                    "ocpp proxy %s: backend %s away for %.0f s (%s); closing the charger so it goes "
                    "offline and queues its own transaction messages",
                    self.cp,
                    url,
                    loop.time() - away_since,
                    problem,
                )
                async with self.changed:
                    self.giving_up = True
                    self.changed.notify_all()
                await self.charger.close(CloseCode.TRY_AGAIN_LATER, "OCPP backend unavailable")
                return None
            wait = self._backoff()
            log.warning(
                "ocpp proxy %s: backend %s unreachable (%s); charger kept connected, %d frame(s) held; "
                "retrying in %.1f s",
                self.cp,
                url,
                problem,
                len(self.outbound),
                wait,
            )
            await asyncio.sleep(wait)
        return None

    async def _serve(self, backend: websockets.asyncio.client.ClientConnection) -> None:
        """Copy frames both ways over one backend connection until it or the charger closes."""
        tasks = [
            asyncio.create_task(self._write_backend(backend), name=f"ocpp-proxy to backend {self.cp}"),
            asyncio.create_task(self._read_backend(backend), name=f"ocpp-proxy from backend {self.cp}"),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
        for task in tasks:
            failure = None if task.cancelled() else task.exception()
            if failure is not None:
                raise failure

    async def _write_backend(self, backend: websockets.asyncio.client.ClientConnection) -> None:
        generation = self.generation
        while True:
            async with self.changed:
                await self.changed.wait_for(lambda: bool(self.outbound))
                item = self.outbound[0]
            stale = item.answers_generation is not None and item.answers_generation != generation
            if stale:
                log.warning(
                    "ocpp proxy %s: charger->backend: dropped an answer to a CALL of an earlier backend "
                    "connection (its caller is gone): %s",
                    self.cp,
                    _excerpt(item.frame),
                )
            else:
                try:
                    await backend.send(item.frame)
                except ConnectionClosed:
                    return  # the frame stays first in line for the next connection
            async with self.changed:
                self.outbound.popleft()
                self.changed.notify_all()

    async def _read_backend(self, backend: websockets.asyncio.client.ClientConnection) -> None:
        generation = self.generation
        while True:
            try:
                frame = await backend.recv()
            except ConnectionClosed as exc:
                if exc.sent is not None and exc.sent.code == CloseCode.MESSAGE_TOO_BIG:
                    log.error(
                        "ocpp proxy %s: backend->charger: frame over %d bytes; closed the backend "
                        "connection (the charger stays connected)",
                        self.cp,
                        self.max_frame_bytes,
                    )
                elif not self.leaving:
                    log.warning("ocpp proxy %s: backend connection lost (%s); reconnecting", self.cp, exc)
                return
            parsed = _parse(frame)
            if parsed.kind is None:
                log.warning(
                    "ocpp proxy %s: backend->charger: malformed frame forwarded unchanged: %s: %s",
                    self.cp,
                    parsed.problem,
                    _excerpt(frame),
                )
            elif parsed.kind == CALL:
                self.backend_calls[parsed.message_id] = generation
                if len(self.backend_calls) > 1024:  # the charger never answered the oldest: forget it
                    self.backend_calls.popitem(last=False)
            try:
                await self.charger.send(frame)
            except ConnectionClosed:
                # The charger is leaving: keep this backend connection for the frames the charger
                # sent last (run() flushes them, then closes it).
                await self.ended.wait()
                return
