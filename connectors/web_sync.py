"""Sync views, routed to the worker that owns the store (``app.table_route`` on ``sync-runs``).

- ``POST /stores/{store_id}/sync``: a MANUAL sync request; 202 with its
  ``request_id`` and ``run_id``; 409 while the store has a run RUNNING; 404 for
  a store the engine has never seen (no product, settings or run).
- ``GET /stores/{store_id}/sync``: the current (or last) run with its progress
  (``done``/``total``, ``percent``) and the runs before it, newest first.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import orjson
from faust.web import Request, Response, View

from agents.sync import load_runs
from models.product import store_prefix
from models.sync import RunStatus, SyncRequest, SyncRun, SyncTier, run_id_of
from streams import topics
from streams.app import Engine
from streams.codecs import encode

JSON = "application/json"


def _json(view: View, body: Any, status: int = 200) -> Response:
    return view.bytes(orjson.dumps(body), content_type=JSON, status=status)


def run_view(run: SyncRun) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(encode(run))
    body["percent"] = 100.0 if run.total == 0 else round(100.0 * run.done / run.total, 1)
    body["duration_s"] = run.duration_s
    body.pop("pages_done", None)
    return body


def register(engine: Engine) -> None:
    app = engine.app
    runs_table = engine.tables.sync_runs

    def known(store_id: str) -> bool:
        if runs_table.data.get(store_id) is not None or engine.tables.settings.data.get(store_id) is not None:
            return True
        prefix = store_prefix(store_id)
        return any(k.startswith(prefix) for k in list(engine.tables.products.data.keys()))

    class StoreSync(View):
        @app.table_route(table=runs_table, match_info="store_id")
        async def get(self, request: Request, store_id: str) -> Response:
            runs = load_runs(runs_table, store_id)
            if runs is None and not known(store_id):
                return _json(self, {"error": f"store {store_id!r} is unknown (no product, settings or run seen)"}, 404)
            current = None if runs is None or runs.current is None else run_view(runs.current)
            history = [] if runs is None else [run_view(r) for r in runs.history]
            return _json(self, {"store_id": store_id, "current": current, "runs": history})

        @app.table_route(table=runs_table, match_info="store_id")
        async def post(self, request: Request, store_id: str) -> Response:
            runs = load_runs(runs_table, store_id)
            if runs is None and not known(store_id):
                return _json(self, {"error": f"store {store_id!r} is unknown (no product, settings or run seen)"}, 404)
            now = datetime.now(timezone.utc)
            current = None if runs is None else runs.current
            if current is not None and current.status is RunStatus.RUNNING and now < current.deadline_at:
                return _json(
                    self,
                    {"error": "the store has a sync run RUNNING; one at a time", "run": run_view(current)},
                    409,
                )
            sync_request = SyncRequest(
                request_id=f"{store_id}:MANUAL:{uuid.uuid4()}", store_id=store_id, tier=SyncTier.MANUAL, requested_at=now
            )
            engine.outputs.add(topics.SYNC_REQUESTS, None, store_id.encode(), encode(sync_request))
            await engine.outputs.send(wait=True)
            return _json(
                self,
                {"accepted": True, "request_id": sync_request.request_id, "run_id": run_id_of(sync_request.request_id)},
                202,
            )

    app.page("/stores/{store_id}/sync")(StoreSync)
