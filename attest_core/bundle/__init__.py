"""Evidence bundles: everything an auditor needs to check a claim offline.

A bundle is one UTF-8 JSON object with exactly these members::

    {
      "format": "iot-attest-evidence/v2",
      "evidence": "full" | "boundary",
      "checkpoint": "<signed note: C2SP tlog-checkpoint signed by the log key>",
      "claim_index": 1234,
      "entries": [{"index": 7, "entry": "<base64 entry bytes>"}, ...],
      "proof": ["<base64 hash>", ...]
    }

``entries`` holds the claim entry and every entry the evaluation needs
(enrolments, key rotations and revocations of the claimed assets' devices,
and their readings), sorted by log index with no index twice.  ``proof`` is
one multi-leaf inclusion proof of all those entries into the checkpoint's tree
(:func:`attest_core.merkle.verify_multi_inclusion`): hashes are shared, never
repeated.

Nothing in a bundle goes unchecked: the checkpoint is verified with the log
key the auditor supplies (never a key from the bundle), every entry is proven
by the proof, and every other member is recomputed or cross-checked, so a change
to any single value fails verification.  Unknown members, duplicate members,
floats, non-canonical base64 and entries the claim does not need are rejected.

``evidence`` says what the readings are.  ``"full"``: per device, every reading
from the one before the claim period to the one after it (a sequence range,
:func:`attest_core.evaluation.full_seqs`), so one left out is fatal
(``readings_omitted``) and every check runs on every interval.  ``"boundary"``:
per device, the first and last reading in the period (enough for the energy
figure; :func:`attest_core.evaluation.boundary_seqs`).  A v1 bundle
(``"iot-attest-evidence/v1"``, without ``evidence``) still parses; each of its
devices counts as full only where its readings show it (see
:func:`attest_core.evaluation.evaluate`).  Only a v1 gateway wrote v1 bundles, of
v1 claim entries: a v1 bundle of a v2 claim entry is refused (``format_mismatch``),
since the format member is not signed.

A v3 bundle (``"iot-attest-evidence/v3"``) is a v2 bundle with one more member,
``anchor``: where the log was last anchored on a chain, with a consistency proof
from that tree to the bundle's checkpoint (:mod:`attest_core.anchor`).  A gateway
writes v3 once its log is anchored.

The format is read by :mod:`attest_core.bundle.parse`, written (streamed) by
:mod:`attest_core.bundle.write` and checked by :mod:`attest_core.bundle.verify`.
"""

from attest_core.bundle.parse import (
    BUNDLE_FORMAT,
    BUNDLE_FORMAT_V1,
    BUNDLE_FORMAT_V3,
    Bundle,
    decode_b64,
    parse_bundle,
)
from attest_core.bundle.verify import (
    CheckSignatures,
    Progress,
    VerifiedBundle,
    check_here,
    verify_bundle,
)
from attest_core.bundle.write import bundle_chunks, encode_bundle

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_FORMAT_V1",
    "BUNDLE_FORMAT_V3",
    "Bundle",
    "CheckSignatures",
    "Progress",
    "VerifiedBundle",
    "bundle_chunks",
    "check_here",
    "decode_b64",
    "encode_bundle",
    "parse_bundle",
    "verify_bundle",
]
