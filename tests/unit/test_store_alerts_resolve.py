"""A store's open alerts of one type resolved by command (agents/inventory.py
``on_store_alerts_resolve``): the storefront process sends it once a set-aside
store's shop answers again and its dead letters are replayed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import orjson
from faust.types import TP

from agents.inventory import alert_key
from models import alerts as alert_rules
from models.events import AlertStatus, AlertType, StoreAlertsResolve
from models.storefront import storefront_alert
from streams import topics
from streams.codecs import encode
from tests.unit.test_alert_purge import owned_processor

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def put(proc: Any, store: str, kind: AlertType, day: datetime, status: AlertStatus = AlertStatus.ACTIVE) -> str:
    alert = storefront_alert(kind, store, "SHOPIFY", f"{store}.myshopify.com", "503 from the shop", day)
    if status is not AlertStatus.ACTIVE:
        moved = alert_rules.transition(alert, status, day + timedelta(hours=1))
        assert moved is not None
        alert = moved
    proc.alerts.data[alert_key(store, alert.alert_id)] = encode(alert)
    return alert.alert_id


def event(value: bytes, key: bytes = b"s1", offset: int = 7) -> Any:
    tp = TP(topic=topics.INVENTORY_COMMANDS, partition=3)
    return SimpleNamespace(message=SimpleNamespace(topic=topics.INVENTORY_COMMANDS, partition=3, offset=offset, tp=tp,
                                                   key=key, value=value, headers=[]))


def command(store: str = "s1", at: datetime = NOW) -> bytes:
    return encode(StoreAlertsResolve(command_id=f"storefront-back:{store}:{at.isoformat()}", store_id=store,
                                     alert_type=AlertType.STOREFRONT_UNAVAILABLE, requested_at=at))


def status(proc: Any, store: str, alert_id: str) -> str:
    return orjson.loads(proc.alerts.data[alert_key(store, alert_id)])["status"]


def test_the_store_s_open_alerts_of_the_type_are_resolved_and_published() -> None:
    proc, outputs = owned_processor()
    two_days_ago = put(proc, "s1", AlertType.STOREFRONT_UNAVAILABLE, NOW - timedelta(days=2))
    acknowledged = put(proc, "s1", AlertType.STOREFRONT_UNAVAILABLE, NOW - timedelta(days=1), AlertStatus.ACKNOWLEDGED)
    refused = put(proc, "s1", AlertType.STOREFRONT_REFUSED, NOW - timedelta(days=1))  # another type
    other_store = put(proc, "s10", AlertType.STOREFRONT_UNAVAILABLE, NOW - timedelta(days=1))  # "s1" is its prefix
    later = put(proc, "s1", AlertType.STOREFRONT_UNAVAILABLE, NOW + timedelta(days=1))  # a new outage

    proc.handle(event(command()))

    assert status(proc, "s1", two_days_ago) == status(proc, "s1", acknowledged) == "RESOLVED"
    assert status(proc, "s1", refused) == status(proc, "s10", other_store) == status(proc, "s1", later) == "ACTIVE"
    published = [orjson.loads(value) for topic, _, key, value in outputs.records if topic == topics.ALERTS]
    assert sorted(a["alert_id"] for a in published) == sorted([two_days_ago, acknowledged])
    assert all(a["status"] == "RESOLVED" and a["resolved_at"] == "2026-11-24T12:00:00Z" for a in published)
    changelog = {key for topic, _, key, value in outputs.records if topic != topics.ALERTS}
    assert changelog == {alert_key("s1", two_days_ago), alert_key("s1", acknowledged)}

    # The command again (at-least-once): nothing more to resolve, nothing sent.
    sent = len(outputs.records)
    proc.handle(event(command(), offset=8))
    assert len(outputs.records) == sent


def test_a_command_keyed_by_another_store_goes_to_deadletter() -> None:
    proc, outputs = owned_processor()
    alert_id = put(proc, "s1", AlertType.STOREFRONT_UNAVAILABLE, NOW - timedelta(days=1))
    letters: list[bytes] = []
    proc.engine.deadletter = SimpleNamespace(send_soon=lambda key, value: letters.append(value))
    proc.handle(event(command(), key=b"s2"))
    assert status(proc, "s1", alert_id) == "ACTIVE"
    assert [orjson.loads(v)["reason"] for v in letters] == ["KEY_MISMATCH"]


def test_an_outage_s_alert_is_dated_from_when_the_store_was_set_aside_on_its_first_day() -> None:
    """A second outage on a day whose first one was resolved gets an alert of its own:
    the day's alert, resolved, would be newer than the same alert sent again."""
    morning = datetime(2026, 11, 24, 9, tzinfo=timezone.utc)
    afternoon = datetime(2026, 11, 24, 15, tzinfo=timezone.utc)

    def unavailable(now: datetime, since: datetime | None) -> Any:
        return storefront_alert(AlertType.STOREFRONT_UNAVAILABLE, "s1", "SHOPIFY", "s1.myshopify.com", "503", now,
                                since=since)

    first = unavailable(morning + timedelta(minutes=5), morning)
    again = unavailable(morning + timedelta(hours=2), morning)  # the same outage, sent again
    second = unavailable(afternoon, afternoon)
    next_day = unavailable(datetime(2026, 11, 25, 3, tzinfo=timezone.utc), morning)
    assert first == again and first.created_at == morning
    assert second.alert_id != first.alert_id and second.created_at == afternoon
    assert next_day.created_at == datetime(2026, 11, 25, tzinfo=timezone.utc)  # one a day while it lasts
    assert len({first.alert_id, second.alert_id, next_day.alert_id}) == 3

    # Resolved at noon, the first outage's alert goes; the second's (created after) stays.
    proc, _ = owned_processor()
    for alert in (first, second):
        proc.alerts.data[alert_key("s1", alert.alert_id)] = encode(alert)
    proc.handle(event(command(at=datetime(2026, 11, 24, 12, tzinfo=timezone.utc))))
    assert status(proc, "s1", first.alert_id) == "RESOLVED"
    assert status(proc, "s1", second.alert_id) == "ACTIVE"
