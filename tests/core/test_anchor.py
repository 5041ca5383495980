"""Anchors in bundles (v3): parsing, writing and the offline checks (attest_core.anchor)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import pytest

from attest_core import domains
from attest_core.anchor import ANCHOR_MEMBERS, Anchor, anchor_json, check_anchor, note_hash, parse_anchor
from attest_core.bundle import BUNDLE_FORMAT, BUNDLE_FORMAT_V3, encode_bundle, parse_bundle, verify_bundle
from attest_core.checkpoint import open_checkpoint
from attest_core.errors import BundleError, VerificationError
from attest_core.verdict import EvidenceKind
from tests.core.test_bundle import HONEST, Fleet
from tests.support import MemoryLog


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return Fleet()


def anchored_bundle(fleet: Fleet, anchored_size: int | None = None, **chain: Any) -> tuple[int, bytes]:
    """The honest claim's boundary bundle, anchored at ``anchored_size`` (default: the whole log)."""
    claim_index = fleet.claim_index(*HONEST)
    log = fleet.log
    bundle = log.bundle(claim_index, fleet.boundary(claim_index), evidence=EvidenceKind.BOUNDARY)
    size = len(log.entries) if anchored_size is None else anchored_size
    anchored = dataclasses.replace(bundle, anchor=log.anchor(size, **chain))
    return claim_index, encode_bundle(anchored)


def test_note_hash_is_domain_separated_over_the_exact_note() -> None:
    note = MemoryLog().checkpoint(0)
    assert note_hash(note) == hashlib.sha256(domains.ANCHOR_NOTE_HASH + note.encode()).digest()
    assert note_hash(note) != hashlib.sha256(note.encode()).digest()
    assert note_hash(note + "\n") != note_hash(note)


def test_a_v3_bundle_round_trips_and_its_anchor_verifies(fleet: Fleet) -> None:
    _, raw = anchored_bundle(fleet)
    bundle = parse_bundle(raw)
    assert bundle.format == BUNDLE_FORMAT_V3
    assert bundle.anchor is not None
    assert encode_bundle(bundle) == raw
    assert parse_anchor(anchor_json(bundle.anchor)) == bundle.anchor
    result = verify_bundle(raw, fleet.log.key, require_anchor=True)
    assert result.backed, result.evaluation.findings
    assert result.format == BUNDLE_FORMAT_V3
    assert result.anchor is not None
    assert result.anchor.size == len(fleet.log.entries)
    assert result.anchor.note_hash == note_hash(bundle.anchor.checkpoint)


def test_an_anchor_of_an_earlier_tree_is_proven_consistent(fleet: Fleet) -> None:
    claim_index, raw = anchored_bundle(fleet)
    result = verify_bundle(raw, fleet.log.key)
    bundle = parse_bundle(raw)
    assert bundle.anchor is not None
    for size in (1, 2, 3, claim_index, claim_index + 1, len(fleet.log.entries) - 1):
        anchor = fleet.log.anchor(size)
        assert check_anchor(anchor, fleet.log.key, result.checkpoint).size == size


def test_without_require_anchor_an_anchor_not_covering_the_claim_is_only_reported(fleet: Fleet) -> None:
    claim_index, raw = anchored_bundle(fleet, anchored_size=3)
    result = verify_bundle(raw, fleet.log.key)
    assert result.backed
    assert result.anchor is not None
    assert not result.anchor.covers(claim_index)
    required = verify_bundle(raw, fleet.log.key, require_anchor=True)
    assert not required.backed
    assert [f.code for f in required.evaluation.fatal] == ["claim_not_anchored"]
    assert required.evaluation.fatal[0].log_index == min(i for i, _ in parse_bundle(raw).entries if i >= 3)


def test_require_anchor_without_an_anchor_is_not_backed(fleet: Fleet) -> None:
    claim_index = fleet.claim_index(*HONEST)
    raw = fleet.log.bundle_bytes(claim_index, fleet.boundary(claim_index), EvidenceKind.BOUNDARY)
    assert parse_bundle(raw).format == BUNDLE_FORMAT
    assert verify_bundle(raw, fleet.log.key).anchor is None
    result = verify_bundle(raw, fleet.log.key, require_anchor=True)
    assert [f.code for f in result.evaluation.fatal] == ["anchor_missing"]


def test_the_claim_just_inside_the_anchored_tree_is_backed(fleet: Fleet) -> None:
    claim_index = fleet.claim_index(*HONEST)
    log = fleet.log
    bundle = log.bundle(claim_index, fleet.boundary(claim_index), evidence=EvidenceKind.BOUNDARY)
    last = bundle.entries[-1][0]
    inside = dataclasses.replace(bundle, anchor=log.anchor(last + 1))
    assert verify_bundle(encode_bundle(inside), log.key, require_anchor=True).backed
    outside = dataclasses.replace(bundle, anchor=log.anchor(last))
    assert not verify_bundle(encode_bundle(outside), log.key, require_anchor=True).backed


def _tampered(raw: bytes, change: Any) -> bytes:
    doc = json.loads(raw)
    change(doc["anchor"])
    return json.dumps(doc).encode()


def test_a_bad_consistency_proof_is_refused(fleet: Fleet) -> None:
    _, raw = anchored_bundle(fleet, anchored_size=5)

    def flip(anchor: dict[str, Any]) -> None:
        first = bytearray(json.loads(json.dumps(anchor))["consistency"][0].encode())
        first[0] = ord("A") if first[0] != ord("A") else ord("B")
        anchor["consistency"][0] = first.decode()

    for change in (
        flip,
        lambda a: a["consistency"].pop(),
        lambda a: a["consistency"].append(a["consistency"][0]),
    ):
        with pytest.raises(VerificationError) as caught:
            verify_bundle(_tampered(raw, change), fleet.log.key)
        assert caught.value.code in ("anchor_inconsistent", "bad_base64"), caught.value


def test_an_anchored_checkpoint_of_another_history_is_refused(fleet: Fleet) -> None:
    _, raw = anchored_bundle(fleet, anchored_size=5)
    fork = MemoryLog()  # same origin and key, other entries: a second history
    fork.note_signer = fleet.log.note_signer
    for entry in fleet.log.entries[:4]:
        fork.append(entry)
    fork.append(b"another entry")
    with pytest.raises(VerificationError) as caught:
        verify_bundle(_tampered(raw, lambda a: a.update(checkpoint=fork.checkpoint(5))), fleet.log.key)
    assert caught.value.code == "anchor_inconsistent"


def test_an_anchored_checkpoint_under_another_key_is_refused(fleet: Fleet) -> None:
    _, raw = anchored_bundle(fleet, anchored_size=5)
    other = MemoryLog()
    with pytest.raises(VerificationError) as caught:
        verify_bundle(_tampered(raw, lambda a: a.update(checkpoint=other.checkpoint(0))), fleet.log.key)
    assert caught.value.code == "anchor_checkpoint"


def test_an_anchor_beyond_the_bundles_checkpoint_is_refused(fleet: Fleet) -> None:
    claim_index = fleet.claim_index(*HONEST)
    log = fleet.log
    size = len(log.entries)
    bundle = log.bundle(claim_index, fleet.boundary(claim_index), size=size, evidence=EvidenceKind.BOUNDARY)
    log.append(b"one more entry")
    ahead = log.anchor(size + 1, size + 1)
    with pytest.raises(VerificationError) as caught:
        verify_bundle(encode_bundle(dataclasses.replace(bundle, anchor=ahead)), log.key)
    assert caught.value.code == "anchor_beyond_checkpoint"


def test_an_empty_anchored_tree_is_refused() -> None:
    log = MemoryLog()
    log.append(b"entry")
    signed = open_checkpoint(log.checkpoint(), log.key)
    with pytest.raises(VerificationError) as caught:
        check_anchor(log.anchor(0, 0), log.key, signed)
    assert caught.value.code == "anchor_checkpoint"


def _good() -> dict[str, Any]:
    log = MemoryLog()
    log.append(b"entry")
    return anchor_json(log.anchor(1))


@pytest.mark.parametrize(
    "change",
    [
        lambda a: a.pop("tx_hash"),
        lambda a: a.update(extra=1),
        lambda a: a.update(chain_id=0),
        lambda a: a.update(chain_id="1"),
        lambda a: a.update(chain_id=True),
        lambda a: a.update(contract="0x" + "C0" * 20),  # one spelling: lowercase
        lambda a: a.update(operator="0x" + "0e" * 19),
        lambda a: a.update(tx_hash="ab" * 32),
        lambda a: a.update(block_hash="0x" + "cd" * 31),
        lambda a: a.update(block_number=-1),
        lambda a: a.update(checkpoint=5),
        lambda a: a.update(consistency="x"),
        lambda a: a.update(consistency=["AAAA"]),
        lambda a: a.update(consistency=["A" * 43 + "="] * 129),
    ],
)
def test_a_malformed_anchor_is_refused(change: Any) -> None:
    doc = _good()
    change(doc)
    with pytest.raises(BundleError) as caught:
        parse_anchor(doc)
    assert caught.value.code in ("bad_anchor", "bad_base64")


def test_every_anchor_member_is_required() -> None:
    for member in ANCHOR_MEMBERS:
        doc = _good()
        del doc[member]
        with pytest.raises(BundleError, match=member):
            parse_anchor(doc)
    again = parse_anchor(_good())
    assert Anchor(**{m: getattr(again, m) for m in ANCHOR_MEMBERS}) == again


def test_a_v2_bundle_with_an_anchor_member_and_a_v3_without_one_are_refused(fleet: Fleet) -> None:
    _, raw = anchored_bundle(fleet)
    doc = json.loads(raw)
    doc["format"] = BUNDLE_FORMAT
    with pytest.raises(BundleError) as caught:
        parse_bundle(json.dumps(doc))
    assert caught.value.code == "unknown_member"
    doc = json.loads(raw)
    del doc["anchor"]
    with pytest.raises(BundleError) as caught:
        parse_bundle(json.dumps(doc))
    assert caught.value.code == "missing_member"
