"""A fetched ``SupplierProduct`` as a ``supplier.snapshots`` event (pure: no I/O).

The sync run knows which store product a supplier product feeds (``store_id``,
``product_id``, ``variant_id``) and the last cost it knew; the adapter knows
what the supplier says now. ``snapshot_of`` joins the two.

The issue's rule: a product the supplier no longer has becomes
``available=False`` (stock 0). The event needs a cost price; a supplier that
no longer has a product usually gives none, so the last known cost is kept
(a removed product must not read as a price change to 0). Without any cost,
``snapshot_of`` raises: the caller has no snapshot to publish (it should
alert instead of inventing a price).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from connectors.suppliers.base import SupplierProduct
from models.events import SupplierSnapshot


class NoCostKnown(ValueError):
    """A removed product with no price from the supplier and none known before."""


def snapshot_of(
    product: SupplierProduct,
    *,
    provider: str,
    store_id: str,
    product_id: str,
    variant_id: str | None,
    captured_at: datetime,
    sync_run_id: str | None = None,
    last_known_cost: Decimal | None = None,
) -> SupplierSnapshot:
    """The snapshot of ``product`` for the store product it feeds.

    ``captured_at`` must be timezone-aware (it is normalised to UTC); a naive
    time is refused, as are float prices (the event's own validation).
    """
    if captured_at.tzinfo is None or captured_at.utcoffset() is None:
        raise ValueError("captured_at must be timezone-aware")
    if product.available:
        cost = product.cost_price
        stock = product.stock
    else:
        cost = product.cost_price if product.cost_price is not None else last_known_cost
        stock = 0
    if cost is None:
        raise NoCostKnown(f"{provider} {product.source_id}: removed, and no cost price known")
    return SupplierSnapshot(
        store_id=store_id,
        product_id=product_id,
        variant_id=variant_id,
        provider=provider,
        source_id=product.source_id,
        available=product.available,
        stock=stock,
        cost_price=cost,
        shipping_cost=product.shipping_cost,
        currency=product.currency,
        captured_at=captured_at,
        title=product.title,
        images=product.images,
        sync_run_id=sync_run_id,
    )
