"""The orders agent: ``orders.events`` -> the order state machine -> the ``orders`` table.

Thin wiring around ``models.fulfillment.decide``:

- decode the record (pydantic); a bad one goes to ``deadletter`` with why;
- load the order's state from the table, decide, and write the new state;
- send what the decision asks for: supplier order commands (``orders.commands``),
  notifications, storefront commands, alerts, and dead letters for refused
  events.

The table's changelog record carries the decision's outputs (its outbox) until
the input offset is committed (streams/outbox.py): a crash between the state
and the outputs cannot lose the outputs, because whoever recovers the record
sends them again, and every output has a deterministic id its reader dedupes.

Deadlines (an overdue command outcome, a retry's backoff, tracking that never
came, an order that never arrived) are found by ``scan_deadlines``, a timer on
every worker over the orders of the partitions it owns, and published as
``TIMER`` events on the order's own partition: a deadline is handled in order
with the order's other events, by the same pure function.

A table value is JSON: ``{"status", "since", "due", "state", "outbox"}``;
``status``, ``since`` (when the order entered its status, epoch seconds) and
``due`` are there so gauges and the deadline index read them without decoding
the whole state.

An order final (DELIVERED, CANCELLED, REFUNDED), or open and waiting on nothing
(models.archive.ORDER_QUIET), with no deadline for ``OPS_ORDER_KEEP_DAYS`` is archived by the hourly sweep (``KeyedMachine.archive``):
its value becomes ``{"status", "since", "archived": true, "archived_at",
"order_id", "store_id", "order_number", "redacted"}`` (models/archive.py), and a
later event for it goes to ``deadletter`` (``ARCHIVED``), but the two requests
about the customer's data: a redaction is applied (``redact_archived_order``),
and a data request is answered from PostgreSQL's row
(``data_request_archived_order``).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from pydantic import ValidationError

from connectors import metrics
from models.archive import (
    archived_detail,
    archived_event_alert,
    data_request_archived_order,
    is_archived,
    order_archivable,
    order_marker,
    redact_archived_order,
)
from models.events import DeadLetterReason
from models.fulfillment import (
    Decision,
    MachineConfig,
    OrderState,
    OrderStatus,
    TERMINAL,
    deadlines,
    decide,
    next_deadline,
)
from models.orders import DataRequested, OrderEvent, RedactRequested, decode_order_event
from streams import topics
from streams.app import Engine
from streams.codecs import encode
from agents.wiring import KeyedMachine, alert_outputs, dead_letter, refusal, run_agent
from streams.outbox import Output

log = logging.getLogger(__name__)

TERMINAL_VALUES = frozenset(s.value for s in TERMINAL)
#: Statuses an order can be stuck in (ops_order_status_age_seconds).
OPEN_STATUSES = tuple(s.value for s in OrderStatus if s not in TERMINAL)



def machine_config(engine: Engine) -> MachineConfig:
    s = engine.settings
    return MachineConfig(
        retry_backoff_s=s.retry_backoff,
        outcome_timeout_s=s.order_outcome_timeout,
        tracking_timeout_s=s.order_tracking_timeout,
        order_missing_s=s.order_missing_timeout,
        order_abandon_s=s.order_abandon_timeout,
        payment_timeout_s=s.order_payment_timeout,
        delivery_timeout_s=s.order_delivery_timeout,
    )


def status_since(state: OrderState) -> datetime:
    """When the order entered its current status.

    The history also holds events that kept the status (from X to X): the time
    is that of the latest entry that came from another status into this one.
    """
    for transition in reversed(state.history):
        if transition.to_status is state.status and transition.from_status is not state.status:
            return transition.at
    return state.created_at or state.first_seen_at


def record_body(state: OrderState, due: datetime | None) -> dict[str, Any]:
    return {
        "status": state.status.value if state.created else None,
        "since": status_since(state).timestamp() if state.created else None,
        "due": due.isoformat() if due else None,
        "state": orjson.Fragment(state.model_dump_json(by_alias=True)),
    }


def decode_record(raw: bytes) -> tuple[dict[str, Any], OrderState]:
    body = orjson.loads(raw)
    return body, OrderState.model_validate(body["state"])


class OrderProcessor(KeyedMachine):
    input_topic = topics.ORDERS_EVENTS
    table_name = "orders"
    what = "order"

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine, engine.tables.orders, engine.settings.order_scan_interval)
        self.config = machine_config(engine)
        self.keep = timedelta(days=engine.settings.order_keep_days)

    # ------------------------------------------------------------------ #
    # one message
    # ------------------------------------------------------------------ #

    def _handle(self, message: Any) -> None:
        try:
            order_event = decode_order_event(message.value or b"")
        except ValidationError as exc:
            metrics.ORDER_EVENTS.labels("UNKNOWN", "INVALID").inc()
            self.dead(message, *refusal(exc))
            return
        key = order_event.order_id
        if message.key is not None and message.key != key.encode():
            metrics.ORDER_EVENTS.labels(order_event.type.value, "INVALID").inc()
            self.dead(
                message,
                DeadLetterReason.KEY_MISMATCH,
                f"message key {message.key!r} is not the event's order_id {key!r}",
            )
            return
        body = self.body(key)
        if is_archived(body):
            assert body is not None
            # Never refused: the customer's data is still in PostgreSQL's row.
            if isinstance(order_event, RedactRequested):
                self._redact_archived(message, key, body, order_event)
                return
            if isinstance(order_event, DataRequested):
                self._data_request_archived(message, key, body, order_event)
                return
            metrics.ORDER_EVENTS.labels(order_event.type.value, "ARCHIVED").inc()
            alert = archived_event_alert(key, body, order_event)
            if alert is None:
                self.refuse_archived(message, key, body)
                return
            # A payment, refund or cancellation nobody would see in deadletter: with an alert,
            # carried by the marker written again (the outbox makes both durable).
            letter = dead_letter(message, DeadLetterReason.ARCHIVED, archived_detail(self.what, key, body))
            self.store.write(message, key, body, [letter, *alert_outputs(alert)])
            return
        state = None if body is None else OrderState.model_validate(body["state"])
        decision = decide(state, order_event, self.config)
        self._count(order_event, decision)
        if decision.duplicate or (state is None and decision.ignored):
            # Ignored by an order with no record (a data request, a redaction, a timer of an
            # order never seen): no record either, or it would stay for good (never created,
            # never archived), raise an "unknown order" alert, and give the order the event's
            # store (a redaction's is the shop), refusing the order's own should it come.
            return
        due = next_deadline(decision.state, self.config)
        self.store.write(message, key, record_body(decision.state, due), self._outputs(message, order_event, decision))
        self.set_due(key, due)

    def _redact_archived(self, message: Any, key: str, marker: dict[str, Any], event: RedactRequested) -> None:
        """The marker says the order is redacted (the recorder redacts PostgreSQL's row on it)
        and the store owner gets the notice (the notifier redacts its records first)."""
        redaction = redact_archived_order(key, marker, event)
        if redaction is None:
            metrics.ORDER_EVENTS.labels(event.type.value, "DUPLICATE").inc()
            return
        redacted, notice = redaction
        metrics.ORDER_EVENTS.labels(event.type.value, "APPLIED").inc()
        self.store.write(message, key, redacted, [(topics.NOTIFICATIONS, notice.store_id.encode(), encode(notice))])

    def _data_request_archived(self, message: Any, key: str, marker: dict[str, Any], event: DataRequested) -> None:
        """The store owner's notice, which the notifier completes from PostgreSQL's row.
        The marker is written again with it (the outbox makes the notice durable)."""
        notice = data_request_archived_order(key, marker, event)
        metrics.ORDER_EVENTS.labels(event.type.value, "APPLIED").inc()
        self.store.write(message, key, marker, [(topics.NOTIFICATIONS, notice.store_id.encode(), encode(notice))])

    def _count(self, event: OrderEvent, decision: Decision) -> None:
        result = (
            "DUPLICATE" if decision.duplicate
            else "REFUSED" if decision.refused
            else "PARKED" if decision.parked
            else "IGNORED" if decision.ignored
            else "APPLIED"
        )
        metrics.ORDER_EVENTS.labels(event.type.value, result).inc()
        for before, after in decision.transitions:
            metrics.ORDER_TRANSITIONS.labels(before.value if before else "NONE", after.value).inc()
        paid_at = decision.state.paid_at
        for group in decision.placed_groups:
            if paid_at and group.placed_at:
                metrics.PAYMENT_TO_SUPPLIER_ORDER.observe(max((group.placed_at - paid_at).total_seconds(), 0.0))

    def _outputs(self, message: Any, event: OrderEvent, decision: Decision) -> list[Output]:
        store = decision.state.store_id.encode()
        out: list[Output] = []
        for command in decision.commands:
            out.append((topics.ORDERS_COMMANDS, command.order_id.encode(), encode(command)))
            metrics.ORDER_COMMANDS.labels(command.type.value).inc()
        for notification in decision.notifications:
            out.append((topics.NOTIFICATIONS, store, encode(notification)))
        for show in decision.storefront:
            out.append((topics.STOREFRONT_COMMANDS, store, encode(show)))
        for alert in decision.alerts:
            out += alert_outputs(alert)
        for reason in decision.refused:
            out.append(dead_letter(message, DeadLetterReason.INVALID_IN_STATE, reason, log_detail=True))
        for parked, reason in decision.refused_events:
            detail = f"event {parked.event_id} ({parked.type.value}) waited and was refused: {reason}"
            out.append(dead_letter(message, DeadLetterReason.INVALID_IN_STATE, detail, encode(parked), log_detail=True))
        return out

    def archive_marker(self, body: dict[str, Any], now: datetime) -> dict[str, Any] | None:
        if body.get("since") is None and body.get("state") and not is_archived(body):  # written before "since"
            body = {**body, "since": status_since(OrderState.model_validate(body["state"])).timestamp()}
        return order_marker(body, now) if order_archivable(body, now - self.keep) else None

    async def resend_recovered(self) -> int:
        """Send again the outboxes of recovered records this worker owns."""
        resent = await self.store.resend_recovered(self.active_partitions())
        if resent:
            log.warning("sent again the outputs of %d recovered order transitions", resent)
        return resent

    # ------------------------------------------------------------------ #
    # deadlines and gauges
    # ------------------------------------------------------------------ #

    def scan_deadlines(self, now: datetime | None = None) -> int:
        """Publish a TIMER event for every passed deadline of the orders this worker owns."""
        now = now or datetime.now(timezone.utc)
        published = 0
        for key in self.due_keys(now):
            state = self.load(key)
            if state is None:
                continue
            for deadline in deadlines(state, self.config):
                if deadline.due_at > now:
                    break
                if not self.first_firing(deadline.event_id(key)):
                    continue
                self.outputs.add(topics.ORDERS_EVENTS, None, key.encode(), encode(deadline.timer(state, now)))
                metrics.ORDER_TIMERS.labels(deadline.kind.value).inc()
                published += 1
        return published

    def refresh_gauges(self) -> None:
        active = self.active_partitions()
        counts = {s.value: 0 for s in OrderStatus}
        oldest: dict[str, float] = {}  # open status -> earliest "since" (epoch seconds)
        for key, raw in list(self.table.data.items()):
            if self.partition_of(key) not in active:
                continue
            body = orjson.loads(raw)
            status = body.get("status")
            if status in counts:
                counts[status] += 1
                since = body.get("since")
                if status not in TERMINAL_VALUES:
                    if since is None:  # written before "since" existed
                        since = status_since(decode_record(raw)[1]).timestamp()
                    if status not in oldest or since < oldest[status]:
                        oldest[status] = since
        for status, count in counts.items():
            metrics.ORDERS_BY_STATUS.labels(status).set(count)
        now = time.time()
        for status in OPEN_STATUSES:
            since = oldest.get(status)
            age = max(0.0, now - since) if since is not None else 0.0
            metrics.ORDER_STATUS_AGE.labels(status).set(age)
        metrics.TABLE_ENTRIES.labels("orders").set(len(self.table.data))

    def owned_orders(self, status: str | None, min_age_s: float = 0.0) -> list[dict[str, Any]]:
        """Orders of the partitions this worker owns (in ``status``, in it for ``min_age_s`` or more)."""
        active = self.active_partitions()
        now = time.time()
        found = []
        for key, raw in list(self.table.data.items()):
            if self.partition_of(key) not in active:
                continue
            body = orjson.loads(raw)
            current = body.get("status")
            if current is None or (status is not None and current != status):
                continue
            since = body.get("since")
            if since is None:
                since = status_since(decode_record(raw)[1]).timestamp()
            age = max(0.0, now - since)
            if age < min_age_s:
                continue
            entry = {"order_id": key, "status": current, "in_status_s": round(age, 3)}
            if is_archived(body):
                entry["archived"] = True
            found.append(entry)
        found.sort(key=lambda o: -o["in_status_s"])
        return found

    def load(self, order_id: str) -> OrderState | None:
        """The order's state (None: unknown, or archived: see ``archived``)."""
        body = self.body(order_id)
        return None if body is None or is_archived(body) else OrderState.model_validate(body["state"])


def register(engine: Engine) -> OrderProcessor:
    processor = OrderProcessor(engine)
    app = engine.app
    processor.store.attach(app, processor.index_due)
    run_agent(engine, engine.order_events, "orders", processor.handle)

    @engine.tables.orders.on_recover
    async def resend_recovered() -> None:
        await processor.resend_recovered()

    @app.timer(interval=engine.settings.order_scan_interval)
    async def scan_deadlines() -> None:
        if not app.rebalancing:
            processor.scan_deadlines()

    @app.timer(interval=engine.settings.gauge_interval)
    async def refresh_order_gauges() -> None:
        processor.refresh_gauges()

    processor.schedule_archive()

    return processor
