"""OCMF records parsed strictly, on real signed records from German chargers (tests/data/ocmf)."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path

import pytest

from attest_core.errors import DecodeError
from attest_core.ocmf import OcmfReading, parse_ocmf

DATA = Path(__file__).parent.parent / "data" / "ocmf"
MANIFEST = json.loads((DATA / "manifest.json").read_text())


def record(name: str) -> bytes:
    data = (DATA / name).read_bytes()
    assert data.endswith(b"\n")
    return data[:-1]


@pytest.mark.parametrize("item", MANIFEST, ids=[m["file"] for m in MANIFEST])
def test_every_real_record_parses_as_the_reference_verifier_read_it(item: dict[str, object]) -> None:
    raw = record(str(item["file"]))
    parsed = parse_ocmf(raw)
    # the signed bytes are the payload section exactly as received, never re-serialized
    assert parsed.payload_bytes == raw.split(b"|")[1]
    assert raw == b"OCMF|" + parsed.payload_bytes + raw[len(b"OCMF|") + len(parsed.payload_bytes) :]
    assert parsed.curve == item["key_curve"]
    assert parsed.pagination == item["PG"]
    readings = item["readings"]
    assert isinstance(readings, list)
    assert [
        (r.time + " " + r.time_status, r.transaction, r.value, r.unit, r.obis, r.status)
        for r in parsed.readings
    ] == [(tm, tx, Decimal(str(rv)), ru, ri, st) for tm, tx, rv, ru, ri, st in readings]
    assert parsed.signature[0] == 0x30  # a DER SEQUENCE (r, s)


def test_registers_convert_to_exact_milliwatt_hours() -> None:
    keba = parse_ocmf(record("01_keba_kcp30_secp256r1.ocmf"))
    assert [r.energy_mwh() for r in keba.readings] == [259_600, 259_700]  # 0.2596 and 0.2597 kWh
    ebz = parse_ocmf(record("06_ebz_ld3_secp192r1.ocmf"))
    assert [r.energy_mwh() for r in ebz.readings] == [2_850_685_000, 2_850_951_000]  # Wh
    for value, unit, code in ((Decimal("0.0000001"), "kWh", "ocmf_value"), (Decimal(1), "varh", "ocmf_unit")):
        with pytest.raises(DecodeError) as info:
            OcmfReading("t", "S", "B", value, None, unit, "G").energy_mwh()
        assert info.value.code == code


def test_both_spellings_of_brainpool_and_base64_signatures() -> None:
    raw = record("04_nzr_brainpoolP256r1_begin.ocmf")
    head, payload, signature = raw.split(b"|")
    doc = json.loads(signature)
    for sa in ("ECDSA-brainpool256r1-SHA256", "ECDSA-brainpoolP256r1-SHA256"):
        der = bytes.fromhex(doc["SD"])
        section = json.dumps({"SA": sa, "SE": "base64", "SD": base64.b64encode(der).decode()}).encode()
        parsed = parse_ocmf(b"|".join((head, payload, section)))
        assert parsed.curve == "brainpoolP256r1"
        assert parsed.signature == der


@pytest.mark.parametrize(
    ("mangle", "code"),
    [
        (lambda r: r.replace(b"OCMF|", b"OCMX|", 1), "ocmf_format"),
        (lambda r: r + b"|", "ocmf_format"),
        (lambda r: r.replace(b'{"FV"', b'{"FV":"1.0","FV"', 1), "ocmf_json"),  # a member twice
        (lambda r: r.replace(b'"RV":0.2596', b'"RV":NaN', 1), "ocmf_json"),
        (lambda r: r.replace(b'"RV":0.2596', b'"RV":"0.2596"', 1), "ocmf_field"),
        (lambda r: r.replace(b",000+0000 I", b"+0000 I", 1), "ocmf_time"),
        (
            lambda r: r.replace(b'{"SD":"3045', b'{"SA":"ECDSA-secp521r1-SHA512","SD":"3045', 1),
            "ocmf_algorithm",
        ),
        (lambda r: r.replace(b'{"SD":"3045', b'{"SD":"zz45', 1), "ocmf_signature"),
        (lambda r: r.replace(b'"RD":[', b'"RX":[', 1), "ocmf_field"),
        (lambda r: r + b" " * 2000, "too_large"),
    ],
)
def test_malformed_records_are_refused_with_a_reason(mangle: object, code: str) -> None:
    with pytest.raises(DecodeError) as info:
        parse_ocmf(mangle(record("01_keba_kcp30_secp256r1.ocmf")))  # type: ignore[operator]
    assert info.value.code == code
