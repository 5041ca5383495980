"""Simulated meters: an EV charger and a solar panel, deterministic from a seed.

Both are *power models*: power as a piecewise-linear function of time, made of
segments generated lazily, in time order, from a seeded random generator.  The
register is the exact integral of that power, computed with integers only (in
units of 2 mW·ms), so it never decreases and never depends on how often it is
read: ``energy_mwh(t)`` is a pure function of the seed and ``t``.  Time is
simulated Unix time in ms; a :class:`edge_agent.clock.Clock` can run it faster
than wall time.

* **Charger**: idle gaps (10 min to 16 h, exponential, mean 3 h), then charging
  sessions of 20 min to 3 h at 7.4, 11 or 22 kW (never above the rated power),
  a 30 s ramp, slight variation every 5 minutes, a taper over the last 15 % of
  the session; session start and end are events (readings with
  ``Trigger.SESSION_START`` / ``SESSION_END``).
* **Solar**: rated power × sin(sun elevation) at the location (``astral``), zero
  while the sun is below the horizon, times a cloud factor that follows a seeded,
  mean-reverting random walk on a 5-minute grid.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import random
from bisect import bisect_right

import astral
import astral.sun

from attest_core.reading import Status, Trigger
from edge_agent.meters.base import MeterEvent, MeterSample

MS_PER_HOUR = 3_600_000
_E2_PER_MWH = 2 * MS_PER_HOUR  # energy is kept as 2 x mW x ms
MINUTE = 60_000
SOLAR_STEP_MS = 300_000
CHARGER_LEVELS_W = (7_400, 11_000, 22_000)


def seeded_random(seed: int | str, *labels: str) -> random.Random:
    """A generator whose sequence depends only on the seed and the labels."""
    material = "\x00".join([str(seed), *labels]).encode()
    number = int.from_bytes(hashlib.sha256(material).digest()[:16], "big")
    return random.Random(number)  # noqa: S311 - a simulation, not cryptography


class PowerModel:
    """Power as contiguous linear segments ``(t0, t1, p0, p1)`` (mW), generated lazily.

    Queries must not go back in time by more than what is kept (the model drops
    segments behind the latest query to bound memory).
    """

    def __init__(self, origin_ms: int) -> None:
        self.origin_ms = origin_ms
        self._t0: list[int] = []
        self._t1: list[int] = []
        self._p0: list[int] = []
        self._p1: list[int] = []
        self._e2: list[int] = []  # energy (2 mW·ms) at each segment's start
        self._end = origin_ms
        self._end_e2 = 0
        self.events_log: list[MeterEvent] = []

    # Subclasses append segments (and events) until self._end >= until.
    def _extend(self, until_ms: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _segment(self, t1: int, p0: int, p1: int) -> None:
        t0 = self._end
        if t1 <= t0:
            return
        assert p0 >= 0
        assert p1 >= 0
        self._t0.append(t0)
        self._t1.append(t1)
        self._p0.append(p0)
        self._p1.append(p1)
        self._e2.append(self._end_e2)
        self._end_e2 += (p0 + p1) * (t1 - t0)
        self._end = t1

    def _index(self, t: int) -> int:
        if t < self.origin_ms:
            raise ValueError(f"time {t} is before the model's origin {self.origin_ms}")
        while self._end <= t:
            self._extend(t + 1)
        i = bisect_right(self._t0, t) - 1
        if i < 0:
            raise ValueError(f"time {t} is before the oldest segment kept")
        if i > 8192:  # forget what lies far behind
            cut = i - 16
            for lst in (self._t0, self._t1, self._p0, self._p1, self._e2):
                del lst[:cut]
            i -= cut
        return i

    def energy_e2(self, t: int) -> int:
        i = self._index(t)
        t0, t1, p0, p1 = self._t0[i], self._t1[i], self._p0[i], self._p1[i]
        d, length = t - t0, t1 - t0
        return self._e2[i] + (2 * p0 * d * length + (p1 - p0) * d * d) // length

    def energy_mwh(self, t: int) -> int:
        return self.energy_e2(t) // _E2_PER_MWH

    def power_mw(self, t: int) -> int:
        i = self._index(t)
        t0, t1, p0, p1 = self._t0[i], self._t1[i], self._p0[i], self._p1[i]
        return p0 + (p1 - p0) * (t - t0) // (t1 - t0)

    def events(self, after_ms: int, until_ms: int) -> list[MeterEvent]:
        while self._end <= until_ms:
            self._extend(until_ms + 1)
        times = [e.time_ms for e in self.events_log]
        lo, hi = bisect_right(times, after_ms), bisect_right(times, until_ms)
        found = self.events_log[lo:hi]
        if lo > 64:  # events behind the query are not asked for again
            del self.events_log[: lo - 32]
        return found


class ChargerModel(PowerModel):
    def __init__(self, seed: int | str, rated_power_w: int, origin_ms: int) -> None:
        super().__init__(origin_ms)
        self.rated_mw = rated_power_w * 1000
        self._rng = seeded_random(seed, "charger")
        self.sessions = 0

    def _extend(self, until_ms: int) -> None:
        rng = self._rng
        while self._end < until_ms:
            gap = int(min(max(rng.expovariate(1 / (3 * 60)), 10), 16 * 60) * MINUTE)
            self._segment(self._end + gap, 0, 0)
            start = self._end
            length = rng.randint(20 * MINUTE, 180 * MINUTE)
            level_mw = min(rng.choice(CHARGER_LEVELS_W) * 1000, self.rated_mw)
            power = int(level_mw * rng.uniform(0.93, 0.99))
            end = start + length
            taper_start = end - int(length * 0.15)
            self.events_log.append(MeterEvent(start, Trigger.SESSION_START))
            self._segment(start + 30_000, 0, power)
            t = self._end
            while t < taper_start:
                nxt = min(t + 5 * MINUTE, taper_start)
                p = int(power * rng.uniform(0.97, 1.0))
                self._segment(nxt, p, p)
                t = nxt
            self._segment(end, power, power // 5)
            self.events_log.append(MeterEvent(end, Trigger.SESSION_END))
            self.sessions += 1


class SolarModel(PowerModel):
    SYSTEM_EFFICIENCY = 0.92

    def __init__(self, seed: int | str, rated_power_w: int, lat: float, lon: float, origin_ms: int) -> None:
        grid_origin = origin_ms - origin_ms % SOLAR_STEP_MS
        super().__init__(grid_origin)
        self.rated_mw = rated_power_w * 1000
        self.observer = astral.Observer(latitude=lat, longitude=lon)
        self._rng = seeded_random(seed, "solar")
        self._cloud = 0.8
        self._p_end = self._power_at(grid_origin)

    def sun_elevation(self, t_ms: int) -> float:
        when = dt.datetime.fromtimestamp(t_ms / 1000, tz=dt.UTC)
        return float(astral.sun.elevation(self.observer, when))

    def _power_at(self, t_ms: int) -> int:
        elevation = self.sun_elevation(t_ms)
        if elevation <= 0:
            return 0
        factor = math.sin(math.radians(elevation)) * self._cloud * self.SYSTEM_EFFICIENCY
        return int(self.rated_mw * min(factor, 1.0))

    def _extend(self, until_ms: int) -> None:
        rng = self._rng
        while self._end < until_ms:
            nxt = self._end + SOLAR_STEP_MS
            # Clouds: a mean-reverting random walk, one step per grid slot.
            self._cloud += 0.2 * (0.75 - self._cloud) + rng.gauss(0, 0.08)
            self._cloud = min(max(self._cloud, 0.1), 1.0)
            p1 = self._power_at(nxt)
            self._segment(nxt, self._p_end, p1)
            self._p_end = p1


class SimulatedMeter:
    """A :class:`~edge_agent.meters.base.Meter` over a power model."""

    simulated = True

    def __init__(self, model: PowerModel) -> None:
        self.model = model

    async def start(self) -> None:
        return None

    async def read(self, time_ms: int) -> MeterSample:
        return self.sample(time_ms)

    def sample(self, time_ms: int) -> MeterSample:
        return MeterSample(self.model.energy_mwh(time_ms), self.model.power_mw(time_ms), Status.SIMULATED)

    def events(self, after_ms: int, until_ms: int) -> list[MeterEvent]:
        return self.model.events(after_ms, until_ms)

    async def close(self) -> None:
        return None
