"""One test case for every implementation of the unit of work (the eventsourcing habit).

:class:`UnitOfWorkContract` says what a unit of work promises a handler: its changes are
saved and its events appended in version order; a handler that raises keeps nothing; of two
units of work changing one cart, one commits and the other is run again on what the first
saved (the retry with the cart locked as it loads it); after ``MAX_ATTEMPTS`` conflicts it is
a ``VersionConflictError``; refunds owed are carried out only after the commit; new carts
round-trip; an unchanged cart writes nothing; stock is reserved all or nothing; the payment
repository keeps its rules. It runs on PostgreSQL (``tests/integration/
test_unit_of_work_sql.py``) and in memory (``tests/unit/test_unit_of_work_fake.py``), so the
fake the handler tests use can never drift from the real thing.

Each of those modules defines a ``backend`` fixture (a :class:`Backend`) and a ``Test…``
class deriving from the contract. Everything runs through the app's own
``UnitOfWorkRunner``; a backend adds only what the unit of work has no statement for:
catalog data in, stock and the outbox out.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import pytest

from app.failures import ConflictError, NotFoundError, VersionConflictError
from app.persistence.outbox import OutboxRecord, Relay
from app.persistence.payments import IntentFacts, IntentOwner, IntentStatus
from app.unit_of_work import (
    MAX_ATTEMPTS,
    RefundRunner,
    UnitOfWork,
    UnitOfWorkRunner,
    VersionConflict,
)
from app.use_cases import catalog
from app.use_cases.payments.refunds import owe_refund
from app.use_cases.teamcarts import (
    AddItem,
    ChangeItemQuantity,
    LockCart,
    OpenCart,
    UnlockCart,
    add_item,
    change_item_quantity,
    lock_cart,
    open_cart,
    unlock_cart,
)
from domain.catalog import ProductSnapshot, StoreTerms
from domain.errors import OutOfStock
from domain.teamcart import CartStatus, TeamCart
from tests.unit.builders import a_product, a_store, an_id

WAIT = 10.0
"""Bound on every wait for another unit of work."""


class Backend(Protocol):
    """One implementation under the contract."""

    def runner(
        self, *, refunds: RefundRunner | None = None, relay: Relay | None = None
    ) -> UnitOfWorkRunner:
        """A runner on this backend's data: the app's wiring unless told otherwise."""

    async def add_store(self, store: StoreTerms) -> None: ...

    async def add_product(self, product: ProductSnapshot, *, stock: int | None) -> None: ...

    async def stock_of(self, product_id: str) -> int | None: ...

    async def events_of(self, aggregate_id: str) -> list[tuple[int, str]]:
        """``(version, event name)`` of the aggregate's outbox rows, in the order appended."""


def now() -> datetime:
    return datetime.now(UTC)


def an_intent_id() -> str:
    return f"pi_contract_{uuid.uuid4().hex[:16]}"


# --- small handlers ------------------------------------------------------------------------


async def load(cart_id: str, uow: UnitOfWork) -> TeamCart:
    cart = await uow.carts.get(cart_id)
    assert cart is not None, f"no cart {cart_id}"
    return cart


@dataclass(frozen=True, slots=True)
class Join:
    cart_id: str
    user_id: str


async def join(command: Join, uow: UnitOfWork) -> None:
    cart = await load(command.cart_id, uow)
    cart.join(command.user_id, "Gus", now())


@dataclass(frozen=True, slots=True)
class Pending:
    payment_intent_ids: Sequence[str] | None = None
    cart_id: str | None = None


async def pending(query: Pending, uow: UnitOfWork) -> list[str]:
    return await uow.payments.pending_refunds(
        payment_intent_ids=query.payment_intent_ids, cart_id=query.cart_id, limit=50
    )


@dataclass
class RecordedRefunds:
    """A ``RefundRunner`` that notes each call (and what a fresh unit of work saw then)."""

    runner: UnitOfWorkRunner | None = None
    calls: list[tuple[str | None, list[str], CartStatus | None, list[str]]] = field(
        default_factory=list
    )
    cart_id: str | None = None

    async def __call__(self, cart_id: str | None, payment_intent_ids: Sequence[str]) -> None:
        status, owed = None, []
        if self.runner is not None and self.cart_id is not None:
            status = (await self.runner.run(load, self.cart_id)).status
            owed = await self.runner.run(pending, Pending(cart_id=self.cart_id))
        self.calls.append((cart_id, list(payment_intent_ids), status, owed))


@dataclass
class RecordedRelay:
    """A ``Relay`` that notes each batch and the cart's stored version at that moment."""

    reader: UnitOfWorkRunner | None = None
    batches: list[list[OutboxRecord]] = field(default_factory=list)
    stored_versions: list[int | None] = field(default_factory=list)

    @property
    def accepting(self) -> bool:
        return True

    async def relay_committed(self, records: Sequence[OutboxRecord]) -> None:
        self.batches.append(list(records))
        if self.reader is not None and records:
            self.stored_versions.append(await self.reader.run(version_of, records[-1].aggregate_id))


async def version_of(cart_id: str, uow: UnitOfWork) -> int | None:
    return await uow.carts.version_of(cart_id)


@dataclass(frozen=True, slots=True)
class Shop:
    store: StoreTerms
    product: ProductSnapshot


async def a_shop(backend: Backend, *, stock: int | None = 5) -> Shop:
    store = a_store(delivery_fee_minor=0, tax_rate_bps=0)
    await backend.add_store(store)
    product = a_product(store, price_minor=1000)
    await backend.add_product(product, stock=stock)
    return Shop(store, product)


async def a_cart(backend: Backend, shop: Shop, *, quantity: int = 2) -> TeamCart:
    """An open cart whose host has ``quantity`` of the shop's product (version 2)."""
    runner = backend.runner()
    cart = await runner.run(open_cart, OpenCart(an_id(), "Hana", shop.store.store_id, None))
    added = await runner.run(
        add_item, AddItem(cart.host_user_id, cart.id, shop.product.product_id, quantity, ())
    )
    return added.cart


class UnitOfWorkContract:
    """The promises of the unit of work; a subclass per implementation runs them."""

    # --- saving ----------------------------------------------------------------------------

    async def test_a_handlers_changes_are_saved_and_its_events_appended_in_version_order(
        self, backend: Backend
    ) -> None:
        shop = await a_shop(backend)
        cart = await a_cart(backend, shop)
        guest = an_id()

        async def join_add_and_get_ready(_: None, uow: UnitOfWork) -> None:
            loaded = await load(cart.id, uow)
            loaded.join(guest, "Gus", now())
            loaded.add_item(guest, an_id(), shop.product, 1, [], now())
            loaded.set_ready(guest, True)

        runner = backend.runner()
        await runner.run(join_add_and_get_ready, None)

        stored = await runner.run(load, cart.id)
        assert stored.version == 5
        assert stored.members[guest].ready
        assert [item.user_id for item in stored.items.values()] == [cart.host_user_id, guest]
        assert await backend.events_of(cart.id) == [
            (1, "cart_opened"),
            (2, "item_added"),
            (3, "member_joined"),
            (4, "item_added"),
            (5, "member_ready_changed"),
        ]

    async def test_the_catalogs_rows_are_added_listed_in_order_and_sell_to_carts(
        self, backend: Backend
    ) -> None:
        runner = backend.runner()
        store = await runner.run(
            catalog.create_store,
            catalog.CreateStore("Shop", "USD", delivery_fee_minor=100, tax_rate_bps=0),
        )
        products = [
            await runner.run(
                catalog.create_product,
                catalog.CreateProduct(str(store["id"]), name, 500, stock=3, option_groups=[]),
            )
            for name in ("First", "Second")
        ]
        listed = await runner.run(catalog.list_products, str(store["id"]))
        assert [row["name"] for row in listed] == ["First", "Second"]
        assert str(store["id"]) in [
            str(row["id"]) for row in await runner.run(catalog.list_stores, None)
        ]
        coupon = catalog.CreateCoupon(str(store["id"]), "once", "fixed", 100, 0, max_uses=1)
        assert (await runner.run(catalog.create_coupon, coupon))["code"] == "ONCE"
        with pytest.raises(ConflictError):
            await runner.run(catalog.create_coupon, coupon)
        with pytest.raises(NotFoundError):
            await runner.run(catalog.get_store, str(uuid.uuid4()))

        async def terms(_: None, uow: UnitOfWork) -> tuple[object, object, object]:
            return (
                await uow.catalog.store_terms(str(store["id"])),
                await uow.catalog.product(str(products[0]["id"])),
                await uow.catalog.coupon(str(store["id"]), "once"),
            )

        store_terms, product, coupon_terms = await runner.run(terms, None)
        assert store_terms is not None
        assert product is not None
        assert coupon_terms is not None

    async def test_a_new_cart_is_insertable_and_loadable(self, backend: Backend) -> None:
        shop = await a_shop(backend)
        host = an_id()
        deadline = now() + timedelta(days=1)
        runner = backend.runner()
        opened = await runner.run(open_cart, OpenCart(host, "Hana", shop.store.store_id, deadline))

        async def look(_: None, uow: UnitOfWork) -> tuple[TeamCart, bool]:
            first = await load(opened.id, uow)
            return first, first is await uow.carts.get(opened.id)

        loaded, same_object = await runner.run(look, None)
        assert same_object  # one cart per unit of work, however often it is asked for
        assert (loaded.id, loaded.status, loaded.version) == (opened.id, CartStatus.OPEN, 1)
        assert (loaded.store, loaded.invite_code) == (shop.store, opened.invite_code)
        assert (loaded.deadline, loaded.created_at) == (deadline, opened.created_at)
        assert list(loaded.members) == [host]
        assert loaded.members[host].display_name == "Hana"

        async def find(_: None, uow: UnitOfWork) -> tuple[object, ...]:
            return (
                await uow.carts.id_by_invite(opened.invite_code),
                await uow.carts.version_of(opened.id),
                await uow.carts.is_member(opened.id, host),
                await uow.carts.is_member(opened.id, an_id()),
                await uow.carts.get(an_id()),
                await uow.carts.version_of(an_id()),
                await uow.carts.id_by_invite("no-such-invite-code-0123456789"),
            )

        assert await runner.run(find, None) == (opened.id, 1, True, False, None, None, None)
        assert await backend.events_of(opened.id) == [(1, "cart_opened")]

    async def test_an_unchanged_cart_writes_nothing(self, backend: Backend) -> None:
        """A unit of work that only read a cart saves nothing, so a change committed
        meanwhile is neither overwritten nor a conflict (it runs once)."""
        cart = await a_cart(backend, await a_shop(backend))
        runner = backend.runner()
        loaded, committed = asyncio.Event(), asyncio.Event()
        runs = 0
        guest = an_id()

        async def look_only(_: None, uow: UnitOfWork) -> None:
            nonlocal runs
            runs += 1
            seen = await load(cart.id, uow)
            seen.join(seen.host_user_id, "Hana", now())  # a member joining again: a no-op
            loaded.set()
            await asyncio.wait_for(committed.wait(), WAIT)

        async def join_meanwhile() -> None:
            await asyncio.wait_for(loaded.wait(), WAIT)
            await runner.run(join, Join(cart.id, guest))
            committed.set()

        await asyncio.gather(runner.run(look_only, None), join_meanwhile())

        assert runs == 1
        stored = await runner.run(load, cart.id)
        assert (stored.version, stored.is_member(guest)) == (3, True)
        assert await backend.events_of(cart.id) == [
            (1, "cart_opened"),
            (2, "item_added"),
            (3, "member_joined"),
        ]

    # --- rolling back --------------------------------------------------------------------

    async def test_a_handler_that_raises_keeps_nothing(self, backend: Backend) -> None:
        shop = await a_shop(backend, stock=5)
        cart = await a_cart(backend, shop, quantity=2)
        refunds = RecordedRefunds()
        runner = backend.runner(refunds=refunds)
        intent = an_intent_id()

        async def lock_owe_and_fail(_: None, uow: UnitOfWork) -> None:
            loaded = await load(cart.id, uow)
            loaded.lock(loaded.host_user_id, now())
            await uow.carts.reserve_stock(loaded)
            await owe_refund(
                uow, intent, amount=1000, currency="USD", reason="test", cart_id=cart.id
            )
            raise RuntimeError("the handler failed")

        with pytest.raises(RuntimeError, match="the handler failed"):
            await runner.run(lock_owe_and_fail, None)

        stored = await runner.run(load, cart.id)
        assert (stored.status, stored.version, stored.quote) == (CartStatus.OPEN, 2, None)
        assert await backend.stock_of(shop.product.product_id) == 5
        assert await runner.run(pending, Pending(payment_intent_ids=[intent])) == []
        assert await runner.run(pending, Pending(cart_id=cart.id)) == []
        assert refunds.calls == []
        assert await backend.events_of(cart.id) == [(1, "cart_opened"), (2, "item_added")]

    async def test_refunds_owed_are_carried_out_only_after_the_commit(
        self, backend: Backend
    ) -> None:
        cart = await a_cart(backend, await a_shop(backend))
        refunds = RecordedRefunds(cart_id=cart.id)
        runner = backend.runner(refunds=refunds)
        refunds.runner = backend.runner()
        intent = an_intent_id()

        async def cancel_and_owe(_: None, uow: UnitOfWork) -> None:
            loaded = await load(cart.id, uow)
            loaded.cancel(loaded.host_user_id, now())
            await owe_refund(
                uow, intent, amount=1000, currency="USD", reason="cart_cancelled", cart_id=cart.id
            )
            uow.refund_after_commit(cart_id=cart.id)
            assert refunds.calls == []  # nothing is carried out while the transaction is open

        await runner.run(cancel_and_owe, None)

        # each call saw the committed cart and the request it owed: the commit came first
        assert refunds.calls == [
            (cart.id, [], CartStatus.CANCELLED, [intent]),
            (None, [intent], CartStatus.CANCELLED, [intent]),
        ]

    async def test_refunds_owed_by_an_attempt_that_conflicted_are_not_carried_out(
        self, backend: Backend
    ) -> None:
        cart = await a_cart(backend, await a_shop(backend))
        refunds = RecordedRefunds()
        runner = backend.runner(refunds=refunds)
        owed = [an_intent_id(), an_intent_id()]
        attempts = 0

        async def owe_then_conflict_once(_: None, uow: UnitOfWork) -> None:
            nonlocal attempts
            attempts += 1
            loaded = await load(cart.id, uow)
            await owe_refund(
                uow, owed[attempts - 1], amount=100, currency="USD", reason="t", cart_id=cart.id
            )
            if attempts == 1:  # someone else saves the cart between our load and our save
                await runner.run(join, Join(cart.id, an_id()))
            loaded.set_ready(loaded.host_user_id, True)

        await runner.run(owe_then_conflict_once, None)

        assert attempts == 2
        assert refunds.calls == [(None, [owed[1]], None, [])]
        assert await runner.run(pending, Pending(cart_id=cart.id)) == [owed[1]]

    # --- concurrency ---------------------------------------------------------------------

    async def test_of_two_units_of_work_changing_one_cart_one_commits_and_the_other_reruns(
        self, backend: Backend
    ) -> None:
        cart = await a_cart(backend, await a_shop(backend))
        runner = backend.runner()
        guests = {"ana": an_id(), "ben": an_id()}
        seen: dict[str, list[set[str]]] = {"ana": [], "ben": []}
        both_loaded = asyncio.Event()

        async def join_as(name: str, uow: UnitOfWork) -> str:
            loaded = await load(cart.id, uow)
            seen[name].append(set(loaded.members))
            if sum(len(attempts) for attempts in seen.values()) >= 2:
                both_loaded.set()
            await asyncio.wait_for(both_loaded.wait(), WAIT)
            loaded.join(guests[name], name, now())
            return name

        joined = await asyncio.gather(runner.run(join_as, "ana"), runner.run(join_as, "ben"))
        assert list(joined) == ["ana", "ben"]

        assert sorted(len(attempts) for attempts in seen.values()) == [1, 2]
        rerun = next(name for name, attempts in seen.items() if len(attempts) == 2)
        first = next(name for name in guests if name != rerun)
        assert guests[first] not in seen[rerun][0]  # both loaded before either committed
        assert guests[first] in seen[rerun][1]  # the re-run saw the first one's change
        stored = await runner.run(load, cart.id)
        assert {guests["ana"], guests["ben"]} <= set(stored.members)
        assert stored.version == 4
        assert (await backend.events_of(cart.id))[2:] == [
            (3, "member_joined"),
            (4, "member_joined"),
        ]

    async def test_the_retry_locks_the_cart_as_it_loads_it_so_it_cannot_conflict(
        self, backend: Backend
    ) -> None:
        cart = await a_cart(backend, await a_shop(backend))
        runner = backend.runner()
        ana, ben, carl = an_id(), an_id(), an_id()
        attempts = 0
        writer: asyncio.Task[None] | None = None

        async def join_ana(_: None, uow: UnitOfWork) -> None:
            nonlocal attempts, writer
            attempts += 1
            loaded = await load(cart.id, uow)
            if attempts == 1:  # a writer saves between our load and our save: a conflict
                await runner.run(join, Join(cart.id, ben))
            else:  # locked now: a writer that comes along waits for our commit
                writer = asyncio.create_task(runner.run(join, Join(cart.id, carl)))
                await asyncio.sleep(0.3)
                assert not writer.done()
            loaded.join(ana, "Ana", now())

        await runner.run(join_ana, None)
        assert writer is not None
        await asyncio.wait_for(writer, WAIT)

        assert attempts == 2
        stored = await runner.run(load, cart.id)
        assert list(stored.members)[1:] == [ben, ana, carl]
        assert [name for _, name in await backend.events_of(cart.id)][2:] == ["member_joined"] * 3

    async def test_after_max_attempts_conflicts_it_is_a_version_conflict_error(
        self, backend: Backend
    ) -> None:
        """A locked retry can't really conflict (that is its point), so the conflicts here
        are raised as a save that found another version raises them."""
        cart = await a_cart(backend, await a_shop(backend))
        refunds = RecordedRefunds()
        runner = backend.runner(refunds=refunds)
        attempts = 0

        async def always_conflicts(_: None, uow: UnitOfWork) -> None:
            nonlocal attempts
            attempts += 1
            loaded = await load(cart.id, uow)
            loaded.join(an_id(), "Gus", now())
            await owe_refund(
                uow, an_intent_id(), amount=100, currency="USD", reason="t", cart_id=cart.id
            )
            raise VersionConflict(cart.id)

        with pytest.raises(VersionConflictError) as raised:
            await runner.run(always_conflicts, None)

        assert raised.value.code == "version_conflict"
        assert attempts == MAX_ATTEMPTS
        assert (await runner.run(load, cart.id)).version == 2
        assert await runner.run(pending, Pending(cart_id=cart.id)) == []
        assert refunds.calls == []
        assert len(await backend.events_of(cart.id)) == 2

    # --- relaying ------------------------------------------------------------------------

    async def test_events_are_relayed_after_the_commit_and_not_at_all_on_rollback(
        self, backend: Backend
    ) -> None:
        cart = await a_cart(backend, await a_shop(backend))
        relay = RecordedRelay(reader=backend.runner())
        runner = backend.runner(relay=relay)
        guest = an_id()

        async def join_and_ready(_: None, uow: UnitOfWork) -> None:
            loaded = await load(cart.id, uow)
            loaded.join(guest, "Gus", now())
            loaded.set_ready(guest, True)

        async def join_and_fail(_: None, uow: UnitOfWork) -> None:
            (await load(cart.id, uow)).join(an_id(), "Gus", now())
            raise RuntimeError("no")

        await runner.run(join_and_ready, None)
        with pytest.raises(RuntimeError):
            await runner.run(join_and_fail, None)
        await runner.without_relay().run(join, Join(cart.id, an_id()))

        assert len(relay.batches) == 1
        [batch] = relay.batches
        assert [(r.aggregate_id, r.version, r.event_type) for r in batch] == [
            (cart.id, 3, "member_joined"),
            (cart.id, 4, "member_ready_changed"),
        ]
        assert batch[0].id < batch[1].id
        assert relay.stored_versions == [4]  # committed before it was relayed
        assert [v for v, _ in await backend.events_of(cart.id)] == [1, 2, 3, 4, 5]

    # --- stock ---------------------------------------------------------------------------

    async def test_stock_is_reserved_all_or_nothing_and_given_back(self, backend: Backend) -> None:
        shop = await a_shop(backend, stock=5)
        scarce = a_product(shop.store, name="Tiramisu", price_minor=500)
        await backend.add_product(scarce, stock=1)
        cart = await a_cart(backend, shop, quantity=2)
        runner = backend.runner()
        host = cart.host_user_id
        added = await runner.run(add_item, AddItem(host, cart.id, scarce.product_id, 3, ()))

        with pytest.raises(OutOfStock) as short:
            await runner.run(lock_cart, LockCart(host, cart.id))
        assert short.value.product_ids == (scarce.product_id,)
        assert short.value.detail == "Out of stock: Tiramisu (1 left)."
        assert await backend.stock_of(shop.product.product_id) == 5
        assert await backend.stock_of(scarce.product_id) == 1
        assert (await runner.run(load, cart.id)).status is CartStatus.OPEN

        await runner.run(change_item_quantity, ChangeItemQuantity(host, cart.id, added.item_id, 1))
        await runner.run(lock_cart, LockCart(host, cart.id))
        assert await backend.stock_of(shop.product.product_id) == 3
        assert await backend.stock_of(scarce.product_id) == 0
        await runner.run(unlock_cart, UnlockCart(host, cart.id))
        assert await backend.stock_of(shop.product.product_id) == 5
        assert await backend.stock_of(scarce.product_id) == 1

    # --- payments ------------------------------------------------------------------------

    async def test_an_intents_status_only_moves_up(self, backend: Backend) -> None:
        cart = await a_cart(backend, await a_shop(backend))
        host, intent = cart.host_user_id, an_intent_id()
        attempt = {
            "cart_id": cart.id,
            "user_id": host,
            "quote_version": 1,
            "attempt": 1,
            "amount_minor": 1000,
            "currency": "USD",
        }

        async def add_twice(_: None, uow: UnitOfWork) -> tuple[object, ...]:
            first = await uow.payments.add_intent(id=intent, client_secret="s1", **attempt)
            again = await uow.payments.add_intent(id=an_intent_id(), client_secret="s2", **attempt)
            latest = await uow.payments.latest_intent(cart.id, host, 1)
            assert latest is not None
            return (first["id"], first["status"], again["id"], latest["id"], latest["attempt"])

        runner = backend.runner()
        assert await runner.run(add_twice, None) == (intent, "open", intent, intent, 1)

        async def status_after(status: IntentStatus | None, uow: UnitOfWork) -> tuple[object, ...]:
            if status is IntentStatus.FAILED:
                await uow.payments.close_open_intent(intent, status)
            elif status is not None:
                await uow.payments.set_intent_status(intent, status)
            return (
                await uow.payments.member_intent_status(intent, cart.id, host),
                await uow.payments.has_open_intents(cart.id),
            )

        assert await runner.run(status_after, None) == (IntentStatus.OPEN, True)
        for status, expected in [
            (IntentStatus.SUCCEEDED, IntentStatus.SUCCEEDED),
            (IntentStatus.FAILED, IntentStatus.SUCCEEDED),  # a late failure changes nothing
            (IntentStatus.OPEN, IntentStatus.SUCCEEDED),
            (IntentStatus.REFUNDED, IntentStatus.REFUNDED),
            (IntentStatus.SUCCEEDED, IntentStatus.REFUNDED),  # a late success never undoes it
        ]:
            assert await runner.run(status_after, status) == (expected, False)

        async def others(_: None, uow: UnitOfWork) -> tuple[object, ...]:
            return (
                await uow.payments.member_intent_status(intent, cart.id, an_id()),
                await uow.payments.intent_owner(intent),
                await uow.payments.intent_owner(an_intent_id()),
                await uow.payments.latest_intent(cart.id, host, 2),
            )

        assert await runner.run(others, None) == (
            None,
            IntentOwner(cart.id, host, 1000, "USD"),
            None,
            None,
        )

    async def test_a_refund_is_owed_once_and_claimed_by_one_transaction_at_a_time(
        self, backend: Backend
    ) -> None:
        cart = await a_cart(backend, await a_shop(backend))
        intent = an_intent_id()
        runner = backend.runner()

        async def owe_twice(_: None, uow: UnitOfWork) -> None:
            for amount in (700, 900):
                await uow.payments.request_refund(
                    intent, amount=amount, currency="USD", reason="r", cart_id=cart.id
                )

        await runner.run(owe_twice, None)
        assert await runner.run(pending, Pending(cart_id=cart.id)) == [intent]
        assert await runner.run(pending, Pending(payment_intent_ids=[an_intent_id()])) == []

        claimed, asked = asyncio.Event(), asyncio.Event()

        async def claim_and_hold(_: None, uow: UnitOfWork) -> tuple[object, ...]:
            owed = await uow.payments.claim_refund(intent)
            claimed.set()
            await asyncio.wait_for(asked.wait(), WAIT)
            assert owed is not None
            await uow.payments.note_refund_failed(intent, owed.attempts + 1, "x" * 600)
            return (owed.amount, owed.currency, owed.reason, owed.cart_id, owed.attempts)

        async def claim_meanwhile() -> object:
            await asyncio.wait_for(claimed.wait(), WAIT)
            try:
                return await runner.run(lambda _, uow: uow.payments.claim_refund(intent), None)
            finally:
                asked.set()

        held, skipped = await asyncio.gather(runner.run(claim_and_hold, None), claim_meanwhile())
        assert held == (700, "USD", "r", cart.id, 0)
        assert skipped is None  # the other transaction held it
        assert await runner.run(pending, Pending(cart_id=cart.id)) == []  # failed: backed off

        async def claim_and_finish(_: None, uow: UnitOfWork) -> int:
            owed = await uow.payments.claim_refund(intent)
            assert owed is not None
            await uow.payments.mark_refund_done(intent, owed.attempts + 1)
            return owed.attempts

        assert await runner.run(claim_and_finish, None) == 1
        assert await runner.run(pending, Pending(cart_id=cart.id)) == []
        assert await runner.run(lambda _, uow: uow.payments.claim_refund(intent), None) is None
        assert await runner.run(lambda _, uow: uow.payments.is_accounted_for(intent), None)

    async def test_a_refund_stripe_reports_failed_is_owed_again_in_a_new_round(
        self, backend: Backend
    ) -> None:
        cart = await a_cart(backend, await a_shop(backend))
        intent = an_intent_id()
        runner = backend.runner()

        async def owe_and_reopen(_: None, uow: UnitOfWork) -> tuple[bool, bool]:
            await uow.payments.request_refund(
                intent, amount=500, currency="USD", reason="r", cart_id=cart.id
            )
            return (
                await uow.payments.reopen_refund(intent, "still pending"),
                await uow.payments.reopen_refund(an_intent_id(), "never asked"),
            )

        assert await runner.run(owe_and_reopen, None) == (False, False)

        async def claim_and_finish(_: None, uow: UnitOfWork) -> tuple[int, str]:
            owed = await uow.payments.claim_refund(intent)
            assert owed is not None
            await uow.payments.mark_refund_done(intent, owed.attempts + 1)
            return owed.round, owed.idempotency_key

        assert await runner.run(claim_and_finish, None) == (1, f"refund-{intent}")
        reopened = await runner.run(
            lambda _, uow: uow.payments.reopen_refund(intent, "Stripe: expired_or_canceled_card"),
            None,
        )
        assert reopened is True
        assert await runner.run(pending, Pending(cart_id=cart.id)) == [intent]
        assert await runner.run(claim_and_finish, None) == (2, f"refund-{intent}-r2")

    async def test_refunds_disputes_and_the_inbox_are_kept_by_id(self, backend: Backend) -> None:
        intent, refund_id, dispute_id = an_intent_id(), f"re_{an_id()}", f"du_{an_id()}"
        event_id = f"evt_{an_id()}"
        runner = backend.runner()

        async def facts(_: None, uow: UnitOfWork) -> tuple[IntentFacts, int, bool]:
            return (
                await uow.payments.intent_facts(intent),
                await uow.payments.refunded_total(intent),
                await uow.payments.is_accounted_for(intent),
            )

        assert await runner.run(facts, None) == (IntentFacts(0, False), 0, False)

        async def record(status: str, uow: UnitOfWork) -> None:
            await uow.payments.record_refund(
                refund_id, intent, amount=400, currency="USD", status=status, reason="stripe"
            )
            await uow.payments.record_dispute(
                dispute_id,
                intent,
                amount=1000,
                currency="USD",
                reason="fraudulent",
                status="won" if status == "succeeded" else "needs_response",
            )

        await runner.run(record, "pending")
        assert await runner.run(facts, None) == (IntentFacts(0, True), 0, False)
        await runner.run(record, "succeeded")
        assert await runner.run(facts, None) == (IntentFacts(400, False), 400, True)

        async def claim(_: None, uow: UnitOfWork) -> tuple[bool, bool]:
            first = await uow.payments.claim_event(event_id, "payment_intent.succeeded")
            await uow.payments.record_outcome(event_id, "applied", None, intent, None)
            return first, await uow.payments.claim_event(event_id, "payment_intent.succeeded")

        assert await runner.run(claim, None) == (True, False)
        again = await runner.run(lambda _, uow: uow.payments.claim_event(event_id, "x"), None)
        assert again is False

        async def claim_and_fail(_: None, uow: UnitOfWork) -> None:
            assert await uow.payments.claim_event(f"{event_id}_2", "x")
            raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError):
            await runner.run(claim_and_fail, None)
        fresh = await runner.run(
            lambda _, uow: uow.payments.claim_event(f"{event_id}_2", "x"), None
        )
        assert fresh is True  # the rolled-back claim kept nothing
