"""Storage addressing: perfect nodes, range hashes and the sequencer's compact range.

See :mod:`attest_core.merkle` for the tree, the proofs and the error codes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from attest_core.errors import ProofError
from attest_core.merkle.hashing import (
    _NODE_PREFIX,
    EMPTY_ROOT,
    MAX_TREE_SIZE,
    _check_hash,
    _check_size,
    _sha256,
)

# --------------------------------------------------------------------------- node addressing


class Node(NamedTuple):
    """The perfect subtree over leaves ``[index * 2**level, (index + 1) * 2**level)``."""

    level: int
    index: int  # type: ignore[assignment]  # the field shadows tuple.index(), by design

    @property
    def start(self) -> int:
        """First leaf covered."""
        return self.index << self.level

    @property
    def end(self) -> int:
        """One past the last leaf covered."""
        return (self.index + 1) << self.level


def perfect_nodes(lo: int, hi: int) -> list[Node]:
    """Split the leaf range ``[lo, hi)`` into maximal perfect subtrees, left to right.

    Greedy: each step takes the largest perfect subtree that starts at ``lo`` (which
    must be aligned to its own size) and fits before ``hi``.  For a range that is a
    node of an RFC 6962 tree these are the subtrees of the binary digits of
    ``hi - lo``, largest first; ``perfect_nodes(0, size)`` is the frontier of a tree.
    """
    lo = _check_size(lo, "range start")
    hi = _check_size(hi, "range end")
    if lo > hi:
        raise ProofError(f"leaf range [{lo}, {hi}) is reversed", code="bad_range")
    return _perfect_nodes(lo, hi)


def _perfect_nodes(lo: int, hi: int) -> list[Node]:
    nodes: list[Node] = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        if lo:
            level = min(level, (lo & -lo).bit_length() - 1)
        nodes.append(Node(level, lo >> level))
        lo += 1 << level
    return nodes


def frontier_nodes(size: int) -> list[Node]:
    """The right-edge perfect subtrees of a tree of ``size`` leaves (what a
    :class:`CompactRange` holds), largest first."""
    return _perfect_nodes(0, _check_size(size))


def _is_tree_range(lo: int, hi: int) -> bool:
    """True if ``[lo, hi)`` is a node of some RFC 6962 tree: non-empty and ``lo`` a
    multiple of the smallest power of two that is at least ``hi - lo``."""
    if hi <= lo:
        return False
    return lo & ((1 << (hi - lo - 1).bit_length()) - 1) == 0


def _lookup(hashes: Mapping[Node, bytes], node: Node) -> bytes:
    try:
        value = hashes[node]
    except KeyError:
        raise ProofError(
            f"no stored hash for node (level={node.level}, index={node.index}) "
            f"covering leaves [{node.start}, {node.end})",
            code="missing_node",
        ) from None
    return _check_hash(value, f"stored hash of node (level={node.level}, index={node.index})")


def _fold(hashes: list[bytes]) -> bytes:
    """Fold a perfect decomposition from the right into the hash of the whole range."""
    sha = _sha256
    prefix = _NODE_PREFIX
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = sha(prefix + h + acc).digest()
    return acc


def range_hash(lo: int, hi: int, hashes: Mapping[Node, bytes]) -> bytes:
    """The RFC 6962 hash of the subtree over ``[lo, hi)``, from stored perfect nodes.

    ``[lo, hi)`` must be a node of an RFC 6962 tree (every node any proof needs is);
    its hash folds its :func:`perfect_nodes` from the right.
    """
    lo = _check_size(lo, "range start")
    hi = _check_size(hi, "range end")
    if not _is_tree_range(lo, hi):
        raise ProofError(f"leaf range [{lo}, {hi}) is not a node of an RFC 6962 tree", code="bad_range")
    if not isinstance(hashes, Mapping):
        raise ProofError(f"node hashes must be a mapping, got {type(hashes).__name__}", code="bad_type")
    return _fold([_lookup(hashes, n) for n in _perfect_nodes(lo, hi)])


# --------------------------------------------------------------------------- compact range


class CompactRange:
    """The Merkle frontier of a growing log: its size and right-edge perfect subtrees.

    ``append`` returns every perfect node completed by the new leaf (the leaf itself
    at level 0 first, then its ancestors upwards), which is exactly what the gateway
    stores; ``root`` folds the frontier.  Restore with :meth:`from_nodes`, loading the
    :func:`frontier_nodes` of the stored size.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @classmethod
    def from_nodes(cls, size: int, hashes: Mapping[Node, bytes]) -> CompactRange:
        """The frontier of a tree of ``size`` leaves, from stored perfect-node hashes."""
        size = _check_size(size)
        if not isinstance(hashes, Mapping):
            raise ProofError(f"node hashes must be a mapping, got {type(hashes).__name__}", code="bad_type")
        cr = cls()
        cr._hashes = [_lookup(hashes, n) for n in _perfect_nodes(0, size)]
        cr._size = size
        return cr

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """Hashes of the frontier nodes, largest (leftmost) first."""
        return tuple(self._hashes)

    def frontier(self) -> list[tuple[Node, bytes]]:
        """The frontier as ``(node, hash)`` pairs, largest first."""
        return list(zip(_perfect_nodes(0, self._size), self._hashes, strict=True))

    def copy(self) -> CompactRange:
        cr = CompactRange()
        cr._size = self._size
        cr._hashes = list(self._hashes)
        return cr

    def append(self, leaf_hash: bytes) -> list[tuple[Node, bytes]]:
        """Append one leaf hash; return the perfect nodes it completes, bottom-up."""
        _check_hash(leaf_hash, "leaf hash")
        if self._size >= MAX_TREE_SIZE:
            raise ProofError("the log is full (2**64 - 1 leaves)", code="bad_size")
        index = self._size
        created = [(Node(0, index), leaf_hash)]
        h = leaf_hash
        level = 0
        stack = self._hashes
        while index & 1:
            h = _sha256(_NODE_PREFIX + stack.pop() + h).digest()
            index >>= 1
            level += 1
            created.append((Node(level, index), h))
        stack.append(h)
        self._size += 1
        return created

    def extend(self, leaf_hashes: Iterable[bytes]) -> list[tuple[Node, bytes]]:
        """Append several leaf hashes; return all nodes they complete, in order."""
        created: list[tuple[Node, bytes]] = []
        for h in leaf_hashes:
            created.extend(self.append(h))
        return created

    def root(self) -> bytes:
        """The Merkle Tree Hash of the leaves appended so far."""
        if not self._hashes:
            return EMPTY_ROOT
        return _fold(self._hashes)

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()})"
