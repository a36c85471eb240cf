"""Reconciliation end to end: a webhook deliberately dropped is caught by the next
pull of the shop's orders; the copy of one that did arrive changes nothing.

The embedded broker, a worker (ingress, router, order machine), PostgreSQL (the
pull's mark) and the storefront process against the fake Shopify Admin API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from connectors.broker import EmbeddedBroker
from models.webhooks import sign_shopify
from tests.fakes.shopify_server import FakeShopifyServer
from tests.harness import Worker, cli_publish, wait_for

SHOP = "recon.myshopify.com"
TOKEN = "shpat_recon"
SECRET = "shpss_test_secret_0123456789"


@pytest.fixture
def fake() -> Iterator[FakeShopifyServer]:
    with FakeShopifyServer() as server:
        server.add_shop(SHOP, TOKEN)
        for v in ("41", "42"):
            server.add_variant(SHOP, variant=v, product=f"4{v}", item=f"9{v}", price="10.00", quantity=5)
        server.add_order(SHOP, "7001", [("801", "41", 1)])
        server.add_order(SHOP, "7002", [("802", "42", 2)])
        yield server


def order(worker: Worker, number: str) -> dict[str, Any] | None:
    response = worker.get(f"/orders/shopify-{number}")
    return response.json() if response.status_code == 200 else None


def rows(dsn: str) -> list[Any]:
    async def main() -> list[Any]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch("SELECT * FROM storefront_reconcile WHERE platform = 'SHOPIFY'"))
        finally:
            await conn.close()

    return asyncio.run(main())


def test_a_dropped_webhook_is_caught_by_the_next_pull(
    broker: EmbeddedBroker, spawn: Any, fake: FakeShopifyServer, pg_dsn: str
) -> None:
    worker: Worker = spawn("w1", OPS_SHOPIFY_WEBHOOK_SECRETS=orjson.dumps({SHOP: [SECRET]}).decode())
    catalogue = [{"shop_domain": SHOP, "shopify_variant_id": v, "store_id": "s1", "product_id": f"p{v}",
                  "provider": "ALIEXPRESS", "source_id": f"AE-{v}"} for v in ("41", "42")]
    assert cli_publish(broker, "catalog.variants", catalogue).returncode == 0
    worker.wait_ready()

    # Order 7001's webhook arrives; 7002's is lost.
    body = orjson.dumps({
        "id": 7001, "name": "#7001", "email": "buyer@example.com", "currency": "USD", "financial_status": "paid",
        "subtotal_price": "10.00", "total_tax": "0.00", "total_price": "10.00",
        "customer": {"first_name": "Ada", "last_name": "Buyer"},
        "shipping_address": {"address1": "1 Main St", "city": "Austin", "country_code": "US", "name": "Ada Buyer"},
        "line_items": [{"id": 801, "variant_id": 41, "product_id": 441, "title": "item 801", "quantity": 1,
                        "price": "10.00"}],
    })
    response = httpx.post(f"{worker.url}/webhooks/shopify", content=body, headers={
        "X-Shopify-Topic": "orders/create", "X-Shopify-Shop-Domain": SHOP, "X-Shopify-Webhook-Id": "wh-7001",
        "X-Shopify-Hmac-Sha256": sign_shopify(body, SECRET), "Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    wait_for(lambda: order(worker, "7001"), timeout=20, what="order 7001 from its webhook")
    assert order(worker, "7002") is None

    accounts = orjson.dumps({"s1": {"platform": "SHOPIFY", "shop_domain": SHOP, "access_token": TOKEN,
                                    "location_id": "1", "admin_url": fake.admin_url(SHOP)}}).decode()
    storefront: Worker = spawn("sf1", command="storefront", OPS_STOREFRONT_ACCOUNTS=accounts,
                               OPS_STOREFRONT_METRICS_PORT="0", OPS_DATABASE_URL=pg_dsn,
                               OPS_SHOPIFY_RECONCILE_INTERVAL_S="1", OPS_LOG_LEVEL="info")
    def paid_7002() -> dict[str, Any] | None:
        # The pull's webhook becomes two events (ORDER_CREATED, then PAYMENT_CONFIRMED) handled
        # one after the other: the view may show the order between them.
        found = order(worker, "7002")
        return found if found and any(h["event"] == "PAYMENT_CONFIRMED" for h in found["history"]) else None

    lost = wait_for(paid_7002, timeout=30, what=f"order 7002 and its payment from the pull:\n{storefront.log_tail()}")
    assert lost["store_id"] == "s1"
    assert [(i["product_id"], i["quantity"]) for i in lost["items"]] == [("p42", 2)]

    # Another order placed after the first pull, its webhook lost too: the next pull catches it.
    [mark] = wait_for(lambda: rows(pg_dsn), timeout=10, what="the pull's mark")
    fake.add_order(SHOP, "7003", [("803", "41", 1)])
    wait_for(lambda: order(worker, "7003"), timeout=30, what=f"order 7003 from a later pull:\n{storefront.log_tail()}")
    [later] = rows(pg_dsn)
    assert later["shop"] == SHOP and later["pulled_until"] > mark["pulled_until"]
    assert fake.stats(SHOP)["ORDERS_PULLS"] >= 2

    # 7001 came by webhook and by every pull: created once.
    seen = order(worker, "7001")
    assert seen is not None
    assert [h["event"] for h in seen["history"]].count("ORDER_CREATED") == 1
