"""The page as people use it, in real Chromium (issue 14): messages beside the control that
caused them and inside the screen, no sideways scrolling at 320, 390 and 1280 px, focus and
half-typed input kept when someone else's change arrives, a removed member told so and kept
out, the status strip naming who still owes, recovery after the server restarts, axe-core's
accessibility check on the home, cart and order pages, and the page's weight and first render.

Three people each time: one or more in Chromium, the others through the HTTP API (what they
do arrives in the browsers exactly as if they had clicked). The measured figures are printed
and written to ``test-artifacts/browser/*.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings, settings_to_env
from app.embedded import free_port
from domain.pricing import split_proportionally
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
    report,
)

pytestmark = pytest.mark.slow

SIZES = {"phone": PHONE, "desktop": DESKTOP}
BUDGET_BYTES = 60 * 1024
"""The page's own JavaScript and CSS, gzipped."""
ADDRESS = {"line1": "1 Noodle Lane", "city": "Springfield", "postal_code": "12345", "country": "US"}


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


class Guest:
    """A member who acts through the API (their changes reach the browsers live)."""

    def __init__(self, http: httpx.AsyncClient, name: str, body: dict[str, str]) -> None:
        self.http = http
        self.name = name
        self.user_id = body["user_id"]
        self.headers = {"Authorization": f"Bearer {body['token']}"}

    @classmethod
    async def sign_in(cls, http: httpx.AsyncClient, name: str) -> Guest:
        response = await http.post("/api/v1/sessions", json={"display_name": name})
        assert response.status_code == 201, response.text
        return cls(http, name, response.json())

    async def call(self, method: str, path: str, body: Any = None, *, expect: int = 200) -> Any:
        response = await self.http.request(method, path, json=body, headers=self.headers)
        assert response.status_code == expect, response.text
        return response.json() if response.content else None

    async def join(self, invite_code: str) -> dict[str, Any]:
        cart: dict[str, Any] = await self.call(
            "POST", "/api/v1/teamcarts/join", {"invite_code": invite_code}
        )
        return cart

    async def add(self, cart_id: str, product_id: str, quantity: int = 1, *options: str) -> None:
        body = {"product_id": product_id, "quantity": quantity, "options": list(options)}
        await self.call("POST", f"/api/v1/teamcarts/{cart_id}/items", body, expect=201)


async def products_of(http: httpx.AsyncClient, guest: Guest, store_id: str) -> dict[str, str]:
    listed = await guest.call("GET", f"/api/v1/stores/{store_id}/products")
    return {product["name"]: product["id"] for product in listed["items"]}


async def host_opens(
    host: Person, base: str, store: dict[str, Any], *, signed_in: bool = False
) -> str:
    """The host signs in, opens a cart and answers its id (the invite is on the page)."""
    if not signed_in:
        await host.sign_in(base + "/")
    await host.page.get_by_label("Store").select_option(value=store["id"])
    await host.page.get_by_role("button", name="Open a group cart").click()
    await expect(host.page.locator("#conn")).to_have_attribute("data-conn", "live")
    return host.page.url.rsplit("/", 1)[-1]


async def invite_code(person: Person) -> str:
    return (await person.page.locator("#invite-link").input_value()).rsplit("/", 1)[-1]


async def token_of(person: Person) -> str:
    token: str = await person.page.evaluate("() => localStorage.getItem('teamcart.token')")
    return token


# --- messages where the action happened --------------------------------------------------------


@pytest.mark.parametrize("size", list(SIZES))
async def test_every_message_appears_on_screen_beside_the_control_that_caused_it(
    browser: Browser,
    live_server: str,
    admin_headers: dict[str, str],
    contexts: list[BrowserContext],
    size: str,
    request: pytest.FixtureRequest,
) -> None:
    store = await a_store(live_server, admin_headers, max_tip_bps=2000)
    opened, (hana, ana) = await people_at(
        browser, SIZES[size], ARTIFACTS / request.node.name, ("Hana", "Ana")
    )
    contexts += opened
    async with httpx.AsyncClient(base_url=live_server, timeout=10) as http:
        ben = await Guest.sign_in(http, "Ben")
        cart_id = await host_opens(hana, live_server, store)
        await ana.sign_in(f"{live_server}/join/{await invite_code(hana)}")
        await expect(ana.page.locator("#members > li")).to_have_count(2)  # Ana joined first
        await ben.join(await invite_code(hana))
        ids = await products_of(http, ben, store["id"])

        gyoza, ramen = ana.product("Gyoza"), ana.product("Ramen")
        await gyoza.get_by_label("Quantity of Gyoza").fill("0")
        await gyoza.get_by_role("button", name="Add Gyoza").click()
        await ana.sees_beside(gyoza.locator(".msg"), gyoza.get_by_role("button"))
        await expect(gyoza.locator(".msg")).to_have_text("Choose a quantity from 1 to 99.")

        await ramen.get_by_role("button", name="Add Ramen").click()  # no size chosen
        await ana.sees_beside(ramen.locator(".msg"), ramen.get_by_role("button", name="Add Ramen"))
        await expect(ramen.locator(".msg")).to_contain_text("Choose a size first")

        await ana.add("Gyoza", quantity=2)
        mine = ana.page.locator("#my-items li").first
        quantity = mine.get_by_label("Quantity")
        await quantity.fill("100")
        await quantity.press("Enter")
        await ana.sees_beside(mine.locator(".msg"), quantity)
        await expect(mine.locator(".msg")).to_contain_text("kept 2")
        await expect(quantity).to_have_value("2")  # a refused edit puts the quantity back

        await ben.add(cart_id, ids["Gyoza"], 18)  # the last 18 of 20: the menu says so, live
        await expect(gyoza.locator(".stock")).to_have_text("None left (20 in this cart)")
        await gyoza.get_by_role("button", name="Add Gyoza").click()
        await ana.sees_beside(gyoza.locator(".msg"), gyoza.get_by_role("button"))
        await expect(gyoza.locator(".msg")).to_have_text("No Gyoza left for this cart.")
        await hana.page.locator("#lock").click()  # nobody is ready: the host is asked first
        warning = hana.page.locator("#lock-warning")
        await hana.sees_beside(warning, hana.page.locator("#lock-anyway"))
        await expect(warning).to_contain_text("Ana and Ben aren't ready yet")
        await hana.page.locator("#lock-anyway").click()
        await expect(hana.page.locator("#cart-status")).to_have_attribute("data-status", "locked")

        tip = hana.page.get_by_label("Tip (USD, shared like the bill)")
        await tip.fill("30")  # $140.00 of items, the store caps tips at 20 %: $28.00
        hint = hana.page.locator("#tip-hint")
        await hana.sees_beside(hint, tip)
        await expect(hint).to_contain_text("at most $28.00")
        await tip.fill("4")
        await expect(hint).to_have_text("")  # within the cap, and not a surprising share
        await hana.page.get_by_role("button", name="Set tip").click()
        await hana.sees_beside(hana.page.locator("#msg-tip"), tip)
        await expect(hana.page.locator("#msg-tip")).to_contain_text("Tip set to $4.00")

        coupon = hana.page.get_by_label("Coupon")
        await coupon.fill("NOPE")
        await hana.page.get_by_role("button", name="Apply").click()
        await hana.sees_beside(hana.page.locator("#msg-coupon"), coupon)
        await expect(hana.page.locator("#msg-coupon")).to_have_text(
            "That coupon code doesn't exist here."
        )
        await hana.shot("messages", full_page=False)
        for person in (hana, ana):
            assert person.page_errors == []


# --- no sideways scrolling -------------------------------------------------------------------


async def test_no_horizontal_scroll_at_320_390_and_1280_px_on_every_screen(
    browser: Browser,
    live_server: str,
    admin_headers: dict[str, str],
    contexts: list[BrowserContext],
    request: pytest.FixtureRequest,
) -> None:
    long = "Maximiliana Oyelaran-Featherstonehaugh"
    store = await a_store(live_server, admin_headers, name="The Extraordinarily Long Name Diner")
    opened, (host,) = await people_at(
        browser, {"width": 320, "height": 700}, ARTIFACTS / request.node.name, (long,)
    )
    contexts += opened

    async def everywhere(step: str) -> None:
        for width in (320, 390, 1280):
            await host.page.set_viewport_size({"width": width, "height": 800})
            await host.page.wait_for_timeout(50)
            await host.no_horizontal_scroll()
            await host.shot(f"{step}-{width}")
        await host.page.set_viewport_size({"width": 320, "height": 700})

    async with httpx.AsyncClient(base_url=live_server, timeout=10) as http:
        await host.sign_in(live_server + "/")
        await expect(host.page.locator("#open-cart")).to_be_visible()
        await everywhere("1-home")
        cart_id = await host_opens(host, live_server, store, signed_in=True)
        guests = [await Guest.sign_in(http, name) for name in ("Ana", "Bartholomew-Alexander")]
        ids = await products_of(http, guests[0], store["id"])
        for guest in guests:
            await guest.join(await invite_code(host))
            await guest.add(cart_id, ids["Ramen"], 12, "Large", "Hot")
        await host.add("Ramen", option="Large", quantity=3)
        await expect(host.page.locator("#members > li")).to_have_count(3)
        await everywhere("2-open")
        await host.page.locator("#lock").click()
        await host.page.locator("#lock-anyway").click()
        await expect(host.page.locator("#owing li")).to_have_count(3)
        await everywhere("3-locked")
        for guest in guests:
            await guest.call("POST", f"/api/v1/teamcarts/{cart_id}/payments/cod")
        await host.page.locator("#pay-cod").click()
        await host.page.get_by_label("Address", exact=True).fill(ADDRESS["line1"])
        await host.page.get_by_label("City").fill(ADDRESS["city"])
        await host.page.get_by_label("Postal code").fill(ADDRESS["postal_code"])
        await host.page.get_by_label("Country (2 letters)").fill(ADDRESS["country"])
        await everywhere("4-ready")
        await host.page.locator("#confirm").click()
        await host.page.locator("#order-link").click()
        await expect(host.page.locator("#order-status")).to_have_text("placed")
        await everywhere("5-order")
        assert host.page_errors == []


# --- others' changes don't disturb what you are doing ------------------------------------------


async def test_focus_scroll_and_a_half_typed_quantity_survive_others_updates(
    browser: Browser,
    live_server: str,
    admin_headers: dict[str, str],
    contexts: list[BrowserContext],
    request: pytest.FixtureRequest,
) -> None:
    store = await a_store(live_server, admin_headers)
    opened, (hana, ana) = await people_at(
        browser, PHONE, ARTIFACTS / request.node.name, ("Hana", "Ana")
    )
    contexts += opened
    async with httpx.AsyncClient(base_url=live_server, timeout=10) as http:
        ben = await Guest.sign_in(http, "Ben")
        cart_id = await host_opens(hana, live_server, store)
        await ana.sign_in(f"{live_server}/join/{await invite_code(hana)}")
        await expect(ana.page.locator("#members > li")).to_have_count(2)  # Ana joined first
        await ben.join(await invite_code(hana))
        ids = await products_of(http, ben, store["id"])
        await ana.add("Ramen", option="Regular")

        gyoza = ana.product("Gyoza").get_by_label("Quantity of Gyoza")
        await gyoza.scroll_into_view_if_needed()
        await gyoza.fill("3")  # typed, not added yet
        hot = ana.product("Ramen").get_by_label("Hot")
        await hot.check()  # an option chosen for the next Ramen
        await gyoza.focus()
        where = await gyoza.bounding_box()  # where it sits on the screen

        for _ in range(3):  # Ben and the host change things meanwhile
            await ben.add(cart_id, ids["Gyoza"])
        await ben.call("PUT", f"/api/v1/teamcarts/{cart_id}/ready", {"ready": True})
        await hana.add("Ramen", option="Large")
        await expect(ana.page.locator("#members li[data-item-id]")).to_have_count(5, timeout=LIVE)
        await expect(ana.member(hana)).to_contain_text("Ramen (Large)")
        await expect(ana.product("Gyoza").locator(".stock")).to_contain_text("3 in this cart")

        await expect(gyoza).to_be_focused()
        await expect(gyoza).to_have_value("3")
        await expect(hot).to_be_checked()
        now = await gyoza.bounding_box()
        assert where is not None
        assert now is not None
        assert abs(now["y"] - where["y"]) <= 2, (where, now)  # the page didn't jump under it
        await ana.page.keyboard.press("Tab")  # and the keyboard carries on from there
        await expect(ana.product("Gyoza").get_by_role("button", name="Add Gyoza")).to_be_focused()
        await ana.page.keyboard.press("Enter")
        await expect(ana.page.locator("#my-items li")).to_have_count(2, timeout=LIVE)
        await expect(ana.page.locator("#my-items")).to_contain_text("Gyoza")
        await expect(gyoza).to_have_value("1")  # the form starts afresh after adding
        assert ana.page_errors == []


# --- removal ---------------------------------------------------------------------------------


async def test_a_removed_member_sees_it_and_the_same_invite_link_refuses_them(
    browser: Browser,
    live_server: str,
    admin_headers: dict[str, str],
    contexts: list[BrowserContext],
    request: pytest.FixtureRequest,
) -> None:
    store = await a_store(live_server, admin_headers)
    opened, (hana, ben) = await people_at(
        browser, PHONE, ARTIFACTS / request.node.name, ("Hana", "Ben")
    )
    contexts += opened
    async with httpx.AsyncClient(base_url=live_server, timeout=10) as http:
        ana = await Guest.sign_in(http, "Ana")
        await host_opens(hana, live_server, store)
        invite = f"{live_server}/join/{await invite_code(hana)}"
        await ana.join(await invite_code(hana))
        await ben.sign_in(invite)
        await ben.add("Gyoza")
        await expect(hana.member(ben)).to_contain_text("Gyoza", timeout=LIVE)

        await hana.member(ben).get_by_role("button", name="Remove Ben from the cart").click()
        await expect(ben.page.locator("#notice h1")).to_have_text(
            "You were removed from this cart", timeout=LIVE
        )
        await expect(ben.page.locator(".product")).to_have_count(0)
        await expect(hana.page.locator("#members > li")).to_have_count(2)
        await ben.shot("1-removed")

        await ben.page.goto(invite)
        await expect(ben.page.locator("#notice h1")).to_have_text("You can't join this cart")
        await expect(ben.page.locator("#notice")).to_contain_text("The host removed you")
        refused = await http.post(
            "/api/v1/teamcarts/join",
            json={"invite_code": invite.rsplit("/", 1)[-1]},
            headers={"Authorization": f"Bearer {await token_of(ben)}"},
        )
        assert refused.status_code == 404
        assert refused.json()["code"] == "removed_from_cart"
        await expect(hana.page.locator("#members > li")).to_have_count(2)
        await ben.shot("2-refused")
        assert ben.page_errors == []


# --- the server restarts ---------------------------------------------------------------------


@contextlib.contextmanager
def server_on(settings: Settings, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, **settings_to_env(settings), "TEAMCART_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "uvicorn", "--factory", "app.asgi:create_app_from_env"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code == 200:
                    break
            assert process.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def test_the_page_recovers_by_itself_after_the_server_restarts(
    browser: Browser,
    settings: Settings,
    admin_headers: dict[str, str],
    contexts: list[BrowserContext],
    request: pytest.FixtureRequest,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = ARTIFACTS / "restart-server.log"
    opened, (hana,) = await people_at(browser, PHONE, ARTIFACTS / request.node.name, ("Hana",))
    contexts += opened
    log.unlink(missing_ok=True)
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        with server_on(settings, port, log):
            store = await a_store(base, admin_headers, name="Restart Diner")
            cart_id = await host_opens(hana, base, store)
            ana = await Guest.sign_in(http, "Ana")
            ben = await Guest.sign_in(http, "Ben")
            for guest in (ana, ben):
                await guest.join(await invite_code(hana))
            ids = await products_of(http, ana, store["id"])
            await ana.add(cart_id, ids["Gyoza"])
            await expect(hana.page.locator("#members li[data-item-id]")).to_have_count(1)

        # The server is gone: the page says so, and an action says why it failed, beside it.
        await expect(hana.page.locator("#conn")).not_to_have_attribute("data-conn", "live")
        await expect(hana.page.locator("#conn")).to_have_text(re.compile("Reconnecting|Offline"))
        await hana.page.locator("#ready").click()
        await expect(hana.page.locator("#msg-ready")).to_contain_text("Can't reach the server")
        await hana.shot("1-down", full_page=False)

        with server_on(settings, port, log):
            started = time.monotonic()
            await expect(hana.page.locator("#conn")).to_have_attribute(
                "data-conn", "live", timeout=15_000
            )
            recovered = time.monotonic() - started
            await expect(hana.page.locator("#msg-ready")).to_have_text("")  # no longer holds
            await ben.add(cart_id, ids["Ramen"], 1, "Regular")  # and live again
            await expect(hana.page.locator("#members li[data-item-id]")).to_have_count(
                2, timeout=LIVE
            )
            await hana.shot("2-back", full_page=False)
    report("restart", {"back_live_after_server_start_s": round(recovered, 2)})
    assert hana.page_errors == []


# --- accessibility ---------------------------------------------------------------------------


async def test_axe_finds_no_serious_or_critical_violations_on_home_cart_and_order(
    browser: Browser,
    live_server: str,
    admin_headers: dict[str, str],
    contexts: list[BrowserContext],
    request: pytest.FixtureRequest,
) -> None:
    source = await asyncio.to_thread(axe_source)
    store = await a_store(live_server, admin_headers, name="Axe Diner")
    opened, (hana,) = await people_at(browser, PHONE, ARTIFACTS / request.node.name, ("Hana",))
    contexts += opened
    found: dict[str, list[dict[str, Any]]] = {}

    # First, that the check sees what it should: an unlabelled field and an empty button.
    await hana.page.set_content("<main><input><button></button></main>")
    planted = {v["id"] for v in await axe_violations(hana.page, source)}
    assert {"label", "button-name"} <= planted, planted

    async def check(page_name: str) -> None:
        for size in SIZES.values():
            await hana.page.set_viewport_size(size)  # type: ignore[arg-type]
            found[f"{page_name}@{size['width']}"] = await axe_violations(hana.page, source)

    async with httpx.AsyncClient(base_url=live_server, timeout=10) as http:
        await hana.page.goto(live_server + "/")
        found["sign-in"] = await axe_violations(hana.page, source)
        await hana.sign_in(live_server + "/")
        await expect(hana.page.locator("#my-carts")).to_be_visible()
        await check("home")
        cart_id = await host_opens(hana, live_server, store, signed_in=True)
        guests = [await Guest.sign_in(http, name) for name in ("Ana", "Ben")]
        ids = await products_of(http, guests[0], store["id"])
        for guest in guests:
            await guest.join(await invite_code(hana))
            await guest.add(cart_id, ids["Gyoza"], 2)
        await hana.add("Ramen", option="Large")
        await expect(hana.page.locator("#members li[data-item-id]")).to_have_count(3)
        await check("cart-open")
        await hana.page.locator("#lock").click()
        await expect(hana.page.locator("#lock-warning")).to_be_visible()
        await check("cart-lock-warning")
        await hana.page.locator("#lock-anyway").click()
        await expect(hana.page.locator("#owing li")).to_have_count(3)
        await check("cart-locked")
        for guest in guests:
            await guest.call("POST", f"/api/v1/teamcarts/{cart_id}/payments/cod")
        await hana.page.locator("#pay-cod").click()
        await expect(hana.page.locator("#confirm-form")).to_be_visible()
        await check("cart-ready")
        confirmed = await http.post(
            f"/api/v1/teamcarts/{cart_id}/confirm",
            json={"delivery_address": ADDRESS},
            headers={"Authorization": f"Bearer {await token_of(hana)}"},
        )
        assert confirmed.status_code == 201, confirmed.text
        await hana.page.locator("#order-link").click()
        await expect(hana.page.locator("#order-status")).to_have_text("placed")
        await check("order")
        await hana.page.get_by_role("link", name="All my orders").click()
        await expect(hana.page.locator("#orders li")).to_have_count(1)
        await check("orders")
    report("axe", {"pages_checked": sorted(found), "serious_or_critical": found})
    assert {page: v for page, v in found.items() if v} == {}


# --- weight and first render -----------------------------------------------------------------


async def test_the_page_is_light_and_the_cart_renders_fast_on_loopback(
    browser: Browser,
    live_server: str,
    admin_headers: dict[str, str],
    contexts: list[BrowserContext],
    request: pytest.FixtureRequest,
) -> None:
    sizes: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=live_server, timeout=10) as http:
        for name in ("app.js", "style.css"):
            response = await http.get(f"/static/{name}")
            assert response.status_code == 200
            sizes[name] = len(gzip.compress(response.content, compresslevel=6))
    assert sizes["app.js"] + sizes["style.css"] <= BUDGET_BYTES, sizes

    store = await a_store(live_server, admin_headers, name="Timing Diner")
    opened, (hana,) = await people_at(browser, PHONE, ARTIFACTS / request.node.name, ("Hana",))
    contexts += opened
    async with httpx.AsyncClient(base_url=live_server, timeout=10) as http:
        cart_id = await host_opens(hana, live_server, store)
        guests = [await Guest.sign_in(http, name) for name in ("Ana", "Ben")]
        ids = await products_of(http, guests[0], store["id"])
        for guest in guests:
            await guest.join(await invite_code(hana))
            await guest.add(cart_id, ids["Gyoza"], 2)
            await guest.add(cart_id, ids["Ramen"], 1, "Large", "Hot")
    timings: list[float] = []
    phases: list[dict[str, float | None]] = []
    for _ in range(7):
        page = await opened[0].new_page()
        await page.goto(f"{live_server}/#/carts/{cart_id}")
        await expect(page.locator("#members li[data-item-id]")).to_have_count(4)
        rendered = await page.evaluate(
            """() => new Promise((resolve) => {
                 const look = () => {
                   const [mark] = performance.getEntriesByName('teamcart:cart-rendered');
                   if (mark) resolve(mark.startTime); else requestAnimationFrame(look);
                 };
                 look();
               })"""
        )
        timings.append(float(rendered))
        phases.append(
            await page.evaluate(
                """() => {
                     const nav = performance.getEntriesByType('navigation')[0];
                     const got = performance.getEntriesByType('resource');
                     const js = got.find((r) => r.name.endsWith('/static/app.js'));
                     const cart = got.find((r) => /teamcarts\\/[0-9a-f-]{36}$/.test(r.name));
                     const [drawn] = performance.getEntriesByName('teamcart:cart-drawn');
                     const [started] = performance.getEntriesByName('teamcart:module-start');
                     return { html: nav.responseEnd, js: js ? js.responseEnd : null,
                              module_started: started.startTime, drawn: drawn.startTime,
                              cart_request: cart ? cart.startTime : null,
                              cart_answered: cart ? cart.responseEnd : null };
                   }"""
            )
        )
        await page.close()
    figures = {
        "gzipped_bytes": {**sizes, "total": sizes["app.js"] + sizes["style.css"]},
        "budget_bytes": BUDGET_BYTES,
        "cart_first_render_ms": {
            "median": round(statistics.median(timings), 1),
            "max": round(max(timings), 1),
            "runs": [round(t, 1) for t in timings],
            "target": 300,
            "median_phases_ms": {
                phase: round(statistics.median(p[phase] or 0 for p in phases), 1)
                for phase in (
                    "html",
                    "js",
                    "module_started",
                    "cart_request",
                    "cart_answered",
                    "drawn",
                )
            },
        },
    }
    report("budget", figures)


# --- the page's arithmetic agrees with the server's --------------------------------------------


async def test_the_pages_split_and_amounts_agree_with_the_servers(
    browser: Browser, live_server: str, contexts: list[BrowserContext]
) -> None:
    """Each member's part of the fee, tax, tip and discount is split on the page by the rule
    the server splits shares by (largest remainder, ties to the earlier member), and a tip
    typed in major units becomes minor units without floating point."""
    rng = random.Random(14)
    cases = [
        (rng.randrange(0, 100_000), [rng.randrange(0, 5_000) for _ in range(rng.randrange(1, 7))])
        for _ in range(300)
    ]
    cases += [(7, [1, 1, 1]), (10, [0, 3, 3]), (1, [5, 5]), (0, [0, 0]), (99_999, [1])]
    context = await browser.new_context()
    contexts.append(context)
    page = await context.new_page()
    await page.goto(live_server + "/")
    got = await page.evaluate(
        """async (cases) => {
             const page = await import('/static/app.js');
             return {
               splits: cases.map(([total, weights]) => page.split(total, weights)),
               amounts: ['12.5', '12.50', '0.01', '3', '1,25', '12.345', '-1', 'ten', '']
                 .map((text) => page.parseAmount(text, 'USD')),
               yen: page.parseAmount('1200', 'JPY'),
               dinar: page.parseAmount('1.005', 'KWD'),
             };
           }""",
        cases,
    )
    for (total, weights), split in zip(cases, got["splits"], strict=True):
        if sum(weights) == 0:
            assert split == [0] * len(weights)
            continue
        expected = split_proportionally(total, dict(enumerate(weights)))
        assert split == [expected[i] for i in range(len(weights))], (total, weights)
    assert got["amounts"] == [1250, 1250, 1, 300, 125, None, None, None, None]
    assert (got["yen"], got["dinar"]) == (1200, 1005)


async def test_a_guest_too_late_is_told_who_can_let_them_in(
    browser: Browser,
    live_server: str,
    admin_headers: dict[str, str],
    contexts: list[BrowserContext],
    request: pytest.FixtureRequest,
) -> None:
    store = await a_store(live_server, admin_headers, name="Late Diner")
    opened, (cai,) = await people_at(browser, PHONE, ARTIFACTS / request.node.name, ("Cai",))
    contexts += opened
    async with httpx.AsyncClient(base_url=live_server, timeout=10) as http:
        hana = await Guest.sign_in(http, "Hana")
        ana = await Guest.sign_in(http, "Ana")
        cart = await hana.call("POST", "/api/v1/teamcarts", {"store_id": store["id"]}, expect=201)
        await ana.join(cart["invite_code"])
        ids = await products_of(http, ana, store["id"])
        await ana.add(cart["id"], ids["Gyoza"])
        await hana.call("POST", f"/api/v1/teamcarts/{cart['id']}/lock")
        await cai.sign_in(f"{live_server}/join/{cart['invite_code']}")
        await expect(cai.page.locator("#notice h1")).to_have_text("You can't join this cart")
        notice = cai.page.locator("#notice")
        await expect(notice).to_contain_text("locked its cart and is paying now")
        await expect(notice).to_contain_text("Ask the host to unlock it")
        await cai.no_horizontal_scroll()
        assert cai.page_errors == []


async def test_a_guest_who_leaves_is_told_so_and_may_come_back(
    browser: Browser,
    live_server: str,
    admin_headers: dict[str, str],
    contexts: list[BrowserContext],
    request: pytest.FixtureRequest,
) -> None:
    store = await a_store(live_server, admin_headers, name="Leaving Diner")
    opened, (ana,) = await people_at(browser, PHONE, ARTIFACTS / request.node.name, ("Ana",))
    contexts += opened
    async with httpx.AsyncClient(base_url=live_server, timeout=10) as http:
        hana = await Guest.sign_in(http, "Hana")
        cart = await hana.call("POST", "/api/v1/teamcarts", {"store_id": store["id"]}, expect=201)
        invite = f"{live_server}/join/{cart['invite_code']}"
        await ana.sign_in(invite)
        await ana.add("Gyoza")
        await ana.page.get_by_role("button", name="Leave the cart").click()  # confirmed
        await expect(ana.page.locator("#notice h1")).to_have_text("You left the cart")
        view = await hana.call("GET", f"/api/v1/teamcarts/{cart['id']}")
        assert ([m["display_name"] for m in view["members"]], view["items"]) == (["Hana"], [])
        await ana.page.goto(invite)
        await expect(ana.page.locator("#members > li")).to_have_count(2)
        await expect(ana.page.locator("#conn")).to_have_attribute("data-conn", "live")
        assert ana.page_errors == []
