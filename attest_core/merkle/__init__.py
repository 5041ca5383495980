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

from attest_core.merkle.hashing import (
    EMPTY_ROOT,
    HASH_SIZE,
    MAX_TREE_SIZE,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
)
from attest_core.merkle.proofs import (
    ProofPlan,
    consistency_plan,
    consistency_proof,
    inclusion_plan,
    inclusion_proof,
    multi_inclusion_plan,
    multi_inclusion_proof,
)
from attest_core.merkle.tree import CompactRange, Node, frontier_nodes, perfect_nodes, range_hash
from attest_core.merkle.verify import (
    root_from_inclusion_proof,
    root_from_multi_inclusion,
    verify_consistency,
    verify_inclusion,
    verify_multi_inclusion,
)

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
