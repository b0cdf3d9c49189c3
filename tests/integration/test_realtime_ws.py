"""``/ws/teamcarts/{id}`` through a real uvicorn server (the ``live_server`` fixture).

Commands go through the test client's app, a second instance on the same PostgreSQL and
Redis: whichever of the two dispatchers projects an event, the update reaches the socket
through Redis, as between two processes. Every receive has a timeout.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.config import Settings
from realtime.hub import DEFAULT_HEARTBEAT_SECONDS, PRESENCE_BATCH
from realtime.presence import presence_key
from realtime.projection import channel_for
from realtime.protocol import FrameHeader, Presence, encode_frame, encode_text
from tests.builders import Client, create_product, create_store
from tests.integration.test_group_flow import open_cart, session, uid

RECEIVE_TIMEOUT = 5.0


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def ws_url(base: str, cart_id: str, headers: dict[str, str] | None = None) -> str:
    url = base.replace("http://", "ws://", 1) + f"/ws/teamcarts/{cart_id}"
    return url if headers is None else f"{url}?token={token_of(headers)}"


async def receive(ws: ClientConnection, within: float = RECEIVE_TIMEOUT) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), within))
    return message


async def receive_type(
    ws: ClientConnection, kind: str, within: float = RECEIVE_TIMEOUT
) -> dict[str, Any]:
    """The next message of one type, skipping others (presence comes and goes)."""
    async with asyncio.timeout(within):
        while (message := await receive(ws, within))["type"] != kind:
            pass
    return message


async def updates_until(
    ws: ClientConnection, version: int, within: float = RECEIVE_TIMEOUT
) -> list[dict[str, Any]]:
    """Every update and snapshot (not presence) up to and including ``version``."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while not seen or seen[-1]["version"] < version:
            message = await receive(ws, within)
            if message["type"] in {"update", "snapshot"}:
                seen.append(message)
    return seen


async def read_until_closed(ws: ClientConnection, within: float = RECEIVE_TIMEOUT) -> int:
    """Read until the server closes; the number of messages read."""
    read = 0
    async with asyncio.timeout(within):
        try:
            while True:
                await ws.recv()
                read += 1
        except ConnectionClosed:
            pass
    return read


async def close_code(ws: ClientConnection) -> int | None:
    """Read until the server closes; the close code it sent."""
    await read_until_closed(ws)
    return ws.close_code


async def cart_with_product(
    client: Client, admin: dict[str, str]
) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
    store = await create_store(client, admin)
    product = await create_product(client, admin, store["id"], option_groups=[])
    host = await session(client, "Host")
    cart = await open_cart(client, host, store["id"])
    return host, cart, product


async def join(client: Client, cart: dict[str, Any], name: str) -> dict[str, str]:
    guest = await session(client, name)
    joined = await client.post(
        "/api/v1/teamcarts/join", json={"invite_code": cart["invite_code"]}, headers=guest
    )
    assert joined.status_code == 200, joined.text
    return guest


async def test_refusals_close_with_the_protocols_codes(
    client: Client, admin_headers: dict[str, str], live_server: str
) -> None:
    host, cart, _ = await cart_with_product(client, admin_headers)
    stranger = await session(client, "Stranger")
    async with connect(ws_url(live_server, cart["id"], stranger)) as ws:
        assert await close_code(ws) == 4403
    async with connect(ws_url(live_server, str(uuid.uuid4()), host)) as ws:
        assert await close_code(ws) == 4404
    async with connect(ws_url(live_server, cart["id"]) + "?token=forged") as ws:
        assert await close_code(ws) == 4401
    async with connect(ws_url(live_server, cart["id"])) as ws:
        await ws.send(json.dumps({"type": "ping"}))  # the first message must be auth
        assert await close_code(ws) == 4401
    async with connect(ws_url(live_server, cart["id"])) as ws:  # auth as the first message
        await ws.send(json.dumps({"type": "auth", "token": token_of(host)}))
        snapshot = await receive(ws)
        assert snapshot["type"] == "snapshot"
        assert snapshot["version"] == 1
        assert snapshot["cart"]["id"] == cart["id"]


async def test_snapshot_then_every_update_in_order(
    client: Client, admin_headers: dict[str, str], live_server: str
) -> None:
    host, cart, product = await cart_with_product(client, admin_headers)
    url = f"/api/v1/teamcarts/{cart['id']}"
    async with connect(ws_url(live_server, cart["id"], host)) as ws:
        first = await receive(ws)
        assert first["type"] == "snapshot"
        assert first["version"] == 1
        assert [m["online"] for m in first["cart"]["members"]] == [True]

        guest = await join(client, cart, "Ana")  # v2
        for member in (host, guest):  # v3, v4
            added = await client.post(
                url + "/items", json={"product_id": product["id"], "quantity": 2}, headers=member
            )
            assert added.status_code == 201, added.text
        assert (await client.put(url + "/ready", json={"ready": True}, headers=guest)).is_success
        assert (await client.post(url + "/lock", headers=host)).status_code == 200  # v6
        assert (await client.post(url + "/payments/cod", headers=guest)).status_code == 200

        updates = await updates_until(ws, 7)
    assert [u["type"] for u in updates] == ["update"] * 6
    assert [u["version"] for u in updates] == [2, 3, 4, 5, 6, 7]
    assert [u["event"] for u in updates] == [
        "member_joined",
        "item_added",
        "item_added",
        "member_ready_changed",
        "cart_locked",
        "member_payment_updated",
    ]
    paid = updates[-1]
    assert paid["user_id"] == uid(guest)
    assert paid["payment"]["status"] == "cod_committed"
    assert paid["cart"]["version"] == 7
    assert paid["cart"]["status"] == "locked"


async def test_ping_resync_and_presence(
    client: Client, admin_headers: dict[str, str], live_server: str
) -> None:
    host, cart, _ = await cart_with_product(client, admin_headers)
    guest = await join(client, cart, "Ana")
    async with connect(ws_url(live_server, cart["id"], host)) as host_ws:
        assert (await receive(host_ws))["version"] == 2
        await host_ws.send(json.dumps({"type": "ping"}))
        assert await receive_type(host_ws, "pong") == {"type": "pong"}
        await host_ws.send(json.dumps({"type": "dance"}))
        assert (await receive_type(host_ws, "error"))["code"] == "unknown_message"

        async with connect(ws_url(live_server, cart["id"], guest)) as guest_ws:
            guest_snapshot = await receive(guest_ws)
            assert {m["user_id"]: m["online"] for m in guest_snapshot["cart"]["members"]} == {
                uid(host): True,
                uid(guest): True,
            }
            assert set((await receive_type(host_ws, "presence"))["online"]) == {
                uid(host),
                uid(guest),
            }
            view = await client.get(f"/api/v1/teamcarts/{cart['id']}", headers=host)
            assert all(member["online"] for member in view.json()["members"])

            await host_ws.send(json.dumps({"type": "resync"}))
            again = await receive_type(host_ws, "snapshot")
            assert again["version"] == 2
        assert (await receive_type(host_ws, "presence"))["online"] == [uid(host)]
    view = await client.get(f"/api/v1/teamcarts/{cart['id']}", headers=host)
    assert not any(member["online"] for member in view.json()["members"])


async def test_a_removed_member_is_closed_with_4403(
    client: Client, admin_headers: dict[str, str], live_server: str
) -> None:
    host, cart, _ = await cart_with_product(client, admin_headers)
    guest = await join(client, cart, "Ana")
    async with connect(ws_url(live_server, cart["id"], guest)) as ws:
        assert (await receive(ws))["type"] == "snapshot"
        removed = await client.delete(
            f"/api/v1/teamcarts/{cart['id']}/members/{uid(guest)}", headers=host
        )
        assert removed.status_code == 204, removed.text
        assert await close_code(ws) == 4403


def stalled_socket(base: str) -> socket.socket:
    """A connected TCP socket with a tiny receive buffer: it fills after a few frames."""
    parts = urlsplit(base)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((parts.hostname, parts.port))
    sock.setblocking(False)
    return sock


async def test_a_stalled_client_is_dropped_and_never_delays_another(
    client: Client, admin_headers: dict[str, str], live_server: str, redis_url: str
) -> None:
    host, cart, product = await cart_with_product(client, admin_headers)
    guest = await join(client, cart, "Stalled")
    channel = channel_for(cart["id"])
    # Presence messages carry no version, so they can be flooded through the real channel
    # without disturbing the cart's update sequence. Each is ~20 KB, at a pace a reading
    # client keeps up with; the stalled one falls a whole backlog (64) behind.
    padding = [str(uuid.uuid4()) for _ in range(500)]
    flood = encode_frame(FrameHeader(kind="presence"), encode_text(Presence(padding)))
    count = 300
    redis = Redis.from_url(redis_url)
    try:
        async with (
            connect(ws_url(live_server, cart["id"], host)) as healthy,
            connect(
                ws_url(live_server, cart["id"], guest),
                sock=stalled_socket(live_server),
                max_queue=1,
            ) as stalled,
        ):
            assert (await receive(stalled))["type"] == "snapshot"
            assert (await receive(healthy))["type"] == "snapshot"
            # from here on the stalled client reads nothing; the healthy one reads all along

            async def read_until_update() -> tuple[int, dict[str, Any]]:
                flooded = 0
                while (message := await receive(healthy))["type"] != "update":
                    flooded += message["type"] == "presence" and len(message["online"]) == 500
                return flooded, message

            reading = asyncio.create_task(read_until_update())
            started = time.monotonic()
            for _ in range(count):
                await redis.publish(channel, flood)
                await asyncio.sleep(0.002)
            committed = time.monotonic()
            added = await client.post(
                f"/api/v1/teamcarts/{cart['id']}/items",
                json={"product_id": product["id"], "quantity": 1},
                headers=host,
            )
            assert added.status_code == 201
            async with asyncio.timeout(10):
                flooded, update = await reading
            assert flooded == count
            assert update["version"] == 3
            assert time.monotonic() - committed < 1.0
            assert time.monotonic() - started < 10

            received = await read_until_closed(stalled, 15)  # it reads again: what was
            assert stalled.close_code == 4408  # buffered, then the close
            assert received < count
        async with httpx.AsyncClient(base_url=live_server) as http:
            metrics = (await http.get("/metrics")).text
        assert "teamcart_websocket_slow_disconnects_total 0.0" not in metrics
    finally:
        await redis.aclose()


async def test_a_member_who_just_joined_is_let_in_even_if_the_view_lags(
    client: Client, admin_headers: dict[str, str], live_server: str, redis_url: str
) -> None:
    """The view can trail a join by milliseconds; membership is PostgreSQL's to decide."""
    _, cart, _ = await cart_with_product(client, admin_headers)
    guest = await join(client, cart, "Quick")
    key = f"{{teamcart:{cart['id']}}}:view"
    redis = Redis.from_url(redis_url)
    try:
        for _ in range(100):  # wait until the join has been projected…
            if int(await redis.hget(key, "version") or 0) >= 2:
                break
            await asyncio.sleep(0.02)
        # …then put back the view from before the join, as if the projection lagged.
        await redis.hset(key, mapping={"version": 1, "view": json.dumps(cart)})
    finally:
        await redis.aclose()
    async with connect(ws_url(live_server, cart["id"], guest)) as ws:
        first = await receive(ws)
        assert first["type"] == "snapshot"


async def test_updates_resume_after_the_pubsub_connection_drops(
    client: Client, admin_headers: dict[str, str], live_server: str, redis_url: str
) -> None:
    host, cart, product = await cart_with_product(client, admin_headers)
    url = f"/api/v1/teamcarts/{cart['id']}/items"
    item = {"product_id": product["id"], "quantity": 1}
    redis = Redis.from_url(redis_url)
    try:
        async with connect(ws_url(live_server, cart["id"], host)) as ws:
            assert (await receive(ws))["version"] == 1
            await redis.client_kill_filter(_type="pubsub")  # every process's subscriber
            # Whatever is published before the subscriber is back is lost, so keep changing
            # the cart until something arrives: the stream resumes, as a snapshot (a gap)
            # or an update, and with the cart's latest version.
            async with asyncio.timeout(15):
                while True:
                    added = await client.post(url, json=item, headers=host)
                    assert added.status_code == 201
                    version = added.json()["cart"]["version"]
                    try:
                        message = await receive(ws, 1.0)
                    except TimeoutError:
                        continue
                    if message["type"] in {"update", "snapshot"}:
                        break
            while message["version"] < version:
                message = await receive(ws)
            assert message["version"] == version
    finally:
        await redis.aclose()


async def test_a_socket_gets_a_fresh_snapshot_after_the_pubsub_connection_drops(
    client: Client, admin_headers: dict[str, str], live_server: str, redis_url: str
) -> None:
    """Whatever was published while a process resubscribed is lost, so once it is back it
    sends each of its sockets a snapshot, though nothing changes in the cart after the drop."""
    host, cart, _ = await cart_with_product(client, admin_headers)
    redis = Redis.from_url(redis_url)
    try:
        async with connect(ws_url(live_server, cart["id"], host)) as ws:
            assert (await receive(ws))["type"] == "snapshot"
            assert await redis.client_kill_filter(_type="pubsub") >= 1
            snapshot = await receive_type(ws, "snapshot")
            assert snapshot["version"] == cart["version"]
            assert snapshot["cart"]["id"] == cart["id"]
    finally:
        await redis.aclose()


async def test_the_heartbeat_keeps_every_carts_presence_alive_past_one_batch(
    client: Client, admin_headers: dict[str, str], live_server: str, redis_url: str
) -> None:
    """More carts than one presence pipeline holds (PRESENCE_BATCH): every one is refreshed."""
    store = await create_store(client, admin_headers)
    hosts = [await session(client, f"Host {n}") for n in range(PRESENCE_BATCH + 5)]
    carts = [await open_cart(client, host, store["id"]) for host in hosts]
    redis = Redis.from_url(redis_url)

    async def expiries() -> list[float]:
        scores = []
        for cart in carts:
            entries = await redis.zrange(presence_key(cart["id"]), 0, -1, withscores=True)
            assert len(entries) == 1, cart["id"]
            scores.append(entries[0][1])
        return scores

    sockets = [
        await connect(ws_url(live_server, c["id"], h)) for c, h in zip(carts, hosts, strict=True)
    ]
    try:
        for ws in sockets:
            await receive_type(ws, "snapshot")
        before = await expiries()
        await asyncio.sleep(DEFAULT_HEARTBEAT_SECONDS * 1.5)
        after = await expiries()
        assert all(later > earlier for earlier, later in zip(before, after, strict=True))
    finally:
        for ws in sockets:
            await ws.close()
        await redis.aclose()


async def test_members_see_the_sweeper_expire_their_cart(
    client: Client, admin_headers: dict[str, str], live_server: str, settings: Settings
) -> None:
    """The expiry sweeper's events take the outbox dispatchers' way (it relays nothing)."""
    store = await create_store(client, admin_headers)
    host = await session(client, "Host")
    deadline = datetime.now(UTC) + timedelta(seconds=1.5)
    response = await client.post(
        "/api/v1/teamcarts",
        json={"store_id": store["id"], "deadline": deadline.isoformat()},
        headers=host,
    )
    assert response.status_code == 201, response.text
    cart = response.json()
    async with connect(ws_url(live_server, cart["id"], host)) as ws:
        assert (await receive_type(ws, "snapshot"))["cart"]["status"] == "open"
        within = 1.5 + settings.sweep_interval_seconds + 5
        expired = await receive_type(ws, "update", within=within)
        assert expired["version"] == cart["version"] + 1
        assert expired["cart"]["status"] == "expired"


async def test_sockets_that_never_sign_in_are_bounded(
    client: Client, admin_headers: dict[str, str], settings: Settings
) -> None:
    """Past the limit of sockets waiting for their auth message, the next one is told to
    try again later at once (1013), and a socket with a token is still let in."""
    from app.wiring import create_app
    from tests.services import serving

    host, cart, _ = await cart_with_product(client, admin_headers)
    app = create_app(settings)
    app.state.resources.pending_auth.limit = 2
    with serving(app) as base:
        async with connect(ws_url(base, cart["id"])) as first, connect(ws_url(base, cart["id"])):
            async with connect(ws_url(base, cart["id"])) as third:
                started = time.monotonic()
                assert await close_code(third) == 1013
                assert time.monotonic() - started < 1
            async with connect(ws_url(base, cart["id"], host)) as member:
                assert (await receive(member))["type"] == "snapshot"
            await first.send(json.dumps({"type": "auth", "token": token_of(host)}))
            assert (await receive(first))["type"] == "snapshot"


async def test_the_host_of_a_ready_cart_is_reminded_to_confirm_once_and_only_the_host(
    client: Client, admin_headers: dict[str, str], live_server: str, redis_url: str, runner: Any
) -> None:
    from app.use_cases.teamcarts import remind_hosts_to_confirm
    from realtime.protocol import Reminder, reminder_frame

    host, cart, product = await cart_with_product(client, admin_headers)
    guest = await join(client, cart, "Guest")
    url = f"/api/v1/teamcarts/{cart['id']}"
    for person in (host, guest):
        await client.post(
            url + "/items", json={"product_id": product["id"], "quantity": 1}, headers=person
        )
    await client.post(url + "/lock", headers=host)
    for person in (host, guest):
        await client.post(url + "/payments/cod", headers=person)
    assert (await client.get(url, headers=host)).json()["status"] == "ready_to_confirm"

    redis = Redis.from_url(redis_url)
    sent: list[tuple[str, str]] = []

    async def remind(cart_id: str, user_id: str, deadline: datetime, what: str) -> None:
        if cart_id != cart["id"]:
            return  # another test's ready cart
        sent.append((cart_id, user_id))
        frame = reminder_frame([user_id], Reminder(deadline=deadline, what=what))
        await redis.publish(channel_for(cart_id), frame)

    try:
        async with (
            connect(ws_url(live_server, cart["id"], host)) as host_ws,
            connect(ws_url(live_server, cart["id"], guest)) as guest_ws,
        ):
            await receive_type(host_ws, "snapshot")
            await receive_type(guest_ws, "snapshot")
            assert await remind_hosts_to_confirm(runner, timedelta(hours=1), remind) >= 0
            assert sent == []  # not yet: the window has most of its time left
            await remind_hosts_to_confirm(runner, timedelta(0), remind)
            assert sent == [(cart["id"], uid(host))]
            reminder = await receive_type(host_ws, "reminder")
            assert reminder["what"] == "confirm"
            assert datetime.fromisoformat(reminder["deadline"]) <= datetime.now(UTC)
            await remind_hosts_to_confirm(runner, timedelta(0), remind)
            assert sent == [(cart["id"], uid(host))]  # once
            await guest_ws.send(json.dumps({"type": "ping"}))
            seen = []
            async with asyncio.timeout(RECEIVE_TIMEOUT):
                while (message := await receive(guest_ws))["type"] != "pong":
                    seen.append(message["type"])
            assert "reminder" not in seen  # the guest has nothing to confirm
    finally:
        await redis.aclose()
