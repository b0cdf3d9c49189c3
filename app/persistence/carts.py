"""TeamCart repository: rows ↔ ``domain.teamcart.TeamCart``, by hand, with version checks.

A save is ``UPDATE teamcarts … WHERE id = :id AND version = :expected``; no row updated means
another writer got there first, and the unit of work (``app.unit_of_work``) retries from a
fresh load. A load hands back, beside the cart, the member and item rows it had
(:class:`Snapshot`), so a save writes only the rows that changed; the unit of work keeps that
snapshot with the cart it tracks. Stock reservations live here too because they move with the
cart's state.

Why one module of this length: the cart's rows by hand, both ways (load in one round trip,
save only what changed), and the stock that moves with the cart's state.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    RowMapping,
    Table,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence.catalog import coupon_terms
from app.persistence.tables import (
    coupons,
    products,
    stock_reservations,
    teamcart_items,
    teamcart_members,
    teamcarts,
)
from domain.catalog import CouponTerms, StoreTerms
from domain.errors import OutOfStock
from domain.payments import PaymentMethod, PaymentStatus
from domain.pricing import TOTALS_FIELDS, Quote, Totals
from domain.teamcart import (
    CONFIRM_WINDOWS,
    CartItem,
    CartStatus,
    Member,
    MemberPayment,
    MemberRole,
    TeamCart,
)


def _cart_values(cart: TeamCart) -> dict[str, Any]:
    quote = cart.quote
    return {
        "status": cart.status.value,
        "version": cart.version,
        "quote_version": cart.quote_version,
        "deadline": cart.deadline,
        "locked_at": cart.locked_at,
        "tip_minor": cart.tip_minor,
        "coupon_code": cart.coupon.code if cart.coupon is not None else None,
        **_quote_columns(quote.totals if quote else None),
        "order_id": cart.order_id,
        "removed_user_ids": sorted(cart.removed_user_ids),
    }


def _quote_columns(totals: Totals | None) -> dict[str, int | None]:
    """A locked cart's totals in its columns (the fee and tip columns of the quote are
    ``quote_…``: ``delivery_fee_minor`` and ``tip_minor`` are the cart's own settings)."""
    names = {"delivery_fee_minor": "quote_delivery_fee_minor", "tip_minor": "quote_tip_minor"}
    if totals is None:
        return {names.get(name, name): None for name in TOTALS_FIELDS}
    return {names.get(name, name): value for name, value in totals.as_dict().items()}


Rows = dict[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The member and item rows a cart had when loaded or last saved, so a save writes only
    what changed."""

    members: Rows
    items: Rows

    @classmethod
    def of(cls, cart: TeamCart) -> Snapshot:
        return cls(_member_rows(cart), _item_rows(cart))


def _member_rows(cart: TeamCart) -> Rows:
    return {
        member.user_id: {
            "cart_id": cart.id,
            "user_id": member.user_id,
            "position": position,
            "display_name": member.display_name,
            "role": member.role.value,
            "ready": member.ready,
            "joined_at": member.joined_at,
            "share_minor": cart.quote.share_of(member.user_id) if cart.quote else None,
            "payment_status": member.payment.status.value,
            "payment_method": member.payment.method.value if member.payment.method else None,
            "payment_amount_minor": member.payment.amount_minor,
            "payment_reference": member.payment.reference,
        }
        for position, member in enumerate(cart.members.values())
    }


def _item_rows(cart: TeamCart) -> Rows:
    return {
        item.item_id: {
            "id": item.item_id,
            "cart_id": cart.id,
            "position": position,
            "user_id": item.user_id,
            "product_id": item.product_id,
            "name": item.name,
            "unit_price_minor": item.unit_price_minor,
            "quantity": item.quantity,
            "options": list(item.options),
        }
        for position, item in enumerate(cart.items.values())
    }


def _upsert(table: Table) -> Any:
    """``INSERT … ON CONFLICT (pk) DO UPDATE`` every other column, built once per table."""
    statement = pg_insert(table)
    key = [column.name for column in table.primary_key.columns]
    return statement.on_conflict_do_update(
        index_elements=key,
        set_={c.name: statement.excluded[c.name] for c in table.columns if c.name not in key},
    )


_UPSERT_MEMBERS = _upsert(teamcart_members)
_UPSERT_ITEMS = _upsert(teamcart_items)
# Statements are built once with bind parameters: SQLAlchemy then skips re-coercing a values
# dict on every save (measured ~20% of a webhook's CPU before).
_SAVE = (
    update(teamcarts)
    .where(teamcarts.c.id == bindparam("_id"), teamcarts.c.version == bindparam("_expected"))
    .values(
        updated_at=func.now(),
        # A reminder to confirm is for one stretch of being ready: the mark is kept while a
        # ready cart stays ready and cleared otherwise (SET sees the row as it was), so a
        # cart that reopens and is ready again reminds its host again.
        confirm_reminded_at=case(
            (
                teamcarts.c.status == CartStatus.READY_TO_CONFIRM.value,
                teamcarts.c.confirm_reminded_at,
            ),
            else_=None,
        ),
    )
)


async def _write_changes(
    conn: AsyncConnection,
    upsert: Any,
    table: Table,
    key: Column[Any],
    before: Rows,
    after: Rows,
    cart_id: str,
) -> None:
    """Upsert rows that are new or changed; delete rows that are gone."""
    gone = [row_key for row_key in before if row_key not in after]
    if gone:
        await conn.execute(delete(table).where(table.c.cart_id == cart_id, key.in_(gone)))
    changed = [row for row_key, row in after.items() if before.get(row_key) != row]
    if changed:
        await conn.execute(upsert, changed)


async def _write_parts(conn: AsyncConnection, cart: TeamCart, before: Snapshot) -> Snapshot:
    after = Snapshot.of(cart)
    await _write_changes(
        conn,
        _UPSERT_MEMBERS,
        teamcart_members,
        teamcart_members.c.user_id,
        before.members,
        after.members,
        cart.id,
    )
    await _write_changes(
        conn, _UPSERT_ITEMS, teamcart_items, teamcart_items.c.id, before.items, after.items, cart.id
    )
    return after


async def insert_cart(conn: AsyncConnection, cart: TeamCart) -> Snapshot:
    await conn.execute(
        insert(teamcarts).values(
            id=cart.id,
            store_id=cart.store.store_id,
            currency=cart.store.currency,
            delivery_fee_minor=cart.store.delivery_fee_minor,
            tax_rate_bps=cart.store.tax_rate_bps,
            host_user_id=cart.host_user_id,
            invite_code=cart.invite_code,
            created_at=cart.created_at,
            **_cart_values(cart),
        )
    )
    return await _write_parts(conn, cart, Snapshot({}, {}))


async def save_cart(
    conn: AsyncConnection, cart: TeamCart, expected_version: int, before: Snapshot
) -> Snapshot | None:
    """Write the cart if nobody else has since ``expected_version`` (the rows it had then
    are ``before``); ``None`` when another writer got there first. Returns the new rows."""
    if cart.version == expected_version:
        return before  # the command changed nothing
    result = await conn.execute(
        _SAVE, {"_id": cart.id, "_expected": expected_version, **_cart_values(cart)}
    )
    if result.rowcount != 1:
        return None
    return await _write_parts(conn, cart, before)


async def version_of(conn: AsyncConnection, cart_id: str) -> int | None:
    """The cart's stored version (one primary-key read); ``None`` for no such cart."""
    found = await conn.execute(_VERSION_OF, {"cart_id": cart_id})
    version = found.scalar_one_or_none()
    return None if version is None else int(version)


_VERSION_OF = select(teamcarts.c.version).where(teamcarts.c.id == bindparam("cart_id"))


async def is_member(conn: AsyncConnection, cart_id: str, user_id: str) -> bool:
    """Whether the user is a member of the cart right now (one primary-key lookup)."""
    found = await conn.execute(
        select(teamcart_members.c.user_id).where(
            teamcart_members.c.cart_id == cart_id, teamcart_members.c.user_id == user_id
        )
    )
    return found.first() is not None


async def find_cart_id_by_invite(conn: AsyncConnection, invite_code: str) -> str | None:
    result = await conn.execute(
        select(teamcarts.c.id).where(teamcarts.c.invite_code == invite_code)
    )
    cart_id = result.scalar_one_or_none()
    return None if cart_id is None else str(cart_id)


_MEMBERS = (
    select(
        func.coalesce(
            func.jsonb_agg(
                aggregate_order_by(
                    func.to_jsonb(teamcart_members.table_valued()), teamcart_members.c.position
                )
            ),
            text("'[]'::jsonb"),
        )
    )
    .where(teamcart_members.c.cart_id == teamcarts.c.id)
    .scalar_subquery()
)
_ITEMS = (
    select(
        func.coalesce(
            func.jsonb_agg(
                aggregate_order_by(
                    func.to_jsonb(teamcart_items.table_valued()), teamcart_items.c.position
                )
            ),
            text("'[]'::jsonb"),
        )
    )
    .where(teamcart_items.c.cart_id == teamcarts.c.id)
    .scalar_subquery()
)
_COUPON = (
    select(func.to_jsonb(coupons.table_valued()))
    .where(coupons.c.store_id == teamcarts.c.store_id, coupons.c.code == teamcarts.c.coupon_code)
    .scalar_subquery()
)
_LOAD = select(
    teamcarts,
    type_coerce(_MEMBERS, JSONB).label("members_json"),
    type_coerce(_ITEMS, JSONB).label("items_json"),
    type_coerce(_COUPON, JSONB).label("coupon_json"),
)
_LOAD_ONE = _LOAD.where(teamcarts.c.id == bindparam("cart_id"))  # built once: every command


# FOR NO KEY UPDATE: the lock the save's UPDATE takes anyway (it does not block inserts of
# rows that reference the cart).
_LOCK_ONE = (
    select(teamcarts.c.id)
    .where(teamcarts.c.id == bindparam("cart_id"))
    .with_for_update(key_share=True)
)


async def read_cart(conn: AsyncConnection, cart_id: str) -> TeamCart | None:
    """The cart as stored, for reading (views, rebuilds): nothing remembers it."""
    loaded = await load_cart(conn, cart_id)
    return None if loaded is None else loaded[0]


async def load_cart(
    conn: AsyncConnection, cart_id: str, *, lock: bool = False
) -> tuple[TeamCart, Snapshot] | None:
    """The cart with its members, items and coupon, in one round trip, and its rows.

    With ``lock``, the cart's row is locked first (one more round trip), so nobody else can
    save the cart before this transaction ends: a save after it never conflicts. Callers
    load optimistically and lock only to retry after a version conflict, so a busy cart
    (members paying or adding items at the same moment) still makes progress. The lock is
    its own statement: the load that follows takes a fresh snapshot (READ COMMITTED) and so
    sees every change committed before the lock was granted.
    """
    if lock:
        await conn.execute(_LOCK_ONE, {"cart_id": cart_id})
    row = (await conn.execute(_LOAD_ONE, {"cart_id": cart_id})).mappings().one_or_none()
    if row is None:
        return None
    member_rows = [_parse_times(m, "joined_at") for m in row["members_json"]]
    item_rows = row["items_json"]
    coupon = coupon_terms(row["coupon_json"]) if row["coupon_json"] is not None else None
    cart = _to_cart(row, member_rows, item_rows, coupon)
    return cart, Snapshot.of(cart)


def _parse_times(row: dict[str, Any], *names: str) -> dict[str, Any]:
    """jsonb carries timestamps as text; the domain wants aware datetimes."""
    return {**row, **{name: datetime.fromisoformat(row[name]) for name in names}}


def _to_cart(
    row: RowMapping,
    member_rows: Sequence[Mapping[str, Any]],
    item_rows: Sequence[Mapping[str, Any]],
    coupon: CouponTerms | None,
) -> TeamCart:
    quote = None
    if row["total_minor"] is not None:
        quote = Quote(
            totals=Totals(
                subtotal_minor=row["subtotal_minor"],
                delivery_fee_minor=row["quote_delivery_fee_minor"],
                tax_minor=row["tax_minor"],
                tip_minor=row["quote_tip_minor"],
                discount_minor=row["discount_minor"],
                total_minor=row["total_minor"],
            ),
            shares={str(m["user_id"]): m["share_minor"] or 0 for m in member_rows},
        )
    return TeamCart(
        id=str(row["id"]),
        store=StoreTerms(
            store_id=str(row["store_id"]),
            currency=row["currency"],
            delivery_fee_minor=row["delivery_fee_minor"],
            tax_rate_bps=row["tax_rate_bps"],
        ),
        host_user_id=str(row["host_user_id"]),
        invite_code=row["invite_code"],
        status=CartStatus(row["status"]),
        version=row["version"],
        quote_version=row["quote_version"],
        deadline=row["deadline"],
        created_at=row["created_at"],
        locked_at=row["locked_at"],
        members=[
            Member(
                user_id=str(m["user_id"]),
                display_name=m["display_name"],
                role=MemberRole(m["role"]),
                ready=m["ready"],
                joined_at=m["joined_at"],
                payment=MemberPayment(
                    status=PaymentStatus(m["payment_status"]),
                    method=PaymentMethod(m["payment_method"]) if m["payment_method"] else None,
                    amount_minor=m["payment_amount_minor"],
                    reference=m["payment_reference"],
                ),
            )
            for m in member_rows
        ],
        items=[
            CartItem(
                item_id=str(i["id"]),
                user_id=str(i["user_id"]),
                product_id=str(i["product_id"]),
                name=i["name"],
                unit_price_minor=i["unit_price_minor"],
                quantity=i["quantity"],
                options=tuple(i["options"]),
            )
            for i in item_rows
        ],
        tip_minor=row["tip_minor"],
        coupon=coupon,
        quote=quote,
        order_id=str(row["order_id"]) if row["order_id"] else None,
        removed_user_ids=[str(user_id) for user_id in row["removed_user_ids"]],
    )


async def due_cart_ids(
    conn: AsyncConnection, payment_window: timedelta, *, limit: int = 100
) -> list[str]:
    """Carts the sweeper has work on: open past their deadline, locked past the payment
    window, ready but not confirmed past the confirm window (``CONFIRM_WINDOWS``)."""
    result = await conn.execute(
        select(teamcarts.c.id)
        .where(
            or_(
                (teamcarts.c.status == CartStatus.OPEN.value)
                & (teamcarts.c.deadline <= func.now()),
                (teamcarts.c.status == CartStatus.LOCKED.value)
                & (teamcarts.c.locked_at <= func.now() - payment_window),
                (teamcarts.c.status == CartStatus.READY_TO_CONFIRM.value)
                & (teamcarts.c.locked_at <= func.now() - CONFIRM_WINDOWS * payment_window),
            )
        )
        .order_by(teamcarts.c.updated_at)
        .limit(limit)
    )
    return [str(cart_id) for cart_id in result.scalars()]


@dataclass(frozen=True, slots=True)
class ConfirmReminder:
    """A ready cart whose host should confirm before ``deadline`` (then it expires)."""

    cart_id: str
    host_user_id: str
    deadline: datetime


async def claim_confirm_reminders(
    conn: AsyncConnection, payment_window: timedelta, lead: timedelta, *, limit: int = 100
) -> list[ConfirmReminder]:
    """Ready carts within ``lead`` of their confirm window's end whose host wasn't reminded
    yet, marked reminded (one statement: two sweepers never remind twice)."""
    window = CONFIRM_WINDOWS * payment_window
    due = (
        select(teamcarts.c.id)
        .where(
            teamcarts.c.status == CartStatus.READY_TO_CONFIRM.value,
            teamcarts.c.confirm_reminded_at.is_(None),
            teamcarts.c.locked_at <= func.now() - (window - lead),
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    claimed = await conn.execute(
        update(teamcarts)
        .where(teamcarts.c.id.in_(due))
        .values(confirm_reminded_at=func.now())
        .returning(teamcarts.c.id, teamcarts.c.host_user_id, teamcarts.c.locked_at)
    )
    return [
        ConfirmReminder(str(row.id), str(row.host_user_id), row.locked_at + window)
        for row in claimed
    ]


# --- stock -----------------------------------------------------------------------------------


async def reserve_stock(conn: AsyncConnection, cart: TeamCart) -> None:
    """Take every line's quantity out of stock, or none of it (OutOfStock naming products).

    Products are updated in id order so concurrent lockers never deadlock; a product with
    unlimited stock (NULL) needs no reservation.
    """
    wanted = Counter[str]()
    for item in cart.items.values():
        wanted[item.product_id] += item.quantity
    short: list[tuple[str, str]] = []
    for product_id in sorted(wanted):
        quantity = wanted[product_id]
        result = await conn.execute(
            update(products)
            .where(products.c.id == product_id, products.c.stock.is_not(None))
            .where(products.c.stock >= quantity)
            .values(stock=products.c.stock - quantity)
            .returning(products.c.id)
        )
        if result.first() is not None:
            await conn.execute(
                insert(stock_reservations).values(
                    cart_id=cart.id, product_id=product_id, quantity=quantity
                )
            )
            continue
        product = (
            await conn.execute(
                select(products.c.name, products.c.stock).where(products.c.id == product_id)
            )
        ).one()
        if product.stock is not None:
            short.append((product_id, f"{product.name} ({product.stock} left)"))
    if short:
        raise OutOfStock(
            product_ids=[product_id for product_id, _ in short],
            detail="Out of stock: " + ", ".join(label for _, label in short) + ".",
        )


async def release_stock(conn: AsyncConnection, cart_id: str) -> None:
    """Give a cart's reserved units back (unlock, cancel, expiry). Idempotent."""
    released = await conn.execute(
        delete(stock_reservations)
        .where(stock_reservations.c.cart_id == cart_id)
        .returning(stock_reservations.c.product_id, stock_reservations.c.quantity)
    )
    for product_id, quantity in sorted(released.all()):
        await conn.execute(
            update(products)
            .where(products.c.id == product_id)
            .values(stock=products.c.stock + quantity)
        )


async def commit_stock(conn: AsyncConnection, cart_id: str) -> None:
    """The cart became an order: its reserved units are sold, not coming back."""
    await conn.execute(delete(stock_reservations).where(stock_reservations.c.cart_id == cart_id))
