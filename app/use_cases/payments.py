"""Online payments: starting a member's PaymentIntent, and what each Stripe event means.

The money rules (ARCHITECTURE.md): the server computes every amount; a payment whose amount,
currency or quote doesn't match what is owed never marks a member paid; every payment Stripe
captured for a cart ends recorded or refunded; each Stripe event takes effect once.

``handle_stripe_event`` runs one event in one transaction: the event id goes into the
``stripe_events`` inbox first (a duplicate delivery stops there), then the effect, the cart's
save (version-checked) and its outbox events, then the recorded outcome. Anything that can't
be recorded is refunded inside that transaction; if the refund call fails, everything rolls
back and Stripe delivers the event again.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import Counter, Histogram
from sqlalchemy import RowMapping, bindparam, case, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.auth import Principal
from app.errors import ApiError
from app.payments.amounts import stripe_exponent, to_stripe
from app.payments.gateway import (
    AlreadyRefunded,
    CardDeclined,
    GatewayError,
    IntentInfo,
    PaymentGateway,
)
from app.persistence import carts as cart_repo
from app.persistence.outbox import OutboxRecord, append_events, relay_committed
from app.persistence.tables import (
    disputes,
    order_payments,
    payment_intents,
    refund_requests,
    refunds,
    stripe_events,
    teamcart_members,
    teamcarts,
)
from domain import errors
from domain.money import exponent
from domain.payments import CaptureOutcome, PaymentStatus
from domain.teamcart import CartStatus, TeamCart
from realtime.cart_view import cart_view

log = structlog.get_logger("teamcart.payments")

WEBHOOKS = Counter(
    "teamcart_webhooks_total", "Stripe webhook events by type and outcome", ["type", "outcome"]
)
WEBHOOK_SECONDS = Histogram(
    "teamcart_webhook_seconds",
    "Time to process one Stripe webhook, signature to answer",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
AMOUNT_MISMATCHES = Counter(
    "teamcart_payment_amount_mismatches_total",
    "Captured payments whose amount, currency or quote did not match what was owed",
)
REFUNDS = Counter("teamcart_refunds_total", "Refunds we asked Stripe for, by reason", ["reason"])
ALERTS = Counter(
    "teamcart_payment_alerts_total",
    "Payment events that need an operator (rejections, disputes, failed refunds)",
    ["kind"],
)

MAX_ATTEMPTS = 2  # the retry locks the cart: it cannot conflict again
PAYABLE_STATUSES = frozenset({PaymentStatus.NONE, PaymentStatus.FAILED, PaymentStatus.REFUNDED})


@dataclass(frozen=True, slots=True)
class OnlinePayment:
    payment_intent_id: str
    client_secret: str
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an event did: applied, duplicate, ignored, refunded or review, and why."""

    outcome: str
    reason: str | None = None
    payment_intent_id: str | None = None
    cart_id: str | None = None
    relayed: list[OutboxRecord] = field(default_factory=list)
    """The cart's new outbox records, for this process's projection once committed."""


# --- starting a payment ----------------------------------------------------------------------


def _check_payable(cart: TeamCart, user_id: str) -> int:
    """The member's share, if they may start paying it online now."""
    if not cart.is_member(user_id):
        raise errors.NotAMember()
    if cart.status is not CartStatus.LOCKED:
        raise errors.CartNotLocked(f"The cart is {cart.status}; online payment needs it locked.")
    payment = cart.members[user_id].payment
    if payment.status not in PAYABLE_STATUSES:
        raise errors.AlreadyPaid(f"Your payment is already {payment.status}.")
    share = cart.share_of(user_id)
    if share == 0:
        raise errors.NothingOwed()
    return share


async def start_online_payment(
    engine: AsyncEngine, gateway: PaymentGateway, actor: Principal, cart_id: str
) -> OnlinePayment:
    """Create (or reuse) the member's PaymentIntent for their share of the current quote."""
    async with engine.connect() as conn:
        cart = await cart_repo.load_cart(conn, cart_id)
        if cart is None:
            raise ApiError(404, "cart_not_found", f"no cart with id {cart_id}")
        share = _check_payable(cart, actor.user_id)
        existing = (
            (
                await conn.execute(
                    select(payment_intents)
                    .where(
                        payment_intents.c.cart_id == cart_id,
                        payment_intents.c.user_id == actor.user_id,
                        payment_intents.c.quote_version == cart.quote_version,
                    )
                    .order_by(payment_intents.c.attempt.desc())
                    .limit(1)
                )
            )
            .mappings()
            .one_or_none()
        )
    if existing is not None and existing["status"] == "open":
        return _online_payment(existing)
    attempt = 1 if existing is None else existing["attempt"] + 1
    try:
        amount = to_stripe(share, cart.currency)
    except ValueError as exc:
        raise ApiError(422, "currency_not_payable_online", str(exc)) from exc
    if from_stripe(amount, cart.currency) != share:
        # Stripe rounds three-decimal currencies to tens: it would charge a different amount.
        raise ApiError(
            422,
            "amount_not_payable_online",
            f"Stripe can't charge exactly {share} in {cart.currency} minor units; "
            "please pay cash on delivery",
        )
    created = await _create_intent(gateway, cart, actor.user_id, amount, attempt)
    intent = created.id

    async with engine.begin() as conn:
        # The cart row lock orders us against tip/coupon/unlock, which refuse open intents.
        current = (
            await conn.execute(
                select(teamcarts.c.quote_version, teamcarts.c.status)
                .where(teamcarts.c.id == cart_id)
                .with_for_update()
            )
        ).one()
        if current.quote_version != cart.quote_version or current.status != CartStatus.LOCKED:
            await _cancel_quietly(gateway, intent)
            raise errors.QuoteChanged("The cart's quote changed; start the payment again.")
        inserted = await conn.execute(
            insert(payment_intents)
            .values(
                id=intent,
                cart_id=cart_id,
                user_id=actor.user_id,
                quote_version=cart.quote_version,
                attempt=attempt,
                amount_minor=share,
                currency=cart.currency,
                client_secret=created.client_secret,
                status="open",
            )
            .on_conflict_do_nothing()
            .returning(*payment_intents.c)
        )
        row = inserted.mappings().one_or_none()
        if row is None:  # a concurrent call won this attempt: use its intent
            row = (
                (
                    await conn.execute(
                        select(payment_intents).where(
                            payment_intents.c.cart_id == cart_id,
                            payment_intents.c.user_id == actor.user_id,
                            payment_intents.c.quote_version == cart.quote_version,
                            payment_intents.c.attempt == attempt,
                        )
                    )
                )
                .mappings()
                .one()
            )
    if row["id"] != intent:
        await _cancel_quietly(gateway, intent)
    log.info(
        "payment_intent_started",
        teamcart_id=cart_id,
        member_user_id=actor.user_id,
        payment_intent_id=row["id"],
        attempt=attempt,
    )
    return _online_payment(row)


async def _create_intent(
    gateway: PaymentGateway, cart: TeamCart, user_id: str, amount: int, attempt: int
) -> IntentInfo:
    try:
        intent = await gateway.create_payment_intent(
            amount=amount,
            currency=cart.currency,
            metadata={
                "source": "teamcart",
                "teamcart_id": cart.id,
                "member_user_id": user_id,
                "quote_version": str(cart.quote_version),
                "purpose": "member_payment",
            },
            idempotency_key=f"teamcart-{cart.id}-{user_id}-q{cart.quote_version}-a{attempt}",
        )
    except GatewayError as exc:
        log.warning("payment_intent_create_failed", teamcart_id=cart.id, error=str(exc))
        raise ApiError(502, "payment_provider_unavailable", "Stripe did not answer") from exc
    return intent


async def _cancel_quietly(gateway: PaymentGateway, intent_id: str) -> None:
    try:
        await gateway.cancel_payment_intent(intent_id)
    except GatewayError:
        log.warning("payment_intent_cancel_failed", payment_intent_id=intent_id)


def _online_payment(row: RowMapping) -> OnlinePayment:
    return OnlinePayment(
        payment_intent_id=row["id"],
        client_secret=row["client_secret"],
        amount_minor=row["amount_minor"],
        currency=row["currency"],
    )


async def confirm_online_payment(
    engine: AsyncEngine,
    gateway: PaymentGateway,
    actor: Principal,
    cart_id: str,
    payment_intent_id: str,
    payment_method: str,
) -> str:
    """Confirm the caller's own open PaymentIntent with a payment method from Stripe.js.

    For Stripe.js builds that create a payment method but do not confirm (the emulator's),
    and any client that prefers confirming on the server. The outcome still arrives by
    webhook; this returns Stripe's status (``succeeded``, ``processing``, …).
    """
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(payment_intents.c.status).where(
                    payment_intents.c.id == payment_intent_id,
                    payment_intents.c.cart_id == cart_id,
                    payment_intents.c.user_id == actor.user_id,
                )
            )
        ).one_or_none()
    if row is None:
        raise ApiError(404, "payment_not_found", "no such payment of yours on this cart")
    if row.status != "open":
        raise ApiError(409, "payment_not_open", f"this payment is already {row.status}")
    try:
        return await gateway.confirm_payment_intent(payment_intent_id, payment_method)
    except CardDeclined as exc:
        # Known failed now: a retry starts a new attempt (the webhook will agree later).
        async with engine.begin() as conn:
            await _mark_open_intent_failed(conn, payment_intent_id)
        raise ApiError(402, "card_declined", str(exc)) from exc
    except GatewayError as exc:
        raise ApiError(502, "payment_provider_unavailable", "Stripe did not answer") from exc


async def ensure_no_open_intents(conn: AsyncConnection, cart_id: str) -> None:
    """Tip, coupon and unlock change what members owe: refused while anyone is paying."""
    open_intents = await conn.execute(
        select(func.count())
        .select_from(payment_intents)
        .where(payment_intents.c.cart_id == cart_id, payment_intents.c.status == "open")
    )
    if open_intents.scalar_one():
        raise errors.PaymentActivityStarted("A member has started paying online.")


# --- refunds ---------------------------------------------------------------------------------


def from_stripe(amount: int, currency: str) -> int:
    """Stripe's amount back in our minor units, for display of money we give back."""
    return amount // int(10 ** (stripe_exponent(currency) - exponent(currency)))


async def request_refund(
    conn: AsyncConnection,
    payment_intent_id: str,
    *,
    amount: int,
    currency: str,
    reason: str,
    cart_id: str | None = None,
) -> None:
    """Owe a refund, in the caller's transaction; ``carry_out_refunds`` pays it after commit.

    One request per PaymentIntent, so however often a decision is repeated (redelivered
    webhooks, retries) the money goes back once.
    """
    await conn.execute(
        insert(refund_requests)
        .values(
            payment_intent_id=payment_intent_id,
            cart_id=cart_id,
            amount=amount,
            currency=currency,
            reason=reason,
        )
        .on_conflict_do_nothing()
    )
    REFUNDS.labels(reason=reason).inc()
    log.warning(
        "refund_requested",
        payment_intent_id=payment_intent_id,
        teamcart_id=cart_id,
        amount=amount,
        currency=currency,
        reason=reason,
    )


async def request_refunds_for_cart(conn: AsyncConnection, cart: TeamCart, reason: str) -> None:
    """Owe a refund for every online payment a cancelled or expired cart marked refunded."""
    for member in cart.members.values():
        payment = member.payment
        if payment.status is PaymentStatus.REFUNDED and payment.reference:
            await request_refund(
                conn,
                payment.reference,
                amount=to_stripe(payment.amount_minor, cart.currency),
                currency=cart.currency,
                reason=reason,
                cart_id=cart.id,
            )


REFUND_ALERT_AFTER_ATTEMPTS = 5


async def carry_out_refunds(
    engine: AsyncEngine,
    gateway: PaymentGateway,
    *,
    payment_intent_ids: Sequence[str] | None = None,
    cart_id: str | None = None,
    limit: int = 50,
) -> int:
    """Ask Stripe for the refunds we owe (those named, or any pending); returns how many
    were done. A failure leaves the request pending for the sweeper to retry; processes
    share the work with ``FOR UPDATE SKIP LOCKED``."""
    query = select(refund_requests.c.payment_intent_id).where(refund_requests.c.status == "pending")
    if payment_intent_ids is not None:
        query = query.where(refund_requests.c.payment_intent_id.in_(list(payment_intent_ids)))
    if cart_id is not None:
        query = query.where(refund_requests.c.cart_id == cart_id)
    async with engine.connect() as conn:
        pending = list((await conn.execute(query.limit(limit))).scalars())
    done = 0
    for intent_id in pending:
        done += await _carry_out_refund(engine, gateway, intent_id)
    return done


async def _carry_out_refund(engine: AsyncEngine, gateway: PaymentGateway, intent_id: str) -> bool:
    async with engine.begin() as conn:
        request = (
            (
                await conn.execute(
                    select(refund_requests)
                    .where(
                        refund_requests.c.payment_intent_id == intent_id,
                        refund_requests.c.status == "pending",
                    )
                    .with_for_update(skip_locked=True)
                )
            )
            .mappings()
            .one_or_none()
        )
        if request is None:
            return False  # done already, or another process has it
        try:
            refund = await gateway.refund_payment_intent(
                intent_id, idempotency_key=f"refund-{intent_id}", reason=request["reason"]
            )
        except AlreadyRefunded:
            refund = None
        except GatewayError as exc:
            attempts = request["attempts"] + 1
            await conn.execute(
                update(refund_requests)
                .where(refund_requests.c.payment_intent_id == intent_id)
                .values(attempts=attempts, last_error=str(exc)[:500], updated_at=func.now())
            )
            if attempts >= REFUND_ALERT_AFTER_ATTEMPTS:
                ALERTS.labels(kind="refund_stuck").inc()
            log.error(
                "refund_failed", payment_intent_id=intent_id, attempts=attempts, error=str(exc)
            )
            return False
        if refund is not None:
            await conn.execute(
                insert(refunds)
                .values(
                    id=refund.id,
                    payment_intent_id=intent_id,
                    amount_minor=refund.amount,
                    currency=request["currency"],
                    status=refund.status,
                    reason=request["reason"],
                )
                .on_conflict_do_nothing()
            )
        await conn.execute(
            update(refund_requests)
            .where(refund_requests.c.payment_intent_id == intent_id)
            .values(status="done", attempts=request["attempts"] + 1, updated_at=func.now())
        )
        await _set_intent_status(conn, intent_id, "refunded")
    log.warning(
        "payment_refunded",
        payment_intent_id=intent_id,
        teamcart_id=request["cart_id"],
        amount=request["amount"],
        currency=request["currency"],
        reason=request["reason"],
    )
    return True


def mark_paid_members_refunded(cart: TeamCart) -> None:
    """Domain half of cancel/expiry refunds: every ``paid_online`` member shows refunded."""
    for member in cart.paid_online_members:
        assert member.payment.reference is not None
        cart.record_refund(member.user_id, member.payment.reference, member.payment.amount_minor)


async def _set_order_payment_status(conn: AsyncConnection, intent_id: str, status: str) -> None:
    """A converted cart's payments live on its order too: keep the order's record in step."""
    await conn.execute(
        update(order_payments).where(order_payments.c.reference == intent_id).values(status=status)
    )


INTENT_STATUS_RANK = {"open": 0, "failed": 1, "canceled": 1, "succeeded": 2, "refunded": 3}
"""An intent's status only moves up this order: a late success never undoes a refund."""

_SET_INTENT_STATUS = (
    update(payment_intents)
    .where(
        payment_intents.c.id == bindparam("_id"),
        case(INTENT_STATUS_RANK, value=payment_intents.c.status, else_=0) < bindparam("rank"),
    )
    .values(status=bindparam("status"), updated_at=func.now())
)


_FAIL_OPEN_INTENT = (
    update(payment_intents)
    .where(payment_intents.c.id == bindparam("_id"), payment_intents.c.status == "open")
    .values(status="failed", updated_at=func.now())
)


async def _mark_open_intent_failed(conn: AsyncConnection, intent_id: str) -> None:
    """Only an open attempt can fail: a late failure never overwrites a success."""
    await conn.execute(_FAIL_OPEN_INTENT, {"_id": intent_id})


async def _set_intent_status(conn: AsyncConnection, intent_id: str, status: str) -> None:
    await conn.execute(
        _SET_INTENT_STATUS, {"_id": intent_id, "status": status, "rank": INTENT_STATUS_RANK[status]}
    )


# --- webhooks --------------------------------------------------------------------------------


async def handle_stripe_event(
    engine: AsyncEngine, gateway: PaymentGateway, event: Mapping[str, Any]
) -> Outcome:
    """Apply one verified Stripe event exactly once; raise on transient failure (→ 503)."""
    started = time.perf_counter()
    event_type = str(event["type"])
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            # A retry locks the cart before loading it, so it cannot conflict again.
            outcome = await _handle_once(engine, gateway, event, lock=attempt > 1)
        except cart_repo.VersionConflict:
            continue  # the cart was saved meanwhile: redo the whole event on fresh state
        await relay_committed(engine, outcome.relayed)  # committed: on to the projection
        WEBHOOKS.labels(type=event_type, outcome=outcome.outcome).inc()
        if outcome.outcome == "refunded" and outcome.payment_intent_id:
            # Committed: now give the money back. If Stripe fails, the sweeper retries.
            await carry_out_refunds(engine, gateway, payment_intent_ids=[outcome.payment_intent_id])
        WEBHOOK_SECONDS.observe(time.perf_counter() - started)
        return outcome
    raise ApiError(503, "service_unavailable", "the cart kept changing; Stripe will retry")


# Built once: the inbox statements run for every delivery.
_CLAIM_EVENT = insert(stripe_events).on_conflict_do_nothing().returning(stripe_events.c.id)
_RECORD_OUTCOME = update(stripe_events).where(stripe_events.c.id == bindparam("_id"))


async def _handle_once(
    engine: AsyncEngine, gateway: PaymentGateway, event: Mapping[str, Any], *, lock: bool
) -> Outcome:
    event_id = str(event["id"])
    event_type = str(event["type"])
    obj: Mapping[str, Any] = event["data"]["object"]
    async with engine.begin() as conn:
        claimed = await conn.execute(
            _CLAIM_EVENT, {"id": event_id, "type": event_type, "outcome": "processing"}
        )
        if claimed.first() is None:
            return Outcome("duplicate")
        outcome = await _apply(conn, gateway, event_type, obj, lock=lock)
        await conn.execute(
            _RECORD_OUTCOME,
            {
                "_id": event_id,
                "outcome": outcome.outcome,
                "reason": outcome.reason,
                "payment_intent_id": outcome.payment_intent_id,
                "cart_id": outcome.cart_id,
            },
        )
    log.info(
        "stripe_event",
        event_id=event_id,
        type=event_type,
        outcome=outcome.outcome,
        reason=outcome.reason,
        payment_intent_id=outcome.payment_intent_id,
        teamcart_id=outcome.cart_id,
        member_user_id=(obj.get("metadata") or {}).get("member_user_id"),
    )
    return outcome


async def _apply(
    conn: AsyncConnection,
    gateway: PaymentGateway,
    event_type: str,
    obj: Mapping[str, Any],
    *,
    lock: bool,
) -> Outcome:
    if event_type.startswith("payment_intent."):
        metadata = obj.get("metadata") or {}
        intent_id = str(obj.get("id"))
        if metadata.get("teamcart_id"):
            return await _apply_to_cart(conn, gateway, event_type, obj, metadata, lock=lock)
        if metadata.get("order_id"):
            return Outcome(
                "ignored", "unrouted: single-payer orders are not handled yet", intent_id
            )
        return Outcome("ignored", "not a TeamCart payment", intent_id)
    if event_type in {"charge.refunded", "refund.created", "refund.updated"}:
        return await _apply_refund(conn, event_type, obj)
    if event_type == "charge.dispute.created":
        return await _apply_dispute(conn, obj, lock=lock)
    return Outcome("ignored", f"{event_type} is not handled")


async def _save(conn: AsyncConnection, cart: TeamCart, expected_version: int) -> list[OutboxRecord]:
    """Save the cart and append its events; the records to relay once committed."""
    await cart_repo.save_cart(conn, cart, expected_version)
    return await append_events(conn, cart.pull_events(), cart_view(cart), relay=True)


async def _apply_to_cart(
    conn: AsyncConnection,
    gateway: PaymentGateway,
    event_type: str,
    intent: Mapping[str, Any],
    metadata: Mapping[str, Any],
    *,
    lock: bool,
) -> Outcome:
    intent_id = str(intent["id"])
    cart_id = str(metadata["teamcart_id"])
    user_id = str(metadata.get("member_user_id", ""))
    cart = await cart_repo.load_cart(conn, cart_id, lock=lock)
    currency = str(intent.get("currency", "")).upper()
    received = int(intent.get("amount_received") or intent.get("amount") or 0)

    if event_type == "payment_intent.succeeded":
        if cart is None or not cart.is_member(user_id):
            ALERTS.labels(kind="unknown_cart_payment").inc()
            await request_refund(
                conn,
                intent_id,
                amount=received,
                currency=currency,
                reason="unknown_cart_or_member",
                cart_id=cart_id,
            )
            return Outcome("refunded", "unknown_cart_or_member", intent_id, None)
        facts = await _intent_facts(conn, intent_id)
        expected = cart.version
        try:
            decision = cart.record_online_payment(
                user_id,
                _received_minor(received, currency),
                currency,
                _quote_version(metadata),
                intent_id,
                refunded_minor=from_stripe(facts.refunded, currency),
                disputed=facts.disputed,
            )
        except errors.DomainError as refusal:
            if refusal.code in _MISMATCHES:
                AMOUNT_MISMATCHES.inc()
            await request_refund(
                conn,
                intent_id,
                amount=received,
                currency=currency,
                reason=refusal.code,
                cart_id=cart_id,
            )
            cart.record_refund(user_id, intent_id, from_stripe(received, currency))
            relayed = await _save(conn, cart, expected)
            ALERTS.labels(kind="rejected_payment").inc()
            log.warning(
                "payment_rejected",
                teamcart_id=cart_id,
                member_user_id=user_id,
                payment_intent_id=intent_id,
                reason=refusal.code,
                detail=refusal.detail,
            )
            return Outcome("refunded", refusal.code, intent_id, cart_id, relayed)
        relayed = await _save(conn, cart, expected)
        await _set_intent_status(conn, intent_id, "succeeded")  # never moves a refund back
        if decision is CaptureOutcome.UNDER_REVIEW:
            reason = "disputed" if facts.disputed else "partially_refunded"
            ALERTS.labels(kind="capture_under_review").inc()
            log.error(
                "payment_under_review",
                teamcart_id=cart_id,
                member_user_id=user_id,
                payment_intent_id=intent_id,
                reason=reason,
            )
            return Outcome("review", reason, intent_id, cart_id, relayed)
        status = cart.members[user_id].payment.status
        if decision is not CaptureOutcome.RECORDED and status is PaymentStatus.REFUNDED:
            return Outcome("refunded", "already_refunded", intent_id, cart_id, relayed)
        if decision is not CaptureOutcome.RECORDED and status is PaymentStatus.REVIEW:
            return Outcome("review", "under_review", intent_id, cart_id, relayed)
        return Outcome("applied", None, intent_id, cart_id, relayed)

    if cart is None or not cart.is_member(user_id):
        return Outcome("ignored", "unknown cart or member", intent_id, cart_id)
    if event_type == "payment_intent.payment_failed":
        expected = cart.version
        try:
            cart.mark_payment_failed(user_id, intent_id)
        except errors.DomainError as refusal:
            await _mark_open_intent_failed(conn, intent_id)
            return Outcome("ignored", refusal.code, intent_id, cart_id)
        relayed = await _save(conn, cart, expected)
        await _mark_open_intent_failed(conn, intent_id)
        return Outcome("applied", None, intent_id, cart_id, relayed)
    if event_type == "payment_intent.canceled":
        await conn.execute(
            update(payment_intents)
            .where(payment_intents.c.id == intent_id, payment_intents.c.status == "open")
            .values(status="canceled", updated_at=func.now())
        )
        return Outcome("applied", None, intent_id, cart_id)
    return Outcome("ignored", f"{event_type} is not handled", intent_id, cart_id)


_MISMATCHES = frozenset({"quote_changed", "currency_mismatch", "amount_mismatch"})


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


@dataclass(frozen=True, slots=True)
class _IntentFacts:
    """What Stripe has told us happened to a PaymentIntent's capture, in any order."""

    refunded: int  # Stripe's units, refunds that succeeded
    disputed: bool  # a dispute that is not won


_INTENT_FACTS = select(
    select(func.coalesce(func.sum(refunds.c.amount_minor), 0))
    .where(refunds.c.payment_intent_id == bindparam("intent"), refunds.c.status == "succeeded")
    .scalar_subquery(),
    exists().where(
        disputes.c.payment_intent_id == bindparam("intent"),
        disputes.c.status.not_in(["won", "warning_closed"]),
    ),
)


async def _intent_facts(conn: AsyncConnection, intent_id: str) -> _IntentFacts:
    refunded, disputed = (await conn.execute(_INTENT_FACTS, {"intent": intent_id})).one()
    return _IntentFacts(int(refunded), bool(disputed))


async def _apply_refund(conn: AsyncConnection, event_type: str, obj: Mapping[str, Any]) -> Outcome:
    """Sync refunds by refund id: ours and ones made in the Stripe dashboard.

    A member's payment shows ``refunded`` only once refunds cover the whole capture; a
    partial refund is recorded and alerted, and the member stays paid.
    """
    intent_id = str(obj.get("payment_intent") or "")
    currency = str(obj.get("currency", "")).upper()
    owner = await _intent_owner(conn, intent_id)
    # The cart first, as every writer of a cart does (a payment webhook saves the cart, then
    # updates its intent): the other order could deadlock with one arriving at the same time.
    cart = await cart_repo.load_cart(conn, owner.cart_id, lock=True) if owner else None
    if event_type == "charge.refunded":
        listed = (obj.get("refunds") or {}).get("data") or []
    else:
        listed = [obj]
    for refund in listed:
        status = str(refund.get("status") or "succeeded")
        await conn.execute(
            insert(refunds)
            .values(
                id=str(refund["id"]),
                payment_intent_id=intent_id,
                amount_minor=int(refund.get("amount") or 0),
                currency=currency,
                status=status,
                reason="stripe",
            )
            .on_conflict_do_update(
                index_elements=[refunds.c.id], set_={"status": status, "updated_at": func.now()}
            )
        )
        if status == "failed":
            ALERTS.labels(kind="refund_failed").inc()
            log.error("refund_failed", payment_intent_id=intent_id, refund_id=refund["id"])
    if owner is None:
        return Outcome("ignored", "unknown intent", intent_id)
    captured, refunded = await _captured_and_refunded(conn, intent_id, owner, obj, event_type)
    if refunded < captured:
        ALERTS.labels(kind="partial_refund").inc()
        log.warning(
            "partial_refund", payment_intent_id=intent_id, refunded=refunded, captured=captured
        )
        return Outcome(
            "applied", f"partial refund: {refunded} of {captured}", intent_id, owner.cart_id
        )
    await _set_intent_status(conn, intent_id, "refunded")
    await _set_order_payment_status(conn, intent_id, PaymentStatus.REFUNDED.value)
    if cart is None or not cart.is_member(owner.user_id):
        ALERTS.labels(kind="refund_for_departed_member").inc()
        return Outcome("applied", "the member is no longer in the cart", intent_id, owner.cart_id)
    expected = cart.version
    cart.record_refund(owner.user_id, intent_id, from_stripe(refunded, currency))
    relayed = await _save(conn, cart, expected)
    return Outcome("applied", None, intent_id, owner.cart_id, relayed)


@dataclass(frozen=True, slots=True)
class _Owner:
    cart_id: str
    user_id: str
    amount_minor: int
    currency: str


async def _intent_owner(conn: AsyncConnection, intent_id: str) -> _Owner | None:
    row = (
        await conn.execute(
            select(
                payment_intents.c.cart_id,
                payment_intents.c.user_id,
                payment_intents.c.amount_minor,
                payment_intents.c.currency,
            ).where(payment_intents.c.id == intent_id)
        )
    ).one_or_none()
    if row is None:
        return None
    return _Owner(str(row.cart_id), str(row.user_id), row.amount_minor, row.currency)


async def _captured_and_refunded(
    conn: AsyncConnection,
    intent_id: str,
    owner: _Owner,
    obj: Mapping[str, Any],
    event_type: str,
) -> tuple[int, int]:
    """What was captured and what has been refunded so far, both in Stripe's units."""
    if event_type == "charge.refunded" and obj.get("amount") is not None:
        return int(obj["amount"]), int(obj.get("amount_refunded") or 0)
    refunded = (
        await conn.execute(
            select(func.coalesce(func.sum(refunds.c.amount_minor), 0)).where(
                refunds.c.payment_intent_id == intent_id, refunds.c.status == "succeeded"
            )
        )
    ).scalar_one()
    return to_stripe(owner.amount_minor, owner.currency), int(refunded)


async def _apply_dispute(
    conn: AsyncConnection, dispute: Mapping[str, Any], *, lock: bool
) -> Outcome:
    intent_id = str(dispute.get("payment_intent") or "")
    ALERTS.labels(kind="dispute").inc()
    log.error(
        "payment_disputed",
        payment_intent_id=intent_id,
        dispute_id=dispute.get("id"),
        reason=dispute.get("reason"),
    )
    status = str(dispute.get("status") or "needs_response")
    await conn.execute(
        insert(disputes)
        .values(
            id=str(dispute.get("id") or ""),
            payment_intent_id=intent_id,
            amount=int(dispute.get("amount") or 0),
            currency=str(dispute.get("currency") or "").upper(),
            reason=str(dispute.get("reason") or "unknown"),
            status=status,
        )
        .on_conflict_do_update(
            index_elements=[disputes.c.id], set_={"status": status, "updated_at": func.now()}
        )
    )
    owner = await _intent_owner(conn, intent_id)
    if owner is None:
        # Stored all the same: if its capture is reported later, it goes to review.
        return Outcome("review", "dispute on an unknown payment", intent_id)
    cart = await cart_repo.load_cart(conn, owner.cart_id, lock=lock)
    relayed: list[OutboxRecord] = []
    if cart is not None and cart.is_member(owner.user_id):
        expected = cart.version
        cart.flag_payment_for_review(owner.user_id, intent_id)
        relayed = await _save(conn, cart, expected)
    await _set_order_payment_status(conn, intent_id, PaymentStatus.REVIEW.value)
    reason = str(dispute.get("reason") or "dispute")
    return Outcome("review", reason, intent_id, owner.cart_id, relayed)


# --- reconciliation --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unrecorded:
    """A payment Stripe captured for a cart that we have neither recorded nor refunded."""

    payment_intent_id: str
    cart_id: str
    member_user_id: str
    amount: int
    currency: str
    fixed_as: str | None = None


async def _is_accounted_for(conn: AsyncConnection, intent_id: str) -> bool:
    """Recorded as a member's payment (paid, under review or refunded), on an order, or
    owed back. A failed attempt's id on a member does not count: that money was never
    recorded."""
    settled = ("paid_online", "review", "refunded")
    for query in (
        select(teamcart_members.c.user_id).where(
            teamcart_members.c.payment_reference == intent_id,
            teamcart_members.c.payment_status.in_(settled),
        ),
        select(order_payments.c.user_id).where(order_payments.c.reference == intent_id),
        select(refund_requests.c.payment_intent_id).where(
            refund_requests.c.payment_intent_id == intent_id
        ),
        select(refunds.c.id).where(
            refunds.c.payment_intent_id == intent_id, refunds.c.status == "succeeded"
        ),
    ):
        if (await conn.execute(query.limit(1))).first() is not None:
            return True
    return False


async def reconcile(
    engine: AsyncEngine, gateway: PaymentGateway, *, since: int, fix: bool
) -> list[Unrecorded]:
    """Find captured TeamCart payments since ``since`` (unix time) that we never recorded.

    With ``fix``, each is run through the same path as its ``payment_intent.succeeded``
    webhook (an inbox id of ``reconcile:<intent>``): recorded if it still matches what the
    member owes, refunded otherwise.
    """
    found: list[Unrecorded] = []
    async for intent in gateway.list_payment_intents(created_since=since):
        if intent.status != "succeeded" or intent.metadata.get("source") != "teamcart":
            continue
        async with engine.connect() as conn:
            if await _is_accounted_for(conn, intent.id):
                continue
        finding = Unrecorded(
            payment_intent_id=intent.id,
            cart_id=intent.metadata.get("teamcart_id", ""),
            member_user_id=intent.metadata.get("member_user_id", ""),
            amount=intent.amount,
            currency=intent.currency,
        )
        if fix:
            outcome = await handle_stripe_event(
                engine,
                gateway,
                {
                    "id": f"reconcile:{intent.id}",
                    "type": "payment_intent.succeeded",
                    "data": {
                        "object": {
                            "id": intent.id,
                            "amount": intent.amount,
                            "amount_received": intent.amount,
                            "currency": intent.currency.lower(),
                            "metadata": dict(intent.metadata),
                            "status": intent.status,
                        }
                    },
                },
            )
            finding = dataclasses.replace(finding, fixed_as=outcome.outcome)
        found.append(finding)
    return found
