"""``ops-engine demo``: a sample catalogue, a stream of changes, alerts printed live.

It plays an upstream producer: settings and a baseline snapshot of every
product of a few stores, then random stock and price changes (some stock-outs,
restocks, removals and cost jumps). Meanwhile it reads ``alerts`` and prints
each alert of its own stores as it arrives. Store ids carry a run id, so a
demo never mixes with an earlier one on the same broker.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, TextIO

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams import topics
from streams.settings import Settings

PROVIDERS = ("ALIEXPRESS", "CJ_DROPSHIPPING", "SPOCKET")
ITEMS = (
    "LED Desk Lamp",
    "Wireless Earbuds",
    "Yoga Mat",
    "Phone Stand",
    "Pet Water Fountain",
    "Posture Corrector",
    "Mini Projector",
    "Silicone Baking Mat",
    "Bamboo Cutting Board",
    "Car Phone Mount",
)


def catalogue(run: str, stores: int, products: int, rng: random.Random) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for s in range(stores):
        store_id = f"demo-store-{chr(97 + s)}-{run}"
        out[store_id] = [
            {
                "store_id": store_id,
                "product_id": f"p{p + 1}",
                "provider": PROVIDERS[(s + p) % len(PROVIDERS)],
                "source_id": f"SRC-{s}{p:03d}",
                "title": ITEMS[p % len(ITEMS)],
                "stock": rng.randint(8, 60),
                "cost_price": f"{rng.randint(300, 4000) / 100:.2f}",
                "shipping_cost": f"{rng.choice([0, 199, 349]) / 100:.2f}",
                "currency": "USD",
                "available": True,
            }
            for p in range(products)
        ]
    return out


def mutate(product: dict[str, Any], rng: random.Random) -> str:
    """Change one product the way suppliers do; return what happened."""
    roll = rng.random()
    if not product["available"]:
        product["available"] = True
        product["stock"] = rng.randint(5, 40)
        return "back in the catalogue"
    if roll < 0.25:
        product["stock"] = 0
        return "sold out"
    if roll < 0.45:
        product["stock"] = rng.randint(1, 4)
        return "running low"
    if roll < 0.6:
        product["stock"] = rng.randint(20, 80)
        return "restocked"
    if roll < 0.68:
        product["available"] = False
        return "removed by the supplier"
    old = Decimal(product["cost_price"])
    factor = Decimal(rng.choice(["0.80", "0.88", "1.05", "1.15", "1.30"]))
    product["cost_price"] = str((old * factor).quantize(Decimal("0.01")))
    return f"cost {old} -> {product['cost_price']}"


async def run_demo(
    settings: Settings,
    stores: int,
    products: int,
    changes: int,
    interval: float,
    seed: int | None,
    out: TextIO,
    on_alert: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    run = uuid.uuid4().hex[:6]
    rng = random.Random(seed)
    shops = catalogue(run, stores, products, rng)
    seen: list[dict[str, Any]] = []

    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all")
    consumer = AIOKafkaConsumer(
        topics.ALERTS,
        bootstrap_servers=settings.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await producer.start()
    await consumer.start()

    async def read_alerts() -> None:
        async for record in consumer:
            alert = orjson.loads(record.value)
            if alert.get("store_id") not in shops:
                continue
            seen.append(alert)
            if on_alert:
                on_alert(alert)
            say(
                f"  ALERT {alert['severity']:<8} {alert['type']:<16} {alert['status']:<9} "
                f"{alert['store_id']}/{alert.get('product_id')}: {alert['title']}"
            )

    reader = asyncio.create_task(read_alerts())
    clock = datetime.now(timezone.utc)

    def stamp() -> str:
        nonlocal clock
        clock = max(clock + timedelta(milliseconds=1), datetime.now(timezone.utc))
        return clock.isoformat().replace("+00:00", "Z")

    try:
        say(f"demo run {run}: {stores} stores x {products} products")
        for store_id, items in shops.items():
            setting = {
                "store_id": store_id,
                "pricing": {"strategy": "PERCENT_MARKUP", "markup_percent": "60", "ending": ".99"},
                "low_stock_threshold": 5,
                "price_alert_threshold_pct": "10",
                "updated_at": stamp(),
            }
            await producer.send_and_wait(topics.STORE_SETTINGS, key=store_id.encode(), value=orjson.dumps(setting))
            page = [{**p, "captured_at": stamp()} for p in items]
            await producer.send_and_wait(topics.SUPPLIER_SNAPSHOTS, key=store_id.encode(), value=orjson.dumps(page))
            say(f"catalogue of {store_id}: {len(items)} products published as one page")
        await asyncio.sleep(1.0)
        for _ in range(changes):
            store_id = rng.choice(list(shops))
            product = rng.choice(shops[store_id])
            what = mutate(product, rng)
            await producer.send_and_wait(
                topics.SUPPLIER_SNAPSHOTS,
                key=store_id.encode(),
                value=orjson.dumps({**product, "captured_at": stamp()}),
            )
            say(f"{store_id}/{product['product_id']} ({product['title']}): {what}")
            await asyncio.sleep(interval)
        await asyncio.sleep(2.0)
        say(f"{len(seen)} alert record(s) received; browse them at {settings.web_url}/stores/<store>/alerts")
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
    return seen
