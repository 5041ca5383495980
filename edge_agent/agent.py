"""``run`` and ``status``: the agent's service loop and its health report.

The service loop (asyncio, one thread; gpiozero calls back from its own thread):
every ``interval_s`` (aligned to the clock: 60 s means on each minute) and at
each meter event (charging session start / end) it reads the meter, signs and
chains a reading, commits it with the chain state, and hands it to the MQTT link,
which publishes the outbox and applies verified receipts.  SIGTERM and SIGINT
stop it cleanly: the pulse count is persisted, ``offline`` is published and the
connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from attest_core.errors import AttestError
from attest_core.note import VerifierKey
from attest_core.reading import Trigger
from edge_agent.clock import Clock, SyncCheck
from edge_agent.config import Config
from edge_agent.consistency import consistency_fetcher
from edge_agent.device import DeviceRuntime
from edge_agent.enrol import load_enrolment
from edge_agent.enrolment_request import request_path
from edge_agent.errors import AgentError, Exit
from edge_agent.meters import Meter, MeterUnavailable, PushedReading, open_meter
from edge_agent.meters.base import ReadingsFollowMeter
from edge_agent.mqtt import MqttLink, parse_mqtt_url
from edge_agent.signer import load_signer
from edge_agent.store import ChainConflict, Store

log = logging.getLogger("edge_agent.agent")

HEARTBEAT_S = 5.0


def log_public_key(config: Config) -> tuple[VerifierKey | None, bytes | None]:
    text = config.gateway.log_key.strip()
    if not text:
        return None, None
    try:
        key = VerifierKey.parse(text)
    except (AttestError, ValueError) as exc:
        raise AgentError(
            f"{config.path}: [gateway] log_key is not a valid verifier key: {exc}", Exit.USAGE
        ) from None
    return key, key.public_key


@dataclass
class Agent:
    config: Config
    store: Store
    meter: Meter
    device: DeviceRuntime
    clock: Clock
    sync: SyncCheck
    link: MqttLink | None
    stop_event: asyncio.Event
    _last_heartbeat: float = -1e18
    _meter_failures: int = 0

    async def take(self, time_ms: int, trigger: Trigger) -> bool:
        """Read the meter and store one reading; False if none was taken."""
        device = self.device
        if device.halted:
            log.error("%s: not taking readings: %s", device.device_id, device.halted)
            return False
        try:
            sample = await self.meter.read(time_ms)
        except ReadingsFollowMeter as exc:
            log.debug("%s: no clock-driven reading: %s", device.device_id, exc)
            return False
        except MeterUnavailable as exc:
            self._meter_failures += 1
            level = logging.ERROR if self._meter_failures >= 3 else logging.WARNING
            log.log(level, "%s: no reading this time, the meter is not available: %s", device.device_id, exc)
            return False
        if self._meter_failures:
            log.info("%s: the meter answers again", device.device_id)
            self._meter_failures = 0
        synced = self.meter.simulated or self.sync.synchronised()
        reading = device.build(time_ms, sample, trigger, clock_synced=synced)
        try:
            self.store.append([reading])
        except (sqlite3.Error, ChainConflict) as exc:
            device.rollback()
            log.error(
                "%s: could not store reading %d (%s): no reading taken; retrying at the next interval",
                device.device_id,
                reading.seq,
                exc,
            )
            return False
        device.committed_ok([reading])
        now = time.monotonic()
        if now - self._last_heartbeat >= HEARTBEAT_S:
            self._last_heartbeat = now
            with contextlib.suppress(sqlite3.Error):
                self.store.set_agent(os.getpid(), STARTED_MS, int(time.time() * 1000))
        return True

    def store_now(self, pushed: list[PushedReading]) -> bool:
        """Sign and store readings a meter pushed (meter-signed values), in one transaction."""
        device = self.device
        if not pushed:
            return True
        if device.halted:
            log.error("%s: not taking readings: %s", device.device_id, device.halted)
            return False
        synced = self.sync.synchronised()
        readings = [
            device.build(p.time_ms, p.sample, p.trigger, clock_synced=synced, meter_record=p.meter_record)
            for p in pushed
        ]
        try:
            self.store.append(readings)
        except (sqlite3.Error, ChainConflict) as exc:
            device.rollback()
            log.error(
                "%s: could not store %d reading(s) from the meter (%s): the charger is told to send them again",
                device.device_id,
                len(readings),
                exc,
            )
            return False
        device.committed_ok(readings)
        return True

    async def loop(self) -> None:
        interval_ms = max(1, int(self.config.meter.interval_s * 1000))
        last = self.clock.now_ms()
        await self.take(last, Trigger.PERIODIC)  # the boot reading
        while not self.stop_event.is_set():
            due = (last // interval_ms + 1) * interval_ms
            if not await self.clock.sleep_until(due, self.stop_event):
                break
            now = self.clock.now_ms()
            for event in self.meter.events(last, now):
                await self.take(event.time_ms, event.trigger)
            await self.take(now, Trigger.PERIODIC)
            last = now


STARTED_MS = int(time.time() * 1000)


async def run_agent(config: Config, stop_event: asyncio.Event | None = None) -> int:
    """The service: until SIGTERM / SIGINT (or ``stop_event``)."""
    signer = load_signer(config)
    statement = load_enrolment(config.state_dir)
    if statement is None:
        raise AgentError(
            f"this device is not enrolled yet (no {config.enrolment_path}): run "
            "`python -m edge_agent enrol --gateway URL --token TOKEN --asset ASSET --kind KIND --rated-power W`",
            Exit.USAGE,
        )
    if statement.public_key != signer.public_key or statement.device_id != config.device_id:
        raise AgentError(
            f"{config.enrolment_path} was made for another key or device id than this config's; "
            "the state directory and the key do not belong together",
            Exit.USAGE,
        )
    key, public = log_public_key(config)
    if public is None:
        log.warning(
            "no log key in %s: receipts cannot be verified, so the outbox will only grow "
            "(run `enrol` again to fetch the log key)",
            config.path,
        )
    store = Store(config.db_path)
    try:
        meter = open_meter(config, store, statement)
        device = DeviceRuntime(
            device_id=statement.device_id,
            asset_id=statement.asset_id,
            anchor=statement.chain_anchor(),
            signer=signer,
            store=store,
            log_public_key=public,
            max_outbox=config.outbox.max_readings,
            simulated=meter.simulated,
            keep_receipts_ms=config.receipts.keep_ms,
            fetch_consistency=consistency_fetcher(config.gateway.url, config.gateway.ca_file),
        )
        store.prune_receipts(int(time.time() * 1000), config.receipts.keep_ms)
        if meter.simulated:
            last = device.committed.last_time_ms
            start = max(int(time.time() * 1000), (last or 0) + 1)
            clock = Clock(config.meter.simulated.speed, start)
        else:
            clock = Clock()
        stop = stop_event or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, _on_signal, sig, stop)
        link = None
        if config.mqtt.url:
            broker = parse_mqtt_url(config.mqtt.url)

            def record(state: str, error: str) -> None:
                now = int(time.time() * 1000)
                store.set_link(device.device_id, state, broker.display(), now, error, now)

            link = MqttLink(
                device_id=device.device_id,
                broker=broker,
                config=config.mqtt,
                store=store,
                on_receipt=device.on_receipt,
                on_state=record,
            )
            device.link = link
        else:
            log.warning("no MQTT broker configured ([mqtt] url): readings stay in the outbox")
        agent = Agent(config, store, meter, device, clock, SyncCheck(config.clock.check_sync), link, stop)
        attach = getattr(meter, "attach", None)
        if callable(attach):
            attach(agent.store_now)
        log.info(
            "device %s (asset %s, %s meter): next seq %d, %d readings in the outbox, log key %s",
            device.device_id,
            device.asset_id,
            config.meter.type,
            device.committed.state.next_seq,
            device.depth,
            f"{key.name}+{key.key_id.hex()}" if key else "NONE",
        )
        try:
            await meter.start()
        except MeterUnavailable as exc:
            raise AgentError(f"cannot start the {config.meter.type} meter: {exc}", Exit.FAILED) from None
        store.set_agent(os.getpid(), STARTED_MS, int(time.time() * 1000))
        link_task = loop.create_task(link.run()) if link is not None else None
        try:
            await agent.loop()
        finally:
            log.info("stopping: persisting state and closing the broker connection")
            await meter.close()
            if link is not None and link_task is not None:
                await link.stop()
                link_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await link_task
            with contextlib.suppress(sqlite3.Error):
                store.set_agent(os.getpid(), STARTED_MS, 0)
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
    finally:
        store.close()
    log.info("stopped")
    return 0


def _on_signal(sig: int, stop: asyncio.Event) -> None:
    log.info("received %s", signal.Signals(sig).name)
    stop.set()


# --------------------------------------------------------------------------- status


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ago(ms: int | None, now_ms: int) -> str:
    if not ms:
        return "never"
    seconds = max(0, (now_ms - ms) // 1000)
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 172_800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86_400} days ago"


def _iso(ms: int | None) -> str:
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))


def collect_status(config: Config) -> dict[str, Any]:
    """Everything ``status`` shows, as a dict (also printed with ``--json``)."""
    now = int(time.time() * 1000)
    statement = load_enrolment(config.state_dir)
    key, _ = log_public_key(config)
    info: dict[str, Any] = {
        "device_id": config.device_id,
        "config": str(config.path),
        "enrolled": statement is not None,
        "enrolment_unconfirmed": statement is None and request_path(config.state_dir).exists(),
        "log_key": f"{key.name}+{key.key_id.hex()}" if key else None,
        "meter": config.meter.type,
    }
    if statement is not None:
        info["asset"] = {
            "asset_id": statement.asset_id,
            "kind": statement.asset_kind.label,
            "rated_power_w": statement.rated_power_w,
        }
    if not config.db_path.exists():
        info.update(
            agent_running=False,
            outbox_depth=0,
            last_seq=0,
            last_receipt=None,
            broker=None,
            refused_receipts=0,
        )
        return info
    store = Store(config.db_path, create=False)
    try:
        agent = store.agent()
        running = bool(agent and agent[2] and _pid_alive(agent[0]) and now - agent[2] < 600_000)
        info["agent_running"] = running
        info["agent"] = {"pid": agent[0], "heartbeat_ms": agent[2]} if agent else None
        chain = store.chain(config.device_id)
        info["last_seq"] = chain.state.next_seq - 1 if chain else 0
        info["last_reading_ms"] = chain.last_time_ms if chain else None
        info["outbox_depth"] = store.depth(config.device_id)
        info["outbox_limit"] = config.outbox.max_readings
        oldest = store.oldest(config.device_id)
        info["oldest_waiting"] = {"seq": oldest[0], "time_ms": oldest[1]} if oldest else None
        receipt = store.last_receipt(config.device_id)
        info["last_receipt"] = (
            {
                "seq": receipt.seq,
                "log_index": receipt.log_index,
                "tree_size": receipt.tree_size,
                "root_hash": receipt.root_hash.hex(),
                "time_ms": receipt.time_ms,
                "received_ms": receipt.received_ms,
                "proven": True,
            }
            if receipt
            else None
        )
        info["receipts_kept"] = len(store.proven_receipts(config.device_id))
        info["receipts_keep_days"] = config.receipts.keep_days
        refused = store.refused_receipts(config.device_id)
        info["refused_receipts"] = len(refused)
        info["last_refused_receipt"] = (
            {"received_ms": refused[-1].received_ms, "code": refused[-1].code, "detail": refused[-1].detail}
            if refused
            else None
        )
        if config.meter.type == "s0":
            s0 = config.meter.s0
            pulses = store.counter("s0_pulses")
            info["s0"] = {
                "pin": s0.pin,
                "pulses": pulses,
                "energy_mwh": s0.register_offset_mwh + pulses * 1_000_000 // s0.impulses_per_kwh,
            }
        if config.meter.type == "ocpp":
            from edge_agent.meters.ocpp import load_ocpp_status

            info["ocpp"] = load_ocpp_status(store)
        link = store.link(config.device_id)
        info["broker"] = (
            {
                "url": link.broker,
                "state": link.state if running else "agent not running",
                "since_ms": link.since_ms,
                "error": link.error,
            }
            if link
            else None
        )
    finally:
        store.close()
    return info


def format_status(info: dict[str, Any]) -> str:
    now = int(time.time() * 1000)
    lines = [f"device        {info['device_id']}   (config {info['config']})"]
    asset = info.get("asset")
    if asset:
        lines.append(f"asset         {asset['asset_id']} ({asset['kind']}, {asset['rated_power_w']} W)")
    elif info.get("enrolment_unconfirmed"):
        lines.append(
            "asset         NOT ENROLLED YET: an enrolment was sent but the gateway's answer never came; "
            "run the same `enrol` command again"
        )
    else:
        lines.append("asset         NOT ENROLLED: run `enrol`")
    lines.append(f"log key       {info['log_key'] or 'NONE: run `enrol` to fetch it'}")
    lines.append(f"meter         {info['meter']}")
    s0 = info.get("s0")
    if s0:
        lines.append(
            f"S0 input      GPIO{s0['pin']}: {s0['pulses']} pulses counted = {s0['energy_mwh'] / 1e6:.3f} kWh "
            "(as last persisted)"
        )
    if info.get("ocpp") is not None:
        from edge_agent.meters.ocpp import format_ocpp_status

        lines.extend(format_ocpp_status(info["ocpp"]))
    agent = info.get("agent") or {}
    if info.get("agent_running"):
        lines.append(
            f"agent         running (pid {agent['pid']}), heartbeat {_ago(agent['heartbeat_ms'], now)}"
        )
    else:
        lines.append("agent         NOT RUNNING (systemctl status iot-attest-agent)")
    broker = info.get("broker")
    if broker:
        line = f"broker        {broker['state']} ({broker['url']}) since {_iso(broker['since_ms'])}"
        if broker["error"]:
            line += f": {broker['error']}"
        lines.append(line)
    else:
        lines.append("broker        never connected")
    lines.append(f"last reading  seq {info.get('last_seq', 0)} at {_iso(info.get('last_reading_ms'))}")
    depth = info.get("outbox_depth", 0)
    limit = info.get("outbox_limit")
    oldest = info.get("oldest_waiting")
    text = f"outbox        {depth} reading(s) waiting for a receipt"
    if limit:
        text += f" (limit {limit}, {100 * depth // limit} %)"
    if oldest:
        text += f"; oldest seq {oldest['seq']} from {_ago(oldest['time_ms'], now)}"
    lines.append(text)
    receipt = info.get("last_receipt")
    if receipt:
        lines.append(
            f"last receipt  proven: seq {receipt['seq']} at log index {receipt['log_index']} of tree size "
            f"{receipt['tree_size']} (root {receipt['root_hash'][:16]}...), received "
            f"{_iso(receipt['received_ms'])} ({_ago(receipt['received_ms'], now)}); "
            f"{info.get('receipts_kept', 1)} kept for {info.get('receipts_keep_days', 0):g} days"
        )
    else:
        lines.append("last receipt  none proven yet")
    refused = info.get("refused_receipts", 0)
    last_refused = info.get("last_refused_receipt")
    if refused and last_refused:
        lines.append(
            f"REFUSED       {refused} receipt(s) signed by the log key whose proof FAILED (readings kept); "
            f"last {_iso(last_refused['received_ms'])}: {last_refused['code']}. Report to the log operator."
        )
    return "\n".join(lines)


def status_json(info: dict[str, Any]) -> str:
    return json.dumps(info, indent=2, sort_keys=True)
