"""Proof verification: inclusion, consistency and multi-leaf inclusion.

See :mod:`attest_core.merkle` for the tree, the proofs and the error codes.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence

from attest_core.errors import ProofError
from attest_core.merkle.hashing import (
    _NODE_PREFIX,
    EMPTY_ROOT,
    HASH_SIZE,
    _check_hash,
    _check_hashes,
    _check_index,
    _check_size,
    _largest_power_below,
    _mth,
    _sha256,
)
from attest_core.merkle.proofs import _check_consistency_sizes, _multi_ranges, _sorted_index_set

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
