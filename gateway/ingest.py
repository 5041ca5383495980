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
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import asyncpg

from attest_core.errors import AttestError
from attest_core.metercheck import check_meter_reading
from attest_core.reading import MAX_ENVELOPE_SIZE, Status, decode_envelope, decode_payload, reading_hash
from attest_core.registry import Registry
from attest_core.topics import device_of_readings_topic
from gateway.config import Settings
from gateway.device_records import read_devices
from gateway.devices import REGISTRY_LOCK
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
    unsynced: bool
    """The reading's clock was not synchronised: it proves no edge of a claim period."""


@dataclass
class BatchResult:
    accepted: int = 0
    duplicates: int = 0
    refused: dict[str, int] = field(default_factory=dict)

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def merge(self, other: BatchResult) -> BatchResult:
        refused = dict(self.refused)
        for reason, count in other.refused.items():
            refused[reason] = refused.get(reason, 0) + count
        return BatchResult(self.accepted + other.accepted, self.duplicates + other.duplicates, refused)


class DeviceCache:
    """The registry's device records, loaded from the database on demand.

    Keys and revocations are re-read whenever ``registry_state.version`` moved (every key
    rotation and revocation bumps it, see gateway.devices.change_registry); a record is also
    re-read when older than ``ttl`` seconds, for ``next_seq``, the sequence number the
    device's chain expects next (its last logged reading + 1, as last read).
    """

    def __init__(self, ttl: float = 2.0) -> None:
        self.registry = Registry()
        self.next_seq: dict[str, int] = {}
        self.loaded: dict[str, float] = {}
        self.ttl = ttl
        self.version: int | None = None

    def invalidate(self, device_id: str | None = None) -> None:
        if device_id is None:
            self.loaded.clear()
        else:
            self.loaded.pop(device_id, None)

    async def sync(self, conn: asyncpg.Connection) -> bool:
        """Forget every record if the registry changed since they were read; True if it did."""
        version = await conn.fetchval("SELECT version FROM registry_state")
        if version == self.version:
            return False
        self.invalidate()
        self.version = version
        return True

    async def refresh(self, conn: asyncpg.Connection, device_ids: set[str]) -> None:
        now = time.monotonic()
        stale = [d for d in device_ids if now - self.loaded.get(d, -1e9) > self.ttl]
        if not stale:
            return
        stored = await read_devices(conn, stale)
        for device_id in stale:
            self.registry.devices.pop(device_id, None)
            self.next_seq.pop(device_id, None)
            self.loaded.pop(device_id, None)  # an unknown device is asked for again next time
        for device_id, device in stored.items():
            self.loaded[device_id] = now
            self.registry.devices[device_id] = device.record
            self.next_seq[device_id] = device.logged_seq + 1


def check(
    message: Message,
    registry: Registry,
    now_ms: int,
    max_skew_ms: int,
    next_seq: Mapping[str, int] | None = None,
    max_ahead: int = 0,
) -> Accepted | Refusal:
    """Decide one message (pure: the registry must hold the device if it is enrolled).

    With ``max_ahead``, a reading ``max_ahead`` or more beyond its device's ``next_seq`` is
    turned away before its signature is checked (the cheap checks come first).
    """
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
    if max_ahead and next_seq is not None:
        expected = next_seq.get(device_id)
        if expected is not None and seq - expected >= max_ahead:
            return Refusal(
                "too_far_ahead",
                f"reading {seq} of device {device_id} is {seq - expected} beyond the next one its chain "
                f"needs ({expected}); the limit is {max_ahead - 1}: send the readings in between first",
                device_id, seq,
            )  # fmt: skip
    try:
        registry.check_reading(envelope, reading)
    except AttestError as exc:
        return Refusal(exc.code, str(exc), device_id, seq)
    if reading.extensions and record is not None:
        # A meter-signed record is checked before the reading is logged (attest_core.metercheck):
        # a wrong entry would be in the log forever.  Pagination, which needs the records before,
        # is the verifier's and the verdict's.
        _, problem = check_meter_reading(reading, record.statement.meter_key)
        if problem is not None and problem.fatal:
            return Refusal(problem.code, f"device {device_id}, {problem.message}", device_id, seq)
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
        bool(reading.status & Status.TIME_UNSYNCED),
    )


_INSERT = (
    "INSERT INTO readings (device_id, seq, asset_id, time_ms, energy_mwh, payload_hash, envelope, unsynced) "
    "SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::bytea[], $7::bytea[], "
    "$8::boolean[]) ON CONFLICT (device_id, seq) DO NOTHING RETURNING device_id, seq"
)


async def store_batch(
    conn: asyncpg.Connection, messages: list[Message], cache: DeviceCache, settings: Settings
) -> BatchResult:
    """Check and store a batch in one transaction. Raises only on database trouble.

    The messages are checked before the transaction (the signature checks are most of a
    batch's time, and a long transaction holds back the database's clean-up of the readings
    the sequencer updates), then stored under the registry lock, taken shared: if a key
    rotation or revocation committed since its records were read, the batch is checked again
    under the lock (one query per batch tells: registry_state.version).
    """
    wanted = {d for m in messages if (d := device_of_readings_topic(m.topic)) is not None}
    await cache.refresh(conn, wanted)
    checked = _check_all(messages, cache, settings)
    async with conn.transaction():
        # Shared with other batches, exclusive to a key rotation or revocation: the records this
        # batch is checked against stay the registry's until it commits (gateway.devices).
        await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", REGISTRY_LOCK)
        if await cache.sync(conn):
            await cache.refresh(conn, wanted)
            checked = _check_all(messages, cache, settings)
        return await _store_checked(conn, checked)


@dataclass
class _Checked:
    """A batch's messages as checked: accepted (the first of each (device, seq)), repeated within
    the batch, and refused."""

    result: BatchResult
    accepted: dict[tuple[str, int], tuple[Message, Accepted]]
    repeats: list[tuple[Message, Accepted]]
    refused: list[tuple[str, bytes, Refusal]]
    garbage_bytes: int


def _check_all(messages: list[Message], cache: DeviceCache, settings: Settings) -> _Checked:
    result = BatchResult()
    now_ms = int(time.time() * 1000)
    skew_ms = int(settings.max_clock_skew * 1000)
    accepted: dict[tuple[str, int], tuple[Message, Accepted]] = {}
    refused: list[tuple[str, bytes, Refusal]] = []
    repeats: list[tuple[Message, Accepted]] = []
    ahead: dict[str, tuple[Message, Refusal, int]] = {}
    for message in messages:
        outcome = check(message, cache.registry, now_ms, skew_ms, cache.next_seq, settings.max_readings_ahead)
        if isinstance(outcome, Refusal):
            result.refuse(outcome.reason)
            if outcome.reason == "too_far_ahead" and outcome.device_id is not None:
                # a flood: one row per device and batch says it all (the device still holds them)
                first = ahead.get(outcome.device_id)
                ahead[outcome.device_id] = (
                    (message, outcome, 1) if first is None else (*first[:2], first[2] + 1)
                )
                continue
            refused.append((message.topic, message.payload, outcome))
            continue
        key = (outcome.device_id, outcome.seq)
        if key in accepted:
            repeats.append((message, outcome))
        else:
            accepted[key] = (message, outcome)
    for message, refusal, count in ahead.values():
        if count > 1:
            refusal = replace(refusal, detail=f"{refusal.detail} ({count} such readings in one batch)")
        refused.append((message.topic, message.payload, refusal))
    return _Checked(result, accepted, repeats, refused, settings.quarantine_garbage_bytes)


async def _store_checked(conn: asyncpg.Connection, checked: _Checked) -> BatchResult:
    result, accepted, repeats = checked.result, checked.accepted, checked.repeats
    refused = list(checked.refused)
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
            [a.unsynced for a in items],
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
    await quarantine_many(conn, refused, checked.garbage_bytes)
    result.accepted = len(inserted)
    return result
