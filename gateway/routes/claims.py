"""Claims: file one (issuer), read it with the server's verdict and fetch its evidence bundle (issuer, auditor).

The models are in :mod:`gateway.routes.claim_models`, the verdicts kept between requests in
:mod:`gateway.routes.verdict_cache`.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import asyncpg
from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import StreamingResponse

from gateway import bundles
from gateway import claims as claim_store
from gateway.auth import AUDITOR, ISSUER, require
from gateway.routes.claim_models import (
    BUNDLE_SCHEMA,
    ClaimOut,
    ClaimPage,
    ClaimRequest,
    WithdrawalRequest,
    build_claim,
    claim_out,
)
from gateway.routes.common import MAX_MS, ApiError, id_query, poll, responses
from gateway.routes.paging import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, next_page
from gateway.routes.state import State
from gateway.tokens import Principal

router = APIRouter(tags=["claims"])
file = require(ISSUER, purpose="file claims")
read = require(ISSUER, AUDITOR, purpose="read claims")
Filer = Annotated[Principal, Depends(file)]
Reader = Annotated[Principal, Depends(read)]

ClaimId = Annotated[int, Path(ge=1, le=MAX_MS, description="The claim's id")]


async def _claim(conn: asyncpg.Connection, claim_id: int) -> claim_store.StoredClaim:
    stored = await claim_store.get_claim(conn, claim_id)
    if stored is None:
        raise ApiError(404, "unknown_claim", f"there is no claim {claim_id}")
    return stored


@router.post("/v1/claims", status_code=201, response_model=ClaimOut, responses=responses(401, 403, 409))
async def file_claim(
    body: ClaimRequest,
    response: Response,
    principal: Filer,
    state: State,
) -> ClaimOut:
    """File a cash-flow claim (issuer): it becomes a log entry, so every holder sees the same claim.

    The issuer is the token's name.  Every named asset must have an enrolled
    device.  409 ``already_claimed`` if its period overlaps a live claim on one of its
    assets (by any issuer): the same energy backs at most one live claim.  The answer waits
    briefly for the claim's log index; its verdict and bundle are available once a checkpoint
    covers it (``GET /v1/claims/{id}``).
    """
    return await file_and_wait(body, response, principal, state, supersedes=None)


async def file_and_wait(
    body: ClaimRequest, response: Response, principal: Principal, state: State, supersedes: int | None
) -> ClaimOut:
    """File a claim (superseding claim ``supersedes``, if given) and wait briefly for its log index."""
    claim = build_claim(body, principal.name)
    async with state.pool.acquire() as conn:
        known = {
            r["asset_id"]
            for r in await conn.fetch(
                "SELECT DISTINCT asset_id FROM devices WHERE asset_id = ANY($1::text[])", list(claim.assets)
            )
        }
        unknown = [a for a in claim.assets if a not in known]
        if unknown:
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise ApiError(
                400, "unknown_asset", f"assets without an enrolled device: {', '.join(unknown[:5])}{more}"
            )
        claim_id = await claim_store.file_claim(conn, claim, principal.name, supersedes)

    async def logged() -> claim_store.StoredClaim | None:
        async with state.pool.acquire() as conn:
            stored = await claim_store.get_claim(conn, claim_id)
        return stored if stored is not None and stored.log_index is not None else None

    stored = await poll(logged, state.log_wait)
    async with state.pool.acquire() as conn:
        if stored is None:
            stored = await claim_store.get_claim(conn, claim_id)
            assert stored is not None
        checkpoint = await claim_store.latest_checkpoint(conn)
    response.headers["Location"] = f"/v1/claims/{claim_id}"
    return claim_out(stored, None if checkpoint is None else checkpoint.size)


@router.post(
    "/v1/claims/{claim_id}/supersede",
    status_code=201,
    response_model=ClaimOut,
    responses=responses(401, 403, 404, 409),
)
async def supersede_claim(
    claim_id: ClaimId,
    body: ClaimRequest,
    response: Response,
    principal: Filer,
    state: State,
) -> ClaimOut:
    """File a claim that replaces live claim ``claim_id`` of the same issuer (a correction).

    The new claim's entry names the one it supersedes, which is void from then on (its bundle
    says so). The new claim may cover other assets or another period; it is refused like any
    claim if it overlaps a live claim other than the one it replaces.  403 ``not_your_claim``,
    409 ``claim_void`` if that claim is already withdrawn or superseded.
    """
    return await file_and_wait(body, response, principal, state, supersedes=claim_id)


@router.post(
    "/v1/claims/{claim_id}/withdraw", response_model=ClaimOut, responses=responses(401, 403, 404, 409)
)
async def withdraw_claim(
    claim_id: ClaimId,
    body: WithdrawalRequest,
    principal: Filer,
    state: State,
) -> ClaimOut:
    """Withdraw live claim ``claim_id`` (its issuer only): a withdrawal entry is logged, the claim backs nothing.

    The reason is logged and public.  Its period and assets are free to be claimed again.
    """
    async with state.pool.acquire() as conn:
        await claim_store.withdraw_claim(conn, claim_id, principal.name, body.reason)
        stored = await _claim(conn, claim_id)
        checkpoint = await claim_store.latest_checkpoint(conn)
    return claim_out(stored, None if checkpoint is None else checkpoint.size)


@router.get("/v1/claims", response_model=ClaimPage, responses=responses(401, 403))
async def list_claims(
    _: Reader,
    state: State,
    issuer: Annotated[str | None, id_query("only this issuer's")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> ClaimPage:
    """Filed claims, newest first (without verdicts: GET one claim for its verdict)."""
    before = decode_cursor(cursor, "claims", int)[0] if cursor else None
    async with state.pool.acquire() as conn:
        found = await claim_store.list_claims(conn, issuer, before, limit + 1)
        checkpoint = await claim_store.latest_checkpoint(conn)
    size = None if checkpoint is None else checkpoint.size
    page, next_cursor = next_page(found, limit, "claims", lambda s: (s.id,))
    return ClaimPage(items=[claim_out(s, size) for s in page], next_cursor=next_cursor)


@router.get("/v1/claims/{claim_id}", response_model=ClaimOut, responses=responses(401, 403, 404))
async def show_claim(
    claim_id: ClaimId,
    _: Reader,
    state: State,
) -> ClaimOut:
    """A claim, its log index and the server's verdict on full evidence as of the latest checkpoint.

    The verdict is what ``python -m verifier bundle`` finds in the claim's full
    bundle, including which checks ran on which evidence (``checks``, per device
    ``evidence``); it is null until a checkpoint covers the claim.
    """
    async with state.pool.acquire() as conn:
        stored = await _claim(conn, claim_id)
        checkpoint = await claim_store.latest_checkpoint(conn)
    size = None if checkpoint is None else checkpoint.size
    verdict = None
    if size is not None and stored.log_index is not None and stored.log_index < size:
        verdict = await state.verdicts.verdict(state.pool, stored, size)
    return claim_out(stored, size, verdict)


@router.get(
    "/v1/claims/{claim_id}/bundle",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The evidence bundle (iot-attest-evidence/v2), streamed",
            "content": {"application/json": {"schema": BUNDLE_SCHEMA}},
        },
        **responses(401, 403, 404, 409),
    },
)
async def bundle(
    claim_id: ClaimId,
    _: Reader,
    state: State,
    mode: Annotated[
        Literal["full", "boundary"],
        Query(
            description="full: per device, every reading from the one before the period to the one after it "
            "(a reading left out is then fatal); boundary: the first and last reading in the period per device "
            "(the checks that need every interval cannot run)"
        ),
    ] = "full",
) -> StreamingResponse:
    """The claim's evidence bundle into the latest checkpoint, streamed; verify it with ``python -m verifier bundle``.

    409 ``not_checkpointed`` while no checkpoint covers the claim yet: retry in a few seconds.
    """
    async with state.pool.acquire() as conn:
        stored = await _claim(conn, claim_id)
        checkpoint = await claim_store.latest_checkpoint(conn)
        size = 0 if checkpoint is None else checkpoint.size
        if checkpoint is None or stored.log_index is None or stored.log_index >= size:
            where = "is not logged yet" if stored.log_index is None else f"is log entry {stored.log_index}"
            raise ApiError(
                409,
                "not_checkpointed",
                f"claim {claim_id} {where}, not yet covered by a checkpoint (the latest covers {size} entries); "
                "retry in a few seconds",
            )
        plan = await bundles.plan_bundle(conn, stored, mode, checkpoint)
    loop = asyncio.get_running_loop()
    return StreamingResponse(
        bundles.stream_bundle(plan, state.pool, loop),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="claim-{claim_id}-{mode}.json"',
            "X-Bundle-Entries": str(plan.entry_count),
            "X-Checkpoint-Size": str(plan.size),
        },
    )
