"""Orders after confirm, end to end on the served app: the store's staff move a group order
to delivered while every member's order socket watches; cancel and its refunds; partial
refunds under concurrency and refunds made outside the server, against the real emulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import stripe
from websockets.asyncio.client import ClientConnection, connect

from app.auth import issue_token
from app.config import Settings
from app.embedded import EMULATOR_SECRET_KEY
from tests.integration.test_group_flow import ADDRESS
from tests.integration.test_online_payments import VISA, pay_with_card, wait_for_payment
from tests.integration.test_realtime_ws import close_code, receive, token_of
from tests.stripe_events import body_and_headers, charge_refunded, dispute, event

pytestmark = pytest.mark.usefixtures("live_server")


@pytest.fixture
async def http(live_server: str) -> Any:
    async with httpx.AsyncClient(base_url=live_server, timeout=15) as client:
        yield client


async def member(http: httpx.AsyncClient, name: str, email: str | None = None) -> dict[str, str]:
    """A guest session (with an email when given): its headers, and its user id."""
    answer = await http.post(
        "/api/v1/sessions", json={"display_name": name, **({"email": email} if email else {})}
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return {"Authorization": f"Bearer {body['token']}", "X-User-Id": body["user_id"]}


def order_socket(base: str, order_id: str, headers: dict[str, str]) -> str:
    return base.replace("http://", "ws://", 1) + f"/ws/orders/{order_id}?token={token_of(headers)}"


def staff_of(settings: Settings, store_id: str) -> dict[str, str]:
    assert settings.jwt_secret is not None
    token = issue_token(settings.jwt_secret, display_name="Kitchen", staff_of=store_id).token
    return {"Authorization": f"Bearer {token}"}


async def a_store(http: httpx.AsyncClient, admin: dict[str, str], **terms: Any) -> dict[str, Any]:
    store = await http.post(
        "/api/v1/stores",
        json={
            "name": terms.pop("name", "Noodle Bar"),
            "currency": terms.pop("currency", "USD"),
            "delivery_fee_minor": 300,
            "tax_rate_bps": 0,
        },
        headers=admin,
    )
    assert store.status_code == 201, store.text
    body: dict[str, Any] = store.json()
    return body


async def an_order(
    http: httpx.AsyncClient,
    admin: dict[str, str],
    api_base: str,
    *,
    online: tuple[str, ...] = ("Ana",),
    cash: tuple[str, ...] = ("Host", "Ben"),
    stock: int | None = None,
    emails: dict[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, str]]]:
    """A confirmed group order at a new store: the people named in ``online`` paid with a
    card through the emulator, those in ``cash`` committed to cash. The host is ``Host``;
    those named in ``emails`` signed in with that address."""
    store = await a_store(http, admin)
    product = await http.post(
        f"/api/v1/stores/{store['id']}/products",
        json={"name": "Ramen", "price_minor": 1200, "stock": stock, "option_groups": []},
        headers=admin,
    )
    assert product.status_code == 201, product.text
    people = {
        name: await member(http, name, (emails or {}).get(name))
        for name in ("Host", *online, *cash)
    }
    host = people["Host"]
    cart = (
        await http.post("/api/v1/teamcarts", json={"store_id": store["id"]}, headers=host)
    ).json()
    url = f"/api/v1/teamcarts/{cart['id']}"
    for person in people.values():
        if person is not host:
            joined = await http.post(
                "/api/v1/teamcarts/join", json={"invite_code": cart["invite_code"]}, headers=person
            )
            assert joined.status_code == 200, joined.text
        added = await http.post(
            url + "/items", json={"product_id": product.json()["id"], "quantity": 1}, headers=person
        )
        assert added.status_code == 201, added.text
    assert (await http.post(url + "/lock", headers=host)).status_code == 200
    for name in cash:
        assert (await http.post(url + "/payments/cod", headers=people[name])).status_code == 200
    for name in online:
        started = (await http.post(url + "/payments/online", headers=people[name])).json()
        assert await pay_with_card(api_base, started["payment_intent_id"], VISA) == "succeeded"
        await wait_for_payment(http, url, host, people[name]["X-User-Id"], "paid_online")
    for _ in range(100):
        if (await http.get(url, headers=host)).json()["status"] == "ready_to_confirm":
            break
        await asyncio.sleep(0.05)
    confirmed = await http.post(url + "/confirm", json={"delivery_address": ADDRESS}, headers=host)
    assert confirmed.status_code == 201, confirmed.text
    order = (await http.get(f"/api/v1/orders/{confirmed.json()['order_id']}", headers=host)).json()
    return store, order, people


async def next_update(ws: ClientConnection) -> dict[str, Any]:
    while (message := await receive(ws, 10))["type"] not in {"update", "snapshot"}:
        pass
    return message


async def test_staff_move_a_group_order_to_delivered_and_every_member_sees_each_step(
    http: httpx.AsyncClient,
    live_server: str,
    admin_headers: dict[str, str],
    stripe_api_base: str,
    settings: Settings,
) -> None:
    store, order, people = await an_order(http, admin_headers, stripe_api_base)
    assert order["status"] == "placed"
    assert order["kind"] == "group"
    assert order["store_name"] == "Noodle Bar"
    assert order["teamcart_id"]
    assert order["number"].startswith("TC-")
    assert {p["display_name"] for p in order["payments"]} == {"Host", "Ana", "Ben"}
    assert [h["status"] for h in order["history"]] == ["placed"]
    staff = staff_of(settings, store["id"])
    order_url = f"/api/v1/orders/{order['id']}"

    sockets = [
        await connect(order_socket(live_server, order["id"], who))
        for who in (*people.values(), staff)
    ]
    try:
        for ws in sockets:
            snapshot = await next_update(ws)
            assert snapshot["type"] == "snapshot"
            assert (snapshot["version"], snapshot["order"]["status"]) == (1, "placed")

        steps: list[dict[str, Any]] = [
            {"to": "accepted"},
            {"to": "preparing"},
            {"to": "shipped", "carrier": "UPS", "tracking_number": "1Z999AA10123456784"},
            {"to": "delivered"},
        ]
        for step in steps:
            moved = await http.post(order_url + "/transitions", json=step, headers=staff)
            assert moved.status_code == 200, moved.text
            assert moved.json()["status"] == step["to"]

        for ws in sockets:
            seen = [await next_update(ws) for _ in steps]
            assert [m["version"] for m in seen] == [2, 3, 4, 5]
            assert [m["event"] for m in seen] == [
                "order_accepted",
                "order_preparing",
                "order_shipped",
                "order_delivered",
            ]
            assert seen[2]["order"]["tracking"]["tracking_number"] == "1Z999AA10123456784"
            assert seen[2]["order"]["tracking"]["url"].startswith("https://www.ups.com/")
            assert seen[-1]["order"]["status"] == "delivered"
            ws_ping = json.dumps({"type": "ping"})
            await ws.send(ws_ping)
            assert (await receive(ws))["type"] == "pong"
    finally:
        for ws in sockets:
            await ws.close()

    final = (await http.get(order_url, headers=people["Ben"])).json()
    assert [(h["status"], h["by_role"]) for h in final["history"]] == [
        ("placed", "host"),
        ("accepted", "staff"),
        ("preparing", "staff"),
        ("shipped", "staff"),
        ("delivered", "staff"),
    ]
    assert final["my_amount_minor"] == next(
        p["amount_minor"] for p in final["payments"] if p["user_id"] == people["Ben"]["X-User-Id"]
    )
    again = await http.post(order_url + "/transitions", json={"to": "accepted"}, headers=staff)
    assert again.status_code == 409
    assert again.json()["code"] == "illegal_transition"
    assert again.json()["allowed"] == []

    listed = await http.get(f"/api/v1/stores/{store['id']}/orders?status=delivered", headers=staff)
    assert [o["id"] for o in listed.json()["items"]] == [order["id"]]
    none_placed = await http.get(
        f"/api/v1/stores/{store['id']}/orders?status=placed", headers=staff
    )
    assert none_placed.json()["items"] == []


async def test_who_may_not_see_or_move_an_order_is_told_so(
    http: httpx.AsyncClient,
    live_server: str,
    admin_headers: dict[str, str],
    stripe_api_base: str,
    settings: Settings,
) -> None:
    store, order, people = await an_order(http, admin_headers, stripe_api_base, online=())
    order_url = f"/api/v1/orders/{order['id']}"
    stranger = await member(http, "Stranger")
    other_store = await a_store(http, admin_headers, name="Elsewhere")
    other_staff = staff_of(settings, other_store["id"])

    assert (await http.get(order_url, headers=stranger)).status_code == 403
    assert (await http.get(order_url, headers=other_staff)).status_code == 403
    for who in (stranger, other_staff, people["Ben"], people["Host"]):
        moved = await http.post(order_url + "/transitions", json={"to": "accepted"}, headers=who)
        assert moved.status_code == 403, moved.text
        assert moved.json()["code"] == "staff_only"
    listed = await http.get(f"/api/v1/stores/{store['id']}/orders", headers=other_staff)
    assert listed.status_code == 403
    cancelled = await http.post(order_url + "/cancel", json={"reason": "no"}, headers=people["Ben"])
    assert cancelled.status_code == 403
    assert cancelled.json()["code"] == "may_not_cancel"

    async with connect(order_socket(live_server, order["id"], stranger)) as ws:
        assert await close_code(ws) == 4403
    async with connect(order_socket(live_server, order["id"], other_staff)) as ws:
        assert await close_code(ws) == 4403
    async with connect(order_socket(live_server, str(uuid.uuid4()), people["Host"])) as ws:
        assert await close_code(ws) == 4404
    url = live_server.replace("http://", "ws://", 1) + f"/ws/orders/{order['id']}?token=forged"
    async with connect(url) as ws:
        assert await close_code(ws) == 4401

    # Staff added through the API (not by their token) read and move the store's orders.
    cook = await member(http, "Cook")
    added = await http.post(
        f"/api/v1/stores/{store['id']}/staff",
        json={"user_id": cook["X-User-Id"]},
        headers=admin_headers,
    )
    assert added.status_code == 201, added.text
    moved = await http.post(order_url + "/transitions", json={"to": "rejected"}, headers=cook)
    assert moved.status_code == 200, moved.text
    assert moved.json()["history"][-1]["by_role"] == "staff"


@contextlib.asynccontextmanager
async def emulator(api_base: str) -> AsyncIterator[stripe.StripeClient]:
    """The Stripe SDK on the emulator, as the store's dashboard would use Stripe."""
    http_client = stripe.HTTPXClient(allow_sync_methods=True)
    try:
        yield stripe.StripeClient(
            EMULATOR_SECRET_KEY, base_addresses={"api": api_base}, http_client=http_client
        )
    finally:
        await http_client.close_async()  # type: ignore[no-untyped-call]  # stripe: unannotated


async def refunded_at_stripe(api_base: str, intent_id: str) -> int:
    async with emulator(api_base) as client:
        refunds = await client.v1.refunds.list_async(params={"payment_intent": intent_id})
    return sum(int(r.amount) for r in refunds.data if r.status != "failed")


async def wait_for_order(
    http: httpx.AsyncClient, url: str, headers: dict[str, str], done: Any
) -> dict[str, Any]:
    for _ in range(100):
        order: dict[str, Any] = (await http.get(url, headers=headers)).json()
        if done(order):
            return order
        await asyncio.sleep(0.05)
    raise AssertionError(f"the order never got there: {order}")


async def test_twenty_concurrent_partial_refunds_never_refund_more_than_was_paid(
    http: httpx.AsyncClient, admin_headers: dict[str, str], stripe_api_base: str, settings: Settings
) -> None:
    store, order, people = await an_order(http, admin_headers, stripe_api_base)
    staff = staff_of(settings, store["id"])
    ana = next(p for p in order["payments"] if p["display_name"] == "Ana")
    order_url = f"/api/v1/orders/{order['id']}"
    part = 130  # ana paid 1200 + her share of the delivery fee

    answers = await asyncio.gather(
        *(
            http.post(
                order_url + "/refunds",
                json={"amount_minor": part, "user_id": ana["user_id"], "reason": "cold soup"},
                headers=staff,
            )
            for _ in range(20)
        )
    )
    made = [a for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code != 201]
    assert len(made) == ana["amount_minor"] // part, [a.text for a in refused]
    assert all(a.json()["code"] == "refund_exceeds_paid" for a in refused)
    # Stripe's refund id once it made the refund; ours, still pending, when another
    # request's after-commit had this one in hand (it carries out every pending one).
    assert all(
        (a.json()["status"], a.json()["refund_id"][:3])
        in {("succeeded", "re_"), ("pending", "par")}
        for a in made
    )

    expected = len(made) * part
    assert await refunded_at_stripe(stripe_api_base, ana["reference"]) == expected
    # Every refund's webhook has come in and changed nothing: the sum stays Stripe's.
    await asyncio.sleep(1.0)
    final = (await http.get(order_url, headers=people["Ana"])).json()
    mine = next(p for p in final["payments"] if p["user_id"] == ana["user_id"])
    assert mine["refunded_minor"] == expected
    assert final["my_refunded_minor"] == expected
    assert sum(p["refunded_minor"] for p in final["payments"]) == expected
    too_much = await http.post(
        order_url + "/refunds",
        json={"amount_minor": ana["amount_minor"], "user_id": ana["user_id"]},
        headers=staff,
    )
    assert too_much.status_code == 422
    assert too_much.json()["refundable_minor"] == ana["amount_minor"] - expected


async def test_a_refund_made_outside_the_server_is_reflected_on_the_order(
    http: httpx.AsyncClient,
    live_server: str,
    admin_headers: dict[str, str],
    stripe_api_base: str,
) -> None:
    _, order, people = await an_order(http, admin_headers, stripe_api_base)
    ana = next(p for p in order["payments"] if p["display_name"] == "Ana")
    order_url = f"/api/v1/orders/{order['id']}"
    async with connect(order_socket(live_server, order["id"], people["Ana"])) as ws:
        assert (await next_update(ws))["version"] == 1
        # The store refunds 400 in Stripe's dashboard; Stripe tells us with charge.refunded
        # (which the emulator doesn't send: it is sent here as Stripe shapes and signs it).
        async with emulator(stripe_api_base) as dashboard:
            made = await dashboard.v1.refunds.create_async(
                params={"payment_intent": ana["reference"], "amount": 400}
            )
        charge = {
            **charge_refunded(ana["reference"], amount=400, currency="usd", refund_id=made.id),
            "amount": ana["amount_minor"],
            "refunded": False,
        }
        body, headers = body_and_headers(event("charge.refunded", charge))
        answer = await http.post("/api/v1/webhooks/stripe", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        update = await next_update(ws)
    assert (update["event"], update["version"]) == ("order_refunded", 2)
    mine = next(p for p in update["order"]["payments"] if p["user_id"] == ana["user_id"])
    assert (mine["refunded_minor"], mine["status"]) == (400, "paid_online")
    final = await wait_for_order(http, order_url, people["Host"], lambda o: o["version"] == 2)
    assert sum(p["refunded_minor"] for p in final["payments"]) == 400


async def test_cancel_refunds_every_online_payment_in_full_and_returns_the_stock(
    http: httpx.AsyncClient, admin_headers: dict[str, str], stripe_api_base: str, settings: Settings
) -> None:
    store, order, people = await an_order(
        http, admin_headers, stripe_api_base, online=("Ana", "Ben"), cash=("Host",), stock=10
    )
    order_url = f"/api/v1/orders/{order['id']}"
    staff = staff_of(settings, store["id"])
    products_url = f"/api/v1/stores/{store['id']}/products"
    assert (await http.get(products_url, headers=staff)).json()["items"][0]["stock"] == 7
    accepted = await http.post(order_url + "/transitions", json={"to": "accepted"}, headers=staff)
    assert accepted.status_code == 200
    late = await http.post(order_url + "/cancel", json={"reason": "late"}, headers=people["Host"])
    assert late.status_code == 409
    assert late.json()["code"] == "order_not_cancellable"

    cancelled = await http.post(
        order_url + "/cancel", json={"reason": "out of broth"}, headers=staff
    )
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["status"] == "cancelled"
    assert body["history"][-1] == {
        **body["history"][-1],
        "by_role": "staff",
        "reason": "out of broth",
    }
    for payment in body["payments"]:
        if payment["method"] == "online":
            assert payment["refunded_minor"] == payment["amount_minor"]
            assert payment["status"] == "refunded"
            intent = payment["reference"]
            assert await refunded_at_stripe(stripe_api_base, intent) == payment["amount_minor"]
    assert (await http.get(products_url, headers=staff)).json()["items"][0]["stock"] == 10
    await asyncio.sleep(0.5)  # the refunds' webhooks change nothing more
    final = (await http.get(order_url, headers=people["Ana"])).json()
    assert final["version"] == body["version"]
    again = await http.post(order_url + "/cancel", json={"reason": "twice"}, headers=staff)
    assert again.status_code == 409


async def test_a_dispute_marks_the_payment_and_a_lost_one_is_never_paid_again(
    http: httpx.AsyncClient, admin_headers: dict[str, str], stripe_api_base: str, settings: Settings
) -> None:
    store, order, people = await an_order(http, admin_headers, stripe_api_base)
    ana = next(p for p in order["payments"] if p["display_name"] == "Ana")
    order_url = f"/api/v1/orders/{order['id']}"
    opened = dispute(ana["reference"], amount=ana["amount_minor"], currency="usd")
    closed = {**opened, "status": "lost"}
    # Closed reported before created: the late ``created`` must not reopen it.
    for evt in (event("charge.dispute.closed", closed), event("charge.dispute.created", opened)):
        body, headers = body_and_headers(evt)
        answer = await http.post("/api/v1/webhooks/stripe", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
    final = (await http.get(order_url, headers=people["Host"])).json()
    mine = next(p for p in final["payments"] if p["user_id"] == ana["user_id"])
    assert mine["status"] == "lost"
    refund = await http.post(
        order_url + "/refunds",
        json={"amount_minor": 100, "user_id": ana["user_id"]},
        headers=staff_of(settings, store["id"]),
    )
    assert refund.status_code == 422
    assert refund.json()["code"] == "payment_not_refundable"
    metrics = (await http.get("/metrics")).text
    assert 'teamcart_payment_alerts_total{kind="dispute_lost"}' in metrics


async def test_a_refund_stripe_reports_failed_is_no_longer_counted_as_given_back(
    http: httpx.AsyncClient, admin_headers: dict[str, str], stripe_api_base: str, settings: Settings
) -> None:
    store, order, people = await an_order(http, admin_headers, stripe_api_base)
    ana = next(p for p in order["payments"] if p["display_name"] == "Ana")
    order_url = f"/api/v1/orders/{order['id']}"
    staff = staff_of(settings, store["id"])
    made = await http.post(
        order_url + "/refunds",
        json={"amount_minor": 200, "user_id": ana["user_id"], "reason": "spilled"},
        headers=staff,
    )
    assert made.status_code == 201, made.text
    refund_id = made.json()["refund_id"]
    assert refund_id.startswith("re_")
    failed = {
        "id": refund_id,
        "object": "refund",
        "amount": 200,
        "currency": "usd",
        "payment_intent": ana["reference"],
        "status": "failed",
        "failure_reason": "expired_or_canceled_card",
    }
    body, headers = body_and_headers(event("refund.updated", failed))
    assert (await http.post("/api/v1/webhooks/stripe", content=body, headers=headers)).is_success
    final = (await http.get(order_url, headers=people["Ana"])).json()
    mine = next(p for p in final["payments"] if p["user_id"] == ana["user_id"])
    assert (mine["refunded_minor"], mine["status"]) == (0, "paid_online")
    assert final["history"][-1]["status"] == "placed"  # refunds aren't moves
    again = await http.post(
        order_url + "/refunds",
        json={"amount_minor": ana["amount_minor"], "user_id": ana["user_id"]},
        headers=staff,
    )
    assert again.status_code == 201, again.text  # all of it may be given back again
