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
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson
from aiokafka.errors import KafkaError
from faust.web import Request, Response, View

from agents.inventory import InventoryProcessor, alert_key
from connectors import metrics
from models.alerts import ACTION_STATUS, alert_cursor, alert_page, can_transition
from models.events import (
    Alert,
    AlertAction,
    AlertCommand,
    AlertStatus,
    AlertType,
    ProductStatus,
)
from models.product import decode_state, product_cursor, product_key, product_page, store_prefix
from streams import probes
from streams.app import Engine
from streams.codecs import encode
from streams.tables import entries

JSON = "application/json"
COMMAND_WAIT_S = 5.0


def _json(view: View, body: Any, status: int = 200) -> Response:
    return view.bytes(orjson.dumps(body), content_type=JSON, status=status)


def _error(view: View, status: int, reason: str, **extra: Any) -> Response:
    return _json(view, {"error": reason, **extra}, status=status)


#: Products or alerts a list answers at most, unless ``limit`` says fewer (at most MAX_PAGE).
DEFAULT_PAGE = 1000
MAX_PAGE = 10000


def _limit_param(request: Request) -> tuple[int, str | None]:
    value = request.query.get("limit")
    if value in (None, ""):
        return DEFAULT_PAGE, None
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        return 0, f"limit must be a whole number from 1 to {MAX_PAGE}, not {value!r}"
    return int(value), None


def _enum_param(request: Request, name: str, enum: Any) -> tuple[Any, str | None]:
    value = request.query.get(name)
    if value in (None, ""):
        return None, None
    try:
        return enum(value.upper()), None
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        return None, f"{name} must be one of {allowed}, not {value!r}"


#: The components that say whether a worker is ready (``ready`` in /health).
READINESS = ("broker", "rebalance", "tables")
#: A stream buffer this full (of its capacity) makes /health say degraded.
BUFFER_DEGRADED_FRACTION = 0.9

Check = Callable[[], Awaitable[tuple[str, str, dict[str, Any] | None]]]


async def health_report(engine: Engine) -> tuple[int, dict[str, Any]]:
    """healthy / degraded / unhealthy, with each component and its check time.

    - ``broker``: the consumer and producer services run, and the broker answers
      a metadata request (within ``OPS_HEALTH_CHECK_TIMEOUT``); else unhealthy;
    - ``rebalance``, ``tables``: degraded while the group rebalances or the
      tables recover;
    - ``database`` (only when ``OPS_DATABASE_URL`` is set): ``SELECT 1`` within
      the timeout; else degraded (the worker's streams go on without it; the
      executor and the notifier, which need it, wait);
    - ``consumer_lag``: degraded when an owned input partition lags by more
      than ``OPS_HEALTH_MAX_LAG`` messages;
    - ``queues``: degraded when an agent's stream buffer is 90 % full.
    """
    app = engine.app
    settings = engine.settings
    timeout = settings.health_check_timeout
    components: dict[str, dict[str, Any]] = {}

    async def check(name: str, fn: Check) -> None:
        started = time.perf_counter()
        data: dict[str, Any] | None = None
        try:
            status, detail, data = await fn()
        except Exception as exc:  # a failing check is a finding, not a crash
            status, detail = "unhealthy", f"{type(exc).__name__}: {exc}"
        components[name] = {
            "status": status,
            "detail": detail,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            **({"data": data} if data is not None else {}),
        }

    async def broker() -> tuple[str, str, dict[str, Any] | None]:
        consumer, producer = app.consumer, app.producer
        for service, label in ((consumer, "consumer"), (producer, "producer")):
            if service.crashed:
                return "unhealthy", f"{label} crashed: {service.crash_reason!r}", None
            if service.state != "running":
                return "unhealthy", f"{label} is {service.state}", None
        client = producer._ensure_producer().client  # type: ignore[attr-defined]
        try:
            cluster = await asyncio.wait_for(client.fetch_all_metadata(), timeout)
        except (asyncio.TimeoutError, KafkaError) as exc:
            return "unhealthy", f"the broker did not answer a metadata request: {type(exc).__name__}: {exc}", None
        brokers = len(cluster.brokers())
        return "healthy", f"consumer and producer running; {brokers} broker(s) answer", {"brokers": brokers}

    async def rebalance() -> tuple[str, str, dict[str, Any] | None]:
        if app.rebalancing:
            return "degraded", "rebalancing", None
        return "healthy", f"{len(app.assignor.assigned_actives())} active partitions", None

    async def tables() -> tuple[str, str, dict[str, Any] | None]:
        recovery = app.tables.recovery
        if app.in_recovery or not recovery.completed.is_set():
            return "degraded", "recovering tables from their changelogs", None
        return "healthy", "tables recovered", None

    async def database() -> tuple[str, str, dict[str, Any] | None]:
        assert settings.database_url is not None
        try:
            conn = await asyncpg.connect(settings.database_url, timeout=timeout)
            try:
                await asyncio.wait_for(conn.fetchval("SELECT 1"), timeout)
            finally:
                await conn.close(timeout=timeout)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            return "degraded", f"the database does not answer: {type(exc).__name__}: {exc}", None
        return "healthy", "SELECT 1 answered", None

    async def consumer_lag() -> tuple[str, str, dict[str, Any] | None]:
        lag = await probes.consumer_lag(app)
        total = sum(lag.values())
        worst = max(lag.items(), key=lambda item: item[1], default=None)
        data = {"total": total, "max": worst[1] if worst else 0, "partitions": len(lag)}
        if worst is not None and worst[1] > settings.health_max_lag:
            (topic, partition), value = worst
            return "degraded", f"{topic}[{partition}] lags by {value} messages (over {settings.health_max_lag})", data
        return "healthy", f"{total} message(s) behind over {len(lag)} owned input partition(s)", data

    async def queues() -> tuple[str, str, dict[str, Any] | None]:
        buffers = probes.stream_buffers(app)
        data: dict[str, Any] = {
            "streams": {b.agent: {"events": b.events, "capacity": b.capacity} for b in buffers},
            "outputs_pending": engine.outputs.pending,
        }
        full = [b for b in buffers if b.capacity and b.events >= BUFFER_DEGRADED_FRACTION * b.capacity]
        if full:
            names = ", ".join(f"{b.agent} {b.events}/{b.capacity}" for b in full)
            return "degraded", f"stream buffers nearly full: {names}", data
        waiting = sum(b.events for b in buffers)
        return "healthy", f"{waiting} event(s) buffered, {engine.outputs.pending} output(s) pending", data

    await check("broker", broker)
    await check("rebalance", rebalance)
    await check("tables", tables)
    if settings.database_url:
        await check("database", database)
    await check("consumer_lag", consumer_lag)
    await check("queues", queues)
    states = {c["status"] for c in components.values()}
    overall = "unhealthy" if "unhealthy" in states else "degraded" if "degraded" in states else "healthy"
    body = {
        "status": overall,
        # Ready to serve its partitions: joined, recovered, connected. Lag, full buffers or the
        # database make the worker degraded, not unready (a worker catching up is working).
        "ready": all(components[name]["status"] == "healthy" for name in READINESS),
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
            status, body = await health_report(engine)
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
            limit, problem = _limit_param(request)
            if problem:
                return _error(self, 400, problem)
            after = request.query.get("after") or None
            data = entries(products)
            # The store's keys from the processor's index, not a scan of every store's products.
            keys = processor.store_keys.of(store_id, data)
            if not keys and engine.tables.settings.data.get(store_id) is None:
                return _error(self, 404, f"store {store_id!r} is unknown (no product or settings seen)")
            page, more, total = product_page(keys, data, after, limit, status)
            items = [decode_state(raw).to_json_dict(key) for key, raw in page]
            body = {"store_id": store_id, "count": len(items), "total": total, "products": items,
                    "next": product_cursor(page[-1][0]) if more else None}
            return _json(self, body)

    class AlertList(View):
        @app.table_route(table=alerts_table, match_info="store_id")
        async def get(self, request: Request, store_id: str) -> Response:
            status, problem = _enum_param(request, "status", AlertStatus)
            if problem:
                return _error(self, 400, problem)
            kind, problem = _enum_param(request, "type", AlertType)
            if problem:
                return _error(self, 400, problem)
            limit, problem = _limit_param(request)
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
            page, more, total = alert_page(items, request.query.get("after") or None, limit)
            return _json(self, {"store_id": store_id, "count": len(page), "total": total, "alerts": page,
                                "next": alert_cursor(page[-1]) if more else None})

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
