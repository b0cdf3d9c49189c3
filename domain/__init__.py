"""TeamCart's business rules, free of I/O and frameworks.

- ``errors``: the tree of refusals, each with a stable ``code``.
- ``money``: integer minor units and ISO 4217 exponents.
- ``catalog``: store, product, option and coupon snapshots; option validation and pricing.
- ``pricing``: tax, discount, totals and the largest-remainder split into member shares.
- ``payments``: payment methods and statuses shared by carts and orders.
- ``events``: past-tense facts with consecutive versions, and their JSON wire form.
- ``teamcart``: the TeamCart aggregate (the group cart from invite to confirm).
- ``order``: the Order aggregate a confirmed cart becomes.

This package imports only the standard library; time, ids and codes are passed in.
"""
