"""Stripe's events: taken in exactly once, routed by metadata, and handed to the aggregate.

``handle_stripe_event`` runs one verified event as one unit of work: the event id goes into
the ``stripe_events`` inbox first (a duplicate delivery stops there), then its effect (the
cart saved with its version check, its outbox events), then the recorded outcome. What can't
be recorded is owed back in the same transaction and refunded once it commits. A transient
failure raises, rolls everything back, and Stripe delivers the event again.

Routing: ``payment_intent.*`` by ``metadata.teamcart_id`` (single-payer orders, by
``order_id``, are not handled yet); refunds and disputes by the PaymentIntent they name,
through the intents we created. Stripe does not order its events, so what has happened to a
capture (refunds, disputes) is stored by intent, and a capture reported late is judged with
it (``TeamCart.record_online_payment``).

Why one module of this length: every Stripe event type's meaning is here, beside the intake
that routes to it and the shape checks that guard it; split further, "what does a refund
event do?" would be answered in three places.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import structlog
from prometheus_client import Counter, Histogram
from sqlalchemy.exc import DBAPIError

from app.connect.events import CONNECT_EVENTS, apply_connect_event, malformed_connect
from app.failures import (
    ServiceUnavailableError,
    VersionConflictError,
    causes,
    is_unstorable_value,
)
from app.payments.amounts import from_stripe, to_stripe
from app.persistence.payments import IntentStatus
from app.unit_of_work import UnitOfWork, UnitOfWorkRunner
from app.use_cases.payments.intents import cancel_quietly
from app.use_cases.payments.metrics import ALERTS, AMOUNT_MISMATCHES
from app.use_cases.payments.refunds import owe_refund
from domain import errors
from domain.order import Order
from domain.payments import CaptureOutcome, PaymentStatus
from domain.teamcart import CartStatus, TeamCart

log = structlog.get_logger("teamcart.payments")

WEBHOOKS = Counter(
    "teamcart_webhooks_total", "Stripe webhook events by type and outcome", ["type", "outcome"]
)
WEBHOOK_SECONDS = Histogram(
    "teamcart_webhook_seconds",
    "Time to process one Stripe webhook, signature to answer",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
_MISMATCHES = frozenset({"quote_changed", "currency_mismatch", "amount_mismatch"})
REFUND_EVENTS = frozenset({"charge.refunded", "refund.created", "refund.updated"})
DISPUTE_EVENTS = frozenset({"charge.dispute.created", "charge.dispute.closed"})
CHECKOUT_EVENTS = frozenset({"checkout.session.completed", "checkout.session.expired"})
HOLD_EVENTS = frozenset({"payment_intent.amount_capturable_updated", "payment_intent.succeeded"})
"""A card held for capture on confirm is reported by ``amount_capturable_updated`` (the
emulator reports it as ``succeeded`` with the intent ``requires_capture``: both are read by the
intent's status)."""
DISPUTES_KEPT = frozenset({"won", "warning_closed"})
"""A closed dispute that leaves the money with the store (an inquiry closed is one too)."""


class EventOutcome(StrEnum):
    """What an event did, as the inbox records it and the webhook answers."""

    APPLIED = "applied"  # it changed what it concerns (or was already reflected there)
    DUPLICATE = "duplicate"  # this event id was taken in before
    IGNORED = "ignored"  # not ours, or nothing to do
    REFUNDED = "refunded"  # a capture nobody owed: given back
    REVIEW = "review"  # disputed, or otherwise for an operator
    REJECTED = "rejected"  # signed, but not shaped as Stripe shapes this event: never retried


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an event did, and why."""

    outcome: EventOutcome
    reason: str | None = None
    payment_intent_id: str | None = None
    cart_id: str | None = None


async def handle_stripe_event(runner: UnitOfWorkRunner, event: Mapping[str, Any]) -> Outcome:
    """Apply one verified Stripe event exactly once; raise on transient failure (→ 503)."""
    started = time.perf_counter()
    try:
        outcome = await runner.run(take_in_event, event)
    except VersionConflictError as exc:
        raise ServiceUnavailableError(
            "service_unavailable", "the cart kept changing; Stripe will retry"
        ) from exc
    except DBAPIError as exc:
        if not any(is_unstorable_value(cause) for cause in causes(exc)):
            raise  # the database is away: 503, and Stripe delivers it again
        # A value PostgreSQL refuses (out of range, not text): no redelivery will store it.
        outcome = await runner.run(reject_event, _Rejection(event, "a value can't be stored"))
    WEBHOOKS.labels(type=str(event["type"]), outcome=outcome.outcome).inc()
    WEBHOOK_SECONDS.observe(time.perf_counter() - started)
    return outcome


async def take_in_event(event: Mapping[str, Any], uow: UnitOfWork) -> Outcome:
    """The handler: the inbox, the effect, the recorded outcome, in one transaction."""
    event_id = str(event["id"])
    event_type = str(event["type"])
    obj: Mapping[str, Any] = event["data"]["object"]
    if not await uow.payments.claim_event(event_id, event_type):
        return Outcome(EventOutcome.DUPLICATE)
    problem = malformed(event_type, obj)
    if event_type in CONNECT_EVENTS:  # Stripe Connect (app.connect): it reads the envelope too
        problem = malformed_connect(event_type, obj, event)
    if problem is None:
        outcome = await _apply(uow, event_type, obj, event)
    else:
        outcome = _rejected(event_id, event_type, problem)
    await uow.payments.record_outcome(
        event_id, outcome.outcome, outcome.reason, outcome.payment_intent_id, outcome.cart_id
    )
    log.info(
        "stripe_event",
        event_id=event_id,
        type=event_type,
        outcome=outcome.outcome,
        reason=outcome.reason,
        payment_intent_id=outcome.payment_intent_id,
        teamcart_id=outcome.cart_id,
        member_user_id=_metadata(obj).get("member_user_id"),
    )
    return outcome


async def _apply(
    uow: UnitOfWork, event_type: str, obj: Mapping[str, Any], event: Mapping[str, Any]
) -> Outcome:
    if event_type in CONNECT_EVENTS:  # a store's Connect account or its payouts (app.connect)
        connected = await apply_connect_event(uow, event)
        return Outcome(EventOutcome(connected.outcome), connected.reason)
    if event_type.startswith("payment_intent."):
        metadata = _metadata(obj)
        intent_id = str(obj.get("id"))
        if metadata.get("teamcart_id"):
            return await _apply_to_cart(uow, event_type, obj, metadata)
        if metadata.get("order_id"):
            return await _apply_intent_to_order(uow, event_type, obj, str(metadata["order_id"]))
        return Outcome(EventOutcome.IGNORED, "not a TeamCart payment", intent_id)
    if event_type in CHECKOUT_EVENTS:
        return await _apply_checkout_session(uow, event_type, obj)
    if event_type in REFUND_EVENTS:
        return await _apply_refund(uow, event_type, obj)
    if event_type in DISPUTE_EVENTS:
        return await _apply_dispute(uow, event_type, obj)
    return Outcome(EventOutcome.IGNORED, f"{event_type} is not handled")


@dataclass(frozen=True, slots=True)
class _Rejection:
    event: Mapping[str, Any]
    reason: str


async def reject_event(rejection: _Rejection, uow: UnitOfWork) -> Outcome:
    """Take the event in as rejected, with nothing of it applied (its own transaction)."""
    event = rejection.event
    if not await uow.payments.claim_event(str(event["id"]), str(event["type"])):
        return Outcome(EventOutcome.DUPLICATE)
    outcome = _rejected(str(event["id"]), str(event["type"]), rejection.reason)
    await uow.payments.record_outcome(str(event["id"]), outcome.outcome, outcome.reason, None, None)
    return outcome


def _rejected(event_id: str, event_type: str, reason: str) -> Outcome:
    """A signed event no delivery will make good: answered 200 and recorded with its reason
    (a 5xx would have Stripe retry it for days to no end), and an operator alerted."""
    ALERTS.labels(kind="malformed_event").inc()
    log.error("stripe_event_rejected", event_id=event_id, type=event_type, reason=reason)
    return Outcome(EventOutcome.REJECTED, reason[:500])


# --- the shape of what we read ---------------------------------------------------------------


def malformed(event_type: str, obj: Mapping[str, Any]) -> str | None:
    """Why a signed event's object can't be what Stripe sends, or ``None``: every field the
    handlers read, checked for its type before anything is done with it."""
    if event_type.startswith("payment_intent."):
        return _malformed_intent(obj)
    if event_type == "charge.refunded":
        listed = obj.get("refunds", {})
        data = listed.get("data", []) if isinstance(listed, Mapping) else None
        if not isinstance(data, list):
            return "refunds.data is not a list"
        return _first(
            _text(obj, "payment_intent"),
            _amount(obj, "amount", required=False),
            _amount(obj, "amount_refunded", required=False),
        ) or next((p for refund in data if (p := _malformed_refund(refund))), None)
    if event_type in REFUND_EVENTS:
        return _first(_text(obj, "payment_intent"), _malformed_refund(obj))
    if event_type in DISPUTE_EVENTS:
        return _first(
            _text(obj, "id"), _text(obj, "payment_intent"), _amount(obj, "amount", required=False)
        )
    if event_type in CHECKOUT_EVENTS:
        metadata = obj.get("metadata", {})
        if metadata is not None and not isinstance(metadata, Mapping):
            return "metadata is not an object"
        if event_type == "checkout.session.expired" or obj.get("payment_status") != "paid":
            return _text(obj, "id")
        return _first(
            _text(obj, "id"),
            _text(obj, "payment_intent"),
            _amount(obj, "amount_total", required=True),
            _text(obj, "currency"),
        )
    return None


def _malformed_intent(obj: Mapping[str, Any]) -> str | None:
    metadata = obj.get("metadata", {})
    if metadata is not None and not isinstance(metadata, Mapping):
        return "metadata is not an object"
    metadata = metadata or {}
    if not metadata.get("teamcart_id") and not metadata.get("order_id"):
        return _text(obj, "id")
    return _first(
        _text(obj, "id"),
        _amount(obj, "amount", required=False),
        _amount(obj, "amount_received", required=False),
        _text(obj, "currency"),
    )


def _malformed_refund(refund: object) -> str | None:
    if not isinstance(refund, Mapping):
        return "a refund is not an object"
    return _first(_text(refund, "id"), _amount(refund, "amount", required=True))


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _first(*problems: str | None) -> str | None:
    return next((problem for problem in problems if problem), None)


def _text(obj: Mapping[str, Any], name: str) -> str | None:
    value = obj.get(name)
    return None if isinstance(value, str) and value else f"{name} is not a non-empty string"


def _amount(obj: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = obj.get(name)
    if value is None and not required:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**15:
        return None
    return f"{name} is not a whole non-negative amount"


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


# --- payment_intent.* ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _IntentEvent:
    intent_id: str
    cart_id: str
    user_id: str
    currency: str
    received: int  # Stripe's units
    metadata: Mapping[str, Any]


async def _apply_to_cart(
    uow: UnitOfWork, event_type: str, intent: Mapping[str, Any], metadata: Mapping[str, Any]
) -> Outcome:
    evt = _IntentEvent(
        intent_id=str(intent["id"]),
        cart_id=str(metadata["teamcart_id"]),
        user_id=str(metadata.get("member_user_id", "")),
        currency=str(intent.get("currency", "")).upper(),
        received=int(intent.get("amount_received") or intent.get("amount") or 0),
        metadata=metadata,
    )
    # Ids that can't be ours name no cart: a capture for them is refunded, like any other
    # capture for an unknown cart or member.
    known = _is_uuid(evt.cart_id) and _is_uuid(evt.user_id)
    cart = await uow.carts.get(evt.cart_id) if known else None
    if intent.get("status") == "requires_capture" and event_type in HOLD_EVENTS:
        return await _authorized(uow, evt, cart)
    if event_type == "payment_intent.succeeded":
        return await _captured(uow, evt, cart)
    if cart is None or not cart.is_member(evt.user_id):
        cart_id = None if cart is None else cart.id
        return Outcome(EventOutcome.IGNORED, "unknown cart or member", evt.intent_id, cart_id)
    if event_type == "payment_intent.payment_failed":
        await uow.payments.close_open_intent(evt.intent_id, IntentStatus.FAILED)
        try:
            cart.mark_payment_failed(evt.user_id, evt.intent_id)
        except errors.DomainError as refusal:
            return Outcome(EventOutcome.IGNORED, refusal.code, evt.intent_id, evt.cart_id)
        return Outcome(EventOutcome.APPLIED, None, evt.intent_id, evt.cart_id)
    if event_type == "payment_intent.canceled":
        await uow.payments.close_open_intent(evt.intent_id, IntentStatus.CANCELED)
        cart.note_payment_canceled(evt.user_id, evt.intent_id)
        return Outcome(EventOutcome.APPLIED, None, evt.intent_id, evt.cart_id)
    return Outcome(EventOutcome.IGNORED, f"{event_type} is not handled", evt.intent_id, evt.cart_id)


async def _authorized(uow: UnitOfWork, evt: _IntentEvent, cart: TeamCart | None) -> Outcome:
    """A card held for a share (capture on confirm): the member is ``authorized``. A hold
    nobody owes, or of the wrong amount, is released (the intent cancelled: no refund, no
    fee), never kept."""
    refusal = "unknown_cart_or_member"
    if cart is not None and cart.is_member(evt.user_id):
        try:
            cart.record_online_payment(
                evt.user_id,
                _received_minor(evt.received, evt.currency),
                evt.currency,
                _quote_version(evt.metadata),
                evt.intent_id,
                authorized=True,
            )
        except errors.DomainError as refused:
            refusal = refused.code
        else:
            return Outcome(EventOutcome.APPLIED, "authorized", evt.intent_id, evt.cart_id)
    ALERTS.labels(kind="hold_released").inc()
    await cancel_quietly(uow.stripe, evt.intent_id)
    return Outcome(EventOutcome.REFUNDED, f"hold released: {refusal}", evt.intent_id, evt.cart_id)


async def _captured(uow: UnitOfWork, evt: _IntentEvent, cart: TeamCart | None) -> Outcome:
    """A capture: recorded if it is what the member owes, else owed back."""
    if cart is None or not cart.is_member(evt.user_id):
        ALERTS.labels(kind="unknown_cart_payment").inc()
        await owe_refund(
            uow,
            evt.intent_id,
            amount=evt.received,
            currency=evt.currency,
            reason="unknown_cart_or_member",
            cart_id=None if cart is None else cart.id,
        )
        return Outcome(EventOutcome.REFUNDED, "unknown_cart_or_member", evt.intent_id, None)
    facts = await uow.payments.intent_facts(evt.intent_id)
    try:
        decision = cart.record_online_payment(
            evt.user_id,
            _received_minor(evt.received, evt.currency),
            evt.currency,
            _quote_version(evt.metadata),
            evt.intent_id,
            refunded_minor=from_stripe(facts.refunded, evt.currency),
            disputed=facts.disputed,
        )
    except errors.DomainError as refusal:
        return await _refuse(uow, evt, cart, refusal)
    await uow.payments.set_intent_status(
        evt.intent_id, IntentStatus.SUCCEEDED
    )  # never undoes a refund
    if decision is CaptureOutcome.UNDER_REVIEW:
        reason = "disputed" if facts.disputed else "partially_refunded"
        ALERTS.labels(kind="capture_under_review").inc()
        log.error(
            "payment_under_review",
            teamcart_id=evt.cart_id,
            member_user_id=evt.user_id,
            payment_intent_id=evt.intent_id,
            reason=reason,
        )
        return Outcome(EventOutcome.REVIEW, reason, evt.intent_id, evt.cart_id)
    status = cart.members[evt.user_id].payment.status
    if decision is not CaptureOutcome.RECORDED and status is PaymentStatus.REFUNDED:
        return Outcome(EventOutcome.REFUNDED, "already_refunded", evt.intent_id, evt.cart_id)
    if decision is not CaptureOutcome.RECORDED and status is PaymentStatus.REVIEW:
        return Outcome(EventOutcome.REVIEW, "under_review", evt.intent_id, evt.cart_id)
    return Outcome(EventOutcome.APPLIED, None, evt.intent_id, evt.cart_id)


async def _refuse(
    uow: UnitOfWork, evt: _IntentEvent, cart: TeamCart, refusal: errors.DomainError
) -> Outcome:
    """A capture the member didn't owe (wrong amount, quote, currency; paid twice; the cart
    no longer takes payments): owed back, and the member sees it came back."""
    if refusal.code in _MISMATCHES:
        AMOUNT_MISMATCHES.inc()
    await owe_refund(
        uow,
        evt.intent_id,
        amount=evt.received,
        currency=evt.currency,
        reason=refusal.code,
        cart_id=evt.cart_id,
    )
    cart.record_refund(evt.user_id, evt.intent_id, from_stripe(evt.received, evt.currency))
    ALERTS.labels(kind="rejected_payment").inc()
    log.warning(
        "payment_rejected",
        teamcart_id=evt.cart_id,
        member_user_id=evt.user_id,
        payment_intent_id=evt.intent_id,
        reason=refusal.code,
        detail=refusal.detail,
    )
    return Outcome(EventOutcome.REFUNDED, refusal.code, evt.intent_id, evt.cart_id)


def _quote_version(metadata: Mapping[str, Any]) -> int:
    """The quote the member paid against, as our intent's metadata says (-1: unreadable)."""
    try:
        return int(metadata.get("quote_version", -1))
    except (TypeError, ValueError):
        return -1


def _received_minor(received: int, currency: str) -> int:
    """What Stripe captured, in our minor units; a capture that isn't a whole number of them
    can't be anyone's share."""
    amount = from_stripe(received, currency)
    if to_stripe(amount, currency) != received:
        raise errors.AmountMismatch(f"Paid {received} {currency} (Stripe units), not a share.")
    return amount


# --- single-payer orders, routed by metadata.order_id -----------------------------------------


async def _order_named(uow: UnitOfWork, order_id: str) -> Order | None:
    return await uow.orders.get(order_id) if _is_uuid(order_id) else None


async def _apply_intent_to_order(
    uow: UnitOfWork, event_type: str, intent: Mapping[str, Any], order_id: str
) -> Outcome:
    intent_id = str(intent["id"])
    order = await _order_named(uow, order_id)
    if event_type == "payment_intent.succeeded":
        received = int(intent.get("amount_received") or intent.get("amount") or 0)
        currency = str(intent.get("currency", "")).upper()
        return await _order_paid(uow, order, intent_id, received, currency)
    if order is None:
        return Outcome(EventOutcome.IGNORED, "unknown order", intent_id)
    if event_type == "payment_intent.payment_failed":
        failed = order.payment_failed(intent_id, datetime.now(UTC))
        return Outcome(
            EventOutcome.APPLIED if failed else EventOutcome.IGNORED,
            None if failed else f"the order is {order.status}, or paid by another attempt",
            intent_id,
        )
    return Outcome(EventOutcome.IGNORED, f"{event_type} changes no order", intent_id)


async def _apply_checkout_session(
    uow: UnitOfWork, event_type: str, session: Mapping[str, Any]
) -> Outcome:
    """A Checkout Session paid (as its intent's success: whichever comes first counts, the
    other is told again) or expired unpaid (the order is cancelled, its stock returned)."""
    order_id = str(_metadata(session).get("order_id") or "")
    if not order_id:
        return Outcome(EventOutcome.IGNORED, "not an order's checkout")
    order = await _order_named(uow, order_id)
    if event_type == "checkout.session.expired":
        if order is None or not order.expire_checkout(str(session["id"]), datetime.now(UTC)):
            return Outcome(EventOutcome.IGNORED, "no unpaid order waits on this session")
        await uow.catalog.return_stock(order.lines)
        return Outcome(EventOutcome.APPLIED, "checkout expired")
    if session.get("payment_status") != "paid":
        return Outcome(EventOutcome.IGNORED, "completed, not paid yet")
    return await _order_paid(
        uow,
        order,
        str(session["payment_intent"]),
        int(session["amount_total"]),
        str(session["currency"]).upper(),
    )


async def _order_paid(
    uow: UnitOfWork, order: Order | None, intent_id: str, received: int, currency: str
) -> Outcome:
    """A capture for a single-payer order: it pays the order, or, when the order no longer
    takes it or it isn't what is owed, it is refunded in full (never kept, never paid)."""
    if order is not None:
        try:
            received_minor = from_stripe(received, currency)
        except ValueError:
            received_minor = -1  # a currency we don't price in: not what is owed
        if order.record_payment(intent_id, received_minor, currency, datetime.now(UTC)):
            return Outcome(EventOutcome.APPLIED, None, intent_id)
        mismatch = order.awaits_payment
        reason = "amount_mismatch" if mismatch else f"order_{order.status}"
    else:
        mismatch, reason = False, "unknown_order"
    if mismatch:
        AMOUNT_MISMATCHES.inc()
        ALERTS.labels(kind="amount_mismatch").inc()
    await owe_refund(
        uow, intent_id, amount=received, currency=currency, reason=reason, cart_id=None
    )
    return Outcome(EventOutcome.REFUNDED, reason, intent_id)


# --- refunds and disputes --------------------------------------------------------------------


async def _apply_refund(uow: UnitOfWork, event_type: str, obj: Mapping[str, Any]) -> Outcome:
    """Sync refunds by refund id: ours and ones made in the Stripe dashboard.

    A member's payment shows ``refunded`` only once refunds cover the whole capture; a
    partial refund is recorded and alerted; before the cart became an order it holds the
    payment for review (it no longer pays the share), after, the order keeps it paid.
    """
    intent_id = str(obj.get("payment_intent") or "")
    currency = str(obj.get("currency", "")).upper()
    owner = await uow.payments.intent_owner(intent_id)
    # The cart before the intent's rows, as every path takes them on its locked retry (a
    # deadlock PostgreSQL breaks between first tries is retried that way).
    cart = await uow.carts.get(owner.cart_id) if owner is not None else None
    listed = [obj]
    if event_type == "charge.refunded":
        listed = (obj.get("refunds") or {}).get("data") or []
    for refund in listed:
        await _record_refund(uow, intent_id, currency, refund)
    on_order = await _sync_order_refunds(uow, intent_id, currency)
    if owner is None:  # a single-payer order's payment, or not ours
        if on_order:
            return Outcome(EventOutcome.APPLIED, None, intent_id)
        return Outcome(EventOutcome.IGNORED, "unknown intent", intent_id)
    if event_type == "charge.refunded" and obj.get("amount") is not None:
        captured, refunded = int(obj["amount"]), int(obj.get("amount_refunded") or 0)
    else:
        captured = to_stripe(owner.amount_minor, owner.currency)
        refunded = await uow.payments.refunded_total(intent_id)
    if refunded < captured:
        if not on_order:  # on an order, a partial refund is the store's own decision
            ALERTS.labels(kind="partial_refund").inc()
        log.warning(
            "partial_refund", payment_intent_id=intent_id, refunded=refunded, captured=captured
        )
        if (
            cart is not None
            and cart.is_member(owner.user_id)
            and cart.status in (CartStatus.LOCKED, CartStatus.READY_TO_CONFIRM)
            and cart.flag_payment_for_review(owner.user_id, intent_id)
        ):
            # Before the order, a payment partly given back no longer pays the share: it is
            # held for an operator, as when the refund is reported before the capture.
            return Outcome(EventOutcome.REVIEW, "partially_refunded", intent_id, owner.cart_id)
        return Outcome(
            EventOutcome.APPLIED,
            f"partial refund: {refunded} of {captured}",
            intent_id,
            owner.cart_id,
        )
    await uow.payments.set_intent_status(intent_id, IntentStatus.REFUNDED)
    if cart is None or not cart.is_member(owner.user_id):
        ALERTS.labels(kind="refund_for_departed_member").inc()
        return Outcome(
            EventOutcome.APPLIED, "the member is no longer in the cart", intent_id, owner.cart_id
        )
    cart.record_refund(owner.user_id, intent_id, from_stripe(refunded, currency))
    return Outcome(EventOutcome.APPLIED, None, intent_id, owner.cart_id)


async def _record_refund(
    uow: UnitOfWork, intent_id: str, currency: str, refund: Mapping[str, Any]
) -> None:
    """One refund by Stripe's id; a failed one alerts, and one we owe is owed again."""
    status = str(refund.get("status") or "succeeded")
    await uow.payments.record_refund(
        str(refund["id"]),
        intent_id,
        amount=int(refund.get("amount") or 0),
        currency=currency,
        status=status,
        reason="stripe",
    )
    if status == "failed":
        ALERTS.labels(kind="refund_failed").inc()
        log.error("refund_failed", payment_intent_id=intent_id, refund_id=refund["id"])
        reason = str(refund.get("failure_reason") or "failed")
        if await uow.payments.reopen_refund(intent_id, f"Stripe: {reason}"):
            uow.refund_after_commit(payment_intent_ids=[intent_id])


async def _sync_order_refunds(uow: UnitOfWork, intent_id: str, currency: str) -> bool:
    """The order the intent paid into shows what is given back on it (``refunded_minor``):
    Stripe's refunds that did not fail, by whoever started them, and ours still owed.
    Whether the intent is on an order."""
    order_id = await uow.orders.id_paid_by(intent_id)
    order = None if order_id is None else await uow.orders.get(order_id)
    if order is None:
        return False
    so_far = await uow.payments.refunded_so_far(intent_id)
    payment = next(p for p in order.payments if p.reference == intent_id)
    refunded = payment.amount_minor if so_far.in_full else from_stripe(so_far.amount, currency)
    order.note_refunded(intent_id, refunded, datetime.now(UTC))
    return True


async def _apply_dispute(uow: UnitOfWork, event_type: str, dispute: Mapping[str, Any]) -> Outcome:
    """A dispute opened (the payment is ``disputed``: not counted as paid) or closed
    (``won``, or ``lost``: never counted as paid again), on the cart and on its order."""
    intent_id = str(dispute.get("payment_intent") or "")
    status = str(dispute.get("status") or "needs_response")
    closed = event_type == "charge.dispute.closed"
    kept = closed and status in DISPUTES_KEPT
    ALERTS.labels(kind=("dispute_won" if kept else "dispute_lost") if closed else "dispute").inc()
    log.error(
        "payment_dispute_closed" if closed else "payment_disputed",
        payment_intent_id=intent_id,
        dispute_id=dispute.get("id"),
        reason=dispute.get("reason"),
        status=status,
    )
    await uow.payments.record_dispute(
        str(dispute.get("id") or ""),
        intent_id,
        amount=int(dispute.get("amount") or 0),
        currency=str(dispute.get("currency") or "").upper(),
        reason=str(dispute.get("reason") or "unknown"),
        status=status,
    )
    reason = f"dispute {status}" if closed else str(dispute.get("reason") or "dispute")
    owner = await uow.payments.intent_owner(intent_id)
    cart = await uow.carts.get(owner.cart_id) if owner is not None else None  # cart first
    if owner is not None and cart is not None and cart.is_member(owner.user_id) and not kept:
        cart.flag_payment_for_review(owner.user_id, intent_id)
    order_id = await uow.orders.id_paid_by(intent_id)
    order = None if order_id is None else await uow.orders.get(order_id)
    if order is not None:
        marked = PaymentStatus.DISPUTED
        if closed:
            marked = PaymentStatus.WON if kept else PaymentStatus.LOST
        order.note_dispute(intent_id, marked, datetime.now(UTC))
    if owner is None and order is None:
        # Stored all the same: if its capture is reported later, it goes to review.
        return Outcome(EventOutcome.REVIEW, "dispute on an unknown payment", intent_id)
    return Outcome(EventOutcome.REVIEW, reason, intent_id, owner.cart_id if owner else None)
