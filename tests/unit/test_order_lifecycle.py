"""The order's state machine, cancel by role and status, partial refunds, disputes, numbers.

Every (status, target, actor) triple is tried: the ones the table allows move the order one
version on with one event; every other one is refused naming where it may go instead.
"""

from __future__ import annotations

import re
from datetime import date

import pytest

from domain import errors, events
from domain.order import (
    CANCELLABLE,
    MOVED_BY,
    TRANSITIONS,
    Actor,
    Order,
    OrderLine,
    OrderPayment,
    OrderStatus,
    order_number,
)
from domain.payments import PaymentMethod, PaymentStatus
from domain.pricing import Totals

from .builders import NOW, an_address

S = OrderStatus
LINE = OrderLine("p", "Pizza", (), 1000, 3, 3000, "ana")
TOTALS = Totals(3000, 500, 0, 0, 0, 3500)


def _payments() -> list[OrderPayment]:
    return [
        OrderPayment("host", PaymentMethod.COD, 1000, PaymentStatus.COD_COMMITTED, None, "Hana"),
        OrderPayment("ana", PaymentMethod.ONLINE, 2500, PaymentStatus.PAID_ONLINE, "pi_a", "Ana"),
    ]


def an_order(status: OrderStatus = S.PLACED, payments: list[OrderPayment] | None = None) -> Order:
    return Order(
        id="o",
        number="TC-20261201-00000",
        cart_id="c",
        store_id="s",
        currency="USD",
        host_user_id="host",
        lines=[LINE],
        totals=TOTALS,
        payments=payments if payments is not None else _payments(),
        delivery_address=an_address(),
        status=status,
        created_at=NOW,
        version=5,
    )


ALLOWED = {
    (S.AWAITING_PAYMENT, S.PLACED, Actor.SYSTEM),
    (S.AWAITING_PAYMENT, S.PAYMENT_FAILED, Actor.SYSTEM),
    (S.PAYMENT_FAILED, S.AWAITING_PAYMENT, Actor.SYSTEM),
    (S.PAYMENT_FAILED, S.PLACED, Actor.SYSTEM),  # a failed intent confirmed again
    (S.PAYMENT_FAILED, S.AWAITING_PAYMENT, Actor.BUYER),
    *{
        (start, to, actor)
        for start, to in [
            (S.PLACED, S.ACCEPTED),
            (S.PLACED, S.REJECTED),
            (S.ACCEPTED, S.PREPARING),
            (S.PREPARING, S.OUT_FOR_DELIVERY),
            (S.PREPARING, S.SHIPPED),
            (S.OUT_FOR_DELIVERY, S.DELIVERED),
            (S.SHIPPED, S.DELIVERED),
        ]
        for actor in (Actor.STAFF, Actor.ADMIN)
    },
}
"""The whole machine, written out by hand (not derived from the table it checks)."""

TRIPLES = [(start, to, actor) for start in S for to in S for actor in Actor]


@pytest.mark.parametrize(("start", "to", "actor"), TRIPLES, ids=lambda v: str(v))
def test_each_move_is_allowed_exactly_as_the_table_says(
    start: OrderStatus, to: OrderStatus, actor: Actor
) -> None:
    order = an_order(start)
    tracking = {"carrier": "UPS", "tracking_number": "1Z999"} if to is S.SHIPPED else {}
    if (start, to, actor) in ALLOWED:
        order.move(to, actor, NOW, **tracking)
        assert (order.status, order.version) == (to, 6)
        [event] = order.pull_events()
        if to is S.PLACED:  # a single-payer's payment arrived: placed, as a group order is
            assert isinstance(event, events.OrderPlaced)
            assert (event.version, event.cart_id) == (6, "c")
        else:
            assert isinstance(event, events.OrderMoved)
            assert (event.name, event.version, event.by_role) == (f"order_{to}", 6, actor.value)
        assert order.history[-1].status is to
        assert order.history[-1].by_role is actor
    else:
        with pytest.raises(errors.IllegalTransition) as refused:
            order.move(to, actor, NOW, **tracking)
        assert refused.value.code == "illegal_transition"
        assert set(refused.value.allowed) == {
            t.value for (s, t, a) in ALLOWED if s is start and a is actor
        }
        assert (order.status, order.version, order.pull_events()) == (start, 5, [])


def test_the_table_and_its_movers_are_the_ones_tested() -> None:
    from_table = {
        (start, to, actor)
        for start, targets in TRANSITIONS.items()
        for to in targets
        for actor in MOVED_BY[to]
    }
    assert from_table == ALLOWED


def test_shipping_needs_a_carrier_and_a_tracking_number() -> None:
    for missing in ({"carrier": "UPS"}, {"tracking_number": "1Z"}, {}, {"carrier": " "}):
        order = an_order(S.PREPARING)
        with pytest.raises(errors.TrackingRequired):
            order.move(S.SHIPPED, Actor.STAFF, NOW, **missing)
        assert order.status is S.PREPARING
    order = an_order(S.PREPARING)
    order.move(S.SHIPPED, Actor.STAFF, NOW, carrier=" UPS ", tracking_number=" 1Z 99 ")
    assert order.tracking is not None
    assert (order.tracking.carrier, order.tracking.tracking_number) == ("UPS", "1Z 99")
    assert order.tracking.url == "https://www.ups.com/track?tracknum=1Z%2099"


def test_an_unknown_carrier_has_no_tracking_link() -> None:
    order = an_order(S.PREPARING)
    order.move(S.SHIPPED, Actor.STAFF, NOW, carrier="Bike courier", tracking_number="B-7")
    assert order.tracking is not None
    assert order.tracking.url is None


CANCEL_ALLOWED = {
    (Actor.HOST, S.PLACED),
    (Actor.BUYER, S.PLACED),
    (Actor.BUYER, S.AWAITING_PAYMENT),
    (Actor.STAFF, S.PLACED),
    (Actor.STAFF, S.ACCEPTED),
    (Actor.STAFF, S.PREPARING),
    (Actor.ADMIN, S.AWAITING_PAYMENT),
    (Actor.ADMIN, S.PLACED),
    (Actor.ADMIN, S.ACCEPTED),
    (Actor.ADMIN, S.PREPARING),
    (Actor.SYSTEM, S.AWAITING_PAYMENT),  # the checkout expired, the payment window passed
    (Actor.SYSTEM, S.PAYMENT_FAILED),
}


@pytest.mark.parametrize(("actor", "status"), [(a, s) for a in Actor for s in S], ids=str)
def test_cancel_by_role_and_status(actor: Actor, status: OrderStatus) -> None:
    order = an_order(status)
    if (actor, status) in CANCEL_ALLOWED:
        owed = order.cancel(actor, "changed plans", NOW)
        assert order.status is S.CANCELLED
        assert [p.user_id for p in owed] == ["ana"]  # the online payment; cash has nothing
        assert order.payment_of("ana").status is PaymentStatus.REFUNDED  # type: ignore[union-attr]
        assert order.payment_of("ana").refunded_minor == 2500  # type: ignore[union-attr]
        [event] = order.pull_events()
        assert (event.name, event.by_role, event.reason) == (  # type: ignore[attr-defined]
            "order_cancelled",
            actor.value,
            "changed plans",
        )
    else:
        expected = errors.MayNotCancel if actor not in CANCELLABLE else errors.OrderNotCancellable
        with pytest.raises(expected):
            order.cancel(actor, None, NOW)
        assert (order.status, order.pull_events()) == (status, [])


def test_cancel_refunds_only_what_is_left_and_held() -> None:
    payments = [
        OrderPayment("host", PaymentMethod.ONLINE, 1000, PaymentStatus.DISPUTED, "pi_h", "H"),
        OrderPayment(
            "ana", PaymentMethod.ONLINE, 2500, PaymentStatus.PAID_ONLINE, "pi_a", "A", 400
        ),
    ]
    order = an_order(payments=payments)
    owed = order.cancel(Actor.STAFF, None, NOW)
    assert [(p.user_id, p.refundable_minor) for p in owed] == [("ana", 2100)]
    assert order.payment_of("host").status is PaymentStatus.DISPUTED  # type: ignore[union-attr]


def test_a_partial_refund_never_exceeds_what_was_paid_less_earlier_refunds() -> None:
    order = an_order(S.DELIVERED)
    order.refund("ana", 1000, Actor.STAFF, NOW)
    order.refund("ana", 1500, Actor.STAFF, NOW)
    with pytest.raises(errors.RefundExceedsPaid) as refused:
        order.refund("ana", 1, Actor.STAFF, NOW)
    assert refused.value.refundable_minor == 0
    ana = order.payment_of("ana")
    assert ana is not None
    assert (ana.refunded_minor, ana.status) == (2500, PaymentStatus.REFUNDED)
    refunded = [e for e in order.pull_events() if isinstance(e, events.OrderRefunded)]
    assert [(e.amount_minor, e.refunded_minor, e.version) for e in refunded] == [
        (1000, 1000, 6),
        (1500, 2500, 7),
    ]


@pytest.mark.parametrize(
    ("user_id", "amount", "error"),
    [
        ("ana", 0, errors.InvalidRefund),
        ("ana", -5, errors.InvalidRefund),
        ("ana", 2501, errors.RefundExceedsPaid),
        ("host", 100, errors.PaymentNotRefundable),  # cash on delivery
        ("nobody", 100, errors.PaymentNotRefundable),
        (None, 100, errors.PaymentNotRefundable),  # two payers: name one
    ],
)
def test_refunds_that_are_refused(user_id: str | None, amount: int, error: type) -> None:
    order = an_order()
    with pytest.raises(error):
        order.refund(user_id, amount, Actor.STAFF, NOW)
    assert order.version == 5


@pytest.mark.parametrize("status", [PaymentStatus.DISPUTED, PaymentStatus.LOST])
def test_a_disputed_or_lost_payment_is_not_counted_as_paid(status: PaymentStatus) -> None:
    order = an_order()
    assert order.note_dispute("pi_a", PaymentStatus.DISPUTED, NOW)
    if status is PaymentStatus.LOST:
        assert order.note_dispute("pi_a", PaymentStatus.LOST, NOW)
    with pytest.raises(errors.PaymentNotRefundable):
        order.refund("ana", 100, Actor.STAFF, NOW)
    assert order.cancel(Actor.STAFF, None, NOW) == []  # nothing held to give back


def test_a_closed_dispute_is_never_reopened_by_a_late_notice() -> None:
    order = an_order()
    assert order.note_dispute("pi_a", PaymentStatus.LOST, NOW)  # closed reported first
    assert not order.note_dispute("pi_a", PaymentStatus.DISPUTED, NOW)
    assert not order.note_dispute("pi_a", PaymentStatus.WON, NOW)
    assert order.payment_of("ana").status is PaymentStatus.LOST  # type: ignore[union-attr]
    won = an_order()
    won.note_dispute("pi_a", PaymentStatus.DISPUTED, NOW)
    won.note_dispute("pi_a", PaymentStatus.WON, NOW)
    assert won.payment_of("ana").refundable_minor == 2500  # type: ignore[union-attr]


def test_refunds_reported_by_stripe_are_kept_whoever_started_them() -> None:
    order = an_order()
    assert order.note_refunded("pi_a", 700, NOW)  # a dashboard refund
    assert not order.note_refunded("pi_a", 700, NOW)  # the same, told again
    assert not order.note_refunded("pi_unknown", 700, NOW)
    ana = order.payment_of("ana")
    assert ana is not None
    assert (ana.refunded_minor, ana.status) == (700, PaymentStatus.PAID_ONLINE)
    assert order.note_refunded("pi_a", 2500, NOW)
    assert order.payment_of("ana").status is PaymentStatus.REFUNDED  # type: ignore[union-attr]
    assert order.note_refunded("pi_a", 0, NOW)  # Stripe reports that refund failed
    assert order.payment_of("ana").status is PaymentStatus.PAID_ONLINE  # type: ignore[union-attr]
    assert [e.version for e in order.pull_events()] == [6, 7, 8]


def test_order_numbers_are_dated_crockford_and_distinct() -> None:
    day = date(2026, 12, 1)
    numbers = {order_number(day, serial) for serial in range(50_000)}
    assert len(numbers) == 50_000
    assert all(re.fullmatch(r"TC-20261201-[0-9A-HJKMNP-TV-Z]{5}", n) for n in numbers)
    assert order_number(day, 1) != order_number(date(2026, 12, 2), 1)
    assert order_number(day, 2**25 - 1) not in {order_number(day, s) for s in range(1000)}
