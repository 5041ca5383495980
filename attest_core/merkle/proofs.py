"""Proof generation: plans of the stored nodes a proof needs, and proofs from leaf hashes.

See :mod:`attest_core.merkle` for the tree, the proofs and the error codes.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from attest_core.errors import ProofError
from attest_core.merkle.hashing import (
    HASH_SIZE,
    _check_hashes,
    _check_index,
    _check_int,
    _check_size,
    _largest_power_below,
    _mth,
)
from attest_core.merkle.tree import Node, _fold, _is_tree_range, _lookup, _perfect_nodes

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
