"""Reading payload v2's counters: the rated-power rule, consecutive consistency, boundary evidence."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from attest_core.bundle import verify_bundle
from attest_core.counters import advance, boundary_findings, consecutive_mismatch, replay
from attest_core.device import AssetKind
from attest_core.evaluation import boundary_seqs, evaluate
from attest_core.power import (
    allowed_energy_mwh,
    exceeds_rated_power,
    interval_power_mw,
    rated_limit_mw,
)
from attest_core.reading import ZERO_COUNTERS, Counters, Envelope, Status, reading_hash
from attest_core.registry import DeviceRecord, Registry
from attest_core.verdict import AttestedReading, EvidenceKind, Finding, Severity
from tests.support import HOUR, T0, MemoryLog, TestDevice, flat_claim

KWH = 1_000_000


# --- the rated-power rule ------------------------------------------------------


@given(
    st.integers(0, 10**7),
    st.integers(-(10**7), 10**11),
    st.integers(-(10**7), 10**14),
)
def test_interval_power_within_the_rated_limit_is_the_verifiers_rule(rated: int, dt: int, delta: int) -> None:
    # The v1 evaluation's rule as it was written: Δe ≤ rated × (Δt + 2 s) × 1.1 + 2 Wh, times 36e6.
    v1_rule = delta * 36_000_000 > rated * 11_000 * (max(dt, 0) + 2_000) + 2_000 * 36_000_000
    assert exceeds_rated_power(rated, dt, delta) == v1_rule
    assert (delta > allowed_energy_mwh(rated, dt)) == v1_rule
    assert (interval_power_mw(dt, delta) > rated_limit_mw(rated)) == v1_rule


@given(st.integers(-(10**7), 10**11), st.integers(2_001, 10**14))
def test_interval_power_is_the_least_limit_the_interval_passes(dt: int, delta: int) -> None:
    power = interval_power_mw(dt, delta)
    span = max(dt, 0) + 2_000
    assert (delta - 2_000) * 3_600_000 <= power * span  # passes a limit of `power` mW
    assert (delta - 2_000) * 3_600_000 > (power - 1) * span  # not one milliwatt less


def test_interval_power_examples() -> None:
    assert interval_power_mw(HOUR, 2_000) == 0  # within the register's resolution
    assert interval_power_mw(HOUR, -5) == 0
    assert interval_power_mw(-HOUR, 4_000) == 3_600_000  # time backwards counts as 0 (+2 s slack)
    assert interval_power_mw(HOUR - 2_000, 11_002_000) == 11_000_000  # 11 kWh in an hour: 11 kW
    assert rated_limit_mw(11_000) == 12_100_000


# --- helpers -------------------------------------------------------------------


class Device:
    """A test device in a registry, its readings attested in log order."""

    def __init__(self, rated_w: int = 11_000) -> None:
        self.dev = TestDevice("dev-1", "charger-1", AssetKind.CHARGER, rated_w)
        self.registry = Registry()
        self.registry.enrol(0, self.dev.enrolment_entry())
        self.attested: list[AttestedReading] = []
        self.energy = 0

    @property
    def record(self) -> DeviceRecord:
        return self.registry.devices["dev-1"]

    def add(self, envelope: Envelope) -> AttestedReading:
        reading = envelope.reading()
        self.registry.check_reading(envelope, reading)
        item = AttestedReading(len(self.attested) + 1, reading, reading_hash(envelope.payload))
        self.attested.append(item)
        return item

    def hourly(
        self, hours: int, *, kwh: int = 5, status: dict[int, Status] | None = None, v1: bool = False
    ) -> None:
        """Readings at T0 + h hours for h in range(hours), ``kwh`` per hour unless changed."""
        for h in range(len(self.attested), len(self.attested) + hours):
            self.add(
                self.dev.reading(T0 + h * HOUR, self.energy, status=(status or {}).get(h, Status.OK), v1=v1)
            )
            self.energy += kwh * KWH

    def boundary(self) -> list[Finding]:
        return boundary_findings(self.record, self.attested[0], self.attested[-1])

    def full(self) -> list[Finding]:
        return evaluate(flat_claim(("charger-1",)), self.registry.devices, self.attested).findings


def codes(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.severity.value, f.code) for f in findings]


# --- boundary evidence -----------------------------------------------------------


def test_boundary_readings_of_a_clean_device_find_nothing() -> None:
    d = Device()
    d.hourly(10, status={0: Status.POWER_UP, 9: Status.METER_ERROR | Status.TIME_UNSYNCED})
    # The boundary readings' own status is evaluated as any reading's: not counted again here.
    assert d.boundary() == []


def test_a_fault_between_boundary_readings_is_fatal() -> None:
    d = Device()
    d.hourly(10, status={4: Status.TAMPER, 6: Status.METER_ERROR})
    findings = d.boundary()
    assert codes(findings) == [("fatal", "meter_fault")]
    assert "2 of the 8 readings between readings 1 and 10" in findings[0].message
    assert (findings[0].seq, findings[0].log_index) == (10, 10)


def test_power_ups_and_unsynced_clocks_between_are_reported() -> None:
    d = Device()
    d.hourly(
        10, status={3: Status.POWER_UP, 5: Status.TIME_UNSYNCED, 6: Status.TIME_UNSYNCED | Status.POWER_UP}
    )
    findings = d.boundary()
    assert codes(findings) == [("warning", "time_unsynced"), ("info", "power_ups")]
    assert "the device started 2 times between readings 1 and 10" in findings[1].message


def test_an_interval_above_the_rated_limit_between_is_fatal() -> None:
    d = Device(rated_w=11_000)
    d.hourly(4, kwh=5)
    d.hourly(1, kwh=14)  # 14 kWh in one hour: above 11 kW + 10 %
    d.hourly(5, kwh=1)  # the average from first to last stays far below the rating
    findings = d.boundary()
    assert codes(findings) == [("fatal", "over_rated_power")]
    assert "reached 13990.2 W" in findings[0].message
    # an interval at the rated power (+10 %), by the verifier's own rule, is no finding
    ok = Device(rated_w=11_000)
    ok.hourly(3, kwh=12)
    edge = int(allowed_energy_mwh(11_000, HOUR))  # the most the pairwise rule allows in an hour
    ok.add(ok.dev.reading(T0 + 3 * HOUR, ok.energy - 12 * KWH + edge))
    assert ok.attested[-1].reading.counters is not None
    assert ok.attested[-1].reading.counters.max_interval_power_mw == rated_limit_mw(11_000)
    ok.energy = ok.attested[-1].reading.energy_mwh + KWH
    ok.hourly(2, kwh=1)
    assert ok.boundary() == []
    over = Device(rated_w=11_000)
    over.hourly(1)
    over.add(over.dev.reading(T0 + HOUR, over.energy - 5 * KWH + edge + 1))  # one mWh more
    over.energy = over.attested[-1].reading.energy_mwh + KWH
    over.hourly(2, kwh=1)
    assert codes(over.boundary()) == [("fatal", "over_rated_power")]


def test_counters_going_down_between_boundary_readings_are_inconsistent() -> None:
    # (The device signs its counters: boundary evidence trusts them as it trusts the register,
    # and can only refuse values no honest device makes.)
    e = Device()
    e.hourly(3, status={0: Status.TAMPER})
    e.dev.state = replace(e.dev.state, counters=ZERO_COUNTERS)
    e.hourly(3)
    assert codes(e.boundary()) == [("fatal", "counters_inconsistent")]
    assert "fault_readings went from 1 (reading 1) to 0 (reading 6)" in e.boundary()[0].message


def test_more_counted_readings_than_readings_between_is_inconsistent() -> None:
    d = Device()
    d.hourly(3)
    d.dev.state = replace(d.dev.state, counters=d.dev.state.counters._replace(powerups=5))
    d.hourly(2)
    assert codes(d.boundary()) == [("fatal", "counters_inconsistent")]


def test_v1_boundary_readings_say_the_time_between_is_not_covered() -> None:
    d = Device()
    d.hourly(3, v1=True)
    d.hourly(3)
    findings = d.boundary()
    assert codes(findings) == [("info", "no_counters")]
    assert "reading 1 is a v1 payload" in findings[0].message


# --- full evidence: consecutive readings ----------------------------------------


def test_consecutive_v2_readings_of_an_honest_device_are_consistent() -> None:
    d = Device()
    d.hourly(12, status={0: Status.POWER_UP, 3: Status.TIME_UNSYNCED, 5: Status.TAMPER, 6: Status.POWER_UP})
    assert all(consecutive_mismatch(a.reading, b.reading) is None for a, b in pairwise(d.attested))
    assert [c for c, f in {(f.code, f.severity) for f in d.full()} if f is Severity.FATAL] == ["meter_fault"]


def test_counters_that_do_not_follow_are_fatal_in_full_evidence() -> None:
    d = Device()
    d.hourly(4, status={2: Status.TAMPER})
    d.dev.state = replace(d.dev.state, counters=d.dev.state.counters._replace(fault_readings=0))
    d.hourly(3)
    fatal = [f for f in d.full() if f.severity is Severity.FATAL]
    assert [(f.code, f.seq) for f in fatal] == [("meter_fault", 3), ("counters_inconsistent", 5)]
    assert "reading 5 carries counters faults 0" in fatal[1].message


def test_a_max_power_below_the_interval_is_inconsistent() -> None:
    d = Device()
    d.hourly(3, kwh=10)
    d.dev.state = replace(d.dev.state, counters=d.dev.state.counters._replace(max_interval_power_mw=0))
    d.add(d.dev.reading(T0 + 3 * HOUR, d.energy - 9 * KWH))  # a small interval: the max no longer shows 10 kW
    fatal = [(f.code, f.seq) for f in d.full() if f.severity is Severity.FATAL]
    assert fatal == [("counters_inconsistent", 4)]


def test_reading_1_starts_from_zero() -> None:
    d = Device()
    d.dev.state = replace(d.dev.state, counters=Counters(0, 0, 0, 99))
    d.hourly(2)
    fatal = [(f.code, f.seq) for f in d.full() if f.severity is Severity.FATAL]
    assert fatal == [("counters_inconsistent", 1)]


def test_v1_then_v2_readings_are_consistent_and_replay_agrees() -> None:
    d = Device()
    d.hourly(4, v1=True, status={0: Status.POWER_UP, 2: Status.TAMPER})
    d.hourly(4, status={5: Status.TIME_UNSYNCED})
    assert [a.reading.version for a in d.attested] == [1, 1, 1, 1, 2, 2, 2, 2]
    assert codes([f for f in d.full() if f.severity is Severity.FATAL]) == [("fatal", "meter_fault")]
    # an agent upgraded after reading 4 derives its counters from the stored v1 readings
    stored = [a.reading for a in d.attested[:4]]
    after_v1 = replay(stored)
    assert after_v1 == Counters(1, 1, 0, interval_power_mw(HOUR, 5 * KWH))
    first_v2 = d.attested[4].reading
    assert first_v2.counters == advance(after_v1, first_v2.status, interval_power_mw(HOUR, 5 * KWH))
    assert replay([a.reading for a in d.attested]) == d.attested[-1].reading.counters


# --- on real bundles ----------------------------------------------------------------


def _bundle(v1_hours: int, v2_hours: int, status: dict[int, Status] | None = None) -> tuple[MemoryLog, bytes]:
    log = MemoryLog()
    dev = TestDevice("dev-1", "charger-1", AssetKind.CHARGER, 11_000)
    indices = [log.enrol(dev)]
    for h in range(v1_hours + v2_hours):
        envelope = dev.reading(
            T0 + h * HOUR, h * 4 * KWH, status=(status or {}).get(h, Status.OK), v1=h < v1_hours
        )
        indices.append(log.append_reading(envelope))
    claim_index = log.file_claim(flat_claim(("charger-1",), energy_mwh=4 * KWH))
    return log, log.bundle_bytes(claim_index, indices, EvidenceKind.BOUNDARY)


def test_v1_payloads_still_verify_in_a_bundle() -> None:
    log, bundle = _bundle(6, 0)
    result = verify_bundle(bundle, log.key)
    assert result.backed, result.evaluation.findings
    assert result.evaluation.energy_mwh == 20 * KWH
    log, bundle = _bundle(3, 3)  # a device upgraded from v1 to v2 in the middle
    result = verify_bundle(bundle, log.key)
    assert result.backed, result.evaluation.findings
    assert result.evaluation.energy_mwh == 20 * KWH


def test_a_full_bundle_with_forged_counters_is_not_backed() -> None:
    log = MemoryLog()
    dev = TestDevice("dev-1", "charger-1", AssetKind.CHARGER, 11_000)
    indices = [log.enrol(dev)]
    for h in range(6):
        if h == 3:
            dev.state = replace(dev.state, counters=dev.state.counters._replace(unsynced_readings=7))
        indices.append(log.append_reading(dev.reading(T0 + h * HOUR, h * 4 * KWH)))
    claim_index = log.file_claim(flat_claim(("charger-1",), energy_mwh=4 * KWH))
    result = verify_bundle(log.bundle_bytes(claim_index, indices, EvidenceKind.BOUNDARY), log.key)
    assert not result.backed
    assert [(f.code, f.seq) for f in result.evaluation.fatal] == [("counters_inconsistent", 4)]


def _boundary_bundle(status: dict[int, Status], *, v1: bool = False) -> tuple[MemoryLog, bytes]:
    """A day of hourly readings of one charger, the claim over it, and a v2 boundary bundle."""
    log = MemoryLog()
    dev = TestDevice("dev-1", "charger-1", AssetKind.CHARGER, 11_000)
    enrolment = log.enrol(dev)
    seqs: list[tuple[int, int, int]] = []
    for h in range(24):
        index = log.append_reading(
            dev.reading(T0 + h * HOUR, h * 4 * KWH, status=status.get(h, Status.OK), v1=v1)
        )
        seqs.append((index, h + 1, T0 + h * HOUR))
    claim = flat_claim(("charger-1",), energy_mwh=92 * KWH)
    claim_index = log.file_claim(claim)
    first_last = boundary_seqs([(seq, t) for _, seq, t in seqs], claim)
    assert first_last == (1, 24)
    indices = [enrolment, *(i for i, seq, _ in seqs if seq in first_last)]
    return log, log.bundle_bytes(claim_index, indices, EvidenceKind.BOUNDARY)


def test_a_boundary_bundle_hiding_a_tamper_reading_is_not_backed() -> None:
    log, clean = _boundary_bundle({})
    result = verify_bundle(clean, log.key)
    assert result.backed, result.evaluation.findings
    assert result.evaluation.energy_mwh == 92 * KWH
    log, hiding = _boundary_bundle({11: Status.TAMPER, 15: Status.POWER_UP})
    result = verify_bundle(hiding, log.key)
    assert not result.backed
    assert [(f.code, f.seq) for f in result.evaluation.fatal] == [("meter_fault", 24)]
    assert "1 of the 22 readings between readings 1 and 24" in result.evaluation.fatal[0].message
    assert ("info", "power_ups") in codes(result.evaluation.findings)


def test_a_v1_boundary_bundle_says_the_time_between_is_not_covered() -> None:
    log, bundle = _boundary_bundle({11: Status.TAMPER}, v1=True)
    result = verify_bundle(bundle, log.key)
    assert result.backed  # v1 readings cannot show the tamper reading between: as in protocol v1
    assert ("info", "no_counters") in codes(result.evaluation.findings)
