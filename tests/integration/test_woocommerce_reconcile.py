"""WooCommerce reconciliation (connectors/woocommerce/reconcile.py on
connectors/storefront/reconcile.py) against a fake WooCommerce site on
loopback and a real PostgreSQL:

- a pull that spans several pages gets every order once, also when an order
  is edited in the shop while the pages are read;
- the mark per site, under the advisory lock: a second process while one
  pulls, or any process inside the interval, pulls nothing; the next pull
  starts at the mark minus the overlap; a site never pulled reaches a day back;
- end to end (broker, worker, storefront process): an order webhook dropped on
  the way is caught by the next pull, published as the ingress would have
  stored it, and the copy of one that did arrive changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from connectors.broker import EmbeddedBroker
from connectors.postgres.migrate import discover, migrate
from connectors.postgres.pool import create_pool
from connectors.postgres.server import LocalPostgres
from connectors.storefront.reconcile import OVERLAP_S, Target, reconcile_shop
from connectors.woocommerce import reconcile
from connectors.woocommerce.client import WooCommerceClient
from connectors.woocommerce.settings import WooCommerceAccount
from models.webhooks import InboundWebhook, woocommerce_site
from tests.fakes.woocommerce_server import FakeWooCommerce, wc_date
from tests.harness import Worker, cli_publish, read_topic, wait_for
from tests.integration.test_postgres import empty_database

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
SITE = "woo.example.com"
SECRET = "wc-secret-current-0123456789"
DAY = 86400.0


def account(fake: FakeWooCommerce) -> WooCommerceAccount:
    return WooCommerceAccount(site_url=fake.site_url, site_host=SITE, consumer_key=fake.consumer_key,
                              consumer_secret=fake.consumer_secret)


def target(fake: FakeWooCommerce) -> tuple[WooCommerceClient, Target]:
    client = WooCommerceClient(account(fake), base_delay=0.01)
    return client, reconcile.target(client, interval_s=900.0, lookback_s=DAY)


class Published:
    def __init__(self) -> None:
        self.hooks: list[InboundWebhook] = []

    async def __call__(self, hooks: list[InboundWebhook]) -> None:
        self.hooks.extend(hooks)

    def ids(self) -> list[int]:
        return [orjson.loads(h.body)["id"] for h in self.hooks]


def orders(fake: FakeWooCommerce, count: int, start: datetime) -> None:
    for n in range(count):
        fake.add_order(5000 + n, modified=start + timedelta(seconds=n), number=str(5000 + n))


def pages(fake: FakeWooCommerce) -> list[int]:
    return [int(r["query"]["page"][0]) for r in fake.order_pulls()]


def pull_once(dsn: str, fake: FakeWooCommerce) -> tuple[int | None, Published]:
    """One storefront process's look at the site: its own pool and client."""

    async def main() -> tuple[int | None, Published]:
        pool = await create_pool(dsn, max_size=2)
        client, shop = target(fake)
        published = Published()
        try:
            return await reconcile_shop(pool, shop, published), published
        finally:
            await client.aclose()
            await pool.close()

    return asyncio.run(main())


def marks(dsn: str) -> list[Any]:
    async def main() -> list[Any]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch("SELECT * FROM storefront_reconcile ORDER BY platform, shop"))
        finally:
            await conn.close()

    return asyncio.run(main())


def test_a_pull_over_several_pages_gets_every_order_once(pg_dsn: str) -> None:
    now = datetime.now(timezone.utc)
    with FakeWooCommerce() as fake:
        orders(fake, 250, now - timedelta(hours=2))
        fake.add_order(4000, modified=now - timedelta(days=2))  # before the lookback: not pulled
        before = datetime.now(timezone.utc)
        done, published = pull_once(pg_dsn, fake)
        [first] = fake.order_pulls()[:1]

    assert done == 250 and sorted(published.ids()) == list(range(5000, 5250))
    assert [h.topic for h in published.hooks] == ["order.updated"] * 250
    assert pages(fake) == [1, 3, 2, 1]  # page 1 says there are 3; then from the last back to the first
    query = first["query"]
    assert (query["dates_are_gmt"], query["orderby"], query["order"], query["per_page"]) == (
        ["true"], ["modified"], ["asc"], ["100"])
    since = datetime.strptime(query["modified_after"][0], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    assert before - timedelta(seconds=DAY + 1) <= since <= before - timedelta(seconds=DAY) + timedelta(seconds=5)
    assert all(r["auth"] == "basic" for r in fake.order_pulls())
    [mark] = marks(pg_dsn)
    assert (mark["platform"], mark["shop"], mark["orders_pulled"]) == ("WOOCOMMERCE", SITE, 250)


def test_an_order_edited_while_the_pages_are_read_costs_no_other_order(pg_dsn: str) -> None:
    """The edited order leaves page 1 for the end and every order after it moves up a place:
    read from the first page on, the order that moved onto a page already read would be lost."""
    now = datetime.now(timezone.utc)
    with FakeWooCommerce() as fake:
        orders(fake, 250, now - timedelta(hours=2))
        served: list[int] = []

        def edit_after_the_first_page(page: int) -> None:
            served.append(page)
            if len(served) == 1:
                fake.touch_order(5000, status="completed")

        fake.on_orders_page = edit_after_the_first_page
        done, published = pull_once(pg_dsn, fake)

    assert done == 250 and sorted(published.ids()) == list(range(5000, 5250))  # each once, none lost
    edited = next(orjson.loads(h.body) for h in published.hooks if orjson.loads(h.body)["id"] == 5000)
    assert edited["status"] == "completed"  # its newest copy


def test_without_page_counts_the_pages_are_read_until_a_short_one(pg_dsn: str) -> None:
    now = datetime.now(timezone.utc)
    with FakeWooCommerce() as fake:
        fake.total_headers = False
        orders(fake, 200, now - timedelta(hours=1))
        done, published = pull_once(pg_dsn, fake)

    assert done == 200 and sorted(published.ids()) == list(range(5000, 5200)) and pages(fake) == [1, 2, 3]


def test_one_pull_per_interval_whatever_the_processes(pg_dsn: str) -> None:
    """Two storefront processes (two pools, two clients): while one pulls, the other
    finds the site locked; inside the interval neither pulls; the next pull starts at
    the mark minus the overlap and finds only what changed."""
    now = datetime.now(timezone.utc)
    with FakeWooCommerce() as fake:
        orders(fake, 3, now - timedelta(hours=1))
        entered, release = threading.Event(), threading.Event()

        def hold(page: int) -> None:
            entered.set()
            release.wait(20)

        fake.on_orders_page = hold

        async def main() -> tuple[list[int | None], Published, Published]:
            pool_a, pool_b = await create_pool(pg_dsn, max_size=2), await create_pool(pg_dsn, max_size=2)
            (client_a, a), (client_b, b) = target(fake), target(fake)
            got_a, got_b = Published(), Published()
            try:
                pulling = asyncio.create_task(reconcile_shop(pool_a, a, got_a))
                assert await asyncio.to_thread(entered.wait, 20)
                results = [await reconcile_shop(pool_b, b, got_b)]  # A holds the lock
                release.set()
                results.append(await pulling)
                fake.on_orders_page = None
                results.append(await reconcile_shop(pool_b, b, got_b))  # inside the interval
                results.append(await reconcile_shop(pool_a, a, got_a))
                return results, got_a, got_b
            finally:
                release.set()
                for client in (client_a, client_b):
                    await client.aclose()
                await pool_a.close()
                await pool_b.close()

        results, got_a, got_b = asyncio.run(main())
        assert results == [None, 3, None, None]
        assert sorted(got_a.ids()) == [5000, 5001, 5002] and got_b.hooks == []
        assert len(fake.order_pulls()) == 1  # one page, once
        [mark] = marks(pg_dsn)

        # The interval has passed (as if); an order edited since: the next pull starts at the mark minus the overlap.
        async def an_hour_ago() -> None:
            conn = await asyncpg.connect(pg_dsn)
            try:
                await conn.execute("UPDATE storefront_reconcile SET pulled_at = pulled_at - interval '1 hour'")
            finally:
                await conn.close()

        asyncio.run(an_hour_ago())
        fake.touch_order(5001, status="completed")
        done, got = pull_once(pg_dsn, fake)
        since = fake.order_pulls()[-1]["query"]["modified_after"][0]

    assert done == 1 and got.ids() == [5001]
    assert since == wc_date(mark["pulled_until"] - timedelta(seconds=OVERLAP_S))
    [after] = marks(pg_dsn)
    assert after["pulled_until"] > mark["pulled_until"] and after["orders_pulled"] == 4


def test_the_shopify_marks_move_to_the_shared_table(postgres: LocalPostgres, tmp_path: Path) -> None:
    """Migration 008: a deployment's Shopify marks survive the move to storefront_reconcile."""
    before = tmp_path / "before"
    before.mkdir()
    for m in discover():
        if m.version < "008":
            (before / m.path.name).write_text(m.sql)
    with empty_database(postgres) as dsn:

        async def main() -> list[Any]:
            await migrate(dsn, before)
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute("INSERT INTO shopify_reconcile VALUES ('s1.myshopify.com', "
                                   "'2026-11-24T10:00:00Z', '2026-11-24T10:00:01Z', 12)")
                assert await migrate(dsn) == [m.version for m in discover() if m.version >= "008"]
                assert await conn.fetchval("SELECT to_regclass('shopify_reconcile')") is None
                return list(await conn.fetch("SELECT * FROM storefront_reconcile"))
            finally:
                await conn.close()

        [row] = asyncio.run(main())
    assert (row["platform"], row["shop"], row["orders_pulled"]) == ("SHOPIFY", "s1.myshopify.com", 12)
    assert row["pulled_until"] == datetime(2026, 11, 24, 10, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- #
# End to end
# --------------------------------------------------------------------------- #

CATALOGUE = [
    {"platform": "WOOCOMMERCE", "shop_domain": SITE, "shopify_variant_id": ref, "store_id": "store-w",
     "product_id": f"p-{ref}", "provider": provider, "source_id": f"SRC-{ref}"}
    for ref, provider in (("93", "ALIEXPRESS"), ("23", "CJ_DROPSHIPPING"), ("41", "SPOCKET"))
]


@pytest.fixture
def site() -> Iterator[FakeWooCommerce]:
    body = orjson.loads((FIXTURES / "woocommerce_order_processing.json").read_bytes())
    recent = datetime.now(timezone.utc) - timedelta(minutes=10)
    with FakeWooCommerce() as fake:
        fake.add_order(727, modified=recent, **{k: v for k, v in body.items() if k != "id"})
        fake.add_order(728, modified=recent, **{**{k: v for k, v in body.items() if k != "id"}, "number": "728"})
        yield fake


def order(worker: Worker, number: int) -> dict[str, Any] | None:
    response = worker.get(f"/orders/woocommerce-{SITE}-{number}")
    return response.json() if response.status_code == 200 else None


def test_a_dropped_order_webhook_is_caught_by_the_next_pull(
    broker: EmbeddedBroker, spawn: Any, site: FakeWooCommerce, pg_dsn: str
) -> None:
    worker: Worker = spawn("w1", OPS_WOOCOMMERCE_WEBHOOK_SECRETS=orjson.dumps({SITE: [SECRET]}).decode())
    assert cli_publish(broker, "catalog.variants", CATALOGUE).returncode == 0
    worker.wait_ready()

    # Order 727's webhook arrives; 728's is lost.
    delivered = site.orders[727]
    body = orjson.dumps(delivered)
    response = httpx.post(f"{worker.url}/webhooks/woocommerce", content=body, timeout=15, headers={
        "Content-Type": "application/json", "X-WC-Webhook-Source": f"https://{SITE}/",
        "X-WC-Webhook-Topic": "order.created", "X-WC-Webhook-Resource": "order", "X-WC-Webhook-Event": "created",
        "X-WC-Webhook-ID": "12", "X-WC-Webhook-Delivery-ID": "d-727",
        "X-WC-Webhook-Signature": base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode(),
    })
    assert response.status_code == 202, response.text
    wait_for(lambda: order(worker, 727), timeout=30, what="order 727 from its webhook")
    assert order(worker, 728) is None

    accounts = orjson.dumps({"store-w": {
        "platform": "WOOCOMMERCE", "site_url": site.site_url, "site_host": SITE,
        "consumer_key": site.consumer_key, "consumer_secret": site.consumer_secret}}).decode()
    storefront: Worker = spawn("sf1", command="storefront", OPS_STOREFRONT_ACCOUNTS=accounts,
                               OPS_STOREFRONT_METRICS_PORT="0", OPS_DATABASE_URL=pg_dsn,
                               OPS_WOOCOMMERCE_RECONCILE_INTERVAL_S="1", OPS_LOG_LEVEL="info")
    lost = wait_for(lambda: order(worker, 728), timeout=60,
                    what=f"order 728 from the pull:\n{storefront.log_tail()}")
    assert lost["store_id"] == "store-w" and lost["order_number"] == "728"
    assert sorted(i["product_id"] for i in lost["items"]) == ["p-23", "p-41", "p-93"]
    assert any(h["event"] == "PAYMENT_CONFIRMED" for h in lost["history"])

    # Another order placed after the first pull, its webhook lost too: a later pull catches it.
    [mark] = wait_for(lambda: marks(pg_dsn), timeout=10, what="the pull's mark")
    site.add_order(729, **{**{k: v for k, v in delivered.items() if k not in ("id", "date_modified_gmt",
                                                                               "date_modified")},
                           "number": "729"})
    wait_for(lambda: order(worker, 729), timeout=60, what=f"order 729 from a later pull:\n{storefront.log_tail()}")
    [later] = marks(pg_dsn)
    assert (later["platform"], later["shop"]) == ("WOOCOMMERCE", SITE)
    assert later["pulled_until"] > mark["pulled_until"]
    assert len({r["query"]["modified_after"][0] for r in site.order_pulls()}) >= 2

    # 727 came by webhook and by every pull: created and paid once.
    seen = order(worker, 727)
    assert seen is not None
    events = [h["event"] for h in seen["history"]]
    assert events.count("ORDER_CREATED") == 1 and events.count("PAYMENT_CONFIRMED") == 1

    # The pulled copy of 727 is stored as the ingress stored the delivery: same kind of record, same key.
    records = asyncio.run(read_topic(broker, "webhooks.inbound"))
    stored = {InboundWebhook.model_validate_json(r.value).delivery_id: (r.key, InboundWebhook.model_validate_json(r.value))
              for r in records}
    real_key, real = stored["d-727"]
    copy_key, copy = next(v for d, v in stored.items() if d.startswith("reconcile:order:727:"))
    assert copy_key == real_key == SITE.encode()
    assert (copy.source, copy.shop_domain, copy.provider) == (real.source, real.shop_domain, real.provider)
    assert copy.topic == "order.updated" and set(copy.headers) <= set(real.headers)
    assert woocommerce_site(copy.headers["x-wc-webhook-source"]) == woocommerce_site(real.headers["x-wc-webhook-source"])
    assert orjson.loads(copy.body) == orjson.loads(real.body)  # the order as GET /orders has it, as the webhook had it
