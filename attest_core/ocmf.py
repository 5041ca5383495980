"""OCMF: the records a certified (Eichrecht) charger's meter signs itself, parsed strictly.

A record is ``OCMF|<payload JSON>|<signature JSON>`` (SAFE-eV/OCMF-Open-Charge-Metering-Format).
The meter signs the payload section **exactly as transmitted** (SHA-256, then ECDSA): the
signed bytes are kept as received, never re-serialized (real records carry padded strings and
their own spacing).  The header and the signature section are not signed, so ``SA`` (the
algorithm) is only a hint: the curve comes from the meter key the device was enrolled with.

This module parses; checking the ECDSA signature is the verifier's next step (issue 15).
Values are exact: ``RV`` is read as a decimal (never a float) and a reading's register is
converted to milliwatt-hours only when the conversion is exact.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow, Rounded, localcontext
from typing import Any

from attest_core.errors import DecodeError

MAX_RECORD_BYTES = 2500 * 3 // 4
"""OCPP 2.0.1 carries at most 2,500 base64 characters of record: 1,875 bytes."""

ALGORITHMS = {
    # SA as written in real records -> the curve's name in pyca/cryptography and OpenSSL
    "ECDSA-secp192k1-SHA256": "secp192k1",
    "ECDSA-secp256k1-SHA256": "secp256k1",
    "ECDSA-secp192r1-SHA256": "secp192r1",
    "ECDSA-secp256r1-SHA256": "secp256r1",
    "ECDSA-secp384r1-SHA256": "secp384r1",
    "ECDSA-brainpool256r1-SHA256": "brainpoolP256r1",  # the spelling of the OCMF document's table
    "ECDSA-brainpoolP256r1-SHA256": "brainpoolP256r1",  # the spelling real meters send too
    "ECDSA-brainpool384r1-SHA256": "brainpoolP384r1",
    "ECDSA-brainpoolP384r1-SHA256": "brainpoolP384r1",
}
DEFAULT_ALGORITHM = "ECDSA-secp256r1-SHA256"

# "2019-08-13T10:03:15,000+0000 I": local time with milliseconds and UTC offset, then the
# time status: U unknown, I informative, S synchronised, R relative.
_TM = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}),(\d{3})([+-]\d{4}) ([UISR])")
_UNIT_MWH = {"kWh": Decimal(1_000_000), "Wh": Decimal(1_000), "mWh": Decimal(1)}
_MAX_DIGITS = 40
_MAX_MWH = (1 << 63) - 1
_EXACT = Context(prec=100, traps=[Inexact, Rounded, Overflow, InvalidOperation])


@dataclass(frozen=True, slots=True)
class OcmfReading:
    time: str
    """``TM`` as sent (time, milliseconds, offset)."""
    time_status: str
    """U unknown, I informative, S synchronised, R relative."""
    transaction: str | None
    """``TX``: B begin, C charging, X exception, E end, L limit, R remote, A abort, P power, T tariff, S suspended."""
    value: Decimal
    """``RV`` exactly as written."""
    obis: str | None
    unit: str | None
    status: str | None
    """``ST``: G good, T timeout, D disconnected, R not found, M manipulated, X exchanged, I incompatible,
    O out of range, S substitute, E system error, F read error."""

    def energy_mwh(self) -> int:
        """The register in milliwatt-hours, if ``RU`` is an energy unit and the value converts exactly."""
        factor = _UNIT_MWH.get(self.unit or "")
        if factor is None:
            raise DecodeError(f"OCMF reading: unit {self.unit!r} is not kWh, Wh or mWh", code="ocmf_unit")
        value = self.value
        # A register has at most 19 digits in mWh: bound the number before any arithmetic (no
        # Overflow from 1E+999999), and compute in a context wide enough to be exact.
        if not value.is_finite() or len(value.as_tuple().digits) > _MAX_DIGITS or abs(value.adjusted()) > 24:
            raise DecodeError(f"OCMF reading: {value} is not a meter register", code="ocmf_value")
        with localcontext(_EXACT):
            mwh = value * factor
        if mwh != mwh.to_integral_value() or mwh < 0 or mwh > _MAX_MWH:
            raise DecodeError(
                f"OCMF reading: {self.value} {self.unit} is not a whole number of mWh", code="ocmf_value"
            )
        return int(mwh)


@dataclass(frozen=True, slots=True)
class OcmfRecord:
    payload_bytes: bytes
    """The payload section exactly as received: what the meter signed."""
    payload: dict[str, Any]
    readings: tuple[OcmfReading, ...]
    algorithm: str
    """``SA`` as sent, or the default when absent (not signed: the enrolled key decides the curve)."""
    curve: str
    signature: bytes
    """``SD`` decoded from ``SE`` (hex by default, or base64): a DER ECDSA signature (``SM``)."""

    @property
    def pagination(self) -> str | None:
        value = self.payload.get("PG")
        return value if isinstance(value, str) else None


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DecodeError(f"OCMF: the member {key!r} appears twice", code="ocmf_json")
        out[key] = value
    return out


def _json(section: str, what: str) -> dict[str, Any]:
    def no_constant(name: str) -> None:
        raise DecodeError(f"OCMF {what}: {name} is not JSON", code="ocmf_json")

    try:
        doc = json.loads(section, object_pairs_hook=_object_pairs, parse_float=Decimal, parse_int=Decimal,
                         parse_constant=no_constant)  # fmt: skip
    except ValueError as exc:
        raise DecodeError(f"OCMF {what} is not JSON: {exc}", code="ocmf_json") from None
    except RecursionError:  # nested arrays: 1,875 bytes hold hundreds of levels
        raise DecodeError(f"OCMF {what} is nested too deeply", code="ocmf_json") from None
    if not isinstance(doc, dict):
        raise DecodeError(f"OCMF {what} is not a JSON object", code="ocmf_json")
    return doc


def _text(doc: dict[str, Any], key: str, what: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise DecodeError(f"OCMF {what}: {key} must be a string", code="ocmf_field")
    return value


def _reading(item: Any, n: int) -> OcmfReading:
    what = f"reading {n}"
    if not isinstance(item, dict):
        raise DecodeError(f"OCMF {what} is not an object", code="ocmf_field")
    tm = _text(item, "TM", what)
    match = _TM.fullmatch(tm or "")
    if match is None:
        raise DecodeError(f"OCMF {what}: TM {tm!r} is not 'YYYY-MM-DDThh:mm:ss,fff+zzzz S'", code="ocmf_time")
    value = item.get("RV")
    if not isinstance(value, Decimal):  # numbers are read as Decimal, never float
        raise DecodeError(f"OCMF {what}: RV must be a number", code="ocmf_field")
    return OcmfReading(
        time=f"{match.group(1)},{match.group(2)}{match.group(3)}",
        time_status=match.group(4),
        transaction=_text(item, "TX", what),
        value=value,
        obis=_text(item, "RI", what),
        unit=_text(item, "RU", what),
        status=_text(item, "ST", what),
    )


def parse_ocmf(record: str | bytes) -> OcmfRecord:
    """Parse one OCMF record strictly, keeping the signed payload bytes exactly as received."""
    data = record.encode("utf-8") if isinstance(record, str) else bytes(record)
    if len(data) > MAX_RECORD_BYTES:
        raise DecodeError(f"an OCMF record is at most {MAX_RECORD_BYTES} bytes", code="too_large")
    parts = data.split(b"|")
    if len(parts) != 3 or parts[0] != b"OCMF":
        raise DecodeError("an OCMF record is 'OCMF|<payload>|<signature>'", code="ocmf_format")
    try:
        payload_text, signature_text = parts[1].decode("utf-8"), parts[2].decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("an OCMF record is UTF-8", code="ocmf_format") from None
    payload = _json(payload_text, "payload")
    signature = _json(signature_text, "signature section")
    items = payload.get("RD")
    if not isinstance(items, list) or not items:
        raise DecodeError("OCMF payload: RD must be a non-empty list of readings", code="ocmf_field")
    readings = tuple(_reading(item, n) for n, item in enumerate(items))
    algorithm = _text(signature, "SA", "signature section") or DEFAULT_ALGORITHM
    curve = ALGORITHMS.get(algorithm)
    if curve is None:
        raise DecodeError(f"OCMF: signature algorithm {algorithm!r} is not supported", code="ocmf_algorithm")
    encoding = _text(signature, "SE", "signature section") or "hex"
    mime = _text(signature, "SM", "signature section") or "application/x-der"
    if mime != "application/x-der":
        raise DecodeError(f"OCMF: signature format {mime!r} is not application/x-der", code="ocmf_signature")
    sd = _text(signature, "SD", "signature section")
    if not sd:
        raise DecodeError("OCMF: the signature section has no SD", code="ocmf_signature")
    try:
        if encoding == "hex":
            raw = bytes.fromhex(sd)
        elif encoding == "base64":
            raw = base64.b64decode(sd, validate=True)
        else:
            raise DecodeError(
                f"OCMF: signature encoding {encoding!r} is not hex or base64", code="ocmf_signature"
            )
    except (ValueError, binascii.Error):
        raise DecodeError(f"OCMF: SD is not valid {encoding}", code="ocmf_signature") from None
    return OcmfRecord(parts[1], payload, readings, algorithm, curve, raw)
