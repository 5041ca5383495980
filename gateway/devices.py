"""Device enrolment, key rotation and revocation, as database operations.

Each one checks its statement with the protocol core (proof of possession,
signatures, the registry's rules), updates the device tables that ingest reads,
and queues the log entry for the sequencer, all in one transaction.

Who may act (v2): an installer acts only on the devices it enrolled (``devices.installer``),
and enrols devices only on an asset that is new or whose first device it enrolled
(``asset_identity.installer``): another party's devices on an asset would add their
readings to it and leave every claim on it not backed.  An operator acts on any device
and any asset, also those of an installer whose token was withdrawn.  A revocation that
disowns readings the gateway already accepted needs an operator and a reason (the rule is
attest_core.entries.check_revocation_authority; its entry records how many).  Every
function takes the actor's ``role`` explicitly: no default can make a caller an operator.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import asyncpg

from attest_core.device import EnrolmentStatement, verify_rotation
from attest_core.entries import (
    IDENTITY_V2,
    EnrolmentEntry,
    RevocationEntry,
    RevokerRole,
    RotationEntry,
    check_revocation_authority,
    encode_entry,
)
from attest_core.errors import AttestError
from attest_core.merkle import leaf_hash
from attest_core.reading import device_key_id
from attest_core.registry import DeviceRecord, Registry, RegistryError, check_log_origin_of
from gateway.device_records import read_devices
from gateway.errors import DeviceError

REGISTRY_LOCK = 0x10_7A77_DE7
METER_KEY_LOCK = 0x10_7A77_3E7
"""Advisory lock id: taken exclusively by a key rotation or revocation, shared by ingest while it
checks and stores a batch (see :func:`change_registry` and gateway.ingest.store_batch)."""


async def change_registry(conn: asyncpg.Connection) -> None:
    """Start a change to which readings ingest may accept (call inside the change's transaction).

    Waits for every ingest batch being checked to commit, and bumps ``registry_state.version``
    so that every later batch, in any process, re-reads its device records before it checks a
    reading: no reading is accepted under a key or a revocation state that was already replaced.
    """
    await conn.execute("SELECT pg_advisory_xact_lock($1)", REGISTRY_LOCK)
    await conn.execute("UPDATE registry_state SET version = version + 1")


@dataclass(frozen=True)
class Enrolled:
    device_id: str
    asset_id: str
    key_id: bytes
    pending_id: int


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _add_key(conn: asyncpg.Connection, device_id: str, public_key: bytes, from_seq: int) -> bytes:
    """Store a device key, valid from reading ``from_seq`` on; returns its key id."""
    key_id = device_key_id(public_key)
    await conn.execute(
        "INSERT INTO device_keys (device_id, key_id, public_key, from_seq) VALUES ($1, $2, $3, $4)",
        device_id,
        key_id,
        public_key,
        from_seq,
    )
    return key_id


async def _queue(
    conn: asyncpg.Connection,
    entry: EnrolmentEntry | RotationEntry | RevocationEntry,
    device_id: str,
    asset_id: str,
) -> int:
    """Chain a device's identity entry to its asset's (v2: ``asset_link`` names the asset's
    latest identity entry, whose row stays locked until the transaction ends) and queue it for
    the sequencer; returns its ``pending_entries`` id.  Queued in that order, they are logged in
    that order (the sequencer appends ``pending_entries`` by id)."""
    await conn.execute("INSERT INTO asset_identity (asset_id) VALUES ($1) ON CONFLICT DO NOTHING", asset_id)
    head = await conn.fetchval("SELECT head FROM asset_identity WHERE asset_id = $1 FOR UPDATE", asset_id)
    if isinstance(entry, RevocationEntry):
        chained: EnrolmentEntry | RotationEntry | RevocationEntry = dataclasses.replace(
            entry, asset_link=head
        )
    else:
        chained = dataclasses.replace(entry, version=IDENTITY_V2, asset_link=head)
    data = encode_entry(chained)
    await conn.execute("UPDATE asset_identity SET head = $2 WHERE asset_id = $1", asset_id, leaf_hash(data))
    pending_id: int = await conn.fetchval(
        "INSERT INTO pending_entries (kind, data, device_id) VALUES ($1, $2, $3) RETURNING id",
        int(entry.type),
        data,
        device_id,
    )
    return pending_id


async def enrol(
    conn: asyncpg.Connection,
    statement: bytes,
    pop_signature: bytes,
    installer: str,
    *,
    role: RevokerRole,
    log_origin: str | None = None,
    log_key_hash: bytes | None = None,
    accept_v1: bool = True,
) -> Enrolled:
    """Enrol a device for ``installer`` (the token's name) in ``role``.

    ``log_origin`` is this gateway's log: a statement naming another is refused (400
    ``wrong_log_origin``), and a v1 statement, naming none, unless ``accept_v1`` (400
    ``enrolment_v1_refused``); ``log_key_hash`` its key's hash (attest_core.device.log_key_hash):
    a statement naming another key is refused (400 ``wrong_log_key``).  The API passes all
    three; None checks nothing.  An installer may enrol on an asset only if it enrolled the
    asset's first device, or if the asset is new (403 ``not_your_asset``).
    """
    entry = EnrolmentEntry(statement, pop_signature, installer, _now_ms())
    try:
        st = entry.verify()
    except AttestError as exc:
        raise DeviceError(400, exc.code, str(exc)) from exc
    if log_origin is not None:
        try:
            check_log_origin_of(st, log_origin, "the enrolment statement", log_key_hash)
        except RegistryError as exc:
            raise DeviceError(400, exc.code, str(exc)) from exc
        if st.log_origin is None and not accept_v1:
            raise DeviceError(
                400,
                "enrolment_v1_refused",
                f"device {st.device_id} sent a v1 enrolment statement, which names no log: this gateway "
                f"enrols only statements naming its log {log_origin!r} (update the agent; the operator can "
                "allow v1 agents with the setting accept_v1_enrolments)",
            )
    async with conn.transaction():
        exists = await conn.fetchval("SELECT 1 FROM devices WHERE device_id = $1", st.device_id)
        if exists:
            raise DeviceError(409, "already_enrolled", f"device {st.device_id} is already enrolled")
        await _one_device_per_meter(conn, st)
        await _claim_asset(conn, st.asset_id, installer, role)
        loc = st.location
        await conn.execute(
            "INSERT INTO devices (device_id, asset_id, asset_kind, rated_power_w, lat_e6, lon_e6, statement, "
            "installer, logged_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            st.device_id,
            st.asset_id,
            int(st.asset_kind),
            st.rated_power_w,
            None if loc is None else loc.lat_e6,
            None if loc is None else loc.lon_e6,
            statement,
            installer,
            st.chain_anchor(),
        )
        key_id = await _add_key(conn, st.device_id, st.public_key, 1)
        pending_id = await _queue(conn, entry, st.device_id, st.asset_id)
    return Enrolled(st.device_id, st.asset_id, key_id, pending_id)


async def _one_device_per_meter(conn: asyncpg.Connection, st: EnrolmentStatement) -> None:
    """Refuse a meter key that an enrolled, unrevoked device carries already (409 ``meter_key_enrolled``).

    Two devices carrying one meter's records would back two claims with the same energy, and no
    bundle shows the other device.  The check reads the statements themselves (the key's bytes
    as the statement's extension holds them), under a lock so that two enrolments of one key
    cannot both pass; enrolments are rare, so a scan is cheap enough.
    """
    meter_key = st.meter_key
    if meter_key is None:
        return
    await conn.execute("SELECT pg_advisory_xact_lock($1)", METER_KEY_LOCK)
    other = await conn.fetchval(
        "SELECT device_id FROM devices WHERE revoked_at IS NULL AND position($1::bytea IN statement) > 0 "
        "ORDER BY device_id LIMIT 1",
        meter_key.encode(),
    )
    if other is not None:
        raise DeviceError(
            409,
            "meter_key_enrolled",
            f"the meter key of device {st.device_id} is already enrolled for device {other}: one meter's signed "
            "values back one device's readings (revoke the other device first if the meter moved)",
        )


async def _claim_asset(conn: asyncpg.Connection, asset_id: str, installer: str, role: RevokerRole) -> None:
    """Bind a new asset to ``installer``, or check that an installer enrols on its own asset.

    The asset's row stays locked until the transaction ends (as :func:`_queue` keeps it), so
    two first enrolments on one asset by two installers cannot both pass.
    """
    await conn.execute(
        "INSERT INTO asset_identity (asset_id, installer) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        asset_id,
        installer,
    )
    owner = await conn.fetchval(
        "SELECT installer FROM asset_identity WHERE asset_id = $1 FOR UPDATE", asset_id
    )
    if owner is None:  # a row made before assets had owners, for an asset with no device: claim it
        await conn.execute(
            "UPDATE asset_identity SET installer = $2 WHERE asset_id = $1", asset_id, installer
        )
    elif owner != installer and role is not RevokerRole.OPERATOR:
        raise DeviceError(
            403,
            "not_your_asset",
            f"asset {asset_id} belongs to the installer who enrolled its first device: {installer} may not "
            "enrol devices on it (their readings would count for that asset; an operator token can)",
        )


async def _check_owner(conn: asyncpg.Connection, device_id: str, actor: str | None, what: str) -> None:
    """Refuse an installer acting on a device it did not enrol (403 ``not_your_device``), or on an
    unknown device (404), from a plain read: before anything is locked, so that refused requests
    cannot stall ingest.  :func:`_record` checks again under the locks."""
    owner = await conn.fetchval("SELECT installer FROM devices WHERE device_id = $1", device_id)
    if owner is None:
        raise DeviceError(404, "unknown_device", f"device {device_id} is not enrolled")
    _check_actor(device_id, owner, actor, what)


def _check_actor(device_id: str, owner: str, actor: str | None, what: str) -> None:
    if actor is not None and owner != actor:
        raise DeviceError(
            403,
            "not_your_device",
            f"device {device_id} was enrolled by another installer: {actor} may not {what} it "
            "(an operator token can)",
        )


async def _record(conn: asyncpg.Connection, device_id: str, actor: str | None, what: str) -> DeviceRecord:
    """The device's record, its row locked until the transaction ends.

    ``actor``: an installer, who may act only on a device it enrolled (403 ``not_your_device``);
    None for an operator, who may act on any.
    """
    stored = await read_devices(conn, [device_id], for_update=True)
    if device_id not in stored:
        raise DeviceError(404, "unknown_device", f"device {device_id} is not enrolled")
    if actor is not None:
        owner = await conn.fetchval("SELECT installer FROM devices WHERE device_id = $1", device_id)
        _check_actor(device_id, owner, actor, what)
    return stored[device_id].record


async def rotate(
    conn: asyncpg.Connection,
    statement: bytes,
    old_signature: bytes,
    new_signature: bytes,
    installer: str,
    *,
    role: RevokerRole,
) -> tuple[str, bytes]:
    """Rotate a device's key for ``installer`` (the token's name) in ``role``; returns (device id,
    new key id).  An installer may rotate only a device it enrolled."""
    entry = RotationEntry(statement, old_signature, new_signature, installer, _now_ms())
    try:
        st = verify_rotation(statement, old_signature, new_signature)
    except AttestError as exc:
        raise DeviceError(400, exc.code, str(exc)) from exc
    actor = None if role is RevokerRole.OPERATOR else installer  # None: may act on any device
    # Refused before change_registry: it waits for every ingest batch and holds ingest off.
    await _check_owner(conn, st.device_id, actor, "rotate the key of")
    async with conn.transaction():
        await change_registry(conn)
        record = await _record(conn, st.device_id, actor, "rotate the key of")
        highest = await conn.fetchval("SELECT max(seq) FROM readings WHERE device_id = $1", st.device_id)
        if highest is not None and st.effective_seq <= highest:
            raise DeviceError(
                409,
                "effective_seq_not_above_accepted",
                f"the new key of device {st.device_id} would take effect at sequence number "
                f"{st.effective_seq}, but readings up to {highest} are already accepted under the old key: "
                f"effective_seq must be at least {highest + 1}",
            )
        registry = Registry()
        registry.devices[st.device_id] = record
        try:
            registry.rotate_verified(-1, st)
        except RegistryError as exc:
            raise DeviceError(409, exc.code, str(exc)) from exc
        key_id = await _add_key(conn, st.device_id, st.new_public_key, st.effective_seq)
        await _queue(conn, entry, st.device_id, record.asset_id)
    return st.device_id, key_id


@dataclass(frozen=True)
class Revoked:
    last_valid_seq: int
    readings_disowned: int
    """Readings the gateway had accepted (logged, or to be logged) above ``last_valid_seq``."""
    role: RevokerRole


async def revoke(
    conn: asyncpg.Connection,
    device_id: str,
    reason: str,
    revoked_by: str,
    last_valid_seq: int | None = None,
    *,
    role: RevokerRole,
) -> Revoked:
    """Revoke a device by ``revoked_by`` (the token's name) in ``role``.

    By default every reading the gateway has accepted so far stays valid and
    nothing after it is accepted.  An installer may revoke only a device it enrolled,
    and only so: a ``last_valid_seq`` below an accepted reading disowns readings
    already logged (or about to be), which needs an operator and a reason (403
    ``disown_needs_operator``).  The entry (revocation v2) records the count and the role.
    """
    actor = None if role is RevokerRole.OPERATOR else revoked_by  # None: may act on any device
    # Refused before change_registry: it waits for every ingest batch and holds ingest off.
    await _check_owner(conn, device_id, actor, "revoke")
    async with conn.transaction():
        await change_registry(conn)
        record = await _record(conn, device_id, actor, "revoke")
        if record.revoked:
            raise DeviceError(409, "already_revoked", f"device {device_id} is already revoked")
        # Read under the registry lock: no batch of ingest can add a reading meanwhile.
        highest: int = await conn.fetchval(
            "SELECT coalesce(max(seq), 0) FROM readings WHERE device_id = $1", device_id
        )
        if last_valid_seq is None:
            last_valid_seq = highest
        disowned: int = await conn.fetchval(
            "SELECT count(*) FROM readings WHERE device_id = $1 AND seq > $2", device_id, last_valid_seq
        )
        try:
            check_revocation_authority(role, disowned, reason)
        except AttestError as exc:
            raise DeviceError(
                403 if exc.code == "disown_needs_operator" else 400,
                exc.code,
                f"device {device_id}: {exc} (the gateway has accepted its readings up to {highest}; "
                f"last_valid_seq {last_valid_seq} would disown {disowned})",
            ) from exc
        try:
            entry = RevocationEntry(device_id, last_valid_seq, reason, revoked_by, _now_ms(), disowned, role)
        except AttestError as exc:
            raise DeviceError(400, exc.code, str(exc)) from exc
        await conn.execute(
            "UPDATE devices SET revoked_at = now(), last_valid_seq = $2 WHERE device_id = $1",
            device_id,
            last_valid_seq,
        )
        await _queue(conn, entry, device_id, record.asset_id)
    return Revoked(int(last_valid_seq), int(disowned), role)
