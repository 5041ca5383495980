"""python -m attest_chain.deploy: deploys from a key file on the chain it was told, and nowhere else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attest_chain.client import AnchorContract, connect
from attest_chain.deploy import main
from tests.chain_support import Chain


def test_it_deploys_and_reports_where(
    devchain: Chain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "operator.key"
    key_file.write_text(devchain.private_keys[2] + "\n")
    argv = ["--rpc", devchain.url, "--key-file", str(key_file), "--chain-id", str(devchain.chain_id)]
    assert main([*argv, "--wait-final"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["deployer"] == devchain.accounts[2].address.lower()
    assert (out["chain_id"], out["final"], out["finality"]) == (devchain.chain_id, True, "finalized")
    w3 = connect(devchain.url)
    AnchorContract(w3, out["contract"]).check_code()
    receipt = w3.eth.get_transaction_receipt(out["tx_hash"])
    assert (receipt["blockNumber"], "0x" + bytes(receipt["blockHash"]).hex()) == (
        out["block_number"],
        out["block_hash"],
    )


@pytest.mark.parametrize(
    ("key", "chain_id", "message"),
    [
        (None, 1, "is chain 131277322940537, not 1: nothing deployed"),
        ("0x1234", None, "does not hold a private key as 64 hex digits"),
        ("00" * 32, None, "not a valid secp256k1 private key"),
    ],
)
def test_it_refuses_the_wrong_chain_or_key(
    devchain: Chain,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    key: str | None,
    chain_id: int | None,
    message: str,
) -> None:
    key_file = tmp_path / "operator.key"
    key_file.write_text(key or devchain.private_keys[3])
    nonce = connect(devchain.url).eth.get_transaction_count(devchain.accounts[3].address)
    argv = [
        "--rpc",
        devchain.url,
        "--key-file",
        str(key_file),
        "--chain-id",
        str(chain_id or devchain.chain_id),
    ]
    assert main(argv) == 1
    assert message in capsys.readouterr().err
    assert connect(devchain.url).eth.get_transaction_count(devchain.accounts[3].address) == nonce
