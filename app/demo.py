"""Demo data for a first run: a store with a handful of products, options and a coupon.

``teamcart seed-demo`` (and ``teamcart serve --demo``) load it once; running it again finds
the existing demo store and prints the same ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.persistence import catalog as repo
from app.persistence.tables import coupons, products

DEMO_STORE_ID = "0d3e1a2b-5c6d-4e7f-8a9b-0c1d2e3f4a5b"
DEMO_COUPON = "TEAM10"

_SIZE: Mapping[str, Any] = MappingProxyType(
    {
        "name": "Size",
        "min": 1,
        "max": 1,
        "options": [
            {"name": "Regular", "price_delta_minor": 0},
            {"name": "Large", "price_delta_minor": 250},
        ],
    }
)
_PRODUCTS: tuple[dict[str, Any], ...] = (
    {
        "name": "Margherita pizza",
        "price_minor": 1100,
        "stock": None,
        "option_groups": [
            {
                "name": "Crust",
                "min": 1,
                "max": 1,
                "options": [
                    {"name": "Classic crust", "price_delta_minor": 0},
                    {"name": "Gluten-free crust", "price_delta_minor": 300},
                ],
            },
            {
                "name": "Extra toppings",
                "min": 0,
                "max": 3,
                "options": [
                    {"name": "Basil", "price_delta_minor": 50},
                    {"name": "Mushrooms", "price_delta_minor": 150},
                    {"name": "Olives", "price_delta_minor": 120},
                    {"name": "Burrata", "price_delta_minor": 350},
                ],
            },
        ],
    },
    {
        "name": "Pad thai",
        "price_minor": 1350,
        "stock": None,
        "option_groups": [
            {
                "name": "Protein",
                "min": 1,
                "max": 1,
                "options": [
                    {"name": "Tofu", "price_delta_minor": 0},
                    {"name": "Chicken", "price_delta_minor": 200},
                    {"name": "Prawns", "price_delta_minor": 400},
                ],
            },
            {
                "name": "Spice",
                "min": 0,
                "max": 1,
                "options": [
                    {"name": "Mild", "price_delta_minor": 0},
                    {"name": "Thai hot", "price_delta_minor": 0},
                ],
            },
        ],
    },
    {"name": "Caesar salad", "price_minor": 950, "stock": 40, "option_groups": []},
    {"name": "Iced lemon tea", "price_minor": 400, "stock": None, "option_groups": [dict(_SIZE)]},
    {"name": "Tiramisu", "price_minor": 650, "stock": 12, "option_groups": []},
)


@dataclass(frozen=True, slots=True)
class DemoCatalog:
    store_id: str
    product_ids: dict[str, str]
    coupon_code: str


async def seed_demo(engine: AsyncEngine) -> DemoCatalog:
    """Create the demo store once; return its ids either way."""
    async with engine.begin() as conn:
        if await repo.get_store(conn, DEMO_STORE_ID) is None:
            await repo.insert_store(
                conn,
                id=DEMO_STORE_ID,
                name="Demo Kitchen",
                currency="USD",
                delivery_fee_minor=499,
                tax_rate_bps=875,
            )
            for product in _PRODUCTS:
                await repo.insert_product(
                    conn, id=str(uuid.uuid4()), store_id=DEMO_STORE_ID, **product
                )
            await repo.insert_coupon(
                conn,
                id=str(uuid.uuid4()),
                store_id=DEMO_STORE_ID,
                code=DEMO_COUPON,
                kind="percent",
                value=10,
                min_subtotal_minor=2000,
                max_uses=None,
            )
        rows = (
            await conn.execute(
                select(products.c.id, products.c.name).where(products.c.store_id == DEMO_STORE_ID)
            )
        ).all()
        coupon = (
            await conn.execute(select(coupons.c.code).where(coupons.c.store_id == DEMO_STORE_ID))
        ).scalar_one()
    return DemoCatalog(
        store_id=DEMO_STORE_ID,
        product_ids={name: str(product_id) for product_id, name in rows},
        coupon_code=coupon,
    )
