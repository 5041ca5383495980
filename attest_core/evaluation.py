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

Which readings the evidence holds (v2)
    The log holds each device's readings as an unbroken sequence from reading 1
    (the sequencer appends reading n only after n - 1).  *Full* evidence is a
    sequence range per device (:func:`full_seqs`): from the reading before the
    first one in the period to the reading after the last one, so both edges are
    proven and a reading whose clock jumped out of the period is still there.  A
    sequence number missing between the lowest and highest present, a missing
    start edge, or a device of the asset with no reading at all (unless it cannot
    count: :func:`needs_edges`) is fatal (``readings_omitted``); so is a missing end
    edge (``end_edge_unproven``: a bundle cut short, or the log held no later
    reading yet; v1 of the protocol made it a warning).  *Boundary*
    evidence (:func:`boundary_seqs`) is the first and last counted reading; the
    checks that need every interval do not run between them (:data:`CHECKS` says
    what runs on which).  A v1 bundle declares nothing: each device counts as
    full when its readings are contiguous and both edges are proven, else as
    boundary.

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
    is rounded *down* to the currency's minor unit (a token's: its decimals).  Per-asset figures are
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
    * a reading left out of full evidence: readings_omitted              (fatal)
    * full evidence without a reading after the period: end_edge_unproven (fatal)
    * full evidence is required (``require_full``) but a device's is
      boundary: evidence_insufficient                                   (fatal)
    * unsynchronised clocks, gaps in boundary
      evidence, missing location                                         (warning/info)

Verdict
    "backed" means: no fatal finding, attested energy >= claimed energy and
    attested revenue >= claimed amount.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal

from attest_core.claim import Claim
from attest_core.counters import between, consecutive_mismatch, first_mismatch
from attest_core.device import AssetKind
from attest_core.metercheck import MeterValue, check_meter_reading, pagination_problem
from attest_core.money import EXACT, energy_value, format_amount, format_kwh, round_down
from attest_core.power import (  # the rated-power rule lives there: the device tracks it too
    CLOCK_SLACK_MS,
    POWER_TOLERANCE,
    QUANTUM_SLACK_MWH,
    allowed_energy_mwh,
    exceeds_rated_power,
)
from attest_core.reading import FATAL_STATUS, Reading, Status
from attest_core.registry import DeviceRecord
from attest_core.sun import is_night_throughout
from attest_core.verdict import (
    AssetResult,
    AttestedReading,
    CheckRun,
    DeviceResult,
    Evaluation,
    EvidenceKind,
    Finding,
    Severity,
)

__all__ = [
    "CHECKS",
    "CLOCK_SLACK_MS",
    "NIGHT_SLACK_MWH",
    "POWER_TOLERANCE",
    "QUANTUM_SLACK_MWH",
    "AssetResult",
    "AttestedReading",
    "CheckRun",
    "DeviceResult",
    "Evaluation",
    "EvidenceKind",
    "Finding",
    "Severity",
    "allowed_energy_mwh",
    "boundary_seqs",
    "evaluate",
    "exceeds_rated_power",
    "full_seqs",
    "in_period",
    "needs_edges",
]

NIGHT_SLACK_MWH = 2_000
"""A solar asset may register up to 2 Wh in a night interval (a pulse at dusk)."""


EVERY_INTERVAL = "every interval"
EVERY_READING = "every reading"
BOUNDARY_ONLY = "between the boundary readings only"
BOUNDARY_READINGS = "the boundary readings only"
NOT_RUN = "not run"
BY_COUNTERS = "the boundary readings, and those between by their v2 counters"
INTERVALS_BY_COUNTERS = "between the boundary readings, and each interval between by v2 counters"
DEVICE_SPAN = "each device's span in the period"

CHECKS: tuple[tuple[str, str, str, str], ...] = (
    # (code, what it checks, on full evidence, on boundary evidence)
    # with end_edge_unproven: every device's readings, from the one before the period to the one after
    ("readings_omitted", "no reading is left out, edges included", EVERY_READING, NOT_RUN),
    ("chain_break", "each reading carries the hash of the one before it", EVERY_INTERVAL, NOT_RUN),
    ("register_decreased", "the register never decreases", EVERY_INTERVAL, BOUNDARY_ONLY),
    ("time_backwards", "device time never goes backwards", EVERY_INTERVAL, BOUNDARY_ONLY),
    ("over_rated_power", "energy within the rated power (+10 %)", EVERY_INTERVAL, INTERVALS_BY_COUNTERS),
    ("night_production", "no solar production at night", EVERY_INTERVAL, BOUNDARY_ONLY),
    ("meter_fault", "no counted reading reports tamper or meter error", EVERY_READING, BY_COUNTERS),
    ("time_unsynced", "counted readings have a synchronised clock", EVERY_READING, BY_COUNTERS),
    ("counters_inconsistent", "v2 counters follow from reading to reading", EVERY_INTERVAL, BOUNDARY_ONLY),
    ("tariff_pricing", "each interval priced at the lowest price in force", EVERY_INTERVAL, BOUNDARY_ONLY),
    ("equivocation", "one signed reading per sequence number", EVERY_READING, BOUNDARY_READINGS),
    # attest_core.metercheck: signature, register, time and status of every record present
    (
        "meter_signature",
        "meter-signed records verify and bind the reading's register and time",
        EVERY_READING,
        EVERY_READING,
    ),
    ("meter_pagination", "the meter's pagination rises from record to record", EVERY_INTERVAL, BOUNDARY_ONLY),
    # the span of a device is its first to last counted reading: boundary evidence has both
    ("devices_overlap", "one device meters an asset at a time", DEVICE_SPAN, DEVICE_SPAN),
)
"""Which check runs on which evidence.  On boundary evidence, a check "between the boundary
readings only" sees one interval from the first to the last reading: it still catches what shows
over the whole span (a register that ends below where it started, an average power above the
rated one, a span wholly at night), but not what happened inside it; time-of-use pricing prices
that one interval at the lowest price in force during it (never more than full evidence gives).
Payload v2's counters (:func:`attest_core.counters.between`) carry what the readings between
reported: faults, unsynchronised clocks and the highest interval power; v1 readings carry none."""

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


def full_seqs(readings: Iterable[tuple[int, ...]], claim: Claim) -> tuple[int, int] | None:
    """The sequence range a full-evidence bundle holds of one device: every reading from ``lo`` to ``hi``.

    ``readings`` are (seq, device time ms, clock unsynchronised) of the device's logged
    readings (in the tree of the bundle's checkpoint; the third member may be left out: a
    synchronised clock), which by the log's invariant are 1, 2, ..., n.  The range runs from
    the start edge, the last reading before the first one in the claim period dated before the
    period by a synchronised clock (reading 1 if there is none), to the end edge, the first
    reading after the last one in the period dated at or after its end by a synchronised clock
    (the last logged if there is none yet), whatever the device times in between: a reading
    dated outside the period by a clock jump is in the range, so it shows as a jump, not as a
    gap, and a reading whose clock is not synchronised never stands as an edge (its time
    could put it outside the period when it was taken inside).  Readings a revocation
    disowns are in the range like any other (they prove the edges; the evaluation does not
    count them).

    (v2) A device with no reading in the period still shows its edges, so full evidence
    proves it attests nothing: the last reading dated before the period and the first one
    dated after it, by the same rule.  None only if the device has logged no reading.
    """
    items = [(r[0], r[1], bool(r[2]) if len(r) > 2 else False) for r in readings]
    if not items:
        return None
    highest = max(seq for seq, _, _ in items)
    inside = [seq for seq, t, _ in items if in_period(claim, t)]
    start, end = claim.period_start_ms, claim.period_end_ms
    if inside:
        first, last = min(inside), max(inside)
    else:
        first = highest + 1  # the start edge: the last one dated before the period, whatever its seq
        last = 0
    lo = max((seq for seq, t, unsynced in items if seq < first and t < start and not unsynced), default=1)
    after = last if inside else lo - 1  # with none inside, reading lo may itself be dated after the period
    hi = min(
        (seq for seq, t, unsynced in items if seq > after and t >= end and not unsynced), default=highest
    )
    return lo, hi


def _unsynced(reading: Reading) -> bool:
    return bool(reading.status & Status.TIME_UNSYNCED)


def needs_edges(record: DeviceRecord, claim: Claim) -> bool:
    """(v2) Whether full evidence must show ``record``'s edges even if it holds none of its readings.

    Every device enrolled for a claimed asset must, except one that cannot have a reading
    that counts in the period: revoked with ``last_valid_seq`` 0 (it disowns every reading), or
    enrolled at or after the period's end by its own clock (its enrolment statement's time;
    its readings, dated by the same clock, come after it).
    """
    if record.last_valid_seq == 0:
        return False
    return record.statement.time_ms < claim.period_end_ms


def evaluate(
    claim: Claim,
    devices: Mapping[str, DeviceRecord],
    readings: Sequence[AttestedReading],
    evidence: EvidenceKind | None = None,
    *,
    require_full: bool = False,
    require_meter_signed: bool = False,
) -> Evaluation:
    """Evaluate ``claim`` from verified ``devices`` and ``readings`` (see the module's rules).

    ``evidence`` is what the bundle declares (None: a v1 bundle, each device classified by its
    readings).  ``require_full``: boundary evidence for any device is fatal (``evidence_insufficient``).
    ``require_meter_signed``: a charger asset whose attested energy is not all meter-signed is
    fatal (``meter_signed_insufficient``).
    """
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
            device = _evaluate_device(
                claim, record, by_device.get(record.device_id, []), findings, points, evidence, require_full
            )
            result.devices.append(device)
            result.energy_mwh += device.energy_mwh
            result.revenue_exact = EXACT.add(result.revenue_exact, device.revenue_exact)
        result.meter_signed_mwh = sum(d.meter_signed_mwh for d in result.devices)
        _check_overlap(asset_id, result.devices, findings)
        if (
            require_meter_signed
            and result.kind is AssetKind.CHARGER
            and result.meter_signed_mwh < result.energy_mwh
        ):
            findings.append(
                Finding(
                    Severity.FATAL,
                    "meter_signed_insufficient",
                    f"asset {asset_id}: meter-signed evidence is required, and {format_kwh(result.meter_signed_mwh)} "
                    f"of its {format_kwh(result.energy_mwh)} kWh lie between readings carrying valid meter-signed values",
                    asset_id=asset_id,
                )
            )
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

    evaluation = Evaluation(claim, assets, findings, len(readings), evidence, _checks(assets))
    _check_claim(evaluation)
    if require_meter_signed:
        _check_meter_signed_revenue(evaluation)
    return evaluation


def _check_meter_signed_revenue(evaluation: Evaluation) -> None:
    """With meter-signed evidence required, the claimed amount must also be covered when each charger's
    energy is priced only over spans the meter signed at both ends (each span at the lowest price in
    force during it): the unsigned readings between two signed values, which the device alone dates,
    cannot move energy into a dearer tariff period."""
    claim = evaluation.claim
    total = Decimal(0)
    for asset in evaluation.assets:
        if asset.kind is AssetKind.CHARGER:
            for device in asset.devices:
                total = EXACT.add(total, device.meter_signed_revenue_exact)
        else:
            total = EXACT.add(total, asset.revenue_exact)
    covered = round_down(total, claim.currency)
    if claim.claimed_amount_value > covered:
        evaluation.findings.append(
            Finding(
                Severity.FATAL,
                "meter_signed_insufficient",
                f"meter-signed evidence is required: priced over the spans its meters signed at both ends, the "
                f"chargers' energy is worth {format_amount(covered, claim.currency)}, and the claim states "
                f"{format_amount(claim.claimed_amount, claim.currency)}",
            )
        )


def _checks(assets: list[AssetResult]) -> list[CheckRun]:
    kinds = [d.evidence for a in assets for d in a.devices]
    full = kinds.count(EvidenceKind.FULL)
    boundary = kinds.count(EvidenceKind.BOUNDARY)
    return [
        CheckRun(code, what, on_full, on_boundary, full, boundary)
        for code, what, on_full, on_boundary in CHECKS
    ]


def _evaluate_device(
    claim: Claim,
    record: DeviceRecord,
    items: list[AttestedReading],
    findings: list[Finding],
    points: list[tuple[int, int]],
    declared: EvidenceKind | None,
    require_full: bool,
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
    meter_values = _check_meter_values(record, ordered, add)
    if ordered:
        _classify(claim, record, ordered, declared, require_full, result, add)
    elif needs_edges(record, claim):
        _no_edges(declared, require_full, add)
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
        add(Severity.WARNING, "disowned_readings", _disowned_message(record, disowned))
    if record.log_origin is None:
        add(
            Severity.WARNING,
            "enrolment_not_bound",
            "enrolled with a v1 statement, which names no log: not bound to this log (it could be "
            "replayed into another)",
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
        if rb.seq != ra.seq + 1:
            _between(record, a, b, add)
        elif rb.prev_hash != a.payload_hash:
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
        points.append((counted[0].reading.time_ms, 0))
        for a, b in itertools.pairwise(counted):
            delta = b.reading.energy_mwh - a.reading.energy_mwh
            if delta <= 0:
                continue
            result.energy_mwh += delta
            price = claim.tariff.min_price(a.reading.time_ms, b.reading.time_ms)
            result.revenue_exact = EXACT.add(result.revenue_exact, energy_value(delta, price))
            points.append((b.reading.time_ms, delta))
        # Meter-signed energy: between consecutive counted readings that both carry a valid
        # meter-signed value (the meter signed both registers, so it vouches for the energy between).
        signed = [item.reading for item in counted if item.reading.seq in meter_values]
        result.meter_signed_readings = len(signed)
        for ra, rb in itertools.pairwise(signed):
            delta = max(0, rb.energy_mwh - ra.energy_mwh)
            result.meter_signed_mwh += delta
            if delta:
                price = claim.tariff.min_price(ra.time_ms, rb.time_ms)
                result.meter_signed_revenue_exact = EXACT.add(
                    result.meter_signed_revenue_exact, energy_value(delta, price)
                )
    return result


def _check_meter_values(
    record: DeviceRecord,
    ordered: list[AttestedReading],
    add: Callable[[Severity, str, str, AttestedReading], None],
) -> dict[int, MeterValue]:
    """Check every meter-signed record present (attest_core.metercheck); the valid values by seq."""
    values: dict[int, MeterValue] = {}
    carrying = [item for item in ordered if item.reading.extensions]
    if not carrying:
        return values
    key = record.statement.meter_key
    register: MeterValue | None = None
    last_of_letter: dict[str, MeterValue] = {}
    for item in carrying:
        value, problem = check_meter_reading(item.reading, key)
        if problem is not None:
            add(Severity.FATAL if problem.fatal else Severity.WARNING, problem.code, problem.message, item)
        if value is None:
            continue
        previous = last_of_letter.get(value.page[0])
        valid = True
        if previous is not None and (why := pagination_problem(previous, value)) is not None:
            add(Severity.FATAL, "meter_pagination", why, item)
            valid = False
        if register is not None and register.register != value.register:
            add(
                Severity.FATAL,
                "meter_register_mismatch",
                f"reading {value.seq}: the meter signed register {value.register}, reading {register.seq} register "
                f"{register.register}: a device's meter-signed energy comes from one register",
                item,
            )
            valid = False
        if valid:
            values[value.seq] = value
        last_of_letter[value.page[0]] = value
        register = register or value
    return values


def _classify(
    claim: Claim,
    record: DeviceRecord,
    ordered: list[AttestedReading],
    declared: EvidenceKind | None,
    require_full: bool,
    result: DeviceResult,
    add: Callable[[Severity, str, str], None],
) -> None:
    """Decide what the device's readings (``ordered`` by seq, at least one) are evidence of."""
    lo, hi = ordered[0].reading, ordered[-1].reading
    result.missing_seqs = (hi.seq - lo.seq + 1) - len(ordered)
    # The start edge: reading 1 (nothing comes before it) or a reading dated before the period,
    # which the full selection puts just before the first one in it.  (Were the reading before
    # the first one in the period dated after it, the pair would be time_backwards anyway.)  A
    # bundle holding only readings dated after the period has no start edge: the readings
    # before them, in the period, were left out.
    # A reading whose clock is not synchronised proves no edge: its time may put it outside the
    # period when it was taken inside (full_seqs then reaches for a synchronised one).
    result.start_proven = lo.seq == 1 or (lo.time_ms < claim.period_start_ms and not _unsynced(lo))
    # The end edge: a reading dated at or after the period's end (by a synchronised clock), or
    # the last one the revocation leaves valid (nothing later counts).
    result.end_proven = (hi.time_ms >= claim.period_end_ms and not _unsynced(hi)) or (
        record.last_valid_seq is not None and hi.seq >= record.last_valid_seq
    )
    if declared is None:  # a v1 bundle: full only where the readings show it
        contiguous = result.missing_seqs == 0 and result.start_proven and result.end_proven
        result.evidence = EvidenceKind.FULL if contiguous else EvidenceKind.BOUNDARY
    else:
        result.evidence = declared

    if result.evidence is EvidenceKind.FULL:
        if result.missing_seqs:
            add(
                Severity.FATAL,
                "readings_omitted",
                f"full evidence leaves out {result.missing_seqs} of the readings between {lo.seq} and {hi.seq}, "
                "which the log holds (it holds every reading of a device from 1 on)",
            )
        if not result.start_proven:
            add(
                Severity.FATAL,
                "readings_omitted",
                f"full evidence starts at reading {lo.seq}, inside the period: it leaves out reading "
                f"{lo.seq - 1}, the one before the period",
            )
        if not result.end_proven:
            # (v1 of the protocol: a warning.)  Fatal, or a bundle cut after any reading near
            # the period's end (say, one reporting tamper) would still be backed.
            add(
                Severity.FATAL,
                "end_edge_unproven",
                f"full evidence ends at reading {hi.seq}, dated inside the period, and holds no later one: "
                f"readings after {hi.seq} may count and are not shown (the bundle leaves them out, or the log "
                "held none yet when the checkpoint was signed); a reading dated at or after the period's end "
                "would prove the end edge: full evidence of a checkpoint whose tree holds one runs to it",
            )
    else:
        if result.missing_seqs:
            add(
                Severity.INFO,
                "sequence_gaps",
                f"{result.missing_seqs} readings between {lo.seq} and {hi.seq} are not in the evidence "
                "(boundary evidence): the checks that need every interval did not run between the readings "
                "present",
            )
        if require_full:
            why = (
                "the bundle declares boundary evidence"
                if declared is not None
                else (
                    "the v1 bundle does not show every reading from the one before the period to the one after it"
                )
            )
            add(
                Severity.FATAL,
                "evidence_insufficient",
                f"full evidence is required, and this device's is boundary evidence ({why})",
            )


def _no_edges(
    declared: EvidenceKind | None, require_full: bool, add: Callable[[Severity, str, str], None]
) -> None:
    """A device that :func:`needs_edges` and of which the evidence holds no reading."""
    if declared is EvidenceKind.FULL:
        add(
            Severity.FATAL,
            "readings_omitted",
            "full evidence holds none of its readings, so it does not show that none counts: it must hold "
            "the last reading dated before the period and the one after it (reading 1 if it is dated after "
            "the period), which the log holds once the device has logged them; a device that never sends "
            "a reading keeps its asset's full evidence unprovable until an operator revokes it",
        )
    elif require_full:
        kind = "boundary evidence" if declared is EvidenceKind.BOUNDARY else "the v1 bundle"
        add(
            Severity.FATAL,
            "evidence_insufficient",
            f"full evidence is required, and {kind} holds none of this device's readings, so it does not "
            "show that none counts",
        )


def _between(
    record: DeviceRecord,
    a: AttestedReading,
    b: AttestedReading,
    add: Callable[[Severity, str, str, AttestedReading], None],
) -> None:
    """What two signed readings of a device that are not consecutive prove about those between them.

    Boundary evidence examines each such pair here (full evidence has none without a
    ``readings_omitted`` finding).  Payload v1 proves nothing beyond what the checks on the pair
    as one interval show (the register, the time order, the average power); payload v2's counters
    kept since enrolment prove what the readings between reported (:func:`attest_core.counters.between`).
    """
    for severity, code, message in between(record.rated_power_w, a.reading, b.reading):
        add(severity, code, message, b)


def _disowned_message(record: DeviceRecord, disowned: int) -> str:
    """The ``disowned_readings`` finding: how many, and who revoked the device, in which role, when."""
    text = f"{disowned} readings in the evidence are disowned by the device's revocation and not counted"
    entry = record.revocation
    if entry is None:
        return text
    text += f"; revoked by {entry.revoked_by}"
    if entry.revoker_role is None:
        text += " (role not recorded: revocation v1)"
    else:
        text += f" ({entry.revoker_role.label})"
    text += f" at {_utc(entry.time_ms)}, log entry {record.revocation_index}"
    if entry.readings_disowned is not None:
        text += f", disowning {entry.readings_disowned} readings already logged"
    return text + f": {entry.reason!r}"


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
                f"the claim states {format_amount(claim.claimed_amount, claim.currency)}, the readings attest "
                f"{format_amount(evaluation.revenue, claim.currency)} at {claim.tariff.describe()}",
            )
        )
