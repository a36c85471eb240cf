"""A WooCommerce store's orders end to end: signed order webhooks, each
delivered twice (and the paid update re-sent with a new delivery id, as
WooCommerce does), through the ingress, the router, the order machine, the
executor and a fake supplier: one order, placed once at each supplier."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.fakes.clients import supplier_env
from tests.fakes.supplier_server import FakeSupplierServer
from tests.harness import Worker, cli_publish, read_json, wait_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
SITE = "woo.example.com"
SECRET = "wc-secret-current-0123456789"
ORDER_ID = f"woocommerce-{SITE}-727"
# Line items of the fixture: simple product 93, variations 23 and 41.
CATALOGUE = [
    {"platform": "WOOCOMMERCE", "shop_domain": SITE, "shopify_variant_id": ref, "store_id": "store-w",
     "product_id": f"p-{ref}", "provider": provider, "source_id": f"SRC-{ref}"}
    for ref, provider in (("93", "ALIEXPRESS"), ("23", "CJ_DROPSHIPPING"), ("41", "SPOCKET"))
]


def post(worker: Worker, topic: str, order: dict[str, Any], delivery: str) -> None:
    body = orjson.dumps(order)
    response = httpx.post(f"{worker.url}/webhooks/woocommerce", content=body, timeout=15, headers={
        "Content-Type": "application/json", "X-WC-Webhook-Source": f"https://{SITE}/",
        "X-WC-Webhook-Topic": topic, "X-WC-Webhook-Resource": "order", "X-WC-Webhook-Event": topic.split(".")[1],
        "X-WC-Webhook-ID": "12", "X-WC-Webhook-Delivery-ID": delivery,
        "X-WC-Webhook-Signature": base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode(),
    })
    assert response.status_code == 202, response.text


def test_a_woocommerce_order_delivered_twice_is_placed_once_at_each_supplier(  # type: ignore[no-untyped-def]
    broker, spawn, pg_dsn
) -> None:
    paid = orjson.loads((FIXTURES / "woocommerce_order_processing.json").read_bytes())
    pending = {**paid, "status": "pending", "date_paid": None, "date_paid_gmt": None, "transaction_id": ""}
    with FakeSupplierServer(seed=3, tracking_delay_s=36000) as fake:
        worker: Worker = spawn("w1", OPS_WOOCOMMERCE_WEBHOOK_SECRETS=orjson.dumps({SITE: [SECRET]}).decode())
        worker.wait_ready()
        spawn("x1", command="executor", OPS_DATABASE_URL=pg_dsn, OPS_EXECUTOR_METRICS_PORT="0",
              OPS_TRACKING_POLL_INTERVAL="36000", **supplier_env(fake, read_timeout=2.0))
        # The catalogue first: same site partition as the webhooks, earlier offsets.
        assert cli_publish(broker, "catalog.variants", CATALOGUE).returncode == 0
        post(worker, "order.created", pending, "d-created")
        post(worker, "order.created", pending, "d-created")  # the same delivery twice
        pending_state = wait_for(lambda: (r := httpx.get(f"{worker.url}/orders/{ORDER_ID}")).status_code == 200
                                 and r.json(), timeout=60, what="order created")
        assert pending_state["status"] == "PENDING" and not pending_state["paid"]
        post(worker, "order.updated", paid, "d-paid-1")
        post(worker, "order.updated", paid, "d-paid-2")  # re-sent: a new delivery id, same order events
        state = wait_for(
            lambda: (o := httpx.get(f"{worker.url}/orders/{ORDER_ID}").json())["status"] == "AWAITING_SHIPMENT" and o,
            timeout=120, interval=1, what="supplier orders placed")
        supplier = fake.orders()

    assert state["paid"] and state["store_id"] == "store-w" and state["order_number"] == "727"
    assert sorted((g["group_id"], g["status"]) for g in state["groups"]) == [
        ("ALIEXPRESS", "PLACED"), ("CJ_DROPSHIPPING", "PLACED"), ("SPOCKET", "PLACED")]
    assert supplier["duplicates"] == [] and len(supplier["by_reference"]) == 3
    events = [h["event"] for h in state["history"]]
    assert events.count("ORDER_CREATED") == 1 and events.count("PAYMENT_CONFIRMED") == 1
    ids = [h["event_id"] for h in state["history"]]
    assert len(ids) == len(set(ids))
    assert f"woocommerce:{SITE}:order:727" in ids and f"woocommerce:{SITE}:order:727:paid" in ids
    assert [d for d in read_json(broker, "deadletter") if d["reason"] != "INVALID_IN_STATE"] == []
