"""What clients see of an order (API.md § Orders), and the order's outbox payloads.

One view for every reader: the HTTP answer, the order socket's snapshot and updates, and the
mail planner all read the same struct. The outbox payload of an order event carries the
order's view as of that event's version, so the socket's update and the email are built from
what was committed, never from a later read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from domain.events import DomainEvent, OrderMoved, OrderPlaced, OrderRefunded
from domain.order import Order
from domain.teamcart import TeamCart
from realtime.projection import outbox_payloads as cart_payloads


class OrderLineView(msgspec.Struct):
    product_id: str
    user_id: str
    name: str
    options: list[str]
    unit_price_minor: int
    quantity: int
    line_total_minor: int


class OrderPaymentView(msgspec.Struct):
    user_id: str
    display_name: str
    method: str
    amount_minor: int
    refunded_minor: int
    status: str
    reference: str | None
    """The PaymentIntent of an online payment (what the store finds in Stripe's dashboard)."""


class AddressView(msgspec.Struct):
    line1: str
    line2: str | None
    city: str
    postal_code: str
    country: str


class TrackingView(msgspec.Struct):
    carrier: str
    tracking_number: str
    url: str | None


class HistoryView(msgspec.Struct):
    status: str
    at: datetime
    by_role: str
    reason: str | None


class OrderView(msgspec.Struct, omit_defaults=True):
    id: str
    number: str
    kind: str
    status: str
    store_id: str
    store_name: str
    host_user_id: str
    currency: str
    subtotal_minor: int
    delivery_fee_minor: int
    tax_minor: int
    tip_minor: int
    discount_minor: int
    total_minor: int
    coupon_code: str | None
    delivery_address: AddressView
    lines: list[OrderLineView]
    payments: list[OrderPaymentView]
    tracking: TrackingView | None
    history: list[HistoryView]
    teamcart_id: str | None
    created_at: datetime
    version: int
    my_amount_minor: int | None = None
    """What the reader paid or committed on it, before refunds (readers on its payments)."""
    my_refunded_minor: int | None = None


def order_view(order: Order, reader_id: str | None = None) -> OrderView:
    """The order as ``reader_id`` sees it (``my_*`` filled in when they are on a payment)."""
    address = order.delivery_address
    tracking = order.tracking
    mine = None if reader_id is None else order.payment_of(reader_id)
    return OrderView(
        id=order.id,
        number=order.number,
        kind=order.kind.value,
        status=order.status.value,
        store_id=order.store_id,
        store_name=order.store_name,
        host_user_id=order.host_user_id,
        currency=order.currency,
        **order.totals.as_dict(),
        coupon_code=order.coupon_code,
        delivery_address=AddressView(
            line1=address.line1,
            line2=address.line2,
            city=address.city,
            postal_code=address.postal_code,
            country=address.country,
        ),
        lines=[
            OrderLineView(
                product_id=line.product_id,
                user_id=line.user_id,
                name=line.name,
                options=list(line.options),
                unit_price_minor=line.unit_price_minor,
                quantity=line.quantity,
                line_total_minor=line.line_total_minor,
            )
            for line in order.lines
        ],
        payments=[
            OrderPaymentView(
                user_id=payment.user_id,
                display_name=payment.display_name,
                method=payment.method.value,
                amount_minor=payment.amount_minor,
                refunded_minor=payment.refunded_minor,
                status=payment.status.value,
                reference=payment.reference,
            )
            for payment in order.payments
        ],
        tracking=None
        if tracking is None
        else TrackingView(tracking.carrier, tracking.tracking_number, tracking.url),
        history=[
            HistoryView(entry.status.value, entry.at, entry.by_role.value, entry.reason)
            for entry in order.history
        ],
        teamcart_id=order.cart_id,
        created_at=order.created_at,
        version=order.version,
        my_amount_minor=None if mine is None else mine.amount_minor,
        my_refunded_minor=None if mine is None else mine.refunded_minor,
    )


class RefundView(msgspec.Struct):
    user_id: str
    amount_minor: int


class OrderPayload(msgspec.Struct):
    """An order event's outbox payload: the event's name and version, the order as of that
    version, the refund it was (for ``order_refunded``) and who made the change."""

    event: str
    version: int
    order: OrderView
    refund: RefundView | None
    by_role: str


_encoder = msgspec.json.Encoder()


def _by_role(event: DomainEvent, order: Order) -> str:
    if isinstance(event, OrderMoved | OrderRefunded):
        return event.by_role
    if isinstance(event, OrderPlaced):
        return "host" if order.kind.value == "group" else "buyer"
    return "system"


def order_payloads(events: Sequence[DomainEvent], order: Order) -> list[str]:
    """Each event's payload, with the order's view stamped with that event's version (a
    command's events are all of one order; its view is the one after the command)."""
    view = order_view(order)
    return [
        _encoder.encode(
            OrderPayload(
                event=event.name,
                version=event.aggregate_version,
                order=msgspec.structs.replace(view, version=event.aggregate_version),
                refund=RefundView(event.user_id, event.amount_minor)
                if isinstance(event, OrderRefunded)
                else None,
                by_role=_by_role(event, order),
            )
        ).decode()
        for event in events
    ]


def event_payloads(events: Sequence[DomainEvent], aggregate: TeamCart | Order | None) -> list[str]:
    """The unit of work's payloads: the projection's for carts, the order feed's for orders."""
    if isinstance(aggregate, Order):
        return order_payloads(events, aggregate)
    return cart_payloads(events, aggregate)
