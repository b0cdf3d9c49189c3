"""The unit-of-work contract (``tests/unit_of_work_contract.py``) on PostgreSQL: the app's
runner and repositories on the tests' engine, the Stripe emulator as the gateway."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.payments.gateway import StripeGateway
from app.persistence import catalog as catalog_rows
from app.persistence.outbox import Relay
from app.persistence.tables import outbox, products
from app.unit_of_work import RefundRunner, UnitOfWorkRunner
from app.use_cases.order_views import event_payloads
from app.wiring import build_runner
from domain.catalog import ProductSnapshot, StoreTerms
from tests.unit_of_work_contract import UnitOfWorkContract


class SqlBackend:
    def __init__(self, engine: AsyncEngine, gateway: StripeGateway, runner: UnitOfWorkRunner):
        self._engine = engine
        self._gateway = gateway
        self._runner = runner

    def runner(
        self, *, refunds: RefundRunner | None = None, relay: Relay | None = None
    ) -> UnitOfWorkRunner:
        if refunds is not None:
            return UnitOfWorkRunner(self._engine, self._gateway, event_payloads, refunds, relay)
        if relay is not None:
            return build_runner(self._engine, self._gateway, relay=relay)
        return self._runner

    async def add_store(self, store: StoreTerms) -> None:
        async with self._engine.begin() as conn:
            await catalog_rows.insert_store(
                conn,
                id=store.store_id,
                name=f"Store {store.store_id[:8]}",
                currency=store.currency,
                delivery_fee_minor=store.delivery_fee_minor,
                tax_rate_bps=store.tax_rate_bps,
            )

    async def add_product(self, product: ProductSnapshot, *, stock: int | None) -> None:
        async with self._engine.begin() as conn:
            await catalog_rows.insert_product(
                conn,
                id=product.product_id,
                store_id=product.store_id,
                name=product.name,
                price_minor=product.price_minor,
                stock=stock,
                option_groups=[
                    {
                        "name": group.name,
                        "min": group.min,
                        "max": group.max,
                        "options": [
                            {"name": o.name, "price_delta_minor": o.price_delta_minor}
                            for o in group.options
                        ],
                    }
                    for group in product.option_groups
                ],
            )

    async def stock_of(self, product_id: str) -> int | None:
        async with self._engine.connect() as conn:
            found = await conn.execute(select(products.c.stock).where(products.c.id == product_id))
            stock: int | None = found.scalar_one()
            return stock

    async def events_of(self, aggregate_id: str) -> list[tuple[int, str]]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(outbox.c.version, outbox.c.event_type)
                .where(outbox.c.aggregate_id == aggregate_id)
                .order_by(outbox.c.id)
            )
            return [(int(version), str(name)) for version, name in rows]


@pytest.fixture
def backend(engine: AsyncEngine, gateway: StripeGateway, runner: UnitOfWorkRunner) -> SqlBackend:
    return SqlBackend(engine, gateway, runner)


class TestSqlUnitOfWork(UnitOfWorkContract):
    """Every promise of the contract, on PostgreSQL."""
