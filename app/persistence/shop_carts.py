"""Shop cart repository: rows ↔ ``domain.checkout.ShopCart``, and the version-checked save.

A personal cart is small and changed by one person: its save rewrites its items (delete,
insert) under the version check, which is simpler than diffing and as fast at this size.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence.catalog import store_terms
from app.persistence.tables import shop_cart_items, shop_carts, stores
from domain.checkout import CheckoutState, DeliveryMethod, ShopCart, ShopCartStatus
from domain.order import DeliveryAddress
from domain.teamcart import CartItem


def _address(cart: ShopCart) -> dict[str, Any] | None:
    address = cart.address
    if address is None:
        return None
    return {
        "line1": address.line1,
        "line2": address.line2,
        "city": address.city,
        "postal_code": address.postal_code,
        "country": address.country,
    }


def _values(cart: ShopCart) -> dict[str, Any]:
    return {
        "status": cart.status.value,
        "state": cart.state.value,
        "address": _address(cart),
        "delivery_method": None if cart.delivery_method is None else cart.delivery_method.value,
        "order_id": cart.order_id,
        "version": cart.version,
    }


async def _write_items(conn: AsyncConnection, cart: ShopCart) -> None:
    await conn.execute(delete(shop_cart_items).where(shop_cart_items.c.cart_id == cart.id))
    if cart.items:
        await conn.execute(
            insert(shop_cart_items),
            [
                {
                    "cart_id": cart.id,
                    "item_id": item.item_id,
                    "position": position,
                    "product_id": item.product_id,
                    "name": item.name,
                    "options": list(item.options),
                    "unit_price_minor": item.unit_price_minor,
                    "quantity": item.quantity,
                }
                for position, item in enumerate(cart.items.values())
            ],
        )


async def insert_shop_cart(conn: AsyncConnection, cart: ShopCart) -> None:
    await conn.execute(
        insert(shop_carts).values(
            id=cart.id,
            user_id=cart.user_id,
            store_id=cart.store.store_id,
            created_at=cart.created_at,
            **_values(cart),
        )
    )
    await _write_items(conn, cart)


async def save_shop_cart(conn: AsyncConnection, cart: ShopCart, expected_version: int) -> bool:
    """Write the cart if it is still at ``expected_version``; ``False`` when it is not."""
    saved = await conn.execute(
        update(shop_carts)
        .where(shop_carts.c.id == cart.id, shop_carts.c.version == expected_version)
        .values(**_values(cart))
        .returning(shop_carts.c.id)
    )
    if saved.first() is None:
        return False
    await _write_items(conn, cart)
    return True


async def load_shop_cart(
    conn: AsyncConnection, cart_id: str, *, lock: bool = False
) -> ShopCart | None:
    query = (
        select(shop_carts, stores)
        .join(stores, stores.c.id == shop_carts.c.store_id)
        .where(shop_carts.c.id == cart_id)
    )
    if lock:
        query = query.with_for_update(of=shop_carts)
    row = (await conn.execute(query)).one_or_none()
    if row is None:
        return None
    cart_row = row._mapping
    items = (
        await conn.execute(
            select(shop_cart_items)
            .where(shop_cart_items.c.cart_id == cart_id)
            .order_by(shop_cart_items.c.position)
        )
    ).mappings()
    address = cart_row[shop_carts.c.address]
    method = cart_row[shop_carts.c.delivery_method]
    user_id = str(cart_row[shop_carts.c.user_id])
    return ShopCart(
        id=str(cart_row[shop_carts.c.id]),
        user_id=user_id,
        store=store_terms({column.name: cart_row[column] for column in stores.c}),
        status=ShopCartStatus(cart_row[shop_carts.c.status]),
        state=CheckoutState(cart_row[shop_carts.c.state]),
        items=[
            CartItem(
                item_id=str(item["item_id"]),
                user_id=user_id,
                product_id=str(item["product_id"]),
                name=item["name"],
                unit_price_minor=item["unit_price_minor"],
                quantity=item["quantity"],
                options=tuple(item["options"]),
            )
            for item in items
        ],
        address=None if address is None else DeliveryAddress(**address),
        delivery_method=None if method is None else DeliveryMethod(method),
        order_id=None
        if cart_row[shop_carts.c.order_id] is None
        else str(cart_row[shop_carts.c.order_id]),
        created_at=cart_row[shop_carts.c.created_at],
        version=cart_row[shop_carts.c.version],
    )


async def open_cart_ids_of(
    conn: AsyncConnection, user_id: str, store_id: str | None = None
) -> list[str]:
    """The user's open carts (at one store, when named), oldest first."""
    query = select(shop_carts.c.id).where(
        shop_carts.c.user_id == user_id, shop_carts.c.status == ShopCartStatus.OPEN.value
    )
    if store_id is not None:
        query = query.where(shop_carts.c.store_id == store_id)
    found = await conn.execute(query.order_by(shop_carts.c.created_at, shop_carts.c.id))
    return [str(cart_id) for cart_id in found.scalars()]


async def cart_id_of_order(conn: AsyncConnection, order_id: str) -> str | None:
    found = await conn.execute(select(shop_carts.c.id).where(shop_carts.c.order_id == order_id))
    cart_id = found.scalars().first()
    return None if cart_id is None else str(cart_id)
