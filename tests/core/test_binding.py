"""Protocol v2 binding: enrolment statements name their log, revocations record who disowned what.

Enrolment statement v2 (attest_core.device), revocation entry v2 (attest_core.entries),
the registry's origin rule (attest_core.registry) and what the verifier makes of them on
real bundles (attest_core.bundle, attest_core.evaluation).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from attest_core.bundle import verify_bundle
from attest_core.codec import Writer
from attest_core.device import (
    ENROLMENT_V2,
    decode_enrolment_statement,
    log_key_hash,
    sign_enrolment,
    verify_enrolment,
)
from attest_core.entries import (
    EntryType,
    RevocationEntry,
    RevokerRole,
    decode_entry,
    encode_entry,
)
from attest_core.errors import AttestError, BundleError, DecodeError
from attest_core.extensions import Extension
from attest_core.note import VerifierKey
from attest_core.registry import Registry, RegistryError
from attest_core.verdict import EvidenceKind
from edge_agent.enrol import key_fingerprint
from tests.support import (
    HOUR,
    LOG_KEY,
    LOG_KEY_HASH,
    LOG_ORIGIN,
    T0,
    MemoryLog,
    TestDevice,
    flat_claim,
    seeded_signer,
)
from verifier.cli import main

KWH = 1_000_000


# --- enrolment statement v2 ------------------------------------------------------------------


def test_a_v2_statement_is_v1_then_the_origin_the_key_hash_and_an_empty_extension_list() -> None:
    v1 = TestDevice("dev-1", "charger-1", log_origin=None).statement
    key = VerifierKey.from_public_key("log.example/a", seeded_signer("log a").public_key)
    v2 = dataclasses.replace(v1, log_origin="log.example/a", log_key_hash=log_key_hash(key))
    assert (v1.version, v2.version) == (1, ENROLMENT_V2)
    data = v2.encode()
    origin = b"log.example/a"
    key_hash = hashlib.sha256(key.to_string().encode()).digest()  # the key string, as published
    assert data == b"\x02" + v1.encode()[1:] + bytes([len(origin)]) + origin + key_hash + b"\x00"
    assert decode_enrolment_statement(data) == v2
    assert decode_enrolment_statement(v1.encode()) == v1  # v1 still decodes, as v1
    assert v2.chain_anchor() != v1.chain_anchor()  # reading 1 is bound to the log too
    # the hash is the agent's fingerprint of the key, without the grouping
    assert key_fingerprint(key.to_string()).replace(" ", "") == key_hash.hex()
    # a v2 statement names the key; a v1 statement cannot
    with pytest.raises(DecodeError) as info:
        dataclasses.replace(v2, log_key_hash=None)
    assert info.value.code == "bad_log_key_hash"
    with pytest.raises(DecodeError) as info:
        dataclasses.replace(v2, log_key_hash=key_hash[:31])
    assert info.value.code == "bad_log_key_hash"
    with pytest.raises(DecodeError) as info:
        dataclasses.replace(v1, log_key_hash=key_hash)
    assert info.value.code == "bad_version"
    with pytest.raises(DecodeError) as info:  # cut inside the key hash
        decode_enrolment_statement(data[: -1 - 20])
    assert info.value.code == "truncated"


@pytest.mark.parametrize("origin", ["", "has space", "a+b", "tab\there", "x" * 256, "nl\n"])
def test_a_log_origin_is_a_key_name(origin: str) -> None:
    statement = TestDevice("dev-1", "charger-1").statement
    with pytest.raises(DecodeError) as info:
        dataclasses.replace(statement, log_origin=origin)
    assert info.value.code == "bad_log_origin"
    if len(origin) > 255:
        return  # a text8 field cannot even hold it
    # and in bytes: the decoder refuses it as well
    raw = b"\x02" + statement.encode()[1 : -(len(LOG_ORIGIN) + 2 + 32)]
    raw += Writer().text8(origin).raw(LOG_KEY_HASH).u8(0).getvalue()
    with pytest.raises(DecodeError) as info:
        decode_enrolment_statement(raw)
    assert info.value.code == "bad_log_origin"


def test_an_unknown_extension_is_refused_not_skipped() -> None:
    data = TestDevice("dev-1", "charger-1").statement.encode()
    assert data.endswith(b"\x00")
    with_extension = data[:-1] + b"\x01" + b"\x07" + b"\x00\x02ab"
    with pytest.raises(DecodeError) as info:
        decode_enrolment_statement(with_extension)
    assert info.value.code == "unknown_extension"
    with pytest.raises(DecodeError) as info:
        dataclasses.replace(TestDevice("dev-1", "charger-1").statement, extensions=(Extension(7, b"ab"),))
    assert info.value.code == "unknown_extension"
    for bad in (data[:-1], data + b"\x00", b"\x03" + data[1:]):
        with pytest.raises(DecodeError):
            decode_enrolment_statement(bad)


def test_a_v2_statement_is_signed_and_verified_as_bytes() -> None:
    device = TestDevice("dev-1", "charger-1")
    data, pop = sign_enrolment(device.statement, device.signer)
    assert verify_enrolment(data, pop).log_origin == LOG_ORIGIN
    # the origin and the key are signed: naming another log breaks the proof of possession
    for other in (
        dataclasses.replace(device.statement, log_origin="other.example/log").encode(),
        dataclasses.replace(device.statement, log_key_hash=bytes(32)).encode(),
    ):
        with pytest.raises(AttestError) as info:
            verify_enrolment(other, pop)
        assert info.value.code == "bad_proof_of_possession"


# --- revocation entry v2 ---------------------------------------------------------------------


def test_revocation_v2_round_trip_and_header() -> None:
    entry = RevocationEntry("dev-1", 4, "stolen", "op-1", T0, 6, RevokerRole.OPERATOR)
    data = encode_entry(entry)
    assert data[:2] == bytes([2, EntryType.REVOCATION])
    assert data.endswith((6).to_bytes(8, "big") + b"\x02" + bytes(32))  # count, role, no asset link
    assert decode_entry(data) == entry
    v1 = RevocationEntry("dev-1", 4, "stolen", "op-1", T0)
    assert encode_entry(v1)[:2] == bytes([1, EntryType.REVOCATION])
    assert encode_entry(v1) == data[:-41].replace(b"\x02", b"\x01", 1)
    assert decode_entry(encode_entry(v1)) == v1


def test_revocation_v2_rules() -> None:
    with pytest.raises(DecodeError) as info:
        RevocationEntry("dev-1", 4, "oops", "inst-1", T0, 1, RevokerRole.INSTALLER)
    assert info.value.code == "disown_needs_operator"
    with pytest.raises(DecodeError) as info:
        RevocationEntry("dev-1", 4, "  ", "op-1", T0, 1, RevokerRole.OPERATOR)
    assert info.value.code == "reason_required"
    RevocationEntry("dev-1", 4, "retired", "inst-1", T0, 0, RevokerRole.INSTALLER)  # disowns nothing
    data = encode_entry(RevocationEntry("dev-1", 4, "stolen", "op-1", T0, 6, RevokerRole.OPERATOR))
    role_at = len(data) - 33  # the role byte, then the 32-byte asset link
    with pytest.raises(DecodeError) as info:
        decode_entry(data[:role_at] + b"\x09" + data[role_at + 1 :])
    assert info.value.code == "bad_role"
    # an installer's disowning revocation cannot be smuggled in as bytes either
    with pytest.raises(DecodeError) as info:
        decode_entry(data[:role_at] + b"\x01" + data[role_at + 1 :])
    assert info.value.code == "disown_needs_operator"
    # a v2 enrolment carries its asset link: the v1 body alone under version 2 is cut short
    enrolment = encode_entry(TestDevice("dev-1", "charger-1").enrolment_entry())
    with pytest.raises(DecodeError) as info:
        decode_entry(b"\x02" + enrolment[1:])
    assert info.value.code == "truncated"


# --- the registry's origin rule ----------------------------------------------------------------


def test_the_registry_refuses_an_enrolment_for_another_log() -> None:
    here = Registry(LOG_ORIGIN)
    here.enrol(0, TestDevice("dev-1", "a").enrolment_entry())
    here.enrol(1, TestDevice("dev-v1", "a", log_origin=None).enrolment_entry())  # names no log
    with pytest.raises(RegistryError) as info:
        here.enrol(2, TestDevice("dev-2", "a", log_origin="other.example/log").enrolment_entry())
    assert info.value.code == "wrong_log_origin"
    assert "other.example/log" in str(info.value)
    Registry().enrol(0, TestDevice("dev-2", "a", log_origin="other.example/log").enrolment_entry())


IMPOSTOR_KEY = VerifierKey.from_public_key(LOG_ORIGIN, seeded_signer("impostor log key").public_key)
"""Another log's key under the same name: an origin is a name anyone may give a log."""


def test_the_registry_refuses_an_enrolment_for_another_log_of_the_same_name() -> None:
    here = Registry(LOG_ORIGIN, LOG_KEY_HASH)
    here.enrol(0, TestDevice("dev-1", "a").enrolment_entry())
    here.enrol(1, TestDevice("dev-v1", "a", log_origin=None).enrolment_entry())  # names no log
    elsewhere = TestDevice("dev-2", "a", log_key_hash=log_key_hash(IMPOSTOR_KEY))
    with pytest.raises(RegistryError) as info:
        here.enrol(2, elsewhere.enrolment_entry())
    assert info.value.code == "wrong_log_key"
    assert log_key_hash(IMPOSTOR_KEY).hex() in str(info.value)
    Registry(LOG_ORIGIN).enrol(0, elsewhere.enrolment_entry())  # a registry given no key checks none


# --- on real bundles ----------------------------------------------------------------------------


def _day_of(log: MemoryLog, device: TestDevice) -> list[int]:
    indices = [log.enrol(device)]
    indices += [log.append_reading(device.reading(T0 + h * HOUR, h * KWH)) for h in range(6)]
    return indices


def test_a_bundle_with_an_enrolment_for_another_log_is_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A device enrolled (and its readings logged) in another log, replayed into this one."""
    log = MemoryLog()
    replayed = TestDevice("dev-r", "charger-r", log_origin="other.example/log")
    indices = _day_of(log, replayed)
    claim_index = log.file_claim(flat_claim(("charger-r",), energy_mwh=5 * KWH, amount="1.75"))
    bundle = log.bundle_bytes(claim_index, indices, EvidenceKind.BOUNDARY)
    with pytest.raises(BundleError) as info:
        verify_bundle(bundle, log.key)
    assert info.value.code == "wrong_log_origin"
    # the verifier's command line: invalid evidence, exit 2, with the code
    (tmp_path / "bundle.json").write_bytes(bundle)
    (tmp_path / "key.txt").write_text(log.key.to_string() + "\n")
    capsys.readouterr()
    assert main(["bundle", str(tmp_path / "bundle.json"), "--log-key", str(tmp_path / "key.txt")]) == 2
    captured = capsys.readouterr()
    assert "wrong_log_origin" in captured.out + captured.err


def test_a_bundle_with_an_enrolment_for_another_log_of_the_same_name_is_invalid() -> None:
    """A device enrolled in a second log that took this log's name (another key), replayed here:
    the origin matches the checkpoint's, the key hash is not the auditor's key's."""
    log = MemoryLog()
    assert log.key == LOG_KEY
    replayed = TestDevice("dev-s", "charger-s", log_key_hash=log_key_hash(IMPOSTOR_KEY))
    indices = _day_of(log, replayed)
    claim_index = log.file_claim(flat_claim(("charger-s",), energy_mwh=5 * KWH, amount="1.75"))
    with pytest.raises(BundleError) as info:
        verify_bundle(log.bundle_bytes(claim_index, indices, EvidenceKind.BOUNDARY), log.key)
    assert info.value.code == "wrong_log_key"
    # the same day, enrolled for this log's key, is backed
    log = MemoryLog()
    indices = _day_of(log, TestDevice("dev-s", "charger-s"))
    claim_index = log.file_claim(flat_claim(("charger-s",), energy_mwh=5 * KWH, amount="1.75"))
    assert verify_bundle(log.bundle_bytes(claim_index, indices, EvidenceKind.BOUNDARY), log.key).backed


def test_a_v1_enrolment_is_backed_with_a_warning() -> None:
    log = MemoryLog()
    old = TestDevice("dev-old", "charger-o", log_origin=None)
    indices = _day_of(log, old)
    claim_index = log.file_claim(flat_claim(("charger-o",), energy_mwh=5 * KWH, amount="1.75"))
    result = verify_bundle(log.bundle_bytes(claim_index, indices, EvidenceKind.BOUNDARY), log.key)
    assert result.backed
    findings = [(f.severity.name, f.code) for f in result.evaluation.findings]
    assert findings == [("WARNING", "enrolment_not_bound")]


def test_a_disowning_revocation_is_reported_with_who_how_many_and_when() -> None:
    log = MemoryLog()
    device = TestDevice("dev-d", "charger-d")
    indices = _day_of(log, device)
    revoked_at = T0 + 7 * HOUR
    indices.append(
        log.append(
            RevocationEntry("dev-d", 3, "meter swapped", "operator-1", revoked_at, 3, RevokerRole.OPERATOR)
        )
    )
    claim_index = log.file_claim(flat_claim(("charger-d",), energy_mwh=2 * KWH, amount="0.70"))
    result = verify_bundle(log.bundle_bytes(claim_index, indices, EvidenceKind.BOUNDARY), log.key)
    assert result.backed
    [finding] = result.evaluation.findings
    assert (finding.severity.name, finding.code) == ("WARNING", "disowned_readings")
    for text in (
        "operator-1",
        "(operator)",
        "2026-10-01T07:00:00.000Z",
        "disowning 3 readings",
        "meter swapped",
    ):
        assert text in finding.message, (text, finding.message)
