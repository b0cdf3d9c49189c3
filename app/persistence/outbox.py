"""The transactional outbox: events are written in the same transaction as the state they
describe, so a committed change always has its events, and a rolled-back one never does.

The dispatcher (``realtime``) reads undispatched rows in id order. ``(aggregate_type,
aggregate_id, version)`` is unique, so an event can't be stored twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence.tables import outbox
from domain.events import DomainEvent, event_to_dict


async def append_events(conn: AsyncConnection, events: Sequence[DomainEvent]) -> None:
    if not events:
        return
    await conn.execute(
        insert(outbox),
        [
            {
                "aggregate_type": event.aggregate_type,
                "aggregate_id": event.aggregate_id,
                "version": event.aggregate_version,
                "event_type": event.name,
                "payload": event_to_dict(event),
            }
            for event in events
        ],
    )
