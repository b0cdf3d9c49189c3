"""Member reminders on real PostgreSQL, Redis and SMTP: before an open cart's deadline every
member not ready, and before a locked cart's payment window ends every member who owes and
hasn't settled, gets one ``reminder`` on their sockets (through the uvicorn ``live_server``)
and, with an address, one ``reminder`` mail (sent by the apps' mailers to the
``mail_catcher``), however often and however concurrently sweepers run.

The session's two apps sweep in the background too (every 5 s, a 30-minute payment window).
The ``ready`` tests don't mind which sweeper claims a reminder: they count what arrives. The
``pay`` tests sweep with a 20-minute window and carts asking for 25 minutes' notice, so only
this module's sweepers find those reminders due (the apps' would in 5 minutes).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection, connect

from app.config import Settings
from app.mail.catcher import CaughtMail, MailCatcher
from app.payments.gateway import StripeGateway
from app.persistence.database import create_engine
from app.persistence.reminders import claim_member_reminders
from app.unit_of_work import UnitOfWorkRunner
from app.use_cases.reminders import NOTHING_TO_PAY
from app.wiring import build_runner
from app.workers import sweep_once
from realtime.projection import channel_for
from realtime.protocol import Reminder, reminder_frame
from tests.builders import Client, create_product, create_store
from tests.integration.test_realtime_ws import RECEIVE_TIMEOUT, receive, receive_type, ws_url

pytestmark = pytest.mark.usefixtures("live_server")

WINDOW = timedelta(minutes=20)
"""This module's sweepers' payment window: a locked cart asking for 25 minutes' notice is
due at once for them, not for the apps' (30 minutes)."""
PAY_NOTICE = 25


class Reminders:
    """The ``Remind`` callback of this module's sweepers: records what they send and
    publishes it on the cart's channel, as the wiring's hub does, for every process's
    sockets. Other tests' carts are recorded nowhere and told nothing."""

    def __init__(self, redis: Redis, carts: set[str]) -> None:
        self.redis = redis
        self.carts = carts
        self.sent: list[tuple[str, str, str]] = []

    async def __call__(self, cart_id: str, user_id: str, deadline: datetime, what: str) -> None:
        if cart_id not in self.carts:
            return
        self.sent.append((cart_id, user_id, what))
        frame = reminder_frame([user_id], Reminder(deadline=deadline, what=what))
        await self.redis.publish(channel_for(cart_id), frame)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def second(
    settings: Settings, gateway: StripeGateway
) -> AsyncIterator[tuple[AsyncEngine, UnitOfWorkRunner]]:
    """A second sweeper's engine and runner, of its own, like another server process's."""
    assert settings.database_url is not None
    engine = create_engine(settings.database_url, pool_size=3)
    yield engine, build_runner(engine, gateway, relay=None)
    await engine.dispose()


async def person(client: Client, name: str, email: str | None) -> dict[str, str]:
    body = {"display_name": name, **({"email": email} if email else {})}
    answer = await client.post("/api/v1/sessions", json=body)
    assert answer.status_code == 201, answer.text
    made = answer.json()
    return {"Authorization": f"Bearer {made['token']}", "X-User-Id": made["user_id"]}


def address(name: str) -> str:
    return f"{name.lower()}-{uuid.uuid4().hex[:10]}@example.test"


async def a_cart(
    client: Client,
    admin: dict[str, str],
    people: dict[str, str | None],
    *,
    items: tuple[str, ...],
    **options: Any,
) -> tuple[str, dict[str, dict[str, str]], dict[str, Any]]:
    """A cart at a new store opened by the first of ``people`` (name → address or None),
    the others joined, each named in ``items`` with one 12.00 dish: its URL, everyone's
    headers, and its view."""
    store = await create_store(client, admin, tax_rate_bps=0, delivery_fee_minor=300)
    product = await create_product(client, admin, store["id"], price_minor=1200, option_groups=[])
    heads = {name: await person(client, name, email) for name, email in people.items()}
    host = next(iter(heads.values()))
    opened = await client.post(
        "/api/v1/teamcarts", json={"store_id": store["id"], **options}, headers=host
    )
    assert opened.status_code == 201, opened.text
    cart = opened.json()
    url = f"/api/v1/teamcarts/{cart['id']}"
    for name, headers in heads.items():
        if headers is not host:
            joined = await client.post(
                "/api/v1/teamcarts/join", json={"invite_code": cart["invite_code"]}, headers=headers
            )
            assert joined.status_code == 200, joined.text
        if name in items:
            added = await client.post(
                url + "/items", json={"product_id": product["id"], "quantity": 1}, headers=headers
            )
            assert added.status_code == 201, added.text
    return url, heads, (await client.get(url, headers=host)).json()


async def mail_to(
    catcher: MailCatcher, addresses: set[str], count: int, within: float = 15.0
) -> list[CaughtMail]:
    """The mail caught for ``addresses`` once ``count`` of it arrived, and a moment more
    (a duplicate would be seen too)."""
    async with asyncio.timeout(within):
        while True:
            if len([m for m in catcher.caught(limit=10_000) if m.to in addresses]) >= count:
                break
            await asyncio.sleep(0.05)
    await asyncio.sleep(1.5)  # past the mailers' poll: anything more would have come
    return [m for m in catcher.caught(limit=10_000) if m.to in addresses]


async def rows(engine: AsyncEngine, query: str, cart_id: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        result = await conn.execute(text(query), {"id": cart_id})
        return [dict(row) for row in result.mappings()]


async def reminders_until_pong(ws: ClientConnection) -> list[dict[str, Any]]:
    """The reminders a socket gets before the answer to a ping sent now."""
    await ws.send(json.dumps({"type": "ping"}))
    seen = []
    async with asyncio.timeout(RECEIVE_TIMEOUT):
        while (message := await receive(ws))["type"] != "pong":
            if message["type"] == "reminder":
                seen.append(message)
    return seen


async def test_members_not_ready_are_reminded_once_by_socket_and_mail(
    client: Client,
    admin_headers: dict[str, str],
    live_server: str,
    engine: AsyncEngine,
    runner: UnitOfWorkRunner,
    settings: Settings,
    mail_catcher: MailCatcher,
    redis: Redis,
) -> None:
    deadline = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)
    emails = {"Host": address("Host"), "Ana": address("Ana"), "Cleo": address("Cleo")}
    url, heads, cart = await a_cart(
        client,
        admin_headers,
        {"Host": emails["Host"], "Ana": emails["Ana"], "Ben": None, "Cleo": emails["Cleo"]},
        items=("Host", "Ana", "Ben", "Cleo"),
        deadline=deadline.isoformat(),
    )  # 15 minutes' notice by default: due at once
    ready = await client.put(url + "/ready", json={"ready": True}, headers=heads["Cleo"])
    assert ready.status_code == 200, ready.text
    remind = Reminders(redis, {cart["id"]})
    sockets = {name: connect(ws_url(live_server, cart["id"], h)) for name, h in heads.items()}
    async with (
        sockets["Host"] as host_ws,
        sockets["Ana"] as ana_ws,
        sockets["Ben"] as ben_ws,
        sockets["Cleo"] as cleo_ws,
    ):
        for ws in (host_ws, ana_ws, ben_ws, cleo_ws):
            await receive_type(ws, "snapshot")
        await sweep_once(engine, runner, settings.payment_window, remind)  # or the apps' did
        for ws in (host_ws, ana_ws, ben_ws):
            reminder = await receive_type(ws, "reminder")
            assert reminder["what"] == "ready"
            assert datetime.fromisoformat(reminder["deadline"]) == deadline
        await sweep_once(engine, runner, settings.payment_window, remind)
        await sweep_once(engine, runner, settings.payment_window, remind)
        for ws in (host_ws, ana_ws, ben_ws, cleo_ws):
            assert await reminders_until_pong(ws) == []  # once; Cleo is ready: never

    mail = await mail_to(mail_catcher, set(emails.values()), 2)
    assert Counter((m.to, m.kind) for m in mail) == Counter(
        {(emails["Host"], "reminder"): 1, (emails["Ana"], "reminder"): 1}
    )  # Ben has no address, Cleo is ready
    at = f"{deadline:%H:%M} UTC"
    for caught in mail:
        assert caught.subject.startswith(f"The cart closes at {at}")
        assert caught.subject.endswith("— mark yourself ready")
        assert at in caught.text
    planned = await rows(
        engine,
        "SELECT kind, status, order_id, outbox_id FROM emails WHERE cart_id = CAST(:id AS uuid)",
        cart["id"],
    )
    assert (
        planned == [{"kind": "reminder", "status": "sent", "order_id": None, "outbox_id": None}] * 2
    )
    claims = await rows(
        engine,
        "SELECT user_id::text AS user_id, what, deadline FROM cart_reminders "
        "WHERE cart_id = CAST(:id AS uuid) ORDER BY user_id",
        cart["id"],
    )
    not_ready = sorted(heads[name]["X-User-Id"] for name in ("Host", "Ana", "Ben"))
    assert claims == [{"user_id": u, "what": "ready", "deadline": deadline} for u in not_ready]


async def test_only_members_who_owe_and_have_not_paid_are_reminded_to_pay(
    client: Client,
    admin_headers: dict[str, str],
    live_server: str,
    engine: AsyncEngine,
    runner: UnitOfWorkRunner,
    mail_catcher: MailCatcher,
    redis: Redis,
) -> None:
    emails = {"Host": address("Host"), "Ana": address("Ana"), "Cleo": address("Cleo")}
    url, heads, _ = await a_cart(
        client,
        admin_headers,
        {"Host": emails["Host"], "Ana": emails["Ana"], "Ben": None, "Cleo": emails["Cleo"]},
        items=("Host", "Ana", "Ben"),  # Cleo has nothing in the cart: she owes nothing
        reminder_minutes=PAY_NOTICE,
    )
    locked = await client.post(url + "/lock", headers=heads["Host"])
    assert locked.status_code == 200, locked.text
    cod = await client.post(url + "/payments/cod", headers=heads["Host"])
    assert cod.status_code == 200, cod.text
    cart = (await client.get(url, headers=heads["Host"])).json()
    owes = {m["user_id"]: m["owes_minor"] for m in cart["members"]}
    assert owes[heads["Cleo"]["X-User-Id"]] == 0
    remind = Reminders(redis, {cart["id"]})
    sockets = {name: connect(ws_url(live_server, cart["id"], h)) for name, h in heads.items()}
    async with (
        sockets["Host"] as host_ws,
        sockets["Ana"] as ana_ws,
        sockets["Ben"] as ben_ws,
        sockets["Cleo"] as cleo_ws,
    ):
        for ws in (host_ws, ana_ws, ben_ws, cleo_ws):
            await receive_type(ws, "snapshot")
        await sweep_once(engine, runner, WINDOW, remind)
        assert sorted(remind.sent) == sorted(
            (cart["id"], heads[name]["X-User-Id"], "pay") for name in ("Ana", "Ben")
        )
        query = "SELECT locked_at FROM teamcarts WHERE id = CAST(:id AS uuid)"
        deadline = (await rows(engine, query, cart["id"]))[0]["locked_at"] + WINDOW
        for ws in (ana_ws, ben_ws):
            reminder = await receive_type(ws, "reminder")
            assert reminder["what"] == "pay"
            assert datetime.fromisoformat(reminder["deadline"]) == deadline
        await sweep_once(engine, runner, WINDOW, remind)
        assert len(remind.sent) == 2  # once
        for ws in (host_ws, ana_ws, ben_ws, cleo_ws):
            assert await reminders_until_pong(ws) == []

    mail = await mail_to(mail_catcher, set(emails.values()), 1)
    assert [(m.to, m.kind) for m in mail] == [(emails["Ana"], "reminder")]
    share = owes[heads["Ana"]["X-User-Id"]]
    amount = f"{share // 100}.{share % 100:02d} USD"
    assert mail[0].subject.startswith(f"Pay your share of {amount} before ")
    assert amount in mail[0].text
    assert amount in (mail[0].html or "")


async def test_two_sweepers_at_once_send_each_reminder_once(
    client: Client,
    admin_headers: dict[str, str],
    live_server: str,
    engine: AsyncEngine,
    runner: UnitOfWorkRunner,
    second: tuple[AsyncEngine, UnitOfWorkRunner],
    mail_catcher: MailCatcher,
    redis: Redis,
) -> None:
    names = ("Host", "Ana", "Ben", "Cleo", "Dan")
    addresses: set[str] = set()
    carts = []
    for _ in range(3):
        emails = {name: address(name) for name in names}
        addresses |= set(emails.values())
        carts.append(
            await a_cart(
                client, admin_headers, dict(emails), items=names, reminder_minutes=PAY_NOTICE
            )
        )
    for url, heads, _ in carts:
        assert (await client.post(url + "/lock", headers=heads["Host"])).status_code == 200
    remind = Reminders(redis, {cart["id"] for _, _, cart in carts})
    ana_heads = carts[0][1]["Ana"]
    async with connect(ws_url(live_server, carts[0][2]["id"], ana_heads)) as ana_ws:
        await receive_type(ana_ws, "snapshot")
        other_engine, other_runner = second
        for _ in range(3):
            await asyncio.gather(
                sweep_once(engine, runner, WINDOW, remind),
                sweep_once(other_engine, other_runner, WINDOW, remind),
            )
        assert (await receive_type(ana_ws, "reminder"))["what"] == "pay"
        assert await reminders_until_pong(ana_ws) == []

    expected = Counter(
        (cart["id"], heads[name]["X-User-Id"], "pay") for _, heads, cart in carts for name in names
    )
    assert Counter(remind.sent) == expected  # each (cart, member) once, 15 in all
    for _, _, cart in carts:
        planned = await rows(
            engine, "SELECT user_id FROM emails WHERE cart_id = CAST(:id AS uuid)", cart["id"]
        )
        assert len(planned) == len(names)
    mail = await mail_to(mail_catcher, addresses, 3 * len(names))
    assert len(mail) == 3 * len(names)
    assert len({m.message_id for m in mail}) == 3 * len(names)


async def test_a_claim_waits_for_a_concurrent_one_and_then_takes_nothing(
    client: Client, admin_headers: dict[str, str], engine: AsyncEngine, settings: Settings
) -> None:
    """The race itself: two transactions claim the same reminders; the second blocks on the
    first's keys and, once the first commits, inserts none of them."""
    url, heads, cart = await a_cart(
        client,
        admin_headers,
        {"Host": None, "Ana": None},
        items=("Host", "Ana"),
        reminder_minutes=PAY_NOTICE,
    )
    assert (await client.post(url + "/lock", headers=heads["Host"])).status_code == 200
    assert settings.database_url is not None
    other = create_engine(settings.database_url, pool_size=1)
    try:
        async with engine.connect() as first_conn, other.connect() as second_conn:
            first = await first_conn.begin()
            taken = await claim_member_reminders(first_conn, WINDOW, NOTHING_TO_PAY)
            mine = {r.user_id for r in taken if r.cart_id == cart["id"]}
            assert mine == {h["X-User-Id"] for h in heads.values()}

            async def claim_again() -> set[str]:
                async with second_conn.begin():
                    again = await claim_member_reminders(second_conn, WINDOW, NOTHING_TO_PAY)
                    return {r.user_id for r in again if r.cart_id == cart["id"]}

            racing = asyncio.create_task(claim_again())
            await asyncio.sleep(0.5)
            assert not racing.done()  # waiting on the first's uncommitted keys
            await first.commit()
            assert await asyncio.wait_for(racing, 5) == set()
    finally:
        await other.dispose()


async def test_no_notice_means_no_reminders(
    client: Client,
    admin_headers: dict[str, str],
    engine: AsyncEngine,
    runner: UnitOfWorkRunner,
    redis: Redis,
) -> None:
    _, _, cart = await a_cart(
        client,
        admin_headers,
        {"Host": address("Host"), "Ana": None},
        items=("Host", "Ana"),
        deadline=(datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
        reminder_minutes=0,
    )
    remind = Reminders(redis, {cart["id"]})
    await sweep_once(engine, runner, WINDOW, remind)
    assert remind.sent == []
    query = "SELECT reminder_minutes FROM teamcarts WHERE id = CAST(:id AS uuid)"
    assert await rows(engine, query, cart["id"]) == [{"reminder_minutes": 0}]
    claims = "SELECT * FROM cart_reminders WHERE cart_id = CAST(:id AS uuid)"
    assert await rows(engine, claims, cart["id"]) == []


@pytest.mark.parametrize("minutes", [-1, 1441, 2.5, "15"])
async def test_reminder_minutes_are_a_whole_number_from_0_to_1440(
    client: Client, admin_headers: dict[str, str], minutes: object
) -> None:
    store = await create_store(client, admin_headers)
    host = await person(client, "Host", None)
    opened = await client.post(
        "/api/v1/teamcarts",
        json={"store_id": store["id"], "reminder_minutes": minutes},
        headers=host,
    )
    assert opened.status_code == 400, opened.text
    assert "reminder_minutes" in opened.text


async def test_reminder_minutes_are_kept_on_the_cart(
    client: Client, admin_headers: dict[str, str], engine: AsyncEngine
) -> None:
    store = await create_store(client, admin_headers)
    host = await person(client, "Host", None)
    query = "SELECT reminder_minutes FROM teamcarts WHERE id = CAST(:id AS uuid)"
    for body, kept in (({}, 15), ({"reminder_minutes": 1440}, 1440)):
        opened = await client.post(
            "/api/v1/teamcarts", json={"store_id": store["id"], **body}, headers=host
        )
        assert opened.status_code == 201, opened.text
        assert await rows(engine, query, opened.json()["id"]) == [{"reminder_minutes": kept}]
