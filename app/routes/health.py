"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Controller, Response, get
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from sqlalchemy import text

from app.resources import AppResources, Resources

CHECK_TIMEOUT_SECONDS = 2.0


class Health(msgspec.Struct):
    status: str
    checks: dict[str, str] = msgspec.field(default_factory=dict)


class HealthController(Controller):
    path = "/health"
    tags = ["operations"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @get("/live", sync_to_thread=False)
    def live(self) -> Health:
        """200 while the process runs."""
        return Health(status="ok")

    @get("/ready")
    async def ready(self, resources: AppResources) -> Response[Health]:
        """200 when PostgreSQL and Redis both answer, 503 naming the one that doesn't."""
        postgres, redis = await asyncio.gather(
            _check(self._postgres(resources)), _check(self._redis(resources))
        )
        checks = {"postgres": postgres, "redis": redis}
        ok = all(result == "ok" for result in checks.values())
        return Response(
            Health(status="ok" if ok else "unavailable", checks=checks),
            status_code=HTTP_200_OK if ok else HTTP_503_SERVICE_UNAVAILABLE,
        )

    @staticmethod
    async def _postgres(resources: Resources) -> None:
        async with resources.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    @staticmethod
    async def _redis(resources: Resources) -> None:
        await resources.redis.ping()


async def _check(probe: object) -> str:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT_SECONDS)  # type: ignore[arg-type]
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"
