"""The inventory agent's resend of recovered outboxes (agents/inventory.py).

A recovered product record that still carries its outbox means a crash came
between the transition and its commit. The outputs are sent again, and only
once they are acknowledged does the record lose its outbox in the changelog:
were the plain record durable first, a crash in between would lose the
alert for good (the product would name an alert the alerts table never has).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import orjson

from agents.inventory import InventoryProcessor, alert_key
from models.events import SupplierSnapshot, default_settings
from models.inventory import apply_snapshot
from models.product import encode_state, has_outbox, product_key, with_outbox
from streams.codecs import encode


class FakeTable:
    def __init__(self, name: str) -> None:
        self.name = name
        self.data: dict[str, Any] = {}
        self.changelog_topic = SimpleNamespace(get_topic_name=lambda: f"{name}-changelog")


class RecordingOutputs:
    """Outputs that log what is added and when a send is acknowledged."""

    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def add(self, topic: str, partition: int | None, key: bytes, value: bytes | None) -> None:
        self.events.append(("add", topic, key.decode()))

    async def send(self, wait: bool = False) -> None:
        self.events.append(("acked",) if wait else ("handed",))


def processor() -> tuple[InventoryProcessor, RecordingOutputs]:
    outputs = RecordingOutputs()
    tables = SimpleNamespace(
        products=FakeTable("products"), alerts=FakeTable("alerts"), settings=FakeTable("settings"),
        sync_runs=FakeTable("sync-runs"),
    )
    engine = SimpleNamespace(
        tables=tables, outputs=outputs,
        settings=SimpleNamespace(sync_run_timeout=1800.0, sync_page_size=200),
    )
    return InventoryProcessor(engine), outputs  # type: ignore[arg-type]


def recovered_record(store: str = "s1") -> tuple[str, bytes, str]:
    """A product's record as a crash leaves it: the stock-out transition with its outbox."""

    def snap(stock: int, minute: int) -> SupplierSnapshot:
        return SupplierSnapshot(
            store_id=store, product_id="p1", provider="ALIEXPRESS", source_id="AE1", available=True,
            stock=stock, cost_price=Decimal("5.00"), currency="USD",
            captured_at=datetime(2026, 11, 1, 0, minute, tzinfo=timezone.utc),
        )

    first = apply_snapshot(None, snap(10, 0), default_settings(store))
    out = apply_snapshot(first.state, snap(0, 1), default_settings(store))
    assert out.state is not None and out.opened and out.change is not None, "stock 10 -> 0 opens STOCK_OUT"
    key = product_key(store, "p1", None)
    outbox = [("c", encode(out.change))] + [("a", encode(a)) for a in out.opened]
    return key, with_outbox(encode_state(out.state), outbox), out.opened[0].alert_id


def test_the_plain_record_is_written_only_after_the_outputs_sent_again_are_acknowledged() -> None:
    proc, outputs = processor()
    key, raw, alert_id = recovered_record()
    proc.products.data[key] = raw
    proc.on_changelog_record(key, 3, raw)

    assert asyncio.run(proc.resend_recovered({3})) == 1

    events = outputs.events
    acked = events.index(("acked",))
    alert_write = events.index(("add", "alerts-changelog", alert_key("s1", alert_id)))
    product_writes = [i for i, e in enumerate(events) if e == ("add", "products-changelog", key)]
    assert alert_write < acked
    assert product_writes and all(i > acked for i in product_writes)
    assert not has_outbox(proc.products.data[key])
    assert orjson.loads(proc.alerts.data[alert_key("s1", alert_id)])["alert_id"] == alert_id
    assert proc.recovered_outboxes == {}


def test_records_of_partitions_not_owned_wait_for_their_owner() -> None:
    proc, outputs = processor()
    key, raw, _ = recovered_record()
    proc.products.data[key] = raw
    proc.on_changelog_record(key, 3, raw)

    assert asyncio.run(proc.resend_recovered({0, 1})) == 0
    assert outputs.events == []
    assert key in proc.recovered_outboxes
    assert proc.products.data[key] is raw
