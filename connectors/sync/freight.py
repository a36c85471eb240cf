"""The syncer's freight quotes for a page: read the known ones, ask the supplier for the
few that are due, keep the answers (``FreightQuotes.for_page``).

For the providers whose adapter quotes freight (``quote_freight``: AliExpress,
CJ; Spocket's product answer has its shipping). For each page:

1. the quote keys its available products need (``pages.freight_wants``);
2. the known quotes of those keys, in one read of the store (``quote_store.py``);
3. per provider, the due ones (none known, or older than ``max_age_s``), at most
   ``per_page`` new lookups (``models.freight.plan_lookups``), the rest left to a
   following sync; a key another page is already asking for is waited for, not
   asked twice;
4. the lookups, through the account's adapter (its token bucket, read retries
   and circuit breaker, shared with the product fetch), at most as many at once
   per provider as its product fetch makes calls;
5. the new quotes, in one write of the store.

Nothing here fails a page: a failed lookup keeps the quote known before (or
none: the product keeps the shipping the engine last knew), a store that
cannot be read means no lookups for that page, one that cannot be written
loses only the new answers; each is counted (``ops_freight_*``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from connectors.suppliers.base import SupplierError, SupplierProduct
from connectors.sync.metrics import FREIGHT_DEFERRED, FREIGHT_LOOKUPS, FREIGHT_PURGED, FREIGHT_STORE_ERRORS
from connectors.sync.pages import PageFreight, freight_wants
from connectors.sync.quote_store import QuoteStore
from models.freight import FreightKey, FreightQuote, FreightWant, plan_lookups
from models.sync import SyncJob

log = logging.getLogger(__name__)


def freight_providers(catalogs: Mapping[str, Any]) -> frozenset[str]:
    """The providers whose adapter quotes freight."""
    return frozenset(p for p, c in catalogs.items() if callable(getattr(c, "quote_freight", None)))


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class FreightQuotes:
    def __init__(
        self,
        catalogs: Mapping[str, Any],
        store: QuoteStore,
        *,
        max_age_s: float,
        per_page: int,
        concurrency: int = 4,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.catalogs = catalogs
        self.store = store
        self.max_age_s = max_age_s
        self.per_page = per_page
        self.clock = clock
        self.providers = freight_providers(catalogs)
        # As many lookups at once per supplier as its product fetch makes calls (the bucket paces both).
        self._gates = {
            p: asyncio.Semaphore(max(1, int(getattr(catalogs[p], "fetch_concurrency", concurrency))))
            for p in self.providers
        }
        #: lookups under way (any page), so that two pages never ask for one key at once
        self._in_flight: dict[FreightKey, asyncio.Future[FreightQuote | None]] = {}

    async def for_page(self, job: SyncJob, fetched: dict[str, dict[str, list[SupplierProduct]]]) -> PageFreight:
        """The page's quotes (known, and those fetched now); never raises for a supplier or store failure."""
        wants = freight_wants(job.items, fetched, job.ship_to_country, self.providers)
        keys = list(dict.fromkeys(w.key for provider_wants in wants.values() for w in provider_wants))
        if not keys:
            return PageFreight(job.ship_to_country, self.providers, {})
        try:
            known = await self.store.get_many(keys)
        except Exception:  # the database down: this page goes without new quotes
            FREIGHT_STORE_ERRORS.labels("read").inc()
            log.exception("freight quotes could not be read; page %s of run %s goes without lookups", job.page, job.run_id)
            return PageFreight(job.ship_to_country, self.providers, {})
        now = self.clock()
        started: dict[FreightKey, asyncio.Future[FreightQuote | None]] = {}
        joined: dict[FreightKey, asyncio.Future[FreightQuote | None]] = {}
        for provider, provider_wants in wants.items():
            plan = plan_lookups(provider_wants, known, now, self.max_age_s, self.per_page, self._in_flight)
            if plan.deferred:
                FREIGHT_DEFERRED.labels(provider).inc(plan.deferred)
            for key in plan.join:
                joined[key] = self._in_flight[key]
            for want in plan.start:
                started[want.key] = self._start(provider, want)
        if not (started or joined):
            return PageFreight(job.ship_to_country, self.providers, known)
        futures = list(started.values()) + list(joined.values())
        answers = await asyncio.gather(*futures, return_exceptions=True)
        answered = dict(zip(list(started) + list(joined), answers))
        new = {k: q for k, q in answered.items() if k in started and isinstance(q, FreightQuote)}
        if new:
            try:
                await self.store.put_many(new)
            except Exception:
                FREIGHT_STORE_ERRORS.labels("write").inc()
                log.exception("freight quotes could not be written (%d new ones used for this page only)", len(new))
        quotes = dict(known)
        quotes.update({k: q for k, q in answered.items() if isinstance(q, FreightQuote)})
        return PageFreight(job.ship_to_country, self.providers, quotes)

    def _start(self, provider: str, want: FreightWant) -> asyncio.Future[FreightQuote | None]:
        future = asyncio.ensure_future(self._lookup(provider, want))
        self._in_flight[want.key] = future
        future.add_done_callback(lambda _: self._in_flight.pop(want.key, None))
        return future

    async def _lookup(self, provider: str, want: FreightWant) -> FreightQuote | None:
        """One supplier quote; None when the lookup failed (counted, logged)."""
        key = want.key
        async with self._gates[provider]:
            try:
                option = await self.catalogs[provider].quote_freight(key.source_id, want.ref, key.country)
                fetched_at = self.clock()
                if option is None:
                    FREIGHT_LOOKUPS.labels(provider, "NO_OPTION").inc()
                    return FreightQuote(None, "", fetched_at)
                quote = FreightQuote(option.amount, option.currency, fetched_at, option.service)
            except SupplierError as err:
                FREIGHT_LOOKUPS.labels(provider, "FAILED").inc()
                log.info("freight of %s %s to %s: %s", provider, key.source_id, key.country, err.reason)
                return None
            except Exception:
                FREIGHT_LOOKUPS.labels(provider, "FAILED").inc()
                log.exception("freight of %s %s to %s failed", provider, key.source_id, key.country)
                return None
        FREIGHT_LOOKUPS.labels(provider, "OK").inc()
        return quote

    async def purge(self, keep_s: float) -> int:
        """Drop the quotes not fetched again for ``keep_s`` (products no longer synced);
        how many went. Never raises: a store that cannot be reached is tried next time."""
        try:
            gone = await self.store.purge(self.clock() - timedelta(seconds=keep_s))
        except Exception as exc:
            log.warning("purging old freight quotes failed (%s: %s); tried again later", type(exc).__name__, exc)
            return 0
        if gone:
            FREIGHT_PURGED.inc(gone)
            log.info("%d freight quote(s) not fetched for %.0f s purged", gone, keep_s)
        return gone

    async def aclose(self) -> None:
        for future in list(self._in_flight.values()):
            future.cancel()
        await self.store.aclose()
