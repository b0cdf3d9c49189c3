"""Regenerate the README's screenshots (``docs/screenshots/``) from the demo store.

``./dev screenshots`` runs this: a server on a throw-away database (the machine's PostgreSQL
and Redis when they answer, else embedded ones, as the tests do), the Stripe emulator, the demo
store of ``app/demo.py`` ("Demo Kitchen"), and three people in Debian's Chromium: Hana hosts on
her phone, Ana and Ben join by the invite link and add dishes; Ana pays cash on delivery, Ben
pays online with the emulator's test card; Hana confirms, and the kitchen's staff (signed in by
a staff link) accept the order, prepare it and ship it. Then Cai shops on his own. Six pictures
come out:

- ``group-cart-live.png``: the open cart on Hana's phone (390 x 844), everyone's items in,
  the menu folded;
- ``everyone-paying.png``: Hana's page on a laptop (1280 x 800) while the others pay;
- ``order-live.png``: the shipped order on Ben's phone: status, tracking, what happened;
- ``store-orders.png``: the kitchen's orders page on a laptop, the order shipped;
- ``shop-cart.png``: Cai's own cart at the store on his phone, the menu folded;
- ``checkout-delivery.png``: his checkout's delivery step (delivery or pickup, the fee's
  difference), the steps done above it.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import tempfile
from pathlib import Path

from app.auth import issue_token
from app.config import Settings
from app.demo import seed_demo
from app.embedded import (
    EMULATOR_PUBLISHABLE_KEY,
    EMULATOR_SECRET_KEY,
    WEBHOOK_PATH,
    register_emulator_webhook,
    stripe_emulator,
)
from app.persistence import schema
from app.persistence.database import create_engine
from app.wiring import create_app
from tests.e2e.browser_kit import DESKTOP, LIVE, PHONE, ROOT, Person, expect, launch
from tests.services import fresh_database, postgres_server, redis_server, serving
from tests.stripe_events import WEBHOOK_SECRET

OUT = ROOT / "docs" / "screenshots"


async def seed(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1)
    try:
        await seed_demo(engine)
    finally:
        await engine.dispose()


async def take(base: str, out: Path, jwt_secret: str) -> list[Path]:
    async with launch() as browser:
        contexts = [await browser.new_context(viewport=PHONE) for _ in range(3)]  # type: ignore[arg-type]
        hana, ana, ben = [
            Person(name, await context.new_page(), out)
            for name, context in zip(("Hana", "Ana", "Ben"), contexts, strict=True)
        ]
        contexts.append(await browser.new_context(viewport=DESKTOP))  # type: ignore[arg-type]
        kitchen = Person("Kitchen", await contexts[-1].new_page(), out)
        await hana.sign_in(base + "/")
        await hana.page.get_by_label("Store").select_option(label="Demo Kitchen (USD)")
        await hana.page.get_by_role("button", name="Open a group cart").click()
        invite = await hana.page.locator("#invite-link").input_value()
        for guest in (ana, ben):
            await guest.sign_in(invite)
            await expect(guest.page.locator("#conn")).to_have_attribute("data-conn", "live")

        await hana.add("Margherita pizza", option="Gluten-free crust")
        await ana.add("Pad thai", option="Chicken")
        pizza = ben.product("Margherita pizza")
        await pizza.get_by_label("Classic crust").check()
        await pizza.get_by_label("Mushrooms").check()
        await pizza.get_by_label("Olives").check()
        await ben.add("Margherita pizza")
        await ana.add("Iced lemon tea", option="Large", quantity=2)
        await ben.add("Tiramisu")
        await ana.page.locator("#ready").click()
        await expect(hana.page.locator("#members li[data-item-id]")).to_have_count(5, timeout=LIVE)
        await expect(hana.page.locator("#members > li").nth(1)).to_contain_text("Ready")
        await hana.page.locator("#catalog > summary").click()  # the menu folded away
        await hana.page.wait_for_timeout(6_500)  # "Added …" beside the button has gone
        await hana.page.evaluate("() => scrollTo(0, document.body.scrollHeight)")  # the bar last
        live = out / "group-cart-live.png"
        await hana.page.screenshot(path=str(live), full_page=True)

        await hana.page.locator("#lock").click()
        await hana.page.locator("#lock-anyway").click()
        await expect(ana.page.locator("#cart-status")).to_have_attribute(
            "data-status", "locked", timeout=LIVE
        )
        await hana.page.set_viewport_size(DESKTOP)  # type: ignore[arg-type]
        await ana.page.locator("#pay-cod").click()
        await ben.pay_by_card("4242424242424242")
        await expect(hana.payment_badge(ben)).to_have_text("Paid online", timeout=10_000)
        await expect(hana.payment_badge(ana)).to_have_text("Cash on delivery")
        await hana.page.locator("#members > li").nth(2).locator("summary").click()
        await hana.page.evaluate("() => scrollTo(0, 0)")
        paying = out / "everyone-paying.png"
        await hana.page.screenshot(path=str(paying))

        await hana.page.locator("#pay-cod").click()
        await hana.page.get_by_label("Address", exact=True).fill("12 Harbour Road")
        await hana.page.get_by_label("City").fill("Springfield")
        await hana.page.get_by_label("Postal code").fill("12345")
        await hana.page.get_by_label("Country (2 letters)").fill("US")
        await hana.page.locator("#confirm").click()
        await ben.page.locator("#order-link").click(timeout=LIVE)
        await expect(ben.page.locator("#order-conn")).to_have_attribute("data-conn", "live")
        store_id = await ben.page.evaluate(
            "async (id) => (await (await fetch(`/api/v1/orders/${id}`, { headers: {"
            " Authorization: `Bearer ${localStorage.getItem('teamcart.token')}` } })).json())"
            ".store_id",
            ben.page.url.rsplit("/", 1)[-1],
        )
        token = issue_token(jwt_secret, display_name="Kitchen", staff_of=store_id).token
        await kitchen.page.goto(f"{base}/#/store/{store_id}?token={token}")
        row = kitchen.page.locator("#store-orders > li").first
        await row.get_by_role("button", name="Accept").click()
        await expect(ben.page.locator("#order-status")).to_have_text("accepted", timeout=LIVE)
        await row.get_by_role("button", name="Start preparing").click()
        await expect(ben.page.locator("#order-status")).to_have_text("being prepared")
        await row.get_by_role("button", name="Shipped…").click()
        await row.get_by_label("Carrier").fill("UPS")
        await row.get_by_label("Tracking number").fill("1Z999AA10123456784")
        await row.get_by_role("button", name="Mark shipped").click()
        await expect(ben.page.locator("#order-status")).to_have_text("shipped", timeout=LIVE)
        await row.locator("details.refunds > summary").click()
        await kitchen.page.wait_for_timeout(6_500)  # "… is shipped now" beside the buttons has gone
        order = out / "order-live.png"
        await ben.page.screenshot(path=str(order), full_page=True)
        store = out / "store-orders.png"
        await kitchen.page.screenshot(path=str(store))

        contexts.append(await browser.new_context(viewport=PHONE))  # type: ignore[arg-type]
        cai = Person("Cai", await contexts[-1].new_page(), out)
        await cai.sign_in(base + "/")
        await cai.page.get_by_label("Store").select_option(label="Demo Kitchen (USD)")
        await cai.page.get_by_role("button", name="Shop on your own").click()
        await cai.add("Margherita pizza", option="Classic crust")
        await cai.add("Iced lemon tea", option="Large", quantity=2)
        await cai.page.locator("#catalog > summary").click()  # the menu folded away
        await cai.page.wait_for_timeout(6_500)  # "Added …" beside the button has gone
        await cai.page.evaluate("() => scrollTo(0, document.body.scrollHeight)")  # the bar last
        shop = out / "shop-cart.png"
        await cai.page.screenshot(path=str(shop), full_page=True)
        await cai.page.get_by_role("button", name="Check out").click()
        await cai.give_address(
            {"line1": "7 Mill Lane", "city": "Springfield", "postal_code": "12345", "country": "US"}
        )
        await cai.page.get_by_role("button", name="Continue to delivery").click()
        await expect(cai.page.locator("#step-title")).to_have_text("Delivery or pickup?")
        await cai.page.evaluate("() => scrollTo(0, 0)")
        step = out / "checkout-delivery.png"
        await cai.page.screenshot(path=str(step))
        for context in contexts:
            await context.close()
    return [live, paying, order, store, shop, step]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="teamcart-shots-") as folder:
        tmp = Path(folder)
        with (
            postgres_server(tmp) as server_url,
            fresh_database(server_url) as database_url,
            redis_server(tmp) as redis_url,
            stripe_emulator(tmp / "localstripe.log") as stripe_base,
        ):
            schema.upgrade(database_url)
            asyncio.run(seed(database_url))
            secret = secrets.token_urlsafe(48)
            settings = Settings(
                database_url=database_url,
                redis_url=redis_url,
                data_dir=tmp / "data",
                jwt_secret=secret,
                stripe_api_base=stripe_base,
                stripe_secret_key=EMULATOR_SECRET_KEY,
                stripe_publishable_key=EMULATOR_PUBLISHABLE_KEY,
                stripe_webhook_secrets=(WEBHOOK_SECRET,),
                log_level="WARNING",
                rate_limit_per_minute=0,
            )
            with serving(create_app(settings)) as base:
                register_emulator_webhook(stripe_base, base + WEBHOOK_PATH, WEBHOOK_SECRET)
                OUT.mkdir(parents=True, exist_ok=True)
                for path in asyncio.run(take(base, OUT, secret)):
                    print(f"screenshots: wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
