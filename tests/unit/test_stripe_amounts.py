"""Stripe's minor units: one table, tested against the cases its currency docs name."""

from __future__ import annotations

import pytest

from app.payments.amounts import stripe_exponent, to_stripe


@pytest.mark.parametrize(
    ("amount_minor", "currency", "expected"),
    [
        (1050, "USD", 1050),  # $10.50: ISO and Stripe agree
        (1050, "EUR", 1050),
        (500, "JPY", 500),  # zero-decimal: ¥500
        (15000, "KRW", 15000),
        (25000, "VND", 25000),
        (1990, "CLP", 1990),
        (1200, "ISK", 120000),  # ISO has no minor unit; Stripe wants two decimals
        (12345, "HUF", 12345),  # two-decimal for charges
        (1230, "KWD", 1230),  # three decimals, already a multiple of ten
        (1234, "KWD", 1230),  # rounded half-even to a multiple of ten
        (1235, "BHD", 1240),  # half → even tens digit (124)
        (1245, "JOD", 1240),  # half → even tens digit (124)
        (1246, "OMR", 1250),
    ],
)
def test_to_stripe(amount_minor: int, currency: str, expected: int) -> None:
    assert to_stripe(amount_minor, currency) == expected


def test_lower_case_codes_are_accepted() -> None:
    assert to_stripe(500, "jpy") == 500
    assert stripe_exponent("isk") == 2


def test_a_currency_stripe_would_truncate_is_refused() -> None:
    with pytest.raises(ValueError, match="IQD"):
        to_stripe(1234, "IQD")
