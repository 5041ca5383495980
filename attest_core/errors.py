"""The one exception hierarchy of the protocol core.

Every error carries a short machine ``code`` (used as the gateway's quarantine
reason and in API error bodies) and a human message that says precisely what was
wrong.  Third-party exceptions are translated at the boundary with ``raise ... from``.
"""

from __future__ import annotations


class AttestError(Exception):
    """Base class of every error raised by :mod:`attest_core`."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class DecodeError(AttestError):
    """Bytes or text that are not a well-formed object of the expected kind."""

    code = "malformed"


class KeyFormatError(DecodeError):
    """A key, key string or key id that is malformed."""

    code = "bad_key"


class VerificationError(AttestError):
    """Well-formed input that fails a cryptographic check."""

    code = "verification_failed"


class SignatureError(VerificationError):
    """A signature does not verify under the key it must verify under."""

    code = "bad_signature"


class ProofError(VerificationError):
    """A Merkle inclusion or consistency proof is wrong."""

    code = "bad_proof"


class ClaimError(AttestError):
    """A claim that cannot be evaluated as stated (bad period, tariff, assets)."""

    code = "bad_claim"


class BundleError(AttestError):
    """An evidence bundle that is malformed or internally inconsistent."""

    code = "bad_bundle"
