"""The unit of work: one transaction for one command or webhook, and what follows its commit.

A handler is a plain function ``(command, uow) -> result`` (``app.use_cases``). The
runner (:meth:`UnitOfWorkRunner.run`) gives it a fresh unit of work and then, in order:

1. the handler loads aggregates through the unit's repositories (``uow.carts.get``), which
   remember each cart with the version and rows it was loaded with, changes them with one
   domain method, and returns its result;
2. commit: every changed cart is saved with its version check (``UPDATE … WHERE version =
   :expected``), its events and those of new orders are appended to the ``outbox`` in the
   same transaction, and the transaction commits;
3. after the commit, the outbox records go to the relay (this process's projection, so the
   members' sockets hear of it at once) and the work owed after commit runs: the refunds
   the transaction decided on are asked of Stripe;
4. a ``VersionConflict`` (someone saved the cart first) rolls everything back and runs the
   handler again, with carts locked as they are loaded so the retry cannot conflict; after
   ``MAX_ATTEMPTS`` it is a 409 ``version_conflict``.

A handler that raises rolls back: nothing it did is kept (the default is rollback). The
repositories' interfaces are the protocols below; ``SqlUnitOfWork`` implements them on
PostgreSQL and ``tests.fakes.FakeUnitOfWork`` in memory, and one shared test case
(``tests/unit_of_work_contract.py``) runs against both.

Why one module of this length: the repositories' interfaces, their PostgreSQL
implementations and the runner are read together to follow a command from handler to commit;
the SQL itself lives in ``app.persistence``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol, TypeVar

import asyncpg
import structlog
from sqlalchemy import RowMapping, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.failures import VersionConflictError
from app.payments.gateway import PaymentGateway
from app.persistence import carts as cart_rows
from app.persistence import catalog as catalog_rows
from app.persistence import orders as order_rows
from app.persistence import shop_carts as shop_cart_rows
from app.persistence.database import ConnectionLost
from app.persistence.outbox import OutboxRecord, Relay, append_events
from app.persistence.payments import (
    IntentFacts,
    IntentOwner,
    IntentStatus,
    RefundedSoFar,
    RefundOwed,
    SqlPayments,
)
from domain.catalog import CouponTerms, ProductSnapshot, StoreTerms
from domain.checkout import ShopCart
from domain.events import DomainEvent
from domain.order import Order, OrderLine, OrderStatus
from domain.teamcart import CartItem, TeamCart

log = structlog.get_logger("teamcart.uow")

MAX_ATTEMPTS = 2
"""The retry locks each cart as it loads it, so it cannot conflict again."""

C = TypeVar("C", contravariant=True)
R = TypeVar("R", covariant=True)
T = TypeVar("T")


def _is_deadlock(exc: DBAPIError) -> bool:
    return isinstance(exc.orig, BaseException) and any(
        getattr(cause, "sqlstate", None) == "40P01" for cause in (exc.orig, exc.orig.__cause__)
    )


class _DeadConnection(Exception):
    """The transaction's pooled connection was dead before anything was committed."""


class VersionConflict(Exception):
    """A cart changed since it was loaded (its save found another version)."""


# --- the repositories a handler sees -------------------------------------------------------


class CartRepository(Protocol):
    async def get(self, cart_id: str) -> TeamCart | None:
        """The cart, remembered with its version so the commit can check it."""

    def add(self, cart: TeamCart) -> None:
        """A new cart, inserted at commit."""

    async def id_by_invite(self, invite_code: str) -> str | None: ...

    async def version_of(self, cart_id: str) -> int | None:
        """The stored version (one primary-key read), ``None`` for no such cart."""

    async def is_member(self, cart_id: str, user_id: str) -> bool: ...

    async def due_ids(self, payment_window: timedelta) -> list[str]:
        """Carts whose deadline or payment window has passed."""

    async def claim_confirm_reminders(
        self, payment_window: timedelta, lead: timedelta
    ) -> list[cart_rows.ConfirmReminder]:
        """Ready carts within ``lead`` of their confirm window's end whose host wasn't
        reminded yet, marked reminded."""

    async def reserve_stock(self, cart: TeamCart) -> None:
        """Every line's quantity out of stock, or ``OutOfStock`` naming the products."""

    async def release_stock(self, cart_id: str) -> None: ...

    async def release_items_stock(self, cart_id: str, items: Sequence[CartItem]) -> None:
        """The units of these items of a locked cart back on sale (a member removed)."""

    async def commit_stock(self, cart_id: str) -> None: ...


Row = Mapping[Any, Any]
"""A catalog row as stored (``app.persistence.tables``): stores, products, coupons."""


class CatalogRepository(Protocol):
    async def add_store(self, **values: Any) -> Row: ...

    async def stores(self) -> Sequence[Row]:
        """Every store, oldest first."""

    async def store(self, store_id: str) -> Row | None: ...

    async def add_product(self, **values: Any) -> Row: ...

    async def products(self, store_id: str) -> Sequence[Row]:
        """The store's products, oldest first."""

    async def add_coupon(self, **values: Any) -> Row | None:
        """``None`` when the store has a coupon with that code already."""

    async def store_terms(self, store_id: str) -> StoreTerms | None: ...

    async def product(self, product_id: str) -> ProductSnapshot | None: ...

    async def coupon(self, store_id: str, code: str) -> CouponTerms | None: ...

    async def reserve_coupon(self, store_id: str, code: str, cart_id: str) -> bool:
        """Hold one use of the coupon for the cart; ``False`` when the uses made and held
        by other carts leave none."""

    async def release_coupon(self, cart_id: str) -> None:
        """The cart no longer holds a coupon use (removed, unlocked, cancelled, expired)."""

    async def count_coupon_use(self, store_id: str, code: str, cart_id: str) -> bool:
        """The cart confirms: the use it held is made; ``False`` if none is left."""

    async def add_staff(self, store_id: str, user_id: str) -> None:
        """The user is staff of the store (adding them twice changes nothing)."""

    async def is_staff(self, store_id: str, user_id: str) -> bool: ...

    async def return_stock(self, lines: Sequence[OrderLine]) -> None:
        """A cancelled order's units back on sale (products with limited stock)."""

    async def take_stock(self, lines: Sequence[OrderLine]) -> list[str]:
        """A checkout's units out of stock, all or nothing: the products that are short
        (the caller raises, and the transaction takes none)."""

    async def stock_of(self, product_ids: Sequence[str]) -> dict[str, int | None]:
        """Units in stock now, by product (``None``: unlimited)."""


class ShopCartRepository(Protocol):
    """Single-payers' carts (``domain.checkout``), each saved with its version check."""

    async def get(self, cart_id: str) -> ShopCart | None:
        """The cart, remembered with its version so the commit can check it."""

    def add(self, cart: ShopCart) -> None:
        """A new cart, inserted at commit."""

    async def open_ids(self, user_id: str, store_id: str | None = None) -> list[str]:
        """The user's open carts (at one store, when named), oldest first."""

    async def id_of_order(self, order_id: str) -> str | None:
        """The cart an order was checked out from."""


class OrderRepository(Protocol):
    async def next_number(self, today: date) -> str:
        """``TC-YYYYMMDD-XXXXX``, unique and never reused."""

    async def get(self, order_id: str) -> Order | None:
        """The order, remembered with its version so the commit can check it."""

    async def id_paid_by(self, payment_intent_id: str) -> str | None:
        """The order the PaymentIntent paid into, if any."""

    async def ids_for(
        self, user_id: str, *, limit: int, before: tuple[datetime, str] | None
    ) -> list[str]:
        """Ids of the orders the user may read (host or payer), newest first, after the
        ``(created_at, id)`` cursor ``before``."""

    async def ids_of_store(
        self,
        store_id: str,
        *,
        statuses: Sequence[OrderStatus],
        limit: int,
        before: tuple[datetime, str] | None,
    ) -> list[str]:
        """Ids of the store's orders in ``statuses`` (any, when empty), newest first."""

    def add(self, order: Order) -> None:
        """A new order, inserted with its events at commit."""

    async def due_unpaid_ids(self, payment_window: timedelta) -> list[str]:
        """Single-payer orders unpaid a payment window after their checkout."""


class PaymentRepository(Protocol):
    """PaymentIntents, refunds owed and made, disputes and the Stripe event inbox
    (``app.persistence.payments``). Amounts named ``amount`` are Stripe's units; an intent's
    status only moves up ``INTENT_STATUS_RANK``."""

    async def latest_intent(
        self, cart_id: str, user_id: str, quote_version: int
    ) -> RowMapping | None:
        """The member's newest attempt at paying this quote."""

    async def add_intent(self, **values: Any) -> RowMapping:
        """Insert a new attempt (status ``open``); when the same attempt exists already,
        that one."""

    async def member_intent_status(
        self, intent_id: str, cart_id: str, user_id: str
    ) -> IntentStatus | None:
        """The status of this member's intent on this cart, ``None`` if it is not theirs."""

    async def has_open_intents(self, cart_id: str) -> bool:
        """Whether any member of the cart has an ``open`` attempt."""

    async def set_intent_status(self, intent_id: str, status: IntentStatus) -> None:
        """Move the intent's status up to ``status`` (never down)."""

    async def unpaid_intents(self, cart_id: str) -> list[str]:
        """The cart's intents still ``open`` or ``failed`` (Stripe would let either be paid)."""

    async def cancel_unpaid_intent(self, intent_id: str) -> None:
        """Stripe canceled an open or failed intent; one paid meanwhile keeps its status."""

    async def close_open_intent(self, intent_id: str, status: IntentStatus) -> None:
        """An ``open`` attempt failed or was canceled; any other status stays."""

    async def intent_owner(self, intent_id: str) -> IntentOwner | None:
        """Whose share an intent we created pays."""

    async def intent_facts(self, intent_id: str) -> IntentFacts:
        """What has happened to the intent's capture: refunds that succeeded, open disputes."""

    async def request_refund(
        self,
        payment_intent_id: str,
        *,
        amount: int,
        currency: str,
        reason: str,
        cart_id: str | None,
        request_id: str | None = None,
    ) -> None:
        """Owe a refund: in full (once per intent, however often it is decided), or, with a
        ``request_id``, ``amount`` of it."""

    async def pending_refunds(
        self, *, payment_intent_ids: Sequence[str] | None, cart_id: str | None, limit: int
    ) -> list[str]:
        """Request ids of refunds still owed, on the intents named or of the cart if given."""

    async def claim_refund(self, request_id: str) -> RefundOwed | None:
        """The pending refund, locked until the end; ``None`` when done or taken."""

    async def note_refund_failed(self, request_id: str, attempts: int, error: str) -> None:
        """Stripe refused or did not answer: the request stays pending, tried again later
        (each time later)."""

    async def reopen_refund(self, payment_intent_id: str, error: str) -> bool:
        """Stripe reports the refund we asked for failed: owe it again in a new round;
        ``False`` when we never asked for one."""

    async def mark_refund_done(
        self, request_id: str, attempts: int, refund_id: str | None = None
    ) -> None:
        """The refund was made (or had been): nothing more is owed."""

    async def refund_request_state(self, request_id: str) -> tuple[str, str | None] | None:
        """The request's status (``pending`` or ``done``) and Stripe's refund id, if made."""

    async def record_refund(
        self,
        refund_id: str,
        payment_intent_id: str,
        *,
        amount: int,
        currency: str,
        status: str,
        reason: str,
    ) -> None:
        """A refund by Stripe's id; a later notice of it updates only its status."""

    async def refunded_total(self, payment_intent_id: str) -> int:
        """Stripe's units refunded so far (succeeded refunds)."""

    async def refunded_so_far(self, payment_intent_id: str) -> RefundedSoFar:
        """Given back or on its way back: refunds that did not fail and requests Stripe
        hasn't taken yet."""

    async def record_dispute(
        self,
        dispute_id: str,
        payment_intent_id: str,
        *,
        amount: int,
        currency: str,
        reason: str,
        status: str,
    ) -> None:
        """A dispute by Stripe's id, whatever it concerns; a later notice updates its status."""

    async def claim_event(self, event_id: str, event_type: str) -> bool:
        """Enter a Stripe event in the inbox; ``False`` when it is there already."""

    async def record_outcome(
        self,
        event_id: str,
        outcome: str,
        reason: str | None,
        payment_intent_id: str | None,
        cart_id: str | None,
    ) -> None:
        """What the inboxed event did."""

    async def is_accounted_for(self, payment_intent_id: str) -> bool:
        """Recorded as a member's settled payment, on an order, owed back or refunded."""


class UnitOfWork(Protocol):
    """What a handler works with: repositories, Stripe, and work owed after commit."""

    @property
    def carts(self) -> CartRepository: ...

    @property
    def catalog(self) -> CatalogRepository: ...

    @property
    def orders(self) -> OrderRepository: ...

    @property
    def shop_carts(self) -> ShopCartRepository: ...

    @property
    def payments(self) -> PaymentRepository: ...

    @property
    def stripe(self) -> PaymentGateway: ...

    def refund_after_commit(
        self, *, cart_id: str | None = None, payment_intent_ids: Sequence[str] = ()
    ) -> None:
        """Once committed, ask Stripe for the refunds this transaction owes (requested with
        ``payments.request_refund``); a failure leaves them to the sweeper."""


class Handler(Protocol[C, R]):
    def __call__(self, command: C, uow: UnitOfWork, /) -> Awaitable[R]: ...


OutboxPayloads = Callable[[Sequence[DomainEvent], TeamCart | Order | None], list[str]]
"""Encodes an aggregate's events as outbox payloads, with the aggregate's view as of each
event's version (for carts, the projection's format; for orders, the order feed's: given by
the wiring)."""

RefundRunner = Callable[[str | None, Sequence[str]], Awaitable[object]]
"""Carries out owed refunds (by cart, or by intent id) against Stripe after commit."""


# --- what the runner needs of a transaction -------------------------------------------------


@dataclass(slots=True)
class OwedRefunds:
    """The refunds one transaction owes (``UnitOfWork.refund_after_commit``), carried out
    once it has committed."""

    cart_ids: list[str | None] = field(default_factory=list)
    intent_ids: list[str] = field(default_factory=list)


class OpenUnitOfWork(UnitOfWork, Protocol):
    """A unit of work as its runner sees it while its transaction is open."""

    @property
    def owed(self) -> OwedRefunds: ...

    async def flush(self) -> list[OutboxRecord]:
        """Save every changed cart with its version check (``VersionConflict`` when another
        transaction saved it first), insert new carts and orders, append their events; the
        records to relay once committed (none when not relaying)."""


class TransactionSource(Protocol):
    """Where a runner's transactions come from: PostgreSQL (:class:`SqlTransactions`), or
    memory (``tests.fakes.FakeTransactions``). The runner is the same over either."""

    def begin(
        self, *, lock: bool, relaying: bool
    ) -> contextlib.AbstractAsyncContextManager[OpenUnitOfWork]:
        """One transaction and its unit of work: committed when the block ends normally,
        rolled back when it raises. ``lock``: each cart is locked as it is loaded, until the
        end, so nobody else can save it meanwhile (the retry after a conflict).
        ``relaying``: its outbox records will go to a relay after the commit."""


# --- PostgreSQL ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Tracked:
    cart: TeamCart
    version: int  # as loaded; 0 for a new cart
    rows: cart_rows.Snapshot | None  # as loaded; None for a new cart


class SqlCarts:
    def __init__(self, conn: AsyncConnection, *, lock: bool) -> None:
        self._conn = conn
        self._lock = lock
        self.tracked: dict[str, _Tracked] = {}
        self.saving_alone = False
        """The save is this unit's one write, sent without a transaction (it commits as it
        runs): a connection lost meanwhile leaves nobody knowing whether it did."""

    async def get(self, cart_id: str) -> TeamCart | None:
        known = self.tracked.get(cart_id)
        if known is not None:
            return known.cart
        loaded = await cart_rows.load_cart(self._conn, cart_id, lock=self._lock)
        if loaded is None:
            return None
        cart, rows = loaded
        self.tracked[cart_id] = _Tracked(cart, cart.version, rows)
        return cart

    def add(self, cart: TeamCart) -> None:
        self.tracked[cart.id] = _Tracked(cart, 0, None)

    async def id_by_invite(self, invite_code: str) -> str | None:
        return await cart_rows.find_cart_id_by_invite(self._conn, invite_code)

    async def version_of(self, cart_id: str) -> int | None:
        return await cart_rows.version_of(self._conn, cart_id)

    async def is_member(self, cart_id: str, user_id: str) -> bool:
        return await cart_rows.is_member(self._conn, cart_id, user_id)

    async def due_ids(self, payment_window: timedelta) -> list[str]:
        return await cart_rows.due_cart_ids(self._conn, payment_window)

    async def claim_confirm_reminders(
        self, payment_window: timedelta, lead: timedelta
    ) -> list[cart_rows.ConfirmReminder]:
        return await cart_rows.claim_confirm_reminders(self._conn, payment_window, lead)

    async def reserve_stock(self, cart: TeamCart) -> None:
        await cart_rows.reserve_stock(self._conn, cart)

    async def release_stock(self, cart_id: str) -> None:
        await cart_rows.release_stock(self._conn, cart_id)

    async def release_items_stock(self, cart_id: str, items: Sequence[CartItem]) -> None:
        await cart_rows.release_items_stock(self._conn, cart_id, items)

    async def commit_stock(self, cart_id: str) -> None:
        await cart_rows.commit_stock(self._conn, cart_id)

    async def flush(self, payloads: OutboxPayloads, *, reserve: bool) -> list[OutboxRecord]:
        """Save every changed cart (version-checked) with its events: new carts first, then
        one statement per loaded cart (``cart_rows.save_cart``)."""
        records: list[OutboxRecord] = []
        changed: list[tuple[_Tracked, cart_rows.Snapshot, Sequence[DomainEvent]]] = []
        for tracked in self.tracked.values():
            events = tracked.cart.pull_events()
            if tracked.rows is None:
                tracked.rows = await cart_rows.insert_cart(self._conn, tracked.cart)
                if events:
                    records += await append_events(
                        self._conn, events, payloads(events, tracked.cart), reserve=reserve
                    )
            elif events or tracked.cart.version != tracked.version:
                changed.append((tracked, tracked.rows, events))
        if len(changed) > 1 and not self._conn.in_transaction():
            await self._conn.execute(_OPEN_TRANSACTION)  # the saves commit together
        self.saving_alone = bool(changed) and not self._conn.in_transaction()
        for tracked, rows, saving in changed:
            cart = tracked.cart
            saved = await cart_rows.save_cart(
                self._conn,
                cart,
                tracked.version,
                rows,
                saving,
                payloads(saving, cart),
                reserve=reserve,
            )
            if saved is None:
                raise VersionConflict(cart.id)
            tracked.rows, tracked.version = saved.rows, cart.version
            records += saved.records
        return records


_OPEN_TRANSACTION = text("SELECT 1")
"""Sent through SQLAlchemy only to open its transaction before statements sent to the
driver, which must share it."""


class SqlCatalog:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add_store(self, **values: Any) -> Row:
        return await catalog_rows.insert_store(self._conn, **values)

    async def stores(self) -> Sequence[Row]:
        return await catalog_rows.list_stores(self._conn)

    async def store(self, store_id: str) -> Row | None:
        return await catalog_rows.get_store(self._conn, store_id)

    async def add_product(self, **values: Any) -> Row:
        return await catalog_rows.insert_product(self._conn, **values)

    async def products(self, store_id: str) -> Sequence[Row]:
        return await catalog_rows.list_products(self._conn, store_id)

    async def add_coupon(self, **values: Any) -> Row | None:
        return await catalog_rows.insert_coupon(self._conn, **values)

    async def store_terms(self, store_id: str) -> StoreTerms | None:
        row = await catalog_rows.get_store(self._conn, store_id)
        return None if row is None else catalog_rows.store_terms(row)

    async def product(self, product_id: str) -> ProductSnapshot | None:
        row = await catalog_rows.get_product(self._conn, product_id)
        return None if row is None else catalog_rows.product_snapshot(row)

    async def coupon(self, store_id: str, code: str) -> CouponTerms | None:
        row = await catalog_rows.get_coupon(self._conn, store_id, code)
        return None if row is None else catalog_rows.coupon_terms(row)

    async def reserve_coupon(self, store_id: str, code: str, cart_id: str) -> bool:
        return await catalog_rows.reserve_coupon(self._conn, store_id, code, cart_id)

    async def release_coupon(self, cart_id: str) -> None:
        await catalog_rows.release_coupon(self._conn, cart_id)

    async def count_coupon_use(self, store_id: str, code: str, cart_id: str) -> bool:
        return await catalog_rows.count_coupon_use(self._conn, store_id, code, cart_id)

    async def add_staff(self, store_id: str, user_id: str) -> None:
        await catalog_rows.add_staff(self._conn, store_id, user_id)

    async def is_staff(self, store_id: str, user_id: str) -> bool:
        return await catalog_rows.is_staff(self._conn, store_id, user_id)

    async def return_stock(self, lines: Sequence[OrderLine]) -> None:
        await catalog_rows.return_stock(self._conn, lines)

    async def take_stock(self, lines: Sequence[OrderLine]) -> list[str]:
        return await catalog_rows.take_stock(self._conn, lines)

    async def stock_of(self, product_ids: Sequence[str]) -> dict[str, int | None]:
        return await catalog_rows.stock_of(self._conn, product_ids)


class SqlShopCarts:
    def __init__(self, conn: AsyncConnection, *, lock: bool) -> None:
        self._conn = conn
        self._lock = lock
        self.tracked: dict[str, tuple[ShopCart, int]] = {}  # version as loaded; 0: new

    async def get(self, cart_id: str) -> ShopCart | None:
        known = self.tracked.get(cart_id)
        if known is not None:
            return known[0]
        cart = await shop_cart_rows.load_shop_cart(self._conn, cart_id, lock=self._lock)
        if cart is not None:
            self.tracked[cart_id] = (cart, cart.version)
        return cart

    def add(self, cart: ShopCart) -> None:
        self.tracked[cart.id] = (cart, 0)

    async def open_ids(self, user_id: str, store_id: str | None = None) -> list[str]:
        return await shop_cart_rows.open_cart_ids_of(self._conn, user_id, store_id)

    async def id_of_order(self, order_id: str) -> str | None:
        return await shop_cart_rows.cart_id_of_order(self._conn, order_id)

    async def flush(self) -> None:
        for cart, version in list(self.tracked.values()):
            if version == 0:
                await shop_cart_rows.insert_shop_cart(self._conn, cart)
            elif cart.version != version and not await shop_cart_rows.save_shop_cart(
                self._conn, cart, version
            ):
                raise VersionConflict(cart.id)
            self.tracked[cart.id] = (cart, cart.version)


class SqlOrders:
    def __init__(self, conn: AsyncConnection, *, lock: bool) -> None:
        self._conn = conn
        self._lock = lock
        self.added: list[Order] = []
        self.loaded: dict[str, tuple[Order, int]] = {}  # each with its version as loaded

    async def next_number(self, today: date) -> str:
        return await order_rows.next_order_number(self._conn, today)

    async def get(self, order_id: str) -> Order | None:
        known = self.loaded.get(order_id)
        if known is not None:
            return known[0]
        order = await order_rows.load_order(self._conn, order_id, lock=self._lock)
        if order is not None:
            self.loaded[order_id] = (order, order.version)
        return order

    async def id_paid_by(self, payment_intent_id: str) -> str | None:
        return await order_rows.order_id_paid_by(self._conn, payment_intent_id)

    async def ids_for(
        self, user_id: str, *, limit: int, before: tuple[datetime, str] | None
    ) -> list[str]:
        return await order_rows.list_order_ids_for(self._conn, user_id, limit=limit, before=before)

    async def ids_of_store(
        self,
        store_id: str,
        *,
        statuses: Sequence[OrderStatus],
        limit: int,
        before: tuple[datetime, str] | None,
    ) -> list[str]:
        return await order_rows.list_store_order_ids(
            self._conn, store_id, statuses=statuses, limit=limit, before=before
        )

    def add(self, order: Order) -> None:
        self.added.append(order)

    async def due_unpaid_ids(self, payment_window: timedelta) -> list[str]:
        return await order_rows.due_unpaid_order_ids(self._conn, payment_window)

    async def flush(self, payloads: OutboxPayloads, *, reserve: bool) -> list[OutboxRecord]:
        """Insert new orders, save changed ones (``VersionConflict`` when another
        transaction saved one first), and append their events."""
        records: list[OutboxRecord] = []
        for order in self.added:
            await order_rows.insert_order(self._conn, order)
            records += await self._append(order, payloads, reserve=reserve)
        for order, version in self.loaded.values():
            if order.version == version:
                continue
            if not await order_rows.save_order(self._conn, order, version):
                raise VersionConflict(order.id)
            self.loaded[order.id] = (order, order.version)
            records += await self._append(order, payloads, reserve=reserve)
        return records

    async def _append(
        self, order: Order, payloads: OutboxPayloads, *, reserve: bool
    ) -> list[OutboxRecord]:
        events = order.pull_events()
        if not events:
            return []
        return await append_events(self._conn, events, payloads(events, order), reserve=reserve)


class SqlUnitOfWork:
    """One transaction on PostgreSQL (see the module docstring)."""

    def __init__(
        self,
        conn: AsyncConnection,
        stripe: PaymentGateway,
        payloads: OutboxPayloads,
        *,
        lock: bool,
        relaying: bool,
    ) -> None:
        self._conn = conn
        self._payloads = payloads
        self._relaying = relaying
        self._carts = SqlCarts(conn, lock=lock)
        self._catalog = SqlCatalog(conn)
        self._orders = SqlOrders(conn, lock=lock)
        self._shop_carts = SqlShopCarts(conn, lock=lock)
        self._payments = SqlPayments(conn)
        self._stripe = stripe
        self.owed = OwedRefunds()

    @property
    def carts(self) -> SqlCarts:
        return self._carts

    @property
    def catalog(self) -> SqlCatalog:
        return self._catalog

    @property
    def orders(self) -> SqlOrders:
        return self._orders

    @property
    def shop_carts(self) -> SqlShopCarts:
        return self._shop_carts

    @property
    def payments(self) -> SqlPayments:
        return self._payments

    @property
    def stripe(self) -> PaymentGateway:
        return self._stripe

    def refund_after_commit(
        self, *, cart_id: str | None = None, payment_intent_ids: Sequence[str] = ()
    ) -> None:
        if cart_id is not None:
            self.owed.cart_ids.append(cart_id)
        self.owed.intent_ids += payment_intent_ids

    async def flush(self) -> list[OutboxRecord]:
        """Save and append everything; the records to relay once committed."""
        # New orders first: their inserts open the transaction the carts' saves then join.
        records = await self._orders.flush(self._payloads, reserve=self._relaying)
        await self._shop_carts.flush()  # after the orders they were checked out into
        records += await self._carts.flush(self._payloads, reserve=self._relaying)
        return records if self._relaying else []


class SqlTransactions:
    """Transactions on one engine, each with its :class:`SqlUnitOfWork`."""

    def __init__(self, engine: AsyncEngine, stripe: PaymentGateway, payloads: OutboxPayloads):
        self.engine = engine
        self._stripe = stripe
        self._payloads = payloads

    @contextlib.asynccontextmanager
    async def begin(self, *, lock: bool, relaying: bool) -> AsyncIterator[OpenUnitOfWork]:
        """The transaction opens with its first statement sent through SQLAlchemy; a unit
        that sends none (a command that loads a cart and saves it, the usual case) sends its
        save alone, one atomic statement, with no BEGIN or COMMIT."""
        async with self.engine.connect() as conn:
            uow = SqlUnitOfWork(conn, self._stripe, self._payloads, lock=lock, relaying=relaying)
            try:
                yield uow
            except asyncpg.DeadlockDetectedError as exc:  # one of two writers rolled back
                raise VersionConflict("deadlock") from exc
            except ConnectionLost as exc:  # sent to the driver (cart_rows), not SQLAlchemy
                # What SQLAlchemy does on a lost connection it sees itself: this connection is
                # dropped, and so is every other one pooled (PostgreSQL restarted, most
                # likely: they are dead too), so the run again gets a fresh one.
                await conn.invalidate()
                await self.engine.dispose()
                if uow.carts.saving_alone:
                    raise  # the save may have committed: not to be run again
                raise _DeadConnection() from exc
            await conn.commit()


# --- the runner ----------------------------------------------------------------------------


class UnitOfWorkRunner:
    """Runs handlers in units of work on PostgreSQL (built once, in ``app.wiring``).

    ``relay``: takes each transaction's outbox records after its commit; ``None`` (a
    background job that must not wait on Redis) leaves them to the outbox dispatchers.
    ``refunds``: carries out the refunds a transaction owes, after its commit.

    What happens around a handler (the retries, the flush, what follows the commit) does not
    depend on where the data lives: :meth:`over` builds the same runner on another
    :class:`TransactionSource` (the tests' in-memory one)."""

    def __init__(
        self,
        engine: AsyncEngine,
        stripe: PaymentGateway,
        payloads: OutboxPayloads,
        refunds: RefundRunner,
        relay: Relay | None = None,
    ) -> None:
        self._start(SqlTransactions(engine, stripe, payloads), stripe, refunds, relay)

    @classmethod
    def over(
        cls,
        transactions: TransactionSource,
        stripe: PaymentGateway,
        refunds: RefundRunner,
        relay: Relay | None = None,
    ) -> UnitOfWorkRunner:
        """A runner whose transactions come from ``transactions``."""
        runner = cls.__new__(cls)
        runner._start(transactions, stripe, refunds, relay)
        return runner

    def _start(
        self,
        transactions: TransactionSource,
        stripe: PaymentGateway,
        refunds: RefundRunner,
        relay: Relay | None,
    ) -> None:
        self.stripe = stripe
        self._transactions = transactions
        self._refunds = refunds
        self._relay = relay

    @property
    def engine(self) -> AsyncEngine:
        """The engine of a runner on PostgreSQL."""
        if not isinstance(self._transactions, SqlTransactions):
            raise AttributeError(f"{self._transactions!r} is not on a database engine")
        return self._transactions.engine

    def without_relay(self) -> UnitOfWorkRunner:
        """The same runner whose events go to the outbox dispatchers (background work)."""
        return self.over(self._transactions, self.stripe, self._refunds)

    async def run(self, handler: Handler[T, R], command: T) -> R:
        """Run ``handler(command, uow)`` in one transaction, retried on a version conflict.

        Also run again, once, when the transaction's pooled connection turns out dead before
        the commit (PostgreSQL restarted since it was last used): nothing was committed, and
        a fresh connection is taken. A connection lost during the commit is not retried, as
        nobody can know whether it committed: that error reaches the caller (503)."""
        attempt, fresh_connection_tried = 1, False
        while attempt <= MAX_ATTEMPTS:
            relaying = self._relay is not None and self._relay.accepting
            try:
                async with self._transactions.begin(lock=attempt > 1, relaying=relaying) as uow:
                    try:
                        result = await handler(command, uow)
                        records = await uow.flush()
                    except DBAPIError as exc:
                        if _is_deadlock(exc):  # PostgreSQL rolled one of two writers back
                            raise VersionConflict("deadlock") from exc
                        if not exc.connection_invalidated or fresh_connection_tried:
                            raise
                        raise _DeadConnection() from exc
            except VersionConflict as conflict:
                # The retry locks each cart as it loads it: the writers meet at the cart's
                # row first, so it neither conflicts nor deadlocks again.
                log.info("version_conflict", teamcart_id=str(conflict), attempt=attempt)
                attempt += 1
                continue
            except _DeadConnection as dead:
                if fresh_connection_tried and dead.__cause__ is not None:
                    raise dead.__cause__ from None
                log.warning("dead_pooled_connection_retried")
                fresh_connection_tried = True
                continue
            await self._after_commit(uow.owed, records)
            return result
        raise VersionConflictError("the cart changed at the same time; try again")

    async def _after_commit(self, owed: OwedRefunds, records: list[OutboxRecord]) -> None:
        """What follows a commit never fails the request that committed: a refund Stripe or
        PostgreSQL can't take now stays owed, and the sweeper carries it out."""
        try:
            await self._carry_on(owed, records)
        except Exception as exc:
            log.warning("after_commit_failed", error=repr(exc))

    async def _carry_on(self, owed: OwedRefunds, records: list[OutboxRecord]) -> None:
        if records and self._relay is not None:
            await self._relay.relay_committed(records)
        for cart_id in owed.cart_ids:
            await self._refunds(cart_id, ())
        if owed.intent_ids:
            await self._refunds(None, owed.intent_ids)
