"""Merkle trees for the contract tests, built with attest_core.merkle (the gateway's own maths)."""

from __future__ import annotations

from attest_core.merkle import (
    Node,
    consistency_plan,
    consistency_proof,
    leaf_hash,
    node_hash,
    range_hash,
    root_from_leaf_hashes,
)

LEAVES = [leaf_hash(f"entry {i}".encode()) for i in range(64)]


def root(size: int) -> bytes:
    """The root of the tree of the first ``size`` of :data:`LEAVES`."""
    return root_from_leaf_hashes(LEAVES[:size])


def proof(size1: int, size2: int) -> list[bytes]:
    """The RFC 9162 consistency proof between two trees of :data:`LEAVES`."""
    return consistency_proof(size1, size2, LEAVES)


class UniformTree:
    """A tree of any size up to 2**64 - 1 whose leaves all hash alike, so every perfect subtree
    of a level has the same hash: its roots and proofs take O(log n) hashes, however large."""

    def __init__(self) -> None:
        self.levels = [leaf_hash(b"uniform leaf")]
        for _ in range(64):
            self.levels.append(node_hash(self.levels[-1], self.levels[-1]))

    def _hashes(self, nodes: tuple[Node, ...] | list[Node]) -> dict[Node, bytes]:
        return {n: self.levels[n.level] for n in nodes}

    def root(self, size: int) -> bytes:
        from attest_core.merkle import perfect_nodes

        return range_hash(0, size, self._hashes(perfect_nodes(0, size)))

    def proof(self, size1: int, size2: int) -> list[bytes]:
        plan = consistency_plan(size1, size2)
        return plan.assemble(self._hashes(plan.nodes))
