"""``simulate``: a fleet of simulated chargers and solar panels in one process.

Each device is a real device as far as the rest of the system can tell: its own
Ed25519 key, its own enrolment through the REST API with the installer token,
its own hash chain, its own MQTT connection (client id = device id, last will,
persistent session) and receipts that must verify with the log key.  What is
shared is the process (one asyncio loop), the SQLite database (``fleet.db``: the
agent's schema, keyed by device, plus a ``fleet`` table with each device's key
seed and enrolment) and the simulated clock.

Time: simulated time runs at ``--speed`` × wall time from ``--start``; each
device takes a reading every ``--interval`` simulated seconds (devices are
staggered across the interval) plus one at each charging session start and end.
With ``--duration D`` the simulated period is ``[start, start + D × speed)``; by
default it ends now, so a month of past data can be produced in minutes.  If the
machine cannot keep up, the simulation runs late rather than skipping readings:
every reading of the period is made.

Throughput: readings are built for many devices and committed in one transaction
per batch (one fsync per batch, not per reading); publishing is asynchronous
with up to ``--max-inflight`` unacknowledged messages per device.  Running it
again with the same ``--state`` resumes the same fleet where it stopped.

Meter-signed chargers (``--meter-signed``): each charger's simulated meter signs an OCMF record
at every session start and end, and the reading of that event carries it.  The gateway binds a
record to its reading exactly (register = the signed value in mWh, the meter's time within two
minutes of the reading's, pagination rising per device), so such a charger's register is kept in
whole Wh on every reading and the meter's page number is the reading's sequence number.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import sqlite3
import time
from dataclasses import dataclass

from attest_core.device import decode_enrolment_statement
from attest_core.metercheck import check_meter_value
from attest_core.meterproof import MeterFormat, MeterRecord
from attest_core.reading import MIN_TIME_MS, Status, Trigger
from edge_agent.clock import Clock
from edge_agent.config import MqttConfig
from edge_agent.consistency import consistency_fetcher
from edge_agent.device import DeviceRuntime
from edge_agent.enrol import (
    check_gateway_url,
    fetch_log_key,
    http_client,
)
from edge_agent.errors import AgentError, Exit
from edge_agent.fleet_devices import SimDevice, attach_meters, enrol_all, load_or_create, power_model
from edge_agent.meters.base import MeterEvent, MeterSample
from edge_agent.mqtt import MqttLink, parse_mqtt_url
from edge_agent.signer import ensure_private_dir
from edge_agent.simcharger.meter import MeterValue
from edge_agent.store import NewReading, Store

log = logging.getLogger("edge_agent.fleet")

BATCH = 4000


def _parse_start(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise AgentError(
            f"--start {text!r} is not an ISO 8601 time (e.g. 2026-10-01T00:00:00Z)", Exit.USAGE
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


async def run_fleet(args: argparse.Namespace) -> int:
    quiet = not getattr(args, "verbose", False)
    if quiet:
        logging.getLogger("edge_agent.device").setLevel(logging.WARNING)
    gateway = check_gateway_url(args.gateway)
    broker = parse_mqtt_url(args.mqtt or os.environ.get("MQTT_URL") or "mqtt://127.0.0.1:1883")
    state = args.state.absolute()
    try:
        ensure_private_dir(state)
    except OSError as exc:
        raise AgentError(f"cannot create the state directory {state}: {exc.strerror}", Exit.USAGE) from None
    interval_ms = max(1, int(args.interval * 1000))
    now = int(time.time() * 1000)
    requested = _parse_start(args.start)
    if requested is None:
        span = int(args.duration * args.speed * 1000) if args.duration else 0
        requested = now - span
    store = Store(state / "fleet.db")
    try:
        devices = load_or_create(store, args, max(requested, MIN_TIME_MS))
        loop = asyncio.get_running_loop()
        # The log key before the enrolments, which name its log (statements v2).
        with http_client() as client:
            key = await loop.run_in_executor(None, fetch_log_key, client, gateway)
        known = store.get_meta("log_key")
        if known is not None and known != key.to_string():
            raise AgentError(
                f"the gateway's log key {key.to_string()} differs from the one this fleet enrolled under "
                f"({known}); use a new --state directory for a new gateway",
                Exit.FAILED,
            )
        store.set_meta("log_key", key.to_string())
        log.info("log key %s+%s", key.name, key.key_id.hex())
        attach_meters(devices, args.meter_signed)
        enrolled, error = await loop.run_in_executor(None, enrol_all, devices, gateway, args.token, key)
        for device, statement_bytes in enrolled:  # kept even if another device failed
            store.db.execute("UPDATE fleet SET statement = ? WHERE idx = ?", (statement_bytes, device.idx))
            device.statement = decode_enrolment_statement(statement_bytes)
        if error is not None:
            raise error

        mqtt_config = MqttConfig(
            url=broker.display(),
            max_inflight=args.max_inflight,
            reconnect_min_s=0.5,
            reconnect_max_s=30.0,
            resend_after_s=args.resend_after or max(600.0, 10 * (args.drain or 0)),
        )
        start = max(requested, MIN_TIME_MS, int(store.get_meta("sim_until") or 0))
        fetch_consistency = consistency_fetcher(args.gateway)
        for device in devices:
            assert device.statement is not None
            runtime = DeviceRuntime(
                device_id=device.device_id,
                asset_id=device.asset_id,
                anchor=device.statement.chain_anchor(),
                signer=device.signer,
                store=store,
                log_public_key=key.public_key,
                simulated=True,
                quiet=True,
                fetch_consistency=fetch_consistency,
            )
            device.runtime = runtime
            device.model = power_model(device, args.seed)
            device.last_time = max(runtime.committed.last_time_ms or 0, device.origin_ms)
            start = max(start, device.last_time + 1)
            device.link = MqttLink(
                device_id=device.device_id,
                broker=broker,
                config=mqtt_config,
                store=store,
                on_receipt=runtime.on_receipt,
                quiet=True,
            )
            runtime.link = device.link
        end = start + int(args.duration * args.speed * 1000) if args.duration else None
        n = len(devices)
        for device in devices:
            offset = device.idx * interval_ms // max(n, 1)
            device.next_due = start + offset
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        tasks = [loop.create_task(d.link.run()) for d in devices if d.link is not None]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not all(d.link and d.link.connected for d in devices):
            await asyncio.sleep(0.05)
        connected = sum(1 for d in devices if d.link and d.link.connected)
        if connected < n:
            log.warning(
                "%d of %d devices connected to %s; the others keep trying", connected, n, broker.display()
            )
        metered = sum(1 for d in devices if d.meter is not None)
        print(
            f"simulating {n} device(s) from {_iso(start)}"
            + (f" to {_iso(end)}" if end else "")
            + f", a reading every {args.interval:g} s of simulated time, speed x{args.speed:g}"
            + (f"; {metered} meter-signed charger(s)" if metered else ""),
            flush=True,
        )
        drained = False
        try:
            reached = await _simulate(
                devices, store, Clock(args.speed, start), interval_ms, end, stop, args.progress
            )
            store.set_meta("sim_until", str(reached))
            drained = await _drain(devices, store, args.drain, stop)
        finally:
            for device in devices:
                if device.link is not None:
                    await device.link.stop(timeout=1.0)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
    finally:
        store.close()
    if not drained and args.drain > 0:
        log.error("readings still wait for receipts after the drain: not everything is confirmed logged")
        return int(Exit.FAILED)
    return 0


@dataclass
class _Totals:
    made: int = 0
    meter_signed: int = 0
    published: int = 0
    receipted: int = 0
    depth: int = 0
    connected: int = 0


def _totals(devices: list[SimDevice]) -> _Totals:
    t = _Totals()
    for d in devices:
        assert d.runtime is not None
        assert d.link is not None
        t.made += d.runtime.made
        t.meter_signed += d.meter_signed
        t.receipted += d.runtime.receipted
        t.depth += d.runtime.depth
        t.published += d.link.published
        t.connected += d.link.connected
    return t


def _iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))


async def _simulate(
    devices: list[SimDevice],
    store: Store,
    clock: Clock,
    interval_ms: int,
    end: int | None,
    stop: asyncio.Event,
    progress_s: float,
) -> int:
    """Make every reading due up to ``end`` (or until stopped); return the simulated time reached."""
    wall0 = time.monotonic()
    target = clock.now_ms()
    next_progress = wall0 + progress_s
    n = len(devices)
    per_device = max(1, BATCH // max(n, 1))
    last_made = 0
    last_wall = wall0
    while not stop.is_set():
        target = clock.now_ms()
        if end is not None:
            target = min(target, end - 1)
        batch: list[NewReading] = []
        built: list[tuple[SimDevice, int]] = []
        for device in devices:
            runtime, model = device.runtime, device.model
            assert runtime is not None
            assert model is not None
            count = 0
            while device.next_due <= target and count < per_device:
                due = device.next_due
                events: list[MeterEvent] = model.events(device.last_time, due)
                for event in events:
                    batch.append(_build(device, event.time_ms, event.trigger))
                    count += 1
                batch.append(_build(device, due, Trigger.PERIODIC))
                count += 1
                device.last_time = due
                device.next_due = due + interval_ms
            if count:
                built.append((device, count))
        if batch:
            try:
                store.append(batch)
            except sqlite3.Error as exc:
                for device, _ in built:
                    assert device.runtime is not None
                    device.runtime.rollback()
                raise AgentError(f"could not store readings in {store.path}: {exc}", Exit.FAILED) from None
            pos = 0
            for device, count in built:
                assert device.runtime is not None
                device.runtime.committed_ok(batch[pos : pos + count])
                pos += count
        now = time.monotonic()
        if now >= next_progress:
            totals = _totals(devices)
            rate = (totals.made - last_made) / max(now - last_wall, 1e-9)
            last_made, last_wall = totals.made, now
            print(
                f"[{now - wall0:7.1f} s] sim {_iso(min(d.last_time for d in devices))}  made {totals.made} "
                f"({rate:.0f}/s)  published {totals.published}  receipted {totals.receipted}  "
                f"outbox {totals.depth}  connected {totals.connected}/{n}",
                flush=True,
            )
            next_progress = now + progress_s
        if end is not None and all(d.next_due >= end for d in devices):
            break
        behind = any(d.next_due <= clock.now_ms() for d in devices)
        await asyncio.sleep(0 if behind and batch else 0.02)
    totals = _totals(devices)
    wall = time.monotonic() - wall0
    print(
        f"made {totals.made} readings in {wall:.1f} s ({totals.made / max(wall, 1e-9):.0f}/s); "
        + (f"{totals.meter_signed} carry a meter-signed record; " if totals.meter_signed else "")
        + f"published {totals.published}, receipted {totals.receipted}, outbox {totals.depth}",
        flush=True,
    )
    return min(d.next_due for d in devices) if devices else target


_SIGNED_EVENTS = {Trigger.SESSION_START: "B", Trigger.SESSION_END: "E"}
"""The events at which a certified charger's meter signs, and the OCMF transaction code of each."""


def _build(device: SimDevice, time_ms: int, trigger: Trigger) -> NewReading:
    runtime, model, meter = device.runtime, device.model, device.meter
    assert runtime is not None
    assert model is not None
    energy = model.energy_mwh(time_ms)
    if meter is None:
        return runtime.build(time_ms, MeterSample(energy, model.power_mw(time_ms), Status.SIMULATED), trigger)
    # The meter signs whole Wh, and the register must equal a signed value exactly and never go
    # back: every reading of a meter-signed charger keeps the register in whole Wh (the model's
    # register is monotone, so the floored one is too).
    energy = energy // 1000 * 1000
    sample = MeterSample(energy, model.power_mw(time_ms), Status.SIMULATED)
    transaction = _SIGNED_EVENTS.get(trigger)
    if transaction is None:
        return runtime.build(time_ms, sample, trigger)
    seq = runtime.tip.state.next_seq
    # The page is the reading's sequence number: it rises from record to record and continues
    # after a restart, as a real meter's counter in non-volatile memory does.
    meter.next_page = seq
    record = meter.record([MeterValue(time_ms=time_ms, register_wh=energy // 1000, transaction=transaction)])
    carried = MeterRecord(MeterFormat.OCMF, 0, record)
    # Checked as the gateway will check it: a record that does not bind would have the reading refused.
    _, problem = check_meter_value(carried, meter.meter_key(), seq=seq, time_ms=time_ms, energy_mwh=energy)
    if problem is not None:
        log.error(
            "%s: reading %d is made without its meter record: %s", device.device_id, seq, problem.message
        )
        return runtime.build(time_ms, sample, trigger)
    device.meter_signed += 1
    return runtime.build(time_ms, sample, trigger, meter_record=carried)


async def _drain(devices: list[SimDevice], store: Store, seconds: float, stop: asyncio.Event) -> bool:
    """Wait until everything is published and receipted (or ``seconds`` pass); True if it was."""
    wall0 = time.monotonic()
    deadline = wall0 + max(0.0, seconds)
    while not stop.is_set() and time.monotonic() < deadline:
        totals = _totals(devices)
        if totals.depth == 0 and all(d.link is not None and d.link.idle() for d in devices):
            break
        await asyncio.sleep(0.1)
    totals = _totals(devices)
    print(
        f"done after {time.monotonic() - wall0:.1f} s of draining: made {totals.made}, published "
        f"{totals.published}, receipted {totals.receipted}, waiting in the outbox {totals.depth}",
        flush=True,
    )
    return totals.depth == 0
