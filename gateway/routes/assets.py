"""Assets and readings (issuer, auditor).

An asset is what devices are enrolled for (a charger, a solar installation); its
kind, rated power and location come from its devices' enrolment statements.

Readings of a device or an asset are paged newest first (``order=asc`` for
oldest first) over the device time range ``[from, to)``: each bound is RFC 3339
with an explicit offset (``2026-10-01T00:00:00Z``) or Unix milliseconds.  A page
holds at most ``limit`` readings and ``next_cursor`` (an opaque string) fetches
the next; walking the cursors lists every reading of the range exactly once.
"""

from __future__ import annotations

from typing import Annotated, Literal

import asyncpg
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from attest_core.device import AssetKind
from attest_core.errors import AttestError
from attest_core.money import format_kwh
from attest_core.reading import Status, decode_envelope, decode_payload
from gateway.auth import AUDITOR, ISSUER, require
from gateway.routes.common import MAX_MS, ApiError, b64, id_path, responses
from gateway.routes.device_models import LocationOut, location_out
from gateway.routes.devices import DeviceId
from gateway.routes.paging import DEFAULT_LIMIT, Cursor, Limit, Page, decode_cursor, next_page
from gateway.routes.state import State
from gateway.routes.times import TIME_DESCRIPTION, iso, iso_dt, parse_time
from gateway.tokens import Principal

router = APIRouter(tags=["assets and readings"])
read = require(ISSUER, AUDITOR, purpose="read assets and readings")
Reader = Annotated[Principal, Depends(read)]

AssetId = Annotated[str, id_path("asset", "asset-1")]


class AssetDevice(BaseModel):
    device_id: str
    status: Literal["active", "revoked"]
    rated_power_w: int
    enrolled_at: str | None


class AssetOut(BaseModel):
    asset_id: str
    kind: Literal["charger", "solar"]
    rated_power_w: int = Field(description="the highest rated power among its devices, in watts")
    location: LocationOut | None
    devices: list[AssetDevice] = Field(description="its devices, in enrolment order")


class AssetPage(Page):
    items: list[AssetOut]


class ReadingOut(BaseModel):
    device_id: str
    asset_id: str
    seq: int
    time: str = Field(description="device time, RFC 3339 UTC")
    time_ms: int = Field(description="device time, Unix milliseconds")
    energy_mwh: int = Field(description="the meter's cumulative register, milliwatt-hours")
    energy_kwh: str = Field(description="the same register as an exact kWh decimal")
    power_mw: int | None = Field(description="instantaneous power in milliwatts, if the meter gave it")
    status: int = Field(description="status bits")
    flags: list[Literal["tamper", "meter_error", "time_unsynced", "power_up", "simulated"]]
    trigger: Literal["periodic", "session_start", "session_end", "boot"]
    log_index: int | None = Field(description="null until the sequencer logs it")
    received_at: str | None
    envelope: str = Field(description="base64 of the signed envelope exactly as the device sent it")


class ReadingPage(Page):
    items: list[ReadingOut]


# --- assets ------------------------------------------------------------------------------------

_ASSET_SELECT = (
    "SELECT asset_id, "
    "array_agg(device_id ORDER BY enrolled_at, device_id) AS devices, "
    "array_agg(asset_kind ORDER BY enrolled_at, device_id) AS kinds, "
    "array_agg(rated_power_w ORDER BY enrolled_at, device_id) AS powers, "
    "array_agg(revoked_at IS NOT NULL ORDER BY enrolled_at, device_id) AS revoked, "
    "array_agg(enrolled_at ORDER BY enrolled_at, device_id) AS enrolled, "
    "array_agg(lat_e6 ORDER BY enrolled_at, device_id) AS lats, "
    "array_agg(lon_e6 ORDER BY enrolled_at, device_id) AS lons "
    "FROM devices "
)


def asset_out(row: asyncpg.Record) -> AssetOut:
    location = None
    for lat, lon in zip(row["lats"], row["lons"], strict=True):
        found = location_out(lat, lon)
        if found is not None:
            location = found
    devices = [
        AssetDevice(
            device_id=d,
            status="revoked" if revoked else "active",
            rated_power_w=power,
            enrolled_at=iso_dt(enrolled),
        )
        for d, revoked, power, enrolled in zip(
            row["devices"], row["revoked"], row["powers"], row["enrolled"], strict=True
        )
    ]
    return AssetOut(
        asset_id=row["asset_id"],
        kind=AssetKind(row["kinds"][0]).label,  # type: ignore[arg-type]
        rated_power_w=max(row["powers"]),
        location=location,
        devices=devices,
    )


@router.get("/v1/assets", response_model=AssetPage, responses=responses(401, 403))
async def list_assets(
    _: Reader,
    state: State,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> AssetPage:
    """Assets with enrolled devices, ordered by asset id."""
    after = decode_cursor(cursor, "assets", str)[0] if cursor else ""
    async with state.pool.acquire() as conn:
        rows = await conn.fetch(
            _ASSET_SELECT + "WHERE asset_id > $1 GROUP BY asset_id ORDER BY asset_id LIMIT $2",
            after,
            limit + 1,
        )
    page, next_cursor = next_page(rows, limit, "assets", lambda r: (r["asset_id"],))
    return AssetPage(items=[asset_out(r) for r in page], next_cursor=next_cursor)


@router.get("/v1/assets/{asset_id}", response_model=AssetOut, responses=responses(401, 403, 404))
async def show_asset(
    asset_id: AssetId,
    _: Reader,
    state: State,
) -> AssetOut:
    """One asset: kind, rated power, location and devices."""
    async with state.pool.acquire() as conn:
        row = await conn.fetchrow(_ASSET_SELECT + "WHERE asset_id = $1 GROUP BY asset_id", asset_id)
    if row is None:
        raise ApiError(404, "unknown_asset", f"asset {asset_id} has no enrolled device")
    return asset_out(row)


# --- readings ------------------------------------------------------------------------------------

_FLAGS = [(Status.TAMPER, "tamper"), (Status.METER_ERROR, "meter_error"), (Status.TIME_UNSYNCED, "time_unsynced"),
          (Status.POWER_UP, "power_up"), (Status.SIMULATED, "simulated")]  # fmt: skip


def reading_out(row: asyncpg.Record) -> ReadingOut:
    envelope = bytes(row["envelope"])
    try:
        reading = decode_payload(decode_envelope(envelope).payload)
    except AttestError as exc:  # pragma: no cover - ingest stores only decoded envelopes
        raise ApiError(500, "corrupt_reading", f"stored reading cannot be decoded: {exc}") from exc
    return ReadingOut(
        device_id=row["device_id"],
        asset_id=row["asset_id"],
        seq=row["seq"],
        time=iso(row["time_ms"]),
        time_ms=row["time_ms"],
        energy_mwh=row["energy_mwh"],
        energy_kwh=format_kwh(row["energy_mwh"]),
        power_mw=reading.power_mw,
        status=int(reading.status),
        flags=[name for bit, name in _FLAGS if reading.status & bit],  # type: ignore[misc]
        trigger=reading.trigger.name.lower(),  # type: ignore[arg-type]
        log_index=row["log_index"],
        received_at=iso_dt(row["received_at"]),
        envelope=b64(envelope),
    )


class Window(BaseModel):
    """Which readings a page holds: the device time range ``[from, to)``, order, limit and cursor
    (the query parameters of both readings routes)."""

    start: str | None = Field(
        default=None,
        alias="from",
        max_length=64,
        description=f"device time from (inclusive): {TIME_DESCRIPTION}",
    )
    to: str | None = Field(
        default=None, max_length=64, description=f"device time to (exclusive): {TIME_DESCRIPTION}"
    )
    order: Literal["desc", "asc"] = Field(
        default="desc", description="desc: newest first (default); asc: oldest first"
    )
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor = None


ReadingWindow = Annotated[Window, Query()]


async def readings_page(
    conn: asyncpg.Connection, asset_id: str, device_id: str | None, window: Window
) -> ReadingPage:
    start, end, order, limit, cursor = window.start, window.to, window.order, window.limit, window.cursor
    lo = parse_time(start, "from") if start is not None else 0
    hi = parse_time(end, "to") if end is not None else MAX_MS
    if lo > hi:
        raise ApiError(400, "bad_range", f"from ({start}) is after to ({end})")
    kind = "readings-" + order
    args: list[object] = [asset_id, lo, hi]
    where = "asset_id = $1 AND time_ms >= $2 AND time_ms < $3"
    if device_id is not None:
        args.append(device_id)
        where += f" AND device_id = ${len(args)}"
    if cursor:
        t, d, s = decode_cursor(cursor, kind, int, str, int)
        args += [t, d, s]
        n = len(args)
        where += (
            f" AND (time_ms, device_id, seq) {'<' if order == 'desc' else '>'} (${n - 2}, ${n - 1}, ${n})"
        )
    direction = "DESC" if order == "desc" else "ASC"
    args.append(limit + 1)
    query = f"SELECT device_id, seq, asset_id, time_ms, energy_mwh, envelope, received_at, log_index FROM readings WHERE {where} ORDER BY time_ms {direction}, device_id {direction}, seq {direction} LIMIT ${len(args)}"  # noqa: S608
    rows = await conn.fetch(
        query,
        *args,
    )
    page, next_cursor = next_page(rows, limit, kind, lambda r: (r["time_ms"], r["device_id"], r["seq"]))
    return ReadingPage(items=[reading_out(r) for r in page], next_cursor=next_cursor)


@router.get(
    "/v1/devices/{device_id}/readings", response_model=ReadingPage, responses=responses(401, 403, 404)
)
async def device_readings(
    device_id: DeviceId,
    _: Reader,
    state: State,
    window: ReadingWindow,
) -> ReadingPage:
    """The readings of one device in the device time range ``[from, to)``, paged."""
    async with state.pool.acquire() as conn:
        asset_id = await conn.fetchval("SELECT asset_id FROM devices WHERE device_id = $1", device_id)
        if asset_id is None:
            raise ApiError(404, "unknown_device", f"device {device_id} is not enrolled")
        return await readings_page(conn, asset_id, device_id, window)


@router.get("/v1/assets/{asset_id}/readings", response_model=ReadingPage, responses=responses(401, 403, 404))
async def asset_readings(
    asset_id: AssetId,
    _: Reader,
    state: State,
    window: ReadingWindow,
) -> ReadingPage:
    """The readings of all devices of one asset in the device time range ``[from, to)``, paged."""
    async with state.pool.acquire() as conn:
        known = await conn.fetchval("SELECT 1 FROM devices WHERE asset_id = $1 LIMIT 1", asset_id)
        if known is None:
            raise ApiError(404, "unknown_asset", f"asset {asset_id} has no enrolled device")
        return await readings_page(conn, asset_id, None, window)
