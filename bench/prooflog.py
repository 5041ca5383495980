"""A log of a million entries, its proofs over HTTP, and the verifier on the gateway's bundles.

Growing the log: the fleet is enrolled with ``gateway.devices.enrol``; its
signed readings are inserted into ``readings`` with COPY, a round at a time
(``round`` readings per device), exactly as ingest leaves them (signature
checked, ``log_index`` null); after each round the gateway's own
``gateway.sequencer.Sequencer.step`` runs in this process, on a connection
holding the sequencer's advisory lock, and appends them.  So the log's
entries, nodes, chain positions and checkpoints are what the gateway writes,
without MQTT (measured separately) in the way.  A ``VACUUM ANALYZE`` follows
(what autovacuum does to a table after a million updates), then a gateway
process serves the API over that database.

Reaching 10 million entries: the same method (``--log-devices``,
``--log-readings``); the time is signing (both cores) plus the sequencer's
append rate, both measured and extrapolated in the results
(``log_fill_estimate_10m_s``).
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import math
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
import httpx

from attest_core.checkpoint import open_checkpoint
from attest_core.merkle import inclusion_plan, leaf_hash, verify_consistency, verify_inclusion
from attest_core.money import format_kwh
from bench.env import ORIGIN, Postgres, bench_gateway, say, write_log_key
from bench.fleet import DeviceReadings, FleetSpec, enrol_fleet_sync
from bench.ingest import percentile, table_bytes
from gateway import lease, logkey, logstore
from gateway.config import Settings
from gateway.sequencer import Sequencer
from stack.processes import GatewayProcess, MosquittoProcess
from stack.system import Tokens
from verifier.bundle import verify_bundle

PRICE = "0.35"


@dataclass
class LogSizes:
    round: int = 5
    proof_requests: int = 2000
    portfolio_assets: int = 1000
    verifier_readings: int = 100_000
    checkpoint_every: int = 100_000


async def _fill(
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


class _Http:
    """A keep-alive HTTP/1.1 connection (the standard library's: its own overhead is small next to the
    server's, so the latency measured is mostly the gateway's)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, path: str, params: dict[str, int] | None = None) -> tuple[float, bytes]:
        url = path + ("?" + urlencode(params) if params else "")
        t0 = time.perf_counter()
        self.conn.request("GET", url)
        response = self.conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - t0
        if response.status != 200:
            raise RuntimeError(f"GET {url}: {response.status} {body[:300]!r}")
        return elapsed, body

    def close(self) -> None:
        self.conn.close()


def _proofs(gw: GatewayProcess, size: int, requests: int, dsn: str, key_file: Path) -> dict[str, Any]:
    rng = random.Random(8)  # noqa: S311 - which indices to ask for
    key = logkey.load_key_file(key_file).verifier_key()
    inclusion: list[float] = []
    consistency: list[float] = []
    client = _Http(gw.port)
    try:
        for _ in range(50):  # warm the connection, the pool and the caches
            client.get("/v1/log/proof/inclusion", {"index": rng.randrange(size), "size": size})
        for _ in range(requests):
            n = rng.randint(1, size)
            inclusion.append(client.get("/v1/log/proof/inclusion", {"index": rng.randrange(n), "size": n})[0])
        for _ in range(requests):
            a = rng.randint(1, size - 1) if size > 1 else 0
            b = rng.randint(a + 1, size) if size > 1 else 1
            consistency.append(client.get("/v1/log/proof/consistency", {"from": a, "to": b})[0])
        # the answers are right: a sample verified against signed checkpoints
        latest = open_checkpoint(client.get("/v1/log/checkpoint")[1].decode(), key).checkpoint
        for _ in range(20):
            i = rng.randrange(latest.size)
            entry = client.get(f"/v1/log/entries/{i}")[1]
            body = json.loads(client.get("/v1/log/proof/inclusion", {"index": i, "size": latest.size})[1])
            verify_inclusion(
                i, latest.size, leaf_hash(entry), [_b64(h) for h in body["hashes"]], latest.root_hash
            )
        checked = 0
        for old_size, old_root in asyncio.run(_checkpoints(dsn)):
            if 0 < old_size < latest.size:
                body = json.loads(
                    client.get("/v1/log/proof/consistency", {"from": old_size, "to": latest.size})[1]
                )
                verify_consistency(
                    old_size, latest.size, old_root, latest.root_hash, [_b64(h) for h in body["hashes"]]
                )
                checked += 1
    finally:
        client.close()

    db = asyncio.run(_nodes_query_times(dsn, size, min(requests, 1000)))

    def ms(values: list[float], q: float) -> float:
        return round(1000 * percentile(values, q), 3)

    return {
        "inclusion_proof_p50_ms": ms(inclusion, 50),
        "inclusion_proof_p99_ms": ms(inclusion, 99),
        "inclusion_proof_mean_ms": round(1000 * statistics.fmean(inclusion), 3),
        "consistency_proof_p50_ms": ms(consistency, 50),
        "consistency_proof_p99_ms": ms(consistency, 99),
        "inclusion_nodes_query_p50_ms": ms(db, 50),
        "inclusion_nodes_query_p99_ms": ms(db, 99),
        "proof_requests_each": requests,
        "proof_client": "sequential requests on one keep-alive connection (http.client) from the bench process",
        "proofs_verified": {"inclusion": 20, "consistency": checked},
    }


async def _nodes_query_times(dsn: str, size: int, n: int) -> list[float]:
    """The database's share of an inclusion proof: the one indexed query the route makes for its nodes."""
    rng = random.Random(9)  # noqa: S311
    conn = await asyncpg.connect(dsn)
    try:
        times = []
        for _ in range(n):
            m = rng.randint(1, size)
            plan = inclusion_plan(rng.randrange(m), m)
            t0 = time.perf_counter()
            await logstore.nodes(conn, plan.nodes)
            times.append(time.perf_counter() - t0)
        return times
    finally:
        await conn.close()


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


async def _checkpoints(dsn: str) -> list[tuple[int, bytes]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT size, root_hash FROM checkpoints ORDER BY id")
        return [(int(r["size"]), bytes(r["root_hash"])) for r in rows]
    finally:
        await conn.close()


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _claim_body(
    spec: FleetSpec, fleet: list[DeviceReadings], devices: range, lo: int, hi: int, title: str
) -> dict[str, Any]:
    """A claim over rounds [lo, hi): exactly the energy and revenue the readings attest."""
    energy = sum(fleet[d].energies[hi - 1] - fleet[d].energies[lo] for d in devices)
    amount = (Decimal(energy) * Decimal(PRICE) / Decimal(1_000_000)).quantize(
        Decimal("0.01"), rounding=ROUND_DOWN
    )
    return {
        "title": title,
        "assets": [spec.asset_id(d) for d in devices],
        "period_start": _iso(spec.time_ms(lo)),
        "period_end": _iso(spec.time_ms(hi)),
        "tariff": {"currency": "USD", "price_per_kwh": PRICE},
        "claimed_energy_kwh": format_kwh(energy),
        "claimed_amount": str(amount),
    }


def _file_claim(client: httpx.Client, body: dict[str, Any]) -> tuple[int, int]:
    response = client.post("/v1/claims", json=body)
    if response.status_code != 201:
        raise RuntimeError(f"POST /v1/claims: {response.status_code} {response.text[:500]}")
    claim = response.json()
    claim_id = int(claim["id"])
    deadline = time.monotonic() + 60
    while claim["log_index"] is None and time.monotonic() < deadline:
        time.sleep(0.2)
        claim = client.get("/v1/claims?limit=5").json()["items"]
        claim = next(c for c in claim if c["id"] == claim_id)
    if claim["log_index"] is None:
        raise RuntimeError(f"claim {claim_id} was not logged")
    return claim_id, int(claim["log_index"])


def _fetch_bundle(
    client: httpx.Client, claim_id: int, mode: str, log_index: int, key_file: Path
) -> tuple[bytes, float]:
    key = logkey.load_key_file(key_file).verifier_key()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        size = open_checkpoint(client.get("/v1/log/checkpoint").text, key).checkpoint.size
        if size > log_index:
            break
        time.sleep(0.2)
    t0 = time.perf_counter()
    response = client.get(f"/v1/claims/{claim_id}/bundle", params={"mode": mode}, timeout=600)
    elapsed = time.perf_counter() - t0
    if response.status_code != 200:
        raise RuntimeError(f"bundle of claim {claim_id}: {response.status_code} {response.text[:300]}")
    return response.content, elapsed


def _verify(data: bytes, key_file: Path, jobs: int = 1) -> dict[str, Any]:
    key = logkey.load_key_file(key_file).verifier_key()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    result = verify_bundle(data, key, jobs=jobs)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "seconds": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "entries": result.entries,
        "readings_verified": result.readings_verified,
        "backed": result.backed,
        "energy_kwh": format_kwh(result.evaluation.energy_mwh),
    }


def run_log(
    pg: Postgres,
    spec: FleetSpec,
    fleet: list[DeviceReadings],
    sign_s: float,
    workdir: Path,
    tokens: Tokens,
    sizes: LogSizes,
    keep_db: bool = False,
    after: Callable[[GatewayProcess, MosquittoProcess, str], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Build the log, measure proofs, claims, bundles and the verifier; ``after(gateway, broker, dsn)`` runs last."""
    wd = workdir / "log"
    wd.mkdir(parents=True, exist_ok=True)
    key_file = wd / "log.key"
    write_log_key(key_file)
    dsn = pg.create("log")
    broker: MosquittoProcess | None = None
    gw: GatewayProcess | None = None
    out: dict[str, Any] = {}
    try:
        say(f"log: {spec.devices} devices enrolled; appending {spec.devices * spec.readings:,} readings "
            f"({sizes.round} per device per sequencer step)")  # fmt: skip
        enrol_fleet_sync(dsn, spec)
        t0 = time.perf_counter()
        fill = asyncio.run(_fill(dsn, spec, fleet, sizes, key_file))
        fill_s = time.perf_counter() - t0
        size = int(fill["size"])
        readings = spec.devices * spec.readings
        sign_rate = readings / max(sign_s, 1e-9)
        fill_rate = readings / max(fill_s, 1e-9)
        estimate = 10_000_000 / sign_rate + 10_000_000 / fill_rate
        out.update(
            log_entries_at_proof_test=size,
            log_fill={**fill, "wall_s": round(fill_s, 2), "signing_s": round(sign_s, 2)},
            log_fill_estimate_10m_s=round(estimate),
        )
        say(f"log: {size:,} entries in {fill_s:.0f} s (sequencer {fill['sequencer_entries_per_s']:,.0f} entries/s); "
            f"10 million would take about {estimate / 60:.0f} min this way")  # fmt: skip

        broker = MosquittoProcess(wd / "mosquitto").start()
        gw = bench_gateway(dsn, broker.url, wd, "api", tokens, checkpoint_interval="1.0").start()
        say(
            f"proofs: {sizes.proof_requests} inclusion and {sizes.proof_requests} consistency requests over HTTP"
        )
        out["loadavg_at_proofs"] = [round(x, 2) for x in os.getloadavg()]
        out.update(_proofs(gw, size, sizes.proof_requests, dsn, key_file))
        say(
            f"proofs: inclusion p50 {out['inclusion_proof_p50_ms']:.2f} ms p99 {out['inclusion_proof_p99_ms']:.2f} ms; "
            f"consistency p99 {out['consistency_proof_p99_ms']:.2f} ms"
        )

        lo, hi = spec.readings // 10, spec.readings - spec.readings // 10
        hi = max(hi, lo + 1)
        per_device = hi - lo
        n_portfolio = min(sizes.portfolio_assets, spec.devices)
        n_full = max(1, min(spec.devices, math.ceil(sizes.verifier_readings / per_device)))
        headers = {"Authorization": f"Bearer {tokens.issuer}"}
        with httpx.Client(base_url=gw.url, headers=headers, timeout=120) as client:
            say(f"claims: a {n_portfolio}-asset portfolio claim and a {n_full}-asset claim for a full bundle")
            portfolio_id, portfolio_index = _file_claim(
                client, _claim_body(spec, fleet, range(n_portfolio), lo, hi, f"{n_portfolio}-asset portfolio")
            )
            full_id, full_index = _file_claim(
                client, _claim_body(spec, fleet, range(n_full), lo, hi, f"{n_full} assets, every reading")
            )
            boundary, boundary_fetch = _fetch_bundle(
                client, portfolio_id, "boundary", portfolio_index, key_file
            )
            full, full_fetch = _fetch_bundle(client, full_id, "full", full_index, key_file)
        (wd / "portfolio-boundary.json").write_bytes(boundary)
        portfolio = _verify(boundary, key_file)
        say(f"verifier: {n_portfolio}-asset boundary bundle, {len(boundary):,} bytes, verified in "
            f"{portfolio['seconds']:.2f} s (backed: {portfolio['backed']})")  # fmt: skip
        verified = _verify(full, key_file)
        rate = verified["readings_verified"] / max(verified["seconds"], 1e-9)
        cpu_rate = verified["readings_verified"] / max(verified["cpu_s"], 1e-9)
        say(f"verifier: full bundle, {verified['readings_verified']:,} readings in {verified['seconds']:.2f} s = "
            f"{rate:,.0f} readings/s ({cpu_rate:,.0f} per CPU second; backed: {verified['backed']})")  # fmt: skip
        jobs = os.cpu_count() or 1
        parallel = _verify(full, key_file, jobs=jobs)
        parallel_rate = parallel["readings_verified"] / max(parallel["seconds"], 1e-9)
        say(f"verifier: the same with --jobs {jobs}: {parallel_rate:,.0f} readings/s")
        out.update(
            verifier_all_cores_readings_per_s=round(parallel_rate, 1),
            verifier_all_cores_jobs=jobs,
            portfolio_assets=n_portfolio,
            portfolio_bundle_bytes=len(boundary),
            portfolio_verify_s=portfolio["seconds"],
            portfolio=portfolio
            | {"fetch_s": round(boundary_fetch, 3), "readings_per_device_in_period": per_device},
            verifier_readings_per_s=round(rate, 1),
            verifier_readings_per_cpu_s=round(cpu_rate, 1),
            verifier_full_bundle=verified
            | {"bytes": len(full), "fetch_s": round(full_fetch, 3), "assets": n_full},
        )
        sizes_db = asyncio.run(_db_sizes(dsn))
        out.update(
            db_bytes_per_reading=round(sizes_db["bytes"] / max(sizes_db["readings"], 1), 1),
            db_at_proof_test=sizes_db,
        )
        if after is not None:
            out.update(after(gw, broker, dsn))
        return out
    finally:
        if gw is not None:
            gw.stop()
        if broker is not None:
            broker.stop()
        if not keep_db:
            pg.drop(dsn)


async def _db_sizes(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM ANALYZE")
        tables = await table_bytes(conn)
        readings = await conn.fetchval("SELECT count(*) FROM readings")
        return {"bytes": sum(tables.values()), "readings": int(readings), "tables": tables}
    finally:
        await conn.close()
