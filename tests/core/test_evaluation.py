"""Claim evaluation: energy, revenue and every plausibility rule."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

import pytest

from attest_core.chain import ChainState
from attest_core.device import AssetKind, Location
from attest_core.entries import RevocationEntry
from attest_core.evaluation import (
    CHECKS,
    AttestedReading,
    Evaluation,
    EvidenceKind,
    Severity,
    allowed_energy_mwh,
    boundary_seqs,
    evaluate,
    exceeds_rated_power,
    full_seqs,
)
from attest_core.reading import Envelope, Status, reading_hash
from attest_core.registry import Registry
from attest_core.tariff import Segment, Tariff
from tests.support import BERLIN, DAY, HOUR, T0, TestDevice, flat_claim

KWH = 1_000_000  # mWh


class Scenario:
    """Devices enrolled in a registry, readings attested in log order."""

    def __init__(self) -> None:
        self.registry = Registry()
        self.readings: list[AttestedReading] = []
        self.index = 0

    def enrol(self, device: TestDevice) -> TestDevice:
        self.registry.enrol(self.index, device.enrolment_entry())
        self.index += 1
        return device

    def add(self, *envelopes: Envelope) -> None:
        for envelope in envelopes:
            reading = envelope.reading()
            self.registry.check_reading(envelope, reading)
            self.readings.append(AttestedReading(self.index, reading, reading_hash(envelope.payload)))
            self.index += 1

    def hourly(self, device: TestDevice, hours: range, kwh_per_hour: int = 5, start_kwh: int = 100) -> None:
        for h in hours:
            self.add(device.reading(T0 + h * HOUR, (start_kwh + h * kwh_per_hour) * KWH))

    def evaluate(self, claim) -> Evaluation:  # type: ignore[no-untyped-def]
        return evaluate(claim, self.registry.devices, self.readings)


def codes(evaluation: Evaluation, severity: Severity | None = None) -> list[str]:
    return [f.code for f in evaluation.findings if severity is None or f.severity is severity]


def charger(name: str = "dev-1", asset: str = "charger-1", rated: int = 11_000) -> TestDevice:
    return TestDevice(name, asset, AssetKind.CHARGER, rated)


def test_energy_is_first_to_last_reading_inside_the_period() -> None:
    s = Scenario()
    dev = s.enrol(charger())
    s.hourly(dev, range(-2, 27))  # readings from 22:00 the day before to 02:00 the day after
    ev = s.evaluate(flat_claim(("charger-1",), energy_mwh=115 * KWH, amount="40.25"))
    (asset,) = ev.assets
    # counted: 00:00 .. 23:00 (24 readings); 24:00 is the period's exclusive end
    assert asset.readings_counted == 24
    assert asset.energy_mwh == 23 * 5 * KWH == ev.energy_mwh
    assert ev.revenue == Decimal("40.25")  # 115 kWh * 0.35
    assert ev.backed, ev.findings
    assert asset.complete
    assert asset.series[0] == (T0, 0)
    assert asset.series[-1] == (T0 + 23 * HOUR, 115 * KWH)


def test_overclaims_are_fatal() -> None:
    s = Scenario()
    dev = s.enrol(charger())
    s.hourly(dev, range(24))
    ev = s.evaluate(flat_claim(("charger-1",), energy_mwh=115 * KWH + 1, amount="40.26"))
    assert not ev.backed
    assert codes(ev, Severity.FATAL) == ["energy_overclaimed", "revenue_overclaimed"]
    assert "40.26 USD" in ev.findings[-1].message
    assert "40.25 USD" in ev.findings[-1].message


def test_revenue_rounds_down_once_from_the_exact_total() -> None:
    s = Scenario()
    a, b = s.enrol(charger("dev-a", "a")), s.enrol(charger("dev-b", "b"))
    s.add(a.reading(T0, 0), a.reading(T0 + HOUR, 1_005))  # 1.005 Wh each
    s.add(b.reading(T0, 0), b.reading(T0 + HOUR, 1_005))
    ev = s.evaluate(flat_claim(("a", "b"), price="1", amount="0"))
    # each asset is worth 0.001005; the total 0.00201 rounds down to 0.00
    assert ev.revenue_exact == Decimal("0.002010")
    assert ev.revenue == Decimal("0.00")


def test_time_of_use_prices_each_interval_at_its_lowest_price() -> None:
    tou = Tariff("EUR", (Segment(0, "0.20"), Segment(420, "0.35")))
    s = Scenario()
    dev = s.enrol(charger())
    s.hourly(dev, range(10), kwh_per_hour=10)
    claim = flat_claim(("charger-1",))
    claim = type(claim)(**{**{f: getattr(claim, f) for f in claim.__slots__}, "tariff": tou})
    ev = s.evaluate(claim)
    # intervals 00-01 .. 06-07 touch the 0.20 price (7 intervals, incl. 06:00-07:00),
    # 07-08 and 08-09 are wholly at 0.35
    assert ev.revenue_exact == Decimal(70) * Decimal("0.20") + Decimal(20) * Decimal("0.35")


def test_register_decrease_is_fatal() -> None:
    s = Scenario()
    dev = s.enrol(charger())
    s.add(dev.reading(T0, 10 * KWH), dev.reading(T0 + HOUR, 9 * KWH), dev.reading(T0 + 2 * HOUR, 12 * KWH))
    ev = s.evaluate(flat_claim(("charger-1",)))
    assert codes(ev, Severity.FATAL) == ["register_decreased"]
    assert ev.findings[0].seq == 2
    assert ev.findings[0].device_id == "dev-1"


def test_chain_break_is_fatal() -> None:
    s = Scenario()
    dev = s.enrol(charger())
    s.add(dev.reading(T0, 0))
    dev.state = replace(dev.state, prev_hash=b"\x00" * 32)  # the device "forgets" its last reading
    s.add(dev.reading(T0 + HOUR, KWH))
    ev = s.evaluate(flat_claim(("charger-1",)))
    assert codes(ev, Severity.FATAL) == ["chain_break"]


def test_first_reading_must_link_to_the_enrolment() -> None:
    s = Scenario()
    dev = s.enrol(charger())
    dev.state = ChainState(1, b"\x07" * 32)
    s.add(dev.reading(T0, 0))
    ev = s.evaluate(flat_claim(("charger-1",)))
    assert codes(ev, Severity.FATAL) == ["chain_break"]


def test_gaps_break_no_chain_but_are_reported() -> None:
    s = Scenario()
    dev = s.enrol(charger())
    envelopes = [dev.reading(T0 + h * HOUR, h * KWH) for h in range(10)]
    s.add(envelopes[0], envelopes[4], envelopes[9])
    ev = s.evaluate(flat_claim(("charger-1",)))
    assert ev.backed
    assert codes(ev) == ["sequence_gaps"]
    assert ev.assets[0].energy_mwh == 9 * KWH
    assert not ev.assets[0].complete


def test_power_above_rating_is_fatal_within_tolerance_is_not() -> None:
    rated = 11_000
    limit = allowed_energy_mwh(rated, HOUR)
    assert limit == Fraction(11_000 * 1000 * (HOUR + 2000) * 11, 10 * HOUR) + 2000  # 12.1 kWh and a bit
    for dt in (0, 1, 999, HOUR, 7 * HOUR + 13):  # the integer check agrees with the exact limit
        edge = allowed_energy_mwh(rated, dt)
        assert not exceeds_rated_power(rated, dt, int(edge))
        assert exceeds_rated_power(rated, dt, int(edge) + 1)
    s = Scenario()
    dev = s.enrol(charger(rated=rated))
    s.add(dev.reading(T0, 0), dev.reading(T0 + HOUR, int(limit)))
    assert s.evaluate(flat_claim(("charger-1",))).backed
    s2 = Scenario()
    dev2 = s2.enrol(charger("dev-2", rated=rated))
    s2.add(dev2.reading(T0, 0), dev2.reading(T0 + HOUR, int(limit) + 1))
    ev = s2.evaluate(flat_claim(("charger-1",)))
    assert codes(ev, Severity.FATAL) == ["over_rated_power"]
    assert "above the rated 11000 W" in ev.findings[0].message


def solar(location: Location | None = BERLIN) -> TestDevice:
    return TestDevice("pv-1", "solar-1", AssetKind.SOLAR, 10_000, location)


def test_solar_production_at_night_is_fatal() -> None:
    s = Scenario()
    dev = s.enrol(solar())
    # Berlin, 1 October: dark from about 18:30 to 04:30 UTC
    s.add(dev.reading(T0 + 1 * HOUR, 0), dev.reading(T0 + 2 * HOUR, 3 * KWH))
    ev = s.evaluate(flat_claim(("solar-1",)))
    assert codes(ev, Severity.FATAL) == ["night_production"]


def test_solar_production_by_day_and_tiny_night_amounts_pass() -> None:
    s = Scenario()
    dev = s.enrol(solar())
    s.add(
        dev.reading(T0 + 1 * HOUR, 0),
        dev.reading(T0 + 2 * HOUR, 2_000),  # 2 Wh at night: within the slack
        dev.reading(T0 + 11 * HOUR, 2_000),
        dev.reading(T0 + 12 * HOUR, 6 * KWH),
    )
    ev = s.evaluate(flat_claim(("solar-1",)))
    assert ev.backed, ev.findings


def test_polar_day_is_never_night() -> None:
    s = Scenario()
    dev = s.enrol(TestDevice("pv-2", "solar-2", AssetKind.SOLAR, 10_000, Location(78_220_000, 15_650_000)))
    midsummer = 1_782_000_000_000  # 2026-06-21
    s.add(dev.reading(midsummer, 0), dev.reading(midsummer + HOUR, KWH))
    ev = s.evaluate(flat_claim(("solar-2",), start=midsummer - HOUR, end=midsummer + 2 * HOUR))
    assert ev.backed, ev.findings


def test_solar_without_location_is_reported() -> None:
    s = Scenario()
    dev = s.enrol(solar(location=None))
    s.add(dev.reading(T0 + HOUR, 0), dev.reading(T0 + 2 * HOUR, 3 * KWH))
    ev = s.evaluate(flat_claim(("solar-1",)))
    assert ev.backed
    assert codes(ev) == ["no_location"]


def test_equivocation_and_duplicates() -> None:
    s = Scenario()
    dev = s.enrol(charger())
    first = dev.reading(T0, 0)
    state = dev.state
    second = dev.reading(T0 + HOUR, KWH)
    dev.state = state
    other = dev.reading(T0 + HOUR, 2 * KWH)  # same seq 2, different reading
    s.add(first, second, second)
    ev = s.evaluate(flat_claim(("charger-1",)))
    assert codes(ev) == ["duplicate_reading"]
    assert ev.backed
    assert ev.energy_mwh == KWH
    s.add(other)
    ev = s.evaluate(flat_claim(("charger-1",)))
    assert "equivocation" in codes(ev, Severity.FATAL)


@pytest.mark.parametrize(
    ("status", "severity"),
    [
        (Status.TAMPER, Severity.FATAL),
        (Status.METER_ERROR, Severity.FATAL),
        (Status.TIME_UNSYNCED, Severity.WARNING),
    ],
)
def test_meter_status(status: Status, severity: Severity) -> None:
    s = Scenario()
    dev = s.enrol(charger())
    s.add(dev.reading(T0, 0), dev.reading(T0 + HOUR, KWH, status=status))
    ev = s.evaluate(flat_claim(("charger-1",)))
    assert [f.severity for f in ev.findings] == [severity]


def test_time_going_backwards_is_fatal() -> None:
    s = Scenario()
    dev = s.enrol(charger())
    s.add(dev.reading(T0 + 2 * HOUR, 0), dev.reading(T0 + HOUR, KWH))
    assert "time_backwards" in codes(s.evaluate(flat_claim(("charger-1",))), Severity.FATAL)


def test_revocation_disowns_later_readings() -> None:
    s = Scenario()
    dev = s.enrol(charger())
    s.hourly(dev, range(10))
    s.registry.revoke(s.index, RevocationEntry("dev-1", 5, "key stolen", "installer-1", T0 + 10 * HOUR))
    s.index += 1
    ev = s.evaluate(flat_claim(("charger-1",)))
    assert ev.energy_mwh == 4 * 5 * KWH  # readings 1..5
    assert codes(ev) == ["disowned_readings"]


def test_two_devices_for_one_asset() -> None:
    s = Scenario()
    old, new = s.enrol(charger("dev-old")), s.enrol(charger("dev-new"))
    s.hourly(old, range(5))
    s.hourly(new, range(6, 10), start_kwh=0)
    ev = s.evaluate(flat_claim(("charger-1",)))
    assert ev.backed
    assert ev.energy_mwh == 2 * 20 * KWH - 5 * KWH
    s.hourly(new, range(10, 12), start_kwh=0)
    s.hourly(old, range(5, 8))  # the old device goes on metering while the new one does
    ev = s.evaluate(flat_claim(("charger-1",)))
    assert "devices_overlap" in codes(ev, Severity.FATAL)
    overlap = next(f for f in ev.findings if f.code == "devices_overlap")
    assert "2026-10-01T" in overlap.message


def test_assets_without_evidence() -> None:
    s = Scenario()
    dev = s.enrol(charger())
    s.add(dev.reading(T0 - HOUR, 0))
    ev = s.evaluate(flat_claim(("charger-1", "ghost")))
    assert codes(ev) == ["no_readings", "no_device", "no_readings"]
    assert ev.energy_mwh == 0
    assert ev.backed  # a claim of 0 is backed by nothing
    assert not any(a.complete for a in ev.assets)  # no readings is not complete evidence


def test_boundary_selection() -> None:
    claim = flat_claim(("a",))
    assert boundary_seqs([(1, T0 - 1), (2, T0), (3, T0 + 5), (4, T0 + DAY)], claim) == (2, 3)
    assert boundary_seqs([(1, T0 - 1)], claim) is None
    # a revocation that disowns readings above 2 moves the last boundary back
    assert boundary_seqs([(1, T0 - 1), (2, T0), (3, T0 + 5), (4, T0 + DAY)], claim, last_valid_seq=2) == (
        2,
        2,
    )
    assert boundary_seqs([(3, T0 + 5)], claim, last_valid_seq=2) is None


def test_readings_delivered_late_after_a_revocation_still_count() -> None:
    s = Scenario()
    dev = s.enrol(charger())
    envelopes = [dev.reading(T0 + h * HOUR, h * 5 * KWH) for h in range(6)]
    s.add(*envelopes[:3])
    s.registry.revoke(s.index, RevocationEntry("dev-1", 5, "meter replaced", "installer-1", T0 + 6 * HOUR))
    s.index += 1
    s.add(*envelopes[3:])  # readings 4..6 reach the log after the revocation
    ev = s.evaluate(flat_claim(("charger-1",)))
    assert ev.energy_mwh == 4 * 5 * KWH  # readings 1..5 count, 6 is disowned
    assert codes(ev) == ["disowned_readings"]


# --- evidence kinds: full evidence is a sequence range, boundary evidence says what did not run ---


def _ev(s: Scenario, evidence: EvidenceKind | None, claim=None, **kw) -> Evaluation:  # type: ignore[no-untyped-def]
    return evaluate(claim or flat_claim(("charger-1",)), s.registry.devices, s.readings, evidence, **kw)


def test_full_seqs_run_from_the_reading_before_the_period_to_the_one_after() -> None:
    claim = flat_claim(("charger-1",))
    day = [(seq, T0 + (seq - 3) * HOUR) for seq in range(1, 30)]  # seq 3 at 00:00, seq 27 at 24:00
    assert full_seqs(day, claim) == (2, 27)
    assert full_seqs(day[:10], claim) == (2, 10)  # nothing after the period logged yet: up to the last
    assert full_seqs([(1, T0), (2, T0 + HOUR)], claim) == (1, 2)  # reading 1 is its own start edge
    # (v2) none in the period: the last reading before it and the one after it
    assert full_seqs([(1, T0 - HOUR), (2, T0 + DAY)], claim) == (1, 2)
    assert full_seqs([(1, T0 - 2 * HOUR), (2, T0 - HOUR), (3, T0 + DAY), (4, T0 + DAY + 1)], claim) == (2, 3)
    assert full_seqs([(1, T0 + DAY), (2, T0 + DAY + 1)], claim) == (1, 1)  # reading 1 after the period
    assert full_seqs([(1, T0 - 2 * HOUR), (2, T0 - HOUR)], claim) == (2, 2)  # none after it yet
    assert full_seqs([], claim) is None  # nothing logged
    # a clock jump out of the period in the middle is inside the range: it shows as a jump, not a gap
    jump = [(1, T0 - 1), (2, T0), (3, T0 + 2 * DAY), (4, T0 + 5), (5, T0 + DAY)]
    assert full_seqs(jump, claim) == (1, 5)
    # an unsynchronised clock proves no edge: the range reaches for a synchronised reading
    unsynced = [
        (1, T0 - 2 * HOUR, False),
        (2, T0 - HOUR, True),
        (3, T0, False),
        (4, T0 + DAY, True),
        (5, T0 + DAY + 1, False),
    ]
    assert full_seqs(unsynced, claim) == (1, 5)
    assert full_seqs(unsynced[1:4], claim) == (1, 4)  # none synchronised outside: reading 1, the last logged


def test_a_reading_left_out_of_full_evidence_is_fatal() -> None:
    s = Scenario()
    dev = s.enrol(charger())
    s.hourly(dev, range(-1, 25))
    assert _ev(s, EvidenceKind.FULL).backed
    trimmed = s.readings.pop(12)  # the evidence leaves out one reading in the middle
    ev = _ev(s, EvidenceKind.FULL)
    assert codes(ev, Severity.FATAL) == ["readings_omitted"]
    assert "between 1 and 26" in ev.fatal[0].message
    assert not ev.backed
    # the same readings as boundary evidence, or an undeclared (v1) bundle: a gap, not a fault
    assert _ev(s, EvidenceKind.BOUNDARY).backed
    v1 = _ev(s, None)
    assert v1.backed
    assert codes(v1) == ["sequence_gaps"]
    assert v1.assets[0].devices[0].evidence is EvidenceKind.BOUNDARY
    s.readings.insert(12, trimmed)
    del s.readings[0]  # now the start edge (reading 1, before the period) is left out
    ev = _ev(s, EvidenceKind.FULL)
    assert codes(ev, Severity.FATAL) == ["readings_omitted"]
    assert "leaves out reading 1" in ev.fatal[0].message
    assert _ev(s, None).assets[0].devices[0].evidence is EvidenceKind.BOUNDARY


def test_the_end_edge_is_proven_by_a_later_reading_or_the_revocation() -> None:
    s = Scenario()
    dev = s.enrol(charger())
    s.hourly(dev, range(-1, 10))  # the last logged reading is at 09:00, inside the period
    ev = _ev(s, EvidenceKind.FULL)
    # (v2) fatal: a bundle cut after 09:00 (say, before a reading reporting tamper) would be backed
    assert codes(ev) == ["end_edge_unproven"]
    assert codes(ev, Severity.FATAL) == ["end_edge_unproven"]
    assert not ev.backed
    assert "ends at reading 11" in ev.fatal[0].message
    assert "a reading dated at or after the period's end would prove the end edge" in ev.fatal[0].message
    device = ev.assets[0].devices[0]
    assert (device.start_proven, device.end_proven, device.evidence) == (True, False, EvidenceKind.FULL)
    assert _ev(s, None).assets[0].devices[0].evidence is EvidenceKind.BOUNDARY  # v1: not shown to be full
    s.registry.revoke(s.index, RevocationEntry("dev-1", 11, "replaced", "installer-1", T0 + 10 * HOUR))
    ev = _ev(s, EvidenceKind.FULL)
    assert codes(ev) == []  # reading 11 is the last valid one: nothing later can count
    assert ev.assets[0].devices[0].end_proven


def test_full_evidence_shows_the_edges_of_every_device_of_the_asset() -> None:
    """(v2) A device of a claimed asset whose readings full evidence leaves out altogether is
    fatal, unless nothing it logs can count in the period."""
    s = Scenario()
    a = s.enrol(charger("dev-a"))
    b = s.enrol(charger("dev-b"))
    s.hourly(a, range(-1, 25))
    s.add(b.reading(T0 - 2 * HOUR, 0), b.reading(T0 + DAY + HOUR, 0))  # b: none in the period
    ev = _ev(s, EvidenceKind.FULL)
    assert ev.backed, ev.findings
    by_device = {d.device_id: d for d in ev.assets[0].devices}
    assert (by_device["dev-b"].start_proven, by_device["dev-b"].end_proven) == (True, True)
    trimmed = [r for r in s.readings if r.reading.device_id != "dev-b"]
    ev = evaluate(flat_claim(("charger-1",)), s.registry.devices, trimmed, EvidenceKind.FULL)
    assert [(f.code, f.device_id) for f in ev.fatal] == [("readings_omitted", "dev-b")]
    assert "the last reading dated before the period and the one after it" in ev.fatal[0].message
    assert "until an operator revokes it" in ev.fatal[0].message
    # as boundary evidence, or in a v1 bundle, it is not: unless full evidence is required
    assert evaluate(flat_claim(("charger-1",)), s.registry.devices, trimmed, EvidenceKind.BOUNDARY).backed
    assert evaluate(flat_claim(("charger-1",)), s.registry.devices, trimmed).backed
    strict = evaluate(flat_claim(("charger-1",)), s.registry.devices, trimmed, require_full=True)
    assert [(f.code, f.device_id) for f in strict.fatal] == [("evidence_insufficient", "dev-b")]
    # boundary evidence holding no reading at all: with --require-full, no device shows full evidence
    strict = evaluate(
        flat_claim(("charger-1",)), s.registry.devices, [], EvidenceKind.BOUNDARY, require_full=True
    )
    assert [(f.code, f.device_id) for f in strict.fatal] == [
        ("evidence_insufficient", "dev-a"),
        ("evidence_insufficient", "dev-b"),
    ]
    # a device enrolled after the period (by its own clock: statement time T0 - DAY) needs no edges
    earlier = flat_claim(("charger-1",), start=T0 - 3 * DAY, end=T0 - 2 * DAY)
    ev = evaluate(earlier, s.registry.devices, [], EvidenceKind.FULL)
    assert codes(ev, Severity.FATAL) == []
    # nor one revoked with last valid sequence number 0: nothing it logs counts
    s.registry.revoke(s.index, RevocationEntry("dev-b", 0, "never installed", "operator-1", T0 + 2 * DAY))
    ev = evaluate(flat_claim(("charger-1",)), s.registry.devices, trimmed, EvidenceKind.FULL)
    assert ev.backed, ev.findings


def test_require_full_makes_boundary_evidence_fatal() -> None:
    s = Scenario()
    dev = s.enrol(charger())
    s.hourly(dev, range(-1, 25))
    boundary = [s.readings[1], s.readings[24]]
    full_v1 = _ev(s, None, require_full=True)
    assert full_v1.backed
    assert full_v1.assets[0].devices[0].evidence is EvidenceKind.FULL
    s.readings = boundary
    for declared in (EvidenceKind.BOUNDARY, None):
        ev = _ev(s, declared, require_full=True)
        assert codes(ev, Severity.FATAL) == ["evidence_insufficient"]
        assert ev.boundary_devices == ["dev-1"]
        assert _ev(s, declared).backed


def test_the_evaluation_says_which_checks_ran_on_which_evidence() -> None:
    s = Scenario()
    s.hourly(s.enrol(charger()), range(-1, 25))
    s.hourly(s.enrol(charger("dev-2", "charger-2")), range(-1, 25))
    claim = flat_claim(("charger-1", "charger-2"))
    full = {c.code: c for c in _ev(s, EvidenceKind.FULL, claim).checks}
    assert set(full) == {c[0] for c in CHECKS}
    assert (full["night_production"].full_devices, full["night_production"].boundary_devices) == (2, 0)
    assert full["chain_break"].on_boundary == "not run"
    boundary = {c.code: c for c in _ev(s, EvidenceKind.BOUNDARY, claim).checks}
    assert (boundary["chain_break"].full_devices, boundary["chain_break"].boundary_devices) == (0, 2)


def test_full_evidence_of_readings_after_the_period_only_has_no_start_edge() -> None:
    s = Scenario()
    dev = s.enrol(charger())
    s.hourly(dev, range(-1, 27))
    del s.readings[:26]  # only readings 27 and 28 (dated after the period): those in it are left out
    ev = _ev(s, EvidenceKind.FULL)
    assert codes(ev, Severity.FATAL) == ["readings_omitted"]
    assert not ev.assets[0].devices[0].start_proven
