"""Bench: one product video, 15 s at 1080x1920, from 5 images, with text
overlays, a title card and a spoken voice-over (espeak-ng), on this machine.

Measured (wall seconds, median of ``--runs``):

1. the renderer (connectors/render/renderer.py ``Renderer.render``): fetch
   the 5 images from a real HTTP server on loopback (SSRF checks on, loopback
   allowed by ``OPS_RENDER_ALLOWED_NETWORKS``), check each, speak the script,
   render with ffmpeg (zoom, transitions, overlays, audio), make the thumbnail
   and probe the result: what a render command costs;
2. the baseline, in the same run on the same images: bench/baseline_video.py,
   one plain ffmpeg slideshow of the same size, length, preset and frame rate,
   with nothing else (no motion, transitions, text, audio, fetch, thumbnail).

Prints both, the ratio renderer/baseline, and checks the target: under 20 s
(the plan asks for under 5 minutes). Usage: python bench/video.py [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.baseline_video import render as baseline_render  # noqa: E402
from connectors.render.fetch import ImageFetcher  # noqa: E402
from connectors.render.renderer import Renderer  # noqa: E402
from connectors.render.settings import RenderSettings  # noqa: E402
from connectors.render.storage import Storage  # noqa: E402
from models.video import RenderCommand, RenderCompleted, VideoRequest  # noqa: E402
from tests.fakes.media_server import MediaServer  # noqa: E402

TARGET_S = 20.0
PATTERNS = ("testsrc2", "smptebars", "rgbtestsrc", "mandelbrot", "life")
SIZES = ("1600x1200", "1200x1600", "1000x1000", "1920x1080", "800x1200")


def make_images(folder: Path) -> list[Path]:
    paths = []
    for i, (pattern, size) in enumerate(zip(PATTERNS, SIZES)):
        path = folder / f"src{i}.jpg"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"{pattern}=s={size}", "-frames:v", "1",
                        "-q:v", "3", str(path)], check=True)
        paths.append(path)
    return paths


async def render_once(settings: RenderSettings, urls: list[str], run: int) -> float:
    request = VideoRequest(
        video_id=f"bench-{run}", store_id="bench", product_id="p1", image_urls=tuple(urls),
        title="Ceramic Travel Mug", description="Keeps coffee hot for 12 hours", brand_colors=("#0F766E", "#FFFFFF"),
        duration=15, aspect_ratio="9:16", style="PRODUCT_SHOWCASE",
        text_overlays=({"text": "Keeps coffee hot for 12 hours", "start": 2.5, "end": 6.5},
                       {"text": "Leak-proof lid", "start": 7, "end": 10.5},
                       {"text": "Order today: free shipping", "start": 11, "end": 15}),
        voice_over="Meet the ceramic travel mug. It keeps your coffee hot for twelve hours, "
                   "and its lid never leaks. Order yours today, with free shipping.",
        requested_at=datetime.now(timezone.utc),
    )
    command = RenderCommand(command_id=f"bench-{run}:1", video_id=request.video_id, attempt=1, request=request,
                            issued_at=datetime.now(timezone.utc))
    fetcher = ImageFetcher(settings)
    renderer = Renderer(settings, Storage(settings.render_output_dir, "http://bench/files"), fetcher)

    async def report(_: object) -> None:
        pass

    started = time.perf_counter()
    try:
        outcome = await renderer.render(command, report)
    finally:
        await fetcher.aclose()
    wall = time.perf_counter() - started
    if not isinstance(outcome, RenderCompleted):
        raise SystemExit(f"render failed: {outcome.reason if outcome else 'not rendered (start_by passed)'}")
    r = outcome.result
    assert (r.width, r.height) == (1080, 1920) and abs(r.duration - 15) <= 0.1 and r.has_audio, r
    return wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp, MediaServer() as server:
        folder = Path(tmp)
        images = make_images(folder)
        urls = [server.file(f"/{p.name}", p.read_bytes()) for p in images]
        settings = RenderSettings(
            render_output_dir=folder / "out", render_work_dir=folder / "work",
            render_allowed_networks="127.0.0.1/32",
        )
        engine, base = [], []
        for run in range(args.runs):
            base.append(baseline_render(folder / f"baseline{run}.mp4", images))
            engine.append(asyncio.run(render_once(settings, urls, run)))
    e, b = statistics.median(engine), statistics.median(base)
    print(f"video: 15 s 1080x1920 from 5 images, 3 overlays, title card, voice-over; {args.runs} runs, "
          f"{os.cpu_count()} cores, x264 preset {settings.render_preset}")
    print(f"  renderer : median {e:.2f} s (runs {', '.join(f'{x:.2f}' for x in engine)})")
    print(f"  baseline : median {b:.2f} s (runs {', '.join(f'{x:.2f}' for x in base)}) plain ffmpeg slideshow")
    print(f"  ratio renderer/baseline: x{e / b:.2f}")
    print(f"  target < {TARGET_S:.0f} s: {'met' if e < TARGET_S else 'NOT met'}")


if __name__ == "__main__":
    main()
