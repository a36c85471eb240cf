"""Baseline for bench/fulfillment.py: the least a paid order needs to reach its suppliers.

A plain aiokafka consumer on ``bench.paid`` that, for each paid order read,
calls the supplier adapter once per supplier group (concurrently) and
publishes SUPPLIER_ORDER_PLACED on ``bench.placed``. No state machine, no
table, no PostgreSQL record, no hop through orders.commands, no retries: it
is not exactly-once, only the floor the engine's latency is compared with.
Usage: python bench/baseline_fulfillment.py BOOTSTRAP (supplier accounts from OPS_*).
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timezone
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.suppliers.base import SupplierError  # noqa: E402
from connectors.suppliers.registry import SupplierAccounts, build_clients  # noqa: E402
from models.fulfillment import supplier_groups  # noqa: E402
from streams.embedded import EMBEDDED_LOW_LATENCY_FETCH_WAIT_MS  # noqa: E402
from models.orders import OrderCreated, SupplierLine, supplier_key  # noqa: E402


async def main(bootstrap: str) -> None:
    clients = build_clients(SupplierAccounts.load())
    consumer = AIOKafkaConsumer("bench.paid", bootstrap_servers=bootstrap, group_id="bench-baseline",
                                auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=1000,
                                # the embedded broker holds a fetch for its whole wait (streams/embedded.py)
                                fetch_max_wait_ms=EMBEDDED_LOW_LATENCY_FETCH_WAIT_MS)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await consumer.start()
    await producer.start()
    limit = asyncio.Semaphore(32)

    async def place(order: OrderCreated, provider: str, lines: tuple[str, ...]) -> None:
        items = [i for i in order.items if i.line_id in lines]
        supplier_lines = [SupplierLine(line_id=i.line_id, product_id=i.product_id, source_id=i.source_id,
                                       quantity=i.quantity) for i in items]
        key = supplier_key(order.order_id, provider)
        try:
            async with limit:
                placed = await clients[provider].place_order(
                    key, supplier_lines, order.shipping_address, order.customer
                )
        except SupplierError as exc:  # the baseline does not retry: the group is simply not placed
            print(f"baseline: {key} not placed: {exc.reason}", file=sys.stderr)
            return
        event = {"type": "SUPPLIER_ORDER_PLACED", "event_id": f"{key}:placed", "order_id": order.order_id,
                 "store_id": order.store_id, "group_id": provider, "supplier_order_id": placed.supplier_order_id,
                 "occurred_at": datetime.now(timezone.utc).isoformat()}
        await producer.send("bench.placed", key=order.order_id.encode(), value=orjson.dumps(event))

    async def forward(value: bytes) -> None:
        order = OrderCreated.model_validate_json(value)
        groups = supplier_groups(order.order_id, order.items)
        await asyncio.gather(*(place(order, g.provider, g.line_ids) for g in groups))

    try:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            tasks = []
            for records in batch.values():
                for record in records:
                    # The paid record goes to bench.placed too: the bench reads both from one topic.
                    await producer.send("bench.placed", key=record.key, value=record.value)
                    tasks.append(forward(record.value))
            await asyncio.gather(*tasks)
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
