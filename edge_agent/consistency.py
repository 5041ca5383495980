"""Fetching a consistency proof from the gateway's REST API, for a receipt that cannot carry it.

A receipt carries the consistency proof from the previous receipt the gateway sent the device.
When the device missed that one, or the gateway restarted and lost track, the device asks
``GET /v1/log/proof/consistency?from=A&to=B`` for the proof from the last tree it proved.  The
answer needs no trust: the device checks it against its own proven root and the receipt's signed
root (attest_core.receipt.check_extension).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from edge_agent.enrol import http_client
from edge_agent.errors import AgentError

FETCH_TIMEOUT_S = 10.0
"""Seconds one proof request may take (it runs off the event loop)."""

Fetch = Callable[[int, int], list[bytes]]


def consistency_fetcher(
    gateway_url: str, ca_file: str = "", timeout: float = FETCH_TIMEOUT_S
) -> Fetch | None:
    """fetch(from_size, to_size) against the gateway at ``gateway_url``; None without a URL."""
    base = gateway_url.rstrip("/")
    if not base:
        return None

    def fetch(from_size: int, to_size: int) -> list[bytes]:
        with http_client(ca_file, timeout) as client:
            response = client.get(
                f"{base}/v1/log/proof/consistency", params={"from": from_size, "to": to_size}
            )
        if response.status_code != 200:
            raise AgentError(f"the gateway answered {response.status_code} to the consistency proof request")
        try:
            body = response.json()
            if (body["from"], body["to"]) != (from_size, to_size):
                raise ValueError("a proof between other sizes")
            return [base64.b64decode(h, validate=True) for h in body["hashes"]]
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise AgentError(f"the gateway's consistency proof is malformed: {exc}") from None

    return fetch
