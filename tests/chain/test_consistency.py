"""The contract's RFC 9162 consistency check agrees with attest_core.merkle at every pair of
sizes up to 40 and at sizes near 2**64 (proofs up to the 65 hashes the contract takes), and
refuses every tampered proof. On anvil (the grid is ~8000 eth_calls, in batches); a sample on the
dev chain."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from eth_abi import encode
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3

from attest_chain.client import MAX_PROOF, AnchorContract, connect, deploy, send_transaction, wait_for_receipt
from attest_core.merkle import verify_consistency
from tests.chain.trees import UniformTree, proof, root
from tests.chain_support import Chain, funded_account

NOTE = bytes(range(32))
KEY = "example.org/log+00000000+AQ" + "C" * 42
MAX = 40
ANCHOR_TYPES = ["string", "uint256", "bytes32", "bytes32", "bytes32[]"]
ANCHOR = keccak(f"anchor({','.join(ANCHOR_TYPES)})".encode())[:4]


@dataclass
class Setup:
    w3: Web3
    contract: AnchorContract
    account: LocalAccount
    url: str

    @property
    def sender(self) -> str:
        return self.account.address

    def first_anchor(self, origin: str, size: int, tree_root: bytes) -> None:
        self._send(self.contract.build_set_log_key(self.sender, origin, KEY))
        self._send(self.contract.build_anchor(self.sender, origin, size, tree_root, NOTE, []))

    def _send(self, tx: Any) -> None:
        tx_hash = send_transaction(self.w3, self.account, tx)
        assert wait_for_receipt(self.w3, tx_hash, timeout=30)["status"] == 1

    def accepts(self, origin: str, size: int, tree_root: bytes, hashes: list[bytes]) -> bool:
        return self.accepts_all([(origin, size, tree_root, hashes)]) == [True]

    def accepts_all(self, anchors: list[tuple[str, int, bytes, list[bytes]]]) -> list[bool]:
        """Which of the anchor calls the contract would take: one JSON-RPC batch of eth_calls
        (web3's call and its ABI encoding, a few ms each, would make the grid ten times slower)."""
        to = self.contract.web3_contract.address
        calls = [
            {
                "from": self.sender,
                "to": to,
                "data": "0x" + (ANCHOR + encode(ANCHOR_TYPES, [o, s, r, NOTE, h])).hex(),
            }
            for o, s, r, h in anchors
        ]
        answers = []
        for start in range(0, len(calls), 1000):  # nodes limit a batch's length
            batch = [
                {"jsonrpc": "2.0", "id": i, "method": "eth_call", "params": [call, "latest"]}
                for i, call in enumerate(calls[start : start + 1000], start)
            ]
            answers += sorted(requests.post(self.url, json=batch, timeout=60).json(), key=lambda a: a["id"])
        assert [a["id"] for a in answers] == list(range(len(anchors)))
        for answer in answers:
            if "error" in answer:
                assert "consistency proof does not verify" in answer["error"]["message"], answer
        return ["error" not in answer for answer in answers]


def _setup(chain: Chain) -> Setup:
    w3 = connect(chain.url)
    account = funded_account(chain)
    return Setup(w3, deploy(w3, account), account, chain.url)


@pytest.fixture(scope="module")
def on_anvil(anvil: Chain) -> Setup:
    return _setup(anvil)


@pytest.fixture(scope="module")
def on_devchain(devchain: Chain) -> Setup:
    return _setup(devchain)


def _tampered(hashes: list[bytes]) -> list[list[bytes]]:
    """Each hash flipped in one bit, one dropped, one too many, two swapped."""
    out = []
    for i in range(len(hashes)):
        bad = list(hashes)
        bad[i] = bytes([bad[i][0] ^ 0x80]) + bad[i][1:]
        out.append(bad)
    out.append(hashes[:-1])
    if len(hashes) < MAX_PROOF:  # the client refuses a longer one itself
        out.append([*hashes, hashes[-1]])
    if len(hashes) > 1 and hashes[0] != hashes[1]:
        out.append([hashes[1], hashes[0], *hashes[2:]])
    return out


def test_every_pair_of_sizes_up_to_40(on_anvil: Setup) -> None:
    for size1 in range(1, MAX):
        on_anvil.first_anchor(f"grid/{size1}", size1, root(size1))
    good, bad = [], []
    for size1, size2 in itertools.combinations(range(1, MAX + 1), 2):
        origin, hashes = f"grid/{size1}", proof(size1, size2)
        good.append((origin, size2, root(size2), hashes))
        bad.append((origin, size2, root(size2 - 1), hashes))  # a wrong new root
        tampered = _tampered(hashes)
        # one tampering for every pair, all of them for every 7th pair: the grid stays short
        chosen = tampered if (size1 * MAX + size2) % 7 == 0 else [tampered[(size1 + size2) % len(tampered)]]
        bad += [(origin, size2, root(size2), t) for t in chosen]
    assert len(good) == MAX * (MAX - 1) // 2
    assert on_anvil.accepts_all(good) == [True] * len(good)
    assert on_anvil.accepts_all(bad) == [False] * len(bad)


LARGE = [
    (2**40 + 12345, 2**62 + 7),
    (2**63, 2**64 - 1),  # the old tree a power of two: its root is the proof's starting point
    (2**64 - 3, 2**64 - 1),  # the longest proof there is: 65 hashes
    (1, 2**64 - 1),
    (2**64 - 2, 2**64 - 1),
]


@pytest.mark.parametrize(("size1", "size2"), LARGE, ids=[f"{a}-{b}" for a, b in LARGE])
def test_large_sizes(on_anvil: Setup, size1: int, size2: int) -> None:
    tree = UniformTree()
    root1, root2, good = tree.root(size1), tree.root(size2), tree.proof(size1, size2)
    verify_consistency(size1, size2, root1, root2, good)  # the core agrees it is a proof
    origin = f"large/{size1}/{size2}"
    on_anvil.first_anchor(origin, size1, root1)
    assert on_anvil.accepts(origin, size2, root2, good)
    bad = [(origin, size2, root2, tampered) for tampered in _tampered(good)]
    bad.append((origin, size2, tree.root(size2 - 1), good))
    assert on_anvil.accepts_all(bad) == [False] * len(bad)


def test_the_longest_proof_has_65_hashes() -> None:
    assert len(UniformTree().proof(2**64 - 3, 2**64 - 1)) == 65


def test_a_sample_on_the_dev_chain(on_devchain: Setup) -> None:
    good, bad = [], []
    for size1 in (1, 4, 6, 13):
        on_devchain.first_anchor(f"sample/{size1}", size1, root(size1))
        for size2 in (16, 21, 33):
            hashes = proof(size1, size2)
            good.append((f"sample/{size1}", size2, root(size2), hashes))
            bad += [(f"sample/{size1}", size2, root(size2), tampered) for tampered in _tampered(hashes)[::3]]
    assert on_devchain.accepts_all(good) == [True] * len(good)
    assert on_devchain.accepts_all(bad) == [False] * len(bad)
