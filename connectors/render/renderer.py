"""One render command to its outcome: fetch, check, speak, render, thumbnail, probe.

``Renderer.render(command, report)`` reports STARTED and PROGRESS through
``report`` and returns the final outcome (COMPLETED or FAILED), never
raising for a bad request: a request with no images, an image that is
refused, missing or broken, a voice that cannot be spoken are FAILED with the
reason (not retryable); ffmpeg failing or a fetch timing out are FAILED and
retryable.

Idempotent: an attempt whose files are already in the output folder (a
repeated command, a crash after the rename) is reported COMPLETED again from
the files, not rendered again. A command taken after its ``start_by`` (the
job's queue deadline: the worker has failed that attempt and queued the next)
is not rendered and has no outcome (None). Outcome ids are ``{video_id}:{attempt}:...``,
the same however often the command is handled.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import textwrap
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path

from connectors.render import ffmpeg
from connectors.render.fetch import FetchError, ImageFetcher
from connectors.render.providers import ClipProvider, VoiceProvider
from connectors.render.settings import RenderSettings
from connectors.render.storage import Storage
from models.video import (
    MAX_OVERLAY_CHARS,
    MAX_SCRIPT_CHARS,
    RenderCommand,
    RenderCompleted,
    RenderFailed,
    RenderProgress,
    RenderStarted,
    VideoEvent,
    VideoRequest,
    VideoResult,
    clean_text,
)

log = logging.getLogger(__name__)
Report = Callable[[VideoEvent], Awaitable[None]]
PROGRESS_STEP = 10.0  # report progress each time it moved this many points


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _wrap(text: str, width_px: int, font_px: int) -> str:
    per_line = max(8, int(width_px * 0.9 / (font_px * 0.62)))
    lines = []
    for paragraph in text.splitlines() or [""]:
        lines.extend(textwrap.wrap(paragraph, per_line) or [""])
    return "\n".join(lines[:6])


def _colours(request: VideoRequest) -> tuple[str, str]:
    """(title card / box colour, text colour) as 0xRRGGBB."""
    background = (request.brand_colors[0] if request.brand_colors else "#1F2937").lstrip("#").upper()
    if len(request.brand_colors) > 1:
        return "0x" + background, "0x" + request.brand_colors[1].lstrip("#").upper()
    r, g, b = (int(background[i : i + 2], 16) for i in (0, 2, 4))
    light = 0.299 * r + 0.587 * g + 0.114 * b > 150
    return "0x" + background, "0x111111" if light else "0xFFFFFF"


async def result_of(video: Path, thumb_url: str, video_url: str) -> VideoResult:
    info = await ffmpeg.probe(video)
    streams = info.get("streams") or []
    v = next(s for s in streams if isinstance(s, dict) and s.get("codec_type") == "video")  # type: ignore[union-attr]
    has_audio = any(isinstance(s, dict) and s.get("codec_type") == "audio" for s in streams)  # type: ignore[union-attr]
    fmt = info.get("format") or {}
    return VideoResult(
        video_url=video_url,
        thumbnail_url=thumb_url,
        duration=round(float(fmt.get("duration", 0.0)), 3),  # type: ignore[union-attr]
        width=int(v["width"]),
        height=int(v["height"]),
        format="mp4",
        has_audio=has_audio,
    )


class Renderer:
    def __init__(
        self,
        settings: RenderSettings,
        storage: Storage,
        fetcher: ImageFetcher,
        voice: VoiceProvider | None = None,
        clips: ClipProvider | None = None,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.fetcher = fetcher
        self.voice = voice
        self.clips = clips
        storage.ensure()
        settings.render_work_dir.mkdir(parents=True, exist_ok=True)

    async def render(self, command: RenderCommand, report: Report) -> RenderCompleted | RenderFailed | None:
        vid, attempt = command.video_id, command.attempt
        video_name, thumb_name = self.storage.names(vid, attempt)
        video_path, thumb_path = self.storage.root / video_name, self.storage.root / thumb_name
        if video_path.exists() and thumb_path.exists():
            log.info("video %s attempt %d is on disk already: reported again", vid, attempt)
            result = await result_of(video_path, self.storage.url(thumb_name), self.storage.url(video_name))
            return self._completed(command, result, None)
        if command.start_by is not None and _now() > command.start_by:
            log.warning("video %s attempt %d not rendered: taken after its start-by time %s (the job moved on)",
                        vid, attempt, command.start_by.isoformat())
            return None
        await report(RenderStarted(event_id=f"{vid}:{attempt}:started", video_id=vid, attempt=attempt, occurred_at=_now()))
        work = (self.settings.render_work_dir / f"{vid}.{attempt}.{uuid.uuid4().hex[:12]}").resolve()
        work.mkdir(parents=True)
        started = time.perf_counter()
        try:
            result = await self._render(command, work, video_name, thumb_name, report)
        except (ffmpeg.RenderError, FetchError) as exc:
            log.warning("video %s attempt %d failed: %s", vid, attempt, exc.reason)
            return RenderFailed(
                event_id=f"{vid}:{attempt}:failed", video_id=vid, attempt=attempt, occurred_at=_now(),
                reason=exc.reason[:2000], retryable=exc.retryable,
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return self._completed(command, result, time.perf_counter() - started)

    @staticmethod
    def _completed(command: RenderCommand, result: VideoResult, seconds: float | None) -> RenderCompleted:
        return RenderCompleted(
            event_id=f"{command.video_id}:{command.attempt}:completed", video_id=command.video_id,
            attempt=command.attempt, occurred_at=_now(), result=result,
            render_seconds=None if seconds is None else round(seconds, 3),
        )

    async def _render(
        self, command: RenderCommand, work: Path, video_name: str, thumb_name: str, report: Report
    ) -> VideoResult:
        request = command.request
        if not request.image_urls:
            raise ffmpeg.RenderError("the request has no images", retryable=False)
        images = []
        for i, url in enumerate(request.image_urls, start=1):
            try:
                path = await self.fetcher.fetch(url, work / f"img{i}")
            except FetchError as exc:
                raise FetchError(f"image {i}: {exc.reason}", exc.retryable) from None
            await ffmpeg.check_image(path, i, self.settings.render_max_image_pixels)
            images.append(path)
        if self.clips is not None:
            # Each image becomes a hosted provider's clip (at once; each clip checked as a video).
            prompt = clean_text(f"{request.title}. {request.description}".strip(" ."), 1000)
            clips = self.clips
            images = list(await asyncio.gather(*(
                clips.clip(path, prompt, request.aspect_ratio, work / f"clip{i}")
                for i, path in enumerate(images, start=1)
            )))
        width, height = request.resolution
        short = min(width, height)
        title_file = None
        title = clean_text(request.title, 200).strip()
        if title:
            title_file = work / "title.txt"
            title_file.write_text(_wrap(title, width, short // 12), encoding="utf-8")
        overlays = []
        for k, overlay in enumerate(request.text_overlays):
            text = clean_text(overlay.text, MAX_OVERLAY_CHARS).strip()
            if not text:
                continue
            path = work / f"overlay{k}.txt"
            path.write_text(_wrap(text, width, short // 18), encoding="utf-8")
            overlays.append(ffmpeg.Overlay(path, overlay.start, overlay.end))
        voice = None
        script = clean_text(request.voice_over or "", MAX_SCRIPT_CHARS).strip()
        if script:
            voice = work / "voice.wav"
            if self.voice is not None:
                await self.voice.speak(script, voice)
            else:
                script_file = work / "script.txt"
                script_file.write_text(script, encoding="utf-8")
                await ffmpeg.speak(script_file, voice, self.settings.render_voice)
        background, accent = _colours(request)
        temp_video = self.storage.temp(video_name)
        temp_thumb = self.storage.temp(thumb_name)
        plan = ffmpeg.Plan(
            width=width, height=height, fps=self.settings.render_fps, duration=request.duration,
            images=tuple(images), style=request.style, font=self.settings.render_font, output=temp_video.resolve(),
            background=background, accent=accent, title_file=title_file, overlays=tuple(overlays), voice=voice,
            preset=self.settings.render_preset, crf=self.settings.render_crf,
        )
        last = [0.0]

        async def on_progress(percent: float) -> None:
            if percent - last[0] >= PROGRESS_STEP and percent < 100:
                last[0] = percent
                await report(RenderProgress(
                    event_id=f"{command.video_id}:{command.attempt}:progress:{int(percent)}",
                    video_id=command.video_id, attempt=command.attempt, progress=round(percent, 1),
                    occurred_at=_now(),
                ))

        try:
            await ffmpeg.run(ffmpeg.build_argv(plan), request.duration, on_progress, self.settings.render_timeout)
            await ffmpeg.thumbnail(temp_video.resolve(), temp_thumb.resolve(), self.settings.render_thumbnail_width,
                                   min(2.0, request.duration / 2))
            os.replace(temp_thumb, self.storage.root / thumb_name)
            os.replace(temp_video, self.storage.root / video_name)
        finally:
            for temp in (temp_video, temp_thumb):
                temp.unlink(missing_ok=True)
        return await result_of(
            self.storage.root / video_name, self.storage.url(thumb_name), self.storage.url(video_name)
        )
