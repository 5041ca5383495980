"""The API's error answer is defined once: ApiError is a gateway Refused, its body an ErrorBody."""

from __future__ import annotations

import json

from gateway.errors import GatewayError, Refused
from gateway.routes.common import ApiError, ErrorBody, error


def test_api_error_is_a_refusal_of_the_gateway_hierarchy() -> None:
    exc = ApiError(401, "unauthorized", "this route needs a token", {"WWW-Authenticate": "Bearer"})
    assert isinstance(exc, Refused)
    assert isinstance(exc, GatewayError)
    assert (exc.status, exc.code, exc.message, str(exc)) == (
        401,
        "unauthorized",
        "this route needs a token",
        "this route needs a token",
    )
    assert exc.headers == {"WWW-Authenticate": "Bearer"}
    assert ApiError(404, "unknown_claim", "there is no claim 7").headers is None


def test_the_error_answer_is_an_error_body() -> None:
    answer = error(409, "already_enrolled", "device d is already enrolled \u00e9", {"X-Test": "1"})
    assert answer.status_code == 409
    assert answer.headers["X-Test"] == "1"
    assert answer.body == (
        '{"error":{"code":"already_enrolled","message":"device d is already enrolled \u00e9"}}'.encode()
    )
    parsed = ErrorBody.model_validate(json.loads(answer.body))
    assert (parsed.error.code, parsed.error.message) == (
        "already_enrolled",
        "device d is already enrolled \u00e9",
    )
