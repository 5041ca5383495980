"""The device side of the hash chain: numbering, linking, counting and signing readings.

A :class:`ChainState` is the little state a device must keep durably between
readings: the next sequence number, the hash of the last reading, and what the
next reading's v2 counters are made from (the last reading's counters, time and
register).  The edge agent persists it together with the reading it produced
(in one transaction), so a crash can neither reuse a sequence number, nor break
the chain, nor lose or double-count a counter.
"""

from __future__ import annotations

from dataclasses import dataclass

from attest_core.counters import advance
from attest_core.keys import Signer
from attest_core.meterproof import MeterRecord
from attest_core.power import interval_power_mw
from attest_core.reading import (
    ZERO_COUNTERS,
    Counters,
    Envelope,
    Reading,
    Status,
    Trigger,
    reading_hash,
    sign_reading,
)


@dataclass(frozen=True, slots=True)
class ChainState:
    next_seq: int
    prev_hash: bytes
    counters: Counters = ZERO_COUNTERS
    """The counters of reading ``next_seq - 1`` (zero before reading 1)."""
    last_time_ms: int | None = None
    """Device time of reading ``next_seq - 1``; None before reading 1."""
    last_energy_mwh: int | None = None
    """Register of reading ``next_seq - 1``; None before reading 1."""

    @classmethod
    def genesis(cls, enrolment_anchor: bytes) -> ChainState:
        """The state of a freshly enrolled device: reading 1 links to its enrolment."""
        return cls(1, enrolment_anchor)


def next_reading(
    state: ChainState,
    signer: Signer,
    *,
    device_id: str,
    asset_id: str,
    time_ms: int,
    energy_mwh: int,
    power_mw: int | None = None,
    status: Status = Status.OK,
    trigger: Trigger = Trigger.PERIODIC,
    meter_record: MeterRecord | None = None,
) -> tuple[Envelope, ChainState]:
    """Sign the next reading (payload v2) and return it with the state that follows it.

    ``meter_record``: what the meter signed itself for this register value (a certified charger's
    OCMF record), carried exactly as received.
    """
    if state.last_time_ms is None or state.last_energy_mwh is None:
        interval_power = 0  # reading 1: no interval before it
    else:
        interval_power = interval_power_mw(time_ms - state.last_time_ms, energy_mwh - state.last_energy_mwh)
    counters = advance(state.counters, status, interval_power)
    reading = Reading(
        device_id=device_id,
        asset_id=asset_id,
        seq=state.next_seq,
        time_ms=time_ms,
        energy_mwh=energy_mwh,
        power_mw=power_mw,
        status=status,
        trigger=trigger,
        prev_hash=state.prev_hash,
        counters=counters,
        extensions=() if meter_record is None else (meter_record.to_extension(),),
    )
    envelope = sign_reading(reading, signer)
    return envelope, ChainState(
        state.next_seq + 1, reading_hash(envelope.payload), counters, time_ms, energy_mwh
    )
