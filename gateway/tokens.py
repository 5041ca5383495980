"""API tokens: who may call which route, configured for the gateway and hashed at rest.

A token is a random secret (``iat_`` and ``secrets.token_urlsafe(32)``) handed to one
installer, operator, issuer or auditor.  The gateway keeps only its SHA-256, under a name
(the identity written into log entries: ``installer`` of an enrolment,
``revoked_by`` of a revocation, ``issuer`` of a claim) and a role::

    [gateway.tokens.alice]
    role = "installer"
    sha256 = "<64 hex digits: SHA-256 of the token>"

or, in the environment, ``GATEWAY_TOKENS='{"alice": {"role": "installer", "sha256": "..."}}'``.
``python -m gateway token --name alice --role installer`` makes one.  Tokens are
never logged; a presented token is hashed and compared with every configured
hash in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from attest_core.codec import ID_RE
from gateway.errors import ConfigError

ROLES: Final = ("installer", "operator", "issuer", "auditor")
"""installer: enrols devices and acts on the devices it enrolled; operator: acts on any device
(also those of an installer whose token was withdrawn) and may disown logged readings;
issuer: files claims; auditor: reads."""
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Principal:
    """The holder of a valid token: its configured name and role."""

    name: str
    role: str


def hash_token(token: str) -> str:
    """The SHA-256 of a token, as 64 lowercase hex digits (what the config holds)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


TOKEN_PREFIX: Final = "iat_"  # noqa: S105 (a public prefix, not a secret)
"""Every generated token starts with this: never with ``-``, which a command line would take for an
option (``--token -x…``), and recognisable to secret scanners."""


def generate_token() -> str:
    """A new random token: 256 bits of ``secrets`` behind :data:`TOKEN_PREFIX`."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class TokenTable:
    """The configured tokens, by hash."""

    def __init__(self, entries: list[tuple[Principal, bytes]] | None = None) -> None:
        self._entries = list(entries or [])

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def parse(cls, config: Mapping[str, Any]) -> TokenTable:
        """From the ``tokens`` setting: ``{name: {"role": ..., "sha256": ...}}``. Raises ConfigError."""
        if not isinstance(config, Mapping):
            raise ConfigError(
                "tokens must be a table of [gateway.tokens.<name>] entries (or a JSON object in GATEWAY_TOKENS)"
            )
        entries: list[tuple[Principal, bytes]] = []
        seen: dict[bytes, str] = {}
        for name, spec in config.items():
            if not isinstance(name, str) or ID_RE.fullmatch(name) is None:
                raise ConfigError(
                    f"token name {name!r} is not an identifier (1-64 characters from A-Z a-z 0-9 . _ -, "
                    "starting with a letter or digit): it is written into log entries"
                )
            if not isinstance(spec, Mapping):
                raise ConfigError(f"token {name}: expected a table with role and sha256")
            unknown = sorted(set(spec) - {"role", "sha256"})
            if unknown:
                raise ConfigError(f"token {name}: unknown keys {', '.join(map(str, unknown))}")
            role = spec.get("role")
            if role not in ROLES:
                raise ConfigError(f"token {name}: role must be one of {', '.join(ROLES)}, got {role!r}")
            digest = spec.get("sha256")
            if not isinstance(digest, str) or _HEX64.fullmatch(digest) is None:
                raise ConfigError(
                    f"token {name}: sha256 must be the token's SHA-256 as 64 lowercase hex digits "
                    "(python -m gateway token prints it)"
                )
            raw = bytes.fromhex(digest)
            if raw in seen:
                raise ConfigError(f"tokens {seen[raw]} and {name} have the same hash: one token, two names")
            seen[raw] = name
            entries.append((Principal(name, str(role)), raw))
        return cls(entries)

    def lookup(self, token: str) -> Principal | None:
        """The principal holding ``token``, or None. Compares with every hash in constant time."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found: Principal | None = None
        for principal, expected in self._entries:
            if hmac.compare_digest(digest, expected):
                found = principal
        return found


def config_snippet(name: str, role: str, digest: str) -> str:
    """The config lines (TOML and environment) that enable a token with this hash."""
    env = json.dumps({name: {"role": role, "sha256": digest}})
    key = name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else f'"{name}"'
    return (
        f"[gateway.tokens.{key}]\n"
        f'role = "{role}"\n'
        f'sha256 = "{digest}"\n'
        "\n"
        f"# or, in the environment (merge several tokens into one JSON object):\n"
        f"# GATEWAY_TOKENS='{env}'\n"
    )
