"""The storefront process with a WooCommerce store, end to end: the embedded
broker, a worker turning supplier snapshots into ``inventory.changes``, and the
fake WooCommerce site on loopback (tests/fakes/woocommerce_server.py). The
site's simple product and variations follow the changes (absolute stock,
prices as strings); SHOW_TRACKING delivered twice adds one note; a replay of
both topics by a second group changes nothing the site shows."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson

from connectors.broker import EmbeddedBroker, free_port
from models.orders import StorefrontCommand
from streams.codecs import encode
from tests.fakes.woocommerce_server import FakeWooCommerce
from tests.harness import Worker, cli_publish, produce_raw, read_json, wait_for

SITE = "woo.example.com"
STORE = "w1"
# our product (variant) -> (WooCommerce id, parent product id or None)
MAPPING = {("p-simple", None): (93, None), ("p-shirt", "black-m"): (23, 22), ("p-shirt", "black-l"): (24, 22)}


def now(offset_s: float = 0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset_s))


def snapshot(product: str, variant: str | None, stock: int, cost: str, at: str) -> dict[str, Any]:
    return {"store_id": STORE, "product_id": product, "variant_id": variant, "provider": "ALIEXPRESS",
            "source_id": f"AE-{product}", "stock": stock, "cost_price": cost, "currency": "USD", "captured_at": at}


def metric(port: int, name: str, **labels: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()))


def test_a_woocommerce_store_follows_the_changes_and_shows_tracking_once(broker: EmbeddedBroker, spawn: Any) -> None:
    with FakeWooCommerce(products={93: {"type": "simple"}, 22: {"type": "variable"}},
                         variations={22: {23: {}, 24: {}}},
                         orders={727: {"status": "processing", "line_items": [{"id": 315}]}}) as fake:
        worker: Worker = spawn("w1")
        catalogue = [{"platform": "WOOCOMMERCE", "shop_domain": SITE, "shopify_variant_id": str(woo), "store_id": STORE,
                      "product_id": product, "variant_id": variant, "provider": "ALIEXPRESS",
                      "source_id": f"AE-{product}", "woocommerce_parent_id": None if parent is None else str(parent)}
                     for (product, variant), (woo, parent) in MAPPING.items()]
        assert cli_publish(broker, "catalog.variants", catalogue).returncode == 0
        accounts = {STORE: {"platform": "WOOCOMMERCE", "site_url": fake.site_url, "site_host": SITE,
                            "consumer_key": fake.consumer_key, "consumer_secret": fake.consumer_secret,
                            "complete_on_tracking": True}}
        port = free_port()
        env = {"command": "storefront", "OPS_STOREFRONT_ACCOUNTS": orjson.dumps(accounts).decode(),
               "OPS_STOREFRONT_METRICS_PORT": str(port), "OPS_LOG_LEVEL": "info"}
        storefront: Worker = spawn("sf1", **env)
        worker.wait_ready()

        def shows() -> dict[tuple[str, str | None], dict[str, Any]]:
            out = {}
            for key, (woo, parent) in MAPPING.items():
                out[key] = fake.product(woo) if parent is None else fake.variation(parent, woo)
            return out

        def in_step() -> bool:
            last: dict[tuple[str, str | None], dict[str, Any]] = {}
            for change in read_json(broker, "inventory.changes"):
                last[(change["product_id"], change["variant_id"])] = change["after"]
            if set(last) != set(MAPPING):
                return False
            for key, item in shows().items():
                after = last[key]
                quantity = after["stock"] if after["status"] == "ACTIVE" and after["available"] else 0
                if item.get("stock_quantity") != quantity or item.get("regular_price") != after["selling_price"]:
                    return False
            return True

        assert cli_publish(broker, "supplier.snapshots", [
            snapshot("p-simple", None, 12, "10.00", now(-60)), snapshot("p-shirt", "black-m", 4, "7.00", now(-60)),
            snapshot("p-shirt", "black-l", 9, "7.00", now(-60))]).returncode == 0
        wait_for(in_step, timeout=60, what=f"the site in step with the first changes:\n{storefront.log_tail()}")
        assert cli_publish(broker, "supplier.snapshots", [
            snapshot("p-simple", None, 0, "10.00", now(-30)), snapshot("p-shirt", "black-m", 4, "8.50", now(-30))
        ]).returncode == 0
        wait_for(lambda: len(read_json(broker, "inventory.changes")) >= 5, timeout=30, what="second changes")
        wait_for(in_step, timeout=60, what=f"the site in step with the second changes:\n{storefront.log_tail()}")
        simple = fake.product(93)
        assert (simple["stock_quantity"], simple["stock_status"], simple["manage_stock"]) == (0, "outofstock", True)
        assert all(isinstance(item["regular_price"], str) for item in shows().values())

        command = StorefrontCommand.model_validate({
            "command_id": "show-727", "type": "SHOW_TRACKING", "store_id": STORE, "order_id": f"woocommerce-{SITE}-727",
            "order_number": "727", "group_id": "ALIEXPRESS", "line_ids": ["315"],
            "tracking_number": "LP00123456789012CN", "carrier": "Cainiao", "tracking_url": None, "issued_at": now()})
        asyncio.run(produce_raw(broker, "storefront.commands", [(STORE.encode(), encode(command))] * 2))
        wait_for(lambda: metric(port, "ops_storefront_commands_total", result="ALREADY_SHOWN") >= 1, timeout=30,
                 what=f"the second delivery seen:\n{storefront.log_tail()}")
        assert [n["note"].count("LP00123456789012CN") for n in fake.order_notes(727)] == [1]
        assert fake.orders[727]["status"] == "completed"

        # Both topics again from the start (another group): the site shows the same, one note still.
        before = shows()
        replay_port = free_port()
        replay: Worker = spawn("sf2", **{**env, "OPS_APP_ID": "replay", "OPS_STOREFRONT_METRICS_PORT": str(replay_port)})
        total = len(read_json(broker, "inventory.changes"))

        def replayed() -> bool:
            try:
                return (metric(replay_port, "ops_storefront_changes_total") >= total
                        and metric(replay_port, "ops_storefront_commands_total", result="ALREADY_SHOWN") >= 2)
            except httpx.HTTPError:
                return False

        wait_for(replayed, timeout=60, what=f"the replay handled everything:\n{replay.log_tail()}")
        assert shows() == before and len(fake.order_notes(727)) == 1
        assert metric(port, "ops_storefront_writes_total", kind="quantity", result="REJECTED") == 0
