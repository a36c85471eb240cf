"""Reconciliation, because webhooks get lost: the storefront process pulls each
shop's orders modified since its last pull and publishes each as the webhook(s)
it stands for on ``webhooks.inbound`` (acks=all), where the router's dedup on
the delivery id and the order machine's on the event id make the copies of
what did arrive harmless; what did not arrive is caught.

This module is the part every platform shares: when a shop is due, its mark,
the lock, the metrics. What a pull is belongs to the platform, a
:class:`Target`'s ``pull``:

- Shopify (connectors/shopify/reconcile.py): the GraphQL Admin API's
  ``orders(query: "updated_at:>'...'")``, cursor pagination, mapped by
  models/shopify_orders.py;
- WooCommerce (connectors/woocommerce/reconcile.py): the REST API's
  ``GET /orders?modified_after=...``, page by page, mapped by
  models/woocommerce_orders.py.

The mark (``pulled_until``) is per (platform, shop) in PostgreSQL (table
``storefront_reconcile``, migration 008; 006's ``shopify_reconcile`` before):
it survives restarts and is shared by every storefront process. A pull happens
under the shop's advisory lock, and only when the last one is at least the
platform's interval old, so two processes never pull one shop at once and the
shop is pulled once per interval whatever the number of processes. A pull
reads from ``pulled_until`` minus :data:`OVERLAP_S` (clocks differ; repeats are
harmless); the new mark is the time the pull started, written only after every
webhook of it is acknowledged. A shop never pulled starts the platform's
lookback (a day) back.

Without ``OPS_DATABASE_URL`` the reconciliation is off (a warning says so).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from connectors.storefront import metrics
from models.webhooks import InboundWebhook

log = logging.getLogger(__name__)

OVERLAP_S = 120
#: The longest wait between two looks for the shops due, s.
LONGEST_TICK_S = 30.0

Publish = Callable[[list[InboundWebhook]], Awaitable[None]]


@dataclass(frozen=True)
class Pulled:
    """What one pull found: the orders, and the webhooks they stand for."""

    orders: int
    hooks: list[InboundWebhook]


#: ``pull(since, started)``: the orders modified after ``since``, as webhooks received at ``started``.
Pull = Callable[[datetime, datetime], Awaitable[Pulled]]


@dataclass(frozen=True)
class Target:
    """One shop to reconcile."""

    platform: str  # SHOPIFY | WOOCOMMERCE: the table's and the metrics' platform
    shop: str  # the shop domain, or the WooCommerce site's host
    pull: Pull
    interval_s: float
    lookback_s: float

    @property
    def lock_name(self) -> str:
        # Shopify's is the name 006's code locked, so processes of both versions exclude each other.
        return f"{self.platform.lower()}-reconcile:{self.shop}"


def stamp(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def reconcile_shop(pool: Any, target: Target, publish: Publish) -> int | None:
    """Pull one shop if it is due and no one else is pulling it: the orders
    published, or None when it was not its turn."""
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", target.lock_name):
            return None
        try:
            row = await conn.fetchrow(
                "SELECT pulled_until, pulled_at FROM storefront_reconcile WHERE platform = $1 AND shop = $2",
                target.platform, target.shop,
            )
            started = datetime.now(timezone.utc)
            if row is not None and row["pulled_at"] > started - timedelta(seconds=target.interval_s):
                return None
            since = (
                row["pulled_until"] - timedelta(seconds=OVERLAP_S)
                if row else started - timedelta(seconds=target.lookback_s)
            )
            pulled = await target.pull(since, started)
            if pulled.hooks:
                await publish(pulled.hooks)
            await conn.execute(
                """INSERT INTO storefront_reconcile (platform, shop, pulled_until, pulled_at, orders_pulled)
                   VALUES ($1, $2, $3, now(), $4)
                   ON CONFLICT (platform, shop) DO UPDATE SET pulled_until = EXCLUDED.pulled_until,
                     pulled_at = EXCLUDED.pulled_at,
                     orders_pulled = storefront_reconcile.orders_pulled + EXCLUDED.orders_pulled""",
                target.platform, target.shop, started, pulled.orders,
            )
            metrics.RECONCILED_ORDERS.labels(target.platform).inc(pulled.orders)
            log.info("reconciled %s %s: %d orders modified since %s", target.platform, target.shop,
                     pulled.orders, stamp(since))
            return pulled.orders
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", target.lock_name)


async def reconcile_loop(pool: Any, targets: Iterable[Target], publish: Publish, stop: asyncio.Event) -> None:
    """Look every tick (at most 30 s, at most the shortest interval) for the
    shops due; each pull's failure is logged and counted."""
    shops = {(t.platform, t.shop): t for t in targets}  # several stores may share a shop
    if not shops:
        return
    tick = min(LONGEST_TICK_S, *(t.interval_s for t in shops.values()))
    while not stop.is_set():
        for target in shops.values():
            try:
                done = await reconcile_shop(pool, target, publish)
                if done is not None:
                    metrics.RECONCILE_RUNS.labels(target.platform, "OK").inc()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.RECONCILE_RUNS.labels(target.platform, "FAILED").inc()
                log.warning("reconciling %s %s failed (%s: %s); next tick", target.platform, target.shop,
                            type(exc).__name__, str(exc)[:300])
        try:
            await asyncio.wait_for(stop.wait(), tick)
        except TimeoutError:
            pass
