"""Identity, authorization and the problem+json shape of every error, on real services."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx

from app.auth import issue_token
from app.config import Settings
from tests.builders import Client, create_store, store_payload

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].endswith("/" + code)
    assert body["title"]
    assert body["detail"]
    return body


async def test_session_issues_a_guest_token_that_authenticates(client: Client) -> None:
    response = await client.post("/api/v1/sessions", json={"display_name": "  Ana   Lima "})
    assert response.status_code == 201
    session = response.json()
    uuid.UUID(session["user_id"])
    assert session["expires_at"].endswith("Z") or "+00:00" in session["expires_at"]
    listed = await client.get(
        "/api/v1/stores", headers={"Authorization": f"Bearer {session['token']}"}
    )
    assert listed.status_code == 200


async def test_no_token_is_401(client: Client) -> None:
    assert_problem(await client.get("/api/v1/stores"), 401, "unauthorized")
    assert_problem(await client.post("/api/v1/stores", json=store_payload()), 401, "unauthorized")


async def test_bad_or_forged_token_is_401(client: Client) -> None:
    forged = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    for token in ("garbage", forged):
        response = await client.get("/api/v1/stores", headers={"Authorization": f"Bearer {token}"})
        assert_problem(response, 401, "unauthorized")


async def test_a_token_that_worked_is_refused_once_it_expires(
    client: Client, settings: Settings
) -> None:
    """Each process remembers the tokens it verified (so it verifies each once), but only
    until they expire."""
    assert settings.jwt_secret is not None
    token = issue_token(settings.jwt_secret, display_name="Brief", lifetime=timedelta(seconds=2))
    headers = {"Authorization": f"Bearer {token.token}"}
    assert (await client.get("/api/v1/stores", headers=headers)).status_code == 200
    assert (await client.get("/api/v1/stores", headers=headers)).status_code == 200
    await asyncio.sleep(3.1)  # expires_at is whole seconds
    assert_problem(await client.get("/api/v1/stores", headers=headers), 401, "unauthorized")


async def test_guest_on_admin_route_is_403(client: Client, guest_headers: dict[str, str]) -> None:
    response = await client.post("/api/v1/stores", json=store_payload(), headers=guest_headers)
    assert_problem(response, 403, "admin_only")


async def test_malformed_json_is_400_not_500(client: Client, admin_headers: dict[str, str]) -> None:
    response = await client.post(
        "/api/v1/stores",
        content=b'{"name": "x", ',
        headers={**admin_headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["code"] in {"malformed_request", "validation_error"}


async def test_wrong_type_names_the_field(client: Client, admin_headers: dict[str, str]) -> None:
    response = await client.post(
        "/api/v1/stores", json=store_payload(tax_rate_bps="eight"), headers=admin_headers
    )
    body = assert_problem(response, 400, "validation_error")
    assert "tax_rate_bps" in body["detail"]
    assert body["errors"][0]["field"] == "tax_rate_bps"


async def test_missing_field_names_the_field(client: Client, admin_headers: dict[str, str]) -> None:
    payload = store_payload()
    del payload["currency"]
    body = assert_problem(
        await client.post("/api/v1/stores", json=payload, headers=admin_headers),
        400,
        "validation_error",
    )
    assert "currency" in body["detail"]


async def test_semantic_error_is_422_naming_the_field(
    client: Client, admin_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/stores", json=store_payload(currency="XYZ"), headers=admin_headers
    )
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["field"] == "currency"


async def test_unknown_store_and_unknown_route_are_404(
    client: Client, guest_headers: dict[str, str]
) -> None:
    missing = uuid.uuid4()
    assert_problem(
        await client.get(f"/api/v1/stores/{missing}/products", headers=guest_headers),
        404,
        "store_not_found",
    )
    assert_problem(
        await client.get("/api/v1/nothing-here", headers=guest_headers), 404, "not_found"
    )


async def test_health_and_request_id(client: Client) -> None:
    live = await client.get("/health/live")
    assert live.status_code == 200
    ready = await client.get("/health/ready", headers={"X-Request-ID": "trace-123"})
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok"}}
    assert ready.headers["x-request-id"] == "trace-123"
    assert len((await client.get("/health/live")).headers["x-request-id"]) == 32


async def test_metrics_count_requests(client: Client, admin_headers: dict[str, str]) -> None:
    await create_store(client, admin_headers)
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert "teamcart_requests_total" in metrics.text
    assert 'path="/api/v1/stores"' in metrics.text


async def test_openapi_document_is_published(client: Client) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/sessions" in paths
    assert "/api/v1/stores/{store_id}/products" in paths
