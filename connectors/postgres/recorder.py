"""``ops-engine recorder``: the topics into PostgreSQL, in batches, offsets after the write.

One consumer group (``{app_id}-recorder``) reads ``inventory.changes``,
``alerts``, the ``orders`` table's changelog and ``webhooks.inbound``. Each
``getmany`` batch becomes rows (``record.rows_of``) written in one
transaction (``record.write_rows``); only then are the batch's offsets
committed. So:

- a crash or a rebalance replays at most the uncommitted batch, and the
  upserts make the replay write nothing twice;
- PostgreSQL down (or any database error) means the batch is tried again
  with a growing pause (1 s .. 30 s), nothing is committed and nothing is
  skipped; the consumer keeps its group membership meanwhile (aiokafka
  heartbeats from its own task) and catches up when the database is back;
- a record that cannot be read goes to ``deadletter`` with the reason and
  the rest of the batch is written; so does a record whose values PostgreSQL
  refuses as data (a number beyond its column, a NUL character in a text):
  the batch is then written record by record, each in its own transaction,
  and the refused one is dead-lettered instead of tried again forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import Counter, Histogram

from connectors.consumers import backoff, commit, group_consumer
from connectors.postgres.record import Row, Unrecordable, recorded_topics, rows_of, write_rows
from models.events import DeadLetter, DeadLetterReason
from streams import topics
from streams.codecs import encode
from streams.settings import Settings

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
BATCH_RECORDS = 2000

ROWS = Counter("ops_record_rows_total", "Rows the recorder upserted into PostgreSQL, by table", ["table"])
REFUSED = Counter("ops_record_refused_total", "Records the recorder could not read (sent to deadletter)")
RETRIES = Counter("ops_record_write_retries_total", "Batch writes that failed and were tried again")
BATCH_SECONDS = Histogram(
    "ops_record_batch_seconds", "Time to write one batch into PostgreSQL",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

#: Database errors that a later attempt may get past: the server down or restarting, a timeout.
_RETRYABLE = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError)
#: A record's values refused as data (by the server, or by asyncpg encoding them: COPY raises
#: OverflowError for an integer beyond its column): the same record fails the same way again.
_REFUSED = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, OverflowError)


class Recorder:
    def __init__(self, pool: Any, producer: Any) -> None:
        self.pool = pool
        self.producer = producer

    async def rows(self, records: list[Any]) -> list[tuple[Any, list[Row]]]:
        """Each readable record with its rows; what cannot be read goes to deadletter."""
        out: list[tuple[Any, list[Row]]] = []
        for record in records:
            try:
                out.append((record, rows_of(record.topic, record.value)))
            except Unrecordable as exc:
                await self._refuse(record, str(exc))
        return out

    async def record(self, records: list[Any], stop: asyncio.Event) -> bool:
        """Write the rows of ``records`` (one transaction); False if stopped first. A record
        whose values the database refuses goes to deadletter, the others are written."""
        readable = await self.rows(records)
        try:
            return await self.write_until_done([row for _, rows in readable for row in rows], stop)
        except _REFUSED as exc:
            log.warning("a batch of %d record(s) refused (%s: %s); writing it record by record",
                        len(readable), type(exc).__name__, exc)
        for record, rows in readable:  # in record order, each in its own transaction
            try:
                if not await self.write_until_done(rows, stop):
                    return False
            except _REFUSED as exc:
                await self._refuse(record, f"refused by PostgreSQL: {type(exc).__name__}: {exc}")
        return True

    async def write_until_done(self, rows: list[Row], stop: asyncio.Event) -> bool:
        """Write ``rows``, trying again while the database fails; False if stopped first.
        Raises what ``_REFUSED`` names: trying the same rows again cannot help."""
        wait: float | None = 1.0
        while wait is not None:
            started = time.monotonic()
            try:
                written = await write_rows(self.pool, rows)
            except _REFUSED:
                raise
            except _RETRYABLE as exc:
                RETRIES.inc()
                log.warning("writing %d row(s) failed (%s: %s); again in %.0f s",
                            len(rows), type(exc).__name__, exc, wait)
            else:
                BATCH_SECONDS.observe(time.monotonic() - started)
                for table, n in written.rows.items():
                    ROWS.labels(table).inc(n)
                return True
            wait = await backoff(stop, wait, MAX_BACKOFF_S)
        return False

    async def _refuse(self, record: Any, detail: str) -> None:
        REFUSED.inc()
        log.warning("%s[%s]@%s not recorded: %s", record.topic, record.partition, record.offset, detail[:300])
        letter = DeadLetter.of(record, DeadLetterReason.SCHEMA_VIOLATION, detail)
        await self.producer.send_and_wait(topics.DEADLETTER, key=record.topic.encode(), value=encode(letter))


async def run_recorder(settings: Settings, stop: asyncio.Event) -> None:
    """Record until ``stop`` is set; needs ``settings.database_url`` (migrated)."""
    from connectors.postgres.pool import create_pool

    if not settings.database_url:
        raise ValueError("the recorder needs OPS_DATABASE_URL")
    pool = await create_pool(settings.database_url, command_timeout=60.0)
    wanted = recorded_topics(settings.app_id)
    # A batch may wait long for the database: stay in the group meanwhile.
    consumer = group_consumer(settings, "recorder", *wanted, max_poll_interval_ms=3_600_000)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all")
    recorder = Recorder(pool, producer)
    try:
        await producer.start()
        await consumer.start()
        log.info("recorder consuming %s as group %s-recorder", ", ".join(wanted), settings.app_id)
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=1000, max_records=BATCH_RECORDS)
            if not batches:
                continue
            records = [r for tp in sorted(batches, key=lambda t: (t.topic, t.partition)) for r in batches[tp]]
            if not await recorder.record(records, stop):
                break  # stopped before the write: nothing of this batch is committed
            await commit(consumer, {tp: OffsetAndMetadata(rs[-1].offset + 1, "") for tp, rs in batches.items() if rs})
    finally:
        stop.set()
        await consumer.stop()
        await producer.stop()
        await pool.close()
        log.info("recorder stopped")


__all__ = ["Recorder", "run_recorder"]
