"""Throwaway databases on a PostgreSQL server: for the demo, the benchmarks and the tests."""

from __future__ import annotations

from urllib.parse import urlsplit

import asyncpg

PG_LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"
"""The machine's own server, as installed by its packages (the tests and the benchmarks try it)."""


async def can_connect(dsn: str) -> bool:
    """Whether a PostgreSQL server answers at ``dsn`` (and lets us in) within a few seconds."""
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


def database_url(admin_url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``admin_url``."""
    return urlsplit(admin_url)._replace(path="/" + name).geturl()


async def create_database(admin_url: str, name: str) -> str:
    """Create database ``name`` (raises asyncpg's error if not allowed) and return its URL."""
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return database_url(admin_url, name)


async def drop_database(admin_url: str, *names: str) -> None:
    """Drop the databases, closing any connection still open to them."""
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
