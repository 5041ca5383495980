"""Simulated charger and solar panel: deterministic, plausible by the verifier's own rules."""

from __future__ import annotations

import itertools
from pathlib import Path

from attest_core.device import AssetKind, EnrolmentStatement, Location
from attest_core.evaluation import Severity
from attest_core.reading import Status, Trigger, decode_envelope
from attest_core.sun import is_night_throughout
from edge_agent.clock import Clock
from edge_agent.device import DeviceRuntime
from edge_agent.meters.simulated import ChargerModel, SimulatedMeter, SolarModel
from edge_agent.store import Store
from tests.edge_agent.plausibility import evaluate_devices
from tests.support import BERLIN, DAY, HOUR, T0, seeded_signer

MINUTE = 60_000


def test_charger_is_deterministic_and_within_its_rating() -> None:
    a = ChargerModel("seed-1", 11_000, T0)
    b = ChargerModel("seed-1", 11_000, T0)
    c = ChargerModel("seed-2", 11_000, T0)
    times = range(T0, T0 + 7 * DAY, 7 * MINUTE)
    energies_a = [a.energy_mwh(t) for t in times]
    assert energies_a == [b.energy_mwh(t) for t in times]
    assert energies_a != [c.energy_mwh(t) for t in times]
    # sampled differently, the register is the same function of time
    d = ChargerModel("seed-1", 11_000, T0)
    assert [d.energy_mwh(t) for t in range(T0, T0 + 7 * DAY, 21 * MINUTE)] == energies_a[::3]

    assert all(x <= y for x, y in itertools.pairwise(energies_a))
    powers = [a.power_mw(t) for t in range(T0 + 7 * DAY, T0 + 14 * DAY, MINUTE)]
    assert max(powers) <= 11_000_000
    assert max(powers) > 9_000_000  # 11 kW sessions happen
    assert min(powers) == 0  # and idle gaps
    # a week holds sessions; starts and ends alternate; lengths are 20 min .. 3 h
    events = a.events(T0, T0 + 14 * DAY)
    assert 20 <= len(events) // 2 <= 200
    kinds = [e.trigger for e in events]
    assert kinds[::2] == [Trigger.SESSION_START] * len(kinds[::2])
    assert kinds[1::2] == [Trigger.SESSION_END] * len(kinds[1::2])
    for start, end in zip(events[::2], events[1::2], strict=False):
        assert 20 * MINUTE <= end.time_ms - start.time_ms <= 180 * MINUTE
    energy_per_session = (a.energy_mwh(T0 + 14 * DAY) - a.energy_mwh(T0)) / (len(events) / 2)
    assert 2_000_000 < energy_per_session < 33_000_000  # 2..33 kWh a session


def test_a_22kw_charger_reaches_22kw_and_no_more() -> None:
    model = ChargerModel("fast", 22_000, T0)
    powers = [model.power_mw(t) for t in range(T0, T0 + 14 * DAY, MINUTE)]
    assert max(powers) <= 22_000_000
    assert any(p > 20_000_000 for p in powers)


def test_solar_follows_the_sun_and_is_zero_at_night() -> None:
    model = SolarModel("roof", 10_000, BERLIN.lat, BERLIN.lon, T0)
    again = SolarModel("roof", 10_000, BERLIN.lat, BERLIN.lon, T0)
    times = list(range(T0, T0 + 3 * DAY, 5 * MINUTE))
    energy = [model.energy_mwh(t) for t in times]
    assert energy == [again.energy_mwh(t) for t in times]
    assert all(x <= y for x, y in itertools.pairwise(energy))
    day_energy = energy[-1] - energy[0]
    assert 3 * 1_000_000 < day_energy < 3 * 10 * 12 * 1_000_000  # some kWh, never 12 full-power hours a day
    for t, e_prev, e_next in zip(times, energy, energy[1:], strict=False):
        if is_night_throughout(BERLIN.lat_e6, BERLIN.lon_e6, t, t + 5 * MINUTE):
            assert e_next == e_prev, "production at night"
            assert model.power_mw(t) == 0
    noon = T0 + 11 * HOUR  # 12:00 local in October, sun ~ 30 degrees
    assert model.power_mw(noon) > 1_000_000
    assert max(model.power_mw(t) for t in times) <= 10_000_000


def simulate_readings(
    tmp_path: Path, statement: EnrolmentStatement, meter: SimulatedMeter, days: int
) -> tuple[list[bytes], Store]:
    """Readings as the agent makes them (events + every 15 minutes), committed to a store."""
    signer = seeded_signer(statement.device_id)
    store = Store(tmp_path / f"{statement.device_id}.db")
    runtime = DeviceRuntime(
        device_id=statement.device_id,
        asset_id=statement.asset_id,
        anchor=statement.chain_anchor(),
        signer=signer,
        store=store,
        log_public_key=None,
        simulated=True,
    )
    last = T0
    for t in range(T0, T0 + days * DAY, 15 * MINUTE):
        batch = [runtime.build(e.time_ms, meter.sample(e.time_ms), e.trigger) for e in meter.events(last, t)]
        batch.append(runtime.build(t, meter.sample(t)))
        store.append(batch)
        runtime.committed_ok(batch)
        last = t
    return [envelope for _, envelope in store.pending(statement.device_id, 0, 10**6)], store


def test_simulated_readings_pass_the_verifiers_plausibility_rules(tmp_path: Path) -> None:
    charger_signer, solar_signer = seeded_signer("dev-charger"), seeded_signer("dev-solar")
    charger = EnrolmentStatement("dev-charger", charger_signer.public_key, "charger-1", AssetKind.CHARGER,
                                 22_000, None, T0 - DAY)  # fmt: skip
    solar = EnrolmentStatement("dev-solar", solar_signer.public_key, "solar-1", AssetKind.SOLAR,
                               30_000, Location(48_137_000, 11_575_000), T0 - DAY)  # fmt: skip
    charger_raw, s1 = simulate_readings(tmp_path, charger, SimulatedMeter(ChargerModel("c", 22_000, T0)), 4)
    solar_raw, s2 = simulate_readings(
        tmp_path, solar, SimulatedMeter(SolarModel("s", 30_000, 48.137, 11.575, T0)), 4
    )
    s1.close()
    s2.close()
    envelopes = [decode_envelope(raw) for raw in charger_raw + solar_raw]
    readings = [e.reading() for e in envelopes]
    assert all(r.status & Status.SIMULATED for r in readings)
    assert readings[0].status & Status.POWER_UP
    assert readings[0].trigger is Trigger.BOOT
    assert {Trigger.SESSION_START, Trigger.SESSION_END} <= {r.trigger for r in readings}
    evaluation = evaluate_devices(
        [(charger, charger_signer), (solar, solar_signer)], envelopes, T0, T0 + 4 * DAY
    )
    assert [f for f in evaluation.findings if f.severity is Severity.FATAL] == []
    assert evaluation.backed
    assert evaluation.energy_mwh > 20 * 1_000_000


def test_scaled_clock() -> None:
    clock = Clock(speed=3600.0, start_ms=T0)
    assert not clock.real
    assert T0 <= clock.now_ms() < T0 + 60 * MINUTE
    assert Clock().real
