"""``python -m bench``: every figure of issue 8, printed as a table and written to bench-results.json."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
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
from bench.prooflog import LogSizes, run_log
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


def _fmt(value: Any, unit: str = "", digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{value:,.{digits}f}" if isinstance(value, (int, float)) else str(value)
    return f"{text} {unit}".strip()


def _processes(n: int) -> str:
    return "1 gateway process" if n == 1 else f"{n} gateway processes (shared subscription)"


def table_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, value, target, verdict) rows, shared by the terminal table and the README."""

    def verdict(ok: bool | None) -> str:
        return "-" if ok is None else ("met" if ok else "NOT met")

    runs = {run["label"]: run for run in r.get("ingest_runs", [])}
    rows: list[tuple[str, str, str, str]] = []
    for label, run in runs.items():
        if label.startswith("flood"):
            rows.append(
                (
                    f"ingest, {_processes(run['gateways'])}, readings/s end to end",
                    _fmt(run["readings_per_s"]),
                    "",
                    "",
                )
            )
    zero = r["lost"] == 0 and r["duplicated"] == 0
    rows.append(
        (
            "ingest, best: readings/s accepted, logged and checkpointed",
            _fmt(r["ingest_readings_per_s"]),
            ">= 10,000",
            verdict(r["ingest_readings_per_s"] >= 10_000 and zero),
        )
    )
    rows.append(
        (
            "sent / logged / lost / duplicated (all runs)",
            f"{r['sent']:,} / {r['logged']:,} / {r['lost']} / {r['duplicated']}",
            "lost = duplicated = 0",
            verdict(zero),
        )
    )
    rows.append(
        (
            f"publish -> signed checkpoint p50 / p99 at {_fmt(r.get('checkpoint_latency_offered_rate'))}/s offered",
            f"{r['checkpoint_latency_p50_s']:.2f} s / {r['checkpoint_latency_p99_s']:.2f} s",
            f"p99 <= 1.5 s ({r.get('checkpoint_interval_s', 1):g} s interval)",
            verdict(r["checkpoint_latency_p99_s"] <= 1.5),
        )
    )
    for extra in r.get("checkpoint_latency_runs", [])[1:]:
        rows.append(
            (
                f"  same, at {_fmt(extra['offered_rate'])}/s offered",
                f"{extra['p50_s']:.2f} s / {extra['p99_s']:.2f} s",
                "",
                "",
            )
        )
    flood = runs.get(r.get("best_flood_label", ""))
    if flood:
        rows.append(
            (
                "  same, at full load (publisher unpaced, best run)",
                f"{flood['latency_p50_s']:.2f} s / {flood['latency_p99_s']:.2f} s",
                "",
                "",
            )
        )
    if "starvation_p99_s" in r:
        rows.append(
            (
                f"a healthy device's receipts while another floods {_fmt(r.get('starvation_flood_readings'))} "
                "readings behind a gap: p50 / p99",
                f"{r['starvation_p50_s']:.2f} s / {r['starvation_p99_s']:.2f} s",
                "p99 <= 5 s",
                verdict(r["starvation_p99_s"] <= 5),
            )
        )
    rows.append(
        (
            f"inclusion proof p50 / p99 over HTTP, {r['log_entries_at_proof_test']:,} entries",
            f"{r['inclusion_proof_p50_ms']:.2f} ms / {r['inclusion_proof_p99_ms']:.2f} ms",
            "p99 <= 5 ms",
            verdict(r["inclusion_proof_p99_ms"] <= 5),
        )
    )
    if "inclusion_nodes_query_p50_ms" in r:
        rows.append(
            (
                "  of which the database query for the proof's nodes, p50 / p99",
                f"{r['inclusion_nodes_query_p50_ms']:.2f} ms / {r['inclusion_nodes_query_p99_ms']:.2f} ms",
                "",
                "",
            )
        )
    rows.append(
        (
            "consistency proof p50 / p99 over HTTP",
            f"{r['consistency_proof_p50_ms']:.2f} ms / {r['consistency_proof_p99_ms']:.2f} ms",
            "",
            "",
        )
    )
    rows.append(
        (
            "log growth (the gateway's sequencer, in-process, no MQTT)",
            _fmt(r["log_fill"]["sequencer_entries_per_s"], "entries/s"),
            "",
            "",
        )
    )
    rows.append(
        (
            f"verifier, full bundle of {r['verifier_full_bundle']['readings_verified']:,} readings, one core: "
            "readings/s (per CPU-second)",
            f"{_fmt(r['verifier_readings_per_s'])} ({_fmt(r.get('verifier_readings_per_cpu_s'))})",
            ">= 20,000",
            verdict(r["verifier_readings_per_s"] >= 20_000),
        )
    )
    if "verifier_all_cores_readings_per_s" in r:
        rows.append(
            (
                f"  same, `--jobs {r['verifier_all_cores_jobs']}` (all cores of this machine): readings/s",
                _fmt(r["verifier_all_cores_readings_per_s"]),
                "",
                "",
            )
        )
    ok = r["portfolio_bundle_bytes"] <= 2_000_000 and r["portfolio_verify_s"] < 1
    rows.append(
        (
            f"{r['portfolio_assets']:,}-asset portfolio, boundary bundle: size / verify time",
            f"{r['portfolio_bundle_bytes'] / 1e6:.2f} MB / {r['portfolio_verify_s']:.2f} s",
            "<= 2 MB, < 1 s",
            verdict(ok),
        )
    )
    rows.append(
        (
            f"database bytes per stored reading ({r['log_entries_at_proof_test']:,}-entry log, as the gateway "
            "leaves it)",
            _fmt(r["db_bytes_per_reading"], "B"),
            "",
            "",
        )
    )
    rows.append(
        (
            "edge agent (`python -m edge_agent run`) RSS / CPU per reading",
            f"{r['agent_rss_mb']:.1f} MiB / {_fmt(r.get('agent_cpu_ms_per_reading'), 'ms', 1)}",
            "",
            "",
        )
    )
    return rows


def markdown_table(r: dict[str, Any]) -> str:
    """The figures as a Markdown table (for the README's Performance section)."""
    lines = ["| figure | measured | target | |", "| --- | --- | --- | --- |"]
    for row in table_rows(r):
        lines.append("| " + " | ".join(c.strip().replace("|", "/") for c in row) + " |")
    return "\n".join(lines)


def print_table(r: dict[str, Any]) -> None:
    rows = table_rows(r)
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    header = ("figure", "measured", "target", "")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    line = "  ".join("-" * w for w in widths)
    print()
    print(f"iot-attest benchmarks, {r['date']}, commit {r['commit']} ({r['machine']['cpus']} cores, shared)")
    print(line)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print(line)
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print(line)
    if r.get("profile"):
        print("\nwhere the gateway's time goes (py-spy, one gateway process under full load):")
        print(profile.format_summary(r["profile"]))
    print()


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
