"""The order's email, end to end: members with an address get each mail once, with their own
amounts in the order's currency, as the real order moves (placed, shipped, refunded,
delivered); a member without an address gets none. Sent by the app's mailer through SMTP to
a real aiosmtpd server (the ``mail_catcher`` fixture)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.mail.catcher import CaughtMail, MailCatcher
from tests.integration.test_order_lifecycle import an_order, staff_of

pytestmark = pytest.mark.usefixtures("live_server")


@pytest.fixture
async def http(live_server: str) -> Any:
    async with httpx.AsyncClient(base_url=live_server, timeout=15) as client:
        yield client


async def mail_to(
    catcher: MailCatcher, addresses: set[str], kinds: Counter[str], within: float = 15.0
) -> list[CaughtMail]:
    """The mail sent to ``addresses``, once at least ``kinds`` of it has arrived (and a
    moment more, so a duplicate would be seen too)."""
    async with asyncio.timeout(within):
        while True:
            mine = [m for m in catcher.caught(limit=10_000) if m.to in addresses]
            if not kinds - Counter(m.kind or "" for m in mine):
                await asyncio.sleep(0.5)
                return [m for m in catcher.caught(limit=10_000) if m.to in addresses]
            await asyncio.sleep(0.05)


async def test_each_mail_once_to_each_member_with_an_address(
    http: httpx.AsyncClient,
    admin_headers: dict[str, str],
    stripe_api_base: str,
    settings: Settings,
    mail_catcher: MailCatcher,
) -> None:
    store, order, people = await an_order(http, admin_headers, stripe_api_base)
    # Ana (online) and the host (cash) give an address; Ben doesn't.
    run = uuid.uuid4().hex[:8]
    address = {"Ana": f"ana-{run}@example.test", "Host": f"host-{run}@example.test"}
    # The addresses are given after the order was placed: mail of later events only.
    for name, email in address.items():
        changed = await http.patch("/api/v1/me", json={"email": email}, headers=people[name])
        assert changed.status_code == 200, changed.text
    staff = staff_of(settings, store["id"])
    url = f"/api/v1/orders/{order['id']}"
    ana = next(p for p in order["payments"] if p["display_name"] == "Ana")
    for step in (
        {"to": "accepted"},
        {"to": "preparing"},
        {"to": "shipped", "carrier": "DHL", "tracking_number": "JD0142"},
    ):
        assert (await http.post(url + "/transitions", json=step, headers=staff)).status_code == 200
    refund = await http.post(
        url + "/refunds",
        json={"amount_minor": 250, "user_id": ana["user_id"], "reason": "late"},
        headers=staff,
    )
    assert refund.status_code == 201, refund.text
    delivered = await http.post(url + "/transitions", json={"to": "delivered"}, headers=staff)
    assert delivered.status_code == 200

    mail = await mail_to(
        mail_catcher,
        set(address.values()),
        Counter({"order_shipped": 2, "order_delivered": 2, "refund_issued": 1}),
    )
    sent = Counter((m.to, m.kind) for m in mail)
    assert sent == Counter(
        {
            (address["Ana"], "order_shipped"): 1,
            (address["Host"], "order_shipped"): 1,
            (address["Ana"], "order_delivered"): 1,
            (address["Host"], "order_delivered"): 1,
            (address["Ana"], "refund_issued"): 1,
        }
    )
    shipped = next(m for m in mail if m.kind == "order_shipped" and m.to == address["Ana"])
    assert order["number"] in shipped.subject
    assert "DHL" in shipped.text
    assert "JD0142" in shipped.text
    refunded = next(m for m in mail if m.kind == "refund_issued")
    assert "2.50 USD" in refunded.text


async def test_the_placed_order_and_each_payers_receipt(
    http: httpx.AsyncClient,
    admin_headers: dict[str, str],
    stripe_api_base: str,
    mail_catcher: MailCatcher,
) -> None:
    run = uuid.uuid4().hex[:8]
    emails = {name: f"{name.lower()}-{run}@example.test" for name in ("Host", "Ana")}
    _, order, _ = await an_order(http, admin_headers, stripe_api_base, emails=emails)  # not Ben
    mail = await mail_to(
        mail_catcher, set(emails.values()), Counter({"order_placed": 2, "payment_receipt": 1})
    )
    assert Counter((m.to, m.kind) for m in mail) == Counter(
        {
            (emails["Host"], "order_placed"): 1,
            (emails["Ana"], "order_placed"): 1,
            (emails["Ana"], "payment_receipt"): 1,
        }
    )
    ana = next(p for p in order["payments"] if p["display_name"] == "Ana")
    receipt = next(m for m in mail if m.kind == "payment_receipt")
    assert f"{ana['amount_minor'] // 100}.{ana['amount_minor'] % 100:02d} USD" in receipt.text
    assert order["number"] in receipt.subject
