"""A corpus of bad messages over MQTT, interleaved with valid traffic.

None crashes the gateway, each is quarantined with the right reason (a replay
is a duplicate: acknowledged, counted, never logged twice), and every valid
reading sent between them is logged.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from attest_core.chain import ChainState
from attest_core.entries import RevokerRole
from attest_core.reading import Envelope, reading_hash, sign_reading
from gateway.devices import enrol
from tests.gateway.helpers import run, settings_for
from tests.gateway.runner import GatewayThread
from tests.services import Broker, free_port
from tests.support import HOUR, T0, TestDevice, seeded_signer


def test_bad_input_corpus(database: str, broker: Broker, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    good = TestDevice(f"good-{tag}", "asset-good")
    victim = TestDevice(f"victim-{tag}", "asset-victim")
    stranger = TestDevice(f"stranger-{tag}", "asset-stranger")  # never enrolled

    async def enrol_two(conn):  # type: ignore[no-untyped-def]
        for d in (good, victim):
            await enrol(conn, d.statement_bytes, d.pop, "installer-1", role=RevokerRole.INSTALLER)

    settings = settings_for(
        database, tmp_path, mqtt_url=broker.url, api_port=free_port(),
        mqtt_client_id=f"gw-bad-{tag}", mqtt_session_expiry=5, gap_timeout=1.0,
    )  # fmt: skip
    good_readings = [good.reading(T0 + i * HOUR, i * 1000).encode() for i in range(40)]
    v1 = victim.reading(T0, 1)
    v2 = victim.reading(T0 + HOUR, 2)
    v4_state = ChainState(victim.state.next_seq + 1, b"\x00" * 32)  # skips seq 3: out of order
    victim.state = v4_state
    v_gap = victim.reading(T0 + 3 * HOUR, 4)
    other_key = sign_reading(good.reading(T0 + 41 * HOUR, 41_000).reading(), seeded_signer("not the device"))
    bad_sig = Envelope(v2.key_id, v2.payload, bytes(64))
    topic = f"attest/v1/{victim.device_id}/readings"
    corpus: list[tuple[str, str, bytes]] = [  # (expected reason, topic, payload)
        ("truncated", topic, v1.encode()[:40]),
        ("too_large", topic, b"\x01" * 4000),
        ("bad_version", topic, b"\x09" + v1.encode()[1:]),
        ("trailing_bytes", topic, v1.encode() + b"\x00\x00"),
        ("truncated", topic, b""),
        ("bad_signature", topic, bad_sig.encode()),
        ("unknown_key_id", f"attest/v1/{good.device_id}/readings", other_key.encode()),
        ("topic_mismatch", f"attest/v1/{good.device_id}/readings", v1.encode()),
        ("unknown_device", f"attest/v1/{stranger.device_id}/readings", stranger.reading(T0, 1).encode()),
        ("out_of_order", topic, v_gap.encode()),
    ]
    # dated an hour ahead of now: beyond the allowed clock skew
    future_reading = sign_reading(
        replace(
            v2.reading(),
            seq=3,
            time_ms=int(time.time() * 1000) + 3_600_000,
            prev_hash=reading_hash(v2.payload),
        ),
        victim.signer,
    )
    corpus.append(("future_time", topic, future_reading.encode()))
    # (A message on a topic outside attest/v1/+/readings never reaches the gateway: it does not
    # subscribe to it, and the production ACL refuses it at the broker. gateway/test_check covers
    # what the gateway does if it ever gets one.)

    with GatewayThread(settings) as gw:
        run(database, enrol_two)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bad-{tag}")
        client.connect(broker.host, broker.port)
        client.loop_start()
        try:
            publish = lambda t, p: client.publish(t, p, qos=1).wait_for_publish(10)  # noqa: E731
            publish(topic, v1.encode())
            publish(topic, v2.encode())
            for i, (_, t, payload) in enumerate(corpus):
                publish(f"attest/v1/{good.device_id}/readings", good_readings[i])
                publish(t, payload)
            publish(topic, v2.encode())  # a replay: a duplicate, never logged twice
            for envelope in good_readings[len(corpus) :]:
                publish(f"attest/v1/{good.device_id}/readings", envelope)
        finally:
            client.loop_stop()
            client.disconnect()

        async def state(conn):  # type: ignore[no-untyped-def]
            logged = await conn.fetchval(
                "SELECT count(*) FROM readings WHERE device_id = $1 AND log_index IS NOT NULL", good.device_id
            )
            victim_logged = await conn.fetch(
                "SELECT seq FROM readings WHERE device_id = $1 AND log_index IS NOT NULL ORDER BY seq",
                victim.device_id,
            )
            reasons = await conn.fetch("SELECT reason, count FROM quarantine")
            return logged, [r["seq"] for r in victim_logged], [(r["reason"], r["count"]) for r in reasons]

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            logged, victim_seqs, reasons = run(database, state)
            if logged == 40 and len(reasons) >= len(corpus):
                break
            time.sleep(0.2)
        assert logged == 40, "valid traffic interleaved with bad input was not all logged"
        assert victim_seqs == [1, 2], "the victim's readings are logged once each"
        got: dict[str, int] = {}
        for reason, count in reasons:
            got[reason] = got.get(reason, 0) + count
        want: dict[str, int] = {}
        for reason, _, _ in corpus:
            want[reason] = want.get(reason, 0) + 1
        assert got == want
        with httpx.Client(base_url=gw.url, timeout=10) as http:
            assert http.get("/readyz").status_code == 200  # still standing
            metrics = http.get("/metrics").text
        assert "iot_attest_readings_duplicate_total 1.0" in metrics
        assert 'iot_attest_messages_rejected_total{reason="bad_signature"} 1.0' in metrics
