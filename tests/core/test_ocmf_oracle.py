"""pyocmf (0.6, an independent OCMF implementation) as an oracle for attest_core's OCMF code.

On every real record in tests/data/ocmf, on records of the simulated meter
(:mod:`edge_agent.simcharger.meter`) and on records signed here over each curve attest_core knows,
pyocmf (``OCMF.from_string`` + ``verify_signature``) and attest_core (``parse_ocmf`` +
``meterproof.verify_record_signature`` under ``MeterKey.from_text`` of the key) must give the same
verdict and read the same values (RV, TM, TX, PG); one changed digit must fail in both.

Where the two cannot agree, the test says so and pins it:

* pyocmf 0.6 does not support **brainpoolP384r1** at all (its key parser has no such curve, and
  its SA list spells it only ``brainpool384r1``): attest_core verifies those records alone.
* pyocmf 0.6 refuses the SA spelling ``ECDSA-brainpool256r1-SHA256`` (the OCMF document's table)
  with a brainpoolP256r1 key ("curve mismatch"); attest_core takes both spellings (the curve
  comes from the enrolled key; SA is not signed).  The spelling real meters send,
  ``ECDSA-brainpoolP256r1-SHA256``, agrees.
* **secp192k1**: pyocmf verifies it (pure-Python ``ecdsa`` fallback); attest_core cannot (OpenSSL
  has no secp192k1) and says ``meter_curve_unsupported``: unchecked, never valid.
* secp521r1 is not an OCMF curve and not one attest_core accepts (pyocmf does): not tested.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import warnings
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from ecdsa import SigningKey
from ecdsa.curves import Curve
from ecdsa.ellipticcurve import CurveFp, PointJacobi
from ecdsa.util import sigencode_der
from pyocmf import OCMF, SpecWarning
from pyocmf.exceptions import SignatureVerificationError

from attest_core.errors import DecodeError, SignatureError
from attest_core.meterproof import MeterKey, verify_record_signature
from attest_core.ocmf import OcmfRecord, parse_ocmf
from edge_agent.simcharger.meter import MeterValue, OcmfMeter, changed_digit

DATA = Path(__file__).parent.parent / "data" / "ocmf"
MANIFEST = json.loads((DATA / "manifest.json").read_text())
T0 = 1_780_000_000_000


def sample(item: dict[str, Any]) -> tuple[bytes, str]:
    """A real record (without its file's final newline) and its key's hex."""
    data = (DATA / item["file"]).read_bytes()
    assert data.endswith(b"\n")
    return data[:-1], (DATA / item["pubkey_file"]).read_text().strip()


def pyocmf_parse(record: bytes, *, strict: bool = False) -> OCMF:
    # Real records deviate from the spec in ways pyocmf reports as SpecWarning (06's ID is not an
    # EMAID); the verdict is what is compared, so the warnings are not errors here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecWarning)
        return OCMF.from_string(record.decode("utf-8"), strict=strict)


def pyocmf_verdict(record: bytes, key_hex: str) -> bool:
    return bool(pyocmf_parse(record).verify_signature(key_hex))


def attest_verdict(record: bytes, key_hex: str, curve: str | None = None) -> bool:
    try:
        verify_record_signature(parse_ocmf(record), MeterKey.from_text(key_hex, curve))
    except SignatureError as exc:
        if exc.code != "meter_signature":
            raise
        return False
    return True


def _utc(tm: str) -> dt.datetime:
    return dt.datetime.strptime(tm.replace(",", "."), "%Y-%m-%dT%H:%M:%S.%f%z")


def assert_same_values(ours: OcmfRecord, theirs: OCMF) -> None:
    assert ours.pagination == theirs.payload.PG
    assert len(ours.readings) == len(theirs.payload.RD)
    for mine, other in zip(ours.readings, theirs.payload.RD, strict=True):
        assert isinstance(other.RV, Decimal)
        assert mine.value == other.RV  # exact, both Decimal
        assert str(mine.value) == str(other.RV)  # the same digits too (0.2596, not 0.25960)
        assert mine.unit == str(other.RU)
        assert mine.transaction == str(other.TX)
        assert other.TM is not None
        assert _utc(mine.time) == other.TM.timestamp
        assert _utc(mine.time).utcoffset() == other.TM.timestamp.utcoffset()
        assert mine.time_status == str(other.TM.status)
        assert mine.status == str(other.ST)


# -- the real records --------------------------------------------------------------------------------


@pytest.mark.parametrize("item", MANIFEST, ids=[m["file"] for m in MANIFEST])
def test_real_records_same_verdict_and_values(item: dict[str, Any]) -> None:
    record, key = sample(item)
    assert pyocmf_verdict(record, key) is attest_verdict(record, key) is item["verifies"]
    assert_same_values(parse_ocmf(record), pyocmf_parse(record))


@pytest.mark.parametrize("item", [m for m in MANIFEST if m["verifies"]], ids=lambda m: m["file"])
def test_one_changed_digit_fails_in_both(item: dict[str, Any]) -> None:
    record, key = sample(item)
    tampered = changed_digit(record)
    assert tampered != record
    assert parse_ocmf(tampered).readings[0].value != parse_ocmf(record).readings[0].value
    assert pyocmf_verdict(tampered, key) is False
    assert attest_verdict(tampered, key) is False


# -- the simulated meter -----------------------------------------------------------------------------

SIMULATED: dict[str, Callable[[OcmfMeter], bytes]] = {
    "begin-Wh": lambda m: m.record([MeterValue(T0 + 1, 1_234_567, "B")], id_tag="1A2B3C4D"),
    "end-Wh": lambda m: m.record([MeterValue(T0 + 3_600_000, 1_241_967, "E")], id_tag="04A1B2C3D4E5F6"),
    "charging-Wh-no-id": lambda m: m.record([MeterValue(T0 + 999, 0, "C")]),
    "begin-end-one-record": lambda m: m.record(
        [MeterValue(T0, 10, "B"), MeterValue(T0 + 60_000, 7_410, "E")], id_tag="CUSTOMER-42"
    ),
    "manipulated": lambda m: m.record([MeterValue(T0, 5, "E", status="M")]),
}


@pytest.mark.parametrize("unit", ["Wh", "kWh"])
@pytest.mark.parametrize("name", list(SIMULATED))
def test_simulated_records_verify_in_both_with_the_same_values(name: str, unit: str) -> None:
    meter = OcmfMeter(f"oracle-{unit}", unit=unit, first_page=7)
    record = SIMULATED[name](meter)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the simulated meter follows the spec: no SpecWarning at all
        theirs = OCMF.from_string(record.decode("utf-8"), strict=True)
    assert theirs.verify_signature(meter.public_key_hex()) is True
    assert attest_verdict(record, meter.public_key_hex()) is True
    assert_same_values(parse_ocmf(record), theirs)
    assert theirs.payload.PG == "T7"
    tampered = changed_digit(record)
    assert pyocmf_verdict(tampered, meter.public_key_hex()) is False
    assert attest_verdict(tampered, meter.public_key_hex()) is False


def test_a_simulated_transaction_passes_pyocmf_eichrecht_checks() -> None:
    meter = OcmfMeter("oracle-eichrecht")
    begin = OCMF.from_string(
        meter.record([MeterValue(T0, 100, "B")], id_tag="1A2B3C4D").decode(), strict=True
    )
    end = OCMF.from_string(meter.record([MeterValue(T0 + 900_000, 2_100, "E")], id_tag="1A2B3C4D").decode(), strict=True)  # fmt: skip
    assert begin.check_eichrecht(end) == []
    manipulated = OCMF.from_string(meter.record([MeterValue(T0, 1, "E", status="M")]).decode(), strict=True)
    assert [issue.field for issue in manipulated.check_eichrecht(errors_only=True)] == ["ST"]


# -- every curve attest_core knows -------------------------------------------------------------------

OTHER_CURVES = {
    # curve: (pyca class, SA as written, does pyocmf 0.6 verify it?)
    "secp192r1": (ec.SECP192R1, "ECDSA-secp192r1-SHA256", True),
    "secp256k1": (ec.SECP256K1, "ECDSA-secp256k1-SHA256", True),
    "secp256r1": (ec.SECP256R1, "ECDSA-secp256r1-SHA256", True),
    "secp384r1": (ec.SECP384R1, "ECDSA-secp384r1-SHA256", True),
    "brainpoolP256r1": (ec.BrainpoolP256R1, "ECDSA-brainpoolP256r1-SHA256", True),
    "brainpoolP256r1 (OCMF table spelling)": (ec.BrainpoolP256R1, "ECDSA-brainpool256r1-SHA256", False),
    "brainpoolP384r1": (ec.BrainpoolP384R1, "ECDSA-brainpoolP384r1-SHA256", False),
    "brainpoolP384r1 (OCMF table spelling)": (ec.BrainpoolP384R1, "ECDSA-brainpool384r1-SHA256", False),
}


def _signed(payload: str, algorithm: str, signature: bytes) -> bytes:
    section = json.dumps({"SA": algorithm, "SD": signature.hex().upper()}, separators=(",", ":"))
    return f"OCMF|{payload}|{section}".encode()


@pytest.mark.parametrize("name", list(OTHER_CURVES))
def test_every_curve_same_verdict_where_pyocmf_supports_it(name: str) -> None:
    curve_class, algorithm, pyocmf_supports = OTHER_CURVES[name]
    digest = hashlib.sha256(f"oracle {name}".encode()).digest()
    private = ec.derive_private_key(int.from_bytes(digest[:20], "big"), curve_class())
    key_hex = private.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo).hex().upper()
    payload = OcmfMeter("curves").payload([MeterValue(T0, 4_242, "B")])
    record = _signed(payload, algorithm, private.sign(payload.encode(), ec.ECDSA(hashes.SHA256())))
    tampered = changed_digit(record)
    assert attest_verdict(record, key_hex) is True
    assert attest_verdict(tampered, key_hex) is False
    if pyocmf_supports:
        assert pyocmf_verdict(record, key_hex) is True
        assert pyocmf_verdict(tampered, key_hex) is False
        assert_same_values(parse_ocmf(record), pyocmf_parse(record))
    else:  # pinned: if a later pyocmf learns the curve or spelling, this says so
        with pytest.raises(SignatureVerificationError):
            pyocmf_verdict(record, key_hex)


def _secp192k1() -> Curve:
    # SEC 2 (version 2.0), section 2.2.1; OpenSSL (so pyca/cryptography) has no secp192k1
    p = 0xFFFFFFFF_FFFFFFFF_FFFFFFFF_FFFFFFFF_FFFFFFFE_FFFFEE37
    n = 0xFFFFFFFF_FFFFFFFF_FFFFFFFE_26F2FC17_0F69466A_74DEFD8D
    gx = 0xDB4FF10E_C057E9AE_26B07D02_80B7F434_1DA5D1B1_EAE06C7D
    gy = 0x9B2F2F6D_9C5628A7_844163D0_15BE8634_4082AA88_D95E2F9D
    field = CurveFp(p, 0, 3, 1)
    return Curve("SECP192k1", field, PointJacobi(field, gx, gy, 1, n, generator=True), (1, 3, 132, 0, 31))


def test_secp192k1_verifies_in_pyocmf_and_is_unchecked_never_valid_in_attest_core() -> None:
    private = SigningKey.from_secret_exponent(0x5EC192, curve=_secp192k1(), hashfunc=hashlib.sha256)
    key_hex = private.get_verifying_key().to_der().hex().upper()
    payload = OcmfMeter("curves").payload([MeterValue(T0, 4_242, "B")])
    record = _signed(payload, "ECDSA-secp192k1-SHA256", private.sign_deterministic(payload.encode(), sigencode=sigencode_der))  # fmt: skip
    assert pyocmf_verdict(record, key_hex) is True
    assert pyocmf_verdict(changed_digit(record), key_hex) is False
    assert_same_values(parse_ocmf(record), pyocmf_parse(record))
    key = MeterKey.from_text(key_hex, curve="secp192k1")
    assert not key.supported
    with pytest.raises(DecodeError) as info:
        verify_record_signature(parse_ocmf(record), key)
    assert info.value.code == "meter_curve_unsupported"
