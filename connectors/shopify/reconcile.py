"""Reconciliation, because webhooks get lost: every ``OPS_SHOPIFY_RECONCILE_INTERVAL_S``
(900 s) the storefront process pulls each Shopify shop's orders updated since
its last pull (``orders(query: "updated_at:>'...'")``, 25 a page, cursor
pagination, fulfillments included) and publishes each as the webhooks it stands
for on ``webhooks.inbound`` (models/shopify_orders.py), acks=all. The router's
dedup on the delivery id and the order machine's on the event id make the
copies of what did arrive harmless; what did not arrive is caught.

The mark (``pulled_until``) is per shop in PostgreSQL (table ``shopify_reconcile``,
migration 006): it survives restarts and is shared by every storefront process.
A pull happens under the shop's advisory lock, and only when the last one is at
least an interval old, so two processes never pull one shop at once and the
shop is pulled once per interval whatever the number of processes. A pull
reads from ``pulled_until`` minus :data:`OVERLAP_S` (clocks differ; repeats
are harmless); the new mark is the time the pull started, written only after
every webhook of it is acknowledged. A shop never pulled starts
``OPS_SHOPIFY_RECONCILE_LOOKBACK_S`` (a day) back.

Without ``OPS_DATABASE_URL`` the reconciliation is off (a warning says so).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from connectors.shopify import metrics
from connectors.shopify.client import ShopifyClient
from models.shopify_orders import webhooks_of
from models.webhooks import InboundWebhook

log = logging.getLogger(__name__)

OVERLAP_S = 120
PAGE = 25

ORDERS_QUERY = """query ReconcileOrders($first: Int!, $after: String, $query: String!) {
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    nodes {
      id name email phone createdAt updatedAt cancelledAt cancelReason displayFinancialStatus currencyCode
      subtotalPriceSet { shopMoney { amount } } totalPriceSet { shopMoney { amount } } totalTaxSet { shopMoney { amount } }
      totalShippingPriceSet { shopMoney { amount } }
      customer { firstName lastName email phone }
      shippingAddress { name firstName lastName address1 address2 city province provinceCode zip countryCodeV2 phone }
      lineItems(first: 50) {
        nodes { id title quantity variant { id } product { id } originalUnitPriceSet { shopMoney { amount } } }
      }
      fulfillments(first: 10) {
        id updatedAt trackingInfo { number company url }
        fulfillmentLineItems(first: 50) { nodes { lineItem { id variant { id } } } }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}"""

Publish = Callable[[list[InboundWebhook]], Awaitable[None]]


def _stamp(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def pull_orders(client: ShopifyClient, since: datetime) -> list[dict[str, Any]]:
    """Every order updated after ``since``, page by page."""
    found: list[dict[str, Any]] = []
    after = None
    query = f"updated_at:>'{_stamp(since)}'"
    while True:
        data = await client.execute(
            "ReconcileOrders", ORDERS_QUERY, {"first": PAGE, "after": after, "query": query}, cost=1 + PAGE * 4
        )
        page = data.get("orders") or {}
        found.extend(page.get("nodes") or [])
        info = page.get("pageInfo") or {}
        if not info.get("hasNextPage"):
            return found
        after = info.get("endCursor")


async def reconcile_shop(
    pool: Any, client: ShopifyClient, publish: Publish, *, interval_s: float, lookback_s: float,
) -> int | None:
    """Pull one shop if it is due and no one else is pulling it: the orders
    published, or None when it was not its turn."""
    shop = client.shop_domain
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext('shopify-reconcile:' || $1))", shop):
            return None
        try:
            row = await conn.fetchrow("SELECT pulled_until, pulled_at FROM shopify_reconcile WHERE shop_domain = $1", shop)
            started = datetime.now(timezone.utc)
            if row is not None and row["pulled_at"] > started - timedelta(seconds=interval_s):
                return None
            since = (row["pulled_until"] - timedelta(seconds=OVERLAP_S)) if row else started - timedelta(seconds=lookback_s)
            orders = await pull_orders(client, since)
            hooks = [hook for node in orders for hook in webhooks_of(shop, node, started)]
            if hooks:
                await publish(hooks)
            await conn.execute(
                """INSERT INTO shopify_reconcile (shop_domain, pulled_until, pulled_at, orders_pulled)
                   VALUES ($1, $2, now(), $3)
                   ON CONFLICT (shop_domain) DO UPDATE SET pulled_until = EXCLUDED.pulled_until,
                     pulled_at = EXCLUDED.pulled_at, orders_pulled = shopify_reconcile.orders_pulled + EXCLUDED.orders_pulled""",
                shop, started, len(orders),
            )
            metrics.RECONCILED_ORDERS.inc(len(orders))
            log.info("reconciled %s: %d orders updated since %s", shop, len(orders), _stamp(since))
            return len(orders)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext('shopify-reconcile:' || $1))", shop)


async def reconcile_loop(
    pool: Any, clients: Iterable[ShopifyClient], publish: Publish, stop: asyncio.Event, *,
    interval_s: float, lookback_s: float,
) -> None:
    """Look every tick (at most 30 s) for the shops due; each pull's failure is logged and counted."""
    shops = {client.shop_domain: client for client in clients}  # several stores may share a shop
    tick = min(interval_s, 30.0)
    while not stop.is_set():
        for client in shops.values():
            try:
                done = await reconcile_shop(pool, client, publish, interval_s=interval_s, lookback_s=lookback_s)
                if done is not None:
                    metrics.RECONCILE_RUNS.labels("OK").inc()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.RECONCILE_RUNS.labels("FAILED").inc()
                log.warning("reconciling %s failed (%s: %s); next tick", client.shop_domain, type(exc).__name__,
                            str(exc)[:300])
        try:
            await asyncio.wait_for(stop.wait(), tick)
        except TimeoutError:
            pass
