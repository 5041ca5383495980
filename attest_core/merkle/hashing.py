"""Merkle tree hashing (RFC 9162 §2.1.1) and the argument checks every part shares.

See :mod:`attest_core.merkle` for the tree, the proofs and the error codes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from attest_core.errors import ProofError

HASH_SIZE = 32
"""Size in bytes of every hash in the tree (SHA-256)."""

MAX_TREE_SIZE = 2**64 - 1
"""Largest tree size (and leaf index bound) accepted: RFC 9162 sizes are uint64."""

_sha256 = hashlib.sha256
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

EMPTY_ROOT = _sha256(b"").digest()
"""The Merkle Tree Hash of the empty tree: SHA-256 of the empty string."""


# --------------------------------------------------------------------------- hashing


def leaf_hash(data: bytes | bytearray | memoryview) -> bytes:
    """SHA-256(0x00 ‖ data): the hash of a leaf holding ``data``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProofError(f"leaf data must be bytes, got {type(data).__name__}", code="bad_type")
    return _sha256(_LEAF_PREFIX + bytes(data)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 ‖ left ‖ right): the hash of an interior node."""
    _check_hash(left, "left hash")
    _check_hash(right, "right hash")
    return _sha256(_NODE_PREFIX + left + right).digest()


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash of ``leaf_hashes``; :data:`EMPTY_ROOT` for none.

    O(n) hashes, iterative.  Pairing neighbours level by level and carrying an odd
    last node up unchanged builds exactly the RFC 6962 tree.
    """
    return _mth(_check_hashes(leaf_hashes, "leaf hash"))


def _mth(hashes: list[bytes]) -> bytes:
    """Merkle Tree Hash of already validated hashes."""
    if not hashes:
        return EMPTY_ROOT
    sha = _sha256
    prefix = _NODE_PREFIX
    level = hashes
    while len(level) > 1:
        pairs = iter(level)
        upper = [sha(prefix + a + b).digest() for a, b in zip(pairs, pairs, strict=False)]
        if len(level) & 1:
            upper.append(level[-1])
        level = upper
    return level[0]


# --------------------------------------------------------------------------- validation


def _check_int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProofError(f"{what} must be an int, got {type(value).__name__}", code="bad_type")
    return value


def _check_size(size: object, what: str = "tree size") -> int:
    n = _check_int(size, what)
    if n < 0 or n > MAX_TREE_SIZE:
        raise ProofError(f"{what} {n} is outside [0, 2**64 - 1]", code="bad_size")
    return n


def _check_index(index: object, size: int, what: str = "leaf index") -> int:
    i = _check_int(index, what)
    if i < 0 or i >= size:
        raise ProofError(f"{what} {i} is out of range for a tree of size {size}", code="index_out_of_range")
    return i


def _check_hash(value: object, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise ProofError(f"{what} must be bytes, got {type(value).__name__}", code="bad_type")
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, must be {HASH_SIZE}", code="bad_hash_length")
    return value


def _check_hashes(values: object, what: str) -> list[bytes]:
    """A list copy of a sequence of 32-byte hashes (two C-speed passes when all is well)."""
    if isinstance(values, str | bytes | bytearray | memoryview) or not isinstance(values, Sequence):
        raise ProofError(
            f"{what}es must be a sequence of hashes, got {type(values).__name__}", code="bad_type"
        )
    hashes: list[bytes] = list(values)
    if not set(map(type, hashes)) <= {bytes} or not set(map(len, hashes)) <= {HASH_SIZE}:
        for i, h in enumerate(hashes):
            _check_hash(h, f"{what} {i}")
    return hashes


def _largest_power_below(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)
