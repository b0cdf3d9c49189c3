"""Accounts over HTTP, on the real PostgreSQL and Redis: sign up, sign in, the token works
like a guest's; one account per address whatever its case; wrong credentials are one 401
for an unknown email and a wrong password alike; the stored hash is Argon2id and an old one
is replaced on sign-in.

The suite's app leaves client addresses unlimited (``rate_limit_per_minute=0``) but not
emails: the failed sign-ins of each email are always counted, and every test here uses
emails of its own. The limits themselves are in ``test_accounts_limits``.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from argon2 import PasswordHasher
from argon2.profiles import RFC_9106_LOW_MEMORY
from litestar.security.jwt import Token
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.persistence.accounts import SqlAccounts
from app.persistence.tables import users
from app.use_cases.accounts import Passwords
from tests.builders import Client
from tests.conftest import bearer
from tests.integration.test_http_basics import assert_problem

PASSWORD = "correct horse battery"


def new_email(name: str = "ana") -> str:
    return f"{name}.{uuid.uuid4().hex[:10]}@example.com"


async def sign_up(
    client: Client, email: str, password: str = PASSWORD, name: str = "Ana"
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/accounts", json={"email": email, "password": password, "display_name": name}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def sign_in(client: Client, email: str, password: str = PASSWORD) -> Any:
    return await client.post(
        "/api/v1/sessions/password", json={"email": email, "password": password}
    )


async def me(client: Client, token: str, **changes: Any) -> dict[str, Any]:
    """``PATCH /api/v1/me``: with no changes, the caller's row as it is."""
    response = await client.patch("/api/v1/me", json=changes, headers=bearer(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_sign_up_then_sign_in_and_each_token_works_on_me(client: Client) -> None:
    email = new_email()
    created = await sign_up(client, f"  {email} ", name="  Ana   Lima ")
    assert created["email"] == email  # stored trimmed
    assert created["display_name"] == "Ana Lima"
    assert set(created) >= {"user_id", "email", "display_name", "token", "expires_at"}
    assert await me(client, created["token"]) == {
        "user_id": created["user_id"],
        "display_name": "Ana Lima",
        "email": email,
    }

    signed_in = await sign_in(client, email.upper())
    assert signed_in.status_code == 201, signed_in.text
    session = signed_in.json()
    assert set(session) == {"user_id", "token", "expires_at"}
    assert session["user_id"] == created["user_id"]
    assert (await me(client, session["token"]))["email"] == email


async def test_the_token_is_named_as_the_account_is_now(client: Client, settings: Settings) -> None:
    email = new_email()
    created = await sign_up(client, email, name="Ana")
    await me(client, created["token"], display_name="Ana B.")
    session = (await sign_in(client, email)).json()
    assert settings.jwt_secret is not None
    token = Token.decode(session["token"], settings.jwt_secret, "HS256")
    assert token.sub == created["user_id"]
    assert token.extras["name"] == "Ana B."


async def test_an_email_is_taken_once_whatever_its_case(client: Client) -> None:
    email = new_email()
    await sign_up(client, email)
    again = await client.post(
        "/api/v1/accounts",
        json={"email": email.upper(), "password": "another password", "display_name": "Bo"},
    )
    assert_problem(again, 409, "email_taken")
    assert (await sign_in(client, email)).status_code == 201  # the first one's password


async def test_an_account_cannot_move_to_another_accounts_address(client: Client) -> None:
    taken = new_email()
    await sign_up(client, taken)
    other = await sign_up(client, new_email())
    moved = await client.patch(
        "/api/v1/me", json={"email": taken.upper()}, headers=bearer(other["token"])
    )
    assert_problem(moved, 409, "email_taken")
    guest = (await client.post("/api/v1/sessions", json={"display_name": "G"})).json()
    assert (await me(client, guest["token"], email=taken))["email"] == taken  # a guest may


async def test_a_guest_who_gave_the_address_does_not_take_it(client: Client) -> None:
    email = new_email()
    guest = await client.post("/api/v1/sessions", json={"display_name": "G", "email": email})
    assert guest.status_code == 201
    created = await sign_up(client, email)
    assert created["user_id"] != guest.json()["user_id"]
    assert (await sign_in(client, email)).json()["user_id"] == created["user_id"]


async def test_an_unknown_email_and_a_wrong_password_get_the_same_401(client: Client) -> None:
    email = new_email()
    await sign_up(client, email)
    wrong = assert_problem(await sign_in(client, email, "not the password"), 401, "bad_credentials")
    unknown = assert_problem(await sign_in(client, new_email()), 401, "bad_credentials")
    assert wrong == unknown


async def test_a_guest_address_is_not_an_account(client: Client) -> None:
    email = new_email()
    await client.post("/api/v1/sessions", json={"display_name": "G", "email": email})
    assert_problem(await sign_in(client, email, ""), 401, "bad_credentials")


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"password": "short77"}, 422, "password"),
        ({"password": "p" * 257}, 422, "password"),
        ({"password": "p" * 1001}, 400, "password"),
        ({"email": "not-an-address"}, 422, "email"),
        ({"display_name": "   "}, 422, "display_name"),
        ({"password": None}, 400, "password"),
    ],
)
async def test_refusals_name_the_field(
    client: Client, body: dict[str, Any], status: int, field: str
) -> None:
    full = {"email": new_email(), "password": PASSWORD, "display_name": "Ana", **body}
    response = await client.post("/api/v1/accounts", json=full)
    problem = assert_problem(response, status, "validation_error")
    assert [error["field"] for error in problem["errors"]] == [field]
    if isinstance(full["password"], str):
        assert full["password"] not in response.text


async def test_passwords_of_8_and_256_characters_are_accepted(client: Client) -> None:
    for password in ("p" * 8, "p" * 256):
        email = new_email()
        await sign_up(client, email, password)
        assert (await sign_in(client, email, password)).status_code == 201


async def test_the_stored_hash_is_argon2id_and_an_old_one_is_replaced_on_sign_in(
    client: Client, engine: AsyncEngine
) -> None:
    email = new_email()
    created = await sign_up(client, email)
    assert (await stored_hash(engine, created["user_id"])).startswith(
        "$argon2id$v=19$m=65536,t=3,p=4$"
    )
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    old_hash = await Passwords(weak).hash(PASSWORD)
    old_email = new_email("old")
    user_id = str(uuid.uuid4())
    rows = SqlAccounts(engine)
    assert await rows.add(
        user_id=user_id, display_name="Old", email=old_email, password_hash=old_hash
    )

    assert (await sign_in(client, old_email)).status_code == 201
    new_hash = await stored_hash(engine, user_id)
    assert new_hash != old_hash
    assert not PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY).check_needs_rehash(new_hash)
    assert (await sign_in(client, old_email)).status_code == 201  # the new hash verifies


async def stored_hash(engine: AsyncEngine, user_id: str) -> str:
    async with engine.connect() as conn:
        value = await conn.scalar(select(users.c.password_hash).where(users.c.id == user_id))
    assert isinstance(value, str)
    return value


async def test_guests_keep_signing_in_as_before(client: Client) -> None:
    response = await client.post("/api/v1/sessions", json={"display_name": "Guest"})
    assert response.status_code == 201
    assert set(response.json()) == {"user_id", "token", "expires_at"}
