"""Redis out of reach, PostgreSQL up: reads fall back to PostgreSQL and sockets are told to
try again later (ARCHITECTURE.md: Redis holds derived state only; losing it loses no read)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect

from app.config import Settings
from app.embedded import free_port
from app.wiring import create_app
from tests.builders import Client
from tests.integration.test_realtime_ws import cart_with_product, close_code, join, ws_url
from tests.services import serving


@pytest.fixture
def redis_down_server(settings: Settings) -> Iterator[str]:
    """A server process on the session's PostgreSQL whose Redis answers nothing."""
    unreachable = settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with serving(create_app(unreachable)) as base:
        yield base


async def test_a_cart_is_read_from_postgres_while_redis_is_down(
    client: Client, admin_headers: dict[str, str], redis_down_server: str
) -> None:
    host, cart, product = await cart_with_product(client, admin_headers)
    guest = await join(client, cart, "Guest")
    added = await client.post(
        f"/api/v1/teamcarts/{cart['id']}/items",
        json={"product_id": product["id"], "quantity": 2},
        headers=guest,
    )
    assert added.status_code == 201

    async with httpx.AsyncClient(base_url=redis_down_server, timeout=10) as other:
        response = await other.get(f"/api/v1/teamcarts/{cart['id']}", headers=guest)
        assert response.status_code == 200, response.text
        view = response.json()
        assert view["version"] == added.json()["cart"]["version"]
        assert [item["quantity"] for item in view["items"]] == [2]
        assert all(not member["online"] for member in view["members"])  # presence is Redis's
        stranger = await client.post("/api/v1/sessions", json={"display_name": "X"})
        token = stranger.json()["token"]
        refused = await other.get(
            f"/api/v1/teamcarts/{cart['id']}", headers={"Authorization": f"Bearer {token}"}
        )
        assert refused.status_code == 403

    async with connect(ws_url(redis_down_server, cart["id"], host)) as ws:
        assert await close_code(ws) == 1013  # try again later, never 4500
