"""Catalog repository: stores (and their staff), products (and their stock) and coupons in
PostgreSQL.

Rows come back as plain mappings for the routes to convert, or as ``domain.catalog`` value
objects when a cart needs a product's or store's terms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import RowMapping, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence.tables import coupon_reservations, coupons, products, store_staff, stores
from domain.catalog import CouponKind, CouponTerms, Option, OptionGroup, ProductSnapshot, StoreTerms
from domain.order import OrderLine


async def insert_store(conn: AsyncConnection, **values: Any) -> RowMapping:
    result = await conn.execute(insert(stores).values(**values).returning(*stores.c))
    return result.mappings().one()


async def list_stores(conn: AsyncConnection) -> Sequence[RowMapping]:
    result = await conn.execute(select(stores).order_by(stores.c.created_at, stores.c.id))
    return result.mappings().all()


async def get_store(conn: AsyncConnection, store_id: str) -> RowMapping | None:
    result = await conn.execute(select(stores).where(stores.c.id == store_id))
    return result.mappings().one_or_none()


async def insert_product(conn: AsyncConnection, **values: Any) -> RowMapping:
    result = await conn.execute(insert(products).values(**values).returning(*products.c))
    return result.mappings().one()


async def list_products(conn: AsyncConnection, store_id: str) -> Sequence[RowMapping]:
    result = await conn.execute(
        select(products)
        .where(products.c.store_id == store_id)
        .order_by(products.c.created_at, products.c.id)
    )
    return result.mappings().all()


async def get_product(conn: AsyncConnection, product_id: str) -> RowMapping | None:
    result = await conn.execute(select(products).where(products.c.id == product_id))
    return result.mappings().one_or_none()


async def insert_coupon(conn: AsyncConnection, **values: Any) -> RowMapping | None:
    """Insert a coupon; ``None`` if the store already has one with that code."""
    result = await conn.execute(
        pg_insert(coupons)
        .values(**values)
        .on_conflict_do_nothing(constraint="uq_coupons_store_id_code")
        .returning(*coupons.c)
    )
    return result.mappings().one_or_none()


async def get_coupon(conn: AsyncConnection, store_id: str, code: str) -> RowMapping | None:
    result = await conn.execute(
        select(coupons).where(coupons.c.store_id == store_id, coupons.c.code == code.upper())
    )
    return result.mappings().one_or_none()


def store_terms(row: Mapping[Any, Any]) -> StoreTerms:
    return StoreTerms(
        store_id=str(row["id"]),
        currency=row["currency"],
        delivery_fee_minor=row["delivery_fee_minor"],
        tax_rate_bps=row["tax_rate_bps"],
    )


def product_snapshot(row: Mapping[Any, Any]) -> ProductSnapshot:
    return ProductSnapshot(
        product_id=str(row["id"]),
        store_id=str(row["store_id"]),
        name=row["name"],
        price_minor=row["price_minor"],
        option_groups=tuple(
            OptionGroup(
                name=group["name"],
                min=group["min"],
                max=group["max"],
                options=tuple(
                    Option(name=option["name"], price_delta_minor=option["price_delta_minor"])
                    for option in group["options"]
                ),
            )
            for group in row["option_groups"]
        ),
    )


def coupon_terms(row: Mapping[Any, Any]) -> CouponTerms:
    return CouponTerms(
        code=row["code"],
        kind=CouponKind(row["kind"]),
        value=row["value"],
        min_subtotal_minor=row["min_subtotal_minor"],
        max_uses=row["max_uses"],
        times_used=row["times_used"],
    )


async def reserve_coupon(conn: AsyncConnection, store_id: str, code: str, cart_id: str) -> bool:
    """Hold one use of the coupon for the cart (replacing any it held); ``False`` when the
    uses made and held by other carts leave none. The coupon's row is locked meanwhile, so
    two carts can't take its last use at the same moment."""
    coupon = (
        await conn.execute(
            select(coupons.c.max_uses, coupons.c.times_used)
            .where(coupons.c.store_id == store_id, coupons.c.code == code)
            .with_for_update()
        )
    ).one_or_none()
    if coupon is None:
        return False
    if coupon.max_uses is not None:
        held = (
            await conn.execute(
                select(func.count())
                .select_from(coupon_reservations)
                .where(
                    coupon_reservations.c.store_id == store_id,
                    coupon_reservations.c.code == code,
                    coupon_reservations.c.cart_id != cart_id,
                )
            )
        ).scalar_one()
        if coupon.times_used + held >= coupon.max_uses:
            return False
    statement = pg_insert(coupon_reservations).values(cart_id=cart_id, store_id=store_id, code=code)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[coupon_reservations.c.cart_id],
            set_={"store_id": statement.excluded.store_id, "code": statement.excluded.code},
        )
    )
    return True


async def release_coupon(conn: AsyncConnection, cart_id: str) -> None:
    """The cart no longer holds a coupon use (removed, unlocked, cancelled, expired)."""
    await conn.execute(delete(coupon_reservations).where(coupon_reservations.c.cart_id == cart_id))


async def count_coupon_use(conn: AsyncConnection, store_id: str, code: str, cart_id: str) -> bool:
    """The cart confirms: the use it held is made. ``False`` when none is left (a cart whose
    coupon was applied before reservations existed, on an exhausted coupon)."""
    counted = await conn.execute(
        update(coupons)
        .where(coupons.c.store_id == store_id, coupons.c.code == code)
        .where((coupons.c.max_uses.is_(None)) | (coupons.c.times_used < coupons.c.max_uses))
        .values(times_used=coupons.c.times_used + 1)
    )
    await release_coupon(conn, cart_id)
    return counted.rowcount == 1


async def add_staff(conn: AsyncConnection, store_id: str, user_id: str) -> None:
    """``user_id`` is staff of the store (again: nothing changes)."""
    await conn.execute(
        pg_insert(store_staff).values(store_id=store_id, user_id=user_id).on_conflict_do_nothing()
    )


async def is_staff(conn: AsyncConnection, store_id: str, user_id: str) -> bool:
    found = await conn.execute(
        select(store_staff.c.user_id).where(
            store_staff.c.store_id == store_id, store_staff.c.user_id == user_id
        )
    )
    return found.first() is not None


async def return_stock(conn: AsyncConnection, lines: Sequence[OrderLine]) -> None:
    """A cancelled order's units go back on sale (products with limited stock only)."""
    quantities: dict[str, int] = {}
    for line in lines:
        quantities[line.product_id] = quantities.get(line.product_id, 0) + line.quantity
    for product_id, quantity in sorted(quantities.items()):  # one lock order for everyone
        await conn.execute(
            update(products)
            .where(products.c.id == product_id, products.c.stock.is_not(None))
            .values(stock=products.c.stock + quantity)
        )


async def take_stock(conn: AsyncConnection, lines: Sequence[OrderLine]) -> list[str]:
    """Take a checkout's units out of stock, all or nothing (products in id order, one lock
    order for everyone): the products that are short, none taken when any is."""
    wanted: dict[str, int] = {}
    for line in lines:
        wanted[line.product_id] = wanted.get(line.product_id, 0) + line.quantity
    short = []
    for product_id, quantity in sorted(wanted.items()):
        taken = await conn.execute(
            update(products)
            .where(
                products.c.id == product_id,
                products.c.stock.is_not(None),
            )
            .values(stock=products.c.stock - quantity)
            .returning(products.c.stock)
        )
        left = taken.scalar_one_or_none()
        if left is not None and left < 0:
            short.append(product_id)
    return short


async def stock_of(conn: AsyncConnection, product_ids: Sequence[str]) -> dict[str, int | None]:
    """Each product's units in stock now (``None``: unlimited)."""
    found = await conn.execute(
        select(products.c.id, products.c.stock).where(products.c.id.in_(list(product_ids)))
    )
    return {str(product_id): stock for product_id, stock in found.all()}
