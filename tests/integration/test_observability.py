"""Metrics, Prometheus, the dashboard and /health against real processes.

- Debian's Prometheus server scrapes a running worker, executor and notifier on
  loopback and answers for the engine's series; the rules of deploy/prometheus load;
- every metric a dashboard panel reads is exported by one of those processes;
- two workers: each reports the partitions it owns (lag, orders), together exactly once;
- /health: healthy with the database; degraded with an unreachable database;
  unhealthy (503) once the broker is gone.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from connectors.broker import EmbeddedBroker, free_port
from tests.harness import Worker, cli_publish, wait_for
from tests.promql import exposition_names, metric_names

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "ops-engine.json"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
#: Series Prometheus makes itself (not exported by the engine).
PROMETHEUS_OWN = {"up", "ALERTS", "ALERTS_FOR_STATE"}
STORE = "obs-store"


def snapshot(product: str, stock: int) -> dict[str, object]:
    return {
        "store_id": STORE,
        "product_id": product,
        "provider": "CJ_DROPSHIPPING",
        "source_id": f"CJ-{product}",
        "stock": stock,
        "cost_price": "4.00",
        "shipping_cost": "1.00",
        "currency": "USD",
        "captured_at": "2026-11-01T12:00:00Z",
        "title": f"Product {product}",
    }


def created_order(order: str, hours_ago: float) -> dict[str, Any]:
    when = (datetime.now(timezone.utc) - timedelta(hours=hours_ago)).isoformat()
    return {
        "type": "ORDER_CREATED", "event_id": f"{order}-created", "order_id": order, "store_id": STORE,
        "occurred_at": when, "order_number": "#7", "customer": {"name": "Ada", "email": "ada@example.com"},
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Springfield", "country_code": "US"},
        "items": [{"line_id": "l0", "product_id": "p0", "quantity": 1, "unit_price": "10.00",
                   "provider": "ALIEXPRESS", "source_id": "src-0"}],
        "subtotal": "10.00", "total": "10.00", "currency": "USD", "payment_status": "PENDING",
    }


def metrics_text(url: str) -> str:
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    return response.text


def samples(text: str, name: str) -> dict[str, float]:
    """label text -> value of each sample of ``name``."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            series, value = line.rsplit(" ", 1)
            found[series[len(name):]] = float(value)
    return found


@pytest.fixture
def engine_processes(spawn, pg_dsn: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A worker (with Faust's monitor), the executor and the notifier: name -> metrics URL."""
    worker = spawn("w1", OPS_FAUST_METRICS="true", OPS_GAUGE_INTERVAL="0.5")
    executor_port, notifier_port = free_port(), free_port()
    spawn("x1", command="executor", OPS_DATABASE_URL=pg_dsn, OPS_EXECUTOR_METRICS_PORT=str(executor_port))
    spawn(
        "n1", command="notifier", OPS_DATABASE_URL=pg_dsn, OPS_NOTIFIER_METRICS_PORT=str(notifier_port),
        OPS_SMTP_HOST="127.0.0.1", OPS_SMTP_PORT=str(free_port()),
    )
    worker.wait_ready()
    urls = {
        "worker": worker.url,
        "executor": f"http://127.0.0.1:{executor_port}",
        "notifier": f"http://127.0.0.1:{notifier_port}",
    }
    for name, url in urls.items():
        wait_for(lambda url=url: _answers(url), timeout=60, what=f"{name} /metrics")
    return urls


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/metrics", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Any]:
    """Start Debian's Prometheus on loopback with a config made by the test (``start(targets)``)."""
    binary = shutil.which("prometheus")
    assert binary, "the prometheus server is missing: `make install` installs Debian's prometheus package"
    procs: list[subprocess.Popen[bytes]] = []

    def start(jobs: dict[str, list[str]]) -> str:
        config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
        config["global"]["scrape_interval"] = "1s"
        config["global"]["evaluation_interval"] = "1s"
        config["rule_files"] = [str(RULES)]
        config["scrape_configs"] = [
            {"job_name": job, "static_configs": [{"targets": [t.split("//", 1)[1] for t in targets]}]}
            for job, targets in jobs.items()
        ]
        path = tmp_path / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        log = open(tmp_path / "prometheus.log", "ab")
        proc = subprocess.Popen(
            [binary, f"--config.file={path}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError((tmp_path / "prometheus.log").read_text()[-3000:])
            try:
                return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=60, what="prometheus ready")
        return url

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def query(url: str, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10)
    body = response.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_prometheus_scrapes_the_engine(broker, engine_processes, prometheus) -> None:  # type: ignore[no-untyped-def]
    url = prometheus({f"ops-engine-{name}": [target] for name, target in engine_processes.items()})
    assert cli_publish(broker, "supplier.snapshots", [snapshot(f"p{i}", i) for i in range(5)]).returncode == 0

    up = wait_for(
        lambda: len(r := query(url, 'up{job=~"ops-engine-.*"} == 1')) == 3 and r, timeout=60, what="three targets up"
    )
    assert {r["metric"]["job"] for r in up} == {"ops-engine-worker", "ops-engine-executor", "ops-engine-notifier"}
    # The five snapshots, counted by the worker and scraped.
    processed = wait_for(
        lambda: (r := query(url, "sum(ops_snapshots_processed_total)")) and float(r[0]["value"][1]) == 5 and r,
        timeout=60, what="5 snapshots in prometheus",
    )
    assert processed
    lag = wait_for(lambda: query(url, 'ops_consumer_lag{topic="supplier.snapshots"}'), timeout=30, what="lag series")
    assert {r["metric"]["partition"] for r in lag} == {str(p) for p in range(8)}
    names = set(httpx.get(f"{url}/api/v1/label/__name__/values", timeout=10).json()["data"])
    for expected in ("ops_table_entries", "ops_event_processing_seconds_bucket", "ops_orders",
                     "ops_stream_buffer_events", "faust_messages_received_total"):
        assert expected in names, expected
    rules = httpx.get(f"{url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {rule["name"]: rule["health"] for group in rules for rule in group["rules"]}
    in_file = yaml.safe_load(RULES.read_text())
    assert set(loaded) == {rule["alert"] for group in in_file["groups"] for rule in group["rules"]}
    wait_for(
        lambda: all(r["health"] == "ok" for g in httpx.get(f"{url}/api/v1/rules", timeout=10).json()["data"]["groups"]
                    for r in g["rules"]),
        timeout=30, what="every rule evaluated without error",
    )


def test_the_dashboard_reads_only_exported_metrics(engine_processes) -> None:  # type: ignore[no-untyped-def]
    exported = set(PROMETHEUS_OWN)
    for url in engine_processes.values():
        exported |= exposition_names(metrics_text(url))
    panels = json.loads(DASHBOARD.read_text())["panels"]
    read = {
        (panel["title"], name)
        for panel in panels
        for target in panel.get("targets", ())
        for name in metric_names(target["expr"])
    }
    assert len(read) >= 30
    missing = sorted(f"{title}: {name}" for title, name in read if name not in exported)
    assert not missing, f"panels read metrics no process exports: {missing}"


def test_two_workers_report_their_own_partitions(broker, spawn) -> None:  # type: ignore[no-untyped-def]
    env = {"OPS_GAUGE_INTERVAL": "0.5"}
    workers = [spawn("w1", **env), spawn("w2", **env)]
    for worker in workers:
        worker.wait_ready(timeout=60)
    wait_for(lambda: all((w.health() or {}).get("status") == "healthy" for w in workers), timeout=60, what="both healthy")
    assert cli_publish(broker, "orders.events", [created_order("obs-o1", hours_ago=2)]).returncode == 0

    def owned_lag() -> list[set[str]] | None:
        owned = []
        for worker in workers:
            series = samples(metrics_text(worker.url), "ops_consumer_lag")
            owned.append({labels for labels in series if 'topic="orders.events"' in labels})
        return owned if sum(len(o) for o in owned) == 8 else None

    w1, w2 = wait_for(owned_lag, timeout=30, what="8 orders.events partitions reported")
    assert w1 and w2 and not (w1 & w2), "a partition is reported by both workers"

    def listed() -> list[dict[str, Any]] | None:
        found = [o for w in workers for o in w.get("/orders", status="PENDING", min_age_s=3600).json()["orders"]]
        return found or None

    orders = wait_for(listed, timeout=30, what="the order listed by its owner")
    assert [o["order_id"] for o in orders] == ["obs-o1"]
    assert orders[0]["in_status_s"] >= 2 * 3600 - 60
    assert all(w.get("/orders", status="PENDING", min_age_s=3 * 3600).json()["count"] == 0 for w in workers)

    def lag_of_orders_events() -> float:
        return sum(
            value
            for w in workers
            for labels, value in samples(metrics_text(w.url), "ops_consumer_lag").items()
            if 'topic="orders.events"' in labels
        )

    # The order's event was handled and committed: nothing left behind on any partition.
    wait_for(lambda: lag_of_orders_events() == 0, timeout=30, what="orders.events lag back to 0")
    assert workers[0].get("/orders", status="NOPE").status_code == 400

    def ages() -> list[float] | None:
        values = [samples(metrics_text(w.url), "ops_order_status_age_seconds").get('{status="PENDING"}', 0.0)
                  for w in workers]
        return values if max(values) > 0 else None

    values = wait_for(ages, timeout=30, what="the order's age in its owner's gauge")
    assert sorted(v > 0 for v in values) == [False, True], values  # one owner reports it, the other 0
    assert max(values) >= 2 * 3600 - 60


def test_health_reports_the_database_and_each_checks_latency(spawn, pg_dsn: str) -> None:  # type: ignore[no-untyped-def]
    worker = spawn("w1", OPS_DATABASE_URL=pg_dsn)
    worker.wait_ready()
    response = worker.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy" and body["ready"] is True
    assert set(body["components"]) == {"broker", "rebalance", "tables", "database", "consumer_lag", "queues"}
    for name, component in body["components"].items():
        assert component["status"] == "healthy", (name, component)
        assert component["latency_ms"] >= 0
    assert body["components"]["broker"]["data"]["brokers"] >= 1
    # Lag is reported for the partitions the consumer has fetched from (a high watermark known).
    lag = wait_for(
        lambda: (c := (worker.health() or {}).get("components", {}).get("consumer_lag")) and c["data"]["partitions"] > 0 and c,
        timeout=30, what="lag of the owned partitions in /health",
    )
    assert lag["status"] == "healthy" and lag["data"]["max"] <= lag["data"]["total"]
    assert set(body["components"]["queues"]["data"]["streams"]) == {"inventory", "orders", "webhooks", "videos"}


def test_health_degraded_without_the_database(spawn) -> None:  # type: ignore[no-untyped-def]
    nobody = f"postgresql://ops@127.0.0.1:{free_port()}/ops"  # a port nothing listens on
    worker = spawn("w1", OPS_DATABASE_URL=nobody, OPS_HEALTH_CHECK_TIMEOUT="1")
    worker.wait_ready()  # ready: joined, recovered, connected to the broker
    response = worker.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded" and body["ready"] is True
    database = body["components"]["database"]
    assert database["status"] == "degraded" and "does not answer" in database["detail"]
    assert body["components"]["broker"]["status"] == "healthy"


def test_health_unhealthy_when_the_broker_is_gone(broker: EmbeddedBroker, spawn) -> None:  # type: ignore[no-untyped-def]
    worker = spawn("w1", OPS_HEALTH_CHECK_TIMEOUT="1")
    worker.wait_ready()
    assert worker.get("/health").status_code == 200
    broker.stop()

    def unhealthy() -> httpx.Response | None:
        response = worker.get("/health")
        return response if response.status_code == 503 else None

    response = wait_for(unhealthy, timeout=60, what="503 from /health")
    body = response.json()
    assert body["status"] == "unhealthy" and body["ready"] is False
    assert body["components"]["broker"]["status"] == "unhealthy"
    assert body["components"]["broker"]["latency_ms"] >= 0
