"""The device side of the hash chain: numbering, linking and signing readings.

A :class:`ChainState` is the little state a device must keep durably between
readings: the next sequence number and the hash of the last reading.  The edge
agent persists it together with the reading it produced (in one transaction),
so a crash can neither reuse a sequence number nor break the chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from attest_core.keys import Signer
from attest_core.reading import Envelope, Reading, Status, Trigger, reading_hash, sign_reading


@dataclass(frozen=True, slots=True)
class ChainState:
    next_seq: int
    prev_hash: bytes

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
) -> tuple[Envelope, ChainState]:
    """Sign the next reading and return it with the state that follows it."""
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
    )
    envelope = sign_reading(reading, signer)
    return envelope, ChainState(state.next_seq + 1, reading_hash(envelope.payload))
