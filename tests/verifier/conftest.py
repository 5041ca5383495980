"""Real bundles, checkpoints and keys on disk for the verifier's tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from attest_core.note import NoteSigner
from attest_core.verdict import EvidenceKind
from tests.core.test_bundle import HONEST, Fleet
from tests.support import seeded_signer
from verifier.cli import main

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Files:
    fleet: Fleet
    dir: Path
    log_key: Path
    """log-key.txt: the log's verifier key string, with a trailing newline."""
    other_key: str
    """A well-formed verifier key of the same name that did not sign anything."""
    honest: Path
    """Boundary bundle of an honest claim (exit 0)."""
    full: Path
    """Full bundle (every reading) of the same honest claim (exit 0)."""
    overclaim: Path
    """Boundary bundle of a claim one cent above what is attested (exit 1)."""


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    fleet = Fleet()
    d = tmp_path_factory.mktemp("evidence")
    honest = fleet.claim_index(*HONEST)
    (d / "honest.json").write_bytes(
        fleet.log.bundle_bytes(honest, fleet.boundary(honest), EvidenceKind.BOUNDARY)
    )
    # a v1 bundle (of a v1 claim entry, as a v1 gateway wrote it) holding every reading
    honest_v1 = fleet.claim_index(*HONEST, v1=True)
    (d / "full.json").write_bytes(fleet.log.bundle_bytes(honest_v1, fleet.full()))
    over = fleet.claim_index(HONEST[0], "77.01")
    (d / "overclaim.json").write_bytes(
        fleet.log.bundle_bytes(over, fleet.boundary(over), EvidenceKind.BOUNDARY)
    )
    (d / "log-key.txt").write_text(fleet.log.key.to_string() + "\n")
    other = NoteSigner(fleet.log.origin, seeded_signer("impostor")).verifier_key().to_string()
    return Files(fleet, d, d / "log-key.txt", other, d / "honest.json", d / "full.json", d / "overclaim.json")


Cli = Callable[..., Result]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``main(argv)`` in this process: returns a :class:`Result`."""

    def run(*argv: str | Path) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def run_process(*argv: str | Path, cwd: Path | None = None) -> Result:
    """Run ``python -m verifier`` as a real process."""
    proc = subprocess.run(
        [sys.executable, "-m", "verifier", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd or ROOT,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)
