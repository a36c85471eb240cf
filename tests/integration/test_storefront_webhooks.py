"""Shopify's stock and app webhooks through the ingress and the router:
``inventory_levels/update`` is checked against the engine's stock (a
STOCK_DRIFT alert while they differ), ``app/uninstalled`` alerts the store."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

from models.webhooks import sign_shopify
from tests.harness import Worker, cli_publish, wait_for

SHOP = "demo-shop.myshopify.com"
SECRET = "shpss_test_secret_0123456789"


def test_storefront_stock_drift_and_app_uninstalled(broker, spawn) -> None:  # type: ignore[no-untyped-def]
    worker: Worker = spawn("w1", OPS_SHOPIFY_WEBHOOK_SECRETS=orjson.dumps({SHOP: [SECRET]}).decode())
    worker.wait_ready()
    assert cli_publish(broker, "catalog.variants", [
        {"shop_domain": SHOP, "shopify_variant_id": "4001", "store_id": "store-1", "product_id": "p-1",
         "provider": "ALIEXPRESS", "source_id": "AE-1", "shopify_inventory_item_id": "808"},
    ]).returncode == 0
    assert cli_publish(broker, "supplier.snapshots", [
        {"store_id": "store-1", "product_id": "p-1", "provider": "ALIEXPRESS", "source_id": "AE-1", "stock": 40,
         "cost_price": "10.00", "currency": "USD", "captured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    ]).returncode == 0
    wait_for(lambda: httpx.get(f"{worker.url}/stores/store-1/products/p-1").status_code == 200, what="synced")

    def post(topic: str, body: dict[str, Any], webhook_id: str) -> None:
        raw = orjson.dumps(body)
        response = httpx.post(f"{worker.url}/webhooks/shopify", content=raw, headers={
            "X-Shopify-Topic": topic, "X-Shopify-Shop-Domain": SHOP, "X-Shopify-Webhook-Id": webhook_id,
            "X-Shopify-Hmac-Sha256": sign_shopify(raw, SECRET), "Content-Type": "application/json"})
        assert response.status_code in (200, 202), response.text

    def alerts(kind: str, status: str | None = None) -> list[dict[str, Any]]:
        found = httpx.get(f"{worker.url}/stores/store-1/alerts").json()["alerts"]
        return [a for a in found if a["type"] == kind and (status is None or a["status"] == status)]

    level = {"inventory_item_id": 808, "location_id": 6001, "available": 3}
    post("inventory_levels/update", level, "lvl-1")
    post("inventory_levels/update", level, "lvl-1")  # Shopify retries: one alert
    post("inventory_levels/update", {**level, "available": 2}, "lvl-2")  # still drifting: still one alert
    (drift,) = wait_for(lambda: alerts("STOCK_DRIFT"), timeout=60, what="drift alert")
    assert drift["status"] == "ACTIVE" and drift["metadata"]["engine"] == "40"
    post("inventory_levels/update", {**level, "available": 38}, "lvl-3")  # within the tolerance of 5
    wait_for(lambda: alerts("STOCK_DRIFT", "RESOLVED"), timeout=60, what="drift resolved")
    assert len(alerts("STOCK_DRIFT")) == 1

    post("app/uninstalled", {"id": 1, "domain": SHOP, "myshopify_domain": SHOP}, "bye-1")
    (gone,) = wait_for(lambda: alerts("APP_UNINSTALLED"), timeout=60, what="uninstall alert")
    assert gone["severity"] == "HIGH" and gone["metadata"] == {"shop_domain": SHOP}
