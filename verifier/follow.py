"""What a monitor or witness concludes from a new checkpoint: pure logic, no I/O.

Given the last checkpoint it accepted (``None`` on first contact), a freshly
received signed note and, when the tree grew, the log's consistency proof:

* first contact: the checkpoint is accepted as it is (trust on first use: the
  empty tree is a prefix of every tree, so there is nothing to prove);
* same size and root: nothing new;
* larger size: the consistency proof from the accepted size to the new one must
  verify (:func:`attest_core.merkle.verify_consistency`); growth from size 0 needs
  no proof;
* otherwise an :class:`Alert`: ``bad_checkpoint`` (the note does not verify with
  the log key), ``rollback`` (the tree shrank), ``split_view`` (same size,
  different root) or ``fork`` (the log cannot prove that the new tree extends the
  accepted one).

Every alert is backed by two notes signed by the log key (or, for
``bad_checkpoint``, by the note that fails): together they are evidence
anyone can check.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from attest_core.checkpoint import SignedCheckpoint, open_checkpoint
from attest_core.errors import AttestError
from attest_core.merkle import verify_consistency
from attest_core.note import VerifierKey
from verifier.proofs import ConsistencyProof


class Step(enum.Enum):
    FIRST = "first"
    """Nothing accepted yet: accept the checkpoint (trust on first use)."""
    UNCHANGED = "unchanged"
    """The same tree as the accepted one."""
    GROWN = "grown"
    """A larger tree: it needs a consistency proof from the accepted size (see :func:`needs_proof`)."""


class AlertKind(enum.Enum):
    BAD_CHECKPOINT = "bad_checkpoint"
    ROLLBACK = "rollback"
    SPLIT_VIEW = "split_view"
    FORK = "fork"
    CLAIMS = "claims"
    """A claim or withdrawal entry breaks the rule that the same energy backs one live claim."""


@dataclass(frozen=True, slots=True)
class Alert:
    kind: AlertKind
    message: str


def _describe(signed: SignedCheckpoint) -> str:
    cp = signed.checkpoint
    return f"size {cp.size} root {cp.root_hash.hex()}"


def open_received(note: bytes | str, log_key: VerifierKey) -> SignedCheckpoint | Alert:
    """Verify a checkpoint note the log served; a note that does not verify is an alert."""
    try:
        return open_checkpoint(note, log_key)
    except AttestError as exc:
        return Alert(
            AlertKind.BAD_CHECKPOINT,
            f"the log served a checkpoint that does not verify with the log key [{exc.code}]: {exc}",
        )


def compare(last: SignedCheckpoint | None, new: SignedCheckpoint) -> Step | Alert:
    """Compare a verified checkpoint with the last accepted one."""
    if last is None:
        return Step.FIRST
    old_cp, new_cp = last.checkpoint, new.checkpoint
    if new_cp.size < old_cp.size:
        return Alert(
            AlertKind.ROLLBACK,
            f"rollback: the log now shows {_describe(new)}, smaller than the accepted {_describe(last)}",
        )
    if new_cp.size == old_cp.size:
        if new_cp.root_hash != old_cp.root_hash:
            return Alert(
                AlertKind.SPLIT_VIEW,
                f"split view: two different trees of size {new_cp.size} are signed by the log "
                f"(accepted root {old_cp.root_hash.hex()}, now root {new_cp.root_hash.hex()})",
            )
        return Step.UNCHANGED
    return Step.GROWN


def needs_proof(last: SignedCheckpoint, new: SignedCheckpoint) -> bool:
    """True if growing from ``last`` to ``new`` needs a proof fetched from the log (not from size 0)."""
    return last.checkpoint.size > 0 and new.checkpoint.size > last.checkpoint.size


def check_growth(
    last: SignedCheckpoint, new: SignedCheckpoint, proof: ConsistencyProof | None
) -> Alert | None:
    """None if ``new`` provably extends ``last``; a ``fork`` alert otherwise.

    ``proof`` may be None only when growing from size 0 (:func:`needs_proof`).
    """
    size1, size2 = last.checkpoint.size, new.checkpoint.size
    hashes: tuple[bytes, ...] = ()
    if proof is not None:
        if (proof.size1, proof.size2) != (size1, size2):
            return Alert(
                AlertKind.FORK,
                f"fork: asked for a consistency proof from {size1} to {size2}, the log answered one from "
                f"{proof.size1} to {proof.size2}",
            )
        hashes = proof.hashes
    elif size1 != 0:
        raise ValueError("a consistency proof is needed when growing from a non-empty tree")
    try:
        verify_consistency(size1, size2, last.checkpoint.root_hash, new.checkpoint.root_hash, hashes)
    except AttestError as exc:
        return Alert(
            AlertKind.FORK,
            f"fork: the log cannot prove that its tree of {_describe(new)} extends the accepted "
            f"{_describe(last)} [{exc.code}]: {exc}",
        )
    return None
