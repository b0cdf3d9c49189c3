"""TeamCart handlers: one plain function per command, ``(command, uow) -> result``.

Each loads the cart through the unit of work, calls one domain method and does what the
command owes beside it (stock, the order, the coupon's use, refunds); the unit of work saves
the cart with its version check, appends its events to the outbox, commits, relays and
retries on a conflict (``app.unit_of_work``). Nothing here opens a transaction or builds a
view. Commands are the frozen dataclasses beside their handler.

Why one module of this length: one small handler per cart command (sixteen of them), each
beside its command.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from app.connect.charges import require_cod, store_terms
from app.failures import ConflictError, NotFoundError, cart_not_found
from app.payments.amounts import to_stripe
from app.payments.gateway import GatewayError
from app.persistence.carts import ConfirmReminder
from app.persistence.payments import IntentStatus
from app.unit_of_work import UnitOfWork, UnitOfWorkRunner
from app.use_cases.catalog import store_not_found
from app.use_cases.payments.intents import cancel_quietly
from app.use_cases.payments.refunds import owe_refund
from domain.errors import CouponExhausted, NotAMember, OutOfStock
from domain.order import DeliveryAddress, Order
from domain.teamcart import (
    DEFAULT_MAX_TIP_BPS,
    DEFAULT_REMINDER_MINUTES,
    Capture,
    CartStatus,
    PaymentMode,
    TeamCart,
)

log = structlog.get_logger("teamcart.carts")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_invite_code() -> str:
    """192 random bits, URL-safe (32 characters)."""
    return secrets.token_urlsafe(24)


async def _cart(uow: UnitOfWork, cart_id: str) -> TeamCart:
    cart = await uow.carts.get(cart_id)
    if cart is None:
        raise cart_not_found(cart_id)
    return cart


async def _member_cart(uow: UnitOfWork, cart_id: str, user_id: str) -> TeamCart:
    cart = await _cart(uow, cart_id)
    if not cart.is_member(user_id):
        raise NotAMember()
    return cart


# --- opening and joining ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenCart:
    actor_id: str
    display_name: str
    store_id: str
    deadline: datetime | None
    capture: Capture = Capture.AUTOMATIC
    reminder_minutes: int = DEFAULT_REMINDER_MINUTES  # 0 to 1440 (the route's bound); 0: none


async def open_cart(command: OpenCart, uow: UnitOfWork) -> TeamCart:
    store = await uow.catalog.store_terms(command.store_id)
    if store is None:
        raise store_not_found(command.store_id)
    cart = TeamCart.open(
        cart_id=str(uuid.uuid4()),
        store=store,
        host_user_id=command.actor_id,
        host_display_name=command.display_name,
        invite_code=new_invite_code(),
        deadline=command.deadline,
        now=utcnow(),
        capture=command.capture,
        reminder_minutes=command.reminder_minutes,
    )
    uow.carts.add(cart)
    log.info("cart_opened", teamcart_id=cart.id, store_id=command.store_id)
    return cart


@dataclass(frozen=True, slots=True)
class JoinCart:
    actor_id: str
    display_name: str
    invite_code: str


async def join_cart(command: JoinCart, uow: UnitOfWork) -> TeamCart:
    """Unknown codes, and codes of carts that were cancelled or expired, are 404."""
    cart_id = await uow.carts.id_by_invite(command.invite_code)
    cart = None if cart_id is None else await uow.carts.get(cart_id)
    if cart is None:
        raise NotFoundError("invite_not_found", "this invite link is not valid")
    if cart.status in {CartStatus.CANCELLED, CartStatus.EXPIRED}:
        raise NotFoundError("invite_not_found", f"this invite's cart is {cart.status}")
    cart.join(command.actor_id, command.display_name, utcnow())
    return cart


# --- items, members, the lobby ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddItem:
    actor_id: str
    cart_id: str
    product_id: str
    quantity: int
    options: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ItemAdded:
    cart: TeamCart
    item_id: str


async def add_item(command: AddItem, uow: UnitOfWork) -> ItemAdded:
    product = await uow.catalog.product(command.product_id)
    if product is None:
        raise NotFoundError("product_not_found", f"no product with id {command.product_id}")
    cart = await _cart(uow, command.cart_id)
    item_id = str(uuid.uuid4())
    cart.add_item(
        command.actor_id, item_id, product, command.quantity, list(command.options), utcnow()
    )
    return ItemAdded(cart, item_id)


@dataclass(frozen=True, slots=True)
class ChangeItemQuantity:
    actor_id: str
    cart_id: str
    item_id: str
    quantity: int


async def change_item_quantity(command: ChangeItemQuantity, uow: UnitOfWork) -> TeamCart:
    cart = await _cart(uow, command.cart_id)
    cart.change_item_quantity(command.actor_id, command.item_id, command.quantity)
    return cart


@dataclass(frozen=True, slots=True)
class RemoveItem:
    actor_id: str
    cart_id: str
    item_id: str


async def remove_item(command: RemoveItem, uow: UnitOfWork) -> TeamCart:
    cart = await _cart(uow, command.cart_id)
    cart.remove_item(command.actor_id, command.item_id)
    return cart


@dataclass(frozen=True, slots=True)
class RemoveMember:
    actor_id: str
    cart_id: str
    user_id: str


async def remove_member(command: RemoveMember, uow: UnitOfWork) -> TeamCart:
    """A guest leaves or the host removes one; after lock (the host removing a guest who
    hasn't paid) their reserved stock goes back on sale and any failed intent of theirs,
    which Stripe would still let them pay, is cancelled."""
    cart = await _cart(uow, command.cart_id)
    locked = cart.status in (CartStatus.LOCKED, CartStatus.READY_TO_CONFIRM)
    items = cart.items_of(command.user_id)
    failed = cart.members[command.user_id].payment if cart.is_member(command.user_id) else None
    cart.remove_member(command.actor_id, command.user_id)
    if locked:
        await uow.carts.release_items_stock(cart.id, items)
        reference = None if failed is None else failed.reference
        if reference is not None and await cancel_quietly(uow.stripe, reference):
            await uow.payments.cancel_unpaid_intent(reference)
    return cart


@dataclass(frozen=True, slots=True)
class RotateInvite:
    actor_id: str
    cart_id: str


async def rotate_invite(command: RotateInvite, uow: UnitOfWork) -> TeamCart:
    """A new invite code; the old one answers 404 from now on."""
    cart = await _cart(uow, command.cart_id)
    cart.rotate_invite(command.actor_id, new_invite_code())
    return cart


# --- who pays what ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetPaymentMode:
    actor_id: str
    cart_id: str
    mode: PaymentMode


async def set_payment_mode(command: SetPaymentMode, uow: UnitOfWork) -> TeamCart:
    cart = await _cart(uow, command.cart_id)
    cart.set_payment_mode(command.actor_id, command.mode)
    return cart


@dataclass(frozen=True, slots=True)
class SetAllowance:
    actor_id: str
    cart_id: str
    amount_minor: int | None


async def set_allowance(command: SetAllowance, uow: UnitOfWork) -> TeamCart:
    cart = await _cart(uow, command.cart_id)
    cart.set_allowance(command.actor_id, command.amount_minor)
    return cart


@dataclass(frozen=True, slots=True)
class SetSpendingLimit:
    actor_id: str
    cart_id: str
    amount_minor: int | None


async def set_spending_limit(command: SetSpendingLimit, uow: UnitOfWork) -> TeamCart:
    cart = await _cart(uow, command.cart_id)
    cart.set_spending_limit(command.actor_id, command.amount_minor)
    return cart


@dataclass(frozen=True, slots=True)
class CoverMember:
    actor_id: str
    cart_id: str
    user_id: str


async def cover_member(command: CoverMember, uow: UnitOfWork) -> TeamCart:
    """The host takes over a guest's share; a failed intent of theirs is cancelled."""
    cart = await _cart(uow, command.cart_id)
    member = cart.members.get(command.user_id)
    failed = member.payment.reference if member is not None else None
    cart.cover(command.actor_id, command.user_id)
    if failed is not None and await cancel_quietly(uow.stripe, failed):
        await uow.payments.cancel_unpaid_intent(failed)
    return cart


@dataclass(frozen=True, slots=True)
class SetReady:
    actor_id: str
    cart_id: str
    ready: bool


async def set_ready(command: SetReady, uow: UnitOfWork) -> TeamCart:
    cart = await _cart(uow, command.cart_id)
    cart.set_ready(command.actor_id, command.ready)
    return cart


# --- the quote -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LockCart:
    actor_id: str
    cart_id: str


async def lock_cart(command: LockCart, uow: UnitOfWork) -> TeamCart:
    """Freeze the items, price the cart and reserve every line's stock, all or nothing."""
    cart = await _cart(uow, command.cart_id)
    cart.lock(command.actor_id, utcnow())
    await uow.carts.reserve_stock(cart)
    return cart


@dataclass(frozen=True, slots=True)
class UnlockCart:
    actor_id: str
    cart_id: str


async def unlock_cart(command: UnlockCart, uow: UnitOfWork) -> TeamCart:
    cart = await _cart(uow, command.cart_id)
    cart.unlock(command.actor_id)  # the quote goes, and its tip and coupon with it
    await uow.carts.release_stock(cart.id)
    await uow.catalog.release_coupon(cart.id)
    return cart


@dataclass(frozen=True, slots=True)
class SetTip:
    actor_id: str
    cart_id: str
    amount_minor: int


async def set_tip(command: SetTip, uow: UnitOfWork) -> TeamCart:
    """The cap is the store's setting as the catalog has it now (``stores.max_tip_bps``)."""
    cart = await _cart(uow, command.cart_id)
    store = await uow.catalog.store(cart.store.store_id)
    cap = store.get("max_tip_bps") if store is not None else None
    cart.set_tip(
        command.actor_id,
        command.amount_minor,
        max_tip_bps=DEFAULT_MAX_TIP_BPS if cap is None else int(cap),
    )
    return cart


@dataclass(frozen=True, slots=True)
class ApplyCoupon:
    actor_id: str
    cart_id: str
    code: str


async def apply_coupon(command: ApplyCoupon, uow: UnitOfWork) -> TeamCart:
    cart = await _member_cart(uow, command.cart_id, command.actor_id)
    terms = await uow.catalog.coupon(cart.store.store_id, command.code)
    if terms is None:
        raise NotFoundError("coupon_not_found", f"this store has no coupon {command.code.upper()}")
    cart.apply_coupon(command.actor_id, terms)
    # Held for this cart until it confirms or lets go: no other cart can take the last use
    # and leave this one unable to confirm with its members' money captured.
    if not await uow.catalog.reserve_coupon(cart.store.store_id, terms.code, cart.id):
        raise CouponExhausted(f"Coupon {terms.code} has no use left.")
    return cart


@dataclass(frozen=True, slots=True)
class RemoveCoupon:
    actor_id: str
    cart_id: str


async def remove_coupon(command: RemoveCoupon, uow: UnitOfWork) -> TeamCart:
    cart = await _cart(uow, command.cart_id)
    cart.remove_coupon(command.actor_id)
    await uow.catalog.release_coupon(cart.id)
    return cart


# --- paying ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommitCod:
    actor_id: str
    cart_id: str


async def commit_cod(command: CommitCod, uow: UnitOfWork) -> TeamCart:
    """The member will pay their own share in cash; the amount comes from the quote. A
    payment they had under way online is cancelled, so they can't pay twice."""
    cart = await _cart(uow, command.cart_id)
    pending = dict(cart.pending_payments).get(command.actor_id)
    cart.commit_cod(command.actor_id)
    require_cod(await store_terms(uow, cart.store.store_id))  # Connect: 409 cod_disabled
    if pending is not None and await cancel_quietly(uow.stripe, pending):
        await uow.payments.close_open_intent(pending, IntentStatus.CANCELED)
    return cart


# --- the end of a cart -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfirmCart:
    actor_id: str
    cart_id: str
    address: DeliveryAddress


async def confirm_cart(command: ConfirmCart, uow: UnitOfWork) -> Order:
    """The cart becomes an Order; its reserved stock is sold and its coupon use counted."""
    cart = await _cart(uow, command.cart_id)
    cart.check_confirmable(command.actor_id)
    await _capture_holds(uow, cart)
    now = utcnow()
    number = await uow.orders.next_number(now.date())
    store = await uow.catalog.store(cart.store.store_id)
    order = cart.confirm(
        command.actor_id,
        str(uuid.uuid4()),
        number,
        command.address,
        now,
        store_name="" if store is None else store["name"],
    )
    uow.orders.add(order)
    await uow.carts.commit_stock(cart.id)
    if order.coupon_code is not None and not await uow.catalog.count_coupon_use(
        cart.store.store_id, order.coupon_code, cart.id
    ):
        raise CouponExhausted(f"Coupon {order.coupon_code} has been used up.")
    log.info("cart_converted", teamcart_id=cart.id, order_id=order.id, order_number=number)
    return order


async def _capture_holds(uow: UnitOfWork, cart: TeamCart) -> None:
    """Capture on confirm: every card held for the cart is charged now, one by one. One that
    won't capture stops the confirm with a problem naming its member; the others not reached
    stay held (one captured before it is paid, and its webhook records that)."""
    for user_id, intent_id in cart.holds:
        try:
            await uow.stripe.capture_payment_intent(
                intent_id, idempotency_key=f"capture-{intent_id}"
            )
        except GatewayError as exc:
            name = cart.members[user_id].display_name
            log.warning("capture_failed", teamcart_id=cart.id, payment_intent_id=intent_id)
            raise ConflictError(
                "capture_failed",
                f"{name}'s card could not be charged ({exc}); they may pay again, or be covered",
            ) from exc
        cart.note_captured(user_id, intent_id)
        await uow.payments.set_intent_status(intent_id, IntentStatus.SUCCEEDED)


@dataclass(frozen=True, slots=True)
class CancelCart:
    actor_id: str
    cart_id: str


async def cancel_cart(command: CancelCart, uow: UnitOfWork) -> TeamCart:
    """Cancel: give back reserved stock and refund every online payment already captured."""
    cart = await _cart(uow, command.cart_id)
    cart.cancel(command.actor_id, utcnow())
    await _give_back(uow, cart, "cart_cancelled")
    return cart


async def _give_back(uow: UnitOfWork, cart: TeamCart, reason: str) -> None:
    """Release the stock of a cancelled or expired cart, cancel the payments under way (so
    nobody pays into it: a payment that gets through all the same is refunded by its
    webhook) and refund what it holds."""
    await uow.carts.release_stock(cart.id)
    await uow.catalog.release_coupon(cart.id)
    # Every intent Stripe would still let someone pay: the ones under way, and declined
    # attempts (a failed intent can be confirmed again with another card).
    pending = {intent: user for user, intent in cart.pending_payments}
    for payment_intent_id in await uow.payments.unpaid_intents(cart.id):
        if await cancel_quietly(uow.stripe, payment_intent_id):
            await uow.payments.cancel_unpaid_intent(payment_intent_id)
            if payment_intent_id in pending:
                cart.note_payment_canceled(pending[payment_intent_id], payment_intent_id)
    for intent_id in cart.release_holds():  # capture on confirm: held, never charged
        await cancel_quietly(uow.stripe, intent_id)
        await uow.payments.cancel_unpaid_intent(intent_id)
    for refund in cart.refund_paid_members():
        await owe_refund(
            uow,
            refund.payment_intent_id,
            amount=to_stripe(refund.amount_minor, cart.currency),
            currency=cart.currency,
            reason=reason,
            cart_id=cart.id,
        )


# --- the sweeper -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExpireIfDue:
    cart_id: str
    payment_window: timedelta
    now: datetime


async def expire_if_due(command: ExpireIfDue, uow: UnitOfWork) -> CartStatus | None:
    """Apply the deadline rules to one cart; its new status if it changed.

    An open cart whose deadline lock can't reserve its stock expires instead of failing on
    every sweep (``OutOfStock`` rolls the lock back; ``expire_out_of_stock`` runs next)."""
    cart = await _cart(uow, command.cart_id)
    if not cart.expire_if_due(command.now, command.payment_window):
        return None
    if cart.status is CartStatus.LOCKED:
        await uow.carts.reserve_stock(cart)
    elif cart.status is CartStatus.EXPIRED:
        await _give_back(uow, cart, "cart_expired")
    return cart.status


async def expire_out_of_stock(command: ExpireIfDue, uow: UnitOfWork) -> CartStatus | None:
    cart = await _cart(uow, command.cart_id)
    if cart.status is not CartStatus.OPEN:  # the host locked it meanwhile: nothing to do
        return None
    cart.expire(command.now)
    await _give_back(uow, cart, "cart_expired")
    return cart.status


async def expire_due_carts(runner: UnitOfWorkRunner, payment_window: timedelta) -> int:
    """Auto-lock or expire every cart whose deadline or payment window has passed.

    Safe with many processes: two sweepers racing on one cart meet at its version check, and
    the loser reloads a cart that has nothing left to do. Its events go to the outbox
    dispatchers (no relay): a Redis that hangs must not hold up expiries and their refunds,
    one relay timeout per cart.
    """
    background = runner.without_relay()
    candidates = await background.run(_due_cart_ids, payment_window)
    changed = 0
    for cart_id in candidates:
        command = ExpireIfDue(cart_id, payment_window, utcnow())
        try:
            try:
                status = await background.run(expire_if_due, command)
            except OutOfStock as exc:
                log.warning("deadline_lock_out_of_stock", teamcart_id=cart_id, detail=exc.detail)
                status = await background.run(expire_out_of_stock, command)
        except Exception:  # one bad cart must not stop the sweep
            log.exception("expiry_failed", teamcart_id=cart_id)
            continue
        if status is not None:
            changed += 1
            log.info("cart_swept", teamcart_id=cart_id, status=status.value)
    return changed


async def _due_cart_ids(payment_window: timedelta, uow: UnitOfWork) -> list[str]:
    return await uow.carts.due_ids(payment_window)


Remind = Callable[[str, str, datetime, str], Awaitable[None]]
"""Tells a member's sockets (cart id, user id) to do something before a deadline: what
(``confirm``, ``ready``, ``pay``) is the reminder's ``what``."""


@dataclass(frozen=True, slots=True)
class _Reminders:
    payment_window: timedelta
    lead: timedelta


async def _claim_reminders(due: _Reminders, uow: UnitOfWork) -> list[ConfirmReminder]:
    return await uow.carts.claim_confirm_reminders(due.payment_window, due.lead)


async def remind_hosts_to_confirm(
    runner: UnitOfWorkRunner, payment_window: timedelta, remind: Remind
) -> int:
    """A while before a ready cart's confirm window ends (15 minutes, or half a payment
    window if that is shorter), its host's sockets get a ``reminder`` (``what: confirm``):
    past the window the cart expires and every payment is refunded. Each host once."""
    lead = min(timedelta(minutes=15), payment_window / 2)
    due = await runner.without_relay().run(_claim_reminders, _Reminders(payment_window, lead))
    for reminder in due:
        try:
            await remind(reminder.cart_id, reminder.host_user_id, reminder.deadline, "confirm")
        except Exception as exc:  # Redis away: the cart still expires on time
            log.warning("confirm_reminder_failed", teamcart_id=reminder.cart_id, error=repr(exc))
    return len(due)
