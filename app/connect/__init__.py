"""Stores get paid: Stripe Connect onboarding, the platform's fee, the store's transfers and
their reversals, payouts, and each store's payment settings (ADR 0018).

- ``service.py``: :class:`StorePayments`, the parts the routes and the app's lifespan use.
- ``onboarding.py``: a store's Connect account, its account links, where onboarding stands.
- ``settings.py``: COD / online on or off, the fee, a store's own Stripe secrets (sealed,
  write-only; ``app.secrets``) and their rotation.
- ``charges.py``: the hooks the payment use cases call (``online_disabled``,
  ``cod_disabled``, destination charges, transfer groups).
- ``transfers.py``: the outbox consumer and retry loop that pay stores and take refunds back.
- ``payouts.py``: the staff's page of transfers and payouts.
- ``events.py``: ``account.updated`` and connected accounts' ``payout.*`` webhooks.
- ``money.py``: the fee and the store's part, one rounding rule, to the minor unit.
- ``rows.py``: every Connect statement.
"""
