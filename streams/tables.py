"""The engine's Faust tables.

Keys are ``str`` (``utf8`` codec), values are bytes the domain encodes
(``raw``): a product's state is a ~200-byte array (models/product.py), an alert
or a store's settings their JSON. Every entry is written while handling a
message keyed by its ``store_id`` (``order_id`` for orders), so it lives on
that key's partition, and web views route by that key.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import faust
from faust.stores.memory import Store as MemoryStore

PRODUCTS = "products"
ALERTS = "alerts"
STORE_SETTINGS = "store-settings"
ORDERS = "orders"
WEBHOOK_DEDUP = "webhook-dedup"
CATALOGUE = "catalogue"
SHOP_ORDERS = "shop-orders"
SOURCE_INDEX = "source-index"
VIDEO_JOBS = "video-jobs"
SYNC_RUNS = "sync-runs"


@dataclass(frozen=True)
class Tables:
    products: faust.Table
    alerts: faust.Table
    settings: faust.Table
    orders: faust.Table
    webhook_dedup: faust.Table
    catalogue: faust.Table
    shop_orders: faust.Table
    source_index: faust.Table
    video_jobs: faust.Table
    sync_runs: faust.Table


def define(app: faust.App, partitions: int) -> Tables:
    def table(name: str, help_: str) -> faust.Table:
        created = app.Table(
            name,
            schema=faust.Schema(key_type=str, value_type=bytes, key_serializer="utf8", value_serializer="raw"),
            partitions=partitions,
            help=help_,
        )
        # Faust derives a table's serializers from its key/value types, not from
        # the schema, and falls back to JSON for str: the changelog keys would be
        # JSON strings and the router would hash '"store"' instead of the
        # producer's 'store'. Set them, then remake the changelog topic (the app
        # made it when it registered the table).
        created.key_serializer = "utf8"
        created.value_serializer = "raw"
        created.changelog_topic = created._new_changelog_topic()
        return created

    return Tables(
        products=table(PRODUCTS, "store|product|variant -> encoded ProductState"),
        alerts=table(ALERTS, "store|alert_id -> Alert JSON"),
        settings=table(STORE_SETTINGS, "store_id -> StoreSettings JSON"),
        # Keyed like orders.events (order_id), so an order lives on its events' partition.
        orders=table(ORDERS, "order_id -> {state: OrderState, outbox: [...]} JSON (agents/orders.py)"),
        # Keyed like webhooks.inbound / catalog.variants messages (agents/webhooks.py).
        webhook_dedup=table(WEBHOOK_DEDUP, "dedup key -> {at, p, outbox} JSON"),
        catalogue=table(CATALOGUE, "shop|shopify variant id -> CatalogueVariant JSON"),
        shop_orders=table(SHOP_ORDERS, "shop|order_id -> {} (the orders of a shop, for shop/redact)"),
        # Keyed like catalog.sources / supplier.updates ({PROVIDER}|{source_id}).
        source_index=table(SOURCE_INDEX, "PROVIDER|source_id -> {targets: {shop|variant: store product}} JSON"),
        # Keyed like video.requests / video.events (video_id): agents/video.py.
        video_jobs=table(VIDEO_JOBS, "video_id -> {status, due, job, outbox} JSON (agents/video.py)"),
        # Keyed like sync.requests / sync.progress (store_id), next to the store's products.
        sync_runs=table(SYNC_RUNS, "store_id -> StoreRuns JSON: the current run and the last 10 (models/sync.py)"),
    )


def entries(table: faust.Table) -> MutableMapping[Any, Any]:
    """The mapping of a table's entries in this worker, for reads and in-memory writes.

    With the memory store (the default) that is the store's own dict: Faust's
    ``Store`` wraps it in a ``FastUserDict`` whose ``get`` is
    ``Mapping.get`` in Python (about 0.2 us against 0.07 for the dict, per
    call, twice per snapshot). Other stores (rocksdb) answer through their own
    mapping. Fetch it per message, not once: it belongs to the store.
    """
    store = table.data
    if type(store) is MemoryStore:
        inner = store.data
        if type(inner) is dict:
            return inner
    return store


class StoreKeys:
    """The product keys of each store, so that what reads one store's products (a sync
    request, a repricing after new settings, the product list view) does not scan
    the whole product table (a million keys took about 0.3 s a read, and every
    store asks for a sync each quarter of an hour or each hour).

    The agent reports the keys it adds (``added``). The other writers of the table --
    recovery, standby updates, a rebalance -- are not seen: the index is rebuilt
    whenever the table's size is not the size it has counted, and after each
    rebalance and recovery (``forget``). Product keys are never deleted by the agent.
    """

    def __init__(self) -> None:
        self.keys: dict[str, list[str]] | None = None
        self.size = 0

    def forget(self) -> None:
        self.keys = None

    def added(self, store_id: str, key: str) -> None:
        """``key`` was not in the table and now is."""
        if self.keys is not None:
            self.keys.setdefault(store_id, []).append(key)
            self.size += 1

    def of(self, store_id: str, data: Any) -> list[str]:
        if self.keys is None or self.size != len(data):
            index: dict[str, list[str]] = {}
            for key in list(data):
                index.setdefault(key.split("|", 1)[0], []).append(key)
            self.keys, self.size = index, len(data)
        return self.keys.get(store_id, [])
