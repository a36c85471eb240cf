"""The syncer process (``ops-engine syncer``): consume ``sync.jobs``, fetch each page's
products from its suppliers, publish the snapshots, then the page's progress, then
commit.

A plain aiokafka consumer group (``{app_id}-syncer``), modelled on the executor
(connectors/fulfillment/runner.py): syncers scale out like workers. At most
``OPS_SYNCER_CONCURRENCY`` pages run at once, a new one starting as soon as one
ends (``PageWindow``: a slow page, say of AliExpress's one-product calls, does
not hold the others' slots); a partition's offset is committed past a page
only once it and every page before it have their snapshots and progress
acknowledged (acks=all). A crash repeats the uncommitted pages: the
snapshots are the same facts again (STALE or UNCHANGED for the engine) and a
page's progress counts once (models/sync.py).

For each page: the items are grouped by provider, each provider's source ids
fetched in one ``fetch_products`` call (the adapter batches and rate-limits);
a supplier error after the adapter's retries fails that provider's items of the
page (``failed``, with the error text: the run is FAILED). A provider with no
account configured fails the same way, and so does any other exception of the
fetch (an answer or a source id the adapter cannot take: trying the page again
would meet it again, and hold the partition's commit for good). Snapshots go out as one
``supplier.snapshots`` message per page (a JSON array, key ``store_id``,
``captured_at`` = fetch time, ``sync_run_id`` = the run), split into several
when it would be larger than ``SNAPSHOT_MESSAGE_BYTES`` (Kafka refuses a
message over the topic's ``max.message.bytes``, 1 MB by default).

Freight (``freight.py``): between the fetch and the snapshots, the page's
AliExpress and CJ products get their freight quotes (kept in PostgreSQL with
``OPS_DATABASE_URL``, else in memory; a few due ones asked for per page), and
their snapshots carry them as ``shipping_cost``. ``OPS_FREIGHT_LOOKUPS_PER_PAGE=0``
turns this off (shipping 0, as the product answers say).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from connectors.consumers import commit, group_consumer, pause
from connectors.suppliers.base import SupplierCatalog, SupplierError, SupplierProduct
from connectors.suppliers.http import clean_reason
from connectors.sync.freight import FreightQuotes, freight_providers
from connectors.sync.metrics import PAGE_SECONDS, PAGES, PRODUCTS
from connectors.sync.pages import snapshots_of_page
from connectors.sync.quote_store import MemoryQuoteStore, PostgresQuoteStore, QuoteStore
from models.events import DeadLetter, DeadLetterReason
from models.sync import SyncJob, SyncProgress
from streams import topics
from streams.codecs import encode, json_arrays
from streams.embedded import EMBEDDED_LOW_LATENCY_FETCH_WAIT_MS
from streams.settings import Settings

log = logging.getLogger(__name__)
RETRY_PAUSE_S = 1.0
#: Largest ``supplier.snapshots`` message the syncer sends (half of Kafka's default limit).
SNAPSHOT_MESSAGE_BYTES = 512 * 1024


class Syncer:
    def __init__(
        self,
        catalogs: dict[str, SupplierCatalog],
        producer: AIOKafkaProducer,
        concurrency: int,
        freight: FreightQuotes | None = None,
    ) -> None:
        self.catalogs = catalogs
        self.producer = producer
        self.limit = asyncio.Semaphore(concurrency)
        self.freight = freight

    async def fetch(
        self, job: SyncJob
    ) -> tuple[dict[str, dict[str, list[SupplierProduct]]], dict[str, str]]:
        """provider -> source id -> entries, and provider -> error for those that failed."""
        wanted: dict[str, list[str]] = defaultdict(list)
        for item in job.items:
            wanted[item.provider].append(item.source_id)
        fetched: dict[str, dict[str, list[SupplierProduct]]] = {}
        failed: dict[str, str] = {}
        for provider, ids in wanted.items():
            catalog = self.catalogs.get(provider)
            if catalog is None:
                failed[provider] = "no supplier account configured"
                continue
            try:
                products = await catalog.fetch_products(ids, job.ship_to_country)
            except SupplierError as exc:
                failed[provider] = f"{type(exc).__name__}: {exc.reason}"[:500]
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an answer or an id the adapter cannot take: the same again next time
                log.exception("%s fetch of page %s of run %s failed", provider, job.page, job.run_id)
                failed[provider] = clean_reason(f"{type(exc).__name__}: {exc}", 500)
                continue
            by_source: dict[str, list[SupplierProduct]] = defaultdict(list)
            for product in products:
                by_source[product.source_id].append(product)
            fetched[provider] = by_source
        return fetched, failed

    async def run_page(self, message: Any) -> None:
        """One page to its acknowledged snapshots and progress (tried again until it gets there)."""
        try:
            job = SyncJob.model_validate_json(message.value or b"")
        except ValidationError as exc:
            PAGES.labels("INVALID").inc()
            record = DeadLetter.of(message, DeadLetterReason.SCHEMA_VIOLATION, f"not a sync job: {exc.errors()[:3]}")
            await (await self.producer.send(topics.DEADLETTER, key=message.topic.encode(), value=encode(record)))
            return
        while True:
            try:
                async with self.limit:
                    await self._run(job)
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # the broker down, say: the page must not be skipped
                log.exception("sync page %s/%s of run %s failed; trying it again", job.page, job.pages, job.run_id)
                await asyncio.sleep(RETRY_PAUSE_S)

    async def _run(self, job: SyncJob) -> None:
        started = time.perf_counter()
        fetched, failed = await self.fetch(job)
        freight = None if self.freight is None else await self.freight.for_page(job, fetched)
        result = snapshots_of_page(
            job.store_id, job.run_id, job.items, fetched, failed, datetime.now(timezone.utc), freight
        )
        key = job.store_id.encode()
        # One message per page, or a few when the page is larger than a broker takes.
        for value in json_arrays([encode(s) for s in result.snapshots], SNAPSHOT_MESSAGE_BYTES):
            await (await self.producer.send(topics.SUPPLIER_SNAPSHOTS, key=key, value=value))
        progress = SyncProgress(
            run_id=job.run_id,
            store_id=job.store_id,
            page=job.page,
            fetched=len(result.snapshots),
            failed=result.failed,
            changed=result.changed,
            error="; ".join(result.errors)[:2000] or None,
            at=datetime.now(timezone.utc),
        )
        await (await self.producer.send(topics.SYNC_PROGRESS, key=key, value=encode(progress)))
        PAGES.labels("FAILED" if result.errors else "OK").inc()
        PAGE_SECONDS.observe(time.perf_counter() - started)
        for item in job.items:
            PRODUCTS.labels(item.provider, "FAILED" if item.provider in failed else "FETCHED").inc()
        if result.changed:
            PRODUCTS.labels("ALL", "CHANGED").inc(result.changed)


async def run_syncer(
    settings: Settings, catalogs: dict[str, SupplierCatalog], stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap,
        acks="all",
        enable_idempotence=settings.producer_idempotence,
        linger_ms=2,
        max_request_size=8 * 1024 * 1024,
    )
    consumer = group_consumer(
        settings,
        "syncer",
        max_poll_records=settings.syncer_concurrency,
        fetch_max_wait_ms=EMBEDDED_LOW_LATENCY_FETCH_WAIT_MS if settings.embedded_broker else 500,
    )
    freight = await freight_of(settings, catalogs)
    syncer = Syncer(catalogs, producer, settings.syncer_concurrency, freight)
    window = PageWindow(syncer.run_page, settings.syncer_concurrency)
    await producer.start()
    await consumer.start()
    consumer.subscribe([topics.SYNC_JOBS])
    if ready is not None:
        ready.set()
    log.info("syncer running for %s", ", ".join(sorted(catalogs)) or "no supplier")
    purging = (asyncio.create_task(purge_loop(freight, settings.freight_keep_s, stop))
               if freight is not None and settings.freight_keep_s else None)
    try:
        while not stop.is_set():
            if window.room:
                # Wait for new pages only while nothing runs; else look and go back to the pages.
                batch = await consumer.getmany(timeout_ms=20 if window.busy else 200, max_records=window.room)
                for records in batch.values():
                    for message in records:
                        window.start(message)
            if window.busy:
                await window.wait_any(0.2 if window.room else None)
            await commit(consumer, window.done_offsets())
        await window.drain(STOP_GRACE_S)
        await commit(consumer, window.done_offsets())
    finally:
        stop.set()
        window.cancel()
        if purging is not None:
            purging.cancel()
            await asyncio.gather(purging, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
        if freight is not None:
            await freight.aclose()
        for catalog in catalogs.values():
            await catalog.aclose()


#: How often the syncer drops freight quotes older than OPS_FREIGHT_KEEP_S.
FREIGHT_PURGE_INTERVAL_S = 3600.0


async def purge_loop(freight: FreightQuotes, keep_s: float, stop: asyncio.Event,
                     interval_s: float = FREIGHT_PURGE_INTERVAL_S) -> None:
    """Every ``interval_s`` (the first soon after the start), the quotes not fetched again
    for ``keep_s`` leave the store: rows of products no longer synced. Every syncer
    process does it; the deletes are the same."""
    while not stop.is_set():
        await freight.purge(keep_s)
        await pause(stop, interval_s)


async def freight_of(settings: Settings, catalogs: dict[str, SupplierCatalog]) -> FreightQuotes | None:
    """The syncer's freight quotes: None when off (``OPS_FREIGHT_LOOKUPS_PER_PAGE=0``) or no
    configured supplier quotes freight; kept in PostgreSQL with ``OPS_DATABASE_URL``."""
    if settings.freight_lookups_per_page == 0 or not freight_providers(catalogs):
        return None
    store: QuoteStore
    if settings.database_url:
        from connectors.postgres.pool import create_pool

        store = PostgresQuoteStore(await create_pool(settings.database_url, max_size=4))
        where = "PostgreSQL"
    else:
        store = MemoryQuoteStore(settings.freight_memory_quotes)
        where = f"memory (at most {settings.freight_memory_quotes:,})"
    log.info(
        "freight quotes for %s in %s: at most %d lookups per page and supplier, each kept %.0f s",
        ", ".join(sorted(freight_providers(catalogs))), where, settings.freight_lookups_per_page,
        settings.freight_max_age_s,
    )
    return FreightQuotes(
        catalogs, store, max_age_s=settings.freight_max_age_s, per_page=settings.freight_lookups_per_page
    )


#: On stop, how long the pages already running may take to finish (then they are cancelled,
#: uncommitted, and the next owner of their partition does them again).
STOP_GRACE_S = 10.0


class PageWindow:
    """At most ``size`` pages running at once, started as they are consumed (a slow page does
    not hold the next ones back), and per partition the offset to commit: past the longest
    run of finished pages from the partition's committed position, never past a page still
    running."""

    def __init__(self, work: Callable[[Any], Awaitable[None]], size: int) -> None:
        self.work = work
        self.size = size
        self.running: dict[TopicPartition, deque[tuple[int, asyncio.Task[None]]]] = {}

    @property
    def busy(self) -> bool:
        return any(self.running.values())

    @property
    def room(self) -> int:
        """Pages that may start now: free slots, and at most 4 x ``size`` pages held uncommitted
        (finished pages wait behind a slow one for their commit)."""
        held = sum(len(q) for q in self.running.values())
        active = sum(1 for q in self.running.values() for _, task in q if not task.done())
        return max(0, min(self.size - active, 4 * self.size - held))

    def start(self, message: Any) -> None:
        tp = TopicPartition(message.topic, message.partition)
        self.running.setdefault(tp, deque()).append((message.offset, asyncio.ensure_future(self.work(message))))

    async def wait_any(self, timeout: float | None) -> None:
        tasks = [task for q in self.running.values() for _, task in q if not task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)

    def done_offsets(self) -> dict[TopicPartition, int]:
        """The offsets to commit now (partition -> next offset), dropping the finished pages they cover."""
        out: dict[TopicPartition, int] = {}
        for tp, queue in self.running.items():
            while queue and queue[0][1].done():
                offset, task = queue.popleft()
                task.result()  # run_page handles its errors; anything else is a bug to surface
                out[tp] = offset + 1
        return out

    async def drain(self, timeout: float) -> None:
        tasks = [task for q in self.running.values() for _, task in q]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def cancel(self) -> None:
        for queue in self.running.values():
            for _, task in queue:
                task.cancel()
