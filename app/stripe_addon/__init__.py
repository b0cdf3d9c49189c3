"""The Stripe add-on: Checkout Sessions and Connect, shaped exactly as Stripe's, served in
front of the ``localstripe`` emulator, which has neither (ADR 0015, ADR 0018).

It is the API base the SDK uses in the embedded default and in tests: it answers
``/v1/checkout/sessions…`` and the hosted payment page itself and passes every other request
to localstripe unchanged, so product code always talks to "Stripe" through the official SDK.

- ``server.py``: the aiohttp application, its routes, Stripe's error shape, idempotency.
- ``checkout.py``: the sessions kept in memory; create, pay, expire (by the API or the clock).
- ``sessions.py``: the create parameters checked as Stripe checks them, the session's states
  and the ``checkout.session`` object.
- ``hosted_page.py`` and ``checkout.html``: the stand-in for Stripe's hosted Checkout page.
- ``connect.py``: Stripe Connect (ADR 0018): accounts, account links, transfers and
  reversals, destination charges' terms on PaymentIntents, application fees, payouts.
- ``onboarding.py`` and ``onboarding.html``: the stand-in for Stripe's Connect onboarding.
- ``events.py``: the ``event`` envelope, ``Stripe-Signature``, delivery with retries.
- ``forms.py``: Stripe's bracket-notation form bodies, both ways.
- ``upstream.py``: the calls to localstripe and the pass-through proxy.
- ``__main__.py``: ``python -m app.stripe_addon``, the child process ``app.embedded`` starts.
"""
