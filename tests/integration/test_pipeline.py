"""The inventory & price pipeline end to end: CLI publish -> worker -> topics and web views."""

from __future__ import annotations

import asyncio

import httpx

from tests.harness import Worker, cli_publish, produce_raw, read_json, wait_for

STORE = "shop-1"


def snap(product: str, stock: int, cost: str, at: str, **extra: object) -> dict[str, object]:
    return {
        "store_id": STORE,
        "product_id": product,
        "provider": "CJ_DROPSHIPPING",
        "source_id": f"CJ-{product}",
        "stock": stock,
        "cost_price": cost,
        "shipping_cost": "2.00",
        "currency": "USD",
        "captured_at": at,
        "title": f"Product {product}",
        **extra,
    }


def alerts_of(worker: Worker, **params: str) -> list[dict[str, object]]:
    response = worker.get(f"/stores/{STORE}/alerts", **params)
    assert response.status_code == 200, response.text
    return list(response.json()["alerts"])


def test_worker_ready_within_10_seconds(spawn) -> None:  # type: ignore[no-untyped-def]
    worker = spawn()
    assert worker.wait_ready(timeout=10.0) < 10.0
    health = worker.health()
    assert health is not None and health["status"] == "healthy"
    assert set(health["components"]) == {"broker", "rebalance", "tables", "consumer_lag", "queues"}


def test_pipeline_end_to_end(broker, spawn) -> None:  # type: ignore[no-untyped-def]
    worker = spawn()
    worker.wait_ready()

    settings = {
        "store_id": STORE,
        "pricing": {"strategy": "PERCENT_MARKUP", "markup_percent": "50", "ending": ".99"},
        "low_stock_threshold": 5,
        "price_alert_threshold_pct": "10",
        "updated_at": "2026-11-01T00:00:00Z",
    }
    done = cli_publish(broker, "store.settings", [settings])
    assert done.returncode == 0, done.stderr.decode()

    # A page (one store's baseline), then single snapshots changing it.
    page = [
        snap("p1", 20, "10.00", "2026-11-01T10:00:00Z"),
        snap("p2", 3, "4.00", "2026-11-01T10:00:00Z"),
        snap("p3", 50, "30.00", "2026-11-01T10:00:00Z"),
    ]
    assert cli_publish(broker, "supplier.snapshots", [page]).returncode == 0
    updates = [
        snap("p1", 0, "10.00", "2026-11-01T11:00:00Z"),  # stock out
        snap("p2", 3, "4.00", "2026-11-01T09:00:00Z"),  # stale: ignored
        snap("p3", 4, "36.00", "2026-11-01T11:00:00Z"),  # low stock + price +20 %
        snap("p1", 0, "10.00", "2026-11-01T11:30:00Z"),  # same condition: no second alert
    ]
    assert cli_publish(broker, "supplier.snapshots", updates).returncode == 0

    def p1_out() -> bool:
        r = worker.get(f"/stores/{STORE}/products/p1")
        return r.status_code == 200 and r.json()["status"] == "OUT_OF_STOCK"

    wait_for(p1_out, what="p1 out of stock")
    wait_for(lambda: len(alerts_of(worker)) >= 3, what="three alerts")

    p3 = worker.get(f"/stores/{STORE}/products/p3").json()
    # (36 + 2) * 1.5 = 57.00 -> ending .99 -> 57.99
    assert p3["selling_price"] == "57.99"
    assert p3["stock"] == 4 and p3["status"] == "ACTIVE"

    out = worker.get(f"/stores/{STORE}/products", status="OUT_OF_STOCK").json()
    assert [p["product_id"] for p in out["products"]] == ["p1"]
    every = worker.get(f"/stores/{STORE}/products").json()
    assert every["count"] == 3 and every["next"] is None
    # Pages: limit and the cursor the previous page names.
    first = worker.get(f"/stores/{STORE}/products", limit=2).json()
    assert [p["product_id"] for p in first["products"]] == ["p1", "p2"] and first["next"] == "p2|"
    assert first["count"] == 2 and first["total"] == 3
    rest = worker.get(f"/stores/{STORE}/products", limit=2, after=first["next"]).json()
    assert [p["product_id"] for p in rest["products"]] == ["p3"] and rest["next"] is None

    alerts = alerts_of(worker)
    kinds = sorted(a["type"] for a in alerts)
    assert kinds == ["PRICE_INCREASE", "STOCK_LOW", "STOCK_OUT"]
    price = next(a for a in alerts if a["type"] == "PRICE_INCREASE")
    assert price["metadata"]["previous_cost"] == "30.00"
    assert price["metadata"]["new_cost"] == "36.00"
    assert price["metadata"]["change_percent"] == "20.00"
    assert price["severity"] == "MEDIUM"
    assert alerts_of(worker, type="STOCK_OUT")[0]["severity"] == "HIGH"
    paged, after = [], None
    while True:
        body = worker.get(f"/stores/{STORE}/alerts", limit=1, **({"after": after} if after else {})).json()
        paged += body["alerts"]
        after = body["next"]
        if after is None:
            break
    assert paged == alerts  # newest first, each once

    # Restock resolves the stock-out and announces the restore.
    assert cli_publish(broker, "supplier.snapshots", [snap("p1", 12, "10.00", "2026-11-01T12:00:00Z")]).returncode == 0
    wait_for(lambda: alerts_of(worker, type="STOCK_RESTORED"), what="restored alert")
    assert alerts_of(worker, type="STOCK_OUT")[0]["status"] == "RESOLVED"
    assert alerts_of(worker, status="ACTIVE", type="STOCK_OUT") == []

    # Acknowledge and dismiss through the web views.
    low = alerts_of(worker, type="STOCK_LOW")[0]
    ack = worker.post(f"/stores/{STORE}/alerts/{low['alert_id']}/acknowledge")
    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "ACKNOWLEDGED"
    dismiss = worker.post(f"/stores/{STORE}/alerts/{price['alert_id']}/dismiss")
    assert dismiss.status_code == 200 and dismiss.json()["status"] == "DISMISSED"
    again = worker.post(f"/stores/{STORE}/alerts/{price['alert_id']}/acknowledge")
    assert again.status_code == 409 and "DISMISSED" in again.json()["error"]

    # 404s with a reason, 400 for a bad filter.
    missing = worker.get(f"/stores/{STORE}/products/nope")
    assert missing.status_code == 404 and "not tracked" in missing.json()["error"]
    assert worker.get("/stores/no-such-store/products").status_code == 404
    assert worker.post(f"/stores/{STORE}/alerts/nope/acknowledge").status_code == 404
    bad = worker.get(f"/stores/{STORE}/products", status="SOLD")
    assert bad.status_code == 400 and "status must be one of" in bad.json()["error"]
    for limit in ("0", "ten", "10001"):
        bad = worker.get(f"/stores/{STORE}/alerts", limit=limit)
        assert bad.status_code == 400 and "limit must be" in bad.json()["error"]
    assert worker.get(f"/stores/{STORE}/products", limit="-1").status_code == 400

    # The topics carry the same story.
    changes = read_json(broker, "inventory.changes")
    reasons = sorted((c["product_id"], c["reason"]) for c in changes)
    assert ("p1", "NEW") in reasons and ("p3", "SNAPSHOT") in reasons
    assert not any(c["product_id"] == "p2" and c["reason"] == "SNAPSHOT" for c in changes)  # stale one
    p3_change = next(c for c in changes if c["product_id"] == "p3" and c["reason"] == "SNAPSHOT")
    assert set(p3_change["changed"]) >= {"STOCK", "COST", "SELLING_PRICE"}
    assert p3_change["before"]["cost_price"] == "30.00" and p3_change["after"]["cost_price"] == "36.00"
    records = read_json(broker, "alerts")
    opened = [a for a in records if a["status"] == "ACTIVE"]
    assert len([a for a in opened if a["type"] == "STOCK_OUT"]) == 1  # not re-alerted at 11:30

    # A settings change reprices every tracked product at once.
    cheaper = {**settings, "pricing": {"strategy": "FIXED_MARKUP", "fixed_markup": "5", "ending": "none"},
               "updated_at": "2026-11-02T00:00:00Z"}
    assert cli_publish(broker, "store.settings", [cheaper]).returncode == 0
    wait_for(lambda: worker.get(f"/stores/{STORE}/products/p3").json()["selling_price"] == "43.00",
             what="p3 repriced to 36 + 2 + 5")
    # The table is written at once; its outputs leave in record batches within
    # about 0.1 s (streams/outputs.py), so the topic may trail the view briefly.
    def settings_changes() -> list[str]:
        records = read_json(broker, "inventory.changes")
        return sorted(c["product_id"] for c in records if c["reason"] == "SETTINGS_CHANGED")

    wait_for(lambda: len(settings_changes()) >= 3, what="three SETTINGS_CHANGED records")
    assert settings_changes() == ["p1", "p2", "p3"]

    metrics = worker.get("/metrics").text
    for name in (
        "ops_snapshots_processed_total",
        "ops_inventory_changes_total",
        "ops_alerts_emitted_total",
        "ops_alerts_active",
        "ops_snapshot_lag_seconds_bucket",
        "ops_deadletters_total",
    ):
        assert name in metrics
    assert 'ops_snapshots_processed_total{result="STALE"} 1.0' in metrics


def test_bad_input_goes_to_deadletter_and_the_worker_goes_on(broker, spawn) -> None:  # type: ignore[no-untyped-def]
    worker = spawn()
    worker.wait_ready()
    good = snap("ok", 5, "1.00", "2026-11-01T10:00:00Z")
    import orjson

    bad = [
        (b"shop-1", b"{not json"),
        (b"shop-1", orjson.dumps({**good, "stock": -1})),
        (b"shop-1", orjson.dumps({**good, "currency": "XYZ"})),
        (b"shop-1", orjson.dumps({**good, "cost_price": 1.5})),
        (b"other-shop", orjson.dumps(good)),
        (b"shop-1", orjson.dumps([good | {"product_id": "in-page"}, {**good, "stock": "many"}])),
        (b"shop-1", orjson.dumps(good)),
    ]
    asyncio.run(produce_raw(broker, "supplier.snapshots", bad))
    wait_for(lambda: worker.get(f"/stores/{STORE}/products/ok").status_code == 200, what="the good snapshot")
    assert worker.get(f"/stores/{STORE}/products/in-page").status_code == 200  # the page's good item
    dead = wait_for(lambda: len(read_json(broker, "deadletter")) >= 6 and read_json(broker, "deadletter"),
                    what="six dead letters")
    by_reason = sorted(d["reason"] for d in dead)
    assert by_reason == [
        "INVALID_JSON",
        "KEY_MISMATCH",
        "SCHEMA_VIOLATION",
        "SCHEMA_VIOLATION",
        "SCHEMA_VIOLATION",
        "SCHEMA_VIOLATION",
    ]
    details = " ".join(d["detail"] for d in dead)
    assert "greater than or equal to 0" in details
    assert "unknown currency 'XYZ'" in details
    assert "not a float" in details
    page_item = next(d for d in dead if d["item_index"] is not None)
    assert page_item["item_index"] == 1
    import base64

    assert base64.b64decode(next(d for d in dead if d["reason"] == "INVALID_JSON")["value"]) == b"{not json"
    assert all(d["topic"] == "supplier.snapshots" and d["offset"] >= 0 for d in dead)
    assert worker.health()["status"] == "healthy"


def test_publish_refuses_invalid_lines(broker) -> None:  # type: ignore[no-untyped-def]
    done = cli_publish(broker, "supplier.snapshots", [snap("x", -3, "1.00", "2026-11-01T10:00:00Z")])
    assert done.returncode != 0
    assert b"line 1: stock: Input should be greater than or equal to 0" in done.stderr
    assert b"nothing published" in done.stderr
    wrong = cli_publish(broker, "inventory.changes", [{}])
    assert wrong.returncode != 0 and b"not published by producers" in wrong.stderr


def test_metrics_endpoint_is_prometheus_text(spawn) -> None:  # type: ignore[no-untyped-def]
    worker = spawn()
    worker.wait_ready()
    response = httpx.get(f"{worker.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE ops_snapshots_processed_total counter" in response.text


def test_demo_prints_alerts_as_they_arrive(broker, spawn) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    from tests.harness import ROOT

    worker = spawn()
    worker.wait_ready()
    done = subprocess.run(
        [sys.executable, "-m", "connectors.cli", "demo", "--changes", "30", "--interval", "0.02", "--seed", "3"],
        env={**os.environ, "OPS_BROKER_URL": broker.url, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    assert "published as one page" in out
    alerts = [line for line in out.splitlines() if line.strip().startswith("ALERT")]
    assert alerts, out
    assert any("STOCK_OUT" in line or "PRICE_" in line or "STOCK_LOW" in line for line in alerts)
