"""The PostgreSQL record: the recorder's upserts against the real server, and the
``ops-engine recorder`` process end to end, with its database stopped for a
while mid-stream (nothing lost, nothing written twice)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import orjson

from connectors.postgres.migrate import migrate
from connectors.postgres.pool import create_pool
from connectors.postgres.record import rows_of, write_rows
from connectors.postgres.server import LocalPostgres
from models.events import Alert, AlertStatus, AlertType, Severity
from models.webhooks import sign_shopify
from streams import topics
from streams.codecs import encode
from tests.harness import Worker, cli_publish, wait_for

T = TypeVar("T")
AT = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def run(dsn: str, body: Callable[[Any], Awaitable[T]]) -> T:
    async def main() -> T:
        pool = await create_pool(dsn)
        try:
            return await body(pool)
        finally:
            await pool.close()

    return asyncio.run(main())


def alert(status: AlertStatus, minutes: int) -> Alert:
    return Alert(alert_id="a-1", store_id="s-1", product_id="p-1", type=AlertType.STOCK_OUT, severity=Severity.HIGH,
                 status=status, title="Out of stock", message="m", created_at=AT,
                 updated_at=AT + timedelta(minutes=minutes))


def test_replays_write_nothing_twice_and_the_newest_record_wins(pg_dsn: str) -> None:
    async def body(pool: Any) -> list[Any]:
        acked = rows_of(topics.ALERTS, encode(alert(AlertStatus.ACKNOWLEDGED, 5)))
        active = rows_of(topics.ALERTS, encode(alert(AlertStatus.ACTIVE, 0)))
        await write_rows(pool, active + acked)
        await write_rows(pool, active + acked)  # the batch replayed
        await write_rows(pool, active)  # an old record arriving late
        return await pool.fetch("SELECT alert_id, status, updated_at FROM alerts")

    rows = run(pg_dsn, body)
    assert [(r["alert_id"], r["status"]) for r in rows] == [("a-1", "ACKNOWLEDGED")]
    assert rows[0]["updated_at"] == AT + timedelta(minutes=5)


def snapshots(first: int, last: int, stock: int, at: str) -> list[dict[str, Any]]:
    return [
        {"store_id": f"s-{n % 4}", "product_id": f"p-{n}", "provider": "ALIEXPRESS", "source_id": f"AE-{n}",
         "stock": stock, "cost_price": "10.00", "currency": "USD", "captured_at": at}
        for n in range(first, last)
    ]


def now(offset_s: float = 0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset_s))


def test_the_recorder_catches_up_after_its_database_was_down(broker, spawn) -> None:  # type: ignore[no-untyped-def]
    base = Path(tempfile.mkdtemp(prefix="ops-engine-recorder-pg-"))
    server = LocalPostgres(base / "data", log_path=base / "postgres.log").start()
    try:
        asyncio.run(migrate(server.dsn))
        secret = "shpss_test_secret_0123456789"
        worker: Worker = spawn("w1", OPS_SHOPIFY_WEBHOOK_SECRETS=orjson.dumps({"x.myshopify.com": [secret]}).decode())
        worker.wait_ready()
        recorder: Worker = spawn("r1", command="recorder", OPS_DATABASE_URL=server.dsn, OPS_RECORDER_METRICS_PORT="0")

        def count(sql: str) -> int:
            async def one() -> int:
                conn = await asyncpg.connect(server.dsn)
                try:
                    return int(await conn.fetchval(sql))
                finally:
                    await conn.close()

            try:
                return asyncio.run(one())
            except (OSError, asyncpg.PostgresError):
                return -1

        assert cli_publish(broker, "supplier.snapshots", snapshots(0, 300, 20, now(-60))).returncode == 0
        order = {
            "type": "ORDER_CREATED", "event_id": "o-1-created", "order_id": "o-1", "store_id": "s-1",
            "occurred_at": now(), "order_number": "#1", "currency": "USD", "subtotal": "5.00", "total": "5.00",
            "shipping_address": {"name": "A", "line1": "1 Main", "city": "Austin", "country_code": "US"},
            "items": [{"line_id": "l1", "product_id": "p-1", "quantity": 1, "unit_price": "5.00",
                       "provider": "ALIEXPRESS", "source_id": "AE-1"}],
        }
        assert cli_publish(broker, "orders.events", [order]).returncode == 0
        raw = orjson.dumps({"id": 1, "domain": "x.myshopify.com"})
        response = httpx.post(f"{worker.url}/webhooks/shopify", content=raw, headers={
            "X-Shopify-Topic": "app/uninstalled", "X-Shopify-Shop-Domain": "x.myshopify.com",
            "X-Shopify-Webhook-Id": "wh-1", "X-Shopify-Hmac-Sha256": sign_shopify(raw, secret),
            "Content-Type": "application/json"})
        assert response.status_code == 202, response.text
        wait_for(lambda: count("SELECT count(*) FROM products") == 300, timeout=90, what="first products")
        wait_for(lambda: count("SELECT count(*) FROM orders") == 1, timeout=60, what="order")

        server.stop()  # the database goes away mid-stream
        assert cli_publish(broker, "supplier.snapshots", snapshots(300, 600, 20, now(-30))).returncode == 0
        assert cli_publish(broker, "supplier.snapshots", snapshots(0, 100, 0, now())).returncode == 0  # 100 stock-outs
        time.sleep(3)  # the recorder tries, fails, and waits
        server.start()

        wait_for(lambda: count("SELECT count(*) FROM products") == 600, timeout=120, what="all products")
        wait_for(lambda: count("SELECT count(*) FROM products WHERE stock = 0 AND status = 'OUT_OF_STOCK'") == 100,
                 timeout=60, what="stock-outs")
        wait_for(lambda: count("SELECT count(*) FROM alerts WHERE type = 'STOCK_OUT'") == 100, timeout=60,
                 what="alerts")
        assert count("SELECT count(*) FROM order_history WHERE order_id = 'o-1'") >= 1
        assert count("SELECT count(*) FROM orders WHERE order_id = 'o-1' AND status = 'PENDING'") == 1
        assert count("SELECT count(*) FROM processed_webhook_events WHERE delivery_id = 'wh-1'") == 1
        assert "failed" in recorder.log_tail(200)  # it did meet the stopped database, and went on
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
