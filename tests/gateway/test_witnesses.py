"""The gateway takes a witness's cosignature exactly when the core's checkpoint check does
(gateway.witnesses uses attest_core.checkpoint.verify_cosignature, as open_checkpoint does)."""

from __future__ import annotations

import pytest

from attest_core.checkpoint import Checkpoint, SignedCheckpoint, open_checkpoint
from attest_core.errors import SignatureError
from attest_core.note import NoteSignature, add_signature_lines
from gateway.errors import CosignatureRefused
from gateway.witnesses import verified_cosignatures, witness_label
from tests.core.test_checkpoint import CP, LOG_KEY, ORIGIN, ROOT, SIGNED, W_KEYS, W_NAMES, cosign

_GOOD = NoteSignature.parse_line(cosign(2)).signature
_OTHER = Checkpoint(ORIGIN, CP.size + 1, ROOT, time=1_700_000_000)
VARIANTS = {
    "valid": _GOOD,
    "tampered time": (1_700_000_101).to_bytes(8, "big") + _GOOD[8:],
    "flipped bit": _GOOD[:-1] + bytes([_GOOD[-1] ^ 1]),
    "time of 2^63": (2**63).to_bytes(8, "big") + _GOOD[8:],
    "one byte short": _GOOD[:-1],
    "one byte long": _GOOD + b"x",
    "no timestamp": _GOOD[8:],
    "another checkpoint": NoteSignature.parse_line(cosign(2, checkpoint=_OTHER)).signature,
}


def _core(note: str) -> SignedCheckpoint | SignatureError:
    try:
        return open_checkpoint(note, LOG_KEY, W_KEYS[2:])
    except SignatureError as exc:
        return exc


@pytest.mark.parametrize("raw", VARIANTS.values(), ids=VARIANTS.keys())
def test_the_gateway_and_the_core_agree_on_a_cosignature(raw: bytes) -> None:
    line = NoteSignature(W_NAMES[2], W_KEYS[2].key_id, raw).to_line()
    note = add_signature_lines(SIGNED, [line])
    core = _core(note)
    if isinstance(core, SignatureError):
        with pytest.raises(CosignatureRefused) as refused:
            verified_cosignatures(note, W_KEYS[2:])
        assert (refused.value.status, refused.value.code, refused.value.message) == (
            403,
            core.code,
            str(core),
        )
    else:
        body, lines = verified_cosignatures(note, W_KEYS[2:])
        assert body == core.body
        assert lines == [(witness_label(W_KEYS[2]), core.cosignatures[0].to_line())]
