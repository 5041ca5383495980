"""Proofs over HTTP against the big log: their latency, the database's share, and their correctness."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg

from attest_core.checkpoint import open_checkpoint
from attest_core.merkle import inclusion_plan, leaf_hash, verify_consistency, verify_inclusion
from bench.ingest import percentile
from gateway import logkey, logstore
from stack.processes import GatewayProcess


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


def measure_proofs(gw: GatewayProcess, size: int, requests: int, dsn: str, key_file: Path) -> dict[str, Any]:
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
