"""Webhooks to supplier orders end to end: signed Shopify and Stripe webhooks, each
delivered 1 to 3 times and shuffled, through the ingress, the router, the order
machine, the executor and a fake supplier: every order is placed once at each
of its suppliers and reaches the state of a clean delivery."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import httpx
import orjson

from models.webhooks import sign_shopify, stripe_header
from tests.fakes.clients import supplier_env
from tests.fakes.supplier_server import FakeSupplierServer
from tests.harness import Worker, cli_publish, read_json, wait_for

SHOP = "demo-shop.myshopify.com"
SHOPIFY_SECRET = "shpss_test_secret_0123456789"
STRIPE_SECRET = "whsec_test_secret_0123456789"
ORDERS = 333  # three webhooks each: about 1,000 webhooks
VARIANTS = {"4001": "ALIEXPRESS", "4002": "CJ_DROPSHIPPING", "4003": "SPOCKET"}


def catalogue() -> list[dict[str, Any]]:
    return [
        {"shop_domain": SHOP, "shopify_variant_id": v, "store_id": "store-1", "product_id": f"p-{v}",
         "provider": provider, "source_id": f"SRC-{v}"}
        for v, provider in VARIANTS.items()
    ]


def shopify_order(n: int, rng: random.Random, financial_status: str) -> dict[str, Any]:
    variants = rng.sample(sorted(VARIANTS), rng.choice([1, 1, 2, 3]))
    return {
        "id": 7000000 + n, "name": f"#{1000 + n}", "email": f"c{n}@example.com", "currency": "USD",
        "financial_status": financial_status, "subtotal_price": "20.00", "total_tax": "0.00",
        "total_price": "20.00", "customer": {"first_name": "Ada", "last_name": "L"},
        "shipping_address": {"address1": "1 Main St", "city": "Austin", "country_code": "US", "name": "Ada L"},
        "line_items": [{"id": 90000 + 10 * n + i, "variant_id": int(v), "product_id": 1, "title": f"T{v}",
                        "quantity": 1, "price": "10.00"} for i, v in enumerate(variants)],
    }


def deliveries(rng: random.Random) -> tuple[list[tuple[str, dict[str, str], bytes]], dict[int, int]]:
    """(path, headers, body) for every webhook, each 1-3 times, shuffled; and groups per order."""
    out: list[tuple[str, dict[str, str], bytes]] = []
    groups: dict[int, int] = {}
    for n in range(ORDERS):
        created = shopify_order(n, rng, "pending")
        groups[n] = len({VARIANTS[str(li["variant_id"])] for li in created["line_items"]})
        paid = {**created, "financial_status": "paid"}
        hooks: list[tuple[str, dict[str, str], bytes]] = []
        for topic, order in (("orders/create", created), ("orders/paid", paid)):
            body = orjson.dumps(order)
            hooks.append(("/webhooks/shopify", {
                "X-Shopify-Topic": topic, "X-Shopify-Shop-Domain": SHOP,
                "X-Shopify-Webhook-Id": f"wh-{n}-{topic}", "X-Shopify-Hmac-Sha256": sign_shopify(body, SHOPIFY_SECRET),
                "Content-Type": "application/json"}, body))
        intent = {"id": f"evt_{n}", "object": "event", "type": "payment_intent.succeeded", "data": {"object": {
            "id": f"pi_{n}", "amount_received": 2000, "currency": "usd",
            "metadata": {"order_id": f"shopify-{7000000 + n}", "store_id": "store-1"}}}}
        hooks.append(("/webhooks/stripe", {"Content-Type": "application/json"}, orjson.dumps(intent)))
        for hook in hooks:
            out.extend([hook] * rng.randint(1, 3))
    rng.shuffle(out)
    return out, groups


async def post_all(url: str, hooks: list[tuple[str, dict[str, str], bytes]]) -> list[int]:
    limit = asyncio.Semaphore(20)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        async def one(path: str, headers: dict[str, str], body: bytes) -> int:
            if path == "/webhooks/stripe":  # signed at send time: Stripe signs each delivery anew
                headers = {**headers, "Stripe-Signature": stripe_header(body, [STRIPE_SECRET], int(time.time()))}
            async with limit:
                return (await http.post(path, content=body, headers=headers)).status_code

        return list(await asyncio.gather(*(one(*h) for h in hooks)))


def test_webhooks_delivered_many_times_shuffled_place_each_supplier_order_once(  # type: ignore[no-untyped-def]
    broker, spawn, pg_dsn
) -> None:
    rng = random.Random(424242)
    env = {
        "OPS_SHOPIFY_WEBHOOK_SECRETS": orjson.dumps({SHOP: [SHOPIFY_SECRET]}).decode(),
        "OPS_STRIPE_WEBHOOK_SECRETS": STRIPE_SECRET,
    }
    with FakeSupplierServer(seed=1, tracking_delay_s=36000) as fake:
        worker: Worker = spawn("w1", **env)
        worker.wait_ready()
        spawn("x1", command="executor", OPS_DATABASE_URL=pg_dsn, OPS_EXECUTOR_METRICS_PORT="0",
              OPS_TRACKING_POLL_INTERVAL="36000", **supplier_env(fake, read_timeout=2.0))
        assert cli_publish(broker, "catalog.variants", catalogue()).returncode == 0
        time.sleep(1.0)  # the catalogue is routed before the orders (same shop partition, earlier offsets)
        hooks, groups = deliveries(rng)
        statuses = asyncio.run(post_all(worker.url, hooks))
        assert set(statuses) <= {200, 202}, sorted(set(statuses))
        assert len(hooks) > 2 * ORDERS * 3 // 2  # duplicates were delivered

        def orders_done() -> bool:
            with httpx.Client(base_url=worker.url, timeout=15) as http:
                for n in range(0, ORDERS, 7):  # a sample while waiting; all of them below
                    r = http.get(f"/orders/shopify-{7000000 + n}")
                    if r.status_code != 200 or r.json()["status"] != "AWAITING_SHIPMENT":
                        return False
            return True

        wait_for(orders_done, timeout=180, interval=2, what="orders placed")
        with httpx.Client(base_url=worker.url, timeout=15) as http:
            states = {n: http.get(f"/orders/shopify-{7000000 + n}").json() for n in range(ORDERS)}
        supplier = fake.orders()

    assert {s["status"] for s in states.values()} == {"AWAITING_SHIPMENT"}
    for n, state in states.items():
        assert state["paid"] and len(state["groups"]) == groups[n]
        assert all(g["status"] == "PLACED" for g in state["groups"])
    assert supplier["duplicates"] == []
    assert len(supplier["by_reference"]) == sum(groups.values())
    # The router's dedup and the machine's ids: each event once in each order's history.
    for state in states.values():
        ids = [h["event_id"] for h in state["history"]]
        assert len(ids) == len(set(ids))
    dead = [d for d in read_json(broker, "deadletter") if d["reason"] != "INVALID_IN_STATE"]
    assert dead == []


def test_a_supplier_tracking_webhook_ships_the_group_once(broker, spawn, pg_dsn) -> None:  # type: ignore[no-untyped-def]
    from models.orders import supplier_key
    from models.webhooks import sign_hmac

    secret = "cj-webhook-secret-0123456789"
    env = {"OPS_SUPPLIER_WEBHOOK_SECRETS": orjson.dumps(
        {"CJ_DROPSHIPPING": {"header": "X-CJ-Signature", "secret": secret, "encoding": "hex"}}).decode()}
    with FakeSupplierServer(seed=2, tracking_delay_s=36000) as fake:  # the poller finds nothing: the webhook must
        worker: Worker = spawn("w1", **env)
        worker.wait_ready()
        spawn("x1", command="executor", OPS_DATABASE_URL=pg_dsn, OPS_EXECUTOR_METRICS_PORT="0",
              OPS_TRACKING_POLL_INTERVAL="36000", **supplier_env(fake, read_timeout=2.0))
        order = {
            "type": "ORDER_CREATED", "event_id": "o-cj-created", "order_id": "o-cj", "store_id": "store-1",
            "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "order_number": "#9",
            "shipping_address": {"name": "A", "line1": "1 Main", "city": "Austin", "country_code": "US"},
            "items": [{"line_id": "l1", "product_id": "p1", "quantity": 1, "unit_price": "5.00",
                       "provider": "CJ_DROPSHIPPING", "source_id": "CJ-1"}],
            "subtotal": "5.00", "total": "5.00", "currency": "USD", "payment_status": "PAID",
        }
        assert cli_publish(broker, "orders.events", [order]).returncode == 0
        wait_for(lambda: httpx.get(f"{worker.url}/orders/o-cj").json().get("status") == "AWAITING_SHIPMENT",
                 timeout=60, what="placed")
        reference = supplier_key("o-cj", "CJ_DROPSHIPPING")
        for message_id in ("m-1", "m-2"):  # the supplier tells twice
            body = orjson.dumps({"messageId": message_id, "type": "ORDER", "params": {
                "orderNumber": reference, "trackNumber": "CJPKL7123456789", "logisticName": "CJPacket",
                "orderStatus": "SHIPPED"}})
            response = httpx.post(f"{worker.url}/webhooks/suppliers/CJ_DROPSHIPPING", content=body, headers={
                "Content-Type": "application/json", "X-CJ-Signature": sign_hmac(body, secret)})
            assert response.status_code in (200, 202), response.text
        state = wait_for(lambda: (o := httpx.get(f"{worker.url}/orders/o-cj").json())["status"] == "SHIPPED" and o,
                         timeout=60, what="shipped")
    assert state["groups"][0]["tracking"] == {"number": "CJPKL7123456789", "carrier": "CJPacket", "url": None}
    assert [h["event"] for h in state["history"]].count("TRACKING_RECEIVED") == 1


def test_shop_redact_removes_personal_data_from_every_order_of_the_shop(broker, spawn) -> None:  # type: ignore[no-untyped-def]
    worker: Worker = spawn("w1", OPS_SHOPIFY_WEBHOOK_SECRETS=orjson.dumps({SHOP: [SHOPIFY_SECRET]}).decode())
    worker.wait_ready()
    assert cli_publish(broker, "catalog.variants", catalogue()).returncode == 0
    rng = random.Random(5)

    def post(topic: str, body: dict[str, Any], webhook_id: str) -> None:
        raw = orjson.dumps(body)
        response = httpx.post(f"{worker.url}/webhooks/shopify", content=raw, headers={
            "X-Shopify-Topic": topic, "X-Shopify-Shop-Domain": SHOP, "X-Shopify-Webhook-Id": webhook_id,
            "X-Shopify-Hmac-Sha256": sign_shopify(raw, SHOPIFY_SECRET), "Content-Type": "application/json"})
        assert response.status_code in (200, 202), response.text

    for n in (1, 2):
        post("orders/create", shopify_order(n, rng, "paid"), f"create-{n}")
    order_ids = [f"shopify-{7000000 + n}" for n in (1, 2)]
    for order_id in order_ids:
        wait_for(lambda: httpx.get(f"{worker.url}/orders/{order_id}").status_code == 200, what=order_id)
    assert httpx.get(f"{worker.url}/orders/{order_ids[0]}").json()["customer"]["email"] == "c1@example.com"
    post("shop/redact", {"shop_id": 1, "shop_domain": SHOP}, "redact-1")
    for order_id in order_ids:
        state = wait_for(lambda: (o := httpx.get(f"{worker.url}/orders/{order_id}").json())["redacted"] and o,
                         what=f"{order_id} redacted")
        assert state["customer"] == {"name": None, "email": None, "phone": None}
        assert state["shipping_address"]["line1"] == "[redacted]" and state["status"] == "PROCESSING"
