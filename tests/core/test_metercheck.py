"""Meter-signed readings: the record bound to the reading, pagination, meter-signed energy."""

from __future__ import annotations

import dataclasses
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from attest_core.device import AssetKind
from attest_core.errors import DecodeError
from attest_core.evaluation import CHECKS, Severity
from attest_core.metercheck import TIME_TOLERANCE_MS, MeterValue, check_meter_reading, pagination_problem
from attest_core.meterproof import MeterFormat, MeterKey, MeterRecord
from attest_core.ocmf import parse_ocmf
from attest_core.tariff import Segment, Tariff
from tests.core.test_evaluation import KWH, Scenario, codes
from tests.support import HOUR, T0, TestDevice, TestMeter, flat_claim

DATA = Path(__file__).resolve().parents[1] / "data" / "ocmf"
MINUTE = 60_000


def metered_charger(meter: TestMeter, name: str = "dev-1", asset: str = "charger-1") -> TestDevice:
    return TestDevice(name, asset, AssetKind.CHARGER, 22_000, meter_key=meter.key)


def check(
    device: TestDevice, time_ms: int, energy_mwh: int, record: MeterRecord, key: MeterKey | None = None
):  # type: ignore[no-untyped-def]
    reading = device.reading(time_ms, energy_mwh, meter_record=record).reading()
    return check_meter_reading(reading, device.meter_key if key is None else key)


def test_a_valid_record_binds_register_time_and_pagination() -> None:
    meter = TestMeter()
    device = metered_charger(meter)
    record = meter.meter_record([(T0 + 500, "B", 10 * KWH), (T0 + HOUR, "E", 17 * KWH)], index=0)
    value, problem = check(device, T0 + 2_000, 10 * KWH, record)
    assert problem is None
    assert value is not None
    assert value.page == ("T", 1)
    assert value.value_index == 0


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("register", "meter_register_mismatch"),
        ("index", "meter_register_mismatch"),
        ("time", "meter_time_mismatch"),
        ("manipulated", "meter_manipulated"),
        ("digit", "meter_signature"),
        ("other_key", "meter_signature"),
        ("no_key", "meter_key_missing"),
        ("malformed", "meter_record_malformed"),
        ("no_page", "meter_pagination"),
        ("export_register", "meter_register_mismatch"),
        ("status_error", "meter_value_not_good"),
    ],
)
def test_each_way_a_record_fails_to_bind_is_fatal_and_named(change: str, code: str) -> None:
    meter = TestMeter()
    device = metered_charger(meter)
    energy, time_ms = 10 * KWH, T0 + 2_000
    key: MeterKey | None = None
    values = [(T0 + 500, "B", 10 * KWH)]
    record = meter.meter_record(values)
    if change == "register":
        energy += 1  # one mWh off
    elif change == "index":
        record = dataclasses.replace(record, value_index=1)
    elif change == "time":
        time_ms = T0 + 500 + TIME_TOLERANCE_MS + 1
    elif change == "manipulated":
        record = meter.meter_record(values, status="M")
    elif change == "digit":
        record = dataclasses.replace(record, record=record.record.replace(b'"RV":10', b'"RV":11'))
        energy = 11 * KWH
    elif change == "other_key":
        key = TestMeter("another meter").key
    elif change == "no_key":
        device = TestDevice("dev-1", "charger-1", AssetKind.CHARGER, 22_000)
    elif change == "malformed":
        record = dataclasses.replace(record, record=b"OCMF|{not json}|{}")
    elif change == "no_page":
        record = meter.meter_record(values, pagination="1")
    elif change == "export_register":
        record = meter.meter_record(values, register="1-b:2.8.0")
    elif change == "status_error":
        record = meter.meter_record(values, status="E")
    reading = device.reading(time_ms, energy, meter_record=record).reading()
    value, problem = check_meter_reading(reading, key if key is not None else device.meter_key)
    assert value is None
    assert problem is not None
    assert problem.fatal
    assert problem.code == code, problem


def test_an_unsupported_curve_leaves_the_value_unchecked_with_a_warning() -> None:
    meter = TestMeter()
    device = metered_charger(meter)
    record = meter.meter_record([(T0 + 500, "B", 10 * KWH)])
    value, problem = check(device, T0 + 1_000, 10 * KWH, record, key=MeterKey("secp192k1", b"\x30\x00"))
    assert value is None
    assert problem is not None
    assert not problem.fatal
    assert problem.code == "meter_curve_unsupported"


def test_the_meter_time_tolerance_holds_both_ways_and_reads_the_utc_offset() -> None:
    meter = TestMeter()
    device = metered_charger(meter)
    for skew in (-TIME_TOLERANCE_MS, TIME_TOLERANCE_MS):
        record = meter.meter_record([(T0 + HOUR + skew, "C", 10 * KWH)])
        assert check(device, T0 + HOUR, 10 * KWH, record)[1] is None
    # A real record dated 10:01:04+0200 is 08:01:04 UTC.
    real = (DATA / "02_ebee_dzg_secp256r1_begin.ocmf").read_bytes().rstrip(b"\n")
    key = MeterKey.from_text((DATA / "02_ebee_dzg_secp256r1_begin.pubkey.hex").read_text())
    old = TestDevice("dev-9", "charger-9", AssetKind.CHARGER, 22_000, meter_key=key)
    utc = 1_629_878_464_000  # 2021-08-25T08:01:04Z
    value, problem = check(old, utc, 7_753_000, MeterRecord(MeterFormat.OCMF, 0, real))
    assert problem is None
    assert value is not None
    _, problem = check(old, utc + 2 * HOUR, 7_753_000, MeterRecord(MeterFormat.OCMF, 0, real))
    assert problem is not None
    assert problem.code == "meter_time_mismatch"


def _value(seq: int, page: int, record: bytes = b"r", index: int = 0, letter: str = "T") -> MeterValue:
    return MeterValue(seq, record, index, (letter, page))


def test_pagination_rises_or_names_a_later_value_of_the_same_record() -> None:
    assert pagination_problem(_value(1, 4), _value(2, 5)) is None
    assert pagination_problem(_value(1, 4, b"s", 0), _value(2, 4, b"s", 1)) is None  # begin, then end
    with pytest.raises(ValueError):
        pagination_problem(_value(1, 4), _value(2, 9, letter="F"))  # each letter counts on its own
    assert "goes back" in (pagination_problem(_value(1, 5), _value(2, 4)) or "")
    assert "repeats the same value" in (pagination_problem(_value(1, 4, b"s"), _value(2, 4, b"s")) or "")
    assert "different record" in (pagination_problem(_value(1, 4, b"s"), _value(2, 4, b"t")) or "")
    assert pagination_problem(_value(1, 4, b"s", 1), _value(2, 4, b"s", 0)) is not None


def session(s: Scenario, device: TestDevice, meter: TestMeter, start_h: int, kwh: int, base_kwh: int) -> None:
    """Periodic readings and a session whose begin and end values the meter signs in one record."""
    begin_t, end_t = T0 + start_h * HOUR, T0 + (start_h + 2) * HOUR
    begin, end = base_kwh * KWH, (base_kwh + kwh) * KWH
    s.add(device.reading(begin_t - HOUR, begin))
    s.add(device.reading(begin_t, begin, meter_record=meter.meter_record([(begin_t, "B", begin)])))
    s.add(device.reading(begin_t + HOUR, (begin + end) // 2))
    both = meter.record([(begin_t, "B", begin), (end_t, "E", end)])
    s.add(device.reading(end_t, end, meter_record=MeterRecord(MeterFormat.OCMF, 1, both)))


def test_meter_signed_energy_is_between_consecutive_valid_meter_values() -> None:
    meter = TestMeter()
    s = Scenario()
    device = s.enrol(metered_charger(meter))
    session(s, device, meter, 2, 14, 100)
    session(s, device, meter, 8, 6, 114)
    s.add(device.reading(T0 + 13 * HOUR, 120 * KWH + 1 * KWH))  # 1 kWh after the last signed value
    s.add(device.reading(T0 + 25 * HOUR, 121 * KWH))
    claim = flat_claim(("charger-1",), energy_mwh=21 * KWH, amount="0")
    ev = s.evaluate(claim)
    assert ev.backed, ev.findings
    (asset,) = ev.assets
    assert asset.energy_mwh == 21 * KWH
    assert asset.meter_signed_mwh == 20 * KWH  # begin 1 -> end 1 -> begin 2 -> end 2
    assert asset.devices[0].meter_signed_readings == 4
    assert asset.meter_signed_share == Decimal(20) / Decimal(21)
    strict = evaluate_strict(s, claim)
    assert "meter_signed_insufficient" in codes(strict, Severity.FATAL)
    assert not strict.backed


def evaluate_strict(s: Scenario, claim):  # type: ignore[no-untyped-def]
    from attest_core.evaluation import evaluate

    return evaluate(claim, s.registry.devices, s.readings, require_meter_signed=True)


def test_full_meter_signed_coverage_passes_the_requirement_and_solar_is_not_asked() -> None:
    meter = TestMeter()
    s = Scenario()
    device = s.enrol(metered_charger(meter))
    session(s, device, meter, 2, 14, 100)
    s.add(device.reading(T0 + 25 * HOUR, 114 * KWH))
    claim = flat_claim(("charger-1",), energy_mwh=14 * KWH, amount="0")
    strict = evaluate_strict(s, claim)
    assert strict.backed, strict.findings
    assert strict.assets[0].meter_signed_mwh == 14 * KWH


def test_a_replayed_record_and_a_bad_signature_are_fatal_in_the_evaluation() -> None:
    meter = TestMeter()
    s = Scenario()
    device = s.enrol(metered_charger(meter))
    first = meter.meter_record([(T0 + HOUR, "B", 100 * KWH)])
    s.add(device.reading(T0 + HOUR, 100 * KWH, meter_record=first))
    s.add(device.reading(T0 + HOUR + MINUTE, 100 * KWH, meter_record=first))  # the same value again
    forged = dataclasses.replace(
        meter.meter_record([(T0 + 2 * HOUR, "E", 101 * KWH)]),
        record=meter.record([(T0 + 2 * HOUR, "E", 101 * KWH)]).replace(b'"PG":"T', b'"PG":"T9'),
    )
    s.add(device.reading(T0 + 2 * HOUR, 101 * KWH, meter_record=forged))
    s.add(device.reading(T0 + 25 * HOUR, 101 * KWH))
    ev = s.evaluate(flat_claim(("charger-1",), energy_mwh=1 * KWH, amount="0"))
    fatal = codes(ev, Severity.FATAL)
    assert "meter_pagination" in fatal
    assert "meter_signature" in fatal
    assert not ev.backed


def test_the_checks_table_names_the_meter_checks() -> None:
    names = {row[0] for row in CHECKS}
    assert {"meter_signature", "meter_pagination"} <= names


def test_pagination_is_followed_per_letter_and_the_register_stays_the_same() -> None:
    """T9, then F3, then T2: the T counter went back, whatever came between; and a device's values
    come from one register (a record's export register cannot pass for energy imported)."""
    meter = TestMeter()
    s = Scenario()
    device = s.enrol(metered_charger(meter))
    t = T0 + HOUR
    s.add(device.reading(t, 100 * KWH, meter_record=meter.meter_record([(t, "B", 100 * KWH)], page=9)))
    t += MINUTE
    s.add(
        device.reading(t, 100 * KWH, meter_record=meter.meter_record([(t, "B", 100 * KWH)], pagination="F3"))
    )
    t += MINUTE
    s.add(device.reading(t, 101 * KWH, meter_record=meter.meter_record([(t, "E", 101 * KWH)], page=2)))
    t += MINUTE
    tariff = meter.meter_record([(t, "E", 102 * KWH)], page=20, register="1-b:1.8.1")
    s.add(device.reading(t, 102 * KWH, meter_record=tariff))
    s.add(device.reading(T0 + 25 * HOUR, 102 * KWH))
    ev = s.evaluate(flat_claim(("charger-1",), energy_mwh=0, amount="0"))
    fatal = [(f.code, f.seq) for f in ev.findings if f.severity is Severity.FATAL]
    assert ("meter_pagination", 3) in fatal
    assert ("meter_register_mismatch", 4) in fatal


def test_extreme_or_inexact_numbers_and_deep_nesting_are_clean_findings() -> None:
    meter = TestMeter()
    device = metered_charger(meter)
    for rv in ("1E+999999", "10.000000000000000000000000000001", "-1", "1E-999999"):
        record = meter.meter_record([(T0 + 500, "B", 10 * KWH)])
        changed = record.record.replace(b'"RV":10', b'"RV":' + rv.encode())
        payload = changed.split(b"|")[1]
        signed = meter.sign_payload(payload)
        reading = device.reading(
            T0 + 1_000, 10 * KWH, meter_record=dataclasses.replace(record, record=signed)
        )
        value, problem = check_meter_reading(reading.reading(), meter.key)
        assert value is None, rv
        assert problem is not None, rv
        assert problem.code == "meter_register_mismatch", (rv, problem)
    # 900 nested arrays fit in a record; parsed by a caller already deep in its stack, JSON runs out
    # of recursion: a clean finding, never a RecursionError out of the verifier.
    deep = b'OCMF|{"RD":' + b"[" * 900 + b"]" * 900 + b'}|{"SD":"00"}'

    def parse_at_depth(n: int) -> None:
        if n == 0:
            parse_ocmf(deep)
        else:
            parse_at_depth(n - 1)

    with pytest.raises(DecodeError) as info:
        parse_at_depth(sys.getrecursionlimit() - 300)
    assert info.value.code == "ocmf_json"


def test_an_unsigned_reading_between_two_signed_values_cannot_move_energy_into_a_dearer_tariff() -> None:
    """Signed at 17:00 and at 19:00, 14 kWh between; the device dates an unsigned reading at 18:00, when
    the peak price starts, with 1 Wh more than at 17:00: all the energy would be priced at the peak.
    Required meter-signed evidence prices the signed span at its lowest price instead."""
    meter = TestMeter()
    s = Scenario()
    device = s.enrol(metered_charger(meter))
    t17, t18, t19 = T0 + 17 * HOUR, T0 + 18 * HOUR, T0 + 19 * HOUR
    s.add(device.reading(t17 - HOUR, 100 * KWH))
    s.add(device.reading(t17, 100 * KWH, meter_record=meter.meter_record([(t17, "B", 100 * KWH)])))
    s.add(device.reading(t18, 100 * KWH + 1_000))
    s.add(device.reading(t19, 114 * KWH, meter_record=meter.meter_record([(t19, "E", 114 * KWH)])))
    s.add(device.reading(T0 + 25 * HOUR, 114 * KWH))
    tariff = Tariff("USD", (Segment(0, "0.20"), Segment(18 * 60, "0.50")))
    claim = dataclasses.replace(
        flat_claim(("charger-1",), energy_mwh=14 * KWH), tariff=tariff, claimed_amount="6.99"
    )
    assert s.evaluate(claim).backed  # the device's own dating: about 14 kWh at 0.50
    strict = evaluate_strict(s, claim)
    assert not strict.backed
    assert "meter_signed_insufficient" in codes(strict, Severity.FATAL)
    honest = dataclasses.replace(claim, claimed_amount="2.80")  # 14 kWh at 0.20
    assert evaluate_strict(s, honest).backed
