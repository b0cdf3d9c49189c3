"""Refunds: owed in the deciding transaction, carried out against Stripe after its commit.

"When is money given back?" has one answer here: a handler that decides a refund calls
:func:`owe_refund` in its own transaction (one request per PaymentIntent, however often the
decision is repeated) and ``uow.refund_after_commit``; once it has committed,
:func:`carry_out_refunds` asks Stripe. A Stripe failure leaves the request pending for the
sweeper, so it never undoes the decision and no decision is lost.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from prometheus_client import Counter

from app.payments.gateway import AlreadyRefunded, GatewayError
from app.persistence.payments import IntentStatus
from app.unit_of_work import UnitOfWork, UnitOfWorkRunner
from app.use_cases.payments.metrics import ALERTS

log = structlog.get_logger("teamcart.refunds")

REFUNDS = Counter("teamcart_refunds_total", "Refunds we asked Stripe for, by reason", ["reason"])
REFUND_ALERT_AFTER_ATTEMPTS = 5


async def owe_refund(
    uow: UnitOfWork,
    payment_intent_id: str,
    *,
    amount: int,
    currency: str,
    reason: str,
    cart_id: str | None,
    request_id: str | None = None,
) -> None:
    """Owe a refund, carried out once this commits: the whole capture (``amount``, Stripe's
    units, for the record), or with a ``request_id`` only ``amount`` of it."""
    await uow.payments.request_refund(
        payment_intent_id,
        amount=amount,
        currency=currency,
        reason=reason,
        cart_id=cart_id,
        request_id=request_id,
    )
    uow.refund_after_commit(payment_intent_ids=[payment_intent_id])
    REFUNDS.labels(reason=reason).inc()
    log.warning(
        "refund_requested",
        payment_intent_id=payment_intent_id,
        teamcart_id=cart_id,
        amount=amount,
        currency=currency,
        reason=reason,
    )


async def carry_out_refunds(
    runner: UnitOfWorkRunner,
    *,
    payment_intent_ids: Sequence[str] | None = None,
    cart_id: str | None = None,
    limit: int = 50,
) -> int:
    """Ask Stripe for the refunds we owe (those named, or any pending); how many were done.

    Processes share the work with ``FOR UPDATE SKIP LOCKED``."""

    async def pending(_: None, uow: UnitOfWork) -> list[str]:
        return await uow.payments.pending_refunds(
            payment_intent_ids=payment_intent_ids, cart_id=cart_id, limit=limit
        )

    done = 0
    for intent_id in await runner.run(pending, None):
        done += await runner.run(carry_out_refund, intent_id)
    return done


async def carry_out_refund(request_id: str, uow: UnitOfWork) -> bool:
    """One owed refund, with its request locked while Stripe is asked."""
    owed = await uow.payments.claim_refund(request_id)
    if owed is None:
        return False  # done already, or another process has it
    payment_intent_id = owed.payment_intent_id
    attempts = owed.attempts + 1
    try:
        refund = await uow.stripe.refund_payment_intent(
            payment_intent_id,
            idempotency_key=owed.idempotency_key,
            reason=owed.reason,
            amount=owed.amount if owed.partial else None,
        )
    except AlreadyRefunded:
        refund = None
    except GatewayError as exc:
        await uow.payments.note_refund_failed(request_id, attempts, str(exc))
        if attempts >= REFUND_ALERT_AFTER_ATTEMPTS:
            ALERTS.labels(kind="refund_stuck").inc()
        log.error(
            "refund_failed", payment_intent_id=payment_intent_id, attempts=attempts, error=str(exc)
        )
        return False
    if refund is not None:
        await uow.payments.record_refund(
            refund.id,
            payment_intent_id,
            amount=refund.amount,
            currency=owed.currency,
            status=refund.status,
            reason=owed.reason,
        )
    await uow.payments.mark_refund_done(request_id, attempts, None if refund is None else refund.id)
    if not owed.partial:
        await uow.payments.set_intent_status(payment_intent_id, IntentStatus.REFUNDED)
    log.warning(
        "payment_refunded",
        payment_intent_id=payment_intent_id,
        request_id=request_id,
        teamcart_id=owed.cart_id,
        amount=owed.amount,
        currency=owed.currency,
        reason=owed.reason,
    )
    return True
