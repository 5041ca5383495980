"""Time for readings: the real clock, or simulated time that runs faster.

A real meter's readings carry the system clock's time (UTC ms).  Simulations run
on a :class:`Clock` with ``speed`` > 1: simulated time = start + speed × elapsed
wall time, so a month of readings can be produced in minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import time

log = logging.getLogger("edge_agent.clock")


class Clock:
    """Simulated Unix time in ms; ``speed == 1`` and no start: the system clock itself."""

    def __init__(self, speed: float = 1.0, start_ms: int | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self.real = speed == 1.0 and start_ms is None
        self._mono0 = time.monotonic()
        self._start_ms = int(time.time() * 1000) if start_ms is None else start_ms

    def now_ms(self) -> int:
        if self.real:
            return int(time.time() * 1000)
        return self._start_ms + int((time.monotonic() - self._mono0) * 1000 * self.speed)

    def wall_seconds_until(self, sim_ms: int) -> float:
        return max(0.0, (sim_ms - self.now_ms()) / 1000.0 / self.speed)

    async def sleep_until(self, sim_ms: int, stop: asyncio.Event) -> bool:
        """Sleep until simulated time ``sim_ms``; False if ``stop`` was set first."""
        while not stop.is_set():
            delay = self.wall_seconds_until(sim_ms)
            if delay <= 0:
                return True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(delay, 5.0)):
                    await stop.wait()
        return False


class _Timex(ctypes.Structure):
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("padding", ctypes.c_int * 11),
    ]


_TIME_ERROR = 5


class SyncCheck:
    """Is the kernel clock NTP-synchronised?  (``adjtimex``: chrony, ntpd and timesyncd all set it.)

    The answer is cached for a minute.  Where the call is unavailable the clock
    counts as synchronised and a warning is logged once.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._checked = -1e18
        self._synced = True
        self._libc: ctypes.CDLL | None = None
        if enabled:
            try:
                self._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
                self._libc.adjtimex  # noqa: B018 - probe the symbol
            except (OSError, AttributeError):
                log.warning("cannot ask the kernel whether the clock is synchronised; not flagging readings")
                self._libc = None

    def synchronised(self) -> bool:
        if not self.enabled or self._libc is None:
            return True
        now = time.monotonic()
        if now - self._checked >= 60:
            self._checked = now
            state = self._libc.adjtimex(ctypes.byref(_Timex()))
            synced = state != _TIME_ERROR
            if synced != self._synced:
                if synced:
                    log.info("the system clock is synchronised (NTP)")
                else:
                    log.warning("the system clock is NOT synchronised: readings are flagged TIME_UNSYNCED")
            self._synced = synced
        return self._synced
