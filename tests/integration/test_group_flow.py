"""The whole group flow over HTTP on real PostgreSQL: three members, COD, confirm, orders."""

from __future__ import annotations

import uuid
from typing import Any

from tests.builders import Client, create_product, create_store
from tests.integration.test_http_basics import assert_problem

ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}


async def session(client: Client, name: str) -> dict[str, str]:
    response = await client.post("/api/v1/sessions", json={"display_name": name})
    body = response.json()
    return {"Authorization": f"Bearer {body['token']}", "X-User-Id": body["user_id"]}


def uid(headers: dict[str, str]) -> str:
    return headers["X-User-Id"]


async def open_cart(client: Client, host: dict[str, str], store_id: str) -> dict[str, Any]:
    response = await client.post("/api/v1/teamcarts", json={"store_id": store_id}, headers=host)
    assert response.status_code == 201, response.text
    cart: dict[str, Any] = response.json()
    return cart


async def test_three_members_cod_confirm_and_everyone_reads_the_order(
    client: Client, admin_headers: dict[str, str]
) -> None:
    store = await create_store(client, admin_headers, delivery_fee_minor=500, tax_rate_bps=1000)
    pizza = await create_product(client, admin_headers, store["id"], price_minor=1000, stock=50)
    host = await session(client, "Host")
    ana = await session(client, "Ana")
    ben = await session(client, "Ben")

    cart = await open_cart(client, host, store["id"])
    assert cart["status"] == "open"
    assert cart["version"] == 1
    assert len(cart["invite_code"]) >= 22
    cart_url = f"/api/v1/teamcarts/{cart['id']}"

    for guest in (ana, ben):
        joined = await client.post(
            "/api/v1/teamcarts/join", json={"invite_code": cart["invite_code"]}, headers=guest
        )
        assert joined.status_code == 200, joined.text
    item = {"product_id": pizza["id"], "quantity": 1, "options": ["Regular"]}
    for member, quantity in ((host, 1), (ana, 2), (ben, 3)):
        added = await client.post(
            cart_url + "/items", json={**item, "quantity": quantity}, headers=member
        )
        assert added.status_code == 201, added.text
        assert added.json()["line_total_minor"] == 1000 * quantity

    locked = await client.post(cart_url + "/lock", headers=host)
    assert locked.status_code == 200, locked.text
    view = locked.json()
    assert view["status"] == "locked"
    assert view["subtotal_minor"] == 6000
    assert view["tax_minor"] == 600
    assert view["total_minor"] == 6000 + 500 + 600
    shares = {m["user_id"]: m["share_minor"] for m in view["members"]}
    assert sum(shares.values()) == view["total_minor"]
    # 7100 split 1:2:3 by subtotal, largest remainder: 1183.3 / 2366.7 / 3550
    assert shares == {uid(host): 1183, uid(ana): 2367, uid(ben): 3550}
    products = await client.get(f"/api/v1/stores/{store['id']}/products", headers=host)
    assert products.json()["items"][0]["stock"] == 44  # 6 reserved

    for member in (host, ana, ben):
        committed = await client.post(cart_url + "/payments/cod", headers=member)
        assert committed.status_code == 200, committed.text
    view = committed.json()
    assert view["status"] == "ready_to_confirm"
    assert {m["payment"]["status"] for m in view["members"]} == {"cod_committed"}
    assert {m["user_id"]: m["payment"]["amount_minor"] for m in view["members"]} == shares

    confirmed = await client.post(
        cart_url + "/confirm", json={"delivery_address": ADDRESS}, headers=host
    )
    assert confirmed.status_code == 201, confirmed.text
    order_id = confirmed.json()["order_id"]

    for member in (host, ana, ben):
        order = await client.get(f"/api/v1/orders/{order_id}", headers=member)
        assert order.status_code == 200, order.text
        assert order.json()["status"] == "placed"
        assert order.json()["number"].startswith("TC-")
        assert order.json()["total_minor"] == view["total_minor"]
        assert len(order.json()["payments"]) == 3
        listed = await client.get("/api/v1/orders", headers=member)
        assert order_id in [o["id"] for o in listed.json()["items"]]
    final = await client.get(cart_url, headers=ana)
    assert final.json()["status"] == "converted"
    assert final.json()["order_id"] == order_id


async def test_refusals(client: Client, admin_headers: dict[str, str]) -> None:
    store = await create_store(client, admin_headers)
    product = await create_product(client, admin_headers, store["id"], option_groups=[])
    host = await session(client, "Host")
    guest = await session(client, "Guest")
    stranger = await session(client, "Stranger")
    cart = await open_cart(client, host, store["id"])
    url = f"/api/v1/teamcarts/{cart['id']}"

    assert_problem(await client.get(url), 401, "unauthorized")
    assert_problem(await client.get(url, headers=stranger), 403, "not_a_member")
    assert_problem(
        await client.get(f"/api/v1/teamcarts/{uuid.uuid4()}", headers=host), 404, "cart_not_found"
    )
    assert_problem(
        await client.post("/api/v1/teamcarts/join", json={"invite_code": "nope"}, headers=guest),
        404,
        "invite_not_found",
    )
    await client.post(
        "/api/v1/teamcarts/join", json={"invite_code": cart["invite_code"]}, headers=guest
    )
    assert_problem(await client.post(url + "/lock", headers=guest), 403, "host_only")
    assert_problem(await client.post(url + "/lock", headers=host), 409, "empty_cart")
    bad_quantity = {"product_id": product["id"], "quantity": 100}
    body = assert_problem(
        await client.post(url + "/items", json=bad_quantity, headers=guest),
        422,
        "invalid_quantity",
    )
    assert body["errors"][0]["field"] == "quantity"
    added = await client.post(
        url + "/items", json={"product_id": product["id"], "quantity": 1}, headers=guest
    )
    item_id = added.json()["item_id"]
    assert_problem(
        await client.patch(f"{url}/items/{item_id}", json={"quantity": 2}, headers=host),
        403,
        "not_item_owner",
    )
    assert_problem(
        await client.post(
            url + "/items", json={"product_id": str(uuid.uuid4()), "quantity": 1}, headers=guest
        ),
        404,
        "product_not_found",
    )
    assert (await client.post(url + "/lock", headers=host)).status_code == 200
    assert_problem(
        await client.post(
            url + "/items", json={"product_id": product["id"], "quantity": 1}, headers=host
        ),
        409,
        "cart_locked",
    )
    assert_problem(
        await client.post(url + "/confirm", json={"delivery_address": ADDRESS}, headers=host),
        409,
        "cart_not_ready",
    )
    assert_problem(
        await client.post(
            "/api/v1/teamcarts/join", json={"invite_code": cart["invite_code"]}, headers=stranger
        ),
        409,
        "cart_locked",
    )
    assert_problem(
        await client.put(url + "/tip", json={"amount_minor": -5}, headers=host), 422, "invalid_tip"
    )
    assert_problem(await client.post(url + "/payments/cod", headers=host), 409, "nothing_owed")
    assert (await client.post(url + "/payments/cod", headers=guest)).status_code == 200
    assert_problem(
        await client.post(url + "/unlock", headers=host), 409, "payment_activity_started"
    )


async def test_etag_and_not_modified(client: Client, admin_headers: dict[str, str]) -> None:
    store = await create_store(client, admin_headers)
    host = await session(client, "Host")
    cart = await open_cart(client, host, store["id"])
    url = f"/api/v1/teamcarts/{cart['id']}"
    first = await client.get(url, headers=host)
    assert first.headers["etag"] == '"1"'
    unchanged = await client.get(url, headers={**host, "If-None-Match": '"1"'})
    assert unchanged.status_code == 304
    await client.put(url + "/ready", json={"ready": True}, headers=host)
    changed = await client.get(url, headers={**host, "If-None-Match": '"1"'})
    assert changed.status_code == 200
    assert changed.headers["etag"] == '"2"'
    assert changed.json()["version"] == 2
    # Knowing the version tells an outsider nothing: 403, and 404 for no such cart.
    outsider = await session(client, "Outsider")
    assert_problem(
        await client.get(url, headers={**outsider, "If-None-Match": '"2"'}), 403, "not_a_member"
    )
    nowhere = f"/api/v1/teamcarts/{uuid.uuid4()}"
    assert (await client.get(nowhere, headers={**host, "If-None-Match": '"2"'})).status_code == 404


async def test_orders_are_listed_newest_first_a_page_at_a_time(
    client: Client, admin_headers: dict[str, str]
) -> None:
    store = await create_store(client, admin_headers)
    product = await create_product(client, admin_headers, store["id"], option_groups=[])
    host = await session(client, "Host")
    stranger = await session(client, "Stranger")
    placed = []
    for _ in range(3):
        cart = await open_cart(client, host, store["id"])
        url = f"/api/v1/teamcarts/{cart['id']}"
        await client.post(
            url + "/items", json={"product_id": product["id"], "quantity": 1}, headers=host
        )
        await client.post(url + "/lock", headers=host)
        await client.post(url + "/payments/cod", headers=host)
        confirmed = await client.post(
            url + "/confirm", json={"delivery_address": ADDRESS}, headers=host
        )
        placed.append(confirmed.json()["order_id"])

    first = (await client.get("/api/v1/orders?limit=2", headers=host)).json()
    assert [o["id"] for o in first["items"]] == placed[::-1][:2]
    assert first["next_cursor"]
    second = await client.get(f"/api/v1/orders?limit=2&cursor={first['next_cursor']}", headers=host)
    assert second.status_code == 200, second.text
    assert [o["id"] for o in second.json()["items"]] == placed[:1]
    assert second.json()["next_cursor"] is None

    assert (await client.get("/api/v1/orders", headers=stranger)).json()["items"] == []
    assert_problem(
        await client.get(f"/api/v1/orders/{placed[0]}", headers=stranger), 403, "not_a_participant"
    )
    assert_problem(
        await client.get("/api/v1/orders?cursor=garbage!", headers=host), 400, "validation_error"
    )
