"""The real-time parts of one server process, assembled: the Redis view model, presence, the
projection, the outbox dispatcher and the WebSocket hub, joined to Litestar's channels plugin.

``realtime`` knows nothing of Litestar; this module gives its hub a
:class:`~realtime.hub.ChannelLink` made of the channels plugin with its Redis Pub/Sub backend
(one plugin subscriber per watched cart per process, :class:`RoomSubscriber`), the projection
a loader that rebuilds a view from PostgreSQL, and both their Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from litestar.channels import ChannelsPlugin, Subscriber
from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from litestar.channels.subscriber import BacklogStrategy
from prometheus_client import Counter, Gauge
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from app.dispatcher import OutboxDispatcher, project_outbox_record
from app.persistence.carts import load_cart
from app.persistence.outbox import set_relay
from realtime.cart_view import CartView, cart_view
from realtime.hub import Hub
from realtime.presence import PresenceStore
from realtime.projection import Projection
from realtime.view_store import ViewStore

log = structlog.get_logger("teamcart.hub")

WATCHDOG_SECONDS = 2.0

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


class PrometheusHubObserver:
    def connection_opened(self) -> None:
        WS_CONNECTIONS.inc()

    def connection_closed(self) -> None:
        WS_CONNECTIONS.dec()

    def message_sent(self) -> None:
        WS_MESSAGES.inc()

    def slow_client_disconnected(self) -> None:
        WS_SLOW_DISCONNECTS.inc()


class RoomSubscriber(Subscriber):
    """The channels plugin's subscriber for one cart in this process: hands every message
    straight to the hub's room (which never blocks), instead of queueing it.

    It never runs the base class's sending task, so it does without its queue (four deques,
    some 3 KB for every watched cart). The plugin only calls ``put``, ``put_nowait``,
    ``is_running`` and ``stop`` on a subscriber (Litestar 2.x); the WebSocket tests go
    through subscribe, unsubscribe and shutdown on every run.
    """

    def __init__(
        self,
        plugin: ChannelsPlugin,
        max_backlog: int | None = None,
        backlog_strategy: BacklogStrategy = "backoff",
    ) -> None:
        # Deliberately not calling Subscriber.__init__: it builds the unused queue.
        self._task = None
        self._plugin = plugin
        self._backend = plugin._backend
        self.channel = ""
        self._deliver: Callable[[bytes], None] | None = None
        self._early: list[bytes] | None = []

    async def put(self, item: bytes | None) -> None:
        """The plugin puts ``None`` here to stop a sending task this subscriber never has."""
        if item is not None:
            self.put_nowait(item)

    def put_nowait(self, item: bytes | None) -> bool:
        if item is None:
            return True
        if self._deliver is not None:
            self._deliver(item)
        elif self._early is not None:  # arrived while subscribing: delivered on attach
            self._early.append(item)
        return True

    def attach(self, channel: str, deliver: Callable[[bytes], None]) -> None:
        self.channel = channel
        self._deliver = deliver
        early, self._early = self._early or [], None
        for item in early:
            deliver(item)


class ChannelsLink:
    """:class:`realtime.hub.ChannelLink` over Litestar's channels plugin.

    Subscribes and unsubscribes go one at a time: they share one redis-py ``PubSub``, whose
    ``connect()`` is not safe to race (two first subscribes each open a connection and the
    channels sent on the one it forgets never deliver).
    """

    def __init__(self, plugin: ChannelsPlugin) -> None:
        self.plugin = plugin
        self._lock = asyncio.Lock()

    async def subscribe(self, channel: str, deliver: Callable[[bytes], None]) -> object:
        async with self._lock:
            subscriber = await self.plugin.subscribe(channel)
        assert isinstance(subscriber, RoomSubscriber), "create the plugin with RoomSubscriber"
        subscriber.attach(channel, deliver)
        return subscriber

    async def unsubscribe(self, subscription: object) -> None:
        assert isinstance(subscription, RoomSubscriber)
        async with self._lock:
            await self.plugin.unsubscribe(subscription, subscription.channel)
        # The plugin keeps an (empty) entry for every channel it ever saw; drop it, or a
        # long-running process grows with every cart ever watched.
        channels: dict[str, Any] = self.plugin._channels
        if not channels.get(subscription.channel):
            channels.pop(subscription.channel, None)

    async def keep_receiving(self, interval: float = WATCHDOG_SECONDS) -> None:
        """Restart the plugin's receiving task if it died (it ends on a Redis connection
        error and never restarts; the ``PubSub`` reconnects and resubscribes on next use)."""
        while True:
            await asyncio.sleep(interval)
            task = self.plugin._sub_task
            if task is not None and task.done():
                error = None if task.cancelled() else task.exception()
                log.error("channels_receiver_died", error=repr(error))
                self.plugin._sub_task = asyncio.create_task(self.plugin._sub_worker())

    async def publish(self, channel: str, data: bytes) -> None:
        await self.plugin.wait_published(data, channel)


@dataclass(slots=True)
class Live:
    """Everything real-time a process holds; ``channels`` goes in the app's plugins."""

    channels: ChannelsPlugin
    link: ChannelsLink
    views: ViewStore
    presence: PresenceStore
    projection: Projection
    hub: Hub
    dispatcher: OutboxDispatcher
    engine: AsyncEngine

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Dispatch the outbox (relaying this process's own commands' events at once) and
        keep presence alive (the app's lifespan)."""
        watchdog = asyncio.create_task(self.link.keep_receiving(), name="channels-watchdog")
        try:
            async with self.dispatcher.running(), self.hub.running():
                set_relay(self.engine, self.dispatcher.relay)
                try:
                    yield
                finally:
                    set_relay(self.engine, None)
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog


def build_live(engine: AsyncEngine, redis: Redis, database_url: str) -> Live:
    """Assemble the real-time parts on the process's engine and Redis client."""

    async def load_view(cart_id: str) -> CartView | None:
        async with engine.connect() as conn:
            cart = await load_cart(conn, cart_id)
        return None if cart is None else cart_view(cart)

    channels = ChannelsPlugin(
        backend=RedisChannelsPubSubBackend(redis=redis),
        arbitrary_channels_allowed=True,
        subscriber_class=RoomSubscriber,
    )
    link = ChannelsLink(channels)
    views = ViewStore(redis)
    presence = PresenceStore(redis)

    async def broadcast(cart_id: str, frame: bytes) -> None:
        await hub.broadcast(cart_id, frame)  # this process's sockets first, then Redis

    projection = Projection(views, broadcast, load_view)
    hub = Hub(projection, presence, link, observer=PrometheusHubObserver())
    dispatcher = OutboxDispatcher(database_url, project_outbox_record(projection))
    return Live(channels, link, views, presence, projection, hub, dispatcher, engine)
