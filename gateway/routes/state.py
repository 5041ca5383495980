"""What the routes share at run time: the pool, keys, tokens, witnesses and ingest's device cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import asyncpg
from fastapi import Depends, Request

from attest_core.checkpoint import WitnessKey
from attest_core.note import VerifierKey
from gateway.bodylimit import DEFAULT_MAX_REQUEST_BYTES
from gateway.ingest import DeviceCache
from gateway.metrics import Metrics
from gateway.routes.verdict_cache import VerdictCache
from gateway.tokens import TokenTable


@dataclass
class ApiState:
    pool: asyncpg.Pool
    log_key: VerifierKey
    metrics: Metrics
    ready: bool = False
    tokens: TokenTable = field(default_factory=TokenTable)
    witnesses: list[WitnessKey] = field(default_factory=list)
    cache: DeviceCache | None = None
    """Ingest's device cache in this process, invalidated at once after a revocation or rotation."""
    accept_v1_enrolments: bool = False
    """Whether a v1 enrolment statement (naming no log) is enrolled (setting accept_v1_enrolments)."""
    log_wait: float = 5.0
    """Seconds a write waits for the sequencer to give its entry a log index."""
    verdicts: VerdictCache = field(default_factory=VerdictCache)
    """The last server-side verdict of each claim."""
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    """The cap on a request body (gateway.bodylimit), fixed when the app is created."""
    log_size_seen: int = 0
    """The largest log size this process has read: the log never shrinks, so a proof for a
    tree no larger than this needs no query to know the tree exists."""

    def invalidate(self, device_id: str) -> None:
        if self.cache is not None:
            self.cache.invalidate(device_id)


def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.gateway
    return state


State = Annotated[ApiState, Depends(get_state)]
"""A route's parameter for the shared state."""
