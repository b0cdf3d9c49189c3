"""The single-payer cart: items, the checkout's steps (going back before payment), totals
from the TeamCart's pricing, the order it becomes, its payment, and merging a guest's cart."""

from __future__ import annotations

import itertools

import pytest

from domain import errors, events
from domain.checkout import CheckoutState, DeliveryMethod, ShopCart, ShopCartStatus
from domain.order import Order, OrderKind, OrderStatus
from domain.payments import PaymentMethod, PaymentStatus
from domain.pricing import Totals

from .builders import NOW, a_pizza_with_options, a_product, a_store, an_address, an_id

STORE = a_store(delivery_fee_minor=500, tax_rate_bps=1000)


def state_of(cart: ShopCart) -> CheckoutState:
    """(Read through a call: mypy would take the state for the one asserted before.)"""
    return cart.state


def status_of(order: Order) -> OrderStatus:
    return order.status


def a_cart(user: str = "buyer") -> ShopCart:
    return ShopCart.open(an_id(), user, STORE, NOW)


def test_the_same_product_and_options_add_to_one_line() -> None:
    cart = a_cart()
    pizza = a_product(STORE, price_minor=1200)
    first = cart.add_item("i1", pizza, 1, [])
    again = cart.add_item("i2", pizza, 2, [])
    assert again.item_id == first.item_id
    assert [(i.quantity, i.line_total_minor) for i in cart.items.values()] == [(3, 3600)]
    other = a_pizza_with_options(STORE)
    cart.add_item("i3", other, 1, ["Large"])
    assert len(cart.items) == 2
    assert cart.version == 4


@pytest.mark.parametrize("quantity", [0, -1, 100])
def test_quantities_are_one_to_ninety_nine(quantity: int) -> None:
    with pytest.raises(errors.InvalidQuantity):
        a_cart().add_item("i1", a_product(STORE), quantity, [])


def test_a_product_of_another_store_is_refused() -> None:
    with pytest.raises(errors.ProductNotFound):
        a_cart().add_item("i1", a_product(a_store()), 1, [])


def test_the_steps_in_order_and_back_before_payment() -> None:
    cart = a_cart()
    with pytest.raises(errors.EmptyCart):
        cart.set_address(an_address())
    cart.add_item("i1", a_product(STORE, price_minor=2000), 1, [])
    assert cart.state is CheckoutState.CART
    with pytest.raises(errors.CheckoutStepMissing):
        cart.set_delivery(DeliveryMethod.PICKUP)  # no address yet
    with pytest.raises(errors.CheckoutStepMissing):
        cart.checkout(an_id(), "TC-1", "Bea", NOW)
    cart.set_address(an_address())
    assert state_of(cart) is CheckoutState.ADDRESS
    with pytest.raises(errors.CheckoutStepMissing):
        cart.checkout(an_id(), "TC-1", "Bea", NOW)  # delivery not chosen
    cart.set_delivery(DeliveryMethod.DELIVERY)
    assert state_of(cart) is CheckoutState.DELIVERY
    cart.set_address(an_address())  # back
    assert (cart.state, cart.delivery_method) == (CheckoutState.ADDRESS, DeliveryMethod.DELIVERY)
    cart.set_delivery(DeliveryMethod.PICKUP)
    assert state_of(cart) is CheckoutState.DELIVERY


def test_delivery_sets_the_fee_and_the_totals_are_the_teamcarts() -> None:
    cart = a_cart()
    cart.add_item("i1", a_product(STORE, price_minor=1234), 2, [])
    assert cart.totals() == Totals(2468, 500, 247, 0, 0, 3215)  # tax half-even: 246.8 → 247
    cart.set_address(an_address())
    cart.set_delivery(DeliveryMethod.PICKUP)
    assert cart.totals() == Totals(2468, 0, 247, 0, 0, 2715)


def test_checkout_makes_an_order_awaiting_payment_and_closes_the_cart() -> None:
    cart = a_cart()
    cart.add_item("i1", a_product(STORE, price_minor=1000), 2, [])
    cart.set_address(an_address())
    cart.set_delivery(DeliveryMethod.DELIVERY)
    order = cart.checkout("o1", "TC-20261201-AAAAA", "Bea", NOW, store_name="Deli")
    assert (order.kind, order.status, order.version) == (
        OrderKind.SINGLE,
        OrderStatus.AWAITING_PAYMENT,
        1,
    )
    assert order.cart_id is None
    assert order.totals.total_minor == 2000 + 500 + 200
    [payment] = order.payments
    assert (payment.user_id, payment.method, payment.amount_minor, payment.status) == (
        "buyer",
        PaymentMethod.ONLINE,
        2700,
        PaymentStatus.PENDING,
    )
    [event] = order.pull_events()
    assert event.name == "order_awaiting_payment"
    assert (cart.status, cart.state, cart.order_id) == (
        ShopCartStatus.CHECKED_OUT,
        CheckoutState.PAYMENT,
        "o1",
    )
    for change in (
        lambda: cart.add_item("i2", a_product(STORE), 1, []),
        lambda: cart.set_address(an_address()),
        lambda: cart.checkout("o2", "TC-2", "Bea", NOW),
    ):
        with pytest.raises(errors.CartNotOpen):
            change()


def an_order_awaiting_payment() -> Order:
    cart = a_cart()
    cart.add_item("i1", a_product(STORE, price_minor=1000), 1, [])
    cart.set_address(an_address())
    cart.set_delivery(DeliveryMethod.PICKUP)
    order = cart.checkout("o1", "TC-1", "Bea", NOW)
    order.pull_events()
    return order


def test_the_right_amount_places_the_order_once() -> None:
    order = an_order_awaiting_payment()
    order.start_payment("pi_1", NOW)
    assert order.record_payment("pi_1", 1100, "USD", NOW)
    assert order.status is OrderStatus.PLACED
    assert order.payments[0].status is PaymentStatus.PAID_ONLINE
    placed = [e for e in order.pull_events() if isinstance(e, events.OrderPlaced)]
    assert [e.total_minor for e in placed] == [1100]
    assert order.record_payment("pi_1", 1100, "USD", NOW)  # told again: nothing new
    assert order.pull_events() == []
    assert not order.record_payment("pi_2", 1100, "USD", NOW)  # a second payment: refunded


@pytest.mark.parametrize(("amount", "currency"), [(1099, "USD"), (1101, "USD"), (1100, "EUR")])
def test_a_wrong_amount_or_currency_never_marks_paid(amount: int, currency: str) -> None:
    order = an_order_awaiting_payment()
    assert not order.record_payment("pi_1", amount, currency, NOW)
    assert order.status is OrderStatus.AWAITING_PAYMENT


def test_a_failed_payment_may_be_paid_again_and_a_late_failure_changes_nothing() -> None:
    order = an_order_awaiting_payment()
    order.start_payment("pi_1", NOW)
    assert order.payment_failed("pi_1", NOW)
    assert order.status is OrderStatus.PAYMENT_FAILED
    order.start_payment("pi_2", NOW)
    assert status_of(order) is OrderStatus.AWAITING_PAYMENT
    assert not order.payment_failed("pi_1", NOW)  # the old attempt, late
    assert order.record_payment("pi_2", 1100, "USD", NOW)
    assert not order.payment_failed("pi_2", NOW)
    with pytest.raises(errors.OrderNotPayable):
        order.start_payment("pi_3", NOW)


def test_an_expired_checkout_cancels_only_its_own_unpaid_order() -> None:
    order = an_order_awaiting_payment()
    order.start_payment(None, NOW, checkout_session_id="cs_1")
    order.start_payment(None, NOW, checkout_session_id="cs_2")  # a newer session
    assert not order.expire_checkout("cs_1", NOW)
    assert order.expire_checkout("cs_2", NOW)
    assert order.status is OrderStatus.CANCELLED
    assert not order.record_payment("pi_late", 1100, "USD", NOW)  # refunded, never kept


def test_merging_adds_quantities_within_the_stock_and_closes_the_guest_cart() -> None:
    mine, guest = a_cart("me"), a_cart("guest")
    pizza, soup, tea = (a_product(STORE, name=n) for n in ("Pizza", "Soup", "Tea"))
    mine.add_item("m1", pizza, 2, [])
    guest.add_item("g1", pizza, 3, [])
    guest.add_item("g2", soup, 4, [])
    guest.add_item("g3", tea, 1, [])
    new_ids = (f"n{n}" for n in itertools.count())
    short = mine.absorb(
        guest, {pizza.product_id: 4, soup.product_id: None, tea.product_id: 0}, new_ids
    )
    by_product = {i.product_id: i for i in mine.items.values()}
    assert by_product[pizza.product_id].quantity == 4  # 2 + 3, but only 4 in stock
    assert by_product[soup.product_id].quantity == 4  # unlimited
    assert by_product[soup.product_id].user_id == "me"
    assert tea.product_id not in by_product  # none left
    assert set(short) == {pizza.product_id, tea.product_id}
    assert guest.status is ShopCartStatus.MERGED
    with pytest.raises(errors.CartNotOpen):
        guest.add_item("g4", tea, 1, [])
    with pytest.raises(errors.CartNotOpen):
        mine.absorb(guest, {}, new_ids)  # a merged cart merges once


def test_merging_never_passes_ninety_nine() -> None:
    mine, guest = a_cart("me"), a_cart("guest")
    pizza = a_product(STORE)
    mine.add_item("m1", pizza, 90, [])
    guest.add_item("g1", pizza, 20, [])
    mine.absorb(guest, {pizza.product_id: None}, iter(["n1"]))
    assert next(iter(mine.items.values())).quantity == 99
