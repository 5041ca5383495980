"""The gateway's HTTP face (FastAPI): the public log routes, witness cosignatures, health and metrics,
and the token-protected routes of :mod:`gateway.routes` for installers, issuers and auditors.

Every error is JSON ``{"error": {"code": ..., "message": ...}}`` with a 4xx
status; bad input never yields a 5xx (a 503 says the database is down).  A body
above ``max_request_bytes`` is refused with 413 ``request_too_large`` before
anything else looks at the request (:mod:`gateway.bodylimit`).  Who
may call what (``Authorization: Bearer <token>``, :mod:`gateway.auth`):

* no token: ``/v1/log/*`` (including ``POST /v1/log/cosignatures``, where the
  witness's signature is the authentication), ``/healthz``, ``/readyz``,
  ``/metrics``, ``/openapi.json``, ``/docs``;
* installer: ``POST /v1/devices``, ``POST /v1/devices/{id}/revoke``,
  ``POST /v1/devices/{id}/rotate``;
* installer, issuer, auditor: ``GET /v1/devices``, ``GET /v1/devices/{id}``;
* issuer, auditor: ``GET /v1/assets[/{id}]``, ``GET .../readings``,
  ``GET /v1/claims[/{id}[/bundle]]``, ``GET /v1/quarantine``;
* issuer: ``POST /v1/claims``.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Annotated, Any

import asyncpg
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from attest_core.errors import ProofError
from gateway import logstore, witnesses
from gateway.bodylimit import BodyLimit
from gateway.errors import Refused
from gateway.routes import assets, claims, devices, quarantine
from gateway.routes.common import ApiError, ErrorBody, ErrorDetail, error, responses
from gateway.routes.state import ApiState

__all__ = ["ApiError", "ApiState", "ErrorBody", "ErrorDetail", "create_app", "error"]

log = logging.getLogger("gateway.api")


class InclusionProof(BaseModel):
    index: int
    size: int
    hashes: list[str]


class ConsistencyProof(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    from_: int = Field(alias="from")
    to: int
    hashes: list[str]


class RangeEntry(BaseModel):
    index: int
    entry: str = Field(description="base64 of the entry's exact bytes (what its leaf hash covers)")


class EntryRange(BaseModel):
    entries: list[RangeEntry]


class CosignatureAnswer(BaseModel):
    checkpoint_size: int
    stored: list[str]
    """Witnesses (``<name>+<key id>``) whose cosignature was new and is now kept."""
    already_stored: list[str]
    """Witnesses whose identical cosignature the gateway already had."""


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad input"},
    404: {"model": ErrorBody, "description": "Not found"},
    503: {"model": ErrorBody, "description": "The database is not reachable"},
}

MAX_INDEX = 2**63 - 1
MAX_ENTRY_RANGE = 1000
DB_DOWN = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


def proof_response(fields: dict[str, int], hashes: list[bytes]) -> Response:
    """``{...fields, "hashes": [base64, ...]}`` as JSON."""
    body = json.dumps(
        {**fields, "hashes": [base64.b64encode(h).decode() for h in hashes]}, separators=(",", ":")
    )
    return Response(body, media_type="application/json")


def create_app(state: ApiState) -> FastAPI:
    # /docs and /redoc with Swagger UI and ReDoc served by the gateway itself (under
    # /static-offline-docs), not from a CDN: the API's page works on an isolated network
    app = FastAPIOffline(
        title="iot-attest gateway",
        version="1",
        description="Device-signed meter readings in a verifiable Merkle log. "
        "The log routes are public: anyone may audit the log. The other routes need "
        "`Authorization: Bearer <token>`: installers enrol, revoke and rotate devices; issuers read "
        "devices, assets and readings, file claims and fetch their evidence bundles; auditors read "
        'everything an issuer can. Errors are `{"error": {"code", "message"}}`.',
    )
    app.state.gateway = state

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> JSONResponse:
        """Every refusal the gateway raises (ApiError, DeviceError, CosignatureRefused, ...) answered alike."""
        return error(exc.status, exc.code, exc.message, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(400, "bad_request", describe_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    async def database_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("%s %s: the database is not reachable: %s", request.method, request.url.path, exc)
        return error(503, "database_unavailable", "the database is not reachable; retry later")

    for kind in DB_DOWN:
        app.add_exception_handler(kind, database_down)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        """The last resort: a bug. Logged (by uvicorn, with the traceback); the client gets the usual body."""
        return error(
            500, "internal_error", "the gateway failed to answer this request; the operator has the log"
        )

    app.include_router(devices.router)
    app.include_router(assets.router)
    app.include_router(claims.router)
    app.include_router(quarantine.router)

    async def has_tree(conn: asyncpg.Connection, size: int) -> None:
        """Raise 400 size_beyond_log unless the log has at least ``size`` entries."""
        if size <= state.log_size_seen:
            return
        have = await logstore.log_size(conn)
        state.log_size_seen = max(state.log_size_seen, have)
        if size > have:
            raise ApiError(400, "size_beyond_log", f"the log has {have} entries, fewer than {size}")

    @app.get("/v1/log/checkpoint", response_class=PlainTextResponse, tags=["log"], responses=ERRORS)
    async def checkpoint() -> Response:
        """The latest signed checkpoint (a C2SP signed note), with any witness cosignatures."""
        async with state.pool.acquire() as conn:
            row = await logstore.latest_checkpoint(conn)
            if row is None:
                raise ApiError(404, "no_checkpoint", "the log has not signed a checkpoint yet")
            lines = [
                r["line"]
                for r in await conn.fetch(
                    "SELECT line FROM cosignatures WHERE checkpoint_id = $1 ORDER BY witness", row["id"]
                )
            ]
        note: str = row["note"] + "".join(lines)
        return PlainTextResponse(note, media_type="text/plain; charset=utf-8")

    @app.get("/v1/log/key", response_class=PlainTextResponse, tags=["log"])
    async def key() -> Response:
        """The log's verifier key string. Auditors should obtain it out of band and compare."""
        return PlainTextResponse(state.log_key.to_string() + "\n", media_type="text/plain; charset=utf-8")

    @app.get(
        "/v1/log/entries/{index}",
        tags=["log"],
        responses={200: {"content": {"application/octet-stream": {}}}, **ERRORS},
    )
    async def get_entry(index: int) -> Response:
        """The exact bytes of log entry ``index`` (what its leaf hash covers)."""
        if not 0 <= index <= MAX_INDEX:
            raise ApiError(400, "bad_index", "index must be an integer from 0 to 2^63-1")
        async with state.pool.acquire() as conn:
            data = await logstore.entry(conn, index)
        if data is None:
            raise ApiError(404, "no_such_entry", f"the log has no entry {index}")
        return Response(data, media_type="application/octet-stream")

    @app.get("/v1/log/entries", tags=["log"], responses={200: {"model": EntryRange}, **ERRORS})
    async def get_entries(
        start: Annotated[int, Query(ge=0, le=MAX_INDEX, description="the first index")],
        end: Annotated[int, Query(ge=1, le=MAX_INDEX, description="the index after the last")],
    ) -> Response:
        """The exact bytes of log entries ``start`` to ``end - 1`` (at most 1,000), for monitors.

        Only logged entries are returned: fewer than asked when ``end`` lies beyond the log.
        Take ``end`` from a verified checkpoint and check the entries against its root.
        """
        if not start < end <= start + MAX_ENTRY_RANGE:
            raise ApiError(
                400, "bad_range", f"end must be above start and at most {MAX_ENTRY_RANGE} entries after it"
            )
        async with state.pool.acquire() as conn:
            found = await logstore.entries_between(conn, start, end)
        body = json.dumps(
            {"entries": [{"index": i, "entry": base64.b64encode(data).decode()} for i, data in found]},
            separators=(",", ":"),
        )
        return Response(body, media_type="application/json")

    @app.get("/v1/log/proof/inclusion", tags=["log"], responses={200: {"model": InclusionProof}, **ERRORS})
    async def inclusion(
        index: Annotated[int, Query(ge=0, le=2**63 - 1)], size: Annotated[int, Query(ge=1, le=2**63 - 1)]
    ) -> Response:
        """An RFC 9162 inclusion proof of entry ``index`` in the tree of ``size`` entries."""
        if index >= size:
            raise ApiError(400, "index_out_of_range", f"index {index} is not below size {size}")
        async with state.pool.acquire() as conn:
            await has_tree(conn, size)
            try:
                hashes = await logstore.inclusion_proof(conn, index, size)
            except ProofError as exc:  # pragma: no cover - nodes missing would be a storage fault
                raise ApiError(400, exc.code, str(exc)) from exc
        # built by hand: this is the hottest public route, and a response model costs more than the query
        return proof_response({"index": index, "size": size}, hashes)

    @app.get(
        "/v1/log/proof/consistency", tags=["log"], responses={200: {"model": ConsistencyProof}, **ERRORS}
    )
    async def consistency(
        from_: Annotated[int, Query(alias="from", ge=0, le=2**63 - 1)],
        to: Annotated[int, Query(ge=0, le=2**63 - 1)],
    ) -> Response:
        """An RFC 9162 consistency proof from the tree of ``from`` entries to the tree of ``to``."""
        if from_ > to:
            raise ApiError(400, "size_order", f"from ({from_}) must not exceed to ({to})")
        async with state.pool.acquire() as conn:
            await has_tree(conn, to)
            hashes = [] if from_ in (0, to) else await logstore.consistency_proof(conn, from_, to)
        return proof_response({"from": from_, "to": to}, hashes)

    @app.post(
        "/v1/log/cosignatures",
        tags=["log"],
        status_code=201,
        response_model=CosignatureAnswer,
        responses={
            200: {"model": CosignatureAnswer, "description": "Every cosignature was already stored"},
            **responses(403, 404, 409),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": "The checkpoint's signed note with the witness's cosignature line(s) appended",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
    async def cosignatures(request: Request, response: Response) -> CosignatureAnswer:
        """A witness's cosignature of a checkpoint (public: the signature is the authentication).

        The body is the checkpoint's signed note with the witness's cosignature
        line(s) appended (c2sp.org/tlog-cosignature).  Accepted from the witness
        keys the gateway is configured with (``witnesses``), for checkpoints it
        signed; ``GET /v1/log/checkpoint`` then carries the cosignature.
        """
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > witnesses.MAX_NOTE_BYTES:
                raise ApiError(
                    400, "too_large", f"a cosigned note is at most {witnesses.MAX_NOTE_BYTES} bytes"
                )
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "note_not_utf8", "the body is not UTF-8 text") from None
        checkpoint_body, lines = witnesses.verified_cosignatures(text, state.witnesses)
        async with state.pool.acquire() as conn:
            result = await witnesses.store_cosignatures(conn, checkpoint_body, lines)
        if not result.stored:
            response.status_code = 200
        else:
            log.info(
                "stored cosignatures of %s for tree size %d", ", ".join(result.stored), result.checkpoint_size
            )
        return CosignatureAnswer(
            checkpoint_size=result.checkpoint_size, stored=result.stored, already_stored=result.already_stored
        )

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"model": ErrorBody}})
    async def readyz() -> JSONResponse:
        """The process can reach its database and has started its work."""
        try:
            async with state.pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        except (OSError, asyncpg.PostgresError) as exc:
            return error(503, "database_unreachable", f"the database does not answer: {exc}")
        if not state.ready:
            return error(503, "starting", "the gateway is still starting")
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus metrics of this gateway process."""
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
                    if "requestBody" in operation:
                        operation.setdefault("responses", {})["413"] = {
                            "description": f"The body is larger than the gateway admits ({state.max_request_bytes} bytes)",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                            },
                        }
            components = schema.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                components.pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    # added last, so it wraps every other layer but Starlette's last-resort error handler:
    # a body is counted before routing, authentication or parsing see any of it
    app.add_middleware(BodyLimit, max_bytes=state.max_request_bytes)
    return app


def describe_validation(exc: RequestValidationError) -> str:
    """The first validation error, as ``where: what`` (e.g. ``limit: Input should be less than or equal to 1000``)."""
    errors = exc.errors()
    if not errors:
        return "request: invalid"
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ())]
    if loc and loc[0] in ("query", "path", "header", "body"):
        loc = loc[1:]
    where = ".".join(loc) or "body"
    message = str(first.get("msg", "invalid"))
    if first.get("type") == "json_invalid":
        return f"the body is not valid JSON: {first.get('ctx', {}).get('error', message)}"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{where}: {message}{more}"
