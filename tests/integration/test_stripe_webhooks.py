"""Webhook intake with hand-built, correctly signed, real-shaped Stripe events.

Covers what the emulator can't produce on demand: duplicates racing through two app
instances, out-of-order events, payments that must be refunded, refunds and disputes made in
the Stripe dashboard, bad signatures, garbage bodies and a database that is down.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.payments.gateway import StripeGateway
from app.persistence.tables import outbox, refund_requests, refunds, stripe_events
from app.unit_of_work import UnitOfWorkRunner
from app.use_cases.payments.refunds import carry_out_refunds
from app.use_cases.teamcarts import expire_due_carts
from app.wiring import create_app
from tests.builders import Client, create_product, create_store
from tests.integration.test_group_flow import open_cart, session, uid
from tests.integration.test_http_basics import assert_problem
from tests.integration.test_online_payments import VISA, pay_with_card
from tests.stripe_events import (
    WEBHOOK_SECRET,
    body_and_headers,
    charge_refunded,
    dispute,
    event,
    payment_intent,
    sign,
    teamcart_metadata,
)

HOOK = "/api/v1/webhooks/stripe"


async def deliver(client: Client, evt: dict[str, Any], **sign_kwargs: Any) -> httpx.Response:
    body, headers = body_and_headers(evt, **sign_kwargs)
    return await client.post(HOOK, content=body, headers=headers)


async def locked_cart(
    client: Client, admin: dict[str, str]
) -> tuple[str, dict[str, str], dict[str, str], dict[str, Any]]:
    """A locked USD cart with a host and a guest who both owe something."""
    store = await create_store(client, admin, delivery_fee_minor=200, tax_rate_bps=1000)
    product = await create_product(client, admin, store["id"], price_minor=1500, option_groups=[])
    host = await session(client, "Host")
    guest = await session(client, "Guest")
    cart = await open_cart(client, host, store["id"])
    url = f"/api/v1/teamcarts/{cart['id']}"
    await client.post(
        "/api/v1/teamcarts/join", json={"invite_code": cart["invite_code"]}, headers=guest
    )
    for person in (host, guest):
        await client.post(
            url + "/items", json={"product_id": product["id"], "quantity": 1}, headers=person
        )
    view = (await client.post(url + "/lock", headers=host)).json()
    assert view["status"] == "locked"
    return url, host, guest, view


def share(view: dict[str, Any], user_id: str) -> int:
    return int(next(m["share_minor"] for m in view["members"] if m["user_id"] == user_id))


def payment_of(view: dict[str, Any], user_id: str) -> dict[str, Any]:
    payment: dict[str, Any] = next(m for m in view["members"] if m["user_id"] == user_id)["payment"]
    return payment


def succeeded(view: dict[str, Any], user_id: str, intent_id: str, **changes: Any) -> dict[str, Any]:
    obj = payment_intent(
        intent_id,
        amount=changes.pop("amount", share(view, user_id)),
        currency=changes.pop("currency", view["currency"]),
        metadata=teamcart_metadata(
            view["id"], user_id, changes.pop("quote_version", view["quote_version"])
        ),
    )
    return event("payment_intent.succeeded", obj)


async def captured_intent(
    gateway: StripeGateway, api_base: str, *, amount: int, currency: str = "USD"
) -> str:
    """A PaymentIntent the emulator really captured (so a refund is real, too)."""
    intent = await gateway.create_payment_intent(
        amount=amount,
        currency=currency,
        metadata={"source": "tests"},
        idempotency_key=str(uuid.uuid4()),
    )
    assert await pay_with_card(api_base, intent.id, VISA) == "succeeded"
    return intent.id


async def count(engine: AsyncEngine, table: Any, *where: Any) -> int:
    async with engine.connect() as conn:
        result = await conn.execute(select(func.count()).select_from(table).where(*where))
        return int(result.scalar_one())


async def refunded(engine: AsyncEngine, intent: str, within: float = 5.0) -> int:
    """The refunds made for ``intent``, once there is one (or ``within`` seconds passed): the
    request that owed it usually makes it before answering, but the sweeper, running in the
    same app, may have taken the owed refund first and be making it a moment later."""
    deadline = asyncio.get_running_loop().time() + within
    while (made := await count(engine, refunds, refunds.c.payment_intent_id == intent)) == 0:
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    return made


@pytest.fixture
async def second_client(settings: Settings) -> AsyncIterator[Client]:
    """Another app instance on the same database and Redis: a second server process."""
    async with AsyncTestClient(app=create_app(settings)) as other:
        yield other


async def test_one_event_delivered_five_times_at_once_through_two_instances_applies_once(
    client: Client, second_client: Client, engine: AsyncEngine, admin_headers: dict[str, str]
) -> None:
    url, _, guest, view = await locked_cart(client, admin_headers)
    evt = succeeded(view, uid(guest), f"pi_{uuid.uuid4().hex[:14]}")
    body, headers = body_and_headers(evt)
    responses = await asyncio.gather(
        *(
            (client if i % 2 else second_client).post(HOOK, content=body, headers=headers)
            for i in range(5)
        )
    )
    assert [r.status_code for r in responses] == [200] * 5
    outcomes = sorted(r.json()["outcome"] for r in responses)
    assert outcomes == ["applied", "duplicate", "duplicate", "duplicate", "duplicate"]
    after = (await client.get(url, headers=guest)).json()
    assert payment_of(after, uid(guest))["status"] == "paid_online"
    assert after["version"] == view["version"] + 1
    assert await count(engine, stripe_events, stripe_events.c.id == evt["id"]) == 1
    assert (
        await count(
            engine,
            outbox,
            outbox.c.aggregate_id == view["id"],
            outbox.c.event_type == "online_payment_recorded",
        )
        == 1
    )


async def test_every_member_paying_at_the_same_moment_is_recorded_without_a_retry(
    client: Client, live_server: str, admin_headers: dict[str, str]
) -> None:
    """Eight members' payments of one cart arrive at once, at a real server: each one is
    applied on its first delivery (no 503 asking Stripe to come back later)."""
    store = await create_store(client, admin_headers, delivery_fee_minor=0, tax_rate_bps=0)
    product = await create_product(
        client, admin_headers, store["id"], price_minor=1000, option_groups=[]
    )
    host = await session(client, "Host")
    cart = await open_cart(client, host, store["id"])
    url = f"/api/v1/teamcarts/{cart['id']}"
    people = [host]
    for n in range(7):
        guest = await session(client, f"Guest {n}")
        joined = await client.post(
            "/api/v1/teamcarts/join", json={"invite_code": cart["invite_code"]}, headers=guest
        )
        assert joined.status_code == 200
        people.append(guest)
    for person in people:
        added = await client.post(
            url + "/items", json={"product_id": product["id"], "quantity": 1}, headers=person
        )
        assert added.status_code == 201
    view = (await client.post(url + "/lock", headers=host)).json()
    events = [succeeded(view, uid(p), f"pi_{uuid.uuid4().hex[:14]}") for p in people]

    async with httpx.AsyncClient(base_url=live_server, timeout=30) as stripe:
        responses = await asyncio.gather(
            *(
                stripe.post(HOOK, content=body, headers=headers)
                for body, headers in map(body_and_headers, events)
            )
        )
    assert [r.status_code for r in responses] == [200] * len(people)
    assert {r.json()["outcome"] for r in responses} == {"applied"}
    after = (await client.get(url, headers=host)).json()
    assert {payment_of(after, uid(p))["status"] for p in people} == {"paid_online"}
    assert after["status"] == "ready_to_confirm"


async def test_a_failure_arriving_after_success_does_not_downgrade(
    client: Client, admin_headers: dict[str, str]
) -> None:
    url, _, guest, view = await locked_cart(client, admin_headers)
    intent = f"pi_{uuid.uuid4().hex[:14]}"
    assert (await deliver(client, succeeded(view, uid(guest), intent))).json()["outcome"] == (
        "applied"
    )
    failed = event(
        "payment_intent.payment_failed",
        payment_intent(
            intent,
            amount=share(view, uid(guest)),
            currency="usd",
            metadata=teamcart_metadata(view["id"], uid(guest), 1),
            status="requires_payment_method",
        ),
    )
    assert (await deliver(client, failed)).status_code == 200
    after = (await client.get(url, headers=guest)).json()
    assert payment_of(after, uid(guest))["status"] == "paid_online"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"amount": -1}, "amount_mismatch"),
        ({"currency": "EUR"}, "currency_mismatch"),
        ({"quote_version": 0}, "quote_changed"),
    ],
)
async def test_a_payment_that_does_not_match_what_is_owed_is_refunded(
    client: Client,
    engine: AsyncEngine,
    gateway: StripeGateway,
    stripe_api_base: str,
    admin_headers: dict[str, str],
    change: dict[str, Any],
    reason: str,
) -> None:
    url, _, guest, view = await locked_cart(client, admin_headers)
    owed = share(view, uid(guest))
    amount = owed - 1 if "amount" in change else owed
    intent = await captured_intent(gateway, stripe_api_base, amount=amount)
    changes = {**change, "amount": amount}
    response = await deliver(client, succeeded(view, uid(guest), intent, **changes))
    assert response.status_code == 200
    assert response.json() == {"received": True, "outcome": "refunded", "reason": reason}
    after = (await client.get(url, headers=guest)).json()
    payment = payment_of(after, uid(guest))
    assert payment["status"] == "refunded"
    assert after["status"] == "locked"
    assert await count(engine, refunds, refunds.c.payment_intent_id == intent) == 1

    # Stripe delivering the same payment again (a new event id) refunds nothing more.
    again = await deliver(client, succeeded(view, uid(guest), intent, **changes))
    assert again.json()["outcome"] == "refunded"
    assert await count(engine, refunds, refunds.c.payment_intent_id == intent) == 1


async def test_a_payment_after_cancel_is_refunded_and_cancel_refunds_paid_members(
    client: Client,
    engine: AsyncEngine,
    gateway: StripeGateway,
    stripe_api_base: str,
    admin_headers: dict[str, str],
) -> None:
    url, host, guest, view = await locked_cart(client, admin_headers)
    paid = await captured_intent(gateway, stripe_api_base, amount=share(view, uid(host)))
    assert (await deliver(client, succeeded(view, uid(host), paid))).json()["outcome"] == "applied"

    cancelled = (await client.post(url + "/cancel", headers=host)).json()
    assert cancelled["status"] == "cancelled"
    assert payment_of(cancelled, uid(host))["status"] == "refunded"
    assert await refunded(engine, paid) == 1

    late = await captured_intent(gateway, stripe_api_base, amount=share(view, uid(guest)))
    response = await deliver(client, succeeded(view, uid(guest), late))
    assert response.json()["outcome"] == "refunded"
    assert response.json()["reason"] == "cart_not_locked"
    after = (await client.get(url, headers=guest)).json()
    assert payment_of(after, uid(guest))["status"] == "refunded"
    assert await refunded(engine, late) == 1


async def test_a_second_payment_by_a_member_who_already_paid_is_refunded(
    client: Client, gateway: StripeGateway, stripe_api_base: str, admin_headers: dict[str, str]
) -> None:
    url, _host, guest, view = await locked_cart(client, admin_headers)
    first = await captured_intent(gateway, stripe_api_base, amount=share(view, uid(guest)))
    second = await captured_intent(gateway, stripe_api_base, amount=share(view, uid(guest)))
    assert (await deliver(client, succeeded(view, uid(guest), first))).json()["outcome"] == (
        "applied"
    )
    response = await deliver(client, succeeded(view, uid(guest), second))
    assert response.json()["outcome"] == "refunded"
    assert response.json()["reason"] == "already_paid"
    payment = payment_of((await client.get(url, headers=guest)).json(), uid(guest))
    assert payment["status"] == "paid_online"  # the real payment stands


async def test_dashboard_refund_and_dispute_are_synced(
    client: Client, engine: AsyncEngine, admin_headers: dict[str, str]
) -> None:
    url, _host, guest, view = await locked_cart(client, admin_headers)
    # Start a real intent so the server knows which member it belongs to.
    started = (await client.post(url + "/payments/online", headers=guest)).json()
    intent = started["payment_intent_id"]
    assert (await deliver(client, succeeded(view, uid(guest), intent))).json()["outcome"] == (
        "applied"
    )
    disputed = await deliver(
        client,
        event(
            "charge.dispute.created",
            dispute(intent, amount=share(view, uid(guest)), currency="usd"),
        ),
    )
    assert disputed.json()["outcome"] == "review"
    after = (await client.get(url, headers=guest)).json()
    assert payment_of(after, uid(guest))["status"] == "review"

    refund_id = f"re_{uuid.uuid4().hex[:14]}"
    refunded = event(
        "charge.refunded",
        charge_refunded(
            intent, amount=share(view, uid(guest)), currency="usd", refund_id=refund_id
        ),
    )
    assert (await deliver(client, refunded)).json()["outcome"] == "applied"
    after = (await client.get(url, headers=guest)).json()
    assert payment_of(after, uid(guest))["status"] == "refunded"
    assert await count(engine, refunds, refunds.c.id == refund_id) == 1


async def test_bad_stale_and_missing_signatures_are_400_and_store_nothing(
    client: Client, engine: AsyncEngine, settings: Settings
) -> None:
    evt = event(
        "payment_intent.succeeded", payment_intent("pi_x", amount=1, currency="usd", metadata={})
    )
    body = json.dumps(evt).encode()
    cases = {
        "missing": {},
        "malformed": {"Stripe-Signature": "nonsense"},
        "wrong secret": {"Stripe-Signature": sign(body, secret="whsec_not_ours")},
        "stale": {"Stripe-Signature": sign(body, timestamp=int(time.time()) - 301)},
        "tampered": {"Stripe-Signature": sign(body + b" ")},
    }
    for name, headers in cases.items():
        response = await client.post(HOOK, content=body, headers=headers)
        assert response.status_code == 400, name
        assert response.json()["code"] == "invalid_signature", name
    assert await count(engine, stripe_events, stripe_events.c.id == evt["id"]) == 0

    # During secret rotation, an event signed with the second configured secret is accepted.
    rotated = await client.post(
        HOOK,
        content=body,
        headers={"Stripe-Signature": sign(body, secret=settings.stripe_webhook_secrets[1])},
    )
    assert rotated.status_code == 200
    assert rotated.json()["outcome"] == "ignored"
    # Several v1 signatures: one valid one is enough.
    ts = int(time.time())
    fresh = {**evt, "id": f"evt_{uuid.uuid4().hex[:20]}"}
    body = json.dumps(fresh).encode()
    good = sign(body, timestamp=ts).split(",")[1]
    several = f"t={ts},v1={'0' * 64},{good}"
    assert (
        await client.post(HOOK, content=body, headers={"Stripe-Signature": several})
    ).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b"[]",
        b'{"id": "evt_1"}',
        b'{"id": "evt_2", "type": "x", "data": 1}',
        b"\xff\xfe\x00",
    ],
)
async def test_garbage_bodies_are_4xx_and_store_nothing(
    client: Client, engine: AsyncEngine, body: bytes
) -> None:
    # Not a global count: the emulator may deliver another test's events meanwhile.
    from_this_body = stripe_events.c.id.in_(["evt_1", "evt_2", ""]) | (stripe_events.c.type == "x")
    response = await client.post(HOOK, content=body, headers={"Stripe-Signature": sign(body)})
    assert_problem(response, 400, "malformed_event")
    assert await count(engine, stripe_events, from_this_body) == 0


async def test_database_down_is_503_then_applied_on_redelivery(
    client: Client, settings: Settings, engine: AsyncEngine, admin_headers: dict[str, str]
) -> None:
    url, _, guest, view = await locked_cart(client, admin_headers)
    evt = succeeded(view, uid(guest), f"pi_{uuid.uuid4().hex[:14]}")
    body, headers = body_and_headers(evt)
    unreachable = settings.replace(database_url="postgresql://postgres@127.0.0.1:9/teamcart")
    down: Litestar = create_app(unreachable)
    async with AsyncTestClient(app=down) as broken:
        response = await broken.post(HOOK, content=body, headers=headers)
    assert_problem(response, 503, "service_unavailable")
    assert await count(engine, stripe_events, stripe_events.c.id == evt["id"]) == 0

    redelivered = await client.post(HOOK, content=body, headers=headers)
    assert redelivered.json()["outcome"] == "applied"
    after = (await client.get(url, headers=guest)).json()
    assert payment_of(after, uid(guest))["status"] == "paid_online"


async def test_events_that_are_not_ours_are_acknowledged_and_ignored(client: Client) -> None:
    other = event(
        "payment_intent.succeeded",
        payment_intent("pi_other", amount=500, currency="usd", metadata={}),
    )
    assert (await deliver(client, other)).json() == {
        "received": True,
        "outcome": "ignored",
        "reason": "not a TeamCart payment",
    }
    unhandled = event("customer.created", {"id": "cus_1", "object": "customer"})
    assert (await deliver(client, unhandled)).json()["outcome"] == "ignored"
    assert WEBHOOK_SECRET.startswith("whsec_")


async def test_cancel_commits_even_when_stripe_refuses_the_refund_and_it_is_retried(
    client: Client,
    engine: AsyncEngine,
    runner: UnitOfWorkRunner,
    settings: Settings,
    gateway: StripeGateway,
    stripe_api_base: str,
    admin_headers: dict[str, str],
) -> None:
    url, host, _, view = await locked_cart(client, admin_headers)
    paid = await captured_intent(gateway, stripe_api_base, amount=share(view, uid(host)))
    assert (await deliver(client, succeeded(view, uid(host), paid))).json()["outcome"] == "applied"

    stripe_down = settings.replace(stripe_api_base="http://127.0.0.1:9")
    async with AsyncTestClient(app=create_app(stripe_down)) as cut_off:
        cancelled = await cut_off.post(url + "/cancel", headers=host)
    assert cancelled.status_code == 200, cancelled.text  # the decision stands
    assert payment_of(cancelled.json(), uid(host))["status"] == "refunded"
    async with engine.connect() as conn:
        owed = (
            (
                await conn.execute(
                    select(refund_requests).where(refund_requests.c.payment_intent_id == paid)
                )
            )
            .mappings()
            .one()
        )
    # The first attempt failed. The session's servers run sweepers too, and one of them may
    # already have retried it (successfully: attempt 2) by now.
    assert (owed["status"], owed["attempts"]) in {("pending", 1), ("done", 2)}

    # Not again at once: a failed refund is retried later, each time later.
    assert await carry_out_refunds(runner, payment_intent_ids=[paid]) == 0
    async with asyncio.timeout(10):
        while not await count(engine, refunds, refunds.c.payment_intent_id == paid):
            await carry_out_refunds(runner)  # what the sweeper does, if none did yet
            await asyncio.sleep(0.2)
    assert await count(engine, refunds, refunds.c.payment_intent_id == paid) == 1
    assert await carry_out_refunds(runner, payment_intent_ids=[paid]) == 0  # once


async def test_a_refund_stripe_reports_failed_is_owed_again_in_a_new_round(
    client: Client,
    engine: AsyncEngine,
    gateway: StripeGateway,
    stripe_api_base: str,
    admin_headers: dict[str, str],
) -> None:
    url, host, _, view = await locked_cart(client, admin_headers)
    paid = await captured_intent(gateway, stripe_api_base, amount=share(view, uid(host)))
    assert (await deliver(client, succeeded(view, uid(host), paid))).json()["outcome"] == "applied"
    assert (await client.post(url + "/cancel", headers=host)).status_code == 200
    async with engine.connect() as conn:
        first = (
            await conn.execute(
                select(refund_requests.c.status, refund_requests.c.round).where(
                    refund_requests.c.payment_intent_id == paid
                )
            )
        ).one()
        refund_id = (
            await conn.execute(select(refunds.c.id).where(refunds.c.payment_intent_id == paid))
        ).scalar_one()
    assert tuple(first) == ("done", 1)

    failed = event(
        "refund.updated",
        {
            "id": refund_id,
            "object": "refund",
            "amount": share(view, uid(host)),
            "currency": "usd",
            "payment_intent": paid,
            "status": "failed",
            "failure_reason": "expired_or_canceled_card",
        },
    )
    assert (await deliver(client, failed)).status_code == 200
    async with engine.connect() as conn:
        again = (
            (
                await conn.execute(
                    select(refund_requests).where(refund_requests.c.payment_intent_id == paid)
                )
            )
            .mappings()
            .one()
        )
    assert again["round"] == 2  # a new idempotency key: Stripe makes a new refund
    assert again["attempts"] >= 2  # and it was asked again right after the webhook
    assert "expired_or_canceled_card" in again["last_error"]


async def test_a_partial_dashboard_refund_holds_the_payment_for_review_until_it_covers_all(
    client: Client, admin_headers: dict[str, str]
) -> None:
    url, _, guest, view = await locked_cart(client, admin_headers)
    intent = (await client.post(url + "/payments/online", headers=guest)).json()[
        "payment_intent_id"
    ]
    assert (await deliver(client, succeeded(view, uid(guest), intent))).json()["outcome"] == (
        "applied"
    )
    owed = share(view, uid(guest))

    def refund_event(amount: int) -> dict[str, Any]:
        return event(
            "refund.updated",
            {
                "id": f"re_{uuid.uuid4().hex[:14]}",
                "object": "refund",
                "amount": amount,
                "currency": "usd",
                "payment_intent": intent,
                "status": "succeeded",
            },
        )

    partial = await deliver(client, refund_event(100))
    assert (partial.json()["outcome"], partial.json()["reason"]) == ("review", "partially_refunded")
    after = (await client.get(url, headers=guest)).json()
    assert payment_of(after, uid(guest))["status"] == "review"  # no longer pays the share

    rest = await deliver(client, refund_event(owed - 100))
    assert rest.json() == {"received": True, "outcome": "applied", "reason": None}
    after = (await client.get(url, headers=guest)).json()
    assert payment_of(after, uid(guest))["status"] == "refunded"


async def test_a_share_stripe_cannot_charge_exactly_is_refused_online(
    client: Client, admin_headers: dict[str, str]
) -> None:
    store = await create_store(
        client, admin_headers, currency="KWD", delivery_fee_minor=0, tax_rate_bps=0
    )
    product = await create_product(
        client, admin_headers, store["id"], price_minor=1235, option_groups=[]
    )
    host = await session(client, "Host")
    cart = await open_cart(client, host, store["id"])
    url = f"/api/v1/teamcarts/{cart['id']}"
    await client.post(
        url + "/items", json={"product_id": product["id"], "quantity": 1}, headers=host
    )
    await client.post(url + "/lock", headers=host)
    assert_problem(
        await client.post(url + "/payments/online", headers=host), 422, "amount_not_payable_online"
    )
    assert (await client.post(url + "/payments/cod", headers=host)).status_code == 200


def _malformed_events() -> dict[str, dict[str, Any]]:
    cart, member = str(uuid.uuid4()), str(uuid.uuid4())
    good_metadata = teamcart_metadata(cart, member, 1)
    intent = payment_intent(f"pi_{uuid.uuid4().hex[:14]}", amount=100, currency="usd", metadata={})
    refunded = charge_refunded(intent["id"], amount=100, currency="usd", refund_id="re_x")
    refunded_ok = charge_refunded(intent["id"], amount=100, currency="usd", refund_id="re_y")
    del refunded["refunds"]["data"][0]["id"]
    return {
        "metadata not an object": event("payment_intent.succeeded", {**intent, "metadata": "x"}),
        "amount not an integer": event(
            "payment_intent.succeeded",
            {**intent, "amount": "100", "amount_received": 1.5, "metadata": good_metadata},
        ),
        "refund without an id": event("charge.refunded", refunded),
        "refund list not a list": event("charge.refunded", {**refunded, "refunds": {"data": 7}}),
        "a value PostgreSQL can't store": event(
            "charge.refunded", {**refunded_ok, "payment_intent": "pi_\u0000x"}
        ),
        "dispute without an intent": event(
            "charge.dispute.created", {**dispute("", amount=100, currency="usd")}
        ),
    }


@pytest.mark.parametrize("case", sorted(_malformed_events()))
async def test_a_signed_but_malformed_event_is_recorded_as_rejected_and_answered_200(
    client: Client, engine: AsyncEngine, case: str
) -> None:
    """Answering 5xx would have Stripe retry it for days; nothing of it is applied."""
    evt = _malformed_events()[case]
    response = await deliver(client, evt)
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "rejected"
    assert response.json()["reason"]
    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                select(stripe_events.c.outcome).where(stripe_events.c.id == evt["id"])
            )
        ).scalar_one()
    assert stored == "rejected"
    assert (await deliver(client, evt)).json()["outcome"] == "duplicate"


async def test_ids_that_cannot_be_ours_name_no_cart(
    client: Client, gateway: StripeGateway, stripe_api_base: str, engine: AsyncEngine
) -> None:
    """A capture whose metadata names a cart id that is no UUID is refunded like any capture
    for an unknown cart; other events for it are ignored. Neither is a 5xx."""
    metadata = {**teamcart_metadata("not-a-uuid", "nor-this", 1)}
    paid = await captured_intent(gateway, stripe_api_base, amount=700)
    captured = event(
        "payment_intent.succeeded",
        payment_intent(paid, amount=700, currency="usd", metadata=metadata),
    )
    response = await deliver(client, captured)
    assert response.json() == {
        "received": True,
        "outcome": "refunded",
        "reason": "unknown_cart_or_member",
    }
    assert await count(engine, refunds, refunds.c.payment_intent_id == paid) == 1
    failed = event(
        "payment_intent.payment_failed",
        payment_intent("pi_nope", amount=700, currency="usd", metadata=metadata, status="failed"),
    )
    assert (await deliver(client, failed)).json()["outcome"] == "ignored"


async def test_a_signature_dated_in_the_future_is_refused(client: Client) -> None:
    evt = event(
        "payment_intent.succeeded", payment_intent("pi_x", amount=1, currency="usd", metadata={})
    )
    response = await deliver(client, evt, timestamp=int(time.time()) + 3600)
    assert_problem(response, 400, "invalid_signature")


async def test_a_ready_cart_the_host_never_confirms_expires_and_refunds_its_members(
    client: Client,
    engine: AsyncEngine,
    runner: UnitOfWorkRunner,
    gateway: StripeGateway,
    stripe_api_base: str,
    admin_headers: dict[str, str],
) -> None:
    url, host, guest, view = await locked_cart(client, admin_headers)
    assert (await client.post(url + "/payments/cod", headers=host)).status_code == 200
    paid = await captured_intent(gateway, stripe_api_base, amount=share(view, uid(guest)))
    assert (await deliver(client, succeeded(view, uid(guest), paid))).json()["outcome"] == (
        "applied"
    )
    assert (await client.get(url, headers=host)).json()["status"] == "ready_to_confirm"

    await expire_due_carts(runner, timedelta(minutes=30))  # within its confirm window
    assert (await client.get(url, headers=host)).json()["status"] == "ready_to_confirm"
    await expire_due_carts(runner, timedelta(0))  # the confirm window is over too
    after = (await client.get(url, headers=host)).json()
    assert after["status"] == "expired"
    assert payment_of(after, uid(guest))["status"] == "refunded"
    assert await count(engine, refunds, refunds.c.payment_intent_id == paid) == 1


async def test_a_cart_that_reopens_and_is_ready_again_reminds_its_host_again(
    client: Client, runner: UnitOfWorkRunner, admin_headers: dict[str, str]
) -> None:
    from app.use_cases.teamcarts import remind_hosts_to_confirm

    url, host, guest, view = await locked_cart(client, admin_headers)
    assert (await client.post(url + "/payments/cod", headers=host)).status_code == 200
    paid = (await client.post(url + "/payments/online", headers=guest)).json()["payment_intent_id"]
    assert (await deliver(client, succeeded(view, uid(guest), paid))).json()["outcome"] == (
        "applied"
    )
    reminded: list[str] = []

    async def remind(cart_id: str, user_id: str, deadline: Any, what: str) -> None:
        if cart_id == view["id"]:
            reminded.append(user_id)

    await remind_hosts_to_confirm(runner, timedelta(0), remind)
    await remind_hosts_to_confirm(runner, timedelta(0), remind)
    assert reminded == [uid(host)]  # once while it stays ready

    refunded = event(
        "charge.refunded",
        charge_refunded(
            paid, amount=share(view, uid(guest)), currency="usd", refund_id=f"re_{uuid.uuid4().hex}"
        ),
    )
    assert (await deliver(client, refunded)).status_code == 200
    assert (await client.get(url, headers=host)).json()["status"] == "locked"
    assert (await client.post(url + "/payments/cod", headers=guest)).status_code == 200
    assert (await client.get(url, headers=host)).json()["status"] == "ready_to_confirm"
    await remind_hosts_to_confirm(runner, timedelta(0), remind)
    assert reminded == [uid(host), uid(host)]  # ready again: reminded again
