"""Device enrolment, key rotation and revocation, as database operations.

Each one checks its statement with the protocol core (proof of possession,
signatures, the registry's rules), updates the device tables that ingest reads,
and queues the log entry for the sequencer, all in one transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import asyncpg

from attest_core.device import verify_rotation
from attest_core.entries import (
    EnrolmentEntry,
    RevocationEntry,
    RotationEntry,
    encode_entry,
)
from attest_core.errors import AttestError
from attest_core.reading import device_key_id
from attest_core.registry import DeviceRecord, Registry, RegistryError
from gateway.device_records import read_devices
from gateway.errors import DeviceError

REGISTRY_LOCK = 0x10_7A77_DE7
"""Advisory lock id: taken exclusively by a key rotation or revocation, shared by ingest while it
checks and stores a batch (see :func:`change_registry` and gateway.ingest.store_batch)."""


async def change_registry(conn: asyncpg.Connection) -> None:
    """Start a change to which readings ingest may accept (call inside the change's transaction).

    Waits for every ingest batch being checked to commit, and bumps ``registry_state.version``
    so that every later batch, in any process, re-reads its device records before it checks a
    reading: no reading is accepted under a key or a revocation state that was already replaced.
    """
    await conn.execute("SELECT pg_advisory_xact_lock($1)", REGISTRY_LOCK)
    await conn.execute("UPDATE registry_state SET version = version + 1")


@dataclass(frozen=True)
class Enrolled:
    device_id: str
    asset_id: str
    key_id: bytes
    pending_id: int


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _add_key(conn: asyncpg.Connection, device_id: str, public_key: bytes, from_seq: int) -> bytes:
    """Store a device key, valid from reading ``from_seq`` on; returns its key id."""
    key_id = device_key_id(public_key)
    await conn.execute(
        "INSERT INTO device_keys (device_id, key_id, public_key, from_seq) VALUES ($1, $2, $3, $4)",
        device_id,
        key_id,
        public_key,
        from_seq,
    )
    return key_id


async def _queue(
    conn: asyncpg.Connection, entry: EnrolmentEntry | RotationEntry | RevocationEntry, device_id: str
) -> int:
    """Queue a device's identity entry for the sequencer; returns its ``pending_entries`` id."""
    pending_id: int = await conn.fetchval(
        "INSERT INTO pending_entries (kind, data, device_id) VALUES ($1, $2, $3) RETURNING id",
        int(entry.type),
        encode_entry(entry),
        device_id,
    )
    return pending_id


async def enrol(conn: asyncpg.Connection, statement: bytes, pop_signature: bytes, installer: str) -> Enrolled:
    entry = EnrolmentEntry(statement, pop_signature, installer, _now_ms())
    try:
        st = entry.verify()
    except AttestError as exc:
        raise DeviceError(400, exc.code, str(exc)) from exc
    async with conn.transaction():
        exists = await conn.fetchval("SELECT 1 FROM devices WHERE device_id = $1", st.device_id)
        if exists:
            raise DeviceError(409, "already_enrolled", f"device {st.device_id} is already enrolled")
        loc = st.location
        await conn.execute(
            "INSERT INTO devices (device_id, asset_id, asset_kind, rated_power_w, lat_e6, lon_e6, statement, "
            "installer, logged_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            st.device_id,
            st.asset_id,
            int(st.asset_kind),
            st.rated_power_w,
            None if loc is None else loc.lat_e6,
            None if loc is None else loc.lon_e6,
            statement,
            installer,
            st.chain_anchor(),
        )
        key_id = await _add_key(conn, st.device_id, st.public_key, 1)
        pending_id = await _queue(conn, entry, st.device_id)
    return Enrolled(st.device_id, st.asset_id, key_id, pending_id)


async def _record(conn: asyncpg.Connection, device_id: str) -> DeviceRecord:
    """The device's record, its row locked until the transaction ends."""
    stored = await read_devices(conn, [device_id], for_update=True)
    if device_id not in stored:
        raise DeviceError(404, "unknown_device", f"device {device_id} is not enrolled")
    return stored[device_id].record


async def rotate(
    conn: asyncpg.Connection, statement: bytes, old_signature: bytes, new_signature: bytes, installer: str
) -> tuple[str, bytes]:
    """Rotate a device's key; returns (device id, new key id)."""
    entry = RotationEntry(statement, old_signature, new_signature, installer, _now_ms())
    try:
        st = verify_rotation(statement, old_signature, new_signature)
    except AttestError as exc:
        raise DeviceError(400, exc.code, str(exc)) from exc
    async with conn.transaction():
        await change_registry(conn)
        record = await _record(conn, st.device_id)
        highest = await conn.fetchval("SELECT max(seq) FROM readings WHERE device_id = $1", st.device_id)
        if highest is not None and st.effective_seq <= highest:
            raise DeviceError(
                409,
                "effective_seq_not_above_accepted",
                f"the new key of device {st.device_id} would take effect at sequence number "
                f"{st.effective_seq}, but readings up to {highest} are already accepted under the old key: "
                f"effective_seq must be at least {highest + 1}",
            )
        registry = Registry()
        registry.devices[st.device_id] = record
        try:
            registry.rotate_verified(-1, st)
        except RegistryError as exc:
            raise DeviceError(409, exc.code, str(exc)) from exc
        key_id = await _add_key(conn, st.device_id, st.new_public_key, st.effective_seq)
        await _queue(conn, entry, st.device_id)
    return st.device_id, key_id


async def revoke(
    conn: asyncpg.Connection, device_id: str, reason: str, revoked_by: str, last_valid_seq: int | None = None
) -> int:
    """Revoke a device; returns the last valid sequence number.

    By default every reading the gateway has accepted so far stays valid and
    nothing after it is accepted.
    """
    async with conn.transaction():
        await change_registry(conn)
        record = await _record(conn, device_id)
        if record.revoked:
            raise DeviceError(409, "already_revoked", f"device {device_id} is already revoked")
        if last_valid_seq is None:
            last_valid_seq = await conn.fetchval(
                "SELECT coalesce(max(seq), 0) FROM readings WHERE device_id = $1", device_id
            )
        try:
            entry = RevocationEntry(device_id, last_valid_seq, reason, revoked_by, _now_ms())
        except AttestError as exc:
            raise DeviceError(400, exc.code, str(exc)) from exc
        await conn.execute(
            "UPDATE devices SET revoked_at = now(), last_valid_seq = $2 WHERE device_id = $1",
            device_id,
            last_valid_seq,
        )
        await _queue(conn, entry, device_id)
    return int(last_valid_seq)
