"""gateway.config: where each setting comes from, what a bad value says, and what printing hides."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import Settings, load_settings
from gateway.errors import ConfigError
from tests.services import REPO

DSN = "postgresql://iot_attest:db-pass-1234@db.example:5432/iot_attest"
BROKER = "mqtt://gateway:mqtt-pass-5678@broker.example:1883"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_environment_overrides_the_file(tmp_path: Path) -> None:
    config = write(
        tmp_path, '[gateway]\ndatabase_url = "postgresql://f@f/f"\norigin = "file/log"\napi_port = 1\n'
    )
    assert load_settings(config, env={}).database_url == "postgresql://f@f/f"
    settings = load_settings(config, env={"DATABASE_URL": DSN, "GATEWAY_API_PORT": "2"})
    assert (settings.database_url, settings.origin, settings.api_port) == (DSN, "file/log", 2)
    # GATEWAY_DATABASE_URL wins over DATABASE_URL; an empty DATABASE_URL or MQTT_URL is unset
    both = load_settings(config, env={"DATABASE_URL": DSN, "GATEWAY_DATABASE_URL": "postgresql://g@g/g"})
    assert both.database_url == "postgresql://g@g/g"
    empty = load_settings(config, env={"DATABASE_URL": "", "MQTT_URL": ""})
    assert (empty.database_url, empty.mqtt_url) == ("postgresql://f@f/f", "mqtt://127.0.0.1:1883")
    # a file without a [gateway] table holds the settings at its top level
    assert load_settings(write(tmp_path, 'database_url = "postgresql://t@t/t"\n'), env={}).database_url == (
        "postgresql://t@t/t"
    )


def test_only_the_documented_environment_names_count(tmp_path: Path) -> None:
    # lower-case names belong to other programs: the gateway reads DATABASE_URL, MQTT_URL, GATEWAY_*
    env = {"database_url": DSN, "mqtt_url": BROKER, "gateway_api_port": "9", "Gateway_Origin": "x"}
    with pytest.raises(ConfigError, match="no database"):
        load_settings(env=env)
    settings = load_settings(env={**env, "DATABASE_URL": DSN})
    assert (settings.mqtt_url, settings.api_port, settings.origin) == (
        "mqtt://127.0.0.1:1883",
        8000,
        "iot-attest.example/log",
    )


def test_tokens_as_json_text_in_the_file(tmp_path: Path) -> None:
    digest = "ab" * 32
    config = write(
        tmp_path,
        f'[gateway]\ndatabase_url = "{DSN}"\n'
        f'tokens = \'{{"alice": {{"role": "issuer", "sha256": "{digest}"}}}}\'\n',
    )
    assert load_settings(config, env={}).tokens == {"alice": {"role": "issuer", "sha256": digest}}
    with pytest.raises(ConfigError, match="tokens is not valid JSON"):
        load_settings(write(tmp_path, f'database_url = "{DSN}"\ntokens = "{{bad"\n'), env={})


def test_settings_built_directly_read_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ORIGIN", "from-the-environment")
    monkeypatch.setenv("DATABASE_URL", DSN)
    assert Settings().origin == "iot-attest.example/log"
    assert Settings().database_url == ""
    assert load_settings().origin == "from-the-environment"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GATEWAY_CHECKPOINT_INTERVAL": "soon"}, "setting checkpoint_interval must be a float, got 'soon'"),
        ({"GATEWAY_API_PORT": "eighty"}, "setting api_port must be an int"),
        ({"GATEWAY_ROLE": "boss"}, "role must be all, ingest, sequencer or api, got 'boss'"),
        ({"GATEWAY_SEQUENCER_LEASE_TTL": "0.5"}, "sequencer_lease_ttl must be at least 1"),
        ({"GATEWAY_QUARANTINE_GARBAGE_BYTES": "-1"}, "quarantine_garbage_bytes must not be negative"),
        ({"GATEWAY_QUARANTINE_PRUNE_INTERVAL": "0"}, "quarantine_prune_interval must be more than 0"),
        ({"GATEWAY_MAX_REQUEST_BYTES": "0"}, "max_request_bytes must be at least 1"),
        ({"GATEWAY_TOKENS": "{not json"}, "setting tokens (GATEWAY_TOKENS) is not valid JSON"),
        ({"GATEWAY_WITNESSES": "[1,"}, "witnesses: not a JSON list"),
        ({"MQTT_URL": "http://broker"}, "must start with mqtt:// or mqtts://"),
        ({"DATABASE_URL": ""}, "no database: set DATABASE_URL or database_url in the config file"),
    ],
)
def test_a_bad_value_names_its_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(env={"DATABASE_URL": DSN, **env})
    assert message in str(refused.value)


def test_unknown_names_in_the_file_are_listed(tmp_path: Path) -> None:
    config = write(tmp_path, "[gateway]\ncheckpoint_intervall = 1\norign = 'x'\n")
    with pytest.raises(ConfigError, match="unknown settings: checkpoint_intervall, orign"):
        load_settings(config, env={"DATABASE_URL": DSN})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", env={})
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(write(tmp_path, "[gateway\n"), env={})


def test_printed_and_logged_settings_hide_the_secrets(caplog: pytest.LogCaptureFixture) -> None:
    digest = "ab" * 32
    settings = load_settings(
        env={
            "DATABASE_URL": DSN,
            "MQTT_URL": BROKER,
            "GATEWAY_TOKENS": f'{{"auditor-1": {{"role": "auditor", "sha256": "{digest}"}}}}',
        }
    )
    assert settings.database_url == DSN, "the code gets the real value"
    assert settings.mqtt.password == "mqtt-pass-5678"
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("settings: %s / %r", settings, settings)
    for shown in (str(settings), repr(settings), f"{settings}", caplog.text, str(settings.redacted())):
        assert "db-pass-1234" not in shown
        assert "mqtt-pass-5678" not in shown
        assert digest not in shown
        assert "postgresql://iot_attest:***@db.example:5432/iot_attest" in shown
        assert "mqtt://gateway:***@broker.example:1883" in shown


def test_a_bad_secret_is_not_echoed_in_the_error() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(env={"DATABASE_URL": DSN, "GATEWAY_TOKENS": '["hunter2-token"]'})
    assert "hunter2-token" not in str(refused.value)


def test_python_m_gateway_says_what_is_wrong_without_a_traceback(tmp_path: Path) -> None:
    config = write(tmp_path, "[gateway]\nrole = 'boss'\n")
    env = {**os.environ, "DATABASE_URL": DSN}
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), "migrate"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == "gateway: role must be all, ingest, sequencer or api, got 'boss'"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        (
            "postgresql://u@h/db?password=pw&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        ("postgresql:///db?host=/run/postgresql", "postgresql:///db?host=/run/postgresql"),
        ("mqtts://gateway:pw@broker:8883", "mqtts://gateway:***@broker:8883"),
        ("mqtt://127.0.0.1:1883", "mqtt://127.0.0.1:1883"),
    ],
)
def test_each_form_of_password_is_hidden(url: str, shown: str) -> None:
    settings = Settings(database_url=url)
    assert settings.redacted()["database_url"] == shown
    assert settings.database_url == url
