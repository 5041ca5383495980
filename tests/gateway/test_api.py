"""The REST API on real PostgreSQL (and MQTT): roles, devices, assets, readings, quarantine, proofs, witnesses."""

from __future__ import annotations

import base64
import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from attest_core.checkpoint import cosign_checkpoint, open_checkpoint, parse_checkpoint_body
from attest_core.device import AssetKind, RotationStatement, decode_enrolment_statement, sign_rotation
from attest_core.entries import EnrolmentEntry, RevocationEntry, RotationEntry, decode_entry
from attest_core.keys import Ed25519Signer
from attest_core.merkle import leaf_hash, root_from_leaf_hashes, verify_consistency, verify_inclusion
from attest_core.note import add_signature_lines, parse_note
from attest_core.reading import device_key_id, sign_reading
from gateway.config import load_settings
from gateway.errors import ConfigError
from gateway.tokens import TOKEN_PREFIX, TokenTable, generate_token, hash_token
from tests.gateway.apiworld import (
    CLI_WITNESS,
    CLI_WITNESS_SEED,
    WITNESS,
    WITNESS_SIGNER,
    Api,
    api_gateway,
    b64,
)
from tests.gateway.helpers import log_signer
from tests.services import Broker, Postgres
from tests.support import BERLIN, HOUR, T0, TestDevice, TestMeter, seeded_signer

MINUTE = 60_000
D1 = TestDevice("dev-a1", "charger-a")
D2 = TestDevice("dev-a2", "charger-a", rated_power_w=11_000)
D3 = TestDevice("dev-b1", "solar-b", kind=AssetKind.SOLAR, rated_power_w=5_000, location=BERLIN)
SENT: dict[str, list[bytes]] = {}


@pytest.fixture(scope="module")
def api(postgres: Postgres, broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with api_gateway(postgres, broker, tmp_path_factory.mktemp("api")) as api:
        for d in (D1, D2, D3):
            answer = api.enrol(d)
            assert answer["status"] == "logged"
        items: list[tuple[TestDevice, bytes]] = []
        for i in range(30):  # D1 and D2 read at the same moments: ties in time order
            for d, n in ((D1, 30), (D2, 25), (D3, 10)):
                if i < n:
                    envelope = d.reading(T0 + i * 10 * MINUTE, i * 1_234_567).encode()
                    SENT.setdefault(d.device_id, []).append(envelope)
                    items.append((d, envelope))
        result = api.ingest(items)
        assert result.accepted == len(items)
        api.wait_checkpoint()
        yield api


# --- who may do what ---------------------------------------------------------------------------

ALL = {"installer-1", "operator-1", "issuer-1", "auditor-1"}
DEVICE_CHANGES = {"installer-1", "operator-1"}
PROTECTED: list[tuple[str, str, dict[str, Any] | None, set[str]]] = [
    ("POST", "/v1/devices", {"statement": "AA==", "proof_of_possession": "AA=="}, DEVICE_CHANGES),
    ("GET", "/v1/devices", None, ALL),
    ("GET", "/v1/devices/dev-a1", None, ALL),
    ("POST", "/v1/devices/nobody/revoke", {"reason": "test"}, DEVICE_CHANGES),
    (
        "POST",
        "/v1/devices/nobody/rotate",
        {"statement": "AA==", "old_signature": "AA==", "new_signature": "AA=="},
        DEVICE_CHANGES,
    ),
    ("GET", "/v1/devices/dev-a1/readings", None, {"issuer-1", "auditor-1"}),
    ("GET", "/v1/assets", None, {"issuer-1", "auditor-1"}),
    ("GET", "/v1/assets/charger-a", None, {"issuer-1", "auditor-1"}),
    ("GET", "/v1/assets/charger-a/readings", None, {"issuer-1", "auditor-1"}),
    ("POST", "/v1/claims", {"title": "t"}, {"issuer-1"}),
    ("GET", "/v1/claims", None, {"issuer-1", "auditor-1"}),
    ("GET", "/v1/claims/1", None, {"issuer-1", "auditor-1"}),
    ("GET", "/v1/claims/1/bundle", None, {"issuer-1", "auditor-1"}),
    ("GET", "/v1/quarantine", None, {"issuer-1", "auditor-1"}),
]


def call(
    api: Api, method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]
) -> httpx.Response:
    return api.http.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"), PROTECTED, ids=[f"{m} {p}" for m, p, _, _ in PROTECTED]
)
def test_every_protected_route_checks_token_and_role(
    api: Api, method: str, path: str, body: dict[str, Any] | None, allowed: set[str]
) -> None:
    for headers, code in [
        ({}, "unauthorized"),
        ({"Authorization": "Bearer not-a-token"}, "invalid_token"),
        ({"Authorization": "Basic aXNzdWVyOnB3"}, "unauthorized"),
        ({"Authorization": f"Bearer {api.auth('issuer-1')['Authorization'][7:]}x"}, "invalid_token"),
    ]:
        r = call(api, method, path, body, headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["code"] == code
    for who in sorted(ALL - allowed):
        r = call(api, method, path, body, api.auth(who))
        assert r.status_code == 403, (who, r.text)
        assert r.json()["error"]["code"] == "forbidden"
        assert who in r.json()["error"]["message"]
    for who in sorted(allowed):
        r = call(api, method, path, body, api.auth(who))
        assert r.status_code not in (401, 403, 500), (who, r.text)


def test_public_routes_need_no_token(api: Api) -> None:
    for path in ["/v1/log/checkpoint", "/v1/log/key", "/v1/log/entries/0", "/v1/log/proof/inclusion?index=0&size=1",
                 "/v1/log/proof/consistency?from=1&to=2", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"]:  # fmt: skip
        assert api.http.get(path).status_code == 200, path
    schema = api.http.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert all("422" not in op["responses"] for item in schema["paths"].values() for op in item.values())


# --- devices -----------------------------------------------------------------------------------------


def test_enrolment(api: Api) -> None:
    d = TestDevice(f"dev-{uuid.uuid4().hex[:6]}", "charger-new")
    body = {"statement": b64(d.statement_bytes), "proof_of_possession": b64(d.pop)}
    r = api.post("/v1/devices", "installer-2", json=body)
    answer = api.ok(r, 201)
    assert r.headers["location"] == f"/v1/devices/{d.device_id}"
    assert answer == {
        "device_id": d.device_id,
        "asset_id": "charger-new",
        "asset_kind": "charger",
        "key_id": device_key_id(d.signer.public_key).hex(),
        "log_index": answer["log_index"],
        "status": "logged",
    }
    entry = decode_entry(api.http.get(f"/v1/log/entries/{answer['log_index']}").content)
    assert isinstance(entry, EnrolmentEntry)
    assert (entry.statement_bytes, entry.pop_signature, entry.installer) == (
        d.statement_bytes,
        d.pop,
        "installer-2",
    )
    # exactly the same enrolment again (a retry): the same answer, 200
    assert api.ok(api.post("/v1/devices", "installer-1", json=body), 200) == answer
    # another statement for the enrolled device: 409
    again = TestDevice(d.device_id, "charger-other")
    r = api.post("/v1/devices", "installer-1",
                 json={"statement": b64(again.statement_bytes), "proof_of_possession": b64(again.pop)})  # fmt: skip
    assert (r.status_code, r.json()["error"]["code"]) == (409, "already_enrolled")
    device = api.ok(api.get(f"/v1/devices/{d.device_id}", "installer-1"))
    assert device["status"] == "active"
    assert device["enrolment_log_index"] == answer["log_index"]
    assert device["installer"] == "installer-2"
    assert device["meter_key"] is None


def test_a_meter_key_is_enrolled_with_the_statement_and_shown_with_its_installer(api: Api) -> None:
    meter = TestMeter(f"meter-{uuid.uuid4().hex[:6]}")
    d = TestDevice(f"dev-{uuid.uuid4().hex[:6]}", f"charger-{uuid.uuid4().hex[:6]}", meter_key=meter.key)
    body = {"statement": b64(d.statement_bytes), "proof_of_possession": b64(d.pop)}
    answer = api.ok(api.post("/v1/devices", "installer-2", json=body), 201)
    entry = decode_entry(api.http.get(f"/v1/log/entries/{answer['log_index']}").content)
    assert isinstance(entry, EnrolmentEntry)
    assert decode_enrolment_statement(entry.statement_bytes).meter_key == meter.key
    assert entry.installer == "installer-2"  # the log records who enrolled the meter's key
    device = api.ok(api.get(f"/v1/devices/{d.device_id}", "installer-1"))
    assert device["meter_key"] == {"curve": "secp256r1", "public_key": meter.key.hex()}
    # the same meter on a second device: its records would back two devices' claims
    twin = TestDevice(f"dev-{uuid.uuid4().hex[:6]}", f"charger-{uuid.uuid4().hex[:6]}", meter_key=meter.key)
    r = api.post("/v1/devices", "installer-2",
                 json={"statement": b64(twin.statement_bytes), "proof_of_possession": b64(twin.pop)})  # fmt: skip
    assert (r.status_code, r.json()["error"]["code"]) == (409, "meter_key_enrolled")
    assert d.device_id in r.json()["error"]["message"]


def test_enrolment_refusals(api: Api) -> None:
    d = TestDevice(f"dev-{uuid.uuid4().hex[:6]}", "charger-x")
    other = TestDevice("dev-other", "charger-x")
    good = {"statement": b64(d.statement_bytes), "proof_of_possession": b64(d.pop)}
    cases: list[tuple[Any, str]] = [
        ({**good, "proof_of_possession": b64(other.pop)}, "bad_proof_of_possession"),
        ({**good, "proof_of_possession": "!!"}, "bad_base64"),
        ({**good, "proof_of_possession": b64(b"short")}, "bad_length"),
        ({**good, "statement": b64(b"\x01\x02")}, "truncated"),
        ({**good, "statement": b64(d.statement_bytes + b"\x00")}, "trailing_bytes"),
        ({**good, "extra": 1}, "bad_request"),
        ({"statement": good["statement"]}, "bad_request"),
        ([1, 2], "bad_request"),
    ]
    for body, code in cases:
        r = api.post("/v1/devices", "installer-1", json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["code"] == code, (body, r.text)
    r = api.post(
        "/v1/devices", "installer-1", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert (r.status_code, r.json()["error"]["code"]) == (400, "bad_request")
    assert "JSON" in r.json()["error"]["message"]
    assert api.get(f"/v1/devices/{d.device_id}", "installer-1").status_code == 404


def test_the_edge_agent_enrols_through_the_api(api: Api) -> None:
    from edge_agent.enrol import enrol_device, fetch_log_key

    d = TestDevice(f"dev-{uuid.uuid4().hex[:6]}", "charger-edge")
    with httpx.Client(timeout=30) as client:
        result = enrol_device(
            client, api.gw.url, api.auth("installer-1")["Authorization"][7:], d.statement, d.signer
        )
        assert isinstance(result.log_index, int)
        assert fetch_log_key(client, api.gw.url) == api.log_key()


def test_devices_read_and_page(api: Api) -> None:
    d1 = api.ok(api.get("/v1/devices/dev-a1", "issuer-1"))
    assert d1["asset_id"] == "charger-a"
    assert d1["asset_kind"] == "charger"
    assert d1["keys"] == [{"key_id": device_key_id(D1.signer.public_key).hex(), "from_seq": 1}]
    assert (d1["last_accepted_seq"], d1["last_logged_seq"], d1["status"]) == (30, 30, "active")
    assert base64.b64decode(d1["statement"]) == D1.statement_bytes
    d3 = api.ok(api.get("/v1/devices/dev-b1", "installer-1"))
    assert d3["location"] == {"lat": "52.52", "lon": "13.405", "lat_e6": 52_520_000, "lon_e6": 13_405_000}
    everything = [
        d["device_id"] for d in api.ok(api.get("/v1/devices", "auditor-1", params={"limit": 1000}))["items"]
    ]
    assert everything == sorted(everything)
    pages = api.walk("/v1/devices", limit=2)
    assert all(len(p) <= 2 for p in pages)
    assert [d["device_id"] for p in pages for d in p] == everything
    only = api.walk("/v1/devices", asset="charger-a", limit=1)
    assert [d["device_id"] for p in only for d in p] == ["dev-a1", "dev-a2"]
    assert api.get("/v1/devices/no-such-device").status_code == 404
    assert api.get("/v1/devices/no-such-device").json()["error"]["code"] == "unknown_device"
    assert api.get("/v1/devices/bad%20id").json()["error"]["code"] == "bad_request"


def test_assets(api: Api) -> None:
    a = api.ok(api.get("/v1/assets/charger-a"))
    assert a["kind"] == "charger"
    assert a["rated_power_w"] == 22_000
    assert [d["device_id"] for d in a["devices"]] == ["dev-a1", "dev-a2"]
    assert a["location"] is None
    b = api.ok(api.get("/v1/assets/solar-b", "issuer-1"))
    assert (b["kind"], b["rated_power_w"], b["location"]["lat"]) == ("solar", 5_000, "52.52")
    pages = api.walk("/v1/assets", limit=1)
    ids = [x["asset_id"] for p in pages for x in p]
    assert ids == sorted(set(ids))
    assert {"charger-a", "solar-b"} <= set(ids)
    r = api.get("/v1/assets/nothing-here")
    assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_asset")


def _key(item: dict[str, Any]) -> tuple[int, str, int]:
    return item["time_ms"], item["device_id"], item["seq"]


def test_readings_pages_cover_each_reading_once(api: Api) -> None:
    for path, n in (("/v1/devices/dev-a1/readings", 30), ("/v1/assets/charger-a/readings", 55)):
        for order in ("desc", "asc"):
            for limit in (1, 7, 1000):
                pages = api.walk(path, order=order, limit=limit)
                items = [x for p in pages for x in p]
                assert len(items) == n
                assert len({_key(x) for x in items}) == n
                assert [_key(x) for x in items] == sorted((_key(x) for x in items), reverse=order == "desc")
                assert all(len(p) <= limit for p in pages)
    first = api.ok(api.get("/v1/devices/dev-a1/readings", "issuer-1", params={"limit": 1}))["items"][0]
    assert first["seq"] == 30  # newest first
    assert first["time"] == "2026-10-01T04:50:00Z"
    assert first["time_ms"] == T0 + 29 * 10 * MINUTE
    assert first["energy_mwh"] == 29 * 1_234_567
    assert first["energy_kwh"] == "35.802443"
    assert base64.b64decode(first["envelope"]) == SENT["dev-a1"][29]
    assert isinstance(first["log_index"], int)
    assert entry_is_reading(api, first["log_index"], SENT["dev-a1"][29])
    assert (first["flags"], first["trigger"], first["power_mw"]) == ([], "periodic", None)


def entry_is_reading(api: Api, index: int, envelope: bytes) -> bool:
    entry = api.http.get(f"/v1/log/entries/{index}").content
    return entry == bytes([1, 2]) + len(envelope).to_bytes(2, "big") + envelope


def test_readings_time_range(api: Api) -> None:
    by_rfc = api.walk(
        "/v1/assets/charger-a/readings", **{"from": "2026-10-01T01:00:00Z", "to": "2026-10-01T02:00:00Z"}
    )
    by_ms = api.walk("/v1/assets/charger-a/readings", **{"from": str(T0 + HOUR), "to": str(T0 + 2 * HOUR)})
    offset = api.walk(
        "/v1/assets/charger-a/readings", **{"from": "2026-10-01T03:00:00+02:00", "to": str(T0 + 2 * HOUR)}
    )
    assert by_rfc == by_ms == offset
    times = sorted({x["time_ms"] for p in by_rfc for x in p})
    assert times == [T0 + HOUR + i * 10 * MINUTE for i in range(6)]  # [from, to): 01:00 ... 01:50
    for params, code in [
        ({"from": "yesterday"}, "bad_time"),
        ({"from": "2026-10-01T00:00:00"}, "bad_time"),  # no offset
        ({"from": "2026-10-01T00:00:00.0001Z"}, "bad_time"),
        ({"from": "2026-02-30T00:00:00Z"}, "bad_time"),
        ({"from": "99999999999999999999"}, "bad_time"),
        ({"from": str(T0 + 1), "to": str(T0)}, "bad_range"),
        ({"cursor": "garbage"}, "bad_cursor"),
        ({"cursor": base64.urlsafe_b64encode(b'["readings-desc",1,"x",-1]').decode()}, "bad_cursor"),
        ({"limit": 0}, "bad_request"),
        ({"limit": 1001}, "bad_request"),
        ({"order": "sideways"}, "bad_request"),
    ]:
        r = api.get("/v1/assets/charger-a/readings", params=params)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["error"]["code"] == code, (params, r.text)
    # a cursor from one order is refused by the other
    page = api.ok(api.get("/v1/assets/charger-a/readings", params={"limit": 2}))
    r = api.get(
        "/v1/assets/charger-a/readings", params={"limit": 2, "order": "asc", "cursor": page["next_cursor"]}
    )
    assert r.json()["error"]["code"] == "bad_cursor"
    assert api.get("/v1/devices/nobody/readings").json()["error"]["code"] == "unknown_device"
    assert api.get("/v1/assets/nothing/readings").json()["error"]["code"] == "unknown_asset"


# --- revocation and key rotation ----------------------------------------------------------------------


class Publisher:
    def __init__(self, broker: Broker) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, device: TestDevice, data: bytes) -> None:
        self.client.publish(f"attest/v1/{device.device_id}/readings", data, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_for(predicate: Any, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_revocation_takes_effect_at_once(api: Api, broker: Broker) -> None:
    d = TestDevice(f"dev-{uuid.uuid4().hex[:6]}", "charger-r")
    api.enrol(d)
    publisher = Publisher(broker)
    try:
        publisher.publish(d, d.reading(T0, 1000).encode())
        wait_for(lambda: api.ok(api.get(f"/v1/devices/{d.device_id}"))["last_accepted_seq"] == 1)
        # the gateway's ingest has the device cached now; the revocation must reach it at once
        answer = api.ok(
            api.post(f"/v1/devices/{d.device_id}/revoke", "installer-1", json={"reason": "meter replaced"})
        )
        assert (answer["last_valid_seq"], answer["status"]) == (1, "logged")
        publisher.publish(d, d.reading(T0 + MINUTE, 2000).encode())
        wait_for(lambda: api.ok(api.get("/v1/quarantine", params={"device": d.device_id}))["items"])
    finally:
        publisher.close()
    item = api.ok(api.get("/v1/quarantine", params={"device": d.device_id}))["items"][0]
    assert (item["reason"], item["seq"], item["device"]) == ("revoked_device", 2, d.device_id)
    entry = decode_entry(api.http.get(f"/v1/log/entries/{answer['log_index']}").content)
    assert isinstance(entry, RevocationEntry)
    assert (entry.device_id, entry.last_valid_seq, entry.reason, entry.revoked_by) == (
        d.device_id, 1, "meter replaced", "installer-1",
    )  # fmt: skip
    device = api.ok(api.get(f"/v1/devices/{d.device_id}"))
    assert (device["status"], device["last_valid_seq"], device["revocation_log_index"]) == (
        "revoked", 1, answer["log_index"],
    )  # fmt: skip
    r = api.post(f"/v1/devices/{d.device_id}/revoke", "installer-1", json={"reason": "again"})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "already_revoked")
    for body, status, code in [
        ({"reason": "x"}, 404, "unknown_device"),
        ({"reason": ""}, 400, "bad_request"),
        ({"reason": "é" * 600}, 400, "too_large"),
        ({"reason": "x", "last_valid_seq": -1}, 400, "bad_request"),
        ({"reason": "x", "last_valid_seq": 2**63}, 400, "bad_request"),
    ]:
        r = api.post("/v1/devices/nobody-here/revoke", "installer-1", json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (body, r.text)


def test_key_rotation(api: Api) -> None:
    d = TestDevice(f"dev-{uuid.uuid4().hex[:6]}", "charger-k")
    api.enrol(d)
    api.ingest([(d, d.reading(T0 + i * MINUTE, i * 1000).encode()) for i in range(2)])
    new = seeded_signer(d.device_id + " new key")
    statement = RotationStatement(d.device_id, d.signer.public_key, new.public_key, 3, T0 + HOUR)
    data, old_sig, new_sig = sign_rotation(statement, d.signer, new)
    body = {"statement": b64(data), "old_signature": b64(old_sig), "new_signature": b64(new_sig)}
    early = RotationStatement(d.device_id, d.signer.public_key, new.public_key, 2, T0 + HOUR)
    e_data, e_old, e_new = sign_rotation(early, d.signer, new)
    r = api.post(f"/v1/devices/{d.device_id}/rotate", "installer-1",
                 json={"statement": b64(e_data), "old_signature": b64(e_old), "new_signature": b64(e_new)})  # fmt: skip
    assert (r.status_code, r.json()["error"]["code"]) == (409, "effective_seq_not_above_accepted")
    assert "readings up to 2 are already accepted" in r.json()["error"]["message"]
    r = api.post("/v1/devices/someone-else/rotate", "installer-1", json=body)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "device_mismatch")
    r = api.post(
        f"/v1/devices/{d.device_id}/rotate", "installer-1", json={**body, "old_signature": b64(new_sig)}
    )
    assert (r.status_code, r.json()["error"]["code"]) == (400, "bad_rotation_authorization")
    answer = api.ok(api.post(f"/v1/devices/{d.device_id}/rotate", "installer-1", json=body))
    assert answer["key_id"] == device_key_id(new.public_key).hex()
    assert (answer["effective_seq"], answer["status"]) == (3, "logged")
    entry = decode_entry(api.http.get(f"/v1/log/entries/{answer['log_index']}").content)
    assert isinstance(entry, RotationEntry)
    assert entry.statement_bytes == data
    r = api.post(f"/v1/devices/{d.device_id}/rotate", "installer-1", json=body)
    assert r.status_code == 409  # the old key is no longer the current one
    # reading 3 must be signed by the new key
    old_key_reading = d.reading(T0 + 2 * MINUTE, 2000)
    assert api.ingest([(d, old_key_reading.encode())]).refused == {"key_not_valid_for_seq": 1}
    good = sign_reading(old_key_reading.reading(), new)
    assert api.ingest([(d, good.encode())]).accepted == 1
    device = api.ok(api.get(f"/v1/devices/{d.device_id}"))
    assert [k["from_seq"] for k in device["keys"]] == [1, 3]
    unknown = RotationStatement("nobody-x", d.signer.public_key, seeded_signer("z").public_key, 5, T0)
    data, old_sig, new_sig = sign_rotation(unknown, d.signer, seeded_signer("z"))
    r = api.post("/v1/devices/nobody-x/rotate", "installer-1",
                 json={"statement": b64(data), "old_signature": b64(old_sig), "new_signature": b64(new_sig)})  # fmt: skip
    assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_device")


# --- quarantine --------------------------------------------------------------------------------------------


def test_quarantine(api: Api) -> None:
    d = TestDevice(f"dev-{uuid.uuid4().hex[:6]}", "charger-q")
    api.enrol(d)
    forged = [
        sign_reading(d.reading(T0 + i * MINUTE, i).reading(), seeded_signer("forger")).encode()
        for i in range(3)
    ]
    result = api.ingest([(d, f) for f in forged] + [(TestDevice("ghost-1", "x"), b"\x01garbage")])
    assert result.refused == {"unknown_key_id": 3, "truncated": 1}
    pages = api.walk("/v1/quarantine", "issuer-1", device=d.device_id, limit=1)
    items = [x for p in pages for x in p]
    assert len(pages) == 3
    assert [x["seq"] for x in items] == [3, 2, 1]  # newest first
    assert [base64.b64decode(x["payload"]) for x in items] == forged[::-1]
    assert {x["reason"] for x in items} == {"unknown_key_id"}
    assert items[0]["topic"] == f"attest/v1/{d.device_id}/readings"
    assert items[0]["count"] == 1
    truncated = api.ok(api.get("/v1/quarantine", params={"reason": "truncated"}))["items"]
    assert [x["device"] for x in truncated] == ["ghost-1"]
    assert api.ok(api.get("/v1/quarantine", params={"reason": "no-such"}))["items"] == []
    r = api.get("/v1/quarantine", params={"reason": "a\x00b"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "bad_text")


# --- error bodies -----------------------------------------------------------------------------------------------


def test_errors_are_the_contract_body(api: Api) -> None:
    cases = [
        ("GET", "/v1/devices/dev-a1", None, None, 401),
        ("GET", "/v1/claims/0", None, "auditor-1", 400),
        ("GET", "/v1/claims/abc", None, "auditor-1", 400),
        ("GET", "/v1/claims/99999999999999999999", None, "auditor-1", 400),
        ("GET", "/v1/claims/424242", None, "auditor-1", 404),
        ("GET", "/v1/claims/1/bundle?mode=half", None, "auditor-1", 400),
        ("GET", "/v1/log/entries/99999999999999999999", None, None, 400),
        ("DELETE", "/v1/devices", None, "installer-1", 405),
        ("POST", "/v1/devices", "[]", "installer-1", 400),
        ("POST", "/v1/log/cosignatures", "hello", None, 400),
        ("GET", "/nothing", None, None, 404),
    ]
    for method, path, content, who, status in cases:
        r = api.http.request(method, path, content=content, headers=api.auth(who))
        assert r.status_code == status, (method, path, r.text)
        assert r.headers["content-type"] == "application/json"
        body = r.json()
        assert set(body) == {"error"}
        assert set(body["error"]) == {"code", "message"}
        assert body["error"]["code"]
        assert body["error"]["message"]


# --- proofs --------------------------------------------------------------------------------------------------------


def test_served_proofs_verify_against_the_served_checkpoint(api: Api) -> None:
    key = api.log_key()
    cp = open_checkpoint(api.checkpoint(), key).checkpoint
    leaves = [leaf_hash(api.http.get(f"/v1/log/entries/{i}").content) for i in range(cp.size)]
    assert root_from_leaf_hashes(leaves) == cp.root_hash
    roots = {n: root_from_leaf_hashes(leaves[:n]) for n in range(1, cp.size + 1)}
    rng = random.Random(4)
    for _ in range(80):
        size = rng.randint(1, cp.size)
        index = rng.randrange(size)
        proof = api.ok(api.http.get("/v1/log/proof/inclusion", params={"index": index, "size": size}))
        assert (proof["index"], proof["size"]) == (index, size)
        verify_inclusion(
            index, size, leaves[index], [base64.b64decode(h) for h in proof["hashes"]], roots[size]
        )
    for _ in range(80):
        new = rng.randint(1, cp.size)
        old = rng.randint(1, new)
        proof = api.ok(api.http.get("/v1/log/proof/consistency", params={"from": old, "to": new}))
        assert (proof["from"], proof["to"]) == (old, new)
        verify_consistency(old, new, roots[old], roots[new], [base64.b64decode(h) for h in proof["hashes"]])
    # the checkpoint's own size, with its signed root
    proof = api.ok(api.http.get("/v1/log/proof/inclusion", params={"index": 0, "size": cp.size}))
    verify_inclusion(0, cp.size, leaves[0], [base64.b64decode(h) for h in proof["hashes"]], cp.root_hash)


# --- witnesses -------------------------------------------------------------------------------------------------------


def cosign(note: str, signer: Ed25519Signer, name: str, when: int) -> str:
    checkpoint = parse_checkpoint_body(parse_note(note).text)
    return add_signature_lines(note, [cosign_checkpoint(checkpoint, name, signer, when)])


def test_witness_cosignatures(api: Api) -> None:
    key = api.log_key()
    note = api.checkpoint()
    cosigned = cosign(note, WITNESS_SIGNER, WITNESS.name, 1_790_900_000)
    r = api.http.post("/v1/log/cosignatures", content=cosigned, headers={"Content-Type": "text/plain"})
    size = open_checkpoint(note, key).checkpoint.size
    assert (r.status_code, r.json()) == (201, {"checkpoint_size": size, "stored": [f"{WITNESS.name}+{WITNESS.key_id.hex()}"],
                                               "already_stored": []})  # fmt: skip
    r = api.http.post("/v1/log/cosignatures", content=cosigned)
    assert r.status_code == 200
    assert r.json()["already_stored"] == [f"{WITNESS.name}+{WITNESS.key_id.hex()}"]
    # the served checkpoint carries it, if it is still the latest
    served = api.checkpoint()
    if open_checkpoint(served, key).checkpoint.size == size:
        signed = open_checkpoint(served, key, witnesses=[WITNESS], min_witnesses=1)
        assert signed.witness_names == (WITNESS.name,)
    # another cosignature of the same checkpoint by the same witness: a conflict, the first is kept
    r = api.http.post(
        "/v1/log/cosignatures", content=cosign(note, WITNESS_SIGNER, WITNESS.name, 1_790_900_001)
    )
    assert (r.status_code, r.json()["error"]["code"]) == (409, "cosignature_conflict")
    # an unknown witness, a forged cosignature, a checkpoint the gateway never signed, garbage
    stranger = seeded_signer("stranger")
    r = api.http.post("/v1/log/cosignatures", content=cosign(note, stranger, "stranger.example", 1))
    assert (r.status_code, r.json()["error"]["code"]) == (403, "unknown_witness")
    r = api.http.post("/v1/log/cosignatures", content=cosign(note, stranger, WITNESS.name, 1))
    assert r.status_code == 403  # a line with the witness's name but another key: not its key id
    forged_line = cosign(note, WITNESS_SIGNER, WITNESS.name, 5).splitlines()[-1]
    raw = bytearray(base64.b64decode(forged_line.split(" ")[-1]))
    raw[-1] ^= 1
    forged = note + forged_line.rsplit(" ", 1)[0] + " " + base64.b64encode(bytes(raw)).decode() + "\n"
    r = api.http.post("/v1/log/cosignatures", content=forged)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "bad_cosignature")
    body = parse_checkpoint_body(parse_note(note).text)
    other = body.body().replace(f"\n{body.size}\n", f"\n{body.size + 1000}\n")
    fake_note = (
        other + "\n" + cosign_checkpoint(parse_checkpoint_body(other), WITNESS.name, WITNESS_SIGNER, 7)
    )
    r = api.http.post("/v1/log/cosignatures", content=fake_note)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "no_such_checkpoint")
    for garbage in [b"", b"\xff\xfe", b"not a note\n", b"x" * 70_000]:
        r = api.http.post("/v1/log/cosignatures", content=garbage)
        assert r.status_code == 400, (garbage[:20], r.text)


def test_the_verifier_witness_submits_to_the_gateway(api: Api, tmp_path: Path) -> None:
    from verifier.cli import main as verifier_main
    from verifier.witnesskey import encode_private_key

    key_file = tmp_path / "witness.key"
    key_file.write_text(encode_private_key(CLI_WITNESS.name, CLI_WITNESS_SEED) + "\n")
    key_file.chmod(0o600)
    (tmp_path / "log-key.txt").write_text(api.log_key().to_string() + "\n")
    code = verifier_main([
        "witness", "--gateway", api.gw.url, "--log-key", str(tmp_path / "log-key.txt"), "--state",
        str(tmp_path / "state"), "--witness-key-file", str(key_file), "--submit", "--once",
    ])  # fmt: skip
    assert code == 0

    async def stored(conn: Any) -> list[str]:
        return [r["witness"] for r in await conn.fetch("SELECT witness FROM cosignatures")]

    assert f"{CLI_WITNESS.name}+{CLI_WITNESS.key_id.hex()}" in api.run(stored)


# --- tokens and configuration -------------------------------------------------------------------------------------------


def test_token_command_prints_a_token_and_its_hash(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from gateway.__main__ import main

    assert main(["token", "--name", "issuer-9", "--role", "issuer"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    token = lines[lines.index("") + 1].strip()
    assert len(token) >= 43
    assert f'sha256 = "{hash_token(token)}"' in out
    config = tmp_path / "gateway.toml"
    snippet = out[out.index("[gateway.tokens.issuer-9]") :]
    config.write_text('[gateway]\ndatabase_url = "postgresql://x/y"\n\n' + snippet)
    settings = load_settings(config, env={})
    principal = TokenTable.parse(settings.tokens).lookup(token)
    assert principal is not None
    assert (principal.name, principal.role) == ("issuer-9", "issuer")
    assert TokenTable.parse(settings.tokens).lookup(token + "x") is None
    assert main(["token", "--name", "not ok", "--role", "issuer"]) == 2


def test_generated_tokens_pass_as_command_line_values(monkeypatch: pytest.MonkeyPatch) -> None:
    # token_urlsafe starts with "-" one time in 64; "--token -x..." would then be read as an option
    from edge_agent.cli import build_parser

    monkeypatch.setattr("secrets.token_urlsafe", lambda n: "-" + "A" * 42)
    token = generate_token()
    assert token.startswith(TOKEN_PREFIX)
    args = build_parser().parse_args(
        [
            "enrol",
            "--gateway",
            "http://gw",
            "--token",
            token,
            "--asset",
            "a-1",
            "--kind",
            "charger",
            "--rated-power",
            "7400",
        ]
    )
    assert args.token == token
    monkeypatch.undo()
    tokens = {generate_token() for _ in range(200)}
    assert len(tokens) == 200
    assert all(t.startswith(TOKEN_PREFIX) and len(t) == len(TOKEN_PREFIX) + 43 for t in tokens)


def test_token_and_witness_settings() -> None:
    digest = hash_token("t")
    env = {
        "DATABASE_URL": "postgresql://x/y",
        "GATEWAY_TOKENS": json.dumps({"auditor-7": {"role": "auditor", "sha256": digest}}),
        "GATEWAY_WITNESSES": f"{WITNESS.to_string()}, {CLI_WITNESS.to_string()}",
    }
    settings = load_settings(None, env=env)
    assert settings.tokens == {"auditor-7": {"role": "auditor", "sha256": digest}}
    assert settings.witnesses == [WITNESS.to_string(), CLI_WITNESS.to_string()]
    assert load_settings(None, env={**env, "GATEWAY_WITNESSES": f'["{WITNESS.to_string()}"]'}).witnesses == [
        WITNESS.to_string()
    ]
    bad: list[dict[str, str]] = [
        {"GATEWAY_TOKENS": "{not json"},
        {"GATEWAY_TOKENS": json.dumps({"a b": {"role": "auditor", "sha256": digest}})},
        {"GATEWAY_TOKENS": json.dumps({"a": {"role": "admin", "sha256": digest}})},
        {"GATEWAY_TOKENS": json.dumps({"a": {"role": "auditor", "sha256": "abc"}})},
        {"GATEWAY_TOKENS": json.dumps({"a": {"role": "auditor", "sha256": digest, "token": "t"}})},
        {
            "GATEWAY_TOKENS": json.dumps(
                {"a": {"role": "auditor", "sha256": digest}, "b": {"role": "issuer", "sha256": digest}}
            )
        },
        {"GATEWAY_TOKENS": '["a"]'},
        {"GATEWAY_WITNESSES": "not-a-key"},
        {
            "GATEWAY_WITNESSES": log_signer().verifier_key().to_string()
        },  # a log key (type 0x01), not a witness key
    ]
    for change in bad:
        with pytest.raises(ConfigError):
            load_settings(None, env={**env, **change})


def test_token_lookup_is_by_hash() -> None:
    table = TokenTable.parse({"installer-1": {"role": "installer", "sha256": hash_token("s3cret")}})
    assert len(table) == 1
    assert table.lookup("s3cret") is not None
    for wrong in ["", "s3cre", "s3cret ", "S3cret", "\udcff"]:
        assert table.lookup(wrong) is None


def test_concurrent_enrolments_each_get_their_index(api: Api) -> None:
    devices = [TestDevice(f"dev-c{i}-{uuid.uuid4().hex[:4]}", f"charger-c{i}") for i in range(6)]
    answers: list[dict[str, Any]] = []

    def enrol(d: TestDevice) -> None:
        answers.append(api.enrol(d, "installer-2"))

    threads = [threading.Thread(target=enrol, args=(d,)) for d in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(answers) == 6
    indices = [a["log_index"] for a in answers]
    assert len(set(indices)) == 6
    for a in answers:
        entry = decode_entry(api.http.get(f"/v1/log/entries/{a['log_index']}").content)
        assert isinstance(entry, EnrolmentEntry)
        assert entry.statement.device_id == a["device_id"]


def test_tokens_are_never_logged(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    wrong = "a-wrong-token-that-must-not-be-logged"
    api.http.get("/v1/devices", headers={"Authorization": f"Bearer {wrong}"})
    api.get("/v1/devices", "installer-1")
    api.get("/v1/claims", "installer-1")  # 403
    api.post("/v1/devices", "installer-1", json={"statement": "AA==", "proof_of_possession": "AA=="})
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    for token in (wrong, api.auth("installer-1")["Authorization"][7:]):
        assert token not in text
