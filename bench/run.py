"""``python -m bench``: every figure of issue 8, printed as a table and written to bench-results.json."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import profile
from bench.agent import run_agent
from bench.env import Postgres, bench_tokens, git_commit, machine_info, say
from bench.fleet import FleetSpec, sign_fleet
from bench.ingest import IngestRun, run_ingest
from bench.logfill import LogSizes
from bench.prooflog import run_log
from bench.report import markdown_table, print_table
from bench.starvation import run_starvation
from stack.processes import REPO, GatewayProcess, MosquittoProcess

REQUIRED = (
    "ingest_readings_per_s",
    "sent",
    "logged",
    "lost",
    "duplicated",
    "checkpoint_latency_p50_s",
    "checkpoint_latency_p99_s",
    "starvation_p99_s",
    "log_entries_at_proof_test",
    "inclusion_proof_p50_ms",
    "inclusion_proof_p99_ms",
    "consistency_proof_p99_ms",
    "verifier_readings_per_s",
    "portfolio_assets",
    "portfolio_bundle_bytes",
    "portfolio_verify_s",
    "db_bytes_per_reading",
    "agent_rss_mb",
)

HOUR_MS = 3_600_000


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of iot-attest on this machine (issue 8). Defaults take 3 to 5 minutes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=REPO / "bench-results.json", help="where to write the results")
    g = p.add_argument_group("ingest (MQTT -> gateway -> log -> checkpoint)")
    g.add_argument("--devices", type=int, default=1000, help="simulated devices")
    g.add_argument("--readings", type=int, default=100, help="pre-signed readings per device")
    g.add_argument("--gateways", default="1,2", help="gateway process counts to try, comma-separated")
    g.add_argument(
        "--checkpoint-interval", type=float, default=1.0, help="the gateways' checkpoint_interval (s)"
    )
    g.add_argument(
        "--paced",
        default="0.5,0.25,0.8",
        help="latency runs: offered rates as fractions of the best throughput measured, comma-separated "
        "(the first gives checkpoint_latency_*)",
    )
    g.add_argument("--paced-rate", default="", help="latency runs at these rates (readings/s) instead")
    g.add_argument("--paced-seconds", type=float, default=8.0, help="length of the latency run (s)")
    g.add_argument(
        "--no-profile", action="store_true", help="skip the py-spy profile of a gateway under load"
    )
    g.add_argument(
        "--stall-timeout", type=float, default=60.0, help="give up after this long without progress (s)"
    )
    g = p.add_argument_group(
        "starvation (one device floods behind a gap, another sends one reading a second)"
    )
    g.add_argument("--starvation-flood", type=int, default=8000, help="readings the flooding device sends")
    g.add_argument(
        "--starvation-seconds", type=float, default=20.0, help="how long the healthy device sends (s)"
    )
    g = p.add_argument_group("log, proofs, verifier")
    g.add_argument("--log-devices", type=int, default=1000, help="devices (= assets) in the big log")
    g.add_argument("--log-readings", type=int, default=1000, help="readings per device in the big log")
    g.add_argument("--log-round", type=int, default=5, help="readings per device per sequencer step")
    g.add_argument("--proof-requests", type=int, default=2000, help="requests of each proof kind")
    g.add_argument("--portfolio-assets", type=int, default=1000, help="assets in the portfolio claim")
    g.add_argument(
        "--verifier-readings", type=int, default=100_000, help="readings in the full bundle verified"
    )
    g = p.add_argument_group("edge agent")
    g.add_argument("--agent-seconds", type=float, default=15.0, help="how long the agent runs (s)")
    g.add_argument("--agent-interval", type=float, default=0.5, help="its reading interval (s)")
    g = p.add_argument_group("general")
    g.add_argument("--workers", type=int, default=2, help="processes that pre-sign readings")
    g.add_argument("--keep", action="store_true", help="keep the work directory and the databases")
    g.add_argument(
        "--markdown",
        type=Path,
        metavar="RESULTS",
        help="print the table of a results file as Markdown and stop",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.markdown is not None:
        print(markdown_table(json.loads(args.markdown.read_text())))
        return 0
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="iot-attest-bench-"))
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "machine": machine_info(),
    }
    pg = Postgres().start()
    results["postgres"] = {"how": pg.how, "version": pg.server_version()}
    say(f"PostgreSQL: {pg.how} ({results['postgres']['version']}); work directory {workdir}")
    tokens = bench_tokens()
    settings = {"checkpoint_interval": str(args.checkpoint_interval)}
    try:
        # --- 1. ingest ------------------------------------------------------------------------
        now = int(time.time()) * 1000
        interval_ms = 15 * 60 * 1000
        spec = FleetSpec("ing", args.devices, args.readings, now - args.readings * interval_ms - 24 * HOUR_MS)
        say(f"signing {spec.devices * spec.readings:,} readings for {spec.devices} devices (not timed)")
        fleet = sign_fleet(spec, args.workers)
        total = spec.devices * spec.readings
        counts = [int(x) for x in args.gateways.split(",") if x.strip()]
        runs: list[dict[str, Any]] = []
        for n in counts:
            runs.append(
                run_ingest(pg, spec, fleet, workdir, IngestRun(f"flood-{n}gw", n, 0.0, total), tokens,
                           settings, args.stall_timeout, args.keep)
            )  # fmt: skip
        best = max((x for x in runs), key=lambda x: x["readings_per_s"])
        if not args.no_profile:
            if profile.py_spy() is None:
                say("py-spy is not installed (pip install py-spy, in the [dev] extra): no profile")
            else:
                prof = run_ingest(
                    pg, spec, fleet, workdir, IngestRun("profile-1gw", 1, 0.0, total, profile=True), tokens,
                    settings, args.stall_timeout, args.keep,
                )  # fmt: skip
                results["profile"] = prof.pop("profile", None)
                runs.append(prof)
        if args.paced_rate:
            rates = [float(x) for x in args.paced_rate.split(",") if x.strip()]
        else:
            rates = [
                max(100.0, round(float(f) * best["readings_per_s"], -2))
                for f in args.paced.split(",")
                if f.strip()
            ]
        paced_runs = []
        for rate in rates:
            count = int(min(total, max(spec.devices, rate * args.paced_seconds)))
            label = f"paced-{rate:.0f}-{best['gateways']}gw"
            paced_runs.append(
                run_ingest(pg, spec, fleet, workdir, IngestRun(label, best["gateways"], rate, count), tokens,
                           settings, args.stall_timeout, args.keep)
            )  # fmt: skip
        runs.extend(paced_runs)
        paced = paced_runs[0]
        rate = rates[0]
        del fleet
        results.update(
            ingest_readings_per_s=round(best["readings_per_s"], 1),
            best_flood_label=best["label"],
            sent=sum(x["sent"] for x in runs),
            logged=sum(x["logged"] for x in runs),
            lost=sum(x["lost"] for x in runs),
            duplicated=sum(x["duplicated"] for x in runs),
            quarantined=sum(x["quarantined"] for x in runs),
            checkpoint_latency_p50_s=round(paced["latency_p50_s"], 3),
            checkpoint_latency_p99_s=round(paced["latency_p99_s"], 3),
            checkpoint_latency_offered_rate=rate,
            checkpoint_latency_runs=[
                {"offered_rate": x["offered_rate"], "p50_s": x["latency_p50_s"], "p99_s": x["latency_p99_s"]}
                for x in paced_runs
            ],
            checkpoint_interval_s=args.checkpoint_interval,
            ingest_db_bytes_per_reading=round(best["db_bytes_per_reading"], 1),
            ingest_runs=runs,
        )

        results.update(
            run_starvation(pg, workdir, tokens, settings, args.starvation_flood, args.starvation_seconds)
        )
        results["machine"]["loadavg_after_ingest"] = [round(x, 2) for x in os.getloadavg()]
        # --- 2-4. the big log: proofs, bundles, verifier, database size, the agent ---------------
        log_spec = FleetSpec(
            "log", args.log_devices, args.log_readings,
            now - args.log_readings * interval_ms - 24 * HOUR_MS,
        )  # fmt: skip
        say(
            f"signing {log_spec.devices * log_spec.readings:,} readings for the big log ({args.workers} processes)"
        )
        t0 = time.perf_counter()
        log_fleet = sign_fleet(log_spec, args.workers)
        sign_s = time.perf_counter() - t0
        say(f"signed in {sign_s:.0f} s ({log_spec.devices * log_spec.readings / sign_s:,.0f} readings/s)")
        sizes = LogSizes(
            round=args.log_round,
            proof_requests=args.proof_requests,
            portfolio_assets=args.portfolio_assets,
            verifier_readings=args.verifier_readings,
        )

        def agent(gw: GatewayProcess, broker: MosquittoProcess, dsn: str) -> dict[str, Any]:
            return run_agent(gw, broker, dsn, workdir, tokens, args.agent_seconds, args.agent_interval)

        results.update(run_log(pg, log_spec, log_fleet, sign_s, workdir, tokens, sizes, args.keep, agent))
        del log_fleet
        results["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()} | {
            "gateway_settings": settings
        }
        results["bench_seconds"] = round(time.monotonic() - started, 1)
        results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        if not args.keep:
            pg.close()
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            say(f"kept {workdir} and databases {', '.join(pg.created)}")
    missing = [k for k in REQUIRED if not isinstance(results.get(k), (int, float))]
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print_table(results)
    say(f"wrote {args.out} in {results['bench_seconds']:.0f} s")
    if missing:
        print(f"error: no figure for {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0
