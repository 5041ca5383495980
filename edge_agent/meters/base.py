"""The one interface every meter source implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from attest_core.reading import Status, Trigger
from edge_agent.errors import AgentError


@dataclass(frozen=True, slots=True)
class MeterSample:
    """What a meter says at one moment: its cumulative register and, if known, its power."""

    energy_mwh: int
    power_mw: int | None = None
    status: Status = Status.OK


@dataclass(frozen=True, slots=True)
class MeterEvent:
    """A moment the meter wants its own reading for (a charging session starting or ending)."""

    time_ms: int
    trigger: Trigger


class MeterUnavailable(AgentError):
    """The meter could not be read this time (no reading is taken; the next one covers the gap).

    An :class:`AgentError` with the default exit code (1, a runtime failure); the
    agent catches it around every read, and turns a failed start into its own error.
    """


class ReadingsFollowMeter(MeterUnavailable):
    """Not an outage: the meter sends its own readings now (a charger in a session reports its
    register as it measures it, and each report is a reading), so the agent's clock-driven reading
    is skipped, quietly.  A register restated later than it was measured would date energy too
    late, and the next report's interval would look impossibly short (``over_rated_power``)."""


class Meter(Protocol):
    """A meter source: S0 pulses, SunSpec Modbus, or a simulation."""

    simulated: bool
    """True for simulations: their readings carry Status.SIMULATED and run on a simulated clock."""

    async def start(self) -> None:
        """Open the hardware or connection (may be a no-op)."""
        ...

    async def read(self, time_ms: int) -> MeterSample:
        """The register now (``time_ms`` is the reading's time; simulations are evaluated at it).

        Raises :class:`MeterUnavailable` when the meter cannot be read this time.
        """
        ...

    def events(self, after_ms: int, until_ms: int) -> list[MeterEvent]:
        """Events in ``(after_ms, until_ms]``, in time order (session start / end of a charger)."""
        ...

    async def close(self) -> None:
        """Release the hardware or connection; persist what must survive a restart."""
        ...
