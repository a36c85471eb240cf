"""Outputs of the hot path, produced in record batches, flushed before every commit.

Faust's ``send_soon`` hands each record to a buffer that a background task
drains one ``send`` at a time (about 30 us a record here), and its stream
stalls whenever that buffer holds more than 100 records. A sync writes tens of
records per page (changelog, change, alert), so the agent spent most of its
time waiting on it. This module appends records to aiokafka record batches
(``create_batch``/``send_batch``, a few microseconds a record) per topic and
partition, and sends them:

- when enough are buffered or a short time has passed (the agent calls
  ``maybe_send`` after each message, a timer every 100 ms), and
- **before every offset commit**: ``install`` wraps the Faust producer's
  ``flush``, which Faust awaits right before it commits offsets. An offset is
  committed only after its message was processed, so its outputs were
  buffered here and are sent and acknowledged first: at-least-once holds.
  Every batch handed over is checked there, including those a timer sent
  earlier: aiokafka's own flush waits for them but ignores a failed delivery,
  and a commit after a lost changelog record would lose a transition.

A batch the producer refuses (``send_batch`` raised, or the sending task was
cancelled) stays buffered with those not handed over yet: the next send tries
them again, and a commit goes ahead only once they are acknowledged. A failed
delivery is remembered: every later flush raises it, so no later commit
passes over the records it lost.

The records go through the same aiokafka producer as Faust's own (acks=all).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka.partitioner import murmur2

SEND_AT_RECORDS = 2000
SEND_AFTER_S = 0.05
#: Keys whose partition is remembered per topic (murmur2 is pure Python, about
#: 1.5 us a key; the hot path's records are keyed by store, so few keys repeat).
PARTITION_CACHE_KEYS = 65536


class Outputs:
    def __init__(self, app: Any) -> None:
        self.app = app
        self._open: dict[tuple[str, int], Any] = {}
        self._full: list[tuple[str, int, Any]] = []
        self._count = 0
        self._since = time.monotonic()
        self._partitions: dict[str, int] = {}
        self._partition_of: dict[tuple[str, bytes], int] = {}
        self._lock = asyncio.Lock()
        # Delivery futures of batches handed over and not yet checked: a failed
        # delivery must stop the next commit, whoever handed the batch over.
        self._in_flight: list[asyncio.Future[Any]] = []
        # The first delivery that failed: the records it held are lost, no commit may pass it.
        self._failure: BaseException | None = None

    @property
    def _producer(self) -> Any:
        # Faust's aiokafka producer (faust/transport/drivers/aiokafka.py).
        return self.app.producer._ensure_producer()

    def partition_for(self, topic: str, key: bytes) -> int:
        """Kafka's default partitioner (murmur2), as every producer of the contract uses."""
        slot = (topic, key)
        partition = self._partition_of.get(slot)
        if partition is not None:
            return partition
        count = self._partitions.get(topic)
        if count is None:
            found = self._producer.client.cluster.partitions_for_topic(topic)
            if not found:
                raise LookupError(f"no metadata for topic {topic}")
            count = self._partitions[topic] = len(found)
        partition = (murmur2(key) & 0x7FFFFFFF) % count
        if len(self._partition_of) >= PARTITION_CACHE_KEYS:
            self._partition_of.clear()
        self._partition_of[slot] = partition
        return partition

    def add(self, topic: str, partition: int | None, key: bytes, value: bytes | None) -> None:
        if partition is None:
            partition = self.partition_for(topic, key)
        slot = (topic, partition)
        batch = self._open.get(slot)
        if batch is None:
            batch = self._open[slot] = self._producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:
            # Full: queue it and start another.
            self._full.append((topic, partition, batch))
            batch = self._open[slot] = self._producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"record of {len(value or b'')} bytes does not fit a batch of {topic}")
        if self._count == 0:
            self._since = time.monotonic()
        self._count += 1

    @property
    def pending(self) -> int:
        return self._count

    def due(self) -> bool:
        return self._count >= SEND_AT_RECORDS or (
            self._count > 0 and time.monotonic() - self._since >= SEND_AFTER_S
        )

    async def send(self, wait: bool = False) -> None:
        """Hand every buffered batch to the producer; with ``wait``, until acknowledged."""
        async with self._lock:
            batches = self._full + [(t, p, b) for (t, p), b in self._open.items()]
            count, since = self._count, self._since
            self._full, self._open, self._count = [], {}, 0
            futures = []
            handed = 0
            producer = self._producer
            try:
                for topic, partition, batch in batches:
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    handed += 1
            except BaseException:
                # Keep what was not handed over (records added meanwhile after it).
                self._full = batches[handed:] + self._full
                self._count += count
                self._since = since
                raise
            finally:
                self._in_flight = [f for f in self._in_flight if not f.done() or f.cancelled() or f.exception()]
                self._in_flight.extend(futures)
        if wait:
            await self.delivered()

    async def delivered(self) -> None:
        """Wait until every batch handed over is acknowledged; raise if any delivery failed.

        The batches stay known until they are acknowledged: a flush cancelled
        while it waits leaves them to the next one.
        """
        if self._failure is None and self._in_flight:
            in_flight = list(self._in_flight)
            await asyncio.wait(in_flight)  # unlike gather, never cancels them
            for future in in_flight:
                failure = asyncio.CancelledError() if future.cancelled() else future.exception()
                if failure is not None and self._failure is None:
                    self._failure = failure
            done = set(in_flight)
            self._in_flight = [f for f in self._in_flight if f not in done]
        if self._failure is not None:
            raise self._failure

    async def maybe_send(self) -> None:
        if self.due():
            await self.send()


def install(app: Any, outputs: Outputs) -> None:
    """Send (and await) the buffered outputs before Faust flushes and commits."""
    producer = app.producer
    faust_flush = producer.flush

    async def flush() -> None:
        await outputs.send(wait=True)
        await faust_flush()

    producer.flush = flush
