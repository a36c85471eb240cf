"""Baseline for bench/video.py: the least ffmpeg needs to make the same video file.

One ffmpeg command: the same five images (already on disk), each scaled once
and held as a still for its share of the 15 s, cut together with no motion, no
transitions, no title card, no text, no voice, encoded with the same x264
preset, size and frame rate. No fetching, no checks, no thumbnail, no probe.
It is only the floor the renderer's wall time is compared with.
Usage: python bench/baseline_video.py OUT.mp4 IMAGE... (settings from OPS_RENDER_*).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.render.settings import RenderSettings  # noqa: E402


def render(out: Path, images: list[Path], width: int = 1080, height: int = 1920, duration: float = 15.0) -> float:
    s = RenderSettings()
    fps = s.render_fps
    frames = round(duration * fps)
    each = [frames // len(images) + (1 if i < frames % len(images) else 0) for i in range(len(images))]
    argv = ["ffmpeg", "-hide_banner", "-nostdin", "-y", "-loglevel", "error"]
    for image in images:
        argv += ["-i", str(image)]
    parts = [
        f"[{i}:v]scale={width}:{height}:force_original_aspect_ratio=increase,crop={width}:{height},setsar=1,"
        f"format=yuv420p,loop=loop={n - 1}:size=1:start=0,settb=1/{fps},setpts=N,fps={fps}[s{i}]"
        for i, n in enumerate(each)
    ]
    parts.append("".join(f"[s{i}]" for i in range(len(images))) + f"concat=n={len(images)}:v=1:a=0[v]")
    argv += ["-filter_complex", ";".join(parts), "-map", "[v]", "-frames:v", str(frames), "-c:v", "libx264",
             "-preset", s.render_preset, "-crf", str(s.render_crf), "-pix_fmt", "yuv420p",
             "-movflags", "+faststart", str(out)]
    started = time.perf_counter()
    subprocess.run(argv, check=True)
    return time.perf_counter() - started


if __name__ == "__main__":
    print(f"{render(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]):.3f}")
