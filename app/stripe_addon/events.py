"""Events as Stripe sends them: the ``event`` envelope, the ``Stripe-Signature`` header, and
delivery to every registered webhook endpoint, retried in the background.

The server verifies what arrives with the SDK (``app.payments.signatures``), exactly as it
verifies Stripe's own deliveries, so the envelope and the signature must be Stripe's to the
byte: ``t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the endpoint's secret>``,
computed afresh for each attempt as Stripe does (a retry an hour later is not "stale").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from app.stripe_addon.sessions import new_id

log = logging.getLogger("teamcart.stripe_addon.events")

RETRY_DELAYS_SECONDS: tuple[float, ...] = (1, 2, 4, 8)
"""Waits between delivery attempts after the first: five attempts over about 15 s. Stripe
retries for days; the emulator's server is either up by then or gone."""

ATTEMPT_TIMEOUT_SECONDS = 10.0


def event_envelope(
    event_type: str,
    obj: Mapping[str, Any],
    *,
    api_version: str,
    created: int | None = None,
    request_id: str | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """A Stripe ``event`` object about ``obj``. ``request`` names the API request that
    caused it, or ``null``s when the customer did (paying on the hosted page, expiry)."""
    return {
        "id": new_id("evt_"),
        "object": "event",
        "api_version": api_version,
        "created": int(time.time()) if created is None else created,
        "data": {"object": dict(obj)},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": request_id, "idempotency_key": idempotency_key},
        "type": event_type,
    }


def signature_header(payload: bytes, secret: str, timestamp: int) -> str:
    """``Stripe-Signature`` for ``payload`` signed with ``secret`` at ``timestamp``."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def event_body(event: Mapping[str, Any]) -> bytes:
    """The bytes delivered (and signed): JSON, as Stripe sends it."""
    return json.dumps(event, indent=2).encode()


@dataclass(frozen=True, slots=True)
class Webhook:
    """A registered endpoint (``POST /_config/webhooks/{id}``): where, the secret it checks
    signatures with, and the event types it wants (``None``: all)."""

    url: str
    secret: str
    events: frozenset[str] | None = None

    def wants(self, event_type: str) -> bool:
        return self.events is None or event_type in self.events


class WebhookSender:
    """Delivers events to the registered endpoints in background tasks, each endpoint on its
    own: a 2xx answer ends the delivery; anything else (an error status, a refused or timed
    out connection) is tried again after ``retry_delays``, then given up and logged."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        retry_delays: Sequence[float] = RETRY_DELAYS_SECONDS,
    ) -> None:
        self._http = http
        self._delays = tuple(retry_delays)
        self._webhooks: dict[str, Webhook] = {}
        self._tasks: set[asyncio.Task[bool]] = set()

    def register(self, webhook_id: str, webhook: Webhook) -> None:
        self._webhooks[webhook_id] = webhook

    def send(self, event: Mapping[str, Any]) -> None:
        """Start delivering ``event`` to every endpoint that wants its type."""
        payload = event_body(event)
        for webhook in self._webhooks.values():
            if webhook.wants(str(event["type"])):
                task = asyncio.create_task(self._deliver(webhook, payload, str(event["type"])))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until every delivery started so far has ended (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _deliver(self, webhook: Webhook, payload: bytes, event_type: str) -> bool:
        for attempt, delay in enumerate((0.0, *self._delays), start=1):
            await asyncio.sleep(delay)
            outcome = await self._attempt(webhook, payload)
            if outcome is None:
                log.info("webhook %s delivered to %s", event_type, webhook.url)
                return True
            log.info(
                "webhook %s to %s failed (attempt %d): %s",
                event_type,
                webhook.url,
                attempt,
                outcome,
            )
        log.warning("webhook %s to %s given up", event_type, webhook.url)
        return False

    async def _attempt(self, webhook: Webhook, payload: bytes) -> str | None:
        """One POST; ``None`` when the endpoint took it, else what went wrong."""
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": signature_header(payload, webhook.secret, int(time.time())),
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        try:
            async with self._http.post(
                webhook.url,
                data=payload,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT_SECONDS),
            ) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}"
