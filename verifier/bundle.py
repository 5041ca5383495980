"""Verifying a bundle on this machine: the readings' signatures in worker processes
(``--jobs``), with the garbage collector paused.

The rules are :func:`attest_core.bundle.verify_bundle`'s; this module decides only
where its signature checks run, so the outcome, including which error is raised,
is the same for every ``jobs``.  Worker processes rather than threads: libsodium
releases the GIL while it checks a signature, but between two checks a thread needs
the GIL back, which the replay of the entries in this thread holds most of the time.
"""

from __future__ import annotations

import gc
import multiprocessing
from collections import deque
from collections.abc import Iterator
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Unpack

from attest_core import bundle as core
from attest_core.bundle import Bundle, VerifiedBundle
from attest_core.bundle.verify import SignatureBatch, VerifyOptions
from attest_core.keys import failed_signatures
from attest_core.note import VerifierKey

IN_FLIGHT_PER_WORKER = 4
"""Batches queued per worker process: enough to keep it busy, few enough to bound memory."""


def verify_bundle(
    data: bytes | str | Bundle,
    log_key: VerifierKey,
    *,
    jobs: int = 1,
    **options: Unpack[VerifyOptions],
) -> VerifiedBundle:
    """:func:`attest_core.bundle.verify_bundle`, its signatures checked in up to ``jobs`` processes.

    At most one process per batch of :data:`attest_core.bundle.verify.SIGNATURE_BATCH`
    readings, so none for a bundle of one batch; everything else runs here.
    """
    if type(jobs) is not int or jobs < 1:
        raise ValueError(f"jobs must be a whole number of at least 1, got {jobs!r}")
    workers = _Workers(jobs)
    try:
        with _collector_paused():
            return core.verify_bundle(data, log_key, check_signatures=workers.check, **options)
    finally:
        workers.close()


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (if it runs) for the duration.

    Verifying allocates several objects per reading and keeps them to the end, and
    makes next to no reference cycles: the collector would only walk the growing heap
    again and again.  Memory is still freed by reference counting; any cycles are
    collected afterwards.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class _Workers:
    """A pool of up to ``jobs`` worker processes, started for the first bundle big enough."""

    def __init__(self, jobs: int) -> None:
        self._jobs = jobs
        self._pool: ProcessPoolExecutor | None = None

    def check(self, batches: Iterator[SignatureBatch], count: int) -> Iterator[list[int]]:
        workers = min(self._jobs, count)  # no more workers than batches
        if workers <= 1:
            return core.check_here(batches, count)
        self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        return _in_pool(self._pool, IN_FLIGHT_PER_WORKER * workers, batches)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _in_pool(
    pool: ProcessPoolExecutor, in_flight: int, batches: Iterator[SignatureBatch]
) -> Iterator[list[int]]:
    """Each batch's failed positions, in order, a few batches in flight per worker.

    If a worker dies, the batches it would have checked are checked here instead
    (same check, same result).
    """
    pending: deque[tuple[SignatureBatch, Future[list[int]] | None]] = deque()
    broken = False
    for batch in batches:
        future = None
        if not broken:
            try:
                future = pool.submit(failed_signatures, batch)
            except BrokenExecutor:
                broken = True
        pending.append((batch, future))
        while len(pending) > (0 if broken else in_flight):
            yield _result(*pending.popleft())
    while pending:
        yield _result(*pending.popleft())


def _result(batch: SignatureBatch, future: Future[list[int]] | None) -> list[int]:
    if future is not None:
        try:
            return future.result()
        except BrokenExecutor:
            pass
    return failed_signatures(batch)
