"""The tracking poller: ask suppliers for the tracking of placed orders.

Every ``interval`` it claims a batch of PLACED rows not delivered and not
checked for ``interval`` (several executors share them: ``SKIP LOCKED``), asks
each supplier, and publishes TRACKING_RECEIVED (event id from the key and the
number) and, once the supplier says so, DELIVERED. Supplier webhooks make this
faster; the poller is the reconciler that does not depend on them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

import asyncpg

from connectors.fulfillment import records
from connectors.fulfillment.metrics import TRACKING_FOUND
from connectors.suppliers.base import PlacedOrder, SupplierError, SupplierOrders, TrackingInfo
from models.orders import Delivered, OrderEvent, TrackingReceived

log = logging.getLogger(__name__)


def tracking_events(row: records.Row, info: TrackingInfo, now: datetime) -> list[OrderEvent]:
    """TRACKING_RECEIVED (and DELIVERED) of a supplier order. Ids come from the key
    and the number, so the poller and a supplier webhook telling the same make one event."""
    events: list[OrderEvent] = [
        TrackingReceived(
            event_id=f"{row.idempotency_key}:tracking:{info.number}",
            order_id=row.order_id,
            store_id=row.store_id,
            occurred_at=now,
            group_id=row.group_id,
            tracking_number=info.number,
            carrier=info.carrier,
            tracking_url=info.url,
            source="SUPPLIER",
        )
    ]
    if info.delivered:
        events.append(
            Delivered(
                event_id=f"{row.idempotency_key}:delivered",
                order_id=row.order_id,
                store_id=row.store_id,
                occurred_at=now,
                group_id=row.group_id,
            )
        )
    return events


async def poll_once(
    pool: asyncpg.Pool,
    clients: dict[str, SupplierOrders],
    publish: Callable[[list[OrderEvent]], Awaitable[None]],
    interval: float,
    batch: int = 200,
) -> int:
    """One round; the number of events published."""
    rows = await records.claim_tracking_batch(pool, interval, batch)
    published = 0
    for row in rows:
        client = clients.get(row.provider)
        if client is None or row.supplier_order_id is None:
            continue
        order = PlacedOrder(supplier_order_id=row.supplier_order_id, reference=row.reference, status=row.status)
        try:
            info = await client.get_tracking(order)
        except SupplierError as exc:
            TRACKING_FOUND.labels(row.provider, "ERROR").inc()
            log.warning("tracking of %s at %s: %s", row.idempotency_key, row.provider, exc.reason)
            continue
        if info is None:
            TRACKING_FOUND.labels(row.provider, "NONE").inc()
            continue
        events = tracking_events(row, info, datetime.now(timezone.utc))
        # Published first, recorded after: a crash in between asks again (same ids).
        await publish(events)
        await records.record_tracking(pool, row.idempotency_key, info.number, info.carrier, info.url, info.delivered)
        TRACKING_FOUND.labels(row.provider, "DELIVERED" if info.delivered else "TRACKING").inc()
        published += len(events)
    return published
