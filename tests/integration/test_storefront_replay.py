"""Replaying a refused store's dead letters puts no old value back on the shop.

The embedded broker, a worker, the storefront process and the fake Shopify Admin
API. The shop refuses the store's token: the change (stock 7) goes to deadletter
as STOREFRONT_REFUSED with the store's alert. The account is fixed, and a newer
change (stock 3) reaches the shop. Then the operator replays the dead letters, as
the alert says. Before, the replayed change was pushed as it was: its comparison
went stale, and the shop was set back to 7, an old count. Now the storefront asks
the worker for the product's current values instead (PRODUCT_RESEND), and the
shop keeps 3.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from connectors.broker import EmbeddedBroker
from tests.fakes.shopify_server import FakeShopifyServer
from tests.harness import Worker, cli_publish, read_json, wait_for
from tests.integration.test_deadletter_replay import cli

SHOP = "replay.myshopify.com"


def snapshot(stock: int, minutes_ago: float) -> dict[str, Any]:
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - minutes_ago * 60))
    return {"store_id": "s1", "product_id": "p1", "provider": "ALIEXPRESS", "source_id": "AE-p1",
            "stock": stock, "cost_price": "10.00", "currency": "USD", "captured_at": at}


def shop(fake: FakeShopifyServer, token: str = "our-token") -> str:
    """The fake shop with the one variant (stock 0), and the engine's account for store s1 (JSON)."""
    fake.add_shop(SHOP, token, maximum_available=1000, restore_rate=500)
    fake.add_variant(SHOP, variant="11", product="1", item="110", price="0.00", quantity=0)
    return orjson.dumps({"s1": {"platform": "SHOPIFY", "shop_domain": SHOP, "access_token": "our-token",
                                "location_id": "1", "admin_url": fake.admin_url(SHOP)}}).decode()


def map_variant(broker: EmbeddedBroker) -> None:
    """The catalogue maps the shop's variant to the store's product p1."""
    assert cli_publish(broker, "catalog.variants", [{
        "shop_domain": SHOP, "shopify_variant_id": "11", "store_id": "s1", "product_id": "p1",
        "provider": "ALIEXPRESS", "source_id": "AE-p1", "shopify_inventory_item_id": "110"}]).returncode == 0


def set_aside(broker: EmbeddedBroker) -> list[dict[str, Any]]:
    """The store's records in deadletter because its shop stayed down."""
    return [d for d in read_json(broker, "deadletter") if d.get("reason") == "STOREFRONT_UNAVAILABLE"]


def unavailable_alerts(worker: Worker) -> list[dict[str, Any]]:
    """The store's STOREFRONT_UNAVAILABLE alerts, whatever their status."""
    return [a for a in worker.get("/stores/s1/alerts").json().get("alerts", [])
            if a["type"] == "STOREFRONT_UNAVAILABLE"]


def storefront_process(spawn: Any, name: str, accounts: str, probe_interval_s: str) -> Worker:
    """A storefront process that sets a store aside after 2 s of failed tries."""
    return spawn(name, command="storefront", OPS_STOREFRONT_ACCOUNTS=accounts, OPS_STOREFRONT_METRICS_PORT="0",
                 OPS_STOREFRONT_UNAVAILABLE_S="2", OPS_STOREFRONT_PROBE_INTERVAL_S=probe_interval_s)


def test_a_replayed_change_of_a_refused_store_shows_the_current_values(broker: EmbeddedBroker, spawn: Any) -> None:
    with FakeShopifyServer() as fake:
        accounts = shop(fake, token="the-shop-s-token")
        worker: Worker = spawn("w1")
        storefront: Worker = spawn("sf1", command="storefront", OPS_STOREFRONT_ACCOUNTS=accounts,
                                   OPS_STOREFRONT_METRICS_PORT="0")
        worker.wait_ready()
        map_variant(broker)

        # Refused: the change waits in deadletter, and the store has its alert.
        assert cli_publish(broker, "supplier.snapshots", [snapshot(7, 10)]).returncode == 0
        wait_for(lambda: [d for d in read_json(broker, "deadletter") if d.get("reason") == "STOREFRONT_REFUSED"],
                 timeout=60, what=f"the refused change in deadletter:\n{storefront.log_tail()}")
        wait_for(lambda: [a for a in worker.get("/stores/s1/alerts").json().get("alerts", [])
                          if a["type"] == "STOREFRONT_REFUSED"], what="the store's STOREFRONT_REFUSED alert")
        assert fake.quantity(SHOP, "110") == 0

        # Fixed (the shop takes our token now); a newer change reaches the shop.
        with fake.lock:
            fake.shops[SHOP].token = "our-token"
        assert cli_publish(broker, "supplier.snapshots", [snapshot(3, 5)]).returncode == 0
        wait_for(lambda: fake.quantity(SHOP, "110") == 3, timeout=60, what="the newer count on the shop")

        # The operator replays the dead letters: the shop keeps the current count.
        assert cli(broker, "replay", "--reason", "STOREFRONT_REFUSED").returncode == 0
        wait_for(lambda: [c for c in read_json(broker, "inventory.changes") if c.get("reason") == "RESENT"],
                 timeout=60, what=f"the product's current values sent again:\n{storefront.log_tail()}")
        resent = [c for c in read_json(broker, "inventory.changes") if c.get("reason") == "RESENT"]
        assert [c["after"]["stock"] for c in resent] == [3]
        reference = f"ops-engine://inventory-change/{resent[0]['change_id']}"
        wait_for(lambda: [w for w in fake.writes(SHOP, "quantity") if w["reference"] == reference], timeout=60,
                 what="the RESENT change pushed")
        assert fake.quantity(SHOP, "110") == 3
        assert [w["quantity"] for w in fake.writes(SHOP, "quantity")] == [3, 3]  # never the old 7


def test_a_shop_down_for_a_while_gets_the_current_values_once_it_answers(broker: EmbeddedBroker, spawn: Any) -> None:
    """The shop answers 503 to everything: after OPS_STOREFRONT_UNAVAILABLE_S of failed tries
    the store is set aside (its changes to deadletter as STOREFRONT_UNAVAILABLE, its alert);
    the storefront process tries the shop now and then, and once it answers replays the
    store's dead letters itself: the shop shows the product's current values."""
    with FakeShopifyServer() as fake:
        accounts = shop(fake)
        fake.down.add(SHOP)
        worker: Worker = spawn("w1")
        storefront = storefront_process(spawn, "sf1", accounts, probe_interval_s="1")
        worker.wait_ready()
        map_variant(broker)

        assert cli_publish(broker, "supplier.snapshots", [snapshot(7, 10)]).returncode == 0
        wait_for(lambda: set_aside(broker), timeout=90, what=f"the change set aside:\n{storefront.log_tail()}")
        assert cli_publish(broker, "supplier.snapshots", [snapshot(3, 5)]).returncode == 0
        wait_for(lambda: len(set_aside(broker)) >= 2, timeout=60, what="the newer change set aside too")
        wait_for(lambda: unavailable_alerts(worker), what="the store's STOREFRONT_UNAVAILABLE alert")
        assert fake.quantity(SHOP, "110") == 0

        fake.down.discard(SHOP)  # back: the process finds out and replays the store's dead letters
        wait_for(lambda: fake.quantity(SHOP, "110") == 3, timeout=90,
                 what=f"the current count on the shop:\n{storefront.log_tail()}")
        resent = [c for c in read_json(broker, "inventory.changes") if c.get("reason") == "RESENT"]
        assert resent and all(c["after"]["stock"] == 3 for c in resent)
        assert all(w["quantity"] == 3 for w in fake.writes(SHOP, "quantity"))  # never the old 7
        # The condition is over: the store's alert is resolved.
        wait_for(lambda: [a["status"] for a in unavailable_alerts(worker)] == ["RESOLVED"], timeout=60,
                 what=f"the store's alert resolved:\n{storefront.log_tail()}")

        # Down again the same day: a new outage, a new alert (not the resolved one).
        fake.down.add(SHOP)
        assert cli_publish(broker, "supplier.snapshots", [snapshot(2, 1)]).returncode == 0
        wait_for(lambda: sorted(a["status"] for a in unavailable_alerts(worker)) == ["ACTIVE", "RESOLVED"], timeout=90,
                 what=f"the second outage's alert:\n{storefront.log_tail()}")


def test_a_store_set_aside_before_a_restart_is_replayed_by_the_next_process(broker: EmbeddedBroker,
                                                                              spawn: Any) -> None:
    """The shop is down: the store is set aside, its changes go to deadletter, its alert is
    raised. The storefront process stops before the shop comes back; a new one does not
    know the store was set aside. It finds the store's recent STOREFRONT_UNAVAILABLE dead
    letters, probes the shop, replays them once it answers (the shop shows the current
    count) and resolves the store's alert."""
    with FakeShopifyServer() as fake:
        accounts = shop(fake)
        fake.down.add(SHOP)
        worker: Worker = spawn("w1")
        first = storefront_process(spawn, "sf1", accounts, probe_interval_s="3600")
        worker.wait_ready()
        map_variant(broker)
        assert cli_publish(broker, "supplier.snapshots", [snapshot(7, 10)]).returncode == 0
        wait_for(lambda: set_aside(broker), timeout=90, what=f"the change set aside:\n{first.log_tail()}")
        wait_for(lambda: unavailable_alerts(worker), what="the store's alert")
        first.stop()

        fake.down.discard(SHOP)
        second: Worker = spawn("sf2", command="storefront", OPS_STOREFRONT_ACCOUNTS=accounts,
                               OPS_STOREFRONT_METRICS_PORT="0", OPS_STOREFRONT_PROBE_INTERVAL_S="1")
        wait_for(lambda: fake.quantity(SHOP, "110") == 7, timeout=90,
                 what=f"the current count on the shop:\n{second.log_tail()}")
        resent = [c for c in read_json(broker, "inventory.changes") if c.get("reason") == "RESENT"]
        assert [c["after"]["stock"] for c in resent] == [7]
        wait_for(lambda: [a["status"] for a in unavailable_alerts(worker)] == ["RESOLVED"],
                 timeout=60, what=f"the store's alert resolved:\n{second.log_tail()}")
