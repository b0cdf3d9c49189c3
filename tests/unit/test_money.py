from collections.abc import Callable

import pytest

from domain import errors
from domain.money import SUPPORTED_CURRENCIES, Money, exponent


@pytest.mark.parametrize(
    ("currency", "digits"),
    [("USD", 2), ("EUR", 2), ("JPY", 0), ("KRW", 0), ("ISK", 0), ("KWD", 3), ("BHD", 3)],
)
def test_exponent_comes_from_the_iso_table(currency: str, digits: int) -> None:
    assert exponent(currency) == digits


TWO_DECIMALS = "USD EUR GBP CAD AUD CHF SEK NOK DKK PLN CZK HUF MXN BRL INR CNY HKD SGD NZD ZAR"
NO_DECIMALS = "JPY KRW VND CLP PYG UGX XAF XOF ISK"
THREE_DECIMALS = "KWD BHD JOD OMR TND IQD LYD"


@pytest.mark.parametrize(
    ("currencies", "digits"), [(TWO_DECIMALS, 2), (NO_DECIMALS, 0), (THREE_DECIMALS, 3)]
)
def test_table_covers_the_required_currencies(currencies: str, digits: int) -> None:
    for currency in currencies.split():
        assert currency in SUPPORTED_CURRENCIES
        assert exponent(currency) == digits


@pytest.mark.parametrize("currency", ["XXX", "usd", "", "US"])
def test_unknown_currency_is_refused(currency: str) -> None:
    with pytest.raises(errors.UnknownCurrency) as caught:
        exponent(currency)
    assert caught.value.code == "unknown_currency"


def test_money_adds_and_subtracts_in_one_currency() -> None:
    assert Money(150, "USD") + Money(50, "USD") == Money(200, "USD")
    assert Money(150, "USD") - Money(200, "USD") == Money(-50, "USD")


def test_money_compares_in_one_currency() -> None:
    assert Money(1, "EUR") < Money(2, "EUR") <= Money(2, "EUR")
    assert Money(3, "EUR") > Money(2, "EUR") >= Money(2, "EUR")


def test_zero() -> None:
    assert Money.zero("JPY") == Money(0, "JPY")


@pytest.mark.parametrize(
    "operation",
    [
        lambda a, b: a + b,
        lambda a, b: a - b,
        lambda a, b: a < b,
        lambda a, b: a <= b,
        lambda a, b: a > b,
        lambda a, b: a >= b,
    ],
)
def test_mixing_currencies_is_refused(operation: Callable[[Money, Money], object]) -> None:
    with pytest.raises(errors.CurrencyMismatch) as caught:
        operation(Money(1, "USD"), Money(1, "EUR"))
    assert caught.value.code == "currency_mismatch"


def test_different_currencies_are_never_equal() -> None:
    assert Money(1, "USD") != Money(1, "EUR")


@pytest.mark.parametrize("amount", [1.0, True, "1", None])
def test_money_refuses_non_int_amounts(amount: object) -> None:
    with pytest.raises(TypeError):
        Money(amount, "USD")  # type: ignore[arg-type]


def test_money_refuses_unknown_currency() -> None:
    with pytest.raises(errors.UnknownCurrency):
        Money(1, "ABC")


def test_money_does_not_add_plain_numbers() -> None:
    with pytest.raises(TypeError):
        Money(1, "USD") + 1


@pytest.mark.parametrize(
    ("money", "text"),
    [
        (Money(1234, "USD"), "12.34"),
        (Money(5, "USD"), "0.05"),
        (Money(-5, "USD"), "-0.05"),
        (Money(1234, "JPY"), "1234"),
        (Money(1234, "KWD"), "1.234"),
    ],
)
def test_decimal_string_uses_the_exponent(money: Money, text: str) -> None:
    assert money.to_decimal_string() == text
    assert str(money) == f"{text} {money.currency}"
