"""The sequencer's lease: which database session may write the log, fenced by an epoch.

Why not a session advisory lock: it lives as long as the server keeps the session, and a
gateway cut off by a partition (or behind a relay that stops forwarding) leaves a session
the server may keep for ever, idle or inside an open transaction.  No other gateway could
then become the sequencer.

The lease is the single row of ``sequencer_lease`` (holder, epoch, expires_at, and the
holder's backend pid and start time), read and written with the server's clock
(``clock_timestamp()``, not ``now()``, which is the transaction's start):

* :func:`acquire` takes it, in its own short transaction, only if it has expired, if the
  session bound to it no longer exists (a crashed gateway: no need to wait out the TTL), or
  if it is already this process's (a reconnect).  Each acquisition bumps the epoch and binds
  the lease to the acquiring session.
* :meth:`Lease.renew` is the first statement of every transaction that writes the log (a
  step, a checkpoint): it extends the lease only if the epoch, the session and the expiry
  still match, and raises :class:`NotLeaderError` otherwise.

Why this is a fence: renewing takes the lease row's lock, held until the transaction ends,
and acquiring must update the same row.  So a writer's transaction either commits before a
new holder's acquisition (which then re-reads the row and finds it renewed, or expired
*after* that commit), or it is aborted; once the epoch has moved, every later transaction of
the old holder fails at its first statement.  A second, independent fence stays in the step:
the stored log size must be the one the sequencer holds in memory.

A cut-off holder may leave a transaction open on the server, holding the lease row (and
``log_state``): the sequencer's session is given server-side limits (:func:`session_limits`)
so that the server ends it by itself, and an acquirer that still finds the row locked after
the lease expired ends the recorded session itself (``pg_terminate_backend``: same role or
``pg_signal_backend`` needed; otherwise it waits for the server's limits).

The limits, for a TTL of T (10 s by default), and why:

* ``idle_in_transaction_session_timeout`` T/2: the sequencer never waits on itself inside a
  transaction for more than milliseconds; a session silent that long mid-transaction is
  dead, and ending it releases the lease row before the lease expires.
* ``statement_timeout`` T/2 and ``lock_timeout`` T/5: a step whose statement runs or waits
  that long would outlive its lease; better to fail it and start again.
* ``tcp_keepalives_idle`` T/2, ``_interval`` 1 s, ``_count`` 3 and ``tcp_user_timeout`` T/2:
  on a real partition (packets lost, not a relay whose kernel still acknowledges them) the
  server drops the session within about T, instead of the kernel's two hours.
* the client's own ``command_timeout`` T/4: a cut-off holder stops counting itself the
  sequencer (and says so) about T/4 after its connection went silent, before anyone else
  can acquire: the server ends a silent session at T/2 at the earliest.

Takeover after a partition therefore needs at most T (the lease runs out), plus the
acquirer's poll (1 s) and one lock wait (T/5): 13 s with the defaults; usually about T/2,
when the server ends the silent session and the lease is free as soon as its session is
gone.  After a crash the server closes the session at once and the next poll (1 s) takes
over.  Only the PostgreSQL server's clock is used: no gateway's clock matters.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from dataclasses import dataclass

import asyncpg

from gateway.errors import ConfigError, NotLeaderError

log = logging.getLogger("gateway.lease")

ACQUIRE = """
UPDATE sequencer_lease l
SET holder = $1, epoch = l.epoch + 1, expires_at = clock_timestamp() + make_interval(secs => $2),
    backend_pid = pg_backend_pid(),
    backend_start = (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid())
WHERE l.expires_at <= clock_timestamp()
   OR l.holder = $1
   OR NOT EXISTS (
        -- the bound session is gone (a hidden start time, another role's session, counts as alive)
        SELECT 1 FROM pg_stat_activity a
        WHERE a.pid = l.backend_pid AND (a.backend_start = l.backend_start OR a.backend_start IS NULL))
RETURNING l.epoch
"""

RENEW = """
UPDATE sequencer_lease SET expires_at = clock_timestamp() + make_interval(secs => $2)
WHERE epoch = $1 AND backend_pid = pg_backend_pid() AND expires_at > clock_timestamp()
RETURNING epoch
"""

STALE_SESSION = """
SELECT a.pid FROM sequencer_lease l
JOIN pg_stat_activity a ON a.pid = l.backend_pid AND a.backend_start = l.backend_start
WHERE (l.expires_at <= clock_timestamp() OR l.holder = $1) AND a.pid <> pg_backend_pid()
"""


def holder_id() -> str:
    """A name for this process as a lease holder: unique, and telling a person where it runs."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"


def _ms(seconds: float) -> str:
    return str(max(1, round(seconds * 1000)))


def session_limits(ttl: float) -> dict[str, str]:
    """The server settings of the sequencer's session, in pg_settings' units (ms or s)."""
    return {
        "idle_in_transaction_session_timeout": _ms(ttl / 2),
        "statement_timeout": _ms(ttl / 2),
        "lock_timeout": _ms(ttl / 5),
        "tcp_keepalives_idle": str(max(1, round(ttl / 2))),
        "tcp_keepalives_interval": "1",
        "tcp_keepalives_count": "3",
        "tcp_user_timeout": _ms(ttl / 2),
    }


async def connect(dsn: str, ttl: float, *, timeout: float = 10) -> asyncpg.Connection:
    """A connection for the sequencer, with the session limits set and checked."""
    conn: asyncpg.Connection = await asyncpg.connect(
        dsn, command_timeout=ttl / 4, timeout=timeout, server_settings=session_limits(ttl)
    )
    try:
        await check_limits(conn, ttl)
    except BaseException:
        conn.terminate()
        raise
    return conn


async def check_limits(conn: asyncpg.Connection, ttl: float) -> None:
    """ConfigError unless the session runs with :func:`session_limits` (a pooler may drop them).

    The TCP settings read as 0 where they do not apply (a Unix socket, a system without
    the option): accepted, as there is no TCP connection for them to watch.
    """
    wanted = session_limits(ttl)
    rows = await conn.fetch(
        "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])", list(wanted)
    )
    have = {r["name"]: r["setting"] for r in rows}
    wrong = [
        f"{name} is {have.get(name)!r}, not {value}"
        for name, value in wanted.items()
        if have.get(name) != value and not (name.startswith("tcp_") and have.get(name) == "0")
    ]
    if wrong:
        raise ConfigError("the sequencer's database session ignores its limits: " + "; ".join(wrong))


@dataclass(frozen=True)
class Lease:
    """The lease as acquired on one connection; renew it on that connection only."""

    holder: str
    epoch: int
    ttl: float

    async def renew(self, conn: asyncpg.Connection) -> None:
        """Extend the lease: the first statement of every transaction that writes the log.

        NotLeaderError if it expired or was taken: the transaction must not go on.
        """
        try:
            renewed = await conn.fetchval(RENEW, self.epoch, self.ttl)
        except asyncpg.SerializationError:
            # another session changed the row after this transaction's snapshot: an acquisition
            renewed = None
        if renewed is None:
            raise NotLeaderError(f"the sequencer lease of epoch {self.epoch} has expired or been taken")


async def acquire(conn: asyncpg.Connection, holder: str, ttl: float) -> Lease | None:
    """Take the lease for ``ttl`` seconds if it is free (see the module's docstring), or None.

    If the lease row stays locked past the lease's expiry, the session recorded as its
    holder is ended, so that the next attempt finds it free.
    """
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('lock_timeout', $1, true)", _ms(ttl / 5))
            epoch = await conn.fetchval(ACQUIRE, holder, ttl)
    except asyncpg.LockNotAvailableError:
        await _end_stale_session(conn, holder)
        return None
    if epoch is None:
        return None
    log.info("acquired the sequencer lease, epoch %d", epoch)
    return Lease(holder, epoch, ttl)


async def _end_stale_session(conn: asyncpg.Connection, holder: str) -> None:
    pid = await conn.fetchval(STALE_SESSION, holder)
    if pid is None:
        return
    try:
        await conn.execute("SELECT pg_terminate_backend($1)", pid)
    except asyncpg.InsufficientPrivilegeError as exc:
        log.warning("cannot end session %d, which holds a lapsed sequencer lease (%s)", pid, exc)
        return
    log.warning("ended session %d: it held the lapsed sequencer lease inside an open transaction", pid)
