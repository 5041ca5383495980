"""The report on a terminal, with rich.

Every value that comes from the evidence is put in a :class:`rich.text.Text`
(never interpreted as markup), so a claim title cannot restyle the report.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

_VERDICT = {
    "backed": ("BACKED", "bold white on green", "The evidence is valid and the claim is backed."),
    "not_backed": (
        "NOT BACKED",
        "bold white on dark_orange3",
        "The evidence is valid, but it does not back the claim (see the fatal findings).",
    ),
    "invalid": (
        "INVALID EVIDENCE",
        "bold white on red",
        "The evidence does not verify: nothing in it can be relied on.",
    ),
}
_SEVERITY_STYLE = {"fatal": "bold red", "warning": "yellow", "info": "cyan"}


def _t(value: object, style: str = "") -> Text:
    return Text("" if value is None else str(value), style=style)


def _fields(rows: list[tuple[str, Text | str]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for label, value in rows:
        table.add_row(label, value if isinstance(value, Text) else Text(value))
    return table


def _verdict_panel(doc: dict[str, Any]) -> Panel:
    label, style, meaning = _VERDICT[doc["verdict"]]
    body = Text.assemble((f" {label} ", style), "  ", meaning, f"  (exit code {doc['exit_code']})")
    evidence = doc.get("evidence")
    if evidence is not None and evidence["insufficient"]:
        body.append("\n\n")
        body.append("[evidence_insufficient] ", style="bold red")
        body.append(
            f"--require-full: {evidence['boundary_devices']} device(s) have boundary evidence, which is "
            "insufficient; ask for the full bundle (GET /v1/claims/{id}/bundle?mode=full)."
        )
    if "error" in doc:
        body.append("\n\n")
        body.append(f"[{doc['error']['code']}] ", style="bold red")
        body.append(doc["error"]["message"])
    return Panel(body, title="Verdict", title_align="left", box=box.HEAVY)


def _key_rows(doc: dict[str, Any]) -> list[tuple[str, Text | str]]:
    log = doc["log"]
    return [
        (
            "bundle",
            Text(
                f"{doc['bundle']['file']}  ({doc['bundle'].get('bytes', '?')} bytes, "
                f"SHA-256 {doc['bundle'].get('sha256', '?')})"
            ),
        ),
        ("log key", Text(f"{log['name']}  key id {log['key_id']}  fingerprint {log['fingerprint']}")),
    ]


def _check(ok: bool) -> Text:
    return Text("covered", style="green") if ok else Text("NOT covered", style="bold red")


def _claim_panel(doc: dict[str, Any]) -> Panel:
    claim, attested = doc["claim"], doc["attested"]
    cur = claim["unit"]["symbol"]
    energy = Text.assemble(
        f"claimed {claim['claimed_energy_kwh']} kWh, attested {attested['energy_kwh']} kWh  ",
        _check(attested["energy_covered"]),
    )
    amount = Text.assemble(
        f"claimed {claim['claimed_amount']} {cur}, attested {attested['revenue']} {cur} "
        f"(exact {attested['revenue_exact']}, rounded down)  ",
        _check(attested["revenue_covered"]),
    )
    period = claim["period"]
    rows: list[tuple[str, Text | str]] = [
        ("issuer", claim["issuer"]),
        ("title", claim["title"]),
        ("period", f"{period['start']} to {period['end']} (UTC; the end is excluded)"),
        ("assets", f"{len(claim['assets'])}"),
        ("tariff", claim["tariff"]["description"]),
        ("energy", energy),
        ("amount", amount),
        ("filed", f"{claim['filed_at']}, log entry {claim['log_index']}"),
    ]
    if claim["unit"]["token"] is not None:  # the token's identity beside its symbol, which is only a label
        rows.insert(
            [name for name, _ in rows].index("tariff") + 1, ("currency", claim["unit"]["description"])
        )
    return Panel(_fields(rows), title="Claim", title_align="left")


def _evidence_panel(doc: dict[str, Any]) -> Panel:
    ev = doc["evidence"]
    declared = ev["declared"] or "not declared (v1 bundle): each device classified by its readings"
    rows: list[tuple[str, Text | str]] = [
        ("format", ev["format"]),
        ("declared", declared),
        (
            "devices",
            f"{ev['full_devices']} with full evidence, {ev['boundary_devices']} with boundary evidence",
        ),
        ("in short", ev["summary"]),
    ]
    if ev["require_full"]:
        rows.append(
            (
                "--require-full",
                Text("NOT met", style="bold red") if ev["insufficient"] else Text("met", style="green"),
            )
        )
    return Panel(_fields(rows), title="Evidence", title_align="left")


def checks_table(doc: dict[str, Any]) -> Table:
    """Which check ran on which evidence."""
    table = Table(title="Checks run on which evidence", title_justify="left", box=box.SIMPLE_HEAVY)
    table.add_column("check", no_wrap=True)
    table.add_column("what it checks", overflow="fold")
    table.add_column("on full evidence", overflow="fold")
    table.add_column("on boundary evidence", overflow="fold")
    for c in doc["checks"]:
        full = f"{c['on_full']} ({c['full_devices']} devices)" if c["full_devices"] else "no device"
        if c["boundary_devices"]:
            style = "yellow" if c["on_boundary"] == "not run" else ""
            boundary = _t(f"{c['on_boundary']} ({c['boundary_devices']} devices)", style)
        else:
            boundary = _t("no device")
        table.add_row(_t(c["check"]), _t(c["description"]), _t(full), boundary)
    return table


def checkpoint_rows(cp: dict[str, Any]) -> list[tuple[str, Text | str]]:
    rows: list[tuple[str, Text | str]] = [
        ("origin", cp["origin"]),
        ("tree size", f"{cp['size']} entries"),
        ("root hash", cp["root_hash"]),
        ("root (hex)", cp["root_hash_hex"]),
        ("signed at", cp["time_utc"] or "no time line"),
    ]
    witnesses = cp["witnesses"]
    if witnesses:
        for w in witnesses:
            rows.append(("cosigned by", f"witness {w['name']} (key id {w['key_id']}) at {w['time_utc']}"))
    else:
        rows.append(("cosigned by", "no trusted witness required or given"))
    return rows


def _assets_table(doc: dict[str, Any]) -> Table:
    cur = doc["claim"]["unit"]["symbol"]
    table = Table(title="Assets", title_justify="left", box=box.SIMPLE_HEAVY, show_footer=True)
    total_readings = sum(a["readings_counted"] for a in doc["assets"])
    attested = doc["attested"]
    table.add_column("asset", footer="total", overflow="fold")
    table.add_column("kind")
    table.add_column("devices", justify="right", footer=str(sum(len(a["devices"]) for a in doc["assets"])))
    table.add_column("readings counted", justify="right", footer=str(total_readings))
    table.add_column("evidence")
    table.add_column("energy kWh", justify="right", footer=attested["energy_kwh"])
    table.add_column("meter-signed kWh", justify="right")
    table.add_column(f"revenue {cur}", justify="right", footer=attested["revenue"])
    for a in doc["assets"]:
        evidence_style = {"full": "green", "boundary": "yellow", "none": "red"}[a["evidence"]]
        table.add_row(
            _t(a["asset_id"]),
            _t(a["kind"] or "-"),
            _t(len(a["devices"])),
            _t(a["readings_counted"]),
            _t(a["evidence"], evidence_style),
            _t(a["energy_kwh"]),
            _meter_signed(a["meter_signed"]),
            _t(a["revenue"]),
        )
    return table


def _meter_signed(info: dict[str, Any]) -> Text:
    """An asset's meter-signed energy and its share of the attested energy ("-" when none)."""
    if not info["readings"]:
        return _t("-")
    share = info["share"]
    text = info["energy_kwh"] if share is None else f"{info['energy_kwh']} ({float(share):.0%})"
    return _t(text, "green" if share == "1.0000" else "")


def _group_info(findings: list[dict[str, Any]], limit: int = 3) -> list[dict[str, Any]]:
    """Every fatal finding and warning; info findings of one code grouped once there are more than ``limit``."""
    counts: dict[str, int] = {}
    for f in findings:
        if f["severity"] == "info":
            counts[f["code"]] = counts.get(f["code"], 0) + 1
    out: list[dict[str, Any]] = []
    shown: set[str] = set()
    for f in findings:
        code = f["code"]
        if f["severity"] != "info" or counts[code] <= limit:
            out.append(f)
        elif code not in shown:
            shown.add(code)
            out.append(
                {"severity": "info", "code": code, "asset_id": f"{counts[code]} times",
                 "message": f"for example: {f['message']} (--json lists each)"}
            )  # fmt: skip
    return out


def _findings_table(doc: dict[str, Any]) -> Table | Text:
    findings = doc["findings"]
    if not findings:
        return Text("Findings: none.", style="green")
    table = Table(title="Findings", title_justify="left", box=box.SIMPLE_HEAVY, expand=True)
    for name in ("severity", "code", "asset", "device", "seq", "log index"):
        table.add_column(name, no_wrap=name in ("severity", "seq", "log index"))
    table.add_column("message", overflow="fold", ratio=1)
    for f in _group_info(findings):
        table.add_row(
            _t(f["severity"], _SEVERITY_STYLE.get(f["severity"], "")),
            _t(f["code"]),
            _t(f.get("asset_id", "-")),
            _t(f.get("device_id", "-")),
            _t(f.get("seq", "-")),
            _t(f.get("log_index", "-")),
            _t(f["message"]),
        )
    return table


def summary_line(doc: dict[str, Any]) -> Text:
    stats, summary = doc["stats"], doc["summary"]
    rate = stats["readings_per_second"]
    rate_text = "n/a" if rate is None else f"{rate:,} readings/s"
    return Text(
        f"{stats['readings_verified']:,} readings verified in {stats['entries']:,} log entries "
        f"in {stats['seconds']:.3f} s ({rate_text}); findings: {summary['fatal']} fatal, "
        f"{summary['warning']} warning, {summary['info']} info."
    )


def render_report(doc: dict[str, Any], console: Console) -> None:
    """Print a bundle report (valid or invalid) on ``console``."""
    parts: list[Any] = [_verdict_panel(doc), _fields(_key_rows(doc))]
    if doc["verdict"] != "invalid":
        parts += [
            _claim_panel(doc),
            Panel(_fields(checkpoint_rows(doc["checkpoint"])), title="Checkpoint", title_align="left"),
            _evidence_panel(doc),
            checks_table(doc),
            _assets_table(doc),
            _findings_table(doc),
            summary_line(doc),
        ]
    console.print(Group(*parts))


def render_check(doc: dict[str, Any], console: Console) -> None:
    """Print the result of a checkpoint, inclusion or consistency check."""
    ok = doc["valid"]
    head = Text.assemble(
        (" VALID " if ok else " INVALID ", "bold white on green" if ok else "bold white on red"),
        "  ",
        doc["summary"],
        f"  (exit code {doc['exit_code']})",
    )
    if "error" in doc:
        head.append("\n")
        head.append(f"[{doc['error']['code']}] ", style="bold red")
        head.append(doc["error"]["message"])
    log = doc["log"]
    parts: list[Any] = [
        head,
        _fields([("log key", f"{log['name']}  key id {log['key_id']}  fingerprint {log['fingerprint']}")]),
    ]
    for key, title in (("checkpoint", "Checkpoint"), ("old", "Old checkpoint"), ("new", "New checkpoint")):
        if key in doc:
            parts.append(Panel(_fields(checkpoint_rows(doc[key])), title=title, title_align="left"))
    if "entry" in doc:
        entry = doc["entry"]
        parts.append(
            Panel(
                _fields(
                    [
                        ("index", str(entry["index"])),
                        ("leaf hash", entry["leaf_hash_hex"]),
                        ("content", entry["description"]),
                    ]
                ),
                title="Entry",
                title_align="left",
            )
        )
    console.print(Group(*parts))
