"""Sync end to end: STORES x PRODUCTS tracked products over the three suppliers of the fake.

On a fresh embedded broker: one ``ops-engine worker`` (schedule off), one
``ops-engine syncer`` pointed at the fake supplier server (in this process,
rates lifted to 1000 requests/s), the products seeded by snapshots; then a
``POST /stores/{id}/sync`` for every store and the time until every run has
ended. Prints the elapsed time, products/s, each run's counts and the fake's
request counts. The real suppliers' rate limits (AliExpress 10/s, one id a
call) make a real sync slower than this: the figure is the engine's part.

    .venv/bin/python bench/sync_e2e.py [--stores 10] [--products 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.broker import EmbeddedBroker  # noqa: E402
from tests.fakes.clients import supplier_env  # noqa: E402
from tests.fakes.supplier_server import FakeSupplierServer  # noqa: E402
from tests.harness import Worker, cli_publish, wait_for  # noqa: E402

PROVIDERS = ["ALIEXPRESS", "CJ_DROPSHIPPING", "SPOCKET"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stores", type=int, default=10)
    parser.add_argument("--products", type=int, default=1000, help="per store")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ops-sync-bench-"))
    broker = EmbeddedBroker(log_path=tmp / "broker.log")
    broker.start()
    procs: list[Worker] = []
    try:
        with FakeSupplierServer(seed=5) as fake:
            worker = Worker(broker, tmp, name="w1", OPS_SYNC_SCHEDULE="false").start()
            procs.append(worker)
            env = {**supplier_env(fake, read_timeout=5), "OPS_SUPPLIER_FETCH_CONCURRENCY": "16"}
            procs.append(Worker(broker, tmp, name="syncer", command="syncer", OPS_SYNCER_METRICS_PORT="0",
                                OPS_SYNCER_CONCURRENCY="16", **env).start())
            worker.wait_ready(60)
            stores = [f"st{i}" for i in range(args.stores)]
            snaps = [
                {"store_id": store, "product_id": f"p{n}", "provider": PROVIDERS[n % 3],
                 "source_id": f"1005{n:06d}" if n % 3 == 0 else f"src{n:06d}", "stock": 1000, "cost_price": "0.01",
                 "currency": "USD", "captured_at": "2026-11-01T00:00:00Z"}
                for store in stores for n in range(args.products)
            ]
            assert cli_publish(broker, "supplier.snapshots", snaps).returncode == 0
            wait_for(lambda: all(worker.get(f"/stores/{s}/products", limit=1).json().get("total") == args.products
                                 for s in stores), timeout=300, what="seeded products")
            started = time.monotonic()
            run_ids = {s: worker.post(f"/stores/{s}/sync").json()["run_id"] for s in stores}

            def ended() -> dict[str, Any] | None:
                current = {s: worker.get(f"/stores/{s}/sync").json()["current"] for s in stores}
                finished = all(c and c["run_id"] == run_ids[s] and c["status"] != "RUNNING" for s, c in current.items())
                return current if finished else None

            runs = wait_for(ended, timeout=1800, interval=0.5, what="every run ended")
            elapsed = time.monotonic() - started
            total = args.stores * args.products
            print(f"{total} products, {args.stores} stores, 3 suppliers: {elapsed:.1f} s, {total / elapsed:.0f} products/s")
            for store, run in runs.items():
                print(f"  {store}: {run['status']} done {run['done']}/{run['total']} failed {run['failed']} "
                      f"changed {run['changed']} in {run['duration_s']:.1f} s")
            requests = fake.requests()
            print("supplier product requests:", requests["product_requests"])
            # The syncer's default freight lookups (OPS_FREIGHT_LOOKUPS_PER_PAGE) on this first sync.
            print("supplier freight requests:", requests["freight_requests"])
    finally:
        for proc in procs:
            proc.kill()
        broker.stop()


if __name__ == "__main__":
    main()
