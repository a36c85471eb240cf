"""A shop that refuses a store's account (HTTP 401) holds up no other store and loses nothing.

The storefront process's batch handler (``StorefrontRunner.handle``) against the
fake Shopify Admin API on loopback: two stores in one batch, one with a wrong
token. The other store's writes are made; the refused store's records go to
``deadletter`` as STOREFRONT_REFUSED with the reason; once the token is fixed,
the replayed records are written. Before, the handler retried the refused push
forever and no later batch of any store was handled.
"""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import orjson

from connectors.shopify.storefront import ShopifyStorefront
from connectors.storefront import metrics
from connectors.storefront.runner import StorefrontRunner
from connectors.storefront.settings import ShopifyAccount
from models.events import (
    Alert,
    AlertRecord,
    AlertType,
    DeadLetter,
    DeadLetterReason,
    InventoryChange,
    Severity,
    StoreAlertsResolve,
)
from models.webhook_routing import CatalogueVariant
from streams import topics
from streams.codecs import encode
from tests.fakes.shopify_server import FakeShopifyServer
from tests.integration.test_shopify_client import change

SHOP_A, SHOP_B = "a.myshopify.com", "b.myshopify.com"


class Producer:
    """What the handler sends (dead letters), acknowledged at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def send(self, topic: str, key: bytes, value: bytes) -> asyncio.Future[None]:
        self.sent.append((topic, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class Catalogue:
    def variant(self, store_id: str, product_id: str, variant_id: str | None) -> CatalogueVariant | None:
        shop = SHOP_A if store_id == "store-a" else SHOP_B
        n = product_id.removeprefix("p")
        return CatalogueVariant(shop_domain=shop, shopify_variant_id=f"{n}1", store_id=store_id, product_id=product_id,
                                provider="ALIEXPRESS", source_id=f"AE-{n}", shopify_inventory_item_id=f"{n}11")


def account(fake: FakeShopifyServer, shop: str, token: str) -> ShopifyAccount:
    return ShopifyAccount(shop_domain=shop, access_token=token, location_id="1", admin_url=fake.admin_url(shop))


def message(c: InventoryChange, offset: int) -> Any:
    return SimpleNamespace(topic=topics.INVENTORY_CHANGES, partition=0, offset=offset, key=c.store_id.encode(),
                           value=encode(c))


def for_store(c: InventoryChange, store: str) -> InventoryChange:
    return c.model_copy(update={"store_id": store, "change_id": f"{store}-{c.change_id}"})


def test_a_refused_account_sends_its_store_s_records_to_deadletter_and_the_others_are_written() -> None:
    with FakeShopifyServer() as fake:
        for shop in (SHOP_A, SHOP_B):
            fake.add_shop(shop, f"token-{shop}", maximum_available=100, restore_rate=100)
            for n in (1, 2):
                fake.add_variant(shop, variant=f"{n}1", product=str(n), item=f"{n}11", price="10.00", quantity=10)
        batch = [
            message(for_store(change(1, 10, 4), "store-a"), 0),
            message(for_store(change(1, 10, 6), "store-b"), 1),
            message(for_store(change(2, 10, 8), "store-a"), 2),
        ]
        before = metrics.REFUSED.labels("SHOPIFY")._value.get()

        async def handle(token_a: str, messages: list[Any]) -> Producer:
            storefronts = {
                "store-a": ShopifyStorefront("store-a", account(fake, SHOP_A, token_a)),
                "store-b": ShopifyStorefront("store-b", account(fake, SHOP_B, f"token-{SHOP_B}")),
            }
            producer = Producer()
            runner = StorefrontRunner(storefronts, Catalogue(), producer, asyncio.Event())
            try:
                await asyncio.wait_for(runner.handle(messages), timeout=30)  # before: retried for good
            finally:
                for storefront in storefronts.values():
                    await storefront.aclose()
            return producer

        producer = asyncio.run(handle("revoked", batch))
        assert fake.quantity(SHOP_B, "111") == 6  # the other store is written
        assert [fake.quantity(SHOP_A, item) for item in ("111", "211")] == [10, 10]  # nothing of the refused one
        letters = [DeadLetter.model_validate_json(v) for t, _, v in producer.sent if t == topics.DEADLETTER]
        assert [(d.reason, d.offset) for d in letters] == [(DeadLetterReason.STOREFRONT_REFUSED, 0),
                                                          (DeadLetterReason.STOREFRONT_REFUSED, 2)]
        assert "store store-a" in letters[0].detail and "401" in letters[0].detail
        assert "replay" in letters[0].detail
        assert metrics.REFUSED.labels("SHOPIFY")._value.get() == before + 2

        # The token fixed, the dead letters replayed as they were: written.
        replayed = [SimpleNamespace(topic=d.topic, partition=d.partition, offset=d.offset,
                                    key=base64.b64decode(d.key or ""), value=base64.b64decode(d.value))
                    for d in letters]
        assert orjson.loads(replayed[0].value)["store_id"] == "store-a"
        again = asyncio.run(handle(f"token-{SHOP_A}", replayed))
        assert again.sent == []
        assert [fake.quantity(SHOP_A, item) for item in ("111", "211")] == [4, 8]


def test_a_refused_account_raises_one_alert_a_day_for_its_store() -> None:
    """The store's STOREFRONT_REFUSED alert (CRITICAL) goes to ``alerts`` and to the store's
    alert table (inventory.commands); every refused batch after it, the same day, sends none."""
    with FakeShopifyServer() as fake:
        fake.add_shop(SHOP_A, f"token-{SHOP_A}", maximum_available=100, restore_rate=100)
        fake.add_variant(SHOP_A, variant="11", product="1", item="111", price="10.00", quantity=10)

        async def handle() -> Producer:
            storefront = ShopifyStorefront("store-a", account(fake, SHOP_A, "revoked"))
            producer = Producer()
            runner = StorefrontRunner({"store-a": storefront}, Catalogue(), producer, asyncio.Event())
            try:
                for offset in (0, 1, 2):  # three batches, each refused
                    await asyncio.wait_for(runner.handle([message(for_store(change(1, 10, 4 + offset), "store-a"),
                                                                  offset)]), timeout=30)
            finally:
                await storefront.aclose()
            return producer

        sent = asyncio.run(handle()).sent
        assert sum(1 for t, _, _ in sent if t == topics.DEADLETTER) == 3
        alerts = [Alert.model_validate_json(v) for t, _, v in sent if t == topics.ALERTS]
        records = [AlertRecord.model_validate_json(v) for t, _, v in sent if t == topics.INVENTORY_COMMANDS]
        assert len(alerts) == 1 and [r.record for r in records] == alerts
        alert = alerts[0]
        assert (alert.store_id, alert.type, alert.severity) == ("store-a", AlertType.STOREFRONT_REFUSED, Severity.CRITICAL)
        assert SHOP_A in alert.message and "401" in alert.message and "deadletter replay" in alert.message
        assert [k for t, k, _ in sent if t == topics.ALERTS] == [b"store-a"]


def test_a_shop_that_stays_down_is_set_aside_holds_up_no_other_store_and_is_taken_back() -> None:
    """Store b's shop answers 503 to everything. Before, the handler retried its push for
    good and no store's writes got past the batch. Now, after ``unavailable_s`` of failed
    tries, b's records go to deadletter (STOREFRONT_UNAVAILABLE) with its alert; its next
    batches go there at once (no request to its shop); the probe finds the shop answering
    again, and ``take_back`` hands b to ``on_back`` (the process replays its dead letters)."""
    with FakeShopifyServer() as fake:
        for shop in (SHOP_A, SHOP_B):
            fake.add_shop(shop, f"token-{shop}", maximum_available=100, restore_rate=100)
            fake.add_variant(shop, variant="11", product="1", item="111", price="10.00", quantity=10)
        fake.down.add(SHOP_B)
        back: list[tuple[str, datetime]] = []

        async def main() -> Producer:
            storefronts = {s: ShopifyStorefront(s, account(fake, shop, f"token-{shop}"))
                           for s, shop in (("store-a", SHOP_A), ("store-b", SHOP_B))}
            producer = Producer()

            async def on_back(store_id: str, since: datetime) -> bool:
                back.append((store_id, since))
                return True  # replayed: the store's alert is resolved

            runner = StorefrontRunner(storefronts, Catalogue(), producer, asyncio.Event(), unavailable_s=1,
                                      probe_interval_s=0.2, on_back=on_back)
            prober = asyncio.create_task(runner.probe_loop())
            try:
                first = [message(for_store(change(1, 10, 4), "store-a"), 0),
                         message(for_store(change(1, 10, 6), "store-b"), 1)]
                await asyncio.wait_for(runner.handle(first), timeout=60)
                assert fake.quantity(SHOP_A, "111") == 4
                second = [message(for_store(change(1, 4, 5), "store-a"), 2),
                          message(for_store(change(1, 6, 7), "store-b"), 3)]
                calls_before = fake.calls(SHOP_B)
                await asyncio.wait_for(runner.handle(second), timeout=60)
                assert fake.quantity(SHOP_A, "111") == 5
                assert fake.calls(SHOP_B) == calls_before  # set aside: its shop not even asked
                fake.down.discard(SHOP_B)
                for _ in range(100):  # the probe finds it answering
                    runner.take_back()
                    if back:
                        break
                    await asyncio.sleep(0.1)
                third = [message(for_store(change(1, 7, 8), "store-b"), 4)]
                await asyncio.wait_for(runner.handle(third), timeout=60)
                for _ in range(100):  # the resolve follows the replay, in the background
                    if any(t == topics.INVENTORY_COMMANDS and b"STORE_ALERTS_RESOLVE" in v for t, _, v in producer.sent):
                        break
                    await asyncio.sleep(0.05)
            finally:
                runner.stop.set()
                await asyncio.gather(prober, return_exceptions=True)
                for storefront in storefronts.values():
                    await storefront.aclose()
            return producer

        sent = asyncio.run(main()).sent
        assert [store for store, _ in back] == ["store-b"]
        assert fake.quantity(SHOP_B, "111") == 8  # taken back: written again
        letters = [DeadLetter.model_validate_json(v) for t, _, v in sent if t == topics.DEADLETTER]
        assert [(d.reason, d.offset) for d in letters] == [(DeadLetterReason.STOREFRONT_UNAVAILABLE, 1),
                                                          (DeadLetterReason.STOREFRONT_UNAVAILABLE, 3)]
        assert "503" in letters[0].detail
        alerts = [Alert.model_validate_json(v) for t, _, v in sent if t == topics.ALERTS]
        assert [(a.store_id, a.type, a.severity) for a in alerts] == [
            ("store-b", AlertType.STOREFRONT_UNAVAILABLE, Severity.HIGH)]
        # The replay asks for the letters refused since the store was set aside: all of
        # this outage's; the alert is dated from that moment, and resolved after the replay.
        since = back[0][1]
        assert all(d.refused_at >= since for d in letters)
        assert alerts[0].created_at == since
        resolves = [StoreAlertsResolve.model_validate_json(v) for t, _, v in sent
                    if t == topics.INVENTORY_COMMANDS and b"STORE_ALERTS_RESOLVE" in v]
        assert [(r.store_id, r.alert_type) for r in resolves] == [("store-b", AlertType.STOREFRONT_UNAVAILABLE)]
        assert resolves[0].requested_at >= alerts[0].created_at
