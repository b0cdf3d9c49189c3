"""Group payment options in real Chromium (issue 17, ADR 0019), as the host and the guests
see them: the host's "Who pays" panel (a spending limit while open, an allowance, paying for
everyone, covering and removing a guest after lock), each guest's "you pay" (their share,
what the host takes off, what is left) changing live in their own browser, a new invite link
(the old one then leads nowhere) and the invite's QR code, a card only held until the host
confirms, and axe-core's check of the pages these make.

Hana hosts, Ana and Ben are in browsers of their own, Cai acts through the API (what he does
arrives in the browsers exactly as if he had clicked).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest

from tests.e2e.browser_kit import (
    ARTIFACTS,
    LIVE,
    PHONE,
    ApiMember,
    Browser,
    BrowserContext,
    Person,
    a_store,
    axe_source,
    axe_violations,
    expect,
    launch,
    money,
    people_at,
    report,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def browser() -> Any:
    async with launch() as chromium:
        yield chromium


@pytest.fixture
async def contexts() -> Any:
    opened: list[BrowserContext] = []
    yield opened
    for context in opened:
        await context.close()


def member_of(view: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(m for m in view["members"] if m["display_name"] == name)
    return found


async def invite_link(person: Person) -> str:
    return await person.page.locator("#invite-link").input_value()


async def test_the_host_decides_who_pays_and_each_guest_sees_what_they_pay_live(
    browser: Browser,
    live_server: str,
    admin_headers: dict[str, str],
    contexts: list[BrowserContext],
    request: pytest.FixtureRequest,
) -> None:
    source = await asyncio.to_thread(axe_source)
    store = await a_store(live_server, admin_headers, name="Who Pays Diner")
    opened, (hana, ana, ben) = await people_at(
        browser, PHONE, ARTIFACTS / request.node.name, ("Hana", "Ana", "Ben")
    )
    contexts += opened
    found: dict[str, list[dict[str, Any]]] = {}

    async def check(step: str, *people: Person) -> None:
        for person in people:
            found[f"{step}-{person.name.lower()}"] = await axe_violations(person.page, source)

    async with httpx.AsyncClient(base_url=live_server, timeout=10) as http:
        # Hana opens a cart whose cards are only held until she confirms, with a limit.
        await hana.sign_in(live_server + "/")
        await hana.page.get_by_label("Store").select_option(value=store["id"])
        await hana.page.get_by_label("Hold cards until I confirm").check()
        await hana.page.get_by_role("button", name="Open a group cart").click()
        await expect(hana.page.locator("#conn")).to_have_attribute("data-conn", "live")
        cart_id = hana.page.url.rsplit("/", 1)[-1]
        host = await ApiMember.of(http, hana)
        panel = hana.page.locator("#who-pays")
        await panel.get_by_label("Spending limit per guest (USD)").fill("20")
        await panel.get_by_role("button", name="Set limit").click()
        await expect(panel.locator("#msg-limit")).to_contain_text("at most $20.00")
        assert (await host.call("GET", f"/api/v1/teamcarts/{cart_id}"))["capture"] == "on_confirm"

        # Ana joins; her Ramen fits the limit, a Gyoza more doesn't: said beside its button.
        first_invite = await invite_link(hana)
        await ana.sign_in(first_invite)
        await expect(ana.page.locator("#my-terms")).to_contain_text("at most $20.00")
        await ana.add("Ramen", option="Large")  # $17.00
        gyoza = ana.product("Gyoza")
        await gyoza.get_by_role("button", name="Add Gyoza").click()  # $7.00 more
        await ana.sees_beside(gyoza.locator(".msg"), gyoza.get_by_role("button", name="Add Gyoza"))
        await expect(gyoza.locator(".msg")).to_have_text(
            "Your items would pass the host's limit of $20.00."
        )

        # The invite's QR code, for the others to scan.
        await ana.page.get_by_role("button", name="Show a QR code").click()
        qr = ana.page.get_by_role("img", name=re.compile("^QR code of the invite link"))
        await expect(qr).to_be_visible()
        await expect(qr).to_have_js_property("complete", True)
        assert await qr.evaluate("img => img.naturalWidth") > 0
        first_qr = await qr.get_attribute("src")

        # A new invite link: Ana's page follows (its QR code too); the old link leads nowhere.
        await hana.page.get_by_role("button", name="New invite link").click()  # confirmed
        await expect(hana.page.locator("#invite-link")).not_to_have_value(first_invite)
        invite = await invite_link(hana)
        await expect(ana.page.locator("#invite-link")).to_have_value(invite, timeout=LIVE)
        await expect(qr).not_to_have_attribute("src", first_qr or "", timeout=LIVE)
        await expect(qr).to_have_js_property("complete", True)
        await ben.sign_in(first_invite)
        await expect(ben.page.locator("#notice h1")).to_have_text("No such invite")
        await expect(ben.page.locator("#notice")).to_contain_text("There's no such invite")
        await ben.page.goto(invite)
        await ben.add("Gyoza")
        cai = await ApiMember.sign_in(http, "Cai")
        await cai.join(invite.rsplit("/", 1)[-1])
        ids = await cai.products(store["id"])
        await cai.add(cart_id, ids["Gyoza"], 2)
        await hana.add("Ramen", option="Regular")
        await expect(hana.page.locator("#members li[data-item-id]")).to_have_count(4)
        await check("open", hana, ana)
        await hana.shot("0-open")
        await ana.shot("0-open")

        await hana.page.locator("#lock").click()
        await hana.page.locator("#lock-anyway").click()
        mine = ana.page.locator("#my-share")
        await expect(mine).to_be_visible(timeout=LIVE)

        # An allowance leaving Ana too little to pay by card: Stripe's minimum, said beside it.
        share = member_of(await host.call("GET", f"/api/v1/teamcarts/{cart_id}"), "Ana")
        allowance = panel.get_by_label("Allowance per guest (USD)")
        await allowance.fill(money(share["share_minor"] - 25).removeprefix("$"))
        await panel.get_by_role("button", name="Set allowance").click()
        await expect(mine.locator("tr[data-key=owes] td")).to_have_text("$0.25", timeout=LIVE)
        await ana.page.locator("#pay-online").click()
        await ana.sees_beside(ana.page.locator("#msg-pay"), ana.page.locator("#pay-online"))
        await expect(ana.page.locator("#msg-pay")).to_have_text(
            "Stripe can't take less than $0.50 online: pay cash, or ask the host to cover it."
        )

        # The allowance, typed in dollars: Ana's share, what Hana takes off, what is left.
        await allowance.fill("4.35")
        await panel.get_by_role("button", name="Set allowance").click()
        await expect(panel.locator("#msg-allowance")).to_contain_text("up to $4.35")
        view = await host.call("GET", f"/api/v1/teamcarts/{cart_id}")
        assert view["allowance_minor"] == 435
        theirs = member_of(view, "Ana")
        assert theirs["owes_minor"] == theirs["share_minor"] - 435
        await expect(mine.locator("tr[data-key=items] td")).to_have_text("$17.00")
        await expect(mine.locator("tr[data-key=share] td")).to_have_text(
            money(theirs["share_minor"]), timeout=LIVE
        )
        await expect(mine.locator("tr", has_text="Allowance from the host")).to_contain_text(
            money(-435)
        )
        await expect(mine.locator("tr[data-key=owes]")).to_have_text(
            f"You pay{money(theirs['owes_minor'])}"
        )
        await expect(ana.page.locator("#my-bar")).to_contain_text(money(theirs["owes_minor"]))
        await ana.shot("1-allowance")
        await check("locked", hana, ana)
        for person in (hana, ana):  # the panel and the sums fit a small phone
            await person.page.set_viewport_size({"width": 320, "height": 700})
            await person.no_horizontal_scroll()
            await person.page.set_viewport_size(PHONE)  # type: ignore[arg-type]

        # Hana pays for everyone: Ana owes nothing, and has nothing to press.
        await panel.get_by_label("I pay for everyone").check()
        await expect(ana.page.locator("#nothing-to-pay")).to_have_text(
            "The host pays for everyone: you have nothing to pay.", timeout=LIVE
        )
        await expect(mine.locator("tr[data-key=owes] td")).to_have_text("$0.00")
        await expect(ana.page.locator("#pay-online")).to_have_count(0)
        await expect(hana.page.locator("#my-share tr[data-key=owes] td")).to_have_text(
            money(view["total_minor"])
        )
        await ana.shot("2-host-pays")
        await check("host-pays", hana, ana)
        await panel.get_by_label("Everyone pays their own share").check()
        await expect(ana.page.locator("#pay-online")).to_be_visible(timeout=LIVE)

        # After lock: Hana covers Cai and removes Ben, each asked first.
        unpaid = panel.locator("#unpaid-guests")
        await unpaid.get_by_role("button", name="Cover Cai's share").click()
        await expect(hana.page.locator('#members > li[data-name="Cai"] .payment')).to_have_text(
            "Covered by the host"
        )
        await expect(unpaid.locator('li[data-name="Cai"]')).to_contain_text("Covered by you")
        await unpaid.get_by_role("button", name="Remove Ben from the cart").click()
        await expect(ben.page.locator("#notice h1")).to_have_text(
            "You were removed from this cart", timeout=LIVE
        )
        await expect(ben.page.locator(".product")).to_have_count(0)
        await expect(hana.page.locator("#members > li")).to_have_count(3)
        await expect(ana.page.locator("#members > li")).to_have_count(3, timeout=LIVE)
        view = await host.call("GET", f"/api/v1/teamcarts/{cart_id}")
        covered = member_of(view, "Cai")
        assert (covered["covered"], covered["owes_minor"]) == (True, 0)
        assert sum(m["owes_minor"] for m in view["members"]) == view["total_minor"]
        theirs = member_of(view, "Ana")
        await expect(mine.locator("tr[data-key=owes] td")).to_have_text(
            money(theirs["owes_minor"]), timeout=LIVE
        )
        await expect(hana.page.locator("#my-share")).to_contain_text("What you pay for the guests")
        await hana.shot("3-covered-and-removed")
        await check("covered", hana, ana)

        # Ana pays by card: it is only held until Hana confirms.
        await ana.pay_by_card("4242424242424242")
        await expect(ana.page.locator("#card-held")).to_contain_text(
            "Card held — charged when the host confirms", timeout=10_000
        )
        await expect(hana.payment_badge(ana)).to_have_text("Card held", timeout=LIVE)
        await check("held", ana)
        await ana.shot("4-card-held")

    report("payment_options_axe", {"pages_checked": sorted(found), "serious_or_critical": found})
    assert {page: v for page, v in found.items() if v} == {}
    for person in (hana, ana, ben):
        assert person.page_errors == [], (person.name, person.page_errors)


async def test_a_reminder_to_pay_is_said_in_words_until_it_is_done(
    browser: Browser,
    live_server: str,
    admin_headers: dict[str, str],
    contexts: list[BrowserContext],
    request: pytest.FixtureRequest,
) -> None:
    """A cart reminding a day ahead of its payment window's end reminds Ana to pay as soon
    as it locks (the next sweep, within seconds); the page says so while she still owes."""
    store = await a_store(live_server, admin_headers, name="Reminder Diner")
    opened, (ana,) = await people_at(browser, PHONE, ARTIFACTS / request.node.name, ("Ana",))
    contexts += opened
    async with httpx.AsyncClient(base_url=live_server, timeout=10) as http:
        hana = await ApiMember.sign_in(http, "Hana")
        cart = await hana.call(
            "POST",
            "/api/v1/teamcarts",
            {"store_id": store["id"], "reminder_minutes": 1440},
            expect=201,
        )
        await ana.sign_in(f"{live_server}/join/{cart['invite_code']}")
        await ana.add("Gyoza")
        await expect(ana.page.locator("#conn")).to_have_attribute("data-conn", "live")
        await hana.call("POST", f"/api/v1/teamcarts/{cart['id']}/lock")
        view = await hana.call("GET", f"/api/v1/teamcarts/{cart['id']}")
        owes = money(member_of(view, "Ana")["owes_minor"])
        strip = ana.page.locator("#msg-strip")
        await expect(strip).to_contain_text(f"Reminder: pay your {owes} before", timeout=15_000)
        await ana.shot("1-reminded", full_page=False)
        await ana.page.locator("#pay-cod").click()
        await expect(strip).to_have_text("")  # done: the reminder no longer holds
        assert ana.page_errors == []
