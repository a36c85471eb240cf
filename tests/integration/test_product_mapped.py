"""A product mapped to a shop variant after it was tracked is shown on the shop at once.

The embedded broker, a worker (webhook router and inventory agent), the storefront
process and the fake Shopify Admin API. Before, a ``catalog.variants`` record that
came after the product's changes left the shop showing whatever it showed (here
0 at 0.00) until the product's next change: the storefront had skipped the
earlier changes as unmapped. Now the router sends PRODUCT_MAPPED, and the
inventory agent publishes the product's current values as a MAPPED change.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from connectors.broker import EmbeddedBroker
from tests.fakes.shopify_server import FakeShopifyServer
from tests.harness import Worker, cli_publish, read_json, wait_for

SHOP, TOKEN = "mapped.myshopify.com", "shpat_mapped"


def snapshot(product: str, stock: int, cost: str) -> dict[str, Any]:
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    return {"store_id": "s1", "product_id": product, "provider": "ALIEXPRESS", "source_id": f"AE-{product}",
            "stock": stock, "cost_price": cost, "currency": "USD", "captured_at": at}


def mapping(variant: str, product: str) -> dict[str, Any]:
    return {"shop_domain": SHOP, "shopify_variant_id": variant, "store_id": "s1", "product_id": product,
            "provider": "ALIEXPRESS", "source_id": f"AE-{product}", "shopify_inventory_item_id": f"{variant}0"}


def mapped_changes(broker: EmbeddedBroker) -> list[dict[str, Any]]:
    return [c for c in read_json(broker, "inventory.changes") if c.get("reason") == "MAPPED"]


def test_a_product_mapped_after_it_was_tracked_is_shown_on_the_shop(broker: EmbeddedBroker, spawn: Any) -> None:
    with FakeShopifyServer() as fake:
        fake.add_shop(SHOP, TOKEN, maximum_available=1000, restore_rate=500)
        for variant in ("11", "12", "13"):
            fake.add_variant(SHOP, variant=variant, product=variant, item=f"{variant}0", price="0.00", quantity=0)
        accounts = {"s1": {"platform": "SHOPIFY", "shop_domain": SHOP, "access_token": TOKEN, "location_id": "1",
                           "admin_url": fake.admin_url(SHOP)}}
        worker: Worker = spawn("w1")
        storefront: Worker = spawn("sf1", command="storefront", OPS_STOREFRONT_ACCOUNTS=orjson.dumps(accounts).decode(),
                                   OPS_STOREFRONT_METRICS_PORT="0")
        worker.wait_ready()

        # Tracked, no catalogue yet: the storefront skips the NEW changes (unmapped).
        assert cli_publish(broker, "supplier.snapshots", [snapshot("p1", 7, "10.00"), snapshot("p2", 3, "4.00")]
                           ).returncode == 0
        wait_for(lambda: worker.get("/stores/s1/products").json().get("count") == 2, what="2 products tracked")
        products = {p["product_id"]: p for p in worker.get("/stores/s1/products").json()["products"]}

        # Mapped now: the shop shows each product's values, from one MAPPED change each.
        assert cli_publish(broker, "catalog.variants", [mapping("11", "p1"), mapping("12", "p2")]).returncode == 0

        def shop_in_step() -> bool:
            return all((fake.quantity(SHOP, f"{v}0"), fake.price(SHOP, v)) == (
                int(products[p]["stock"]), products[p]["selling_price"]) for v, p in (("11", "p1"), ("12", "p2")))

        wait_for(shop_in_step, timeout=60, what=f"the shop showing the mapped products:\n{storefront.log_tail()}")
        # The MAPPED changes may come after the shop is in step: a storefront batch of the NEW
        # changes still waiting for the catalogue (CATALOGUE_WAIT_S) when the mapping lands
        # pushes them itself.
        wait_for(lambda: sorted(c["product_id"] for c in mapped_changes(broker)) == ["p1", "p2"], timeout=60,
                 what="one MAPPED change for each product")
        first = mapped_changes(broker)
        assert all(c["before"] is None and c["after"]["stock"] == products[c["product_id"]]["stock"] for c in first)

        # The same mappings again change nothing; a product mapped before it is tracked
        # gets no MAPPED change, its first snapshot's NEW change shows it.
        assert cli_publish(broker, "catalog.variants", [mapping("11", "p1"), mapping("13", "p3")]).returncode == 0
        wait_for(lambda: 'ops_products_mapped_total{result="UNKNOWN_PRODUCT"} 1.0' in worker.get("/metrics").text,
                 what="p3's mapping met no product")
        assert cli_publish(broker, "supplier.snapshots", [snapshot("p3", 5, "2.00")]).returncode == 0
        wait_for(lambda: fake.quantity(SHOP, "130") == 5, timeout=60, what="p3 shown from its NEW change")
        # Shop variant 12 mapped to another product (p1 now): p1's values, from a MAPPED change.
        assert cli_publish(broker, "catalog.variants", [mapping("12", "p1")]).returncode == 0
        wait_for(lambda: fake.quantity(SHOP, "120") == 7, timeout=60, what="variant 12 showing p1")
        again = mapped_changes(broker)
        assert sorted(c["product_id"] for c in again) == ["p1", "p1", "p2"]
        assert len({c["change_id"] for c in again}) == 3
