"""One device's reading machinery: build, sign, chain, commit, hand to MQTT, apply receipts.

Shared by the agent (one device, a real or simulated meter) and the fleet
simulator (many devices, batched commits).  The order is always:

1. build and sign the next reading from the *tip* chain state;
2. commit it with the new chain state (:meth:`edge_agent.store.Store.append`);
3. only then advance the committed state and offer it to the MQTT link.

If the commit fails (disk full, I/O error) the tip is rolled back: the sequence
number is reused by the next reading, which is safe because nobody saw the
failed one.

Outbox policy: the outbox is bounded by ``[outbox] max_readings`` only in the
sense that crossing 80 % and reaching the limit log loud warnings (repeated every
10 minutes, every minute when full).  Readings are **never dropped** and never
thinned: every reading is a signed statement the log should get, and the register
is cumulative, so nothing is lost by waiting — the agent keeps taking readings
until the disk itself is full (then the commit fails, the reading is not taken,
an error is logged each interval, and taking readings resumes by itself when
space is freed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from attest_core.chain import ChainState, next_reading
from attest_core.entries import reading_entry_bytes
from attest_core.errors import AttestError, ProofError
from attest_core.keys import Signer
from attest_core.meterproof import MeterRecord
from attest_core.reading import Status, Trigger
from attest_core.receipt import (
    ProvenTree,
    Receipt,
    carried_consistency,
    check_extension,
    check_inclusion,
    open_receipt,
)
from edge_agent.meters.base import MeterSample
from edge_agent.mqtt import MqttLink
from edge_agent.store import NewReading, Store

log = logging.getLogger("edge_agent.device")

WARN_FRACTION = 0.8


@dataclass
class Tip:
    state: ChainState
    last_time_ms: int | None
    last_energy_mwh: int | None


class DeviceRuntime:
    def __init__(
        self,
        *,
        device_id: str,
        asset_id: str,
        anchor: bytes,
        signer: Signer,
        store: Store,
        log_public_key: bytes | None,
        max_outbox: int = 500_000,
        simulated: bool = False,
        quiet: bool = False,
        keep_receipts_ms: int = 90 * 86_400_000,
        fetch_consistency: Callable[[int, int], list[bytes]] | None = None,
    ) -> None:
        self.device_id = device_id
        self.asset_id = asset_id
        self.signer = signer
        self.store = store
        self.log_public_key = log_public_key
        self.max_outbox = max_outbox
        self.simulated = simulated
        self.quiet = quiet
        row = store.init_chain(device_id, anchor)
        self.committed = Tip(row.state, row.last_time_ms, row.last_energy_mwh)
        self.tip = Tip(row.state, row.last_time_ms, row.last_energy_mwh)
        self.depth = store.depth(device_id)
        self.link: MqttLink | None = None
        self.first = True
        self.halted = ""
        self.made = 0
        self.receipted = 0
        self.rejected_receipts = 0
        self.refused_receipts = 0
        """Receipts signed by the log key whose proof failed (this run; the store keeps them)."""
        self.unproven_receipts = 0
        """Receipts that could not be proven yet (the consistency proof could not be had)."""
        self.keep_receipts_ms = keep_receipts_ms
        self.fetch_consistency = fetch_consistency
        """fetch(from_size, to_size): an RFC 9162 consistency proof from the gateway's API (blocking)."""
        self.last_receipt_seq = 0
        last = store.last_receipt(device_id)
        if last is not None:
            self.last_receipt_seq = last.seq
        self._warned_at = -1e18
        self._warned_level = 0

    # ------------------------------------------------------------------ readings

    def build(
        self,
        time_ms: int,
        sample: MeterSample,
        trigger: Trigger = Trigger.PERIODIC,
        *,
        clock_synced: bool = True,
        meter_record: MeterRecord | None = None,
    ) -> NewReading:
        """Sign the next reading on top of the tip (not stored yet: commit it with the store).

        ``meter_record``: the meter's own signed record whose value ``sample`` is (a certified
        charger's OCMF record), carried exactly; dropped if the register cannot be that value.
        """
        tip = self.tip
        status = sample.status
        energy = sample.energy_mwh
        power = sample.power_mw
        if status & Status.METER_ERROR:
            # The meter has no trustworthy value: keep the register where it was.
            energy = tip.last_energy_mwh if tip.last_energy_mwh is not None else 0
            power = None
        elif tip.last_energy_mwh is not None and energy < tip.last_energy_mwh:
            log.error(
                "%s: the meter register went backwards (%d mWh -> %d mWh): reading flagged METER_ERROR, "
                "register kept at %d mWh",
                self.device_id,
                tip.last_energy_mwh,
                energy,
                tip.last_energy_mwh,
            )
            status |= Status.METER_ERROR
            energy = tip.last_energy_mwh
        if meter_record is not None and energy != sample.energy_mwh:
            log.error(
                "%s: the meter-signed value %d mWh cannot be carried by a reading of %d mWh: the record is "
                "left out of this reading",
                self.device_id,
                sample.energy_mwh,
                energy,
            )
            meter_record = None
        if self.simulated:
            status |= Status.SIMULATED
        if not clock_synced:
            status |= Status.TIME_UNSYNCED
        if tip.last_time_ms is not None and time_ms < tip.last_time_ms:
            log.warning(
                "%s: the clock is behind the last reading (%d < %d ms): using the last reading's time",
                self.device_id,
                time_ms,
                tip.last_time_ms,
            )
            time_ms = tip.last_time_ms
            status |= Status.TIME_UNSYNCED
            if meter_record is not None:
                # The meter's signed time was checked against the time the value arrived, not this
                # one: a reading the gateway refuses would stop the device's log at it.
                log.error(
                    "%s: the clock went back: the meter-signed record is left out of this reading",
                    self.device_id,
                )
                meter_record = None
        if self.first:
            status |= Status.POWER_UP
            if trigger is Trigger.PERIODIC:
                trigger = Trigger.BOOT
        envelope, state = next_reading(
            tip.state,
            self.signer,
            device_id=self.device_id,
            asset_id=self.asset_id,
            time_ms=time_ms,
            energy_mwh=energy,
            power_mw=power,
            status=status,
            trigger=trigger,
            meter_record=meter_record,
        )
        reading = NewReading(self.device_id, tip.state.next_seq, time_ms, energy, envelope.encode(), state)
        self.tip = Tip(state, time_ms, energy)
        self.first = False
        return reading

    def rollback(self) -> None:
        """The commit failed: forget what was built since the last commit."""
        self.tip = Tip(self.committed.state, self.committed.last_time_ms, self.committed.last_energy_mwh)

    def committed_ok(self, readings: list[NewReading]) -> None:
        """The readings are durable: advance, offer them to the link, watch the outbox size."""
        if not readings:
            return
        last = readings[-1]
        self.committed = Tip(last.state, last.time_ms, last.energy_mwh)
        self.depth += len(readings)
        self.made += len(readings)
        link = self.link
        if link is not None:
            for reading in readings:
                link.offer(reading.seq, reading.envelope)
        self._watch_outbox()

    @property
    def last_seq(self) -> int:
        return self.committed.state.next_seq - 1

    def _watch_outbox(self) -> None:
        limit = self.max_outbox
        if self.depth < WARN_FRACTION * limit:
            self._warned_level = 0
            return
        full = self.depth >= limit
        level = 2 if full else 1
        now = time.monotonic()
        if level > self._warned_level or now - self._warned_at >= (60 if full else 600):
            self._warned_level = level
            self._warned_at = now
            if full:
                log.error(
                    "%s: OUTBOX FULL: %d readings wait for a receipt (limit %d). Nothing is dropped: "
                    "readings are still taken and kept until the disk is full. Check the broker "
                    "connection and the gateway.",
                    self.device_id,
                    self.depth,
                    limit,
                )
            else:
                log.warning(
                    "%s: the outbox is at %d %% of its limit (%d of %d readings wait for a receipt): "
                    "is the gateway sending receipts?",
                    self.device_id,
                    100 * self.depth // limit,
                    self.depth,
                    limit,
                )

    # ------------------------------------------------------------------ receipts

    def on_receipt(self, data: bytes) -> None:
        """A message on the receipts topic: delete what it proves to be in the log, nothing else.

        (v2; v1 deleted on the log key's signature alone.)  The receipt must be signed by the log
        key, prove reading ``seq`` (as this device stored it) in its signed tree, and prove that tree
        an extension of the last one this device proved.  By the log's invariant (the sequencer
        appends reading n of a device only after reading n - 1), the readings before ``seq`` are
        then in the log too, and they all leave the outbox.  A receipt that fails a proof deletes
        nothing: it is logged, counted and kept (``refused_receipts``) as evidence against the log.
        """
        self._handle_receipt(data, None)

    def _handle_receipt(self, data: bytes, fetched: tuple[int, list[bytes]] | None) -> None:
        if self.log_public_key is None:
            log.error(
                "%s: a receipt arrived but no log key is configured ([gateway] log_key): ignored; "
                "run `enrol` again to fetch the log key",
                self.device_id,
            )
            return
        try:
            receipt = open_receipt(data, self.log_public_key)
        except AttestError as exc:
            self.rejected_receipts += 1
            log.error(
                "%s: REJECTED a message on the receipts topic (%s: %s). It is not a receipt signed by "
                "the log key; nothing was deleted from the outbox. Someone may be publishing forged "
                "receipts on the broker.",
                self.device_id,
                exc.code,
                exc,
            )
            return
        if receipt.device_id != self.device_id:
            self.rejected_receipts += 1
            log.error(
                "%s: REJECTED a receipt for another device (%s): nothing deleted",
                self.device_id,
                receipt.device_id,
            )
            return
        if receipt.seq > self.last_seq:
            self.halted = (
                f"the log holds reading {receipt.seq} of {self.device_id} but this device has only made "
                f"{self.last_seq}: its state directory is older than the log (restored from a backup? "
                "copied key?). New readings would reuse sequence numbers, so taking readings has STOPPED. "
                "Ask the operator to revoke this device and enrol a new key."
            )
            log.critical("%s: %s", self.device_id, self.halted)
            return  # nothing of this device's to prove it against: nothing is deleted
        last = self.store.last_receipt(self.device_id)
        if last is not None and receipt.seq <= last.seq and receipt.tree_size <= last.tree_size:
            log.debug("%s: receipt for seq %d: already proven, nothing to do", self.device_id, receipt.seq)
            return
        envelope = self.store.envelope(self.device_id, receipt.seq)
        if envelope is None:
            # Deleted by a receipt proven in a larger tree meanwhile: nothing left to prove.
            log.info(
                "%s: receipt for seq %d, no longer in the outbox: nothing to do", self.device_id, receipt.seq
            )
            return
        try:
            check_inclusion(receipt, reading_entry_bytes(envelope))
            if last is not None:
                proven = ProvenTree(last.tree_size, last.root_hash)
                proof = carried_consistency(receipt, proven)
                if proof is None and fetched is not None and fetched[0] == proven.size:
                    proof = fetched[1]
                if proof is None and receipt.tree_size > proven.size:
                    self._fetch_then_retry(data, receipt, proven.size)
                    return
                check_extension(receipt, proven, proof or [])
        except ProofError as exc:
            self._refuse(receipt, data, exc)
            return
        self._proven(receipt, data, first=last is None)

    def _refuse(self, receipt: Receipt, data: bytes, exc: ProofError) -> None:
        self.refused_receipts += 1
        log.error(
            "%s: REFUSED a receipt signed by the log key whose proof FAILED (%s): %s. Nothing was deleted: "
            "readings up to seq %d stay in the outbox and are sent again. The receipt is kept as evidence "
            "(`status` shows it); report it to the log operator and the auditors.",
            self.device_id,
            exc.code,
            exc,
            receipt.seq,
        )
        now = int(time.time() * 1000)
        self.store.refuse_receipt(self.device_id, data, exc.code, str(exc), now, self.keep_receipts_ms)

    def _proven(self, receipt: Receipt, data: bytes, *, first: bool) -> None:
        deleted = self.store.prove_receipt(receipt, data, int(time.time() * 1000), self.keep_receipts_ms)
        self.depth = max(0, self.depth - deleted)
        self.receipted += deleted
        if receipt.seq > self.last_receipt_seq:
            self.last_receipt_seq = receipt.seq
        if self.link is not None and deleted:
            self.link.receipt_progress()
        if not self.quiet:
            log.info(
                "%s: receipt proven: reading %d is in the log at index %d of the tree of %d entries (root %s)%s; "
                "%d removed from the outbox, %d waiting",
                self.device_id,
                receipt.seq,
                receipt.log_index,
                receipt.tree_size,
                receipt.root_hash.hex()[:16],
                ", the first tree this device proved" if first else ", extending the last one proven",
                deleted,
                self.depth,
            )

    def _fetch_then_retry(self, data: bytes, receipt: Receipt, from_size: int) -> None:
        """The receipt's consistency proof starts elsewhere than this device's last proven tree (a missed
        receipt, a gateway restart): fetch the proof from the gateway's API, off the event loop, and
        handle the receipt again with it.  Until then nothing is deleted."""
        fetch = self.fetch_consistency
        if fetch is None:
            self.unproven_receipts += 1
            log.warning(
                "%s: a receipt for seq %d cannot be proven yet: its consistency proof starts at tree size %d, "
                "this device last proved %d, and no gateway URL is configured to fetch the proof; the readings "
                "stay in the outbox",
                self.device_id,
                receipt.seq,
                receipt.from_size,
                from_size,
            )
            return

        def done(proof: list[bytes] | None, error: str) -> None:
            if proof is None:
                self.unproven_receipts += 1
                log.warning(
                    "%s: a receipt for seq %d cannot be proven yet: could not fetch the consistency proof from "
                    "tree size %d to %d from the gateway (%s); the readings stay in the outbox and the next "
                    "receipt tries again",
                    self.device_id,
                    receipt.seq,
                    from_size,
                    receipt.tree_size,
                    error,
                )
                return
            self._handle_receipt(data, (from_size, proof))

        def work() -> tuple[list[bytes] | None, str]:
            try:
                return fetch(from_size, receipt.tree_size), ""
            except Exception as exc:  # any failure (network, HTTP, JSON) leaves the readings where they are
                return None, str(exc) or type(exc).__name__

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            done(*work())
            return
        future = loop.run_in_executor(None, work)
        future.add_done_callback(lambda f: None if f.cancelled() else done(*f.result()))
