"""Stripe does not order its events: the money rules hold whatever order they arrive in.

A refund or a dispute can be reported before the capture it concerns (the success delivery
was answered 503 and is retried later, or the refund was made in Stripe's dashboard at once).
A payment that was refunded or disputed is never counted as paid, and a PaymentIntent's
status never moves backward. Every event goes through the real webhook route.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.payments.gateway import StripeGateway
from app.persistence.tables import payment_intents, refund_requests
from tests.builders import Client, create_product, create_store
from tests.integration.test_group_flow import ADDRESS, open_cart, session, uid
from tests.integration.test_http_basics import assert_problem
from tests.integration.test_stripe_webhooks import (
    captured_intent,
    count,
    deliver,
    locked_cart,
    payment_of,
    share,
    succeeded,
)
from tests.stripe_events import charge_refunded, dispute, event, payment_intent, teamcart_metadata


def refunded_event(intent: str, amount: int, refund_id: str | None = None) -> dict[str, Any]:
    return event(
        "charge.refunded",
        charge_refunded(
            intent, amount=amount, currency="usd", refund_id=refund_id or f"re_{uuid.uuid4().hex}"
        ),
    )


async def intent_status(engine: AsyncEngine, intent: str) -> str:
    async with engine.connect() as conn:
        status = (
            await conn.execute(
                select(payment_intents.c.status).where(payment_intents.c.id == intent)
            )
        ).scalar_one()
    return str(status)


async def test_a_refund_reported_before_the_capture_keeps_the_member_unpaid(
    client: Client, engine: AsyncEngine, admin_headers: dict[str, str]
) -> None:
    url, host, guest, view = await locked_cart(client, admin_headers)
    assert (await client.post(url + "/payments/cod", headers=host)).status_code == 200
    intent = (await client.post(url + "/payments/online", headers=guest)).json()[
        "payment_intent_id"
    ]
    owed = share(view, uid(guest))
    assert (await deliver(client, refunded_event(intent, owed))).json()["outcome"] == "applied"
    late = await deliver(client, succeeded(view, uid(guest), intent))
    assert (late.json()["outcome"], late.json()["reason"]) == ("refunded", "already_refunded")
    after = (await client.get(url, headers=guest)).json()
    assert payment_of(after, uid(guest))["status"] == "refunded"
    assert after["status"] == "locked"  # the host cannot confirm money that went back
    assert_problem(
        await client.post(url + "/confirm", json={"delivery_address": ADDRESS}, headers=host),
        409,
        "cart_not_ready",
    )
    assert await intent_status(engine, intent) == "refunded"  # never back to succeeded
    # Nothing more is owed back: the money is already with the customer.
    assert await count(engine, refund_requests, refund_requests.c.payment_intent_id == intent) == 0


async def test_a_dashboard_refund_of_a_real_capture_before_its_success_event(
    client: Client,
    engine: AsyncEngine,
    gateway: StripeGateway,
    stripe_api_base: str,
    admin_headers: dict[str, str],
) -> None:
    """The emulator really captured and really refunded it; we learn of the refund first."""
    url, _host, guest, view = await locked_cart(client, admin_headers)
    owed = share(view, uid(guest))
    intent = await captured_intent(gateway, stripe_api_base, amount=owed)
    refund = await gateway.refund_payment_intent(
        intent, idempotency_key=f"dashboard-{intent}", reason="requested_by_customer"
    )
    assert refund.status == "succeeded"
    synced = await deliver(client, refunded_event(intent, owed, refund.id))
    assert synced.status_code == 200
    late = await deliver(client, succeeded(view, uid(guest), intent))
    assert (late.json()["outcome"], late.json()["reason"]) == ("refunded", "already_refunded")
    after = (await client.get(url, headers=guest)).json()
    assert payment_of(after, uid(guest))["status"] == "refunded"
    assert after["status"] == "locked"
    assert await count(engine, refund_requests, refund_requests.c.payment_intent_id == intent) == 0


async def test_a_dispute_reported_before_the_capture_sends_it_to_review(
    client: Client, admin_headers: dict[str, str]
) -> None:
    url, host, guest, view = await locked_cart(client, admin_headers)
    assert (await client.post(url + "/payments/cod", headers=host)).status_code == 200
    intent = (await client.post(url + "/payments/online", headers=guest)).json()[
        "payment_intent_id"
    ]
    owed = share(view, uid(guest))
    early = await deliver(
        client, event("charge.dispute.created", dispute(intent, amount=owed, currency="usd"))
    )
    assert early.json()["outcome"] == "review"
    late = await deliver(client, succeeded(view, uid(guest), intent))
    assert (late.json()["outcome"], late.json()["reason"]) == ("review", "disputed")
    after = (await client.get(url, headers=guest)).json()
    assert payment_of(after, uid(guest))["status"] == "review"
    assert after["status"] == "locked"
    assert_problem(
        await client.post(url + "/confirm", json={"delivery_address": ADDRESS}, headers=host),
        409,
        "cart_not_ready",
    )


# --- every kind of event, in every order ----------------------------------------------------

KINDS = ("success", "failure", "refund", "dispute", "cancel")
INTENT_RANK = {"open": 0, "failed": 1, "canceled": 1, "succeeded": 2, "refunded": 3}


def orders() -> list[tuple[str, ...]]:
    """Every order of all five kinds, and every order of the sets without a refund, without
    a dispute, and without either (so each final state is reached from every order)."""
    sets = [
        KINDS,
        tuple(k for k in KINDS if k != "refund"),
        tuple(k for k in KINDS if k != "dispute"),
        tuple(k for k in KINDS if k not in {"refund", "dispute"}),
    ]
    return [order for kinds in sets for order in itertools.permutations(kinds)]


def expected_status(kinds: tuple[str, ...]) -> str:
    if "refund" in kinds:
        return "refunded"
    if "dispute" in kinds:
        return "review"
    return "paid_online"


def builders(view: dict[str, Any], user_id: str, intent: str) -> dict[str, Callable[[], Any]]:
    owed = share(view, user_id)
    metadata = teamcart_metadata(view["id"], user_id, view["quote_version"])

    def intent_event(kind: str, status: str) -> dict[str, Any]:
        obj = payment_intent(intent, amount=owed, currency="usd", metadata=metadata, status=status)
        return event(kind, obj)

    return {
        "success": lambda: succeeded(view, user_id, intent),
        "failure": lambda: intent_event("payment_intent.payment_failed", "requires_payment_method"),
        "refund": lambda: refunded_event(intent, owed),
        "dispute": lambda: event(
            "charge.dispute.created", dispute(intent, amount=owed, currency="usd")
        ),
        "cancel": lambda: intent_event("payment_intent.canceled", "canceled"),
    }


MEMBERS_PER_CART = 25


async def test_every_event_kind_in_every_order_keeps_the_money_rules(
    client: Client, engine: AsyncEngine, admin_headers: dict[str, str]
) -> None:
    store = await create_store(client, admin_headers, delivery_fee_minor=0, tax_rate_bps=0)
    product = await create_product(
        client, admin_headers, store["id"], price_minor=1000, option_groups=[]
    )
    all_orders = orders()
    for start in range(0, len(all_orders), MEMBERS_PER_CART):
        chunk = all_orders[start : start + MEMBERS_PER_CART]
        host = await session(client, "Host")
        cart = await open_cart(client, host, store["id"])
        url = f"/api/v1/teamcarts/{cart['id']}"
        guests = []
        for n in range(len(chunk)):
            guest = await session(client, f"Guest {n}")
            joined = await client.post(
                "/api/v1/teamcarts/join", json={"invite_code": cart["invite_code"]}, headers=guest
            )
            assert joined.status_code == 200
            added = await client.post(
                url + "/items", json={"product_id": product["id"], "quantity": 1}, headers=guest
            )
            assert added.status_code == 201
            guests.append(guest)
        view = (await client.post(url + "/lock", headers=host)).json()
        delivered: list[dict[str, Any]] = []
        intents = []
        for guest, kinds in zip(guests, chunk, strict=True):
            started = await client.post(url + "/payments/online", headers=guest)
            assert started.status_code == 200, started.text
            intent = started.json()["payment_intent_id"]
            intents.append(intent)
            build = builders(view, uid(guest), intent)
            for kind in kinds:
                evt = build[kind]()
                response = await deliver(client, evt)
                assert response.status_code == 200, (kinds, kind, response.text)
                delivered.append(evt)
        after = (await client.get(url, headers=host)).json()
        for guest, kinds, intent in zip(guests, chunk, intents, strict=True):
            got = payment_of(after, uid(guest))["status"]
            assert got == expected_status(kinds), (kinds, got)
            status = await intent_status(engine, intent)
            assert INTENT_RANK[status] == max(INTENT_RANK[s] for s in _intent_statuses(kinds)), (
                kinds,
                status,
            )
        # Each event takes effect once: every delivery again is a duplicate and changes nothing.
        for evt in delivered:
            assert (await deliver(client, evt)).json()["outcome"] == "duplicate"
        again = (await client.get(url, headers=host)).json()
        assert again["version"] == after["version"]


def _intent_statuses(kinds: tuple[str, ...]) -> list[str]:
    """The statuses the delivered events move an intent toward (it starts open)."""
    moves = {
        "success": "succeeded",
        "refund": "refunded",
        "failure": "failed",
        "cancel": "canceled",
    }
    return ["open", *(moves[k] for k in kinds if k in moves)]
