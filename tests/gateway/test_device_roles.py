"""Protocol v2 at the gateway: enrolments bound to its log, and who may change which device.

An enrolment must name this gateway's log origin (v1 statements only by setting); an
installer acts only on the devices it enrolled; an operator on any device, and only an
operator may disown readings already accepted, which the revocation entry records and the
verifier reports from a real bundle.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from importlib import resources
from typing import Any

import asyncpg
import pytest

from attest_core.bundle import verify_bundle
from attest_core.device import RotationStatement, log_key_hash, sign_rotation
from attest_core.entries import EntryType, RevocationEntry, RevokerRole, decode_entry, encode_entry
from attest_core.note import VerifierKey
from gateway import devices as device_ops
from gateway.config import load_settings
from tests.gateway.apiworld import Api, api_gateway, b64
from tests.services import Broker, Postgres
from tests.support import HOUR, LOG_KEY_HASH, LOG_ORIGIN, T0, TestDevice, seeded_signer


@pytest.fixture(scope="module")
def api(postgres: Postgres, broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with api_gateway(postgres, broker, tmp_path_factory.mktemp("roles")) as api:
        yield api


def _new(asset: str = "charger-x", **kw: Any) -> TestDevice:
    return TestDevice(f"dev-{uuid.uuid4().hex[:8]}", asset, **kw)


def _error(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def _identity_entries(api: Api, device_id: str) -> int:
    async def count(conn: asyncpg.Connection) -> int:
        n: int = await conn.fetchval(
            "SELECT (SELECT count(*) FROM pending_entries WHERE device_id = $1) "
            "+ (SELECT count(*) FROM entries WHERE device_id = $1)",
            device_id,
        )
        return n

    result: int = api.run(count)
    return result


# --- bound to one log ----------------------------------------------------------------------------


def test_an_enrolment_for_another_log_is_refused(api: Api) -> None:
    assert api.log_key().name == LOG_ORIGIN
    elsewhere = _new(log_origin="other.example/log")
    body = {"statement": b64(elsewhere.statement_bytes), "proof_of_possession": b64(elsewhere.pop)}
    r = api.post("/v1/devices", "installer-1", json=body)
    assert _error(r) == (400, "wrong_log_origin"), r.text
    assert "other.example/log" in r.json()["error"]["message"]
    assert api.get(f"/v1/devices/{elsewhere.device_id}").status_code == 404
    assert _identity_entries(api, elsewhere.device_id) == 0
    # a device enrolled for this log is welcome, and shows the log it is bound to
    bound = _new(log_origin=LOG_ORIGIN)
    assert api.enrol(bound)["status"] == "logged"
    device = api.ok(api.get(f"/v1/devices/{bound.device_id}"))
    assert (device["log_origin"], device["log_key_hash"]) == (LOG_ORIGIN, LOG_KEY_HASH.hex())


def test_an_enrolment_for_another_log_of_the_same_name_is_refused(api: Api) -> None:
    """A second gateway may take this log's name, not its key: its devices' enrolments, replayed
    here, name the other key's hash."""
    impostor = VerifierKey.from_public_key(LOG_ORIGIN, seeded_signer("impostor log key").public_key)
    replayed = _new(log_key_hash=log_key_hash(impostor))
    body = {"statement": b64(replayed.statement_bytes), "proof_of_possession": b64(replayed.pop)}
    r = api.post("/v1/devices", "installer-1", json=body)
    assert _error(r) == (400, "wrong_log_key"), r.text
    assert log_key_hash(impostor).hex() in r.json()["error"]["message"]
    assert api.get(f"/v1/devices/{replayed.device_id}").status_code == 404
    assert _identity_entries(api, replayed.device_id) == 0
    # the statement naming this log's key (the one the gateway serves) is enrolled
    assert log_key_hash(api.log_key()) == LOG_KEY_HASH
    assert api.enrol(_new())["status"] == "logged"


def test_a_v1_enrolment_is_refused_unless_the_setting_allows_it(api: Api) -> None:
    old = _new(log_origin=None)
    body = {"statement": b64(old.statement_bytes), "proof_of_possession": b64(old.pop)}
    r = api.post("/v1/devices", "installer-1", json=body)
    assert _error(r) == (400, "enrolment_v1_refused"), r.text
    assert "accept_v1_enrolments" in r.json()["error"]["message"]
    # with accept_v1_enrolments (what the route passes), a v1 agent is enrolled
    settings = load_settings(env={"GATEWAY_DATABASE_URL": api.dsn, "GATEWAY_ACCEPT_V1_ENROLMENTS": "true"})
    assert settings.accept_v1_enrolments is True

    async def enrol(conn: asyncpg.Connection) -> None:
        await device_ops.enrol(
            conn,
            old.statement_bytes,
            old.pop,
            "installer-1",
            role=RevokerRole.INSTALLER,
            log_origin=LOG_ORIGIN,
            accept_v1=True,
        )

    api.run(enrol)
    device = api.ok(api.get(f"/v1/devices/{old.device_id}"))
    assert (device["installer"], device["log_origin"], device["log_key_hash"]) == ("installer-1", None, None)


# --- roles -----------------------------------------------------------------------------------------


def _rotation_body(device: TestDevice, effective_seq: int) -> dict[str, str]:
    new = seeded_signer(device.device_id + " next key")
    statement = RotationStatement(
        device.device_id, device.signer.public_key, new.public_key, effective_seq, T0
    )
    data, old_sig, new_sig = sign_rotation(statement, device.signer, new)
    return {"statement": b64(data), "old_signature": b64(old_sig), "new_signature": b64(new_sig)}


def test_an_installer_acts_only_on_the_devices_it_enrolled(api: Api) -> None:
    mine = _new()
    api.enrol(mine, "installer-1")
    for path, body in [
        (f"/v1/devices/{mine.device_id}/revoke", {"reason": "not mine to revoke"}),
        (f"/v1/devices/{mine.device_id}/rotate", _rotation_body(mine, 5)),
    ]:
        r = api.post(path, "installer-2", json=body)
        assert _error(r) == (403, "not_your_device"), (path, r.text)
        assert "installer-2" in r.json()["error"]["message"]
    device = api.ok(api.get(f"/v1/devices/{mine.device_id}"))
    assert (device["status"], len(device["keys"])) == ("active", 1)
    assert _identity_entries(api, mine.device_id) == 1  # the enrolment only
    # its own installer may rotate it
    api.ok(api.post(f"/v1/devices/{mine.device_id}/rotate", "installer-1", json=_rotation_body(mine, 5)))


def test_an_operator_acts_on_any_device_also_of_a_withdrawn_installer(api: Api) -> None:
    # "installer-gone" is in no token table: its devices are the operator's to act on
    orphan = _new("charger-gone")

    async def enrol(conn: asyncpg.Connection) -> None:
        await device_ops.enrol(
            conn,
            orphan.statement_bytes,
            orphan.pop,
            "installer-gone",
            role=RevokerRole.INSTALLER,
            log_origin=LOG_ORIGIN,
        )

    api.run(enrol)
    r = api.post(f"/v1/devices/{orphan.device_id}/rotate", "installer-1", json=_rotation_body(orphan, 3))
    assert _error(r) == (403, "not_your_device")
    api.ok(api.post(f"/v1/devices/{orphan.device_id}/rotate", "operator-1", json=_rotation_body(orphan, 3)))
    answer = api.ok(
        api.post(f"/v1/devices/{orphan.device_id}/revoke", "operator-1", json={"reason": "retired"})
    )
    assert (answer["revoked_by"], answer["role"], answer["readings_disowned"]) == (
        "operator-1",
        "operator",
        0,
    )


def test_an_installer_enrols_only_on_its_own_assets(api: Api) -> None:
    """An asset belongs to the installer of its first device: another installer's device there would
    add its readings to the asset's and leave every claim on it not backed."""
    asset = f"charger-{uuid.uuid4().hex[:6]}"
    first = _new(asset)
    api.enrol(first, "installer-1")
    rogue = _new(asset)
    body = {"statement": b64(rogue.statement_bytes), "proof_of_possession": b64(rogue.pop)}
    r = api.post("/v1/devices", "installer-2", json=body)
    assert _error(r) == (403, "not_your_asset"), r.text
    assert asset in r.json()["error"]["message"]
    assert api.get(f"/v1/devices/{rogue.device_id}").status_code == 404
    assert _identity_entries(api, rogue.device_id) == 0
    # its installer adds devices; an operator may enrol on any asset (the rogue device too)
    api.enrol(_new(asset), "installer-1")
    api.enrol(rogue, "operator-1")
    # installer-2 has assets of its own, which installer-1 cannot enrol on either
    theirs = f"charger-{uuid.uuid4().hex[:6]}"
    api.enrol(_new(theirs), "installer-2")
    other = _new(theirs)
    r = api.post(
        "/v1/devices",
        "installer-1",
        json={"statement": b64(other.statement_bytes), "proof_of_possession": b64(other.pop)},
    )
    assert _error(r) == (403, "not_your_asset"), r.text


def test_an_asset_enrolled_by_an_operator_is_not_open_to_installers(api: Api) -> None:
    asset = f"charger-{uuid.uuid4().hex[:6]}"
    api.enrol(_new(asset), "operator-1")
    late = _new(asset)
    r = api.post(
        "/v1/devices",
        "installer-1",
        json={"statement": b64(late.statement_bytes), "proof_of_possession": b64(late.pop)},
    )
    assert _error(r) == (403, "not_your_asset"), r.text


def test_migration_008_gives_each_asset_the_installer_of_its_earliest_device(api: Api) -> None:
    asset = f"charger-{uuid.uuid4().hex[:6]}"
    api.enrol(_new(asset), "installer-2")
    api.enrol(_new(asset), "operator-1")
    sql = (resources.files("gateway.sql") / "008_asset_installer.sql").read_text()
    backfill = sql[sql.index("INSERT INTO asset_identity") :]

    async def go(conn: asyncpg.Connection) -> tuple[str | None, int]:
        # as before the migration: no row for this asset (its chain head is put back after), and
        # no owner recorded for any
        head = await conn.fetchval("SELECT head FROM asset_identity WHERE asset_id = $1", asset)
        await conn.execute("DELETE FROM asset_identity WHERE asset_id = $1", asset)
        await conn.execute("UPDATE asset_identity SET installer = NULL")
        await conn.execute(backfill)
        await conn.execute("UPDATE asset_identity SET head = $2 WHERE asset_id = $1", asset, head)
        owner: str | None = await conn.fetchval(
            "SELECT installer FROM asset_identity WHERE asset_id = $1", asset
        )
        unowned: int = await conn.fetchval("SELECT count(*) FROM asset_identity WHERE installer IS NULL")
        return owner, unowned

    assert api.run(go) == ("installer-2", 0)


def _logged_device(api: Api, asset: str, n: int = 6) -> TestDevice:
    device = _new(asset)
    api.enrol(device, "installer-1")
    items = [(device, device.reading(T0 + i * HOUR, i * 1_000_000).encode()) for i in range(n)]
    assert api.ingest(items).accepted == n
    api.wait_logged()
    return device


def test_an_installer_cannot_disown_logged_readings_an_operator_can(api: Api) -> None:
    asset = f"charger-{uuid.uuid4().hex[:6]}"
    device = _logged_device(api, asset)  # readings 1..6 logged, 00:00 to 05:00
    body = {"reason": "meter swapped", "last_valid_seq": 3}
    r = api.post(f"/v1/devices/{device.device_id}/revoke", "installer-1", json=body)
    assert _error(r) == (403, "disown_needs_operator"), r.text
    assert "would disown 3" in r.json()["error"]["message"]
    assert api.ok(api.get(f"/v1/devices/{device.device_id}"))["status"] == "active"
    assert _identity_entries(api, device.device_id) == 1  # its enrolment only: no revocation queued

    answer = api.ok(api.post(f"/v1/devices/{device.device_id}/revoke", "operator-1", json=body))
    assert (answer["last_valid_seq"], answer["readings_disowned"], answer["role"]) == (3, 3, "operator")
    assert answer["status"] == "logged"
    raw = api.http.get(f"/v1/log/entries/{answer['log_index']}").content
    assert raw[:2] == bytes([2, EntryType.REVOCATION])  # revocation v2
    entry = decode_entry(raw)
    assert isinstance(entry, RevocationEntry)
    assert (entry.revoked_by, entry.revoker_role, entry.readings_disowned, entry.last_valid_seq) == (
        "operator-1", RevokerRole.OPERATOR, 3, 3,
    )  # fmt: skip
    assert encode_entry(entry) == raw

    # the verifier reports it, from the claim's bundle: who, in which role, how many, when
    claim = {
        "title": "disowned",
        "assets": [asset],
        "period_start": "2026-10-01T00:00:00Z",
        "period_end": "2026-10-01T12:00:00Z",
        "tariff": {"currency": "USD", "price_per_kwh": "0.35"},
        "claimed_energy_kwh": "2",
        "claimed_amount": "0.70",
    }
    filed = api.ok(api.post("/v1/claims", "issuer-1", json=claim), 201)
    api.wait_checkpoint()
    r = api.get(f"/v1/claims/{filed['id']}/bundle", params={"mode": "full"})
    assert r.status_code == 200, r.text
    result = verify_bundle(r.content, api.log_key())
    assert result.backed
    [finding] = [f for f in result.evaluation.findings if f.code == "disowned_readings"]
    assert finding.severity.name == "WARNING"
    for text in ("operator-1", "(operator)", "disowning 3 readings", "meter swapped", "log entry"):
        assert text in finding.message, (text, finding.message)


def test_an_installer_may_revoke_its_device_without_disowning(api: Api) -> None:
    device = _logged_device(api, "charger-own", 3)
    answer = api.ok(
        api.post(f"/v1/devices/{device.device_id}/revoke", "installer-1", json={"reason": "done"})
    )
    assert (answer["last_valid_seq"], answer["readings_disowned"], answer["role"]) == (3, 0, "installer")
    entry = decode_entry(api.http.get(f"/v1/log/entries/{answer['log_index']}").content)
    assert isinstance(entry, RevocationEntry)
    assert (entry.revoker_role, entry.readings_disowned) == (RevokerRole.INSTALLER, 0)


def test_the_token_command_makes_operator_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.__main__ import main
    from gateway.tokens import TokenTable

    assert main(["token", "--name", "operator-9", "--role", "operator"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    token = lines[lines.index("") + 1].strip()
    snippet = out[out.index("[gateway.tokens.operator-9]") :]
    table = TokenTable.parse(
        {"operator-9": {"role": "operator", "sha256": snippet.split('sha256 = "')[1][:64]}}
    )
    principal = table.lookup(token)
    assert principal is not None
    assert (principal.name, principal.role) == ("operator-9", "operator")
