"""Simulated devices with real keys, and their readings signed ahead of time.

Every device has a deterministic Ed25519 key and enrolment statement; its
readings form a real hash chain and are really signed (Ed25519, the protocol's
domain), so the gateway and the verifier check them exactly as they check a
Raspberry Pi's.  Only the encoding is done here with one ``struct`` call instead
of ``attest_core.reading.Reading.encode`` (three times faster for a million
readings); the first two readings of every device are cross-checked byte for byte
against the core's encoder and signer.

Signing runs in worker processes before anything is timed.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import random
import struct
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import asyncpg

from attest_core import domains
from attest_core.chain import ChainState, next_reading
from attest_core.device import AssetKind, EnrolmentStatement, log_key_hash, sign_enrolment
from attest_core.keys import Ed25519Signer
from attest_core.power import interval_power_mw
from attest_core.reading import Status, Trigger, device_key_id, reading_hash

HOUR_MS = 3_600_000
# Payload v2: seq, time_ms, energy_mwh, has_power=1, power_mw, status, trigger, the four counters
# (no fault, power-up or unsynchronised reading: only the highest interval power moves) and
# the extension count 0.
_FIXED = struct.Struct(">QQQBqHBQQQQB")


def seed_for(name: str) -> bytes:
    return hashlib.sha256(b"iot-attest bench " + name.encode()).digest()


@dataclass(frozen=True)
class FleetSpec:
    """``devices`` chargers (one asset each), ``readings`` readings each, one every ``interval_ms``."""

    tag: str
    devices: int
    readings: int
    start_ms: int
    interval_ms: int = 15 * 60 * 1000
    rated_power_w: int = 22_000

    def device_id(self, i: int) -> str:
        return f"bench-{self.tag}-{i:05d}"

    def asset_id(self, i: int) -> str:
        return f"asset-{self.tag}-{i:05d}"

    def time_ms(self, k: int) -> int:
        """Device time of reading ``k`` (0-based; seq k + 1)."""
        return self.start_ms + k * self.interval_ms


@dataclass(frozen=True)
class Enrolment:
    device_id: str
    asset_id: str
    statement: bytes
    pop: bytes
    anchor: bytes


def device_signer(spec: FleetSpec, i: int) -> Ed25519Signer:
    return Ed25519Signer(seed_for(f"{spec.tag}/{i}"))


def enrolment(spec: FleetSpec, i: int) -> Enrolment:
    from bench.env import ORIGIN, bench_log_key  # here: bench.env imports this module

    signer = device_signer(spec, i)
    statement = EnrolmentStatement(
        spec.device_id(i),
        signer.public_key,
        spec.asset_id(i),
        AssetKind.CHARGER,
        spec.rated_power_w,
        None,
        spec.start_ms - 24 * HOUR_MS,
        ORIGIN,  # bound to the benchmark's log and its key, as an agent enrols (statement v2)
        log_key_hash=log_key_hash(bench_log_key()),
    )
    data, pop = sign_enrolment(statement, signer)
    return Enrolment(spec.device_id(i), spec.asset_id(i), data, pop, statement.chain_anchor())


@dataclass
class DeviceReadings:
    """One device's signed readings: envelope bytes, payload hashes and registers, seq 1 first."""

    index: int
    envelopes: list[bytes]
    hashes: list[bytes]
    energies: list[int]


def sign_device(spec: FleetSpec, i: int) -> DeviceReadings:
    """Sign every reading of device ``i``: a charger drawing 0-80 % of its rated power per interval."""
    signer = device_signer(spec, i)
    enrol = enrolment(spec, i)
    dev = spec.device_id(i).encode()
    asset = spec.asset_id(i).encode()
    head = bytes([2, len(dev)]) + dev + bytes([len(asset)]) + asset
    key_id = device_key_id(signer.public_key)
    rng = random.Random(seed_for(f"meter {spec.tag}/{i}"))  # noqa: S311 - a simulated meter
    energy = rng.randrange(10**9)
    prev = enrol.anchor
    status = int(Status.SIMULATED)
    trigger = int(Trigger.PERIODIC)
    prefix = domains.READING_SIGNATURE
    envelopes: list[bytes] = []
    hashes: list[bytes] = []
    energies: list[int] = []
    sign = signer.sign
    powers: list[int] = []
    highest = 0
    for k in range(spec.readings):
        power_mw = int(spec.rated_power_w * 1000 * rng.random() * 0.8)
        step = power_mw * spec.interval_ms // HOUR_MS
        if k < 2:
            powers.append(power_mw)
        if k > 0:  # reading 1 has no interval before it
            highest = max(highest, interval_power_mw(spec.interval_ms, step))
        energy += step
        fields = (k + 1, spec.time_ms(k), energy, 1, power_mw, status, trigger, 0, 0, 0, highest, 0)
        payload = head + _FIXED.pack(*fields) + prev
        envelope = b"\x01" + key_id + len(payload).to_bytes(2, "big") + payload + sign(prefix + payload)
        prev = reading_hash(payload)
        envelopes.append(envelope)
        hashes.append(prev)
        energies.append(energy)
    # The first two readings (the second has counters moved by an interval), byte for byte as
    # the protocol core makes them.
    state = ChainState.genesis(enrol.anchor)
    for k, power_mw in enumerate(powers[:2]):
        made, state = next_reading(
            state,
            signer,
            device_id=spec.device_id(i),
            asset_id=spec.asset_id(i),
            time_ms=spec.time_ms(k),
            energy_mwh=energies[k],
            power_mw=power_mw,
            status=Status.SIMULATED,
            trigger=Trigger.PERIODIC,
        )
        if made.encode() != envelopes[k]:
            raise AssertionError("the benchmark's reading encoder disagrees with attest_core's")
    return DeviceReadings(i, envelopes, hashes, energies)


def _sign_range(spec: FleetSpec, lo: int, hi: int) -> list[DeviceReadings]:
    return [sign_device(spec, i) for i in range(lo, hi)]


def sign_fleet(spec: FleetSpec, workers: int = 2) -> list[DeviceReadings]:
    """Every device's readings, signed in ``workers`` processes."""
    if spec.devices * spec.readings < 20_000 or workers <= 1:
        return _sign_range(spec, 0, spec.devices)
    step = max(1, min(50, spec.devices // (workers * 4) or 1))
    ctx = multiprocessing.get_context("spawn")
    out: list[DeviceReadings] = []
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        futures = [
            pool.submit(_sign_range, spec, lo, min(lo + step, spec.devices))
            for lo in range(0, spec.devices, step)
        ]
        for future in futures:
            out.extend(future.result())
    return out


async def enrol_fleet(dsn: str, spec: FleetSpec, connections: int = 8) -> None:
    """Enrol every device directly in the database (gateway.devices.enrol: what POST /v1/devices does).

    Several connections at once: each enrolment is a transaction of its own (one commit each).
    """
    from attest_core.entries import RevokerRole
    from gateway.devices import enrol

    async def part(lo: int) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for i in range(lo, spec.devices, connections):
                e = enrolment(spec, i)
                await enrol(conn, e.statement, e.pop, "bench-installer", role=RevokerRole.INSTALLER)
        finally:
            await conn.close()

    await asyncio.gather(*(part(lo) for lo in range(min(connections, spec.devices))))


def enrol_fleet_sync(dsn: str, spec: FleetSpec) -> None:
    from gateway.migrations import migrate

    async def go() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        await enrol_fleet(dsn, spec)

    asyncio.run(go())
