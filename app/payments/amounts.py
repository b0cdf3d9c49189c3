"""Amounts as Stripe wants them, which is not always ISO 4217's minor unit.

Stripe's currency docs list the special cases:

- zero-decimal currencies (JPY, KRW, VND, …) are sent as whole units, as ISO has them;
- ISK is zero-decimal in ISO 4217 but Stripe takes it with two decimals (times 100), and the
  amount must be a whole number of krónur;
- three-decimal currencies (BHD, JOD, KWD, OMR, TND) are sent in thousandths, but the last
  digit must be 0: the amount is rounded (half-even) to a multiple of 10;
- HUF and TWD are two-decimal for charges (as ISO) and only special for payouts.

``to_stripe`` is what we charge; a webhook's amount is compared with ``to_stripe`` of the
share owed, never converted back, so no rounding is ever hidden.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from domain.money import exponent

ZERO_DECIMAL = frozenset(
    "BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split()  # noqa: SIM905
)
THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())  # noqa: SIM905


def stripe_exponent(currency: str) -> int:
    """How many decimals Stripe's ``amount`` has for ``currency``."""
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def to_stripe(amount_minor: int, currency: str) -> int:
    """Our integer minor units (ISO exponent) → Stripe's ``amount`` for the same money."""
    code = currency.upper()
    shift = stripe_exponent(code) - exponent(code)
    if shift < 0:  # e.g. IQD: Stripe would drop digits we charge for
        raise ValueError(f"Stripe cannot charge {code} amounts to the minor unit")
    amount = amount_minor * int(10**shift)
    if code in THREE_DECIMAL:
        amount = _divide_half_even(amount, 10) * 10
    return amount


def _divide_half_even(amount: int, divisor: int) -> int:
    quotient, remainder = divmod(amount, divisor)
    twice = 2 * remainder
    if twice > divisor or (twice == divisor and quotient % 2 == 1):
        quotient += 1
    return quotient


def from_stripe(amount: int, currency: str) -> int:
    """Stripe's amount back in our minor units (rounded down), for money we give back or a
    capture we compare: ``to_stripe(from_stripe(a)) == a`` says the conversion was exact."""
    shift = stripe_exponent(currency) - exponent(currency.upper())
    return amount // int(10 ** max(shift, 0))


MINIMUM_CHARGE_MINOR: Mapping[str, int] = MappingProxyType(
    {
        "USD": 50,
        "AED": 200,
        "AUD": 50,
        "BGN": 100,
        "BRL": 50,
        "CAD": 50,
        "CHF": 50,
        "CZK": 1500,
        "DKK": 250,
        "EUR": 50,
        "GBP": 30,
        "HKD": 400,
        "HUF": 17500,
        "INR": 50,
        "JPY": 50,
        "MXN": 1000,
        "MYR": 200,
        "NOK": 300,
        "NZD": 50,
        "PLN": 200,
        "RON": 200,
        "SEK": 300,
        "SGD": 50,
        "THB": 1000,
    }
)
"""Stripe's minimum charge amount by settlement currency (its docs, "Minimum and maximum
charge amounts"), in our minor units: USD $0.50, GBP £0.30, JPY ¥50, HUF 175 Ft, … A share
below it can't be paid online. For a currency Stripe doesn't list, its minimum is whatever
comes to about $0.50 after conversion, which we can't know here: ``None``, no check."""


def minimum_charge(currency: str) -> int | None:
    """Stripe's smallest charge in ``currency`` (our minor units), if it names one."""
    return MINIMUM_CHARGE_MINOR.get(currency.upper())
