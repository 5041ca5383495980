"""deploy/gateway/ and the systemd units: they parse, and they agree with the code
and with each other."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from edge_agent.cli import build_parser as agent_parser
from gateway.__main__ import build_parser as gateway_parser
from gateway.config import Settings, load_settings
from gateway.errors import ConfigError
from tests.deploy.deployfiles import REPO

GATEWAY_DIR = REPO / "deploy" / "gateway"
GATEWAY_UNIT = GATEWAY_DIR / "iot-attest-gateway.service"
AGENT_UNIT = REPO / "deploy" / "pi" / "iot-attest-agent.service"
EXAMPLE = GATEWAY_DIR / "gateway.example.toml"
INSTALL = GATEWAY_DIR / "INSTALL.md"
DSN = "postgresql://iot_attest:secret@127.0.0.1:5432/iot_attest"

# ---------------------------------------------------------------------------- systemd


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file as (key, value) lists (keys may repeat), continuation lines joined."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if not pending and (not stripped or stripped[0] in "#;"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        stripped, pending = pending + stripped, ""
        if stripped.startswith("[") and stripped.endswith("]"):
            current = sections.setdefault(stripped[1:-1], [])
            continue
        assert current is not None, f"{path.name}:{number}: a setting outside any section"
        key, eq, value = stripped.partition("=")
        assert eq, f"{path.name}:{number}: not KEY=VALUE: {stripped!r}"
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", key.strip()), f"{path.name}:{number}: bad key {key!r}"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def one(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key} should be set once, found {found}"
    return found[0]


def with_programs_here(path: Path, tmp_path: Path) -> Path:
    """A copy of the unit whose Exec* programs exist on this machine (systemd-analyze refuses
    programs that are missing, and the venv is only on the target)."""
    stand_in = shutil.which("true") or "/bin/true"
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"(Exec[A-Za-z]+=[-@:+!]*)(\S+)(.*)", line)
        lines.append(f"{match[1]}{stand_in}{match[3]}" if match else line)
    copy = tmp_path / path.name
    copy.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return copy


def systemd_analyze() -> str:
    """systemd's own checker: the units are checked by it or the test fails, never skipped."""
    path = shutil.which("systemd-analyze") or shutil.which("systemd-analyze", path="/usr/bin:/bin")
    if path is None:
        pytest.fail("systemd-analyze is not installed (apt install systemd): the units cannot be checked")
    return path


@pytest.mark.parametrize("path", [GATEWAY_UNIT, AGENT_UNIT], ids=lambda p: p.name)
def test_systemd_rates_the_units_sandbox_ok(path: Path, tmp_path: Path) -> None:
    """systemd's own assessment of the unit's sandbox (user, capabilities, file system, system calls)."""
    analyze = systemd_analyze()
    copy = with_programs_here(path, tmp_path)
    result = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", str(copy)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    rating = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", result.stdout)
    assert rating is not None, result.stdout + result.stderr
    assert rating[2] in ("PERFECT", "SAFE", "OK"), f"systemd rates {path.name} {rating[1]} {rating[2]}"


@pytest.mark.parametrize("path", [GATEWAY_UNIT, AGENT_UNIT], ids=lambda p: p.name)
def test_unit_verifies(path: Path, tmp_path: Path) -> None:
    """systemd-analyze verify, on a copy whose Exec* programs exist on this machine
    (it refuses programs that are missing, and the venv is only on the target)."""
    analyze = systemd_analyze()
    copy = with_programs_here(path, tmp_path)
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, output
    assert output == "", f"systemd-analyze complains:\n{output}"


def test_gateway_unit_runs_the_gateway_with_its_files(database: str, tmp_path: Path) -> None:
    """The unit's command line, with the example config, run here (python and paths moved under
    tmp_path, the command `migrate` instead of `run`): it reads the config and migrates a real database."""
    unit = parse_unit(GATEWAY_UNIT)
    exec_start = shlex.split(one(unit, "Service", "ExecStart"))
    assert exec_start[0].endswith("/bin/python")
    args = gateway_parser().parse_args(exec_start[3:])
    config = args.config
    state = "/var/lib/" + one(unit, "Service", "StateDirectory")
    example = EXAMPLE.read_text(encoding="utf-8")
    assert state in example, "the example config keeps its files in the unit's state directory"
    here = tmp_path / "gateway.toml"
    here.write_text(example.replace(state, str(tmp_path)), encoding="utf-8")
    command = [sys.executable, *[str(here) if a == config else a for a in exec_start[1:]]]
    command[command.index("run")] = "migrate"
    env = {**os.environ, "DATABASE_URL": database}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "001_initial.sql" in result.stdout
    # the log key the example config names is created in the state directory by keygen
    key = subprocess.run([sys.executable, "-m", "gateway", "--config", str(here), "keygen"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert key.returncode == 0, key.stderr
    assert (tmp_path / "gateway-log.key").is_file()
    # the install procedure creates exactly these
    user = one(unit, "Service", "User")
    assert one(unit, "Service", "Group") == user
    assert one(unit, "Service", "WorkingDirectory") == state
    install = INSTALL.read_text(encoding="utf-8")
    for text in (user, config, one(unit, "Service", "EnvironmentFile").lstrip("-"), exec_start[0]):
        assert text in install, f"INSTALL.md does not mention {text}"
    assert f"deploy/gateway/{GATEWAY_UNIT.name}" in install


def test_agent_unit_runs_the_agent() -> None:
    unit = parse_unit(AGENT_UNIT)
    exec_start = shlex.split(one(unit, "Service", "ExecStart"))
    assert exec_start[1:3] == ["-m", "edge_agent"]
    assert agent_parser().parse_args(exec_start[3:]).command == "run"


# ---------------------------------------------------------------------------- the example config


def test_example_config_has_every_setting() -> None:
    with open(EXAMPLE, "rb") as fh:
        table = tomllib.load(fh)["gateway"]
    names = set(Settings.model_fields)
    assert set(table) == names, (
        f"missing: {sorted(names - set(table))}, unknown: {sorted(set(table) - names)}"
    )
    text = EXAMPLE.read_text(encoding="utf-8")
    for name in names:
        # every setting is explained: a comment right above it
        before = text[: re.search(rf"^(\[gateway\.)?{name}\b", text, re.MULTILINE).start()]  # type: ignore[union-attr]
        assert before.rstrip("\n").splitlines()[-1].startswith("#") or name == "api_port", (
            f"{name} has no comment above it"
        )


def test_example_config_loads() -> None:
    settings = load_settings(EXAMPLE, env={"DATABASE_URL": DSN})
    assert settings.database_url == DSN
    defaults = Settings()
    for name in Settings.model_fields:
        assert type(getattr(settings, name)) is type(getattr(defaults, name)), name
    # without a database it says so, instead of starting with none
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_settings(EXAMPLE, env={})


def test_example_token_tables_load_when_uncommented(tmp_path: Path) -> None:
    """The commented [gateway.tokens.<name>] examples are valid once uncommented."""
    text = EXAMPLE.read_text(encoding="utf-8")
    uncommented = []
    for line in text.splitlines():
        match = re.match(r"#\s?(\[gateway\.tokens\.[^\]]+\]|role = .*|sha256 = .*)$", line)
        uncommented.append(match[1] if match else line)
    tokens = tomllib.loads("\n".join(uncommented))["gateway"]["tokens"]
    assert tokens, "the example shows no token"
    roles = set()
    for name, spec in tokens.items():
        assert set(spec) == {"role", "sha256"}, name
        roles.add(spec["role"])
    assert roles == {"installer", "operator", "issuer", "auditor"}
    # with real hashes in place of the placeholders, the gateway accepts them
    filled = tmp_path / "gateway.toml"
    lines = [
        f'sha256 = "{hashlib.sha256(str(n).encode()).hexdigest()}"' if line.startswith("sha256 =") else line
        for n, line in enumerate(uncommented)
    ]
    filled.write_text("\n".join(lines), encoding="utf-8")
    assert set(load_settings(filled, env={"DATABASE_URL": DSN}).tokens) == set(tokens)


def test_compose_config_loads() -> None:
    settings = load_settings(GATEWAY_DIR / "compose.toml", env={"DATABASE_URL": DSN})
    assert settings.tokens


def test_install_procedure_names_existing_files() -> None:
    for doc in (INSTALL, REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))):
        for path in set(re.findall(r"\b(deploy/[\w./-]*\w)", doc.read_text(encoding="utf-8"))):
            assert (REPO / path).exists(), f"{doc.name} names {path}, which does not exist"


def test_python_runs_the_modules_the_units_name() -> None:
    """`python -m gateway --help` and `python -m edge_agent --help` work (what ExecStart runs)."""
    for module in ("gateway", "edge_agent"):
        result = subprocess.run(
            [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60, cwd=REPO
        )
        assert result.returncode == 0, result.stderr
