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

Deadlines: a job that waits QUEUED longer than ``OPS_VIDEO_QUEUE_TIMEOUT``,
or stays PROCESSING longer than ``OPS_VIDEO_ACTIVE_TIMEOUT`` from the render's
start, gets a TIMER event from
``scan_deadlines`` (a timer on every worker, over the jobs of the partitions
it owns), published on the job's own partition and handled in order with its
other events. The machine fails the attempt and retries it.

A table value is JSON: ``{"status", "due", "job", "outbox"}``. A job final
(COMPLETED, FAILED, CANCELLED) for ``OPS_VIDEO_KEEP_DAYS`` after its last
change is archived by the hourly sweep (``KeyedMachine.archive``): its value
becomes ``{"status", "since", "archived": true, "archived_at", "video_id",
"store_id", "product_id"}`` (models/archive.py), and a later event for it
(a request, a retry, a renderer outcome) goes to ``deadletter`` (``ARCHIVED``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from pydantic import ValidationError

from agents.wiring import KeyedMachine, refusal, run_agent
from connectors import metrics
from models.archive import is_archived, video_archivable, video_marker
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
from streams.outbox import Output

log = logging.getLogger(__name__)


def video_config(engine: Engine) -> VideoConfig:
    s = engine.settings
    return VideoConfig(
        max_auto_retries=s.video_max_retries,
        active_timeout_s=s.video_active_timeout,
        queue_timeout_s=s.video_queue_timeout,
    )


def record_body(job: VideoJob) -> dict[str, Any]:
    return {
        "status": job.status.value,
        "due": job.due_at.isoformat() if job.due_at else None,
        "job": orjson.Fragment(job.model_dump_json()),
    }


class VideoProcessor(KeyedMachine):
    input_topic = topics.VIDEO_REQUESTS
    table_name = "video-jobs"
    what = "video"

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine, engine.tables.video_jobs, engine.settings.video_scan_interval)
        self.config = video_config(engine)
        self.keep = timedelta(days=engine.settings.video_keep_days)

    # ------------------------------------------------------------------ #

    def _handle(self, message: Any) -> None:
        raw = message.value or b""
        try:
            event = VideoRequest.model_validate_json(raw) if message.topic == topics.VIDEO_REQUESTS else decode_video_event(raw)
        except ValidationError as exc:
            metrics.VIDEO_EVENTS.labels("UNKNOWN", "INVALID").inc()
            self.dead(message, *refusal(exc))
            return
        kind = "REQUEST" if isinstance(event, VideoRequest) else event.type
        key = event.video_id
        if message.key is not None and message.key != key.encode():
            metrics.VIDEO_EVENTS.labels(kind, "INVALID").inc()
            self.dead(message, DeadLetterReason.KEY_MISMATCH, f"message key {message.key!r} is not the video_id {key!r}")
            return
        body = self.body(key)
        if is_archived(body):
            assert body is not None
            metrics.VIDEO_EVENTS.labels(kind, "ARCHIVED").inc()
            self.refuse_archived(message, key, body)
            return
        job = None if body is None else VideoJob.model_validate(body["job"])
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
        self.set_due(key, new.due_at)

    @staticmethod
    def _outputs(decision: VideoDecision) -> list[Output]:
        out: list[Output] = []
        for status in decision.status:
            out.append((topics.VIDEO_STATUS, status.video_id.encode(), encode(status)))
        for command in decision.commands:
            out.append((topics.VIDEO_RENDERS, command.video_id.encode(), encode(command)))
        return out

    def load(self, video_id: str) -> VideoJob | None:
        """The job (None: unknown, or archived: see ``archived``)."""
        body = self.body(video_id)
        return None if body is None or is_archived(body) else VideoJob.model_validate(body["job"])

    def archive_marker(self, body: dict[str, Any], now: datetime) -> dict[str, Any] | None:
        return video_marker(body, now) if video_archivable(body, now - self.keep) else None

    def scan_deadlines(self, now: datetime | None = None) -> int:
        """Publish a TIMER event for every passed deadline of the jobs this worker owns."""
        now = now or datetime.now(timezone.utc)
        published = 0
        for key in self.due_keys(now):
            job = self.load(key)
            if job is None or job.status not in ACTIVE:
                continue
            event = timer(job, now)
            if not self.first_firing(event.event_id):
                continue
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

    processor.schedule_archive()

    return processor
