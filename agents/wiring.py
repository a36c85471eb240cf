"""What the agents wire the same way.

- ``run_agent``: a Faust agent that hands each event to a handler, times it
  (``ops_event_processing_seconds{agent}``) and sends the buffered outputs
  when they are due (streams/outputs.py).
- ``dead_letter``: the ``deadletter`` output of a refused record, counted and
  logged by ids (never the value: it may hold personal data).
- ``active_partitions``: the partitions of a topic this worker owns now.
- ``refusal``: the dead-letter reason and text of a record pydantic refused.
- ``KeyedMachine``: what the orders and video agents share: one state machine
  per key in an ``OutboxTable``, a deadline index fed by the table, and a
  timer's scan that publishes each passed deadline once.

Each agent's handling is timed (``ops_event_processing_seconds{agent}``) and
lets the loop run other tasks (the web server's requests) at least every
``YIELD_AFTER_S`` of handling.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

import faust
import orjson
from aiokafka.partitioner import murmur2
from pydantic import ValidationError

from connectors import metrics
from models.archive import archived_detail, is_archived
from models.events import Alert, AlertRecord, DeadLetter, DeadLetterReason
from streams import topics
from streams.app import Engine
from streams.codecs import encode
from streams.outbox import Output, OutboxTable

log = logging.getLogger(__name__)


#: Longest stretch of handling before the agent lets the loop run other tasks, s.
YIELD_AFTER_S = 0.002
#: Keys one step of a table sweep reads before it lets the loop run again.
SWEEP_SLICE = 2000


def run_agent(engine: Engine, topic: faust.TopicT, name: str, handle: Callable[[faust.EventT], None]) -> Any:
    """An agent ``name`` on ``topic`` calling ``handle`` for each event."""
    outputs = engine.outputs
    observe = metrics.PROCESSING_SECONDS.labels(name).observe

    async def agent(stream: faust.StreamT) -> None:
        # A buffered stream hands its events over without ever yielding to the
        # loop: a fetched batch of a few hundred would hold the web server's
        # requests (the webhook ingress) for tens of milliseconds.
        clock = time.perf_counter
        since = clock()
        async for event in stream.events():
            started = clock()
            handle(event)
            observe(clock() - started)
            if outputs.due():
                await outputs.send()
                since = clock()
            elif clock() - since > YIELD_AFTER_S:
                await asyncio.sleep(0)
                since = clock()

    agent.__name__ = name
    return engine.app.agent(topic, name=name)(agent)


def dead_letter(
    message: Any, reason: DeadLetterReason, detail: str, value: bytes | None = None, log_detail: bool = False
) -> Output:
    """The ``deadletter`` record of ``message`` (``value`` in place of its own, if given)."""
    record = DeadLetter.of(message, reason, detail, value)
    metrics.DEADLETTERS.labels(reason.value).inc()
    extra = detail[:300].replace("\n", " ") if log_detail else ""
    log.warning("deadletter %s[%s]@%s: %s %s", message.topic, message.partition, message.offset, reason.value, extra)
    return (topics.DEADLETTER, message.topic.encode(), encode(record))


def alert_outputs(alert: Alert) -> list[Output]:
    """An alert raised off its store's partition (an order's, a webhook's): on ``alerts``, and
    into the store's alert table through ``inventory.commands`` (``AlertRecord``), counted."""
    store = alert.store_id.encode()
    metrics.ALERTS_EMITTED.labels(alert.type.value, alert.status.value).inc()
    return [(topics.ALERTS, store, encode(alert)), (topics.INVENTORY_COMMANDS, store, encode(AlertRecord.of(alert)))]


def active_partitions(app: faust.App, topic: str) -> set[int]:
    return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}


def sweep_timer(
    app: faust.App,
    interval_s: float,
    name: str,
    keys: Callable[[], Iterable[str]],
    step: Callable[[list[str], datetime], object],
) -> None:
    """A timer that every ``interval_s`` hands a table's ``keys()`` to ``step(keys, now)``,
    ``SWEEP_SLICE`` at a time (the agents' loop goes on between slices), and never while
    rebalancing: the next sweep covers the partitions a rebalance brings. Used by the
    alerts' purge and the orders' and video jobs' archive."""

    async def sweep() -> None:
        todo = list(keys())
        now = datetime.now(timezone.utc)
        for start in range(0, len(todo), SWEEP_SLICE):
            if app.rebalancing:
                return
            step(todo[start : start + SWEEP_SLICE], now)
            await asyncio.sleep(0)

    sweep.__name__ = name
    app.timer(interval=interval_s, name=name)(sweep)


def refusal(exc: ValidationError) -> tuple[DeadLetterReason, str]:
    """Why pydantic refused a record: not JSON at all, or JSON against the schema; and where and what."""
    invalid_json = any(err["type"] == "json_invalid" for err in exc.errors())
    return (DeadLetterReason.INVALID_JSON if invalid_json else DeadLetterReason.SCHEMA_VIOLATION), error_text(exc)


def error_text(exc: ValidationError) -> str:
    """The first five errors of a refusal, each with where it is."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(message)"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - 5
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


class KeyedMachine(ABC):
    """One state machine per key (an order, a video job) kept in an ``OutboxTable``.

    Keys live on the partitions of ``input_topic`` (the producer's key); every
    worker indexes the deadlines of the records its table holds (``index_due``,
    fed by recovery and standbys too) and a timer scans the passed ones of the
    partitions it owns (``due_keys``), publishing each deadline's event once in
    a quiet period (``first_firing``). The subclass decodes and decides
    (``_handle``) and says what a passed deadline publishes.

    A sweep (``archive``, every ``OPS_ARCHIVE_INTERVAL_S``) replaces the
    records the subclass finds closed for its keep period (``archive_marker``)
    by a marker (models/archive.py), in the partitions this worker owns and
    only once the key's outputs are delivered (``OutboxTable.settled``). An
    event for an archived key goes to ``deadletter`` (``refuse_archived``).
    """

    #: The topic whose partitions the machine's keys live on.
    input_topic: str
    #: The table's name (``ops_archived_total{table}``) and what a key is ("order").
    table_name: str
    what: str

    def __init__(self, engine: Engine, table: Any, scan_interval_s: float) -> None:
        self.engine = engine
        self.app = engine.app
        self.table = table
        self.outputs = engine.outputs
        self.partitions = engine.settings.partitions
        self.store = OutboxTable(table, self.outputs)
        #: key -> its earliest deadline (active and standby partitions).
        self.next_due: dict[str, datetime] = {}
        #: TIMER event ids published, and when (monotonic): not published twice in a row.
        self.fired: dict[str, float] = {}
        self._quiet_s = max(30.0, 6 * scan_interval_s)

    def handle(self, event: faust.EventT) -> None:
        message = event.message
        try:
            self._handle(message)
        except Exception as exc:  # one bad message must not stop the worker
            log.exception("failed to process %s[%s]@%s", message.topic, message.partition, message.offset)
            self.dead(message, DeadLetterReason.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}")

    @abstractmethod
    def _handle(self, message: Any) -> None:
        """Decode one record, decide, and write the key's new record with its outputs."""

    @abstractmethod
    def archive_marker(self, body: dict[str, Any], now: datetime) -> dict[str, Any] | None:
        """The marker that replaces this (parsed) record now, or None if it stays."""

    def body(self, key: str) -> dict[str, Any] | None:
        """The key's record, parsed (None: no record)."""
        raw = self.table.data.get(key)
        return None if raw is None else orjson.loads(raw)

    def archived(self, key: str) -> dict[str, Any] | None:
        """The key's archive marker, or None if the key is not archived."""
        body = self.body(key)
        return body if is_archived(body) else None

    def refuse_archived(self, message: Any, key: str, marker: dict[str, Any]) -> None:
        """An event for an archived key: to ``deadletter`` (nothing accepted is lost)."""
        self.dead(message, DeadLetterReason.ARCHIVED, archived_detail(self.what, key, marker))

    def archive(self, keys: Iterable[str], now: datetime | None = None) -> int:
        """Replace the records among ``keys`` that ``archive_marker`` closes by their
        marker (the table and its changelog), in the partitions this worker owns,
        if the key's outputs are delivered; they leave the deadline index. Returns
        how many were archived."""
        now = now or datetime.now(timezone.utc)
        active = self.active_partitions()
        data = self.table.data
        archived = 0
        for key in keys:
            raw = data.get(key)
            if raw is None:
                continue
            partition = self.partition_of(key)
            if partition not in active or not self.store.settled(key):
                continue
            marker = self.archive_marker(orjson.loads(raw), now)
            if marker is None:
                continue
            self.store.replace(partition, key, marker)
            self.next_due.pop(key, None)
            archived += 1
        if archived:
            metrics.ARCHIVED.labels(self.table_name).inc(archived)
            log.info("archived %d %s records", archived, self.table_name)
        return archived

    def schedule_archive(self) -> None:
        """The sweep: ``archive`` every ``OPS_ARCHIVE_INTERVAL_S`` (``sweep_timer``)."""
        sweep_timer(self.app, self.engine.settings.archive_interval_s, f"archive_{self.table_name}",
                    lambda: self.table.data, self.archive)

    def dead(self, message: Any, reason: DeadLetterReason, detail: str) -> None:
        topic, key, value = dead_letter(message, reason, detail, log_detail=True)
        self.outputs.add(topic, None, key, value)

    def index_due(self, key: str, body: dict[str, Any] | None) -> None:
        """Recovery (or a standby) read a record: index its deadline."""
        due = body.get("due") if body else None
        if due:
            self.next_due[key] = datetime.fromisoformat(due)
        else:
            self.next_due.pop(key, None)

    def set_due(self, key: str, due: datetime | None) -> None:
        """The agent wrote a record with this deadline (None: none)."""
        if due is None:
            self.next_due.pop(key, None)
        else:
            self.next_due[key] = due

    def active_partitions(self) -> set[int]:
        return active_partitions(self.app, self.input_topic)

    def partition_of(self, key: str) -> int:
        return (murmur2(key.encode()) & 0x7FFFFFFF) % self.partitions

    def due_keys(self, now: datetime) -> Iterator[str]:
        """Keys of the partitions this worker owns whose deadline has passed (forgets old firings first)."""
        clock = time.monotonic()
        self.fired = {k: v for k, v in self.fired.items() if clock - v < self._quiet_s}
        active = self.active_partitions()
        for key, due in list(self.next_due.items()):
            if due <= now and self.partition_of(key) in active:
                yield key

    def first_firing(self, event_id: str) -> bool:
        """Whether a deadline's event is not yet published in the quiet period (and mark it published)."""
        if event_id in self.fired:
            return False
        self.fired[event_id] = time.monotonic()
        return True
