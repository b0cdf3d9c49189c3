"""The handlers (``app.use_cases``) through the app's own runner, on the in-memory unit of work
(``tests.fakes``, held to PostgreSQL's behaviour by ``tests/unit_of_work_contract.py``).

Each test runs the commands a member or Stripe would send and asserts on what they would see
afterwards: the cart, the stock, the order, the refunds Stripe was asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.failures import NotFoundError
from app.payments.amounts import to_stripe
from app.payments.gateway import RefundInfo
from app.persistence.payments import IntentStatus, RefundRequestStatus
from app.unit_of_work import UnitOfWorkRunner
from app.use_cases.payments.intents import StartOnlinePayment, start_online_payment
from app.use_cases.payments.refunds import carry_out_refunds
from app.use_cases.payments.webhooks import EventOutcome, Outcome, take_in_event
from app.use_cases.teamcarts import (
    AddItem,
    ApplyCoupon,
    CancelCart,
    CommitCod,
    ConfirmCart,
    JoinCart,
    LockCart,
    OpenCart,
    SetTip,
    UnlockCart,
    add_item,
    apply_coupon,
    cancel_cart,
    commit_cod,
    confirm_cart,
    expire_due_carts,
    join_cart,
    lock_cart,
    open_cart,
    remind_hosts_to_confirm,
    set_tip,
    unlock_cart,
)
from domain import errors
from domain.catalog import CouponKind, ProductSnapshot, StoreTerms
from domain.order import Order
from domain.payments import PaymentStatus
from domain.teamcart import CartStatus, TeamCart
from tests.fakes import FakeDatabase, FakeGateway, fake_runner
from tests.stripe_events import charge_refunded, event, payment_intent
from tests.unit.builders import a_coupon, a_product, a_store, an_address, an_id, an_open_cart

# --- the world of one test -----------------------------------------------------------------


class WatchedGateway(FakeGateway):
    """Notes, for each refund Stripe is asked for, the cart's committed status then."""

    def __init__(self, db: FakeDatabase) -> None:
        super().__init__()
        self._db = db
        self.cart_status_at_refund: list[CartStatus | None] = []

    async def refund_payment_intent(
        self, intent_id: str, *, idempotency_key: str, reason: str, amount: int | None = None
    ) -> RefundInfo:
        cart_id = self.intents[intent_id].metadata.get("teamcart_id", "")
        committed = self._db.cart(cart_id)
        self.cart_status_at_refund.append(None if committed is None else committed.status)
        return await super().refund_payment_intent(
            intent_id, idempotency_key=idempotency_key, reason=reason, amount=amount
        )


@dataclass
class Shop:
    db: FakeDatabase
    gateway: WatchedGateway
    runner: UnitOfWorkRunner
    store: StoreTerms
    pizza: ProductSnapshot  # 10 in stock
    salad: ProductSnapshot  # unlimited

    def add_product(self, name: str, *, stock: int | None, price_minor: int = 800) -> str:
        product = a_product(self.store, name=name, price_minor=price_minor)
        return self.db.add_product(product, stock=stock).product_id

    def cart(self, cart_id: str) -> TeamCart:
        cart = self.db.cart(cart_id)
        assert cart is not None
        return cart


@pytest.fixture
def shop() -> Shop:
    db = FakeDatabase()
    gateway = WatchedGateway(db)
    store = db.add_store(a_store(delivery_fee_minor=0, tax_rate_bps=0))
    pizza = db.add_product(a_product(store, name="Pizza", price_minor=1000), stock=10)
    salad = db.add_product(a_product(store, name="Salad", price_minor=500), stock=None)
    return Shop(db, gateway, fake_runner(db, gateway), store, pizza, salad)


@dataclass(frozen=True)
class Party:
    cart_id: str
    invite_code: str
    host: str
    guest: str


async def a_party(shop: Shop, *, host_items: int = 1, guest_items: int = 2) -> Party:
    """An open cart: the host with pizzas, a guest who joined by the invite with pizzas."""
    run = shop.runner.run
    host, guest = an_id(), an_id()
    cart = await run(open_cart, OpenCart(host, "Hana", shop.store.store_id, None))
    await run(join_cart, JoinCart(guest, "Gus", cart.invite_code))
    for member, quantity in ((host, host_items), (guest, guest_items)):
        await run(add_item, AddItem(member, cart.id, shop.pizza.product_id, quantity, ()))
    return Party(cart.id, cart.invite_code, host, guest)


async def a_locked_party(shop: Shop) -> Party:
    party = await a_party(shop)
    await shop.runner.run(lock_cart, LockCart(party.host, party.cart_id))
    return party


async def pay_online(shop: Shop, party: Party, user_id: str) -> str:
    """The member starts paying and Stripe captures it (the webhook is the test's to send)."""
    started = await start_online_payment(StartOnlinePayment(user_id, party.cart_id), shop.runner)
    shop.gateway.capture(started.payment_intent_id)
    return started.payment_intent_id


def succeeded(shop: Shop, intent_id: str) -> dict[str, Any]:
    """Stripe's ``payment_intent.succeeded`` for the intent as the gateway captured it."""
    intent = shop.gateway.intents[intent_id]
    obj = payment_intent(
        intent.id, amount=intent.amount, currency=intent.currency, metadata=dict(intent.metadata)
    )
    return event("payment_intent.succeeded", obj)


async def take_in(shop: Shop, evt: dict[str, Any]) -> Outcome:
    return await shop.runner.run(take_in_event, evt)


def payment_of(shop: Shop, party: Party, user_id: str) -> PaymentStatus:
    return shop.cart(party.cart_id).members[user_id].payment.status


# --- opening and joining -------------------------------------------------------------------


async def test_a_guest_joins_an_open_cart_by_its_invite(shop: Shop) -> None:
    party = await a_party(shop)
    cart = shop.cart(party.cart_id)
    assert list(cart.members) == [party.host, party.guest]
    assert cart.members[party.host].display_name == "Hana"
    assert [name for _, name in shop.db.events_of(party.cart_id)][:2] == [
        "cart_opened",
        "member_joined",
    ]


async def test_opening_a_cart_at_an_unknown_store_is_store_not_found(shop: Shop) -> None:
    with pytest.raises(NotFoundError) as raised:
        await shop.runner.run(open_cart, OpenCart(an_id(), "Hana", an_id(), None))
    assert (raised.value.status, raised.value.code) == (404, "store_not_found")
    assert shop.db.carts.rows == {}


async def test_an_unknown_invite_is_invite_not_found(shop: Shop) -> None:
    with pytest.raises(NotFoundError) as raised:
        await shop.runner.run(join_cart, JoinCart(an_id(), "Gus", "no-such-invite-0123456789ab"))
    assert (raised.value.status, raised.value.code) == (404, "invite_not_found")


async def test_a_cancelled_carts_invite_is_not_found(shop: Shop) -> None:
    party = await a_party(shop)
    await shop.runner.run(cancel_cart, CancelCart(party.host, party.cart_id))
    latecomer = an_id()

    with pytest.raises(NotFoundError) as raised:
        await shop.runner.run(join_cart, JoinCart(latecomer, "Lee", party.invite_code))

    assert (raised.value.status, raised.value.code) == (404, "invite_not_found")
    assert not shop.cart(party.cart_id).is_member(latecomer)


# --- items and the quote -------------------------------------------------------------------


async def test_adding_an_unknown_product_is_product_not_found(shop: Shop) -> None:
    party = await a_party(shop)
    before = shop.cart(party.cart_id)

    with pytest.raises(NotFoundError) as raised:
        await shop.runner.run(add_item, AddItem(party.guest, party.cart_id, an_id(), 1, ()))

    assert (raised.value.status, raised.value.code) == (404, "product_not_found")
    after = shop.cart(party.cart_id)
    assert (after.version, list(after.items)) == (before.version, list(before.items))


async def test_locking_prices_the_cart_and_reserves_every_lines_stock(shop: Shop) -> None:
    party = await a_party(shop, host_items=1, guest_items=2)
    await shop.runner.run(
        add_item, AddItem(party.guest, party.cart_id, shop.salad.product_id, 4, ())
    )

    locked = await shop.runner.run(lock_cart, LockCart(party.host, party.cart_id))

    assert locked.status is CartStatus.LOCKED
    cart = shop.cart(party.cart_id)
    assert cart.status is CartStatus.LOCKED
    assert cart.share_of(party.host) == 1000
    assert cart.share_of(party.guest) == 2 * 1000 + 4 * 500
    assert shop.db.stock_of(shop.pizza.product_id) == 10 - 3
    assert shop.db.reservations_of(party.cart_id) == {shop.pizza.product_id: 3}  # salad: no limit


async def test_locking_without_enough_stock_reserves_nothing(shop: Shop) -> None:
    party = await a_party(shop, host_items=1, guest_items=1)
    pie = shop.add_product("Pie", stock=1)
    await shop.runner.run(add_item, AddItem(party.guest, party.cart_id, pie, 2, ()))
    version = shop.cart(party.cart_id).version

    with pytest.raises(errors.OutOfStock) as raised:
        await shop.runner.run(lock_cart, LockCart(party.host, party.cart_id))

    assert raised.value.code == "out_of_stock"
    assert raised.value.product_ids == (pie,)
    assert "Pie (1 left)" in raised.value.detail
    assert shop.db.stock_of(shop.pizza.product_id) == 10  # its reservation was rolled back too
    assert shop.db.stock_of(pie) == 1
    assert shop.db.reservations_of(party.cart_id) == {}
    cart = shop.cart(party.cart_id)
    assert (cart.status, cart.version) == (CartStatus.OPEN, version)


async def test_unlock_tip_and_coupon_are_refused_while_a_member_is_paying(shop: Shop) -> None:
    coupon = shop.db.add_coupon(shop.store.store_id, a_coupon(kind=CouponKind.PERCENT, value=10))
    party = await a_locked_party(shop)
    started = await start_online_payment(
        StartOnlinePayment(party.guest, party.cart_id), shop.runner
    )
    assert started.payment_intent_id in shop.gateway.intents
    before = shop.cart(party.cart_id)

    run, cart_id, host = shop.runner.run, party.cart_id, party.host
    for refused in (
        run(unlock_cart, UnlockCart(host, cart_id)),
        run(set_tip, SetTip(host, cart_id, 300)),
        run(apply_coupon, ApplyCoupon(host, cart_id, coupon.code.lower())),
    ):
        with pytest.raises(errors.PaymentActivityStarted) as raised:
            await refused
        assert raised.value.code == "payment_activity_started"

    after = shop.cart(party.cart_id)
    assert (after.status, after.version, after.quote_version) == (
        CartStatus.LOCKED,
        before.version,
        before.quote_version,
    )
    assert (after.tip_minor, after.coupon) == (0, None)
    assert shop.db.reservations_of(party.cart_id) == {shop.pizza.product_id: 3}
    assert shop.db.intents.rows[started.payment_intent_id].status == IntentStatus.OPEN


# --- the end of a cart ---------------------------------------------------------------------


async def a_ready_party_with_coupon(shop: Shop, code: str) -> Party:
    party = await a_locked_party(shop)
    await shop.runner.run(apply_coupon, ApplyCoupon(party.host, party.cart_id, code))
    for member in (party.host, party.guest):
        await shop.runner.run(commit_cod, CommitCod(member, party.cart_id))
    assert shop.cart(party.cart_id).status is CartStatus.READY_TO_CONFIRM
    return party


async def confirm(shop: Shop, party: Party) -> Order:
    return await shop.runner.run(confirm_cart, ConfirmCart(party.host, party.cart_id, an_address()))


async def test_confirming_places_the_order_and_counts_the_coupons_use(shop: Shop) -> None:
    coupon = shop.db.add_coupon(shop.store.store_id, a_coupon(value=50, max_uses=2))
    party = await a_ready_party_with_coupon(shop, coupon.code)

    order = await confirm(shop, party)

    assert re.fullmatch(r"TC-\d{8}-[0-9A-HJKMNP-TV-Z]{5}", order.number)
    assert order.coupon_code == coupon.code
    assert order.totals.discount_minor == 1500
    assert shop.db.order_of_cart(party.cart_id) is not None
    cart = shop.cart(party.cart_id)
    assert (cart.status, cart.order_id) == (CartStatus.CONVERTED, order.id)
    assert shop.db.coupon(shop.store.store_id, coupon.code).times_used == 1
    assert shop.db.reservations_of(party.cart_id) == {}  # sold: not coming back
    assert shop.db.stock_of(shop.pizza.product_id) == 7
    assert shop.db.events_of(order.id) == [(1, "order_placed")]


async def test_a_one_use_coupon_held_by_one_cart_is_refused_to_another(shop: Shop) -> None:
    """The use is reserved when applied, so no cart is left ready but unable to confirm."""
    coupon = shop.db.add_coupon(shop.store.store_id, a_coupon(max_uses=1))
    first = await a_ready_party_with_coupon(shop, coupon.code)
    second = await a_locked_party(shop)
    quote_before = shop.cart(second.cart_id).quote_version

    with pytest.raises(errors.CouponExhausted) as raised:
        await shop.runner.run(apply_coupon, ApplyCoupon(second.host, second.cart_id, coupon.code))

    assert raised.value.code == "coupon_exhausted"
    assert shop.cart(second.cart_id).coupon is None
    assert shop.cart(second.cart_id).quote_version == quote_before
    await confirm(shop, first)
    assert shop.db.coupon(shop.store.store_id, coupon.code).times_used == 1


async def test_cancelling_refunds_every_member_who_paid_after_the_commit(shop: Shop) -> None:
    party = await a_locked_party(shop)
    intents = [await pay_online(shop, party, member) for member in (party.host, party.guest)]
    for intent in intents:
        assert (await take_in(shop, succeeded(shop, intent))).outcome is EventOutcome.APPLIED
    assert shop.cart(party.cart_id).status is CartStatus.READY_TO_CONFIRM

    cancelled = await shop.runner.run(cancel_cart, CancelCart(party.host, party.cart_id))

    assert cancelled.status is CartStatus.CANCELLED
    assert payment_of(shop, party, party.host) is PaymentStatus.REFUNDED
    assert payment_of(shop, party, party.guest) is PaymentStatus.REFUNDED
    assert sorted(shop.gateway.refunded_intent_ids()) == sorted(intents)
    assert shop.gateway.cart_status_at_refund == [CartStatus.CANCELLED] * 2  # after the commit
    assert [shop.db.refund_requests.rows[i].status for i in intents] == [
        RefundRequestStatus.DONE
    ] * 2
    assert [shop.db.intents.rows[i].status for i in intents] == [IntentStatus.REFUNDED] * 2
    assert {r.id for r in shop.db.refunds.rows.values()} == {"re_fake_1", "re_fake_2"}
    assert shop.db.stock_of(shop.pizza.product_id) == 10


async def test_a_refund_stripe_does_not_answer_stays_owed_for_the_sweeper(shop: Shop) -> None:
    party = await a_locked_party(shop)
    intent = await pay_online(shop, party, party.guest)
    await take_in(shop, succeeded(shop, intent))
    shop.gateway.fail()

    await shop.runner.run(cancel_cart, CancelCart(party.host, party.cart_id))

    assert shop.cart(party.cart_id).status is CartStatus.CANCELLED  # the decision stands
    assert payment_of(shop, party, party.guest) is PaymentStatus.REFUNDED
    owed = shop.db.refund_requests.rows[intent]
    assert (owed.status, owed.attempts) == (RefundRequestStatus.PENDING, 1)
    assert owed.last_error == "Stripe did not answer (fake)"
    assert shop.gateway.refunds == []

    shop.gateway.recover()
    assert await carry_out_refunds(shop.runner) == 0  # backed off: not due yet
    shop.db.advance(timedelta(seconds=2))
    assert await carry_out_refunds(shop.runner) == 1
    assert shop.gateway.refunded_intent_ids() == [intent]
    assert shop.db.refund_requests.rows[intent].status == RefundRequestStatus.DONE


# --- the sweeper ---------------------------------------------------------------------------


def a_due_cart(shop: Shop, product: str | None, quantity: int = 2) -> TeamCart:
    """An open cart whose deadline passed a minute ago, with ``quantity`` of ``product``."""
    opened_at = datetime.now(UTC) - timedelta(hours=1)
    cart = an_open_cart(store=shop.store, deadline=opened_at + timedelta(minutes=59), now=opened_at)
    if product is not None:
        snapshot = shop.db.products.rows[product].product
        cart.add_item(cart.host_user_id, an_id(), snapshot, quantity, [], opened_at)
    return shop.db.add_cart(cart)


async def test_the_sweeper_locks_due_carts_and_expires_the_ones_that_cannot_go_on(
    shop: Shop,
) -> None:
    with_items = a_due_cart(shop, shop.pizza.product_id, quantity=2)
    empty = a_due_cart(shop, None)
    short = a_due_cart(shop, shop.add_product("Pie", stock=1), quantity=2)
    not_due = await shop.runner.run(open_cart, OpenCart(an_id(), "Hana", shop.store.store_id, None))

    assert await expire_due_carts(shop.runner, timedelta(minutes=30)) == 3

    locked = shop.cart(with_items.id)
    assert locked.status is CartStatus.LOCKED
    assert locked.quote is not None
    assert shop.db.reservations_of(with_items.id) == {shop.pizza.product_id: 2}
    assert shop.cart(empty.id).status is CartStatus.EXPIRED
    assert shop.cart(short.id).status is CartStatus.EXPIRED  # its stock ran out
    assert shop.cart(not_due.id).status is CartStatus.OPEN
    assert shop.db.stock_of(shop.pizza.product_id) == 8

    assert await expire_due_carts(shop.runner, timedelta(0)) == 1  # the payment window is over
    assert shop.cart(with_items.id).status is CartStatus.EXPIRED
    assert shop.db.stock_of(shop.pizza.product_id) == 10
    assert await expire_due_carts(shop.runner, timedelta(0)) == 0


# --- Stripe's events -----------------------------------------------------------------------


async def test_a_captured_payment_is_recorded_once_however_often_it_is_delivered(
    shop: Shop,
) -> None:
    party = await a_locked_party(shop)
    intent = await pay_online(shop, party, party.guest)
    evt = succeeded(shop, intent)

    taken = await take_in(shop, evt)

    assert (taken.outcome, taken.payment_intent_id) == (EventOutcome.APPLIED, intent)
    member = shop.cart(party.cart_id).members[party.guest]
    assert (member.payment.status, member.payment.reference) == (PaymentStatus.PAID_ONLINE, intent)
    assert member.payment.amount_minor == 2000
    assert shop.db.intents.rows[intent].status == IntentStatus.SUCCEEDED
    assert shop.db.inbox.rows[evt["id"]].outcome == EventOutcome.APPLIED
    version = shop.cart(party.cart_id).version

    again = await take_in(shop, evt)

    assert again.outcome is EventOutcome.DUPLICATE
    assert shop.cart(party.cart_id).version == version
    assert [name for _, name in shop.db.events_of(party.cart_id)].count(
        "online_payment_recorded"
    ) == 1


async def test_a_capture_of_the_wrong_amount_is_refunded(shop: Shop) -> None:
    party = await a_locked_party(shop)
    started = await start_online_payment(
        StartOnlinePayment(party.guest, party.cart_id), shop.runner
    )
    intent = started.payment_intent_id
    shop.gateway.capture(intent, amount=to_stripe(2000 + 100, "USD"))

    taken = await take_in(shop, succeeded(shop, intent))

    assert (taken.outcome, taken.reason) == (EventOutcome.REFUNDED, errors.AmountMismatch.code)
    assert payment_of(shop, party, party.guest) is PaymentStatus.REFUNDED
    owed = shop.db.refund_requests.rows[intent]
    assert (owed.amount, owed.reason, owed.status) == (2100, "amount_mismatch", "done")
    assert shop.gateway.refunded_intent_ids() == [intent]
    assert shop.gateway.cart_status_at_refund == [CartStatus.LOCKED]
    assert shop.cart(party.cart_id).status is CartStatus.LOCKED  # the guest still owes


async def test_a_refund_reported_before_its_capture_leaves_the_member_refunded(
    shop: Shop,
) -> None:
    party = await a_locked_party(shop)
    intent = await pay_online(shop, party, party.guest)
    refund = charge_refunded(intent, amount=2000, currency="USD", refund_id=f"re_{an_id()}")

    first = await take_in(shop, event("charge.refunded", refund))
    late = await take_in(shop, succeeded(shop, intent))

    assert first.outcome is EventOutcome.APPLIED
    assert (late.outcome, late.reason) == (EventOutcome.REFUNDED, "already_refunded")
    member = shop.cart(party.cart_id).members[party.guest]
    assert (member.payment.status, member.payment.reference) == (PaymentStatus.REFUNDED, intent)
    assert shop.db.refund_requests.rows == {}  # nothing owed: the money is back already
    assert shop.gateway.refunds == []
    assert shop.db.intents.rows[intent].status == IntentStatus.REFUNDED


async def test_the_host_of_a_ready_cart_is_reminded_once_before_its_confirm_window_ends(
    shop: Shop,
) -> None:
    party = await a_ready_party_with_coupon(
        shop, shop.db.add_coupon(shop.store.store_id, a_coupon()).code
    )
    reminded: list[tuple[str, str]] = []

    async def remind(cart_id: str, user_id: str, deadline: datetime, what: str) -> None:
        reminded.append((cart_id, user_id))

    window = timedelta(minutes=30)  # confirm window: 60 minutes from the lock; lead: 15
    assert await remind_hosts_to_confirm(shop.runner, window, remind) == 0
    shop.db.advance(timedelta(minutes=44))
    assert await remind_hosts_to_confirm(shop.runner, window, remind) == 0
    shop.db.advance(timedelta(minutes=2))
    assert await remind_hosts_to_confirm(shop.runner, window, remind) == 1
    assert reminded == [(party.cart_id, party.host)]
    assert await remind_hosts_to_confirm(shop.runner, window, remind) == 0  # once


async def test_a_cart_that_reopens_and_is_ready_again_reminds_its_host_again(shop: Shop) -> None:
    party = await a_locked_party(shop)
    intent = await pay_online(shop, party, party.guest)
    await take_in(shop, succeeded(shop, intent))
    await shop.runner.run(commit_cod, CommitCod(party.host, party.cart_id))
    assert shop.cart(party.cart_id).status is CartStatus.READY_TO_CONFIRM
    reminded: list[str] = []

    async def remind(cart_id: str, user_id: str, deadline: datetime, what: str) -> None:
        reminded.append(cart_id)

    window = timedelta(minutes=30)
    shop.db.advance(timedelta(minutes=50))
    assert await remind_hosts_to_confirm(shop.runner, window, remind) == 1
    assert await remind_hosts_to_confirm(shop.runner, window, remind) == 0

    refund = charge_refunded(intent, amount=2000, currency="USD", refund_id=f"re_{an_id()}")
    await take_in(shop, event("charge.refunded", refund))  # the guest's payment went back
    assert shop.cart(party.cart_id).status is CartStatus.LOCKED
    await shop.runner.run(commit_cod, CommitCod(party.guest, party.cart_id))
    assert shop.cart(party.cart_id).status is CartStatus.READY_TO_CONFIRM

    assert await remind_hosts_to_confirm(shop.runner, window, remind) == 1  # ready again
    assert reminded == [party.cart_id, party.cart_id]
