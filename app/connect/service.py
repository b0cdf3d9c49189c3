"""The parts stores' payments need, built once by ``app.wiring``: what the routes call
through and what the app's lifespan runs (the transfers' retry loop)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from litestar.di import NamedDependency

from app.connect.transfers import StoreTransfers
from app.secrets import Keyring
from app.unit_of_work import UnitOfWorkRunner


@dataclass(frozen=True, slots=True)
class StorePayments:
    runner: UnitOfWorkRunner
    keyring: Keyring
    """Seals and opens stores' secrets (``TEAMCART_SECRETS_KEY``, or the data folder's key)."""
    transfers: StoreTransfers
    """The Stripe work of stores' transfers (the outbox consumer is another instance of it,
    on the dispatcher's side: any instance may finish any row)."""
    retry_interval: float = 5.0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.transfers.running(self.retry_interval):
            yield


StorePaymentsDependency = NamedDependency[StorePayments]
"""How a route handler asks for them (Litestar's explicit dependency marker)."""
