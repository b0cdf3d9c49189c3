"""A member's PaymentIntent: started (or reused) for their share, and confirmed.

Starting spans three steps, so that the intent is created at Stripe outside any transaction:
a read (may this member pay, is an open attempt there to reuse?), the intent created with an
idempotency key, then a unit of work that marks the member's payment pending on the cart
(``TeamCart.start_online_payment``: the cart's version check orders it against tip, coupon
and unlock) and stores the intent. The payment is recorded when Stripe's webhook says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy import RowMapping

from app.connect.charges import group_charge, require_online, store_terms
from app.failures import (
    BelowOnlineMinimum,
    ConflictError,
    InvalidFieldError,
    NotFoundError,
    PaymentDeclinedError,
    ProviderUnavailableError,
    UnprocessableError,
    cart_not_found,
)
from app.payments.amounts import from_stripe, minimum_charge, to_stripe
from app.payments.gateway import (
    CardDeclined,
    ConnectCharge,
    GatewayError,
    IntentInfo,
    PaymentGateway,
    PaymentMethodRefused,
)
from app.persistence.payments import IntentStatus
from app.unit_of_work import UnitOfWork, UnitOfWorkRunner
from domain import errors
from domain.payments import PaymentStatus
from domain.teamcart import Capture, CartStatus

log = structlog.get_logger("teamcart.payments")


@dataclass(frozen=True, slots=True)
class StartOnlinePayment:
    actor_id: str
    cart_id: str


@dataclass(frozen=True, slots=True)
class OnlinePayment:
    payment_intent_id: str
    client_secret: str
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the read step found: the attempt to make, or the open one to reuse."""

    command: StartOnlinePayment
    share: int
    currency: str
    quote_version: int
    attempt: int
    reuse: OnlinePayment | None
    hold: bool = False  # capture on confirm: the card is only authorised now
    connect: ConnectCharge | None = None  # the store's Connect terms (app.connect.charges)


def _online_payment(row: RowMapping) -> OnlinePayment:
    return OnlinePayment(
        payment_intent_id=row["id"],
        client_secret=row["client_secret"],
        amount_minor=row["amount_minor"],
        currency=row["currency"],
    )


async def _plan(command: StartOnlinePayment, uow: UnitOfWork) -> _Plan:
    cart = await uow.carts.get(command.cart_id)
    if cart is None:
        raise cart_not_found(command.cart_id)
    share = cart.payable_share(command.actor_id)
    # Stripe Connect (app.connect): a store may take no online payments (409
    # online_disabled); a store paid by transfer has its members' charges in the cart's
    # transfer group (the order doesn't exist yet).
    terms = await store_terms(uow, cart.store.store_id)
    require_online(terms)
    existing = await uow.payments.latest_intent(cart.id, command.actor_id, cart.quote_version)
    reuse = None
    if existing is not None and existing["status"] == IntentStatus.OPEN:
        reuse = _online_payment(existing)
    attempt = 1 if existing is None else existing["attempt"] + 1
    hold = cart.capture is Capture.ON_CONFIRM
    return _Plan(
        command,
        share,
        cart.currency,
        cart.quote_version,
        attempt,
        reuse,
        hold,
        connect=group_charge(terms, cart.id),
    )


def _stripe_amount(plan: _Plan) -> int:
    minimum = minimum_charge(plan.currency)
    if minimum is not None and plan.share < minimum:
        raise BelowOnlineMinimum(minimum, plan.currency)
    try:
        amount = to_stripe(plan.share, plan.currency)
    except ValueError as exc:
        raise UnprocessableError("currency_not_payable_online", str(exc)) from exc
    if from_stripe(amount, plan.currency) != plan.share:
        # Stripe rounds three-decimal currencies to tens: it would charge a different amount.
        raise UnprocessableError(
            "amount_not_payable_online",
            f"Stripe can't charge exactly {plan.share} in {plan.currency} minor units; "
            "please pay cash on delivery",
        )
    return amount


async def _create_intent(gateway: PaymentGateway, plan: _Plan) -> IntentInfo:
    command = plan.command
    try:
        return await gateway.create_payment_intent(
            amount=_stripe_amount(plan),
            currency=plan.currency,
            metadata={
                "source": "teamcart",
                "teamcart_id": command.cart_id,
                "member_user_id": command.actor_id,
                "quote_version": str(plan.quote_version),
                "purpose": "member_payment",
            },
            idempotency_key=(
                f"teamcart-{command.cart_id}-{command.actor_id}"
                f"-q{plan.quote_version}-a{plan.attempt}"
            ),
            manual_capture=plan.hold,
            connect=plan.connect,
        )
    except GatewayError as exc:
        log.warning("payment_intent_create_failed", teamcart_id=command.cart_id, error=str(exc))
        raise ProviderUnavailableError(
            "payment_provider_unavailable", "Stripe did not answer"
        ) from exc


@dataclass(frozen=True, slots=True)
class _Record:
    plan: _Plan
    created: IntentInfo


async def _record(record: _Record, uow: UnitOfWork) -> RowMapping:
    """The member's payment shows pending (the cart's version check orders this against
    tip, coupon and unlock, which refuse while anyone is paying); the intent is stored."""
    plan, created = record.plan, record.created
    cart = await uow.carts.get(plan.command.cart_id)
    if cart is None:
        raise cart_not_found(plan.command.cart_id)
    actor = plan.command.actor_id
    before = cart.members[actor].payment if cart.is_member(actor) else None
    try:
        cart.start_online_payment(actor, created.id, plan.quote_version)
    except errors.DomainError:
        await cancel_quietly(uow.stripe, created.id)
        raise
    replaced = before.reference if before and before.status is PaymentStatus.PENDING else None
    if replaced and replaced != created.id:  # a new attempt replaces the pending one
        await cancel_quietly(uow.stripe, replaced)
        await uow.payments.close_open_intent(replaced, IntentStatus.CANCELED)
    return await uow.payments.add_intent(
        id=created.id,
        cart_id=plan.command.cart_id,
        user_id=plan.command.actor_id,
        quote_version=plan.quote_version,
        attempt=plan.attempt,
        amount_minor=plan.share,
        currency=plan.currency,
        client_secret=created.client_secret,
    )


async def start_online_payment(
    command: StartOnlinePayment, runner: UnitOfWorkRunner
) -> OnlinePayment:
    """Create (or reuse) the member's PaymentIntent for their share of the current quote."""
    plan = await runner.run(_plan, command)
    if plan.reuse is not None:
        return plan.reuse
    created = await _create_intent(runner.stripe, plan)
    # Two concurrent starts of one attempt get the same intent from Stripe (the idempotency
    # key), so the row stored is this intent's either way.
    row = await runner.run(_record, _Record(plan, created))
    log.info(
        "payment_intent_started",
        teamcart_id=command.cart_id,
        member_user_id=command.actor_id,
        payment_intent_id=row["id"],
        attempt=plan.attempt,
    )
    return _online_payment(row)


async def cancel_quietly(gateway: PaymentGateway, intent_id: str) -> bool:
    """Cancel an open intent at Stripe; whether Stripe did (a failure is logged: the intent
    may still be paid, and its webhook then refunds it)."""
    try:
        await gateway.cancel_payment_intent(intent_id)
    except GatewayError:
        log.warning("payment_intent_cancel_failed", payment_intent_id=intent_id)
        return False
    return True


@dataclass(frozen=True, slots=True)
class ConfirmOnlinePayment:
    actor_id: str
    cart_id: str
    payment_intent_id: str
    payment_method: str


async def _intent_status(command: ConfirmOnlinePayment, uow: UnitOfWork) -> IntentStatus | None:
    """The intent's status, if it is the caller's payment under way on a cart that still
    takes payments: the server never confirms money into an ended or cash-settled cart."""
    cart = await uow.carts.get(command.cart_id)
    if cart is None:
        raise cart_not_found(command.cart_id)
    if not cart.is_member(command.actor_id):
        raise errors.NotAMember()
    status = await uow.payments.member_intent_status(
        command.payment_intent_id, command.cart_id, command.actor_id
    )
    payment = cart.members[command.actor_id].payment
    if status is IntentStatus.OPEN and (
        cart.status is not CartStatus.LOCKED
        or payment.status is not PaymentStatus.PENDING
        or payment.reference != command.payment_intent_id
    ):
        raise ConflictError("payment_not_open", "this payment is no longer the one under way")
    return status


async def _mark_failed(command: ConfirmOnlinePayment, uow: UnitOfWork) -> None:
    """Declined now: the member may try again at once (the webhook will agree later)."""
    await uow.payments.close_open_intent(command.payment_intent_id, IntentStatus.FAILED)
    cart = await uow.carts.get(command.cart_id)
    if cart is not None and cart.is_member(command.actor_id):
        cart.mark_payment_failed(command.actor_id, command.payment_intent_id)


async def confirm_online_payment(command: ConfirmOnlinePayment, runner: UnitOfWorkRunner) -> str:
    """Confirm the caller's own open PaymentIntent with a payment method from Stripe.js.

    For Stripe.js builds that create a payment method but do not confirm (the emulator's),
    and any client that prefers confirming on the server. The outcome still arrives by
    webhook; this returns Stripe's status (``succeeded``, ``processing``, …).
    """
    status = await runner.run(_intent_status, command)
    if status is None:
        raise NotFoundError("payment_not_found", "no such payment of yours on this cart")
    if status is not IntentStatus.OPEN:
        raise ConflictError("payment_not_open", f"this payment is already {status}")
    try:
        return await confirm_with_card(
            runner.stripe, command.payment_intent_id, command.payment_method
        )
    except PaymentDeclinedError:
        # Known failed now: a retry starts a new attempt (the webhook will agree later).
        await runner.run(_mark_failed, command)
        raise


async def confirm_with_card(gateway: PaymentGateway, intent_id: str, payment_method: str) -> str:
    """Confirm an intent with a card Stripe.js tokenised: Stripe's status, or the problem a
    client is owed (402 ``card_declined``, 400 naming ``payment_method``, 502). Shared by
    the group's and the single-payer's confirm."""
    try:
        return await gateway.confirm_payment_intent(intent_id, payment_method)
    except CardDeclined as exc:
        raise PaymentDeclinedError("card_declined", str(exc)) from exc
    except PaymentMethodRefused as exc:
        # Not an outage (502) but the client's input; the intent stays open for a real card.
        raise InvalidFieldError(
            "payment_method", "body", "Stripe refused this payment method"
        ) from exc
    except GatewayError as exc:
        raise ProviderUnavailableError(
            "payment_provider_unavailable", "Stripe did not answer"
        ) from exc
