"""HTTP views of orders, served by every worker.

``GET /orders?status=PROCESSING&min_age_s=86400`` lists the orders of the
partitions the worker that answers owns (oldest in their status first): ask
each worker (docs/runbook.md). ``GET /orders/{order_id}`` reads the ``orders`` table on the worker that owns
the order's partition (``app.table_route``: any worker answers). ``POST
/orders/{order_id}/retry`` and ``/cancel`` publish a RETRY or CANCEL_REQUESTED
event on ``orders.events``; the agent that owns the order applies it. The view
first asks the pure machine whether the order's current state accepts it, so
a request that would be refused is a 409 with the machine's reason, and then
waits briefly to return the new state (202 if it has not applied yet).

An ``Idempotency-Key`` header makes a repeated request the same event (the
machine drops a duplicate ``event_id``).

An archived order (models/archive.py) answers ``GET`` with its marker
(``"archived": true``) and a retry or cancel with 409 and why.
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

from agents.orders import OrderProcessor
from models.archive import archived_detail
from models.fulfillment import OrderState, OrderStatus, decide, next_deadline
from models.orders import CancelRequested, OrderEvent, Retry
from streams.app import Engine
from streams.codecs import encode

JSON = "application/json"
WAIT_S = 5.0
_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


def _json(view: View, body: Any, status: int = 200) -> Response:
    return view.bytes(orjson.dumps(body), content_type=JSON, status=status)


def _error(view: View, status: int, reason: str, **extra: Any) -> Response:
    return _json(view, {"error": reason, **extra}, status=status)


def order_view(state: OrderState, processor: OrderProcessor) -> dict[str, Any]:
    body = state.model_dump(mode="json", by_alias=True, exclude={"seen"})
    body["reason"] = state.reason
    body["parked"] = [{"event_id": e.event_id, "type": e.type.value} for e in state.parked]
    due = next_deadline(state, processor.config)
    body["next_deadline"] = due.isoformat() if due else None
    return body


def register(engine: Engine, processor: OrderProcessor) -> None:
    app = engine.app
    orders = engine.tables.orders

    class OrderDetail(View):
        @app.table_route(table=orders, match_info="order_id")
        async def get(self, request: Request, order_id: str) -> Response:
            marker = processor.archived(order_id)
            if marker is not None:
                return _json(self, {"order_id": order_id, **marker})
            state = processor.load(order_id)
            if state is None:
                return _error(self, 404, f"order {order_id!r} is unknown")
            return _json(self, order_view(state, processor))

    def action(make: Any, what: str) -> type[View]:
        class OrderAction(View):
            @app.table_route(table=orders, match_info="order_id")
            async def post(self, request: Request, order_id: str) -> Response:
                marker = processor.archived(order_id)
                if marker is not None:
                    return _error(self, 409, archived_detail("order", order_id, marker),
                                  order_status=marker["status"], archived=True)
                state = processor.load(order_id)
                if state is None or not state.created:
                    return _error(self, 404, f"order {order_id!r} is unknown")
                key = request.headers.get("Idempotency-Key") or uuid.uuid4().hex
                if not _KEY.match(key):
                    return _error(self, 400, "Idempotency-Key must be 1-100 of A-Z a-z 0-9 _ . : -")
                reason = ""
                raw = await request.read() if request.can_read_body else b""
                if raw.strip():
                    try:
                        body = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        return _error(self, 400, "body must be JSON (or empty)")
                    if isinstance(body, dict):
                        reason = str(body.get("reason") or "")[:2000]
                event: OrderEvent = make(
                    event_id=f"web:{what}:{order_id}:{key}",
                    order_id=order_id,
                    store_id=state.store_id,
                    occurred_at=datetime.now(timezone.utc),
                    reason=reason,
                )
                trial = decide(state, event, processor.config)
                if trial.duplicate:
                    return _json(self, order_view(state, processor))
                if trial.refused:
                    return _error(self, 409, trial.refused[0], order_status=state.status.value)
                await engine.order_events.send(key=order_id.encode(), value=encode(event))
                deadline = time.monotonic() + WAIT_S
                while time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                    current = processor.load(order_id)
                    if current is not None and event.event_id in current.seen:
                        return _json(self, order_view(current, processor))
                return _json(self, {"accepted": True, "event_id": event.event_id}, status=202)

        OrderAction.__name__ = f"Order{what.title()}"
        return OrderAction

    def retry(**kw: Any) -> Retry:
        kw.pop("reason", None)
        return Retry(requested_by="web", **kw)

    class OrderList(View):
        """The orders of the partitions this worker owns: ask each worker (no routing by id)."""

        async def get(self, request: Request) -> Response:
            status = request.query.get("status") or None
            if status is not None:
                status = status.upper()
                if status not in OrderStatus.__members__:
                    allowed = ", ".join(OrderStatus.__members__)
                    return _error(self, 400, f"status must be one of {allowed}, not {status!r}")
            try:
                min_age_s = float(request.query.get("min_age_s") or 0)
            except ValueError:
                return _error(self, 400, "min_age_s must be seconds")
            found = processor.owned_orders(status, min_age_s)
            limit = 1000
            return _json(
                self,
                {
                    "served_by": str(app.conf.canonical_url),
                    "partitions": sorted(processor.active_partitions()),
                    "count": len(found),
                    "orders": found[:limit],
                },
            )

    app.page("/orders")(OrderList)
    app.page("/orders/{order_id}")(OrderDetail)
    app.page("/orders/{order_id}/retry")(action(retry, "retry"))
    app.page("/orders/{order_id}/cancel")(action(lambda **kw: CancelRequested(**kw), "cancel"))
