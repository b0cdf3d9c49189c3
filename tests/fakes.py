"""The unit of work in memory: :class:`FakeDatabase`, :class:`FakeUnitOfWork` over it, the
app's own ``UnitOfWorkRunner`` on top (:func:`fake_runner`), and a :class:`FakeGateway` for
Stripe.

The fake keeps PostgreSQL's promises, not its machinery, and
``tests/unit_of_work_contract.py`` runs the same test case against both to prove it:

* every table is a dict of committed rows (immutable values; a cart is stored as its own copy
  with its version). A transaction's writes wait in its own overlay, which it reads through,
  and reach the dicts only when it commits; a rollback drops them, so nothing it did is kept;
* a write (or a load with ``lock``) takes the row's lock until the transaction ends, as
  PostgreSQL's row locks do: a concurrent writer of the same row waits, then sees the
  committed row (READ COMMITTED). So a cart's save checks the version it was loaded with
  against the committed one and raises the same ``VersionConflict``; stock counts can't lose
  an update; ``claim_refund`` skips a request another transaction holds;
* order numbers come from a sequence that, like PostgreSQL's, is not rolled back;
* :meth:`FakeDatabase.now` is the database's clock (PostgreSQL's ``now()``): a refund that
  failed is due again after its backoff on it, and a test moves it on with ``advance``.

Test data goes in with the builders (``add_store``, ``add_product``, ``add_coupon``,
``add_cart``); what a test asserts on is read with :meth:`FakeDatabase.cart`,
:meth:`~FakeDatabase.stock_of`, :meth:`~FakeDatabase.events_of` or the tables' ``rows``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import functools
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import RowMapping
from sqlalchemy.engine import result_tuple
from sqlalchemy.exc import NoResultFound

from app.payments.gateway import (
    AlreadyRefunded,
    CardDeclined,
    CheckoutSessionInfo,
    ConnectAccountInfo,
    ConnectCharge,
    DestinationChargeInfo,
    GatewayError,
    IntentInfo,
    PayoutInfo,
    RefundInfo,
    TransferInfo,
    TransferReversalInfo,
)
from app.persistence import catalog as catalog_rows
from app.persistence.carts import ConfirmReminder
from app.persistence.outbox import OutboxRecord, Relay
from app.persistence.payments import (
    DISPUTE_CLOSED_STATUSES,
    INTENT_STATUS_RANK,
    PROCESSING,
    RETRY_BACKOFF_SECONDS,
    IntentFacts,
    IntentOwner,
    IntentStatus,
    RefundedSoFar,
    RefundOwed,
    RefundRequestStatus,
)
from app.unit_of_work import (
    OpenUnitOfWork,
    OutboxPayloads,
    OwedRefunds,
    RefundRunner,
    Row,
    UnitOfWorkRunner,
    VersionConflict,
)
from app.use_cases.order_views import event_payloads
from app.use_cases.payments.refunds import carry_out_refunds
from domain.catalog import CouponTerms, ProductSnapshot, StoreTerms
from domain.checkout import ShopCart, ShopCartStatus
from domain.errors import OutOfStock
from domain.events import DomainEvent
from domain.order import Order, OrderKind, OrderLine, OrderPayment, OrderStatus, order_number
from domain.payments import PaymentStatus
from domain.teamcart import CONFIRM_WINDOWS, CartItem, CartStatus, TeamCart

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

LOCK_WAIT_SECONDS = 5.0
"""How long a transaction waits for a row lock before :class:`FakeDeadlock` (PostgreSQL
detects a deadlock after a second; a fake that hung would hang the test run)."""


class DuplicateKeyError(Exception):
    """What PostgreSQL's unique violation would be: an insert of a key that exists."""


class FakeDeadlock(RuntimeError):
    """A row lock was not granted in time: two transactions wait on each other."""


class _Gone(enum.Enum):
    ROW = "deleted"


GONE = _Gone.ROW


# --- tables and transactions ---------------------------------------------------------------


class FakeTransaction:
    """One transaction: its pending writes (kept by each table it touched) and its locks."""

    def __init__(self) -> None:
        self._held: set[asyncio.Lock] = set()
        self._touched: list[FakeTable[Any, Any]] = []
        self.outbox: list[OutboxEntry] = []

    async def acquire(self, lock: asyncio.Lock) -> None:
        if lock in self._held:
            return
        try:
            async with asyncio.timeout(LOCK_WAIT_SECONDS):
                await lock.acquire()
        except TimeoutError as exc:
            raise FakeDeadlock("a row lock was not granted: two transactions wait") from exc
        self._held.add(lock)

    async def try_acquire(self, lock: asyncio.Lock) -> bool:
        """Like ``SKIP LOCKED``: take the lock unless another transaction has it."""
        if lock in self._held:
            return True
        if lock.locked():
            return False
        await self.acquire(lock)
        return True

    def touch(self, table: FakeTable[Any, Any]) -> None:
        if table not in self._touched:
            self._touched.append(table)

    def end(self, *, commit: bool) -> None:
        """Apply (or drop) every pending write, then let the waiting transactions go on."""
        for table in self._touched:
            table.end(self, commit=commit)
        self._touched.clear()
        for lock in self._held:
            lock.release()
        self._held.clear()


class FakeTable(Generic[K, V]):
    """Committed rows by key (``rows``), each transaction's pending writes, a lock per key."""

    def __init__(self) -> None:
        self.rows: dict[K, V] = {}
        self._locks: dict[K, asyncio.Lock] = {}
        self._pending: dict[FakeTransaction, dict[K, V | _Gone]] = {}

    def get(self, tx: FakeTransaction, key: K) -> V | None:
        """The row as this transaction sees it: its own write, else the committed row."""
        pending = self._pending.get(tx, {})
        if key in pending:
            value = pending[key]
            return None if isinstance(value, _Gone) else value
        return self.rows.get(key)

    def items(self, tx: FakeTransaction) -> list[tuple[K, V]]:
        merged: dict[K, V | _Gone] = {**self.rows, **self._pending.get(tx, {})}
        return [(key, value) for key, value in merged.items() if not isinstance(value, _Gone)]

    async def lock(self, tx: FakeTransaction, key: K) -> None:
        """Hold the row (existing or not) until ``tx`` ends; waits for its current holder."""
        await tx.acquire(self._locks.setdefault(key, asyncio.Lock()))

    async def try_lock(self, tx: FakeTransaction, key: K) -> bool:
        return await tx.try_acquire(self._locks.setdefault(key, asyncio.Lock()))

    async def put(self, tx: FakeTransaction, key: K, value: V) -> None:
        await self.lock(tx, key)
        tx.touch(self)
        self._pending.setdefault(tx, {})[key] = value

    async def delete(self, tx: FakeTransaction, key: K) -> None:
        await self.lock(tx, key)
        tx.touch(self)
        self._pending.setdefault(tx, {})[key] = GONE

    def end(self, tx: FakeTransaction, *, commit: bool) -> None:
        pending = self._pending.pop(tx, {})
        if not commit:
            return
        for key, value in pending.items():
            if isinstance(value, _Gone):
                self.rows.pop(key, None)
            else:
                self.rows[key] = value


# --- rows ----------------------------------------------------------------------------------


def copy_cart(cart: TeamCart) -> TeamCart:
    """The cart as stored and loaded again, without its pending events: rebuilt through its
    constructor as the repository rebuilds a row. Its parts (members, items, the quote, the
    terms) are frozen values, so the copy may share them; changing it never changes this."""
    return TeamCart(
        id=cart.id,
        store=cart.store,
        host_user_id=cart.host_user_id,
        invite_code=cart.invite_code,
        status=cart.status,
        version=cart.version,
        quote_version=cart.quote_version,
        deadline=cart.deadline,
        created_at=cart.created_at,
        locked_at=cart.locked_at,
        members=cart.members.values(),
        items=cart.items.values(),
        tip_minor=cart.tip_minor,
        coupon=cart.coupon,
        quote=cart.quote,
        order_id=cart.order_id,
        removed_user_ids=cart.removed_user_ids,
        payment_mode=cart.payment_mode,
        allowance_minor=cart.allowance_minor,
        spending_limit_minor=cart.spending_limit_minor,
        capture=cart.capture,
        reminder_minutes=cart.reminder_minutes,
    )


def copy_order(order: Order) -> Order:
    """The order as stored, without its pending events (see :func:`copy_cart`)."""
    return Order(
        id=order.id,
        number=order.number,
        cart_id=order.cart_id,
        store_id=order.store_id,
        currency=order.currency,
        host_user_id=order.host_user_id,
        lines=order.lines,
        totals=order.totals,
        payments=order.payments,
        delivery_address=order.delivery_address,
        status=order.status,
        created_at=order.created_at,
        version=order.version,
        coupon_code=order.coupon_code,
        kind=order.kind,
        store_name=order.store_name,
        history=order.history,
        tracking=order.tracking,
    )


@dataclass(frozen=True, slots=True)
class StoredCart:
    cart: TeamCart  # a copy nobody changes: loads copy it again
    version: int
    saved: int  # the database's write counter when saved (PostgreSQL's updated_at order)


@dataclass(frozen=True, slots=True)
class StockedProduct:
    product: ProductSnapshot
    stock: int | None  # None: unlimited


@dataclass(frozen=True, slots=True)
class IntentRow:
    id: str
    cart_id: str
    user_id: str
    quote_version: int
    attempt: int
    amount_minor: int
    currency: str
    client_secret: str
    status: str
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def mapping(self) -> RowMapping:
        """As PostgreSQL returns it (a ``RowMapping`` of every column)."""
        names = [f.name for f in dataclasses.fields(self)]
        return result_tuple(names)([getattr(self, name) for name in names])._mapping


@dataclass(frozen=True, slots=True)
class RefundRequestRow:
    payment_intent_id: str
    cart_id: str | None
    amount: int
    currency: str
    reason: str
    status: str = RefundRequestStatus.PENDING.value
    attempts: int = 0
    last_error: str | None = None
    round: int = 1
    next_attempt_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    partial: bool = False
    refund_id: str | None = None


@dataclass(frozen=True, slots=True)
class RefundRow:
    id: str
    payment_intent_id: str
    amount_minor: int
    currency: str
    status: str
    reason: str


@dataclass(frozen=True, slots=True)
class DisputeRow:
    id: str
    payment_intent_id: str
    amount: int
    currency: str
    reason: str
    status: str


@dataclass(frozen=True, slots=True)
class InboxRow:
    id: str
    type: str
    outcome: str
    reason: str | None = None
    payment_intent_id: str | None = None
    cart_id: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    aggregate_type: str
    aggregate_id: str
    version: int
    event_type: str
    payload: str  # JSON text, as the runner's payload encoder made it


_SETTLED_ON_A_MEMBER = (PaymentStatus.PAID_ONLINE, PaymentStatus.REVIEW, PaymentStatus.REFUNDED)
_DISPUTES_CLOSED_IN_OUR_FAVOUR = ("won", "warning_closed")


class FakeDatabase:
    """Every table the unit of work touches, committed state only (see the module docstring)."""

    def __init__(self) -> None:
        self.carts: FakeTable[str, StoredCart] = FakeTable()
        self.stores: FakeTable[str, StoreTerms] = FakeTable()
        self.products: FakeTable[str, StockedProduct] = FakeTable()
        self.coupons: FakeTable[tuple[str, str], CouponTerms] = FakeTable()
        self.coupon_reservations: FakeTable[str, tuple[str, str]] = FakeTable()  # cart → coupon
        self.confirm_reminded: FakeTable[str, datetime] = FakeTable()  # cart → when
        # The catalog's rows as the routes read them (the terms above are derived from them
        # for carts); keys as PostgreSQL's: store id, product id, (store id, code).
        self.store_rows: FakeTable[str, dict[str, Any]] = FakeTable()
        self.product_rows: FakeTable[str, dict[str, Any]] = FakeTable()
        self.coupon_rows: FakeTable[tuple[str, str], dict[str, Any]] = FakeTable()
        self.reservations: FakeTable[tuple[str, str], int] = FakeTable()  # (cart, product)
        self.orders: FakeTable[str, Order] = FakeTable()
        self.order_payments: FakeTable[tuple[str, str], OrderPayment] = FakeTable()
        self.store_staff: FakeTable[tuple[str, str], bool] = FakeTable()
        self.shop_carts: FakeTable[str, ShopCart] = FakeTable()
        self.intents: FakeTable[str, IntentRow] = FakeTable()
        # the unique (cart, user, quote version, attempt) index of payment_intents
        self.intent_attempts: FakeTable[tuple[str, str, int, int], str] = FakeTable()
        self.refund_requests: FakeTable[str, RefundRequestRow] = FakeTable()
        self.refunds: FakeTable[str, RefundRow] = FakeTable()
        self.disputes: FakeTable[str, DisputeRow] = FakeTable()
        self.inbox: FakeTable[str, InboxRow] = FakeTable()
        self.outbox: list[OutboxEntry] = []
        self._order_numbers = itertools.count(1)
        self._outbox_ids = itertools.count(1)
        self._writes = itertools.count(1)
        self._clock_offset = timedelta(0)

    # --- the clock (PostgreSQL's ``now()``) -----------------------------------------------

    def now(self) -> datetime:
        return datetime.now(UTC) + self._clock_offset

    def advance(self, delta: timedelta) -> None:
        """Move the database's clock on (a refund's backoff passing, say)."""
        self._clock_offset += delta

    # --- sequences (not transactional, as in PostgreSQL) ----------------------------------

    def next_order_number(self, today: date) -> str:
        return order_number(today, next(self._order_numbers))

    def next_outbox_id(self) -> int:
        return next(self._outbox_ids)

    def next_write(self) -> int:
        return next(self._writes)

    # --- test data in ---------------------------------------------------------------------

    def add_store(self, store: StoreTerms) -> StoreTerms:
        self.stores.rows[store.store_id] = store
        return store

    def add_product(self, product: ProductSnapshot, *, stock: int | None = None) -> ProductSnapshot:
        """A product of a store added before; ``stock`` None is unlimited."""
        assert product.store_id in self.stores.rows, "add the product's store first"
        self.products.rows[product.product_id] = StockedProduct(product, stock)
        return product

    def add_coupon(self, store_id: str, coupon: CouponTerms) -> CouponTerms:
        """A store's coupon; codes are stored upper case, as the catalog route stores them."""
        assert coupon.code == coupon.code.upper(), "coupon codes are stored upper case"
        self.coupons.rows[(store_id, coupon.code)] = coupon
        return coupon

    def add_cart(self, cart: TeamCart) -> TeamCart:
        """A cart as if saved (built with the unit builders); its pending events are dropped."""
        self.carts.rows[cart.id] = StoredCart(copy_cart(cart), cart.version, self.next_write())
        return cart

    # --- what a test reads ----------------------------------------------------------------

    def cart(self, cart_id: str) -> TeamCart | None:
        """The committed cart (a copy)."""
        stored = self.carts.rows.get(cart_id)
        return None if stored is None else copy_cart(stored.cart)

    def stock_of(self, product_id: str) -> int | None:
        return self.products.rows[product_id].stock

    def reservations_of(self, cart_id: str) -> dict[str, int]:
        return {p: q for (c, p), q in self.reservations.rows.items() if c == cart_id}

    def coupon(self, store_id: str, code: str) -> CouponTerms:
        return self.coupons.rows[(store_id, code)]

    def events_of(self, aggregate_id: str) -> list[tuple[int, str]]:
        """``(version, event name)`` of the aggregate's committed events, in outbox order."""
        return [(e.version, e.event_type) for e in self.outbox if e.aggregate_id == aggregate_id]

    def order_of_cart(self, cart_id: str) -> Order | None:
        return next((o for o in self.orders.rows.values() if o.cart_id == cart_id), None)


# --- the repositories ----------------------------------------------------------------------


@dataclass(slots=True)
class _Tracked:
    cart: TeamCart
    version: int  # as loaded; 0 for a new cart
    new: bool


class FakeCarts:
    """``CartRepository`` in memory; remembers every cart it hands out, like ``SqlCarts``."""

    def __init__(self, db: FakeDatabase, tx: FakeTransaction, *, lock: bool) -> None:
        self._db = db
        self._tx = tx
        self._lock = lock
        self.tracked: dict[str, _Tracked] = {}

    async def get(self, cart_id: str) -> TeamCart | None:
        known = self.tracked.get(cart_id)
        if known is not None:
            return known.cart
        if self._lock:
            await self._db.carts.lock(self._tx, cart_id)
        stored = self._db.carts.get(self._tx, cart_id)
        if stored is None:
            return None
        cart = copy_cart(stored.cart)
        if cart.coupon is not None:  # loaded with the coupon as the catalog has it now
            cart.coupon = self._db.coupons.get(self._tx, (cart.store.store_id, cart.coupon.code))
        self.tracked[cart_id] = _Tracked(cart, stored.version, new=False)
        return cart

    def add(self, cart: TeamCart) -> None:
        self.tracked[cart.id] = _Tracked(cart, 0, new=True)

    def _stored(self) -> Iterator[TeamCart]:
        return (stored.cart for _, stored in self._db.carts.items(self._tx))

    async def id_by_invite(self, invite_code: str) -> str | None:
        return next((c.id for c in self._stored() if c.invite_code == invite_code), None)

    async def version_of(self, cart_id: str) -> int | None:
        stored = self._db.carts.get(self._tx, cart_id)
        return None if stored is None else stored.version

    async def is_member(self, cart_id: str, user_id: str) -> bool:
        stored = self._db.carts.get(self._tx, cart_id)
        return stored is not None and stored.cart.is_member(user_id)

    async def due_ids(self, payment_window: timedelta) -> list[str]:
        """As ``app.persistence.carts.due_cart_ids``: open past the deadline, locked past
        the payment window, ready past the confirm window; least recently saved first."""
        now = self._db.now()
        windows = {
            CartStatus.LOCKED: payment_window,
            CartStatus.READY_TO_CONFIRM: CONFIRM_WINDOWS * payment_window,
        }

        def is_due(cart: TeamCart) -> bool:
            if cart.status is CartStatus.OPEN:
                return cart.deadline is not None and cart.deadline <= now
            window = windows.get(cart.status)
            return (
                window is not None
                and cart.locked_at is not None
                and (cart.locked_at <= now - window)
            )

        due = [stored for _, stored in self._db.carts.items(self._tx) if is_due(stored.cart)]
        return [stored.cart.id for stored in sorted(due, key=lambda s: s.saved)][:100]

    async def claim_confirm_reminders(
        self, payment_window: timedelta, lead: timedelta
    ) -> list[ConfirmReminder]:
        """As ``app.persistence.carts.claim_confirm_reminders``: each host reminded once."""
        window = CONFIRM_WINDOWS * payment_window
        cutoff = self._db.now() - (window - lead)
        claimed = []
        for cart_id, stored in self._db.carts.items(self._tx):
            cart = stored.cart
            if (
                cart.status is CartStatus.READY_TO_CONFIRM
                and cart.locked_at is not None
                and cart.locked_at <= cutoff
                and self._db.confirm_reminded.get(self._tx, cart_id) is None
            ):
                await self._db.confirm_reminded.put(self._tx, cart_id, self._db.now())
                claimed.append(ConfirmReminder(cart_id, cart.host_user_id, cart.locked_at + window))
        return claimed

    async def reserve_stock(self, cart: TeamCart) -> None:
        """All or nothing, products in id order, as ``app.persistence.carts.reserve_stock``."""
        wanted = Counter[str]()
        for item in cart.items.values():
            wanted[item.product_id] += item.quantity
        short: list[tuple[str, str]] = []
        for product_id in sorted(wanted):
            quantity = wanted[product_id]
            row = self._product(product_id)
            if row.stock is None:
                continue
            await self._db.products.lock(self._tx, product_id)
            row = self._product(product_id)  # as committed once the lock is ours
            assert row.stock is not None
            if row.stock >= quantity:
                await self._db.products.put(
                    self._tx, product_id, StockedProduct(row.product, row.stock - quantity)
                )
                key = (cart.id, product_id)
                if self._db.reservations.get(self._tx, key) is not None:
                    raise DuplicateKeyError(f"stock_reservations {key}")
                await self._db.reservations.put(self._tx, key, quantity)
            else:
                short.append((product_id, f"{row.product.name} ({row.stock} left)"))
        if short:
            raise OutOfStock(
                product_ids=[product_id for product_id, _ in short],
                detail="Out of stock: " + ", ".join(label for _, label in short) + ".",
            )

    def _product(self, product_id: str) -> StockedProduct:
        row = self._db.products.get(self._tx, product_id)
        if row is None:
            raise NoResultFound(f"no product {product_id}")
        return row

    async def release_stock(self, cart_id: str) -> None:
        for (owner, product_id), quantity in sorted(self._db.reservations.items(self._tx)):
            if owner != cart_id:
                continue
            await self._db.reservations.delete(self._tx, (owner, product_id))
            await self._db.products.lock(self._tx, product_id)
            row = self._product(product_id)
            if row.stock is not None:
                stock = row.stock + quantity
                await self._db.products.put(
                    self._tx, product_id, StockedProduct(row.product, stock)
                )

    async def release_items_stock(self, cart_id: str, items: Sequence[CartItem]) -> None:
        quantities = Counter[str]()
        for item in items:
            quantities[item.product_id] += item.quantity
        for product_id in sorted(quantities):
            held = self._db.reservations.get(self._tx, (cart_id, product_id))
            if held is None:
                continue
            given = min(held, quantities[product_id])
            if given >= held:
                await self._db.reservations.delete(self._tx, (cart_id, product_id))
            else:
                await self._db.reservations.put(self._tx, (cart_id, product_id), held - given)
            await self._db.products.lock(self._tx, product_id)
            row = self._product(product_id)
            if row.stock is not None:
                await self._db.products.put(
                    self._tx, product_id, StockedProduct(row.product, row.stock + given)
                )

    async def commit_stock(self, cart_id: str) -> None:
        for owner, product_id in [key for key, _ in self._db.reservations.items(self._tx)]:
            if owner == cart_id:
                await self._db.reservations.delete(self._tx, (owner, product_id))

    async def flush(self, appended: _Outbox) -> None:
        """Save every changed cart (version-checked), insert new ones, append their events."""
        for tracked in self.tracked.values():
            cart = tracked.cart
            events = cart.pull_events()
            if tracked.new:
                await self._insert(cart)
                tracked.new = False
            elif cart.version != tracked.version:
                await self._db.carts.lock(self._tx, cart.id)  # as the UPDATE locks the row
                stored = self._db.carts.get(self._tx, cart.id)
                if stored is None or stored.version != tracked.version:
                    raise VersionConflict(cart.id)
                if stored.cart.status is not CartStatus.READY_TO_CONFIRM:
                    # As PostgreSQL's save: a reminder is for one stretch of being ready.
                    await self._db.confirm_reminded.delete(self._tx, cart.id)
                await self._save(cart)
            tracked.version = cart.version
            appended.append(events, cart)

    async def _insert(self, cart: TeamCart) -> None:
        await self._db.carts.lock(self._tx, cart.id)
        if self._db.carts.get(self._tx, cart.id) is not None:
            raise DuplicateKeyError(f"teamcarts {cart.id}")
        if await self.id_by_invite(cart.invite_code) is not None:
            raise DuplicateKeyError(f"teamcarts invite_code {cart.invite_code}")
        await self._save(cart)

    async def _save(self, cart: TeamCart) -> None:
        stored = StoredCart(copy_cart(cart), cart.version, self._db.next_write())
        await self._db.carts.put(self._tx, cart.id, stored)


def _in_order(row: Row) -> int:
    """Rows in the order they were added (PostgreSQL's ``ORDER BY created_at, id``)."""
    return int(row["order"])


class FakeCatalog:
    """``CatalogRepository`` in memory."""

    def __init__(self, db: FakeDatabase, tx: FakeTransaction) -> None:
        self._db = db
        self._tx = tx

    async def add_store(self, **values: Any) -> Row:
        row = {**values, "created_at": self._db.now(), "order": self._db.next_write()}
        await self._db.store_rows.put(self._tx, row["id"], row)
        await self._db.stores.put(self._tx, row["id"], catalog_rows.store_terms(row))
        return row

    async def stores(self) -> Sequence[Row]:
        return sorted((row for _, row in self._db.store_rows.items(self._tx)), key=_in_order)

    async def store(self, store_id: str) -> Row | None:
        return self._db.store_rows.get(self._tx, store_id)

    async def add_product(self, **values: Any) -> Row:
        row = {**values, "created_at": self._db.now(), "order": self._db.next_write()}
        await self._db.product_rows.put(self._tx, row["id"], row)
        product = StockedProduct(catalog_rows.product_snapshot(row), row["stock"])
        await self._db.products.put(self._tx, row["id"], product)
        return row

    async def products(self, store_id: str) -> Sequence[Row]:
        rows = self._db.product_rows.items(self._tx)
        return sorted((row for _, row in rows if row["store_id"] == store_id), key=_in_order)

    async def add_coupon(self, **values: Any) -> Row | None:
        key = (values["store_id"], values["code"])
        if self._db.coupons.get(self._tx, key) is not None:
            return None
        row = {**values, "times_used": 0, "created_at": self._db.now()}
        await self._db.coupon_rows.put(self._tx, key, row)
        await self._db.coupons.put(self._tx, key, catalog_rows.coupon_terms(row))
        return row

    async def store_terms(self, store_id: str) -> StoreTerms | None:
        return self._db.stores.get(self._tx, store_id)

    async def product(self, product_id: str) -> ProductSnapshot | None:
        row = self._db.products.get(self._tx, product_id)
        return None if row is None else row.product

    async def coupon(self, store_id: str, code: str) -> CouponTerms | None:
        return self._db.coupons.get(self._tx, (store_id, code.upper()))

    async def reserve_coupon(self, store_id: str, code: str, cart_id: str) -> bool:
        key = (store_id, code)
        if self._db.coupons.get(self._tx, key) is None:
            return False
        await self._db.coupons.lock(self._tx, key)
        terms = self._db.coupons.get(self._tx, key)
        if terms is None:
            return False
        if terms.max_uses is not None:
            held = sum(
                1
                for cart, coupon in self._db.coupon_reservations.items(self._tx)
                if coupon == key and cart != cart_id
            )
            if terms.times_used + held >= terms.max_uses:
                return False
        await self._db.coupon_reservations.put(self._tx, cart_id, key)
        return True

    async def release_coupon(self, cart_id: str) -> None:
        await self._db.coupon_reservations.delete(self._tx, cart_id)

    async def count_coupon_use(self, store_id: str, code: str, cart_id: str) -> bool:
        key = (store_id, code)
        if self._db.coupons.get(self._tx, key) is None:
            return False
        await self._db.coupons.lock(self._tx, key)
        terms = self._db.coupons.get(self._tx, key)
        await self.release_coupon(cart_id)
        if terms is None or terms.exhausted:
            return False
        await self._db.coupons.put(
            self._tx, key, dataclasses.replace(terms, times_used=terms.times_used + 1)
        )
        return True

    async def add_staff(self, store_id: str, user_id: str) -> None:
        await self._db.store_staff.put(self._tx, (store_id, user_id), True)

    async def is_staff(self, store_id: str, user_id: str) -> bool:
        return self._db.store_staff.get(self._tx, (store_id, user_id)) is not None

    async def stock_of(self, product_ids: Sequence[str]) -> dict[str, int | None]:
        found = {p: self._db.products.get(self._tx, p) for p in product_ids}
        return {p: row.stock for p, row in found.items() if row is not None}

    async def take_stock(self, lines: Sequence[OrderLine]) -> list[str]:
        wanted = Counter[str]()
        for line in lines:
            wanted[line.product_id] += line.quantity
        short = []
        for product_id in sorted(wanted):
            await self._db.products.lock(self._tx, product_id)
            row = self._db.products.get(self._tx, product_id)
            if row is None or row.stock is None:
                continue
            stocked = StockedProduct(row.product, row.stock - wanted[product_id])
            await self._db.products.put(self._tx, product_id, stocked)
            if stocked.stock is not None and stocked.stock < 0:
                short.append(product_id)
        return short

    async def return_stock(self, lines: Sequence[OrderLine]) -> None:
        returned = Counter[str]()
        for line in lines:
            returned[line.product_id] += line.quantity
        for product_id in sorted(returned):
            await self._db.products.lock(self._tx, product_id)
            row = self._db.products.get(self._tx, product_id)
            if row is not None and row.stock is not None:
                stocked = StockedProduct(row.product, row.stock + returned[product_id])
                await self._db.products.put(self._tx, product_id, stocked)


def copy_shop_cart(cart: ShopCart) -> ShopCart:
    """The cart as stored (see :func:`copy_cart`)."""
    return ShopCart(
        id=cart.id,
        user_id=cart.user_id,
        store=cart.store,
        status=cart.status,
        state=cart.state,
        items=cart.items.values(),
        address=cart.address,
        delivery_method=cart.delivery_method,
        order_id=cart.order_id,
        created_at=cart.created_at,
        version=cart.version,
    )


class FakeShopCarts:
    """``ShopCartRepository`` in memory."""

    def __init__(self, db: FakeDatabase, tx: FakeTransaction, *, lock: bool) -> None:
        self._db = db
        self._tx = tx
        self._lock = lock
        self.tracked: dict[str, tuple[ShopCart, int]] = {}

    async def get(self, cart_id: str) -> ShopCart | None:
        known = self.tracked.get(cart_id)
        if known is not None:
            return known[0]
        if self._lock:
            await self._db.shop_carts.lock(self._tx, cart_id)
        stored = self._db.shop_carts.get(self._tx, cart_id)
        if stored is None:
            return None
        cart = copy_shop_cart(stored)
        self.tracked[cart_id] = (cart, cart.version)
        return cart

    def add(self, cart: ShopCart) -> None:
        self.tracked[cart.id] = (cart, 0)

    async def open_ids(self, user_id: str, store_id: str | None = None) -> list[str]:
        carts = sorted(
            (c for _, c in self._db.shop_carts.items(self._tx)), key=lambda c: c.created_at
        )
        return [
            c.id
            for c in carts
            if c.user_id == user_id
            and c.status is ShopCartStatus.OPEN
            and (store_id is None or c.store.store_id == store_id)
        ]

    async def id_of_order(self, order_id: str) -> str | None:
        return next(
            (c.id for _, c in self._db.shop_carts.items(self._tx) if c.order_id == order_id), None
        )

    async def flush(self) -> None:
        for cart, version in list(self.tracked.values()):
            if version and cart.version == version:
                continue
            await self._db.shop_carts.lock(self._tx, cart.id)
            stored = self._db.shop_carts.get(self._tx, cart.id)
            if (stored is None) != (version == 0) or (stored and stored.version != version):
                raise VersionConflict(cart.id)
            if version == 0 and cart.status is ShopCartStatus.OPEN:
                for _, other in self._db.shop_carts.items(self._tx):  # the partial unique index
                    if (other.user_id, other.store.store_id, other.status) == (
                        cart.user_id,
                        cart.store.store_id,
                        ShopCartStatus.OPEN,
                    ):
                        raise DuplicateKeyError(f"shop_carts open ({cart.user_id})")
            await self._db.shop_carts.put(self._tx, cart.id, copy_shop_cart(cart))
            self.tracked[cart.id] = (cart, cart.version)


class FakeOrders:
    """``OrderRepository`` in memory."""

    def __init__(self, db: FakeDatabase, tx: FakeTransaction, *, lock: bool) -> None:
        self._db = db
        self._tx = tx
        self._lock = lock
        self.added: list[Order] = []
        self.loaded: dict[str, tuple[Order, int]] = {}

    async def next_number(self, today: date) -> str:
        return self._db.next_order_number(today)

    def add(self, order: Order) -> None:
        self.added.append(order)

    async def get(self, order_id: str) -> Order | None:
        known = self.loaded.get(order_id)
        if known is not None:
            return known[0]
        if self._lock:
            await self._db.orders.lock(self._tx, order_id)
        stored = self._db.orders.get(self._tx, order_id)
        if stored is None:
            return None
        order = copy_order(stored)
        self.loaded[order_id] = (order, order.version)
        return order

    async def due_unpaid_ids(self, payment_window: timedelta) -> list[str]:
        due = self._db.now() - payment_window
        return [
            order.id
            for _, order in self._db.orders.items(self._tx)
            if order.kind is OrderKind.SINGLE and order.awaits_payment and order.created_at < due
        ]

    async def id_paid_by(self, payment_intent_id: str) -> str | None:
        return next(
            (
                order_id
                for (order_id, _), payment in self._db.order_payments.items(self._tx)
                if payment.reference == payment_intent_id
            ),
            None,
        )

    async def ids_of_store(
        self,
        store_id: str,
        *,
        statuses: Sequence[OrderStatus],
        limit: int,
        before: tuple[datetime, str] | None,
    ) -> list[str]:
        keys = sorted(
            (
                (order.created_at, order.id)
                for _, order in self._db.orders.items(self._tx)
                if order.store_id == store_id and (not statuses or order.status in statuses)
            ),
            reverse=True,
        )
        return [key[1] for key in keys if before is None or key < before][:limit]

    async def ids_for(
        self, user_id: str, *, limit: int, before: tuple[datetime, str] | None
    ) -> list[str]:
        """As PostgreSQL's: newest first by ``(created_at, id)``, after the cursor."""
        readable = [
            (order.created_at, order.id)
            for _, order in self._db.orders.items(self._tx)
            if user_id in order.participant_user_ids
        ]
        newest_first = sorted(readable, reverse=True)
        return [key[1] for key in newest_first if before is None or key < before][:limit]

    async def flush(self, appended: _Outbox) -> None:
        for order in self.added:
            await self._db.orders.lock(self._tx, order.id)
            taken = self._db.orders.items(self._tx)
            if any(
                key == order.id or o.number == order.number or o.cart_id == order.cart_id
                for key, o in taken
            ):
                raise DuplicateKeyError(f"orders {order.id}")
            await self._save(order)
            appended.append(order.pull_events(), order)
        self.added.clear()
        for order, version in list(self.loaded.values()):
            if order.version == version:
                continue
            await self._db.orders.lock(self._tx, order.id)  # as the UPDATE locks the row
            stored = self._db.orders.get(self._tx, order.id)
            if stored is None or stored.version != version:
                raise VersionConflict(order.id)
            await self._save(order)
            self.loaded[order.id] = (order, order.version)
            appended.append(order.pull_events(), order)

    async def _save(self, order: Order) -> None:
        await self._db.orders.put(self._tx, order.id, copy_order(order))
        for payment in order.payments:
            await self._db.order_payments.put(self._tx, (order.id, payment.user_id), payment)


def _rank(status: str) -> int:
    try:
        return INTENT_STATUS_RANK[IntentStatus(status)]
    except ValueError:
        return 0  # as the SQL's CASE … ELSE 0


class FakePayments:
    """``PaymentRepository`` in memory, row for row what ``SqlPayments`` writes."""

    def __init__(self, db: FakeDatabase, tx: FakeTransaction) -> None:
        self._db = db
        self._tx = tx

    def _intents(self) -> list[IntentRow]:
        return [row for _, row in self._db.intents.items(self._tx)]

    async def latest_intent(
        self, cart_id: str, user_id: str, quote_version: int
    ) -> RowMapping | None:
        attempts = [
            row
            for row in self._intents()
            if (row.cart_id, row.user_id, row.quote_version) == (cart_id, user_id, quote_version)
        ]
        return max(attempts, key=lambda row: row.attempt).mapping() if attempts else None

    async def add_intent(self, **values: Any) -> RowMapping:
        row = IntentRow(status=IntentStatus.OPEN.value, **values)
        attempt = (row.cart_id, row.user_id, row.quote_version, row.attempt)
        await self._db.intents.lock(self._tx, row.id)
        await self._db.intent_attempts.lock(self._tx, attempt)
        existing_id = self._db.intent_attempts.get(self._tx, attempt)
        if existing_id is None and self._db.intents.get(self._tx, row.id) is None:
            await self._db.intents.put(self._tx, row.id, row)
            await self._db.intent_attempts.put(self._tx, attempt, row.id)
            return row.mapping()
        existing = None if existing_id is None else self._db.intents.get(self._tx, existing_id)
        if existing is None:
            raise NoResultFound(f"no payment intent for attempt {attempt}")
        return existing.mapping()

    async def member_intent_status(
        self, intent_id: str, cart_id: str, user_id: str
    ) -> IntentStatus | None:
        row = self._db.intents.get(self._tx, intent_id)
        if row is None or (row.cart_id, row.user_id) != (cart_id, user_id):
            return None
        return IntentStatus(row.status)

    async def has_open_intents(self, cart_id: str) -> bool:
        return any(
            row.cart_id == cart_id and row.status == IntentStatus.OPEN for row in self._intents()
        )

    async def _update_intent(
        self, intent_id: str, status: IntentStatus, *, only_from: Callable[[str], bool]
    ) -> None:
        if self._db.intents.get(self._tx, intent_id) is None:
            return
        await self._db.intents.lock(self._tx, intent_id)
        row = self._db.intents.get(self._tx, intent_id)
        if row is not None and only_from(row.status):
            changed = dataclasses.replace(row, status=status.value, updated_at=datetime.now(UTC))
            await self._db.intents.put(self._tx, intent_id, changed)

    async def set_intent_status(self, intent_id: str, status: IntentStatus) -> None:
        rank = INTENT_STATUS_RANK[status]
        await self._update_intent(intent_id, status, only_from=lambda s: _rank(s) < rank)

    async def unpaid_intents(self, cart_id: str) -> list[str]:
        unpaid = {IntentStatus.OPEN, IntentStatus.FAILED}
        return [r.id for r in self._intents() if r.cart_id == cart_id and r.status in unpaid]

    async def cancel_unpaid_intent(self, intent_id: str) -> None:
        await self._update_intent(
            intent_id,
            IntentStatus.CANCELED,
            only_from=lambda s: s in (IntentStatus.OPEN, IntentStatus.FAILED),
        )

    async def close_open_intent(self, intent_id: str, status: IntentStatus) -> None:
        await self._update_intent(intent_id, status, only_from=lambda s: s == IntentStatus.OPEN)

    async def intent_owner(self, intent_id: str) -> IntentOwner | None:
        row = self._db.intents.get(self._tx, intent_id)
        if row is None:
            return None
        return IntentOwner(row.cart_id, row.user_id, row.amount_minor, row.currency)

    async def intent_facts(self, intent_id: str) -> IntentFacts:
        disputed = any(
            row.payment_intent_id == intent_id and row.status not in _DISPUTES_CLOSED_IN_OUR_FAVOUR
            for _, row in self._db.disputes.items(self._tx)
        )
        return IntentFacts(await self.refunded_total(intent_id), disputed)

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
        key = request_id or payment_intent_id
        await self._db.refund_requests.lock(self._tx, key)
        if self._db.refund_requests.get(self._tx, key) is None:
            owed = RefundRequestRow(
                payment_intent_id,
                cart_id,
                amount,
                currency,
                reason,
                next_attempt_at=self._db.now(),
                partial=request_id is not None,
            )
            await self._db.refund_requests.put(self._tx, key, owed)

    async def pending_refunds(
        self, *, payment_intent_ids: Sequence[str] | None, cart_id: str | None, limit: int
    ) -> list[str]:
        now = self._db.now()
        return [
            key
            for key, row in sorted(
                self._db.refund_requests.items(self._tx), key=lambda item: item[1].next_attempt_at
            )
            if row.status == RefundRequestStatus.PENDING
            and row.next_attempt_at <= now
            and (payment_intent_ids is None or row.payment_intent_id in payment_intent_ids)
            and (cart_id is None or row.cart_id == cart_id)
        ][:limit]

    async def claim_refund(self, request_id: str) -> RefundOwed | None:
        row = self._db.refund_requests.get(self._tx, request_id)
        if row is None or row.status != RefundRequestStatus.PENDING:
            return None
        if not await self._db.refund_requests.try_lock(self._tx, request_id):
            return None  # another transaction has it (FOR UPDATE SKIP LOCKED)
        row = self._db.refund_requests.get(self._tx, request_id)
        if row is None or row.status != RefundRequestStatus.PENDING:
            return None
        return RefundOwed(
            request_id=request_id,
            payment_intent_id=row.payment_intent_id,
            partial=row.partial,
            cart_id=row.cart_id,
            amount=row.amount,
            currency=row.currency,
            reason=row.reason,
            attempts=row.attempts,
            round=row.round,
        )

    async def _update_request(self, payment_intent_id: str, **changes: Any) -> None:
        await self._db.refund_requests.lock(self._tx, payment_intent_id)
        row = self._db.refund_requests.get(self._tx, payment_intent_id)
        if row is not None:
            changed = dataclasses.replace(row, **changes)
            await self._db.refund_requests.put(self._tx, payment_intent_id, changed)

    async def note_refund_failed(self, request_id: str, attempts: int, error: str) -> None:
        """Not due again for ``RETRY_BACKOFF_SECONDS`` (doubling), on the database's clock."""
        first, cap = RETRY_BACKOFF_SECONDS
        delay = timedelta(seconds=min(cap, first * 2 ** min(attempts - 1, 20)))
        await self._update_request(
            request_id,
            attempts=attempts,
            last_error=error[:500],
            next_attempt_at=self._db.now() + delay,
        )

    async def reopen_refund(self, payment_intent_id: str, error: str) -> bool:
        row = self._db.refund_requests.get(self._tx, payment_intent_id)
        if row is None or row.status != RefundRequestStatus.DONE:
            return False
        await self._update_request(
            payment_intent_id,
            status=RefundRequestStatus.PENDING.value,
            round=row.round + 1,
            last_error=error[:500],
            next_attempt_at=self._db.now(),
        )
        return True

    async def mark_refund_done(
        self, request_id: str, attempts: int, refund_id: str | None = None
    ) -> None:
        await self._update_request(
            request_id,
            status=RefundRequestStatus.DONE.value,
            attempts=attempts,
            refund_id=refund_id,
        )

    async def refund_request_state(self, request_id: str) -> tuple[str, str | None] | None:
        row = self._db.refund_requests.get(self._tx, request_id)
        return None if row is None else (row.status, row.refund_id)

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
        await self._db.refunds.lock(self._tx, refund_id)
        existing = self._db.refunds.get(self._tx, refund_id)
        if existing is not None:
            row = dataclasses.replace(existing, status=status)
        else:
            row = RefundRow(refund_id, payment_intent_id, amount, currency, status, reason)
        await self._db.refunds.put(self._tx, refund_id, row)

    async def refunded_so_far(self, payment_intent_id: str) -> RefundedSoFar:
        amount = sum(
            row.amount_minor
            for _, row in self._db.refunds.items(self._tx)
            if row.payment_intent_id == payment_intent_id and row.status in ("succeeded", "pending")
        )
        requests = [
            row
            for _, row in self._db.refund_requests.items(self._tx)
            if row.payment_intent_id == payment_intent_id
            and row.status == RefundRequestStatus.PENDING
        ]
        amount += sum(row.amount for row in requests if row.partial)
        return RefundedSoFar(amount, any(not row.partial for row in requests))

    async def refunded_total(self, payment_intent_id: str) -> int:
        return sum(
            row.amount_minor
            for _, row in self._db.refunds.items(self._tx)
            if row.payment_intent_id == payment_intent_id and row.status == "succeeded"
        )

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
        await self._db.disputes.lock(self._tx, dispute_id)
        existing = self._db.disputes.get(self._tx, dispute_id)
        if existing is not None and existing.status in DISPUTE_CLOSED_STATUSES:
            return  # a late notice never reopens a closed dispute
        if existing is not None:
            row = dataclasses.replace(existing, status=status)
        else:
            row = DisputeRow(dispute_id, payment_intent_id, amount, currency, reason, status)
        await self._db.disputes.put(self._tx, dispute_id, row)

    async def claim_event(self, event_id: str, event_type: str) -> bool:
        await self._db.inbox.lock(self._tx, event_id)  # a concurrent duplicate waits here
        if self._db.inbox.get(self._tx, event_id) is not None:
            return False
        await self._db.inbox.put(self._tx, event_id, InboxRow(event_id, event_type, PROCESSING))
        return True

    async def record_outcome(
        self,
        event_id: str,
        outcome: str,
        reason: str | None,
        payment_intent_id: str | None,
        cart_id: str | None,
    ) -> None:
        await self._db.inbox.lock(self._tx, event_id)
        row = self._db.inbox.get(self._tx, event_id)
        if row is not None:
            changed = dataclasses.replace(
                row,
                outcome=str(outcome),
                reason=reason,
                payment_intent_id=payment_intent_id,
                cart_id=cart_id,
            )
            await self._db.inbox.put(self._tx, event_id, changed)

    async def is_accounted_for(self, payment_intent_id: str) -> bool:
        on_a_member = any(
            member.payment.reference == payment_intent_id
            and member.payment.status in _SETTLED_ON_A_MEMBER
            for _, stored in self._db.carts.items(self._tx)
            for member in stored.cart.members.values()
        )
        on_an_order = any(
            payment.reference == payment_intent_id
            for _, payment in self._db.order_payments.items(self._tx)
        )
        owed = self._db.refund_requests.get(self._tx, payment_intent_id) is not None
        return (
            on_a_member or on_an_order or owed or await self.refunded_total(payment_intent_id) > 0
        )


# --- the unit of work and its transactions -------------------------------------------------


class _Outbox:
    """A transaction's outbox appends: unique per (aggregate, version), as the table's key."""

    def __init__(self, db: FakeDatabase, tx: FakeTransaction, payloads: OutboxPayloads) -> None:
        self._db = db
        self._tx = tx
        self._payloads = payloads
        self.records: list[OutboxRecord] = []

    def append(self, events: Sequence[DomainEvent], aggregate: TeamCart | Order | None) -> None:
        if not events:
            return
        taken = {(e.aggregate_type, e.aggregate_id, e.version) for e in self._db.outbox}
        taken |= {(e.aggregate_type, e.aggregate_id, e.version) for e in self._tx.outbox}
        for event, payload in zip(events, self._payloads(events, aggregate), strict=True):
            key = (event.aggregate_type, event.aggregate_id, event.aggregate_version)
            if key in taken:
                raise DuplicateKeyError(f"outbox {key}")
            taken.add(key)
            entry = OutboxEntry(*key, event.name, payload)
            self._tx.outbox.append(entry)
            self.records.append(
                OutboxRecord(
                    id=self._db.next_outbox_id(),
                    aggregate_type=entry.aggregate_type,
                    aggregate_id=entry.aggregate_id,
                    version=entry.version,
                    event_type=entry.event_type,
                    payload=payload,
                    created_at=datetime.now(UTC),
                )
            )


class FakeUnitOfWork:
    """One transaction in memory, with the repositories a handler sees (``UnitOfWork``)."""

    def __init__(
        self,
        db: FakeDatabase,
        stripe: FakeGateway,
        payloads: OutboxPayloads,
        *,
        lock: bool,
        relaying: bool,
    ) -> None:
        self._db = db
        self._tx = FakeTransaction()
        self._payloads = payloads
        self._relaying = relaying
        self.carts = FakeCarts(db, self._tx, lock=lock)
        self.catalog = FakeCatalog(db, self._tx)
        self.orders = FakeOrders(db, self._tx, lock=lock)
        self.shop_carts = FakeShopCarts(db, self._tx, lock=lock)
        self.payments = FakePayments(db, self._tx)
        self.stripe = stripe
        self.owed = OwedRefunds()

    def refund_after_commit(
        self, *, cart_id: str | None = None, payment_intent_ids: Sequence[str] = ()
    ) -> None:
        if cart_id is not None:
            self.owed.cart_ids.append(cart_id)
        self.owed.intent_ids += payment_intent_ids

    async def flush(self) -> list[OutboxRecord]:
        appended = _Outbox(self._db, self._tx, self._payloads)
        await self.carts.flush(appended)
        await self.orders.flush(appended)
        await self.shop_carts.flush()
        return appended.records if self._relaying else []

    def commit(self) -> None:
        self._tx.end(commit=True)
        self._db.outbox += self._tx.outbox

    def rollback(self) -> None:
        self._tx.end(commit=False)


class FakeTransactions:
    """``TransactionSource`` in memory: each transaction commits when its block ends, and
    rolls back (keeping nothing) when it raises."""

    def __init__(
        self, db: FakeDatabase, stripe: FakeGateway, payloads: OutboxPayloads = event_payloads
    ) -> None:
        self.db = db
        self._stripe = stripe
        self._payloads = payloads

    @contextlib.asynccontextmanager
    async def begin(self, *, lock: bool, relaying: bool) -> AsyncIterator[OpenUnitOfWork]:
        uow = FakeUnitOfWork(self.db, self._stripe, self._payloads, lock=lock, relaying=relaying)
        try:
            yield uow
        except BaseException:
            uow.rollback()
            raise
        uow.commit()


def fake_runner(
    db: FakeDatabase,
    gateway: FakeGateway,
    *,
    refunds: RefundRunner | None = None,
    relay: Relay | None = None,
) -> UnitOfWorkRunner:
    """The app's own ``UnitOfWorkRunner`` over memory. Owed refunds are carried out after
    commit as ``app.wiring.build_runner`` does (through ``gateway``), unless ``refunds``."""

    async def carry_out(cart_id: str | None, payment_intent_ids: Sequence[str]) -> int:
        return await carry_out_refunds(
            runner, cart_id=cart_id, payment_intent_ids=list(payment_intent_ids) or None
        )

    transactions = FakeTransactions(db, gateway)
    runner = UnitOfWorkRunner.over(transactions, gateway, refunds or carry_out, relay)
    return runner


# --- Stripe --------------------------------------------------------------------------------


class FakeGateway:
    """``PaymentGateway`` in memory: intents ``pi_fake_N``, refunds ``re_fake_N``, the same
    object again for an idempotency key used before. ``fail()`` makes every call raise
    ``GatewayError`` (Stripe down) until ``recover()``."""

    DECLINED_CARD = "pm_card_chargeDeclined"

    def __init__(self) -> None:
        self.intents: dict[str, IntentInfo] = {}
        self.refunds: list[RefundInfo] = []
        self._by_key: dict[str, IntentInfo | RefundInfo] = {}
        self._intent_numbers = itertools.count(1)
        self._refund_numbers = itertools.count(1)
        self._failure: str | None = None
        self.checkout_sessions: dict[str, CheckoutSessionInfo] = {}
        self._checkout_by_key: dict[str, str] = {}
        self._checkout_numbers = itertools.count(1)
        self.manual_capture: set[str] = set()  # idempotency keys of manual-capture intents

    def fail(self, message: str = "Stripe did not answer (fake)") -> None:
        self._failure = message

    def recover(self) -> None:
        self._failure = None

    def _answer(self) -> None:
        if self._failure is not None:
            raise GatewayError(self._failure)

    def _intent(self, intent_id: str) -> IntentInfo:
        intent = self.intents.get(intent_id)
        if intent is None:
            raise GatewayError(f"No such payment_intent: '{intent_id}'")
        return intent

    def capture(self, intent_id: str, *, amount: int | None = None) -> IntentInfo:
        """The member paid (what Stripe.js does): the intent succeeds, for ``amount`` if
        given (a capture of another amount than the intent was made for)."""
        intent = self._intent(intent_id)
        captured = dataclasses.replace(
            intent, status="succeeded", amount=intent.amount if amount is None else amount
        )
        self.intents[intent_id] = captured
        return captured

    def refunded_intent_ids(self) -> list[str]:
        return [refund.payment_intent_id for refund in self.refunds]

    async def create_payment_intent(
        self,
        *,
        amount: int,
        currency: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
        connect: ConnectCharge | None = None,
        manual_capture: bool = False,
    ) -> IntentInfo:
        self._answer()
        known = self._by_key.get(idempotency_key)
        if isinstance(known, IntentInfo):
            return self.intents[known.id]
        if manual_capture:
            self.manual_capture.add(idempotency_key)
        intent_id = f"pi_fake_{next(self._intent_numbers)}"
        intent = IntentInfo(
            id=intent_id,
            client_secret=f"{intent_id}_secret_fake",
            status="requires_payment_method",
            amount=amount,
            currency=currency.upper(),
            metadata=dict(metadata),
            created=int(time.time()),
        )
        self.intents[intent_id] = intent
        self._by_key[idempotency_key] = intent
        if connect is not None:  # Stripe Connect: kept for the fake's destination charges
            self.connect.charges[intent_id] = connect
        return intent

    async def capture_payment_intent(self, intent_id: str, *, idempotency_key: str) -> str:
        """As Stripe's: an authorised intent becomes ``succeeded``; anything else refuses."""
        self._answer()
        intent = self._intent(intent_id)
        if intent.status == "succeeded":
            return "succeeded"
        if intent.status != "requires_capture":
            raise GatewayError(f"PaymentIntent {intent_id} has status {intent.status}")
        self.intents[intent_id] = dataclasses.replace(intent, status="succeeded")
        return "succeeded"

    async def retrieve_payment_intent(self, intent_id: str) -> IntentInfo:
        self._answer()
        return self._intent(intent_id)

    async def cancel_payment_intent(self, intent_id: str) -> None:
        """As Stripe's: a paid intent can't be cancelled; a cancelled one stays cancelled."""
        self._answer()
        intent = self._intent(intent_id)
        if intent.status == "succeeded":
            raise GatewayError(f"{intent_id} has status succeeded and can't be canceled")
        self.intents[intent_id] = dataclasses.replace(intent, status="canceled")

    async def confirm_payment_intent(self, intent_id: str, payment_method: str) -> str:
        self._answer()
        self._intent(intent_id)
        if payment_method == self.DECLINED_CARD:
            raise CardDeclined("Your card was declined.")
        return self.capture(intent_id).status

    async def refund_payment_intent(
        self, intent_id: str, *, idempotency_key: str, reason: str, amount: int | None = None
    ) -> RefundInfo:
        """As Stripe's: ``amount`` of what is left, or all of it; more than is left, or
        nothing left, is refused."""
        self._answer()
        known = self._by_key.get(idempotency_key)
        if isinstance(known, RefundInfo):
            return known
        intent = self._intent(intent_id)
        left = intent.amount - sum(
            r.amount for r in self.refunds if r.payment_intent_id == intent_id
        )
        if left <= 0:
            raise AlreadyRefunded(intent_id)
        if intent.status != "succeeded":
            raise GatewayError(f"PaymentIntent {intent_id} has no successful charge to refund")
        if amount is not None and amount > left:
            raise GatewayError(f"Refund amount ({amount}) is greater than unrefunded amount")
        refund = RefundInfo(
            id=f"re_fake_{next(self._refund_numbers)}",
            payment_intent_id=intent_id,
            amount=left if amount is None else amount,
            currency=intent.currency,
            status="succeeded",
        )
        self.refunds.append(refund)
        self._by_key[idempotency_key] = refund
        return refund

    async def list_payment_intents(self, *, created_since: int) -> AsyncIterator[IntentInfo]:
        self._answer()
        for intent in list(self.intents.values()):
            if intent.created >= created_since:
                yield intent

    async def close(self) -> None:
        return None

    # Checkout Sessions: ``cs_fake_N`` at ``https://checkout.fake/cs_fake_N``, each with its
    # intent made at once (as the emulator's add-on does), metadata on both.

    def _checkout_session(self, session_id: str) -> CheckoutSessionInfo:
        session = self.checkout_sessions.get(session_id)
        if session is None:
            raise GatewayError(f"No such checkout.session: '{session_id}'")
        return session

    def complete_checkout(self, session_id: str) -> CheckoutSessionInfo:
        """The buyer paid on the hosted page: the session is complete and paid, its intent
        succeeded (what the ``checkout.session.completed`` event then says)."""
        session = self._checkout_session(session_id)
        if session.status != "open":
            raise GatewayError(f"{session_id} is {session.status}: it can't be paid")
        assert session.payment_intent_id is not None
        self.capture(session.payment_intent_id)
        paid = dataclasses.replace(session, status="complete", payment_status="paid", url=None)
        self.checkout_sessions[session_id] = paid
        return paid

    async def create_checkout_session(
        self,
        *,
        amount: int,
        currency: str,
        name: str,
        metadata: Mapping[str, str],
        success_url: str,
        cancel_url: str,
        idempotency_key: str,
        expires_at: int | None = None,
        connect: ConnectCharge | None = None,
    ) -> CheckoutSessionInfo:
        self._answer()
        known = self._checkout_by_key.get(idempotency_key)
        if known is not None:
            return self.checkout_sessions[known]
        intent = await self.create_payment_intent(
            amount=amount,
            currency=currency,
            metadata=metadata,
            idempotency_key=f"{idempotency_key}-checkout-intent",
            connect=connect,
        )
        session_id = f"cs_fake_{next(self._checkout_numbers)}"
        session = CheckoutSessionInfo(
            id=session_id,
            url=f"https://checkout.fake/{session_id}",
            payment_intent_id=intent.id,
            status="open",
            payment_status="unpaid",
            amount_total=amount,
            currency=currency.upper(),
            metadata=dict(metadata),
            expires_at=expires_at if expires_at is not None else int(time.time()) + 86400,
        )
        self.checkout_sessions[session_id] = session
        self._checkout_by_key[idempotency_key] = session_id
        return session

    async def retrieve_checkout_session(self, session_id: str) -> CheckoutSessionInfo:
        self._answer()
        return self._checkout_session(session_id)

    async def expire_checkout_session(self, session_id: str) -> None:
        """As Stripe's: an open session expires (its intent cancelled), an expired one stays
        expired, a paid one can't be expired."""
        self._answer()
        session = self._checkout_session(session_id)
        if session.status == "complete":
            raise GatewayError(
                'Only Checkout Sessions with a status in ["open"] can be expired. '
                "This Checkout Session has a status of `complete`."
            )
        if session.status == "open":
            self.checkout_sessions[session_id] = dataclasses.replace(
                session, status="expired", url=None
            )
            if session.payment_intent_id is not None:
                await self.cancel_payment_intent(session.payment_intent_id)

    # Card fingerprints (``app.referrals``): which card paid each intent, as Stripe's latest
    # charge would say.

    @property
    def card_fingerprints(self) -> dict[str, str]:
        """The card that paid each intent, by intent id: set one to say which (none: an
        intent paid without a card Stripe can tell about)."""
        cards: dict[str, str] = vars(self).setdefault("_card_fingerprints", {})
        return cards

    async def card_fingerprint(self, payment_intent_id: str) -> str | None:
        """As Stripe's: nothing charged yet, no card."""
        self._answer()
        if self._intent(payment_intent_id).status != "succeeded":
            return None
        return self.card_fingerprints.get(payment_intent_id)

    # Stripe Connect (app.connect): accounts ``acct_fake_N`` that ``complete_onboarding``
    # enables, transfers ``tr_fake_N`` (the same one again for a key used before), their
    # reversals, destination charges settled as the intent is captured, payouts per account.

    @functools.cached_property
    def connect(self) -> FakeConnect:
        return FakeConnect()

    def complete_onboarding(self, account_id: str) -> ConnectAccountInfo:
        """The store finished Stripe's onboarding: charges and payouts are enabled."""
        account = dataclasses.replace(
            self.connect.account(account_id),
            charges_enabled=True,
            payouts_enabled=True,
            details_submitted=True,
            requirements_due=(),
        )
        self.connect.accounts[account_id] = account
        return account

    async def create_connect_account(
        self, *, store_id: str, idempotency_key: str
    ) -> ConnectAccountInfo:
        self._answer()
        known = self.connect.by_key.get(idempotency_key)
        if isinstance(known, ConnectAccountInfo):
            return self.connect.accounts[known.id]
        account = ConnectAccountInfo(
            id=f"acct_fake_{next(self.connect.numbers)}",
            charges_enabled=False,
            payouts_enabled=False,
            details_submitted=False,
            requirements_due=("business_profile.url", "external_account"),
        )
        self.connect.accounts[account.id] = account
        self.connect.by_key[idempotency_key] = account
        return account

    async def retrieve_connect_account(self, account_id: str) -> ConnectAccountInfo:
        self._answer()
        return self.connect.account(account_id)

    async def create_account_link(
        self, account_id: str, *, refresh_url: str, return_url: str
    ) -> str:
        self._answer()
        self.connect.account(account_id)
        return f"https://connect.fake/setup/{account_id}/{next(self.connect.numbers)}"

    async def create_transfer(
        self,
        *,
        amount: int,
        currency: str,
        destination: str,
        transfer_group: str | None,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> TransferInfo:
        self._answer()
        known = self.connect.by_key.get(idempotency_key)
        if isinstance(known, TransferInfo):
            return self.connect.transfers[known.id]
        if not self.connect.account(destination).charges_enabled:
            raise GatewayError(f"{destination} can't take transfers before onboarding")
        transfer = TransferInfo(
            id=f"tr_fake_{next(self.connect.numbers)}",
            amount=amount,
            currency=currency.upper(),
            destination=destination,
            transfer_group=transfer_group,
            amount_reversed=0,
        )
        self.connect.transfers[transfer.id] = transfer
        self.connect.by_key[idempotency_key] = transfer
        return transfer

    async def create_transfer_reversal(
        self, transfer_id: str, *, amount: int, metadata: Mapping[str, str], idempotency_key: str
    ) -> TransferReversalInfo:
        self._answer()
        known = self.connect.by_key.get(idempotency_key)
        if isinstance(known, TransferReversalInfo):
            return known
        transfer = self.connect.transfers.get(transfer_id)
        if transfer is None:
            raise GatewayError(f"No such transfer: '{transfer_id}'")
        if amount > transfer.amount - transfer.amount_reversed:
            raise GatewayError("Reversal amount exceeds what is left of the transfer")
        self.connect.transfers[transfer_id] = dataclasses.replace(
            transfer, amount_reversed=transfer.amount_reversed + amount
        )
        reversal = TransferReversalInfo(
            id=f"trr_fake_{next(self.connect.numbers)}", transfer_id=transfer_id, amount=amount
        )
        self.connect.by_key[idempotency_key] = reversal
        return reversal

    async def retrieve_destination_charge(self, intent_id: str) -> DestinationChargeInfo:
        """As the emulator's add-on: a captured destination charge has its transfer of the
        whole amount to the account and its application fee (made the first time asked)."""
        self._answer()
        intent = self._intent(intent_id)
        charge = self.connect.charges.get(intent_id) or ConnectCharge()
        settled = self.connect.settled.get(intent_id)
        if settled is None and charge.destination is not None and intent.status == "succeeded":
            transfer = TransferInfo(
                id=f"tr_fake_{next(self.connect.numbers)}",
                amount=intent.amount,
                currency=intent.currency,
                destination=charge.destination,
                transfer_group=charge.transfer_group,
                amount_reversed=0,
            )
            self.connect.transfers[transfer.id] = transfer
            settled = (transfer.id, f"fee_fake_{next(self.connect.numbers)}")
            self.connect.settled[intent_id] = settled
        return DestinationChargeInfo(
            payment_intent_id=intent_id,
            destination=charge.destination,
            application_fee_amount=charge.application_fee_amount,
            transfer_id=None if settled is None else settled[0],
            application_fee_id=None if settled is None else settled[1],
        )

    async def refund_application_fee(
        self, fee_id: str, *, amount: int, idempotency_key: str
    ) -> str:
        self._answer()
        known = self.connect.fee_refunds.get(idempotency_key)
        if known is not None:
            return known[0]
        refund_id = f"fr_fake_{next(self.connect.numbers)}"
        self.connect.fee_refunds[idempotency_key] = (refund_id, fee_id, amount)
        return refund_id

    async def list_payouts(self, account_id: str, *, limit: int = 100) -> list[PayoutInfo]:
        self._answer()
        return list(self.connect.payouts.get(account_id, []))[:limit]

    async def list_transfers(self, *, transfer_group: str) -> list[TransferInfo]:
        self._answer()
        return [t for t in self.connect.transfers.values() if t.transfer_group == transfer_group]


@dataclass
class FakeConnect:
    """The fake gateway's Connect objects, by id."""

    accounts: dict[str, ConnectAccountInfo] = field(default_factory=dict)
    transfers: dict[str, TransferInfo] = field(default_factory=dict)
    charges: dict[str, ConnectCharge] = field(default_factory=dict)
    settled: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Destination charges' transfer and application fee, by intent."""
    fee_refunds: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    payouts: dict[str, list[PayoutInfo]] = field(default_factory=dict)
    by_key: dict[str, ConnectAccountInfo | TransferInfo | TransferReversalInfo] = field(
        default_factory=dict
    )
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def account(self, account_id: str) -> ConnectAccountInfo:
        account = self.accounts.get(account_id)
        if account is None:
            raise GatewayError(f"No such account: '{account_id}'")
        return account
