"""Order use cases: reading an order, and listing the caller's orders newest first."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import Principal
from app.errors import ApiError
from app.failures import ForbiddenError, NotFoundError
from app.persistence import orders as order_repo
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
        raise ApiError(
            400,
            "validation_error",
            "cursor: not a cursor this server issued",
            extra={"errors": [{"field": "cursor", "source": "query", "message": "invalid"}]},
        ) from exc


async def get_order_for(engine: AsyncEngine, reader: Principal, order_id: str) -> Order:
    """The order, for its host, every member on its payments, and admins."""
    async with engine.connect() as conn:
        order = await order_repo.load_order(conn, order_id)
    if order is None:
        raise NotFoundError("order_not_found", f"no order with id {order_id}")
    if reader.user_id not in order.participant_user_ids and not reader.is_admin:
        raise ForbiddenError("not_a_participant", "only the host and members who paid see it")
    return order


async def list_orders_for(
    engine: AsyncEngine, user_id: str, *, limit: int, cursor: str | None
) -> tuple[list[Order], str | None]:
    """One page of the caller's orders and the cursor of the next page (None at the end)."""
    before = decode_cursor(cursor) if cursor else None
    async with engine.connect() as conn:
        ids = await order_repo.list_order_ids_for(conn, user_id, limit=limit + 1, before=before)
        loaded = [await order_repo.load_order(conn, order_id) for order_id in ids[:limit]]
    orders = [order for order in loaded if order is not None]
    next_cursor = encode_cursor(orders[-1]) if len(ids) > limit and orders else None
    return orders, next_cursor
