"""Concurrent writers on real PostgreSQL: one winner, consistent versions, exact stock."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.persistence import schema
from app.persistence.database import create_engine
from app.persistence.tables import orders
from app.unit_of_work import UnitOfWorkRunner
from app.use_cases.teamcarts import expire_due_carts
from app.wiring import create_app
from domain.teamcart import MAX_MEMBERS
from tests.builders import Client, create_product, create_store
from tests.integration.test_group_flow import ADDRESS, open_cart, session, uid
from tests.integration.test_http_basics import assert_problem
from tests.services import fresh_database


async def stock_of(client: Client, headers: dict[str, str], store_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/stores/{store_id}/products", headers=headers)
    return {p["id"]: p["stock"] for p in response.json()["items"]}


async def cart_with_items(
    client: Client, admin: dict[str, str], *, stock: int | None = 50, quantity: int = 1
) -> tuple[dict[str, str], dict[str, Any], dict[str, Any], str]:
    store = await create_store(client, admin)
    product = await create_product(client, admin, store["id"], stock=stock, option_groups=[])
    host = await session(client, "Host")
    cart = await open_cart(client, host, store["id"])
    url = f"/api/v1/teamcarts/{cart['id']}"
    added = await client.post(
        url + "/items", json={"product_id": product["id"], "quantity": quantity}, headers=host
    )
    assert added.status_code == 201, added.text
    return host, store, product, url


async def test_two_concurrent_locks_have_one_winner(
    client: Client, admin_headers: dict[str, str]
) -> None:
    host, store, product, url = await cart_with_items(client, admin_headers, quantity=3)
    before = (await client.get(url, headers=host)).json()["version"]

    first, second = await asyncio.gather(
        client.post(url + "/lock", headers=host), client.post(url + "/lock", headers=host)
    )
    statuses = sorted([first.status_code, second.status_code])
    assert statuses == [200, 409], (first.text, second.text)
    loser = first if first.status_code == 409 else second
    assert loser.json()["code"] in {"cart_locked", "version_conflict"}

    after = (await client.get(url, headers=host)).json()
    assert after["status"] == "locked"
    assert after["version"] == before + 1  # exactly one CartLocked
    assert (await stock_of(client, host, store["id"]))[product["id"]] == 50 - 3  # reserved once


async def test_add_item_racing_lock_leaves_a_consistent_cart(
    client: Client, admin_headers: dict[str, str]
) -> None:
    for _ in range(5):  # a few rounds so both orderings get a chance
        host, store, product, url = await cart_with_items(client, admin_headers, quantity=2)
        before = (await client.get(url, headers=host)).json()["version"]
        added, locked = await asyncio.gather(
            client.post(
                url + "/items", json={"product_id": product["id"], "quantity": 5}, headers=host
            ),
            client.post(url + "/lock", headers=host),
        )
        assert locked.status_code == 200, locked.text
        cart = (await client.get(url, headers=host)).json()
        quantities = sum(item["quantity"] for item in cart["items"])
        if added.status_code == 201:
            assert quantities == 7  # the add landed before the lock, and was priced
        else:
            assert_problem(added, 409, added.json()["code"])
            assert added.json()["code"] in {"cart_locked", "version_conflict"}
            assert quantities == 2
        assert cart["subtotal_minor"] == quantities * product["price_minor"]
        assert (await stock_of(client, host, store["id"]))[product["id"]] == 50 - quantities
        # one version per event: the add (plus ready flag untouched) and the lock
        assert cart["version"] == before + (2 if added.status_code == 201 else 1)


async def test_eight_members_adding_items_at_the_same_moment_all_succeed(
    client: Client, admin_headers: dict[str, str], live_server: str
) -> None:
    """Optimistic saves conflict here; the retry locks the cart, so nobody gets a 409."""
    host, _, product, url = await cart_with_items(client, admin_headers, stock=None)
    invite = (await client.get(url, headers=host)).json()["invite_code"]
    guests = [await session(client, f"Guest {n}") for n in range(8)]
    for guest in guests:
        joined = await client.post(
            "/api/v1/teamcarts/join", json={"invite_code": invite}, headers=guest
        )
        assert joined.status_code == 200
    before = (await client.get(url, headers=host)).json()["version"]
    item = {"product_id": product["id"], "quantity": 2}
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        added = await asyncio.gather(
            *(http.post(url + "/items", json=item, headers=guest) for guest in guests)
        )
    assert [r.status_code for r in added] == [201] * len(guests)
    after = (await client.get(url, headers=host)).json()
    assert after["version"] == before + len(guests)
    assert sorted(i["user_id"] for i in after["items"] if i["user_id"] != uid(host)) == sorted(
        uid(g) for g in guests
    )


async def test_twenty_carts_locking_the_last_ten_units_reserve_exactly_ten(
    client: Client, admin_headers: dict[str, str]
) -> None:
    store = await create_store(client, admin_headers)
    product = await create_product(client, admin_headers, store["id"], stock=10, option_groups=[])
    urls = []
    hosts = []
    for _ in range(20):
        host = await session(client, "Host")
        cart = await open_cart(client, host, store["id"])
        url = f"/api/v1/teamcarts/{cart['id']}"
        added = await client.post(
            url + "/items", json={"product_id": product["id"], "quantity": 1}, headers=host
        )
        assert added.status_code == 201
        urls.append(url)
        hosts.append(host)

    results = await asyncio.gather(
        *(client.post(url + "/lock", headers=host) for url, host in zip(urls, hosts, strict=True))
    )
    won = [r for r in results if r.status_code == 200]
    lost = [r for r in results if r.status_code != 200]
    assert len(won) == 10
    for response in lost:
        body = assert_problem(response, 409, "out_of_stock")
        assert body["product_ids"] == [product["id"]]
        assert product["name"] in body["detail"]
    assert (await stock_of(client, hosts[0], store["id"]))[product["id"]] == 0


async def test_unlock_and_cancel_give_stock_back(
    client: Client, admin_headers: dict[str, str]
) -> None:
    host, store, product, url = await cart_with_items(client, admin_headers, stock=5, quantity=4)
    assert (await client.post(url + "/lock", headers=host)).status_code == 200
    assert (await stock_of(client, host, store["id"]))[product["id"]] == 1
    assert (await client.post(url + "/unlock", headers=host)).status_code == 200
    assert (await stock_of(client, host, store["id"]))[product["id"]] == 5
    assert (await client.post(url + "/lock", headers=host)).status_code == 200
    cancelled = await client.post(url + "/cancel", headers=host)
    assert cancelled.json()["status"] == "cancelled"
    assert (await stock_of(client, host, store["id"]))[product["id"]] == 5
    assert_problem(await client.post(url + "/cancel", headers=host), 409, "cart_not_open")


async def _ready_cart(client: Client, admin: dict[str, str]) -> tuple[dict[str, str], str]:
    host, _, _, url = await cart_with_items(client, admin)
    assert (await client.post(url + "/lock", headers=host)).status_code == 200
    assert (await client.post(url + "/payments/cod", headers=host)).status_code == 200
    return host, url


async def _orders_of_cart(engine: AsyncEngine, cart_url: str) -> int:
    cart_id = cart_url.rsplit("/", 1)[-1]
    async with engine.connect() as conn:
        count = await conn.execute(
            select(func.count()).select_from(orders).where(orders.c.cart_id == cart_id)
        )
        return int(count.scalar_one())


async def test_confirm_with_the_same_idempotency_key_creates_one_order(
    client: Client, engine: AsyncEngine, admin_headers: dict[str, str]
) -> None:
    host, url = await _ready_cart(client, admin_headers)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"delivery_address": ADDRESS}
    first = await client.post(url + "/confirm", json=body, headers={**host, **key})
    assert first.status_code == 201, first.text
    again = await client.post(url + "/confirm", json=body, headers={**host, **key})
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    other_body = {"delivery_address": {**ADDRESS, "city": "Elsewhere"}}
    assert_problem(
        await client.post(url + "/confirm", json=other_body, headers={**host, **key}),
        422,
        "idempotency_key_reused",
    )
    assert_problem(
        await client.post(url + "/confirm", json=body, headers=host), 409, "cart_not_ready"
    )
    assert await _orders_of_cart(engine, url) == 1


async def test_concurrent_confirms_create_one_order(
    client: Client, engine: AsyncEngine, admin_headers: dict[str, str]
) -> None:
    host, url = await _ready_cart(client, admin_headers)
    body = {"delivery_address": ADDRESS}
    results = await asyncio.gather(
        *(client.post(url + "/confirm", json=body, headers=host) for _ in range(4))
    )
    assert sorted(r.status_code for r in results) == [201, 409, 409, 409]
    assert await _orders_of_cart(engine, url) == 1


async def test_sweeper_locks_due_carts_and_expires_unpaid_ones(
    client: Client,
    runner: UnitOfWorkRunner,
    admin_headers: dict[str, str],
) -> None:
    store = await create_store(client, admin_headers)
    product = await create_product(client, admin_headers, store["id"], stock=9, option_groups=[])
    host = await session(client, "Host")
    deadline = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    with_items = (
        await client.post(
            "/api/v1/teamcarts", json={"store_id": store["id"], "deadline": deadline}, headers=host
        )
    ).json()
    empty = (
        await client.post(
            "/api/v1/teamcarts", json={"store_id": store["id"], "deadline": deadline}, headers=host
        )
    ).json()
    full_url = f"/api/v1/teamcarts/{with_items['id']}"
    await client.post(
        full_url + "/items", json={"product_id": product["id"], "quantity": 2}, headers=host
    )
    await asyncio.sleep(1.2)

    await expire_due_carts(runner, timedelta(minutes=30))
    assert (await client.get(full_url, headers=host)).json()["status"] == "locked"
    empty_view = await client.get(f"/api/v1/teamcarts/{empty['id']}", headers=host)
    assert empty_view.json()["status"] == "expired"
    assert (await stock_of(client, host, store["id"]))[product["id"]] == 7

    await expire_due_carts(runner, timedelta(0))  # the payment window is over
    assert (await client.get(full_url, headers=host)).json()["status"] == "expired"
    assert (await stock_of(client, host, store["id"]))[product["id"]] == 9
    assert_problem(
        await client.post(
            "/api/v1/teamcarts/join", json={"invite_code": with_items["invite_code"]}, headers=host
        ),
        404,
        "invite_not_found",
    )


async def test_tip_and_coupon_requote_and_count_the_coupon_once_confirmed(
    client: Client, admin_headers: dict[str, str]
) -> None:
    store = await create_store(client, admin_headers, delivery_fee_minor=0, tax_rate_bps=0)
    product = await create_product(
        client, admin_headers, store["id"], price_minor=1000, option_groups=[]
    )
    coupon = await client.post(
        f"/api/v1/stores/{store['id']}/coupons",
        json={"code": "HALF", "kind": "percent", "value": 50, "max_uses": 1},
        headers=admin_headers,
    )
    assert coupon.status_code == 201
    host = await session(client, "Host")
    guest = await session(client, "Guest")
    cart = await open_cart(client, host, store["id"])
    url = f"/api/v1/teamcarts/{cart['id']}"
    await client.post(
        "/api/v1/teamcarts/join", json={"invite_code": cart["invite_code"]}, headers=guest
    )
    for member, quantity in ((host, 1), (guest, 3)):
        await client.post(
            url + "/items", json={"product_id": product["id"], "quantity": quantity}, headers=member
        )
    locked = (await client.post(url + "/lock", headers=host)).json()
    assert locked["total_minor"] == 4000

    tipped = await client.put(url + "/tip", json={"amount_minor": 400}, headers=host)
    assert tipped.json()["quote_version"] == locked["quote_version"] + 1
    assert tipped.json()["total_minor"] == 4400
    assert_problem(
        await client.put(url + "/coupon", json={"code": "NOPE"}, headers=host),
        404,
        "coupon_not_found",
    )
    assert_problem(
        await client.put(url + "/coupon", json={"code": "half"}, headers=guest), 403, "host_only"
    )
    discounted = (await client.put(url + "/coupon", json={"code": "half"}, headers=host)).json()
    assert discounted["discount_minor"] == 2000
    assert discounted["total_minor"] == 2400
    shares = {m["user_id"]: m["share_minor"] for m in discounted["members"]}
    assert shares == {uid(host): 600, uid(guest): 1800}

    assert (await client.post(url + "/payments/cod", headers=host)).status_code == 200
    assert_problem(
        await client.put(url + "/tip", json={"amount_minor": 0}, headers=host),
        409,
        "payment_activity_started",
    )
    assert (await client.post(url + "/payments/cod", headers=guest)).status_code == 200
    confirmed = await client.post(
        url + "/confirm", json={"delivery_address": ADDRESS}, headers=host
    )
    assert confirmed.status_code == 201
    order = (
        await client.get(f"/api/v1/orders/{confirmed.json()['order_id']}", headers=guest)
    ).json()
    assert order["coupon_code"] == "HALF"
    assert order["discount_minor"] == 2000

    second = await open_cart(client, host, store["id"])  # max_uses=1, and it has been used
    second_url = f"/api/v1/teamcarts/{second['id']}"
    await client.post(
        second_url + "/items", json={"product_id": product["id"], "quantity": 1}, headers=host
    )
    await client.post(second_url + "/lock", headers=host)
    assert_problem(
        await client.put(second_url + "/coupon", json={"code": "HALF"}, headers=host),
        422,
        "coupon_exhausted",
    )


async def test_members_leave_and_are_removed_with_their_items(
    client: Client, admin_headers: dict[str, str]
) -> None:
    store = await create_store(client, admin_headers)
    product = await create_product(client, admin_headers, store["id"], option_groups=[])
    host, ana, ben = (
        await session(client, "Host"),
        await session(client, "Ana"),
        await session(client, "Ben"),
    )
    cart = await open_cart(client, host, store["id"])
    url = f"/api/v1/teamcarts/{cart['id']}"
    for guest in (ana, ben):
        await client.post(
            "/api/v1/teamcarts/join", json={"invite_code": cart["invite_code"]}, headers=guest
        )
        await client.post(
            url + "/items", json={"product_id": product["id"], "quantity": 1}, headers=guest
        )
    assert_problem(await client.delete(f"{url}/members/{uid(ben)}", headers=ana), 403, "host_only")
    assert (await client.delete(f"{url}/members/{uid(ana)}", headers=ana)).status_code == 204
    assert (await client.delete(f"{url}/members/{uid(ben)}", headers=host)).status_code == 204
    view = (await client.get(url, headers=host)).json()
    assert [m["user_id"] for m in view["members"]] == [uid(host)]
    assert view["items"] == []
    assert_problem(await client.get(url, headers=ana), 403, "not_a_member")


async def test_an_idempotency_key_whose_request_was_refused_with_409_can_be_retried(
    client: Client, admin_headers: dict[str, str]
) -> None:
    store = await create_store(client, admin_headers)
    product = await create_product(client, admin_headers, store["id"], option_groups=[])
    host = await session(client, "Host")
    cart = await open_cart(client, host, store["id"])
    url = f"/api/v1/teamcarts/{cart['id']}"
    key = {**host, "Idempotency-Key": str(uuid.uuid4())}
    assert_problem(await client.post(url + "/lock", headers=key), 409, "empty_cart")
    await client.post(
        url + "/items", json={"product_id": product["id"], "quantity": 1}, headers=host
    )
    assert (await client.post(url + "/lock", headers=key)).status_code == 200

    huge = {"product_id": product["id"], "quantity": 1, "options": ["x" * (1 << 20)]}
    too_big = await client.post(
        url + "/items", json=huge, headers={**host, "Idempotency-Key": str(uuid.uuid4())}
    )
    assert_problem(too_big, 413, "payload_too_large")


async def test_sixty_joining_at_once_fill_the_cart_to_its_limit_and_no_further(
    client: Client, admin_headers: dict[str, str]
) -> None:
    store = await create_store(client, admin_headers)
    host = await session(client, "Host")
    cart = await open_cart(client, host, store["id"])
    guests = [await session(client, f"Guest {n}") for n in range(60)]
    results = await asyncio.gather(
        *(
            client.post(
                "/api/v1/teamcarts/join", json={"invite_code": cart["invite_code"]}, headers=g
            )
            for g in guests
        )
    )
    assert sorted(r.status_code for r in results) == [200] * (MAX_MEMBERS - 1) + [409] * (
        61 - MAX_MEMBERS
    )
    for refused in (r for r in results if r.status_code == 409):
        assert_problem(refused, 409, "cart_full")
    view = (await client.get(f"/api/v1/teamcarts/{cart['id']}", headers=host)).json()
    assert len(view["members"]) == MAX_MEMBERS


async def test_a_removed_guest_cannot_rejoin_with_the_same_invite(
    client: Client, admin_headers: dict[str, str]
) -> None:
    store = await create_store(client, admin_headers)
    host, guest = await session(client, "Host"), await session(client, "Guest")
    cart = await open_cart(client, host, store["id"])
    join = {"invite_code": cart["invite_code"]}
    assert (
        await client.post("/api/v1/teamcarts/join", json=join, headers=guest)
    ).status_code == 200
    url = f"/api/v1/teamcarts/{cart['id']}"
    removed = await client.delete(f"{url}/members/{uid(guest)}", headers=host)
    assert removed.status_code == 204
    again = await client.post("/api/v1/teamcarts/join", json=join, headers=guest)
    assert_problem(again, 404, "removed_from_cart")
    assert_problem(await client.get(url, headers=guest), 403, "not_a_member")


@pytest.fixture
def own_database(postgres_server_url: str) -> Iterator[str]:
    """A database of this test's own, so cutting its connections disturbs no other app."""
    with fresh_database(postgres_server_url) as url:
        schema.upgrade(url)
        yield url


async def _terminate_app_connections(database_url: str) -> None:
    """As if PostgreSQL had restarted: every other server connection to the database ends."""
    cutter = create_engine(database_url, pool_size=1)
    try:
        async with cutter.connect() as conn:
            await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'"
                )
            )
    finally:
        await cutter.dispose()


@pytest.mark.parametrize(
    "first_statement", ["through SQLAlchemy (a product read)", "to the driver (the cart's load)"]
)
async def test_a_command_on_a_pooled_connection_that_died_is_run_again_on_a_fresh_one(
    settings: Settings, own_database: str, admin_headers: dict[str, str], first_statement: str
) -> None:
    """PostgreSQL restarted (here: every server connection of the app terminated) since the
    pool last used its connections: the next command still succeeds, not 503, whether its
    first statement goes through SQLAlchemy (adding an item reads the product) or straight
    to asyncpg (a quantity change starts with the cart's load)."""
    async with AsyncTestClient(app=create_app(settings.replace(database_url=own_database))) as app:
        host, _, product, url = await cart_with_items(app, admin_headers, stock=None, quantity=1)
        assert (await app.get(url, headers=host)).status_code == 200  # the pool is in use
        item_id = (await app.get(url, headers=host)).json()["items"][0]["item_id"]
        await _terminate_app_connections(own_database)
        if first_statement.startswith("through SQLAlchemy"):
            done = await app.post(
                url + "/items", json={"product_id": product["id"], "quantity": 1}, headers=host
            )
            assert done.status_code == 201, done.text
        else:
            done = await app.patch(f"{url}/items/{item_id}", json={"quantity": 3}, headers=host)
            assert done.status_code == 200, done.text
            assert (await app.get(url, headers=host)).json()["items"][0]["quantity"] == 3


async def _locked_cart_of_one(
    client: Client, store: dict[str, Any], product: dict[str, Any]
) -> tuple[dict[str, str], str]:
    host = await session(client, "Host")
    cart = await open_cart(client, host, store["id"])
    url = f"/api/v1/teamcarts/{cart['id']}"
    await client.post(
        url + "/items", json={"product_id": product["id"], "quantity": 1}, headers=host
    )
    assert (await client.post(url + "/lock", headers=host)).status_code == 200
    return host, url


async def test_a_one_use_coupon_is_held_by_one_cart_at_a_time_so_none_is_stranded(
    client: Client, admin_headers: dict[str, str]
) -> None:
    store = await create_store(client, admin_headers, delivery_fee_minor=0, tax_rate_bps=0)
    product = await create_product(
        client, admin_headers, store["id"], price_minor=1000, option_groups=[]
    )
    made = await client.post(
        f"/api/v1/stores/{store['id']}/coupons",
        json={"code": "ONCE", "kind": "fixed", "value": 100, "max_uses": 1},
        headers=admin_headers,
    )
    assert made.status_code == 201
    (a_host, a), (b_host, b) = [await _locked_cart_of_one(client, store, product) for _ in "ab"]
    coupon = {"code": "ONCE"}

    # Both hosts at once: exactly one holds the use.
    first, second = await asyncio.gather(
        client.put(a + "/coupon", json=coupon, headers=a_host),
        client.put(b + "/coupon", json=coupon, headers=b_host),
    )
    assert sorted([first.status_code, second.status_code]) == [200, 422]
    holder, holder_host, other, other_host = (
        (a, a_host, b, b_host) if first.status_code == 200 else (b, b_host, a, a_host)
    )
    assert_problem(second if first.status_code == 200 else first, 422, "coupon_exhausted")

    # Letting go (removing it) frees the use for the other cart, which confirms with it.
    assert (await client.delete(holder + "/coupon", headers=holder_host)).status_code == 200
    assert (await client.put(other + "/coupon", json=coupon, headers=other_host)).status_code == 200
    assert (await client.post(other + "/payments/cod", headers=other_host)).status_code == 200
    confirmed = await client.post(
        other + "/confirm", json={"delivery_address": ADDRESS}, headers=other_host
    )
    assert confirmed.status_code == 201, confirmed.text
    assert_problem(
        await client.put(holder + "/coupon", json=coupon, headers=holder_host),
        422,
        "coupon_exhausted",
    )


async def test_unlock_and_cancel_let_go_of_a_held_coupon(
    client: Client, admin_headers: dict[str, str]
) -> None:
    store = await create_store(client, admin_headers, delivery_fee_minor=0, tax_rate_bps=0)
    product = await create_product(
        client, admin_headers, store["id"], price_minor=1000, option_groups=[]
    )
    await client.post(
        f"/api/v1/stores/{store['id']}/coupons",
        json={"code": "TWICE", "kind": "fixed", "value": 100, "max_uses": 1},
        headers=admin_headers,
    )
    coupon = {"code": "TWICE"}
    for let_go in ("/unlock", "/cancel"):
        host, url = await _locked_cart_of_one(client, store, product)
        assert (await client.put(url + "/coupon", json=coupon, headers=host)).status_code == 200
        assert (await client.post(url + let_go, headers=host)).status_code == 200
    host, url = await _locked_cart_of_one(client, store, product)
    assert (await client.put(url + "/coupon", json=coupon, headers=host)).status_code == 200
