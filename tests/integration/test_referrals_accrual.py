"""The accrual consumer on real PostgreSQL with outbox records nobody else dispatches.

Two apps (two server processes) share a fresh database and make real orders over HTTP, paid
through the Stripe emulator; neither runs its lifespan, so no dispatcher takes their outbox
records. The tests deliver the records themselves, to consumers on engines of their own (two
processes again), in storms of duplicates at once, out of order, and with terms of their own:
the minimum order and velocity guards through SQL, a second placing as a duplicate, an
earlier event first, each commission accrued once whatever the storm; and the decision log
refusing to change.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import random
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import issue_token
from app.config import Settings
from app.payments.gateway import StripeGateway
from app.persistence import schema
from app.persistence.database import create_engine
from app.persistence.outbox import OutboxRecord
from app.referrals.accrual import HANDLED_EVENTS, EarlierEventFirst, ReferralAccrual
from app.referrals.reports import write_report
from app.wiring import create_app
from domain.referrals import Terms
from tests.integration.test_checkout import intent_event
from tests.integration.test_group_flow import ADDRESS
from tests.integration.test_online_payments import VISA, pay_with_card
from tests.services import fresh_database
from tests.stripe_events import body_and_headers

TEAMCART = str(Path(sys.executable).parent / "teamcart")
TERMS = Terms(commission_bps=1000, minimum_minor={"USD": 2000}, velocity_per_day=2)


@pytest.fixture(scope="module")
def referral_database(postgres_server_url: str) -> Iterator[str]:
    with fresh_database(postgres_server_url) as url:
        schema.upgrade(url)
        yield url


@pytest.fixture(scope="module")
def own_settings(settings: Settings, referral_database: str) -> Settings:
    return settings.replace(database_url=referral_database)


@pytest.fixture(scope="module")
async def apps(own_settings: Settings) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Two apps on the database, serving requests with no lifespan (httpx's ASGI transport
    never starts one): nothing dispatches their outbox records."""
    built = [create_app(own_settings), create_app(own_settings)]
    clients = [
        # httpx types its ASGI app narrower than Litestar's __call__ (the same protocol).
        httpx.AsyncClient(transport=httpx.ASGITransport(app=cast(Any, app)), base_url="http://t")
        for app in built
    ]
    yield clients
    for client, app in zip(clients, built, strict=True):
        await client.aclose()
        await resources_of(app).close()


def resources_of(app: Litestar) -> Any:
    return app.state["resources"]


@pytest.fixture(scope="module")
async def engines(referral_database: str) -> AsyncIterator[list[AsyncEngine]]:
    """Each consumer's own engine: two processes' pools."""
    made = [create_engine(referral_database, pool_size=5) for _ in range(2)]
    yield made
    for engine in made:
        await engine.dispose()


@pytest.fixture(scope="module")
async def gateway(own_settings: Settings) -> AsyncIterator[StripeGateway]:
    assert own_settings.stripe_secret_key is not None
    made = StripeGateway(own_settings.stripe_secret_key, api_base=own_settings.stripe_api_base)
    yield made
    await made.close()


def admin(settings: Settings) -> dict[str, str]:
    assert settings.jwt_secret is not None
    token = issue_token(settings.jwt_secret, display_name="Admin", admin=True).token
    return {"Authorization": f"Bearer {token}"}


async def person(http: httpx.AsyncClient, name: str) -> dict[str, str]:
    answer = await http.post("/api/v1/sessions", json={"display_name": name})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return {"Authorization": f"Bearer {body['token']}", "X-User-Id": body["user_id"]}


async def a_store_with(http: httpx.AsyncClient, settings: Settings, price: int) -> tuple[str, str]:
    store = await http.post(
        "/api/v1/stores",
        json={"name": "Deli", "currency": "USD", "delivery_fee_minor": 300, "tax_rate_bps": 0},
        headers=admin(settings),
    )
    assert store.status_code == 201, store.text
    product = await http.post(
        f"/api/v1/stores/{store.json()['id']}/products",
        json={"name": "Soup", "price_minor": price, "stock": None, "option_groups": []},
        headers=admin(settings),
    )
    assert product.status_code == 201, product.text
    return store.json()["id"], product.json()["id"]


async def cash_order(
    http: httpx.AsyncClient, settings: Settings, code: str | None, *, price: int
) -> str:
    """A group order of one host paying cash, at a new store; its id."""
    store_id, product_id = await a_store_with(http, settings, price)
    host = await person(http, "Host")
    cart = await http.post(
        "/api/v1/teamcarts",
        json={"store_id": store_id, **({"referral_code": code} if code else {})},
        headers=host,
    )
    assert cart.status_code == 201, cart.text
    url = f"/api/v1/teamcarts/{cart.json()['id']}"
    added = await http.post(
        url + "/items", json={"product_id": product_id, "quantity": 1}, headers=host
    )
    assert added.status_code == 201, added.text
    assert (await http.post(url + "/lock", headers=host)).status_code == 200
    assert (await http.post(url + "/payments/cod", headers=host)).status_code == 200
    confirmed = await http.post(url + "/confirm", json={"delivery_address": ADDRESS}, headers=host)
    assert confirmed.status_code == 201, confirmed.text
    order_id: str = confirmed.json()["order_id"]
    return order_id


async def records_of(engine: AsyncEngine, order_ids: Sequence[str]) -> list[OutboxRecord]:
    async with engine.connect() as conn:
        found = await conn.execute(
            text(
                "SELECT id, aggregate_type, aggregate_id::text AS aggregate_id, version, "
                "event_type, payload::text AS payload, created_at FROM outbox "
                "WHERE aggregate_type = 'order' AND aggregate_id::text = ANY(:ids) ORDER BY id"
            ),
            {"ids": list(order_ids)},
        )
        return [OutboxRecord(**row._mapping) for row in found]


async def deliver(consumer: ReferralAccrual, record: OutboxRecord) -> None:
    """As the dispatcher does: again, later, while an earlier event must come first."""
    for _ in range(200):
        try:
            await consumer(record)
        except EarlierEventFirst:
            await asyncio.sleep(0.01)
        else:
            return
    raise AssertionError(f"record {record.id} was never consumed")


async def rows(engine: AsyncEngine, query: str, **params: object) -> list[Any]:
    async with engine.connect() as conn:
        return list(await conn.execute(text(query), params))


async def code_for(http: httpx.AsyncClient) -> tuple[dict[str, str], str]:
    referrer = await person(http, "Rita")
    answer = await http.post("/api/v1/referral-codes", headers=referrer)
    assert answer.status_code == 201, answer.text
    return referrer, answer.json()["code"]


async def accrual_decisions(engine: AsyncEngine, order_id: str) -> list[str]:
    found = await rows(
        engine, "SELECT decision FROM audit WHERE subject = :s ORDER BY id", s=order_id
    )
    return [row.decision for row in found]


async def test_a_storm_of_duplicate_deliveries_by_two_processes_accrues_each_commission_once(
    apps: list[httpx.AsyncClient],
    engines: list[AsyncEngine],
    gateway: StripeGateway,
    own_settings: Settings,
    stripe_api_base: str,
) -> None:
    """Real orders: a single-payer order paid by card through the emulator (its webhook
    posted many times to both apps at once), then partly refunded by the store; a group
    order paid in cash. Every outbox record of theirs is then delivered eight times, shuffled,
    half to each of two consumers, all at once."""
    first, second = apps
    _, code = await code_for(first)
    store_id, product_id = await a_store_with(first, own_settings, 2500)
    buyer = await person(second, "Bea")
    cart = await second.post(
        "/api/v1/carts", json={"store_id": store_id, "referral_code": code}, headers=buyer
    )
    assert cart.status_code == 201, cart.text
    url = f"/api/v1/carts/{cart.json()['id']}"
    await second.post(url + "/items", json={"product_id": product_id, "quantity": 2}, headers=buyer)
    await second.put(url + "/address", json=ADDRESS, headers=buyer)
    await second.put(url + "/delivery", json={"method": "delivery"}, headers=buyer)
    started = await second.post(url + "/checkout", json={}, headers=buyer)
    assert started.status_code == 201, started.text
    intent_id, single = started.json()["payment_intent_id"], started.json()["order_id"]
    assert await pay_with_card(stripe_api_base, intent_id, VISA) == "succeeded"
    storm = [intent_event("succeeded", intent_id, single, 5300)] * 3 + [
        intent_event("succeeded", intent_id, single, 5300) for _ in range(3)
    ]  # the same event again and again, and other events of the same capture
    answers = await asyncio.gather(
        *(
            http.post("/api/v1/webhooks/stripe", content=body, headers=headers)
            for evt in storm
            for http in apps
            for body, headers in [body_and_headers(evt)]
        )
    )
    assert {a.status_code for a in answers} == {200}
    staff = {
        "Authorization": "Bearer "
        + issue_token(own_settings.jwt_secret or "", display_name="S", staff_of=store_id).token
    }
    refund = await first.post(
        f"/api/v1/orders/{single}/refunds", json={"amount_minor": 1325}, headers=staff
    )
    assert refund.status_code == 201, refund.text
    group = await cash_order(first, own_settings, code, price=3000)

    records = await records_of(engines[0], [single, group])
    handled = [r for r in records if r.event_type in {"order_placed", "order_refunded"}]
    assert [r.event_type for r in handled].count("order_placed") == 2  # placed once each
    consumers = [ReferralAccrual(engine, gateway, TERMS) for engine in engines]
    deliveries = [record for record in records for _ in range(8)]
    random.Random(19).shuffle(deliveries)
    await asyncio.gather(
        *(deliver(consumers[n % 2], record) for n, record in enumerate(deliveries))
    )

    commissions = await rows(
        engines[1],
        "SELECT order_id::text AS order_id, amount_minor, reversed_minor, status "
        "FROM commissions WHERE order_id::text = ANY(:ids)",
        ids=[single, group],
    )
    assert sorted(
        (c.order_id, c.amount_minor, c.reversed_minor, c.status) for c in commissions
    ) == sorted(
        [(single, 500, 125, "pending"), (group, 300, 0, "pending")]
    )  # 10 % of 5000, less a quarter refunded; 10 % of 3000
    assert await accrual_decisions(engines[0], single) == ["accrued", "reversed"]
    assert await accrual_decisions(engines[0], group) == ["accrued"]
    consumed = await rows(
        engines[0],
        "SELECT count(*) AS n FROM referral_consumed WHERE order_id::text = ANY(:ids)",
        ids=[single, group],
    )
    assert consumed[0].n == sum(1 for r in records if r.event_type in HANDLED_EVENTS)
    reversals = await rows(engines[0], "SELECT amount_minor FROM commission_reversals")
    assert [r.amount_minor for r in reversals] == [125]
    cards = await rows(
        engines[0],
        "SELECT user_id::text AS user_id FROM referral_fingerprints WHERE order_id = :o",
        o=single,
    )
    assert [c.user_id for c in cards] == [buyer["X-User-Id"]]  # the card Bea paid with


async def test_the_minimum_order_and_the_days_limit_are_counted_in_the_database(
    apps: list[httpx.AsyncClient],
    engines: list[AsyncEngine],
    gateway: StripeGateway,
    own_settings: Settings,
) -> None:
    http = apps[0]
    _, code = await code_for(http)
    small = await cash_order(http, own_settings, code, price=1500)  # under USD 20.00
    big = [await cash_order(http, own_settings, code, price=2000) for _ in range(3)]
    consumer = ReferralAccrual(engines[0], gateway, TERMS)
    for record in await records_of(engines[0], [small, *big]):
        await deliver(consumer, record)
    assert await accrual_decisions(engines[0], small) == ["below_minimum"]
    assert [await accrual_decisions(engines[0], o) for o in big] == [
        ["accrued"],
        ["accrued"],
        ["velocity"],  # the third of the day, past two a day
    ]
    [line] = await rows(engines[0], "SELECT reason FROM audit WHERE subject = :s", s=big[2])
    assert "at most 2 a day" in line.reason

    # The same orders under terms without either guard would have accrued: the guards did it.
    _, other = await code_for(http)
    more = [await cash_order(http, own_settings, other, price=1500) for _ in range(3)]
    lenient = ReferralAccrual(
        engines[1], gateway, replace(TERMS, minimum_minor={}, velocity_per_day=0)
    )
    for record in await records_of(engines[1], more):
        await deliver(lenient, record)
    assert [await accrual_decisions(engines[1], o) for o in more] == [["accrued"]] * 3


async def test_a_second_placing_is_a_duplicate_and_an_earlier_event_comes_first(
    apps: list[httpx.AsyncClient],
    engines: list[AsyncEngine],
    gateway: StripeGateway,
    own_settings: Settings,
) -> None:
    http = apps[1]
    _, code = await code_for(http)
    order_id = await cash_order(http, own_settings, code, price=2500)
    staff_token = issue_token(own_settings.jwt_secret or "", display_name="S", admin=True).token
    cancelled = await http.post(
        f"/api/v1/orders/{order_id}/cancel",
        json={"reason": "closed"},
        headers={"Authorization": f"Bearer {staff_token}"},
    )
    assert cancelled.status_code == 200, cancelled.text
    placed, cancel = await records_of(engines[0], [order_id])
    assert (placed.event_type, cancel.event_type) == ("order_placed", "order_cancelled")
    consumer = ReferralAccrual(engines[0], gateway, TERMS)
    with pytest.raises(EarlierEventFirst):
        await consumer(cancel)  # the cancel can't be applied before the placing was
    assert await accrual_decisions(engines[0], order_id) == []
    await consumer(placed)
    await consumer(cancel)
    assert await accrual_decisions(engines[0], order_id) == ["accrued", "voided"]

    again = replace(placed, id=placed.id + 10_000_000, version=placed.version + 10)
    await consumer(again)
    await consumer(again)  # replayed: logged once
    assert await accrual_decisions(engines[0], order_id) == ["accrued", "voided", "duplicate"]
    found = await rows(engines[0], "SELECT status FROM commissions WHERE order_id = :o", o=order_id)
    assert [c.status for c in found] == ["void"]


async def test_an_unreadable_record_is_skipped_and_others_are_not_for_referrals(
    engines: list[AsyncEngine], gateway: StripeGateway
) -> None:
    consumer = ReferralAccrual(engines[0], gateway, TERMS)
    base = OutboxRecord(
        id=987_654_321,
        aggregate_type="order",
        aggregate_id=str(uuid.uuid4()),
        version=1,
        event_type="order_placed",
        payload='{"event": "order_placed", "order": {"id": "not-a-uuid"}}',
        created_at=datetime.now(UTC),
    )
    await consumer(base)
    await consumer(replace(base, payload="{not json"))
    await consumer(replace(base, aggregate_type="teamcart"))
    await consumer(replace(base, event_type="order_accepted"))
    assert (
        await rows(engines[0], "SELECT 1 FROM referral_consumed WHERE outbox_id = 987654321") == []
    )


async def test_the_decision_log_refuses_to_be_changed(engines: list[AsyncEngine]) -> None:
    async with engines[0].begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO audit (subject, decision, reason) "
                "VALUES ('append-only-test', 'no_code', 'written once')"
            )
        )
    for statement in (
        "UPDATE audit SET reason = 'rewritten' WHERE subject = 'append-only-test'",
        "DELETE FROM audit WHERE subject = 'append-only-test'",
        "TRUNCATE audit",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with engines[0].begin() as conn:
                await conn.execute(text(statement))
    [line] = await rows(engines[0], "SELECT reason FROM audit WHERE subject = 'append-only-test'")
    assert line.reason == "written once"
    with pytest.raises(DBAPIError, match="ix_audit_one_accrual_decision"):
        async with engines[0].begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO audit (subject, decision, reason) "
                    "VALUES ('append-only-test', 'accrued', 'a second decision')"
                )
            )


async def test_the_report_command_reads_in_batches_and_says_how_far_it_got(
    apps: list[httpx.AsyncClient],
    engines: list[AsyncEngine],
    gateway: StripeGateway,
    own_settings: Settings,
    referral_database: str,
) -> None:
    """``teamcart referrals report`` in a child process, as CSV and as totals; and the
    batches and their progress of the report it writes, three commissions at a time."""
    http = apps[0]
    referrer, code = await code_for(http)
    made = [await cash_order(http, own_settings, code, price=2000 + n) for n in range(2)]
    consumer = ReferralAccrual(engines[0], gateway, TERMS)
    for record in await records_of(engines[0], made):
        await deliver(consumer, record)
    env = {
        **os.environ,
        "TEAMCART_DATABASE_URL": referral_database,
        "TEAMCART_REFERRAL_COMMISSION_BPS": "1000",
    }

    def teamcart(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TEAMCART, "referrals", "report", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    as_csv = await asyncio.to_thread(teamcart, "--csv")
    assert as_csv.returncode == 0, as_csv.stderr
    table = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    mine = [row for row in table if row["referrer_user_id"] == referrer["X-User-Id"]]
    assert sorted((row["order_id"], row["amount_minor"]) for row in mine) == sorted(
        [(made[0], "200"), (made[1], "200")]  # 10 % of 2000 and of 2001, half to even
    )
    assert f"{len(table)} commission(s)" in as_csv.stderr
    totals = await asyncio.to_thread(teamcart)
    assert totals.returncode == 0, totals.stderr
    lines = [json.loads(line) for line in totals.stdout.splitlines()]
    [line] = [item for item in lines if item["referrer_user_id"] == referrer["X-User-Id"]]
    assert (line["currency"], line["totals"]["pending_minor"], line["totals"]["count"]) == (
        "USD",
        400,
        2,
    )
    refused = await asyncio.to_thread(teamcart, "--from", "last week")
    assert refused.returncode == 2
    assert "--from" in refused.stderr

    told: list[tuple[int, int]] = []
    out = io.StringIO()
    read = await write_report(
        engines[0],
        out,
        as_csv=True,
        start=None,
        end=None,
        progress=lambda done, total: told.append((done, total)),
        batch=3,
    )
    assert read == len(table)
    total = len(table)
    assert told == [(min(n, total), total) for n in range(3, total + 3, 3)]  # batch by batch
    assert out.getvalue().replace("\r\n", "\n") == as_csv.stdout.replace("\r\n", "\n")
