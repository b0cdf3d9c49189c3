"""The Redis view model on real Redis: the Lua compare-and-set under concurrency, gaps, TTLs,
presence expiry, the dispatcher's LISTEN/NOTIFY and SKIP LOCKED sharing, and the relay of a
command's own events with the sweep behind it.

Carts are made through the HTTP API (so their outbox rows are the real ones); the app's own
dispatcher projects them too, so a test that drives the projection itself waits for that to
finish and then deletes the cart's view before starting.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis
from sqlalchemy import Text, cast, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.dispatcher import RELAY_PAUSE_SECONDS, RELAY_TIMEOUT_SECONDS, OutboxDispatcher
from app.persistence import schema
from app.persistence.carts import read_cart
from app.persistence.database import create_engine
from app.persistence.outbox import (
    RESERVATION_MS,
    RETENTION,
    OutboxRecord,
    Relay,
    append_events,
    purge_dispatched,
)
from app.persistence.tables import outbox
from domain.events import ItemRemoved
from realtime.cart_view import CartView, cart_view
from realtime.presence import PresenceStore, presence_member
from realtime.projection import Projection, ViewLoader
from realtime.protocol import HubFrame
from realtime.view_store import Outcome, ViewStore, view_key
from tests.builders import Client, create_product, create_store
from tests.integration.test_group_flow import open_cart, session
from tests.services import fresh_database

Row = tuple[int, str, str]


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


class Published:
    """A stand-in publisher that keeps every frame, decoded."""

    def __init__(self) -> None:
        self.frames: list[HubFrame] = []

    async def __call__(self, channel: str, data: bytes) -> None:
        self.frames.append(HubFrame.decode(data))


def loader(engine: AsyncEngine) -> ViewLoader:
    async def load_view(cart_id: str) -> CartView | None:
        async with engine.connect() as conn:
            cart = await read_cart(conn, cart_id)
        return None if cart is None else cart_view(cart)

    return load_view


async def busy_cart(client: Client, admin: dict[str, str]) -> str:
    """A cart with 16 events from four members: joins, items, quantities, ready flags, lock."""
    store = await create_store(client, admin)
    product = await create_product(client, admin, store["id"], option_groups=[])
    host = await session(client, "Host")
    cart = await open_cart(client, host, store["id"])
    url = f"/api/v1/teamcarts/{cart['id']}"
    members = [host]
    for name in ("Ana", "Ben", "Cy"):
        guest = await session(client, name)
        joined = await client.post(
            "/api/v1/teamcarts/join", json={"invite_code": cart["invite_code"]}, headers=guest
        )
        assert joined.status_code == 200, joined.text
        members.append(guest)
    for member in members:
        added = await client.post(
            url + "/items", json={"product_id": product["id"], "quantity": 1}, headers=member
        )
        assert added.status_code == 201, added.text
        item = added.json()["item_id"]
        changed = await client.patch(f"{url}/items/{item}", json={"quantity": 2}, headers=member)
        assert changed.status_code == 200, changed.text
    for member in members[1:]:
        assert (await client.put(url + "/ready", json={"ready": True}, headers=member)).is_success
    assert (await client.post(url + "/lock", headers=host)).status_code == 200
    return str(cart["id"])


async def outbox_rows(engine: AsyncEngine, cart_id: str) -> list[Row]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            # The payload as the dispatcher hands it over: JSON text.
            select(outbox.c.version, outbox.c.event_type, cast(outbox.c.payload, Text))
            .where(outbox.c.aggregate_id == cart_id)
            .order_by(outbox.c.version)
        )
        return [(row[0], row[1], row[2]) for row in rows]


async def settled_and_cleared(views: ViewStore, cart_id: str, version: int) -> None:
    """Wait for the app's own projection to finish with the cart, then forget its view."""
    deadline = time.monotonic() + 10
    while (stored := await views.read(cart_id)) is None or stored.version < version:
        assert time.monotonic() < deadline, "the app never projected the cart"
        await asyncio.sleep(0.02)
    await views.redis.delete(view_key(cart_id))


async def projected_and_cleared(
    client: Client, admin: dict[str, str], engine: AsyncEngine, views: ViewStore
) -> tuple[str, list[Row]]:
    """A busy cart and its outbox rows, once the app has projected them and its view is gone."""
    cart_id = await busy_cart(client, admin)
    rows = await outbox_rows(engine, cart_id)
    await settled_and_cleared(views, cart_id, rows[-1][0])
    return cart_id, rows


@pytest.mark.parametrize("order", ["shuffled", "in_order"])
async def test_32_concurrent_appliers_converge_on_the_rebuild_and_never_go_back(
    client: Client,
    admin_headers: dict[str, str],
    engine: AsyncEngine,
    redis: Redis,
    order: str,
) -> None:
    views = ViewStore(redis)
    cart_id, rows = await projected_and_cleared(client, admin_headers, engine, views)
    final = rows[-1][0]
    assert [version for version, _, _ in rows] == list(range(1, final + 1))
    assert final >= 16

    stream = rows * 3  # every event delivered three times
    if order == "shuffled":
        random.Random(final).shuffle(stream)
    else:
        stream.sort(key=lambda row: row[0])
    pending = iter(stream)
    published = Published()
    projection = Projection(views, published, loader(engine))
    outcomes: list[tuple[int, Outcome]] = []
    observed: list[int] = []
    done = asyncio.Event()

    async def applier() -> None:
        for version, event_type, payload in pending:
            outcome = await projection.project(cart_id, version, event_type, payload)
            outcomes.append((version, outcome))

    async def watcher() -> None:
        while not done.is_set():
            # redis-py types hget for its sync and asyncio clients alike: this one is awaitable.
            stored = await redis.hget(view_key(cart_id), "version")  # type: ignore[misc]
            observed.append(int(stored or 0))
            await asyncio.sleep(0)

    watching = asyncio.create_task(watcher())
    await asyncio.gather(*(applier() for _ in range(32)))
    done.set()
    await watching

    assert observed == sorted(observed), f"the view moved backward: {observed}"
    stored = await views.read(cart_id)
    assert stored is not None
    assert stored.version == final
    async with engine.connect() as conn:
        cart = await read_cart(conn, cart_id)
    assert cart is not None
    assert msgspec.json.decode(stored.view_json, type=CartView) == cart_view(cart)
    assert len(outcomes) == len(stream)
    applied = [version for version, outcome in outcomes if outcome is Outcome.APPLIED]
    assert len(applied) == len(set(applied)), "one version was applied twice"
    updates = {frame.version for frame in published.frames if frame.kind == "update"}
    rebuilt = {frame.version for frame in published.frames if frame.kind == "snapshot"}
    assert set(applied) <= updates
    # A redelivery publishes again what an apply or a rebuild wrote, nothing else.
    assert updates <= set(applied) | rebuilt
    if order == "in_order":
        assert applied
    assert any(outcome is Outcome.DUPLICATE for _, outcome in outcomes)


async def test_an_unreadable_payload_rebuilds_the_view_instead_of_failing_forever(
    client: Client, admin_headers: dict[str, str], engine: AsyncEngine, redis: Redis
) -> None:
    """A damaged outbox row (or one written by another version of the code) would otherwise
    fail on every sweep and hold up every later event of its cart."""
    views = ViewStore(redis)
    cart_id, rows = await projected_and_cleared(client, admin_headers, engine, views)
    final = rows[-1][0]
    published = Published()
    projection = Projection(views, published, loader(engine))
    for damaged in ('{"event": {}, "view": {"id": 7}}', "not json"):
        assert await projection.project(cart_id, final, "item_added", damaged) is Outcome.GAP
    stored = await views.read(cart_id)
    assert stored is not None
    assert stored.version == final
    assert [(f.kind, f.version) for f in published.frames] == [("snapshot", final)]


async def test_a_redelivery_publishes_an_update_whose_first_publish_failed(
    client: Client, admin_headers: dict[str, str], engine: AsyncEngine, redis: Redis
) -> None:
    views = ViewStore(redis)
    cart_id, rows = await projected_and_cleared(client, admin_headers, engine, views)
    version, event_type, payload = rows[0]

    async def broken(cart: str, frame: bytes) -> None:
        raise ConnectionError("Redis went away after the compare-and-set")

    with pytest.raises(ConnectionError):
        await Projection(views, broken, loader(engine)).project(
            cart_id, version, event_type, payload
        )
    published = Published()
    again = await Projection(views, published, loader(engine)).project(
        cart_id, version, event_type, payload
    )
    assert again is Outcome.DUPLICATE
    assert [(f.kind, f.version) for f in published.frames] == [("update", version)]


async def test_a_gap_rebuilds_from_postgresql_and_publishes_a_snapshot(
    client: Client, admin_headers: dict[str, str], engine: AsyncEngine, redis: Redis
) -> None:
    views = ViewStore(redis)
    cart_id, rows = await projected_and_cleared(client, admin_headers, engine, views)
    final = rows[-1][0]
    published = Published()
    loads: list[str] = []
    load_view = loader(engine)

    async def counting_loader(wanted: str) -> CartView | None:
        loads.append(wanted)
        return await load_view(wanted)

    projection = Projection(views, published, counting_loader)
    for version, event_type, payload in rows[:2]:
        assert await projection.project(cart_id, version, event_type, payload) is Outcome.APPLIED
    assert [frame.version for frame in published.frames] == [1, 2]
    assert loads == []

    version, event_type, payload = rows[4]  # versions 3 and 4 never arrive
    assert await projection.project(cart_id, version, event_type, payload) is Outcome.GAP
    assert loads == [cart_id]
    stored = await views.read(cart_id)
    assert stored is not None
    assert stored.version == final
    assert published.frames[-1].kind == "snapshot"
    assert published.frames[-1].version == final
    for version, event_type, payload in rows[2:]:  # the late ones are duplicates now
        assert await projection.project(cart_id, version, event_type, payload) is Outcome.DUPLICATE


async def test_the_ttl_slides_and_ended_carts_keep_a_short_one(redis: Redis) -> None:
    views = ViewStore(redis, ttl_ms=3000, terminal_ttl_ms=800)
    cart_id = str(uuid.uuid4())
    key = view_key(cart_id)
    assert (await views.apply(cart_id, 1, b"{}", "open")).outcome is Outcome.APPLIED
    assert 2500 < await redis.pttl(key) <= 3000
    await asyncio.sleep(0.6)
    assert await redis.pttl(key) <= 2500
    assert await views.read(cart_id) is not None  # a read slides it
    assert await redis.pttl(key) > 2500
    await asyncio.sleep(0.6)
    assert (await views.apply(cart_id, 2, b"{}", "locked")).outcome is Outcome.APPLIED
    assert await redis.pttl(key) > 2500
    assert (await views.apply(cart_id, 2, b"{}", "locked")).outcome is Outcome.DUPLICATE
    assert (await views.apply(cart_id, 4, b"{}", "locked")).outcome is Outcome.GAP
    assert (await views.apply(cart_id, 3, b"{}", "cancelled")).outcome is Outcome.APPLIED
    assert 0 < await redis.pttl(key) <= 800
    await asyncio.sleep(0.9)
    assert await views.read(cart_id) is None
    # a missing view accepts only version 1; anything later is a gap to rebuild
    assert (await views.apply(cart_id, 4, b"{}", "open")).outcome is Outcome.GAP
    written = await views.write_if_newer(cart_id, 4, b'{"v":4}', "open")
    assert written.written
    assert not (await views.write_if_newer(cart_id, 3, b"{}", "open")).written
    assert (await views.read(cart_id)) is not None


async def test_presence_expires_when_not_refreshed(redis: Redis) -> None:
    presence = PresenceStore(redis, ttl_ms=400)
    cart_id = str(uuid.uuid4())
    ana, ben = presence_member("ana", "c1"), presence_member("ben", "c2")
    ana_tab2 = presence_member("ana", "c3")
    joined = await presence.touch(cart_id, add=[ana, ana_tab2])
    assert joined.changed
    assert joined.after == {"ana"}
    assert not (await presence.touch(cart_id, remove=[ana_tab2])).changed  # still one tab
    assert (await presence.touch(cart_id, add=[ben])).after == {"ana", "ben"}
    for _ in range(3):  # ben's process keeps refreshing; ana's died
        await asyncio.sleep(0.2)
        change = (await presence.refresh({cart_id: [ben]}))[cart_id]
    assert change.after == {"ben"}
    views = ViewStore(redis)
    await views.apply(cart_id, 1, b"{}", "open")
    stored = await views.read(cart_id)
    assert stored is not None
    assert stored.online == {"ben"}


# --- the dispatcher, on a database of its own (the app's dispatcher watches the shared one) ---


@pytest.fixture(scope="module")
def dispatch_database(postgres_server_url: str) -> Iterator[str]:
    with fresh_database(postgres_server_url) as url:
        schema.upgrade(url)
        yield url


@pytest.fixture
async def dispatch_engine(dispatch_database: str) -> AsyncIterator[AsyncEngine]:
    test_engine = create_engine(dispatch_database, pool_size=4)
    yield test_engine
    await test_engine.dispose()


async def append_removals(engine: AsyncEngine, cart_id: str, versions: range) -> None:
    """Outbox rows for a cart (any event will do: the handler under test only records)."""
    async with engine.begin() as conn:
        events = [
            ItemRemoved(cart_id=cart_id, version=v, item_id="i", user_id="u") for v in versions
        ]
        await append_events(conn, events, ["{}"] * len(events))


async def undispatched(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        rows = await conn.execute(select(outbox.c.id).where(outbox.c.dispatched_at.is_(None)))
        return len(rows.all())


async def test_two_dispatchers_share_the_rows_and_keep_each_carts_order(
    dispatch_engine: AsyncEngine, dispatch_database: str
) -> None:
    carts = [str(uuid.uuid4()) for _ in range(12)]
    for cart_id in carts:
        await append_removals(dispatch_engine, cart_id, range(1, 6))
    handled: list[tuple[str, str, int]] = []

    def recorder(name: str) -> Any:
        async def handle(record: OutboxRecord) -> None:
            handled.append((name, record.aggregate_id, record.version))
            await asyncio.sleep(0.01)  # hold the claim a little, so the two overlap

        return handle

    first = OutboxDispatcher(dispatch_database, recorder("a"), batch_size=7)
    second = OutboxDispatcher(dispatch_database, recorder("b"), batch_size=7)
    try:
        await asyncio.gather(first.dispatch_pending(), second.dispatch_pending())
    finally:
        await first.close()
        await second.close()

    assert await undispatched(dispatch_engine) == 0
    assert len(handled) == len(carts) * 5  # each exactly once here (no failures)
    for cart_id in carts:
        versions = [version for _, aggregate, version in handled if aggregate == cart_id]
        assert versions == [1, 2, 3, 4, 5], (cart_id, versions)
    assert {name for name, _, _ in handled} == {"a", "b"}


async def test_a_failed_handler_leaves_the_rest_of_that_cart_for_a_retry(
    dispatch_engine: AsyncEngine, dispatch_database: str
) -> None:
    failing, healthy = str(uuid.uuid4()), str(uuid.uuid4())
    await append_removals(dispatch_engine, failing, range(1, 4))
    await append_removals(dispatch_engine, healthy, range(1, 4))
    handled: list[tuple[str, int]] = []
    broken = {(failing, 2)}

    async def handle(record: OutboxRecord) -> None:
        if (record.aggregate_id, record.version) in broken:
            broken.clear()
            raise ConnectionError("Redis went away")
        handled.append((record.aggregate_id, record.version))

    dispatcher = OutboxDispatcher(dispatch_database, handle)
    try:
        await dispatcher.dispatch_pending()
        assert [v for c, v in handled if c == healthy] == [1, 2, 3]
        assert [v for c, v in handled if c == failing] == [1]
        assert await undispatched(dispatch_engine) == 2
        await dispatcher.dispatch_pending()  # the sweep's retry
    finally:
        await dispatcher.close()
    assert [v for c, v in handled if c == failing] == [1, 2, 3]
    assert await undispatched(dispatch_engine) == 0


async def test_a_commit_wakes_the_dispatcher_through_notify(
    dispatch_engine: AsyncEngine, dispatch_database: str
) -> None:
    cart_id = str(uuid.uuid4())
    arrived = asyncio.Event()

    async def handle(record: OutboxRecord) -> None:
        if record.aggregate_id == cart_id:
            arrived.set()

    dispatcher = OutboxDispatcher(dispatch_database, handle, sweep_interval=60)
    async with dispatcher.running():
        await asyncio.sleep(0.3)  # listening by now; the sweep would not come for a minute
        started = time.monotonic()
        await append_removals(dispatch_engine, cart_id, range(1, 2))
        async with asyncio.timeout(5):
            await arrived.wait()
        assert time.monotonic() - started < 1.0


async def test_the_sweep_redelivers_rows_left_behind(
    dispatch_engine: AsyncEngine, dispatch_database: str
) -> None:
    """A crash after handling but before marking: the row is still undispatched."""
    cart_id = str(uuid.uuid4())
    await append_removals(dispatch_engine, cart_id, range(1, 3))
    async with dispatch_engine.begin() as conn:  # as if nobody had been listening
        await conn.execute(update(outbox).values(dispatched_at=None))
    seen: list[int] = []
    both = asyncio.Event()

    async def handle(record: OutboxRecord) -> None:
        if record.aggregate_id == cart_id:
            seen.append(record.version)
            if len(seen) == 2:
                both.set()

    dispatcher = OutboxDispatcher(dispatch_database, handle, sweep_interval=0.1)
    async with dispatcher.running(), asyncio.timeout(5):
        await both.wait()
    assert seen == [1, 2]


async def commit_relayed_removal(engine: AsyncEngine, relay: Relay, cart_id: str) -> float:
    """A unit of work's way: append reserved, commit, relay. The commit's time."""
    async with engine.begin() as conn:
        event = ItemRemoved(cart_id=cart_id, version=1, item_id="i", user_id="u")
        records = await append_events(conn, [event], ["{}"], reserve=True)
    committed = time.monotonic()
    await relay.relay_committed(records)
    return committed


async def until_dispatched(engine: AsyncEngine, cart_id: str) -> None:
    async with asyncio.timeout(5):
        while True:
            async with engine.connect() as conn:
                dispatched = await conn.scalar(
                    select(outbox.c.dispatched_at).where(outbox.c.aggregate_id == cart_id)
                )
            if dispatched is not None:
                return
            await asyncio.sleep(0.02)


async def test_a_relayed_commit_is_handled_by_its_own_process_and_wakes_no_other(
    dispatch_engine: AsyncEngine, dispatch_database: str
) -> None:
    cart_id = str(uuid.uuid4())
    handled: dict[str, list[int]] = {"own": [], "other": []}

    def recorder(name: str) -> Any:
        async def handle(record: OutboxRecord) -> None:
            if record.aggregate_id == cart_id:
                handled[name].append(record.version)

        return handle

    own = OutboxDispatcher(dispatch_database, recorder("own"), sweep_interval=60)
    other = OutboxDispatcher(dispatch_database, recorder("other"), sweep_interval=0.05)
    async with own.running(), other.running():
        await asyncio.sleep(0.3)  # both listening
        assert own.accepting
        await commit_relayed_removal(dispatch_engine, own, cart_id)
        assert handled["own"] == [1]  # before the command returned
        await until_dispatched(dispatch_engine, cart_id)
        await asyncio.sleep(0.3)  # the other process's NOTIFY and sweeps would come now
    assert handled == {"own": [1], "other": []}


@pytest.mark.parametrize("redis_during_relay", ["fails", "hangs"])
async def test_a_relayed_event_its_process_failed_to_handle_is_swept_after_its_reservation(
    dispatch_engine: AsyncEngine, dispatch_database: str, redis_during_relay: str
) -> None:
    """Redis fails or hangs during the committing process's relay (or the process dies):
    the command still returns, at once or after the relay's timeout, and another process
    dispatches the event once its reservation ends."""
    cart_id = str(uuid.uuid4())
    swept = asyncio.Event()

    async def failing(record: OutboxRecord) -> None:
        if redis_during_relay == "hangs":  # past the relay's timeout, then it gives up
            await asyncio.sleep(RELAY_TIMEOUT_SECONDS + 0.5)
        raise ConnectionError("Redis went away")

    async def handle(record: OutboxRecord) -> None:
        if record.aggregate_id == cart_id:
            swept.set()

    own = OutboxDispatcher(dispatch_database, failing, sweep_interval=60)
    other = OutboxDispatcher(dispatch_database, handle, sweep_interval=0.05)
    async with own.running(), other.running():
        committed = await commit_relayed_removal(dispatch_engine, own, cart_id)
        assert time.monotonic() - committed < RELAY_TIMEOUT_SECONDS + 0.5
        # The next commands don't wait on a failing Redis: they stop relaying for a while,
        # and the dispatchers take their events.
        assert not own.accepting
        async with asyncio.timeout(RESERVATION_MS / 1000 + 5):
            await swept.wait()
        assert time.monotonic() - committed >= RESERVATION_MS / 1000 - 0.05
        await until_dispatched(dispatch_engine, cart_id)
        await asyncio.sleep(RELAY_PAUSE_SECONDS)
        assert own.accepting  # and relaying again once the pause is over


async def test_the_sweeper_purges_only_old_dispatched_events(dispatch_engine: AsyncEngine) -> None:
    old, stuck, recent = (str(uuid.uuid4()) for _ in range(3))
    for cart_id in (old, stuck, recent):
        await append_removals(dispatch_engine, cart_id, range(1, 3))
    async with dispatch_engine.begin() as conn:
        long_ago = func.now() - RETENTION - timedelta(hours=1)
        await conn.execute(
            update(outbox)
            .where(outbox.c.aggregate_id.in_([old, stuck]))
            .values(created_at=long_ago)
        )
        await conn.execute(
            update(outbox)
            .where(outbox.c.aggregate_id.in_([old, recent]))
            .values(dispatched_at=func.now())
        )

    assert await purge_dispatched(dispatch_engine) == 2  # only `old`'s two
    assert await purge_dispatched(dispatch_engine) == 0
    async with dispatch_engine.connect() as conn:
        left = (
            await conn.execute(
                select(outbox.c.aggregate_id).where(outbox.c.aggregate_id.in_([old, stuck, recent]))
            )
        ).scalars()
        assert sorted(left) == sorted([stuck, stuck, recent, recent])  # never undispatched
