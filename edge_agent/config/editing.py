"""Changing settings in an existing config file, keeping everything else as written.

The installer may have edited and commented the file: tomlkit keeps every
comment, blank line and alignment, and only the named values change (a missing
key is added at the end of its table, a missing table at the end of the file).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge_agent.errors import AgentError
from edge_agent.files import write_private_file


def update_config(path: Path, section: str, values: Mapping[str, str | int | float | bool]) -> None:
    """Set ``key = value`` inside ``[section]`` (dotted for sub-tables, e.g. ``meter.s0``).

    The result is re-parsed before it replaces the file.
    """
    # Imported here: only init and enrol edit the file, and `run` (whose memory the
    # benchmark measures) should not carry the library.
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    text = path.read_text(encoding="utf-8")
    try:
        document = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise AgentError(f"could not update {path}: it is not valid TOML ({exc})") from None
    table: Any = document
    for part in section.split("."):
        if part not in table:
            table[part] = tomlkit.table()
        table = table[part]
    for key, value in values.items():
        table[key] = value
    new_text = tomlkit.dumps(document)
    try:
        parsed = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError as exc:  # pragma: no cover - tomlkit writes valid TOML
        raise AgentError(f"could not update {path}: the result is not valid TOML ({exc})") from None
    check: Any = parsed
    for part in section.split("."):
        check = check.get(part, {})
    for key, value in values.items():
        if check.get(key) != value:  # pragma: no cover - defensive
            raise AgentError(f"could not update {path}: {section}.{key} did not take the new value")
    write_private_file(path, new_text.encode("utf-8"), exclusive=False)
