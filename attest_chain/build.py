"""Compile contracts/LogAnchor.vy with the vyper package into attest_chain/LogAnchor.json.

    python -m attest_chain.build           # write the artifact
    python -m attest_chain.build --check   # exit 1 if the committed artifact differs

The compiler is the pinned vyper of the dev extra, imported as a library: nothing is downloaded.
The EVM version comes from the source's own ``#pragma evm-version`` (paris).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from attest_chain.artifact import ARTIFACT_NAME, Artifact, artifact_json

PACKAGE = Path(__file__).resolve().parent
SOURCE = PACKAGE.parent / "contracts" / "LogAnchor.vy"
ARTIFACT = PACKAGE / ARTIFACT_NAME


def compile_source(path: Path = SOURCE) -> Artifact:
    """The artifact of the Vyper source at ``path``."""
    import vyper  # the dev extra only: the runtime never compiles
    from vyper.compiler import compile_code

    source = path.read_bytes()
    text = source.decode("utf-8")
    out = compile_code(
        text, contract_path=path.name, output_formats=["abi", "bytecode", "bytecode_runtime", "settings_dict"]
    )
    evm_version = out["settings_dict"].get("evm_version")
    if evm_version != "paris":
        raise SystemExit(f"{path.name} compiled for EVM version {evm_version!r}, expected paris (its pragma)")
    return Artifact(
        contract=path.stem,
        compiler=f"vyper {vyper.__version__}",
        evm_version=evm_version,
        source_sha256=hashlib.sha256(source).hexdigest(),
        abi=out["abi"],
        bytecode=out["bytecode"],
        runtime_bytecode=out["bytecode_runtime"],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m attest_chain.build", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--check", action="store_true", help="compare with the committed artifact, write nothing"
    )
    args = parser.parse_args(argv)
    text = artifact_json(compile_source())
    if args.check:
        current = ARTIFACT.read_text(encoding="utf-8") if ARTIFACT.exists() else ""
        if current != text:
            print(f"{ARTIFACT} differs from a fresh compile of {SOURCE.name}: run python -m attest_chain.build",
                  file=sys.stderr)  # fmt: skip
            return 1
        return 0
    ARTIFACT.write_text(text, encoding="utf-8")
    print(f"wrote {ARTIFACT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
