"""Prometheus metrics of the Shopify client (served by the storefront process at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "ops_shopify_requests_total",
    "GraphQL Admin API requests, by operation (our operation names) and result "
    "(OK, THROTTLED, REJECTED, SERVER_ERROR, TRANSPORT_ERROR)",
    ["operation", "result"],
)
REQUEST_SECONDS = Histogram(
    "ops_shopify_request_seconds",
    "Time of one GraphQL Admin API request, from sending to the answer",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
THROTTLE_WAIT_SECONDS = Histogram(
    "ops_shopify_throttle_wait_seconds",
    "Time a request waited for the shop's cost bucket before it was sent (0 when it had the points)",
    buckets=(0, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
