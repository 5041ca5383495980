"""Ingest: check each MQTT message and store accepted readings, in batches.

For each message, in order: size limit, topic, decoding, topic matches the
reading's device, device enrolled and not revoked (beyond its last valid
sequence number), asset, key for that sequence number, signature, device time
not in the future beyond ``max_clock_skew``.  A refused message is quarantined
with its reason; an accepted one is inserted into ``readings``, where the
database's unique (device, seq) key sorts out the rest:

* the same bytes again (a device replaying its outbox): a duplicate — counted,
  not stored twice, and the device is sent its receipt again;
* different bytes for a sequence number already used: an equivocation — kept in
  quarantine as evidence, never logged.

Chain order is the sequencer's job (several ingest processes may receive one
device's readings out of order).  A batch is acknowledged to the broker only
after it is committed, so a crash before that gets it redelivered.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import asyncpg

from attest_core.device import decode_enrolment_statement
from attest_core.errors import AttestError
from attest_core.reading import MAX_ENVELOPE_SIZE, decode_envelope, decode_payload, reading_hash
from attest_core.registry import DeviceRecord, KeySpan, Registry
from attest_core.topics import device_of_readings_topic
from gateway.config import Settings
from gateway.quarantine import Refusal, quarantine_many

log = logging.getLogger("gateway.ingest")


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    mid: int = 0
    """The MQTT packet id, for the acknowledgement."""
    received_at: float = 0.0
    connection: int = 0
    """The MQTT connection that delivered it (the link numbers them from 1): the only one on
    which it may be acknowledged. 0: none."""
    size: int = 0
    """0, or the payload's real size when ``payload`` holds only its first bytes (an MQTT
    packet over the link's size limit, never held whole)."""


@dataclass(frozen=True, slots=True)
class Accepted:
    device_id: str
    seq: int
    asset_id: str
    time_ms: int
    energy_mwh: int
    payload_hash: bytes
    envelope: bytes


@dataclass
class BatchResult:
    accepted: int = 0
    duplicates: int = 0
    refused: dict[str, int] = field(default_factory=dict)

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1


class DeviceCache:
    """The registry's device records, loaded from the database on demand.

    A record is re-read when it is older than ``ttl`` seconds, so a revocation
    or key rotation made by another process takes effect within that time
    (the API process also invalidates its own cache at once).
    """

    def __init__(self, ttl: float = 2.0) -> None:
        self.registry = Registry()
        self.loaded: dict[str, float] = {}
        self.ttl = ttl

    def invalidate(self, device_id: str | None = None) -> None:
        if device_id is None:
            self.loaded.clear()
        else:
            self.loaded.pop(device_id, None)

    async def refresh(self, conn: asyncpg.Connection, device_ids: set[str]) -> None:
        now = time.monotonic()
        stale = [d for d in device_ids if now - self.loaded.get(d, -1e9) > self.ttl]
        if not stale:
            return
        rows = await conn.fetch(
            "SELECT device_id, statement, last_valid_seq, revoked_at IS NOT NULL AS revoked "
            "FROM devices WHERE device_id = ANY($1)",
            stale,
        )
        keys = await conn.fetch(
            "SELECT device_id, key_id, public_key, from_seq FROM device_keys WHERE device_id = ANY($1) "
            "ORDER BY device_id, from_seq",
            stale,
        )
        spans: dict[str, list[KeySpan]] = {}
        for k in keys:
            spans.setdefault(k["device_id"], []).append(
                KeySpan(k["from_seq"], bytes(k["public_key"]), bytes(k["key_id"]))
            )
        for device_id in stale:
            self.registry.devices.pop(device_id, None)
            self.loaded.pop(device_id, None)  # an unknown device is asked for again next time
        for r in rows:
            self.loaded[r["device_id"]] = now
            record = DeviceRecord(decode_enrolment_statement(bytes(r["statement"])), -1)
            record.keys = spans.get(r["device_id"], [])
            if r["revoked"]:
                record.last_valid_seq = r["last_valid_seq"]
                record.revocation_index = -1
            self.registry.devices[r["device_id"]] = record


def check(message: Message, registry: Registry, now_ms: int, max_skew_ms: int) -> Accepted | Refusal:
    """Decide one message (pure: the registry must hold the device if it is enrolled)."""
    payload = message.payload
    size = max(len(payload), message.size)
    if size > MAX_ENVELOPE_SIZE:
        return Refusal("too_large", f"message of {size} bytes exceeds the {MAX_ENVELOPE_SIZE}-byte limit")
    topic_device = device_of_readings_topic(message.topic)
    if topic_device is None:
        return Refusal("bad_topic", f"topic {message.topic!r} is not attest/v1/<device id>/readings")
    try:
        envelope = decode_envelope(payload)
        reading = decode_payload(envelope.payload)
    except AttestError as exc:
        return Refusal(exc.code, str(exc), topic_device)
    device_id, seq = reading.device_id, reading.seq
    if device_id != topic_device:
        return Refusal(
            "topic_mismatch", f"reading of device {device_id} published on the topic of device {topic_device}",
            topic_device, seq,
        )  # fmt: skip
    record = registry.get(device_id)
    if record is not None and record.disowns(seq):
        return Refusal(
            "revoked_device",
            f"device {device_id} is revoked: no reading after {record.last_valid_seq} is accepted",
            device_id, seq,
        )  # fmt: skip
    try:
        registry.check_reading(envelope, reading)
    except AttestError as exc:
        return Refusal(exc.code, str(exc), device_id, seq)
    if reading.time_ms > now_ms + max_skew_ms:
        return Refusal(
            "future_time",
            f"reading {seq} of device {device_id} is dated {(reading.time_ms - now_ms) / 1000:.0f} s in the future "
            f"(more than the allowed clock skew of {max_skew_ms / 1000:.0f} s)",
            device_id, seq,
        )  # fmt: skip
    return Accepted(
        device_id,
        seq,
        reading.asset_id,
        reading.time_ms,
        reading.energy_mwh,
        reading_hash(envelope.payload),
        payload,
    )


_INSERT = (
    "INSERT INTO readings (device_id, seq, asset_id, time_ms, energy_mwh, payload_hash, envelope) "
    "SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::bytea[], $7::bytea[]) "
    "ON CONFLICT (device_id, seq) DO NOTHING RETURNING device_id, seq"
)


async def store_batch(
    conn: asyncpg.Connection, messages: list[Message], cache: DeviceCache, settings: Settings
) -> BatchResult:
    """Check and store a batch in one transaction. Raises only on database trouble."""
    result = BatchResult()
    wanted = {d for m in messages if (d := device_of_readings_topic(m.topic)) is not None}
    await cache.refresh(conn, wanted)
    now_ms = int(time.time() * 1000)
    skew_ms = int(settings.max_clock_skew * 1000)
    accepted: dict[tuple[str, int], tuple[Message, Accepted]] = {}
    refused: list[tuple[str, bytes, Refusal]] = []
    repeats: list[tuple[Message, Accepted]] = []
    for message in messages:
        outcome = check(message, cache.registry, now_ms, skew_ms)
        if isinstance(outcome, Refusal):
            refused.append((message.topic, message.payload, outcome))
            result.refuse(outcome.reason)
            continue
        key = (outcome.device_id, outcome.seq)
        if key in accepted:
            repeats.append((message, outcome))
        else:
            accepted[key] = (message, outcome)

    async with conn.transaction():
        inserted: set[tuple[str, int]] = set()
        if accepted:
            items = [a for _, a in accepted.values()]
            rows = await conn.fetch(
                _INSERT,
                [a.device_id for a in items],
                [a.seq for a in items],
                [a.asset_id for a in items],
                [a.time_ms for a in items],
                [a.energy_mwh for a in items],
                [a.payload_hash for a in items],
                [a.envelope for a in items],
            )
            inserted = {(r["device_id"], r["seq"]) for r in rows}
        conflicts = [v for k, v in accepted.items() if k not in inserted] + repeats
        if conflicts:
            existing = {
                (r["device_id"], r["seq"]): bytes(r["payload_hash"])
                for r in await conn.fetch(
                    "SELECT r.device_id, r.seq, r.payload_hash FROM readings r "
                    "JOIN unnest($1::text[], $2::bigint[]) AS c(d, s) ON r.device_id = c.d AND r.seq = c.s",
                    [a.device_id for _, a in conflicts],
                    [a.seq for _, a in conflicts],
                )
            }
            due: set[str] = set()
            for message, a in conflicts:
                known = existing.get((a.device_id, a.seq))
                if known == a.payload_hash:
                    result.duplicates += 1
                    due.add(a.device_id)
                else:
                    refusal = Refusal(
                        "equivocation",
                        f"device {a.device_id} signed two different readings with sequence number {a.seq}",
                        a.device_id,
                        a.seq,
                    )
                    refused.append((message.topic, message.payload, refusal))
                    result.refuse("equivocation")
                    log.warning("EQUIVOCATION by device %s at seq %d: kept as evidence", a.device_id, a.seq)
            if due:
                await conn.executemany(
                    "INSERT INTO receipt_due (device_id) VALUES ($1) ON CONFLICT DO NOTHING",
                    [(d,) for d in due],
                )
        await quarantine_many(conn, refused)
    result.accepted = len(inserted)
    return result
