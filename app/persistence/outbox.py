"""The transactional outbox: events are written in the same transaction as the state they
describe, so a committed change always has its events, and a rolled-back one never does.

The dispatcher (``app.dispatcher``) reads undispatched rows in id order. ``(aggregate_type,
aggregate_id, version)`` is unique, so an event can't be stored twice. Every insert also
sends ``NOTIFY teamcart_outbox`` (a statement-level trigger, migration 0005, so it costs no
round trip), which PostgreSQL delivers when (and only if) the transaction commits, so every
process's dispatcher wakes at once. ``created_at`` is the clock at the insert, at or near
the end of the transaction (a webhook still records its outcome after it): the dispatch
latency is measured from it. Dispatched rows are purged after ``RETENTION``.

Claiming takes, besides the rows' locks (``FOR UPDATE SKIP LOCKED``), a transaction-scoped
advisory lock per aggregate: one process at a time handles a given cart's rows, so each cart
is dispatched in version order while different carts spread over every process.

A cart event's payload carries, beside the event's own fields, the cart view as of that
version (``{"event": …, "view": …}``): the projection writes whole views with a
compare-and-set on the version, and every WebSocket update carries the full cart (ADR 0004).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import asyncpg
import msgspec
from sqlalchemy import func, insert, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.persistence.tables import outbox
from domain.events import DomainEvent, event_to_dict
from realtime.cart_view import CartView

NOTIFY_CHANNEL: Final = "teamcart_outbox"
"""Notified by the ``outbox_notify`` trigger on every insert into the outbox."""
_DISPATCH_LOCK_CLASS: Final = 0x7EA_CA27  # the advisory-lock namespace of outbox dispatch


_APPEND = insert(outbox).values(created_at=func.clock_timestamp())  # built once: every command


async def append_events(
    conn: AsyncConnection, events: Sequence[DomainEvent], view: CartView | None = None
) -> None:
    """Append events; ``view`` is the aggregate's view after the command, stamped per event."""
    if not events:
        return
    await conn.execute(
        _APPEND,
        [
            {
                "aggregate_type": event.aggregate_type,
                "aggregate_id": event.aggregate_id,
                "version": event.aggregate_version,
                "event_type": event.name,
                "payload": {
                    "event": event_to_dict(event),
                    "view": None
                    if view is None
                    else msgspec.to_builtins(
                        msgspec.structs.replace(view, version=event.aggregate_version)
                    ),
                },
            }
            for event in events
        ],
    )


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


@dataclass(frozen=True, slots=True)
class Claim:
    records: list[OutboxRecord]
    """Claimed rows, each aggregate's in version order, none missing before them."""
    scanned: int
    """Undispatched rows looked at (``limit`` means there may be more)."""
    deferred: int
    """Rows left alone because another transaction holds their aggregate or an earlier row."""


# One round trip: lock up to $1 rows (SKIP LOCKED), try each of their aggregates' advisory
# lock (namespace $2), and give each claimed aggregate's oldest undispatched version (its
# "head"; NULL when another transaction holds the aggregate).
_CLAIM = """
WITH claimed AS MATERIALIZED (
    SELECT id, aggregate_type, aggregate_id, version, event_type, payload::text AS payload,
           created_at
      FROM outbox
     WHERE dispatched_at IS NULL
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
    version on, without a hole, are kept: a cart's events are never handled out of order,
    nor by two processes at once.
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
