"""Where mail's addresses come from (``POST /api/v1/sessions`` with an email, ``PATCH
/api/v1/me``) and, end to end in the embedded catcher's mode, an order event's mail listed
by ``GET /dev/mail``."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import issue_token
from app.config import Settings
from app.mail.catcher import MailCatcher, running_catcher
from app.persistence import schema
from app.persistence.database import create_engine
from app.wiring import create_app
from tests.builders import Client
from tests.conftest import bearer
from tests.integration.test_http_basics import assert_problem
from tests.services import fresh_database
from tests.unit.test_mail_planning import order_payload


async def row_of(engine: AsyncEngine, user_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    text("SELECT display_name, email FROM users WHERE id = CAST(:id AS uuid)"),
                    {"id": user_id},
                )
            )
            .mappings()
            .first()
        )
    return None if row is None else dict(row)


async def test_a_session_stores_its_user_with_the_email(
    client: Client, engine: AsyncEngine
) -> None:
    response = await client.post(
        "/api/v1/sessions", json={"display_name": " Ana  Lima ", "email": " ana@example.com "}
    )
    assert response.status_code == 201, response.text
    user_id = response.json()["user_id"]
    assert await row_of(engine, user_id) == {"display_name": "Ana Lima", "email": "ana@example.com"}


async def test_a_session_without_an_email_stores_its_user_with_none(
    client: Client, engine: AsyncEngine
) -> None:
    for body in ({"display_name": "Ben"}, {"display_name": "Ben", "email": None}):
        response = await client.post("/api/v1/sessions", json=body)
        assert response.status_code == 201, response.text
        assert await row_of(engine, response.json()["user_id"]) == {
            "display_name": "Ben",
            "email": None,
        }


@pytest.mark.parametrize(
    "email",
    [
        "",
        "   ",
        "ana",
        "ana@",
        "@example.com",
        "ana@example",
        "ana@@example.com",
        "ana lima@example.com",
        "ana@exa mple.com",
        "ana@-example.com",
        "ana.@example.com",
        "<ana@example.com>",
        "Ana <ana@example.com>",
        "ana@example.com, ben@example.com",
        "anä@example.com",
        "a" * 65 + "@example.com",
        "ana@" + "x" * 250 + ".com",
    ],
)
async def test_an_implausible_email_is_422_naming_the_field(client: Client, email: str) -> None:
    response = await client.post("/api/v1/sessions", json={"display_name": "Ana", "email": email})
    body = assert_problem(response, 422, "validation_error")
    assert [error["field"] for error in body["errors"]] == ["email"]


@pytest.mark.parametrize(
    "email", ["ana@example.com\r\nBcc: all@example.com", "ana\x00@example.com", "x" * 1001, 42]
)
async def test_an_email_that_is_not_storable_text_is_400_naming_the_field(
    client: Client, email: object
) -> None:
    response = await client.post("/api/v1/sessions", json={"display_name": "Ana", "email": email})
    body = assert_problem(response, 400, "validation_error")
    assert "email" in json.dumps(body)


@pytest.mark.parametrize(
    "email", ["ana@example.com", "ana.lima+lunch@mail.example.co.uk", "o'brien@xn--bcher-kva.de"]
)
async def test_plausible_emails_are_taken(client: Client, email: str) -> None:
    response = await client.post("/api/v1/sessions", json={"display_name": "Ana", "email": email})
    assert response.status_code == 201, response.text


async def session_of(client: Client, name: str, email: str | None = None) -> dict[str, str]:
    body: dict[str, Any] = {"display_name": name}
    if email is not None:
        body["email"] = email
    response = await client.post("/api/v1/sessions", json=body)
    assert response.status_code == 201, response.text
    return {**bearer(response.json()["token"]), "X-User-Id": response.json()["user_id"]}


async def test_patch_me_sets_changes_and_clears_the_email(
    client: Client, engine: AsyncEngine
) -> None:
    me = await session_of(client, "Ana")
    user_id = me["X-User-Id"]

    added = await client.patch("/api/v1/me", json={"email": "ana@example.com"}, headers=me)
    assert added.status_code == 200, added.text
    assert added.json() == {"user_id": user_id, "display_name": "Ana", "email": "ana@example.com"}

    renamed = await client.patch("/api/v1/me", json={"display_name": "  Ana  L. "}, headers=me)
    assert renamed.json() == {
        "user_id": user_id,
        "display_name": "Ana L.",
        "email": "ana@example.com",
    }

    both = await client.patch(
        "/api/v1/me", json={"display_name": "Ana", "email": "lima@example.com"}, headers=me
    )
    assert both.json()["email"] == "lima@example.com"

    cleared = await client.patch("/api/v1/me", json={"email": None}, headers=me)
    assert cleared.json() == {"user_id": user_id, "display_name": "Ana", "email": None}
    assert await row_of(engine, user_id) == {"display_name": "Ana", "email": None}

    unchanged = await client.patch("/api/v1/me", json={}, headers=me)
    assert unchanged.json() == {"user_id": user_id, "display_name": "Ana", "email": None}


async def test_patch_me_creates_the_row_of_a_token_that_has_none(
    client: Client, settings: Settings, engine: AsyncEngine
) -> None:
    """A token from ``teamcart token``, or one issued before the users table, has no row."""
    assert settings.jwt_secret is not None
    issued = issue_token(settings.jwt_secret, display_name="Cli Person")
    assert await row_of(engine, issued.user_id) is None

    response = await client.patch(
        "/api/v1/me", json={"email": "cli@example.com"}, headers=bearer(issued.token)
    )

    assert response.status_code == 200, response.text
    assert response.json() == {
        "user_id": issued.user_id,
        "display_name": "Cli Person",
        "email": "cli@example.com",
    }


async def test_patch_me_refuses_bad_input(client: Client, settings: Settings) -> None:
    me = await session_of(client, "Ana")
    bad_email = await client.patch("/api/v1/me", json={"email": "not-an-address"}, headers=me)
    body = assert_problem(bad_email, 422, "validation_error")
    assert [error["field"] for error in body["errors"]] == ["email"]
    blank = await client.patch("/api/v1/me", json={"display_name": "   "}, headers=me)
    assert_problem(blank, 422, "validation_error")
    unknown = await client.patch("/api/v1/me", json={"role": "admin"}, headers=me)
    assert_problem(unknown, 400, "validation_error")
    nobody = await client.patch("/api/v1/me", json={"email": "a@example.com"})
    assert nobody.status_code == 401
    assert settings.jwt_secret is not None
    odd = issue_token(settings.jwt_secret, display_name="Odd", user_id="not-a-uuid")
    refused = await client.patch(
        "/api/v1/me", json={"email": "a@example.com"}, headers=bearer(odd.token)
    )
    assert_problem(refused, 422, "validation_error")


async def test_dev_mail_is_404_when_mail_goes_to_an_smtp_server(client: Client) -> None:
    """The suite's app sends to TEAMCART_SMTP_URL (its aiosmtpd): no catcher, no list."""
    response = await client.get("/dev/mail")
    assert response.status_code == 404


# --- the embedded catcher's mode, end to end ------------------------------------------------


@pytest.fixture(scope="module")
def catcher_mode(
    postgres_server_url: str, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, MailCatcher]]:
    """Settings as ``teamcart serve`` resolves them with no TEAMCART_SMTP_URL: the catcher's
    URL and folder. A database of its own, so the session app's mailer can't send its mail."""
    folder: Path = tmp_path_factory.mktemp("dev-mail")
    with fresh_database(postgres_server_url) as url, running_catcher(folder) as catcher:
        schema.upgrade(url)
        yield (
            settings.replace(database_url=url, smtp_url=catcher.url, mail_catcher_dir=folder),
            catcher,
        )


async def test_an_order_event_s_mail_reaches_the_catcher_and_dev_mail_lists_it(
    catcher_mode: tuple[Settings, MailCatcher],
) -> None:
    resolved, _ = catcher_mode
    assert resolved.database_url is not None
    async with AsyncTestClient(app=create_app(resolved)) as dev:
        assert (await dev.get("/dev/mail")).json() == {"items": []}
        ana = await session_of(dev, "Ana", "ana@example.com")
        ben = await session_of(dev, "Ben", "ben@example.com")
        payload = order_payload(
            "order_placed",
            host=ana["X-User-Id"],
            currency="JPY",
            payments=[(ana["X-User-Id"], "cod", 1200), (ben["X-User-Id"], "online", 3400)],
        )
        await commit_outbox_row(resolved.database_url, payload)

        items = await listed(dev, 3)

    assert {(item["to"], item["kind"]) for item in items} == {
        ("ana@example.com", "order_placed"),
        ("ben@example.com", "order_placed"),
        ("ben@example.com", "payment_receipt"),
    }
    assert [item["sent_at"] for item in items] == sorted(
        (item["sent_at"] for item in items), reverse=True
    )  # newest first
    ben_placed = next(
        item for item in items if (item["to"], item["kind"]) == ("ben@example.com", "order_placed")
    )
    assert ben_placed["subject"] == "Order TC-20261202-7KQ2M placed at Noodle Bar"
    assert "Your share: 3,400 JPY (paid online)" in ben_placed["text"]


async def commit_outbox_row(database_url: str, payload: dict[str, Any]) -> None:
    """What the order code's commit leaves: an order row in the outbox (its trigger wakes the
    app's dispatcher, which hands it to the planner)."""
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO outbox (aggregate_type, aggregate_id, version, event_type, "
                    "payload) VALUES ('order', CAST(:id AS uuid), :version, :event, "
                    "CAST(:payload AS jsonb))"
                ),
                {
                    "id": payload["order"]["id"] or str(uuid.uuid4()),
                    "version": payload["version"],
                    "event": payload["event"],
                    "payload": json.dumps(payload),
                },
            )
    finally:
        await engine.dispose()


async def listed(dev: Client, count: int) -> list[dict[str, Any]]:
    """``GET /dev/mail``'s items once it lists ``count`` (within a few seconds)."""
    async with asyncio.timeout(10):
        while True:
            response = await dev.get("/dev/mail")
            assert response.status_code == 200, response.text
            items: list[dict[str, Any]] = response.json()["items"]
            if len(items) >= count:
                return items
            await asyncio.sleep(0.1)
