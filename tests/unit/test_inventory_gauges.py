"""The inventory agent's alert gauges (``InventoryProcessor.refresh_gauges``).

Each alert value is read once, then remembered by identity, and the counts are
kept and moved by the agent's own writes one by one: the gauge must still follow every change of an
alert's status, alerts that leave the table, and partitions that are not this
worker's.
"""

from __future__ import annotations

import random
from datetime import datetime, timezone

from faust.types import TP

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


def test_counts_moved_write_by_write_equal_a_full_count() -> None:
    """Between full counts the gauges follow the agent's writes one by one: after any
    sequence of opens, moves and purges they hold what counting every alert gives."""
    rng = random.Random(7)
    proc, _ = processor()
    proc.owned = {TP("supplier.snapshots", PARTITION["mine"])}  # purge_alerts sweeps owned partitions only
    refresh(proc)
    opened: list = []
    types = [AlertType.STOCK_OUT, AlertType.STOCK_LOW, AlertType.PRICE_INCREASE]
    for step in range(300):
        roll = rng.random()
        store = rng.choice(["mine", "other"])
        if roll < 0.45 or not opened:
            alert = alert_rules.open_alert(
                subject_key=f"{store}|p{step}", store_id=store, product_id=f"p{step}", variant_id=None,
                alert_type=rng.choice(types), title="t", message="m", metadata={}, at=AT, trigger_micros=step,
            )
            opened.append(alert)
            proc.send_outbox(store, PARTITION[store], [("a", encode(alert))])
        elif roll < 0.85:
            index = rng.randrange(len(opened))
            alert = opened[index]
            targets = sorted(alert_rules._TRANSITIONS[alert.status], key=lambda s: s.value)
            if targets:
                moved = alert_rules.transition(alert, rng.choice(targets), AT)
                opened[index] = moved
                proc.send_outbox(moved.store_id, PARTITION[moved.store_id], [("a", encode(moved))])
        else:
            proc.purge_alerts(list(proc.alerts.data), AT.replace(year=2027), PARTITION.__getitem__)
        if rng.random() < 0.2:
            refresh(proc)
            got = {t.value: active(t.value) for t in types}
            proc.forget_alert_counts()
            refresh(proc)
            assert got == {t.value: active(t.value) for t in types}, f"step {step}"
    assert any(active(t.value) for t in types), "the sequence left some alerts open"
