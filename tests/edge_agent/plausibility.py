"""Check readings with the verifier's own rules (attest_core.evaluation): no fatal finding."""

from __future__ import annotations

from collections.abc import Iterable

from attest_core.device import EnrolmentStatement, sign_enrolment
from attest_core.entries import EnrolmentEntry
from attest_core.evaluation import AttestedReading, Evaluation, evaluate
from attest_core.keys import Signer
from attest_core.reading import Envelope, reading_hash
from attest_core.registry import Registry
from tests.support import flat_claim


def evaluate_devices(
    enrolments: Iterable[tuple[EnrolmentStatement, Signer | bytes]],
    envelopes: Iterable[Envelope],
    start_ms: int,
    end_ms: int,
) -> Evaluation:
    """Enrol each device (statement + its signer, or + its proof of possession), check every
    reading's signature and key, and evaluate a zero claim over [start, end) on all assets."""
    registry = Registry()
    index = 0
    assets = set()
    for statement, signer_or_pop in enrolments:
        if isinstance(signer_or_pop, bytes):
            data, pop = statement.encode(), signer_or_pop
        else:
            data, pop = sign_enrolment(statement, signer_or_pop)
        registry.enrol(index, EnrolmentEntry(data, pop, "installer-1", statement.time_ms))
        assets.add(statement.asset_id)
        index += 1
    attested = []
    for envelope in envelopes:
        reading = envelope.reading()
        registry.check_reading(envelope, reading)
        attested.append(AttestedReading(index, reading, reading_hash(envelope.payload)))
        index += 1
    claim = flat_claim(tuple(sorted(assets)), start=start_ms, end=end_ms)
    return evaluate(claim, registry.devices, attested)
