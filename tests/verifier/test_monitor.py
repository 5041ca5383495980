"""``monitor`` and ``witness`` against a real HTTP server that serves a MemoryLog as the gateway does."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from attest_core.checkpoint import Checkpoint, WitnessKey, open_checkpoint, sign_checkpoint
from attest_core.merkle import root_from_leaf_hashes
from attest_core.note import NoteSigner, parse_note
from tests.support import MemoryLog, seeded_signer
from tests.verifier.conftest import Cli, run_process
from tests.verifier.loghttp import LogServer
from verifier import monitor
from verifier.errors import ExitCode
from verifier.inputs import load_log_key
from verifier.state import StateDir


def grow(log: MemoryLog, n: int, tag: bytes = b"entry") -> MemoryLog:
    for _ in range(n):
        log.append(tag + b" " + str(len(log.entries)).encode())
    return log


def fork_of(log: MemoryLog, keep: int, size: int) -> MemoryLog:
    """The same log key, the same first ``keep`` entries, then another history."""
    other = MemoryLog(log.origin)
    other.entries, other.leaves = list(log.entries[:keep]), list(log.leaves[:keep])
    return grow(other, size - keep, b"rewritten")


@pytest.fixture
def server() -> Iterator[LogServer]:
    with LogServer(grow(MemoryLog(), 8)) as s:
        yield s


@pytest.fixture
def key_file(tmp_path: Path, server: LogServer) -> Path:
    path = tmp_path / "log-key.txt"
    path.write_text(server.log.key.to_string() + "\n")
    return path


def accepted_size(state: Path) -> int:
    note = parse_note((state / "checkpoint.txt").read_text())
    return int(note.text.split("\n")[1])


def evidence(state: Path) -> list[Path]:
    base = state / "evidence"
    return sorted(base.iterdir()) if base.exists() else []


def watch(cli: Cli, server: LogServer, key: Path, state: Path, *extra: str | Path) -> tuple[int, str]:
    r = cli("monitor", "--gateway", server.url, "--log-key", key, "--state", state, "--once", *extra)
    assert r.out == ""
    assert "Traceback" not in r.err
    return r.code, r.err


def test_consistent_growth_is_accepted_and_survives_restarts(
    cli: Cli, server: LogServer, key_file: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    code, err = watch(cli, server, key_file, state)
    assert code == 0, err
    assert "first checkpoint accepted (trust on first use): size 8" in err
    assert accepted_size(state) == 8
    assert not any("consistency" in r for r in server.requests)

    grow(server.log, 13)
    code, err = watch(cli, server, key_file, state)  # a new process would start exactly like this
    assert code == 0, err
    assert "consistent growth from size 8 to 21: accepted" in err
    assert "GET /v1/log/proof/consistency?from=8&to=21" in server.requests
    assert accepted_size(state) == 21

    code, err = watch(cli, server, key_file, state)
    assert (code, accepted_size(state)) == (0, 21)
    assert "checkpoint unchanged: size 21" in err
    # log lines carry a UTC timestamp
    assert err.split(" ", 1)[0].endswith("Z")
    assert " monitor INFO " in err
    assert evidence(state) == []
    assert not list(state.glob(".*.tmp"))


def test_growth_from_the_empty_tree_needs_no_proof(
    cli: Cli, server: LogServer, key_file: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    server.size = 0
    assert watch(cli, server, key_file, state)[0] == 0
    assert accepted_size(state) == 0
    server.size = None
    code, err = watch(cli, server, key_file, state)
    assert code == 0, err
    assert accepted_size(state) == 8
    assert not any("consistency" in r for r in server.requests)


def test_a_fork_is_detected_and_both_checkpoints_saved(
    cli: Cli, server: LogServer, key_file: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    assert watch(cli, server, key_file, state)[0] == 0
    accepted_note = (state / "checkpoint.txt").read_text()
    server.log = fork_of(server.log, keep=5, size=12)  # same key, entry 5 rewritten, and grown
    code, err = watch(cli, server, key_file, state)
    assert code == 2
    assert "ALERT fork" in err
    assert "evidence saved in" in err
    [saved] = evidence(state)
    assert saved.name.endswith("-fork")
    files = {p.name for p in saved.iterdir()}
    assert files == {
        "alert.txt",
        "accepted-checkpoint.txt",
        "received-checkpoint.txt",
        "consistency-proof.json",
    }
    # both notes are signed by the log: evidence anyone can check
    key = server.log.key
    old = open_checkpoint((saved / "accepted-checkpoint.txt").read_bytes(), key)
    new = open_checkpoint((saved / "received-checkpoint.txt").read_bytes(), key)
    assert (old.checkpoint.size, new.checkpoint.size) == (8, 12)
    assert old.note_text == accepted_note
    assert "fork" in (saved / "alert.txt").read_text()
    # the state is unchanged, so the alert is raised again after a restart
    assert accepted_size(state) == 8
    assert watch(cli, server, key_file, state)[0] == 2
    assert len(evidence(state)) == 2


def test_the_saved_evidence_rechecks_with_the_consistency_command(
    cli: Cli, server: LogServer, key_file: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    assert watch(cli, server, key_file, state)[0] == 0
    server.log = fork_of(server.log, keep=3, size=10)
    assert watch(cli, server, key_file, state)[0] == 2
    [saved] = evidence(state)
    r = cli(
        "consistency",
        "--log-key",
        key_file,
        "--old",
        saved / "accepted-checkpoint.txt",
        "--new",
        saved / "received-checkpoint.txt",
        "--proof",
        saved / "consistency-proof.json",
    )
    assert r.code == 2


def test_a_rollback_is_detected(cli: Cli, server: LogServer, key_file: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert watch(cli, server, key_file, state)[0] == 0
    server.size = 6
    code, err = watch(cli, server, key_file, state)
    assert code == 2
    assert "ALERT rollback" in err
    assert "size 6" in err
    [saved] = evidence(state)
    assert saved.name.endswith("-rollback")
    assert (
        open_checkpoint((saved / "received-checkpoint.txt").read_bytes(), server.log.key).checkpoint.size == 6
    )
    assert accepted_size(state) == 8


def test_a_split_view_is_detected(cli: Cli, server: LogServer, key_file: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert watch(cli, server, key_file, state)[0] == 0
    server.log = fork_of(server.log, keep=4, size=8)  # same size, another root
    code, err = watch(cli, server, key_file, state)
    assert code == 2
    assert "ALERT split view" in err
    [saved] = evidence(state)
    assert saved.name.endswith("-split_view")
    roots = {
        open_checkpoint((saved / f).read_bytes(), server.log.key).checkpoint.root_hash
        for f in ("accepted-checkpoint.txt", "received-checkpoint.txt")
    }
    assert len(roots) == 2


def test_a_bad_signature_is_detected(cli: Cli, server: LogServer, key_file: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert watch(cli, server, key_file, state)[0] == 0
    grow(server.log, 2)
    # an impostor's key with the log's name
    impostor = NoteSigner(server.log.origin, seeded_signer("impostor"))
    cp = Checkpoint(server.log.origin, 10, root_from_leaf_hashes(server.log.leaves), 1_790_900_000)
    server.note = sign_checkpoint(cp, impostor)
    code, err = watch(cli, server, key_file, state)
    assert code == 2
    assert "ALERT" in err
    assert "no_known_signature" in err
    # the real key's signature line over an altered body
    genuine = server.log.checkpoint()
    server.note = genuine.replace("\n10\n", "\n11\n", 1)
    code, err = watch(cli, server, key_file, state)
    assert code == 2
    assert "bad_signature" in err
    saved = evidence(state)
    assert len(saved) == 2
    assert all("-bad_checkpoint" in p.name for p in saved)
    assert accepted_size(state) == 8
    server.note = None  # the log behaves again
    assert watch(cli, server, key_file, state)[0] == 0
    assert accepted_size(state) == 10


def test_network_trouble_is_not_an_alert(cli: Cli, server: LogServer, key_file: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    server.outage = 503
    code, err = watch(cli, server, key_file, state)
    assert code == 4
    assert "HTTP 503 [unavailable] the log is down for maintenance" in err
    assert not (state / "checkpoint.txt").exists()
    assert evidence(state) == []

    # nobody listening at all
    r = cli("monitor", "--gateway", "http://127.0.0.1:9", "--log-key", key_file, "--state", state, "--once")
    assert r.code == 4
    assert "ConnectError" in r.err


def test_the_loop_backs_off_and_recovers(server: LogServer, key_file: Path, tmp_path: Path) -> None:
    server.outage = 500
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            server.outage = None
            grow(server.log, 3)

    log_key = load_log_key(str(key_file))
    options = monitor.Options(server.url, log_key, StateDir(tmp_path / "state", log_key), interval=1.5)
    stream = io.StringIO()
    code = monitor.run(options, monitor.Log(stream, "monitor"), rounds=4, sleep=sleep)
    assert code is ExitCode.OK
    assert sleeps == [3.0, 6.0, 1.5]  # back-off doubles, then the normal interval
    assert "retrying in 3 s" in stream.getvalue()
    assert accepted_size(tmp_path / "state") == 11


def test_usage_errors(cli: Cli, server: LogServer, key_file: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert watch(cli, server, key_file, state)[0] == 0
    other = NoteSigner("other.example/log", seeded_signer("other")).verifier_key().to_string()
    r = cli("monitor", "--gateway", server.url, "--log-key", other, "--state", state, "--once")
    assert r.code == 3
    assert "does not verify with this --log-key" in r.err
    with StateDir(state, server.log.key):  # another monitor holds the directory
        r = cli("monitor", "--gateway", server.url, "--log-key", key_file, "--state", state, "--once")
    assert r.code == 3
    assert "in use" in r.err
    r = cli("monitor", "--gateway", "ftp://x", "--log-key", key_file, "--state", state)
    assert r.code == 3
    r = cli("monitor", "--gateway", server.url, "--log-key", key_file, "--state", state, "--interval", "0")
    assert r.code == 3


# --- witness --------------------------------------------------------------------------------


@pytest.fixture
def witness_key(cli: Cli, tmp_path: Path) -> tuple[Path, WitnessKey]:
    path = tmp_path / "witness.key"
    r = cli("witness-keygen", "--name", "witness.example.org", "--out", path)
    assert r.code == 0, r.err
    key = WitnessKey.parse(r.out.strip())
    assert key.name == "witness.example.org"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    return path, key


def witness_argv(
    server: LogServer, key_file: Path, state: Path, witness_key_file: Path
) -> tuple[str | Path, ...]:
    """``witness --submit --once`` against ``server``, keeping its state in ``state``."""
    return (
        "witness",
        "--gateway",
        server.url,
        "--log-key",
        key_file,
        "--state",
        state,
        "--witness-key-file",
        witness_key_file,
        "--submit",
        "--once",
    )


def test_witness_keygen_never_overwrites(cli: Cli, witness_key: tuple[Path, WitnessKey]) -> None:
    path, _ = witness_key
    before = path.read_bytes()
    r = cli("witness-keygen", "--name", "witness.example.org", "--out", path)
    assert r.code == 3
    assert "already exists" in r.err
    assert path.read_bytes() == before
    r = cli("witness-keygen", "--name", "bad name", "--out", path.with_name("other.key"))
    assert r.code == 3


def test_the_witness_cosigns_consistent_checkpoints(
    cli: Cli, server: LogServer, key_file: Path, tmp_path: Path, witness_key: tuple[Path, WitnessKey]
) -> None:
    path, key = witness_key
    state = tmp_path / "witness-state"
    argv = (*witness_argv(server, key_file, state, path), "--name", "witness.example.org")
    r = cli(*argv)
    assert r.code == 0, r.err
    assert len(server.cosignatures) == 1
    signed = open_checkpoint(server.cosignatures[0], server.log.key, witnesses=[key], min_witnesses=1)
    assert signed.checkpoint.size == 8
    assert signed.witness_names == ("witness.example.org",)

    grow(server.log, 5)
    r = cli(*argv)
    assert r.code == 0, r.err
    assert len(server.cosignatures) == 2
    signed = open_checkpoint(server.cosignatures[1], server.log.key, witnesses=[key], min_witnesses=1)
    assert signed.checkpoint.size == 13
    kept = sorted((state / "cosigned").glob("*.txt"))
    assert [p.name.split("-")[0] for p in kept] == ["13", "8"]
    for p in kept:
        open_checkpoint(p.read_bytes(), server.log.key, witnesses=[key], min_witnesses=1)

    # nothing new: no second cosignature of the same checkpoint
    assert cli(*argv).code == 0
    assert len(server.cosignatures) == 2

    # a fork is never cosigned
    server.log = fork_of(server.log, keep=6, size=20)
    r = cli(*argv)
    assert r.code == 2
    assert "ALERT fork" in r.err
    assert len(server.cosignatures) == 2


def test_a_refused_cosignature_is_retried(
    cli: Cli, server: LogServer, key_file: Path, tmp_path: Path, witness_key: tuple[Path, WitnessKey]
) -> None:
    path, _key = witness_key
    state = tmp_path / "witness-state"
    argv = witness_argv(server, key_file, state, path)
    server.cosignature_status = 409
    r = cli(*argv)
    assert r.code == 4
    assert "refused the cosignature of size 8: HTTP 409 [unknown_checkpoint]" in r.err
    assert len(list((state / "cosigned").glob("*.txt"))) == 1  # cosigned and kept all the same
    server.cosignature_status = 200
    assert cli(*argv).code == 0
    assert len(server.cosignatures) == 1
    assert len(list((state / "cosigned").glob("*.submitted"))) == 1


def test_witness_usage_errors(
    cli: Cli, server: LogServer, key_file: Path, tmp_path: Path, witness_key: tuple[Path, WitnessKey]
) -> None:
    path, _ = witness_key
    base = ("witness", "--gateway", server.url, "--log-key", key_file, "--state", tmp_path / "s", "--once")
    r = cli(*base, "--witness-key-file", path, "--name", "someone.else")
    assert r.code == 3
    assert "is not the name in" in r.err
    r = cli(*base, "--witness-key-file", key_file)  # the log's public key is not a witness key
    assert r.code == 3
    assert "PRIVATE+KEY+" in r.err
    r = cli(*base, "--witness-key-file", tmp_path / "missing.key")
    assert r.code == 3
    assert "no such file" in r.err
    os.chmod(path, 0o644)
    r = cli(*base, "--witness-key-file", path)
    assert r.code == 0
    assert "readable by other users" in r.err


def test_monitor_and_witness_as_processes(server: LogServer, key_file: Path, tmp_path: Path) -> None:
    key_path = tmp_path / "w.key"
    r = run_process("witness-keygen", "--name", "w.example", "--out", key_path)
    assert r.code == 0, r.err
    witness = WitnessKey.parse(r.out.strip())
    r = run_process(*witness_argv(server, key_file, tmp_path / "w", key_path))
    assert r.code == 0, r.err
    open_checkpoint(server.cosignatures[0], server.log.key, witnesses=[witness], min_witnesses=1)
    server.size = 5
    r = run_process(
        "monitor", "--gateway", server.url, "--log-key", key_file, "--state", tmp_path / "w", "--once"
    )
    assert r.code == 2
    assert "ALERT rollback" in r.err
