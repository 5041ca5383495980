"""Finality rules: parsed from text; on anvil ("finalized" two blocks below the head with one slot
per epoch) a block becomes final as blocks are mined on top of it, and a block reorganised away
(evm_snapshot / evm_revert) is not final however deep its height. On a private anvil forked at
paris, which also shows the contract deploys and runs on a chain without PUSH0."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from web3 import Web3

from attest_chain.client import AnchorContract, connect, deploy, send_transaction, wait_for_receipt
from attest_chain.errors import FinalityRuleError, NotFound
from attest_chain.finality import FinalityRule, canonical_hash, final_block_number, is_final, parse_rule
from tests.chain.trees import proof, root
from tests.chain_support import Chain, rpc, start_anvil

KEY = "example.org/log+11111111+AQ" + "D" * 42


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("finalized", FinalityRule("finalized")),
        (" safe ", FinalityRule("safe")),
        ("confirmations:0", FinalityRule("confirmations", 0)),
        ("confirmations:12", FinalityRule("confirmations", 12)),
    ],
)
def test_rules_parse_and_print_back(text: str, rule: FinalityRule) -> None:
    assert parse_rule(text) == rule
    assert parse_rule(str(rule)) == rule


def test_the_default_rule_is_finalized() -> None:
    assert parse_rule() == FinalityRule("finalized")


@pytest.mark.parametrize(
    "text", ["", "latest", "pending", "confirmations:", "confirmations:-1", "confirmations:01"]
)
def test_other_rules_are_refused_naming_the_valid_ones(text: str) -> None:
    with pytest.raises(FinalityRuleError, match="use 'finalized', 'safe' or 'confirmations:N'"):
        parse_rule(text)


@pytest.fixture(scope="module")
def paris() -> Iterator[Chain]:
    chain = start_anvil("--hardfork", "paris", accounts=2)
    yield chain
    chain.stop()


@pytest.fixture(scope="module")
def w3(paris: Chain) -> Web3:
    return connect(paris.url)


@pytest.fixture(scope="module")
def contract(paris: Chain, w3: Web3) -> AnchorContract:
    contract = deploy(w3, paris.accounts[0])
    tx = contract.build_set_log_key(paris.accounts[0].address, "example.org/log", KEY)
    wait_for_receipt(w3, send_transaction(w3, paris.accounts[0], tx))
    return contract


def _mine(paris: Chain, blocks: int) -> None:
    for _ in range(blocks):
        rpc(paris.url, "evm_mine")


def test_the_node_is_paris_and_the_contract_runs_there(
    paris: Chain, w3: Web3, contract: AnchorContract
) -> None:
    # paris has no withdrawals (Shanghai): the head block carries no withdrawalsRoot; and code
    # using PUSH0 (here PUSH0 PUSH0 RETURN) fails to deploy there
    assert "withdrawalsRoot" not in w3.eth.get_block("latest")
    sender = paris.accounts[1]
    creation = {
        "data": "0x5f5ff3",
        "gas": 100_000,
        "maxFeePerGas": 10**11,
        "maxPriorityFeePerGas": 10**9,
        "nonce": w3.eth.get_transaction_count(sender.address, "pending"),
        "chainId": paris.chain_id,
    }
    assert wait_for_receipt(w3, send_transaction(w3, sender, creation))["status"] == 0  # type: ignore[arg-type]
    contract.check_code()
    assert contract.log_key(paris.accounts[0].address, "example.org/log") == KEY


def test_a_block_becomes_final_as_blocks_are_mined_on_it(
    paris: Chain, w3: Web3, contract: AnchorContract
) -> None:
    sender = paris.accounts[0]
    tx = contract.build_anchor(sender.address, "example.org/log", 3, root(3), bytes(32), [])
    event = contract.anchor_event(send_transaction(w3, sender, tx))
    n, block_hash = event.block_number, event.block_hash
    head = w3.eth.block_number
    assert head == n  # automine: the anchor's block is the head
    assert final_block_number(w3, "finalized") == n - 2
    assert final_block_number(w3, "safe") == n - 1
    assert final_block_number(w3, "confirmations:3") == n - 3
    assert [is_final(w3, r, n, block_hash) for r in ("safe", "finalized", "confirmations:2")] == [False] * 3
    _mine(paris, 1)
    assert [is_final(w3, r, n, block_hash) for r in ("safe", "finalized", "confirmations:2")] == [
        True,
        False,
        False,
    ]
    _mine(paris, 1)
    assert [is_final(w3, r, n, block_hash) for r in ("safe", "finalized", "confirmations:2")] == [True] * 3
    assert is_final(w3, FinalityRule("confirmations", 0), n, bytes.fromhex(block_hash[2:]))
    # the height is final, the hash is not the one there
    assert not is_final(w3, "finalized", n, "0x" + "00" * 32)


def test_a_reorganised_block_is_not_final(paris: Chain, w3: Web3, contract: AnchorContract) -> None:
    sender = paris.accounts[0]
    before = contract.latest(sender.address, "example.org/log")
    snapshot = rpc(paris.url, "evm_snapshot")
    tx = contract.build_anchor(
        sender.address, "example.org/log", 9, root(9), bytes(32), proof(before.tree_size, 9)
    )
    tx_hash = send_transaction(w3, sender, tx)
    event = contract.anchor_event(tx_hash)
    _mine(paris, 3)
    assert is_final(w3, "finalized", event.block_number, event.block_hash)

    assert rpc(paris.url, "evm_revert", snapshot) is True
    _mine(paris, 5)  # another history, past the old block's height, without the anchor
    assert w3.eth.block_number > event.block_number + 2
    assert canonical_hash(w3, event.block_number) != event.block_hash
    assert not is_final(w3, "finalized", event.block_number, event.block_hash)
    assert contract.latest(sender.address, "example.org/log") == before
    with pytest.raises(NotFound):
        contract.anchor_event(tx_hash)


def test_nothing_is_final_beyond_the_chain(paris: Chain, w3: Web3) -> None:
    assert final_block_number(w3, "confirmations:1000000") < 0
    head = w3.eth.block_number
    assert canonical_hash(w3, head + 100) is None
    assert not is_final(w3, "confirmations:0", head + 100, "0x" + "11" * 32)


def test_the_dev_chain_is_final_at_once(devchain: Chain) -> None:
    w3 = connect(devchain.url)
    account = devchain.accounts[1]
    tx = {
        "to": account.address,
        "value": 1,
        "gas": 21000,
        "maxFeePerGas": 10**11,
        "maxPriorityFeePerGas": 10**9,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        "chainId": devchain.chain_id,
    }
    receipt = wait_for_receipt(w3, send_transaction(w3, account, tx))  # type: ignore[arg-type]
    block_hash = "0x" + bytes(receipt["blockHash"]).hex()
    assert final_block_number(w3, "finalized") == final_block_number(w3, "safe") == w3.eth.block_number
    assert is_final(w3, "finalized", receipt["blockNumber"], block_hash)
