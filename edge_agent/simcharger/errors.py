"""The simulated charger's failures: :class:`edge_agent.errors.AgentError` like the rest of the agent."""

from __future__ import annotations

from edge_agent.errors import AgentError


class SimChargerError(AgentError):
    """The simulated meter or charge point cannot do what was asked (record too large, the
    backend refused the boot or a transaction, the connection failed)."""
