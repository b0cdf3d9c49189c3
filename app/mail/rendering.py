"""What a mail says: amounts in the order's currency, and the templates that word each kind.

Amounts are integers of the currency's minor unit and are formatted from the integers, with the
currency's own number of decimals (``domain.money.exponent``: JPY 0, USD 2, KWD 3), never
through a float. Subjects are short format strings here, each naming the order number; the
bodies are Jinja2 templates in ``templates/``, ``<kind>.txt`` and ``<kind>.html``, the HTML
ones autoescaped (a store or dish name is whatever an admin typed). :class:`Templates` is
loaded once, by the wiring (the planner holds it), and renders with ``StrictUndefined``: a
misspelt field fails loudly in the tests instead of mailing a blank.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final

import jinja2

from domain.money import exponent, is_whole_number

TEMPLATES: Final = Path(__file__).parent / "templates"

SUBJECTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "order_placed": "Order {number} placed at {store}",
        "payment_receipt": "Payment receipt for order {number}",
        "refund_issued": "Refund issued for order {number}",
        "order_shipped": "Order {number} has shipped",
        "order_out_for_delivery": "Order {number} is out for delivery",
        "order_delivered": "Order {number} was delivered",
    }
)
"""The subject of each kind of order mail (API.md § Email). ``reminder`` is about a cart, not
an order, and words its own subject (``app.mail.reminders``)."""

KINDS: Final = frozenset(SUBJECTS)


def format_amount(amount_minor: int, currency: str) -> str:
    """``1234, "USD"`` → ``"12.34 USD"``; ``1200, "JPY"`` → ``"1,200 JPY"``; ``3250, "KWD"``
    → ``"3.250 KWD"``. Digits grouped by thousands. An unknown currency raises
    ``UnknownCurrency``, a float or bool ``TypeError``: a mail never guesses an amount."""
    if not is_whole_number(amount_minor):
        raise TypeError(f"an amount in minor units must be an int, got {amount_minor!r}")
    digits = exponent(currency)
    sign = "-" if amount_minor < 0 else ""
    major, minor = divmod(abs(amount_minor), 10**digits)
    fraction = f".{minor:0{digits}d}" if digits else ""
    return f"{sign}{major:,}{fraction} {currency}"


@dataclass(frozen=True, slots=True)
class RenderedMail:
    subject: str
    text: str
    html: str


@dataclass(frozen=True, slots=True)
class Templates:
    """The two template environments: plain text (not escaped: it is not markup) and HTML
    (autoescaped). Each keeps the templates it has compiled, so build it once."""

    text: jinja2.Environment
    html: jinja2.Environment

    @classmethod
    def load(cls, folder: Path = TEMPLATES) -> Templates:
        return cls(
            text=_environment(folder, autoescape=False),
            html=_environment(folder, autoescape=True),
        )

    def render(
        self, kind: str, number: str, store_name: str, context: Mapping[str, object]
    ) -> RenderedMail:
        """The subject, text and HTML of one mail of ``kind`` (one of :data:`KINDS`)."""
        subject = SUBJECTS[kind].format(number=number, store=store_name)
        return RenderedMail(
            subject=" ".join(subject.split()),  # one header line, whatever the store is called
            text=self.text.get_template(f"{kind}.txt").render(context),
            html=self.html.get_template(f"{kind}.html").render(context),
        )


def _environment(folder: Path, *, autoescape: bool) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        autoescape=autoescape,  # noqa: S701 - on for HTML; plain text is not markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
