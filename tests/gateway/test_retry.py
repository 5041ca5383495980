"""The gateway's backoff: jittered pauses within their bounds, capped, and short again after a recovery."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.retry import Backoff


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_ceiling_doubles_up_to_the_cap() -> None:
    backoff = Backoff(0.5, 10.0, rand=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


@given(st.floats(0.01, 5.0), st.floats(1.0, 100.0), st.integers(1, 200), st.randoms(use_true_random=False))
def test_every_pause_is_within_zero_and_its_ceiling(first: float, factor: float, count: int, rng) -> None:  # type: ignore[no-untyped-def]
    cap = first * factor
    backoff = Backoff(first, cap, rand=rng.random)
    for n in range(count):
        ceiling = min(cap, first * 2**n)
        assert backoff.ceiling() == pytest.approx(ceiling)
        assert 0.0 <= backoff.next_delay() <= ceiling


def test_the_pauses_are_spread_not_in_lock_step() -> None:
    """Full jitter: many clients failing together pick different pauses over the whole interval."""
    pauses = []
    for _ in range(200):
        backoff = Backoff(1.0, 30.0)
        for _ in range(3):
            backoff.next_delay()
        pauses.append(backoff.next_delay())  # ceiling 8 s
    assert 0 <= min(pauses) < 2.0
    assert 6.0 < max(pauses) <= 8.0
    assert len(set(pauses)) == len(pauses)


def test_a_long_healthy_attempt_resets_the_pauses() -> None:
    clock = Clock()
    backoff = Backoff(1.0, 30.0, healthy_after=60.0, rand=lambda: 1.0, clock=clock)
    for _ in range(5):
        backoff.started()
        clock.now += 1
        backoff.next_delay()
    assert backoff.ceiling() == 30.0
    backoff.started()
    clock.now += 59  # not long enough
    assert backoff.next_delay() == 30.0
    backoff.started()
    clock.now += 60
    assert backoff.next_delay() == 1.0  # it ran long enough: a recovery, then a new failure
    assert backoff.next_delay() == 2.0


def test_reset_and_bad_arguments() -> None:
    backoff = Backoff(1.0, 8.0, rand=lambda: 1.0)
    backoff.next_delay()
    backoff.next_delay()
    backoff.reset()
    assert backoff.failures == 0
    assert backoff.next_delay() == 1.0
    with pytest.raises(ValueError):
        Backoff(0.0, 1.0)
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)
