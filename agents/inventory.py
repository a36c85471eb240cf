"""The inventory agent: thin wiring from the store-keyed topics to the pure diff.

One agent consumes ``supplier.snapshots``, ``store.settings``,
``inventory.commands``, ``sync.requests`` and ``sync.progress`` (all keyed by
``store_id``, co-partitioned; the sync topics are handed to agents/sync.py), so every
write to a store's table entries happens on that store's partition, inside
stream iteration, in the order the store's messages arrived. For each message:
decode (pydantic), call ``models.inventory``, write the tables, send the
results. Anything that cannot be decoded goes to ``deadletter`` with its
reason, and the agent goes on.

At-least-once, with nothing lost: a transition's outputs (change record,
alert records) travel inside the product's changelog record (an outbox), so
the state and its outputs become durable together, and inside every later
record of the product until they are known delivered (a newer record replaces
the older one at recovery, yet the outputs of one flush may land in any order).
Memory holds the plain state. Once Faust has committed the input offset (after flushing the
producer), the record is written again without the outbox. A worker that
recovers a record still carrying its outbox -- the crash came between -- sends
the outputs again (retrying in the background while the broker refuses them,
as long as the partition is its own: ``resend_recovered``); their ids are
deterministic, so a reader sees at worst a duplicate with the same id, never a
gap, and a resent alert never replaces a newer state of it in the alerts table.
Messages replayed after a crash find the state already applied (STALE) and
emit nothing twice.

A store with ``auto_video`` on asks for a product's video when the product is
first seen (a NEW change with images): the request (``video.requests``, with
an id made from the store and the product) rides in the same outbox, and the
video agent keeps the first request of an id.
"""

from __future__ import annotations

import base64
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import faust
import orjson
from pydantic import TypeAdapter, ValidationError

from connectors import metrics
from models import alerts as alert_rules
from models.events import (
    Alert,
    AlertCommand,
    AlertRecord,
    AlertStatus,
    ChangeReason,
    DeadLetter,
    DeadLetterReason,
    ProductCommand,
    ProductMapped,
    ProductResend,
    StoreAlertsResolve,
    StoreSettings,
    StorefrontStock,
    SupplierSnapshot,
    SupplierUpdate,
    default_settings,
)
from models.inventory import (
    Outcome,
    PageItem,
    SnapshotResult,
    apply_alert_status,
    apply_snapshot_encoded,
    apply_unchanged,
    check_storefront_stock,
    decode_page,
    item_product_key,
    republished_change,
    reprice,
    snapshot_of_update,
    validate_item,
)
from models.product import (
    OutboxItem,
    ProductState,
    decode_state,
    encode_state,
    has_outbox,
    product_key,
    split_outbox,
    split_product_key,
    state_fields,
    to_micros,
    with_outbox,
)
from agents.wiring import error_text, refusal, run_agent, sweep_timer
from models.video import auto_request_for
from streams import topics
from streams.app import Engine
from streams.codecs import encode
from streams.outbox import ResendRetry
from streams.tables import StoreKeys, entries

log = logging.getLogger(__name__)

#: How often closed alerts past OPS_ALERT_KEEP_DAYS leave the alerts table, s.
ALERT_PURGE_INTERVAL_S = 3600.0
#: Alert keys written between two gauge refreshes (every 5 s) remembered for the next
#: one; past this many the next refresh counts every alert again.
ALERT_WRITES_KEPT = 200_000

_PAGE = TypeAdapter(list[SupplierSnapshot])
T = TypeVar("T")
C = TypeVar("C", bound=ProductCommand)


def alert_key(store_id: str, alert_id: str) -> str:
    return f"{store_id}|{alert_id}"


def _active_type(raw: bytes) -> str | None:
    """An alert record's type while it is ACTIVE, else None (what the gauges count)."""
    doc = orjson.loads(raw)
    return doc["type"] if doc["status"] == AlertStatus.ACTIVE.value else None


class InventoryProcessor(ResendRetry):
    """Handles one consumed message at a time; owns no state but the tables'."""

    resend_what = "recovered transitions"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.products = engine.tables.products
        self.alerts = engine.tables.alerts
        self.settings = engine.tables.settings
        self.outputs = engine.outputs
        self._changelogs: dict[str, str] = {}
        # Parsed settings per store, checked against the raw table value, so a
        # store's settings are parsed once per change, not once per snapshot.
        self._settings_cache: dict[str, tuple[bytes, StoreSettings]] = {}
        self._results = {r: metrics.SNAPSHOTS.labels(r.value) for r in SnapshotResult}
        self._invalid = metrics.SNAPSHOTS.labels("INVALID")
        self._messages = {t: metrics.MESSAGES.labels(t) for t in topics.STORE_KEYED_INPUTS}
        self._change_records = metrics.Children(metrics.CHANGE_RECORDS)
        self._changes = metrics.Children(metrics.CHANGES)
        self._alerts_emitted = metrics.Children(metrics.ALERTS_EMITTED)
        # The message being handled: its input partition and offset.
        self._tp: Any = None
        self._offset = -1
        # Outboxes written but not yet known flushed: per input partition, in
        # offset order, and the newest per product key.
        self._pending: dict[Any, deque[tuple[int, str]]] = defaultdict(deque)
        self._latest_outbox: dict[str, tuple[Any, int]] = {}
        # Per input partition, per product key, every output its records carried
        # since its last plain record: outputs not known delivered. Each new record
        # of the key carries them all again, as it replaces the older ones (recovery
        # and compaction keep the newest record of a key only). A partition's
        # entries go when it is let go (``on_letting_go``): its records are the
        # next owner's, and stale outputs must not ride into records written
        # should it come back.
        self._unconfirmed: dict[int, dict[str, list[OutboxItem]]] = defaultdict(dict)
        # Recovered changelog records that still carry an outbox:
        # key -> (partition, record, outputs of older records of the key the record lacks).
        self.recovered_outboxes: dict[str, tuple[int, bytes, list[OutboxItem]]] = {}
        # Alert key -> (the value last read, its type while ACTIVE): refresh_gauges.
        self._alert_gauge: dict[str, tuple[bytes, str | None]] = {}
        # Alert table keys this agent wrote since the last gauge refresh, and what
        # that refresh counted: (active partitions, ACTIVE alerts by type in them).
        self._alerts_written: set[str] = set()
        self._alert_counts: tuple[frozenset[int], dict[str, int]] | None = None
        # store_id -> its partition (the gauges count the alerts of active partitions).
        self._store_partition: dict[str, int] = {}
        # Recovered outboxes being sent again, until acknowledged: key -> the
        # recovered entry (restored to ``recovered_outboxes`` if its partition is let go).
        self._resending: dict[str, tuple[int, bytes, list[OutboxItem]]] = {}
        self._init_resend_retry()
        # Input partitions this worker owns: assigned at a rebalance, dropped as
        # soon as a revocation or a stop begins (before Faust's last commit).
        self.owned: set[Any] = set()
        # The product keys of each store (sync requests, repricing, the product list view).
        self.store_keys = StoreKeys()
        # Sync requests and progress of the stores of these partitions (agents/sync.py).
        from agents.sync import SyncRuns

        self.sync = SyncRuns(engine, self)

    # ------------------------------------------------------------------ #
    # dispatch
    # ------------------------------------------------------------------ #

    def handle(self, event: faust.EventT) -> None:
        message = event.message
        topic = message.topic
        self._tp = message.tp
        self._offset = message.offset
        counter = self._messages.get(topic)
        if counter is not None:
            counter.inc()
        try:
            if topic == topics.SUPPLIER_SNAPSHOTS:
                self.on_snapshots(message)
            elif topic == topics.STORE_SETTINGS:
                self.on_settings(message)
            elif topic == topics.INVENTORY_COMMANDS:
                self.on_command(message)
            elif topic == topics.SYNC_REQUESTS:
                self.sync.on_request(message)
            elif topic == topics.SYNC_PROGRESS:
                self.sync.on_progress(message)
            else:  # pragma: no cover - the agent subscribes to these three only
                self.dead(message, DeadLetterReason.UNKNOWN_TOPIC, f"no handler for topic {topic}")
        except Exception as exc:  # one bad message must not stop the worker
            log.exception("failed to process %s[%s]@%s", topic, message.partition, message.offset)
            self.dead(message, DeadLetterReason.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}")

    def dead(
        self,
        message: Any,
        reason: DeadLetterReason,
        detail: str,
        item_index: int | None = None,
    ) -> None:
        key = message.key
        record = DeadLetter.model_construct(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=None if key is None else base64.b64encode(key).decode(),
            value=base64.b64encode(message.value or b"").decode(),
            reason=reason,
            detail=detail[:2000],
            item_index=item_index,
            refused_at=datetime.now(timezone.utc),
        )
        self.engine.deadletter.send_soon(key=message.topic.encode(), value=encode(record))
        metrics.DEADLETTERS.labels(reason.value).inc()
        if message.topic == topics.SUPPLIER_SNAPSHOTS:
            self._invalid.inc()
        log.warning(
            "deadletter %s[%s]@%s: %s %s",
            message.topic,
            message.partition,
            message.offset,
            reason.value,
            detail[:300].replace("\n", " "),
        )

    def decode(self, validate: Callable[[bytes], T], message: Any) -> T | None:
        """The message's value through ``validate`` (pydantic), or None after refusing it to deadletter."""
        try:
            return validate(message.value or b"")
        except ValidationError as exc:
            self.dead(message, *refusal(exc))
            return None

    # ------------------------------------------------------------------ #
    # supplier.snapshots
    # ------------------------------------------------------------------ #

    def _decode_snapshots(self, message: Any) -> list[tuple[int | None, Any]]:
        """The snapshot objects of a message msgspec refused (``decode_page``), for full validation:
        parsed by orjson, else pydantic's verdict on what is not a JSON object or array."""
        raw: bytes = message.value or b""
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        if type(parsed) is list:
            return list(enumerate(parsed))
        if type(parsed) is dict:
            return [(None, parsed)]
        if raw.lstrip()[:1] == b"[":
            page = self.decode(_PAGE.validate_json, message)
            return [] if page is None else list(enumerate(page))
        snap = self.decode(SupplierSnapshot.model_validate_json, message)
        return [] if snap is None else [(None, snap)]

    def on_snapshots(self, message: Any) -> None:
        items: list[tuple[int | None, Any]] | None = decode_page(message.value or b"")
        if items is None:  # refused by the page decoder: every object goes the full path
            items = self._decode_snapshots(message)
            if not items:
                return
        key = (message.key or b"").decode(errors="replace")
        settings = self.store_settings(key)  # a message holds one store's snapshots
        data = entries(self.products)
        newest_us = 0
        last_fast: bytes | None = None
        counts: dict[SnapshotResult, int] = {}
        for index, item in items:
            # Most snapshots repeat the state: decided on the decoded JSON
            # (models.inventory.apply_unchanged); the rest are validated in full.
            pkey = item_product_key(item) if type(item) is PageItem else None
            current = None if pkey is None or item.store_id != key else data.get(pkey)
            fast = None if current is None else apply_unchanged(current, item)
            if fast is not None:
                outcome, encoded = fast
                if encoded is not None:
                    data[pkey] = encoded
                    last_fast = encoded
                counts[outcome.result] = counts.get(outcome.result, 0) + 1
                continue
            snap = self._validate_item(message, index, item)
            if snap is None:
                continue
            if snap.store_id != key:
                self.dead(
                    message,
                    DeadLetterReason.KEY_MISMATCH,
                    f"message key {key!r} is not the snapshot's store_id {snap.store_id!r}",
                    item_index=index,
                )
                continue
            result = self.apply_one(snap, settings)
            counts[result] = counts.get(result, 0) + 1
            newest_us = max(newest_us, to_micros(snap.captured_at))
        for result, n in counts.items():
            self._results[result].inc(n)
        if last_fast is not None:
            newest_us = max(newest_us, state_fields(last_fast)[11])
        if newest_us:
            metrics.SNAPSHOT_LAG.observe(max(0.0, time.time() - newest_us / 1e6))

    def apply_one(self, snap: SupplierSnapshot, settings: StoreSettings) -> SnapshotResult:
        """One validated snapshot of the store whose partition this is."""
        pkey = product_key(snap.store_id, snap.product_id, snap.variant_id)
        data = entries(self.products)
        outcome, encoded = apply_snapshot_encoded(data.get(pkey), snap, settings)
        if encoded is not None:
            if outcome.durable:
                outbox = self.outbox(snap.store_id, outcome)
                if outcome.result is SnapshotResult.NEW:
                    self.store_keys.added(snap.store_id, pkey)
                    video = auto_request_for(snap, settings)
                    if video is not None:  # the store's auto_video (agents/video.py dedupes by id)
                        outbox.append(("v", encode(video)))
                draft = outcome.draft
                if draft is not None:  # counted here: send_outbox need not parse the record again
                    self.count_change(draft.reason.value, [kind.value for kind in draft.changed])
                self.commit_transition(pkey, encoded, outbox, counted=True)
            else:
                # Only the snapshot time moved: keep it in memory, not in the
                # changelog (90 % of snapshots; see docs/events.md "Ordering").
                data[pkey] = encoded
        return outcome.result

    def _validate_item(self, message: Any, index: int | None, item: Any) -> SupplierSnapshot | None:
        """A parsed snapshot validated in full, or None after refusing it to deadletter."""
        if isinstance(item, SupplierSnapshot):
            return item
        try:
            return validate_item(item)
        except ValidationError as exc:
            self.dead(message, DeadLetterReason.SCHEMA_VIOLATION, error_text(exc), item_index=index)
            return None

    def store_settings(self, store_id: str) -> StoreSettings:
        raw = entries(self.settings).get(store_id)
        if raw is None:
            cached = self._settings_cache.get(store_id)
            if cached is None or cached[0] != b"":
                cached = (b"", default_settings(store_id))
                self._settings_cache[store_id] = cached
            return cached[1]
        cached = self._settings_cache.get(store_id)
        if cached is None or cached[0] is not raw:
            cached = (raw, StoreSettings.model_validate_json(raw))
            self._settings_cache[store_id] = cached
        return cached[1]

    def outbox(self, store_id: str, outcome: Outcome) -> list[OutboxItem]:
        items: list[OutboxItem] = []
        if outcome.draft is not None:
            items.append(("c", outcome.draft.json()))
        now = datetime.now(timezone.utc)
        for closing in outcome.closed:
            alert = self.load_alert(store_id, closing.alert_id)
            moved = None if alert is None else alert_rules.transition(alert, closing.status, now)
            if moved is not None:
                items.append(("a", encode(moved)))
        items.extend(("a", encode(alert)) for alert in outcome.opened)
        return items

    # ------------------------------------------------------------------ #
    # durable writes: state and outputs together
    # ------------------------------------------------------------------ #

    def commit_transition(self, key: str, encoded: bytes, outbox: list[OutboxItem], counted: bool = False) -> None:
        """Make a product's new state and its outputs durable together, then send the outputs
        (``counted``: the caller counted the change record of ``outbox`` in the metrics).

        The record also carries the outputs of the key's earlier records not
        known delivered: it replaces them, and the outputs of one flush reach
        their partitions in no guaranteed order (a crash can keep this record
        and lose the alert an earlier one carried).
        """
        partition = self._tp.partition
        unconfirmed_here = self._unconfirmed[partition]
        unconfirmed = unconfirmed_here.get(key)
        if unconfirmed:
            outbox = unconfirmed + outbox  # sent already: carried, not sent again
        if outbox:
            self.changelog(self.products, partition, key, with_outbox(encoded, outbox))
            unconfirmed_here[key] = outbox
            if self._tp in self.owned:  # else the record keeps its outbox (see on_committed)
                self._pending[self._tp].append((self._offset, key))
                self._latest_outbox[key] = (self._tp, self._offset)
            if unconfirmed:
                outbox = outbox[len(unconfirmed) :]
        else:
            self.changelog(self.products, partition, key, encoded)
        entries(self.products)[key] = encoded
        self.send_outbox(key.split("|", 1)[0], partition, outbox, counted=counted)

    def changelog(self, table: faust.Table, partition: int, key: str, value: bytes | None) -> None:
        """Write a table's changelog record, None a tombstone (the in-memory value is the caller's business)."""
        name = self._changelogs.get(table.name)
        if name is None:
            name = self._changelogs[table.name] = table.changelog_topic.get_topic_name()
        self.outputs.add(name, partition, key.encode(), value)

    def count_change(self, reason: str, changed: list[str]) -> None:
        """The metrics of a change record sent: by reason, and by field moved."""
        self._change_records(reason).inc()
        if reason not in ("NEW", "MAPPED", "RESENT"):  # not a move of these fields
            for kind in changed:
                self._changes(kind).inc()

    def send_outbox(
        self, store_id: str, partition: int, outbox: list[OutboxItem], resend: bool = False, counted: bool = False
    ) -> None:
        """Send a transition's outputs and keep its alert records in the alerts table
        (``counted``: its change record is counted in the metrics already).

        A fresh transition's alert records are the newest states of their alerts
        (``alert_rules.transition`` never moves ``updated_at`` back; an opened
        alert has a new id), so they go to the table unchecked. Records sent
        again (``resend``, at recovery) may be older than what the table holds
        now: then the table keeps its state (``alert_rules.supersedes``), and the
        record still goes out on ``alerts`` (its readers keep the newest
        ``updated_at``: connectors/postgres/record.py).
        """
        store_key = store_id.encode()
        for code, value in outbox:
            if code == "c":
                self.outputs.add(topics.INVENTORY_CHANGES, None, store_key, value)
                if not counted:
                    change = orjson.loads(value)
                    self.count_change(change["reason"], change["changed"])
            elif code == "v":
                video_id = orjson.loads(value)["video_id"]
                self.outputs.add(topics.VIDEO_REQUESTS, None, video_id.encode(), value)
            else:
                alert = orjson.loads(value)
                akey = alert_key(store_id, alert["alert_id"])
                if not resend or self.supersedes_table(akey, alert):
                    self.changelog(self.alerts, partition, akey, value)
                    entries(self.alerts)[akey] = value
                    self.alert_written(akey)
                self.outputs.add(topics.ALERTS, None, store_key, value)
                self._alerts_emitted(alert["type"], alert["status"]).inc()

    def supersedes_table(self, akey: str, alert: dict[str, Any]) -> bool:
        """Whether an alert record (parsed JSON) is newer than the alerts table's entry of ``akey``."""
        raw = self.alerts.data.get(akey)
        if raw is None:
            return True
        current = orjson.loads(raw)
        return alert_rules.supersedes(
            datetime.fromisoformat(alert["updated_at"]), AlertStatus(alert["status"]),
            datetime.fromisoformat(current["updated_at"]), AlertStatus(current["status"]),
        )

    def on_committed(self, offsets: Any) -> None:
        """Faust committed these input offsets (after flushing the producer): drop the outboxes.

        Only outboxes of partitions still owned are tracked (``commit_transition``,
        ``on_letting_go``). Faust's last commit of a revocation or a stop comes
        after the partitions were let go; a record re-written then could reach
        the changelog after the new owner's own writes and roll its state back
        at the next recovery. Left alone, the outbox is merely sent again by
        whoever recovers it (same ids).
        """
        data = entries(self.products)
        for tp, committed in offsets.items():
            queue = self._pending.get(tp)
            unconfirmed = self._unconfirmed.get(tp.partition)
            while queue and queue[0][0] < committed:
                offset, key = queue.popleft()
                if self._latest_outbox.get(key) == (tp, offset):
                    del self._latest_outbox[key]
                    if key in self._resending:
                        continue  # it carries recovered outputs not acknowledged yet: the resend rewrites it
                    if unconfirmed is not None:
                        unconfirmed.pop(key, None)
                    raw = data.get(key)
                    if raw is not None:
                        self.changelog(self.products, tp.partition, key, raw)

    def on_assigned(self, assigned: Any) -> None:
        """A rebalance assigned these partitions.

        Outputs remembered for a partition that was not ours until now were
        written after it was let go (records of messages still in hand then,
        which keep their outboxes): they are the recovering owner's, like the
        rest of what was let go, and must not ride into this owner's records.
        """
        before = {tp.partition for tp in self.owned if tp.topic in topics.STORE_KEYED_INPUTS}
        for partition in [p for p in self._unconfirmed if p not in before]:
            del self._unconfirmed[partition]
        self.owned = set(assigned)

    def on_letting_go(self, revoked: Any) -> None:
        """A revocation or a stop begins: these partitions are no longer ours to write.

        Their outboxes are the new owner's (it recovers them and sends them
        again), so their outputs not known delivered are forgotten too, and
        recovered outboxes still being sent again go back to
        ``recovered_outboxes``: the next recovery that gives this worker the
        partition sends them again. The retry task stops when nothing is left.
        """
        self.owned.difference_update(revoked)
        let_go: set[int] = set()
        for tp in revoked:
            for offset, key in self._pending.pop(tp, ()):
                if self._latest_outbox.get(key) == (tp, offset):
                    del self._latest_outbox[key]
            if tp.topic in topics.STORE_KEYED_INPUTS:
                self._unconfirmed.pop(tp.partition, None)
                let_go.add(tp.partition)
        self._give_back_resends(let_go, self.recovered_outboxes)

    def on_changelog_record(self, key: str, partition: int, raw: bytes | None) -> None:
        """Recovery saw a product record: remember it while it still carries an outbox.

        A record with an outbox following another one of the key (no plain
        record between: nothing known delivered) keeps the outputs of both,
        for records written before the writer carried them forward itself.
        """
        if raw is not None and has_outbox(raw):
            earlier: list[OutboxItem] = []
            previous = self.recovered_outboxes.get(key)
            if previous is not None:
                own = split_outbox(raw)[1]
                older = previous[2] + split_outbox(previous[1])[1]
                earlier = [item for item in older if item not in own]
            self.recovered_outboxes[key] = (partition, raw, earlier)
        else:
            self.recovered_outboxes.pop(key, None)

    async def resend_recovered(self, active_partitions: set[int]) -> int:
        """Send again the outboxes of recovered records this worker now owns.

        The records lose their outboxes in the changelog only once the outputs
        sent again are acknowledged: a record without its outbox that became
        durable before them (a crash in between) would lose them for good --
        the product would name an alert the alerts table never gets. Until
        then a newer record of the product carries them (``_unconfirmed``) and
        its commit leaves the rewrite to the resend (``on_committed``).

        Faust awaits this (a ``products.on_recover`` callback) before it resumes
        any stream, and only logs what it raises. So this waits at most
        ``resend_wait_s`` for the acknowledgement; on a failure or a timeout the
        outboxes stay in ``_resending`` and a task of the processor retries
        them with a bounded backoff (``_retry_resend``) while the streams go on:
        safe, as newer records carry the outputs and a resent alert never
        replaces a newer state of it (``send_outbox``). The task stops once
        everything is acknowledged, or once the partitions are let go
        (``on_letting_go``: a revocation or a stop), which hands the outboxes
        back to ``recovered_outboxes`` for the next recovery.

        Returns the number of transitions whose outputs were acknowledged now.
        """
        for key, entry in list(self.recovered_outboxes.items()):
            partition, raw, earlier = entry
            if partition not in active_partitions:
                continue
            del self.recovered_outboxes[key]
            plain, outbox = split_outbox(raw)
            current = self.products.data.get(key)
            if current is raw or current == raw:
                self.products.data[key] = plain
            # A newer record of the key carries them until they are acknowledged.
            carried = self._unconfirmed[partition].get(key) or []
            self._unconfirmed[partition][key] = carried + [o for o in earlier + outbox if o not in carried]
            self._resending[key] = entry
        if not self._resending:
            return 0
        return await self._resend_with_retry()

    def _send_again(self, key: str, entry: tuple[int, bytes, list[OutboxItem]]) -> None:
        partition, raw, earlier = entry
        self.send_outbox(split_product_key(key)[0], partition, earlier + split_outbox(raw)[1], resend=True)

    def _sent_again(self, key: str, partition: int) -> None:
        # Unless a newer record of the product waits for its own commit (which rewrites it).
        if key not in self._latest_outbox:
            self._unconfirmed[partition].pop(key, None)
            current = self.products.data.get(key)
            if current is not None:
                self.changelog(self.products, partition, key, current)

    # ------------------------------------------------------------------ #
    # alerts
    # ------------------------------------------------------------------ #

    def load_alert(self, store_id: str, alert_id: str) -> Alert | None:
        raw = self.alerts.data.get(alert_key(store_id, alert_id))
        return None if raw is None else Alert.model_validate_json(raw)

    # ------------------------------------------------------------------ #
    # store.settings
    # ------------------------------------------------------------------ #

    def on_settings(self, message: Any) -> None:
        new = self.decode(StoreSettings.model_validate_json, message)
        if new is None:
            return
        key = (message.key or b"").decode(errors="replace")
        if new.store_id != key:
            self.dead(
                message,
                DeadLetterReason.KEY_MISMATCH,
                f"message key {key!r} is not the settings' store_id {new.store_id!r}",
            )
            return
        current_raw = self.settings.data.get(new.store_id)
        if current_raw is not None:
            current = StoreSettings.model_validate_json(current_raw)
            if new.updated_at <= current.updated_at:
                metrics.SETTINGS_UPDATES.labels("STALE").inc()
                return
        self.settings[new.store_id] = encode(new)
        metrics.SETTINGS_UPDATES.labels("APPLIED").inc()
        self.reprice_store(new)

    def reprice_store(self, new: StoreSettings) -> None:
        """Reprice every product already tracked for the store (SETTINGS_CHANGED)."""
        data = entries(self.products)
        for key in list(self.store_keys.of(new.store_id, data)):
            raw = data.get(key)
            if raw is None:
                continue
            state = decode_state(raw)
            repriced, change = reprice(key, state, new)
            if change is None:
                continue
            self.commit_transition(key, encode_state(repriced), [("c", encode(change))])

    # ------------------------------------------------------------------ #
    # inventory.commands
    # ------------------------------------------------------------------ #

    def on_alert_record(self, message: Any) -> None:
        """An alert raised on another partition (an order's, a webhook's): keep it in the
        store's alert table, unless a newer state of it is there already."""
        command = self.decode(AlertRecord.model_validate_json, message)
        if command is None:
            return
        alert = command.record
        key = alert_key(alert.store_id, alert.alert_id)
        current = self.load_alert(alert.store_id, alert.alert_id)
        if current is not None and current.updated_at >= alert.updated_at:
            return
        value = encode(alert)
        self.changelog(self.alerts, self._tp.partition, key, value)
        self.alerts.data[key] = value
        self.alert_written(key)

    def product_command(self, message: Any, validate: Callable[[bytes], C]) -> tuple[C, str, bytes | None] | None:
        """A command about one store product: (command, product key, its state or None),
        or None after refusing it (unreadable, or keyed by another store)."""
        command = self.decode(validate, message)
        if command is None:
            return None
        store_id = command.store_id
        if (message.key or b"").decode(errors="replace") != store_id:
            self.dead(message, DeadLetterReason.KEY_MISMATCH, f"message key is not the store_id {store_id!r}")
            return None
        key = product_key(store_id, command.product_id, command.variant_id)
        return command, key, self.products.data.get(key)

    def on_supplier_update(self, message: Any) -> None:
        """A supplier's webhook news of one product, applied as a snapshot (models.inventory.snapshot_of_update)."""
        found = self.product_command(message, SupplierUpdate.model_validate_json)
        if found is None:
            return
        update, _, raw = found
        if raw is None:  # not synced yet: the next sync brings it whole
            metrics.SUPPLIER_UPDATES.labels("UNKNOWN_PRODUCT").inc()
            return
        snap = snapshot_of_update(decode_state(raw), update)
        if snap is None:
            metrics.SUPPLIER_UPDATES.labels("SOURCE_MISMATCH").inc()
            return
        result = self.apply_one(snap, self.store_settings(update.store_id))
        metrics.SUPPLIER_UPDATES.labels(result.value).inc()

    def on_storefront_stock(self, message: Any) -> None:
        """The storefront's own count of a product against the engine's (models.inventory.check_storefront_stock)."""
        found = self.product_command(message, StorefrontStock.model_validate_json)
        if found is None:
            return
        report, key, raw = found
        if raw is None:
            metrics.STOREFRONT_STOCK.labels("UNKNOWN_PRODUCT").inc()
            return
        outcome = check_storefront_stock(key, decode_state(raw), report, self.store_settings(report.store_id))
        if outcome.state is None:
            metrics.STOREFRONT_STOCK.labels("UNCHANGED").inc()
            return
        self.commit_transition(key, encode_state(outcome.state), self.outbox(report.store_id, outcome))
        metrics.STOREFRONT_STOCK.labels("DRIFT" if outcome.opened else "AGREES").inc()

    def on_product_mapped(self, message: Any) -> None:
        """A store product newly mapped to a storefront variant: its current values go out
        again as a MAPPED change, for the storefront."""
        self._republish(message, ProductMapped.model_validate_json, ChangeReason.MAPPED, metrics.PRODUCTS_MAPPED)

    def on_product_resend(self, message: Any) -> None:
        """The storefront asks for a product's current values again (in place of a replayed change)."""
        self._republish(message, ProductResend.model_validate_json, ChangeReason.RESENT, metrics.PRODUCTS_RESENT)

    def _republish(self, message: Any, validate: Callable[[bytes], C], reason: ChangeReason, counter: Any) -> None:
        """The product's current values as a change of ``reason`` (models.inventory.republished_change),
        carried by a changelog record of its unchanged state: sent once the record is durable."""
        found = self.product_command(message, validate)
        if found is None:
            return
        command, key, raw = found
        if raw is None:  # not tracked (yet): its first snapshot's NEW change is pushed
            counter.labels("UNKNOWN_PRODUCT").inc()
            return
        state = decode_state(raw)
        change = republished_change(key, state, command, reason)
        self.commit_transition(key, encode_state(state), [("c", encode(change))])
        counter.labels("PUBLISHED").inc()

    def on_store_alerts_resolve(self, message: Any) -> None:
        """Resolve the store's open alerts of a type that concern no product (the
        storefront process: a set-aside shop answers again). The store's alerts are
        found by their key prefix: a rare command, one pass over this worker's alerts."""
        command = self.decode(StoreAlertsResolve.model_validate_json, message)
        if command is None:
            return
        store_id = command.store_id
        if (message.key or b"").decode(errors="replace") != store_id:
            self.dead(message, DeadLetterReason.KEY_MISMATCH, f"message key is not the store_id {store_id!r}")
            return
        prefix = alert_key(store_id, "")
        kind = command.alert_type.value
        outbox: list[OutboxItem] = []
        for key, raw in list(self.alerts.data.items()):
            if not key.startswith(prefix):
                continue
            found = orjson.loads(raw)
            if found["type"] != kind or found.get("product_id") is not None:
                continue
            alert = Alert.model_validate(found)
            if alert.created_at > command.requested_at:
                continue  # opened after the condition was seen over: another one
            # None for an alert closed already (RESOLVED, DISMISSED): only open ones move.
            moved = alert_rules.transition(alert, AlertStatus.RESOLVED, command.requested_at)
            if moved is not None:
                outbox.append(("a", encode(moved)))
        if outbox:
            self.send_outbox(store_id, self._tp.partition, outbox)
        metrics.ALERT_COMMANDS.labels("RESOLVE", "APPLIED" if outbox else "UNKNOWN_ALERT").inc()

    def on_command(self, message: Any) -> None:
        try:
            parsed = orjson.loads(message.value or b"")
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and "record" in parsed:
            self.on_alert_record(message)
            return
        kind = parsed.get("kind") if isinstance(parsed, dict) else None
        product_command = {
            "SUPPLIER_UPDATE": self.on_supplier_update,
            "STOREFRONT_STOCK": self.on_storefront_stock,
            "PRODUCT_MAPPED": self.on_product_mapped,
            "PRODUCT_RESEND": self.on_product_resend,
            "STORE_ALERTS_RESOLVE": self.on_store_alerts_resolve,
        }.get(kind) if isinstance(kind, str) else None
        if product_command is not None:
            product_command(message)
            return
        command = self.decode(AlertCommand.model_validate_json, message)
        if command is None:
            return
        action = command.action.value
        alert = self.load_alert(command.store_id, command.alert_id)
        if alert is None:
            metrics.ALERT_COMMANDS.labels(action, "UNKNOWN_ALERT").inc()
            return
        target = alert_rules.ACTION_STATUS[command.action]
        if alert.status is target:
            # Already applied (a replay after a crash): send the record again,
            # as the crash may have come before it left.
            moved: Alert | None = alert
        else:
            moved = alert_rules.transition(alert, target, command.requested_at)
        if moved is None:
            metrics.ALERT_COMMANDS.labels(action, "REFUSED").inc()
            return
        outbox: list[OutboxItem] = [("a", encode(moved))]
        key = None if moved.product_id is None else product_key(moved.store_id, moved.product_id, moved.variant_id)
        raw = None if key is None else self.products.data.get(key)
        if key is not None and raw is not None:
            state: ProductState = decode_state(raw)
            updated = apply_alert_status(state, moved) or state
            self.commit_transition(key, encode_state(updated), outbox)
        else:
            self.send_outbox(moved.store_id, self._tp.partition, outbox)
        metrics.ALERT_COMMANDS.labels(action, "APPLIED").inc()

    # ------------------------------------------------------------------ #
    # gauges refreshed off the hot path
    # ------------------------------------------------------------------ #

    def refresh_gauges(self, active_partitions: set[int], partition_of: Any) -> None:
        alerts = entries(self.alerts)
        # The agent's own writes since the last refresh are applied to its counts one
        # by one. A full count (every alert, each value parsed once: _count_active_alerts)
        # when the active partitions changed, when told the table changed behind the
        # agent (recovery, a rebalance: forget_alert_counts), or when the table holds
        # entries the counts never saw (standby replicas' writes).
        parts = frozenset(active_partitions)
        held = self._alert_counts
        counts = None
        if held is not None and held[0] == parts:
            self._apply_alert_writes(alerts, held[1], parts, partition_of)
            if len(self._alert_gauge) == len(alerts):
                counts = held[1]
        if counts is None:
            self._alerts_written.clear()
            counts = self._count_active_alerts(alerts, parts, partition_of)
            self._alert_counts = (parts, counts)
        for alert_type in (a.value for a in alert_rules.SEVERITY):
            metrics.ALERTS_ACTIVE.labels(alert_type).set(counts.get(alert_type, 0))
        tables = (
            ("products", self.products), ("alerts", self.alerts), ("settings", self.settings),
            ("sync-runs", self.sync.table),
        )
        for name, table in tables:
            metrics.TABLE_ENTRIES.labels(name).set(len(table.data))

    def purge_alerts(self, keys: Iterable[str], cutoff: datetime, partition_of: Callable[[str], int]) -> int:
        """Remove the closed alerts among ``keys`` last changed before ``cutoff``
        (``alert_rules.purgeable``) from the alerts table, in the partitions this
        worker owns: the entry, and a tombstone in the changelog so that no
        recovery brings it back. Returns how many went.

        Without it every alert ever closed would stay in memory: a product whose
        stock goes low and back each day adds two alerts a day. PostgreSQL's
        ``alerts`` and the ``alerts`` topic keep the record.
        """
        owned = {tp.partition for tp in self.owned if tp.topic in topics.STORE_KEYED_INPUTS}
        alerts = entries(self.alerts)
        removed = 0
        for key in keys:
            raw = alerts.get(key)
            if raw is None:
                continue
            partition = partition_of(key.split("|", 1)[0])
            if partition not in owned or not alert_rules.purgeable(orjson.loads(raw), cutoff):
                continue
            self.changelog(self.alerts, partition, key, None)
            del alerts[key]
            self.alert_written(key)
            removed += 1
        if removed:
            metrics.ALERTS_PURGED.inc(removed)
        return removed

    def forget_alert_counts(self) -> None:
        """The alerts table changed behind the agent (recovery, a rebalance): count again."""
        self._alert_counts = None

    def alert_written(self, key: str) -> None:
        """The agent wrote (or removed) the alerts table's entry of ``key``: the next gauge refresh reads it."""
        written = self._alerts_written
        written.add(key)
        if len(written) > ALERT_WRITES_KEPT:  # no refresh for long (none scheduled): count again then
            written.clear()
            self._alert_counts = None

    def _partition_of_store(self, key: str, partition_of: Any) -> int:
        store_id = key.split("|", 1)[0]
        part = self._store_partition.get(store_id)
        if part is None:
            part = self._store_partition[store_id] = partition_of(store_id)
        return part

    def _apply_alert_writes(self, alerts: Any, counts: dict[str, int], parts: frozenset[int], partition_of: Any) -> None:
        """Move ``counts`` (ACTIVE alerts by type in ``parts``) by the agent's writes since the last refresh.

        ``counts`` always counts the types held in ``_alert_gauge`` of the keys of
        ``parts``; each written key's held value is replaced by the table's (or
        dropped with the entry), and the counts follow the difference.
        """
        seen = self._alert_gauge
        for key in self._alerts_written:
            old = seen.get(key)
            raw = alerts.get(key)
            if raw is None:
                if old is None:
                    continue
                del seen[key]
                new_type = None
            elif old is not None and old[0] is raw:
                continue
            else:
                new_type = _active_type(raw)
                seen[key] = (raw, new_type)
            old_type = None if old is None else old[1]
            if old_type != new_type and self._partition_of_store(key, partition_of) in parts:
                if old_type is not None:
                    counts[old_type] -= 1
                if new_type is not None:
                    counts[new_type] = counts.get(new_type, 0) + 1
        self._alerts_written.clear()

    def _count_active_alerts(self, alerts: Any, active_partitions: frozenset[int], partition_of: Any) -> dict[str, int]:
        counts: dict[str, int] = {}
        # Each alert is read once per value, not once per refresh: with 100,000
        # alerts, parsing them all every 5 s took a sixth of a syncing worker's CPU.
        seen = self._alert_gauge
        for key, raw in list(alerts.items()):
            held = seen.get(key)
            if held is None or held[0] is not raw:
                held = seen[key] = (raw, _active_type(raw))
            alert_type = held[1]
            if alert_type is None:
                continue
            if self._partition_of_store(key, partition_of) in active_partitions:
                counts[alert_type] = counts.get(alert_type, 0) + 1
        if len(seen) > len(alerts):  # entries gone (a store reset): forget them
            for key in [k for k in seen if k not in alerts]:
                del seen[key]
        return counts


def register(engine: Engine) -> InventoryProcessor:
    """Wire the inventory agent and its gauge refresher onto the app."""
    processor = InventoryProcessor(engine)
    app = engine.app

    run_agent(engine, engine.inputs, "inventory", processor.handle)

    @app.timer(interval=0.1)
    async def send_outputs() -> None:
        await engine.outputs.send()

    # Drop written outboxes once Faust has committed their input offsets.
    tables = app.tables
    faust_on_commit = tables.on_commit

    def on_commit(offsets: Any) -> None:
        faust_on_commit(offsets)
        processor.on_committed(offsets)

    tables.on_commit = on_commit  # type: ignore[method-assign]

    # Know which input partitions are ours: Faust tells the table manager first,
    # at the start of a rebalance (assigned) and of a revocation or stop.
    faust_on_rebalance = tables.on_rebalance
    faust_on_revoked = tables.on_partitions_revoked

    async def on_rebalance(assigned: Any, revoked: Any, newly_assigned: Any, generation_id: int = 0) -> None:
        processor.on_assigned(assigned)
        processor.store_keys.forget()  # recovery and revocation change the tables behind the agent
        processor.forget_alert_counts()
        await faust_on_rebalance(assigned, revoked, newly_assigned, generation_id=generation_id)

    def on_partitions_revoked(revoked: Any) -> None:
        processor.on_letting_go(revoked)
        faust_on_revoked(revoked)

    tables.on_rebalance = on_rebalance  # type: ignore[method-assign]
    tables.on_partitions_revoked = on_partitions_revoked  # type: ignore[method-assign]

    products = engine.tables.products

    async def on_changelog_event(event: faust.EventT) -> None:
        processor.on_changelog_record(event.key, event.message.partition, event.message.value)

    products._on_changelog_event = on_changelog_event

    @products.on_recover
    async def resend_recovered() -> None:
        changelog = products.changelog_topic.get_topic_name()
        active = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == changelog}
        processor.store_keys.forget()
        processor.forget_alert_counts()
        await processor.resend_recovered(active)

    from aiokafka.partitioner import murmur2

    partitions = engine.settings.partitions

    def partition_of(store_id: str) -> int:
        return (murmur2(store_id.encode()) & 0x7FFFFFFF) % partitions

    keep = timedelta(days=engine.settings.alert_keep_days)

    sweep_timer(app, ALERT_PURGE_INTERVAL_S, "purge_alerts", lambda: entries(engine.tables.alerts),
                lambda keys, now: processor.purge_alerts(keys, now - keep, partition_of))

    @app.timer(interval=engine.settings.gauge_interval)
    async def refresh_gauges() -> None:
        changelog = engine.tables.alerts.changelog_topic.get_topic_name()
        active = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == changelog}
        processor.refresh_gauges(active, partition_of)

    return processor
