"""The verifier on meter-signed (OCMF) evidence: the report's meter-signed energy, --require-meter-signed,
and a bundle built around a record with one changed digit or signed by another meter's key."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from attest_core.device import AssetKind
from attest_core.meterproof import MeterFormat, MeterRecord
from attest_core.verdict import EvidenceKind
from tests.support import HOUR, T0, MemoryLog, TestDevice, TestMeter, flat_claim
from tests.verifier.conftest import Cli

KWH = 1_000_000


def _bundle(tmp_path: Path, *, tamper: str | None = None, unsigned_tail: bool = False) -> tuple[Path, Path]:
    """A full v2 bundle of one charger: a session whose begin and end values its meter signed."""
    meter = TestMeter()
    log = MemoryLog()
    device = TestDevice("cp-1", "charger-1", AssetKind.CHARGER, 22_000, meter_key=meter.key)
    log.enrol(device)
    begin_t, end_t = T0 + 8 * HOUR, T0 + 10 * HOUR
    log.append_reading(device.reading(T0 - HOUR, 100 * KWH))
    log.append_reading(
        device.reading(begin_t, 100 * KWH, meter_record=meter.meter_record([(begin_t, "B", 100 * KWH)]))
    )
    log.append_reading(device.reading(begin_t + HOUR, 105 * KWH))
    end_record = meter.meter_record([(begin_t, "B", 100 * KWH), (end_t, "E", 112 * KWH)], index=1)
    if tamper == "digit":  # one changed digit after the meter signed (the register follows it)
        end_record = dataclasses.replace(
            end_record, record=end_record.record.replace(b'"RV":112', b'"RV":113')
        )
    elif tamper == "other_key":
        end_record = MeterRecord(
            MeterFormat.OCMF,
            1,
            TestMeter("a meter of another charger").record(
                [(begin_t, "B", 100 * KWH), (end_t, "E", 112 * KWH)]
            ),
        )
    end_kwh = 113 if tamper == "digit" else 112
    log.append_reading(device.reading(end_t, end_kwh * KWH, meter_record=end_record))
    if unsigned_tail:
        log.append_reading(device.reading(end_t + HOUR, (end_kwh + 2) * KWH))
    log.append_reading(device.reading(T0 + 25 * HOUR, (end_kwh + 2 if unsigned_tail else end_kwh) * KWH))
    claim_index = log.file_claim(flat_claim(("charger-1",), energy_mwh=12 * KWH, amount="4.20"))
    path = tmp_path / "bundle.json"
    path.write_bytes(log.bundle_bytes(claim_index, list(range(len(log.entries))), EvidenceKind.FULL))
    key = tmp_path / "log-key.txt"
    key.write_text(log.key.to_string() + "\n")
    return path, key


def test_a_meter_signed_claim_is_backed_and_the_report_shows_its_meter_signed_energy(
    cli: Cli, tmp_path: Path
) -> None:
    bundle, key = _bundle(tmp_path)
    r = cli("bundle", bundle, "--log-key", key, "--json", "--require-meter-signed")
    doc = json.loads(r.out)
    assert r.code == 0, doc["findings"]
    (asset,) = doc["assets"]
    assert asset["meter_signed"] == {
        "energy_kwh": "12",
        "energy_mwh": 12 * KWH,
        "readings": 2,
        "share": "1.0000",
    }
    assert doc["evidence"]["require_meter_signed"] is True
    checks = {c["check"] for c in doc["checks"]}
    assert {"meter_signature", "meter_pagination"} <= checks
    text = cli("bundle", bundle, "--log-key", key).out
    assert "meter-signed" in text
    assert "(100%)" in text
    html = tmp_path / "report.html"
    cli("bundle", bundle, "--log-key", key, "--html", html)
    assert "meter-signed kWh" in html.read_text()


def test_energy_outside_meter_signed_values_fails_only_when_required(cli: Cli, tmp_path: Path) -> None:
    bundle, key = _bundle(tmp_path, unsigned_tail=True)
    r = cli("bundle", bundle, "--log-key", key, "--json")
    doc = json.loads(r.out)
    assert r.code == 0, doc["findings"]
    assert doc["assets"][0]["meter_signed"]["share"] == "0.8571"  # 12 of 14 kWh
    r = cli("bundle", bundle, "--log-key", key, "--json", "--require-meter-signed")
    doc = json.loads(r.out)
    assert r.code == 1
    assert "meter_signed_insufficient" in [f["code"] for f in doc["findings"] if f["severity"] == "fatal"]


def test_a_changed_digit_or_another_meters_key_is_fatal(cli: Cli, tmp_path: Path) -> None:
    for tamper in ("digit", "other_key"):
        bundle, key = _bundle(tmp_path, tamper=tamper)
        r = cli("bundle", bundle, "--log-key", key, "--json")
        doc = json.loads(r.out)
        assert r.code == 1, tamper
        fatal = [f for f in doc["findings"] if f["severity"] == "fatal"]
        assert [f["code"] for f in fatal] == ["meter_signature"], (tamper, fatal)
        assert fatal[0]["seq"] == 4
