"""Freight quotes in real sync runs: the fake supplier over HTTP, the embedded broker, a
worker and the syncer process (as tests/integration/test_sync.py). AliExpress and CJ
snapshots carry the fake's freight as their shipping cost; a page asks at most
OPS_FREIGHT_LOOKUPS_PER_PAGE quotes per supplier (the others at a following run,
which reprices them); a run inside the quotes' age asks none (counted at the fake);
with PostgreSQL the quotes survive a restart of the syncer."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.fakes.clients import supplier_env
from tests.fakes.supplier_server import FakeSupplierServer
from tests.harness import Worker, cli_publish, read_json, wait_for
from tests.integration.test_sync import STORE, now, product, run_sync
from tests.integration.test_sync_end_to_end import database

AE, CJ, SP = "ALIEXPRESS", "CJ_DROPSHIPPING", "SPOCKET"
#: (product_id, provider, source id, the fake's cheapest freight for it): pages of 4 items,
#: ordered by provider and source id: [ae1 ae2 ae3 ae4] [ae5 cj1 cj2 cj3] [sp1]
TRACKED = [
    ("p-ae1", AE, "1005001", "3.10"), ("p-ae2", AE, "1005002", "4.20"), ("p-ae3", AE, "1005003", "5.30"),
    ("p-ae4", AE, "1005004", "6.40"), ("p-ae5", AE, "1005005", "7.50"),
    ("p-cj1", CJ, "CJP-0001", "2.05"), ("p-cj2", CJ, "CJP-0002", "8.95"), ("p-cj3", CJ, "CJP-0003", "11.00"),
    ("p-sp1", SP, "sp-0001", None),
]


def seed() -> list[dict[str, Any]]:
    return [{"store_id": STORE, "product_id": p, "provider": provider, "source_id": source, "stock": 1000,
             "cost_price": "0.01", "currency": "USD", "captured_at": now()} for p, provider, source, _ in TRACKED]


def start(broker: Any, tmp_path: Path, spawn: Any, workers: list[Worker], fake: FakeSupplierServer,
          settings: dict[str, Any] | None = None, **syncer_env: str) -> tuple[Worker, Worker]:
    worker: Worker = spawn("w1", OPS_SYNC_SCHEDULE="false", OPS_SYNC_PAGE_SIZE="4")
    syncer = start_syncer(broker, tmp_path, workers, fake, "syncer", **syncer_env)
    worker.wait_ready(timeout=60)
    if settings is not None:
        assert cli_publish(broker, "store.settings", [{"store_id": STORE, "updated_at": now(), **settings}]).returncode == 0
    assert cli_publish(broker, "supplier.snapshots", seed()).returncode == 0
    wait_for(lambda: worker.get(f"/stores/{STORE}/products").json().get("count") == len(TRACKED),
             timeout=30, what="seeded products")  # the settings, on the store's partition before them, too
    return worker, syncer


def start_syncer(broker: Any, tmp_path: Path, workers: list[Worker], fake: FakeSupplierServer, name: str,
                 **env: str) -> Worker:
    syncer = Worker(broker, tmp_path, name=name, command="syncer", OPS_SYNCER_METRICS_PORT="0",
                    **{**supplier_env(fake, read_timeout=0.5), **env}).start()
    workers.append(syncer)
    return syncer


def freight_requests(fake: FakeSupplierServer) -> tuple[int, int]:
    asked = fake.requests()["freight_requests"]
    return int(asked[AE]), int(asked[CJ])


def shipping_of_run(broker: Any, run_id: str) -> dict[str, Decimal]:
    """The shipping cost of each product in the run's snapshots."""
    pages = [page for page in read_json(broker, "supplier.snapshots") if isinstance(page, list)]
    return {s["product_id"]: Decimal(s.get("shipping_cost", "0")) for page in pages for s in page
            if s.get("sync_run_id") == run_id}


def test_snapshots_carry_the_freight_a_few_lookups_a_page_and_none_while_fresh(  # type: ignore[no-untyped-def]
    broker, tmp_path, spawn, workers
) -> None:
    overrides = {source: amount for _, _, source, amount in TRACKED if amount}
    with FakeSupplierServer(seed=11, freight_overrides=overrides) as fake:
        worker, _ = start(broker, tmp_path, spawn, workers, fake, OPS_FREIGHT_LOOKUPS_PER_PAGE="2")
        spocket = Decimal(fake.product(SP, "sp-0001")["shipping"])  # type: ignore[index]
        freight = {p: Decimal(amount) if amount else spocket for p, _, _, amount in TRACKED}

        # Run 1: at most 2 quotes a page and supplier: page 0 asks 2 of its 4 AliExpress products,
        # page 1 its AliExpress one and 2 of its 3 CJ ones. The others keep their shipping (0).
        first = run_sync(worker)
        assert (first["status"], first["done"], first["failed"]) == ("COMPLETED", len(TRACKED), 0), first
        assert freight_requests(fake) == (3, 2)
        shipped = shipping_of_run(broker, first["run_id"])
        assert set(shipped) == set(freight)
        assert shipped["p-sp1"] == spocket  # Spocket's answer has its shipping: no quote
        quoted = {p for p, amount in shipped.items() if amount == freight[p] and p != "p-sp1"}
        assert (len([p for p in quoted if "-ae" in p]), len([p for p in quoted if "-cj" in p])) == (3, 2)
        waiting = sorted(set(freight) - quoted - {"p-sp1"})
        assert all(shipped[p] == 0 for p in waiting) and len(waiting) == 3  # two AliExpress, one CJ

        # Run 2: the three left get theirs; the worker reprices them (SNAPSHOT, SHIPPING).
        second = run_sync(worker)
        assert second["status"] == "COMPLETED" and freight_requests(fake) == (5, 3)
        assert shipping_of_run(broker, second["run_id"]) == freight
        assert second["changed"] == len(waiting)  # only the shipping moved, and only theirs
        changes = [c for c in read_json(broker, "inventory.changes") if c.get("sync_run_id") == second["run_id"]]
        assert sorted(c["product_id"] for c in changes) == waiting
        for change in changes:
            assert change["reason"] == "SNAPSHOT" and {"SHIPPING", "SELLING_PRICE"} <= set(change["changed"])
            assert Decimal(change["after"]["shipping_cost"]) == freight[change["product_id"]]
            assert Decimal(change["after"]["selling_price"]) > Decimal(change["before"]["selling_price"])
        for product_id, amount in freight.items():
            assert Decimal(product(worker, product_id)["shipping_cost"]) == amount

        # Run 3, inside the quotes' age: no freight call at all, the same shipping, nothing changed.
        third = run_sync(worker)
        assert (third["status"], third["changed"]) == ("COMPLETED", 0) and freight_requests(fake) == (5, 3)
        assert shipping_of_run(broker, third["run_id"]) == freight


def test_quotes_in_postgresql_survive_a_syncer_restart_for_the_stores_country(  # type: ignore[no-untyped-def]
    broker, tmp_path, spawn, workers, pg_dsn
) -> None:
    with FakeSupplierServer(seed=12) as fake:
        worker, syncer = start(broker, tmp_path, spawn, workers, fake, settings={"ship_to_country": "de"},
                               OPS_DATABASE_URL=pg_dsn)

        def fake_freight(provider: str, source: str) -> Decimal:
            variants = fake.product(provider, source)["variants"]  # type: ignore[index]
            amount = fake.freight(provider, source, variants[0]["id"], "DE")  # a product-level item: its first
            assert amount is not None
            return Decimal(amount)

        freight = {p: fake_freight(provider, source) for p, provider, source, _ in TRACKED if provider != SP}
        first = run_sync(worker)
        assert first["status"] == "COMPLETED" and freight_requests(fake) == (5, 3)
        shipped = shipping_of_run(broker, first["run_id"])
        assert {p: a for p, a in shipped.items() if p in freight} == freight
        assert {r["request"].get("shipToCountry") or r["request"].get("endCountryCode") for r in fake.freight_log()} \
            == {"DE"}
        # The products themselves are asked for the store's country too (AliExpress prices per destination).
        assert set(fake.requests()["aliexpress_ship_to"]) == {"DE"}

        stored = database(pg_dsn, "SELECT provider, source_id, country, amount FROM supplier_freight_quotes")
        assert len(stored) == len(freight) and {r["country"] for r in stored} == {"DE"}

        # A crash of the syncer, another in its place: it asks no freight again and the
        # snapshots keep the quotes (not 0).
        syncer.kill()
        start_syncer(broker, tmp_path, workers, fake, "syncer-2", OPS_DATABASE_URL=pg_dsn)
        second = run_sync(worker, timeout=60)
        assert (second["status"], second["changed"]) == ("COMPLETED", 0), second
        assert freight_requests(fake) == (5, 3)
        assert {p: a for p, a in shipping_of_run(broker, second["run_id"]).items() if p in freight} == freight
