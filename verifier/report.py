"""The verifier's report: one JSON document, built from :mod:`attest_core` results.

The terminal output (:mod:`verifier.render`), the HTML page
(:mod:`verifier.html`) and ``--json`` (what ``make demo`` writes as
``report.json``) all show this one document, so they never disagree.

``iot-attest-report/v1`` members (times are given both as numbers and as UTC
ISO 8601 text; energy as exact kWh decimal strings and integer mWh; money as
plain decimal strings in the claim's currency)::

    format        "iot-attest-report/v1"
    verdict       "backed" | "not_backed" | "invalid"
    exit_code     0 | 1 | 2
    bundle        {file, bytes, sha256}                 what was checked
    log           {name, key_id, fingerprint, key}      the key the auditor supplied
    error         {code, message}                       only when the verdict is "invalid"
    checkpoint    {origin, size, root_hash, root_hash_hex, time, time_utc,
                   witnesses: [{name, key_id, time, time_utc}]}
    evidence      {format, declared, require_full, full_devices, boundary_devices, insufficient, summary,
                   require_meter_signed}
    checks        [{check, description, on_full, on_boundary, full_devices, boundary_devices}]
    claim         {log_index, issuer, title, period: {start_ms, end_ms, start, end},
                   assets, tariff: {currency, description, segments: [{start_minute, price_per_kwh}]},
                   claimed_energy_kwh, claimed_energy_mwh, claimed_amount, currency,
                   unit: {symbol, decimals, description, token: null | {asset, chain_id, address,
                   decimals, symbol}}, filed_at_ms, filed_at}
    attested      {energy_kwh, energy_mwh, revenue, revenue_exact, currency,
                   energy_covered, revenue_covered}
    assets        [{asset_id, kind, rated_power_w, devices: [{device_id, readings_counted,
                    first_seq, last_seq, first_time_ms, last_time_ms, missing_seqs, evidence,
                    start_proven, end_proven, energy_kwh, energy_mwh, meter_signed_readings,
                    meter_signed_mwh}], readings_counted, evidence, energy_kwh, energy_mwh,
                    meter_signed: {energy_kwh, energy_mwh, readings, share}, revenue, revenue_exact, series: [[time_ms, energy_mwh], ...]}]
    findings      [Finding.to_json(): {severity, code, message, asset_id?, device_id?, seq?, log_index?}],
                  fatal first, then warnings, then info
    summary       {fatal, warning, info}
    stats         {entries, readings_verified, seconds, readings_per_second}
    generated_at  when the report was made (UTC)

``checkpoint`` to ``summary`` and ``stats`` are present only when the evidence
is valid.  The top-level ``evidence`` says what the bundle declares
(``declared``: ``"full"``, ``"boundary"``, or null for a v1 bundle, whose devices
are each classified by their readings), how many devices were evaluated on each
kind, and whether ``--require-full`` was given and found boundary evidence
(``insufficient``: the claim is then not backed); ``checks`` says which check ran
on which evidence.  An asset's ``evidence`` is ``"full"`` (every device with
readings has full evidence: every check ran on every interval), ``"boundary"``
(a device has boundary evidence) or ``"none"`` (no reading in the period); a
device's is ``"full"``, ``"boundary"`` or null (none of its readings).  ``series``
is the asset's cumulative attested energy at reading times: a subset of at most
:data:`MAX_SERIES_POINTS` exact points, always with the first and the last.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from attest_core.bundle import VerifiedBundle
from attest_core.checkpoint import Checkpoint, SignedCheckpoint
from attest_core.claim import Claim
from attest_core.currency import Currency
from attest_core.errors import AttestError
from attest_core.evaluation import AssetResult, EvidenceKind, Severity
from attest_core.money import format_kwh, round_down
from attest_core.note import VerifierKey
from verifier.errors import ExitCode
from verifier.inputs import describe_key

REPORT_FORMAT = "iot-attest-report/v1"
MAX_SERIES_POINTS = 200

_SEVERITY_ORDER = {Severity.FATAL: 0, Severity.WARNING: 1, Severity.INFO: 2}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_ms(time_ms: int) -> str:
    """Unix milliseconds as UTC ISO 8601 (``2026-10-01T00:00:00Z``, milliseconds only when not zero)."""
    when = _EPOCH + timedelta(milliseconds=time_ms)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if time_ms % 1000:
        text += f".{time_ms % 1000:03d}"
    return text + "Z"


def iso_s(time_s: int) -> str:
    """Unix seconds as UTC ISO 8601."""
    try:
        return iso_ms(time_s * 1000)
    except OverflowError:  # a signed time beyond year 9999: show the number
        return f"{time_s} s after 1970"


def now_iso() -> str:
    return iso_ms(int(datetime.now(UTC).timestamp() * 1000) // 1000 * 1000)


def plain(value: Decimal) -> str:
    """A Decimal written plainly, never in exponent notation."""
    return format(value, "f")


def bundle_info(path: str, data: bytes | None) -> dict[str, Any]:
    info: dict[str, Any] = {"file": path}
    if data is not None:
        info["bytes"] = len(data)
        info["sha256"] = hashlib.sha256(data).hexdigest()
    return info


def checkpoint_info(signed: SignedCheckpoint) -> dict[str, Any]:
    cp: Checkpoint = signed.checkpoint
    return {
        "origin": cp.origin,
        "size": cp.size,
        "root_hash": base64.b64encode(cp.root_hash).decode("ascii"),
        "root_hash_hex": cp.root_hash.hex(),
        "time": cp.time,
        "time_utc": None if cp.time is None else iso_s(cp.time),
        "witnesses": [
            {
                "name": c.witness.name,
                "key_id": c.witness.key_id.hex(),
                "time": c.time,
                "time_utc": iso_s(c.time),
            }
            for c in signed.cosignatures
        ],
    }


def claim_info(claim: Claim, log_index: int) -> dict[str, Any]:
    return {
        "log_index": log_index,
        "issuer": claim.issuer,
        "title": claim.title,
        "period": {
            "start_ms": claim.period_start_ms,
            "end_ms": claim.period_end_ms,
            "start": iso_ms(claim.period_start_ms),
            "end": iso_ms(claim.period_end_ms),
        },
        "assets": list(claim.assets),
        "tariff": {
            "currency": claim.currency,
            "description": claim.tariff.describe(),
            "segments": [
                {"start_minute": s.start_minute, "price_per_kwh": s.price_per_kwh}
                for s in claim.tariff.segments
            ],
        },
        "claimed_energy_kwh": format_kwh(claim.claimed_energy_mwh),
        "claimed_energy_mwh": claim.claimed_energy_mwh,
        "claimed_amount": claim.claimed_amount,
        "currency": claim.currency,
        "unit": unit_info(claim.unit),
        "filed_at_ms": claim.filed_at_ms,
        "filed_at": iso_ms(claim.filed_at_ms),
    }


def unit_info(unit: Currency) -> dict[str, Any]:
    """What amounts are in: the symbol they are shown with, the decimals they are rounded down to,
    and for a token its identity (chain id and address; the symbol is only a label)."""
    token = unit.token
    return {
        "symbol": unit.symbol,
        "decimals": unit.decimals,
        "description": unit.describe(),
        "token": None
        if token is None
        else {
            "asset": token.asset_id,
            "chain_id": token.chain_id,
            "address": token.address,
            "decimals": token.decimals,
            "symbol": token.symbol,
        },
    }


def thin_series(points: list[tuple[int, int]], limit: int = MAX_SERIES_POINTS) -> list[list[int]]:
    """At most ``limit`` of ``points``, evenly spread, always keeping the first and the last."""
    if len(points) <= limit:
        return [[t, e] for t, e in points]
    last = len(points) - 1
    picks = sorted({round(i * last / (limit - 1)) for i in range(limit)})
    return [[points[i][0], points[i][1]] for i in picks]


def asset_info(asset: AssetResult, currency: str) -> dict[str, Any]:
    counted = asset.readings_counted
    return {
        "asset_id": asset.asset_id,
        "kind": None if asset.kind is None else asset.kind.label,
        "rated_power_w": asset.rated_power_w,
        "devices": [
            {
                "device_id": d.device_id,
                "readings_counted": d.readings_counted,
                "first_seq": d.first_seq,
                "last_seq": d.last_seq,
                "first_time_ms": d.first_time_ms,
                "last_time_ms": d.last_time_ms,
                "missing_seqs": d.missing_seqs,
                "evidence": None if d.evidence is None else d.evidence.value,
                "start_proven": d.start_proven,
                "end_proven": d.end_proven,
                "energy_kwh": format_kwh(d.energy_mwh),
                "energy_mwh": d.energy_mwh,
                "meter_signed_readings": d.meter_signed_readings,
                "meter_signed_mwh": d.meter_signed_mwh,
            }
            for d in asset.devices
        ],
        "readings_counted": counted,
        "evidence": asset.evidence,
        "energy_kwh": format_kwh(asset.energy_mwh),
        "energy_mwh": asset.energy_mwh,
        "meter_signed": meter_signed_info(asset),
        "revenue": plain(round_down(asset.revenue_exact, currency)),
        "revenue_exact": plain(asset.revenue_exact),
        "series": thin_series(asset.series),
    }


def meter_signed_info(asset: AssetResult) -> dict[str, Any]:
    """The asset's energy its meters signed themselves (attest_core.metercheck), and its share."""
    share = asset.meter_signed_share
    return {
        "energy_kwh": format_kwh(asset.meter_signed_mwh),
        "energy_mwh": asset.meter_signed_mwh,
        "readings": sum(d.meter_signed_readings for d in asset.devices),
        "share": None if share is None else plain(share.quantize(Decimal("0.0001"), rounding=ROUND_DOWN)),
    }


def evidence_info(result: VerifiedBundle, require_full: bool) -> dict[str, Any]:
    """What the bundle declares, what each device was evaluated as, and whether that sufficed."""
    evaluation = result.evaluation
    kinds = [d.evidence for a in evaluation.assets for d in a.devices if d.evidence is not None]
    full = sum(1 for k in kinds if k is EvidenceKind.FULL)
    boundary = len(kinds) - full
    declared = evaluation.declared
    if declared is None:
        summary = (
            f"a v1 bundle, which does not declare its evidence: {full} device(s) show full evidence (every "
            f"reading from the one before the period to the one after it), {boundary} are treated as boundary"
        )
    elif declared is EvidenceKind.FULL:
        summary = f"full evidence: every reading of {full} device(s) from the one before the period to the one after it"
    else:
        summary = (
            f"boundary evidence: the first and last reading in the period of {boundary} device(s); the checks "
            "that need every interval did not run between them"
        )
    insufficient = require_full and boundary > 0
    if insufficient:
        summary += (
            f"; full evidence is required (--require-full) and {boundary} device(s) have boundary evidence"
        )
    return {
        "format": result.format,
        "declared": None if declared is None else declared.value,
        "require_full": require_full,
        "full_devices": full,
        "boundary_devices": boundary,
        "insufficient": insufficient,
        "summary": summary,
    }


def valid_report(
    result: VerifiedBundle,
    seconds: float,
    log_key: VerifierKey,
    bundle: dict[str, Any],
    *,
    require_full: bool = False,
    require_meter_signed: bool = False,
) -> dict[str, Any]:
    """The report of a bundle whose evidence is valid (verdict backed or not_backed), verified in ``seconds``.

    ``require_full``, ``require_meter_signed``: the bundle was verified with them (the findings
    then say what falls short).
    """
    evaluation = result.evaluation
    claim = result.claim
    backed = result.backed
    counts = {s.value: 0 for s in Severity}
    for finding in evaluation.findings:
        counts[finding.severity.value] += 1
    return {
        "format": REPORT_FORMAT,
        "verdict": "backed" if backed else "not_backed",
        "exit_code": int(ExitCode.OK if backed else ExitCode.NOT_BACKED),
        "bundle": bundle,
        "log": describe_key(log_key),
        "evidence": evidence_info(result, require_full) | {"require_meter_signed": require_meter_signed},
        "checks": [c.to_json() for c in evaluation.checks],
        "checkpoint": checkpoint_info(result.checkpoint),
        "claim": claim_info(claim, result.claim_index),
        "attested": {
            "energy_kwh": format_kwh(evaluation.energy_mwh),
            "energy_mwh": evaluation.energy_mwh,
            "revenue": plain(evaluation.revenue),
            "revenue_exact": plain(evaluation.revenue_exact),
            "currency": claim.currency,
            "energy_covered": evaluation.energy_mwh >= claim.claimed_energy_mwh,
            "revenue_covered": evaluation.revenue >= claim.claimed_amount_value,
        },
        "assets": [asset_info(a, claim.currency) for a in evaluation.assets],
        "findings": [
            f.to_json() for f in sorted(evaluation.findings, key=lambda f: _SEVERITY_ORDER[f.severity])
        ],
        "summary": counts,
        "stats": {
            "entries": result.entries,
            "readings_verified": result.readings_verified,
            "seconds": round(seconds, 6),
            "readings_per_second": round(result.readings_verified / seconds) if seconds > 0 else None,
        },
        "generated_at": now_iso(),
    }


def invalid_report(code: str, message: str, log_key: VerifierKey, bundle: dict[str, Any]) -> dict[str, Any]:
    """The report of evidence that does not verify (verdict invalid, exit code 2)."""
    return {
        "format": REPORT_FORMAT,
        "verdict": "invalid",
        "exit_code": int(ExitCode.INVALID),
        "bundle": bundle,
        "log": describe_key(log_key),
        "error": {"code": code, "message": message},
        "generated_at": now_iso(),
    }


def error_of(exc: AttestError) -> tuple[str, str]:
    return exc.code, exc.message
