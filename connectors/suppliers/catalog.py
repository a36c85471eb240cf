"""Shared parts of the adapters' product fetch (``SupplierCatalog``).

``fetch_batched`` does what every adapter's ``fetch_products`` must: drop
duplicate ids (keeping the first's place), split the rest into calls of
``max_batch`` ids, run at most ``concurrency`` calls at once (the account's
token bucket paces them further), and give the products back in the order of
the ids asked. One failed call fails the fetch (the others are cancelled): a
sync run then retries the whole batch rather than publish half a picture.

``money`` and ``stock`` read a supplier's JSON value at the edge: a number or a
decimal string becomes a ``Decimal`` through ``str`` (never float arithmetic).
A value that cannot be read is an ``OutcomeUnknown`` (an answer we cannot use;
not retried by ``read_with_retries``, which retries only 429/5xx/busy).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.suppliers.base import OutcomeUnknown, SupplierProduct
from connectors.suppliers.http import clean_reason

#: Default number of calls of one fetch in flight at once.
DEFAULT_FETCH_CONCURRENCY = 4

#: A supplier's word that a *product* is gone (never an order, an API path or an app).
PRODUCT_GONE = re.compile(
    r"(product|item|goods)[\w .-]*?"
    r"(not[ _-]?(found|exist)|does ?n[o']?t exist|no longer|removed|delisted|off[ _-]?(line|shelf|sale))",
    re.I,
)


def unique_ids(source_ids: Iterable[str]) -> list[str]:
    """The ids in order, each once; blank ids are refused."""
    seen: dict[str, None] = {}
    for source_id in source_ids:
        value = str(source_id).strip()
        if not value:
            raise ValueError("a blank source id")
        seen.setdefault(value, None)
    return list(seen)


def chunks(items: Sequence[str], size: int) -> list[list[str]]:
    if size < 1:
        raise ValueError("batch size must be >= 1")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


async def fetch_batched(
    source_ids: Sequence[str],
    max_batch: int,
    fetch_batch: Callable[[list[str]], Awaitable[list[SupplierProduct]]],
    *,
    concurrency: int = DEFAULT_FETCH_CONCURRENCY,
) -> list[SupplierProduct]:
    """Run ``fetch_batch`` over the unique ids in calls of ``max_batch``, at most
    ``concurrency`` at once; the products ordered as the ids were asked."""
    ids = unique_ids(source_ids)
    if not ids:
        return []
    batches = chunks(ids, max_batch)
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(batch: list[str]) -> list[SupplierProduct]:
        async with gate:
            return await fetch_batch(batch)

    # Not a TaskGroup: it would wrap the port's error in an ExceptionGroup.
    tasks = [asyncio.ensure_future(one(batch)) for batch in batches]
    try:
        results = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    by_id: dict[str, list[SupplierProduct]] = {}
    for result in results:
        for product in result:
            by_id.setdefault(product.source_id, []).append(product)
    return [product for source_id in ids for product in by_id.get(source_id, [])]


def money(value: Any, what: str) -> Decimal:
    """A supplier's price (JSON number or decimal string) as a ``Decimal``."""
    if isinstance(value, bool) or value is None:
        raise OutcomeUnknown(f"unreadable {what}: {clean_reason(repr(value), 60)}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise OutcomeUnknown(f"unreadable {what}: {clean_reason(repr(value), 60)}") from None
    if not amount.is_finite() or amount < 0:
        raise OutcomeUnknown(f"unreadable {what}: {clean_reason(repr(value), 60)}")
    return amount


def stock(value: Any, what: str = "stock") -> int:
    """A supplier's stock count (JSON number or numeric string), at least 0."""
    if isinstance(value, bool) or value is None:
        raise OutcomeUnknown(f"unreadable {what}: {clean_reason(repr(value), 60)}")
    try:
        count = Decimal(str(value).strip())
    except InvalidOperation:
        raise OutcomeUnknown(f"unreadable {what}: {clean_reason(repr(value), 60)}") from None
    if not count.is_finite() or count != count.to_integral_value():
        raise OutcomeUnknown(f"unreadable {what}: {clean_reason(repr(value), 60)}")
    return max(0, int(count))


def text_or_none(value: Any, limit: int = 2000) -> str | None:
    if value is None:
        return None
    value = str(value).strip()
    return value[:limit] or None


def image_list(value: Any, limit: int = 20) -> tuple[str, ...]:
    """Image URLs from a list, a list of ``{"src"|"url": ...}`` objects, or a
    ``;``/``,``-separated string; http(s) only, deduplicated."""
    if isinstance(value, str):
        items: list[Any] = [v for v in re.split(r"[;,]", value)]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        return ()
    urls: dict[str, None] = {}
    for item in items:
        if isinstance(item, dict):
            item = item.get("src") or item.get("url")
        if isinstance(item, str):
            url = item.strip()
            if url.startswith(("https://", "http://")) and len(url) <= 2000:
                urls.setdefault(url, None)
    return tuple(urls)[:limit]
