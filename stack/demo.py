"""make demo: from nothing to a verified cash-flow claim, on this machine.

1. PostgreSQL and MQTT (DATABASE_URL / MQTT_URL, or embedded), the gateway.
2. A simulated fleet (chargers and solar panels; each charger's simulated meter
   signs its session start and end values) enrols itself and sends last
   month's readings (every 30 simulated minutes: about 60,000), compressed into
   about a minute.
3. An issuer totals the readings over the REST API, files a claim for exactly
   what they show, and fetches its evidence bundle.
4. An auditor verifies the bundle with ``python -m verifier`` and the log key:
   backed (exit 0). Claiming the same energy again is refused (409
   already_claimed); a correction that supersedes the claim with an overstated
   revenue is refuted (exit 1) and a tampered copy of the bundle is rejected
   (exit 2), as they must be.
5. Meanwhile, on the real clock, certified (Eichrecht) chargers speak OCPP 1.6 and
   2.0.1 to real edge agents (stack/certified.py): their meters sign each begin and
   end value (OCMF), the agents carry the records byte for byte, and the auditor
   checks both signatures: a claim on their sessions is backed with every kWh
   meter-signed (``--require-meter-signed``).

Writes demo-output/ (log-key.txt, checkpoint.txt, bundle.json, report.json)
and exits 0 only if every verdict is the expected one.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from attest_core.entries import ReadingEntry, decode_entry, encode_entry
from attest_core.money import energy_value, format_kwh, round_down
from stack import certified
from stack.processes import REPO
from stack.system import System

PRICE = "0.35"
CURRENCY = "USD"
console = Console(highlight=False)


def say(message: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {message}")


def step(title: str) -> None:
    console.rule(f"[bold]{title}")


def last_month(now: datetime) -> tuple[datetime, datetime]:
    """The last complete calendar month before ``now``, in UTC: [start, end)."""
    first_of_this = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    year, month = (first_of_this.year, first_of_this.month - 1) if first_of_this.month > 1 else (
        first_of_this.year - 1, 12,
    )  # fmt: skip
    return first_of_this.replace(year=year, month=month), first_of_this


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class Issuer:
    """What an issuer does, over the REST API with its token."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            query: dict[str, Any] = {**params, **({"cursor": cursor} if cursor else {})}
            page = self.http.get(path, params=query).raise_for_status().json()
            items += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    def one_reading(self, asset_id: str, start: str, end: str, order: str) -> dict[str, Any] | None:
        params: dict[str, Any] = {"from": start, "to": end, "order": order, "limit": 1}
        items = (
            self.http.get(f"/v1/assets/{asset_id}/readings", params=params).raise_for_status().json()["items"]
        )
        return items[0] if items else None

    def file_claim(self, body: dict[str, Any], supersedes: int | None = None) -> dict[str, Any]:
        path = "/v1/claims" if supersedes is None else f"/v1/claims/{supersedes}/supersede"
        answer: dict[str, Any] = self.http.post(path, json=body).raise_for_status().json()
        return answer

    def bundle(self, claim_id: object, mode: str, timeout: float = 60.0) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            r = self.http.get(f"/v1/claims/{claim_id}/bundle", params={"mode": mode})
            if r.status_code == 200:
                return r.content
            if r.status_code != 409 or time.monotonic() > deadline:
                raise RuntimeError(f"the bundle of claim {claim_id}: {r.status_code} {r.text}")
            time.sleep(0.3)  # not yet covered by a checkpoint

    def close(self) -> None:
        self.http.close()


def verify(bundle: Path, log_key: Path, *extra: str) -> int:
    """Run the auditor's verifier as a separate program, showing its output."""
    cmd = [sys.executable, "-m", "verifier", "bundle", str(bundle), "--log-key", str(log_key), *extra]
    console.print(
        f"[dim]$ python -m verifier bundle {bundle.name} --log-key {log_key.name} {' '.join(extra)}[/dim]"
    )
    return subprocess.run(cmd, cwd=REPO, check=False).returncode


def tamper(bundle: bytes) -> bytes:
    """Add 1 kWh to one reading's register, keeping the device's signature, as a forger would."""
    doc = json.loads(bundle)
    for item in doc["entries"]:
        entry = decode_entry(base64.b64decode(item["entry"]))
        if isinstance(entry, ReadingEntry):
            envelope = entry.envelope
            forged = replace(entry.reading, energy_mwh=entry.reading.energy_mwh + 1_000_000)
            envelope = replace(envelope, payload=forged.encode())
            item["entry"] = base64.b64encode(encode_entry(ReadingEntry(envelope.encode()))).decode()
            break
    return json.dumps(doc).encode()


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start, end = last_month(datetime.now(UTC))
    span_s = (end - start).total_seconds() + 3600  # an hour past the period's end
    speed = span_s / args.seconds
    expected = {"honest": 0, "overstated": 1, "tampered": 2, "certified": 0}
    results: dict[str, int] = {}
    started = time.monotonic()

    step("1. Starting the system")
    system = System(say)
    certified_chargers: list[certified.CertifiedCharger] = []
    try:
        system.start()

        step(
            f"2a. {args.certified} certified chargers over OCPP, on the real clock, beside the simulated month"
        )
        cert_start = datetime.now(UTC).replace(microsecond=0)
        certified_chargers = certified.start(
            args.certified,
            system.workdir,
            system.gateway_url,
            system.mqtt_url,
            system.tokens.installer,
            say,
            args.certified_sessions,
        )
        say(f"their simulated charge points connect to the agents and charge {args.certified_sessions} time(s) "
            "each; the meters sign every begin and end value")  # fmt: skip

        chargers = (args.devices + 1) // 2
        step(f"2. A simulated fleet: {chargers} chargers and {args.devices - chargers} solar panels, "
             f"{start:%B %Y} in about {args.seconds} s")  # fmt: skip
        readings_per_device = int(span_s // args.interval)
        say(f"{args.devices} devices enrol through the API, then send a reading every "
            f"{args.interval // 60} simulated minutes: about {readings_per_device * (args.devices):,} "
            "signed readings")  # fmt: skip
        sim = subprocess.run(
            [
                sys.executable, "-m", "edge_agent", "simulate",
                "--devices", str(args.devices), "--kind", "mixed",
                "--interval", str(args.interval), "--speed", f"{speed:.3f}", "--duration", str(args.seconds),
                "--start", iso(start), "--gateway", system.gateway_url, "--token", system.tokens.installer,
                "--mqtt", system.mqtt_url, "--state", str(system.workdir / "fleet"), "--drain", "120",
                "--resend-after", "60", "--meter-signed",
                "--progress", "10",
            ],
            cwd=REPO, check=False,
        )  # fmt: skip
        if sim.returncode != 0:
            raise RuntimeError(
                f"the simulated fleet failed (exit {sim.returncode}): not every reading was confirmed logged"
            )

        step("3. The issuer files a claim for what the readings show")
        issuer = Issuer(system.gateway_url, system.tokens.issuer)
        cert_assets = {c.asset_id for c in certified_chargers}
        assets = [a for a in issuer.pages("/v1/assets", limit=1000) if a["asset_id"] not in cert_assets]
        total_mwh = 0
        for asset in assets:
            first = issuer.one_reading(asset["asset_id"], iso(start), iso(end), "asc")
            last = issuer.one_reading(asset["asset_id"], iso(start), iso(end), "desc")
            if first and last:
                total_mwh += last["energy_mwh"] - first["energy_mwh"]
        revenue = round_down(energy_value(total_mwh, Decimal(PRICE)), CURRENCY)
        say(f"{len(assets)} assets metered {format_kwh(total_mwh)} kWh in {start:%B %Y}: "
            f"{revenue} {CURRENCY} at {PRICE} {CURRENCY}/kWh")  # fmt: skip
        claim: dict[str, Any] = {
            "title": f"{start:%B %Y}: {len(assets)} assets",
            "assets": sorted(a["asset_id"] for a in assets),
            "period_start": iso(start),
            "period_end": iso(end),
            "tariff": {"currency": CURRENCY, "price_per_kwh": PRICE},
            "claimed_energy_kwh": format_kwh(total_mwh),
            "claimed_amount": str(revenue),
        }
        honest = issuer.file_claim(claim)
        say(f"claim {honest['id']} filed: {claim['claimed_energy_kwh']} kWh, {revenue} {CURRENCY}")
        bundle = issuer.bundle(honest["id"], "boundary")
        (out / "bundle.json").write_bytes(bundle)
        key = system_get(system, "/v1/log/key")
        (out / "log-key.txt").write_text(key)
        (out / "checkpoint.txt").write_text(json.loads(bundle)["checkpoint"])
        say(f"evidence bundle: {len(bundle):,} bytes ({len(json.loads(bundle)['entries'])} entries) -> "
            f"{out / 'bundle.json'}")  # fmt: skip
        say(f"log key (an auditor gets it out of band; here from the gateway): {key.strip()}")

        step("4. The auditor verifies it, offline, with the log key alone")
        results["honest"] = verify(
            out / "bundle.json", out / "log-key.txt", "--html", str(out / "report.html")
        )
        report = subprocess.run(
            [sys.executable, "-m", "verifier", "bundle", str(out / "bundle.json"), "--log-key",
             str(out / "log-key.txt"), "--json"],
            cwd=REPO, capture_output=True, check=False,
        )  # fmt: skip
        (out / "report.json").write_bytes(report.stdout)

        step(
            "5. The same energy cannot be claimed twice; an overstated correction is refuted (exit 1 expected)"
        )
        again = issuer.http.post("/v1/claims", json=claim)
        results["double"] = again.status_code
        say(f"filing the same claim again: {again.status_code} {again.json().get('error', {}).get('code')}")
        inflated = {**claim, "claimed_amount": str((revenue * Decimal("1.1")).quantize(Decimal("0.01"))),
                    "title": claim["title"] + " (overstated)"}  # fmt: skip
        overstated = issuer.file_claim(inflated, supersedes=honest["id"])
        say(f"claim {overstated['id']} supersedes claim {honest['id']}, claiming 10 % more revenue")
        (out / "bundle-overstated.json").write_bytes(issuer.bundle(overstated["id"], "boundary"))
        results["overstated"] = verify(out / "bundle-overstated.json", out / "log-key.txt")

        step("6. A tampered copy of the honest bundle is rejected (exit 2 expected)")
        (out / "bundle-tampered.json").write_bytes(tamper(bundle))
        results["tampered"] = verify(out / "bundle-tampered.json", out / "log-key.txt")

        if certified_chargers:
            step("7. The certified chargers' sessions: meter-signed evidence, both signatures checked")
            results["certified"] = certified_claim(issuer, certified_chargers, cert_start, out)
        else:
            results["certified"] = 0
        issuer.close()
    finally:
        step("Stopping everything the demo started")
        for charger in certified_chargers:
            charger.stop()
        system.stop()

    step("Result")
    ok = True
    for name, code in expected.items():
        got = results.get(name)
        good = got == code
        ok &= good
        mark = "[green]as expected[/green]" if good else "[red]NOT as expected[/red]"
        console.print(f"  {name:<11} claim: verifier exit {got} (expected {code}) {mark}")
    double = results.get("double")
    ok &= double == 409
    mark = "[green]as expected[/green]" if double == 409 else "[red]NOT as expected[/red]"
    console.print(f"  double      claim: refused, HTTP {double} (expected 409) {mark}")
    console.print(f"  outputs in {out}/: log-key.txt, checkpoint.txt, bundle.json, report.json, report.html")
    console.print(f"  {time.monotonic() - started:.0f} s in all")
    return 0 if ok else 1


def certified_claim(
    issuer: Issuer, chargers: list[certified.CertifiedCharger], start: datetime, out: Path
) -> int:
    """File a claim on the certified chargers' sessions and verify it, meter signatures required."""
    certified.wait_sessions(chargers, 240)
    end = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    say(
        f"sessions done; a claim for {iso(start)} .. {iso(end)} once each agent has logged a reading after it"
    )
    assets = sorted(c.asset_id for c in chargers)
    wanted: dict[str, int] = {}
    deadline = time.monotonic() + 120
    while len(wanted) < len(assets):  # the end edge: a reading dated after the period, logged
        for asset in assets:
            after = issuer.one_reading(asset, iso(end), "2200-01-01T00:00:00Z", "asc")
            if after is not None and after["log_index"] is not None:
                wanted[asset] = after["log_index"]
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"no reading after the period was logged for {sorted(set(assets) - set(wanted))}"
            )
        time.sleep(1)
    total_mwh = 0
    for asset in assets:
        first = issuer.one_reading(asset, iso(start), iso(end), "asc")
        last = issuer.one_reading(asset, iso(start), iso(end), "desc")
        if first and last:
            total_mwh += last["energy_mwh"] - first["energy_mwh"]
    revenue = round_down(energy_value(total_mwh, Decimal(PRICE)), CURRENCY)
    claim = issuer.file_claim({
        "title": f"certified chargers, {start:%Y-%m-%d %H:%M}", "assets": assets,
        "period_start": iso(start), "period_end": iso(end),
        "tariff": {"currency": CURRENCY, "price_per_kwh": PRICE},
        "claimed_energy_kwh": format_kwh(total_mwh), "claimed_amount": str(revenue),
    })  # fmt: skip
    say(f"claim {claim['id']} filed: {format_kwh(total_mwh)} kWh, {revenue} {CURRENCY}")
    deadline = time.monotonic() + 60
    while _checkpoint_size(issuer) <= max(wanted.values()):
        if time.monotonic() > deadline:
            raise RuntimeError("no checkpoint covers the certified chargers' readings")
        time.sleep(0.5)
    (out / "bundle-certified.json").write_bytes(issuer.bundle(claim["id"], "full"))
    return verify(
        out / "bundle-certified.json", out / "log-key.txt", "--require-full", "--require-meter-signed"
    )


def _checkpoint_size(issuer: Issuer) -> int:
    return int(issuer.http.get("/v1/log/checkpoint").raise_for_status().text.splitlines()[1])


def system_get(system: System, path: str) -> str:
    return httpx.get(system.gateway_url + path, timeout=30).raise_for_status().text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument(
        "--devices", type=int, default=40, help="simulated devices, half chargers, half solar (40)"
    )
    parser.add_argument(
        "--interval", type=int, default=1800, help="simulated seconds between readings (1800)"
    )
    parser.add_argument("--seconds", type=int, default=60, help="wall seconds for the simulated month (60)")
    parser.add_argument(
        "--certified", type=int, default=2,
        help="certified chargers speaking OCPP to real agents, alternately 1.6 and 2.0.1 (2; 0: none)",
    )  # fmt: skip
    parser.add_argument(
        "--certified-sessions", type=int, default=2, help="charging sessions per certified charger (2)"
    )
    parser.add_argument("--out", default="demo-output")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (RuntimeError, httpx.HTTPError) as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
