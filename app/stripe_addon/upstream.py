"""localstripe, behind the add-on: the calls the add-on makes there itself (the Checkout
Session's PaymentIntent, the card the hosted page takes), and the proxy that passes every
other request through unchanged.

The proxy keeps method, path, query, body and headers (``Authorization``,
``Idempotency-Key``, ``Stripe-Version`` …) as the client sent them, and answers what
localstripe answered, status and headers included; only hop-by-hop headers, which belong to
each connection, are dropped. So code that spoke to localstripe directly sees no difference.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from app.stripe_addon.forms import encode_form

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


class UpstreamError(Exception):
    """localstripe refused a call (``status`` and its JSON ``body``) or could not be
    reached (``status`` 502)."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        error = body.get("error")
        details: Mapping[str, Any] = error if isinstance(error, dict) else {}
        super().__init__(f"localstripe answered {status}: {details or body}")
        self.status = status
        self.body = body
        self.message = str(details.get("message") or f"localstripe answered {status}")
        code = details.get("code")
        self.code: str | None = code if isinstance(code, str) else None


class Upstream:
    """The HTTP client to localstripe at ``base`` (``http://127.0.0.1:PORT``)."""

    def __init__(self, base: str, http: aiohttp.ClientSession) -> None:
        self.base = base.rstrip("/")
        self._http = http

    async def call(
        self,
        method: str,
        path: str,
        *,
        api_key: str,
        params: Mapping[str, Any] | None = None,
        json_body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One API call; its JSON answer, or ``UpstreamError``. ``json_body`` is for the
        one request localstripe reads only as JSON (a ``null`` it must set)."""
        headers = {"Authorization": f"Bearer {api_key}"}
        data: str | bytes | None = None
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        elif params is not None:
            data = encode_form(params)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            async with self._http.request(
                method, self.base + path, data=data, headers=headers
            ) as response:
                text = await response.text()
                status = response.status
        except aiohttp.ClientError as exc:
            raise UpstreamError(502, {"error": {"message": f"localstripe: {exc}"}}) from exc
        try:
            body = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError:
            body = {"error": {"message": text.strip()[:200]}}
        if not 200 <= status < 300:
            raise UpstreamError(status, body if isinstance(body, dict) else {})
        return body if isinstance(body, dict) else {}

    async def create_payment_intent(
        self,
        *,
        api_key: str,
        amount: int,
        currency: str,
        metadata: Mapping[str, str],
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"amount": amount, "currency": currency}
        if metadata:
            params["metadata"] = dict(metadata)
        return await self.call("POST", "/v1/payment_intents", api_key=api_key, params=params)

    async def retrieve_payment_intent(self, intent_id: str, *, api_key: str) -> dict[str, Any]:
        return await self.call("GET", f"/v1/payment_intents/{intent_id}", api_key=api_key)

    async def cancel_payment_intent(self, intent_id: str, *, api_key: str) -> None:
        await self.call("POST", f"/v1/payment_intents/{intent_id}/cancel", api_key=api_key)

    async def pay_with_card(
        self,
        intent_id: str,
        *,
        api_key: str,
        number: str,
        exp_month: int,
        exp_year: int,
        cvc: str,
    ) -> dict[str, Any]:
        """What Checkout does with the card typed on its page: a PaymentMethod, set on the
        intent, confirmed; the confirmed intent. A decline is localstripe's ``402``
        (``UpstreamError``); the intent then takes another card, as Stripe's does.
        """
        intent = await self.retrieve_payment_intent(intent_id, api_key=api_key)
        if intent.get("status") == "requires_payment_method" and intent.get("latest_charge"):
            await self._forget_declined_charge(intent_id, api_key=api_key)
        method = await self.call(
            "POST",
            "/v1/payment_methods",
            api_key=api_key,
            params={
                "type": "card",
                "card": {
                    "number": number,
                    "exp_month": exp_month,
                    "exp_year": exp_year,
                    "cvc": cvc,
                },
            },
        )
        await self.call(
            "POST",
            f"/v1/payment_intents/{intent_id}",
            api_key=api_key,
            params={"payment_method": method["id"]},
        )
        return await self.call("POST", f"/v1/payment_intents/{intent_id}/confirm", api_key=api_key)

    async def _forget_declined_charge(self, intent_id: str, *, api_key: str) -> None:
        """Let a declined intent be confirmed again with another card, as Stripe's can.

        localstripe keeps the failed charge as ``latest_charge`` and then refuses to confirm
        the intent again; Stripe (and Checkout) let the customer try another card on the
        same intent. Clearing the charge is an update localstripe accepts only as JSON (a
        form can't say ``null``). It is done just before the next card, so until then the
        intent reads ``requires_payment_method``, as Stripe's would.
        """
        await self.call(
            "POST",
            f"/v1/payment_intents/{intent_id}",
            api_key=api_key,
            json_body={"latest_charge": None},
        )

    async def abandon_authentication(
        self, intent_id: str, client_secret: str, *, api_key: str
    ) -> None:
        """Fail the 3D Secure step the hosted page does not offer: the intent goes back to
        ``requires_payment_method`` (localstripe's own test endpoint)."""
        await self.call(
            "POST",
            f"/v1/payment_intents/{intent_id}/_authenticate",
            api_key=api_key,
            params={"client_secret": client_secret, "success": False},
        )

    async def forward(self, request: web.Request, body: bytes | None = None) -> web.Response:
        """Pass ``request`` to localstripe as it came and answer what localstripe answers."""
        headers = CIMultiDict(
            (name, value)
            for name, value in request.headers.items()
            if name.lower() not in _HOP_BY_HOP
        )
        data = await request.read() if body is None else body
        try:
            async with self._http.request(
                request.method,
                self.base + request.rel_url.path_qs,
                data=data or None,
                headers=headers,
                allow_redirects=False,
                auto_decompress=False,
            ) as response:
                content = await response.read()
                answer = web.Response(status=response.status, body=content)
                for name, value in response.headers.items():
                    if name.lower() not in _HOP_BY_HOP:
                        answer.headers.add(name, value)
                return answer
        except aiohttp.ClientError as exc:
            return web.json_response(
                {
                    "error": {
                        "type": "api_error",
                        "message": f"The Stripe emulator (localstripe) did not answer: {exc}",
                    }
                },
                status=502,
            )
