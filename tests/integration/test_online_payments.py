"""Members pay online through the real localstripe emulator, which sends real signed webhooks.

The browser's part (Stripe.js confirming the PaymentIntent with a card) is done here with the
stripe SDK against the emulator, using the publishable key the server handed out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import stripe

from app.embedded import EMULATOR_SECRET_KEY
from app.payments.gateway import StripeGateway
from tests.builders import Client
from tests.integration.test_group_flow import ADDRESS, uid

VISA = "4242424242424242"
DECLINED_ON_CHARGE = "4000000000000341"


async def pay_with_card(api_base: str, intent_id: str, number: str) -> str:
    """What Stripe.js does on the member's page: attach a card and confirm. Returns status.

    The emulator takes a publishable key on only a few endpoints, so this stand-in for the
    browser uses the emulator's secret key; the browser tests use the emulator's Stripe.js.
    """
    http_client = stripe.HTTPXClient(allow_sync_methods=True)
    browser = stripe.StripeClient(
        EMULATOR_SECRET_KEY,
        base_addresses={"api": api_base},
        http_client=http_client,
    )
    try:
        return await _attach_and_confirm(browser, intent_id, number)
    finally:
        await http_client.close_async()  # type: ignore[no-untyped-call]  # stripe: unannotated


async def _attach_and_confirm(browser: stripe.StripeClient, intent_id: str, number: str) -> str:
    method = await browser.v1.payment_methods.create_async(
        params={
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        }
    )
    await browser.v1.payment_intents.update_async(intent_id, params={"payment_method": method.id})
    try:
        confirmed = await browser.v1.payment_intents.confirm_async(intent_id)
    except stripe.CardError:
        return "declined"
    return str(confirmed.status)


@pytest.fixture
async def http(live_server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server, timeout=10) as client:
        yield client


async def member(http: httpx.AsyncClient, name: str) -> dict[str, str]:
    body = (await http.post("/api/v1/sessions", json={"display_name": name})).json()
    return {"Authorization": f"Bearer {body['token']}", "X-User-Id": body["user_id"]}


async def locked_cart_of_three(
    http: httpx.AsyncClient, admin: dict[str, str]
) -> tuple[str, list[dict[str, str]]]:
    store = (
        await http.post(
            "/api/v1/stores",
            json={
                "name": "Pay Shop",
                "currency": "USD",
                "delivery_fee_minor": 300,
                "tax_rate_bps": 825,
            },
            headers=admin,
        )
    ).json()
    product = (
        await http.post(
            f"/api/v1/stores/{store['id']}/products",
            json={"name": "Bowl", "price_minor": 1250, "option_groups": []},
            headers=admin,
        )
    ).json()
    people = [await member(http, name) for name in ("Host", "Ana", "Ben")]
    cart = (
        await http.post("/api/v1/teamcarts", json={"store_id": store["id"]}, headers=people[0])
    ).json()
    url = f"/api/v1/teamcarts/{cart['id']}"
    for person, quantity in zip(people, (1, 2, 1), strict=True):
        if person is not people[0]:
            joined = await http.post(
                "/api/v1/teamcarts/join", json={"invite_code": cart["invite_code"]}, headers=person
            )
            assert joined.status_code == 200
        added = await http.post(
            url + "/items", json={"product_id": product["id"], "quantity": quantity}, headers=person
        )
        assert added.status_code == 201, added.text
    assert (await http.post(url + "/lock", headers=people[0])).status_code == 200
    return url, people


async def wait_for_payment(
    http: httpx.AsyncClient, url: str, headers: dict[str, str], user_id: str, status: str
) -> dict[str, Any]:
    """Poll the cart (bounded) until the webhook has moved the member to ``status``."""
    for _ in range(100):
        view: dict[str, Any] = (await http.get(url, headers=headers)).json()
        payment = next(m for m in view["members"] if m["user_id"] == user_id)["payment"]
        if payment["status"] == status:
            return view
        await asyncio.sleep(0.1)
    raise AssertionError(f"{user_id} never reached {status}: {payment}")


async def test_everyone_pays_online_and_the_order_carries_the_intents(
    http: httpx.AsyncClient, admin_headers: dict[str, str], stripe_api_base: str
) -> None:
    url, people = await locked_cart_of_three(http, admin_headers)
    view = (await http.get(url, headers=people[0])).json()
    shares = {m["user_id"]: m["share_minor"] for m in view["members"]}
    intents = {}
    for person in people:
        started = await http.post(url + "/payments/online", headers=person)
        assert started.status_code == 200, started.text
        payment = started.json()
        assert payment["amount_minor"] == shares[person["X-User-Id"]]
        assert payment["currency"] == "USD"
        assert payment["publishable_key"].startswith("pk_")
        again = (await http.post(url + "/payments/online", headers=person)).json()
        assert again["payment_intent_id"] == payment["payment_intent_id"]  # same open intent
        intents[person["X-User-Id"]] = payment["payment_intent_id"]

    tip = await http.put(url + "/tip", json={"amount_minor": 100}, headers=people[0])
    assert tip.status_code == 409
    assert tip.json()["code"] == "payment_activity_started"

    for person in people:
        intent = intents[person["X-User-Id"]]
        assert await pay_with_card(stripe_api_base, intent, VISA) == "succeeded"
    for person in people:
        view = await wait_for_payment(http, url, people[0], person["X-User-Id"], "paid_online")
    for _ in range(50):
        view = (await http.get(url, headers=people[0])).json()
        if view["status"] == "ready_to_confirm":
            break
        await asyncio.sleep(0.1)
    assert view["status"] == "ready_to_confirm"

    confirmed = await http.post(
        url + "/confirm", json={"delivery_address": ADDRESS}, headers=people[0]
    )
    assert confirmed.status_code == 201, confirmed.text
    order = (
        await http.get(f"/api/v1/orders/{confirmed.json()['order_id']}", headers=people[1])
    ).json()
    assert {p["user_id"]: p["reference"] for p in order["payments"]} == intents
    assert {p["method"] for p in order["payments"]} == {"online"}
    assert sum(p["amount_minor"] for p in order["payments"]) == order["total_minor"]


async def test_a_declined_card_fails_and_a_retry_succeeds(
    http: httpx.AsyncClient, admin_headers: dict[str, str], stripe_api_base: str
) -> None:
    url, people = await locked_cart_of_three(http, admin_headers)
    ana = people[1]
    first = (await http.post(url + "/payments/online", headers=ana)).json()
    status = await pay_with_card(stripe_api_base, first["payment_intent_id"], DECLINED_ON_CHARGE)
    assert status == "declined"
    await wait_for_payment(http, url, ana, ana["X-User-Id"], "failed")

    second = (await http.post(url + "/payments/online", headers=ana)).json()
    assert second["payment_intent_id"] != first["payment_intent_id"]  # a new attempt
    assert second["amount_minor"] == first["amount_minor"]
    assert await pay_with_card(stripe_api_base, second["payment_intent_id"], VISA) == "succeeded"
    view = await wait_for_payment(http, url, ana, ana["X-User-Id"], "paid_online")
    assert view["status"] == "locked"  # the others have not paid yet

    again = await http.post(url + "/payments/online", headers=ana)
    assert again.status_code == 409
    assert again.json()["code"] == "already_paid"


async def test_a_payment_under_way_shows_pending_and_cancel_cancels_its_intent(
    client: Client, gateway: StripeGateway, admin_headers: dict[str, str]
) -> None:
    from tests.integration.test_stripe_webhooks import locked_cart, payment_of

    url, host, guest, _ = await locked_cart(client, admin_headers)
    started = await client.post(url + "/payments/online", headers=guest)
    assert started.status_code == 200, started.text
    intent = started.json()["payment_intent_id"]
    view = (await client.get(url, headers=host)).json()
    assert payment_of(view, uid(guest))["status"] == "pending"
    tip = await client.put(url + "/tip", json={"amount_minor": 100}, headers=host)
    assert tip.status_code == 409
    assert tip.json()["code"] == "payment_activity_started"

    cancelled = await client.post(url + "/cancel", headers=host)
    assert cancelled.status_code == 200
    assert payment_of(cancelled.json(), uid(guest))["status"] == "none"
    assert (await gateway.retrieve_payment_intent(intent)).status == "canceled"


async def test_choosing_cash_cancels_the_payment_under_way_and_it_cant_be_confirmed(
    client: Client, gateway: StripeGateway, admin_headers: dict[str, str]
) -> None:
    from tests.integration.test_stripe_webhooks import locked_cart, payment_of

    url, _host, guest, _ = await locked_cart(client, admin_headers)
    intent = (await client.post(url + "/payments/online", headers=guest)).json()[
        "payment_intent_id"
    ]
    cod = await client.post(url + "/payments/cod", headers=guest)
    assert cod.status_code == 200
    assert payment_of(cod.json(), uid(guest))["status"] == "cod_committed"
    assert (await gateway.retrieve_payment_intent(intent)).status == "canceled"
    late = await client.post(
        url + "/payments/online/confirm",
        json={"payment_intent_id": intent, "payment_method": "pm_card_visa"},
        headers=guest,
    )
    assert late.status_code == 409, late.text
    assert late.json()["code"] == "payment_not_open"


async def test_cancel_cancels_a_declined_attempt_too_so_nobody_pays_it_later(
    client: Client, gateway: StripeGateway, stripe_api_base: str, admin_headers: dict[str, str]
) -> None:
    from tests.integration.test_stripe_webhooks import locked_cart

    url, host, guest, _ = await locked_cart(client, admin_headers)
    intent = (await client.post(url + "/payments/online", headers=guest)).json()[
        "payment_intent_id"
    ]
    http_client = stripe.HTTPXClient(allow_sync_methods=True)
    browser = stripe.StripeClient(
        EMULATOR_SECRET_KEY, base_addresses={"api": stripe_api_base}, http_client=http_client
    )
    try:
        method = await browser.v1.payment_methods.create_async(
            params={
                "type": "card",
                "card": {
                    "number": DECLINED_ON_CHARGE,
                    "exp_month": 12,
                    "exp_year": 2030,
                    "cvc": "123",
                },
            }
        )
    finally:
        await http_client.close_async()  # type: ignore[no-untyped-call]
    declined = await client.post(
        url + "/payments/online/confirm",
        json={"payment_intent_id": intent, "payment_method": method.id},
        headers=guest,
    )
    assert declined.status_code == 402
    assert (await client.post(url + "/cancel", headers=host)).status_code == 200
    assert (await gateway.retrieve_payment_intent(intent)).status == "canceled"
