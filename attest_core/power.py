"""The rated-power rule, in one place: the verifier checks it, the device tracks it.

The verifier's plausibility rule for two readings of a device (``Δt`` apart, the
register ``Δe`` mWh higher) is::

    Δe ≤ rated_W × (max(Δt, 0) + 2 s) × 1.1 + 2 Wh

(10 % tolerance, :data:`CLOCK_SLACK_MS` of clock slack, :data:`QUANTUM_SLACK_MWH` of
register resolution).  It is equivalently a comparison of two powers in milliwatts:

    interval_power_mw(Δt, Δe) ≤ rated_limit_mw(rated_W)

with, in exact integer arithmetic (``⌈x⌉`` the ceiling)::

    interval_power_mw(Δt, Δe) = max(0, ⌈(Δe − 2000 mWh) × 3 600 000 / (max(Δt, 0) + 2000 ms)⌉)
    rated_limit_mw(rated_W)   = rated_W × 1100

``interval_power_mw`` is the interval's average power once the register
resolution and the clock slack are granted; ``rated_limit_mw`` is the rated power
plus the 10 % tolerance.  The two forms agree exactly: multiplying the first
through by ``36 000 000 / 10`` and using that ``rated_W × 1100`` is an integer
(so ``x ≤ n`` if and only if ``⌈x⌉ ≤ n``) gives the second; a property test
checks it against the energy form :func:`allowed_energy_mwh`.

A device keeps the highest ``interval_power_mw`` between its consecutive
readings (reading payload v2's ``max_interval_power_mw``, see
:mod:`attest_core.counters`), so two of its signed readings show whether any
interval between them broke the rule, without the readings in between.
"""

from __future__ import annotations

from fractions import Fraction

__all__ = [
    "CLOCK_SLACK_MS",
    "POWER_TOLERANCE",
    "QUANTUM_SLACK_MWH",
    "allowed_energy_mwh",
    "exceeds_rated_power",
    "interval_power_mw",
    "rated_limit_mw",
]

POWER_TOLERANCE = Fraction(1, 10)
"""Implied power may exceed the rated power by 10 %."""
CLOCK_SLACK_MS = 2_000
"""Device clocks may disagree by this much over one interval."""
QUANTUM_SLACK_MWH = 2_000
"""A register may step by up to 2 Wh at once (e.g. an S0 meter's pulse resolution)."""

_MS_PER_HOUR = 3_600_000
_LIMIT_MW_PER_W = 1_000 + 1_000 * POWER_TOLERANCE.numerator // POWER_TOLERANCE.denominator  # 1100


def interval_power_mw(dt_ms: int, delta_mwh: int) -> int:
    """The power of an interval by the verifier's rule, in mW (see the module docstring).

    ``dt_ms`` is the later reading's device time minus the earlier one's (a negative
    value counts as 0), ``delta_mwh`` the register's increase (0 or less gives 0).
    """
    excess = delta_mwh - QUANTUM_SLACK_MWH
    if excess <= 0:
        return 0
    span = (dt_ms if dt_ms > 0 else 0) + CLOCK_SLACK_MS
    return -(-excess * _MS_PER_HOUR // span)  # ceiling division


def rated_limit_mw(rated_power_w: int) -> int:
    """The highest interval power an asset of ``rated_power_w`` may show: rated power + 10 %."""
    return rated_power_w * _LIMIT_MW_PER_W


def exceeds_rated_power(rated_power_w: int, dt_ms: int, delta_mwh: int) -> bool:
    """True if ``delta_mwh`` in ``dt_ms`` breaks the rated-power rule (exact integer arithmetic)."""
    return interval_power_mw(dt_ms, delta_mwh) > rated_power_w * _LIMIT_MW_PER_W


def allowed_energy_mwh(rated_power_w: int, dt_ms: int) -> Fraction:
    """The same rule in energy form: the most an asset of ``rated_power_w`` may register in ``dt_ms``."""
    hours = Fraction(max(dt_ms, 0) + CLOCK_SLACK_MS, _MS_PER_HOUR)
    return rated_power_w * 1000 * hours * (1 + POWER_TOLERANCE) + QUANTUM_SLACK_MWH
