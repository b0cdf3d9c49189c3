"""Referrals around the rules of ``domain.referrals``: the I/O that attributes carts, accrues
commissions from the order outbox, and reports them.

- ``repository``: the SQL (``SqlReferrals``, one connection) of every table of migration
  0018: codes, attributions, commissions, reversals, fingerprints, consumed records, audit.
- ``attribution``: the cart-opening handlers that fix a referral code on a new cart, in the
  cart's own unit of work.
- ``accrual``: the outbox consumer (``ReferralAccrual``) that judges each order once and keeps
  its commission in step with it; idempotent on the outbox record and on the order.
- ``reports``: totals and rows for a referrer or for admins, as JSON or CSV, read in batches.

How and why: ``docs/adr/0017-referrals.md``.
"""
