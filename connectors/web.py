"""HTTP views served by every worker's Faust web server.

Reads come straight from the tables. A store's entries live on its partition,
so every per-store view is routed by ``store_id`` to the worker that owns it
(``app.table_route``): with several workers, any worker answers for any store.
Writes (acknowledge, dismiss) are commands on ``inventory.commands``, applied
by the agent that owns the store; the view waits briefly for the outcome.

Unknown things are 404 with a JSON reason; bad parameters 400.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View

from agents.inventory import InventoryProcessor, alert_key
from connectors import metrics
from models.alerts import ACTION_STATUS, can_transition
from models.events import (
    Alert,
    AlertAction,
    AlertCommand,
    AlertStatus,
    AlertType,
    ProductStatus,
)
from models.product import decode_state, product_key, store_prefix
from streams.app import Engine
from streams.codecs import encode

JSON = "application/json"
COMMAND_WAIT_S = 5.0


def _json(view: View, body: Any, status: int = 200) -> Response:
    return view.bytes(orjson.dumps(body), content_type=JSON, status=status)


def _error(view: View, status: int, reason: str, **extra: Any) -> Response:
    return _json(view, {"error": reason, **extra}, status=status)


def _enum_param(request: Request, name: str, enum: Any) -> tuple[Any, str | None]:
    value = request.query.get(name)
    if value in (None, ""):
        return None, None
    try:
        return enum(value.upper()), None
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        return None, f"{name} must be one of {allowed}, not {value!r}"


def health_report(app: faust.App) -> tuple[int, dict[str, Any]]:
    """healthy / degraded / unhealthy, with each component and its check time."""
    components: dict[str, dict[str, Any]] = {}

    def check(name: str, fn: Any) -> None:
        started = time.perf_counter()
        try:
            status, detail = fn()
        except Exception as exc:  # a failing check is a finding, not a crash
            status, detail = "unhealthy", f"{type(exc).__name__}: {exc}"
        components[name] = {
            "status": status,
            "detail": detail,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        }

    def broker() -> tuple[str, str]:
        consumer, producer = app.consumer, app.producer
        for service, label in ((consumer, "consumer"), (producer, "producer")):
            if service.crashed:
                return "unhealthy", f"{label} crashed: {service.crash_reason!r}"
            if service.state != "running":
                return "unhealthy", f"{label} is {service.state}"
        return "healthy", "consumer and producer running"

    def rebalance() -> tuple[str, str]:
        if app.rebalancing:
            return "degraded", "rebalancing"
        return "healthy", f"{len(app.assignor.assigned_actives())} active partitions"

    def tables() -> tuple[str, str]:
        recovery = app.tables.recovery
        if app.in_recovery or not recovery.completed.is_set():
            return "degraded", "recovering tables from their changelogs"
        return "healthy", "tables recovered"

    check("broker", broker)
    check("rebalance", rebalance)
    check("tables", tables)
    states = {c["status"] for c in components.values()}
    overall = "unhealthy" if "unhealthy" in states else "degraded" if "degraded" in states else "healthy"
    body = {
        "status": overall,
        "ready": overall == "healthy",
        "worker": app.conf.canonical_url.human_repr() if app.conf.canonical_url else None,
        "components": components,
    }
    return (503 if overall == "unhealthy" else 200), body


def register(engine: Engine, processor: InventoryProcessor) -> None:
    app = engine.app
    products = engine.tables.products
    alerts_table = engine.tables.alerts

    class Health(View):
        async def get(self, request: Request) -> Response:
            status, body = health_report(app)
            return _json(self, body, status=status)

    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(metrics.exposition(), content_type="text/plain; version=0.0.4")

    class ProductDetail(View):
        @app.table_route(table=products, match_info="store_id")
        async def get(self, request: Request, store_id: str, product_id: str) -> Response:
            variant_id = request.query.get("variant_id") or None
            key = product_key(store_id, product_id, variant_id)
            raw = products.data.get(key)
            if raw is None:
                what = f"product {product_id!r}" + (f" variant {variant_id!r}" if variant_id else "")
                return _error(self, 404, f"{what} of store {store_id!r} is not tracked", served_by=str(app.conf.canonical_url))
            return _json(self, decode_state(raw).to_json_dict(key))

    class ProductList(View):
        @app.table_route(table=products, match_info="store_id")
        async def get(self, request: Request, store_id: str) -> Response:
            status, problem = _enum_param(request, "status", ProductStatus)
            if problem:
                return _error(self, 400, problem)
            prefix = store_prefix(store_id)
            items = []
            seen_any = False
            for key, raw in list(products.data.items()):
                if not key.startswith(prefix):
                    continue
                seen_any = True
                state = decode_state(raw)
                if status is not None and state.status is not status:
                    continue
                items.append(state.to_json_dict(key))
            items.sort(key=lambda p: (p["product_id"], p["variant_id"] or ""))
            if not seen_any and engine.tables.settings.data.get(store_id) is None:
                return _error(self, 404, f"store {store_id!r} is unknown (no product or settings seen)")
            return _json(self, {"store_id": store_id, "count": len(items), "products": items})

    class AlertList(View):
        @app.table_route(table=alerts_table, match_info="store_id")
        async def get(self, request: Request, store_id: str) -> Response:
            status, problem = _enum_param(request, "status", AlertStatus)
            if problem:
                return _error(self, 400, problem)
            kind, problem = _enum_param(request, "type", AlertType)
            if problem:
                return _error(self, 400, problem)
            prefix = store_prefix(store_id)
            items = []
            for key, raw in list(alerts_table.data.items()):
                if not key.startswith(prefix):
                    continue
                alert = orjson.loads(raw)
                if status is not None and alert["status"] != status.value:
                    continue
                if kind is not None and alert["type"] != kind.value:
                    continue
                items.append(alert)
            items.sort(key=lambda a: (a["created_at"], a["alert_id"]), reverse=True)
            return _json(self, {"store_id": store_id, "count": len(items), "alerts": items})

    def alert_action(action: AlertAction) -> type[View]:
        target = ACTION_STATUS[action]

        class AlertActionView(View):
            @app.table_route(table=alerts_table, match_info="store_id")
            async def post(self, request: Request, store_id: str, alert_id: str) -> Response:
                key = alert_key(store_id, alert_id)
                raw = alerts_table.data.get(key)
                if raw is None:
                    return _error(self, 404, f"alert {alert_id!r} of store {store_id!r} is unknown")
                alert = Alert.model_validate_json(raw)
                if alert.status is target:
                    return _json(self, orjson.loads(raw))
                if not can_transition(alert.status, target):
                    return _error(
                        self,
                        409,
                        f"alert is {alert.status.value}; it cannot become {target.value}",
                        alert=orjson.loads(raw),
                    )
                command = AlertCommand(
                    command_id=f"{alert_id}:{action.value}",
                    store_id=store_id,
                    alert_id=alert_id,
                    action=action,
                )
                await engine.commands.send(key=store_id.encode(), value=encode(command))
                deadline = time.monotonic() + COMMAND_WAIT_S
                while time.monotonic() < deadline:
                    current = alerts_table.data.get(key)
                    if current is not None and orjson.loads(current)["status"] == target.value:
                        return _json(self, orjson.loads(current))
                    await asyncio.sleep(0.05)
                return _json(self, {"accepted": True, "command_id": command.command_id}, status=202)

        AlertActionView.__name__ = f"Alert{action.value.title()}"
        return AlertActionView

    app.page("/health")(Health)
    app.page("/metrics")(Metrics)
    app.page("/stores/{store_id}/products")(ProductList)
    app.page("/stores/{store_id}/products/{product_id}")(ProductDetail)
    app.page("/stores/{store_id}/alerts")(AlertList)
    app.page("/stores/{store_id}/alerts/{alert_id}/acknowledge")(alert_action(AlertAction.ACKNOWLEDGE))
    app.page("/stores/{store_id}/alerts/{alert_id}/dismiss")(alert_action(AlertAction.DISMISS))
