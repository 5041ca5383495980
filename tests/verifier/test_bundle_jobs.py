"""Reading signatures checked in batches, in this process, in threads or in worker
processes (``jobs``): the same outcome, and the same first error in log order."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, ClassVar

import pytest

import attest_core.bundle.verify as bundle_module
import verifier.bundle as runner_module
from attest_core import bundle as core
from attest_core.bundle.verify import SignatureBatch
from attest_core.chain import ChainState
from attest_core.errors import AttestError, BundleError, SignatureError
from attest_core.keys import failed_signatures
from attest_core.reading import Envelope
from attest_core.verdict import EvidenceKind
from tests.core.test_bundle import HONEST, KWH, Fleet
from tests.core.test_bundle_fast_paths import _outcome
from tests.support import HOUR, T0, MemoryLog, TestDevice, flat_claim, seeded_signer
from verifier.bundle import verify_bundle


class Setup:
    """A fleet with a day of readings, and ways to spoil one of them."""

    def __init__(self) -> None:
        self.fleet = Fleet()
        self.claim_index = self.fleet.claim_index(*HONEST)

    def good(self) -> bytes:
        return self.fleet.log.bundle_bytes(self.claim_index, self.fleet.full(), EvidenceKind.FULL)


def _report(data: bytes, key: Any, **options: Any) -> tuple[Any, ...]:
    try:
        result = verify_bundle(data, key, **options)
    except AttestError as exc:
        return (type(exc).__name__, exc.code, str(exc))
    evaluation = result.evaluation
    return (
        result.backed,
        result.readings_verified,
        result.entries,
        evaluation.energy_mwh,
        str(evaluation.revenue_exact),
        [f.to_json() for f in evaluation.findings],
        [(a.asset_id, a.energy_mwh, a.readings_counted, a.series) for a in evaluation.assets],
    )


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 5 signatures: many batches (and the worker pool) even for a small bundle."""
    monkeypatch.setattr(bundle_module, "SIGNATURE_BATCH", 5)


def _forged_log(bad_at: int, then: str | None = None) -> tuple[MemoryLog, bytes]:
    """Readings of two devices with the signature of reading ``bad_at`` broken; ``then`` adds a
    later entry that is wrong in another way."""
    log = MemoryLog()
    devices = [TestDevice("dev-a", "charger-a"), TestDevice("dev-b", "charger-b")]
    indices = [log.enrol(d) for d in devices]
    for h in range(20):
        for d in devices:
            envelope = d.reading(T0 + h * HOUR, h * KWH)
            if len(indices) - 2 == bad_at:
                envelope = Envelope(envelope.key_id, envelope.payload, bytes(64 - 1) + b"\x01")
            indices.append(log.append_reading(envelope))
    if then == "unknown_key_id":
        thief = TestDevice("dev-a", "charger-a")
        thief.signer = seeded_signer("thief")
        thief.state = ChainState(21, devices[0].state.prev_hash)
        indices.append(log.append_reading(thief.reading(T0 + 21 * HOUR, 21 * KWH)))
    elif then == "unknown_device":
        indices.append(log.append_reading(TestDevice("dev-x", "charger-a").reading(T0, KWH)))
    claim_index = log.file_claim(flat_claim(("charger-a", "charger-b")))
    return log, log.bundle_bytes(claim_index, indices, EvidenceKind.BOUNDARY)


@pytest.mark.usefixtures("small_batches")
def test_worker_processes_give_the_same_report_on_a_good_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    pools: list[int] = []

    class CountedPool(ProcessPoolExecutor):
        def __init__(self, workers: int, **kwargs: Any) -> None:
            pools.append(workers)
            super().__init__(workers, **kwargs)

    monkeypatch.setattr(runner_module, "ProcessPoolExecutor", CountedPool)
    setup = Setup()
    data, key = setup.good(), setup.fleet.log.key
    seen: list[tuple[str, int, int]] = []
    serial = _report(data, key)
    assert serial[0] is True
    assert pools == []
    assert _report(data, key, jobs=2, progress=lambda *a: seen.append(a)) == serial
    assert pools == [2]
    assert seen[0] == ("proof", 82, 82)
    assert seen[-1] == ("readings", 78, 78)
    assert [done for stage, done, _ in seen if stage == "readings"] == sorted(
        done for stage, done, _ in seen if stage == "readings"
    )


@pytest.mark.usefixtures("small_batches")
@pytest.mark.parametrize("bad_at", [0, 4, 5, 17, 39])
def test_worker_processes_report_the_same_bad_signature(bad_at: int) -> None:
    log, data = _forged_log(bad_at)
    serial = _report(data, log.key)
    assert serial[:2] == ("SignatureError", "bad_signature")
    assert f"log entry {bad_at + 2}:" in serial[2]
    assert _report(data, log.key, jobs=2) == serial
    assert _report(data, log.key, jobs=3) == serial


@pytest.mark.usefixtures("small_batches")
@pytest.mark.parametrize("then", ["unknown_key_id", "unknown_device"])
def test_the_first_error_in_log_order_wins(then: str) -> None:
    # a bad signature before another error: the signature is reported, however it is checked
    log, data = _forged_log(31, then)
    serial = _report(data, log.key)
    assert serial[:2] == ("SignatureError", "bad_signature")
    assert _report(data, log.key, jobs=2) == serial
    # without it, the later error is reported
    log, data = _forged_log(-1, then)
    serial = _report(data, log.key)
    assert serial[1] == then
    assert serial[0] == ("SignatureError" if then == "unknown_key_id" else "BundleError")
    assert _report(data, log.key, jobs=2) == serial


@pytest.mark.parametrize("batch", [1, 3, 2_000])
def test_batch_size_does_not_change_the_outcome(monkeypatch: pytest.MonkeyPatch, batch: int) -> None:
    log, data = _forged_log(12)
    expected = _report(data, log.key)
    monkeypatch.setattr(bundle_module, "SIGNATURE_BATCH", batch)
    assert _report(data, log.key) == expected


class _BrokenPool:
    """A pool whose workers die: the signatures are then checked in this process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.submitted = 0

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        self.submitted += 1
        if self.submitted > 3:
            raise BrokenExecutor("the pool is broken")
        future: Future[Any] = Future()
        future.set_exception(BrokenExecutor("a worker died"))
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


@pytest.mark.usefixtures("small_batches")
def test_a_broken_pool_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    log, data = _forged_log(33)
    good = Setup()
    expected_bad, expected_good = _report(data, log.key), _report(good.good(), good.fleet.log.key)
    monkeypatch.setattr(runner_module, "ProcessPoolExecutor", _BrokenPool)
    assert _report(data, log.key, jobs=2) == expected_bad
    assert _report(good.good(), good.fleet.log.key, jobs=2) == expected_good


class _InlinePool:
    """A pool that runs each task at once, in this process, and remembers its size."""

    sizes: ClassVar[list[int]] = []

    def __init__(self, workers: int, **kwargs: Any) -> None:
        self.sizes.append(workers)

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def test_no_more_workers_than_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    log, data = _forged_log(-1)  # 40 readings
    expected = _report(data, log.key)
    monkeypatch.setattr(runner_module, "ProcessPoolExecutor", _InlinePool)
    monkeypatch.setattr(_InlinePool, "sizes", [])
    monkeypatch.setattr(bundle_module, "SIGNATURE_BATCH", 15)
    for jobs in (1, 2, 3, 64):
        assert _report(data, log.key, jobs=jobs) == expected
    monkeypatch.setattr(bundle_module, "SIGNATURE_BATCH", 40)
    assert _report(data, log.key, jobs=64) == expected
    assert _InlinePool.sizes == [2, 3, 3]


def test_jobs_must_be_a_positive_whole_number() -> None:
    setup = Setup()
    for jobs in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="jobs"):
            verify_bundle(setup.good(), setup.fleet.log.key, jobs=jobs)  # type: ignore[arg-type]


def test_failed_signatures_names_each_failure() -> None:
    signer = seeded_signer("dev")
    good = [(signer.sign(m) + m, signer.public_key) for m in (b"a", b"b", b"c")]
    forged = (bytes(64) + b"d", signer.public_key)
    short_key = (good[0][0], signer.public_key[:31])
    short_message = (b"x" * 10, signer.public_key)
    assert failed_signatures(good) == []
    assert failed_signatures([good[0], forged, good[1], short_key, short_message, good[2]]) == [1, 3, 4]


def test_an_error_is_an_attest_error_and_not_a_pool_error(small_batches: None) -> None:
    log, data = _forged_log(3)
    with pytest.raises(SignatureError):
        verify_bundle(data, log.key, jobs=2)
    log, data = _forged_log(-1, "unknown_device")
    with pytest.raises(BundleError):
        verify_bundle(data, log.key, jobs=2)


def _in_threads(batches: Iterator[SignatureBatch], count: int) -> Iterator[list[int]]:
    with ThreadPoolExecutor(2) as pool:
        yield from pool.map(failed_signatures, batches)


@pytest.mark.usefixtures("small_batches")
@pytest.mark.parametrize("bad_at", [-1, 4, 17])
def test_the_core_takes_any_way_of_checking_a_batch(bad_at: int) -> None:
    """The core's own default, threads, and the verifier's processes: one outcome."""
    log, data = _forged_log(bad_at)
    here = _outcome(core.verify_bundle, data, log.key)
    assert _report(data, log.key) == _report(data, log.key, jobs=2)
    threads = _outcome(lambda: core.verify_bundle(data, log.key, check_signatures=_in_threads))
    assert threads[0] == here[0]
    if bad_at >= 0:
        assert here[0] == "SignatureError"
        assert threads == here
    else:
        assert threads[1].readings_verified == here[1].readings_verified == 40


@pytest.mark.usefixtures("small_batches")
@pytest.mark.parametrize("skip", ["first", "last", "all"])
def test_a_checker_that_skips_batches_gets_no_verdict(skip: str) -> None:
    log, data = _forged_log(-1)

    def careless(batches: Iterator[SignatureBatch], count: int) -> Iterator[list[int]]:
        results = [failed_signatures(batch) for batch in batches]
        kept = {"first": results[1:], "last": results[:-1], "all": []}[skip]
        return iter(kept)

    def lazy(batches: Iterator[SignatureBatch], count: int) -> Iterator[list[int]]:
        return iter([failed_signatures(next(batches))])  # never takes the other batches

    with pytest.raises(RuntimeError, match="did not check every batch"):
        core.verify_bundle(data, log.key, check_signatures=careless)
    with pytest.raises(RuntimeError, match="did not check every batch"):
        core.verify_bundle(data, log.key, check_signatures=lazy)
