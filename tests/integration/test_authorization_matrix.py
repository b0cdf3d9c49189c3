"""Who may call what: every route of the app, for every kind of caller, generated from the
route table, so a new route can't ship without being classified here.

Callers: nobody (no token), a stranger (a signed-in guest who is not in the cart), a guest
member of the cart, its host, the store's staff (a staff token of the cart's store, which is
a stranger to the cart itself), and an admin. Each case gets a fresh cart (host and guest each
with an item, a store with a coupon), so one case's success never changes another's.
Allowed means "not 401 or 403" (the request may still be refused for its state or body:
409, 422, 404 for an unknown coupon…); refused means exactly 401 (no token) or 403. No case
answers 5xx.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Any

import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute, WebSocketRoute

from app.auth import issue_token
from app.config import Settings
from tests.builders import Client, create_product, create_store
from tests.conftest import bearer
from tests.integration.test_group_flow import ADDRESS, open_cart, session, uid


class Access(Enum):
    PUBLIC = "public"  # anyone, no token
    SIGNED_IN = "signed_in"  # any token
    ADMIN = "admin"
    MEMBER = "member"  # host or guest of the cart
    HOST = "host"
    OWNER = "owner"  # the item's owner (the host's item here)
    SELF_OR_HOST = "self_or_host"  # removing a member: the host, or the member themself
    PARTICIPANT = "participant"  # an order's host, payers, its store's staff and admins
    STORE = "store"  # the store's staff and admins
    CANCELLER = "canceller"  # an order's host, its store's staff and admins
    BUYER = "buyer"  # the owner of a single-payer cart (the host's, here)


ROLES = ("anonymous", "stranger", "guest", "host", "staff", "admin")

ALLOWED: dict[Access, set[str]] = {
    Access.PUBLIC: set(ROLES),
    Access.SIGNED_IN: {"stranger", "guest", "host", "staff", "admin"},
    Access.ADMIN: {"admin"},
    Access.MEMBER: {"guest", "host"},
    Access.HOST: {"host"},
    Access.OWNER: {"host"},
    Access.SELF_OR_HOST: {"guest", "host"},
    Access.PARTICIPANT: {"guest", "host", "staff", "admin"},
    Access.STORE: {"staff", "admin"},
    Access.CANCELLER: {"host", "staff", "admin"},
    Access.BUYER: {"host"},
}

ROUTES: dict[tuple[str, str], Access] = {
    ("GET", "/health/live"): Access.PUBLIC,
    ("GET", "/health/ready"): Access.PUBLIC,
    ("GET", "/metrics"): Access.PUBLIC,
    ("POST", "/api/v1/sessions"): Access.PUBLIC,
    ("POST", "/api/v1/accounts"): Access.PUBLIC,
    ("POST", "/api/v1/sessions/password"): Access.PUBLIC,
    ("POST", "/api/v1/webhooks/stripe"): Access.PUBLIC,  # a signature instead of a token
    ("GET", "/"): Access.PUBLIC,
    ("GET", "/join/{code:str}"): Access.PUBLIC,
    ("GET", "/favicon.ico"): Access.PUBLIC,
    ("GET", "/dev/stripe"): Access.PUBLIC,  # the embedded emulator's (this suite's) only
    ("GET", "/static/{file_path:path}"): Access.PUBLIC,
    ("GET", "/schema"): Access.PUBLIC,
    ("GET", "/schema/swagger"): Access.PUBLIC,
    ("GET", "/schema/{path:str}"): Access.PUBLIC,
    ("GET", "/schema/openapi.json"): Access.PUBLIC,
    ("GET", "/schema/oauth2-redirect.html"): Access.PUBLIC,
    ("GET", "/api/v1/stores"): Access.SIGNED_IN,
    ("GET", "/api/v1/stores/{store_id:uuid}"): Access.SIGNED_IN,
    ("GET", "/api/v1/stores/{store_id:uuid}/products"): Access.SIGNED_IN,
    ("POST", "/api/v1/stores"): Access.ADMIN,
    ("POST", "/api/v1/stores/{store_id:uuid}/products"): Access.ADMIN,
    ("POST", "/api/v1/stores/{store_id:uuid}/coupons"): Access.ADMIN,
    ("POST", "/api/v1/teamcarts"): Access.SIGNED_IN,
    ("GET", "/api/v1/teamcarts"): Access.SIGNED_IN,
    ("POST", "/api/v1/teamcarts/join"): Access.SIGNED_IN,
    ("GET", "/api/v1/teamcarts/{cart_id:uuid}"): Access.MEMBER,
    ("POST", "/api/v1/teamcarts/{cart_id:uuid}/items"): Access.MEMBER,
    ("PATCH", "/api/v1/teamcarts/{cart_id:uuid}/items/{item_id:uuid}"): Access.OWNER,
    ("DELETE", "/api/v1/teamcarts/{cart_id:uuid}/items/{item_id:uuid}"): Access.OWNER,
    ("DELETE", "/api/v1/teamcarts/{cart_id:uuid}/members/{user_id:uuid}"): Access.SELF_OR_HOST,
    ("PUT", "/api/v1/teamcarts/{cart_id:uuid}/ready"): Access.MEMBER,
    ("POST", "/api/v1/teamcarts/{cart_id:uuid}/lock"): Access.HOST,
    ("POST", "/api/v1/teamcarts/{cart_id:uuid}/unlock"): Access.HOST,
    ("PUT", "/api/v1/teamcarts/{cart_id:uuid}/tip"): Access.HOST,
    ("PUT", "/api/v1/teamcarts/{cart_id:uuid}/coupon"): Access.HOST,
    ("DELETE", "/api/v1/teamcarts/{cart_id:uuid}/coupon"): Access.HOST,
    ("POST", "/api/v1/teamcarts/{cart_id:uuid}/payments/cod"): Access.MEMBER,
    ("POST", "/api/v1/teamcarts/{cart_id:uuid}/payments/online"): Access.MEMBER,
    ("POST", "/api/v1/teamcarts/{cart_id:uuid}/payments/online/confirm"): Access.MEMBER,
    ("POST", "/api/v1/teamcarts/{cart_id:uuid}/confirm"): Access.HOST,
    ("POST", "/api/v1/teamcarts/{cart_id:uuid}/cancel"): Access.HOST,
    ("POST", "/api/v1/teamcarts/{cart_id:uuid}/invite/rotate"): Access.HOST,
    ("GET", "/api/v1/teamcarts/{cart_id:uuid}/invite.svg"): Access.MEMBER,
    ("PUT", "/api/v1/teamcarts/{cart_id:uuid}/payment-mode"): Access.HOST,
    ("PUT", "/api/v1/teamcarts/{cart_id:uuid}/allowance"): Access.HOST,
    ("PUT", "/api/v1/teamcarts/{cart_id:uuid}/spending-limit"): Access.HOST,
    ("POST", "/api/v1/teamcarts/{cart_id:uuid}/members/{user_id:uuid}/cover"): Access.HOST,
    ("GET", "/api/v1/orders"): Access.SIGNED_IN,
    ("GET", "/api/v1/orders/{order_id:uuid}"): Access.PARTICIPANT,
    ("POST", "/api/v1/orders/{order_id:uuid}/transitions"): Access.STORE,
    ("POST", "/api/v1/orders/{order_id:uuid}/cancel"): Access.CANCELLER,
    ("POST", "/api/v1/orders/{order_id:uuid}/refunds"): Access.STORE,
    ("GET", "/api/v1/stores/{store_id:uuid}/orders"): Access.STORE,
    ("POST", "/api/v1/stores/{store_id:uuid}/staff"): Access.ADMIN,
    ("POST", "/api/v1/stores/{store_id:uuid}/connect"): Access.STORE,
    ("GET", "/api/v1/stores/{store_id:uuid}/connect"): Access.STORE,
    ("GET", "/api/v1/stores/{store_id:uuid}/payouts"): Access.STORE,
    ("GET", "/api/v1/stores/{store_id:uuid}/payment-config"): Access.ADMIN,
    ("PUT", "/api/v1/stores/{store_id:uuid}/payment-config"): Access.ADMIN,
    ("GET", "/api/v1/stores/{store_id:uuid}/payment-methods"): Access.SIGNED_IN,
    ("POST", "/api/v1/webhooks/stripe/stores/{store_id:uuid}"): Access.PUBLIC,  # its signature
    ("PATCH", "/api/v1/me"): Access.SIGNED_IN,
    ("POST", "/api/v1/referral-codes"): Access.SIGNED_IN,
    ("GET", "/api/v1/referrals/report"): Access.SIGNED_IN,  # a referrer's own, or everyone's
    ("POST", "/api/v1/admin/commissions/{commission_id:uuid}/pay"): Access.ADMIN,
    ("GET", "/api/v1/admin/audit"): Access.ADMIN,
    ("POST", "/api/v1/carts"): Access.SIGNED_IN,
    ("POST", "/api/v1/carts/merge"): Access.SIGNED_IN,
    ("GET", "/api/v1/carts/{shop_cart_id:uuid}"): Access.BUYER,
    ("POST", "/api/v1/carts/{shop_cart_id:uuid}/items"): Access.BUYER,
    ("PATCH", "/api/v1/carts/{shop_cart_id:uuid}/items/{item_id:uuid}"): Access.BUYER,
    ("DELETE", "/api/v1/carts/{shop_cart_id:uuid}/items/{item_id:uuid}"): Access.BUYER,
    ("PUT", "/api/v1/carts/{shop_cart_id:uuid}/address"): Access.BUYER,
    ("PUT", "/api/v1/carts/{shop_cart_id:uuid}/delivery"): Access.BUYER,
    ("POST", "/api/v1/carts/{shop_cart_id:uuid}/checkout"): Access.BUYER,
    ("POST", "/api/v1/carts/{shop_cart_id:uuid}/checkout/confirm"): Access.BUYER,
}
SOCKETS = {
    "/ws/teamcarts/{cart_id:uuid}",  # tested in test_realtime_ws (4401/4403/4404)
    "/ws/orders/{order_id:uuid}",  # tested in test_order_lifecycle
}

MATRIX_ACCOUNT = {"email": f"matrix.{uuid.uuid4().hex[:10]}@example.com", "password": "matrix pass"}
"""Signed up once a session (``matrix_account``), so a sign-in with it succeeds for anyone;
signing up with it again is 409 ``email_taken``, which is allowed too."""

BODIES: dict[str, Any] = {
    "/api/v1/sessions": {"display_name": "Someone"},
    "/api/v1/accounts": {**MATRIX_ACCOUNT, "display_name": "Someone"},
    "/api/v1/sessions/password": MATRIX_ACCOUNT,
    "/api/v1/stores": {"name": "S", "currency": "USD", "delivery_fee_minor": 0, "tax_rate_bps": 0},
    "/products": {"name": "P", "price_minor": 100, "option_groups": []},
    "/coupons": {"code": "M" + uuid.uuid4().hex[:6], "kind": "fixed", "value": 1},
    "/api/v1/teamcarts": {},  # store_id filled in
    "/join": {},  # invite code filled in
    "/items": {},  # product filled in
    "/items/{item_id:uuid}": {"quantity": 2},
    "/ready": {"ready": True},
    "/tip": {"amount_minor": 100},
    "/coupon": {},  # code filled in
    "/payments/online/confirm": {"payment_intent_id": "pi_x1", "payment_method": "pm_x1"},
    "/checkout/confirm": {"payment_intent_id": "pi_x1", "payment_method": "pm_x1"},
    "/confirm": {"delivery_address": ADDRESS},
    "/transitions": {"to": "accepted"},
    "/cancel": {"reason": "matrix"},
    "/refunds": {"amount_minor": 1},  # of a cash payment: 422 for those allowed to ask
    "/address": ADDRESS,
    "/payment-mode": {"mode": "host_pays"},
    "/allowance": {"amount_minor": 100},
    "/spending-limit": {"amount_minor": 100_000},
    "/delivery": {"method": "pickup"},
    "/checkout": {},  # before the address: 409 for the cart's owner
    "/staff": {"user_id": str(uuid.uuid4())},
    "/payment-config": {"cod_enabled": True, "online_enabled": True, "platform_fee_bps": 100},
    "/api/v1/me": {"display_name": "Me"},
}


def routes_of(app: Litestar) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, WebSocketRoute):
            assert route.path in SOCKETS, f"classify the socket {route.path}"
            continue
        assert isinstance(route, HTTPRoute)
        for handler in route.route_handlers:
            found |= {(m, route.path) for m in handler.http_methods if m not in {"HEAD", "OPTIONS"}}
    return found


def test_every_route_is_classified(app: Litestar) -> None:
    assert routes_of(app) == set(ROUTES)


@dataclass
class World:
    headers: dict[str, dict[str, str]]
    values: dict[str, str]
    bodies: dict[str, Any]


async def world(client: Client, admin: dict[str, str], secret: str) -> World:
    store = await create_store(client, admin)
    staff = bearer(issue_token(secret, display_name="Staff", staff_of=store["id"]).token)
    product = await create_product(client, admin, store["id"], option_groups=[])
    code = "A" + uuid.uuid4().hex[:8].upper()
    coupon = await client.post(
        f"/api/v1/stores/{store['id']}/coupons",
        json={"code": code, "kind": "fixed", "value": 100},
        headers=admin,
    )
    assert coupon.status_code == 201, coupon.text
    host, guest, stranger = [await session(client, n) for n in ("Host", "Guest", "Stranger")]
    cart = await open_cart(client, host, store["id"])
    url = f"/api/v1/teamcarts/{cart['id']}"
    joined = await client.post(
        "/api/v1/teamcarts/join", json={"invite_code": cart["invite_code"]}, headers=guest
    )
    assert joined.status_code == 200
    item = (
        await client.post(
            url + "/items", json={"product_id": product["id"], "quantity": 1}, headers=host
        )
    ).json()["item_id"]
    await client.post(
        url + "/items", json={"product_id": product["id"], "quantity": 1}, headers=guest
    )
    return World(
        headers={
            "anonymous": {},
            "stranger": stranger,
            "guest": guest,
            "host": host,
            "staff": staff,
            "admin": admin,
        },
        values={
            "store_id": store["id"],
            "cart_id": cart["id"],
            "item_id": item,
            "user_id": uid(guest),
            "order_id": await an_order_of(client, store["id"], product["id"], host, guest),
            "shop_cart_id": await a_shop_cart_of(client, store["id"], product["id"], host),
            "code": cart["invite_code"],
            "file_path": "app.js",
            "path": "openapi.json",
            "commission_id": str(uuid.uuid4()),  # no such one: 404 for an admin
        },
        bodies={
            "/api/v1/teamcarts": {"store_id": store["id"]},
            "/join": {"invite_code": cart["invite_code"]},
            "/items": {"product_id": product["id"], "quantity": 1},
            "/coupon": {"code": code},
            "/api/v1/carts": {"store_id": store["id"]},
            "/merge": {"guest_token": guest["Authorization"].removeprefix("Bearer ")},
        },
    )


async def a_shop_cart_of(
    client: Client, store_id: str, product_id: str, buyer: dict[str, str]
) -> str:
    """The buyer's single-payer cart at the store, with an item."""
    cart = await client.post("/api/v1/carts", json={"store_id": store_id}, headers=buyer)
    assert cart.status_code == 201, cart.text
    added = await client.post(
        f"/api/v1/carts/{cart.json()['id']}/items",
        json={"product_id": product_id, "quantity": 1},
        headers=buyer,
    )
    assert added.status_code == 201, added.text
    return str(cart.json()["id"])


async def an_order_of(
    client: Client, store_id: str, product_id: str, host: dict[str, str], guest: dict[str, str]
) -> str:
    """An order of another cart of the same two people at the same store, the guest paying
    cash."""
    cart = await open_cart(client, host, store_id)
    url = f"/api/v1/teamcarts/{cart['id']}"
    await client.post(
        "/api/v1/teamcarts/join", json={"invite_code": cart["invite_code"]}, headers=guest
    )
    for person in (host, guest):
        await client.post(
            url + "/items", json={"product_id": product_id, "quantity": 1}, headers=person
        )
    await client.post(url + "/lock", headers=host)
    for person in (host, guest):
        await client.post(url + "/payments/cod", headers=person)
    confirmed = await client.post(
        url + "/confirm", json={"delivery_address": ADDRESS}, headers=host
    )
    assert confirmed.status_code == 201, confirmed.text
    return str(confirmed.json()["order_id"])


def fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+):\w+\}", lambda m: values[m.group(1)], path)


def body_for(path: str, w: World) -> Any:
    for suffix in sorted({**BODIES, **w.bodies}, key=len, reverse=True):
        if path.endswith(suffix):
            return w.bodies.get(suffix, BODIES.get(suffix))
    return None


CASES = [(method, path, role) for (method, path) in sorted(ROUTES) for role in ROLES]


@pytest.fixture(scope="session")
async def matrix_account(client: Client) -> None:
    """The account ``MATRIX_ACCOUNT`` names."""
    response = await client.post(
        "/api/v1/accounts", json={**MATRIX_ACCOUNT, "display_name": "Matrix"}
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(("method", "path", "role"), CASES)
@pytest.mark.usefixtures("matrix_account")
async def test_who_may_call_what(
    client: Client,
    admin_headers: dict[str, str],
    settings: Settings,
    method: str,
    path: str,
    role: str,
) -> None:
    assert settings.jwt_secret is not None
    w = await world(client, admin_headers, settings.jwt_secret)
    access = ROUTES[(method, path)]
    body = body_for(path, w)
    response = await client.request(
        method,
        fill(path, w.values),
        headers=w.headers[role],
        json=body if method in {"POST", "PUT", "PATCH"} else None,
    )
    assert response.status_code < 500, (response.status_code, response.text)
    if role in ALLOWED[access]:
        assert response.status_code not in {401, 403}, (role, response.text)
    elif role == "anonymous":
        assert response.status_code == 401, response.text
    else:
        assert response.status_code == 403, (role, response.text)
