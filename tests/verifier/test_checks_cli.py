"""``checkpoint``, ``inclusion`` and ``consistency``: the building blocks of a step-by-step audit."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from attest_core.checkpoint import WitnessKey, add_signature_lines, cosign_checkpoint, parse_checkpoint_body
from attest_core.entries import ClaimEntry, RevocationEntry, RevokerRole, WithdrawalEntry, encode_entry
from attest_core.merkle import consistency_proof, inclusion_proof
from attest_core.note import NoteSigner, parse_note
from tests.support import T0, MemoryLog, TestDevice, flat_claim, seeded_signer
from tests.verifier.conftest import Cli, run_process
from verifier.checks import describe_entry


def b64(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode() for h in hashes]


class Audit:
    """A log of 21 entries and the files a step-by-step auditor downloads from the gateway."""

    def __init__(self, d: Path) -> None:
        self.dir = d
        self.log = MemoryLog()
        dev = TestDevice("dev-a", "charger-a")
        self.log.enrol(dev)
        for h in range(20):
            self.log.append_reading(dev.reading(1_790_812_800_000 + h * 60_000, h * 1000))
        self.key = d / "log-key.txt"
        self.key.write_text(self.log.key.to_string() + "\n")
        self.old = self.write("old.txt", self.log.checkpoint(13))
        self.new = self.write("new.txt", self.log.checkpoint())

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.dir / name
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
        return path

    def inclusion(self, index: int, size: int | None = None, hashes: list[bytes] | None = None) -> Path:
        size = len(self.log.entries) if size is None else size
        proof = inclusion_proof(index, size, self.log.leaves) if hashes is None else hashes
        return self.write(
            f"inclusion-{index}.json", json.dumps({"index": index, "size": size, "hashes": b64(proof)})
        )

    def consistency(self, m: int, n: int, hashes: list[bytes] | None = None) -> Path:
        proof = consistency_proof(m, n, self.log.leaves) if hashes is None else hashes
        return self.write(f"consistency-{m}-{n}.json", json.dumps({"from": m, "to": n, "hashes": b64(proof)}))


@pytest.fixture
def audit(tmp_path: Path) -> Audit:
    return Audit(tmp_path)


# --- checkpoint ---------------------------------------------------------------------------


def test_a_valid_checkpoint(cli: Cli, audit: Audit) -> None:
    r = cli("checkpoint", audit.new, "--log-key", audit.key)
    assert r.code == 0
    assert "VALID" in r.out
    assert "size 21" in r.out
    assert "test.example/log" in r.out
    doc = json.loads(cli("checkpoint", audit.new, "--log-key", audit.key, "--json").out)
    assert (doc["format"], doc["check"], doc["valid"], doc["exit_code"]) == (
        "iot-attest-check/v1",
        "checkpoint",
        True,
        0,
    )
    assert doc["checkpoint"]["size"] == 21
    assert (
        base64.b64decode(doc["checkpoint"]["root_hash"])
        == parse_checkpoint_body(parse_note(audit.new.read_text()).text).root_hash
    )


def test_an_invalid_checkpoint(cli: Cli, audit: Audit) -> None:
    tampered = audit.write("tampered.txt", audit.new.read_text().replace("\n21\n", "\n22\n"))
    r = cli("checkpoint", tampered, "--log-key", audit.key)
    assert r.code == 2
    assert "[bad_signature]" in r.out
    other = NoteSigner("test.example/log", seeded_signer("impostor")).verifier_key().to_string()
    doc = json.loads(cli("checkpoint", audit.new, "--log-key", other, "--json").out)
    assert (doc["valid"], doc["exit_code"], doc["error"]["code"]) == (False, 2, "no_known_signature")
    garbage = audit.write("garbage.txt", b"\x00\xff not a note")
    assert cli("checkpoint", garbage, "--log-key", audit.key).code == 2
    assert cli("checkpoint", audit.dir / "missing.txt", "--log-key", audit.key).code == 3


def test_a_checkpoint_with_witnesses(cli: Cli, audit: Audit) -> None:
    signers = [seeded_signer(f"w{i}") for i in range(2)]
    keys = [WitnessKey.from_public_key(f"w{i}.example", s.public_key) for i, s in enumerate(signers)]
    cp = parse_checkpoint_body(parse_note(audit.new.read_text()).text)
    line = cosign_checkpoint(cp, "w0.example", signers[0], 1_790_900_000)
    cosigned = audit.write("cosigned.txt", add_signature_lines(audit.new.read_text(), [line]))
    both = ["--witness-key", keys[0].to_string(), "--witness-key", keys[1].to_string()]
    doc = json.loads(
        cli("checkpoint", cosigned, "--log-key", audit.key, *both, "--min-witnesses", "1", "--json").out
    )
    assert doc["valid"]
    assert [w["name"] for w in doc["checkpoint"]["witnesses"]] == ["w0.example"]
    r = cli("checkpoint", cosigned, "--log-key", audit.key, *both, "--json")  # default: all of them
    assert r.code == 2
    assert json.loads(r.out)["error"]["code"] == "not_enough_witnesses"


# --- inclusion ------------------------------------------------------------------------------


def entry_file(audit: Audit, index: int) -> Path:
    return audit.write(f"entry-{index}.bin", audit.log.entries[index])


def inclusion_args(
    audit: Audit,
    index: int,
    *,
    entry: Path | None = None,
    proof: Path | None = None,
    checkpoint: Path | None = None,
    index_text: str | None = None,
) -> tuple[str | Path, ...]:
    """The arguments of ``inclusion`` for entry ``index`` (each part replaceable)."""
    return (
        "inclusion",
        "--log-key",
        audit.key,
        "--checkpoint",
        checkpoint or audit.new,
        "--entry",
        entry or entry_file(audit, index),
        "--index",
        index_text or str(index),
        "--proof",
        proof or audit.inclusion(index),
    )


def consistency_args(audit: Audit, old: Path, new: Path, proof: Path) -> tuple[str | Path, ...]:
    return ("consistency", "--log-key", audit.key, "--old", old, "--new", new, "--proof", proof)


def test_a_valid_inclusion_proof(cli: Cli, audit: Audit) -> None:
    for index in (0, 7, 20):
        args = inclusion_args(audit, index)
        r = cli(*args)
        assert r.code == 0, r.out
        doc = json.loads(cli(*args, "--json").out)
        assert doc["valid"]
        assert doc["entry"]["index"] == index
    assert "enrolment of device dev-a" in doc_for(cli, audit, 0)["entry"]["description"]
    assert "reading 7 of device dev-a" in doc_for(cli, audit, 7)["entry"]["description"]


def doc_for(cli: Cli, audit: Audit, index: int) -> dict[str, object]:
    r = cli(*inclusion_args(audit, index), "--json")
    doc: dict[str, object] = json.loads(r.out)
    return doc


def test_broken_inclusion_proofs(cli: Cli, audit: Audit) -> None:
    def run(entry: Path, index: int, proof: Path, checkpoint: Path | None = None) -> tuple[int, str]:
        r = cli(*inclusion_args(audit, index, entry=entry, proof=proof, checkpoint=checkpoint), "--json")
        doc = json.loads(r.out)
        assert r.code == doc["exit_code"]
        return r.code, doc["error"]["code"] if "error" in doc else ""

    entry7 = entry_file(audit, 7)
    good = inclusion_proof(7, 21, audit.log.leaves)
    assert run(entry_file(audit, 8), 7, audit.inclusion(7)) == (2, "root_mismatch")  # another entry
    assert run(entry7, 8, audit.inclusion(7)) == (2, "proof_mismatch")  # proof for another index
    assert run(entry7, 7, audit.inclusion(7, size=13)) == (2, "proof_mismatch")  # another tree size
    assert run(entry7, 7, audit.inclusion(7, size=13), audit.old) == (0, "")  # ... which that checkpoint has
    flipped = [good[0][:5] + bytes([good[0][5] ^ 1]) + good[0][6:], *good[1:]]
    assert run(entry7, 7, audit.inclusion(7, hashes=flipped)) == (2, "root_mismatch")
    assert run(entry7, 7, audit.inclusion(7, hashes=good[:-1])) == (2, "wrong_proof_length")
    assert run(entry7, 7, audit.write("bad.json", '{"index": 7, "size": 21, "hashes": ["AAAA"]}')) == (
        2,
        "malformed_proof",
    )
    assert run(entry7, 7, audit.write("trunc.json", '{"index": 7, "si')) == (2, "malformed_proof")
    missing = cli(*inclusion_args(audit, 7, entry=entry7, proof=audit.dir / "none.json"))
    assert missing.code == 3
    assert "no such file" in missing.err
    assert cli(*inclusion_args(audit, 7, entry=entry7, index_text="seven")).code == 3


# --- consistency -----------------------------------------------------------------------------


def test_a_valid_consistency_proof(cli: Cli, audit: Audit) -> None:
    r = cli(*consistency_args(audit, audit.old, audit.new, audit.consistency(13, 21)))
    assert r.code == 0, r.out
    assert "extends the log of size 13" in r.out
    same = cli(*consistency_args(audit, audit.new, audit.new, audit.consistency(21, 21)), "--json")
    assert same.code == 0
    assert json.loads(same.out)["valid"]


def test_broken_consistency_proofs(cli: Cli, audit: Audit) -> None:
    def run(old: Path, new: Path, proof: Path) -> tuple[int, str]:
        r = cli(*consistency_args(audit, old, new, proof), "--json")
        doc = json.loads(r.out)
        return r.code, doc["error"]["code"] if "error" in doc else ""

    good = consistency_proof(13, 21, audit.log.leaves)
    assert run(audit.new, audit.old, audit.consistency(13, 21)) == (2, "rollback")
    assert run(audit.old, audit.new, audit.consistency(12, 21)) == (2, "proof_mismatch")
    assert run(audit.old, audit.new, audit.consistency(13, 21, hashes=good[::-1])) == (2, "root1_mismatch")
    assert run(audit.old, audit.new, audit.consistency(13, 21, hashes=good[1:])) == (2, "wrong_proof_length")

    # a fork: another history of the same log key, different from entry 5 on
    fork = MemoryLog()
    fork.entries, fork.leaves = list(audit.log.entries[:5]), list(audit.log.leaves[:5])
    for n in range(16):
        fork.append(b"another history " + bytes([n]))
    forked = audit.write("forked.txt", fork.checkpoint())
    fork_proof = consistency_proof(13, 21, fork.leaves)
    path = audit.write("fork-proof.json", json.dumps({"from": 13, "to": 21, "hashes": b64(fork_proof)}))
    assert run(audit.old, forked, path)[0] == 2
    assert run(audit.old, forked, audit.consistency(13, 21))[0] == 2


def test_checks_as_a_process(audit: Audit) -> None:
    r = run_process(*consistency_args(audit, audit.old, audit.new, audit.consistency(13, 21)), "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["valid"] is True
    r = run_process("inclusion", "--log-key", audit.key, "--checkpoint", audit.new)
    assert r.code == 3
    assert "required" in r.err


def test_v2_entries_are_described() -> None:
    """An auditor checking one entry's inclusion reads what it is, v2 entries included."""
    revocation = RevocationEntry("dev-a", 4, "meter swapped", "op-1", T0, 2, RevokerRole.OPERATOR)
    assert describe_entry(encode_entry(revocation)) == (
        "revocation of device dev-a after reading 4 by op-1 (operator), disowning 2 logged reading(s): "
        "meter swapped"
    )
    withdrawal = WithdrawalEntry("issuer-1", b"\x01" * 32, "filed twice", T0)
    assert (
        describe_entry(encode_entry(withdrawal))
        == f"withdrawal by issuer-1 of the claim {'01' * 32}: filed twice"
    )
    claim = ClaimEntry(flat_claim(("a",)), T0, b"\x02" * 32, (None,))
    assert describe_entry(encode_entry(claim)).endswith(f", superseding the claim {'02' * 32}")
