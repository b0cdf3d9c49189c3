"""Lists of carts for the people in them ("My carts" on the home page): one query that
summarises each cart a user is a member of, without loading the aggregates.

A read beside the cart repository (``app.persistence.carts``), not part of it: nothing here
takes part in a command, a version check or a lock.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence.tables import stores, teamcart_items, teamcart_members, teamcarts


class CartSummary(msgspec.Struct, frozen=True):
    """One line of a member's list of carts ("My carts", served as it is): enough to find
    the cart again and see whether it needs them (their items and share), without loading
    the whole aggregate."""

    id: str
    store_id: str
    store_name: str
    status: str
    currency: str
    role: str
    member_count: int
    my_item_count: int
    my_subtotal_minor: int
    my_share_minor: int | None
    my_payment_status: str
    total_minor: int | None
    updated_at: datetime


async def list_carts_of(
    conn: AsyncConnection, user_id: str, *, limit: int, include_closed: bool
) -> list[CartSummary]:
    """The carts ``user_id`` is a member of, most recently changed first: those still open,
    locked or ready first of all when ``include_closed`` (then converted, expired, cancelled
    ones), only those otherwise. A read; it takes no lock."""
    me = teamcart_members.alias("me")
    everyone = teamcart_members.alias("everyone")
    members = (
        select(func.count())
        .select_from(everyone)
        .where(everyone.c.cart_id == teamcarts.c.id)
        .scalar_subquery()
    )
    mine = teamcart_items.alias("mine")
    item_count = (
        select(func.coalesce(func.sum(mine.c.quantity), 0))
        .where(mine.c.cart_id == teamcarts.c.id, mine.c.user_id == me.c.user_id)
        .scalar_subquery()
    )
    subtotal = (
        select(func.coalesce(func.sum(mine.c.unit_price_minor * mine.c.quantity), 0))
        .where(mine.c.cart_id == teamcarts.c.id, mine.c.user_id == me.c.user_id)
        .scalar_subquery()
    )
    live = teamcarts.c.status.in_(("open", "locked", "ready_to_confirm"))
    query = (
        select(
            teamcarts.c.id,
            teamcarts.c.store_id,
            stores.c.name.label("store_name"),
            teamcarts.c.status,
            teamcarts.c.currency,
            me.c.role,
            members.label("member_count"),
            item_count.label("my_item_count"),
            subtotal.label("my_subtotal_minor"),
            me.c.share_minor,
            me.c.payment_status,
            teamcarts.c.total_minor,
            teamcarts.c.updated_at,
        )
        .select_from(
            teamcarts.join(me, me.c.cart_id == teamcarts.c.id).join(
                stores, stores.c.id == teamcarts.c.store_id
            )
        )
        .where(me.c.user_id == user_id)
        .order_by(case((live, 0), else_=1), teamcarts.c.updated_at.desc(), teamcarts.c.id)
        .limit(limit)
    )
    if not include_closed:
        query = query.where(live)
    rows = (await conn.execute(query)).mappings().all()
    return [
        CartSummary(
            id=str(row["id"]),
            store_id=str(row["store_id"]),
            store_name=row["store_name"],
            status=row["status"],
            currency=row["currency"],
            role=row["role"],
            member_count=int(row["member_count"]),
            my_item_count=int(row["my_item_count"]),
            my_subtotal_minor=int(row["my_subtotal_minor"]),
            my_share_minor=row["share_minor"],
            my_payment_status=row["payment_status"],
            total_minor=row["total_minor"],
            updated_at=row["updated_at"],
        )
        for row in rows
    ]
