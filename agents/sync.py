"""Sync runs in the inventory agent's partitions: thin wiring around ``models.sync``.

``sync.requests`` and ``sync.progress`` are keyed by ``store_id`` and
consumed by the inventory agent with the store's snapshots and settings
(``topics.STORE_KEYED_INPUTS``), which hands them here: the store's products
(its tracked products), settings and its ``sync-runs`` entry are local and
written in the store's order. For each message: decode, decide
(``models.sync``), write the entry (value and changelog record), and send the
pages (``sync.jobs``), the run records (``sync.runs``) and alerts.

At-least-once: a replayed request finds its run (same id) and sends the pages
again while the run is RUNNING; a replayed page finds itself counted; a
replayed last page of a finished run sends the end records again (the alert
id comes from the run id). A crash that loses the pages leaves the run to
its deadline (``OPS_SYNC_RUN_TIMEOUT``): FAILED, with a SYNC_FAILURE alert.

``SyncScheduler`` runs on each worker's timer over the stores whose
partitions it owns: a due slot becomes a ``SyncRequest`` (its id names the
slot: two workers that both see it due, in a rebalance, publish one run), a
RUNNING run past its deadline a ``SyncDeadline`` on ``sync.progress``, so
that it is decided in the store's order like everything else.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka.partitioner import murmur2

from connectors import metrics
from models.events import DeadLetterReason, SyncFrequency
from models.product import split_product_key, state_fields
from models.sync import (
    Outcome,
    RunStatus,
    Schedule,
    StoreRuns,
    SyncDeadline,
    SyncProgress,
    SyncRequest,
    TrackedProduct,
    apply_deadline,
    apply_progress,
    due_request,
    parse_time_of_day,
    start_run,
)
from streams import topics
from streams.app import Engine
from streams.codecs import encode
from streams.tables import entries

if TYPE_CHECKING:
    from agents.inventory import InventoryProcessor

log = logging.getLogger(__name__)


def schedule_of(engine: Engine) -> Schedule:
    s = engine.settings
    return Schedule(
        high_interval_s=s.sync_high_interval,
        standard_interval_s=s.sync_standard_interval,
        full_at=parse_time_of_day(s.sync_full_at),
    )


def load_runs(table: Any, store_id: str) -> StoreRuns | None:
    raw = table.data.get(store_id)
    return None if raw is None else StoreRuns.model_validate_json(raw)


class SyncRuns:
    """Handles ``sync.requests`` and ``sync.progress`` for the inventory agent."""

    def __init__(self, engine: Engine, processor: InventoryProcessor) -> None:
        self.engine = engine
        self.processor = processor
        self.table = engine.tables.sync_runs
        self.outputs = engine.outputs
        self.timeout_s = engine.settings.sync_run_timeout
        self.page_size = engine.settings.sync_page_size

    def tracked(self, store_id: str) -> list[TrackedProduct]:
        """The store's products, as the syncer needs them (provider, source id, last values)."""
        data = entries(self.processor.products)
        found = []
        for key in self.processor.store_keys.of(store_id, data):
            raw = data.get(key)
            if raw is None:
                continue
            _, product_id, variant_id = split_product_key(key)
            # The few fields the syncer needs, without building the whole ProductState
            # (a FULL run reads every product of the store at once).
            fields = state_fields(raw)
            found.append(
                TrackedProduct(
                    product_id=product_id,
                    variant_id=variant_id,
                    provider=fields[1],
                    source_id=fields[2],
                    cost=Decimal(fields[5]),
                    stock=fields[4],
                    available=fields[3],
                    shipping=Decimal(fields[6]),
                )
            )
        return found

    def on_request(self, message: Any) -> None:
        request = self.processor.decode(SyncRequest.model_validate_json, message)
        if request is None or not self._key_is(message, request.store_id):
            return
        outcome = start_run(
            load_runs(self.table, request.store_id),
            request,
            self.tracked(request.store_id),
            datetime.now(timezone.utc),
            self.page_size,
            self.timeout_s,
            self.processor.store_settings(request.store_id).ship_to_country,
        )
        metrics.SYNC_REQUESTS.labels(request.tier.value, outcome.result).inc()
        if outcome.result == "REFUSED":
            log.info("sync request %s refused: store %s has a run RUNNING", request.request_id, request.store_id)
        self.apply(request.store_id, outcome)

    def on_progress(self, message: Any) -> None:
        try:
            kind = orjson.loads(message.value or b"").get("kind")
        except (orjson.JSONDecodeError, AttributeError):
            kind = None
        if kind == "DEADLINE":
            deadline = self.processor.decode(SyncDeadline.model_validate_json, message)
            if deadline is None or not self._key_is(message, deadline.store_id):
                return
            outcome = apply_deadline(load_runs(self.table, deadline.store_id), deadline)
            store_id = deadline.store_id
        else:
            progress = self.processor.decode(SyncProgress.model_validate_json, message)
            if progress is None or not self._key_is(message, progress.store_id):
                return
            outcome = apply_progress(load_runs(self.table, progress.store_id), progress)
            store_id = progress.store_id
        metrics.SYNC_PROGRESS.labels(outcome.result).inc()
        self.apply(store_id, outcome)

    def _key_is(self, message: Any, store_id: str) -> bool:
        if (message.key or b"").decode(errors="replace") == store_id:
            return True
        self.processor.dead(message, DeadLetterReason.KEY_MISMATCH, f"message key is not the store_id {store_id!r}")
        return False

    def apply(self, store_id: str, outcome: Outcome) -> None:
        """Write the store's entry, then send what the decision asks for."""
        key = store_id.encode()
        partition = self.processor._tp.partition
        if outcome.runs is not None:
            value = encode(outcome.runs)
            self.processor.changelog(self.table, partition, store_id, value)
            self.table.data[store_id] = value
        for job in outcome.jobs:
            self.outputs.add(topics.SYNC_JOBS, None, key, encode(job))
        for run in outcome.published:
            self.outputs.add(topics.SYNC_RUNS, None, key, encode(run))
        if outcome.alerts:
            self.processor.send_outbox(store_id, partition, [("a", encode(a)) for a in outcome.alerts])
        for run in outcome.finished:
            metrics.SYNC_RUNS.labels(run.status.value.lower()).inc()
            if run.duration_s is not None:
                metrics.SYNC_DURATION.observe(run.duration_s)
            log.info(
                "sync run %s of %s %s: %d/%d done, %d failed, %d changed%s",
                run.run_id, run.store_id, run.status.value, run.done, run.total, run.failed, run.changed,
                f" ({run.error})" if run.error else "",
            )


class SyncScheduler:
    """Each worker's timer: due syncs and overdue runs of the stores it owns."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.app = engine.app
        self.schedule = schedule_of(engine)
        self.partitions = engine.settings.partitions
        #: message ids published, and when (monotonic): not published again at every tick.
        self.fired: dict[str, float] = {}

    def partition_of(self, store_id: str) -> int:
        return (murmur2(store_id.encode()) & 0x7FFFFFFF) % self.partitions

    def active(self) -> set[int]:
        from agents.wiring import active_partitions

        return active_partitions(self.app, topics.SUPPLIER_SNAPSHOTS)

    def scan(self, now: datetime | None = None, schedule: bool = True) -> int:
        """Publish the due requests and deadlines of the owned stores; how many."""
        now = now or datetime.now(timezone.utc)
        clock = time.monotonic()
        quiet = max(60.0, 4 * self.engine.settings.sync_scan_interval)
        self.fired = {k: v for k, v in self.fired.items() if clock - v < quiet}
        active = self.active()
        tables = self.engine.tables
        outputs = self.engine.outputs
        sent = 0
        stores = set(tables.settings.data.keys()) | set(tables.sync_runs.data.keys())
        for store_id in stores:
            if self.partition_of(store_id) not in active:
                continue
            runs = load_runs(tables.sync_runs, store_id)
            current = None if runs is None else runs.current
            if current is not None and current.status is RunStatus.RUNNING:
                if now >= current.deadline_at and f"deadline:{current.run_id}" not in self.fired:
                    self.fired[f"deadline:{current.run_id}"] = clock
                    deadline = SyncDeadline(run_id=current.run_id, store_id=store_id, at=now)
                    outputs.add(topics.SYNC_PROGRESS, None, store_id.encode(), encode(deadline))
                    sent += 1
                continue
            raw_settings = tables.settings.data.get(store_id)
            if not schedule or raw_settings is None:
                continue  # stores are scheduled once their settings are published
            frequency = orjson.loads(raw_settings).get("sync_frequency", "STANDARD")
            request = due_request(store_id, SyncFrequency(frequency), runs, now, self.schedule)
            if request is None or request.request_id in self.fired:
                continue
            self.fired[request.request_id] = clock
            outputs.add(topics.SYNC_REQUESTS, None, store_id.encode(), encode(request))
            sent += 1
        return sent


def register(engine: Engine) -> SyncScheduler:
    scheduler = SyncScheduler(engine)
    app = engine.app

    @app.timer(interval=engine.settings.sync_scan_interval)
    async def scan_syncs() -> None:
        if app.rebalancing:
            return
        if scheduler.scan(schedule=engine.settings.sync_schedule):
            await engine.outputs.send()

    return scheduler
