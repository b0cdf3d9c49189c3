"""Password sign-ins are limited (API.md): 10 failed ones per email and 30 per client address
a minute, counted in Redis so every server process shares the counts, and a 429 tells
nothing about whether the email has an account. Sign-ups count per address like new
sessions. With Redis out of reach a sign-in is refused (503), never let through uncounted.

The email limit is tested at its real size (eleven requests); the address limit at a small
one, through the setting the other per-address limits use (``rate_limit_per_minute``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from app.config import Settings
from app.embedded import free_port
from app.use_cases.accounts import FAILED_SIGN_INS_PER_EMAIL
from app.wiring import create_app
from tests.builders import Client
from tests.integration.test_accounts import PASSWORD, new_email, sign_in, sign_up
from tests.integration.test_http_basics import assert_problem

LIMIT = 3


async def clear_counts(redis_url: str) -> None:
    """Forget every per-address and per-email count (each is kept a minute in Redis)."""
    redis = Redis.from_url(redis_url)
    try:
        for pattern in ("teamcart:rate_limit_*", "teamcart:sign_ins:*"):
            stale = [key async for key in redis.scan_iter(match=pattern)]
            if stale:
                await redis.delete(*stale)
    finally:
        await redis.aclose()


@pytest.fixture
async def limited(settings: Settings, redis_url: str) -> AsyncIterator[Client]:
    """An app whose client addresses may make ``LIMIT`` of each call a minute."""
    await clear_counts(redis_url)
    app = create_app(settings.replace(rate_limit_per_minute=LIMIT))
    async with AsyncTestClient(app=app) as client:
        yield client


def retry_after(response: httpx.Response) -> int:
    seconds = int(response.headers["Retry-After"])
    assert 0 < seconds <= 60
    return seconds


async def test_the_11th_wrong_password_in_a_minute_is_429_even_when_it_is_right(
    client: Client,
) -> None:
    email = new_email()
    await sign_up(client, email)
    for _ in range(FAILED_SIGN_INS_PER_EMAIL):
        assert_problem(await sign_in(client, email, "a wrong guess"), 401, "bad_credentials")
    refused = await sign_in(client, email.upper())  # the right password, any case
    assert_problem(refused, 429, "rate_limited")
    retry_after(refused)
    other = new_email()
    await sign_up(client, other)
    assert (await sign_in(client, other)).status_code == 201  # the limit is the email's


async def test_an_unknown_email_is_limited_alike_so_a_429_says_nothing(client: Client) -> None:
    known, unknown = new_email(), new_email()
    await sign_up(client, known)
    answers = {}
    for email in (known, unknown):
        for _ in range(FAILED_SIGN_INS_PER_EMAIL):
            assert (await sign_in(client, email, "a wrong guess")).status_code == 401
        answers[email] = await sign_in(client, email, "a wrong guess")
    bodies = [assert_problem(answer, 429, "rate_limited") for answer in answers.values()]
    assert bodies[0] == bodies[1]


async def test_a_sign_in_that_succeeds_clears_its_emails_failures(client: Client) -> None:
    email = new_email()
    await sign_up(client, email)
    for _ in range(FAILED_SIGN_INS_PER_EMAIL - 1):
        assert (await sign_in(client, email, "a wrong guess")).status_code == 401
    assert (await sign_in(client, email)).status_code == 201
    # Counted before it was checked, the success would have been the tenth attempt.
    assert (await sign_in(client, email, "a wrong guess")).status_code == 401


async def test_sign_ins_past_the_address_limit_are_429_in_every_process(
    limited: Client, settings: Settings
) -> None:
    email = new_email()
    await sign_up(limited, email)  # one of the address's LIMIT sign-ups, not a sign-in
    codes = [(await sign_in(limited, email)).status_code]
    codes += [(await sign_in(limited, new_email(), "a wrong guess")).status_code for _ in "ab"]
    assert codes == [201, 401, 401]  # failed or not, each counts against the address
    refused = await sign_in(limited, email)
    assert_problem(refused, 429, "rate_limited")
    retry_after(refused)
    async with AsyncTestClient(
        app=create_app(settings.replace(rate_limit_per_minute=LIMIT))
    ) as other:
        again = await sign_in(other, email)
        assert again.status_code == 429
        guest = await other.post("/api/v1/sessions", json={"display_name": "G"})
        assert guest.status_code == 201  # new sessions keep their own count


async def test_sign_ups_past_the_address_limit_are_429(limited: Client) -> None:
    codes = []
    for _ in range(LIMIT + 1):
        response = await limited.post(
            "/api/v1/accounts",
            json={"email": new_email(), "password": PASSWORD, "display_name": "Ana"},
        )
        codes.append(response.status_code)
    assert codes == [201] * LIMIT + [429]
    assert_problem(response, 429, "rate_limited")
    retry_after(response)


async def test_no_email_is_written_to_redis(client: Client, redis_url: str) -> None:
    email = new_email("private")
    await sign_in(client, email, "a wrong guess")
    redis = Redis.from_url(redis_url)
    try:
        keys = [key async for key in redis.scan_iter(match="teamcart:sign_ins:*")]
    finally:
        await redis.aclose()
    assert keys  # the failure was counted
    assert not [key for key in keys if b"private" in key or b"example.com" in key]


async def test_with_redis_away_sign_ins_are_refused_not_unlimited(settings: Settings) -> None:
    unreachable = settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with AsyncTestClient(app=create_app(unreachable)) as client:
        response = await sign_in(client, new_email())
    assert_problem(response, 503, "service_unavailable")
    assert response.headers["Retry-After"] == "1"
