"""Catalog round trips on real PostgreSQL: stores, products with options and stock, coupons."""

from __future__ import annotations

from tests.builders import Client, create_product, create_store, product_payload
from tests.integration.test_http_basics import assert_problem


async def test_store_and_products_round_trip(
    client: Client, admin_headers: dict[str, str], guest_headers: dict[str, str]
) -> None:
    store = await create_store(client, admin_headers, currency="jpy", delivery_fee_minor=300)
    assert store["currency"] == "JPY"
    first = await create_product(client, admin_headers, store["id"], stock=7)
    second = await create_product(client, admin_headers, store["id"], option_groups=[])

    listed = await client.get(f"/api/v1/stores/{store['id']}/products", headers=guest_headers)
    assert listed.status_code == 200
    items = listed.json()["items"]
    assert [item["id"] for item in items] == [first["id"], second["id"]]
    assert items[0]["stock"] == 7
    assert items[1]["stock"] is None
    assert items[0]["option_groups"] == product_payload()["option_groups"]

    fetched = await client.get(f"/api/v1/stores/{store['id']}", headers=guest_headers)
    assert fetched.json()["name"] == store["name"]
    all_stores = await client.get("/api/v1/stores", headers=guest_headers)
    assert store["id"] in [s["id"] for s in all_stores.json()["items"]]


async def test_option_groups_are_checked(client: Client, admin_headers: dict[str, str]) -> None:
    store = await create_store(client, admin_headers)
    url = f"/api/v1/stores/{store['id']}/products"
    too_many = product_payload(
        option_groups=[{"name": "Size", "min": 1, "max": 3, "options": [{"name": "S"}]}]
    )
    body = assert_problem(
        await client.post(url, json=too_many, headers=admin_headers), 422, "validation_error"
    )
    assert body["errors"][0]["field"] == "option_groups[0].max"

    duplicate = product_payload(
        option_groups=[
            {"name": "A", "min": 0, "max": 1, "options": [{"name": "Same"}]},
            {"name": "B", "min": 0, "max": 1, "options": [{"name": "Same"}]},
        ]
    )
    body = assert_problem(
        await client.post(url, json=duplicate, headers=admin_headers), 422, "validation_error"
    )
    assert body["errors"][0]["field"] == "option_groups[1].options[0].name"

    negative = assert_problem(
        await client.post(url, json=product_payload(price_minor=-1), headers=admin_headers),
        400,
        "validation_error",
    )
    assert "price_minor" in negative["detail"]


async def test_coupons(client: Client, admin_headers: dict[str, str]) -> None:
    store = await create_store(client, admin_headers)
    url = f"/api/v1/stores/{store['id']}/coupons"
    coupon = {
        "code": "team10",
        "kind": "percent",
        "value": 10,
        "min_subtotal_minor": 2000,
        "max_uses": 5,
    }
    created = await client.post(url, json=coupon, headers=admin_headers)
    assert created.status_code == 201, created.text
    assert created.json()["code"] == "TEAM10"
    assert created.json()["times_used"] == 0
    assert_problem(await client.post(url, json=coupon, headers=admin_headers), 409, "coupon_exists")
    assert_problem(
        await client.post(url, json={**coupon, "code": "BIG", "value": 150}, headers=admin_headers),
        422,
        "validation_error",
    )
