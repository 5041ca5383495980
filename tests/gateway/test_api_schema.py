"""A property-based run of the gateway's OpenAPI description (schemathesis) against a live gateway.

Every operation gets generated requests that fit its schema (positive), requests
that do not (negative), and requests aimed at resources that exist, each with a
token of a role that may call it.  No answer may be a server error, use an
undocumented status or content type, or break the documented response schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.gateway.apiworld import Api, api_gateway
from tests.services import Broker, Postgres
from tests.support import HOUR, T0, TestDevice

POSITIVE_EXAMPLES = 25
NEGATIVE_EXAMPLES = 15
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
NEGATIVE_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]
EXISTING = {"device_id": "dev-1", "asset_id": "asset-1", "claim_id": 1}


@pytest.fixture(scope="module")
def api(postgres: Postgres, broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with api_gateway(postgres, broker, tmp_path_factory.mktemp("schema")) as api:
        d = TestDevice("dev-1", "asset-1")
        api.enrol(d)
        api.ingest([(d, d.reading(T0 + i * HOUR, i * 1_000_000).encode()) for i in range(5)])
        body = {
            "title": "schema run",
            "assets": ["asset-1"],
            "period_start": "2026-10-01T00:00:00Z",
            "period_end": "2026-10-02T00:00:00Z",
            "tariff": {"currency": "USD", "price_per_kwh": "0.35"},
            "claimed_energy_kwh": "4",
            "claimed_amount": "1.40",
        }
        assert api.ok(api.post("/v1/claims", "issuer-1", json=body), 201)["id"] == 1
        api.wait_checkpoint()
        yield api


def token_for(method: str, path: str) -> str | None:
    """A token whose role may call the operation (None for the public routes)."""
    if not path.startswith("/v1/") or path.startswith("/v1/log/"):
        return None
    if method == "POST" and path.startswith("/v1/devices"):
        return "installer-1"
    if method == "POST":
        return "issuer-1"
    return "auditor-1"


def run_operation(api: Api, operation: Any, mode: GenerationMode, examples: int, **fixed: Any) -> None:
    who = token_for(operation.method.upper(), operation.path)
    headers = Api.auth(who)
    checks = CHECKS if mode == GenerationMode.POSITIVE else NEGATIVE_CHECKS

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, **fixed))
    def run(case: Any) -> None:
        if who is not None:
            case.headers = {**(case.headers or {}), **headers}
        case.call_and_validate(base_url=api.gw.url, checks=checks, timeout=30)

    run()


def test_the_openapi_description_holds_for_generated_requests(api: Api) -> None:
    schema = schemathesis.openapi.from_dict(api.http.get("/openapi.json").json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        run_operation(api, operation, GenerationMode.POSITIVE, POSITIVE_EXAMPLES)
        try:
            run_operation(api, operation, GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES)
        except Unsatisfiable:  # nothing to get wrong: no parameters, no body
            assert not operation.query, operation.label
            assert not operation.path_parameters, operation.label
            assert not operation.body, operation.label
        names = {p.name for p in operation.path_parameters}
        if names and names <= set(EXISTING):
            fixed = {name: EXISTING[name] for name in names}
            run_operation(api, operation, GenerationMode.POSITIVE, POSITIVE_EXAMPLES, path_parameters=fixed)
