"""The gateway's refusals: status, code and message (the hierarchy itself: tests/test_error_hierarchies.py)."""

from __future__ import annotations

from gateway.errors import BodyTooLarge, CosignatureRefused, DeviceError, Refused


def test_refusals_carry_their_status_and_code() -> None:
    for cls in (DeviceError, CosignatureRefused):
        refusal = cls(409, "already_enrolled", "device d is already enrolled")
        assert isinstance(refusal, Refused)
        assert (refusal.status, refusal.code, refusal.message) == (
            409,
            "already_enrolled",
            "device d is already enrolled",
        )
        assert str(refusal) == "device d is already enrolled"
    too_large = BodyTooLarge()
    assert (too_large.status, too_large.code) == (413, "request_too_large")
