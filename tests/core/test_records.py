"""Reading payloads, envelopes, device statements and log entries."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attest_core import domains
from attest_core.chain import ChainState, next_reading
from attest_core.claim import Claim
from attest_core.codec import MAX_U63
from attest_core.device import (
    AssetKind,
    EnrolmentStatement,
    Location,
    RotationStatement,
    decode_enrolment_statement,
    sign_enrolment,
    sign_rotation,
    verify_enrolment,
    verify_rotation,
)
from attest_core.entries import (
    PREV_HASH_IN_ENVELOPE,
    ClaimEntry,
    EnrolmentEntry,
    EntryType,
    ReadingEntry,
    RevocationEntry,
    RotationEntry,
    decode_entry,
    encode_entry,
)
from attest_core.errors import AttestError, DecodeError, KeyFormatError, SignatureError
from attest_core.keys import Ed25519Signer, fingerprint, verify_signature
from attest_core.meterproof import MeterFormat, MeterRecord
from attest_core.reading import (
    MAX_ENVELOPE_SIZE,
    ZERO_COUNTERS,
    Counters,
    Envelope,
    Extension,
    Reading,
    Status,
    Trigger,
    _decode_payload_fast,
    _decode_payload_slowly,
    decode_envelope,
    decode_payload,
    device_key_id,
    reading_hash,
    sign_reading,
)
from attest_core.tariff import Segment, Tariff
from tests.support import T0, seeded_signer

SIGNER = seeded_signer("device-1")


def make_reading(**changes: object) -> Reading:
    fields: dict[str, object] = {
        "device_id": "dev-1",
        "asset_id": "charger-001",
        "seq": 7,
        "time_ms": T0,
        "energy_mwh": 123_456_789,
        "power_mw": 7_400_000,
        "status": Status.OK,
        "trigger": Trigger.PERIODIC,
        "prev_hash": bytes(range(32)),
        "counters": Counters(3, 2, 1, 7_400_123),
    }
    fields.update(changes)
    return Reading(**fields)  # type: ignore[arg-type]


# --- golden vectors: the wire format is pinned --------------------------------


def test_payload_golden_bytes() -> None:
    payload = make_reading().encode()
    assert payload.hex() == (
        "02"  # version
        "05"
        + b"dev-1".hex()
        + "0b"
        + b"charger-001".hex()
        + "0000000000000007"  # seq
        + "000001a0f4c2c400"  # time_ms 2026-10-01T00:00:00Z
        + "00000000075bcd15"  # energy 123456789 mWh
        + "01"
        + "000000000070ea40"  # power 7.4 kW
        + "0000"  # status
        + "00"  # trigger
        + "0000000000000003"  # fault_readings
        + "0000000000000002"  # powerups
        + "0000000000000001"  # unsynced_readings
        + "000000000070eabb"  # max_interval_power_mw 7400123
        + "00"  # no extensions
        + bytes(range(32)).hex()  # prev_hash: the last 32 bytes, as in v1
    )


def test_payload_v1_golden_bytes() -> None:
    """A v1 reading (no counters) still encodes, and decodes, byte for byte as before."""
    payload = make_reading(counters=None).encode()
    assert decode_payload(payload) == make_reading(counters=None)
    assert decode_payload(payload).version == 1
    assert payload.hex() == (
        "01"  # version
        "05"
        + b"dev-1".hex()
        + "0b"
        + b"charger-001".hex()
        + "0000000000000007"  # seq
        + "000001a0f4c2c400"  # time_ms 2026-10-01T00:00:00Z
        + "00000000075bcd15"  # energy 123456789 mWh
        + "01"
        + "000000000070ea40"  # power 7.4 kW
        + "0000"  # status
        + "00"  # trigger
        + bytes(range(32)).hex()
    )


def test_envelope_golden_signature() -> None:
    envelope = sign_reading(make_reading(), SIGNER)
    data = envelope.encode()
    assert data[0] == 1
    assert data[1:9] == device_key_id(SIGNER.public_key)
    assert data[9:11] == len(envelope.payload).to_bytes(2, "big")
    assert data[11:-64] == envelope.payload
    # Ed25519 is deterministic: this pins the domain prefix too.
    assert hashlib.sha256(data).hexdigest()[:16] == hashlib.sha256(envelope.encode()).hexdigest()[:16]
    assert verify_signature(
        SIGNER.public_key, b"iot-attest/v1 reading\x00" + envelope.payload, envelope.signature
    )
    assert not verify_signature(SIGNER.public_key, envelope.payload, envelope.signature)


def test_domain_prefixes_are_distinct_and_prefix_free() -> None:
    prefixes = [v for k, v in vars(domains).items() if k.isupper() and isinstance(v, bytes)]
    assert len(prefixes) == len(set(prefixes)) >= 7
    for a in prefixes:
        assert a.endswith(b"\x00")
        for b in prefixes:
            assert a == b or not b.startswith(a)


# --- readings ----------------------------------------------------------------

readings = st.builds(
    Reading,
    device_id=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True),
    asset_id=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True),
    seq=st.integers(1, MAX_U63),
    time_ms=st.integers(1_577_836_800_000, 7_258_118_399_999),
    energy_mwh=st.integers(0, MAX_U63),
    power_mw=st.none() | st.integers(-(1 << 63), (1 << 63) - 1),
    status=st.integers(0, 0x1F).map(Status),
    trigger=st.sampled_from(Trigger),
    prev_hash=st.binary(min_size=32, max_size=32),
    counters=st.none() | st.builds(Counters, *[st.integers(0, MAX_U63)] * 4),
)


@given(readings)
def test_payload_round_trip(reading: Reading) -> None:
    payload = reading.encode()
    assert decode_payload(payload) == reading
    assert _decode_payload_slowly(payload) == reading
    assert _decode_payload_fast(payload) == reading


def _outcome(fn, data):  # type: ignore[no-untyped-def]
    try:
        return ("ok", fn(data))
    except DecodeError:
        return ("error", None)


def _fast_outcome(data: bytes) -> tuple[str, Reading | None]:
    reading = _decode_payload_fast(data)
    return ("error", None) if reading is None else ("ok", reading)


def _error(data: bytes) -> tuple[str, str] | None:
    try:
        decode_payload(data)
    except DecodeError as exc:
        return (exc.code, str(exc))
    return None


def _assert_decoders_agree(data: bytes) -> None:
    """The fast decoder accepts what the slow one accepts, with the same value; a refusal
    carries the slow decoder's reason code and message."""
    slow = _outcome(_decode_payload_slowly, data)
    assert _fast_outcome(data) == slow
    assert _outcome(decode_payload, data) == slow
    if slow[0] == "error":
        with pytest.raises(DecodeError) as expected:
            _decode_payload_slowly(data)
        assert _error(data) == (expected.value.code, str(expected.value))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(readings, st.data())
def test_fast_and_slow_decoders_accept_the_same_bytes(reading: Reading, data: st.DataObject) -> None:
    payload = bytearray(reading.encode())
    mutation = data.draw(st.sampled_from(["flip", "truncate", "extend", "set"]))
    if mutation == "flip":
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] ^= 1 << data.draw(st.integers(0, 7))
    elif mutation == "truncate":
        del payload[data.draw(st.integers(0, len(payload) - 1)) :]
    elif mutation == "extend":
        payload += data.draw(st.binary(min_size=1, max_size=4))
    else:
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] = data.draw(st.integers(0, 255))
    fast = _outcome(decode_payload, bytes(payload))
    slow = _outcome(_decode_payload_slowly, bytes(payload))
    assert fast == slow
    _assert_decoders_agree(bytes(payload))


@given(st.binary(max_size=300))
def test_payload_decoder_raises_only_decode_errors(data: bytes) -> None:
    assert _outcome(decode_payload, data) == _outcome(_decode_payload_slowly, data)
    _assert_decoders_agree(data)


@pytest.mark.parametrize("counters", [Counters(1, 2, 3, 4), None], ids=["v2", "v1"])
def test_every_truncation_is_named(counters: Counters | None) -> None:
    payload = make_reading(counters=counters).encode()
    for n in range(len(payload)):
        with pytest.raises(DecodeError) as info:
            decode_payload(payload[:n])
        assert info.value.code == "truncated"
        if n:
            assert "reading payload is truncated" in str(info.value)


@pytest.mark.parametrize(
    ("mutate", "code", "words"),
    [
        (lambda p: b"\x03" + p[1:], "bad_version", "version 3"),
        (lambda p: b"\x00" + p[1:], "bad_version", "version 0"),
        (lambda p: p + b"\x00", "trailing_bytes", "1 trailing bytes"),
        (lambda p: p[:2] + b"de/-1" + p[7:], "bad_identifier", "device_id"),
        (lambda p: p[:7] + b"\x00" + p[8:], "bad_identifier", "asset_id"),
    ],
)
def test_malformed_payloads(mutate, code: str, words: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DecodeError) as info:
        decode_payload(mutate(make_reading().encode()))
    assert info.value.code == code
    assert words in str(info.value)


def _with(field_offset_from_end: int, value: bytes) -> bytes:
    payload = bytearray(make_reading(counters=None).encode())
    payload[len(payload) - field_offset_from_end : len(payload) - field_offset_from_end + len(value)] = value
    return bytes(payload)


def test_bad_field_values_are_named() -> None:
    base = make_reading(counters=None).encode()
    seq_at = 2 + 5 + 1 + 11
    cases = {
        "out_of_range": base[:seq_at] + (0).to_bytes(8, "big") + base[seq_at + 8 :],
        "bad_time": base[: seq_at + 8] + (5).to_bytes(8, "big") + base[seq_at + 16 :],
        "bad_flag": base[: seq_at + 24] + b"\x02" + base[seq_at + 25 :],
        "bad_status": _with(32 + 1 + 2, b"\x80\x00"),
        "bad_trigger": _with(32 + 1, b"\x09"),
    }
    big = base[: seq_at + 16] + (1 << 63).to_bytes(8, "big") + base[seq_at + 24 :]
    cases["out_of_range "] = big
    for code, payload in cases.items():
        with pytest.raises(DecodeError) as info:
            decode_payload(payload)
        assert info.value.code == code.strip(), (code, str(info.value))


def test_v2_fields_are_checked_by_both_decoders() -> None:
    """A counter beyond 63 bits, a v1 payload's length with a v2 version (and back), an extension."""
    v2 = make_reading().encode()
    v1 = make_reading(counters=None).encode()
    counters_at = len(v2) - 32 - 33
    cases = {
        "out_of_range": v2[:counters_at] + (1 << 63).to_bytes(8, "big") + v2[counters_at + 8 :],
        "truncated": b"\x02" + v1[1:],  # a v1 body under version 2: too short for the counters
        "trailing_bytes": b"\x01" + v2[1:],  # a v2 body under version 1
        "unknown_extension": v2[: len(v2) - 33] + b"\x01" + b"\x07" + b"\x00\x02ab" + v2[-32:],
    }
    for code, payload in cases.items():
        with pytest.raises(DecodeError) as info:
            decode_payload(payload)
        assert info.value.code == code, (code, str(info.value))
        assert _decode_payload_fast(payload) is None
    assert "extension type 7 is unknown" in str(_error(cases["unknown_extension"]))
    # An extension whose value runs past the payload is truncated, not unknown.
    with pytest.raises(DecodeError) as info:
        decode_payload(v2[: len(v2) - 33] + b"\x01\x07\xff\xff" + v2[-32:])
    assert info.value.code == "truncated"


def test_extension_type_1_is_a_meter_record_and_both_decoders_read_it() -> None:
    record = MeterRecord(MeterFormat.OCMF, 1, b'OCMF|{"RD":[]}|{"SD":"00"}')
    reading = make_reading(extensions=(record.to_extension(),))
    payload = reading.encode()
    assert decode_payload(payload) == reading == _decode_payload_slowly(payload)
    assert _decode_payload_fast(payload) == reading
    assert decode_payload(payload).meter_record == record
    assert make_reading().meter_record is None
    with pytest.raises(DecodeError) as info:
        make_reading(extensions=(Extension(1, b"x"),))  # too short to be a meter record
    assert info.value.code == "truncated"
    with pytest.raises(DecodeError) as info:
        make_reading(extensions=(Extension(1, b"\x09\x00record"),))
    assert info.value.code == "unknown_meter_format"
    bad = payload.replace(b"\x01\x01OCMF", b"\x09\x01OCMF")  # format byte 9 on the wire
    assert bad != payload
    assert _decode_payload_fast(bad) is None
    with pytest.raises(DecodeError) as info:
        decode_payload(bad)
    assert info.value.code == "unknown_meter_format"
    with pytest.raises(DecodeError):
        make_reading(counters=None, extensions=(record.to_extension(),))  # v1 has no extension list


@given(readings)
def test_prev_hash_is_the_payload_tail_in_every_version(reading: Reading) -> None:
    envelope = sign_reading(reading, SIGNER).encode()
    assert envelope[PREV_HASH_IN_ENVELOPE] == reading.prev_hash


def test_reading_constructor_validates() -> None:
    with pytest.raises(DecodeError):
        make_reading(seq=0)
    with pytest.raises(DecodeError):
        make_reading(time_ms=0)
    with pytest.raises(DecodeError):
        make_reading(device_id="a b")
    with pytest.raises(DecodeError):
        make_reading(prev_hash=b"short")
    with pytest.raises(DecodeError):
        make_reading(status=Status(0x40))
    with pytest.raises(DecodeError):
        make_reading(counters=Counters(0, 0, 1 << 63, 0))
    with pytest.raises(DecodeError):
        make_reading(counters=Counters(0, 0, -1, 0))


# --- envelopes ---------------------------------------------------------------


def test_envelope_round_trip_and_verify() -> None:
    envelope = sign_reading(make_reading(), SIGNER)
    decoded = decode_envelope(envelope.encode())
    assert decoded == envelope
    decoded.verify(SIGNER.public_key)
    assert decoded.reading() == make_reading()


def test_envelope_other_key_is_refused() -> None:
    envelope = sign_reading(make_reading(), SIGNER)
    other = seeded_signer("other")
    with pytest.raises(SignatureError) as info:
        envelope.verify(other.public_key)
    assert info.value.code == "wrong_key_id"
    forged = Envelope(device_key_id(other.public_key), envelope.payload, envelope.signature)
    with pytest.raises(SignatureError) as info:
        forged.verify(other.public_key)
    assert info.value.code == "bad_signature"


def test_any_changed_byte_breaks_the_signature() -> None:
    data = sign_reading(make_reading(), SIGNER).encode()
    for i in range(len(data)):
        mutated = bytearray(data)
        mutated[i] ^= 0x01
        with pytest.raises(AttestError):
            decode_envelope(bytes(mutated)).verify(SIGNER.public_key)


def _signed_envelope() -> bytes:
    return sign_reading(make_reading(), SIGNER).encode()


@pytest.mark.parametrize(
    ("action", "code"),
    [
        (lambda: decode_envelope(b"\x01" * (MAX_ENVELOPE_SIZE + 1)), "too_large"),
        (lambda: Envelope(b"k" * 8, b"p" * MAX_ENVELOPE_SIZE, b"s" * 64).encode(), "too_large"),
        (lambda: decode_envelope(b"\x09" + _signed_envelope()[1:]), "bad_version"),
        (lambda: decode_envelope(_signed_envelope() + b"x"), "trailing_bytes"),
        (lambda: decode_envelope(_signed_envelope()[:-1]), "truncated"),
    ],
    ids=["decode_too_large", "encode_too_large", "bad_version", "trailing_bytes", "truncated"],
)
def test_envelope_size_limit_and_structure(action: Callable[[], object], code: str) -> None:
    with pytest.raises(DecodeError) as info:
        action()
    assert info.value.code == code


@given(st.binary(max_size=1100))
def test_envelope_decoder_raises_only_decode_errors(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_envelope(data).reading()


def test_chain_links_each_reading_to_the_last() -> None:
    anchor = b"\x11" * 32
    state = ChainState.genesis(anchor)
    first, state = next_reading(state, SIGNER, device_id="d", asset_id="a", time_ms=T0, energy_mwh=1)
    second, state = next_reading(state, SIGNER, device_id="d", asset_id="a", time_ms=T0 + 1, energy_mwh=2)
    assert first.reading().seq == 1
    assert first.reading().prev_hash == anchor
    assert second.reading().seq == 2
    assert second.reading().prev_hash == reading_hash(first.payload)
    assert state == ChainState(3, reading_hash(second.payload), second.reading().counters, T0 + 1, 2)


def test_chain_signs_v2_readings_with_counters() -> None:
    """Reading 1 counts itself from zero; each next one adds its status flags and keeps the
    highest interval power by attest_core.power's rule."""
    state = ChainState.genesis(b"\x11" * 32)
    made = []
    for time_ms, energy, status in [
        (T0, 0, Status.POWER_UP),
        (T0 + 3_600_000, 5_002_000, Status.OK),  # 5 kWh (+2 Wh slack) in an hour: 5 kW
        (T0 + 7_200_000, 6_002_000, Status.TAMPER | Status.TIME_UNSYNCED),
        (T0 + 7_260_000, 6_002_000, Status.METER_ERROR | Status.POWER_UP),
    ]:
        envelope, state = next_reading(
            state, SIGNER, device_id="d", asset_id="a", time_ms=time_ms, energy_mwh=energy, status=status
        )
        made.append(envelope.reading())
    assert [r.version for r in made] == [2, 2, 2, 2]
    assert [r.counters for r in made] == [
        Counters(0, 1, 0, 0),
        Counters(0, 1, 0, 4_997_224),  # 5_000_000 mWh * 3_600_000 / 3_602_000 ms, rounded up
        Counters(1, 1, 1, 4_997_224),
        Counters(2, 2, 1, 4_997_224),
    ]
    assert state.counters == made[-1].counters
    assert Counters(0, 0, 0, 0) == ZERO_COUNTERS


# --- device statements -------------------------------------------------------


def statement(**changes: object) -> EnrolmentStatement:
    fields: dict[str, object] = {
        "device_id": "dev-1",
        "public_key": SIGNER.public_key,
        "asset_id": "solar-7",
        "asset_kind": AssetKind.SOLAR,
        "rated_power_w": 9_800,
        "location": Location(52_520_000, 13_405_000),
        "time_ms": T0,
    }
    fields.update(changes)
    return EnrolmentStatement(**fields)  # type: ignore[arg-type]


def test_enrolment_round_trip_and_proof_of_possession() -> None:
    data, pop = sign_enrolment(statement(), SIGNER)
    assert decode_enrolment_statement(data) == statement()
    assert verify_enrolment(data, pop) == statement()
    no_location = statement(location=None)
    assert decode_enrolment_statement(no_location.encode()) == no_location
    with pytest.raises(SignatureError) as info:
        verify_enrolment(data, bytes(64))
    assert info.value.code == "bad_proof_of_possession"
    with pytest.raises(SignatureError):
        sign_enrolment(statement(), seeded_signer("someone else"))
    # A reading signature is not a proof of possession (domain separation).
    with pytest.raises(SignatureError):
        verify_enrolment(data, SIGNER.sign(domains.READING_SIGNATURE + data))


def test_enrolment_validation() -> None:
    with pytest.raises(DecodeError):
        statement(rated_power_w=0)
    with pytest.raises(DecodeError):
        statement(location=None, asset_kind=3)
    with pytest.raises(DecodeError, match="latitude"):
        Location(90_000_001, 0)
    with pytest.raises(DecodeError, match="longitude"):
        Location(0, -180_000_001)
    with pytest.raises(KeyFormatError):
        statement(public_key=b"short")
    assert Location.from_degrees("52.52", 13.405) == Location(52_520_000, 13_405_000)
    with pytest.raises(DecodeError):
        Location.from_degrees("north", "1")
    assert AssetKind.parse("Solar") is AssetKind.SOLAR
    with pytest.raises(DecodeError):
        AssetKind.parse("wind")
    data = bytearray(statement().encode())
    data[2 + 5 + 32 + 1 + 7] = 9  # asset kind byte
    with pytest.raises(DecodeError) as info:
        decode_enrolment_statement(bytes(data))
    assert info.value.code == "bad_asset_kind"


def test_key_rotation_needs_both_keys() -> None:
    new = seeded_signer("device-1 new")
    rot = RotationStatement("dev-1", SIGNER.public_key, new.public_key, 100, T0)
    data, old_sig, new_sig = sign_rotation(rot, SIGNER, new)
    assert verify_rotation(data, old_sig, new_sig) == rot
    with pytest.raises(SignatureError) as info:
        verify_rotation(data, new_sig, new_sig)
    assert info.value.code == "bad_rotation_authorization"
    with pytest.raises(SignatureError) as info:
        verify_rotation(data, old_sig, old_sig)
    assert info.value.code == "bad_proof_of_possession"
    with pytest.raises(DecodeError):
        RotationStatement("dev-1", SIGNER.public_key, SIGNER.public_key, 100, T0)
    with pytest.raises(SignatureError):
        sign_rotation(rot, new, SIGNER)


def test_keys() -> None:
    signer = Ed25519Signer.generate()
    assert Ed25519Signer(signer.seed).public_key == signer.public_key
    with pytest.raises(KeyFormatError):
        Ed25519Signer(b"x")
    assert len(fingerprint(signer.public_key)) == 19
    assert not verify_signature(b"x", b"m", bytes(64))
    assert not verify_signature(signer.public_key, b"m", b"short")


# --- log entries -------------------------------------------------------------


def all_entries() -> list:  # type: ignore[type-arg]
    data, pop = sign_enrolment(statement(), SIGNER)
    new = seeded_signer("device-1 new")
    rot, old_sig, new_sig = sign_rotation(
        RotationStatement("dev-1", SIGNER.public_key, new.public_key, 100, T0), SIGNER, new
    )
    claim = Claim(
        "issuer-1", "October", T0, T0 + 86_400_000, ("a", "b"),
        Tariff("EUR", (Segment(0, "0.20"), Segment(420, "0.35"))), 5_000, "1.75", T0 + 90_000_000,
    )  # fmt: skip
    return [
        EnrolmentEntry(data, pop, "installer-1", T0),
        ReadingEntry(sign_reading(make_reading(), SIGNER).encode()),
        RotationEntry(rot, old_sig, new_sig, "installer-1", T0),
        RevocationEntry("dev-1", 41, "stolen: case opened", "installer-1", T0),
        ClaimEntry(claim, T0 + 90_000_001),
    ]


def test_entry_round_trips() -> None:
    for entry in all_entries():
        data = encode_entry(entry)
        assert data[:2] == bytes([1, int(entry.type)])
        decoded = decode_entry(data)
        assert decoded == entry
        assert encode_entry(decoded) == data


def test_entry_types_are_pinned() -> None:
    assert {t.name: int(t) for t in EntryType} == {
        "ENROLMENT": 1, "READING": 2, "KEY_ROTATION": 3, "REVOCATION": 4, "CLAIM": 5, "WITHDRAWAL": 6,
    }  # fmt: skip


def _reading_entry_bytes() -> bytes:
    return encode_entry(all_entries()[1])


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (lambda: b"\x01\x09", "bad_entry_type"),
        (lambda: b"\x02" + _reading_entry_bytes()[1:], "bad_version"),
        (lambda: _reading_entry_bytes() + b"\x00", "trailing_bytes"),
    ],
    ids=["bad_entry_type", "bad_version", "trailing_bytes"],
)
def test_entry_decoding_error_codes(data: Callable[[], bytes], code: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_entry(data())
    assert info.value.code == code


def test_entry_decoding_errors() -> None:
    # a reading entry whose envelope holds a malformed payload
    bad_payload = Envelope(b"k" * 8, b"\x01\x00", bytes(64)).encode()
    with pytest.raises(DecodeError):
        decode_entry(encode_entry(ReadingEntry(bad_payload)))
    for entry in all_entries():
        data = encode_entry(entry)
        for n in range(len(data)):
            with pytest.raises(DecodeError):
                decode_entry(data[:n])


@settings(max_examples=300)
@given(st.sampled_from(range(5)), st.data())
def test_entry_decoder_raises_only_decode_errors(which: int, data: st.DataObject) -> None:
    raw = bytearray(encode_entry(all_entries()[which]))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError):
        decode_entry(bytes(raw))


@given(st.binary(max_size=400))
def test_entry_decoder_on_random_bytes(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_entry(data)
