"""The gateway's HTTP face (FastAPI): the public log routes, health and metrics.

Every error is JSON ``{"error": {"code": ..., "message": ...}}`` with a 4xx
status; bad input never yields a 5xx.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from attest_core.errors import ProofError
from attest_core.note import VerifierKey
from gateway import logstore
from gateway.metrics import Metrics


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class InclusionProof(BaseModel):
    index: int
    size: int
    hashes: list[str]


class ConsistencyProof(BaseModel):
    model_config = {"populate_by_name": True}
    from_: int
    to: int
    hashes: list[str]


@dataclass
class ApiState:
    pool: asyncpg.Pool
    log_key: VerifierKey
    metrics: Metrics
    ready: bool = False


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad input"},
    404: {"model": ErrorBody, "description": "Not found"},
}


def create_app(state: ApiState) -> FastAPI:
    app = FastAPI(
        title="iot-attest gateway",
        version="1",
        description="Device-signed meter readings in a verifiable Merkle log. "
        "The log routes are public: anyone may audit the log.",
    )
    app.state.gateway = state

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
        return error(400, "bad_request", f"{where or 'request'}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error(exc.status_code, code, str(exc.detail))

    async def current_size(conn: asyncpg.Connection) -> int:
        return await logstore.log_size(conn)

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
        if index < 0:
            raise ApiError(400, "bad_index", "index must be a non-negative integer")
        async with state.pool.acquire() as conn:
            data = await logstore.entry(conn, index)
        if data is None:
            raise ApiError(404, "no_such_entry", f"the log has no entry {index}")
        return Response(data, media_type="application/octet-stream")

    @app.get("/v1/log/proof/inclusion", response_model=InclusionProof, tags=["log"], responses=ERRORS)
    async def inclusion(
        index: Annotated[int, Query(ge=0, le=2**63 - 1)], size: Annotated[int, Query(ge=1, le=2**63 - 1)]
    ) -> InclusionProof:
        """An RFC 9162 inclusion proof of entry ``index`` in the tree of ``size`` entries."""
        if index >= size:
            raise ApiError(400, "index_out_of_range", f"index {index} is not below size {size}")
        async with state.pool.acquire() as conn:
            have = await current_size(conn)
            if size > have:
                raise ApiError(400, "size_beyond_log", f"the log has {have} entries, fewer than {size}")
            try:
                hashes = await logstore.inclusion_proof(conn, index, size)
            except ProofError as exc:  # pragma: no cover - nodes missing would be a storage fault
                raise ApiError(400, exc.code, str(exc)) from exc
        return InclusionProof(index=index, size=size, hashes=[base64.b64encode(h).decode() for h in hashes])

    @app.get(
        "/v1/log/proof/consistency", tags=["log"], responses={200: {"model": ConsistencyProof}, **ERRORS}
    )
    async def consistency(
        from_: Annotated[int, Query(alias="from", ge=0, le=2**63 - 1)],
        to: Annotated[int, Query(ge=0, le=2**63 - 1)],
    ) -> JSONResponse:
        """An RFC 9162 consistency proof from the tree of ``from`` entries to the tree of ``to``."""
        if from_ > to:
            raise ApiError(400, "size_order", f"from ({from_}) must not exceed to ({to})")
        async with state.pool.acquire() as conn:
            have = await current_size(conn)
            if to > have:
                raise ApiError(400, "size_beyond_log", f"the log has {have} entries, fewer than {to}")
            hashes = [] if from_ in (0, to) else await logstore.consistency_proof(conn, from_, to)
        return JSONResponse(
            {"from": from_, "to": to, "hashes": [base64.b64encode(h).decode() for h in hashes]}
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

    return app
