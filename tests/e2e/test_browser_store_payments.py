"""Stores get paid, in real Chromium (ADR 0018). First, a store's staff, on a phone, open
their store page and read that payouts are not set up; they start setup, leave the Stripe
emulator's onboarding page unfinished and read what Stripe still needs, continue, fill it in,
come back to the store page and see it ready once Stripe's signed ``account.updated`` has
come in, which the page waits for by itself. After a group order paid online and a payout to
the bank, the page's Money list shows the transfer for the order (its number linked) and the
payout, each with its amount and status in words.

Second, the cart page offers only what the store takes: a member of a locked cart sees both
ways to pay; an admin turns online payments off; the member's "Pay online" is refused in
words, the button goes, and the page says the store takes cash on delivery only (reloaded
too, it reads the store's settings again); paying cash still works.

axe-core finds nothing serious or critical on the store page or the cash-only cart page.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.config import Settings
from tests.e2e.browser_kit import (
    ARTIFACTS,
    PHONE,
    Browser,
    BrowserContext,
    a_store,
    axe_source,
    axe_violations,
    expect,
    launch,
    money,
    payment_config,
    people_at,
)
from tests.e2e.test_browser_orders import group_order, signed_in_as, staff_token
from tests.integration.test_online_payments import member

pytestmark = pytest.mark.slow

WEBHOOK = 15_000
"""ms: the store page asks every second, for 20 s, after coming back from Stripe."""
ADDON_KEY = {"Authorization": "Bearer sk_test_teamcart_emulator"}
"""The platform's key at the emulator's add-on (its test hook for payouts)."""


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with launch() as chromium:
        yield chromium


@pytest.fixture
async def contexts() -> AsyncIterator[list[BrowserContext]]:
    opened: list[BrowserContext] = []
    yield opened
    for context in opened:
        await context.close()


async def test_staff_set_up_payouts_with_stripe_and_see_the_money(
    browser: Browser,
    live_server: str,
    admin_headers: dict[str, str],
    settings: Settings,
    stripe_api_base: str,
    contexts: list[BrowserContext],
    request: pytest.FixtureRequest,
) -> None:
    source = await asyncio.to_thread(axe_source)
    store = await a_store(live_server, admin_headers, name="Payout Bistro")
    opened, (kitchen,) = await people_at(
        browser, PHONE, ARTIFACTS / request.node.name, ("Kitchen",)
    )
    contexts += opened
    page = kitchen.page
    token = staff_token(settings, store["id"])
    await page.goto(f"{live_server}/#/store/{store['id']}?token={token}")
    state = page.locator("#onboarding-state")
    await expect(state).to_have_attribute("data-status", "not_started")
    await expect(state).to_contain_text("Not started")
    await expect(page.locator("#paid-hint")).to_contain_text("isn't set up to be paid out yet")
    await expect(page.locator("#money-empty")).to_contain_text("Once payouts are set up")

    # The hint in the head takes the keyboard to the section.
    await page.locator("#paid-hint").get_by_role("button", name="Getting paid").click()
    await expect(page.locator("#paid-title")).to_be_focused()
    await kitchen.shot("1-not-started")

    # To the emulator's onboarding page and back without finishing: Stripe has the account
    # but still needs its details.
    await page.get_by_role("button", name="Set up payouts with Stripe").click()
    await expect(page.get_by_role("heading", name="Set up payouts")).to_be_visible()
    assert not page.url.startswith(live_server), page.url
    await page.go_back()
    await expect(state).to_have_attribute("data-status", "pending")
    await expect(state).to_contain_text("Not finished: Stripe still needs: ")
    await expect(state).to_contain_text("a bank account to pay out to")
    await expect(page.locator("#paid-hint")).to_contain_text("Setting up payouts isn't finished")

    # Setup finished on a fresh link, then back to the store page (same tab).
    await page.get_by_role("button", name="Continue setup").click()
    await expect(page.get_by_role("heading", name="Set up payouts")).to_be_visible()
    await page.get_by_label("Business name").fill("Payout Bistro")
    await page.get_by_role("button", name="Agree and submit").click()
    await page.wait_for_url(f"{live_server}/#/store/{store['id']}*")
    await expect(state).to_have_attribute("data-status", "enabled", timeout=WEBHOOK)
    await expect(state).to_contain_text("Ready: payments and payouts are on.")
    assert page.url == f"{live_server}/#/store/{store['id']}"  # ?onboarding=return is gone
    await expect(page.locator("#paid-title")).to_be_focused()
    await expect(page.locator("#connect-start")).to_have_count(0)
    await expect(page.locator("#paid-hint")).to_have_count(0)
    await expect(page.locator("#money-empty")).to_contain_text("Nothing yet")

    # Money in (a group order, Ana's share paid online) and out (a payout to the bank).
    async with httpx.AsyncClient(base_url=live_server, timeout=15) as http:
        order, _ = await group_order(http, store, stripe_api_base)
        staff = {"Authorization": f"Bearer {token}"}
        connect = await http.get(f"/api/v1/stores/{store['id']}/connect", headers=staff)
        account_id = connect.json()["account_id"]
    async with httpx.AsyncClient(base_url=stripe_api_base, timeout=10) as addon:
        payout = await addon.post(
            f"/_addon/connect/accounts/{account_id}/payouts",
            data={"amount": "700", "currency": "usd", "status": "paid"},
            headers=ADDON_KEY,
        )
        assert payout.status_code == 200, payout.text
    online = sum(p["amount_minor"] for p in order["payments"] if p["method"] == "online")
    await page.reload()
    items = page.locator("#money > li")
    transfer = page.locator('#money > li[data-kind="transfer"]')
    await expect(transfer).to_have_count(1)
    await expect(transfer.locator(".money-amount")).to_have_text(money(online))  # no fee set
    await expect(transfer.get_by_role("link", name=order["number"])).to_have_attribute(
        "href", f"/#/orders/{order['id']}"
    )
    await expect(transfer.locator(".money-state")).to_have_text(
        re.compile(r"^(On its way to the store's Stripe account|In the store's Stripe balance)$")
    )
    paid_out = page.locator('#money > li[data-kind="payout"]')
    await expect(paid_out).to_contain_text("Payout to the bank")
    await expect(paid_out.locator(".money-amount")).to_have_text("$7.00")
    await expect(paid_out.locator(".money-state")).to_have_text("Paid to the bank")
    await expect(items).to_have_count(2)
    await expect(page.locator("#money-more")).to_have_count(0)

    found = await axe_violations(page, source)
    assert found == [], found
    await kitchen.no_horizontal_scroll()
    await kitchen.shot("2-ready")
    assert kitchen.page_errors == [], kitchen.page_errors


async def test_a_cart_offers_only_what_the_store_takes(
    browser: Browser,
    live_server: str,
    admin_headers: dict[str, str],
    contexts: list[BrowserContext],
    request: pytest.FixtureRequest,
) -> None:
    source = await asyncio.to_thread(axe_source)
    store = await a_store(live_server, admin_headers, name="Cash Bistro")
    await payment_config(live_server, admin_headers, store["id"], cod=True, online=True)
    opened, (ben,) = await people_at(browser, PHONE, ARTIFACTS / request.node.name, ("Ben",))
    contexts += opened
    async with httpx.AsyncClient(base_url=live_server, timeout=15) as http:
        host, guest = await member(http, "Hana"), await member(http, "Ben")
        opened_cart = await http.post(
            "/api/v1/teamcarts", json={"store_id": store["id"]}, headers=host
        )
        assert opened_cart.status_code == 201, opened_cart.text
        cart = opened_cart.json()
        url = f"/api/v1/teamcarts/{cart['id']}"
        joined = await http.post(
            "/api/v1/teamcarts/join", json={"invite_code": cart["invite_code"]}, headers=guest
        )
        assert joined.status_code == 200, joined.text
        products = (await http.get(f"/api/v1/stores/{store['id']}/products", headers=host)).json()
        gyoza = next(p["id"] for p in products["items"] if p["name"] == "Gyoza")
        for person in (host, guest):
            item = {"product_id": gyoza, "quantity": 1, "options": []}
            assert (await http.post(url + "/items", json=item, headers=person)).status_code == 201
        assert (await http.post(url + "/lock", headers=host)).status_code == 200

        await signed_in_as(ben, live_server, guest)
        page = ben.page
        await page.goto(f"{live_server}/#/carts/{cart['id']}")
        await expect(page.locator("#pay-cod")).to_be_visible()
        await expect(page.locator("#pay-online")).to_be_visible()
        await expect(page.locator("#pay-methods")).to_have_count(0)

        # The admin turns online payments off while Ben's page still offers them.
        await payment_config(live_server, admin_headers, store["id"], cod=True, online=False)
        refused = await http.post(url + "/payments/online", headers=guest)
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "online_disabled"
        await page.locator("#pay-online").click()
        message = page.locator("#msg-pay")
        await expect(message).to_have_text(
            "This store doesn't take payments online now: pay cash on delivery instead."
        )
        await expect(page.locator("#pay-online")).to_have_count(0)
        await expect(page.locator("#pay-methods")).to_have_text(
            "This store takes cash on delivery only."
        )
        await ben.sees_beside(message, page.locator("#pay-cod"))

        # Opened afresh, the page reads the store's settings: cash only, and why.
        await page.reload()
        await expect(page.locator("#pay-cod")).to_be_visible()
        await expect(page.locator("#pay-methods")).to_have_text(
            "This store takes cash on delivery only."
        )
        await expect(page.get_by_role("button", name="Pay online")).to_have_count(0)
        await expect(page.locator("#pay-cod")).to_have_attribute("aria-describedby", "pay-methods")
        found = await axe_violations(page, source)
        assert found == [], found
        await ben.no_horizontal_scroll()
        await ben.shot("1-cash-only")

        await page.locator("#pay-cod").click()
        await expect(page.locator("#pay")).to_contain_text("in cash on delivery")
        view = (await http.get(url, headers=guest)).json()
        members: list[dict[str, Any]] = view["members"]
        mine = next(m for m in members if m["user_id"] == guest["X-User-Id"])
        assert mine["payment"]["status"] == "cod_committed"
    assert ben.page_errors == [], ben.page_errors
