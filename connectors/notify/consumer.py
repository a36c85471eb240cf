"""The notifier: a plain aiokafka consumer of ``notifications``, ``alerts`` and ``store.settings``.

- ``notifications``: each one delivered by e-mail at most once (sender.py);
- ``alerts``: kept for the store's digest (digest.py); a periodic task sends
  the digests whose window has closed, every ``OPS_DIGEST_INTERVAL_S``;
- ``store.settings``: the stores' e-mail targets (admin recipients).

Offsets are committed by hand after each batch, up to the last record handled,
so a crash replays the tail of a batch: harmless, since every handler is
idempotent (a delivered notification is ALREADY, an alert record is kept once,
settings keep the newest). A record that cannot be decoded, or that the
database refuses as data, is logged, counted and published to ``deadletter``,
then skipped. A failure that may pass (the SMTP server or the database
unreachable) is retried with a growing pause, the batch uncommitted, until it
passes or the notifier is stopped; but a notification whose recipients the
server itself defers (4xx to RCPT: a full mailbox) goes to ``deadletter``
after ``DEFERRED_TRIES`` tries, with the reply, so that one store's mailbox
does not hold up every other notification (nothing was claimed: replay it).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from prometheus_client import Counter
from pydantic import ValidationError

from connectors.consumers import backoff, commit, group_consumer, pause
from connectors.notify.digest import record_alert, record_store_settings, send_due_digests
from connectors.notify.sender import NotificationSender, TransientDeliveryError
from connectors.notify.settings import NotifySettings
from models.archive import FROM_ORDERS_RECORD
from models.events import Alert, DeadLetter, DeadLetterReason, StoreSettings, utcnow
from models.orders import Notification, NotificationKind
from streams import topics
from streams.codecs import encode
from streams.settings import Settings

log = logging.getLogger(__name__)

TOPICS = (topics.NOTIFICATIONS, topics.ALERTS, topics.STORE_SETTINGS)
MODELS: dict[str, type[Any]] = {
    topics.NOTIFICATIONS: Notification,
    topics.ALERTS: Alert,
    topics.STORE_SETTINGS: StoreSettings,
}

INVALID = Counter(
    "ops_notifier_invalid_records_total",
    "Records the notifier refused (and skipped), by topic and reason",
    ["topic", "reason"],
)
#: Failures that may pass: retried, never skipped.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientDeliveryError,
    OSError,  # connection refused or reset, timeouts
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
)
MAX_BACKOFF_S = 60.0
#: Tries of a notification whose recipients the SMTP server defers, before it goes to deadletter.
DEFERRED_TRIES = 5


class RecordHandler:
    """What the notifier does with one record (no Kafka here: testable alone)."""

    def __init__(self, pool: Any, sender: NotificationSender, notify_settings: NotifySettings, producer: Any = None):
        self.pool = pool
        self.sender = sender
        self.settings = notify_settings
        self.producer = producer  # for deadletter; None: log only
        self.invalid = 0

    async def handle(self, record: Any) -> str:
        """Handle one consumed record; return what became of it (for logs and tests).

        Raises one of ``TRANSIENT_ERRORS`` when it should be tried again.
        """
        if record.value is None:
            return "TOMBSTONE"  # a compacted topic's delete: nothing to do
        model = MODELS.get(record.topic)
        if model is None:
            await self._refuse(record, DeadLetterReason.UNKNOWN_TOPIC, f"topic {record.topic!r} is not the notifier's")
            return "INVALID"
        try:
            event = model.model_validate_json(record.value)
        except ValidationError as exc:
            json_broken = any(e["type"] == "json_invalid" for e in exc.errors())
            reason = DeadLetterReason.INVALID_JSON if json_broken else DeadLetterReason.SCHEMA_VIOLATION
            detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(value)'}: {e['msg']}" for e in exc.errors()[:5])
            await self._refuse(record, reason, detail)
            return "INVALID"
        try:
            if isinstance(event, Notification):
                if event.kind is NotificationKind.ADMIN_REDACTED and event.order_id:
                    # Our own records first: the notice is sent only once they hold no address.
                    await self.sender.redact_order(event.order_id)
                if event.data.get("record") == FROM_ORDERS_RECORD and event.order_id:
                    # An archived order's data request: its customer's data is in PostgreSQL's row.
                    event = await self.sender.complete_from_record(event)
                return await self.sender.deliver(event)
            if isinstance(event, Alert):
                kept = await record_alert(
                    self.pool, event, self.settings.digest_window_s, max_age_s=self.settings.digest_max_age_s
                )
                return "RECORDED" if kept else "IGNORED"
            applied = await record_store_settings(self.pool, event)
            return "APPLIED" if applied else "STALE"
        except TRANSIENT_ERRORS:
            raise
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
            # The database refuses this record's data (a NUL in a string, ...): retrying cannot help.
            await self._refuse(record, DeadLetterReason.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}")
            return "INVALID"
        except asyncpg.PostgresError:
            raise  # the schema missing, permissions, ...: retried until the operator fixes it
        except Exception as exc:
            # A bug on this record: refused rather than stopping every notification behind it.
            log.exception("%s[%s]@%s: handling failed", record.topic, record.partition, record.offset)
            await self._refuse(record, DeadLetterReason.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}")
            return "INVALID"

    async def defer(self, record: Any, exc: TransientDeliveryError) -> None:
        """A notification whose recipients the SMTP server keeps deferring: to deadletter
        (nothing is claimed, so ``ops-engine deadletter replay`` sends it)."""
        detail = f"recipients deferred by the SMTP server {DEFERRED_TRIES} times: {exc}; replay it once they take mail"
        await self._refuse(record, DeadLetterReason.PROCESSING_ERROR, detail)

    async def _refuse(self, record: Any, reason: DeadLetterReason, detail: str) -> None:
        self.invalid += 1
        INVALID.labels(record.topic, reason.value).inc()
        log.warning("refused %s[%s]@%s: %s %s", record.topic, record.partition, record.offset, reason.value, detail)
        if self.producer is None:
            return
        letter = DeadLetter.of(record, reason, detail)
        try:
            await self.producer.send_and_wait(topics.DEADLETTER, key=record.topic.encode(), value=encode(letter))
        except KafkaError:
            log.exception("could not publish the refused record to %s", topics.DEADLETTER)


async def handle_until_done(
    handler: RecordHandler, record: Any, stop: asyncio.Event, first_wait: float = 1.0
) -> bool:
    """Handle ``record``, retrying what may pass; False if stopped before it was done
    (``first_wait``: the first pause, doubled after each failure)."""
    wait: float | None = first_wait
    deferred = 0
    while wait is not None:
        try:
            await handler.handle(record)
            return True
        except TRANSIENT_ERRORS as exc:
            if isinstance(exc, TransientDeliveryError) and exc.recipients_deferred:
                # The server works; these recipients do not take mail (a full mailbox): the
                # notifications behind this one must not wait for them.
                deferred += 1
                if deferred >= DEFERRED_TRIES:
                    await handler.defer(record, exc)
                    return True
            log.warning("%s[%s]@%s: %s; again in %.0f s", record.topic, record.partition, record.offset, exc, wait)
        except asyncpg.PostgresError as exc:  # the schema missing, permissions, ...: wait for the operator
            log.error("%s[%s]@%s: database error %s; again in %.0f s", record.topic, record.partition, record.offset,
                      exc, wait)
        wait = await backoff(stop, wait, MAX_BACKOFF_S)
    return False


async def digest_loop(pool: Any, sender: NotificationSender, notify: NotifySettings, stop: asyncio.Event) -> None:
    """Send the due digests every ``digest_interval_s`` until ``stop``."""
    while not stop.is_set():
        try:
            sent = await send_due_digests(
                pool, sender, utcnow(), notify.digest_window_s, max_age_s=notify.digest_max_age_s
            )
            if sent:
                log.info("sent %d alert digest(s)", sent)
        except Exception:
            log.exception("sending the due digests failed; again in %s s", notify.digest_interval_s)
        await pause(stop, notify.digest_interval_s)


async def run_notifier(settings: Settings, notify_settings: NotifySettings, stop: asyncio.Event) -> None:
    """Consume until ``stop`` is set; needs ``settings.database_url`` (migrated)."""
    from connectors.postgres.pool import create_pool

    if not settings.database_url:
        raise ValueError("the notifier needs OPS_DATABASE_URL")
    pool = await create_pool(settings.database_url)
    consumer = group_consumer(settings, "notifier", *TOPICS)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all")
    sender = NotificationSender(pool, notify_settings)
    handler = RecordHandler(pool, sender, notify_settings, producer)
    digests: asyncio.Task[None] | None = None
    try:
        await producer.start()
        await consumer.start()
        digests = asyncio.create_task(digest_loop(pool, sender, notify_settings, stop))
        log.info("notifier consuming %s as group %s-notifier", ", ".join(TOPICS), settings.app_id)
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=1000, max_records=200)
            done: dict[TopicPartition, OffsetAndMetadata] = {}
            for tp, records in batches.items():
                for record in records:
                    if not await handle_until_done(handler, record, stop):
                        break  # stopped: this record and the rest of the batch are not committed
                    done[tp] = OffsetAndMetadata(record.offset + 1, "")
                if stop.is_set():
                    break
            await commit(consumer, done)
    finally:
        stop.set()
        if digests is not None:
            await digests
        await consumer.stop()
        await producer.stop()
        await pool.close()
        log.info("notifier stopped (%d record(s) refused)", handler.invalid)
