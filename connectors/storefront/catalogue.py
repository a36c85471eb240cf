"""The storefront process's copy of ``catalog.variants``: our (store, product,
variant) -> the shop's variant, inventory item and shop domain.

Read in full by every storefront process: all partitions, no consumer group,
from the beginning, then followed (``follow``). ``ready`` is set once the
partitions' ends at start have been reached, and the runner pushes nothing
before: a change is looked up in a catalogue at least as new as the process.

A shop variant re-mapped to another product of ours drops its old mapping.
A record that is not a ``CatalogueVariant`` is skipped (the router dead-letters
it already).
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from connectors.storefront.metrics import CATALOGUE_VARIANTS
from models.webhook_routing import CatalogueVariant, catalogue_key
from streams import topics
from streams.settings import Settings

log = logging.getLogger(__name__)

ProductKey = tuple[str, str, str | None]


class CatalogueIndex:
    def __init__(self) -> None:
        self._by_product: dict[ProductKey, CatalogueVariant] = {}
        self._product_of: dict[str, ProductKey] = {}  # shop|variant -> our product

    def __len__(self) -> int:
        return len(self._by_product)

    def apply(self, raw: bytes | None) -> bool:
        try:
            variant = CatalogueVariant.model_validate_json(raw or b"")
        except ValidationError:
            return False
        shop_key = catalogue_key(variant.shop_domain, variant.shopify_variant_id)
        product: ProductKey = (variant.store_id, variant.product_id, variant.variant_id)
        old = self._product_of.get(shop_key)
        if old is not None and old != product:
            current = self._by_product.get(old)
            if current is not None and catalogue_key(current.shop_domain, current.shopify_variant_id) == shop_key:
                del self._by_product[old]
        self._product_of[shop_key] = product
        self._by_product[product] = variant
        return True

    def variant(self, store_id: str, product_id: str, variant_id: str | None) -> CatalogueVariant | None:
        return self._by_product.get((store_id, product_id, variant_id))


async def follow(settings: Settings, index: CatalogueIndex, ready: asyncio.Event, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topics.CATALOG_VARIANTS)
        while not partitions and not stop.is_set():
            await consumer.force_metadata_update()
            partitions = consumer.partitions_for_topic(topics.CATALOG_VARIANTS)
            if not partitions:
                await asyncio.sleep(0.5)
        if stop.is_set():
            return
        tps = [TopicPartition(topics.CATALOG_VARIANTS, p) for p in sorted(partitions or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        behind = {tp for tp in tps if ends[tp] > 0}
        if not behind:
            ready.set()
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batch.values():
                for record in records:
                    if not index.apply(record.value):
                        log.debug("catalog.variants %s@%s: not a catalogue variant; skipped",
                                  record.partition, record.offset)
            CATALOGUE_VARIANTS.set(len(index))
            if behind:
                for tp in list(behind):
                    if await consumer.position(tp) >= ends[tp]:
                        behind.discard(tp)
                if not behind:
                    log.info("catalogue read: %d store products mapped", len(index))
                    ready.set()
    finally:
        await consumer.stop()
