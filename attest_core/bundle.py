"""Evidence bundles: everything an auditor needs to check a claim offline.

A bundle is one UTF-8 JSON object with exactly these members::

    {
      "format": "iot-attest-evidence/v1",
      "checkpoint": "<signed note: C2SP tlog-checkpoint signed by the log key>",
      "claim_index": 1234,
      "entries": [{"index": 7, "entry": "<base64 entry bytes>"}, ...],
      "proof": ["<base64 hash>", ...]
    }

``entries`` holds the claim entry and every entry the evaluation needs
(enrolments, key rotations and revocations of the claimed assets' devices,
and their readings), sorted by log index with no index twice.  ``proof`` is
one multi-leaf inclusion proof of all those entries into the checkpoint's tree
(:func:`attest_core.merkle.verify_multi_inclusion`): hashes are shared, never
repeated.

Nothing in a bundle goes unchecked: the checkpoint is verified with the log
key the auditor supplies (never a key from the bundle), every entry is proven
by the proof, and every other member is recomputed or cross-checked, so a change
to any single value fails verification.  Unknown members, duplicate members,
floats, non-canonical base64 and entries the claim does not need are rejected.

Boundary mode carries, per device, the first and last reading in the claim
period (enough for the energy figure); full mode carries every reading in the
period, so the chain and plausibility checks run on all of them.  The verifier
needs no mode flag: it checks whatever readings are present and reports how
complete each asset's evidence is.
"""

from __future__ import annotations

import base64
import binascii
import gc
import hashlib
import json
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

from attest_core import domains
from attest_core.checkpoint import SignedCheckpoint, WitnessKey, open_checkpoint
from attest_core.claim import Claim
from attest_core.entries import (
    ClaimEntry,
    EnrolmentEntry,
    Entry,
    RevocationEntry,
    RotationEntry,
    SignedReading,
    decode_log_entry,
)
from attest_core.errors import AttestError, BundleError, DecodeError, SignatureError
from attest_core.evaluation import AttestedReading, Evaluation, evaluate
from attest_core.keys import failed_signatures
from attest_core.merkle import leaf_hash, verify_multi_inclusion
from attest_core.note import VerifierKey
from attest_core.registry import Registry, RegistryError

BUNDLE_FORMAT = "iot-attest-evidence/v1"
_MEMBERS = ("format", "checkpoint", "claim_index", "entries", "proof")
_a2b_base64 = binascii.a2b_base64
_b2a_base64 = binascii.b2a_base64

Progress = Callable[[str, int, int], None]
"""progress(stage, done, total): called now and then during long verifications."""


@dataclass(frozen=True, slots=True)
class Bundle:
    """A parsed bundle: nothing in it is verified yet."""

    checkpoint: str
    claim_index: int
    entries: tuple[tuple[int, bytes], ...]
    proof: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class VerifiedBundle:
    """The outcome of checking a bundle whose evidence is valid."""

    checkpoint: SignedCheckpoint
    claim_index: int
    claim: Claim
    evaluation: Evaluation
    entries: int
    readings_verified: int
    seconds: float

    @property
    def backed(self) -> bool:
        return self.evaluation.backed


# --- writing -----------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def bundle_chunks(
    checkpoint: str,
    claim_index: int,
    entries: Iterable[tuple[int, bytes]],
    proof: Iterable[bytes],
) -> Iterator[bytes]:
    """The bundle's JSON in pieces, for streaming a large bundle without building it in memory.

    ``entries`` must come sorted by index.
    """
    yield b'{"format":' + json.dumps(BUNDLE_FORMAT).encode()
    yield b',\n"checkpoint":' + json.dumps(checkpoint).encode()
    yield b',\n"claim_index":' + str(claim_index).encode()
    yield b',\n"entries":['
    sep = b"\n"
    for index, data in entries:
        yield sep + b'{"index":' + str(index).encode() + b',"entry":"' + _b64(data).encode() + b'"}'
        sep = b",\n"
    yield b'\n],\n"proof":['
    sep = b"\n"
    for digest in proof:
        yield sep + b'"' + _b64(digest).encode() + b'"'
        sep = b",\n"
    yield b"\n]}\n"


def encode_bundle(bundle: Bundle) -> bytes:
    return b"".join(bundle_chunks(bundle.checkpoint, bundle.claim_index, bundle.entries, bundle.proof))


# --- parsing -----------------------------------------------------------------


def _fail(message: str, code: str = "bad_bundle") -> NoReturn:
    raise BundleError(message, code=code)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                _fail(f"member {key!r} appears twice in one object", "duplicate_member")
            seen.add(key)
    return out


def _no_floats(text: str) -> NoReturn:
    _fail(f"the number {text} is not an integer: a bundle holds no fractional numbers", "bad_number")


def _no_constants(text: str) -> NoReturn:
    _fail(f"{text} is not valid JSON", "bad_json")


def _int(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        _fail(f"{what} must be a non-negative integer, got {value!r}", "bad_member")
    return value


def _str(value: Any, what: str) -> str:
    if type(value) is not str:
        _fail(f"{what} must be a string, got {type(value).__name__}", "bad_member")
    return value


def _canonical_b64(text: Any) -> bytes | None:
    """The bytes of ``text`` if it is canonical standard base64, else None (then
    :func:`decode_b64` says what is wrong): the fast path of parsing a bundle."""
    if type(text) is not str:
        return None
    try:
        raw = _a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    return raw if _b2a_base64(raw, newline=False) == text.encode("ascii") else None


def decode_b64(text: Any, what: str) -> bytes:
    """Strict, canonical standard base64: exactly one spelling per byte string."""
    text = _str(text, what)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BundleError(f"{what} is not valid base64", code="bad_base64") from exc
    if _b64(raw) != text:
        _fail(f"{what} is not canonical base64 (padding or unused bits altered)", "bad_base64")
    return raw


def parse_bundle(data: bytes | str) -> Bundle:
    """Parse a bundle's JSON strictly; raise :class:`BundleError` saying what is wrong."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BundleError("the bundle is not UTF-8 text", code="bad_json") from exc
    try:
        doc = json.loads(
            data, object_pairs_hook=_no_duplicates, parse_float=_no_floats, parse_constant=_no_constants
        )
    except json.JSONDecodeError as exc:
        raise BundleError(
            f"the bundle is not valid JSON (it may be truncated): {exc}", code="bad_json"
        ) from exc
    except RecursionError as exc:
        raise BundleError("the bundle nests too deeply", code="bad_json") from exc
    if type(doc) is not dict:
        _fail("a bundle is a JSON object", "bad_json")
    missing = [m for m in _MEMBERS if m not in doc]
    extra = sorted(set(doc) - set(_MEMBERS))
    if missing:
        _fail(f"the bundle lacks {', '.join(missing)}", "missing_member")
    if extra:
        _fail(f"the bundle has unknown members: {', '.join(extra)}", "unknown_member")
    if doc["format"] != BUNDLE_FORMAT:
        _fail(f"format {doc['format']!r} is not {BUNDLE_FORMAT!r}", "bad_format")
    checkpoint = _str(doc["checkpoint"], "checkpoint")
    claim_index = _int(doc["claim_index"], "claim_index")
    raw_entries = doc["entries"]
    if type(raw_entries) is not list or not raw_entries:
        _fail("entries must be a non-empty list", "bad_member")
    entries: list[tuple[int, bytes]] = []
    append = entries.append
    previous = -1
    # Messages are built only for the entry that fails: this loop runs once per reading.
    for n, item in enumerate(raw_entries):
        if type(item) is not dict or len(item) != 2 or "index" not in item or "entry" not in item:
            _fail(f"entries[{n}] must be an object with exactly 'index' and 'entry'", "bad_member")
        index = item["index"]
        if type(index) is not int or index < 0:
            _int(index, f"entries[{n}].index")
        if index <= previous:
            _fail(
                f"entries[{n}] has index {index}: entries must be sorted by index, each once", "entry_order"
            )
        previous = index
        raw = _canonical_b64(item["entry"])
        append((index, decode_b64(item["entry"], f"entries[{n}].entry") if raw is None else raw))
    raw_proof = doc["proof"]
    if type(raw_proof) is not list:
        _fail("proof must be a list", "bad_member")
    proof = tuple(decode_b64(h, f"proof[{n}]") for n, h in enumerate(raw_proof))
    return Bundle(checkpoint, claim_index, tuple(entries), proof)


# --- verifying ---------------------------------------------------------------

SIGNATURE_BATCH = 2_000
"""Reading signatures checked together: one task of a worker process when ``jobs > 1``."""

_sha256 = hashlib.sha256


class _ReadingSignatures:
    """Every reading's signature, checked in log order, a batch at a time.

    With a pool the batches go to its worker processes (a few in flight per worker);
    without one they are checked here.  Either way the first failure in log order is
    the one reported, with the message and code of a single failed check.
    """

    def __init__(
        self, pool: ProcessPoolExecutor | None, jobs: int, progress: Progress | None, total: int
    ) -> None:
        self._pool = pool
        self._in_flight = 4 * jobs
        self._progress = progress
        self._total = total
        self._done = 0
        self._batch: list[tuple[bytes, bytes]] = []
        self._where: list[int] = []
        self._pending: deque[tuple[list[int], list[tuple[bytes, bytes]], Future[list[int]]]] = deque()
        self.failure: SignatureError | None = None

    def add(self, index: int, signed: bytes, public_key: bytes) -> None:
        """Queue the check of log entry ``index``: ``signed`` is signature ‖ signed message.

        Raises the :class:`SignatureError` of an earlier reading whose check failed meanwhile.
        """
        self._batch.append((signed, public_key))
        self._where.append(index)
        if len(self._batch) >= SIGNATURE_BATCH:
            self._send()

    def finish(self) -> SignatureError | None:
        """Check everything still queued; return the first failure in log order, if any."""
        if self.failure is None:
            try:
                self._send()
                while self._pending:
                    self._collect()
            except SignatureError:
                pass
        return self.failure

    def _send(self) -> None:
        batch, where = self._batch, self._where
        if not batch:
            return
        self._batch, self._where = [], []
        if self._pool is not None:
            try:
                future = self._pool.submit(failed_signatures, batch)
            except BrokenExecutor:
                self._pool = None  # a worker died: check the rest here (same check, same result)
            else:
                self._pending.append((where, batch, future))
                while len(self._pending) > self._in_flight:
                    self._collect()
                return
        while self._pending:  # earlier batches first: failures are reported in log order
            self._collect()
        self._settle(where, failed_signatures(batch))

    def _collect(self) -> None:
        where, batch, future = self._pending.popleft()
        try:
            failed = future.result()
        except BrokenExecutor:
            self._pool = None
            failed = failed_signatures(batch)
        self._settle(where, failed)

    def _settle(self, where: list[int], failed: list[int]) -> None:
        if failed:
            self.failure = SignatureError(
                f"log entry {where[failed[0]]}: the reading's signature does not verify under the device key"
            )
            raise self.failure
        self._done += len(where)
        if self._progress is not None:
            self._progress("readings", self._done, self._total)


def _entry_error(index: int, exc: SignatureError | RegistryError) -> AttestError:
    """An error of an identity or reading entry, saying which entry it is."""
    if isinstance(exc, SignatureError):
        return SignatureError(f"log entry {index}: {exc}", code=exc.code)
    return BundleError(f"log entry {index}: {exc}", code=exc.code)


def verify_bundle(
    data: bytes | str | Bundle,
    log_key: VerifierKey,
    *,
    witnesses: Sequence[WitnessKey] = (),
    min_witnesses: int = 0,
    progress: Progress | None = None,
    jobs: int = 1,
) -> VerifiedBundle:
    """Check a bundle against the auditor's log key and evaluate its claim.

    Raises an :class:`AttestError` if the evidence is invalid (bad signature or
    proof, tampered or malformed bundle, wrong key).  Returns a
    :class:`VerifiedBundle` otherwise; whether the claim is backed is
    ``result.backed``.

    ``jobs > 1`` checks the readings' signatures in up to that many worker
    processes (at most one per batch of :data:`SIGNATURE_BATCH` readings, so none
    for a bundle of one batch); everything else runs here, and the outcome,
    including which error is raised, is the same as with ``jobs=1``.
    """
    if type(jobs) is not int or jobs < 1:
        raise ValueError(f"jobs must be a whole number of at least 1, got {jobs!r}")
    with _collector_paused():
        return _verify_bundle(data, log_key, witnesses, min_witnesses, progress, jobs)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (if it runs) for the duration.

    Verifying allocates several objects per reading and keeps them to the end, and
    makes next to no reference cycles: the collector would only walk the growing heap
    again and again (a fifth of the time spent outside the signature checks).  Memory
    is still freed by reference counting; any cycles are collected afterwards.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _verify_bundle(
    data: bytes | str | Bundle,
    log_key: VerifierKey,
    witnesses: Sequence[WitnessKey],
    min_witnesses: int,
    progress: Progress | None,
    jobs: int,
) -> VerifiedBundle:
    started = time.perf_counter()
    bundle = data if isinstance(data, Bundle) else parse_bundle(data)

    # 1. The checkpoint: signed by the auditor's log key (and witnesses, if required).
    signed = open_checkpoint(bundle.checkpoint, log_key, witnesses=witnesses, min_witnesses=min_witnesses)
    size = signed.checkpoint.size

    # 2. Every entry is in that tree.
    leaves: dict[int, bytes] = {}
    for index, raw in bundle.entries:
        if index >= size:
            _fail(f"entry {index} is beyond the checkpoint's tree size {size}", "index_beyond_checkpoint")
        leaves[index] = leaf_hash(raw)
    verify_multi_inclusion(size, leaves, bundle.proof, signed.checkpoint.root_hash)
    if progress is not None:
        progress("proof", len(leaves), len(leaves))

    # 3. Decode every entry (each once); find the claim.
    decoded: list[tuple[int, Entry | SignedReading]] = []
    claim_entry: ClaimEntry | None = None
    total_readings = 0
    for index, raw in bundle.entries:
        try:
            entry = decode_log_entry(raw)
        except DecodeError as exc:
            raise BundleError(f"log entry {index} is malformed: {exc}", code=exc.code) from exc
        if isinstance(entry, SignedReading):
            total_readings += 1
        elif isinstance(entry, ClaimEntry):
            if index != bundle.claim_index:
                _fail(f"entry {index} is a second claim: a bundle proves one claim", "unrelated_entry")
            claim_entry = entry
        decoded.append((index, entry))
    if claim_entry is None:
        _fail(f"claim_index {bundle.claim_index} does not name a claim entry of the bundle", "no_claim")
    claim = claim_entry.claim
    claimed_assets = set(claim.assets)

    # 4. Replay identities in log order and check every reading's signature.  The
    # signatures are checked in batches (here, or in worker processes), so a failure is
    # known a little after the reading was replayed: the first error in log order wins.
    registry = Registry()
    devices = registry.devices
    key_for_reading = registry.key_for_reading
    readings: list[AttestedReading] = []
    add_reading = readings.append
    signature_prefix = domains.READING_SIGNATURE
    hash_prefix = domains.READING_HASH
    pool = None
    workers = min(jobs, -(-total_readings // SIGNATURE_BATCH))  # no more workers than batches
    if workers > 1:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    failure: AttestError | None = None
    try:
        signatures = _ReadingSignatures(pool, workers, progress, total_readings)
        try:
            for index, entry in decoded:
                if isinstance(entry, SignedReading):
                    key_id, payload, signature, reading = entry
                    if reading.device_id not in devices:
                        _fail(
                            f"entry {index}: reading {reading.seq} of device {reading.device_id}, whose "
                            "enrolment is not in the bundle before it",
                            "unknown_device",
                        )
                    try:
                        public_key = key_for_reading(key_id, reading)
                    except (SignatureError, RegistryError) as exc:
                        raise _entry_error(index, exc) from exc
                    # Over the exact payload bytes received, as the device signed them.
                    signatures.add(index, signature + signature_prefix + payload, public_key)
                    # reading_hash(payload): the link the next reading must carry.
                    add_reading(AttestedReading(index, reading, _sha256(hash_prefix + payload).digest()))
                    continue
                try:
                    if isinstance(entry, EnrolmentEntry):
                        record = registry.enrol(index, entry)
                        if record.asset_id not in claimed_assets:
                            _fail(
                                f"entry {index} enrols device {record.device_id} for asset {record.asset_id}, "
                                "which the claim does not name",
                                "unrelated_entry",
                            )
                    elif isinstance(entry, RotationEntry):
                        registry.rotate(index, entry)
                    elif isinstance(entry, RevocationEntry):
                        registry.revoke(index, entry)
                except (SignatureError, RegistryError) as exc:
                    raise _entry_error(index, exc) from exc
        except AttestError as exc:
            failure = exc  # unless a reading before this entry has a bad signature
        bad_signature = signatures.finish()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    if bad_signature is not None:
        raise bad_signature
    if failure is not None:
        raise failure
    if progress is not None:
        progress("readings", len(readings), total_readings)

    # 5. What the readings attest.
    evaluation = evaluate(claim, registry.devices, readings)
    return VerifiedBundle(
        checkpoint=signed,
        claim_index=bundle.claim_index,
        claim=claim,
        evaluation=evaluation,
        entries=len(bundle.entries),
        readings_verified=len(readings),
        seconds=time.perf_counter() - started,
    )
