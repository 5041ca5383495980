"""``verifier monitor --claims`` against a real gateway: it reads every entry, logs withdrawals
and supersessions, and raises an alert with re-checkable evidence when the log holds a double
claim (planted here as a gateway bug would: an entry queued without the gateway's refusal)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from attest_core.entries import ClaimEntry, EntryType, encode_entry
from attest_core.note import VerifierKey
from tests.gateway.apiworld import Api, api_gateway
from tests.services import Broker, Postgres
from tests.support import T0, TestDevice, flat_claim
from tests.verifier.conftest import run_process

METER = TestDevice("mc-dev-1", "mc-1")


@pytest.fixture(scope="module")
def api(postgres: Postgres, broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with api_gateway(postgres, broker, tmp_path_factory.mktemp("gateway")) as api:
        api.enrol(METER)
        api.enrol(TestDevice("mc-dev-2", "mc-2"))
        yield api


def body(asset: str, day: int, title: str) -> dict[str, Any]:
    return {
        "title": title,
        "assets": [asset],
        "period_start": f"2026-10-0{day}T00:00:00Z",
        "period_end": f"2026-10-0{day + 1}T00:00:00Z",
        "tariff": {"currency": "EUR", "price_per_kwh": "0.30"},
        "claimed_energy_kwh": "0",
        "claimed_amount": "0",
    }


def monitor(api: Api, state: Path, key: Path) -> tuple[int, str]:
    api.wait_logged()
    api.wait_checkpoint()
    r = run_process(
        "monitor", "--gateway", api.gw.url, "--log-key", key, "--state", state, "--once", "--claims"
    )
    assert "Traceback" not in r.err, r.err
    return r.code, r.err


def test_the_monitor_reads_every_claim_and_alerts_on_a_double_claim(api: Api, tmp_path: Path) -> None:
    key: VerifierKey = api.gw.gateway.signer.verifier_key()
    key_file = tmp_path / "log-key.txt"
    key_file.write_text(key.to_string() + "\n")
    state = tmp_path / "state"
    first = api.ok(api.post("/v1/claims", "issuer-1", json=body("mc-1", 1, "first")), 201)
    code, err = monitor(api, state, key_file)
    assert code == 0, err
    assert "1 live claim(s), no double claim" in err

    fixed = api.ok(
        api.post(f"/v1/claims/{first['id']}/supersede", "issuer-1", json=body("mc-1", 1, "fixed")), 201
    )
    api.ok(api.post(f"/v1/claims/{fixed['id']}/withdraw", "issuer-1", json={"reason": "sold"}))
    live = api.ok(api.post("/v1/claims", "issuer-2", json=body("mc-2", 1, "second")), 201)
    # an operator disowns two logged readings of mc-dev-1: a holder following the log is told
    readings = [METER.reading(T0 + n * 600_000, n * 1000).encode() for n in range(3)]
    assert api.ingest([(METER, r) for r in readings]).accepted == 3
    api.wait_logged()
    api.ok(
        api.post(
            "/v1/devices/mc-dev-1/revoke", "operator-1", json={"reason": "meter swapped", "last_valid_seq": 1}
        )
    )
    code, err = monitor(api, state, key_file)
    assert code == 0, err
    assert "device mc-dev-1 revoked at entry" in err
    assert "disowning 2 logged reading(s) above 1: 'meter swapped'" in err
    assert f"claim at entry {first['log_index']} superseded by the claim at entry {fixed['log_index']}" in err
    assert f"claim at entry {fixed['log_index']} withdrawn at entry" in err
    assert "'sold'" in err
    scanned = json.loads((state / "claims-scan.json").read_text())
    assert [c["index"] for c in scanned["live"]] == [live["log_index"]]

    # A gateway bug: a claim on mc-2 for the same day queued without the refusal.
    double = ClaimEntry(
        flat_claim(("mc-2",), start=T0, end=T0 + 86_400_000), T0, None, (bytes.fromhex("11" * 32),)
    )

    # and a second one in the same scan: every alert is raised, not only the first
    again = dataclasses.replace(double, logged_at_ms=T0 + 1)

    async def plant(conn: asyncpg.Connection) -> None:
        for entry in (double, again):
            await conn.execute(
                "INSERT INTO pending_entries (kind, data) VALUES ($1, $2)",
                int(EntryType.CLAIM),
                encode_entry(entry),
            )

    api.run(plant)
    code, err = monitor(api, state, key_file)
    assert code == 2, err
    assert "ALERT [double_claimed]" in err
    folders = sorted((state / "evidence").iterdir())
    second = [f for f in folders for p in f.iterdir() if p.read_bytes() == encode_entry(again)]
    assert second, "the second double claim of the scan raised no alert"
    other = live["log_index"]
    evidence = next(
        f
        for f in folders
        if (f / f"entry-{other}.bin").exists()
        and any(p.read_bytes() == encode_entry(double) for p in f.iterdir())
    )
    assert "claims-double_claimed" in evidence.name
    files = sorted(p.name for p in evidence.iterdir())
    assert f"entry-{other}.bin" in files
    assert f"inclusion-{other}.json" in files
    planted = next(f for f in files if f.startswith("entry-") and f != f"entry-{other}.bin")
    assert (evidence / planted).read_bytes() == encode_entry(double)
    # anyone re-checks each entry's inclusion with the log key alone
    index = planted.removeprefix("entry-").removesuffix(".bin")
    for i in (index, str(other)):
        check = run_process(
            "inclusion", "--log-key", key_file, "--checkpoint", evidence / "checkpoint.txt",
            "--entry", evidence / f"entry-{i}.bin", "--index", i, "--proof", evidence / f"inclusion-{i}.json",
        )  # fmt: skip
        assert check.code == 0, check.out + check.err


def test_entries_the_checkpoint_does_not_commit_to_raise_an_alert(api: Api, tmp_path: Path) -> None:
    """A gateway whose stored entry was altered after it was logged serves bytes its signed root
    does not cover: the watch refuses to judge them (and this gateway's log is spoilt: last test)."""
    key_file = tmp_path / "log-key.txt"
    key_file.write_text(api.gw.gateway.signer.verifier_key().to_string() + "\n")
    api.ok(api.post("/v1/claims", "issuer-1", json=body("mc-1", 3, "to be altered")), 201)
    api.wait_logged()

    async def alter(conn: asyncpg.Connection) -> None:
        index = await conn.fetchval("SELECT max(idx) FROM entries WHERE kind = 5")
        data = bytearray(await conn.fetchval("SELECT data FROM entries WHERE idx = $1", index))
        data[-40] ^= 1
        await conn.execute("UPDATE entries SET data = $2 WHERE idx = $1", index, bytes(data))

    api.run(alter)
    code, err = monitor(api, tmp_path / "state", key_file)
    assert code == 2, err
    assert "ALERT [entries_mismatch]" in err
