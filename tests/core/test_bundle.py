"""Evidence bundles: building, strict parsing, verification and tamper evidence."""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attest_core.bundle import (
    BUNDLE_FORMAT,
    BUNDLE_FORMAT_V1,
    Bundle,
    bundle_chunks,
    encode_bundle,
    parse_bundle,
    verify_bundle,
)
from attest_core.chain import ChainState
from attest_core.device import AssetKind, RotationStatement, sign_rotation
from attest_core.entries import EnrolmentEntry, RevocationEntry, RotationEntry
from attest_core.errors import AttestError, BundleError, ProofError, SignatureError, VerificationError
from attest_core.evaluation import boundary_seqs
from attest_core.note import NoteSigner
from attest_core.verdict import EvidenceKind
from tests.support import BERLIN, HOUR, T0, MemoryLog, TestDevice, flat_claim, seeded_signer

KWH = 1_000_000


class Fleet:
    """Two chargers and a solar panel logged for a day, and a claim over it."""

    def __init__(self, hours: int = 24) -> None:
        self.log = MemoryLog()
        self.devices = [
            TestDevice("dev-a", "charger-a", AssetKind.CHARGER, 11_000),
            TestDevice("dev-b", "charger-b", AssetKind.CHARGER, 11_000),
            TestDevice("dev-s", "solar-s", AssetKind.SOLAR, 10_000, BERLIN),
        ]
        self.identity = [self.log.enrol(d) for d in self.devices]
        self.readings: dict[str, list[tuple[int, int, int]]] = {d.device_id: [] for d in self.devices}
        for h in range(-1, hours + 1):
            for d in self.devices:
                day = 5 <= h % 24 < 17
                kwh = (h + 1) * 4 if d.kind is AssetKind.CHARGER else (h + 1) * (3 if day else 0)
                if d.kind is AssetKind.SOLAR:
                    kwh = sum(3 for x in range(-1, h + 1) if 5 <= x % 24 < 17)
                index = self.log.append_reading(d.reading(T0 + h * HOUR, kwh * KWH))
                self.readings[d.device_id].append((index, d.state.next_seq - 1, T0 + h * HOUR))

    def claim_index(self, energy_kwh: int, amount: str, *, v1: bool = False) -> int:
        """A claim entry v2 (a v1 entry with ``v1``: only its bundle may have the v1 format)."""
        claim = flat_claim(("charger-a", "charger-b", "solar-s"), energy_mwh=energy_kwh * KWH, amount=amount)
        return self.log.file_claim(claim, v1=v1)

    def boundary(self, claim_index: int) -> list[int]:
        claim = flat_claim(("charger-a",))
        out = list(self.identity)
        for items in self.readings.values():
            first_last = boundary_seqs([(seq, t) for _, seq, t in items], claim)
            assert first_last is not None
            out += [i for i, seq, _ in items if seq in first_last]
        return out

    def full(self) -> list[int]:
        return [*self.identity, *(i for items in self.readings.values() for i, _, _ in items)]


# attested: chargers 23 h * 4 kWh each = 92 + 92; solar 12 daylight hours * 3 kWh = 36 -> 220 kWh, 77.00 USD
HONEST = (220, "77.00")


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return Fleet()


@pytest.fixture(scope="module")
def honest_bundle(fleet: Fleet) -> bytes:
    claim_index = fleet.claim_index(*HONEST)
    return fleet.log.bundle_bytes(claim_index, fleet.boundary(claim_index), EvidenceKind.BOUNDARY)


def test_boundary_bundle_backs_an_honest_claim(fleet: Fleet, honest_bundle: bytes) -> None:
    result = verify_bundle(honest_bundle, fleet.log.key)
    assert result.backed, result.evaluation.findings
    assert result.evaluation.energy_mwh == 220 * KWH
    assert str(result.evaluation.revenue) == "77.00"
    assert result.readings_verified == 6
    assert result.entries == 10
    assert result.checkpoint.checkpoint.origin == "test.example/log"
    assert {a.asset_id: a.energy_mwh for a in result.evaluation.assets} == {
        "charger-a": 92 * KWH, "charger-b": 92 * KWH, "solar-s": 36 * KWH,
    }  # fmt: skip
    assert not any(a.complete for a in result.evaluation.assets if a.kind is AssetKind.CHARGER)


def test_full_bundle_gives_the_same_figures_and_complete_evidence(fleet: Fleet) -> None:
    claim_index = fleet.claim_index(*HONEST)
    full = fleet.log.bundle_bytes(claim_index, fleet.full(), EvidenceKind.FULL)
    seen: list[tuple[str, int, int]] = []
    result = verify_bundle(full, fleet.log.key, progress=lambda *a: seen.append(a))
    assert result.backed
    assert result.evaluation.energy_mwh == 220 * KWH
    assert all(a.complete for a in result.evaluation.assets)
    assert result.readings_verified == 3 * 26
    assert seen[0] == ("proof", 82, 82)
    assert seen[-1] == ("readings", 78, 78)


def test_an_overclaim_is_valid_evidence_but_not_backed(fleet: Fleet) -> None:
    claim_index = fleet.claim_index(220, "77.01")
    result = verify_bundle(
        fleet.log.bundle_bytes(claim_index, fleet.boundary(claim_index), EvidenceKind.BOUNDARY), fleet.log.key
    )
    assert not result.backed
    assert [f.code for f in result.evaluation.fatal] == ["revenue_overclaimed"]


def test_another_log_key_is_refused(fleet: Fleet, honest_bundle: bytes) -> None:
    other = NoteSigner("test.example/log", seeded_signer("impostor")).verifier_key()
    with pytest.raises(VerificationError):
        verify_bundle(honest_bundle, other)
    renamed = NoteSigner("other.example/log", seeded_signer("log key")).verifier_key()
    with pytest.raises(AttestError):
        verify_bundle(honest_bundle, renamed)


def test_streamed_and_whole_encodings_agree(fleet: Fleet, honest_bundle: bytes) -> None:
    bundle = parse_bundle(honest_bundle)
    assert encode_bundle(bundle) == honest_bundle
    assert (
        b"".join(
            bundle_chunks(
                bundle.checkpoint, bundle.claim_index, bundle.entries, bundle.proof, bundle.evidence
            )
        )
        == honest_bundle
    )
    assert json.loads(honest_bundle)["format"] == BUNDLE_FORMAT


# --- strict parsing ------------------------------------------------------------


def mutate_doc(raw: bytes, fn: Any) -> bytes:
    doc = json.loads(raw)
    fn(doc)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda d: d.pop("proof"), "missing_member"),
        (lambda d: d.update(extra=1), "unknown_member"),
        (lambda d: d.update(format="iot-attest-evidence/v4"), "bad_format"),
        (lambda d: d.update(format=2), "bad_format"),
        (lambda d: d.pop("format"), "missing_member"),
        (lambda d: d.pop("evidence"), "missing_member"),  # v2 without evidence
        (lambda d: d.update(format="iot-attest-evidence/v1"), "unknown_member"),  # v1 with evidence
        # v1 without evidence: a v2 claim entry only ever comes in a v2 bundle
        (lambda d: (d.update(format="iot-attest-evidence/v1"), d.pop("evidence")), "format_mismatch"),
        (lambda d: d.update(format="iot-attest-evidence/v2", evidence="partial"), "bad_member"),
        (lambda d: d.update(format="iot-attest-evidence/v2", evidence=None), "bad_member"),
        (lambda d: d.update(claim_index=-1), "bad_member"),
        (lambda d: d.update(claim_index=True), "bad_member"),
        (lambda d: d.update(claim_index="9"), "bad_member"),
        (lambda d: d.update(entries=[]), "bad_member"),
        (lambda d: d.update(proof={}), "bad_member"),
        (lambda d: d["entries"].reverse(), "entry_order"),
        (lambda d: d["entries"].insert(1, d["entries"][0]), "entry_order"),
        (lambda d: d["entries"][0].update(extra=1), "bad_member"),
        (lambda d: d["entries"][0].update(entry=d["entries"][0]["entry"] + "="), "bad_base64"),
        (lambda d: d["proof"].append("AAAA"), "bad_hash_length"),
    ],
)
def test_structural_errors(honest_bundle: bytes, fleet: Fleet, change: Any, code: str) -> None:
    with pytest.raises(AttestError) as info:
        verify_bundle(mutate_doc(honest_bundle, change), fleet.log.key)
    assert info.value.code == code, (info.value.code, str(info.value))


def test_an_extra_proof_hash_is_refused(honest_bundle: bytes, fleet: Fleet) -> None:
    extra = mutate_doc(honest_bundle, lambda d: d["proof"].append("A" * 43 + "="))
    with pytest.raises(ProofError) as info:
        verify_bundle(extra, fleet.log.key)
    assert "left over" in str(info.value)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (b"", "bad_json"),
        (b"\xff\xfe", "bad_json"),
        (b"[]", "bad_json"),
        (b'{"format": 1.5}', "bad_number"),
        (b'{"format": NaN}', "bad_json"),
        (b'{"a": 1, "a": 2}', "duplicate_member"),
        (b"[" * 100_000, "bad_json"),
    ],
)
def test_json_errors(text: bytes, code: str) -> None:
    with pytest.raises(BundleError) as info:
        parse_bundle(text)
    assert info.value.code == code


def test_truncated_bundles_are_refused(honest_bundle: bytes, fleet: Fleet) -> None:
    for n in range(0, len(honest_bundle) - 2, 97):
        with pytest.raises(BundleError) as info:
            verify_bundle(honest_bundle[:n], fleet.log.key)
        assert info.value.code in {"bad_json"}


def test_non_canonical_base64_is_refused(honest_bundle: bytes, fleet: Fleet) -> None:
    doc = json.loads(honest_bundle)
    digest = doc["proof"][0]
    assert digest.endswith("=")
    last = digest[-2]
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"
    # flip only the unused low bits of the last character: same bytes, other spelling
    twin = alphabet[alphabet.index(last) ^ 1]
    doc["proof"][0] = digest[:-2] + twin + "="
    with pytest.raises(BundleError) as info:
        parse_bundle(json.dumps(doc))
    assert info.value.code == "bad_base64"


# --- content errors ---------------------------------------------------------------


def test_entries_must_belong_to_the_claim() -> None:
    f = Fleet(hours=2)
    stranger = TestDevice("dev-x", "elsewhere")
    enrol_x = f.log.enrol(stranger)
    claim_index = f.claim_index(1, "0")
    with pytest.raises(BundleError) as info:
        verify_bundle(
            f.log.bundle_bytes(claim_index, [*f.boundary(claim_index), enrol_x], EvidenceKind.BOUNDARY),
            f.log.key,
        )
    assert info.value.code == "unrelated_entry"
    second_claim = f.claim_index(1, "0")
    with pytest.raises(BundleError) as info:
        verify_bundle(
            f.log.bundle_bytes(claim_index, [*f.boundary(claim_index), second_claim], EvidenceKind.BOUNDARY),
            f.log.key,
        )
    assert info.value.code == "unrelated_entry"
    with pytest.raises(BundleError) as info:
        verify_bundle(f.log.bundle_bytes(f.identity[0], f.boundary(claim_index)), f.log.key)
    assert info.value.code == "no_claim"


def test_readings_need_their_enrolment() -> None:
    f = Fleet(hours=2)
    claim_index = f.claim_index(1, "0")
    without_enrolment = [i for i in f.boundary(claim_index) if i != f.identity[0]]
    with pytest.raises(BundleError) as info:
        verify_bundle(f.log.bundle_bytes(claim_index, without_enrolment, EvidenceKind.BOUNDARY), f.log.key)
    assert info.value.code == "unknown_device"


def test_bad_proof_of_possession_is_invalid_evidence() -> None:
    log = MemoryLog()
    dev = TestDevice("dev-a", "charger-a")
    enrol = log.append(EnrolmentEntry(dev.statement_bytes, bytes(64), "installer-1", T0))
    claim_index = log.file_claim(flat_claim(("charger-a",)))
    with pytest.raises(SignatureError):
        verify_bundle(log.bundle_bytes(claim_index, [enrol], EvidenceKind.BOUNDARY), log.key)


def test_forged_reading_is_invalid_evidence() -> None:
    log = MemoryLog()
    dev = TestDevice("dev-a", "charger-a")
    enrol = log.enrol(dev)
    thief = TestDevice("dev-a", "charger-a")
    thief.signer = seeded_signer("thief")
    thief.state = ChainState(1, dev.statement.chain_anchor())
    forged = log.append_reading(thief.reading(T0, 5 * KWH))
    claim_index = log.file_claim(flat_claim(("charger-a",)))
    with pytest.raises(SignatureError) as info:
        verify_bundle(log.bundle_bytes(claim_index, [enrol, forged], EvidenceKind.BOUNDARY), log.key)
    assert info.value.code == "unknown_key_id"
    assert f"log entry {forged}" in str(info.value)


def test_key_rotation_and_revocation_in_a_bundle() -> None:
    log = MemoryLog()
    dev = TestDevice("dev-a", "charger-a")
    indices = [log.enrol(dev)]
    indices += [log.append_reading(dev.reading(T0 + h * HOUR, h * KWH)) for h in range(3)]
    new = seeded_signer("dev-a rotated")
    rotation = RotationStatement("dev-a", dev.signer.public_key, new.public_key, 4, T0 + 3 * HOUR)
    data, old_sig, new_sig = sign_rotation(rotation, dev.signer, new)
    indices.append(log.append(RotationEntry(data, old_sig, new_sig, "installer-1", T0 + 3 * HOUR)))
    old_signer, dev.signer = dev.signer, new
    indices += [log.append_reading(dev.reading(T0 + h * HOUR, h * KWH)) for h in range(3, 6)]
    claim_index = log.file_claim(flat_claim(("charger-a",), energy_mwh=5 * KWH, amount="1.75"))
    result = verify_bundle(log.bundle_bytes(claim_index, indices, EvidenceKind.BOUNDARY), log.key)
    assert result.backed
    assert result.evaluation.energy_mwh == 5 * KWH

    # a reading made with the old key after the rotation took effect is refused
    dev.signer = old_signer
    stale = log.append_reading(dev.reading(T0 + 6 * HOUR, 6 * KWH))
    claim_index = log.file_claim(flat_claim(("charger-a",)))
    with pytest.raises(SignatureError) as info:
        verify_bundle(log.bundle_bytes(claim_index, [*indices, stale], EvidenceKind.BOUNDARY), log.key)
    assert info.value.code == "key_not_valid_for_seq"

    # a revocation is applied: readings after seq 4 are disowned
    revoke = log.append(RevocationEntry("dev-a", 4, "stolen", "installer-1", T0 + 7 * HOUR))
    claim_index = log.file_claim(flat_claim(("charger-a",)))
    result = verify_bundle(log.bundle_bytes(claim_index, [*indices, revoke], EvidenceKind.BOUNDARY), log.key)
    assert result.evaluation.energy_mwh == 3 * KWH
    assert [f.code for f in result.evaluation.findings] == ["disowned_readings"]


def test_entry_beyond_the_checkpoint_is_refused(fleet: Fleet) -> None:
    claim_index = fleet.claim_index(*HONEST)
    bundle = fleet.log.bundle(claim_index, fleet.boundary(claim_index), evidence=EvidenceKind.BOUNDARY)
    small = Bundle(
        fleet.log.checkpoint(claim_index), claim_index, bundle.entries, bundle.proof, bundle.evidence
    )
    with pytest.raises(BundleError) as info:
        verify_bundle(small, fleet.log.key)
    assert info.value.code == "index_beyond_checkpoint"


def test_proof_into_another_tree_is_refused(fleet: Fleet) -> None:
    claim_index = fleet.claim_index(*HONEST)
    bundle = fleet.log.bundle(claim_index, fleet.boundary(claim_index), evidence=EvidenceKind.BOUNDARY)
    bigger = fleet.log.append(fleet.log.entries[0])
    newer = Bundle(
        fleet.log.checkpoint(bigger + 1), claim_index, bundle.entries, bundle.proof, bundle.evidence
    )
    with pytest.raises(ProofError):
        verify_bundle(newer, fleet.log.key)


# --- tamper evidence: every single value ---------------------------------------------


def _char_twins(c: str) -> list[str]:
    """Other characters of the same class as ``c`` (digit, lower, upper, other)."""
    for cls in (string.digits, string.ascii_lowercase, string.ascii_uppercase):
        if c in cls:
            return [cls[(cls.index(c) + 1) % len(cls)]]
    return ["+" if c != "+" else "/", "A"]


def _string_variants(s: str) -> Iterator[str]:
    positions = sorted(
        {0, 1, len(s) // 3, len(s) // 2, len(s) - 3, len(s) - 2, len(s) - 1} & set(range(len(s)))
    )
    for p in positions:
        for twin in _char_twins(s[p]):
            yield s[:p] + twin + s[p + 1 :]
    yield s + s[-1:]
    yield s[:-1]


def _mutations(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(path, replacement) for every single-value change of a JSON tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _mutations(value, (*path, key))
    elif isinstance(node, list):
        yield path, node[:-1]
        yield path, [*node, node[-1]]
        if len(node) > 1:
            yield path, [node[1], node[0], *node[2:]]
        for i, value in enumerate(node):
            yield from _mutations(value, (*path, i))
    elif isinstance(node, str):
        for variant in _string_variants(node):
            yield path, variant
    elif isinstance(node, int):
        yield path, node + 1
        if node > 0:
            yield path, node - 1


def _apply(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    doc = json.loads(json.dumps(doc))
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return doc


def test_changing_any_single_value_fails_verification(fleet: Fleet, honest_bundle: bytes) -> None:
    doc = json.loads(honest_bundle)
    tried = 0
    for path, value in _mutations(doc):
        tampered = json.dumps(_apply(doc, path, value)).encode()
        with pytest.raises(AttestError):
            verify_bundle(tampered, fleet.log.key)
        tried += 1
    assert tried >= 250  # every value of a 10-entry bundle, several ways each


# --- fuzzing: nothing but the project's own errors -------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_raise_only_attest_errors(data: bytes) -> None:
    key = MemoryLog().key
    with pytest.raises(AttestError):
        verify_bundle(data, key)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_random_json_raises_only_attest_errors(doc: Any) -> None:
    with pytest.raises(AttestError):
        verify_bundle(json.dumps(doc), MemoryLog().key)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_random_replacements_in_a_real_bundle_raise_only_attest_errors(
    fleet: Fleet, honest_bundle: bytes, data: st.DataObject
) -> None:
    doc = json.loads(honest_bundle)
    paths = [path for path, _ in _mutations(doc)]
    path = data.draw(st.sampled_from(paths))
    tampered = _apply(doc, path, data.draw(json_values))
    try:
        result = verify_bundle(json.dumps(tampered), fleet.log.key)
    except AttestError:
        return
    # a replacement equal to the original value is the only way through
    assert tampered == doc
    assert result.backed


# --- bundle v2: the evidence member ------------------------------------------------


@pytest.mark.parametrize("evidence", list(EvidenceKind))
def test_a_v2_bundle_declares_its_evidence(fleet: Fleet, evidence: EvidenceKind) -> None:
    claim_index = fleet.claim_index(*HONEST)
    indices = fleet.full() if evidence is EvidenceKind.FULL else fleet.boundary(claim_index)
    raw = fleet.log.bundle_bytes(claim_index, indices, evidence)
    doc = json.loads(raw)
    assert (doc["format"], doc["evidence"]) == (BUNDLE_FORMAT, evidence.value)
    bundle = parse_bundle(raw)
    assert (bundle.evidence, bundle.format) == (evidence, BUNDLE_FORMAT)
    assert encode_bundle(bundle) == raw
    result = verify_bundle(raw, fleet.log.key)
    assert result.backed, result.evaluation.findings
    assert result.format == BUNDLE_FORMAT
    assert result.evaluation.declared is evidence
    assert {d.evidence for a in result.evaluation.assets for d in a.devices} == {evidence}


def test_a_full_bundle_without_one_of_its_readings_is_not_backed(fleet: Fleet) -> None:
    claim_index = fleet.claim_index(*HONEST)
    omitted = fleet.readings["dev-a"][10][0]
    trimmed = [i for i in fleet.full() if i != omitted]
    result = verify_bundle(fleet.log.bundle_bytes(claim_index, trimmed, EvidenceKind.FULL), fleet.log.key)
    assert [(f.code, f.device_id) for f in result.evaluation.fatal] == [("readings_omitted", "dev-a")]
    # relabelled v1 (the format member is not signed), dev-a would read as boundary evidence:
    # a v2 claim entry in a v1 bundle is refused
    relabelled = fleet.log.bundle_bytes(claim_index, trimmed)
    with pytest.raises(BundleError) as info:
        verify_bundle(relabelled, fleet.log.key)
    assert info.value.code == "format_mismatch"
    # the same readings in a v1 bundle of a v1 claim entry (a v1 gateway's): dev-a is boundary
    # evidence, and --require-full refuses it
    v1_claim = fleet.claim_index(*HONEST, v1=True)
    v1 = fleet.log.bundle_bytes(v1_claim, trimmed)
    assert json.loads(v1)["format"] == BUNDLE_FORMAT_V1
    assert verify_bundle(v1, fleet.log.key).backed
    strict = verify_bundle(v1, fleet.log.key, require_full=True)
    assert [(f.code, f.device_id) for f in strict.evaluation.fatal] == [("evidence_insufficient", "dev-a")]
