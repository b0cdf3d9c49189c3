import pytest

from domain import errors
from domain.catalog import (
    CouponKind,
    CouponTerms,
    Option,
    OptionGroup,
    ProductSnapshot,
    StoreTerms,
    price_options,
)

from .builders import a_pizza_with_options, a_product, a_store


def test_options_are_priced_and_put_in_the_products_order() -> None:
    pizza = a_pizza_with_options(a_store())
    chosen, unit_price = price_options(pizza, ["Basil", "Large", "Olives"])
    assert chosen == ("Large", "Olives", "Basil")
    assert unit_price == 1000 + 300 + 50 + 25


def test_a_product_without_option_groups_takes_no_options() -> None:
    product = a_product(a_store(), price_minor=750)
    assert price_options(product, []) == ((), 750)


def test_optional_group_may_be_left_empty() -> None:
    pizza = a_pizza_with_options(a_store())
    assert price_options(pizza, ["Small"]) == (("Small",), 1000)


def test_unknown_option_is_named() -> None:
    pizza = a_pizza_with_options(a_store())
    with pytest.raises(errors.InvalidOptions) as caught:
        price_options(pizza, ["Small", "Pineapple"])
    assert caught.value.code == "invalid_options"
    assert caught.value.field == "options"
    assert "Pineapple" in caught.value.detail


def test_duplicate_option_is_refused() -> None:
    pizza = a_pizza_with_options(a_store())
    with pytest.raises(errors.InvalidOptions, match="more than once"):
        price_options(pizza, ["Small", "Olives", "Olives"])


def test_required_group_left_empty_is_refused() -> None:
    pizza = a_pizza_with_options(a_store())
    with pytest.raises(errors.InvalidOptions, match="at least 1 from 'Size'"):
        price_options(pizza, ["Olives"])


def test_too_many_choices_in_a_group_are_refused() -> None:
    pizza = a_pizza_with_options(a_store())
    with pytest.raises(errors.InvalidOptions, match="at most 1 from 'Size'"):
        price_options(pizza, ["Small", "Large"])
    with pytest.raises(errors.InvalidOptions, match="at most 2 from 'Extras'"):
        price_options(pizza, ["Small", "Olives", "Basil", "Chili"])


def test_a_bare_string_is_not_a_list_of_options() -> None:
    pizza = a_pizza_with_options(a_store())
    with pytest.raises(errors.InvalidOptions):
        price_options(pizza, "Small")


def test_store_terms_validate() -> None:
    with pytest.raises(errors.UnknownCurrency):
        StoreTerms("s", "ZZZ", 0, 0)
    with pytest.raises(errors.InvalidStore) as caught:
        StoreTerms("s", "USD", -1, 0)
    assert caught.value.field == "delivery_fee_minor"
    with pytest.raises(errors.InvalidStore):
        StoreTerms("s", "USD", 0, -5)
    with pytest.raises(errors.InvalidStore):
        StoreTerms("s", "USD", 1.5, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("low", "high", "options"),
    [
        (2, 1, 2),  # min above max
        (0, 0, 1),  # nothing can ever be chosen
        (0, 3, 2),  # max above the number of options
        (-1, 1, 1),
        (0, 1, 0),  # no options at all
    ],
)
def test_option_group_bounds_are_checked(low: int, high: int, options: int) -> None:
    with pytest.raises(errors.InvalidProduct):
        OptionGroup("G", low, high, tuple(Option(f"o{i}", 0) for i in range(options)))


def test_negative_option_delta_is_refused() -> None:
    with pytest.raises(errors.InvalidProduct):
        OptionGroup("G", 0, 1, (Option("Less cheese", -50),))


def test_option_names_are_unique_across_the_product() -> None:
    first = OptionGroup("A", 0, 1, (Option("Same", 0),))
    second = OptionGroup("B", 0, 1, (Option("Same", 10),))
    with pytest.raises(errors.InvalidProduct, match="unique"):
        ProductSnapshot("p", "s", "Thing", 100, (first, second))


def test_option_group_names_are_unique() -> None:
    first = OptionGroup("A", 0, 1, (Option("x", 0),))
    second = OptionGroup("A", 0, 1, (Option("y", 0),))
    with pytest.raises(errors.InvalidProduct):
        ProductSnapshot("p", "s", "Thing", 100, (first, second))


def test_product_price_and_name_are_checked() -> None:
    with pytest.raises(errors.InvalidProduct):
        ProductSnapshot("p", "s", "Thing", -1)
    with pytest.raises(errors.InvalidProduct):
        ProductSnapshot("p", "s", "  ", 100)


@pytest.mark.parametrize(
    "arguments",
    [
        {"kind": CouponKind.PERCENT, "value": 101},
        {"kind": CouponKind.FIXED, "value": -1},
        {"kind": CouponKind.FIXED, "value": 100, "min_subtotal_minor": -1},
        {"kind": CouponKind.FIXED, "value": 100, "max_uses": -1},
        {"kind": CouponKind.FIXED, "value": 100, "times_used": -1},
        {"kind": "bogus", "value": 1},
    ],
)
def test_coupon_terms_are_checked(arguments: dict[str, object]) -> None:
    with pytest.raises(errors.InvalidCoupon):
        CouponTerms(code="C", **arguments)  # type: ignore[arg-type]


def test_coupon_kind_is_a_str_enum() -> None:
    assert CouponTerms("C", CouponKind("percent"), 10).kind is CouponKind.PERCENT


def test_coupon_exhaustion() -> None:
    assert not CouponTerms("C", CouponKind.FIXED, 1).exhausted
    assert not CouponTerms("C", CouponKind.FIXED, 1, max_uses=2, times_used=1).exhausted
    assert CouponTerms("C", CouponKind.FIXED, 1, max_uses=2, times_used=2).exhausted
