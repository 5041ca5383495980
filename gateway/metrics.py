"""Prometheus metrics of one gateway process (served at ``/metrics``)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.accepted = Counter("iot_attest_readings_accepted", "Readings accepted by ingest", registry=r)
        self.duplicates = Counter(
            "iot_attest_readings_duplicate", "Readings received again (same bytes); acknowledged, not stored twice",
            registry=r,
        )  # fmt: skip
        self.rejected = Counter(
            "iot_attest_messages_rejected",
            "Messages refused and quarantined, by reason",
            ["reason"],
            registry=r,
        )
        self.logged = Counter(
            "iot_attest_entries_logged", "Entries appended to the log by this process", registry=r
        )
        self.log_size = Gauge(
            "iot_attest_log_size", "Entries in the log (as this process last saw it)", registry=r
        )
        self.checkpoint_size = Gauge(
            "iot_attest_checkpoint_size", "Tree size of the latest checkpoint", registry=r
        )
        self.checkpoint_time = Gauge(
            "iot_attest_checkpoint_timestamp_seconds", "When the latest checkpoint was signed", registry=r
        )
        self.checkpoint_age = Gauge(
            "iot_attest_checkpoint_age_seconds", "Seconds since the latest checkpoint was signed", registry=r
        )
        self.checkpoint_age.set_function(self._age)
        self.ingest_lag = Histogram(
            "iot_attest_ingest_lag_seconds",
            "Seconds from a message's arrival to its storage",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.sequencer_leader = Gauge(
            "iot_attest_sequencer_leader", "1 if this process is the log's sequencer", registry=r
        )
        self.mqtt_connected = Gauge(
            "iot_attest_mqtt_connected", "1 while connected to the broker", registry=r
        )
        self.quarantine_pruned = Counter(
            "iot_attest_quarantine_pruned",
            "Garbage rows deleted from the quarantine by age or row cap (evidence is never deleted)",
            registry=r,
        )
        self.quarantine_garbage = Gauge(
            "iot_attest_quarantine_garbage_rows",
            "Garbage rows the quarantine holds (as of this process's last prune)",
            registry=r,
        )
        self.receipts_refused = Counter(
            "iot_attest_receipts_refused",
            "Receipts the broker refused (an MQTT 5 PUBACK reason code of 0x80 or above), by reason code",
            ["reason"],
            registry=r,
        )

        self._signed_at = 0.0

    def checkpoint_signed(self, size: int, signed_at: float) -> None:
        self._signed_at = signed_at
        self.checkpoint_size.set(size)
        self.checkpoint_time.set(signed_at)

    def _age(self) -> float:
        return time.time() - self._signed_at if self._signed_at else float("nan")
