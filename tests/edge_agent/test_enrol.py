"""enrol against a real HTTP server implementing the gateway's enrolment routes."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from attest_core.device import decode_enrolment_statement, enrolment_anchor
from attest_core.note import VerifierKey
from edge_agent.config import load_config
from edge_agent.signer import load_signer
from edge_agent.store import Store
from tests.edge_agent.conftest import Cli
from tests.edge_agent.fakes import INSTALLER_TOKEN, LOG_ORIGIN, VIEWER_TOKEN, FakeGateway
from tests.services import free_port, wait_for
from tests.support import seeded_signer


def init(cli: Cli, tmp_path: Path, kind: str = "simulated-solar") -> Path:
    assert cli("init", "--dir", tmp_path / "dev", "--meter", kind).code == 0
    return tmp_path / "dev" / "agent.toml"


def enrol(  # type: ignore[no-untyped-def]
    cli: Cli,
    config: Path,
    url: str,
    token: str = INSTALLER_TOKEN,
    *extra: str,
    asset: str = "solar-roof-3",
    rated_power: int = 9800,
    located: bool = True,
):
    """``enrol`` of a solar asset (by default solar-roof-3, 9800 W, at 52.52 13.405)."""
    where = ["--lat", "52.52", "--lon", "13.405"] if located else []
    return cli(
        "enrol", "--config", config, "--gateway", url, "--token", token, "--asset", asset,
        "--kind", "solar", "--rated-power", str(rated_power), *where, *extra,
    )  # fmt: skip


def test_enrol_success_stores_statement_anchor_and_log_key(
    tmp_path: Path, cli: Cli, gateway: FakeGateway
) -> None:
    config_path = init(cli, tmp_path)
    result = enrol(cli, config_path, gateway.url)
    assert result.code == 0, result.err
    config = load_config(config_path, environ={})
    signer = load_signer(config)

    # what the gateway received: a valid statement with a proof of possession (checked by the server)
    _method, path, headers = next(r for r in gateway.requests if r[0] == "POST")
    assert path == "/v1/devices"
    assert headers["Authorization"] == f"Bearer {INSTALLER_TOKEN}"
    statement = gateway.devices[config.device_id]
    assert statement.public_key == signer.public_key
    assert statement.asset_id == "solar-roof-3"
    assert statement.rated_power_w == 9800
    assert statement.location is not None
    assert (statement.location.lat_e6, statement.location.lon_e6) == (52_520_000, 13_405_000)

    # what the device kept: the exact statement bytes, and its chain at genesis
    stored = (config.state_dir / "enrolment.bin").read_bytes()
    assert decode_enrolment_statement(stored) == statement
    summary = json.loads((config.state_dir / "enrolment.json").read_text())
    assert summary["log_index"] == 0
    assert summary["chain_anchor"] == enrolment_anchor(stored).hex()
    store = Store(config.db_path)
    row = store.chain(config.device_id)
    store.close()
    assert row is not None
    assert row.state.next_seq == 1
    assert row.state.prev_hash == enrolment_anchor(stored)

    # the log key, in the config and on screen whole, with its 256-bit fingerprint (not the key id)
    key = VerifierKey.parse(gateway.log_key)
    assert statement.log_origin == key.name  # the statement (v2) names the log
    data = tomllib.loads(config_path.read_text())
    assert data["gateway"]["log_key"] == gateway.log_key
    assert data["gateway"]["url"] == gateway.url
    assert f"log key:          {gateway.log_key}" in result.out
    digest = hashlib.sha256(gateway.log_key.encode()).hexdigest()
    fingerprint = " ".join(digest[i : i + 4] for i in range(0, 64, 4))
    assert f"log fingerprint:  {fingerprint}" in result.out
    assert "log key id" not in result.out
    assert "at log index 0" in result.out

    # running it again is harmless: the same statement is sent again (the gateway confirms it: 200)
    again = enrol(cli, config_path, gateway.url)
    assert again.code == 0, again.err
    assert "already enrolled: device" in again.out
    assert "at log index 0 (confirmed by the gateway again)" in again.out
    posts = [r for r in gateway.requests if r[0] == "POST"]
    assert len(posts) == 2
    assert gateway.log_index == 1
    assert (config.state_dir / "enrolment.bin").read_bytes() == stored
    other_asset = enrol(cli, config_path, gateway.url, asset="solar-roof-4", located=False)
    assert other_asset.code == 5
    assert "already enrolled for asset solar-roof-3" in other_asset.err


@pytest.mark.parametrize(
    ("token", "code", "message"),
    [
        ("wrong-token", 4, "refused the installer token (401"),
        (VIEWER_TOKEN, 4, "not allowed to enrol devices (403"),
    ],
)
def test_enrol_token_refused(
    tmp_path: Path, cli: Cli, gateway: FakeGateway, token: str, code: int, message: str
) -> None:
    config_path = init(cli, tmp_path)
    result = enrol(cli, config_path, gateway.url, token)
    assert result.code == code
    assert message in result.err
    assert "Traceback" not in result.err
    assert not (tmp_path / "dev" / "state" / "enrolment.bin").exists()


def test_enrol_already_enrolled_elsewhere(tmp_path: Path, cli: Cli, gateway: FakeGateway) -> None:
    config_path = init(cli, tmp_path)
    assert enrol(cli, config_path, gateway.url).code == 0
    # the state directory is lost: the gateway still knows the key, with another statement
    for name in ("enrolment.bin", "enrolment.json", "enrolment-request.json"):
        (tmp_path / "dev" / "state" / name).unlink()
    result = enrol(cli, config_path, gateway.url)
    assert result.code == 5
    assert "already enrolled (409 already_enrolled" in result.err
    assert "revoke" in result.err


def test_a_lost_answer_is_finished_by_running_enrol_again(
    tmp_path: Path, cli: Cli, gateway: FakeGateway
) -> None:
    config_path = init(cli, tmp_path)
    state = tmp_path / "dev" / "state"
    gateway.mode = "lose-answer"  # the gateway enrols the device, the answer never arrives
    lost = enrol(cli, config_path, gateway.url)
    assert lost.code == 3, lost.err
    assert "run the same enrol command again" in lost.err
    assert len(gateway.devices) == 1
    assert not (state / "enrolment.bin").exists()
    request = json.loads((state / "enrolment-request.json").read_text())
    assert stat.S_IMODE((state / "enrolment-request.json").stat().st_mode) == 0o600
    shown = cli("status", "--config", config_path)
    assert "NOT ENROLLED YET: an enrolment was sent but the gateway's answer never came" in shown.out
    # later (a new statement would have a new time: the gateway would answer 409 and the device be stuck)
    gateway.mode = "normal"
    again = enrol(cli, config_path, gateway.url)
    assert again.code == 0, again.err
    assert "resending the enrolment request stored in" in again.out
    assert "enrolled: device" in again.out
    sent = [json.loads(b) for b in gateway.bodies]
    assert [b["statement"] for b in sent] == [request["statement"]] * 2
    assert [b["proof_of_possession"] for b in sent] == [request["proof_of_possession"]] * 2
    assert gateway.log_index == 1
    stored = (state / "enrolment.bin").read_bytes()
    assert base64.b64encode(stored).decode() == request["statement"]
    assert load_config(config_path, environ={}).gateway.log_key == gateway.log_key


def test_a_different_enrolment_after_a_lost_answer_needs_new(
    tmp_path: Path, cli: Cli, gateway: FakeGateway
) -> None:
    config_path = init(cli, tmp_path)
    state = tmp_path / "dev" / "state"
    gateway.mode = "slow"  # the answer takes longer than the installer waits: it may have been enrolled
    assert enrol(cli, config_path, gateway.url, INSTALLER_TOKEN, "--timeout", "0.3").code == 3
    first = json.loads((state / "enrolment-request.json").read_text())
    assert wait_for(lambda: bool(gateway.devices), 10)  # the gateway did get it, after the installer gave up
    gateway.mode = "normal"
    other = enrol(cli, config_path, gateway.url, rated_power=9900)
    assert other.code == 2
    assert "a different enrolment request is stored in" in other.err
    assert "--asset solar-roof-3 --kind solar --rated-power 9800 --lat 52.52 --lon 13.405" in other.err
    assert "--new" in other.err
    # --new: the stored request is set aside and a new one made; the gateway holds the first: 409
    renewed = enrol(cli, config_path, gateway.url, INSTALLER_TOKEN, "--new", rated_power=9900, located=False)
    assert renewed.code == 5, renewed.err
    assert "set aside by --new probably reached the gateway" in renewed.err
    assert json.loads((state / "enrolment-request.discarded.json").read_text()) == first
    # putting it back and running enrol with its arguments finishes the first enrolment
    (state / "enrolment-request.discarded.json").replace(state / "enrolment-request.json")
    done = enrol(cli, config_path, gateway.url)
    assert done.code == 0, done.err
    assert decode_enrolment_statement((state / "enrolment.bin").read_bytes()).rated_power_w == 9800


def test_new_on_a_request_the_gateway_never_got(tmp_path: Path, cli: Cli, gateway: FakeGateway) -> None:
    config_path = init(cli, tmp_path)
    state = tmp_path / "dev" / "state"
    gateway.mode = "html-500"  # refused: nothing enrolled
    assert enrol(cli, config_path, gateway.url).code == 1
    assert (state / "enrolment-request.json").exists()
    gateway.mode = "normal"
    fixed = enrol(
        cli, config_path, gateway.url, INSTALLER_TOKEN, "--new", asset="solar-roof-4", located=False
    )
    assert fixed.code == 0, fixed.err
    assert gateway.devices[load_config(config_path, environ={}).device_id].asset_id == "solar-roof-4"
    # once confirmed, --new changes nothing
    again = enrol(
        cli, config_path, gateway.url, INSTALLER_TOKEN, "--new", asset="solar-roof-4", located=False
    )
    assert again.code == 5
    assert "already enrolled for asset solar-roof-4 (confirmed by the gateway" in again.err


def test_a_state_directory_without_a_stored_request_is_confirmed_again(
    tmp_path: Path, cli: Cli, gateway: FakeGateway
) -> None:
    """State made before requests were kept: the request is rebuilt from enrolment.bin (same bytes)."""
    config_path = init(cli, tmp_path)
    state = tmp_path / "dev" / "state"
    assert enrol(cli, config_path, gateway.url).code == 0
    first = json.loads((state / "enrolment-request.json").read_text())
    (state / "enrolment-request.json").unlink()
    again = enrol(cli, config_path, gateway.url)
    assert again.code == 0, again.err
    rebuilt = json.loads((state / "enrolment-request.json").read_text())
    assert (rebuilt["statement"], rebuilt["proof_of_possession"]) == (
        first["statement"],
        first["proof_of_possession"],
    )
    assert gateway.log_index == 1


def test_enrol_gateway_unreachable(tmp_path: Path, cli: Cli) -> None:
    config_path = init(cli, tmp_path)
    result = enrol(cli, config_path, f"http://127.0.0.1:{free_port()}")
    assert result.code == 3
    assert "cannot reach the gateway at http://127.0.0.1:" in result.err
    assert "Traceback" not in result.err


def test_enrol_timeout(tmp_path: Path, cli: Cli, gateway: FakeGateway) -> None:
    config_path = init(cli, tmp_path)
    gateway.mode = "slow"
    result = enrol(cli, config_path, gateway.url, INSTALLER_TOKEN, "--timeout", "0.5")
    assert result.code == 3
    assert "did not answer in time" in result.err


def test_enrol_malformed_answers(tmp_path: Path, cli: Cli, gateway: FakeGateway) -> None:
    config_path = init(cli, tmp_path)
    gateway.mode = "html-500"
    result = enrol(cli, config_path, gateway.url)
    assert result.code == 1
    assert "HTTP 500 (<html><body>Internal Server Error</body></html>)" in result.err

    # 201 with a body that is not JSON: the enrolment happened, so it is kept; the installer is told
    # (the failed attempt before left its request stored: it is resent, the 500 enrolled nothing)
    gateway.mode = "garbage-201"
    result = enrol(cli, config_path, gateway.url)
    assert result.code == 1
    assert "not the expected JSON" in result.err
    assert (tmp_path / "dev" / "state" / "enrolment.bin").exists()
    gateway.mode = "normal"
    assert enrol(cli, config_path, gateway.url).code == 0


def _nothing_signed(config_path: Path, gateway: FakeGateway) -> None:
    state = config_path.parent / "state"
    assert not [r for r in gateway.requests if r[0] == "POST"]
    assert not (state / "enrolment-request.json").exists()
    assert not (state / "enrolment.bin").exists()
    assert tomllib.loads(config_path.read_text())["gateway"]["log_key"] == ""


def test_enrol_log_key_missing_or_bad_then_resumed(tmp_path: Path, cli: Cli, gateway: FakeGateway) -> None:
    config_path = init(cli, tmp_path)
    gateway.mode = "no-key"
    result = enrol(cli, config_path, gateway.url)
    assert result.code == 1
    assert "the log key could not be fetched: GET" in result.err
    assert "Nothing was signed or sent" in result.err
    gateway.mode = "bad-key"
    result = enrol(cli, config_path, gateway.url)
    assert result.code == 1
    assert "not a valid C2SP verifier key string" in result.err
    _nothing_signed(config_path, gateway)  # the key comes first: no enrolment without it
    gateway.mode = "normal"
    assert enrol(cli, config_path, gateway.url).code == 0
    assert load_config(config_path, environ={}).gateway.log_key == gateway.log_key
    # a different key later is never silently accepted
    device_key = load_signer(load_config(config_path, environ={})).public_key
    gateway.log_key = VerifierKey.from_public_key("evil.example/log", device_key).to_string()
    result = enrol(cli, config_path, gateway.url)
    assert result.code == 1
    assert "the key is not replaced" in result.err


def test_enrol_with_a_pinned_log_key_fails_closed_on_any_difference(
    tmp_path: Path, cli: Cli, gateway: FakeGateway
) -> None:
    config_path = init(cli, tmp_path)
    published = gateway.log_key
    # the gateway serves another key of the same name (and so the same-looking origin)
    gateway.log_key = VerifierKey.from_public_key(
        LOG_ORIGIN, seeded_signer("impostor").public_key
    ).to_string()
    result = enrol(cli, config_path, gateway.url, INSTALLER_TOKEN, "--log-key", published)
    assert result.code == 1, result.err
    assert "not the key given with --log-key" in result.err
    assert "Nothing was signed or sent" in result.err
    _nothing_signed(config_path, gateway)
    # a key string that is not one is a usage error, found before the gateway is asked
    result = enrol(cli, config_path, gateway.url, INSTALLER_TOKEN, "--log-key", "test.example/log+1234")
    assert result.code == 2
    assert "--log-key is not a C2SP verifier key string" in result.err
    # the right key: enrolled, in the log it names
    gateway.log_key = published
    result = enrol(cli, config_path, gateway.url, INSTALLER_TOKEN, "--log-key", published)
    assert result.code == 0, result.err
    assert "the key given with --log-key: it matches" in result.out
    config = load_config(config_path, environ={})
    assert gateway.devices[config.device_id].log_origin == LOG_ORIGIN
    # and by the hash of the key it pinned: a log taking the same name has another key
    assert gateway.devices[config.device_id].log_key_hash == hashlib.sha256(published.encode()).digest()
    assert config.gateway.log_key == published


GATEWAY, TOKEN = ["--gateway", "GATEWAY"], ["--token", INSTALLER_TOKEN]
"""``GATEWAY`` stands for the fake gateway's URL."""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([*GATEWAY, *TOKEN, "--asset", "bad asset!", "--kind", "solar", "--rated-power", "10"], "not an identifier"),
        ([*GATEWAY, *TOKEN, "--asset", "a", "--kind", "solar", "--rated-power", "10", "--lat", "52"],
         "both --lat and --lon"),
        ([*GATEWAY, *TOKEN, "--asset", "a", "--kind", "solar", "--rated-power", "10", "--lat", "95", "--lon", "1"],
         "outside -90"),
        ([*GATEWAY, *TOKEN, "--asset", "a", "--kind", "solar", "--rated-power", "-5"], "must be positive"),
        ([*GATEWAY, *TOKEN, "--asset", "a", "--kind", "wind", "--rated-power", "10"], "invalid choice"),
        ([*GATEWAY, *TOKEN, "--asset", "a", "--kind", "solar"], "required: --rated-power"),
        ([*GATEWAY, "--asset", "a", "--kind", "solar", "--rated-power", "1"], "no installer token"),
        (["--gateway", "ftp://gateway", *TOKEN, "--asset", "solar-roof-3", "--kind", "solar", "--rated-power",
          "9800", "--lat", "52.52", "--lon", "13.405"], "not an http:// or https:// URL"),
    ],
)  # fmt: skip
def test_enrol_bad_arguments(
    tmp_path: Path, cli: Cli, gateway: FakeGateway, args: list[str], message: str
) -> None:
    config_path = init(cli, tmp_path)
    result = cli("enrol", "--config", config_path, *(gateway.url if a == "GATEWAY" else a for a in args))
    assert result.code == 2, (args, result.err)
    assert message in result.err, (args, result.err)
    assert not gateway.devices


def test_enrol_as_a_real_process_never_shows_a_traceback(tmp_path: Path, cli: Cli) -> None:
    config_path = init(cli, tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "edge_agent", "enrol", "--config", str(config_path), "--gateway",
         f"http://127.0.0.1:{free_port()}", "--token", "t", "--asset", "a", "--kind", "charger",
         "--rated-power", "7400"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 3
    assert proc.stderr.startswith("error: cannot reach the gateway")
    assert "Traceback" not in proc.stderr
