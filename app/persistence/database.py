"""The SQLAlchemy async engine, built from a ``postgresql://`` URL for the asyncpg driver."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def async_url(url: str) -> str:
    """``postgresql://…`` (or ``postgres://``) → ``postgresql+asyncpg://…``; others unchanged."""
    parts = urlsplit(url)
    if parts.scheme in {"postgresql", "postgres"}:
        parts = parts._replace(scheme="postgresql+asyncpg")
    return urlunsplit(parts)


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An engine that connects lazily: nothing touches the network until first use."""
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping: it costs a round trip per transaction (measured ~10% of webhook CPU).
        # A connection that died with the server fails its first statement; the unit of work
        # runs the command again, once, on a fresh connection (app.unit_of_work).
        pool_recycle=1800,
        # Pinned, whatever the server's default: a retry locks a cart and then loads it in a
        # fresh snapshot (app.persistence.carts.load_cart), which READ COMMITTED gives.
        isolation_level="READ COMMITTED",
    )
