"""A claim in an 18-decimal token, end to end: filed through the gateway's API, evaluated by the
gateway, bundled, and backed by the auditor's verifier with the exact amount and the token's identity."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from attest_core.entries import ClaimEntry, decode_entry
from tests.gateway.apiworld import Api, api_gateway
from tests.services import Broker, Postgres
from tests.support import DAY, HOUR, T0, TestDevice
from verifier.cli import main as verifier_main

MINUTE = 60_000
ADDRESS = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
WETH = f"eip155:31337/erc20:{ADDRESS};decimals=18;symbol=WETH"
USDC = "eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;decimals=6;symbol=USDC"
DEVICE = TestDevice("tok-dev", "tok-1")
STEP_MWH = 1_234_567  # 1.234567 kWh every 30 minutes

# 48 readings in the day, 47 intervals: 58.024649 kWh at 0.350000000000000001 WETH/kWh is
# 20.308627150000000058024649 WETH exactly, 20.308627150000000058 rounded down to 18 decimals.
PRICE = "0.350000000000000001"
ENERGY_KWH = "58.024649"
EXACT = "20.308627150000000058024649"
AMOUNT = "20.308627150000000058"


@pytest.fixture(scope="module")
def api(postgres: Postgres, broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with api_gateway(postgres, broker, tmp_path_factory.mktemp("tokens")) as api:
        api.enrol(DEVICE)
        times = range(T0 - HOUR, T0 + DAY + HOUR, 30 * MINUTE)
        items = [(DEVICE, DEVICE.reading(t, n * STEP_MWH).encode()) for n, t in enumerate(times)]
        assert api.ingest(items).accepted == len(items)
        api.wait_logged()
        yield api


def body(currency: str = WETH, amount: str = AMOUNT, price: str = PRICE, **changes: Any) -> dict[str, Any]:
    return {
        "title": "October 1st in WETH",
        "assets": ["tok-1"],
        "period_start": "2026-10-01T00:00:00Z",
        "period_end": "2026-10-02T00:00:00Z",
        "tariff": {"currency": currency, "price_per_kwh": price},
        "claimed_energy_kwh": ENERGY_KWH,
        "claimed_amount": amount,
        **changes,
    }


def file_and_check(api: Api, request: dict[str, Any]) -> dict[str, Any]:
    filed = api.ok(api.post("/v1/claims", "issuer-1", json=request), 201)
    api.wait_checkpoint()
    claim: dict[str, Any] = api.ok(api.get(f"/v1/claims/{filed['id']}"))
    assert claim["status"] == "checkpointed"
    return claim


def withdraw(api: Api, claim_id: int) -> None:
    api.ok(api.post(f"/v1/claims/{claim_id}/withdraw", "issuer-1", json={"reason": "test over"}))


def verifier(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str]:
    capsys.readouterr()
    code = verifier_main([str(a) for a in argv])
    return code, capsys.readouterr().out


def test_an_18_decimal_token_claim_is_exact_from_the_api_to_the_verifier(
    api: Api, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    claim = file_and_check(api, body())
    assert claim["claimed_amount"] == AMOUNT
    assert claim["currency"] == WETH
    assert claim["tariff"]["currency"] == WETH
    assert claim["tariff"]["token"] == {
        "asset": f"eip155:31337/erc20:{ADDRESS}", "chain_id": 31337, "address": ADDRESS, "decimals": 18,
        "symbol": "WETH",
    }  # fmt: skip
    # the logged entry carries the token's spelling, decimals and symbol included
    entry = decode_entry(api.http.get(f"/v1/log/entries/{claim['log_index']}").content)
    assert isinstance(entry, ClaimEntry)
    assert entry.claim.currency == WETH
    assert entry.claim.tariff.segments[0].price_per_kwh == PRICE
    verdict = claim["verdict"]
    assert (verdict["energy_kwh"], verdict["revenue_exact"], verdict["revenue"]) == (
        ENERGY_KWH,
        EXACT,
        AMOUNT,
    )
    assert verdict["assets"][0]["revenue"] == AMOUNT
    assert (verdict["backed"], verdict["currency"]) == (True, WETH)

    r = api.get(f"/v1/claims/{claim['id']}/bundle", params={"mode": "full"})
    assert r.status_code == 200, r.text
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(r.content)
    key = tmp_path / "log-key.txt"
    key.write_text(api.log_key().to_string() + "\n")
    page = tmp_path / "report.html"

    code, out = verifier(capsys, "bundle", bundle, "--log-key", key, "--json", "--html", page)
    assert code == 0, out
    doc = json.loads(out)
    assert doc["verdict"] == "backed"
    assert doc["attested"]["revenue"] == AMOUNT
    assert doc["attested"]["revenue_exact"] == EXACT
    assert doc["attested"]["revenue_covered"] is True
    assert doc["claim"]["claimed_amount"] == AMOUNT
    assert doc["claim"]["tariff"]["description"] == f"{PRICE} WETH/kWh"
    described = f"WETH (eip155:31337/erc20:{ADDRESS}, 18 decimals)"
    assert doc["claim"]["unit"] == {
        "symbol": "WETH", "decimals": 18, "description": described, "token": claim["tariff"]["token"],
    }  # fmt: skip
    html = page.read_text()
    assert described in html
    assert f"claimed {AMOUNT} WETH, attested {AMOUNT} WETH" in html

    code, out = verifier(capsys, "bundle", bundle, "--log-key", key)
    assert code == 0
    assert described in out
    assert f"claimed {AMOUNT} WETH, attested {AMOUNT} WETH" in out
    withdraw(api, claim["id"])


def test_one_wei_too_many_is_not_backed(api: Api) -> None:
    claim = file_and_check(api, body(amount="20.308627150000000059"))
    verdict = claim["verdict"]
    assert verdict["backed"] is False
    (finding,) = [f for f in verdict["findings"] if f["severity"] == "fatal"]
    assert finding["code"] == "revenue_overclaimed"
    assert (
        "the claim states 20.308627150000000059 WETH, the readings attest 20.308627150000000058 WETH"
        in (finding["message"])
    )
    withdraw(api, claim["id"])


def test_a_6_decimal_token_rounds_down_to_its_decimals(api: Api) -> None:
    # the same energy at 0.35 USDC/kWh is 20.30862715 USDC: 20.308627 rounded down
    claim = file_and_check(api, body(USDC, "20.308627", "0.35"))
    assert (claim["verdict"]["revenue"], claim["verdict"]["backed"]) == ("20.308627", True)
    withdraw(api, claim["id"])


@pytest.mark.parametrize(("change", "code"), [
    (body(USDC.replace("0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48")),
     "bad_token_address"),
    (body(WETH.replace("decimals=18", "decimals=19")), "bad_token_decimals"),
    (body(WETH.replace("symbol=WETH", "symbol=W ETH")), "bad_token_symbol"),
    (body(WETH.replace("eip155:31337", "eip155:031337")), "bad_token_chain"),
    (body(WETH.replace(";decimals=18", "")), "bad_token"),
    (body("weth"), "bad_currency"),
    (body(USDC, "20.3086271"), "bad_amount"),
    (body(WETH, AMOUNT + "1"), "bad_decimal"),  # 19 decimals: beyond the decimal format
    (body(WETH + "x" * 100), "bad_request"),  # longer than any currency
])  # fmt: skip
def test_a_bad_token_claim_is_refused_with_its_code(api: Api, change: dict[str, Any], code: str) -> None:
    r = api.post("/v1/claims", "issuer-1", json=change)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == code, r.text
