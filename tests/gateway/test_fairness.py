"""No device can hold back the others: a flood behind a gap leaves a healthy device's receipts on time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from bench.fleet import enrol_fleet_sync
from bench.starvation import measure, specs
from stack.processes import GatewayProcess, MosquittoProcess
from tests.gateway.helpers import log_signer, run
from tests.gateway.test_crash import ORIGIN, crash_gateway

pytestmark = pytest.mark.slow


@pytest.fixture
def broker_process(tmp_path: Path) -> Iterator[MosquittoProcess]:
    broker = MosquittoProcess(tmp_path / "mosquitto").start()
    yield broker
    broker.kill()


def test_a_flood_behind_a_gap_does_not_delay_a_healthy_device(
    database: str, broker_process: MosquittoProcess, tmp_path: Path
) -> None:
    flood_spec, healthy_spec = specs(8000, 10.0)
    for spec in (flood_spec, healthy_spec):
        enrol_fleet_sync(database, spec)
    gateway: GatewayProcess = crash_gateway(
        database,
        broker_process.url,
        tmp_path,
        checkpoint_interval="1.0",
        gap_timeout="120",
        sequencer_batch="2000",
    ).start()
    assert log_signer().name == ORIGIN
    try:
        result = measure(
            broker_process.host, broker_process.port, log_signer().public_key, flood_spec, healthy_spec
        )
    finally:
        gateway.stop(strict=True)
    print(result)
    assert result["starvation_unreceipted"] == 0, result
    assert result["starvation_p99_s"] <= 5.0, result

    async def ahead(conn: asyncpg.Connection) -> int:
        return int(await conn.fetchval("SELECT count(*) FROM quarantine WHERE reason = 'too_far_ahead'"))

    assert run(database, ahead) > 0, "the flood's far end was not turned away before its signature check"
