"""The projection: committed cart events → the Redis view model → channel ``teamcart:{id}``.

Each outbox row of a cart carries the whole cart view as of its version (ADR 0004), so
projecting an event is one compare-and-set (:meth:`ViewStore.apply`):

- ``applied``: the view moved from ``v-1`` to ``v``; the update is published with the
  members online now overlaid, for every process's hub to forward (the publisher the app
  passes in hands it to this process's own sockets first).
- ``duplicate``: the view is already at ``v`` or newer (a redelivery, or a rebuild got there
  first). At exactly ``v`` the update is published again: the first delivery may have
  written the view and then failed before publishing, and every client stream drops a
  version it already has. Past ``v``, nothing happens.
- ``gap``: the view is older than ``v-1`` or missing (expired, Redis restarted, an event went
  astray). A view that is present but behind is most likely being caught up right now by
  the processes that committed the versions between (each projects its own commands'
  events), so the event is retried for a few milliseconds first. Then the view is rebuilt
  from PostgreSQL through the injected loader and written only if newer, and the rebuilt
  view is published as a snapshot frame, which a subscriber's stream forwards only if it is
  ahead of what that client has.

Reads (:meth:`Projection.current`) serve the stored view and rebuild it on a miss. Delivery
is at-least-once and the handler is idempotent by version, so the dispatcher may retry
freely. Nothing here imports ``app``: the loader and the publisher are passed in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from domain.events import DomainEvent, event_to_dict
from domain.teamcart import TeamCart
from realtime.cart_view import CartView, cart_view
from realtime.protocol import Snapshot, snapshot_frame, update_frame, update_message
from realtime.view_store import Outcome, ViewStore

log = logging.getLogger("teamcart.realtime.projection")

GAP_PATIENCE = (0.002, 0.005, 0.01)
"""Pauses before retrying an event whose view is present but behind; then it rebuilds."""

ViewLoader = Callable[[str], Awaitable[CartView | None]]
"""Builds a cart's view from the source of truth; ``None`` when the cart does not exist."""
Publish = Callable[[str, bytes], Awaitable[None]]
"""Publishes a hub frame for a cart (its id, the frame) on the cart's channel."""


class OutboxPayload(msgspec.Struct):
    """The payload of an event's outbox row, as :func:`outbox_payloads` writes it and the
    projection reads it."""

    event: dict[str, Any] = msgspec.field(default_factory=dict)
    view: CartView | None = None


_encoder = msgspec.json.Encoder()


def outbox_payloads(events: Sequence[DomainEvent], cart: TeamCart | None) -> list[str]:
    """The outbox payloads (JSON text) of an aggregate's events: each event's fields and, for
    a cart, the cart's view after the command, stamped with that event's version. Encoded
    once; the relayed records carry the same text."""
    view = None if cart is None else cart_view(cart)
    return [
        _encoder.encode(
            OutboxPayload(
                event=event_to_dict(event),
                view=None
                if view is None
                else msgspec.structs.replace(view, version=event.aggregate_version),
            )
        ).decode()
        for event in events
    ]


_view_decoder = msgspec.json.Decoder(CartView)
_payload_decoder = msgspec.json.Decoder(OutboxPayload)


def channel_for(cart_id: str) -> str:
    return f"teamcart:{cart_id}"


def with_presence(view: CartView, online: Collection[str]) -> CartView:
    """The view with each member's ``online`` flag set from presence."""
    return msgspec.structs.replace(
        view,
        members=[
            msgspec.structs.replace(member, online=member.user_id in online)
            for member in view.members
        ],
    )


@dataclass(frozen=True, slots=True)
class LiveView:
    """A cart view with presence overlaid, as served to members."""

    version: int
    cart: CartView
    online: frozenset[str]


class Projection:
    def __init__(self, views: ViewStore, publish: Publish, load_view: ViewLoader) -> None:
        self.views = views
        self._publish = publish
        self._load_view = load_view

    async def project(
        self,
        cart_id: str,
        version: int,
        event_type: str,
        payload: str | bytes,
    ) -> Outcome:
        """Apply one committed event: an outbox row's payload ``{"event", "view"}``, as the
        JSON text the dispatcher reads.

        A payload without a view, or one this code cannot read (written by another version
        of it, or damaged), is not retried forever, holding up the cart's later events: the
        view is rebuilt from PostgreSQL instead, as for a gap."""
        try:
            decoded = _payload_decoder.decode(payload)
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
            log.warning("unreadable payload of teamcart:%s v%d: %s", cart_id, version, exc)
            decoded = OutboxPayload()
        view = decoded.view
        if view is None:
            await self.rebuild(cart_id)
            return Outcome.GAP
        if view.version != version:
            view = msgspec.structs.replace(view, version=version)
        view_json = _encoder.encode(view)
        result = await self.views.apply(cart_id, version, view_json, view.status)
        for pause in GAP_PATIENCE:
            if not 0 < result.stored_version < version - 1:
                break
            # The view is only behind: the versions between are most likely being projected
            # by the processes that committed them right now. Give them a moment before a
            # rebuild, which would turn their updates into a snapshot.
            await asyncio.sleep(pause)
            result = await self.views.apply(cart_id, version, view_json, view.status)
        if result.outcome is Outcome.GAP:
            await self.rebuild(cart_id)
            return Outcome.GAP
        if result.outcome is Outcome.DUPLICATE and result.stored_version != version:
            return Outcome.DUPLICATE
        # Applied now, or (a redelivery) applied before by a delivery that may have failed
        # to publish: publish it (again; every stream drops a version it already has).
        cart = with_presence(view, result.online)
        message = update_message(version, event_type, decoded.event, cart)
        await self._publish(cart_id, update_frame(message))
        return Outcome.APPLIED if result.outcome is Outcome.APPLIED else Outcome.DUPLICATE

    async def rebuild(self, cart_id: str) -> LiveView | None:
        """Rebuild the view from the source of truth; write and publish it if newer."""
        view = await self._load_view(cart_id)
        if view is None:
            return None
        result = await self.views.write_if_newer(
            cart_id, view.version, _encoder.encode(view), view.status
        )
        cart = with_presence(view, result.online)
        if result.written:
            await self._publish(cart_id, snapshot_frame(Snapshot(version=view.version, cart=cart)))
        return LiveView(view.version, cart, result.online)

    async def current(self, cart_id: str) -> LiveView | None:
        """The stored view with presence, rebuilt on a miss; ``None``: no such cart."""
        stored = await self.views.read(cart_id)
        if stored is None:
            return await self.rebuild(cart_id)
        view = _view_decoder.decode(stored.view_json)
        return LiveView(stored.version, with_presence(view, stored.online), stored.online)
