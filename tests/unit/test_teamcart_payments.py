"""COD commitments, online payments recorded from webhooks, and readiness."""

import pytest

from domain import errors, events
from domain.payments import CaptureOutcome, PaymentMethod, PaymentStatus
from domain.teamcart import CartStatus, MemberPayment

from .builders import a_guest, a_locked_cart, add, an_id, an_open_cart, status_of


def test_commit_cod_records_the_members_share() -> None:
    cart, _, guest = a_locked_cart()
    cart.commit_cod(guest)
    assert cart.members[guest].payment == MemberPayment(
        PaymentStatus.COD_COMMITTED, PaymentMethod.COD, 3622, None
    )
    assert cart.has_payment_activity
    assert cart.status is CartStatus.LOCKED  # the host has not committed yet
    assert cart.pull_events() == [
        events.CodCommitted(
            cart_id=cart.id, version=cart.version, user_id=guest, amount_minor=3622, currency="USD"
        )
    ]


def test_committing_twice_is_a_no_op() -> None:
    cart, _, guest = a_locked_cart()
    cart.commit_cod(guest)
    cart.pull_events()
    version = cart.version
    cart.commit_cod(guest)
    assert (cart.version, cart.pull_events()) == (version, [])


def test_the_last_commitment_makes_the_cart_ready_with_two_events() -> None:
    cart, host, guest = a_locked_cart()
    cart.commit_cod(guest)
    cart.pull_events()
    before = cart.version
    cart.commit_cod(host)
    assert cart.status is CartStatus.READY_TO_CONFIRM
    assert cart.pull_events() == [
        events.CodCommitted(
            cart_id=cart.id, version=before + 1, user_id=host, amount_minor=1208, currency="USD"
        ),
        events.CartReadyToConfirm(cart_id=cart.id, version=before + 2),
    ]
    assert cart.version == before + 2


def test_members_who_owe_nothing_do_not_hold_the_cart_up() -> None:
    cart = an_open_cart()
    host = cart.host_user_id
    idle = a_guest(cart)
    add(cart, host)
    cart.lock(host, cart.created_at)
    cart.commit_cod(host)
    assert cart.status is CartStatus.READY_TO_CONFIRM
    with pytest.raises(errors.NothingOwed) as caught:
        cart.commit_cod(idle)
    assert caught.value.code == "nothing_owed"


def test_nothing_owed_on_a_locked_cart() -> None:
    cart = an_open_cart()
    host = cart.host_user_id
    idle, payer = a_guest(cart), a_guest(cart)
    add(cart, host)
    add(cart, payer)
    cart.lock(host, cart.created_at)
    with pytest.raises(errors.NothingOwed):
        cart.commit_cod(idle)
    assert cart.members[idle].payment.status is PaymentStatus.NONE


def test_commit_cod_refusals() -> None:
    cart = an_open_cart()
    with pytest.raises(errors.CartNotLocked):
        cart.commit_cod(cart.host_user_id)
    with pytest.raises(errors.NotAMember):
        cart.commit_cod(an_id())


def test_commit_cod_after_paying_online_is_refused() -> None:
    cart, _, guest = a_locked_cart()
    cart.record_online_payment(guest, 3622, "USD", cart.quote_version, "pi_1")
    with pytest.raises(errors.AlreadyPaid) as caught:
        cart.commit_cod(guest)
    assert caught.value.code == "already_paid"


def test_an_online_payment_counts_toward_readiness() -> None:
    cart, host, guest = a_locked_cart()
    cart.commit_cod(host)
    cart.pull_events()
    cart.record_online_payment(guest, 3622, "USD", 1, "pi_1")
    assert cart.members[guest].payment == MemberPayment(
        PaymentStatus.PAID_ONLINE, PaymentMethod.ONLINE, 3622, "pi_1"
    )
    assert cart.status is CartStatus.READY_TO_CONFIRM
    recorded, ready = cart.pull_events()
    assert recorded == events.OnlinePaymentRecorded(
        cart_id=cart.id,
        version=ready.version - 1,
        user_id=guest,
        amount_minor=3622,
        currency="USD",
        payment_intent_id="pi_1",
    )
    assert isinstance(ready, events.CartReadyToConfirm)
    assert cart.paid_online_members == (cart.members[guest],)


def test_the_same_payment_twice_is_a_no_op_and_another_one_is_refused() -> None:
    cart, _, guest = a_locked_cart()
    cart.record_online_payment(guest, 3622, "USD", 1, "pi_1")
    cart.pull_events()
    cart.record_online_payment(guest, 3622, "USD", 1, "pi_1")
    assert cart.pull_events() == []
    with pytest.raises(errors.AlreadyPaid):
        cart.record_online_payment(guest, 3622, "USD", 1, "pi_2")


def test_an_online_payment_after_a_cod_commitment_is_refused_for_refund() -> None:
    cart, host, guest = a_locked_cart()
    cart.commit_cod(host)
    cart.commit_cod(guest)
    assert cart.status is CartStatus.READY_TO_CONFIRM
    cart.pull_events()
    with pytest.raises(errors.AlreadyPaid):
        cart.record_online_payment(guest, 3622, "USD", 1, "pi_1")
    assert cart.members[guest].payment.status is PaymentStatus.COD_COMMITTED
    assert cart.pull_events() == []


def test_refunding_a_stray_payment_shows_it_refunded_without_touching_the_cart() -> None:
    cart, _, guest = a_locked_cart()
    cart.pull_events()
    cart.record_refund(guest, "pi_stale", 3622)
    assert cart.members[guest].payment == MemberPayment(
        PaymentStatus.REFUNDED, PaymentMethod.ONLINE, 3622, "pi_stale"
    )
    assert cart.status is CartStatus.LOCKED
    assert [type(e) for e in cart.pull_events()] == [events.PaymentRefunded]
    version = cart.version
    cart.record_refund(guest, "pi_stale", 3622)  # a second notice of the same refund
    assert cart.version == version


def test_refunding_a_duplicate_payment_keeps_the_members_real_payment() -> None:
    cart, _host, guest = a_locked_cart()
    cart.record_online_payment(guest, 3622, "USD", 1, "pi_real")
    cart.pull_events()
    cart.record_refund(guest, "pi_duplicate", 3622)
    assert cart.members[guest].payment.status is PaymentStatus.PAID_ONLINE
    assert cart.members[guest].payment.reference == "pi_real"
    assert cart.pull_events() == []


def test_refund_or_dispute_of_a_settled_payment_reopens_a_ready_cart() -> None:
    cart, host, guest = a_locked_cart()
    cart.commit_cod(host)
    cart.record_online_payment(guest, 3622, "USD", 1, "pi_1")
    assert cart.status is CartStatus.READY_TO_CONFIRM
    cart.pull_events()
    assert cart.flag_payment_for_review(guest, "pi_1")
    assert cart.members[guest].payment.status is PaymentStatus.REVIEW
    assert status_of(cart) is CartStatus.LOCKED
    assert [type(e) for e in cart.pull_events()] == [
        events.PaymentUnderReview,
        events.CartPaymentsReopened,
    ]
    assert not cart.flag_payment_for_review(guest, "pi_other")
    cart.record_refund(guest, "pi_1", 3622)
    assert cart.members[guest].payment.status is PaymentStatus.REFUNDED


def test_a_member_whose_payment_was_refunded_can_pay_again() -> None:
    cart, _host, guest = a_locked_cart()
    cart.record_refund(guest, "pi_stale", 3622)
    assert not cart.has_payment_activity
    cart.record_online_payment(guest, 3622, "USD", 1, "pi_new")
    assert cart.members[guest].payment.status is PaymentStatus.PAID_ONLINE
    assert cart.members[guest].payment.reference == "pi_new"


@pytest.mark.parametrize(
    ("amount", "currency", "quote_version", "error", "code"),
    [
        (3622, "USD", 0, errors.QuoteChanged, "quote_changed"),
        (3622, "EUR", 1, errors.CurrencyMismatch, "currency_mismatch"),
        (3621, "USD", 1, errors.AmountMismatch, "amount_mismatch"),
        (3623, "USD", 1, errors.AmountMismatch, "amount_mismatch"),
    ],
)
def test_a_payment_that_does_not_match_what_is_owed_never_marks_paid(
    amount: int, currency: str, quote_version: int, error: type[errors.DomainError], code: str
) -> None:
    cart, _, guest = a_locked_cart()
    with pytest.raises(error) as caught:
        cart.record_online_payment(guest, amount, currency, quote_version, "pi_1")
    assert caught.value.code == code
    assert cart.members[guest].payment.status is PaymentStatus.NONE
    assert cart.pull_events() == []


def test_online_payment_refusals() -> None:
    cart, host, _ = a_locked_cart()
    with pytest.raises(errors.MemberNotFound):
        cart.record_online_payment(an_id(), 1, "USD", 1, "pi_1")
    open_cart = an_open_cart()
    with pytest.raises(errors.CartNotLocked):
        open_cart.record_online_payment(open_cart.host_user_id, 1, "USD", 0, "pi_1")
    idle_cart = an_open_cart()
    idle = a_guest(idle_cart)
    add(idle_cart, idle_cart.host_user_id)
    idle_cart.lock(idle_cart.host_user_id, idle_cart.created_at)
    with pytest.raises(errors.NothingOwed):
        idle_cart.record_online_payment(idle, 0, "USD", 1, "pi_1")
    cart.cancel(host, cart.created_at)
    with pytest.raises(errors.CartNotLocked):
        cart.record_online_payment(host, 1208, "USD", 1, "pi_1")


def test_a_failed_attempt_is_noted_once_and_the_member_can_still_pay() -> None:
    cart, _, guest = a_locked_cart()
    cart.mark_payment_failed(guest, "pi_1")
    assert cart.members[guest].payment == MemberPayment(
        PaymentStatus.FAILED, PaymentMethod.ONLINE, 0, "pi_1"
    )
    assert not cart.has_payment_activity
    assert cart.pull_events() == [
        events.PaymentFailed(
            cart_id=cart.id, version=cart.version, user_id=guest, payment_intent_id="pi_1"
        )
    ]
    cart.mark_payment_failed(guest, "pi_1")
    assert cart.pull_events() == []
    cart.commit_cod(guest)
    assert cart.members[guest].payment.status is PaymentStatus.COD_COMMITTED


def test_a_failure_after_committing_changes_nothing() -> None:
    cart, _, guest = a_locked_cart()
    cart.commit_cod(guest)
    cart.pull_events()
    cart.mark_payment_failed(guest, "pi_old")
    assert cart.pull_events() == []
    assert cart.members[guest].payment.status is PaymentStatus.COD_COMMITTED


def test_mark_payment_failed_refusals() -> None:
    cart, _, _ = a_locked_cart()
    with pytest.raises(errors.MemberNotFound):
        cart.mark_payment_failed(an_id(), "pi_1")
    open_cart = an_open_cart()
    with pytest.raises(errors.CartNotLocked):
        open_cart.mark_payment_failed(open_cart.host_user_id, "pi_1")


# --- Stripe does not order its events: refunds and disputes reported before the capture ----


def test_a_capture_refunded_in_full_before_it_was_reported_is_never_paid() -> None:
    cart, host, guest = a_locked_cart()
    cart.commit_cod(host)
    cart.pull_events()
    outcome = cart.record_online_payment(guest, 3622, "USD", 1, "pi_1", refunded_minor=3622)
    assert outcome is CaptureOutcome.ALREADY_REFUNDED
    assert cart.members[guest].payment == MemberPayment(
        PaymentStatus.REFUNDED, PaymentMethod.ONLINE, 3622, "pi_1"
    )
    assert cart.status is CartStatus.LOCKED  # nothing counts toward readiness
    assert [type(e) for e in cart.pull_events()] == [events.PaymentRefunded]


def test_a_capture_reported_after_its_refund_was_recorded_changes_nothing() -> None:
    cart, _host, guest = a_locked_cart()
    cart.record_refund(guest, "pi_1", 3622)  # charge.refunded came first
    cart.pull_events()
    assert cart.record_online_payment(guest, 3622, "USD", 1, "pi_1") is CaptureOutcome.UNCHANGED
    assert cart.members[guest].payment.status is PaymentStatus.REFUNDED
    assert cart.pull_events() == []


@pytest.mark.parametrize(("refunded", "disputed"), [(0, True), (1000, False), (1000, True)])
def test_a_capture_disputed_or_partly_refunded_before_it_was_reported_goes_to_review(
    refunded: int, disputed: bool
) -> None:
    cart, host, guest = a_locked_cart()
    cart.commit_cod(host)
    cart.pull_events()
    outcome = cart.record_online_payment(
        guest, 3622, "USD", 1, "pi_1", refunded_minor=refunded, disputed=disputed
    )
    assert outcome is CaptureOutcome.UNDER_REVIEW
    assert cart.members[guest].payment == MemberPayment(
        PaymentStatus.REVIEW, PaymentMethod.ONLINE, 3622, "pi_1"
    )
    assert cart.status is CartStatus.LOCKED
    assert [type(e) for e in cart.pull_events()] == [events.PaymentUnderReview]


def test_a_disputed_duplicate_leaves_the_members_real_payment_alone() -> None:
    cart, _host, guest = a_locked_cart()
    cart.record_online_payment(guest, 3622, "USD", 1, "pi_real")
    cart.pull_events()
    outcome = cart.record_online_payment(guest, 3622, "USD", 1, "pi_dup", disputed=True)
    assert outcome is CaptureOutcome.UNDER_REVIEW  # the caller keeps the dispute on record
    assert cart.members[guest].payment.reference == "pi_real"
    assert cart.members[guest].payment.status is PaymentStatus.PAID_ONLINE
    assert cart.pull_events() == []


def test_a_dispute_after_a_refund_leaves_the_payment_refunded() -> None:
    cart, _host, guest = a_locked_cart()
    cart.record_online_payment(guest, 3622, "USD", 1, "pi_1")
    cart.record_refund(guest, "pi_1", 3622)
    cart.pull_events()
    assert cart.flag_payment_for_review(guest, "pi_1")
    assert cart.members[guest].payment.status is PaymentStatus.REFUNDED
    assert cart.pull_events() == []


# --- a payment under way -------------------------------------------------------------------


def test_starting_to_pay_online_shows_pending_and_holds_the_quote() -> None:
    cart, host, guest = a_locked_cart()
    cart.start_online_payment(guest, "pi_1", cart.quote_version)
    assert cart.members[guest].payment == MemberPayment(
        PaymentStatus.PENDING, PaymentMethod.ONLINE, 3622, "pi_1"
    )
    assert [type(e) for e in cart.pull_events()] == [events.PaymentStarted]
    cart.start_online_payment(guest, "pi_1", cart.quote_version)  # the same intent again
    assert cart.pull_events() == []
    with pytest.raises(errors.PaymentActivityStarted):
        cart.set_tip(host, 100)
    with pytest.raises(errors.PaymentActivityStarted):
        cart.unlock(host)
    assert cart.pending_payments == ((guest, "pi_1"),)


def test_a_payment_started_against_an_old_quote_is_refused() -> None:
    cart, _, guest = a_locked_cart()
    with pytest.raises(errors.QuoteChanged):
        cart.start_online_payment(guest, "pi_1", cart.quote_version - 1)
    assert cart.members[guest].payment.status is PaymentStatus.NONE


def test_a_canceled_pending_payment_is_owed_again_and_frees_the_quote() -> None:
    cart, host, guest = a_locked_cart()
    cart.start_online_payment(guest, "pi_1", cart.quote_version)
    cart.note_payment_canceled(guest, "pi_other")  # not the pending one: nothing changes
    assert cart.members[guest].payment.status is PaymentStatus.PENDING
    cart.note_payment_canceled(guest, "pi_1")
    assert cart.members[guest].payment.status is PaymentStatus.NONE
    cart.set_tip(host, 100)
    assert cart.pending_payments == ()


def test_a_pending_payment_that_succeeds_or_fails_moves_on() -> None:
    cart, _, guest = a_locked_cart()
    cart.start_online_payment(guest, "pi_1", cart.quote_version)
    cart.mark_payment_failed(guest, "pi_1")
    assert cart.members[guest].payment.status is PaymentStatus.FAILED
    cart.start_online_payment(guest, "pi_2", cart.quote_version)
    cart.record_online_payment(guest, 3622, "USD", cart.quote_version, "pi_2")
    assert cart.members[guest].payment.status is PaymentStatus.PAID_ONLINE
    cart.note_payment_canceled(guest, "pi_2")  # a late cancel never undoes a payment
    assert cart.members[guest].payment.status is PaymentStatus.PAID_ONLINE


def test_an_old_attempt_failing_late_leaves_the_pending_one_pending() -> None:
    cart, _, guest = a_locked_cart()
    cart.start_online_payment(guest, "pi_old", cart.quote_version)
    cart.start_online_payment(guest, "pi_new", cart.quote_version)
    cart.pull_events()
    cart.mark_payment_failed(guest, "pi_old")
    assert cart.members[guest].payment.status is PaymentStatus.PENDING
    assert cart.pending_payments == ((guest, "pi_new"),)
    assert cart.pull_events() == []
