"""``teamcart reconcile``: captured payments whose webhook never arrived are found and repaired.

A private emulator with no webhook registered stands for "Stripe captured it, we never heard".
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.embedded import EMULATOR_SECRET_KEY, stripe_emulator
from app.payments.amounts import to_stripe
from app.payments.gateway import StripeGateway
from app.use_cases.payments.reconcile import reconcile
from app.wiring import build_runner
from tests.builders import Client
from tests.integration.test_group_flow import uid
from tests.integration.test_online_payments import VISA, pay_with_card
from tests.integration.test_stripe_webhooks import locked_cart, payment_of, share
from tests.stripe_events import teamcart_metadata

TEAMCART = str(Path(sys.executable).parent / "teamcart")


@pytest.fixture
async def silent_stripe(tmp_path: Path) -> AsyncIterator[tuple[str, StripeGateway]]:
    with stripe_emulator(tmp_path / "silent-localstripe.log") as base:
        gateway = StripeGateway(EMULATOR_SECRET_KEY, api_base=base)
        yield base, gateway
        await gateway.close()


async def test_reconcile_reports_then_records_or_refunds(
    client: Client,
    engine: AsyncEngine,
    database_url: str,
    admin_headers: dict[str, str],
    silent_stripe: tuple[str, StripeGateway],
) -> None:
    base, gateway = silent_stripe
    runner = build_runner(engine, gateway, relay=None)
    url, host, guest, view = await locked_cart(client, admin_headers)

    async def captured(user_id: str, amount: int) -> str:
        intent = await gateway.create_payment_intent(
            amount=amount,
            currency="USD",
            metadata=teamcart_metadata(view["id"], user_id, view["quote_version"]),
            idempotency_key=f"reconcile-test-{user_id}",
        )
        assert await pay_with_card(base, intent.id, VISA) == "succeeded"
        return intent.id

    good = await captured(uid(guest), to_stripe(share(view, uid(guest)), "USD"))
    short = await captured(uid(host), to_stripe(share(view, uid(host)), "USD") - 7)
    since = int(time.time()) - 600

    env = {
        **os.environ,
        "TEAMCART_DATABASE_URL": database_url,
        "TEAMCART_STRIPE_API_BASE": base,
        "TEAMCART_STRIPE_SECRET_KEY": EMULATOR_SECRET_KEY,
    }
    report = await asyncio.to_thread(
        subprocess.run,
        [TEAMCART, "reconcile", "--since", "1h"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert report.returncode == 1, report.stderr  # something is unrecorded
    listed = {json.loads(line)["payment_intent_id"] for line in report.stdout.splitlines()}
    assert listed == {good, short}

    fixed = await reconcile(runner, since=since, fix=True)
    assert {f.payment_intent_id: f.fixed_as for f in fixed} == {good: "applied", short: "refunded"}
    after = (await client.get(url, headers=guest)).json()
    assert payment_of(after, uid(guest))["status"] == "paid_online"
    assert payment_of(after, uid(host))["status"] == "refunded"

    assert await reconcile(runner, since=since, fix=False) == []
