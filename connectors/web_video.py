"""HTTP views of video renders, served by every worker.

- ``POST /videos``: a validated request (models/video.py ``VideoRequest``;
  ``video_id``, ``requested_at`` and ``source`` are the engine's) is published
  on ``video.requests``: 202 with the id. 400 with the reason when invalid.
- ``POST /videos/batch``: ``{"store_id", "defaults": {...}, "products": [...]}``,
  one request per product (each product's fields over the defaults); all are
  validated first, and nothing is sent if one is invalid (400 naming it).
- ``GET /videos/{video_id}``: the job, read on the worker that owns its
  partition (``app.table_route``).
- ``POST /videos/{video_id}/retry`` and ``/cancel``: a RETRY or CANCEL event on
  ``video.events``; the view asks the machine first (409 with its reason),
  then waits briefly for the new job (202 if it has not applied yet).
- an archived job (models/archive.py) answers ``GET`` with its marker
  (``"archived": true``) and a retry or cancel with 409 and why.
- ``GET /video-files/{name}``: a rendered MP4 or thumbnail from the output
  folder (the default public base URL points here); any other name is 404.

An ``Idempotency-Key`` header makes a repeated request the same: the video id
(or the retry/cancel event id) is derived from it, and the machine keeps the
first.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import orjson
from faust.web import Request, Response, View
from pydantic import ValidationError

from agents.video import VideoProcessor
from connectors.render.settings import RenderSettings
from connectors.render.storage import CONTENT_TYPES, Storage
from models.archive import archived_detail
from models.ids import name_uuid
from models.video import CancelRequested, RetryRequested, VideoRequest, check_control, job_view
from streams.app import Engine
from streams.codecs import encode

JSON = "application/json"
WAIT_S = 5.0
MAX_BODY = 1024 * 1024
MAX_BATCH = 100
_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_NS = uuid.UUID("8f6a1e0c-4b7d-4c2e-9d35-6e1f0a2b7c94")
#: Fields the engine sets, never the client.
_ENGINE_FIELDS = ("video_id", "requested_at", "source")


def _json(view: View, body: Any, status: int = 200) -> Response:
    return view.bytes(orjson.dumps(body), content_type=JSON, status=status)


def _error(view: View, status: int, reason: str, **extra: Any) -> Response:
    return _json(view, {"error": reason, **extra}, status=status)


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(body)'}: {err['msg']}" for err in exc.errors()[:10]
    )


async def _body(request: Request) -> tuple[Any, str | None]:
    if (request.content_length or 0) > MAX_BODY:
        return None, f"body larger than {MAX_BODY} bytes"
    raw = await request.read() if request.can_read_body else b""
    if len(raw) > MAX_BODY:
        return None, f"body larger than {MAX_BODY} bytes"
    try:
        return orjson.loads(raw), None
    except orjson.JSONDecodeError:
        return None, "body must be a JSON object"


def _idempotency_key(request: Request) -> tuple[str | None, str | None]:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not _KEY.match(key):
        return None, "Idempotency-Key must be 1-100 of A-Z a-z 0-9 _ . : -"
    return key, None


def make_request(body: dict[str, Any], video_id: str, source: str) -> VideoRequest:
    fields = {k: v for k, v in body.items() if k not in _ENGINE_FIELDS}
    return VideoRequest.model_validate(
        {**fields, "video_id": video_id, "source": source, "requested_at": datetime.now(timezone.utc)}
    )


def register(engine: Engine, processor: VideoProcessor, render_settings: RenderSettings | None = None) -> None:
    app = engine.app
    jobs = engine.tables.video_jobs
    render_settings = render_settings or RenderSettings.load()
    storage = Storage(render_settings.render_output_dir, render_settings.public_base(engine.settings.web_url))

    async def publish(requests: list[VideoRequest]) -> None:
        for r in requests:
            await engine.video_requests.send(key=r.video_id.encode(), value=encode(r))

    class Videos(View):
        async def post(self, request: Request) -> Response:
            key, problem = _idempotency_key(request)
            if problem:
                return _error(self, 400, problem)
            body, problem = await _body(request)
            if problem or not isinstance(body, dict):
                return _error(self, 400, problem or "body must be a JSON object")
            store = str(body.get("store_id") or "")
            video_id = name_uuid(_NS, f"{store}|{key}") if key else str(uuid.uuid4())
            try:
                video = make_request(body, video_id, "api")
            except ValidationError as exc:
                return _error(self, 400, _errors(exc))
            await publish([video])
            return _json(self, {"video_id": video_id, "status": "QUEUED", "status_url": f"/videos/{video_id}"}, 202)

    class VideoBatch(View):
        async def post(self, request: Request) -> Response:
            key, problem = _idempotency_key(request)
            if problem:
                return _error(self, 400, problem)
            body, problem = await _body(request)
            if problem or not isinstance(body, dict):
                return _error(self, 400, problem or "body must be a JSON object")
            products = body.get("products")
            defaults = body.get("defaults") or {}
            if not isinstance(products, list) or not products or not isinstance(defaults, dict):
                return _error(self, 400, "products must be a non-empty list (and defaults an object)")
            if len(products) > MAX_BATCH:
                return _error(self, 400, f"at most {MAX_BATCH} products in one batch, not {len(products)}")
            store = body.get("store_id")
            requests = []
            for i, product in enumerate(products):
                if not isinstance(product, dict) or not product.get("product_id"):
                    return _error(self, 400, f"products[{i}]: an object with a product_id is required")
                fields = {**defaults, **product, "store_id": store}
                video_id = (
                    name_uuid(_NS, f"{store}|{key}|{product['product_id']}") if key else str(uuid.uuid4())
                )
                try:
                    requests.append(make_request(fields, video_id, "batch"))
                except ValidationError as exc:
                    return _error(self, 400, f"products[{i}]: {_errors(exc)}")
            await publish(requests)
            videos = [{"product_id": r.product_id, "video_id": r.video_id, "status_url": f"/videos/{r.video_id}"}
                      for r in requests]
            return _json(self, {"videos": videos}, 202)

    class VideoDetail(View):
        @app.table_route(table=jobs, match_info="video_id")
        async def get(self, request: Request, video_id: str) -> Response:
            marker = processor.archived(video_id)
            if marker is not None:
                return _json(self, {"video_id": video_id, **marker})
            job = processor.load(video_id)
            if job is None:
                return _error(self, 404, f"video {video_id!r} is unknown")
            return _json(self, job_view(job))

    def action(make: Any, what: str) -> type[View]:
        class VideoAction(View):
            @app.table_route(table=jobs, match_info="video_id")
            async def post(self, request: Request, video_id: str) -> Response:
                key, problem = _idempotency_key(request)
                if problem:
                    return _error(self, 400, problem)
                event = make(
                    event_id=f"web:{what}:{video_id}:{key or uuid.uuid4().hex}",
                    video_id=video_id,
                    occurred_at=datetime.now(timezone.utc),
                )
                marker = processor.archived(video_id)
                if marker is not None:
                    return _error(self, 409, archived_detail("video", video_id, marker),
                                  video_status=marker["status"], archived=True)
                job = processor.load(video_id)
                if job is not None and event.event_id in job.control_seen:
                    return _json(self, job_view(job))
                refused = check_control(job, event)
                if refused is not None:
                    return _error(self, 404 if job is None else 409, refused,
                                  **({"video_status": job.status.value} if job else {}))
                await engine.video_events.send(key=video_id.encode(), value=encode(event))
                deadline = time.monotonic() + WAIT_S
                while time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                    current = processor.load(video_id)
                    if current is not None and event.event_id in current.control_seen:
                        return _json(self, job_view(current))
                return _json(self, {"accepted": True, "event_id": event.event_id}, status=202)

        VideoAction.__name__ = f"Video{what.title()}"
        return VideoAction

    class VideoFile(View):
        async def get(self, request: Request, name: str) -> Response:
            path = storage.path_of(name)
            if path is None or not path.is_file():
                return _error(self, 404, f"no video file {name[:100]!r}")
            data = await asyncio.to_thread(path.read_bytes)
            return self.bytes(data, content_type=CONTENT_TYPES[name.rpartition(".")[2]])

    app.page("/videos")(Videos)
    app.page("/videos/batch")(VideoBatch)
    app.page("/videos/{video_id}")(VideoDetail)
    app.page("/videos/{video_id}/retry")(action(lambda **kw: RetryRequested(**kw), "retry"))
    app.page("/videos/{video_id}/cancel")(action(lambda **kw: CancelRequested(**kw), "cancel"))
    app.page("/video-files/{name}")(VideoFile)
