"""Deploy the LogAnchor contract from an operator key file.

    python -m attest_chain.deploy --rpc URL --key-file operator.key --chain-id 1 [--finality finalized]

The key file holds the deploying account's private key as hex (64 digits, "0x" optional); the
deployer pays the gas and need not be the operator that later anchors (any account can use the
contract; everything in it is keyed by the sender). ``--chain-id`` is required: it must be the
node's, so that a mistyped URL cannot deploy on another chain. With ``--wait-final`` the command
returns only once the deployment's block is final under the finality rule.

Prints one JSON object: chain_id, contract, deployer, tx_hash, block_number, block_hash, final.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from attest_chain.client import connect, deploy, rpc_errors
from attest_chain.errors import ChainError
from attest_chain.finality import is_final, parse_rule


def read_key_file(path: Path) -> LocalAccount:
    """The account of the hex private key in ``path``; ChainError naming the file otherwise."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ChainError(f"cannot read the key file {path}: {exc}") from exc
    digits = text.removeprefix("0x")
    if len(digits) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise ChainError(f"{path} does not hold a private key as 64 hex digits")
    try:
        account: LocalAccount = Account.from_key(bytes.fromhex(digits))
    except ValueError as exc:
        raise ChainError(f"{path}: not a valid secp256k1 private key") from exc
    return account


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m attest_chain.deploy", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rpc", required=True, help="the chain's JSON-RPC endpoint (HTTP)")
    parser.add_argument(
        "--key-file", required=True, type=Path, help="the deploying account's private key (hex)"
    )
    parser.add_argument("--chain-id", required=True, type=int, help="the chain id the node must have")
    parser.add_argument(
        "--finality", default="finalized", help="finalized (default), safe or confirmations:N"
    )
    parser.add_argument("--wait-final", action="store_true", help="return once the block is final")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for finality")
    args = parser.parse_args(argv)
    try:
        rule = parse_rule(args.finality)
        account = read_key_file(args.key_file)
        w3 = connect(args.rpc)
        with rpc_errors("reading the chain id"):
            chain_id = int(w3.eth.chain_id)
        if chain_id != args.chain_id:
            raise ChainError(
                f"the node at {args.rpc} is chain {chain_id}, not {args.chain_id}: nothing deployed"
            )
        contract = deploy(w3, account)
        where = contract.deployment
        assert where is not None  # deploy() sets it
        final = is_final(w3, rule, where.block_number, where.block_hash)
        deadline = time.monotonic() + args.timeout
        while args.wait_final and not final:
            if time.monotonic() > deadline:
                raise ChainError(f"block {where.block_number} not final ({rule}) after {args.timeout:.0f} s")
            time.sleep(5)
            final = is_final(w3, rule, where.block_number, where.block_hash)
    except ChainError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 1
    result = {
        "chain_id": chain_id,
        "contract": contract.address,
        "deployer": account.address.lower(),
        "tx_hash": where.tx_hash,
        "block_number": where.block_number,
        "block_hash": where.block_hash,
        "final": final,
        "finality": str(rule),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
