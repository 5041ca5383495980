"""Reading payload v2's counters: how a device keeps them and what two readings prove with them.

A device counts, since its enrolment, the readings whose status has tamper or
meter error, power-up and clock unsynchronised, and keeps the highest interval
power between its consecutive readings by the verifier's own rule
(:func:`attest_core.power.interval_power_mw`).  Every v2 reading carries the
counters *including itself* (:data:`attest_core.reading.Counters`).  The rule that
makes them, :func:`advance`, is the one both the device and the verifier use:

* reading 1 carries ``advance(ZERO_COUNTERS, status, 0)`` (no interval before it);
* reading n carries ``advance(counters(n-1), status(n), interval_power_mw(Δt, Δe))``
  with Δt and Δe from reading n-1 to reading n (a v1 reading n-1 has no counters:
  a device upgraded from v1 starts from what its stored readings showed, so the
  first v2 reading is not checked against its v1 predecessor).

What the verifier checks with them:

* full evidence, on consecutive readings (:func:`consecutive_mismatch`): the later
  counters follow from the earlier ones by :func:`advance`, exactly
  (``counters_inconsistent``, fatal);
* boundary evidence, on two readings of a device that are not consecutive
  (:func:`between`; the evaluation runs it on each such pair): what the readings in between, absent from the
  evidence, reported: tamper or meter error (``meter_fault``, fatal), power-ups
  (``power_ups``, info), unsynchronised clocks (``time_unsynced``, warning), an
  interval above the rated limit (``over_rated_power``, fatal); counters that
  cannot have been made by :func:`advance` are ``counters_inconsistent`` (fatal).
"""

from __future__ import annotations

from collections.abc import Iterable

from attest_core.power import interval_power_mw, rated_limit_mw
from attest_core.reading import FATAL_STATUS, KNOWN_STATUS_BITS, ZERO_COUNTERS, Counters, Reading, Status
from attest_core.registry import DeviceRecord
from attest_core.verdict import AttestedReading, Finding, Severity

__all__ = [
    "advance",
    "between",
    "boundary_findings",
    "consecutive_mismatch",
    "first_mismatch",
    "replay",
]

_FATAL = int(FATAL_STATUS)
_POWER_UP = int(Status.POWER_UP)
_UNSYNCED = int(Status.TIME_UNSYNCED)
# What each status adds to (fault_readings, powerups, unsynced_readings): a table, because
# the verifier looks one up for every reading of a full bundle (a Status hashes as its int).
_STEP = {
    bits: (int(bits & _FATAL != 0), int(bits & _POWER_UP != 0), int(bits & _UNSYNCED != 0))
    for bits in range(KNOWN_STATUS_BITS + 1)
}
_step = _STEP.__getitem__


def advance(previous: Counters, status: int, interval_power: int) -> Counters:
    """The counters of a reading with ``status``, after a reading with ``previous`` counters.

    ``interval_power`` is :func:`attest_core.power.interval_power_mw` of the interval
    from the previous reading to this one (0 for reading 1).
    """
    f, p, u = _step(status)
    highest = previous[3] if previous[3] >= interval_power else interval_power
    return Counters(previous[0] + f, previous[1] + p, previous[2] + u, highest)


def expected_after(a: Reading, b: Reading, counters_a: Counters) -> Counters:
    """The counters reading ``b`` must carry if it directly follows ``a`` (with ``counters_a``)."""
    return advance(
        counters_a, b.status, interval_power_mw(b.time_ms - a.time_ms, b.energy_mwh - a.energy_mwh)
    )


def replay(readings: Iterable[Reading], start: Counters = ZERO_COUNTERS) -> Counters:
    """The counters after ``readings`` (one device's, consecutive, in order), from ``start``.

    A v2 reading's own counters are taken as they are; a v1 reading's are made by
    :func:`advance`.  The agent uses it to give a device upgraded from v1 counters
    from the readings it still holds (docs/protocol.md section 2).
    """
    counters = start
    previous: Reading | None = None
    for reading in readings:
        if reading.counters is not None:
            counters = reading.counters
        elif previous is None or reading.seq != previous.seq + 1:
            counters = advance(counters, reading.status, 0)
        else:
            counters = expected_after(previous, reading, counters)
        previous = reading
    return counters


def first_mismatch(reading: Reading) -> str | None:
    """Why reading 1's counters are not what a device starts with, or None (also for v1)."""
    if reading.counters is None or reading.seq != 1:
        return None
    expected = advance(ZERO_COUNTERS, reading.status, 0)
    if reading.counters == expected:
        return None
    return f"reading 1 carries counters {_show(reading.counters)}, a device starts at {_show(expected)}"


def consecutive_mismatch(a: Reading, b: Reading) -> str | None:
    """Why ``b``'s counters do not follow from ``a``'s, or None.

    ``b`` must directly follow ``a`` (``b.seq == a.seq + 1``); None also when either is
    a v1 reading (no counters to compare).  The verifier runs it on every consecutive
    pair of a full bundle, so the common case is one table look-up and a comparison.
    """
    ca, cb = a.counters, b.counters
    if ca is None or cb is None:
        return None
    f, p, u = _step(b.status)
    power = interval_power_mw(b.time_ms - a.time_ms, b.energy_mwh - a.energy_mwh)
    if (
        cb[0] == ca[0] + f
        and cb[1] == ca[1] + p
        and cb[2] == ca[2] + u
        and cb[3] == (ca[3] if ca[3] >= power else power)
    ):
        return None
    expected = advance(ca, b.status, power)
    return (
        f"reading {b.seq} carries counters {_show(cb)}, but after reading {a.seq} ({_show(ca)}) "
        f"its status and interval ({power} mW) make them {_show(expected)}"
    )


def boundary_findings(record: DeviceRecord, first: AttestedReading, last: AttestedReading) -> list[Finding]:
    """:func:`between` for two attested readings of a device, as findings on the later one."""
    asset_id, device_id = record.asset_id, record.device_id
    return [
        Finding(
            severity,
            code,
            f"asset {asset_id}, device {device_id}: {message}",
            asset_id=asset_id,
            device_id=device_id,
            seq=last.reading.seq,
            log_index=last.log_index,
        )
        for severity, code, message in between(record.rated_power_w, first.reading, last.reading)
    ]


def between(rated_power_w: int, a: Reading, b: Reading) -> list[tuple[Severity, str, str]]:
    """What the counters of two readings of one device prove about the readings between them.

    ``a`` and ``b`` are two readings of a device, ``a`` with the lower sequence number (the
    boundary readings of boundary evidence).  The readings themselves are evaluated as any
    other (their own status, the interval from one to the other); what this returns, as
    (severity, code, message), is about the readings in between, which the evidence leaves
    out.  A v1 reading has no counters: then one info ``no_counters`` says the time between
    was not covered.
    """
    findings: list[tuple[Severity, str, str]] = []

    def add(severity: Severity, code: str, message: str) -> None:
        findings.append((severity, code, message))

    if b.seq <= a.seq:
        return findings
    ca, cb = a.counters, b.counters
    if ca is None or cb is None:
        v1 = a.seq if ca is None else b.seq
        add(
            Severity.INFO,
            "no_counters",
            f"reading {v1} is a v1 payload without counters: faults, restarts and power between readings "
            f"{a.seq} and {b.seq} are not covered",
        )
        return findings
    if b.seq == a.seq + 1:
        problem = consecutive_mismatch(a, b)
        if problem is not None:
            add(Severity.FATAL, "counters_inconsistent", problem)
        return findings

    gap = b.seq - a.seq - 1  # readings strictly between a and b
    own = _step(b.status)  # the last reading counts itself; its own status is evaluated as a reading
    span = f"between readings {a.seq} and {b.seq}"
    counts = []
    for i, name in enumerate(("fault_readings", "powerups", "unsynced_readings")):
        k = cb[i] - ca[i] - own[i]
        if not 0 <= k <= gap:
            add(
                Severity.FATAL,
                "counters_inconsistent",
                f"{name} went from {ca[i]} (reading {a.seq}) to {cb[i]} (reading {b.seq}): no {gap} "
                "readings in between can make that",
            )
            return findings
        counts.append(k)
    if cb[3] < ca[3]:
        add(
            Severity.FATAL,
            "counters_inconsistent",
            f"max_interval_power_mw fell from {ca[3]} (reading {a.seq}) to {cb[3]} (reading {b.seq})",
        )
        return findings
    faults, powerups, unsynced = counts
    if faults:
        add(
            Severity.FATAL,
            "meter_fault",
            f"{faults} of the {gap} readings {span} (not in the evidence) report tamper or meter error",
        )
    limit = rated_limit_mw(rated_power_w)
    if cb[3] > ca[3] and cb[3] > limit:
        add(
            Severity.FATAL,
            "over_rated_power",
            f"an interval {span} reached {cb[3] / 1000:g} W by the rated-power rule, above the rated "
            f"{rated_power_w} W (+10 %)",
        )
    if unsynced:
        add(
            Severity.WARNING,
            "time_unsynced",
            f"{unsynced} of the {gap} readings {span} were taken with an unsynchronised clock",
        )
    if powerups:
        add(Severity.INFO, "power_ups", f"the device started {powerups} times {span}")
    return findings


def _show(counters: Counters) -> str:
    return (
        f"faults {counters[0]}, power-ups {counters[1]}, unsynced {counters[2]}, max power {counters[3]} mW"
    )
