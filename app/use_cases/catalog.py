"""Catalog handlers: stores, their products and coupons (admins write, anyone signed in reads).

Plain ``(command, uow) -> result`` functions like every other handler, run by the unit-of-work
runner; they answer with the stored rows, which the routes turn into views.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.failures import ConflictError, NotFoundError
from app.unit_of_work import Row, UnitOfWork
from domain.teamcart import DEFAULT_MAX_TIP_BPS


def store_not_found(store_id: str) -> NotFoundError:
    return NotFoundError("store_not_found", f"no store with id {store_id}")


async def _existing_store(uow: UnitOfWork, store_id: str) -> Row:
    store = await uow.catalog.store(store_id)
    if store is None:
        raise store_not_found(store_id)
    return store


@dataclass(frozen=True, slots=True)
class CreateStore:
    name: str
    currency: str
    delivery_fee_minor: int
    tax_rate_bps: int
    max_tip_bps: int = DEFAULT_MAX_TIP_BPS


async def create_store(command: CreateStore, uow: UnitOfWork) -> Row:
    return await uow.catalog.add_store(
        id=str(uuid.uuid4()),
        name=command.name,
        currency=command.currency,
        delivery_fee_minor=command.delivery_fee_minor,
        tax_rate_bps=command.tax_rate_bps,
        max_tip_bps=command.max_tip_bps,
    )


async def list_stores(_: None, uow: UnitOfWork) -> Sequence[Row]:
    return await uow.catalog.stores()


async def get_store(store_id: str, uow: UnitOfWork) -> Row:
    return await _existing_store(uow, store_id)


@dataclass(frozen=True, slots=True)
class CreateProduct:
    store_id: str
    name: str
    price_minor: int
    stock: int | None
    option_groups: list[dict[str, Any]]


async def create_product(command: CreateProduct, uow: UnitOfWork) -> Row:
    await _existing_store(uow, command.store_id)
    return await uow.catalog.add_product(
        id=str(uuid.uuid4()),
        store_id=command.store_id,
        name=command.name,
        price_minor=command.price_minor,
        stock=command.stock,
        option_groups=command.option_groups,
    )


async def list_products(store_id: str, uow: UnitOfWork) -> Sequence[Row]:
    await _existing_store(uow, store_id)
    return await uow.catalog.products(store_id)


@dataclass(frozen=True, slots=True)
class CreateCoupon:
    store_id: str
    code: str
    kind: str
    value: int
    min_subtotal_minor: int
    max_uses: int | None


async def create_coupon(command: CreateCoupon, uow: UnitOfWork) -> Row:
    await _existing_store(uow, command.store_id)
    code = command.code.upper()
    row = await uow.catalog.add_coupon(
        id=str(uuid.uuid4()),
        store_id=command.store_id,
        code=code,
        kind=command.kind,
        value=command.value,
        min_subtotal_minor=command.min_subtotal_minor,
        max_uses=command.max_uses,
    )
    if row is None:
        raise ConflictError("coupon_exists", f"the store already has a coupon {code}")
    return row
