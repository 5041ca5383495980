"""Real chains for the tests: the embedded dev chain (attest_chain.devchain) and anvil.

A pytest plugin (tests/conftest.py lists it in ``pytest_plugins``), so every test folder has:

    devchain    session-scoped: eth-tester + py-evm over HTTP JSON-RPC, in this process
    anvil       session-scoped: a private anvil node (automine, ``--slots-in-an-epoch 1``, so
                "safe" is the head's parent and "finalized" two blocks below the head)
    evm_chain   session-scoped, parametrized: each test using it runs on both

Each is a :class:`Chain` (url, chain_id, private_keys, accounts, stop). The chains are shared:
give each test module an operator account of its own with :func:`funded_account` (a fresh key,
funded by the chain's first dev account) so that nonces and (operator, origin) pairs never
collide. A test that reorganises the chain (``evm_snapshot`` / ``evm_revert``) must start its
own node with :func:`start_anvil`, never revert the shared one.

anvil comes from the npm package pinned in tests/chain/package.json and package-lock.json:
the first use runs ``npm ci`` into .cache/anvil (gitignored), and again whenever the committed
lock changes. Without npm the tests fail, saying what to install; they never skip.
"""

from __future__ import annotations

import contextlib
import fcntl
import filecmp
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# attest_chain first: it imports the chain libraries under the interpreter's recursion limit and
# restores it (see attest_chain/__init__.py); eth_account alone would leave it at 100,000.
import attest_chain  # noqa: F401

# isort: split
from eth_account import Account
from eth_account.signers.local import LocalAccount

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO / "tests" / "chain"
CACHE = REPO / ".cache" / "anvil"
ANVIL_PACKAGE = "@foundry-rs/anvil-linux-amd64"
ANVIL = CACHE / "node_modules" / ANVIL_PACKAGE / "bin" / "anvil"
NPM_MISSING = "install Node.js/npm (README prerequisites): the anvil tests install anvil with npm"
START_TIMEOUT = 30.0


@dataclass
class Chain:
    """A running chain: where it answers, and funded dev accounts."""

    name: str
    url: str
    chain_id: int
    private_keys: list[str]
    _stop: Callable[[], None] = field(repr=False)

    @property
    def accounts(self) -> list[LocalAccount]:
        return [Account.from_key(key) for key in self.private_keys]

    def stop(self) -> None:
        self._stop()


def rpc(url: str, method: str, *params: Any, timeout: float = 10.0) -> Any:
    """One raw JSON-RPC call (evm_mine, evm_snapshot, ... that web3 has no method for)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.load(response)
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer["result"]


# --------------------------------------------------------------------------- anvil


def anvil_binary() -> Path:
    """The pinned anvil, installed with ``npm ci`` on first use (or after the lock changed)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE.parent / "anvil.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs in one work tree install once
        lock_file = PACKAGE_DIR / "package-lock.json"
        installed_lock = CACHE / "package-lock.json"
        current = (
            ANVIL.exists()
            and installed_lock.exists()
            and filecmp.cmp(lock_file, installed_lock, shallow=False)
        )
        if not current:
            _npm_ci()
    return ANVIL


def _npm_ci() -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(NPM_MISSING, pytrace=False)
    shutil.rmtree(CACHE / "node_modules", ignore_errors=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(PACKAGE_DIR / name, CACHE / name)
    # --ignore-scripts: the package ships its binary; nothing needs to run at install
    result = subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=CACHE, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if result.returncode != 0 or not ANVIL.exists():
        (CACHE / "package-lock.json").unlink(missing_ok=True)
        pytest.fail(
            f"npm ci of {ANVIL_PACKAGE} failed ({result.returncode}): {result.stderr[-2000:]}", pytrace=False
        )


def start_anvil(*extra: str, accounts: int = 20) -> Chain:
    """A private anvil on a free port of 127.0.0.1, with automine; ``extra``: more options
    (e.g. ``"--hardfork", "paris"``)."""
    binary = anvil_binary()
    logdir = Path(tempfile.mkdtemp(prefix="anvil-"))
    log = logdir / "anvil.log"
    command = [str(binary), "--host", "127.0.0.1", "--port", "0", "--slots-in-an-epoch", "1"]
    command += ["--accounts", str(accounts), *extra]
    with open(log, "wb") as out:
        # its log goes to a file: a pipe nobody reads would fill and stall the node
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop() -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(logdir, ignore_errors=True)

    deadline = time.monotonic() + START_TIMEOUT
    url = None
    while url is None:
        text = log.read_text(errors="replace")
        for line in text.splitlines():
            if line.startswith("Listening on "):
                url = "http://" + line.removeprefix("Listening on ").strip()
        if url is None:
            if process.poll() is not None or time.monotonic() > deadline:
                stop()
                pytest.fail(f"anvil did not start ({command}): {text[-2000:]}", pytrace=False)
            time.sleep(0.05)
    try:
        chain_id = int(rpc(url, "eth_chainId"), 16)
        keys = _anvil_keys(text, accounts)
    except Exception:
        stop()
        raise
    return Chain("anvil", url, chain_id, keys, stop)


def _anvil_keys(banner: str, count: int) -> list[str]:
    """The dev accounts' private keys anvil prints at start."""
    section = banner.split("Private Keys", 1)[1]
    keys = [word for word in section.split() if word.startswith("0x") and len(word) == 66]
    if len(keys) < count:
        raise RuntimeError(f"anvil printed {len(keys)} private keys, expected {count}")
    return keys[:count]


# --------------------------------------------------------------------------- dev chain


def start_dev_chain() -> Chain:
    from attest_chain.devchain import start_devchain

    running = start_devchain(accounts=20)
    return Chain("devchain", running.url, running.chain_id, running.private_keys, running.stop)


# --------------------------------------------------------------------------- accounts


def funded_account(chain: Chain, ether: int = 10) -> LocalAccount:
    """A fresh account holding ``ether`` ETH, sent by the chain's first dev account."""
    from attest_chain.client import connect, send_transaction, wait_for_receipt

    w3 = connect(chain.url)
    funder = chain.accounts[0]
    account: LocalAccount = Account.create()
    base_fee = int(w3.eth.get_block("latest")["baseFeePerGas"])  # type: ignore[typeddict-item]
    tx: Any = {
        "to": account.address,
        "value": ether * 10**18,
        "gas": 21000,
        "maxFeePerGas": 2 * base_fee + 10**9,
        "maxPriorityFeePerGas": 10**9,
        "nonce": w3.eth.get_transaction_count(funder.address, "pending"),
        "chainId": chain.chain_id,
    }
    receipt = wait_for_receipt(w3, send_transaction(w3, funder, tx), timeout=30)
    assert receipt["status"] == 1
    return account


# --------------------------------------------------------------------------- fixtures


@contextlib.contextmanager
def _running(start: Callable[[], Chain]) -> Iterator[Chain]:
    chain = start()
    try:
        yield chain
    finally:
        chain.stop()


@pytest.fixture(scope="session")
def devchain() -> Iterator[Chain]:
    with _running(start_dev_chain) as chain:
        yield chain


@pytest.fixture(scope="session")
def anvil() -> Iterator[Chain]:
    with _running(start_anvil) as chain:
        yield chain


@pytest.fixture(scope="session", params=["devchain", "anvil"])
def evm_chain(request: pytest.FixtureRequest) -> Chain:
    chain: Chain = request.getfixturevalue(request.param)
    return chain
