"""The renderer with real ffmpeg, ffprobe and espeak-ng, images from a real HTTP
server on loopback: the files it makes (checked with ffprobe), its failures,
its idempotence, and the SSRF-safe fetcher."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from connectors.render.fetch import FetchError, ImageFetcher
from connectors.render.providers import ElevenLabsVoice
from connectors.render.renderer import Renderer
from connectors.render.settings import RenderSettings
from connectors.render.storage import Storage
from models.video import RenderCommand, RenderCompleted, RenderFailed, RenderProgress, RenderStarted, VideoRequest
from tests.fakes.media_server import MediaServer, tone_pcm


def make_image(path: Path, size: str, pattern: str = "testsrc2") -> bytes:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"{pattern}=s={size}:d=1", "-frames:v", "1", str(path)],
        check=True,
    )
    return path.read_bytes()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("images")
    return {
        "a.jpg": make_image(d / "a.jpg", "1200x900"),
        "b.png": make_image(d / "b.png", "800x800", "rgbtestsrc"),
        "c.jpg": make_image(d / "c.jpg", "640x1136", "smptebars"),
    }


@pytest.fixture
def server() -> Iterator[MediaServer]:
    with MediaServer() as media:
        yield media


def settings(tmp_path: Path, **kw: Any) -> RenderSettings:
    base: dict[str, Any] = {
        "render_output_dir": tmp_path / "out",
        "render_work_dir": tmp_path / "work",
        "render_allow_private": True,
        "render_public_url": "http://files.example.com/v",
        "render_preset": "ultrafast",
    }
    base.update(kw)
    return RenderSettings(**base)


def command(video_id: str = "v1", attempt: int = 1, **kw: Any) -> RenderCommand:
    body: dict[str, Any] = {"video_id": video_id, "store_id": "s1", "product_id": "p1", "title": "Mug",
                            "requested_at": datetime.now(timezone.utc)}
    body.update(kw)
    request = VideoRequest.model_validate(body)
    return RenderCommand(command_id=f"{video_id}:{attempt}", video_id=video_id, attempt=attempt, request=request,
                         issued_at=datetime.now(timezone.utc))


def render(s: RenderSettings, cmd: RenderCommand, voice: Any = None) -> tuple[Any, list[Any]]:
    async def go() -> tuple[Any, list[Any]]:
        reports: list[Any] = []
        fetcher = ImageFetcher(s)

        async def report(event: Any) -> None:
            reports.append(event)

        try:
            renderer = Renderer(s, Storage(s.render_output_dir, s.public_base("http://w")), fetcher, voice)
            return await renderer.render(cmd, report), reports
        finally:
            await fetcher.aclose()
            if voice is not None:
                await voice.aclose()

    return asyncio.run(go())


def ffprobe(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        check=True, capture_output=True,
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def streams(info: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [s for s in info["streams"] if s["codec_type"] == kind]


# --------------------------------------------------------------------------- #
# renders


def test_portrait_video_with_overlays_and_voice(tmp_path: Path, server: MediaServer, images: dict[str, bytes]) -> None:
    urls = [server.file("/a.jpg", images["a.jpg"]), server.file("/b.png", images["b.png"], "image/png"),
            server.file("/c.jpg", images["c.jpg"])]
    s = settings(tmp_path)
    cmd = command(
        image_urls=urls, duration=15, brand_colors=["#FFCC00", "#111111"],
        text_overlays=[{"text": "50% off %{localtime} ' : ; [x] \\", "start": 2, "end": 6},
                       {"text": "Free shipping", "start": 8, "end": 14}],
        voice_over="Meet the mug you will love. Order yours today.",
    )
    outcome, reports = render(s, cmd)
    assert isinstance(outcome, RenderCompleted), outcome
    assert isinstance(reports[0], RenderStarted)
    progress = [r.progress for r in reports if isinstance(r, RenderProgress)]
    assert progress and progress == sorted(progress) and progress[-1] >= 50
    video = s.render_output_dir / "v1.1.mp4"
    thumb = s.render_output_dir / "v1.1.jpg"
    info = ffprobe(video)
    (v,) = streams(info, "video")
    assert (v["width"], v["height"]) == (1080, 1920)
    assert v["codec_name"] == "h264" and v["pix_fmt"] == "yuv420p"
    assert abs(float(info["format"]["duration"]) - 15.0) <= 0.1
    assert len(streams(info, "audio")) == 1
    (t,) = streams(ffprobe(thumb), "video")
    assert (t["width"], t["height"]) == (540, 960) and t["codec_name"] == "mjpeg"
    result = outcome.result
    assert result.video_url == "http://files.example.com/v/v1.1.mp4"
    assert result.thumbnail_url == "http://files.example.com/v/v1.1.jpg"
    assert (result.width, result.height, result.has_audio) == (1080, 1920, True)
    assert abs(result.duration - 15.0) <= 0.1
    # faststart: the moov atom precedes the media data
    head = video.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))
    # nothing left behind but the two files
    assert sorted(p.name for p in s.render_output_dir.iterdir()) == ["v1.1.jpg", "v1.1.mp4"]
    assert list((tmp_path / "work").iterdir()) == []

    # The same command again: reported from the files, not rendered again.
    mtime = video.stat().st_mtime_ns
    again, reports2 = render(s, cmd)
    assert isinstance(again, RenderCompleted) and again.event_id == outcome.event_id
    assert again.result == outcome.result and reports2 == []
    assert video.stat().st_mtime_ns == mtime


@pytest.mark.parametrize(
    ("ratio", "style", "size"),
    [("1:1", "LIFESTYLE", (1080, 1080)), ("16:9", "SOCIAL_MEDIA", (1920, 1080)), ("9:16", "UNBOXING", (1080, 1920))],
)
def test_sizes_and_styles_without_voice(
    tmp_path: Path, server: MediaServer, images: dict[str, bytes], ratio: str, style: str, size: tuple[int, int]
) -> None:
    urls = [server.file("/a.jpg", images["a.jpg"]), server.file("/c.jpg", images["c.jpg"])]
    s = settings(tmp_path)
    outcome, _ = render(s, command(image_urls=urls, duration=5, aspect_ratio=ratio, style=style, title=""))
    assert isinstance(outcome, RenderCompleted), outcome
    info = ffprobe(s.render_output_dir / "v1.1.mp4")
    (v,) = streams(info, "video")
    assert (v["width"], v["height"]) == size
    assert abs(float(info["format"]["duration"]) - 5.0) <= 0.1
    assert streams(info, "audio") == []
    assert outcome.result.has_audio is False


def test_voice_from_a_fake_elevenlabs(tmp_path: Path, server: MediaServer, images: dict[str, bytes]) -> None:
    pcm = tone_pcm(2.0)
    server.routes["/v1/text-to-speech/VOICE1"] = lambda h, b: (200, {"content-type": "audio/pcm"}, pcm)
    s = settings(tmp_path)
    voice = ElevenLabsVoice(server.base, "sk-test", "VOICE1")
    outcome, _ = render(s, command(image_urls=[server.file("/a.jpg", images["a.jpg"])], duration=5,
                                   voice_over="Hello there"), voice)
    assert isinstance(outcome, RenderCompleted), outcome
    assert outcome.result.has_audio
    call = next(r for r in server.requests if r["path"].startswith("/v1/text-to-speech/"))
    assert call["headers"].get("xi-api-key") == "sk-test"
    assert json.loads(call["body"])["text"] == "Hello there"


def test_voice_provider_failure_is_a_clear_failure(tmp_path: Path, server: MediaServer, images: dict[str, bytes]) -> None:
    server.status("/v1/text-to-speech/VOICE1", 401)
    voice = ElevenLabsVoice(server.base, "bad", "VOICE1")
    outcome, _ = render(settings(tmp_path), command(image_urls=[server.file("/a.jpg", images["a.jpg"])], duration=5,
                                                    voice_over="Hi"), voice)
    assert isinstance(outcome, RenderFailed)
    assert outcome.reason == "ElevenLabs voice: HTTP 401" and not outcome.retryable


def test_no_images_broken_image_and_refused_url_fail_with_reasons(
    tmp_path: Path, server: MediaServer, images: dict[str, bytes]
) -> None:
    good = server.file("/a.jpg", images["a.jpg"])
    broken = server.file("/broken.jpg", images["a.jpg"][:200] + b"\x00" * 100)
    s = settings(tmp_path)
    outcome, _ = render(s, command(image_urls=[]))
    assert isinstance(outcome, RenderFailed) and outcome.reason == "the request has no images"
    assert not outcome.retryable
    outcome, _ = render(s, command(image_urls=[good, broken]))
    assert isinstance(outcome, RenderFailed) and outcome.reason.startswith("image 2 is broken or not an image")
    refusing = settings(tmp_path, render_allow_private=False)
    outcome, _ = render(refusing, command(image_urls=[good]))
    assert isinstance(outcome, RenderFailed)
    assert outcome.reason == "image 1: refused: 127.0.0.1 resolves to a loopback address (127.0.0.1)"
    assert not outcome.retryable
    assert not any(p.suffix == ".mp4" for p in s.render_output_dir.iterdir())


def test_an_image_of_too_many_pixels_fails_before_anything_decodes_it(
    tmp_path: Path, server: MediaServer, images: dict[str, bytes]
) -> None:
    """A small file can hold a huge picture: a 790 KB PNG of 16000x16000 took 800 MB to probe,
    and four of them 3.3 GB in one render (twenty would take the machine). Before, nothing
    looked at the size. Here the limit is 1,000,000 pixels and the images 1200x900."""
    from connectors.render.fetch import pixel_size

    s = settings(tmp_path, render_max_image_pixels=1_000_000)
    big = {name: make_image(tmp_path / name, "1200x900", "rgbtestsrc") for name in ("big.png", "big.webp")}
    lossless = tmp_path / "big-lossless.webp"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "rgbtestsrc=s=1200x900:d=1", "-frames:v", "1",
                    "-lossless", "1", str(lossless)], check=True)
    big["big-lossless.webp"] = lossless.read_bytes()
    for name, body in big.items():
        assert pixel_size(body[:32]) == (1200, 900), name  # read from the header
    assert pixel_size(images["a.jpg"][:32]) is None  # a JPEG: ffprobe tells
    ok = server.file("/b.png", images["b.png"], "image/png")  # 800x800: allowed
    for name, body in big.items():
        url = server.file("/" + name, body, "image/png" if name.endswith("png") else "image/webp")
        with pytest.raises(FetchError) as err:
            fetch(s, url, tmp_path / "x")
        assert err.value.reason == "1200x900 pixels, more than the 1000000 allowed (OPS_RENDER_MAX_IMAGE_PIXELS)"
        assert not err.value.retryable
        outcome, _ = render(s, command(image_urls=[ok, url], duration=5))
        assert isinstance(outcome, RenderFailed) and not outcome.retryable, outcome
        assert outcome.reason == "image 2: 1200x900 pixels, more than the 1000000 allowed (OPS_RENDER_MAX_IMAGE_PIXELS)"
    # a JPEG (1200x900): its size from ffprobe, before the full decode and the render
    outcome, _ = render(s, command(image_urls=[ok, server.file("/a.jpg", images["a.jpg"])], duration=5))
    assert isinstance(outcome, RenderFailed) and not outcome.retryable, outcome
    assert outcome.reason == "image 2: 1200x900 pixels, more than the 1000000 allowed (OPS_RENDER_MAX_IMAGE_PIXELS)"
    assert not any(p.suffix == ".mp4" for p in s.render_output_dir.iterdir())
    assert list(s.render_work_dir.iterdir()) == []
    # within the limit it renders
    outcome, _ = render(s, command(image_urls=[ok], duration=5))
    assert isinstance(outcome, RenderCompleted), outcome


# --------------------------------------------------------------------------- #
# the fetcher


def fetch(s: RenderSettings, url: str, dest: Path) -> Path:
    async def go() -> Path:
        fetcher = ImageFetcher(s)
        try:
            return await fetcher.fetch(url, dest)
        finally:
            await fetcher.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:{port}/a.jpg", "loopback"),
        ("http://localhost:{port}/a.jpg", "loopback"),
        ("http://[::1]:{port}/a.jpg", "loopback"),
        ("http://[::ffff:127.0.0.1]:{port}/a.jpg", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://10.1.2.3/a.jpg", "private"),
        ("http://192.168.0.10/a.jpg", "private"),
        ("http://0.0.0.0:{port}/a.jpg", "reserved"),
    ],
)
def test_private_loopback_and_link_local_are_refused_by_default(
    tmp_path: Path, server: MediaServer, images: dict[str, bytes], url: str, why: str
) -> None:
    server.file("/a.jpg", images["a.jpg"])
    s = settings(tmp_path, render_allow_private=False)
    with pytest.raises(FetchError) as err:
        fetch(s, url.format(port=server.httpd.server_address[1]), tmp_path / "img")
    assert why in err.value.reason and err.value.reason.startswith("refused")
    assert server.requests == []  # never connected


def test_fetch_rules_with_loopback_allowed(tmp_path: Path, server: MediaServer, images: dict[str, bytes]) -> None:
    s = settings(tmp_path, render_max_image_bytes=100_000)
    assert fetch(s, server.file("/a.jpg", images["a.jpg"]), tmp_path / "one").read_bytes() == images["a.jpg"]
    # a PNG served as JPEG is written by what it is
    assert fetch(s, server.file("/x.jpg", images["b.png"]), tmp_path / "two").suffix == ".png"
    # one redirect, checked again, is followed; the Host header names the host asked
    assert fetch(s, server.redirect("/r", "/a.jpg"), tmp_path / "three").read_bytes() == images["a.jpg"]
    assert server.requests[-1]["headers"]["Host"].startswith("127.0.0.1:")
    cases = {
        server.file("/page", b"<html>", "text/html"): ("not an image (content-type 'text/html')", False),
        server.file("/fake.jpg", b"GIF89a" + b"\0" * 50): ("not a JPEG, PNG or WebP image", False),
        server.file("/big.jpg", b"\xff\xd8\xff" + b"\0" * 200_000): ("larger than 100000 bytes", False),
        server.status("/gone.jpg", 404): ("HTTP 404", False),
        server.status("/busy.jpg", 503): ("HTTP 503", True),
        server.redirect("/to-file", "file:///etc/passwd"): ("refused: only http(s) URLs", False),
        server.redirect("/loop", "/loop"): ("more than 3 redirects", False),
        "ftp://example.com/a.jpg": ("refused: only http(s) URLs", False),
        "file:///etc/passwd": ("refused: file URLs are off", False),
    }
    for url, (reason, retryable) in cases.items():
        with pytest.raises(FetchError) as err:
            fetch(s, url, tmp_path / "x")
        assert err.value.reason.startswith(reason), (url, err.value.reason)
        assert err.value.retryable is retryable, url

    # A provider's clip: an MP4 by content type and by its bytes, nothing else.
    async def clip(url: str) -> Path:
        fetcher = ImageFetcher(s)
        try:
            return await fetcher.fetch(url, tmp_path / "clip", video=True)
        finally:
            await fetcher.aclose()

    for url, reason in ((server.file("/img-as-clip", images["a.jpg"], "video/mp4"), "not an MP4 clip"),
                        (server.file("/clip.jpg", images["a.jpg"]), "not an MP4 clip (content-type 'image/jpeg')"),
                        ("file:///etc/passwd", "refused: a clip must come over http(s)")):
        with pytest.raises(FetchError) as err:
            asyncio.run(clip(url))
        assert err.value.reason.startswith(reason), (url, err.value.reason)


def test_malformed_urls_fail_for_good_with_a_clear_reason(
    tmp_path: Path, server: MediaServer, images: dict[str, bytes]
) -> None:
    """A URL that can never be fetched (bad brackets, an over-long or empty host label, a control
    character) is refused, not retried: before, it escaped the fetcher as a ValueError,
    UnicodeError or httpx.InvalidURL and became a retryable "renderer error", rendered three times."""
    s = settings(tmp_path)
    good = server.file("/a.jpg", images["a.jpg"])
    bad = {
        "http://[::1/a.jpg": "refused: not a valid URL",
        "http://" + "a" * 70 + ".example.com/a.jpg": "refused: not a valid URL",
        "http://shop..example.com/a.jpg": "refused: not a valid URL",
        server.base + "/a\x00b.jpg": "refused: not a valid URL",
    }
    for url, reason in bad.items():
        with pytest.raises(FetchError) as err:
            fetch(s, url, tmp_path / "x")
        assert err.value.reason.startswith(reason), (url, err.value.reason)
        assert not err.value.retryable, url
    outcome, _ = render(s, command(image_urls=[good, "http://[::1/a.jpg"]))
    assert isinstance(outcome, RenderFailed), outcome
    assert outcome.reason.startswith("image 2: refused: not a valid URL") and not outcome.retryable
    assert list((tmp_path / "work").iterdir()) == []


def test_each_redirect_hop_is_checked_again(tmp_path: Path, server: MediaServer, images: dict[str, bytes]) -> None:
    # Only the test server's own address is allowed; a redirect elsewhere private is refused.
    s = settings(tmp_path, render_allow_private=False, render_allowed_networks="127.0.0.1/32")
    port = server.httpd.server_address[1]
    assert fetch(s, server.file("/a.jpg", images["a.jpg"]), tmp_path / "ok").read_bytes() == images["a.jpg"]
    for target, why in (("http://169.254.169.254/latest/meta-data", "link-local"),
                        (f"http://127.0.0.2:{port}/a.jpg", "loopback"),
                        ("http://10.0.0.1/a.jpg", "private")):
        server.redirect("/hop", target)
        before = len(server.requests)
        with pytest.raises(FetchError) as err:
            fetch(s, server.base + "/hop", tmp_path / "x")
        assert err.value.reason.startswith("refused") and why in err.value.reason, err.value.reason
        assert [r["path"] for r in server.requests[before:]] == ["/hop"]


def test_local_files_only_under_the_configured_folder(tmp_path: Path, images: dict[str, bytes]) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "a.jpg").write_bytes(images["a.jpg"])
    (tmp_path / "secret.jpg").write_bytes(images["a.jpg"])
    (allowed / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    s = settings(tmp_path, render_local_dir=allowed, render_allow_private=False)
    assert fetch(s, f"file://{allowed}/a.jpg", tmp_path / "got").read_bytes() == images["a.jpg"]
    for url in (f"file://{allowed}/../secret.jpg", f"file://{allowed}/link.jpg", "file:///etc/passwd"):
        with pytest.raises(FetchError) as err:
            fetch(s, url, tmp_path / "x")
        assert err.value.reason == "refused: the file is outside the allowed folder", url


# --------------------------------------------------------------------------- #
# Runway image-to-video (a fake Runway API on loopback)


class FakeRunway:
    """POST /v1/image_to_video -> a task; GET /v1/tasks/{id}: RUNNING once, then the outcome."""

    def __init__(self, server: MediaServer, clip: bytes, fail: dict[str, str] | None = None) -> None:
        self.server = server
        self.tasks: dict[str, int] = {}
        self.fail = fail
        server.file("/clips/out.mp4", clip, "video/mp4")
        server.routes["/v1/image_to_video"] = self.create

    def create(self, handler: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        task = f"task-{len(self.tasks) + 1}"
        self.tasks[task] = 0
        self.server.routes[f"/v1/tasks/{task}"] = lambda h, b, t=task: self.poll(t)
        return 200, {"content-type": "application/json"}, json.dumps({"id": task}).encode()

    def poll(self, task: str) -> tuple[int, dict[str, str], bytes]:
        self.tasks[task] += 1
        if self.tasks[task] == 1:
            body: dict[str, Any] = {"id": task, "status": "RUNNING"}
        elif self.fail:
            body = {"id": task, "status": "FAILED", **self.fail}
        else:
            body = {"id": task, "status": "SUCCEEDED", "output": [self.server.base + "/clips/out.mp4"]}
        return 200, {"content-type": "application/json"}, json.dumps(body).encode()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=720x1280:d=2:r=24",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path.read_bytes()


def render_with_runway(s: RenderSettings, cmd: RenderCommand, base: str) -> tuple[Any, list[Any]]:
    from connectors.render.providers import RunwayClips

    async def go() -> tuple[Any, list[Any]]:
        fetcher = ImageFetcher(s)
        clips = RunwayClips(base, "rw-key", "gen4_turbo", fetcher, poll_interval=0.05, timeout=10)
        reports: list[Any] = []

        async def report(event: Any) -> None:
            reports.append(event)

        try:
            renderer = Renderer(s, Storage(s.render_output_dir, "http://x"), fetcher, None, clips)
            return await renderer.render(cmd, report), reports
        finally:
            await clips.aclose()
            await fetcher.aclose()

    return asyncio.run(go())


def test_runway_clips_become_the_scenes(
    tmp_path: Path, server: MediaServer, images: dict[str, bytes], clip: bytes
) -> None:
    runway = FakeRunway(server, clip)
    s = settings(tmp_path, render_allow_private=False, render_allowed_networks="127.0.0.1/32")
    urls = [server.file("/a.jpg", images["a.jpg"]), server.file("/b.png", images["b.png"], "image/png")]
    outcome, _ = render_with_runway(s, command(image_urls=urls, duration=6, description="A mug"), server.base)
    assert isinstance(outcome, RenderCompleted), outcome
    info = ffprobe(s.render_output_dir / "v1.1.mp4")
    (v,) = streams(info, "video")
    assert (v["width"], v["height"]) == (1080, 1920) and abs(float(info["format"]["duration"]) - 6) <= 0.1
    assert len(runway.tasks) == 2 and all(polls == 2 for polls in runway.tasks.values())
    creates = [r for r in server.requests if r["path"] == "/v1/image_to_video"]
    assert all(r["headers"]["Authorization"] == "Bearer rw-key" for r in creates)
    assert all(r["headers"]["X-Runway-Version"] == "2024-11-06" for r in creates)
    bodies = [json.loads(r["body"]) for r in creates]
    assert {b["ratio"] for b in bodies} == {"720:1280"} and bodies[0]["promptText"] == "Mug. A mug"
    assert sorted(b["promptImage"].split(";")[0] for b in bodies) == ["data:image/jpeg", "data:image/png"]
    assert len([r for r in server.requests if r["path"] == "/clips/out.mp4"]) == 2


def test_a_failed_runway_task_fails_the_render_with_its_reason(
    tmp_path: Path, server: MediaServer, images: dict[str, bytes], clip: bytes
) -> None:
    FakeRunway(server, clip, fail={"failure": "The image was flagged", "failureCode": "SAFETY.INPUT.IMAGE"})
    s = settings(tmp_path)
    outcome, _ = render_with_runway(s, command(image_urls=[server.file("/a.jpg", images["a.jpg"])], duration=5),
                                    server.base)
    assert isinstance(outcome, RenderFailed)
    assert outcome.reason == "Runway: The image was flagged" and not outcome.retryable


def test_sweep_removes_only_old_leftovers_of_killed_renders(tmp_path: Path) -> None:
    import os
    import time

    from connectors.render.storage import sweep

    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir()
    work.mkdir()
    storage = Storage(out, "http://x")
    old_part, new_part = storage.temp("v1.1.mp4"), storage.temp("v2.1.jpg")
    old_work, new_work = work / "v1.1.0123456789ab", work / "v2.1.ba9876543210"
    finished, other = out / "v1.1.mp4", out / "notes.txt"
    for path in (old_part, new_part, finished, other):
        path.write_bytes(b"x")
    for folder in (old_work, new_work):
        folder.mkdir()
        (folder / "img1.jpg").write_bytes(b"x")
    hour_ago = time.time() - 3600
    for path in (old_part, old_work, finished, other):
        os.utime(path, (hour_ago, hour_ago))
    assert sweep(out, work, older_than_s=600) == 2
    assert sorted(p.name for p in out.iterdir()) == sorted([new_part.name, "v1.1.mp4", "notes.txt"])
    assert [p.name for p in work.iterdir()] == [new_work.name]
