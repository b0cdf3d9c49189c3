"""Order repository: rows ↔ ``domain.order.Order``, order numbers, the lists of orders (a
member's, a store's), store staff, and the version-checked save."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    RowMapping,
    bindparam,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence.tables import (
    order_lines,
    order_number_seq,
    order_payments,
    orders,
)
from domain.order import (
    Actor,
    DeliveryAddress,
    HistoryEntry,
    Order,
    OrderKind,
    OrderLine,
    OrderPayment,
    OrderStatus,
    Tracking,
    order_number,
)
from domain.payments import PaymentMethod, PaymentStatus
from domain.pricing import TOTALS_FIELDS, Totals

Cursor = tuple[datetime, str]
"""``(created_at, id)`` of the last order of a page: the next page starts after it."""


async def next_order_number(conn: AsyncConnection, today: date) -> str:
    """A unique, never reused order number: ``TC-YYYYMMDD-XXXXX`` (``domain.order``)."""
    serial = (await conn.execute(order_number_seq.next_value().select())).scalar_one()
    return order_number(today, serial)


def _history(order: Order) -> list[dict[str, Any]]:
    return [
        {
            "status": entry.status.value,
            "at": entry.at.isoformat(),
            "by_role": entry.by_role.value,
            "reason": entry.reason,
        }
        for entry in order.history
    ]


def _tracking(order: Order) -> dict[str, Any] | None:
    tracking = order.tracking
    if tracking is None:
        return None
    return {
        "carrier": tracking.carrier,
        "tracking_number": tracking.tracking_number,
        "url": tracking.url,
    }


def _payment_row(order: Order, payment: OrderPayment) -> dict[str, Any]:
    return {
        "order_id": order.id,
        "user_id": payment.user_id,
        "display_name": payment.display_name,
        "method": payment.method.value,
        "amount_minor": payment.amount_minor,
        "refunded_minor": payment.refunded_minor,
        "status": payment.status.value,
        "reference": payment.reference,
        "checkout_session_id": payment.checkout_session_id,
    }


async def insert_order(conn: AsyncConnection, order: Order) -> None:
    address = order.delivery_address
    await conn.execute(
        insert(orders).values(
            id=order.id,
            number=order.number,
            kind=order.kind.value,
            cart_id=order.cart_id,
            store_id=order.store_id,
            store_name=order.store_name,
            host_user_id=order.host_user_id,
            currency=order.currency,
            status=order.status.value,
            version=order.version,
            **order.totals.as_dict(),
            coupon_code=order.coupon_code,
            delivery_address={
                "line1": address.line1,
                "line2": address.line2,
                "city": address.city,
                "postal_code": address.postal_code,
                "country": address.country,
            },
            history=_history(order),
            tracking=_tracking(order),
            created_at=order.created_at,
        )
    )
    await conn.execute(
        insert(order_lines),
        [
            {
                "order_id": order.id,
                "position": position,
                "user_id": line.user_id,
                "product_id": line.product_id,
                "name": line.name,
                "options": list(line.options),
                "unit_price_minor": line.unit_price_minor,
                "quantity": line.quantity,
                "line_total_minor": line.line_total_minor,
            }
            for position, line in enumerate(order.lines)
        ],
    )
    if order.payments:
        await conn.execute(
            insert(order_payments), [_payment_row(order, payment) for payment in order.payments]
        )


_SAVE_PAYMENT = (
    update(order_payments)
    .where(
        order_payments.c.order_id == bindparam("_order_id"),
        order_payments.c.user_id == bindparam("_user_id"),
    )
    .values(
        status=bindparam("status"),
        refunded_minor=bindparam("refunded_minor"),
        reference=bindparam("reference"),
        checkout_session_id=bindparam("checkout_session_id"),
    )
)


async def save_order(conn: AsyncConnection, order: Order, expected_version: int) -> bool:
    """Write the order's status, history, tracking and payments if it is still at
    ``expected_version``; ``False`` when someone saved it first (nothing written)."""
    saved = await conn.execute(
        update(orders)
        .where(orders.c.id == order.id, orders.c.version == expected_version)
        .values(
            status=order.status.value,
            version=order.version,
            history=_history(order),
            tracking=_tracking(order),
        )
        .returning(orders.c.id)
    )
    if saved.first() is None:
        return False
    await conn.execute(
        _SAVE_PAYMENT,
        [
            {
                "_order_id": order.id,
                "_user_id": payment.user_id,
                "status": payment.status.value,
                "refunded_minor": payment.refunded_minor,
                "reference": payment.reference,
                "checkout_session_id": payment.checkout_session_id,
            }
            for payment in order.payments
        ],
    )
    return True


def _visible_to(user_id: str):  # type: ignore[no-untyped-def]
    """The host, and every member who paid into the order, may read it."""
    return or_(
        orders.c.host_user_id == user_id,
        exists().where(
            order_payments.c.order_id == orders.c.id, order_payments.c.user_id == user_id
        ),
    )


async def load_order(conn: AsyncConnection, order_id: str, *, lock: bool = False) -> Order | None:
    """The order; ``lock``: its row locked until the transaction ends (the retry)."""
    query = select(orders).where(orders.c.id == order_id)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().one_or_none()
    if row is None:
        return None
    lines = (
        (
            await conn.execute(
                select(order_lines)
                .where(order_lines.c.order_id == order_id)
                .order_by(order_lines.c.position)
            )
        )
        .mappings()
        .all()
    )
    payments = (
        (
            await conn.execute(
                select(order_payments)
                .where(order_payments.c.order_id == order_id)
                .order_by(order_payments.c.user_id)
            )
        )
        .mappings()
        .all()
    )
    return _to_order(row, lines, payments)


async def order_id_paid_by(conn: AsyncConnection, payment_intent_id: str) -> str | None:
    """The order a PaymentIntent paid into, if it is on one."""
    found = await conn.execute(
        select(order_payments.c.order_id).where(order_payments.c.reference == payment_intent_id)
    )
    order_id = found.scalars().first()
    return None if order_id is None else str(order_id)


def _after(query: Any, before: Cursor | None) -> Any:
    if before is None:
        return query
    created_at, order_id = before
    return query.where(
        tuple_(orders.c.created_at, orders.c.id)
        < tuple_(literal(created_at, orders.c.created_at.type), literal(order_id, orders.c.id.type))
    )


async def list_order_ids_for(
    conn: AsyncConnection, user_id: str, *, limit: int, before: Cursor | None
) -> list[str]:
    """Ids of the orders the user may read, newest first, after the cursor ``before``."""
    query = _after(select(orders.c.id).where(_visible_to(user_id)), before)
    query = query.order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(limit)
    return [str(order_id) for order_id in (await conn.execute(query)).scalars()]


async def list_store_order_ids(
    conn: AsyncConnection,
    store_id: str,
    *,
    statuses: Sequence[OrderStatus],
    limit: int,
    before: Cursor | None,
) -> list[str]:
    """Ids of the store's orders (in ``statuses``, if any named), newest first."""
    query = select(orders.c.id).where(orders.c.store_id == store_id)
    if statuses:
        query = query.where(orders.c.status.in_([status.value for status in statuses]))
    query = _after(query, before).order_by(orders.c.created_at.desc(), orders.c.id.desc())
    return [str(order_id) for order_id in (await conn.execute(query.limit(limit))).scalars()]


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _to_order(
    row: RowMapping, lines: Sequence[RowMapping], payments: Sequence[RowMapping]
) -> Order:
    address = row["delivery_address"]
    tracking = row["tracking"]
    return Order(
        id=str(row["id"]),
        number=row["number"],
        kind=OrderKind(row["kind"]),
        cart_id=None if row["cart_id"] is None else str(row["cart_id"]),
        store_id=str(row["store_id"]),
        store_name=row["store_name"],
        currency=row["currency"],
        host_user_id=str(row["host_user_id"]),
        lines=[
            OrderLine(
                product_id=str(line["product_id"]),
                name=line["name"],
                options=tuple(line["options"]),
                unit_price_minor=line["unit_price_minor"],
                quantity=line["quantity"],
                line_total_minor=line["line_total_minor"],
                user_id=str(line["user_id"]),
            )
            for line in lines
        ],
        totals=Totals(**{name: row[name] for name in TOTALS_FIELDS}),
        payments=[
            OrderPayment(
                user_id=str(payment["user_id"]),
                method=PaymentMethod(payment["method"]),
                amount_minor=payment["amount_minor"],
                status=PaymentStatus(payment["status"]),
                reference=payment["reference"],
                display_name=payment["display_name"],
                refunded_minor=payment["refunded_minor"],
                checkout_session_id=payment["checkout_session_id"],
            )
            for payment in payments
        ],
        delivery_address=DeliveryAddress(
            line1=address["line1"],
            line2=address.get("line2"),
            city=address["city"],
            postal_code=address["postal_code"],
            country=address["country"],
        ),
        status=OrderStatus(row["status"]),
        created_at=row["created_at"],
        version=row["version"],
        coupon_code=row["coupon_code"],
        history=[
            HistoryEntry(
                OrderStatus(entry["status"]),
                _moment(entry["at"]),
                Actor(entry["by_role"]),
                entry.get("reason"),
            )
            for entry in row["history"]
        ],
        tracking=None
        if tracking is None
        else Tracking(tracking["carrier"], tracking["tracking_number"], tracking.get("url")),
    )


async def due_unpaid_order_ids(conn: AsyncConnection, payment_window: timedelta) -> list[str]:
    """Single-payer orders still unpaid a payment window after checkout (their stock is to
    go back)."""
    found = await conn.execute(
        select(orders.c.id)
        .where(
            orders.c.kind == "single",
            orders.c.status.in_(["awaiting_payment", "payment_failed"]),
            orders.c.created_at < func.now() - payment_window,
        )
        .limit(100)
    )
    return [str(order_id) for order_id in found.scalars()]
