"""Reconciliation: captured TeamCart payments Stripe has that we never recorded.

A webhook can be lost for good (an endpoint down longer than Stripe retries). ``teamcart
reconcile`` lists Stripe's captures since a time and finds those neither recorded on a member
(paid, under review or refunded), on an order, nor owed back; with ``--fix`` each goes
through the same handler as its ``payment_intent.succeeded`` webhook.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from app.unit_of_work import UnitOfWork, UnitOfWorkRunner
from app.use_cases.payments.webhooks import handle_stripe_event


@dataclass(frozen=True, slots=True)
class Unrecorded:
    """A payment Stripe captured for a cart that we have neither recorded nor refunded."""

    payment_intent_id: str
    cart_id: str
    member_user_id: str
    amount: int
    currency: str
    fixed_as: str | None = None


async def _is_accounted_for(payment_intent_id: str, uow: UnitOfWork) -> bool:
    return await uow.payments.is_accounted_for(payment_intent_id)


async def reconcile(runner: UnitOfWorkRunner, *, since: int, fix: bool) -> list[Unrecorded]:
    """Find captured TeamCart payments since ``since`` (unix time) that we never recorded.

    With ``fix``, each is run through the same path as its ``payment_intent.succeeded``
    webhook (an inbox id of ``reconcile:<intent>``): recorded if it still matches what the
    member owes, refunded otherwise.
    """
    found: list[Unrecorded] = []
    async for intent in runner.stripe.list_payment_intents(created_since=since):
        if intent.status != "succeeded" or intent.metadata.get("source") != "teamcart":
            continue
        if await runner.run(_is_accounted_for, intent.id):
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
                runner,
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
