"""Fulfillment benchmark: payment confirmed -> supplier order placed, p50 and p99.

On a fresh embedded broker, a private PostgreSQL and the fake supplier (its own
process) on loopback (answering at once, no failures, HTTP/1.1 keep-alive as real APIs):

1. the engine: one ``ops-engine worker`` and one ``ops-engine executor``;
   orders are published already paid (ORDER_CREATED, payment PAID, one to
   three suppliers) at ``--rate`` orders/s for ``--seconds``; the latency of a
   supplier group is the SUPPLIER_ORDER_PLACED event's time minus the
   payment's time (both stamped on this machine's clock);
2. the baseline, measured in the same run with the same load and the same
   fake supplier: bench/baseline_fulfillment.py, a plain aiokafka loop that
   calls the supplier adapter for each group as soon as the paid order is read
   and publishes the outcome (no state machine, no table, no PostgreSQL
   record, no second hop through orders.commands).

Prints p50/p99/max for both and the ratio engine/baseline, checks the target
(p99 under 1 s), and saves bench/results/fulfillment.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.broker import EmbeddedBroker, create_topics  # noqa: E402
from connectors.postgres.migrate import migrate  # noqa: E402
from connectors.postgres.server import LocalPostgres  # noqa: E402
from streams import topics  # noqa: E402
from tests.fakes.clients import supplier_env  # noqa: E402
from tests.fakes.supplier_server import SupplierServerProcess  # noqa: E402
from tests.harness import Worker, read_topic  # noqa: E402

PROVIDERS = ("ALIEXPRESS", "CJ_DROPSHIPPING", "SPOCKET")
TARGET_P99_S = 1.0


def paid_order(n: int, rng: random.Random, tag: str) -> dict[str, Any]:
    providers = rng.sample(PROVIDERS, rng.choices([1, 2, 3], weights=[6, 3, 1])[0])
    order = f"{tag}-{n:06d}"
    return {
        "type": "ORDER_CREATED", "event_id": f"{order}-created", "order_id": order, "store_id": f"store-{n % 20}",
        "occurred_at": datetime.now(timezone.utc).isoformat(), "order_number": f"#{n}",
        "customer": {"name": "Ada", "email": f"c{n}@example.com"},
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Austin", "country_code": "US"},
        "items": [
            {"line_id": f"l{i}", "product_id": f"p{i}", "quantity": 1, "unit_price": "9.99", "provider": p,
             "source_id": f"SRC-{n}-{i}"}
            for i, p in enumerate(providers)
        ],
        "subtotal": "9.99", "total": "9.99", "currency": "USD", "payment_status": "PAID",
    }


async def load(bootstrap: str, topic: str, rate: float, seconds: float, tag: str) -> int:
    """Publish paid orders at ``rate``/s, each stamped when it is sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    rng = random.Random(7)
    sent = 0
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate) + 1
            while sent < due:
                order = paid_order(sent, rng, tag)
                await producer.send(topic, key=order["order_id"].encode(), value=orjson.dumps(order))
                sent += 1
            await asyncio.sleep(0.005)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def latencies(records: list[Any], tag: str) -> tuple[list[float], int]:
    """(seconds from payment to placement per placed group, groups asked for)."""
    paid: dict[str, datetime] = {}
    groups = 0
    placed: dict[tuple[str, str], datetime] = {}
    for record in records:
        body = orjson.loads(record.value)
        order = body.get("order_id", "")
        if not order.startswith(tag):
            continue
        kind = body.get("type")
        if kind == "ORDER_CREATED":
            paid[order] = datetime.fromisoformat(body["occurred_at"])
            groups += len({item["provider"] for item in body["items"]})
        elif kind == "SUPPLIER_ORDER_PLACED":
            placed.setdefault((order, body["group_id"]), datetime.fromisoformat(body["occurred_at"]))
    out = [(at - paid[order]).total_seconds() for (order, _), at in placed.items() if order in paid]
    return sorted(out), groups


def command_delays(commands: list[Any], events: list[Any], tag: str) -> tuple[list[float], list[float]]:
    """(order paid -> command on orders.commands, command -> placed), from record timestamps."""
    paid: dict[str, float] = {}
    placed: dict[tuple[str, str], float] = {}
    for record in events:
        body = orjson.loads(record.value)
        if not body.get("order_id", "").startswith(tag):
            continue
        if body.get("type") == "ORDER_CREATED":
            paid[body["order_id"]] = datetime.fromisoformat(body["occurred_at"]).timestamp()
        elif body.get("type") == "SUPPLIER_ORDER_PLACED":
            placed.setdefault((body["order_id"], body["group_id"]), datetime.fromisoformat(body["occurred_at"]).timestamp())
    to_command, to_placed = [], []
    for record in commands:
        body = orjson.loads(record.value)
        at = record.timestamp / 1000
        if body["order_id"] in paid and body["attempt"] == 1:
            to_command.append(at - paid[body["order_id"]])
            done = placed.get((body["order_id"], body["group_id"]))
            if done is not None:
                to_placed.append(done - at)
    return sorted(to_command), sorted(to_placed)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def summary(values: list[float], groups: int) -> dict[str, Any]:
    return {
        "groups": groups,
        "placed": len(values),
        "p50_s": percentile(values, 50),
        "p99_s": percentile(values, 99),
        "max_s": values[-1] if values else float("nan"),
    }


def wait_all_placed(read: Callable[[], tuple[list[float], int]], timeout: float) -> tuple[list[float], int]:
    deadline = time.monotonic() + timeout
    while True:
        values, groups = read()
        if len(values) >= groups or time.monotonic() > deadline:
            return values, groups
        time.sleep(2)


def run(rate: float, seconds: float, workdir: Path) -> dict[str, Any]:
    with EmbeddedBroker(log_path=workdir / "broker.log") as broker, \
            LocalPostgres(workdir / "pg") as pg, \
            SupplierServerProcess(extra_args=["--keep-alive", "--tracking-delay", "36000"]) as fake:
        asyncio.run(migrate(pg.dsn))
        names = [s.name for s in topics.specs()]
        asyncio.run(create_topics(broker.bootstrap, {n: 8 for n in names + ["bench.paid", "bench.placed"]}))
        env = {"OPS_LOG_LEVEL": "warning", "OPS_DATABASE_URL": pg.dsn, "OPS_EXECUTOR_METRICS_PORT": "0",
               "OPS_TRACKING_POLL_INTERVAL": "36000", **supplier_env(fake, read_timeout=5.0)}

        # The baseline first (nothing else running), on its own topics.
        baseline = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "baseline_fulfillment.py"), broker.bootstrap],
            env={**env, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, cwd=ROOT,
        )
        time.sleep(4)  # its group join
        asyncio.run(load(broker.bootstrap, "bench.paid", rate, seconds, "base"))
        base_values, base_groups = wait_all_placed(
            lambda: latencies(asyncio.run(read_topic(broker, "bench.placed")), "base"), timeout=120
        )
        baseline.terminate()
        baseline.wait(10)

        worker = Worker(broker, workdir, name="w1", **env).start()
        worker.wait_ready(timeout=60)
        executor = Worker(broker, workdir, name="x1", command="executor", **env).start()
        time.sleep(4)
        try:
            sent = asyncio.run(load(broker.bootstrap, topics.ORDERS_EVENTS, rate, seconds, "eng"))
            values, groups = wait_all_placed(
                lambda: latencies(asyncio.run(read_topic(broker, topics.ORDERS_EVENTS)), "eng"), timeout=120
            )
            to_command, to_placed = command_delays(
                asyncio.run(read_topic(broker, topics.ORDERS_COMMANDS)),
                asyncio.run(read_topic(broker, topics.ORDERS_EVENTS)),
                "eng",
            )
        finally:
            worker.kill()
            executor.kill()
        duplicates = fake.orders()["duplicates"]
    engine = summary(values, groups)
    base = summary(base_values, base_groups)
    return {
        "rate_orders_per_s": rate,
        "seconds": seconds,
        "orders": sent,
        "engine": engine,
        "baseline": base,
        "stages": {
            "paid_to_command": {"p50_s": percentile(to_command, 50), "p99_s": percentile(to_command, 99)},
            "command_to_placed": {"p50_s": percentile(to_placed, 50), "p99_s": percentile(to_placed, 99)},
        },
        "ratio_p99": engine["p99_s"] / base["p99_s"] if base["p99_s"] else None,
        "ratio_p50": engine["p50_s"] / base["p50_s"] if base["p50_s"] else None,
        "duplicates_at_supplier": len(duplicates),
        "target_p99_s": TARGET_P99_S,
        "meets_target": engine["p99_s"] < TARGET_P99_S and engine["placed"] == engine["groups"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="paid orders per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fulfillment-") as tmp:
        result = run(args.rate, args.seconds, Path(tmp))
    e, b = result["engine"], result["baseline"]
    print(f"fulfillment: {result['orders']} paid orders at {args.rate:g}/s for {args.seconds:g}s")
    print(f"  engine   : {e['placed']}/{e['groups']} groups placed, p50 {e['p50_s']*1000:.0f} ms, "
          f"p99 {e['p99_s']*1000:.0f} ms, max {e['max_s']*1000:.0f} ms")
    print(f"  baseline : {b['placed']}/{b['groups']} groups placed, p50 {b['p50_s']*1000:.0f} ms, "
          f"p99 {b['p99_s']*1000:.0f} ms, max {b['max_s']*1000:.0f} ms")
    st = result["stages"]
    print(f"  stages   : paid -> command p50 {st['paid_to_command']['p50_s']*1000:.0f} ms "
          f"p99 {st['paid_to_command']['p99_s']*1000:.0f} ms (worker); command -> placed "
          f"p50 {st['command_to_placed']['p50_s']*1000:.0f} ms p99 {st['command_to_placed']['p99_s']*1000:.0f} ms "
          f"(executor)")
    print(f"  ratio engine/baseline: p50 x{result['ratio_p50']:.1f}, p99 x{result['ratio_p99']:.1f}; "
          f"target p99 < {TARGET_P99_S:g} s: {'met' if result['meets_target'] else 'MISSED'}; "
          f"duplicates at the supplier: {result['duplicates_at_supplier']}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "fulfillment.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
