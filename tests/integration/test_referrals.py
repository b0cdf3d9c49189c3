"""Referrals end to end on the served app, PostgreSQL and the Stripe emulator: codes, a code
fixed on a cart at its creation, a group order and a single-payer order accruing, approved on
delivery and paid by an admin, refunds reversing pro rata, a cancel voiding, self-referrals
by user, email and card refused with their reasons, and the reports (JSON and CSV).

The served app has the default terms: 500 bps, no minimum, 20 a day."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from typing import Any

import httpx
import pytest

from app.config import Settings
from tests.integration.test_checkout import a_product, order_of, ready_cart, sign_up
from tests.integration.test_group_flow import ADDRESS
from tests.integration.test_online_payments import VISA, pay_with_card, wait_for_payment
from tests.integration.test_order_lifecycle import a_store, member, staff_of

pytestmark = pytest.mark.usefixtures("live_server")

MASTERCARD = "5555555555554444"
VISA_DEBIT = "4000056655665556"


@pytest.fixture
async def http(live_server: str) -> Any:
    async with httpx.AsyncClient(base_url=live_server, timeout=15) as client:
        yield client


async def code_of(http: httpx.AsyncClient, who: dict[str, str]) -> str:
    answer = await http.post("/api/v1/referral-codes", headers=who)
    assert answer.status_code == 201, answer.text
    code: str = answer.json()["code"]
    return code


async def decisions(
    http: httpx.AsyncClient, admin: dict[str, str], subject: str, *, until: str | None = None
) -> list[dict[str, Any]]:
    """The decision log about ``subject`` once it has a line (``until``: of that decision)."""
    for _ in range(100):
        answer = await http.get("/api/v1/admin/audit", params={"subject": subject}, headers=admin)
        assert answer.status_code == 200, answer.text
        items: list[dict[str, Any]] = answer.json()["items"]
        if items and (until is None or any(i["decision"] == until for i in items)):
            return items
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {until or 'decision'} about {subject}")


async def report(http: httpx.AsyncClient, who: dict[str, str], **params: str) -> dict[str, Any]:
    answer = await http.get("/api/v1/referrals/report", params=params, headers=who)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def group_order(
    http: httpx.AsyncClient,
    admin: dict[str, str],
    api_base: str,
    *,
    host: dict[str, str],
    code: str | None,
    online: dict[str, str] | None = None,
    card: str = VISA,
) -> dict[str, Any]:
    """A confirmed group order at a new store: the host opens the cart (with ``code``) and
    commits to cash; ``online`` (if any) joins and pays with ``card``."""
    store = await a_store(http, admin)
    product = await a_product(http, admin, store["id"], price=1200, stock=None)
    opened = await http.post(
        "/api/v1/teamcarts",
        json={"store_id": store["id"], **({"referral_code": code} if code else {})},
        headers=host,
    )
    assert opened.status_code == 201, opened.text
    cart = opened.json()
    url = f"/api/v1/teamcarts/{cart['id']}"
    people = [host, *([online] if online else [])]
    for person in people:
        if person is not host:
            joined = await http.post(
                "/api/v1/teamcarts/join", json={"invite_code": cart["invite_code"]}, headers=person
            )
            assert joined.status_code == 200, joined.text
        added = await http.post(
            url + "/items", json={"product_id": product["id"], "quantity": 1}, headers=person
        )
        assert added.status_code == 201, added.text
    assert (await http.post(url + "/lock", headers=host)).status_code == 200
    assert (await http.post(url + "/payments/cod", headers=host)).status_code == 200
    if online:
        started = (await http.post(url + "/payments/online", headers=online)).json()
        assert await pay_with_card(api_base, started["payment_intent_id"], card) == "succeeded"
        await wait_for_payment(http, url, host, online["X-User-Id"], "paid_online")
    for _ in range(100):
        if (await http.get(url, headers=host)).json()["status"] == "ready_to_confirm":
            break
        await asyncio.sleep(0.05)
    confirmed = await http.post(url + "/confirm", json={"delivery_address": ADDRESS}, headers=host)
    assert confirmed.status_code == 201, confirmed.text
    order: dict[str, Any] = (
        await http.get(f"/api/v1/orders/{confirmed.json()['order_id']}", headers=host)
    ).json()
    return order


async def test_a_referral_code_is_the_callers_own_and_the_same_every_time(
    http: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    rita, bo = await member(http, "Rita"), await member(http, "Bo")
    codes = await asyncio.gather(*(code_of(http, rita) for _ in range(5)))  # at once, too
    assert len(set(codes)) == 1
    code = codes[0]
    assert len(code) == 8
    assert code.isalnum()
    assert code.upper() == code
    assert await code_of(http, rita) == code
    assert await code_of(http, bo) != code
    assert (await http.post("/api/v1/referral-codes")).status_code == 401

    store = await a_store(http, admin_headers)
    unknown = await http.post(
        "/api/v1/teamcarts", json={"store_id": store["id"], "referral_code": "ZZZZ9999"}, headers=bo
    )
    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["code"] == "unknown_referral_code"
    for bad in ("", "no", "x" * 40, "bad\ncode"):
        refused = await http.post(
            "/api/v1/carts", json={"store_id": store["id"], "referral_code": bad}, headers=bo
        )
        assert refused.status_code == 400, (bad, refused.text)
    typed = "-".join((code[:4].lower(), code[4:]))  # as a person might type it
    opened = await http.post(
        "/api/v1/teamcarts", json={"store_id": store["id"], "referral_code": typed}, headers=bo
    )
    assert opened.status_code == 201, opened.text


async def test_a_referred_group_order_is_pending_then_approved_on_delivery_then_paid(
    http: httpx.AsyncClient,
    admin_headers: dict[str, str],
    stripe_api_base: str,
    settings: Settings,
) -> None:
    rita = await member(http, "Rita")
    code = await code_of(http, rita)
    host, ana = await member(http, "Host"), await member(http, "Ana")
    order = await group_order(
        http, admin_headers, stripe_api_base, host=host, code=code, online=ana
    )
    assert order["subtotal_minor"] == 2400
    log = await decisions(http, admin_headers, order["id"])
    assert [(i["decision"], i["subject"]) for i in log] == [("accrued", order["id"])]
    assert "500 bps" in log[0]["reason"]

    mine = await report(http, rita)
    assert mine["commission_bps"] == 500
    [row] = [r for r in mine["rows"] if r["order_id"] == order["id"]]
    assert (row["amount_minor"], row["status"], row["referrer_user_id"]) == (
        120,
        "pending",
        rita["X-User-Id"],
    )
    assert mine["totals"]["pending_minor"] == 120
    assert mine["totals"]["count"] == 1
    assert (await report(http, host))["rows"] == []  # the host referred nobody

    staff = staff_of(settings, order["store_id"])
    pay_url = f"/api/v1/admin/commissions/{row['commission_id']}/pay"
    early = await http.post(pay_url, headers=admin_headers)
    assert early.status_code == 409, early.text
    assert early.json()["code"] == "commission_not_payable"
    for to in ("accepted", "preparing", "out_for_delivery", "delivered"):
        moved = await http.post(
            f"/api/v1/orders/{order['id']}/transitions", json={"to": to}, headers=staff
        )
        assert moved.status_code == 200, moved.text
    for _ in range(100):
        if (await report(http, rita))["totals"]["approved_minor"] == 120:
            break
        await asyncio.sleep(0.05)
    assert (await report(http, rita))["totals"]["pending_minor"] == 0

    assert (await http.post(pay_url, headers=rita)).status_code == 403
    paid = await http.post(pay_url, headers=admin_headers)
    assert paid.status_code == 200, paid.text
    assert (paid.json()["status"], paid.json()["paid_at"] is not None) == ("paid", True)
    again = await http.post(pay_url, headers=admin_headers)
    assert again.json() == paid.json()
    assert (await report(http, rita))["totals"]["paid_minor"] == 120
    missing = await http.post(
        f"/api/v1/admin/commissions/{uuid.uuid4()}/pay", headers=admin_headers
    )
    assert missing.status_code == 404
    assert [i["decision"] for i in await decisions(http, admin_headers, rita["X-User-Id"])] == [
        "accrued"
    ]


async def test_refunds_reverse_a_single_payer_commission_pro_rata_and_a_cancel_voids_one(
    http: httpx.AsyncClient,
    admin_headers: dict[str, str],
    stripe_api_base: str,
    settings: Settings,
) -> None:
    rita = await member(http, "Rita")
    code = await code_of(http, rita)
    store = await a_store(http, admin_headers, name="Bagels")
    bagel = await a_product(http, admin_headers, store["id"], price=1000, stock=None)
    buyer = await sign_up(http, "Bea")
    opened = await http.post(
        "/api/v1/carts", json={"store_id": store["id"], "referral_code": code}, headers=buyer
    )
    assert opened.status_code == 201, opened.text
    url = await ready_cart(http, buyer, store["id"], bagel["id"], 3)  # the same cart again
    assert url.endswith(opened.json()["id"])
    started = (await http.post(url + "/checkout", json={}, headers=buyer)).json()
    assert await pay_with_card(stripe_api_base, started["payment_intent_id"], VISA) == "succeeded"
    order = await order_of(http, buyer, started["order_id"], "placed")
    assert (order["subtotal_minor"], order["total_minor"]) == (3000, 3300)
    await decisions(http, admin_headers, order["id"], until="accrued")

    staff = staff_of(settings, store["id"])
    for amount in (1100, 550):  # a third of the total, then a sixth
        refunded = await http.post(
            f"/api/v1/orders/{order['id']}/refunds",
            json={"amount_minor": amount, "user_id": buyer["X-User-Id"]},
            headers=staff,
        )
        assert refunded.status_code == 201, refunded.text
    log = await decisions(http, admin_headers, order["id"], until="reversed")
    for _ in range(100):
        log = await decisions(http, admin_headers, order["id"])
        if sum(1 for i in log if i["decision"] == "reversed") == 2:
            break
        await asyncio.sleep(0.05)
    reversed_ = [i for i in log if i["decision"] == "reversed"]
    assert [i["amount_minor"] for i in reversed_] == [50, 25]  # 150 x 1100/3300, then to 1650
    [row] = [r for r in (await report(http, rita))["rows"] if r["order_id"] == order["id"]]
    assert (row["amount_minor"], row["reversed_minor"], row["status"]) == (150, 75, "pending")

    # A second order of the same buyer, cancelled by the store: its commission is void.
    again = await http.post(
        "/api/v1/carts", json={"store_id": store["id"], "referral_code": code}, headers=buyer
    )
    url = await ready_cart(http, buyer, store["id"], bagel["id"], 1)
    assert url.endswith(again.json()["id"])
    started = (await http.post(url + "/checkout", json={}, headers=buyer)).json()
    assert await pay_with_card(stripe_api_base, started["payment_intent_id"], VISA) == "succeeded"
    second = await order_of(http, buyer, started["order_id"], "placed")
    await decisions(http, admin_headers, second["id"], until="accrued")
    cancelled = await http.post(
        f"/api/v1/orders/{second['id']}/cancel", json={"reason": "sold out"}, headers=staff
    )
    assert cancelled.status_code == 200, cancelled.text
    log = await decisions(http, admin_headers, second["id"], until="voided")
    assert [i["decision"] for i in log] == ["accrued", "voided"]
    totals = (await report(http, rita))["totals"]
    assert totals == {
        "pending_minor": 150,
        "approved_minor": 0,
        "paid_minor": 0,
        "void_minor": 50,
        "reversed_minor": 75,
        "count": 2,
    }


async def test_self_referrals_are_refused_by_user_by_email_and_by_card(
    http: httpx.AsyncClient, admin_headers: dict[str, str], stripe_api_base: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    rita = await member(http, "Rita", f"rita.{tag}@example.com")
    code = await code_of(http, rita)

    own = await group_order(http, admin_headers, stripe_api_base, host=rita, code=code)
    [line] = await decisions(http, admin_headers, own["id"])
    assert (line["decision"], line["reason"]) == (
        "self_referral",
        "the referrer is on the order (its host, buyer or a payer)",
    )

    alias = await member(http, "R.", f"Rita.{tag}+lunch@Example.com")  # her inbox
    by_email = await group_order(http, admin_headers, stripe_api_base, host=alias, code=code)
    [line] = await decisions(http, admin_headers, by_email["id"])
    assert line["decision"] == "self_referral"
    assert "email" in line["reason"]

    # Rita pays an order of her own with her card; then "a friend" pays with the same card.
    mine = await group_order(
        http,
        admin_headers,
        stripe_api_base,
        host=await member(http, "Host"),
        code=None,
        online=rita,
        card=MASTERCARD,
    )
    assert [i["decision"] for i in await decisions(http, admin_headers, mine["id"])] == ["no_code"]
    friend, other = await member(http, "Friend"), await member(http, "Other")
    by_card = await group_order(
        http, admin_headers, stripe_api_base, host=friend, code=code, online=other, card=MASTERCARD
    )
    [line] = await decisions(http, admin_headers, by_card["id"])
    assert (line["decision"], line["reason"]) == (
        "self_referral",
        "a card the referrer paid with paid this order",
    )
    fair = await group_order(
        http, admin_headers, stripe_api_base, host=friend, code=code, online=other, card=VISA_DEBIT
    )
    assert [i["decision"] for i in await decisions(http, admin_headers, fair["id"])] == ["accrued"]
    lines = await decisions(http, admin_headers, rita["X-User-Id"])
    assert sorted(i["decision"] for i in lines) == [
        "accrued",
        "self_referral",
        "self_referral",
        "self_referral",
    ]


async def test_an_admin_reads_every_referrer_also_as_csv_and_by_period(
    http: httpx.AsyncClient, admin_headers: dict[str, str], stripe_api_base: str
) -> None:
    rita, sam = await member(http, "Rita"), await member(http, "Sam")
    orders = [
        await group_order(
            http, admin_headers, stripe_api_base, host=await member(http, "H"), code=code
        )
        for code in (await code_of(http, rita), await code_of(http, sam))
    ]
    for order in orders:
        await decisions(http, admin_headers, order["id"], until="accrued")
    everyone = await report(http, admin_headers)
    referrers = {r["referrer_user_id"] for r in everyone["rows"]}
    assert {rita["X-User-Id"], sam["X-User-Id"]} <= referrers
    assert everyone["totals"]["count"] == len(everyone["rows"])
    assert sum(t["totals"]["count"] for t in everyone["by_currency"]) == len(everyone["rows"])

    answer = await http.get(
        "/api/v1/referrals/report", headers={**admin_headers, "Accept": "text/csv"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(answer.text)))
    assert [row["commission_id"] for row in table] == [r["commission_id"] for r in everyone["rows"]]
    assert table[0].keys() >= {"commission_id", "referrer_user_id", "order_id", "amount_minor"}

    [today] = {r["created_at"][:10] for r in everyone["rows"][-2:]}
    that_day = await report(http, admin_headers, **{"from": today, "to": today})
    assert {o["id"] for o in orders} <= {r["order_id"] for r in that_day["rows"]}
    before = await report(http, admin_headers, to="2000-01-01")
    assert before["rows"] == []
    assert before["totals"]["count"] == 0
    since = await report(http, rita, **{"from": f"{today}T00:00:00Z"})
    assert [r["order_id"] for r in since["rows"]] == [orders[0]["id"]]
    for bad in (
        {"from": "yesterday"},
        {"to": "2026-13-01"},
        {"from": "2026-12-02", "to": "2026-12-01"},
        {"to": "9999-12-31"},  # the day after is past what a datetime holds
        {"from": "9999-12-31T23:59:59-23:59"},  # and so is this moment in UTC
    ):
        refused = await http.get("/api/v1/referrals/report", params=bad, headers=rita)
        assert refused.status_code in {400, 422}, (bad, refused.text)
    assert (await http.get("/api/v1/admin/audit", headers=rita)).status_code == 403
    recent = await http.get("/api/v1/admin/audit", headers=admin_headers)
    assert recent.status_code == 200
    assert recent.json()["items"]
