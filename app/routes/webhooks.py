"""``POST /api/v1/webhooks/stripe``: Stripe's events, verified, then applied exactly once.

400 ``invalid_signature`` for a missing, malformed, wrong or stale signature, and 400
``malformed_event`` for a verified body that is not an event: nothing is stored for either.
200 for an event processed now, before, or deliberately ignored. 503 only for transient
failures (database, Redis or Stripe unreachable), so Stripe delivers the event again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec
import structlog
from litestar import Controller, Request, post
from litestar.status_codes import HTTP_200_OK
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import DBAPIError

from app.errors import ApiError
from app.payments.gateway import GatewayError
from app.payments.signatures import InvalidSignature, verify_signature
from app.resources import AppResources, Resources
from app.use_cases.payments.webhooks import WEBHOOKS, handle_stripe_event

log = structlog.get_logger("teamcart.webhooks")

TRANSIENT = (DBAPIError, OSError, TimeoutError, GatewayError, RedisConnectionError)


class WebhookAnswer(msgspec.Struct):
    received: bool
    outcome: str
    reason: str | None = None


def _parse_event(payload: bytes) -> dict[str, Any]:
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise ApiError(400, "malformed_event", "the body is not JSON") from exc
    except RecursionError as exc:
        raise ApiError(400, "malformed_event", "the body is nested too deeply") from exc
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not event["id"]
        or not isinstance(event.get("type"), str)
        or not isinstance(event.get("data"), dict)
        or not isinstance(event["data"].get("object"), dict)
    ):
        raise ApiError(400, "malformed_event", "not a Stripe event (id, type, data.object)")
    return event


def utf8_body(payload: bytes) -> bytes:
    """Stripe sends UTF-8 JSON (and the SDK verifies text): anything else is 400."""
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "malformed_event", "the body is not UTF-8 text") from exc
    return payload


async def take_in(
    payload: bytes, signature: str | None, secrets: Sequence[str], resources: Resources
) -> WebhookAnswer:
    """Verify ``payload`` against ``secrets``, then apply the event exactly once: the intake
    of the platform's endpoint and of each store's own (``app.routes.store_payments``)."""
    try:
        verify_signature(payload, signature, secrets)
    except InvalidSignature as exc:
        WEBHOOKS.labels(type="unknown", outcome="invalid_signature").inc()
        raise ApiError(400, "invalid_signature", str(exc)) from exc
    event = _parse_event(payload)
    try:
        outcome = await handle_stripe_event(resources.runner, event)
    except TRANSIENT as exc:
        WEBHOOKS.labels(type=event["type"], outcome="transient_failure").inc()
        log.warning("webhook_transient_failure", event_id=event["id"], error=repr(exc))
        raise ApiError(
            503, "service_unavailable", "could not process the event now; retry later"
        ) from exc
    return WebhookAnswer(received=True, outcome=outcome.outcome, reason=outcome.reason)


class StripeWebhookController(Controller):
    path = "/api/v1/webhooks"
    tags = ["webhooks"]  # noqa: RUF012

    @post("/stripe", status_code=HTTP_200_OK)
    async def stripe_event(
        self, request: Request[Any, Any, Any], resources: AppResources
    ) -> WebhookAnswer:
        payload = utf8_body(await request.body())
        return await take_in(
            payload,
            request.headers.get("stripe-signature"),
            resources.settings.stripe_webhook_secrets,
            resources,
        )
