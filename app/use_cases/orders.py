"""Order handlers: reading an order, and listing the caller's orders newest first (units of
work that change nothing)."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from app.auth import Principal
from app.failures import ForbiddenError, InvalidFieldError, NotFoundError
from app.unit_of_work import UnitOfWork
from domain.order import Order


def encode_cursor(order: Order) -> str:
    raw = f"{order.created_at.isoformat()}|{order.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, order_id = raw.split("|", 1)
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None:
            raise ValueError("naive time")
        # In UTC (OverflowError before year 1 or after 9999), as PostgreSQL will compare it.
        return moment.astimezone(UTC), str(uuid.UUID(order_id))
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidFieldError("cursor", "query", "not a cursor this server issued") from exc


@dataclass(frozen=True, slots=True)
class ReadOrder:
    reader: Principal
    order_id: str


async def get_order(query: ReadOrder, uow: UnitOfWork) -> Order:
    """The order, for its host, every member on its payments, and admins."""
    order = await uow.orders.get(query.order_id)
    if order is None:
        raise NotFoundError("order_not_found", f"no order with id {query.order_id}")
    if query.reader.user_id not in order.participant_user_ids and not query.reader.is_admin:
        raise ForbiddenError("not_a_participant", "only the host and members who paid see it")
    return order


@dataclass(frozen=True, slots=True)
class ListOrders:
    user_id: str
    limit: int
    cursor: str | None


@dataclass(frozen=True, slots=True)
class OrderPage:
    orders: list[Order]
    next_cursor: str | None


async def list_orders(query: ListOrders, uow: UnitOfWork) -> OrderPage:
    """One page of the caller's orders and the cursor of the next page (None at the end)."""
    before = decode_cursor(query.cursor) if query.cursor else None
    ids = await uow.orders.ids_for(query.user_id, limit=query.limit + 1, before=before)
    loaded = [await uow.orders.get(order_id) for order_id in ids[: query.limit]]
    orders = [order for order in loaded if order is not None]
    more = len(ids) > query.limit and orders
    return OrderPage(orders, encode_cursor(orders[-1]) if more else None)
