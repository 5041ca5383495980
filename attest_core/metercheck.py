"""What a meter-signed reading proves, and the rules that bind the meter's record to the reading.

A reading that carries its meter's record (:mod:`attest_core.meterproof`) is checked here,
by the gateway at ingest (:func:`check_meter_reading`, one reading at a time) and by the
verifier and the gateway's verdict (:mod:`attest_core.evaluation`, which also follows the
pagination from record to record, :func:`pagination_problem`).  Every rule is here once.

A meter value is **valid** when:

* the device was enrolled with a meter key (``meter_key_missing``: the record cannot be
  checked, so it is refused; fatal);
* the record parses strictly as OCMF (``meter_record_malformed``, fatal);
* the enrolled key signed it (``meter_signature``, fatal); a key on a curve this verifier
  cannot check makes the value unchecked (``meter_curve_unsupported``, a warning: the
  reading counts as any device reading, not as meter-signed);
* the value the reading names (``RD[value_index]``) converts exactly to the reading's register
  in mWh (``meter_register_mismatch``, fatal);
* the meter's signed time of that value lies within :data:`TIME_TOLERANCE_MS` of the
  reading's time (``meter_time_mismatch``, fatal): an old record cannot be attached to a new
  reading to move energy into another period or tariff;
* no value of the record reports manipulation, status ``M`` (``meter_manipulated``, fatal);
* the value is an active energy import register, OBIS ``1.8.x`` (``meter_register_mismatch``),
  with status ``G``, good (``meter_value_not_good``, fatal; ``M`` is ``meter_manipulated``);
* it carries a pagination ``PG`` (a letter and a counter, ``T42``; ``meter_pagination``, fatal).

And from value to value of one device, in sequence order, the register (``RI``) stays the
same (``meter_register_mismatch``, fatal: energy cannot be taken from two registers), and
the pagination counter of each letter rises, compared with the device's last value of that
letter: the next record has a higher counter, or is the same record (the same bytes)
naming a later value of it, as when the begin and the end value of one session record
become two readings (``meter_pagination``, fatal: a record replayed, or an older one
attached after a newer one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from attest_core.errors import AttestError
from attest_core.meterproof import MeterKey, MeterRecord, verify_record_signature
from attest_core.ocmf import OcmfReading, parse_ocmf
from attest_core.reading import Reading

TIME_TOLERANCE_MS = 120_000
"""How far the meter's signed time may lie from the reading's time: two minutes.

The agent takes the reading when the charger delivers the value (seconds later in local
mode).  A charger that queued its messages while offline delivers them later still: their
records no longer bind, so the agent, which asks :func:`check_meter_value` first, carries
them in no reading (it logs each one it refuses).  Tariff periods and claim periods are hours long, so two minutes cannot move a value into
another one except at an edge; a tighter bound would refuse honest records from meters whose
clocks are only informative (time status ``I``)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_IMPORT_REGISTER = re.compile(r"(?:\d{1,3}-[0-9A-Za-z]{1,3}:)?1\.8\.[0-9A-Za-z]{1,3}")
"""OBIS active energy import (``1-b:1.8.0``, ``1-0:1.8.0``; tariff registers 1.8.1, 1.8.2 too)."""
_PG = re.compile(r"([A-Za-z])(\d{1,18})")


@dataclass(frozen=True, slots=True)
class MeterValue:
    """A reading's valid meter-signed value: what pagination and meter-signed energy follow."""

    seq: int
    record: bytes
    value_index: int
    page: tuple[str, int]
    """The pagination: (letter, counter)."""
    register: str = ""
    """``RI`` of the value: which of the meter's registers it is (an active energy import register)."""


@dataclass(frozen=True, slots=True)
class MeterProblem:
    fatal: bool
    code: str
    message: str


def ocmf_time_ms(value: OcmfReading) -> int:
    """The meter's signed time of a value, in Unix milliseconds (UTC)."""
    moment = datetime.strptime(value.time, "%Y-%m-%dT%H:%M:%S,%f%z")
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def check_meter_reading(
    reading: Reading, key: MeterKey | None
) -> tuple[MeterValue | None, MeterProblem | None]:
    """The reading's valid meter value (None if it carries none, or if it is not valid) and the
    problem that makes it not valid, if any (see the module's rules)."""
    try:
        carried = reading.meter_record
    except AttestError as exc:  # a decoded Reading was checked, so this is a constructed one
        return None, MeterProblem(True, "meter_record_malformed", str(exc))
    if carried is None:
        return None, None
    return check_meter_value(
        carried, key, seq=reading.seq, time_ms=reading.time_ms, energy_mwh=reading.energy_mwh
    )


def check_meter_value(
    carried: MeterRecord, key: MeterKey | None, *, seq: int, time_ms: int, energy_mwh: int
) -> tuple[MeterValue | None, MeterProblem | None]:
    """:func:`check_meter_reading` before the reading exists: a device asks it before it signs a
    reading carrying ``carried`` (a record that does not bind would have the reading refused,
    and stop the device's log at it)."""
    if key is None:
        return None, MeterProblem(
            True,
            "meter_key_missing",
            f"reading {seq} carries a meter-signed record, but the device was enrolled without a meter key: "
            "the record cannot be checked (enrol the device with its meter's public key)",
        )
    try:
        record = parse_ocmf(carried.record)
    except AttestError as exc:
        return None, MeterProblem(True, "meter_record_malformed", f"reading {seq}: {exc}")
    if not key.supported:
        return None, MeterProblem(
            False,
            "meter_curve_unsupported",
            f"reading {seq}: the meter key is on {key.curve}, which this verifier cannot check: the value "
            "counts as an ordinary device reading, not as meter-signed",
        )
    try:
        verify_record_signature(record, key)
    except AttestError as exc:
        return None, MeterProblem(True, exc.code if exc.code.startswith("meter_") else "meter_signature",
                                  f"reading {seq}: {exc}")  # fmt: skip
    manipulated = [n for n, v in enumerate(record.readings) if v.status == "M"]
    if manipulated:
        return None, MeterProblem(
            True,
            "meter_manipulated",
            f"reading {seq}: the meter signed status M (manipulation detected) for value {manipulated[0]} "
            "of its record",
        )
    index = carried.value_index
    if index >= len(record.readings):
        return None, MeterProblem(
            True,
            "meter_register_mismatch",
            f"reading {seq} names value {index} of a meter record that holds {len(record.readings)}",
        )
    value = record.readings[index]
    if value.obis is None or _IMPORT_REGISTER.fullmatch(value.obis) is None:
        return None, MeterProblem(
            True,
            "meter_register_mismatch",
            f"reading {seq}: value {index} of the meter record is register {value.obis!r}, not an active energy "
            "import register (OBIS 1.8.x)",
        )
    if value.status != "G":
        return None, MeterProblem(
            True,
            "meter_value_not_good",
            f"reading {seq}: the meter signed value {index} with status {value.status!r}, not G (good): the meter "
            "does not vouch for it",
        )
    try:
        signed_mwh = value.energy_mwh()
    except AttestError as exc:
        return None, MeterProblem(True, "meter_register_mismatch", f"reading {seq}: {exc}")
    if signed_mwh != energy_mwh:
        return None, MeterProblem(
            True,
            "meter_register_mismatch",
            f"reading {seq}: the register is {energy_mwh} mWh, the meter signed {value.value} "
            f"{value.unit} ({signed_mwh} mWh) as value {index}",
        )
    try:
        signed_ms = ocmf_time_ms(value)
    except ValueError:
        return None, MeterProblem(
            True, "meter_time_mismatch", f"reading {seq}: the meter's time {value.time!r} is not a date"
        )
    if abs(signed_ms - time_ms) > TIME_TOLERANCE_MS:
        return None, MeterProblem(
            True,
            "meter_time_mismatch",
            f"reading {seq}: the meter signed value {index} at {value.time}, "
            f"{abs(signed_ms - time_ms) / 1000:.0f} s from the reading's time (at most "
            f"{TIME_TOLERANCE_MS // 1000} s)",
        )
    match = _PG.fullmatch(record.pagination or "")
    if match is None:
        return None, MeterProblem(
            True,
            "meter_pagination",
            f"reading {seq}: the meter record's pagination PG {record.pagination!r} is not a letter and a counter",
        )
    page = (match.group(1).upper(), int(match.group(2)))
    return MeterValue(seq, carried.record, index, page, value.obis), None


def pagination_problem(previous: MeterValue, current: MeterValue) -> str | None:
    """Why ``current`` cannot follow ``previous``, the device's previous valid meter value **of the
    same pagination letter** (each letter counts on its own: T transactions, F fiscal records), or None."""
    (letter, before), (letter_now, now) = previous.page, current.page
    if letter != letter_now:
        raise ValueError("pagination_problem compares values of one letter")
    if now > before:
        return None
    if now == before and current.record == previous.record and current.value_index > previous.value_index:
        return None  # a later value of the same record (a session's begin, then its end)
    if now == before and current.record == previous.record:
        why = "repeats the same value of the same record"
    elif now == before:
        why = "repeats its pagination with a different record"
    else:
        why = "goes back"
    return (
        f"reading {current.seq}: the meter's pagination {letter}{now} {why} after {letter}{before} "
        f"(reading {previous.seq}): a record replayed or attached out of order"
    )
