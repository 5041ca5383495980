"""``python -m verifier bundle``: verdicts, exit codes, the JSON and HTML reports, tamper evidence."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from attest_core.bundle import Bundle, encode_bundle, parse_bundle
from attest_core.checkpoint import WitnessKey, add_signature_lines, cosign_checkpoint, parse_checkpoint_body
from attest_core.note import parse_note
from attest_core.verdict import EvidenceKind
from tests.core.test_bundle import HONEST, _apply, _mutations
from tests.support import seeded_signer
from tests.verifier.conftest import Cli, Files, run_process

KWH = 1_000_000


def test_an_honest_claim_is_backed(cli: Cli, files: Files) -> None:
    r = cli("bundle", files.honest, "--log-key", files.log_key)
    assert r.code == 0, r.out + r.err
    assert "BACKED" in r.out
    assert "NOT BACKED" not in r.out
    for text in (
        "charger-a",
        "solar-s",
        "boundary",
        "220",
        "77.00",
        "0.35 USD/kWh",
        "2026-10-01T00:00:00Z",
        "test.example/log",
        "readings verified",
    ):
        assert text in r.out, text


def test_full_evidence_is_reported_full(cli: Cli, files: Files) -> None:
    r = cli("bundle", files.full, "--log-key", files.log_key, "--json")
    assert r.code == 0
    doc = json.loads(r.out)
    # a v1 bundle whose readings run from reading 1 to one after the period: full evidence
    assert [a["evidence"] for a in doc["assets"]] == ["full"] * 3
    assert doc["evidence"]["declared"] is None
    assert doc["evidence"]["format"] == "iot-attest-evidence/v1"
    assert doc["stats"]["readings_verified"] == 78
    # a v1 claim entry: whether the energy is claimed twice is not in the bundle, said so
    assert [f["code"] for f in doc["findings"]] == ["claim_chain_v1"]


def test_an_overclaim_is_valid_but_not_backed(cli: Cli, files: Files) -> None:
    r = cli("bundle", files.overclaim, "--log-key", files.log_key)
    assert r.code == 1
    assert "NOT BACKED" in r.out
    assert "revenue_overclaimed" in r.out
    assert "77.01" in r.out


def test_the_key_may_be_given_as_a_string(cli: Cli, files: Files) -> None:
    key = files.log_key.read_text().strip()
    assert cli("bundle", files.honest, "--log-key", key).code == 0
    padded = files.dir / "padded-key.txt"
    padded.write_text(f"\n  {key}  \n\n")
    assert cli("bundle", files.honest, "--log-key", padded).code == 0


def test_another_log_key_makes_the_evidence_invalid(cli: Cli, files: Files) -> None:
    r = cli("bundle", files.honest, "--log-key", files.other_key, "--json")
    assert r.code == 2
    doc = json.loads(r.out)
    assert doc["verdict"] == "invalid"
    assert doc["error"]["code"] == "no_known_signature"
    r = cli("bundle", files.honest, "--log-key", files.other_key)
    assert r.code == 2
    assert "INVALID EVIDENCE" in r.out
    assert "[no_known_signature]" in r.out


def test_a_v2_bundle_relabelled_v1_is_invalid(cli: Cli, files: Files, tmp_path: Path) -> None:
    """The format member is not signed; a v1 bundle whose claim entry is v2 (which only a v2
    gateway writes, in v2 bundles) is invalid evidence, exit code 2."""
    doc = json.loads(files.honest.read_bytes())
    doc["format"] = "iot-attest-evidence/v1"
    del doc["evidence"]
    path = tmp_path / "relabelled.json"
    path.write_text(json.dumps(doc))
    r = cli("bundle", path, "--log-key", files.log_key, "--json")
    assert r.code == 2
    assert json.loads(r.out)["error"]["code"] == "format_mismatch"


def test_a_truncated_or_garbled_bundle_is_invalid(cli: Cli, files: Files, tmp_path: Path) -> None:
    data = files.honest.read_bytes()
    for n, content in enumerate([data[: len(data) // 2], data[:-3], b"", b"\xff\xfe", b"not json"]):
        path = tmp_path / f"broken-{n}.json"
        path.write_bytes(content)
        r = cli("bundle", path, "--log-key", files.log_key, "--json")
        assert r.code == 2, content[:20]
        doc = json.loads(r.out)
        assert doc["error"]["code"] == "bad_json"
        assert doc["bundle"]["bytes"] == len(content)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bundle", "{dir}/missing.json", "--log-key", "{key}"], "no such file"),
        (["bundle", "{dir}", "--log-key", "{key}"], "is a directory"),
        (["bundle", "{bundle}", "--log-key", "{dir}/missing-key.txt"], "neither an existing file"),
        (["bundle", "{bundle}", "--log-key", "name+nothex+AAAA"], "bad_key_string"),
        (["bundle", "{bundle}", "--log-key", "{bundle}"], "not a valid verifier key"),
        (["bundle", "{bundle}"], "required: --log-key"),
        (["bundle", "{bundle}", "--log-key", "{key}", "--frobnicate"], "unrecognized arguments"),
        (["bundle", "{bundle}", "--log-key", "{key}", "--min-witnesses", "-1"], "negative"),
        (["bundle", "{bundle}", "--log-key", "{key}", "--min-witnesses", "1"], "more cosignatures"),
        (
            ["bundle", "{bundle}", "--log-key", "{key}", "--html", "{dir}/no/such/dir/r.html"],
            "does not exist",
        ),
        (["bundle", "{bundle}", "--log-key", "{key}", "--witness-key", "{key}"], "bad_key_type"),
        (["frobnicate"], "invalid choice"),
        ([], "usage"),
    ],
)
def test_usage_errors_exit_3(cli: Cli, files: Files, argv: list[str], message: str) -> None:
    values = {"dir": str(files.dir), "key": str(files.log_key), "bundle": str(files.honest)}
    r = cli(*[a.format(**values) for a in argv])
    assert r.code == 3, r.err
    assert message in r.err
    assert r.out == ""
    assert "Traceback" not in r.err


def test_help_exits_0(cli: Cli) -> None:
    for argv in (
        [],
        ["bundle"],
        ["checkpoint"],
        ["inclusion"],
        ["consistency"],
        ["monitor"],
        ["witness"],
        ["witness-keygen"],
    ):
        r = cli(*argv, "--help")
        assert r.code == 0
        assert "usage: python -m verifier" in r.out
        assert "exit code" in r.out


def test_the_json_report(cli: Cli, files: Files) -> None:
    r = cli("bundle", files.honest, "--log-key", files.log_key, "--json")
    assert r.code == 0
    doc = json.loads(r.out)  # exactly one JSON document on stdout
    assert doc["format"] == "iot-attest-report/v1"
    assert doc["verdict"] == "backed"
    assert doc["exit_code"] == 0
    assert doc["log"]["key"] == files.fleet.log.key.to_string()
    assert doc["log"]["key_id"] == files.fleet.log.key.key_id.hex()
    cp = doc["checkpoint"]
    assert cp["origin"] == "test.example/log"
    assert cp["time_utc"] == "2026-10-02T00:13:20Z"
    assert cp["witnesses"] == []
    claim = doc["claim"]
    assert claim["issuer"] == "issuer-1"
    assert claim["period"] == {
        "start_ms": 1_790_812_800_000, "end_ms": 1_790_899_200_000,
        "start": "2026-10-01T00:00:00Z", "end": "2026-10-02T00:00:00Z",
    }  # fmt: skip
    assert claim["tariff"]["description"] == "0.35 USD/kWh"
    assert (claim["claimed_energy_kwh"], claim["claimed_amount"]) == ("220", "77.00")
    assert doc["attested"] == {
        "energy_kwh": "220", "energy_mwh": 220 * KWH, "revenue": "77.00", "revenue_exact": "77.00",
        "currency": "USD", "energy_covered": True, "revenue_covered": True,
    }  # fmt: skip
    assets = {a["asset_id"]: a for a in doc["assets"]}
    assert list(assets) == ["charger-a", "charger-b", "solar-s"]
    a = assets["charger-a"]
    assert (a["kind"], a["readings_counted"], a["evidence"], a["energy_kwh"], a["revenue"]) == (
        "charger", 2, "boundary", "92", "32.20",
    )  # fmt: skip
    assert a["devices"][0]["device_id"] == "dev-a"
    assert a["series"][-1][1] == 92 * KWH
    assert {f["code"] for f in doc["findings"]} == {"sequence_gaps"}
    assert doc["summary"] == {"fatal": 0, "warning": 0, "info": 3}
    assert doc["stats"]["readings_verified"] == 6
    assert doc["stats"]["entries"] == 10
    assert doc["bundle"]["file"] == str(files.honest)


def test_the_json_report_of_an_overclaim_names_the_finding(cli: Cli, files: Files) -> None:
    doc = json.loads(cli("bundle", files.overclaim, "--log-key", files.log_key, "--json").out)
    assert (doc["verdict"], doc["exit_code"]) == ("not_backed", 1)
    assert doc["findings"][0]["severity"] == "fatal"  # fatal first
    assert doc["findings"][0]["code"] == "revenue_overclaimed"
    assert doc["attested"]["revenue_covered"] is False
    assert doc["summary"]["fatal"] == 1


def test_the_html_report(cli: Cli, files: Files, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    r = cli("bundle", files.full, "--log-key", files.log_key, "--html", page)
    assert r.code == 0
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert html.count("<svg") == 3  # one chart per asset
    assert "<polyline" in html
    assert "BACKED" in html
    assert "77.00" in html
    assert "charger-a" in html
    # self-contained: no scripts, no external resources
    assert "<script" not in html
    assert "src=" not in html
    assert "<link" not in html
    assert re.findall(r"https?://[^\"' ]+", html) == ["http://www.w3.org/2000/svg"] * 3

    invalid = tmp_path / "invalid.html"
    r = cli("bundle", files.honest, "--log-key", files.other_key, "--html", invalid, "--json")
    assert r.code == 2
    assert "INVALID EVIDENCE" in invalid.read_text()
    assert json.loads(r.out)["verdict"] == "invalid"


def test_untrusted_text_is_escaped_in_html() -> None:
    from verifier.html import asset_chart, render_html

    doc = {
        "verdict": "invalid", "exit_code": 2, "generated_at": "now",
        "bundle": {"file": "<script>alert(1)</script>"},
        "log": {"key": "k", "key_id": "00", "fingerprint": "f"},
        "error": {"code": "x", "message": "<img src=x>"},
    }  # fmt: skip
    html = render_html(doc)
    assert "<script>" not in html
    assert "<img" not in html
    chart = asset_chart({"asset_id": "a<b", "energy_kwh": "0", "series": []}, 0, 1000)
    assert "a&lt;b" in chart
    assert "no reading in the period" in chart


def test_witness_cosignatures_can_be_required(cli: Cli, files: Files, tmp_path: Path) -> None:
    bundle = parse_bundle(files.honest.read_bytes())
    checkpoint = parse_checkpoint_body(parse_note(bundle.checkpoint).text)
    signer = seeded_signer("witness one")
    witness = WitnessKey.from_public_key("witness.example", signer.public_key)
    line = cosign_checkpoint(checkpoint, "witness.example", signer, 1_790_900_100)
    cosigned = tmp_path / "cosigned.json"
    cosigned.write_bytes(
        encode_bundle(
            Bundle(
                add_signature_lines(bundle.checkpoint, [line]),
                bundle.claim_index,
                bundle.entries,
                bundle.proof,
                bundle.evidence,
            )
        )
    )
    key_file = tmp_path / "witness.pub"
    key_file.write_text(witness.to_string() + "\n")

    r = cli("bundle", cosigned, "--log-key", files.log_key, "--witness-key", key_file, "--json")
    assert r.code == 0
    assert json.loads(r.out)["checkpoint"]["witnesses"] == [
        {"name": "witness.example", "key_id": witness.key_id.hex(), "time": 1_790_900_100,
         "time_utc": "2026-10-02T00:15:00Z"},
    ]  # fmt: skip
    r = cli("bundle", cosigned, "--log-key", files.log_key, "--witness-key", witness.to_string())
    assert r.code == 0
    assert "witness.example" in r.out

    # the same bundle without the cosignature does not satisfy the auditor's policy
    r = cli("bundle", files.honest, "--log-key", files.log_key, "--witness-key", key_file, "--json")
    assert r.code == 2
    assert json.loads(r.out)["error"]["code"] == "not_enough_witnesses"
    # unless the auditor asks for none
    r = cli(
        "bundle", files.honest, "--log-key", files.log_key, "--witness-key", key_file, "--min-witnesses", "0"
    )
    assert r.code == 0


def test_progress_is_shown_on_a_terminal(cli: Cli, files: Files, monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    r = cli("bundle", files.full, "--log-key", files.log_key)
    assert r.code == 0
    assert "readings" in terminal.getvalue()


# --- tamper evidence: changing any single value of a real bundle ------------------------------


def test_changing_any_single_value_makes_the_bundle_invalid(cli: Cli, files: Files, tmp_path: Path) -> None:
    doc = json.loads(files.honest.read_bytes())
    path = tmp_path / "tampered.json"
    codes: set[str] = set()
    tried = 0
    for change, value in _mutations(doc):
        path.write_text(json.dumps(_apply(doc, change, value)))
        r = cli("bundle", path, "--log-key", files.log_key, "--json")
        assert r.code == 2, (change, value, r.out[:500])
        report = json.loads(r.out)
        error = report["error"]
        where = f"{change} -> {str(value)[:60]}: {error}"
        assert report["verdict"] == "invalid", where
        assert re.fullmatch(r"[a-z0-9_]+", error["code"]), where
        assert error["code"] not in {"error", "internal_error"}, where
        assert len(error["message"]) >= 20, where
        codes.add(error["code"])
        tried += 1
    assert tried >= 250
    # many different failures are named, not one catch-all
    assert {"bad_signature", "root_mismatch", "bad_base64", "bad_format", "entry_order"} <= codes, codes


def test_a_tampered_bundle_names_what_broke_on_the_terminal(cli: Cli, files: Files, tmp_path: Path) -> None:
    doc = json.loads(files.honest.read_bytes())
    doc["checkpoint"] = doc["checkpoint"].replace("\n82\n", "\n81\n")
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(doc))
    r = cli("bundle", path, "--log-key", files.log_key)
    assert r.code == 2
    assert "INVALID EVIDENCE" in r.out
    assert "[bad_signature]" in r.out
    assert "does not verify" in r.out


# --- as a real process ----------------------------------------------------------------------


def test_as_a_process(files: Files, tmp_path: Path) -> None:
    r = run_process("bundle", files.honest, "--log-key", files.log_key)
    assert r.code == 0, r.err
    assert "BACKED" in r.out
    r = run_process("bundle", files.overclaim, "--log-key", files.log_key, "--json")
    assert r.code == 1
    assert json.loads(r.out)["verdict"] == "not_backed"
    truncated = tmp_path / "truncated.json"
    truncated.write_bytes(files.honest.read_bytes()[:700])
    r = run_process("bundle", truncated, "--log-key", files.log_key, "--json")
    assert r.code == 2
    assert json.loads(r.out)["error"]["code"] == "bad_json"
    assert r.err == ""
    r = run_process("bundle", tmp_path / "missing.json", "--log-key", files.log_key)
    assert (r.code, r.out) == (3, "")
    assert "no such file" in r.err
    assert "Traceback" not in r.err
    r = run_process("bundle", "--no-such-option")
    assert r.code == 3
    assert "Traceback" not in r.err


# --- evidence kinds: v2 bundles, --require-full, and which checks ran on which evidence -------


def _v2(files: Files, name: str, evidence: EvidenceKind) -> Path:
    fleet = files.fleet
    claim_index = fleet.claim_index(*HONEST)
    indices = fleet.full() if evidence is EvidenceKind.FULL else fleet.boundary(claim_index)
    path = files.dir / name
    path.write_bytes(fleet.log.bundle_bytes(claim_index, indices, evidence))
    return path


def test_every_output_says_which_checks_ran_on_which_evidence(cli: Cli, files: Files, tmp_path: Path) -> None:
    boundary = _v2(files, "boundary-v2.json", EvidenceKind.BOUNDARY)
    doc = json.loads(cli("bundle", boundary, "--log-key", files.log_key, "--json").out)
    assert doc["verdict"] == "backed"
    assert doc["evidence"] | {"summary": ""} == {
        "format": "iot-attest-evidence/v2", "declared": "boundary", "require_full": False,
        "full_devices": 0, "boundary_devices": 3, "insufficient": False, "summary": "",
        "require_meter_signed": False,
    }  # fmt: skip
    checks = {c["check"]: c for c in doc["checks"]}
    assert checks["night_production"] | {"description": ""} == {
        "check": "night_production", "description": "", "on_full": "every interval",
        "on_boundary": "between the boundary readings only", "full_devices": 0, "boundary_devices": 3,
    }  # fmt: skip
    assert checks["chain_break"]["on_boundary"] == "not run"
    assert {d["evidence"] for a in doc["assets"] for d in a["devices"]} == {"boundary"}
    r = cli("bundle", boundary, "--log-key", files.log_key, "--html", tmp_path / "r.html")
    assert "Checks run on which evidence" in r.out
    assert "boundary evidence" in r.out
    page = (tmp_path / "r.html").read_text()
    assert "which checks ran on which" in page
    assert "between the boundary readings only (3 devices)" in page

    full = json.loads(cli("bundle", _v2(files, "full-v2.json", EvidenceKind.FULL), "--log-key", files.log_key,
                          "--json").out)  # fmt: skip
    assert full["verdict"] == "backed"
    assert (full["evidence"]["declared"], full["evidence"]["full_devices"]) == ("full", 3)
    assert all(c["full_devices"] == 3 and c["boundary_devices"] == 0 for c in full["checks"])


@pytest.mark.parametrize("v2", [True, False], ids=["v2", "v1"])
def test_require_full_makes_boundary_evidence_insufficient(cli: Cli, files: Files, v2: bool) -> None:
    boundary = _v2(files, "boundary-v2.json", EvidenceKind.BOUNDARY) if v2 else files.honest
    assert cli("bundle", boundary, "--log-key", files.log_key).code == 0
    r = cli("bundle", boundary, "--log-key", files.log_key, "--require-full")
    assert r.code == 1, r.out
    assert "NOT BACKED" in r.out
    assert "--require-full: 3 device(s) have boundary evidence, which is insufficient" in " ".join(
        r.out.split()
    )
    doc = json.loads(cli("bundle", boundary, "--log-key", files.log_key, "--require-full", "--json").out)
    assert doc["exit_code"] == 1
    assert doc["evidence"]["insufficient"] is True
    assert [f["code"] for f in doc["findings"] if f["severity"] == "fatal"] == ["evidence_insufficient"] * 3
    full = _v2(files, "full-v2.json", EvidenceKind.FULL) if v2 else files.full
    r = cli("bundle", full, "--log-key", files.log_key, "--require-full", "--json")
    assert r.code == 0, r.out
    assert json.loads(r.out)["evidence"]["insufficient"] is False
