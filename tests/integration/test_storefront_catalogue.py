"""The storefront's catalogue follower against the embedded broker: a change consumed
just after its product's ``catalog.variants`` record was published finds the mapping.

The follower reads the catalogue as it comes; a batch of changes can be handled
before the follower has applied a record published a moment earlier. Before, such a
change was skipped UNMAPPED and the shop never showed its values (until the
product's next change). Now the runner first has the catalogue read up to the
moment it consumed the batch (``CatalogueIndex.read_since``).
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from aiokafka import AIOKafkaProducer

from connectors.broker import EmbeddedBroker, create_topics
from connectors.shopify.storefront import ShopifyStorefront
from connectors.storefront.catalogue import CatalogueIndex, follow
from connectors.storefront.runner import StorefrontRunner
from models.webhook_routing import CatalogueVariant, catalogue_key
from streams import topics
from streams.codecs import encode
from streams.embedded import install_end_offset_fix
from streams.settings import Settings
from tests.fakes.shopify_server import FakeShopifyServer
from tests.integration.test_shopify_client import SHOP, TOKEN, account, change
from tests.integration.test_storefront_refused import Producer

PRODUCTS = 3000


def variant(n: int) -> CatalogueVariant:
    return CatalogueVariant(shop_domain=SHOP, shopify_variant_id=f"{n}1", store_id="store-1", product_id=f"p{n}",
                            provider="ALIEXPRESS", source_id=f"AE-{n}", shopify_inventory_item_id=f"{n}11")


async def publish(broker: EmbeddedBroker, variants: list[CatalogueVariant]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topics.CATALOG_VARIANTS, key=catalogue_key(v.shop_domain, v.shopify_variant_id)
                                       .encode(), value=encode(v)) for v in variants]
        for future in futures:
            await future
    finally:
        await producer.stop()


async def following(broker: EmbeddedBroker, work: Any) -> Any:
    """``work(index)`` with a follower reading the catalogue into ``index``, ready."""
    install_end_offset_fix()
    await create_topics(broker.bootstrap, {topics.CATALOG_VARIANTS: 4})
    index, ready, stop = CatalogueIndex(), asyncio.Event(), asyncio.Event()
    follower = asyncio.create_task(follow(Settings(broker_url=broker.url), index, ready, stop))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        return await work(index)
    finally:
        stop.set()
        await asyncio.wait_for(follower, 10)


def test_read_since_returns_once_every_record_published_before_is_applied(broker: EmbeddedBroker) -> None:
    async def work(index: CatalogueIndex) -> tuple[int, int]:
        await publish(broker, [variant(n) for n in range(PRODUCTS)])
        assert await index.read_since(time.monotonic(), timeout=30)
        return len(index), index.variant("store-1", f"p{PRODUCTS - 1}", None) is not None

    assert asyncio.run(following(broker, work)) == (PRODUCTS, True)


def test_a_change_consumed_right_after_its_catalogue_record_is_pushed(broker: EmbeddedBroker) -> None:
    with FakeShopifyServer() as fake:
        fake.add_shop(SHOP, TOKEN, maximum_available=1000, restore_rate=500)
        fake.add_variant(SHOP, variant="71", product="7", item="711", price="10.00", quantity=10)

        async def work(index: CatalogueIndex) -> Any:
            await publish(broker, [variant(n) for n in range(1000, 1000 + PRODUCTS)] + [variant(7)])  # 7 last
            storefront = ShopifyStorefront("store-1", account(fake))
            runner = StorefrontRunner({"store-1": storefront}, index, Producer(), asyncio.Event())
            c = change(7, 10, 4)
            message = SimpleNamespace(topic=topics.INVENTORY_CHANGES, partition=0, offset=0, key=b"store-1",
                                      value=encode(c))
            try:
                await runner.handle([message], time.monotonic())
            finally:
                await storefront.aclose()

        asyncio.run(following(broker, work))
        assert fake.quantity(SHOP, "711") == 4
