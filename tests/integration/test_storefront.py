"""The storefront process (``ops-engine storefront``) end to end: the embedded
broker, a worker turning supplier snapshots into ``inventory.changes``, and the
fake Shopify Admin API on loopback (tests/fakes/shopify_server.py), which
enforces the throttle and records every write.

One scenario (the broker and the worker take seconds to start): a catalogue and
snapshots published the ways upstream does; the shop's quantities and prices
follow the changes, through THROTTLED answers and a shop that sold units
meanwhile; a redelivery of the whole topic (a second group) writes nothing;
SHOW_TRACKING creates one fulfillment per shipment, notifying the customer as
each store's account says.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from connectors.broker import EmbeddedBroker, free_port
from tests.fakes.shopify_server import FakeShopifyServer, gid
from models.orders import StorefrontCommand
from streams.codecs import encode
from tests.harness import Worker, cli_publish, produce_raw, read_json, wait_for

SHOP1, SHOP2 = "one.myshopify.com", "two.myshopify.com"
TOKEN1, TOKEN2 = "shpat_one", "shpat_two"
PRODUCTS = 8


@pytest.fixture
def fake() -> Iterator[FakeShopifyServer]:
    with FakeShopifyServer() as server:
        server.add_shop(SHOP1, TOKEN1, maximum_available=100, restore_rate=100)
        server.add_shop(SHOP2, TOKEN2, maximum_available=100, restore_rate=100)
        for n in range(PRODUCTS):
            server.add_variant(SHOP1, variant=f"1{n}", product=f"10{n}", item=f"100{n}", price="0.00", quantity=0)
        server.add_variant(SHOP2, variant="21", product="201", item="2001", price="0.00", quantity=0)
        yield server


def accounts(fake: FakeShopifyServer) -> str:
    return orjson.dumps({
        "s1": {"platform": "SHOPIFY", "shop_domain": SHOP1, "access_token": TOKEN1, "location_id": "1",
               "admin_url": fake.admin_url(SHOP1)},
        "s2": {"platform": "SHOPIFY", "shop_domain": SHOP2, "access_token": TOKEN2, "location_id": "1",
               "admin_url": fake.admin_url(SHOP2), "notify_customer": False},
    }).decode()


def now(offset_s: float = 0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset_s))


def snapshot(store: str, product: str, stock: int, cost: str, at: str) -> dict[str, Any]:
    return {"store_id": store, "product_id": product, "provider": "ALIEXPRESS", "source_id": f"AE-{product}",
            "stock": stock, "cost_price": cost, "currency": "USD", "captured_at": at}


def catalogue() -> list[dict[str, Any]]:
    rows = [{"shop_domain": SHOP1, "shopify_variant_id": f"1{n}", "store_id": "s1", "product_id": f"p{n}",
             "provider": "ALIEXPRESS", "source_id": f"AE-p{n}", "shopify_inventory_item_id": f"100{n}"}
            for n in range(PRODUCTS)]
    rows.append({"shop_domain": SHOP2, "shopify_variant_id": "21", "store_id": "s2", "product_id": "q1",
                 "provider": "ALIEXPRESS", "source_id": "AE-q1"})  # no item id: the adapter reads it
    return rows


def changes_of(broker: EmbeddedBroker) -> list[dict[str, Any]]:
    return [c for c in read_json(broker, "inventory.changes") if "after" in c]  # not the garbage record


def expected(broker: EmbeddedBroker) -> dict[tuple[str, str], dict[str, Any]]:
    """The newest change of each product on inventory.changes: what the shop must show."""
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for change in changes_of(broker):
        last[(change["store_id"], change["product_id"])] = change["after"]
    return last


def shown(view: dict[str, Any]) -> int:
    return int(view["stock"]) if view["status"] == "ACTIVE" and view["available"] else 0


def metric(port: int, name: str, **labels: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_changes_reach_the_shop_once_through_the_throttle_and_tracking_is_shown(
    broker: EmbeddedBroker, spawn: Any, fake: FakeShopifyServer
) -> None:
    worker: Worker = spawn("w1")
    assert cli_publish(broker, "catalog.variants", catalogue()).returncode == 0
    metrics_port = free_port()
    env = {"command": "storefront", "OPS_STOREFRONT_ACCOUNTS": accounts(fake),
           "OPS_STOREFRONT_METRICS_PORT": str(metrics_port), "OPS_LOG_LEVEL": "info"}
    storefront: Worker = spawn("sf1", **env)
    worker.wait_ready()

    # 1. New products: quantities and prices set; "another app" empties the shop's bucket meanwhile.
    fake.drain_next = 3
    first = [snapshot("s1", f"p{n}", 10 + n, "10.00", now(-60)) for n in range(PRODUCTS)]
    first += [snapshot("s2", "q1", 4, "20.00", now(-60)), snapshot("s1", "unmapped", 3, "5.00", now(-60))]
    assert cli_publish(broker, "supplier.snapshots", first).returncode == 0
    asyncio.run(produce_raw(broker, "inventory.changes", [(b"s1", b'{"change_id": "garbage"}')]))  # goes to deadletter

    def in_step() -> bool:
        want = expected(broker)
        if len(want) < PRODUCTS + 2:
            return False
        for n in range(PRODUCTS):
            view = want[("s1", f"p{n}")]
            if fake.quantity(SHOP1, f"100{n}") != shown(view) or fake.price(SHOP1, f"1{n}") != view["selling_price"]:
                return False
        q1 = want[("s2", "q1")]
        return fake.quantity(SHOP2, "2001") == shown(q1) and fake.price(SHOP2, "21") == q1["selling_price"]

    wait_for(in_step, timeout=30, what=f"the shops in step with the first changes:\n{storefront.log_tail()}")
    assert fake.stats(SHOP1).get("THROTTLED", 0) + fake.stats(SHOP2).get("THROTTLED", 0) >= 3

    # 2. Changes: stock moves, one product out of stock, a price rise; the shop sold 3 of p2 meanwhile.
    fake.sell(SHOP1, "1002", 3)
    second = [snapshot("s1", "p1", 5, "10.00", now(-30)), snapshot("s1", "p2", 20, "10.00", now(-30)),
              snapshot("s1", "p3", 0, "10.00", now(-30)), snapshot("s1", "p4", 14, "12.00", now(-30))]
    assert cli_publish(broker, "supplier.snapshots", second).returncode == 0
    wait_for(lambda: len(changes_of(broker)) >= PRODUCTS + 2 + 4, timeout=20, what="second changes")
    wait_for(in_step, timeout=30, what=f"the shop in step with the second changes:\n{storefront.log_tail()}")

    writes = fake.writes(SHOP1, "quantity")
    per_item: dict[str, list[dict[str, Any]]] = {}
    for w in writes:
        per_item.setdefault(w["item"], []).append(w)
    assert {item: len(ws) for item, ws in per_item.items()} == {
        gid("InventoryItem", f"100{n}"): 2 if n in (1, 2, 3) else 1 for n in range(PRODUCTS)
    }
    assert per_item[gid("InventoryItem", "1001")][1]["compare"] == 11  # compared with what the engine pushed
    assert per_item[gid("InventoryItem", "1002")][1]["compare"] == 9  # stale at 12: the shop's 9, then 20
    assert per_item[gid("InventoryItem", "1003")][1]["quantity"] == 0  # out of stock
    assert len(fake.writes(SHOP1, "price")) == PRODUCTS + 1  # each new product, then p4's rise
    wait_for(lambda: metric(metrics_port, "ops_storefront_changes_total", result="UNMAPPED") >= 1, timeout=10,
             what="the unmapped change counted")
    wait_for(lambda: metric(metrics_port, "ops_storefront_writes_total", kind="quantity", result="STALE") == 1,
             timeout=10, what="the stale comparison counted once")
    letters = [d for d in read_json(broker, "deadletter") if d["topic"] == "inventory.changes"]
    assert len(letters) == 1 and letters[0]["reason"] == "SCHEMA_VIOLATION"  # the garbage record, and nothing else

    # 3. SHOW_TRACKING, each command delivered twice: one fulfillment each, notify per the store's account.
    fake.add_order(SHOP1, "9001", [("801", "10", 1), ("802", "11", 1)])
    fake.add_order(SHOP2, "9002", [("803", "21", 2)])
    commands = [
        {"command_id": f"show-{order}", "type": "SHOW_TRACKING", "store_id": store, "order_id": f"shopify-{order}",
         "order_number": f"#{order}", "group_id": "ALIEXPRESS", "line_ids": lines, "tracking_number": f"LP{order}CN",
         "carrier": "Cainiao", "tracking_url": None, "issued_at": now()}
        for store, order, lines in (("s1", "9001", ["801"]), ("s2", "9002", ["803"]))
    ]
    # as the orders agent sends them (ops-engine publish does not take storefront.commands)
    records = [(c["store_id"].encode(), encode(StorefrontCommand.model_validate(c))) for c in commands + commands]
    asyncio.run(produce_raw(broker, "storefront.commands", records))
    wait_for(lambda: fake.fulfillments(SHOP1, "9001") and fake.fulfillments(SHOP2, "9002"), timeout=20,
             what="the fulfillments")
    wait_for(lambda: metric(metrics_port, "ops_storefront_commands_total", result="ALREADY_SHOWN") >= 2, timeout=20,
             what="the second deliveries seen")
    [one] = fake.fulfillments(SHOP1, "9001")
    [two] = fake.fulfillments(SHOP2, "9002")
    assert (one["notifyCustomer"], two["notifyCustomer"]) == (True, False)
    assert one["trackingInfo"][0]["number"] == "LP9001CN" and len(one["lines"]) == 1

    # 4. Every record delivered again (a storefront in another group reads both topics from the start).
    before = {shop: fake.writes(shop) for shop in (SHOP1, SHOP2)}
    replay_port = free_port()
    replay: Worker = spawn("sf2", **{**env, "OPS_APP_ID": "replay", "OPS_STOREFRONT_METRICS_PORT": str(replay_port)})
    changes = len(changes_of(broker))

    def replayed() -> bool:  # every change and command handled by the replaying process
        try:
            return (metric(replay_port, "ops_storefront_changes_total") >= changes
                    and metric(replay_port, "ops_storefront_commands_total", result="ALREADY_SHOWN") >= 4)
        except httpx.HTTPError:
            return False

    wait_for(replayed, timeout=30, what=f"the replay handled everything:\n{replay.log_tail()}")
    assert {shop: fake.writes(shop) for shop in (SHOP1, SHOP2)} == before
    assert fake.stats(SHOP1).get("IDEMPOTENT_REPLAYS", 0) >= PRODUCTS + 3  # the keys answered, nothing applied
