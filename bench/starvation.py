"""Starvation: one device floods readings behind a gap while another sends one reading a second.

The flooding device (a broken or hostile device, or an honest agent replaying a deep outbox)
publishes ``flood`` readings with sequence numbers 2, 3, ... while its reading 1 never comes;
at the same moment a healthy device starts sending one reading every ``interval`` seconds.
The figure is how long the healthy device waits from publishing a reading to holding a
receipt that covers it (p50 / p99 / max): the gateway must not let the flood hold it back.

:func:`measure` only plays the two devices against a running gateway (the benchmark and
tests/gateway/test_fairness.py start their own); :func:`run_starvation` is the benchmark's run,
with a fresh database, Mosquitto and gateway process.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from attest_core.errors import AttestError
from attest_core.receipt import open_receipt
from attest_core.topics import readings_topic, receipts_topic
from bench.env import Postgres, bench_gateway, say
from bench.fleet import FleetSpec, enrol_fleet_sync, sign_device
from gateway.logkey import load_key_file
from stack.processes import MosquittoProcess
from stack.system import Tokens

FLOOD_TAG = "flood"  # device ids sort before the healthy one's: first in any per-device order
HEALTHY_TAG = "ok"


def specs(flood: int, seconds: float, interval: float = 1.0) -> tuple[FleetSpec, FleetSpec]:
    """The flooding device (``flood`` readings after the missing one) and the healthy one (a reading
    every ``interval`` for ``seconds``), both dated in the past."""
    healthy = max(1, math.ceil(seconds / interval))
    start_ms = int(time.time() * 1000) - (flood + 2) * 60_000 - 3_600_000
    return (
        FleetSpec(FLOOD_TAG, 1, flood + 1, start_ms, interval_ms=60_000),
        FleetSpec(HEALTHY_TAG, 1, healthy, start_ms, interval_ms=60_000),
    )


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def measure(
    host: str,
    port: int,
    log_public_key: bytes,
    flood_spec: FleetSpec,
    healthy_spec: FleetSpec,
    *,
    interval: float = 1.0,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Play the two devices (both enrolled already) and measure the healthy one's receipt latencies."""
    flood_readings = sign_device(flood_spec, 0).envelopes[1:]  # reading 1 never arrives
    healthy_readings = sign_device(healthy_spec, 0).envelopes
    healthy_id = healthy_spec.device_id(0)
    sent: dict[int, float] = {}
    latency: dict[int, float] = {}
    lock = threading.Lock()
    all_receipted = threading.Event()

    def on_receipt(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            receipt = open_receipt(bytes(msg.payload), log_public_key)
        except AttestError:
            return
        now = time.monotonic()
        with lock:
            for seq, at in sent.items():
                if seq <= receipt.seq and seq not in latency:
                    latency[seq] = now - at
            if len(latency) == len(healthy_readings):
                all_receipted.set()

    subscribed = threading.Event()
    healthy = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"starve-ok-{uuid.uuid4().hex[:6]}")
    healthy.on_message = on_receipt
    healthy.on_subscribe = lambda *a: subscribed.set()
    healthy.connect(host, port)
    healthy.subscribe(receipts_topic(healthy_id), qos=1)
    healthy.loop_start()
    flooder = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"starve-flood-{uuid.uuid4().hex[:6]}")
    flooder.max_inflight_messages_set(1000)
    flooder.max_queued_messages_set(0)
    flooder.connect(host, port)
    flooder.loop_start()
    try:
        if not subscribed.wait(10):
            raise RuntimeError("the healthy device could not subscribe to its receipts")
        flood_topic = readings_topic(flood_spec.device_id(0))
        t0 = time.monotonic()
        infos = [flooder.publish(flood_topic, envelope, qos=1) for envelope in flood_readings]
        topic = readings_topic(healthy_id)
        for k, envelope in enumerate(healthy_readings):
            pause = t0 + k * interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            with lock:
                sent[k + 1] = time.monotonic()
            healthy.publish(topic, envelope, qos=1)
        for info in infos:
            info.wait_for_publish(max(0.1, t0 + timeout - time.monotonic()))
        flood_s = time.monotonic() - t0
        all_receipted.wait(max(0.1, t0 + timeout - time.monotonic()))
    finally:
        for client in (healthy, flooder):
            client.loop_stop()
            client.disconnect()
    with lock:
        waits = [latency.get(seq, math.inf) for seq in sent]
    return {
        "starvation_p50_s": round(quantile(waits, 0.5), 3),
        "starvation_p99_s": round(quantile(waits, 0.99), 3),
        "starvation_max_s": round(max(waits), 3),
        "starvation_samples": len(waits),
        "starvation_unreceipted": sum(1 for w in waits if math.isinf(w)),
        "starvation_flood_readings": len(flood_readings),
        "starvation_flood_published_s": round(flood_s, 2),
    }


def run_starvation(
    pg: Postgres, workdir: Path, tokens: Tokens, settings: dict[str, str], flood: int, seconds: float
) -> dict[str, Any]:
    wd = workdir / "starvation"
    wd.mkdir(parents=True, exist_ok=True)
    dsn = pg.create("starvation")
    flood_spec, healthy_spec = specs(flood, seconds)
    for spec in (flood_spec, healthy_spec):
        enrol_fleet_sync(dsn, spec)
    broker = MosquittoProcess(wd / "mosquitto").start()
    gateway = bench_gateway(dsn, broker.url, wd, "starvation", tokens, **settings).start()
    try:
        key = load_key_file(wd / "log.key").verifier_key().public_key
        say(
            f"starvation: one device floods {flood:,} readings behind a gap while another sends one a second "
            f"for {seconds:g} s"
        )
        result = measure(broker.host, broker.port, key, flood_spec, healthy_spec)
        say(
            f"starvation: the healthy device's receipts p50 {result['starvation_p50_s']:.2f} s, "
            f"p99 {result['starvation_p99_s']:.2f} s (flood published in {result['starvation_flood_published_s']:.1f} s)"
        )
        return result
    finally:
        gateway.stop()
        broker.kill()
