"""The real-time parts of one server process: the Redis view model, presence, the
projection, the outbox dispatcher, the WebSocket hub and its Redis pub/sub link, held
together (:class:`Live`) and run for the app's lifespan, with the hub's Prometheus metrics.

``app.wiring.build_live`` assembles them; ``realtime`` knows nothing of Litestar or the
database.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncEngine

from app.dispatcher import OutboxDispatcher
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
