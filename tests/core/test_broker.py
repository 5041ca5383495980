"""The MQTT URL format of the contract."""

from __future__ import annotations

import pytest

from attest_core.broker import BrokerUrl, parse_broker_url
from attest_core.errors import DecodeError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1883", BrokerUrl("127.0.0.1", 1883, False)),
        ("mqtt://broker", BrokerUrl("broker", 1883, False)),
        ("mqtts://broker.example.org", BrokerUrl("broker.example.org", 8883, True)),
        ("mqtts://gw:s%40cret@b:8884/", BrokerUrl("b", 8884, True, "gw", "s@cret")),
        ("mqtt://[::1]:1883", BrokerUrl("::1", 1883, False)),
    ],
)
def test_valid_urls(url: str, expected: BrokerUrl) -> None:
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://broker:1883", "must start with mqtt://"),
        ("broker:1883", "must start with mqtt://"),
        ("mqtt://broker:99999", "bad port"),
        ("mqtt://broker:port", "bad port"),
        ("mqtt://:1883", "names no host"),
        ("mqtt://broker/topic", "path or query"),
        ("mqtt://broker?x=1", "path or query"),
    ],
)
def test_invalid_urls(url: str, words: str) -> None:
    with pytest.raises(DecodeError, match=words) as info:
        parse_broker_url(url)
    assert info.value.code == "bad_mqtt_url"


def test_credentials_never_appear_in_messages() -> None:
    with pytest.raises(DecodeError) as info:
        parse_broker_url("mqtt://user:hunter2@broker:bad")
    assert "hunter2" not in str(info.value)
    assert parse_broker_url("mqtts://u:hunter2@b").display() == "mqtts://b:8883"
