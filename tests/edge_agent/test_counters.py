"""The agent's v2 counters: kept with the chain state, never lost or counted twice, and
continued from the stored readings of a device that signed v1 payloads."""

from __future__ import annotations

import sqlite3
from itertools import pairwise
from pathlib import Path

from attest_core.counters import consecutive_mismatch, first_mismatch, replay
from attest_core.device import AssetKind
from attest_core.evaluation import Severity
from attest_core.power import interval_power_mw
from attest_core.reading import Counters, Status, decode_envelope
from edge_agent.device import DeviceRuntime
from edge_agent.meters.base import MeterSample
from edge_agent.store import SCHEMA_VERSION, Store
from tests.edge_agent.chaincheck import chain_counters
from tests.edge_agent.plausibility import evaluate_devices
from tests.support import HOUR, T0, TestDevice, TestMeter

KWH = 1_000_000


def runtime(store: Store, dev: TestDevice) -> DeviceRuntime:
    return DeviceRuntime(
        device_id=dev.device_id,
        asset_id=dev.asset_id,
        anchor=dev.statement.chain_anchor(),
        signer=dev.signer,
        store=store,
        log_public_key=None,
    )


def make(device: DeviceRuntime, time_ms: int, sample: MeterSample, *, synced: bool = True) -> None:
    reading = device.build(time_ms, sample, clock_synced=synced)
    device.store.append([reading])
    device.committed_ok([reading])


def test_counters_are_committed_with_each_reading_and_survive_a_restart(tmp_path: Path) -> None:
    dev = TestDevice("dev-1", "charger-1", AssetKind.CHARGER, 11_000)
    store = Store(tmp_path / "agent.db")
    device = runtime(store, dev)
    make(device, T0, MeterSample(0))
    make(device, T0 + HOUR, MeterSample(5 * KWH, status=Status.TAMPER))
    # a reading built but never committed (the commit failed, or the agent died first) counts nothing
    device.build(T0 + 2 * HOUR, MeterSample(6 * KWH, status=Status.METER_ERROR), clock_synced=False)
    device.rollback()
    make(device, T0 + 2 * HOUR, MeterSample(6 * KWH), synced=False)
    store.close()
    # restarted: a power-up reading, counted on top of the stored counters
    store = Store(tmp_path / "agent.db")
    device = runtime(store, dev)
    make(device, T0 + 3 * HOUR, MeterSample(8 * KWH))
    envelopes = [decode_envelope(raw) for _, raw in store.pending("dev-1", 0, 100)]
    readings = [e.reading() for e in envelopes]
    assert [r.counters for r in readings] == [
        Counters(0, 1, 0, 0),
        Counters(1, 1, 0, interval_power_mw(HOUR, 5 * KWH)),
        Counters(1, 1, 1, interval_power_mw(HOUR, 5 * KWH)),
        Counters(1, 2, 1, interval_power_mw(HOUR, 5 * KWH)),
    ]
    assert chain_counters(store.path, "dev-1") == readings[-1].counters
    assert first_mismatch(readings[0]) is None
    assert all(consecutive_mismatch(a, b) is None for a, b in pairwise(readings))
    store.close()


def _downgrade_to_schema_1(path: Path) -> None:
    """What an agent of protocol v1 left behind: the chain table without the counter columns."""
    conn = sqlite3.connect(path)
    for column in ("fault_readings", "powerups", "unsynced_readings", "max_interval_power_mw"):
        conn.execute(f"ALTER TABLE chain DROP COLUMN {column}")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()


def test_a_v1_device_continues_with_v2_counters_from_its_stored_readings(tmp_path: Path) -> None:
    dev = TestDevice("dev-1", "charger-1", AssetKind.CHARGER, 11_000)
    path = tmp_path / "agent.db"
    Store(path).close()
    _downgrade_to_schema_1(path)
    # The v1 agent made 5 readings; 1 and 2 were receipted (deleted), 3-5 wait in the outbox.
    statuses = [Status.POWER_UP, Status.TAMPER, Status.OK, Status.TIME_UNSYNCED, Status.METER_ERROR]
    v1 = [dev.reading(T0 + h * HOUR, h * 3 * KWH, status=s, v1=True) for h, s in enumerate(statuses)]
    conn = sqlite3.connect(path)
    last = v1[-1].reading()
    conn.execute(
        "INSERT INTO chain (device_id, next_seq, prev_hash, anchor, last_time_ms, last_energy_mwh) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        ("dev-1", 6, dev.state.prev_hash, dev.statement.chain_anchor(), last.time_ms, last.energy_mwh),
    )
    conn.executemany(
        "INSERT INTO outbox (device_id, seq, time_ms, envelope) VALUES (?, ?, ?, ?)",
        [("dev-1", e.reading().seq, e.reading().time_ms, e.encode()) for e in v1[2:]],
    )
    conn.commit()
    conn.close()

    store = Store(path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    stored = [e.reading() for e in v1[2:]]
    assert (
        chain_counters(path, "dev-1") == replay(stored) == Counters(1, 0, 1, interval_power_mw(HOUR, 3 * KWH))
    )
    device = runtime(store, dev)
    make(device, T0 + 5 * HOUR, MeterSample(15 * KWH))
    make(device, T0 + 6 * HOUR, MeterSample(18 * KWH))
    envelopes = [decode_envelope(raw) for _, raw in store.pending("dev-1", 0, 100)]
    readings = [e.reading() for e in envelopes]
    assert [r.version for r in readings] == [1, 1, 1, 2, 2]
    assert readings[3].counters == Counters(1, 1, 1, interval_power_mw(HOUR, 3 * KWH))  # + its power-up
    # the log's readings, v1 and v2, pass the verifier's rules: no counters_inconsistent anywhere
    evaluation = evaluate_devices([(dev.statement, dev.signer)], [decode_envelope(v.encode()) for v in v1[:2]]
                                  + envelopes, T0, T0 + 7 * HOUR)  # fmt: skip
    fatal = [(f.code, f.seq) for f in evaluation.findings if f.severity is Severity.FATAL]
    assert fatal == [("meter_fault", 2), ("meter_fault", 5)]
    store.close()


def test_a_meter_record_is_left_out_when_the_clock_went_back(tmp_path: Path) -> None:
    """The agent checks a record against the time the value arrived; if the device clock went back, the
    reading takes the last reading's time instead, and a record checked against another time could be
    refused by the gateway (which would stop the device's log): it is left out."""
    meter = TestMeter()
    dev = TestDevice("dev-clock", "charger-clock", meter_key=meter.key)
    store = Store(tmp_path / "a.db")
    device = runtime(store, dev)
    make(device, T0 + 10 * 60_000, MeterSample(5_000_000))
    record = meter.meter_record([(T0, "E", 6_000_000)])
    behind = device.build(T0, MeterSample(6_000_000), meter_record=record)
    assert decode_envelope(behind.envelope).reading().meter_record is None
    store.append([behind])
    device.committed_ok([behind])
    on_time = device.build(
        T0 + 11 * 60_000,
        MeterSample(6_000_000),
        meter_record=meter.meter_record([(T0 + 11 * 60_000, "E", 6_000_000)]),
    )
    assert decode_envelope(on_time.envelope).reading().meter_record is not None
