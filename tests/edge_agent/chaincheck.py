"""Read an agent's state database from outside and check its chain, reading by reading."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from attest_core.counters import consecutive_mismatch, first_mismatch
from attest_core.reading import Counters, Reading, decode_envelope, reading_hash


def outbox(db: Path, device_id: str) -> dict[int, bytes]:
    """seq -> envelope bytes, read with a separate connection (as a restarted agent would)."""
    conn = sqlite3.connect(db)
    try:
        return {
            seq: bytes(env)
            for seq, env in conn.execute(
                "SELECT seq, envelope FROM outbox WHERE device_id = ? ORDER BY seq", (device_id,)
            )
        }
    finally:
        conn.close()


def chain_counters(db: Path, device_id: str) -> Counters:
    """The v2 counters the agent keeps for the device's next reading."""
    conn = sqlite3.connect(db)
    try:
        row = conn.execute(
            "SELECT fault_readings, powerups, unsynced_readings, max_interval_power_mw FROM chain "
            "WHERE device_id = ?",
            (device_id,),
        ).fetchone()
    finally:
        conn.close()
    return Counters(*row)


def chain_row(db: Path, device_id: str) -> tuple[int, bytes, int | None, int | None]:
    conn = sqlite3.connect(db)
    try:
        row = conn.execute(
            "SELECT next_seq, prev_hash, last_time_ms, last_energy_mwh FROM chain WHERE device_id = ?",
            (device_id,),
        ).fetchone()
    finally:
        conn.close()
    return int(row[0]), bytes(row[1]), row[2], row[3]


def check_chain(db: Path, device_id: str, public_key: bytes, anchor: bytes) -> list[Reading]:
    """Every reading in the outbox: contiguous from 1, linked, signed, each one's v2 counters
    following from the one before; the chain row matches the last."""
    rows = outbox(db, device_id)
    seqs = sorted(rows)
    assert seqs == list(range(1, len(seqs) + 1)), f"sequence numbers not contiguous from 1: {seqs[:5]}..."
    readings = []
    prev_hash = anchor
    prev: Reading | None = None
    for seq in seqs:
        envelope = decode_envelope(rows[seq])
        envelope.verify(public_key)
        reading = envelope.reading()
        assert reading.seq == seq
        assert reading.prev_hash == prev_hash, f"reading {seq} does not link to reading {seq - 1}"
        assert reading.version == 2, f"reading {seq} is not a v2 payload"
        if prev is not None:
            assert reading.time_ms >= prev.time_ms, f"time went backwards at {seq}"
            assert reading.energy_mwh >= prev.energy_mwh, f"register went backwards at {seq}"
            assert consecutive_mismatch(prev, reading) is None, consecutive_mismatch(prev, reading)
        else:
            assert first_mismatch(reading) is None, first_mismatch(reading)
        prev_hash = reading_hash(envelope.payload)
        prev = reading
        readings.append(reading)
    next_seq, stored_hash, last_time, last_energy = chain_row(db, device_id)
    assert next_seq == len(seqs) + 1, "the chain state is not right after the last stored reading"
    assert stored_hash == prev_hash, "the chain state's hash is not the last reading's"
    if prev is not None:
        assert (last_time, last_energy) == (prev.time_ms, prev.energy_mwh)
        assert chain_counters(db, device_id) == prev.counters, (
            "the stored counters are not the last reading's"
        )
    return readings
