"""The chain test set-up itself: anvil is the pinned npm package, and without npm the tests fail
saying what to install (never skip)."""

from __future__ import annotations

import json

import pytest

from attest_chain import errors
from tests import chain_support
from tests.chain_support import ANVIL, NPM_MISSING, Chain, rpc


def test_anvil_is_the_pinned_package(anvil: Chain) -> None:
    lock = json.loads((chain_support.PACKAGE_DIR / "package-lock.json").read_text())
    pinned = lock["packages"][f"node_modules/{chain_support.ANVIL_PACKAGE}"]["version"]
    assert pinned == "1.7.1"
    assert rpc(anvil.url, "web3_clientVersion") == f"anvil/v{pinned}"
    assert ANVIL.is_relative_to(chain_support.REPO / ".cache")


def test_without_npm_the_install_fails_saying_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(pytest.fail.Exception, match=r"install Node.js/npm \(README prerequisites\)"):
        chain_support._npm_ci()
    assert "install Node.js/npm (README prerequisites)" in NPM_MISSING
    assert ANVIL.exists()  # nothing was removed on the way


def test_every_exception_of_attest_chain_derives_from_chain_error() -> None:
    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, BaseException)]
    assert len(classes) > 5
    assert all(issubclass(c, errors.ChainError) for c in classes)
