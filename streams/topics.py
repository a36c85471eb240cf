"""Topic names, partition counts and configs: the one list of what the engine uses.

Source topics keyed by ``store_id`` share one partition count so that a store's
snapshots, settings, commands and its table entries live on one partition
(co-partitioning; no ``group_by`` on the hot path).
"""

from __future__ import annotations

from dataclasses import dataclass

SUPPLIER_SNAPSHOTS = "supplier.snapshots"
STORE_SETTINGS = "store.settings"
INVENTORY_COMMANDS = "inventory.commands"
INVENTORY_CHANGES = "inventory.changes"
ALERTS = "alerts"
DEADLETTER = "deadletter"
ORDERS_EVENTS = "orders.events"
ORDERS_COMMANDS = "orders.commands"
STOREFRONT_COMMANDS = "storefront.commands"
NOTIFICATIONS = "notifications"
#: Tracking a supplier sent by webhook, for the executor to resolve to an order.
SUPPLIER_TRACKING = "supplier.tracking"
#: Storefront variant -> our product and its supplier source, keyed by shop domain.
CATALOG_VARIANTS = "catalog.variants"
#: The catalogue turned around: supplier product -> store products, keyed {PROVIDER}|{source_id}.
CATALOG_SOURCES = "catalog.sources"
#: A supplier's stock / price news from its webhook, keyed {PROVIDER}|{source_id}.
SUPPLIER_UPDATES = "supplier.updates"
#: Video renders (models/video.py), all keyed by video_id: requests, what readers
#: watch, the renderer's commands, and the renderer's outcomes plus retry/cancel/timer.
VIDEO_REQUESTS = "video.requests"
VIDEO_STATUS = "video.status"
VIDEO_RENDERS = "video.renders"
VIDEO_EVENTS = "video.events"
#: Raw webhooks as received (connectors/ingress), keyed by their dedup key.
WEBHOOKS_INBOUND = "webhooks.inbound"
#: A record holds a body of up to 2 MiB (OPS_WEBHOOK_MAX_BODY) as a JSON string,
#: at most twice as long escaped: above Kafka's 1 MB default.
WEBHOOKS_INBOUND_MAX_MESSAGE_BYTES = 5 * 1024 * 1024

#: Sync requests (scheduled or by hand), keyed by store_id (models/sync.py).
SYNC_REQUESTS = "sync.requests"
#: The syncer's outcome of each page, and the timers' deadlines, keyed by store_id.
SYNC_PROGRESS = "sync.progress"
#: Pages of a run for the syncer process, keyed by store_id.
SYNC_JOBS = "sync.jobs"
#: Run records (started, progress, completed/failed), keyed by store_id: what readers watch.
SYNC_RUNS = "sync.runs"

#: Topics whose messages are keyed by store_id and consumed together.
STORE_KEYED_INPUTS = (
    SUPPLIER_SNAPSHOTS, STORE_SETTINGS, INVENTORY_COMMANDS, SYNC_REQUESTS, SYNC_PROGRESS
)
OUTPUTS = (INVENTORY_CHANGES, ALERTS, DEADLETTER)

_WEEK_MS = str(7 * 24 * 3600 * 1000)
_MONTH_MS = str(30 * 24 * 3600 * 1000)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    config: dict[str, str]


def specs() -> list[TopicSpec]:
    """Every topic the engine creates at start (changelogs are Faust's own)."""
    return [
        TopicSpec(SUPPLIER_SNAPSHOTS, {"retention.ms": _WEEK_MS}),
        # Settings are state: keep the latest per store forever.
        TopicSpec(STORE_SETTINGS, {"cleanup.policy": "compact"}),
        TopicSpec(INVENTORY_COMMANDS, {"retention.ms": _WEEK_MS}),
        TopicSpec(INVENTORY_CHANGES, {"retention.ms": _WEEK_MS}),
        TopicSpec(ALERTS, {"retention.ms": _MONTH_MS}),
        TopicSpec(DEADLETTER, {"retention.ms": _MONTH_MS}),
        TopicSpec(ORDERS_EVENTS, {"retention.ms": _WEEK_MS}),
        TopicSpec(ORDERS_COMMANDS, {"retention.ms": _WEEK_MS}),
        TopicSpec(STOREFRONT_COMMANDS, {"retention.ms": _WEEK_MS}),
        TopicSpec(NOTIFICATIONS, {"retention.ms": _WEEK_MS}),
        TopicSpec(SUPPLIER_TRACKING, {"retention.ms": _WEEK_MS}),
        # The mapping is state: keep the latest per key.
        TopicSpec(CATALOG_VARIANTS, {"cleanup.policy": "compact"}),
        TopicSpec(CATALOG_SOURCES, {"cleanup.policy": "compact"}),
        TopicSpec(SUPPLIER_UPDATES, {"retention.ms": _WEEK_MS}),
        TopicSpec(VIDEO_REQUESTS, {"retention.ms": _WEEK_MS}),
        TopicSpec(VIDEO_STATUS, {"retention.ms": _WEEK_MS}),
        TopicSpec(VIDEO_RENDERS, {"retention.ms": _WEEK_MS}),
        TopicSpec(VIDEO_EVENTS, {"retention.ms": _WEEK_MS}),
        TopicSpec(SYNC_REQUESTS, {"retention.ms": _WEEK_MS}),
        TopicSpec(SYNC_PROGRESS, {"retention.ms": _WEEK_MS}),
        TopicSpec(SYNC_JOBS, {"retention.ms": _WEEK_MS}),
        TopicSpec(SYNC_RUNS, {"retention.ms": _MONTH_MS}),
        TopicSpec(
            WEBHOOKS_INBOUND,
            {"retention.ms": _WEEK_MS, "max.message.bytes": str(WEBHOOKS_INBOUND_MAX_MESSAGE_BYTES)},
        ),
    ]
