"""Request bodies are capped as they arrive, before authentication or parsing (gateway.bodylimit).

Every test speaks to a real gateway over a socket: the default cap must admit the
largest legal claim, anything larger gets 413 ``request_too_large`` whether it says
its length or streams it chunked, and the gateway's memory does not grow with it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from attest_core.claim import MAX_ASSETS
from gateway.bodylimit import DEFAULT_MAX_REQUEST_BYTES
from gateway.config import load_settings
from gateway.errors import ConfigError
from stack.processes import GatewayProcess
from tests.gateway.apiworld import Api, api_gateway
from tests.services import Broker, Postgres

SMALL = 4096
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def api(postgres: Postgres, broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with api_gateway(postgres, broker, tmp_path_factory.mktemp("limit")) as api:
        yield api


@pytest.fixture(scope="module")
def small(postgres: Postgres, broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with api_gateway(postgres, broker, tmp_path_factory.mktemp("small"), max_request_bytes=SMALL) as api:
        yield api


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """``total`` bytes in pieces: httpx sends a generator chunked, without Content-Length."""
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        yield b"x" * piece
        sent += piece


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == "request_too_large"
    assert "exceeds the limit of" in body["error"]["message"]


def padded_claim(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes that passes no validation (its title is far too long)."""
    head, tail = b'{"title": "', b'"}'
    return head + b"t" * (size - len(head) - len(tail)) + tail


def test_a_declared_length_over_the_cap_is_refused(api: Api) -> None:
    body = b"{" + b" " * DEFAULT_MAX_REQUEST_BYTES + b"}"
    r = api.post("/v1/claims", "issuer-1", content=body, headers={"content-type": "application/json"})
    assert_too_large(r)
    assert str(len(body)) in r.json()["error"]["message"]


def test_a_chunked_body_over_the_cap_is_refused(api: Api) -> None:
    r = api.post("/v1/claims", "issuer-1", content=chunks(DEFAULT_MAX_REQUEST_BYTES + 1))
    assert "content-length" not in r.request.headers
    assert_too_large(r)


def test_the_limit_runs_before_authentication(api: Api) -> None:
    for content in (b"x" * (DEFAULT_MAX_REQUEST_BYTES + 1), chunks(DEFAULT_MAX_REQUEST_BYTES + 1)):
        assert_too_large(api.post("/v1/claims", None, content=content))
    # a small body without a token is still the usual 401
    assert api.post("/v1/claims", None, content=b"{}").status_code == 401


def test_the_largest_legal_claim_gets_past_the_default_cap(api: Api) -> None:
    assets = [f"a{i:063d}" for i in range(MAX_ASSETS)]
    claim: dict[str, Any] = {
        "title": "t" * 512,
        "assets": assets,
        "period_start": "2026-10-01T00:00:00Z",
        "period_end": "2026-11-01T00:00:00Z",
        "tariff": {"currency": "USD", "price_per_kwh": "0.35"},
        "claimed_energy_kwh": "1",
        "claimed_amount": "0.35",
    }
    body = json.dumps(claim, indent=2).encode()  # indented: more than the compact form
    assert 4_000_000 < len(body) < DEFAULT_MAX_REQUEST_BYTES
    r = api.post("/v1/claims", "issuer-1", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text[:300]
    assert r.json()["error"]["code"] == "unknown_asset"


def test_a_configured_cap_is_honoured_to_the_byte(small: Api) -> None:
    json_type = {"content-type": "application/json"}
    for size in (SMALL, SMALL + 1):
        content = padded_claim(size)
        fixed = small.post("/v1/claims", "issuer-1", content=content, headers=json_type)
        streamed = small.post("/v1/claims", "issuer-1", content=chunks_of(content, 1000), headers=json_type)
        for r in (fixed, streamed):
            if size == SMALL:  # at the cap: past the limit, on to validation
                assert r.status_code == 400, r.text
                assert r.json()["error"]["code"] == "bad_request"
            else:
                assert_too_large(r)
    # the same connection still serves the next request
    assert small.get("/v1/claims", "issuer-1").status_code == 200


def chunks_of(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_the_413_is_documented(small: Api) -> None:
    paths = small.http.get("/openapi.json").json()["paths"]
    for path, method in (("/v1/claims", "post"), ("/v1/devices", "post"), ("/v1/log/cosignatures", "post")):
        answer = paths[path][method]["responses"]["413"]
        assert str(SMALL) in answer["description"]
        assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert "413" not in paths["/v1/claims"]["get"]["responses"]


def test_the_setting_comes_from_the_environment() -> None:
    env = {"DATABASE_URL": "postgresql://x/y", "GATEWAY_MAX_REQUEST_BYTES": "1048576"}
    assert load_settings(env=env).max_request_bytes == MiB
    assert (
        load_settings(env={"DATABASE_URL": "postgresql://x/y"}).max_request_bytes == DEFAULT_MAX_REQUEST_BYTES
    )
    with pytest.raises(ConfigError, match="max_request_bytes"):
        load_settings(env={**env, "GATEWAY_MAX_REQUEST_BYTES": "0"})


@pytest.mark.slow
def test_memory_does_not_grow_with_the_body(postgres: Postgres, broker: Broker, tmp_path: Path) -> None:
    """200 MB streamed at a gateway capped at 1 MiB: refused, and its RSS stays within a few MB."""
    gateway = GatewayProcess(
        database_url=postgres.create_database(),
        mqtt_url=broker.url,
        log_file=tmp_path / "gateway.log",
        origin="test.example/log",
        key_file=tmp_path / "log.key",
        client_id=f"limit-gw-{uuid.uuid4().hex[:6]}",
        settings={"role": "api", "max_request_bytes": str(MiB)},
    )
    gateway.start()
    try:
        process = psutil.Process(gateway.pid)
        with httpx.Client(base_url=gateway.url, timeout=120) as http:
            for _ in range(3):  # warm up: the first requests allocate what every request needs
                http.post("/v1/claims", content=b"{}")
            before = process.memory_info().rss
            peak = before
            done = threading.Event()

            def watch() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, process.memory_info().rss)
                    time.sleep(0.01)

            watcher = threading.Thread(target=watch)
            watcher.start()
            try:
                r = http.post("/v1/claims", content=chunks(200 * 1000 * 1000))
            finally:
                done.set()
                watcher.join()
        assert peak - before < 20 * MiB, f"RSS grew by {(peak - before) / MiB:.1f} MiB"
        assert_too_large(r)
    finally:
        gateway.stop()
