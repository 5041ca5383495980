"""The monitor's decisions as pure functions: last accepted checkpoint + new checkpoint + proof -> verdict."""

from __future__ import annotations

from attest_core.checkpoint import SignedCheckpoint, open_checkpoint
from attest_core.merkle import consistency_proof
from tests.support import MemoryLog
from verifier.follow import Alert, AlertKind, Step, check_growth, compare, needs_proof, open_received
from verifier.proofs import ConsistencyProof


def make_log(n: int, tag: bytes = b"entry") -> MemoryLog:
    log = MemoryLog()
    for i in range(n):
        log.append(tag + bytes([i]))
    return log


def signed(log: MemoryLog, size: int) -> SignedCheckpoint:
    return open_checkpoint(log.checkpoint(size), log.key)


def test_compare() -> None:
    log = make_log(10)
    other = make_log(10, b"other")
    assert compare(None, signed(log, 4)) is Step.FIRST
    assert compare(signed(log, 4), signed(log, 4)) is Step.UNCHANGED
    assert compare(signed(log, 4), signed(log, 9)) is Step.GROWN
    rollback = compare(signed(log, 9), signed(log, 4))
    assert isinstance(rollback, Alert)
    assert rollback.kind is AlertKind.ROLLBACK
    split = compare(signed(log, 6), signed(other, 6))
    assert isinstance(split, Alert)
    assert split.kind is AlertKind.SPLIT_VIEW
    assert not needs_proof(signed(log, 0), signed(log, 5))
    assert needs_proof(signed(log, 1), signed(log, 5))


def test_check_growth() -> None:
    log = make_log(10)
    old, new = signed(log, 3), signed(log, 10)
    proof = ConsistencyProof(3, 10, tuple(consistency_proof(3, 10, log.leaves)))
    assert check_growth(old, new, proof) is None
    assert check_growth(signed(log, 0), new, None) is None

    wrong_sizes = check_growth(old, new, ConsistencyProof(2, 10, proof.hashes))
    assert isinstance(wrong_sizes, Alert)
    assert wrong_sizes.kind is AlertKind.FORK
    assert "from 3 to 10" in wrong_sizes.message

    fork = make_log(10)
    fork.entries[1], fork.leaves[1] = b"x", make_log(1, b"x").leaves[0]
    forked = check_growth(
        old, signed(fork, 10), ConsistencyProof(3, 10, tuple(consistency_proof(3, 10, fork.leaves)))
    )
    assert isinstance(forked, Alert)
    assert forked.kind is AlertKind.FORK
    assert "[root1_mismatch]" in forked.message or "[root2_mismatch]" in forked.message


def test_open_received() -> None:
    log = make_log(3)
    assert isinstance(open_received(log.checkpoint(), log.key), SignedCheckpoint)
    bad = open_received(b"<html>502 Bad Gateway</html>", log.key)
    assert isinstance(bad, Alert)
    assert bad.kind is AlertKind.BAD_CHECKPOINT
