"""An edge of full evidence is a reading dated outside the period by a synchronised clock: a
reading whose clock jumped out of the period (flagged unsynchronised) cannot stand as an edge,
or an issuer could cut off the readings before (or after) it, a tamper-flagged one included."""

from __future__ import annotations

from attest_core.bundle import verify_bundle
from attest_core.reading import Status
from attest_core.verdict import EvidenceKind
from tests.support import DAY, HOUR, T0, MemoryLog, TestDevice, flat_claim


def build(jump_at_end: bool = False) -> tuple[MemoryLog, list[int], int]:
    log = MemoryLog()
    dev = TestDevice("dev-s", "charger-s")
    at = [log.enrol(dev)]
    if jump_at_end:
        for n in range(5):
            at.append(log.append_reading(dev.reading(T0 - HOUR + n * HOUR, n * 1000)))
        # reading 6: its clock jumped past the period's end; reading 7, in the period, reports tamper
        at.append(log.append_reading(dev.reading(T0 + DAY + HOUR, 5000, status=Status.TIME_UNSYNCED)))
        at.append(log.append_reading(dev.reading(T0 + 6 * HOUR, 6000, status=Status.TAMPER)))
        at.append(log.append_reading(dev.reading(T0 + DAY + 2 * HOUR, 7000)))
    else:
        at.append(log.append_reading(dev.reading(T0 - HOUR, 0)))
        at.append(log.append_reading(dev.reading(T0 + HOUR, 1000, status=Status.TAMPER)))
        # reading 3, taken in the period: its clock jumped back before the period's start
        at.append(log.append_reading(dev.reading(T0 - 2 * HOUR, 2000, status=Status.TIME_UNSYNCED)))
        for n in range(4, 8):
            at.append(log.append_reading(dev.reading(T0 + n * HOUR, n * 1000)))
        at.append(log.append_reading(dev.reading(T0 + DAY + HOUR, 9000)))
    return log, at, log.file_claim(flat_claim(("charger-s",)))


def fatal(log: MemoryLog, claim: int, indices: list[int]) -> set[str]:
    result = verify_bundle(log.bundle_bytes(claim, indices, EvidenceKind.FULL), log.key)
    return {f.code for f in result.evaluation.fatal}


def test_an_unsynchronised_reading_is_no_start_edge() -> None:
    log, at, claim = build()
    assert "meter_fault" in fatal(log, claim, at)  # the whole evidence shows the tamper
    cut = [at[0], *at[3:]]  # enrolment, then from reading 3 (dated before the period) on
    codes = fatal(log, claim, cut)
    assert "readings_omitted" in codes
    assert "meter_fault" not in codes


def test_an_unsynchronised_reading_is_no_end_edge() -> None:
    log, at, claim = build(jump_at_end=True)
    assert "meter_fault" in fatal(log, claim, at)
    cut = at[:-2]  # up to reading 6 (dated after the period): the tamper-flagged reading 7 left out
    codes = fatal(log, claim, cut)
    assert "end_edge_unproven" in codes
    assert "meter_fault" not in codes
