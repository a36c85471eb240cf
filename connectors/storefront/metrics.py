"""Prometheus metrics of the storefront process (served at /metrics on OPS_STOREFRONT_METRICS_PORT)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CHANGES = Counter(
    "ops_storefront_changes_total",
    "inventory.changes records handled, by platform (NONE: the store has no account) and result "
    "(PUSHED, NOTHING: no write needed, UNMAPPED: not in the catalogue, NO_ACCOUNT, INVALID, "
    "REPLAYED: replayed from deadletter, its product's current values asked for instead)",
    ["platform", "result"],
)
WRITES = Counter(
    "ops_storefront_writes_total",
    "Storefront writes, by platform, kind (quantity, price) and result "
    "(OK, STALE: compare-and-set refused, ALREADY_SET, REJECTED)",
    ["platform", "kind", "result"],
)
COMMANDS = Counter(
    "ops_storefront_commands_total",
    "storefront.commands handled, by type and result (CREATED, ALREADY_SHOWN, NOTHING_OPEN, ORDER_NOT_FOUND, "
    "NOT_THIS_PLATFORM, REJECTED, NO_ACCOUNT, INVALID)",
    ["type", "result"],
)
BATCH_SECONDS = Histogram(
    "ops_storefront_batch_seconds",
    "Time to push one consumed batch to every store it concerns, retries included",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
FAILURES = Counter(
    "ops_storefront_failures_total",
    "Pushes or commands that failed and will be tried again, by platform",
    ["platform"],
)
REFUSED = Counter(
    "ops_storefront_account_refused_total",
    "Records sent to deadletter (STOREFRONT_REFUSED) because the shop refused the store's account (HTTP 401/403), "
    "by platform",
    ["platform"],
)
UNAVAILABLE = Gauge(
    "ops_storefront_stores_unavailable",
    "Stores whose shop failed every try for OPS_STOREFRONT_UNAVAILABLE_S: their records go to deadletter "
    "(STOREFRONT_UNAVAILABLE) until a probe gets through",
)
CATALOGUE_VARIANTS = Gauge(
    "ops_storefront_catalogue_variants",
    "Store products the storefront process can map to a storefront variant (read from catalog.variants)",
)
RECONCILE_RUNS = Counter(
    "ops_storefront_reconcile_runs_total",
    "Pulls of a shop's (site's) modified orders by the reconciliation, by platform and result (OK, FAILED)",
    ["platform", "result"],
)
RECONCILED_ORDERS = Counter(
    "ops_storefront_reconciled_orders_total",
    "Orders the reconciliation pulled and published as webhooks, by platform "
    "(most are duplicates the router drops)",
    ["platform"],
)
