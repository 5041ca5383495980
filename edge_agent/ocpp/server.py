# mypy: disable-error-code="import-untyped,untyped-decorator"
# (the ocpp package ships no type information)
"""The agent's OCPP-J websocket endpoint: chargers connect here, authenticated, one frame size bound.

A charger's backend URL is ``ws(s)://<this Pi>:<listen_port><path>/<charge point id>``: the
charge point id is the last path segment.  Before the websocket handshake completes the
endpoint checks, refusing with a log line that says what to fix:

* the id is on the allow list (``[meter.ocpp] chargers``), else HTTP 404;
* HTTP Basic auth with username = the charge point id and that charger's password (OCPP
  security profile 1; with ``cert_file``/``key_file`` the endpoint speaks TLS: profile 2),
  else HTTP 401;
* the charger offers ``ocpp1.6`` or ``ocpp2.0.1``, else HTTP 400.

So a host on the site network that is not an enrolled charger cannot feed the agent meter
values.  ``max_frame_bytes`` bounds every frame: a larger one closes that connection (1009),
never the agent.  An accepted connection is served by the local backend (local16 / local201)
or handed to the proxy's relay (mode ``proxy``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import http
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Protocol

from ocpp.exceptions import OCPPError, ValidationError
from ocpp.messages import Call, unpack, validate_payload
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHeader
from websockets.headers import build_www_authenticate_basic, parse_authorization_basic
from websockets.http11 import Request, Response

from edge_agent.config import OcppConfig

log = logging.getLogger("edge_agent.ocpp")

SUBPROTOCOLS = ("ocpp2.0.1", "ocpp1.6")
VERSIONS = {"ocpp1.6": "1.6", "ocpp2.0.1": "2.0.1"}
OnCall = Callable[[str, str, str, dict[str, Any]], Awaitable[None]]
"""(charge point id, subprotocol, action, payload as sent): awaited before the CALL is answered."""


class Hub(Protocol):
    """What the endpoint and the local backend need from the meter behind them."""

    settings: OcppConfig

    async def on_call(
        self, charge_point_id: str, subprotocol: str, action: str, payload: dict[str, Any]
    ) -> None:
        """Store what a charger→backend CALL says about the meter (raise to answer a CallError)."""
        ...

    def connected(self, charge_point_id: str, subprotocol: str, up: bool) -> None: ...

    def id_tag_allowed(self, id_tag: str) -> bool: ...

    def next_transaction_id(self) -> int: ...

    def config_answer(self, charge_point_id: str, name: str, value: str, answer: str) -> None:
        """A configuration request's answer (Accepted, RebootRequired, NotSupported, Rejected, ...)."""
        ...

    def reported_key(self, charge_point_id: str, key_text: str, source: str) -> None:
        """The charger said what its meter's public key is."""
        ...


ConnectionHandler = Callable[[ServerConnection, str, str], Awaitable[None]]


def charge_point_id_of(path: str, prefix: str) -> str | None:
    """The last path segment below ``prefix`` (``/ocpp/CP-1`` → ``CP-1``), or None."""
    path = path.split("?", 1)[0]
    prefix = prefix.rstrip("/")
    if not path.startswith(prefix + "/"):
        return None
    rest = path[len(prefix) + 1 :]
    if not rest or "/" in rest:
        return None
    return rest


def _offered(headers: Headers) -> list[str]:
    offered: list[str] = []
    for value in headers.get_all("Sec-WebSocket-Protocol"):
        offered.extend(p.strip() for p in value.split(",") if p.strip())
    return offered


class OcppEndpoint:
    """The websocket server: authenticates chargers, then ``handle(connection, id, subprotocol)``."""

    def __init__(self, settings: OcppConfig, handle: ConnectionHandler) -> None:
        self.settings = settings
        self.handle = handle
        self.server: Server | None = None
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.settings.cert_file:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.settings.cert_file, self.settings.key_file)
        return context

    async def start(self) -> None:
        s = self.settings
        self.server = await serve(
            self._serve,
            s.listen_host,
            s.listen_port,
            process_request=self._check,
            subprotocols=list(SUBPROTOCOLS),  # type: ignore[arg-type]
            max_size=s.max_frame_bytes,
            ssl=self._ssl(),
            ping_interval=60,
            ping_timeout=60,
            server_header=None,
        )
        sockets = list(self.server.sockets)
        self.port = sockets[0].getsockname()[1] if sockets else s.listen_port
        log.info(
            "OCPP endpoint listening on %s://%s:%d%s/<charge point id> for %s (%s mode)",
            "wss" if s.cert_file else "ws",
            s.listen_host,
            self.port,
            s.path.rstrip("/"),
            ", ".join(sorted(s.chargers)) or "no charger",
            s.mode,
        )

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.server.wait_closed(), 10)
            self.server = None

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse, before the handshake, what is not an allowed, authenticated OCPP charger."""
        peer = _peer(connection)
        cp_id = charge_point_id_of(request.path, self.settings.path)
        if cp_id is None or cp_id not in self.settings.chargers:
            log.warning(
                "OCPP: refused a connection from %s to %s: %s",
                peer,
                request.path,
                f"not a charger URL (expected {self.settings.path.rstrip('/')}/<charge point id>)"
                if cp_id is None
                else f"charge point id {cp_id!r} is not in [meter.ocpp] chargers",
            )
            return connection.respond(http.HTTPStatus.NOT_FOUND, "unknown charge point\n")
        header = request.headers.get("Authorization")
        user = password = None
        if header is not None:
            with contextlib.suppress(InvalidHeader):
                user, password = parse_authorization_basic(header)
        expected = self.settings.chargers[cp_id]
        if (
            user is None
            or password is None
            or not hmac.compare_digest(user.encode("utf-8"), cp_id.encode("utf-8"))
            or not hmac.compare_digest(password.encode("utf-8"), expected.encode("utf-8"))
        ):
            log.warning(
                "OCPP: refused charger %r from %s: %s (set the charger's security profile 1 or 2 with "
                "user name = its charge point id and the password in [meter.ocpp] chargers)",
                cp_id,
                peer,
                "no Basic-auth credentials"
                if header is None
                else "wrong user name or password"
                if user is not None
                else "malformed Authorization header",
            )
            response = connection.respond(http.HTTPStatus.UNAUTHORIZED, "authentication required\n")
            response.headers["WWW-Authenticate"] = build_www_authenticate_basic(f"OCPP {cp_id}")
            return response
        offered = _offered(request.headers)
        if not any(p in SUBPROTOCOLS for p in offered):
            log.warning(
                "OCPP: refused charger %r from %s: it offers the subprotocol(s) %s, not ocpp1.6 or ocpp2.0.1",
                cp_id,
                peer,
                ", ".join(offered) or "(none)",
            )
            return connection.respond(
                http.HTTPStatus.BAD_REQUEST, "subprotocol ocpp1.6 or ocpp2.0.1 required\n"
            )
        return None

    async def _serve(self, connection: ServerConnection) -> None:
        cp_id = charge_point_id_of(connection.request.path if connection.request else "", self.settings.path)
        subprotocol = connection.subprotocol
        if cp_id is None or subprotocol not in VERSIONS:  # _check let nothing else through
            await connection.close(1008, "refused")
            return
        log.info("OCPP: charger %s connected from %s (%s)", cp_id, _peer(connection), subprotocol)
        try:
            await self.handle(connection, cp_id, str(subprotocol))
        except ConnectionClosed as exc:
            _log_closed(cp_id, exc)
        except Exception:  # one charger's failure never stops the agent
            log.exception("OCPP: charger %s: the connection failed", cp_id)
        finally:
            log.info("OCPP: charger %s disconnected", cp_id)


def _log_closed(cp_id: str, exc: ConnectionClosed) -> None:
    rcvd = exc.rcvd
    sent = exc.sent
    if sent is not None and sent.code == 1009:
        log.error(
            "OCPP: charger %s sent a frame over [meter.ocpp] max_frame_bytes: its connection was closed",
            cp_id,
        )
    elif rcvd is None and sent is None:
        log.warning("OCPP: charger %s: the connection dropped", cp_id)


def _peer(connection: ServerConnection) -> str:
    address: Any = connection.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


# --------------------------------------------------------------------------- frames, before the ocpp package


_V16_CODES = {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
}


def call_error_frame(version: str, unique_id: str, code: str, description: str) -> str:
    """A CALLERROR frame, with the error code as this OCPP version spells it."""
    if version == "1.6":
        code = _V16_CODES.get(code, code)
    else:
        code = {v: k for k, v in _V16_CODES.items()}.get(code, code)
    return json.dumps([4, unique_id, code, description[:255], {}])


async def screen_frame(
    raw: str | bytes, *, version: str, charge_point_id: str, subprotocol: str, on_call: OnCall
) -> str | None:
    """What the backend must do before the ocpp package routes ``raw``.

    Returns a CALLERROR frame to send instead (malformed frame, invalid payload, meter data that
    could not be stored), or None: route it.  For a valid CALL, ``on_call`` stores its meter data
    *before* the package answers it, with the payload exactly as sent (numbers as Decimal).
    """
    try:
        doc = json.loads(raw, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        log.warning(
            "OCPP: charger %s sent a frame that is not JSON: answered with a CallError", charge_point_id
        )
        return call_error_frame(version, "-1", "FormatViolation" if version != "1.6" else "FormationViolation",
                                "the frame is not JSON")  # fmt: skip
    unique_id = doc[1] if isinstance(doc, list) and len(doc) > 1 and isinstance(doc[1], str) else "-1"
    try:
        message = unpack(raw)
    except OCPPError as exc:
        log.warning(
            "OCPP: charger %s sent a malformed frame (%s): answered with a CallError", charge_point_id, exc
        )
        return call_error_frame(version, unique_id, exc.code, exc.description or "malformed OCPP frame")
    if not isinstance(message, Call):
        return None
    if not isinstance(message.payload, dict):
        return call_error_frame(version, unique_id, "FormatViolation", "the payload is not a JSON object")
    try:
        await validate_payload(message, version)
    except OCPPError as exc:
        log.warning(
            "OCPP: charger %s sent an invalid %s (%s): answered with a CallError",
            charge_point_id,
            message.action,
            exc.description,
        )
        return call_error_frame(version, unique_id, exc.code, exc.description or "invalid payload")
    except ValidationError as exc:
        return call_error_frame(version, unique_id, "FormatViolation", str(exc))
    try:
        await on_call(charge_point_id, subprotocol, message.action, doc[3])
    except OCPPError as exc:
        return call_error_frame(version, unique_id, exc.code, exc.description or "not stored")
    except Exception:  # a storage failure: the charger is told to send it again
        log.exception(
            "OCPP: charger %s: the meter data of %s could not be stored", charge_point_id, message.action
        )
        return call_error_frame(version, unique_id, "InternalError", "the meter values could not be stored")
    return None
