"""The simulated fleet's devices: kept in ``fleet.db``, enrolled through the REST API.

Each device has its own Ed25519 key (its seed is kept in the ``fleet`` table, so
a second run resumes the same fleet), its asset and, once the gateway confirmed
it, its enrolment statement.

With ``simulate --meter-signed`` every charger is a certified charger: it has a simulated
Eichrecht meter (:class:`~edge_agent.simcharger.meter.OcmfMeter`, its P-256 key derived from the
device's own key seed, so a resumed fleet has the same meter) and is enrolled with that meter's
key.  Whether a device is meter-signed is then fixed by its enrolment statement, not by the flag.
"""

from __future__ import annotations

import argparse
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from attest_core.device import EnrolmentStatement, decode_enrolment_statement
from attest_core.keys import Ed25519Signer
from attest_core.note import VerifierKey
from attest_core.reading import MIN_TIME_MS
from edge_agent.device import DeviceRuntime
from edge_agent.enrol import bind_to_log, build_statement, enrol_device, http_client
from edge_agent.errors import AgentError, Exit
from edge_agent.meters.simulated import ChargerModel, PowerModel, SolarModel, seeded_random
from edge_agent.mqtt import MqttLink
from edge_agent.signer import derive_device_id
from edge_agent.simcharger.meter import OcmfMeter
from edge_agent.store import Store

log = logging.getLogger("edge_agent.fleet")

FLEET_SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet (
    idx INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL UNIQUE,
    seed BLOB NOT NULL,
    kind TEXT NOT NULL,
    asset_id TEXT NOT NULL,
    rated_power_w INTEGER NOT NULL,
    lat TEXT,
    lon TEXT,
    origin_ms INTEGER NOT NULL,
    statement BLOB
)
"""


@dataclass
class SimDevice:
    idx: int
    signer: Ed25519Signer
    kind: str
    asset_id: str
    rated_power_w: int
    lat: str | None
    lon: str | None
    origin_ms: int
    statement: EnrolmentStatement | None
    runtime: DeviceRuntime | None = None
    model: PowerModel | None = None
    link: MqttLink | None = None
    next_due: int = 0
    last_time: int = 0
    meter: OcmfMeter | None = None
    """A certified charger's meter, which signs OCMF at each session's start and end."""
    meter_signed: int = 0
    """Readings made this run that carry a record of the meter."""

    @property
    def device_id(self) -> str:
        return derive_device_id(self.signer.public_key)


def load_or_create(store: Store, args: argparse.Namespace, origin_ms: int) -> list[SimDevice]:
    db = store.db
    db.execute(FLEET_SCHEMA)
    devices: list[SimDevice] = []
    for idx, seed, kind, asset_id, rated, lat, lon, origin, statement in db.execute(
        "SELECT idx, seed, kind, asset_id, rated_power_w, lat, lon, origin_ms, statement FROM fleet ORDER BY idx"
    ):
        decoded = decode_enrolment_statement(bytes(statement)) if statement is not None else None
        devices.append(
            SimDevice(idx, Ed25519Signer(bytes(seed)), kind, asset_id, rated, lat, lon, origin, decoded)
        )
    devices = devices[: args.devices]
    for idx in range(len(devices), args.devices):
        rng = seeded_random(args.seed, "fleet", str(idx))
        kind = ("charger" if idx % 2 == 0 else "solar") if args.kind == "mixed" else args.kind
        signer = Ed25519Signer.generate()
        device_id = derive_device_id(signer.public_key)
        if kind == "charger":
            rated = rng.choice([11_000, 22_000])
            lat = lon = None
        else:
            rated = rng.choice([5_000, 10_000, 30_000, 100_000])
            lat = f"{args.lat + rng.uniform(-0.5, 0.5):.6f}"
            lon = f"{args.lon + rng.uniform(-0.5, 0.5):.6f}"
        asset_id = f"sim-{kind}-{device_id[4:14]}"
        db.execute(
            "INSERT INTO fleet (idx, device_id, seed, kind, asset_id, rated_power_w, lat, lon, origin_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (idx, device_id, signer.seed, kind, asset_id, rated, lat, lon, origin_ms),
        )
        devices.append(SimDevice(idx, signer, kind, asset_id, rated, lat, lon, origin_ms, None))
    return devices


def fleet_meter(device: SimDevice) -> OcmfMeter:
    """The device's simulated meter: seeded from the device's own key seed, so the same on every run."""
    return OcmfMeter(f"fleet-meter/{device.signer.seed.hex()}", unit="Wh")


def attach_meters(devices: list[SimDevice], meter_signed: bool) -> None:
    """Give each meter-signed device its meter: an enrolled device is one if its statement carries
    a meter key (which must be its meter's), a device not enrolled yet if it is a charger and
    ``meter_signed`` (``--meter-signed``) was asked for."""
    for device in devices:
        if device.statement is None:
            device.meter = fleet_meter(device) if meter_signed and device.kind == "charger" else None
            continue
        enrolled = device.statement.meter_key
        if enrolled is None:
            device.meter = None
            continue
        meter = fleet_meter(device)
        if meter.meter_key() != enrolled:
            raise AgentError(
                f"{device.device_id} was enrolled with meter key {enrolled.hex()}, not its simulated meter's "
                f"({meter.public_key_hex()}): this state directory was not made by this simulator",
                Exit.FAILED,
            )
        device.meter = meter


def enrol_all(
    devices: list[SimDevice], gateway: str, token: str, log_key: VerifierKey | None = None
) -> tuple[list[tuple[SimDevice, bytes]], AgentError | None]:
    """Enrol the devices that are not enrolled yet (8 at a time), through the REST API, in the
    log of ``log_key`` (the gateway's log key: statements v2 name it and its hash).

    Runs in worker threads; returns the enrolments made and the first error met.
    """
    todo = [d for d in devices if d.statement is None]
    if not todo:
        return [], None
    log.info("enrolling %d simulated device(s) at %s", len(todo), gateway)

    def enrol_slice(part: list[SimDevice]) -> tuple[list[tuple[SimDevice, bytes]], AgentError | None]:
        done: list[tuple[SimDevice, bytes]] = []
        try:
            with http_client() as client:
                for device in part:
                    statement = build_statement(
                        device.signer,
                        device_id=device.device_id,
                        asset_id=device.asset_id,
                        kind=device.kind,
                        rated_power_w=device.rated_power_w,
                        lat=device.lat,
                        lon=device.lon,
                        time_ms=max(device.origin_ms, MIN_TIME_MS),
                        log_key=log_key,
                    )
                    if device.meter is not None:
                        if log_key is None:
                            raise AgentError(
                                "a meter key is enrolled in a statement bound to a log", Exit.USAGE
                            )
                        statement = bind_to_log(statement, log_key, device.meter.meter_key())
                    result = enrol_device(client, gateway, token, statement, device.signer)
                    done.append((device, result.statement_bytes))
        except AgentError as exc:
            return done, exc
        return done, None

    slices = [todo[i::8] for i in range(min(8, len(todo)))]
    with ThreadPoolExecutor(len(slices)) as pool:
        outcomes = list(pool.map(enrol_slice, slices))
    errors = [error for _, error in outcomes if error is not None]
    return [item for done, _ in outcomes for item in done], errors[0] if errors else None


def power_model(device: SimDevice, seed: int) -> PowerModel:
    label = f"{seed}/{device.device_id}"
    if device.kind == "charger":
        return ChargerModel(label, device.rated_power_w, device.origin_ms)
    assert device.lat is not None
    assert device.lon is not None
    return SolarModel(label, device.rated_power_w, float(device.lat), float(device.lon), device.origin_ms)
