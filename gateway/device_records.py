"""Devices' registry records, read from the device tables (``devices`` and ``device_keys``).

Ingest checks readings, and key rotations and revocations check themselves, with the core's
rules (attest_core.registry) on records built here: the one place that knows which column
holds what.  A record read here has no log indices: its enrolment or revocation may still wait
for the sequencer, and no check made from the tables needs them, so both are :data:`NOT_LOGGED`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import asyncpg

from attest_core.device import decode_enrolment_statement
from attest_core.registry import DeviceRecord, KeySpan

NOT_LOGGED = -1
"""The enrolment and revocation index of a record read from the device tables."""

_DEVICES = (
    "SELECT device_id, statement, last_valid_seq, revoked_at IS NOT NULL AS revoked, logged_seq "
    "FROM devices WHERE device_id = ANY($1::text[])"
)
_KEYS = (
    "SELECT device_id, key_id, public_key, from_seq FROM device_keys WHERE device_id = ANY($1::text[]) "
    "ORDER BY device_id, from_seq"
)


@dataclass(frozen=True, slots=True)
class StoredDevice:
    record: DeviceRecord
    logged_seq: int
    """The sequence number of the device's last logged reading (0: none yet)."""


async def read_devices(
    conn: asyncpg.Connection, device_ids: Collection[str], *, for_update: bool = False
) -> dict[str, StoredDevice]:
    """The enrolled devices among ``device_ids``; ``for_update`` locks their ``devices`` rows."""
    wanted = list(device_ids)
    rows = await conn.fetch(_DEVICES + (" FOR UPDATE" if for_update else ""), wanted)
    spans: dict[str, list[KeySpan]] = {}
    for k in await conn.fetch(_KEYS, wanted):
        spans.setdefault(k["device_id"], []).append(
            KeySpan(k["from_seq"], bytes(k["public_key"]), bytes(k["key_id"]))
        )
    return {
        r["device_id"]: StoredDevice(_record(r, spans.get(r["device_id"], [])), r["logged_seq"]) for r in rows
    }


def _record(row: asyncpg.Record, keys: list[KeySpan]) -> DeviceRecord:
    record = DeviceRecord(decode_enrolment_statement(bytes(row["statement"])), NOT_LOGGED, keys)
    if row["revoked"]:
        record.revocation_index = NOT_LOGGED
        record.last_valid_seq = row["last_valid_seq"]
    return record
