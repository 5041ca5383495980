"""Copying a parsed TOML table into a settings dataclass, checking each name and type.

Unknown keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from edge_agent.errors import AgentError, Exit


def fill(obj: Any, table: Mapping[str, Any], where: str) -> None:
    """Copy ``table`` into the dataclass ``obj``, checking names and types."""
    known = {f.name: f for f in fields(obj)}
    for key, value in table.items():
        if key not in known:
            raise AgentError(
                f"{where}: unknown setting {key!r} (known: {', '.join(sorted(known))})", Exit.USAGE
            )
        current = getattr(obj, key)
        if hasattr(current, "__dataclass_fields__"):
            if not isinstance(value, dict):
                raise AgentError(f"{where}.{key} must be a table", Exit.USAGE)
            fill(current, value, f"{where}.{key}")
            continue
        if isinstance(current, dict):
            setattr(obj, key, _string_table(value, f"{where}.{key}"))
            continue
        if isinstance(current, list) and "str" in str(known[key].type):
            setattr(obj, key, _string_list(value, f"{where}.{key}"))
            continue
        setattr(obj, key, coerce(current, value, f"{where}.{key}"))


def coerce(current: Any, value: Any, where: str) -> Any:
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise AgentError(f"{where} must be true or false, got {value!r}", Exit.USAGE)
        return value
    if isinstance(current, int):
        if not isinstance(value, int) or isinstance(value, bool):
            raise AgentError(f"{where} must be an integer, got {value!r}", Exit.USAGE)
        return value
    if isinstance(current, float):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise AgentError(f"{where} must be a number, got {value!r}", Exit.USAGE)
        return float(value)
    if isinstance(current, Path):
        if not isinstance(value, str) or not value:
            raise AgentError(f"{where} must be a non-empty path, got {value!r}", Exit.USAGE)
        return Path(value)
    if isinstance(current, list):
        if not isinstance(value, list) or not all(isinstance(v, int) and v >= 0 for v in value):
            raise AgentError(f"{where} must be a list of register addresses, got {value!r}", Exit.USAGE)
        return value
    if not isinstance(value, str):
        raise AgentError(f"{where} must be a string, got {value!r}", Exit.USAGE)
    return value


def _string_table(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise AgentError(f'{where} must be a table of "name" = "text", got {value!r}', Exit.USAGE)
    return dict(value)


def _string_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AgentError(f"{where} must be a list of strings, got {value!r}", Exit.USAGE)
    return list(value)
