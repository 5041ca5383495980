"""Signed meter readings: the payload a device signs and the envelope it sends.

Payload v2 (big-endian, see docs/protocol.md section 2)::

    u8      version            = 2 (1: a v1 payload, the same without the counters and extensions)
    text8   device_id          identifier
    text8   asset_id           identifier
    u64     seq                1, 2, 3, ... strictly +1 per device
    u64     time_ms            device time, Unix milliseconds, UTC
    u64     energy_mwh         the meter's cumulative register, milliwatt-hours
    u8      has_power          0 or 1
    [i64    power_mw]          instantaneous power in milliwatts, if has_power
    u16     status             meter status flags (Status)
    u8      trigger            why the reading was taken (Trigger)
    u64     fault_readings     (v2) readings since enrolment with tamper or meter error, this one included
    u64     powerups           (v2) readings since enrolment with status power-up, this one included
    u64     unsynced_readings  (v2) readings since enrolment with the clock unsynchronised, this one included
    u64     max_interval_power_mw  (v2) highest attest_core.power.interval_power_mw between
                               consecutive readings since enrolment, up to this one
    u8      extension count    (v2) then per extension: u8 type, bytes16 value, types strictly
                               ascending; type 1 is the meter's own signed record
                               (attest_core.meterproof); any other type is refused (unknown_extension)
    32      prev_hash          reading_hash of reading seq-1; for seq 1 the enrolment's chain anchor

``prev_hash`` is the last 32 bytes of every payload version: the gateway's sequencer
reads it there without decoding (attest_core.entries.PREV_HASH_IN_ENVELOPE).  The rules
that make and check the counters are :mod:`attest_core.counters`'.

Envelope v1, what goes over MQTT and into the log::

    u8      version            = 1
    8       key_id             device_key_id(public key that signed)
    u16     payload length
    ...     payload            the exact bytes that were signed
    64      signature          Ed25519(READING_SIGNATURE || payload)

An envelope is at most :data:`MAX_ENVELOPE_SIZE` bytes.
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass
from typing import NamedTuple

from attest_core import domains
from attest_core.codec import Reader, Writer, check_id, check_u63
from attest_core.errors import DecodeError, SignatureError
from attest_core.extensions import (
    Extension,
    check_extensions,
    read_extensions,
    read_extensions_counted,
    write_extensions,
)
from attest_core.keys import SIGNATURE_SIZE, Signer, verify_signature
from attest_core.meterproof import READING_METER_RECORD, MeterRecord

PAYLOAD_VERSION = 2
"""What encoders write for a reading with counters; a reading without (``counters=None``) is a v1 payload."""
PAYLOAD_VERSIONS = (1, 2)
ENVELOPE_VERSION = 1
KEY_ID_SIZE = 8
HASH_SIZE = 32
MAX_ENVELOPE_SIZE = 2304
"""Hard limit on an envelope's size; a gateway rejects larger messages before decoding.

2,304 bytes (it was 1,024): a reading of the longest identifiers carrying the largest meter
record OCPP 2.0.1 can deliver (2,500 base64 characters, 1,875 bytes) is 2,187 bytes, and the
limit leaves some room without letting a message grow much beyond what a reading needs."""

MIN_TIME_MS = 1_577_836_800_000
"""2020-01-01T00:00:00Z: no reading of this protocol is older."""
MAX_TIME_MS = 7_258_118_400_000
"""2200-01-01T00:00:00Z: a sanity bound on the encoding, not a skew check."""


class Status(enum.IntFlag):
    """Meter status flags carried by every reading."""

    OK = 0
    TAMPER = 0x0001
    """The meter reports manipulation (e.g. OCMF status M, an opened case)."""
    METER_ERROR = 0x0002
    """The meter reports an internal error; its register may be unreliable."""
    TIME_UNSYNCED = 0x0004
    """The device clock was not synchronised when the reading was taken."""
    POWER_UP = 0x0008
    """First reading after the device (re)started."""
    SIMULATED = 0x0010
    """The reading comes from a simulated meter (demo, tests, benchmarks)."""


KNOWN_STATUS_BITS = 0x001F
FATAL_STATUS = Status.TAMPER | Status.METER_ERROR


class Counters(NamedTuple):
    """What a device counted since its enrolment, up to and including this reading (payload v2).

    A device upgraded from v1 starts from what its stored readings showed at the upgrade
    (docs/protocol.md section 2): only differences between two v2 readings of one device
    are evidence, and :mod:`attest_core.counters` says what they prove.
    """

    fault_readings: int
    """Readings whose status has tamper or meter error (FATAL_STATUS)."""
    powerups: int
    """Readings whose status has power-up."""
    unsynced_readings: int
    """Readings whose status has clock unsynchronised."""
    max_interval_power_mw: int
    """The highest attest_core.power.interval_power_mw between consecutive readings."""


ZERO_COUNTERS = Counters(0, 0, 0, 0)


KNOWN_EXTENSION_TYPES: frozenset[int] = frozenset({READING_METER_RECORD})
"""Extension types this version understands (type 1: the meter's own signed record, exactly as it
sent it, attest_core.meterproof); any other is refused (``unknown_extension``)."""


class Trigger(enum.IntEnum):
    """Why a reading was taken."""

    PERIODIC = 0
    SESSION_START = 1
    SESSION_END = 2
    BOOT = 3


def device_key_id(public_key: bytes) -> bytes:
    """The 8-byte key id that names a device key inside an envelope."""
    return domains.tagged_hash(domains.DEVICE_KEY_ID, public_key)[:KEY_ID_SIZE]


def reading_hash(payload: bytes) -> bytes:
    """The chain link of a reading: what the next reading carries as ``prev_hash``."""
    return domains.tagged_hash(domains.READING_HASH, payload)


@dataclass(frozen=True, slots=True)
class Reading:
    """The decoded content of a reading payload."""

    device_id: str
    asset_id: str
    seq: int
    time_ms: int
    energy_mwh: int
    power_mw: int | None
    status: Status
    trigger: Trigger
    prev_hash: bytes
    counters: Counters | None = None
    """None for a v1 payload, which carries no counters."""
    extensions: tuple[Extension, ...] = ()

    @property
    def version(self) -> int:
        """The payload version this reading encodes to (and was decoded from)."""
        return 1 if self.counters is None else 2

    def __post_init__(self) -> None:
        check_id(self.device_id, "device_id")
        check_id(self.asset_id, "asset_id")
        check_u63(self.seq, "seq")
        if self.seq < 1:
            raise DecodeError("seq starts at 1", code="out_of_range")
        check_time(self.time_ms, "time_ms")
        check_u63(self.energy_mwh, "energy_mwh")
        if self.power_mw is not None and (
            not isinstance(self.power_mw, int) or not -(1 << 63) <= self.power_mw < (1 << 63)
        ):
            raise DecodeError(f"power_mw {self.power_mw!r} is not a 64-bit integer", code="out_of_range")
        if int(self.status) & ~KNOWN_STATUS_BITS:
            raise DecodeError(f"unknown status bits 0x{int(self.status):04x}", code="bad_status")
        if len(self.prev_hash) != HASH_SIZE:
            raise DecodeError(f"prev_hash must be {HASH_SIZE} bytes", code="bad_hash")
        if self.counters is None:
            if self.extensions:
                raise DecodeError("a v1 reading (no counters) carries no extensions", code="bad_version")
        else:
            if not isinstance(self.counters, tuple) or len(self.counters) != len(Counters._fields):
                raise DecodeError("counters must be a Counters", code="out_of_range")
            for name, value in zip(Counters._fields, self.counters, strict=True):
                check_u63(value, name)
        check_reading_extensions(self.extensions)

    @property
    def meter_record(self) -> MeterRecord | None:
        """The meter's own signed record this reading carries, if any."""
        for extension in self.extensions:
            if extension.type == READING_METER_RECORD:
                return MeterRecord.decode(extension.value)
        return None

    def encode(self) -> bytes:
        """The payload bytes (to be signed exactly as returned): v2, or v1 if ``counters`` is None."""
        w = (
            Writer()
            .u8(self.version)
            .text8(self.device_id)
            .text8(self.asset_id)
            .u64(self.seq)
            .u64(self.time_ms)
            .u64(self.energy_mwh)
        )
        if self.power_mw is None:
            w.u8(0)
        else:
            w.u8(1).i64(self.power_mw)
        w.u16(int(self.status)).u8(int(self.trigger))
        if self.counters is not None:
            for value in self.counters:
                w.u64(value)
            write_extensions(w, self.extensions)
        return w.raw(self.prev_hash).getvalue()


def check_reading_extensions(extensions: tuple[Extension, ...]) -> None:
    """Refuse an extension list a v2 reading cannot carry, or a meter record that does not decode."""
    check_extensions(extensions, KNOWN_EXTENSION_TYPES, "reading payload")
    for extension in extensions:
        if extension.type == READING_METER_RECORD:
            MeterRecord.decode(extension.value)


def check_time(value: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not MIN_TIME_MS <= value < MAX_TIME_MS:
        raise DecodeError(
            f"{what} {value!r} is outside 2020-01-01..2200-01-01 in Unix milliseconds", code="bad_time"
        )
    return value


_ID_BYTES = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_FIXED = struct.Struct(">QQQB")
_FIXED_TAIL = struct.Struct(">HB")
_POWER = struct.Struct(">q")
_COUNTERS = struct.Struct(">QQQQ")  # v2: the four counters (then the extension count)
_new_counters = tuple.__new__  # Counters(...) without the keyword-handling wrapper
_MAX_U63 = (1 << 63) - 1
_TRIGGERS = {int(t): t for t in Trigger}
_STATUSES = {bits: Status(bits) for bits in range(KNOWN_STATUS_BITS + 1)}
# The slot descriptors of the frozen Reading: setting a field through them gets past the frozen
# __setattr__ more cheaply than object.__setattr__ does (a bundle can hold millions of readings).
_new_reading = Reading.__new__
(
    _set_device_id,
    _set_asset_id,
    _set_seq,
    _set_time_ms,
    _set_energy_mwh,
    _set_power_mw,
    _set_status,
    _set_trigger,
    _set_prev_hash,
    _set_counters,
    _set_extensions,
) = (
    getattr(Reading, name).__set__
    for name in (
        "device_id",
        "asset_id",
        "seq",
        "time_ms",
        "energy_mwh",
        "power_mw",
        "status",
        "trigger",
        "prev_hash",
        "counters",
        "extensions",
    )
)


def decode_payload(payload: bytes) -> Reading:
    """Decode payload bytes; raise :class:`DecodeError` naming what is malformed.

    Two decoders, proven to agree: :func:`_decode_payload_fast` decodes with a few
    ``struct`` calls and only says yes or no; :func:`_decode_payload_slowly` reads field
    by field and names the problem.  The fast one decides; the slow one runs only
    on bytes the fast one refuses, to give the reason code.  A hypothesis property
    test (tests/core/test_records.py) checks on valid and changed payloads that both
    accept the same bytes and decode them to the same reading, the slow one serving
    as the oracle.
    """
    reading = _decode_payload_fast(payload)
    if reading is not None:
        return reading
    _decode_payload_slowly(payload)
    raise DecodeError("reading payload is malformed", code="malformed")  # pragma: no cover


def _decode_payload_fast(payload: bytes) -> Reading | None:
    """The reading of a well-formed payload, or None (then the slow decoder says why)."""
    try:
        version = payload[0]
        if version != 2 and version != 1:
            raise IndexError
        n = payload[1]
        end = 2 + n
        if _ID_BYTES.fullmatch(payload, 2, end) is None:
            raise IndexError
        device_id = payload[2:end].decode("ascii")
        m = payload[end]
        pos = end + 1
        end = pos + m
        if _ID_BYTES.fullmatch(payload, pos, end) is None:
            raise IndexError
        asset_id = payload[pos:end].decode("ascii")
        seq, time_ms, energy, has_power = _FIXED.unpack_from(payload, end)
        pos = end + 25
        if has_power == 1:
            power: int | None = _POWER.unpack_from(payload, pos)[0]
            pos += 8
        elif has_power == 0:
            power = None
        else:
            raise IndexError
        status, trigger = _FIXED_TAIL.unpack_from(payload, pos)
        pos += 3
        counters: Counters | None = None
        extensions: tuple[Extension, ...] = ()
        if version == 2:
            counters = _new_counters(Counters, _COUNTERS.unpack_from(payload, pos))
            if max(counters) > _MAX_U63:
                raise IndexError
            count = payload[pos + 32]
            pos += 33
            if count:
                # Rare (meter-signed readings): the slow reader parses and checks the list.
                r = Reader(payload[pos:], "reading payload")
                extensions = read_extensions_counted(r, count)
                pos += r.offset
                check_reading_extensions(extensions)
        prev_hash = payload[pos : pos + HASH_SIZE]
        if (
            pos + HASH_SIZE != len(payload)
            or not 1 <= seq <= _MAX_U63
            or not MIN_TIME_MS <= time_ms < MAX_TIME_MS
            or energy > _MAX_U63
            or status not in _STATUSES
            or trigger not in _TRIGGERS
        ):
            raise IndexError
        # Every field is checked above: fill the slots directly, without __post_init__.
        reading = _new_reading(Reading)
        _set_device_id(reading, device_id)
        _set_asset_id(reading, asset_id)
        _set_seq(reading, seq)
        _set_time_ms(reading, time_ms)
        _set_energy_mwh(reading, energy)
        _set_power_mw(reading, power)
        _set_status(reading, _STATUSES[status])
        _set_trigger(reading, _TRIGGERS[trigger])
        _set_prev_hash(reading, bytes(prev_hash))
        _set_counters(reading, counters)
        _set_extensions(reading, extensions)
        return reading
    except (IndexError, struct.error, TypeError, DecodeError):
        return None


def _decode_payload_slowly(payload: bytes) -> Reading:
    """Field by field, naming the first problem: the reason codes, and the fast decoder's oracle."""
    r = Reader(payload, "reading payload")
    version = r.u8("version")
    if version not in PAYLOAD_VERSIONS:
        raise DecodeError(
            f"reading payload version {version} is not supported (expected 1 or 2)", code="bad_version"
        )
    device_id = r.ident("device_id")
    asset_id = r.ident("asset_id")
    seq = r.u63("seq")
    time_ms = r.u63("time_ms")
    energy = r.u63("energy_mwh")
    has_power = r.u8("has_power")
    if has_power not in (0, 1):
        raise DecodeError(f"reading payload: has_power must be 0 or 1, got {has_power}", code="bad_flag")
    power = r.i64("power_mw") if has_power else None
    status = r.u16("status")
    trigger = r.u8("trigger")
    counters: Counters | None = None
    extensions: tuple[Extension, ...] = ()
    if version == 2:
        counters = Counters(*(r.u63(name) for name in Counters._fields))
        extensions = read_extensions(r)
    prev_hash = r.raw(HASH_SIZE, "prev_hash")
    r.finish()
    if status & ~KNOWN_STATUS_BITS:
        raise DecodeError(f"reading payload: unknown status bits 0x{status:04x}", code="bad_status")
    try:
        trig = Trigger(trigger)
    except ValueError:
        raise DecodeError(f"reading payload: unknown trigger {trigger}", code="bad_trigger") from None
    if seq < 1:
        raise DecodeError("reading payload: seq 0 is not allowed (sequences start at 1)", code="out_of_range")
    check_time(time_ms, "reading payload: time_ms")
    check_reading_extensions(extensions)
    return Reading(
        device_id,
        asset_id,
        seq,
        time_ms,
        energy,
        power,
        Status(status),
        trig,
        prev_hash,
        counters,
        extensions,
    )


@dataclass(frozen=True, slots=True)
class Envelope:
    """A signed reading as transmitted: key id, exact payload bytes, signature."""

    key_id: bytes
    payload: bytes
    signature: bytes

    def encode(self) -> bytes:
        data = (
            Writer()
            .u8(ENVELOPE_VERSION)
            .raw(self.key_id)
            .bytes16(self.payload)
            .raw(self.signature)
            .getvalue()
        )
        if len(data) > MAX_ENVELOPE_SIZE:
            raise DecodeError(
                f"envelope of {len(data)} bytes exceeds the limit of {MAX_ENVELOPE_SIZE}", code="too_large"
            )
        return data

    def reading(self) -> Reading:
        return decode_payload(self.payload)

    def signed_message(self) -> bytes:
        return domains.READING_SIGNATURE + self.payload

    def verify(self, public_key: bytes) -> None:
        """Raise :class:`SignatureError` unless ``public_key`` signed this payload under this key id."""
        if device_key_id(public_key) != self.key_id:
            raise SignatureError("the envelope names another key id than the device key", code="wrong_key_id")
        if not verify_signature(public_key, self.signed_message(), self.signature):
            raise SignatureError("the reading's signature does not verify under the device key")


def decode_envelope(data: bytes) -> Envelope:
    """Decode envelope bytes (the payload inside is not decoded: see :meth:`Envelope.reading`)."""
    if len(data) > MAX_ENVELOPE_SIZE:
        raise DecodeError(
            f"envelope of {len(data)} bytes exceeds the limit of {MAX_ENVELOPE_SIZE}", code="too_large"
        )
    r = Reader(data, "reading envelope")
    version = r.u8("version")
    if version != ENVELOPE_VERSION:
        raise DecodeError(f"envelope version {version} is not supported (expected 1)", code="bad_version")
    key_id = r.raw(KEY_ID_SIZE, "key_id")
    payload = r.bytes16("payload")
    signature = r.raw(SIGNATURE_SIZE, "signature")
    r.finish()
    return Envelope(key_id, payload, signature)


def sign_reading(reading: Reading, signer: Signer) -> Envelope:
    """Encode ``reading``, sign the exact payload bytes, and wrap them in an envelope."""
    payload = reading.encode()
    signature = signer.sign(domains.READING_SIGNATURE + payload)
    return Envelope(device_key_id(signer.public_key), payload, signature)
