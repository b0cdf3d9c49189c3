"""The transactional outbox: events are written in the same transaction as the state they
describe, so a committed change always has its events, and a rolled-back one never does.

The dispatcher reads undispatched rows in id order. ``(aggregate_type, aggregate_id,
version)`` is unique, so an event can't be stored twice.

A cart event's payload carries, beside the event's own fields, the cart view as of that
version (``{"event": …, "view": …}``): the projection writes whole views with a
compare-and-set on the version, and every WebSocket update carries the full cart (ADR 0004).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence.tables import outbox
from domain.events import DomainEvent, event_to_dict
from realtime.cart_view import CartView


async def append_events(
    conn: AsyncConnection, events: Sequence[DomainEvent], view: CartView | None = None
) -> None:
    """Append events; ``view`` is the aggregate's view after the command, stamped per event."""
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
