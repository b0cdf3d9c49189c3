"""Joins and new sessions are rate-limited per client address (API.md: 30 a minute each),
counted in Redis so every server process shares the count."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from app.config import Settings
from app.wiring import create_app
from tests.builders import Client, create_store
from tests.integration.test_group_flow import open_cart, session
from tests.integration.test_http_basics import assert_problem

LIMIT = 3


@pytest.fixture
async def limited(settings: Settings, redis_url: str) -> AsyncIterator[Client]:
    """An app with a small limit, its counts (kept a minute in Redis) started afresh."""
    redis = Redis.from_url(redis_url)
    try:
        stale = [key async for key in redis.scan_iter(match="teamcart:rate_limit_*")]
        if stale:
            await redis.delete(*stale)
    finally:
        await redis.aclose()
    app: Litestar = create_app(settings.replace(rate_limit_per_minute=LIMIT))
    async with AsyncTestClient(app=app) as client:
        yield client


async def test_new_sessions_past_the_limit_are_429_with_retry_after(
    limited: Client, settings: Settings
) -> None:
    answers = [
        await limited.post("/api/v1/sessions", json={"display_name": f"N{n}"})
        for n in range(LIMIT + 1)
    ]
    assert [a.status_code for a in answers] == [201] * LIMIT + [429]
    assert_problem(answers[-1], 429, "rate_limited")
    assert 0 < int(answers[-1].headers["Retry-After"]) <= 60
    # Another process counts the same: the limit is the address's, not the process's.
    async with AsyncTestClient(
        app=create_app(settings.replace(rate_limit_per_minute=LIMIT))
    ) as other:
        again = await other.post("/api/v1/sessions", json={"display_name": "Again"})
    assert again.status_code == 429


async def test_joins_have_their_own_limit(
    limited: Client, client: Client, admin_headers: dict[str, str]
) -> None:
    store = await create_store(client, admin_headers)
    host = await session(client, "Host")  # signed in elsewhere: no session of this address
    cart = await open_cart(client, host, store["id"])
    codes = []
    for n in range(LIMIT + 1):
        guest = await session(client, f"G{n}")
        joined = await limited.post(
            "/api/v1/teamcarts/join", json={"invite_code": cart["invite_code"]}, headers=guest
        )
        codes.append(joined.status_code)
    assert codes == [200] * LIMIT + [429]
    other = await limited.get(f"/api/v1/teamcarts/{cart['id']}", headers=host)
    assert other.status_code == 200  # only joins and new sessions are limited
