"""The embedded dev chain as a JSON-RPC server: its command line, what it answers besides what
web3 asks (errors, batches), and that a stopped chain is gone for its clients too."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import requests
from eth_account import Account

from attest_chain.client import connect, rpc_errors
from attest_chain.devchain import CHAIN_ID, start_devchain
from attest_chain.errors import ChainUnavailable, RpcError
from tests.chain_support import Chain, rpc


def test_the_command_prints_its_url_and_funded_keys() -> None:
    command = [sys.executable, "-m", "attest_chain.devchain", "--port", "0", "--accounts", "3"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as process:
        _check_the_running_command(process)
    assert process.returncode == 0  # SIGTERM stops it cleanly


def _check_the_running_command(process: subprocess.Popen[str]) -> None:
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert f"chain id {CHAIN_ID}: http://127.0.0.1:" in first
        url = first.rsplit(" ", 1)[1].strip()
        assert "well-known keys" in process.stdout.readline()
        accounts = [process.stdout.readline().split() for _ in range(3)]
        w3 = connect(url)
        assert w3.eth.chain_id == CHAIN_ID
        for address, key in accounts:
            assert Account.from_key(key).address == address
            assert w3.eth.get_balance(address) > 10**18
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_errors_and_batches_are_answered_as_json_rpc(devchain: Chain) -> None:
    post = lambda body: requests.post(devchain.url, data=body, timeout=10).json()  # noqa: E731
    assert post(b"{not json")["error"]["code"] == -32700
    assert (
        post(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_nope", "params": []}))["error"]["code"]
        == -32601
    )
    assert post(json.dumps({"jsonrpc": "2.0", "id": 2, "params": []}))["error"]["code"] == -32600
    batch = [
        {"jsonrpc": "2.0", "id": 7, "method": "eth_chainId", "params": []},
        {"jsonrpc": "2.0", "id": 8, "method": "eth_getBlockByNumber", "params": ["finalized", False]},
    ]
    answers = post(json.dumps(batch))
    assert [a["id"] for a in answers] == [7, 8]
    assert answers[0]["result"] == hex(CHAIN_ID)
    assert answers[1]["result"]["number"].startswith("0x")
    assert requests.get(devchain.url, timeout=10).status_code == 405


def test_a_bad_transaction_is_an_rpc_error_not_a_crash(devchain: Chain) -> None:
    w3 = connect(devchain.url)
    with pytest.raises(RpcError), rpc_errors("sending junk"):
        w3.eth.send_raw_transaction(b"\x01\x02\x03")
    assert int(rpc(devchain.url, "eth_blockNumber"), 16) >= 0  # still serving


def test_a_stopped_chain_is_unavailable_even_on_an_open_connection() -> None:
    chain = start_devchain(accounts=1)
    w3 = connect(chain.url, timeout=2)
    assert w3.eth.chain_id == CHAIN_ID  # opens a keep-alive connection
    chain.stop()
    started = time.monotonic()
    with pytest.raises(ChainUnavailable, match="unavailable"), rpc_errors("reading the head"):
        _ = w3.eth.block_number
    assert time.monotonic() - started < 2
    chain.stop()  # idempotent
