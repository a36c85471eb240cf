"""Video renders (pure): the request, the status readers watch, and the job machine.

No I/O here. ``decide(job, event, config) -> VideoDecision``; the video agent
(agents/video.py) decodes a record, calls ``decide``, writes the job to the
``video-jobs`` table and sends what the decision asks for: ``video.status``
records (what a store watches) and ``video.renders`` commands (what the
renderer process, connectors/render, carries out).

Events, in the order of the checks:

- ``VideoRequest`` (topic ``video.requests``): a new ``video_id`` becomes a
  QUEUED job and a render command for attempt 1. A request for a known
  ``video_id`` changes nothing (replays, and the automatic request of a
  product's video, which has a deterministic id: ``auto_video_id``).
- Renderer outcomes (topic ``video.events``): STARTED, PROGRESS, COMPLETED and
  FAILED, each naming its ``attempt``. An outcome of another attempt than the
  job's current one is stale and changes nothing; so does one that cannot move
  the job forward (a PROGRESS below the progress known, a STARTED after a
  PROGRESS, anything after the job ended). A shuffled or duplicated stream of
  one attempt's outcomes ends in the same job.
- FAILED with attempts left (``max_auto_retries``, 2 by default) and a
  retryable reason queues the next attempt at once; otherwise the job is
  FAILED with the reason.
- ``RETRY`` (by hand, the retry view): a FAILED or CANCELLED job is queued
  again as a new attempt, with its automatic retries counted afresh.
- ``CANCEL``: a QUEUED or PROCESSING job is CANCELLED, and a cancel command
  for its attempt goes to the renderer (which stops that render if it runs or
  waits); a later outcome of the attempt is stale.
- ``TIMER``: published by each worker's deadline scanner for jobs it owns
  whose ``due_at`` passed, and retried like any retryable failure. A QUEUED
  attempt waits for a renderer up to ``queue_timeout_s`` ("not started by a
  renderer"): a backlog is normal, so the wait does not count against the
  render; its command carries that deadline (``start_by``) and a renderer
  skips it once passed, so a timed-out attempt is never rendered after its
  successor. The render itself (from STARTED, or the first PROGRESS) may take
  ``active_timeout_s`` ("no outcome from the renderer"). A timer of an older
  attempt, or one that came early, changes nothing.

Every ``video.status`` record has an ``event_id`` made of the video, the
attempt and the step, so a replay produces the same ids and readers dedupe.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Annotated, Literal, Union

from pydantic import Field, StringConstraints, TypeAdapter, model_validator

from models.events import Event, Ident, StoreSettings, SupplierSnapshot, UtcDatetime
from models.ids import name_uuid

# --------------------------------------------------------------------------- #
# The request
# --------------------------------------------------------------------------- #

_AUTO_NS = uuid.UUID("5d1c2b7a-8e34-4f0b-9c61-2a7e9d4b3f58")

#: A video id names files on disk (connectors/render/storage.py): only these.
VideoId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
HexColour = Annotated[str, StringConstraints(pattern=r"^#[0-9A-Fa-f]{6}$")]
ImageUrl = Annotated[str, StringConstraints(min_length=1, max_length=2000)]

MIN_DURATION_S = 5.0
MAX_DURATION_S = 60.0
MAX_IMAGES = 20
MAX_OVERLAYS = 20
MAX_OVERLAY_CHARS = 200
MAX_SCRIPT_CHARS = 2000


class VideoStyle(str, Enum):
    PRODUCT_SHOWCASE = "PRODUCT_SHOWCASE"
    LIFESTYLE = "LIFESTYLE"
    SOCIAL_MEDIA = "SOCIAL_MEDIA"
    AD_CREATIVE = "AD_CREATIVE"
    UNBOXING = "UNBOXING"


class AspectRatio(str, Enum):
    PORTRAIT = "9:16"
    LANDSCAPE = "16:9"
    SQUARE = "1:1"


#: Output size of each aspect ratio (width, height).
RESOLUTIONS: dict[AspectRatio, tuple[int, int]] = {
    AspectRatio.PORTRAIT: (1080, 1920),
    AspectRatio.LANDSCAPE: (1920, 1080),
    AspectRatio.SQUARE: (1080, 1080),
}


class TextOverlay(Event):
    """Text shown from ``start`` to ``end`` seconds of the video."""

    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_OVERLAY_CHARS)]
    start: float = Field(ge=0)
    end: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> TextOverlay:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class VideoRequest(Event):
    """A store asks for a product video. Topic ``video.requests``, key ``video_id``."""

    video_id: VideoId
    store_id: Ident
    product_id: Ident | None = None
    image_urls: tuple[ImageUrl, ...] = Field((), max_length=MAX_IMAGES)
    title: Annotated[str, StringConstraints(max_length=200)] = ""
    description: Annotated[str, StringConstraints(max_length=2000)] = ""
    brand_colors: tuple[HexColour, ...] = Field((), max_length=5, description="#RRGGBB; the first is the title card's")
    style: VideoStyle = VideoStyle.PRODUCT_SHOWCASE
    duration: float = Field(15.0, ge=MIN_DURATION_S, le=MAX_DURATION_S, description="seconds")
    aspect_ratio: AspectRatio = AspectRatio.PORTRAIT
    text_overlays: tuple[TextOverlay, ...] = Field((), max_length=MAX_OVERLAYS)
    voice_over: Annotated[str, StringConstraints(max_length=MAX_SCRIPT_CHARS)] | None = None
    source: Literal["api", "auto", "batch"] = "api"
    requested_at: UtcDatetime

    @model_validator(mode="after")
    def _overlays_inside(self) -> VideoRequest:
        for i, overlay in enumerate(self.text_overlays):
            if overlay.start >= self.duration:
                raise ValueError(f"text_overlays[{i}] starts at or after the end of the video ({self.duration:g} s)")
        return self

    @property
    def resolution(self) -> tuple[int, int]:
        return RESOLUTIONS[self.aspect_ratio]


def auto_video_id(store_id: str, product_id: str) -> str:
    """The id of a product's automatic video: the same however often it is asked."""
    return name_uuid(_AUTO_NS, f"{store_id}|{product_id}")


def auto_request(
    store_id: str, product_id: str, title: str | None, images: tuple[str, ...], at: datetime
) -> VideoRequest:
    """The PRODUCT_SHOWCASE request of a product seen for the first time (store setting ``auto_video``)."""
    return VideoRequest(
        video_id=auto_video_id(store_id, product_id),
        store_id=store_id,
        product_id=product_id,
        image_urls=tuple(images[:MAX_IMAGES]),
        title=(title or "")[:200],
        style=VideoStyle.PRODUCT_SHOWCASE,
        source="auto",
        requested_at=at,
    )


def auto_request_for(snapshot: SupplierSnapshot, settings: StoreSettings) -> VideoRequest | None:
    """The automatic video request of a product seen for the first time (a NEW
    change), or None: the store's ``auto_video`` is off, or there are no images
    to show. Every variant of a product asks with the same id, so the product
    gets one video, however often and wherever it is asked."""
    if not settings.auto_video:
        return None
    images = tuple(url for url in snapshot.images if url.startswith(("http://", "https://")))
    if not images:
        return None
    return auto_request(snapshot.store_id, snapshot.product_id, snapshot.title, images, snapshot.captured_at)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_text(text: str, limit: int) -> str:
    """Text safe to draw: control characters (and bidi overrides) removed, length capped."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub("", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return text[:limit]


# --------------------------------------------------------------------------- #
# Renderer commands and outcomes, control events
# --------------------------------------------------------------------------- #


class RenderCommand(Event):
    """Render ``request`` as attempt ``attempt`` (``cancel``: stop that render if
    it runs). Topic ``video.renders``, key ``video_id``."""

    command_id: str
    video_id: VideoId
    attempt: int = Field(ge=1)
    request: VideoRequest
    cancel: bool = False
    issued_at: UtcDatetime
    start_by: UtcDatetime | None = Field(
        None, description="the job's queue deadline: a renderer skips the command after it (the attempt timed out)"
    )


class VideoResult(Event):
    video_url: str
    thumbnail_url: str
    duration: float
    width: int
    height: int
    format: str = "mp4"
    has_audio: bool = False


class _VideoEvent(Event):
    event_id: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    video_id: VideoId
    occurred_at: UtcDatetime


class RenderStarted(_VideoEvent):
    type: Literal["STARTED"] = "STARTED"
    attempt: int = Field(ge=1)


class RenderProgress(_VideoEvent):
    type: Literal["PROGRESS"] = "PROGRESS"
    attempt: int = Field(ge=1)
    progress: float = Field(ge=0, le=100)


class RenderCompleted(_VideoEvent):
    type: Literal["COMPLETED"] = "COMPLETED"
    attempt: int = Field(ge=1)
    result: VideoResult
    render_seconds: float | None = None


class RenderFailed(_VideoEvent):
    type: Literal["FAILED"] = "FAILED"
    attempt: int = Field(ge=1)
    reason: Annotated[str, StringConstraints(max_length=2000)]
    retryable: bool = True


class RetryRequested(_VideoEvent):
    type: Literal["RETRY"] = "RETRY"


class CancelRequested(_VideoEvent):
    type: Literal["CANCEL"] = "CANCEL"


class VideoTimer(_VideoEvent):
    type: Literal["TIMER"] = "TIMER"
    attempt: int = Field(ge=1)


VideoEvent = Annotated[
    Union[RenderStarted, RenderProgress, RenderCompleted, RenderFailed, RetryRequested, CancelRequested, VideoTimer],
    Field(discriminator="type"),
]
VIDEO_EVENT: TypeAdapter[VideoEvent] = TypeAdapter(VideoEvent)


def decode_video_event(raw: bytes) -> VideoEvent:
    return VIDEO_EVENT.validate_json(raw)


# --------------------------------------------------------------------------- #
# The job and its status
# --------------------------------------------------------------------------- #


class VideoStatus(str, Enum):
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


ACTIVE = frozenset({VideoStatus.QUEUED, VideoStatus.PROCESSING})
FINAL = frozenset({VideoStatus.COMPLETED, VideoStatus.FAILED, VideoStatus.CANCELLED})


class VideoStatusRecord(Event):
    """What readers watch. Topic ``video.status``, key ``video_id``.

    FAILED with ``retrying`` true is followed by QUEUED of the next attempt.
    """

    event_id: str
    video_id: str
    store_id: str
    product_id: str | None = None
    status: VideoStatus
    attempt: int
    progress: float = 0.0
    reason: str | None = None
    retrying: bool = False
    result: VideoResult | None = None
    occurred_at: UtcDatetime


class VideoJob(Event):
    """A job as the ``video-jobs`` table keeps it (key ``video_id``)."""

    video_id: str
    store_id: str
    product_id: str | None = None
    request: VideoRequest
    status: VideoStatus = VideoStatus.QUEUED
    attempt: int = 1
    auto_retries: int = 0  # automatic retries in the current series (a retry by hand resets it)
    progress: float = 0.0
    reason: str | None = None
    result: VideoResult | None = None
    created_at: UtcDatetime
    attempt_started_at: UtcDatetime  # when the current attempt was queued
    due_at: UtcDatetime | None = None  # QUEUED: the queue deadline; PROCESSING: the render's (None: not active)
    updated_at: UtcDatetime
    render_seconds: float | None = None
    control_seen: tuple[str, ...] = ()  # ids of RETRY/CANCEL events applied (the last 20)


@dataclass(frozen=True)
class VideoConfig:
    max_auto_retries: int = 2
    active_timeout_s: float = 900.0  # a render, from its start
    queue_timeout_s: float = 86400.0  # a QUEUED attempt waiting for a renderer


@dataclass
class VideoDecision:
    job: VideoJob | None
    changed: bool = False
    duplicate: bool = False
    refused: str | None = None  # why the event cannot apply (a dead letter / 409)
    status: list[VideoStatusRecord] = field(default_factory=list)
    commands: list[RenderCommand] = field(default_factory=list)
    final: VideoStatus | None = None  # the job reached this final status now


def _status(job: VideoJob, at: datetime, step: str | None = None, retrying: bool = False) -> VideoStatusRecord:
    suffix = step or job.status.value
    return VideoStatusRecord(
        event_id=f"{job.video_id}:{job.attempt}:{suffix}",
        video_id=job.video_id,
        store_id=job.store_id,
        product_id=job.product_id,
        status=job.status,
        attempt=job.attempt,
        progress=job.progress,
        reason=job.reason,
        retrying=retrying,
        result=job.result,
        occurred_at=at,
    )


def _command(job: VideoJob, at: datetime) -> RenderCommand:
    return RenderCommand(
        command_id=f"{job.video_id}:{job.attempt}",
        video_id=job.video_id,
        attempt=job.attempt,
        request=job.request,
        issued_at=at,
        start_by=job.due_at,
    )


def _queue(job: VideoJob, at: datetime, config: VideoConfig, decision: VideoDecision, **changes: object) -> VideoJob:
    """``job`` queued as its next attempt (or the first one): a status record and a command."""
    queued = job.model_copy(
        update={
            "status": VideoStatus.QUEUED,
            "progress": 0.0,
            "result": None,
            "attempt_started_at": at,
            "due_at": at + timedelta(seconds=config.queue_timeout_s),
            "updated_at": at,
            **changes,
        }
    )
    decision.status.append(_status(queued, at))
    decision.commands.append(_command(queued, at))
    return queued


def _fail(job: VideoJob, reason: str, retryable: bool, at: datetime, config: VideoConfig) -> VideoDecision:
    decision = VideoDecision(job, changed=True)
    failed = job.model_copy(
        update={"status": VideoStatus.FAILED, "reason": reason[:2000], "due_at": None, "updated_at": at}
    )
    retry = retryable and job.auto_retries < config.max_auto_retries
    decision.status.append(_status(failed, at, retrying=retry))
    if retry:
        decision.job = _queue(
            failed, at, config, decision, attempt=job.attempt + 1, auto_retries=job.auto_retries + 1
        )
    else:
        decision.job = failed
        decision.final = VideoStatus.FAILED
    return decision


def new_job(request: VideoRequest, at: datetime, config: VideoConfig) -> VideoDecision:
    decision = VideoDecision(None, changed=True)
    seed = VideoJob(
        video_id=request.video_id,
        store_id=request.store_id,
        product_id=request.product_id,
        request=request,
        created_at=at,
        attempt_started_at=at,
        updated_at=at,
    )
    decision.job = _queue(seed, at, config, decision)
    return decision


def check_control(job: VideoJob | None, event: RetryRequested | CancelRequested) -> str | None:
    """Why a retry or cancel by hand is refused now (None: it applies)."""
    if job is None:
        return f"video {event.video_id!r} is unknown"
    if isinstance(event, RetryRequested):
        if job.status not in (VideoStatus.FAILED, VideoStatus.CANCELLED):
            return f"only a FAILED or CANCELLED video can be retried; this one is {job.status.value}"
    elif job.status not in ACTIVE:
        return f"only a QUEUED or PROCESSING video can be cancelled; this one is {job.status.value}"
    return None


def decide(
    job: VideoJob | None, event: VideoRequest | VideoEvent, config: VideoConfig = VideoConfig()
) -> VideoDecision:
    """The job after ``event``, and what to tell the world."""
    if isinstance(event, VideoRequest):
        if job is not None:
            return VideoDecision(job, duplicate=True)
        return new_job(event, event.requested_at, config)
    at = event.occurred_at
    if isinstance(event, (RetryRequested, CancelRequested)):
        if job is not None and event.event_id in job.control_seen:
            return VideoDecision(job, duplicate=True)
        refused = check_control(job, event)
        if refused is not None:
            return VideoDecision(job, refused=refused)
        assert job is not None
        seen = (*job.control_seen, event.event_id)[-20:]
        if isinstance(event, RetryRequested):
            decision = VideoDecision(job, changed=True)
            decision.job = _queue(
                job, at, config, decision, attempt=job.attempt + 1, auto_retries=0, reason=None, control_seen=seen
            )
            return decision
        cancelled = job.model_copy(
            update={"status": VideoStatus.CANCELLED, "due_at": None, "updated_at": at, "control_seen": seen}
        )
        stop = _command(cancelled, at).model_copy(
            update={"command_id": f"{job.video_id}:{job.attempt}:cancel", "cancel": True, "start_by": None}
        )
        return VideoDecision(
            cancelled, changed=True, status=[_status(cancelled, at)], commands=[stop], final=VideoStatus.CANCELLED
        )
    # Renderer outcomes and timers: of the current attempt of an active job only.
    if job is None or event.attempt != job.attempt or job.status not in ACTIVE:
        return VideoDecision(job, duplicate=True)
    if isinstance(event, RenderStarted):
        if job.status is not VideoStatus.QUEUED:
            return VideoDecision(job, duplicate=True)
        started = job.model_copy(update={"status": VideoStatus.PROCESSING, "updated_at": at, **_render_due(job, at, config)})
        return VideoDecision(started, changed=True, status=[_status(started, at, "PROCESSING")])
    if isinstance(event, RenderProgress):
        progress = round(min(event.progress, 99.0), 1)
        if progress <= job.progress:
            return VideoDecision(job, duplicate=True)
        moved = job.model_copy(
            update={"status": VideoStatus.PROCESSING, "progress": progress, "updated_at": at, **_render_due(job, at, config)}
        )
        return VideoDecision(moved, changed=True, status=[_status(moved, at, f"PROCESSING:{progress:g}")])
    if isinstance(event, RenderCompleted):
        done = job.model_copy(
            update={
                "status": VideoStatus.COMPLETED,
                "progress": 100.0,
                "result": event.result,
                "reason": None,
                "due_at": None,
                "updated_at": at,
                "render_seconds": event.render_seconds,
            }
        )
        return VideoDecision(done, changed=True, status=[_status(done, at)], final=VideoStatus.COMPLETED)
    if isinstance(event, RenderFailed):
        return _fail(job, event.reason, event.retryable, at, config)
    # VideoTimer
    if job.due_at is None or at < job.due_at:
        return VideoDecision(job, duplicate=True)
    waited = (at - job.attempt_started_at).total_seconds()
    if job.status is VideoStatus.QUEUED:
        reason = f"not started by a renderer within {config.queue_timeout_s:g} s (attempt {job.attempt})"
    else:
        reason = (
            f"no outcome from the renderer within {config.active_timeout_s:g} s of the render's start"
            f" (attempt {job.attempt}, {waited:.0f} s since queued)"
        )
    return _fail(job, reason, True, at, config)


def _render_due(job: VideoJob, at: datetime, config: VideoConfig) -> dict[str, object]:
    """The render's deadline, set when a QUEUED job is first seen running (its queue wait not counted)."""
    if job.status is not VideoStatus.QUEUED:
        return {}
    return {"due_at": at + timedelta(seconds=config.active_timeout_s)}


def timer(job: VideoJob, at: datetime) -> VideoTimer:
    """The TIMER event of ``job``'s passed deadline (the same id for the same attempt)."""
    return VideoTimer(event_id=f"{job.video_id}:{job.attempt}:timer", video_id=job.video_id, occurred_at=at, attempt=job.attempt)


def job_view(job: VideoJob) -> dict[str, object]:
    """The job as ``GET /videos/{video_id}`` shows it."""
    body = job.model_dump(mode="json", exclude={"control_seen"})
    return body
