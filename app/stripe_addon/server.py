"""The add-on's HTTP server (aiohttp, as localstripe itself): Stripe's Checkout Session API and
its hosted page, in front of localstripe, which answers everything else.

Routes, in the order they are matched:

- ``/v1/checkout/sessions`` (create, list), ``/v1/checkout/sessions/{id}`` (retrieve),
  ``/v1/checkout/sessions/{id}/line_items``, ``/v1/checkout/sessions/{id}/expire``; any
  other ``/v1/checkout/…`` is Stripe's "Unrecognized request URL" 404;
- ``GET /v1/events/{id}`` for the add-on's own events (others go to localstripe);
- ``GET|POST /checkout/{id}``: the hosted page;
- ``POST /_config/webhooks/{id}``: localstripe's webhook registration, recorded here too
  (so Checkout events go where localstripe's go, signed with the same secret) and forwarded;
- ``DELETE /_config/data``: localstripe's flush, which forgets the sessions too;
- ``GET /_addon/health``: answers once the add-on serves (what ``app.embedded`` waits for);
- Connect (``connect.py``): ``/v1/accounts``, ``/v1/accounts/{id}``, ``/v1/account_links``
  and the onboarding page it links to (``/connect/onboarding/{token}``), ``/v1/transfers``
  (create, list, retrieve) and ``…/{id}/reversals``, ``/v1/application_fees/{id}`` and
  ``…/refunds``, ``GET /v1/payouts`` of a connected account (``Stripe-Account``; the
  platform's own go to localstripe), ``POST /_addon/connect/accounts/{id}/payouts`` (a test
  hook: a payout paid or failed, and its events); PaymentIntents with Connect parameters
  (created here without them at localstripe, every answer about them given them back) and
  their charges;
- everything else: passed to localstripe unchanged (``Upstream.forward``).

API errors are Stripe's shape, ``{"error": {"type", "message", "code"?, "param"?}}``, with
Stripe's statuses, and every API answer carries a ``Request-Id``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from types import MappingProxyType
from typing import Any

import aiohttp
import stripe
from aiohttp import web

from app.stripe_addon.checkout import ApiRequest, Checkout, Paid
from app.stripe_addon.connect import CHARGE_PARAMS, Connect
from app.stripe_addon.events import Webhook, WebhookSender, event_envelope
from app.stripe_addon.forms import FormError, FormValue, form_list, parse_form
from app.stripe_addon.hosted_page import CardForm, HostedPage, read_card
from app.stripe_addon.onboarding import OnboardingPage
from app.stripe_addon.sessions import (
    CheckoutSession,
    SessionNotOpen,
    SessionStatus,
    StripeApiError,
    new_id,
)
from app.stripe_addon.upstream import Upstream, UpstreamError

log = logging.getLogger("teamcart.stripe_addon")

CHECKOUT: web.AppKey[Checkout] = web.AppKey("checkout", Checkout)
UPSTREAM: web.AppKey[Upstream] = web.AppKey("upstream", Upstream)
SENDER: web.AppKey[WebhookSender] = web.AppKey("sender", WebhookSender)
PAGE: web.AppKey[HostedPage] = web.AppKey("page", HostedPage)
CONNECT: web.AppKey[Connect] = web.AppKey("connect", Connect)
ONBOARDING: web.AppKey[OnboardingPage] = web.AppKey("onboarding", OnboardingPage)

_PAGE_HEADERS = MappingProxyType(
    {
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
        "base-uri 'none'; frame-ancestors 'none'",
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
    }
)


def create_addon(
    upstream_base: str, *, public_base: str, api_version: str | None = None
) -> web.Application:
    """The add-on in front of localstripe at ``upstream_base``; the hosted page's URLs start
    with ``public_base``. Events say ``api_version`` (default: the SDK's pinned version)
    unless the creating request sent ``Stripe-Version``."""
    app = web.Application(middlewares=[_stripe_errors], client_max_size=1024**2)
    app[PAGE] = HostedPage()
    app[ONBOARDING] = OnboardingPage()
    app[ANSWERS] = IdempotentAnswers()

    async def services(app: web.Application) -> AsyncIterator[None]:
        async with (
            aiohttp.ClientSession(auto_decompress=False) as proxied,
            aiohttp.ClientSession() as deliveries,
        ):
            app[UPSTREAM] = Upstream(upstream_base, proxied)
            app[SENDER] = WebhookSender(deliveries)
            app[CONNECT] = Connect(
                app[SENDER], public_base=public_base, api_version=api_version or stripe.api_version
            )
            app[CHECKOUT] = Checkout(
                app[UPSTREAM],
                app[SENDER],
                public_base=public_base,
                api_version=api_version or stripe.api_version,
                connect=app[CONNECT],
            )
            expiry = asyncio.create_task(app[CHECKOUT].run_expiry())
            try:
                yield
            finally:
                expiry.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await expiry
                await app[SENDER].close()

    app.cleanup_ctx.append(services)
    routes = app.router
    routes.add_post("/v1/checkout/sessions", create_session)
    routes.add_get("/v1/checkout/sessions", list_sessions)
    routes.add_get("/v1/checkout/sessions/{id}", retrieve_session)
    routes.add_get("/v1/checkout/sessions/{id}/line_items", list_line_items)
    routes.add_post("/v1/checkout/sessions/{id}/expire", expire_session)
    routes.add_route("*", "/v1/checkout/{tail:.*}", unrecognized)
    routes.add_get("/v1/events/{id}", retrieve_event)
    routes.add_get("/checkout/{id}", show_page)
    routes.add_post("/checkout/{id}", pay_on_page)
    routes.add_post("/_config/webhooks/{id}", register_webhook)
    routes.add_delete("/_config/data", flush_data)
    routes.add_get("/_addon/health", health)

    async def confirm_intent(request: web.Request) -> web.StreamResponse:
        """Confirm through localstripe, then say what Stripe says and localstripe doesn't: a
        card only authorised (``capture_method=manual``) is reported by a signed
        ``payment_intent.amount_capturable_updated``."""
        answer = await request.app[UPSTREAM].forward(request)
        if 200 <= answer.status < 300 and "Content-Encoding" not in answer.headers:
            assert isinstance(answer.body, bytes)
            intent = json.loads(answer.body)
            if intent.get("status") == "requires_capture":
                intent["amount_capturable"] = intent.get("amount")
                request.app[SENDER].send(
                    event_envelope(
                        "payment_intent.amount_capturable_updated",
                        intent,
                        api_version=api_version or stripe.api_version,
                        request_id=_request_id(request),
                        idempotency_key=request.headers.get("Idempotency-Key"),
                    )
                )
        return answer

    routes.add_post("/v1/payment_intents/{id}/confirm", confirm_intent)
    _connect_routes(routes)
    routes.add_route("*", "/{tail:.*}", proxy)
    return app


def _connect_routes(routes: web.UrlDispatcher) -> None:
    routes.add_post("/v1/accounts", create_account)
    routes.add_get("/v1/accounts/{id}", retrieve_account)
    routes.add_post("/v1/account_links", create_account_link)
    routes.add_get("/connect/onboarding/{token}", show_onboarding)
    routes.add_post("/connect/onboarding/{token}", submit_onboarding)
    routes.add_post("/v1/transfers", create_transfer)
    routes.add_get("/v1/transfers", list_transfers)
    routes.add_get("/v1/transfers/{id}", retrieve_transfer)
    routes.add_post("/v1/transfers/{id}/reversals", create_reversal)
    routes.add_get("/v1/transfers/{id}/reversals", list_reversals)
    routes.add_get("/v1/application_fees/{id}", retrieve_fee)
    routes.add_post("/v1/application_fees/{id}/refunds", refund_fee)
    routes.add_get("/v1/payouts", list_payouts)
    routes.add_post("/v1/payment_intents", create_payment_intent)
    routes.add_route("*", "/v1/payment_intents/{id}", payment_intent_call)
    routes.add_route("*", "/v1/payment_intents/{id}/{action}", payment_intent_call)
    routes.add_get("/v1/charges/{id}", retrieve_charge)
    routes.add_post("/_addon/connect/accounts/{id}/payouts", emit_payout)


# --- the API -----------------------------------------------------------------------------


@web.middleware
async def _stripe_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except StripeApiError as exc:
        return stripe_json(request, exc.body(), status=exc.status)
    except FormError as exc:
        return stripe_json(
            request,
            StripeApiError(400, str(exc), code="parameter_invalid_empty", param=exc.param).body(),
            status=400,
        )
    except UpstreamError as exc:
        error = {"type": "api_error", "message": exc.message}
        return stripe_json(request, {"error": error}, status=502)


def stripe_json(request: web.Request, body: Any, *, status: int = 200) -> web.Response:
    """A JSON answer as Stripe's API gives it, with its ``Request-Id``."""
    response = web.Response(
        status=status,
        body=json.dumps(body, indent=2).encode(),
        content_type="application/json",
    )
    response.headers["Request-Id"] = _request_id(request)
    if "Stripe-Version" in request.headers:
        response.headers["Stripe-Version"] = request.headers["Stripe-Version"]
    return response


def _request_id(request: web.Request) -> str:
    known = request.get("request_id")
    if isinstance(known, str):
        return known
    request["request_id"] = new_id("req_", 14)
    return str(request["request_id"])


def api_key_of(request: web.Request) -> str:
    """The secret key the request authenticates with (Bearer, or Basic as ``key:``), as
    Stripe reads it; 401 in Stripe's words without one."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    key = credentials.strip()
    if scheme.lower() == "basic":
        with contextlib.suppress(ValueError):
            key = base64.b64decode(key).decode().split(":", 1)[0]
    if not key:
        raise StripeApiError(
            401,
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY').",
        )
    if not key.startswith(("sk_", "rk_")):
        raise StripeApiError(401, f"Invalid API Key provided: {key[:8]}…")
    return key


def _asked(request: web.Request) -> ApiRequest:
    return ApiRequest(
        api_key=api_key_of(request),
        request_id=_request_id(request),
        idempotency_key=request.headers.get("Idempotency-Key"),
        api_version=request.headers.get("Stripe-Version"),
    )


def _expand(params: dict[str, FormValue]) -> list[str]:
    value = params.get("expand")
    listed = form_list(value) if value is not None else []
    return [item for item in listed or [] if isinstance(item, str)]


async def _session_object(
    request: web.Request, session: CheckoutSession, expand: list[str]
) -> dict[str, Any]:
    obj = session.to_stripe(expand=expand)
    if "payment_intent" in expand:
        obj["payment_intent"] = await request.app[UPSTREAM].retrieve_payment_intent(
            session.payment_intent, api_key=api_key_of(request)
        )
    return obj


class IdempotentAnswers:
    """Stripe's ``Idempotency-Key``: a key used again by the same account, with the same
    request, gets the first answer again (``Idempotent-Replayed: true``); with another
    request, Stripe's ``idempotency_error``. Only answers of requests that succeeded are
    kept, as Stripe keeps no result for a request refused before it ran. Requests with the
    same key wait for each other, so concurrent retries create one session."""

    def __init__(self) -> None:
        self._answers: dict[tuple[str, str], tuple[str, int, bytes]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def answer(
        self,
        request: web.Request,
        body: bytes,
        run: Callable[[], Awaitable[web.Response]],
    ) -> web.Response:
        key = request.headers.get("Idempotency-Key")
        if not key:
            return await run()
        scope = (api_key_of(request), key)
        fingerprint = hashlib.sha256(
            f"{request.method} {request.path}\n".encode() + body
        ).hexdigest()
        async with self._locks.setdefault(scope, asyncio.Lock()):
            known = self._answers.get(scope)
            if known is not None:
                if known[0] != fingerprint:
                    raise StripeApiError(
                        400,
                        "Keys for idempotent requests can only be used with the same "
                        "parameters they were first used with. Try using a key other than "
                        f"'{key}' if you meant to execute a different request.",
                        error_type="idempotency_error",
                    )
                replay = stripe_json(request, json.loads(known[2]), status=known[1])
                replay.headers["Idempotent-Replayed"] = "true"
                return replay
            response = await run()
            if 200 <= response.status < 300 and isinstance(response.body, bytes):
                self._answers[scope] = (fingerprint, response.status, response.body)
            return response


ANSWERS: web.AppKey[IdempotentAnswers] = web.AppKey("answers", IdempotentAnswers)


async def create_session(request: web.Request) -> web.StreamResponse:
    asked = _asked(request)
    body = await request.read()
    params = parse_form(body)

    async def run() -> web.Response:
        session = await request.app[CHECKOUT].create(params, asked)
        log.info("created %s (%s)", session.id, session.payment_intent)
        return stripe_json(request, await _session_object(request, session, _expand(params)))

    return await request.app[ANSWERS].answer(request, body, run)


async def retrieve_session(request: web.Request) -> web.StreamResponse:
    api_key_of(request)
    session = request.app[CHECKOUT].get(request.match_info["id"])
    params = parse_form(request.query_string)
    return stripe_json(request, await _session_object(request, session, _expand(params)))


async def list_sessions(request: web.Request) -> web.StreamResponse:
    """Newest first; ``payment_intent`` filters, ``limit`` (1-100, default 10) and
    ``starting_after`` page, as Stripe's list endpoints do."""
    api_key_of(request)
    params = parse_form(request.query_string)
    intent = params.get("payment_intent")
    found = request.app[CHECKOUT].listed(
        payment_intent=intent if isinstance(intent, str) and intent else None
    )
    after = params.get("starting_after")
    if isinstance(after, str) and after:
        ids = [s.id for s in found]
        if after not in ids:
            raise StripeApiError(
                400, f"No such checkout.session: '{after}'", param="starting_after"
            )
        found = found[ids.index(after) + 1 :]
    limit = _limit(params.get("limit"))
    page = found[:limit]
    expand = [path.removeprefix("data.") for path in _expand(params)]
    return stripe_json(
        request,
        {
            "object": "list",
            "data": [await _session_object(request, s, expand) for s in page],
            "has_more": len(found) > limit,
            "url": "/v1/checkout/sessions",
        },
    )


def _limit(value: FormValue | None) -> int:
    if value is None or value == "":
        return 10
    if not isinstance(value, str) or not value.isdigit() or not 1 <= int(value) <= 100:
        raise StripeApiError(
            400,
            "This value must be greater than or equal to 1 and less than or equal to 100.",
            code="parameter_invalid_integer",
            param="limit",
        )
    return int(value)


async def list_line_items(request: web.Request) -> web.StreamResponse:
    api_key_of(request)
    session = request.app[CHECKOUT].get(request.match_info["id"])
    return stripe_json(request, session.line_items())


async def expire_session(request: web.Request) -> web.StreamResponse:
    asked = _asked(request)
    body = await request.read()

    async def run() -> web.Response:
        session = await request.app[CHECKOUT].expire(request.match_info["id"], asked)
        log.info("expired %s by the API", session.id)
        return stripe_json(request, session.to_stripe())

    return await request.app[ANSWERS].answer(request, body, run)


async def unrecognized(request: web.Request) -> web.StreamResponse:
    raise StripeApiError(
        404,
        f"Unrecognized request URL ({request.method}: {request.path}). The Stripe "
        "emulator's Checkout has sessions (create, retrieve, list, line_items, expire) only.",
    )


async def retrieve_event(request: web.Request) -> web.StreamResponse:
    event_id = request.match_info["id"]
    event = request.app[CHECKOUT].events.get(event_id) or request.app[CONNECT].events.get(event_id)
    if event is None:
        return await request.app[UPSTREAM].forward(request)
    api_key_of(request)
    return stripe_json(request, event)


# --- the hosted page ---------------------------------------------------------------------


def _page(html: str, *, status: int = 200) -> web.Response:
    return web.Response(status=status, text=html, content_type="text/html", headers=_PAGE_HEADERS)


async def show_page(request: web.Request) -> web.StreamResponse:
    page = request.app[PAGE]
    session = request.app[CHECKOUT].find(request.match_info["id"])
    if session is None:
        return _page(page.render_missing(), status=404)
    status = 410 if session.status is SessionStatus.EXPIRED else 200
    return _page(page.render(session), status=status)


async def pay_on_page(request: web.Request) -> web.StreamResponse:
    """The customer pressed Pay: 303 to ``success_url`` when the card paid, the page again
    with the reason when it did not (422 a field, 402 declined, 410 expired, 409 paid)."""
    page = request.app[PAGE]
    checkout = request.app[CHECKOUT]
    session = checkout.find(request.match_info["id"])
    if session is None:
        return _page(page.render_missing(), status=404)
    form = {name: str(value) for name, value in (await request.post()).items()}
    card = read_card(form, today=date.today())
    if isinstance(card, CardForm):
        return _page(page.render(session, form=card), status=422)
    typed = CardForm({**form, "card_cvc": ""})
    try:
        outcome = await checkout.pay(session.id, card, email=form.get("email") or None)
    except SessionNotOpen as exc:
        gone = exc.status is SessionStatus.EXPIRED
        return _page(page.render(session), status=410 if gone else 409)
    except UpstreamError as exc:
        log.warning("paying %s: %s", session.id, exc)
        message = "The Stripe emulator could not take the payment just now. Try again."
        return _page(page.render(session, form=typed, message=message), status=502)
    if isinstance(outcome, Paid):
        log.info("paid %s (%s)", session.id, session.payment_intent)
        raise web.HTTPSeeOther(outcome.session.redirect_url())
    return _page(page.render(session, form=typed, message=outcome.message), status=402)


# --- localstripe's own routes ------------------------------------------------------------


async def register_webhook(request: web.Request) -> web.StreamResponse:
    """Forward the registration; once localstripe took it, send Checkout's events to the
    same URL with the same secret (and the same ``events`` filter)."""
    body = await request.read()
    answer = await request.app[UPSTREAM].forward(request, body)
    if 200 <= answer.status < 300:
        fields = _registration_fields(request.content_type, body)
        url, secret = fields.get("url"), fields.get("secret")
        if isinstance(url, str) and isinstance(secret, str):
            events = form_list(fields["events"]) if "events" in fields else None
            wanted = frozenset(str(e) for e in events) if events is not None else None
            request.app[SENDER].register(
                request.match_info["id"], Webhook(url=url, secret=secret, events=wanted)
            )
            log.info("webhook %s registered: %s", request.match_info["id"], url)
    return answer


def _registration_fields(content_type: str, body: bytes) -> dict[str, FormValue]:
    """localstripe takes the registration as JSON or as a form; so does the add-on."""
    if content_type == "application/json":
        with contextlib.suppress(ValueError):
            data = json.loads(body)
            if isinstance(data, dict):
                events = data.get("events")
                fields: dict[str, FormValue] = {
                    k: str(v) for k, v in data.items() if isinstance(v, str)
                }
                if isinstance(events, list):
                    fields["events"] = {str(i): str(e) for i, e in enumerate(events)}
                return fields
        return {}
    return parse_form(body)


async def flush_data(request: web.Request) -> web.StreamResponse:
    answer = await request.app[UPSTREAM].forward(request)
    if 200 <= answer.status < 300:
        request.app[CHECKOUT].clear()
        request.app[CONNECT].clear()
    return answer


async def health(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok", "upstream": request.app[UPSTREAM].base})


async def proxy(request: web.Request) -> web.StreamResponse:
    return await request.app[UPSTREAM].forward(request)


# --- Connect (connect.py) ----------------------------------------------------------------


async def _idempotent(
    request: web.Request, build: Callable[[dict[str, FormValue]], Awaitable[Any]]
) -> web.Response:
    """A creating call with Stripe's ``Idempotency-Key``: ``build`` makes the object from
    the form's parameters."""
    api_key_of(request)
    body = await request.read()
    params = parse_form(body)

    async def run() -> web.Response:
        return stripe_json(request, await build(params))

    return await request.app[ANSWERS].answer(request, body, run)


async def create_account(request: web.Request) -> web.StreamResponse:
    async def build(params: dict[str, FormValue]) -> Any:
        account = request.app[CONNECT].create_account(params)
        log.info("created account %s", account.id)
        return account.to_stripe()

    return await _idempotent(request, build)


async def retrieve_account(request: web.Request) -> web.StreamResponse:
    api_key_of(request)
    return stripe_json(request, request.app[CONNECT].account(request.match_info["id"]).to_stripe())


async def create_account_link(request: web.Request) -> web.StreamResponse:
    async def build(params: dict[str, FormValue]) -> Any:
        return request.app[CONNECT].create_link(params)

    return await _idempotent(request, build)


async def show_onboarding(request: web.Request) -> web.StreamResponse:
    """The page an account link opens; a used or expired link goes to its ``refresh_url``,
    as Stripe sends it (the platform then makes a fresh link)."""
    connect = request.app[CONNECT]
    token = request.match_info["token"]
    link = connect.usable_link(token)
    if link is None:
        known = connect.links.get(token)
        if known is not None:
            raise web.HTTPSeeOther(known.refresh_url)
        return _page(request.app[ONBOARDING].render_missing(), status=404)
    return _page(request.app[ONBOARDING].render(link))


async def submit_onboarding(request: web.Request) -> web.StreamResponse:
    """Onboarding submitted: the account is enabled (``account.updated`` on it) and the
    browser goes back to the platform's ``return_url`` (303)."""
    connect = request.app[CONNECT]
    token = request.match_info["token"]
    link = connect.links.get(token)
    if link is None:
        return _page(request.app[ONBOARDING].render_missing(), status=404)
    form = {name: str(value) for name, value in (await request.post()).items()}
    name = form.get("business_name", "").strip()
    if connect.usable_link(token) is not None and not name:
        page = request.app[ONBOARDING].render(link, error="Enter the business's name.")
        return _page(page, status=422)
    raise web.HTTPSeeOther(connect.complete_onboarding(token, business_name=name))


async def create_transfer(request: web.Request) -> web.StreamResponse:
    async def build(params: dict[str, FormValue]) -> Any:
        transfer = request.app[CONNECT].create_transfer(params, request_id=_request_id(request))
        log.info("transfer %s of %d to %s", transfer.id, transfer.amount, transfer.destination)
        return transfer.to_stripe()

    return await _idempotent(request, build)


async def list_transfers(request: web.Request) -> web.StreamResponse:
    api_key_of(request)
    params = parse_form(request.query_string)
    return stripe_json(request, request.app[CONNECT].list_transfers(params))


async def retrieve_transfer(request: web.Request) -> web.StreamResponse:
    api_key_of(request)
    transfer = request.app[CONNECT].transfer(request.match_info["id"])
    return stripe_json(request, transfer.to_stripe())


async def create_reversal(request: web.Request) -> web.StreamResponse:
    async def build(params: dict[str, FormValue]) -> Any:
        return request.app[CONNECT].create_reversal(
            request.match_info["id"], params, request_id=_request_id(request)
        )

    return await _idempotent(request, build)


async def list_reversals(request: web.Request) -> web.StreamResponse:
    api_key_of(request)
    transfer = request.app[CONNECT].transfer(request.match_info["id"])
    return stripe_json(request, transfer.to_stripe()["reversals"])


async def retrieve_fee(request: web.Request) -> web.StreamResponse:
    api_key_of(request)
    return stripe_json(request, request.app[CONNECT].fee(request.match_info["id"]).to_stripe())


async def refund_fee(request: web.Request) -> web.StreamResponse:
    async def build(params: dict[str, FormValue]) -> Any:
        return request.app[CONNECT].refund_fee(
            request.match_info["id"], params, request_id=_request_id(request)
        )

    return await _idempotent(request, build)


async def list_payouts(request: web.Request) -> web.StreamResponse:
    """A connected account's payouts (``Stripe-Account``); the platform's own are
    localstripe's."""
    account = request.headers.get("Stripe-Account")
    if not account:
        return await request.app[UPSTREAM].forward(request)
    api_key_of(request)
    params = parse_form(request.query_string)
    return stripe_json(request, request.app[CONNECT].list_payouts(account, params))


async def emit_payout(request: web.Request) -> web.StreamResponse:
    """The test hook: ``amount``, ``currency``, ``status`` (``paid`` or ``failed``) and
    ``failure_code``, as a form or JSON; the payout, after its events are on their way."""
    body = await request.read()
    fields = _registration_fields(request.content_type, body)
    amount = fields.get("amount")
    if not isinstance(amount, str) or not amount.isdigit():
        raise StripeApiError(400, "amount must be a whole number", param="amount")
    currency, status = fields.get("currency", "usd"), fields.get("status", "paid")
    failure = fields.get("failure_code")
    payout = request.app[CONNECT].pay_out(
        request.match_info["id"],
        amount=int(amount),
        currency=currency if isinstance(currency, str) else "usd",
        status=status if isinstance(status, str) else "",
        failure_code=failure if isinstance(failure, str) else None,
    )
    return stripe_json(request, payout)


async def create_payment_intent(request: web.Request) -> web.StreamResponse:
    """A PaymentIntent with Connect parameters is made at localstripe without them (which
    refuses them) and answered with them; any other is localstripe's, unchanged."""
    body = await request.read()
    params = parse_form(body)
    if not CHARGE_PARAMS & set(params) and "on_behalf_of" not in params:
        return await request.app[UPSTREAM].forward(request, body)
    asked = _asked(request)
    connect = request.app[CONNECT]

    async def run() -> web.Response:
        amount = params.get("amount")
        terms = connect.read_charge(
            params, amount=int(amount) if isinstance(amount, str) and amount.isdigit() else 0
        )
        plain = {name: value for name, value in params.items() if name not in CHARGE_PARAMS}
        try:
            intent = await request.app[UPSTREAM].call(
                "POST", "/v1/payment_intents", api_key=asked.api_key, params=plain
            )
        except UpstreamError as exc:
            kind = "api_error" if exc.status >= 500 else "invalid_request_error"
            raise StripeApiError(exc.status, exc.message, code=exc.code, error_type=kind) from exc
        if terms is not None:
            connect.record_charge(str(intent["id"]), terms)
        return stripe_json(request, connect.decorate_intent(intent))

    return await request.app[ANSWERS].answer(request, body, run)


async def payment_intent_call(request: web.Request) -> web.StreamResponse:
    """Any other call on a PaymentIntent: localstripe's answer, with the Connect fields put
    back for an intent made with them (and a destination charge settled once it
    succeeded)."""
    connect = request.app[CONNECT]
    if request.match_info["id"] not in connect.charges:
        return await request.app[UPSTREAM].forward(request)
    answer = await request.app[UPSTREAM].forward(request)
    return _rewritten(request, answer, connect.decorate_intent)


async def retrieve_charge(request: web.Request) -> web.StreamResponse:
    answer = await request.app[UPSTREAM].forward(request)
    return _rewritten(request, answer, request.app[CONNECT].decorate_charge)


def _rewritten(
    request: web.Request, answer: web.Response, change: Callable[[dict[str, Any]], Any]
) -> web.Response:
    """localstripe's JSON answer changed by ``change``; anything else as it came."""
    if not 200 <= answer.status < 300 or "Content-Encoding" in answer.headers:
        return answer
    if not isinstance(answer.body, bytes):
        return answer
    try:
        obj = json.loads(answer.body)
    except ValueError:
        return answer
    if not isinstance(obj, dict):
        return answer
    return stripe_json(request, change(obj), status=answer.status)
