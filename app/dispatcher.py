"""The outbox dispatcher: every server process hands committed events to their handlers.

It wakes on ``NOTIFY teamcart_outbox`` (sent by a trigger on every outbox insert and
delivered by PostgreSQL at commit) through a raw asyncpg connection that only listens, and
also every ``sweep_interval`` seconds, which redelivers whatever a crash or a lost
notification left undispatched. Each pass claims rows in a transaction on a second raw
asyncpg connection of the dispatcher's own (``claim_undispatched``, one round trip: row
locks with ``SKIP LOCKED`` plus one advisory lock per aggregate, so processes share the work
and a cart's events are handled by one process at a time, in version order), runs the
handler for each, marks the handled rows ``dispatched_at`` and commits. A row whose handler
failed stays undispatched and is retried on the next sweep: delivery is at-least-once, and
handlers are idempotent by ``(aggregate, version)``.

The handler of TeamCart rows is the projection (:func:`project_outbox_record`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog
from prometheus_client import Counter, Histogram

from app.persistence.outbox import (
    NOTIFY_CHANNEL,
    Claim,
    OutboxRecord,
    claim_undispatched,
    mark_dispatched,
)
from realtime.projection import Projection

log = structlog.get_logger("teamcart.dispatcher")

DEFAULT_SWEEP_SECONDS: Final = 1.0
DEFAULT_BATCH: Final = 200
LISTEN_RETRY_SECONDS: Final = 2.0
DEFER_SECONDS: Final = 0.02

PROJECTED = Counter(
    "teamcart_projection_events",
    "Cart events projected into the Redis view model, by outcome (applied, duplicate, gap).",
    ["outcome"],
)
DISPATCH_LATENCY = Histogram(
    "teamcart_outbox_dispatch_seconds",
    "From an event's insert (its transaction's last statement) to its handler finishing.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DISPATCH_FAILURES = Counter(
    "teamcart_outbox_dispatch_failures", "Outbox rows whose handler failed (retried later)."
)

Handler = Callable[[OutboxRecord], Awaitable[None]]


def listen_dsn(database_url: str) -> str:
    """The settings' URL as asyncpg wants it (``postgresql://``; ``?host=`` sockets kept)."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(scheme="postgresql"))


def project_outbox_record(projection: Projection) -> Handler:
    """The handler that projects TeamCart events; other aggregates have no live view."""

    async def handle(record: OutboxRecord) -> None:
        if record.aggregate_type != "teamcart":
            return
        outcome = await projection.project(
            record.aggregate_id, record.version, record.event_type, record.payload
        )
        PROJECTED.labels(outcome.value).inc()

    return handle


class OutboxDispatcher:
    """Claims with a raw asyncpg connection of its own (one round trip, no ORM: this is on
    every event's way to the sockets) and listens on another."""

    def __init__(
        self,
        database_url: str,
        handle: Handler,
        *,
        sweep_interval: float = DEFAULT_SWEEP_SECONDS,
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        self.dsn = listen_dsn(database_url)
        self.handle = handle
        self.sweep_interval = sweep_interval
        self.batch_size = batch_size
        self._wake = asyncio.Event()
        self._conn: asyncpg.Connection | None = None

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self.dsn)
        return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=2)

    def wake(self) -> None:
        self._wake.set()

    async def dispatch_pending(self) -> int:
        """Dispatch until nothing claimable is left; the number of rows dispatched."""
        total = 0
        while True:
            self._wake.clear()
            claim, dispatched = await self._dispatch_batch()
            total += dispatched
            if dispatched < len(claim.records):  # a handler failed: back off until the sweep
                return total
            if claim.deferred:  # another process holds some carts: look again shortly
                asyncio.get_running_loop().call_later(DEFER_SECONDS, self._wake.set)
            if claim.scanned < self.batch_size and not self._wake.is_set():
                return total

    async def _dispatch_batch(self) -> tuple[Claim, int]:
        conn = await self._connection()
        try:
            async with conn.transaction():
                claim = await claim_undispatched(conn, self.batch_size)
                if not claim.records:
                    return claim, 0
                by_aggregate: dict[tuple[str, str], list[OutboxRecord]] = {}
                for record in claim.records:
                    key = (record.aggregate_type, record.aggregate_id)
                    by_aggregate.setdefault(key, []).append(record)
                groups = list(by_aggregate.values())
                if len(groups) == 1:  # the usual case: no task per cart
                    done = await self._handle_in_order(groups[0])
                else:
                    handled = await asyncio.gather(*map(self._handle_in_order, groups))
                    done = [record_id for ids in handled for record_id in ids]
                await mark_dispatched(conn, done)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await self.close()  # start the next pass on a fresh connection
            raise
        return claim, len(done)

    async def _handle_in_order(self, records: Sequence[OutboxRecord]) -> list[int]:
        """One aggregate's rows (in version order), stopping at the first failure."""
        done: list[int] = []
        for record in records:
            try:
                await self.handle(record)
            except Exception:
                DISPATCH_FAILURES.inc()
                log.exception(
                    "dispatch_failed",
                    aggregate_type=record.aggregate_type,
                    aggregate_id=record.aggregate_id,
                    version=record.version,
                )
                break
            DISPATCH_LATENCY.observe(max(0.0, time.time() - record.created_at.timestamp()))
            done.append(record.id)
        return done

    async def _dispatch_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.sweep_interval):
                    await self._wake.wait()
            try:
                await self.dispatch_pending()
            except Exception:  # PostgreSQL or Redis away: the next sweep retries
                log.exception("dispatch_pass_failed")

    async def _listen_forever(self) -> None:
        """Keep one connection listening; each notification wakes the dispatch loop."""
        while True:
            lost = asyncio.Event()
            try:
                connection = await asyncpg.connect(self.dsn)
            except Exception as exc:
                log.warning("outbox_listen_connect_failed", error=repr(exc))
                await asyncio.sleep(LISTEN_RETRY_SECONDS)
                continue
            try:
                connection.add_termination_listener(lambda _, lost=lost: lost.set())
                await connection.add_listener(NOTIFY_CHANNEL, lambda *_: self._wake.set())
                self._wake.set()  # catch up on whatever committed while nobody listened
                await lost.wait()
                log.warning("outbox_listen_connection_lost")
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), timeout=2)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Listen and dispatch while the context is open (the app's lifespan)."""
        tasks = [
            asyncio.create_task(self._listen_forever(), name="outbox-listen"),
            asyncio.create_task(self._dispatch_forever(), name="outbox-dispatch"),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.close()
