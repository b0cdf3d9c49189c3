"""Money as integer minor units of an ISO 4217 currency.

Every amount in TeamCart is a whole number of the currency's minor unit (cents for USD, yen for
JPY, fils for KWD). How many decimals a currency has comes from the table below, never from the
amount. ``Money`` refuses floats, booleans and mixing currencies, so a rounding slip or a
currency mix-up fails loudly instead of charging someone the wrong amount.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Self

from domain.errors import CurrencyMismatch, UnknownCurrency

# Number of decimal places of each supported currency's minor unit (ISO 4217).
_EXPONENTS: Mapping[str, int] = MappingProxyType(
    {
        **dict.fromkeys(
            [
                "USD",
                "EUR",
                "GBP",
                "CAD",
                "AUD",
                "CHF",
                "SEK",
                "NOK",
                "DKK",
                "PLN",
                "CZK",
                "HUF",
                "MXN",
                "BRL",
                "INR",
                "CNY",
                "HKD",
                "SGD",
                "NZD",
                "ZAR",
            ],
            2,
        ),
        **dict.fromkeys(["JPY", "KRW", "VND", "CLP", "PYG", "UGX", "XAF", "XOF", "ISK"], 0),
        **dict.fromkeys(["KWD", "BHD", "JOD", "OMR", "TND", "IQD", "LYD"], 3),
    }
)
# ISK has no minor unit in ISO 4217, so it is listed with 0 here. Payment providers that use
# another convention (Stripe sends ISK with two decimals) convert at their own boundary.

SUPPORTED_CURRENCIES: frozenset[str] = frozenset(_EXPONENTS)


def exponent(currency: str) -> int:
    """How many decimal places the currency's minor unit has; ``UnknownCurrency`` if unlisted."""
    try:
        return _EXPONENTS[currency]
    except (KeyError, TypeError):
        raise UnknownCurrency(f"Unknown currency {currency!r}.") from None


def is_whole_number(value: object) -> bool:
    """True for ``int`` values that are not ``bool`` (which Python treats as an int)."""
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Money:
    """An amount of one currency in minor units. Negative amounts are allowed (differences)."""

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if not is_whole_number(self.amount_minor):
            raise TypeError(
                f"Money needs an int amount of minor units, got {type(self.amount_minor).__name__}"
            )
        exponent(self.currency)

    @classmethod
    def zero(cls, currency: str) -> Self:
        return cls(0, currency)

    @property
    def exponent(self) -> int:
        return _EXPONENTS[self.currency]

    def to_decimal_string(self) -> str:
        """The amount in major units, e.g. ``Money(1234, "USD")`` -> ``"12.34"``."""
        digits = self.exponent
        sign = "-" if self.amount_minor < 0 else ""
        major, minor = divmod(abs(self.amount_minor), 10**digits)
        if digits == 0:
            return f"{sign}{major}"
        return f"{sign}{major}.{minor:0{digits}d}"

    def _same_currency(self, other: "Money") -> None:
        if self.currency != other.currency:
            raise CurrencyMismatch(f"Cannot combine {self.currency} with {other.currency}.")

    def __add__(self, other: object) -> "Money":
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: object) -> "Money":
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount_minor < other.amount_minor

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount_minor <= other.amount_minor

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount_minor > other.amount_minor

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount_minor >= other.amount_minor

    def __str__(self) -> str:
        return f"{self.to_decimal_string()} {self.currency}"
