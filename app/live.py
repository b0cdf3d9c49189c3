"""The real-time parts of one server process, assembled: the Redis view model, presence, the
projection, the outbox dispatcher, the WebSocket hub and its Redis pub/sub link.

``realtime`` knows nothing of Litestar or the database; this module gives its hub a
:class:`~realtime.pubsub.RedisChannelLink` on the process's Redis client (which tells the hub
to resync every socket after a dropped connection), the projection a loader that rebuilds a
view from PostgreSQL, and the hub its Prometheus metrics.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from prometheus_client import Counter, Gauge
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from app.dispatcher import OutboxDispatcher, project_outbox_record
from app.persistence.carts import read_cart
from realtime.cart_view import CartView, cart_view
from realtime.hub import Hub
from realtime.presence import PresenceStore
from realtime.projection import Projection
from realtime.pubsub import RedisChannelLink
from realtime.view_store import ViewStore

WS_CONNECTIONS = Gauge(
    "teamcart_websocket_connections",
    "Open cart WebSockets (summed over live worker processes).",
    multiprocess_mode="livesum",
)
WS_MESSAGES = Counter("teamcart_websocket_messages_sent", "Messages sent to cart WebSockets.")
WS_SLOW_DISCONNECTS = Counter(
    "teamcart_websocket_slow_disconnects",
    "WebSocket clients disconnected for falling a whole backlog behind.",
)
PUBSUB_RECONNECTS = Counter(
    "teamcart_redis_pubsub_reconnects",
    "Times this process's Redis pub/sub connection was lost and replaced, every watched "
    "channel resubscribed (each time, every socket of the process is sent a fresh snapshot).",
)


class PrometheusHubObserver:
    def connection_opened(self) -> None:
        WS_CONNECTIONS.inc()

    def connection_closed(self) -> None:
        WS_CONNECTIONS.dec()

    def message_sent(self) -> None:
        WS_MESSAGES.inc()

    def slow_client_disconnected(self) -> None:
        WS_SLOW_DISCONNECTS.inc()


@dataclass(slots=True)
class Live:
    """Everything real-time a process holds."""

    link: RedisChannelLink
    views: ViewStore
    presence: PresenceStore
    projection: Projection
    hub: Hub
    dispatcher: OutboxDispatcher
    engine: AsyncEngine

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Receive the carts' channels, dispatch the outbox (relaying this process's own
        commands' events at once) and keep presence alive (the app's lifespan)."""
        async with self.link.running(), self.dispatcher.running(), self.hub.running():
            yield


def build_live(engine: AsyncEngine, redis: Redis, database_url: str) -> Live:
    """Assemble the real-time parts on the process's engine and Redis client."""

    async def load_view(cart_id: str) -> CartView | None:
        async with engine.connect() as conn:
            cart = await read_cart(conn, cart_id)
        return None if cart is None else cart_view(cart)

    def resync_all() -> None:
        PUBSUB_RECONNECTS.inc()
        hub.resync_all()  # the link lost its connection a while: every socket gets a snapshot

    link = RedisChannelLink(redis, on_reconnect=resync_all)
    views = ViewStore(redis)
    presence = PresenceStore(redis)

    async def broadcast(cart_id: str, frame: bytes) -> None:
        await hub.broadcast(cart_id, frame)  # this process's sockets first, then Redis

    projection = Projection(views, broadcast, load_view)
    hub = Hub(projection, presence, link, observer=PrometheusHubObserver())
    dispatcher = OutboxDispatcher(database_url, project_outbox_record(projection))
    return Live(link, views, presence, projection, hub, dispatcher, engine)
