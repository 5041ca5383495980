"""Devices: enrol (installer, operator), read (installer, operator, issuer, auditor), revoke and
rotate keys (the device's installer, or an operator).

Enrolment, revocation and key rotation each become a log entry
(:mod:`gateway.devices` checks and queues them); the answer waits up to
``enrol_wait`` seconds for the sequencer to log the entry and carries its log
index, or ``"status": "pending"`` and ``log_index: null`` if it is not logged yet
(``GET /v1/devices/{id}`` shows it later).
"""

from __future__ import annotations

from typing import Annotated, Literal

import asyncpg
from fastapi import APIRouter, Depends, Response

from attest_core.device import (
    AssetKind,
    decode_enrolment_statement,
    decode_rotation_statement,
    log_key_hash,
    verify_enrolment,
)
from attest_core.entries import EntryType, RevokerRole, RotationEntry, decode_entry
from attest_core.errors import AttestError
from attest_core.keys import SIGNATURE_SIZE
from attest_core.reading import device_key_id
from gateway import devices as device_ops
from gateway.auth import AUDITOR, INSTALLER, ISSUER, OPERATOR, require
from gateway.routes.common import (
    ApiError,
    b64,
    b64decode_field,
    check_text,
    id_path,
    id_query,
    poll,
    responses,
)
from gateway.routes.device_models import (
    DeviceOut,
    DevicePage,
    EnrolmentAnswer,
    EnrolmentRequest,
    KeyOut,
    MeterKeyOut,
    RevocationAnswer,
    RevocationRequest,
    RotationAnswer,
    RotationRequest,
    location_out,
)
from gateway.routes.paging import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, next_page
from gateway.routes.state import ApiState, State
from gateway.routes.times import iso_dt
from gateway.tokens import Principal

router = APIRouter(tags=["devices"])

DeviceId = Annotated[str, id_path("device", "dev-1")]
read_devices = require(INSTALLER, OPERATOR, ISSUER, AUDITOR, purpose="read devices")
install = require(INSTALLER, OPERATOR, purpose="enrol, revoke or rotate devices")
Reader = Annotated[Principal, Depends(read_devices)]
Installer = Annotated[Principal, Depends(install)]


# --- queries ---------------------------------------------------------------------------------

_DEVICE_SELECT = (
    "SELECT d.device_id, d.asset_id, d.asset_kind, d.rated_power_w, d.lat_e6, d.lon_e6, d.statement, "
    "d.installer, d.enrolled_at, d.revoked_at, d.last_valid_seq, d.logged_seq, "
    "(SELECT max(r.seq) FROM readings r WHERE r.device_id = d.device_id) AS accepted_seq, "
    "(SELECT min(e.idx) FROM entries e WHERE e.device_id = d.device_id AND e.kind = 1) AS enrolment_index, "
    "(SELECT min(e.idx) FROM entries e WHERE e.device_id = d.device_id AND e.kind = 4) AS revocation_index "
    "FROM devices d "
)


def _role(principal: Principal) -> RevokerRole:
    """The role a device-changing route acts in (``install`` admits only these two)."""
    return RevokerRole.OPERATOR if principal.role == OPERATOR else RevokerRole.INSTALLER


def device_out(row: asyncpg.Record, keys: list[asyncpg.Record]) -> DeviceOut:
    if row["revoked_at"] is not None:
        status: Literal["pending", "active", "revoked"] = "revoked"
    elif row["enrolment_index"] is None:
        status = "pending"
    else:
        status = "active"
    statement = decode_enrolment_statement(bytes(row["statement"]))
    meter_key = statement.meter_key
    return DeviceOut(
        device_id=row["device_id"],
        asset_id=row["asset_id"],
        asset_kind=AssetKind(row["asset_kind"]).label,  # type: ignore[arg-type]
        rated_power_w=row["rated_power_w"],
        location=location_out(row["lat_e6"], row["lon_e6"]),
        installer=row["installer"],
        status=status,
        enrolled_at=iso_dt(row["enrolled_at"]),
        enrolment_log_index=row["enrolment_index"],
        keys=[KeyOut(key_id=bytes(k["key_id"]).hex(), from_seq=k["from_seq"]) for k in keys],
        revoked_at=iso_dt(row["revoked_at"]),
        last_valid_seq=row["last_valid_seq"] if row["revoked_at"] is not None else None,
        revocation_log_index=row["revocation_index"],
        last_accepted_seq=row["accepted_seq"],
        last_logged_seq=row["logged_seq"],
        statement=b64(bytes(row["statement"])),
        log_origin=statement.log_origin,
        log_key_hash=None if statement.log_key_hash is None else statement.log_key_hash.hex(),
        meter_key=None
        if meter_key is None
        else MeterKeyOut(curve=meter_key.curve, public_key=meter_key.hex()),
    )


async def fetch_devices(conn: asyncpg.Connection, where: str, *args: object) -> list[DeviceOut]:
    rows = await conn.fetch(_DEVICE_SELECT + where, *args)
    ids = [r["device_id"] for r in rows]
    keys: dict[str, list[asyncpg.Record]] = {}
    for k in await conn.fetch(
        "SELECT device_id, key_id, from_seq FROM device_keys WHERE device_id = ANY($1) ORDER BY device_id, from_seq",
        ids,
    ):
        keys.setdefault(k["device_id"], []).append(k)
    return [device_out(r, keys.get(r["device_id"], [])) for r in rows]


async def get_device(conn: asyncpg.Connection, device_id: str) -> DeviceOut:
    found = await fetch_devices(conn, "WHERE d.device_id = $1", device_id)
    if not found:
        raise ApiError(404, "unknown_device", f"device {device_id} is not enrolled")
    return found[0]


async def _entry_index(state: ApiState, device_id: str, kind: EntryType) -> int | None:
    """The log index of the device's first entry of ``kind``, waiting up to ``log_wait`` for it."""

    async def fetch() -> int | None:
        async with state.pool.acquire() as conn:
            value: int | None = await conn.fetchval(
                "SELECT min(idx) FROM entries WHERE device_id = $1 AND kind = $2", device_id, int(kind)
            )
            return value

    return await poll(fetch, state.log_wait)


# --- routes ----------------------------------------------------------------------------------


@router.post(
    "/v1/devices",
    status_code=201,
    response_model=EnrolmentAnswer,
    responses={
        200: {"model": EnrolmentAnswer, "description": "The same enrolment again: already enrolled with it"},
        **responses(401, 403, 409),
    },
)
async def enrol(
    body: EnrolmentRequest,
    response: Response,
    principal: Installer,
    state: State,
) -> EnrolmentAnswer:
    """Enrol a device (installer): its signed enrolment statement and proof of possession.

    The statement names the device, its public key, the asset (kind, rated power,
    location) and the time; the proof of possession is the device key's signature
    over it, which the gateway checks.  Sending exactly the same enrolment again is
    answered 200 with the same result; another enrolment of an enrolled device is
    409 ``already_enrolled``.  The statement (v2) must name this gateway's log origin
    (400 ``wrong_log_origin``) and the hash of its log key (400 ``wrong_log_key``); a v1
    statement, which names no log, is refused (400 ``enrolment_v1_refused``) unless the
    setting ``accept_v1_enrolments`` allows it.  An installer enrols only on a new asset or
    one whose first device it enrolled (403 ``not_your_asset``); an operator on any asset.  A
    certified meter's key (statement extension 1) is enrolled for one device at a time (409
    ``meter_key_enrolled`` while an unrevoked device carries it).
    """
    statement = b64decode_field(body.statement, "statement")
    pop = b64decode_field(body.proof_of_possession, "proof_of_possession", SIGNATURE_SIZE)
    try:
        st = decode_enrolment_statement(statement)
    except AttestError as exc:
        raise ApiError(400, exc.code, f"statement: {exc}") from exc
    async with state.pool.acquire() as conn:
        existing = await conn.fetchval("SELECT statement FROM devices WHERE device_id = $1", st.device_id)
        if existing is not None and bytes(existing) == statement:
            try:
                verify_enrolment(statement, pop)
            except AttestError as exc:
                raise ApiError(400, exc.code, str(exc)) from exc
            response.status_code = 200
        else:
            await device_ops.enrol(
                conn,
                statement,
                pop,
                principal.name,
                role=_role(principal),
                log_origin=state.log_key.name,
                log_key_hash=log_key_hash(state.log_key),
                accept_v1=state.accept_v1_enrolments,
            )
    log_index = await _entry_index(state, st.device_id, EntryType.ENROLMENT)
    response.headers["Location"] = f"/v1/devices/{st.device_id}"
    return EnrolmentAnswer(
        device_id=st.device_id,
        asset_id=st.asset_id,
        asset_kind=st.asset_kind.label,  # type: ignore[arg-type]
        key_id=device_key_id(st.public_key).hex(),
        log_index=log_index,
        status="pending" if log_index is None else "logged",
    )


@router.get("/v1/devices", response_model=DevicePage, responses=responses(401, 403))
async def list_devices(
    _: Reader,
    state: State,
    asset: Annotated[str | None, id_query("only the devices of this asset")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> DevicePage:
    """Enrolled devices, ordered by device id (installer, issuer, auditor)."""
    after = decode_cursor(cursor, "devices", str)[0] if cursor else ""
    async with state.pool.acquire() as conn:
        if asset is None:
            items = await fetch_devices(
                conn, "WHERE d.device_id > $1 ORDER BY d.device_id LIMIT $2", after, limit + 1
            )
        else:
            items = await fetch_devices(
                conn,
                "WHERE d.asset_id = $3 AND d.device_id > $1 ORDER BY d.device_id LIMIT $2",
                after,
                limit + 1,
                asset,
            )
    page, next_cursor = next_page(items, limit, "devices", lambda d: (d.device_id,))
    return DevicePage(items=list(page), next_cursor=next_cursor)


@router.get("/v1/devices/{device_id}", response_model=DeviceOut, responses=responses(401, 403, 404))
async def show_device(
    device_id: DeviceId,
    _: Reader,
    state: State,
) -> DeviceOut:
    """One device: asset, keys, status and log indices (installer, issuer, auditor)."""
    async with state.pool.acquire() as conn:
        return await get_device(conn, device_id)


@router.post(
    "/v1/devices/{device_id}/revoke", response_model=RevocationAnswer, responses=responses(401, 403, 404, 409)
)
async def revoke(
    device_id: DeviceId,
    body: RevocationRequest,
    principal: Installer,
    state: State,
) -> RevocationAnswer:
    """Revoke a device (its installer, or an operator): readings above ``last_valid_seq`` are disowned
    and no longer accepted.

    An installer may revoke only a device it enrolled (403 ``not_your_device``), and only
    without disowning readings the gateway already accepted (403 ``disown_needs_operator``):
    that refutes the claims they back, so it needs an operator token and a reason.  The
    revocation entry records the role and how many accepted readings it disowns.
    """
    if len(check_text(body.reason, "reason").encode("utf-8")) > 1000:
        raise ApiError(400, "too_large", "reason: at most 1000 bytes of UTF-8")
    async with state.pool.acquire() as conn:
        revoked = await device_ops.revoke(
            conn, device_id, body.reason, principal.name, body.last_valid_seq, role=_role(principal)
        )
    state.invalidate(device_id)
    log_index = await _entry_index(state, device_id, EntryType.REVOCATION)
    return RevocationAnswer(
        device_id=device_id,
        last_valid_seq=revoked.last_valid_seq,
        readings_disowned=revoked.readings_disowned,
        revoked_by=principal.name,
        role=revoked.role.label,  # type: ignore[arg-type]
        log_index=log_index,
        status="pending" if log_index is None else "logged",
    )


@router.post(
    "/v1/devices/{device_id}/rotate", response_model=RotationAnswer, responses=responses(401, 403, 404, 409)
)
async def rotate(
    device_id: DeviceId,
    body: RotationRequest,
    principal: Installer,
    state: State,
) -> RotationAnswer:
    """Rotate a device's key (its installer, or an operator): a rotation statement signed by the old key
    and by the new key.  An installer may rotate only a device it enrolled (403 ``not_your_device``)."""
    statement = b64decode_field(body.statement, "statement")
    old_signature = b64decode_field(body.old_signature, "old_signature", SIGNATURE_SIZE)
    new_signature = b64decode_field(body.new_signature, "new_signature", SIGNATURE_SIZE)
    try:
        st = decode_rotation_statement(statement)
    except AttestError as exc:
        raise ApiError(400, exc.code, f"statement: {exc}") from exc
    if st.device_id != device_id:
        raise ApiError(
            400, "device_mismatch", f"the rotation statement is for device {st.device_id}, not {device_id}"
        )
    async with state.pool.acquire() as conn:
        _, key_id = await device_ops.rotate(
            conn, statement, old_signature, new_signature, principal.name, role=_role(principal)
        )
    state.invalidate(device_id)

    async def fetch() -> int | None:
        async with state.pool.acquire() as conn:
            for row in await conn.fetch(
                "SELECT idx, data FROM entries WHERE device_id = $1 AND kind = $2 ORDER BY idx",
                device_id,
                int(EntryType.KEY_ROTATION),
            ):
                entry = decode_entry(bytes(row["data"]))
                if isinstance(entry, RotationEntry) and entry.statement_bytes == statement:
                    index: int = row["idx"]
                    return index
        return None

    log_index = await poll(fetch, state.log_wait)
    return RotationAnswer(
        device_id=device_id,
        key_id=key_id.hex(),
        effective_seq=st.effective_seq,
        log_index=log_index,
        status="pending" if log_index is None else "logged",
    )
