"""The inventory agent's alert gauges (``InventoryProcessor.refresh_gauges``).

Each alert value is read once, then remembered by identity, and the counts are
kept while nothing changed: the gauge must still follow every change of an
alert's status, alerts that leave the table, and partitions that are not this
worker's.
"""

from __future__ import annotations

from datetime import datetime, timezone

from agents.inventory import alert_key
from connectors import metrics
from models import alerts as alert_rules
from models.events import AlertStatus, AlertType
from streams.codecs import encode
from tests.unit.test_inventory_resend import processor

AT = datetime(2026, 11, 1, tzinfo=timezone.utc)
PARTITION = {"mine": 0, "other": 1}


def active(alert_type: str) -> float:
    return metrics.ALERTS_ACTIVE.labels(alert_type)._value.get()


def put(proc, store: str, product: str, alert_type: AlertType, status: AlertStatus = AlertStatus.ACTIVE):
    alert = alert_rules.open_alert(
        subject_key=f"{store}|{product}", store_id=store, product_id=product, variant_id=None,
        alert_type=alert_type, title="t", message="m", metadata={}, at=AT, trigger_micros=1,
    )
    if status is not AlertStatus.ACTIVE:
        alert = alert_rules.transition(alert, status, AT)
    key = alert_key(store, alert.alert_id)
    proc.alerts.data[key] = encode(alert)
    return key, alert


def refresh(proc) -> None:
    proc.refresh_gauges({PARTITION["mine"]}, PARTITION.__getitem__)


def test_active_alerts_of_owned_partitions_are_counted_by_type() -> None:
    proc, _ = processor()
    put(proc, "mine", "p1", AlertType.STOCK_OUT)
    put(proc, "mine", "p2", AlertType.STOCK_OUT)
    put(proc, "mine", "p3", AlertType.PRICE_INCREASE, AlertStatus.RESOLVED)
    put(proc, "other", "p1", AlertType.STOCK_OUT)  # a standby's: another worker counts it
    refresh(proc)
    assert active("STOCK_OUT") == 2
    assert active("PRICE_INCREASE") == 0


def test_a_changed_value_is_read_again_and_a_removed_one_forgotten() -> None:
    proc, _ = processor()
    key, alert = put(proc, "mine", "p1", AlertType.STOCK_LOW)
    gone, _ = put(proc, "mine", "p2", AlertType.STOCK_LOW)
    refresh(proc)
    assert active("STOCK_LOW") == 2

    acknowledged = alert_rules.transition(alert, AlertStatus.ACKNOWLEDGED, AT)
    proc.alerts.data[key] = encode(acknowledged)
    del proc.alerts.data[gone]
    refresh(proc)
    assert active("STOCK_LOW") == 0
    assert set(proc._alert_gauge) == {key}

    proc.alerts.data[key] = encode(alert)  # written behind the agent's back (recovery): same size
    refresh(proc)
    assert active("STOCK_LOW") == 0, "counted again only when told"
    proc.forget_alert_counts()  # what the rebalance and recovery hooks do
    refresh(proc)
    assert active("STOCK_LOW") == 1


def test_the_agents_own_alert_writes_are_counted_at_the_next_refresh() -> None:
    proc, _ = processor()
    key, alert = put(proc, "mine", "p1", AlertType.STOCK_OUT)
    refresh(proc)
    assert active("STOCK_OUT") == 1
    resolved = alert_rules.transition(alert, AlertStatus.RESOLVED, AT)
    proc.send_outbox("mine", PARTITION["mine"], [("a", encode(resolved))])  # the table's size stays
    refresh(proc)
    assert active("STOCK_OUT") == 0
