"""The compiled LogAnchor contract committed beside this module (LogAnchor.json).

``python -m attest_chain.build`` regenerates it from contracts/LogAnchor.vy with the vyper
package; a test recompiles and compares, so the bytecode here is the source's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from attest_chain.errors import ArtifactError

ARTIFACT_NAME = "LogAnchor.json"
FIELDS = ("contract", "compiler", "evm_version", "source_sha256", "abi", "bytecode", "runtime_bytecode")


@dataclass(frozen=True)
class Artifact:
    contract: str
    """The contract's name: "LogAnchor"."""
    compiler: str
    """E.g. "vyper 0.4.3"."""
    evm_version: str
    """The EVM version it was compiled for: "paris" (no PUSH0)."""
    source_sha256: str
    """Hex SHA-256 of the exact bytes of contracts/LogAnchor.vy it was compiled from."""
    abi: list[dict[str, Any]]
    bytecode: str
    """Creation code, "0x" + hex."""
    runtime_bytecode: str
    """The code a deployment leaves at its address, "0x" + hex."""


def artifact_from_json(data: object) -> Artifact:
    """An :class:`Artifact` from the parsed JSON document, checking every field's type."""
    if not isinstance(data, dict) or set(data) != set(FIELDS):
        raise ArtifactError(f"{ARTIFACT_NAME} must be an object with exactly the fields {', '.join(FIELDS)}")
    for name in FIELDS:
        wanted: type = list if name == "abi" else str
        if not isinstance(data[name], wanted):
            raise ArtifactError(f"{ARTIFACT_NAME}: {name} must be a {wanted.__name__}")
    for name in ("bytecode", "runtime_bytecode"):
        code = data[name]
        if not code.startswith("0x") or len(code) % 2 or not _is_hex(code[2:]):
            raise ArtifactError(f"{ARTIFACT_NAME}: {name} is not 0x-prefixed hex")
    return Artifact(**{name: data[name] for name in FIELDS})


def artifact_json(artifact: Artifact) -> str:
    """The file's exact text (sorted keys, two-space indent, final newline): what the build writes."""
    data = {name: getattr(artifact, name) for name in FIELDS}
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


@cache
def load_artifact() -> Artifact:
    """The committed artifact, read once."""
    try:
        text = resources.files("attest_chain").joinpath(ARTIFACT_NAME).read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read {ARTIFACT_NAME}: {exc}") from exc
    return artifact_from_json(data)


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True
