"""Full sync into PostgreSQL: STORES x PRODUCTS tracked products, fetched from the fake
suppliers, diffed, and recorded in the ``products`` table.

On a fresh embedded broker and a fresh local PostgreSQL (migrated): one ``ops-engine
worker`` (schedule off), one ``ops-engine syncer`` and one ``ops-engine recorder``;
the fake supplier server in its own process (HTTP/1.1 keep-alive, as real APIs),
the adapters' rate limits lifted through the supplier account settings
(``OPS_*_RATE_PER_S``). The products are seeded by snapshots (stock 1000, which
the fake never has, so every product changes in the sync) and the bench waits
until the table holds them all. Then the measured part: a ``POST
/stores/{id}/sync`` for every store, and the time until the ``products`` table
holds every product with the state of these runs (``sync_run_id`` one of them).
It checks the runs' ``sync_logs`` rows (COMPLETED, counts exact).

Baselines, measured in the same run, after the engine's part, against the same fake
and the same database:

- fetch: the same adapters (same concurrency, same batching) fetching every
  product of the sync from the fake, with nothing else: the supplier side's
  ceiling on this machine (AliExpress answers one product a call);
- write: the same 100,000 product rows upserted by a bare asyncpg COPY into a
  temporary table + ``INSERT .. ON CONFLICT``: the database side's ceiling.

The sync's products/s is printed with its ratio to each. Results in
bench/results/sync.json.

Freight (``--freight``): the bench measures the steady state, where every
AliExpress and CJ product has a fresh freight quote. ``seeded`` (default): the
quotes of every product are written to the database's
``supplier_freight_quotes`` before the sync (the fake's cheapest option, keyed
as the syncer keys them), and the syncer keeps its quotes there: each page
reads them in one query and asks the fake none (checked: the fake counts zero
freight requests). ``off``: ``OPS_FREIGHT_LOOKUPS_PER_PAGE=0``, no quotes at
all (shipping 0), as before quotes existed. The mode is printed and saved.

    .venv/bin/python bench/sync.py [--stores 10] [--products 10000] [--freight seeded|off]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.broker import EmbeddedBroker  # noqa: E402
from connectors.postgres.migrate import migrate  # noqa: E402
from connectors.postgres.server import LocalPostgres  # noqa: E402
from connectors.postgres.pool import create_pool  # noqa: E402
from connectors.suppliers import aliexpress, cj  # noqa: E402
from connectors.suppliers.registry import SupplierAccounts, build_catalogs  # noqa: E402
from connectors.sync.pages import freight_want, pick  # noqa: E402
from connectors.sync.quote_store import PostgresQuoteStore  # noqa: E402
from models.freight import FreightKey, FreightQuote  # noqa: E402
from tests.fakes.clients import supplier_env  # noqa: E402
from tests.fakes.supplier_server import (  # noqa: E402
    FakeConfig,
    SupplierServerProcess,
    SupplierState,
    _ae_product,
    _cj_product,
)
from tests.harness import Worker, cli_publish, wait_for  # noqa: E402

PROVIDERS = ["ALIEXPRESS", "CJ_DROPSHIPPING", "SPOCKET"]
TARGET = 10_000
LIFTED = "1000000"  # requests/s per supplier account: no limit in practice


def source_id(n: int) -> str:
    return f"1005{n:08d}" if n % 3 == 0 else f"src{n:08d}"


def provider_of(n: int, providers: list[str]) -> str:
    return providers[n % len(providers)]


def seed_snapshots(stores: list[str], products: int, providers: list[str]) -> list[list[dict[str, Any]]]:
    """One page (a JSON array) per store and 500 products: the upstream producers' way."""
    pages = []
    for store in stores:
        for first in range(0, products, 500):
            pages.append([
                {"store_id": store, "product_id": f"p{n}", "provider": provider_of(n, providers), "source_id": source_id(n),
                 "stock": 1000, "cost_price": "0.01", "currency": "USD", "captured_at": "2026-11-01T00:00:00Z"}
                for n in range(first, min(first + 500, products))
            ])
    return pages


FAKE_SEED = 5
COUNTRY = "US"  # the stores' ship_to_country (the setting's default)


async def seed_quotes(dsn: str, products: int, providers: list[str]) -> int:
    """A fresh freight quote for every AliExpress and CJ product the stores track, in
    ``supplier_freight_quotes``: the fake's cheapest option, under the key the syncer
    computes (the adapters' own parsing of the fake's answer, ``pick``, ``freight_want``)."""
    truth = SupplierState(FakeConfig(seed=FAKE_SEED))
    now = datetime.now(timezone.utc)
    quotes: dict[FreightKey, FreightQuote] = {}
    for n in range(products):
        provider, source = provider_of(n, providers), source_id(n)
        spec = truth.product(provider, source)
        if provider == aliexpress.PROVIDER:
            entries = aliexpress._products_of(source, _ae_product(source, spec), "USD")
        elif provider == cj.PROVIDER:
            entries = cj._products_of(source, _cj_product(spec))  # type: ignore[arg-type]
        else:
            continue  # Spocket's answer carries its shipping
        entry = pick(entries, None)  # the bench's items are product-level (no variant id)
        assert entry is not None and entry.freight_ref is not None
        want = freight_want(provider, source, entry, COUNTRY)
        amount = truth.cheapest_freight(provider, source, entry.freight_ref, COUNTRY)
        quotes[want.key] = FreightQuote(None if amount is None else Decimal(amount), "USD", now, "seeded")
    store = PostgresQuoteStore(await create_pool(dsn))
    try:
        keys = list(quotes)
        for first in range(0, len(keys), 5000):
            await store.put_many({k: quotes[k] for k in keys[first : first + 5000]})
    finally:
        await store.aclose()
    return len(quotes)


class Poll:
    """Counts from PostgreSQL on one connection (a connection per poll would cost the server a fork)."""

    def __init__(self, dsn: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.conn = self.loop.run_until_complete(asyncpg.connect(dsn))

    def __call__(self, sql: str, *args: Any) -> int:
        return int(self.loop.run_until_complete(self.conn.fetchval(sql, *args)) or 0)

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


def _stats() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds) of every process."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return out


def cpu_of(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds of each named process and its descendants (PostgreSQL's backends); of
    ``bench`` (this process, the others' parent) its own only."""
    stats = _stats()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)

    def tree(pid: int) -> float:
        return stats.get(pid, (0, 0.0))[1] + sum(tree(c) for c in children.get(pid, []))

    return {name: tree(pid) if name != "bench" else stats.get(pid, (0, 0.0))[1] for name, pid in pids.items()}


async def fetch_baseline(
    env: dict[str, str], products: int, stores: int, concurrency: int, page: int, providers: list[str]
) -> float:
    """Seconds for the adapters alone to fetch every product of the sync, paged as the syncer
    pages it (``page`` items a page, ``concurrency`` pages at once)."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        catalogs = build_catalogs(SupplierAccounts.load())
    finally:
        os.environ.clear()
        os.environ.update(saved)
    jobs: list[dict[str, list[str]]] = []
    for _ in range(stores):
        ordered = sorted(range(products), key=lambda n: (provider_of(n, providers), source_id(n)))
        for first in range(0, products, page):
            wanted: dict[str, list[str]] = {}
            for n in ordered[first : first + page]:
                wanted.setdefault(provider_of(n, providers), []).append(source_id(n))
            jobs.append(wanted)
    gate = asyncio.Semaphore(concurrency)
    fetched = 0

    async def one(job: dict[str, list[str]]) -> None:
        nonlocal fetched
        async with gate:
            for provider, ids in job.items():
                got = await catalogs[provider].fetch_products(ids)
                fetched += len({p.source_id for p in got})

    started = time.monotonic()
    await asyncio.gather(*(one(job) for job in jobs))
    elapsed = time.monotonic() - started
    for catalog in catalogs.values():
        await catalog.aclose()
    assert fetched == products * stores, (fetched, products * stores)
    return elapsed


async def write_baseline(dsn: str) -> tuple[float, int]:
    """Seconds to upsert every row of ``products`` again (one second later) with a bare
    asyncpg COPY into a temporary table and one INSERT .. ON CONFLICT, in one transaction."""
    conn = await asyncpg.connect(dsn)
    try:
        columns = [
            "store_id", "product_id", "variant_id", "provider", "source_id", "status", "available", "stock",
            "cost_price", "shipping_cost", "currency", "selling_price", "compare_at_price", "captured_at",
            "last_change_id", "sync_run_id",
        ]
        rows = [tuple(r) for r in await conn.fetch(f"SELECT {', '.join(columns)} FROM products")]
        later = [r[:13] + (r[13] + timedelta(seconds=1),) + r[14:] for r in rows]
        started = time.monotonic()
        async with conn.transaction():
            await conn.execute("CREATE TEMP TABLE incoming (LIKE products INCLUDING DEFAULTS) ON COMMIT DROP")
            await conn.copy_records_to_table("incoming", records=later, columns=columns)
            updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns[3:])
            await conn.execute(
                f"INSERT INTO products ({', '.join(columns)}) SELECT {', '.join(columns)} FROM incoming "
                f"ON CONFLICT (store_id, product_id, variant_id) DO UPDATE SET {updates} "
                "WHERE products.captured_at <= EXCLUDED.captured_at"
            )
        return time.monotonic() - started, len(rows)
    finally:
        await conn.close()


def start_spies(folder: Path, pids: dict[str, int], names: list[str]) -> list[subprocess.Popen[bytes]]:
    folder.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).parent / "py-spy")
    return [subprocess.Popen([spy, "record", "--pid", str(pids[name]), "--format", "raw", "--rate", "100",
                              "--output", str(folder / f"{name.replace(' ', '-')}.txt"), "--nonblocking"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT) for name in names]


def stop_spies(spies: list[subprocess.Popen[bytes]]) -> None:
    for spy in spies:
        spy.send_signal(signal.SIGINT)
    for spy in spies:
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", type=int, default=10)
    parser.add_argument("--products", type=int, default=10_000, help="per store")
    parser.add_argument("--concurrency", type=int, default=32, help="OPS_SYNCER_CONCURRENCY")
    parser.add_argument("--fetch-concurrency", type=int, default=16, help="OPS_SUPPLIER_FETCH_CONCURRENCY")
    parser.add_argument("--page-size", type=int, default=500, help="OPS_SYNC_PAGE_SIZE")
    parser.add_argument("--providers", default=",".join(PROVIDERS),
                        help="the suppliers the products are spread over, in turn (default: all three)")
    parser.add_argument("--freight", choices=("seeded", "off"), default="seeded",
                        help="seeded: every product's freight quote fresh in PostgreSQL before the sync (the steady "
                             "state; no freight calls); off: OPS_FREIGHT_LOOKUPS_PER_PAGE=0")
    parser.add_argument("--keep", action="store_true", help="keep the logs and data directory")
    parser.add_argument("--profile", type=Path, default=None,
                        help="py-spy the worker, the syncer and the fake during the sync (raw stacks in this folder)")
    args = parser.parse_args()
    total = args.stores * args.products
    providers = [p.strip() for p in args.providers.split(",") if p.strip()]
    assert providers and set(providers) <= set(PROVIDERS), providers
    tmp = Path(tempfile.mkdtemp(prefix="ops-sync-pg-bench-"))
    print(f"logs in {tmp}", flush=True)
    broker = EmbeddedBroker(log_path=tmp / "broker.log")
    pg = LocalPostgres(tmp / "pg", log_path=tmp / "postgres.log")
    procs: list[Worker] = []
    result: dict[str, Any] = {"products": total, "stores": args.stores, "providers": providers,
                              "page_size": args.page_size, "syncer_concurrency": args.concurrency,
                              "fetch_concurrency": args.fetch_concurrency, "freight": args.freight,
                              "load_before": os.getloadavg(),
                              "at": datetime.now(timezone.utc).isoformat()}
    try:
        broker.start()
        pg.start()
        asyncio.run(migrate(pg.dsn))
        if args.freight == "seeded":
            seeded = asyncio.run(seed_quotes(pg.dsn, args.products, providers))
            freight_env = {"OPS_DATABASE_URL": pg.dsn}
            print(f"freight: {seeded:,} quotes seeded fresh in PostgreSQL; the syncer reads them per page and "
                  "asks the supplier none (steady state)", flush=True)
        else:
            freight_env = {"OPS_FREIGHT_LOOKUPS_PER_PAGE": "0"}
            print("freight: off (OPS_FREIGHT_LOOKUPS_PER_PAGE=0): no quotes, shipping 0", flush=True)
        with SupplierServerProcess(seed=FAKE_SEED, extra_args=["--keep-alive"]) as fake:
            env = {
                **supplier_env(fake, read_timeout=10),
                "OPS_ALIEXPRESS_RATE_PER_S": LIFTED, "OPS_CJ_RATE_PER_S": LIFTED, "OPS_SPOCKET_RATE_PER_S": LIFTED,
                "OPS_SUPPLIER_FETCH_CONCURRENCY": str(args.fetch_concurrency),
            }
            worker = Worker(broker, tmp, name="w1", OPS_SYNC_SCHEDULE="false",
                            OPS_SYNC_PAGE_SIZE=str(args.page_size)).start()
            procs.append(worker)
            procs.append(Worker(broker, tmp, name="syncer", command="syncer", OPS_SYNCER_METRICS_PORT="0",
                                OPS_SYNCER_CONCURRENCY=str(args.concurrency), **env, **freight_env).start())
            procs.append(Worker(broker, tmp, name="recorder", command="recorder", OPS_DATABASE_URL=pg.dsn,
                                OPS_RECORDER_METRICS_PORT="0").start())
            worker.wait_ready(60)
            poll = Poll(pg.dsn)
            stores = [f"st{i}" for i in range(args.stores)]
            seeding = time.monotonic()
            assert cli_publish(broker, "supplier.snapshots", seed_snapshots(stores, args.products, providers)).returncode == 0
            wait_for(lambda: poll("SELECT count(*) FROM products") == total, timeout=900, interval=0.5,
                     what="seeded products recorded")
            wait_for(lambda: all(worker.get(f"/stores/{s}/products", limit=1).json().get("total") == args.products
                                 for s in stores), timeout=300, what="seeded products tracked")
            print(f"seeded {total:,} products in {time.monotonic() - seeding:.1f} s", flush=True)

            assert worker.proc and fake.proc and broker.pid and pg.pid
            pids = {"worker": worker.proc.pid, "syncer": procs[1].proc.pid, "recorder": procs[2].proc.pid,  # type: ignore[union-attr]
                    "fake supplier": fake.proc.pid, "broker": broker.pid, "postgres": pg.pid, "bench": os.getpid()}
            spies = [] if args.profile is None else start_spies(args.profile, pids, ["worker", "syncer", "recorder", "fake supplier"])
            cpu_start = cpu_of(pids)
            started = time.monotonic()
            run_ids = [worker.post(f"/stores/{s}/sync").json()["run_id"] for s in stores]
            synced = "SELECT count(*) FROM products WHERE sync_run_id = ANY($1::text[])"
            trace: list[tuple[float, int]] = []  # (s since the requests, products recorded), each second

            def recorded() -> bool:
                done = poll(synced, run_ids)
                now = time.monotonic() - started
                if not trace or now - trace[-1][0] >= 1.0 or done == total:
                    trace.append((round(now, 1), done))
                return done == total

            # Each poll scans the products table: polled every 0.1 s they were half of PostgreSQL's CPU.
            wait_for(recorded, timeout=1800, interval=0.5, what="every product recorded with the run's state")
            elapsed = time.monotonic() - started
            cpu = {name: s - cpu_start[name] for name, s in cpu_of(pids).items()}
            stop_spies(spies)
            ended = "SELECT count(*) FROM sync_logs WHERE run_id = ANY($1::text[]) AND status = 'COMPLETED'"
            wait_for(lambda: poll(ended, run_ids) == len(stores), timeout=120, what="every run's log")
            processed = poll("SELECT sum(processed) FROM sync_logs WHERE run_id = ANY($1::text[])", run_ids)
            assert processed == total, (processed, total)
            runs_ms = poll("SELECT (EXTRACT(EPOCH FROM max(completed_at) - min(started_at)) * 1000)::bigint"
                           " FROM sync_logs WHERE run_id = ANY($1::text[])", run_ids)
            rate = total / elapsed
            asked = fake.requests()
            requests, freight_requests = asked["product_requests"], asked["freight_requests"]
            poll.close()
            # The steady state asks no freight: a lookup here would mean the seeded keys are not the syncer's.
            assert not any(freight_requests.values()), freight_requests
            print(f"sync: {total:,} products, {args.stores} stores, {', '.join(providers)}, into PostgreSQL: "
                  f"{elapsed:.1f} s, {rate:,.0f} products/s (supplier requests {requests}; freight {args.freight}, "
                  f"freight requests {sum(freight_requests.values())})", flush=True)
            print("  recorded by then: " + " ".join(f"{t:.0f}s:{n // 1000}k" for t, n in trace[::max(1, len(trace) // 15)]))
            print(f"  every run ended {runs_ms / 1000:.1f} s after the first started (the engine's clock)")
            print("  CPU s in the sync: " + ", ".join(f"{n} {s:.1f}" for n, s in cpu.items())
                  + f"; all {sum(cpu.values()):.1f} of {2 * elapsed:.1f} on 2 cores"
                  + f" (load average before: {result['load_before'][0]:.2f})", flush=True)
            result.update(sync_s=elapsed, sync_per_s=rate, runs_s=runs_ms / 1000, trace=trace, supplier_requests=requests, cpu_seconds=cpu)
            for proc in procs:
                proc.stop()
            procs.clear()

            fetch_s = uvloop.run(fetch_baseline(  # the syncer's loop
                env, args.products, args.stores, args.concurrency, args.page_size, providers))
            write_s, written = asyncio.run(write_baseline(pg.dsn))
            assert written == total
        result.update(fetch_s=fetch_s, fetch_per_s=total / fetch_s, write_s=write_s, write_per_s=total / write_s)
        print(f"baseline fetch (adapters alone, same fake): {fetch_s:.1f} s, {total / fetch_s:,.0f} products/s; "
              f"sync / fetch = {rate / (total / fetch_s):.2f}")
        print(f"baseline write (bare COPY + upsert): {write_s:.1f} s, {total / write_s:,.0f} products/s; "
              f"sync / write = {rate / (total / write_s):.2f}")
        print(f"target {TARGET:,} products/s: {'met' if rate >= TARGET else 'NOT met'}")
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / "sync.json").write_text(json.dumps(result, indent=2))
    finally:
        for proc in procs:
            proc.kill()
        broker.stop()
        pg.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
