"""An OCPP-J charger as the agent's meter: periodic registers, session events, meter-signed values.

The charger connects to the agent's endpoint (edge_agent/ocpp/server.py); in local mode the agent
is its backend, in proxy mode it relays to the real one.  Either way every charger→backend CALL
passes :meth:`OcppMeter.on_call` *before* it is answered or forwarded:

* registers (``Energy.Active.Import.Register``, meterStart/meterStop) are readings as they arrive;
  between sessions they are also the register of the agent's periodic readings (during one, those
  pause: a register restated later than it was measured dates its energy too late) (:meth:`read`; MeterUnavailable before the first one, or when it is
  older than ``stale_after_s`` and the charger is not connected);
* a session start or end is a reading at once (``Trigger.SESSION_START`` / ``SESSION_END``);
* each meter-signed (OCMF) value is a reading at once, carrying the record exactly
  (``meter_record``), its register = the record's value, its time = the agent's clock at arrival.

Readings are signed and stored through the agent's ``push`` (one SQLite transaction) before the
CALL is answered: a charger that gets its answer has its values on disk, and one that does not
(crash, storage failure → CallError) sends them again.

The enrolment's meter key (``enrol --meter-key``) is the only key whose records are carried: a
charger reporting another key is refused (ERROR naming both keys; ``status`` shows it), and a
record whose signature does not verify under the enrolled key is refused too.  Without an
enrolled meter key the charger's values still make unsigned readings (with a warning).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import ssl
import time
from collections import deque
from typing import Any

from websockets.asyncio.server import ServerConnection

from attest_core.errors import AttestError
from attest_core.metercheck import MeterValue, check_meter_reading, check_meter_value, pagination_problem
from attest_core.meterproof import MeterFormat, MeterKey, MeterRecord
from attest_core.reading import Status, Trigger, decode_envelope
from edge_agent.config import Config
from edge_agent.errors import AgentError
from edge_agent.meters import Push, PushedReading
from edge_agent.meters.base import MeterEvent, MeterSample, MeterUnavailable, ReadingsFollowMeter
from edge_agent.ocpp.server import VERSIONS, OcppEndpoint
from edge_agent.ocpp.values import CallValues, SignedValue, extract
from edge_agent.store import Store

log = logging.getLogger("edge_agent.ocpp")

STATUS_META = "ocpp_status"
LAST_VALUE_META = "ocpp_last_meter_value"
TRANSACTION_COUNTER = "ocpp_transaction_id"
ACCEPTED = ("Accepted", "RebootRequired")
ESSENTIAL = frozenset(
    {
        "SampledDataSignReadings",
        "MeterValuesSampledData",
        "MeterValueSampleInterval",
        "SampledDataCtrlr.SignReadings",
        "SampledDataCtrlr.TxUpdatedMeasurands",
        "SampledDataCtrlr.TxUpdatedInterval",
        "SetVariables",
        "GetConfiguration",
    }
)
"""Settings without which signed or periodic register values do not come (the others refine them)."""
SEEN_KEPT = 256


class StorageFailed(AgentError):
    """The readings could not be stored: the charger gets a CallError and sends them again."""


class OcppMeter:
    simulated = False

    def __init__(self, config: Config, store: Store, meter_key: MeterKey | None) -> None:
        self.config = config
        self.settings = config.meter.ocpp
        self.store = store
        self.meter_key = meter_key
        self.push: Push | None = None
        self.endpoint = OcppEndpoint(self.settings, self._handle)
        self._register: int | None = None
        self._charging: set[str] = set()
        """Chargers in a session: their reports are the readings, the clock-driven ones pause."""
        self._register_at = 0.0
        self._connected: dict[str, int] = {}
        """Open connections per charge point id (a charger that reconnects may briefly have two)."""
        self._tip_mwh: int | None = None
        """The register of the newest reading taken (from the chain's state at start): a signed value
        below it would send the chain's register backwards."""
        self._seen: deque[bytes] = deque(maxlen=SEEN_KEPT)
        self._signed_in_session: dict[str, int] = {}
        self._warned_unsigned = False
        self._upstream_ssl: ssl.SSLContext | None = None
        self._last_value: MeterValue | None = None
        """The newest meter value carried (its pagination: the next must rise)."""
        self._pending_value: MeterValue | None = None
        self.status: dict[str, Any] = {
            "meter_key": meter_key.hex() if meter_key else None,
            "chargers": {},
            "problems": [],
        }
        self._save_status()

    # ------------------------------------------------------------------ Meter

    def attach(self, push: Push) -> None:
        """The agent's :data:`edge_agent.meters.Push`: sign and store readings now."""
        self.push = push

    def _remember_carried(self) -> None:
        """The records the newest readings in the outbox carry (a charger that sends one again, having got
        no answer before a restart, does not get a second reading of it), and the newest meter value
        carried (from the outbox, or kept in the state database once receipts emptied the outbox)."""
        self._last_value = self._load_last_value()
        chain = self.store.chain(self.config.device_id)
        if chain is None:
            return
        self._tip_mwh = chain.last_energy_mwh
        after = max(0, chain.state.next_seq - 1 - SEEN_KEPT)
        for _, envelope in self.store.pending(self.config.device_id, after, SEEN_KEPT):
            try:
                reading = decode_envelope(envelope).reading()
                record = reading.meter_record
            except AttestError:
                continue
            if record is None:
                continue
            self._seen.append(_digest(record))
            value, _ = check_meter_reading(reading, self.meter_key)
            if value is not None and (self._last_value is None or value.seq > self._last_value.seq):
                self._last_value = value

    def _load_last_value(self) -> MeterValue | None:
        text = self.store.get_meta(LAST_VALUE_META)
        if not text:
            return None
        try:
            doc = json.loads(text)
            return MeterValue(
                int(doc["seq"]),
                base64.b64decode(doc["record"]),
                int(doc["value_index"]),
                (str(doc["letter"]), int(doc["counter"])),
                str(doc.get("register", "")),
            )
        except (ValueError, KeyError, TypeError):
            log.warning("OCPP: the newest meter value kept in the state database is unreadable: ignored")
            return None

    def _save_last_value(self) -> None:
        value = self._last_value
        if value is None:
            return
        doc = {
            "seq": value.seq,
            "record": base64.b64encode(value.record).decode("ascii"),
            "value_index": value.value_index,
            "letter": value.page[0],
            "counter": value.page[1],
            "register": value.register,
        }
        try:
            self.store.set_meta(LAST_VALUE_META, json.dumps(doc))
        except Exception:  # the outbox holds it too until a receipt; the next value saves it again
            log.exception("OCPP: could not keep the newest meter value")

    async def start(self) -> None:
        self._remember_carried()
        if not self.settings.chargers:
            raise MeterUnavailable(
                f'{self.config.path}: [meter.ocpp] chargers is empty: add the charger, e.g. chargers = {{ "CP-1" = '
                '"its password" }'
            )
        if self.settings.mode == "proxy":
            self._prepare_proxy()
        if self.meter_key is None:
            log.warning(
                "OCPP: no meter key was enrolled (enrol --meter-key): the charger's values make UNSIGNED readings "
                "only; an Eichrecht charger's signed values cannot be carried"
            )
        try:
            await self.endpoint.start()
        except OSError as exc:
            raise MeterUnavailable(
                f"cannot listen on {self.settings.listen_host}:{self.settings.listen_port} for chargers: {exc}"
            ) from exc
        scheme = "wss" if self.settings.cert_file else "ws"
        self.status["listening"] = (
            f"{scheme}://{self.settings.listen_host}:{self.endpoint.port}{self.settings.path.rstrip('/')}/"
        )
        self.status["listen_port"] = self.endpoint.port
        self._save_status()

    def _prepare_proxy(self) -> None:
        """Check the backend settings before any charger connects (a bad one stops the agent, saying why)."""
        from edge_agent.ocpp.proxy import ProxyError, Upstream, upstream_ssl_context

        s = self.settings
        if not s.upstream_url:
            raise MeterUnavailable(
                f'{self.config.path}: [meter.ocpp] mode = "proxy" needs upstream_url (the charger\'s real backend, '
                "wss://...)"
            )
        context = None
        try:
            if s.upstream_url.startswith("wss://"):
                context = upstream_ssl_context(
                    s.upstream_ca_file or None, s.upstream_cert_file or None, s.upstream_key_file or None
                )
            Upstream(s.upstream_url, ssl=context)
        except ProxyError as exc:
            raise MeterUnavailable(f"{self.config.path}: [meter.ocpp] {exc}") from None
        self._upstream_ssl = context
        log.info("OCPP proxy mode: chargers are relayed to %s", s.upstream_url)

    def upstream_for(self, charge_point_id: str) -> Any:
        """The backend as this charger reaches it (user name: the configured one, else the charge point id)."""
        from edge_agent.ocpp.proxy import Upstream

        s = self.settings
        if not s.upstream_password:
            return Upstream(s.upstream_url, ssl=self._upstream_ssl)
        return Upstream(
            s.upstream_url,
            username=s.upstream_username or charge_point_id,
            password=s.upstream_password,
            ssl=self._upstream_ssl,
        )

    @property
    def port(self) -> int:
        return self.endpoint.port

    async def read(self, time_ms: int) -> MeterSample:
        if self._charging:
            raise ReadingsFollowMeter(
                f"charger {', '.join(sorted(self._charging))} is in a session: each register it reports is a reading"
            )
        if self._register is None:
            raise MeterUnavailable("the charger has not reported its energy register yet")
        age = time.monotonic() - self._register_at
        if not self._connected and age > self.settings.stale_after_s:
            raise MeterUnavailable(
                f"no charger is connected and its last register is {int(age)} s old "
                f"(more than [meter.ocpp] stale_after_s = {self.settings.stale_after_s:g})"
            )
        self._tip_mwh = self._register if self._tip_mwh is None else max(self._tip_mwh, self._register)
        return MeterSample(self._register)

    def events(self, after_ms: int, until_ms: int) -> list[MeterEvent]:
        return []  # sessions are readings as soon as the charger reports them (on_call)

    async def close(self) -> None:
        await self.endpoint.close()
        self._save_status()

    # ------------------------------------------------------------------ connections

    async def _handle(self, connection: ServerConnection, charge_point_id: str, subprotocol: str) -> None:
        from edge_agent.ocpp.local16 import LocalBackend16
        from edge_agent.ocpp.local201 import LocalBackend201

        self.connected(charge_point_id, subprotocol, True)
        try:
            if self.settings.mode == "proxy":
                from edge_agent.ocpp.proxy import relay

                await relay(
                    connection,
                    charge_point_id=charge_point_id,
                    subprotocol=subprotocol,
                    upstream=self.upstream_for(charge_point_id),
                    on_call=self.on_call,
                    max_frame_bytes=self.settings.max_frame_bytes,
                )
                return
            backend: LocalBackend16 | LocalBackend201
            if subprotocol == "ocpp1.6":
                backend = LocalBackend16(charge_point_id, connection, self)
            else:
                backend = LocalBackend201(charge_point_id, connection, self)
            await backend.serve()
        finally:
            self.connected(charge_point_id, subprotocol, False)

    def connected(self, charge_point_id: str, subprotocol: str, up: bool) -> None:
        if up:
            if self._connected and charge_point_id not in self._connected:
                log.warning(
                    "OCPP: charger %s connected while %s is connected: one device takes the readings of one "
                    "charger's meter; their registers will be mixed",
                    charge_point_id,
                    ", ".join(self._connected),
                )
            self._connected[charge_point_id] = self._connected.get(charge_point_id, 0) + 1
        else:
            left = self._connected.get(charge_point_id, 1) - 1
            if left > 0:
                self._connected[charge_point_id] = left
            else:
                self._connected.pop(charge_point_id, None)
        entry = self._charger(charge_point_id)
        entry["connected"] = charge_point_id in self._connected
        entry["version"] = VERSIONS.get(subprotocol, subprotocol)
        entry["since_ms"] = _now_ms()
        self._save_status()

    def id_tag_allowed(self, id_tag: str) -> bool:
        return id_tag in self.settings.id_tags

    def next_transaction_id(self) -> int:
        value = self.store.counter(TRANSACTION_COUNTER) + 1
        self.store.set_counter(TRANSACTION_COUNTER, value)
        return value

    def config_answer(self, charge_point_id: str, name: str, value: str, answer: str) -> None:
        entry = self._charger(charge_point_id)
        entry.setdefault("config", {})[name] = answer
        if answer in ACCEPTED:
            log.info("OCPP: charger %s: %s = %s: %s", charge_point_id, name, value, answer)
        elif name in ESSENTIAL or name.startswith("("):
            log.warning(
                "OCPP: charger %s answered %s to setting %s%s: %s",
                charge_point_id,
                answer,
                name,
                f" = {value}" if value else "",
                "it may not send signed meter values; see docs/installers.md (OCPP chargers)"
                if "Sign" in name or name.startswith("(")
                else "its meter values may come less often or not at all",
            )
        else:  # an optional refinement (clock-aligned values, begin/end measurands): chargers often lack it
            log.info(
                "OCPP: charger %s answered %s to the optional setting %s = %s",
                charge_point_id,
                answer,
                name,
                value,
            )
        self._save_status()

    def reported_key(self, charge_point_id: str, key_text: str, source: str) -> None:
        entry = self._charger(charge_point_id)
        try:
            reported = MeterKey.from_text(key_text)
        except AttestError as exc:
            log.warning(
                "OCPP: charger %s reported a meter key (%s) that cannot be read: %s",
                charge_point_id,
                source,
                exc,
            )
            return
        entry["meter_key_reported"] = reported.hex()
        if self.meter_key is None:
            log.warning(
                "OCPP: charger %s reports the meter public key %s (%s) but this device was enrolled without a "
                "meter key: its signed values are not carried. Re-enrol with --meter-key %s",
                charge_point_id,
                reported.hex(),
                source,
                reported.hex(),
            )
        elif reported.public_key != self.meter_key.public_key:
            message = (
                f"charger {charge_point_id} reports the meter public key {reported.hex()} ({source}), but this "
                f"device was enrolled with the meter key {self.meter_key.hex()}: its signed values are REFUSED "
                "(no readings from them). Check the meter's label or display; if the meter was replaced, the "
                "installer must re-enrol the device with the new key (a new device: init, then enrol --meter-key)"
            )
            if entry.get("key_mismatch") != message:
                log.error("OCPP: %s", message)
            entry["key_mismatch"] = message
        else:
            entry.pop("key_mismatch", None)
        self._save_status()

    # ------------------------------------------------------------------ CALLs

    async def on_call(
        self, charge_point_id: str, subprotocol: str, action: str, payload: dict[str, Any]
    ) -> None:
        """Store what one charger→backend CALL says about the meter (before it is answered)."""
        version = VERSIONS.get(subprotocol)
        if version is None:
            return
        values = extract(version, action, payload)
        for problem in values.problems:
            log.warning("OCPP: charger %s, %s: %s", charge_point_id, action, problem)
        for key_text in values.public_keys:
            self.reported_key(charge_point_id, key_text, f"publicKey of a signed value in {action}")
        entry = self._charger(charge_point_id)
        entry["last_message_ms"] = _now_ms()
        if not values.registers and not values.signed and values.session is None:
            return
        now_ms = _now_ms()
        pushed = self._readings(charge_point_id, values, now_ms)
        if pushed:
            if self.push is None:
                raise StorageFailed("the meter is not attached to an agent")
            if not self.push(pushed):
                raise StorageFailed("the readings could not be stored")
            last_mwh = pushed[-1].sample.energy_mwh
            self._tip_mwh = last_mwh if self._tip_mwh is None else max(self._tip_mwh, last_mwh)
            for reading in pushed:
                if reading.meter_record is not None:
                    self._seen.append(_digest(reading.meter_record))
            if self._pending_value is not self._last_value and self._pending_value is not None:
                self._last_value = self._pending_value
                self._save_last_value()
        energies = [r.energy_mwh for r in values.registers] + [s.energy_mwh for s in values.signed]
        if energies:
            self._register = max(energies)
            self._register_at = time.monotonic()
        if values.session == "start":
            self._charging.add(charge_point_id)
        elif values.session == "end":
            self._charging.discard(charge_point_id)
        self._after_session(charge_point_id, values)
        self._save_status()

    def _readings(self, charge_point_id: str, values: CallValues, now_ms: int) -> list[PushedReading]:
        entry = self._charger(charge_point_id)
        if values.session == "start":
            self._signed_in_session[charge_point_id] = 0
        pushed: list[PushedReading] = []
        chain = self.store.chain(self.config.device_id)
        next_seq = chain.state.next_seq if chain is not None else 1
        last_value = self._last_value
        for n, signed in enumerate(values.signed):
            if _digest_of(signed.value_index, signed.record) in self._seen:
                # Chargers repeat values (1.6: the begin value again in StopTransaction; a CALL resent
                # after a lost answer): one reading per signed value.
                log.info(
                    "OCPP: charger %s sent value %d of an OCMF record again: already carried by a reading",
                    charge_point_id,
                    signed.value_index,
                )
                continue
            if (
                self._tip_mwh is not None
                and signed.energy_mwh < self._tip_mwh
                and any(later.record == signed.record for later in values.signed[n + 1 :])
            ):
                # A begin value sent at the end, after later registers were read: a reading of it would
                # go backwards.  The same record (begin and end, signed together) is carried by the end
                # value's reading, so nothing of what the meter signed is lost.
                log.info(
                    "OCPP: charger %s: value %d of an OCMF record (%d mWh) is below the register already read "
                    "(%d mWh): it is carried by the reading of the record's later value",
                    charge_point_id,
                    signed.value_index,
                    signed.energy_mwh,
                    self._tip_mwh,
                )
                continue
            if self._tip_mwh is not None and signed.energy_mwh < self._tip_mwh:
                # A reading of it would make the register go backwards (a fatal METER_ERROR for the
                # asset's claims): typically a begin value in its own record, sent only at the end.
                log.warning(
                    "OCPP: charger %s: a meter-signed value (%d mWh, value %d of its OCMF record) arrived after "
                    "the register had already reached %d mWh: not carried (the chain's register cannot go "
                    "backwards). Ask the charger to send signed begin values when the session starts",
                    charge_point_id,
                    signed.energy_mwh,
                    signed.value_index,
                    self._tip_mwh,
                )
                entry["late_values"] = int(entry.get("late_values", 0)) + 1
                continue
            if self.meter_key is None:
                # No enrolled key to check it against: the value itself, as an unsigned reading.
                self._warn_unsigned(charge_point_id)
                pushed.append(PushedReading(now_ms, MeterSample(signed.energy_mwh)))
                continue
            if any(value.status == "M" for value in signed.ocmf.readings):
                # The meter itself reports manipulation: no reading can carry the record (the gateway
                # refuses it, meter_manipulated), but the alarm must reach the log: a reading flagged
                # TAMPER, with the register where it was (a manipulated meter's value is not evidence).
                log.error(
                    "OCPP: charger %s: the meter signed status M (manipulation detected): a reading flagged "
                    "TAMPER is logged (claims over it are not backed); check the meter's seal",
                    charge_point_id,
                )
                entry["tamper_reports"] = int(entry.get("tamper_reports", 0)) + 1
                kept = self._tip_mwh if self._tip_mwh is not None else signed.energy_mwh
                pushed.append(PushedReading(now_ms, MeterSample(kept, None, Status.TAMPER)))
                continue
            accepted = self._accept(
                charge_point_id, signed, seq=next_seq + len(pushed), time_ms=now_ms, last=last_value
            )
            if accepted is None:
                continue
            record, meter_value = accepted
            if meter_value is not None:
                last_value = meter_value
            pushed.append(PushedReading(now_ms, MeterSample(signed.energy_mwh), meter_record=record))
            self._signed_in_session[charge_point_id] = self._signed_in_session.get(charge_point_id, 0) + 1
            entry["signed_values"] = int(entry.get("signed_values", 0)) + 1
            entry["last_signed_ms"] = now_ms
        self._pending_value = last_value
        if values.session is not None:
            trigger = Trigger.SESSION_START if values.session == "start" else Trigger.SESSION_END
            if pushed:
                last = pushed[-1] if values.session == "end" else pushed[0]
                index = pushed.index(last)
                pushed[index] = PushedReading(last.time_ms, last.sample, trigger, last.meter_record)
            else:
                register = values.last_register_mwh if values.registers else self._register
                if register is None:
                    log.warning(
                        "OCPP: charger %s: a session %s without any register known yet: no reading for it",
                        charge_point_id,
                        values.session,
                    )
                else:
                    pushed.append(PushedReading(now_ms, MeterSample(register), trigger))
        reported = values.last_register_mwh
        if not pushed and reported is not None and (self._tip_mwh is None or reported >= self._tip_mwh):
            # A register the charger reports (MeterValues during a session) is a reading when it
            # arrives, dated when it was measured, give or take the network: a register restated by
            # the agent's clock later would date its energy too late (see read()).
            pushed.append(PushedReading(now_ms, MeterSample(reported)))
        return pushed

    def _warn_unsigned(self, charge_point_id: str) -> None:
        if not self._warned_unsigned:
            self._warned_unsigned = True
            log.warning(
                "OCPP: charger %s sends meter-signed values but no meter key was enrolled: they make unsigned "
                "readings. Re-enrol with --meter-key (docs/installers.md)",
                charge_point_id,
            )

    def _accept(
        self, charge_point_id: str, signed: SignedValue, *, seq: int, time_ms: int, last: MeterValue | None
    ) -> tuple[MeterRecord, MeterValue | None] | None:
        """The record to carry (and its meter value, for the pagination), or None: no key enrolled, key
        mismatch, or a record that would not bind the reading (the same check the gateway makes at ingest,
        attest_core.metercheck: a reading it refuses would stop this device's log)."""
        if self.meter_key is None:
            return None
        entry = self._charger(charge_point_id)
        if entry.get("key_mismatch"):
            log.error("OCPP: %s", entry["key_mismatch"])
            entry["refused_values"] = int(entry.get("refused_values", 0)) + 1
            return None
        try:
            carried = MeterRecord(MeterFormat.OCMF, signed.value_index, signed.record)
        except AttestError as exc:
            problem: str | None = f"the record cannot be carried: {exc}"
        else:
            value, found = check_meter_value(
                carried, self.meter_key, seq=seq, time_ms=time_ms, energy_mwh=signed.energy_mwh
            )
            problem = None if found is None or not found.fatal else f"{found.code}: {found.message}"
            if problem is None and value is not None and last is not None:
                if last.register and value.register != last.register:
                    problem = (
                        f"meter_register_mismatch: the meter signed register {value.register}, its last value "
                        f"register {last.register}"
                    )
                elif last.page[0] == value.page[0]:
                    problem = pagination_problem(last, value)
                    problem = None if problem is None else f"meter_pagination: {problem}"
            if problem is None:
                return carried, value
        entry["refused_values"] = int(entry.get("refused_values", 0)) + 1
        log.error(
            "OCPP: charger %s: a meter-signed value (value %d of its OCMF record, %d mWh) is REFUSED, no reading "
            "carries it (the gateway would refuse such a reading): %s",
            charge_point_id,
            signed.value_index,
            signed.energy_mwh,
            problem,
        )
        return None

    def _after_session(self, charge_point_id: str, values: CallValues) -> None:
        if values.session != "end" or self.meter_key is None:
            return
        entry = self._charger(charge_point_id)
        if self._signed_in_session.get(charge_point_id, 0) == 0:
            warning = (
                f"charger {charge_point_id} ended a session without sending any meter-signed value, although "
                "this device was enrolled with a meter key: check the charger's signed meter value settings "
                "(docs/installers.md, OCPP chargers)"
            )
            log.warning("OCPP: %s", warning)
            entry["unsigned_session_ms"] = _now_ms()
            entry["warning"] = warning
        else:
            entry.pop("warning", None)
        self._signed_in_session[charge_point_id] = 0

    # ------------------------------------------------------------------ status

    def _charger(self, charge_point_id: str) -> dict[str, Any]:
        chargers: dict[str, dict[str, Any]] = self.status["chargers"]
        return chargers.setdefault(charge_point_id, {"connected": False})

    def _save_status(self) -> None:
        try:
            self.store.set_meta(STATUS_META, json.dumps(self.status, sort_keys=True))
        except Exception:  # status is for people: never a reason to lose a reading
            log.exception("OCPP: could not save the charger status")


def _digest(record: MeterRecord) -> bytes:
    return _digest_of(record.value_index, record.record)


def _digest_of(value_index: int, record: bytes) -> bytes:
    return hashlib.sha256(bytes([value_index & 0xFF]) + record).digest()


def _now_ms() -> int:
    return int(time.time() * 1000)


def load_ocpp_status(store: Store) -> dict[str, Any] | None:
    text = store.get_meta(STATUS_META)
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def format_ocpp_status(info: dict[str, Any] | None) -> list[str]:
    """The ``status`` lines of an OCPP charger."""
    if not info:
        return ["chargers      none has connected yet"]
    lines = []
    if info.get("listening"):
        lines.append(f"OCPP          chargers connect to {info['listening']}<charge point id>")
    key = info.get("meter_key")
    lines.append(
        f"meter key     {key if key else 'NONE enrolled: signed values are not carried (enrol --meter-key)'}"
    )
    chargers = info.get("chargers") or {}
    if not chargers:
        lines.append("chargers      none has connected yet")
    for name, entry in sorted(chargers.items()):
        state = "connected" if entry.get("connected") else "not connected"
        lines.append(
            f"charger       {name}: {state} (OCPP {entry.get('version', '?')}), "
            f"{entry.get('signed_values', 0)} signed values carried, {entry.get('refused_values', 0)} refused"
        )
        for setting, answer in sorted((entry.get("config") or {}).items()):
            if answer not in ACCEPTED and (setting in ESSENTIAL or setting.startswith("(")):
                lines.append(
                    f"  WARNING     it answered {answer} to {setting}: signed meter values may not come"
                )
        if entry.get("key_mismatch"):
            lines.append(f"  ERROR       {entry['key_mismatch']}")
        if entry.get("warning"):
            lines.append(f"  WARNING     {entry['warning']}")
    return lines
