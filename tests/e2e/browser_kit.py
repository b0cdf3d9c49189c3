"""What the browser tests share: Debian's Chromium driven by Playwright (never a downloaded
browser), people with their own browser contexts, a store to order from, axe-core for the
accessibility checks, and checks of where things sit on the screen.

Importing this module skips the importing test module when no Chromium is installed (outside
CI; in CI it is an error: ``.ci/run`` installs Debian's package).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
LIVE = 2_000  # ms: others' changes must show within 2 s without reloading
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}

AXE_VERSION = "4.10.2"
AXE_CACHE = ROOT / ".cache" / "npm"
"""axe-core comes from the npm registry at test time, into this git-ignored folder."""
NPM_ARGS = ("install", "--prefix", str(AXE_CACHE), "--no-audit", "--no-fund", "--no-save")

if not Path(CHROMIUM).exists():
    if os.environ.get("CI") == "true":
        raise RuntimeError("CI must run the browser tests: .ci/run installs Debian's chromium")
    pytest.skip(
        "no Chromium found: install Debian's package (apt-get install chromium) to run these",
        allow_module_level=True,
    )

from playwright.async_api import (  # noqa: E402
    Browser,
    BrowserContext,
    Locator,
    Page,
    async_playwright,
    expect,
)

__all__ = [
    "ARTIFACTS",
    "DESKTOP",
    "LIVE",
    "MINUS",
    "PHONE",
    "ROOT",
    "ApiMember",
    "Browser",
    "BrowserContext",
    "Locator",
    "Page",
    "Person",
    "a_store",
    "async_playwright",
    "axe_source",
    "axe_violations",
    "expect",
    "launch",
    "money",
    "payment_config",
    "people_at",
    "report",
]


@contextlib.asynccontextmanager
async def launch() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        await chromium.close()


def axe_source() -> str:
    """axe-core's browser bundle, installed from the npm registry on first use."""
    bundle = AXE_CACHE / "node_modules" / "axe-core" / "axe.min.js"
    if not bundle.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed for the accessibility checks (apt-get install npm)")
        AXE_CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, *NPM_ARGS, f"axe-core@{AXE_VERSION}"],
            check=True,
            timeout=180,
            capture_output=True,
        )
    return bundle.read_text()


async def axe_violations(page: Page, source: str) -> list[dict[str, Any]]:
    """Serious and critical WCAG 2.x A/AA violations axe-core finds on the page as it is."""
    if not await page.evaluate("() => typeof window.axe !== 'undefined'"):
        await page.add_script_tag(content=source)
    result: dict[str, Any] = await page.evaluate(
        """async () => axe.run(document, {
             runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa',
                                              'best-practice'] },
             resultTypes: ['violations'] })"""
    )
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]][:5],
        }
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


async def a_store(
    base: str, admin: dict[str, str], *, name: str = "Browser Bistro", **terms: Any
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, headers=admin, timeout=10) as http:
        store: dict[str, Any] = (
            await http.post(
                "/api/v1/stores",
                json={
                    "name": name,
                    "currency": "USD",
                    "delivery_fee_minor": 350,
                    "tax_rate_bps": 900,
                    **terms,
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
                    },
                    {
                        "name": "Spice",
                        "min": 0,
                        "max": 1,
                        "options": [
                            {"name": "Mild", "price_delta_minor": 0},
                            {"name": "Hot", "price_delta_minor": 0},
                        ],
                    },
                ],
            },
            {"name": "Gyoza", "price_minor": 700, "stock": 20, "option_groups": []},
        ):
            created = await http.post(f"/api/v1/stores/{store['id']}/products", json=product)
            assert created.status_code == 201, created.text
    return store


async def payment_config(
    base: str,
    admin: dict[str, str],
    store_id: str,
    *,
    cod: bool = True,
    online: bool = True,
    fee_bps: int = 0,
) -> dict[str, Any]:
    """An admin sets how the store takes payment (``PUT …/payment-config``, ADR 0018)."""
    body = {"cod_enabled": cod, "online_enabled": online, "platform_fee_bps": fee_bps}
    async with httpx.AsyncClient(base_url=base, headers=admin, timeout=10) as http:
        answer = await http.put(f"/api/v1/stores/{store_id}/payment-config", json=body)
    assert answer.status_code == 200, answer.text
    config: dict[str, Any] = answer.json()
    return config


class Person:
    """One person at their own browser (a context of their own: their own session)."""

    def __init__(self, name: str, page: Page, shots: Path) -> None:
        self.name = name
        self.page = page
        self.shots = shots
        self.page_errors: list[str] = []
        self.store_id = ""  # the store a host opens carts for
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("dialog", lambda dialog: dialog.accept())

    async def shot(self, step: str, *, full_page: bool = True) -> None:
        await self.page.screenshot(
            path=str(self.shots / f"{step}-{self.name.lower()}.png"), full_page=full_page
        )

    async def sign_in(self, url: str) -> None:
        await self.page.goto(url)
        await self.page.get_by_label("What should the group call you?").fill(self.name)
        await self.page.get_by_role("button", name="Continue").click()

    def product(self, name: str) -> Locator:
        return self.page.locator(f'.product[data-product-name="{name}"]')

    async def add(self, product: str, *, option: str | None = None, quantity: int = 1) -> None:
        block = self.product(product)
        if option:
            await block.get_by_label(option).check()
        await block.get_by_label(f"Quantity of {product}").fill(str(quantity))
        await block.get_by_role("button", name=f"Add {product}").click()
        await expect(block.locator(".msg")).to_contain_text("Added", timeout=LIVE)

    def member(self, person: Person) -> Locator:
        return self.page.locator(f'#members > li[data-name="{person.name}"]')

    def payment_badge(self, person: Person) -> Locator:
        return self.member(person).locator(".payment")

    async def pay_by_card(self, number: str, *, year: str = "30") -> None:
        await self.page.locator("#pay-online").click()
        card = self.page.locator("#card-element")
        await card.locator("input[placeholder=number]").fill(number)
        await card.locator("input[placeholder=exp_month]").fill("12")
        await card.locator("input[placeholder=exp_year]").fill(year)
        await card.locator("input[placeholder=cvc]").fill("123")
        await card.locator("input[placeholder=postal_code]").fill("12345")
        await self.page.locator("#pay-card").click()

    async def fill_card(self, number: str, *, year: str = "30") -> None:
        """Type a card into the emulator's card element (``#card-element``) already shown."""
        card = self.page.locator("#card-element")
        await card.locator("input[placeholder=number]").fill(number)
        await card.locator("input[placeholder=exp_month]").fill("12")
        await card.locator("input[placeholder=exp_year]").fill(year)
        await card.locator("input[placeholder=cvc]").fill("123")
        await card.locator("input[placeholder=postal_code]").fill("12345")

    async def pay_on_stripe_page(self, number: str, *, email: str = "") -> None:
        """On the Stripe add-on's hosted Checkout page: the card, then Pay."""
        page = self.page
        if email:
            await page.get_by_label("Email").fill(email)
        await page.get_by_label("Card number").fill(number)
        await page.get_by_label("Expiry date (MM / YY)").fill("12 / 30")
        await page.get_by_label("Security code (CVC)").fill("123")
        await page.get_by_role("button", name="Pay").click()

    async def give_address(self, address: dict[str, str]) -> None:
        """The checkout's address step, filled in (the labels a person reads)."""
        page = self.page
        await page.get_by_label("Address", exact=True).fill(address["line1"])
        await page.get_by_label("City").fill(address["city"])
        await page.get_by_label("Postal code").fill(address["postal_code"])
        await page.get_by_label("Country (2 letters)").fill(address["country"])

    async def no_horizontal_scroll(self) -> None:
        widths = await self.page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert widths[0] <= widths[1], (
            f"{self.name}: the page is {widths[0]} px wide in {widths[1]}"
        )

    async def sees_beside(self, message: Locator, control: Locator, *, within: float = 160) -> None:
        """The message is on screen, whole (not under the sticky bar), and within ``within``
        px of the control that caused it."""
        await expect(message).to_be_visible()
        await expect(message).to_be_in_viewport(ratio=1)
        box = await message.bounding_box()
        near = await control.bounding_box()
        assert box is not None
        assert near is not None
        bar = await self.page.evaluate(
            """() => { const b = document.getElementById('my-bar');
                       if (!b || getComputedStyle(b).display === 'none') return innerHeight;
                       return b.getBoundingClientRect().top; }"""
        )
        assert box["y"] >= 0
        assert box["y"] + box["height"] <= bar + 1, (
            f"{self.name}: message at y={box['y']:.0f}..{box['y'] + box['height']:.0f}, "
            f"sticky bar from {bar:.0f}"
        )
        gap = max(
            0.0,
            box["y"] - (near["y"] + near["height"]),
            near["y"] - (box["y"] + box["height"]),
        )
        assert gap <= within, f"{self.name}: message {gap:.0f} px from its control"


class ApiMember:
    """A member acting through the HTTP API (what they do reaches the browsers live), or
    the API as a person in a browser would call it, with that browser's session."""

    def __init__(self, http: httpx.AsyncClient, name: str, user_id: str, token: str) -> None:
        self.http = http
        self.name = name
        self.user_id = user_id
        self.headers = {"Authorization": f"Bearer {token}"}

    @classmethod
    async def sign_in(cls, http: httpx.AsyncClient, name: str) -> ApiMember:
        response = await http.post("/api/v1/sessions", json={"display_name": name})
        assert response.status_code == 201, response.text
        body = response.json()
        return cls(http, name, body["user_id"], body["token"])

    @classmethod
    async def of(cls, http: httpx.AsyncClient, person: Person) -> ApiMember:
        """The session of ``person``'s browser."""
        user_id, token = await person.page.evaluate(
            """() => [localStorage.getItem('teamcart.user_id'),
                      localStorage.getItem('teamcart.token')]"""
        )
        return cls(http, person.name, user_id, token)

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

    async def products(self, store_id: str) -> dict[str, str]:
        """The store's product ids by name."""
        listed = await self.call("GET", f"/api/v1/stores/{store_id}/products")
        return {product["name"]: product["id"] for product in listed["items"]}


MINUS = "\N{MINUS SIGN}"
"""What the page puts before an amount taken off (a minus sign, not a hyphen)."""


def money(minor: int) -> str:
    """An amount in USD cents as the page shows it (en-US): 1234 → "$12.34"."""
    sign = MINUS if minor < 0 else ""
    return f"{sign}${abs(minor) // 100:,}.{abs(minor) % 100:02d}"


def fresh_folder(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


async def people_at(
    browser: Browser, viewport: dict[str, int], shots: Path, names: tuple[str, ...]
) -> tuple[list[BrowserContext], list[Person]]:
    fresh_folder(shots)
    contexts = [await browser.new_context(viewport=viewport) for _ in names]  # type: ignore[arg-type]
    people = []
    for name, context in zip(names, contexts, strict=True):
        page = await context.new_page()
        page.set_default_timeout(10_000)
        people.append(Person(name, page, shots))
    return contexts, people


def report(name: str, figures: dict[str, Any]) -> None:
    """Measured figures: printed (``-s`` shows them) and kept in test-artifacts/browser/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\n{name}: {json.dumps(figures)}")
