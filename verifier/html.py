"""The report as one self-contained HTML page (no scripts, no external resources).

Each asset's cumulative attested energy over the claim period is drawn as
inline SVG from the report's ``series`` points.  Every value is escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any

from verifier.report import iso_ms

MAX_CHARTS = 200
"""A portfolio of thousands of assets gets charts for the first ones only (the table has them all)."""

_W, _H = 360, 150
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 56, 12, 10, 34

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:72rem;
 padding:0 1rem;color:#1d232a;line-height:1.4}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ccd;
 padding-bottom:.2rem}
.verdict{padding:1rem 1.2rem;border-radius:.4rem;color:#fff;font-size:1.1rem}
.backed{background:#1b7f3b}.not_backed{background:#b85c00}.invalid{background:#b3261e}
.verdict strong{font-size:1.3rem;margin-right:.8rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.92rem}
th,td{text-align:left;padding:.25rem .7rem;border-bottom:1px solid #e3e6ea;vertical-align:top}
th{background:#f3f5f7}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.fields th{background:none;white-space:nowrap}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85rem;
 word-break:break-all}
.fatal{color:#b3261e;font-weight:600}.warning{color:#8a6100}.info{color:#1f5f8b}
.ok{color:#1b7f3b;font-weight:600}.bad{color:#b3261e;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:1rem}.chart{border:1px solid #e3e6ea;border-radius:.3rem;padding:.4rem}
.chart h3{font-size:.9rem;margin:.1rem .3rem}footer{margin-top:2rem;color:#5b6470;font-size:.85rem}
"""

_VERDICT = {
    "backed": ("BACKED", "The evidence is valid and the claim is backed."),
    "not_backed": (
        "NOT BACKED",
        "The evidence is valid, but it does not back the claim (see the fatal findings).",
    ),
    "invalid": ("INVALID EVIDENCE", "The evidence does not verify: nothing in it can be relied on."),
}


def _e(value: object) -> str:
    return escape("" if value is None else str(value))


def _fields(rows: list[tuple[str, str]]) -> str:
    """Rows of (label, already escaped HTML)."""
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="fields">{body}</table>'


def _covered(ok: bool) -> str:
    return '<span class="ok">covered</span>' if ok else '<span class="bad">NOT covered</span>'


def _kwh_label(mwh: int) -> str:
    kwh = mwh / 1_000_000
    return f"{kwh:,.0f} kWh" if kwh >= 100 else f"{kwh:,.3g} kWh"


def asset_chart(asset: dict[str, Any], start_ms: int, end_ms: int) -> str:
    """Inline SVG: cumulative attested energy of one asset over [start_ms, end_ms)."""
    points: list[list[int]] = asset["series"]
    span = max(end_ms - start_ms, 1)
    top = max((e for _, e in points), default=0) or 1
    plot_w, plot_h = _W - _PAD_L - _PAD_R, _H - _PAD_T - _PAD_B

    def x(t: int) -> float:
        return _PAD_L + plot_w * min(max((t - start_ms) / span, 0.0), 1.0)

    def y(e: int) -> float:
        return _PAD_T + plot_h * (1 - e / top)

    coords = " ".join(f"{x(t):.1f},{y(e):.1f}" for t, e in points)
    x0, x1, y0, y1 = _PAD_L, _PAD_L + plot_w, _PAD_T + plot_h, _PAD_T
    label = f"{asset['asset_id']}: cumulative attested energy, {asset['energy_kwh']} kWh in the period"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
        f'role="img" aria-label="{_e(label)}">',
        f"<title>{_e(label)}</title>",
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#889" stroke-width="1"/>',
        f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#889" stroke-width="1"/>',
        f'<line x1="{x0}" y1="{y1}" x2="{x1}" y2="{y1}" stroke="#dde" stroke-dasharray="3,3"/>',
        f'<text x="{x0 - 4}" y="{y1 + 4}" font-size="10" text-anchor="end">{_e(_kwh_label(top))}</text>',
        f'<text x="{x0 - 4}" y="{y0}" font-size="10" text-anchor="end">0</text>',
        f'<text x="{x0}" y="{_H - 18}" font-size="10">{_e(_iso_date(start_ms))}</text>',
        f'<text x="{x1}" y="{_H - 18}" font-size="10" text-anchor="end">{_e(_iso_date(end_ms))}</text>',
        f'<text x="{(x0 + x1) / 2:.0f}" y="{_H - 4}" font-size="10" text-anchor="middle">time (UTC)</text>',
    ]
    if len(points) >= 2:
        parts.append(
            f'<polyline points="{coords}" fill="none" stroke="#1f6fb2" stroke-width="2" '
            'stroke-linejoin="round"/>'
        )
    for t, e in points[-1:] if points else []:
        parts.append(f'<circle cx="{x(t):.1f}" cy="{y(e):.1f}" r="3" fill="#1f6fb2"/>')
    if not points:
        parts.append(
            f'<text x="{(x0 + x1) / 2:.0f}" y="{(y0 + y1) / 2:.0f}" font-size="12" text-anchor="middle" '
            'fill="#b3261e">no reading in the period</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _iso_date(time_ms: int) -> str:
    return iso_ms(time_ms)[:16].replace("T", " ")


def _checkpoint(cp: dict[str, Any]) -> str:
    rows = [
        ("origin", f"<code>{_e(cp['origin'])}</code>"),
        ("tree size", f"{_e(cp['size'])} entries"),
        ("root hash", f"<code>{_e(cp['root_hash'])}</code><br><code>{_e(cp['root_hash_hex'])}</code>"),
        ("signed at", _e(cp["time_utc"] or "no time line")),
    ]
    for w in cp["witnesses"]:
        rows.append(
            (
                "cosigned by",
                f"witness <code>{_e(w['name'])}</code> (key id {_e(w['key_id'])}) at {_e(w['time_utc'])}",
            )
        )
    if not cp["witnesses"]:
        rows.append(("cosigned by", "no trusted witness required or given"))
    return _fields(rows)


def _meter_signed(info: dict[str, Any]) -> str:
    if not info["readings"]:
        return "-"
    share = info["share"]
    return info["energy_kwh"] if share is None else f"{info['energy_kwh']} ({float(share):.0%})"


def _assets(doc: dict[str, Any]) -> str:
    cur = doc["claim"]["unit"]["symbol"]
    head = (
        "<tr><th>asset</th><th>kind</th><th class=num>devices</th><th class=num>readings counted</th>"
        f"<th>evidence</th><th class=num>energy kWh</th><th class=num>meter-signed kWh</th>"
        f"<th class=num>revenue {_e(cur)}</th></tr>"
    )
    rows = []
    for a in doc["assets"]:
        rows.append(
            f"<tr><td><code>{_e(a['asset_id'])}</code></td><td>{_e(a['kind'] or '-')}</td>"
            f"<td class=num>{len(a['devices'])}</td><td class=num>{_e(a['readings_counted'])}</td>"
            f"<td>{_e(a['evidence'])}</td><td class=num>{_e(a['energy_kwh'])}</td>"
            f"<td class=num>{_e(_meter_signed(a['meter_signed']))}</td>"
            f"<td class=num>{_e(a['revenue'])}</td></tr>"
        )
    att = doc["attested"]
    total = sum(a["readings_counted"] for a in doc["assets"])
    foot = (
        f"<tr><th>total</th><th></th><th class=num>{sum(len(a['devices']) for a in doc['assets'])}</th>"
        f"<th class=num>{total}</th><th></th><th class=num>{_e(att['energy_kwh'])}</th><th></th>"
        f"<th class=num>{_e(att['revenue'])}</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}{foot}</table>"


def _evidence(doc: dict[str, Any]) -> str:
    ev = doc["evidence"]
    rows = [
        ("format", f"<code>{_e(ev['format'])}</code>"),
        (
            "declared",
            _e(ev["declared"] or "not declared (v1 bundle): each device classified by its readings"),
        ),
        (
            "devices",
            f"{_e(ev['full_devices'])} with full evidence, {_e(ev['boundary_devices'])} with boundary evidence",
        ),
        ("in short", _e(ev["summary"])),
    ]
    if ev["require_full"]:
        rows.append(
            (
                "--require-full",
                '<span class="bad">NOT met</span>' if ev["insufficient"] else '<span class="ok">met</span>',
            )
        )
    head = (
        "<tr><th>check</th><th>what it checks</th><th>on full evidence</th><th>on boundary evidence</th></tr>"
    )
    checks = []
    for c in doc["checks"]:
        full = f"{_e(c['on_full'])} ({_e(c['full_devices'])} devices)" if c["full_devices"] else "no device"
        boundary = (
            f"{_e(c['on_boundary'])} ({_e(c['boundary_devices'])} devices)"
            if c["boundary_devices"]
            else "no device"
        )
        checks.append(
            f"<tr><td><code>{_e(c['check'])}</code></td><td>{_e(c['description'])}</td><td>{full}</td>"
            f"<td>{boundary}</td></tr>"
        )
    return f'{_fields(rows)}<table class="checks">{head}{"".join(checks)}</table>'


def _findings(doc: dict[str, Any]) -> str:
    if not doc["findings"]:
        return '<p class="ok">No findings.</p>'
    head = (
        "<tr><th>severity</th><th>code</th><th>asset</th><th>device</th><th class=num>seq</th>"
        "<th class=num>log index</th><th>message</th></tr>"
    )
    rows = [
        f'<tr><td class="{_e(f["severity"])}">{_e(f["severity"])}</td><td><code>{_e(f["code"])}</code></td>'
        f"<td>{_e(f.get('asset_id', '-'))}</td><td>{_e(f.get('device_id', '-'))}</td>"
        f"<td class=num>{_e(f.get('seq', '-'))}</td><td class=num>{_e(f.get('log_index', '-'))}</td>"
        f"<td>{_e(f['message'])}</td></tr>"
        for f in doc["findings"]
    ]
    return f"<table>{head}{''.join(rows)}</table>"


def _charts(doc: dict[str, Any]) -> str:
    period = doc["claim"]["period"]
    assets = doc["assets"]
    figures = [
        f'<figure class="chart"><h3>{_e(a["asset_id"])} ({_e(a["kind"] or "no device")}): '
        f"{_e(a['energy_kwh'])} kWh</h3>{asset_chart(a, period['start_ms'], period['end_ms'])}</figure>"
        for a in assets[:MAX_CHARTS]
    ]
    note = ""
    if len(assets) > MAX_CHARTS:
        note = f"<p>Charts for the first {MAX_CHARTS} of {len(assets)} assets; the table lists them all.</p>"
    return f'{note}<div class="charts">{"".join(figures)}</div>'


def render_html(doc: dict[str, Any]) -> str:
    """The whole HTML page of a bundle report (valid or invalid)."""
    verdict = doc["verdict"]
    label, meaning = _VERDICT[verdict]
    log, bundle = doc["log"], doc["bundle"]
    banner = (
        f'<div class="verdict {verdict}"><strong>{label}</strong>{_e(meaning)} '
        f"(exit code {_e(doc['exit_code'])})"
    )
    if "error" in doc:
        banner += f"<p><code>[{_e(doc['error']['code'])}]</code> {_e(doc['error']['message'])}</p>"
    if doc.get("evidence", {}).get("insufficient"):
        banner += (
            f"<p><code>[evidence_insufficient]</code> --require-full: {_e(doc['evidence']['boundary_devices'])} "
            "device(s) have boundary evidence, which is insufficient; ask for the full bundle.</p>"
        )
    banner += "</div>"
    inputs = _fields(
        [
            (
                "bundle",
                f"<code>{_e(bundle['file'])}</code> ({_e(bundle.get('bytes', '?'))} bytes, SHA-256 "
                f"<code>{_e(bundle.get('sha256', '?'))}</code>)",
            ),
            (
                "log key",
                f"<code>{_e(log['key'])}</code><br>key id {_e(log['key_id'])}, fingerprint "
                f"<code>{_e(log['fingerprint'])}</code>",
            ),
        ]
    )
    sections = [f"<h1>iot-attest evidence report</h1>{banner}", "<h2>Inputs</h2>", inputs]
    if verdict != "invalid":
        claim, att = doc["claim"], doc["attested"]
        cur = claim["unit"]["symbol"]
        token_row = [("currency", _e(claim["unit"]["description"]))] if claim["unit"]["token"] else []
        sections += [
            "<h2>Claim</h2>",
            _fields(
                [
                    ("issuer", f"<code>{_e(claim['issuer'])}</code>"),
                    ("title", _e(claim["title"])),
                    (
                        "period",
                        f"{_e(claim['period']['start'])} to {_e(claim['period']['end'])} "
                        "(UTC; the end is excluded)",
                    ),
                    ("assets", _e(len(claim["assets"]))),
                    ("tariff", _e(claim["tariff"]["description"])),
                    *token_row,
                    (
                        "energy",
                        f"claimed {_e(claim['claimed_energy_kwh'])} kWh, attested {_e(att['energy_kwh'])} "
                        f"kWh {_covered(att['energy_covered'])}",
                    ),
                    (
                        "amount",
                        f"claimed {_e(claim['claimed_amount'])} {_e(cur)}, attested {_e(att['revenue'])} "
                        f"{_e(cur)} (exact {_e(att['revenue_exact'])}, rounded down) "
                        f"{_covered(att['revenue_covered'])}",
                    ),
                    ("filed", f"{_e(claim['filed_at'])}, log entry {_e(claim['log_index'])}"),
                ]
            ),
            "<h2>Checkpoint</h2>",
            _checkpoint(doc["checkpoint"]),
            "<h2>Evidence: which checks ran on which</h2>",
            _evidence(doc),
            "<h2>Assets</h2>",
            _assets(doc),
            "<h2>Findings</h2>",
            _findings(doc),
            "<h2>Cumulative attested energy</h2>",
            _charts(doc),
        ]
        stats, summary = doc["stats"], doc["summary"]
        sections.append(
            f"<footer>{_e(stats['readings_verified'])} readings verified in {_e(stats['entries'])} log entries in "
            f"{stats['seconds']:.3f} s ({_e(stats['readings_per_second'])} readings/s); findings: "
            f"{summary['fatal']} fatal, {summary['warning']} warning, {summary['info']} info. "
            f"Report generated {_e(doc['generated_at'])} by the iot-attest verifier.</footer>"
        )
    else:
        sections.append(
            f"<footer>Report generated {_e(doc['generated_at'])} by the iot-attest verifier.</footer>"
        )
    title = f"iot-attest report: {label}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>\n"
    )
