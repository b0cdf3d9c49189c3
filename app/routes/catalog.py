"""Catalog routes: stores, their products (with option groups and stock) and coupons.

Admins write; any signed-in user reads. Amounts are integer minor units of the store's
currency; a product's option groups say how many options a customer must and may choose.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from litestar import Controller, get, post
from litestar.params import FromPath, JSONBody

from app.auth import admin_only
from app.resources import AppResources
from app.routes.fields import (
    MAX_MINOR,
    MAX_OPTION_GROUPS,
    MAX_OPTIONS_PER_GROUP,
    Count,
    CouponCode,
    CurrencyCode,
    MinorAmount,
    Name,
    Stock,
    invalid_field,
)
from app.unit_of_work import Row
from app.use_cases import catalog as use
from domain.errors import UnknownCurrency
from domain.money import exponent
from domain.teamcart import DEFAULT_MAX_TIP_BPS


class StoreCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    currency: CurrencyCode
    delivery_fee_minor: MinorAmount
    tax_rate_bps: Annotated[int, msgspec.Meta(ge=0, le=10_000)]
    # The largest tip, in basis points of a cart's subtotal (the whole subtotal by default).
    max_tip_bps: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = DEFAULT_MAX_TIP_BPS


class StoreView(msgspec.Struct):
    id: str
    name: str
    currency: str
    delivery_fee_minor: int
    tax_rate_bps: int
    created_at: datetime
    max_tip_bps: int = DEFAULT_MAX_TIP_BPS


class OptionIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    price_delta_minor: MinorAmount = 0


class OptionGroupIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    min: Annotated[int, msgspec.Meta(ge=0, le=MAX_OPTIONS_PER_GROUP)]
    max: Annotated[int, msgspec.Meta(ge=1, le=MAX_OPTIONS_PER_GROUP)]
    options: Annotated[list[OptionIn], msgspec.Meta(min_length=1, max_length=MAX_OPTIONS_PER_GROUP)]


class ProductCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    price_minor: MinorAmount
    stock: Stock | None = None
    option_groups: Annotated[list[OptionGroupIn], msgspec.Meta(max_length=MAX_OPTION_GROUPS)] = (
        msgspec.field(default_factory=list)
    )


class OptionView(msgspec.Struct):
    name: str
    price_delta_minor: int


class OptionGroupView(msgspec.Struct):
    name: str
    min: int
    max: int
    options: list[OptionView]


class ProductView(msgspec.Struct):
    id: str
    store_id: str
    name: str
    price_minor: int
    stock: int | None
    option_groups: list[OptionGroupView]


class ProductList(msgspec.Struct):
    items: list[ProductView]


class StoreList(msgspec.Struct):
    items: list[StoreView]


class CouponCreate(msgspec.Struct, forbid_unknown_fields=True):
    code: CouponCode
    kind: Literal["percent", "fixed"]
    value: Annotated[int, msgspec.Meta(ge=1, le=MAX_MINOR)]
    min_subtotal_minor: MinorAmount = 0
    max_uses: Count | None = None


class CouponView(msgspec.Struct):
    id: str
    store_id: str
    code: str
    kind: str
    value: int
    min_subtotal_minor: int
    max_uses: int | None
    times_used: int


def _check_option_groups(groups: list[OptionGroupIn]) -> None:
    """Option names are unique across the product (customers pick options by name)."""
    group_names: set[str] = set()
    option_names: set[str] = set()
    for g, group in enumerate(groups):
        where = f"option_groups[{g}]"
        if group.name in group_names:
            raise invalid_field(f"{where}.name", f"duplicate group name {group.name!r}")
        group_names.add(group.name)
        if group.min > group.max:
            raise invalid_field(f"{where}.min", "must not exceed max")
        if group.max > len(group.options):
            raise invalid_field(f"{where}.max", "must not exceed the number of options")
        for o, option in enumerate(group.options):
            if option.name in option_names:
                raise invalid_field(
                    f"{where}.options[{o}].name", f"duplicate option {option.name!r}"
                )
            option_names.add(option.name)


def store_view(row: Row) -> StoreView:
    return StoreView(
        id=str(row["id"]),
        name=row["name"],
        currency=row["currency"],
        delivery_fee_minor=row["delivery_fee_minor"],
        tax_rate_bps=row["tax_rate_bps"],
        created_at=row["created_at"],
        max_tip_bps=row.get("max_tip_bps", DEFAULT_MAX_TIP_BPS),
    )


def product_view(row: Row) -> ProductView:
    return ProductView(
        id=str(row["id"]),
        store_id=str(row["store_id"]),
        name=row["name"],
        price_minor=row["price_minor"],
        stock=row["stock"],
        option_groups=msgspec.convert(row["option_groups"], list[OptionGroupView]),
    )


def coupon_view(row: Row) -> CouponView:
    return CouponView(
        id=str(row["id"]),
        store_id=str(row["store_id"]),
        code=row["code"],
        kind=row["kind"],
        value=row["value"],
        min_subtotal_minor=row["min_subtotal_minor"],
        max_uses=row["max_uses"],
        times_used=row["times_used"],
    )


class CatalogController(Controller):
    """Each route runs one handler of ``app.use_cases.catalog`` in a unit of work."""

    path = "/api/v1/stores"
    tags = ["catalog"]  # noqa: RUF012

    @post("/", guards=[admin_only])
    async def create_store(self, data: JSONBody[StoreCreate], resources: AppResources) -> StoreView:
        currency = data.currency.upper()
        try:
            exponent(currency)
        except UnknownCurrency as exc:
            raise invalid_field("currency", f"unknown ISO 4217 currency {data.currency!r}") from exc
        command = use.CreateStore(
            data.name, currency, data.delivery_fee_minor, data.tax_rate_bps, data.max_tip_bps
        )
        return store_view(await resources.runner.run(use.create_store, command))

    @get("/")
    async def list_stores(self, resources: AppResources) -> StoreList:
        rows = await resources.runner.run(use.list_stores, None)
        return StoreList(items=[store_view(row) for row in rows])

    @get("/{store_id:uuid}")
    async def get_store(self, store_id: FromPath[uuid.UUID], resources: AppResources) -> StoreView:
        return store_view(await resources.runner.run(use.get_store, str(store_id)))

    @post("/{store_id:uuid}/products", guards=[admin_only])
    async def create_product(
        self, store_id: FromPath[uuid.UUID], data: JSONBody[ProductCreate], resources: AppResources
    ) -> ProductView:
        _check_option_groups(data.option_groups)
        command = use.CreateProduct(
            store_id=str(store_id),
            name=data.name,
            price_minor=data.price_minor,
            stock=data.stock,
            option_groups=msgspec.to_builtins(data.option_groups),
        )
        return product_view(await resources.runner.run(use.create_product, command))

    @get("/{store_id:uuid}/products")
    async def list_products(
        self, store_id: FromPath[uuid.UUID], resources: AppResources
    ) -> ProductList:
        rows = await resources.runner.run(use.list_products, str(store_id))
        return ProductList(items=[product_view(row) for row in rows])

    @post("/{store_id:uuid}/coupons", guards=[admin_only])
    async def create_coupon(
        self, store_id: FromPath[uuid.UUID], data: JSONBody[CouponCreate], resources: AppResources
    ) -> CouponView:
        if data.kind == "percent" and data.value > 100:
            raise invalid_field("value", "a percent coupon takes 1 to 100")
        command = use.CreateCoupon(
            store_id=str(store_id),
            code=data.code,
            kind=data.kind,
            value=data.value,
            min_subtotal_minor=data.min_subtotal_minor,
            max_uses=data.max_uses,
        )
        return coupon_view(await resources.runner.run(use.create_coupon, command))
