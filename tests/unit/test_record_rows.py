"""What each recorded topic's record becomes in PostgreSQL (connectors/postgres/record.py, pure part)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import orjson
import pytest

from connectors.postgres.record import STATEMENTS, Unrecordable, changelog_topic, rows_of
from models.events import Alert, AlertStatus, AlertType, InventoryChange, Severity
from models.fulfillment import MachineConfig, OrderState, decide
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
