"""One gateway process: ingest, the sequencer and the API, as its role says."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

import asyncpg
import uvicorn

from gateway import lease, logkey, quarantine
from gateway.api import ApiState, create_app
from gateway.config import Settings
from gateway.errors import NotLeaderError
from gateway.faults import DB_ERRORS, is_outage
from gateway.ingest import BatchResult, DeviceCache, Message, store_batch
from gateway.metrics import Metrics
from gateway.migrations import migrate
from gateway.mqtt import MqttLink, probe_protocol
from gateway.quarantine import Refusal, quarantine_many
from gateway.retry import Backoff
from gateway.sequencer import Sequencer
from gateway.tokens import TokenTable
from gateway.witnesses import parse_witnesses

log = logging.getLogger("gateway")


def _printable(text: str) -> str:
    """Text PostgreSQL can store: no NUL characters (an MQTT topic or an error may carry them)."""
    return text.replace("\x00", "\\x00")


POOL_SESSION_LIMITS = {
    "idle_in_transaction_session_timeout": "60000",
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
}
"""Server-side limits of the pool's sessions (ingest and API). A gateway cut off from the
database mid-transaction would otherwise leave that transaction open on the server for as long
as the server keeps the session, holding what it locked: the readings it inserted (another
gateway's insert of the same reading waits on them) and the registry lock (key rotations wait).
No pooled transaction waits on the gateway for anywhere near a minute."""


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset between uses: nothing beyond asyncpg's own rollback of an open transaction.

    asyncpg's default sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``,
    a round trip every time a connection goes back to the pool (a third of an inclusion proof's
    time). The gateway's pooled connections hold no session state: no SET, LISTEN, cursor outside
    a transaction or advisory lock outlives the block that acquired them (migrations release
    theirs; the sequencer's lease and session limits are on a connection of its own).
    """


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.queue: asyncio.Queue[Message] = asyncio.Queue()
        self.cache = DeviceCache()
        self.stopping = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.link: MqttLink | None = None
        self.server: uvicorn.Server | None = None
        self.pool: asyncpg.Pool | None = None
        self.sequencer: Sequencer | None = None
        self._own_client_id: str | None = None

    @property
    def runs(self) -> set[str]:
        role = self.settings.role
        return {"ingest", "sequencer", "api"} if role == "all" else {role}

    @property
    def mqtt_client_id(self) -> str:
        """The ingest session's client id if this process ingests, else one of its own.

        A process that does not ingest must never connect as the ingest session: the broker
        would end the ingest process's connection (a takeover) and hand it the readings queued
        there. It gets ``<mqtt_client_id>-<role>-<8 random hex digits>``, with a clean session:
        random so that two such processes do not take each other's connection over either.
        """
        if "ingest" in self.runs:
            return self.settings.mqtt_client_id
        if self._own_client_id is None:
            self._own_client_id = (
                f"{self.settings.mqtt_client_id}-{self.settings.role}-{secrets.token_hex(4)}"
            )
        return self._own_client_id

    async def start(self) -> None:
        s = self.settings
        tokens = TokenTable.parse(s.tokens)
        witness_keys = parse_witnesses(s.witnesses)
        self.pool = await self._connect_pool()
        async with self.pool.acquire() as conn:
            applied = await migrate(conn)
            if applied:
                log.info("applied migrations: %s", ", ".join(applied))
            self.signer, created = await logkey.bind(conn, s.key_file, s.origin)
        if created:
            log.info("created the log key in %s: %s", s.key_file, self.signer.verifier_key().to_string())
        url = s.mqtt
        protocol = await self._probe()
        wants_readings = "ingest" in self.runs
        self.link = MqttLink(
            url,
            self.mqtt_client_id,
            on_message=self.queue.put_nowait if wants_readings else None,
            backlog=self.queue.qsize,
            share_group=s.mqtt_share_group,
            protocol=protocol,
            session_expiry=s.mqtt_session_expiry,
            receive_maximum=s.mqtt_receive_maximum,
            max_packet_size=s.mqtt_max_packet_size,
            on_publish_refused=self._receipt_refused,
        )
        self.link.start()
        link = self.link
        self.metrics.mqtt_connected.set_function(lambda: 1.0 if link.connected.is_set() else 0.0)
        if wants_readings:
            self.tasks.append(
                asyncio.create_task(self._supervise("ingest", self._ingest_loop), name="ingest")
            )
        if "sequencer" in self.runs:
            self.tasks.append(
                asyncio.create_task(self._supervise("sequencer", self._sequencer_loop), name="sequencer")
            )
        self.api_state = ApiState(
            self.pool,
            self.signer.verifier_key(),
            self.metrics,
            tokens=tokens,
            witnesses=witness_keys,
            cache=self.cache if wants_readings else None,
            accept_v1_enrolments=s.accept_v1_enrolments,
            log_wait=s.enrol_wait,
            max_request_bytes=s.max_request_bytes,
        )
        if "api" in self.runs:
            if not len(tokens):
                log.warning("no API tokens are configured: only the public log routes can be used")
            self.app = create_app(self.api_state)
            config = uvicorn.Config(
                self.app, host=s.api_host, port=s.api_port, log_level="warning", lifespan="off"
            )
            self.server = uvicorn.Server(config)
            self.tasks.append(asyncio.create_task(self._serve(), name="api"))
            self.tasks.append(
                asyncio.create_task(
                    self._supervise("quarantine prune", self._prune_quarantine), name="quarantine-prune"
                )
            )
        self.api_state.ready = True
        log.info("gateway started (%s); log %s", ", ".join(sorted(self.runs)), s.origin)

    def _receipt_refused(self, topic: str, reason: int) -> None:
        self.metrics.receipts_refused.labels(f"0x{reason:02x}").inc()

    async def _connect_pool(self) -> asyncpg.Pool:
        backoff = Backoff(0.5, 10.0)
        while True:
            try:
                pool: asyncpg.Pool = await asyncpg.create_pool(
                    self.settings.database_url,
                    min_size=1,
                    max_size=8,
                    command_timeout=60,
                    timeout=10,
                    reset=_keep_session,
                    server_settings=POOL_SESSION_LIMITS,
                )
                return pool
            except DB_ERRORS as exc:
                delay = backoff.next_delay()
                log.warning("database not reachable (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)

    async def _probe(self) -> int:
        backoff = Backoff(0.5, 10.0)
        while True:
            try:
                return await probe_protocol(self.settings.mqtt)
            except (OSError, TimeoutError) as exc:
                delay = backoff.next_delay()
                log.warning("MQTT broker not reachable (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)

    async def _supervise(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run ``loop`` for the life of the process: a fault is logged and the loop restarted."""
        backoff = Backoff(0.5, 30.0, healthy_after=60.0)
        while True:
            backoff.started()
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = backoff.next_delay()
                log.exception("the %s loop failed; restarting it in %.1f s", name, delay)
            else:
                delay = backoff.next_delay()
                log.error("the %s loop ended; restarting it in %.1f s", name, delay)
            await asyncio.sleep(delay)

    async def _serve(self) -> None:
        assert self.server is not None
        await self.server.serve()

    async def _prune_quarantine(self) -> None:
        """Bound the quarantine's garbage every ``quarantine_prune_interval`` s (gateway.quarantine.prune)."""
        assert self.pool is not None
        interval = self.settings.quarantine_prune_interval
        while True:
            try:
                async with self.pool.acquire(timeout=10) as conn:
                    pruned = await quarantine.prune(conn, self.settings)
                    held = await quarantine.garbage_rows(conn)
                self.metrics.quarantine_pruned.inc(pruned)
                self.metrics.quarantine_garbage.set(held)
                if pruned:
                    log.info("pruned %d garbage rows from the quarantine; %d remain", pruned, held)
            except DB_ERRORS as exc:
                log.warning("cannot prune the quarantine (%s); trying again in %g s", exc, interval)
            await asyncio.sleep(interval)

    async def wait(self) -> None:
        await self.stopping.wait()

    async def stop(self) -> None:
        self.stopping.set()
        if self.server is not None:
            self.server.should_exit = True
        for task in self.tasks:
            if task.get_name() != "api":
                task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.link is not None:
            await self.link.stop()
        if self.pool is not None:
            await self.pool.close()

    # --- ingest ------------------------------------------------------------------

    async def _ingest_loop(self) -> None:
        assert self.pool is not None
        assert self.link is not None
        s = self.settings
        while True:
            batch = [await self.queue.get()]
            deadline = time.monotonic() + s.ingest_linger
            while len(batch) < s.ingest_batch:
                try:
                    batch.append(self.queue.get_nowait())
                except asyncio.QueueEmpty:
                    if time.monotonic() >= deadline:
                        break
                    await asyncio.sleep(0.002)
            self.link.resume_reading()
            result = await self._store(batch)
            self.link.ack_many(batch)
            now = time.time()
            for message in batch:
                self.metrics.ingest_lag.observe(max(0.0, now - message.received_at))
            self.metrics.accepted.inc(result.accepted)
            self.metrics.duplicates.inc(result.duplicates)
            for reason, count in result.refused.items():
                self.metrics.rejected.labels(reason).inc(count)
                log.info("refused %d message(s): %s", count, reason)

    async def _store(self, batch: list[Message]) -> BatchResult:
        """Store a batch, waiting out database outages; a batch that fails for any other reason is
        split in halves until the message responsible is alone, and that one is quarantined
        (``internal_error``): one bad message never holds back the others, nor is retried forever."""
        assert self.pool is not None
        backoff = Backoff(0.2, 10.0)
        while True:
            try:
                async with self.pool.acquire(timeout=10) as conn:
                    return await store_batch(conn, batch, self.cache, self.settings)
            except Exception as exc:
                if not is_outage(exc):
                    return await self._isolate(batch, exc)
                delay = backoff.next_delay()
                log.warning("cannot store %d messages (%s); retrying in %.1f s", len(batch), exc, delay)
            await asyncio.sleep(delay)

    async def _isolate(self, batch: list[Message], exc: Exception) -> BatchResult:
        if len(batch) > 1:
            half = len(batch) // 2
            first, second = await self._store(batch[:half]), await self._store(batch[half:])
            return first.merge(second)
        message = batch[0]
        kind = type(exc).__name__
        log.error(
            "message on %r (%d bytes) made ingest fail with %s: %s; quarantined as internal_error",
            message.topic, len(message.payload), kind, exc, exc_info=exc,
        )  # fmt: skip
        result = BatchResult()
        result.refuse("internal_error")
        refusal = Refusal("internal_error", _printable(f"ingest failed on this message with {kind}: {exc}"))
        backoff = Backoff(0.2, 10.0)
        while True:
            assert self.pool is not None
            try:
                async with self.pool.acquire(timeout=10) as conn:
                    await quarantine_many(
                        conn,
                        [(_printable(message.topic), message.payload, refusal)],
                        self.settings.quarantine_garbage_bytes,
                    )
                return result
            except Exception as again:
                # A quarantine row fails only when the database fails every write (a read-only
                # standby, a revoked privilege): an outage whatever its code. The message is not
                # acknowledged before it is kept, so the broker keeps it meanwhile.
                delay = backoff.next_delay()
                log.error(
                    "cannot quarantine the message on %r (%s: %s); retrying in %.1f s",
                    message.topic, type(again).__name__, again, delay,
                )  # fmt: skip
            await asyncio.sleep(delay)

    # --- the sequencer ----------------------------------------------------------------

    async def _sequencer_loop(self) -> None:
        s = self.settings
        holder = lease.holder_id()
        backoff = Backoff(0.5, 10.0)
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await lease.connect(s.database_url, s.sequencer_lease_ttl, timeout=10)
                held = await lease.acquire(conn, holder, s.sequencer_lease_ttl)
                if held is None:
                    await conn.close()
                    await asyncio.sleep(1.0)
                    continue
                publish = self.link.publish if self.link is not None else None
                sequencer = Sequencer(s, self.signer, publish, lease=held)
                await sequencer.load(conn)
                self.sequencer = sequencer
                self.metrics.sequencer_leader.set(1)
                log.info("this process is the sequencer")
                backoff.reset()
                while True:
                    try:
                        result = await sequencer.step(conn)
                    except asyncpg.SerializationError:
                        # A revocation updated a device row this step updates too: the step
                        # rolled back as a whole; it is simply taken again.
                        await asyncio.sleep(0.02)
                        continue
                    if result.entries or result.readings:
                        self.metrics.logged.inc(result.entries + result.readings)
                        self.metrics.log_size.set(sequencer.size)
                    if sequencer.checkpoint_due():
                        await sequencer.checkpoint(conn)
                        self.metrics.checkpoint_signed(sequencer.size, sequencer.last_checkpoint_wall)
                    elif sequencer.receipts_check_due():
                        await sequencer.answer_due(conn)
                    if not (result.entries or result.readings or result.quarantined):
                        await asyncio.sleep(0.02)
            except asyncio.CancelledError:
                raise
            except (*DB_ERRORS, NotLeaderError) as exc:
                delay = backoff.next_delay()
                log.warning("sequencer stopped (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
            finally:
                self.metrics.sequencer_leader.set(0)
                self.sequencer = None
                if conn is not None and not conn.is_closed():
                    await conn.close()
