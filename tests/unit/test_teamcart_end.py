"""Confirm into an Order, cancel, and the deadline and payment-window rules."""

from datetime import timedelta

import pytest

from domain import errors, events
from domain.order import (
    Order,
    OrderLine,
    OrderPayment,
    OrderStatus,
)
from domain.payments import PaymentMethod, PaymentStatus
from domain.pricing import Totals
from domain.teamcart import CartStatus

from .builders import (
    NOW,
    a_guest,
    a_locked_cart,
    a_ready_cart,
    add,
    an_address,
    an_id,
    an_open_cart,
    status_of,
)

WINDOW = timedelta(minutes=30)


def test_confirm_turns_a_ready_cart_into_a_placed_order() -> None:
    cart, host, guest = a_locked_cart()
    cart.commit_cod(host)
    cart.record_online_payment(guest, 3622, "USD", 1, "pi_1")
    cart.pull_events()
    order_id = an_id()
    address = an_address()

    order = cart.confirm(host, order_id, "TC-000123", address, NOW)

    assert isinstance(order, Order)
    assert (order.id, order.number, order.cart_id) == (order_id, "TC-000123", cart.id)
    assert (order.store_id, order.currency, order.host_user_id) == (
        cart.store.store_id,
        "USD",
        host,
    )
    assert order.status is OrderStatus.PLACED
    assert (order.created_at, order.delivery_address, order.version) == (NOW, address, 1)
    assert order.totals == Totals(
        subtotal_minor=4000,
        delivery_fee_minor=500,
        tax_minor=330,
        tip_minor=0,
        discount_minor=0,
        total_minor=4830,
    )
    host_item, guest_item = cart.items.values()
    assert order.lines == (
        OrderLine(
            product_id=host_item.product_id,
            name=host_item.name,
            options=(),
            unit_price_minor=1000,
            quantity=1,
            line_total_minor=1000,
            user_id=host,
        ),
        OrderLine(
            product_id=guest_item.product_id,
            name=guest_item.name,
            options=(),
            unit_price_minor=3000,
            quantity=1,
            line_total_minor=3000,
            user_id=guest,
        ),
    )
    assert order.payments == (
        OrderPayment(host, PaymentMethod.COD, 1208, PaymentStatus.COD_COMMITTED, None, "Hana"),
        OrderPayment(guest, PaymentMethod.ONLINE, 3622, PaymentStatus.PAID_ONLINE, "pi_1", "Gus"),
    )
    assert order.participant_user_ids == (host, guest)
    assert order.coupon_code is None
    assert order.pull_events() == [
        events.OrderPlaced(
            order_id=order_id,
            version=1,
            number="TC-000123",
            cart_id=cart.id,
            store_id=cart.store.store_id,
            currency="USD",
            total_minor=4830,
            host_user_id=host,
            participant_user_ids=(host, guest),
            placed_at=NOW,
        )
    ]

    assert cart.status is CartStatus.CONVERTED
    assert cart.order_id == order_id
    assert cart.pull_events() == [
        events.CartConverted(
            cart_id=cart.id,
            version=cart.version,
            order_id=order_id,
            order_number="TC-000123",
            converted_at=NOW,
        )
    ]


def test_members_who_owed_nothing_have_no_payment_and_do_not_take_part() -> None:
    cart = an_open_cart()
    host = cart.host_user_id
    idle = a_guest(cart)
    add(cart, host)
    cart.lock(host, NOW)
    cart.commit_cod(host)
    order = cart.confirm(host, an_id(), "TC-1", an_address(), NOW)
    assert [payment.user_id for payment in order.payments] == [host]
    assert idle not in order.participant_user_ids


def test_confirm_keeps_the_coupon_code() -> None:
    from .builders import a_coupon

    cart, host, guest = a_locked_cart()
    coupon = a_coupon()
    cart.apply_coupon(host, coupon)
    cart.commit_cod(host)
    cart.commit_cod(guest)
    order = cart.confirm(host, an_id(), "TC-2", an_address(), NOW)
    assert order.coupon_code == coupon.code
    assert order.totals.discount_minor == 400


def test_confirm_refusals() -> None:
    locked, host, guest = a_locked_cart()
    with pytest.raises(errors.CartNotReady) as caught:
        locked.confirm(host, an_id(), "TC-3", an_address(), NOW)
    assert caught.value.code == "cart_not_ready"

    ready, host, guest = a_ready_cart()
    with pytest.raises(errors.HostOnly):
        ready.confirm(guest, an_id(), "TC-3", an_address(), NOW)
    with pytest.raises(errors.NotAMember):
        ready.confirm(an_id(), an_id(), "TC-3", an_address(), NOW)
    ready.confirm(host, an_id(), "TC-3", an_address(), NOW)
    with pytest.raises(errors.CartNotReady):
        ready.confirm(host, an_id(), "TC-4", an_address(), NOW)


@pytest.mark.parametrize("state", ["open", "locked", "ready_to_confirm"])
def test_the_host_cancels_an_unfinished_cart(state: str) -> None:
    if state == "open":
        cart = an_open_cart()
    elif state == "locked":
        cart, _, _ = a_locked_cart()
    else:
        cart, _, _ = a_ready_cart()
    cart.cancel(cart.host_user_id, NOW)
    assert cart.status is CartStatus.CANCELLED
    assert cart.pull_events() == [
        events.CartCancelled(cart_id=cart.id, version=cart.version, cancelled_at=NOW)
    ]


def test_cancel_refusals() -> None:
    cart, host, guest = a_ready_cart()
    with pytest.raises(errors.HostOnly):
        cart.cancel(guest, NOW)
    cart.confirm(host, an_id(), "TC-5", an_address(), NOW)
    with pytest.raises(errors.CartNotOpen):
        cart.cancel(host, NOW)
    cancelled = an_open_cart()
    cancelled.cancel(cancelled.host_user_id, NOW)
    with pytest.raises(errors.CartNotOpen):
        cancelled.cancel(cancelled.host_user_id, NOW)


def test_cancel_after_online_payments_names_who_to_refund() -> None:
    cart, host, guest = a_locked_cart()
    cart.record_online_payment(guest, 3622, "USD", 1, "pi_1")
    cart.cancel(host, NOW)
    assert [member.user_id for member in cart.paid_online_members] == [guest]


def test_an_open_cart_without_deadline_never_expires() -> None:
    cart = an_open_cart()
    assert not cart.expire_if_due(NOW + timedelta(days=365), WINDOW)
    assert cart.pull_events() == []


def test_an_empty_open_cart_past_its_deadline_expires() -> None:
    deadline = NOW + timedelta(hours=1)
    cart = an_open_cart(deadline=deadline)
    assert not cart.expire_if_due(deadline, WINDOW)
    assert cart.expire_if_due(deadline + timedelta(seconds=1), WINDOW)
    assert cart.status is CartStatus.EXPIRED
    assert cart.pull_events() == [
        events.CartExpired(cart_id=cart.id, version=2, expired_at=deadline + timedelta(seconds=1))
    ]
    assert not cart.expire_if_due(deadline + timedelta(hours=5), WINDOW)


def test_an_open_cart_of_free_items_past_its_deadline_expires() -> None:
    deadline = NOW + timedelta(hours=1)
    cart = an_open_cart(deadline=deadline)
    add(cart, cart.host_user_id, price_minor=0)
    assert cart.expire_if_due(deadline + timedelta(seconds=1), WINDOW)
    assert cart.status is CartStatus.EXPIRED


def test_an_open_cart_with_items_past_its_deadline_is_locked() -> None:
    deadline = NOW + timedelta(hours=1)
    cart = an_open_cart(deadline=deadline)
    add(cart, cart.host_user_id)
    cart.pull_events()
    due = deadline + timedelta(seconds=5)
    assert cart.expire_if_due(due, WINDOW)
    assert cart.status is CartStatus.LOCKED
    assert cart.locked_at == due
    [event] = cart.pull_events()
    assert isinstance(event, events.CartLocked)
    assert event.by_deadline
    assert event.quote == cart.quote

    assert not cart.expire_if_due(due + WINDOW, WINDOW)
    assert cart.expire_if_due(due + WINDOW + timedelta(seconds=1), WINDOW)
    assert status_of(cart) is CartStatus.EXPIRED


def test_a_locked_cart_expires_after_the_payment_window() -> None:
    cart, _, guest = a_locked_cart()
    assert cart.locked_at is not None
    cart.record_online_payment(guest, 3622, "USD", 1, "pi_1")
    cart.pull_events()
    assert not cart.expire_if_due(cart.locked_at + WINDOW, WINDOW)
    assert cart.expire_if_due(cart.locked_at + WINDOW + timedelta(microseconds=1), WINDOW)
    assert cart.status is CartStatus.EXPIRED
    assert [member.user_id for member in cart.paid_online_members] == [guest]
    assert [type(event) for event in cart.pull_events()] == [events.CartExpired]


def test_a_ready_cart_waits_for_the_host_one_more_window_then_expires() -> None:
    cart, host, guest = a_locked_cart()
    cart.commit_cod(host)
    cart.record_online_payment(guest, 3622, "USD", 1, "pi_1")
    assert cart.status is CartStatus.READY_TO_CONFIRM
    assert cart.locked_at is not None
    assert not cart.expire_if_due(cart.locked_at + 2 * WINDOW, WINDOW)
    assert cart.status is CartStatus.READY_TO_CONFIRM
    assert cart.expire_if_due(cart.locked_at + 2 * WINDOW + timedelta(seconds=1), WINDOW)
    assert status_of(cart) is CartStatus.EXPIRED
    assert cart.paid_online_members  # the sweeper refunds them (refund_paid_members)
    refunds = cart.refund_paid_members()
    assert [r.payment_intent_id for r in refunds] == ["pi_1"]
    assert not cart.paid_online_members


def test_expire_directly() -> None:
    cart, _, _ = a_locked_cart()
    cart.expire(NOW)
    assert cart.status is CartStatus.EXPIRED
    with pytest.raises(errors.CartNotOpen):
        cart.expire(NOW)
    ready, _, _ = a_ready_cart()
    ready.expire(NOW)
    assert ready.status is CartStatus.EXPIRED
