"""Meter values in a charger's OCPP CALLs: registers and meter-signed (OCMF) records, pure functions.

Input is what the charger sent: the version (``"1.6"`` or ``"2.0.1"``), the action and the
payload dict exactly as sent (camelCase keys; numbers ideally parsed as :class:`~decimal.Decimal`,
floats are taken by their shortest text, which is what the charger wrote for any value of 15
significant digits or fewer).

* **Registers**: ``Energy.Active.Import.Register`` (the default measurand) without a phase, in
  Wh or kWh (2.0.1: times ``10^multiplier``), converted to integer mWh only when exact.
  StartTransaction's ``meterStart`` and StopTransaction's ``meterStop`` (1.6, integer Wh) too.
* **Signed values**: 1.6 ``format: "SignedData"`` (the value is the JSON of a 2.x
  ``SignedMeterValueType`` or a bare OCMF string), 2.0.1 ``signedMeterValue``
  (``signedMeterData`` = base64 of the OCMF string).  Each record is parsed with
  :func:`attest_core.ocmf.parse_ocmf`; which ``RD`` entry the sampled value stands for is
  chosen by context (``Transaction.Begin`` → ``TX: B``, ``Transaction.End`` → ``TX: E``),
  else by the sampled value itself.  A record holding both a begin and an end value that is
  sent only once, at the end, stands for both: two values (begin, then end), in order; the
  meter (edge_agent/meters/ocpp.py) carries the begin value only if it still binds a reading
  made now (its signed time within 120 s, its register not behind the last reading's), and
  the end value's reading carries the same record either way.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from attest_core.errors import AttestError
from attest_core.ocmf import OcmfRecord, parse_ocmf

REGISTER = "Energy.Active.Import.Register"
BEGIN = "Transaction.Begin"
END = "Transaction.End"
_UNITS_MWH = {"Wh": Decimal(1000), "kWh": Decimal(1_000_000)}
_METER_LOCATIONS = (None, "Outlet", "Inlet")
"""Where a register measures the charged energy (``EV`` and ``Body``/``Cable`` do not)."""


@dataclass(frozen=True, slots=True)
class RegisterValue:
    """An unsigned register the charger reported."""

    energy_mwh: int
    context: str | None


@dataclass(frozen=True, slots=True)
class SignedValue:
    """One meter-signed value: the record, which of its values this is, and that value in mWh."""

    record: bytes
    """Exactly as the meter made it (OCMF: ``OCMF|<payload>|<signature>``)."""
    ocmf: OcmfRecord
    value_index: int
    energy_mwh: int
    context: str | None
    public_key: str | None
    """The key the charger sent with the value (as sent), if any."""


@dataclass
class CallValues:
    """What one CALL says about the meter."""

    registers: list[RegisterValue] = field(default_factory=list)
    signed: list[SignedValue] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Values that were refused, each with the reason (for the log)."""
    session: str | None = None
    """``"start"`` or ``"end"`` when the CALL starts or ends a charging session."""
    public_keys: list[str] = field(default_factory=list)
    """Meter public keys the charger sent (as sent), with or without a signed value."""

    @property
    def last_register_mwh(self) -> int | None:
        values = [r.energy_mwh for r in self.registers]
        return values[-1] if values else None


def exact_decimal(value: Any) -> Decimal | None:
    """The number as written (Decimal, int, numeric string; a float by its shortest text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def to_mwh(value: Decimal, unit: str, multiplier: int = 0) -> int:
    """Exact integer mWh, or ValueError saying why not."""
    factor = _UNITS_MWH.get(unit)
    if factor is None:
        raise ValueError(f"unit {unit!r} is not Wh or kWh")
    mwh = value * factor * (Decimal(10) ** multiplier)
    if not mwh.is_finite() or mwh != mwh.to_integral_value() or mwh < 0:
        raise ValueError(
            f"{value} {unit} (multiplier {multiplier}) is not a whole, non-negative number of mWh"
        )
    return int(mwh)


def extract(version: str, action: str, payload: dict[str, Any]) -> CallValues:
    """Registers, signed values and session start/end in one charger→backend CALL."""
    out = CallValues()
    if not isinstance(payload, dict):
        return out
    if version == "1.6":
        _extract16(action, payload, out)
    elif version == "2.0.1":
        _extract201(action, payload, out)
    return out


# --------------------------------------------------------------------------- 1.6


def _extract16(action: str, payload: dict[str, Any], out: CallValues) -> None:
    if action == "StartTransaction":
        out.session = "start"
        _meter_wh(payload.get("meterStart"), "meterStart", BEGIN, out)
    elif action == "MeterValues":
        _meter_values(payload.get("meterValue"), "1.6", out)
    elif action == "StopTransaction":
        out.session = "end"
        _meter_values(payload.get("transactionData"), "1.6", out)
        if not out.signed:
            _meter_wh(payload.get("meterStop"), "meterStop", END, out)


def _meter_wh(value: Any, name: str, context: str, out: CallValues) -> None:
    number = exact_decimal(value) if isinstance(value, int) and not isinstance(value, bool) else None
    if number is None:
        if value is not None:
            out.problems.append(f"{name} {value!r} is not an integer number of Wh")
        return
    try:
        out.registers.append(RegisterValue(to_mwh(number, "Wh"), context))
    except ValueError as exc:
        out.problems.append(f"{name}: {exc}")


# --------------------------------------------------------------------------- 2.0.1


def _extract201(action: str, payload: dict[str, Any], out: CallValues) -> None:
    if action == "TransactionEvent":
        event = payload.get("eventType")
        out.session = {"Started": "start", "Ended": "end"}.get(event) if isinstance(event, str) else None
        _meter_values(payload.get("meterValue"), "2.0.1", out)
    elif action == "MeterValues":
        _meter_values(payload.get("meterValue"), "2.0.1", out)


# --------------------------------------------------------------------------- both


def _meter_values(items: Any, version: str, out: CallValues) -> None:
    if not isinstance(items, list):
        return
    pending: list[tuple[bytes, OcmfRecord, str | None, Decimal | None, str | None]] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("sampledValue"), list):
            continue
        for sampled in item["sampledValue"]:
            if not isinstance(sampled, dict):
                continue
            signed = _signed_of(sampled, version, out)
            if signed is not None:
                pending.append(signed)
                continue
            _register_of(sampled, version, out)
    out.signed.extend(_choose_values(pending, out))


def _register_of(sampled: dict[str, Any], version: str, out: CallValues) -> None:
    if sampled.get("measurand", REGISTER) != REGISTER or sampled.get("phase") is not None:
        return
    if sampled.get("location") not in _METER_LOCATIONS:
        return
    context = sampled.get("context") if isinstance(sampled.get("context"), str) else None
    if version == "1.6":
        if sampled.get("format", "Raw") != "Raw":
            return
        unit, multiplier = sampled.get("unit", "Wh"), 0
    else:
        measure = sampled.get("unitOfMeasure") or {}
        if not isinstance(measure, dict):
            out.problems.append(f"unitOfMeasure {measure!r} is not an object")
            return
        unit, multiplier = measure.get("unit", "Wh"), measure.get("multiplier", 0)
        if not isinstance(multiplier, int) or isinstance(multiplier, bool):
            out.problems.append(f"unitOfMeasure multiplier {multiplier!r} is not an integer")
            return
    number = exact_decimal(sampled.get("value"))
    if number is None:
        out.problems.append(f"{REGISTER} value {sampled.get('value')!r} is not a number")
        return
    try:
        out.registers.append(RegisterValue(to_mwh(number, str(unit), multiplier), context))
    except ValueError as exc:
        out.problems.append(f"{REGISTER} refused (not exact): {exc}")


def _signed_of(
    sampled: dict[str, Any], version: str, out: CallValues
) -> tuple[bytes, OcmfRecord, str | None, Decimal | None, str | None] | None:
    """(record, parsed, context, sampled value, public key) of a signed sampled value, else None."""
    context = sampled.get("context") if isinstance(sampled.get("context"), str) else None
    if version == "1.6":
        if sampled.get("format") != "SignedData":
            return None
        value = sampled.get("value")
        if not isinstance(value, str):
            out.problems.append("a SignedData value is not a string")
            return None
        if value.lstrip().startswith("OCMF|"):
            return _parse_record(value.strip().encode("utf-8"), context, None, None, out)
        try:
            signed_value = json.loads(value, parse_float=Decimal)
        except ValueError:
            out.problems.append(
                "a SignedData value is neither an OCMF record nor a SignedMeterValueType JSON"
            )
            return None
        return _signed_meter_value(signed_value, context, None, out)
    signed_value = sampled.get("signedMeterValue")
    if signed_value is None:
        return None
    return _signed_meter_value(signed_value, context, exact_decimal(sampled.get("value")), out)


def _signed_meter_value(
    signed_value: Any, context: str | None, value: Decimal | None, out: CallValues
) -> tuple[bytes, OcmfRecord, str | None, Decimal | None, str | None] | None:
    if not isinstance(signed_value, dict):
        out.problems.append("a signed meter value is not a SignedMeterValueType object")
        return None
    public_key = signed_value.get("publicKey")
    public_key = public_key.strip() if isinstance(public_key, str) and public_key.strip() else None
    if public_key is not None:
        out.public_keys.append(public_key)
    encoding = signed_value.get("encodingMethod")
    if isinstance(encoding, str) and encoding.strip() and encoding.strip().upper() != "OCMF":
        out.problems.append(f"a signed meter value in encoding {encoding!r}: only OCMF is understood")
        return None
    data = signed_value.get("signedMeterData")
    if not isinstance(data, str) or not data.strip():
        out.problems.append("a signed meter value without signedMeterData")
        return None
    data = data.strip()
    if data.startswith("OCMF|"):
        record = data.encode("utf-8")
    else:
        try:
            record = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            out.problems.append("signedMeterData is neither base64 nor an OCMF record")
            return None
    return _parse_record(record, context, value, public_key, out)


def _parse_record(
    record: bytes, context: str | None, value: Decimal | None, public_key: str | None, out: CallValues
) -> tuple[bytes, OcmfRecord, str | None, Decimal | None, str | None] | None:
    try:
        parsed = parse_ocmf(record)
    except AttestError as exc:
        out.problems.append(f"a signed meter value is not a valid OCMF record ({exc})")
        return None
    return record, parsed, context, value, public_key


def _choose_values(
    pending: list[tuple[bytes, OcmfRecord, str | None, Decimal | None, str | None]], out: CallValues
) -> list[SignedValue]:
    """One SignedValue per RD entry the sampled values stand for, records in order of appearance."""
    contexts: dict[bytes, set[str | None]] = {}
    for record, _, context, _, _ in pending:
        contexts.setdefault(record, set()).add(context)
    chosen: list[SignedValue] = []
    done: set[tuple[bytes, int]] = set()
    for record, parsed, context, value, public_key in pending:
        tx = [r.transaction for r in parsed.readings]
        if context == BEGIN and "B" in tx:
            indexes = [tx.index("B")]
        elif context == END and "E" in tx:
            indexes = [tx.index("E")]
            if "B" in tx and BEGIN not in contexts[record]:
                indexes.insert(0, tx.index("B"))  # sent once, at the end: it stands for both
        else:
            indexes = _by_value(parsed, value)
            if not indexes:
                out.problems.append(
                    f"an OCMF record with {len(tx)} values (TX {tx}) and context {context!r}: "
                    "cannot tell which of its values this sampled value is"
                )
                continue
        for index in indexes:
            if (record, index) in done:
                continue
            done.add((record, index))
            try:
                energy = parsed.readings[index].energy_mwh()
            except AttestError as exc:
                out.problems.append(f"OCMF value {index} refused: {exc}")
                continue
            chosen.append(SignedValue(record, parsed, index, energy, context, public_key))
    return chosen


def _by_value(parsed: OcmfRecord, value: Decimal | None) -> list[int]:
    if len(parsed.readings) == 1:
        return [0]
    if value is None:
        return []
    for index, reading in enumerate(parsed.readings):
        if reading.value == value:
            return [index]
    for index, reading in enumerate(parsed.readings):  # the sampled value in Wh, the record in kWh
        try:
            if reading.energy_mwh() == value * 1000:
                return [index]
        except AttestError:
            continue
    return []
