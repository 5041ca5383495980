"""Claim evaluation: from verified readings to a verdict with every finding named.

This module assumes its inputs are already authenticated (signatures, proofs
and device keys checked by :mod:`attest_core.bundle` or the gateway).  It
decides what those readings *attest* (the result types are
:mod:`attest_core.verdict`'s), by the rules below.  They stay in this one
module (about 400 lines) so that each is read beside the others that decide a
verdict:

Which readings count
    For each device enrolled for a claimed asset, the readings whose device time
    lies in the claim period ``[start, end)`` count, ordered by sequence number.
    Readings a revocation disowns do not count.

Energy
    A device attests the sum, over consecutive counted readings, of the
    increase of its cumulative register: with a monotonic register this is
    register(last reading in the period) - register(first reading in the
    period).  Energy before the first and after the last reading of the period
    is not attested (never interpolated), so the figure never exceeds what was
    metered inside the period.  An asset's energy is the sum of its devices'.

Revenue
    Each interval's energy is priced by :meth:`Tariff.min_price` (the lowest
    price in force during the interval), exactly, with ``Decimal``.  The total
    is rounded *down* to the currency's minor unit.  Per-asset figures are
    shown rounded down too; the total is rounded once, from the exact sum.

Plausibility (on every pair of consecutive readings present, in or out of the period)
    * the register never decreases                                     (fatal)
    * device time never goes backwards as the sequence number rises     (fatal)
    * where sequence numbers are consecutive, the later reading carries
      the hash of the earlier (seq 1: the enrolment's chain anchor)     (fatal)
    * implied power never exceeds the rated power by more than
      :data:`POWER_TOLERANCE` (plus :data:`CLOCK_SLACK_MS` of clock slack
      and :data:`QUANTUM_SLACK_MWH` of register resolution)             (fatal)
    * a solar asset produces at most :data:`NIGHT_SLACK_MWH` in an interval
      that lies wholly in night at its location                         (fatal)
    * two different readings for one device and sequence number:
      equivocation                                                       (fatal)
    * a counted reading whose meter reports tampering or an error       (fatal)
    * two devices of one asset with overlapping counted readings        (fatal)
    * gaps in the sequence, unsynchronised clocks, missing location      (warning/info)

Verdict
    "backed" means: no fatal finding, attested energy >= claimed energy and
    attested revenue >= claimed amount.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

from attest_core.claim import Claim
from attest_core.counters import consecutive_mismatch, first_mismatch
from attest_core.device import AssetKind
from attest_core.money import EXACT, energy_value, format_kwh
from attest_core.power import (  # the rated-power rule lives there: the device tracks it too
    CLOCK_SLACK_MS,
    POWER_TOLERANCE,
    QUANTUM_SLACK_MWH,
    allowed_energy_mwh,
    exceeds_rated_power,
)
from attest_core.reading import FATAL_STATUS, Status
from attest_core.registry import DeviceRecord
from attest_core.sun import is_night_throughout
from attest_core.verdict import (
    AssetResult,
    AttestedReading,
    DeviceResult,
    Evaluation,
    Finding,
    Severity,
)

__all__ = [
    "CLOCK_SLACK_MS",
    "NIGHT_SLACK_MWH",
    "POWER_TOLERANCE",
    "QUANTUM_SLACK_MWH",
    "AssetResult",
    "AttestedReading",
    "DeviceResult",
    "Evaluation",
    "Finding",
    "Severity",
    "allowed_energy_mwh",
    "boundary_seqs",
    "evaluate",
    "exceeds_rated_power",
    "in_period",
]

NIGHT_SLACK_MWH = 2_000
"""A solar asset may register up to 2 Wh in a night interval (a pulse at dusk)."""


_FATAL_BITS = int(FATAL_STATUS)
_UNSYNCED_BIT = int(Status.TIME_UNSYNCED)


def in_period(claim: Claim, time_ms: int) -> bool:
    return claim.period_start_ms <= time_ms < claim.period_end_ms


def boundary_seqs(
    readings: Iterable[tuple[int, int]], claim: Claim, last_valid_seq: int | None = None
) -> tuple[int, int] | None:
    """The sequence numbers a boundary-mode bundle needs from one device.

    ``readings`` are (seq, device time ms).  Returns the first and last sequence
    number that counts (in the claim period, and not above the device's
    ``last_valid_seq`` if a revocation set one), or None if none does.
    """
    inside = [
        seq
        for seq, t in readings
        if in_period(claim, t) and (last_valid_seq is None or seq <= last_valid_seq)
    ]
    if not inside:
        return None
    return min(inside), max(inside)


def evaluate(
    claim: Claim,
    devices: Mapping[str, DeviceRecord],
    readings: Sequence[AttestedReading],
) -> Evaluation:
    """Evaluate ``claim`` from verified ``devices`` and ``readings`` (see the module's rules)."""
    findings: list[Finding] = []
    by_device: dict[str, list[AttestedReading]] = defaultdict(list)
    for item in readings:
        by_device[item.reading.device_id].append(item)

    devices_of_asset: dict[str, list[DeviceRecord]] = defaultdict(list)
    for record in devices.values():
        devices_of_asset[record.asset_id].append(record)

    assets: list[AssetResult] = []
    for asset_id in claim.assets:
        records = sorted(devices_of_asset.get(asset_id, []), key=lambda r: r.enrolment_index)
        result = AssetResult(asset_id, records[0].asset_kind if records else None)
        result.rated_power_w = max((r.rated_power_w for r in records), default=0)
        if not records:
            findings.append(
                Finding(
                    Severity.WARNING,
                    "no_device",
                    f"asset {asset_id}: no enrolled device in the evidence",
                    asset_id=asset_id,
                )
            )
        points: list[tuple[int, int]] = []
        for record in records:
            device = _evaluate_device(claim, record, by_device.get(record.device_id, []), findings, points)
            result.devices.append(device)
            result.energy_mwh += device.energy_mwh
            result.revenue_exact = EXACT.add(result.revenue_exact, device.revenue_exact)
        _check_overlap(asset_id, result.devices, findings)
        if result.readings_counted == 0:
            findings.append(
                Finding(
                    Severity.WARNING,
                    "no_readings",
                    f"asset {asset_id}: no reading in the claim period, so it attests nothing",
                    asset_id=asset_id,
                )
            )
        points.sort()
        running = 0
        for t, delta in points:
            running += delta
            result.series.append((t, running))
        assets.append(result)

    evaluation = Evaluation(claim, assets, findings, len(readings))
    _check_claim(evaluation)
    return evaluation


def _evaluate_device(
    claim: Claim,
    record: DeviceRecord,
    items: list[AttestedReading],
    findings: list[Finding],
    points: list[tuple[int, int]],
) -> DeviceResult:
    asset_id, device_id = record.asset_id, record.device_id
    result = DeviceResult(device_id)

    def add(severity: Severity, code: str, message: str, item: AttestedReading | None = None) -> None:
        findings.append(
            Finding(
                severity,
                code,
                f"asset {asset_id}, device {device_id}: {message}",
                asset_id=asset_id,
                device_id=device_id,
                seq=None if item is None else item.reading.seq,
                log_index=None if item is None else item.log_index,
            )
        )

    # One reading per sequence number; a second, different one is an equivocation.
    by_seq: dict[int, AttestedReading] = {}
    for item in sorted(items, key=lambda i: i.log_index):
        seen = by_seq.get(item.reading.seq)
        if seen is None:
            by_seq[item.reading.seq] = item
        elif seen.payload_hash != item.payload_hash:
            add(
                Severity.FATAL,
                "equivocation",
                f"two different signed readings with sequence number {item.reading.seq} "
                f"(log entries {seen.log_index} and {item.log_index})",
                item,
            )
        else:
            add(
                Severity.WARNING,
                "duplicate_reading",
                f"reading {item.reading.seq} is logged twice (entries {seen.log_index} and {item.log_index}); "
                "counted once",
                item,
            )

    ordered = [by_seq[s] for s in sorted(by_seq)]
    counted: list[AttestedReading] = []
    disowned = 0
    unsynced = 0
    start, end = claim.period_start_ms, claim.period_end_ms
    for item in ordered:
        r = item.reading
        if record.disowns(r.seq):
            disowned += 1
            continue
        if start <= r.time_ms < end:  # in_period
            counted.append(item)
            bits = int(r.status)  # plain int operations: Status's own are ten times slower
            if bits & _FATAL_BITS:
                flags = Status(bits & _FATAL_BITS)
                add(Severity.FATAL, "meter_fault", f"reading {r.seq}: the meter reports {flags!r}", item)
            if bits & _UNSYNCED_BIT:
                unsynced += 1
    if disowned:
        add(
            Severity.WARNING,
            "disowned_readings",
            f"{disowned} readings are disowned by the device's revocation and not counted",
        )
    if unsynced:
        add(
            Severity.WARNING,
            "time_unsynced",
            f"{unsynced} counted readings were taken with an unsynchronised clock",
        )
    if record.asset_kind is AssetKind.SOLAR and record.location is None and counted:
        add(
            Severity.INFO,
            "no_location",
            "solar asset enrolled without a location: the night check did not run",
        )

    # Plausibility on every consecutive pair present (in or out of the period).
    first = ordered[0] if ordered else None
    if first is not None and first.reading.seq == 1 and first.reading.prev_hash != record.chain_anchor:
        add(
            Severity.FATAL,
            "chain_break",
            "reading 1 does not link to the device's enrolment (prev_hash is not the enrolment anchor)",
            first,
        )
    if first is not None and (problem := first_mismatch(first.reading)) is not None:
        add(Severity.FATAL, "counters_inconsistent", problem, first)
    location = record.location if record.asset_kind is AssetKind.SOLAR else None
    for a, b in itertools.pairwise(ordered):
        ra, rb = a.reading, b.reading
        if rb.seq == ra.seq + 1 and rb.prev_hash != a.payload_hash:
            add(
                Severity.FATAL,
                "chain_break",
                f"reading {rb.seq} does not carry the hash of reading {ra.seq}",
                b,
            )
        if rb.seq == ra.seq + 1 and (problem := consecutive_mismatch(ra, rb)) is not None:
            add(Severity.FATAL, "counters_inconsistent", problem, b)
        if rb.time_ms < ra.time_ms:
            add(
                Severity.FATAL,
                "time_backwards",
                f"reading {rb.seq} is dated before reading {ra.seq} ({rb.time_ms} < {ra.time_ms} ms)",
                b,
            )
        delta = rb.energy_mwh - ra.energy_mwh
        if delta < 0:
            add(
                Severity.FATAL,
                "register_decreased",
                f"the register fell from {format_kwh(ra.energy_mwh)} kWh (reading {ra.seq}) to "
                f"{format_kwh(rb.energy_mwh)} kWh (reading {rb.seq})",
                b,
            )
            continue
        dt_ms = rb.time_ms - ra.time_ms
        if exceeds_rated_power(record.rated_power_w, dt_ms, delta):
            implied_w = delta * 3_600 // max(dt_ms, 1)
            add(
                Severity.FATAL,
                "over_rated_power",
                f"readings {ra.seq}->{rb.seq}: {format_kwh(delta)} kWh in {dt_ms / 1000:g} s implies "
                f"about {implied_w} W, above the rated {record.rated_power_w} W (+10 %)",
                b,
            )
        if (
            location is not None
            and delta > NIGHT_SLACK_MWH
            and is_night_throughout(location.lat_e6, location.lon_e6, ra.time_ms, rb.time_ms)
        ):
            add(
                Severity.FATAL,
                "night_production",
                f"readings {ra.seq}->{rb.seq}: {format_kwh(delta)} kWh produced while the sun was more than "
                "6° below the horizon",
                b,
            )

    # Energy and revenue over counted pairs.
    if counted:
        result.readings_counted = len(counted)
        result.first_seq, result.last_seq = counted[0].reading.seq, counted[-1].reading.seq
        result.first_time_ms, result.last_time_ms = counted[0].reading.time_ms, counted[-1].reading.time_ms
        result.missing_seqs = (result.last_seq - result.first_seq + 1) - len(counted)
        points.append((counted[0].reading.time_ms, 0))
        for a, b in itertools.pairwise(counted):
            delta = b.reading.energy_mwh - a.reading.energy_mwh
            if delta <= 0:
                continue
            result.energy_mwh += delta
            price = claim.tariff.min_price(a.reading.time_ms, b.reading.time_ms)
            result.revenue_exact = EXACT.add(result.revenue_exact, energy_value(delta, price))
            points.append((b.reading.time_ms, delta))
        if result.missing_seqs:
            add(
                Severity.INFO,
                "sequence_gaps",
                f"{result.missing_seqs} readings between {result.first_seq} and {result.last_seq} are not in the "
                "evidence (boundary evidence, or readings never received): the chain is checked only where "
                "readings are consecutive",
            )
    return result


def _check_overlap(asset_id: str, results: list[DeviceResult], findings: list[Finding]) -> None:
    spans = sorted(
        (d.first_time_ms, d.last_time_ms, d.device_id)
        for d in results
        if d.first_time_ms is not None and d.last_time_ms is not None
    )
    for (_, e1, d1), (s2, e2, d2) in itertools.pairwise(spans):
        if s2 <= e1:
            findings.append(
                Finding(
                    Severity.FATAL,
                    "devices_overlap",
                    f"asset {asset_id}: devices {d1} and {d2} both metered it between {_utc(s2)} and "
                    f"{_utc(min(e1, e2))}: one asset is metered by one device at a time",
                    asset_id=asset_id,
                )
            )


def _utc(time_ms: int) -> str:
    return (
        datetime.fromtimestamp(time_ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _check_claim(evaluation: Evaluation) -> None:
    claim = evaluation.claim
    if claim.claimed_energy_mwh > evaluation.energy_mwh:
        evaluation.findings.append(
            Finding(
                Severity.FATAL,
                "energy_overclaimed",
                f"the claim states {format_kwh(claim.claimed_energy_mwh)} kWh, the readings attest "
                f"{format_kwh(evaluation.energy_mwh)} kWh",
            )
        )
    if claim.claimed_amount_value > evaluation.revenue:
        evaluation.findings.append(
            Finding(
                Severity.FATAL,
                "revenue_overclaimed",
                f"the claim states {claim.claimed_amount} {claim.currency}, the readings attest "
                f"{evaluation.revenue} {claim.currency} at {claim.tariff.describe()}",
            )
        )
