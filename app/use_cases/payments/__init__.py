"""Payments, by job: members' PaymentIntents (``intents``), refunds (``refunds``), Stripe's
events (``webhooks``) and reconciliation with Stripe (``reconcile``).

The money rules (ARCHITECTURE.md) live in the domain (``TeamCart.record_online_payment``,
``payable_share``, ``refund_paid_members``); these modules fetch what Stripe says, hand it to
the aggregate and carry out what it decides. Their SQL is ``app.persistence.payments``.
"""
