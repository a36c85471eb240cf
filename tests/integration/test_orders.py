"""The orders agent on a real worker: events in, table state, commands and notifications out."""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from tests.harness import Worker, cli_publish, produce_raw, read_json, wait_for

STORE = "shop-1"
# Event times near now: the machine's deadlines run from them.
T0 = datetime.now(timezone.utc)


def at(second: int) -> str:
    return (T0 + timedelta(seconds=second)).isoformat()


def ev(kind: str, event_id: str, order: str, second: int, **body: Any) -> dict[str, Any]:
    return {"type": kind, "event_id": event_id, "order_id": order, "store_id": STORE,
            "occurred_at": at(second), **body}


def created(order: str, providers: tuple[str, ...] = ("ALIEXPRESS", "CJ_DROPSHIPPING"), paid: bool = False) -> dict[str, Any]:
    items = [
        {"line_id": f"l{i}", "product_id": f"p{i}", "quantity": 2, "unit_price": "10.00", "provider": p,
         "source_id": f"src-{i}"}
        for i, p in enumerate(providers)
    ]
    return ev(
        "ORDER_CREATED", f"{order}-created", order, 0, order_number="#1001",
        customer={"name": "Ada", "email": "ada@example.com"},
        shipping_address={"name": "Ada", "line1": "1 Main St", "city": "Springfield", "country_code": "US"},
        items=items, subtotal="40.00", total="40.00", currency="USD",
        payment_status="PAID" if paid else "PENDING",
    )


def order(worker: Worker, order_id: str) -> dict[str, Any] | None:
    response = worker.get(f"/orders/{order_id}")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return dict(response.json())


def status_is(worker: Worker, order_id: str, status: str) -> Any:
    return wait_for(
        lambda: (o := order(worker, order_id)) is not None and o["status"] == status and o,
        timeout=30, what=f"{order_id} {status}",
    )


def test_order_flows_through_the_machine(broker, spawn) -> None:  # type: ignore[no-untyped-def]
    worker = spawn()
    worker.wait_ready()
    # The payment first: it waits for its order.
    done = cli_publish(broker, "orders.events", [ev("PAYMENT_CONFIRMED", "o1-paid", "o1", 1), created("o1")])
    assert done.returncode == 0, done.stderr.decode()
    state = status_is(worker, "o1", "PROCESSING")
    assert [g["status"] for g in state["groups"]] == ["PLACING", "PLACING"]

    commands = wait_for(lambda: len(c := read_json(broker, "orders.commands")) >= 2 and c, what="commands")
    assert sorted(c["group_id"] for c in commands) == ["ALIEXPRESS", "CJ_DROPSHIPPING"]
    assert {c["idempotency_key"] for c in commands} == {g["idempotency_key"] for g in state["groups"]}

    cli_publish(broker, "orders.events", [
        ev("SUPPLIER_ORDER_PLACED", "o1-placed-a", "o1", 2, group_id="ALIEXPRESS", supplier_order_id="AE-1"),
        ev("SUPPLIER_ORDER_PLACED", "o1-placed-c", "o1", 3, group_id="CJ_DROPSHIPPING", supplier_order_id="CJ-1"),
        ev("TRACKING_RECEIVED", "o1-track-a", "o1", 4, group_id="ALIEXPRESS", tracking_number="LP00123456789012CN"),
    ])
    state = status_is(worker, "o1", "PARTIALLY_SHIPPED")
    assert state["groups"][0]["tracking"]["carrier"] == "Cainiao"
    notes = wait_for(lambda: read_json(broker, "notifications"), what="notification")
    assert [n["kind"] for n in notes] == ["CUSTOMER_PARTIALLY_SHIPPED"]
    assert notes[0]["recipient"] == "ada@example.com"
    shows = read_json(broker, "storefront.commands")
    assert [(s["group_id"], s["tracking_number"]) for s in shows] == [("ALIEXPRESS", "LP00123456789012CN")]

    # Cancel after a shipment: refused by the view with the machine's reason.
    refused = worker.post("/orders/o1/cancel")
    assert refused.status_code == 409 and "after shipment" in refused.json()["error"]
    # Retry of an order that needs none: refused too.
    assert worker.post("/orders/o1/retry").status_code == 409
    assert worker.get("/orders/nope").status_code == 404
    history = [h["event"] for h in state["history"]]
    assert history[:2] == ["ORDER_CREATED", "PAYMENT_CONFIRMED"]


def test_bad_and_refused_events_go_to_deadletter(broker, spawn) -> None:  # type: ignore[no-untyped-def]
    worker = spawn()
    worker.wait_ready()
    good = created("o2", providers=("SPOCKET",), paid=True)
    records = [
        (b"o2", orjson.dumps(good)),
        (b"o2", b"{not json"),
        (b"o2", orjson.dumps({**ev("PAYMENT_CONFIRMED", "x", "o2", 1), "type": "NOPE"})),
        (b"other", orjson.dumps(ev("RETRY", "o2-retry-key", "o2", 2))),  # key is not the order id
        (b"o2", orjson.dumps(ev("PAYMENT_CONFIRMED", "o2-paid-again", "o2", 3))),  # already paid
        (b"o2", orjson.dumps(good)),  # duplicate: nothing at all
    ]
    asyncio.run(produce_raw(broker, "orders.events", records))
    dead = wait_for(lambda: len(d := read_json(broker, "deadletter")) >= 4 and d, what="dead letters")
    assert sorted(d["reason"] for d in dead) == ["INVALID_IN_STATE", "INVALID_JSON", "KEY_MISMATCH", "SCHEMA_VIOLATION"]
    state = status_is(worker, "o2", "PROCESSING")
    refused = [h for h in state["history"] if (h["note"] or "").startswith("refused")]
    assert [h["event_id"] for h in refused] == ["o2-paid-again"]
    assert len(read_json(broker, "orders.commands")) == 1


def test_retryable_failure_is_retried_by_the_deadline_scanner(broker, spawn) -> None:  # type: ignore[no-untyped-def]
    worker = spawn(OPS_ORDER_RETRY_BACKOFF="0.5,0.5", OPS_ORDER_SCAN_INTERVAL="0.2", OPS_ORDER_OUTCOME_TIMEOUT="1")
    worker.wait_ready()
    cli_publish(broker, "orders.events", [created("o3", providers=("ALIEXPRESS",), paid=True)])
    status_is(worker, "o3", "PROCESSING")
    # No outcome comes back: the command is re-issued with the same key after 1 s.
    commands = wait_for(lambda: len(c := read_json(broker, "orders.commands")) >= 2 and c, what="re-issue")
    assert len({c["idempotency_key"] for c in commands}) == 1 and commands[0]["attempt"] == commands[1]["attempt"] == 1
    fail = lambda n: ev("SUPPLIER_ORDER_FAILED", f"o3-f{n}", "o3", 10 + n, group_id="ALIEXPRESS",  # noqa: E731
                        error="HTTP 503", retryable=True, attempt=n)
    for attempt in (1, 2, 3):
        cli_publish(broker, "orders.events", [fail(attempt)])
        if attempt < 3:
            wait_for(lambda: any(c["attempt"] == attempt + 1 for c in read_json(broker, "orders.commands")),
                     what=f"attempt {attempt + 1}")
    state = status_is(worker, "o3", "INTERVENTION_REQUIRED")
    assert "3 attempts failed" in state["reason"]
    alerts = wait_for(lambda: [a for a in read_json(broker, "alerts") if a["type"] == "ORDER_ISSUE"], what="alert")
    assert alerts[0]["metadata"]["order_id"] == "o3"
    # The store's alert view shows it too (kept on the store's partition), and it can be acknowledged.
    listed = wait_for(lambda: worker.get(f"/stores/{STORE}/alerts", type="ORDER_ISSUE").json()["alerts"],
                      what="alert in the store's view")
    assert [a["alert_id"] for a in listed] == [alerts[0]["alert_id"]]
    acked = worker.post(f"/stores/{STORE}/alerts/{alerts[0]['alert_id']}/acknowledge")
    assert acked.status_code in (200, 202) and acked.json().get("status", "ACKNOWLEDGED") == "ACKNOWLEDGED"
    assert any(n["kind"] == "ADMIN_INTERVENTION" for n in read_json(broker, "notifications"))
    # A person fixed it: RETRY from the web view re-issues the command.
    retried = worker.post("/orders/o3/retry")
    assert retried.status_code in (200, 202), retried.text
    wait_for(lambda: any(c["attempt"] == 4 for c in read_json(broker, "orders.commands")), what="attempt 4")
    assert status_is(worker, "o3", "PROCESSING")["groups"][0]["retries"] == 0


def test_shuffled_duplicated_events_reach_the_clean_state(broker, spawn) -> None:  # type: ignore[no-untyped-def]
    """Each event delivered 1-3 times, all shuffled, on the real broker: the same
    final state as the clean sequence folded through the pure machine."""
    import random

    from models.fulfillment import decide
    from models.orders import ORDER_EVENT

    worker = spawn()
    worker.wait_ready()
    rng = random.Random(11)
    clean: dict[str, list[dict[str, Any]]] = {}
    for n in range(40):
        oid = f"sh-{n}"
        providers = ("ALIEXPRESS", "CJ_DROPSHIPPING", "SPOCKET")[: 1 + n % 3]
        story = [created(oid, providers), ev("PAYMENT_CONFIRMED", f"{oid}-paid", oid, 1)]
        for i, p in enumerate(providers):
            story.append(ev("SUPPLIER_ORDER_PLACED", f"{oid}-placed-{p}", oid, 2 + i, group_id=p,
                            supplier_order_id=f"{p}-{n}"))
        for i, p in enumerate(providers[: 1 + n % 2]):
            story.append(ev("TRACKING_RECEIVED", f"{oid}-track-{p}", oid, 10 + i, group_id=p,
                            tracking_number=f"LP{n:06d}{i:08d}CN"))
        if n % 4 == 0:
            story.append(ev("DELIVERED", f"{oid}-delivered", oid, 20))
        clean[oid] = story
    delivered = [e for story in clean.values() for e in story for _ in range(rng.randint(1, 3))]
    rng.shuffle(delivered)
    asyncio.run(produce_raw(broker, "orders.events", [(e["order_id"].encode(), orjson.dumps(e)) for e in delivered]))

    keys = ("status", "paid", "groups", "items", "order_number")
    for order_id, story in clean.items():
        state = None
        for e in story:
            state = decide(state, ORDER_EVENT.validate_python(e)).state
        assert state is not None
        want = state.model_dump(mode="json", by_alias=True)
        want_parked = sorted(p.event_id for p in state.parked)  # n % 4 == 0 with a group unshipped: DELIVERED waits

        def same(o: dict[str, Any] | None) -> bool:
            return (
                o is not None
                and {k: o[k] for k in keys} == {k: want[k] for k in keys}
                and sorted(p["event_id"] for p in o["parked"]) == want_parked
            )

        got = wait_for(
            lambda: same(order(worker, order_id)),
            timeout=30, what=f"{order_id} as the clean sequence",
        )
        assert got
        history = sorted(h["event_id"] for h in order_json(worker, order_id)["history"])
        assert history == sorted(e["event_id"] for e in story if e["event_id"] not in want_parked)


def order_json(worker: Worker, order_id: str) -> dict[str, Any]:
    found = order(worker, order_id)
    assert found is not None
    return found


def test_a_delivered_order_is_archived_and_stays_archived_after_a_restart(broker, spawn) -> None:  # type: ignore[no-untyped-def]
    env = {"OPS_ORDER_KEEP_DAYS": "0.00001", "OPS_ARCHIVE_INTERVAL_S": "1"}  # under a second
    worker = spawn("w1", **env)
    worker.wait_ready()
    cli_publish(broker, "orders.events", [
        created("o9", providers=("SPOCKET",), paid=True),
        ev("SUPPLIER_ORDER_PLACED", "o9-placed", "o9", 2, group_id="SPOCKET", supplier_order_id="SP-9"),
        ev("TRACKING_RECEIVED", "o9-track", "o9", 3, group_id="SPOCKET", tracking_number="LP00123456789012CN"),
        ev("DELIVERED", "o9-delivered", "o9", 4),
    ])
    marker = wait_for(lambda: (o := order(worker, "o9")) is not None and o.get("archived") and o,
                      timeout=60, what="o9 archived")
    assert marker["status"] == "DELIVERED" and marker["store_id"] == STORE and marker["order_number"] == "#1001"
    assert "state" not in marker and "items" not in marker
    listed = worker.get("/orders", status="DELIVERED").json()["orders"]
    assert [(o["order_id"], o.get("archived")) for o in listed] == [("o9", True)]
    refused = worker.post("/orders/o9/cancel")
    assert refused.status_code == 409 and "archived" in refused.json()["error"]
    assert "ops_archived_total{table=\"orders\"} 1.0" in worker.get("/metrics").text

    # A refund weeks later: to deadletter, the order stays archived (no fresh order).
    cli_publish(broker, "orders.events", [ev("REFUND_REQUESTED", "o9-refund", "o9", 50, reason="late")])
    dead = wait_for(lambda: [d for d in read_json(broker, "deadletter") if d["reason"] == "ARCHIVED"],
                    what="ARCHIVED dead letter")
    assert len(dead) == 1 and marker["archived_at"] in dead[0]["detail"]
    assert orjson.loads(base64.b64decode(dead[0]["value"]))["event_id"] == "o9-refund"
    assert order(worker, "o9") == marker

    # A new worker recovers the marker from the changelog.
    worker.stop()
    again = spawn("w2", **env)
    again.wait_ready(timeout=60)
    assert wait_for(lambda: order(again, "o9"), timeout=30, what="o9 after restart") == marker


def test_an_event_about_an_unknown_order_that_changes_nothing_leaves_no_record(broker, spawn) -> None:  # type: ignore[no-untyped-def]
    """A data request or a redaction naming an order the engine never saw (Shopify's
    customers/data_request and customers/redact name the customer's orders, from before
    the app too; the router gives them the shop as store) is ignored: it must not leave
    a record behind, which would stay for good (never created, never archived), raise an
    'unknown order' alert, and refuse the order should it come after all, its store
    differing from the shop's."""
    worker = spawn(OPS_ORDER_MISSING_TIMEOUT="1", OPS_ORDER_SCAN_INTERVAL="0.2")
    worker.wait_ready()
    shop = "demo-shop.myshopify.com"
    asked = {**ev("DATA_REQUESTED", "o9-data", "o9", 0, request_id="dr-1"), "store_id": shop}
    redact = {**ev("REDACT_REQUESTED", "o10-redact", "o10", 0, reason="customers/redact"), "store_id": shop}
    assert cli_publish(broker, "orders.events", [asked, redact]).returncode == 0
    wait_for(lambda: 'ops_order_events_total{result="IGNORED",type="REDACT_REQUESTED"} 1.0' in worker.get("/metrics").text,
             what="the redaction handled")
    assert order(worker, "o10") is None
    # The order comes after all (its store is the catalogue's, not the shop): it is placed.
    assert cli_publish(broker, "orders.events", [created("o9", providers=("SPOCKET",), paid=True)]).returncode == 0
    assert status_is(worker, "o9", "PROCESSING")["store_id"] == STORE
    assert not [d for d in read_json(broker, "deadletter") if "o9" in d.get("detail", "")]
