"""What the cart needs to know about a store's catalog, as immutable snapshots.

The application loads stores, products and coupons from PostgreSQL and hands them to the
``TeamCart`` aggregate as these value objects; the cart copies prices out of them at the moment
an item is added (later catalog edits never change an item already in a cart).

The value objects check their own consistency when built, raising ``Invalid*`` errors, so the
admin routes can build them to validate input. ``price_options`` checks a member's chosen
options against a product's option groups and prices them.

Option names are unique across a whole product (not only within a group): a chosen option is
identified by its name alone.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from domain.errors import InvalidCoupon, InvalidOptions, InvalidProduct, InvalidStore
from domain.money import exponent, is_whole_number


@dataclass(frozen=True, slots=True)
class StoreTerms:
    """The store's currency and the per-order charges every cart of the store pays."""

    store_id: str
    currency: str
    delivery_fee_minor: int
    tax_rate_bps: int  # basis points: 825 means 8.25 %

    def __post_init__(self) -> None:
        exponent(self.currency)
        if not is_whole_number(self.delivery_fee_minor) or self.delivery_fee_minor < 0:
            raise InvalidStore("The delivery fee must be >= 0.", field="delivery_fee_minor")
        if not is_whole_number(self.tax_rate_bps) or not 0 <= self.tax_rate_bps <= 10_000:
            raise InvalidStore(
                "The tax rate must be 0 to 10000 basis points.", field="tax_rate_bps"
            )


@dataclass(frozen=True, slots=True)
class Option:
    """One choice within an option group, and what it adds to the unit price."""

    name: str
    price_delta_minor: int


@dataclass(frozen=True, slots=True)
class OptionGroup:
    """A set of options of which a member picks between ``min`` and ``max``."""

    name: str
    min: int
    max: int
    options: tuple[Option, ...]

    def __post_init__(self) -> None:
        where = f"option group {self.name!r}"
        if not self.name.strip():
            raise InvalidProduct("Every option group needs a name.", field="option_groups")
        if not self.options:
            raise InvalidProduct(f"The {where} has no options.", field="option_groups")
        if not (is_whole_number(self.min) and is_whole_number(self.max)):
            raise InvalidProduct(f"The {where} needs whole min and max.", field="option_groups")
        if not 0 <= self.min <= self.max or self.max < 1 or self.max > len(self.options):
            raise InvalidProduct(
                f"The {where} needs 0 <= min <= max, 1 <= max <= number of options.",
                field="option_groups",
            )
        for option in self.options:
            if not option.name.strip():
                raise InvalidProduct(f"Every option of the {where} needs a name.")
            if not is_whole_number(option.price_delta_minor) or option.price_delta_minor < 0:
                raise InvalidProduct(
                    f"Option {option.name!r} needs a price delta >= 0.", field="option_groups"
                )


@dataclass(frozen=True, slots=True)
class ProductSnapshot:
    """A product as it is at the moment a member adds it to a cart."""

    product_id: str
    store_id: str
    name: str
    price_minor: int
    option_groups: tuple[OptionGroup, ...] = ()

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise InvalidProduct("A product needs a name.", field="name")
        if not is_whole_number(self.price_minor) or self.price_minor < 0:
            raise InvalidProduct("A product's price must be >= 0.", field="price_minor")
        group_names = [group.name for group in self.option_groups]
        if len(set(group_names)) != len(group_names):
            raise InvalidProduct("Option group names must be unique.", field="option_groups")
        option_names = [option.name for group in self.option_groups for option in group.options]
        if len(set(option_names)) != len(option_names):
            raise InvalidProduct(
                "Option names must be unique across the product.", field="option_groups"
            )


class CouponKind(StrEnum):
    PERCENT = "percent"  # value is a percentage of the subtotal, 0..100
    FIXED = "fixed"  # value is an amount in the store currency's minor units


@dataclass(frozen=True, slots=True)
class CouponTerms:
    """A store's discount code as it stands when the host applies it."""

    code: str
    kind: CouponKind
    value: int
    min_subtotal_minor: int = 0
    max_uses: int | None = None  # None: unlimited
    times_used: int = 0

    def __post_init__(self) -> None:
        if not self.code.strip():
            raise InvalidCoupon("A coupon needs a code.", field="code")
        if not isinstance(self.kind, CouponKind):
            raise InvalidCoupon("A coupon's kind is 'percent' or 'fixed'.", field="kind")
        if not is_whole_number(self.value) or self.value < 0:
            raise InvalidCoupon("A coupon's value must be a whole number >= 0.", field="value")
        if self.kind is CouponKind.PERCENT and self.value > 100:
            raise InvalidCoupon("A percent coupon's value is at most 100.", field="value")
        if not is_whole_number(self.min_subtotal_minor) or self.min_subtotal_minor < 0:
            raise InvalidCoupon("The minimum subtotal must be >= 0.", field="min_subtotal_minor")
        if self.max_uses is not None and (not is_whole_number(self.max_uses) or self.max_uses < 0):
            raise InvalidCoupon("The use limit must be >= 0 or null.", field="max_uses")
        if not is_whole_number(self.times_used) or self.times_used < 0:
            raise InvalidCoupon("The use count must be >= 0.", field="times_used")

    @property
    def exhausted(self) -> bool:
        return self.max_uses is not None and self.times_used >= self.max_uses


def price_options(product: ProductSnapshot, chosen: Sequence[str]) -> tuple[tuple[str, ...], int]:
    """Check a member's chosen options against the product and price one unit.

    Returns the chosen option names in the product's own order (group by group, option by
    option), so equal choices always look equal, and the unit price: the product's price plus
    every chosen option's delta. Raises ``InvalidOptions`` for an unknown name, a name chosen
    twice, or a group whose number of choices is outside its ``[min, max]``.
    """
    if isinstance(chosen, str):
        raise InvalidOptions("Options are a list of option names, not one string.")
    known = {option.name for group in product.option_groups for option in group.options}
    seen: set[str] = set()
    for name in chosen:
        if name not in known:
            raise InvalidOptions(f"{product.name!r} has no option {name!r}.")
        if name in seen:
            raise InvalidOptions(f"Option {name!r} is chosen more than once.")
        seen.add(name)

    canonical: list[str] = []
    unit_price = product.price_minor
    for group in product.option_groups:
        picked = [option for option in group.options if option.name in seen]
        if len(picked) < group.min:
            raise InvalidOptions(
                f"Choose at least {group.min} from {group.name!r} for {product.name!r}."
            )
        if len(picked) > group.max:
            raise InvalidOptions(
                f"Choose at most {group.max} from {group.name!r} for {product.name!r}."
            )
        canonical.extend(option.name for option in picked)
        unit_price += sum(option.price_delta_minor for option in picked)
    return tuple(canonical), unit_price
