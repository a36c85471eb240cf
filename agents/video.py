"""The video agent: ``video.requests`` + ``video.events`` -> the job machine -> ``video-jobs``.

Thin wiring around ``models.video.decide``:

- decode the record (a request on ``video.requests``, a renderer outcome or a
  RETRY / CANCEL / TIMER on ``video.events``); a bad one goes to
  ``deadletter`` with why, and so does a RETRY or CANCEL the job refuses;
- load the job from the table, decide, and write the new job;
- send what the decision asks for: ``video.status`` records and render
  commands on ``video.renders``.

The table's changelog record carries the decision's outputs (its outbox)
until the input offset is committed (streams/outbox.py), so a crash between
the job and its outputs cannot lose them; every output has a deterministic
id (``{video_id}:{attempt}:...``) and the job machine ignores repeats.

Deadlines: a job that stays QUEUED or PROCESSING longer than
``OPS_VIDEO_ACTIVE_TIMEOUT`` in one attempt gets a TIMER event from
``scan_deadlines`` (a timer on every worker, over the jobs of the partitions
it owns), published on the job's own partition and handled in order with its
other events. The machine fails the attempt and retries it.

A table value is JSON: ``{"status", "due", "job", "outbox"}``.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any

import faust
import orjson
from aiokafka.partitioner import murmur2
from pydantic import ValidationError

from agents.wiring import active_partitions, dead_letter, run_agent
from connectors import metrics
from models.events import DeadLetterReason
from models.video import (
    ACTIVE,
    VideoConfig,
    VideoDecision,
    VideoJob,
    VideoRequest,
    VideoStatus,
    decide,
    decode_video_event,
    timer,
)
from streams import topics
from streams.app import Engine
from streams.codecs import encode
from streams.outbox import Output, OutboxTable

log = logging.getLogger(__name__)


def video_config(engine: Engine) -> VideoConfig:
    s = engine.settings
    return VideoConfig(max_auto_retries=s.video_max_retries, active_timeout_s=s.video_active_timeout)


def record_body(job: VideoJob) -> dict[str, Any]:
    return {
        "status": job.status.value,
        "due": job.due_at.isoformat() if job.due_at else None,
        "job": orjson.Fragment(job.model_dump_json()),
    }


def decode_job(raw: bytes) -> VideoJob:
    return VideoJob.model_validate(orjson.loads(raw)["job"])


def _error_text(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(value)'}: {err['msg']}" for err in exc.errors()[:10]
    )


class VideoProcessor:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.app = engine.app
        self.table = engine.tables.video_jobs
        self.outputs = engine.outputs
        self.config = video_config(engine)
        self.partitions = engine.settings.partitions
        self.store = OutboxTable(self.table, self.outputs)
        #: video_id -> the active deadline (active and standby partitions).
        self.next_due: dict[str, datetime] = {}
        #: TIMER event ids published, and when (monotonic): not published twice in a row.
        self.fired: dict[str, float] = {}

    # ------------------------------------------------------------------ #

    def handle(self, event: faust.EventT) -> None:
        message = event.message
        try:
            self._handle(message)
        except Exception as exc:  # one bad message must not stop the worker
            log.exception("failed to process %s[%s]@%s", message.topic, message.partition, message.offset)
            self.dead(message, DeadLetterReason.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}")

    def _handle(self, message: Any) -> None:
        raw = message.value or b""
        try:
            event = VideoRequest.model_validate_json(raw) if message.topic == topics.VIDEO_REQUESTS else decode_video_event(raw)
        except ValidationError as exc:
            invalid = any(err["type"] == "json_invalid" for err in exc.errors())
            reason = DeadLetterReason.INVALID_JSON if invalid else DeadLetterReason.SCHEMA_VIOLATION
            metrics.VIDEO_EVENTS.labels("UNKNOWN", "INVALID").inc()
            self.dead(message, reason, _error_text(exc))
            return
        kind = "REQUEST" if isinstance(event, VideoRequest) else event.type
        key = event.video_id
        if message.key is not None and message.key != key.encode():
            metrics.VIDEO_EVENTS.labels(kind, "INVALID").inc()
            self.dead(message, DeadLetterReason.KEY_MISMATCH, f"message key {message.key!r} is not the video_id {key!r}")
            return
        raw_job = self.table.data.get(key)
        job = None if raw_job is None else decode_job(raw_job)
        decision = decide(job, event, self.config)
        if decision.refused:
            metrics.VIDEO_EVENTS.labels(kind, "REFUSED").inc()
            self.dead(message, DeadLetterReason.INVALID_IN_STATE, decision.refused)
            return
        if decision.duplicate or decision.job is None:
            metrics.VIDEO_EVENTS.labels(kind, "DUPLICATE").inc()
            return
        metrics.VIDEO_EVENTS.labels(kind, "APPLIED").inc()
        if decision.final is not None:
            metrics.VIDEO_JOBS.labels(decision.final.value).inc()
        new = decision.job
        self.store.write(message, key, record_body(new), self._outputs(decision))
        if new.due_at is None:
            self.next_due.pop(key, None)
        else:
            self.next_due[key] = new.due_at

    @staticmethod
    def _outputs(decision: VideoDecision) -> list[Output]:
        out: list[Output] = []
        for status in decision.status:
            out.append((topics.VIDEO_STATUS, status.video_id.encode(), encode(status)))
        for command in decision.commands:
            out.append((topics.VIDEO_RENDERS, command.video_id.encode(), encode(command)))
        return out

    def dead(self, message: Any, reason: DeadLetterReason, detail: str) -> None:
        topic, key, value = dead_letter(message, reason, detail, log_detail=True)
        self.outputs.add(topic, None, key, value)

    # ------------------------------------------------------------------ #

    def index_due(self, key: str, body: dict[str, Any] | None) -> None:
        due = body.get("due") if body else None
        if due:
            self.next_due[key] = datetime.fromisoformat(due)
        else:
            self.next_due.pop(key, None)

    def active_partitions(self) -> set[int]:
        return active_partitions(self.app, topics.VIDEO_REQUESTS)

    def partition_of(self, video_id: str) -> int:
        return (murmur2(video_id.encode()) & 0x7FFFFFFF) % self.partitions

    def load(self, video_id: str) -> VideoJob | None:
        raw = self.table.data.get(video_id)
        return None if raw is None else decode_job(raw)

    def scan_deadlines(self, now: datetime | None = None) -> int:
        """Publish a TIMER event for every passed deadline of the jobs this worker owns."""
        now = now or datetime.now(timezone.utc)
        clock = time.monotonic()
        quiet = max(30.0, 6 * self.engine.settings.video_scan_interval)
        self.fired = {k: v for k, v in self.fired.items() if clock - v < quiet}
        active = self.active_partitions()
        published = 0
        for key, due in list(self.next_due.items()):
            if due > now or self.partition_of(key) not in active:
                continue
            job = self.load(key)
            if job is None or job.status not in ACTIVE:
                continue
            event = timer(job, now)
            if event.event_id in self.fired:
                continue
            self.fired[event.event_id] = clock
            self.outputs.add(topics.VIDEO_EVENTS, None, key.encode(), encode(event))
            published += 1
        return published

    def refresh_gauges(self) -> None:
        active = self.active_partitions()
        counts = {s: 0 for s in VideoStatus}
        for key, raw in list(self.table.data.items()):
            if self.partition_of(key) not in active:
                continue
            status = orjson.loads(raw).get("status")
            if status in VideoStatus.__members__:
                counts[VideoStatus(status)] += 1
        metrics.VIDEO_QUEUE_DEPTH.set(counts[VideoStatus.QUEUED])
        metrics.VIDEO_PROCESSING.set(counts[VideoStatus.PROCESSING])
        metrics.TABLE_ENTRIES.labels("video-jobs").set(len(self.table.data))


def register(engine: Engine) -> VideoProcessor:
    processor = VideoProcessor(engine)
    app = engine.app
    processor.store.attach(app, processor.index_due)
    run_agent(engine, engine.video_inputs, "videos", processor.handle)

    @engine.tables.video_jobs.on_recover
    async def resend_recovered_videos() -> None:
        resent = await processor.store.resend_recovered(processor.active_partitions())
        if resent:
            log.warning("sent again the outputs of %d recovered video job transitions", resent)

    @app.timer(interval=engine.settings.video_scan_interval)
    async def scan_video_deadlines() -> None:
        if not app.rebalancing:
            processor.scan_deadlines()

    @app.timer(interval=engine.settings.gauge_interval)
    async def refresh_video_gauges() -> None:
        processor.refresh_gauges()

    return processor
