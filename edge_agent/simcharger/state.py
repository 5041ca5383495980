"""What the simulated meter keeps between runs, as a real meter keeps it in non-volatile memory:
its register and its next pagination number.

A Pi's agent (and the gateway after it) refuses a register that goes back or a pagination number
that does not rise, so an installer who runs ``python -m edge_agent.simcharger`` twice against
the same device must see the meter continue where it stopped, not start again at ``T1`` and 0 Wh.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from edge_agent.errors import Exit
from edge_agent.files import write_private_file
from edge_agent.simcharger.errors import SimChargerError


@dataclass
class MeterState:
    next_page: int
    register_wh: int


def default_state_path(charge_point_id: str, seed: str) -> Path:
    """``$XDG_STATE_HOME/iot-attest-simcharger/<id>-<seed digest>.json`` (one file per meter)."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    name = re.sub(r"[^A-Za-z0-9._-]", "_", charge_point_id)[:64]
    digest = hashlib.sha256(seed.encode("utf-8")).hexdigest()[:12]
    return base / "iot-attest-simcharger" / f"{name}-{digest}.json"


def load_state(path: Path) -> MeterState | None:
    """The saved state, or None if there is none yet."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        state = MeterState(int(doc["next_page"]), int(doc["register_wh"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SimChargerError(f"{path}: not a simulated meter's state ({exc}); remove it to start anew",
                              Exit.USAGE) from None  # fmt: skip
    if state.next_page < 1 or state.register_wh < 0:
        raise SimChargerError(f"{path}: page or register out of range; remove it to start anew", Exit.USAGE)
    return state


def save_state(path: Path, state: MeterState) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"next_page": state.next_page, "register_wh": state.register_wh}) + "\n"
        write_private_file(path, data.encode("utf-8"), exclusive=False)
    except OSError as exc:
        raise SimChargerError(f"cannot save the simulated meter's state to {path}: {exc}") from None
