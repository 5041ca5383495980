"""Statements a device signs about its own identity: enrolment and key rotation.

Enrolment statement (signed by the device key: proof of possession)::

    u8      version            = 1 or 2
    text8   device_id
    32      public_key         Ed25519
    text8   asset_id
    u8      asset_kind         1 charger, 2 solar
    u64     rated_power_w      the asset's rated power in watts (> 0)
    u8      has_location       0 or 1
    [i32    lat_e6]            latitude in micro-degrees, -90e6..90e6
    [i32    lon_e6]            longitude in micro-degrees, -180e6..180e6
    u64     time_ms            when the device made the statement (Unix ms, UTC)
  v2 only:
    text8   log_origin         the origin (= the log key's name) of the one log the device is enrolled in
    32      log_key_hash       SHA-256 of that log's C2SP verifier key string (:func:`log_key_hash`)
    u8      extension count
    [u8 type, bytes16 value]   per extension; type 1 is the meter's public key and curve
                               (attest_core.meterproof); any other type is refused

Version 2 binds the enrolment, and through its chain anchor every reading of the
device, to one log: a v1 statement names no log and can be replayed into another.  The
origin alone is a name anyone may give a log, so the statement also names the log's key.

Rotation statement v1 (signed by the old key to authorize, by the new key to accept)::

    u8      version            = 1
    text8   device_id
    32      old_public_key
    32      new_public_key
    u64     effective_seq      readings with seq >= effective_seq are signed by the new key
    u64     time_ms
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from attest_core import domains
from attest_core.codec import Reader, Writer, check_id, check_u63
from attest_core.errors import DecodeError, SignatureError
from attest_core.extensions import Extension, check_extensions, read_extensions, write_extensions
from attest_core.keys import PUBLIC_KEY_SIZE, Signer, check_public_key, verify_signature
from attest_core.meterproof import ENROLMENT_METER_KEY, MeterKey
from attest_core.notekey import VerifierKey, name_problem
from attest_core.reading import check_time

STATEMENT_VERSION = 1
"""The version of rotation statements, and of enrolment statements that name no log."""
ENROLMENT_V2 = 2
"""An enrolment statement that names its log's origin (and may carry extensions)."""

STATEMENT_EXTENSION_TYPES: frozenset[int] = frozenset({ENROLMENT_METER_KEY})
"""Extension types an enrolment statement v2 may carry (its own registry: a reading payload's
extension types are attest_core.reading's).  Type 1 is the meter's own public key and curve
(attest_core.meterproof); an unknown type is refused, never skipped, so a device cannot slip in
a field a verifier would ignore."""


class AssetKind(enum.IntEnum):
    CHARGER = 1
    SOLAR = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> AssetKind:
        try:
            return cls[text.upper()]
        except KeyError:
            raise DecodeError(
                f"asset kind {text!r} is not one of charger, solar", code="bad_asset_kind"
            ) from None


@dataclass(frozen=True, slots=True)
class Location:
    """A point on Earth in integer micro-degrees (no floats in signed data)."""

    lat_e6: int
    lon_e6: int

    def __post_init__(self) -> None:
        if not isinstance(self.lat_e6, int) or not -90_000_000 <= self.lat_e6 <= 90_000_000:
            raise DecodeError(f"latitude {self.lat_e6!r} µ° is outside -90°..90°", code="bad_location")
        if not isinstance(self.lon_e6, int) or not -180_000_000 <= self.lon_e6 <= 180_000_000:
            raise DecodeError(f"longitude {self.lon_e6!r} µ° is outside -180°..180°", code="bad_location")

    @property
    def lat(self) -> float:
        return self.lat_e6 / 1e6

    @property
    def lon(self) -> float:
        return self.lon_e6 / 1e6

    @classmethod
    def from_degrees(cls, lat: str | float, lon: str | float) -> Location:
        """From degrees given as text or numbers, rounded to the nearest micro-degree."""
        from decimal import Decimal, InvalidOperation

        try:
            lat_e6 = int((Decimal(str(lat)) * 1_000_000).to_integral_value())
            lon_e6 = int((Decimal(str(lon)) * 1_000_000).to_integral_value())
        except (InvalidOperation, ValueError) as exc:
            raise DecodeError(
                f"location {lat!r}, {lon!r} is not a pair of numbers", code="bad_location"
            ) from exc
        return cls(lat_e6, lon_e6)


def check_log_origin(origin: str) -> str:
    """Return ``origin`` if it can name a log, else raise ``bad_log_origin``.

    The origin is the log key's name (attest_core.checkpoint), so it follows the C2SP
    key name rules: non-empty, no white space, no ``+``, no control character; and it
    fits a text8 field.
    """
    if not isinstance(origin, str):
        raise DecodeError(f"log_origin {origin!r} is not a string", code="bad_log_origin")
    problem = name_problem(origin)
    if problem is None and len(origin.encode("utf-8")) > 255:
        problem = "is longer than 255 bytes"
    if problem is not None:
        raise DecodeError(f"log_origin {origin!r} {problem}", code="bad_log_origin")
    return origin


LOG_KEY_HASH_SIZE = 32


def log_key_hash(key: VerifierKey) -> bytes:
    """SHA-256 of the log key's C2SP verifier key string, ``<name>+<8 hex key id>+<base64>``.

    The string is UTF-8, without a newline, exactly as :meth:`VerifierKey.to_string` writes it
    (the only form :meth:`VerifierKey.parse` accepts, so the key as published).  It is the
    fingerprint the agent shows and the operator publishes (``printf '%s' KEY | sha256sum``):
    the log's name is chosen freely, so the name alone does not tell two logs apart; the key does.
    """
    return hashlib.sha256(key.to_string().encode("utf-8")).digest()


@dataclass(frozen=True, slots=True)
class EnrolmentStatement:
    device_id: str
    public_key: bytes
    asset_id: str
    asset_kind: AssetKind
    rated_power_w: int
    location: Location | None
    time_ms: int
    log_origin: str | None = None
    """The log the device enrols in (v2); None makes a v1 statement, which names no log."""
    extensions: tuple[Extension, ...] = ()
    """v2 only; none is defined yet."""
    log_key_hash: bytes | None = None
    """v2 (required with ``log_origin``): :func:`log_key_hash` of the log key the device pinned."""

    def __post_init__(self) -> None:
        check_id(self.device_id, "device_id")
        check_public_key(self.public_key)
        check_id(self.asset_id, "asset_id")
        if not isinstance(self.asset_kind, AssetKind):
            raise DecodeError(f"asset_kind {self.asset_kind!r} is not an AssetKind", code="bad_asset_kind")
        check_u63(self.rated_power_w, "rated_power_w")
        if self.rated_power_w == 0:
            raise DecodeError("rated_power_w must be positive", code="out_of_range")
        check_time(self.time_ms, "time_ms")
        if self.log_origin is None:
            if self.extensions or self.log_key_hash is not None:
                raise DecodeError(
                    "a v1 enrolment statement (naming no log) has no log key hash and no extensions",
                    code="bad_version",
                )
        else:
            check_log_origin(self.log_origin)
            if not isinstance(self.log_key_hash, bytes) or len(self.log_key_hash) != LOG_KEY_HASH_SIZE:
                raise DecodeError(
                    f"an enrolment statement v2 names its log's key by a {LOG_KEY_HASH_SIZE}-byte SHA-256, "
                    f"got {self.log_key_hash!r}",
                    code="bad_log_key_hash",
                )
        check_extensions(self.extensions, STATEMENT_EXTENSION_TYPES, "enrolment statement")
        for extension in self.extensions:
            if extension.type == ENROLMENT_METER_KEY:
                MeterKey.decode(extension.value)

    @property
    def meter_key(self) -> MeterKey | None:
        """The meter's own public key, if the device was enrolled with one (a certified charger's)."""
        for extension in self.extensions:
            if extension.type == ENROLMENT_METER_KEY:
                return MeterKey.decode(extension.value)
        return None

    @property
    def version(self) -> int:
        return STATEMENT_VERSION if self.log_origin is None else ENROLMENT_V2

    def encode(self) -> bytes:
        w = (
            Writer()
            .u8(self.version)
            .text8(self.device_id)
            .raw(self.public_key)
            .text8(self.asset_id)
            .u8(int(self.asset_kind))
            .u64(self.rated_power_w)
        )
        if self.location is None:
            w.u8(0)
        else:
            w.u8(1).i32(self.location.lat_e6).i32(self.location.lon_e6)
        w.u64(self.time_ms)
        if self.log_origin is not None and self.log_key_hash is not None:
            w.text8(self.log_origin)
            w.raw(self.log_key_hash)
            write_extensions(w, self.extensions)
        return w.getvalue()

    def chain_anchor(self) -> bytes:
        """What reading seq 1 of this device carries as ``prev_hash``."""
        return enrolment_anchor(self.encode())


def enrolment_anchor(statement_bytes: bytes) -> bytes:
    return domains.tagged_hash(domains.ENROLMENT_HASH, statement_bytes)


def decode_enrolment_statement(data: bytes) -> EnrolmentStatement:
    r = Reader(data, "enrolment statement")
    version = r.u8("version")
    if version not in (STATEMENT_VERSION, ENROLMENT_V2):
        raise DecodeError(f"enrolment statement version {version} is not supported", code="bad_version")
    device_id = r.ident("device_id")
    public_key = r.raw(PUBLIC_KEY_SIZE, "public_key")
    asset_id = r.ident("asset_id")
    kind = r.u8("asset_kind")
    rated = r.u63("rated_power_w")
    has_location = r.u8("has_location")
    if has_location not in (0, 1):
        raise DecodeError(
            f"enrolment statement: has_location must be 0 or 1, got {has_location}", code="bad_flag"
        )
    location = Location(r.i32("lat_e6"), r.i32("lon_e6")) if has_location else None
    time_ms = r.u63("time_ms")
    log_origin: str | None = None
    key_hash: bytes | None = None
    extensions: tuple[Extension, ...] = ()
    if version == ENROLMENT_V2:
        log_origin = check_log_origin(r.text8("log_origin"))
        key_hash = r.raw(LOG_KEY_HASH_SIZE, "log_key_hash")
        extensions = read_extensions(r)
    r.finish()
    try:
        asset_kind = AssetKind(kind)
    except ValueError:
        raise DecodeError(f"enrolment statement: unknown asset kind {kind}", code="bad_asset_kind") from None
    return EnrolmentStatement(
        device_id,
        public_key,
        asset_id,
        asset_kind,
        rated,
        location,
        time_ms,
        log_origin,
        extensions,
        key_hash,
    )


def sign_enrolment(statement: EnrolmentStatement, signer: Signer) -> tuple[bytes, bytes]:
    """Return (statement bytes, proof-of-possession signature) made by the device key."""
    if signer.public_key != statement.public_key:
        raise SignatureError("the signer's key is not the key in the enrolment statement", code="wrong_key")
    data = statement.encode()
    return data, signer.sign(domains.ENROLMENT_SIGNATURE + data)


def verify_enrolment(statement_bytes: bytes, pop_signature: bytes) -> EnrolmentStatement:
    """Decode an enrolment statement and check its proof of possession."""
    statement = decode_enrolment_statement(statement_bytes)
    if not verify_signature(
        statement.public_key, domains.ENROLMENT_SIGNATURE + statement_bytes, pop_signature
    ):
        raise SignatureError(
            f"the proof of possession of device {statement.device_id} does not verify under its key",
            code="bad_proof_of_possession",
        )
    return statement


@dataclass(frozen=True, slots=True)
class RotationStatement:
    device_id: str
    old_public_key: bytes
    new_public_key: bytes
    effective_seq: int
    time_ms: int

    def __post_init__(self) -> None:
        check_id(self.device_id, "device_id")
        check_public_key(self.old_public_key)
        check_public_key(self.new_public_key)
        if self.old_public_key == self.new_public_key:
            raise DecodeError("a key rotation must change the key", code="same_key")
        check_u63(self.effective_seq, "effective_seq")
        if self.effective_seq < 1:
            raise DecodeError("effective_seq starts at 1", code="out_of_range")
        check_time(self.time_ms, "time_ms")

    def encode(self) -> bytes:
        return (
            Writer()
            .u8(STATEMENT_VERSION)
            .text8(self.device_id)
            .raw(self.old_public_key)
            .raw(self.new_public_key)
            .u64(self.effective_seq)
            .u64(self.time_ms)
            .getvalue()
        )


def decode_rotation_statement(data: bytes) -> RotationStatement:
    r = Reader(data, "rotation statement")
    version = r.u8("version")
    if version != STATEMENT_VERSION:
        raise DecodeError(f"rotation statement version {version} is not supported", code="bad_version")
    statement = RotationStatement(
        r.ident("device_id"),
        r.raw(PUBLIC_KEY_SIZE, "old_public_key"),
        r.raw(PUBLIC_KEY_SIZE, "new_public_key"),
        r.u63("effective_seq"),
        r.u63("time_ms"),
    )
    r.finish()
    return statement


def sign_rotation(statement: RotationStatement, old: Signer, new: Signer) -> tuple[bytes, bytes, bytes]:
    """Return (statement bytes, old key's authorization, new key's acceptance)."""
    if old.public_key != statement.old_public_key or new.public_key != statement.new_public_key:
        raise SignatureError("the signers' keys are not the keys in the rotation statement", code="wrong_key")
    data = statement.encode()
    return (
        data,
        old.sign(domains.ROTATION_AUTHORIZE_SIGNATURE + data),
        new.sign(domains.ROTATION_ACCEPT_SIGNATURE + data),
    )


def verify_rotation(statement_bytes: bytes, old_signature: bytes, new_signature: bytes) -> RotationStatement:
    statement = decode_rotation_statement(statement_bytes)
    if not verify_signature(
        statement.old_public_key, domains.ROTATION_AUTHORIZE_SIGNATURE + statement_bytes, old_signature
    ):
        raise SignatureError(
            f"the key rotation of device {statement.device_id} is not authorized by its old key",
            code="bad_rotation_authorization",
        )
    if not verify_signature(
        statement.new_public_key, domains.ROTATION_ACCEPT_SIGNATURE + statement_bytes, new_signature
    ):
        raise SignatureError(
            f"the new key in the rotation of device {statement.device_id} did not sign it",
            code="bad_proof_of_possession",
        )
    return statement
