"""Shopping on your own, in real Chromium (issue 16): a guest shops at a store with little
stock left (the page and the server both refuse more than there is), signs up and finds the
cart came along (merged), goes through the checkout's steps (address, then delivery or pickup
with the fee's difference shown, back and forth), is declined by card on the page, tries
another card and lands on the order page, which goes to "placed" by itself. A second buyer
signs in (a wrong password, then an email out of tries, said beside the form), pays on
Stripe's hosted Checkout page and comes back to the order page, placed. A guest who leaves
Stripe's page by its cancel link is back at the payment step, and pays there later (the same
session, still open). axe-core finds nothing serious or critical on
the shop, sign-up, sign-in and checkout steps.

Paying a personal cart by card *on the page* uses what the group flow has (ADR 0006). The
emulator's Stripe.js can only tokenise a card, so the page sends the token to the server to
confirm. The checkout answer says so
(``stripe_js_url``, ``confirm_on_server``) and a route confirms the buyer's intent
(``POST /api/v1/carts/{id}/checkout/confirm {payment_intent_id, payment_method}``: 200
``{payment_intent_id, status}``, 402 ``card_declined``). :class:`ConfirmStandIn`, written
before the server had them, watches those two and the test checks it never had to answer
either: the server does.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Route

from app.payments.gateway import CardDeclined, StripeGateway
from tests.e2e.browser_kit import (
    ARTIFACTS,
    DESKTOP,
    PHONE,
    Browser,
    BrowserContext,
    Page,
    Person,
    a_store,
    axe_source,
    axe_violations,
    expect,
    launch,
    people_at,
    report,
)
from tests.integration.test_group_flow import ADDRESS
from tests.integration.test_online_payments import DECLINED_ON_CHARGE, VISA

pytestmark = pytest.mark.slow

PAID = 10_000
"""ms: from the card's answer to the order page showing "placed" (the webhook, then the
order's socket)."""
PASSWORD = "correct horse battery"
CHECKOUT = re.compile(r"/api/v1/carts/[0-9a-f-]{36}/checkout$")
CONFIRM = re.compile(r"/api/v1/carts/[0-9a-f-]{36}/checkout/confirm$")


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


class ConfirmStandIn:
    """The two things the server doesn't answer yet for paying a personal cart on the page
    (see the module's docstring), answered in the browser as the server would: the checkout
    answer gains the emulator's Stripe.js and ``confirm_on_server``, and the confirm route
    attaches the tokenised card to the buyer's intent and confirms it with the emulator
    (402 ``card_declined`` with Stripe's message for a refused card). Whatever the server
    answers itself is passed on untouched."""

    def __init__(self, stripe_api_base: str, gateway: StripeGateway) -> None:
        self.stripe_js_url = f"{stripe_api_base}/js.stripe.com/v3/"
        self.gateway = gateway
        self.intents: list[str] = []  # every intent the page was handed, in order
        self.orders: list[str] = []  # and the order each was for
        self.stood_in: set[str] = set()  # which of the two it had to answer

    async def install(self, page: Page) -> None:
        await page.route(CHECKOUT, self._checkout)
        await page.route(CONFIRM, self._confirm)

    async def _checkout(self, route: Route) -> None:
        response = await route.fetch()
        body: dict[str, Any] = await response.json()
        if response.ok and "client_secret" in body:
            self.intents.append(body["payment_intent_id"])
            self.orders.append(body["order_id"])
            if "confirm_on_server" not in body:
                self.stood_in.add("checkout answer")
                body |= {"stripe_js_url": self.stripe_js_url, "confirm_on_server": True}
        await route.fulfill(response=response, json=body)

    async def _confirm(self, route: Route) -> None:
        response = await route.fetch()
        if response.status != 404:  # the server confirms now: its answer, as it is
            await route.fulfill(response=response)
            return
        self.stood_in.add("confirm route")
        asked: dict[str, str] = route.request.post_data_json or {}
        try:
            status = await self.gateway.confirm_payment_intent(
                asked["payment_intent_id"], asked["payment_method"]
            )
        except CardDeclined as declined:
            problem = {"status": 402, "code": "card_declined", "detail": str(declined)}
            await route.fulfill(status=402, json=problem)
            return
        await route.fulfill(
            json={"payment_intent_id": asked["payment_intent_id"], "status": status}
        )


async def a_shop(base: str, admin: dict[str, str], name: str) -> dict[str, Any]:
    """The kit's store (Ramen with options, Gyoza) and Bagels, only three of them left."""
    store = await a_store(base, admin, name=name)
    async with httpx.AsyncClient(base_url=base, headers=admin, timeout=10) as http:
        bagel = {"name": "Bagel", "price_minor": 350, "stock": 3, "option_groups": []}
        made = await http.post(f"/api/v1/stores/{store['id']}/products", json=bagel)
        assert made.status_code == 201, made.text
    return store


async def an_account(base: str, name: str) -> str:
    """An account made over HTTP; its email."""
    email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.test"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        body = {"email": email, "password": PASSWORD, "display_name": name}
        made = await http.post("/api/v1/accounts", json=body)
        assert made.status_code == 201, made.text
    return email


async def stock_left(base: str, store_id: str, product: str) -> int:
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        guest = (await http.post("/api/v1/sessions", json={"display_name": "Peek"})).json()
        headers = {"Authorization": f"Bearer {guest['token']}"}
        listed = (await http.get(f"/api/v1/stores/{store_id}/products", headers=headers)).json()
    left: int = next(p["stock"] for p in listed["items"] if p["name"] == product)
    return left


async def shops_alone(person: Person, store: dict[str, Any]) -> None:
    """From the home page (signed in: signing in goes there), "Shop on your own" at the
    store."""
    await expect(person.page.locator("#my-carts")).to_be_visible()
    await person.page.get_by_label("Store").select_option(label=f"{store['name']} (USD)")
    await person.page.get_by_role("button", name="Shop on your own").click()
    await expect(person.page.locator("#shop-title")).to_have_text(store["name"])


async def at_step(page: Page, step: str, title: str) -> None:
    await expect(page.locator("#steps > li[aria-current=step]")).to_have_attribute(
        "data-step", step
    )
    await expect(page.locator("#step-title")).to_have_text(title)
    await expect(page.locator("#step-title")).to_be_focused()


async def test_a_guest_shops_signs_up_keeps_the_cart_and_pays_by_card_after_a_decline(
    browser: Browser,
    live_server: str,
    admin_headers: dict[str, str],
    stripe_api_base: str,
    gateway: StripeGateway,
    contexts: list[BrowserContext],
    request: pytest.FixtureRequest,
) -> None:
    source = await asyncio.to_thread(axe_source)
    store = await a_shop(live_server, admin_headers, "Corner Deli")
    taken = await an_account(live_server, "Someone")
    opened, (ana,) = await people_at(browser, PHONE, ARTIFACTS / request.node.name, ("Ana",))
    contexts += opened
    page = ana.page
    stand_in = ConfirmStandIn(stripe_api_base, gateway)
    await stand_in.install(page)
    found: dict[str, list[dict[str, Any]]] = {}

    # A guest, shopping on their own: the same menu as a group's, and their cart beside it.
    await ana.sign_in(live_server + "/")
    await shops_alone(ana, store)
    await expect(page.locator("#steps > li[aria-current=step]")).to_have_attribute(
        "data-step", "cart"
    )
    await expect(page.locator("#cart-empty")).to_be_visible()
    await ana.add("Bagel", quantity=2)
    bagels = ana.product("Bagel")
    await expect(bagels.locator(".stock")).to_have_text("1 left · 2 in this cart")
    await bagels.get_by_label("Quantity of Bagel").fill("2")
    await bagels.get_by_role("button", name="Add Bagel").click()
    await expect(bagels.locator(".msg")).to_have_text("Only 1 Bagel left for this cart.")
    await ana.add("Ramen", option="Large")
    await ana.add("Gyoza")
    lines = page.locator("#cart-items > li")
    await expect(lines).to_have_count(3)
    await page.get_by_role("button", name="Remove Gyoza").click()
    await expect(lines).to_have_count(2)
    await expect(page.locator("#status")).to_have_text("Removed Gyoza from your cart.")

    # More than the store has, typed in the cart: the server refuses, the quantity goes back.
    bagel_line = page.locator('#cart-items > li[data-name="Bagel"]')
    quantity = bagel_line.get_by_role("spinbutton")
    await quantity.fill("4")
    await quantity.press("Enter")
    refused = bagel_line.locator(".msg")
    await expect(refused).to_have_text(
        "Not enough Bagel left for this cart. Change the quantities and try again."
    )
    await ana.sees_beside(refused, quantity)
    await expect(quantity).to_have_value("2")
    await expect(page.locator("#shop-total")).to_have_text("$29.66")  # 24.00 + 3.50 + 9 % tax
    await expect(page.locator("#my-bar")).to_have_text(re.compile(r"Your cart: 3 · \$24\.00"))
    found["shop@390"] = await axe_violations(page, source)
    await ana.no_horizontal_scroll()
    # A full-page screenshot resizes the viewport and back; Chromium then scrolls a focused
    # field into view at the next focus change, under the pointer of the next click.
    await quantity.blur()
    await ana.shot("1-shop")

    # Sign up from the shop: refusals beside their fields, then the cart comes along.
    await page.locator("#shop-signup").click()
    await expect(page.locator("#account-title")).to_have_text("Create an account")
    await expect(page.get_by_label("Your name")).to_be_focused()
    await expect(page.locator("#account")).to_contain_text("Your cart comes with you.")
    found["sign-up@390"] = await axe_violations(page, source)
    await page.get_by_label("Your name").fill("Ana")
    await page.get_by_label("Email").fill(taken)
    await page.get_by_label("Password").fill("short")
    submit = page.get_by_role("button", name="Create the account")
    await submit.click()
    password = page.get_by_label("Password")
    too_short = page.locator("#msg-signup-password")
    await expect(too_short).to_have_text("Choose a password of at least 8 characters.")
    await expect(password).to_be_focused()
    await expect(password).to_have_attribute("aria-invalid", "true")
    await ana.sees_beside(too_short, password)
    await password.fill(PASSWORD)
    await submit.click()
    taken_message = page.locator("#msg-signup-email")
    await expect(taken_message).to_have_text(
        "There's an account with this email already. Sign in instead, or use another email."
    )
    await expect(page.get_by_label("Email")).to_be_focused()
    await expect(too_short).to_have_text("")
    found["sign-up-refused@390"] = await axe_violations(page, source)
    await page.get_by_label("Email").fill(f"ana-{uuid.uuid4().hex[:8]}@example.test")
    await submit.click()
    await expect(page.locator("#msg-shop-cart")).to_have_text("Your cart came with you.")
    await expect(lines).to_have_count(2)
    await expect(
        page.locator('#cart-items > li[data-name="Bagel"]').get_by_role("spinbutton")
    ).to_have_value("2")
    await expect(page.locator('#cart-items > li[data-name="Ramen"]')).to_contain_text("Large")
    await expect(page.locator("#whoami")).to_have_text("Signed in as Ana")
    await expect(page.locator("#nav-signin")).to_be_hidden()
    await expect(page.locator("#shop-account")).to_have_count(0)

    # The steps: the address (nothing typed is refused in words), delivery or pickup, back.
    await page.get_by_role("button", name="Check out").click()
    await at_step(page, "address", "Your address")
    found["checkout-address@390"] = await axe_violations(page, source)
    await page.get_by_role("button", name="Continue to delivery").click()
    await expect(page.locator("#msg-address")).to_have_text(
        "Fill in the address, city, postal code and country."
    )
    await expect(page.get_by_label("Address", exact=True)).to_be_focused()
    await ana.give_address(ADDRESS)
    await page.get_by_role("button", name="Continue to delivery").click()
    await at_step(page, "delivery", "Delivery or pickup?")
    delivery = page.get_by_role("radio", name=re.compile(r"^Delivery: \$3\.50"))
    pickup = page.get_by_role("radio", name=re.compile(r"^Pickup: free"))
    await expect(delivery).to_be_checked()
    await expect(page.locator("#delivery-step")).to_contain_text("$3.50 less than delivery")
    await pickup.check()
    await page.get_by_role("button", name="Continue to payment").click()
    await at_step(page, "payment", "Pay $26.16")
    await expect(page.locator("#shop-fee")).to_have_text("Free")
    await expect(
        page.get_by_role("button", name="Step 1: Cart, done: go back to it")
    ).to_be_visible()
    await page.get_by_role("button", name="Step 2: Address, done: go back to it").click()
    await at_step(page, "address", "Your address")
    await expect(page.get_by_label("Address", exact=True)).to_have_value(ADDRESS["line1"])
    await page.get_by_role("button", name="Continue to delivery").click()
    await at_step(page, "delivery", "Delivery or pickup?")
    await expect(pickup).to_be_checked()
    await delivery.check()
    await page.get_by_role("button", name="Continue to payment").click()
    await at_step(page, "payment", "Pay $29.66")
    found["checkout-payment@390"] = await axe_violations(page, source)
    await ana.no_horizontal_scroll()
    await ana.shot("2-payment-step")

    # Paying on the page: declined, said beside the form; another card (a new intent) pays.
    await page.get_by_role("button", name="Pay by card here").click()
    await expect(page.locator("#card-element input").first).to_be_focused()
    await expect(page.locator("#steps button")).to_have_count(0)  # the order is made: no back
    await ana.fill_card(DECLINED_ON_CHARGE)
    await page.get_by_role("button", name="Pay $29.66").click()
    declined = page.locator("#msg-pay-card")
    await expect(declined).to_contain_text("Your card was declined. Try another card")
    again = page.get_by_role("button", name="Try another card")
    await ana.sees_beside(declined, again)
    await expect(declined).to_be_focused()
    found["checkout-declined@390"] = await axe_violations(page, source)
    await ana.shot("3-declined")
    await again.click()
    await expect(page.locator("#card-element input").first).to_be_focused()

    # The order, open in another tab while it waits: it becomes placed there by itself.
    watching = await page.context.new_page()
    watching.on("pageerror", lambda error: ana.page_errors.append(str(error)))
    await watching.goto(f"{live_server}/#/orders/{stand_in.orders[-1]}")
    await expect(watching.locator("#order-status")).to_have_text("waiting for payment")
    await expect(watching.locator("#order-conn")).to_have_attribute("data-conn", "live")
    await ana.fill_card(VISA)
    await page.get_by_role("button", name="Pay $29.66").click()
    await expect(watching.locator("#order-status")).to_have_text("placed", timeout=PAID)
    await expect(watching.locator("#status")).to_have_text("The order is placed.")
    await page.wait_for_url(f"{live_server}/#/orders/{stand_in.orders[-1]}")
    await expect(page.locator("#order-status")).to_have_text("placed", timeout=PAID)
    history = page.locator("#history > li")
    await expect(history.first).to_have_attribute("data-status", "awaiting_payment")
    await expect(history.first).to_contain_text("by the buyer")
    await expect(history.last).to_have_attribute("data-status", "placed")
    await expect(page.locator("#payments > li.mine")).to_contain_text("$29.66")
    await expect(page.locator("#lines-title")).to_have_text("What was ordered")
    await ana.shot("4-placed")
    assert len(stand_in.intents) >= 2
    # The retry paid a new intent: the server counted the failure, or (when the retry beat the
    # failure's webhook) the emulator, which ignores Idempotency-Key on PaymentIntents, made
    # one; Stripe would answer the same intent, which takes another card.
    assert stand_in.intents[0] != stand_in.intents[-1]
    assert await stock_left(live_server, store["id"], "Bagel") == 1

    report("checkout-axe", {"pages_checked": sorted(found), "serious_or_critical": found})
    report("checkout-stand-in", {"stood_in_for": sorted(stand_in.stood_in)})
    assert stand_in.stood_in == set()  # the server answers both itself now
    assert {name: v for name, v in found.items() if v} == {}
    assert ana.page_errors == [], ana.page_errors


async def test_a_buyer_signs_in_pays_on_stripes_page_and_comes_back_to_the_order(
    browser: Browser,
    live_server: str,
    admin_headers: dict[str, str],
    stripe_api_base: str,
    contexts: list[BrowserContext],
    request: pytest.FixtureRequest,
) -> None:
    source = await asyncio.to_thread(axe_source)
    store = await a_shop(live_server, admin_headers, "Hosted Deli")
    ben_email = await an_account(live_server, "Ben")
    worn_out = await an_account(live_server, "Cai")
    async with httpx.AsyncClient(base_url=live_server, timeout=10) as http:
        for _ in range(10):  # the email's failed sign-ins for this minute, all used up
            wrong = {"email": worn_out, "password": "not the password"}
            answer = await http.post("/api/v1/sessions/password", json=wrong)
            assert answer.status_code == 401, answer.text
    opened, (ben,) = await people_at(browser, DESKTOP, ARTIFACTS / request.node.name, ("Ben",))
    contexts += opened
    page = ben.page
    found: dict[str, list[dict[str, Any]]] = {}

    # Signing in: a wrong password, an email out of tries (when to try again), then in.
    await page.goto(live_server + "/#/signin")
    await expect(page.locator("#account-title")).to_have_text("Sign in")
    await expect(page.get_by_label("Email")).to_be_focused()
    found["sign-in@1280"] = await axe_violations(page, source)
    sign_in = page.get_by_role("button", name="Sign in", exact=True)
    refused = page.locator("#msg-login")
    await page.get_by_label("Email").fill(ben_email)
    await page.get_by_label("Password").fill("not the password")
    await sign_in.click()
    await expect(refused).to_have_text("The email or the password is wrong.")
    await ben.sees_beside(refused, sign_in)
    await page.get_by_label("Email").fill(worn_out)
    await page.get_by_label("Password").fill(PASSWORD)
    await sign_in.click()
    await expect(refused).to_have_text(
        re.compile(r"^Too many tries\. Try again in \d+ seconds \(at \d\d:\d\d( [AP]M)?\)\.$")
    )
    await page.get_by_label("Email").fill(ben_email)
    await sign_in.click()
    await expect(page.locator("#whoami")).to_have_text("Signed in as Ben")
    await expect(page.locator("#my-carts")).to_be_visible()  # on to the home page

    await shops_alone(ben, store)
    await expect(page.locator("#shop-account")).to_have_count(0)  # signed in already
    await ben.add("Gyoza", quantity=2)
    found["shop@1280"] = await axe_violations(page, source)
    await page.get_by_role("button", name="Check out").click()
    await at_step(page, "address", "Your address")
    await ben.give_address(ADDRESS)
    await page.get_by_role("button", name="Continue to delivery").click()
    await at_step(page, "delivery", "Delivery or pickup?")
    await page.get_by_role("button", name="Continue to payment").click()
    await at_step(page, "payment", "Pay $18.76")  # 14.00 + 3.50 + 1.26
    found["checkout-payment@1280"] = await axe_violations(page, source)
    await ben.shot("1-payment-step")

    # Paid on Stripe's page, which sends the buyer to the order: it becomes placed.
    await page.get_by_role("button", name="Pay on Stripe's page").click()
    await page.wait_for_url(f"{stripe_api_base}/checkout/**")
    await expect(page.locator("#amount")).to_have_text("USD 18.76")
    await ben.pay_on_stripe_page(VISA, email=ben_email)
    await page.wait_for_url(re.compile(r"/#/orders/[0-9a-f-]{36}$"))
    await expect(page.locator("#order-status")).to_have_text("placed", timeout=PAID)
    await expect(page.locator("#order-conn")).to_have_attribute("data-conn", "live")
    await expect(page.locator("#lines-title")).to_have_text("What was ordered")
    await expect(page.locator("#payments > li.mine")).to_contain_text("$18.76")
    await ben.shot("2-placed")
    assert await stock_left(live_server, store["id"], "Gyoza") == 18

    report("checkout-hosted-axe", {"pages_checked": sorted(found), "serious_or_critical": found})
    assert {name: v for name, v in found.items() if v} == {}
    assert ben.page_errors == [], ben.page_errors


async def test_a_guest_leaves_stripes_page_by_its_cancel_link_and_pays_there_later(
    browser: Browser,
    live_server: str,
    admin_headers: dict[str, str],
    stripe_api_base: str,
    contexts: list[BrowserContext],
    request: pytest.FixtureRequest,
) -> None:
    store = await a_shop(live_server, admin_headers, "Second Thoughts Deli")
    opened, (cai,) = await people_at(browser, PHONE, ARTIFACTS / request.node.name, ("Cai",))
    contexts += opened
    page = cai.page
    await cai.sign_in(live_server + "/")  # a guest: no account is needed to check out
    await shops_alone(cai, store)
    await cai.add("Bagel")
    await page.get_by_role("button", name="Check out").click()
    await cai.give_address(ADDRESS)
    await page.get_by_role("button", name="Continue to delivery").click()
    await page.get_by_role("button", name="Continue to payment").click()
    await at_step(page, "payment", "Pay $7.32")  # 3.50 + 3.50 + 0.32

    # Left by its cancel link: back at the payment step, the order and its stock kept.
    await page.get_by_role("button", name="Pay on Stripe's page").click()
    await page.wait_for_url(f"{stripe_api_base}/checkout/**")
    await page.get_by_role("link", name="Cancel and go back").click()
    await page.wait_for_url(re.compile(r"/#/checkout/[0-9a-f-]{36}$"))
    await at_step(page, "payment", "Pay $7.32")
    await expect(page.locator("#order-kept")).to_contain_text("its items are kept for you")
    await expect(page.locator("#steps button")).to_have_count(0)
    assert await stock_left(live_server, store["id"], "Bagel") == 2

    # A while later (past the second the first session's expiry was computed in), paid there.
    await page.wait_for_timeout(1_100)
    await page.get_by_role("button", name="Pay on Stripe's page").click()
    await page.wait_for_url(f"{stripe_api_base}/checkout/**", timeout=5_000)
    await cai.pay_on_stripe_page(VISA)
    await page.wait_for_url(re.compile(r"/#/orders/[0-9a-f-]{36}$"))
    await expect(page.locator("#order-status")).to_have_text("placed", timeout=PAID)
    assert cai.page_errors == [], cai.page_errors
