"""The committed artifact is what the vyper package compiles from contracts/LogAnchor.vy, for the
paris EVM (no PUSH0), and it loads."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from attest_chain import artifact as artifact_module
from attest_chain.artifact import ARTIFACT_NAME, artifact_from_json, artifact_json, load_artifact
from attest_chain.build import ARTIFACT, SOURCE, main
from attest_chain.errors import ArtifactError

PUSH0 = 0x5F
PUSH1, PUSH32 = 0x60, 0x7F


def opcodes(code: bytes) -> list[int]:
    """The opcodes of ``code``, push data skipped (vyper's trailing metadata read as code is
    harmless: it only adds opcodes, so a PUSH0-free result is conservative only up to that)."""
    found = []
    pc = 0
    while pc < len(code):
        op = code[pc]
        found.append(op)
        pc += 1 + (op - PUSH1 + 1 if PUSH1 <= op <= PUSH32 else 0)
    return found


def test_the_committed_artifact_is_a_fresh_compile_of_the_source() -> None:
    """What `python -m attest_chain.build --check` does: recompile with the vyper package, compare."""
    assert main(["--check"]) == 0
    loaded = load_artifact()
    assert loaded.source_sha256 == hashlib.sha256(SOURCE.read_bytes()).hexdigest()
    assert (loaded.compiler, loaded.evm_version, loaded.contract) == ("vyper 0.4.3", "paris", "LogAnchor")


def test_the_code_has_no_push0_so_it_runs_before_shanghai() -> None:
    loaded = load_artifact()
    for code in (loaded.bytecode, loaded.runtime_bytecode):
        assert PUSH0 not in opcodes(bytes.fromhex(code[2:]))


def test_the_abi_is_the_shared_interface() -> None:
    abi = {item.get("name"): item for item in load_artifact().abi}
    signature = {
        name: [i["type"] for i in abi[name]["inputs"]]
        for name in ("setLogKey", "anchor", "logKey", "latest", "anchorAt", "LogKeySet", "Anchored")
    }
    assert signature == {
        "setLogKey": ["string", "string"],
        "anchor": ["string", "uint256", "bytes32", "bytes32", "bytes32[]"],
        "logKey": ["address", "string"],
        "latest": ["address", "string"],
        "anchorAt": ["address", "string", "uint256"],
        "LogKeySet": ["address", "bytes32", "string", "string", "string"],
        "Anchored": ["address", "bytes32", "uint256", "uint256", "bytes32", "bytes32", "uint256"],
    }
    assert [o["type"] for o in abi["latest"]["outputs"]] == ["uint256", "uint256", "bytes32", "bytes32"]
    assert [o["type"] for o in abi["anchorAt"]["outputs"]] == ["uint256", "bytes32", "bytes32", "uint256"]
    assert [i["name"] for i in abi["Anchored"]["inputs"] if i["indexed"]] == ["operator", "origin_hash"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("abi"), "exactly the fields"),
        (lambda d: d.update(extra=1), "exactly the fields"),
        (lambda d: d.update(abi={}), "abi must be a list"),
        (lambda d: d.update(bytecode="6001"), "bytecode is not 0x-prefixed hex"),
        (lambda d: d.update(runtime_bytecode="0xzz"), "runtime_bytecode is not 0x-prefixed hex"),
    ],
)
def test_a_malformed_artifact_is_refused_by_name(change: object, message: str) -> None:
    data = json.loads(artifact_json(load_artifact()))
    change(data)  # type: ignore[operator]
    with pytest.raises(ArtifactError, match=message):
        artifact_from_json(data)


def test_the_artifact_ships_in_the_package() -> None:
    """A non-editable install carries LogAnchor.json: pyproject.toml lists it as package data."""
    import tomllib

    with open(SOURCE.parents[1] / "pyproject.toml", "rb") as fh:
        package_data = tomllib.load(fh)["tool"]["setuptools"]["package-data"]
    assert ARTIFACT_NAME in package_data["attest_chain"]
    assert ARTIFACT.parent.samefile(Path(artifact_module.__file__).parent)
