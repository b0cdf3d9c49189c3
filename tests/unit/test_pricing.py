import pytest

from domain.catalog import CouponKind
from domain.pricing import (
    compute_quote,
    discount_for,
    divide_half_even,
    split_proportionally,
    tax_for,
)

from .builders import a_coupon


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [(5, 2, 2), (7, 2, 4), (-5, 2, -2), (-7, 2, -4), (1, 3, 0), (2, 3, 1), (10, 5, 2)],
)
def test_divide_half_even(numerator: int, denominator: int, expected: int) -> None:
    assert divide_half_even(numerator, denominator) == expected


@pytest.mark.parametrize(
    ("subtotal", "rate_bps", "tax"),
    [
        (1000, 825, 82),  # 82.5 -> 82 (even)
        (1000, 0, 0),
        (200, 2500, 50),
        (2, 2500, 0),  # 0.5 -> 0 (even)
        (6, 2500, 2),  # 1.5 -> 2 (even)
        (10, 2500, 2),  # 2.5 -> 2 (even)
        (3, 5000, 2),  # 1.5 -> 2
        (1, 10_000, 1),
        (0, 825, 0),
    ],
)
def test_tax_is_rounded_half_even(subtotal: int, rate_bps: int, tax: int) -> None:
    assert tax_for(subtotal, rate_bps) == tax


def test_tax_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="subtotal"):
        tax_for(-1, 100)
    with pytest.raises(ValueError, match="tax rate"):
        tax_for(100, -1)


def test_split_gives_left_over_units_to_the_largest_remainders() -> None:
    assert split_proportionally(100, {"a": 1, "b": 1, "c": 1}) == {"a": 34, "b": 33, "c": 33}
    assert split_proportionally(10, {"a": 1, "b": 2}) == {"a": 3, "b": 7}
    assert split_proportionally(5, {"a": 3, "b": 1, "c": 1}) == {"a": 3, "b": 1, "c": 1}


def test_split_breaks_ties_by_key_order() -> None:
    assert split_proportionally(1, {"z": 1, "a": 1}) == {"z": 1, "a": 0}
    assert split_proportionally(1, {"a": 1, "z": 1}) == {"a": 1, "z": 0}


def test_zero_weight_gets_nothing() -> None:
    assert split_proportionally(7, {"a": 0, "b": 5, "c": 0}) == {"a": 0, "b": 7, "c": 0}


def test_zero_total_splits_into_zeros() -> None:
    assert split_proportionally(0, {"a": 3, "b": 0}) == {"a": 0, "b": 0}
    assert split_proportionally(0, {"a": 0, "b": 0}) == {"a": 0, "b": 0}
    assert split_proportionally(0, {}) == {}


def test_positive_total_without_weight_is_an_error() -> None:
    with pytest.raises(ValueError, match="every weight is 0"):
        split_proportionally(1, {"a": 0})
    with pytest.raises(ValueError, match="every weight is 0"):
        split_proportionally(1, {})


def test_split_refuses_negative_or_non_int_input() -> None:
    with pytest.raises(ValueError, match="total"):
        split_proportionally(-1, {"a": 1})
    with pytest.raises(ValueError, match="weight of 'a'"):
        split_proportionally(1, {"a": -1, "b": 2})
    with pytest.raises(ValueError, match="weight of 'a'"):
        split_proportionally(1, {"a": 1.5})  # type: ignore[dict-item]


def test_percent_discount_is_rounded_half_even_and_fixed_is_capped() -> None:
    assert discount_for(1050, a_coupon(kind=CouponKind.PERCENT, value=10)) == 105
    assert discount_for(25, a_coupon(kind=CouponKind.PERCENT, value=10)) == 2  # 2.5 -> 2
    assert discount_for(35, a_coupon(kind=CouponKind.PERCENT, value=10)) == 4  # 3.5 -> 4
    assert discount_for(500, a_coupon(kind=CouponKind.FIXED, value=200)) == 200
    assert discount_for(150, a_coupon(kind=CouponKind.FIXED, value=200)) == 150
    assert discount_for(500, None) == 0


def test_quote_adds_up() -> None:
    quote = compute_quote(
        {"host": 1000, "guest": 3000, "idle": 0},
        delivery_fee_minor=500,
        tax_rate_bps=825,
        tip_minor=200,
        coupon=a_coupon(kind=CouponKind.FIXED, value=100),
    )
    assert quote.totals.subtotal_minor == 4000
    assert quote.totals.tax_minor == 330
    assert quote.totals.discount_minor == 100
    assert quote.totals.total_minor == 4000 + 500 + 330 + 200 - 100
    assert dict(quote.shares) == {"host": 1233, "guest": 3697, "idle": 0}
    assert sum(quote.shares.values()) == quote.totals.total_minor
    assert quote.share_of("idle") == 0
    assert quote.share_of("stranger") == 0


def test_tax_is_on_the_subtotal_before_discount() -> None:
    quote = compute_quote({"a": 1000}, 0, 1000, 0, a_coupon(kind=CouponKind.PERCENT, value=50))
    assert quote.totals.tax_minor == 100
    assert quote.totals.total_minor == 1000 + 100 - 500


def test_full_discount_leaves_charges_but_never_goes_negative() -> None:
    quote = compute_quote({"a": 1000}, 0, 0, 0, a_coupon(kind=CouponKind.PERCENT, value=100))
    assert quote.totals.discount_minor == 1000
    assert quote.totals.total_minor == 0
    assert dict(quote.shares) == {"a": 0}


def test_quote_shares_are_read_only() -> None:
    quote = compute_quote({"a": 1000}, 0, 0, 0, None)
    with pytest.raises(TypeError):
        quote.shares["a"] = 1  # type: ignore[index]


def test_quote_refuses_negative_charges() -> None:
    with pytest.raises(ValueError, match="delivery fee"):
        compute_quote({"a": 1000}, -1, 0, 0, None)
    with pytest.raises(ValueError, match="tip"):
        compute_quote({"a": 1000}, 0, 0, -1, None)
    with pytest.raises(ValueError, match="subtotal of 'a'"):
        compute_quote({"a": -1000}, 0, 0, 0, None)
