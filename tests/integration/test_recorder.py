"""The PostgreSQL record: the recorder's upserts against the real server, and the
``ops-engine recorder`` process end to end, with its database stopped for a
while mid-stream (nothing lost, nothing written twice)."""

from __future__ import annotations

import asyncio
import base64
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import orjson

from connectors.postgres.migrate import migrate
from connectors.postgres.pool import create_pool
from connectors.postgres.record import COPY_MIN_ROWS, rows_of, write_rows
from connectors.postgres.server import LocalPostgres
from models.events import Alert, AlertStatus, AlertType, InventoryChange, Severity
from models.sync import (
    RunStatus,
    SyncProgress,
    SyncRequest,
    SyncRun,
    SyncTier,
    TrackedProduct,
    apply_progress,
    start_run,
)
from models.video import (
    RenderCompleted,
    RenderFailed,
    RenderProgress,
    RenderStarted,
    VideoRequest,
    VideoResult,
    VideoStatusRecord,
)
from models.video import decide as decide_video
from models.webhooks import sign_shopify
from streams import topics
from streams.codecs import encode
from tests.harness import Worker, cli_publish, produce_raw, read_json, wait_for

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


def test_of_equal_times_the_later_status_in_the_lifecycle_wins_in_either_order(pg_dsn: str) -> None:
    """``transition`` keeps an alert's time when a move is requested for an earlier moment, so
    ACTIVE and ACKNOWLEDGED can share ``updated_at``: whichever arrives last, row by row or
    copied in one batch, the table keeps ACKNOWLEDGED (models.alerts.supersedes)."""
    active, acked = encode(alert(AlertStatus.ACTIVE, 5)), encode(alert(AlertStatus.ACKNOWLEDGED, 5))

    async def body(pool: Any) -> list[str]:
        seen = []
        for order in ((active, acked), (acked, active)):
            await pool.execute("DELETE FROM alerts")
            for value in order:  # row by row
                await write_rows(pool, rows_of(topics.ALERTS, value))
            seen.append(await pool.fetchval("SELECT status FROM alerts WHERE alert_id = 'a-1'"))
            await pool.execute("DELETE FROM alerts")
            filler = [rows_of(topics.ALERTS, encode(alert(AlertStatus.ACTIVE, 0).model_copy(
                update={"alert_id": f"f-{n}"})))[0] for n in range(COPY_MIN_ROWS)]
            await write_rows(pool, filler + [r for v in order for r in rows_of(topics.ALERTS, v)])  # by COPY
            seen.append(await pool.fetchval("SELECT status FROM alerts WHERE alert_id = 'a-1'"))
        return seen

    assert run(pg_dsn, body) == ["ACKNOWLEDGED"] * 4


def change(store: str, n: int, stock: int, at: datetime) -> bytes:
    return encode(InventoryChange.model_validate({
        "change_id": f"c-{n}-{stock}", "store_id": store, "product_id": f"p-{n}", "provider": "SPOCKET",
        "source_id": f"S-{n}", "reason": "SNAPSHOT", "changed": ["STOCK"], "captured_at": at, "sync_run_id": "run-1",
        "after": {"status": "ACTIVE" if stock else "OUT_OF_STOCK", "available": True, "stock": stock,
                  "cost_price": "10.50", "shipping_cost": "2", "currency": "USD", "selling_price": "25.99"},
    }))


def test_large_product_batches_go_by_copy_with_the_same_result_as_row_by_row(pg_dsn: str) -> None:
    """A batch of COPY_MIN_ROWS products or more is copied and upserted at once; the table ends
    as if each row had been upserted in record order: the latest snapshot of each product wins,
    of equal times the later record; a replay or older records leave it as it is."""
    t0, t1, t2 = AT, AT + timedelta(minutes=1), AT + timedelta(minutes=2)
    records: list[tuple[int, int, datetime]] = [(n, 10, t1) for n in range(80)]
    records += [(n, 0, t2) for n in range(20)]  # newer, in the same batch
    records += [(n, 99, t0) for n in range(20, 40)]  # older, in the same batch: change nothing
    records += [(n, 7, t1) for n in range(40, 50)]  # the same time again, later in the batch: wins
    assert len(records) >= COPY_MIN_ROWS

    def rows(store: str, part: list[tuple[int, int, datetime]]) -> list[Any]:
        return [row for n, stock, at in part for row in rows_of(topics.INVENTORY_CHANGES, change(store, n, stock, at))]

    async def body(pool: Any) -> tuple[list[Any], list[Any], list[Any]]:
        await write_rows(pool, rows("copy", records))
        for first in range(0, len(records), 10):  # row by row: batches below COPY_MIN_ROWS
            await write_rows(pool, rows("each", records[first : first + 10]))
        select = ("SELECT product_id, stock, status, captured_at, last_change_id, xmin::text AS version FROM products"
                  " WHERE store_id = $1 ORDER BY product_id")
        copied = await pool.fetch(select, "copy")
        await write_rows(pool, rows("copy", records))  # replayed
        await write_rows(pool, rows("copy", [(n, 1, t0) for n in range(80)]))  # all older
        return copied, await pool.fetch(select, "copy"), await pool.fetch(select, "each")

    copied, again, each = run(pg_dsn, body)
    expected = {f"p-{n}": 0 if n < 20 else 7 if 40 <= n < 50 else 10 for n in range(80)}
    assert {r["product_id"]: r["stock"] for r in copied} == expected
    assert [r["last_change_id"] for r in copied if r["product_id"] == "p-45"] == ["c-45-7"]
    strip = [tuple(r)[:5] for r in copied]
    assert [tuple(r)[:5] for r in each] == strip
    assert [tuple(r)[:4] for r in again] == [tuple(r)[:4] for r in copied]  # the state is the same


def test_large_alert_batches_go_by_copy_with_the_same_result_as_row_by_row(pg_dsn: str) -> None:
    """Alerts as products: a batch of COPY_MIN_ROWS or more is copied and upserted at once, and
    the table ends as row by row would leave it (the newest ``updated_at`` wins; of equal times
    the later record), metadata included; replays and older records change nothing."""

    def record(prefix: str, n: int, status: AlertStatus, minutes: int) -> Alert:
        return Alert(alert_id=f"{prefix}-{n}", store_id="s-1", product_id=f"p-{n}", type=AlertType.PRICE_INCREASE,
                     severity=Severity.MEDIUM, status=status, title=f"t{minutes}", message="m",
                     metadata={"n": str(n), "minutes": str(minutes)}, created_at=AT,
                     updated_at=AT + timedelta(minutes=minutes))

    plan: list[tuple[int, AlertStatus, int]] = [(n, AlertStatus.ACTIVE, 1) for n in range(60)]
    plan += [(n, AlertStatus.RESOLVED, 3) for n in range(10)]  # newer, in the same batch
    plan += [(n, AlertStatus.DISMISSED, 0) for n in range(10, 20)]  # older, in the same batch: change nothing
    plan += [(n, AlertStatus.ACKNOWLEDGED, 1) for n in range(20, 25)]  # same time, later in the batch: wins
    assert len(plan) >= COPY_MIN_ROWS

    def rows(prefix: str, part: list[tuple[int, AlertStatus, int]]) -> list[Any]:
        return [row for n, status, minutes in part for row in rows_of(topics.ALERTS, encode(record(prefix, n, status, minutes)))]

    select = ("SELECT split_part(alert_id, '-', 2) AS n, status, title, metadata, updated_at FROM alerts"
              " WHERE alert_id LIKE $1 ORDER BY alert_id")

    async def body(pool: Any) -> tuple[list[Any], list[Any], list[Any]]:
        await write_rows(pool, rows("copy", plan))
        for first in range(0, len(plan), 10):  # row by row: batches below COPY_MIN_ROWS
            await write_rows(pool, rows("each", plan[first : first + 10]))
        copied = await pool.fetch(select, "copy-%")
        await write_rows(pool, rows("copy", plan))  # replayed
        await write_rows(pool, rows("copy", [(n, AlertStatus.ACTIVE, 0) for n in range(60)]))  # all older
        return copied, await pool.fetch(select, "copy-%"), await pool.fetch(select, "each-%")

    copied, again, each = run(pg_dsn, body)
    expected = {str(n): "RESOLVED" if n < 10 else "ACKNOWLEDGED" if 20 <= n < 25 else "ACTIVE" for n in range(60)}
    assert {r["n"]: r["status"] for r in copied} == expected
    assert orjson.loads([r["metadata"] for r in copied if r["n"] == "5"][0]) == {"n": "5", "minutes": "3"}
    assert [tuple(r)[:5] for r in each] == [tuple(r)[:5] for r in copied]
    assert [tuple(r)[:5] for r in again] == [tuple(r)[:5] for r in copied]  # the state is the same


def run_records() -> list[SyncRun]:
    """A real run's records as the inventory agent publishes them: started, two pages, ended."""
    tracked = [TrackedProduct(f"p-{n}", None, "CJ_DROPSHIPPING", f"P-{n}", Decimal("1"), 5, True) for n in range(5)]
    request = SyncRequest(request_id="st-1:MANUAL:1", store_id="st-1", tier=SyncTier.MANUAL, requested_at=AT)
    outcome = start_run(None, request, tracked, AT, page_size=3, timeout_s=1800)
    records = list(outcome.published)
    runs = outcome.runs
    for page, fetched in ((1, 2), (0, 3)):
        progress = SyncProgress(run_id=records[0].run_id, store_id="st-1", page=page, fetched=fetched, failed=0,
                                changed=1, at=AT + timedelta(seconds=5 + page))
        outcome = apply_progress(runs, progress)
        runs = outcome.runs
        records.extend(outcome.published)
    assert [r.status for r in records] == [RunStatus.RUNNING, RunStatus.RUNNING, RunStatus.COMPLETED]
    return records


def test_sync_logs_keep_each_run_s_latest_state(pg_dsn: str) -> None:
    started, page, ended = (rows_of(topics.SYNC_RUNS, encode(r)) for r in run_records())

    async def body(pool: Any) -> tuple[list[Any], list[Any], list[Any]]:
        select = "SELECT run_id, status, processed, changed, pages_done, duration, xmin::text AS version FROM sync_logs"
        await write_rows(pool, started + page)
        middle = await pool.fetch(select)
        await write_rows(pool, ended)
        first = await pool.fetch(select)
        await write_rows(pool, started + page + ended)  # the batch replayed
        await write_rows(pool, page + started)  # older records arriving late, out of order
        return middle, first, await pool.fetch(select)

    middle, first, last = run(pg_dsn, body)
    assert [(r["status"], r["processed"], r["pages_done"], r["duration"]) for r in middle] == [("RUNNING", 2, 1, None)]
    assert [(r["status"], r["processed"], r["changed"], r["pages_done"]) for r in last] == [("COMPLETED", 5, 2, 2)]
    assert last[0]["duration"] == timedelta(seconds=5)
    assert last == first  # not even rewritten (the same row version): nothing written twice


def status_records(events: list[Any]) -> list[VideoStatusRecord]:
    """The ``video.status`` records the job machine publishes for these events."""
    job = None
    records: list[VideoStatusRecord] = []
    for event in events:
        decision = decide_video(job, event)
        job = decision.job
        records.extend(decision.status)
    return records


def video_records() -> list[VideoStatusRecord]:
    """A real job's status records: queued, started, failed (retrying), queued again, 50 %, completed."""
    request = VideoRequest(video_id="v-1", store_id="st-1", product_id="p-1", requested_at=AT)
    result = VideoResult(video_url="https://cdn.example.com/v-1.mp4", thumbnail_url="https://cdn.example.com/v-1.jpg",
                         duration=15.0, width=1080, height=1920)

    def t(s: int) -> datetime:
        return AT + timedelta(seconds=s)

    events: list[Any] = [
        request,
        RenderStarted(event_id="e1", video_id="v-1", occurred_at=t(1), attempt=1),
        RenderFailed(event_id="e2", video_id="v-1", occurred_at=t(2), attempt=1, reason="ffmpeg exited 1"),
        RenderStarted(event_id="e3", video_id="v-1", occurred_at=t(3), attempt=2),
        RenderProgress(event_id="e4", video_id="v-1", occurred_at=t(3), attempt=2, progress=50),
        RenderCompleted(event_id="e5", video_id="v-1", occurred_at=t(4), attempt=2, result=result),
    ]
    records = status_records(events)
    assert [(r.status.value, r.attempt) for r in records] == [
        ("QUEUED", 1), ("PROCESSING", 1), ("FAILED", 1), ("QUEUED", 2), ("PROCESSING", 2), ("PROCESSING", 2),
        ("COMPLETED", 2)]
    return records


def test_video_assets_keep_each_video_s_latest_status(pg_dsn: str) -> None:
    rows = [rows_of(topics.VIDEO_STATUS, encode(r))[0] for r in video_records()]

    async def body(pool: Any) -> tuple[list[Any], list[Any], list[Any]]:
        select = ("SELECT video_id, status, attempt, progress, failure_reason, video_url, duration_s, resolution,"
                  " format, updated_at, xmin::text AS version FROM video_assets")
        await write_rows(pool, rows[:3])
        failed = await pool.fetch(select)
        await write_rows(pool, rows[3:])
        first = await pool.fetch(select)
        await write_rows(pool, rows)  # replayed
        await write_rows(pool, rows[::-1][1:])  # every older record, newest first
        await write_rows(pool, [rows[4], rows[2]])
        return failed, first, await pool.fetch(select)

    failed, first, last = run(pg_dsn, body)
    assert [(r["status"], r["attempt"], r["failure_reason"], r["video_url"]) for r in failed] == [
        ("FAILED", 1, "ffmpeg exited 1", None)]
    assert [(r["video_id"], r["status"], r["attempt"], r["progress"], r["video_url"], r["duration_s"],
             r["resolution"], r["format"]) for r in last] == [
        ("v-1", "COMPLETED", 2, 100.0, "https://cdn.example.com/v-1.mp4", 15.0, "1080x1920", "mp4")]
    assert last[0]["failure_reason"] is None and last[0]["updated_at"] == AT + timedelta(seconds=4)
    assert last == first  # the same row version: replays and older records wrote nothing


def test_video_assets_follow_the_job_whatever_the_clocks_of_its_records(pg_dsn: str) -> None:
    """A job's status records carry the times of whoever produced the event: the request's
    ``requested_at`` (the web view, an upstream producer, a supplier snapshot's capture time for an
    automatic video), the renderer's clock, the worker's. Within an attempt the machine's order is
    QUEUED, PROCESSING (progress up), then final. Before, the row took the record latest by time
    first, so a request stamped 30 s ahead of the renderer's clock kept the row QUEUED for good
    while the video was COMPLETED (and a cancel stamped behind a PROGRESS left it PROCESSING)."""
    request = VideoRequest(video_id="v-skew", store_id="st-1", requested_at=AT + timedelta(seconds=30))
    result = VideoResult(video_url="https://cdn.example.com/v.mp4", thumbnail_url="https://cdn.example.com/v.jpg",
                         duration=5.0, width=1080, height=1080)
    events: list[Any] = [
        request,
        RenderStarted(event_id="s1", video_id="v-skew", occurred_at=AT + timedelta(seconds=1), attempt=1),
        RenderProgress(event_id="p1", video_id="v-skew", occurred_at=AT + timedelta(seconds=2), attempt=1,
                       progress=50),
        RenderCompleted(event_id="c1", video_id="v-skew", occurred_at=AT + timedelta(seconds=3), attempt=1,
                        result=result),
    ]
    records = status_records(events)
    assert [r.status.value for r in records] == ["QUEUED", "PROCESSING", "PROCESSING", "COMPLETED"]
    rows = [rows_of(topics.VIDEO_STATUS, encode(r))[0] for r in records]

    async def body(pool: Any) -> list[Any]:
        seen = []
        for row in rows:
            await write_rows(pool, [row])
            seen.append(await pool.fetchrow("SELECT status, progress, video_url FROM video_assets"))
        await write_rows(pool, rows[::-1])  # replayed newest first: nothing older wins
        seen.append(await pool.fetchrow("SELECT status, progress, video_url FROM video_assets"))
        return seen

    seen = run(pg_dsn, body)
    assert [(r["status"], r["progress"]) for r in seen] == [
        ("QUEUED", 0.0), ("PROCESSING", 0.0), ("PROCESSING", 50.0), ("COMPLETED", 100.0), ("COMPLETED", 100.0)]
    assert seen[-1]["video_url"] == "https://cdn.example.com/v.mp4"


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
        # Runs and videos too, each record twice (a producer's retry), the runs' in reverse order.
        runs = [(b"st-1", encode(r)) for r in run_records()[::-1] * 2]
        videos = [(b"v-1", encode(r)) for r in video_records() * 2]
        assert asyncio.run(produce_raw(broker, topics.SYNC_RUNS, runs)) == len(runs)
        assert asyncio.run(produce_raw(broker, topics.VIDEO_STATUS, videos)) == len(videos)
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
        wait_for(lambda: count("SELECT count(*) FROM video_assets") == 1, timeout=60, what="video")
        assert count("SELECT count(*) FROM video_assets WHERE status = 'COMPLETED' AND attempt = 2") == 1
        wait_for(lambda: count("SELECT count(*) FROM sync_logs") == 1, timeout=60, what="sync run")
        assert count("SELECT count(*) FROM sync_logs WHERE status = 'COMPLETED' AND processed = 5") == 1
        assert "failed" in recorder.log_tail(200)  # it did meet the stopped database, and went on
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_the_redaction_of_an_archived_order_reaches_its_row(pg_dsn: str) -> None:
    """An archived order's row keeps the whole order, personal data included, until a redaction:
    the marker that says redacted leaves the row as the machine's own redaction would."""
    from datetime import timedelta as td

    from agents.orders import record_body
    from models.archive import order_marker, redact_archived_order
    from models.fulfillment import MachineConfig, decide
    from models.orders import OrderEventType
    from streams import tables
    from streams.outbox import OutboxTable
    from tests.unit.order_events import ORDER, delivered_order, event

    state = delivered_order()
    changelog = f"ops-{tables.ORDERS}-changelog"
    body = orjson.loads(OutboxTable.encode(record_body(state, None), []))  # as the table holds it
    redact = event(OrderEventType.REDACT_REQUESTED, "redact", 99, reason="customers/redact")
    live = decide(state, redact, MachineConfig()).state  # the machine's redaction, for comparison
    later = datetime.now(timezone.utc) + td(days=365)
    marker = order_marker(body, later)
    redaction = redact_archived_order(ORDER, marker, redact)
    assert redaction is not None

    async def body_(pool: Any) -> Any:
        await write_rows(pool, rows_of(changelog, OutboxTable.encode(body, [])))
        await write_rows(pool, rows_of(changelog, OutboxTable.encode(marker, [])))  # archived: the row stays
        async with pool.acquire() as conn:
            kept = orjson.loads(await conn.fetchval("SELECT state FROM orders WHERE order_id = $1", ORDER))
        for _ in range(2):  # replayed: the same
            await write_rows(pool, rows_of(changelog, OutboxTable.encode(redaction[0], [])))
        async with pool.acquire() as conn:
            row = await conn.fetchrow("SELECT redacted, state FROM orders WHERE order_id = $1", ORDER)
        return kept, row["redacted"], orjson.loads(row["state"])

    kept, redacted, after = run(pg_dsn, body_)
    assert kept["customer"]["email"] == "ada@example.com" and kept["shipping_address"]["line1"] == "1 Main St"
    view = live.model_dump(mode="json", by_alias=True, exclude={"seen", "parked"})
    assert redacted is True
    for field in ("customer", "shipping_address", "redacted"):
        assert after[field] == view[field], field
    assert "ada" not in orjson.dumps(after).decode().lower()
    assert {k: v for k, v in after.items() if k not in ("customer", "shipping_address", "redacted")} == \
        {k: v for k, v in kept.items() if k not in ("customer", "shipping_address", "redacted")}


def test_a_record_the_database_refuses_goes_to_deadletter_and_the_rest_is_recorded(  # type: ignore[no-untyped-def]
    broker, spawn, pg_dsn: str
) -> None:
    """A record valid for its model but refused by PostgreSQL as data (a stock beyond the
    column's integer, a NUL character in a text) is a poison record: the recorder must
    dead-letter it with the reason and record the rest, not retry it forever (nor crash,
    as COPY's client-side overflow did) and stall every recorded topic behind it."""
    recorder: Worker = spawn("r1", command="recorder", OPS_DATABASE_URL=pg_dsn, OPS_RECORDER_METRICS_PORT="0")
    at = datetime.now(timezone.utc) - timedelta(minutes=1)
    good = [change("s-1", n, 5, at) for n in range(60)]  # enough to go by COPY if they come in one batch
    huge = change("s-1", 99, 3_000_000_000, at)  # a supplier's "unlimited" stock: valid, beyond PostgreSQL's integer
    nul = encode(alert(AlertStatus.ACTIVE, 0).model_copy(update={"alert_id": "a-nul", "message": "bad\x00byte"}))
    records = [(b"s-1", good[0]), (b"s-1", huge)] + [(b"s-1", g) for g in good[1:]]
    assert asyncio.run(produce_raw(broker, topics.INVENTORY_CHANGES, records)) == 61
    assert asyncio.run(produce_raw(broker, topics.ALERTS, [(b"s-1", nul), (b"s-1", encode(alert(AlertStatus.ACTIVE, 0)))])) == 2

    def count(sql: str) -> int:
        return run(pg_dsn, lambda pool: pool.fetchval(sql))

    try:
        wait_for(lambda: count("SELECT count(*) FROM products WHERE store_id = 's-1'") == 60, timeout=60,
                 what="the good products")
        wait_for(lambda: count("SELECT count(*) FROM alerts") == 1, timeout=60, what="the good alert")
    except TimeoutError:
        raise AssertionError(recorder.log_tail(30)) from None

    def letters() -> list[dict[str, Any]]:
        return [d for d in read_json(broker, topics.DEADLETTER) if d["topic"] in (topics.INVENTORY_CHANGES, topics.ALERTS)]

    wait_for(lambda: len(letters()) == 2, timeout=60, what="both dead letters")
    by_topic = {d["topic"]: d for d in letters()}
    assert sorted(by_topic) == sorted([topics.INVENTORY_CHANGES, topics.ALERTS])
    assert all(d["reason"] == "SCHEMA_VIOLATION" for d in by_topic.values())
    assert "range" in by_topic[topics.INVENTORY_CHANGES]["detail"]
    assert "0x00" in by_topic[topics.ALERTS]["detail"]
    assert base64.b64decode(by_topic[topics.INVENTORY_CHANGES]["value"]) == huge
    assert count("SELECT count(*) FROM products WHERE product_id = 'p-99'") == 0
