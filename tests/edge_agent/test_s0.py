"""S0 pulse input through gpiozero's MockFactory: real edges on a mock pin."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from edge_agent.config import S0Config
from edge_agent.meters.s0 import S0Meter
from edge_agent.store import Store

PIN = 17


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    previous = Device.pin_factory
    Device.pin_factory = MockFactory()
    yield Device.pin_factory
    Device.pin_factory.reset()
    Device.pin_factory = previous


def pulse(pin: object, gap: float = 0.012) -> None:
    """One S0 pulse: the open collector pulls the pulled-up line low, then releases it."""
    pin.drive_low()  # type: ignore[attr-defined]
    pin.drive_high()  # type: ignore[attr-defined]
    time.sleep(gap)


def test_pulses_become_energy_and_survive_a_restart(tmp_path: Path, factory: MockFactory) -> None:
    config = S0Config(pin=PIN, pull_up=True, bounce_time_ms=5, impulses_per_kwh=1000)
    store = Store(tmp_path / "agent.db")
    meter = S0Meter(config, store)
    meter.open_pin()
    pin = factory.pin(PIN)
    assert pin.state == 1  # pulled up at rest
    for _ in range(25):
        pulse(pin)
    sample = asyncio.run(meter.read(0))
    assert sample.energy_mwh == 25 * 1000  # 1000 imp/kWh: 1 pulse = 1 Wh = 1000 mWh
    assert sample.power_mw is not None
    assert sample.power_mw > 0
    # power from the pulse spacing (~12 ms => roughly 300 kW); only its order matters here
    assert 10_000_000 < sample.power_mw < 400_000_000

    # a restart: the device object goes away, a new meter reads the count back from the database
    asyncio.run(meter.close())
    store.close()
    store = Store(tmp_path / "agent.db")
    meter = S0Meter(config, store)
    meter.open_pin()
    assert meter.pulses == 25
    for _ in range(5):
        pulse(factory.pin(PIN))
    assert asyncio.run(meter.read(0)).energy_mwh == 30 * 1000
    asyncio.run(meter.close())
    store.close()


def test_bounce_is_one_pulse(tmp_path: Path, factory: MockFactory) -> None:
    store = Store(tmp_path / "agent.db")
    meter = S0Meter(S0Config(pin=PIN, bounce_time_ms=30, impulses_per_kwh=800), store)
    meter.open_pin()
    pin = factory.pin(PIN)
    for _ in range(4):
        # a contact that chatters: five edges within a few ms count once
        for _ in range(5):
            pin.drive_low()
            pin.drive_high()
        time.sleep(0.04)
    assert meter.pulses == 4
    # 800 imp/kWh: 1 pulse = 1250 mWh, exactly
    assert asyncio.run(meter.read(0)).energy_mwh == 4 * 1250
    asyncio.run(meter.close())
    store.close()


def test_the_count_is_persisted_while_pulses_arrive(tmp_path: Path, factory: MockFactory) -> None:
    """The crash window: the periodic flush writes the count without any reading being taken."""
    db = tmp_path / "agent.db"
    store = Store(db)
    meter = S0Meter(
        S0Config(pin=PIN, bounce_time_ms=1, persist_interval_s=0.05, register_offset_mwh=7), store
    )

    async def scenario() -> None:
        await meter.start()
        for _ in range(10):
            pulse(factory.pin(PIN), gap=0.002)
        await asyncio.sleep(0.2)
        # another connection (what a restarted agent would see after a power cut now)
        other = Store(db)
        assert other.counter("s0_pulses") == 10
        other.close()
        sample = await meter.read(0)
        assert sample.energy_mwh == 7 + 10 * 1000
        await meter.close()

    asyncio.run(scenario())
    # the stored count never goes down, even if a stale writer tries
    store.set_counter("s0_pulses", 3)
    assert store.counter("s0_pulses") == 10
    store.close()
