"""The Shopify client and adapter against the fake Admin API on loopback (no broker):
the throttle, retries, compare-and-set, idempotency keys and the fulfillment."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from connectors.shopify.client import ShopifyClient, ShopifyRejected, gid
from connectors.shopify.storefront import ShopifyStorefront, set_quantities_document
from connectors.shopify.webhooks import TOPICS, enum_of
from connectors.storefront.settings import ShopifyAccount
from models.events import ChangedField, ChangeReason, InventoryChange, ProductStatus, ProductView
from models.orders import StorefrontCommand, StorefrontCommandType
from models.webhook_routing import CatalogueVariant
from tests.fakes.shopify_server import FakeShopifyServer

SHOP = "s1.myshopify.com"
TOKEN = "shpat_test_token"
AT = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def fake() -> Iterator[FakeShopifyServer]:
    with FakeShopifyServer() as server:
        server.add_shop(SHOP, TOKEN, maximum_available=40, restore_rate=200)
        for n in range(1, 6):
            server.add_variant(SHOP, variant=f"{n}1", product=str(n), item=f"{n}11", price="10.00", quantity=10)
        yield server


def account(fake: FakeShopifyServer, notify: bool = True) -> ShopifyAccount:
    return ShopifyAccount(shop_domain=SHOP, access_token=TOKEN, location_id="1", admin_url=fake.admin_url(SHOP),
                          notify_customer=notify)


class Catalogue:
    def variant(self, store_id: str, product_id: str, variant_id: str | None) -> CatalogueVariant | None:
        n = product_id.removeprefix("p")
        if n not in {"1", "2", "3", "4", "5"}:
            return None
        return CatalogueVariant(shop_domain=SHOP, shopify_variant_id=f"{n}1", store_id=store_id, product_id=product_id,
                                provider="ALIEXPRESS", source_id=f"AE-{n}", shopify_inventory_item_id=f"{n}11")


def view(stock: int, price: str = "10.00") -> ProductView:
    return ProductView(status=ProductStatus.ACTIVE if stock else ProductStatus.OUT_OF_STOCK, available=True, stock=stock,
                       cost_price=Decimal("5"), shipping_cost=Decimal("0"), currency="USD", selling_price=Decimal(price))


def change(n: int, before: int, after: int, price: str = "10.00", cid: str | None = None) -> InventoryChange:
    changed = [ChangedField.STOCK]
    if price != "10.00":
        changed.append(ChangedField.SELLING_PRICE)
    return InventoryChange(change_id=cid or f"c-{n}-{after}", store_id="store-1", product_id=f"p{n}", provider="ALIEXPRESS",
                           source_id=f"AE-{n}", reason=ChangeReason.SNAPSHOT, changed=tuple(changed),
                           before=view(before), after=view(after, price), captured_at=AT)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def push(fake: FakeShopifyServer, changes: list[InventoryChange]) -> Any:
    """One push of ``changes`` by a new adapter of store-1; its outcome."""
    async def main() -> Any:
        storefront = ShopifyStorefront("store-1", account(fake))
        try:
            return await storefront.push(changes, Catalogue())
        finally:
            await storefront.aclose()

    return run(main())


def test_a_bad_token_is_refused(fake: FakeShopifyServer) -> None:
    async def main() -> None:
        client = ShopifyClient(SHOP, "wrong", admin_url=fake.admin_url(SHOP))
        try:
            await client.execute("VariantPrices", "query VariantPrices($ids: [ID!]!) { nodes(ids: $ids) { id } }",
                                 {"ids": []}, cost=1)
        finally:
            await client.aclose()

    with pytest.raises(ShopifyRejected, match="401"):
        run(main())


def test_a_throttled_shop_gets_every_write_and_5xx_are_retried(fake: FakeShopifyServer) -> None:
    fake.fail_next = 2

    async def main() -> None:
        # The client starts assuming Shopify's standard 1000-point bucket; the fake has 40.
        client = ShopifyClient(SHOP, TOKEN, admin_url=fake.admin_url(SHOP), base_delay=0.01)
        try:
            async def write(i: int) -> None:
                variables = {"input0": {"name": "available", "reason": "correction", "ignoreCompareQuantity": True,
                                        "quantities": [{"inventoryItemId": gid("InventoryItem", f"{i % 5 + 1}11"),
                                                        "locationId": gid("Location", 1), "quantity": i}]},
                             "key0": f"k-{i}"}
                data = await client.execute("SetQuantities", set_quantities_document(1), variables, cost=10)
                assert data["q0"]["userErrors"] == []

            await asyncio.gather(*(write(i) for i in range(30)))
        finally:
            await client.aclose()

    run(main())
    assert len(fake.writes(SHOP, "quantity")) == 30
    assert sorted(w["key"] for w in fake.writes(SHOP, "quantity")) == sorted(f"k-{i}" for i in range(30))
    assert fake.stats(SHOP).get("THROTTLED", 0) >= 1  # the fake did refuse, and the client came back
    assert fake.fail_next == 0


def test_push_sets_quantities_with_compare_and_set_and_prices(fake: FakeShopifyServer) -> None:
    changes = [change(1, 10, 7), change(2, 10, 0), change(3, 10, 12, price="11.50")]
    fake.sell(SHOP, "211", 4)  # the shop sold 4 of product 2 since the engine's last push

    async def main() -> Any:
        storefront = ShopifyStorefront("store-1", account(fake))
        try:
            first = await storefront.push(changes, Catalogue())
            again = await storefront.push(changes, Catalogue())  # a redelivery
            return first, again
        finally:
            await storefront.aclose()

    first, again = run(main())
    assert [fake.quantity(SHOP, f"{n}11") for n in (1, 2, 3)] == [7, 0, 12]
    assert fake.price(SHOP, "31") == "11.50"
    quantity_writes = fake.writes(SHOP, "quantity")
    assert [(w["item"], w["quantity"], w["compare"]) for w in quantity_writes] == [
        (gid("InventoryItem", "111"), 7, 10), (gid("InventoryItem", "311"), 12, 10),
        (gid("InventoryItem", "211"), 0, 6),  # stale at 10: read 6, set 0 compared with 6
    ]
    assert len(fake.writes(SHOP, "price")) == 1
    assert first.writes[("quantity", "STALE")] == 1
    # the redelivery wrote nothing: its keys answered the first answers, the prices were already set
    assert len(fake.writes(SHOP)) == 4
    assert fake.stats(SHOP)["IDEMPOTENT_REPLAYS"] >= 3
    assert again.writes.get(("price", "ALREADY_SET")) == 1


def test_stale_writes_of_many_products_are_read_and_written_again_in_batches(fake: FakeShopifyServer) -> None:
    """The shop sold units of every product since the engine's last push (or never got that
    push): every compare-and-set of the push goes stale. They are read and written again in
    rounds of batched requests, not one product at a time; a later change of the same
    product waits for the earlier one's result and compares with it."""
    for n in range(1, 6):
        fake.sell(SHOP, f"{n}11", n)  # the shop shows 10 - n
    changes = [change(n, 10, 20 + n) for n in range(1, 6)] + [change(1, 21, 30)]
    outcome = push(fake, changes)
    assert [fake.quantity(SHOP, f"{n}11") for n in range(1, 6)] == [30, 22, 23, 24, 25]
    item_1 = [(w["quantity"], w["compare"]) for w in fake.writes(SHOP, "quantity") if w["item"] == gid("InventoryItem", "111")]
    assert item_1 == [(21, 9), (30, 21)]  # in order: the later change compared with the earlier one's result
    assert outcome.writes[("quantity", "STALE")] == 6 and outcome.writes[("quantity", "OK")] == 6
    # 6 first writes: in one request, which the shop refuses for its cost (the client learns the
    # bucket, 40, from that answer), then in 2 requests of 4 at most; a round of the 5 products
    # (1 read, 2 requests of writes); a round of product 1's later change (1 read, 1 write)
    assert fake.stats(SHOP).get("MAX_COST_EXCEEDED", 0) == 1
    assert fake.stats(SHOP)["REQUESTS"] == 2 + 3 + 2


def test_prices_go_as_plain_decimals_and_a_product_s_refused_prices_hold_up_no_other(fake: FakeShopifyServer) -> None:
    """A price ``str`` writes as ``1E+3`` is no ``Money`` to Shopify: the document would be
    refused. And a product whose price document the shop refuses as a whole is counted
    REJECTED: raised, the storefront process retried the batch forever and no store's
    writes got past it."""
    fake.refuse_prices_of.add(gid("Product", "2"))
    changes = [change(1, 10, 10, price="1E+3"), change(2, 10, 10, price="12.00"), change(3, 10, 10, price="13.00")]
    outcome = push(fake, changes)
    assert [fake.price(SHOP, f"{n}1") for n in (1, 2, 3)] == ["1000", "10.00", "13.00"]
    assert outcome.writes[("price", "OK")] == 2 and outcome.writes[("price", "REJECTED")] == 1
    assert fake.stats(SHOP)["GRAPHQL_ERRORS"] == 1


def test_unmapped_products_are_counted_and_skipped(fake: FakeShopifyServer) -> None:
    assert push(fake, [change(9, 10, 3)]).changes == {"UNMAPPED": 1}
    assert fake.writes(SHOP) == []


@pytest.mark.parametrize("notify", [True, False])
def test_show_tracking_creates_one_fulfillment(fake: FakeShopifyServer, notify: bool) -> None:
    fake.add_order(SHOP, "5001", [("71", "11", 1), ("72", "21", 2)])
    command = StorefrontCommand(command_id="cmd-1", type=StorefrontCommandType.SHOW_TRACKING, store_id="store-1",
                                order_id="shopify-5001", order_number="#1001", group_id="ALIEXPRESS", line_ids=("72",),
                                tracking_number="LP123CN", carrier="Cainiao", tracking_url="https://t.example/LP123CN",
                                issued_at=AT)

    async def main() -> list[str]:
        storefront = ShopifyStorefront("store-1", account(fake, notify))
        try:
            return [await storefront.show_tracking(command) for _ in range(2)]
        finally:
            await storefront.aclose()

    assert run(main()) == ["CREATED", "ALREADY_SHOWN"]
    [fulfillment] = fake.fulfillments(SHOP, "5001")
    assert fulfillment["notifyCustomer"] is notify
    assert fulfillment["trackingInfo"] == [{"number": "LP123CN", "company": "Cainiao", "url": "https://t.example/LP123CN"}]
    assert len(fulfillment["lines"]) == 1  # only the command's line


def test_register_webhooks_is_idempotent(fake: FakeShopifyServer, tmp_path: Any) -> None:
    import os
    import subprocess
    import sys

    from tests.harness import ROOT

    secrets = tmp_path / "storefront.json"
    secrets.write_text(json.dumps({"storefront_accounts": {"store-1": {
        "platform": "SHOPIFY", "shop_domain": SHOP, "access_token": TOKEN, "location_id": "1",
        "admin_url": fake.admin_url(SHOP)}}}))
    secrets.chmod(0o600)
    env = {**os.environ, "OPS_STOREFRONT_SECRETS_FILE": str(secrets), "OPS_PUBLIC_URL": "https://ops.example.com",
           "PYTHONPATH": str(ROOT)}

    def register() -> str:
        done = subprocess.run([sys.executable, "-m", "connectors.cli", "shopify", "register-webhooks", "store-1"],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert TOKEN not in done.stdout + done.stderr
        return done.stdout

    first, second = register(), register()
    hooks = fake.writes(SHOP, "webhook")
    assert sorted(h["topic"] for h in hooks) == sorted(enum_of(t) for t in TOPICS)
    assert {h["callbackUrl"] for h in hooks} == {"https://ops.example.com/webhooks/shopify"}
    assert first.count("CREATED") == len(TOPICS) and "EXISTS" not in first
    assert second.count("EXISTS") == len(TOPICS) and "CREATED" not in second
    assert "customers/redact" in second and "APP_CONFIG" in second


def test_a_write_the_shop_refuses_as_a_document_is_rejected_alone_and_the_others_are_written(
    fake: FakeShopifyServer,
) -> None:
    """A stock beyond GraphQL's 32-bit Int (a supplier's "unlimited": valid for the engine) makes
    Shopify refuse the whole aliased document with top-level ``errors``. The push must count
    that change REJECTED and write the others of the batch, not raise: the storefront process
    retries a raised push forever, so one such change would stall every store's writes."""
    changes = [change(1, 10, 7), change(2, 10, 3_000_000_000), change(3, 10, 12, price="11.50")]
    outcome = push(fake, changes)
    assert [fake.quantity(SHOP, f"{n}11") for n in (1, 2, 3)] == [7, 10, 12]
    assert fake.price(SHOP, "31") == "11.50"
    assert outcome.writes[("quantity", "OK")] == 2 and outcome.writes[("quantity", "REJECTED")] == 1
    assert fake.stats(SHOP)["GRAPHQL_ERRORS"] >= 1


def test_a_change_that_met_a_busy_shop_is_written_once_the_shop_is_quiet(fake: FakeShopifyServer) -> None:
    """A shop selling item 111 between each read and write: the push's compare-and-set goes
    stale at every attempt and raises (the storefront process tries the batch again). Once
    the shop is quiet, the next try must write the engine's quantity."""
    item = gid("InventoryItem", "111")
    fake.sell(SHOP, "111", 1)  # stale from the first write on
    fake.sell_after_read[item] = 1

    with pytest.raises(RuntimeError, match="kept moving"):
        push(fake, [change(1, 10, 50)])
    fake.sell_after_read.clear()  # the shop is quiet now
    outcome = push(fake, [change(1, 10, 50)])
    assert fake.quantity(SHOP, "111") == 50
    assert outcome.writes.get(("quantity", "OK")) == 1
