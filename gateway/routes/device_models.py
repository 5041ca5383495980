"""The device routes' request and answer models (and an asset's location, which assets share)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from gateway.routes.common import MAX_MS, Strict, degrees
from gateway.routes.paging import Page


class EnrolmentRequest(Strict):
    statement: str = Field(
        max_length=4096, description="base64 of the exact enrolment statement bytes the device signed"
    )
    proof_of_possession: str = Field(
        max_length=128, description="base64 of the device key's 64-byte Ed25519 signature over the statement"
    )


class EnrolmentAnswer(BaseModel):
    device_id: str
    asset_id: str
    asset_kind: Literal["charger", "solar"]
    key_id: str = Field(description="the device key's id, 16 hex digits")
    log_index: int | None = Field(
        description="the enrolment's log index; null while it waits for the sequencer"
    )
    status: Literal["logged", "pending"]


class RevocationRequest(Strict):
    reason: str = Field(min_length=1, max_length=1000, description="why; at most 1000 bytes of UTF-8")
    last_valid_seq: int | None = Field(
        default=None,
        ge=0,
        le=MAX_MS,
        description="readings above this sequence number are disowned; default: the highest the gateway "
        "accepted. Below that, readings already accepted are disowned: only an operator token may",
    )


class RevocationAnswer(BaseModel):
    device_id: str
    last_valid_seq: int
    readings_disowned: int = Field(
        description="readings the gateway had accepted above last_valid_seq (recorded in the revocation entry)"
    )
    revoked_by: str
    role: Literal["installer", "operator"]
    log_index: int | None
    status: Literal["logged", "pending"]


class RotationRequest(Strict):
    statement: str = Field(max_length=4096, description="base64 of the exact key-rotation statement bytes")
    old_signature: str = Field(max_length=128, description="base64 of the old key's 64-byte authorization")
    new_signature: str = Field(max_length=128, description="base64 of the new key's 64-byte acceptance")


class RotationAnswer(BaseModel):
    device_id: str
    key_id: str = Field(description="the new key's id, 16 hex digits")
    effective_seq: int
    log_index: int | None
    status: Literal["logged", "pending"]


class LocationOut(BaseModel):
    lat: str = Field(description="latitude in degrees, exact decimal")
    lon: str = Field(description="longitude in degrees, exact decimal")
    lat_e6: int
    lon_e6: int


class KeyOut(BaseModel):
    key_id: str
    from_seq: int = Field(description="the first sequence number this key signs")


class MeterKeyOut(BaseModel):
    curve: str = Field(description="the meter key's curve (OpenSSL's name, e.g. secp256r1, brainpoolP256r1)")
    public_key: str = Field(
        description="hex of the meter's DER SubjectPublicKeyInfo, as printed on its label: compare them"
    )


class DeviceOut(BaseModel):
    device_id: str
    asset_id: str
    asset_kind: Literal["charger", "solar"]
    rated_power_w: int
    location: LocationOut | None
    installer: str
    status: Literal["pending", "active", "revoked"] = Field(
        description="pending: the enrolment is not logged yet; revoked: no reading above last_valid_seq counts"
    )
    enrolled_at: str | None
    enrolment_log_index: int | None
    keys: list[KeyOut]
    revoked_at: str | None
    last_valid_seq: int | None
    revocation_log_index: int | None
    last_accepted_seq: int | None = Field(description="the highest sequence number the gateway accepted")
    last_logged_seq: int = Field(description="the highest sequence number logged (0: none yet)")
    statement: str = Field(description="base64 of the enrolment statement")
    log_origin: str | None = Field(
        description="the log the enrolment statement (v2) names; null for a v1 statement, which names none "
        "(verifiers warn: enrolment_not_bound)"
    )
    log_key_hash: str | None = Field(
        description="hex SHA-256 of the log key the enrolment statement (v2) names: this log's key string "
        "(its fingerprint); null for a v1 statement"
    )
    meter_key: MeterKeyOut | None = Field(
        default=None,
        description="the certified meter's own public key the device was enrolled with (signed in the enrolment "
        "statement; it changes only by a new enrolment); null when the device's meter does not sign",
    )


class DevicePage(Page):
    items: list[DeviceOut]


def location_out(lat_e6: int | None, lon_e6: int | None) -> LocationOut | None:
    """A location from micro-degrees; None unless both are known."""
    if lat_e6 is None or lon_e6 is None:
        return None
    return LocationOut(lat=degrees(lat_e6), lon=degrees(lon_e6), lat_e6=lat_e6, lon_e6=lon_e6)
