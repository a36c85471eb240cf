"""The executor process (``ops-engine executor``): consume ``orders.commands``,
carry each out (executor.py), publish the outcome on ``orders.events``, and
commit the input offsets only after the outcomes are acknowledged.

A cancel the supplier cannot take when asked is left to the same loop as the
tracking poller, which tries it again every ``CANCEL_RETRY_S`` (executor.py,
``retry_cancels``), so a supplier that is down holds up no command.

It also consumes ``supplier.tracking`` (tracking a supplier sent by webhook,
routed by agents/webhooks.py): it finds the supplier order by our reference or
the supplier's id in its record and publishes TRACKING_RECEIVED / DELIVERED
with the same ids as its tracking poller.

A plain aiokafka consumer group (``{app_id}-executor``): executors scale out
like workers, one partition at a time. Commands start as they are fetched:
those of one order run one after another, different orders concurrently (at
most ``OPS_EXECUTOR_CONCURRENCY`` at once; the supplier calls are the slow
part). An offset is committed once it and every offset before it on its
partition are done (``Offsets``), so a crash repeats only unfinished or
uncommitted commands, and the idempotency key makes a repeat harmless. A
command that fails (the database is down, say) is tried again until it
succeeds. A record that is not a command goes to ``deadletter`` with the
reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from pydantic import ValidationError

from connectors.consumers import commit, group_consumer
from connectors.fulfillment.executor import Executor
from connectors.fulfillment.metrics import COMMAND_SECONDS, COMMANDS
from connectors.fulfillment import records
from connectors.fulfillment.tracking import poll_once, tracking_events
from connectors.postgres.pool import create_pool
from connectors.suppliers.base import SupplierOrders, TrackingInfo
from models.events import DeadLetter, DeadLetterReason
from models.orders import OrderEvent, SupplierOrderCommand
from models.webhook_routing import SupplierTracking
from streams import topics
from streams.codecs import encode
from streams.embedded import EMBEDDED_LOW_LATENCY_FETCH_WAIT_MS
from streams.settings import Settings

log = logging.getLogger(__name__)
RETRY_PAUSE_S = 1.0
#: How long a cancel the supplier could not take (a CANCELLING row) waits before the
#: reconciler loop tries it again, s.
CANCEL_RETRY_S = 30.0
COMMIT_EVERY_S = 0.2


class Offsets:
    """Offsets handed out per partition, and the contiguous prefix that is done:
    what may be committed (a command done out of order waits for those before it)."""

    def __init__(self) -> None:
        self._pending: dict[TopicPartition, dict[int, bool]] = defaultdict(dict)

    def start(self, tp: TopicPartition, offset: int) -> None:
        self._pending[tp][offset] = False

    def done(self, tp: TopicPartition, offset: int) -> None:
        if offset in self._pending.get(tp, {}):
            self._pending[tp][offset] = True

    def committable(self) -> dict[TopicPartition, int]:
        out = {}
        for tp, offsets in self._pending.items():
            last = None
            for offset in sorted(offsets):
                if not offsets[offset]:
                    break
                last = offset
            if last is not None:
                for offset in [o for o in offsets if o <= last]:
                    del offsets[offset]
                out[tp] = last + 1
        return out

    def in_flight(self) -> int:
        return sum(len(o) for o in self._pending.values())

    def forget(self, tps: Any) -> None:
        for tp in tps:
            self._pending.pop(tp, None)


class Runner:
    def __init__(self, settings: Settings, executor: Executor, producer: AIOKafkaProducer) -> None:
        self.settings = settings
        self.executor = executor
        self.producer = producer
        self.limit = asyncio.Semaphore(settings.executor_concurrency)
        self.offsets = Offsets()
        #: one lock per order with commands in flight: an order's commands run in order.
        self._orders: dict[bytes | None, asyncio.Lock] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    async def publish(self, events: list[OrderEvent]) -> None:
        futures = [
            await self.producer.send(topics.ORDERS_EVENTS, key=e.order_id.encode(), value=encode(e)) for e in events
        ]
        for future in futures:
            await future

    async def _dead(
        self, message: Any, detail: str, reason: DeadLetterReason = DeadLetterReason.SCHEMA_VIOLATION
    ) -> None:
        record = DeadLetter.of(message, reason, detail)
        await (await self.producer.send(topics.DEADLETTER, key=message.topic.encode(), value=encode(record)))

    async def tracked(self, message: Any) -> None:
        """Tracking a supplier sent by webhook: resolved to its order through the
        record, published with the poller's ids, then recorded."""
        try:
            update = SupplierTracking.model_validate_json(message.value or b"")
        except ValidationError as exc:
            await self._dead(message, f"not a supplier tracking update: {exc.errors()[:3]}")
            return
        row = await records.find(self.executor.pool, update.provider, update.reference, update.supplier_order_id)
        if row is None:
            COMMANDS.labels("TRACKING", "UNKNOWN_ORDER").inc()
            await self._dead(message, f"no {update.provider} order {update.reference or update.supplier_order_id} "
                             "placed by the engine", reason=DeadLetterReason.UNMAPPABLE)
            return
        info = TrackingInfo(update.tracking_number, update.carrier, update.tracking_url, update.delivered)
        await self.publish(tracking_events(row, info, datetime.now(timezone.utc)))
        await records.record_tracking(
            self.executor.pool, row.idempotency_key, info.number, info.carrier, info.url, info.delivered
        )
        COMMANDS.labels("TRACKING", "DELIVERED" if info.delivered else "TRACKING").inc()

    async def handle(self, message: Any) -> None:
        """One command, to its published outcome; a failure (the database down, say)
        is tried again until it succeeds, so nothing after it is committed before it."""
        if message.topic == topics.SUPPLIER_TRACKING:
            while True:
                try:
                    await self.tracked(message)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("tracking update failed; trying it again")
                    await asyncio.sleep(RETRY_PAUSE_S)
        try:
            command = SupplierOrderCommand.model_validate_json(message.value or b"")
        except ValidationError as exc:
            COMMANDS.labels("UNKNOWN", "INVALID").inc()
            await self._dead(message, f"not a supplier order command: {exc.errors()[:3]}")
            return
        while True:
            try:
                started = time.perf_counter()
                async with self.limit:
                    event = await self.executor.run(command)
                if event is not None:
                    await self.publish([event])
                break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("command %s failed; trying it again", command.command_id)
                COMMANDS.labels(command.type.value, "ERROR").inc()
                await asyncio.sleep(RETRY_PAUSE_S)
        COMMAND_SECONDS.observe(time.perf_counter() - started)
        outcome = "CANCEL" if event is None else event.type.value.removeprefix("SUPPLIER_ORDER_")
        COMMANDS.labels(command.type.value, outcome).inc()

    async def _in_order(self, message: Any) -> None:
        key = message.key
        lock = self._orders.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                await self.handle(message)
            self.offsets.done(TopicPartition(message.topic, message.partition), message.offset)
        finally:
            if not lock.locked() and self._orders.get(key) is lock:
                del self._orders[key]

    def submit(self, message: Any) -> None:
        """Start a command now (tasks start in offset order and queue on their order's lock)."""
        self.offsets.start(TopicPartition(message.topic, message.partition), message.offset)
        task = asyncio.create_task(self._in_order(message))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


async def _no_reset(conn: Any) -> None:
    """Skip asyncpg's reset of a connection going back to the pool (``pg_advisory_unlock_all();
    CLOSE ALL; UNLISTEN *; RESET ALL``: one more round trip per command). The executor
    returns connections with no transaction open and its key lock released
    (records.locked), and uses no cursors, LISTEN or SET."""


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
        try:  # cancels the supplier could not take when asked
            while await runner.executor.retry_cancels(CANCEL_RETRY_S):
                pass
        except Exception:
            log.exception("cancel retry failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=tick)
        except asyncio.TimeoutError:
            pass


async def run_executor(
    settings: Settings, clients: dict[str, SupplierOrders], stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    assert settings.database_url, "OPS_DATABASE_URL is required"
    pool = await create_pool(settings.database_url, max_size=settings.executor_concurrency + 2, reset=_no_reset)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap,
        acks="all",
        enable_idempotence=settings.producer_idempotence,
        linger_ms=2,
    )
    consumer = group_consumer(
        settings,
        "executor",
        max_poll_records=500,
        # The embedded broker holds a fetch for its whole wait (streams/embedded.py):
        # commands are few and their latency counts, so ask for a short one.
        fetch_max_wait_ms=EMBEDDED_LOW_LATENCY_FETCH_WAIT_MS if settings.embedded_broker else 500,
    )
    runner = Runner(settings, Executor(pool, clients), producer)

    class Rebalance(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked: Any) -> None:
            done = {tp: o for tp, o in runner.offsets.committable().items() if tp in revoked}
            if done:
                try:
                    await consumer.commit(done)
                except Exception as exc:
                    log.warning("commit at revocation failed: %s", exc)
            runner.offsets.forget(revoked)

        async def on_partitions_assigned(self, assigned: Any) -> None:
            pass

    await producer.start()
    await consumer.start()
    consumer.subscribe([topics.ORDERS_COMMANDS, topics.SUPPLIER_TRACKING], listener=Rebalance())
    tracker = asyncio.create_task(_tracking_loop(runner, pool, clients, settings.tracking_poll_interval, stop))
    if ready is not None:
        ready.set()
    log.info("executor running for %s", ", ".join(sorted(clients)) or "no supplier")
    last_commit = time.monotonic()
    try:
        while not stop.is_set():
            if runner.offsets.in_flight() >= 4 * settings.executor_concurrency:
                await asyncio.sleep(0.01)  # enough in hand: let them finish first
            else:
                batch = await consumer.getmany(timeout_ms=100, max_records=settings.executor_concurrency)
                for messages in batch.values():
                    for message in messages:
                        runner.submit(message)
            if time.monotonic() - last_commit >= COMMIT_EVERY_S:
                last_commit = time.monotonic()
                await commit(consumer, runner.offsets.committable())
    finally:
        stop.set()
        for task in list(runner.tasks):
            task.cancel()
        await asyncio.gather(*runner.tasks, return_exceptions=True)
        tracker.cancel()
        await asyncio.gather(tracker, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
        await pool.close()
        for client in clients.values():
            await client.aclose()
