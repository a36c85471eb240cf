"""The storefront process's copy of ``catalog.variants``: our (store, product,
variant) -> the shop's variant, inventory item and shop domain.

Read in full by every storefront process: all partitions, no consumer group,
from the beginning, then followed (``follow``). ``ready`` is set once the
partitions' ends at start have been reached, and the runner pushes nothing
before: a change is looked up in a catalogue at least as new as the process.

The follower reads records as they come, so a change consumed a moment after
its product's catalogue record was published may find the record not applied
yet. The runner asks first (``read_since``): the follower takes the
partitions' ends again and reads up to them, and then every record published
before that moment is in the index. Only then is a product unmapped (its
record, if any, came after the change).

A shop variant re-mapped to another product of ours drops its old mapping.
A record that is not a ``CatalogueVariant`` is skipped (the router dead-letters
it already).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

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
        #: Every record published before this moment (``time.monotonic``) is applied.
        self.complete_at = -math.inf
        #: The latest moment somebody waits to see complete (``read_since``).
        self.wanted = -math.inf
        self._completed = asyncio.Event()

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

    def mark_complete(self, moment: float) -> None:
        """The follower has read every record published before ``moment``."""
        if moment > self.complete_at:
            self.complete_at = moment
            self._completed.set()
            self._completed = asyncio.Event()

    async def read_since(self, moment: float, timeout: float) -> bool:
        """Wait until every record published before ``moment`` (``time.monotonic``) is
        applied; False if the follower did not get there within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.complete_at < moment:
            self.wanted = max(self.wanted, moment)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._completed.wait(), remaining)
            except TimeoutError:
                return False
        return True


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
        # A probe: (the moment, the partitions' ends then); complete once read up to them.
        probe: tuple[float, dict[TopicPartition, int]] | None = (time.monotonic(), await consumer.end_offsets(tps))
        while not stop.is_set():
            if probe is None and index.wanted > index.complete_at:
                probe = (time.monotonic(), await consumer.end_offsets(tps))
            if probe is not None and await _reached(consumer, probe[1]):
                index.mark_complete(probe[0])
                if not ready.is_set():
                    log.info("catalogue read: %d store products mapped", len(index))
                    ready.set()
                probe = None
                continue
            batch = await consumer.getmany(timeout_ms=50, max_records=5000)  # short: a waiter is served soon
            for records in batch.values():
                for record in records:
                    if not index.apply(record.value):
                        log.debug("catalog.variants %s@%s: not a catalogue variant; skipped",
                                  record.partition, record.offset)
            CATALOGUE_VARIANTS.set(len(index))
    finally:
        await consumer.stop()


async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True
