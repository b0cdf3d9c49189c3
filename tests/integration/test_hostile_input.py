"""No input a client can send yields a 500 (ARCHITECTURE.md), on the real app and PostgreSQL.

One test per class of hostile input: control characters in text, dates out of range,
integers past their column, JSON of the wrong type ("1" for 1), JSON nested too deep, request
ids that are not ASCII, and — the error mapper's part — what slips past the request structs
into PostgreSQL (a total past BIGINT, a lost connection). Where a refused request could have
left something behind, the case checks that nothing was stored.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar, get
from litestar.plugins.problem_details import ProblemDetailsPlugin
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.auth import issue_token
from app.config import Settings
from app.errors import problem_details_config, unexpected_exception_handler
from app.persistence.database import async_url, create_engine
from tests.builders import Client, create_product, create_store, product_payload
from tests.integration.test_group_flow import ADDRESS, session, uid
from tests.integration.test_http_basics import assert_problem
from tests.stripe_events import sign

NUL = "\u0000"
DEEP = 10_000
Headers = dict[str, str]


@dataclass(frozen=True, slots=True)
class Shop:
    """A store with one product and a cart its host opened (locked or ready if asked)."""

    store: dict[str, Any]
    product: dict[str, Any]
    host: Headers
    cart: dict[str, Any]

    @property
    def url(self) -> str:
        return f"/api/v1/teamcarts/{self.cart['id']}"


async def open_shop(client: Client, admin: Headers, *, until: str = "open") -> Shop:
    store = await create_store(client, admin)
    product = await create_product(client, admin, store["id"], option_groups=[])
    host = await session(client, "Host")
    opened = await client.post("/api/v1/teamcarts", json={"store_id": store["id"]}, headers=host)
    assert opened.status_code == 201, opened.text
    shop = Shop(store, product, host, opened.json())
    if until in {"locked", "ready"}:
        item = {"product_id": product["id"], "quantity": 1}
        assert (await client.post(shop.url + "/items", json=item, headers=host)).status_code == 201
        assert (await client.post(shop.url + "/lock", headers=host)).status_code == 200
    if until == "ready":
        assert (await client.post(shop.url + "/payments/cod", headers=host)).status_code == 200
    return shop


async def view_of(client: Client, shop: Shop, member: Headers | None = None) -> dict[str, Any]:
    response = await client.get(shop.url, headers=member or shop.host)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_refused(response: httpx.Response, status: int, code: str, field: str | None) -> None:
    body = assert_problem(response, status, code)
    if field is not None:
        assert [error["field"] for error in body["errors"]] == [field], body


# --- control characters in text ---------------------------------------------------------------

Attempt = Callable[[Client, Headers], Awaitable[httpx.Response]]


async def nul_in_display_name(client: Client, admin: Headers) -> httpx.Response:
    response = await client.post("/api/v1/sessions", json={"display_name": "Ana" + NUL})
    assert "token" not in response.json()  # no identity carrying the NUL was issued
    return response


async def nul_in_invite_code(client: Client, admin: Headers) -> httpx.Response:
    shop = await open_shop(client, admin)
    guest = await session(client, "Guest")
    code = shop.cart["invite_code"]
    response = await client.post(
        "/api/v1/teamcarts/join", json={"invite_code": code[:5] + NUL + code[5:]}, headers=guest
    )
    assert_problem(await client.get(shop.url, headers=guest), 403, "not_a_member")
    assert [m["user_id"] for m in (await view_of(client, shop))["members"]] == [uid(shop.host)]
    return response


async def nul_in_coupon_code(client: Client, admin: Headers) -> httpx.Response:
    shop = await open_shop(client, admin, until="locked")
    before = await view_of(client, shop)
    response = await client.put(shop.url + "/coupon", json={"code": "HA" + NUL}, headers=shop.host)
    after = await view_of(client, shop)
    assert (after["status"], after["quote_version"], after["discount_minor"]) == (
        "locked",
        before["quote_version"],
        0,
    )
    return response


async def nul_in_store_name(client: Client, admin: Headers) -> httpx.Response:
    name = f"Pizza {uuid.uuid4().hex[:8]}"
    response = await client.post(
        "/api/v1/stores",
        json={"name": name + NUL, "currency": "USD", "delivery_fee_minor": 0, "tax_rate_bps": 0},
        headers=admin,
    )
    stores = (await client.get("/api/v1/stores", headers=admin)).json()["items"]
    assert not [store for store in stores if store["name"].startswith(name)]
    return response


async def nul_in_product_name(client: Client, admin: Headers) -> httpx.Response:
    store = await create_store(client, admin)
    return await client.post(
        f"/api/v1/stores/{store['id']}/products",
        json=product_payload(name="Dish" + NUL),
        headers=admin,
    )


async def nul_in_option_group_name(client: Client, admin: Headers) -> httpx.Response:
    store = await create_store(client, admin)
    payload = product_payload()
    payload["option_groups"][0]["name"] = "Size" + NUL
    return await client.post(f"/api/v1/stores/{store['id']}/products", json=payload, headers=admin)


async def nul_in_option_name(client: Client, admin: Headers) -> httpx.Response:
    store = await create_store(client, admin)
    payload = product_payload()
    payload["option_groups"][1]["options"][2]["name"] = "Egg" + NUL
    return await client.post(f"/api/v1/stores/{store['id']}/products", json=payload, headers=admin)


async def nul_in_chosen_option(client: Client, admin: Headers) -> httpx.Response:
    shop = await open_shop(client, admin)
    item = {"product_id": shop.product["id"], "quantity": 1, "options": ["Large" + NUL]}
    response = await client.post(shop.url + "/items", json=item, headers=shop.host)
    assert (await view_of(client, shop))["items"] == []
    return response


async def nul_in_delivery_address(client: Client, admin: Headers) -> httpx.Response:
    shop = await open_shop(client, admin, until="ready")
    address = {**ADDRESS, "line1": "1 Main" + NUL + "St"}
    response = await client.post(
        shop.url + "/confirm", json={"delivery_address": address}, headers=shop.host
    )
    assert (await view_of(client, shop))["status"] == "ready_to_confirm"
    confirmed = await client.post(
        shop.url + "/confirm", json={"delivery_address": ADDRESS}, headers=shop.host
    )
    assert confirmed.status_code == 201, confirmed.text
    return response


@pytest.mark.parametrize(
    ("attempt", "field"),
    [
        (nul_in_display_name, "display_name"),
        (nul_in_invite_code, "invite_code"),
        (nul_in_coupon_code, "code"),
        (nul_in_store_name, "name"),
        (nul_in_product_name, "name"),
        (nul_in_option_group_name, "option_groups[0].name"),
        (nul_in_option_name, "option_groups[1].options[2].name"),
        (nul_in_chosen_option, "options[0]"),
        (nul_in_delivery_address, "delivery_address.line1"),
    ],
    ids=lambda value: value.__name__ if callable(value) else None,
)
async def test_a_control_character_in_text_is_refused_and_nothing_is_stored(
    client: Client, admin_headers: Headers, attempt: Attempt, field: str
) -> None:
    assert_refused(await attempt(client, admin_headers), 400, "validation_error", field)


async def test_a_token_issued_with_a_control_character_in_its_name_still_opens_carts(
    client: Client, admin_headers: Headers, settings: Settings
) -> None:
    """Tokens minted before names were checked live for a week: their name is cleaned."""
    assert settings.jwt_secret is not None
    store = await create_store(client, admin_headers)
    token = issue_token(settings.jwt_secret, display_name="Ana" + NUL + "\x1b[31m").token
    opened = await client.post(
        "/api/v1/teamcarts",
        json={"store_id": store["id"]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert opened.status_code == 201, opened.text
    assert [m["display_name"] for m in opened.json()["members"]] == ["Ana[31m"]


# --- dates out of range -----------------------------------------------------------------------


def cursor_at(moment: str) -> str:
    raw = f"{moment}|{uuid.uuid4()}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def deadline(client: Client, admin: Headers, value: str) -> httpx.Response:
    store = await create_store(client, admin)
    host = await session(client, "Host")
    return await client.post(
        "/api/v1/teamcarts", json={"store_id": store["id"], "deadline": value}, headers=host
    )


async def cursor(client: Client, admin: Headers, value: str) -> httpx.Response:
    host = await session(client, "Host")
    return await client.get("/api/v1/orders", params={"cursor": cursor_at(value)}, headers=host)


A_YEAR_AHEAD = (datetime.now(UTC) + timedelta(days=365)).isoformat()


@pytest.mark.parametrize(
    ("send", "value", "status", "code", "field"),
    [
        # 9999-12-31 at UTC-23:59 is in year 10000 once in UTC, which Python can't represent
        (deadline, "9999-12-31T23:59:59-23:59", 422, "invalid_deadline", "deadline"),
        (deadline, A_YEAR_AHEAD, 422, "invalid_deadline", "deadline"),
        (deadline, "2031-01-01T12:00:00", 400, "validation_error", "deadline"),  # naive
        (cursor, "0001-01-01T00:00:00+23:59", 400, "validation_error", "cursor"),
        (cursor, "9999-12-31T23:59:59-23:59", 400, "validation_error", "cursor"),
    ],
    ids=[
        "deadline-past-year-9999-in-utc",
        "deadline-a-year-ahead",
        "deadline-naive",
        "cursor-before-year-1-in-utc",
        "cursor-past-year-9999-in-utc",
    ],
)
async def test_a_date_out_of_range_is_refused(
    client: Client,
    admin_headers: Headers,
    send: Callable[[Client, Headers, str], Awaitable[httpx.Response]],
    value: str,
    status: int,
    code: str,
    field: str,
) -> None:
    assert_refused(await send(client, admin_headers, value), status, code, field)


# --- integers past their column ---------------------------------------------------------------

INT_MAX = 2**31 - 1
BIGINT_MAX = 2**63 - 1


async def stock_past_integer(client: Client, admin: Headers) -> httpx.Response:
    store = await create_store(client, admin)
    url = f"/api/v1/stores/{store['id']}/products"
    response = await client.post(url, json=product_payload(stock=INT_MAX + 1), headers=admin)
    assert (await client.get(url, headers=admin)).json()["items"] == []
    return response


async def max_uses_past_integer(client: Client, admin: Headers) -> httpx.Response:
    store = await create_store(client, admin)
    coupon = {"code": "BIG", "kind": "fixed", "value": 100, "max_uses": INT_MAX + 1}
    return await client.post(f"/api/v1/stores/{store['id']}/coupons", json=coupon, headers=admin)


async def tip(client: Client, admin: Headers, amount: int) -> httpx.Response:
    shop = await open_shop(client, admin, until="locked")
    response = await client.put(shop.url + "/tip", json={"amount_minor": amount}, headers=shop.host)
    assert (await view_of(client, shop))["tip_minor"] == 0
    return response


async def tip_of_a_quadrillion(client: Client, admin: Headers) -> httpx.Response:
    return await tip(client, admin, 10**15)


async def tip_past_bigint(client: Client, admin: Headers) -> httpx.Response:
    return await tip(client, admin, BIGINT_MAX + 1)


async def total_past_bigint(client: Client, admin: Headers) -> httpx.Response:
    """Every amount within its bound, but 47 dear lines taxed at 100% pass BIGINT in sum:
    what slips past the structs is the error mapper's to answer (422 ``invalid_value``)."""
    store = await create_store(client, admin, delivery_fee_minor=10**12, tax_rate_bps=10_000)
    groups: list[dict[str, Any]] = [
        {
            "name": f"Group {g}",
            "min": 0,
            "max": 50,
            "options": [{"name": f"g{g}o{o}", "price_delta_minor": 10**12} for o in range(50)],
        }
        for g in range(20)
    ]
    product = await create_product(
        client, admin, store["id"], price_minor=10**12, option_groups=groups
    )
    host = await session(client, "Host")
    opened = await client.post("/api/v1/teamcarts", json={"store_id": store["id"]}, headers=host)
    url = f"/api/v1/teamcarts/{opened.json()['id']}"
    options = [option["name"] for group in groups for option in group["options"]]
    item = {"product_id": product["id"], "quantity": 99, "options": options}
    for _ in range(47):
        added = await client.post(url + "/items", json=item, headers=host)
        assert added.status_code == 201, added.text
    response = await client.post(url + "/lock", headers=host)
    still = (await client.get(url, headers=host)).json()
    assert (still["status"], still["version"]) == ("open", 48)
    return response


@pytest.mark.parametrize(
    ("attempt", "status", "code", "field"),
    [
        (stock_past_integer, 400, "validation_error", "stock"),
        (max_uses_past_integer, 400, "validation_error", "max_uses"),
        (tip_of_a_quadrillion, 422, "validation_error", "amount_minor"),
        (tip_past_bigint, 400, "validation_error", "amount_minor"),
        (total_past_bigint, 422, "invalid_value", None),
    ],
    ids=lambda value: value.__name__ if callable(value) else None,
)
async def test_an_integer_past_its_bound_is_refused(
    client: Client,
    admin_headers: Headers,
    attempt: Attempt,
    status: int,
    code: str,
    field: str | None,
) -> None:
    assert_refused(await attempt(client, admin_headers), status, code, field)


# --- JSON of the wrong type -------------------------------------------------------------------


async def quantity_as_text(client: Client, admin: Headers) -> httpx.Response:
    shop = await open_shop(client, admin)
    item = {"product_id": shop.product["id"], "quantity": "1"}
    response = await client.post(shop.url + "/items", json=item, headers=shop.host)
    assert (await view_of(client, shop))["items"] == []
    return response


async def quantity_as_float(client: Client, admin: Headers) -> httpx.Response:
    shop = await open_shop(client, admin)
    item = {"product_id": shop.product["id"], "quantity": 1.0}
    response = await client.post(shop.url + "/items", json=item, headers=shop.host)
    assert (await view_of(client, shop))["items"] == []
    return response


async def changed_quantity_as_text(client: Client, admin: Headers) -> httpx.Response:
    shop = await open_shop(client, admin)
    item = {"product_id": shop.product["id"], "quantity": 1}
    added = await client.post(shop.url + "/items", json=item, headers=shop.host)
    item_url = f"{shop.url}/items/{added.json()['item_id']}"
    response = await client.patch(item_url, json={"quantity": "2"}, headers=shop.host)
    assert [item["quantity"] for item in (await view_of(client, shop))["items"]] == [1]
    return response


async def ready_as_text(client: Client, admin: Headers) -> httpx.Response:
    shop = await open_shop(client, admin)
    response = await client.put(shop.url + "/ready", json={"ready": "true"}, headers=shop.host)
    assert [m["ready"] for m in (await view_of(client, shop))["members"]] == [False]
    return response


async def tax_rate_as_text(client: Client, admin: Headers) -> httpx.Response:
    return await client.post(
        "/api/v1/stores",
        json={"name": "Tax", "currency": "USD", "delivery_fee_minor": 0, "tax_rate_bps": "800"},
        headers=admin,
    )


async def tip_as_text(client: Client, admin: Headers) -> httpx.Response:
    shop = await open_shop(client, admin, until="locked")
    response = await client.put(shop.url + "/tip", json={"amount_minor": "500"}, headers=shop.host)
    assert (await view_of(client, shop))["tip_minor"] == 0
    return response


@pytest.mark.parametrize(
    ("attempt", "field"),
    [
        (quantity_as_text, "quantity"),
        (quantity_as_float, "quantity"),
        (changed_quantity_as_text, "quantity"),
        (ready_as_text, "ready"),
        (tax_rate_as_text, "tax_rate_bps"),
        (tip_as_text, "amount_minor"),
    ],
    ids=lambda value: value.__name__ if callable(value) else None,
)
async def test_json_of_the_wrong_type_is_refused_not_converted(
    client: Client, admin_headers: Headers, attempt: Attempt, field: str
) -> None:
    assert_refused(await attempt(client, admin_headers), 400, "validation_error", field)


# --- JSON nested too deep ---------------------------------------------------------------------

NESTED_ARRAYS = "[" * DEEP + "]" * DEEP
NESTED_OBJECTS = '{"a":' * DEEP + "1" + "}" * DEEP


async def post_raw(
    client: Client, url: str, body: str, headers: Headers | None = None
) -> httpx.Response:
    return await client.post(
        url,
        content=body.encode(),
        headers={**(headers or {}), "Content-Type": "application/json"},
    )


async def nested_session_body(client: Client, admin: Headers) -> httpx.Response:
    return await post_raw(client, "/api/v1/sessions", NESTED_ARRAYS)


async def nested_display_name(client: Client, admin: Headers) -> httpx.Response:
    return await post_raw(client, "/api/v1/sessions", '{"display_name": ' + NESTED_ARRAYS + "}")


async def nested_unknown_field(client: Client, admin: Headers) -> httpx.Response:
    store = await create_store(client, admin)
    host = await session(client, "Host")
    body = '{"store_id": "' + store["id"] + '", "extra": ' + NESTED_OBJECTS + "}"
    return await post_raw(client, "/api/v1/teamcarts", body, host)


async def nested_option_groups(client: Client, admin: Headers) -> httpx.Response:
    store = await create_store(client, admin)
    body = '{"name": "Dish", "price_minor": 100, "option_groups": ' + NESTED_ARRAYS + "}"
    return await post_raw(client, f"/api/v1/stores/{store['id']}/products", body, admin)


async def nested_signed_webhook(client: Client, admin: Headers) -> httpx.Response:
    body = NESTED_ARRAYS.encode()
    return await client.post(
        "/api/v1/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": sign(body), "Content-Type": "application/json"},
    )


@pytest.mark.parametrize(
    ("attempt", "code", "field"),
    [
        (nested_session_body, "validation_error", None),
        (nested_display_name, "validation_error", "display_name"),
        (nested_unknown_field, "validation_error", "extra"),
        (nested_option_groups, "validation_error", "option_groups[0]"),
        (nested_signed_webhook, "malformed_event", None),
    ],
    ids=lambda value: value.__name__ if callable(value) else None,
)
async def test_json_nested_too_deep_is_400(
    client: Client, admin_headers: Headers, attempt: Attempt, code: str, field: str | None
) -> None:
    assert_refused(await attempt(client, admin_headers), 400, code, field)


# --- ids only Stripe can judge ----------------------------------------------------------------


@pytest.mark.parametrize("payment_method", ["pm_0", "card_unknown", "src_unknown"])
async def test_a_payment_method_stripe_refuses_is_400_and_the_payment_stays_open(
    client: Client, admin_headers: Headers, payment_method: str
) -> None:
    """Found by tests/e2e/test_api_fuzz.py: a well-formed id Stripe does not know was 502
    ``payment_provider_unavailable``, as if Stripe were down, for the client's own input."""
    shop = await open_shop(client, admin_headers, until="locked")
    started = await client.post(shop.url + "/payments/online", headers=shop.host)
    assert started.status_code == 200, started.text
    intent = started.json()["payment_intent_id"]
    confirm = shop.url + "/payments/online/confirm"

    refused = await client.post(
        confirm,
        json={"payment_intent_id": intent, "payment_method": payment_method},
        headers=shop.host,
    )
    assert_refused(refused, 400, "validation_error", "payment_method")
    [member] = (await view_of(client, shop))["members"]
    assert member["payment"]["status"] == "pending"  # not failed: a real card may follow
    paid = await client.post(
        confirm,
        json={"payment_intent_id": intent, "payment_method": "pm_card_visa"},
        headers=shop.host,
    )
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "succeeded"


# --- request ids that are not ASCII -----------------------------------------------------------


@pytest.fixture
async def raw_client(live_server: str) -> AsyncIterator[httpx.AsyncClient]:
    """Through a real uvicorn server: header bytes go over the wire as given (the in-process
    test client would re-encode them as UTF-8)."""
    async with httpx.AsyncClient(base_url=live_server) as raw:
        yield raw


@pytest.mark.parametrize(
    "request_id",
    [b"\xff\xfe", "caf\u00e9".encode("latin-1"), b"\xff" * 300],
    ids=["not-utf-8", "latin-1", "not-utf-8-and-too-long"],
)
@pytest.mark.parametrize(
    ("method", "url", "status", "code"),
    [
        ("GET", "/health/live", 200, None),
        ("GET", "/api/v1/stores", 200, None),
        ("POST", "/api/v1/webhooks/stripe", 400, "invalid_signature"),
    ],
    ids=["health", "api", "webhook"],
)
async def test_a_request_id_that_is_not_ascii_is_replaced_by_a_fresh_one(
    raw_client: httpx.AsyncClient,
    guest_headers: Headers,
    request_id: bytes,
    method: str,
    url: str,
    status: int,
    code: str | None,
) -> None:
    headers: list[tuple[bytes, bytes]] = [
        (name.encode(), value.encode()) for name, value in guest_headers.items()
    ]
    response = await raw_client.request(
        method, url, content=b"{}", headers=[*headers, (b"X-Request-ID", request_id)]
    )
    if code is None:
        assert response.status_code == status, response.text
    else:
        assert_problem(response, status, code)
    fresh = response.headers["x-request-id"]
    assert len(fresh) == 32
    int(fresh, 16)


# --- what slips through: the error mapper -----------------------------------------------------

Probe = Callable[[AsyncEngine], Awaitable[object]]


async def scalar(engine: AsyncEngine, sql: str, **params: object) -> object:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


async def nul_in_text(engine: AsyncEngine) -> object:
    return await scalar(engine, "SELECT CAST(:v AS text)", v="a" + NUL)


async def nul_in_jsonb(engine: AsyncEngine) -> object:
    return await scalar(engine, "SELECT CAST(CAST(:v AS text) AS jsonb)", v='"a\\u0000"')


async def integer_overflow(engine: AsyncEngine) -> object:
    return await scalar(engine, "SELECT CAST(:v AS integer) + 1", v=INT_MAX)


async def integer_parameter_out_of_range(engine: AsyncEngine) -> object:
    return await scalar(engine, "SELECT CAST(:v AS integer)", v=INT_MAX + 1)


async def not_a_number(engine: AsyncEngine) -> object:
    return await scalar(engine, "SELECT CAST(CAST(:v AS text) AS integer)", v="twelve")


async def time_out_of_range(engine: AsyncEngine) -> object:
    return await scalar(engine, "SELECT CAST(CAST(:v AS text) AS timestamptz)", v="294277-01-01Z")


async def text_too_long(engine: AsyncEngine) -> object:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TEMPORARY TABLE short (c varchar(2)) ON COMMIT DROP"))
        await conn.execute(text("INSERT INTO short VALUES (:v)"), {"v": "abc"})
    return None


async def connection_lost(engine: AsyncEngine) -> object:
    return await scalar(engine, "SELECT pg_terminate_backend(pg_backend_pid())")


async def pool_exhausted(engine: AsyncEngine) -> object:
    async with engine.connect():
        return await scalar(engine, "SELECT 1")


async def unreachable(engine: AsyncEngine) -> object:
    dead = create_engine(engine.url.set(port=1).render_as_string(hide_password=False))
    try:
        return await scalar(dead, "SELECT 1")
    finally:
        await dead.dispose()


def unbounded(depth: int) -> int:
    return unbounded(depth + 1) + 1


async def recursion(engine: AsyncEngine) -> object:
    return unbounded(0)


def probing_app(database_url: str, probe: Probe) -> Litestar:
    """A tiny app with the real app's error mapping and one route that runs ``probe`` on an
    engine of its own (one connection, a short wait, so the pool can run dry), made on the
    app's event loop."""

    @get("/probe")
    async def run_probe() -> str:
        engine = create_async_engine(
            async_url(database_url), pool_size=1, max_overflow=0, pool_timeout=0.2
        )
        try:
            return repr(await probe(engine))
        finally:
            await engine.dispose()

    return Litestar(
        route_handlers=[run_probe],
        plugins=[ProblemDetailsPlugin(problem_details_config())],
        exception_handlers={Exception: unexpected_exception_handler},
    )


@pytest.mark.parametrize(
    ("probe", "status", "code"),
    [
        (nul_in_text, 422, "invalid_value"),
        (nul_in_jsonb, 422, "invalid_value"),
        (integer_overflow, 422, "invalid_value"),
        (integer_parameter_out_of_range, 422, "invalid_value"),
        (not_a_number, 422, "invalid_value"),
        (time_out_of_range, 422, "invalid_value"),
        (text_too_long, 422, "invalid_value"),
        (connection_lost, 503, "service_unavailable"),
        (pool_exhausted, 503, "service_unavailable"),
        (unreachable, 503, "service_unavailable"),
        (recursion, 400, "malformed_request"),
    ],
    ids=lambda value: value.__name__ if callable(value) else None,
)
async def test_what_slips_past_the_structs_is_answered_4xx_or_503(
    database_url: str, probe: Probe, status: int, code: str
) -> None:
    async with AsyncTestClient(app=probing_app(database_url, probe)) as tiny:
        response = await tiny.get("/probe")
    body = assert_problem(response, status, code)
    assert NUL not in body["detail"]
    assert "SELECT" not in body["detail"]
    if status == 503:
        assert response.headers["retry-after"] == "1"


async def test_a_server_fault_is_still_500(database_url: str) -> None:
    """A guard, not a regression: division by zero is a bug of ours, not bad input."""

    async def divide(engine: AsyncEngine) -> object:
        return await scalar(engine, "SELECT 1 / 0")

    async with AsyncTestClient(app=probing_app(database_url, divide)) as tiny:
        assert_problem(await tiny.get("/probe"), 500, "internal_error")
