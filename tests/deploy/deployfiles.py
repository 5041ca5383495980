"""Reading the deployment files the way their consumers do: Docker Compose and Docker.  Only
what the tests need, but with the real rules for it (Compose variable interpolation, bind
mounts, Dockerfile instructions)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
MOSQUITTO_DIR = REPO / "deploy" / "mosquitto"

# ---------------------------------------------------------------------------- Compose

# $$ | ${NAME} | ${NAME:-default} | ${NAME-default} | ${NAME:?err} | ${NAME?err} | $NAME
_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(ValueError):
    pass


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable interpolation of one string."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        value = env.get(name)
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op in (":?", "?") and (value is None or (op == ":?" and not value)):
            raise InterpolationError(f"${{{name}}} is required: {arg}")
        return value or ""

    return _VAR.sub(substitute, text)


def variables(text: str) -> list[tuple[str, str | None]]:
    """Every interpolated variable in ``text``: (name, operator or None)."""
    return [(m["braced"] or m["bare"], m["op"]) for m in _VAR.finditer(text) if not m["escaped"]]


def resolve(obj: Any, env: Mapping[str, str]) -> Any:
    if isinstance(obj, str):
        return interpolate(obj, env)
    if isinstance(obj, list):
        return [resolve(v, env) for v in obj]
    if isinstance(obj, dict):
        return {k: resolve(v, env) for k, v in obj.items()}
    return obj


def raw_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


def load_compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml with its variables resolved against ``env`` (default: none set)."""
    resolved: dict[str, Any] = resolve(raw_compose(), env or {})
    return resolved


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment, from either of Compose's two forms."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        out: dict[str, str] = {}
        for item in env:
            name, _, value = str(item).partition("=")
            out[name] = value
        return out
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def command(service: Mapping[str, Any]) -> list[str]:
    cmd = service.get("command")
    if cmd is None:
        return []
    if isinstance(cmd, str):
        return shlex.split(cmd)
    return [str(c) for c in cmd]


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool

    @property
    def is_bind(self) -> bool:
        return self.source.startswith((".", "/", "~"))

    def host_path(self) -> Path:
        assert self.is_bind
        return (REPO / self.source).resolve() if not self.source.startswith("/") else Path(self.source)


def mounts(service: Mapping[str, Any]) -> list[Mount]:
    out = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            out.append(
                Mount(str(volume["source"]), str(volume["target"]), bool(volume.get("read_only", False)))
            )
            continue
        parts = str(volume).split(":")
        assert 2 <= len(parts) <= 3, f"volume {volume!r} is not SOURCE:TARGET[:MODE]"
        mode = parts[2].split(",") if len(parts) == 3 else []
        out.append(Mount(parts[0], parts[1], "ro" in mode))
    return out


def mount_of(service: Mapping[str, Any], container_path: str) -> tuple[Mount, PurePosixPath] | None:
    """The mount that holds ``container_path`` (the longest matching target) and the
    path relative to that mount's target."""
    path = PurePosixPath(container_path)
    best: tuple[Mount, PurePosixPath] | None = None
    for mount in mounts(service):
        target = PurePosixPath(mount.target)
        if path == target or target in path.parents:
            rel = path.relative_to(target)
            if best is None or len(PurePosixPath(best[0].target).parts) < len(target.parts):
                best = (mount, rel)
    return best


def host_file(service: Mapping[str, Any], container_path: str) -> Path:
    """The repository file that a bind mount puts at ``container_path``."""
    found = mount_of(service, container_path)
    assert found is not None, f"{container_path} is not on any volume of the service"
    mount, rel = found
    assert mount.is_bind, f"{container_path} is on the named volume {mount.source}, not a repository file"
    return mount.host_path() / rel


def on_named_volume(service: Mapping[str, Any], container_path: str) -> str | None:
    found = mount_of(service, container_path)
    if found is None or found[0].is_bind:
        return None
    return found[0].source


def port_mappings(service: Mapping[str, Any]) -> list[tuple[str | None, int]]:
    """(host part or None, container port) of each published port."""
    out: list[tuple[str | None, int]] = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            out.append((str(port.get("published")), int(port["target"])))
            continue
        text = str(port).split("/")[0]
        host, _, container = text.rpartition(":")
        out.append((host or None, int(container)))
    return out


# ---------------------------------------------------------------------------- Dockerfile


@dataclass(frozen=True)
class Instruction:
    stage: str
    keyword: str
    args: str


def dockerfile_instructions(text: str | None = None) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped, tagged by stage."""
    text = DOCKERFILE.read_text(encoding="utf-8") if text is None else text
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    out = []
    stage = ""
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            stage = words[2] if len(words) >= 3 and words[1].upper() == "AS" else words[0]
        out.append(Instruction(stage, keyword, args.strip()))
    return out


def stage_chain(instructions: list[Instruction], stage: str) -> list[Instruction]:
    """The instructions that build ``stage``, its parent stages first."""
    by_stage: dict[str, list[Instruction]] = {}
    for ins in instructions:
        by_stage.setdefault(ins.stage, []).append(ins)
    assert stage in by_stage, f"the Dockerfile has no stage {stage!r}"
    own = by_stage[stage]
    parent = own[0].args.split()[0]
    return [*stage_chain(instructions, parent), *own] if parent in by_stage else own


def exec_form(args: str) -> list[str]:
    """CMD/ENTRYPOINT arguments: JSON exec form or shell form."""
    import json

    if args.startswith("["):
        value = json.loads(args)
        assert isinstance(value, list)
        return [str(v) for v in value]
    return ["/bin/sh", "-c", args]


def env_pairs(args: str) -> dict[str, str]:
    """ENV NAME=value NAME2=value2 (or the legacy ENV NAME value)."""
    words = shlex.split(args)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return dict(w.split("=", 1) for w in words)


def dockerignore_patterns() -> list[str]:
    path = REPO / ".dockerignore"
    if not path.exists():
        return []
    return [
        line.strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def _docker_glob(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regular expression."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def dockerignored(rel: str, patterns: list[str]) -> bool:
    """Whether the build context leaves out ``rel`` (a pattern matching a parent
    directory leaves out everything in it; later ``!`` patterns take files back)."""
    parts = PurePosixPath(rel).parts
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _docker_glob((pattern[1:] if negate else pattern).strip("/"))
        if any(regex.fullmatch("/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            ignored = not negate
    return ignored
