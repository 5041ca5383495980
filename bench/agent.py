"""The edge agent's memory and CPU: ``python -m edge_agent run`` for one simulated charger.

The agent is set up as an installer would (``init``, ``enrol`` with an installer
token against the benchmark's gateway), with a reading every ``interval``
seconds instead of every minute, and runs for ``seconds``.  Its RSS comes
from ``/proc/<pid>/status`` (VmRSS at the end, VmHWM the peak); its CPU per
reading is the CPU it used after a warm-up divided by the readings the gateway
received from it meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.env import cpu_seconds, memory_mb, say
from stack.processes import REPO, GatewayProcess, MosquittoProcess, stop_process
from stack.system import Tokens

WARMUP_S = 3.0


async def _count(dsn: str, asset: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        n: int = await conn.fetchval("SELECT count(*) FROM readings WHERE asset_id = $1", asset)
        return n
    finally:
        await conn.close()


def _cli(args: list[str], env: dict[str, str], log: Path) -> None:
    with open(log, "ab") as fh:
        done = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "edge_agent", *args], env=env, cwd=REPO, stdout=fh, stderr=fh, check=False
        )
    if done.returncode != 0:
        raise RuntimeError(f"python -m edge_agent {args[0]} failed ({done.returncode}); see {log}")


def run_agent(
    gw: GatewayProcess,
    broker: MosquittoProcess,
    dsn: str,
    workdir: Path,
    tokens: Tokens,
    seconds: float,
    interval: float,
) -> dict[str, Any]:
    wd = workdir / "agent"
    wd.mkdir(parents=True, exist_ok=True)
    log = wd / "agent.log"
    env = {**os.environ, "MQTT_URL": broker.url, "IOT_ATTEST_GATEWAY_URL": gw.url}
    config = wd / "agent.toml"
    asset = "bench-agent-charger"
    say(f"agent: python -m edge_agent init, enrol, run (a reading every {interval:g} s, {seconds:g} s)")
    _cli(["init", "--dir", str(wd), "--meter", "simulated-charger", "--mqtt", broker.url], env, log)
    _cli(
        ["enrol", "--config", str(config), "--gateway", gw.url, "--token", tokens.installer,
         "--asset", asset, "--kind", "charger", "--rated-power", "22000"],
        env, log,
    )  # fmt: skip
    text = config.read_text()
    config.write_text(re.sub(r"(?m)^interval_s = .*$", f"interval_s = {interval}", text, count=1))
    with open(log, "ab") as fh:
        proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
            env=env, cwd=REPO, stdout=fh, stderr=fh,
        )  # fmt: skip
    try:
        time.sleep(WARMUP_S)
        if proc.poll() is not None:
            raise RuntimeError(f"the agent exited ({proc.returncode}); see {log}")
        cpu0, n0, t0 = cpu_seconds(proc.pid), asyncio.run(_count(dsn, asset)), time.monotonic()
        peak_rss = 0.0
        while time.monotonic() - t0 < max(1.0, seconds - WARMUP_S):
            time.sleep(0.5)
            peak_rss = max(peak_rss, memory_mb(proc.pid)[0])
        cpu1, n1, t1 = cpu_seconds(proc.pid), asyncio.run(_count(dsn, asset)), time.monotonic()
        rss, hwm = memory_mb(proc.pid)
    finally:
        stop_process(proc, 20)
    readings = n1 - n0
    cpu = cpu1 - cpu0
    result = {
        "agent_rss_mb": round(rss, 1),
        "agent_rss_peak_mb": round(max(hwm, peak_rss), 1),
        "agent_readings": readings,
        "agent_interval_s": interval,
        "agent_cpu_percent": round(100 * cpu / max(t1 - t0, 1e-9), 2),
        "agent_cpu_ms_per_reading": round(1000 * cpu / readings, 2) if readings else None,
        "agent_readings_total": n1,
    }
    say(
        f"agent: RSS {result['agent_rss_mb']} MiB (peak {result['agent_rss_peak_mb']}), "
        f"{readings} readings, {result['agent_cpu_ms_per_reading']} ms CPU per reading"
    )
    return result
