"""The agent's former hand-written config editor, kept only as the oracle of test_init_config.

``update_config`` now edits through tomlkit; for the edits the agent and the
tests make (values of keys the template writes) both must give the same text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping


def _literal(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=True)


def edit_lines(text: str, section: str, values: Mapping[str, str | int | float | bool]) -> str:
    """Set ``key = value`` lines inside ``[section]``, line by line, keeping each line's comment."""
    lines = text.splitlines(keepends=True)
    header = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")
    start = next(
        (i for i, line in enumerate(lines) if (m := header.match(line)) and m.group(1).strip() == section),
        None,
    )
    if start is None:
        lines.append(f"\n[{section}]\n")
        start = len(lines) - 1
    end = next((i for i in range(start + 1, len(lines)) if header.match(lines[i])), len(lines))
    for key, value in values.items():
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        for i in range(start + 1, end):
            if pattern.match(lines[i]):
                comment = ""
                if (m := re.search(r"\s+#[^\"]*$", lines[i])) is not None:
                    comment = m.group(0).rstrip("\n")
                lines[i] = f"{key} = {_literal(value)}{comment}\n"
                break
        else:
            lines.insert(start + 1, f"{key} = {_literal(value)}\n")
            end += 1
    return "".join(lines)
