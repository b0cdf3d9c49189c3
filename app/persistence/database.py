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
        pool_pre_ping=True,
        pool_recycle=1800,
    )
