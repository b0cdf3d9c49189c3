"""Group payment options over HTTP, PostgreSQL and the Stripe emulator: the host pays for
everyone, an allowance, a spending limit, covering a member, removing one after another paid,
and Stripe's minimum charge."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.integration.test_group_flow import ADDRESS
from tests.integration.test_online_payments import VISA, pay_with_card, wait_for_payment
from tests.integration.test_order_lifecycle import a_store, member

pytestmark = pytest.mark.usefixtures("live_server")


@pytest.fixture
async def http(live_server: str) -> Any:
    async with httpx.AsyncClient(base_url=live_server, timeout=15) as client:
        yield client


async def a_cart(
    http: httpx.AsyncClient,
    admin: dict[str, str],
    prices: dict[str, int],
    *,
    fee: int = 300,
    stock: int | None = None,
) -> tuple[str, dict[str, dict[str, str]], str]:
    """An open cart of the host and guests named in ``prices`` (each adds one item of that
    price, through their own product); its URL, the people, and the product of the last."""
    store = await a_store(http, admin)
    people: dict[str, dict[str, str]] = {}
    host = await member(http, "Host")
    people["Host"] = host
    cart = (
        await http.post("/api/v1/teamcarts", json={"store_id": store["id"]}, headers=host)
    ).json()
    url = f"/api/v1/teamcarts/{cart['id']}"
    product_id = ""
    for name, price in prices.items():
        product = await http.post(
            f"/api/v1/stores/{store['id']}/products",
            json={"name": name, "price_minor": price, "stock": stock, "option_groups": []},
            headers=admin,
        )
        product_id = product.json()["id"]
        person = people.get(name) or await member(http, name)
        people[name] = person
        if name != "Host":
            joined = await http.post(
                "/api/v1/teamcarts/join", json={"invite_code": cart["invite_code"]}, headers=person
            )
            assert joined.status_code == 200, joined.text
        added = await http.post(
            url + "/items", json={"product_id": product_id, "quantity": 1}, headers=person
        )
        assert added.status_code == 201, added.text
    return url, people, product_id


def owes(view: dict[str, Any], people: dict[str, dict[str, str]]) -> dict[str, int]:
    by_id = {p["X-User-Id"]: name for name, p in people.items()}
    return {by_id[m["user_id"]]: m["owes_minor"] for m in view["members"]}


async def ready(http: httpx.AsyncClient, url: str, host: dict[str, str]) -> dict[str, Any]:
    for _ in range(100):
        view: dict[str, Any] = (await http.get(url, headers=host)).json()
        if view["status"] == "ready_to_confirm":
            return view
        await asyncio.sleep(0.05)
    raise AssertionError(f"the cart stayed {view['status']}")


async def test_the_host_pays_for_everyone_and_the_order_has_one_payment(
    http: httpx.AsyncClient, admin_headers: dict[str, str], stripe_api_base: str
) -> None:
    url, people, _ = await a_cart(http, admin_headers, {"Host": 1000, "Ana": 2000, "Ben": 1500})
    host = people["Host"]
    mode = await http.put(url + "/payment-mode", json={"mode": "host_pays"}, headers=host)
    assert (mode.status_code, mode.json()["payment_mode"]) == (200, "host_pays")
    locked = (await http.post(url + "/lock", headers=host)).json()
    amounts = owes(locked, people)
    assert amounts == {"Host": locked["total_minor"], "Ana": 0, "Ben": 0}
    nothing = await http.post(url + "/payments/cod", headers=people["Ana"])
    assert nothing.json()["code"] == "nothing_owed"
    started = (await http.post(url + "/payments/online", headers=host)).json()
    assert started["amount_minor"] == locked["total_minor"]
    assert await pay_with_card(stripe_api_base, started["payment_intent_id"], VISA) == "succeeded"
    await ready(http, url, host)
    confirmed = await http.post(url + "/confirm", json={"delivery_address": ADDRESS}, headers=host)
    assert confirmed.status_code == 201, confirmed.text
    order = (await http.get(f"/api/v1/orders/{confirmed.json()['order_id']}", headers=host)).json()
    assert [(p["display_name"], p["amount_minor"]) for p in order["payments"]] == [
        ("Host", locked["total_minor"])
    ]


async def test_an_allowance_charges_each_guest_their_share_less_it(
    http: httpx.AsyncClient, admin_headers: dict[str, str], stripe_api_base: str
) -> None:
    url, people, _ = await a_cart(http, admin_headers, {"Host": 1000, "Ana": 2000, "Ben": 800})
    host = people["Host"]
    assert (
        await http.put(url + "/allowance", json={"amount_minor": 1000}, headers=host)
    ).is_success
    view = (await http.post(url + "/lock", headers=host)).json()
    shares = {m["user_id"]: m["share_minor"] for m in view["members"]}
    amounts = owes(view, people)
    for name in ("Ana", "Ben"):
        assert amounts[name] == max(0, shares[people[name]["X-User-Id"]] - 1000)
    assert sum(amounts.values()) == view["total_minor"]
    for name in ("Ana", "Ben"):
        if amounts[name] == 0:
            continue
        started = (await http.post(url + "/payments/online", headers=people[name])).json()
        assert started["amount_minor"] == amounts[name]  # exactly share - allowance
        assert (
            await pay_with_card(stripe_api_base, started["payment_intent_id"], VISA) == "succeeded"
        )
        await wait_for_payment(http, url, host, people[name]["X-User-Id"], "paid_online")
    assert (await http.post(url + "/payments/cod", headers=host)).is_success
    await ready(http, url, host)


async def test_a_spending_limit_refuses_a_guest_past_it(
    http: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    url, people, product = await a_cart(http, admin_headers, {"Ana": 900})
    host = people["Host"]
    assert (
        await http.put(url + "/spending-limit", json={"amount_minor": 2000}, headers=host)
    ).is_success
    more = await http.post(
        url + "/items", json={"product_id": product, "quantity": 2}, headers=people["Ana"]
    )
    assert more.status_code == 409
    assert (more.json()["code"], more.json()["limit_minor"]) == ("over_spending_limit", 2000)
    one = await http.post(
        url + "/items", json={"product_id": product, "quantity": 1}, headers=people["Ana"]
    )
    assert one.status_code == 201  # 1800 in all


async def test_removing_a_member_after_another_paid_keeps_what_they_paid(
    http: httpx.AsyncClient, admin_headers: dict[str, str], stripe_api_base: str
) -> None:
    url, people, ben_product = await a_cart(
        http, admin_headers, {"Host": 1000, "Ana": 2000, "Ben": 3000}, stock=5
    )
    host = people["Host"]
    view = (await http.post(url + "/lock", headers=host)).json()
    ana_owes = owes(view, people)["Ana"]
    started = (await http.post(url + "/payments/online", headers=people["Ana"])).json()
    assert await pay_with_card(stripe_api_base, started["payment_intent_id"], VISA) == "succeeded"
    await wait_for_payment(http, url, host, people["Ana"]["X-User-Id"], "paid_online")
    store_id = view["store_id"]

    removed = await http.delete(f"{url}/members/{people['Ben']['X-User-Id']}", headers=host)
    assert removed.status_code in (200, 204), removed.text
    after = (await http.get(url, headers=host)).json()
    assert owes(after, {k: v for k, v in people.items() if k != "Ben"})["Ana"] == ana_owes
    assert sum(m["owes_minor"] for m in after["members"]) == after["total_minor"]
    products = (await http.get(f"/api/v1/stores/{store_id}/products", headers=host)).json()
    assert next(p for p in products["items"] if p["id"] == ben_product)["stock"] == 5  # back
    assert (await http.post(url + "/payments/cod", headers=host)).is_success
    view = await ready(http, url, host)
    assert view["status"] == "ready_to_confirm"
    paid = next(m for m in view["members"] if m["user_id"] == people["Ana"]["X-User-Id"])
    assert paid["payment"]["amount_minor"] == ana_owes

    committed = await http.delete(f"{url}/members/{people['Ana']['X-User-Id']}", headers=host)
    assert committed.status_code == 409  # a member who paid stays


async def test_cover_and_the_minimum_charge(
    http: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    url, people, _ = await a_cart(http, admin_headers, {"Host": 5000, "Ana": 20}, fee=0)
    host = people["Host"]
    view = (await http.post(url + "/lock", headers=host)).json()
    assert 0 < owes(view, people)["Ana"] < 50
    tiny = await http.post(url + "/payments/online", headers=people["Ana"])
    assert tiny.status_code == 422
    assert (tiny.json()["code"], tiny.json()["minimum_minor"]) == ("below_online_minimum", 50)
    covered = await http.post(f"{url}/members/{people['Ana']['X-User-Id']}/cover", headers=host)
    assert covered.status_code == 200, covered.text
    amounts = owes(covered.json(), people)
    assert amounts == {"Host": covered.json()["total_minor"], "Ana": 0}
    assert next(m for m in covered.json()["members"] if m["owes_minor"] == 0)["covered"]
    assert (await http.post(url + "/payments/cod", headers=host)).is_success
    await ready(http, url, host)


async def test_a_rotated_invite_stops_the_old_link_and_the_qr_code_carries_the_new_one(
    http: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    url, people, _ = await a_cart(http, admin_headers, {"Ana": 900})
    host = people["Host"]
    old_code = (await http.get(url, headers=host)).json()["invite_code"]
    refused = await http.post(url + "/invite/rotate", headers=people["Ana"])
    assert refused.status_code == 403
    rotated = await http.post(url + "/invite/rotate", headers=host)
    assert rotated.status_code == 200, rotated.text
    new_code = rotated.json()["invite_code"]
    assert new_code != old_code
    late = await member(http, "Late")
    stale = await http.post("/api/v1/teamcarts/join", json={"invite_code": old_code}, headers=late)
    assert stale.status_code == 404
    fresh = await http.post("/api/v1/teamcarts/join", json={"invite_code": new_code}, headers=late)
    assert fresh.status_code == 200
    qr = await http.get(url + "/invite.svg", headers=people["Ana"])
    assert qr.status_code == 200
    assert qr.headers["content-type"].startswith("image/svg+xml")
    assert qr.text.lstrip().startswith("<svg")
    assert "Invite link" in qr.text
    stranger = await member(http, "Stranger")
    assert (await http.get(url + "/invite.svg", headers=stranger)).status_code == 403


async def intent_status(api_base: str, intent_id: str) -> tuple[str, int]:
    """The intent's status at the emulator, and how many refunds it has."""
    async with httpx.AsyncClient(base_url=api_base, auth=("sk_test_x", ""), timeout=10) as api:
        intent = (await api.get(f"/v1/payment_intents/{intent_id}")).json()
        refunds = (await api.get("/v1/refunds", params={"payment_intent": intent_id})).json()
    return intent["status"], len(refunds.get("data", []))


async def held_cart(
    http: httpx.AsyncClient, admin: dict[str, str], api_base: str
) -> tuple[str, dict[str, dict[str, str]], list[str]]:
    """A capture-on-confirm cart of three whose cards are all authorised: it is ready."""
    store = await a_store(http, admin)
    product = await http.post(
        f"/api/v1/stores/{store['id']}/products",
        json={"name": "Bowl", "price_minor": 1500, "option_groups": []},
        headers=admin,
    )
    people = {name: await member(http, name) for name in ("Host", "Ana", "Ben")}
    host = people["Host"]
    cart = await http.post(
        "/api/v1/teamcarts",
        json={"store_id": store["id"], "capture": "on_confirm"},
        headers=host,
    )
    assert cart.json()["capture"] == "on_confirm"
    url = f"/api/v1/teamcarts/{cart.json()['id']}"
    for name, person in people.items():
        if name != "Host":
            await http.post(
                "/api/v1/teamcarts/join",
                json={"invite_code": cart.json()["invite_code"]},
                headers=person,
            )
        await http.post(
            url + "/items", json={"product_id": product.json()["id"], "quantity": 1}, headers=person
        )
    assert (await http.post(url + "/lock", headers=host)).is_success
    intents = []
    for person in people.values():
        started = (await http.post(url + "/payments/online", headers=person)).json()
        assert (
            await pay_with_card(api_base, started["payment_intent_id"], VISA) == "requires_capture"
        )
        await wait_for_payment(http, url, host, person["X-User-Id"], "authorized")
        intents.append(started["payment_intent_id"])
    await ready(http, url, host)
    return url, people, intents


async def test_cards_held_until_confirm_are_all_captured_at_confirm(
    http: httpx.AsyncClient, admin_headers: dict[str, str], stripe_api_base: str
) -> None:
    url, people, intents = await held_cart(http, admin_headers, stripe_api_base)
    for intent in intents:
        assert (await intent_status(stripe_api_base, intent))[0] == "requires_capture"
    confirmed = await http.post(
        url + "/confirm", json={"delivery_address": ADDRESS}, headers=people["Host"]
    )
    assert confirmed.status_code == 201, confirmed.text
    for intent in intents:
        assert await intent_status(stripe_api_base, intent) == ("succeeded", 0)
    order = (
        await http.get(f"/api/v1/orders/{confirmed.json()['order_id']}", headers=people["Ana"])
    ).json()
    assert {p["status"] for p in order["payments"]} == {"paid_online"}
    await asyncio.sleep(0.5)  # the captures' webhooks change nothing more
    assert (await http.get(url, headers=people["Host"])).json()["status"] == "converted"


async def test_a_cancelled_cart_releases_its_holds_without_a_refund(
    http: httpx.AsyncClient, admin_headers: dict[str, str], stripe_api_base: str
) -> None:
    url, people, intents = await held_cart(http, admin_headers, stripe_api_base)
    cancelled = await http.post(url + "/cancel", headers=people["Host"])
    assert cancelled.status_code == 200, cancelled.text
    for intent in intents:
        assert await intent_status(stripe_api_base, intent) == ("canceled", 0)
    view = cancelled.json()
    assert {m["payment"]["status"] for m in view["members"]} == {"none"}
