"""Ingest end to end: pre-signed readings -> Mosquitto -> gateway process(es) -> log -> signed checkpoint.

One run: a fresh database with the fleet enrolled, a fresh Mosquitto (the
project's queue settings), ``gateways`` gateway processes (several share the
subscription with ``$share/bench/...``; one of them is the sequencer), and the
publisher process.  The run ends when every reading is in a signed checkpoint:
``log_index`` set and below the size of the latest checkpoint.

* throughput: readings / (signed_at of the checkpoint that covers the last one
  - the first publish);
* latency of each reading: signed_at of the first checkpoint whose size
  exceeds its log index - the moment the publisher handed it to the socket;
* lost: published and acknowledged by the broker but not logged; duplicated:
  reading entries in the log beyond the distinct (device, seq) logged.
"""

from __future__ import annotations

import array
import asyncio
import bisect
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from attest_core.entries import reading_entry_bytes
from attest_core.merkle import leaf_hash, root_from_leaf_hashes
from attest_core.topics import readings_topic
from bench import profile
from bench.env import Postgres, bench_gateway, cpu_seconds, say
from bench.fleet import DeviceReadings, FleetSpec, enrol_fleet_sync
from bench.publisher import write_frames
from stack.processes import REPO, GatewayProcess, MosquittoProcess
from stack.system import Tokens

TABLES = (
    "readings",
    "log_nodes",
    "entries",
    "checkpoints",
    "devices",
    "device_keys",
    "pending_entries",
    "quarantine",
    "receipt_due",
    "claims",
    "cosignatures",
    "log_state",
)


@dataclass
class IngestRun:
    label: str
    gateways: int
    rate: float
    """Offered rate (readings/s); 0: as fast as the broker takes them."""
    count: int
    profile: bool = False


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def message_order(spec: FleetSpec, count: int) -> list[tuple[int, int]]:
    """(device, reading) pairs in publishing order: every device's next reading, device after device."""
    order = [(d, k) for k in range(spec.readings) for d in range(spec.devices)]
    return order[:count]


async def table_bytes(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT c.relname, pg_total_relation_size(c.oid) AS bytes FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname = ANY($1::text[])",
        list(TABLES),
    )
    return {r["relname"]: int(r["bytes"]) for r in rows}


async def _backend_pids(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return [r["pid"] for r in rows]
    finally:
        await conn.close()


async def _progress(conn: asyncpg.Connection) -> tuple[int, int, int]:
    row = await conn.fetchrow(
        "SELECT count(*) AS stored, count(log_index) AS logged, "
        "count(*) FILTER (WHERE log_index < (SELECT coalesce(max(size), 0) FROM checkpoints)) AS sealed "
        "FROM readings"
    )
    return int(row["stored"]), int(row["logged"]), int(row["sealed"])


def run_ingest(
    pg: Postgres,
    spec: FleetSpec,
    fleet: list[DeviceReadings],
    workdir: Path,
    run: IngestRun,
    tokens: Tokens,
    settings: dict[str, str],
    timeout: float,
    keep_db: bool = False,
) -> dict[str, Any]:
    wd = workdir / run.label
    wd.mkdir(parents=True, exist_ok=True)
    say(f"ingest {run.label}: fresh database, {spec.devices} devices enrolled (gateway.devices.enrol)")
    dsn = pg.create(run.label)
    enrol_fleet_sync(dsn, spec)
    order = message_order(spec, run.count)
    frames = wd / "messages.bin"
    write_frames(frames, [(readings_topic(spec.device_id(d)), fleet[d].envelopes[k]) for d, k in order])
    broker = MosquittoProcess(wd / "mosquitto").start()
    gateways: list[GatewayProcess] = []
    recording: profile.Recording | None = None
    publisher: subprocess.Popen[str] | None = None
    try:
        share = {"mqtt_share_group": "bench"} if run.gateways > 1 else {}
        for n in range(run.gateways):
            gateways.append(
                bench_gateway(dsn, broker.url, wd, f"{run.label}-{n}", tokens, **settings, **share).start()
            )
        # the enrolments are logged and sealed before the clock starts
        if not _wait_sealed_size(dsn, spec.devices, 60):
            raise RuntimeError(f"the enrolments were not checkpointed; see {wd}")
        say(
            f"ingest {run.label}: {len(gateways)} gateway process(es) ready; publishing {len(order)} readings "
            + ("as fast as the broker takes them" if run.rate <= 0 else f"at {run.rate:,.0f}/s")
        )
        go = wd / "go"
        times_path = wd / "times.bin"
        publisher = subprocess.Popen(  # noqa: S603
            [
                sys.executable, "-m", "bench.publisher", "--port", str(broker.port), "--input", str(frames),
                "--times", str(times_path), "--rate", str(run.rate), "--go", str(go),
                "--client-id", f"bench-publisher-{run.label}",
            ],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert publisher.stdout is not None
        ready = json.loads(publisher.stdout.readline() or "{}")
        if ready.get("ready") != len(order):
            raise RuntimeError(f"the publisher did not start: {ready}")
        backends = asyncio.run(_backend_pids(dsn))
        watched = {
            **{f"gateway {g.name}": g.pid for g in gateways},
            "mosquitto": broker.proc.pid if broker.proc else 0,
            **{f"postgres {pid}": pid for pid in backends},
        }
        cpu0 = {name: cpu_seconds(pid) for name, pid in watched.items()}
        if run.profile:
            recording = profile.record(gateways[0].pid, wd / "profile.txt")
            if recording is None:
                say("py-spy is not installed (pip install py-spy): no profile")
        wall0 = time.monotonic()
        go.touch()
        sealed = asyncio.run(_watch(dsn, len(order), timeout, run.label))
        wall = time.monotonic() - wall0
        out, _ = publisher.communicate(timeout=150)
        summary = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        # backends the gateways opened during the run count from zero
        for pid in asyncio.run(_backend_pids(dsn)):
            watched.setdefault(f"postgres {pid}", pid)
        cpu = {name: cpu_seconds(pid) - cpu0.get(name, 0.0) for name, pid in watched.items()}
        cpu["publisher"] = float(summary.get("cpu_s", 0.0))
        profile_summary = None
        if recording is not None:
            raw = recording.stop()
            if raw is not None:
                profile_summary = profile.summarise(raw)
                profile_summary["raw"] = str(raw)
        times = array.array("d")
        with open(times_path, "rb") as fh:
            times.frombytes(fh.read())
        redelivered = sum(g.metric("iot_attest_readings_duplicates_total") for g in gateways)
        accepted_by = [g.metric("iot_attest_readings_accepted_total") for g in gateways]
        result = asyncio.run(_analyse(dsn, spec, fleet, order, times, summary))
        result.update(
            label=run.label,
            gateways=run.gateways,
            offered_rate=run.rate,
            sealed_when_done=sealed,
            wall_s=round(wall, 2),
            publisher=summary,
            redelivered_by_broker=int(redelivered),
            accepted_per_gateway=[int(a) for a in accepted_by],
            cpu_s=_cpu_groups(cpu),
            cpu_ms_per_reading=_per_reading(cpu, result["logged"]),
        )
        if profile_summary is not None:
            result["profile"] = profile_summary
        say(
            f"ingest {run.label}: {result['logged']}/{result['sent']} logged, "
            f"{result['readings_per_s']:,.0f} readings/s end to end, checkpoint latency "
            f"p50 {result['latency_p50_s']:.2f} s / p99 {result['latency_p99_s']:.2f} s"
        )
        return result
    finally:
        if recording is not None:
            recording.stop()
        if publisher is not None and publisher.poll() is None:
            publisher.kill()
            publisher.wait(5)
        for g in gateways:
            g.stop()
        broker.stop()
        if not keep_db:
            pg.drop(dsn)


def _cpu_groups(cpu: dict[str, float]) -> dict[str, float]:
    groups: dict[str, float] = {}
    for name, seconds in cpu.items():
        key = "postgres" if name.startswith("postgres") else name
        groups[key] = round(groups.get(key, 0.0) + seconds, 2)
    return groups


def _per_reading(cpu: dict[str, float], logged: int) -> dict[str, float]:
    groups = _cpu_groups(cpu)
    return {k: round(1000 * v / max(logged, 1), 4) for k, v in groups.items()}


def _wait_sealed_size(dsn: str, size: int, seconds: float) -> bool:
    async def go() -> bool:
        conn = await asyncpg.connect(dsn)
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if (await conn.fetchval("SELECT coalesce(max(size), 0) FROM checkpoints")) >= size:
                    return True
                await asyncio.sleep(0.1)
            return False
        finally:
            await conn.close()

    return asyncio.run(go())


async def _watch(dsn: str, count: int, timeout: float, label: str) -> int:
    """Wait until ``count`` readings are sealed, or nothing moved for ``timeout`` seconds."""
    conn = await asyncpg.connect(dsn)
    try:
        last_change = time.monotonic()
        last = (-1, -1, -1)
        next_say = time.monotonic() + 2
        while True:
            state = await _progress(conn)
            now = time.monotonic()
            if state != last:
                last, last_change = state, now
            if state[2] >= count:
                return state[2]
            if now - last_change > timeout:
                say(f"ingest {label}: no progress for {timeout:.0f} s; giving up at {state}")
                return state[2]
            if now >= next_say:
                say(
                    f"ingest {label}: stored {state[0]:,}  logged {state[1]:,}  in a checkpoint {state[2]:,} / {count:,}"
                )
                next_say = now + 2
            await asyncio.sleep(0.25)
    finally:
        await conn.close()


async def _analyse(
    dsn: str,
    spec: FleetSpec,
    fleet: list[DeviceReadings],
    order: list[tuple[int, int]],
    times: array.array[float],
    summary: dict[str, Any],
) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT device_id, seq, log_index, envelope, extract(epoch FROM received_at) AS received "
            "FROM readings"
        )
        checkpoints = await conn.fetch(
            "SELECT size, root_hash, extract(epoch FROM signed_at) AS t FROM checkpoints ORDER BY id"
        )
        log_size = await conn.fetchval("SELECT size FROM log_state")
        other_entries = await conn.fetchval("SELECT count(*) FROM entries")
        entry_data = await conn.fetch("SELECT idx, data FROM entries")
        quarantined = await conn.fetchval("SELECT coalesce(sum(count), 0) FROM quarantine")
        sizes = await table_bytes(conn)
    finally:
        await conn.close()
    position = {(spec.device_id(d), k + 1): i for i, (d, k) in enumerate(order)}
    cp_sizes = [int(c["size"]) for c in checkpoints]
    cp_times = [float(c["t"]) for c in checkpoints]
    latencies: list[float] = []
    logged = 0
    covered_at = 0.0
    received_last = 0.0
    wrong_bytes = 0
    for r in rows:
        i = position.get((r["device_id"], r["seq"]))
        if i is None or r["log_index"] is None:
            continue
        d, k = order[i]
        if bytes(r["envelope"]) != fleet[d].envelopes[k]:
            wrong_bytes += 1
        logged += 1
        received_last = max(received_last, float(r["received"]))
        j = bisect.bisect_right(cp_sizes, int(r["log_index"]))
        if j < len(cp_sizes):
            latencies.append(cp_times[j] - times[i])
            covered_at = max(covered_at, cp_times[j])
    sent = len(order)
    distinct = len({(r["device_id"], r["seq"]) for r in rows if r["log_index"] is not None})
    reading_leaves = int(log_size) - int(other_entries)
    first = min(times) if len(times) else 0.0
    elapsed = covered_at - first if covered_at else float("nan")
    # the log's content is what was sent: recompute the root of the last checkpoint
    leaves: dict[int, bytes] = {int(e["idx"]): leaf_hash(bytes(e["data"])) for e in entry_data}
    for r in rows:
        if r["log_index"] is not None:
            leaves[int(r["log_index"])] = leaf_hash(reading_entry_bytes(bytes(r["envelope"])))
    last_size = cp_sizes[-1] if cp_sizes else 0
    root_ok = sorted(leaves) == list(range(int(log_size))) and root_from_leaf_hashes(
        [leaves[i] for i in range(last_size)]
    ) == bytes(checkpoints[-1]["root_hash"])
    readings_in_db = max(len(rows), 1)
    return {
        "sent": sent,
        "acked_by_broker": int(summary.get("acked", 0)),
        "logged": logged,
        "lost": sent - logged,
        "duplicated": reading_leaves - distinct,
        "quarantined": int(quarantined),
        "envelopes_altered": wrong_bytes,
        "root_recomputed_ok": root_ok,
        "log_size": int(log_size),
        "checkpoints": len(cp_sizes),
        "readings_per_s": sent / elapsed if elapsed and elapsed > 0 else 0.0,
        "elapsed_s": round(elapsed, 3),
        "publish_rate": round(float(summary.get("publish_rate", 0.0)), 1),
        "stored_rate": round(sent / max(received_last - first, 1e-9), 1),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p99_s": percentile(latencies, 99),
        "latency_max_s": max(latencies) if latencies else float("nan"),
        "latency_mean_s": statistics.fmean(latencies) if latencies else float("nan"),
        "db_bytes": sum(sizes.values()),
        "db_bytes_per_reading": sum(sizes.values()) / readings_in_db,
        "db_tables": sizes,
    }
