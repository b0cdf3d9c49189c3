"""What mail says: amounts formatted from integers in the order's currency, and the templates
of every kind (subject naming the order, plain text, autoescaped HTML)."""

from __future__ import annotations

import pytest

from app.mail.rendering import KINDS, SUBJECTS, Templates, format_amount
from domain.errors import UnknownCurrency


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (1234, "USD", "12.34 USD"),
        (5, "USD", "0.05 USD"),
        (0, "USD", "0.00 USD"),
        (123456789, "USD", "1,234,567.89 USD"),
        (-250, "USD", "-2.50 USD"),
        (1200, "JPY", "1,200 JPY"),
        (7, "JPY", "7 JPY"),
        (3250, "KWD", "3.250 KWD"),
        (1, "KWD", "0.001 KWD"),
        (1234567, "KWD", "1,234.567 KWD"),
    ],
)
def test_amounts_are_formatted_with_the_currency_exponent(
    amount: int, currency: str, text: str
) -> None:
    assert format_amount(amount, currency) == text


def test_a_huge_amount_keeps_every_digit() -> None:
    """No float on the way: 10**12 - 1 minor units would lose its last cents as a float."""
    assert format_amount(999_999_999_999_99, "USD") == "999,999,999,999.99 USD"


@pytest.mark.parametrize("amount", [12.34, True, "1234"])
def test_only_integers_are_amounts(amount: object) -> None:
    with pytest.raises(TypeError):
        format_amount(amount, "USD")  # type: ignore[arg-type]


def test_an_unknown_currency_is_refused() -> None:
    with pytest.raises(UnknownCurrency):
        format_amount(100, "XYZ")


render = Templates.load().render


class Line:
    def __init__(self, name: str, options: list[str], quantity: int, total: int) -> None:
        self.name = name
        self.options = options
        self.quantity = quantity
        self.line_total_minor = total


class Order:
    number = "TC-20261202-7KQ2M"
    store_name = "Noodle <b>Bar</b> & Co"
    total_minor = 4560


class Tracking:
    carrier = "DHL"
    tracking_number = "JD0146<000>"
    url = "https://track.example.com/?n=JD0146&x=1"


def context(**changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "name": "Ana <Lima>",
        "order": Order(),
        "my_lines": [Line("Ramen", ["Large", "Egg"], 2, 3000)],
        "my_amount_minor": 3210,
        "my_method": "online",
        "refund_minor": 700,
        "tracking": Tracking(),
        "money": lambda minor: format_amount(minor, "USD"),
    }
    return values | changes


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_renders_with_the_order_number(kind: str) -> None:
    mail = render(kind, Order.number, Order.store_name, context())
    assert Order.number in mail.subject
    assert "\n" not in mail.subject
    assert Order.number in mail.text
    assert Order.number in mail.html
    assert "Hi Ana <Lima>," in mail.text  # plain text is not escaped
    assert "Hi Ana &lt;Lima&gt;," in mail.html  # HTML is
    assert "<b>Bar</b>" not in mail.html
    assert "Noodle &lt;b&gt;Bar&lt;/b&gt; &amp; Co" in mail.html


def test_order_placed_shows_my_lines_my_share_and_the_total() -> None:
    mail = render("order_placed", Order.number, Order.store_name, context())
    assert mail.subject == "Order TC-20261202-7KQ2M placed at Noodle <b>Bar</b> & Co"
    assert "2 x Ramen (Large, Egg): 30.00 USD" in mail.text
    assert "Your share: 32.10 USD (paid online)" in mail.text
    assert "Order total: 45.60 USD" in mail.text
    assert "32.10 USD" in mail.html


def test_order_placed_for_a_host_who_owes_nothing_has_no_share_line() -> None:
    mail = render(
        "order_placed", Order.number, Order.store_name, context(my_lines=[], my_amount_minor=None)
    )
    assert "Your share" not in mail.text
    assert "Your items" not in mail.text
    assert "Order total: 45.60 USD" in mail.text


def test_tracking_is_in_shipping_mail_and_escaped_in_html() -> None:
    for kind in ("order_shipped", "order_out_for_delivery"):
        mail = render(kind, Order.number, Order.store_name, context())
        assert "Carrier: DHL" in mail.text
        assert "Tracking number: JD0146<000>" in mail.text
        assert "https://track.example.com/?n=JD0146&x=1" in mail.text
        assert "JD0146&lt;000&gt;" in mail.html
        assert 'href="https://track.example.com/?n=JD0146&amp;x=1"' in mail.html


def test_tracking_without_url_has_no_link() -> None:
    class NoUrl(Tracking):
        url = None  # type: ignore[assignment]

    mail = render("order_shipped", Order.number, Order.store_name, context(tracking=NoUrl()))
    assert "Track it" not in mail.text
    assert "href" not in mail.html


def test_refund_and_receipt_name_their_amounts() -> None:
    refund = render("refund_issued", Order.number, Order.store_name, context())
    assert "A refund of 7.00 USD" in refund.text
    receipt = render("payment_receipt", Order.number, Order.store_name, context())
    assert "online payment of 32.10 USD" in receipt.text


def test_a_subject_is_one_line_whatever_the_store_is_called() -> None:
    mail = render("order_placed", Order.number, "Noodle\n  Bar", context())
    assert mail.subject == "Order TC-20261202-7KQ2M placed at Noodle Bar"


def test_every_kind_has_a_subject_and_both_templates() -> None:
    assert set(SUBJECTS) == KINDS
    assert {
        "order_placed",
        "payment_receipt",
        "refund_issued",
        "order_shipped",
        "order_out_for_delivery",
        "order_delivered",
    } == KINDS
