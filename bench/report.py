"""The benchmark's figures as a table: each measured beside its target (terminal and Markdown)."""

from __future__ import annotations

import math
from typing import Any

from bench import profile


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
