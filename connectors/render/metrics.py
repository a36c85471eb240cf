"""The renderer's Prometheus metrics (served by ``ops-engine renderer`` at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

GENERATION_SECONDS = Histogram(
    "ops_video_generation_seconds",
    "Wall time of one render (fetch, speech, ffmpeg, thumbnail), completed renders only",
    buckets=(1, 2.5, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600),
)
RENDERS = Counter(
    "ops_video_renders_total",
    "Render commands handled by the renderer, by outcome (COMPLETED, FAILED, REPORTED_AGAIN, CANCELLED, EXPIRED, INVALID)",
    ["outcome"],
)
RENDER_QUEUE = Gauge(
    "ops_video_render_queue_depth",
    "Render commands this renderer holds that wait for a free render slot",
)
RENDERING = Gauge("ops_video_renders_in_progress", "Renders running in this renderer")
