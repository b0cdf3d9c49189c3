"""The unit-of-work contract (``tests/unit_of_work_contract.py``) in memory: the app's runner
over ``tests.fakes``, so the fake the handler tests use keeps PostgreSQL's promises."""

from __future__ import annotations

import inspect

import pytest

from app.persistence.outbox import Relay
from app.persistence.payments import SqlPayments
from app.unit_of_work import PaymentRepository, RefundRunner, UnitOfWorkRunner
from domain.catalog import ProductSnapshot, StoreTerms
from tests.fakes import FakeDatabase, FakeGateway, FakePayments, fake_runner
from tests.unit_of_work_contract import UnitOfWorkContract


class FakeBackend:
    def __init__(self) -> None:
        self.db = FakeDatabase()
        self.gateway = FakeGateway()

    def runner(
        self, *, refunds: RefundRunner | None = None, relay: Relay | None = None
    ) -> UnitOfWorkRunner:
        return fake_runner(self.db, self.gateway, refunds=refunds, relay=relay)

    async def add_store(self, store: StoreTerms) -> None:
        self.db.add_store(store)

    async def add_product(self, product: ProductSnapshot, *, stock: int | None) -> None:
        self.db.add_product(product, stock=stock)

    async def stock_of(self, product_id: str) -> int | None:
        return self.db.stock_of(product_id)

    async def events_of(self, aggregate_id: str) -> list[tuple[int, str]]:
        return self.db.events_of(aggregate_id)


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


class TestFakeUnitOfWork(UnitOfWorkContract):
    """Every promise of the contract, in memory."""


def public_methods(cls: type) -> dict[str, str]:
    return {
        name: str(inspect.signature(method))
        for name, method in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def test_the_payment_repository_is_exactly_what_sql_payments_offers() -> None:
    assert public_methods(PaymentRepository) == public_methods(SqlPayments)


def test_the_fake_payments_offer_the_same_methods() -> None:
    assert public_methods(FakePayments) == public_methods(SqlPayments)
