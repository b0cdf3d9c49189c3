"""Order repository: rows ↔ ``domain.order.Order``, order numbers, and a member's order list."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import RowMapping, exists, insert, literal, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence.tables import order_lines, order_number_seq, order_payments, orders
from domain.order import DeliveryAddress, Order, OrderLine, OrderPayment, OrderStatus
from domain.payments import PaymentMethod, PaymentStatus
from domain.pricing import TOTALS_FIELDS, Totals


async def next_order_number(conn: AsyncConnection) -> str:
    """A unique, human-readable order number: ``TC-000123``."""
    number = (await conn.execute(order_number_seq.next_value().select())).scalar_one()
    return f"TC-{number:06d}"


async def insert_order(conn: AsyncConnection, order: Order) -> None:
    address = order.delivery_address
    await conn.execute(
        insert(orders).values(
            id=order.id,
            number=order.number,
            cart_id=order.cart_id,
            store_id=order.store_id,
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
            insert(order_payments),
            [
                {
                    "order_id": order.id,
                    "user_id": payment.user_id,
                    "method": payment.method.value,
                    "amount_minor": payment.amount_minor,
                    "status": payment.status.value,
                    "reference": payment.reference,
                }
                for payment in order.payments
            ],
        )


def _visible_to(user_id: str):  # type: ignore[no-untyped-def]
    """The host, and every member who paid into the order, may read it."""
    return or_(
        orders.c.host_user_id == user_id,
        exists().where(
            order_payments.c.order_id == orders.c.id, order_payments.c.user_id == user_id
        ),
    )


async def load_order(conn: AsyncConnection, order_id: str) -> Order | None:
    row = (
        (await conn.execute(select(orders).where(orders.c.id == order_id))).mappings().one_or_none()
    )
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


async def list_order_ids_for(
    conn: AsyncConnection, user_id: str, *, limit: int, before: tuple[datetime, str] | None
) -> list[str]:
    """Ids of the orders the user may read, newest first, after the cursor ``before``."""
    query = select(orders.c.id).where(_visible_to(user_id))
    if before is not None:
        created_at, order_id = before
        query = query.where(
            tuple_(orders.c.created_at, orders.c.id)
            < tuple_(
                literal(created_at, orders.c.created_at.type), literal(order_id, orders.c.id.type)
            )
        )
    query = query.order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(limit)
    return [str(order_id) for order_id in (await conn.execute(query)).scalars()]


def _to_order(
    row: RowMapping, lines: Sequence[RowMapping], payments: Sequence[RowMapping]
) -> Order:
    address = row["delivery_address"]
    return Order(
        id=str(row["id"]),
        number=row["number"],
        cart_id=str(row["cart_id"]),
        store_id=str(row["store_id"]),
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
    )
