"""Shopify's part of the reconciliation (connectors/storefront/reconcile.py
holds what every platform shares: the mark per shop in PostgreSQL, the
advisory lock, the interval, the metrics).

Every ``OPS_SHOPIFY_RECONCILE_INTERVAL_S`` (900 s) a shop's orders updated
since its last pull are read with ``orders(query: "updated_at:>'...'")`` (25 a
page, cursor pagination, fulfillments included) and published as the webhooks
they stand for (models/shopify_orders.py). A shop never pulled starts
``OPS_SHOPIFY_RECONCILE_LOOKBACK_S`` (a day) back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connectors.shopify.client import ShopifyClient
from connectors.storefront.reconcile import Pulled, Target, stamp
from models.shopify_orders import webhooks_of

PLATFORM = "SHOPIFY"
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


async def pull_orders(client: ShopifyClient, since: datetime) -> list[dict[str, Any]]:
    """Every order updated after ``since``, page by page."""
    found: list[dict[str, Any]] = []
    after = None
    query = f"updated_at:>'{stamp(since)}'"
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


def target(client: ShopifyClient, *, interval_s: float, lookback_s: float) -> Target:
    """The shop of ``client``, reconciled every ``interval_s``."""
    shop = client.shop_domain

    async def pull(since: datetime, started: datetime) -> Pulled:
        orders = await pull_orders(client, since)
        return Pulled(len(orders), [hook for node in orders for hook in webhooks_of(shop, node, started)])

    return Target(PLATFORM, shop, pull, interval_s, lookback_s)
