"""A meter's own signature: its key in a device's enrolment, its record in a reading, the check.

A certified (Eichrecht) charger's meter signs its readings itself (OCMF, :mod:`attest_core.ocmf`).
The device carries what the meter signed, byte for byte, and the auditor checks both
signatures: the device's (Ed25519, over the reading) and the meter's (ECDSA, over the record).

**The meter key is part of the enrolment** (enrolment statement v2, extension type
:data:`ENROLMENT_METER_KEY`)::

    text8   curve              the key's curve, a name of :data:`KNOWN_CURVES` (OpenSSL's spelling)
    ...     public_key         the rest: DER SubjectPublicKeyInfo, as printed on the meter (1..512 bytes)

It changes only through a new enrolment, which only an installer can submit (the log records
who): a device cannot swap in a key of its own by any later entry it signs alone.

**A reading carries the record** (reading payload v2, extension type :data:`READING_METER_RECORD`)::

    u8      format             1 = OCMF
    u8      value_index        which value of the record the reading's register equals (OCMF: RD[i])
    ...     record             the rest: the record exactly as the meter sent it (1..1,875 bytes)

1,875 bytes is what OCPP 2.0.1's 2,500 base64 characters of ``signedMeterData`` hold.
"""

from __future__ import annotations

import base64
import binascii
import enum
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from attest_core.codec import Reader, Writer
from attest_core.errors import DecodeError, SignatureError
from attest_core.extensions import Extension
from attest_core.ocmf import ALGORITHMS, MAX_RECORD_BYTES, OcmfRecord

READING_METER_RECORD = 1
"""Reading payload v2 extension type: the meter's own signed record (:class:`MeterRecord`)."""
ENROLMENT_METER_KEY = 1
"""Enrolment statement v2 extension type: the meter's public key and curve (:class:`MeterKey`)."""

MAX_KEY_BYTES = 512

KNOWN_CURVES = frozenset(ALGORITHMS.values())
"""Curves OCMF meters use; a key on any of them can be enrolled."""
_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "secp192r1": ec.SECP192R1,
    "secp256r1": ec.SECP256R1,
    "secp384r1": ec.SECP384R1,
    "secp256k1": ec.SECP256K1,
    "brainpoolP256r1": ec.BrainpoolP256R1,
    "brainpoolP384r1": ec.BrainpoolP384R1,
}
SUPPORTED_CURVES = frozenset(_CURVES)
"""Curves whose signatures this verifier checks (OpenSSL has no secp192k1): a record signed on
another curve is reported as unchecked (``meter_curve_unsupported``), never as valid."""


class MeterFormat(enum.IntEnum):
    OCMF = 1


@dataclass(frozen=True, slots=True)
class MeterRecord:
    """What a reading carries of its meter's signed record."""

    format: MeterFormat
    value_index: int
    """Which value of the record the reading's register equals (OCMF: the index into ``RD``)."""
    record: bytes
    """The record exactly as the meter sent it (OCMF: ``OCMF|<payload>|<signature>``)."""

    def __post_init__(self) -> None:
        if not isinstance(self.format, MeterFormat):
            raise DecodeError(f"meter record format {self.format!r} is unknown", code="unknown_meter_format")
        if not isinstance(self.value_index, int) or not 0 <= self.value_index <= 255:
            raise DecodeError(
                f"meter record value index {self.value_index!r} is not a byte", code="out_of_range"
            )
        if not isinstance(self.record, bytes) or not 1 <= len(self.record) <= MAX_RECORD_BYTES:
            raise DecodeError(
                f"a meter record is 1 to {MAX_RECORD_BYTES} bytes (OCPP 2.0.1's 2,500 base64 characters)",
                code="too_large",
            )

    def encode(self) -> bytes:
        return Writer().u8(int(self.format)).u8(self.value_index).raw(self.record).getvalue()

    def to_extension(self) -> Extension:
        return Extension(READING_METER_RECORD, self.encode())

    @classmethod
    def decode(cls, value: bytes) -> MeterRecord:
        r = Reader(value, "meter record")
        fmt = r.u8("format")
        index = r.u8("value_index")
        record = value[2:]
        try:
            meter_format = MeterFormat(fmt)
        except ValueError:
            raise DecodeError(
                f"meter record format {fmt} is unknown (1 = OCMF)", code="unknown_meter_format"
            ) from None
        return cls(meter_format, index, record)


@dataclass(frozen=True, slots=True)
class MeterKey:
    """The meter's public key and its curve, as the installer read them from the meter."""

    curve: str
    public_key: bytes
    """DER SubjectPublicKeyInfo (what a meter's label shows in hex)."""

    def __post_init__(self) -> None:
        if self.curve not in KNOWN_CURVES:
            raise DecodeError(
                f"meter key curve {self.curve!r} is not one of {', '.join(sorted(KNOWN_CURVES))}",
                code="bad_meter_key",
            )
        if not isinstance(self.public_key, bytes) or not 1 <= len(self.public_key) <= MAX_KEY_BYTES:
            raise DecodeError(f"a meter public key is 1 to {MAX_KEY_BYTES} bytes", code="bad_meter_key")

    def encode(self) -> bytes:
        return Writer().text8(self.curve).raw(self.public_key).getvalue()

    def to_extension(self) -> Extension:
        return Extension(ENROLMENT_METER_KEY, self.encode())

    @classmethod
    def decode(cls, value: bytes) -> MeterKey:
        r = Reader(value, "meter key")
        curve = r.text8("curve")
        return cls(curve, value[1 + len(curve.encode("utf-8")) :])

    @property
    def supported(self) -> bool:
        return self.curve in SUPPORTED_CURVES

    def load(self) -> ec.EllipticCurvePublicKey:
        """The key as pyca/cryptography holds it; raise ``meter_curve_unsupported`` or ``bad_meter_key``."""
        if not self.supported:
            raise DecodeError(
                f"meter key curve {self.curve} cannot be checked here (no OpenSSL support)",
                code="meter_curve_unsupported",
            )
        try:
            key = load_der_public_key(self.public_key)
        except (ValueError, UnsupportedAlgorithm):
            raise DecodeError(
                "the meter public key is not a DER SubjectPublicKeyInfo", code="bad_meter_key"
            ) from None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise DecodeError("the meter public key is not an elliptic-curve key", code="bad_meter_key")
        if key.curve.name != self.curve:
            raise DecodeError(
                f"the meter public key is on {key.curve.name}, not on the stated {self.curve}",
                code="bad_meter_key",
            )
        return key

    def hex(self) -> str:
        return self.public_key.hex().upper()

    @classmethod
    def from_text(cls, text: str, curve: str | None = None) -> MeterKey:
        """A key as installers and chargers write it: hex (as on a meter's label),
        ``oca:base16:asn1:<hex>`` (the OCA note's form), or base64 of either; the curve is read
        from the key unless given (a secp192k1 key must name its curve)."""
        raw = _key_bytes(text.strip())
        if curve is None:
            try:
                key = load_der_public_key(raw)
            except (ValueError, UnsupportedAlgorithm):
                raise DecodeError(
                    "the meter public key is not a DER key this library reads: give its curve",
                    code="bad_meter_key",
                ) from None
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise DecodeError("the meter public key is not an elliptic-curve key", code="bad_meter_key")
            curve = key.curve.name
        meter_key = cls(curve, raw)
        if meter_key.supported:
            meter_key.load()
        return meter_key


def _key_bytes(text: str) -> bytes:
    prefix = "oca:base16:asn1:"
    if text.lower().startswith(prefix):
        text = text[len(prefix) :]
    try:
        return bytes.fromhex(text)
    except ValueError:
        pass
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError(
            "a meter public key is hex, oca:base16:asn1:<hex>, or base64 of those", code="bad_meter_key"
        ) from None
    try:
        inner = decoded.decode("ascii")
    except UnicodeDecodeError:
        return decoded  # base64 of the DER bytes themselves
    return _key_bytes(inner)


def verify_record_signature(record: OcmfRecord, key: MeterKey) -> None:
    """Raise :class:`SignatureError` (``meter_signature``) unless ``key`` signed the record's payload.

    The curve is the enrolled key's: the record's ``SA`` is not signed.
    """
    public = key.load()
    try:
        public.verify(record.signature, record.payload_bytes, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureError("the meter's signature does not verify under the enrolled meter key",
                             code="meter_signature") from None  # fmt: skip
