"""A simulated Eichrecht meter: its own P-256 key, and OCMF records signed like a real meter's.

A certified charger's meter signs ``OCMF|<payload JSON>|<signature JSON>``: the payload JSON is
written once and the ECDSA signature (secp256r1, SHA-256) is over exactly those bytes
(:mod:`attest_core.ocmf`).  The key is derived from a seed string, so a demo or a test gets the
same meter (and the same public key on its "label") every time; signatures are deterministic
too (RFC 6979), so the same values from the same meter give the same record.

The meter keeps its own pagination counter (``PG`` = ``T<n>``, one number per record, rising),
as a real meter does in its non-volatile memory.  For tests it can also produce what must be
rejected: a reading whose status is ``M`` (manipulated) and a record with one digit changed
after signing (:func:`changed_digit`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from attest_core.meterproof import MeterKey
from attest_core.ocmf import MAX_RECORD_BYTES
from edge_agent.simcharger.errors import SimChargerError

ALGORITHM = "ECDSA-secp256r1-SHA256"
CURVE = "secp256r1"
OBIS_IMPORT = "1-b:1.8.0"
"""Active energy import, the register an Eichrecht meter signs (``RI``)."""
_KEY_DOMAIN = b"iot-attest simulated OCMF meter key v1\x00"
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_KWH_STEP = Decimal("0.0001")  # real meters print kWh with four decimals (0.1 Wh)
_ISO14443 = re.compile(r"[0-9A-Fa-f]{8}|[0-9A-Fa-f]{14}")
TRANSACTION_CODES = frozenset("BCXELRAPTS")
STATUS_CODES = frozenset("GTDRMXIOSEF")


@dataclass(frozen=True, slots=True)
class MeterValue:
    """One reading the meter signs (one ``RD`` entry)."""

    time_ms: int
    """UTC, Unix ms: written as ``TM`` with the time status ``S`` (synchronised)."""
    register_wh: int | Decimal
    """The meter's lifetime import register in Wh (0.1 Wh resolution when written in kWh)."""
    transaction: str = "B"
    """``TX``: B begin, C charging, E end (and the other OCMF codes)."""
    status: str = "G"
    """``ST``: G good; M (manipulated) only for tests of what must be rejected."""


def ocmf_time(time_ms: int) -> str:
    """``TM`` of a UTC time: ``YYYY-MM-DDThh:mm:ss,fff+0000 S`` (the meter is synchronised)."""
    when = dt.datetime.fromtimestamp(time_ms // 1000, tz=dt.UTC)
    return f"{when:%Y-%m-%dT%H:%M:%S},{time_ms % 1000:03d}+0000 S"


def _json(value: object) -> str:
    """Compact JSON with Decimal written as an exact number literal (never through float)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_json(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bool | int | str):
        return json.dumps(value)
    raise TypeError(f"not an OCMF payload value: {value!r}")


class OcmfMeter:
    """A simulated Eichrecht meter with its own key (from ``seed``) and its own record counter."""

    def __init__(
        self,
        seed: str,
        *,
        unit: str = "Wh",
        serial: str | None = None,
        vendor: str = "SIMULATED",
        model: str = "SimMeter E1",
        firmware: str = "1.0.0",
        gateway_id: str = "IOT-ATTEST SIMCHARGER",
        gateway_serial: str | None = None,
        gateway_version: str = "1.0.0",
        first_page: int = 1,
    ) -> None:
        if unit not in ("Wh", "kWh"):
            raise SimChargerError(f"the simulated meter writes Wh or kWh, not {unit!r}")
        digest = hashlib.sha256(_KEY_DOMAIN + seed.encode("utf-8")).digest()
        secret = int.from_bytes(digest, "big") % (_P256_ORDER - 1) + 1
        self._key = ec.derive_private_key(secret, ec.SECP256R1())
        self._der = self._key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        self.unit = unit
        self.serial = serial or f"SIM{int.from_bytes(digest[-4:], 'big'):010d}"
        self.vendor, self.model, self.firmware = vendor, model, firmware
        self.gateway_id, self.gateway_version = gateway_id, gateway_version
        self.gateway_serial = gateway_serial or self.serial
        self.next_page = first_page
        """The ``PG`` number of the next record (``T<n>``)."""

    def public_key_der(self) -> bytes:
        return self._der

    def public_key_hex(self) -> str:
        """DER SubjectPublicKeyInfo in upper-case hex, as printed on a real meter's label."""
        return self._der.hex().upper()

    def public_key_oca(self) -> str:
        """The OCA note's spelling: ``oca:base16:asn1:<hex>``."""
        return f"oca:base16:asn1:{self.public_key_hex()}"

    def meter_key(self) -> MeterKey:
        """What an installer enrols for this meter."""
        return MeterKey(CURVE, self._der)

    def _value(self, register_wh: int | Decimal) -> int | Decimal:
        wh = Decimal(register_wh)
        if wh < 0:
            raise SimChargerError(f"a meter register is never negative: {register_wh}")
        if self.unit == "Wh":
            if wh != wh.to_integral_value():
                raise SimChargerError(f"{register_wh} Wh: this meter writes whole Wh")
            return int(wh)
        kwh = wh / 1000
        if kwh != kwh.quantize(_KWH_STEP):
            raise SimChargerError(f"{register_wh} Wh is not a multiple of 0.1 Wh (four kWh decimals)")
        return kwh.quantize(_KWH_STEP)

    def payload(self, values: Sequence[MeterValue], *, id_tag: str = "") -> str:
        """The payload JSON of the next record (takes the next pagination number)."""
        if not values:
            raise SimChargerError("an OCMF record holds at least one reading")
        readings = []
        for value in values:
            if value.transaction not in TRANSACTION_CODES or value.status not in STATUS_CODES:
                raise SimChargerError(f"TX {value.transaction!r} / ST {value.status!r} is not OCMF")
            readings.append(
                {
                    "TM": ocmf_time(value.time_ms),
                    "TX": value.transaction,
                    "RV": self._value(value.register_wh),
                    "RI": OBIS_IMPORT,
                    "RU": self.unit,
                    "RT": "AC",
                    "EF": "",
                    "ST": value.status,
                }
            )
        identified = bool(id_tag)
        id_type = "NONE" if not identified else "ISO14443" if _ISO14443.fullmatch(id_tag) else "CENTRAL"
        payload: dict[str, object] = {
            "FV": "1.0",
            "GI": self.gateway_id,
            "GS": self.gateway_serial,
            "GV": self.gateway_version,
            "PG": f"T{self.next_page}",
            "MV": self.vendor,
            "MM": self.model,
            "MS": self.serial,
            "MF": self.firmware,
            "IS": identified,
            "IL": "TRUSTED" if identified else "NONE",
            "IF": ["RFID_PLAIN", "OCPP_AUTH"] if identified else [],
            "IT": id_type,
            "ID": id_tag,
            "RD": readings,
        }
        self.next_page += 1
        return _json(payload)

    def sign(self, payload: str) -> bytes:
        """``OCMF|<payload>|<signature>``: the signature is over exactly the payload's bytes."""
        signature = self._key.sign(
            payload.encode("utf-8"), ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
        )
        section = _json({"SA": ALGORITHM, "SD": signature.hex().upper()})
        record = f"OCMF|{payload}|{section}".encode()
        if len(record) > MAX_RECORD_BYTES:
            raise SimChargerError(
                f"the OCMF record is {len(record)} bytes; OCPP 2.0.1 carries at most {MAX_RECORD_BYTES}"
            )
        return record

    def record(self, values: Sequence[MeterValue], *, id_tag: str = "") -> bytes:
        """A signed record of ``values`` (one ``RD`` entry each), as the meter sends it."""
        return self.sign(self.payload(values, id_tag=id_tag))


def changed_digit(record: bytes) -> bytes:
    """The record with the first ``RV``'s last digit changed after signing (for tests: the
    signature must no longer verify)."""
    match = re.search(rb'"RV":-?[0-9.]*([0-9])', record)
    if match is None:
        raise SimChargerError("the record has no RV to change")
    position = match.start(1)
    digit = record[position] - ord("0")
    return record[:position] + bytes([ord("0") + (digit + 1) % 10]) + record[position + 1 :]
