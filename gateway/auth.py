"""Bearer-token authentication and role checks for the REST API.

``Authorization: Bearer <token>``; a missing or unknown token gets 401 (with
``WWW-Authenticate: Bearer``), a valid token whose role may not use the route
gets 403.  The token itself is never logged or echoed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.routes.common import ApiError
from gateway.tokens import Principal, TokenTable

bearer = HTTPBearer(
    auto_error=False,
    description="A token from the gateway operator (python -m gateway token): installer, operator, issuer or "
    "auditor.",
)

INSTALLER = "installer"
OPERATOR = "operator"
ISSUER = "issuer"
AUDITOR = "auditor"

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def require(*roles: str, purpose: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits a token of one of ``roles`` (``purpose`` names the action in a 403)."""
    allowed = " or ".join(roles)

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        tokens: TokenTable = request.app.state.gateway.tokens
        if credentials is None:
            if request.headers.get("authorization"):
                raise ApiError(
                    401,
                    "unauthorized",
                    "the Authorization header must be 'Bearer <token>'",
                    _CHALLENGE,
                )
            raise ApiError(
                401,
                "unauthorized",
                f"this route needs a token: send 'Authorization: Bearer <{allowed} token>'",
                _CHALLENGE,
            )
        principal = tokens.lookup(credentials.credentials)
        if principal is None:
            raise ApiError(401, "invalid_token", "the token is not valid for this gateway", _CHALLENGE)
        if principal.role not in roles:
            raise ApiError(
                403,
                "forbidden",
                f"{principal.name} holds {_article(principal.role)} {principal.role} token, which may not "
                f"{purpose}; this needs {_article(allowed)} {allowed} token",
            )
        return principal

    return dependency


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
