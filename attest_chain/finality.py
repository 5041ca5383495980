"""When a block counts as final: the finality rule of a chain, written as text in settings and on
the verifier's command line.

    finalized         the node's "finalized" block tag (the default): Ethereum's Casper FFG
                      finality; on an OP-stack L2 such as HashKey Chain, L2 blocks whose batch
                      is in a finalized L1 block
    safe              the node's "safe" block tag: on Ethereum justified, not yet finalized; on
                      an OP-stack L2, derived from L1 data not yet finalized
    confirmations:N   N blocks mined on top of it (for nodes without those tags); N >= 0

A block is final when its number is at or below the final block number *and* its hash is still
the canonical block at that height: an anchor whose block was reorganised away is not final,
however old.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from hexbytes import HexBytes
from web3 import Web3

from attest_chain.client import rpc_errors
from attest_chain.errors import ChainError, FinalityRuleError, NotFound, RpcError

Kind = Literal["finalized", "safe", "confirmations"]
DEFAULT_RULE = "finalized"
_CONFIRMATIONS = re.compile(r"confirmations:(0|[1-9][0-9]{0,8})")


@dataclass(frozen=True)
class FinalityRule:
    kind: Kind
    confirmations: int = 0

    def __str__(self) -> str:
        return f"confirmations:{self.confirmations}" if self.kind == "confirmations" else self.kind


def parse_rule(text: str = DEFAULT_RULE) -> FinalityRule:
    """The rule written as ``text`` (see the module docstring); FinalityRuleError otherwise."""
    value = text.strip()
    if value in ("finalized", "safe"):
        return FinalityRule(value)  # type: ignore[arg-type]  # narrowed by the test above
    found = _CONFIRMATIONS.fullmatch(value)
    if found:
        return FinalityRule("confirmations", int(found[1]))
    raise FinalityRuleError(
        f"unknown finality rule {text!r}: use 'finalized', 'safe' or 'confirmations:N' (N >= 0)"
    )


def _rule(rule: FinalityRule | str) -> FinalityRule:
    return rule if isinstance(rule, FinalityRule) else parse_rule(rule)


def final_block_number(w3: Web3, rule: FinalityRule | str) -> int:
    """The highest block number the rule makes final now; -1 when none is yet."""
    rule = _rule(rule)
    if rule.kind == "confirmations":
        with rpc_errors("reading the block number"):
            latest = int(w3.eth.block_number)
        return latest - rule.confirmations
    try:
        with rpc_errors(f"reading the {rule.kind!r} block"):
            block: Any = w3.eth.get_block(rule.kind)
    except (NotFound, RpcError) as exc:
        # a node without the tag errs (or has no such block yet, right after genesis)
        if isinstance(exc, NotFound):
            return -1
        raise FinalityRuleError(f"the node does not support the {rule.kind!r} block tag: {exc}") from exc
    if block is None:
        return -1
    return int(block["number"])


def canonical_hash(w3: Web3, block_number: int) -> str | None:
    """The hash ("0x" + 64 hex) of the canonical block at ``block_number``; None past the head."""
    try:
        with rpc_errors(f"reading block {block_number}"):
            block: Any = w3.eth.get_block(block_number)
    except NotFound:
        return None
    return "0x" + bytes(block["hash"]).hex()


def is_final(w3: Web3, rule: FinalityRule | str, block_number: int, block_hash: str | bytes) -> bool:
    """Whether the block ``block_number`` with ``block_hash`` is final under ``rule`` and still
    canonical. The final height is read first: a reorg after it cannot make a stale hash pass."""
    if block_number < 0:
        raise ChainError(f"block number {block_number} is negative")
    wanted = HexBytes(block_hash)
    if len(wanted) != 32:
        raise ChainError(f"not a 32-byte block hash: {block_hash!r}")
    if block_number > final_block_number(w3, rule):
        return False
    found = canonical_hash(w3, block_number)
    return found is not None and bytes.fromhex(found[2:]) == bytes(wanted)
