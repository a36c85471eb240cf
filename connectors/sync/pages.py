"""One sync page's fetched supplier products -> its snapshots and counts (pure: no I/O).

Which supplier entry feeds a store product: the engine keeps our product's
provider and source (product) id, not the supplier's variant id. Assumed rule:

1. the supplier returns one entry for the source id (a single-variant
   product, or a removed one): that entry;
2. else the entry whose ``source_variant_id`` equals our ``variant_id``
   (stores that reuse the supplier's variant ids);
3. else (a product-level item over several supplier variants): the product
   summed up, stock added, the highest cost (never sell below any variant's
   cost), available if any variant is.

A removed product becomes ``available=False``, stock 0, keeping the last
known cost (``snapshot_of``). ``changed``: the snapshot's cost, shipping, stock
or availability differs from what the run's page said the engine knew.

Freight (``PageFreight``, for the providers whose answer has no shipping fee):
each item's quote key is its entry's supplier variant (None for a product
summed over several variants, quoted by its first variant) and the page's
country (``freight_wants``); the snapshot carries the quote's amount, or the
shipping the engine last knew (``models.freight.with_shipping``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from connectors.suppliers.base import SupplierProduct
from connectors.suppliers.snapshots import NoCostKnown, snapshot_of
from models.events import SupplierSnapshot
from models.freight import FreightKey, FreightQuote, FreightWant, with_shipping
from models.sync import SyncItem


def pick(entries: list[SupplierProduct], variant_id: str | None) -> SupplierProduct | None:
    """The supplier entry that feeds our item (the module's rule), or None if there is none."""
    if not entries:
        return None
    if len(entries) == 1:
        return entries[0]
    for entry in entries:
        if variant_id is not None and entry.source_variant_id == variant_id:
            return entry
    available = [e for e in entries if e.available]
    costs = [e.cost_price for e in entries if e.cost_price is not None]
    first = entries[0]
    return replace(
        first,
        source_variant_id=None,
        available=bool(available),
        stock=sum(e.stock for e in available),
        cost_price=max(costs) if costs else None,
        shipping_cost=max(e.shipping_cost for e in entries),
    )


def freight_want(provider: str, source_id: str, entry: SupplierProduct, country: str) -> FreightWant:
    """The quote an item fed by ``entry`` (``pick``'s choice) needs."""
    return FreightWant(FreightKey(provider, source_id, entry.source_variant_id, country), entry.freight_ref)


def entries_of(fetched: dict[str, dict[str, list[SupplierProduct]]], item: SyncItem) -> list[SupplierProduct]:
    """What the adapter fetched for ``item``: the adapters fetch a source id stripped
    (connectors.suppliers.catalog.unique_ids) and key their answers so."""
    return fetched.get(item.provider, {}).get(item.source_id.strip(), [])


def freight_wants(
    items: tuple[SyncItem, ...],
    fetched: dict[str, dict[str, list[SupplierProduct]]],
    country: str,
    providers: frozenset[str],
) -> dict[str, list[FreightWant]]:
    """Per provider in ``providers``, the quotes the page's available products need, in
    the page's order (a removed product needs none: it keeps its last shipping)."""
    wants: dict[str, list[FreightWant]] = {}
    for item in items:
        if item.provider not in providers:
            continue
        entry = pick(entries_of(fetched, item), item.variant_id)
        if entry is not None and entry.available:
            wants.setdefault(item.provider, []).append(freight_want(item.provider, item.source_id, entry, country))
    return wants


@dataclass(frozen=True)
class PageFreight:
    """The page's freight: the country, the providers quoted, and the quotes known."""

    country: str
    providers: frozenset[str]
    quotes: Mapping[FreightKey, FreightQuote]


@dataclass
class PageResult:
    snapshots: list[SupplierSnapshot] = field(default_factory=list)
    failed: int = 0
    changed: int = 0
    errors: list[str] = field(default_factory=list)


def snapshots_of_page(
    store_id: str,
    run_id: str,
    items: tuple[SyncItem, ...],
    fetched: dict[str, dict[str, list[SupplierProduct]]],
    failed_providers: dict[str, str],
    captured_at: datetime,
    freight: PageFreight | None = None,
) -> PageResult:
    """The snapshots of a page's items: ``fetched`` is provider -> source id -> entries;
    items of a provider in ``failed_providers`` (provider -> error) count as failed.
    With ``freight``, the items of its providers carry their quote's shipping."""
    result = PageResult()
    for provider, error in sorted(failed_providers.items()):
        result.errors.append(f"{provider}: {error}")
    for item in items:
        if item.provider in failed_providers:
            result.failed += 1
            continue
        entry = pick(entries_of(fetched, item), item.variant_id)
        if entry is None:  # the adapter returns an entry for every id; a gap is a failure
            result.failed += 1
            continue
        try:
            snap = snapshot_of(
                entry,
                provider=item.provider,
                store_id=store_id,
                product_id=item.product_id,
                variant_id=item.variant_id,
                captured_at=captured_at,
                sync_run_id=run_id,
                last_known_cost=item.last_cost,
            )
        except (NoCostKnown, ValueError):
            result.failed += 1
            continue
        if freight is not None and item.provider in freight.providers:
            want = freight_want(item.provider, item.source_id, entry, freight.country)
            snap = with_shipping(snap, freight.quotes.get(want.key), item.last_shipping)
        if (snap.cost_price, snap.shipping_cost, snap.stock, snap.available) != (
            item.last_cost, item.last_shipping, item.last_stock, item.last_available
        ):
            result.changed += 1
        result.snapshots.append(snap)
    return result
