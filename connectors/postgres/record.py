"""The PostgreSQL record: what each topic's record becomes in the database.

``rows_of(topic, value)`` maps one consumed record to rows (pure; raises
``Unrecordable`` with the reason when the value cannot be read), and
``write_rows`` writes a batch of them in one transaction, one
``executemany`` per statement (products: COPY into a staging table and one
set-based upsert from it, once a batch has enough of them). Every statement is an idempotent upsert on
the row's natural key (migration 005), so replaying records writes nothing
twice:

- ``inventory.changes`` -> ``products``: the change's ``after`` state,
  unless the row holds a later snapshot;
- ``alerts`` -> ``alerts``: the record with the newest ``updated_at`` wins, and of
  equal times the later status in the lifecycle (``models.alerts.supersedes``);
- the ``orders`` table's changelog -> ``orders`` (newest ``updated_at`` wins)
  and ``order_history`` (append-only, by place; ``DO NOTHING``); an archive
  marker (models/archive.py) writes nothing, the rows keep the order;
- ``webhooks.inbound`` -> ``processed_webhook_events`` (ids and times only,
  never the body);
- ``sync.runs`` -> ``sync_logs`` (migration 007): one row per run; a record
  with more pages done wins while the run is RUNNING, and an ended run is
  final (a run ends once);
- ``video.status`` -> ``video_assets`` (migration 007): one row per video;
  the record latest by (attempt, stage, progress, occurred_at) wins: the job
  machine's own order within an attempt (QUEUED, PROCESSING with its progress
  rising, then final), whatever the clocks that stamped the records (the
  request's producer, the renderer, the worker).

A "newer wins" upsert compares strictly where it can (sync_logs,
video_assets), so a replayed record does not even rewrite its row.

Only parameterised SQL; identifiers are fixed here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from models.alerts import ALERT_STATUS_RANK
from models.events import Alert, InventoryChange
from models.fulfillment import OrderState, redacted_customer
from models.sync import SyncRun
from models.video import FINAL, VideoStatus, VideoStatusRecord
from models.webhooks import InboundWebhook
from streams import tables, topics


class Unrecordable(ValueError):
    """A record whose value cannot be read: refused to ``deadletter`` with this reason."""


def changelog_topic(app_id: str, table: str) -> str:
    """Faust's name for a table's changelog topic."""
    return f"{app_id}-{table}-changelog"


_PRODUCT = """
INSERT INTO products (store_id, product_id, variant_id, provider, source_id, status, available, stock,
  cost_price, shipping_cost, currency, selling_price, compare_at_price, captured_at, last_change_id, sync_run_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
ON CONFLICT (store_id, product_id, variant_id) DO UPDATE SET
  provider = EXCLUDED.provider, source_id = EXCLUDED.source_id, status = EXCLUDED.status,
  available = EXCLUDED.available, stock = EXCLUDED.stock, cost_price = EXCLUDED.cost_price,
  shipping_cost = EXCLUDED.shipping_cost, currency = EXCLUDED.currency, selling_price = EXCLUDED.selling_price,
  compare_at_price = EXCLUDED.compare_at_price, captured_at = EXCLUDED.captured_at,
  last_change_id = EXCLUDED.last_change_id, sync_run_id = EXCLUDED.sync_run_id, recorded_at = now()
WHERE products.captured_at <= EXCLUDED.captured_at
"""
def _rank(status: str) -> str:
    """An alert status's step in its lifecycle (``models.alerts.ALERT_STATUS_RANK``), in SQL."""
    steps = " ".join(f"WHEN '{name}' THEN {rank}" for name, rank in ALERT_STATUS_RANK.items())
    return f"CASE {status} {steps} END"


_ALERT = f"""
INSERT INTO alerts (alert_id, store_id, product_id, variant_id, type, severity, status, title, message, metadata,
  created_at, updated_at, acknowledged_at, resolved_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12, $13, $14)
ON CONFLICT (alert_id) DO UPDATE SET
  status = EXCLUDED.status, severity = EXCLUDED.severity, title = EXCLUDED.title, message = EXCLUDED.message,
  metadata = EXCLUDED.metadata, updated_at = EXCLUDED.updated_at, acknowledged_at = EXCLUDED.acknowledged_at,
  resolved_at = EXCLUDED.resolved_at
WHERE (EXCLUDED.updated_at, {_rank("EXCLUDED.status")}) > (alerts.updated_at, {_rank("alerts.status")})
"""
_ORDER = """
INSERT INTO orders (order_id, store_id, status, order_number, paid, currency, total, redacted, created_at,
  updated_at, state)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb)
ON CONFLICT (order_id) DO UPDATE SET
  store_id = EXCLUDED.store_id, status = EXCLUDED.status, order_number = EXCLUDED.order_number,
  paid = EXCLUDED.paid, currency = EXCLUDED.currency, total = EXCLUDED.total, redacted = EXCLUDED.redacted,
  created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, state = EXCLUDED.state
WHERE orders.updated_at <= EXCLUDED.updated_at
"""
def _redaction_json() -> tuple[str, str]:
    customer, address = redacted_customer()
    dump = {"mode": "json", "by_alias": True}
    return orjson.dumps(customer.model_dump(**dump)).decode(), orjson.dumps(address("ZZ").model_dump(**dump)).decode()


_REDACTED_CUSTOMER, _REDACTED_ADDRESS = _redaction_json()
# The redaction of an archived order's row: what the order machine's redaction
# leaves (models.fulfillment.redacted_customer: no customer, the address's
# country), written into the row's state as the machine's own state would be.
_REDACT_ORDER = """
UPDATE orders SET redacted = true,
  state = jsonb_set(
    jsonb_set(state, '{customer}', $2::jsonb),
    '{shipping_address}',
    CASE WHEN jsonb_typeof(state->'shipping_address') = 'object'
      THEN jsonb_set($3::jsonb, '{country_code}', state->'shipping_address'->'country_code')
      ELSE 'null'::jsonb END
  ) || '{"redacted": true}'::jsonb
WHERE order_id = $1 AND NOT redacted
"""
_HISTORY = """
INSERT INTO order_history (order_id, seq, at, event_id, event, from_status, to_status, note)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (order_id, seq) DO NOTHING
"""
_WEBHOOK = """
INSERT INTO processed_webhook_events (dedup_key, source, provider, topic, shop_domain, delivery_id, received_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (dedup_key) DO NOTHING
"""

_SYNC_RUN = """
INSERT INTO sync_logs (run_id, request_id, store_id, kind, status, started_at, completed_at, total, processed,
  changed, failed, pages, pages_done, error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (run_id) DO UPDATE SET
  status = EXCLUDED.status, completed_at = EXCLUDED.completed_at, total = EXCLUDED.total,
  processed = EXCLUDED.processed, changed = EXCLUDED.changed, failed = EXCLUDED.failed, pages = EXCLUDED.pages,
  pages_done = EXCLUDED.pages_done, error = EXCLUDED.error, recorded_at = now()
WHERE sync_logs.completed_at IS NULL
  AND (EXCLUDED.completed_at IS NOT NULL OR EXCLUDED.pages_done > sync_logs.pages_done)
"""
_VIDEO = """
INSERT INTO video_assets (video_id, store_id, product_id, status, attempt, stage, progress, retrying, failure_reason,
  video_url, thumbnail_url, duration_s, width, height, format, has_audio, last_event_id, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
ON CONFLICT (video_id) DO UPDATE SET
  store_id = EXCLUDED.store_id, product_id = EXCLUDED.product_id, status = EXCLUDED.status,
  attempt = EXCLUDED.attempt, stage = EXCLUDED.stage, progress = EXCLUDED.progress, retrying = EXCLUDED.retrying,
  failure_reason = EXCLUDED.failure_reason, video_url = EXCLUDED.video_url, thumbnail_url = EXCLUDED.thumbnail_url,
  duration_s = EXCLUDED.duration_s, width = EXCLUDED.width, height = EXCLUDED.height, format = EXCLUDED.format,
  has_audio = EXCLUDED.has_audio, last_event_id = EXCLUDED.last_event_id, updated_at = EXCLUDED.updated_at,
  recorded_at = now()
WHERE (EXCLUDED.attempt, EXCLUDED.stage, EXCLUDED.progress, EXCLUDED.updated_at)
  > (video_assets.attempt, video_assets.stage, video_assets.progress, video_assets.updated_at)
"""

#: The database table each statement writes (for the metrics), in the order a batch writes them.
STATEMENTS: dict[str, str] = {
    _PRODUCT: "products",
    _ALERT: "alerts",
    _ORDER: "orders",
    _REDACT_ORDER: "orders",  # after the upsert: a batch with both ends redacted
    _HISTORY: "order_history",
    _WEBHOOK: "processed_webhook_events",
    _SYNC_RUN: "sync_logs",
    _VIDEO: "video_assets",
}

Row = tuple[str, tuple[Any, ...]]  # (statement, arguments)


def recorded_topics(app_id: str) -> tuple[str, ...]:
    return (
        topics.INVENTORY_CHANGES,
        topics.ALERTS,
        changelog_topic(app_id, tables.ORDERS),
        topics.WEBHOOKS_INBOUND,
        topics.SYNC_RUNS,
        topics.VIDEO_STATUS,
    )


def _validate(model: Any, value: bytes) -> Any:
    try:
        return model.model_validate_json(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise Unrecordable(f"{'.'.join(str(p) for p in error['loc']) or '(value)'}: {error['msg']}") from None


def rows_of(topic: str, value: bytes | None) -> list[Row]:
    """The rows one record of ``topic`` becomes (a tombstone: none)."""
    if value is None:
        return []
    if topic == topics.INVENTORY_CHANGES:
        change: InventoryChange = _validate(InventoryChange, value)
        after = change.after
        return [(_PRODUCT, (
            change.store_id, change.product_id, change.variant_id or "", change.provider, change.source_id,
            after.status.value, after.available, after.stock, after.cost_price, after.shipping_cost, after.currency,
            after.selling_price, after.compare_at_price, change.captured_at, change.change_id, change.sync_run_id,
        ))]
    if topic == topics.ALERTS:
        alert: Alert = _validate(Alert, value)
        return [(_ALERT, (
            alert.alert_id, alert.store_id, alert.product_id, alert.variant_id, alert.type.value,
            alert.severity.value, alert.status.value, alert.title, alert.message,
            orjson.dumps(alert.metadata).decode(), alert.created_at, alert.updated_at, alert.acknowledged_at,
            alert.resolved_at,
        ))]
    if topic == topics.WEBHOOKS_INBOUND:
        hook: InboundWebhook = _validate(InboundWebhook, value)
        return [(_WEBHOOK, (
            hook.dedup_key, hook.source.value, hook.provider, hook.topic, hook.shop_domain, hook.delivery_id,
            hook.received_at,
        ))]
    if topic == topics.SYNC_RUNS:
        run: SyncRun = _validate(SyncRun, value)
        return [(_SYNC_RUN, (
            run.run_id, run.request_id, run.store_id, run.tier.value, run.status.value, run.started_at,
            run.finished_at, run.total, run.done, run.changed, run.failed, run.pages, len(run.pages_done), run.error,
        ))]
    if topic == topics.VIDEO_STATUS:
        return [_video_row(_validate(VideoStatusRecord, value))]
    if topic.endswith(f"-{tables.ORDERS}-changelog"):
        return _order_rows(value)
    raise Unrecordable(f"topic {topic!r} is not recorded")


def _video_stage(status: VideoStatus) -> int:
    """The step of an attempt a status is: QUEUED 0, PROCESSING 1, ended 2."""
    return 2 if status in FINAL else 1 if status is VideoStatus.PROCESSING else 0


def _video_row(record: VideoStatusRecord) -> Row:
    result = record.result
    return (_VIDEO, (
        record.video_id, record.store_id, record.product_id, record.status.value, record.attempt,
        _video_stage(record.status), record.progress, record.retrying,
        record.reason,
        result.video_url if result else None, result.thumbnail_url if result else None,
        result.duration if result else None, result.width if result else None, result.height if result else None,
        result.format if result else None, result.has_audio if result else None,
        record.event_id, record.occurred_at,
    ))


def _order_rows(value: bytes) -> list[Row]:
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise Unrecordable(f"not JSON: {exc}") from None
    if isinstance(body, dict) and body.get("archived") is True:
        # An archive marker (models/archive.py): the row keeps the order as it was,
        # but for a redaction, which must reach it however old the order.
        if body.get("redacted") is True and isinstance(body.get("order_id"), str):
            return [(_REDACT_ORDER, (body["order_id"], _REDACTED_CUSTOMER, _REDACTED_ADDRESS))]
        return []
    if not isinstance(body, dict) or not isinstance(body.get("state"), dict):
        raise Unrecordable("an orders changelog record without a state")
    try:
        state = OrderState.model_validate(body["state"])
    except ValidationError as exc:
        raise Unrecordable(f"state: {exc.errors()[0]['msg']}") from None
    if not state.created:  # events that came before their order: nothing to record yet
        return []
    view = state.model_dump(mode="json", by_alias=True, exclude={"seen", "parked"})
    rows: list[Row] = [(_ORDER, (
        state.order_id, state.store_id, state.status.value, state.order_number, state.paid, state.currency,
        state.total, state.redacted, state.created_at, state.updated_at, orjson.dumps(view).decode(),
    ))]
    for seq, line in enumerate(state.history):
        rows.append((_HISTORY, (
            state.order_id, seq, line.at, line.event_id, line.event,
            line.from_status.value if line.from_status else None,
            line.to_status.value if line.to_status else None, line.note,
        )))
    return rows


@dataclass
class Written:
    rows: dict[str, int]  # database table -> rows sent (an upsert that changed nothing counts too)


#: Rows of one statement in a batch from which ``write_rows`` uses COPY instead of executemany.
COPY_MIN_ROWS = 50


@dataclass(frozen=True)
class CopyUpsert:
    """The set-based form of an upsert: COPY into a staging table, then one
    ``INSERT .. SELECT .. ON CONFLICT`` from it, with the same result as
    ``executemany`` of the row statement (three round trips and one statement
    for the server instead of one per row: for 100,000 alerts of a sync, about
    a third of the database's CPU)."""

    table: str
    columns: tuple[str, ...]
    #: Leading columns that are the natural key.
    key_columns: int
    #: The column whose greatest value wins among a batch's rows of one key (of equal values, the later row).
    newest: str
    #: What follows ``ON CONFLICT (key) DO`` in the row statement.
    on_conflict: str
    #: A column ranked second (by ``rank``) when ``newest`` ties, as the row statement ranks it.
    then: str | None = None
    rank: dict[str, int] | None = None

    @property
    def stage(self) -> str:
        """A temporary table per connection, emptied at each commit."""
        return (f"CREATE TEMP TABLE IF NOT EXISTS record_{self.table}_in "
                f"(LIKE {self.table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")

    @property
    def from_stage(self) -> str:
        """The upsert from the staging table, in key order (concurrent recorders lock rows alike)."""
        columns = ", ".join(self.columns)
        key = ", ".join(self.columns[: self.key_columns])
        return (f"INSERT INTO {self.table} ({columns})\n"
                f"SELECT {columns} FROM record_{self.table}_in ORDER BY {key}\n"
                f"ON CONFLICT ({key}) DO {self.on_conflict}")

    def latest_per_key(self, batch: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """One row per key: the one applying ``batch`` in order with the row statement would
        leave. One INSERT .. ON CONFLICT may touch a row only once."""
        width = self.key_columns
        newest = self.columns.index(self.newest)
        then = None if self.then is None else self.columns.index(self.then)
        rank = self.rank or {}

        def order(row: tuple[Any, ...]) -> tuple[Any, int]:
            return row[newest], (0 if then is None else rank[row[then]])

        kept: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for row in batch:
            key = row[:width]
            held = kept.get(key)
            if held is None or order(held) <= order(row):
                kept[key] = row
        return list(kept.values())

    async def write(self, conn: Any, batch: list[tuple[Any, ...]]) -> None:
        await conn.execute(self.stage)
        await conn.copy_records_to_table(f"record_{self.table}_in", records=self.latest_per_key(batch),
                                         columns=self.columns)
        await conn.execute(self.from_stage)


def _on_conflict(statement: str) -> str:
    """The ``UPDATE SET .. WHERE ..`` of a row statement: the copied form decides as it does."""
    return statement.split(") DO ", 1)[1].strip()


COPIED: dict[str, CopyUpsert] = {
    _PRODUCT: CopyUpsert(
        "products",
        ("store_id", "product_id", "variant_id", "provider", "source_id", "status", "available", "stock",
         "cost_price", "shipping_cost", "currency", "selling_price", "compare_at_price", "captured_at",
         "last_change_id", "sync_run_id"),
        key_columns=3, newest="captured_at", on_conflict=_on_conflict(_PRODUCT),
    ),
    _ALERT: CopyUpsert(
        "alerts",
        ("alert_id", "store_id", "product_id", "variant_id", "type", "severity", "status", "title", "message",
         "metadata", "created_at", "updated_at", "acknowledged_at", "resolved_at"),
        key_columns=1, newest="updated_at", then="status", rank=ALERT_STATUS_RANK, on_conflict=_on_conflict(_ALERT),
    ),
}


async def write_rows(pool: Any, rows: Iterable[Row]) -> Written:
    """Write ``rows`` in one transaction, one executemany per statement, in record order per
    statement; products and alerts by COPY when there are ``COPY_MIN_ROWS`` or more (the same result)."""
    by_statement: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for statement, args in rows:
        by_statement[statement].append(args)
    counts: dict[str, int] = {}
    if not by_statement:
        return Written(counts)
    async with pool.acquire() as conn, conn.transaction():
        for statement in STATEMENTS:  # a fixed order: concurrent recorders lock rows alike
            batch = by_statement.get(statement)
            if batch:
                copied = COPIED.get(statement)
                if copied is not None and len(batch) >= COPY_MIN_ROWS:
                    await copied.write(conn, batch)
                else:
                    await conn.executemany(statement, batch)
                counts[STATEMENTS[statement]] = counts.get(STATEMENTS[statement], 0) + len(batch)
    return Written(counts)
