"""The outbox consumer that accrues referral commissions: each order judged once, and its
commission kept in step with it (``domain.referrals``).

It runs in the outbox dispatcher (``app.dispatcher``) beside the mail planner, at least once
per committed order event, sometimes twice at once (a relay and a sweep, or two processes).
One record is consumed in one transaction that first enters its id in ``referral_consumed``
(a second delivery finds it there, or waits on the first's insert and then finds it) and takes
the order's advisory lock, so the order's events are applied one at a time. Then:

1. what is stored about the order (its accrual decision, its commission, locked) is loaded;
2. when this event decides it (the first version seen placed and paid in full), the
   attribution of the host's or buyer's cart, the referrer's and the order's emails, the
   cards that paid it (Stripe's fingerprints, asked before the transaction opened) and the
   referrer's commissions that day are looked up, the referrer locked (their count of the
   day stays true), and the order's cards recorded for its payers;
3. ``domain.referrals.consume`` answers what to store: a decision, a commission, a reversal,
   log lines; it is stored and the transaction commits.

At most one commission per order, whatever the replays: the consumed record, the order's
lock, ``commissions``' unique order and ``audit``'s unique accrual decision each make sure.

Order of events: each payload is the order as of its version, and a commission reflects the
newest version applied, so a refund and a delivery handled in either order end the same. Until
the order is decided, though, its events are taken in version order: one that finds the order
undecided while an earlier one is still to be consumed raises :class:`EarlierEventFirst`, and
the dispatcher delivers it again later (its sweeps take an order's records in version order).
So the decision is made from the first version placed and paid in full, whatever arrived
first, nothing that happened to the order before its commission existed is missed, and a
placing is a ``duplicate`` only when the order was decided before it.

Failures: a payload that can't be read is logged and skipped (a raising consumer would hold
back the order's later events for every consumer, for ever). Stripe not answering for a
fingerprint doesn't hold anything back either: the order is judged without that card, and
the log line says so. PostgreSQL's failures propagate: outages, retried.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Final

import msgspec
import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.payments.gateway import GatewayError, PaymentGateway
from app.persistence.outbox import OutboxRecord
from app.referrals.repository import SqlReferrals
from domain.referrals import (
    Judgement,
    OrderFacts,
    Outcome,
    Party,
    Standing,
    Terms,
    consume,
    needs_judgement,
)

log = structlog.get_logger("teamcart.referrals")

DECISIONS = Counter(
    "teamcart_referral_decisions",
    "Lines of the referral decision log written, by decision.",
    ["decision"],
)
UNREADABLE = Counter(
    "teamcart_referral_unreadable", "Order events the referral accrual could not read."
)
CARDS_UNKNOWN = Counter(
    "teamcart_referral_fingerprints_unavailable",
    "Payments judged without their card's fingerprint (Stripe did not answer).",
)

HANDLED_EVENTS: Final = frozenset(
    {
        "order_placed",
        "order_payment_updated",
        "order_refunded",
        "order_delivered",
        "order_cancelled",
        "order_rejected",
    }
)
"""The order events that can change a referral; a move such as ``order_accepted`` changes
nothing the next of these won't show (each carries the whole order)."""

FINGERPRINT_TIMEOUT_SECONDS: Final = 3.0


class EarlierEventFirst(Exception):
    """An event of an undecided order arrived before an earlier one of it was consumed: the
    dispatcher delivers it again, after that one."""

    def __init__(self, order_id: str, version: int) -> None:
        super().__init__(f"order {order_id} version {version}: an earlier event comes first")


# --- the order outbox payload (the fields referrals read; the rest are ignored) ----------


class _Payment(msgspec.Struct, frozen=True):
    user_id: str
    method: str
    status: str = ""
    refunded_minor: int = 0
    reference: str | None = None


class _HistoryEntry(msgspec.Struct, frozen=True):
    status: str
    at: datetime


class _Order(msgspec.Struct, frozen=True):
    id: str
    kind: str
    status: str
    host_user_id: str
    currency: str
    subtotal_minor: int
    total_minor: int
    created_at: datetime
    payments: list[_Payment] = msgspec.field(default_factory=list)
    history: list[_HistoryEntry] = msgspec.field(default_factory=list)
    teamcart_id: str | None = None


class _OrderEvent(msgspec.Struct, frozen=True):
    event: str
    order: _Order


_decoder = msgspec.json.Decoder(_OrderEvent)


def _is_uuid(text: str | None) -> bool:
    if not text:
        return False
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def order_facts(record: OutboxRecord) -> tuple[OrderFacts, _Order]:
    """The order as the record shows it (``msgspec.ValidationError`` if it can't be read)."""
    order = _decoder.decode(record.payload).order
    if not _is_uuid(order.id):
        raise msgspec.ValidationError(f"the order id {order.id!r} is not a UUID")
    placed_at = next((e.at for e in order.history if e.status == "placed"), order.created_at)
    people = [order.host_user_id, *(payment.user_id for payment in order.payments)]
    facts = OrderFacts(
        order_id=order.id,
        version=record.version,
        event=record.event_type,
        status=order.status,
        currency=order.currency,
        subtotal_minor=order.subtotal_minor,
        total_minor=order.total_minor,
        refunded_minor=sum(payment.refunded_minor for payment in order.payments),
        payment_statuses=tuple(payment.status for payment in order.payments),
        participant_user_ids=frozenset(user_id for user_id in people if _is_uuid(user_id)),
        placed_at=placed_at,
    )
    return facts, order


def terms_of(settings: Settings) -> Terms:
    return Terms(
        commission_bps=settings.referral_commission_bps,
        minimum_minor=MappingProxyType(dict(settings.referral_min_order_minor)),
        velocity_per_day=settings.referral_velocity_per_day,
    )


class ReferralAccrual:
    """The outbox consumer (``async (record) -> None``), built once in ``app.wiring`` and
    passed to the dispatcher's consumers. ``gateway`` reads the cards that paid an order."""

    def __init__(self, engine: AsyncEngine, gateway: PaymentGateway, terms: Terms) -> None:
        self.engine = engine
        self.gateway = gateway
        self.terms = terms

    async def __call__(self, record: OutboxRecord) -> None:
        if record.aggregate_type != "order" or record.event_type not in HANDLED_EVENTS:
            return
        try:
            facts, order = order_facts(record)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            UNREADABLE.inc()
            log.error("referral_payload_unreadable", outbox_id=record.id, error=str(exc))
            return
        async with self.engine.connect() as conn:
            referrals = SqlReferrals(conn)
            if await referrals.was_consumed(record.id):
                return
            decision = await referrals.decision_of(facts.order_id)
        cards = None
        if needs_judgement(Standing(decision), facts):  # Stripe is asked with no lock held
            cards = await self._cards(order)
        await self._consume(record, facts, order, cards)

    async def _consume(
        self,
        record: OutboxRecord,
        facts: OrderFacts,
        order: _Order,
        cards: Sequence[tuple[str, str]] | None,
    ) -> None:
        async with self.engine.begin() as conn:
            referrals = SqlReferrals(conn)
            if not await referrals.enter_consumed(record.id, facts.order_id, record.event_type):
                return  # consumed meanwhile, by another process
            await referrals.lock_order(facts.order_id)
            standing = await referrals.standing(facts.order_id)
            if standing.decision is None and await referrals.earlier_pending(
                facts.order_id, facts.version, sorted(HANDLED_EVENTS)
            ):
                raise EarlierEventFirst(facts.order_id, facts.version)
            judgement = None
            if needs_judgement(standing, facts):
                # Undecided before the transaction, so the cards were asked for then.
                assert cards is not None
                judgement = await self._judgement(referrals, facts, order, cards)
                await referrals.record_fingerprints(facts.order_id, cards)
            outcome = consume(standing, facts, judgement, str(uuid.uuid4()))
            referrer = _referrer_of(standing, judgement, outcome)
            await referrals.store(
                outcome, outbox_id=record.id, order=facts, referrer_user_id=referrer
            )
        self._logged(record, facts, outcome)

    async def _judgement(
        self,
        referrals: SqlReferrals,
        facts: OrderFacts,
        order: _Order,
        cards: Sequence[tuple[str, str]],
    ) -> Judgement:
        """What judging the order needs (``domain.referrals.Judgement``). A group order is
        attributed by its host's cart (the TeamCart), a single-payer one by its buyer's."""
        if order.kind == "group":
            cart_id = order.teamcart_id if _is_uuid(order.teamcart_id) else None
        else:
            cart_id = await referrals.shop_cart_of(facts.order_id)
        attribution = None if cart_id is None else await referrals.attribution_of(cart_id)
        if attribution is None:
            return Judgement(self.terms, None)
        referrer = attribution.referrer_user_id
        await referrals.lock_referrer(referrer)
        return Judgement(
            terms=self.terms,
            attribution=attribution,
            referrer=Party(
                user_ids=frozenset({referrer}),
                emails=await referrals.emails_of([referrer]),
                card_fingerprints=await referrals.fingerprints_of(referrer),
            ),
            referred=Party(
                user_ids=facts.participant_user_ids,
                emails=await referrals.emails_of(facts.participant_user_ids),
                card_fingerprints=frozenset(fingerprint for _, fingerprint in cards),
            ),
            commissions_that_day=await referrals.commissions_on(referrer, facts.placed_on),
        )

    async def _cards(self, order: _Order) -> list[tuple[str, str]]:
        """``(payer, fingerprint)`` of each online payment; a card Stripe can't tell us about
        now is left out (logged), rather than holding the order's events back."""
        paid = [
            payment
            for payment in order.payments
            if payment.method == "online" and payment.reference and _is_uuid(payment.user_id)
        ]
        found = await asyncio.gather(*(self._fingerprint(order.id, p) for p in paid))
        return [
            (p.user_id, fingerprint)
            for p, fingerprint in zip(paid, found, strict=True)
            if fingerprint
        ]

    async def _fingerprint(self, order_id: str, payment: _Payment) -> str | None:
        assert payment.reference is not None
        try:
            async with asyncio.timeout(FINGERPRINT_TIMEOUT_SECONDS):
                return await self.gateway.card_fingerprint(payment.reference)
        except (GatewayError, TimeoutError) as exc:
            CARDS_UNKNOWN.inc()
            log.warning(
                "referral_fingerprint_unavailable",
                order_id=order_id,
                payment_intent_id=payment.reference,
                error=repr(exc),
            )
            return None

    def _logged(self, record: OutboxRecord, facts: OrderFacts, outcome: Outcome) -> None:
        for entry in outcome.entries:
            DECISIONS.labels(entry.decision.value).inc()
        if outcome.entries:
            log.info(
                "referral_decided",
                outbox_id=record.id,
                order_id=facts.order_id,
                decisions=[entry.decision.value for entry in outcome.entries],
            )


def _referrer_of(standing: Standing, judgement: Judgement | None, outcome: Outcome) -> str | None:
    """Whose referral the log lines are about, if anyone's."""
    for commission in (outcome.commission, standing.commission):
        if commission is not None:
            return commission.referrer_user_id
    if judgement is not None and judgement.attribution is not None:
        return judgement.attribution.referrer_user_id
    return None
