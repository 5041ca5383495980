"""Anchors: a checkpoint of the log recorded on an EVM chain, as an evidence bundle carries it.

The log's operator records checkpoints in the LogAnchor contract (``contracts/LogAnchor.vy``):
per operator account and log origin, the tree size, root hash and :func:`note_hash` of each
anchored checkpoint, each one consistent with the one before (the contract checks the RFC 6962
consistency proof itself).  A bundle's ``anchor`` member says where its log was last anchored
and proves that its own checkpoint extends the anchored tree::

    "anchor": {
      "chain_id": 1,                          # EIP-155 chain id
      "contract": "0x<40 lowercase hex>",     # the LogAnchor contract
      "operator": "0x<40 lowercase hex>",     # the account that anchored (msg.sender)
      "checkpoint": "<signed note>",          # the anchored checkpoint, exactly as signed
      "tx_hash": "0x<64 lowercase hex>",      # the anchoring transaction
      "block_number": 123,
      "block_hash": "0x<64 lowercase hex>",
      "consistency": ["<base64 hash>", ...]   # from the anchored tree to the bundle's checkpoint
    }

Offline, :func:`check_anchor` verifies the anchored checkpoint with the auditor's log key and the
consistency proof; nothing here reads the chain.  That the transaction is in a final block of that
chain and carries exactly these values is checked by whoever can reach the chain (the verifier's
``--anchor-rpc``); until then the anchor is only *stated*.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NoReturn

from attest_core import domains
from attest_core.checkpoint import SignedCheckpoint, open_checkpoint
from attest_core.errors import AttestError, BundleError, VerificationError
from attest_core.merkle import verify_consistency
from attest_core.merkle.hashing import HASH_SIZE
from attest_core.note import VerifierKey

ANCHOR_MEMBERS = (
    "chain_id",
    "contract",
    "operator",
    "checkpoint",
    "tx_hash",
    "block_number",
    "block_hash",
    "consistency",
)
"""The members of a bundle's anchor object, each required, no other allowed."""

MAX_CONSISTENCY_HASHES = 128
"""A consistency proof between trees of at most 2**64 leaves has fewer hashes than this."""

MAX_CHAIN_ID = 2**256 - 1

_ADDRESS = re.compile(r"0x[0-9a-f]{40}\Z")
_HASH = re.compile(r"0x[0-9a-f]{64}\Z")


def note_hash(note_text: str) -> bytes:
    """What the contract records of an anchored checkpoint: the domain-separated SHA-256 of the
    signed note's exact UTF-8 bytes (:data:`attest_core.domains.ANCHOR_NOTE_HASH`)."""
    return domains.tagged_hash(domains.ANCHOR_NOTE_HASH, note_text.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class Anchor:
    """A bundle's anchor member, parsed; nothing in it is verified yet."""

    chain_id: int
    contract: str
    operator: str
    checkpoint: str
    tx_hash: str
    block_number: int
    block_hash: str
    consistency: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if type(self.chain_id) is not int or not 0 < self.chain_id <= MAX_CHAIN_ID:
            _fail(f"chain_id must be a positive integer, got {self.chain_id!r}")
        for name, pattern, what in (
            ("contract", _ADDRESS, "an address: 0x and 40 lowercase hex digits"),
            ("operator", _ADDRESS, "an address: 0x and 40 lowercase hex digits"),
            ("tx_hash", _HASH, "a hash: 0x and 64 lowercase hex digits"),
            ("block_hash", _HASH, "a hash: 0x and 64 lowercase hex digits"),
        ):
            value = getattr(self, name)
            if type(value) is not str or not pattern.match(value):
                _fail(f"{name} must be {what}, got {value!r}")
        if type(self.checkpoint) is not str:
            _fail("checkpoint must be a string (the anchored signed note)")
        if type(self.block_number) is not int or self.block_number < 0:
            _fail(f"block_number must be a non-negative integer, got {self.block_number!r}")
        if len(self.consistency) > MAX_CONSISTENCY_HASHES:
            _fail(
                f"the consistency proof has {len(self.consistency)} hashes, at most {MAX_CONSISTENCY_HASHES}"
            )
        for n, digest in enumerate(self.consistency):
            if type(digest) is not bytes or len(digest) != HASH_SIZE:
                _fail(f"consistency[{n}] must be a {HASH_SIZE}-byte hash")


def _fail(message: str) -> NoReturn:
    raise BundleError(f"anchor: {message}", code="bad_anchor")


def parse_anchor(obj: Any) -> Anchor:
    """A bundle's anchor member from its parsed JSON: exactly :data:`ANCHOR_MEMBERS`, strictly typed."""
    from attest_core.bundle.parse import decode_b64  # the bundle's base64 rule; bundle imports us

    if type(obj) is not dict:
        _fail("the anchor must be a JSON object")
    missing = [m for m in ANCHOR_MEMBERS if m not in obj]
    extra = sorted(set(obj) - set(ANCHOR_MEMBERS))
    if missing:
        _fail(f"it lacks {', '.join(missing)}")
    if extra:
        _fail(f"unknown members: {', '.join(extra)}")
    proof = obj["consistency"]
    if type(proof) is not list:
        _fail("consistency must be a list of base64 hashes")
    if len(proof) > MAX_CONSISTENCY_HASHES:
        _fail(f"the consistency proof has {len(proof)} hashes, at most {MAX_CONSISTENCY_HASHES}")
    return Anchor(
        chain_id=obj["chain_id"],
        contract=obj["contract"],
        operator=obj["operator"],
        checkpoint=obj["checkpoint"],
        tx_hash=obj["tx_hash"],
        block_number=obj["block_number"],
        block_hash=obj["block_hash"],
        consistency=tuple(decode_b64(h, f"anchor.consistency[{n}]") for n, h in enumerate(proof)),
    )


def anchor_json(anchor: Anchor) -> dict[str, Any]:
    """The anchor member as a bundle writes it (the inverse of :func:`parse_anchor`)."""
    from attest_core.bundle.parse import b64

    return {
        "chain_id": anchor.chain_id,
        "contract": anchor.contract,
        "operator": anchor.operator,
        "checkpoint": anchor.checkpoint,
        "tx_hash": anchor.tx_hash,
        "block_number": anchor.block_number,
        "block_hash": anchor.block_hash,
        "consistency": [b64(h) for h in anchor.consistency],
    }


@dataclass(frozen=True, slots=True)
class AnchoredTree:
    """An anchor whose checkpoint verified under the log key and whose tree the bundle's
    checkpoint provably extends.  Whether the chain holds it is not known here."""

    anchor: Anchor
    checkpoint: SignedCheckpoint
    """The anchored checkpoint, verified with the auditor's log key."""
    note_hash: bytes
    """:func:`note_hash` of the anchored note: what the chain must record."""

    @property
    def size(self) -> int:
        return self.checkpoint.checkpoint.size

    @property
    def root_hash(self) -> bytes:
        return self.checkpoint.checkpoint.root_hash

    def covers(self, index: int) -> bool:
        """Whether log entry ``index`` lies inside the anchored tree."""
        return index < self.size


def check_anchor(anchor: Anchor, log_key: VerifierKey, bundle_checkpoint: SignedCheckpoint) -> AnchoredTree:
    """Check an anchor offline against the auditor's log key and the bundle's verified checkpoint.

    The anchored note must verify under ``log_key`` (same origin, then), name a non-empty tree no
    larger than the bundle's, and the anchor's consistency proof must lead from that tree to the
    bundle's.  Raises :class:`VerificationError` with code ``anchor_checkpoint`` (the anchored note
    does not verify), ``anchor_beyond_checkpoint`` or ``anchor_inconsistent``.
    """
    try:
        anchored = open_checkpoint(anchor.checkpoint, log_key)
    except AttestError as exc:
        raise VerificationError(
            f"the anchored checkpoint does not verify under the log key: {exc}", code="anchor_checkpoint"
        ) from exc
    size1, size2 = anchored.checkpoint.size, bundle_checkpoint.checkpoint.size
    if size1 == 0:
        raise VerificationError("the anchored checkpoint is of the empty tree", code="anchor_checkpoint")
    if size1 > size2:
        raise VerificationError(
            f"the anchored tree has {size1} entries, more than the bundle's checkpoint ({size2}): "
            "a bundle carries an anchor its own checkpoint extends",
            code="anchor_beyond_checkpoint",
        )
    try:
        verify_consistency(
            size1,
            size2,
            anchored.checkpoint.root_hash,
            bundle_checkpoint.checkpoint.root_hash,
            anchor.consistency,
        )
    except VerificationError as exc:
        raise VerificationError(
            f"the bundle's checkpoint (size {size2}) is not proven consistent with the anchored tree "
            f"(size {size1}): {exc}",
            code="anchor_inconsistent",
        ) from exc
    return AnchoredTree(anchor, anchored, note_hash(anchored.note_text))
