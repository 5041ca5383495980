"""init: key file modes, O_EXCL, TOML content; config validation and updates; the signer."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import tomllib
from pathlib import Path

import pytest

from attest_core.keys import fingerprint
from edge_agent.config import load_config, update_config
from edge_agent.errors import AgentError
from edge_agent.signer import BACKENDS, FileSigner, derive_device_id, load_signer
from tests.edge_agent.conftest import Cli
from tests.edge_agent.line_editor import edit_lines


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_a_private_key_and_a_complete_config(tmp_path: Path, cli: Cli) -> None:
    home = tmp_path / "agent"
    result = cli("init", "--dir", home, "--meter", "sunspec", "--mqtt", "mqtts://broker.example:8883")
    assert result.code == 0, result.err
    key_path, config_path = home / "device.key", home / "agent.toml"
    assert mode(key_path) == 0o600
    assert mode(home) == 0o700
    assert mode(config_path) == 0o600  # it may hold the MQTT password
    assert mode(home / "state") == 0o700

    signer = FileSigner(key_path)
    expected_id = "dev-" + base64.b32encode(hashlib.sha256(signer.public_key).digest()).decode().lower()[:16]
    assert derive_device_id(signer.public_key) == expected_id
    assert f"device id:        {expected_id}" in result.out
    assert fingerprint(signer.public_key) in result.out

    data = tomllib.loads(config_path.read_text())
    assert data["device"] == {"id": expected_id, "state_dir": str(home / "state")}
    assert data["key"] == {"type": "file", "path": str(key_path)}
    assert data["meter"]["type"] == "sunspec"
    assert data["meter"]["interval_s"] == 60
    assert data["meter"]["s0"]["impulses_per_kwh"] == 1000
    assert data["meter"]["sunspec"]["bases"] == [40000, 0, 50000]
    assert data["mqtt"]["url"] == "mqtts://broker.example:8883"
    assert data["gateway"] == {"url": "", "log_key": "", "ca_file": ""}
    config = load_config(config_path, environ={})
    assert config.device_id == expected_id
    assert load_signer(config).public_key == signer.public_key


def test_init_never_overwrites(tmp_path: Path, cli: Cli) -> None:
    home = tmp_path / "agent"
    assert cli("init", "--dir", home).code == 0
    key_before = (home / "device.key").read_bytes()
    again = cli("init", "--dir", home)
    assert again.code == 2
    assert "already exists" in again.err
    # even with the config gone, the key file is never replaced (O_EXCL)
    (home / "agent.toml").unlink()
    third = cli("init", "--dir", home)
    assert third.code == 2
    assert "refusing to overwrite" in third.err
    assert (home / "device.key").read_bytes() == key_before


def test_init_with_a_chosen_device_id_and_bad_ones(tmp_path: Path, cli: Cli) -> None:
    assert cli("init", "--dir", tmp_path / "a", "--device-id", "meter-17.b").code == 0
    assert load_config(tmp_path / "a" / "agent.toml", environ={}).device_id == "meter-17.b"
    bad = cli("init", "--dir", tmp_path / "b", "--device-id", "bad id/with slash")
    assert bad.code == 2
    assert "not an identifier" in bad.err
    assert not (tmp_path / "b").exists()
    assert cli("init", "--dir", tmp_path / "c", "--mqtt", "http://nope").code == 2


def test_key_file_that_others_can_read_is_refused(tmp_path: Path, cli: Cli) -> None:
    home = tmp_path / "agent"
    assert cli("init", "--dir", home).code == 0
    config = load_config(home / "agent.toml", environ={})
    os.chmod(home / "device.key", 0o644)
    with pytest.raises(AgentError, match="chmod 600"):
        load_signer(config)
    os.chmod(home / "device.key", 0o600)
    (home / "device.key").write_text("garbage\n")
    with pytest.raises(AgentError, match="not an iot-attest device key"):
        load_signer(config)
    config.key.type = "pkcs11"
    with pytest.raises(AgentError, match="not supported"):
        load_signer(config)
    assert "file" in BACKENDS


def test_config_validation_names_the_problem(tmp_path: Path, cli: Cli) -> None:
    home = tmp_path / "agent"
    assert cli("init", "--dir", home).code == 0
    path = home / "agent.toml"
    text = path.read_text()
    for old, new, message in [
        ("interval_s = 60", "intervall_s = 60", "unknown setting 'intervall_s'"),
        ('type = "s0"', 'type = "s1"', "is not one of s0, sunspec"),
        ("pin = 17", 'pin = "17"', "must be an integer"),
        ("max_readings = 500000", "max_readings = 0", "at least 1"),
    ]:
        path.write_text(text.replace(old, new, 1))
        with pytest.raises(AgentError, match=message):
            load_config(path, environ={})
    path.write_text(text + "\n[extra]\nx = 1\n")
    with pytest.raises(AgentError, match="unknown table"):
        load_config(path, environ={})
    path.write_text("not toml = = =")
    result = cli("status", "--config", path)
    assert result.code == 2
    assert "not valid TOML" in result.err
    assert cli("status", "--config", tmp_path / "missing.toml").code == 2


def test_environment_overrides_the_file(tmp_path: Path, cli: Cli) -> None:
    home = tmp_path / "agent"
    assert cli("init", "--dir", home, "--mqtt", "mqtt://a:1883").code == 0
    config = load_config(
        home / "agent.toml",
        environ={"MQTT_URL": "mqtts://b:8883", "IOT_ATTEST_GATEWAY_URL": "https://gw.example"},
    )
    assert config.mqtt.url == "mqtts://b:8883"
    assert config.gateway.url == "https://gw.example"


def test_update_config_keeps_the_installers_edits(tmp_path: Path, cli: Cli) -> None:
    home = tmp_path / "agent"
    assert cli("init", "--dir", home).code == 0
    path = home / "agent.toml"
    path.write_text(path.read_text().replace("pin = 17 ", "pin = 27 ") + "# my note\n")
    update_config(path, "gateway", {"url": "https://gw.example", "log_key": 'a+b"c'})
    text = path.read_text()
    assert "# my note" in text
    assert "# set by enrol" in text  # the line's comment survives
    data = tomllib.loads(text)
    assert data["meter"]["s0"]["pin"] == 27
    assert data["gateway"]["url"] == "https://gw.example"
    assert data["gateway"]["log_key"] == 'a+b"c'
    assert mode(path) == 0o600


EDITS = [
    ("gateway", {"url": "https://gw.example", "log_key": "log.example+1a2b3c4d+AQ"}),
    ("gateway", {"log_key": 'a+b"c'}),
    ("meter", {"interval_s": 0.05}),
    ("meter", {"interval_s": 86_400}),
    ("meter.s0", {"pin": 27, "pull_up": False}),
    ("mqtt", {"url": "mqtt://127.0.0.1:1883", "username": "dev-x", "password": "s3cret"}),
]


@pytest.mark.parametrize(("section", "values"), EDITS)
def test_update_config_gives_the_line_editors_text(
    tmp_path: Path, cli: Cli, section: str, values: dict[str, str | int | float | bool]
) -> None:
    home = tmp_path / "agent"
    assert cli("init", "--dir", home, "--mqtt", "mqtt://a:1883").code == 0
    path = home / "agent.toml"
    edited = path.read_text().replace("pin = 17 ", "pin = 27 ").replace("seed = 1", "seed = 7   # mine")
    path.write_text("# installed by Anna\n" + edited + "\n# my note\n")
    before = path.read_text()
    update_config(path, section, values)
    assert path.read_text() == edit_lines(before, section, values)


def test_update_config_adds_missing_keys_and_tables(tmp_path: Path, cli: Cli) -> None:
    home = tmp_path / "agent"
    assert cli("init", "--dir", home).code == 0
    path = home / "agent.toml"
    # The installer removed gateway.ca_file: update_config adds it back.
    path.write_text(path.read_text().replace('ca_file = ""\n\n[outbox]', "\n[outbox]"))
    before = path.read_text()
    update_config(path, "gateway", {"ca_file": "/etc/ca.pem"})
    update_config(path, "extra.table", {"flag": True})
    after = path.read_text()
    assert tomllib.loads(after) == tomllib.loads(
        edit_lines(edit_lines(before, "gateway", {"ca_file": "/etc/ca.pem"}), "extra.table", {"flag": True})
    )
    assert after.startswith(before.split("[gateway]")[0])  # everything before the edit is as written
