"""The executor process (``ops-engine executor``): consume ``orders.commands``,
carry each out (executor.py), publish the outcome on ``orders.events``, and
commit the input offsets only after the outcomes are acknowledged.

A plain aiokafka consumer group (``{app_id}-executor``): executors scale out
like workers, one partition at a time. Within a fetched batch, the commands of
one order run one after another and different orders run concurrently (at most
``OPS_EXECUTOR_CONCURRENCY`` at once); the supplier calls are the slow part.
If carrying out a batch fails (the database is down, say), nothing of it is
committed: the consumer seeks back and tries it again after a pause, and the
idempotency key makes the repeat harmless. A record that is not a command goes
to ``deadletter`` with the reason.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from connectors.fulfillment.executor import Executor
from connectors.fulfillment.metrics import COMMAND_SECONDS, COMMANDS
from connectors.fulfillment.tracking import poll_once
from connectors.postgres.pool import create_pool
from connectors.suppliers.base import SupplierOrders
from models.events import DeadLetter, DeadLetterReason
from models.orders import OrderEvent, SupplierOrderCommand
from streams import topics
from streams.codecs import encode
from streams.settings import Settings

log = logging.getLogger(__name__)
RETRY_PAUSE_S = 1.0


class Runner:
    def __init__(self, settings: Settings, executor: Executor, producer: AIOKafkaProducer) -> None:
        self.settings = settings
        self.executor = executor
        self.producer = producer
        self.limit = asyncio.Semaphore(settings.executor_concurrency)

    async def publish(self, events: list[OrderEvent]) -> None:
        futures = [
            await self.producer.send(topics.ORDERS_EVENTS, key=e.order_id.encode(), value=encode(e)) for e in events
        ]
        for future in futures:
            await future

    async def _dead(self, message: Any, detail: str) -> None:
        record = DeadLetter(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=None if message.key is None else base64.b64encode(message.key).decode(),
            value=base64.b64encode(message.value or b"").decode(),
            reason=DeadLetterReason.SCHEMA_VIOLATION,
            detail=detail[:2000],
            refused_at=datetime.now(timezone.utc),
        )
        await (await self.producer.send(topics.DEADLETTER, key=message.topic.encode(), value=encode(record)))

    async def _one_order(self, messages: list[Any]) -> list[OrderEvent]:
        """The commands of one order, in order."""
        out: list[OrderEvent] = []
        for message in messages:
            try:
                command = SupplierOrderCommand.model_validate_json(message.value or b"")
            except ValidationError as exc:
                COMMANDS.labels("UNKNOWN", "INVALID").inc()
                await self._dead(message, f"not a supplier order command: {exc.errors()[:3]}")
                continue
            started = time.perf_counter()
            async with self.limit:
                event = await self.executor.run(command)
            COMMAND_SECONDS.observe(time.perf_counter() - started)
            outcome = "CANCEL" if event is None else event.type.value.removeprefix("SUPPLIER_ORDER_")
            COMMANDS.labels(command.type.value, outcome).inc()
            if event is not None:
                out.append(event)
        return out

    async def handle_batch(self, batch: dict[TopicPartition, list[Any]]) -> None:
        by_order: dict[bytes | None, list[Any]] = defaultdict(list)
        for messages in batch.values():
            for message in messages:
                by_order[message.key].append(message)
        results = await asyncio.gather(*(self._one_order(msgs) for msgs in by_order.values()))
        await self.publish([event for events in results for event in events])


async def _tracking_loop(
    runner: Runner, pool: Any, clients: dict[str, SupplierOrders], interval: float, stop: asyncio.Event
) -> None:
    # Check often, each row once per interval (claim_tracking_batch skips rows checked recently).
    tick = min(interval, 30.0)
    while not stop.is_set():
        try:
            while await poll_once(pool, clients, runner.publish, interval):
                pass
        except Exception:  # the poller must outlive a bad round
            log.exception("tracking poll failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=tick)
        except asyncio.TimeoutError:
            pass


async def run_executor(
    settings: Settings, clients: dict[str, SupplierOrders], stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    assert settings.database_url, "OPS_DATABASE_URL is required"
    pool = await create_pool(settings.database_url, max_size=settings.executor_concurrency + 2)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap,
        acks="all",
        enable_idempotence=settings.producer_idempotence,
        linger_ms=2,
    )
    consumer = AIOKafkaConsumer(
        topics.ORDERS_COMMANDS,
        bootstrap_servers=settings.bootstrap,
        group_id=f"{settings.app_id}-executor",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(settings.session_timeout * 1000),
        heartbeat_interval_ms=int(settings.heartbeat_interval * 1000),
        max_poll_records=500,
    )
    await producer.start()
    await consumer.start()
    runner = Runner(settings, Executor(pool, clients), producer)
    tracker = asyncio.create_task(_tracking_loop(runner, pool, clients, settings.tracking_poll_interval, stop))
    if ready is not None:
        ready.set()
    log.info("executor running for %s", ", ".join(sorted(clients)) or "no supplier")
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            if not batch:
                continue
            try:
                await runner.handle_batch(batch)
            except Exception:
                log.exception("a batch of %d commands failed; trying it again", sum(map(len, batch.values())))
                COMMANDS.labels("BATCH", "ERROR").inc()
                for tp, messages in batch.items():
                    consumer.seek(tp, messages[0].offset)
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            try:
                await consumer.commit({tp: messages[-1].offset + 1 for tp, messages in batch.items()})
            except Exception as exc:  # e.g. a rebalance took the partitions: their new owner repeats them
                log.warning("commit failed (%s); the new owner handles these commands again", exc)
    finally:
        stop.set()
        tracker.cancel()
        await asyncio.gather(tracker, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
        await pool.close()
        for client in clients.values():
            await client.aclose()
