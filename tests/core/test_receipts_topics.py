"""Delivery receipts (v1 and v2) and what a device checks on them, and the MQTT topic layout."""

from __future__ import annotations

import pytest

from attest_core import domains
from attest_core.errors import DecodeError, ProofError, SignatureError
from attest_core.merkle import consistency_proof, inclusion_proof, leaf_hash, root_from_leaf_hashes
from attest_core.receipt import (
    ProvenTree,
    Receipt,
    carried_consistency,
    check_extension,
    check_inclusion,
    open_receipt,
)
from attest_core.topics import device_of_readings_topic, readings_topic, receipts_topic, status_topic
from tests.support import T0, seeded_signer

LOG = seeded_signer("log key")
RECEIPT_V1 = Receipt("dev-1", 42, 1000, 1001, b"\x05" * 32, T0, version=1)
ENTRIES = [f"entry {i}".encode() for i in range(40)]
LEAVES = [leaf_hash(e) for e in ENTRIES]


def receipt(index: int, size: int, from_size: int = 0, seq: int = 7) -> Receipt:
    """A v2 receipt for entry ``index`` in the tree of ``size`` with real proofs."""
    proof = consistency_proof(from_size, size, LEAVES) if 0 < from_size < size else []
    return Receipt(
        "dev-1", seq, index, size, root_from_leaf_hashes(LEAVES[:size]), T0,
        tuple(inclusion_proof(index, size, LEAVES)), from_size, tuple(proof),
    )  # fmt: skip


def tree(size: int) -> ProvenTree:
    return ProvenTree(size, root_from_leaf_hashes(LEAVES[:size]))


def test_receipt_round_trip_v1_and_v2() -> None:
    assert open_receipt(RECEIPT_V1.sign(LOG), LOG.public_key) == RECEIPT_V1
    v2 = receipt(12, 30, 17)
    assert v2.version == 2
    assert v2.inclusion
    assert v2.consistency
    data = v2.sign(LOG)
    assert data[0] == 2
    assert open_receipt(data, LOG.public_key) == v2
    # the signature covers the proofs too: the exact bytes, under the one domain prefix
    assert LOG.public_key
    assert data[-64:] == LOG.sign(domains.RECEIPT_SIGNATURE + v2.body())
    # within MQTT sizes: the longest proofs of a 2**63-entry log (63 + 64 hashes) and the longest
    # device id keep a receipt far below the broker's 64 KiB packet limit (deploy/mosquitto)
    h = b"\x01" * 32
    largest = Receipt("d" * 64, 1, 2**62, 2**63 - 1, h, T0, (h,) * 63, 2**62, (h,) * 64)
    assert len(largest.sign(LOG)) == 4_268


@pytest.mark.parametrize("made", [RECEIPT_V1, receipt(12, 30, 17)], ids=["v1", "v2"])
def test_receipt_forgeries_are_refused(made: Receipt) -> None:
    data = made.sign(LOG)
    with pytest.raises(SignatureError):
        open_receipt(data, seeded_signer("other").public_key)
    for i in range(len(data)):
        tampered = bytearray(data)
        tampered[i] ^= 0x20
        with pytest.raises((SignatureError, DecodeError)):
            open_receipt(bytes(tampered), LOG.public_key)
    # a log signature over the body without the domain prefix is not a receipt
    forged = made.body() + LOG.sign(made.body())
    with pytest.raises(SignatureError):
        open_receipt(forged, LOG.public_key)
    assert b"\x00" in domains.RECEIPT_SIGNATURE  # never a valid note text


def test_receipt_validation() -> None:
    with pytest.raises(DecodeError):
        Receipt("dev-1", 1, 5, 5, b"\x00" * 32, T0)
    with pytest.raises(DecodeError):
        Receipt("dev-1", 0, 1, 5, b"\x00" * 32, T0)
    with pytest.raises(DecodeError):
        Receipt("dev-1", 1, 1, 5, b"\x00" * 32, T0, from_size=6)
    with pytest.raises(DecodeError):
        Receipt("dev-1", 1, 1, 5, b"\x00" * 32, T0, inclusion=(b"\x00" * 31,))
    with pytest.raises(DecodeError):
        Receipt("dev-1", 1, 1, 5, b"\x00" * 32, T0, inclusion=(b"\x00" * 32,), version=1)
    with pytest.raises(DecodeError):
        open_receipt(b"short", LOG.public_key)
    # the signature is checked before anything is decoded: altered bytes are a bad signature
    with pytest.raises(SignatureError) as bad:
        open_receipt(b"\x03" + RECEIPT_V1.sign(LOG)[1:], LOG.public_key)
    assert bad.value.code == "bad_receipt_signature"
    body = b"\x03" + RECEIPT_V1.sign(LOG)[1:-64]  # a version the log signed but no decoder knows
    with pytest.raises(DecodeError) as info:
        open_receipt(body + LOG.sign(domains.RECEIPT_SIGNATURE + body), LOG.public_key)
    assert info.value.code == "bad_version"
    # one encoding: no consistency proof from size 0 or from the receipt's own tree
    for start in (0, 5):
        with pytest.raises(DecodeError) as info:
            Receipt("dev-1", 1, 1, 5, b"\x00" * 32, T0, (), start, (b"\x00" * 32,))
        assert info.value.code == "bad_proof"


def test_a_device_checks_inclusion_of_its_own_entry() -> None:
    r = receipt(12, 30)
    check_inclusion(r, ENTRIES[12])
    for wrong_entry in (ENTRIES[13], ENTRIES[12] + b"x"):
        with pytest.raises(ProofError) as err:
            check_inclusion(r, wrong_entry)
        assert err.value.code == "receipt_inclusion_failed"
    # a proof against another root, or cut short, fails
    for bad in (
        Receipt(r.device_id, r.seq, r.log_index, r.tree_size, b"\x09" * 32, T0, r.inclusion),
        Receipt(r.device_id, r.seq, r.log_index, r.tree_size, r.root_hash, T0, r.inclusion[:-1]),
        Receipt(r.device_id, r.seq, r.log_index, r.tree_size, r.root_hash, T0, ()),
    ):
        with pytest.raises(ProofError):
            check_inclusion(bad, ENTRIES[12])
    # a v1 receipt asserts, it does not prove
    with pytest.raises(ProofError) as err:
        check_inclusion(Receipt("dev-1", 7, 12, 30, r.root_hash, T0, version=1), ENTRIES[12])
    assert err.value.code == "receipt_unproven"


def test_a_device_checks_that_each_tree_extends_the_last_proven() -> None:
    last = tree(17)
    r = receipt(25, 30, 17)
    proof = carried_consistency(r, last)
    assert proof == list(r.consistency)
    check_extension(r, last, proof)
    # the same tree again: no proof needed, but the same root
    same = receipt(12, 17, 17)
    assert carried_consistency(same, last) == []
    check_extension(same, last, [])
    # a proof from another size than the device's last tree: it must fetch one
    assert carried_consistency(receipt(25, 30, 20), last) is None
    check_extension(r, last, consistency_proof(17, 30, LEAVES))
    # a tree that does not extend the last proven one: another history of the first 17 entries
    forked = [leaf_hash(b"rewritten"), *LEAVES[1:]]
    fork = Receipt(
        "dev-1", 7, 25, 30, root_from_leaf_hashes(forked[:30]), T0,
        tuple(inclusion_proof(25, 30, forked)), 17, tuple(consistency_proof(17, 30, forked)),
    )  # fmt: skip
    check_inclusion(fork, ENTRIES[25])  # the reading is in the forked tree ...
    with pytest.raises(ProofError) as err:
        check_extension(fork, last, list(fork.consistency))  # ... which is not an extension
    assert err.value.code == "receipt_not_an_extension"
    with pytest.raises(ProofError) as err:
        check_extension(receipt(10, 16), last, [])
    assert err.value.code == "receipt_tree_shrank"
    with pytest.raises(ProofError):
        check_extension(Receipt("dev-1", 7, 3, 17, b"\x01" * 32, T0), last, [])  # same size, other root


def test_topics() -> None:
    assert readings_topic("dev-1") == "attest/v1/dev-1/readings"
    assert receipts_topic("dev-1") == "attest/v1/dev-1/receipts"
    assert status_topic("dev-1") == "attest/v1/dev-1/status"
    assert device_of_readings_topic("attest/v1/dev-1/readings") == "dev-1"
    for topic in ["attest/v1/dev-1/receipts", "attest/v2/dev-1/readings", "attest/v1/a/b/readings",
                  "attest/v1//readings", "attest/v1/bad device/readings", "x"]:  # fmt: skip
        assert device_of_readings_topic(topic) is None
