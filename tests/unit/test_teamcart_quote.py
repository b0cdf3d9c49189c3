"""Locking, unlocking, tip and coupon: the quote and its version."""

from datetime import timedelta

import pytest

from domain import errors, events
from domain.catalog import CouponKind
from domain.payments import PaymentStatus
from domain.pricing import Quote, Totals
from domain.teamcart import CartStatus

from .builders import (
    NOW,
    a_coupon,
    a_guest,
    a_locked_cart,
    a_store,
    add,
    an_id,
    an_open_cart,
    status_of,
)

LATER = NOW + timedelta(minutes=1)


def test_lock_prices_the_cart_and_bumps_the_quote_version() -> None:
    cart = an_open_cart()  # USD, fee 500, tax 8.25 %
    host = cart.host_user_id
    guest, idle = a_guest(cart), a_guest(cart, "Idle")
    add(cart, host, price_minor=1000)
    add(cart, guest, price_minor=1500, quantity=2)
    cart.pull_events()

    cart.lock(host, LATER)

    expected = Quote(
        totals=Totals(
            subtotal_minor=4000,
            delivery_fee_minor=500,
            tax_minor=330,
            tip_minor=0,
            discount_minor=0,
            total_minor=4830,
        ),
        shares={host: 1208, guest: 3622, idle: 0},
    )
    assert cart.status is CartStatus.LOCKED
    assert (cart.locked_at, cart.quote_version, cart.quote) == (LATER, 1, expected)
    assert (cart.share_of(host), cart.share_of(guest), cart.share_of(idle)) == (1208, 3622, 0)
    assert cart.pull_events() == [
        events.CartLocked(
            cart_id=cart.id,
            version=6,
            locked_at=LATER,
            quote_version=1,
            quote=expected,
            by_deadline=False,
        )
    ]


def test_share_is_zero_before_lock() -> None:
    cart = an_open_cart()
    add(cart, cart.host_user_id)
    assert cart.share_of(cart.host_user_id) == 0


def test_only_the_host_locks() -> None:
    cart = an_open_cart()
    guest = a_guest(cart)
    add(cart, guest)
    with pytest.raises(errors.HostOnly):
        cart.lock(guest, LATER)
    with pytest.raises(errors.NotAMember):
        cart.lock(an_id(), LATER)
    assert cart.status is CartStatus.OPEN


def test_an_empty_cart_cannot_be_locked() -> None:
    cart = an_open_cart()
    with pytest.raises(errors.EmptyCart) as caught:
        cart.lock(cart.host_user_id, LATER)
    assert caught.value.code == "empty_cart"


def test_a_cart_of_free_items_cannot_be_locked() -> None:
    cart = an_open_cart()
    add(cart, cart.host_user_id, price_minor=0)
    with pytest.raises(errors.ZeroSubtotal) as caught:
        cart.lock(cart.host_user_id, LATER)
    assert caught.value.code == "zero_subtotal"


def test_locking_twice_is_refused() -> None:
    cart, host, _ = a_locked_cart()
    with pytest.raises(errors.CartLocked):
        cart.lock(host, LATER)


def test_unlock_discards_the_quote_tip_and_coupon() -> None:
    cart, host, _ = a_locked_cart()
    cart.set_tip(host, 100)
    cart.apply_coupon(host, a_coupon())
    cart.pull_events()

    cart.unlock(host)

    assert cart.status is CartStatus.OPEN
    assert (cart.quote, cart.locked_at, cart.tip_minor, cart.coupon) == (None, None, 0, None)
    assert cart.quote_version == 3  # never goes back
    assert cart.pull_events() == [events.CartUnlocked(cart_id=cart.id, version=cart.version)]

    cart.lock(host, LATER)
    assert cart.quote_version == 4


def test_unlock_refusals() -> None:
    cart, host, guest = a_locked_cart()
    with pytest.raises(errors.HostOnly):
        cart.unlock(guest)
    cart.commit_cod(guest)
    with pytest.raises(errors.PaymentActivityStarted) as caught:
        cart.unlock(host)
    assert caught.value.code == "payment_activity_started"

    open_cart = an_open_cart()
    with pytest.raises(errors.CartNotLocked) as not_locked:
        open_cart.unlock(open_cart.host_user_id)
    assert not_locked.value.code == "cart_not_locked"


def test_a_failed_online_attempt_does_not_block_unlock_and_is_reset() -> None:
    cart, host, guest = a_locked_cart()
    cart.mark_payment_failed(guest, "pi_1")
    cart.unlock(host)
    assert cart.members[guest].payment.status is PaymentStatus.NONE


def test_set_tip_reprices() -> None:
    cart, host, guest = a_locked_cart()
    cart.set_tip(host, 170)
    assert cart.tip_minor == 170
    assert cart.quote is not None
    assert (cart.quote.totals.tip_minor, cart.quote.totals.total_minor) == (170, 5000)
    assert cart.quote_version == 2
    [event] = cart.pull_events()
    assert event == events.TipSet(
        cart_id=cart.id, version=cart.version, tip_minor=170, quote_version=2, quote=cart.quote
    )
    assert (cart.share_of(host), cart.share_of(guest)) == (1250, 3750)


def test_setting_the_same_tip_is_a_no_op() -> None:
    cart, host, _ = a_locked_cart()
    cart.set_tip(host, 0)
    assert (cart.pull_events(), cart.quote_version) == ([], 1)


@pytest.mark.parametrize("amount", [-1, 1.5, True, "100"])
def test_tip_must_be_a_non_negative_int(amount: object) -> None:
    cart, host, _ = a_locked_cart()
    with pytest.raises(errors.InvalidTip) as caught:
        cart.set_tip(host, amount)  # type: ignore[arg-type]
    assert (caught.value.code, caught.value.field) == ("invalid_tip", "amount_minor")


def test_tip_refusals() -> None:
    cart, host, guest = a_locked_cart()
    with pytest.raises(errors.HostOnly):
        cart.set_tip(guest, 100)
    cart.commit_cod(guest)
    with pytest.raises(errors.PaymentActivityStarted):
        cart.set_tip(host, 100)
    open_cart = an_open_cart()
    with pytest.raises(errors.CartNotLocked):
        open_cart.set_tip(open_cart.host_user_id, 100)


def test_apply_coupon_reprices() -> None:
    cart, host, _ = a_locked_cart()
    coupon = a_coupon(kind=CouponKind.PERCENT, value=25, min_subtotal_minor=4000)
    cart.apply_coupon(host, coupon)
    assert cart.coupon == coupon
    assert cart.quote is not None
    assert (cart.quote.totals.discount_minor, cart.quote.totals.total_minor) == (1000, 3830)
    assert cart.pull_events() == [
        events.CouponApplied(
            cart_id=cart.id,
            version=cart.version,
            code=coupon.code,
            quote_version=2,
            quote=cart.quote,
        )
    ]


def test_applying_the_same_code_again_is_a_no_op_and_another_code_replaces_it() -> None:
    cart, host, _ = a_locked_cart()
    first = a_coupon(kind=CouponKind.FIXED, value=100)
    cart.apply_coupon(host, first)
    cart.pull_events()
    cart.apply_coupon(host, first)
    assert cart.pull_events() == []
    second = a_coupon(kind=CouponKind.FIXED, value=300)
    cart.apply_coupon(host, second)
    assert cart.coupon == second
    assert cart.quote is not None
    assert cart.quote.totals.discount_minor == 300
    assert cart.quote_version == 3


def test_coupon_below_its_minimum_subtotal_is_refused() -> None:
    cart, host, _ = a_locked_cart()  # subtotal 4000
    with pytest.raises(errors.CouponMinSubtotalNotMet) as caught:
        cart.apply_coupon(host, a_coupon(min_subtotal_minor=4001))
    assert caught.value.code == "coupon_min_subtotal"
    assert isinstance(caught.value, errors.CouponNotApplicable)
    assert cart.coupon is None


def test_exhausted_coupon_is_refused() -> None:
    cart, host, _ = a_locked_cart()
    with pytest.raises(errors.CouponExhausted) as caught:
        cart.apply_coupon(host, a_coupon(max_uses=5, times_used=5))
    assert caught.value.code == "coupon_exhausted"
    assert isinstance(caught.value, errors.CouponNotApplicable)


def test_coupon_refusals() -> None:
    cart, host, guest = a_locked_cart()
    with pytest.raises(errors.HostOnly):
        cart.apply_coupon(guest, a_coupon())
    with pytest.raises(errors.HostOnly):
        cart.remove_coupon(guest)
    cart.commit_cod(host)
    with pytest.raises(errors.PaymentActivityStarted):
        cart.apply_coupon(host, a_coupon())
    with pytest.raises(errors.PaymentActivityStarted):
        cart.remove_coupon(host)
    open_cart = an_open_cart()
    with pytest.raises(errors.CartNotLocked):
        open_cart.apply_coupon(open_cart.host_user_id, a_coupon())
    with pytest.raises(errors.CartNotLocked):
        open_cart.remove_coupon(open_cart.host_user_id)


def test_remove_coupon_reprices_and_without_coupon_is_a_no_op() -> None:
    cart, host, _ = a_locked_cart()
    cart.remove_coupon(host)
    assert cart.pull_events() == []
    coupon = a_coupon()
    cart.apply_coupon(host, coupon)
    cart.pull_events()
    cart.remove_coupon(host)
    assert cart.coupon is None
    assert cart.quote is not None
    assert cart.quote.totals.discount_minor == 0
    assert cart.pull_events() == [
        events.CouponRemoved(
            cart_id=cart.id,
            version=cart.version,
            code=coupon.code,
            quote_version=3,
            quote=cart.quote,
        )
    ]


def test_a_quote_of_zero_makes_the_cart_ready_at_once_and_it_can_still_be_unlocked() -> None:
    cart, host, _ = a_locked_cart(store=a_store(delivery_fee_minor=0, tax_rate_bps=0))
    cart.apply_coupon(host, a_coupon(kind=CouponKind.PERCENT, value=100))
    assert cart.quote is not None
    assert cart.quote.totals.total_minor == 0
    assert cart.status is CartStatus.READY_TO_CONFIRM
    applied, ready = cart.pull_events()
    assert isinstance(applied, events.CouponApplied)
    assert ready == events.CartReadyToConfirm(cart_id=cart.id, version=applied.version + 1)

    cart.unlock(host)
    assert status_of(cart) is CartStatus.OPEN


def test_a_tip_after_a_full_discount_keeps_the_cart_locked_and_owed() -> None:
    cart, host, guest = a_locked_cart(store=a_store(delivery_fee_minor=0, tax_rate_bps=0))
    cart.set_tip(host, 400)
    cart.apply_coupon(host, a_coupon(kind=CouponKind.PERCENT, value=100))
    assert cart.status is CartStatus.LOCKED
    assert (cart.share_of(host), cart.share_of(guest)) == (100, 300)
    cart.set_tip(host, 0)
    assert status_of(cart) is CartStatus.READY_TO_CONFIRM


def test_a_tip_is_at_most_the_subtotal_by_default() -> None:
    cart, host, _ = a_locked_cart()  # subtotal 4000
    cart.set_tip(host, 4000)
    assert cart.tip_minor == 4000
    cart.pull_events()
    version = cart.version
    with pytest.raises(errors.TipTooHigh) as caught:
        cart.set_tip(host, 4001)
    assert (caught.value.code, caught.value.field) == ("tip_too_high", "amount_minor")
    assert caught.value.max_tip_minor == 4000
    assert (cart.tip_minor, cart.version, cart.pull_events()) == (4000, version, [])


def test_a_stores_tip_cap_is_a_share_of_the_subtotal_rounded_down() -> None:
    cart, host, _ = a_locked_cart()  # subtotal 4000
    with pytest.raises(errors.TipTooHigh) as caught:
        cart.set_tip(host, 601, max_tip_bps=1_501)  # 15.01 % of 4000 is 600.4
    assert caught.value.max_tip_minor == 600
    cart.set_tip(host, 600, max_tip_bps=1_501)
    assert cart.tip_minor == 600
    with pytest.raises(errors.TipTooHigh):
        cart.set_tip(host, 1, max_tip_bps=0)  # a store that takes no tips
    cart.set_tip(host, 0, max_tip_bps=0)
    assert cart.tip_minor == 0
