"""The transactional outbox: events are written in the same transaction as the state they
describe, so a committed change always has its events, and a rolled-back one never does.

The dispatcher (``app.dispatcher``) reads undispatched rows in id order. ``(aggregate_type,
aggregate_id, version)`` is unique, so an event can't be stored twice. Appending also sends
``NOTIFY teamcart_outbox``, which PostgreSQL delivers when (and only if) the transaction
commits, so every process's dispatcher wakes at once. ``created_at`` is the clock at the
insert, the transaction's last statement: the dispatch latency is measured from it.

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
from datetime import datetime
from typing import Any, Final

import msgspec
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence.tables import outbox
from domain.events import DomainEvent, event_to_dict
from realtime.cart_view import CartView

NOTIFY_CHANNEL: Final = "teamcart_outbox"
_DISPATCH_LOCK_CLASS: Final = 0x7EA_CA27  # the advisory-lock namespace of outbox dispatch


async def append_events(
    conn: AsyncConnection, events: Sequence[DomainEvent], view: CartView | None = None
) -> None:
    """Append events; ``view`` is the aggregate's view after the command, stamped per event."""
    if not events:
        return
    await conn.execute(
        insert(outbox).values(created_at=func.clock_timestamp()),
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
    await conn.execute(select(func.pg_notify(NOTIFY_CHANNEL, "")))


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    id: int
    aggregate_type: str
    aggregate_id: str
    version: int
    event_type: str
    payload: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Claim:
    records: list[OutboxRecord]
    """Claimed rows, each aggregate's in version order, none missing before them."""
    scanned: int
    """Undispatched rows looked at (``limit`` means there may be more)."""
    deferred: int
    """Rows left alone because another transaction holds their aggregate or an earlier row."""


_HEADS = text(
    """
    SELECT k.aggregate_type, k.aggregate_id,
           (SELECT min(o.version) FROM outbox o
             WHERE o.aggregate_type = k.aggregate_type
               AND o.aggregate_id = k.aggregate_id::uuid
               AND o.dispatched_at IS NULL) AS head
      FROM unnest(CAST(:types AS text[]), CAST(:ids AS text[])) AS k(aggregate_type, aggregate_id)
     WHERE pg_try_advisory_xact_lock(:lock_class, hashtext(k.aggregate_type || k.aggregate_id))
    """
)


async def claim_undispatched(conn: AsyncConnection, limit: int) -> Claim:
    """Claim up to ``limit`` undispatched rows, oldest first, until this transaction ends.

    Rows are locked ``FOR UPDATE SKIP LOCKED``, so concurrent claimers take different rows.
    Then each aggregate is claimed with a transaction-scoped advisory lock, and only its rows
    from its oldest undispatched version on, without a hole, are kept: a cart's events are
    never handled out of order, nor by two processes at once.
    """
    rows = (
        await conn.execute(
            select(
                outbox.c.id,
                outbox.c.aggregate_type,
                outbox.c.aggregate_id,
                outbox.c.version,
                outbox.c.event_type,
                outbox.c.payload,
                outbox.c.created_at,
            )
            .where(outbox.c.dispatched_at.is_(None))
            .order_by(outbox.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not rows:
        return Claim([], 0, 0)
    by_aggregate: dict[tuple[str, str], list[OutboxRecord]] = {}
    for row in rows:
        record = OutboxRecord(
            id=row.id,
            aggregate_type=row.aggregate_type,
            aggregate_id=str(row.aggregate_id),
            version=row.version,
            event_type=row.event_type,
            payload=row.payload,
            created_at=row.created_at,
        )
        by_aggregate.setdefault((record.aggregate_type, record.aggregate_id), []).append(record)
    keys = list(by_aggregate)
    heads = await conn.execute(
        _HEADS,
        {
            "types": [aggregate_type for aggregate_type, _ in keys],
            "ids": [aggregate_id for _, aggregate_id in keys],
            "lock_class": _DISPATCH_LOCK_CLASS,
        },
    )
    claimed: list[OutboxRecord] = []
    for aggregate_type, aggregate_id, head in heads:
        expected = head
        for record in sorted(by_aggregate[(aggregate_type, aggregate_id)], key=_version):
            if record.version != expected:
                break
            claimed.append(record)
            expected += 1
    return Claim(claimed, len(rows), len(rows) - len(claimed))


def _version(record: OutboxRecord) -> int:
    return record.version


async def mark_dispatched(conn: AsyncConnection, ids: Sequence[int]) -> None:
    if ids:
        await conn.execute(
            update(outbox).where(outbox.c.id.in_(ids)).values(dispatched_at=func.now())
        )
