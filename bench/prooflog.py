"""A log of a million entries, its proofs over HTTP, and the verifier on the gateway's bundles.

The log is grown by bench/logfill.py, exactly as the gateway writes it; a
gateway process then serves the API over that database, and bench/proofs.py
measures its proofs.  Claims over the fleet's assets are filed, their bundles
fetched and verified here.

Reaching 10 million entries: the same method (``--log-devices``,
``--log-readings``); the time is signing (both cores) plus the sequencer's
append rate, both measured and extrapolated in the results
(``log_fill_estimate_10m_s``).
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from attest_core.checkpoint import open_checkpoint
from attest_core.money import format_kwh
from bench.env import Postgres, bench_gateway, say, write_log_key
from bench.fleet import DeviceReadings, FleetSpec, enrol_fleet_sync
from bench.ingest import table_bytes
from bench.logfill import LogSizes, fill_log
from bench.proofs import measure_proofs
from gateway import logkey
from stack.processes import GatewayProcess, MosquittoProcess
from stack.system import Tokens
from verifier.bundle import verify_bundle

PRICE = "0.35"


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
        fill = asyncio.run(fill_log(dsn, spec, fleet, sizes, key_file))
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
        out.update(measure_proofs(gw, size, sizes.proof_requests, dsn, key_file))
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
            full_id, full_index = _file_claim(
                client, _claim_body(spec, fleet, range(n_full), lo, hi, f"{n_full} assets, every reading")
            )
            full, full_fetch = _fetch_bundle(client, full_id, "full", full_index, key_file)
            # The same energy backs one live claim: the portfolio claims the same assets and period.
            withdrawn = client.post(f"/v1/claims/{full_id}/withdraw", json={"reason": "benchmark"})
            if withdrawn.status_code != 200:
                raise RuntimeError(
                    f"withdrawing claim {full_id}: {withdrawn.status_code} {withdrawn.text[:300]}"
                )
            portfolio_id, portfolio_index = _file_claim(
                client, _claim_body(spec, fleet, range(n_portfolio), lo, hi, f"{n_portfolio}-asset portfolio")
            )
            boundary, boundary_fetch = _fetch_bundle(
                client, portfolio_id, "boundary", portfolio_index, key_file
            )
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
