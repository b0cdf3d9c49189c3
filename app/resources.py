"""The long-lived things a running server holds: settings, the database engine, Redis, Stripe,
the real-time parts (``app.live.Live``: view model, projection, dispatcher, WebSocket hub),
and the unit-of-work runner the handlers run in.

Built once by ``app.wiring.create_app`` and handed to route handlers as the ``resources``
dependency. Creating them connects to nothing; closing them releases their pools.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from litestar.di import NamedDependency
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.live import Live
from app.payments.gateway import PaymentGateway
from app.unit_of_work import UnitOfWorkRunner


@dataclass(slots=True)
class PendingAuth:
    """Sockets of this process still waiting for their ``auth`` message, bounded: a client
    that opens sockets and never signs in gets 1013 past ``limit`` instead of holding them
    (each for the auth timeout) without end."""

    limit: int = 256
    waiting: int = 0

    def admit(self) -> bool:
        if self.waiting >= self.limit:
            return False
        self.waiting += 1
        return True

    def leave(self) -> None:
        self.waiting -= 1


@dataclass(slots=True)
class Resources:
    settings: Settings
    engine: AsyncEngine
    redis: Redis
    gateway: PaymentGateway
    live: Live
    runner: UnitOfWorkRunner
    """Runs every command and webhook handler in a unit of work (``app.unit_of_work``)."""
    pending_auth: PendingAuth = field(default_factory=PendingAuth)

    @property
    def jwt_secret(self) -> str:
        assert self.settings.jwt_secret is not None, "create_app requires a resolved JWT secret"
        return self.settings.jwt_secret

    @property
    def publishable_key(self) -> str:
        return self.settings.stripe_publishable_key or ""

    async def close(self) -> None:
        await self.gateway.close()
        await self.redis.aclose()
        await self.engine.dispose()


AppResources = NamedDependency[Resources]
"""How a route handler asks for the resources (Litestar's explicit dependency marker)."""
