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
from models import alerts as alert_rules
from models.events import Alert, AlertStatus, SupplierSnapshot, default_settings
from models.inventory import apply_snapshot
from faust.types import TP
from models.product import encode_state, has_outbox, product_key, split_outbox, with_outbox
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


# --------------------------------------------------------------------------- #
# a record replaces the key's older records: it carries their outputs along
# --------------------------------------------------------------------------- #



def snapshot(stock: int, minute: int, cost: str = "5.00", store: str = "s1") -> SupplierSnapshot:
    return SupplierSnapshot(
        store_id=store, product_id="p1", provider="ALIEXPRESS", source_id="AE1", available=True,
        stock=stock, cost_price=Decimal(cost), currency="USD",
        captured_at=datetime(2026, 11, 1, 0, minute, tzinfo=timezone.utc),
    )


class ValueOutputs(RecordingOutputs):
    """Also keeps the values written, per topic, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.values: list[tuple[str, str, bytes | None]] = []

    def add(self, topic: str, partition: int | None, key: bytes, value: bytes | None) -> None:
        super().add(topic, partition, key, value)
        self.values.append((topic, key.decode(), value))


def value_processor() -> tuple[InventoryProcessor, ValueOutputs, Any]:
    proc, _ = processor()
    outputs = ValueOutputs()
    proc.outputs = outputs  # type: ignore[assignment]
    tp = TP(topic="supplier.snapshots", partition=3)
    proc.owned = {tp}
    return proc, outputs, tp


def apply(proc: InventoryProcessor, tp: Any, offset: int, snap: SupplierSnapshot) -> None:
    proc._tp, proc._offset = tp, offset
    proc.apply_one(snap, default_settings(snap.store_id))


def product_records(outputs: ValueOutputs, key: str) -> list[bytes]:
    return [v for t, k, v in outputs.values if t == "products-changelog" and k == key and v is not None]


def outbox_alerts(raw: bytes) -> list[tuple[str, str]]:
    return [(a["alert_id"], a["status"]) for code, a in (orjson.loads(raw)[14] if has_outbox(raw) else []) if code == "a"]


def test_a_record_carries_the_outputs_of_the_older_records_it_replaces_until_they_are_committed() -> None:
    """Records of one flush reach their partitions in any order: a crash can keep the
    product's newer record and lose the alert its older record carried. Recovery sees
    the newest record only, so that record must carry the alert too."""
    proc, outputs, tp = value_processor()
    key = product_key("s1", "p1", None)
    apply(proc, tp, 10, snapshot(10, 0))  # NEW
    proc.on_committed({tp: 11})
    apply(proc, tp, 12, snapshot(0, 1))  # stock out: opens STOCK_OUT
    apply(proc, tp, 13, snapshot(0, 2, cost="5.10"))  # cost up a little: a change, no alert
    first, second = product_records(outputs, key)[-2:]
    (stock_out,) = outbox_alerts(first)
    assert outbox_alerts(second) == [stock_out]
    # Sent once all the same: the carried alert rides in the record only.
    assert [orjson.loads(v)["alert_id"] for t, _, v in outputs.values if t == "alerts"] == [stock_out[0]]

    # A crash now: a worker recovering only the newest record sends the alert again.
    heir, heir_outputs, _ = value_processor()
    heir.products.data[key] = second
    heir.on_changelog_record(key, 3, second)
    assert asyncio.run(heir.resend_recovered({3})) == 1
    assert [orjson.loads(v)["alert_id"] for t, _, v in heir_outputs.values if t == "alerts"] == [stock_out[0]]
    assert stock_out[0] in {k.split("|", 1)[1] for k in heir.alerts.data}

    # Once committed, the record is plain and the next record carries its own outputs only.
    proc.on_committed({tp: 14})
    assert not has_outbox(product_records(outputs, key)[-1])
    apply(proc, tp, 14, snapshot(5, 3, cost="5.10"))  # restocked: resolves STOCK_OUT, opens STOCK_RESTORED
    assert stock_out not in outbox_alerts(product_records(outputs, key)[-1])


def test_recovery_keeps_the_outputs_of_consecutive_records_with_outboxes() -> None:
    """Records written before the writer carried outputs forward: recovery merges them."""
    proc, outputs, tp = value_processor()
    key = product_key("s1", "p1", None)
    apply(proc, tp, 10, snapshot(10, 0))
    proc._unconfirmed.clear()  # as the writer did before it carried outputs forward
    apply(proc, tp, 12, snapshot(0, 1))
    proc._unconfirmed.clear()
    apply(proc, tp, 13, snapshot(0, 2, cost="5.10"))
    records = product_records(outputs, key)
    assert outbox_alerts(records[-1]) == []

    heir, heir_outputs, _ = value_processor()
    for raw in records:
        heir.products.data[key] = raw
        heir.on_changelog_record(key, 3, raw)
    assert asyncio.run(heir.resend_recovered({3})) == 1
    alerts = [orjson.loads(v)["alert_id"] for t, _, v in heir_outputs.values if t == "alerts"]
    assert alerts == [a for a, _ in outbox_alerts(records[1])] and alerts
    changes = [v for t, _, v in heir_outputs.values if t == "inventory.changes"]
    assert len(changes) == 3  # NEW, the stock out, the cost: each once

    # A plain record between: what came before it was delivered.
    heir2, heir2_outputs, _ = value_processor()
    plain = encode_state(apply_snapshot(None, snapshot(10, 0), default_settings("s1")).state)  # type: ignore[arg-type]
    for raw in [records[1], plain, records[2]]:
        heir2.on_changelog_record(key, 3, raw)
    assert asyncio.run(heir2.resend_recovered({3})) == 1
    assert [v for t, _, v in heir2_outputs.values if t == "alerts"] == []


# --------------------------------------------------------------------------- #
# a partition let go: its outputs not known delivered are the next owner's
# --------------------------------------------------------------------------- #


def test_outputs_of_a_partition_let_go_do_not_ride_into_its_records_when_it_comes_back() -> None:
    proc, outputs, tp = value_processor()
    key = product_key("s1", "p1", None)
    apply(proc, tp, 10, snapshot(10, 0))
    proc.on_committed({tp: 11})
    apply(proc, tp, 12, snapshot(0, 1))  # stock out: opens STOCK_OUT, not committed
    (stock_out,) = outbox_alerts(product_records(outputs, key)[-1])

    proc.on_letting_go({tp})  # revoked before the commit: the record keeps its outbox for the next owner
    # A message still in hand when the partition was let go: its record keeps its own outbox.
    apply(proc, tp, 13, snapshot(0, 2, cost="5.10"))
    assert has_outbox(product_records(outputs, key)[-1])

    proc.on_assigned({tp})  # the partition comes back (recovered meanwhile)
    apply(proc, tp, 14, snapshot(0, 3, cost="5.20"))
    latest = product_records(outputs, key)[-1]
    assert stock_out not in outbox_alerts(latest)
    assert len(orjson.loads(latest)[14]) == 1  # its own change record only
    proc.on_committed({tp: 15})
    assert not has_outbox(product_records(outputs, key)[-1])


def test_letting_go_of_one_partition_keeps_the_outputs_of_the_others() -> None:
    proc, outputs, tp = value_processor()
    other = TP(topic="supplier.snapshots", partition=5)
    proc.owned = {tp, other}
    key, other_key = product_key("s1", "p1", None), product_key("s2", "p1", None)
    apply(proc, tp, 10, snapshot(0, 1))  # NEW, out of stock
    apply(proc, other, 20, snapshot(10, 0, store="s2"))
    apply(proc, other, 21, snapshot(0, 1, store="s2"))  # opens STOCK_OUT on partition 5
    (stock_out,) = outbox_alerts(product_records(outputs, other_key)[-1])

    # A standby's changelog partition and another topic's partition 3 go; partition 5's input stays.
    proc.on_letting_go({tp, TP(topic="products-changelog", partition=5)})
    apply(proc, other, 22, snapshot(0, 2, cost="5.10", store="s2"))
    assert outbox_alerts(product_records(outputs, other_key)[-1]) == [stock_out]
    proc.on_committed({other: 23})
    assert not has_outbox(product_records(outputs, other_key)[-1])
    assert has_outbox(product_records(outputs, key)[-1])  # not ours any more: left to the next owner


# --------------------------------------------------------------------------- #
# a resend never rolls the alerts table back
# --------------------------------------------------------------------------- #


def _alert_in_table(proc: InventoryProcessor, alert_id: str) -> dict[str, Any]:
    return orjson.loads(proc.alerts.data[alert_key("s1", alert_id)])  # type: ignore[no-any-return]


def _moved(raw_alert: bytes, status: str, at: datetime) -> bytes:
    alert = Alert.model_validate_json(raw_alert)
    moved = alert_rules.transition(alert, AlertStatus(status), at)
    assert moved is not None
    return encode(moved)


def _recovered_alert(raw: bytes) -> bytes:
    (value,) = [v for code, v in split_outbox(raw)[1] if code == "a"]
    return value


def test_a_resent_alert_does_not_overwrite_a_newer_state_in_the_alerts_table() -> None:
    """The alert was acknowledged after the transition whose record is recovered: the
    table keeps ACKNOWLEDGED; the record still goes out on ``alerts`` (same id)."""
    proc, outputs = processor()
    value_outputs = ValueOutputs()
    proc.outputs = value_outputs  # type: ignore[assignment]
    key, raw, alert_id = recovered_record()
    acknowledged = _moved(_recovered_alert(raw), "ACKNOWLEDGED", datetime(2026, 11, 1, 1, 0, tzinfo=timezone.utc))
    proc.alerts.data[alert_key("s1", alert_id)] = acknowledged
    proc.products.data[key] = raw
    proc.on_changelog_record(key, 3, raw)

    assert asyncio.run(proc.resend_recovered({3})) == 1

    assert proc.alerts.data[alert_key("s1", alert_id)] == acknowledged
    assert not [k for t, k, _ in value_outputs.values if t == "alerts-changelog"]
    sent = [orjson.loads(v) for t, _, v in value_outputs.values if t == "alerts"]
    assert [(a["alert_id"], a["status"]) for a in sent] == [(alert_id, "ACTIVE")]
    assert not has_outbox(proc.products.data[key])


def test_a_resent_alert_restores_an_older_or_missing_state_and_wins_a_tie_only_if_it_moves_on() -> None:
    key, raw, alert_id = recovered_record()
    active = _recovered_alert(raw)
    at = datetime.fromisoformat(orjson.loads(active)["updated_at"])
    # An acknowledgement requested for an earlier time keeps the alert's time (alert_rules.transition).
    acknowledged_same_time = _moved(active, "ACKNOWLEDGED", datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert orjson.loads(acknowledged_same_time)["updated_at"] == orjson.loads(active)["updated_at"]
    older = orjson.dumps({**orjson.loads(active), "updated_at": "2026-10-01T00:00:00Z"})
    cases = [
        (None, active),  # the table lost it: restored
        (older, active),  # older in the table: replaced
        (active, active),  # the same state
        (acknowledged_same_time, acknowledged_same_time),  # same time, the table's state is further on: kept
    ]
    for in_table, expected in cases:
        proc, _ = processor()
        if in_table is not None:
            proc.alerts.data[alert_key("s1", alert_id)] = in_table
        proc.products.data[key] = raw
        proc.on_changelog_record(key, 3, raw)
        asyncio.run(proc.resend_recovered({3}))
        assert proc.alerts.data[alert_key("s1", alert_id)] == expected, in_table

    # Same time, the resent state is further on (the ACKNOWLEDGED record's alert write was lost): it wins.
    proc, _ = processor()
    proc.alerts.data[alert_key("s1", alert_id)] = active
    acked_record = with_outbox(split_outbox(raw)[0], [("a", acknowledged_same_time)])
    proc.products.data[key] = acked_record
    proc.on_changelog_record(key, 3, acked_record)
    asyncio.run(proc.resend_recovered({3}))
    assert _alert_in_table(proc, alert_id)["status"] == "ACKNOWLEDGED"
    assert datetime.fromisoformat(_alert_in_table(proc, alert_id)["updated_at"]) == at


# --------------------------------------------------------------------------- #
# a resend the broker refuses is retried, while the partitions are ours
# --------------------------------------------------------------------------- #


class RefusingOutputs(ValueOutputs):
    """Outputs whose acknowledged sends fail while ``refuse`` is set, or never return while ``hang`` is."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse = True
        self.hang = False

    async def send(self, wait: bool = False) -> None:
        if wait and self.hang:
            await asyncio.Event().wait()
        if wait and self.refuse:
            self.events.append(("refused",))
            raise ConnectionError("broker refused")
        await super().send(wait)


def refusing_processor() -> tuple[InventoryProcessor, RefusingOutputs, Any]:
    proc, _, tp = value_processor()
    outputs = RefusingOutputs()
    proc.outputs = outputs  # type: ignore[assignment]
    proc.resend_backoff_s = (0.001, 0.005)
    return proc, outputs, tp


def recovered(proc: InventoryProcessor) -> tuple[str, bytes, str]:
    key, raw, alert_id = recovered_record()
    proc.products.data[key] = raw
    proc.on_changelog_record(key, 3, raw)
    return key, raw, alert_id


async def settled(proc: InventoryProcessor) -> None:
    task = proc._resend_task
    assert task is not None
    await asyncio.wait([task], timeout=5)
    assert task.done()


def test_a_refused_resend_is_retried_until_acknowledged_then_the_record_is_written_plain() -> None:
    async def scenario() -> None:
        proc, outputs, _ = refusing_processor()
        key, _, alert_id = recovered(proc)

        assert await proc.resend_recovered({3}) == 0  # refused: Faust's recovery goes on
        assert ("refused",) in outputs.events
        assert key not in proc.recovered_outboxes
        while outputs.events.count(("refused",)) < 3:
            await asyncio.sleep(0.001)
        assert all(has_outbox(r) for r in product_records(outputs, key))  # nothing plain before an ack
        outputs.refuse = False
        await settled(proc)

        acked = outputs.events.index(("acked",))
        product_writes = [i for i, e in enumerate(outputs.events) if e == ("add", "products-changelog", key)]
        assert product_writes and all(i > acked for i in product_writes)
        assert not has_outbox(proc.products.data[key])
        assert alert_key("s1", alert_id) in proc.alerts.data
        assert alert_id in {orjson.loads(v)["alert_id"] for t, _, v in outputs.values if t == "alerts"}
        assert proc.recovered_outboxes == {}

    asyncio.run(scenario())


def test_a_newer_record_carries_the_outputs_being_resent_and_its_commit_waits_for_their_ack() -> None:
    async def scenario() -> None:
        proc, outputs, tp = refusing_processor()
        key, _, alert_id = recovered(proc)
        await proc.resend_recovered({3})

        apply(proc, tp, 20, snapshot(0, 2, cost="5.10"))  # the streams resumed: a newer transition
        newer = product_records(outputs, key)[-1]
        assert (alert_id, "ACTIVE") in outbox_alerts(newer)
        proc.on_committed({tp: 21})  # delivered its own outputs only: the record keeps its outbox
        assert product_records(outputs, key)[-1] == newer

        outputs.refuse = False
        await settled(proc)
        assert not has_outbox(product_records(outputs, key)[-1])
        apply(proc, tp, 22, snapshot(0, 3, cost="5.20"))
        assert outbox_alerts(product_records(outputs, key)[-1]) == []  # nothing carried any more

    asyncio.run(scenario())


def test_letting_the_partition_go_stops_the_retry_and_keeps_the_outbox_for_the_next_recovery() -> None:
    async def scenario() -> None:
        proc, outputs, tp = refusing_processor()
        key, raw, _ = recovered(proc)
        await proc.resend_recovered({3})
        task = proc._resend_task

        proc.on_letting_go({tp})
        await asyncio.wait([task], timeout=5)  # type: ignore[list-item]
        assert task is not None and task.cancelled()
        assert proc.recovered_outboxes[key][1] == raw
        assert all(has_outbox(r) for r in product_records(outputs, key))

        # The partition comes back and the broker answers: sent again then.
        proc.on_assigned({tp})
        outputs.refuse = False
        assert await proc.resend_recovered({3}) == 1
        assert not has_outbox(product_records(outputs, key)[-1])

    asyncio.run(scenario())


def test_a_stop_ends_a_retry_that_waits_on_a_send_that_never_returns() -> None:
    async def scenario() -> None:
        proc, outputs, tp = refusing_processor()
        proc.resend_wait_s = 0.01
        outputs.hang = True
        key, _, _ = recovered(proc)
        assert await proc.resend_recovered({3}) == 0  # gave up waiting: Faust's recovery goes on
        task = proc._resend_task
        assert task is not None and not task.done()

        proc.on_letting_go({tp, TP(topic="store.settings", partition=3)})  # a stop lets every partition go
        await asyncio.wait([task], timeout=5)
        assert task.cancelled()
        assert key in proc.recovered_outboxes

    asyncio.run(scenario())
