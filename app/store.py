"""The relational store (patient index now; lab results and audit trail later).

Operators write `sqlite:///path.db` or `postgresql://...` (contract section 3); SQLAlchemy's
async engine does the rest with aiosqlite or asyncpg.
"""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry


def async_url(url: str) -> str:
    if url.startswith("sqlite:"):
        return "sqlite+aiosqlite:" + url[len("sqlite:") :]
    if url.startswith("postgresql:"):
        return "postgresql+asyncpg:" + url[len("postgresql:") :]
    raise ValueError("unsupported store URL scheme")


def create_engine(url: str) -> AsyncEngine:
    engine = create_async_engine(async_url(url), pool_pre_ping=url.startswith("postgresql:"))
    if url.startswith("sqlite:"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in _pragmas(BUSY_TIMEOUT_MS):
        cursor.execute(pragma)
    cursor.close()


# WAL lets readers proceed during a write; FULL sync makes a commit durable on return.
SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL")
BUSY_TIMEOUT_MS = 5000  # how long a statement waits for another writer's lock


def _pragmas(busy_timeout: int) -> tuple[str, ...]:
    """Every connection's pragmas; `busy_timeout` in milliseconds."""
    return (*SQLITE_PRAGMAS, f"PRAGMA busy_timeout={int(busy_timeout)}")


def connect_sqlite(
    engine: AsyncEngine, *, busy_timeout: int = BUSY_TIMEOUT_MS
) -> sqlite3.Connection:
    """A blocking connection to `engine`'s SQLite file with the engine's pragmas, in autocommit
    mode (the caller opens its own transactions), for work that must not pay a thread hop per
    statement; `busy_timeout` (ms) is how long a statement waits for another writer's lock.
    Used only on the thread that opened it."""
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:":
        raise ValueError("not a SQLite file store")  # a second connection would not share it
    connection = sqlite3.connect(path, isolation_level=None)
    for pragma in _pragmas(busy_timeout):
        connection.execute(pragma)
    return connection


# Any constant: the advisory lock every process takes while it creates tables.
SCHEMA_LOCK = 0x70675F736368  # "pg_sch"


async def create_tables(engine: AsyncEngine, metadata: sa.MetaData) -> None:
    """`metadata`'s missing tables. On PostgreSQL under an advisory lock held for the
    transaction: two workers starting at once would otherwise both issue CREATE TABLE, and
    the second fails on the catalog's unique keys (its worker dies at startup)."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
        await conn.run_sync(metadata.create_all)
