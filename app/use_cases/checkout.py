"""Single-payer handlers: a buyer's cart at a store, merging a guest's carts on sign-in, the
checkout's steps, and paying by PaymentIntent or Stripe Checkout.

Paying takes three steps, so no row is locked while Stripe is asked: :func:`check_out` (one
unit of work) turns the cart into an Order awaiting payment and takes its stock; Stripe is
asked for a PaymentIntent or a Checkout Session (no transaction); :func:`note_attempt` (a
second unit of work) names the attempt on the order. Should Stripe not answer, the order
waits, still awaiting payment, and checking out again asks once more (the same idempotency
key: never two intents for one attempt). The webhook (``payments.webhooks``) makes it
``placed``; an order left unpaid a payment window is cancelled and its stock returned
(:func:`expire_unpaid_orders`, by the sweeper).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from app.connect.charges import order_charge, require_online, store_terms
from app.failures import (
    ForbiddenError,
    NotFoundError,
    ProviderUnavailableError,
    UnprocessableError,
)
from app.payments.amounts import from_stripe, to_stripe
from app.payments.gateway import GatewayError
from app.unit_of_work import UnitOfWork, UnitOfWorkRunner
from app.use_cases.payments.intents import cancel_quietly, confirm_with_card
from domain import errors
from domain.checkout import DeliveryMethod, ShopCart, ShopCartStatus
from domain.order import Actor, DeliveryAddress, Order, OrderStatus

log = structlog.get_logger("teamcart.checkout")

CHECKOUT_SESSION_MINUTES = (30, 24 * 60)
"""Stripe lets a Checkout Session live 30 minutes to 24 hours."""


def _now() -> datetime:
    return datetime.now(UTC)


async def _own_cart(uow: UnitOfWork, user_id: str, cart_id: str) -> ShopCart:
    cart = await uow.shop_carts.get(cart_id)
    if cart is None:
        raise NotFoundError("cart_not_found", f"no cart with id {cart_id}")
    if cart.user_id != user_id:
        raise ForbiddenError("not_your_cart", "this cart is someone else's")
    return cart


# --- the cart --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenShopCart:
    user_id: str
    store_id: str


async def open_shop_cart(command: OpenShopCart, uow: UnitOfWork) -> ShopCart:
    """The user's open cart at the store: the one there is, or a new one."""
    for cart_id in await uow.shop_carts.open_ids(command.user_id, command.store_id):
        cart = await uow.shop_carts.get(cart_id)
        if cart is not None:
            return cart
    terms = await uow.catalog.store_terms(command.store_id)
    if terms is None:
        raise NotFoundError("store_not_found", f"no store with id {command.store_id}")
    cart = ShopCart.open(str(uuid.uuid4()), command.user_id, terms, _now())
    uow.shop_carts.add(cart)
    return cart


@dataclass(frozen=True, slots=True)
class ReadShopCart:
    user_id: str
    cart_id: str


async def get_shop_cart(query: ReadShopCart, uow: UnitOfWork) -> ShopCart:
    return await _own_cart(uow, query.user_id, query.cart_id)


async def _check_stock(uow: UnitOfWork, cart: ShopCart, product_id: str) -> None:
    """The cart asks no more of a product than there is (checked again at checkout)."""
    stock = (await uow.catalog.stock_of([product_id])).get(product_id)
    wanted = sum(i.quantity for i in cart.items.values() if i.product_id == product_id)
    if stock is not None and wanted > stock:
        raise errors.OutOfStock(
            [product_id], f"Only {stock} left of that product; the cart would need {wanted}."
        )


@dataclass(frozen=True, slots=True)
class AddShopItem:
    user_id: str
    cart_id: str
    product_id: str
    quantity: int
    options: tuple[str, ...]


async def add_shop_item(command: AddShopItem, uow: UnitOfWork) -> ShopCart:
    cart = await _own_cart(uow, command.user_id, command.cart_id)
    product = await uow.catalog.product(command.product_id)
    if product is None:
        raise errors.ProductNotFound()
    cart.add_item(str(uuid.uuid4()), product, command.quantity, command.options)
    await _check_stock(uow, cart, product.product_id)
    return cart


@dataclass(frozen=True, slots=True)
class ChangeShopItem:
    user_id: str
    cart_id: str
    item_id: str
    quantity: int


async def change_shop_item(command: ChangeShopItem, uow: UnitOfWork) -> ShopCart:
    cart = await _own_cart(uow, command.user_id, command.cart_id)
    cart.change_item_quantity(command.item_id, command.quantity)
    await _check_stock(uow, cart, cart.items[command.item_id].product_id)
    return cart


@dataclass(frozen=True, slots=True)
class RemoveShopItem:
    user_id: str
    cart_id: str
    item_id: str


async def remove_shop_item(command: RemoveShopItem, uow: UnitOfWork) -> ShopCart:
    cart = await _own_cart(uow, command.user_id, command.cart_id)
    cart.remove_item(command.item_id)
    return cart


@dataclass(frozen=True, slots=True)
class SetAddress:
    user_id: str
    cart_id: str
    address: DeliveryAddress


async def set_address(command: SetAddress, uow: UnitOfWork) -> ShopCart:
    cart = await _own_cart(uow, command.user_id, command.cart_id)
    cart.set_address(command.address)
    return cart


@dataclass(frozen=True, slots=True)
class SetDelivery:
    user_id: str
    cart_id: str
    method: DeliveryMethod


async def set_delivery(command: SetDelivery, uow: UnitOfWork) -> ShopCart:
    cart = await _own_cart(uow, command.user_id, command.cart_id)
    cart.set_delivery(command.method)
    return cart


@dataclass(frozen=True, slots=True)
class MergeGuestCarts:
    user_id: str
    guest_user_id: str


async def merge_guest_carts(command: MergeGuestCarts, uow: UnitOfWork) -> ShopCart:
    """Every open cart of the guest moves into the user's cart at the same store
    (quantities added within the stock; the guest's carts closed). The user's cart of the
    guest's newest cart's store; without any cart on either side, 404."""
    if command.guest_user_id == command.user_id:
        raise UnprocessableError("same_user", "that guest session is your own")
    merged_into: ShopCart | None = None
    for guest_cart_id in await uow.shop_carts.open_ids(command.guest_user_id):
        guest_cart = await uow.shop_carts.get(guest_cart_id)
        if guest_cart is None:
            continue
        mine = await open_shop_cart(OpenShopCart(command.user_id, guest_cart.store.store_id), uow)
        products = [item.product_id for item in guest_cart.items.values()]
        available = await uow.catalog.stock_of(products)
        short = mine.absorb(guest_cart, available, (str(uuid.uuid4()) for _ in guest_cart.items))
        if short:
            log.info("merge_limited_by_stock", cart_id=mine.id, product_ids=short)
        merged_into = mine
    if merged_into is not None:
        return merged_into
    for cart_id in reversed(await uow.shop_carts.open_ids(command.user_id)):
        cart = await uow.shop_carts.get(cart_id)
        if cart is not None:
            return cart
    raise NotFoundError("cart_not_found", "neither session has a cart")


# --- paying ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckOut:
    user_id: str
    buyer_name: str
    cart_id: str


@dataclass(frozen=True, slots=True)
class CheckedOut:
    order: Order
    attempt: int
    """How many attempts at paying the order came before this one (its idempotency key)."""


async def check_out(command: CheckOut, uow: UnitOfWork) -> CheckedOut:
    """The cart becomes an Order awaiting payment, its stock taken; checking out a cart that
    is already an order is paying that order again (after a failure, or to switch mode)."""
    cart = await _own_cart(uow, command.user_id, command.cart_id)
    if cart.status is ShopCartStatus.CHECKED_OUT and cart.order_id is not None:
        order = await uow.orders.get(cart.order_id)
        if order is None or not order.awaits_payment:
            raise errors.OrderNotPayable(
                f"The order is {order.status if order else 'gone'}: it takes no payment now."
            )
    else:
        # A store that takes no online payments is refused before any order or stock.
        require_online(await store_terms(uow, cart.store.store_id))
        now = _now()
        store = await uow.catalog.store(cart.store.store_id)
        order = cart.checkout(
            str(uuid.uuid4()),
            await uow.orders.next_number(now.date()),
            command.buyer_name,
            now,
            store_name="" if store is None else store["name"],
        )
        short = await uow.catalog.take_stock(order.lines)
        if short:
            raise errors.OutOfStock(short)
        uow.orders.add(order)
        log.info("checked_out", cart_id=cart.id, order_id=order.id, number=order.number)
    failed = sum(1 for entry in order.history if entry.status is OrderStatus.PAYMENT_FAILED)
    return CheckedOut(order, failed)


def _stripe_total(order: Order) -> int:
    total = order.totals.total_minor
    try:
        amount = to_stripe(total, order.currency)
    except ValueError as exc:
        raise UnprocessableError("currency_not_payable_online", str(exc)) from exc
    if from_stripe(amount, order.currency) != total:
        raise UnprocessableError(
            "amount_not_payable_online",
            f"Stripe can't charge exactly {total} in {order.currency} minor units",
        )
    return amount


def payment_metadata(order: Order) -> dict[str, str]:
    """What the webhook routes the payment by (ARCHITECTURE.md flow 8)."""
    return {"source": "order", "order_id": order.id, "purpose": "order_payment"}


@dataclass(frozen=True, slots=True)
class Attempt:
    """What the buyer pays with: a PaymentIntent (for Stripe.js) or a Checkout Session."""

    order: Order
    payment_intent_id: str | None = None
    client_secret: str | None = None
    checkout_session_id: str | None = None
    checkout_url: str | None = None


async def ask_stripe(
    runner: UnitOfWorkRunner,
    checked_out: CheckedOut,
    mode: str,
    *,
    success_url: str,
    cancel_url: str,
    payment_window: timedelta,
) -> Attempt:
    """Stripe's half of paying (no transaction open): an intent or a session for the order's
    total, keyed by order, mode and attempt, so asking twice is asking once."""
    order = checked_out.order
    amount = _stripe_total(order)
    key = f"order-{order.id}-{mode}-a{checked_out.attempt}"
    # Stripe Connect (app.connect): a store that takes no online payments refuses (409
    # online_disabled); an onboarded store's order is a destination charge less the fee.
    connect = await runner.run(order_charge, order)
    try:
        if mode == "payment_intent":
            intent = await runner.stripe.create_payment_intent(
                amount=amount,
                currency=order.currency,
                metadata=payment_metadata(order),
                idempotency_key=key,
                connect=connect,
            )
            return Attempt(order, intent.id, intent.client_secret)
        previous = order.payments[0].checkout_session_id
        if previous is not None:
            # The buyer left Stripe's page (its cancel link) and comes back: the same
            # session while it is open; a new one, under a key of its own, once it is not.
            session = await runner.stripe.retrieve_checkout_session(previous)
            if session.status == "open" and session.url:
                return Attempt(
                    order,
                    session.payment_intent_id,
                    checkout_session_id=session.id,
                    checkout_url=session.url,
                )
            key = f"{key}-after-{previous}"
        minutes = max(CHECKOUT_SESSION_MINUTES[0], int(payment_window.total_seconds() // 60))
        minutes = min(minutes, CHECKOUT_SESSION_MINUTES[1])
        session = await runner.stripe.create_checkout_session(
            amount=amount,
            currency=order.currency,
            name=f"{order.store_name or 'Order'} · {order.number}",
            metadata=payment_metadata(order),
            success_url=success_url,
            cancel_url=cancel_url,
            idempotency_key=key,
            expires_at=int((_now() + timedelta(minutes=minutes)).timestamp()),
            connect=connect,
        )
        return Attempt(
            order,
            session.payment_intent_id,
            checkout_session_id=session.id,
            checkout_url=session.url,
        )
    except GatewayError as exc:
        log.warning("order_payment_create_failed", order_id=order.id, mode=mode, error=str(exc))
        raise ProviderUnavailableError(
            "payment_provider_unavailable", "Stripe did not answer; check out again"
        ) from exc


@dataclass(frozen=True, slots=True)
class ConfirmCard:
    user_id: str
    cart_id: str
    payment_intent_id: str
    payment_method: str


async def _current_intent(command: ConfirmCard, uow: UnitOfWork) -> Order:
    cart = await _own_cart(uow, command.user_id, command.cart_id)
    order = None if cart.order_id is None else await uow.orders.get(cart.order_id)
    if order is None or order.payments[0].reference != command.payment_intent_id:
        raise NotFoundError("payment_not_found", "no such payment of yours on this cart")
    if not order.awaits_payment:
        raise errors.OrderNotPayable(f"The order is {order.status}: it takes no payment now.")
    return order


async def confirm_card(command: ConfirmCard, runner: UnitOfWorkRunner) -> str:
    """Confirm the buyer's current PaymentIntent with a card Stripe.js tokenised (for builds
    of Stripe.js that only tokenise, the emulator's): Stripe's status; the outcome still
    arrives by webhook. 402 ``card_declined`` with Stripe's words for the card holder."""
    await runner.run(_current_intent, command)
    return await confirm_with_card(runner.stripe, command.payment_intent_id, command.payment_method)


async def note_attempt(attempt: Attempt, uow: UnitOfWork) -> Order:
    """The order names the buyer's attempt (a failed order awaits payment again)."""
    order = await uow.orders.get(attempt.order.id)
    if order is None:
        raise NotFoundError("order_not_found", f"no order with id {attempt.order.id}")
    order.start_payment(attempt.payment_intent_id, _now(), attempt.checkout_session_id)
    return order


# --- unpaid orders ---------------------------------------------------------------------------


async def due_unpaid_orders(payment_window: timedelta, uow: UnitOfWork) -> list[str]:
    return await uow.orders.due_unpaid_ids(payment_window)


async def expire_unpaid_order(order_id: str, uow: UnitOfWork) -> bool:
    """An order left unpaid a payment window: cancelled (by the system), its stock back on
    sale, its open intent cancelled at Stripe (one paid all the same is refunded by its
    webhook: the order no longer takes it)."""
    order = await uow.orders.get(order_id)
    if order is None or not order.awaits_payment:
        return False
    order.cancel(Actor.SYSTEM, "the payment window passed", _now())
    await uow.catalog.return_stock(order.lines)
    await release_attempt(uow, order)
    log.info("unpaid_order_expired", order_id=order.id)
    return True


async def release_attempt(uow: UnitOfWork, order: Order) -> None:
    """Stripe stops taking money for an order that no longer wants it (best effort)."""
    payment = order.payments[0] if order.payments else None
    if payment is None:
        return
    if payment.checkout_session_id is not None:
        try:
            await uow.stripe.expire_checkout_session(payment.checkout_session_id)
        except GatewayError:
            log.warning("checkout_session_expire_failed", order_id=order.id)
    if payment.reference is not None:
        await cancel_quietly(uow.stripe, payment.reference)


async def expire_unpaid_orders(runner: UnitOfWorkRunner, payment_window: timedelta) -> int:
    """The sweeper's part: every single-payer order unpaid past its window."""
    expired = 0
    for order_id in await runner.run(due_unpaid_orders, payment_window):
        expired += await runner.run(expire_unpaid_order, order_id)
    return expired
