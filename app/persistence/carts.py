"""TeamCart repository: rows ↔ ``domain.teamcart.TeamCart``, by hand, with version checks.

A save is ``UPDATE teamcarts … WHERE id = $1 AND version = $expected``; no row updated means
another writer got there first, and the unit of work (``app.unit_of_work``) retries from a
fresh load. A load hands back, beside the cart, the member and item rows it had
(:class:`Snapshot`), so a save writes only the rows that changed; the unit of work keeps that
snapshot with the cart it tracks. Stock reservations live here too because they move with the
cart's state.

Every command loads and saves a cart, so those two are hand-written SQL sent through the
connection's asyncpg driver (prepared once per connection by asyncpg; no SQL built per
call): one round trip each, the save carrying the cart's changed rows and its outbox events
(ADR 0012). The rest is SQLAlchemy Core.

Why one module of this length: the cart's rows by hand, both ways (load in one round trip,
save only what changed), and the stock that moves with the cart's state.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import bindparam, case, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence import database, outbox
from app.persistence.catalog import coupon_terms
from app.persistence.tables import (
    products,
    stock_reservations,
    teamcart_items,
    teamcart_members,
    teamcarts,
)
from domain.catalog import CouponTerms, StoreTerms
from domain.errors import OutOfStock
from domain.events import DomainEvent
from domain.payments import PaymentMethod, PaymentStatus
from domain.pricing import TOTALS_FIELDS, Quote, Totals
from domain.teamcart import (
    CONFIRM_WINDOWS,
    Capture,
    CartItem,
    CartStatus,
    Member,
    MemberPayment,
    MemberRole,
    PaymentMode,
    TeamCart,
    hold_window,
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
        "invite_code": cart.invite_code,
        "payment_mode": cart.payment_mode.value,
        "allowance_minor": cart.allowance_minor,
        "spending_limit_minor": cart.spending_limit_minor,
        "capture": cart.capture.value,
        "reminder_minutes": cart.reminder_minutes,
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
            "owes_minor": cart.quote.owed_by(member.user_id) if cart.quote else None,
            "covered": member.covered,
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


async def insert_cart(conn: AsyncConnection, cart: TeamCart) -> Snapshot:
    await conn.execute(
        insert(teamcarts).values(
            id=cart.id,
            store_id=cart.store.store_id,
            currency=cart.store.currency,
            delivery_fee_minor=cart.store.delivery_fee_minor,
            tax_rate_bps=cart.store.tax_rate_bps,
            host_user_id=cart.host_user_id,
            created_at=cart.created_at,
            **_cart_values(cart),
        )
    )
    rows = Snapshot.of(cart)
    if rows.members:
        await conn.execute(insert(teamcart_members), list(rows.members.values()))
    if rows.items:
        await conn.execute(insert(teamcart_items), list(rows.items.values()))
    return rows


# One round trip for a whole save: the version-checked UPDATE of the cart, its member and item
# rows that changed or went, and its events' outbox rows; everything after the UPDATE happens
# only if it found the expected version (``saved``). A single statement is atomic, so with
# nothing else to write the unit of work sends it alone, without BEGIN and COMMIT
# (``app.unit_of_work``). Row values travel as JSON text, read by ``jsonb_populate_recordset``
# into the tables' own row types. Written as SQL, not built per call (ADR 0012).
_SAVE = f"""
WITH saved AS (
    UPDATE teamcarts
       SET status = $3, version = $4, quote_version = $5, deadline = $6, locked_at = $7,
           tip_minor = $8, coupon_code = $9, subtotal_minor = $10,
           quote_delivery_fee_minor = $11, tax_minor = $12, quote_tip_minor = $13,
           discount_minor = $14, total_minor = $15, order_id = $16,
           removed_user_ids = CAST($17 AS uuid[]), invite_code = $18, payment_mode = $19,
           allowance_minor = $20, spending_limit_minor = $21, capture = $22,
           reminder_minutes = $23, updated_at = now(),
           -- A reminder to confirm is for one stretch of being ready: the mark is kept while
           -- a ready cart stays ready and cleared otherwise (SET sees the row as it was),
           -- so a cart that reopens and is ready again reminds its host again.
           confirm_reminded_at = CASE WHEN status = '{CartStatus.READY_TO_CONFIRM.value}'
                                      THEN confirm_reminded_at END
     WHERE id = $1 AND version = $2
 RETURNING id
), members_gone AS (
    DELETE FROM teamcart_members
     WHERE cart_id = $1 AND user_id = ANY(CAST($24 AS uuid[])) AND EXISTS (SELECT FROM saved)
), members_put AS (
    INSERT INTO teamcart_members
    SELECT * FROM jsonb_populate_recordset(NULL::teamcart_members, CAST($25 AS text)::jsonb)
     WHERE EXISTS (SELECT FROM saved)
        ON CONFLICT (cart_id, user_id) DO UPDATE SET
           position = EXCLUDED.position, display_name = EXCLUDED.display_name,
           role = EXCLUDED.role, ready = EXCLUDED.ready, joined_at = EXCLUDED.joined_at,
           share_minor = EXCLUDED.share_minor, payment_status = EXCLUDED.payment_status,
           payment_method = EXCLUDED.payment_method,
           payment_amount_minor = EXCLUDED.payment_amount_minor,
           payment_reference = EXCLUDED.payment_reference,
           owes_minor = EXCLUDED.owes_minor, covered = EXCLUDED.covered
), items_gone AS (
    DELETE FROM teamcart_items
     WHERE cart_id = $1 AND id = ANY(CAST($26 AS uuid[])) AND EXISTS (SELECT FROM saved)
), items_put AS (
    INSERT INTO teamcart_items
    SELECT * FROM jsonb_populate_recordset(NULL::teamcart_items, CAST($27 AS text)::jsonb)
     WHERE EXISTS (SELECT FROM saved)
        ON CONFLICT (id) DO UPDATE SET
           position = EXCLUDED.position, quantity = EXCLUDED.quantity,
           name = EXCLUDED.name, unit_price_minor = EXCLUDED.unit_price_minor,
           options = EXCLUDED.options
), appended AS (
    {outbox.append_sql(28, gate="WHERE EXISTS (SELECT FROM saved)")}
)
SELECT (SELECT count(*) FROM saved) AS saved, appended.*
  FROM (SELECT 1) AS one LEFT JOIN appended ON true
"""  # noqa: S608 (made of constants: a status, the outbox insert)

_rows_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Saved:
    """A save that went through: the cart's rows now, and its events' outbox records (when
    they are to be relayed)."""

    rows: Snapshot
    records: list[outbox.OutboxRecord]


async def save_cart(
    conn: AsyncConnection,
    cart: TeamCart,
    expected_version: int,
    before: Snapshot,
    events: Sequence[DomainEvent],
    payloads: Sequence[str],
    *,
    reserve: bool,
) -> Saved | None:
    """Write the cart and append its events if nobody else has saved it since
    ``expected_version`` (the rows it had then are ``before``): one statement, in whatever
    transaction ``conn`` has open, or alone. ``None`` when another writer got there first.
    ``reserve``: the records come back, reserved for the caller's relay
    (``app.persistence.outbox``)."""
    if cart.version == expected_version:
        return Saved(before, [])  # the command changed nothing
    after = Snapshot.of(cart)
    values = _cart_values(cart)
    rows = await database.fetch(
        conn,
        _SAVE,
        cart.id,
        expected_version,
        *(values[name] for name in _SAVED_COLUMNS),
        [key for key in before.members if key not in after.members],
        _changed(before.members, after.members),
        [key for key in before.items if key not in after.items],
        _changed(before.items, after.items),
        *outbox.append_arguments(events, payloads, reserve=reserve),
    )
    if rows[0]["saved"] != 1:
        return None
    return Saved(after, outbox.records_of(rows, events, payloads) if reserve else [])


_SAVED_COLUMNS = (
    "status",
    "version",
    "quote_version",
    "deadline",
    "locked_at",
    "tip_minor",
    "coupon_code",
    "subtotal_minor",
    "quote_delivery_fee_minor",
    "tax_minor",
    "quote_tip_minor",
    "discount_minor",
    "total_minor",
    "order_id",
    "removed_user_ids",
    "invite_code",
    "payment_mode",
    "allowance_minor",
    "spending_limit_minor",
    "capture",
    "reminder_minutes",
)
"""The ``_cart_values`` the save sets, in the order of its parameters $3 to $23."""


def _changed(before: Rows, after: Rows) -> str:
    """The rows that are new or changed, as the JSON array ``jsonb_populate_recordset``
    reads."""
    return _rows_encoder.encode(
        [row for key, row in after.items() if before.get(key) != row]
    ).decode()


async def version_of(conn: AsyncConnection, cart_id: str) -> int | None:
    """The cart's stored version (one primary-key read); ``None`` for no such cart."""
    version = await database.fetchval(conn, _VERSION_OF, cart_id)
    return None if version is None else int(version)


_VERSION_OF = "SELECT version FROM teamcarts WHERE id = $1"


async def is_member(conn: AsyncConnection, cart_id: str, user_id: str) -> bool:
    """Whether the user is a member of the cart right now (one primary-key lookup)."""
    return bool(await database.fetchval(conn, _IS_MEMBER, cart_id, user_id))


_IS_MEMBER = "SELECT EXISTS (SELECT FROM teamcart_members WHERE cart_id = $1 AND user_id = $2)"


async def find_cart_id_by_invite(conn: AsyncConnection, invite_code: str) -> str | None:
    result = await conn.execute(
        select(teamcarts.c.id).where(teamcarts.c.invite_code == invite_code)
    )
    cart_id = result.scalar_one_or_none()
    return None if cart_id is None else str(cart_id)


# The cart with its members, items and coupon in one round trip; the nested rows as JSON
# text, decoded here.
_LOAD = """
SELECT c.*,
       (SELECT coalesce(jsonb_agg(to_jsonb(m) ORDER BY m.position), '[]')
          FROM teamcart_members m WHERE m.cart_id = c.id)::text AS members_json,
       (SELECT coalesce(jsonb_agg(to_jsonb(i) ORDER BY i.position), '[]')
          FROM teamcart_items i WHERE i.cart_id = c.id)::text AS items_json,
       (SELECT to_jsonb(k) FROM coupons k
         WHERE k.store_id = c.store_id AND k.code = c.coupon_code)::text AS coupon_json
  FROM teamcarts c
 WHERE c.id = $1
"""


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
    if lock:  # through SQLAlchemy, which opens the transaction the lock lasts for
        await conn.execute(_LOCK_ONE, {"cart_id": cart_id})
    row = await database.fetchrow(conn, _LOAD, cart_id)
    if row is None:
        return None
    member_rows = [_parse_times(m, "joined_at") for m in _json.decode(row["members_json"])]
    item_rows = _json.decode(row["items_json"])
    coupon_json = row["coupon_json"]
    coupon = coupon_terms(_json.decode(coupon_json)) if coupon_json is not None else None
    cart = _to_cart(row, member_rows, item_rows, coupon)
    return cart, Snapshot.of(cart)


def _parse_times(row: dict[str, Any], *names: str) -> dict[str, Any]:
    """jsonb carries timestamps as text; the domain wants aware datetimes."""
    return {**row, **{name: datetime.fromisoformat(row[name]) for name in names}}


_json = msgspec.json.Decoder()


def _to_cart(
    row: Mapping[str, Any],
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
            owes={
                str(m["user_id"]): m["owes_minor"]
                if m.get("owes_minor") is not None
                else m["share_minor"] or 0
                for m in member_rows
            },
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
                covered=bool(m.get("covered")),
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
        payment_mode=PaymentMode(row["payment_mode"]),
        allowance_minor=row["allowance_minor"],
        spending_limit_minor=row["spending_limit_minor"],
        capture=Capture(row["capture"]),
        reminder_minutes=row["reminder_minutes"],
    )


async def due_cart_ids(
    conn: AsyncConnection, payment_window: timedelta, *, limit: int = 100
) -> list[str]:
    """Carts the sweeper has work on: open past their deadline, locked past the payment
    window, ready but not confirmed past the confirm window (``CONFIRM_WINDOWS``)."""
    held = hold_window(payment_window)  # capture on confirm: the cards' holds lapse
    holding = teamcarts.c.capture == Capture.ON_CONFIRM.value
    window = case((holding, held), else_=payment_window)
    confirm_window = case((holding, CONFIRM_WINDOWS * held), else_=CONFIRM_WINDOWS * payment_window)
    result = await conn.execute(
        select(teamcarts.c.id)
        .where(
            or_(
                (teamcarts.c.status == CartStatus.OPEN.value)
                & (teamcarts.c.deadline <= func.now()),
                (teamcarts.c.status == CartStatus.LOCKED.value)
                & (teamcarts.c.locked_at <= func.now() - window),
                (teamcarts.c.status == CartStatus.READY_TO_CONFIRM.value)
                & (teamcarts.c.locked_at <= func.now() - confirm_window),
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


async def release_items_stock(
    conn: AsyncConnection, cart_id: str, items: Sequence[CartItem]
) -> None:
    """Give back the units of some of a locked cart's items (a member removed after lock):
    its reservations shrink by their quantities, and the products' stock grows."""
    quantities: dict[str, int] = {}
    for item in items:
        quantities[item.product_id] = quantities.get(item.product_id, 0) + item.quantity
    for product_id, quantity in sorted(quantities.items()):
        where = (
            stock_reservations.c.cart_id == cart_id,
            stock_reservations.c.product_id == product_id,
        )
        held = (
            await conn.execute(
                select(stock_reservations.c.quantity).where(*where).with_for_update()
            )
        ).scalar_one_or_none()
        if held is None:
            continue  # an unlimited product: nothing was reserved
        given = min(quantity, held)
        if given >= held:
            await conn.execute(delete(stock_reservations).where(*where))
        else:
            await conn.execute(
                update(stock_reservations)
                .where(*where)
                .values(quantity=stock_reservations.c.quantity - given)
            )
        await conn.execute(
            update(products)
            .where(products.c.id == product_id)
            .values(stock=products.c.stock + given)
        )
