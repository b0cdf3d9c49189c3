"""The whole group flow in real Chromium (Debian's, driven by Playwright): three people join by
the invite link, see each other's items live, one pays cash, one pays online through the
emulator's Stripe.js, the host confirms, and everyone sees the order. Screenshots of each step
go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
LIVE = 2_000  # ms: others' changes must show within 2 s without reloading

if not Path(CHROMIUM).exists():
    if os.environ.get("CI") == "true":
        raise RuntimeError("CI must run the browser tests: .ci/run installs Debian's chromium")
    pytest.skip(
        "no Chromium found: install Debian's package (apt-get install chromium) to run these",
        allow_module_level=True,
    )

from playwright.async_api import Browser, Page, async_playwright, expect  # noqa: E402


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        await chromium.close()


async def a_store(base: str, admin: dict[str, str]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, headers=admin, timeout=10) as http:
        store: dict[str, Any] = (
            await http.post(
                "/api/v1/stores",
                json={
                    "name": "Browser Bistro",
                    "currency": "USD",
                    "delivery_fee_minor": 350,
                    "tax_rate_bps": 900,
                },
            )
        ).json()
        for product in (
            {
                "name": "Ramen",
                "price_minor": 1400,
                "option_groups": [
                    {
                        "name": "Size",
                        "min": 1,
                        "max": 1,
                        "options": [
                            {"name": "Regular", "price_delta_minor": 0},
                            {"name": "Large", "price_delta_minor": 300},
                        ],
                    }
                ],
            },
            {"name": "Gyoza", "price_minor": 700, "option_groups": []},
        ):
            created = await http.post(f"/api/v1/stores/{store['id']}/products", json=product)
            assert created.status_code == 201, created.text
    return store


class Person:
    def __init__(self, name: str, page: Page, shots: Path) -> None:
        self.name = name
        self.page = page
        self.shots = shots

    async def shot(self, step: str) -> None:
        await self.page.screenshot(
            path=str(self.shots / f"{step}-{self.name.lower()}.png"), full_page=True
        )

    async def sign_in(self, url: str) -> None:
        await self.page.goto(url)
        await self.page.get_by_label("What should the group call you?").fill(self.name)
        await self.page.get_by_role("button", name="Continue").click()

    async def add(self, product: str, *, option: str | None = None, quantity: int = 1) -> None:
        block = self.page.locator(f'.product[data-product-name="{product}"]')
        if option:
            await block.get_by_label(option).check()
        await block.get_by_label(f"Quantity of {product}").fill(str(quantity))
        await block.get_by_role("button", name=f"Add {product}").click()

    def payment_badge(self, person: Person) -> Any:
        return self.page.locator(f'#members li[data-name="{person.name}"] .payment')

    async def pay_by_card(self, number: str) -> None:
        await self.page.locator("#pay-online").click()
        card = self.page.locator("#card-element")
        await card.locator("input[placeholder=number]").fill(number)
        await card.locator("input[placeholder=exp_month]").fill("12")
        await card.locator("input[placeholder=exp_year]").fill("30")  # the emulator adds "20"
        await card.locator("input[placeholder=cvc]").fill("123")
        await card.locator("input[placeholder=postal_code]").fill("12345")
        await self.page.locator("#pay-card").click()


@pytest.fixture
async def people(
    browser: Browser,
    live_server: str,
    admin_headers: dict[str, str],
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[Person, Person, Person]]:
    await a_store(live_server, admin_headers)
    shots = ARTIFACTS / request.node.name
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    contexts = [await browser.new_context(viewport={"width": 390, "height": 844}) for _ in range(3)]
    pages = [await context.new_page() for context in contexts]
    for page in pages:
        page.set_default_timeout(10_000)
    try:
        yield (
            Person("Hana", pages[0], shots),
            Person("Ana", pages[1], shots),
            Person("Ben", pages[2], shots),
        )
    finally:
        for context in contexts:
            await context.close()


async def open_and_join(live_server: str, host: Person, guests: list[Person]) -> None:
    await host.sign_in(live_server + "/")
    await host.page.get_by_label("Store").select_option(label="Browser Bistro (USD)")
    await host.page.get_by_role("button", name="Open a group cart").click()
    invite = await host.page.locator("#invite-link").input_value()
    assert "/join/" in invite
    await host.shot("1-opened")
    for guest in guests:
        await guest.sign_in(invite)
        await expect(guest.page.locator("#members li")).to_have_count(1 + guests.index(guest) + 1)
    await expect(host.page.locator("#members li")).to_have_count(3, timeout=LIVE)


async def test_three_people_order_together_in_real_browsers(
    people: tuple[Person, Person, Person], live_server: str
) -> None:
    host, ana, ben = people
    await open_and_join(live_server, host, [ana, ben])

    await host.add("Ramen", option="Large")
    await ana.add("Gyoza", quantity=2)
    await ben.add("Ramen", option="Regular")
    for person in people:  # everyone sees everyone's items, live, without reloading
        await expect(person.page.locator("#items li[data-item-id]")).to_have_count(3, timeout=LIVE)
        await expect(person.page.locator("#items")).to_contain_text("Gyoza", timeout=LIVE)
        await person.shot("2-items")

    await host.page.locator("#lock").click()
    for person in people:
        await expect(person.page.locator("#cart-status")).to_have_attribute(
            "data-status", "locked", timeout=LIVE
        )

    await ana.page.locator("#pay-cod").click()
    await expect(host.payment_badge(ana)).to_have_text("Cash on delivery", timeout=LIVE)

    await ben.pay_by_card("4242424242424242")
    await ben.shot("3-paying")
    await expect(host.payment_badge(ben)).to_have_text("Paid online", timeout=10_000)
    await host.shot("4-paid")

    await host.page.locator("#pay-cod").click()
    await expect(host.page.locator("#cart-status")).to_have_attribute(
        "data-status", "ready_to_confirm", timeout=LIVE
    )
    await host.page.get_by_label("Address", exact=True).fill("1 Noodle Lane")
    await host.page.get_by_label("City").fill("Springfield")
    await host.page.get_by_label("Postal code").fill("12345")
    await host.page.get_by_label("Country (2 letters)").fill("US")
    await host.page.locator("#confirm").click()
    for person in people:
        await expect(person.page.locator("#cart-status")).to_have_attribute(
            "data-status", "converted", timeout=LIVE
        )
        await person.page.locator("#order-link").click()
        await expect(person.page.locator("#order-status")).to_have_text("placed")
        await expect(person.page.locator("#order")).to_contain_text("Online")
        await expect(person.page.locator("#order")).to_contain_text("Cash on delivery")
        await person.shot("5-order")


async def test_a_declined_card_shows_why_and_a_retry_goes_through(
    people: tuple[Person, Person, Person], live_server: str
) -> None:
    host, ana, ben = people
    await open_and_join(live_server, host, [ana, ben])
    await ana.add("Gyoza")
    await expect(host.page.locator("#items li[data-item-id]")).to_have_count(1, timeout=LIVE)
    await host.page.locator("#lock").click()
    await expect(ana.page.locator("#cart-status")).to_have_attribute(
        "data-status", "locked", timeout=LIVE
    )

    await ana.pay_by_card("4000000000000341")
    await expect(ana.page.locator("#alert")).to_contain_text("declined", ignore_case=True)
    await expect(host.payment_badge(ana)).to_have_text("Payment failed", timeout=10_000)
    await ana.shot("1-declined")

    await ana.pay_by_card("4242424242424242")
    await expect(host.payment_badge(ana)).to_have_text("Paid online", timeout=10_000)
    await expect(ana.page.locator("#cart-status")).to_have_attribute(
        "data-status", "ready_to_confirm", timeout=LIVE
    )
    await ana.shot("2-paid")
