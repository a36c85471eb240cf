"""Prometheus metrics of the webhook ingress (served by each worker at ``GET /metrics``).

Labels are bounded: ``source`` is shopify, woocommerce, stripe or supplier; ``code`` is one
of the few HTTP statuses the ingress answers. No shop, provider or event id.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "ops_webhook_requests_total",
    "Webhook requests answered, by source (shopify, woocommerce, stripe, supplier) and HTTP status code",
    ["source", "code"],
)
REQUEST_SECONDS = Histogram(
    "ops_webhook_request_seconds",
    "Time from a webhook request's start to its answer (body read, verified, stored with acks=all)",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
