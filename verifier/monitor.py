"""Following a live log: the ``monitor`` and ``witness`` commands.

Each round fetches ``GET {gateway}/v1/log/checkpoint``, verifies it with the log
key and compares it with the last accepted checkpoint (:mod:`verifier.follow`);
when the tree grew it fetches ``GET /v1/log/proof/consistency?from=M&to=N`` and
verifies it.  A consistent checkpoint becomes the accepted one
(:class:`verifier.state.StateDir`).  An alert (fork, rollback, split view, bad
signature) saves the evidence and ends the run with exit code 2.  Network
trouble is not an alert: it is logged and retried with back-off (with
``--once``, exit code 4).

A witness also cosigns every checkpoint it accepted (cosignature/v1, time =
now), stores the cosigned note and, with ``--submit``, posts it to
``POST {gateway}/v1/log/cosignatures``.  The checkpoint is accepted (written to
disk) *before* it is cosigned, so a crash can never lead the witness to cosign
two inconsistent trees.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

import httpx

from attest_core.checkpoint import SignedCheckpoint, add_signature_lines
from attest_core.errors import AttestError
from attest_core.note import VerifierKey
from verifier.claimwatch import ClaimWatch
from verifier.errors import ExitCode, GatewayUnreachable
from verifier.follow import Alert, AlertKind, Step, check_growth, compare, needs_proof, open_received
from verifier.proofs import ConsistencyProof, parse_consistency_proof
from verifier.state import StateDir
from verifier.witnesskey import WitnessSigner

MAX_CHECKPOINT_BYTES = 64 * 1024
MAX_PROOF_BYTES = 1024 * 1024
MAX_BACKOFF_S = 300.0
HTTP_TIMEOUT_S = 10.0


class Log:
    """Timestamped lines on stderr: ``2026-10-01T12:00:00Z monitor INFO message``."""

    def __init__(self, stream: TextIO, name: str) -> None:
        self.stream = stream
        self.name = name

    def __call__(self, level: str, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.stream.write(f"{stamp} {self.name} {level} {message}\n")
        self.stream.flush()

    def info(self, message: str) -> None:
        self("INFO", message)

    def warning(self, message: str) -> None:
        self("WARNING", message)

    def error(self, message: str) -> None:
        self("ERROR", message)

    def alert(self, message: str) -> None:
        self("ALERT", message)


@dataclass
class Options:
    gateway: str
    log_key: VerifierKey
    state: StateDir
    interval: float = 10.0
    once: bool = False
    witness: WitnessSigner | None = None
    submit: bool = False
    claims: bool = False
    """Also read every entry and check every claim (verifier.claimwatch)."""


def _error_body(response: httpx.Response) -> str:
    """The ``{"error": {"code", "message"}}`` of a gateway error answer, or a short excerpt."""
    try:
        doc = json.loads(response.read()[:4096])
        err = doc["error"]
        return f"[{err['code']}] {err['message']}"
    except (ValueError, KeyError, TypeError, httpx.HTTPError):
        return "(no error details)"


class Follower:
    """One monitor or witness over one gateway; :meth:`round` does one round."""

    def __init__(self, options: Options, client: httpx.Client, log: Log) -> None:
        self.options = options
        self.client = client
        self.log = log
        self.base = options.gateway.rstrip("/")
        self.accepted = options.state.load()
        self.watch = ClaimWatch(options.state.path, self._get, log.info) if options.claims else None

    def _get(self, path: str, limit: int) -> bytes:
        url = self.base + path
        try:
            with self.client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise GatewayUnreachable(
                        f"GET {url}: HTTP {response.status_code} {_error_body(response)}"
                    )
                data = bytearray()
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > limit:
                        raise GatewayUnreachable(f"GET {url}: the answer is larger than {limit} bytes")
                return bytes(data)
        except httpx.HTTPError as exc:
            raise GatewayUnreachable(f"GET {url}: {type(exc).__name__}: {exc}") from None

    def _alert(self, alert: Alert, received: bytes, proof: bytes | None) -> Alert:
        files = {"received-checkpoint.txt": received}
        if self.accepted is not None:
            files["accepted-checkpoint.txt"] = self.accepted.note_text.encode("utf-8")
        if proof is not None:
            files["consistency-proof.json"] = proof
        report = "\n".join(
            [
                f"ALERT {alert.kind.value}",
                f"detected: {datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}",
                f"gateway: {self.base}",
                f"log key: {self.options.log_key.to_string()}",
                "",
                alert.message,
                "",
                "Files: accepted-checkpoint.txt is the checkpoint this monitor had verified and accepted;",
                "received-checkpoint.txt is what the log served instead; consistency-proof.json (if present)",
                "is the proof the log gave.  Anyone can re-check them with the log key:",
                "  python -m verifier checkpoint accepted-checkpoint.txt --log-key KEY",
                "  python -m verifier consistency --log-key KEY --old accepted-checkpoint.txt "
                "--new received-checkpoint.txt --proof consistency-proof.json",
                "Two checkpoints signed by the log that no consistency proof can connect prove that the log",
                "showed different histories.  Keep these files and report them to the log operator and to",
                "the auditors and token holders who rely on this log.",
                "",
            ]
        )
        where = self.options.state.save_evidence(alert.kind.value, report, files)
        self.log.alert(f"{alert.message}")
        self.log.alert(f"evidence saved in {where}")
        return alert

    def round(self) -> Alert | None:
        """Fetch, verify and accept the latest checkpoint; an :class:`Alert` if the log misbehaved.

        Raises :class:`GatewayUnreachable` on network trouble (nothing is changed then).
        """
        received = self._get("/v1/log/checkpoint", MAX_CHECKPOINT_BYTES)
        opened = open_received(received, self.options.log_key)
        if isinstance(opened, Alert):
            return self._alert(opened, received, None)
        new = opened
        step = compare(self.accepted, new)
        if isinstance(step, Alert):
            return self._alert(step, received, None)
        size = new.checkpoint.size
        if step is Step.UNCHANGED:
            self.log.info(f"checkpoint unchanged: size {size}")
        else:
            if step is Step.FIRST:
                self.log.info(
                    f"first checkpoint accepted (trust on first use): size {size} "
                    f"root {new.checkpoint.root_hash.hex()}"
                )
            else:
                assert self.accepted is not None
                old = self.accepted.checkpoint.size
                raw_proof: bytes | None = None
                proof: ConsistencyProof | None = None
                if needs_proof(self.accepted, new):
                    raw_proof = self._get(f"/v1/log/proof/consistency?from={old}&to={size}", MAX_PROOF_BYTES)
                    try:
                        proof = parse_consistency_proof(raw_proof)
                    except AttestError as exc:
                        alert = Alert(
                            AlertKind.FORK,
                            f"fork: the log answered the consistency proof from {old} to {size} with a "
                            f"malformed proof [{exc.code}]: {exc}",
                        )
                        return self._alert(alert, received, raw_proof)
                failed = check_growth(self.accepted, new, proof)
                if failed is not None:
                    return self._alert(failed, received, raw_proof)
                self.log.info(f"consistent growth from size {old} to {size}: accepted")
            self.options.state.accept(new)
            self.accepted = new
        if self.options.witness is not None and self.accepted is not None:
            self._witness(self.accepted)
        if self.watch is not None and self.accepted is not None:
            before = self.watch.size
            found = self.watch.scan(self.accepted)
            for each in found:  # every one: the scan's state moves past all of them
                where = self.options.state.save_evidence(
                    f"{AlertKind.CLAIMS.value}-{each.alert.code}", each.report, each.files
                )
                self.log.alert(f"[{each.alert.code}] {each.alert.message}")
                self.log.alert(f"evidence saved in {where}")
            if found:
                return Alert(AlertKind.CLAIMS, found[0].alert.message)
            if self.watch.size > before:
                self.log.info(
                    f"entries {before}..{self.watch.size - 1} read: {len(self.watch.live.claims)} live claim(s), "
                    "no double claim"
                )
        return None

    def _witness(self, signed: SignedCheckpoint) -> None:
        witness = self.options.witness
        assert witness is not None
        state = self.options.state
        stored = state.cosigned_note(signed)
        if stored is None:
            now = int(time.time())
            line = witness.cosign(signed.checkpoint, now)
            note = add_signature_lines(signed.note_text, [line])
            path = state.save_cosigned(signed, note)
            self.log.info(f"cosigned size {signed.checkpoint.size} as {witness.name}: {path}")
            stored = note.encode("utf-8")
        if self.options.submit and not state.submitted(signed):
            self._submit(signed, stored)

    def _submit(self, signed: SignedCheckpoint, note: bytes) -> None:
        url = self.base + "/v1/log/cosignatures"
        try:
            response = self.client.post(
                url, content=note, headers={"Content-Type": "text/plain; charset=utf-8"}
            )
        except httpx.HTTPError as exc:
            raise GatewayUnreachable(f"POST {url}: {type(exc).__name__}: {exc}") from None
        if response.status_code in (200, 201, 202, 204):
            self.options.state.mark_submitted(signed, f"HTTP {response.status_code}\n")
            self.log.info(
                f"cosignature of size {signed.checkpoint.size} submitted: HTTP {response.status_code}"
            )
            return
        raise GatewayUnreachable(
            f"POST {url}: the gateway refused the cosignature of size {signed.checkpoint.size}: "
            f"HTTP {response.status_code} {_error_body(response)}"
        )


def run(
    options: Options,
    log: Log,
    *,
    rounds: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    client: httpx.Client | None = None,
) -> ExitCode:
    """Follow the log until an alert (2), Ctrl-C (130), ``--once`` (0 or 4), or ``rounds`` rounds (0)."""
    own = client is None
    http = httpx.Client(timeout=HTTP_TIMEOUT_S, follow_redirects=False) if client is None else client
    try:
        with options.state:
            follower = Follower(options, http, log)
            what = "witness" if options.witness else "monitor"
            accepted = follower.accepted
            log.info(
                f"{what} of {options.log_key.name} at {follower.base}, state {options.state.path}, "
                + (
                    "no checkpoint accepted yet"
                    if accepted is None
                    else f"accepted size {accepted.checkpoint.size}"
                )
            )
            failures = 0
            done = 0
            while True:
                try:
                    alert = follower.round()
                except GatewayUnreachable as exc:
                    if options.once:
                        log.error(f"{exc}")
                        return ExitCode.UNREACHABLE
                    failures += 1
                    delay = min(
                        options.interval * 2 ** min(failures, 16), max(options.interval, MAX_BACKOFF_S)
                    )
                    log.warning(f"{exc}; retrying in {delay:g} s")
                else:
                    if alert is not None:
                        return ExitCode.INVALID
                    failures = 0
                    delay = options.interval
                done += 1
                if options.once or (rounds is not None and done >= rounds):
                    return ExitCode.OK
                sleep(delay)
    except KeyboardInterrupt:
        log.info("stopped")
        return ExitCode.INTERRUPTED
    finally:
        if own:
            http.close()
