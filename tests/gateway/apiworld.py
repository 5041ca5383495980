"""A gateway with API tokens and a witness, and a client that speaks to it as each role (REST API tests)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from attest_core.checkpoint import WitnessKey, open_checkpoint
from attest_core.keys import Ed25519Signer
from attest_core.note import VerifierKey
from gateway.ingest import BatchResult, DeviceCache, Message, store_batch
from gateway.tokens import hash_token
from tests.gateway.helpers import settings_for
from tests.gateway.runner import GatewayThread
from tests.services import Broker, Postgres, free_port
from tests.support import TestDevice, seeded_signer

ROLES = {
    "installer-1": "installer",
    "installer-2": "installer",
    "operator-1": "operator",
    "issuer-1": "issuer",
    "issuer-2": "issuer",
    "auditor-1": "auditor",
}
WITNESS_SIGNER = seeded_signer("witness one")
WITNESS = WitnessKey.from_public_key("witness.example/one", WITNESS_SIGNER.public_key)
CLI_WITNESS_SEED = hashlib.sha256(b"the verifier's witness").digest()
CLI_WITNESS = WitnessKey.from_public_key("witness.example/cli", Ed25519Signer(CLI_WITNESS_SEED).public_key)


def secret(name: str) -> str:
    return f"secret-token-of-{name}-{'x' * 20}"


def token_settings() -> dict[str, Any]:
    return {name: {"role": role, "sha256": hash_token(secret(name))} for name, role in ROLES.items()}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@contextmanager
def api_gateway(postgres: Postgres, broker: Broker, tmp: Path, **changes: Any) -> Iterator[Api]:
    values: dict[str, Any] = {
        "mqtt_url": broker.url,
        "api_port": free_port(),
        "mqtt_client_id": f"gw-{uuid.uuid4().hex[:8]}",
        "mqtt_session_expiry": 5,
        "tokens": token_settings(),
        "witnesses": [WITNESS.to_string(), CLI_WITNESS.to_string()],
        "enrol_wait": 5.0,
    }
    values.update(changes)
    settings = settings_for(postgres.create_database(), tmp, **values)
    with GatewayThread(settings) as gw, Api(gw) as api:
        yield api


class Api:
    """HTTP as any role, plus direct database helpers (feeding readings, waiting for the log)."""

    def __init__(self, gw: GatewayThread) -> None:
        self.gw = gw
        self.dsn = gw.settings.database_url
        self.http = httpx.Client(base_url=gw.url, timeout=60)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    # --- HTTP ---------------------------------------------------------------------------

    @staticmethod
    def auth(who: str | None) -> dict[str, str]:
        return {} if who is None else {"Authorization": f"Bearer {secret(who)}"}

    def get(self, path: str, who: str | None = "auditor-1", **kw: Any) -> httpx.Response:
        return self.http.get(path, headers={**self.auth(who), **kw.pop("headers", {})}, **kw)

    def post(self, path: str, who: str | None, **kw: Any) -> httpx.Response:
        return self.http.post(path, headers={**self.auth(who), **kw.pop("headers", {})}, **kw)

    def ok(self, response: httpx.Response, status: int = 200) -> Any:
        assert response.status_code == status, (response.request.url, response.status_code, response.text)
        return response.json()

    def enrol(self, device: TestDevice, who: str = "installer-1") -> dict[str, Any]:
        body = {"statement": b64(device.statement_bytes), "proof_of_possession": b64(device.pop)}
        return self.ok(self.post("/v1/devices", who, json=body), 201)  # type: ignore[no-any-return]

    def log_key(self) -> VerifierKey:
        return VerifierKey.parse(self.http.get("/v1/log/key").text.strip())

    def checkpoint(self) -> str:
        return self.http.get("/v1/log/checkpoint").text

    def walk(self, path: str, who: str = "auditor-1", **params: Any) -> list[list[dict[str, Any]]]:
        """Every page of a paged route, following next_cursor."""
        pages = []
        cursor = None
        while True:
            query = dict(params)
            if cursor is not None:
                query["cursor"] = cursor
            page = self.ok(self.get(path, who, params=query))
            pages.append(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return pages
            assert len(pages) < 10_000

    # --- the database -------------------------------------------------------------------

    def run(self, fn: Any) -> Any:
        async def go() -> Any:
            conn = await asyncpg.connect(self.dsn)
            try:
                return await fn(conn)
            finally:
                await conn.close()

        return asyncio.run(go())

    def ingest(self, items: list[tuple[TestDevice, bytes]]) -> BatchResult:
        """Check and store readings as ingest does (what MQTT would deliver)."""
        messages = [Message(f"attest/v1/{d.device_id}/readings", data) for d, data in items]

        async def go(conn: asyncpg.Connection) -> BatchResult:
            return await store_batch(conn, messages, DeviceCache(ttl=0), self.gw.settings)

        result: BatchResult = self.run(go)
        return result

    def wait_logged(self, seconds: float = 30) -> int:
        """Until every accepted reading and pending entry is logged; returns the log size."""

        async def state(conn: asyncpg.Connection) -> tuple[int, int]:
            waiting = await conn.fetchval(
                "SELECT (SELECT count(*) FROM readings WHERE log_index IS NULL) + (SELECT count(*) FROM pending_entries)"
            )
            return waiting, await conn.fetchval("SELECT size FROM log_state")

        deadline = time.monotonic() + seconds
        while True:
            waiting, size = self.run(state)
            if waiting == 0:
                return int(size)
            assert time.monotonic() < deadline, f"{waiting} entries still wait for the sequencer"
            time.sleep(0.05)

    def wait_checkpoint(self, seconds: float = 30) -> int:
        """Until a checkpoint covers the whole log; returns its size."""
        size = self.wait_logged(seconds)
        key = self.log_key()
        deadline = time.monotonic() + seconds
        while True:
            response = self.http.get("/v1/log/checkpoint")
            if response.status_code == 200:
                cp = open_checkpoint(response.text, key).checkpoint
                if cp.size >= size:
                    return cp.size
            assert time.monotonic() < deadline, "no checkpoint covers the log"
            time.sleep(0.05)
