"""The server's verdict on a claim: what a full bundle's verifier computes, and its JSON.

The verdict is evaluated by the core (attest_core.evaluation) on the claim's full evidence
(gateway.evidence: per device, the sequence range from the reading before the period to the one
after it) in the tree of the latest checkpoint, exactly as a verifier evaluates the full bundle;
:func:`fingerprint` sums that evidence up in a few numbers, so a verdict can be cached until the
evidence changes (a reading after the period logged later proves the end edge: it changes them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import asyncpg

from attest_core.chains import chain_findings
from attest_core.claimchain import LoggedClaim
from attest_core.entries import ClaimEntry, decode_entry
from attest_core.evaluation import AttestedReading, Evaluation, EvidenceKind, evaluate
from attest_core.merkle import leaf_hash
from attest_core.money import format_kwh, round_down
from attest_core.reading import decode_envelope, decode_payload, reading_hash
from gateway.claims import StoredClaim, chain_entries
from gateway.evidence import CHUNK, full_readings, identity_entries, reading_args, replay

_FULL_ENVELOPES = full_readings("r.log_index, r.envelope")
_FULL_SUMMARY = (
    f"SELECT count(*) AS n, coalesce(max(log_index), -1) AS last FROM ({full_readings('r.log_index')}) f"  # noqa: S608
)


def _attested(rows: Sequence[asyncpg.Record]) -> list[AttestedReading]:
    out = []
    for r in rows:
        envelope = decode_envelope(bytes(r["envelope"]))
        out.append(
            AttestedReading(r["log_index"], decode_payload(envelope.payload), reading_hash(envelope.payload))
        )
    return out


async def fingerprint(conn: asyncpg.Connection, stored: StoredClaim, size: int) -> tuple[int, ...]:
    """What the evidence of a claim in the tree of ``size`` consists of, in brief (for caching a verdict).

    Its chain of earlier claims counts too: a withdrawal or supersession logged later changes it."""
    claim = stored.claim
    chain = [i for i, _ in await chain_entries(conn, stored.entry, size)]
    readings = await conn.fetchrow(_FULL_SUMMARY, *reading_args(claim, size))
    identity = await conn.fetchrow(
        "SELECT count(*) AS n, coalesce(max(e.idx), -1) AS last FROM entries e JOIN devices d "
        "ON d.device_id = e.device_id WHERE d.asset_id = ANY($1::text[]) AND e.idx < $2",
        list(claim.assets),
        size,
    )
    return (
        readings["n"],
        readings["last"],
        identity["n"],
        identity["last"],
        len(chain),
        max(chain, default=-1),
    )


async def evaluate_claim(conn: asyncpg.Connection, stored: StoredClaim, size: int) -> Evaluation:
    """The verdict on full evidence in the tree of ``size``: what a full bundle's verifier computes."""
    assert stored.log_index is not None
    claim = stored.claim
    chain = await chain_entries(conn, stored.entry, size)
    identity = await identity_entries(conn, claim, size)
    registry = await asyncio.to_thread(replay, identity)
    readings: list[AttestedReading] = []
    async with conn.transaction():
        cursor = await conn.cursor(_FULL_ENVELOPES, *reading_args(claim, size))
        while rows := await cursor.fetch(CHUNK):
            readings.extend(await asyncio.to_thread(_attested, rows))
    evaluation = await asyncio.to_thread(evaluate, claim, registry.devices, readings, EvidenceKind.FULL)
    subject = decode_entry(stored.entry)
    assert isinstance(subject, ClaimEntry)
    devices = registry.devices
    evaluation.findings.extend(
        chain_findings(
            LoggedClaim(stored.log_index, leaf_hash(stored.entry), subject),
            ((i, leaf_hash(data), decode_entry(data)) for i, data in [*chain, *identity]),
            lambda device_id: devices[device_id].asset_id if device_id in devices else None,
        )
    )
    return evaluation


def decimal_text(value: Decimal) -> str:
    """A Decimal written plainly (no exponent)."""
    return format(value, "f")


def verdict_json(evaluation: Evaluation, size: int) -> dict[str, Any]:
    claim = evaluation.claim
    return {
        "backed": evaluation.backed,
        "checkpoint_size": size,
        "energy_mwh": evaluation.energy_mwh,
        "energy_kwh": format_kwh(evaluation.energy_mwh),
        "revenue": decimal_text(evaluation.revenue),
        "revenue_exact": decimal_text(evaluation.revenue_exact),
        "currency": claim.currency,
        "readings_evaluated": evaluation.readings_seen,
        "evidence": "full",
        "checks": [c.to_json() for c in evaluation.checks],
        "assets": [
            {
                "asset_id": a.asset_id,
                "kind": None if a.kind is None else a.kind.label,
                "readings_counted": a.readings_counted,
                "complete": a.complete,
                "evidence": a.evidence,
                "energy_mwh": a.energy_mwh,
                "energy_kwh": format_kwh(a.energy_mwh),
                "meter_signed_mwh": a.meter_signed_mwh,
                "meter_signed_kwh": format_kwh(a.meter_signed_mwh),
                "revenue": decimal_text(round_down(a.revenue_exact, claim.currency)),
                "devices": [
                    {
                        "device_id": d.device_id,
                        "readings_counted": d.readings_counted,
                        "first_seq": d.first_seq,
                        "last_seq": d.last_seq,
                        "evidence": None if d.evidence is None else d.evidence.value,
                        "start_proven": d.start_proven,
                        "end_proven": d.end_proven,
                        "missing_seqs": d.missing_seqs,
                        "energy_mwh": d.energy_mwh,
                        "energy_kwh": format_kwh(d.energy_mwh),
                        "meter_signed_readings": d.meter_signed_readings,
                        "meter_signed_mwh": d.meter_signed_mwh,
                    }
                    for d in a.devices
                ],
            }
            for a in evaluation.assets
        ],
        "findings": [
            {
                "severity": f.severity.value,
                "code": f.code,
                "message": f.message,
                "asset_id": f.asset_id,
                "device_id": f.device_id,
                "seq": f.seq,
                "log_index": f.log_index,
            }
            for f in evaluation.findings
        ],
    }
