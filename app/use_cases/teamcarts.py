"""TeamCart use cases: one function per command, each one transaction.

Every command follows the same path (``_run``): load the cart with its version, call one
domain method, then in the same transaction save it with the version check, apply the
command's side effects (stock, orders, coupons) and append its events to the outbox. A
version conflict (someone else saved first) reloads and tries again, a bounded number of
times, then answers 409 ``version_conflict``.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.auth import Principal
from app.errors import ApiError
from app.payments.gateway import PaymentGateway
from app.persistence import carts as cart_repo
from app.persistence import catalog as catalog_repo
from app.persistence import orders as order_repo
from app.persistence.outbox import append_events, relay_committed
from app.persistence.tables import coupons, teamcarts
from app.use_cases.payments import (
    carry_out_refunds,
    ensure_no_open_intents,
    mark_paid_members_refunded,
    request_refunds_for_cart,
)
from domain.errors import CouponExhausted, NotAMember, OutOfStock
from domain.order import DeliveryAddress, Order
from domain.teamcart import CartStatus, TeamCart
from realtime.cart_view import CartView, cart_view
from realtime.projection import Projection

log = structlog.get_logger("teamcart.carts")

MAX_ATTEMPTS = 2  # the retry locks the cart: it cannot conflict again
T = TypeVar("T")
Effect = Callable[[AsyncConnection, TeamCart], Awaitable[T]]


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_invite_code() -> str:
    """192 random bits, URL-safe (32 characters)."""
    return secrets.token_urlsafe(24)


def cart_not_found(cart_id: str) -> ApiError:
    return ApiError(404, "cart_not_found", f"no cart with id {cart_id}")


async def _nothing(conn: AsyncConnection, cart: TeamCart) -> None:
    return None


async def _run(
    engine: AsyncEngine,
    cart_id: str,
    command: Callable[[TeamCart], None],
    effect: Effect[T] = _nothing,  # type: ignore[assignment]
    *,
    relay: bool = True,
) -> tuple[TeamCart, T]:
    """Load → command → save (version-checked) → effect → outbox, retried on conflict
    (with the cart locked, so the retry cannot conflict again); after the commit, the
    events go straight to this process's projection (``relay_committed``), unless
    ``relay`` is off: then the outbox dispatchers take them, and nothing here waits on
    Redis (background work)."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            async with engine.begin() as conn:
                cart = await cart_repo.load_cart(conn, cart_id, lock=attempt > 1)
                if cart is None:
                    raise cart_not_found(cart_id)
                expected = cart.version
                command(cart)
                await cart_repo.save_cart(conn, cart, expected)
                result = await effect(conn, cart)
                records = await append_events(
                    conn, cart.pull_events(), cart_view(cart), relay=relay
                )
        except cart_repo.VersionConflict:
            log.info("version_conflict", teamcart_id=cart_id, attempt=attempt)
            continue
        await relay_committed(engine, records)  # committed: on to the projection at once
        return cart, result
    raise ApiError(409, "version_conflict", "the cart changed at the same time; try again")


# --- opening and joining ---------------------------------------------------------------------


async def open_cart(
    engine: AsyncEngine, actor: Principal, store_id: str, deadline: datetime | None
) -> TeamCart:
    async with engine.begin() as conn:
        store = await catalog_repo.get_store(conn, store_id)
        if store is None:
            raise ApiError(404, "store_not_found", f"no store with id {store_id}")
        cart = TeamCart.open(
            cart_id=str(uuid.uuid4()),
            store=catalog_repo.store_terms(store),
            host_user_id=actor.user_id,
            host_display_name=actor.display_name,
            invite_code=new_invite_code(),
            deadline=deadline,
            now=utcnow(),
        )
        await cart_repo.insert_cart(conn, cart)
        await append_events(conn, cart.pull_events(), cart_view(cart))
    log.info("cart_opened", teamcart_id=cart.id, store_id=store_id)
    return cart


async def join_cart(engine: AsyncEngine, actor: Principal, invite_code: str) -> TeamCart:
    """Unknown codes, and codes of carts that were cancelled or expired, are 404."""
    async with engine.connect() as conn:
        cart_id = await cart_repo.find_cart_id_by_invite(conn, invite_code)
    if cart_id is None:
        raise ApiError(404, "invite_not_found", "this invite link is not valid")

    def join(cart: TeamCart) -> None:
        if cart.status in {CartStatus.CANCELLED, CartStatus.EXPIRED}:
            raise ApiError(404, "invite_not_found", f"this invite's cart is {cart.status}")
        cart.join(actor.user_id, actor.display_name, utcnow())

    cart, _ = await _run(engine, cart_id, join)
    return cart


async def get_cart_for_member(engine: AsyncEngine, user_id: str, cart_id: str) -> TeamCart:
    async with engine.connect() as conn:
        cart = await cart_repo.load_cart(conn, cart_id)
    if cart is None:
        raise cart_not_found(cart_id)
    if not cart.is_member(user_id):
        raise NotAMember()
    return cart


async def read_cart_view(
    engine: AsyncEngine, projection: Projection, user_id: str, cart_id: str
) -> CartView:
    """A member's view of the cart, with presence, served from the Redis view model.

    The view is rebuilt on a miss. In the few milliseconds after a commit before the
    projection has applied it, the view is behind the cart's version (one primary-key read):
    the cart is then read from PostgreSQL, so a client always reads its own writes.
    """
    async with engine.connect() as conn:
        version = (
            await conn.execute(select(teamcarts.c.version).where(teamcarts.c.id == cart_id))
        ).scalar_one_or_none()
    live = None if version is None else await projection.current(cart_id)
    if version is None or live is None:
        raise cart_not_found(cart_id)
    view = live.cart
    if view.version < version:
        async with engine.connect() as conn:
            cart = await cart_repo.load_cart(conn, cart_id)
        if cart is None:
            raise cart_not_found(cart_id)
        view = cart_view(cart, live.online)
    if all(member.user_id != user_id for member in view.members):
        raise NotAMember()
    return view


# --- items and members -----------------------------------------------------------------------


async def add_item(
    engine: AsyncEngine,
    actor: Principal,
    cart_id: str,
    product_id: str,
    quantity: int,
    options: list[str],
) -> tuple[TeamCart, str]:
    async with engine.connect() as conn:
        row = await catalog_repo.get_product(conn, product_id)
    if row is None:
        raise ApiError(404, "product_not_found", f"no product with id {product_id}")
    product = catalog_repo.product_snapshot(row)
    item_id = str(uuid.uuid4())
    cart, _ = await _run(
        engine,
        cart_id,
        lambda cart: cart.add_item(actor.user_id, item_id, product, quantity, options, utcnow()),
    )
    return cart, item_id


async def change_item_quantity(
    engine: AsyncEngine, actor: Principal, cart_id: str, item_id: str, quantity: int
) -> TeamCart:
    cart, _ = await _run(
        engine, cart_id, lambda cart: cart.change_item_quantity(actor.user_id, item_id, quantity)
    )
    return cart


async def remove_item(
    engine: AsyncEngine, actor: Principal, cart_id: str, item_id: str
) -> TeamCart:
    cart, _ = await _run(engine, cart_id, lambda cart: cart.remove_item(actor.user_id, item_id))
    return cart


async def remove_member(
    engine: AsyncEngine, actor: Principal, cart_id: str, user_id: str
) -> TeamCart:
    cart, _ = await _run(engine, cart_id, lambda cart: cart.remove_member(actor.user_id, user_id))
    return cart


async def set_ready(engine: AsyncEngine, actor: Principal, cart_id: str, ready: bool) -> TeamCart:
    cart, _ = await _run(engine, cart_id, lambda cart: cart.set_ready(actor.user_id, ready))
    return cart


# --- the quote -------------------------------------------------------------------------------


async def lock_cart(engine: AsyncEngine, actor: Principal, cart_id: str) -> TeamCart:
    """Freeze the items, price the cart and reserve every line's stock, all or nothing."""
    cart, _ = await _run(
        engine,
        cart_id,
        lambda cart: cart.lock(actor.user_id, utcnow()),
        lambda conn, cart: cart_repo.reserve_stock(conn, cart),
    )
    return cart


async def unlock_cart(engine: AsyncEngine, actor: Principal, cart_id: str) -> TeamCart:
    cart, _ = await _run(
        engine,
        cart_id,
        lambda cart: cart.unlock(actor.user_id),
        _release_unless_paying,
    )
    return cart


async def _release_unless_paying(conn: AsyncConnection, cart: TeamCart) -> None:
    await ensure_no_open_intents(conn, cart.id)
    await cart_repo.release_stock(conn, cart.id)


async def _no_open_intents(conn: AsyncConnection, cart: TeamCart) -> None:
    await ensure_no_open_intents(conn, cart.id)


async def set_tip(
    engine: AsyncEngine, actor: Principal, cart_id: str, amount_minor: int
) -> TeamCart:
    cart, _ = await _run(
        engine, cart_id, lambda cart: cart.set_tip(actor.user_id, amount_minor), _no_open_intents
    )
    return cart


async def apply_coupon(engine: AsyncEngine, actor: Principal, cart_id: str, code: str) -> TeamCart:
    cart = await get_cart_for_member(engine, actor.user_id, cart_id)
    async with engine.connect() as conn:
        row = await catalog_repo.get_coupon(conn, cart.store.store_id, code)
    if row is None:
        raise ApiError(404, "coupon_not_found", f"this store has no coupon {code.upper()}")
    terms = catalog_repo.coupon_terms(row)
    cart, _ = await _run(
        engine, cart_id, lambda cart: cart.apply_coupon(actor.user_id, terms), _no_open_intents
    )
    return cart


async def remove_coupon(engine: AsyncEngine, actor: Principal, cart_id: str) -> TeamCart:
    cart, _ = await _run(
        engine, cart_id, lambda cart: cart.remove_coupon(actor.user_id), _no_open_intents
    )
    return cart


# --- paying ----------------------------------------------------------------------------------


async def commit_cod(engine: AsyncEngine, actor: Principal, cart_id: str) -> TeamCart:
    """The member will pay their own share in cash; the amount comes from the quote."""
    cart, _ = await _run(engine, cart_id, lambda cart: cart.commit_cod(actor.user_id))
    return cart


# --- the end of a cart -----------------------------------------------------------------------


async def confirm_cart(
    engine: AsyncEngine, actor: Principal, cart_id: str, address: DeliveryAddress
) -> Order:
    """The cart becomes an Order; its reserved stock is sold and its coupon use counted."""
    order_id = str(uuid.uuid4())
    placed: list[Order] = []

    async def number_then_confirm(conn: AsyncConnection, cart: TeamCart) -> None:
        order = placed[-1]
        await order_repo.insert_order(conn, order)
        await cart_repo.commit_stock(conn, cart.id)
        if order.coupon_code is not None:
            await _count_coupon_use(conn, cart.store.store_id, order.coupon_code)
        await append_events(conn, order.pull_events())

    async with engine.connect() as conn:
        number = await order_repo.next_order_number(conn)
        await conn.commit()

    def confirm(cart: TeamCart) -> None:
        placed.append(cart.confirm(actor.user_id, order_id, number, address, utcnow()))

    await _run(engine, cart_id, confirm, number_then_confirm)
    log.info("cart_converted", teamcart_id=cart_id, order_id=order_id, order_number=number)
    return placed[-1]


async def _count_coupon_use(conn: AsyncConnection, store_id: str, code: str) -> None:
    counted = await conn.execute(
        update(coupons)
        .where(coupons.c.store_id == store_id, coupons.c.code == code)
        .where((coupons.c.max_uses.is_(None)) | (coupons.c.times_used < coupons.c.max_uses))
        .values(times_used=coupons.c.times_used + 1)
    )
    if counted.rowcount != 1:
        raise CouponExhausted(f"Coupon {code} has been used up; remove it and confirm again.")


async def cancel_cart(
    engine: AsyncEngine, gateway: PaymentGateway, actor: Principal, cart_id: str
) -> TeamCart:
    """Cancel: give back reserved stock and refund every online payment already captured."""

    def cancel(cart: TeamCart) -> None:
        cart.cancel(actor.user_id, utcnow())
        mark_paid_members_refunded(cart)

    async def give_back(conn: AsyncConnection, cart: TeamCart) -> None:
        await cart_repo.release_stock(conn, cart.id)
        await request_refunds_for_cart(conn, cart, "cart_cancelled")

    cart, _ = await _run(engine, cart_id, cancel, give_back)
    await carry_out_refunds(engine, gateway, cart_id=cart.id)  # committed; retried if it fails
    return cart


async def expire_due_carts(
    engine: AsyncEngine, gateway: PaymentGateway, payment_window: timedelta
) -> int:
    """Auto-lock or expire every cart whose deadline or payment window has passed.

    Safe with many processes: two sweepers racing on one cart meet at its version check, and
    the loser reloads a cart that has nothing left to do. An open cart whose deadline lock
    can't reserve its stock expires instead of failing on every sweep. Its events go to the
    outbox dispatchers (no relay): a Redis that hangs must not hold up expiries and their
    refunds, one relay timeout per cart.
    """
    async with engine.connect() as conn:
        candidates = await cart_repo.due_cart_ids(conn, payment_window)
    changed = 0
    for cart_id in candidates:
        try:
            changed += await _expire_one(engine, gateway, cart_id, payment_window)
        except Exception:  # one bad cart must not stop the sweep
            log.exception("expiry_failed", teamcart_id=cart_id)
    return changed


async def _expire_one(
    engine: AsyncEngine, gateway: PaymentGateway, cart_id: str, payment_window: timedelta
) -> bool:
    now = utcnow()
    status_before: list[CartStatus] = []

    def expire(cart: TeamCart) -> None:
        status_before.append(cart.status)
        if cart.expire_if_due(now, payment_window) and cart.status is CartStatus.EXPIRED:
            mark_paid_members_refunded(cart)

    async def move_stock(conn: AsyncConnection, cart: TeamCart) -> None:
        if cart.status is status_before[-1]:
            return
        if cart.status is CartStatus.LOCKED:
            await cart_repo.reserve_stock(conn, cart)
        elif cart.status is CartStatus.EXPIRED:
            await cart_repo.release_stock(conn, cart.id)
            await request_refunds_for_cart(conn, cart, "cart_expired")

    try:
        cart, _ = await _run(engine, cart_id, expire, move_stock, relay=False)
    except OutOfStock as exc:
        log.warning("deadline_lock_out_of_stock", teamcart_id=cart_id, detail=exc.detail)
        cart, _ = await _run(
            engine,
            cart_id,
            lambda cart: cart.expire(now),
            lambda conn, cart: cart_repo.release_stock(conn, cart.id),
            relay=False,
        )
    if cart.status is CartStatus.EXPIRED:
        await carry_out_refunds(engine, gateway, cart_id=cart.id)
    changed = cart.status is not status_before[0]
    if changed:
        log.info("cart_swept", teamcart_id=cart_id, status=cart.status.value)
    return changed
