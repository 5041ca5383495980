"""The gateway's pooled database sessions carry server-side limits: a gateway cut off mid-transaction
cannot hold what it locked (readings, the registry lock) for longer than a minute."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from tests.gateway.helpers import settings_for
from tests.gateway.runner import GatewayThread
from tests.services import Broker, free_port


def test_pooled_sessions_end_an_abandoned_transaction(database: str, broker: Broker, tmp_path: Path) -> None:
    settings = settings_for(
        database, tmp_path, mqtt_url=broker.url, api_port=free_port(),
        mqtt_client_id=f"gw-{uuid.uuid4().hex[:8]}", mqtt_session_expiry=5,
    )  # fmt: skip
    with GatewayThread(settings) as gw:
        pool = gw.gateway.pool
        assert pool is not None

        async def limits() -> dict[str, str]:
            async with pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
                    ["idle_in_transaction_session_timeout", "tcp_keepalives_idle"],
                )
            return {r["name"]: r["setting"] for r in rows}

        got = asyncio.run_coroutine_threadsafe(limits(), gw.loop).result(10)
    assert got["idle_in_transaction_session_timeout"] == "60000"
    assert got["tcp_keepalives_idle"] in ("10", "0")  # 0 where the connection is not TCP
