"""The meter's key in an enrolment, its record in a reading, and the ECDSA check on real records."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from attest_core.device import decode_enrolment_statement
from attest_core.errors import DecodeError, SignatureError
from attest_core.meterproof import (
    ENROLMENT_METER_KEY,
    MeterFormat,
    MeterKey,
    MeterRecord,
    verify_record_signature,
)
from attest_core.ocmf import MAX_RECORD_BYTES, parse_ocmf
from attest_core.reading import MAX_ENVELOPE_SIZE, decode_envelope, sign_reading
from tests.core.test_records import make_reading
from tests.support import TestDevice, seeded_signer

DATA = Path(__file__).resolve().parents[1] / "data" / "ocmf"
MANIFEST = json.loads((DATA / "manifest.json").read_text())


def _sample(entry: dict[str, object]) -> tuple[bytes, MeterKey]:
    record = (DATA / str(entry["file"])).read_bytes().rstrip(b"\n")
    key = MeterKey.from_text((DATA / str(entry["pubkey_file"])).read_text())
    return record, key


@pytest.mark.parametrize("entry", MANIFEST, ids=[str(e["file"]) for e in MANIFEST])
def test_real_records_verify_under_their_meters_keys_and_the_negative_one_does_not(
    entry: dict[str, object],
) -> None:
    record, key = _sample(entry)
    assert key.curve == entry["key_curve"]
    parsed = parse_ocmf(record)
    if entry["verifies"]:
        verify_record_signature(parsed, key)
    else:
        with pytest.raises(SignatureError) as info:
            verify_record_signature(parsed, key)
        assert info.value.code == "meter_signature"


def test_one_changed_digit_or_another_meters_key_fails() -> None:
    record, key = _sample(MANIFEST[0])
    _, other_key = _sample(MANIFEST[1])
    parsed = parse_ocmf(record)
    with pytest.raises(SignatureError):
        verify_record_signature(parsed, other_key)
    changed = record.replace(b'"RV":0.2596', b'"RV":0.2597', 1)
    assert changed != record
    with pytest.raises(SignatureError):
        verify_record_signature(parse_ocmf(changed), key)


def test_a_key_in_every_form_installers_and_chargers_write_it() -> None:
    _, key = _sample(MANIFEST[0])
    hex_text = key.hex()
    forms = [
        hex_text,
        hex_text.lower(),
        f"oca:base16:asn1:{hex_text}",
        base64.b64encode(f"oca:base16:asn1:{hex_text}".encode()).decode(),
        base64.b64encode(key.public_key).decode(),
    ]
    for text in forms:
        assert MeterKey.from_text(text) == key
    with pytest.raises(DecodeError) as info:
        MeterKey.from_text("not a key")
    assert info.value.code == "bad_meter_key"
    with pytest.raises(DecodeError) as info:
        MeterKey.from_text(hex_text, curve="secp384r1")  # the stated curve is not the key's
    assert info.value.code == "bad_meter_key"


def test_an_unsupported_curve_is_a_clear_error_not_a_crash() -> None:
    key = MeterKey("secp192k1", b"\x30\x01\x02")
    assert not key.supported
    record, _ = _sample(MANIFEST[0])
    with pytest.raises(DecodeError) as info:
        verify_record_signature(parse_ocmf(record), key)
    assert info.value.code == "meter_curve_unsupported"
    with pytest.raises(DecodeError) as info:
        MeterKey("curve25519", b"\x01")
    assert info.value.code == "bad_meter_key"


def test_the_meter_key_is_part_of_the_signed_enrolment_statement() -> None:
    _, key = _sample(MANIFEST[3])
    device = TestDevice("dev-1", "charger-1", meter_key=key)
    decoded = decode_enrolment_statement(device.statement_bytes)
    assert decoded.meter_key == key
    assert decoded.extensions[0].type == ENROLMENT_METER_KEY
    assert TestDevice("dev-2", "charger-2").statement.meter_key is None


def test_the_largest_record_ocpp_201_carries_fits_an_envelope_with_the_longest_identifiers() -> None:
    record = MeterRecord(MeterFormat.OCMF, 255, b"O" * MAX_RECORD_BYTES)
    reading = make_reading(
        device_id="d" * 64, asset_id="a" * 64, power_mw=-1, extensions=(record.to_extension(),)
    )
    data = sign_reading(reading, seeded_signer("big")).encode()
    assert len(data) <= MAX_ENVELOPE_SIZE
    assert decode_envelope(data).reading().meter_record == record
    with pytest.raises(DecodeError) as info:
        MeterRecord(MeterFormat.OCMF, 0, b"O" * (MAX_RECORD_BYTES + 1))
    assert info.value.code == "too_large"
