"""The agent has one exception hierarchy, and joining it changed no exit code or message."""

from __future__ import annotations

import pytest

from edge_agent.errors import AgentError, Exit
from edge_agent.meters import MeterUnavailable
from edge_agent.store import ChainConflict


@pytest.mark.parametrize("cls", [MeterUnavailable, ChainConflict])
def test_meter_and_chain_failures_are_agent_errors_with_the_runtime_exit_code(cls: type[AgentError]) -> None:
    error = cls("the meter said no")
    assert isinstance(error, AgentError)
    # Before they joined the hierarchy an escaping one ended the process with 1 too.
    assert error.code == Exit.FAILED == 1
    assert str(error) == error.message == "the meter said no"
    assert error.args == ("the meter said no",)
