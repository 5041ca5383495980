"""Reaching the broker: its address, the reconnect backoff, and what a failed connect means."""

from __future__ import annotations

import random
import socket

from attest_core.broker import BrokerUrl, parse_broker_url
from attest_core.errors import DecodeError
from edge_agent.errors import AgentError, Exit

BrokerAddress = BrokerUrl
"""Where the broker is (the contract's MQTT URL, parsed by attest_core.broker)."""


def parse_mqtt_url(url: str) -> BrokerAddress:
    try:
        return parse_broker_url(url)
    except DecodeError as exc:
        raise AgentError(str(exc), Exit.USAGE) from exc


def backoff_delay(attempt: int, low: float, high: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: uniform in [low, min(high, low × 2^attempt)]."""
    ceiling = min(high, low * (2 ** min(attempt, 30)))
    return rng.uniform(low, max(low, ceiling))


def describe_os_error(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the broker running, is the port right?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the broker's host name ({exc.strerror})"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "connection timed out (network down or firewall?)"
    if isinstance(exc, ConnectionError):
        return str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
