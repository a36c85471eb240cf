"""Prometheus metrics of the engine (served by each worker at ``GET /metrics``).

One naming scheme: ``ops_`` prefix, base units, ``_total`` for counters. No
label carries an unbounded value (no store, product or order ids). Each worker
exports its own figures; Prometheus sums them across workers.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

SNAPSHOTS = Counter(
    "ops_snapshots_processed_total",
    "Supplier snapshots processed, by result (NEW, CHANGED, UNCHANGED, STALE, INVALID)",
    ["result"],
)
MESSAGES = Counter(
    "ops_messages_processed_total",
    "Messages consumed by the inventory agent, by topic",
    ["topic"],
)
CHANGES = Counter(
    "ops_inventory_changes_total",
    "Fields changed in emitted inventory changes, by kind (STOCK, COST, SELLING_PRICE, STATUS, ...)",
    ["kind"],
)
CHANGE_RECORDS = Counter(
    "ops_inventory_change_records_total",
    "inventory.changes records emitted, by reason (NEW, SNAPSHOT, SETTINGS_CHANGED, MAPPED, RESENT)",
    ["reason"],
)
ALERTS_EMITTED = Counter(
    "ops_alerts_emitted_total",
    "Alert records emitted on the alerts topic, by type and status",
    ["type", "status"],
)
ALERTS_PURGED = Counter(
    "ops_alerts_purged_total",
    "Closed alerts removed from the alerts table after OPS_ALERT_KEEP_DAYS",
)
WEBHOOK_DEDUP_PURGED = Counter(
    "ops_webhook_dedup_purged_total",
    "Webhook dedup entries removed from the webhook-dedup table after OPS_WEBHOOK_DEDUP_DAYS",
)
ARCHIVED = Counter(
    "ops_archived_total",
    "Final orders and video jobs replaced by an archive marker after OPS_ORDER_KEEP_DAYS / OPS_VIDEO_KEEP_DAYS",
    ["table"],
)
ALERTS_ACTIVE = Gauge(
    "ops_alerts_active",
    "Alerts ACTIVE in the partitions this worker owns, by type",
    ["type"],
)
SNAPSHOT_LAG = Histogram(
    "ops_snapshot_lag_seconds",
    "Now minus captured_at of the newest snapshot of each message, when processed",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400),
)
DEADLETTERS = Counter(
    "ops_deadletters_total",
    "Records refused to the deadletter topic, by reason",
    ["reason"],
)
SETTINGS_UPDATES = Counter(
    "ops_store_settings_updates_total",
    "store.settings records, by result (APPLIED, STALE)",
    ["result"],
)
SUPPLIER_UPDATES = Counter(
    "ops_supplier_updates_total",
    "Supplier webhook stock/price news applied to store products, by result"
    " (NEW, CHANGED, UNCHANGED, STALE, UNKNOWN_PRODUCT, SOURCE_MISMATCH)",
    ["result"],
)
PRODUCTS_MAPPED = Counter(
    "ops_products_mapped_total",
    "Store products newly mapped to a storefront variant (catalog.variants), by result"
    " (PUBLISHED: its current values sent as a MAPPED change, UNKNOWN_PRODUCT: not tracked yet)",
    ["result"],
)
PRODUCTS_RESENT = Counter(
    "ops_products_resent_total",
    "Store products whose current values the storefront asked for again (in place of a replayed change), by result"
    " (PUBLISHED: sent as a RESENT change, UNKNOWN_PRODUCT: not tracked)",
    ["result"],
)
STOREFRONT_STOCK = Counter(
    "ops_storefront_stock_reports_total",
    "Storefront stock counts (Shopify inventory_levels/update) against the engine's, by result"
    " (DRIFT: alert opened, AGREES: alert resolved, UNCHANGED, UNKNOWN_PRODUCT)",
    ["result"],
)
ALERT_COMMANDS = Counter(
    "ops_alert_commands_total",
    "Alert commands by action (ACKNOWLEDGE, DISMISS; RESOLVE: a store's open alerts of a type) and result "
    "(APPLIED, REFUSED, UNKNOWN_ALERT: none found)",
    ["action", "result"],
)
TABLE_ENTRIES = Gauge(
    "ops_table_entries",
    "Entries in each table held by this worker (active and standby partitions)",
    ["table"],
)
PROCESSING_SECONDS = Histogram(
    "ops_event_processing_seconds",
    "Time to handle one consumed message, by agent (inventory, orders, webhooks, videos)",
    ["agent"],
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1),
)

ORDER_EVENTS = Counter(
    "ops_order_events_total",
    "orders.events records handled, by type and result (APPLIED, PARKED, REFUSED, IGNORED, DUPLICATE, INVALID, "
    "ARCHIVED)",
    ["type", "result"],
)
ORDER_TRANSITIONS = Counter(
    "ops_order_transitions_total",
    "Order status transitions, by from and to status (NONE: the order's creation)",
    ["from_status", "to_status"],
)
ORDERS_BY_STATUS = Gauge(
    "ops_orders",
    "Orders in the partitions this worker owns, by status",
    ["status"],
)
ORDER_COMMANDS = Counter(
    "ops_order_commands_total",
    "Supplier order commands issued on orders.commands, by type",
    ["type"],
)
ORDER_TIMERS = Counter(
    "ops_order_timers_total",
    "Passed order deadlines published as TIMER events, by kind",
    ["kind"],
)
PAYMENT_TO_SUPPLIER_ORDER = Histogram(
    "ops_payment_to_supplier_order_seconds",
    "From payment confirmed to the supplier order placed (event times), per supplier group",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400),
)

ORDER_STATUS_AGE = Gauge(
    "ops_order_status_age_seconds",
    "Age of the oldest order in each open status (time since it entered that status), "
    "in the partitions this worker owns; 0 when none",
    ["status"],
)

CONSUMER_LAG = Gauge(
    "ops_consumer_lag",
    "Messages not yet committed by this worker's consumer group, per input topic and partition it owns "
    "(high watermark minus committed offset)",
    ["topic", "partition"],
)
STREAM_BUFFER = Gauge(
    "ops_stream_buffer_events",
    "Events fetched and waiting in this worker's agent streams, by agent",
    ["agent"],
)
OUTPUTS_PENDING = Gauge(
    "ops_outputs_pending",
    "Output records buffered by this worker and not yet handed to the producer",
)

WEBHOOKS_ROUTED = Counter(
    "ops_webhooks_routed_total",
    "Stored webhooks handled by the router, by source and result (ROUTED, DUPLICATE, REFUSED, IGNORED)",
    ["source", "result"],
)

VIDEO_EVENTS = Counter(
    "ops_video_events_total",
    "video.requests / video.events records handled, by kind (REQUEST, STARTED, PROGRESS, COMPLETED, FAILED, "
    "RETRY, CANCEL, TIMER) and result (APPLIED, DUPLICATE, REFUSED, INVALID, ARCHIVED)",
    ["kind", "result"],
)
VIDEO_JOBS = Counter(
    "ops_video_jobs_total",
    "Video jobs that reached a final status (COMPLETED, FAILED, CANCELLED); a retried job counts again",
    ["status"],
)
VIDEO_QUEUE_DEPTH = Gauge(
    "ops_video_queue_depth",
    "Video jobs QUEUED (waiting for a renderer) in the partitions this worker owns",
)
VIDEO_PROCESSING = Gauge(
    "ops_video_jobs_processing",
    "Video jobs PROCESSING (a renderer reported it started) in the partitions this worker owns",
)
SYNC_REQUESTS = Counter(
    "ops_sync_requests_total",
    "Sync requests handled, by tier and result (STARTED, REFUSED: a run is RUNNING, DUPLICATE, EXPIRED)",
    ["tier", "result"],
)
SYNC_RUNS = Counter(
    "ops_sync_runs_total",
    "Sync runs finished, by result (completed, failed)",
    ["result"],
)
SYNC_DURATION = Histogram(
    "ops_sync_duration_seconds",
    "From a sync run's start to its end (completed or failed)",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600),
)
SYNC_PROGRESS = Counter(
    "ops_sync_progress_total",
    "sync.progress records handled, by result (PROGRESS, COMPLETED, FAILED, DUPLICATE, STALE, ...)",
    ["result"],
)


class Children:
    """A labelled metric's children, each looked up once: ``labels()`` takes a lock and
    checks its arguments (about 2.5 us), and a changed product counts four or five."""

    def __init__(self, metric: Counter | Gauge | Histogram) -> None:
        self.metric = metric
        self.known: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self.known.get(labels)
        if child is None:
            child = self.known[labels] = self.metric.labels(*labels)
        return child


def exposition(registry: CollectorRegistry = REGISTRY) -> bytes:
    return generate_latest(registry)
