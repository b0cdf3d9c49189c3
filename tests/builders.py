"""Small builders for test data through the public API; random names keep tests independent."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

Client = AsyncTestClient[Litestar]


def store_payload(**overrides: Any) -> dict[str, Any]:
    return {
        "name": f"Store {uuid.uuid4().hex[:8]}",
        "currency": "USD",
        "delivery_fee_minor": 500,
        "tax_rate_bps": 800,
        **overrides,
    }


def product_payload(**overrides: Any) -> dict[str, Any]:
    return {
        "name": f"Dish {uuid.uuid4().hex[:8]}",
        "price_minor": 1200,
        "stock": None,
        "option_groups": [
            {
                "name": "Size",
                "min": 1,
                "max": 1,
                "options": [
                    {"name": "Regular", "price_delta_minor": 0},
                    {"name": "Large", "price_delta_minor": 300},
                ],
            },
            {
                "name": "Extras",
                "min": 0,
                "max": 2,
                "options": [
                    {"name": "Cheese", "price_delta_minor": 100},
                    {"name": "Bacon", "price_delta_minor": 150},
                    {"name": "Egg", "price_delta_minor": 90},
                ],
            },
        ],
        **overrides,
    }


async def create_store(client: Client, admin: dict[str, str], **overrides: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/stores", json=store_payload(**overrides), headers=admin)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def create_product(
    client: Client, admin: dict[str, str], store_id: str, **overrides: Any
) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/stores/{store_id}/products", json=product_payload(**overrides), headers=admin
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
