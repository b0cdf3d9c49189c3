"""The Stripe add-on for real: its own localstripe and add-on processes
(``app.embedded.stripe_emulator``, as the embedded default starts them), the official SDK
through ``StripeGateway``, the hosted page driven over HTTP as a browser would post it, and a
small webhook receiver that checks every signature with the server's own verifier.

The module has an emulator of its own, so registering its receiver never takes the session's
emulator away from the app's webhook endpoint.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from app.embedded import EMULATOR_SECRET_KEY, free_port, stripe_emulator
from app.payments.gateway import CheckoutSessionInfo, GatewayError, StripeGateway
from app.payments.signatures import InvalidSignature, verify_signature
from tests.integration.test_online_payments import DECLINED_ON_CHARGE, VISA, pay_with_card

SECRET = "whsec_addon_tests_" + secrets.token_hex(8)
AUTH = {"Authorization": f"Bearer {EMULATOR_SECRET_KEY}"}
CARD = {"card_expiry": "12 / 34", "card_cvc": "123", "email": "ana@example.com"}


@dataclass
class Delivery:
    event: dict[str, Any]
    verified: bool
    attempt: int


@dataclass
class Receiver:
    """A webhook endpoint: every delivery, with whether its signature verified.
    ``failures`` makes the next N deliveries answer 500."""

    url: str
    deliveries: list[Delivery] = field(default_factory=list)
    failures: int = 0

    def of(self, event_type: str, object_id: str) -> list[Delivery]:
        return [
            d
            for d in self.deliveries
            if d.event["type"] == event_type and d.event["data"]["object"]["id"] == object_id
        ]

    async def wait_for(
        self, event_type: str, object_id: str, *, count: int = 1, within: float = 10
    ) -> list[Delivery]:
        deadline = time.monotonic() + within
        while len(self.of(event_type, object_id)) < count:
            if time.monotonic() > deadline:
                seen = [(d.event["type"], d.event["data"]["object"]["id"]) for d in self.deliveries]
                raise AssertionError(f"no {event_type} for {object_id} within {within}s: {seen}")
            await asyncio.sleep(0.05)
        return self.of(event_type, object_id)


@pytest.fixture(scope="module")
def addon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with stripe_emulator(tmp_path_factory.mktemp("addon") / "localstripe.log") as base:
        yield base


@pytest.fixture(scope="module")
async def receiver(addon: str) -> AsyncIterator[Receiver]:
    port = free_port()
    hook = Receiver(f"http://127.0.0.1:{port}/hook")

    async def take(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify_signature(body, request.headers.get("Stripe-Signature"), [SECRET])
            verified = True
        except InvalidSignature:
            verified = False
        hook.deliveries.append(Delivery(json.loads(body), verified, len(hook.deliveries) + 1))
        if hook.failures > 0:
            hook.failures -= 1
            return web.Response(status=500)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", take)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with httpx.AsyncClient() as http:
        registered = await http.post(
            f"{addon}/_config/webhooks/teamcart", data={"url": hook.url, "secret": SECRET}
        )
        assert registered.status_code == 200, registered.text
    try:
        yield hook
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
async def gateway(addon: str) -> AsyncIterator[StripeGateway]:
    stripe_gateway = StripeGateway(EMULATOR_SECRET_KEY, api_base=addon)
    yield stripe_gateway
    await stripe_gateway.close()


@pytest.fixture
async def http(addon: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=addon, timeout=10) as client:
        yield client


async def a_session(
    gateway: StripeGateway, *, amount: int = 2450, expires_at: int | None = None, **extra: Any
) -> CheckoutSessionInfo:
    order_id = extra.pop("order_id", f"o_{uuid.uuid4().hex[:10]}")
    return await gateway.create_checkout_session(
        amount=amount,
        currency=extra.pop("currency", "USD"),
        name=extra.pop("name", "Demo Kitchen · TC-20261201-ABCDE"),
        metadata={"source": "order", "order_id": order_id},
        success_url="https://shop.example/orders/done?session={CHECKOUT_SESSION_ID}",
        cancel_url="https://shop.example/cart",
        idempotency_key=extra.pop("idempotency_key", str(uuid.uuid4())),
        expires_at=expires_at,
    )


async def pay(http: httpx.AsyncClient, session: CheckoutSessionInfo, number: str) -> httpx.Response:
    assert session.url is not None
    return await http.post(session.url, data={"card_number": number, **CARD})


async def test_a_session_made_through_the_sdk_is_shaped_as_stripes(
    gateway: StripeGateway, http: httpx.AsyncClient, addon: str
) -> None:
    expires_at = int(time.time()) + 3600
    session = await a_session(gateway, amount=2450, expires_at=expires_at)
    assert session.id.startswith("cs_test_")
    assert session.url == f"{addon}/checkout/{session.id}"
    assert (session.status, session.payment_status) == ("open", "unpaid")
    assert (session.amount_total, session.currency, session.expires_at) == (
        2450,
        "USD",
        expires_at,
    )
    assert session.metadata["source"] == "order"

    raw = (await http.get(f"/v1/checkout/sessions/{session.id}", headers=AUTH)).json()
    assert raw["object"] == "checkout.session"
    assert (raw["mode"], raw["livemode"], raw["currency"]) == ("payment", False, "usd")
    assert raw["payment_intent"] == session.payment_intent_id
    assert abs(raw["created"] - time.time()) < 60
    items = (await http.get(f"/v1/checkout/sessions/{session.id}/line_items", headers=AUTH)).json()
    assert [(i["description"], i["quantity"], i["amount_total"]) for i in items["data"]] == [
        ("Demo Kitchen · TC-20261201-ABCDE", 1, 2450)
    ]

    assert session.payment_intent_id is not None
    intent = await gateway.retrieve_payment_intent(session.payment_intent_id)
    assert (intent.amount, intent.currency, intent.status) == (
        2450,
        "USD",
        "requires_payment_method",
    )
    assert intent.metadata == session.metadata  # payment_intent_data[metadata]


async def test_paying_on_the_hosted_page_sends_one_signed_completed_event(
    gateway: StripeGateway, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    session = await a_session(gateway, amount=1999)
    assert session.url is not None
    page = await http.get(session.url)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for label in ("Card number", "Expiry date", "Security code"):
        assert label in page.text
    assert "USD 19.99" in page.text
    assert "Demo Kitchen · TC-20261201-ABCDE" in page.text
    assert 'href="https://shop.example/cart"' in page.text  # Cancel

    paid = await pay(http, session, VISA)
    assert paid.status_code == 303, paid.text
    assert paid.headers["location"] == (
        f"https://shop.example/orders/done?session={session.id}"  # {CHECKOUT_SESSION_ID}
    )

    [completed] = await receiver.wait_for("checkout.session.completed", session.id)
    assert completed.verified
    event = completed.event
    assert event["id"].startswith("evt_")
    assert {k: event[k] for k in ("object", "livemode", "pending_webhooks")} == {
        "object": "event",
        "livemode": False,
        "pending_webhooks": 1,
    }
    assert event["request"] == {"id": None, "idempotency_key": None}
    obj = event["data"]["object"]
    assert obj["object"] == "checkout.session"
    assert (obj["status"], obj["payment_status"]) == ("complete", "paid")
    assert obj["payment_intent"] == session.payment_intent_id
    assert (obj["amount_total"], obj["currency"]) == (1999, "usd")
    assert obj["metadata"] == dict(session.metadata)
    assert obj["customer_details"]["email"] == "ana@example.com"

    # localstripe's own event for the same payment reaches the same endpoint, same secret.
    assert session.payment_intent_id is not None
    [succeeded] = await receiver.wait_for("payment_intent.succeeded", session.payment_intent_id)
    assert succeeded.verified
    await asyncio.sleep(1.5)  # time for a duplicate to show, if one were sent
    assert len(receiver.of("checkout.session.completed", session.id)) == 1

    intent = await gateway.retrieve_payment_intent(session.payment_intent_id)
    assert intent.status == "succeeded"
    assert intent.metadata == session.metadata
    after = await gateway.retrieve_checkout_session(session.id)
    assert (after.status, after.payment_status, after.url) == ("complete", "paid", None)

    again = await pay(http, session, VISA)  # a second submit pays nothing more
    assert again.status_code == 409
    assert "already paid" in again.text


async def test_a_declined_card_does_not_complete_and_another_card_then_pays(
    gateway: StripeGateway, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    session = await a_session(gateway)
    declined = await pay(http, session, DECLINED_ON_CHARGE)
    assert declined.status_code == 402
    assert 'role="alert"' in declined.text
    assert "Your card was declined." in declined.text
    assert "<form" in declined.text  # shown again, to try another card

    assert session.payment_intent_id is not None
    intent = await gateway.retrieve_payment_intent(session.payment_intent_id)
    assert intent.status == "requires_payment_method"
    assert (await gateway.retrieve_checkout_session(session.id)).status == "open"
    await receiver.wait_for("payment_intent.payment_failed", session.payment_intent_id)
    assert receiver.of("checkout.session.completed", session.id) == []

    needs_3ds = await pay(http, session, "4000002500003155")  # no challenge on this page
    assert needs_3ds.status_code == 402
    assert "3D Secure" in needs_3ds.text
    assert (await gateway.retrieve_checkout_session(session.id)).status == "open"

    assert (await pay(http, session, VISA)).status_code == 303  # the same intent, a new card
    [completed] = await receiver.wait_for("checkout.session.completed", session.id)
    assert completed.event["data"]["object"]["payment_intent"] == session.payment_intent_id
    assert (await gateway.retrieve_payment_intent(session.payment_intent_id)).status == (
        "succeeded"
    )


async def test_racing_submits_and_an_expiry_end_in_one_outcome_and_one_event(
    gateway: StripeGateway, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    twice = await a_session(gateway)
    answers = await asyncio.gather(pay(http, twice, VISA), pay(http, twice, VISA))
    assert sorted(a.status_code for a in answers) == [303, 409]

    raced = await a_session(gateway)
    paid, expired = await asyncio.gather(
        pay(http, raced, VISA),
        gateway.expire_checkout_session(raced.id),
        return_exceptions=True,
    )
    status = (await gateway.retrieve_checkout_session(raced.id)).status
    assert isinstance(paid, httpx.Response)
    if status == "complete":  # the payment won: the expire is refused
        assert paid.status_code == 303
        assert isinstance(expired, GatewayError)
    else:  # the expiry won: the payment is refused
        assert status == "expired"
        assert paid.status_code == 410
    await asyncio.sleep(1.5)
    for session in (twice, raced):
        events = receiver.of("checkout.session.completed", session.id)
        events += receiver.of("checkout.session.expired", session.id)
        assert len(events) == 1, events


async def test_a_malformed_card_is_named_on_the_page(
    gateway: StripeGateway, http: httpx.AsyncClient
) -> None:
    session = await a_session(gateway)
    wrong = await pay(http, session, "4242424242424241")  # fails the Luhn check
    assert wrong.status_code == 422
    assert 'aria-invalid="true" aria-describedby="card_number-error"' in wrong.text
    assert "Your card number is invalid." in wrong.text


async def test_expiring_sends_expired_cancels_the_intent_and_refuses_payment(
    gateway: StripeGateway, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    session = await a_session(gateway)
    await gateway.expire_checkout_session(session.id)
    await gateway.expire_checkout_session(session.id)  # a retried expire is done already

    [expired] = await receiver.wait_for("checkout.session.expired", session.id)
    assert expired.verified
    assert expired.event["data"]["object"]["status"] == "expired"
    assert expired.event["request"]["id"].startswith("req_")  # the API call that expired it
    assert session.payment_intent_id is not None
    assert (await gateway.retrieve_payment_intent(session.payment_intent_id)).status == ("canceled")

    assert session.url is not None
    page = await http.get(session.url)
    assert page.status_code == 410
    assert "<form" not in page.text
    refused = await pay(http, session, VISA)
    assert refused.status_code == 410
    after = await gateway.retrieve_checkout_session(session.id)
    assert (after.status, after.payment_status) == ("expired", "unpaid")
    await asyncio.sleep(0.5)
    assert receiver.of("checkout.session.completed", session.id) == []
    assert len(receiver.of("checkout.session.expired", session.id)) == 1

    raw = await http.post(f"/v1/checkout/sessions/{session.id}/expire", headers=AUTH)
    assert raw.status_code == 400
    assert raw.json()["error"]["type"] == "invalid_request_error"
    assert "status of `expired`" in raw.json()["error"]["message"]


async def test_a_paid_session_can_not_be_expired(
    gateway: StripeGateway, http: httpx.AsyncClient
) -> None:
    session = await a_session(gateway)
    assert (await pay(http, session, VISA)).status_code == 303
    with pytest.raises(GatewayError, match="status of `complete`"):
        await gateway.expire_checkout_session(session.id)


async def test_a_session_expires_on_its_own_at_expires_at(
    gateway: StripeGateway, receiver: Receiver
) -> None:
    session = await a_session(gateway, expires_at=int(time.time()) + 2)
    [expired] = await receiver.wait_for("checkout.session.expired", session.id, within=8)
    assert expired.verified
    assert expired.event["request"] == {"id": None, "idempotency_key": None}
    assert (await gateway.retrieve_checkout_session(session.id)).status == "expired"


async def test_the_same_idempotency_key_gives_the_same_session(
    gateway: StripeGateway, http: httpx.AsyncClient
) -> None:
    key = f"order-{uuid.uuid4()}-checkout_session-a1"
    first = await a_session(gateway, idempotency_key=key, order_id="o_1")
    assert await a_session(gateway, idempotency_key=key, order_id="o_1") == first
    with pytest.raises(GatewayError, match="same parameters"):  # the key, for another order
        await a_session(gateway, idempotency_key=key, order_id="o_2")

    racing = f"order-{uuid.uuid4()}-checkout_session-a1"
    made = await asyncio.gather(
        *(a_session(gateway, idempotency_key=racing, order_id="o_3") for _ in range(5))
    )
    assert len({s.id for s in made}) == 1
    listed = await http.get(
        "/v1/checkout/sessions",
        params={"payment_intent": made[0].payment_intent_id},
        headers=AUTH,
    )
    assert [s["id"] for s in listed.json()["data"]] == [made[0].id]

    other = await http.post(
        "/v1/checkout/sessions",
        headers={**AUTH, "Idempotency-Key": key},
        data={"mode": "payment"},
    )
    assert other.status_code == 400
    assert other.json()["error"]["type"] == "idempotency_error"


async def test_refusals_are_shaped_as_stripes(
    gateway: StripeGateway, http: httpx.AsyncClient
) -> None:
    missing = await http.post(
        "/v1/checkout/sessions",
        headers=AUTH,
        data={"mode": "payment", "success_url": "https://shop.example/ok"},
    )
    assert missing.status_code == 400
    assert missing.json() == {
        "error": {
            "type": "invalid_request_error",
            "message": "Missing required param: line_items.",
            "code": "parameter_missing",
            "param": "line_items",
        }
    }
    assert missing.headers["request-id"].startswith("req_")

    unknown = await http.get("/v1/checkout/sessions/cs_test_nope", headers=AUTH)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "resource_missing"
    with pytest.raises(GatewayError, match=r"No such checkout\.session"):
        await gateway.retrieve_checkout_session("cs_test_nope")

    anonymous = await http.get("/v1/checkout/sessions")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "invalid_request_error"

    assert (await http.get("/checkout/cs_test_nope")).status_code == 404


async def test_every_other_call_reaches_localstripe_unchanged(
    gateway: StripeGateway, http: httpx.AsyncClient, addon: str, receiver: Receiver
) -> None:
    intent = await gateway.create_payment_intent(
        amount=700,
        currency="EUR",
        metadata={"source": "tests"},
        idempotency_key=str(uuid.uuid4()),
    )
    assert await pay_with_card(addon, intent.id, VISA) == "succeeded"
    assert (await gateway.retrieve_payment_intent(intent.id)).status == "succeeded"
    [succeeded] = await receiver.wait_for("payment_intent.succeeded", intent.id)
    assert succeeded.verified  # localstripe's event, signed with the secret given to the add-on

    upstream = (await http.get("/_addon/health")).json()["upstream"]
    path = f"/v1/payment_intents/{intent.id}"
    through = await http.get(path, headers=AUTH)
    async with httpx.AsyncClient(base_url=upstream) as direct_http:
        direct = await direct_http.get(path, headers=AUTH)
    assert through.status_code == direct.status_code == 200
    assert through.json() == direct.json()
    assert (await http.get(path)).status_code == 401  # Authorization decides there, too
    script = await http.get("/js.stripe.com/v3/")  # the browser's Stripe.js comes through too
    assert script.status_code == 200
    assert "LOCALSTRIPE_BASE_API" in script.text


async def test_a_delivery_is_retried_until_the_endpoint_takes_it(
    gateway: StripeGateway, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    session = await a_session(gateway)
    receiver.failures = 2
    await gateway.expire_checkout_session(session.id)
    deliveries = await receiver.wait_for("checkout.session.expired", session.id, count=3)
    assert len({d.event["id"] for d in deliveries}) == 1  # the same event, three times
    assert all(d.verified for d in deliveries)
    await asyncio.sleep(1.5)
    assert len(receiver.of("checkout.session.expired", session.id)) == 3  # 2xx: no more


def test_the_emulator_processes_are_gone_when_the_context_exits(tmp_path: Path) -> None:
    import psutil

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with stripe_emulator(tmp_path / "localstripe.log") as base:
        started = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        commands = sorted(" ".join(p.cmdline()) for p in started)
        assert any("-m localstripe" in c for c in commands), commands
        assert any("-m app.stripe_addon" in c for c in commands), commands
        assert httpx.get(base + "/_addon/health", timeout=5).status_code == 200
    _, alive = psutil.wait_procs(started, timeout=5)
    assert alive == []
    assert (tmp_path / "localstripe.addon.log").exists()
