"""Stripe: the payment gateway, Stripe's own minor units, and webhook signature checks.

The use cases that decide what a payment means live in ``app.use_cases.payments``; this
package only speaks Stripe.
"""
