"""Where the syncer keeps its freight quotes: PostgreSQL, or this process's memory.

``PostgresQuoteStore`` (the syncer has ``OPS_DATABASE_URL``): table
``supplier_freight_quotes`` (migration 009), one row per (provider, source id,
variant, country); a page's quotes are read in one query and written in one
upsert, and a quote only replaces an older one (``fetched_at``). Quotes
survive a restart of the syncer and are shared by every syncer process.

``MemoryQuoteStore`` (no database): at most ``max_quotes`` quotes, the least
recently used one dropped first; gone at a restart (the products then keep
the shipping the engine last knew until their quotes are fetched again).

``purge(older_than)``: quotes fetched before then go (products no longer synced
keep no row for good; ``OPS_FREIGHT_KEEP_S``). A product still synced whose
quote went is asked for it again, as for a new one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from models.freight import FreightKey, FreightQuote


class QuoteStore(Protocol):
    async def get_many(self, keys: Sequence[FreightKey]) -> dict[FreightKey, FreightQuote]:
        """The quotes known for ``keys`` (the others are absent)."""

    async def put_many(self, quotes: Mapping[FreightKey, FreightQuote]) -> None:
        """Keep ``quotes``; one older than the quote kept for its key changes nothing."""

    async def purge(self, older_than: datetime) -> int:
        """Drop the quotes fetched before ``older_than``; how many went."""

    async def aclose(self) -> None:
        """Let go of the store's resources."""


class MemoryQuoteStore:
    def __init__(self, max_quotes: int) -> None:
        if max_quotes < 1:
            raise ValueError("max_quotes must be >= 1")
        self.max_quotes = max_quotes
        self._quotes: OrderedDict[FreightKey, FreightQuote] = OrderedDict()

    def __len__(self) -> int:
        return len(self._quotes)

    async def get_many(self, keys: Sequence[FreightKey]) -> dict[FreightKey, FreightQuote]:
        found = {}
        for key in keys:
            quote = self._quotes.get(key)
            if quote is not None:
                self._quotes.move_to_end(key)
                found[key] = quote
        return found

    async def put_many(self, quotes: Mapping[FreightKey, FreightQuote]) -> None:
        for key, quote in quotes.items():
            kept = self._quotes.get(key)
            if kept is not None and kept.fetched_at >= quote.fetched_at:
                continue
            self._quotes[key] = quote
            self._quotes.move_to_end(key)
        while len(self._quotes) > self.max_quotes:
            self._quotes.popitem(last=False)

    async def purge(self, older_than: datetime) -> int:
        old = [key for key, quote in self._quotes.items() if quote.fetched_at < older_than]
        for key in old:
            del self._quotes[key]
        return len(old)

    async def aclose(self) -> None:
        self._quotes.clear()


_SELECT = """
SELECT q.provider, q.source_id, q.variant, q.country, q.amount, q.currency, q.service, q.fetched_at
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS k(provider, source_id, variant, country)
JOIN supplier_freight_quotes q USING (provider, source_id, variant, country)
"""

_UPSERT = """
INSERT INTO supplier_freight_quotes (provider, source_id, variant, country, amount, currency, service, fetched_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::numeric[], $6::text[], $7::text[],
                     $8::timestamptz[])
ON CONFLICT (provider, source_id, variant, country) DO UPDATE
SET amount = EXCLUDED.amount, currency = EXCLUDED.currency, service = EXCLUDED.service,
    fetched_at = EXCLUDED.fetched_at
WHERE supplier_freight_quotes.fetched_at < EXCLUDED.fetched_at
"""


# In slices, so that no single statement holds many row locks or runs long.
_PURGE = """
DELETE FROM supplier_freight_quotes
WHERE ctid IN (SELECT ctid FROM supplier_freight_quotes WHERE fetched_at < $1 LIMIT $2)
"""
PURGE_SLICE = 10_000


def _columns(keys: Sequence[FreightKey]) -> tuple[list[str], list[str], list[str], list[str]]:
    # A product-level key (variant None) is '' in the table: part of the primary key.
    return (
        [k.provider for k in keys],
        [k.source_id for k in keys],
        [k.variant or "" for k in keys],
        [k.country for k in keys],
    )


class PostgresQuoteStore:
    """Quotes in ``supplier_freight_quotes`` through an asyncpg pool (owned: closed by ``aclose``)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def get_many(self, keys: Sequence[FreightKey]) -> dict[FreightKey, FreightQuote]:
        if not keys:
            return {}
        rows = await self.pool.fetch(_SELECT, *_columns(keys))
        return {
            FreightKey(r["provider"], r["source_id"], r["variant"] or None, r["country"]): FreightQuote(
                r["amount"], r["currency"], r["fetched_at"], r["service"]
            )
            for r in rows
        }

    async def put_many(self, quotes: Mapping[FreightKey, FreightQuote]) -> None:
        if not quotes:
            return
        keys = list(quotes)
        values = [quotes[k] for k in keys]
        await self.pool.execute(
            _UPSERT,
            *_columns(keys),
            [q.amount for q in values],
            [q.currency for q in values],
            [q.service for q in values],
            [q.fetched_at for q in values],
        )

    async def purge(self, older_than: datetime) -> int:
        gone = 0
        while True:
            status = await self.pool.execute(_PURGE, older_than, PURGE_SLICE)
            count = int(status.split()[-1])  # "DELETE n"
            gone += count
            if count < PURGE_SLICE:
                return gone

    async def aclose(self) -> None:
        await self.pool.close()
