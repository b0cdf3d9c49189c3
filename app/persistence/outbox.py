"""The transactional outbox: events are written in the same transaction as the state they
describe, so a committed change always has its events, and a rolled-back one never does.

The dispatcher (``app.dispatcher``) reads undispatched rows in id order. ``(aggregate_type,
aggregate_id, version)`` is unique, so an event can't be stored twice. An insert sends
``NOTIFY teamcart_outbox`` (a statement-level trigger, migrations 0005 and 0006, so it costs
no round trip), which PostgreSQL delivers when (and only if) the transaction commits, so every
process's dispatcher wakes at once. ``created_at`` is the clock at the insert, at or near
the end of the transaction (a webhook still records its outcome after it): the dispatch
latency is measured from it. Dispatched rows are purged after ``RETENTION``.

Relayed rows skip the wake-up and the claim: a unit of work (``app.unit_of_work``) whose
runner has a :class:`Relay` appends with ``reserve=True`` and, after the commit, hands the
records straight to its own process's dispatcher. Such rows are inserted with
``reserved_until`` (now + ``RESERVATION_MS``) and send no ``NOTIFY``; no dispatcher claims
them before then, so if the committing process dies before marking them dispatched, a sweep
of any process picks them up.

Claiming takes, besides the rows' locks (``FOR UPDATE SKIP LOCKED``), a transaction-scoped
advisory lock per aggregate: one process at a time handles a given cart's claimed rows, in
version order, while different carts spread over every process. (Relayed rows of one cart
may be projected by several committing processes at once; the projection's compare-and-set
on the version keeps the view in order.)

A cart event's payload carries, beside the event's own fields, the cart view as of that
version (``{"event": …, "view": …}``): the projection writes whole views with a
compare-and-set on the version, and every WebSocket update carries the full cart (ADR 0004).
The payloads arrive here as JSON text, encoded by whoever knows their format (the wiring gives
the unit of work ``realtime.projection.outbox_payloads``): persistence knows no read model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

import asyncpg
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.persistence import database
from domain.events import DomainEvent

log = structlog.get_logger("teamcart.outbox")

NOTIFY_CHANNEL: Final = "teamcart_outbox"
"""Notified by the ``outbox_notify`` trigger on every insert of unreserved rows."""
_DISPATCH_LOCK_CLASS: Final = 0x7EA_CA27  # the advisory-lock namespace of outbox dispatch
RESERVATION_MS: Final = 2_000
"""How long a relayed row is left to the process that committed it (migration 0006)."""


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    id: int
    aggregate_type: str
    aggregate_id: str
    version: int
    event_type: str
    payload: str
    """The payload as JSON text (the handler decodes it into its own types)."""
    created_at: datetime


class Relay(Protocol):
    """Takes a transaction's outbox records right after it committed (``app.unit_of_work``).

    ``accepting`` is false while nobody would take them (the dispatcher is not running): the
    rows are then not reserved, and the dispatchers claim them as usual."""

    @property
    def accepting(self) -> bool: ...

    async def relay_committed(self, records: Sequence[OutboxRecord]) -> None:
        """Never raises, and returns within a bounded time: the transaction is committed
        whatever happens here."""


def append_sql(first: int, *, gate: str = "") -> str:
    """The ``INSERT`` of any number of events, its parameters numbered from ``first``: the
    aggregate types, ids, versions, event names and payloads (arrays of text, one element an
    event; the payloads JSON text, encoded once, which the relayed records carry too) and
    the reservation in ms (NULL: none). ``gate``: a ``WHERE`` on the rows (the cart's save
    appends only if the save went through). Each row comes back with its id."""
    n = [f"${first + k}" for k in range(6)]
    return f"""
    INSERT INTO outbox (aggregate_type, aggregate_id, version, event_type, payload,
                        created_at, reserved_until)
    SELECT t, CAST(a AS uuid), v, e, CAST(p AS jsonb), clock_timestamp(),
           clock_timestamp() + CAST({n[5]} AS integer) * interval '1 millisecond'
      FROM unnest(CAST({n[0]} AS text[]), CAST({n[1]} AS text[]), CAST({n[2]} AS integer[]),
                  CAST({n[3]} AS text[]), CAST({n[4]} AS text[])) AS u(t, a, v, e, p)
     {gate}
    RETURNING id, aggregate_id::text AS aggregate_id, version, created_at
    """  # noqa: S608 (parameter numbers and the caller's fixed WHERE: no input)


def append_arguments(
    events: Sequence[DomainEvent], payloads: Sequence[str], *, reserve: bool
) -> tuple[object, ...]:
    """The parameters of :func:`append_sql`, in its order."""
    return (
        [event.aggregate_type for event in events],
        [event.aggregate_id for event in events],
        [event.aggregate_version for event in events],
        [event.name for event in events],
        list(payloads),
        RESERVATION_MS if reserve else None,
    )


def records_of(
    rows: Sequence[Mapping[str, Any]], events: Sequence[DomainEvent], payloads: Sequence[str]
) -> list[OutboxRecord]:
    """The records of appended events, from the rows :func:`append_sql` returned."""
    inserted = {
        (row["aggregate_id"], row["version"]): (row["id"], row["created_at"])
        for row in rows
        if row["id"] is not None
    }
    records = []
    for event, payload in zip(events, payloads, strict=True):
        row_id, created_at = inserted[(event.aggregate_id, event.aggregate_version)]
        records.append(
            OutboxRecord(
                id=row_id,
                aggregate_type=event.aggregate_type,
                aggregate_id=event.aggregate_id,
                version=event.aggregate_version,
                event_type=event.name,
                payload=payload,
                created_at=created_at,
            )
        )
    return records


_APPEND = append_sql(1)


async def append_events(
    conn: AsyncConnection,
    events: Sequence[DomainEvent],
    payloads: Sequence[str],
    *,
    reserve: bool = False,
) -> list[OutboxRecord]:
    """Append events with their payloads (JSON text, one per event), in one round trip.

    ``reserve``: the caller hands the returned records to its :class:`Relay` once the
    transaction has committed, so the rows are reserved for it (and wake no other
    dispatcher); otherwise the dispatchers claim them as usual and nothing is returned."""
    if not events:
        return []
    rows = await database.fetch(conn, _APPEND, *append_arguments(events, payloads, reserve=reserve))
    return records_of(rows, events, payloads) if reserve else []


@dataclass(frozen=True, slots=True)
class Claim:
    records: list[OutboxRecord]
    """Claimed rows, each aggregate's in version order, none missing before them."""
    scanned: int
    """Undispatched rows looked at (``limit`` means there may be more)."""
    deferred: int
    """Rows left alone because another transaction holds their aggregate or an earlier row."""


# One round trip: lock up to $1 unreserved rows (SKIP LOCKED), try each of their aggregates'
# advisory lock (namespace $2), and give each claimed aggregate's oldest undispatched version
# (its "head", reserved or not; NULL when another transaction holds the aggregate).
_CLAIM = """
WITH claimed AS MATERIALIZED (
    SELECT id, aggregate_type, aggregate_id, version, event_type, payload::text AS payload,
           created_at
      FROM outbox
     WHERE dispatched_at IS NULL AND (reserved_until IS NULL OR reserved_until <= now())
     ORDER BY id
     LIMIT $1
       FOR UPDATE SKIP LOCKED
), aggregates AS MATERIALIZED (
    SELECT DISTINCT aggregate_type, aggregate_id FROM claimed
), owned AS MATERIALIZED (
    SELECT a.aggregate_type, a.aggregate_id,
           (SELECT min(o.version) FROM outbox o
             WHERE o.aggregate_type = a.aggregate_type
               AND o.aggregate_id = a.aggregate_id
               AND o.dispatched_at IS NULL) AS head
      FROM aggregates a
     WHERE pg_try_advisory_xact_lock(
               $2, hashtext(a.aggregate_type || a.aggregate_id::text))
)
SELECT c.id, c.aggregate_type, c.aggregate_id::text AS aggregate_id, c.version, c.event_type,
       c.payload, c.created_at, w.head
  FROM claimed c LEFT JOIN owned w USING (aggregate_type, aggregate_id)
 ORDER BY c.aggregate_type, c.aggregate_id, c.version
"""


async def claim_undispatched(conn: asyncpg.Connection, limit: int) -> Claim:
    """Claim up to ``limit`` undispatched rows, oldest first, until the transaction ends.

    ``conn`` is a raw asyncpg connection inside a transaction (the dispatcher's own: this is
    on every event's path, so one round trip and no ORM). Rows are locked ``FOR UPDATE SKIP
    LOCKED``, so concurrent claimers take different rows; then each aggregate is claimed with
    a transaction-scoped advisory lock, and only its rows from its oldest undispatched
    version on, without a hole, are kept: a cart's claimed events are never handled out of
    order, nor by two claimers at once.
    """
    rows = await conn.fetch(_CLAIM, limit, _DISPATCH_LOCK_CLASS)
    claimed: list[OutboxRecord] = []
    expected: dict[tuple[str, str], int | None] = {}
    for row in rows:
        key = (row["aggregate_type"], row["aggregate_id"])
        if key not in expected:
            expected[key] = row["head"]  # None: another transaction holds the aggregate
        if expected[key] != row["version"]:
            expected[key] = None  # a hole (an earlier row is someone else's): stop here
            continue
        expected[key] = row["version"] + 1
        claimed.append(
            OutboxRecord(
                id=row["id"],
                aggregate_type=row["aggregate_type"],
                aggregate_id=row["aggregate_id"],
                version=row["version"],
                event_type=row["event_type"],
                payload=row["payload"],
                created_at=row["created_at"],
            )
        )
    return Claim(claimed, len(rows), len(rows) - len(claimed))


async def mark_dispatched(conn: asyncpg.Connection, ids: Sequence[int]) -> None:
    if ids:
        await conn.execute(
            "UPDATE outbox SET dispatched_at = now() WHERE id = ANY($1::bigint[])", list(ids)
        )


RETENTION: Final = timedelta(days=7)
"""Dispatched events are kept this long (for debugging and audits), then purged."""

_PURGE = text(
    """
    DELETE FROM outbox WHERE id IN (
        SELECT id FROM (SELECT id, created_at FROM outbox
                          WHERE dispatched_at IS NOT NULL ORDER BY id LIMIT :n) AS oldest
         WHERE created_at < now() - CAST(:age AS interval)
    )
    """
)


async def purge_dispatched(engine: AsyncEngine, *, batch: int = 1000) -> int:
    """Delete dispatched events older than ``RETENTION`` among the ``batch`` oldest
    dispatched rows.

    Run by the sweeper every few seconds, so its cost is bounded: it walks the primary key
    from the oldest row, past the (few) undispatched ones, for ``batch`` rows, whatever the
    table's size; a backlog drains one batch per sweep. An undispatched row is never
    deleted, and one stuck forever does not stop the purge.
    """
    async with engine.begin() as conn:
        result = await conn.execute(_PURGE, {"n": batch, "age": RETENTION})
    return int(result.rowcount or 0)
