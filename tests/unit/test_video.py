"""The video job machine (models/video.py): requests, outcomes, retries, timers."""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from models.video import (
    CancelRequested,
    RenderCompleted,
    RenderFailed,
    RenderProgress,
    RenderStarted,
    RetryRequested,
    VideoConfig,
    VideoJob,
    VideoRequest,
    VideoResult,
    VideoStatus,
    auto_request,
    auto_request_for,
    auto_video_id,
    clean_text,
    decide,
    decode_video_event,
    timer,
)
from streams.codecs import encode

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
CONFIG = VideoConfig(max_auto_retries=2, active_timeout_s=600, queue_timeout_s=3600)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def request(**kw: object) -> VideoRequest:
    body: dict[str, object] = {
        "video_id": "v1",
        "store_id": "s1",
        "product_id": "p1",
        "image_urls": ["https://cdn.example.com/a.jpg"],
        "title": "Mug",
        "requested_at": T0,
    }
    body.update(kw)
    return VideoRequest.model_validate(body)


def queued(**kw: object) -> VideoJob:
    decision = decide(None, request(**kw), CONFIG)
    assert decision.job is not None
    return decision.job


RESULT = VideoResult(
    video_url="http://x/v1.1.mp4", thumbnail_url="http://x/v1.1.jpg", duration=15.0, width=1080, height=1920
)


def started(attempt: int = 1, s: float = 1) -> RenderStarted:
    return RenderStarted(event_id=f"v1:{attempt}:started", video_id="v1", attempt=attempt, occurred_at=at(s))


def progress(pct: float, attempt: int = 1, s: float = 2) -> RenderProgress:
    return RenderProgress(
        event_id=f"v1:{attempt}:p:{pct}", video_id="v1", attempt=attempt, progress=pct, occurred_at=at(s)
    )


def completed(attempt: int = 1, s: float = 10) -> RenderCompleted:
    return RenderCompleted(event_id=f"v1:{attempt}:done", video_id="v1", attempt=attempt, result=RESULT, occurred_at=at(s))


def failed(attempt: int = 1, retryable: bool = True, s: float = 5, reason: str = "ffmpeg exited 1") -> RenderFailed:
    return RenderFailed(
        event_id=f"v1:{attempt}:failed", video_id="v1", attempt=attempt, reason=reason, retryable=retryable,
        occurred_at=at(s),
    )


def fold(job: VideoJob | None, events: list[object]) -> VideoJob | None:
    for event in events:
        job = decide(job, event, CONFIG).job  # type: ignore[arg-type]
    return job


# --------------------------------------------------------------------------- #
# the request


def test_request_defaults_and_resolution() -> None:
    r = request()
    assert r.duration == 15.0
    assert r.aspect_ratio.value == "9:16"
    assert r.resolution == (1080, 1920)
    assert r.style.value == "PRODUCT_SHOWCASE"
    assert request(aspect_ratio="16:9").resolution == (1920, 1080)
    assert request(aspect_ratio="1:1").resolution == (1080, 1080)


@pytest.mark.parametrize(
    "bad",
    [
        {"duration": 4},
        {"duration": 61},
        {"aspect_ratio": "4:3"},
        {"style": "CARTOON"},
        {"video_id": "../etc"},
        {"video_id": "a" * 65},
        {"brand_colors": ["red"]},
        {"text_overlays": [{"text": "hi", "start": 3, "end": 2}]},
        {"text_overlays": [{"text": "hi", "start": 15, "end": 16}]},
        {"text_overlays": [{"text": "x" * 201, "start": 0, "end": 1}]},
        {"image_urls": ["https://x/a.jpg"] * 21},
        {"requested_at": "2026-01-01T12:00:00"},  # naive time
    ],
)
def test_invalid_requests_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        request(**bad)


def test_auto_request_has_one_id_per_product() -> None:
    a = auto_request("s1", "p1", "Mug", ("https://x/a.jpg",), T0)
    b = auto_request("s1", "p1", "Other title", (), at(60))
    assert a.video_id == b.video_id == auto_video_id("s1", "p1")
    assert auto_video_id("s1", "p2") != a.video_id
    assert auto_video_id("s2", "p1") != a.video_id
    assert a.style.value == "PRODUCT_SHOWCASE" and a.source == "auto"


def test_clean_text_strips_control_and_format_characters() -> None:
    assert clean_text("a\x00b\nc\x1b[31m\u202eD", 100) == "ab\nc[31mD"
    assert clean_text("x" * 500, 10) == "x" * 10


# --------------------------------------------------------------------------- #
# the machine


def test_request_queues_attempt_one_with_a_command_and_a_deadline() -> None:
    decision = decide(None, request(), CONFIG)
    job = decision.job
    assert job is not None and job.status is VideoStatus.QUEUED and job.attempt == 1
    assert job.due_at == at(3600)
    assert [c.command_id for c in decision.commands] == ["v1:1"]
    assert decision.commands[0].request.video_id == "v1"
    assert [(s.status, s.event_id) for s in decision.status] == [(VideoStatus.QUEUED, "v1:1:QUEUED")]


def test_second_request_for_the_same_id_changes_nothing() -> None:
    job = queued()
    decision = decide(job, request(title="other", requested_at=at(5)), CONFIG)
    assert decision.duplicate and decision.job == job and not decision.commands and not decision.status


def test_happy_path() -> None:
    job = queued()
    d = decide(job, started(), CONFIG)
    assert d.job is not None and d.job.status is VideoStatus.PROCESSING
    d = decide(d.job, progress(40), CONFIG)
    assert d.job is not None and d.job.progress == 40 and d.status[0].progress == 40
    d = decide(d.job, completed(), CONFIG)
    assert d.job is not None and d.job.status is VideoStatus.COMPLETED and d.final is VideoStatus.COMPLETED
    assert d.job.result == RESULT and d.job.due_at is None and d.job.progress == 100
    assert d.status[0].result == RESULT


def test_outcomes_of_one_attempt_in_any_order_and_repeated_end_the_same() -> None:
    events = [started(), progress(10, s=2), progress(55, s=3), progress(90, s=4), completed()]
    clean = fold(queued(), events)
    assert clean is not None and clean.status is VideoStatus.COMPLETED
    for order in itertools.permutations(events):
        assert fold(queued(), list(order)) == clean
    rng = random.Random(7)
    for _ in range(50):
        noisy = events * 2
        rng.shuffle(noisy)
        assert fold(queued(), noisy) == clean


def test_progress_never_goes_back() -> None:
    job = fold(queued(), [progress(60)])
    d = decide(job, progress(30, s=3), CONFIG)
    assert d.duplicate and d.job is not None and d.job.progress == 60
    d = decide(job, started(s=3), CONFIG)  # STARTED after a PROGRESS
    assert d.duplicate


def test_retryable_failure_is_retried_twice_then_failed() -> None:
    d = decide(queued(), failed(1), CONFIG)
    job = d.job
    assert job is not None and job.status is VideoStatus.QUEUED and job.attempt == 2 and job.auto_retries == 1
    assert [(s.status, s.retrying) for s in d.status] == [(VideoStatus.FAILED, True), (VideoStatus.QUEUED, False)]
    assert [c.attempt for c in d.commands] == [2]
    d = decide(job, failed(2), CONFIG)
    assert d.job is not None and d.job.attempt == 3
    d = decide(d.job, failed(3, reason="image 1: not an image"), CONFIG)
    assert d.job is not None and d.job.status is VideoStatus.FAILED and d.final is VideoStatus.FAILED
    assert d.job.reason == "image 1: not an image" and not d.commands and d.job.due_at is None
    assert [(s.status, s.retrying) for s in d.status] == [(VideoStatus.FAILED, False)]


def test_permanent_failure_is_not_retried() -> None:
    d = decide(queued(), failed(1, retryable=False, reason="no images"), CONFIG)
    assert d.job is not None and d.job.status is VideoStatus.FAILED and d.job.attempt == 1 and not d.commands


def test_outcomes_of_an_older_attempt_are_stale() -> None:
    job = decide(queued(), failed(1), CONFIG).job
    for stale in (started(1), progress(50, 1), completed(1), failed(1)):
        d = decide(job, stale, CONFIG)
        assert d.duplicate and d.job == job


def test_retry_by_hand_from_failed_resets_the_automatic_retries() -> None:
    job = fold(queued(), [failed(1), failed(2), failed(3)])
    assert job is not None and job.status is VideoStatus.FAILED
    retry = RetryRequested(event_id="web:retry:k1", video_id="v1", occurred_at=at(100))
    d = decide(job, retry, CONFIG)
    assert d.job is not None and d.job.status is VideoStatus.QUEUED and d.job.attempt == 4 and d.job.auto_retries == 0
    assert d.job.reason is None and [c.attempt for c in d.commands] == [4]
    again = decide(d.job, retry, CONFIG)  # the same request twice
    assert again.duplicate and not again.commands


def test_retry_of_an_active_or_completed_job_is_refused() -> None:
    retry = RetryRequested(event_id="web:retry:k1", video_id="v1", occurred_at=at(100))
    assert decide(queued(), retry, CONFIG).refused
    assert decide(fold(queued(), [completed()]), retry, CONFIG).refused
    assert decide(None, retry, CONFIG).refused == "video 'v1' is unknown"


def test_cancel_then_late_outcomes_change_nothing_and_retry_requeues() -> None:
    cancel = CancelRequested(event_id="web:cancel:k", video_id="v1", occurred_at=at(3))
    d = decide(fold(queued(), [started()]), cancel, CONFIG)
    job = d.job
    assert job is not None and job.status is VideoStatus.CANCELLED and d.final is VideoStatus.CANCELLED
    assert [(c.command_id, c.attempt, c.cancel) for c in d.commands] == [("v1:1:cancel", 1, True)]
    assert decide(job, completed(), CONFIG).duplicate
    assert decide(job, cancel, CONFIG).duplicate
    assert decide(job, CancelRequested(event_id="other", video_id="v1", occurred_at=at(4)), CONFIG).refused
    retry = RetryRequested(event_id="web:retry:k2", video_id="v1", occurred_at=at(5))
    assert decide(job, retry, CONFIG).job.status is VideoStatus.QUEUED  # type: ignore[union-attr]


def test_timer_fails_an_active_job_and_retries_it() -> None:
    job = fold(queued(), [started()])  # started at 1 s: the render has until 601 s
    assert job is not None
    early = decide(job, timer(job, at(600)), CONFIG)
    assert early.duplicate
    d = decide(job, timer(job, at(601)), CONFIG)
    assert d.job is not None and d.job.attempt == 2 and d.job.status is VideoStatus.QUEUED
    assert "no outcome from the renderer within 600 s" in (d.status[0].reason or "")
    assert d.job.due_at == at(601 + 3600)
    # the same timer again (published twice) is stale now
    assert decide(d.job, timer(job, at(602)), CONFIG).duplicate


def test_time_waiting_in_the_renderer_queue_does_not_count_against_the_render() -> None:
    """A backlog (a batch of 100, a new store's auto videos) keeps jobs QUEUED for longer than a
    render may take. Before, the active timeout counted from the queueing: every job behind the
    first few was failed "no outcome", re-queued behind the backlog (its old command rendered
    anyway), and most ended FAILED. Now the render's time counts from STARTED, and a job waits
    for a renderer up to ``queue_timeout_s``."""
    job = queued()
    assert job.due_at == at(3600)
    assert decide(job, timer(job, at(601)), CONFIG).duplicate  # only queued: not overdue
    d = decide(job, started(s=1000), CONFIG)
    assert d.job is not None and d.job.status is VideoStatus.PROCESSING and d.job.due_at == at(1600)
    assert decide(d.job, timer(d.job, at(1599)), CONFIG).duplicate
    # a PROGRESS first (a lost or later STARTED) starts the render's time the same way
    moved = decide(job, progress(20, s=900), CONFIG).job
    assert moved is not None and moved.due_at == at(1500)
    assert decide(moved, progress(40, s=950), CONFIG).job.due_at == at(1500)  # type: ignore[union-attr]
    assert decide(moved, started(s=960), CONFIG).duplicate


def test_a_job_no_renderer_starts_times_out_after_the_queue_timeout() -> None:
    job = queued()
    (command,) = decide(None, request(), CONFIG).commands
    assert command.start_by == at(3600)  # the renderer skips it after that: the job has moved on
    d = decide(job, timer(job, at(3600)), CONFIG)
    assert d.job is not None and d.job.attempt == 2 and d.job.status is VideoStatus.QUEUED
    assert (d.status[0].reason or "").startswith("not started by a renderer within 3600 s (attempt 1)")
    assert d.status[0].retrying and d.job.due_at == at(7200) and d.commands[0].start_by == at(7200)


def test_timer_after_completion_changes_nothing() -> None:
    job = fold(queued(), [completed()])
    assert job is not None
    assert decide(job, timer(job.model_copy(update={"due_at": at(600)}), at(700)), CONFIG).duplicate


def test_events_round_trip_through_their_json() -> None:
    for event in (started(), progress(5), completed(), failed(), timer(queued(), at(1))):
        assert decode_video_event(encode(event)) == event
    with pytest.raises(ValidationError):
        decode_video_event(b'{"type": "EXPLODED", "video_id": "v1"}')


def test_auto_request_for_a_new_product_follows_the_store_setting() -> None:
    from models.events import StoreSettings, SupplierSnapshot

    snap = SupplierSnapshot(
        store_id="s1", product_id="p1", variant_id="v-red", provider="CJ_DROPSHIPPING", source_id="S1", stock=3,
        cost_price="2.50", currency="USD", captured_at=T0, title="Mug",
        images=("https://cdn.example.com/a.jpg", "data:image/png;base64,AAAA"),
    )
    off = StoreSettings(store_id="s1")
    on = StoreSettings(store_id="s1", auto_video=True)
    assert auto_request_for(snap, off) is None
    video = auto_request_for(snap, on)
    assert video is not None and video.video_id == auto_video_id("s1", "p1")
    assert video.image_urls == ("https://cdn.example.com/a.jpg",) and video.title == "Mug"
    blue = snap.model_copy(update={"variant_id": "v-blue"})
    assert auto_request_for(blue, on).video_id == video.video_id  # type: ignore[union-attr]
    assert auto_request_for(snap.model_copy(update={"images": ()}), on) is None


def test_video_requests_can_be_published_by_upstream_producers_with_their_key() -> None:
    from connectors.publisher import PublishError, prepare

    line = encode(request(video_id="promo-7"))
    assert prepare("video.requests", line).key == b"promo-7"
    with pytest.raises(PublishError, match="duration"):
        prepare("video.requests", encode({**orjson_loads(line), "duration": 600}))


def orjson_loads(raw: bytes) -> dict[str, object]:
    import orjson

    return orjson.loads(raw)  # type: ignore[no-any-return]
