"""Supplier sync runs end to end: the fake supplier over HTTP, the embedded broker, a
worker (the run table, the schedule's agent side, the views) and the syncer process."""

from __future__ import annotations

import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.clients import supplier_env
from tests.fakes.supplier_server import FakeSupplierServer
from tests.harness import ROOT, Worker, cli_publish, read_json, wait_for

STORE = "s"
#: (product_id, provider, source id) tracked by the store; single-variant or product-level items.
TRACKED = [
    ("p-ae", "ALIEXPRESS", "1005001"),
    ("p-cj", "CJ_DROPSHIPPING", "CJP-0002"),
    ("p-sp", "SPOCKET", "sp-0003"),
    ("p-sp2", "SPOCKET", "sp-0004"),
]


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))


def seed_snapshots() -> list[dict[str, Any]]:
    """What the engine knew before any sync: values no supplier has (stock 1000, cost 0.01)."""
    return [
        {"store_id": STORE, "product_id": p, "provider": provider, "source_id": source, "stock": 1000,
         "cost_price": "0.01", "currency": "USD", "captured_at": now()}
        for p, provider, source in TRACKED
    ]


def truth(fake: FakeSupplierServer, provider: str, source: str) -> tuple[int, Decimal, bool]:
    """The fake's product as a product-level item: (stock summed, highest cost, available)."""
    product = fake.product(provider, source)
    if product is None:
        return 0, Decimal("-1"), False
    variants = product["variants"]
    if len(variants) == 1:
        return int(variants[0]["stock"]), Decimal(variants[0]["price"]), True
    return sum(int(v["stock"]) for v in variants), max(Decimal(v["price"]) for v in variants), True


@pytest.fixture
def fake() -> Any:
    with FakeSupplierServer(seed=11) as server:
        yield server


def start(broker: Any, tmp_path: Path, spawn: Any, workers: list[Worker], fake: FakeSupplierServer,
          worker_env: dict[str, str] | None = None, syncer_env: dict[str, str] | None = None) -> Worker:
    """A worker (no schedule) and a syncer against ``fake``; the store's products seeded."""
    worker: Worker = spawn("w1", OPS_SYNC_SCHEDULE="false", OPS_SYNC_SCAN_INTERVAL="1", **(worker_env or {}))
    syncer = Worker(broker, tmp_path, name="syncer", command="syncer", OPS_SYNCER_METRICS_PORT="0",
                    **{**supplier_env(fake, read_timeout=0.5), **(syncer_env or {})}).start()
    workers.append(syncer)
    worker.wait_ready(timeout=60)
    assert cli_publish(broker, "supplier.snapshots", seed_snapshots()).returncode == 0
    wait_for(lambda: worker.get(f"/stores/{STORE}/products").json().get("count") == len(TRACKED),
             timeout=30, what="seeded products")
    return worker


def run_sync(worker: Worker, timeout: float = 30) -> dict[str, Any]:
    response = worker.post(f"/stores/{STORE}/sync")
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]

    def finished() -> dict[str, Any] | None:
        current = worker.get(f"/stores/{STORE}/sync").json()["current"]
        if current and current["run_id"] == run_id and current["status"] != "RUNNING":
            return dict(current)
        return None

    return dict(wait_for(finished, timeout=timeout, what=f"run {run_id} finished"))


def product(worker: Worker, product_id: str) -> dict[str, Any]:
    return dict(worker.get(f"/stores/{STORE}/products/{product_id}").json())


def test_sync_runs_fetch_publish_and_count(broker, tmp_path, spawn, workers, fake) -> None:  # type: ignore[no-untyped-def]
    worker = start(broker, tmp_path, spawn, workers, fake)

    # First run: every product takes the supplier's values (all changed from the seed).
    first = run_sync(worker)
    assert first["status"] == "COMPLETED", first
    assert (first["total"], first["done"], first["failed"], first["changed"]) == (4, 4, 0, 4)
    assert first["percent"] == 100.0 and first["tier"] == "MANUAL" and first["duration_s"] >= 0
    for product_id, provider, source in TRACKED:
        stock, cost, _ = truth(fake, provider, source)
        shown = product(worker, product_id)
        assert (shown["stock"], Decimal(shown["cost_price"]), shown["sync_run_id"]) == (stock, cost, first["run_id"])
    # The snapshots carry the run's id; one page, keyed by the store.
    pages = [v for v in read_json(broker, "supplier.snapshots") if isinstance(v, list)]
    assert len(pages) == 1 and {s["sync_run_id"] for s in pages[0]} == {first["run_id"]}
    assert sorted(s["product_id"] for s in pages[0]) == sorted(p for p, _, _ in TRACKED)

    # Nothing moved at the supplier: nothing changed.
    second = run_sync(worker)
    assert (second["status"], second["done"], second["changed"]) == ("COMPLETED", 4, 0)

    # A price change and a removal at the supplier.
    fake.configure(product_overrides={"sp-0003": {"price": "77.70", "stock": 3}}, removed_products=["CJP-0002"])
    third = run_sync(worker)
    assert (third["status"], third["done"], third["failed"], third["changed"]) == ("COMPLETED", 4, 0, 2), third
    stock, cost, _ = truth(fake, "SPOCKET", "sp-0003")  # every variant at 3: summed over the variants
    assert cost == Decimal("77.70") and stock % 3 == 0
    assert (product(worker, "p-sp")["cost_price"], product(worker, "p-sp")["stock"]) == ("77.70", stock)
    removed = product(worker, "p-cj")
    assert (removed["status"], removed["available"], removed["stock"]) == ("OUT_OF_STOCK", False, 0)
    # Last cost kept for a removed product.
    assert Decimal(removed["cost_price"]) == truth(FakeSupplierServer(seed=11), "CJ_DROPSHIPPING", "CJP-0002")[1]

    # The view lists the runs, newest first; the runs topic has their records.
    view = worker.get(f"/stores/{STORE}/sync").json()
    assert view["current"]["run_id"] == third["run_id"]
    assert [r["run_id"] for r in view["runs"]] == [second["run_id"], first["run_id"]]
    records = [r for r in read_json(broker, "sync.runs") if r["run_id"] == first["run_id"]]
    assert records[0]["status"] == "RUNNING" and records[-1]["status"] == "COMPLETED"
    metrics = worker.get("/metrics").text
    assert 'ops_sync_runs_total{result="completed"} 3.0' in metrics
    assert "ops_sync_duration_seconds_count 3.0" in metrics
    assert worker.get("/stores/nobody/sync").status_code == 404


def test_failed_supplier_fails_the_run_with_an_alert_and_a_busy_store_refuses(  # type: ignore[no-untyped-def]
    broker, tmp_path, spawn, workers, fake
) -> None:
    worker = start(broker, tmp_path, spawn, workers, fake)
    # Spocket times out at every read (after the adapter's retries: seconds), the others answer.
    fake.configure(read_failure_rate=1.0, failure_providers=["SPOCKET"], timeout_sleep_s=1.0)
    response = worker.post(f"/stores/{STORE}/sync")
    assert response.status_code == 202
    run_id = response.json()["run_id"]
    running = wait_for(lambda: (worker.get(f"/stores/{STORE}/sync").json()["current"] or {}).get("status") == "RUNNING",
                       timeout=20, what="run RUNNING")
    assert running
    busy = worker.post(f"/stores/{STORE}/sync")
    assert busy.status_code == 409 and busy.json()["run"]["run_id"] == run_id, busy.text

    def finished() -> dict[str, Any] | None:
        current = worker.get(f"/stores/{STORE}/sync").json()["current"]
        return dict(current) if current["status"] != "RUNNING" else None

    failed = wait_for(finished, timeout=60, what="run finished")
    assert failed["run_id"] == run_id and failed["status"] == "FAILED", failed
    assert (failed["total"], failed["done"], failed["failed"]) == (4, 4, 2)
    assert "SPOCKET" in failed["error"]
    alerts = wait_for(lambda: worker.get(f"/stores/{STORE}/alerts", type="SYNC_FAILURE").json()["alerts"],
                      timeout=20, what="SYNC_FAILURE alert")
    assert [(a["severity"], a["metadata"]["run_id"]) for a in alerts] == [("CRITICAL", run_id)]
    assert 'ops_sync_runs_total{result="failed"} 1.0' in worker.get("/metrics").text

    # The terminal's view of a run: a progress bar, exit code 0 once the supplier answers again.
    fake.configure(read_failure_rate=0.0, failure_providers=None)
    cli = subprocess.run(
        [sys.executable, "-m", "connectors.cli", "sync", STORE, "--url", worker.url, "--timeout", "60"],
        cwd=ROOT, capture_output=True, timeout=90, env={**worker.env},
    )
    assert cli.returncode == 0, cli.stderr.decode()
    assert b"[##############################] 4/4 100.0% COMPLETED" in cli.stderr


def test_the_schedule_requests_a_sync_and_a_run_without_outcome_fails_at_its_deadline(  # type: ignore[no-untyped-def]
    broker, spawn
) -> None:
    # No syncer: the scheduled run's pages are never fetched, so it ends at its deadline.
    worker: Worker = spawn("w1", OPS_SYNC_SCAN_INTERVAL="1", OPS_SYNC_RUN_TIMEOUT="3", OPS_SYNC_HIGH_INTERVAL="5")
    worker.wait_ready(timeout=60)
    assert cli_publish(broker, "supplier.snapshots", seed_snapshots()).returncode == 0
    wait_for(lambda: worker.get(f"/stores/{STORE}/products").json().get("count") == len(TRACKED),
             timeout=30, what="seeded products")
    # A store is scheduled once its settings are published.
    settings = {"store_id": STORE, "sync_frequency": "HIGH", "updated_at": now()}
    assert cli_publish(broker, "store.settings", [settings]).returncode == 0

    def current() -> dict[str, Any]:
        response = worker.get(f"/stores/{STORE}/sync")
        return dict(response.json().get("current") or {}) if response.status_code == 200 else {}

    # Never synced: the last 03:00 UTC FULL slot is due.
    first = wait_for(lambda: current().get("tier") == "FULL" and current(), timeout=20, what="scheduled FULL run")
    assert first["status"] in ("RUNNING", "FAILED") and first["total"] == len(TRACKED)
    failed = wait_for(lambda: current().get("status") == "FAILED" and current(), timeout=20, what="timed out")
    assert failed["run_id"] == first["run_id"] and "timed out" in failed["error"]
    alerts = wait_for(lambda: worker.get(f"/stores/{STORE}/alerts", type="SYNC_FAILURE").json()["alerts"],
                      timeout=20, what="SYNC_FAILURE alert")
    assert alerts[0]["metadata"]["run_id"] == first["run_id"]
    # The FULL slot is done; the store's next HIGH slot (every 5 s here) brings a HIGH run,
    # its id naming the slot (the same from any worker).
    high = wait_for(lambda: current().get("tier") == "HIGH" and current(), timeout=20, what="scheduled HIGH run")
    store, tier, slot = high["request_id"].split(":")
    assert (store, tier) == (STORE, "HIGH") and int(slot) % 5 == 0 and abs(int(slot) - time.time()) < 30
    requests = read_json(broker, "sync.requests")
    assert [r["tier"] for r in requests][:2] == ["FULL", "HIGH"]


def test_two_workers_and_the_syncer_sync_many_stores_each_on_its_owner(  # type: ignore[no-untyped-def]
    broker, tmp_path, spawn, workers, fake
) -> None:
    stores = [f"store-{i}" for i in range(6)]
    first: Worker = spawn("w1", OPS_SYNC_SCHEDULE="false", OPS_SYNC_PAGE_SIZE="2")
    first.wait_ready(timeout=60)
    second: Worker = spawn("w2", OPS_SYNC_SCHEDULE="false", OPS_SYNC_PAGE_SIZE="2")
    syncer = Worker(broker, tmp_path, name="syncer", command="syncer", OPS_SYNCER_METRICS_PORT="0",
                    **supplier_env(fake, read_timeout=0.5)).start()
    workers.append(syncer)
    wait_for(lambda: all((w.health() or {}).get("ready") for w in (first, second)), timeout=60, what="both ready")
    seeds = [
        {**snap, "store_id": store} for store in stores for snap in seed_snapshots()
    ]
    assert cli_publish(broker, "supplier.snapshots", seeds).returncode == 0
    wait_for(lambda: all(second.get(f"/stores/{s}/products").json().get("count") == len(TRACKED) for s in stores),
             timeout=60, what="seeded products")
    # Requested through one worker, run by each store's owner; read through the other.
    run_ids = {}
    for store in stores:
        response = second.post(f"/stores/{store}/sync")
        assert response.status_code == 202, response.text
        run_ids[store] = response.json()["run_id"]

    def all_done() -> dict[str, dict[str, Any]] | None:
        found = {s: first.get(f"/stores/{s}/sync").json()["current"] for s in stores}
        if all(r and r["run_id"] == run_ids[s] and r["status"] != "RUNNING" for s, r in found.items()):
            return found
        return None

    runs = wait_for(all_done, timeout=60, what="every store's run finished")
    for store, run in runs.items():
        assert (run["status"], run["total"], run["done"], run["failed"], run["changed"], run["pages"]) == (
            "COMPLETED", 4, 4, 0, 4, 2), run
    synced = [s for page in read_json(broker, "supplier.snapshots") if isinstance(page, list) for s in page
              if s.get("sync_run_id")]
    assert sorted((s["store_id"], s["sync_run_id"]) for s in synced) == sorted(
        (store, run_ids[store]) for store in stores for _ in TRACKED)
    # Both workers own some stores' partitions.
    counts = [int(w.health()["components"]["rebalance"]["detail"].split()[0]) for w in (first, second)]
    assert all(c > 0 for c in counts), counts


def test_a_syncer_killed_mid_run_is_replaced_and_the_run_counts_each_page_once(  # type: ignore[no-untyped-def]
    broker, tmp_path, spawn, workers, fake
) -> None:
    # One product a page, each supplier answering slowly (0.5 requests/s): the run takes seconds.
    slow = {"OPS_SPOCKET_RATE_PER_S": "0.5", "OPS_CJ_RATE_PER_S": "0.5", "OPS_ALIEXPRESS_RATE_PER_S": "0.5",
            "OPS_SYNCER_CONCURRENCY": "1"}
    worker = start(broker, tmp_path, spawn, workers, fake, worker_env={"OPS_SYNC_PAGE_SIZE": "1"}, syncer_env=slow)
    syncer = workers[-1]
    response = worker.post(f"/stores/{STORE}/sync")
    assert response.status_code == 202
    run_id = response.json()["run_id"]
    first_page = wait_for(lambda: (worker.get(f"/stores/{STORE}/sync").json()["current"] or {}).get("done", 0) >= 1,
                          timeout=30, what="a first page in")
    assert first_page
    syncer.kill()  # mid-run: some pages done, the others not committed
    assert worker.get(f"/stores/{STORE}/sync").json()["current"]["status"] == "RUNNING"
    replacement = Worker(broker, tmp_path, name="syncer-2", command="syncer", OPS_SYNCER_METRICS_PORT="0",
                         **supplier_env(fake, read_timeout=0.5)).start()
    workers.append(replacement)

    def finished() -> dict[str, Any] | None:
        current = worker.get(f"/stores/{STORE}/sync").json()["current"]
        return dict(current) if current["run_id"] == run_id and current["status"] != "RUNNING" else None

    run = wait_for(finished, timeout=60, what="run finished after the syncer's replacement")
    assert (run["status"], run["total"], run["done"], run["failed"], run["changed"]) == ("COMPLETED", 4, 4, 0, 4)
    assert run["pages"] == 4


def test_an_adapter_failure_that_is_not_the_port_s_error_fails_its_items_and_the_run_goes_on(  # type: ignore[no-untyped-def]
    broker, tmp_path, spawn, workers, fake
) -> None:
    """A tracked product whose source id the adapter cannot take (blank after stripping: the
    snapshot's SourceId accepts it) makes ``fetch_products`` raise a ValueError, not a
    SupplierError. That must fail the provider's items of the page with the reason (the run
    FAILED, its alert), not retry the page forever: the run would stay RUNNING until its
    deadline, and the stuck page would hold the syncer's partition uncommitted for good."""
    worker = start(broker, tmp_path, spawn, workers, fake)
    blank = {"store_id": STORE, "product_id": "p-blank", "provider": "SPOCKET", "source_id": " ", "stock": 1,
             "cost_price": "1.00", "currency": "USD", "captured_at": now()}
    assert cli_publish(broker, "supplier.snapshots", [blank]).returncode == 0
    wait_for(lambda: worker.get(f"/stores/{STORE}/products").json().get("count") == len(TRACKED) + 1,
             timeout=30, what="the blank-source product")

    run = run_sync(worker)
    assert run["status"] == "FAILED", run
    spocket = sum(1 for _, provider, _ in TRACKED if provider == "SPOCKET") + 1
    assert (run["total"], run["done"], run["failed"]) == (len(TRACKED) + 1, len(TRACKED) + 1, spocket), run
    assert "SPOCKET" in run["error"] and "blank source id" in run["error"], run
    # The other suppliers' products were synced all the same.
    assert product(worker, "p-ae")["sync_run_id"] == run["run_id"]
