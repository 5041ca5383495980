"""Claims through the REST API: filing, the server's verdict, and streamed bundles that verify offline."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from attest_core.bundle import VerifiedBundle, parse_bundle, verify_bundle
from attest_core.device import AssetKind, RotationStatement, sign_rotation
from attest_core.entries import ClaimEntry, EnrolmentEntry, ReadingEntry, RevocationEntry, decode_entry
from attest_core.errors import BundleError
from attest_core.merkle import multi_inclusion_plan
from attest_core.money import format_kwh
from attest_core.reading import Status
from gateway import bundles, logstore
from tests.gateway.apiworld import Api, api_gateway, b64
from tests.services import Broker, Postgres
from tests.support import BERLIN, DAY, HOUR, T0, TestDevice, seeded_signer

MINUTE = 60_000
START, END = "2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z"

E1 = TestDevice("ev1-dev", "ev-1")  # steady 12 kW, every 10 minutes
E2A = TestDevice("ev2-dev-a", "ev-2")  # revoked: readings after 08:00 disowned
E2B = TestDevice("ev2-dev-b", "ev-2", rated_power_w=11_000)  # its replacement from 12:00
PV = TestDevice("pv1-dev", "pv-1", kind=AssetKind.SOLAR, rated_power_w=10_000, location=BERLIN)
K = TestDevice("ev3-dev", "ev-3")  # key rotation at seq 10
LATE = TestDevice("late-dev", "ev-late")  # some readings arrive after the claim
TAMPER = TestDevice("tamper-dev", "ev-tamper")  # one reading at 12:00 reports tampering
JUMP = TestDevice("jump-dev", "ev-jump")  # its clock jumps a day ahead once, at 12:00
OPEN = TestDevice("open-dev", "ev-open")  # reads 00:00-03:00 and never after: its end edge stays unproven
SILENT = TestDevice("silent-dev", "ev-silent")  # enrolled, never sends a reading
HELD_BACK: list[bytes] = []


def every(
    device: TestDevice, start: int, end: int, step: int, kwh_per_step: float, first: int = 0
) -> list[bytes]:
    out = []
    for n, t in enumerate(range(start, end, step)):
        out.append(device.reading(t, first + int(n * kwh_per_step * 1_000_000)).encode())
    return out


@pytest.fixture(scope="module")
def api(postgres: Postgres, broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with api_gateway(postgres, broker, tmp_path_factory.mktemp("claims")) as api:
        for d in (E1, E2A, E2B, PV, K, LATE, TAMPER, JUMP, OPEN, SILENT):
            api.enrol(d)
        items = [(E1, e) for e in every(E1, T0 - HOUR, T0 + DAY + HOUR, 10 * MINUTE, 2)]
        items += [(E2A, e) for e in every(E2A, T0 - HOUR, T0 + 10 * HOUR + 1, 10 * MINUTE, 1.5)]
        items += [(E2B, e) for e in every(E2B, T0 + 12 * HOUR, T0 + DAY + HOUR, 10 * MINUTE, 1)]
        pv = []
        energy = 0
        for h in range(-1, 26):
            pv.append(PV.reading(T0 + h * HOUR, energy).encode())
            if 7 <= h % 24 < 15:
                energy += 6_000_000  # 6 kWh an hour by day, nothing by night
        items += [(PV, e) for e in pv]
        items += [(K, e) for e in every(K, T0 - HOUR, T0 + 30 * MINUTE, 10 * MINUTE, 3)]  # seq 1..9
        late = every(LATE, T0, T0 + 6 * HOUR, 30 * MINUTE, 5)
        items += [(LATE, e) for e in late[:6]]
        HELD_BACK.extend(late[6:])
        items += [(OPEN, e) for e in every(OPEN, T0, T0 + 3 * HOUR + 1, 30 * MINUTE, 5)]
        for n, t in enumerate(range(T0 - HOUR, T0 + DAY + 2 * HOUR, HOUR)):  # seq 1..27, 00:00 is seq 2
            status = Status.TAMPER if t == T0 + 12 * HOUR else Status.OK
            items.append((TAMPER, TAMPER.reading(t, n * 1_000_000, status=status).encode()))
            jumped = t + DAY if t == T0 + 12 * HOUR else t
            items.append((JUMP, JUMP.reading(jumped, n * 1_000_000).encode()))
        assert api.ingest(items).accepted == len(items)
        # E2A is revoked: readings after 08:00 (seq 55) are disowned although logged (an operator's act)
        api.wait_logged()
        api.ok(
            api.post(
                "/v1/devices/ev2-dev-a/revoke",
                "operator-1",
                json={"reason": "replaced", "last_valid_seq": 55},
            )
        )
        # K rotates its key; readings from seq 10 on are signed by the new key
        new = seeded_signer("ev3 new key")
        data, old_sig, new_sig = sign_rotation(
            RotationStatement(K.device_id, K.signer.public_key, new.public_key, 10, T0), K.signer, new
        )
        api.ok(api.post(f"/v1/devices/{K.device_id}/rotate", "installer-1",
                        json={"statement": b64(data), "old_signature": b64(old_sig), "new_signature": b64(new_sig)}))  # fmt: skip
        K.signer = new
        tail = [K.reading(t, 24_000_000 + n * 3_000_000).encode() for n, t in
                enumerate(range(T0 + 30 * MINUTE, T0 + DAY + HOUR, 10 * MINUTE))]  # fmt: skip
        assert api.ingest([(K, e) for e in tail]).accepted == len(tail)
        api.wait_checkpoint()
        yield api


def claim_body(assets: list[str], energy: str = "0", amount: str = "0", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "October 1st, chargers and solar",
        "assets": assets,
        "period_start": START,
        "period_end": END,
        "tariff": {"currency": "USD", "price_per_kwh": "0.35"},
        "claimed_energy_kwh": energy,
        "claimed_amount": amount,
    }
    body.update(changes)
    return body


@pytest.fixture(autouse=True)
def no_live_claims(api: Api) -> Iterator[None]:
    """The same energy backs one live claim: each test's claims are withdrawn after it, so the
    next test may claim the same assets and period."""
    yield
    withdraw_all(api)


def withdraw_all(api: Api) -> None:
    for page in api.walk("/v1/claims", "issuer-1", limit=100):
        for c in page:
            if c["void"] is None:
                api.ok(api.post(f"/v1/claims/{c['id']}/withdraw", c["issuer"], json={"reason": "test over"}))


def file(
    api: Api, body: dict[str, Any], who: str = "issuer-1", supersedes: int | None = None
) -> dict[str, Any]:
    path = "/v1/claims" if supersedes is None else f"/v1/claims/{supersedes}/supersede"
    answer: dict[str, Any] = api.ok(api.post(path, who, json=body), 201)
    return answer


def checkpointed(api: Api, claim_id: int) -> dict[str, Any]:
    api.wait_checkpoint()
    claim: dict[str, Any] = api.ok(api.get(f"/v1/claims/{claim_id}"))
    assert claim["status"] == "checkpointed"
    assert claim["verdict"] is not None
    return claim


def bundle(api: Api, claim_id: int, mode: str, who: str = "auditor-1") -> tuple[bytes, VerifiedBundle]:
    r = api.get(f"/v1/claims/{claim_id}/bundle", who, params={"mode": mode})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["content-disposition"] == f'attachment; filename="claim-{claim_id}-{mode}.json"'
    return r.content, verify_bundle(r.content, api.log_key())


def findings(verdict: dict[str, Any]) -> list[dict[str, Any]]:
    return verdict["findings"]  # type: ignore[no-any-return]


def as_json(result: VerifiedBundle) -> list[dict[str, Any]]:
    return [
        {"asset_id": None, "device_id": None, "seq": None, "log_index": None, **f.to_json()}
        for f in result.evaluation.findings
    ]


def assert_same_verdict(verdict: dict[str, Any], result: VerifiedBundle, *, exact: bool) -> None:
    ev = result.evaluation
    assert verdict["backed"] == ev.backed
    assert verdict["energy_mwh"] == ev.energy_mwh
    assert verdict["energy_kwh"] == format_kwh(ev.energy_mwh)
    assert Decimal(verdict["revenue"]) == ev.revenue
    if exact:
        assert Decimal(verdict["revenue_exact"]) == ev.revenue_exact
        assert findings(verdict) == as_json(result)
        assert verdict["readings_evaluated"] == ev.readings_seen
        assert [a["complete"] for a in verdict["assets"]] == [a.complete for a in ev.assets]


ALL = ["ev-1", "ev-2", "ev-3", "pv-1"]


def test_an_honest_claim_is_backed_and_its_bundles_verify(api: Api) -> None:
    probe_claim = checkpointed(api, file(api, claim_body(ALL))["id"])
    probe = probe_claim["verdict"]
    assert probe["backed"] is True
    # The issuer corrects its claim with the figures found: the new claim supersedes the probe.
    honest = file(api, claim_body(ALL, probe["energy_kwh"], probe["revenue"]), supersedes=probe_claim["id"])
    assert honest["issuer"] == "issuer-1"
    assert honest["assets"] == ALL
    assert (honest["period_start"], honest["period_end"]) == (START, END)
    assert isinstance(honest["log_index"], int)
    entry = decode_entry(api.http.get(f"/v1/log/entries/{honest['log_index']}").content)
    assert isinstance(entry, ClaimEntry)
    assert entry.claim.claimed_energy_mwh == probe["energy_mwh"]
    claim = checkpointed(api, honest["id"])
    verdict = claim["verdict"]
    assert verdict["backed"] is True
    assert not [f for f in findings(verdict) if f["severity"] == "fatal"]
    assert {a["asset_id"]: a["complete"] for a in verdict["assets"]} == dict.fromkeys(ALL, True)
    raw, full = bundle(api, honest["id"], "full")
    assert full.claim_index == honest["log_index"]
    assert_same_verdict(verdict, full, exact=True)
    raw_b, boundary = bundle(api, honest["id"], "boundary", "issuer-1")
    assert_same_verdict(verdict, boundary, exact=False)
    assert len(raw_b) < len(raw) / 10
    # the boundary bundle holds, per device, the first and the last counted reading of the period
    readings = [decode_entry(e) for _, e in parse_bundle(raw_b).entries]
    seqs: dict[str, list[int]] = {}
    for e in readings:
        if isinstance(e, ReadingEntry):
            seqs.setdefault(e.reading.device_id, []).append(e.reading.seq)
    assert seqs["ev2-dev-a"] == [7, 55]  # 00:00 and 08:00: not the disowned readings after it
    assert len(seqs) == 5
    assert all(len(s) == 2 for s in seqs.values())
    enrolments = [e for e in readings if isinstance(e, EnrolmentEntry)]
    assert sorted(e.statement.device_id for e in enrolments) == sorted(
        ["ev1-dev", "ev2-dev-a", "ev2-dev-b", "ev3-dev", "pv1-dev"]
    )


def test_exact_figures_of_one_charger(api: Api) -> None:
    claim = checkpointed(api, file(api, claim_body(["ev-1"], "286", "100.10"))["id"])
    verdict = claim["verdict"]
    assert (verdict["energy_kwh"], verdict["revenue"], verdict["backed"]) == ("286", "100.10", True)
    assert verdict["assets"][0]["readings_counted"] == 144
    assert verdict["assets"][0]["devices"][0] == {
        "device_id": "ev1-dev", "readings_counted": 144, "first_seq": 7, "last_seq": 150,
        "evidence": "full", "start_proven": True, "end_proven": True, "missing_seqs": 0,
        "energy_mwh": 286_000_000, "energy_kwh": "286", "meter_signed_readings": 0, "meter_signed_mwh": 0,
    }  # fmt: skip
    for mode in ("full", "boundary"):
        _, result = bundle(api, claim["id"], mode)
        assert (result.evaluation.energy_mwh, str(result.evaluation.revenue), result.backed) == (
            286_000_000, "100.10", True,
        )  # fmt: skip


@pytest.mark.parametrize(("energy_extra", "amount_extra", "code"), [
    (Decimal("0.000001"), Decimal(0), "energy_overclaimed"),
    (Decimal(0), Decimal("0.01"), "revenue_overclaimed"),
])  # fmt: skip
def test_an_overstated_claim_is_not_backed(
    api: Api, energy_extra: Decimal, amount_extra: Decimal, code: str
) -> None:
    probe = checkpointed(api, file(api, claim_body(ALL))["id"])["verdict"]
    withdraw_all(api)
    body = claim_body(
        ALL, str(Decimal(probe["energy_kwh"]) + energy_extra), str(Decimal(probe["revenue"]) + amount_extra)
    )
    claim = checkpointed(api, file(api, body, "issuer-2")["id"])
    verdict = claim["verdict"]
    assert verdict["backed"] is False
    assert [f["code"] for f in findings(verdict) if f["severity"] == "fatal"] == [code]
    for mode in ("full", "boundary"):
        _, result = bundle(api, claim["id"], mode)
        assert result.backed is False
        assert_same_verdict(verdict, result, exact=mode == "full")


def test_a_time_of_use_claim(api: Api) -> None:
    tariff = {"currency": "EUR", "segments": [{"start": "00:00", "price_per_kwh": "0.20"},
                                              {"start": "06:30", "price_per_kwh": "0.45"},
                                              {"start": "22:00", "price_per_kwh": "0.25"}]}  # fmt: skip
    claim = checkpointed(api, file(api, claim_body(["ev-1", "pv-1"], tariff=tariff))["id"])
    assert claim["tariff"] == {
        "currency": "EUR",
        "token": None,
        "price_per_kwh": None,
        "segments": tariff["segments"],
    }
    verdict = claim["verdict"]
    _, full = bundle(api, claim["id"], "full")
    assert_same_verdict(verdict, full, exact=True)
    _, boundary = bundle(api, claim["id"], "boundary")
    assert boundary.evaluation.energy_mwh == verdict["energy_mwh"]
    # boundary evidence prices the whole span between two readings at its lowest price
    assert boundary.evaluation.revenue <= Decimal(verdict["revenue"])


def test_a_large_bundle_streams_in_chunks(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    claim = checkpointed(api, file(api, claim_body(ALL))["id"])
    whole = api.get(f"/v1/claims/{claim['id']}/bundle").content
    monkeypatch.setattr(bundles, "CHUNK", 7)
    monkeypatch.setattr(bundles, "NODE_CHUNK", 3)
    monkeypatch.setattr(bundles, "FLUSH_BYTES", 1000)
    with api.http.stream("GET", f"/v1/claims/{claim['id']}/bundle", headers=api.auth("auditor-1")) as r:
        assert r.headers.get("content-length") is None  # chunked: streamed, not built
        pieces = list(r.iter_raw())
    assert len(pieces) > 10
    assert b"".join(pieces) == whole
    doc = json.loads(whole)
    assert len(doc["entries"]) == int(r.headers["x-bundle-entries"])
    assert verify_bundle(whole, api.log_key()).backed


def test_the_verdict_follows_late_readings(api: Api) -> None:
    claim = checkpointed(api, file(api, claim_body(["ev-late"], "55", "19.25"))["id"])
    assert claim["verdict"]["backed"] is False
    assert claim["verdict"]["energy_kwh"] == "25"  # 6 readings so far, 5 intervals of 5 kWh
    assert claim["verdict"]["revenue"] == "8.75"
    assert api.ok(api.get(f"/v1/claims/{claim['id']}"))["verdict"] == claim["verdict"]  # unchanged
    assert api.ingest([(LATE, e) for e in HELD_BACK]).accepted == len(HELD_BACK)  # delivered late
    claim = checkpointed(api, claim["id"])
    assert (claim["verdict"]["energy_kwh"], claim["verdict"]["revenue"]) == ("55", "19.25")
    # (v2) every reading so far lies in the period: readings after them may still count
    assert claim["verdict"]["backed"] is False
    assert [f["code"] for f in findings(claim["verdict"]) if f["severity"] == "fatal"] == [
        "end_edge_unproven"
    ]
    after = LATE.reading(T0 + DAY, 55_000_000).encode()  # a reading after the period proves the end
    assert api.ingest([(LATE, after)]).accepted == 1
    claim = checkpointed(api, claim["id"])
    assert (claim["verdict"]["energy_kwh"], claim["verdict"]["revenue"]) == ("55", "19.25")
    assert claim["verdict"]["backed"] is True
    _, result = bundle(api, claim["id"], "full")
    assert_same_verdict(claim["verdict"], result, exact=True)


def test_claims_are_listed_newest_first(api: Api) -> None:
    days = ["2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z", "2026-10-03T00:00:00Z", "2026-10-04T00:00:00Z"]
    mine = [
        file(api, claim_body(["ev-1"], period_start=a, period_end=b), "issuer-2")["id"]
        for a, b in itertools.pairwise(days)
    ]
    pages = api.walk("/v1/claims", "issuer-1", issuer="issuer-2", limit=2)
    ids = [c["id"] for p in pages for c in p]
    assert ids == sorted(ids, reverse=True)
    assert ids[:3] == mine[::-1]
    assert all(c["issuer"] == "issuer-2" and c["verdict"] is None for p in pages for c in p)
    everything = [c["id"] for p in api.walk("/v1/claims", limit=3) for c in p]
    assert everything == sorted(set(everything), reverse=True)
    assert set(ids) < set(everything)


@pytest.mark.parametrize(("change", "code"), [
    ({"claimed_energy_kwh": "1.0000001"}, "bad_decimal"),
    ({"claimed_energy_kwh": "-1"}, "bad_decimal"),
    ({"claimed_amount": "1e3"}, "bad_decimal"),
    ({"claimed_amount": "01"}, "bad_decimal"),
    ({"tariff": {"currency": "usd", "price_per_kwh": "0.35"}}, "bad_currency"),
    ({"tariff": {"currency": "USD", "price_per_kwh": ".35"}}, "bad_decimal"),
    ({"tariff": {"currency": "USD"}}, "bad_tariff"),
    ({"tariff": {"currency": "USD", "price_per_kwh": "1", "segments": [{"start": "00:00", "price_per_kwh": "1"}]}},
     "bad_tariff"),
    ({"tariff": {"currency": "USD", "segments": [{"start": "01:00", "price_per_kwh": "1"}]}}, "bad_tariff"),
    ({"tariff": {"currency": "USD", "segments": [{"start": "00:00", "price_per_kwh": "1"},
                                                 {"start": "24:00", "price_per_kwh": "1"}]}}, "bad_tariff"),
    ({"tariff": {"currency": "USD", "segments": [{"start": "00:00", "price_per_kwh": "1"},
                                                 {"start": "00:00", "price_per_kwh": "2"}]}}, "bad_tariff"),
    ({"tariff": {"currency": "USD", "segments": []}}, "bad_request"),
    ({"period_end": START}, "bad_period"),
    ({"period_start": "2026-10-01"}, "bad_time"),
    ({"period_start": "1790812800000"}, "bad_time"),
    ({"period_start": "2019-12-31T00:00:00Z"}, "bad_time"),
    ({"assets": []}, "bad_request"),
    ({"assets": ["ev-1", "ev-1"]}, "bad_assets"),
    ({"assets": ["ev 1"]}, "bad_identifier"),
    ({"assets": ["ev-1", "no-such-asset"]}, "unknown_asset"),
    ({"title": "line\nbreak"}, "bad_title"),
    ({"title": "\ud800"}, "bad_request"),
    ({"title": "x" * 513}, "bad_request"),
    ({"title": "é" * 300}, "bad_title"),
    ({"issuer": "someone-else"}, "bad_request"),
])  # fmt: skip
def test_bad_claims_are_refused_precisely(api: Api, change: dict[str, Any], code: str) -> None:
    body = claim_body(["ev-1"])
    body.update(change)
    r = api.post(
        "/v1/claims", "issuer-1", content=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == code, r.text


def test_a_claim_not_yet_in_a_checkpoint(postgres: Postgres, broker: Broker, tmp_path: Path) -> None:
    with api_gateway(postgres, broker, tmp_path, checkpoint_interval=3600.0) as api:
        api.wait_checkpoint()  # the first, empty checkpoint
        d = TestDevice("slow-dev", "slow-1")
        api.enrol(d)
        api.ingest([(d, d.reading(T0 + i * HOUR, i * 1_000_000).encode()) for i in range(3)])
        claim = file(api, claim_body(["slow-1"]))
        assert isinstance(claim["log_index"], int)
        assert (claim["status"], claim["verdict"]) == ("logged", None)
        shown = api.ok(api.get(f"/v1/claims/{claim['id']}"))
        assert (shown["status"], shown["verdict"]) == ("logged", None)
        for mode in ("full", "boundary"):
            r = api.get(f"/v1/claims/{claim['id']}/bundle", params={"mode": mode})
            assert r.status_code == 409
            assert r.json()["error"]["code"] == "not_checkpointed"
            assert "retry" in r.json()["error"]["message"]


# --- no omission: full evidence is a sequence range, and a reading left out of it is fatal --------


def _seqs(raw: bytes) -> dict[str, list[tuple[int, int]]]:
    """(seq, device time) of each device's readings in a bundle, in log order."""
    out: dict[str, list[tuple[int, int]]] = {}
    for _, data in parse_bundle(raw).entries:
        entry = decode_entry(data)
        if isinstance(entry, ReadingEntry):
            out.setdefault(entry.reading.device_id, []).append((entry.reading.seq, entry.reading.time_ms))
    return out


def _without(api: Api, raw: bytes, device_id: str, seq: int) -> bytes:
    """``raw`` with one reading left out, and a valid proof of the rest (recomputed from the log's nodes)."""

    def left_out(entry: object) -> bool:
        return isinstance(entry, ReadingEntry) and (entry.reading.device_id, entry.reading.seq) == (
            device_id,
            seq,
        )

    return _rebundle(api, raw, lambda index, entry: left_out(entry))


def _rebundle(api: Api, raw: bytes, leave_out: Callable[[int, object], bool], count: int = 1) -> bytes:
    """``raw`` with the entries ``leave_out`` picks left out (``count`` of them), and a valid proof of the rest."""
    doc = json.loads(raw)
    kept = [
        item
        for item in doc["entries"]
        if not leave_out(item["index"], decode_entry(base64.b64decode(item["entry"])))
    ]
    assert len(kept) == len(doc["entries"]) - count
    size = parse_checkpoint_size(doc["checkpoint"])
    plan = multi_inclusion_plan([item["index"] for item in kept], size)
    hashes = api.run(lambda conn: logstore.nodes(conn, plan.nodes))
    doc["entries"], doc["proof"] = kept, [b64(h) for h in plan.assemble(hashes)]
    return json.dumps(doc).encode()


def parse_checkpoint_size(note: str) -> int:
    return int(note.split("\n")[1])


def test_full_evidence_runs_from_the_reading_before_the_period_to_the_one_after(api: Api) -> None:
    claim = checkpointed(api, file(api, claim_body(["ev-1", "ev-2", "ev-3"]))["id"])
    raw, result = bundle(api, claim["id"], "full")
    assert json.loads(raw)["evidence"] == "full"
    assert json.loads(raw)["format"] == "iot-attest-evidence/v2"
    seqs = _seqs(raw)
    start, end = T0, T0 + DAY
    for device_id, items in seqs.items():
        numbers = [s for s, _ in items]
        assert numbers == list(range(numbers[0], numbers[-1] + 1)), device_id  # no gap
        assert items[0][1] < start or items[0][0] == 1, (
            device_id
        )  # the start edge: before the period, or seq 1
    # ev1-dev reads every 10 minutes from 23:00 the day before to 01:00 the day after
    assert [s for s, _ in seqs["ev1-dev"]][:: len(seqs["ev1-dev"]) - 1] == [6, 151]
    assert seqs["ev1-dev"][-1][1] >= end
    # ev2-dev-a: its readings after 08:00 are disowned but still logged; the range runs past them
    assert seqs["ev2-dev-a"][-1][1] >= T0 + 10 * HOUR
    assert result.backed, result.evaluation.findings
    assert all(d.evidence is not None and d.evidence.value == "full" for a in result.evaluation.assets
               for d in a.devices)  # fmt: skip
    assert not [f for f in result.evaluation.findings if f.code in ("readings_omitted", "end_edge_unproven")]


def test_a_clock_jump_is_in_full_evidence_not_a_gap(api: Api) -> None:
    claim = checkpointed(api, file(api, claim_body(["ev-jump"]))["id"])
    raw, result = bundle(api, claim["id"], "full")
    numbers = [s for s, _ in _seqs(raw)["jump-dev"]]
    assert numbers == list(range(1, 27))  # reading 14, dated a day late, is there
    codes = {f.code for f in result.evaluation.fatal}
    assert "time_backwards" in codes  # the jump shows as what it is
    assert "readings_omitted" not in codes
    assert_same_verdict(claim["verdict"], result, exact=True)


def test_a_full_bundle_that_leaves_out_the_tampered_reading_is_not_backed(api: Api) -> None:
    claim = checkpointed(api, file(api, claim_body(["ev-tamper"]))["id"])
    verdict = claim["verdict"]
    assert verdict["backed"] is False
    assert [f["code"] for f in findings(verdict) if f["severity"] == "fatal"] == ["meter_fault"]
    raw, result = bundle(api, claim["id"], "full")
    assert_same_verdict(verdict, result, exact=True)
    tampered = next(s for s, t in _seqs(raw)["tamper-dev"] if t == T0 + 12 * HOUR)
    trimmed = _without(api, raw, "tamper-dev", tampered)
    result = verify_bundle(trimmed, api.log_key())  # the proof is valid: the evidence verifies
    assert result.backed is False
    omitted = [f for f in result.evaluation.fatal if f.code == "readings_omitted"]
    assert [f.device_id for f in omitted] == ["tamper-dev"]
    # the v2 counters of the readings either side of the gap show the tamper reading too
    hidden = [f for f in result.evaluation.fatal if f.code == "meter_fault"]
    assert [f.device_id for f in hidden] == ["tamper-dev"]
    assert "1 of the 1 readings between" in hidden[0].message
    # leaving out the start edge is caught too
    first = _seqs(raw)["tamper-dev"][0][0]
    result = verify_bundle(_without(api, raw, "tamper-dev", first), api.log_key())
    assert "readings_omitted" in {f.code for f in result.evaluation.fatal}


def test_the_verdict_says_which_checks_ran_on_which_evidence(api: Api) -> None:
    claim = checkpointed(api, file(api, claim_body(["ev-1", "ev-open"]))["id"])
    verdict = claim["verdict"]
    assert verdict["evidence"] == "full"
    checks = {c["check"]: c for c in verdict["checks"]}
    assert checks["readings_omitted"] == {
        "check": "readings_omitted", "description": checks["readings_omitted"]["description"],
        "on_full": "every reading", "on_boundary": "not run", "full_devices": 2, "boundary_devices": 0,
    }  # fmt: skip
    assert checks["night_production"]["on_full"] == "every interval"
    assert checks["chain_break"]["on_boundary"] == "not run"
    assert {a["asset_id"]: a["evidence"] for a in verdict["assets"]} == {"ev-1": "full", "ev-open": "full"}
    # open-dev has logged no reading after the period: its end edge is unproven, and (v2) fatal
    late = next(d for a in verdict["assets"] for d in a["devices"] if d["device_id"] == "open-dev")
    assert (late["start_proven"], late["end_proven"]) == (True, False)
    assert [(f["code"], f["severity"]) for f in findings(verdict) if f["device_id"] == "open-dev"] == [
        ("end_edge_unproven", "fatal")
    ]
    assert verdict["backed"] is False
    _, result = bundle(api, claim["id"], "boundary")
    assert [c.to_json() for c in result.evaluation.checks if c.code == "readings_omitted"] == [
        {**checks["readings_omitted"], "full_devices": 0, "boundary_devices": 2}
    ]


def test_a_bundle_carries_the_claims_before_it_and_hiding_one_is_caught(api: Api) -> None:
    days = ["2026-10-01T00:00:00Z", "2026-10-01T12:00:00Z", "2026-10-02T00:00:00Z"]
    morning = file(api, claim_body(["ev-1"], period_start=days[0], period_end=days[1]))
    evening = checkpointed(
        api, file(api, claim_body(["ev-1", "pv-1"], period_start=days[1], period_end=days[2]))["id"]
    )
    assert evening["verdict"]["backed"] is True
    raw, result = bundle(api, evening["id"], "boundary")
    assert result.backed, result.evaluation.findings
    indices = [i for i, _ in parse_bundle(raw).entries]
    assert morning["log_index"] in indices  # the chain of ev-1: the morning's claim
    hidden = _rebundle(api, raw, lambda index, entry: index == morning["log_index"])
    result = verify_bundle(hidden, api.log_key())
    assert [f.code for f in result.evaluation.fatal] == ["claims_omitted"]
    # a withdrawn claim backs nothing: its bundle and the gateway's verdict say so
    api.ok(api.post(f"/v1/claims/{morning['id']}/withdraw", "issuer-1", json={"reason": "wrong half"}))
    withdrawn = checkpointed(api, morning["id"])
    assert withdrawn["void"] == "withdrawn"
    assert [f["code"] for f in findings(withdrawn["verdict"]) if f["severity"] == "fatal"] == ["claim_void"]
    _, result = bundle(api, morning["id"], "full")
    assert [f.code for f in result.evaluation.fatal] == ["claim_void"]
    # the evening claim's bundle now carries the withdrawal too, and is still backed
    raw, result = bundle(api, evening["id"], "full")
    assert result.backed, result.evaluation.findings
    assert len([i for i, _ in parse_bundle(raw).entries if i > evening["log_index"]]) >= 1


def test_a_bundle_that_leaves_out_a_device_of_the_asset_is_not_backed(api: Api) -> None:
    """ev-2 has two devices; a full bundle without the second (its enrolment and every reading:
    the rest verifies and looks complete) is caught by the asset's chain of identity entries."""
    claim = checkpointed(api, file(api, claim_body(["ev-2"]))["id"])
    raw, result = bundle(api, claim["id"], "full")
    assert "identity_omitted" not in {f.code for f in result.evaluation.findings}

    def of_dev_b(index: int, entry: object) -> bool:
        if isinstance(entry, EnrolmentEntry):
            return entry.statement.device_id == "ev2-dev-b"
        return isinstance(entry, ReadingEntry) and entry.reading.device_id == "ev2-dev-b"

    count = sum(1 for _, data in parse_bundle(raw).entries if of_dev_b(0, decode_entry(data)))
    trimmed = verify_bundle(_rebundle(api, raw, of_dev_b, count), api.log_key())
    assert trimmed.backed is False
    assert [f.code for f in trimmed.evaluation.fatal] == ["identity_omitted"]
    # leaving out the revocation of ev2-dev-a is caught the same way
    revoked = verify_bundle(
        _rebundle(api, raw, lambda index, entry: isinstance(entry, RevocationEntry)), api.log_key()
    )
    assert "identity_omitted" in {f.code for f in revoked.evaluation.fatal}


def test_a_full_bundle_cut_after_the_tampered_reading_is_not_backed(api: Api) -> None:
    """Every reading from the tampered one on left out: what is left is contiguous and starts
    before the period, but (v2) without a reading after the period its end edge is unproven,
    which is fatal in full evidence.  Relabelled as a v1 bundle it is refused."""
    claim = checkpointed(api, file(api, claim_body(["ev-tamper"]))["id"])
    raw, _ = bundle(api, claim["id"], "full")
    tampered = next(s for s, t in _seqs(raw)["tamper-dev"] if t == T0 + 12 * HOUR)
    tail = [s for s, _ in _seqs(raw)["tamper-dev"] if s >= tampered]

    def cut(index: int, entry: object) -> bool:
        return (
            isinstance(entry, ReadingEntry)
            and entry.reading.device_id == "tamper-dev"
            and entry.reading.seq >= tampered
        )

    trimmed = _rebundle(api, raw, cut, len(tail))
    result = verify_bundle(trimmed, api.log_key())  # the proof is valid: the evidence verifies
    assert result.backed is False
    assert [(f.code, f.device_id) for f in result.evaluation.fatal] == [("end_edge_unproven", "tamper-dev")]
    assert "a reading dated at or after the period's end would prove" in result.evaluation.fatal[0].message
    # the format member is not signed: relabelled v1, the cut (or gapped) device would read as
    # boundary evidence; a v1 bundle of a v2 claim entry is refused as invalid evidence
    for cut_bundle in (trimmed, _without(api, raw, "tamper-dev", tampered)):
        doc = json.loads(cut_bundle)
        doc["format"] = "iot-attest-evidence/v1"
        del doc["evidence"]
        with pytest.raises(BundleError) as info:
            verify_bundle(json.dumps(doc).encode(), api.log_key())
        assert info.value.code == "format_mismatch"


def test_full_evidence_shows_every_device_of_the_asset(api: Api) -> None:
    """ev-2 over the morning: ev2-dev-b reads only from 12:00, so it has no reading in the period.
    (v2) Full evidence holds its edges (here its reading 1, dated after the period), and leaving
    out every reading of a device while keeping its enrolment is readings_omitted."""
    claim = checkpointed(api, file(api, claim_body(["ev-2"], period_end="2026-10-01T06:00:00Z"))["id"])
    assert claim["verdict"]["backed"] is True, findings(claim["verdict"])
    raw, result = bundle(api, claim["id"], "full")
    assert_same_verdict(claim["verdict"], result, exact=True)
    assert _seqs(raw)["ev2-dev-b"] == [(1, T0 + 12 * HOUR)]

    def of_dev_b(index: int, entry: object) -> bool:
        return isinstance(entry, ReadingEntry) and entry.reading.device_id == "ev2-dev-b"

    result = verify_bundle(_rebundle(api, raw, of_dev_b), api.log_key())
    assert [(f.code, f.device_id) for f in result.evaluation.fatal] == [("readings_omitted", "ev2-dev-b")]
    withdraw_all(api)
    # the whole day: all of ev2-dev-b's readings left out, its enrolment kept
    claim = checkpointed(api, file(api, claim_body(["ev-2"]))["id"])
    raw, result = bundle(api, claim["id"], "full")
    assert result.backed, result.evaluation.findings
    count = len(_seqs(raw)["ev2-dev-b"])
    result = verify_bundle(_rebundle(api, raw, of_dev_b, count), api.log_key())
    assert result.backed is False
    assert [(f.code, f.device_id) for f in result.evaluation.fatal] == [("readings_omitted", "ev2-dev-b")]


def test_a_device_that_never_sent_a_reading_keeps_full_evidence_unprovable_until_revoked(api: Api) -> None:
    claim = checkpointed(api, file(api, claim_body(["ev-silent"]))["id"])
    verdict = claim["verdict"]
    assert verdict["backed"] is False
    fatal = [(f["code"], f["device_id"]) for f in findings(verdict) if f["severity"] == "fatal"]
    assert fatal == [("readings_omitted", "silent-dev")]
    # an operator revokes it, disowning every reading (there is none): nothing it logs can count
    api.ok(
        api.post(
            "/v1/devices/silent-dev/revoke",
            "operator-1",
            json={"reason": "never installed", "last_valid_seq": 0},
        )
    )
    claim = checkpointed(api, claim["id"])
    assert claim["verdict"]["backed"] is True, findings(claim["verdict"])
    _, result = bundle(api, claim["id"], "full")
    assert result.backed, result.evaluation.findings
