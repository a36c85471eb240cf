"""The syncer's Prometheus metrics (served by the syncer process at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

PAGES = Counter(
    "ops_syncer_pages_total",
    "sync.jobs pages handled by the syncer, by result (OK, FAILED: a supplier error, INVALID)",
    ["result"],
)
PRODUCTS = Counter(
    "ops_syncer_products_total",
    "Tracked products the syncer fetched, by supplier and result (FETCHED, CHANGED, FAILED)",
    ["supplier", "result"],
)
PAGE_SECONDS = Histogram(
    "ops_syncer_page_seconds",
    "Time to fetch and publish one sync page",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
FREIGHT_LOOKUPS = Counter(
    "ops_freight_lookups_total",
    "Supplier freight quotes asked for by the syncer, by supplier and result "
    "(OK, NO_OPTION: no delivery to the country, FAILED: the product keeps its last quote)",
    ["provider", "result"],
)
FREIGHT_DEFERRED = Counter(
    "ops_freight_lookups_deferred_total",
    "Freight quotes due (none yet, or too old) but past a page's OPS_FREIGHT_LOOKUPS_PER_PAGE: left to a following sync",
    ["provider"],
)
FREIGHT_STORE_ERRORS = Counter(
    "ops_freight_store_errors_total",
    "Reads or writes of the syncer's freight quotes that failed (the database down): no lookups for that page, "
    "or new quotes not kept",
    ["operation"],
)
FREIGHT_PURGED = Counter(
    "ops_freight_quotes_purged_total",
    "Freight quotes dropped from the syncer's store after OPS_FREIGHT_KEEP_S without being fetched again "
    "(products no longer synced)",
)
