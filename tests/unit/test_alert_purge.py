"""Closed alerts leave the alerts table after the keep period (agents/inventory.py ``purge_alerts``,
``models.alerts.purgeable``); open ones never do, nor do other workers' partitions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from faust.types import TP

from agents.inventory import InventoryProcessor, alert_key
from models import alerts as alert_rules
from models.events import AlertStatus, AlertType, SupplierSnapshot, default_settings
from models.product import product_key
from streams.codecs import encode
from tests.unit.test_inventory_resend import processor

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
KEEP = timedelta(days=30)
PARTITIONS = {"mine": 3, "theirs": 5}


class ValueOutputs:
    """Outputs that keep each record's value (None: a tombstone)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, int | None, str, bytes | None]] = []

    def add(self, topic: str, partition: int | None, key: bytes, value: bytes | None) -> None:
        self.records.append((topic, partition, key.decode(), value))


def owned_processor() -> tuple[InventoryProcessor, ValueOutputs]:
    proc, _ = processor()
    outputs = ValueOutputs()
    proc.outputs = outputs  # type: ignore[assignment]
    proc.owned = {TP(topic="supplier.snapshots", partition=3), TP(topic="store.settings", partition=3)}
    return proc, outputs


def put(proc: InventoryProcessor, store: str, status: AlertStatus, updated_days_ago: float) -> str:
    at = NOW - timedelta(days=updated_days_ago)
    alert = alert_rules.open_alert(
        subject_key=product_key(store, f"p-{status.value}-{updated_days_ago}", None), store_id=store,
        product_id="p", variant_id=None, alert_type=AlertType.STOCK_LOW, title="t", message="m", metadata={},
        at=at - timedelta(days=1), trigger_micros=int(at.timestamp() * 1e6),
    )
    if status is not AlertStatus.ACTIVE:
        moved = alert_rules.transition(alert, status, at)
        assert moved is not None
        alert = moved
    key = alert_key(store, alert.alert_id)
    proc.alerts.data[key] = encode(alert)
    return key


def test_closed_alerts_past_the_keep_period_go_with_a_tombstone() -> None:
    proc, outputs = owned_processor()
    gone = [put(proc, "mine", AlertStatus.RESOLVED, 31), put(proc, "mine", AlertStatus.DISMISSED, 400)]
    kept = [
        put(proc, "mine", AlertStatus.ACTIVE, 400),  # open, however old
        put(proc, "mine", AlertStatus.ACKNOWLEDGED, 400),
        put(proc, "mine", AlertStatus.RESOLVED, 29),  # closed, but recently
        put(proc, "theirs", AlertStatus.RESOLVED, 400),  # another worker's partition: its owner sweeps it
    ]
    removed = proc.purge_alerts(list(proc.alerts.data), NOW - KEEP, PARTITIONS.__getitem__)
    assert removed == 2
    assert sorted(proc.alerts.data) == sorted(kept)
    assert sorted(outputs.records) == sorted(("alerts-changelog", 3, key, None) for key in gone)
    assert set(gone) <= proc._alerts_written  # the next gauge refresh reads them again
    # A second sweep finds nothing more to do.
    assert proc.purge_alerts(list(proc.alerts.data), NOW - KEEP, PARTITIONS.__getitem__) == 0
    assert len(outputs.records) == 2


def test_keys_gone_meanwhile_and_a_partition_let_go_are_left_alone() -> None:
    proc, outputs = owned_processor()
    old = put(proc, "mine", AlertStatus.RESOLVED, 90)
    assert proc.purge_alerts(["mine|no-such-alert"], NOW - KEEP, PARTITIONS.__getitem__) == 0
    proc.on_letting_go({TP(topic="supplier.snapshots", partition=3), TP(topic="store.settings", partition=3)})
    assert proc.purge_alerts([old], NOW - KEEP, PARTITIONS.__getitem__) == 0
    assert old in proc.alerts.data and outputs.records == []


def test_an_alert_a_product_still_names_is_open_and_stays() -> None:
    """Through the agent's own transitions: out of stock opens STOCK_OUT, the restock resolves it."""
    proc, outputs = owned_processor()
    proc._tp = TP(topic="supplier.snapshots", partition=3)
    settings = default_settings("mine")

    def snap(stock: int, days_ago: float) -> Any:
        return SupplierSnapshot.model_validate({
            "store_id": "mine", "product_id": "lamp", "provider": "SPOCKET", "source_id": "s1", "stock": stock,
            "cost_price": "5.00", "currency": "USD", "captured_at": NOW - timedelta(days=days_ago),
        })

    proc.apply_one(snap(10, 100), settings)
    proc.apply_one(snap(0, 99), settings)  # STOCK_OUT opens
    out = [k for k, v in proc.alerts.data.items() if b'"STOCK_OUT"' in v]
    assert len(out) == 1
    assert proc.purge_alerts(list(proc.alerts.data), NOW - KEEP, PARTITIONS.__getitem__) == 0  # ACTIVE: stays
    proc.apply_one(snap(4, 98), settings)  # restocked: STOCK_OUT resolved, STOCK_RESTORED opens
    # A closure is stamped when the agent makes it (now), not at the snapshot's time.
    assert proc.purge_alerts(list(proc.alerts.data), NOW - KEEP, PARTITIONS.__getitem__) == 0
    later = datetime.now(timezone.utc) + timedelta(seconds=1)  # as if the keep period had passed since
    removed = proc.purge_alerts(list(proc.alerts.data), later, PARTITIONS.__getitem__)
    assert removed == 1 and out[0] not in proc.alerts.data
    left = [v for v in proc.alerts.data.values()]
    assert len(left) == 1 and b'"STOCK_RESTORED"' in left[0] and b'"ACTIVE"' in left[0]


def test_purgeable_reads_status_and_time() -> None:
    cutoff = NOW - KEEP
    old, new = (NOW - timedelta(days=31)).isoformat(), (NOW - timedelta(days=1)).isoformat()
    assert alert_rules.purgeable({"status": "RESOLVED", "updated_at": old}, cutoff)
    assert alert_rules.purgeable({"status": "DISMISSED", "updated_at": old}, cutoff)
    assert not alert_rules.purgeable({"status": "RESOLVED", "updated_at": new}, cutoff)
    assert not alert_rules.purgeable({"status": "ACTIVE", "updated_at": old}, cutoff)
    assert not alert_rules.purgeable({"status": "ACKNOWLEDGED", "updated_at": old}, cutoff)
