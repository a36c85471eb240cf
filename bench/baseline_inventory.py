"""The no-framework baseline: plain aiokafka consumer and producer, a dict, the same pure functions.

Run by bench/inventory.py as a subprocess on the same messages as the worker.
It prints one JSON line per second with the number of snapshots processed, so
the bench measures it exactly as it measures the worker.
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from models.events import default_settings
from models.inventory import (
    SnapshotResult,
    apply_snapshot_encoded,
    apply_unchanged,
    decode_page,
    item_product_key,
    validate_item,
)
from models.product import product_key
from streams.codecs import encode


async def main(bootstrap: str, total: int) -> None:
    consumer = AIOKafkaConsumer(
        "supplier.snapshots",
        bootstrap_servers=bootstrap,
        group_id="bench-baseline",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=256 * 1024)
    await consumer.start()
    await producer.start()
    state: dict[str, bytes] = {}
    settings = {}
    processed = new = 0
    last_report = time.monotonic()
    try:
        while processed < total:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batch.values():
                for record in records:
                    # The worker's decisions, without the framework: the same
                    # pure functions, in the same order (agents/inventory.py).
                    page = decode_page(record.value)
                    if page is None:  # the bench produces valid snapshots only
                        raise ValueError(f"the page decoder refused {record.topic}@{record.offset}")
                    for _, item in page:
                        key = item_product_key(item)
                        current = None if key is None else state.get(key)
                        fast = None if current is None else apply_unchanged(current, item)
                        if fast is not None:
                            if fast[1] is not None:
                                state[key] = fast[1]  # type: ignore[index]
                            continue
                        snap = validate_item(item)
                        store = snap.store_id
                        st = settings.get(store)
                        if st is None:
                            st = settings[store] = default_settings(store)
                        key = product_key(store, snap.product_id, snap.variant_id)
                        out, encoded = apply_snapshot_encoded(state.get(key), snap, st)
                        if out.result is SnapshotResult.NEW:
                            new += 1
                        if encoded is not None:
                            state[key] = encoded
                            if out.durable:  # what a changelog would carry
                                await producer.send(
                                    "baseline-changelog", key=key.encode(), value=encoded, partition=record.partition
                                )
                        if out.draft is not None:
                            await producer.send("inventory.changes", key=store.encode(), value=out.draft.json())
                        for alert in out.opened:
                            await producer.send("alerts", key=store.encode(), value=encode(alert))
                    processed += len(page)
            now = time.monotonic()
            if now - last_report >= 0.5:
                last_report = now
                print(orjson.dumps({"processed": processed, "new": new, "t": time.time()}).decode(), flush=True)
        await producer.flush()
    finally:
        print(orjson.dumps({"processed": processed, "new": new, "t": time.time(), "done": True}).decode(), flush=True)
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
