"""Which database failures are an outage (wait and retry) and which are this input's fault.

A batch that fails with an outage is retried as it is, however long the outage lasts: the
readings in it are good and the broker holds them until they are stored.  Any other failure
(a data error from PostgreSQL, a bug of ours meeting odd input) would fail again on every
retry and block every reading behind it, so ingest isolates the message responsible instead
(gateway.service, ``Gateway._store``).
"""

from __future__ import annotations

import asyncio

import asyncpg

_OUTAGE_TYPES = (
    OSError,
    ConnectionError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    # e.g. "cannot switch to state 15; another operation is in progress" on a pooled connection
    # broken by a database restart
    asyncpg.InternalClientError,
)

DB_ERRORS = (*_OUTAGE_TYPES, asyncpg.PostgresError)
"""Every failure of a database call, for loops that retry whatever went wrong (connecting the
pool, the sequencer, the quarantine prune); ingest tells them apart with :func:`is_outage`."""

_OUTAGE_CLASSES = frozenset({"08", "25", "40", "53", "57", "58"})
"""SQLSTATE classes of a server that cannot serve now: connection exceptions, invalid transaction
state (a read-only standby after a failover, an idle-in-transaction timeout), transaction
rollback (serialization failure, deadlock: retrying is the cure), insufficient resources,
operator intervention (shutdown, cancel), system errors."""
_OUTAGE_STATES = frozenset({"55P03", "55006", "42501"})
"""lock not available, object in use, insufficient privilege (an operator's change that every
message meets alike, not this message's fault)."""


def is_outage(exc: BaseException) -> bool:
    """True if ``exc`` says the database could not do the work now, not that the work is bad."""
    if isinstance(exc, asyncpg.exceptions._base.DataError):
        return False  # asyncpg refused a query argument, client side: this input's fault
    if isinstance(exc, _OUTAGE_TYPES):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] in _OUTAGE_CLASSES or state in _OUTAGE_STATES
    return False
