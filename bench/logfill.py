"""Growing the benchmark's big log the way the gateway grows it, without MQTT in the way.

The fleet is enrolled with ``gateway.devices.enrol``; its signed readings are inserted into ``readings`` with COPY, a round at a time
(``round`` readings per device), exactly as ingest leaves them (signature
checked, ``log_index`` null); after each round the gateway's own
``gateway.sequencer.Sequencer.step`` runs in this process, on a connection
holding the sequencer's advisory lock, and appends them.  So the log's
entries, nodes, chain positions and checkpoints are what the gateway writes,
without MQTT (measured separately) in the way.  A ``VACUUM ANALYZE`` follows
(what autovacuum does to a table after a million updates), then a gateway
process serves the API over that database.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bench.env import ORIGIN, say
from bench.fleet import DeviceReadings, FleetSpec
from gateway import lease, logkey
from gateway.config import Settings
from gateway.sequencer import Sequencer


@dataclass
class LogSizes:
    round: int = 5
    proof_requests: int = 2000
    portfolio_assets: int = 1000
    verifier_readings: int = 100_000
    checkpoint_every: int = 100_000


async def fill_log(
    dsn: str, spec: FleetSpec, fleet: list[DeviceReadings], sizes: LogSizes, key_file: Path
) -> dict[str, Any]:
    signer = logkey.load_key_file(key_file)
    per_round = max(1, sizes.round)
    settings = Settings(database_url=dsn, origin=ORIGIN, sequencer_batch=spec.devices * per_round)
    conn = await asyncpg.connect(dsn, command_timeout=600)
    try:
        # a TTL longer than any step here: the benchmark's steps are far bigger than a gateway's
        held = await lease.acquire(conn, lease.holder_id(), 3600.0)
        if held is None:
            raise RuntimeError("another sequencer holds the lease on the benchmark's database")
        sequencer = Sequencer(settings, signer, None, lease=held)
        await sequencer.load(conn)
        while (await sequencer.step(conn)).entries:
            pass  # the enrolments
        await sequencer.checkpoint(conn)
        columns = ["device_id", "seq", "asset_id", "time_ms", "energy_mwh", "payload_hash", "envelope"]
        copy_s = step_s = 0.0
        last_cp = sequencer.size
        next_say = time.monotonic() + 5
        total = spec.devices * spec.readings
        for lo in range(0, spec.readings, per_round):
            hi = min(lo + per_round, spec.readings)
            records = [
                (
                    spec.device_id(d), k + 1, spec.asset_id(d), spec.time_ms(k),
                    fleet[d].energies[k], fleet[d].hashes[k], fleet[d].envelopes[k],
                )
                for d in range(spec.devices)
                for k in range(lo, hi)
            ]  # fmt: skip
            t0 = time.perf_counter()
            await conn.copy_records_to_table("readings", records=records, columns=columns)
            t1 = time.perf_counter()
            while (await sequencer.step(conn)).readings:
                pass
            step_s += time.perf_counter() - t1
            copy_s += t1 - t0
            if sequencer.size - last_cp >= sizes.checkpoint_every:
                await sequencer.checkpoint(conn)
                last_cp = sequencer.size
            if time.monotonic() >= next_say:
                done = hi * spec.devices
                say(
                    f"log: {sequencer.size:,} entries ({done:,} of {total:,} readings appended by the sequencer)"
                )
                next_say = time.monotonic() + 5
        await sequencer.checkpoint(conn)
        # A bulk fill leaves a million dead row versions (the sequencer UPDATEs log_index) and no
        # planner statistics; autovacuum would catch up in the middle of the proof measurements.
        t0 = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")
        vacuum_s = time.perf_counter() - t0
        return {
            "vacuum_analyze_s": round(vacuum_s, 2),
            "size": sequencer.size,
            "copy_s": round(copy_s, 2),
            "sequencer_s": round(step_s, 2),
            "sequencer_entries_per_s": round(total / max(step_s, 1e-9), 1),
        }
    finally:
        await conn.close()
