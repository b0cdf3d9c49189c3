"""What a reminder mail says: the deadline in UTC (with its date when not today), the amount
owed in the cart's currency, the member's and store's names escaped in HTML; and its id,
fixed by the reminder's claim key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.mail.reminders import ReminderMail, reminder_mail_id, render_reminder, when
from app.mail.rendering import Templates
from domain.errors import UnknownCurrency

templates = Templates.load()
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
DEADLINE = datetime(2026, 12, 2, 12, 30, tzinfo=UTC)


def mail(**changes: object) -> ReminderMail:
    values: dict[str, object] = {
        "what": "ready",
        "name": "Ana <Lima>",
        "store_name": "Noodle <b>Bar</b> & Co",
        "deadline": DEADLINE,
        "amount_minor": 1234,
        "currency": "USD",
    }
    return ReminderMail(**(values | changes))  # type: ignore[arg-type]


def test_ready_says_when_the_cart_closes() -> None:
    rendered = render_reminder(templates, mail(), NOW)
    assert rendered.subject == "The cart closes at 12:30 UTC — mark yourself ready"
    assert "Hi Ana <Lima>," in rendered.text  # plain text is not escaped
    assert "closes at 12:30 UTC" in rendered.text
    assert "Mark yourself ready" in rendered.text
    assert "12.34 USD" not in rendered.text
    assert "Hi Ana &lt;Lima&gt;," in rendered.html
    assert "Noodle &lt;b&gt;Bar&lt;/b&gt; &amp; Co" in rendered.html
    assert "<b>Bar</b>" not in rendered.html


def test_pay_names_the_amount_in_the_carts_currency() -> None:
    rendered = render_reminder(templates, mail(what="pay"), NOW)
    assert rendered.subject == "Pay your share of 12.34 USD before 12:30 UTC"
    assert "Pay your share of 12.34 USD" in rendered.text
    assert "12.34 USD" in rendered.html
    yen = render_reminder(templates, mail(what="pay", amount_minor=1200, currency="JPY"), NOW)
    assert yen.subject == "Pay your share of 1,200 JPY before 12:30 UTC"


def test_times_are_in_utc_with_the_date_when_not_today() -> None:
    assert when(DEADLINE, NOW) == "12:30 UTC"
    an_hour_east = DEADLINE.astimezone(timezone(timedelta(hours=1)))
    assert when(an_hour_east, NOW) == "12:30 UTC"
    tomorrow = DEADLINE + timedelta(days=1)
    assert when(tomorrow, NOW) == "12:30 UTC on 2026-12-03"


def test_an_unknown_currency_is_not_guessed() -> None:
    with pytest.raises(UnknownCurrency):
        render_reminder(templates, mail(what="pay", currency="XYZ"), NOW)


def test_a_reminders_id_is_its_claim_key() -> None:
    cart, user = "0b7c3a52-6f1e-4a8e-9d2c-1f3e5a7b9c0d", "9f8e7d6c-5b4a-4321-8fed-cba987654321"
    same = reminder_mail_id(cart, user, "pay", DEADLINE)
    assert same == reminder_mail_id(
        cart, user, "pay", DEADLINE.astimezone(timezone(timedelta(hours=2)))
    )
    assert same != reminder_mail_id(cart, user, "ready", DEADLINE)
    assert same != reminder_mail_id(cart, user, "pay", DEADLINE + timedelta(minutes=1))
