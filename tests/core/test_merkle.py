"""Tests of attest_core.merkle: RFC 6962 / RFC 9162 hashes, storage plans and proofs.

Known answers come from the RFC 6962 8-leaf test tree (transparency-dev/merkle
``testonly/constants.go`` and ``proof/verify_test.go``, certificate-transparency
``merkle_tree_test.cc``) and from the transparency-dev JSON probes copied to
``tests/data/merkle-vectors``.  Property tests check everything against a small
independent reference implementation written straight from RFC 9162 §2.1.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import os
import random
from bisect import bisect_left
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from attest_core.errors import ProofError, VerificationError
from attest_core.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MAX_TREE_SIZE,
    CompactRange,
    Node,
    ProofPlan,
    consistency_plan,
    consistency_proof,
    frontier_nodes,
    inclusion_plan,
    inclusion_proof,
    leaf_hash,
    multi_inclusion_plan,
    multi_inclusion_proof,
    node_hash,
    perfect_nodes,
    range_hash,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    root_from_multi_inclusion,
    verify_consistency,
    verify_inclusion,
    verify_multi_inclusion,
)

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def h(hex_string: str) -> bytes:
    return bytes.fromhex(hex_string)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# --------------------------------------------------------------------------- reference implementation
# Written directly from RFC 9162 §2.1 (recursive, slow, obviously right).


def ref_split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return sha256(b"")
    if len(d) == 1:
        return d[0]
    k = ref_split(len(d))
    return sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_multi_root(size: int, leaves: dict[int, bytes], proof: list[bytes]) -> bytes:
    """The multi-inclusion definition, literally; raises AssertionError on a bad length."""
    it = iter(proof)
    proven = sorted(leaves)

    def walk(lo: int, hi: int) -> bytes:
        a = bisect_left(proven, lo)
        if a == len(proven) or proven[a] >= hi:
            return next(it)
        if hi - lo == 1:
            return leaves[lo]
        mid = lo + ref_split(hi - lo)
        return sha256(b"\x01" + walk(lo, mid) + walk(mid, hi))

    root = walk(0, size)
    assert next(it, None) is None
    return root


# --------------------------------------------------------------------------- the RFC 6962 test tree

RFC_LEAVES = [
    h(""),
    h("00"),
    h("10"),
    h("2021"),
    h("3031"),
    h("40414243"),
    h("5051525354555657"),
    h("606162636465666768696a6b6c6d6e6f"),
]
RFC_LEAF_HASHES = [leaf_hash(d) for d in RFC_LEAVES]

# testonly/constants.go RootHashes(), indexed by tree size.
RFC_ROOTS = [
    h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]

# testonly/constants.go NodeHashes(): [level][index].
RFC_NODES = [
    [
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
        h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
        h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
        h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
    ],
    [
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
    ],
    [
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ],
    [h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]

# proof/verify_test.go inclusionProofs, with its 1-based leaf numbers made 0-based.
RFC_INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        5,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        1,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]

# proof/verify_test.go consistencyProofs.
RFC_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]

SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")


def rfc_store() -> dict[Node, bytes]:
    store: dict[Node, bytes] = {}
    cr = CompactRange()
    for lh in RFC_LEAF_HASHES:
        store.update(cr.append(lh))
    return store


# --------------------------------------------------------------------------- a bigger random tree

MAXN = 2500
LEAVES = [leaf_hash(b"reading %d" % i) for i in range(MAXN)]
STORE: dict[Node, bytes] = {}
ROOTS: list[bytes] = [EMPTY_ROOT]
_cr = CompactRange()
for _lh in LEAVES:
    STORE.update(_cr.append(_lh))
    ROOTS.append(_cr.root())
del _cr, _lh


def proof_code(fn: Callable[[], object]) -> str:
    with pytest.raises(ProofError) as info:
        fn()
    return info.value.code


@st.composite
def size_and_index(draw: st.DrawFn, max_size: int = MAXN) -> tuple[int, int]:
    n = draw(st.integers(1, max_size))
    return n, draw(st.integers(0, n - 1))


@st.composite
def size_and_indices(draw: st.DrawFn) -> tuple[int, list[int]]:
    n = draw(st.integers(1, MAXN))
    kind = draw(st.sampled_from(["sparse", "block", "stride", "all"]))
    if kind == "sparse":
        idx = sorted(draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=min(n, 60))))
    elif kind == "block":
        lo = draw(st.integers(0, n - 1))
        hi = draw(st.integers(lo + 1, min(n, lo + 300)))
        idx = list(range(lo, hi))
    elif kind == "stride":
        start = draw(st.integers(0, n - 1))
        idx = list(range(start, n, draw(st.integers(1, 40))))
    else:
        idx = list(range(n))
    return n, idx


def flip_bit(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8 % len(b)] ^= 1 << (bit % 8)
    return bytes(b)


# --------------------------------------------------------------------------- hashing


def test_hash_constants() -> None:
    assert HASH_SIZE == 32
    assert EMPTY_ROOT == sha256(b"") == RFC_ROOTS[0]
    assert root_from_leaf_hashes([]) == EMPTY_ROOT
    assert MAX_TREE_SIZE == 2**64 - 1


def test_leaf_and_node_hash_domain_separation() -> None:
    assert leaf_hash(b"") == sha256(b"\x00") == RFC_NODES[0][0]
    assert leaf_hash(b"abc") == sha256(b"\x00abc")
    assert leaf_hash(bytearray(b"abc")) == leaf_hash(b"abc")
    a, b = LEAVES[0], LEAVES[1]
    assert node_hash(a, b) == sha256(b"\x01" + a + b)
    assert node_hash(a, b) != node_hash(b, a)
    assert leaf_hash(a + b) != node_hash(a, b)


@pytest.mark.parametrize("size", range(9))
def test_rfc_roots(size: int) -> None:
    assert root_from_leaf_hashes(RFC_LEAF_HASHES[:size]) == RFC_ROOTS[size]
    assert ref_mth(RFC_LEAF_HASHES[:size]) == RFC_ROOTS[size]


def test_rfc_node_hashes_are_what_compact_range_stores() -> None:
    expected = {Node(level, i): v for level, row in enumerate(RFC_NODES) for i, v in enumerate(row)}
    assert rfc_store() == expected


def test_rfc_frontiers() -> None:
    # testonly/constants.go CompactTrees(): the frontier after each size.
    nh = RFC_NODES
    expected: list[list[bytes]] = [
        [],
        [nh[0][0]],
        [nh[1][0]],
        [nh[1][0], nh[0][2]],
        [nh[2][0]],
        [nh[2][0], nh[0][4]],
        [nh[2][0], nh[1][2]],
        [nh[2][0], nh[1][2], nh[0][6]],
        [nh[3][0]],
    ]
    cr = CompactRange()
    assert list(cr.hashes) == expected[0]
    for size in range(1, 9):
        cr.append(RFC_LEAF_HASHES[size - 1])
        assert cr.size == size
        assert list(cr.hashes) == expected[size]
        assert [n for n, _ in cr.frontier()] == frontier_nodes(size)
        assert cr.root() == RFC_ROOTS[size]


def test_roots_match_reference_for_all_small_sizes() -> None:
    for n in range(301):
        assert root_from_leaf_hashes(LEAVES[:n]) == ref_mth(LEAVES[:n]) == ROOTS[n]


@FEW
@given(st.integers(0, MAXN))
def test_root_from_leaf_hashes_matches_reference(n: int) -> None:
    assert root_from_leaf_hashes(LEAVES[:n]) == ref_mth(LEAVES[:n]) == ROOTS[n]


def test_root_from_leaf_hashes_accepts_any_sequence() -> None:
    assert root_from_leaf_hashes(tuple(LEAVES[:5])) == ROOTS[5]


# --------------------------------------------------------------------------- RFC known proofs


@pytest.mark.parametrize(("index", "size", "proof"), RFC_INCLUSION)
def test_rfc_inclusion_proofs(index: int, size: int, proof: list[bytes]) -> None:
    lh = RFC_LEAF_HASHES[index]
    root = RFC_ROOTS[size]
    assert inclusion_proof(index, size, RFC_LEAF_HASHES) == proof
    assert inclusion_plan(index, size).assemble(rfc_store()) == proof
    assert root_from_inclusion_proof(index, size, lh, proof) == root
    verify_inclusion(index, size, lh, proof, root)

    # verify_test.go corruptInclusionProof.
    probes: list[tuple[int, int, bytes, list[bytes], bytes]] = [
        (index - 1, size, lh, proof, root),
        (index + 1, size, lh, proof, root),
        (index ^ 2, size, lh, proof, root),
        (index, size * 2, lh, proof, root),
        (index, size // 2, lh, proof, root),
        (index, size, b"WrongLeaf", proof, root),
        (index, size, lh, proof, EMPTY_ROOT),
        (index, size, lh, proof, SOME_HASH),
        (index, size, lh, [*proof, b""], root),
        (index, size, lh, [*proof, root], root),
        (index, size, lh, [b"", *proof], root),
        (index, size, lh, [root, *proof], root),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = flip_bit(wrong[i], 3)
        probes.append((index, size, lh, wrong, root))
    if proof:
        probes.append((index, size, lh, proof[:-1], root))
    if len(proof) > 1:
        probes.append((index, size, lh, [proof[0], SOME_HASH, *proof[1:]], root))
    for i, n, leaf, p, r in probes:
        with pytest.raises(ProofError):
            verify_inclusion(i, n, leaf, p, r)


@pytest.mark.parametrize(("size1", "size2", "proof"), RFC_CONSISTENCY)
def test_rfc_consistency_proofs(size1: int, size2: int, proof: list[bytes]) -> None:
    root1, root2 = RFC_ROOTS[size1], RFC_ROOTS[size2]
    assert consistency_proof(size1, size2, RFC_LEAF_HASHES) == proof
    assert consistency_plan(size1, size2).assemble(rfc_store()) == proof
    verify_consistency(size1, size2, root1, root2, proof)
    if not proof:
        return
    # verify_test.go corruptConsistencyProof.
    probes: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
        (size1 - 1, size2, root1, root2, proof),
        (size1 + 1, size2, root1, root2, proof),
        (size1 ^ 2, size2, root1, root2, proof),
        (size1, size2 * 2, root1, root2, proof),
        (size1, size2 // 2, root1, root2, proof),
        (size1, size2, b"WrongRoot", root2, proof),
        (size1, size2, root1, b"WrongRoot", proof),
        (size1, size2, SOME_HASH, root2, proof),
        (size1, size2, root1, SOME_HASH, proof),
        (size1, size2, root2, root1, proof),
        (size1, size2, root1, root2, []),
        (size1, size2, root1, root2, [*proof, b""]),
        (size1, size2, root1, root2, [*proof, root1]),
        (size1, size2, root1, root2, [*proof, root2]),
        (size1, size2, root1, root2, [b"", *proof]),
        (size1, size2, root1, root2, [root1, *proof]),
        (size1, size2, root1, root2, [root2, *proof]),
        (size1, size2, root1, root2, [proof[0], *proof]),
        (size1, size2, root1, root2, proof[:-1]),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = flip_bit(wrong[i], 4)
        probes.append((size1, size2, root1, root2, wrong))
    for s1, s2, r1, r2, p in probes:
        with pytest.raises(ProofError):
            verify_consistency(s1, s2, r1, r2, p)


def test_rfc_tree_all_inclusion_and_consistency_proofs() -> None:
    store = rfc_store()
    for size in range(1, 9):
        for index in range(size):
            proof = inclusion_proof(index, size, RFC_LEAF_HASHES)
            assert inclusion_plan(index, size).assemble(store) == proof
            verify_inclusion(index, size, RFC_LEAF_HASHES[index], proof, RFC_ROOTS[size])
        for size1 in range(size + 1):
            proof = consistency_proof(size1, size, RFC_LEAF_HASHES)
            assert consistency_plan(size1, size).assemble(store) == proof
            verify_consistency(size1, size, RFC_ROOTS[size1], RFC_ROOTS[size], proof)


# --------------------------------------------------------------------------- transparency-dev vectors

VECTORS = Path(__file__).resolve().parent.parent / "data" / "merkle-vectors"
INCLUSION_FILES = sorted((VECTORS / "inclusion").rglob("*.json"))
CONSISTENCY_FILES = sorted((VECTORS / "consistency").rglob("*.json"))


def vector_id(path: Path) -> str:
    return path.relative_to(VECTORS).as_posix()


def b64(value: str) -> bytes:
    return base64.b64decode(value)


def load_vector(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    data["proof"] = [b64(p) for p in data["proof"] or []]
    return data


# Consistency probes whose outcome is decided by our own documented rules rather than
# by transparency-dev's.  Every probe with size1 == 0 is listed (our size-0 rule: accept
# iff the proof is empty and root1 == EMPTY_ROOT), plus the one probe whose wantErr is
# false although its roots are the 12-byte strings "don't care 2": we require every hash
# to be 32 bytes.  The value is the ProofError code we raise.
CONSISTENCY_OWN_RULES = {
    # size1 == 0 with a non-empty proof.
    "consistency/1/size1-sub-@1.json": "wrong_proof_length",  # 0 -> 8, 3 hashes
    "consistency/3/size1-XOR-@2.json": "wrong_proof_length",  # 0 -> 5, 2 hashes
    "consistency/additional/consistency-check-on-empty-tree-size1-is-zero-is-useless.json": (
        "wrong_proof_length"  # 0 -> 1, proof [EMPTY_ROOT]
    ),
    "consistency/additional/sizes-match-but-proof-is-not-empty-and-sizes-are-zero.json": (
        "wrong_proof_length"  # 0 -> 0, proof [EMPTY_ROOT]
    ),
    # size1 == 0 with a 12-byte root ("don't care"): rejected before the size-0 rule.
    "consistency/additional/roots-do-not-match-and-sizes-are-zero.json": "bad_hash_length",
    "consistency/additional/size1-is-zero-and-does-not-equal-size2.json": "bad_hash_length",
    # root1 is EMPTY_ROOT and the proof empty: with a 32-byte root2 this would be
    # accepted by our size-0 rule (see test_consistency_from_size_zero).
    "consistency/additional/size1-is-zero-and-size2-is-not-zero.json": "bad_hash_length",
    "consistency/additional/sizes-are-equal-zero-and-proof-is-empty.json": "bad_hash_length",
    "consistency/additional/sizes-are-equal-zero-but-roots-are-not.json": "bad_hash_length",
    # wantErr false in the file, but root1 == root2 == b"don't care 2" (12 bytes).
    "consistency/additional/sizes-are-equal-one-and-proof-is-empty.json": "bad_hash_length",
}


def test_vector_files_present() -> None:
    assert len(INCLUSION_FILES) == 98
    assert len(CONSISTENCY_FILES) == 98
    assert (VECTORS / "LICENSE").is_file()
    assert (VECTORS / "README.md").is_file()


def test_own_rule_list_is_exactly_the_size_zero_probes_and_the_short_roots() -> None:
    listed = set(CONSISTENCY_OWN_RULES)
    size_zero = {vector_id(p) for p in CONSISTENCY_FILES if load_vector(p)["size1"] == 0}
    assert size_zero < listed
    assert listed - size_zero == {"consistency/additional/sizes-are-equal-one-and-proof-is-empty.json"}


def test_vector_leaf_indices_are_zero_based() -> None:
    # The happy paths' leaf hashes are those of the RFC test leaves at leafIdx itself.
    happy = [load_vector(p) for p in INCLUSION_FILES if p.name == "happy-path.json"]
    assert len(happy) == 5
    for v in happy:
        assert b64(v["leafHash"]) == RFC_LEAF_HASHES[v["leafIdx"]]
        assert b64(v["root"]) == RFC_ROOTS[v["treeSize"]]


@pytest.mark.parametrize("path", INCLUSION_FILES, ids=vector_id)
def test_inclusion_vector(path: Path) -> None:
    v = load_vector(path)
    args = (v["leafIdx"], v["treeSize"], b64(v["leafHash"]), v["proof"], b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY_FILES, ids=vector_id)
def test_consistency_vector(path: Path) -> None:
    v = load_vector(path)
    args = (v["size1"], v["size2"], b64(v["root1"]), b64(v["root2"]), v["proof"])
    own = CONSISTENCY_OWN_RULES.get(vector_id(path))
    if own is not None:
        assert proof_code(lambda: verify_consistency(*args)) == own
    elif v["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


# --------------------------------------------------------------------------- size-0 and size rules


def test_consistency_from_size_zero() -> None:
    # Accepted: empty proof and root1 == EMPTY_ROOT, whatever (32-byte) root2 is.
    for size2 in (1, 2, 7, 8, MAXN):
        verify_consistency(0, size2, EMPTY_ROOT, ROOTS[size2], [])
        verify_consistency(0, size2, EMPTY_ROOT, SOME_HASH, [])
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert consistency_proof(0, 5, LEAVES) == []
    assert consistency_plan(0, 5).ranges == ()
    assert consistency_plan(0, 0).nodes == ()
    # Rejected: anything else.
    assert proof_code(lambda: verify_consistency(0, 5, SOME_HASH, ROOTS[5], [])) == "root1_mismatch"
    assert proof_code(lambda: verify_consistency(0, 5, ROOTS[5], ROOTS[5], [])) == "root1_mismatch"
    assert proof_code(lambda: verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [SOME_HASH])) == (
        "wrong_proof_length"
    )
    assert proof_code(lambda: verify_consistency(0, 0, SOME_HASH, SOME_HASH, [])) == "root1_mismatch"
    assert proof_code(lambda: verify_consistency(0, 0, EMPTY_ROOT, SOME_HASH, [])) == "root_mismatch"
    assert proof_code(lambda: verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])) == (
        "wrong_proof_length"
    )


def test_consistency_equal_sizes_and_order() -> None:
    verify_consistency(5, 5, ROOTS[5], ROOTS[5], [])
    assert consistency_proof(5, 5, LEAVES) == []
    assert proof_code(lambda: verify_consistency(5, 5, ROOTS[5], ROOTS[6], [])) == "root_mismatch"
    assert proof_code(lambda: verify_consistency(5, 5, ROOTS[5], ROOTS[5], [ROOTS[5]])) == (
        "wrong_proof_length"
    )
    assert proof_code(lambda: verify_consistency(6, 5, ROOTS[6], ROOTS[5], [])) == "size_order"
    assert proof_code(lambda: consistency_plan(6, 5)) == "size_order"
    assert proof_code(lambda: consistency_proof(6, 5, LEAVES)) == "size_order"


def test_error_messages_are_precise() -> None:
    proof = inclusion_proof(5, 8, RFC_LEAF_HASHES)
    with pytest.raises(ProofError) as info:
        verify_inclusion(5, 8, RFC_LEAF_HASHES[5], [*proof, SOME_HASH], RFC_ROOTS[8])
    assert str(info.value) == "inclusion proof has 4 hashes, a proof for index 5 in a tree of 8 needs 3"
    assert info.value.code == "wrong_proof_length"
    assert isinstance(info.value, VerificationError)

    with pytest.raises(ProofError) as info:
        verify_inclusion(5, 8, RFC_LEAF_HASHES[5], proof, SOME_HASH)
    assert str(info.value) == (
        f"calculated root {RFC_ROOTS[8].hex()} does not match expected root {SOME_HASH.hex()}"
    )
    assert info.value.code == "root_mismatch"

    with pytest.raises(ProofError) as info:
        verify_inclusion(8, 8, RFC_LEAF_HASHES[5], proof, RFC_ROOTS[8])
    assert info.value.code == "index_out_of_range"
    assert "8" in str(info.value)

    with pytest.raises(ProofError) as info:
        verify_inclusion(5, 8, RFC_LEAF_HASHES[5], [proof[0][:31], *proof[1:]], RFC_ROOTS[8])
    assert info.value.code == "bad_hash_length"
    assert str(info.value) == "proof hash 0 is 31 bytes, must be 32"

    cproof = consistency_proof(6, 8, RFC_LEAF_HASHES)
    with pytest.raises(ProofError) as info:
        verify_consistency(6, 8, RFC_ROOTS[6], RFC_ROOTS[8], cproof[:-1])
    assert str(info.value) == "consistency proof has 2 hashes, a proof from size 6 to size 8 needs 3"
    with pytest.raises(ProofError) as info:
        verify_consistency(6, 8, RFC_ROOTS[6], RFC_ROOTS[8], [*cproof, SOME_HASH])
    assert str(info.value) == "consistency proof has 4 hashes, a proof from size 6 to size 8 needs 3"
    assert proof_code(lambda: verify_consistency(4, 8, RFC_ROOTS[4], RFC_ROOTS[8], [])) == (
        "wrong_proof_length"
    )
    assert proof_code(lambda: verify_consistency(6, 8, SOME_HASH, RFC_ROOTS[8], cproof)) == "root1_mismatch"
    assert proof_code(lambda: verify_consistency(6, 8, RFC_ROOTS[6], SOME_HASH, cproof)) == "root2_mismatch"


def test_inclusion_in_single_leaf_and_empty_trees() -> None:
    verify_inclusion(0, 1, LEAVES[0], [], LEAVES[0])
    assert proof_code(lambda: verify_inclusion(0, 1, LEAVES[0], [], LEAVES[1])) == "root_mismatch"
    assert proof_code(lambda: verify_inclusion(0, 0, LEAVES[0], [], EMPTY_ROOT)) == "index_out_of_range"
    assert proof_code(lambda: inclusion_plan(0, 0)) == "index_out_of_range"
    assert proof_code(lambda: inclusion_proof(0, 0, [])) == "index_out_of_range"


# --------------------------------------------------------------------------- argument validation

BAD_INTS: list[object] = [-1, 2**64, True, 1.0, "1", None, b"\x01"]


@pytest.mark.parametrize("bad", BAD_INTS, ids=repr)
def test_bad_sizes_and_indices(bad: object) -> None:
    expected = {"bad_type", "bad_size", "index_out_of_range"}
    lh, root = LEAVES[0], ROOTS[1]
    calls: list[Callable[[], object]] = [
        lambda: verify_inclusion(bad, 4, lh, [], root),  # type: ignore[arg-type]
        lambda: verify_inclusion(0, bad, lh, [], root),  # type: ignore[arg-type]
        lambda: root_from_inclusion_proof(bad, 4, lh, []),  # type: ignore[arg-type]
        lambda: verify_consistency(bad, 4, root, root, []),  # type: ignore[arg-type]
        lambda: verify_consistency(1, bad, root, root, []),  # type: ignore[arg-type]
        lambda: inclusion_plan(bad, 4),  # type: ignore[arg-type]
        lambda: inclusion_plan(0, bad),  # type: ignore[arg-type]
        lambda: consistency_plan(bad, 4),  # type: ignore[arg-type]
        lambda: multi_inclusion_plan([bad], 4),  # type: ignore[list-item]
        lambda: multi_inclusion_plan([0], bad),  # type: ignore[arg-type]
        lambda: verify_multi_inclusion(bad, {0: lh}, [], root),  # type: ignore[arg-type]
        lambda: verify_multi_inclusion(4, {bad: lh}, [], root),  # type: ignore[dict-item]
        lambda: inclusion_proof(bad, 4, LEAVES),  # type: ignore[arg-type]
        lambda: consistency_proof(1, bad, LEAVES),  # type: ignore[arg-type]
        lambda: multi_inclusion_proof([bad], 4, LEAVES),  # type: ignore[list-item]
        lambda: frontier_nodes(bad),  # type: ignore[arg-type]
        lambda: perfect_nodes(bad, 4),  # type: ignore[arg-type]
        lambda: range_hash(0, bad, STORE),  # type: ignore[arg-type]
        lambda: CompactRange.from_nodes(bad, STORE),  # type: ignore[arg-type]
    ]
    for call in calls:
        assert proof_code(call) in expected


BAD_HASHES: list[object] = [b"", b"\x00" * 31, b"\x00" * 33, bytearray(32), "a" * 32, None, 5]


@pytest.mark.parametrize("bad", BAD_HASHES, ids=repr)
def test_bad_hashes(bad: object) -> None:
    expected = {"bad_type", "bad_hash_length"}
    p = inclusion_proof(1, 4, LEAVES)
    calls: list[Callable[[], object]] = [
        lambda: verify_inclusion(1, 4, bad, p, ROOTS[4]),  # type: ignore[arg-type]
        lambda: verify_inclusion(1, 4, LEAVES[1], p, bad),  # type: ignore[arg-type]
        lambda: verify_inclusion(1, 4, LEAVES[1], [bad, *p[1:]], ROOTS[4]),  # type: ignore[list-item]
        lambda: verify_consistency(1, 4, bad, ROOTS[4], p),  # type: ignore[arg-type]
        lambda: verify_consistency(1, 4, ROOTS[1], bad, p),  # type: ignore[arg-type]
        lambda: verify_consistency(1, 4, ROOTS[1], ROOTS[4], [bad]),  # type: ignore[list-item]
        lambda: verify_multi_inclusion(4, {1: bad}, p, ROOTS[4]),  # type: ignore[dict-item]
        lambda: verify_multi_inclusion(4, {1: LEAVES[1]}, [bad], ROOTS[4]),  # type: ignore[list-item]
        lambda: verify_multi_inclusion(4, {1: LEAVES[1]}, p, bad),  # type: ignore[arg-type]
        lambda: root_from_leaf_hashes([LEAVES[0], bad]),  # type: ignore[list-item]
        lambda: node_hash(bad, LEAVES[0]),  # type: ignore[arg-type]
        lambda: node_hash(LEAVES[0], bad),  # type: ignore[arg-type]
        lambda: CompactRange().append(bad),  # type: ignore[arg-type]
        lambda: inclusion_plan(1, 4).assemble({**STORE, Node(0, 0): bad}),  # type: ignore[dict-item]
        lambda: range_hash(0, 3, {Node(1, 0): STORE[Node(1, 0)], Node(0, 2): bad}),  # type: ignore[dict-item]
        lambda: CompactRange.from_nodes(1, {Node(0, 0): bad}),  # type: ignore[dict-item]
        lambda: inclusion_proof(0, 2, [LEAVES[0], bad]),  # type: ignore[list-item]
    ]
    for call in calls:
        assert proof_code(call) in expected


@pytest.mark.parametrize(
    "bad", [b"\x00" * 64, "proof", None, 7, iter([LEAVES[0]]), {LEAVES[0]}], ids=lambda b: type(b).__name__
)
def test_proof_must_be_a_sequence_of_hashes(bad: object) -> None:
    assert proof_code(lambda: verify_inclusion(1, 2, LEAVES[1], bad, ROOTS[2])) == "bad_type"  # type: ignore[arg-type]
    assert proof_code(lambda: verify_consistency(1, 2, ROOTS[1], ROOTS[2], bad)) == "bad_type"  # type: ignore[arg-type]
    assert proof_code(lambda: verify_multi_inclusion(2, {1: LEAVES[1]}, bad, ROOTS[2])) == "bad_type"  # type: ignore[arg-type]
    assert proof_code(lambda: root_from_leaf_hashes(bad)) == "bad_type"  # type: ignore[arg-type]


def test_non_mapping_arguments() -> None:
    assert proof_code(lambda: verify_multi_inclusion(2, [LEAVES[0]], [], ROOTS[2])) == "bad_type"  # type: ignore[arg-type]
    assert proof_code(lambda: inclusion_plan(0, 2).assemble([])) == "bad_type"  # type: ignore[arg-type]
    assert proof_code(lambda: range_hash(0, 2, [])) == "bad_type"  # type: ignore[arg-type]
    assert proof_code(lambda: CompactRange.from_nodes(2, [])) == "bad_type"  # type: ignore[arg-type]
    assert proof_code(lambda: multi_inclusion_plan("01", 4)) == "bad_type"  # type: ignore[arg-type]
    assert proof_code(lambda: multi_inclusion_plan(5, 4)) == "bad_type"  # type: ignore[arg-type]
    assert proof_code(lambda: leaf_hash("text")) == "bad_type"  # type: ignore[arg-type]
    assert proof_code(lambda: inclusion_proof(0, 4, LEAVES[:3])) == "not_enough_leaves"
    assert proof_code(lambda: consistency_proof(1, 4, LEAVES[:3])) == "not_enough_leaves"
    assert proof_code(lambda: multi_inclusion_proof([0], 4, LEAVES[:3])) == "not_enough_leaves"


JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.binary(min_size=32, max_size=32),
    st.lists(st.binary(min_size=31, max_size=33), max_size=4),
    st.lists(st.one_of(st.integers(), st.text(), st.none()), max_size=3),
    st.dictionaries(st.integers(-3, 10), st.binary(min_size=31, max_size=33), max_size=3),
    st.dictionaries(st.text(max_size=2), st.binary(max_size=2), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(JUNK, min_size=5, max_size=5))
def test_junk_arguments_only_ever_raise_proof_error(args: list[Any]) -> None:
    a, b, c, d, e = args
    calls: list[Callable[[], object]] = [
        lambda: verify_inclusion(a, b, c, d, e),
        lambda: root_from_inclusion_proof(a, b, c, d),
        lambda: verify_consistency(a, b, c, d, e),
        lambda: verify_multi_inclusion(a, b, c, d),
        lambda: root_from_multi_inclusion(a, b, c),
        lambda: inclusion_plan(a, b),
        lambda: consistency_plan(a, b),
        lambda: multi_inclusion_plan(a, b),
        lambda: perfect_nodes(a, b),
        lambda: range_hash(a, b, c),
        lambda: frontier_nodes(a),
        lambda: CompactRange.from_nodes(a, b),
        lambda: root_from_leaf_hashes(a),
        lambda: node_hash(a, b),
        lambda: inclusion_proof(a, b, c),
        lambda: consistency_proof(a, b, c),
        lambda: multi_inclusion_proof(a, b, c),
    ]
    for call in calls:
        with contextlib.suppress(ProofError):
            call()


# --------------------------------------------------------------------------- node addressing


def test_node_geometry() -> None:
    n = Node(3, 2)
    assert (n.level, n.index, n.start, n.end) == (3, 2, 16, 24)
    assert n == (3, 2)
    assert {(3, 2): b"x"}[n] == b"x"


def test_perfect_nodes_examples() -> None:
    assert perfect_nodes(0, 0) == []
    assert perfect_nodes(5, 5) == []
    assert perfect_nodes(0, 1) == [Node(0, 0)]
    assert perfect_nodes(1, 4) == [Node(0, 1), Node(1, 1)]
    assert perfect_nodes(1, 2) == [Node(0, 1)]
    assert perfect_nodes(0, 8) == [Node(3, 0)]
    assert perfect_nodes(0, 7) == [Node(2, 0), Node(1, 2), Node(0, 6)]
    assert perfect_nodes(4, 7) == [Node(1, 2), Node(0, 6)]
    assert perfect_nodes(8, 13) == [Node(2, 2), Node(0, 12)]
    # Not a tree range, but still decomposed greedily into aligned subtrees.
    assert perfect_nodes(3, 13) == [Node(0, 3), Node(2, 1), Node(2, 2), Node(0, 12)]
    assert frontier_nodes(0) == []
    assert frontier_nodes(13) == [Node(3, 0), Node(2, 2), Node(0, 12)]
    assert proof_code(lambda: perfect_nodes(5, 4)) == "bad_range"


@PROPS
@given(
    st.one_of(st.integers(0, 64), st.integers(0, 2**40)), st.one_of(st.integers(0, 64), st.integers(0, 2**20))
)
def test_perfect_nodes_cover_range_with_maximal_aligned_subtrees(lo: int, width: int) -> None:
    hi = lo + width
    nodes = perfect_nodes(lo, hi)
    pos = lo
    for node in nodes:
        assert node.start == pos
        pos = node.end
    assert pos == hi
    for a, b in itertools.pairwise(nodes):
        # Two equal siblings would have been one node.
        assert not (a.level == b.level and a.index % 2 == 0)


@st.composite
def tree_range(draw: st.DrawFn, limit: int = MAXN) -> tuple[int, int]:
    width = draw(st.integers(1, limit))
    align = 1 << (width - 1).bit_length()
    slots = (limit - width) // align
    lo = draw(st.integers(0, slots)) * align
    return lo, lo + width


@PROPS
@given(tree_range())
def test_range_hash_of_tree_ranges(r: tuple[int, int]) -> None:
    lo, hi = r
    assert range_hash(lo, hi, STORE) == ref_mth(LEAVES[lo:hi])
    levels = [n.level for n in perfect_nodes(lo, hi)]
    assert levels == sorted(levels, reverse=True)
    assert len(set(levels)) == len(levels) == (hi - lo).bit_count()


def test_range_hash_rejects_non_tree_ranges_and_missing_nodes() -> None:
    assert range_hash(0, 8, rfc_store()) == RFC_ROOTS[8]
    assert range_hash(4, 7, rfc_store()) == ref_mth(RFC_LEAF_HASHES[4:7])
    for lo, hi in [(2, 5), (1, 3), (3, 3), (4, 2), (6, 9)]:
        with pytest.raises(ProofError) as info:
            range_hash(lo, hi, STORE)
        assert info.value.code == "bad_range"
    with pytest.raises(ProofError) as info:
        range_hash(0, 16, rfc_store())
    assert info.value.code == "missing_node"
    assert "level=4, index=0" in str(info.value)


# --------------------------------------------------------------------------- compact range


def test_compact_range_append_reports_completed_nodes() -> None:
    cr = CompactRange()
    assert cr.size == 0
    assert cr.root() == EMPTY_ROOT
    assert cr.append(LEAVES[0]) == [(Node(0, 0), LEAVES[0])]
    assert cr.append(LEAVES[1]) == [(Node(0, 1), LEAVES[1]), (Node(1, 0), STORE[Node(1, 0)])]
    assert cr.append(LEAVES[2]) == [(Node(0, 2), LEAVES[2])]
    created = cr.append(LEAVES[3])
    assert [n for n, _ in created] == [Node(0, 3), Node(1, 1), Node(2, 0)]
    assert all(STORE[n] == v for n, v in created)
    assert cr.root() == ROOTS[4]
    assert "size=4" in repr(cr)


def test_compact_range_matches_root_after_every_append() -> None:
    cr = CompactRange()
    store: dict[Node, bytes] = {}
    for i in range(600):
        created = cr.append(LEAVES[i])
        # Leaf i completes one node per trailing one bit of i, plus the leaf itself.
        assert len(created) == 1 + ((i + 1) & -(i + 1)).bit_length() - 1
        assert not store.keys() & {n for n, _ in created}
        store.update(created)
        assert cr.root() == root_from_leaf_hashes(LEAVES[: i + 1]) == ROOTS[i + 1]
    assert len(store) == sum(600 >> level for level in range(11))
    assert all(STORE[n] == v for n, v in store.items())


def test_compact_range_extend_and_copy() -> None:
    cr = CompactRange()
    created = cr.extend(LEAVES[:100])
    assert dict(created) == {n: v for n, v in STORE.items() if n.end <= 100}
    clone = cr.copy()
    clone.append(LEAVES[100])
    assert (cr.size, clone.size) == (100, 101)
    assert cr.root() == ROOTS[100]
    assert clone.root() == ROOTS[101]


@PROPS
@given(st.integers(0, MAXN - 1), st.integers(1, 200))
def test_compact_range_restore_and_continue(size: int, more: int) -> None:
    more = min(more, MAXN - size)
    needed = frontier_nodes(size)
    loaded = {n: STORE[n] for n in needed}
    cr = CompactRange.from_nodes(size, loaded)
    assert cr.size == size
    assert cr.root() == ROOTS[size]
    assert cr.frontier() == list(loaded.items())
    assert len(needed) == size.bit_count()
    for i in range(size, size + more):
        for node, value in cr.append(LEAVES[i]):
            assert STORE[node] == value
            assert node.end == i + 1
        assert cr.root() == ROOTS[i + 1]
    if needed:
        del loaded[needed[-1]]
        assert proof_code(lambda: CompactRange.from_nodes(size, loaded)) == "missing_node"


@FEW
@given(st.integers(1, MAXN))
def test_compact_range_root_equals_root_from_leaf_hashes(size: int) -> None:
    cr = CompactRange()
    cr.extend(LEAVES[:size])
    assert cr.root() == root_from_leaf_hashes(LEAVES[:size]) == ROOTS[size]


# --------------------------------------------------------------------------- plans


def test_plans_list_the_nodes_to_fetch() -> None:
    plan = inclusion_plan(5, 7)
    assert plan.ranges == ((4, 5), (6, 7), (0, 4))
    assert plan.nodes == (Node(0, 4), Node(0, 6), Node(2, 0))
    assert len(plan) == 3
    plan = inclusion_plan(0, 7)
    assert plan.ranges == ((1, 2), (2, 4), (4, 7))
    assert plan.nodes == (Node(0, 1), Node(1, 1), Node(1, 2), Node(0, 6))
    plan = consistency_plan(6, 7)
    assert plan.ranges == ((4, 6), (6, 7), (0, 4))
    plan = consistency_plan(4, 7)
    assert plan.ranges == ((4, 7),)
    assert plan.nodes == (Node(1, 2), Node(0, 6))
    plan = multi_inclusion_plan([5, 1], 7)
    assert plan.ranges == ((0, 1), (2, 4), (4, 5), (6, 7))
    assert multi_inclusion_plan(range(7), 7).ranges == ()


def test_plan_assemble_errors() -> None:
    plan = inclusion_plan(5, 7)
    store = {n: STORE[n] for n in plan.nodes}
    assert plan.assemble({**store, Node(9, 9): SOME_HASH}) == inclusion_proof(5, 7, LEAVES)
    del store[Node(0, 6)]
    with pytest.raises(ProofError) as info:
        plan.assemble(store)
    assert info.value.code == "missing_node"
    assert str(info.value) == "no stored hash for node (level=0, index=6) covering leaves [6, 7)"


def test_proof_plan_rejects_non_tree_ranges() -> None:
    assert ProofPlan(((0, 4), (4, 7))).nodes == (Node(2, 0), Node(1, 2), Node(0, 6))
    for bad in [((2, 5),), ((-1, 0),), ((3, 3),)]:
        with pytest.raises(ProofError) as info:
            ProofPlan(bad)
        assert info.value.code == "bad_range"


@PROPS
@given(size_and_index())
def test_inclusion_plan_equals_generator(si: tuple[int, int]) -> None:
    size, index = si
    proof = inclusion_proof(index, size, LEAVES)
    assert inclusion_plan(index, size).assemble(STORE) == proof
    assert root_from_inclusion_proof(index, size, LEAVES[index], proof) == ROOTS[size]
    verify_inclusion(index, size, LEAVES[index], proof, ROOTS[size])


@PROPS
@given(st.integers(1, MAXN), st.data())
def test_consistency_plan_equals_generator(size2: int, data: st.DataObject) -> None:
    size1 = data.draw(st.integers(0, size2))
    proof = consistency_proof(size1, size2, LEAVES)
    assert consistency_plan(size1, size2).assemble(STORE) == proof
    verify_consistency(size1, size2, ROOTS[size1], ROOTS[size2], proof)


@PROPS
@given(size_and_indices())
def test_multi_inclusion_plan_equals_generator(si: tuple[int, list[int]]) -> None:
    size, indices = si
    proof = multi_inclusion_proof(indices, size, LEAVES)
    plan = multi_inclusion_plan(indices, size)
    assert plan.assemble(STORE) == proof
    starts = [lo for lo, _ in plan.ranges]
    assert starts == sorted(starts)
    leaves = {i: LEAVES[i] for i in indices}
    assert root_from_multi_inclusion(size, leaves, proof) == ROOTS[size]
    assert ref_multi_root(size, leaves, proof) == ROOTS[size]
    verify_multi_inclusion(size, leaves, proof, ROOTS[size])


# --------------------------------------------------------------------------- broken inclusion proofs

INCLUSION_BREAKS = [
    "drop_last",
    "drop_first",
    "append",
    "prepend_root",
    "flip_proof_bit",
    "flip_leaf_bit",
    "flip_root_bit",
    "swap",
    "wrong_index",
    "wrong_size",
    "wrong_root",
    "node_as_leaf",
    "unprefixed_leaf",
]


@pytest.mark.parametrize("brk", INCLUSION_BREAKS)
@FEW
@given(si=size_and_index(), data=st.data())
def test_broken_inclusion_proofs_fail(brk: str, si: tuple[int, int], data: st.DataObject) -> None:
    size, index = si
    proof = inclusion_plan(index, size).assemble(STORE)
    leaf, root = LEAVES[index], ROOTS[size]
    if brk == "drop_last":
        assume(proof)
        proof = proof[:-1]
    elif brk == "drop_first":
        assume(proof)
        proof = proof[1:]
    elif brk == "append":
        proof = [*proof, data.draw(st.sampled_from([SOME_HASH, root, leaf, *proof]))]
    elif brk == "prepend_root":
        proof = [root, *proof]
    elif brk == "flip_proof_bit":
        assume(proof)
        j = data.draw(st.integers(0, len(proof) - 1))
        proof[j] = flip_bit(proof[j], data.draw(st.integers(0, 255)))
    elif brk == "flip_leaf_bit":
        leaf = flip_bit(leaf, data.draw(st.integers(0, 255)))
    elif brk == "flip_root_bit":
        root = flip_bit(root, data.draw(st.integers(0, 255)))
    elif brk == "swap":
        assume(len(proof) >= 2)
        j = data.draw(st.integers(0, len(proof) - 2))
        k = data.draw(st.integers(j + 1, len(proof) - 1))
        proof[j], proof[k] = proof[k], proof[j]
    elif brk == "wrong_index":
        assume(size > 1)
        index = data.draw(st.integers(0, size - 1).filter(lambda i: i != index))
    elif brk == "wrong_size":
        # The root of the claimed size: a checkpoint fixes size and root together.
        size = data.draw(st.integers(index + 1, MAXN).filter(lambda s: s != size))
        root = ROOTS[size]
    elif brk == "wrong_root":
        other = data.draw(st.integers(0, MAXN).filter(lambda s: s != size))
        root = ROOTS[other]
    elif brk == "node_as_leaf":
        # Present the level-1 node above the leaf as if it were a leaf hash.
        assume((index | 1) < size)
        leaf = STORE[Node(1, index >> 1)]
        if data.draw(st.booleans()):
            proof, index = proof[1:], index >> 1
    elif brk == "unprefixed_leaf":
        leaf = sha256(b"reading %d" % index)
    with pytest.raises(ProofError):
        verify_inclusion(index, size, leaf, proof, root)


# --------------------------------------------------------------------------- broken consistency proofs

CONSISTENCY_BREAKS = [
    "drop_last",
    "drop_first",
    "append",
    "prepend_root",
    "flip_proof_bit",
    "swap",
    "size1",
    "size2",
    "root1",
    "root2",
    "swap_roots",
]


@pytest.mark.parametrize("brk", CONSISTENCY_BREAKS)
@FEW
@given(size2=st.integers(2, MAXN), data=st.data())
def test_broken_consistency_proofs_fail(brk: str, size2: int, data: st.DataObject) -> None:
    size1 = data.draw(st.integers(1, size2 - 1))
    proof = consistency_plan(size1, size2).assemble(STORE)
    root1, root2 = ROOTS[size1], ROOTS[size2]
    if brk == "drop_last":
        proof = proof[:-1]
    elif brk == "drop_first":
        proof = proof[1:]
    elif brk == "append":
        proof = [*proof, data.draw(st.sampled_from([SOME_HASH, root1, root2, *proof]))]
    elif brk == "prepend_root":
        proof = [data.draw(st.sampled_from([root1, root2])), *proof]
    elif brk == "flip_proof_bit":
        j = data.draw(st.integers(0, len(proof) - 1))
        proof[j] = flip_bit(proof[j], data.draw(st.integers(0, 255)))
    elif brk == "swap":
        assume(len(proof) >= 2)
        j = data.draw(st.integers(0, len(proof) - 2))
        k = data.draw(st.integers(j + 1, len(proof) - 1))
        proof[j], proof[k] = proof[k], proof[j]
    elif brk == "size1":
        size1 = data.draw(st.integers(0, size2).filter(lambda s: s != size1))
        root1 = ROOTS[size1]
    elif brk == "size2":
        size2 = data.draw(st.integers(size1, MAXN).filter(lambda s: s != size2))
        root2 = ROOTS[size2]
    elif brk == "root1":
        root1 = flip_bit(root1, data.draw(st.integers(0, 255)))
    elif brk == "root2":
        root2 = flip_bit(root2, data.draw(st.integers(0, 255)))
    elif brk == "swap_roots":
        root1, root2 = root2, root1
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, root1, root2, proof)


# --------------------------------------------------------------------------- multi-inclusion


def test_multi_inclusion_single_index_is_the_inclusion_proof_reordered() -> None:
    for size in range(1, 45):
        for index in range(size):
            rfc = inclusion_proof(index, size, LEAVES)
            multi = multi_inclusion_proof([index], size, LEAVES)
            assert sorted(multi) == sorted(rfc)
            # Documented order: left siblings top-down, then right siblings bottom-up.
            plan = inclusion_plan(index, size)
            lefts = [p for (lo, _), p in zip(plan.ranges, rfc, strict=True) if lo < index]
            rights = [p for (lo, _), p in zip(plan.ranges, rfc, strict=True) if lo > index]
            assert multi == lefts[::-1] + rights
            verify_multi_inclusion(size, {index: LEAVES[index]}, multi, ROOTS[size])


def test_multi_inclusion_examples() -> None:
    leaves = {i: RFC_LEAF_HASHES[i] for i in (1, 5)}
    proof = multi_inclusion_proof([5, 1, 5], 7, RFC_LEAF_HASHES)
    assert proof == [RFC_NODES[0][0], RFC_NODES[1][1], RFC_NODES[0][4], RFC_NODES[0][6]]
    verify_multi_inclusion(7, leaves, proof, RFC_ROOTS[7])
    # Indices are a set: order and repetition do not matter.
    assert multi_inclusion_plan([5, 1, 5, 1], 7) == multi_inclusion_plan((1, 5), 7)
    assert multi_inclusion_plan(iter([5, 1]), 7).assemble(rfc_store()) == proof
    everything = dict(enumerate(RFC_LEAF_HASHES))
    assert multi_inclusion_proof(range(8), 8, RFC_LEAF_HASHES) == []
    verify_multi_inclusion(8, everything, [], RFC_ROOTS[8])
    verify_multi_inclusion(1, {0: RFC_LEAF_HASHES[0]}, [], RFC_ROOTS[1])


def test_multi_inclusion_rejections() -> None:
    size = 100
    leaves = {i: LEAVES[i] for i in (3, 40, 41, 99)}
    proof = multi_inclusion_proof(leaves, size, LEAVES)
    root = ROOTS[size]
    verify_multi_inclusion(size, leaves, proof, root)

    assert proof_code(lambda: verify_multi_inclusion(size, {}, proof, root)) == "empty_leaf_set"
    assert proof_code(lambda: multi_inclusion_plan([], size)) == "empty_leaf_set"
    assert proof_code(lambda: multi_inclusion_proof([], size, LEAVES)) == "empty_leaf_set"
    bad = {**leaves, 100: LEAVES[0]}
    assert proof_code(lambda: verify_multi_inclusion(size, bad, proof, root)) == "index_out_of_range"
    bad = {**leaves, -1: LEAVES[0]}
    assert proof_code(lambda: verify_multi_inclusion(size, bad, proof, root)) == "index_out_of_range"
    assert proof_code(lambda: multi_inclusion_plan([100], size)) == "index_out_of_range"
    assert proof_code(lambda: verify_multi_inclusion(0, {0: LEAVES[0]}, [], EMPTY_ROOT)) == (
        "index_out_of_range"
    )

    with pytest.raises(ProofError) as info:
        verify_multi_inclusion(size, leaves, [*proof, SOME_HASH, SOME_HASH], root)
    assert info.value.code == "proof_hashes_left_over"
    assert "2 proof hashes left over" in str(info.value)

    with pytest.raises(ProofError) as info:
        verify_multi_inclusion(size, leaves, proof[:-2], root)
    assert info.value.code == "proof_too_short"
    assert f"it has {len(proof) - 2} hashes" in str(info.value)
    assert f"need {len(proof)}" in str(info.value)

    with pytest.raises(ProofError) as info:
        verify_multi_inclusion(size, leaves, proof, SOME_HASH)
    assert info.value.code == "root_mismatch"


MULTI_BREAKS = [
    "drop_leaf",
    "add_leaf",
    "change_leaf",
    "move_leaf",
    "remove_hash",
    "add_hash",
    "alter_hash",
    "swap_hashes",
    "size",
    "root",
]


@pytest.mark.parametrize("brk", MULTI_BREAKS)
@FEW
@given(si=size_and_indices(), data=st.data())
def test_broken_multi_inclusion_proofs_fail(brk: str, si: tuple[int, list[int]], data: st.DataObject) -> None:
    size, indices = si
    leaves = {i: LEAVES[i] for i in indices}
    proof = multi_inclusion_plan(indices, size).assemble(STORE)
    root = ROOTS[size]
    if brk == "drop_leaf":
        del leaves[data.draw(st.sampled_from(indices))]
    elif brk == "add_leaf":
        assume(len(indices) < size)
        extra = data.draw(st.integers(0, size - 1).filter(lambda i: i not in leaves))
        leaves[extra] = LEAVES[extra]
    elif brk == "change_leaf":
        i = data.draw(st.sampled_from(indices))
        leaves[i] = flip_bit(leaves[i], data.draw(st.integers(0, 255)))
    elif brk == "move_leaf":
        assume(len(indices) < size)
        i = data.draw(st.sampled_from(indices))
        j = data.draw(st.integers(0, size - 1).filter(lambda j: j not in leaves))
        leaves[j] = leaves.pop(i)
    elif brk == "remove_hash":
        assume(proof)
        del proof[data.draw(st.integers(0, len(proof) - 1))]
    elif brk == "add_hash":
        proof.insert(data.draw(st.integers(0, len(proof))), data.draw(st.sampled_from([SOME_HASH, root])))
    elif brk == "alter_hash":
        assume(proof)
        j = data.draw(st.integers(0, len(proof) - 1))
        proof[j] = flip_bit(proof[j], data.draw(st.integers(0, 255)))
    elif brk == "swap_hashes":
        assume(len(proof) >= 2)
        j = data.draw(st.integers(0, len(proof) - 2))
        k = data.draw(st.integers(j + 1, len(proof) - 1))
        proof[j], proof[k] = proof[k], proof[j]
    elif brk == "size":
        size = data.draw(st.integers(max(indices) + 1, MAXN).filter(lambda s: s != size))
        root = ROOTS[size]
    elif brk == "root":
        root = ROOTS[data.draw(st.integers(0, MAXN).filter(lambda s: s != size))]
    with pytest.raises(ProofError):
        verify_multi_inclusion(size, leaves, proof, root)


# --------------------------------------------------------------------------- huge trees (no leaves needed)


@st.composite
def huge_size_and_indices(draw: st.DrawFn) -> tuple[int, list[int]]:
    size = draw(st.one_of(st.integers(1, 2**64 - 1), st.sampled_from([2**63, 2**64 - 1, 2**32 + 1])))
    rnd = random.Random(draw(st.integers(0, 2**32)))
    count = draw(st.integers(1, 40))
    centre = rnd.randrange(size)
    spread = draw(st.sampled_from([4, 100, 2**20, size]))
    idx = {min(size - 1, max(0, centre + rnd.randrange(-spread, spread + 1))) for _ in range(count)}
    return size, sorted(idx)


@FEW
@given(huge_size_and_indices(), st.randoms(use_true_random=False))
def test_multi_inclusion_in_huge_trees_matches_the_definition(
    si: tuple[int, list[int]], rnd: random.Random
) -> None:
    size, indices = si
    plan = multi_inclusion_plan(indices, size)
    proof = [rnd.randbytes(32) for _ in plan.ranges]
    leaves = {i: rnd.randbytes(32) for i in indices}
    root = root_from_multi_inclusion(size, leaves, proof)
    assert root == ref_multi_root(size, leaves, proof)
    verify_multi_inclusion(size, leaves, proof, root)
    with pytest.raises(ProofError):
        verify_multi_inclusion(size, leaves, proof[:-1] if proof else [SOME_HASH], root)


@PROPS
@given(size_and_index(max_size=2**64 - 1), st.randoms(use_true_random=False))
def test_single_index_in_huge_trees(si: tuple[int, int], rnd: random.Random) -> None:
    size, index = si
    plan = inclusion_plan(index, size)
    assert len(plan.ranges) <= 64
    proof = [rnd.randbytes(32) for _ in plan.ranges]
    lh = rnd.randbytes(32)
    root = root_from_inclusion_proof(index, size, lh, proof)
    verify_inclusion(index, size, lh, proof, root)
    # The multi-proof of the same leaf uses the same ranges, ordered by position.
    multi = multi_inclusion_plan([index], size)
    assert sorted(multi.ranges) == sorted(plan.ranges) == list(multi.ranges)
    by_range = dict(zip(plan.ranges, proof, strict=True))
    assert root_from_multi_inclusion(size, {index: lh}, [by_range[r] for r in multi.ranges]) == root


def test_inclusion_proof_length_formula() -> None:
    # RFC 9162 §2.1.3.2: inner + border.
    for size in range(1, 200):
        for index in range(size):
            inner = (index ^ (size - 1)).bit_length()
            assert len(inclusion_plan(index, size)) == inner + (index >> inner).bit_count()


def test_consistency_in_huge_trees_is_structurally_sound() -> None:
    # Every range in a consistency plan lies within the new tree and is a tree node.
    rnd = random.Random(1)
    for _ in range(200):
        size2 = rnd.randrange(2, 2**64)
        size1 = rnd.randrange(1, size2)
        plan = consistency_plan(size1, size2)
        assert 1 <= len(plan) <= 2 * 64
        assert all(0 <= lo < hi <= size2 for lo, hi in plan.ranges)


# --------------------------------------------------------------------------- scale


def test_multi_inclusion_scale() -> None:
    # 20k leaves out of a 1M-leaf tree: plan, verify, and reject a changed hash.
    rnd = random.Random(5)
    size = 1_000_000
    indices = sorted(rnd.sample(range(size), 20_000))
    plan = multi_inclusion_plan(indices, size)
    proof = [os.urandom(32) for _ in plan.ranges]
    leaves = {i: os.urandom(32) for i in indices}
    root = root_from_multi_inclusion(size, leaves, proof)
    verify_multi_inclusion(size, leaves, proof, root)
    proof[-1] = flip_bit(proof[-1], 0)
    assert proof_code(lambda: verify_multi_inclusion(size, leaves, proof, root)) == "root_mismatch"


def test_root_of_many_leaves_is_iterative() -> None:
    leaves = LEAVES * 16  # 40k leaves
    cr = CompactRange()
    cr.extend(leaves)
    assert cr.root() == root_from_leaf_hashes(leaves)
