"""Single-payer checkout on the served app, PostgreSQL and the Stripe emulator: a guest's
cart merged on sign-up, the checkout's steps, paying by PaymentIntent and by Checkout
Session, expiry giving the stock back, and Stripe's events taking effect once whatever their
order, a wrong amount never marking the order paid."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.test_group_flow import ADDRESS
from tests.integration.test_online_payments import DECLINED_ON_CHARGE as DECLINED
from tests.integration.test_online_payments import VISA, pay_with_card
from tests.integration.test_order_lifecycle import a_store, member
from tests.integration.test_order_lifecycle import emulator as emulator_client
from tests.stripe_events import body_and_headers, event

pytestmark = pytest.mark.usefixtures("live_server")


@pytest.fixture
async def http(live_server: str) -> Any:
    async with httpx.AsyncClient(base_url=live_server, timeout=15) as client:
        yield client


async def a_product(
    http: httpx.AsyncClient, admin: dict[str, str], store_id: str, *, price: int, stock: int | None
) -> dict[str, Any]:
    made = await http.post(
        f"/api/v1/stores/{store_id}/products",
        json={"name": "Bagel", "price_minor": price, "stock": stock, "option_groups": []},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    product: dict[str, Any] = made.json()
    return product


async def sign_up(http: httpx.AsyncClient, name: str) -> dict[str, str]:
    email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.test"
    made = await http.post(
        "/api/v1/accounts",
        json={"email": email, "password": "correct horse battery", "display_name": name},
    )
    assert made.status_code == 201, made.text
    signed_in = await http.post(
        "/api/v1/sessions/password", json={"email": email, "password": "correct horse battery"}
    )
    assert signed_in.status_code == 201, signed_in.text
    body = signed_in.json()
    return {"Authorization": f"Bearer {body['token']}", "X-User-Id": body["user_id"]}


async def stock_of(http: httpx.AsyncClient, headers: dict[str, str], store_id: str) -> int:
    items = (await http.get(f"/api/v1/stores/{store_id}/products", headers=headers)).json()
    stock: int = items["items"][0]["stock"]
    return stock


async def order_of(
    http: httpx.AsyncClient, headers: dict[str, str], order_id: str, status: str
) -> dict[str, Any]:
    for _ in range(100):
        order: dict[str, Any] = (
            await http.get(f"/api/v1/orders/{order_id}", headers=headers)
        ).json()
        if order["status"] == status:
            return order
        await asyncio.sleep(0.05)
    raise AssertionError(f"the order stayed {order['status']}, never {status}")


async def ready_cart(
    http: httpx.AsyncClient, buyer: dict[str, str], store_id: str, product_id: str, quantity: int
) -> str:
    cart = (await http.post("/api/v1/carts", json={"store_id": store_id}, headers=buyer)).json()
    url = f"/api/v1/carts/{cart['id']}"
    added = await http.post(
        url + "/items", json={"product_id": product_id, "quantity": quantity}, headers=buyer
    )
    assert added.status_code == 201, added.text
    assert (await http.put(url + "/address", json=ADDRESS, headers=buyer)).status_code == 200
    delivery = await http.put(url + "/delivery", json={"method": "delivery"}, headers=buyer)
    assert delivery.status_code == 200, delivery.text
    return url


async def test_a_guest_cart_merged_on_sign_up_checked_out_and_paid_by_payment_intent(
    http: httpx.AsyncClient, admin_headers: dict[str, str], stripe_api_base: str
) -> None:
    store = await a_store(http, admin_headers, name="Bagel Shop")
    bagel = await a_product(http, admin_headers, store["id"], price=350, stock=10)
    guest = await member(http, "Guest")
    guest_cart = (
        await http.post("/api/v1/carts", json={"store_id": store["id"]}, headers=guest)
    ).json()
    assert (guest_cart["status"], guest_cart["state"]) == ("open", "cart")
    again = (await http.post("/api/v1/carts", json={"store_id": store["id"]}, headers=guest)).json()
    assert again["id"] == guest_cart["id"]  # one open cart per user and store
    added = await http.post(
        f"/api/v1/carts/{guest_cart['id']}/items",
        json={"product_id": bagel["id"], "quantity": 3},
        headers=guest,
    )
    assert added.status_code == 201, added.text

    buyer = await sign_up(http, "Bea")
    mine = (await http.post("/api/v1/carts", json={"store_id": store["id"]}, headers=buyer)).json()
    await http.post(
        f"/api/v1/carts/{mine['id']}/items",
        json={"product_id": bagel["id"], "quantity": 1},
        headers=buyer,
    )
    guest_token = guest["Authorization"].removeprefix("Bearer ")
    merged = await http.post(
        "/api/v1/carts/merge", json={"guest_token": guest_token}, headers=buyer
    )
    assert merged.status_code == 200, merged.text
    cart = merged.json()
    assert cart["id"] == mine["id"]
    assert [i["quantity"] for i in cart["items"]] == [4]  # 1 + the guest's 3
    closed = await http.get(f"/api/v1/carts/{guest_cart['id']}", headers=guest)
    assert closed.json()["status"] == "merged"
    refused = await http.post(
        f"/api/v1/carts/{guest_cart['id']}/items",
        json={"product_id": bagel["id"], "quantity": 1},
        headers=guest,
    )
    assert refused.status_code == 409
    assert (await http.get(f"/api/v1/carts/{mine['id']}", headers=guest)).status_code == 403

    url = f"/api/v1/carts/{mine['id']}"
    early = await http.post(url + "/checkout", json={"mode": "payment_intent"}, headers=buyer)
    assert early.status_code == 409
    assert early.json()["code"] == "checkout_step_missing"
    address = await http.put(url + "/address", json=ADDRESS, headers=buyer)
    assert address.json()["state"] == "address"
    pickup = await http.put(url + "/delivery", json={"method": "pickup"}, headers=buyer)
    assert (pickup.json()["state"], pickup.json()["delivery_fee_minor"]) == ("delivery", 0)
    delivered = await http.put(url + "/delivery", json={"method": "delivery"}, headers=buyer)
    view = delivered.json()
    assert view["delivery_fee_minor"] == 300
    assert view["total_minor"] == 4 * 350 + 300

    paying = await http.post(url + "/checkout", json={"mode": "payment_intent"}, headers=buyer)
    assert paying.status_code == 201, paying.text
    started = paying.json()
    assert started["client_secret"]
    assert started["publishable_key"].startswith("pk_")
    assert await stock_of(http, buyer, store["id"]) == 6  # reserved at checkout
    order = await order_of(http, buyer, started["order_id"], "awaiting_payment")
    assert (order["kind"], order["total_minor"]) == ("single", 1700)
    assert order["teamcart_id"] is None

    assert await pay_with_card(stripe_api_base, started["payment_intent_id"], VISA) == "succeeded"
    placed = await order_of(http, buyer, started["order_id"], "placed")
    [payment] = placed["payments"]
    assert (payment["status"], payment["amount_minor"]) == ("paid_online", 1700)
    assert [h["status"] for h in placed["history"]] == ["awaiting_payment", "placed"]
    assert await stock_of(http, buyer, store["id"]) == 6  # sold
    checked_out = (await http.get(url, headers=buyer)).json()
    assert (checked_out["status"], checked_out["state"]) == ("checked_out", "payment")
    again_paid = await http.post(url + "/checkout", json={"mode": "payment_intent"}, headers=buyer)
    assert again_paid.status_code == 409
    assert again_paid.json()["code"] == "order_not_payable"


async def post_event(http: httpx.AsyncClient, evt: dict[str, Any]) -> dict[str, Any]:
    body, headers = body_and_headers(evt)
    answer = await http.post("/api/v1/webhooks/stripe", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    outcome: dict[str, Any] = answer.json()
    return outcome


def intent_event(kind: str, intent_id: str, order_id: str, amount: int) -> dict[str, Any]:
    return event(
        f"payment_intent.{kind}",
        {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_received": amount if kind == "succeeded" else 0,
            "currency": "usd",
            "metadata": {"source": "order", "order_id": order_id, "purpose": "order_payment"},
            "status": "succeeded" if kind == "succeeded" else "requires_payment_method",
        },
    )


async def test_events_take_effect_once_in_any_order_and_a_wrong_amount_never_pays(
    http: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    store = await a_store(http, admin_headers)
    bagel = await a_product(http, admin_headers, store["id"], price=500, stock=None)
    buyer = await member(http, "Bo")
    url = await ready_cart(http, buyer, store["id"], bagel["id"], 2)
    started = (await http.post(url + "/checkout", json={}, headers=buyer)).json()
    order_id, intent = started["order_id"], started["payment_intent_id"]
    total = 2 * 500 + 300

    wrong = await post_event(http, intent_event("succeeded", intent, order_id, total - 1))
    assert wrong["outcome"] == "refunded"
    assert (await order_of(http, buyer, order_id, "awaiting_payment"))["payments"][0][
        "status"
    ] == "pending"

    # A failure reported after the success (Stripe doesn't order its events), and the
    # success delivered twice: paid once, and stays paid.
    success = intent_event("succeeded", intent + "_retry", order_id, total)
    assert (await post_event(http, success))["outcome"] == "applied"
    assert (await post_event(http, success))["outcome"] == "duplicate"
    late_failure = await post_event(http, intent_event("payment_failed", intent, order_id, total))
    assert late_failure["outcome"] == "ignored"
    placed = await order_of(http, buyer, order_id, "placed")
    assert placed["version"] == 3  # awaiting payment, the attempt named, placed
    # A second capture for a paid order is given back, never kept.
    second = await post_event(http, intent_event("succeeded", intent + "_b", order_id, total))
    assert (second["outcome"], second["reason"]) == ("refunded", "order_placed")
    assert (await order_of(http, buyer, order_id, "placed"))["version"] == 3


async def test_a_failed_payment_may_be_paid_again(
    http: httpx.AsyncClient, admin_headers: dict[str, str], stripe_api_base: str
) -> None:
    store = await a_store(http, admin_headers)
    bagel = await a_product(http, admin_headers, store["id"], price=800, stock=5)
    buyer = await member(http, "Cy")
    url = await ready_cart(http, buyer, store["id"], bagel["id"], 1)
    first = (await http.post(url + "/checkout", json={}, headers=buyer)).json()
    declined = await pay_with_card(stripe_api_base, first["payment_intent_id"], DECLINED)
    assert declined == "declined"
    await order_of(http, buyer, first["order_id"], "payment_failed")
    second = (await http.post(url + "/checkout", json={}, headers=buyer)).json()
    assert second["order_id"] == first["order_id"]
    assert second["payment_intent_id"] != first["payment_intent_id"]
    assert await stock_of(http, buyer, store["id"]) == 4  # still held for the buyer
    assert await pay_with_card(stripe_api_base, second["payment_intent_id"], VISA) == "succeeded"
    await order_of(http, buyer, first["order_id"], "placed")


async def pay_on_hosted_page(checkout_url: str, card: str = "4242424242424242") -> httpx.Response:
    """What the buyer does on Stripe's hosted Checkout page (the add-on's, here)."""
    async with httpx.AsyncClient(timeout=15) as browser:
        page = await browser.get(checkout_url)
        if page.status_code != 200:
            return page  # expired, or paid already: nothing to pay
        return await browser.post(
            checkout_url,
            data={
                "email": "bea@example.test",
                "card_number": card,
                "card_expiry": "12 / 34",
                "card_cvc": "123",
            },
        )


async def test_paid_on_a_checkout_session(
    http: httpx.AsyncClient, admin_headers: dict[str, str], live_server: str
) -> None:
    store = await a_store(http, admin_headers, name="Bagel Shop")
    bagel = await a_product(http, admin_headers, store["id"], price=420, stock=3)
    buyer = await sign_up(http, "Dee")
    url = await ready_cart(http, buyer, store["id"], bagel["id"], 2)
    started = await http.post(
        url + "/checkout",
        json={"mode": "checkout_session", "success_url": f"{live_server}/#/done"},
        headers=buyer,
    )
    assert started.status_code == 201, started.text
    session = started.json()
    assert session["checkout_session_id"].startswith("cs_")
    assert session["checkout_url"].startswith("http")
    assert await stock_of(http, buyer, store["id"]) == 1
    await order_of(http, buyer, session["order_id"], "awaiting_payment")

    paid = await pay_on_hosted_page(session["checkout_url"])
    assert paid.status_code == 303
    assert paid.headers["location"] == f"{live_server}/#/done"
    placed = await order_of(http, buyer, session["order_id"], "placed")
    assert placed["payments"][0]["status"] == "paid_online"
    assert placed["total_minor"] == 2 * 420 + 300
    # The session's completion and its intent's success both come: the order moved once.
    await asyncio.sleep(0.5)
    final = await order_of(http, buyer, session["order_id"], "placed")
    assert final["version"] == placed["version"]
    assert [h["status"] for h in final["history"]] == ["awaiting_payment", "placed"]


async def test_an_expired_checkout_session_gives_the_stock_back(
    http: httpx.AsyncClient, admin_headers: dict[str, str], stripe_api_base: str
) -> None:
    store = await a_store(http, admin_headers)
    bagel = await a_product(http, admin_headers, store["id"], price=300, stock=4)
    buyer = await member(http, "Eve")
    url = await ready_cart(http, buyer, store["id"], bagel["id"], 3)
    session = (
        await http.post(url + "/checkout", json={"mode": "checkout_session"}, headers=buyer)
    ).json()
    assert await stock_of(http, buyer, store["id"]) == 1
    # The session expires unpaid (Stripe's dashboard, or its time running out).
    async with httpx.AsyncClient(base_url=stripe_api_base, timeout=10) as stripe_api:
        expired = await stripe_api.post(
            f"/v1/checkout/sessions/{session['checkout_session_id']}/expire",
            auth=("sk_test_teamcart", ""),
        )
    assert expired.status_code == 200, expired.text
    cancelled = await order_of(http, buyer, session["order_id"], "cancelled")
    assert cancelled["history"][-1]["by_role"] == "system"
    assert await stock_of(http, buyer, store["id"]) == 4
    late = await pay_on_hosted_page(session["checkout_url"])
    assert late.status_code != 303  # an expired session takes no payment
    assert (await order_of(http, buyer, session["order_id"], "cancelled"))["version"] == cancelled[
        "version"
    ]


async def test_a_card_confirmed_through_the_server_and_a_checkout_page_left_and_resumed(
    http: httpx.AsyncClient, admin_headers: dict[str, str], stripe_api_base: str
) -> None:
    store = await a_store(http, admin_headers)
    bagel = await a_product(http, admin_headers, store["id"], price=500, stock=None)
    buyer = await member(http, "Fay")
    url = await ready_cart(http, buyer, store["id"], bagel["id"], 1)
    first = (
        await http.post(url + "/checkout", json={"mode": "checkout_session"}, headers=buyer)
    ).json()
    again = await http.post(url + "/checkout", json={"mode": "checkout_session"}, headers=buyer)
    assert again.status_code == 201, again.text  # back from Stripe's page: the same session
    assert again.json()["checkout_session_id"] == first["checkout_session_id"]
    card = await http.post(url + "/checkout", json={"mode": "payment_intent"}, headers=buyer)
    assert card.status_code == 201, card.text
    started = card.json()
    assert started["confirm_on_server"] is True  # the emulator's Stripe.js only tokenises
    async with emulator_client(stripe_api_base) as stripe_api:
        method = await stripe_api.v1.payment_methods.create_async(
            params={
                "type": "card",
                "card": {"number": VISA, "exp_month": 12, "exp_year": 2030, "cvc": "123"},
            }
        )
    confirmed = await http.post(
        url + "/checkout/confirm",
        json={"payment_intent_id": started["payment_intent_id"], "payment_method": method.id},
        headers=buyer,
    )
    assert confirmed.status_code == 200, confirmed.text
    await order_of(http, buyer, started["order_id"], "placed")
    stranger = await member(http, "Gus")
    other = await http.post(
        url + "/checkout/confirm",
        json={"payment_intent_id": started["payment_intent_id"], "payment_method": method.id},
        headers=stranger,
    )
    assert other.status_code == 403


async def test_a_store_that_takes_no_online_payment_refuses_before_the_order(
    http: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    store = await a_store(http, admin_headers)
    bagel = await a_product(http, admin_headers, store["id"], price=400, stock=5)
    config = await http.put(
        f"/api/v1/stores/{store['id']}/payment-config",
        json={"cod_enabled": True, "online_enabled": False, "platform_fee_bps": 0},
        headers=admin_headers,
    )
    assert config.status_code == 200, config.text
    buyer = await member(http, "Hal")
    url = await ready_cart(http, buyer, store["id"], bagel["id"], 2)
    refused = await http.post(url + "/checkout", json={}, headers=buyer)
    assert (refused.status_code, refused.json()["code"]) == (409, "online_disabled")
    cart = (await http.get(url, headers=buyer)).json()
    assert (cart["status"], cart["order_id"]) == ("open", None)  # no order made
    assert await stock_of(http, buyer, store["id"]) == 5  # and no stock taken
