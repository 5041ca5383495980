"""Device state derived from log entries: keys, assets, revocation.

Both the gateway (when a reading arrives) and the verifier (when it checks a
bundle) replay enrolment, key-rotation and revocation entries in log order
through :class:`Registry`, and ask it which key may sign a reading.  The rules:

* A device is enrolled once, for one asset, with one key.
* A key rotation must be authorized by the device's current key and names the
  first sequence number the new key signs (``effective_seq``); it must be greater
  than the previous key's first sequence number.  Readings with a lower
  sequence number stay valid under the old key.
* A revocation disowns every reading with a sequence number above
  ``last_valid_seq`` (the installer's choice; by default the highest sequence
  number the gateway had accepted).  Readings up to it stay valid even if they
  reach the log after the revocation (late delivery from a device's outbox).
* (v2) A registry that knows its log's origin refuses an enrolment statement that
  names another log (``wrong_log_origin``), and one that knows its log's key refuses a
  statement naming another key by its hash (``wrong_log_key``: a second log may take the
  same name, not the same key): a device's enrolment, and through its chain anchor its
  readings, count in one log only.  A v1 statement names no log;
  it is accepted, and the verdict says it is not bound (attest_core.evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from attest_core.device import AssetKind, EnrolmentStatement, Location, RotationStatement
from attest_core.entries import EnrolmentEntry, RevocationEntry, RotationEntry
from attest_core.errors import AttestError, SignatureError
from attest_core.reading import Envelope, Reading, device_key_id


class RegistryError(AttestError):
    """An identity entry that contradicts the device history before it."""

    code = "registry_conflict"


@dataclass(frozen=True, slots=True)
class KeySpan:
    from_seq: int
    public_key: bytes
    key_id: bytes


@dataclass(slots=True)
class DeviceRecord:
    statement: EnrolmentStatement
    enrolment_index: int
    keys: list[KeySpan] = field(default_factory=list)
    last_valid_seq: int | None = None
    revocation_index: int | None = None
    revocation: RevocationEntry | None = None
    """The revocation entry (who revoked, when, why; v2: the role and how many logged readings
    it disowns), if the replay saw one."""

    @property
    def device_id(self) -> str:
        return self.statement.device_id

    @property
    def asset_id(self) -> str:
        return self.statement.asset_id

    @property
    def asset_kind(self) -> AssetKind:
        return self.statement.asset_kind

    @property
    def rated_power_w(self) -> int:
        return self.statement.rated_power_w

    @property
    def location(self) -> Location | None:
        return self.statement.location

    @property
    def log_origin(self) -> str | None:
        """The log the device enrolled in; None for a v1 enrolment, which names none."""
        return self.statement.log_origin

    @property
    def chain_anchor(self) -> bytes:
        return self.statement.chain_anchor()

    @property
    def current_key(self) -> bytes:
        return self.keys[-1].public_key

    @property
    def revoked(self) -> bool:
        return self.revocation_index is not None

    def key_for(self, key_id: bytes, seq: int) -> bytes:
        """The public key that must have signed reading ``seq`` under ``key_id``."""
        for i, span in enumerate(self.keys):
            if span.key_id == key_id:
                upper = self.keys[i + 1].from_seq if i + 1 < len(self.keys) else None
                if seq < span.from_seq or (upper is not None and seq >= upper):
                    raise SignatureError(
                        f"device {self.device_id}: key {key_id.hex()} does not sign sequence number {seq} "
                        f"(it signs {span.from_seq}..{'' if upper is None else upper - 1})",
                        code="key_not_valid_for_seq",
                    )
                return span.public_key
        raise SignatureError(
            f"device {self.device_id} has no key with id {key_id.hex()}", code="unknown_key_id"
        )

    def disowns(self, seq: int) -> bool:
        return self.last_valid_seq is not None and seq > self.last_valid_seq


def check_log_origin_of(
    statement: EnrolmentStatement, log_origin: str | None, where: str, log_key_hash: bytes | None = None
) -> None:
    """Raise ``wrong_log_origin`` if ``statement`` names a log other than ``log_origin``, and
    ``wrong_log_key`` if it names the log's key by another hash than ``log_key_hash``
    (attest_core.device.log_key_hash of this log's key).

    A v1 statement names none and passes (what to do with it is the caller's policy);
    so does any statement when ``log_origin`` is None, and its key when ``log_key_hash`` is.
    """
    if log_origin is not None and statement.log_origin is not None and statement.log_origin != log_origin:
        raise RegistryError(
            f"{where}: device {statement.device_id} enrolled for the log {statement.log_origin!r}, "
            f"not this log {log_origin!r}: an enrolment counts in the one log it names",
            code="wrong_log_origin",
        )
    if (
        log_key_hash is not None
        and statement.log_key_hash is not None
        and statement.log_key_hash != log_key_hash
    ):
        raise RegistryError(
            f"{where}: device {statement.device_id} enrolled for a log named {statement.log_origin!r} whose key "
            f"hashes to {statement.log_key_hash.hex()}, not this log's key ({log_key_hash.hex()}): another log "
            "of the same name, and an enrolment counts in the one log it names",
            code="wrong_log_key",
        )


class Registry:
    """Devices by id, built by replaying identity entries in log order."""

    def __init__(self, log_origin: str | None = None, log_key_hash: bytes | None = None) -> None:
        self.devices: dict[str, DeviceRecord] = {}
        self.log_origin = log_origin
        """The origin of the log replayed; None: enrolments are not checked against it."""
        self.log_key_hash = log_key_hash
        """attest_core.device.log_key_hash of the replayed log's key; None: not checked."""

    def get(self, device_id: str) -> DeviceRecord | None:
        return self.devices.get(device_id)

    def enrol(self, index: int, entry: EnrolmentEntry) -> DeviceRecord:
        statement = entry.verify()
        return self.enrol_verified(index, statement)

    def enrol_verified(self, index: int, statement: EnrolmentStatement) -> DeviceRecord:
        check_log_origin_of(statement, self.log_origin, f"entry {index}", self.log_key_hash)
        if statement.device_id in self.devices:
            raise RegistryError(
                f"device {statement.device_id} is enrolled twice (log entries "
                f"{self.devices[statement.device_id].enrolment_index} and {index})",
                code="already_enrolled",
            )
        record = DeviceRecord(statement, index)
        record.keys.append(KeySpan(1, statement.public_key, device_key_id(statement.public_key)))
        self.devices[statement.device_id] = record
        return record

    def rotate(self, index: int, entry: RotationEntry) -> DeviceRecord:
        return self.rotate_verified(index, entry.verify())

    def rotate_verified(self, index: int, statement: RotationStatement) -> DeviceRecord:
        record = self._known(statement.device_id, index, "key rotation")
        if record.revoked:
            raise RegistryError(
                f"device {record.device_id} is revoked: its key cannot rotate", code="revoked"
            )
        if statement.old_public_key != record.current_key:
            raise RegistryError(
                f"key rotation of device {record.device_id} at entry {index} is signed by a key "
                "that is not the device's current key",
                code="not_current_key",
            )
        if statement.effective_seq <= record.keys[-1].from_seq:
            raise RegistryError(
                f"key rotation of device {record.device_id} takes effect at sequence number "
                f"{statement.effective_seq}, not after the current key's first ({record.keys[-1].from_seq})",
                code="bad_effective_seq",
            )
        new_id = device_key_id(statement.new_public_key)
        if any(span.key_id == new_id for span in record.keys):
            raise RegistryError(f"device {record.device_id} has used that key before", code="key_reused")
        record.keys.append(KeySpan(statement.effective_seq, statement.new_public_key, new_id))
        return record

    def revoke(self, index: int, entry: RevocationEntry) -> DeviceRecord:
        record = self._known(entry.device_id, index, "revocation")
        if record.revoked:
            raise RegistryError(f"device {record.device_id} is revoked twice", code="revoked")
        record.last_valid_seq = entry.last_valid_seq
        record.revocation_index = index
        record.revocation = entry
        return record

    def check_reading(self, envelope: Envelope, reading: Reading) -> DeviceRecord:
        """Verify a reading against the device's key for its sequence number.

        Raises :class:`SignatureError` (bad or misused key) or :class:`RegistryError`
        (unknown device, asset mismatch, revoked device).  Whether the reading was
        logged after a revocation is the caller's question (it knows log positions).
        """
        record = self.devices.get(reading.device_id)
        if record is None:
            raise RegistryError(f"device {reading.device_id} is not enrolled", code="unknown_device")
        envelope.verify(self._key_for_reading(record, envelope.key_id, reading))
        return record

    def key_for_reading(self, key_id: bytes, reading: Reading) -> bytes:
        """The public key that must have signed ``reading``, whose envelope names ``key_id``.

        Every check of :meth:`check_reading` but the signature itself, with the same errors.
        The key's id is ``key_id`` (that is how it was found), so the envelope's key id needs
        no second look; the caller checks the signature.
        """
        record = self.devices.get(reading.device_id)
        if record is None:
            raise RegistryError(f"device {reading.device_id} is not enrolled", code="unknown_device")
        return self._key_for_reading(record, key_id, reading)

    @staticmethod
    def _key_for_reading(record: DeviceRecord, key_id: bytes, reading: Reading) -> bytes:
        if reading.asset_id != record.asset_id:
            raise RegistryError(
                f"reading {reading.seq} of device {record.device_id} names asset {reading.asset_id}, "
                f"but the device is enrolled for asset {record.asset_id}",
                code="wrong_asset",
            )
        return record.key_for(key_id, reading.seq)

    def _known(self, device_id: str, index: int, what: str) -> DeviceRecord:
        record = self.devices.get(device_id)
        if record is None:
            raise RegistryError(
                f"{what} at entry {index} is for device {device_id}, which is not enrolled before it",
                code="unknown_device",
            )
        return record
