"""The core does protocol, not execution: no module of attest_core imports anything
that does I/O, concurrency or timing, and none reads the clock or opens a file.

The scan reads every module's source (every ``import`` and ``from ... import``,
also those inside functions), so a lazy import is caught too.  Where the work
runs, how long it takes and what it reads or writes belong to the shells
(gateway/, edge_agent/, verifier/), which pass the core what it needs.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "attest_core"

FORBIDDEN = {
    # I/O: files, processes, the network, the terminal
    "io",
    "os",
    "pathlib",
    "shutil",
    "tempfile",
    "glob",
    "fileinput",
    "mmap",
    "socket",
    "ssl",
    "select",
    "selectors",
    "http",
    "urllib.request",
    "urllib.error",
    "email",
    "smtplib",
    "ftplib",
    "subprocess",
    "signal",
    "sqlite3",
    "logging",
    "getpass",
    "sys",
    # concurrency
    "asyncio",
    "threading",
    "_thread",
    "concurrent",
    "multiprocessing",
    "queue",
    "sched",
    # timing and the runtime
    "time",
    "timeit",
    "gc",
    "resource",
    "random",
    "secrets",
}
"""Module names (and their submodules) the core must not import.

``random`` and ``secrets`` read entropy, which is the caller's to supply (keys come
in as :class:`attest_core.keys.Signer`).  ``urllib.parse`` is allowed: it only
takes strings apart (note.py uses it for key names).  ``datetime`` is allowed for
conversions; reading the clock with it is caught by :data:`CLOCK_CALLS`.
"""

THIRD_PARTY = {"nacl", "astral", "cryptography"}
"""The only libraries the core may use: Ed25519 (libsodium), the sun's position, and ECDSA of
meter-signed records (pyca/cryptography, its key loading and verification only).  All compute
and do no I/O; anything else new must be looked at and added here."""

CLOCK_CALLS = {"now", "utcnow", "today"}
"""Attribute calls that read the clock (``datetime.now()`` and the like)."""

STDLIB = set(sys.stdlib_module_names)


def _modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            # "from urllib import request" imports urllib.request
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return found


def _forbidden(name: str) -> bool:
    parts = name.split(".")
    return any(".".join(parts[:n]) in FORBIDDEN for n in range(1, len(parts) + 1))


def test_the_scan_sees_every_module() -> None:
    names = {p.relative_to(CORE).as_posix() for p in _modules()}
    assert {"bundle/verify.py", "merkle/verify.py", "reading.py", "note.py"} <= names
    assert all(map(_forbidden, ["concurrent.futures", "os.path", "urllib.request", "time"]))
    assert not any(map(_forbidden, ["urllib.parse", "osx", "timeit_like"]))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(CORE).as_posix())
def test_the_core_imports_nothing_that_does_io_concurrency_or_timing(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    wrong = []
    for line, name in _imports(tree):
        top = name.split(".")[0]
        if _forbidden(name):
            wrong.append(f"line {line}: {name}")
        elif top not in STDLIB | THIRD_PARTY | {"attest_core"}:
            wrong.append(f"line {line}: {name} (not a library the core may use)")
    assert wrong == [], f"{path.name} imports what the core must not: {wrong}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(CORE).as_posix())
def test_the_core_reads_no_clock_and_opens_no_file(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    wrong = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id in {"open", "input", "print", "breakpoint"}:
            wrong.append(f"line {node.lineno}: {node.func.id}()")
        if isinstance(node.func, ast.Attribute) and node.func.attr in CLOCK_CALLS:
            wrong.append(f"line {node.lineno}: .{node.func.attr}()")
    assert wrong == [], f"{path.name}: {wrong}"
