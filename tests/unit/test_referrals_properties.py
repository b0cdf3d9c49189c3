"""Property tests of the accrual (``domain.referrals.consume``) over random histories.

Random orders (attributed to a referrer or not; some by the referrer themself, some sharing
an inbox or a card with them; random subtotals and totals; on one of two days) each go
through random steps: paid in full at once or only later, refunds, refunds that fail,
cancels, deliveries, and now and then a second placing. Their outbox records are delivered
in a random order, with replays, to a ledger that consumes them as the SQL consumer does
(``app.referrals.accrual``): a record once; what is stored about the order loaded; a record
that finds the order undecided while an earlier one of it is still to come handed back, to be
delivered again later (the dispatcher does so); judged when it needs judging.

Whatever the history and the order of delivery:

- each referrer's pending + approved - reversed is, to the minor unit, the sum over their
  accrued orders not cancelled of commission_bps * subtotal, half to even, less that times
  refunded / total, half to even, on the order's final refunds, computed here with
  ``fractions`` and Python's own half-even ``round``, not the domain's arithmetic;
- each order placed and paid in full at some version has one accrual decision, others none;
  a placing after the decision is a ``duplicate`` and accrues nothing;
- an accrued order passes every guard; a referrer has at most the day's limit; an order
  that would pass every guard and did not accrue was refused for velocity, on a day that is
  full, or for a card its referrer had paid with;
- a commission's reversals add up to what it has reversed;
- with no velocity or card in play, neither replays nor the order of delivery change any
  commission.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.referrals import (
    ACCRUAL_DECISIONS,
    Attribution,
    Commission,
    CommissionStatus,
    Decision,
    Entry,
    Judgement,
    OrderFacts,
    Party,
    Standing,
    Terms,
    consume,
    needs_judgement,
    normalized_email,
)

REFERRERS = ("r0", "r1", "r2")
CUSTOMERS = ("c0", "c1", "c2", "c3")
EMAILS = {"c3": "R1+Lunch@Example.com"}  # c3 reads r1's inbox
CARDS = ("card_r0", "card_r1", "card_x", "card_y")
DAY_ONE = datetime(2026, 12, 1, 12, tzinfo=UTC)
MINIMUM = 500
VELOCITY = 1
STEPS = ("pay", "refund", "refund", "unrefund", "cancel", "deliver", "place_again")


def email_of(user: str) -> str:
    return normalized_email(EMAILS.get(user, f"{user}@example.com"))


@dataclass
class OrderPlan:
    """One order and its versions, as its outbox records show them."""

    id: str
    host: str
    payer: str
    card: str | None  # the card that paid it online; None: cash
    referrer: str | None  # the code its cart was created with
    subtotal: int
    total: int
    day: int
    facts: list[OrderFacts] = field(default_factory=list)

    @property
    def people(self) -> set[str]:
        return {self.host, self.payer}

    def eligible(self) -> bool:
        """Passes every guard that doesn't depend on the rest of the history (velocity, a
        card the referrer paid with elsewhere)."""
        if self.referrer is None or self.subtotal < MINIMUM or self.referrer in self.people:
            return False
        return email_of(self.referrer) not in {email_of(u) for u in self.people}


@st.composite
def order_plans(draw: st.DrawFn, number: int) -> OrderPlan:
    host = draw(st.sampled_from(CUSTOMERS + REFERRERS))  # a referrer may order, for themself
    subtotal = draw(st.integers(0, 3000))
    plan = OrderPlan(
        id=f"order-{number}",
        host=host,
        payer=draw(st.sampled_from((host, *CUSTOMERS))),
        card=draw(st.sampled_from((None, *CARDS))),
        referrer=draw(st.sampled_from((None, *REFERRERS))),
        subtotal=subtotal,
        total=subtotal + draw(st.integers(0 if subtotal else 1, 800)),
        day=draw(st.integers(0, 1)),
    )
    version, status, refunded, paid = 1, "placed", 0, draw(st.booleans()) or draw(st.booleans())

    def facts(event: str) -> OrderFacts:
        return OrderFacts(
            order_id=plan.id,
            version=version,
            event=event,
            status=status,
            currency="USD",
            subtotal_minor=plan.subtotal,
            total_minor=plan.total,
            refunded_minor=refunded,
            payment_statuses=("paid_online" if paid else "pending", "cod_committed"),
            participant_user_ids=frozenset(plan.people),
            placed_at=DAY_ONE + timedelta(days=plan.day, minutes=number),
        )

    plan.facts.append(facts("order_placed"))
    for step in draw(st.lists(st.sampled_from(STEPS), max_size=6)):
        going = status != "cancelled"
        if step == "pay" and not paid:
            paid, event = True, "order_payment_updated"
        elif step == "refund" and going and refunded < plan.total:
            refunded += draw(st.integers(1, plan.total - refunded))
            event = "order_refunded"
        elif step == "unrefund" and going and refunded > 0:
            refunded -= draw(st.integers(1, refunded))  # Stripe reports a refund failed
            event = "order_refunded"
        elif step == "cancel" and status == "placed":
            status, refunded, event = "cancelled", plan.total, "order_cancelled"
        elif step == "deliver" and status == "placed" and paid:
            status, event = "delivered", "order_delivered"
        elif step == "place_again":
            event = "order_placed"
        else:
            continue
        version += 1
        plan.facts.append(facts(event))
    return plan


@dataclass(frozen=True)
class Record:
    id: int
    facts: OrderFacts


@dataclass
class Ledger:
    """The SQL consumer's steps over dicts standing for ``referral_consumed``, ``audit``,
    ``commissions``, ``commission_reversals`` and ``referral_fingerprints``."""

    terms: Terms
    plans: dict[str, OrderPlan]
    versions: dict[str, dict[int, int]]
    """Each order's records by version: record id (what the dispatcher's outbox holds)."""
    consumed: set[int] = field(default_factory=set)
    audit: list[tuple[str, Entry]] = field(default_factory=list)
    commissions: dict[str, Commission] = field(default_factory=dict)
    reversals: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    cards_of: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def decision_of(self, order_id: str) -> Decision | None:
        decisions = (e.decision for o, e in self.audit if o == order_id)
        return next((d for d in decisions if d in ACCRUAL_DECISIONS), None)

    def judgement(self, plan: OrderPlan, facts: OrderFacts) -> Judgement:
        referrer = plan.referrer
        if referrer is None:
            return Judgement(self.terms, None)
        that_day = [
            c
            for c in self.commissions.values()
            if c.referrer_user_id == referrer and c.placed_at.date() == facts.placed_on
        ]
        return Judgement(
            terms=self.terms,
            attribution=Attribution(referrer, f"CODE{referrer}"),
            referrer=Party(
                frozenset({referrer}),
                frozenset({email_of(referrer)}),
                frozenset(self.cards_of[referrer]),
            ),
            referred=Party(
                facts.participant_user_ids,
                frozenset(email_of(u) for u in facts.participant_user_ids),
                frozenset({plan.card} if plan.card else ()),
            ),
            commissions_that_day=len(that_day),
        )

    def deliver(self, record: Record) -> bool:
        """Consume the record; ``False`` when it is to be delivered again later."""
        if record.id in self.consumed:
            return True
        facts, plan = record.facts, self.plans[record.facts.order_id]
        standing = Standing(self.decision_of(plan.id), self.commissions.get(plan.id))
        earlier = [r for v, r in self.versions[plan.id].items() if v < facts.version]
        if standing.decision is None and any(r not in self.consumed for r in earlier):
            return False  # EarlierEventFirst: delivered again later
        judgement = None
        if needs_judgement(standing, facts):
            judgement = self.judgement(plan, facts)
            if plan.card:
                self.cards_of[plan.payer].add(plan.card)
        outcome = consume(standing, facts, judgement, f"commission-{plan.id}")
        self.consumed.add(record.id)
        self.audit += [(plan.id, entry) for entry in outcome.entries]
        if outcome.commission is not None:
            self.commissions[plan.id] = outcome.commission
        if outcome.reversal_minor:
            self.reversals[plan.id].append(outcome.reversal_minor)
        return True


def run(plans: list[OrderPlan], delivery: list[Record], bps: int) -> Ledger:
    versions: dict[str, dict[int, int]] = defaultdict(dict)
    for record in delivery:
        versions[record.facts.order_id][record.facts.version] = record.id
    ledger = Ledger(
        Terms(commission_bps=bps, minimum_minor={"USD": MINIMUM}, velocity_per_day=VELOCITY),
        {plan.id: plan for plan in plans},
        versions,
    )
    queue = list(delivery)
    for _ in range(50 * len(delivery)):
        if not queue:
            break
        record = queue.pop(0)
        if not ledger.deliver(record):
            queue.append(record)
    assert not queue, "every record is consumed in the end"
    return ledger


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[OrderPlan], list[Record], int]:
    plans = [draw(order_plans(n)) for n in range(draw(st.integers(1, 12)))]
    every = [facts for plan in plans for facts in plan.facts]
    records = [Record(number, facts) for number, facts in enumerate(every, start=1)]
    delivery = list(draw(st.permutations(records)))
    for replay in draw(st.lists(st.sampled_from(records), max_size=12)):
        delivery.insert(draw(st.integers(0, len(delivery))), replay)
    return plans, delivery, draw(st.sampled_from((1, 333, 500, 1250, 10_000)))


def half_even(value: Fraction) -> int:
    return round(value)  # Python rounds a Fraction half to even


def earned_on(plan: OrderPlan, bps: int) -> int:
    """What an accrued, uncancelled order earns in the end (the oracle)."""
    commission = half_even(Fraction(plan.subtotal * bps, 10_000))
    refunded = min(plan.facts[-1].refunded_minor, plan.total)
    return commission - half_even(Fraction(commission * refunded, plan.total))


History = tuple[list[OrderPlan], list[Record], int]


@settings(max_examples=300, deadline=None)
@given(histories())
def test_each_referrers_earnings_are_their_orders_commissions_to_the_minor_unit(
    history: History,
) -> None:
    plans, delivery, bps = history
    ledger = run(plans, delivery, bps)
    by_id = {plan.id: plan for plan in plans}
    for referrer in REFERRERS:
        mine = [c for c in ledger.commissions.values() if c.referrer_user_id == referrer]
        standing = [c for c in mine if c.status is not CommissionStatus.VOID]
        earned = sum(c.amount_minor for c in standing) - sum(c.reversed_minor for c in standing)
        expected = sum(
            earned_on(by_id[c.order_id], bps)
            for c in mine
            if by_id[c.order_id].facts[-1].status != "cancelled"
        )
        assert earned == expected
    for plan in plans:
        commission = ledger.commissions.get(plan.id)
        if commission is None:
            continue
        assert commission.amount_minor == half_even(Fraction(plan.subtotal * bps, 10_000))
        assert sum(ledger.reversals[plan.id]) == commission.reversed_minor
        final = plan.facts[-1].status
        assert commission.status is {
            "cancelled": CommissionStatus.VOID,
            "delivered": CommissionStatus.APPROVED,
        }.get(final, CommissionStatus.PENDING)


@settings(max_examples=300, deadline=None)
@given(histories())
def test_each_order_is_decided_once_and_only_as_its_guards_allow(history: History) -> None:
    plans, delivery, bps = history
    ledger = run(plans, delivery, bps)
    decisions = Counter(o for o, e in ledger.audit if e.decision in ACCRUAL_DECISIONS)
    duplicates = Counter(o for o, e in ledger.audit if e.decision is Decision.DUPLICATE)
    accrued: Counter[tuple[str | None, int]] = Counter()
    refused_for_velocity: set[tuple[str | None, int]] = set()
    for plan in plans:
        decidable = any(f.placed and f.paid_in_full for f in plan.facts)
        assert decisions[plan.id] == (1 if decidable else 0)
        placings = sum(1 for f in plan.facts if f.event == "order_placed")
        assert duplicates[plan.id] <= (placings - 1 if decidable else 0)
        decision = ledger.decision_of(plan.id)
        assert (plan.id in ledger.commissions) == (decision is Decision.ACCRUED)
        if decision is Decision.ACCRUED:
            assert plan.eligible()
            accrued[(plan.referrer, plan.day)] += 1
        elif decision is Decision.VELOCITY:
            assert plan.eligible()
            refused_for_velocity.add((plan.referrer, plan.day))
        elif decision is not None and plan.eligible():
            assert decision is Decision.SELF_REFERRAL
            assert plan.card in ledger.cards_of[plan.referrer or ""]  # a card of theirs
        if decision is Decision.NO_CODE:
            assert plan.referrer is None
        if decision is Decision.BELOW_MINIMUM:
            assert plan.subtotal < MINIMUM
    assert all(count <= VELOCITY for count in accrued.values())
    assert all(accrued[day] == VELOCITY for day in refused_for_velocity)


@settings(max_examples=200, deadline=None)
@given(histories())
def test_replays_and_the_order_of_delivery_change_no_commission(history: History) -> None:
    """Delivered once each in the order written, or shuffled with replays: the same
    decisions and commissions, unless velocity or a card seen before or after is in play
    (those depend on which orders came first, by design)."""
    plans, delivery, bps = history
    in_order = run(plans, sorted(set(delivery), key=lambda r: r.id), bps)
    shuffled = run(plans, delivery, bps)
    for ledger in (in_order, shuffled):
        for _, entry in ledger.audit:
            if entry.decision is Decision.VELOCITY or "card" in entry.reason:
                return
    for plan in plans:
        assert in_order.decision_of(plan.id) == shuffled.decision_of(plan.id)
        before, after = in_order.commissions.get(plan.id), shuffled.commissions.get(plan.id)
        assert (before is None) == (after is None)
        if before is not None and after is not None:
            assert (before.amount_minor, before.status) == (after.amount_minor, after.status)
            if before.status is not CommissionStatus.VOID:  # void: what was reversed is moot
                assert before.reversed_minor == after.reversed_minor
    # Delivered in order, a placing is a duplicate exactly when an earlier version decided.
    for plan in plans:
        first = next((i for i, f in enumerate(plan.facts) if f.placed and f.paid_in_full), None)
        later = [] if first is None else plan.facts[first + 1 :]
        expected = sum(1 for f in later if f.event == "order_placed")
        assert (
            Counter(o for o, e in in_order.audit if e.decision is Decision.DUPLICATE)[plan.id]
            == expected
        )
