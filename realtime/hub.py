"""The hub: this process's WebSocket subscribers, fed from channel ``teamcart:{id}``.

Every process runs one :class:`Hub`. Sockets watching the same cart share a *room*, and a
room holds the process's one subscription to the cart's channel (through a
:class:`ChannelLink`: :class:`realtime.pubsub.RedisChannelLink` in the app; the process that
projects a frame also hands it to its own room at once, and each stream drops the copy that
comes back). A frame arriving on the channel is decoded once and
offered to each socket's :class:`~realtime.protocol.ClientStream`; each socket is written by
its own short-lived task, so a slow socket only ever delays itself. A socket whose backlog
overflows is dropped from the room at once and closed with 4408 (the close frame goes out
whenever the client reads again).

Connecting follows the protocol's order: subscribe (and publish a probe on the channel until
it comes back: Redis may process a SUBSCRIBE after a PUBLISH sent later on another
connection, so only a returned probe proves the subscription live), mark the user online,
then read and send the snapshot; frames arriving meanwhile wait behind it and are filtered by
its version. When the link has lost its subscriptions for a while (its Redis connection
dropped and came back), :meth:`Hub.resync_all` sends every socket a fresh snapshot, in order
with the rest, as if each had asked for a ``resync``.

The hub also keeps presence (:mod:`realtime.presence`) alive: every ``heartbeat_seconds`` it
refreshes the entries of its live sockets, a pipeline per 20 carts with the pipelines spread
evenly over the period, and pushes a ``presence`` message for every cart whose set of online
users changed (entries of dead processes expiring).

Why one module of this length: the hub, its rooms and their connections are one mechanism
(fan-out with a bounded stream per socket); apart, each would be read only with the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final, Protocol

from redis.exceptions import RedisError

from realtime.presence import PresenceStore, presence_member
from realtime.projection import Projection, channel_for
from realtime.protocol import (
    CLOSE_CART_NOT_FOUND,
    CLOSE_NOT_A_MEMBER,
    CLOSE_TOO_SLOW,
    CLOSE_TRY_AGAIN_LATER,
    Action,
    ClientStream,
    HubFrame,
    Snapshot,
    encode_text,
    presence_frame,
    probe_frame,
)

log = logging.getLogger("teamcart.realtime.hub")

DEFAULT_MAX_BACKLOG: Final = 64
DEFAULT_HEARTBEAT_SECONDS: Final = 3.0
PRESENCE_BATCH: Final = 20
"""Carts refreshed per Redis pipeline by the presence heartbeat (its batches are paced)."""
PROBE_TIMEOUT_SECONDS: Final = 10.0  # generous: a loaded 2-core CI machine took > 2 s
OUTAGES: Final = (RedisError, OSError, TimeoutError)
"""Failures of Redis, not of the code: logged as one warning line, without a traceback."""

SendText = Callable[[str], Awaitable[None]]
CloseSocket = Callable[[int], Awaitable[None]]


class HubUnavailable(Exception):
    """The cart's channel could not be subscribed (Redis away): try again later."""


class ChannelLink(Protocol):
    """Cross-process pub/sub on named channels (:class:`realtime.pubsub.RedisChannelLink`)."""

    async def subscribe(self, channel: str, deliver: Callable[[bytes], None]) -> object:
        """Start calling ``deliver`` with every message on ``channel``; returns a handle."""

    async def unsubscribe(self, subscription: object) -> None: ...

    async def publish(self, channel: str, data: bytes) -> None: ...


class HubObserver(Protocol):
    """Hooks for metrics; the hub itself never imports a metrics library."""

    def connection_opened(self) -> None: ...

    def connection_closed(self) -> None: ...

    def message_sent(self) -> None: ...

    def slow_client_disconnected(self) -> None: ...


class _QuietObserver:
    def connection_opened(self) -> None:
        pass

    def connection_closed(self) -> None:
        pass

    def message_sent(self) -> None:
        pass

    def slow_client_disconnected(self) -> None:
        pass


class LiveConnection:
    """One socket watching one cart: its stream and the task that writes it."""

    __slots__ = (
        "_close",
        "_closer",
        "_drain",
        "_hub",
        "_send",
        "cart_id",
        "member",
        "opened",
        "started",
        "stream",
        "user_id",
    )

    def __init__(
        self, hub: Hub, cart_id: str, user_id: str, send: SendText, close: CloseSocket
    ) -> None:
        self._hub = hub
        self._send = send
        self._close = close
        self._drain: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self.cart_id = cart_id
        self.user_id = user_id
        self.member = presence_member(user_id, secrets.token_hex(6))
        self.stream = ClientStream(user_id, hub.max_backlog)
        self.started = False
        self.opened = False

    def deliver(self, frame: HubFrame) -> None:
        if self.stream.offer(frame):
            self._kick()
        else:
            self._hub._drop_slow(self)

    def reply(self, text: str) -> None:
        self.stream.request_text(text)
        self._kick()

    def resync(self) -> None:
        self.stream.request_snapshot()
        self._kick()

    def _kick(self) -> None:
        if self._drain is None and self.started and not self.stream.closed:
            self._drain = asyncio.create_task(self._write(), name=f"ws-write-{self.cart_id}")

    async def _write(self) -> None:
        try:
            while (step := self.stream.next_action()) is not None:
                action, text, code = step
                if action is Action.SEND:
                    await self._send(text)
                    self._hub.observer.message_sent()
                elif action is Action.READ_SNAPSHOT:
                    if not await self._send_snapshot():
                        return
                else:
                    await self._close(code)
                    return
        except Exception as exc:
            # The client went away mid-send (its handler cleans up), or Redis did while
            # reading a snapshot: either way this stream is over, and a client still there is
            # told to come back later.
            log.debug("websocket write failed: %r", exc)
            self.stream.close()
            with contextlib.suppress(Exception):
                await self._close(CLOSE_TRY_AGAIN_LATER)
        finally:
            self._drain = None

    async def _send_snapshot(self) -> bool:
        live = await self._hub.projection.current(self.cart_id)
        if live is not None and all(m.user_id != self.user_id for m in live.cart.members):
            # The view can trail a just-committed join: rebuild from PostgreSQL, then decide.
            live = await self._hub.projection.rebuild(self.cart_id)
        code = 0
        if live is None:
            code = CLOSE_CART_NOT_FOUND
        elif all(member.user_id != self.user_id for member in live.cart.members):
            code = CLOSE_NOT_A_MEMBER
        if live is None or code:
            self.stream.close()
            await self._close(code)
            return False
        await self._send(encode_text(Snapshot(version=live.version, cart=live.cart)))
        self._hub.observer.message_sent()
        self.stream.snapshot_sent(live.version)
        return True

    def _cancel_writes(self) -> None:
        if self._drain is not None:
            self._drain.cancel()
            self._drain = None

    async def _close_slow(self) -> None:
        # Waits until the client reads again (or its connection is lost): a stalled socket
        # can't take a close frame, and ASGI has no way to abort a connection.
        with contextlib.suppress(Exception):
            await self._close(CLOSE_TOO_SLOW)


class _Room:
    """The sockets of this process watching one cart, and its channel subscription."""

    __slots__ = ("cart_id", "connections", "lock", "probe_nonce", "probe_seen", "subscription")

    def __init__(self, cart_id: str) -> None:
        self.cart_id = cart_id
        self.connections: set[LiveConnection] = set()
        self.lock = asyncio.Lock()
        self.subscription: object | None = None
        self.probe_nonce = ""
        self.probe_seen: asyncio.Event | None = None  # only while subscribing

    def deliver(self, data: bytes) -> None:
        """Called for every message on the channel; must never raise."""
        try:
            frame = HubFrame.decode(data)
        except Exception:
            log.exception("undecodable hub frame on teamcart:%s", self.cart_id)
            return
        if frame.kind == "probe":
            if frame.nonce == self.probe_nonce and self.probe_seen is not None:
                self.probe_seen.set()
            return
        if frame.kind == "reminder":  # for the members it names, not the whole room
            for connection in list(self.connections):
                if connection.user_id in frame.members:
                    connection.reply(frame.text)
            return
        for connection in list(self.connections):
            try:
                connection.deliver(frame)
            except Exception:
                log.exception("delivering to a websocket failed")


class Hub:
    def __init__(
        self,
        projection: Projection,
        presence: PresenceStore,
        link: ChannelLink,
        *,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
        observer: HubObserver | None = None,
    ) -> None:
        self.projection = projection
        self.presence = presence
        self.link = link
        self.max_backlog = max_backlog
        self.heartbeat_seconds = heartbeat_seconds
        self.observer: HubObserver = observer or _QuietObserver()
        self._rooms: dict[str, _Room] = {}

    @property
    def connection_count(self) -> int:
        return sum(len(room.connections) for room in self._rooms.values())

    async def connect(
        self, cart_id: str, user_id: str, send: SendText, close: CloseSocket
    ) -> LiveConnection:
        """Subscribe a member's socket: subscription, presence, then its snapshot."""
        connection = LiveConnection(self, cart_id, user_id, send, close)
        room = self._rooms.get(cart_id)
        if room is None:
            room = self._rooms[cart_id] = _Room(cart_id)
        room.connections.add(connection)
        try:
            await self._subscribe(room)
            change = await self.presence.touch(cart_id, add=[connection.member])
            if change.changed:
                await self.link.publish(channel_for(cart_id), presence_frame(change.after))
        except BaseException:
            await self.disconnect(connection)
            raise
        connection.opened = True
        self.observer.connection_opened()
        connection.started = True
        connection._kick()
        return connection

    async def broadcast(self, cart_id: str, data: bytes) -> None:
        """Publish a frame on the cart's channel for every process, handing it to this
        process's own sockets first: they need not wait for its round trip through Redis
        (each stream drops the copy that comes back through the subscription)."""
        room = self._rooms.get(cart_id)
        if room is not None:
            room.deliver(data)
        await self.link.publish(channel_for(cart_id), data)

    def resync_all(self) -> None:
        """Send every socket of this process a fresh snapshot, in order with the rest (as for
        a client's ``resync``): the link has just resubscribed after losing its connection,
        so any room may have missed updates. A socket still connecting needs none: its
        first snapshot is read once its subscription is proven live."""
        for room in list(self._rooms.values()):
            for connection in list(room.connections):
                connection.resync()

    async def disconnect(self, connection: LiveConnection) -> None:
        """The socket is gone: leave the room and presence. Safe to call twice."""
        connection.stream.close()
        connection._cancel_writes()
        if connection._closer is not None:
            connection._closer.cancel()
            connection._closer = None
        if connection.opened:
            connection.opened = False
            self.observer.connection_closed()
        if await self._leave(connection):
            await self._leave_presence(connection)

    def _drop_slow(self, connection: LiveConnection) -> None:
        """The client fell a whole backlog behind: forget it now, close it when possible."""
        log.info("disconnecting a slow websocket client of teamcart:%s", connection.cart_id)
        self.observer.slow_client_disconnected()
        connection._cancel_writes()
        connection._closer = asyncio.create_task(self._close_slow(connection))

    async def _close_slow(self, connection: LiveConnection) -> None:
        if await self._leave(connection):
            await self._leave_presence(connection)
        await connection._close_slow()

    async def _subscribe(self, room: _Room) -> None:
        async with room.lock:
            if room.subscription is not None:
                return
            channel = channel_for(room.cart_id)
            room.subscription = await self.link.subscribe(channel, room.deliver)
            room.probe_nonce = secrets.token_hex(8)
            room.probe_seen = asyncio.Event()
            try:
                async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                    await self._until_probe_returns(room, room.probe_seen, channel)
            except TimeoutError:
                subscription, room.subscription = room.subscription, None
                await self.link.unsubscribe(subscription)
                raise HubUnavailable(f"the subscription to {channel} did not come alive") from None
            finally:
                room.probe_seen = None

    async def _until_probe_returns(self, room: _Room, seen: asyncio.Event, channel: str) -> None:
        """Publish the room's probe until it comes back through the subscription.

        Sending SUBSCRIBE does not mean Redis has processed it: a message published on
        another connection right after may still miss it. A probe that comes back proves
        the subscription live, and so every update published after it will arrive.
        """
        wait = 0.005
        while True:
            await self.link.publish(channel, probe_frame(room.probe_nonce))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await seen.wait()
                return
            wait = min(wait * 2, 0.2)

    async def _leave(self, connection: LiveConnection) -> bool:
        """Leave the room (unsubscribing when it empties); ``False`` if already out."""
        room = self._rooms.get(connection.cart_id)
        if room is None or connection not in room.connections:
            return False
        room.connections.discard(connection)
        if not room.connections:
            async with room.lock:
                if not room.connections and room.subscription is not None:
                    subscription, room.subscription = room.subscription, None
                    try:
                        await self.link.unsubscribe(subscription)
                    except Exception:
                        log.exception("unsubscribing from teamcart:%s failed", room.cart_id)
            if not room.connections and self._rooms.get(room.cart_id) is room:
                del self._rooms[room.cart_id]
        return True

    async def _leave_presence(self, connection: LiveConnection) -> None:
        try:
            change = await self.presence.touch(connection.cart_id, remove=[connection.member])
            if change.changed:
                await self.link.publish(
                    channel_for(connection.cart_id), presence_frame(change.after)
                )
        except Exception:  # Redis away: the entry expires within the presence TTL anyway
            log.warning("could not remove a presence entry of teamcart:%s", connection.cart_id)

    async def refresh_presence(self, spread_over: float = 0.0) -> None:
        """Refresh this process's presence entries; push every change of who is online.

        Carts go to Redis ``PRESENCE_BATCH`` at a time, one pipeline each, and the batches
        are spread evenly over ``spread_over`` seconds: packing and parsing a pipeline is CPU
        work that holds the event loop, so one pipeline for all 500 carts of
        bench/fanout.py, or all their batches back to back, held every socket's updates
        back at each heartbeat (ADR 0004).
        """
        carts = list(self._rooms)
        batches = [carts[i : i + PRESENCE_BATCH] for i in range(0, len(carts), PRESENCE_BATCH)]
        pause = spread_over / len(batches) if batches else 0.0
        for n, batch in enumerate(batches):
            if n and pause:
                await asyncio.sleep(pause)
            members = {
                cart_id: live
                for cart_id in batch
                if (room := self._rooms.get(cart_id)) is not None
                and (live := [c.member for c in room.connections if not c.stream.closed])
            }
            changes = await self.presence.refresh(members)
            for cart_id, change in changes.items():
                if change.changed:
                    await self.link.publish(channel_for(cart_id), presence_frame(change.after))

    async def _heartbeat_forever(self) -> None:
        """Every cart's entries once per ``heartbeat_seconds``, its batches paced over it."""
        loop = asyncio.get_running_loop()
        while True:
            next_round = loop.time() + self.heartbeat_seconds
            try:
                await self.refresh_presence(spread_over=self.heartbeat_seconds)
            except OUTAGES as exc:  # Redis away: one line a round, no traceback
                log.warning("presence heartbeat failed (%r); retried next round", exc)
            except Exception:
                log.exception("presence heartbeat failed")
            await asyncio.sleep(max(0.0, next_round - loop.time()))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Keep presence alive while the context is open (the app's lifespan)."""
        task = asyncio.create_task(self._heartbeat_forever(), name="presence-heartbeat")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
