"""The webhook router: ``webhooks.inbound`` -> order events and alerts, deduplicated.

Consumes the stored webhooks and the ``catalog.variants`` mapping together.
Both are keyed so that what belongs together meets on one partition: a
Shopify webhook and the shop's catalogue by the shop's domain (a WooCommerce
one and its site's catalogue by the site's host), a Stripe or
supplier webhook by its dedup key. So the catalogue lookup is local, and
the two deliveries of one webhook meet in the same ``webhook-dedup`` table
partition.

For each webhook not seen before (its dedup key: the delivery's own id), the
pure ``models.webhook_routing.route`` says what it means; the events go to
``orders.events``, alerts to ``alerts``, and what cannot be mapped to
``deadletter`` with the reason. The dedup entry's changelog record carries
those outputs until the input is committed (streams/outbox.py), so a crash
loses nothing and a replay sends nothing twice that the order machine would
not drop anyway (its events' ids are made from what they are about).

Dedup entries are kept ``OPS_WEBHOOK_DEDUP_DAYS`` (7; Stripe retries for 3)
and then removed by a timer.

A catalogue record that maps a shop variant to a store product for the first
time also sends a ``PRODUCT_MAPPED`` command to ``inventory.commands``: the
inventory agent publishes the product's current values as a MAPPED change, so
the storefront shows them without waiting for the product's next change.

Supplier stock and price news takes one more hop. Each catalogue record is
filed again on ``catalog.sources`` under its supplier product; the router
keeps that index (``source-index``) on the supplier product's partition, and
a supplier webhook's news goes to ``supplier.updates`` with the same key, so
it meets the index there and becomes a ``SupplierUpdate`` command for each
store product it feeds (``inventory.commands``, applied as a snapshot).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import faust
import orjson
from pydantic import ValidationError

from connectors import metrics
from models.events import DeadLetterReason, SupplierUpdate
from models.orders import OrderEventType
from models.webhook_routing import (
    CatalogueSource,
    CatalogueVariant,
    SupplierProductUpdate,
    catalogue_key,
    inventory_item_ref,
    newly_mapped,
    route,
    source_records,
)
from models.webhooks import InboundWebhook
from streams import topics
from streams.app import Engine
from streams.codecs import encode
from agents.wiring import active_partitions, alert_outputs, dead_letter, run_agent, sweep_timer
from streams.outbox import Output, OutboxTable

log = logging.getLogger(__name__)

#: How often each worker sweeps the webhook dedup entries past ``OPS_WEBHOOK_DEDUP_DAYS``.
DEDUP_PURGE_INTERVAL_S = 3600.0


def _timestamp(message: Any) -> datetime:
    """The record's own time (a replay keeps it); now when it has none."""
    stamp = getattr(message, "timestamp", None)
    if isinstance(stamp, (int, float)) and stamp > 0:
        return datetime.fromtimestamp(stamp, tz=timezone.utc)
    return datetime.now(timezone.utc)


class WebhookRouter:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.app = engine.app
        self.outputs = engine.outputs
        self.dedup = OutboxTable(engine.tables.webhook_dedup, engine.outputs)
        self.catalogue = OutboxTable(engine.tables.catalogue, engine.outputs)
        self.shop_orders = OutboxTable(engine.tables.shop_orders, engine.outputs)
        self.sources = OutboxTable(engine.tables.source_index, engine.outputs)
        self.keep = timedelta(days=engine.settings.webhook_dedup_days)

    def handle(self, event: faust.EventT) -> None:
        message = event.message
        try:
            if message.topic == topics.CATALOG_VARIANTS:
                self.on_catalogue(message)
            elif message.topic == topics.CATALOG_SOURCES:
                self.on_catalogue_source(message)
            elif message.topic == topics.SUPPLIER_UPDATES:
                self.on_supplier_update(message)
            else:
                self.on_webhook(message)
        except Exception as exc:  # one bad record must not stop the worker
            log.exception("failed to route %s[%s]@%s", message.topic, message.partition, message.offset)
            self._send_dead(message, DeadLetterReason.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}")

    def orders_of(self, shop: str) -> list[str]:
        prefix = f"{shop}|"
        return sorted(k[len(prefix):] for k in list(self.shop_orders.table.data) if k.startswith(prefix))

    def stores_of(self, shop: str) -> list[str]:
        """The stores the catalogue maps this shop's variants to (a scan: app/uninstalled only)."""
        prefix, stores = f"{shop}|", set()
        for key, raw in list(self.catalogue.table.data.items()):
            if key.startswith(prefix) and not key.startswith(f"{prefix}item:"):
                stores.add(CatalogueVariant.model_validate_json(raw).store_id)
        return sorted(stores)

    def lookup(self, shop: str, variant: str) -> CatalogueVariant | None:
        raw = self.catalogue.table.data.get(catalogue_key(shop, variant))
        return None if raw is None else CatalogueVariant.model_validate_json(raw)

    def on_catalogue(self, message: Any) -> None:
        try:
            variant = CatalogueVariant.model_validate_json(message.value or b"")
        except ValidationError as exc:
            self._send_dead(message, DeadLetterReason.SCHEMA_VIOLATION, str(exc)[:2000])
            return
        key = catalogue_key(variant.shop_domain, variant.shopify_variant_id)
        previous = self.lookup(variant.shop_domain, variant.shopify_variant_id)
        # Keep the turned-around index (on the supplier product's partition) in step.
        records = source_records(key, variant, removed=False)
        if previous is not None:
            now_filed = {record.index for record in records}
            records += [r for r in source_records(key, previous, removed=True) if r.index not in now_filed]
        outputs: list[Output] = [(topics.CATALOG_SOURCES, r.key, encode(r)) for r in records]
        # A product mapped for the first time: the inventory agent shows its values on the storefront.
        mapped = newly_mapped(previous, variant, f"catalogue:{message.partition}:{message.offset}",
                              _timestamp(message))
        if mapped is not None:
            outputs.append((topics.INVENTORY_COMMANDS, mapped.store_id.encode(), encode(mapped)))
        self.catalogue.write(message, key, variant.model_dump(mode="json"), outputs)
        # Filed under its inventory item too, for inventory_levels/update.
        item = variant.shopify_inventory_item_id
        old_item = None if previous is None else previous.shopify_inventory_item_id
        if old_item and old_item != item:
            self.catalogue.delete(message.partition, catalogue_key(variant.shop_domain, inventory_item_ref(old_item)))
        if item:
            item_key = catalogue_key(variant.shop_domain, inventory_item_ref(item))
            self.catalogue.write(message, item_key, variant.model_dump(mode="json"), [])
        metrics.WEBHOOKS_ROUTED.labels("CATALOGUE", "STORED").inc()

    def on_catalogue_source(self, message: Any) -> None:
        try:
            source = CatalogueSource.model_validate_json(message.value or b"")
        except ValidationError as exc:
            self._send_dead(message, DeadLetterReason.SCHEMA_VIOLATION, str(exc)[:2000])
            return
        key = source.index
        raw = self.sources.table.data.get(key)
        targets: dict[str, Any] = {} if raw is None else dict(orjson.loads(raw).get("targets") or {})
        if source.removed:
            if targets.pop(source.catalogue_key, None) is None:
                metrics.WEBHOOKS_ROUTED.labels("CATALOGUE_SOURCE", "IGNORED").inc()
                return
        else:
            targets[source.catalogue_key] = {
                "store_id": source.store_id, "product_id": source.product_id, "source_id": source.source_id,
                "variant_id": source.variant_id, "source_variant_id": source.source_variant_id,
            }
        self.sources.write(message, key, {"targets": targets}, [])
        metrics.WEBHOOKS_ROUTED.labels("CATALOGUE_SOURCE", "REMOVED" if source.removed else "STORED").inc()

    def on_supplier_update(self, message: Any) -> None:
        """A supplier's stock / price news -> a SupplierUpdate command per store product it feeds."""
        try:
            update = SupplierProductUpdate.model_validate_json(message.value or b"")
        except ValidationError as exc:
            self._send_dead(message, DeadLetterReason.SCHEMA_VIOLATION, str(exc)[:2000])
            return
        raw = self.sources.table.data.get(update.key.decode())
        targets = {} if raw is None else orjson.loads(raw).get("targets") or {}
        sent = 0
        for target in sorted(targets.values(), key=lambda t: (t["store_id"], t["product_id"], t["variant_id"] or "")):
            wanted = update.source_variant_id
            if wanted is not None and target["source_variant_id"] not in (None, wanted):
                continue  # another variant of the supplier's product
            command = SupplierUpdate(
                command_id=f"{update.update_id}:{target['store_id']}|{target['product_id']}|{target['variant_id'] or ''}",
                store_id=target["store_id"], product_id=target["product_id"], variant_id=target["variant_id"],
                provider=update.provider, source_id=target["source_id"], available=update.available,
                stock=update.stock, cost_price=update.cost_price, currency=update.currency,
                captured_at=update.captured_at,
            )
            self.outputs.add(topics.INVENTORY_COMMANDS, None, command.store_id.encode(), encode(command))
            sent += 1
        metrics.WEBHOOKS_ROUTED.labels("SUPPLIER_UPDATE", "ROUTED" if sent else "UNTRACKED").inc()

    def on_webhook(self, message: Any) -> None:
        try:
            hook_ = InboundWebhook.model_validate_json(message.value or b"")
        except ValidationError as exc:
            self._send_dead(message, DeadLetterReason.SCHEMA_VIOLATION, str(exc)[:2000])
            return
        source = hook_.source.value
        if hook_.dedup_key in self.dedup.table.data:
            metrics.WEBHOOKS_ROUTED.labels(source, "DUPLICATE").inc()
            return
        try:
            body = orjson.loads(hook_.body)
        except orjson.JSONDecodeError:
            body = None
        routed = route(
            source, hook_.topic, hook_.shop_domain, body, hook_.received_at, self.lookup,
            provider=hook_.provider, orders_of=self.orders_of, stores_of=self.stores_of,
        )
        if hook_.shop_domain:
            # Remember the shop's orders (same partition as its webhooks) for shop/redact.
            for order_event in routed.events:
                if order_event.type is OrderEventType.ORDER_CREATED:
                    self.shop_orders.write(message, f"{hook_.shop_domain}|{order_event.order_id}", {}, [])
        outputs: list[Output] = []
        for order_event in routed.events:
            outputs.append((topics.ORDERS_EVENTS, order_event.order_id.encode(), encode(order_event)))
        for update in routed.tracking:
            outputs.append((topics.SUPPLIER_TRACKING, update.key, encode(update)))
        for news in routed.products:
            outputs.append((topics.SUPPLIER_UPDATES, news.key, encode(news)))
        for report in routed.stock_reports:
            outputs.append((topics.INVENTORY_COMMANDS, report.store_id.encode(), encode(report)))
        for alert in routed.alerts:
            outputs += alert_outputs(alert)
        if routed.refused:
            outputs.append(dead_letter(message, DeadLetterReason.UNMAPPABLE, routed.refused))
        result = "REFUSED" if routed.refused else "IGNORED" if routed.ignored else "ROUTED"
        metrics.WEBHOOKS_ROUTED.labels(source, result).inc()
        entry = {"at": hook_.received_at.isoformat(), "p": message.partition}
        self.dedup.write(message, hook_.dedup_key, entry, outputs)

    def _send_dead(self, message: Any, reason: DeadLetterReason, detail: str) -> None:
        # Ids only in the log: a webhook's detail may quote its body.
        topic, key, value = dead_letter(message, reason, detail)
        self.outputs.add(topic, None, key, value)

    def active_partitions(self) -> set[int]:
        return active_partitions(self.app, topics.WEBHOOKS_INBOUND)

    def purge(self, keys: list[str], now: datetime | None = None) -> int:
        """Remove the dedup entries among ``keys`` older than the keep period, in the
        partitions this worker owns, whose outputs are known delivered (an entry's
        outbox is what a recovery sends again). Returns how many were removed."""
        cutoff = (now or datetime.now(timezone.utc)) - self.keep
        active = self.active_partitions()
        data = self.dedup.table.data
        removed = 0
        for key in keys:
            raw = data.get(key)
            if raw is None:
                continue
            body = orjson.loads(raw)
            if body.get("p") in active and datetime.fromisoformat(body["at"]) < cutoff and self.dedup.settled(key):
                self.dedup.delete(body["p"], key)
                removed += 1
        metrics.WEBHOOK_DEDUP_PURGED.inc(removed)
        return removed


def register(engine: Engine) -> WebhookRouter:
    router = WebhookRouter(engine)
    app = engine.app
    for table in (router.dedup, router.catalogue, router.shop_orders, router.sources):
        table.attach(app)
    run_agent(engine, engine.webhook_inputs, "webhooks", router.handle)

    # Every table of the router whose records carry outboxes sends them again at recovery
    # (the catalogue's catalog.sources records as much as the dedup entries' outputs).
    for outbox_table in (router.dedup, router.catalogue, router.shop_orders, router.sources):

        async def resend_recovered(outbox_table: OutboxTable = outbox_table) -> None:
            await outbox_table.resend_recovered(router.active_partitions())

        outbox_table.table.on_recover(resend_recovered)

    sweep_timer(app, DEDUP_PURGE_INTERVAL_S, "purge_dedup", lambda: router.dedup.table.data.keys(), router.purge)

    return router
