"""Domain events: the facts the aggregates record, in the past tense.

Each TeamCart event carries the cart's id and ``version``, the aggregate version *after* the
event: a cart's events are numbered 1, 2, 3, ... without gaps (``CartOpened`` is 1), so the
real-time projection can tell a duplicate (version already applied) from a gap (a missed event).
Order events do the same for an order.

Every event class has a stable wire ``name`` (``member_joined``, ``cod_committed``, ...) used in
the outbox table and the WebSocket protocol, and round-trips through JSON-able dicts with
``event_to_dict`` / ``event_from_dict`` (times as ISO 8601 strings, tuples as lists).

Events that change one member's payment derive from ``MemberPaymentEvent`` so the projection can
publish them as the protocol's ``member_payment_updated``.

Why one module of this length: every event of every aggregate, with their wire names, in
one registry.
"""

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import ClassVar, cast

from domain.pricing import Quote, Totals


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """Base of every event. ``name`` is the wire name, ``aggregate_type`` the outbox's."""

    name: ClassVar[str]
    aggregate_type: ClassVar[str]

    @property
    def aggregate_id(self) -> str:
        raise NotImplementedError

    @property
    def aggregate_version(self) -> int:
        raise NotImplementedError


# --- TeamCart ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CartEvent(DomainEvent):
    """Something that happened to one TeamCart; ``version`` is the cart's version after it."""

    aggregate_type: ClassVar[str] = "teamcart"

    cart_id: str
    version: int

    @property
    def aggregate_id(self) -> str:
        return self.cart_id

    @property
    def aggregate_version(self) -> int:
        return self.version


@dataclass(frozen=True, slots=True)
class CartOpened(CartEvent):
    name: ClassVar[str] = "cart_opened"

    store_id: str
    currency: str
    host_user_id: str
    host_display_name: str
    invite_code: str
    deadline: datetime | None
    opened_at: datetime


@dataclass(frozen=True, slots=True)
class MemberJoined(CartEvent):
    name: ClassVar[str] = "member_joined"

    user_id: str
    display_name: str
    joined_at: datetime


@dataclass(frozen=True, slots=True)
class MemberLeft(CartEvent):
    """A guest left, or the host removed them (``removed_by_host``); their items went too."""

    name: ClassVar[str] = "member_left"

    user_id: str
    removed_by_host: bool
    removed_item_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ItemAdded(CartEvent):
    name: ClassVar[str] = "item_added"

    item_id: str
    user_id: str
    product_id: str
    product_name: str
    unit_price_minor: int
    quantity: int
    options: tuple[str, ...]
    line_total_minor: int
    added_at: datetime


@dataclass(frozen=True, slots=True)
class ItemQuantityChanged(CartEvent):
    name: ClassVar[str] = "item_quantity_changed"

    item_id: str
    user_id: str
    quantity: int
    line_total_minor: int


@dataclass(frozen=True, slots=True)
class ItemRemoved(CartEvent):
    name: ClassVar[str] = "item_removed"

    item_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class MemberReadyChanged(CartEvent):
    """A member's lobby flag changed: by their own choice or because they changed items."""

    name: ClassVar[str] = "member_ready_changed"

    user_id: str
    ready: bool


@dataclass(frozen=True, slots=True)
class CartLocked(CartEvent):
    """The host locked the cart (or its deadline did, ``by_deadline``) and it was priced."""

    name: ClassVar[str] = "cart_locked"

    locked_at: datetime
    quote_version: int
    quote: Quote
    by_deadline: bool


@dataclass(frozen=True, slots=True)
class CartUnlocked(CartEvent):
    """Back to open: the quote, tip and coupon are gone and every payment is reset to none."""

    name: ClassVar[str] = "cart_unlocked"


@dataclass(frozen=True, slots=True)
class TipSet(CartEvent):
    name: ClassVar[str] = "tip_set"

    tip_minor: int
    quote_version: int
    quote: Quote


@dataclass(frozen=True, slots=True)
class CouponApplied(CartEvent):
    name: ClassVar[str] = "coupon_applied"

    code: str
    quote_version: int
    quote: Quote


@dataclass(frozen=True, slots=True)
class CouponRemoved(CartEvent):
    name: ClassVar[str] = "coupon_removed"

    code: str
    quote_version: int
    quote: Quote


@dataclass(frozen=True, slots=True)
class InviteRotated(CartEvent):
    """The host replaced the invite code: the old link no longer lets anyone in."""

    name: ClassVar[str] = "invite_rotated"

    invite_code: str


@dataclass(frozen=True, slots=True)
class PaymentModeSet(CartEvent):
    """Who pays: ``split`` (each their share) or ``host_pays``."""

    name: ClassVar[str] = "payment_mode_set"

    mode: str


@dataclass(frozen=True, slots=True)
class AllowanceSet(CartEvent):
    """The host pays up to this much of each guest's share (``None``: no allowance)."""

    name: ClassVar[str] = "allowance_set"

    amount_minor: int | None


@dataclass(frozen=True, slots=True)
class SpendingLimitSet(CartEvent):
    name: ClassVar[str] = "spending_limit_set"

    amount_minor: int | None


@dataclass(frozen=True, slots=True)
class MemberCovered(CartEvent):
    """The host took over a guest's share."""

    name: ClassVar[str] = "member_covered"

    user_id: str


@dataclass(frozen=True, slots=True)
class CartRequoted(CartEvent):
    """A locked cart priced again (who pays changed, a member was covered or removed): what
    each member pays is in the quote; nobody who paid or committed pays a different amount."""

    name: ClassVar[str] = "cart_requoted"

    quote_version: int
    quote: Quote
    reason: str


@dataclass(frozen=True, slots=True)
class MemberPaymentEvent(CartEvent):
    """Base of the events that change one member's payment (``member_payment_updated``)."""

    user_id: str


@dataclass(frozen=True, slots=True)
class CodCommitted(MemberPaymentEvent):
    name: ClassVar[str] = "cod_committed"

    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class OnlinePaymentRecorded(MemberPaymentEvent):
    name: ClassVar[str] = "online_payment_recorded"

    amount_minor: int
    currency: str
    payment_intent_id: str


@dataclass(frozen=True, slots=True)
class PaymentAuthorized(MemberPaymentEvent):
    """The member's card is held for their share (capture on confirm)."""

    name: ClassVar[str] = "payment_authorized"

    amount_minor: int
    currency: str
    payment_intent_id: str


@dataclass(frozen=True, slots=True)
class PaymentStarted(MemberPaymentEvent):
    """A member started paying their share online: a PaymentIntent is open for it."""

    name: ClassVar[str] = "payment_started"

    amount_minor: int
    payment_intent_id: str


@dataclass(frozen=True, slots=True)
class PaymentCanceled(MemberPaymentEvent):
    """A member's open PaymentIntent was canceled before it was paid."""

    name: ClassVar[str] = "payment_canceled"

    payment_intent_id: str


@dataclass(frozen=True, slots=True)
class PaymentFailed(MemberPaymentEvent):
    name: ClassVar[str] = "payment_failed"

    payment_intent_id: str


@dataclass(frozen=True, slots=True)
class PaymentRefunded(MemberPaymentEvent):
    """A member's online payment was given back (by us or in the Stripe dashboard)."""

    name: ClassVar[str] = "payment_refunded"

    amount_minor: int
    payment_intent_id: str


@dataclass(frozen=True, slots=True)
class PaymentUnderReview(MemberPaymentEvent):
    """The card holder disputed a member's payment; an operator must look at it."""

    name: ClassVar[str] = "payment_under_review"

    payment_intent_id: str


@dataclass(frozen=True, slots=True)
class CartPaymentsReopened(CartEvent):
    """A ready cart lost a settled payment (refund or dispute) and is locked again."""

    name: ClassVar[str] = "cart_payments_reopened"


@dataclass(frozen=True, slots=True)
class CartReadyToConfirm(CartEvent):
    """Every member who owes money has committed to COD or paid online."""

    name: ClassVar[str] = "cart_ready_to_confirm"


@dataclass(frozen=True, slots=True)
class CartConverted(CartEvent):
    name: ClassVar[str] = "cart_converted"

    order_id: str
    order_number: str
    converted_at: datetime


@dataclass(frozen=True, slots=True)
class CartCancelled(CartEvent):
    name: ClassVar[str] = "cart_cancelled"

    cancelled_at: datetime


@dataclass(frozen=True, slots=True)
class CartExpired(CartEvent):
    name: ClassVar[str] = "cart_expired"

    expired_at: datetime


# --- Order ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderEvent(DomainEvent):
    """Something that happened to one Order; ``version`` is the order's version after it."""

    aggregate_type: ClassVar[str] = "order"

    order_id: str
    version: int

    @property
    def aggregate_id(self) -> str:
        return self.order_id

    @property
    def aggregate_version(self) -> int:
        return self.version


@dataclass(frozen=True, slots=True)
class OrderPlaced(OrderEvent):
    name: ClassVar[str] = "order_placed"

    number: str
    cart_id: str | None  # None for a single-payer order
    store_id: str
    currency: str
    total_minor: int
    host_user_id: str
    participant_user_ids: tuple[str, ...]
    placed_at: datetime


@dataclass(frozen=True, slots=True)
class OrderMoved(OrderEvent):
    """The order moved along its state machine; each status has its own wire name
    (``order_<status>``), the subclasses below."""

    status: str
    by_role: str
    reason: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class OrderAccepted(OrderMoved):
    name: ClassVar[str] = "order_accepted"


@dataclass(frozen=True, slots=True)
class OrderRejected(OrderMoved):
    name: ClassVar[str] = "order_rejected"


@dataclass(frozen=True, slots=True)
class OrderPreparing(OrderMoved):
    name: ClassVar[str] = "order_preparing"


@dataclass(frozen=True, slots=True)
class OrderOutForDelivery(OrderMoved):
    name: ClassVar[str] = "order_out_for_delivery"


@dataclass(frozen=True, slots=True)
class OrderShipped(OrderMoved):
    name: ClassVar[str] = "order_shipped"


@dataclass(frozen=True, slots=True)
class OrderDelivered(OrderMoved):
    name: ClassVar[str] = "order_delivered"


@dataclass(frozen=True, slots=True)
class OrderCancelled(OrderMoved):
    name: ClassVar[str] = "order_cancelled"


@dataclass(frozen=True, slots=True)
class OrderAwaitingPayment(OrderMoved):
    name: ClassVar[str] = "order_awaiting_payment"


@dataclass(frozen=True, slots=True)
class OrderPaymentFailed(OrderMoved):
    name: ClassVar[str] = "order_payment_failed"


ORDER_MOVES: Mapping[str, type[OrderMoved]] = types.MappingProxyType(
    {
        "accepted": OrderAccepted,
        "rejected": OrderRejected,
        "preparing": OrderPreparing,
        "out_for_delivery": OrderOutForDelivery,
        "shipped": OrderShipped,
        "delivered": OrderDelivered,
        "cancelled": OrderCancelled,
        "awaiting_payment": OrderAwaitingPayment,
        "payment_failed": OrderPaymentFailed,
    }
)
"""The event of a move, by the status the order moved to (to ``placed``, a single-payer's
payment arriving, it is ``OrderPlaced``, as for a group order)."""


@dataclass(frozen=True, slots=True)
class OrderRefunded(OrderEvent):
    """Money went back on one payment: ``amount_minor`` more (less, when Stripe reports a
    refund failed), ``refunded_minor`` in all."""

    name: ClassVar[str] = "order_refunded"

    user_id: str
    amount_minor: int
    refunded_minor: int
    by_role: str
    at: datetime


@dataclass(frozen=True, slots=True)
class OrderPaymentUpdated(OrderEvent):
    """A payment's status changed on its own (a dispute opened or closed)."""

    name: ClassVar[str] = "order_payment_updated"

    user_id: str
    status: str
    at: datetime


# --- wire format ------------------------------------------------------------------------------

EVENT_TYPES: Mapping[str, type[DomainEvent]] = types.MappingProxyType(
    {
        event_type.name: event_type
        for event_type in cast(
            "tuple[type[DomainEvent], ...]",
            (
                CartOpened,
                MemberJoined,
                MemberLeft,
                ItemAdded,
                ItemQuantityChanged,
                ItemRemoved,
                MemberReadyChanged,
                CartLocked,
                CartUnlocked,
                TipSet,
                CouponApplied,
                CouponRemoved,
                InviteRotated,
                PaymentModeSet,
                AllowanceSet,
                SpendingLimitSet,
                MemberCovered,
                CartRequoted,
                CodCommitted,
                OnlinePaymentRecorded,
                PaymentAuthorized,
                PaymentStarted,
                PaymentCanceled,
                PaymentFailed,
                PaymentRefunded,
                PaymentUnderReview,
                CartPaymentsReopened,
                CartReadyToConfirm,
                CartConverted,
                CartCancelled,
                CartExpired,
                OrderPlaced,
                *ORDER_MOVES.values(),
                OrderRefunded,
                OrderPaymentUpdated,
            ),
        )
    }
)
"""Every concrete event class by its wire name."""


def _to_json(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: _to_json(getattr(value, field.name)) for field in dataclasses.fields(value)
        }
    if isinstance(value, Mapping):
        return {str(key): _to_json(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_to_json(item) for item in value]
    return value


def event_to_dict(event: DomainEvent) -> dict[str, object]:
    """The event's fields as a JSON-able dict (the wire name is ``event.name``, not included)."""
    return {field.name: _to_json(getattr(event, field.name)) for field in dataclasses.fields(event)}


def _from_json(hint: object, value: object) -> object:
    if value is None:
        return None
    if hint is datetime or (
        typing.get_origin(hint) is types.UnionType and datetime in typing.get_args(hint)
    ):
        if not isinstance(value, str):
            raise ValueError(f"expected an ISO 8601 string, got {value!r}")
        return datetime.fromisoformat(value)
    if hint is Quote:
        if not isinstance(value, Mapping) or not isinstance(value.get("totals"), Mapping):
            raise ValueError(f"expected a quote object, got {value!r}")
        return Quote(
            totals=Totals(**value["totals"]),
            shares=value.get("shares") or {},
            owes=value.get("owes"),  # None (stored before payment options): the shares
        )
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"expected a list, got {value!r}")
        return tuple(value)
    return value


def event_from_dict(name: str, data: Mapping[str, object]) -> DomainEvent:
    """Rebuild an event from its wire name and ``event_to_dict`` output."""
    try:
        event_type = EVENT_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown event name {name!r}") from None
    hints = typing.get_type_hints(event_type)
    arguments = {
        field.name: _from_json(hints[field.name], data[field.name])
        for field in dataclasses.fields(event_type)
    }
    return event_type(**arguments)
