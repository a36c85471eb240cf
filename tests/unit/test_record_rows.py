"""What each recorded topic's record becomes in PostgreSQL (connectors/postgres/record.py, pure part)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest

from connectors.postgres.record import STATEMENTS, Unrecordable, changelog_topic, rows_of
from models.events import Alert, AlertStatus, AlertType, InventoryChange, Severity
from models.fulfillment import MachineConfig, OrderState, decide
from models.sync import SyncRun
from models.video import RenderCompleted, RenderFailed, VideoRequest, VideoResult
from models.video import decide as decide_video
from models.webhooks import InboundWebhook, WebhookSource
from streams import topics
from streams.codecs import encode
from tests.unit.order_events import created, paid

AT = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
ORDERS_CHANGELOG = changelog_topic("ops-engine", "orders")


def table_of(statement: str) -> str:
    return STATEMENTS[statement]


def test_a_change_is_the_product_s_new_state() -> None:
    change = InventoryChange.model_validate({
        "change_id": "c-1", "store_id": "s-1", "product_id": "p-1", "provider": "CJ_DROPSHIPPING",
        "source_id": "P-1", "reason": "SNAPSHOT", "changed": ["STOCK"], "captured_at": AT, "sync_run_id": "run-9",
        "after": {"status": "OUT_OF_STOCK", "available": True, "stock": 0, "cost_price": "10.50",
                  "shipping_cost": "2", "currency": "USD", "selling_price": "25.99"},
    })
    ((statement, args),) = rows_of(topics.INVENTORY_CHANGES, encode(change))
    assert table_of(statement) == "products"
    assert args[:8] == ("s-1", "p-1", "", "CJ_DROPSHIPPING", "P-1", "OUT_OF_STOCK", True, 0)
    assert args[8] == Decimal("10.50") and isinstance(args[8], Decimal) and args[11] == Decimal("25.99")
    assert args[13:] == (AT, "c-1", "run-9")


def test_an_alert_keeps_its_metadata_as_json() -> None:
    alert = Alert(alert_id="a-1", store_id="s-1", type=AlertType.STOCK_OUT, severity=Severity.HIGH,
                  status=AlertStatus.ACTIVE, title="t", message="m", metadata={"stock": "0"},
                  created_at=AT, updated_at=AT)
    ((statement, args),) = rows_of(topics.ALERTS, encode(alert))
    assert table_of(statement) == "alerts" and args[0] == "a-1" and orjson.loads(args[9]) == {"stock": "0"}


def test_an_order_record_is_its_state_and_each_line_of_its_history() -> None:
    state: OrderState | None = None
    for event in (created(), paid()):
        state = decide(state, event, MachineConfig()).state
    assert state is not None
    record = orjson.dumps({"status": state.status.value, "state": orjson.loads(state.model_dump_json(by_alias=True)),
                           "outbox": [["orders.commands", "o-1", {"x": 1}]]})
    rows = rows_of(ORDERS_CHANGELOG, record)
    assert [table_of(s) for s, _ in rows] == ["orders"] + ["order_history"] * len(state.history)
    order = rows[0][1]
    assert order[:5] == (state.order_id, state.store_id, state.status.value, state.order_number, True)
    view = orjson.loads(order[10])
    assert "seen" not in view and "parked" not in view and view["order_id"] == state.order_id
    assert [args[1] for _, args in rows[1:]] == list(range(len(state.history)))
    # Events that came before their order: nothing to record yet.
    early = decide(None, paid(), MachineConfig()).state
    assert rows_of(ORDERS_CHANGELOG, orjson.dumps({"state": orjson.loads(early.model_dump_json(by_alias=True))})) == []


def test_a_webhook_is_recorded_by_its_ids_never_its_body() -> None:
    hook = InboundWebhook(source=WebhookSource.SHOPIFY, topic="orders/create", shop_domain="x.myshopify.com",
                          delivery_id="d-1", dedup_key="shopify:x.myshopify.com:d-1", headers={},
                          body='{"email": "ada@example.com"}', received_at=AT)
    ((statement, args),) = rows_of(topics.WEBHOOKS_INBOUND, encode(hook))
    assert table_of(statement) == "processed_webhook_events"
    assert args == ("shopify:x.myshopify.com:d-1", "SHOPIFY", None, "orders/create", "x.myshopify.com", "d-1", AT)
    assert "ada@example.com" not in repr(args)


def test_tombstones_are_nothing_and_unreadable_records_say_why() -> None:
    assert rows_of(topics.ALERTS, None) == []
    with pytest.raises(Unrecordable, match="alert_id"):
        rows_of(topics.ALERTS, b'{"store_id": "s"}')
    with pytest.raises(Unrecordable, match="not JSON"):
        rows_of(ORDERS_CHANGELOG, b"{broken")
    with pytest.raises(Unrecordable, match="without a state"):
        rows_of(ORDERS_CHANGELOG, b"[]")
    with pytest.raises(Unrecordable, match="not recorded"):
        rows_of("elsewhere", b"{}")


def sync_run(**kw: object) -> SyncRun:
    body: dict[str, object] = {
        "run_id": "r-1", "request_id": "st-1:MANUAL:1", "store_id": "st-1", "tier": "MANUAL", "status": "RUNNING",
        "started_at": AT, "total": 250, "pages": 3, "deadline_at": AT + timedelta(minutes=30),
    }
    body.update(kw)
    return SyncRun.model_validate(body)


def test_a_sync_run_record_is_its_log_row() -> None:
    ended = sync_run(status="FAILED", finished_at=AT + timedelta(seconds=12), done=250, failed=100, changed=7,
                     pages_done=(0, 1, 2), error="page 1: CJ_DROPSHIPPING: SupplierUnavailable: 503")
    ((statement, args),) = rows_of(topics.SYNC_RUNS, encode(ended))
    assert table_of(statement) == "sync_logs"
    assert args == ("r-1", "st-1:MANUAL:1", "st-1", "MANUAL", "FAILED", AT, AT + timedelta(seconds=12), 250, 250, 7,
                    100, 3, 3, "page 1: CJ_DROPSHIPPING: SupplierUnavailable: 503")
    with pytest.raises(Unrecordable, match="status"):
        rows_of(topics.SYNC_RUNS, orjson.dumps({**orjson.loads(encode(ended)), "status": "LOST"}))


def test_a_video_status_record_is_its_asset_row() -> None:
    job = decide_video(None, VideoRequest(video_id="v-1", store_id="st-1", product_id="p-1", requested_at=AT)).job
    assert job is not None
    result = VideoResult(video_url="https://cdn/v-1.mp4", thumbnail_url="https://cdn/v-1.jpg", duration=15.0,
                         width=1080, height=1920)
    done = decide_video(job, RenderCompleted(event_id="e-1", video_id="v-1", occurred_at=AT + timedelta(seconds=9),
                                             attempt=1, result=result))
    ((statement, args),) = rows_of(topics.VIDEO_STATUS, encode(done.status[0]))
    assert table_of(statement) == "video_assets"
    assert args == ("v-1", "st-1", "p-1", "COMPLETED", 1, 2, 100.0, False, None, "https://cdn/v-1.mp4",
                    "https://cdn/v-1.jpg", 15.0, 1080, 1920, "mp4", False, "v-1:1:COMPLETED", AT + timedelta(seconds=9))
    failed = decide_video(job, RenderFailed(event_id="e-2", video_id="v-1", occurred_at=AT, attempt=1,
                                            reason="ffmpeg exited 1"))
    first, queued = (rows_of(topics.VIDEO_STATUS, encode(s))[0][1] for s in failed.status)
    assert first[3:9] == ("FAILED", 1, 2, 0.0, True, "ffmpeg exited 1")  # retrying: attempt 2 is queued
    assert queued[3:9] == ("QUEUED", 2, 0, 0.0, False, "ffmpeg exited 1") and queued[9] is None
