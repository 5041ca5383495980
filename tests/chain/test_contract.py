"""The LogAnchor contract on a real EVM, the embedded dev chain and anvil alike (evm_chain runs
each test on both): log keys and their events, anchors in order with consistency proofs, every
refusal, and no operator touching another's origin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from attest_chain.client import (
    AnchorContract,
    LatestAnchor,
    StoredAnchor,
    connect,
    deploy,
    origin_hash,
    send_transaction,
    wait_for_receipt,
)
from attest_chain.errors import ChainError, ContractReverted, NotFound
from attest_core.anchor import note_hash
from tests.chain.trees import proof, root
from tests.chain_support import Chain, funded_account

KEY1 = "example.org/log+1a2b3c4d+AQ" + "A" * 42
KEY2 = "example.org/log+5e6f7a8b+AQ" + "B" * 42
NOTE = note_hash("example.org/log\n3\nroot\n\n— example.org/log sig\n")


@dataclass
class World:
    chain: Chain
    w3: Web3
    contract: AnchorContract
    operator: LocalAccount
    other: LocalAccount

    def send(self, tx: Any, account: LocalAccount | None = None) -> str:
        tx_hash = send_transaction(self.w3, account or self.operator, tx)
        assert wait_for_receipt(self.w3, tx_hash, timeout=30)["status"] == 1
        return tx_hash

    def set_key(self, origin: str, key: str, account: LocalAccount | None = None) -> str:
        sender = (account or self.operator).address
        return self.send(self.contract.build_set_log_key(sender, origin, key), account)

    def anchor(self, origin: str, size: int, old: int = 0, account: LocalAccount | None = None) -> str:
        sender = (account or self.operator).address
        tx = self.contract.build_anchor(
            sender, origin, size, root(size), NOTE, proof(old, size) if old else []
        )
        return self.send(tx, account)


@pytest.fixture(scope="module")
def world(evm_chain: Chain) -> World:
    w3 = connect(evm_chain.url)
    operator = funded_account(evm_chain)
    return World(evm_chain, w3, deploy(w3, operator), operator, funded_account(evm_chain))


def test_the_deployment_holds_the_artifacts_code(world: World) -> None:
    world.contract.check_code()
    assert world.w3.eth.chain_id == world.chain.chain_id


def test_a_key_set_and_changed_is_an_event_with_the_previous_key(world: World) -> None:
    origin = "example.org/log/keys"
    op = world.operator.address.lower()
    assert world.contract.log_key(op, origin) == ""

    first = world.contract.log_key_event(world.set_key(origin, KEY1))
    assert (first.operator, first.origin_hash, first.origin) == (op, origin_hash(origin), origin)
    assert (first.key, first.previous) == (KEY1, "")
    assert world.contract.log_key(op, origin) == KEY1

    second = world.contract.log_key_event(world.set_key(origin, KEY2))
    assert (second.key, second.previous) == (KEY2, KEY1)
    assert world.contract.log_key(op, origin) == KEY2
    assert world.contract.log_key_events(op, origin) == [first, second]


@pytest.mark.parametrize(("origin", "key", "reason"), [("", KEY1, "empty origin"), ("o", "", "empty key")])
def test_an_empty_origin_or_key_is_refused(world: World, origin: str, key: str, reason: str) -> None:
    with pytest.raises(ContractReverted) as caught:
        world.contract.build_set_log_key(world.operator.address, origin, key)
    assert caught.value.reason == reason


def test_anchors_are_accepted_in_order_with_consistency_proofs(world: World) -> None:
    origin = "example.org/log/anchors"
    op = world.operator.address.lower()
    assert world.contract.latest(op, origin) == LatestAnchor(0, 0, bytes(32), bytes(32))
    world.set_key(origin, KEY1)
    hashes = [world.anchor(origin, 3), world.anchor(origin, 7, old=3), world.anchor(origin, 8, old=7)]
    events = [world.contract.anchor_event(h) for h in hashes]

    assert [(e.number, e.tree_size, e.previous_size) for e in events] == [(0, 3, 0), (1, 7, 3), (2, 8, 7)]
    for event, size, tx_hash in zip(events, (3, 7, 8), hashes, strict=True):
        assert (event.operator, event.origin_hash) == (op, origin_hash(origin))
        assert (event.root_hash, event.note_hash, event.tx_hash) == (root(size), NOTE, tx_hash)
        block = world.w3.eth.get_block(event.block_number)
        assert event.block_hash == "0x" + bytes(block["hash"]).hex()
        assert world.contract.anchor_at(op, origin, event.number) == StoredAnchor(
            size, root(size), NOTE, event.block_number
        )
    assert world.contract.anchored_events(op, origin) == events
    assert world.contract.anchored_events(op, origin, from_block=events[1].block_number) == events[1:]
    assert world.contract.anchored_events(op, origin, step=2) == events  # in ranges of two blocks
    assert world.contract.anchored_events(op, origin, 0, events[1].block_number, step=1) == events[:2]
    assert world.contract.latest(op, origin) == LatestAnchor(3, 8, root(8), NOTE)
    with pytest.raises(NotFound, match="no anchor 3"):
        world.contract.anchor_at(op, origin, 3)


@pytest.fixture(scope="module")
def anchored(world: World) -> str:
    """An origin of the operator's with a key and one anchor, of size 5."""
    origin = "example.org/log/refusals"
    world.set_key(origin, KEY1)
    world.anchor(origin, 5)
    return origin


@pytest.mark.parametrize(
    ("size", "proof_from", "reason"),
    [
        (4, 4, "tree not larger than the latest anchor"),  # a rollback
        (5, None, "tree not larger than the latest anchor"),  # the same size again
        (9, None, "consistency proof does not verify"),  # a larger tree without a proof
        (9, 4, "consistency proof does not verify"),  # a proof from another tree
        (0, None, "empty tree"),
        (2**64, None, "tree size above 2**64 - 1"),
    ],
    ids=["smaller", "same", "no-proof", "wrong-proof", "empty", "too-large"],
)
def test_what_does_not_extend_the_latest_anchor_is_refused(
    world: World, anchored: str, size: int, proof_from: int | None, reason: str
) -> None:
    hashes = proof(proof_from, min(size, 64)) if proof_from else []
    tree_root = root(size) if size <= 64 else bytes(32)
    with pytest.raises(ContractReverted) as caught:
        world.contract.build_anchor(world.operator.address, anchored, size, tree_root, NOTE, hashes)
    assert caught.value.reason == reason


def test_a_tampered_proof_or_root_is_refused(world: World, anchored: str) -> None:
    good = proof(5, 9)
    world.contract.simulate_anchor(world.operator.address, anchored, 9, root(9), NOTE, good)
    for i in range(len(good)):
        bad = list(good)
        bad[i] = bytes(a ^ 1 if j == 0 else a for j, a in enumerate(bad[i]))
        with pytest.raises(ContractReverted, match="consistency proof does not verify"):
            world.contract.simulate_anchor(world.operator.address, anchored, 9, root(9), NOTE, bad)
    for hashes, tree_root in [(good[:-1], root(9)), ([*good, good[0]], root(9)), (good, root(10))]:
        with pytest.raises(ContractReverted, match="consistency proof does not verify"):
            world.contract.simulate_anchor(world.operator.address, anchored, 9, tree_root, NOTE, hashes)


def test_a_refused_anchor_sent_anyway_reverts_on_chain(world: World, anchored: str) -> None:
    """Skipping the estimate (fixed gas) gets the transaction mined, as a revert: no state."""
    op = world.operator.address
    before = world.contract.latest(op, anchored)
    tx = world.contract.build_anchor(
        op,
        anchored,
        4,
        root(4),
        NOTE,
        [],
        gas=300_000,
        max_fee_per_gas=10**11,
        max_priority_fee_per_gas=10**9,
    )
    tx_hash = send_transaction(world.w3, world.operator, tx)
    assert wait_for_receipt(world.w3, tx_hash, timeout=30)["status"] == 0
    with pytest.raises(ContractReverted, match="reverted"):
        world.contract.anchor_event(tx_hash)
    assert world.contract.latest(op, anchored) == before


def test_the_first_anchor_takes_no_proof_and_needs_a_key(world: World) -> None:
    origin = "example.org/log/first"
    op = world.operator.address
    with pytest.raises(ContractReverted) as caught:
        world.contract.build_anchor(op, origin, 3, root(3), NOTE, [])
    assert caught.value.reason == "no log key set"
    world.set_key(origin, KEY1)
    with pytest.raises(ContractReverted) as caught:
        world.contract.build_anchor(op, origin, 3, root(3), NOTE, proof(1, 3))
    assert caught.value.reason == "first anchor takes no proof"


def test_no_operator_touches_another_operators_origin(world: World, anchored: str) -> None:
    op, other = world.operator.address, world.other.address
    key_before = world.contract.log_key(op, anchored)
    latest_before = world.contract.latest(op, anchored)
    # without a key of its own for the origin, the other account cannot anchor under it
    with pytest.raises(ContractReverted) as caught:
        world.contract.build_anchor(other, anchored, 9, root(9), NOTE, proof(5, 9))
    assert caught.value.reason == "no log key set"
    # its own key and anchors for the same origin land in its own namespace only
    event = world.contract.log_key_event(world.set_key(anchored, KEY2, world.other))
    assert (event.operator, event.previous) == (other.lower(), "")
    world.anchor(anchored, 2, account=world.other)
    assert world.contract.log_key(op, anchored) == key_before
    assert world.contract.latest(op, anchored) == latest_before
    assert world.contract.log_key(other, anchored) == KEY2
    assert world.contract.latest(other, anchored) == LatestAnchor(1, 2, root(2), NOTE)
    assert [e.operator for e in world.contract.anchored_events(op, anchored)] == [op.lower()]


def test_the_client_refuses_what_the_contract_could_not_take(world: World) -> None:
    op = world.operator.address
    with pytest.raises(ChainError, match="at most 65 hashes"):
        world.contract.build_anchor(op, "o", 9, root(9), NOTE, [bytes(32)] * 66)
    with pytest.raises(ChainError, match="32 bytes"):
        world.contract.build_anchor(op, "o", 9, root(9)[:31], NOTE, [])
    with pytest.raises(ChainError, match="not an address"):
        world.contract.latest("0x1234", "o")
    with pytest.raises(NotFound):
        world.contract.anchor_event("0x" + "ab" * 32)
    with pytest.raises(ChainError, match="at least 1"):
        world.contract.anchored_events(op, "o", step=0)
