"""Versioned schema migrations, applied at start and by ``python -m gateway migrate``.

Migrations are the files ``gateway/sql/NNN_name.sql``, applied in order, each in
its own transaction, under an advisory lock so that several processes starting
at once apply each migration exactly once.
"""

from __future__ import annotations

import re
from importlib import resources

import asyncpg

from gateway.errors import MigrationError

MIGRATION_LOCK = 0x10_7A77_E57  # advisory lock id for migrations
_NAME = re.compile(r"(\d{3})_[a-z0-9_]+\.sql")


def available() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every migration shipped with the gateway, in order."""
    out = []
    for item in resources.files("gateway.sql").iterdir():
        match = _NAME.fullmatch(item.name)
        if match:
            out.append((int(match.group(1)), item.name, item.read_text()))
    out.sort()
    versions = [v for v, _, _ in out]
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(f"migration versions must be 1..n without gaps, found {versions}")
    return out


async def current_version(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    version = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
    return int(version)


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply every migration not applied yet; return the names applied."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        have = await current_version(conn)
        shipped = available()
        if have > len(shipped):
            raise MigrationError(
                f"the database is at schema version {have}, newer than this gateway knows ({len(shipped)})"
            )
        for version, name, sql in shipped[have:]:
            try:
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"migration {name} failed: {exc}") from exc
            applied.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied
