"""The SQLAlchemy async engine, built from a ``postgresql://`` URL for the asyncpg driver."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


def async_url(url: str) -> str:
    """``postgresql://…`` (or ``postgres://``) → ``postgresql+asyncpg://…``; others unchanged."""
    parts = urlsplit(url)
    if parts.scheme in {"postgresql", "postgres"}:
        parts = parts._replace(scheme="postgresql+asyncpg")
    return urlunsplit(parts)


def create_engine(url: str, *, pool_size: int = 20) -> AsyncEngine:
    """An engine that connects lazily: nothing touches the network until first use.

    Under load every pooled connection is busy and requests wait their turn for one: no
    overflow connections, which were opened for a burst and closed after each use (a
    connect costs milliseconds of CPU: measured 5 % of the server's under bench/etag.py's
    32 concurrent requests with 10 pooled)."""
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=0,
        # No pre-ping: it costs a round trip per transaction (measured ~10% of webhook CPU).
        # A connection that died with the server fails its first statement; the unit of work
        # runs the command again, once, on a fresh connection (app.unit_of_work).
        pool_recycle=1800,
        # Pinned, whatever the server's default: a retry locks a cart and then loads it in a
        # fresh snapshot (app.persistence.carts.load_cart), which READ COMMITTED gives.
        isolation_level="READ COMMITTED",
    )


class ConnectionLost(Exception):
    """A statement sent to the driver found its connection gone (PostgreSQL restarted, or
    the server process was terminated); the driver's error is its ``__cause__``. SQLAlchemy
    reports the same as a ``DBAPIError`` with ``connection_invalidated``."""


_CONNECTION_LOST = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # the server shutting down, or restarted
    # An idle connection whose server process was terminated may be left in a state where
    # its next statement fails this way instead (seen after pg_terminate_backend).
    asyncpg.exceptions.InternalClientError,
)


async def _driver(conn: AsyncConnection) -> asyncpg.Connection:
    pooled = await conn.get_raw_connection()
    connection = pooled.driver_connection
    if not isinstance(connection, asyncpg.Connection):
        raise TypeError(f"not an asyncpg connection: {connection!r}")
    return connection


# The statements every command sends (``app.persistence.carts``, ``.outbox``) go to the
# asyncpg connection under the SQLAlchemy one: asyncpg prepares each once per connection,
# and nothing is built or adapted per call. A statement sent here runs in the transaction
# SQLAlchemy has open on ``conn``, or alone (autocommit) when it has none.


async def fetch(conn: AsyncConnection, query: str, *args: object) -> list[asyncpg.Record]:
    try:
        rows: list[asyncpg.Record] = await (await _driver(conn)).fetch(query, *args)
        return rows
    except _CONNECTION_LOST as exc:
        raise ConnectionLost(repr(exc)) from exc


async def fetchrow(conn: AsyncConnection, query: str, *args: object) -> asyncpg.Record | None:
    try:
        row: asyncpg.Record | None = await (await _driver(conn)).fetchrow(query, *args)
        return row
    except _CONNECTION_LOST as exc:
        raise ConnectionLost(repr(exc)) from exc


async def fetchval(conn: AsyncConnection, query: str, *args: object) -> Any:
    try:
        return await (await _driver(conn)).fetchval(query, *args)
    except _CONNECTION_LOST as exc:
        raise ConnectionLost(repr(exc)) from exc
