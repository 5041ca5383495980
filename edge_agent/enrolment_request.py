"""The enrolment request kept on disk, so that a lost answer is finished by resending it.

``<state_dir>/enrolment-request.json`` holds the exact statement bytes and proof
of possession, written durably *before* they are posted (see edge_agent/enrol.py
for why a retry must resend the same bytes).  ``choose_request`` decides what
``enrol`` posts: the stored request, one rebuilt from the confirmed statement,
or a new one; and refuses, with the arguments to use, when the installer asks
for a different enrolment.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from attest_core.device import EnrolmentStatement, sign_enrolment, verify_enrolment
from attest_core.errors import AttestError
from attest_core.keys import Signer
from edge_agent.errors import AgentError, Exit
from edge_agent.files import fsync_dir, write_private_file

REQUEST_FILE = "enrolment-request.json"
REQUEST_FORMAT = "iot-attest-enrolment-request/v1"
DISCARDED_FILE = "enrolment-request.discarded.json"


@dataclass(frozen=True)
class EnrolmentRequest:
    """A signed enrolment statement, exactly as it is (or was) posted to the gateway."""

    statement: EnrolmentStatement
    statement_bytes: bytes
    proof: bytes

    @classmethod
    def sign(cls, statement: EnrolmentStatement, signer: Signer) -> EnrolmentRequest:
        statement_bytes, proof = sign_enrolment(statement, signer)
        return cls(statement, statement_bytes, proof)


def request_path(state_dir: Path) -> Path:
    return state_dir / REQUEST_FILE


def save_request(state_dir: Path, request: EnrolmentRequest, gateway: str) -> None:
    """Durably keep the exact request (before it is posted: see the module docstring)."""
    doc = {
        "format": REQUEST_FORMAT,
        "statement": base64.b64encode(request.statement_bytes).decode("ascii"),
        "proof_of_possession": base64.b64encode(request.proof).decode("ascii"),
        "device_id": request.statement.device_id,
        "asset_id": request.statement.asset_id,
        "kind": request.statement.asset_kind.label,
        "rated_power_w": request.statement.rated_power_w,
        "time_ms": request.statement.time_ms,
        "log_origin": request.statement.log_origin,
        "log_key_hash": None
        if request.statement.log_key_hash is None
        else request.statement.log_key_hash.hex(),
        "meter_key": None if request.statement.meter_key is None else request.statement.meter_key.hex(),
        "first_sent_to": gateway,
    }
    write_private_file(request_path(state_dir), (json.dumps(doc, indent=2) + "\n").encode(), exclusive=False)


def load_request(state_dir: Path) -> EnrolmentRequest | None:
    """The stored request, checked (statement decodes, proof of possession verifies); None if none."""
    path = request_path(state_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentError(f"cannot read {path}: {exc}", Exit.USAGE) from None
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("format") != REQUEST_FORMAT:
            raise ValueError(f"not an {REQUEST_FORMAT} document")
        statement_bytes = base64.b64decode(doc["statement"], validate=True)
        proof = base64.b64decode(doc["proof_of_possession"], validate=True)
        statement = verify_enrolment(statement_bytes, proof)
    except (ValueError, KeyError, TypeError, binascii.Error, AttestError) as exc:
        raise AgentError(
            f"{path} is damaged ({exc}): the stored enrolment request cannot be resent. Run enrol with "
            "--new to make a new one (if the gateway already holds the old one it answers 409: then ask "
            "the operator)",
            Exit.FAILED,
        ) from None
    return EnrolmentRequest(statement, statement_bytes, proof)


def discarded_path(state_dir: Path) -> Path:
    return state_dir / DISCARDED_FILE


def discard_request(state_dir: Path) -> bool:
    """Set the stored request aside (``--new``), keeping it as ``enrolment-request.discarded.json``."""
    path = request_path(state_dir)
    if not path.exists():
        return False
    os.replace(path, discarded_path(state_dir))
    fsync_dir(state_dir)
    return True


def same_enrolment(a: EnrolmentStatement, b: EnrolmentStatement) -> bool:
    """The same device, key, asset, kind, rated power, location and log (the time may differ).

    ``b`` a v1 statement (made by an agent before protocol v2) names no log: ``a`` matches
    it whatever log it names, so a device enrolled under v1 stays as it is.
    """
    if b.log_origin is None:
        a = dataclasses.replace(a, log_origin=None, log_key_hash=None, extensions=())
    return dataclasses.replace(a, time_ms=b.time_ms) == b


def describe_statement(statement: EnrolmentStatement) -> str:
    """The installer's arguments that made the statement, e.g. ``--asset a --kind solar ...``."""
    text = (
        f"--asset {statement.asset_id} --kind {statement.asset_kind.label} "
        f"--rated-power {statement.rated_power_w}"
    )
    if statement.location is not None:
        text += f" --lat {_degrees(statement.location.lat_e6)} --lon {_degrees(statement.location.lon_e6)}"
    meter_key = statement.meter_key
    if meter_key is not None:
        text += f" --meter-key {meter_key.hex()} --meter-curve {meter_key.curve}"
    if statement.log_origin is not None:
        text += f", for the log {statement.log_origin}"
    return text


def _degrees(e6: int) -> str:
    sign = "-" if e6 < 0 else ""
    whole, frac = divmod(abs(e6), 1_000_000)
    return f"{sign}{whole}.{frac:06d}".rstrip("0").rstrip(".")


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))


def choose_request(
    state_dir: Path,
    wanted: EnrolmentStatement,
    signer: Signer,
    *,
    confirmed: EnrolmentStatement | None,
    new: bool,
) -> tuple[EnrolmentRequest, bool]:
    """The request to post: the stored one if there is one, else a new one; (request, stored before).

    ``wanted`` is the statement the installer's arguments make now; ``confirmed``
    the statement the gateway already confirmed (``enrolment.bin``), if any.
    """
    stored: EnrolmentRequest | None = None
    if confirmed is not None:
        try:
            stored = load_request(state_dir)
        except AgentError:  # rebuilt from the confirmed statement below
            stored = None
    elif new:
        discard_request(state_dir)
    else:
        stored = load_request(state_dir)
    for have in (confirmed, stored.statement if stored else None):
        if have is not None and (have.public_key != signer.public_key or have.device_id != wanted.device_id):
            raise AgentError(
                f"the enrolment stored in {state_dir} belongs to another key or device: refusing to continue",
                Exit.USAGE,
            )
    if confirmed is not None:
        if not same_enrolment(wanted, confirmed) or new:
            raise AgentError(
                f"this device is already enrolled for asset {confirmed.asset_id} (confirmed by the gateway, "
                f"with {describe_statement(confirmed)}); an enrolment cannot be changed. Running enrol again "
                "with exactly those arguments is safe. A device serves one asset with the details it was "
                "enrolled with: for another asset or other details, ask the operator to revoke this device, "
                "then `init` a new device (a new key) and enrol that",
                Exit.ALREADY_ENROLLED,
            )
        if stored is None or stored.statement_bytes != confirmed.encode():
            # a state directory from before requests were kept: Ed25519 signs deterministically
            stored = EnrolmentRequest.sign(confirmed, signer)
            save_request(state_dir, stored, "")
        return stored, True
    if stored is not None:
        if same_enrolment(wanted, stored.statement):
            return stored, True
        raise AgentError(
            f"a different enrolment request is stored in {request_path(state_dir)}, made on "
            f"{_iso(stored.statement.time_ms)} with: {describe_statement(stored.statement)}. It was sent "
            "to the gateway but no answer came back, so the gateway may hold it. To finish it, run enrol "
            "again with exactly those arguments. If it is wrong and the gateway never accepted it (the "
            f"operator can check GET /v1/devices/{stored.statement.device_id}), run this command again "
            "with --new: the stored request is discarded and a new one is made",
            Exit.USAGE,
        )
    request = EnrolmentRequest.sign(wanted, signer)
    return request, False
