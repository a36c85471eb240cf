"""Video renders end to end: the embedded broker, a worker (agent, table, views)
and the renderer process with real ffmpeg, images from a real HTTP server on
loopback."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.broker import EmbeddedBroker
from tests.fakes.media_server import MediaServer
from tests.harness import Worker, read_json, wait_for


def make_image(path: Path, size: str) -> bytes:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s={size}:d=1", "-frames:v", "1", str(path)],
        check=True,
    )
    return path.read_bytes()


@pytest.fixture
def media(tmp_path: Path) -> Iterator[MediaServer]:
    with MediaServer() as server:
        server.file("/a.jpg", make_image(tmp_path / "a.jpg", "800x600"))
        server.file("/b.jpg", make_image(tmp_path / "b.jpg", "600x800"))
        server.file("/broken.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 64)
        yield server


def render_env(tmp_path: Path) -> dict[str, str]:
    return {
        "OPS_RENDER_OUTPUT_DIR": str(tmp_path / "videos"),
        "OPS_RENDER_WORK_DIR": str(tmp_path / "render-work"),
        "OPS_RENDER_ALLOWED_NETWORKS": "127.0.0.1/32",  # the test's image server, nothing else private
        "OPS_RENDER_PRESET": "ultrafast",
        "OPS_RENDER_CONCURRENCY": "1",
        "OPS_RENDER_METRICS_PORT": "0",
    }


def job(worker: Worker, video_id: str) -> dict[str, Any] | None:
    response = worker.get(f"/videos/{video_id}")
    return response.json() if response.status_code == 200 else None


def wait_status(worker: Worker, video_id: str, *statuses: str, timeout: float = 90.0) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body = job(worker, video_id)
        return body if body and body["status"] in statuses else None

    return wait_for(check, timeout=timeout, what=f"video {video_id} in {statuses}")  # type: ignore[no-any-return]


def post(worker: Worker, path: str, body: Any = None, **headers: str) -> httpx.Response:
    return httpx.post(f"{worker.url}{path}", json=body, headers=headers, timeout=15.0)


def test_requests_are_rendered_served_retried_and_refused(
    broker: EmbeddedBroker, tmp_path: Path, spawn: Any, media: MediaServer
) -> None:
    env = render_env(tmp_path)
    worker = spawn("w1", **env)
    # The files are served by the worker: the renderer names them by its URL.
    spawn("renderer", command="renderer", OPS_RENDER_PUBLIC_URL=f"{worker.url}/video-files", **env)
    worker.wait_ready()
    # invalid requests: 400 with the reason, nothing queued
    bad = post(worker, "/videos", {"store_id": "s1", "image_urls": [media.base + "/a.jpg"], "duration": 90})
    assert bad.status_code == 400 and "duration" in bad.json()["error"]
    assert post(worker, "/videos", {"store_id": "s1", "aspect_ratio": "4:3"}).status_code == 400
    assert httpx.post(f"{worker.url}/videos", content=b"{not json", timeout=5).status_code == 400
    assert worker.get("/videos/nope").status_code == 404

    good = post(worker, "/videos", {
        "store_id": "s1", "product_id": "p1", "image_urls": [media.base + "/a.jpg", media.base + "/b.jpg"],
        "title": "Mug", "duration": 5, "aspect_ratio": "1:1", "style": "LIFESTYLE",
        "text_overlays": [{"text": "New!", "start": 1, "end": 3}],
    }, **{"Idempotency-Key": "req-1"})
    assert good.status_code == 202, good.text
    video_id = good.json()["video_id"]
    # the same request again (same key): the same id, still one job
    again = post(worker, "/videos", {"store_id": "s1", "image_urls": [media.base + "/a.jpg"], "duration": 5},
                 **{"Idempotency-Key": "req-1"})
    assert again.json()["video_id"] == video_id
    none = post(worker, "/videos", {"store_id": "s1", "product_id": "p2", "duration": 5}).json()["video_id"]
    broken = post(worker, "/videos", {"store_id": "s1", "duration": 5,
                                      "image_urls": [media.base + "/a.jpg", media.base + "/broken.jpg"]}).json()["video_id"]
    refused = post(worker, "/videos", {"store_id": "s1", "duration": 5,
                                       "image_urls": ["http://169.254.169.254/latest/meta-data"]}).json()["video_id"]
    batch = post(worker, "/videos/batch", {
        "store_id": "s2", "defaults": {"duration": 5, "aspect_ratio": "16:9", "style": "SOCIAL_MEDIA"},
        "products": [{"product_id": "p1", "image_urls": [media.base + "/a.jpg"], "title": "One"},
                     {"product_id": "p2", "image_urls": [media.base + "/b.jpg"], "title": "Two"}],
    })
    assert batch.status_code == 202, batch.text
    batch_ids = [v["video_id"] for v in batch.json()["videos"]]
    assert len(set(batch_ids)) == 2
    bad_batch = post(worker, "/videos/batch", {"store_id": "s2", "products": [{"product_id": "p1"}, {"duration": 5}]})
    assert bad_batch.status_code == 400 and bad_batch.json()["error"].startswith("products[1]")

    done = wait_status(worker, video_id, "COMPLETED", "FAILED")
    assert done["status"] == "COMPLETED", (done["reason"], done["attempt"])
    assert done["attempt"] == 1 and done["progress"] == 100 and done["request"]["title"] == "Mug"
    result = done["result"]
    assert (result["width"], result["height"]) == (1080, 1080) and abs(result["duration"] - 5) <= 0.1
    assert result["video_url"] == f"{worker.url}/video-files/{video_id}.1.mp4"
    # the files, from the worker
    video = httpx.get(result["video_url"], timeout=15)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    (tmp_path / "got.mp4").write_bytes(video.content)
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", str(tmp_path / "got.mp4")],
        check=True, capture_output=True).stdout)
    assert [(s["codec_name"], s["width"], s["height"]) for s in probe["streams"]] == [("h264", 1080, 1080)]
    thumb = httpx.get(result["thumbnail_url"], timeout=15)
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    for name in ("..%2F..%2Fetc%2Fpasswd", "x.1.mp4", f"{video_id}.9.mp4", "secret.txt"):
        assert worker.get(f"/video-files/{name}").status_code == 404

    for vid, reason in ((none, "the request has no images"),
                        (broken, "image 2 is broken or not an image"),
                        (refused, "image 1: refused: 169.254.169.254 resolves to a link-local address")):
        failed = wait_status(worker, vid, "FAILED", "COMPLETED")
        assert failed["status"] == "FAILED" and failed["reason"].startswith(reason), failed
        assert failed["attempt"] == 1  # not retryable: not retried
    for vid in batch_ids:
        body = wait_status(worker, vid, "COMPLETED", "FAILED")
        assert body["status"] == "COMPLETED" and body["result"]["width"] == 1920, body
        assert body["request"]["source"] == "batch" and body["store_id"] == "s2"

    # retry by hand: a failed job runs again as attempt 2; a completed one is refused
    retry = post(worker, f"/videos/{none}/retry", **{"Idempotency-Key": "r1"})
    assert retry.status_code in (200, 202), retry.text
    wait_for(lambda: (j := job(worker, none)) and j["attempt"] == 2 and j["status"] == "FAILED", timeout=60,
             what="the retried job failed again as attempt 2")
    refused_retry = post(worker, f"/videos/{video_id}/retry")
    assert refused_retry.status_code == 409 and "COMPLETED" in refused_retry.json()["error"]
    assert post(worker, "/videos/unknown/retry").status_code == 404

    statuses = [s for s in read_json(broker, "video.status") if s["video_id"] == video_id]
    seen = [s["status"] for s in statuses]
    assert seen[0] == "QUEUED" and seen[-1] == "COMPLETED" and "PROCESSING" in seen
    assert len({s["event_id"] for s in statuses}) == len(statuses)
    metrics = worker.get("/metrics").text
    assert 'ops_video_jobs_total{status="COMPLETED"}' in metrics
    assert 'ops_video_jobs_total{status="FAILED"}' in metrics


def test_jobs_no_renderer_starts_time_out_and_are_retried_twice_on_two_workers(
    broker: EmbeddedBroker, tmp_path: Path, spawn: Any
) -> None:
    env = {"OPS_VIDEO_QUEUE_TIMEOUT": "2", "OPS_VIDEO_SCAN_INTERVAL": "0.5", **render_env(tmp_path)}
    w1 = spawn("w1", **env)
    w1.wait_ready()
    w2 = spawn("w2", **env)
    w2.wait_ready()
    ids = []
    for i in range(6):  # spread over the partitions of both workers
        response = post(w1 if i % 2 else w2, "/videos",
                        {"store_id": "s1", "image_urls": ["https://cdn.example.com/a.jpg"], "duration": 5})
        assert response.status_code == 202, response.text
        ids.append(response.json()["video_id"])
    for video_id in ids:
        final = wait_for(lambda v=video_id: (j := job(w1, v)) and j["status"] == "FAILED" and j, timeout=90,
                         what=f"{video_id} failed after its retries")
        assert final["attempt"] == 3 and final["auto_retries"] == 2
        assert final["reason"].startswith("not started by a renderer within 2 s (attempt 3)")
        assert job(w2, video_id) == final  # either worker answers (routed to the owner)
    commands = read_json(broker, "video.renders")
    for video_id in ids:
        # a command per attempt (a re-sent one has the same id), none after the job failed;
        # each with its queue deadline, past which a renderer skips it
        mine = [c for c in commands if c["video_id"] == video_id]
        assert {c["attempt"] for c in mine} == {1, 2, 3}
        assert all(c["start_by"] is not None for c in mine)
    # cancelling a job that ended is refused with the reason
    cancel = post(w2, f"/videos/{ids[0]}/cancel")
    assert cancel.status_code == 409 and "FAILED" in cancel.json()["error"]


def test_a_backlog_of_renders_is_worked_through_without_timeouts(
    broker: EmbeddedBroker, tmp_path: Path, spawn: Any, media: MediaServer
) -> None:
    """Six jobs at once for one render slot, each render at least 3 s (a slow CDN), a 10 s render
    timeout: the last ones wait about 15 s QUEUED. Before, the wait counted against the 10 s, so
    they (and the one running at 10 s) were failed "no outcome" and queued again behind the
    backlog, their first commands still rendered: renders repeated, attempts lost."""
    image = make_image(tmp_path / "slow.jpg", "640x480")
    env = {**render_env(tmp_path), "OPS_VIDEO_ACTIVE_TIMEOUT": "10", "OPS_VIDEO_SCAN_INTERVAL": "0.5"}
    worker = spawn("w1", **env)
    spawn("renderer", command="renderer", OPS_RENDER_PUBLIC_URL=f"{worker.url}/video-files", **env)
    worker.wait_ready()
    ids = []
    for i in range(6):
        url = media.slow(f"/slow{i}.jpg", image, 3.0)
        response = post(worker, "/videos", {"store_id": "s1", "image_urls": [url], "duration": 5,
                                            "aspect_ratio": "1:1"})
        assert response.status_code == 202, response.text
        ids.append(response.json()["video_id"])
    for video_id in ids:
        done = wait_status(worker, video_id, "COMPLETED", "FAILED", timeout=120)
        assert done["status"] == "COMPLETED" and done["attempt"] == 1, (done["status"], done["reason"])
    # each job rendered once: one command, one fetch of its image
    commands = read_json(broker, "video.renders")
    assert sorted((c["video_id"], c["attempt"]) for c in commands) == sorted((v, 1) for v in ids)
    fetched = [r["path"] for r in media.requests if r["path"].startswith("/slow")]
    assert sorted(fetched) == [f"/slow{i}.jpg" for i in range(6)]


def test_the_renderer_skips_a_command_taken_after_its_start_by(
    broker: EmbeddedBroker, tmp_path: Path, spawn: Any, media: MediaServer
) -> None:
    """A command whose job timed out in the queue (its start_by passed) is not rendered and has no
    outcome; the next attempt's command behind it is. Before, the expired attempt was rendered too."""
    import asyncio
    from datetime import datetime, timedelta, timezone

    from models.video import RenderCommand, VideoRequest
    from streams.codecs import encode
    from tests.harness import produce_raw

    env = render_env(tmp_path)
    spawn("w1", **env).wait_ready()  # the topics
    spawn("renderer", command="renderer", **env)
    now = datetime.now(timezone.utc)

    def command(attempt: int, path: str, start_by: datetime) -> tuple[bytes, bytes]:
        request = VideoRequest(video_id="vx", store_id="s1", image_urls=(media.base + path,), duration=5,
                               aspect_ratio="1:1", requested_at=now - timedelta(hours=2))
        return b"vx", encode(RenderCommand(command_id=f"vx:{attempt}", video_id="vx", attempt=attempt,
                                           request=request, issued_at=now, start_by=start_by))

    records = [command(1, "/a.jpg", now - timedelta(hours=1)), command(2, "/b.jpg", now + timedelta(hours=1))]
    assert asyncio.run(produce_raw(broker, "video.renders", records)) == 2
    done = wait_for(lambda: [e for e in read_json(broker, "video.events") if e["type"] in ("COMPLETED", "FAILED")],
                    timeout=90, what="the outcome of attempt 2")
    assert [(e["type"], e["attempt"]) for e in done] == [("COMPLETED", 2)], done
    assert {e["attempt"] for e in read_json(broker, "video.events")} == {2}  # not even STARTED for attempt 1
    assert [r["path"] for r in media.requests] == ["/b.jpg"]
    assert [p.name for p in sorted((tmp_path / "videos").iterdir())] == ["vx.2.jpg", "vx.2.mp4"]


def test_auto_video_asks_once_per_new_product_of_stores_that_want_it(
    broker: EmbeddedBroker, tmp_path: Path, spawn: Any
) -> None:
    from datetime import datetime, timedelta, timezone

    from models.video import auto_video_id
    from tests.harness import cli_publish

    worker = spawn("w1", **render_env(tmp_path))
    worker.wait_ready()
    now = datetime.now(timezone.utc)
    settings = [{"store_id": "auto", "auto_video": True, "updated_at": now.isoformat()},
                {"store_id": "manual", "updated_at": now.isoformat()}]
    assert cli_publish(broker, "store.settings", settings).returncode == 0

    def snap(store: str, product: str, variant: str, at: datetime, stock: int = 5) -> dict[str, Any]:
        return {"store_id": store, "product_id": product, "variant_id": variant, "provider": "CJ_DROPSHIPPING",
                "source_id": f"{product}-{variant}", "stock": stock, "cost_price": "3.00", "currency": "USD",
                "captured_at": at.isoformat(), "title": "Mug", "images": ["https://cdn.example.com/mug.jpg"]}

    # Settings first: a store with settings and no product lists no products (404 before).
    for store in ("auto", "manual"):
        wait_for(lambda: worker.get(f"/stores/{store}/products").status_code == 200, timeout=30,
                 what=f"settings of {store} applied")
    first = [snap("auto", "p1", "red", now), snap("auto", "p1", "blue", now), snap("manual", "p1", "red", now)]
    later = [snap("auto", "p1", "red", now + timedelta(seconds=5), stock=2)]  # CHANGED, not NEW
    assert cli_publish(broker, "supplier.snapshots", first).returncode == 0
    assert cli_publish(broker, "supplier.snapshots", first + later).returncode == 0  # replayed, plus a change
    video_id = auto_video_id("auto", "p1")
    body = wait_for(lambda: job(worker, video_id), timeout=30, what="the automatic video job")
    assert body["status"] == "QUEUED" and body["request"]["source"] == "auto"
    assert body["request"]["style"] == "PRODUCT_SHOWCASE" and body["product_id"] == "p1"
    assert body["request"]["image_urls"] == ["https://cdn.example.com/mug.jpg"]
    wait_for(lambda: worker.get("/stores/auto/products/p1", variant_id="red").json().get("stock") == 2, timeout=30,
             what="the later snapshot applied")
    requests = [r for r in read_json(broker, "video.requests")]
    assert {r["video_id"] for r in requests} == {video_id}  # none for the store without auto_video
    assert len(requests) == 2  # one per NEW variant; the replay and the change asked nothing
    commands = [c for c in read_json(broker, "video.renders") if c["video_id"] == video_id]
    assert [c["attempt"] for c in commands] == [1]  # one job, one render
    assert worker.get(f"/videos/{auto_video_id('manual', 'p1')}").status_code == 404


def test_cancel_stops_a_running_render(broker: EmbeddedBroker, tmp_path: Path, spawn: Any, media: MediaServer) -> None:
    from connectors.broker import free_port

    env = render_env(tmp_path)
    worker = spawn("w1", **env)
    metrics_port = free_port()
    spawn("renderer", command="renderer", OPS_RENDER_PUBLIC_URL=f"{worker.url}/video-files",
          **{**env, "OPS_RENDER_METRICS_PORT": str(metrics_port), "OPS_RENDER_PRESET": "medium"})
    worker.wait_ready()
    # A long render (60 s at 1080x1920, a slow preset): still running when cancelled.
    response = post(worker, "/videos", {"store_id": "s1", "duration": 60, "title": "Long",
                                        "image_urls": [media.base + "/a.jpg", media.base + "/b.jpg"] * 3})
    video_id = response.json()["video_id"]
    wait_status(worker, video_id, "PROCESSING", timeout=60)
    cancel = post(worker, f"/videos/{video_id}/cancel", **{"Idempotency-Key": "c1"})
    assert cancel.status_code == 200, cancel.text
    assert cancel.json()["status"] == "CANCELLED"

    def cancelled_in_renderer() -> bool:
        try:
            text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return False
        return 'ops_video_renders_total{outcome="CANCELLED"} 1.0' in text

    wait_for(cancelled_in_renderer, timeout=30, what="the renderer stopped the render")
    out = tmp_path / "videos"
    assert not any(p.name.startswith(video_id) for p in out.iterdir())  # no file, not even a temporary one
    assert list((tmp_path / "render-work").iterdir()) == []
    assert job(worker, video_id)["status"] == "CANCELLED"  # type: ignore[index]
    outcomes = [e for e in read_json(broker, "video.events") if e["video_id"] == video_id]
    assert {e["type"] for e in outcomes} <= {"STARTED", "PROGRESS", "CANCEL"}


def test_a_finished_job_is_archived_and_refuses_what_comes_later(broker: EmbeddedBroker, spawn: Any) -> None:
    """No renderer: the job waits QUEUED until cancelled; then, past OPS_VIDEO_KEEP_DAYS, a marker replaces it."""
    env = {"OPS_VIDEO_KEEP_DAYS": "0.00001", "OPS_ARCHIVE_INTERVAL_S": "1"}  # under a second
    worker = spawn("w1", **env)
    worker.wait_ready()
    request = {"store_id": "s1", "product_id": "p1", "duration": 5, "image_urls": ["http://127.0.0.1:9/a.jpg"]}
    video_id = post(worker, "/videos", request, **{"Idempotency-Key": "arch-1"}).json()["video_id"]
    wait_status(worker, video_id, "QUEUED")
    cancel = post(worker, f"/videos/{video_id}/cancel", **{"Idempotency-Key": "arch-c1"})
    assert cancel.status_code == 200 and cancel.json()["status"] == "CANCELLED", cancel.text

    marker = wait_for(lambda: (j := job(worker, video_id)) is not None and j.get("archived") and j,
                      timeout=60, what="the job archived")
    assert marker["status"] == "CANCELLED" and marker["store_id"] == "s1" and "job" not in marker
    retry = post(worker, f"/videos/{video_id}/retry", **{"Idempotency-Key": "arch-r1"})
    assert retry.status_code == 409 and "archived" in retry.json()["error"]
    assert 'ops_archived_total{table="video-jobs"} 1.0' in worker.get("/metrics").text

    # The same request again (same key, same id): refused to deadletter, the job is not started again.
    assert post(worker, "/videos", request, **{"Idempotency-Key": "arch-1"}).json()["video_id"] == video_id
    dead = wait_for(lambda: [d for d in read_json(broker, "deadletter") if d["reason"] == "ARCHIVED"],
                    what="the ARCHIVED dead letter")
    assert len(dead) == 1 and video_id in dead[0]["detail"]
    assert job(worker, video_id) == marker

    # A new worker recovers the marker from the changelog.
    worker.stop()
    again = spawn("w2", **env)
    again.wait_ready(timeout=60)
    assert wait_for(lambda: job(again, video_id), timeout=30, what="the job after a restart") == marker
