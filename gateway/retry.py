"""The gateway's one way to pause between attempts: exponential backoff with full jitter.

Every loop that retries something for the life of the process (the MQTT link's
reconnections, the database pool at start, the broker probe, the supervisor of
the ingest and sequencer loops) takes its pauses from a :class:`Backoff`, so
that a fleet of gateways restarted together does not hammer a recovering
broker or database in lock-step.

Written here rather than taken from a retry library (tenacity, backoff, stamina):
those wrap a call and retry it *until it succeeds*, while most of the gateway's
loops run an attempt that never "succeeds" — a broker session or a supervised
loop runs until it fails, and the pauses must start small again after a long
healthy run.  What the loops need is only the next pause, which these few
lines give, with the clock and the random source injectable for tests.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class Backoff:
    """Pauses for repeated attempts: the n-th pause is uniform in [0, min(cap, first * 2**n)].

    Call :meth:`started` when an attempt begins and :meth:`next_delay` when it has
    failed.  An attempt that ran for ``healthy_after`` seconds or more counts as a
    recovery: the pauses start again from ``first``.

    Full jitter ("Exponential Backoff And Jitter", AWS Architecture Blog, 2015):
    spreading each pause over the whole interval is what breaks up a herd of
    clients that all lost the same server at the same moment.
    """

    def __init__(
        self,
        first: float,
        cap: float,
        *,
        healthy_after: float = 60.0,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < first <= cap:
            raise ValueError(f"backoff needs 0 < first <= cap, got first={first}, cap={cap}")
        self.first = first
        self.cap = cap
        self.healthy_after = healthy_after
        self._rand = rand
        self._clock = clock
        self._failures = 0
        self._started: float | None = None

    @property
    def failures(self) -> int:
        """Failed attempts since the last recovery."""
        return self._failures

    def ceiling(self) -> float:
        """The longest pause the next failure can bring."""
        # the exponent is bounded so that 2**n stays a small float however long the outage
        return min(self.cap, self.first * 2.0 ** min(self._failures, 60))

    def started(self) -> None:
        """An attempt begins now."""
        self._started = self._clock()

    def next_delay(self) -> float:
        """The attempt failed: the seconds to wait before the next one."""
        if self._started is not None and self._clock() - self._started >= self.healthy_after:
            self._failures = 0
        self._started = None
        delay = self.ceiling() * self._rand()
        self._failures += 1
        return delay

    def reset(self) -> None:
        """Things work again: the next pause is a short one."""
        self._failures = 0
        self._started = None
