"""Supplier sync runs: requests, the run's state, its pages and its schedule (pure: no I/O).

A sync request (``sync.requests``, key ``store_id``) starts a run of the store
unless one is RUNNING. The run's id is the uuid5 of the request id: a request
delivered twice (a replay, two workers publishing the same scheduled slot) is
the same run. The run is cut into pages of the store's tracked products
(``SyncJob``, ``sync.jobs``) for the syncer; each page comes back as one
``SyncProgress`` (``sync.progress``) and counts once, however often it is
delivered. When every page is in, the run is COMPLETED, or FAILED if a page
failed (the supplier's error). A run RUNNING past its deadline is FAILED by a
``SyncDeadline`` the worker's timer publishes. A FAILED run opens a
SYNC_FAILURE alert (CRITICAL) whose id comes from the run id.

The schedule (``due_request``): HIGH stores every ``high_interval_s``,
STANDARD every ``standard_interval_s``, and every store a FULL run each day
at ``full_at`` (UTC). A slot is a time bucket; the request id names the store,
the tier and the slot, so every worker that finds a slot due publishes the
same request.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal
from enum import Enum
from typing import Annotated, Literal

from pydantic import Field

from models.alerts import open_alert
from models.events import (
    Alert,
    AlertType,
    CountryCode,
    Event,
    Ident,
    Money,
    Provider,
    SourceId,
    SyncFrequency,
    Text,
    UtcDatetime,
    trusted,
)
from models.ids import name_uuid

_RUN_NS = uuid.UUID("3c0f6f4e-2f7b-4a1e-9a53-5d7c1e2b8a90")

#: Finished runs kept per store (the table entry's history).
HISTORY = 10


class SyncTier(str, Enum):
    HIGH = "HIGH"
    STANDARD = "STANDARD"
    FULL = "FULL"
    MANUAL = "MANUAL"


class RunStatus(str, Enum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class SyncRequest(Event):
    """Topic ``sync.requests``, key ``store_id``: run a sync of the store."""

    kind: Literal["REQUEST"] = "REQUEST"
    request_id: Annotated[str, Field(min_length=1, max_length=300)]
    store_id: Ident
    tier: SyncTier
    requested_at: UtcDatetime


class SyncItem(Event):
    """One tracked store product, as the syncer needs it."""

    product_id: Ident
    variant_id: Ident | None = None
    provider: Provider
    source_id: SourceId
    last_cost: Money
    last_stock: int = Field(ge=0)
    last_available: bool
    #: The shipping cost the engine knows (the last freight quote applied; 0 before any):
    #: kept while the product has no quote of its own yet.
    last_shipping: Money = Decimal("0")


class SyncJob(Event):
    """Topic ``sync.jobs``, key ``store_id``: one page of a run for the syncer."""

    run_id: str
    store_id: Ident
    page: int = Field(ge=0)
    pages: int = Field(ge=1)
    items: tuple[SyncItem, ...]
    #: The store's ``ship_to_country``: where the freight quotes are for (records older
    #: than the field read as US, the setting's default).
    ship_to_country: CountryCode = "US"


class SyncProgress(Event):
    """Topic ``sync.progress``, key ``store_id``: the syncer's outcome of one page."""

    kind: Literal["PROGRESS"] = "PROGRESS"
    run_id: str
    store_id: Ident
    page: int = Field(ge=0)
    fetched: int = Field(ge=0)
    failed: int = Field(ge=0)
    changed: int = Field(ge=0)
    error: Text | None = None
    at: UtcDatetime


class SyncDeadline(Event):
    """Topic ``sync.progress``, key ``store_id``: a worker's timer found the run past its deadline."""

    kind: Literal["DEADLINE"] = "DEADLINE"
    run_id: str
    store_id: Ident
    at: UtcDatetime


class SyncRun(Event):
    """A run's record: the ``sync-runs`` table (current + history) and topic ``sync.runs``."""

    run_id: str
    request_id: str
    store_id: Ident
    tier: SyncTier
    status: RunStatus
    started_at: UtcDatetime
    finished_at: UtcDatetime | None = None
    total: int = 0
    done: int = 0
    failed: int = 0
    changed: int = 0
    pages: int = 0
    pages_done: tuple[int, ...] = ()
    error: Text | None = None
    deadline_at: UtcDatetime

    @property
    def duration_s(self) -> float | None:
        return None if self.finished_at is None else (self.finished_at - self.started_at).total_seconds()


class StoreRuns(Event):
    """The ``sync-runs`` table value of one store: its current (or last) run and the ones before."""

    store_id: Ident
    current: SyncRun | None = None
    history: tuple[SyncRun, ...] = ()
    #: When the last run of each tier started (the schedule's memory).
    last_started: dict[SyncTier, UtcDatetime] = {}

    def knows(self, run_id: str) -> SyncRun | None:
        if self.current is not None and self.current.run_id == run_id:
            return self.current
        return next((r for r in self.history if r.run_id == run_id), None)


@dataclass(frozen=True)
class TrackedProduct:
    product_id: str
    variant_id: str | None
    provider: str
    source_id: str
    cost: Decimal
    stock: int
    available: bool
    shipping: Decimal = Decimal("0")


@dataclass(frozen=True)
class Outcome:
    """What handling one sync message decided: the store's new entry (None: unchanged),
    the jobs to send, the run records to publish, alerts to open, and how it was counted."""

    runs: StoreRuns | None
    jobs: tuple[SyncJob, ...] = ()
    published: tuple[SyncRun, ...] = ()
    alerts: tuple[Alert, ...] = ()
    result: str = "IGNORED"
    #: Runs that finished with this message (for the metrics).
    finished: tuple[SyncRun, ...] = ()


def run_id_of(request_id: str) -> str:
    return name_uuid(_RUN_NS, request_id)


def _pages(
    run_id: str, store_id: str, products: list[TrackedProduct], page_size: int, ship_to_country: str
) -> tuple[SyncJob, ...]:
    ordered = sorted(products, key=lambda p: (p.provider, p.source_id, p.product_id, p.variant_id or ""))
    chunks = [ordered[i : i + page_size] for i in range(0, len(ordered), page_size)]
    return tuple(
        SyncJob(
            run_id=run_id,
            store_id=store_id,
            page=n,
            pages=len(chunks),
            items=tuple(
                # The tracked values were validated when the product's state took them.
                trusted(
                    SyncItem,
                    product_id=p.product_id,
                    variant_id=p.variant_id,
                    provider=p.provider,
                    source_id=p.source_id,
                    last_cost=p.cost,
                    last_stock=p.stock,
                    last_available=p.available,
                    last_shipping=p.shipping,
                )
                for p in chunk
            ),
            ship_to_country=ship_to_country,
        )
        for n, chunk in enumerate(chunks)
    )


def _finish(runs: StoreRuns, run: SyncRun, status: RunStatus, at: datetime, error: str | None) -> Outcome:
    ended = run.model_copy(update={"status": status, "finished_at": max(at, run.started_at), "error": error})
    new = runs.model_copy(update={"current": ended})
    alerts: tuple[Alert, ...] = ()
    if status is RunStatus.FAILED:
        alerts = (failure_alert(ended),)
    return Outcome(new, published=(ended,), alerts=alerts, result=status.value, finished=(ended,))


def failure_alert(run: SyncRun) -> Alert:
    """The SYNC_FAILURE alert of a FAILED run (its id comes from the run id: a replay opens the same)."""
    return open_alert(
        subject_key=f"sync|{run.store_id}|{run.run_id}",
        store_id=run.store_id,
        product_id=None,
        variant_id=None,
        alert_type=AlertType.SYNC_FAILURE,
        title=f"Supplier sync failed ({run.tier.value})",
        message=(run.error or "the sync failed")[:2000],
        metadata={
            "run_id": run.run_id,
            "tier": run.tier.value,
            "total": str(run.total),
            "done": str(run.done),
            "failed": str(run.failed),
        },
        at=run.finished_at or run.started_at,
        trigger_micros=0,
    )


def start_run(
    runs: StoreRuns | None,
    request: SyncRequest,
    products: list[TrackedProduct],
    now: datetime,
    page_size: int,
    timeout_s: float,
    ship_to_country: str = "US",
) -> Outcome:
    """A request: a new run and its pages, or refused (the store has a run RUNNING), or a
    duplicate (its run exists already; while it runs, its pages are sent again).
    ``ship_to_country``: the store's setting, carried by each page for the freight quotes."""
    runs = runs or StoreRuns(store_id=request.store_id)
    run_id = run_id_of(request.request_id)
    if (now - request.requested_at).total_seconds() > timeout_s:
        return Outcome(None, result="EXPIRED")  # a request replayed long after: its slot has passed
    known = runs.knows(run_id)
    if known is not None:
        if known.status is RunStatus.RUNNING:
            # A replay after a crash may have lost the pages: send them again (the syncer's
            # work is idempotent, a page counts once).
            jobs = (
                _pages(run_id, request.store_id, products, page_size, ship_to_country)
                if known.total == len(products)
                else ()
            )
            return Outcome(None, jobs=jobs, published=(known,), result="DUPLICATE")
        return Outcome(None, published=(known,), result="DUPLICATE")
    current = runs.current
    prior: tuple[Outcome, ...] = ()
    if current is not None and current.status is RunStatus.RUNNING:
        if now < current.deadline_at:
            return Outcome(None, result="REFUSED")
        prior = (_finish(runs, current, RunStatus.FAILED, now, "timed out: no outcome of every page in time"),)
        runs = prior[0].runs  # type: ignore[assignment]
    jobs = _pages(run_id, request.store_id, products, page_size, ship_to_country)
    run = SyncRun(
        run_id=run_id,
        request_id=request.request_id,
        store_id=request.store_id,
        tier=request.tier,
        status=RunStatus.RUNNING,
        started_at=now,
        total=len(products),
        pages=len(jobs),
        deadline_at=now + timedelta(seconds=timeout_s),
    )
    history = runs.history
    if runs.current is not None:
        history = ((runs.current,) + history)[:HISTORY]
    last_started = {**runs.last_started, request.tier: now}
    new = runs.model_copy(update={"current": run, "history": history, "last_started": last_started})
    outcome = Outcome(new, jobs=jobs, published=(run,), result="STARTED")
    if not jobs:  # nothing tracked: done at once
        done = _finish(new, run, RunStatus.COMPLETED, now, None)
        outcome = Outcome(done.runs, published=(run,) + done.published, result="STARTED", finished=done.finished)
    if prior:
        p = prior[0]
        outcome = Outcome(
            outcome.runs,
            jobs=outcome.jobs,
            published=p.published + outcome.published,
            alerts=p.alerts + outcome.alerts,
            result=outcome.result,
            finished=p.finished + outcome.finished,
        )
    return outcome


def apply_progress(runs: StoreRuns | None, progress: SyncProgress) -> Outcome:
    """One page's outcome: counted once; the last page ends the run."""
    if runs is None:
        return Outcome(None, result="UNKNOWN_RUN")
    run = runs.current
    if run is None or run.run_id != progress.run_id:
        old = runs.knows(progress.run_id)
        return Outcome(None, published=() if old is None else (old,), result="STALE" if old else "UNKNOWN_RUN")
    if progress.page in run.pages_done or progress.page >= run.pages:
        if run.status is not RunStatus.RUNNING:
            # The end was decided already; its records may not have left before a crash.
            alerts = (failure_alert(run),) if run.status is RunStatus.FAILED else ()
            return Outcome(None, published=(run,), alerts=alerts, result="DUPLICATE")
        return Outcome(None, result="DUPLICATE")
    if run.status is not RunStatus.RUNNING:
        return Outcome(None, result="LATE")  # a page after the deadline failed the run
    error = run.error
    if progress.error and not error:
        error = f"page {progress.page}: {progress.error}"[:2000]  # the record's Text limit
    moved = run.model_copy(
        update={
            "done": run.done + progress.fetched + progress.failed,
            "failed": run.failed + progress.failed,
            "changed": run.changed + progress.changed,
            "pages_done": tuple(sorted(run.pages_done + (progress.page,))),
            "error": error,
        }
    )
    runs = runs.model_copy(update={"current": moved})
    if len(moved.pages_done) < moved.pages:
        return Outcome(runs, published=(moved,), result="PROGRESS")
    status = RunStatus.FAILED if moved.error else RunStatus.COMPLETED
    return _finish(runs, moved, status, progress.at, moved.error)


def apply_deadline(runs: StoreRuns | None, deadline: SyncDeadline) -> Outcome:
    """A timer's word that a run is past its deadline: FAILED, if it still runs."""
    run = None if runs is None else runs.current
    if runs is None or run is None or run.run_id != deadline.run_id or run.status is not RunStatus.RUNNING:
        return Outcome(None, result="IGNORED")
    if deadline.at < run.deadline_at:
        return Outcome(None, result="EARLY")
    return _finish(runs, run, RunStatus.FAILED, deadline.at, "timed out: no outcome of every page in time")


# --------------------------------------------------------------------------- #
# the schedule
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Schedule:
    high_interval_s: int = 900
    standard_interval_s: int = 3600
    full_at: time = time(3, 0)


def parse_time_of_day(text: str) -> time:
    """``HH:MM`` (UTC) as a time."""
    hours, _, minutes = text.strip().partition(":")
    return time(int(hours), int(minutes or 0))


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def due_request(
    store_id: str,
    frequency: SyncFrequency,
    runs: StoreRuns | None,
    now: datetime,
    schedule: Schedule,
) -> SyncRequest | None:
    """The request of the store's slot that is due now, or None.

    FULL: once a day, for the last ``full_at`` (UTC) passed, unless a FULL run
    started since. Otherwise the tier's slot (``now`` in buckets of the tier's
    interval since the epoch) is due unless any run started in it.
    """
    now = now.astimezone(timezone.utc)
    last = runs.last_started if runs is not None else {}
    full_moment = datetime.combine(now.date(), schedule.full_at, tzinfo=timezone.utc)
    if full_moment > now:
        full_moment -= timedelta(days=1)
    last_full = last.get(SyncTier.FULL)
    if last_full is None or last_full < full_moment:
        return SyncRequest(
            request_id=f"{store_id}:FULL:{full_moment.date().isoformat()}",
            store_id=store_id,
            tier=SyncTier.FULL,
            requested_at=now,
        )
    tier = SyncTier.HIGH if frequency is SyncFrequency.HIGH else SyncTier.STANDARD
    interval = schedule.high_interval_s if tier is SyncTier.HIGH else schedule.standard_interval_s
    slot = _epoch(now) // interval * interval
    slot_start = datetime.fromtimestamp(slot, tz=timezone.utc)
    latest = max(last.values(), default=None)
    if latest is not None and latest >= slot_start:
        return None
    return SyncRequest(
        request_id=f"{store_id}:{tier.value}:{slot}", store_id=store_id, tier=tier, requested_at=now
    )
