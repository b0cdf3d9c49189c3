"""The whole group flow in real Chromium (Debian's, driven by Playwright), on a phone
(390 x 844) and a laptop (1280 x 800): three people join by the invite link, see each other's
items live, one pays cash, one pays online through the emulator's Stripe.js, the host
confirms, and everyone sees the order, who paid what, and their own part of it. A declined
card says so beside the pay button and a retry goes through. Screenshots of each step go to
``test-artifacts/browser/``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.e2e.browser_kit import (
    ARTIFACTS,
    DESKTOP,
    LIVE,
    PHONE,
    Browser,
    Person,
    a_store,
    expect,
    launch,
    people_at,
)

pytestmark = pytest.mark.slow

SIZES = {"phone": PHONE, "desktop": DESKTOP}


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with launch() as chromium:
        yield chromium


@pytest.fixture(params=list(SIZES))
async def people(
    browser: Browser,
    live_server: str,
    admin_headers: dict[str, str],
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[Person, Person, Person]]:
    store = await a_store(live_server, admin_headers)
    contexts, (hana, ana, ben) = await people_at(
        browser, SIZES[request.param], ARTIFACTS / request.node.name, ("Hana", "Ana", "Ben")
    )
    try:
        hana.store_id = store["id"]
        yield hana, ana, ben
        for person in (hana, ana, ben):
            assert person.page_errors == [], person.page_errors
    finally:
        for context in contexts:
            await context.close()


async def open_and_join(live_server: str, host: Person, guests: list[Person]) -> str:
    await host.sign_in(live_server + "/")
    await host.page.get_by_label("Store").select_option(value=host.store_id)
    await host.page.get_by_role("button", name="Open a group cart").click()
    invite = await host.page.locator("#invite-link").input_value()
    assert "/join/" in invite
    await expect(host.page.locator("#conn")).to_have_attribute("data-conn", "live")
    await host.shot("1-opened")
    for number, guest in enumerate(guests, start=2):
        await guest.sign_in(invite)
        await expect(guest.page.locator("#members > li")).to_have_count(number)
    await expect(host.page.locator("#members > li")).to_have_count(3, timeout=LIVE)
    return invite


async def test_three_people_order_together_in_real_browsers(
    people: tuple[Person, Person, Person], live_server: str
) -> None:
    host, ana, ben = people
    await open_and_join(live_server, host, [ana, ben])

    await host.add("Ramen", option="Large")
    await ana.add("Gyoza", quantity=2)
    await ben.add("Ramen", option="Regular")
    for person in people:  # everyone sees everyone's items, live, without reloading
        await expect(person.page.locator("#members li[data-item-id]")).to_have_count(
            3, timeout=LIVE
        )
        await expect(person.member(ana)).to_contain_text("2 \u00d7 Gyoza", timeout=LIVE)
        await expect(person.page.locator("#my-items li")).to_have_count(1)
        await person.no_horizontal_scroll()
        await person.shot("2-items")

    await host.page.locator("#lock").click()  # Ana and Ben aren't ready: the host is asked
    await expect(host.page.locator("#lock-warning")).to_contain_text("Ana and Ben aren't ready")
    await host.page.locator("#lock-anyway").click()
    for person in people:
        await expect(person.page.locator("#cart-status")).to_have_attribute(
            "data-status", "locked", timeout=LIVE
        )
    await expect(host.page.locator("#owing")).to_contain_text("Ana")

    await ana.page.locator("#pay-cod").click()
    await expect(host.payment_badge(ana)).to_have_text("Cash on delivery", timeout=LIVE)
    await expect(ana.page.locator("#pay-cod")).to_have_count(0)
    # The button went with the payment; the keyboard carries on from its section, not the top.
    await expect(ana.page.locator("#you")).to_contain_text("You'll pay")
    assert await ana.page.evaluate("() => !!document.activeElement.closest('#you')")
    await expect(host.page.locator("#owing")).not_to_contain_text("Ana", timeout=LIVE)
    await expect(host.page.locator("#owing")).to_contain_text("Ben")

    await ben.pay_by_card("4242424242424242", year="2030")  # four digits work too
    await ben.shot("3-paying")
    await expect(host.payment_badge(ben)).to_have_text("Paid online", timeout=10_000)
    await expect(ben.page.locator("#msg-pay")).to_contain_text("went through", timeout=LIVE)
    await host.shot("4-paid")

    await host.page.locator("#pay-cod").click()
    await expect(host.page.locator("#cart-status")).to_have_attribute(
        "data-status", "ready_to_confirm", timeout=LIVE
    )
    await expect(host.page.locator("#strip-headline")).to_contain_text(
        "Everyone has paid or chosen cash on delivery"
    )
    await expect(ana.page.locator("#strip-headline")).to_contain_text("Waiting for Hana")
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
        order = person.page.locator("#order")
        await expect(order).to_contain_text("Browser Bistro")
        await expect(person.page.locator("#payments")).to_contain_text("Cash on delivery")
        await expect(person.page.locator("#payments")).to_contain_text("Online")
        for other in people:
            name = "You" if other is person else other.name
            await expect(person.page.locator("#payments")).to_contain_text(name)
        await person.no_horizontal_scroll()
        await person.shot("5-order")
        await person.page.get_by_role("link", name="All my orders").click()
        await expect(person.page.locator("#orders li")).to_have_count(1)
        await expect(person.page.locator("#orders")).to_contain_text("You paid $")


async def test_a_declined_card_shows_why_beside_the_button_and_a_retry_goes_through(
    people: tuple[Person, Person, Person], live_server: str
) -> None:
    host, ana, ben = people
    await open_and_join(live_server, host, [ana, ben])
    await ana.add("Gyoza")
    await expect(host.page.locator("#members li[data-item-id]")).to_have_count(1, timeout=LIVE)
    await host.page.locator("#lock").click()
    await host.page.locator("#lock-anyway").click()
    await expect(ana.page.locator("#cart-status")).to_have_attribute(
        "data-status", "locked", timeout=LIVE
    )

    await ana.pay_by_card("4000000000000341")
    message = ana.page.locator("#msg-pay")
    await expect(message).to_contain_text("declined", ignore_case=True)
    await ana.sees_beside(message, ana.page.locator("#pay-online"))
    await expect(host.payment_badge(ana)).to_have_text("Payment failed", timeout=10_000)
    await expect(host.page.locator("#owing")).to_contain_text("card declined")
    await ana.shot("1-declined", full_page=False)

    await ana.pay_by_card("4242424242424242")
    await expect(host.payment_badge(ana)).to_have_text("Paid online", timeout=10_000)
    await expect(ana.page.locator("#cart-status")).to_have_attribute(
        "data-status", "ready_to_confirm", timeout=LIVE
    )
    await expect(message).not_to_contain_text("declined")
    await ana.shot("2-paid")
