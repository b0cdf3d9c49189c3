"""What the browser page relies on from the server, over HTTP on real PostgreSQL: validation
problems in words a person reads (the field named, the code unchanged), the tip cap, "My
carts", the icon, and the refusals a guest meets when joining too late or after removal."""

from __future__ import annotations

from tests.builders import Client, create_product, create_store
from tests.integration.test_group_flow import open_cart, session, uid
from tests.integration.test_http_basics import assert_problem


async def test_validation_problems_name_the_field_in_words_and_keep_their_code(
    client: Client, admin_headers: dict[str, str]
) -> None:
    empty = await client.post("/api/v1/sessions", json={"display_name": ""})
    body = assert_problem(empty, 400, "validation_error")
    assert body["detail"] == "display_name must not be empty."
    assert body["errors"][0] == {
        "field": "display_name",
        "source": "body",
        "message": "must not be empty",
    }

    store = await create_store(client, admin_headers)
    product = await create_product(client, admin_headers, store["id"], option_groups=[])
    host = await session(client, "Host")
    cart = await open_cart(client, host, store["id"])
    fraction = await client.post(
        f"/api/v1/teamcarts/{cart['id']}/items",
        json={"product_id": product["id"], "quantity": 1.5},
        headers=host,
    )
    body = assert_problem(fraction, 400, "validation_error")
    assert body["detail"] == "quantity must be a whole number."
    assert body["errors"][0]["field"] == "quantity"
    assert "Expected" not in body["detail"]

    missing = await client.post(f"/api/v1/teamcarts/{cart['id']}/items", json={}, headers=host)
    body = assert_problem(missing, 400, "validation_error")
    assert body["errors"][0]["field"] == "product_id"
    assert body["detail"] == "product_id is required."


async def test_the_tip_is_capped_by_the_stores_setting_default_the_whole_subtotal(
    client: Client, admin_headers: dict[str, str]
) -> None:
    default = await create_store(client, admin_headers)
    assert default["max_tip_bps"] == 10_000
    capped = await create_store(client, admin_headers, max_tip_bps=2_000)
    assert capped["max_tip_bps"] == 2_000
    for store, limit in ((default, 1000), (capped, 200)):
        product = await create_product(
            client, admin_headers, store["id"], price_minor=1000, option_groups=[]
        )
        host = await session(client, "Host")
        cart = await open_cart(client, host, store["id"])
        url = f"/api/v1/teamcarts/{cart['id']}"
        added = await client.post(
            url + "/items", json={"product_id": product["id"], "quantity": 1}, headers=host
        )
        assert added.status_code == 201, added.text
        assert (await client.post(url + "/lock", headers=host)).status_code == 200
        too_much = await client.put(url + "/tip", json={"amount_minor": limit + 1}, headers=host)
        body = assert_problem(too_much, 422, "tip_too_high")
        assert body["max_tip_minor"] == limit
        assert body["errors"][0]["field"] == "amount_minor"
        fine = await client.put(url + "/tip", json={"amount_minor": limit}, headers=host)
        assert fine.status_code == 200, fine.text
        assert fine.json()["tip_minor"] == limit


async def test_my_carts_lists_the_carts_i_am_in_with_my_part(
    client: Client, admin_headers: dict[str, str]
) -> None:
    store = await create_store(client, admin_headers, name="Corner Deli")
    product = await create_product(
        client, admin_headers, store["id"], price_minor=700, option_groups=[]
    )
    host = await session(client, "Host")
    ana = await session(client, "Ana")
    stranger = await session(client, "Stranger")
    first = await open_cart(client, host, store["id"])
    second = await open_cart(client, host, store["id"])
    joined = await client.post(
        "/api/v1/teamcarts/join", json={"invite_code": first["invite_code"]}, headers=ana
    )
    assert joined.status_code == 200
    added = await client.post(
        f"/api/v1/teamcarts/{first['id']}/items",
        json={"product_id": product["id"], "quantity": 2},
        headers=ana,
    )
    assert added.status_code == 201
    cancelled = await client.post(f"/api/v1/teamcarts/{second['id']}/cancel", headers=host)
    assert cancelled.status_code == 200

    mine = (await client.get("/api/v1/teamcarts", headers=ana)).json()["items"]
    assert [cart["id"] for cart in mine] == [first["id"]]
    [line] = mine
    assert (line["store_name"], line["status"], line["role"]) == ("Corner Deli", "open", "guest")
    assert (line["member_count"], line["my_item_count"], line["my_subtotal_minor"]) == (2, 2, 1400)

    hosted = (await client.get("/api/v1/teamcarts", headers=host)).json()["items"]
    assert [cart["id"] for cart in hosted] == [first["id"]]  # the cancelled one is closed
    everything = await client.get("/api/v1/teamcarts?include_closed=true", headers=host)
    assert [cart["id"] for cart in everything.json()["items"]] == [first["id"], second["id"]]
    assert (await client.get("/api/v1/teamcarts", headers=stranger)).json()["items"] == []
    assert_problem(await client.get("/api/v1/teamcarts"), 401, "unauthorized")


async def test_a_removed_guest_cant_come_back_and_a_late_one_is_told_why(
    client: Client, admin_headers: dict[str, str]
) -> None:
    store = await create_store(client, admin_headers)
    product = await create_product(client, admin_headers, store["id"], option_groups=[])
    host = await session(client, "Host")
    ana = await session(client, "Ana")
    late = await session(client, "Late")
    cart = await open_cart(client, host, store["id"])
    url = f"/api/v1/teamcarts/{cart['id']}"
    join = {"invite_code": cart["invite_code"]}
    assert (await client.post("/api/v1/teamcarts/join", json=join, headers=ana)).status_code == 200
    removed = await client.delete(f"{url}/members/{uid(ana)}", headers=host)
    assert removed.status_code == 204
    again = await client.post("/api/v1/teamcarts/join", json=join, headers=ana)
    assert_problem(again, 404, "removed_from_cart")
    assert (await client.get("/api/v1/teamcarts", headers=ana)).json()["items"] == []

    added = await client.post(
        url + "/items", json={"product_id": product["id"], "quantity": 1}, headers=host
    )
    assert added.status_code == 201
    assert (await client.post(url + "/lock", headers=host)).status_code == 200
    too_late = assert_problem(
        await client.post("/api/v1/teamcarts/join", json=join, headers=late), 409, "cart_locked"
    )
    assert "ask the host" in too_late["detail"]
    assert "unlock it to change" not in too_late["detail"]


async def test_the_page_has_an_icon(client: Client) -> None:
    icon = await client.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.content.startswith(b"<svg")
