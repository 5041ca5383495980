"""Importing the chain libraries leaves the interpreter's recursion limit as it was.

web3 (through py_ecc) and py-evm raise it to 100,000 on import; json's C parser then overflows the C
stack on deeply nested input and the process dies (SIGSEGV) instead of refusing it. Each process that
anchors or checks anchors parses untrusted JSON: a gateway's requests, a verifier's bundles.
"""

from __future__ import annotations

import subprocess
import sys

from tests.services import REPO

PROBE = """
import sys
limit = sys.getrecursionlimit()
import {modules}
from attest_chain.devchain import start_devchain
start_devchain().stop()
assert sys.getrecursionlimit() == limit, (limit, sys.getrecursionlimit())
from attest_core.bundle import parse_bundle
from attest_core.errors import BundleError
try:
    parse_bundle(b"[" * 100_000)
except BundleError as exc:
    print(exc.code)
"""


def test_the_chain_libraries_leave_the_recursion_limit_and_deep_json_is_refused() -> None:
    modules = "attest_chain.client, attest_chain.finality, attest_chain.deploy, web3, eth_tester"
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(modules=modules)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "bad_json"
