"""Logs and metrics: structured JSON logs with a request id, and Prometheus at ``/metrics``.

Every request gets an id (the caller's ``X-Request-ID`` if it sent a sane one — up to 100
ASCII letters, digits and ``._:-`` — else a new one, whatever bytes the header held); it is
bound into structlog's context so every log line of the request carries it, and it is echoed
in the response header. Metrics come from Litestar's Prometheus middleware
(requests, latency) plus the product's own counters defined where they are incremented.
"""

from __future__ import annotations

import logging
import re
import uuid

import structlog
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.logging.config import (
    LoggingConfig,
    StructLoggingConfig,
    default_logger_factory,
    default_structlog_processors,
)
from litestar.middleware import ASGIMiddleware
from litestar.plugins.prometheus import PrometheusConfig
from litestar.plugins.structlog import StructlogConfig, StructlogPlugin
from litestar.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "x-request-id"
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,100}")  # matched on the raw header bytes


class RequestIdMiddleware(ASGIMiddleware):
    """Bind a request id into the log context and echo it in ``X-Request-ID``."""

    scopes = ("http", "websocket")  # type: ignore[assignment]

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        incoming = dict(scope.get("headers", [])).get(REQUEST_ID_HEADER.encode(), b"")
        sane = _SANE_REQUEST_ID.fullmatch(incoming)
        request_id = incoming.decode("ascii") if sane else uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        if scope["type"] == ScopeType.WEBSOCKET:  # no response headers to stamp
            await next_app(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableScopeHeaders.from_message(message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        await next_app(scope, receive, send_with_id)


def structlog_plugin(*, level: str, as_json: bool) -> StructlogPlugin:
    """JSON lines by default; plain console lines with ``TEAMCART_LOG_JSON=false``.

    The processors and the logger factory must agree: JSON renders bytes for a bytes logger,
    the console renderer text for a text one (Litestar would pick the factory from whether
    stderr is a terminal, not from this setting)."""
    return StructlogPlugin(
        config=StructlogConfig(
            structlog_logging_config=StructLoggingConfig(
                processors=default_structlog_processors(as_json=as_json),
                logger_factory=default_logger_factory(as_json=as_json),
                # Unhandled errors are logged once, by app.errors; 4xx are not errors.
                log_exceptions="never",
                pretty_print_tty=False,
                wrapper_class=structlog.make_filtering_bound_logger(
                    logging.getLevelNamesMapping()[level]
                ),
                standard_lib_logging_config=LoggingConfig(
                    log_exceptions="never",
                    root={"level": level, "handlers": ["queue_listener"]},
                    loggers={
                        "teamcart": {"level": level, "propagate": True},
                        "uvicorn.access": {"level": "WARNING", "propagate": True},
                    },
                ),
            ),
            enable_middleware_logging=False,
        )
    )


def prometheus_config() -> PrometheusConfig:
    """Request counters and latency histograms per route, under the ``teamcart`` prefix.

    WebSockets are left out: a socket's "duration" is its whole life, and keeping per-request
    state for every open socket costs memory; ``teamcart_websocket_*`` (``app.live``) counts
    them instead."""
    return PrometheusConfig(
        app_name="teamcart",
        prefix="teamcart",
        group_path=True,
        exclude=["^/metrics", "^/health/", "^/ws/"],
    )
