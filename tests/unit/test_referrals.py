"""The referral rules of ``domain.referrals``: the commission and its rounding, each guard (a
test for each that fails without it), following the order to approved, reversed and void,
a second placing being a duplicate, and events of older versions changing nothing."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from domain.referrals import (
    ACCRUAL_DECISIONS,
    Attribution,
    CommissionStatus,
    Decision,
    Judgement,
    OrderFacts,
    Party,
    Standing,
    Terms,
    commission_for,
    consume,
    follow,
    judge,
    needs_judgement,
    normalized_code,
    normalized_email,
    reversed_for,
)

REFERRER = "00000000-0000-4000-8000-00000000000a"
BUYER = "00000000-0000-4000-8000-00000000000b"
FRIEND = "00000000-0000-4000-8000-00000000000c"
TERMS = Terms(commission_bps=500, minimum_minor={"USD": 1000}, velocity_per_day=3)
PLACED_AT = datetime(2026, 12, 2, 23, 30, tzinfo=UTC)


def order(**changes: object) -> OrderFacts:
    facts = OrderFacts(
        order_id="00000000-0000-4000-8000-0000000000f1",
        version=1,
        event="order_placed",
        status="placed",
        currency="USD",
        subtotal_minor=2500,
        total_minor=3000,
        refunded_minor=0,
        payment_statuses=("paid_online", "cod_committed"),
        participant_user_ids=frozenset({BUYER, FRIEND}),
        placed_at=PLACED_AT,
    )
    return dataclasses.replace(facts, **changes)  # type: ignore[arg-type]


def judgement(**changes: object) -> Judgement:
    base = Judgement(
        terms=TERMS,
        attribution=Attribution(REFERRER, "ABCD2345"),
        referrer=Party(
            user_ids=frozenset({REFERRER}),
            emails=frozenset({"rita@example.com"}),
            card_fingerprints=frozenset({"fp_rita"}),
        ),
        referred=Party(
            user_ids=frozenset({BUYER, FRIEND}),
            emails=frozenset({"bo@example.com"}),
            card_fingerprints=frozenset({"fp_bo"}),
        ),
        commissions_that_day=0,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def accrued(facts: OrderFacts | None = None) -> Standing:
    facts = facts or order()
    outcome = consume(Standing(), facts, judgement(), "c1")
    assert outcome.commission is not None
    return Standing(Decision.ACCRUED, outcome.commission)


# --- amounts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subtotal", "bps", "commission"),
    [
        (2500, 500, 125),
        (10, 500, 0),  # 0.5 → 0 (even)
        (30, 500, 2),  # 1.5 → 2 (even)
        (50, 500, 2),  # 2.5 → 2 (even)
        (70, 500, 4),  # 3.5 → 4
        (1999, 333, 67),  # 66.5667 → 67
        (0, 500, 0),
        (12345, 10_000, 12345),
    ],
)
def test_the_commission_is_its_bps_of_the_subtotal_half_to_even(
    subtotal: int, bps: int, commission: int
) -> None:
    assert commission_for(subtotal, bps) == commission


def test_refunds_reverse_the_commission_pro_rata_on_their_running_total() -> None:
    assert reversed_for(125, 0, 3000) == 0
    assert reversed_for(125, 1000, 3000) == 42  # 41.67
    assert reversed_for(125, 1200, 3000) == 50
    assert reversed_for(125, 3000, 3000) == 125  # all of it, exactly
    assert reversed_for(125, 5000, 3000) == 125  # never more than all
    assert reversed_for(3, 1500, 3000) == 2  # 1.5 → 2 (even)
    assert reversed_for(5, 1500, 3000) == 2  # 2.5 → 2 (even)
    assert reversed_for(125, 100, 0) == 0  # a free order has nothing to refund


def test_codes_and_emails_are_compared_as_people_type_them() -> None:
    assert normalized_code(" abcd-2345 ") == "ABCD2345"
    assert normalized_code("0OIL") == "0011"  # look-alikes read as the digits
    assert normalized_email(" Ana+promo@Example.COM ") == "ana@example.com"
    assert normalized_email("not-an-address") == "not-an-address"


def test_terms_refuse_what_makes_no_sense() -> None:
    with pytest.raises(ValueError, match="commission_bps"):
        Terms(commission_bps=10_001)
    with pytest.raises(ValueError, match="velocity"):
        Terms(commission_bps=1, velocity_per_day=-1)
    assert Terms(commission_bps=1, minimum_minor={"*": 7}).minimum_for("JPY") == 7
    assert TERMS.minimum_for("JPY") == 0


# --- the guards: each refuses on its own, and only it --------------------------------------


def test_an_order_of_a_cart_without_a_code_earns_nothing() -> None:
    verdict = judge(order(), judgement(attribution=None))
    assert verdict.decision is Decision.NO_CODE
    assert verdict.amount_minor == 0


def test_a_referrer_on_their_own_order_is_a_self_referral() -> None:
    on_it = Party(user_ids=frozenset({BUYER, REFERRER}))
    verdict = judge(order(), judgement(referred=on_it))
    assert verdict.decision is Decision.SELF_REFERRAL
    assert "on the order" in verdict.reason


def test_a_referrer_sharing_an_email_with_the_order_is_a_self_referral() -> None:
    same_inbox = Party(user_ids=frozenset({BUYER}), emails=frozenset({"rita@example.com"}))
    verdict = judge(order(), judgement(referred=same_inbox))
    assert verdict.decision is Decision.SELF_REFERRAL
    assert "email" in verdict.reason


def test_a_referrer_whose_card_paid_the_order_is_a_self_referral() -> None:
    their_card = Party(user_ids=frozenset({BUYER}), card_fingerprints=frozenset({"fp_rita"}))
    verdict = judge(order(), judgement(referred=their_card))
    assert verdict.decision is Decision.SELF_REFERRAL
    assert "card" in verdict.reason


def test_an_order_below_the_minimum_of_its_currency_earns_nothing() -> None:
    assert judge(order(subtotal_minor=999), judgement()).decision is Decision.BELOW_MINIMUM
    assert judge(order(subtotal_minor=1000), judgement()).decision is Decision.ACCRUED
    assert judge(order(subtotal_minor=1, currency="JPY"), judgement()).decision is (
        Decision.ACCRUED  # no minimum named for yen
    )


def test_a_referrer_past_their_commissions_of_the_day_earns_nothing_more() -> None:
    assert judge(order(), judgement(commissions_that_day=2)).decision is Decision.ACCRUED
    verdict = judge(order(), judgement(commissions_that_day=3))
    assert verdict.decision is Decision.VELOCITY
    assert "2026-12-02" in verdict.reason  # the UTC day it was placed
    unlimited = dataclasses.replace(TERMS, velocity_per_day=0)
    assert judge(order(), judgement(terms=unlimited, commissions_that_day=99)).decision is (
        Decision.ACCRUED
    )


def test_an_order_that_passes_every_guard_accrues_a_pending_commission() -> None:
    outcome = consume(Standing(), order(), judgement(), "c1")
    assert outcome.created
    assert outcome.decision is Decision.ACCRUED
    commission = outcome.commission
    assert commission is not None
    assert (commission.id, commission.referrer_user_id, commission.amount_minor) == (
        "c1",
        REFERRER,
        125,
    )
    assert (commission.status, commission.reversed_minor, commission.order_version) == (
        CommissionStatus.PENDING,
        0,
        1,
    )
    assert [e.decision for e in outcome.entries] == [Decision.ACCRUED]


# --- when the decision is made ----------------------------------------------------------


def test_an_order_not_paid_in_full_is_not_decided_until_it_is() -> None:
    unpaid = order(payment_statuses=("paid_online", "pending"))
    assert not needs_judgement(Standing(), unpaid)
    outcome = consume(Standing(), unpaid, None, "c1")
    assert outcome.undecided
    assert not outcome.entries
    paid = order(version=2, event="order_payment_updated")
    assert consume(Standing(), paid, judgement(), "c1").decision is Decision.ACCRUED


def test_an_order_awaiting_payment_or_cancelled_unpaid_is_never_decided() -> None:
    for status in ("awaiting_payment", "payment_failed", "cancelled"):
        facts = order(status=status, payment_statuses=("pending",))
        assert consume(Standing(), facts, None, "c1").undecided


def test_deciding_needs_the_judgement() -> None:
    with pytest.raises(ValueError, match="judgement"):
        consume(Standing(), order(), None, "c1")


def test_a_second_placing_of_a_decided_order_is_a_duplicate_and_accrues_nothing() -> None:
    standing = accrued()
    outcome = consume(standing, order(version=7), judgement(), "c2")
    assert [e.decision for e in outcome.entries] == [Decision.DUPLICATE]
    assert outcome.commission is None
    assert not outcome.created
    refused = Standing(Decision.NO_CODE, None)
    assert [e.decision for e in consume(refused, order(version=2), None, "c3").entries] == [
        Decision.DUPLICATE
    ]


def test_a_decision_made_late_catches_up_with_the_order() -> None:
    """Decided from a later version (paid in full only then): delivered and refunded
    already, so approved at once with its reversal."""
    late = order(version=5, event="order_delivered", status="delivered", refunded_minor=1500)
    outcome = consume(Standing(), late, judgement(), "c1")
    assert [e.decision for e in outcome.entries] == [Decision.ACCRUED, Decision.REVERSED]
    assert outcome.commission is not None
    assert outcome.commission.status is CommissionStatus.APPROVED
    assert outcome.reversal_minor == outcome.commission.reversed_minor == 62  # 62.5 → 62
    assert outcome.decision is Decision.ACCRUED
    assert outcome.decision in ACCRUAL_DECISIONS


# --- following the order ----------------------------------------------------------------


def test_delivered_approves_and_cancelled_or_rejected_voids() -> None:
    commission = accrued().commission
    assert commission is not None
    delivered = follow(commission, order(version=2, event="order_delivered", status="delivered"))
    assert delivered.commission is not None
    assert delivered.commission.status is CommissionStatus.APPROVED
    assert not delivered.entries
    for status in ("cancelled", "rejected"):
        voided = follow(commission, order(version=2, event=f"order_{status}", status=status))
        assert voided.commission is not None
        assert voided.commission.status is CommissionStatus.VOID
        assert [(e.decision, e.amount_minor) for e in voided.entries] == [(Decision.VOIDED, 125)]
        again = follow(voided.commission, order(version=3, refunded_minor=3000))
        assert not again.entries
        assert again.reversal_minor == 0


def test_each_refund_reverses_its_share_and_a_failed_one_comes_back() -> None:
    commission = accrued().commission
    assert commission is not None
    first = follow(commission, order(version=2, event="order_refunded", refunded_minor=1000))
    assert first.reversal_minor == 42
    assert first.commission is not None
    second = follow(first.commission, order(version=3, event="order_refunded", refunded_minor=1200))
    assert second.reversal_minor == 8  # 50 in all, one rounding of 1200/3000
    assert second.commission is not None
    failed = follow(
        second.commission, order(version=4, event="order_refunded", refunded_minor=1000)
    )
    assert failed.reversal_minor == -8
    assert failed.entries[0].decision is Decision.REVERSED
    assert "failed" in failed.entries[0].reason


def test_an_older_version_changes_nothing_once_a_newer_one_was_applied() -> None:
    commission = accrued().commission
    assert commission is not None
    newer = follow(commission, order(version=5, event="order_refunded", refunded_minor=3000))
    assert newer.commission is not None
    older = follow(newer.commission, order(version=4, event="order_refunded", refunded_minor=1000))
    assert older.commission is None
    assert not older.entries
    standing = Standing(Decision.ACCRUED, newer.commission)
    stale = order(version=3, event="order_refunded", refunded_minor=0)
    assert consume(standing, stale, None, "x").commission is None


def test_a_paid_commission_stays_paid_and_still_follows_refunds() -> None:
    commission = accrued().commission
    assert commission is not None
    paid = dataclasses.replace(commission, status=CommissionStatus.PAID)
    refunded = follow(paid, order(version=2, status="delivered", refunded_minor=3000))
    assert refunded.commission is not None
    assert refunded.commission.status is CommissionStatus.PAID
    assert refunded.reversal_minor == 125
