"""Issue 5 end to end on loopback: a scheduled sync of 10,000 products across 10
stores and the 3 suppliers of the fake fetches, diffs, pushes to the fake
Shopify and lands in PostgreSQL, and the counts match exactly.

Every part is the real one, each a process of its own: the embedded broker, a
worker (schedule on), the syncer against the fake supplier APIs, the
storefront process against the fake Shopify Admin API (one shop per store,
its cost bucket enforced), and the recorder against PostgreSQL. The products
are first tracked with values no supplier has (stock 1000, cost 0.01), so the
scheduled FULL sync changes them; then each product is compared in four
places (the worker's table, the run's counts, the shop, the database's
products), and each run with its sync_logs row.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from connectors.broker import EmbeddedBroker, free_port
from tests.fakes.clients import supplier_env
from tests.fakes.shopify_server import FakeShopifyServer
from tests.fakes.supplier_server import FakeSupplierServer
from tests.harness import Worker, cli_publish, read_json, wait_for

STORES = [f"e2e-{i}" for i in range(10)]
PER_STORE = 1000
PROVIDERS = ["ALIEXPRESS", "CJ_DROPSHIPPING", "SPOCKET"]
SEEDED_AT = "2026-11-01T00:00:00Z"


def shop(store: str) -> str:
    return f"{store}.myshopify.com"


def source(n: int) -> str:
    return f"1005{n:06d}" if n % 3 == 0 else f"src{n:06d}"


def item(store: str, n: int) -> str:
    return f"{STORES.index(store) + 1}{n:05d}"


def seed() -> list[dict[str, Any]]:
    return [{"store_id": s, "product_id": f"p{n}", "provider": PROVIDERS[n % 3], "source_id": source(n),
             "stock": 1000, "cost_price": "0.01", "currency": "USD", "captured_at": SEEDED_AT}
            for s in STORES for n in range(PER_STORE)]


def catalogue() -> list[dict[str, Any]]:
    return [{"shop_domain": shop(s), "shopify_variant_id": item(s, n), "store_id": s, "product_id": f"p{n}",
             "provider": PROVIDERS[n % 3], "source_id": source(n), "shopify_inventory_item_id": item(s, n)}
            for s in STORES for n in range(PER_STORE)]


def products(worker: Worker, store: str) -> dict[str, dict[str, Any]]:
    return {p["product_id"]: p for p in worker.get(f"/stores/{store}/products").json()["products"]}


def database(dsn: str, query: str) -> list[Any]:
    async def main() -> list[Any]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(query))
        finally:
            await conn.close()

    return asyncio.run(main())


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_scheduled_sync_of_10000_products_reaches_the_shop_and_the_database(
    broker: EmbeddedBroker, spawn: Any, workers: list[Worker], tmp_path: Any, pg_dsn: str
) -> None:
    with FakeSupplierServer(seed=5) as suppliers, FakeShopifyServer() as shopify:
        for s in STORES:
            shopify.add_shop(shop(s), f"token-{s}", maximum_available=20000, restore_rate=10000)
            for n in range(PER_STORE):
                shopify.add_variant(shop(s), variant=item(s, n), product=item(s, n), item=item(s, n),
                                    price="0.00", quantity=0)
        accounts = {s: {"platform": "SHOPIFY", "shop_domain": shop(s), "access_token": f"token-{s}",
                        "location_id": "1", "admin_url": shopify.admin_url(shop(s))} for s in STORES}

        worker = spawn("w1", OPS_SYNC_SCAN_INTERVAL="1")
        workers.append(Worker(broker, tmp_path, name="syncer", command="syncer", OPS_SYNCER_METRICS_PORT="0",
                              OPS_SYNCER_CONCURRENCY="8",
                              **supplier_env(suppliers, read_timeout=5)).start())
        storefront_port = free_port()
        storefront = Worker(broker, tmp_path, name="storefront", command="storefront",
                            OPS_STOREFRONT_ACCOUNTS=orjson.dumps(accounts).decode(),
                            OPS_STOREFRONT_METRICS_PORT=str(storefront_port)).start()
        workers.append(storefront)
        workers.append(Worker(broker, tmp_path, name="recorder", command="recorder", OPS_DATABASE_URL=pg_dsn,
                              OPS_RECORDER_METRICS_PORT="0").start())
        worker.wait_ready(timeout=60)

        # Tracked before any sync: the catalogue, then every product with values no supplier has.
        assert cli_publish(broker, "catalog.variants", catalogue()).returncode == 0
        # Each record maps a product not tracked yet (PRODUCT_MAPPED finds no product): then the seed.
        # Seeded at once instead, a product tracked before its mapping command arrives gets a MAPPED
        # change too, and the shops take 10,000 needless writes more.
        wait_for(lambda: f'ops_products_mapped_total{{result="UNKNOWN_PRODUCT"}} {len(STORES) * PER_STORE}.0'
                 in worker.get("/metrics").text, timeout=120, what="the catalogue routed")
        assert cli_publish(broker, "supplier.snapshots", seed()).returncode == 0
        wait_for(lambda: all(worker.get(f"/stores/{s}/products").json().get("count") == PER_STORE
                             for s in STORES), timeout=180, what="10,000 products tracked")

        # Scheduled: a store is scheduled once its settings arrive; never synced, its FULL slot is due.
        settings = [{"store_id": s, "sync_frequency": "STANDARD", "updated_at": "2026-11-20T00:00:00Z"}
                    for s in STORES]
        assert cli_publish(broker, "store.settings", settings).returncode == 0

        def runs() -> dict[str, dict[str, Any]] | None:
            current = {s: worker.get(f"/stores/{s}/sync").json().get("current") or {} for s in STORES}
            return current if all(c.get("status") not in (None, "RUNNING") for c in current.values()) else None

        ended = wait_for(runs, timeout=600, interval=1.0, what="every store's scheduled run ended")

        # 1. Each run: the FULL tier, completed, every product processed, none failed.
        for store, run in ended.items():
            assert (run["tier"], run["status"]) == ("FULL", "COMPLETED"), (store, run)
            assert (run["done"], run["total"], run["failed"]) == (PER_STORE, PER_STORE, 0), (store, run)

        # 2. The worker's table: every product now holds the supplier's values, from the run.
        tables = {s: products(worker, s) for s in STORES}
        for store in STORES:
            assert len(tables[store]) == PER_STORE
            assert all(p["sync_run_id"] == ended[store]["run_id"] for p in tables[store].values()), store

        # The run's "changed" count is exactly the changes that carry its run id.
        changes = read_json(broker, "inventory.changes")
        for store, run in ended.items():
            of_run = [c for c in changes if c.get("sync_run_id") == run["run_id"]]
            assert len(of_run) == run["changed"] > 0, store
            assert len({c["product_id"] for c in of_run}) == len(of_run)

        # 3. The shop shows what the engine computed: quantity (0 unless ACTIVE) and selling price.
        def shown(p: dict[str, Any]) -> tuple[int, Decimal]:
            return (int(p["stock"]) if p["status"] == "ACTIVE" and p["available"] else 0), Decimal(p["selling_price"])

        def storefront_metrics() -> list[str]:
            text = httpx.get(f"http://127.0.0.1:{storefront_port}/metrics", timeout=5).text
            return [line for line in text.splitlines() if line.startswith("ops_storefront")]

        def shop_differs() -> list[tuple[str, int, Any, Any]]:
            return [
                (s, n, got, want)
                for s in STORES for n in range(PER_STORE)
                if (got := (shopify.quantity(shop(s), item(s, n)), Decimal(shopify.price(shop(s), item(s, n)))))
                != (want := shown(tables[s][f"p{n}"]))
            ]

        try:
            wait_for(lambda: not shop_differs(), timeout=300, interval=2.0, what="every shop showing the engine's values")
            failure = None
        except TimeoutError:
            differ = shop_differs()
            failure = (f"{len(differ)} variants differ, e.g. (store, n, shop, engine) {differ[:5]}; "
                       f"storefront metrics: {storefront_metrics()}; storefront log:\n{storefront.log_tail(40)}")
        if failure:  # the message alone, first: CI shows the end of a long report only
            pytest.fail(failure, pytrace=False)

        # 4. PostgreSQL: one row per product, equal to the worker's table.
        def rows() -> dict[tuple[str, str], Any]:
            return {(r["store_id"], r["product_id"]): r for r in database(
                pg_dsn, "SELECT store_id, product_id, stock, status, selling_price, sync_run_id FROM products")}

        def recorded() -> bool:
            found = rows()
            return len(found) == len(STORES) * PER_STORE and all(
                found[(s, pid)]["sync_run_id"] == ended[s]["run_id"] for s in STORES for pid in tables[s])

        wait_for(recorded, timeout=300, interval=2.0, what="10,000 products recorded from the run")
        for (store, pid), row in rows().items():
            p = tables[store][pid]
            assert (row["stock"], row["status"], row["selling_price"]) == (
                int(p["stock"]), p["status"], Decimal(p["selling_price"])), (store, pid)

        # 5. The runs in sync_logs: one row per store, COMPLETED, with the run's own counts.
        def logs() -> dict[str, Any]:
            return {r["store_id"]: r for r in database(
                pg_dsn, "SELECT run_id, store_id, kind, status, total, processed, changed, failed FROM sync_logs")}

        wait_for(lambda: all(r["status"] == "COMPLETED" for r in logs().values()) and len(logs()) == len(STORES),
                 timeout=60, what="the runs recorded in sync_logs")
        for store, row in logs().items():
            run = ended[store]
            assert (row["run_id"], row["kind"], row["total"], row["processed"], row["changed"], row["failed"]) == (
                run["run_id"], "FULL", PER_STORE, PER_STORE, run["changed"], 0), store
