"""Enrolment through the gateway's REST API, bound to the log whose key the installer pinned.

First ``GET {gateway}/v1/log/key`` gives the log's C2SP verifier key string, *before*
anything is signed: with ``enrol --log-key KEY`` (the key string the operator
published) any difference stops the enrolment, nothing signed or sent; without it the
agent shows the whole key and its fingerprint (:func:`key_fingerprint`, 256 bits) for
the installer to compare with the operator's.  The key's name is the log's origin,
which the enrolment statement (v2) names together with the key's SHA-256 (the
fingerprint): the device is enrolled in that log only, and a log with another origin,
or another key under the same name, refuses the statement.  The key goes into the config
(``[gateway] log_key``) and receipts must verify with it; a key already there is
never replaced by another.

Then ``POST {gateway}/v1/devices`` with ``Authorization: Bearer <installer token>`` and
``{"statement": base64, "proof_of_possession": base64}``: the statement names the
device, its public key, the asset (kind, rated power, location) and the time; the
proof of possession is the device key's signature over it.  The gateway answers
201 with ``{"device_id", "asset_id", "log_index", ...}``, or 200 with the same
body when it already holds exactly this statement (a retry); errors are
``{"error": {"code", "message"}}`` with 401 (token missing or wrong), 403 (not an
installer token), 409 ``already_enrolled`` (another statement for this device),
403 ``not_your_asset`` (the asset is another installer's), 400/422 (bad input, e.g.
``wrong_log_origin``, ``wrong_log_key``).

Local state:

* ``<state_dir>/enrolment-request.json`` (edge_agent/enrolment_request.py): the
  exact statement bytes and proof of possession, written (durably) *before* they
  are posted.  The statement holds
  the time it was made, so building a new one on a retry would give other bytes,
  which the gateway refuses (409) once it holds the first: if the gateway
  accepted the enrolment but its answer was lost, the device could never be
  enrolled again.  So ``enrol`` always resends the stored request, byte for byte,
  unless the installer asks for a different enrolment (other asset, kind, rated
  power or location): then it stops and explains, and ``--new`` discards a
  request the gateway never confirmed.
* ``<state_dir>/enrolment.bin``: the statement bytes once the gateway confirmed
  them (their hash is the chain anchor: reading 1's ``prev_hash``), with a
  readable summary in ``enrolment.json``.  ``run`` needs this file.

``enrol`` is therefore safe to run again at any point: a lost answer, an
unreachable gateway or a log key that could not be fetched are all finished by
running the same command again.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from attest_core.device import (
    AssetKind,
    EnrolmentStatement,
    Location,
    decode_enrolment_statement,
    log_key_hash,
)
from attest_core.errors import AttestError
from attest_core.keys import Signer
from attest_core.meterproof import MeterKey
from attest_core.note import VerifierKey
from edge_agent.enrolment_request import EnrolmentRequest
from edge_agent.errors import AgentError, Exit
from edge_agent.files import write_private_file


@dataclass(frozen=True)
class EnrolmentResult:
    statement: EnrolmentStatement
    statement_bytes: bytes
    log_index: int | None
    answer: dict[str, Any] | None
    """None when the gateway said 201 but its body was not the expected JSON object."""


def check_gateway_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AgentError(
            f"the gateway URL {url!r} is not an http:// or https:// URL (e.g. https://gateway.example.org)",
            Exit.USAGE,
        )
    return url.rstrip("/")


def build_statement(
    signer: Signer,
    *,
    device_id: str,
    asset_id: str,
    kind: str,
    rated_power_w: int,
    lat: str | None,
    lon: str | None,
    time_ms: int | None = None,
    log_key: VerifierKey | None = None,
) -> EnrolmentStatement:
    """The enrolment statement, with every argument checked (``AgentError`` exit 2 if bad).

    ``log_key`` (the pinned log key) makes a v2 statement, bound to that log by its name and
    its key's hash; None a v1 statement, which names no log (what a v2 gateway refuses by default).
    """
    if (lat is None) != (lon is None):
        raise AgentError("give both --lat and --lon, or neither", Exit.USAGE)
    try:
        location = Location.from_degrees(lat, lon) if lat is not None and lon is not None else None
        return EnrolmentStatement(
            device_id=device_id,
            public_key=signer.public_key,
            asset_id=asset_id,
            asset_kind=AssetKind.parse(kind),
            rated_power_w=rated_power_w,
            location=location,
            time_ms=int(time.time() * 1000) if time_ms is None else time_ms,
            log_origin=None if log_key is None else log_key.name,
            log_key_hash=None if log_key is None else log_key_hash(log_key),
        )
    except AttestError as exc:
        raise AgentError(f"bad enrolment argument: {exc}", Exit.USAGE) from None


def _error_detail(response: httpx.Response) -> tuple[str, str]:
    """(code, message) from a JSON error body, or a short excerpt of whatever came instead."""
    try:
        body = response.json()
        error = body["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        text = response.text.strip().replace("\n", " ")
        return "", (text[:200] + "...") if len(text) > 200 else text or "(empty body)"


def post_enrolment(
    client: httpx.Client, gateway: str, token: str, statement_bytes: bytes, proof: bytes
) -> dict[str, Any] | None:
    """POST the enrolment; return the gateway's JSON answer or raise a specific ``AgentError``.

    A 200/201 answer whose body is not a JSON object returns None: the status says
    the enrolment was created, so the caller keeps the statement (otherwise the
    device could never produce reading 1) and reports the malformed answer.
    """
    url = f"{gateway}/v1/devices"
    body = {
        "statement": base64.b64encode(statement_bytes).decode("ascii"),
        "proof_of_possession": base64.b64encode(proof).decode("ascii"),
    }
    try:
        response = client.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
    except httpx.TimeoutException:
        raise AgentError(
            f"the gateway at {gateway} did not answer in time; check the network and run the same enrol "
            "command again (it resends the same request: safe even if the gateway got it)",
            Exit.UNREACHABLE,
        ) from None
    except httpx.HTTPError as exc:
        raise AgentError(
            f"cannot reach the gateway at {gateway}: {_describe(exc)}. Check the URL, the network "
            "and that the gateway is running, then run the same enrol command again (it resends the "
            "same request: safe even if the gateway got it)",
            Exit.UNREACHABLE,
        ) from None
    status = response.status_code
    if status in (200, 201):
        try:
            answer = response.json()
        except ValueError:
            answer = None
        return answer if isinstance(answer, dict) else None
    code, message = _error_detail(response)
    detail = f"{code}: {message}" if code else message
    if status == 401:
        raise AgentError(
            f"the gateway refused the installer token (401 Unauthorized: {detail}). "
            "Check the token the operator gave you (it may have expired)",
            Exit.REFUSED,
        )
    if status == 403 and code == "not_your_asset":
        raise AgentError(
            f"the gateway refused to enrol a device on this asset (403 {detail}). Another installer "
            "enrolled the asset's first device; check --asset, or ask the operator",
            Exit.REFUSED,
        )
    if status == 403:
        raise AgentError(
            f"the token is not allowed to enrol devices (403 Forbidden: {detail}). "
            "Ask the operator for an installer token",
            Exit.REFUSED,
        )
    if status == 409:
        raise AgentError(
            f"the gateway says this device is already enrolled (409 {detail}). Its key belongs to an "
            "existing enrolment: if this installation is new, the state directory was lost; ask the "
            "operator to revoke the old enrolment, then `init` a new key and enrol again",
            Exit.ALREADY_ENROLLED,
        )
    if status in (400, 422):
        raise AgentError(
            f"the gateway rejected the enrolment as invalid ({status}: {detail}). Nothing was enrolled: "
            "correct the arguments and run enrol again with --new",
            Exit.USAGE,
        )
    raise AgentError(f"the gateway answered the enrolment with HTTP {status} ({detail})", Exit.FAILED)


_NOTHING_SENT = "Nothing was signed or sent: run the same enrol command again once it is fixed"


def fetch_log_key(client: httpx.Client, gateway: str) -> VerifierKey:
    """GET the log's verifier key string and parse it (before the enrolment is signed)."""
    url = f"{gateway}/v1/log/key"
    try:
        response = client.get(url)
    except httpx.TimeoutException:
        raise AgentError(
            f"the gateway at {gateway} did not answer in time (GET {url}). {_NOTHING_SENT}",
            Exit.UNREACHABLE,
        ) from None
    except httpx.HTTPError as exc:
        raise AgentError(
            f"cannot reach the gateway at {gateway}: {_describe(exc)} (GET {url}). Check the URL, the network "
            f"and that the gateway is running. {_NOTHING_SENT}",
            Exit.UNREACHABLE,
        ) from None
    if response.status_code != 200:
        raise AgentError(
            f"the log key could not be fetched: GET {url} answered HTTP {response.status_code} "
            f"({_error_detail(response)[1]}). {_NOTHING_SENT}",
            Exit.FAILED,
        )
    text = response.text.strip()
    try:
        return VerifierKey.parse(text)
    except (AttestError, ValueError) as exc:
        raise AgentError(
            f"the gateway's log key is not a valid C2SP verifier key string ({exc}): {text[:120]!r}",
            Exit.FAILED,
        ) from None


def key_fingerprint(key_string: str) -> str:
    """SHA-256 of the verifier key string (as published, no newline), in groups of 4 hex digits.

    256 bits to read aloud and compare: unlike the key string's 8-hex-digit key id (32
    bits, which a forger can grind), no other key can be made to match it.  The operator
    gets the same value with ``printf '%s' KEY | sha256sum``; for a valid key string it is
    the ``log_key_hash`` an enrolment statement v2 names (attest_core.device.log_key_hash).
    """
    digest = hashlib.sha256(key_string.encode("utf-8")).hexdigest()
    return " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def parse_pinned_key(text: str, what: str) -> VerifierKey:
    """The key string the installer pinned (``--log-key``), checked (``AgentError`` exit 2 if bad)."""
    try:
        return VerifierKey.parse(text.strip())
    except (AttestError, ValueError) as exc:
        raise AgentError(
            f"{what} is not a C2SP verifier key string (<name>+<8 hex digits>+<base64>): {exc}", Exit.USAGE
        ) from None


def pin_log_key(served: VerifierKey, pinned: VerifierKey | None, configured: str) -> None:
    """Fail closed unless the key the gateway serves is the one pinned and the one configured.

    ``pinned``: ``--log-key`` (None if not given); ``configured``: ``[gateway] log_key`` from
    an earlier enrol ("" if none).  Called before anything is signed.
    """
    served_string = served.to_string()
    if pinned is not None and pinned.to_string() != served_string:
        raise AgentError(
            f"the gateway serves the log key {served_string} (fingerprint {key_fingerprint(served_string)}), "
            f"not the key given with --log-key, {pinned.to_string()} (fingerprint "
            f"{key_fingerprint(pinned.to_string())}). Nothing was signed or sent. Check the gateway URL and "
            "the key the operator published; do not enrol this device with a log you cannot confirm",
            Exit.FAILED,
        )
    if configured and configured.strip() != served_string:
        raise AgentError(
            f"the gateway now serves the log key {served_string}, but this device trusts "
            f"{configured.strip()}. Nothing was signed or sent, and the key is not replaced: confirm with the "
            "operator whether the log key really changed; if so, empty [gateway] log_key in the config and "
            "run enrol again",
            Exit.FAILED,
        )


def bind_to_log(
    statement: EnrolmentStatement, key: VerifierKey, meter_key: MeterKey | None = None
) -> EnrolmentStatement:
    """The statement naming the log of ``key`` (its name is the log's origin) and the key by its
    hash: a v2 statement, signed only after the key was pinned.  ``meter_key`` (a certified
    charger's meter key, ``enrol --meter-key``) goes into its extensions, signed with the rest."""
    extensions = () if meter_key is None else (meter_key.to_extension(),)
    return dataclasses.replace(
        statement, log_origin=key.name, log_key_hash=log_key_hash(key), extensions=extensions
    )


def parse_meter_key(text: str, curve: str | None) -> MeterKey:
    """``--meter-key`` (hex as on the meter's label, ``oca:base16:asn1:<hex>`` or base64) and ``--meter-curve``."""
    try:
        return MeterKey.from_text(text, curve=curve or None)
    except (AttestError, ValueError) as exc:
        raise AgentError(
            f"--meter-key is not a meter public key this agent can read ({exc}). Copy it from the meter's "
            "display or label (hex, as the charger shows it, or oca:base16:asn1:<hex>); for a secp192k1 key "
            "give --meter-curve secp192k1",
            Exit.USAGE,
        ) from None


def check_answer(answer: dict[str, Any], statement: EnrolmentStatement) -> int | None:
    """Check the 200/201 answer names this device and asset; return its log index (if given)."""
    if answer.get("device_id") != statement.device_id or answer.get("asset_id") != statement.asset_id:
        raise AgentError(
            "the gateway's answer names device "
            f"{answer.get('device_id')!r} / asset {answer.get('asset_id')!r}, not "
            f"{statement.device_id!r} / {statement.asset_id!r}; nothing was stored — ask the operator",
            Exit.FAILED,
        )
    log_index = answer.get("log_index")
    if not isinstance(log_index, int) or isinstance(log_index, bool) or log_index < 0:
        return None
    return log_index


def save_enrolment(state_dir: Path, statement_bytes: bytes, summary: dict[str, Any]) -> None:
    write_private_file(state_dir / "enrolment.bin", statement_bytes, exclusive=False)
    write_private_file(
        state_dir / "enrolment.json", (json.dumps(summary, indent=2) + "\n").encode(), exclusive=False
    )


def load_enrolment(state_dir: Path) -> EnrolmentStatement | None:
    path = state_dir / "enrolment.bin"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AgentError(f"cannot read {path}: {exc.strerror}", Exit.USAGE) from None
    try:
        return decode_enrolment_statement(data)
    except AttestError as exc:
        raise AgentError(f"{path} is damaged: {exc}", Exit.FAILED) from None


def http_client(ca_file: str = "", timeout: float = 15.0) -> httpx.Client:
    verify: Any = ca_file if ca_file else True
    return httpx.Client(timeout=timeout, verify=verify, follow_redirects=False)


def enrol_device(
    client: httpx.Client,
    gateway: str,
    token: str,
    statement: EnrolmentStatement,
    signer: Signer,
) -> EnrolmentResult:
    """Sign and post a statement (the fleet simulator: its statements are deterministic)."""
    return send_request(client, gateway, token, EnrolmentRequest.sign(statement, signer))


def send_request(
    client: httpx.Client, gateway: str, token: str, request: EnrolmentRequest
) -> EnrolmentResult:
    """Post a signed statement (201: enrolled now, 200: the gateway already held exactly it)."""
    answer = post_enrolment(client, gateway, token, request.statement_bytes, request.proof)
    log_index = None if answer is None else check_answer(answer, request.statement)
    return EnrolmentResult(request.statement, request.statement_bytes, log_index, answer)


def _describe(exc: httpx.HTTPError) -> str:
    cause = exc.__cause__ or exc.__context__
    text = str(exc) or type(exc).__name__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text} ({cause})"
    return text
