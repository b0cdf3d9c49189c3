"""The outbox dispatcher: every server process hands committed events to their handlers.

It wakes on ``NOTIFY teamcart_outbox`` (sent by a trigger on outbox inserts and
delivered by PostgreSQL at commit) through a raw asyncpg connection that only listens, and
also every ``sweep_interval`` seconds, which redelivers whatever a crash or a lost
notification left undispatched. Each pass claims rows in a transaction on a second raw
asyncpg connection of the dispatcher's own (``claim_undispatched``, one round trip: row
locks with ``SKIP LOCKED`` plus one advisory lock per aggregate, so processes share the work
and a cart's claimed events are handled by one process at a time, in version order), runs the
handler for each, marks the handled rows ``dispatched_at`` and commits. A row whose handler
failed stays undispatched and is retried on the next sweep: delivery is at-least-once, and
handlers are idempotent by ``(aggregate, version)``.

A command's own events take a shorter way (:meth:`OutboxDispatcher.relay`): the process
that committed them runs the handler right after the commit, in the command's task, and
marks them dispatched in a batch a few milliseconds later. Their rows are reserved for it
for a couple of seconds and wake no one (``app.persistence.outbox``); if it dies or the
handler fails, a sweep of any process dispatches them once the reservation ends.

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
from redis.exceptions import RedisError

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
MARK_DELAY_SECONDS: Final = 0.05
"""Relayed rows are marked dispatched in batches gathered this long: one round trip per
batch, not per command (their reservation lasts ``RESERVATION_MS``, 40 times longer)."""
RELAY_TIMEOUT_SECONDS: Final = 1.0
"""How long a command waits for its relay before answering anyway (``relay_committed``)."""
RELAY_PAUSE_SECONDS: Final = 2.0
"""After a relay fails or times out, commands stop relaying this long: while Redis is away
or hangs, they answer at once and the dispatchers' sweeps deliver their events."""
OUTAGES: Final = (RedisError, OSError, TimeoutError, asyncpg.PostgresConnectionError)
"""Failures of a service, not of the code: one warning line each, no traceback."""

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
DISPATCHER_FAULTS = Counter(
    "teamcart_outbox_dispatcher_faults",
    "The dispatcher's own failures, each retried: a relay that failed or timed out (its "
    "events left to the sweeps), a claiming pass that failed, the LISTEN connection lost or "
    "not opened.",
    ["stage"],
)

Handler = Callable[[OutboxRecord], Awaitable[None]]


def _log_failure(event: str, exc: Exception, **fields: object) -> None:
    if isinstance(exc, OUTAGES):
        log.warning(event, error=repr(exc), **fields)
    else:
        log.exception(event, **fields)


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


def each_of(handlers: Sequence[Handler]) -> Handler:
    """One handler that runs ``handlers`` in turn on each record (the projection, the order
    feed, the mail planner): a failure stops there and the row is dispatched again later,
    so each must be idempotent on the record's ``(aggregate, version)`` or ``id``."""

    async def handle(record: OutboxRecord) -> None:
        for handler in handlers:
            await handler(record)

    return handle


def _by_aggregate(records: Sequence[OutboxRecord]) -> list[list[OutboxRecord]]:
    """Records grouped by aggregate, each group in the order given (version order)."""
    groups: dict[tuple[str, str], list[OutboxRecord]] = {}
    for record in records:
        groups.setdefault((record.aggregate_type, record.aggregate_id), []).append(record)
    return list(groups.values())


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
        self._conn_lock = asyncio.Lock()  # claims and marks share the one connection
        self._relayed: list[int] = []  # handled by relay(), to be marked dispatched
        self._relayed_wake = asyncio.Event()
        self._running = False
        self._relay_resumes_at = 0.0

    @property
    def accepting(self) -> bool:
        """Relayed records are taken only while the dispatcher runs (see ``running``), and
        not for ``RELAY_PAUSE_SECONDS`` after a relay failed."""
        return self._running and time.monotonic() >= self._relay_resumes_at

    def _pause_relays(self) -> None:
        self._relay_resumes_at = time.monotonic() + RELAY_PAUSE_SECONDS

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

    async def relay_committed(self, records: Sequence[OutboxRecord]) -> None:
        """The :class:`app.persistence.outbox.Relay` of this process's units of work.

        Never raises, and gives up after ``RELAY_TIMEOUT_SECONDS`` (a Redis that hangs must
        not hang every command's response): the transaction is committed whatever happens
        here, and a record not dispatched here is dispatched by a sweep once its reservation
        ends. (If the timeout struck between writing the view and publishing it, that
        redelivery finds the view at its version and publishes the update again.) It runs in
        the caller's task, not a task of its own: one event-loop turn less on every
        command's way to the sockets.
        """
        try:
            async with asyncio.timeout(RELAY_TIMEOUT_SECONDS):
                await self.relay(records)
        except Exception as exc:
            self._pause_relays()
            DISPATCHER_FAULTS.labels("relay").inc()
            _log_failure("outbox_relay_failed", exc, aggregate_id=records[0].aggregate_id)

    async def relay(self, records: Sequence[OutboxRecord]) -> None:
        """Handle records this process has just committed (reserved for it; see
        ``app.persistence.outbox.append_events``), in the committing task: no wake-up, no
        claim. They are marked dispatched in the next batch; one whose handler failed stays
        undispatched, and a sweep retries it when its reservation ends."""
        for group in _by_aggregate(records):
            done = await self._handle_in_order(group)
            if len(done) < len(group):
                self._pause_relays()
            if done:
                self._relayed.extend(done)
                self._relayed_wake.set()

    async def _mark_relayed(self) -> None:
        """Mark the relayed rows handled so far. On failure they wait for the next batch; if
        their reservation ends first (or this is cancelled), a sweep dispatches them again,
        a duplicate the projection skips."""
        ids, self._relayed = self._relayed, []
        if not ids:
            return
        async with self._conn_lock:
            try:
                await mark_dispatched(await self._connection(), ids)
            except Exception as exc:
                self._relayed[:0] = ids
                log.warning("outbox_mark_relayed_failed", rows=len(ids), error=repr(exc))
                await self.close()  # the next use opens a fresh connection

    async def _mark_relayed_forever(self) -> None:
        """Mark relayed records dispatched, a batch at a time (one round trip per batch)."""
        while True:
            await self._relayed_wake.wait()
            await asyncio.sleep(MARK_DELAY_SECONDS)  # let a batch gather
            self._relayed_wake.clear()
            await self._mark_relayed()

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
        async with self._conn_lock:
            return await self._claim_and_handle()

    async def _claim_and_handle(self) -> tuple[Claim, int]:
        conn = await self._connection()
        try:
            async with conn.transaction():
                claim = await claim_undispatched(conn, self.batch_size)
                if not claim.records:
                    return claim, 0
                groups = _by_aggregate(claim.records)
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
            except Exception as exc:
                DISPATCH_FAILURES.inc()
                _log_failure(
                    "dispatch_failed",
                    exc,
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
            except Exception as exc:  # PostgreSQL or Redis away: the next sweep retries
                DISPATCHER_FAULTS.labels("pass").inc()
                _log_failure("dispatch_pass_failed", exc)

    async def _listen_forever(self) -> None:
        """Keep one connection listening; each notification wakes the dispatch loop."""
        while True:
            lost = asyncio.Event()
            try:
                connection = await asyncpg.connect(self.dsn)
            except Exception as exc:
                DISPATCHER_FAULTS.labels("listen").inc()
                log.warning("outbox_listen_connect_failed", error=repr(exc))
                await asyncio.sleep(LISTEN_RETRY_SECONDS)
                continue
            try:
                connection.add_termination_listener(lambda _, lost=lost: lost.set())
                await connection.add_listener(NOTIFY_CHANNEL, lambda *_: self._wake.set())
                self._wake.set()  # catch up on whatever committed while nobody listened
                await lost.wait()
                DISPATCHER_FAULTS.labels("listen").inc()
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
            asyncio.create_task(self._mark_relayed_forever(), name="outbox-mark-relayed"),
        ]
        self._running = True
        try:
            yield
        finally:
            self._running = False
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._mark_relayed()  # what is left would wait for its reservation to end
            await self.close()
