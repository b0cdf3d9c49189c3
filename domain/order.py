"""The Order aggregate: what a confirmed TeamCart became.

An Order is created by ``TeamCart.confirm`` from the cart's frozen quote: its lines (copied from
the cart's items), its totals, one payment record per member who owed money, and the delivery
address. It starts ``placed``; fulfilment (``preparing``, ``out_for_delivery``, ``delivered``)
and cancellation come with later issues. Like the cart, it keeps a ``version`` and a list of
pending events; ``Order.place`` records ``OrderPlaced`` as version 1, and the plain constructor
rebuilds an order from storage without recording anything.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum
from types import MappingProxyType
from urllib.parse import quote

from domain.errors import (
    IllegalTransition,
    InvalidAddress,
    InvalidRefund,
    MayNotCancel,
    OrderNotCancellable,
    OrderNotPayable,
    PaymentNotRefundable,
    RefundExceedsPaid,
    TrackingRequired,
)
from domain.events import (
    ORDER_MOVES,
    OrderAwaitingPayment,
    OrderEvent,
    OrderPaymentUpdated,
    OrderPlaced,
    OrderRefunded,
)
from domain.money import exponent, is_whole_number
from domain.payments import PaymentMethod, PaymentStatus
from domain.pricing import Totals

_ADDRESS_FIELD_MAX = 200
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_SERIAL_BITS = 25  # five base-32 characters
_SCRAMBLE = 0x1C8E_F3B5  # odd: multiplying by it permutes the 25-bit serials
_MASK = (1 << _SERIAL_BITS) - 1


def order_number(day: date, serial: int) -> str:
    """``TC-YYYYMMDD-XXXXX``: the day, and five Crockford base-32 characters that a
    permutation of the serial (a database sequence: never reused) spells, so consecutive
    orders don't read as a count of the store's sales. Distinct serials below 2**25 give
    distinct numbers; past that, the day tells them apart."""
    if serial < 0:
        raise ValueError("an order serial is never negative")
    scrambled = (serial * _SCRAMBLE) & _MASK
    characters = "".join(
        _CROCKFORD[(scrambled >> shift) & 31] for shift in range(_SERIAL_BITS - 5, -1, -5)
    )
    return f"TC-{day:%Y%m%d}-{characters}"


class OrderStatus(StrEnum):
    AWAITING_PAYMENT = "awaiting_payment"  # single-payer, until paid
    PAYMENT_FAILED = "payment_failed"  # single-payer; the buyer may pay again
    PLACED = "placed"
    ACCEPTED = "accepted"
    PREPARING = "preparing"
    OUT_FOR_DELIVERY = "out_for_delivery"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class OrderKind(StrEnum):
    GROUP = "group"  # a confirmed TeamCart: one payment per member
    SINGLE = "single"  # one buyer's checkout


class Actor(StrEnum):
    """Who moved an order, as its history names them."""

    HOST = "host"
    BUYER = "buyer"
    STAFF = "staff"
    ADMIN = "admin"
    SYSTEM = "system"


_S = OrderStatus
TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = MappingProxyType(
    {
        _S.AWAITING_PAYMENT: frozenset({_S.PLACED, _S.PAYMENT_FAILED}),
        _S.PAYMENT_FAILED: frozenset({_S.AWAITING_PAYMENT, _S.PLACED}),
        _S.PLACED: frozenset({_S.ACCEPTED, _S.REJECTED}),
        _S.ACCEPTED: frozenset({_S.PREPARING}),
        _S.PREPARING: frozenset({_S.OUT_FOR_DELIVERY, _S.SHIPPED}),
        _S.OUT_FOR_DELIVERY: frozenset({_S.DELIVERED}),
        _S.SHIPPED: frozenset({_S.DELIVERED}),
        _S.DELIVERED: frozenset(),
        _S.REJECTED: frozenset(),
        _S.CANCELLED: frozenset(),
    }
)
"""Where an order may go from each status (cancelling aside: see ``CANCELLABLE``)."""

MOVED_BY: Mapping[OrderStatus, frozenset[Actor]] = MappingProxyType(
    {
        _S.PLACED: frozenset({Actor.SYSTEM}),  # the single-payer's payment arrived
        _S.PAYMENT_FAILED: frozenset({Actor.SYSTEM}),
        _S.AWAITING_PAYMENT: frozenset({Actor.SYSTEM, Actor.BUYER}),  # paying again
        **{
            status: frozenset({Actor.STAFF, Actor.ADMIN})
            for status in (
                _S.ACCEPTED,
                _S.REJECTED,
                _S.PREPARING,
                _S.OUT_FOR_DELIVERY,
                _S.SHIPPED,
                _S.DELIVERED,
            )
        },
    }
)
"""Who may make each move: fulfilment is the store's (its staff, or an admin)."""

CANCELLABLE: Mapping[Actor, frozenset[OrderStatus]] = MappingProxyType(
    {
        Actor.HOST: frozenset({_S.PLACED}),
        Actor.BUYER: frozenset({_S.PLACED, _S.AWAITING_PAYMENT}),
        Actor.STAFF: frozenset({_S.PLACED, _S.ACCEPTED, _S.PREPARING}),
        Actor.ADMIN: frozenset({_S.AWAITING_PAYMENT, _S.PLACED, _S.ACCEPTED, _S.PREPARING}),
        # An unpaid single-payer order whose checkout expired or payment window passed.
        Actor.SYSTEM: frozenset({_S.AWAITING_PAYMENT, _S.PAYMENT_FAILED}),
    }
)
"""Who may cancel in which status: the customer until the store accepts it, the store until
it leaves the kitchen."""

COUNTED_AS_PAID: frozenset[PaymentStatus] = frozenset(
    {PaymentStatus.PAID_ONLINE, PaymentStatus.WON}
)
"""An online payment that holds the customer's money: only these may be refunded. A payment
under dispute, lost, or refunded in full is not counted as paid."""

DISPUTE_RANK: Mapping[PaymentStatus, int] = MappingProxyType(
    {PaymentStatus.DISPUTED: 1, PaymentStatus.WON: 2, PaymentStatus.LOST: 2}
)
"""A dispute's notices may arrive in any order: a closed dispute is never reopened by a late
``created``."""

CARRIER_TRACKING_URLS: Mapping[str, str] = MappingProxyType(
    {
        "ups": "https://www.ups.com/track?tracknum={}",
        "usps": "https://tools.usps.com/go/TrackConfirmAction?tLabels={}",
        "fedex": "https://www.fedex.com/fedextrack/?trknbr={}",
        "dhl": "https://www.dhl.com/global-en/home/tracking.html?tracking-id={}",
    }
)


@dataclass(frozen=True, slots=True)
class Tracking:
    carrier: str
    tracking_number: str
    url: str | None

    @classmethod
    def of(cls, carrier: str | None, tracking_number: str | None) -> "Tracking":
        carrier = (carrier or "").strip()
        number = (tracking_number or "").strip()
        if not carrier:
            raise TrackingRequired("A shipped order needs its carrier.", field="carrier")
        if not number:
            raise TrackingRequired("A shipped order needs its tracking number.")
        template = CARRIER_TRACKING_URLS.get(carrier.lower())
        return cls(carrier, number, template.format(quote(number)) if template else None)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    status: OrderStatus
    at: datetime
    by_role: Actor
    reason: str | None = None


def _clean_address_field(field: str, value: object, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise InvalidAddress(f"The address's {field} must be text.", field=field)
    cleaned = value.strip()
    if not cleaned:
        if required:
            raise InvalidAddress(f"The address needs a {field}.", field=field)
        return None
    if len(cleaned) > _ADDRESS_FIELD_MAX:
        raise InvalidAddress(
            f"The address's {field} is longer than {_ADDRESS_FIELD_MAX} characters.", field=field
        )
    return cleaned


@dataclass(frozen=True, slots=True)
class DeliveryAddress:
    """Where the order goes. Fields are trimmed; ``country`` is an ISO 3166 alpha-2 code."""

    line1: str
    line2: str | None
    city: str
    postal_code: str
    country: str

    def __post_init__(self) -> None:
        for field in ("line1", "line2", "city", "postal_code"):
            cleaned = _clean_address_field(field, getattr(self, field), required=field != "line2")
            object.__setattr__(self, field, cleaned)
        country = self.country.strip().upper() if isinstance(self.country, str) else ""
        if len(country) != 2 or not ("A" <= country[0] <= "Z" and "A" <= country[1] <= "Z"):
            raise InvalidAddress("The country must be a two-letter code.", field="country")
        object.__setattr__(self, "country", country)


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One cart item as ordered, priced as it was when it was added to the cart."""

    product_id: str
    name: str
    options: tuple[str, ...]
    unit_price_minor: int
    quantity: int
    line_total_minor: int
    user_id: str

    def __post_init__(self) -> None:
        if self.line_total_minor != self.unit_price_minor * self.quantity:
            raise ValueError("line total must be unit price times quantity")


@dataclass(frozen=True, slots=True)
class OrderPayment:
    """What one member paid or will pay into the order, and how."""

    user_id: str
    method: PaymentMethod
    amount_minor: int
    status: PaymentStatus
    reference: str | None  # the PaymentIntent id for online payments
    display_name: str = ""
    refunded_minor: int = 0  # asked of Stripe or reported by it, failed refunds aside
    checkout_session_id: str | None = None  # a single-payer paying on Stripe Checkout

    @property
    def refundable_minor(self) -> int:
        """What may still be given back: paid online and held as paid, less refunds."""
        if self.method is not PaymentMethod.ONLINE or self.status not in COUNTED_AS_PAID:
            return 0
        return max(0, self.amount_minor - self.refunded_minor)


class Order:
    """An order: new ones come from ``Order.place``, stored ones from ``Order(...)``.

    Every change is one method that checks the rule, changes the order, bumps ``version`` by
    one and records one event: ``move`` (the state machine, ``TRANSITIONS``), ``cancel``
    (``CANCELLABLE``), ``refund`` (a partial refund asked for by the store),
    ``note_refunded`` (what Stripe reports refunded, whoever asked) and
    ``note_dispute``."""

    def __init__(
        self,
        *,
        id: str,
        number: str,
        cart_id: str | None,
        store_id: str,
        currency: str,
        host_user_id: str,
        lines: Iterable[OrderLine],
        totals: Totals,
        payments: Iterable[OrderPayment],
        delivery_address: DeliveryAddress,
        status: OrderStatus,
        created_at: datetime,
        version: int,
        coupon_code: str | None = None,
        kind: OrderKind = OrderKind.GROUP,
        store_name: str = "",
        history: Iterable[HistoryEntry] = (),
        tracking: Tracking | None = None,
    ) -> None:
        self.id = id
        self.number = number
        self.cart_id = cart_id
        self.store_id = store_id
        self.currency = currency
        self.host_user_id = host_user_id
        self.lines: tuple[OrderLine, ...] = tuple(lines)
        self.totals = totals
        self.payments: tuple[OrderPayment, ...] = tuple(payments)
        self.delivery_address = delivery_address
        self.status = status
        self.created_at = created_at
        self.version = version
        self.coupon_code = coupon_code
        self.kind = kind
        self.store_name = store_name
        self.history: tuple[HistoryEntry, ...] = tuple(history)
        self.tracking = tracking
        self._pending_events: list[OrderEvent] = []

    @classmethod
    def place(
        cls,
        *,
        order_id: str,
        number: str,
        cart_id: str,
        store_id: str,
        currency: str,
        host_user_id: str,
        lines: Iterable[OrderLine],
        totals: Totals,
        payments: Iterable[OrderPayment],
        delivery_address: DeliveryAddress,
        coupon_code: str | None,
        now: datetime,
        store_name: str = "",
    ) -> "Order":
        """A new order in status ``placed``, with ``OrderPlaced`` recorded as version 1."""
        exponent(currency)
        if not number.strip():
            raise ValueError("an order needs a number")
        order = cls(
            id=order_id,
            number=number,
            cart_id=cart_id,
            store_id=store_id,
            currency=currency,
            host_user_id=host_user_id,
            lines=lines,
            totals=totals,
            payments=payments,
            delivery_address=delivery_address,
            status=OrderStatus.PLACED,
            created_at=now,
            version=0,
            coupon_code=coupon_code,
            store_name=store_name,
            history=[HistoryEntry(OrderStatus.PLACED, now, Actor.HOST)],
        )
        if sum(line.line_total_minor for line in order.lines) != totals.subtotal_minor:
            raise ValueError("the lines must add up to the subtotal")
        if sum(payment.amount_minor for payment in order.payments) != totals.total_minor:
            raise ValueError("the payments must add up to the total")
        order.version = 1
        order._pending_events.append(order._placed_event(now))
        return order

    @classmethod
    def start_single(
        cls,
        *,
        order_id: str,
        number: str,
        store_id: str,
        store_name: str,
        currency: str,
        buyer_id: str,
        buyer_name: str,
        lines: Iterable[OrderLine],
        totals: Totals,
        delivery_address: DeliveryAddress,
        now: datetime,
    ) -> "Order":
        """A single-payer order, ``awaiting_payment`` (version 1): one online payment of the
        whole total by the buyer, pending until Stripe reports it (``record_payment``)."""
        exponent(currency)
        order = cls(
            id=order_id,
            number=number,
            cart_id=None,
            store_id=store_id,
            currency=currency,
            host_user_id=buyer_id,
            lines=lines,
            totals=totals,
            payments=[
                OrderPayment(
                    buyer_id,
                    PaymentMethod.ONLINE,
                    totals.total_minor,
                    PaymentStatus.PENDING,
                    None,
                    buyer_name,
                )
            ],
            delivery_address=delivery_address,
            status=OrderStatus.AWAITING_PAYMENT,
            created_at=now,
            version=1,
            kind=OrderKind.SINGLE,
            store_name=store_name,
            history=[HistoryEntry(OrderStatus.AWAITING_PAYMENT, now, Actor.BUYER)],
        )
        if sum(line.line_total_minor for line in order.lines) != totals.subtotal_minor:
            raise ValueError("the lines must add up to the subtotal")
        order._pending_events.append(
            OrderAwaitingPayment(
                order_id=order_id,
                version=1,
                status=OrderStatus.AWAITING_PAYMENT.value,
                by_role=Actor.BUYER.value,
                reason=None,
                at=now,
            )
        )
        return order

    def _placed_event(self, now: datetime) -> OrderPlaced:
        return OrderPlaced(
            order_id=self.id,
            version=self.version,
            number=self.number,
            cart_id=self.cart_id,
            store_id=self.store_id,
            currency=self.currency,
            total_minor=self.totals.total_minor,
            host_user_id=self.host_user_id,
            participant_user_ids=self.participant_user_ids,
            placed_at=now,
        )

    # --- a single-payer's payment ---------------------------------------------------------

    @property
    def awaits_payment(self) -> bool:
        return self.status in (OrderStatus.AWAITING_PAYMENT, OrderStatus.PAYMENT_FAILED)

    def start_payment(
        self, intent_id: str | None, now: datetime, checkout_session_id: str | None = None
    ) -> None:
        """The buyer pays (again) with this PaymentIntent, or on this Checkout Session (whose
        intent Stripe may create only once it is paid): a failed order awaits payment again,
        and the payment names the attempt."""
        if self.kind is not OrderKind.SINGLE or not self.awaits_payment:
            raise OrderNotPayable(f"The order is {self.status}: it takes no payment now.")
        payment = self.payments[0]
        if self.status is OrderStatus.PAYMENT_FAILED:
            self.status = OrderStatus.AWAITING_PAYMENT
            self._moved(Actor.BUYER, now, None)
        if (payment.reference, payment.checkout_session_id) != (intent_id, checkout_session_id):
            self.payments = (
                replace(
                    payment,
                    reference=intent_id,
                    checkout_session_id=checkout_session_id,
                    status=PaymentStatus.PENDING,
                ),
            )
            self.version += 1
            self._pending_events.append(
                OrderPaymentUpdated(
                    order_id=self.id,
                    version=self.version,
                    user_id=payment.user_id,
                    status=PaymentStatus.PENDING.value,
                    at=now,
                )
            )

    def record_payment(
        self, intent_id: str, amount_minor: int, currency: str, now: datetime
    ) -> bool:
        """Stripe captured ``amount_minor`` with ``intent_id`` for this single-payer order:
        ``True`` when that pays it (it is ``placed``) or had paid it already; ``False`` when
        the money must go back — the order no longer takes it (cancelled, paid by another
        intent) or it isn't what is owed. Never marks paid a wrong amount or currency."""
        if self.kind is not OrderKind.SINGLE:
            raise ValueError("group orders are paid through their cart")
        payment = self.payments[0]
        if payment.reference == intent_id and payment.status in COUNTED_AS_PAID:
            return True  # told again
        if not self.awaits_payment:
            return False
        if currency != self.currency or amount_minor != payment.amount_minor:
            return False
        self.payments = (replace(payment, reference=intent_id, status=PaymentStatus.PAID_ONLINE),)
        self.status = OrderStatus.PLACED
        self._moved(Actor.SYSTEM, now, None)
        return True

    def expire_checkout(self, checkout_session_id: str, now: datetime) -> bool:
        """The buyer's Checkout Session expired unpaid: the order is cancelled (its stock is
        to go back). An older session's expiry, or one after the payment, changes nothing."""
        payment = self.payments[0]
        if not self.awaits_payment or payment.checkout_session_id != checkout_session_id:
            return False
        self.status = OrderStatus.CANCELLED
        self._moved(Actor.SYSTEM, now, "the checkout expired unpaid")
        return True

    def payment_failed(self, intent_id: str, now: datetime) -> bool:
        """The buyer's attempt with ``intent_id`` failed: ``payment_failed`` (they may pay
        again). A late failure of an older attempt changes nothing."""
        payment = self.payments[0]
        if self.status is not OrderStatus.AWAITING_PAYMENT or payment.reference != intent_id:
            return False
        self.payments = (replace(payment, status=PaymentStatus.FAILED),)
        self.status = OrderStatus.PAYMENT_FAILED
        self._moved(Actor.SYSTEM, now, None)
        return True

    @property
    def participant_user_ids(self) -> tuple[str, ...]:
        """Who may read the order: the host, then every member who paid into it."""
        participants = dict.fromkeys([self.host_user_id])
        participants.update(dict.fromkeys(payment.user_id for payment in self.payments))
        return tuple(participants)

    def payment_of(self, user_id: str) -> OrderPayment | None:
        return next((p for p in self.payments if p.user_id == user_id), None)

    def allowed_moves(self, by: Actor) -> tuple[OrderStatus, ...]:
        """Where ``by`` may move the order from its status, in the table's order."""
        return tuple(
            status
            for status in OrderStatus
            if status in TRANSITIONS[self.status] and by in MOVED_BY.get(status, frozenset())
        )

    # --- fulfilment -----------------------------------------------------------------------

    def move(
        self,
        to: OrderStatus,
        by: Actor,
        now: datetime,
        *,
        carrier: str | None = None,
        tracking_number: str | None = None,
        reason: str | None = None,
    ) -> None:
        """One step of ``TRANSITIONS``, by someone ``MOVED_BY`` allows; ``shipped`` needs a
        carrier and a tracking number (``out_for_delivery`` may carry them too)."""
        allowed = self.allowed_moves(by)
        if to not in allowed:
            raise IllegalTransition(self.status.value, to.value, [s.value for s in allowed])
        tracking = self.tracking
        if to is OrderStatus.SHIPPED or (
            to is OrderStatus.OUT_FOR_DELIVERY and (carrier or tracking_number)
        ):
            tracking = Tracking.of(carrier, tracking_number)
        self.status, self.tracking = to, tracking
        self._moved(by, now, reason)

    def cancel(self, by: Actor, reason: str | None, now: datetime) -> list[OrderPayment]:
        """Cancel (``CANCELLABLE``): every online payment still held is to be refunded in full;
        those payments are returned, each counted refunded from now on."""
        if by not in CANCELLABLE:
            raise MayNotCancel()
        if self.status not in CANCELLABLE[by]:
            when = ", ".join(sorted(s.value for s in CANCELLABLE[by]))
            raise OrderNotCancellable(
                f"The order is {self.status}; you may cancel it only while it is {when}."
            )
        owed = [p for p in self.payments if p.refundable_minor > 0]
        self.payments = tuple(
            replace(p, refunded_minor=p.amount_minor, status=PaymentStatus.REFUNDED)
            if p in owed
            else p
            for p in self.payments
        )
        self.status = OrderStatus.CANCELLED
        self._moved(by, now, reason)
        return owed

    def _moved(self, by: Actor, now: datetime, reason: str | None) -> None:
        self.history += (HistoryEntry(self.status, now, by, reason),)
        self.version += 1
        if self.status is OrderStatus.PLACED:  # a single-payer's payment arrived
            self._pending_events.append(self._placed_event(now))
            return
        self._pending_events.append(
            ORDER_MOVES[self.status.value](
                order_id=self.id,
                version=self.version,
                status=self.status.value,
                by_role=by.value,
                reason=reason,
                at=now,
            )
        )

    # --- money given back -----------------------------------------------------------------

    def refund(
        self, user_id: str | None, amount_minor: int, by: Actor, now: datetime
    ) -> OrderPayment:
        """A partial refund of one member's online payment (``user_id``; a single-payer
        order's one payment when ``None``), never more than paid less earlier refunds. The
        payment as it was is returned: its reference is the intent to refund."""
        if not is_whole_number(amount_minor) or amount_minor <= 0:
            raise InvalidRefund()
        if user_id is None and len(self.payments) == 1:
            user_id = self.payments[0].user_id
        payment = None if user_id is None else self.payment_of(user_id)
        if payment is None:
            raise PaymentNotRefundable("Name the member whose payment to refund (user_id).")
        if payment.method is not PaymentMethod.ONLINE or payment.reference is None:
            raise PaymentNotRefundable(
                "That payment is cash on delivery: nothing to refund online."
            )
        if payment.status is PaymentStatus.REFUNDED:
            raise RefundExceedsPaid(0, "That payment was refunded in full already.")
        if payment.status not in COUNTED_AS_PAID:
            raise PaymentNotRefundable(f"That payment is {payment.status}: it isn't held as paid.")
        if amount_minor > payment.refundable_minor:
            raise RefundExceedsPaid(
                payment.refundable_minor,
                f"At most {payment.refundable_minor} (minor units) is left to refund on that "
                f"payment of {payment.amount_minor}.",
            )
        self._refunded(payment, payment.refunded_minor + amount_minor, by, now)
        return payment

    def note_refunded(self, intent_id: str, refunded_minor: int, now: datetime) -> bool:
        """What has been refunded on the payment of ``intent_id``, as Stripe and our own
        requests say (``refunded_minor`` ≥ 0): kept if it differs, whoever started it."""
        payment = next((p for p in self.payments if p.reference == intent_id), None)
        if payment is None:
            return False
        refunded_minor = max(0, min(refunded_minor, payment.amount_minor))
        if refunded_minor == payment.refunded_minor:
            return False
        self._refunded(payment, refunded_minor, Actor.SYSTEM, now)
        return True

    def _refunded(
        self, payment: OrderPayment, refunded_minor: int, by: Actor, now: datetime
    ) -> None:
        status = payment.status
        if refunded_minor >= payment.amount_minor and status in COUNTED_AS_PAID:
            status = PaymentStatus.REFUNDED
        elif refunded_minor < payment.amount_minor and status is PaymentStatus.REFUNDED:
            status = PaymentStatus.PAID_ONLINE  # a refund Stripe reports failed
        changed = replace(payment, refunded_minor=refunded_minor, status=status)
        self.payments = tuple(changed if p is payment else p for p in self.payments)
        self.version += 1
        self._pending_events.append(
            OrderRefunded(
                order_id=self.id,
                version=self.version,
                user_id=payment.user_id,
                amount_minor=refunded_minor - payment.refunded_minor,
                refunded_minor=refunded_minor,
                by_role=by.value,
                at=now,
            )
        )

    def note_dispute(self, intent_id: str, status: PaymentStatus, now: datetime) -> bool:
        """A dispute on the payment of ``intent_id`` opened (``DISPUTED``) or closed (``WON``
        or ``LOST``); notices arriving late never reopen a closed one."""
        if status not in DISPUTE_RANK:
            raise ValueError(f"{status} is not a dispute status")
        payment = next((p for p in self.payments if p.reference == intent_id), None)
        if payment is None or DISPUTE_RANK.get(payment.status, 0) >= DISPUTE_RANK[status]:
            return False
        changed = replace(payment, status=status)
        self.payments = tuple(changed if p is payment else p for p in self.payments)
        self.version += 1
        self._pending_events.append(
            OrderPaymentUpdated(
                order_id=self.id,
                version=self.version,
                user_id=payment.user_id,
                status=status.value,
                at=now,
            )
        )
        return True

    def pull_events(self) -> list[OrderEvent]:
        """Hand over the events recorded since the last call (for the outbox)."""
        events, self._pending_events = self._pending_events, []
        return events
