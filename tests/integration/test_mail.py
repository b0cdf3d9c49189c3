"""Mail on real PostgreSQL and a real SMTP server (aiosmtpd): planned from order outbox
records once per (event, recipient, kind) whatever replays them, and sent once each, through
SMTP failures, refusals and a server killed mid-batch.

The records are built by hand in the order outbox payload's shape (tests/unit/
test_mail_planning.py), so nothing here depends on the order endpoints. The module has a
database of its own: the session's app runs a mailer too, which would otherwise send these
tests' mail to its own SMTP server.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.mail.catcher import CatchingHandler, MailCatcher, running_catcher
from app.mail.mailer import Mailer
from app.mail.planner import MailPlanner
from app.mail.smtp import SmtpTarget
from app.mail.users import create_user
from app.persistence import schema
from app.persistence.database import create_engine
from app.persistence.outbox import OutboxRecord
from tests.services import fresh_database
from tests.unit.test_mail_planning import order_payload, uid

MAIL_FROM = "TeamCart <orders@teamcart.test>"


@pytest.fixture(scope="module")
def mail_database(postgres_server_url: str) -> Iterator[str]:
    with fresh_database(postgres_server_url) as url:
        schema.upgrade(url)
        yield url


@pytest.fixture(scope="module")
async def db(mail_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(mail_database, pool_size=6)
    yield engine
    await engine.dispose()


@pytest.fixture(autouse=True)
async def no_mail_left(db: AsyncEngine) -> None:
    """Each test starts with no planned mail (its mailers would send what another left)."""
    async with db.begin() as conn:
        await conn.execute(text("DELETE FROM emails"))


@pytest.fixture
def catcher(tmp_path: Path) -> Iterator[MailCatcher]:
    with running_catcher(tmp_path / "caught") as running:
        yield running


def mailer(db: AsyncEngine, catcher: MailCatcher, **options: Any) -> Mailer:
    return Mailer(db, SmtpTarget.from_url(catcher.url), MAIL_FROM, **options)


async def user(db: AsyncEngine, email: str | None, name: str = "Member") -> str:
    user_id = uid()
    await create_user(db, user_id, name, email)
    return user_id


def record(payload: dict[str, Any]) -> OutboxRecord:
    return OutboxRecord(
        id=random.randrange(1, 2**62),
        aggregate_type="order",
        aggregate_id=payload["order"]["id"],
        version=payload["version"],
        event_type=payload["event"],
        payload=json.dumps(payload),
        created_at=datetime.now(UTC),
    )


async def planned(db: AsyncEngine, order_id: str) -> list[dict[str, Any]]:
    async with db.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT user_id::text AS user_id, kind, to_address, subject, text_body, "
                "html_body, status, attempts, last_error, sent_at, next_attempt_at "
                "FROM emails WHERE order_id = CAST(:id AS uuid) ORDER BY kind, to_address"
            ),
            {"id": order_id},
        )
        return [dict(row) for row in rows.mappings()]


async def statuses(db: AsyncEngine) -> collections.Counter[str]:
    async with db.connect() as conn:
        rows = await conn.execute(text("SELECT status FROM emails"))
        return collections.Counter(row[0] for row in rows)


def kinds_by_address(rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(row["to_address"], row["kind"]) for row in rows}


# --- planning --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "ben_share", "ana_line", "total"),
    [
        ("USD", "1,234.56 USD", "1,000.00 USD", "1,334.56 USD"),
        ("JPY", "123,456 JPY", "100,000 JPY", "133,456 JPY"),
        ("KWD", "123.456 KWD", "100.000 KWD", "133.456 KWD"),
    ],
)
async def test_order_placed_plans_each_kind_once_per_recipient_with_amounts_in_its_currency(
    db: AsyncEngine, currency: str, ben_share: str, ana_line: str, total: str
) -> None:
    ana = await user(db, "ana@example.com", "Ana")
    ben = await user(db, "ben@example.com", "Ben")
    cem = await user(db, None, "Cem")  # no address: no mail
    dan = await user(db, "dan@example.com", "Dan")
    payload = order_payload(
        "order_placed",
        host=ana,
        currency=currency,
        payments=[(ana, "cod", 100000 - 90000), (ben, "online", 123456), (cem, "online", 1)],
        lines=[(ana, "Ramen", 2, 100000), (ben, "Gyoza", 1, 123456), (cem, "Tea", 1, 1)],
        total_minor=133456,
    )
    payload["order"]["payments"].append(
        {"user_id": dan, "display_name": "Dan", "method": "cod", "amount_minor": 0}
    )
    wakes: list[None] = []
    planner = MailPlanner(db, wake=lambda: wakes.append(None))

    await planner(record(payload))

    rows = await planned(db, payload["order"]["id"])
    assert kinds_by_address(rows) == {
        ("ana@example.com", "order_placed"),
        ("ben@example.com", "order_placed"),
        ("dan@example.com", "order_placed"),
        ("ben@example.com", "payment_receipt"),
    }
    assert len(rows) == 4
    assert wakes == [None]
    by = {(row["to_address"], row["kind"]): row for row in rows}
    ben_placed = by["ben@example.com", "order_placed"]
    assert ben_placed["subject"] == "Order TC-20261202-7KQ2M placed at Noodle Bar"
    assert f"Your share: {ben_share} (paid online)" in ben_placed["text_body"]
    assert f"Order total: {total}" in ben_placed["text_body"]
    assert "Gyoza" in ben_placed["text_body"]
    assert "Ramen" not in ben_placed["text_body"]  # Ana's line, not Ben's
    assert "Hi Ben," in ben_placed["text_body"]
    assert ben_share in ben_placed["html_body"]
    assert f"1 x Gyoza (Large): {ben_share}" in ben_placed["text_body"]
    assert f"2 x Ramen (Large): {ana_line}" in by["ana@example.com", "order_placed"]["text_body"]
    receipt = by["ben@example.com", "payment_receipt"]
    assert receipt["subject"] == "Payment receipt for order TC-20261202-7KQ2M"
    assert f"online payment of {ben_share}" in receipt["text_body"]
    assert all(row["status"] == "pending" and row["attempts"] == 0 for row in rows)


async def test_a_refund_mail_goes_to_the_refunded_member_with_the_amount(db: AsyncEngine) -> None:
    host = await user(db, "host@example.com")
    ben = await user(db, "ben@example.com")
    planner = MailPlanner(db)
    to_ben = order_payload(
        "order_refunded",
        host=host,
        currency="KWD",
        payments=[(host, "cod", 100), (ben, "online", 5000)],
        refund=(ben, 1250),
    )
    to_host = order_payload(
        "order_refunded",
        host=host,
        currency="JPY",
        payments=[(host, "online", 900)],
        refund=(None, 900),
    )

    await planner(record(to_ben))
    await planner(record(to_host))

    [ben_row] = await planned(db, to_ben["order"]["id"])
    assert (ben_row["to_address"], ben_row["kind"]) == ("ben@example.com", "refund_issued")
    assert ben_row["subject"] == "Refund issued for order TC-20261202-7KQ2M"
    assert "A refund of 1.250 KWD" in ben_row["text_body"]
    [host_row] = await planned(db, to_host["order"]["id"])
    assert (host_row["to_address"], host_row["kind"]) == ("host@example.com", "refund_issued")
    assert "A refund of 900 JPY" in host_row["text_body"]


@pytest.mark.parametrize("event", ["order_shipped", "order_out_for_delivery"])
async def test_shipping_mail_goes_to_every_participant_with_tracking(
    db: AsyncEngine, event: str
) -> None:
    host = await user(db, "host@example.com")
    ben = await user(db, "ben@example.com")
    cem = await user(db, None)
    payload = order_payload(
        event,
        host=host,
        payments=[(ben, "online", 100), (cem, "cod", 100)],
        tracking={"carrier": "DHL", "tracking_number": "JD014600", "url": "https://t.example/1"},
    )

    await MailPlanner(db)(record(payload))

    rows = await planned(db, payload["order"]["id"])
    assert kinds_by_address(rows) == {("host@example.com", event), ("ben@example.com", event)}
    for row in rows:
        assert "TC-20261202-7KQ2M" in row["subject"]
        assert "Carrier: DHL" in row["text_body"]
        assert "Tracking number: JD014600" in row["text_body"]
        assert "https://t.example/1" in row["text_body"]
        assert 'href="https://t.example/1"' in row["html_body"]


async def test_delivered_mail_goes_to_every_participant(db: AsyncEngine) -> None:
    host = await user(db, "host@example.com")
    ben = await user(db, "ben@example.com")
    payload = order_payload("order_delivered", host=host, payments=[(ben, "cod", 100)])

    await MailPlanner(db)(record(payload))

    rows = await planned(db, payload["order"]["id"])
    assert kinds_by_address(rows) == {
        ("host@example.com", "order_delivered"),
        ("ben@example.com", "order_delivered"),
    }
    assert rows[0]["subject"] == "Order TC-20261202-7KQ2M was delivered"


async def test_participants_without_an_address_get_nothing(db: AsyncEngine) -> None:
    host = await user(db, None)
    ben = await user(db, None)
    unknown = uid()  # no users row at all (a token minted before this table existed)
    payload = order_payload(
        "order_placed", host=host, payments=[(ben, "online", 100), (unknown, "online", 1)]
    )
    wakes: list[None] = []

    await MailPlanner(db, wake=lambda: wakes.append(None))(record(payload))

    assert await planned(db, payload["order"]["id"]) == []
    assert wakes == []


@pytest.mark.parametrize(
    "event",
    [
        "order_accepted",
        "order_rejected",
        "order_preparing",
        "order_cancelled",
        "order_payment_updated",
    ],
)
async def test_other_order_events_plan_nothing(db: AsyncEngine, event: str) -> None:
    host = await user(db, "host@example.com")
    payload = order_payload(event, host=host, payments=[(host, "online", 100)])

    await MailPlanner(db)(record(payload))

    assert await planned(db, payload["order"]["id"]) == []


async def test_replaying_a_record_plans_its_mail_once(db: AsyncEngine) -> None:
    host = await user(db, "host@example.com")
    ben = await user(db, "ben@example.com")
    payload = order_payload("order_placed", host=host, payments=[(ben, "online", 700)])
    event = record(payload)
    wakes: list[None] = []
    planner = MailPlanner(db, wake=lambda: wakes.append(None))

    await planner(event)
    await planner(event)

    rows = await planned(db, payload["order"]["id"])
    assert len(rows) == 3  # host and Ben placed, Ben's receipt
    assert wakes == [None]  # the replay inserted nothing, so woke no one


async def test_two_consumers_handling_one_record_at_once_plan_it_once(db: AsyncEngine) -> None:
    """Two processes' dispatchers (or a relay and a sweep) handing over the same row."""
    host = await user(db, "host@example.com")
    members = [await user(db, f"m{n}@example.com") for n in range(5)]
    first, second = MailPlanner(db), MailPlanner(db)
    payloads = [
        order_payload(
            "order_placed", host=host, payments=[(member, "online", 100) for member in members]
        )
        for _ in range(5)
    ]
    for payload in payloads:
        event = record(payload)
        await asyncio.gather(first(event), second(event), first(event))

    for payload in payloads:
        rows = await planned(db, payload["order"]["id"])
        assert len(rows) == 1 + 5 + 5  # everyone placed, each member's receipt
        assert len(kinds_by_address(rows)) == len(rows)


async def test_records_of_other_aggregates_and_unreadable_payloads_are_skipped(
    db: AsyncEngine,
) -> None:
    """Never raised: the dispatcher would retry the row for ever and hold back the order's
    later events."""
    planner = MailPlanner(db)
    host = await user(db, "host@example.com")
    cart = record(order_payload("order_placed", host=host, payments=[(host, "cod", 1)]))
    await planner(
        OutboxRecord(cart.id, "teamcart", cart.aggregate_id, 1, "item_added", "{}", cart.created_at)
    )
    for broken in ("not json", '{"event": "order_placed"}', '{"event": 1, "order": []}'):
        await planner(
            OutboxRecord(uid_int(), "order", uid(), 1, "order_placed", broken, cart.created_at)
        )
    bad_id = order_payload("order_placed", host=host, payments=[(host, "cod", 1)])
    bad_id["order"]["id"] = "not-a-uuid"
    await planner(record(bad_id))
    async with db.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM emails"))).scalar() == 0


def uid_int() -> int:
    return random.randrange(1, 2**62)


# --- sending ---------------------------------------------------------------------------------


async def plan_many(db: AsyncEngine, count: int, *, currency: str = "USD") -> list[str]:
    """``count`` mails planned (order_placed to ``count`` hosts); their addresses."""
    addresses = [f"member{n}-{uid()[:8]}@example.com" for n in range(count)]
    planner = MailPlanner(db)
    for address in addresses:
        host = await user(db, address)
        await planner(
            record(order_payload("order_placed", host=host, currency=currency, payments=[]))
        )
    return addresses


def received(catcher: MailCatcher) -> collections.Counter[tuple[str | None, str]]:
    """How many copies the SMTP server received, per (Message-ID, recipient)."""
    return collections.Counter((mail.message_id, mail.to) for mail in catcher.caught(limit=10_000))


async def test_planned_mail_is_sent_once_as_multipart_text_and_html(
    db: AsyncEngine, catcher: MailCatcher
) -> None:
    addresses = await plan_many(db, 3)
    sender = mailer(db, catcher)

    first = await sender.send_due()
    again = await sender.send_due()

    assert (first.sent, first.failed, first.deferred) == (3, 0, 0)
    assert (again.sent, again.failed, again.deferred) == (0, 0, 0)
    counts = received(catcher)
    assert sorted(to for _, to in counts) == sorted(addresses)
    assert set(counts.values()) == {1}
    assert await statuses(db) == {"sent": 3}
    mail = catcher.caught()[0]
    assert mail.kind == "order_placed"
    assert mail.subject == "Order TC-20261202-7KQ2M placed at Noodle Bar"
    assert "Order total: 0.00 USD" in mail.text
    assert "\r" not in mail.text  # the wire's CRLF line ends undone
    assert "<strong>TC-20261202-7KQ2M</strong>" in (mail.html or "")
    assert (mail.message_id or "").endswith("@teamcart.test>")


async def test_message_headers(db: AsyncEngine, tmp_path: Path) -> None:
    """From, To, the Message-ID made from the row id, multipart/alternative plain + HTML."""
    messages: list[EmailMessage] = []

    class Keeping(CatchingHandler):
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            import email
            import email.policy

            content = envelope.original_content or b""
            assert isinstance(content, bytes)
            message = email.message_from_bytes(content, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            messages.append(message)
            return await super().handle_DATA(server, session, envelope)

    [address] = await plan_many(db, 1)
    with running_catcher(tmp_path, handler=Keeping(tmp_path)) as keeping:
        await mailer(db, keeping).send_due()
    [message] = messages
    async with db.connect() as conn:
        mail_id = (await conn.execute(text("SELECT id::text FROM emails"))).scalar()
    assert message["From"] == MAIL_FROM
    assert message["To"] == address
    assert message["Message-ID"] == f"<{mail_id}@teamcart.test>"
    assert message["X-TeamCart-Kind"] == "order_placed"
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]


class Refusing(CatchingHandler):
    """Refuses some recipients: 550 (for good) or 451 (try later)."""

    def __init__(self, folder: Path, refusals: dict[str, str]) -> None:
        super().__init__(folder)
        self.refusals = refusals

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refusals:
            return self.refusals[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"


async def test_a_refused_recipient_is_failed_and_the_others_still_go(
    db: AsyncEngine, tmp_path: Path
) -> None:
    addresses = await plan_many(db, 5)
    gone, busy = addresses[1], addresses[3]
    handler = Refusing(
        tmp_path, {gone: "550 5.1.1 No such mailbox", busy: "451 4.2.1 Mailbox busy, try later"}
    )
    with running_catcher(tmp_path, handler=handler) as refusing:
        result = await mailer(db, refusing).send_due()
        counts = received(refusing)

    assert (result.sent, result.failed, result.deferred) == (3, 1, 1)
    assert sorted(to for _, to in counts) == sorted(set(addresses) - {gone, busy})
    async with db.connect() as conn:
        rows = {
            row["to_address"]: row
            for row in (
                await conn.execute(
                    text(
                        "SELECT to_address, status, attempts, last_error, sent_at, "
                        "next_attempt_at > now() AS later FROM emails"
                    )
                )
            ).mappings()
        }
    assert rows[gone]["status"] == "failed"
    assert "550" in rows[gone]["last_error"]
    assert rows[gone]["sent_at"] is None
    assert rows[busy]["status"] == "pending"
    assert rows[busy]["attempts"] == 1
    assert "451" in rows[busy]["last_error"]
    assert rows[busy]["later"]  # backed off
    assert all(rows[a]["status"] == "sent" and rows[a]["sent_at"] for a in counts_to(counts))


def counts_to(counts: collections.Counter[tuple[str | None, str]]) -> list[str]:
    return [to for _, to in counts]


async def test_a_refused_sender_defers_every_mail_instead_of_failing_it(
    db: AsyncEngine, tmp_path: Path
) -> None:
    """Our From refused is the configuration's fault, not the mail's: it waits for a fix."""

    class RefusingSender(CatchingHandler):
        async def handle_MAIL(
            self,
            server: SMTP,
            session: Session,
            envelope: Envelope,
            address: str,
            options: list[str],
        ) -> str:
            return "553 5.7.1 Sender address not allowed"

    await plan_many(db, 3)
    with running_catcher(tmp_path, handler=RefusingSender(tmp_path)) as refusing:
        result = await mailer(db, refusing).send_due()

    assert (result.sent, result.failed, result.deferred) == (0, 0, 3)
    assert await statuses(db) == {"pending": 3}


async def test_no_server_defers_every_mail_with_backoff_then_gives_up(
    db: AsyncEngine, tmp_path: Path
) -> None:
    from app.embedded import free_port

    await plan_many(db, 3)
    nowhere = Mailer(db, SmtpTarget("127.0.0.1", free_port()), MAIL_FROM, max_attempts=2)

    first = await nowhere.send_due()
    at_once = await nowhere.send_due()

    assert (first.sent, first.failed, first.deferred) == (0, 0, 3)
    assert (at_once.sent, at_once.failed, at_once.deferred) == (0, 0, 0)  # not due yet
    async with db.begin() as conn:
        rows = (
            (
                await conn.execute(
                    text(
                        "SELECT attempts, last_error, "
                        "extract(epoch FROM next_attempt_at - now()) AS wait FROM emails"
                    )
                )
            )
            .mappings()
            .all()
        )
        assert all(row["attempts"] == 1 and row["last_error"] for row in rows)
        assert all(0 < row["wait"] <= 1.5 for row in rows)  # the first backoff: about 1 s
        await conn.execute(text("UPDATE emails SET next_attempt_at = now()"))

    last = await nowhere.send_due()

    assert (last.sent, last.failed, last.deferred) == (0, 3, 0)
    async with db.connect() as conn:
        errors = (await conn.execute(text("SELECT last_error FROM emails"))).scalars().all()
    assert all(error.startswith("gave up after 2 attempts") for error in errors)


class Hanging(CatchingHandler):
    """Accepts ``accept`` messages, then hangs on the next one's data (never accepting it),
    having said so: the test then kills the server, as if it crashed mid-batch."""

    def __init__(self, folder: Path, accept: int) -> None:
        super().__init__(folder)
        self.accept = accept
        self.accepted = 0
        self.hanging = threading.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.accepted >= self.accept:
            self.hanging.set()
            await asyncio.sleep(3600)
        self.accepted += 1
        return await super().handle_DATA(server, session, envelope)


async def test_killing_the_smtp_server_mid_batch_then_every_mail_is_delivered_exactly_once(
    db: AsyncEngine, tmp_path: Path
) -> None:
    addresses = await plan_many(db, 25)
    folder = tmp_path / "caught"
    hanging = Hanging(folder, accept=7)
    with running_catcher(folder, handler=hanging) as first:
        port = first.controller.port
        sender = mailer(db, first, poll_interval=0.1, smtp_timeout=2)
        async with sender.running():
            assert await asyncio.to_thread(hanging.hanging.wait, 10)
            await asyncio.to_thread(first.stop)  # killed mid-batch
            await asyncio.sleep(0.5)
            mid = await statuses(db)
            assert mid["sent"] == 7
            assert mid["pending"] == 18
            with running_catcher(folder, port=port) as second:
                await wait_for(lambda: statuses(db), {"sent": 25}, seconds=20)
                counts = received(second)

    assert sorted(to for _, to in counts) == sorted(addresses)
    assert set(counts.values()) == {1}  # each (Message-ID, recipient) exactly once


async def wait_for(read: Any, expected: object, *, seconds: float) -> None:
    """Until ``await read()`` is ``expected`` (or fail after ``seconds``)."""
    async with asyncio.timeout(seconds):
        while True:
            value = await read()
            if value == expected:
                return
            await asyncio.sleep(0.1)


async def test_two_mailers_share_the_work_and_send_each_mail_once(
    db: AsyncEngine, catcher: MailCatcher
) -> None:
    """Two processes' mailers: SKIP LOCKED gives each row to one of them."""
    addresses = await plan_many(db, 40)
    first, second = mailer(db, catcher, batch_size=5), mailer(db, catcher, batch_size=5)

    results = await asyncio.gather(first.send_due(), second.send_due(), first.send_due())

    assert sum(result.sent for result in results) == 40
    counts = received(catcher)
    assert sorted(to for _, to in counts) == sorted(addresses)
    assert set(counts.values()) == {1}


async def test_the_planner_wakes_the_mailer_and_polling_finds_the_rest(
    db: AsyncEngine, catcher: MailCatcher
) -> None:
    woken = mailer(db, catcher, poll_interval=30)  # only a wake-up can send within the test
    async with woken.running():
        host = await user(db, "woken@example.com")
        await MailPlanner(db, wake=woken.wake)(
            record(order_payload("order_placed", host=host, payments=[]))
        )
        await wait_for(lambda: statuses(db), {"sent": 1}, seconds=5)
    polling = mailer(db, catcher, poll_interval=0.2)
    async with polling.running():
        other = await user(db, "polled@example.com")
        await MailPlanner(db)(record(order_payload("order_placed", host=other, payments=[])))
        await wait_for(lambda: statuses(db), {"sent": 2}, seconds=5)
    assert sorted(to for _, to in received(catcher)) == ["polled@example.com", "woken@example.com"]
