"""Archiving closed orders and video jobs (models/archive.py, ``KeyedMachine.archive``).

A record final for its keep period, with no deadline and its outputs
delivered, becomes a small marker in the table and its changelog; open
records, records with a deadline, unsettled ones and other workers'
partitions stay. A late event for an archived key goes to ``deadletter``
(``ARCHIVED``), and every reader of the table copes with a marker.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import orjson
from faust.types import TP

from agents.orders import OrderProcessor, record_body
from agents.video import VideoProcessor
from agents.video import record_body as job_body
from connectors import metrics
from connectors.postgres.record import changelog_topic, rows_of
from models import archive
from models.events import DeadLetterReason
from models.fulfillment import MachineConfig, OrderState, OrderStatus, decide
from models.orders import Notification, NotificationKind
from models.video import VideoJob, VideoStatus
from models.video import decide as decide_video
from streams import tables
from streams.outbox import OutboxTable
from streams.settings import Settings
from tests.unit.order_events import ORDER, at, created, delivered, paid, placed, refund, tracking
from tests.unit.test_inventory_resend import FakeTable, ValueOutputs
from tests.unit.test_outbox_table import FakeApp
from tests.unit.test_video import CONFIG, RESULT, completed, queued, started

KEEP_ORDERS = timedelta(days=90)
LATER = at(4) + KEEP_ORDERS + timedelta(days=1)  # past the keep period of an order delivered at at(4)


# --------------------------------------------------------------------------- #
# the pure decisions
# --------------------------------------------------------------------------- #


def order_body(status: str | None, since: datetime | None, due: str | None = None, outbox: list[Any] | None = None) -> dict[str, Any]:
    return {
        "status": status, "since": since.timestamp() if since else None, "due": due,
        "state": {"order_id": "o-1", "store_id": "s-1", "order_number": "#1001", "redacted": False},
        "outbox": outbox or [],
    }


def test_a_final_order_without_deadline_past_the_keep_period_is_archivable() -> None:
    cutoff = at(0)
    for status in ("DELIVERED", "CANCELLED", "REFUNDED"):
        assert archive.order_archivable(order_body(status, at(-1)), cutoff)
    assert not archive.order_archivable(order_body("DELIVERED", at(1)), cutoff)  # recently
    assert not archive.order_archivable(order_body("PROCESSING", at(-1)), cutoff)  # open, however old
    assert not archive.order_archivable(order_body("INTERVENTION_REQUIRED", at(-1)), cutoff)  # waits on a person
    # Open but waiting on nothing (no deadline left after their alerts): unpaid, never reported delivered.
    for status in ("PENDING", "SHIPPED", "PARTIALLY_SHIPPED"):
        assert archive.order_archivable(order_body(status, at(-1)), cutoff), status
        assert not archive.order_archivable(order_body(status, at(-1), due=at(5).isoformat()), cutoff), status
    assert not archive.order_archivable(order_body(None, at(-1)), cutoff)  # events waiting for their order
    assert not archive.order_archivable(order_body("DELIVERED", at(-1), due=at(5).isoformat()), cutoff)
    assert not archive.order_archivable(order_body("DELIVERED", at(-1), outbox=[["t", "k", {}]]), cutoff)
    assert not archive.order_archivable(order_body("DELIVERED", None), cutoff)
    marker = archive.order_marker(order_body("DELIVERED", at(-1)), cutoff)
    assert marker == {
        "status": "DELIVERED", "since": at(-1).timestamp(), "archived": True, "archived_at": cutoff.isoformat(),
        "order_id": "o-1", "store_id": "s-1", "order_number": "#1001", "redacted": False,
    }
    assert archive.is_archived(marker)
    assert not archive.order_archivable(marker, cutoff + timedelta(days=1000))  # archived once


def finished_job(seconds: float = 10) -> VideoJob:
    job = queued()
    for event in (started(), completed(s=seconds)):
        decision = decide_video(job, event, CONFIG)
        assert decision.job is not None
        job = decision.job
    assert job.status is VideoStatus.COMPLETED and job.result == RESULT
    return job


def video_value(job: VideoJob) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(job_body(job)))


def test_a_final_video_job_past_the_keep_period_is_archivable() -> None:
    job = finished_job()
    cutoff = job.updated_at + timedelta(days=30)
    assert archive.video_archivable(video_value(job), job.updated_at + timedelta(seconds=1))
    assert not archive.video_archivable(video_value(job), job.updated_at - timedelta(seconds=1))
    assert not archive.video_archivable(video_value(queued()), cutoff + timedelta(days=365))  # active
    failed = job.model_copy(update={"status": VideoStatus.FAILED})
    assert archive.video_archivable(video_value(failed), job.updated_at + timedelta(seconds=1))
    marker = archive.video_marker(video_value(job), cutoff)
    assert marker == {
        "status": "COMPLETED", "since": job.updated_at.timestamp(), "archived": True,
        "archived_at": cutoff.isoformat(), "video_id": "v1", "store_id": "s1", "product_id": "p1",
    }
    detail = archive.archived_detail("video", "v1", marker)
    assert cutoff.isoformat() in detail and "COMPLETED" in detail


# --------------------------------------------------------------------------- #
# the sweep on a processor with fake tables
# --------------------------------------------------------------------------- #


class Assignor:
    def __init__(self) -> None:
        self.actives: set[TP] = set()

    def assigned_actives(self) -> set[TP]:
        return self.actives


def engine(outputs: ValueOutputs) -> Any:
    return SimpleNamespace(
        app=SimpleNamespace(assignor=Assignor()),
        tables=SimpleNamespace(orders=FakeTable("orders"), video_jobs=FakeTable("video-jobs")),
        outputs=outputs,
        settings=Settings(partitions=8),
    )


def own(proc: Any, topic: str, *keys: str) -> FakeApp:
    """The processor's worker owns the partitions of ``keys`` (the table follows a FakeApp's commits)."""
    partitions = {proc.partition_of(k) for k in keys}
    proc.app.assignor.actives = {TP(topic=topic, partition=p) for p in partitions}
    fake = FakeApp()
    proc.store.attach(fake, proc.index_due)
    fake.assign({TP(topic=topic, partition=p) for p in partitions})
    return fake


def other_key(proc: Any, *keys: str) -> str:
    taken = {proc.partition_of(k) for k in keys}
    return next(k for k in (f"o-{n}" for n in range(100)) if proc.partition_of(k) not in taken)


class Messages:
    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.offset = 0

    def __call__(self, key: str, value: bytes) -> Any:
        self.offset += 1
        partition = 0
        return SimpleNamespace(
            topic=self.topic, partition=partition, offset=self.offset, tp=TP(topic=self.topic, partition=partition),
            key=key.encode(), value=value,
        )


def order_processor() -> tuple[OrderProcessor, ValueOutputs, FakeApp, Messages]:
    outputs = ValueOutputs()
    proc = OrderProcessor(engine(outputs))
    fake = own(proc, "orders.events", ORDER)
    return proc, outputs, fake, Messages("orders.events")


def feed(proc: OrderProcessor, messages: Messages, events: list[Any]) -> None:
    for e in events:
        message = messages(e.order_id, orjson.dumps(e.model_dump(mode="json", by_alias=True)))
        message.partition = proc.partition_of(e.order_id)
        message.tp = TP(topic=messages.topic, partition=message.partition)
        proc._handle(message)


def deliver(proc: OrderProcessor, messages: Messages, fake: FakeApp, commit: bool = True) -> None:
    state = None
    for e in [created(), paid()]:
        state = decide(state, e, MachineConfig()).state
    assert state is not None
    a, b = (g.group_id for g in state.groups)
    feed(proc, messages, [created(), paid(), placed(a), placed(b), tracking(a), tracking(b, "1Z999AA10123456784"), delivered()])
    if commit:
        fake.commit({TP(topic=messages.topic, partition=proc.partition_of(ORDER)): messages.offset + 1})


def changelog(outputs: ValueOutputs, key: str) -> list[dict[str, Any]]:
    return [orjson.loads(v) for t, k, v in outputs.values if t == "orders-changelog" and k == key and v is not None]


def test_a_delivered_order_past_the_keep_period_becomes_a_marker_in_the_table_and_changelog() -> None:
    proc, outputs, fake, messages = order_processor()
    deliver(proc, messages, fake)
    state = proc.load(ORDER)
    assert state is not None and state.status is OrderStatus.DELIVERED
    assert ORDER not in proc.next_due
    before = metrics.ARCHIVED.labels("orders")._value.get()

    assert proc.archive(list(proc.table.data), at(4) + KEEP_ORDERS - timedelta(seconds=1)) == 0  # not yet
    assert proc.archive(list(proc.table.data), LATER) == 1
    marker = proc.archived(ORDER)
    assert marker is not None and marker["archived"] is True and marker["status"] == "DELIVERED"
    assert marker["since"] == at(4).timestamp() and marker["store_id"] == "s-1"
    assert marker["archived_at"] == LATER.isoformat()
    assert changelog(outputs, ORDER)[-1] == {**marker, "outbox": []}
    assert proc.load(ORDER) is None
    assert metrics.ARCHIVED.labels("orders")._value.get() == before + 1
    assert len(proc.table.data[ORDER]) < 250  # from about 3.8 KB
    # A second sweep leaves the marker alone.
    written = len(outputs.values)
    assert proc.archive(list(proc.table.data), LATER + timedelta(days=400)) == 0
    assert len(outputs.values) == written


def test_open_orders_orders_with_a_deadline_unsettled_ones_and_other_partitions_stay() -> None:
    proc, outputs, fake, messages = order_processor()
    feed(proc, messages, [created(), paid()])  # PROCESSING: open
    fake.commit({TP(topic=messages.topic, partition=proc.partition_of(ORDER)): messages.offset + 1})
    theirs = other_key(proc, ORDER)
    old = order_body("DELIVERED", at(-1))
    proc.table.data[theirs] = orjson.dumps(old)  # another worker's partition: its owner archives it
    mine_due = "o-due"
    proc.table.data[mine_due] = orjson.dumps(order_body("DELIVERED", at(-1), due=at(10).isoformat()))
    proc.app.assignor.actives.add(TP(topic="orders.events", partition=proc.partition_of(mine_due)))
    before = dict(proc.table.data)
    assert proc.archive(list(proc.table.data), LATER + timedelta(days=1000)) == 0
    assert proc.table.data == before


def test_an_order_whose_outputs_are_not_known_delivered_waits_for_its_commit() -> None:
    proc, outputs, fake, messages = order_processor()
    deliver(proc, messages, fake, commit=False)  # its notifications not yet known delivered
    assert not proc.store.settled(ORDER)
    assert proc.archive([ORDER], LATER + timedelta(days=1)) == 0
    assert proc.load(ORDER) is not None
    fake.commit({TP(topic=messages.topic, partition=proc.partition_of(ORDER)): messages.offset + 1})
    assert proc.store.settled(ORDER)
    assert proc.archive([ORDER], LATER + timedelta(days=1)) == 1


def test_a_recovered_outbox_not_yet_sent_again_keeps_the_order() -> None:
    proc, outputs, fake, messages = order_processor()
    state = decide(None, created(), MachineConfig()).state
    body = record_body(state.model_copy(update={"status": OrderStatus.CANCELLED}), None)
    raw = OutboxTable.encode(body, [("orders.commands", b"o-1", b"{}")])
    proc.table.data[ORDER] = raw
    proc.store.on_changelog_record(ORDER, proc.partition_of(ORDER), raw)
    assert not proc.store.settled(ORDER)
    assert proc.archive([ORDER], LATER + timedelta(days=1)) == 0


def test_a_late_event_for_an_archived_order_goes_to_deadletter_and_starts_nothing() -> None:
    proc, outputs, fake, messages = order_processor()
    deliver(proc, messages, fake)
    proc.archive([ORDER], LATER)
    marker = proc.archived(ORDER)
    before = metrics.ORDER_EVENTS.labels("REFUND_REQUESTED", "ARCHIVED")._value.get()
    written = len(outputs.values)

    feed(proc, messages, [tracking("g-late", seconds=10, event_id="late-tracking")])

    assert proc.archived(ORDER) == marker  # not a fresh order
    new = outputs.values[written:]
    assert [t for t, _, _ in new] == ["deadletter"]
    letter = orjson.loads(new[0][2])
    assert letter["reason"] == DeadLetterReason.ARCHIVED.value
    assert LATER.isoformat() in letter["detail"]
    assert orjson.loads(base64.b64decode(letter["value"]))["event_id"] == "late-tracking"  # nothing accepted is lost
    assert metrics.ORDER_EVENTS.labels("TRACKING_RECEIVED", "ARCHIVED")._value.get() >= 1

    # A late refund goes to deadletter too, with an alert: the engine does not act on it.
    written = len(outputs.values)
    feed(proc, messages, [refund(seconds=20, event_id="late-refund")])
    feed(proc, messages, [refund(seconds=20, event_id="late-refund")])  # redelivered: the same alert
    assert proc.archived(ORDER) == marker
    new = [o for o in outputs.values[written:] if not o[0].endswith("-changelog")]  # the marker again, with its outbox
    assert sorted({t for t, _, _ in new}) == ["alerts", "deadletter", "inventory.commands"]
    letters = [orjson.loads(v) for t, _, v in new if t == "deadletter"]
    assert {orjson.loads(base64.b64decode(x["value"]))["event_id"] for x in letters} == {"late-refund"}
    alerts = [orjson.loads(v) for t, _, v in new if t == "alerts"]
    assert len({a["alert_id"] for a in alerts}) == 1
    alert = alerts[0]
    assert (alert["type"], alert["store_id"], alert["status"]) == ("PAYMENT_ISSUE", "s-1", "ACTIVE")
    assert "archived order" in alert["title"] and "REFUND_REQUESTED" in alert["message"]
    assert metrics.ORDER_EVENTS.labels("REFUND_REQUESTED", "ARCHIVED")._value.get() == before + 2


def test_only_a_late_payment_refund_or_cancellation_of_an_archived_order_raises_an_alert() -> None:
    marker = {"status": "PENDING", "since": at(0).timestamp(), "archived": True, "archived_at": LATER.isoformat(),
              "order_id": ORDER, "store_id": "s-1", "order_number": "#1001", "redacted": False}
    late_payment = archive.archived_event_alert(ORDER, marker, paid(seconds=99, event_id="late-pay"))
    assert late_payment is not None and late_payment.type.value == "PAYMENT_ISSUE"
    assert "#1001" in late_payment.title and "nothing was placed" in late_payment.message
    assert late_payment == archive.archived_event_alert(ORDER, marker, paid(seconds=99, event_id="late-pay"))
    assert archive.archived_event_alert(ORDER, marker, delivered(seconds=99)) is None
    assert archive.archived_event_alert(ORDER, marker, tracking("g-1", seconds=99)) is None


def test_every_reader_of_the_table_copes_with_a_marker() -> None:
    proc, outputs, fake, messages = order_processor()
    deliver(proc, messages, fake)
    proc.archive([ORDER], LATER)
    raw = proc.table.data[ORDER]
    # A restarted worker reads the marker back from the changelog.
    restarted, _, _, _ = order_processor()
    restarted.table.data[ORDER] = raw
    restarted.store.on_changelog_record(ORDER, restarted.partition_of(ORDER), raw)
    restarted.index_due(ORDER, orjson.loads(raw))
    assert ORDER not in restarted.next_due and ORDER not in restarted.store.recovered
    assert restarted.archived(ORDER) == proc.archived(ORDER)
    assert restarted.scan_deadlines(LATER) == 0
    restarted.refresh_gauges()
    assert metrics.ORDERS_BY_STATUS.labels("DELIVERED")._value.get() == 1
    listed = restarted.owned_orders("DELIVERED")
    assert [(o["order_id"], o["status"], o.get("archived")) for o in listed] == [(ORDER, "DELIVERED", True)]
    assert restarted.owned_orders("PROCESSING") == []
    # PostgreSQL's orders row keeps the order as it was.
    assert rows_of(changelog_topic("ops", tables.ORDERS), raw) == []


# --------------------------------------------------------------------------- #
# video jobs
# --------------------------------------------------------------------------- #


def video_processor() -> tuple[VideoProcessor, ValueOutputs, FakeApp, Messages]:
    outputs = ValueOutputs()
    proc = VideoProcessor(engine(outputs))
    fake = own(proc, "video.requests", "v1")
    return proc, outputs, fake, Messages("video.events")


def test_a_finished_video_job_is_archived_and_a_late_retry_goes_to_deadletter() -> None:
    proc, outputs, fake, messages = video_processor()
    job = finished_job()
    proc.table.data["v1"] = OutboxTable.encode(job_body(job), [])
    active = queued(video_id="v2")
    proc.table.data["v2"] = OutboxTable.encode(job_body(active), [])
    proc.app.assignor.actives.add(TP(topic="video.requests", partition=proc.partition_of("v2")))
    proc.set_due("v2", active.due_at)
    later = job.updated_at + timedelta(days=31)

    assert proc.archive(["v1", "v2"], job.updated_at + timedelta(days=29)) == 0
    assert proc.archive(["v1", "v2"], later) == 1
    marker = proc.archived("v1")
    assert marker is not None and marker["status"] == "COMPLETED" and marker["video_id"] == "v1"
    assert proc.load("v1") is None and proc.load("v2") is not None  # the active job stays
    assert [orjson.loads(v) for t, k, v in outputs.values if t == "video-jobs-changelog"] == [{**marker, "outbox": []}]
    proc.refresh_gauges()
    assert proc.scan_deadlines(later) == 1  # only v2's deadline

    before = metrics.VIDEO_EVENTS.labels("RETRY", "ARCHIVED")._value.get()
    retry = {"type": "RETRY", "event_id": "late", "video_id": "v1", "occurred_at": later.isoformat()}
    message = messages("v1", orjson.dumps(retry))
    message.partition = proc.partition_of("v1")
    written = len(outputs.values)
    proc._handle(message)
    new = outputs.values[written:]
    assert [t for t, _, _ in new] == ["deadletter"]
    assert orjson.loads(new[0][2])["reason"] == "ARCHIVED"
    assert proc.archived("v1") == marker
    assert metrics.VIDEO_EVENTS.labels("RETRY", "ARCHIVED")._value.get() == before + 1


def test_video_jobs_of_other_partitions_or_unsettled_stay() -> None:
    proc, outputs, fake, messages = video_processor()
    job = finished_job()
    theirs = next(k for k in (f"v{n}" for n in range(2, 100)) if proc.partition_of(k) != proc.partition_of("v1"))
    proc.table.data[theirs] = OutboxTable.encode(job_body(job.model_copy(update={"video_id": theirs})), [])
    proc.table.data["v1"] = OutboxTable.encode(job_body(job), [])
    proc.store._unconfirmed[proc.partition_of("v1")]["v1"] = [("video.status", b"v1", b"{}")]
    assert proc.archive([theirs, "v1"], job.updated_at + timedelta(days=365)) == 0
    assert proc.archived(theirs) is None and proc.archived("v1") is None


def test_a_redaction_of_an_archived_order_is_applied_not_refused() -> None:
    """Shopify's customers/redact of an old order: the marker says redacted, the owner gets the
    same notice the machine would have sent, PostgreSQL's row is redacted; a repeat does nothing."""
    from models.orders import OrderEventType
    from tests.unit.order_events import event

    proc, outputs, fake, messages = order_processor()
    deliver(proc, messages, fake)
    state = proc.load(ORDER)
    assert state is not None and not state.redacted
    redact = event(OrderEventType.REDACT_REQUESTED, "redact-late", 20, reason="customers/redact")
    machine = decide(state, redact, MachineConfig())  # what the machine does on the live order
    [expected] = machine.notifications
    proc.archive([ORDER], LATER)
    marker = proc.archived(ORDER)
    assert marker is not None and marker["redacted"] is False and marker["order_id"] == ORDER
    written = len(outputs.values)

    feed(proc, messages, [redact])

    new = outputs.values[written:]
    assert sorted(t for t, _, _ in new) == ["notifications", "orders-changelog"]  # no dead letter
    redacted = proc.archived(ORDER)
    assert redacted == {**marker, "redacted": True}
    notice = orjson.loads(next(v for t, _, v in new if t == "notifications"))
    assert notice["notification_id"] == expected.notification_id and notice["kind"] == "ADMIN_REDACTED"
    assert notice["order_id"] == ORDER and notice["recipient"] is None
    assert notice["data"]["reason"] == "customers/redact" and notice["data"]["order_number"] == state.order_number
    # The recorder redacts PostgreSQL's row on the marker.
    [(sql, params)] = rows_of(changelog_topic("ops", tables.ORDERS), proc.table.data[ORDER])
    assert sql.lstrip().startswith("UPDATE orders SET redacted = true") and params[0] == ORDER
    # Again (Shopify retries): nothing more.
    written = len(outputs.values)
    feed(proc, messages, [event(OrderEventType.REDACT_REQUESTED, "redact-again", 30, reason="customers/redact")])
    assert outputs.values[written:] == [] and proc.archived(ORDER) == redacted


def test_a_data_request_for_an_archived_order_is_answered_not_refused() -> None:
    """Shopify's customers/data_request of an old order: the owner's notice goes out with the
    live order's id, asking the notifier to read PostgreSQL's row; the marker is unchanged.
    Once the order is redacted, the notice asks for no lookup."""
    from models.archive import complete_data_request
    from models.orders import OrderEventType
    from tests.unit.order_events import event

    proc, outputs, fake, messages = order_processor()
    deliver(proc, messages, fake)
    state = proc.load(ORDER)
    assert state is not None
    request = event(OrderEventType.DATA_REQUESTED, "dr-late", 20, request_id="dr-1")
    [live] = decide(state, request, MachineConfig()).notifications  # what the live order sends
    proc.archive([ORDER], LATER)
    marker = proc.archived(ORDER)
    assert marker is not None
    before = metrics.ORDER_EVENTS.labels("DATA_REQUESTED", "APPLIED")._value.get()
    written = len(outputs.values)

    feed(proc, messages, [request])

    new = outputs.values[written:]
    assert sorted(t for t, _, _ in new) == ["notifications", "orders-changelog"]  # no dead letter
    assert proc.archived(ORDER) == marker
    notice = Notification.model_validate_json(next(v for t, _, v in new if t == "notifications"))
    assert notice.notification_id == live.notification_id and notice.kind is NotificationKind.ADMIN_DATA_REQUEST
    assert notice.recipient is None and notice.data["record"] == "orders"
    assert notice.data["order_number"] == state.order_number and notice.data["customer_email"] == ""
    assert metrics.ORDER_EVENTS.labels("DATA_REQUESTED", "APPLIED")._value.get() == before + 1
    # The notifier's completion from the row gives what the live order's notice carried.
    row = state.model_dump(mode="json", by_alias=True, exclude={"seen", "parked"})
    completed = complete_data_request(notice, row)
    for field in ("customer_name", "customer_email", "customer_phone", "shipping_address"):
        assert completed.data[field] == live.data[field], field
    assert "record" not in completed.data and "durable record" in completed.data["reason"]
    unreadable = complete_data_request(notice, {**row, "customer": {"email": "not an e-mail"}})
    assert unreadable.data["customer_email"] == "" and "could not be read" in unreadable.data["reason"]

    # Redacted since: nothing to look up.
    feed(proc, messages, [event(OrderEventType.REDACT_REQUESTED, "redact-late", 30, reason="customers/redact")])
    written = len(outputs.values)
    feed(proc, messages, [event(OrderEventType.DATA_REQUESTED, "dr-later", 40, request_id="dr-2")])
    notice = Notification.model_validate_json(next(v for t, _, v in outputs.values[written:] if t == "notifications"))
    assert "record" not in notice.data and notice.data["customer_email"] == ""


def test_a_shipment_never_reported_delivered_is_archived_once_nothing_is_awaited() -> None:
    """The parcel's DELIVERY_OVERDUE alert is the last thing the order waits for; then the
    order is archived like a delivered one, or the table would keep it for good."""
    from models.events import AlertType
    from models.fulfillment import next_deadline
    from models.orders import TimerKind
    from tests.unit.order_events import timer

    state = None
    for e in [created(providers=("ALIEXPRESS",)), paid(), placed("ALIEXPRESS"), tracking("ALIEXPRESS")]:
        state = decide(state, e, MachineConfig()).state
    assert state is not None and state.status is OrderStatus.SHIPPED
    due = next_deadline(state, MachineConfig())
    assert due is not None and not archive.order_archivable(record_body(state, due), due + KEEP_ORDERS * 10)  # awaited
    d = decide(state, timer(TimerKind.DELIVERY_OVERDUE, "ALIEXPRESS", due, 46 * 86400), MachineConfig())
    assert [a.type for a in d.alerts] == [AlertType.ORDER_ISSUE] and next_deadline(d.state, MachineConfig()) is None
    body = orjson.loads(OutboxTable.encode(record_body(d.state, None), []))
    # The sweep's cutoff is now minus OPS_ORDER_KEEP_DAYS: kept until the keep period after shipping.
    shipped_at = d.state.group("ALIEXPRESS").shipped_at
    assert not archive.order_archivable(body, shipped_at - timedelta(seconds=1))
    assert archive.order_archivable(body, shipped_at + timedelta(seconds=1))


def test_the_events_of_an_order_that_never_arrived_go_to_deadletter_and_its_record_is_archived() -> None:
    """Before, such a record (the events waiting for their order, after the PAYMENT_ISSUE
    alert) stayed in the table for good. Now the order is given up after
    OPS_ORDER_ABANDON_TIMEOUT: its events go to deadletter with their values, and the
    sweep archives the record; a late ORDER_CREATED meets the marker."""
    from models.fulfillment import next_deadline
    from models.orders import TimerKind
    from tests.unit.order_events import timer

    proc, outputs, fake, messages = order_processor()
    config = proc.config
    feed(proc, messages, [paid(0, event_id="early-pay")])
    state = proc.load(ORDER)
    assert state is not None and not state.created
    missing = next_deadline(state, config)
    assert missing is not None
    feed(proc, messages, [timer(TimerKind.ORDER_MISSING, None, missing, config.order_missing_s)])
    give_up = next_deadline(proc.load(ORDER), config)  # type: ignore[arg-type]
    assert give_up is not None and give_up > missing
    written = len(outputs.values)
    feed(proc, messages, [timer(TimerKind.ORDER_MISSING, None, give_up, config.order_abandon_s)])
    letters = [orjson.loads(v) for t, _, v in outputs.values[written:] if t == "deadletter"]
    assert [(x["reason"], orjson.loads(base64.b64decode(x["value"]))["event_id"]) for x in letters] == [
        (DeadLetterReason.INVALID_IN_STATE.value, "early-pay")]  # nothing accepted is lost
    assert "never arrived" in letters[0]["detail"]
    fake.commit({TP(topic=messages.topic, partition=proc.partition_of(ORDER)): messages.offset + 1})

    first_seen = state.first_seen_at
    assert proc.archive([ORDER], first_seen + timedelta(days=89)) == 0  # kept OPS_ORDER_KEEP_DAYS
    assert proc.archive([ORDER], first_seen + KEEP_ORDERS + timedelta(days=1)) == 1
    marker = proc.archived(ORDER)
    assert marker is not None and marker["status"] is None
    written = len(outputs.values)
    feed(proc, messages, [created(seconds=100 * 86400, event_id="late-order")])
    assert proc.archived(ORDER) == marker
    late = [orjson.loads(v) for t, _, v in outputs.values[written:] if t == "deadletter"]
    assert [x["reason"] for x in late] == [DeadLetterReason.ARCHIVED.value] and "never arrived" in late[0]["detail"]
