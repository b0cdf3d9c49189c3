"""The Order aggregate and the delivery address."""

import pytest

from domain import errors
from domain.order import (
    DeliveryAddress,
    Order,
    OrderLine,
    OrderPayment,
    OrderStatus,
)
from domain.payments import PaymentMethod, PaymentStatus
from domain.pricing import Totals

from .builders import NOW, an_address, an_id

LINE = OrderLine("p", "Pizza", ("Large",), 1300, 2, 2600, "ana")
TOTALS = Totals(2600, 500, 0, 0, 0, 3100)
PAYMENT = OrderPayment("ana", PaymentMethod.COD, 3100, PaymentStatus.COD_COMMITTED, None)


def _place(**overrides: object) -> Order:
    arguments: dict[str, object] = {
        "order_id": an_id(),
        "number": "TC-1",
        "cart_id": an_id(),
        "store_id": an_id(),
        "currency": "USD",
        "host_user_id": "host",
        "lines": [LINE],
        "totals": TOTALS,
        "payments": [PAYMENT],
        "delivery_address": an_address(),
        "coupon_code": None,
        "now": NOW,
    }
    arguments.update(overrides)
    return Order.place(**arguments)  # type: ignore[arg-type]


def test_address_is_trimmed_and_normalised() -> None:
    address = DeliveryAddress(" 1 Main St ", "  ", " Lyon ", " 69001 ", " fr ")
    assert address == DeliveryAddress("1 Main St", None, "Lyon", "69001", "FR")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("line1", ""),
        ("city", "   "),
        ("postal_code", ""),
        ("line1", "x" * 201),
        ("line2", 5),
        ("country", "FRA"),
        ("country", "F1"),
        ("country", ""),
    ],
)
def test_address_fields_are_checked(field: str, value: object) -> None:
    fields: dict[str, object] = {
        "line1": "1 Main St",
        "line2": None,
        "city": "Lyon",
        "postal_code": "69001",
        "country": "FR",
    }
    fields[field] = value
    with pytest.raises(errors.InvalidAddress) as caught:
        DeliveryAddress(**fields)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_address"
    assert caught.value.field == field


def test_place_records_order_placed_as_version_1() -> None:
    order = _place()
    assert (order.status, order.version) == (OrderStatus.PLACED, 1)
    [event] = order.pull_events()
    assert (event.name, event.version, event.order_id) == ("order_placed", 1, order.id)
    assert order.pull_events() == []


def test_participants_are_the_host_and_the_payers_once_each() -> None:
    payments = [
        OrderPayment("host", PaymentMethod.COD, 100, PaymentStatus.COD_COMMITTED, None),
        OrderPayment("ana", PaymentMethod.ONLINE, 3000, PaymentStatus.PAID_ONLINE, "pi"),
    ]
    assert _place(payments=payments).participant_user_ids == ("host", "ana")


def test_the_lines_and_payments_must_add_up() -> None:
    with pytest.raises(ValueError, match="lines must add up"):
        _place(totals=Totals(2000, 500, 0, 0, 0, 2500))
    with pytest.raises(ValueError, match="payments must add up"):
        _place(payments=[])
    with pytest.raises(ValueError, match="number"):
        _place(number=" ")
    with pytest.raises(errors.UnknownCurrency):
        _place(currency="ABC")


def test_a_line_total_is_unit_price_times_quantity() -> None:
    with pytest.raises(ValueError, match="line total"):
        OrderLine("p", "Pizza", (), 1300, 2, 2599, "ana")


def test_every_status_of_the_contract_exists() -> None:
    assert {status.value for status in OrderStatus} == {
        "awaiting_payment",
        "placed",
        "accepted",
        "preparing",
        "out_for_delivery",
        "shipped",
        "delivered",
        "rejected",
        "cancelled",
        "payment_failed",
    }


def test_a_restored_order_records_nothing() -> None:
    order = Order(
        id="o",
        number="TC-1",
        cart_id="c",
        store_id="s",
        currency="USD",
        host_user_id="host",
        lines=[LINE],
        totals=TOTALS,
        payments=[PAYMENT],
        delivery_address=an_address(),
        status=OrderStatus.PREPARING,
        created_at=NOW,
        version=3,
    )
    assert order.pull_events() == []
    assert order.participant_user_ids == ("host", "ana")
