"""Fixtures of the edge agent tests: the CLI in-process, a fake gateway, an enrolled device."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_agent.cli import main
from tests.edge_agent.fakes import INSTALLER_TOKEN, FakeGateway


@dataclass
class CliResult:
    code: int
    out: str
    err: str


Cli = Callable[..., CliResult]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``python -m edge_agent ARGS`` in this process; return exit code and output."""

    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(autouse=True)
def _quiet_httpx() -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    with FakeGateway() as gw:
        yield gw


@pytest.fixture
def enrolled(tmp_path: Path, cli: Cli, gateway: FakeGateway) -> Path:
    """A device initialised in tmp_path/dev (simulated charger) and enrolled at the fake gateway."""
    home = tmp_path / "dev"
    assert cli("init", "--dir", home, "--meter", "simulated-charger").code == 0
    result = cli(
        "enrol", "--config", home / "agent.toml", "--gateway", gateway.url, "--token", INSTALLER_TOKEN,
        "--asset", "charger-7", "--kind", "charger", "--rated-power", "22000",
    )  # fmt: skip
    assert result.code == 0, result.err
    return home / "agent.toml"
