"""The order socket's feed: an order's updates on channel ``order:{id}``, in version order.

The cart sockets' protocol with ``order`` in place of ``cart`` (API.md § Orders): first
``{type: "snapshot", version, order}``, then ``{type: "update", version, event, order}`` with
versions rising by exactly one. Orders change a few times in their life, so there is no view
model: the snapshot is read from PostgreSQL (by the caller's ``load``), and each update is the
committed outbox payload (the order as of that event), published once by whichever process
dispatches it (:func:`update_frame`).

A socket's watch (:class:`OrderWatch`) subscribes first, proves the subscription live with a
probe that must come back through Redis (a ``SUBSCRIBE`` may be processed after a ``PUBLISH``
sent later from another connection), then reads and sends the snapshot; frames that arrived
meanwhile wait in its queue and are filtered by the snapshot's version. A frame more than one
version ahead means one was missed (published while the link was reconnecting): the watch
reads a fresh snapshot instead. :meth:`OrderWatch.next_text` does no socket I/O, so the rules
are tested without sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

import msgspec

PROBE_TIMEOUT_SECONDS: Final = 10.0
MAX_QUEUED: Final = 64
"""Frames a socket may fall behind before it is sent a fresh snapshot instead."""


def order_channel(order_id: str) -> str:
    return f"order:{order_id}"


class Link(Protocol):
    """What the feed needs of the pub/sub link (``realtime.pubsub.RedisChannelLink``)."""

    async def subscribe(self, channel: str, deliver: Callable[[bytes], None]) -> object: ...

    async def unsubscribe(self, subscription: object) -> None: ...

    async def publish(self, channel: str, data: bytes) -> None: ...


class _Payload(msgspec.Struct):
    """The part of an order's outbox payload the feed reads (``app.use_cases.order_views``)."""

    event: str
    version: int
    order: msgspec.Raw


class _Update(msgspec.Struct, tag="update", tag_field="type"):
    version: int
    event: str
    order: msgspec.Raw


class _Snapshot(msgspec.Struct, tag="snapshot", tag_field="type"):
    version: int
    order: msgspec.Raw


class _Probe(msgspec.Struct, tag="probe", tag_field="type"):
    nonce: str


_frame_decoder = msgspec.json.Decoder(_Update | _Probe)
_payload_decoder = msgspec.json.Decoder(_Payload)
_encoder = msgspec.json.Encoder()


def update_frame(payload: str) -> tuple[int, bytes]:
    """The update an order event's outbox payload becomes on the channel, with its version."""
    decoded = _payload_decoder.decode(payload)
    return decoded.version, _encoder.encode(
        _Update(version=decoded.version, event=decoded.event, order=decoded.order)
    )


def snapshot_text(version: int, order_json: bytes) -> str:
    return _encoder.encode(_Snapshot(version=version, order=msgspec.Raw(order_json))).decode()


Load = Callable[[], Awaitable[tuple[int, bytes] | None]]
"""The order's version and view (JSON) as PostgreSQL has it now; ``None`` once it is gone."""


class OrderWatch:
    """One socket's view of one order's channel (see the module docstring)."""

    def __init__(self, link: Link, order_id: str, load: Load) -> None:
        self._link = link
        self._channel = order_channel(order_id)
        self._load = load
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._probe_nonce = secrets.token_hex(8)
        self._subscription: object | None = None
        self._resync = False
        self._gone = False
        self.version = 0

    def _deliver(self, data: bytes) -> None:
        if self._queue.qsize() >= MAX_QUEUED:
            self._resync = True  # far behind: a snapshot catches it up
            return
        self._queue.put_nowait(data)

    async def open(self) -> str | None:
        """Subscribe, prove it, and the snapshot's text (``None``: no such order)."""
        self._subscription = await self._link.subscribe(self._channel, self._deliver)
        probe = _encoder.encode(_Probe(nonce=self._probe_nonce))
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            while True:
                await self._link.publish(self._channel, probe)
                if await self._wait_for_probe(0.2):
                    break
        return await self._snapshot()

    async def _wait_for_probe(self, seconds: float) -> bool:
        """Whether the probe came back within ``seconds``. Updates ahead of it are dropped:
        each was published after its commit, so the snapshot read next holds it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(left):
                    data = await self._queue.get()
            except TimeoutError:
                return False
            frame = _frame_decoder.decode(data)
            if isinstance(frame, _Probe) and frame.nonce == self._probe_nonce:
                return True
        return False

    async def _snapshot(self) -> str | None:
        loaded = await self._load()
        if loaded is None:
            return None
        self.version, order_json = loaded
        return snapshot_text(self.version, order_json)

    @property
    def gone(self) -> bool:
        return self._gone

    def disconnected(self) -> None:
        """The client left: the sender's wait ends (``next_text`` answers ``None``)."""
        self._gone = True
        self._queue.put_nowait(b"")

    def resync(self) -> None:
        """The client asked for a fresh snapshot: it is the next text."""
        self._resync = True
        self._queue.put_nowait(b"")

    async def next_text(self) -> str | None:
        """The next text for the socket: an update one version on, or a snapshot after a gap
        or a ``resync``; ``None`` once the order is gone."""
        while True:
            data = await self._queue.get()
            if self._gone:
                return None
            if self._resync:
                self._resync = False
                return await self._snapshot()
            if not data:
                continue
            frame = _frame_decoder.decode(data)
            if not isinstance(frame, _Update) or frame.version <= self.version:
                continue  # a probe, or an update the snapshot already holds
            if frame.version == self.version + 1:
                self.version = frame.version
                return data.decode()
            return await self._snapshot()  # one was missed

    async def close(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._link.unsubscribe(self._subscription)
            self._subscription = None


class Record(Protocol):
    """What the feed reads of an outbox record (``app.persistence.outbox.OutboxRecord``)."""

    @property
    def aggregate_type(self) -> str: ...

    @property
    def aggregate_id(self) -> str: ...

    @property
    def payload(self) -> str: ...


def publish_order_updates(link: Link) -> Callable[[Record], Awaitable[None]]:
    """The outbox consumer that publishes each order event on its order's channel (at least
    once: sockets drop what their version already holds)."""

    async def publish(record: Record) -> None:
        if record.aggregate_type != "order":
            return
        _, frame = update_frame(record.payload)
        await link.publish(order_channel(record.aggregate_id), frame)

    return publish
