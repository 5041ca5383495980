"""Typed log entries: the exact bytes each Merkle leaf covers.

Every entry starts with a two-byte header, then the body of its type::

    u8      version            the version of the type's body: 1, or 2 (revocation, claim, withdrawal)
    u8      type               EntryType

    ENROLMENT     bytes16 statement, 64 proof-of-possession signature,
                  text8 installer, u64 logged_at_ms
                  v2 adds: 32 asset_link
    READING       bytes16 envelope (exactly as received from the device)
    KEY_ROTATION  bytes16 statement, 64 old-key signature, 64 new-key signature,
                  text8 installer, u64 logged_at_ms
                  v2 adds: 32 asset_link
    REVOCATION    v1: text8 device_id, u64 last_valid_seq, text16 reason,
                  text8 revoked_by, u64 time_ms
                  v2: v1's fields, then u64 readings_disowned, u8 revoker_role, 32 asset_link
    CLAIM         the claim (attest_core.claim), u64 logged_at_ms
                  v2 adds: 32 supersedes (the leaf hash of the issuer's claim it replaces,
                  zeros: none), then per claimed asset, in the claim's order, 32 previous
                  (the leaf hash of the latest live claim on that asset when this one was
                  filed, zeros: none), then per claimed asset 32 identity (the leaf hash of
                  the asset's latest identity entry when this one was filed, zeros: none)

``asset_link`` (v2 identity entries) is the leaf hash of the previous identity entry
(enrolment, key rotation or revocation) of a device of the same asset, zeros for the
first: per asset the identity entries form a chain, so leaving one out of a bundle is seen
(attest_core.identitychain).
    WITHDRAWAL    (v2) text8 issuer, 32 claim (the leaf hash of the claim withdrawn),
                  text16 reason, u64 logged_at_ms

An entry's version is its body's version: only types whose body changed are written with
version 2.

The leaf hash is RFC 6962's SHA-256(0x00 || entry bytes).  Decoding checks the
structure of everything, including the nested statement, envelope and payload;
it does not check signatures (see each entry's ``verify``).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

from attest_core.claim import Claim
from attest_core.codec import Reader, Writer, check_id, check_u63
from attest_core.device import (
    EnrolmentStatement,
    RotationStatement,
    decode_enrolment_statement,
    decode_rotation_statement,
    verify_enrolment,
    verify_rotation,
)
from attest_core.errors import DecodeError
from attest_core.keys import SIGNATURE_SIZE
from attest_core.reading import (
    ENVELOPE_VERSION,
    HASH_SIZE,
    KEY_ID_SIZE,
    MAX_ENVELOPE_SIZE,
    Envelope,
    Reading,
    check_time,
    decode_envelope,
    decode_payload,
)

ENTRY_VERSION = 1
IDENTITY_V2 = 2
"""The header version of an enrolment, key-rotation or revocation entry chained to its asset's."""
REVOCATION_V2 = IDENTITY_V2
"""The header version of a revocation entry that records its revoker's role and what it disowns."""
CLAIM_ENTRY_VERSION = 2
"""The version a v2 gateway writes claim entries with (v1 claim entries have no links)."""
MAX_REASON_BYTES = 1000
NO_LINK = bytes(32)
"""A claim link naming no entry: no earlier live claim on the asset, or nothing superseded."""


class RevokerRole(enum.IntEnum):
    """The role of the token that revoked a device (revocation v2)."""

    INSTALLER = 1
    """The installer who enrolled the device: it may not disown readings already logged."""
    OPERATOR = 2
    """The gateway's operator: it may revoke any device and disown logged readings, with a reason."""

    @property
    def label(self) -> str:
        return self.name.lower()


def check_revocation_authority(role: RevokerRole, readings_disowned: int, reason: str) -> None:
    """Raise unless ``role`` may make a revocation that disowns ``readings_disowned`` logged readings.

    Disowning readings already logged refutes every claim they back, so only an operator
    may do it, and only with a reason (codes ``disown_needs_operator``, ``reason_required``).
    """
    if readings_disowned and role is not RevokerRole.OPERATOR:
        raise DecodeError(
            f"a revocation that disowns {readings_disowned} logged readings needs the operator role, "
            f"not {role.label}",
            code="disown_needs_operator",
        )
    if readings_disowned and not reason.strip():
        raise DecodeError("a revocation that disowns logged readings needs a reason", code="reason_required")


class EntryType(enum.IntEnum):
    ENROLMENT = 1
    READING = 2
    KEY_ROTATION = 3
    REVOCATION = 4
    CLAIM = 5
    WITHDRAWAL = 6

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


@dataclass(frozen=True, slots=True)
class EnrolmentEntry:
    statement_bytes: bytes
    pop_signature: bytes
    installer: str
    logged_at_ms: int
    version: int = ENTRY_VERSION
    asset_link: bytes | None = None
    """v2: the leaf hash of the previous identity entry of the asset (None: the first)."""

    type = EntryType.ENROLMENT

    def __post_init__(self) -> None:
        _check_identity_version(self.version, self.asset_link)

    @property
    def statement(self) -> EnrolmentStatement:
        return decode_enrolment_statement(self.statement_bytes)

    def verify(self) -> EnrolmentStatement:
        """The statement, once its proof of possession is checked."""
        return verify_enrolment(self.statement_bytes, self.pop_signature)

    def encode_body(self, w: Writer) -> None:
        w.bytes16(self.statement_bytes).raw(self.pop_signature).text8(self.installer).u64(self.logged_at_ms)
        if self.version == IDENTITY_V2:
            w.raw(self.asset_link or NO_LINK)


@dataclass(frozen=True)
class ReadingEntry:
    envelope_bytes: bytes

    type = EntryType.READING
    version = ENTRY_VERSION

    @cached_property
    def envelope(self) -> Envelope:
        return decode_envelope(self.envelope_bytes)

    @cached_property
    def reading(self) -> Reading:
        return decode_payload(self.envelope.payload)

    def encode_body(self, w: Writer) -> None:
        w.bytes16(self.envelope_bytes)


@dataclass(frozen=True, slots=True)
class RotationEntry:
    statement_bytes: bytes
    old_signature: bytes
    new_signature: bytes
    installer: str
    logged_at_ms: int
    version: int = ENTRY_VERSION
    asset_link: bytes | None = None
    """v2: the leaf hash of the previous identity entry of the asset (None: the first)."""

    type = EntryType.KEY_ROTATION

    def __post_init__(self) -> None:
        _check_identity_version(self.version, self.asset_link)

    @property
    def statement(self) -> RotationStatement:
        return decode_rotation_statement(self.statement_bytes)

    def verify(self) -> RotationStatement:
        return verify_rotation(self.statement_bytes, self.old_signature, self.new_signature)

    def encode_body(self, w: Writer) -> None:
        w.bytes16(self.statement_bytes).raw(self.old_signature).raw(self.new_signature)
        w.text8(self.installer).u64(self.logged_at_ms)
        if self.version == IDENTITY_V2:
            w.raw(self.asset_link or NO_LINK)


@dataclass(frozen=True, slots=True)
class RevocationEntry:
    device_id: str
    last_valid_seq: int
    """Readings with a higher sequence number are disowned, even if already logged."""
    reason: str
    revoked_by: str
    time_ms: int
    readings_disowned: int | None = None
    """v2: how many readings the gateway had logged (or accepted to log) above ``last_valid_seq``
    when it made the revocation.  None: a v1 entry, which does not say."""
    revoker_role: RevokerRole | None = None
    """v2: the role of ``revoked_by``'s token.  None: a v1 entry, which does not say."""
    asset_link: bytes | None = None
    """v2: the leaf hash of the previous identity entry of the asset (None: the first)."""

    type = EntryType.REVOCATION

    def __post_init__(self) -> None:
        check_id(self.device_id, "device_id")
        check_u63(self.last_valid_seq, "last_valid_seq")
        if len(self.reason.encode("utf-8")) > MAX_REASON_BYTES:
            raise DecodeError(f"a revocation reason is at most {MAX_REASON_BYTES} bytes", code="too_large")
        check_id(self.revoked_by, "revoked_by")
        check_time(self.time_ms, "time_ms")
        if (self.readings_disowned is None) != (self.revoker_role is None):
            raise DecodeError(
                "a revocation v2 has both readings_disowned and revoker_role, a v1 neither",
                code="bad_version",
            )
        if self.readings_disowned is not None and self.revoker_role is not None:
            check_u63(self.readings_disowned, "readings_disowned")
            if not isinstance(self.revoker_role, RevokerRole):
                raise DecodeError(f"revoker_role {self.revoker_role!r} is not a role", code="bad_role")
            check_revocation_authority(self.revoker_role, self.readings_disowned, self.reason)
        _check_identity_version(self.version, self.asset_link)

    @property
    def version(self) -> int:
        return ENTRY_VERSION if self.revoker_role is None else REVOCATION_V2

    def encode_body(self, w: Writer) -> None:
        w.text8(self.device_id).u64(self.last_valid_seq).text16(self.reason).text8(self.revoked_by)
        w.u64(self.time_ms)
        if self.readings_disowned is not None and self.revoker_role is not None:
            w.u64(self.readings_disowned).u8(int(self.revoker_role)).raw(self.asset_link or NO_LINK)


@dataclass(frozen=True, slots=True)
class ClaimEntry:
    claim: Claim
    logged_at_ms: int
    supersedes: bytes | None = None
    """v2: the leaf hash of the issuer's earlier claim this one replaces (void from here on)."""
    previous: tuple[bytes | None, ...] | None = None
    """v2: per claimed asset, in the claim's order, the leaf hash of the latest live claim on
    it when this one was filed (None: there was none).  None for a v1 entry, which has no links."""
    identity: tuple[bytes | None, ...] | None = None
    """v2: per claimed asset, in the claim's order, the leaf hash of the asset's latest identity
    entry when this one was filed (None: there was none).  None for a v1 entry."""

    type = EntryType.CLAIM

    def __post_init__(self) -> None:
        if self.previous is None:
            if self.supersedes is not None or self.identity is not None:
                raise DecodeError("a v1 claim entry has no links", code="bad_claim_links")
            return
        identity = self.identity
        if identity is None:  # naming no identity entry for any asset
            identity = (None,) * len(self.claim.assets)
            object.__setattr__(self, "identity", identity)
        if not len(self.previous) == len(identity) == len(self.claim.assets):
            raise DecodeError(
                f"a claim entry names {len(self.previous)} previous claims and {len(identity)} identity "
                f"entries for {len(self.claim.assets)} assets",
                code="bad_claim_links",
            )
        for link in (self.supersedes, *self.previous, *identity):
            if link is not None and (len(link) != HASH_SIZE or link == NO_LINK):
                raise DecodeError("a claim link is a 32-byte leaf hash, not zeros", code="bad_claim_links")

    @property
    def version(self) -> int:
        return ENTRY_VERSION if self.previous is None else CLAIM_ENTRY_VERSION

    def links(self) -> dict[str, bytes]:
        """Asset -> leaf hash of the previous live claim on it, for the assets that had one."""
        if self.previous is None:
            return {}
        return {a: link for a, link in zip(self.claim.assets, self.previous, strict=True) if link is not None}

    def encode_body(self, w: Writer) -> None:
        self.claim.encode_into(w)
        w.u64(self.logged_at_ms)
        if self.previous is not None:
            w.raw(self.supersedes or NO_LINK)
            for link in self.previous:
                w.raw(link or NO_LINK)
            for link in self.identity or ():
                w.raw(link or NO_LINK)


@dataclass(frozen=True, slots=True)
class WithdrawalEntry:
    """An issuer withdraws one of its claims: from this entry on the claim backs nothing."""

    issuer: str
    claim: bytes
    """The leaf hash of the claim entry withdrawn."""
    reason: str
    logged_at_ms: int

    type = EntryType.WITHDRAWAL
    version = CLAIM_ENTRY_VERSION

    def __post_init__(self) -> None:
        check_id(self.issuer, "issuer")
        if len(self.claim) != HASH_SIZE or self.claim == NO_LINK:
            raise DecodeError("a withdrawal names a claim by its 32-byte leaf hash", code="bad_claim_links")
        if len(self.reason.encode("utf-8")) > MAX_REASON_BYTES:
            raise DecodeError(f"a withdrawal reason is at most {MAX_REASON_BYTES} bytes", code="too_large")
        check_time(self.logged_at_ms, "logged_at_ms")

    def encode_body(self, w: Writer) -> None:
        w.text8(self.issuer).raw(self.claim).text16(self.reason).u64(self.logged_at_ms)


Entry = EnrolmentEntry | ReadingEntry | RotationEntry | RevocationEntry | ClaimEntry | WithdrawalEntry


def encode_entry(entry: Entry) -> bytes:
    w = Writer().u8(entry.version).u8(int(entry.type))
    entry.encode_body(w)
    return w.getvalue()


def decode_entry(data: bytes) -> Entry:
    """Decode entry bytes, checking the structure of everything nested inside."""
    r = Reader(data, "log entry")
    version = r.u8("version")
    kind = r.u8("type")
    expected = _VERSIONS.get(kind, (ENTRY_VERSION,))
    if version not in expected:
        raise DecodeError(
            f"log entry version {version} is not supported for type {kind} "
            f"(expected {' or '.join(map(str, expected))})",
            code="bad_version",
        )
    entry: Entry
    if kind == EntryType.READING:
        r.what = "reading entry"
        reading_entry = ReadingEntry(r.bytes16("envelope"))
        r.finish()
        _ = reading_entry.reading  # decodes envelope and payload, raising DecodeError if malformed
        return reading_entry
    if kind == EntryType.ENROLMENT:
        r.what = "enrolment entry"
        entry = EnrolmentEntry(
            r.bytes16("statement"),
            r.raw(SIGNATURE_SIZE, "signature"),
            r.ident("installer"),
            r.u63("logged_at_ms"),
            version,
            _asset_link(r, version),
        )
        _ = entry.statement
    elif kind == EntryType.KEY_ROTATION:
        r.what = "key-rotation entry"
        entry = RotationEntry(
            r.bytes16("statement"),
            r.raw(SIGNATURE_SIZE, "old-key signature"),
            r.raw(SIGNATURE_SIZE, "new-key signature"),
            r.ident("installer"),
            r.u63("logged_at_ms"),
            version,
            _asset_link(r, version),
        )
        _ = entry.statement
    elif kind == EntryType.REVOCATION:
        r.what = "revocation entry"
        device_id = r.ident("device_id")
        last_valid_seq = r.u63("last_valid_seq")
        reason = r.text16("reason")
        revoked_by = r.ident("revoked_by")
        time_ms = r.u63("time_ms")
        disowned: int | None = None
        role: RevokerRole | None = None
        if version == REVOCATION_V2:
            disowned = r.u63("readings_disowned")
            role_byte = r.u8("revoker_role")
            try:
                role = RevokerRole(role_byte)
            except ValueError:
                raise DecodeError(
                    f"revocation entry: unknown revoker role {role_byte}", code="bad_role"
                ) from None
        entry = RevocationEntry(
            device_id, last_valid_seq, reason, revoked_by, time_ms, disowned, role, _asset_link(r, version)
        )
    elif kind == EntryType.CLAIM:
        r.what = "claim entry"
        claim = Claim.decode_from(r)
        logged_at = r.u63("logged_at_ms")
        if version == ENTRY_VERSION:
            entry = ClaimEntry(claim, logged_at)
        else:
            supersedes = _link(r.raw(HASH_SIZE, "supersedes"))
            previous = tuple(_link(r.raw(HASH_SIZE, "previous claim")) for _ in claim.assets)
            identity = tuple(_link(r.raw(HASH_SIZE, "identity entry")) for _ in claim.assets)
            entry = ClaimEntry(claim, logged_at, supersedes, previous, identity)
    elif kind == EntryType.WITHDRAWAL:
        r.what = "withdrawal entry"
        entry = WithdrawalEntry(
            r.ident("issuer"), r.raw(HASH_SIZE, "claim"), r.text16("reason"), r.u63("logged_at_ms")
        )
    else:
        raise DecodeError(f"log entry type {kind} is unknown", code="bad_entry_type")
    r.finish()
    return entry


_VERSIONS: dict[int, tuple[int, ...]] = {
    EntryType.ENROLMENT: (ENTRY_VERSION, IDENTITY_V2),
    EntryType.KEY_ROTATION: (ENTRY_VERSION, IDENTITY_V2),
    EntryType.REVOCATION: (ENTRY_VERSION, REVOCATION_V2),
    EntryType.CLAIM: (ENTRY_VERSION, CLAIM_ENTRY_VERSION),
    EntryType.WITHDRAWAL: (CLAIM_ENTRY_VERSION,),
}
"""The versions each entry type is decoded in; a type not named here has version 1 only."""


def _link(raw: bytes) -> bytes | None:
    return None if raw == NO_LINK else raw


def _asset_link(r: Reader, version: int) -> bytes | None:
    return _link(r.raw(HASH_SIZE, "asset_link")) if version == IDENTITY_V2 else None


def _check_identity_version(version: int, asset_link: bytes | None) -> None:
    if version not in (ENTRY_VERSION, IDENTITY_V2):
        raise DecodeError(f"identity entry version {version} is not 1 or 2", code="bad_version")
    if asset_link is not None and (
        version != IDENTITY_V2 or len(asset_link) != HASH_SIZE or asset_link == NO_LINK
    ):
        raise DecodeError(
            "an asset link is a 32-byte leaf hash in a v2 identity entry", code="bad_claim_links"
        )


class SignedReading(NamedTuple):
    """A reading entry taken apart: what :func:`decode_log_entry` gives for one."""

    key_id: bytes
    payload: bytes
    """The exact payload bytes the device signed."""
    signature: bytes
    reading: Reading


# entry version, entry type, envelope length; envelope version, key id, payload length
_READING_HEAD = struct.Struct(f">BBHB{KEY_ID_SIZE}sH")
_new_signed_reading = tuple.__new__  # SignedReading(...) without the keyword-handling wrapper


def decode_log_entry(data: bytes) -> Entry | SignedReading:
    """:func:`decode_entry`, but a reading entry comes back as a :class:`SignedReading`.

    The verifier's hot path: it checks exactly what :func:`decode_entry` checks, without
    building the intermediate objects.  Anything its fast path does not accept is decoded
    by :func:`decode_entry`, so malformed bytes raise the very same :class:`DecodeError`.
    """
    size = len(data)
    if type(data) is bytes and size >= _READING_HEAD.size + SIGNATURE_SIZE:
        version, kind, envelope_size, envelope_version, key_id, payload_size = _READING_HEAD.unpack_from(data)
        end = _READING_HEAD.size + payload_size
        if (
            version == ENTRY_VERSION
            and kind == EntryType.READING
            and envelope_size == size - 4
            and envelope_size <= MAX_ENVELOPE_SIZE
            and envelope_version == ENVELOPE_VERSION
            and end + SIGNATURE_SIZE == size
        ):
            payload = data[_READING_HEAD.size : end]
            reading = decode_payload(payload)  # raises what decode_entry would raise
            return _new_signed_reading(SignedReading, (key_id, payload, data[end:], reading))
    entry = decode_entry(data)
    if isinstance(entry, ReadingEntry):  # a reading entry given as a bytearray or memoryview
        envelope = entry.envelope
        return SignedReading(envelope.key_id, envelope.payload, envelope.signature, entry.reading)
    return entry


_READING_ENTRY_HEADER = bytes([ENTRY_VERSION, EntryType.READING])

PREV_HASH_IN_ENVELOPE = slice(-SIGNATURE_SIZE - HASH_SIZE, -SIGNATURE_SIZE)
"""Where a reading's ``prev_hash`` lies in its envelope: the payload's last 32 bytes, just
before the signature.  The sequencer links chains with it without decoding the envelope."""


def reading_entry_bytes(envelope_bytes: bytes) -> bytes:
    """The entry bytes of a reading, without decoding it (the gateway's hot path).

    Equal to ``encode_entry(ReadingEntry(envelope_bytes))`` for every envelope of at most
    :data:`MAX_ENVELOPE_SIZE` bytes (tested), built
    without a :class:`Writer`: the gateway calls it for every reading it logs or serves.
    """
    return _READING_ENTRY_HEADER + len(envelope_bytes).to_bytes(2, "big") + envelope_bytes
