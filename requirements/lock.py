"""The lock files in this folder: which extras of pyproject.toml each one pins, for which Python and
platform, and the fingerprint of those inputs written into its header.

    python3 requirements/lock.py            # regenerate every lock (what `make lock` runs; needs uv)
    python3 requirements/lock.py --upgrade  # the same, every pin moved to the newest allowed version
    python3 requirements/lock.py --check    # exit 1, naming the file, if a lock no longer matches

The fingerprint is the SHA-256 of the dependency lists the lock was resolved from (the base
dependencies, the chosen extras and requires-python, each list sorted, spaces dropped), so a check
needs neither the network nor a resolver: a changed list in pyproject.toml means a stale lock.
Standard library only, so that the Makefile can run the check before the venv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYPROJECT = ROOT / "pyproject.toml"
PYTHON = "3.11"
FINGERPRINT = re.compile(r"^# inputs-sha256: ([0-9a-f]{64})$", re.MULTILINE)


@dataclass(frozen=True)
class Lock:
    name: str
    extras: tuple[str, ...]
    platform: str
    """uv's --python-platform: the machine the lock is resolved for."""
    hashes: bool
    purpose: str

    @property
    def path(self) -> Path:
        return HERE / self.name


LOCKS = (
    Lock(
        "dev.txt",
        ("edge", "gateway", "demo", "dev"),
        "x86_64-unknown-linux-gnu",
        True,
        "make venv (make test, demo, bench)",
    ),
    Lock("gateway.txt", ("gateway",), "x86_64-unknown-linux-gnu", True, "the Dockerfile's gateway image"),
    Lock("edge.txt", ("edge",), "x86_64-unknown-linux-gnu", True, "the Dockerfile's simulator image"),
    # Raspberry Pi OS installs from piwheels, whose wheels (built by piwheels, not the projects) have
    # other hashes than PyPI's: exact versions there, no hashes. Resolved for 64-bit Pi OS; write_lock()
    # refuses a pin with an environment marker, so the same pins hold on 32-bit Pi OS (armv7) too.
    Lock("pi.txt", ("edge",), "aarch64-unknown-linux-gnu", False, "deploy/pi/install.sh (Raspberry Pi OS)"),
)


def project() -> dict[str, object]:
    with open(PYPROJECT, "rb") as fh:
        data: dict[str, object] = tomllib.load(fh)["project"]
    return data


def _normal(requirements: list[str]) -> list[str]:
    return sorted({re.sub(r"\s+", "", r).lower() for r in requirements})


def inputs(extras: tuple[str, ...]) -> dict[str, object]:
    """What a lock of ``extras`` is resolved from."""
    meta = project()
    optional: dict[str, list[str]] = meta.get("optional-dependencies", {})  # type: ignore[assignment]
    missing = [e for e in extras if e not in optional]
    if missing:
        raise SystemExit(f"pyproject.toml has no extra {', '.join(missing)}")
    return {
        "requires-python": meta.get("requires-python", ""),
        "dependencies": _normal(meta.get("dependencies", [])),  # type: ignore[arg-type]
        "extras": {e: _normal(optional[e]) for e in extras},
    }


def fingerprint(lock: Lock) -> str:
    data = {"inputs": inputs(lock.extras), "python": PYTHON, "platform": lock.platform, "hashes": lock.hashes}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def stale(lock: Lock) -> str | None:
    """Why ``lock`` does not match pyproject.toml, or None."""
    if not lock.path.exists():
        return f"{lock.path.relative_to(ROOT)} is missing"
    found = FINGERPRINT.search(lock.path.read_text(encoding="utf-8"))
    if found is None or found[1] != fingerprint(lock):
        return f"{lock.path.relative_to(ROOT)} was resolved from other dependency lists than pyproject.toml's"
    return None


def compile_lock(lock: Lock, platform: str, output: Path, upgrade: bool) -> None:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        raise SystemExit("lock.py: uv is not installed (pip install uv, or make lock)")
    command = [uv, "pip", "compile", str(PYPROJECT), "--quiet", "--python-version", PYTHON]
    command += [
        "--python-platform",
        platform,
        "--output-file",
        str(output),
        "--custom-compile-command",
        "make lock",
    ]
    command += [f"--extra={e}" for e in lock.extras]
    if lock.hashes:
        command.append("--generate-hashes")
    # without --upgrade, uv keeps the pins already in the output file wherever they still fit:
    # adding one dependency does not move all the others
    if upgrade:
        command.append("--upgrade")
    subprocess.run(command, check=True, cwd=ROOT)  # noqa: S603 - uv with our own arguments


def pins(path: Path) -> dict[str, str]:
    """name -> version of every ``name==version`` line."""
    found = re.findall(
        r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", path.read_text(encoding="utf-8"), re.MULTILINE
    )
    return {re.sub(r"[-_.]+", "-", n).lower(): v for n, v in found}


def write_lock(lock: Lock, upgrade: bool) -> None:
    compile_lock(lock, lock.platform, lock.path, upgrade)
    if not lock.hashes and re.search(r"^[A-Za-z0-9].*;", lock.path.read_text(encoding="utf-8"), re.MULTILINE):
        raise SystemExit(
            f"{lock.name}: a pin depends on the platform; the Pi needs one lock per platform now"
        )
    header = (
        f"# Lock of {'+'.join(lock.extras)} for {lock.purpose}: Python {PYTHON} on {lock.platform}"
        f"{', with hashes' if lock.hashes else ', exact versions without hashes (piwheels)'}.\n"
        f"# Regenerate with `make lock` whenever a dependency list in pyproject.toml changes;\n"
        f"# tests/test_lock.py fails while this fingerprint of those lists is out of date.\n"
        f"# inputs-sha256: {fingerprint(lock)}\n"
    )
    lock.path.write_text(header + lock.path.read_text(encoding="utf-8"), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="requirements/lock.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="only check that every lock matches pyproject.toml"
    )
    parser.add_argument("--upgrade", action="store_true", help="every pin to the newest allowed version")
    parser.add_argument("names", nargs="*", help="only these locks (e.g. dev.txt)")
    args = parser.parse_args(argv)
    chosen = [lock for lock in LOCKS if not args.names or lock.name in args.names]
    if args.check:
        problems = [p for p in map(stale, chosen) if p]
        for problem in problems:
            print(f"{problem}: run `make lock` (and commit the result)", file=sys.stderr)
        return 1 if problems else 0
    for lock in chosen:
        print(f"resolving {lock.path.relative_to(ROOT)}", file=sys.stderr)
        write_lock(lock, args.upgrade)
    return 0


if __name__ == "__main__":
    sys.exit(main())
