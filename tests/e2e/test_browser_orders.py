"""Orders after confirm, in real Chromium: a member follows the group's order on their phone
while the store's staff, on a laptop, see it come in by themselves and move it along:
accepted, being prepared, shipped with its carrier and tracking number, delivered. Each step
reaches the member's page live, without a reload, and is announced; a move the server refuses
(shipped without a carrier, then without a tracking number) says why beside its form; a
partial refund too large is refused beside its button, a smaller one shows on both pages; the
store's filters; axe-core finds nothing serious or critical on either page. Staff sign in with
a staff link (the token leaves the address bar) or by pasting the token.

The cart part goes over HTTP (the group flow's own browser tests cover it); only the order
part is in the browser.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.auth import issue_token
from app.config import Settings
from tests.e2e.browser_kit import (
    ARTIFACTS,
    DESKTOP,
    LIVE,
    PHONE,
    Browser,
    BrowserContext,
    Person,
    a_store,
    axe_source,
    axe_violations,
    expect,
    launch,
    people_at,
)
from tests.integration.test_group_flow import ADDRESS
from tests.integration.test_online_payments import VISA, member, pay_with_card, wait_for_payment

pytestmark = pytest.mark.slow

POLLED = 8_000
"""ms: the store's page asks for its orders every 4 s; a new order shows within two polls."""
TRACKING = "1Z999AA10123456784"


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


def staff_token(settings: Settings, store_id: str) -> str:
    assert settings.jwt_secret is not None
    return issue_token(settings.jwt_secret, display_name="Kitchen", staff_of=store_id).token


async def group_order(
    http: httpx.AsyncClient, store: dict[str, Any], stripe_api_base: str
) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """A confirmed group order over HTTP: Hana hosts and pays cash, Ana pays online with the
    emulator's test card, Ben pays cash."""
    people = {name: await member(http, name) for name in ("Hana", "Ana", "Ben")}
    host = people["Hana"]
    cart = await http.post("/api/v1/teamcarts", json={"store_id": store["id"]}, headers=host)
    assert cart.status_code == 201, cart.text
    url = f"/api/v1/teamcarts/{cart.json()['id']}"
    products = (await http.get(f"/api/v1/stores/{store['id']}/products", headers=host)).json()
    ids = {p["name"]: p["id"] for p in products["items"]}
    items = {
        "Hana": {"product_id": ids["Ramen"], "quantity": 1, "options": ["Large"]},
        "Ana": {"product_id": ids["Gyoza"], "quantity": 2, "options": []},
        "Ben": {"product_id": ids["Ramen"], "quantity": 1, "options": ["Regular"]},
    }
    for name, person in people.items():
        if person is not host:
            invite = {"invite_code": cart.json()["invite_code"]}
            joined = await http.post("/api/v1/teamcarts/join", json=invite, headers=person)
            assert joined.status_code == 200, joined.text
        added = await http.post(url + "/items", json=items[name], headers=person)
        assert added.status_code == 201, added.text
    assert (await http.post(url + "/lock", headers=host)).status_code == 200
    for name in ("Hana", "Ben"):
        assert (await http.post(url + "/payments/cod", headers=people[name])).status_code == 200
    started = (await http.post(url + "/payments/online", headers=people["Ana"])).json()
    assert await pay_with_card(stripe_api_base, started["payment_intent_id"], VISA) == "succeeded"
    await wait_for_payment(http, url, host, people["Ana"]["X-User-Id"], "paid_online")
    for _ in range(100):
        if (await http.get(url, headers=host)).json()["status"] == "ready_to_confirm":
            break
        await asyncio.sleep(0.05)
    confirmed = await http.post(url + "/confirm", json={"delivery_address": ADDRESS}, headers=host)
    assert confirmed.status_code == 201, confirmed.text
    order = await http.get(f"/api/v1/orders/{confirmed.json()['order_id']}", headers=host)
    assert order.status_code == 200, order.text
    return order.json(), people


async def signed_in_as(person: Person, base: str, headers: dict[str, str]) -> None:
    """The person's browser holds the session the API gave them (as if they had signed in)."""
    await person.page.goto(base + "/")
    await person.page.evaluate(
        """([token, userId, name]) => {
             localStorage.setItem('teamcart.token', token);
             localStorage.setItem('teamcart.user_id', userId);
             localStorage.setItem('teamcart.name', name);
           }""",
        [headers["Authorization"].removeprefix("Bearer "), headers["X-User-Id"], person.name],
    )


async def test_staff_move_the_order_along_and_the_member_sees_each_step_live(
    browser: Browser,
    live_server: str,
    admin_headers: dict[str, str],
    settings: Settings,
    stripe_api_base: str,
    contexts: list[BrowserContext],
    request: pytest.FixtureRequest,
) -> None:
    source = await asyncio.to_thread(axe_source)
    store = await a_store(live_server, admin_headers, name="Order Bistro")
    opened, (ana, kitchen) = await people_at(
        browser, PHONE, ARTIFACTS / request.node.name, ("Ana", "Kitchen")
    )
    contexts += opened
    await kitchen.page.set_viewport_size(DESKTOP)  # type: ignore[arg-type]

    # The staff link signs the browser in, and the token leaves the address bar at once.
    await kitchen.page.goto(
        f"{live_server}/#/store/{store['id']}?token={staff_token(settings, store['id'])}"
    )
    await expect(kitchen.page.locator("#store-empty")).to_contain_text("No orders yet")
    assert kitchen.page.url == f"{live_server}/#/store/{store['id']}"
    assert "token" not in await kitchen.page.evaluate("() => location.href")
    await expect(kitchen.page.locator("#whoami")).to_have_text("Signed in as Kitchen (store staff)")
    await expect(kitchen.page.locator("#store-title")).to_have_text("Order Bistro: orders")

    async with httpx.AsyncClient(base_url=live_server, timeout=15) as http:
        order, people = await group_order(http, store, stripe_api_base)
    ana_id = people["Ana"]["X-User-Id"]
    row = kitchen.page.locator(f'#store-orders > li[data-number="{order["number"]}"]')
    await expect(row).to_be_visible(timeout=POLLED)  # no reload: the list asks again by itself
    await expect(row.locator(".order-state")).to_have_text("placed")
    await expect(row).to_contain_text("2 \u00d7 Gyoza")
    await expect(row).to_contain_text(ADDRESS["line1"])

    await signed_in_as(ana, live_server, people["Ana"])
    await ana.page.goto(f"{live_server}/#/orders/{order['id']}")
    status = ana.page.locator("#order-status")
    await expect(status).to_have_text("placed")
    await expect(ana.page.locator("#order-title")).to_have_text(f"Order {order['number']}")
    await expect(ana.page.locator("#order-store")).to_have_text("Order Bistro")
    await expect(ana.page.locator("#order-conn")).to_have_attribute("data-conn", "live")
    mine = ana.page.locator("#payments > li.mine")
    await expect(mine).to_have_count(1)  # the reader's own payment, highlighted
    await expect(mine).to_contain_text("You · Online")
    await expect(mine).to_contain_text("paid")
    await expect(ana.page.locator("#payments")).to_contain_text("Hana · Cash on delivery")
    await expect(ana.page.locator("#order-staff")).to_have_count(0)  # no store controls
    await expect(ana.page.locator("#history > li")).to_have_count(1)

    async def step(button: str, word: str) -> None:
        await row.get_by_role("button", name=button).click()
        await expect(row.locator(".order-state")).to_have_text(word)
        await expect(status).to_have_text(word, timeout=LIVE)  # on Ana's page, live

    await step("Accept", "accepted")
    await expect(row.get_by_role("button", name="Start preparing")).to_be_focused()
    await step("Start preparing", "being prepared")
    await expect(ana.page.locator("#status")).to_have_text("The order is being prepared.")

    # Shipped needs a carrier and a tracking number: the server says which is missing, beside
    # the form, and the order stays where it was.
    await row.get_by_role("button", name="Shipped…").click()
    carrier = row.get_by_label("Carrier")
    await expect(carrier).to_be_focused()
    ship = row.get_by_role("button", name="Mark shipped")
    await ship.click()
    message = row.locator(f"#msg-move-{order['id']}")
    await expect(message).to_have_text(
        "Enter the carrier (like UPS or DHL) to mark the order shipped."
    )
    await kitchen.sees_beside(message, ship)
    await expect(carrier).to_be_focused()
    await carrier.fill("UPS")
    await ship.click()
    await expect(message).to_have_text("Enter the tracking number to mark the order shipped.")
    await kitchen.sees_beside(message, ship)
    await expect(row.get_by_label("Tracking number")).to_be_focused()
    await expect(status).to_have_text("being prepared")
    await row.get_by_label("Tracking number").fill(TRACKING)
    await ship.click()
    await expect(row.locator(".order-state")).to_have_text("shipped")
    await expect(status).to_have_text("shipped", timeout=LIVE)
    await expect(ana.page.locator("#tracking-carrier")).to_have_text("UPS")
    await expect(ana.page.locator("#tracking-number")).to_have_text(TRACKING)
    link = ana.page.locator("#tracking-link")
    await expect(link).to_have_attribute("href", f"https://www.ups.com/track?tracknum={TRACKING}")
    await expect(ana.page.locator("#status")).to_contain_text("The order is shipped.")
    await expect(row).to_contain_text(TRACKING)

    # A partial refund of Ana's online payment: too much is refused beside its button.
    await row.locator("details.refunds > summary").click()
    amount = row.get_by_label("Amount to refund to Ana (USD)")
    refund = row.get_by_role("button", name="Refund Ana")
    refunded = row.locator(f"#msg-refund-{order['id']}-{ana_id}")
    await amount.fill("500")
    await refund.click()
    await expect(refunded).to_contain_text("That's more than can go back: at most $")
    await kitchen.sees_beside(refunded, refund)
    await amount.fill("1.50")
    await refund.click()
    await expect(refunded).to_have_text(re.compile(r"^Refund(ed| of) \$1\.50 to Ana"))
    await expect(mine).to_contain_text("$1.50 refunded", timeout=LIVE)
    await expect(ana.page.locator("#status")).to_have_text("You were refunded $1.50.")

    for page_name, person in (("order", ana), ("store", kitchen)):
        found = await axe_violations(person.page, source)
        assert found == [], (page_name, found)
    await ana.no_horizontal_scroll()
    await ana.shot("1-shipped")
    await kitchen.shot("1-shipped")

    await step("Delivered", "delivered")
    history = ana.page.locator("#history > li")
    await expect(history).to_have_count(5)
    expected = ["placed", "accepted", "being prepared", "shipped", "delivered"]
    for entry, word in zip(await history.all(), expected, strict=True):
        await expect(entry.locator("strong")).to_have_text(word)
    await expect(history.last).to_contain_text("by the store")
    await expect(history.first).to_contain_text("by the host")
    await expect(row).to_contain_text("Nothing more to do for this order.")

    # The filters: a delivered order is done, not on the way.
    await kitchen.page.get_by_role("button", name="On the way").click()
    await expect(kitchen.page.locator("#store-empty")).to_contain_text("No orders in")
    await kitchen.page.get_by_role("button", name="Done").click()
    await expect(row.locator(".order-state")).to_have_text("delivered")
    await expect(kitchen.page.get_by_role("button", name="Done")).to_have_attribute(
        "aria-pressed", "true"
    )
    await ana.no_horizontal_scroll()
    await ana.shot("2-delivered")
    await kitchen.shot("2-done")
    for person in (ana, kitchen):
        assert person.page_errors == [], person.page_errors


async def test_staff_sign_in_by_pasting_the_token_and_a_guest_is_told_they_are_not_staff(
    browser: Browser,
    live_server: str,
    admin_headers: dict[str, str],
    settings: Settings,
    contexts: list[BrowserContext],
    request: pytest.FixtureRequest,
) -> None:
    store = await a_store(live_server, admin_headers, name="Sign-in Bistro")
    opened, (cai,) = await people_at(browser, PHONE, ARTIFACTS / request.node.name, ("Cai",))
    contexts += opened
    await cai.sign_in(live_server + "/")  # a guest, not staff
    await expect(cai.page.locator("#open-cart")).to_be_visible()
    await cai.page.goto(f"{live_server}/#/store/{store['id']}")
    refused = cai.page.locator("#msg-staff-signin")
    await expect(refused).to_contain_text(
        "You're signed in as Cai, who isn't on this store's staff"
    )
    field = cai.page.get_by_label("Staff token")
    await expect(field).to_be_focused()
    await field.fill("not-a-token")
    await cai.page.get_by_role("button", name="Sign in").click()
    await expect(refused).to_have_text(
        "That isn't a TeamCart token: copy the whole of it, and nothing else."
    )
    await cai.sees_beside(refused, field)
    await field.fill(staff_token(settings, store["id"]))
    await cai.page.get_by_role("button", name="Sign in").click()
    await expect(cai.page.locator("#store-empty")).to_contain_text("No orders yet")
    await expect(cai.page.locator("#whoami")).to_have_text("Signed in as Kitchen (store staff)")
    await expect(cai.page.locator("#nav-store")).to_be_visible()
    await cai.no_horizontal_scroll()
    assert cai.page_errors == [], cai.page_errors


async def solo_order(http: httpx.AsyncClient, store_id: str, host: dict[str, str]) -> str:
    """A cart of one (the host alone, paying cash), confirmed: answers the order's id."""
    cart = await http.post("/api/v1/teamcarts", json={"store_id": store_id}, headers=host)
    assert cart.status_code == 201, cart.text
    url = f"/api/v1/teamcarts/{cart.json()['id']}"
    products = (await http.get(f"/api/v1/stores/{store_id}/products", headers=host)).json()
    ramen = next(p["id"] for p in products["items"] if p["name"] == "Ramen")
    item = {"product_id": ramen, "quantity": 1, "options": ["Regular"]}
    assert (await http.post(url + "/items", json=item, headers=host)).status_code == 201
    assert (await http.post(url + "/lock", headers=host)).status_code == 200
    assert (await http.post(url + "/payments/cod", headers=host)).status_code == 200
    confirmed = await http.post(url + "/confirm", json={"delivery_address": ADDRESS}, headers=host)
    assert confirmed.status_code == 201, confirmed.text
    order_id: str = confirmed.json()["order_id"]
    return order_id


async def test_load_more_new_orders_on_top_staff_on_the_order_page_and_the_host_cancels(
    browser: Browser,
    live_server: str,
    admin_headers: dict[str, str],
    settings: Settings,
    contexts: list[BrowserContext],
    request: pytest.FixtureRequest,
) -> None:
    store = await a_store(live_server, admin_headers, name="Busy Bistro")
    opened, (hana, kitchen) = await people_at(
        browser, PHONE, ARTIFACTS / request.node.name, ("Hana", "Kitchen")
    )
    contexts += opened
    async with httpx.AsyncClient(base_url=live_server, timeout=15) as http:
        host = await member(http, "Hana")
        first = [await solo_order(http, store["id"], host) for _ in range(21)]  # a page is 20
        await kitchen.page.goto(
            f"{live_server}/#/store/{store['id']}?token={staff_token(settings, store['id'])}"
        )
        rows = kitchen.page.locator("#store-orders > li")
        await expect(rows).to_have_count(20)
        await expect(rows.first).to_have_attribute("data-order-id", first[-1])  # newest first
        await kitchen.page.get_by_role("button", name="Load more").click()
        await expect(rows).to_have_count(21)
        await expect(rows.last).to_have_attribute("data-order-id", first[0])
        await expect(kitchen.page.get_by_role("button", name="Load more")).to_have_count(0)
        latest = await solo_order(http, store["id"], host)
    await expect(rows).to_have_count(22, timeout=POLLED)  # in on top, the rest kept
    await expect(rows.first).to_have_attribute("data-order-id", latest)
    await expect(kitchen.page.locator("#status")).to_contain_text("New order TC-")

    # The same controls on the order's own page, for the store's staff.
    await rows.nth(1).get_by_role("link").click()
    await expect(kitchen.page.locator("#order-status")).to_have_text("placed")
    staff = kitchen.page.locator("#order-staff")
    await staff.get_by_role("button", name="Accept").click()
    await expect(kitchen.page.locator("#order-status")).to_have_text("accepted")
    await expect(staff.get_by_role("button", name="Start preparing")).to_be_focused()
    await expect(staff.get_by_role("button", name="Cancel…")).to_be_visible()

    # The host cancels their own order while the store hasn't accepted it, with a reason.
    await signed_in_as(hana, live_server, host)
    await hana.page.goto(f"{live_server}/#/orders/{latest}")
    await expect(hana.page.locator("#order-status")).to_have_text("placed")
    await expect(hana.page.locator("#order-staff")).to_have_count(0)
    await hana.page.get_by_label("Cancel the order: why?").fill("Ordered twice")
    await hana.page.get_by_role("button", name="Cancel the order").click()  # confirmed
    await expect(hana.page.locator("#order-status")).to_have_text("cancelled")
    await expect(hana.page.locator("#history > li").last).to_contain_text("by the host")
    await expect(hana.page.locator("#history > li").last).to_contain_text("Ordered twice")
    await expect(hana.page.get_by_role("button", name="Cancel the order")).to_have_count(0)
    await kitchen.page.go_back()  # back to the store's list: the host's cancel shows there
    await expect(rows.first.locator(".order-state")).to_have_text("cancelled", timeout=POLLED)
    for person in (hana, kitchen):
        assert person.page_errors == [], person.page_errors
