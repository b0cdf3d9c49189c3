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
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.failures import VersionConflictError
from app.payments.gateway import PaymentGateway
from app.persistence import carts as cart_rows
from app.persistence import catalog as catalog_rows
from app.persistence import orders as order_rows
from app.persistence.outbox import OutboxRecord, Relay, append_events
from app.persistence.payments import SqlPayments
from domain.catalog import CouponTerms, ProductSnapshot, StoreTerms
from domain.events import DomainEvent
from domain.order import Order
from domain.teamcart import TeamCart

log = structlog.get_logger("teamcart.uow")

MAX_ATTEMPTS = 2
"""The retry locks each cart as it loads it, so it cannot conflict again."""

C = TypeVar("C", contravariant=True)
R = TypeVar("R", covariant=True)
T = TypeVar("T")


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

    async def reserve_stock(self, cart: TeamCart) -> None:
        """Every line's quantity out of stock, or ``OutOfStock`` naming the products."""

    async def release_stock(self, cart_id: str) -> None: ...

    async def commit_stock(self, cart_id: str) -> None: ...


class CatalogRepository(Protocol):
    async def store_terms(self, store_id: str) -> StoreTerms | None: ...

    async def product(self, product_id: str) -> ProductSnapshot | None: ...

    async def coupon(self, store_id: str, code: str) -> CouponTerms | None: ...

    async def count_coupon_use(self, store_id: str, code: str) -> bool:
        """Count one use of the coupon; ``False`` if it has none left."""


class OrderRepository(Protocol):
    async def next_number(self) -> str: ...

    def add(self, order: Order) -> None:
        """A new order, inserted with its events at commit."""


class UnitOfWork(Protocol):
    """What a handler works with: repositories, Stripe, and work owed after commit."""

    @property
    def carts(self) -> CartRepository: ...

    @property
    def catalog(self) -> CatalogRepository: ...

    @property
    def orders(self) -> OrderRepository: ...

    @property
    def payments(self) -> SqlPayments: ...

    @property
    def stripe(self) -> PaymentGateway: ...

    def refund_after_commit(
        self, *, cart_id: str | None = None, payment_intent_ids: Sequence[str] = ()
    ) -> None:
        """Once committed, ask Stripe for the refunds this transaction owes (requested with
        ``payments.request_refund``); a failure leaves them to the sweeper."""


class Handler(Protocol[C, R]):
    def __call__(self, command: C, uow: UnitOfWork, /) -> Awaitable[R]: ...


OutboxPayloads = Callable[[Sequence[DomainEvent], TeamCart | None], list[str]]
"""Encodes an aggregate's events as outbox payloads (for carts, with the cart's view as of
each event's version: the projection's format, given by the wiring)."""

RefundRunner = Callable[[str | None, Sequence[str]], Awaitable[object]]
"""Carries out owed refunds (by cart, or by intent id) against Stripe after commit."""


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

    async def reserve_stock(self, cart: TeamCart) -> None:
        await cart_rows.reserve_stock(self._conn, cart)

    async def release_stock(self, cart_id: str) -> None:
        await cart_rows.release_stock(self._conn, cart_id)

    async def commit_stock(self, cart_id: str) -> None:
        await cart_rows.commit_stock(self._conn, cart_id)

    async def flush(self, payloads: OutboxPayloads, *, reserve: bool) -> list[OutboxRecord]:
        """Save every changed cart (version-checked) and append its events."""
        records: list[OutboxRecord] = []
        for tracked in self.tracked.values():
            cart = tracked.cart
            events = cart.pull_events()
            if tracked.rows is None:
                tracked.rows = await cart_rows.insert_cart(self._conn, cart)
            else:
                saved = await cart_rows.save_cart(self._conn, cart, tracked.version, tracked.rows)
                if saved is None:
                    raise VersionConflict(cart.id)
                tracked.rows, tracked.version = saved, cart.version
            if events:
                records += await append_events(
                    self._conn, events, payloads(events, cart), reserve=reserve
                )
        return records


class SqlCatalog:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def store_terms(self, store_id: str) -> StoreTerms | None:
        row = await catalog_rows.get_store(self._conn, store_id)
        return None if row is None else catalog_rows.store_terms(row)

    async def product(self, product_id: str) -> ProductSnapshot | None:
        row = await catalog_rows.get_product(self._conn, product_id)
        return None if row is None else catalog_rows.product_snapshot(row)

    async def coupon(self, store_id: str, code: str) -> CouponTerms | None:
        row = await catalog_rows.get_coupon(self._conn, store_id, code)
        return None if row is None else catalog_rows.coupon_terms(row)

    async def count_coupon_use(self, store_id: str, code: str) -> bool:
        return await catalog_rows.count_coupon_use(self._conn, store_id, code)


class SqlOrders:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self.added: list[Order] = []

    async def next_number(self) -> str:
        return await order_rows.next_order_number(self._conn)

    def add(self, order: Order) -> None:
        self.added.append(order)

    async def flush(self, payloads: OutboxPayloads, *, reserve: bool) -> list[OutboxRecord]:
        records: list[OutboxRecord] = []
        for order in self.added:
            await order_rows.insert_order(self._conn, order)
            events = order.pull_events()
            records += await append_events(
                self._conn, events, payloads(events, None), reserve=reserve
            )
        return records


@dataclass(slots=True)
class _OwedRefunds:
    cart_ids: list[str | None] = field(default_factory=list)
    intent_ids: list[str] = field(default_factory=list)


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
        self._orders = SqlOrders(conn)
        self._payments = SqlPayments(conn)
        self._stripe = stripe
        self.owed = _OwedRefunds()

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
        records = await self._carts.flush(self._payloads, reserve=self._relaying)
        records += await self._orders.flush(self._payloads, reserve=self._relaying)
        return records if self._relaying else []


class UnitOfWorkRunner:
    """Runs handlers in units of work on one engine (built once, in ``app.wiring``).

    ``relay``: takes each transaction's outbox records after its commit; ``None`` (a
    background job that must not wait on Redis) leaves them to the outbox dispatchers.
    ``refunds``: carries out the refunds a transaction owes, after its commit."""

    def __init__(
        self,
        engine: AsyncEngine,
        stripe: PaymentGateway,
        payloads: OutboxPayloads,
        refunds: RefundRunner,
        relay: Relay | None = None,
    ) -> None:
        self.engine = engine
        self.stripe = stripe
        self._payloads = payloads
        self._refunds = refunds
        self._relay = relay

    def without_relay(self) -> UnitOfWorkRunner:
        """The same runner whose events go to the outbox dispatchers (background work)."""
        return UnitOfWorkRunner(self.engine, self.stripe, self._payloads, self._refunds)

    async def run(self, handler: Handler[T, R], command: T) -> R:
        """Run ``handler(command, uow)`` in one transaction, retried on a version conflict."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            relaying = self._relay is not None and self._relay.accepting
            try:
                async with self._transaction(lock=attempt > 1, relaying=relaying) as uow:
                    result = await handler(command, uow)
                    records = await uow.flush()
            except VersionConflict as conflict:
                log.info("version_conflict", teamcart_id=str(conflict), attempt=attempt)
                continue
            await self._after_commit(uow, records)
            return result
        raise VersionConflictError("the cart changed at the same time; try again")

    @contextlib.asynccontextmanager
    async def _transaction(self, *, lock: bool, relaying: bool) -> AsyncIterator[SqlUnitOfWork]:
        async with self.engine.begin() as conn:
            yield SqlUnitOfWork(conn, self.stripe, self._payloads, lock=lock, relaying=relaying)

    async def _after_commit(self, uow: SqlUnitOfWork, records: list[OutboxRecord]) -> None:
        if records and self._relay is not None:
            await self._relay.relay_committed(records)
        for cart_id in uow.owed.cart_ids:
            await self._refunds(cart_id, ())
        if uow.owed.intent_ids:
            await self._refunds(None, uow.owed.intent_ids)
