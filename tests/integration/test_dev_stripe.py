"""``GET /dev/stripe``: with the embedded emulator, where it is and how to sign as it does;
a server that talks to Stripe itself has no such route."""

from __future__ import annotations

import json

from litestar.testing import AsyncTestClient

from app.config import Settings
from app.wiring import create_app
from tests.builders import Client
from tests.stripe_events import event, sign


async def test_a_script_finds_the_emulator_and_signs_as_it_does(
    client: Client, settings: Settings
) -> None:
    found = await client.get("/dev/stripe")
    assert found.status_code == 200, found.text
    emulator = found.json()
    assert emulator["api_base"] == settings.stripe_api_base
    assert emulator["publishable_key"].startswith("pk_")
    # An event signed with the secret it names is taken in, as the emulator's own are.
    payload = json.dumps(event("customer.created", {"id": "cus_1", "object": "customer"})).encode()
    answer = await client.post(
        "/api/v1/webhooks/stripe",
        content=payload,
        headers={
            "Stripe-Signature": sign(payload, emulator["webhook_secret"]),
            "Content-Type": "application/json",
        },
    )
    assert answer.status_code == 200, answer.text


async def test_there_is_no_emulator_to_show_when_stripe_is_real(settings: Settings) -> None:
    real = settings.replace(stripe_secret_key="sk_test_a_real_account", stripe_api_base=None)
    async with AsyncTestClient(app=create_app(real)) as other:
        assert (await other.get("/dev/stripe")).status_code == 404
