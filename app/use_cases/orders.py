"""Order handlers: reading orders (a member's, a store's), moving an order through
fulfilment, cancelling it, and partial refunds.

Who may do what is decided here from the caller and the order (``actor_of``): an admin; the
store's staff (named by their token, or added through the API); the host of a group order or
the buyer of a single one; a member who paid into it, who may only read. The rules of each
move are the order's own (``domain.order``).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from app.auth import Principal
from app.failures import ForbiddenError, InvalidFieldError, NotFoundError
from app.payments.amounts import to_stripe
from app.persistence.payments import partial_request_id
from app.unit_of_work import UnitOfWork
from app.use_cases.checkout import release_attempt
from app.use_cases.payments.refunds import owe_refund
from domain.order import Actor, Order, OrderKind, OrderStatus

log = structlog.get_logger("teamcart.orders")


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


async def is_store_staff(uow: UnitOfWork, principal: Principal, store_id: str) -> bool:
    """Staff by their token (``teamcart token --staff``) or added by an admin."""
    return store_id in principal.staff_of or await uow.catalog.is_staff(store_id, principal.user_id)


async def actor_of(uow: UnitOfWork, principal: Principal, order: Order) -> Actor | None:
    """What the caller is to the order: admin, its store's staff, its host (group) or buyer
    (single); ``None`` for anyone else, members who paid into it included."""
    if principal.is_admin:
        return Actor.ADMIN
    if await is_store_staff(uow, principal, order.store_id):
        return Actor.STAFF
    if principal.user_id == order.host_user_id:
        return Actor.HOST if order.kind is OrderKind.GROUP else Actor.BUYER
    return None


async def _order(uow: UnitOfWork, order_id: str) -> Order:
    order = await uow.orders.get(order_id)
    if order is None:
        raise NotFoundError("order_not_found", f"no order with id {order_id}")
    return order


async def _readable(uow: UnitOfWork, reader: Principal, order_id: str) -> Order:
    order = await _order(uow, order_id)
    if reader.user_id in order.participant_user_ids:
        return order
    if await actor_of(uow, reader, order) is None:
        raise ForbiddenError(
            "not_a_participant", "only the host, members who paid, and the store's staff see it"
        )
    return order


async def _store_side(uow: UnitOfWork, principal: Principal, order: Order) -> Actor:
    actor = await actor_of(uow, principal, order)
    if actor not in (Actor.STAFF, Actor.ADMIN):
        raise ForbiddenError("staff_only", "only the store's staff (or an admin) may do this")
    return actor


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadOrder:
    reader: Principal
    order_id: str


async def get_order(query: ReadOrder, uow: UnitOfWork) -> Order:
    """The order, for its host, every member on its payments, its store's staff, admins."""
    return await _readable(uow, query.reader, query.order_id)


@dataclass(frozen=True, slots=True)
class ListOrders:
    user_id: str
    limit: int
    cursor: str | None


@dataclass(frozen=True, slots=True)
class OrderPage:
    orders: list[Order]
    next_cursor: str | None


async def _page(uow: UnitOfWork, ids: Sequence[str], limit: int) -> OrderPage:
    loaded = [await uow.orders.get(order_id) for order_id in ids[:limit]]
    orders = [order for order in loaded if order is not None]
    more = len(ids) > limit and orders
    return OrderPage(orders, encode_cursor(orders[-1]) if more else None)


async def list_orders(query: ListOrders, uow: UnitOfWork) -> OrderPage:
    """One page of the caller's orders and the cursor of the next page (None at the end)."""
    before = decode_cursor(query.cursor) if query.cursor else None
    ids = await uow.orders.ids_for(query.user_id, limit=query.limit + 1, before=before)
    return await _page(uow, ids, query.limit)


@dataclass(frozen=True, slots=True)
class ListStoreOrders:
    reader: Principal
    store_id: str
    statuses: tuple[OrderStatus, ...]
    limit: int
    cursor: str | None


async def list_store_orders(query: ListStoreOrders, uow: UnitOfWork) -> OrderPage:
    """One page of a store's orders (in the statuses asked for), for its staff and admins."""
    if await uow.catalog.store(query.store_id) is None:
        raise NotFoundError("store_not_found", f"no store with id {query.store_id}")
    if not query.reader.is_admin and not await is_store_staff(uow, query.reader, query.store_id):
        raise ForbiddenError("staff_only", "only the store's staff (or an admin) see its orders")
    before = decode_cursor(query.cursor) if query.cursor else None
    ids = await uow.orders.ids_of_store(
        query.store_id, statuses=query.statuses, limit=query.limit + 1, before=before
    )
    return await _page(uow, ids, query.limit)


# --- store staff -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddStaff:
    store_id: str
    user_id: str


async def add_staff(command: AddStaff, uow: UnitOfWork) -> None:
    """The user becomes staff of the store (an admin's command; the route checks that)."""
    if await uow.catalog.store(command.store_id) is None:
        raise NotFoundError("store_not_found", f"no store with id {command.store_id}")
    await uow.catalog.add_staff(command.store_id, command.user_id)
    log.info("store_staff_added", store_id=command.store_id, user_id=command.user_id)


# --- changing an order -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MoveOrder:
    actor: Principal
    order_id: str
    to: OrderStatus
    carrier: str | None = None
    tracking_number: str | None = None
    reason: str | None = None


async def move_order(command: MoveOrder, uow: UnitOfWork) -> Order:
    """One step of fulfilment, by the store's staff or an admin."""
    order = await _order(uow, command.order_id)
    actor = await _store_side(uow, command.actor, order)
    order.move(
        command.to,
        actor,
        datetime.now(UTC),
        carrier=command.carrier,
        tracking_number=command.tracking_number,
        reason=command.reason,
    )
    log.info("order_moved", order_id=order.id, status=order.status, by_role=actor)
    return order


@dataclass(frozen=True, slots=True)
class CancelOrder:
    actor: Principal
    order_id: str
    reason: str | None


async def cancel_order(command: CancelOrder, uow: UnitOfWork) -> Order:
    """Cancel (by role and status: ``domain.order.CANCELLABLE``): every online payment is
    refunded in full through the refund path (owed now, asked of Stripe after the commit),
    and the order's units go back on sale."""
    order = await _order(uow, command.order_id)
    actor = await actor_of(uow, command.actor, order)
    if actor is None:
        if command.actor.user_id in order.participant_user_ids:
            raise ForbiddenError("may_not_cancel", "only the host may cancel a group order")
        raise ForbiddenError("not_a_participant", "only the host and the store's staff may")
    unpaid = order.awaits_payment
    for payment in order.cancel(actor, command.reason, datetime.now(UTC)):
        assert payment.reference is not None  # online payments have their intent
        await owe_refund(
            uow,
            payment.reference,
            amount=to_stripe(payment.amount_minor, order.currency),
            currency=order.currency,
            reason="order_cancelled",
            cart_id=order.cart_id,
        )
    await uow.catalog.return_stock(order.lines)
    if unpaid:
        await release_attempt(uow, order)  # a payment under way: Stripe stops taking it
    log.info("order_cancelled", order_id=order.id, by_role=actor, reason=command.reason)
    return order


@dataclass(frozen=True, slots=True)
class RefundPart:
    actor: Principal
    order_id: str
    user_id: str | None
    amount_minor: int
    reason: str | None


@dataclass(frozen=True, slots=True)
class RefundAsked:
    request_id: str
    order: Order


async def refund_part(command: RefundPart, uow: UnitOfWork) -> RefundAsked:
    """A partial refund of one payment, by the store's staff or an admin: never more than
    was paid less earlier refunds (the order's version check serialises concurrent ones)."""
    order = await _order(uow, command.order_id)
    actor = await _store_side(uow, command.actor, order)
    payment = order.refund(command.user_id, command.amount_minor, actor, datetime.now(UTC))
    assert payment.reference is not None  # refund() takes online payments only
    request_id = partial_request_id(str(uuid.uuid4()))
    await owe_refund(
        uow,
        payment.reference,
        amount=to_stripe(command.amount_minor, order.currency),
        currency=order.currency,
        reason=command.reason or "partial_refund",
        cart_id=order.cart_id,
        request_id=request_id,
    )
    return RefundAsked(request_id, order)


async def refund_state(request_id: str, uow: UnitOfWork) -> tuple[str, str | None] | None:
    """Where a refund request stands: ``pending`` or ``done``, and Stripe's refund id."""
    return await uow.payments.refund_request_state(request_id)
