"""Shared fixtures: one migrated PostgreSQL database, one Redis and one SMTP server per test
session, the app built on them, and HTTP clients with guest and admin tokens."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import issue_token
from app.config import Settings
from app.embedded import (
    EMULATOR_PUBLISHABLE_KEY,
    EMULATOR_SECRET_KEY,
    WEBHOOK_PATH,
    register_emulator_webhook,
    stripe_emulator,
)
from app.mail.catcher import MailCatcher, running_catcher
from app.payments.gateway import StripeGateway
from app.persistence import schema
from app.persistence.database import create_engine
from app.unit_of_work import UnitOfWorkRunner
from app.wiring import build_runner, create_app
from tests.services import fresh_database, postgres_server, redis_server, serving
from tests.stripe_events import WEBHOOK_SECRET


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def postgres_server_url(services_dir: Path) -> Iterator[str]:
    with postgres_server(services_dir) as url:
        yield url


@pytest.fixture(scope="session")
def database_url(postgres_server_url: str) -> Iterator[str]:
    """A database migrated to head with Alembic (never ``create_all``)."""
    with fresh_database(postgres_server_url) as url:
        schema.upgrade(url)
        yield url


@pytest.fixture(scope="session")
def redis_url(services_dir: Path) -> Iterator[str]:
    with redis_server(services_dir) as url:
        yield url


@pytest.fixture(scope="session")
def stripe_api_base(services_dir: Path) -> Iterator[str]:
    """The real localstripe emulator behind the Stripe add-on (Checkout Sessions, ADR 0015),
    both child processes, for the whole session; the URL is the add-on's."""
    with stripe_emulator(services_dir / "localstripe.log") as base:
        yield base


@pytest.fixture(scope="session")
def mail_catcher(services_dir: Path) -> Iterator[MailCatcher]:
    """A real SMTP server (the embedded catcher, aiosmtpd, in a thread) that the app's mailer
    sends to, keeping every mail it receives in a folder the tests can read."""
    with running_catcher(services_dir / "mail") as catcher:
        yield catcher


@pytest.fixture(scope="session")
def settings(
    database_url: str,
    redis_url: str,
    services_dir: Path,
    stripe_api_base: str,
    mail_catcher: MailCatcher,
) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=services_dir / "data",
        jwt_secret=secrets.token_urlsafe(48),
        stripe_api_base=stripe_api_base,
        stripe_secret_key=EMULATOR_SECRET_KEY,
        stripe_publishable_key=EMULATOR_PUBLISHABLE_KEY,
        stripe_webhook_secrets=(WEBHOOK_SECRET, "whsec_" + secrets.token_urlsafe(16)),
        log_json=True,
        log_level="WARNING",
        rate_limit_per_minute=0,  # the suite signs in far more often; test_rate_limits sets one
        smtp_url=mail_catcher.url,
    )


@pytest.fixture(scope="session")
async def gateway(settings: Settings) -> AsyncIterator[StripeGateway]:
    assert settings.stripe_secret_key is not None
    stripe_gateway = StripeGateway(settings.stripe_secret_key, api_base=settings.stripe_api_base)
    yield stripe_gateway
    await stripe_gateway.close()


@pytest.fixture(scope="session")
def live_server(settings: Settings) -> Iterator[str]:
    """The app served by uvicorn on a free port, with the emulator's webhooks pointed at it."""
    with serving(create_app(settings)) as base:
        assert settings.stripe_api_base is not None
        register_emulator_webhook(settings.stripe_api_base, base + WEBHOOK_PATH, WEBHOOK_SECRET)
        yield base


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The tests' own engine: the app's lives on the test client's event loop."""
    test_engine = create_engine(database_url, pool_size=5)
    yield test_engine
    await test_engine.dispose()


@pytest.fixture(scope="session")
def runner(engine: AsyncEngine, gateway: StripeGateway) -> UnitOfWorkRunner:
    """Handlers run on the tests' own engine; no relay (the dispatchers project events)."""
    return build_runner(engine, gateway, relay=None)


@pytest.fixture(scope="session")
def app(settings: Settings) -> Litestar:
    return create_app(settings)


@pytest.fixture(scope="session")
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def admin_headers(settings: Settings) -> dict[str, str]:
    assert settings.jwt_secret is not None
    return bearer(issue_token(settings.jwt_secret, display_name="Admin", admin=True).token)


@pytest.fixture
async def guest_headers(client: AsyncTestClient[Litestar]) -> dict[str, str]:
    response = await client.post("/api/v1/sessions", json={"display_name": "Guest"})
    assert response.status_code == 201, response.text
    return bearer(response.json()["token"])
