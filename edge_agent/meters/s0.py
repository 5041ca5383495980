"""S0 pulse input (DIN 43864 / IEC 62053-31) on a GPIO pin, through gpiozero.

Each pulse of the meter's S0 output is a fixed quantum of energy
(``1_000_000 / impulses_per_kwh`` mWh: 1000 imp/kWh → 1 pulse = 1 Wh = 1000 mWh).
The agent's register is ``register_offset_mwh + pulses × 1_000_000 // impulses_per_kwh``
(integer, never decreasing).

**The pulse count survives restarts.**  gpiozero calls :meth:`S0Meter._on_pulse`
from its own thread; the count lives in memory and is written to the state
database (``counters`` table, WAL, ``synchronous=FULL``):

* before every reading (``read`` persists first, so a signed register is never
  above the persisted count: after any crash the register cannot go backwards);
* every ``persist_interval_s`` (default 1 s) while pulses arrive;
* on clean shutdown.

The window between a pulse and the next persist is therefore at most
``persist_interval_s``: a power cut can lose the pulses of that last second (the
register then under-reads by that much — never over-reads, never decreases).
At 22 kW and 1000 imp/kWh that is at most about 6 Wh per crash.

Contact bounce: gpiozero's ``bounce_time`` is passed to the pin driver, and the
agent also ignores activations closer than ``bounce_time_ms`` to the last counted
pulse (gpiozero's mock pins do not debounce; real S0 pulses are >= 30 ms long).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any

from attest_core.reading import Status
from edge_agent.config import S0Config
from edge_agent.meters.base import MeterEvent, MeterSample, MeterUnavailable
from edge_agent.store import Store

log = logging.getLogger("edge_agent.s0")


class S0Meter:
    simulated = False

    def __init__(self, config: S0Config, store: Store, counter_name: str = "s0_pulses") -> None:
        self.config = config
        self.store = store
        self.counter_name = counter_name
        self._lock = threading.Lock()
        self._count = store.counter(counter_name)
        self._persisted = self._count
        self._bounce_s = config.bounce_time_ms / 1000.0
        self._last_pulse = -1e18
        self._last_interval: float | None = None
        self._device: Any = None
        self._flusher: asyncio.Task[None] | None = None

    @property
    def pulses(self) -> int:
        with self._lock:
            return self._count

    def energy_for(self, pulses: int) -> int:
        return self.config.register_offset_mwh + pulses * 1_000_000 // self.config.impulses_per_kwh

    async def start(self) -> None:
        self.open_pin()
        self._flusher = asyncio.get_running_loop().create_task(self._flush_periodically())

    def open_pin(self) -> None:
        """Attach to the GPIO pin (kept referenced: gpiozero drops callbacks of collected devices)."""
        try:
            from gpiozero import DigitalInputDevice
            from gpiozero.exc import GPIOZeroError
        except ImportError as exc:  # pragma: no cover - the [edge] extra is missing
            raise MeterUnavailable(f"gpiozero is not installed: {exc} (pip install '.[edge]')") from exc
        factory = None
        if self.config.pin_factory:
            factory = _make_factory(self.config.pin_factory)
        try:
            device = DigitalInputDevice(
                self.config.pin,
                pull_up=self.config.pull_up,
                bounce_time=self._bounce_s or None,
                pin_factory=factory,
            )
        except (GPIOZeroError, OSError, RuntimeError) as exc:
            raise MeterUnavailable(
                f"cannot open GPIO{self.config.pin} for the S0 input: {exc} "
                "(is this a Raspberry Pi with the user in the gpio group? is the pin in use?)"
            ) from exc
        device.when_activated = self._on_pulse
        self._device = device
        log.info(
            "S0 input on GPIO%d (pull_up=%s, %d imp/kWh), %d pulses counted so far",
            self.config.pin,
            self.config.pull_up,
            self.config.impulses_per_kwh,
            self._count,
        )

    def _on_pulse(self) -> None:
        now = time.monotonic()
        with self._lock:
            since = now - self._last_pulse
            if since < self._bounce_s:
                return
            if since < 1e9:
                self._last_interval = since
            self._last_pulse = now
            self._count += 1

    def flush(self) -> int:
        """Persist the pulse count if it changed; return it."""
        with self._lock:
            count = self._count
        if count != self._persisted:
            self.store.set_counter(self.counter_name, count)
            self._persisted = count
        return count

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.config.persist_interval_s)
            try:
                self.flush()
            except Exception:  # keep counting; the next flush or reading retries
                log.exception("could not persist the S0 pulse count")

    async def read(self, time_ms: int) -> MeterSample:
        count = self.flush()
        return MeterSample(self.energy_for(count), self._power_estimate(), Status.OK)

    def _power_estimate(self) -> int | None:
        """Power from the spacing of the last pulses (an upper bound when pulses have stopped)."""
        with self._lock:
            interval, last = self._last_interval, self._last_pulse
        if interval is None or interval <= 0:
            return None
        since = time.monotonic() - last
        mwh_per_pulse = 1_000_000 / self.config.impulses_per_kwh
        return int(mwh_per_pulse * 3600 / max(interval, since))

    def events(self, after_ms: int, until_ms: int) -> list[MeterEvent]:
        return []

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        self.flush()
        if self._device is not None:
            self._device.close()
            self._device = None


def _make_factory(name: str) -> Any:
    if name == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    if name == "lgpio":
        from gpiozero.pins.lgpio import LGPIOFactory

        return LGPIOFactory()
    raise MeterUnavailable(f"meter.s0.pin_factory {name!r} is not one of mock, lgpio (or empty)")
