"""RFC 6962 / RFC 9162 Merkle tree maths (SHA-256): hashes, storage addressing, proofs.

Pure code, no I/O.  Every hash is a ``bytes`` object of :data:`HASH_SIZE` (32) bytes.

Tree shape
    The Merkle Tree Hash (MTH) of ``n`` leaf hashes is the RFC 9162 §2.1.1 one: the
    empty tree hashes to :data:`EMPTY_ROOT`, one leaf to its leaf hash, and ``n > 1``
    leaves to ``node_hash(MTH(D[0:k]), MTH(D[k:n]))`` with ``k`` the largest power of
    two smaller than ``n``.  Leaf and interior hashes are domain-separated with the
    0x00 / 0x01 prefixes (:func:`leaf_hash`, :func:`node_hash`).

Storage addressing
    A :class:`Node` ``(level, index)`` is the *perfect* subtree over the leaves
    ``[index * 2**level, (index + 1) * 2**level)``.  Its hash never changes once the
    log has grown past it, so the gateway stores exactly those.  Every other node of
    an RFC 6962 tree (the ones on the right edge of a tree whose size is not a power
    of two) is computed from its :func:`perfect_nodes` decomposition by
    :func:`range_hash`.  Proof generation is split into a :class:`ProofPlan` (which
    stored nodes are needed, computed from sizes and indices alone) and
    :meth:`ProofPlan.assemble` (turning the fetched hashes into the proof), so the
    storage layer can fetch all nodes of a proof in one query.  :class:`CompactRange`
    is the sequencer's Merkle frontier: it appends leaves, reports every perfect node
    that becomes complete, and gives the root.

Inclusion proofs (RFC 9162 §2.1.3)
    Ordered bottom-up, as in the RFC: the sibling of the leaf first, the child of the
    root last.  Verification demands exactly ``inner + border`` hashes, where
    ``inner = bitlen(index XOR (size - 1))`` and ``border = popcount(index >> inner)``.

Consistency proofs (RFC 9162 §2.1.4)
    Ordered as SUBPROOF builds them, bottom-up: first, unless ``size1`` is a power of
    two (then the old root itself is the starting point), the largest subtree ending
    at leaf ``size1``; then the siblings on the way up to the new root.  The length
    must be exactly what the two sizes imply.

    The size-0 rule: a proof from ``size1 == 0`` is accepted iff the proof is empty
    and ``root1 == EMPTY_ROOT``; ``root2`` is then only checked for being 32 bytes
    (and for ``size2 == 0`` it must equal ``root1``, so it is ``EMPTY_ROOT`` too).
    The empty tree is a prefix of every tree, which is what a C2SP tlog-witness
    expects when it first sees a log; transparency-dev/merkle rejects every proof from
    size 0 instead.  ``size1 == size2`` needs an empty proof and ``root1 == root2``;
    ``size1 > size2`` is an error.

Multi-leaf inclusion proofs
    One proof for a set of leaves, with no hash repeated.  Defined by a depth-first,
    left-before-right traversal of the RFC 6962 tree over ``[0, size)``, splitting
    ``[lo, hi)`` at ``lo + k`` (``k`` the largest power of two below ``hi - lo``): a
    range with no proven leaf contributes one hash, taken from the proof in traversal
    order; a single proven leaf contributes its own leaf hash; any other range is
    split.  The ranges that contribute proof hashes are disjoint, so the traversal
    order is simply **left to right by leaf position**.  For one leaf the proof holds
    the same hashes as its RFC inclusion proof, but ordered by position: first the
    left siblings from the top of the tree down, then the right siblings from the
    bottom up (the RFC order is bottom-up, mixing both sides).

A proof binds a leaf set to a ``(size, root)`` pair: the size must come from the same
signed checkpoint as the root, since a proof can verify for a different size that has
the same tree shape around the proven leaves.

Errors
    Everything raises :class:`~attest_core.errors.ProofError`, never ``ValueError``
    or ``TypeError``, both for proofs that do not verify and for invalid arguments.
    The ``code`` says which check failed:

    ``bad_type``               an argument of the wrong type (``int`` / ``bytes`` / sequence)
    ``bad_hash_length``        a hash that is not 32 bytes
    ``bad_size``               a tree size that is negative or above 2**64 - 1
    ``index_out_of_range``     a leaf index that is negative or not below the tree size
    ``size_order``             a consistency proof with ``size1 > size2``
    ``bad_range``              a leaf range that is empty, reversed or not an RFC 6962 node
    ``not_enough_leaves``      a generator given fewer leaf hashes than the tree size
    ``empty_leaf_set``         a multi-inclusion proof for no leaves
    ``missing_node``           storage lacks a perfect node a plan or frontier needs
    ``wrong_proof_length``     an inclusion / consistency proof of the wrong length
    ``proof_too_short``        a multi-inclusion proof that runs out of hashes
    ``proof_hashes_left_over`` a multi-inclusion proof with unused hashes
    ``root_mismatch``          the calculated root is not the expected root
    ``root1_mismatch``         consistency: the old root does not match
    ``root2_mismatch``         consistency: the new root does not match
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from attest_core.errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "CompactRange",
    "Node",
    "ProofPlan",
    "consistency_plan",
    "consistency_proof",
    "frontier_nodes",
    "inclusion_plan",
    "inclusion_proof",
    "leaf_hash",
    "multi_inclusion_plan",
    "multi_inclusion_proof",
    "node_hash",
    "perfect_nodes",
    "range_hash",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "root_from_multi_inclusion",
    "verify_consistency",
    "verify_inclusion",
    "verify_multi_inclusion",
]

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


# --------------------------------------------------------------------------- proof plans


@dataclass(frozen=True, slots=True)
class ProofPlan:
    """Which subtrees a proof consists of, and which stored nodes that takes.

    ``ranges`` are the leaf ranges whose hashes make up the proof, in proof order;
    ``nodes`` are the distinct perfect nodes to fetch (each range's
    :func:`perfect_nodes`, concatenated; the ranges are disjoint).
    """

    ranges: tuple[tuple[int, int], ...]
    nodes: tuple[Node, ...] = field(init=False)
    _counts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        nodes: list[Node] = []
        counts: list[int] = []
        add_node = nodes.append
        add_count = counts.append
        make_node = tuple.__new__  # Node(...) without the keyword-handling wrapper
        for lo, hi in self.ranges:
            width = hi - lo
            if width > 0 and lo >= 0 and not width & (width - 1) and not lo & (width - 1):
                level = width.bit_length() - 1  # a perfect subtree: the common case
                add_node(make_node(Node, (level, lo >> level)))
                add_count(1)
                continue
            if lo < 0 or not _is_tree_range(lo, hi):
                raise ProofError(
                    f"leaf range [{lo}, {hi}) is not a node of an RFC 6962 tree", code="bad_range"
                )
            part = _perfect_nodes(lo, hi)
            nodes.extend(part)
            add_count(len(part))
        object.__setattr__(self, "nodes", tuple(nodes))
        object.__setattr__(self, "_counts", tuple(counts))

    def __len__(self) -> int:
        """Number of hashes in the proof."""
        return len(self.ranges)

    def assemble(self, hashes: Mapping[Node, bytes]) -> list[bytes]:
        """The proof hashes, in order, from fetched node hashes (extra entries are ignored)."""
        if not isinstance(hashes, Mapping):
            raise ProofError(f"node hashes must be a mapping, got {type(hashes).__name__}", code="bad_type")
        nodes = self.nodes
        try:
            fetched = [hashes[n] for n in nodes]
        except KeyError:
            fetched = []
        if (
            len(fetched) != len(nodes)
            or not set(map(type, fetched)) <= {bytes}
            or not set(map(len, fetched)) <= {HASH_SIZE}
        ):
            fetched = [_lookup(hashes, n) for n in nodes]  # raises the precise error
        proof: list[bytes] = []
        pos = 0
        for count in self._counts:
            if count == 1:
                proof.append(fetched[pos])
            else:
                proof.append(_fold(fetched[pos : pos + count]))
            pos += count
        return proof


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Sibling ranges of the path from leaf ``index`` to the root, bottom-up."""
    siblings: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + _largest_power_below(hi - lo)
        if index < mid:
            siblings.append((mid, hi))
            hi = mid
        else:
            siblings.append((lo, mid))
            lo = mid
    siblings.reverse()
    return siblings


def inclusion_plan(index: int, size: int) -> ProofPlan:
    """The plan of the RFC 9162 inclusion proof of leaf ``index`` in a tree of ``size``."""
    size = _check_size(size)
    index = _check_index(index, size)
    return ProofPlan(tuple(_inclusion_ranges(index, size)))


def _check_consistency_sizes(size1: int, size2: int) -> tuple[int, int]:
    size1 = _check_size(size1, "size1")
    size2 = _check_size(size2, "size2")
    if size1 > size2:
        raise ProofError(
            f"size1 {size1} is larger than size2 {size2}: a tree cannot shrink", code="size_order"
        )
    return size1, size2


def _consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """RFC 9162 SUBPROOF(size1, D[0:size2], true) as leaf ranges, in proof order."""
    if size1 == 0 or size1 == size2:
        return []
    siblings: list[tuple[int, int]] = []
    lo, hi = 0, size2
    whole_old_tree = True
    while hi != size1:
        mid = lo + _largest_power_below(hi - lo)
        if size1 <= mid:
            siblings.append((mid, hi))
            hi = mid
        else:
            siblings.append((lo, mid))
            lo = mid
            whole_old_tree = False
    siblings.reverse()
    if not whole_old_tree:
        siblings.insert(0, (lo, hi))
    return siblings


def consistency_plan(size1: int, size2: int) -> ProofPlan:
    """The plan of the RFC 9162 consistency proof from ``size1`` to ``size2``."""
    size1, size2 = _check_consistency_sizes(size1, size2)
    return ProofPlan(tuple(_consistency_ranges(size1, size2)))


def _sorted_index_set(indices: Iterable[int], size: int) -> list[int]:
    """The distinct leaf indices, sorted, after checking them against ``size``."""
    if isinstance(indices, str | bytes | bytearray | memoryview) or not isinstance(indices, Iterable):
        raise ProofError(
            f"leaf indices must be an iterable of ints, got {type(indices).__name__}", code="bad_type"
        )
    items = list(indices)
    if not set(map(type, items)) <= {int}:
        for v in items:
            _check_int(v, "leaf index")
    idx = sorted(set(items))
    if not idx:
        raise ProofError("a multi-inclusion proof needs at least one leaf", code="empty_leaf_set")
    _check_index(idx[0], size)
    _check_index(idx[-1], size)
    return idx


def _multi_ranges(idx: list[int], size: int) -> list[tuple[int, int]]:
    """Ranges of the multi-inclusion proof of the sorted distinct ``idx``, in proof order."""
    out: list[tuple[int, int]] = []
    append = out.append

    def walk(lo: int, hi: int, a: int, b: int) -> None:
        n = b - a
        if n == 0:
            append((lo, hi))
            return
        if n == hi - lo:
            return
        if n == 1:
            target = idx[a]
            rights: list[tuple[int, int]] = []
            while hi - lo > 1:
                mid = lo + _largest_power_below(hi - lo)
                if target < mid:
                    rights.append((mid, hi))
                    hi = mid
                else:
                    append((lo, mid))
                    lo = mid
            rights.reverse()
            out.extend(rights)
            return
        mid = lo + _largest_power_below(hi - lo)
        c = bisect_left(idx, mid, a, b)
        walk(lo, mid, a, c)
        walk(mid, hi, c, b)

    walk(0, size, 0, len(idx))
    return out


def multi_inclusion_plan(indices: Iterable[int], size: int) -> ProofPlan:
    """The plan of the multi-inclusion proof of the leaves ``indices`` (a set: order
    and repetitions do not matter) in a tree of ``size``."""
    size = _check_size(size)
    idx = _sorted_index_set(indices, size)
    return ProofPlan(tuple(_multi_ranges(idx, size)))


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


# --------------------------------------------------------------------------- generators


def _leaf_prefix(leaf_hashes: Sequence[bytes], size: int) -> list[bytes]:
    if isinstance(leaf_hashes, Sequence) and len(leaf_hashes) < size:
        raise ProofError(
            f"{len(leaf_hashes)} leaf hashes given for a tree of size {size}", code="not_enough_leaves"
        )
    return _check_hashes(leaf_hashes, "leaf hash")[:size]


def inclusion_proof(index: int, size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 PATH(index, D[0:size]) from the full list of leaf hashes (the first
    ``size`` are used).  For tests and small trees; storage uses :func:`inclusion_plan`."""
    size = _check_size(size)
    index = _check_index(index, size)
    leaves = _leaf_prefix(leaf_hashes, size)

    def path(m: int, d: list[bytes]) -> list[bytes]:
        n = len(d)
        if n == 1:
            return []
        k = _largest_power_below(n)
        if m < k:
            return [*path(m, d[:k]), _mth(d[k:])]
        return [*path(m - k, d[k:]), _mth(d[:k])]

    return path(index, leaves)


def consistency_proof(size1: int, size2: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 PROOF(size1, D[0:size2]) from the full list of leaf hashes; empty for
    ``size1 == 0`` and ``size1 == size2``."""
    size1, size2 = _check_consistency_sizes(size1, size2)
    leaves = _leaf_prefix(leaf_hashes, size2)
    if size1 == 0:
        return []

    def subproof(m: int, d: list[bytes], whole: bool) -> list[bytes]:
        n = len(d)
        if m == n:
            return [] if whole else [_mth(d)]
        k = _largest_power_below(n)
        if m <= k:
            return [*subproof(m, d[:k], whole), _mth(d[k:])]
        return [*subproof(m - k, d[k:], False), _mth(d[:k])]

    return subproof(size1, leaves, True)


def multi_inclusion_proof(indices: Iterable[int], size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """The multi-inclusion proof of the leaves ``indices`` (a set) from the full list
    of leaf hashes, by the traversal in the module docstring."""
    size = _check_size(size)
    idx = _sorted_index_set(indices, size)
    leaves = _leaf_prefix(leaf_hashes, size)
    proof: list[bytes] = []

    def walk(lo: int, hi: int, a: int, b: int) -> None:
        if a == b:
            proof.append(_mth(leaves[lo:hi]))
        elif hi - lo > 1:
            mid = lo + _largest_power_below(hi - lo)
            c = bisect_left(idx, mid, a, b)
            walk(lo, mid, a, c)
            walk(mid, hi, c, b)

    walk(0, size, 0, len(idx))
    return proof


# --------------------------------------------------------------------------- inclusion


def _root_mismatch(
    calculated: bytes, expected: bytes, code: str = "root_mismatch", what: str = "root"
) -> ProofError:
    return ProofError(
        f"calculated {what} {calculated.hex()} does not match expected {what} {expected.hex()}",
        code=code,
    )


def root_from_inclusion_proof(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]) -> bytes:
    """The root implied by an RFC 9162 inclusion proof (§2.1.3.2), after checking
    ``index < size``, the exact proof length and every hash's length."""
    size = _check_size(size)
    index = _check_index(index, size)
    _check_hash(leaf_hash, "leaf hash")
    hashes = _check_hashes(proof, "proof hash")
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    if len(hashes) != inner + border:
        raise ProofError(
            f"inclusion proof has {len(hashes)} hashes, a proof for index {index} "
            f"in a tree of {size} needs {inner + border}",
            code="wrong_proof_length",
        )
    sha = _sha256
    prefix = _NODE_PREFIX
    r = leaf_hash
    for level in range(inner):
        if (index >> level) & 1:
            r = sha(prefix + hashes[level] + r).digest()
        else:
            r = sha(prefix + r + hashes[level]).digest()
    for h in hashes[inner:]:
        r = sha(prefix + h + r).digest()
    return r


def verify_inclusion(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``proof`` proves leaf ``index`` with ``leaf_hash`` in the tree of
    ``size`` leaves with ``root``; raise :class:`ProofError` otherwise."""
    _check_hash(root, "root")
    calculated = root_from_inclusion_proof(index, size, leaf_hash, proof)
    if calculated != root:
        raise _root_mismatch(calculated, root)


# --------------------------------------------------------------------------- consistency


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> None:
    """Check an RFC 9162 consistency proof (§2.1.4.2) between the tree of ``size1``
    with ``root1`` and the tree of ``size2`` with ``root2``; raise :class:`ProofError`
    otherwise.  See the module docstring for the size-0 rule."""
    size1, size2 = _check_consistency_sizes(size1, size2)
    _check_hash(root1, "root1")
    _check_hash(root2, "root2")
    hashes = _check_hashes(proof, "proof hash")

    if size1 == 0 or size1 == size2:
        if hashes:
            raise ProofError(
                f"consistency proof has {len(hashes)} hashes, a proof from size {size1} "
                f"to size {size2} needs 0",
                code="wrong_proof_length",
            )
        if size1 == 0 and root1 != EMPTY_ROOT:
            raise ProofError(
                f"root1 {root1.hex()} of a tree of size 0 is not the empty tree's root {EMPTY_ROOT.hex()}",
                code="root1_mismatch",
            )
        if size1 == size2 and root1 != root2:
            raise ProofError(
                f"equal sizes {size1} but root1 {root1.hex()} differs from root2 {root2.hex()}",
                code="root_mismatch",
            )
        return

    # The proof is an inclusion proof of leaf size1 - 1 in the new tree, whose lowest
    # `shift` levels are replaced by the perfect subtree ending at size1 (the seed).
    last = size1 - 1
    inner = (last ^ (size2 - 1)).bit_length()
    shift = (size1 & -size1).bit_length() - 1
    border = (last >> inner).bit_count()
    seeded = size1 != 1 << shift  # a power-of-two old tree is its own seed: root1
    need = int(seeded) + inner - shift + border
    if len(hashes) != need:
        raise ProofError(
            f"consistency proof has {len(hashes)} hashes, a proof from size {size1} "
            f"to size {size2} needs {need}",
            code="wrong_proof_length",
        )
    sha = _sha256
    prefix = _NODE_PREFIX
    pos = 0
    if seeded:
        old = new = hashes[0]
        pos = 1
    else:
        old = new = root1
    for level in range(shift, inner):
        h = hashes[pos]
        pos += 1
        if (last >> level) & 1:
            old = sha(prefix + h + old).digest()
            new = sha(prefix + h + new).digest()
        else:
            new = sha(prefix + new + h).digest()
    for h in hashes[pos:]:
        old = sha(prefix + h + old).digest()
        new = sha(prefix + h + new).digest()
    if old != root1:
        raise _root_mismatch(old, root1, "root1_mismatch", "root1")
    if new != root2:
        raise _root_mismatch(new, root2, "root2_mismatch", "root2")


# --------------------------------------------------------------------------- multi-inclusion


def root_from_multi_inclusion(size: int, leaves: Mapping[int, bytes], proof: Sequence[bytes]) -> bytes:
    """The root implied by a multi-inclusion proof of ``leaves`` (index -> leaf hash)
    in a tree of ``size``; every proof hash must be used exactly once.

    O(m log n) for m leaves: a depth-first walk over the sorted indices (bisect to
    split them), with straight-line loops for ranges holding one or all leaves.
    """
    size = _check_size(size)
    if not isinstance(leaves, Mapping):
        raise ProofError(
            f"leaves must be a mapping index -> leaf hash, got {type(leaves).__name__}", code="bad_type"
        )
    idx = _sorted_index_set(leaves.keys(), size)
    values = [leaves[i] for i in idx]
    if not set(map(type, values)) <= {bytes} or not set(map(len, values)) <= {HASH_SIZE}:
        for i, h in zip(idx, values, strict=True):
            _check_hash(h, f"leaf hash of index {i}")
    hashes = _check_hashes(proof, "proof hash")
    total = len(hashes)
    pos = 0
    sha = _sha256
    prefix = _NODE_PREFIX

    def walk(lo: int, hi: int, a: int, b: int) -> bytes:
        nonlocal pos
        n = b - a
        if n == 0:
            if pos >= total:
                raise _too_short(size, idx, total)
            pos += 1
            return hashes[pos - 1]
        if n == 1:
            # Inside [lo, hi) the proof lists the left siblings top-down, then the
            # right siblings bottom-up; walk them from the leaf upwards.
            offset = idx[a] - lo
            inner = (offset ^ (hi - lo - 1)).bit_length()
            n_left = offset.bit_count()
            n_right = inner - (offset & ((1 << inner) - 1)).bit_count()
            start = pos
            pos += n_left + n_right
            if pos > total:
                raise _too_short(size, idx, total)
            left = start + n_left - 1
            right = start + n_left
            r = values[a]
            for level in range(inner):
                if (offset >> level) & 1:
                    r = sha(prefix + hashes[left] + r).digest()
                    left -= 1
                else:
                    r = sha(prefix + r + hashes[right]).digest()
                    right += 1
            while left >= start:
                r = sha(prefix + hashes[left] + r).digest()
                left -= 1
            return r
        if n == hi - lo:
            return _mth(values[a:b])
        mid = lo + _largest_power_below(hi - lo)
        c = bisect_left(idx, mid, a, b)
        return sha(prefix + walk(lo, mid, a, c) + walk(mid, hi, c, b)).digest()

    root = walk(0, size, 0, len(idx))
    if pos != total:
        raise ProofError(
            f"multi-inclusion proof has {total - pos} proof hashes left over "
            f"({total} given, {pos} needed for {len(idx)} leaves in a tree of {size})",
            code="proof_hashes_left_over",
        )
    return root


def _too_short(size: int, idx: list[int], total: int) -> ProofError:
    need = len(_multi_ranges(idx, size))
    return ProofError(
        f"multi-inclusion proof is too short: it has {total} hashes, "
        f"{len(idx)} leaves in a tree of {size} need {need}",
        code="proof_too_short",
    )


def verify_multi_inclusion(
    size: int, leaves: Mapping[int, bytes], proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``proof`` proves all ``leaves`` (index -> leaf hash) in the tree of
    ``size`` leaves with ``root``; raise :class:`ProofError` otherwise."""
    _check_hash(root, "root")
    calculated = root_from_multi_inclusion(size, leaves, proof)
    if calculated != root:
        raise _root_mismatch(calculated, root)
