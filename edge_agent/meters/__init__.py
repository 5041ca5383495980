"""Meter sources behind one interface (:class:`edge_agent.meters.base.Meter`).

``[meter] type`` chooses: ``s0`` (GPIO pulse input), ``sunspec`` (Modbus TCP),
``ocpp`` (an OCPP-J charger connecting to the agent), ``simulated-charger`` or ``simulated-solar``.

A meter whose values arrive by themselves (``ocpp``: each meter-signed value must become a reading
as soon as it arrives) has an ``attach(push)`` method: the agent gives it a :data:`Push`, which
signs and durably stores readings at once, in one transaction, before the meter answers its peer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from attest_core.device import AssetKind, EnrolmentStatement
from attest_core.meterproof import MeterRecord
from attest_core.reading import Trigger
from edge_agent.config import Config
from edge_agent.errors import AgentError, Exit
from edge_agent.meters.base import Meter, MeterEvent, MeterSample, MeterUnavailable
from edge_agent.store import Store

__all__ = [
    "Meter",
    "MeterEvent",
    "MeterSample",
    "MeterUnavailable",
    "Push",
    "PushedReading",
    "open_meter",
    "simulated_meter",
]


@dataclass(frozen=True, slots=True)
class PushedReading:
    """A reading a meter wants taken now (its time is the agent's clock when the value arrived)."""

    time_ms: int
    sample: MeterSample
    trigger: Trigger = Trigger.PERIODIC
    meter_record: MeterRecord | None = None


Push = Callable[[list[PushedReading]], bool]
"""Sign and store these readings in one transaction; False if they could not be stored."""


def simulated_meter(
    kind: str, *, seed: int | str, rated_power_w: int, origin_ms: int, lat: float | None, lon: float | None
) -> Meter:
    from edge_agent.meters.simulated import ChargerModel, SimulatedMeter, SolarModel

    if kind == "charger":
        return SimulatedMeter(ChargerModel(seed, rated_power_w, origin_ms))
    if lat is None or lon is None:
        raise AgentError("a simulated solar panel needs a location: enrol with --lat and --lon", Exit.USAGE)
    return SimulatedMeter(SolarModel(seed, rated_power_w, lat, lon, origin_ms))


def open_meter(config: Config, store: Store, statement: EnrolmentStatement) -> Meter:
    """The meter the config names, for the enrolled device."""
    kind = config.meter.type
    if kind == "s0":
        from edge_agent.meters.s0 import S0Meter

        return S0Meter(config.meter.s0, store)
    if kind == "ocpp":
        from edge_agent.meters.ocpp import OcppMeter

        if statement.asset_kind is not AssetKind.parse("charger"):
            raise AgentError(
                f"meter.type 'ocpp' needs a device enrolled as a charger, not {statement.asset_kind.label!r}",
                Exit.USAGE,
            )
        return OcppMeter(config, store, statement.meter_key)
    if kind == "sunspec":
        from edge_agent.meters.sunspec import SunSpecMeter

        if not config.meter.sunspec.host:
            raise AgentError(
                f"{config.path}: [meter.sunspec] host (the inverter's IP address) is not set", Exit.USAGE
            )
        return SunSpecMeter(config.meter.sunspec)
    sim = config.meter.simulated
    wanted = "charger" if kind == "simulated-charger" else "solar"
    if statement.asset_kind is not AssetKind.parse(wanted):
        raise AgentError(
            f"meter.type {kind!r} does not match the enrolled asset kind {statement.asset_kind.label!r}",
            Exit.USAGE,
        )
    location = statement.location
    return simulated_meter(
        wanted,
        seed=f"{sim.seed}/{statement.device_id}",
        rated_power_w=sim.rated_power_w or statement.rated_power_w,
        origin_ms=statement.time_ms,
        lat=location.lat if location else None,
        lon=location.lon if location else None,
    )
