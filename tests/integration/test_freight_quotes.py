"""The syncer's freight quotes for a page (connectors/sync/freight.py) with the real
adapters against the fake supplier on loopback, in memory and in a real PostgreSQL:
a few lookups per page, none while the quotes are fresh, a failure keeps the last
quote, one lookup for a key two pages want at once, quotes that outlive the process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import REGISTRY

from connectors.postgres.pool import create_pool
from connectors.sync.freight import FreightQuotes
from connectors.sync.pages import PageFreight, snapshots_of_page
from connectors.sync.quote_store import MemoryQuoteStore, PostgresQuoteStore, QuoteStore
from connectors.sync.runner import Syncer, purge_loop
from models.freight import FreightKey, FreightQuote
from models.sync import SyncItem, SyncJob
from tests.fakes.clients import make_adapter
from tests.fakes.supplier_server import FakeSupplierServer
from tests.integration.test_sync_end_to_end import database

AE, CJ = "ALIEXPRESS", "CJ_DROPSHIPPING"
DAY = 86400.0
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
AE_IDS = [f"1005{n:06d}" for n in range(1, 7)]
CJ_IDS = [f"CJP-{n:04d}" for n in range(1, 5)]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def job(page: int = 0, country: str = "US", shipping: str = "0") -> SyncJob:
    items = [SyncItem(product_id=f"p-{provider}-{source}", provider=provider, source_id=source,
                      last_cost=Decimal("1.00"), last_stock=1, last_available=True, last_shipping=Decimal(shipping))
             for provider, ids in ((AE, AE_IDS), (CJ, CJ_IDS)) for source in ids]
    return SyncJob(run_id="run", store_id="s", page=page, pages=page + 1, items=tuple(items), ship_to_country=country)


def lookups(provider: str, result: str) -> float:
    return REGISTRY.get_sample_value("ops_freight_lookups_total", {"provider": provider, "result": result}) or 0.0


def counter(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def fake() -> Iterator[FakeSupplierServer]:
    with FakeSupplierServer(seed=21) as server:
        yield server


async def page_of(fake: FakeSupplierServer, store: QuoteStore, clock: Clock, per_page: int,
                  jobs: list[SyncJob]) -> list[tuple[Any, PageFreight]]:
    """Each job fetched and given its freight by one FreightQuotes over fresh adapters (one process)."""
    catalogs = {AE: make_adapter(AE, fake), CJ: make_adapter(CJ, fake)}
    freight = FreightQuotes(catalogs, store, max_age_s=DAY, per_page=per_page, clock=clock)
    syncer = Syncer(catalogs, None, 4, freight)  # type: ignore[arg-type]  # fetch only: no producer needed
    try:
        fetched = [(await syncer.fetch(j))[0] for j in jobs]
        pages = await asyncio.gather(*(freight.for_page(j, f) for j, f in zip(jobs, fetched)))
        return list(zip(fetched, pages))
    finally:
        for catalog in catalogs.values():
            await catalog.aclose()


def shipping(fake: FakeSupplierServer, fetched: Any, page: PageFreight, the_job: SyncJob) -> dict[str, Decimal]:
    result = snapshots_of_page("s", "run", the_job.items, fetched, {}, T0, page)
    return {s.source_id: s.shipping_cost for s in result.snapshots}


def truth(fake: FakeSupplierServer, provider: str, source: str, country: str = "US") -> Decimal:
    """The fake's cheapest freight for the product as the sync feeds it: its first variant."""
    product = fake.product(provider, source)
    assert product is not None
    amount = fake.freight(provider, source, product["variants"][0]["id"], country)
    assert amount is not None
    return Decimal(amount)


def test_a_few_lookups_a_page_then_the_rest_then_none_while_fresh(fake: FakeSupplierServer) -> None:
    store, clock = MemoryQuoteStore(1000), Clock()
    deferred = counter("ops_freight_lookups_deferred_total", {"provider": AE})
    ok = lookups(AE, "OK")

    [(fetched, page)] = asyncio.run(page_of(fake, store, clock, 4, [job(shipping="0.25")]))
    assert fake.requests()["freight_requests"] == {AE: 4, CJ: 4, "SPOCKET": 0}
    first = shipping(fake, fetched, page, job(shipping="0.25"))
    for source, amount in first.items():  # quoted: the fake's freight; the others keep their last shipping
        provider = AE if source in AE_IDS else CJ
        assert amount in (truth(fake, provider, source), Decimal("0.25")), source
    assert sum(first[s] == truth(fake, AE, s) for s in AE_IDS) == 4
    assert all(first[s] == truth(fake, CJ, s) for s in CJ_IDS)
    assert counter("ops_freight_lookups_deferred_total", {"provider": AE}) - deferred == 2
    assert lookups(AE, "OK") - ok == 4

    clock.now += timedelta(minutes=15)  # the next sync: the 2 AliExpress quotes left, nothing of CJ's (all 4 fresh)
    [(fetched, page)] = asyncio.run(page_of(fake, store, clock, 4, [job()]))
    assert fake.requests()["freight_requests"] == {AE: 6, CJ: 4, "SPOCKET": 0}
    second = shipping(fake, fetched, page, job())
    assert second == {s: truth(fake, AE if s in AE_IDS else CJ, s) for s in AE_IDS + CJ_IDS}

    clock.now += timedelta(hours=23)  # still under a day since the first lookups: none
    asyncio.run(page_of(fake, store, clock, 4, [job()]))
    assert fake.requests()["freight_requests"] == {AE: 6, CJ: 4, "SPOCKET": 0}
    clock.now += timedelta(hours=1)  # a day since the first 8: those are asked again (4 a page and supplier)
    asyncio.run(page_of(fake, store, clock, 4, [job()]))
    assert fake.requests()["freight_requests"] == {AE: 10, CJ: 8, "SPOCKET": 0}


def test_a_failed_lookup_keeps_the_last_quote_and_is_counted(fake: FakeSupplierServer) -> None:
    store, clock = MemoryQuoteStore(1000), Clock()
    asyncio.run(page_of(fake, store, clock, 50, [job()]))
    known = {s: truth(fake, AE if s in AE_IDS else CJ, s) for s in AE_IDS + CJ_IDS}
    clock.now += timedelta(days=2)  # every quote is due again, and the supplier now fails them
    fake.configure(freight_overrides={AE_IDS[0]: "99.00"}, next_freight_failures=["500"] * 20)
    failed = lookups(AE, "FAILED") + lookups(CJ, "FAILED")
    [(fetched, page)] = asyncio.run(page_of(fake, store, clock, 50, [job(shipping="7.00")]))
    assert lookups(AE, "FAILED") + lookups(CJ, "FAILED") - failed == len(known)
    assert shipping(fake, fetched, page, job(shipping="7.00")) == known  # the last quotes, not 0, not 7.00


def test_a_product_with_no_delivery_keeps_its_last_shipping_and_is_not_asked_again(fake: FakeSupplierServer) -> None:
    store, clock = MemoryQuoteStore(1000), Clock()
    fake.configure(freight_overrides={AE_IDS[1]: None})
    no_option = lookups(AE, "NO_OPTION")
    [(fetched, page)] = asyncio.run(page_of(fake, store, clock, 50, [job(shipping="3.30")]))
    assert lookups(AE, "NO_OPTION") - no_option == 1
    assert shipping(fake, fetched, page, job(shipping="3.30"))[AE_IDS[1]] == Decimal("3.30")
    asked = fake.requests()["freight_requests"][AE]
    asyncio.run(page_of(fake, store, clock, 50, [job()]))
    assert fake.requests()["freight_requests"][AE] == asked


def test_two_pages_wanting_one_quote_at_once_ask_once(fake: FakeSupplierServer) -> None:
    """Two stores tracking the same supplier products: their pages run at once."""
    store, clock = MemoryQuoteStore(1000), Clock()
    results = asyncio.run(page_of(fake, store, clock, 50, [job(page=0), job(page=1)]))
    assert fake.requests()["freight_requests"] == {AE: len(AE_IDS), CJ: len(CJ_IDS), "SPOCKET": 0}
    first, second = (shipping(fake, f, p, job()) for f, p in results)
    assert first == second == {s: truth(fake, AE if s in AE_IDS else CJ, s) for s in AE_IDS + CJ_IDS}


def test_quotes_in_postgresql_outlive_the_process_and_a_newer_one_wins(fake: FakeSupplierServer, pg_dsn: str) -> None:
    clock = Clock()

    async def with_store(work: Any) -> Any:
        store = PostgresQuoteStore(await create_pool(pg_dsn))
        try:
            return await work(store)
        finally:
            await store.aclose()

    asyncio.run(with_store(lambda store: page_of(fake, store, clock, 50, [job(country="GB")])))
    asked = fake.requests()["freight_requests"]
    assert asked[AE] == len(AE_IDS) and asked[CJ] == len(CJ_IDS)

    stored = database(pg_dsn, "SELECT * FROM supplier_freight_quotes ORDER BY provider, source_id")
    assert len(stored) == len(AE_IDS) + len(CJ_IDS)
    assert {(r["source_id"], r["amount"]) for r in stored} == {
        (s, truth(fake, AE if s in AE_IDS else CJ, s, "GB")) for s in AE_IDS + CJ_IDS}
    assert {r["country"] for r in stored} == {"GB"} and all(r["fetched_at"] == T0 for r in stored)

    # Another process (a restarted syncer): no lookups, the same shipping.
    clock.now += timedelta(hours=1)
    [(fetched, page)] = asyncio.run(with_store(lambda store: page_of(fake, store, clock, 50, [job(country="GB")])))
    assert fake.requests()["freight_requests"] == asked
    assert shipping(fake, fetched, page, job(country="GB")) == {
        s: truth(fake, AE if s in AE_IDS else CJ, s, "GB") for s in AE_IDS + CJ_IDS}

    # Only a newer quote replaces a row.
    row = stored[0]
    key = FreightKey(row["provider"], row["source_id"], row["variant"] or None, "GB")

    async def older_then_newer(store: PostgresQuoteStore) -> tuple[FreightQuote, FreightQuote]:
        await store.put_many({key: FreightQuote(Decimal("1.11"), "USD", T0 - timedelta(days=1))})
        kept = (await store.get_many([key]))[key]
        await store.put_many({key: FreightQuote(Decimal("2.22"), "USD", T0 + timedelta(days=1), "X")})
        return kept, (await store.get_many([key]))[key]

    kept, replaced = asyncio.run(with_store(older_then_newer))
    assert (kept.amount, kept.fetched_at) == (row["amount"], T0)  # the older quote changed nothing
    assert replaced == FreightQuote(Decimal("2.22"), "USD", T0 + timedelta(days=1), "X")


def test_a_database_that_cannot_be_read_costs_the_page_its_lookups_not_its_snapshots(
    fake: FakeSupplierServer, pg_dsn: str
) -> None:
    clock = Clock()
    errors = counter("ops_freight_store_errors_total", {"operation": "read"})

    async def main() -> list[tuple[Any, PageFreight]]:
        pool = await create_pool(pg_dsn)
        await pool.close()  # every read now fails
        return await page_of(fake, PostgresQuoteStore(pool), clock, 50, [job(shipping="1.50")])

    [(fetched, page)] = asyncio.run(main())
    assert counter("ops_freight_store_errors_total", {"operation": "read"}) - errors == 1
    assert fake.requests()["freight_requests"] == {AE: 0, CJ: 0, "SPOCKET": 0}
    assert set(shipping(fake, fetched, page, job(shipping="1.50")).values()) == {Decimal("1.50")}


def quotes_at(*days_ago: float) -> dict[FreightKey, FreightQuote]:
    return {FreightKey(AE, f"1005{n:06d}", None, "US"): FreightQuote(Decimal("2.50"), "USD", T0 - timedelta(days=d))
            for n, d in enumerate(days_ago)}


@pytest.mark.parametrize("where", ["memory", "postgresql"])
def test_quotes_not_fetched_again_for_the_keep_period_are_purged(where: str, request: pytest.FixtureRequest) -> None:
    """Products no longer synced leave no quote for good: what was not fetched again for
    OPS_FREIGHT_KEEP_S goes (the purge loop, as the syncer runs it); the rest stays."""
    quotes = quotes_at(40, 31, 29, 0)  # two older than 30 days
    clock = Clock()
    dsn = request.getfixturevalue("pg_dsn") if where == "postgresql" else ""

    async def run() -> tuple[int, dict[FreightKey, FreightQuote]]:
        store: QuoteStore
        if where == "memory":
            store = MemoryQuoteStore(100)
        else:
            store = PostgresQuoteStore(await create_pool(dsn))
        freight = FreightQuotes({}, store, max_age_s=DAY, per_page=20, clock=clock)
        try:
            await store.put_many(quotes)
            before = counter("ops_freight_quotes_purged_total", {})
            stop = asyncio.Event()
            loop = asyncio.create_task(purge_loop(freight, 30 * DAY, stop, interval_s=3600))
            for _ in range(200):  # the first purge comes at once
                if counter("ops_freight_quotes_purged_total", {}) > before:
                    break
                await asyncio.sleep(0.01)
            stop.set()
            await asyncio.wait_for(loop, 5)
            purged = int(counter("ops_freight_quotes_purged_total", {}) - before)
            return purged, await store.get_many(list(quotes))
        finally:
            await freight.aclose()

    purged, kept = asyncio.run(run())
    assert purged == 2
    assert kept == {key: quote for key, quote in quotes.items() if quote.fetched_at >= T0 - timedelta(days=30)}


def test_the_database_s_purge_works_in_slices(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.sync import quote_store

    monkeypatch.setattr(quote_store, "PURGE_SLICE", 3)
    quotes = quotes_at(*([40] * 7 + [1] * 2))

    async def run() -> tuple[int, int]:
        store = PostgresQuoteStore(await create_pool(pg_dsn))
        try:
            await store.put_many(quotes)
            gone = await store.purge(T0 - timedelta(days=30))
            return gone, len(await store.get_many(list(quotes)))
        finally:
            await store.aclose()

    assert asyncio.run(run()) == (7, 2)
