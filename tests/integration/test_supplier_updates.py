"""A supplier's stock and price webhooks reach the store's products in seconds:
signed webhooks through the ingress, the router's catalogue index (supplier
product -> store products) and the inventory agent, as supplier snapshots."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

from models.webhooks import sign_hmac
from tests.harness import Worker, cli_publish, read_json, wait_for

SHOP = "demo-shop.myshopify.com"
SECRETS = {
    "CJ_DROPSHIPPING": {"header": "X-CJ-Signature", "secret": "cj-webhook-secret-0123456789", "encoding": "hex"},
    "SPOCKET": {"header": "X-Spocket-Signature", "secret": "spocket-secret-0123456789", "encoding": "hex"},
}


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def snapshot(store: str, product: str, variant: str | None, provider: str, source: str, stock: int,
             cost: str) -> dict[str, Any]:
    return {"store_id": store, "product_id": product, "variant_id": variant, "provider": provider,
            "source_id": source, "stock": stock, "cost_price": cost, "currency": "USD", "captured_at": now()}


def test_supplier_stock_and_price_webhooks_update_every_store_product_they_feed(broker, spawn) -> None:  # type: ignore[no-untyped-def]
    worker: Worker = spawn("w1", OPS_SUPPLIER_WEBHOOK_SECRETS=orjson.dumps(SECRETS).decode())
    worker.wait_ready()
    # Two stores sell CJ product P-1 (store-2 its variant V-2 only); one sells Spocket's S-1.
    variants = [
        {"shop_domain": SHOP, "shopify_variant_id": "11", "store_id": "store-1", "product_id": "p-cj",
         "provider": "CJ_DROPSHIPPING", "source_id": "P-1"},
        {"shop_domain": "other.myshopify.com", "shopify_variant_id": "21", "store_id": "store-2",
         "product_id": "p-cj2", "variant_id": "v2", "provider": "CJ_DROPSHIPPING", "source_id": "P-1",
         "source_variant_id": "V-2"},
        {"shop_domain": SHOP, "shopify_variant_id": "12", "store_id": "store-1", "product_id": "p-sp",
         "provider": "SPOCKET", "source_id": "S-1"},
        # Mapped, but never synced: news of it waits for the first sync.
        {"shop_domain": SHOP, "shopify_variant_id": "13", "store_id": "store-1", "product_id": "p-new",
         "provider": "SPOCKET", "source_id": "S-2"},
    ]
    assert cli_publish(broker, "catalog.variants", variants).returncode == 0
    snaps = [
        snapshot("store-1", "p-cj", None, "CJ_DROPSHIPPING", "P-1", 40, "10.00"),
        snapshot("store-2", "p-cj2", "v2", "CJ_DROPSHIPPING", "P-1", 40, "10.00"),
        snapshot("store-1", "p-sp", None, "SPOCKET", "S-1", 9, "4.00"),
    ]
    assert cli_publish(broker, "supplier.snapshots", snaps).returncode == 0

    def product(store: str, product_id: str, variant: str | None = None) -> dict[str, Any]:
        params = {"variant_id": variant} if variant else {}
        response = httpx.get(f"{worker.url}/stores/{store}/products/{product_id}", params=params)
        return response.json() if response.status_code == 200 else {}

    wait_for(lambda: product("store-1", "p-cj") and product("store-2", "p-cj2", "v2") and product("store-1", "p-sp"),
             timeout=60, what="synced")

    def metric(line: str) -> bool:
        return line in httpx.get(f"{worker.url}/metrics").text

    # The catalogue filed under its supplier products (5 index records: one variant has a source variant).
    wait_for(lambda: metric('ops_webhooks_routed_total{result="STORED",source="CATALOGUE_SOURCE"} 5.0'),
             timeout=60, what="the catalogue filed by supplier product")

    def post(provider: str, body: dict[str, Any]) -> None:
        raw = orjson.dumps(body)
        config = SECRETS[provider]
        response = httpx.post(f"{worker.url}/webhooks/suppliers/{provider}", content=raw, headers={
            "Content-Type": "application/json", config["header"]: sign_hmac(raw, config["secret"])})
        assert response.status_code in (200, 202), response.text

    # CJ: product P-1 is sold out: both stores' products go out of stock, each with an alert.
    post("CJ_DROPSHIPPING", {"messageId": "s-1", "type": "STOCK", "params": {"pid": "P-1", "storageNum": 0}})
    wait_for(lambda: product("store-1", "p-cj").get("status") == "OUT_OF_STOCK"
             and product("store-2", "p-cj2", "v2").get("status") == "OUT_OF_STOCK", timeout=60, what="stock out")
    for store in ("store-1", "store-2"):
        alerts = httpx.get(f"{worker.url}/stores/{store}/alerts").json()["alerts"]
        assert [a["type"] for a in alerts] == ["STOCK_OUT"], alerts
    # CJ: news of variant V-2 alone (no product id) reaches only store-2's variant.
    post("CJ_DROPSHIPPING", {"messageId": "s-2", "type": "VARIANT", "params": {"vid": "V-2", "storageNum": 25}})
    wait_for(lambda: product("store-2", "p-cj2", "v2").get("stock") == 25, timeout=60, what="variant restock")
    # Spocket, generic shape: a new cost reprices the product, the stock is kept.
    post("SPOCKET", {"event": "price", "id": "e-1", "source_id": "S-1", "price": "6.00"})
    sp = wait_for(lambda: (p := product("store-1", "p-sp")).get("cost_price") == "6.00" and p, timeout=60,
                  what="repriced")
    assert sp["stock"] == 9 and sp["status"] == "ACTIVE"
    # News of a product the engine has not synced yet changes nothing (the sync brings it whole).
    post("SPOCKET", {"event": "stock", "id": "e-2", "source_id": "S-2", "stock": 5})
    post("SPOCKET", {"event": "stock", "id": "e-3", "source_id": "S-1", "stock": 8})  # a marker after it
    wait_for(lambda: product("store-1", "p-sp").get("stock") == 8, timeout=60, what="marker")
    assert product("store-1", "p-new") == {}
    assert product("store-1", "p-cj").get("stock") == 0  # the variant news did not touch store-1's product

    # The store now sources p-sp from S-9: S-1's news no longer reaches it, and S-9's
    # news is not applied over a state that still says S-1 (the next sync settles it).
    moved = {**variants[2], "source_id": "S-9"}
    assert cli_publish(broker, "catalog.variants", [moved]).returncode == 0

    # The index is kept on the supplier products' partitions: wait until the move is filed
    # there (news that comes before is news of a product no store sells yet, and is dropped).
    wait_for(lambda: metric('ops_webhooks_routed_total{result="REMOVED",source="CATALOGUE_SOURCE"} 1.0'),
             timeout=60, what="the old source's index entry removed")
    wait_for(lambda: metric('ops_webhooks_routed_total{result="STORED",source="CATALOGUE_SOURCE"} 6.0'),
             timeout=60, what="the new source filed")

    post("SPOCKET", {"event": "stock", "id": "e-4", "source_id": "S-9", "stock": 2})
    wait_for(lambda: metric('ops_supplier_updates_total{result="SOURCE_MISMATCH"} 1.0'), timeout=60, what="moved")
    post("SPOCKET", {"event": "stock", "id": "e-5", "source_id": "S-1", "stock": 1})
    wait_for(lambda: metric('ops_webhooks_routed_total{result="UNTRACKED",source="SUPPLIER_UPDATE"} 1.0'),
             timeout=60, what="untracked")
    assert product("store-1", "p-sp").get("stock") == 8

    changes = read_json(broker, "inventory.changes")
    by_product: dict[str, list[Any]] = {}
    for change in changes:
        by_product.setdefault(change["product_id"], []).append(change)
    assert len(by_product["p-cj"]) == 2  # NEW, then the stock-out: one change each, nothing twice
    metrics = httpx.get(f"{worker.url}/metrics").text
    assert 'ops_supplier_updates_total{result="UNKNOWN_PRODUCT"} 1.0' in metrics
