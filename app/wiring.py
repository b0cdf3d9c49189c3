"""The one place that joins the parts: ``create_app(settings)`` builds the Litestar app.

Plugins are created once here. Nothing connects at import time or while building: the
database engine and Redis client connect lazily and are closed on shutdown.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any

from limits.aio.storage import RedisStorage
from litestar import Litestar, Request
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.problem_details import ProblemDetailsPlugin
from litestar.plugins.prometheus import PrometheusController
from litestar.stores.redis import RedisStore
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import build_jwt_auth
from app.config import Settings
from app.connect.service import StorePayments
from app.connect.transfers import StoreTransfers
from app.dispatcher import Handler, OutboxDispatcher, each_of, project_outbox_record
from app.embedded import EMULATOR_SECRET_KEY
from app.errors import problem_details_config, unexpected_exception_handler
from app.idempotency import IdempotencyMiddleware
from app.live import PUBSUB_RECONNECTS, Live, PrometheusHubObserver
from app.mail.mailer import Mailer
from app.mail.planner import MailPlanner
from app.mail.smtp import SmtpTarget
from app.observability import RequestIdMiddleware, prometheus_config, structlog_plugin
from app.payments.gateway import PaymentGateway, StripeGateway
from app.persistence.accounts import SqlAccounts
from app.persistence.database import create_engine
from app.persistence.outbox import Relay
from app.referrals.accrual import ReferralAccrual, terms_of
from app.resources import Resources
from app.routes.accounts import AccountController
from app.routes.catalog import CatalogController
from app.routes.dev_mail import DevMailController
from app.routes.dev_stripe import DevStripeController, serves_emulator
from app.routes.fields import check_json_body
from app.routes.health import HealthController
from app.routes.me import MeController
from app.routes.orders import OrderController, StoreOrderController
from app.routes.payments import PaymentController
from app.routes.referrals import AdminReferralController, ReferralController
from app.routes.sessions import SessionController
from app.routes.shop_carts import ShopCartController
from app.routes.store_payments import StorePaymentsController, StoreWebhookController
from app.routes.teamcarts import TeamCartController
from app.routes.web import index, invite, static_files
from app.routes.webhooks import StripeWebhookController
from app.routes.ws import cart_socket, order_socket
from app.secrets import keyring_for
from app.unit_of_work import UnitOfWorkRunner
from app.use_cases.accounts import Accounts, Passwords, SignInLimits
from app.use_cases.order_views import event_payloads
from app.use_cases.payments.refunds import carry_out_refunds
from app.use_cases.teamcarts import Remind
from app.use_cases.views import stored_view
from app.workers import running_sweeper
from realtime.cart_view import CartView
from realtime.hub import Hub
from realtime.order_feed import publish_order_updates
from realtime.presence import PresenceStore
from realtime.projection import Projection, ViewLoader
from realtime.protocol import Reminder, reminder_frame
from realtime.pubsub import RedisChannelLink
from realtime.view_store import ViewStore

MAX_REQUEST_BODY_BYTES = 1 << 20
REDIS_TIMEOUT_SECONDS = 2.0


class MetricsController(PrometheusController):
    path = "/metrics"
    openmetrics_format = False


def build_mailer(settings: Settings, engine: AsyncEngine) -> Mailer | None:
    """The process's mailer, sending to ``TEAMCART_SMTP_URL`` (under ``teamcart serve``
    with none set, the embedded catcher's); ``None`` when there is no SMTP server at all (an
    app built by hand): mail is still planned, and waits."""
    if settings.smtp_url is None:
        return None
    return Mailer(engine, SmtpTarget.from_url(settings.smtp_url), settings.mail_from)


def build_resources(settings: Settings) -> tuple[Resources, Mailer | None]:
    """The engine and Redis client for resolved settings (every service named), and the
    mailer that the planner among the outbox consumers wakes."""
    if settings.database_url is None or settings.redis_url is None:
        raise ValueError(
            "create_app needs TEAMCART_DATABASE_URL and TEAMCART_REDIS_URL resolved; "
            "start the server with `teamcart serve`, which runs the embedded services"
        )
    if settings.jwt_secret is None:
        raise ValueError("create_app needs a JWT secret; `teamcart serve` provides one")
    engine = create_engine(settings.database_url)
    redis = Redis.from_url(
        settings.redis_url,
        decode_responses=False,
        # A Redis that hangs (paused, partitioned) fails a call in 2 s instead of never.
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        # No CLIENT SETINFO on each new connection: the pool opens connections under its
        # lock, and with Redis paused every caller queued behind that handshake's timeout
        # (calls took 4-5 s, not 2: tests/e2e/test_faults.py, Redis paused).
        lib_name=None,
        lib_version=None,
    )
    gateway = StripeGateway(
        settings.stripe_secret_key or EMULATOR_SECRET_KEY, api_base=settings.stripe_api_base
    )

    async def load_view(cart_id: str) -> CartView | None:
        return await stored_view(runner, cart_id)  # a rebuild reads through a unit of work

    mailer = build_mailer(settings, engine)
    planner = MailPlanner(engine, wake=mailer.wake if mailer else lambda: None)
    accrual = ReferralAccrual(engine, gateway, terms_of(settings))
    transfers = StoreTransfers(engine, gateway)  # stores get paid (app.connect)
    live = build_live(
        redis, settings.database_url, load_view, engine, consumers=[planner, accrual, transfers]
    )
    runner = build_runner(engine, gateway, relay=live.dispatcher)
    resources = Resources(
        settings=settings,
        engine=engine,
        redis=redis,
        live=live,
        gateway=gateway,
        runner=runner,
    )
    return resources, mailer


def build_live(
    redis: Redis,
    database_url: str,
    load_view: ViewLoader,
    engine: AsyncEngine,
    consumers: Sequence[Handler] = (),
) -> Live:
    """The real-time parts on the process's Redis client: the pub/sub link (which tells the
    hub to resync every socket after a dropped connection), the view store, presence, the
    projection (rebuilding views with ``load_view``), the hub and the outbox dispatcher,
    which hands each event to the projection and then to the other ``consumers``."""

    def resync_all() -> None:
        PUBSUB_RECONNECTS.inc()
        hub.resync_all()  # the link lost its connection a while: every socket gets a snapshot

    link = RedisChannelLink(redis, on_reconnect=resync_all)
    views = ViewStore(redis)
    presence = PresenceStore(redis)

    async def broadcast(cart_id: str, frame: bytes) -> None:
        await hub.broadcast(cart_id, frame)  # this process's sockets first, then Redis

    projection = Projection(views, broadcast, load_view)
    hub = Hub(projection, presence, link, observer=PrometheusHubObserver())
    dispatcher = OutboxDispatcher(
        database_url,
        each_of([project_outbox_record(projection), publish_order_updates(link), *consumers]),
    )
    return Live(link, views, presence, projection, hub, dispatcher, engine)


def reminders_by_socket(hub: Hub) -> Remind:
    """The sweeper's reminders go to the member's sockets, in every process (this one's
    first, then through Redis)."""

    async def remind(cart_id: str, user_id: str, deadline: datetime, what: str) -> None:
        frame = reminder_frame([user_id], Reminder(deadline=deadline, what=what))
        await hub.broadcast(cart_id, frame)

    return remind


def build_runner(
    engine: AsyncEngine, gateway: PaymentGateway, *, relay: Relay | None
) -> UnitOfWorkRunner:
    """The unit-of-work runner: outbox payloads in the projection's format, this process's
    dispatcher as the relay, and refunds carried out after commit."""

    async def refund(cart_id: str | None, payment_intent_ids: Sequence[str]) -> int:
        return await carry_out_refunds(
            runner, cart_id=cart_id, payment_intent_ids=list(payment_intent_ids) or None
        )

    runner = UnitOfWorkRunner(engine, gateway, event_payloads, refund, relay)
    return runner


RATE_LIMITED = MappingProxyType(
    {
        "rate_limit_sessions": ("POST", "/api/v1/sessions"),
        "rate_limit_joins": ("POST", "/api/v1/teamcarts/join"),
        # Signing up is a new session too, and costs a password hash.
        "rate_limit_accounts": ("POST", "/api/v1/accounts"),
    }
)
"""The routes a client address may call only so often, each with its own count (API.md).
Password sign-ins have limits of their own, by address and by email (:func:`build_accounts`)."""


def rate_limits(per_minute: int) -> list[DefineMiddleware]:
    """Litestar's rate limiter, once per limited route (429 ``rate_limited``), counted in
    Redis so every server process shares the count; none when ``per_minute`` is 0."""
    if per_minute <= 0:
        return []

    def only(method: str, path: str) -> Callable[[Request[Any, Any, Any]], bool]:
        return lambda request: request.method == method and request.url.path == path

    return [
        RateLimitConfig(
            rate_limit=("minute", per_minute),
            check_throttle_handler=only(method, path),
            store=store,
        ).middleware
        for store, (method, path) in RATE_LIMITED.items()
    ]


def build_accounts(resources: Resources) -> Accounts:
    """The account handlers' parts: the rows, the Argon2id hasher, and the sign-in limits
    (``limits``'s moving windows) counted in Redis on the process's own connection pool, so
    every server process shares the counts and closing the resources closes them too."""
    storage = RedisStorage(
        "async+redis://",  # where to connect is the pool's (a unix socket when embedded)
        implementation="redispy",
        # limits types its client options as scalars; its redis-py bridge takes a pool here.
        connection_pool=resources.redis.connection_pool,  # type: ignore[arg-type]
        key_prefix="teamcart:sign_ins",
    )
    limits = SignInLimits(storage, per_address=resources.settings.rate_limit_per_minute)
    return Accounts(rows=SqlAccounts(resources.engine), passwords=Passwords(), limits=limits)


def build_store_payments(resources: Resources) -> StorePayments:
    """Stores' payments: the keys that seal their secrets (``TEAMCART_SECRETS_KEY``, or the
    data folder's own), and the loop that retries the transfers and reversals Stripe has not
    made yet, every sweep interval."""
    settings = resources.settings
    return StorePayments(
        runner=resources.runner,
        keyring=keyring_for(settings.secrets_keys, settings.data_dir),
        transfers=StoreTransfers(resources.engine, resources.gateway),
        retry_interval=settings.sweep_interval_seconds,
    )


GC_THRESHOLDS = (20_000, 20, 20)


def tune_garbage_collector() -> None:
    """Keep the cyclic collector's pauses off the request and WebSocket latency.

    Everything built at start-up (modules, the app, pools) lives as long as the process, so
    it is frozen out of the collector's full passes. And the youngest generation is collected
    after 20,000 allocations instead of 700: objects of requests still in flight are no
    longer promoted to the old generation, which grew until a full pass walked every open
    socket's objects, stalling the event loop for 100-200 ms (measured by bench/fanout.py;
    ADR 0004).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def create_app(settings: Settings, *, debug: bool = False, server: bool = False) -> Litestar:
    """Build the ASGI application for fully resolved settings.

    ``server``: this app is the process's one app (``teamcart serve``'s workers), so it may
    tune process-wide settings at start-up (the garbage collector); tests, which build many
    apps in one process, leave them alone."""
    resources, mailer = build_resources(settings)
    jwt_auth = build_jwt_auth(resources.jwt_secret)
    metrics = prometheus_config()
    accounts = build_accounts(resources)
    store_payments = build_store_payments(resources)

    async def provide_resources() -> Resources:
        return resources

    async def provide_accounts() -> Accounts:
        return accounts

    async def provide_store_payments() -> StorePayments:
        return store_payments

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        async with (
            running_sweeper(
                resources.engine,
                resources.runner,
                settings.payment_window,
                settings.sweep_interval_seconds,
                reminders_by_socket(resources.live.hub),
            ),
            resources.live.running(),
            mailer.running() if mailer else contextlib.nullcontext(),
            store_payments.running(),
        ):
            if server:
                tune_garbage_collector()
            yield
        await resources.close()

    exception_handlers: dict[Any, Any] = {Exception: unexpected_exception_handler}
    return Litestar(
        route_handlers=[
            HealthController,
            MetricsController,
            SessionController,
            AccountController,
            MeController,
            *([DevMailController] if settings.mail_catcher_dir is not None else []),
            *([DevStripeController] if serves_emulator(settings) else []),
            CatalogController,
            TeamCartController,
            ShopCartController,
            OrderController,
            StoreOrderController,
            PaymentController,
            ReferralController,
            AdminReferralController,
            StripeWebhookController,
            StorePaymentsController,
            StoreWebhookController,
            cart_socket,
            order_socket,
            index,
            invite,
            static_files,
        ],
        dependencies={
            "resources": Provide(provide_resources),
            "accounts": Provide(provide_accounts),
            "store_payments": Provide(provide_store_payments),
        },
        plugins=[
            ProblemDetailsPlugin(problem_details_config()),
            structlog_plugin(level=settings.log_level, as_json=settings.log_json),
        ],
        middleware=[
            RequestIdMiddleware(),
            metrics.middleware,
            *rate_limits(settings.rate_limit_per_minute),
            IdempotencyMiddleware(resources.engine),
        ],
        stores={
            store: RedisStore(resources.redis, namespace=f"teamcart:{store}")
            for store in RATE_LIMITED
        },
        on_app_init=[jwt_auth.on_app_init],
        before_request=check_json_body,  # JSON bodies held strictly to their structs
        lifespan=[lifespan],
        exception_handlers=exception_handlers,
        openapi_config=OpenAPIConfig(
            title="TeamCart",
            version="1",
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
            components=Components(
                security_schemes={
                    "BearerToken": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
                }
            ),
        ),
        # Cross-origin calls only from the public URL, when one is set; without one, no CORS
        # layer at all (it would refuse every other origin anyway, at a cost per request).
        cors_config=CORSConfig(allow_origins=[settings.public_url])
        if settings.public_url
        else None,
        request_max_body_size=MAX_REQUEST_BODY_BYTES,
        state=State({"resources": resources}),
        debug=debug,
    )
