"""1,000 paid orders through the worker, the executor and a failing supplier,
with both processes killed (SIGKILL) and restarted several times.

At the end every order is placed at each of its suppliers exactly once or is
waiting for a person with a stated reason, and the orders table holds what the
orders.events topic implies (the pure machine folded over it).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from models.fulfillment import MachineConfig, OrderState, OrderStatus, decide
from models.orders import ORDER_EVENT, supplier_key
from tests.fakes.clients import supplier_env
from tests.fakes.supplier_server import SupplierServerProcess
from tests.harness import produce_raw, read_topic, wait_for

ORDERS = 1000
KILLS = 3
SEED = 20261124
PROVIDERS = ("ALIEXPRESS", "CJ_DROPSHIPPING", "SPOCKET")
UNCONFIGURED = "PRINTFUL"
BACKOFF = "0.5,1,2"
OUTCOME_TIMEOUT = 8.0
ENGINE_ENV = {
    "OPS_ORDER_RETRY_BACKOFF": BACKOFF,
    "OPS_ORDER_OUTCOME_TIMEOUT": str(OUTCOME_TIMEOUT),
    "OPS_ORDER_SCAN_INTERVAL": "0.5",
}
CONFIG = MachineConfig(retry_backoff_s=(0.5, 1.0, 2.0), outcome_timeout_s=OUTCOME_TIMEOUT)
SETTLED = {OrderStatus.AWAITING_SHIPMENT, OrderStatus.INTERVENTION_REQUIRED}


def order_events(rng: random.Random) -> list[tuple[bytes, bytes]]:
    """Each order's creation and payment (a third pay separately, some of those before the order)."""
    now = datetime.now(timezone.utc).isoformat()
    records = []
    for n in range(ORDERS):
        order = f"ord-{n:04d}"
        groups = rng.choices([1, 2, 3], weights=[6, 3, 1])[0]
        providers = rng.sample(PROVIDERS, groups)
        if n % 50 == 7:
            providers.append(UNCONFIGURED)  # no account for it: that group needs a person
        items = [
            {"line_id": f"l{i}", "product_id": f"p{n}-{i}", "quantity": 1 + i, "unit_price": "12.50",
             "provider": p, "source_id": f"SRC-{n}-{i}"}
            for i, p in enumerate(providers)
        ]
        separate_payment = n % 3 == 0
        created = {
            "type": "ORDER_CREATED", "event_id": f"{order}-created", "order_id": order, "store_id": f"store-{n % 7}",
            "occurred_at": now, "order_number": f"#{10000 + n}",
            "customer": {"name": "Ada", "email": f"c{n}@example.com"},
            "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Austin", "country_code": "US"},
            "items": items, "subtotal": "12.50", "total": "12.50", "currency": "USD",
            "payment_status": "PENDING" if separate_payment else "PAID",
        }
        pair = [(order.encode(), orjson.dumps(created))]
        if separate_payment:
            paid = {"type": "PAYMENT_CONFIRMED", "event_id": f"{order}-paid", "order_id": order,
                    "store_id": created["store_id"], "occurred_at": now}
            pair.append((order.encode(), orjson.dumps(paid)))
            if n % 2:
                pair.reverse()  # the payment webhook came first
        records.extend(pair)
    return records


def fold(records: list[Any]) -> dict[str, OrderState]:
    """The machine over the topic, partition by partition in offset order (as the agent sees it)."""
    by_partition: dict[int, list[Any]] = defaultdict(list)
    for record in records:
        by_partition[record.partition].append(record)
    states: dict[str, OrderState] = {}
    for partition in by_partition.values():
        for record in sorted(partition, key=lambda r: r.offset):
            try:
                event = ORDER_EVENT.validate_json(record.value)
            except ValueError:
                continue
            states[event.order_id] = decide(states.get(event.order_id), event, CONFIG).state
    return states


def settled(states: dict[str, OrderState]) -> bool:
    return len(states) == ORDERS and all(s.status in SETTLED for s in states.values())


@pytest.mark.slow
def test_thousand_orders_exactly_once_through_crashes(broker, spawn, pg_dsn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(SEED)
    with SupplierServerProcess(
        failure_rate=0.3, seed=SEED, state_file=tmp_path / "supplier.json",
        extra_args=["--timeout-sleep", "2", "--retry-after", "0.2", "--tracking-delay", "36000"],
    ) as fake:
        executor_env = {
            **ENGINE_ENV, **supplier_env(fake, read_timeout=1.0), "OPS_DATABASE_URL": pg_dsn,
            "OPS_EXECUTOR_METRICS_PORT": "0", "OPS_TRACKING_POLL_INTERVAL": "36000",
        }
        worker = spawn("w1", **ENGINE_ENV)
        worker.wait_ready()
        executor = spawn("x1", command="executor", **executor_env)

        records = order_events(rng)
        chunks = [records[i : i + 100] for i in range(0, len(records), 100)]
        kills: list[str] = []

        def chaos() -> None:
            nonlocal worker, executor
            for round_ in range(KILLS):
                time.sleep(2.5)
                worker.kill()
                kills.append(f"worker {round_}")
                worker = spawn(f"w1-{round_}", **ENGINE_ENV)
                time.sleep(1.5)
                executor.kill()
                kills.append(f"executor {round_}")
                executor = spawn(f"x1-{round_}", command="executor", **executor_env)

        killer = threading.Thread(target=chaos)
        killer.start()
        for chunk in chunks:
            asyncio.run(produce_raw(broker, "orders.events", chunk))
            time.sleep(0.3)
        killer.join()
        assert len(kills) == 2 * KILLS
        worker.wait_ready(timeout=60)

        # Settled: every order AWAITING_SHIPMENT or INTERVENTION_REQUIRED, as the topic implies.
        states = wait_for(
            lambda: (s := fold(asyncio.run(read_topic(broker, "orders.events")))) and settled(s) and s,
            timeout=300, interval=3, what="every order settled",
        )
        supplier = fake.orders()

    # Exactly once at the supplier: no reference twice; every placed group there once, with its id.
    assert supplier["duplicates"] == [], supplier["duplicates"][:5]
    at_supplier = {(r["provider"], r["reference"]): r["supplier_order_ids"] for r in supplier["by_reference"]}
    counts = defaultdict(int)
    for state in states.values():
        counts[state.status] += 1
        if state.status is OrderStatus.INTERVENTION_REQUIRED:
            assert state.reason, state.order_id
        if any(g.provider == UNCONFIGURED for g in state.groups):
            assert state.status is OrderStatus.INTERVENTION_REQUIRED
            assert f"no supplier account configured for {UNCONFIGURED}" in (state.reason or "")
        for group in state.groups:
            key = (group.provider, supplier_key(state.order_id, group.group_id))
            assert key[1] == group.idempotency_key
            if group.status.value == "PLACED":
                assert at_supplier.get(key) == [group.supplier_order_id], (state.order_id, group)
            else:
                assert group.status.value == "FAILED" and key not in at_supplier, (state.order_id, group)
    placed_groups = sum(1 for s in states.values() for g in s.groups if g.status.value == "PLACED")
    assert placed_groups == len(at_supplier)
    assert counts[OrderStatus.AWAITING_SHIPMENT] > ORDERS * 0.9, counts
    assert counts[OrderStatus.INTERVENTION_REQUIRED] >= ORDERS // 50, counts

    # The table holds what the events imply (read through the web views, any worker answers).
    def table_matches() -> list[str]:
        with httpx.Client(base_url=worker.url, timeout=15) as http:
            wrong = []
            for order_id, expected in states.items():
                got = http.get(f"/orders/{order_id}").json()
                want = expected.model_dump(mode="json", by_alias=True, exclude={"seen"})
                if {k: got.get(k) for k in want} != want:
                    wrong.append(order_id)
            return wrong

    assert wait_for(lambda: table_matches() == [], timeout=60, interval=2, what="table = fold")
    print(f"\nchaos: {dict((k.value, v) for k, v in counts.items())}; kills: {kills}; "
          f"supplier stats: {supplier['stats']}")
