"""Writing a bundle: its JSON in pieces, so that a large bundle is streamed, never held whole."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from attest_core.anchor import Anchor, anchor_json
from attest_core.bundle.parse import BUNDLE_FORMAT, BUNDLE_FORMAT_V1, BUNDLE_FORMAT_V3, Bundle, b64
from attest_core.verdict import EvidenceKind


def bundle_chunks(
    checkpoint: str,
    claim_index: int,
    entries: Iterable[tuple[int, bytes]],
    proof: Iterable[bytes],
    evidence: EvidenceKind | None,
    anchor: Anchor | None = None,
) -> Iterator[bytes]:
    """The bundle's JSON in pieces, for streaming a large bundle without building it in memory.

    ``entries`` must come sorted by index.  ``evidence`` is what the entries are (a v2 bundle);
    None writes a v1 bundle, which declares nothing (only to re-encode one).  ``anchor``: where
    the log was anchored (a v3 bundle; it needs ``evidence``).
    """
    if anchor is not None and evidence is None:
        raise ValueError("a bundle with an anchor (v3) declares its evidence")
    form = BUNDLE_FORMAT_V1 if evidence is None else BUNDLE_FORMAT if anchor is None else BUNDLE_FORMAT_V3
    yield b'{"format":' + json.dumps(form).encode()
    if evidence is not None:
        yield b',\n"evidence":' + json.dumps(evidence.value).encode()
    if anchor is not None:
        yield b',\n"anchor":' + json.dumps(anchor_json(anchor)).encode()
    yield b',\n"checkpoint":' + json.dumps(checkpoint).encode()
    yield b',\n"claim_index":' + str(claim_index).encode()
    yield b',\n"entries":['
    sep = b"\n"
    for index, data in entries:
        yield sep + b'{"index":' + str(index).encode() + b',"entry":"' + b64(data).encode() + b'"}'
        sep = b",\n"
    yield b'\n],\n"proof":['
    sep = b"\n"
    for digest in proof:
        yield sep + b'"' + b64(digest).encode() + b'"'
        sep = b",\n"
    yield b"\n]}\n"


def encode_bundle(bundle: Bundle) -> bytes:
    return b"".join(
        bundle_chunks(
            bundle.checkpoint,
            bundle.claim_index,
            bundle.entries,
            bundle.proof,
            bundle.evidence,
            bundle.anchor,
        )
    )
