"""The broker address format of the contract: ``mqtt://[user:pass@]host[:port]``, ``mqtts://`` for TLS.

One parser for the gateway, the edge agent and the tools, so every component
reads ``MQTT_URL`` the same way.  User name and password may be percent-encoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from attest_core.errors import DecodeError


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    def display(self) -> str:
        """The address without credentials, for logs and messages."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerUrl:
    """Parse an MQTT URL; raise :class:`DecodeError` (code ``bad_mqtt_url``) saying what is wrong."""
    if not isinstance(url, str):
        raise DecodeError(f"an MQTT URL is text, not {type(url).__name__}", code="bad_mqtt_url")
    parts = urlsplit(url)
    shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()  # never show credentials
    if parts.scheme not in ("mqtt", "mqtts"):
        raise DecodeError(f"the MQTT URL {shown!r} must start with mqtt:// or mqtts://", code="bad_mqtt_url")
    try:
        port = parts.port
    except ValueError:
        raise DecodeError(f"the MQTT URL {shown!r} has a bad port", code="bad_mqtt_url") from None
    if not parts.hostname:
        raise DecodeError(f"the MQTT URL {shown!r} names no host", code="bad_mqtt_url")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise DecodeError(f"the MQTT URL {shown!r} has a path or query; it takes only host and port",
                          code="bad_mqtt_url")  # fmt: skip
    tls = parts.scheme == "mqtts"
    return BrokerUrl(
        parts.hostname,
        port or (8883 if tls else 1883),
        tls,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )
