"""ffmpeg, ffprobe and espeak-ng, run from argument lists (never a shell).

``build_argv(plan)`` makes the one ffmpeg command of a video: each image is
decoded and scaled once, held as a still (``loop``) and moved by the style's
motion (a slow zoom, ``zoompan``, or a pan, a moving ``crop`` of a slightly
larger frame); a title card in the brand colour comes first; scenes are
joined with ``xfade`` transitions; overlays are ``drawtext`` reading
``textfile=`` with ``expansion=none`` (no text ever enters the filter graph);
the voice-over is padded and cut to the exact duration. Every input is a
file we wrote, read with ``-protocol_whitelist file`` and a forced format.
The output is H.264 yuv420p with ``+faststart`` and exactly
``round(duration * fps)`` frames.

``run`` reads ffmpeg's ``-progress`` output and reports percentages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from models.video import VideoStyle

#: Characters a path may hold to stand inside a filter graph unescaped (our own paths only).
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./-]+$")


class RenderError(Exception):
    def __init__(self, reason: str, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class TooLarge(RenderError):
    """An image with more pixels than allowed (not retryable)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, retryable=False)


@dataclass(frozen=True)
class StyleLook:
    motion: str  # "zoom", "zoomout", "pan", "panup"
    transition: str  # an xfade transition
    alternate: bool = False  # alternate zoom in / out between scenes


STYLES: dict[VideoStyle, StyleLook] = {
    VideoStyle.PRODUCT_SHOWCASE: StyleLook("zoom", "fade"),
    VideoStyle.LIFESTYLE: StyleLook("pan", "dissolve"),
    VideoStyle.SOCIAL_MEDIA: StyleLook("zoom", "slideleft"),
    VideoStyle.AD_CREATIVE: StyleLook("zoom", "zoomin", alternate=True),
    VideoStyle.UNBOXING: StyleLook("panup", "slideup"),
}


@dataclass(frozen=True)
class Overlay:
    textfile: Path
    start: float
    end: float


@dataclass(frozen=True)
class Plan:
    width: int
    height: int
    fps: int
    duration: float
    images: tuple[Path, ...]  # a still (jpg/png/webp) or a provider's clip (mp4) per scene
    style: VideoStyle
    font: Path
    output: Path
    background: str = "0x1F2937"  # title card colour (0xRRGGBB)
    accent: str = "0xFFFFFF"  # title text colour
    title_file: Path | None = None
    overlays: tuple[Overlay, ...] = ()
    voice: Path | None = None
    preset: str = "veryfast"
    crf: int = 23
    threads: int = 0

    @property
    def frames(self) -> int:
        return round(self.duration * self.fps)


@dataclass
class Timeline:
    """Scene lengths and transitions in frames (exact total)."""

    scenes: list[int] = field(default_factory=list)
    transition: int = 0

    @property
    def total(self) -> int:
        return sum(self.scenes) - self.transition * (len(self.scenes) - 1)


def timeline(plan: Plan) -> Timeline:
    total = plan.frames
    count = len(plan.images) + (1 if plan.title_file else 0)
    if count == 1:
        return Timeline([total], 0)
    # Transitions of 0.5 s, shorter when the scenes are short.
    transition = max(2, min(round(0.5 * plan.fps), total // (4 * count)))
    title = min(round(2.0 * plan.fps), total // (count + 1)) if plan.title_file else 0
    image_frames = total - title + transition * (count - 1)
    n = len(plan.images)
    each, extra = divmod(image_frames, n)
    scenes = ([title] if plan.title_file else []) + [each + (1 if i < extra else 0) for i in range(n)]
    result = Timeline(scenes, transition)
    assert result.total == total, (result, total)
    return result


def _even(value: float) -> int:
    return int(value) // 2 * 2


def _safe(path: Path) -> str:
    text = str(path)
    if not _SAFE_PATH.match(text):
        raise RenderError(f"unsafe work path {text!r}", retryable=False)
    return text


def _is_clip(path: Path) -> bool:
    return path.suffix == ".mp4"


def _scene(index: int, plan: Plan, frames: int, look: StyleLook, scene_no: int) -> str:
    w, h, fps = plan.width, plan.height, plan.fps
    if _is_clip(plan.images[index]):
        # A clip: its own motion, at our rate; its last frame held if it is shorter than the scene.
        return (
            f"[{index}:v]scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},setsar=1,format=yuv420p,"
            f"fps={fps},tpad=stop_mode=clone:stop={frames},trim=end_frame={frames},settb=1/{fps},setpts=N,"
            f"setsar=1,format=yuv420p"
        )
    # One decoded, scaled frame held for the scene: timestamps and frame rate of
    # the output (xfade refuses inputs whose frame rates differ).
    hold = f"loop=loop={frames - 1}:size=1:start=0,settb=1/{fps},setpts=N,fps={fps}"
    if look.motion in ("pan", "panup"):
        big_w, big_h = _even(w * 1.12), _even(h * 1.12)
        if look.motion == "pan":
            direction = "(iw-ow)*n/{f}" if scene_no % 2 == 0 else "(iw-ow)*(1-n/{f})"
            x, y = direction.format(f=frames), "(ih-oh)/2"
        else:
            x, y = "(iw-ow)/2", "(ih-oh)*(1-n/{f})".format(f=frames)
        motion = f"crop={w}:{h}:x='{x}':y='{y}'"
        prepare = f"scale={big_w}:{big_h}:force_original_aspect_ratio=increase,crop={big_w}:{big_h}"
    else:
        zoom_out = look.alternate and scene_no % 2 == 1
        z = f"1.12-0.12*on/{frames}" if zoom_out else f"1+0.12*on/{frames}"
        motion = f"zoompan=z='{z}':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':d=1:s={w}x{h}:fps={fps}"
        prepare = f"scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h}"
    return (
        f"[{index}:v]{prepare},setsar=1,format=yuv420p,{hold},{motion},"
        f"trim=end_frame={frames},settb=1/{fps},setpts=N,setsar=1,format=yuv420p"
    )


def _drawtext(plan: Plan, textfile: Path, size: int, colour: str, y: str, extra: str = "") -> str:
    return (
        f"drawtext=fontfile={_safe(plan.font)}:textfile={_safe(textfile)}:expansion=none:"
        f"fontsize={size}:fontcolor={colour}:line_spacing={size // 4}:x=(w-text_w)/2:y={y}{extra}"
    )


def filter_graph(plan: Plan) -> tuple[str, str | None]:
    """The filter_complex and the audio output label (None: no audio)."""
    look = STYLES[plan.style]
    line = timeline(plan)
    parts: list[str] = []
    labels: list[str] = []
    scene_no = 0
    short = min(plan.width, plan.height)
    if plan.title_file:
        frames = line.scenes[0]
        parts.append(
            f"color=c={plan.background}:s={plan.width}x{plan.height}:r={plan.fps}:d={frames / plan.fps:.6f},"
            f"format=yuv420p,{_drawtext(plan, plan.title_file, short // 12, plan.accent, '(h-text_h)/2')},"
            f"trim=end_frame={frames},settb=1/{plan.fps},setpts=N,setsar=1[s0]"
        )
        labels.append("[s0]")
        scene_no = 1
    for i in range(len(plan.images)):
        frames = line.scenes[scene_no]
        parts.append(_scene(i, plan, frames, look, scene_no) + f"[s{scene_no}]")
        labels.append(f"[s{scene_no}]")
        scene_no += 1
    current = labels[0]
    elapsed = line.scenes[0]
    for k in range(1, len(labels)):
        offset = (elapsed - line.transition) / plan.fps
        out = f"[x{k}]"
        parts.append(
            f"{current}{labels[k]}xfade=transition={look.transition}:duration={line.transition / plan.fps:.6f}:"
            f"offset={offset:.6f}{out}"
        )
        current = out
        elapsed += line.scenes[k] - line.transition
    chain = []
    for overlay in plan.overlays:
        enable = f":enable='between(t,{overlay.start:.3f},{min(overlay.end, plan.duration):.3f})'"
        box = f":box=1:boxcolor={plan.background}@0.75:boxborderw={short // 40}"
        chain.append(_drawtext(plan, overlay.textfile, short // 18, plan.accent, "h*0.78-text_h/2", box + enable))
    chain.append(f"trim=end_frame={plan.frames},format=yuv420p")
    parts.append(f"{current}{','.join(chain)}[vout]")
    audio = None
    if plan.voice is not None:
        audio_index = len(plan.images)
        fade_at = max(plan.duration - 0.5, 0)
        parts.append(
            f"[{audio_index}:a]aresample=48000,aformat=sample_fmts=fltp:channel_layouts=stereo,apad,"
            f"atrim=0:{plan.duration:.6f},afade=t=out:st={fade_at:.3f}:d=0.5,asetpts=N/SR/TB[aout]"
        )
        audio = "[aout]"
    return ";".join(parts), audio


def build_argv(plan: Plan, ffmpeg: str = "ffmpeg") -> list[str]:
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-nostats", "-progress", "pipe:1"]
    for image in plan.images:
        argv += ["-protocol_whitelist", "file", "-f", "mp4" if _is_clip(image) else "image2", "-i", _safe(image)]
    if plan.voice is not None:
        argv += ["-protocol_whitelist", "file", "-f", "wav", "-i", _safe(plan.voice)]
    graph, audio = filter_graph(plan)
    argv += ["-filter_complex", graph, "-map", "[vout]"]
    if audio:
        argv += ["-map", audio, "-c:a", "aac", "-b:a", "128k"]
    argv += [
        "-frames:v", str(plan.frames), "-r", str(plan.fps),
        "-c:v", "libx264", "-preset", plan.preset, "-crf", str(plan.crf), "-pix_fmt", "yuv420p",
        "-profile:v", "high", "-threads", str(plan.threads),
        "-movflags", "+faststart", "-t", f"{plan.duration:.6f}", "-f", "mp4", _safe(plan.output),
    ]
    return argv


async def _communicate_limited(proc: asyncio.subprocess.Process, timeout: float) -> tuple[bytes, bytes]:
    try:
        return await asyncio.wait_for(proc.communicate(), timeout=timeout)
    except BaseException:  # a timeout, or the render was cancelled: the process goes too
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise


async def run(
    argv: list[str], total_s: float, on_progress: Callable[[float], Awaitable[None]] | None, timeout: float
) -> None:
    """Run ffmpeg; ``on_progress(percent)`` as its ``-progress`` output moves. RenderError on failure."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stderr_chunks: list[bytes] = []

    async def read_stderr() -> None:
        assert proc.stderr is not None
        while chunk := await proc.stderr.read(4096):
            stderr_chunks.append(chunk)
            del stderr_chunks[:-16]

    async def read_progress() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith("out_time_us=") and on_progress is not None:
                value = line.partition("=")[2]
                if value.lstrip("-").isdigit():
                    await on_progress(max(0.0, min(100.0, int(value) / 1e6 / total_s * 100)))

    try:
        await asyncio.wait_for(asyncio.gather(read_stderr(), read_progress(), proc.wait()), timeout=timeout)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise RenderError(f"ffmpeg took longer than {timeout:g} s and was stopped") from None
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        tail = b"".join(stderr_chunks).decode(errors="replace").strip().splitlines()[-3:]
        raise RenderError(f"ffmpeg exited {proc.returncode}: {' | '.join(tail)[:500]}")


async def simple(argv: list[str], timeout: float, what: str) -> bytes:
    """Run a short command; its stdout. RenderError (naming ``what``) on failure."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await _communicate_limited(proc, timeout)
    except asyncio.TimeoutError:
        raise RenderError(f"{what} took longer than {timeout:g} s") from None
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-2:]
        raise RenderError(f"{what} failed: {' | '.join(tail)[:300]}", retryable=False)
    return out


async def probe(path: Path, timeout: float = 30.0) -> dict[str, object]:
    """ffprobe's JSON of a file's format and streams."""
    out = await simple(
        ["ffprobe", "-v", "error", "-protocol_whitelist", "file", "-print_format", "json",
         "-show_format", "-show_streams", _safe(path)],
        timeout,
        f"ffprobe of {path.name}",
    )
    return json.loads(out)  # type: ignore[no-any-return]


async def check_image(path: Path, index: int, max_pixels: int) -> None:
    """The image is at most ``max_pixels`` and decodes as a still picture (a clear reason when not)."""
    try:
        info = await simple(
            ["ffprobe", "-v", "error", "-protocol_whitelist", "file", "-f", "image2", "-select_streams", "v:0",
             "-show_entries", "stream=width,height", "-of", "json", _safe(path)],
            30.0,
            f"image {index}",
        )
        streams = json.loads(info).get("streams") or []
        if not streams or not streams[0].get("width"):
            raise RenderError(f"image {index} cannot be decoded", retryable=False)
        width, height = int(streams[0]["width"]), int(streams[0].get("height") or 0)
        if width * height > max_pixels:
            # Before the full decode (and the render, which holds every image decoded at once).
            raise TooLarge(
                f"image {index}: {width}x{height} pixels, more than the {max_pixels} allowed (OPS_RENDER_MAX_IMAGE_PIXELS)"
            )
        # Decode it fully: a truncated or corrupt body fails here, not mid-render.
        await simple(
            ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-xerror", "-protocol_whitelist", "file",
             "-f", "image2", "-i", _safe(path), "-frames:v", "1", "-f", "null", "-"],
            30.0,
            f"image {index}",
        )
    except TooLarge:
        raise
    except RenderError as exc:
        raise RenderError(f"image {index} is broken or not an image ({exc.reason})", retryable=False) from None


async def thumbnail(video: Path, out: Path, width: int, at_s: float = 2.0) -> None:
    await simple(
        ["ffmpeg", "-hide_banner", "-nostdin", "-y", "-v", "error", "-protocol_whitelist", "file",
         "-ss", f"{at_s:.3f}", "-f", "mp4", "-i", _safe(video), "-frames:v", "1", "-vf", f"scale={width}:-2",
         "-c:v", "mjpeg", "-q:v", "3", "-f", "image2", "-update", "1", _safe(out)],
        60.0,
        "the thumbnail",
    )


async def speak(script: Path, wav: Path, voice: str, timeout: float = 60.0) -> None:
    """espeak-ng reads the script file (never an argument) into a WAV file."""
    await simple(["espeak-ng", "-v", voice, "-s", "165", "-f", _safe(script), "-w", _safe(wav)], timeout, "espeak-ng")
