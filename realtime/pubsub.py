"""Cross-process pub/sub for the hub, on redis-py's asyncio ``PubSub``, reconnected when it drops.

:class:`RedisChannelLink` is the :class:`~realtime.hub.ChannelLink` of a server process: one
pub/sub connection for every channel the process watches, read by one receiving task that
hands each message to the callbacks subscribed to its channel (they never block). Publishing
is a plain ``PUBLISH`` on the process's Redis client.

- Subscribes and unsubscribes go one at a time (a lock), and a channel's callbacks are
  registered before its ``SUBSCRIBE`` is sent, so nothing that arrives while subscribing is
  lost. A channel is forgotten (and unsubscribed) when its last subscriber leaves: a
  long-running process does not grow with every cart it ever watched.
- When the connection drops (Redis killed or restarted, a network error, or no answer to a
  ``PING`` on an idle connection), the receiving task opens a new one after a short backoff
  (50 ms, doubling to 2 s; one warning per attempt, no traceback), subscribes every channel
  still watched, waits until Redis has confirmed each, and only then calls ``on_reconnect``:
  whatever was published meanwhile is lost, and from that moment on nothing more is, so a
  snapshot read after the call is complete (the hub sends every socket a fresh one).

The Redis client must not retry on its own (redis-py's default): a client that reconnects
inside a command would resubscribe behind the link's back, and nobody would be told.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, KeysView
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

log = logging.getLogger("teamcart.realtime.pubsub")

POLL_SECONDS: Final = 1.0
"""How long one read waits for a message before the receiver looks at the connection's age."""
KEEPALIVE_SECONDS: Final = 5.0
"""A connection that brought nothing for this long is sent a ``PING``..."""
PONG_TIMEOUT_SECONDS: Final = 10.0
"""...and counts as dropped if nothing comes back within this (a silently dead network)."""
FIRST_RETRY_SECONDS: Final = 0.05
MAX_RETRY_SECONDS: Final = 2.0
OPEN_TIMEOUT_SECONDS: Final = 5.0
"""Connecting and resubscribing, under the lock that subscribers wait on."""
SEND_TIMEOUT_SECONDS: Final = 2.0
CLOSE_TIMEOUT_SECONDS: Final = 1.0
SUBSCRIBE_BATCH: Final = 500
"""Channels per ``SUBSCRIBE`` when resubscribing."""

Deliver = Callable[[bytes], None]


class Subscription:
    """What :meth:`RedisChannelLink.subscribe` returns: one subscriber of one channel."""

    __slots__ = ("channel", "deliver")

    def __init__(self, channel: str, deliver: Deliver) -> None:
        self.channel = channel
        self.deliver = deliver


class ConnectionDropped(Exception):
    """The pub/sub connection is gone, or stopped answering."""


class RedisChannelLink:
    """:class:`realtime.hub.ChannelLink` over one redis-py ``PubSub`` per process.

    ``on_reconnect`` is called (synchronously, in the receiving task) once a dropped
    connection has been replaced and every watched channel is subscribed again. Receiving
    happens while :meth:`running` is open (the app's lifespan).
    """

    def __init__(
        self,
        redis: Redis,
        *,
        on_reconnect: Callable[[], None] | None = None,
        first_retry_seconds: float = FIRST_RETRY_SECONDS,
        max_retry_seconds: float = MAX_RETRY_SECONDS,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
        pong_timeout_seconds: float = PONG_TIMEOUT_SECONDS,
    ) -> None:
        self._redis = redis
        self._on_reconnect = on_reconnect
        self._first_retry = first_retry_seconds
        self._max_retry = max_retry_seconds
        self._keepalive = keepalive_seconds
        self._pong_timeout = pong_timeout_seconds
        self._lock = asyncio.Lock()  # every command sent on the pub/sub connection
        self._watched: dict[str, tuple[Subscription, ...]] = {}
        self._wanted = asyncio.Event()  # set when a channel is watched
        self._pubsub: PubSub | None = None  # the live connection; None while there is none
        self._unconfirmed: int | None = None  # resubscriptions Redis has yet to confirm
        self._resync_pending = False  # a connection was lost: call on_reconnect once back

    @property
    def channels(self) -> KeysView[str]:
        """The channels watched now (each with one or more subscribers)."""
        return self._watched.keys()

    @property
    def connected(self) -> bool:
        return self._pubsub is not None

    async def subscribe(self, channel: str, deliver: Deliver) -> object:
        """Call ``deliver`` with every message on ``channel`` from now on; a handle for
        :meth:`unsubscribe`. Without a connection just now, the channel is subscribed when
        the receiving task has one again."""
        subscription = Subscription(channel, deliver)
        async with self._lock:
            current = self._watched.get(channel)
            self._watched[channel] = (*current, subscription) if current else (subscription,)
            self._wanted.set()
            if not current and (pubsub := self._pubsub) is not None:
                await self._send(pubsub, lambda: pubsub.subscribe(channel))
        return subscription

    async def unsubscribe(self, subscription: object) -> None:
        assert isinstance(subscription, Subscription)
        channel = subscription.channel
        async with self._lock:
            current = self._watched.get(channel, ())
            if subscription not in current:
                return
            rest = tuple(other for other in current if other is not subscription)
            if rest:
                self._watched[channel] = rest
                return
            del self._watched[channel]
            if (pubsub := self._pubsub) is not None:
                await self._send(pubsub, lambda: pubsub.unsubscribe(channel))

    async def publish(self, channel: str, data: bytes) -> None:
        await self._redis.publish(channel, data)

    async def _send(self, pubsub: PubSub, command: Callable[[], Awaitable[object]]) -> None:
        """Send a command on the pub/sub connection (the lock held). A failure only drops
        the connection: the receiving task opens a new one with every channel then watched."""
        try:
            async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                await command()
        except (RedisError, OSError, TimeoutError) as error:
            log.debug("a redis pub/sub command failed: %r", error)
            if self._pubsub is pubsub:
                self._pubsub = None  # the receiving task sees it and reconnects

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Receive, and reconnect when needed, while the context is open."""
        task = asyncio.create_task(self._receive_forever(), name="redis-pubsub-receiver")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            async with self._lock:
                pubsub, self._pubsub = self._pubsub, None
            if pubsub is not None:
                await _close_quietly(pubsub)

    async def _receive_forever(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self._first_retry
        while True:
            while not self._watched:  # no connection until something is watched
                self._wanted.clear()
                await self._wanted.wait()
            started = loop.time()
            try:
                pubsub = await self._open()
            except Exception as error:
                self._resync_pending = True
                log.warning(
                    "redis pub/sub reconnect failed (%r); next attempt in %.2f s", error, delay
                )
            else:
                if pubsub is None:
                    continue
                try:
                    await self._receive(pubsub)
                except Exception as error:
                    self._resync_pending = True
                    if loop.time() - started >= self._max_retry:
                        delay = self._first_retry  # it had been up a while: retry quickly
                    log.warning(
                        "redis pub/sub connection lost (%r); resubscribing %d channels in %.2f s",
                        error,
                        len(self._watched),
                        delay,
                    )
                finally:
                    await self._discard(pubsub)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_retry)

    async def _open(self) -> PubSub | None:
        """A new connection subscribed to every watched channel (``None``: none is)."""
        async with self._lock:
            channels = list(self._watched)
            if not channels:
                return None
            pubsub = self._redis.pubsub()
            try:
                async with asyncio.timeout(OPEN_TIMEOUT_SECONDS):
                    for start in range(0, len(channels), SUBSCRIBE_BATCH):
                        await pubsub.subscribe(*channels[start : start + SUBSCRIBE_BATCH])
            except BaseException:
                await _close_quietly(pubsub)
                raise
            self._pubsub = pubsub
            self._unconfirmed = len(channels) if self._resync_pending else None
        if self._resync_pending:
            log.info("redis pub/sub reconnected; %d channels resubscribed", len(channels))
        return pubsub

    async def _discard(self, pubsub: PubSub) -> None:
        async with self._lock:
            if self._pubsub is pubsub:
                self._pubsub = None
            self._unconfirmed = None
        await _close_quietly(pubsub)

    async def _receive(self, pubsub: PubSub) -> None:
        """Hand on every message until the connection fails (this only ever raises)."""
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged: float | None = None
        while pubsub is self._pubsub:
            message = await pubsub.get_message(timeout=POLL_SECONDS)
            now = loop.time()
            if message is not None:
                heard, pinged = now, None
                self._handle(message)
            elif pinged is not None:
                if now - pinged >= self._pong_timeout:
                    raise ConnectionDropped(f"no answer to PING in {self._pong_timeout:g} s")
            elif now - heard >= self._keepalive:
                pinged = now
                async with self._lock:
                    if pubsub is self._pubsub:
                        await self._send(pubsub, pubsub.ping)
        raise ConnectionDropped("a command on the connection failed")

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "message":
            channel = message["channel"]
            name = channel.decode() if isinstance(channel, bytes) else channel
            for subscription in self._watched.get(name, ()):
                try:
                    subscription.deliver(message["data"])
                except Exception:
                    log.exception("a pub/sub subscriber of %s failed", name)
        elif kind == "subscribe" and self._unconfirmed is not None:
            # Redis answers commands on a connection in order: the first confirmations after
            # a reconnect are those of the resubscriptions.
            self._unconfirmed -= 1
            if self._unconfirmed <= 0:
                self._unconfirmed = None
                self._resubscribed()

    def _resubscribed(self) -> None:
        """Every watched channel is live again: what was published meanwhile is lost."""
        self._resync_pending = False
        if self._on_reconnect is not None:
            try:
                self._on_reconnect()
            except Exception:
                log.exception("the pub/sub on_reconnect callback failed")


async def _close_quietly(pubsub: PubSub) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it bare
