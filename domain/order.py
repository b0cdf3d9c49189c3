"""The Order aggregate: what a confirmed TeamCart became.

An Order is created by ``TeamCart.confirm`` from the cart's frozen quote: its lines (copied from
the cart's items), its totals, one payment record per member who owed money, and the delivery
address. It starts ``placed``; fulfilment (``preparing``, ``out_for_delivery``, ``delivered``)
and cancellation come with later issues. Like the cart, it keeps a ``version`` and a list of
pending events; ``Order.place`` records ``OrderPlaced`` as version 1, and the plain constructor
rebuilds an order from storage without recording anything.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.errors import InvalidAddress
from domain.events import OrderEvent, OrderPlaced
from domain.money import exponent
from domain.payments import PaymentMethod, PaymentStatus
from domain.pricing import Totals

_ADDRESS_FIELD_MAX = 200


class OrderStatus(StrEnum):
    PLACED = "placed"
    PREPARING = "preparing"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


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


class Order:
    """A placed order: new ones come from ``Order.place``, stored ones from ``Order(...)``."""

    def __init__(
        self,
        *,
        id: str,
        number: str,
        cart_id: str,
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
        )
        if sum(line.line_total_minor for line in order.lines) != totals.subtotal_minor:
            raise ValueError("the lines must add up to the subtotal")
        if sum(payment.amount_minor for payment in order.payments) != totals.total_minor:
            raise ValueError("the payments must add up to the total")
        order.version = 1
        order._pending_events.append(
            OrderPlaced(
                order_id=order.id,
                version=order.version,
                number=order.number,
                cart_id=order.cart_id,
                store_id=order.store_id,
                currency=order.currency,
                total_minor=totals.total_minor,
                host_user_id=order.host_user_id,
                participant_user_ids=order.participant_user_ids,
                placed_at=now,
            )
        )
        return order

    @property
    def participant_user_ids(self) -> tuple[str, ...]:
        """Who may read the order: the host, then every member who paid into it."""
        participants = dict.fromkeys([self.host_user_id])
        participants.update(dict.fromkeys(payment.user_id for payment in self.payments))
        return tuple(participants)

    def pull_events(self) -> list[OrderEvent]:
        """Hand over the events recorded since the last call (for the outbox)."""
        events, self._pending_events = self._pending_events, []
        return events
