"""A cap on HTTP request bodies, counted as they are read, before authentication or parsing.

A pure ASGI middleware: it wraps ``receive`` and counts the bytes of every
``http.request`` message, whatever the framing (Content-Length or chunked), so no
layer behind it ever holds more than ``max_bytes`` of one body.  A declared
Content-Length above the cap is refused before a byte of the body is read.

The answer is 413 with the API's usual error body, code ``request_too_large``.
When the cap trips while the application is reading, the middleware sends the
413 itself at once and then raises :class:`BodyTooLarge` into the application,
so the handler never sees a truncated body as if it were whole; whatever the
application tries to send after that is dropped, and the exception is absorbed
here.  The server (uvicorn) discards the rest of the body as it arrives.
"""

from __future__ import annotations

import contextlib
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import BodyTooLarge
from gateway.routes.common import error

DEFAULT_MAX_REQUEST_BYTES: Final = 8 * 1024 * 1024
"""8 MiB.  The largest request the API admits is ``POST /v1/claims`` naming the most
assets a claim may hold (65,535, attest_core.claim.MAX_ASSETS), each an identifier of
up to 64 characters: 65,535 x (64 + 3 bytes of quotes and comma) is 4.39 MB of JSON,
plus under 2 KB for the other fields.  8 MiB leaves that request room for generous
white space (indentation adds about 5 bytes per asset) and nothing else comes near."""


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must not be negative, got {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _refuse(
                scope,
                receive,
                send,
                f"the request body of {declared} bytes exceeds the limit of {self.max_bytes} bytes",
            )
            return

        received = 0
        started = False
        tripped = False

        async def limited_receive() -> Message:
            nonlocal received, tripped
            if tripped:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    tripped = True
                    if not started:
                        await _refuse(
                            scope,
                            receive,
                            send,
                            f"the request body exceeds the limit of {self.max_bytes} bytes",
                        )
                    raise BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if tripped:
                return  # the answer was the 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with contextlib.suppress(BodyTooLarge):
            await self.app(scope, limited_receive, tracked_send)


def _content_length(scope: Scope) -> int | None:
    """The declared body size, if there is exactly one well-formed Content-Length (the server checks it too)."""
    values = [v for k, v in scope.get("headers", []) if k.lower() == b"content-length"]
    if len(values) != 1 or not values[0].strip().isdigit():
        return None
    return int(values[0])


async def _refuse(scope: Scope, receive: Receive, send: Send, message: str) -> None:
    refusal = BodyTooLarge(message)
    await error(refusal.status, refusal.code, message)(scope, receive, send)
