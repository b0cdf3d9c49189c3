"""Stores get paid, on the served app, PostgreSQL and the Stripe emulator with its add-on: a
store onboards through a real account link (its account enabled by the add-on's signed
``account.updated``), takes a group order of three payers and a single-payer order; the
transfers and fees recorded are the totals less the fee to the minor unit, at the add-on
too; partial refunds take back exactly their part; a payout paid and one failed are listed;
the transfer for an order is made once whatever the number of consumers and deliveries."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.connect.transfers import StoreTransfers
from app.payments.gateway import ConnectCharge, GatewayError, StripeGateway
from app.persistence.outbox import OutboxRecord
from domain.pricing import divide_half_even
from tests.integration.test_checkout import a_product, order_of, ready_cart, sign_up
from tests.integration.test_group_flow import ADDRESS
from tests.integration.test_online_payments import VISA, pay_with_card, wait_for_payment
from tests.integration.test_order_lifecycle import a_store, member, staff_of
from tests.stripe_events import body_and_headers, event

pytestmark = pytest.mark.usefixtures("live_server")

FEE_BPS = 875  # 8.75 %: fees that need rounding


@pytest.fixture
async def http(live_server: str) -> Any:
    async with httpx.AsyncClient(base_url=live_server, timeout=15) as client:
        yield client


def fee_of(gross: int, bps: int = FEE_BPS) -> int:
    return divide_half_even(gross * bps, 10_000)


async def eventually(probe: Any, what: str, *, tries: int = 100) -> Any:
    """Poll ``probe()`` (bounded) until it answers something true."""
    for _ in range(tries):
        found = await probe()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"never: {what}")


async def set_config(
    http: httpx.AsyncClient, admin: dict[str, str], store_id: str, **changes: Any
) -> dict[str, Any]:
    body = {"cod_enabled": True, "online_enabled": True, "platform_fee_bps": FEE_BPS, **changes}
    answer = await http.put(f"/api/v1/stores/{store_id}/payment-config", json=body, headers=admin)
    assert answer.status_code == 200, answer.text
    config: dict[str, Any] = answer.json()
    return config


async def onboard(http: httpx.AsyncClient, staff: dict[str, str], store_id: str) -> str:
    """Onboarding as the store's staff does it: a link, Stripe's (the add-on's) page, back
    to the staff page; the account id once ``account.updated`` has enabled it."""
    url = f"/api/v1/stores/{store_id}/connect"
    started = await http.post(url, headers=staff)
    assert started.status_code == 201, started.text
    link = started.json()
    async with httpx.AsyncClient(timeout=10) as browser:
        page = await browser.get(link["onboarding_url"])
        assert page.status_code == 200
        assert "Business name" in page.text
        submitted = await browser.post(link["onboarding_url"], data={"business_name": "Noodles"})
    assert submitted.status_code == 303
    assert submitted.headers["location"].endswith(f"/#/store/{store_id}?onboarding=return")

    async def enabled() -> bool:
        state = (await http.get(url, headers=staff)).json()
        return bool(state["status"] == "enabled")

    await eventually(enabled, "the account enabled by account.updated")
    return str(link["account_id"])


async def onboarded_store(
    http: httpx.AsyncClient, admin: dict[str, str], settings: Settings
) -> tuple[dict[str, Any], dict[str, str], str]:
    store = await a_store(http, admin)
    await set_config(http, admin, store["id"])
    staff = staff_of(settings, store["id"])
    return store, staff, await onboard(http, staff, store["id"])


async def group_order_of_three(
    http: httpx.AsyncClient, admin: dict[str, str], api_base: str, store_id: str
) -> tuple[dict[str, Any], str, dict[str, dict[str, str]]]:
    """A group order at the store whose three members each paid their share online."""
    product = await a_product(http, admin, store_id, price=1199, stock=None)
    people = {name: await member(http, name) for name in ("Host", "Ana", "Ben")}
    host = people["Host"]
    cart = (await http.post("/api/v1/teamcarts", json={"store_id": store_id}, headers=host)).json()
    url = f"/api/v1/teamcarts/{cart['id']}"
    for person, quantity in zip(people.values(), (1, 2, 3), strict=True):
        if person is not host:
            joined = await http.post(
                "/api/v1/teamcarts/join", json={"invite_code": cart["invite_code"]}, headers=person
            )
            assert joined.status_code == 200, joined.text
        added = await http.post(
            url + "/items", json={"product_id": product["id"], "quantity": quantity}, headers=person
        )
        assert added.status_code == 201, added.text
    assert (await http.post(url + "/lock", headers=host)).status_code == 200
    for person in people.values():
        started = await http.post(url + "/payments/online", headers=person)
        assert started.status_code == 200, started.text
        assert await pay_with_card(api_base, started.json()["payment_intent_id"], VISA) == (
            "succeeded"
        )
        await wait_for_payment(http, url, host, person["X-User-Id"], "paid_online")

    async def ready() -> bool:
        return bool((await http.get(url, headers=host)).json()["status"] == "ready_to_confirm")

    await eventually(ready, "the cart ready to confirm")
    confirmed = await http.post(url + "/confirm", json={"delivery_address": ADDRESS}, headers=host)
    assert confirmed.status_code == 201, confirmed.text
    order = (await http.get(f"/api/v1/orders/{confirmed.json()['order_id']}", headers=host)).json()
    return order, cart["id"], people


async def transfer_row(engine: AsyncEngine, order_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    text("SELECT * FROM store_transfers WHERE order_id = :o"), {"o": order_id}
                )
            )
            .mappings()
            .one_or_none()
        )
    return None if row is None else dict(row)


async def paid_transfer(engine: AsyncEngine, order_id: str) -> dict[str, Any]:
    async def paid() -> dict[str, Any] | None:
        row = await transfer_row(engine, order_id)
        return row if row is not None and row["status"] == "paid" else None

    found: dict[str, Any] = await eventually(paid, f"the store's transfer for {order_id}")
    return found


async def reversals_of(engine: AsyncEngine, order_id: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT * FROM store_transfer_reversals WHERE order_id = :o ORDER BY created_at"
                ),
                {"o": order_id},
            )
        ).mappings()
        return [dict(row) for row in rows]


async def addon(api_base: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """A call to the emulator's add-on as the platform (its secret key)."""
    async with httpx.AsyncClient(base_url=api_base, timeout=10) as client:
        answer = await client.request(
            method, path, headers={"Authorization": "Bearer sk_test_teamcart_emulator"}, **kwargs
        )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_a_store_onboards_and_is_paid_for_group_and_single_orders_to_the_minor_unit(
    http: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: Settings,
    stripe_api_base: str,
    engine: AsyncEngine,
    gateway: StripeGateway,
) -> None:
    store = await a_store(http, admin_headers)
    staff = staff_of(settings, store["id"])
    url = f"/api/v1/stores/{store['id']}/connect"
    before = (await http.get(url, headers=staff)).json()
    assert (before["status"], before["account_id"]) == ("not_started", None)
    await set_config(http, admin_headers, store["id"])

    first = (await http.post(url, headers=staff)).json()
    again = (await http.post(url, headers=admin_headers)).json()
    assert first["account_id"].startswith("acct_")
    assert again["account_id"] == first["account_id"]  # one account per store
    assert again["onboarding_url"] != first["onboarding_url"]  # a fresh link each time
    pending = (await http.get(url, headers=staff)).json()
    assert pending["status"] == "pending"
    assert not pending["charges_enabled"]
    assert "external_account" in pending["requirements_due"]
    account_id = await onboard(http, staff, store["id"])
    assert account_id == first["account_id"]
    enabled = (await http.get(url, headers=staff)).json()
    assert enabled["charges_enabled"]
    assert enabled["payouts_enabled"]
    assert enabled["requirements_due"] == []

    # A group order of three payers: separate charges in the cart's group, one transfer.
    order, cart_id, people = await group_order_of_three(
        http, admin_headers, stripe_api_base, store["id"]
    )
    total = order["total_minor"]
    assert total == 6 * 1199 + 300
    intents = [p["reference"] for p in order["payments"]]
    for intent_id in intents:
        intent = await addon(stripe_api_base, "GET", f"/v1/payment_intents/{intent_id}")
        assert intent["transfer_group"] == cart_id
        assert intent["transfer_data"] is None
    group = await paid_transfer(engine, order["id"])
    assert group["kind"] == "transfer"
    assert (group["gross_minor"], group["fee_minor"]) == (total, fee_of(total))
    assert group["amount_minor"] == total - fee_of(total)
    at_stripe = await gateway.list_transfers(transfer_group=cart_id)
    assert [(t.id, t.amount, t.destination) for t in at_stripe] == [
        (group["stripe_transfer_id"], total - fee_of(total), account_id)
    ]

    # A single-payer order: a destination charge, the fee kept by Stripe for the platform.
    bagel = await a_product(http, admin_headers, store["id"], price=1234, stock=None)
    buyer = await sign_up(http, "Bea")
    cart_url = await ready_cart(http, buyer, store["id"], bagel["id"], 3)
    checkout = await http.post(
        cart_url + "/checkout", json={"mode": "payment_intent"}, headers=buyer
    )
    assert checkout.status_code == 201, checkout.text
    single_total = 3 * 1234 + 300
    intent = await addon(
        stripe_api_base, "GET", f"/v1/payment_intents/{checkout.json()['payment_intent_id']}"
    )
    assert intent["transfer_data"] == {"destination": account_id}
    assert intent["application_fee_amount"] == fee_of(single_total)
    assert await pay_with_card(stripe_api_base, intent["id"], VISA) == "succeeded"
    single = await order_of(http, buyer, checkout.json()["order_id"], "placed")
    destination = await paid_transfer(engine, single["id"])
    assert destination["kind"] == "destination"
    assert destination["payment_intent_id"] == intent["id"]
    assert (destination["gross_minor"], destination["fee_minor"]) == (
        single_total,
        fee_of(single_total),
    )
    assert destination["amount_minor"] == single_total - fee_of(single_total)
    charge = await gateway.retrieve_destination_charge(intent["id"])
    assert charge.transfer_id == destination["stripe_transfer_id"]
    assert charge.application_fee_id == destination["application_fee_id"]
    fee_object = await addon(
        stripe_api_base, "GET", f"/v1/application_fees/{destination['application_fee_id']}"
    )
    assert (fee_object["amount"], fee_object["account"]) == (fee_of(single_total), account_id)

    # Partial refunds take back exactly their part of the store's money and of the fee.
    refund = await http.post(
        f"/api/v1/orders/{order['id']}/refunds",
        json={"amount_minor": 777, "user_id": people["Ben"]["X-User-Id"], "reason": "cold"},
        headers=staff,
    )
    assert refund.status_code == 201, refund.text
    part = divide_half_even(777 * (total - fee_of(total)), total)

    async def reversed_group() -> list[dict[str, Any]]:
        return [r for r in await reversals_of(engine, order["id"]) if r["status"] == "done"]

    [reversal] = await eventually(reversed_group, "the group refund's reversal")
    assert (reversal["amount_minor"], reversal["fee_minor"]) == (part, 777 - part)
    transfer = await addon(stripe_api_base, "GET", f"/v1/transfers/{group['stripe_transfer_id']}")
    assert transfer["amount_reversed"] == part
    assert transfer["reversals"]["data"][0]["id"] == reversal["stripe_reversal_id"]

    refund = await http.post(
        f"/api/v1/orders/{single['id']}/refunds",
        json={"amount_minor": 1001, "reason": "one bagel short"},
        headers=staff,
    )
    assert refund.status_code == 201, refund.text
    single_part = divide_half_even(1001 * (single_total - fee_of(single_total)), single_total)

    async def reversed_single() -> list[dict[str, Any]]:
        return [r for r in await reversals_of(engine, single["id"]) if r["status"] == "done"]

    [reversal] = await eventually(reversed_single, "the single refund's reversal")
    assert (reversal["amount_minor"], reversal["fee_minor"]) == (single_part, 1001 - single_part)
    transfer = await addon(
        stripe_api_base, "GET", f"/v1/transfers/{destination['stripe_transfer_id']}"
    )
    assert transfer["amount_reversed"] == 1001  # the whole refund back from the account …
    fee_object = await addon(
        stripe_api_base, "GET", f"/v1/application_fees/{destination['application_fee_id']}"
    )
    assert fee_object["amount_refunded"] == 1001 - single_part  # … and the fee's part to it

    # The staff's page: both transfers (net of the fee, with what refunds took back) and
    # the account's payouts, paid or failed, newest first, page by page.
    for amount, status in ((5000, "paid"), (1200, "failed")):
        await addon(
            stripe_api_base,
            "POST",
            f"/_addon/connect/accounts/{account_id}/payouts",
            data={"amount": str(amount), "currency": "usd", "status": status},
        )

    async def listed() -> list[dict[str, Any]] | None:
        page = (await http.get(f"/api/v1/stores/{store['id']}/payouts", headers=staff)).json()
        payouts = [i for i in page["items"] if i["kind"] == "payout"]
        return page["items"] if len(payouts) == 2 else None

    items = await eventually(listed, "both payouts recorded from their webhooks")
    by_kind = {(i["kind"], i.get("order_id"), i["amount_minor"]): i for i in items}
    assert by_kind[("transfer", order["id"], total - fee_of(total))]["status"] == (
        "partially_reversed"
    )
    assert by_kind[("transfer", order["id"], total - fee_of(total))]["reversed_minor"] == part
    assert ("transfer", single["id"], single_total - fee_of(single_total)) in by_kind
    assert {(i["amount_minor"], i["status"]) for i in items if i["kind"] == "payout"} == {
        (5000, "paid"),
        (1200, "failed"),
    }
    moments = [datetime.fromisoformat(i["created_at"]) for i in items]
    assert moments == sorted(moments, reverse=True)
    first_page = (
        await http.get(f"/api/v1/stores/{store['id']}/payouts?limit=2", headers=staff)
    ).json()
    rest = (
        await http.get(
            f"/api/v1/stores/{store['id']}/payouts?limit=10&cursor={first_page['next_cursor']}",
            headers=staff,
        )
    ).json()
    assert [i["id"] for i in first_page["items"] + rest["items"]] == [i["id"] for i in items]
    assert rest["next_cursor"] is None
    stranger = await member(http, "Stranger")
    refused = await http.get(f"/api/v1/stores/{store['id']}/payouts", headers=stranger)
    assert refused.status_code == 403


async def outbox_record(engine: AsyncEngine, order_id: str, event_type: str) -> OutboxRecord:
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    text(
                        "SELECT id, aggregate_type, aggregate_id::text AS aggregate_id, version,"
                        " event_type, payload::text AS payload, created_at FROM outbox"
                        " WHERE aggregate_id = :o AND event_type = :e"
                    ),
                    {"o": order_id, "e": event_type},
                )
            )
            .mappings()
            .one()
        )
    return OutboxRecord(**row)


async def test_the_transfer_for_an_order_is_made_once_whoever_handles_its_event(
    http: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: Settings,
    stripe_api_base: str,
    engine: AsyncEngine,
    gateway: StripeGateway,
) -> None:
    store, _, _ = await onboarded_store(http, admin_headers, settings)
    order, cart_id, _ = await group_order_of_three(
        http, admin_headers, stripe_api_base, store["id"]
    )
    placed = await outbox_record(engine, order["id"], "order_placed")
    # Two more processes' consumers, each handed the event three times, race the server's.
    consumers = [StoreTransfers(engine, gateway), StoreTransfers(engine, gateway)]
    await asyncio.gather(*(consumer(placed) for consumer in consumers for _ in range(3)))
    for consumer in consumers:
        await consumer.drain()
    # A webhook storm: every member's capture reported again, five times, as new events.
    storm = []
    for payment in order["payments"]:
        intent = await addon(stripe_api_base, "GET", f"/v1/payment_intents/{payment['reference']}")
        for _ in range(5):
            storm.append(event("payment_intent.succeeded", intent))
    answers = await asyncio.gather(
        *(
            http.post("/api/v1/webhooks/stripe", content=body, headers=headers)
            for body, headers in map(body_and_headers, storm)
        )
    )
    assert {answer.status_code for answer in answers} == {200}
    row = await paid_transfer(engine, order["id"])
    listed = await gateway.list_transfers(transfer_group=cart_id)
    assert [t.id for t in listed] == [row["stripe_transfer_id"]]

    # The commit lost after Stripe answered: two processes make it again at once, and the
    # idempotency key gives them Stripe's first transfer back.
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE store_transfers SET status = 'pending', stripe_transfer_id = NULL,"
                " next_attempt_at = now() + interval '1 hour'"  # not the server's retry loop's
                " WHERE order_id = :o"
            ),
            {"o": order["id"]},
        )
    made = await asyncio.gather(*(consumer.make_transfer(order["id"]) for consumer in consumers))
    assert sorted(made) == [False, True]
    again = await paid_transfer(engine, order["id"])
    assert again["stripe_transfer_id"] == row["stripe_transfer_id"]
    assert [t.id for t in await gateway.list_transfers(transfer_group=cart_id)] == [
        row["stripe_transfer_id"]
    ]


async def test_a_cancelled_group_order_takes_back_the_whole_transfer(
    http: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: Settings,
    stripe_api_base: str,
    engine: AsyncEngine,
) -> None:
    store, staff, _ = await onboarded_store(http, admin_headers, settings)
    order, _, _ = await group_order_of_three(http, admin_headers, stripe_api_base, store["id"])
    made = await paid_transfer(engine, order["id"])
    cancelled = await http.post(
        f"/api/v1/orders/{order['id']}/cancel", json={"reason": "kitchen closed"}, headers=staff
    )
    assert cancelled.status_code == 200, cancelled.text

    async def reversed_all() -> list[dict[str, Any]]:
        done = [r for r in await reversals_of(engine, order["id"]) if r["status"] == "done"]
        return done if sum(r["amount_minor"] for r in done) == made["amount_minor"] else []

    done = await eventually(reversed_all, "the whole transfer taken back")
    assert sum(r["fee_minor"] for r in done) == made["fee_minor"]
    transfer = await addon(stripe_api_base, "GET", f"/v1/transfers/{made['stripe_transfer_id']}")
    assert transfer["reversed"] is True
    assert transfer["amount_reversed"] == made["amount_minor"]


async def test_disabling_online_payments_leaves_members_cash_on_delivery_only(
    http: httpx.AsyncClient, admin_headers: dict[str, str], stripe_api_base: str
) -> None:
    store = await a_store(http, admin_headers)
    product = await a_product(http, admin_headers, store["id"], price=900, stock=None)
    config = await set_config(http, admin_headers, store["id"], online_enabled=False)
    assert (config["online_enabled"], config["cod_enabled"]) == (False, True)
    host, ana = await member(http, "Host"), await member(http, "Ana")
    methods = await http.get(f"/api/v1/stores/{store['id']}/payment-methods", headers=ana)
    assert methods.json() == {"store_id": store["id"], "cod": True, "online": False}
    cart = (
        await http.post("/api/v1/teamcarts", json={"store_id": store["id"]}, headers=host)
    ).json()
    url = f"/api/v1/teamcarts/{cart['id']}"
    await http.post(
        "/api/v1/teamcarts/join", json={"invite_code": cart["invite_code"]}, headers=ana
    )
    for person in (host, ana):
        await http.post(
            url + "/items", json={"product_id": product["id"], "quantity": 1}, headers=person
        )
    assert (await http.post(url + "/lock", headers=host)).status_code == 200
    online = await http.post(url + "/payments/online", headers=ana)
    assert online.status_code == 409, online.text
    assert online.json()["code"] == "online_disabled"
    assert (await http.post(url + "/payments/cod", headers=ana)).status_code == 200

    buyer = await member(http, "Bea")
    cart_url = await ready_cart(http, buyer, store["id"], product["id"], 1)
    checkout = await http.post(
        cart_url + "/checkout", json={"mode": "payment_intent"}, headers=buyer
    )
    assert checkout.status_code == 409, checkout.text
    assert checkout.json()["code"] == "online_disabled"

    await set_config(http, admin_headers, store["id"], cod_enabled=False)
    cod = await http.post(url + "/payments/cod", headers=host)
    assert cod.status_code == 409, cod.text
    assert cod.json()["code"] == "cod_disabled"
    neither = await http.put(
        f"/api/v1/stores/{store['id']}/payment-config",
        json={"cod_enabled": False, "online_enabled": False, "platform_fee_bps": 0},
        headers=admin_headers,
    )
    assert neither.status_code == 422
    assert neither.json()["code"] == "no_payment_method"


async def test_connect_events_are_kept_in_stripes_time_and_only_for_stores_accounts(
    http: httpx.AsyncClient, admin_headers: dict[str, str], settings: Settings
) -> None:
    store, staff, account_id = await onboarded_store(http, admin_headers, settings)
    url = f"/api/v1/stores/{store['id']}/connect"

    async def post(evt: dict[str, Any]) -> dict[str, Any]:
        body, headers = body_and_headers(evt)
        answer = await http.post("/api/v1/webhooks/stripe", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        outcome: dict[str, Any] = answer.json()
        return outcome

    def account_event(charges: bool, created: int) -> dict[str, Any]:
        evt = event(
            "account.updated",
            {
                "id": account_id,
                "object": "account",
                "charges_enabled": charges,
                "payouts_enabled": charges,
                "details_submitted": True,
                "requirements": {
                    "currently_due": [] if charges else ["individual.verification.document"],
                    "past_due": [],
                },
            },
        )
        return {**evt, "created": created, "account": account_id}

    later = int(time.time()) + 3600  # after the add-on's own event
    restricted = await post(account_event(False, later))
    assert restricted["outcome"] == "applied"
    state = (await http.get(url, headers=staff)).json()
    assert (state["status"], state["requirements_due"]) == (
        "restricted",
        ["individual.verification.document"],
    )
    late = await post(account_event(True, later - 10))  # older, delivered late
    assert (late["outcome"], late["reason"]) == ("ignored", "older than the account's state kept")
    assert (await http.get(url, headers=staff)).json()["status"] == "restricted"

    foreign = account_event(True, later + 5)
    foreign["data"]["object"]["id"] = "acct_not_ours"
    assert (await post(foreign))["reason"] == "not a store's account"
    payout = {
        "id": f"po_{uuid.uuid4().hex[:20]}",
        "object": "payout",
        "amount": 2500,
        "currency": "usd",
        "status": "paid",
        "created": later,
        "arrival_date": later + 86400,
    }
    platform = await post(event("payout.paid", payout))
    assert (platform["outcome"], platform["reason"]) == (
        "ignored",
        "a payout of the platform's own account",
    )
    paid = await post({**event("payout.paid", payout), "account": account_id, "created": later})
    assert paid["outcome"] == "applied"
    returned = {**payout, "status": "failed", "failure_code": "account_closed"}
    failed = await post(
        {**event("payout.failed", returned), "account": account_id, "created": later + 60}
    )
    assert failed["outcome"] == "applied"
    stale = await post({**event("payout.paid", payout), "account": account_id, "created": later})
    assert stale["outcome"] == "ignored"
    malformed = await post(
        {**event("payout.paid", {**payout, "amount": "lots"}), "account": account_id}
    )
    assert malformed["outcome"] == "rejected"
    page = (await http.get(f"/api/v1/stores/{store['id']}/payouts", headers=staff)).json()
    listed = [i for i in page["items"] if i["id"] == payout["id"]]
    assert [(i["status"], i["amount_minor"]) for i in listed] == [("failed", 2500)]


async def test_the_addons_connect_answers_as_stripe_does_through_the_sdk(
    stripe_api_base: str, gateway: StripeGateway
) -> None:
    """Refusals in Stripe's words through the SDK, the idempotency key replayed, and
    payouts read on the connected account (``Stripe-Account``)."""
    account = await gateway.create_connect_account(
        store_id=str(uuid.uuid4()), idempotency_key=f"acct-{uuid.uuid4()}"
    )
    assert not account.charges_enabled
    assert await gateway.retrieve_connect_account(account.id) == account
    with pytest.raises(GatewayError, match="capabilities enabled"):
        await gateway.create_transfer(
            amount=100,
            currency="USD",
            destination=account.id,
            transfer_group=None,
            metadata={},
            idempotency_key=f"t-{uuid.uuid4()}",
        )
    with pytest.raises(GatewayError, match="No such destination"):
        await gateway.create_payment_intent(
            amount=1000,
            currency="USD",
            metadata={},
            idempotency_key=f"pi-{uuid.uuid4()}",
            connect=ConnectCharge(destination="acct_nobody", application_fee_amount=10),
        )
    with pytest.raises(GatewayError, match="No such account"):
        await gateway.retrieve_connect_account("acct_nobody")
    link = await gateway.create_account_link(
        account.id, refresh_url="https://x/refresh", return_url="https://x/return"
    )
    async with httpx.AsyncClient(timeout=10) as browser:
        done = await browser.post(link, data={"business_name": "Bagels"})
        assert done.headers["location"] == "https://x/return"
        used = await browser.get(link)
        assert (used.status_code, used.headers["location"]) == (303, "https://x/refresh")
    assert (await gateway.retrieve_connect_account(account.id)).charges_enabled
    key = f"t-{uuid.uuid4()}"
    made = [
        await gateway.create_transfer(
            amount=250,
            currency="USD",
            destination=account.id,
            transfer_group="g-" + key,
            metadata={"order_id": "o1"},
            idempotency_key=key,
        )
        for _ in range(2)
    ]
    assert made[0] == made[1]
    assert len(await gateway.list_transfers(transfer_group="g-" + key)) == 1
    with pytest.raises(GatewayError, match="only 250 left"):
        await gateway.create_transfer_reversal(
            made[0].id, amount=251, metadata={}, idempotency_key=f"r-{uuid.uuid4()}"
        )
    payout = await addon(
        stripe_api_base,
        "POST",
        f"/_addon/connect/accounts/{account.id}/payouts",
        data={"amount": "700", "currency": "usd", "status": "paid"},
    )
    [listed] = await gateway.list_payouts(account.id)
    assert (listed.id, listed.amount, listed.status) == (payout["id"], 700, "paid")
