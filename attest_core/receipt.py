"""Delivery receipts: how a device learns, with proof, that its readings are in the log.

Once a device's readings are covered by a signed checkpoint, the gateway
publishes a receipt on the device's receipts topic.  A receipt names the
device's newest logged reading ``seq``, its ``log_index``, and the tree of
``tree_size`` leaves with ``root_hash`` (the root of a checkpoint the gateway
signed), all signed by the log key.

(v2) A receipt *proves* rather than asserts.  It carries the RFC 9162 inclusion
proof of entry ``log_index`` in that tree, and a consistency proof from
``from_size`` (the tree size of the previous receipt the gateway sent the
device; 0 if it knows none) to ``tree_size``.  The device rebuilds the entry
bytes of reading ``seq`` from the envelope it stored itself, checks the
inclusion proof against the signed root (:func:`check_inclusion`), and checks
that the tree extends the last tree it proved (:func:`check_extension`).  The
sequencer appends a device's reading n only after reading n - 1, so once
reading ``seq`` is proven in the log, so are all the device's readings before it:
the device deletes them all from its outbox.  v1 receipts (no proofs) still
decode, but prove nothing: a v2 device deletes nothing on them.

Receipt v1 and v2::

    u8      version = 1 or 2
    text8   device_id
    u64     seq                >= 1
    u64     log_index
    u64     tree_size          > log_index
    32      root_hash
    u64     time_ms            when the gateway issued it
    -- v2 only:
    u8      n, then n x 32     inclusion proof of log_index in tree_size (RFC 9162 order)
    u64     from_size          <= tree_size; 0: no previous tree known
    u8      m, then m x 32     consistency proof from from_size to tree_size (empty if
                               from_size is 0 or tree_size)
    -- both:
    64      signature          Ed25519 by the log key over RECEIPT_SIGNATURE || the bytes above

The version byte separates v1 from v2 bytes under the one domain prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from attest_core import domains
from attest_core.codec import Reader, Writer, check_id, check_u63
from attest_core.errors import DecodeError, ProofError, SignatureError
from attest_core.keys import SIGNATURE_SIZE, Signer, verify_signature
from attest_core.merkle import leaf_hash, verify_consistency, verify_inclusion
from attest_core.reading import HASH_SIZE, check_time

RECEIPT_VERSION = 2
"""What a v2 gateway writes."""
RECEIPT_VERSIONS = (1, 2)
"""What decoders accept."""
MAX_PROOF_HASHES = 255
"""A proof length is one byte; RFC 9162 proofs of 63-bit trees are far shorter (<= 63 inclusion,
<= 64 consistency hashes)."""


@dataclass(frozen=True, slots=True)
class Receipt:
    device_id: str
    seq: int
    log_index: int
    tree_size: int
    root_hash: bytes
    time_ms: int
    inclusion: tuple[bytes, ...] = ()
    from_size: int = 0
    consistency: tuple[bytes, ...] = ()
    version: int = RECEIPT_VERSION

    def __post_init__(self) -> None:
        check_id(self.device_id, "device_id")
        check_u63(self.seq, "seq")
        check_u63(self.log_index, "log_index")
        check_u63(self.tree_size, "tree_size")
        check_u63(self.from_size, "from_size")
        if self.version not in RECEIPT_VERSIONS:
            raise DecodeError(f"receipt version {self.version} is not supported", code="bad_version")
        if self.seq < 1:
            raise DecodeError("a receipt's seq starts at 1", code="out_of_range")
        if self.log_index >= self.tree_size:
            raise DecodeError(
                f"log index {self.log_index} is not inside a tree of {self.tree_size}", code="out_of_range"
            )
        if self.from_size > self.tree_size:
            raise DecodeError(
                f"a receipt's from_size {self.from_size} is beyond its tree of {self.tree_size}",
                code="out_of_range",
            )
        if len(self.root_hash) != HASH_SIZE:
            raise DecodeError("a receipt's root hash is 32 bytes", code="bad_hash")
        if self.from_size in (0, self.tree_size) and self.consistency:
            raise DecodeError(
                "a receipt's consistency proof is empty when from_size is 0 or its tree size (one encoding)",
                code="bad_proof",
            )
        if self.version == 1 and (self.inclusion or self.consistency or self.from_size):
            raise DecodeError("a v1 receipt carries no proofs", code="bad_version")
        for name, proof in (("inclusion", self.inclusion), ("consistency", self.consistency)):
            if len(proof) > MAX_PROOF_HASHES or any(len(h) != HASH_SIZE for h in proof):
                raise DecodeError(
                    f"a receipt's {name} proof is at most 255 hashes of 32 bytes", code="bad_hash"
                )
        check_time(self.time_ms, "time_ms")

    def body(self) -> bytes:
        w = (
            Writer()
            .u8(self.version)
            .text8(self.device_id)
            .u64(self.seq)
            .u64(self.log_index)
            .u64(self.tree_size)
            .raw(self.root_hash)
            .u64(self.time_ms)
        )
        if self.version >= 2:
            w.u8(len(self.inclusion))
            for h in self.inclusion:
                w.raw(h)
            w.u64(self.from_size).u8(len(self.consistency))
            for h in self.consistency:
                w.raw(h)
        return w.getvalue()

    def sign(self, log_signer: Signer) -> bytes:
        """The receipt as published: body followed by the log key's signature."""
        body = self.body()
        return body + log_signer.sign(domains.RECEIPT_SIGNATURE + body)


def _hashes(r: Reader, field: str) -> tuple[bytes, ...]:
    return tuple(r.raw(HASH_SIZE, field) for _ in range(r.u8(field + " count")))


def open_receipt(data: bytes, log_public_key: bytes) -> Receipt:
    """Decode a published receipt (v1 or v2) and check the log key's signature on it.

    The signature is checked over the exact bytes received, before anything is decoded.
    """
    if len(data) <= SIGNATURE_SIZE:
        raise DecodeError(f"a receipt of {len(data)} bytes is too short", code="truncated")
    body, signature = data[:-SIGNATURE_SIZE], data[-SIGNATURE_SIZE:]
    if not verify_signature(log_public_key, domains.RECEIPT_SIGNATURE + body, signature):
        raise SignatureError("the receipt is not signed by the log key", code="bad_receipt_signature")
    r = Reader(body, "receipt")
    version = r.u8("version")
    if version not in RECEIPT_VERSIONS:
        raise DecodeError(f"receipt version {version} is not supported", code="bad_version")
    fields = (
        r.ident("device_id"), r.u63("seq"), r.u63("log_index"), r.u63("tree_size"),
        r.raw(HASH_SIZE, "root_hash"), r.u63("time_ms"),
    )  # fmt: skip
    if version == 1:
        receipt = Receipt(*fields, version=1)
    else:
        inclusion = _hashes(r, "inclusion proof")
        from_size = r.u63("from_size")
        receipt = Receipt(*fields, inclusion, from_size, _hashes(r, "consistency proof"), version)
    r.finish()
    return receipt


# --------------------------------------------------------------------------- what the device checks


@dataclass(frozen=True, slots=True)
class ProvenTree:
    """A tree the device has proved a receipt against: the start of the next consistency check."""

    size: int
    root_hash: bytes


def check_inclusion(receipt: Receipt, entry: bytes) -> None:
    """Check that the log entry ``entry`` (the receipted reading's entry bytes, rebuilt by the
    device from its own stored envelope) is leaf ``log_index`` of the receipt's signed tree."""
    if receipt.version < 2:
        raise ProofError(
            "a v1 receipt carries no inclusion proof: it asserts, it does not prove", code="receipt_unproven"
        )
    try:
        verify_inclusion(
            receipt.log_index, receipt.tree_size, leaf_hash(entry), list(receipt.inclusion), receipt.root_hash
        )
    except ProofError as exc:
        raise ProofError(
            f"the inclusion proof of reading {receipt.seq} at log index {receipt.log_index} does not lead to "
            f"the receipt's root of tree size {receipt.tree_size} ({exc.code}: {exc})",
            code="receipt_inclusion_failed",
        ) from None


def carried_consistency(receipt: Receipt, last: ProvenTree) -> list[bytes] | None:
    """The receipt's own consistency proof if it starts at ``last``; None if another proof is
    needed (the device missed a receipt, or the gateway lost track after a restart)."""
    if receipt.tree_size == last.size:
        return []
    if receipt.version >= 2 and receipt.from_size == last.size:
        return list(receipt.consistency)
    return None


def check_extension(receipt: Receipt, last: ProvenTree, proof: Sequence[bytes]) -> None:
    """Check that the receipt's tree extends ``last`` (an RFC 9162 consistency proof)."""
    if receipt.tree_size < last.size:
        raise ProofError(
            f"the receipt's tree of {receipt.tree_size} entries is smaller than the tree of {last.size} "
            "already proven",
            code="receipt_tree_shrank",
        )
    try:
        verify_consistency(last.size, receipt.tree_size, last.root_hash, receipt.root_hash, list(proof))
    except ProofError as exc:
        raise ProofError(
            f"the receipt's tree of {receipt.tree_size} entries (root {receipt.root_hash.hex()}) does not extend "
            f"the tree of {last.size} entries proven before (root {last.root_hash.hex()}) ({exc.code}: {exc})",
            code="receipt_not_an_extension",
        ) from None
