"""The payment metrics shared by the payment modules (Prometheus counters are process-wide)."""

from __future__ import annotations

from prometheus_client import Counter

ALERTS = Counter(
    "teamcart_payment_alerts_total",
    "Payment events that need an operator (rejections, disputes, failed refunds)",
    ["kind"],
)
AMOUNT_MISMATCHES = Counter(
    "teamcart_payment_amount_mismatches_total",
    "Captured payments whose amount, currency or quote did not match what was owed",
)
