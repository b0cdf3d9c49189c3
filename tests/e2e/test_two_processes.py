"""Two server processes on one PostgreSQL and Redis, as behind a load balancer.

A member watching a cart through one process receives, in order, every update caused by
commands sent to the other; and when a process is killed (SIGKILL: no goodbyes), the members
it was serving drop out of presence within the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from app.config import Settings, settings_to_env
from app.embedded import free_port
from realtime.hub import DEFAULT_HEARTBEAT_SECONDS
from realtime.presence import DEFAULT_TTL_MS
from tests.builders import Client, create_product, create_store
from tests.integration.test_group_flow import open_cart, session, uid
from tests.integration.test_realtime_ws import receive, receive_type, updates_until, ws_url

pytestmark = pytest.mark.slow


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text()


@contextlib.contextmanager
def server_process(settings: Settings, log: Path) -> Iterator[Server]:
    """One uvicorn process with the app factory, configured through TEAMCART_* variables."""
    port = free_port()
    env = {**os.environ, **settings_to_env(settings), "TEAMCART_LOG_LEVEL": "WARNING"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "app.asgi:create_app_from_env",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--ws-per-message-deflate",
                "false",
                "--no-access-log",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Server(process, f"http://127.0.0.1:{port}", log)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def wait_ready(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http, asyncio.timeout(60):
        while True:
            assert server.process.poll() is None, server.output()
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/health/ready")).status_code == 200:
                    return
            await asyncio.sleep(0.1)


async def test_updates_cross_processes_in_order_and_presence_survives_a_kill(
    client: Client, admin_headers: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    with (
        server_process(settings, tmp_path / "a.log") as first,
        server_process(settings, tmp_path / "b.log") as second,
    ):
        await asyncio.gather(wait_ready(first), wait_ready(second))
        store = await create_store(client, admin_headers)
        product = await create_product(client, admin_headers, store["id"], option_groups=[])
        host = await session(client, "Host")
        guest = await session(client, "Guest")
        async with httpx.AsyncClient(base_url=second.base_url) as to_second:
            cart = await open_cart(to_second, host, store["id"])  # type: ignore[arg-type]
            url = f"/api/v1/teamcarts/{cart['id']}"
            async with connect(ws_url(first.base_url, cart["id"], host)) as host_ws:
                assert (await receive(host_ws))["version"] == 1
                joined = await to_second.post(
                    "/api/v1/teamcarts/join",
                    json={"invite_code": cart["invite_code"]},
                    headers=guest,
                )
                assert joined.status_code == 200
                item = {"product_id": product["id"], "quantity": 1}
                added = await to_second.post(url + "/items", json=item, headers=guest)
                item_url = f"{url}/items/{added.json()['item_id']}"
                for quantity in range(2, 10):
                    changed = await to_second.patch(
                        item_url, json={"quantity": quantity}, headers=guest
                    )
                    assert changed.status_code == 200, changed.text
                updates = await updates_until(host_ws, 11)
                assert [u["type"] for u in updates] == ["update"] * 10
                assert [u["version"] for u in updates] == list(range(2, 12))
                assert updates[-1]["cart"]["items"][0]["quantity"] == 9

                async with connect(ws_url(second.base_url, cart["id"], guest)) as guest_ws:
                    assert (await receive(guest_ws))["type"] == "snapshot"
                    online = await receive_type(host_ws, "presence")
                    assert set(online["online"]) == {uid(host), uid(guest)}

                    second.process.send_signal(signal.SIGKILL)
                    second.process.wait(timeout=10)
                    killed = time.monotonic()
                    ttl = DEFAULT_TTL_MS / 1000
                    within = ttl + 2 * DEFAULT_HEARTBEAT_SECONDS
                    gone = await receive_type(host_ws, "presence", within)
                    assert gone["online"] == [uid(host)]
                    assert time.monotonic() - killed <= within
                async with httpx.AsyncClient(base_url=first.base_url) as to_first:
                    view = (await to_first.get(url, headers=host)).json()
        assert {m["user_id"]: m["online"] for m in view["members"]} == {
            uid(host): True,
            uid(guest): False,
        }
