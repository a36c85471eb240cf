"""WooCommerce's part of the reconciliation (connectors/storefront/reconcile.py
holds what every platform shares: the mark per site in PostgreSQL, the
advisory lock, the interval, the metrics).

Every ``OPS_WOOCOMMERCE_RECONCILE_INTERVAL_S`` (900 s) a site's orders
modified since its last pull are read with the REST API::

    GET /wp-json/wc/v3/orders?modified_after=SINCE&dates_are_gmt=true
        &orderby=modified&order=asc&per_page=100&page=N

and published as the ``order.updated`` webhooks they stand for
(models/woocommerce_orders.py), through the same dedup as the ingress. A site
never pulled starts ``OPS_WOOCOMMERCE_RECONCILE_LOOKBACK_S`` (a day) back.

Pages
-----
Page numbers are offsets into a list that moves while it is read: an order
modified during the pull leaves its place for the end, and every order after
it moves up one place. Read as pages 1, 2, 3, ..., the order that moved from
the top of page 3 to the bottom of page 2 after page 2 was read is never seen;
it was modified before the pull started, so the next pull (from the start
minus the overlap) does not find it either: lost. Read from the last page back
to the first, a move up only carries an order onto a page not read yet (seen,
maybe twice: harmless). So: page 1 first (its ``X-WP-TotalPages`` says how
many there are; one page, the usual case, is the whole pull), then the last
page down to page 2, then page 1 again. Orders that moved to the end during
the pull were modified after it started: the next pull has them. Without
``X-WP-TotalPages`` (a proxy that drops it), pages 1, 2, ... are read until
one has fewer than 100 orders.

An order seen twice is published once, its newest copy (``date_modified_gmt``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from connectors.storefront.reconcile import Pulled, Target
from connectors.woocommerce.client import PER_PAGE, Page, WooCommerceClient
from models.woocommerce_orders import modified_of, webhook_of

log = logging.getLogger(__name__)

PLATFORM = "WOOCOMMERCE"


def gmt(at: datetime) -> str:
    """A time as ``modified_after`` takes it with ``dates_are_gmt=true``."""
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


async def pull_orders(client: WooCommerceClient, since: datetime) -> list[dict[str, Any]]:
    """Every order modified after ``since``, once each, oldest modification first."""

    async def page(number: int) -> Page:
        return await client.page("/orders", {
            "modified_after": gmt(since), "dates_are_gmt": "true", "orderby": "modified", "order": "asc",
            "per_page": PER_PAGE, "page": number,
        })

    first = await page(1)
    pages = [first]
    if first.total_pages is None:
        number, last = 1, first
        while len(last.items) >= PER_PAGE:
            number += 1
            last = await page(number)
            pages.append(last)
    elif first.total_pages > 1:
        for number in range(first.total_pages, 1, -1):
            pages.append(await page(number))
        pages.append(await page(1))
    newest: dict[str, dict[str, Any]] = {}
    for found in pages:
        for order in found.items:
            if order.get("id") in (None, ""):
                log.warning("woocommerce %s: an order without an id in the orders list; skipped", client.account.site)
                continue
            key = str(order["id"])
            if key not in newest or modified_of(order) >= modified_of(newest[key]):
                newest[key] = order
    return sorted(newest.values(), key=modified_of)


def target(client: WooCommerceClient, *, interval_s: float, lookback_s: float) -> Target:
    """The site of ``client``, reconciled every ``interval_s``."""
    site = client.account.site

    async def pull(since: datetime, started: datetime) -> Pulled:
        orders = await pull_orders(client, since)
        return Pulled(len(orders), [webhook_of(site, order, started) for order in orders])

    return Target(PLATFORM, site, pull, interval_s, lookback_s)
