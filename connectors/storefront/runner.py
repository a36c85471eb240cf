"""The storefront process (``ops-engine storefront``): the engine's changes and
commands, written to each store's storefront.

A plain aiokafka consumer group (``{app_id}-storefront``, connectors/consumers.py)
on ``inventory.changes`` and ``storefront.commands`` (both keyed by
``store_id``): storefront processes scale out like the executor, a store's
records staying on one partition, in order.

Each fetched batch is split by store; each store's changes go to its adapter's
``push`` in one call (connectors/storefront/base.py: the Shopify adapter
batches its writes), its commands to ``show_tracking`` one after another,
stores concurrently (``OPS_STOREFRONT_CONCURRENCY``). The batch's offsets are
committed only once every store's writes are done; a push that fails (the
shop is down, still throttled, a timeout) is tried again with backoff
(1 s .. 30 s) until it succeeds or the process stops, and then nothing of the
batch is committed: the next owner replays it, and the adapters' idempotency
(keys made from the change and command ids, compare-and-set, read before write)
makes the replay write nothing twice.

Skipped, counted and logged at debug, never dead-lettered: changes of a store
without an account (``NO_ACCOUNT``) and of products the catalogue does not map
(``UNMAPPED``). A record that is not an event goes to ``deadletter``.

The catalogue (``catalog.variants``) is read in full by every storefront
process before the first push (connectors/storefront/catalogue.py).

With ``OPS_DATABASE_URL``, the process also reconciles the stores' orders
(connectors/storefront/reconcile.py; Shopify shops and WooCommerce sites):
lost webhooks are pulled and published on ``webhooks.inbound``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from pydantic import ValidationError

from connectors.consumers import backoff, commit, group_consumer
from connectors.deadletter import read_all, replay_store, replayed_from, select
from connectors.postgres.pool import create_pool
from connectors.shopify import reconcile as shopify_reconcile
from connectors.shopify.storefront import ShopifyStorefront
from connectors.storefront import metrics
from connectors.storefront.base import PushOutcome, Storefront, build_storefront, refuses_account
from connectors.storefront.catalogue import CatalogueIndex, follow
from connectors.storefront.reconcile import Target, reconcile_loop
from connectors.storefront.settings import StorefrontSettings
from connectors.woocommerce import reconcile as woocommerce_reconcile
from connectors.woocommerce.storefront import WooCommerceStorefront
from models.events import (
    AlertRecord,
    AlertType,
    ChangeReason,
    DeadLetter,
    DeadLetterReason,
    InventoryChange,
    ProductResend,
    StoreAlertsResolve,
)
from models.orders import StorefrontCommand
from models.storefront import storefront_alert
from models.webhooks import InboundWebhook, message_key
from streams import topics
from streams.codecs import encode
from streams.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
FIRST_PAUSE_S = 1.0
#: How long a probe of a set-aside store's shop may take.
PROBE_TIMEOUT_S = 30.0
#: How long a batch with unmapped products waits for the catalogue to be read up to it.
CATALOGUE_WAIT_S = 10.0
LONGEST_PAUSE_S = 30.0


class Stopped(Exception):
    """The process is stopping in the middle of a retried write: commit nothing more."""


class StoreUnavailable(Exception):
    """A store's shop has failed every try for ``unavailable_s`` (or its probe failed):
    its records of the batch are set aside (deadletter), the other stores go on."""

    def __init__(self, store_id: str, reason: str) -> None:
        super().__init__(f"store {store_id}: {reason}")
        self.reason = reason


class StorefrontRunner:
    def __init__(
        self,
        storefronts: Mapping[str, Storefront],
        catalogue: CatalogueIndex,
        producer: AIOKafkaProducer,
        stop: asyncio.Event,
        concurrency: int = 4,
        unavailable_s: float = 300.0,
        probe_interval_s: float = 60.0,
        on_back: Callable[[str, datetime], Awaitable[bool]] | None = None,
    ) -> None:
        self.storefronts = storefronts
        self.catalogue = catalogue
        self.producer = producer
        self.stop = stop
        self.limit = asyncio.Semaphore(concurrency)
        self._alerted: dict[str, str] = {}  # (store, alert type) -> the id of the alert last sent
        # A store whose shop stays down: after ``unavailable_s`` of failed tries its records go to
        # deadletter (STOREFRONT_UNAVAILABLE) instead of holding up every store's batch, and so do
        # its later ones, while ``probe_loop`` tries the shop every ``probe_interval_s``. Once it
        # answers, ``take_back`` (between batches) ends that and calls ``on_back(store, since)``
        # (the process replays the store's dead letters refused since then; True when they
        # are), then resolves the store's STOREFRONT_UNAVAILABLE alerts.
        self.unavailable_s = unavailable_s
        self.probe_interval_s = probe_interval_s
        self.on_back = on_back
        self._aside: dict[str, float] = {}  # store -> time.monotonic() of its last probe
        # Stores set aside before a restart, maybe (``recheck``): probed like set-aside ones,
        # and replayed once their shop answers, but their records are written as usual.
        self._recheck: dict[str, float] = {}
        # Set-aside and rechecked stores: since when their dead letters are theirs to replay
        # (the moment a store was set aside; for a recheck, the lookback's start).
        self._since: dict[str, datetime] = {}
        self._aside_at: dict[str, datetime] = {}  # set-aside store -> when (its alert's moment)
        self._answered: set[str] = set()  # set-aside (or rechecked) stores whose shop answered a probe
        self._back: set[asyncio.Task[None]] = set()

    async def _dead(
        self, message: Any, detail: str, reason: DeadLetterReason = DeadLetterReason.SCHEMA_VIOLATION
    ) -> None:
        letter = DeadLetter.of(message, reason, detail)
        await (await self.producer.send(topics.DEADLETTER, key=message.topic.encode(), value=encode(letter)))

    async def _until_done(self, store_id: str, what: str, platform: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call`` until it succeeds, with backoff; ``StoreUnavailable`` once it has failed for
        ``unavailable_s``."""
        pause: float | None = FIRST_PAUSE_S
        first_failure: float | None = None
        while True:
            try:
                return await call()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if refuses_account(exc):
                    raise  # no use trying again: the store's batch goes to deadletter (``_set_aside``)
                metrics.FAILURES.labels(platform).inc()
                reason = f"{type(exc).__name__}: {str(exc)[:300]}"
                first_failure = first_failure or time.monotonic()
                failing = time.monotonic() - first_failure
                if failing >= self.unavailable_s:
                    raise StoreUnavailable(store_id, f"{what} failed for {failing:.0f} s ({reason})") from exc
                log.warning("%s failed (%s); trying again", what, reason)
                pause = await backoff(self.stop, pause or FIRST_PAUSE_S, LONGEST_PAUSE_S)
                if pause is None:
                    raise Stopped(what) from None

    # -- set-aside stores: probed in the background, taken back between batches --------
    async def probe_loop(self) -> None:
        """Try each set-aside store's shop every ``probe_interval_s`` (``Storefront.reachable``),
        in the background; a shop that answers is taken back by ``take_back``."""
        probing: dict[str, asyncio.Task[None]] = {}
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                for waiting in (self._aside, self._recheck):
                    for store_id, last in list(waiting.items()):
                        if (store_id not in probing and store_id not in self._answered
                                and now - last >= self.probe_interval_s):
                            waiting[store_id] = now
                            probing[store_id] = asyncio.create_task(self._probe(store_id))
                for store_id, task in list(probing.items()):
                    if task.done():
                        del probing[store_id]
                await asyncio.sleep(min(1.0, self.probe_interval_s))
        finally:
            for task in probing.values():
                task.cancel()

    async def _probe(self, store_id: str) -> None:
        try:
            await asyncio.wait_for(self.storefronts[store_id].reachable(), PROBE_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # still down (or refusing): set aside until the next probe
            log.info("store %s: its shop still fails (%s: %s)", store_id, type(exc).__name__, str(exc)[:200])
            return
        self._answered.add(store_id)

    def recheck(self, store_ids: set[str], since: datetime) -> None:
        """Stores that may have been set aside before this process started (they have
        STOREFRONT_UNAVAILABLE dead letters refused ``since``): probe each at once, and once
        its shop answers replay those dead letters and resolve its alerts, as ``take_back``
        does. Their records are written as usual meanwhile (a shop still down is set aside
        again the usual way). Stores without an account here are not this process's."""
        now = time.monotonic()
        for store_id in store_ids:
            if store_id in self.storefronts and store_id not in self._aside:
                self._recheck[store_id] = now - self.probe_interval_s
                self._since[store_id] = since

    async def close(self) -> None:
        """Stop the replays under way (before the producer stops): a store cut short keeps
        its dead letters, and its alerts stay open."""
        for task in list(self._back):
            task.cancel()
        await asyncio.gather(*self._back, return_exceptions=True)

    def take_back(self) -> None:
        """Between batches: the set-aside stores whose shop answered a probe go back to
        normal, and ``on_back`` replays their dead letters (all written by now: the
        batches that set their records aside are done); then their alerts are resolved."""
        for store_id in list(self._answered):
            self._answered.discard(store_id)
            if self._aside.pop(store_id, None) is not None:
                metrics.UNAVAILABLE.set(len(self._aside))
                log.warning("store %s: its shop answers again; its set-aside records are replayed", store_id)
            elif self._recheck.pop(store_id, None) is not None:
                log.warning("store %s: its shop answers; its set-aside records from before the start are replayed",
                            store_id)
            else:
                continue
            since = self._since.pop(store_id, None) or datetime.now(timezone.utc)
            self._aside_at.pop(store_id, None)
            self._alerted.pop(f"{store_id}|{AlertType.STOREFRONT_UNAVAILABLE.value}", None)
            task = asyncio.create_task(self._come_back(store_id, since))
            self._back.add(task)
            task.add_done_callback(self._back.discard)

    async def _come_back(self, store_id: str, since: datetime) -> None:
        """``on_back`` (the replay of the letters refused ``since``), then the store's
        STOREFRONT_UNAVAILABLE alerts resolved (``StoreAlertsResolve``, to the worker that
        keeps them) unless the store was set aside again meanwhile. A replay that failed
        leaves the alerts open: their dead letters wait for a person."""
        now = datetime.now(timezone.utc)
        if self.on_back is not None and not await self.on_back(store_id, since):
            # Their letters wait (``ops-engine deadletter replay``); the next take-back of
            # the store replays them too.
            self._since[store_id] = min(self._since.get(store_id, since), since)
            return
        if store_id in self._aside:  # down again while it was replayed: that outage's alert stands
            return
        command = StoreAlertsResolve(command_id=f"storefront-back:{store_id}:{now.isoformat()}", store_id=store_id,
                                     alert_type=AlertType.STOREFRONT_UNAVAILABLE, requested_at=now)
        try:
            await (await self.producer.send(topics.INVENTORY_COMMANDS, key=store_id.encode(), value=encode(command)))
        except Exception:  # the alerts stay open for a person to resolve
            log.exception("store %s: resolving its STOREFRONT_UNAVAILABLE alerts failed", store_id)

    async def handle(self, messages: list[Any], fetched_at: float | None = None) -> None:
        """One fetched batch, to its last write (raises ``Stopped`` when cut short).
        ``fetched_at`` (``time.monotonic``, now if None): when the batch was consumed."""
        fetched_at = time.monotonic() if fetched_at is None else fetched_at
        changes: dict[str, list[InventoryChange]] = defaultdict(list)
        commands: dict[str, list[StorefrontCommand]] = defaultdict(list)
        read: dict[str, list[Any]] = defaultdict(list)  # each store's messages, for deadletter
        resends: list[ProductResend] = []
        for message in messages:
            try:
                if message.topic == topics.STOREFRONT_COMMANDS:
                    command = StorefrontCommand.model_validate_json(message.value or b"")
                    commands[command.store_id].append(command)
                    read[command.store_id].append(message)
                else:
                    change = InventoryChange.model_validate_json(message.value or b"")
                    origin = replayed_from(getattr(message, "headers", None))
                    if origin is not None:  # old: its product's current values are asked for instead
                        resends.append(ProductResend(
                            command_id=origin, store_id=change.store_id, product_id=change.product_id,
                            variant_id=change.variant_id, requested_at=datetime.now(timezone.utc)))
                        continue
                    changes[change.store_id].append(change)
                    read[change.store_id].append(message)
            except ValidationError as exc:
                kind = "command" if message.topic == topics.STOREFRONT_COMMANDS else "change"
                if kind == "command":
                    metrics.COMMANDS.labels("UNKNOWN", "INVALID").inc()
                else:
                    metrics.CHANGES.labels("NONE", "INVALID").inc()
                await self._dead(message, f"not a storefront {kind}: {exc.errors()[:3]}")
        await self._resend(resends)
        await self._catalogue_since(fetched_at, changes)
        stores = sorted(set(changes) | set(commands))
        tasks = [
            asyncio.create_task(
                self._set_aside(s, read[s], self._store(s, changes.get(s, []), commands.get(s, [])))
            )
            for s in stores
        ]
        try:
            await asyncio.gather(*tasks)
        finally:  # one store cut short (stopping): the others stop too, nothing is committed
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _resend(self, resends: list[ProductResend]) -> None:
        """Ask the inventory agent for the current values of the products whose changes were
        replayed from ``deadletter`` (a refused or unavailable shop's): such a change is old,
        newer ones may have reached the shop since, and pushing it could put an old quantity
        or price back. The RESENT change that comes back is pushed like any other."""
        futures = []
        for command in resends:
            storefront = self.storefronts.get(command.store_id)
            metrics.CHANGES.labels(storefront.platform if storefront else "NONE", "REPLAYED").inc()
            if storefront is not None:
                futures.append(await self.producer.send(
                    topics.INVENTORY_COMMANDS, key=command.store_id.encode(), value=encode(command)))
        for future in futures:
            await future

    async def _catalogue_since(self, fetched_at: float, changes: Mapping[str, list[InventoryChange]]) -> None:
        """Before a product of a store with an account counts as unmapped, the catalogue is
        read up to the moment the batch was consumed: a catalogue record published just
        before the change may not have been applied yet. So too before a MAPPED change is
        pushed: its catalogue record (a product mapped anew, perhaps from another
        variant) came before it."""
        if not any(
            c.reason is ChangeReason.MAPPED or self.catalogue.variant(c.store_id, c.product_id, c.variant_id) is None
            for store_id, of_store in changes.items() if store_id in self.storefronts for c in of_store
        ):
            return
        if not await self.catalogue.read_since(fetched_at, CATALOGUE_WAIT_S):
            log.warning("the catalogue was not read up to the batch within %.0f s; its unmapped products "
                        "are skipped", CATALOGUE_WAIT_S)

    async def _set_aside(self, store_id: str, messages: list[Any], work: Awaitable[None]) -> None:
        """``work`` for one store; if the shop refuses the store's account (401/403:
        STOREFRONT_REFUSED) or stays unavailable (``StoreUnavailable``:
        STOREFRONT_UNAVAILABLE), the store's records of the batch go to ``deadletter``
        with the store's alert, and the batch goes on: the other stores are not held up,
        and nothing is lost. Refused: replay them with ``ops-engine deadletter replay``
        once the account is fixed; unavailable: the process replays them itself once a
        probe gets through. Writes done before are done again then: every write is
        idempotent, and a replayed change asks for the product's current values."""
        try:
            await work
        except Exception as exc:
            storefront = self.storefronts[store_id]
            if isinstance(exc, StoreUnavailable):
                reason, why = exc.reason, DeadLetterReason.STOREFRONT_UNAVAILABLE
                advice = "its records are replayed by the storefront process once the shop answers again"
                self._recheck.pop(store_id, None)  # set aside now: taken back the usual way
                if store_id not in self._aside:
                    self._aside[store_id] = time.monotonic()
                    # Its letters from now on (this batch's are written below) are the ones
                    # to replay (and a recheck's, or a failed replay's, older ones still are).
                    now = datetime.now(timezone.utc)
                    self._aside_at[store_id] = now
                    self._since.setdefault(store_id, now)
                    metrics.UNAVAILABLE.set(len(self._aside))
                    log.error("store %s: its shop is unavailable (%s); set aside", store_id, reason)
            elif refuses_account(exc):
                reason, why = str(getattr(exc, "reason", exc))[:500], DeadLetterReason.STOREFRONT_REFUSED
                advice = "fix the account's credentials, then replay with ops-engine deadletter replay"
                metrics.REFUSED.labels(storefront.platform).inc(len(messages))
                log.error("store %s: the storefront refused its account (%s); %d record(s) to deadletter",
                          store_id, reason, len(messages))
            else:
                raise
            for message in messages:
                await self._dead(message, f"store {store_id}: {reason}; {advice}", why)
            await self._alert(store_id, why.value, reason)

    async def _alert(self, store_id: str, kind: str, reason: str) -> None:
        """The store's alert of ``kind`` (STOREFRONT_REFUSED or STOREFRONT_UNAVAILABLE:
        models.storefront.storefront_alert, one a day; an UNAVAILABLE one dated from when
        the store was set aside, if today), on ``alerts`` and in the store's alert table;
        sent once a day by this process."""
        storefront = self.storefronts[store_id]
        alert = storefront_alert(AlertType(kind), store_id, storefront.platform, storefront.shop, reason,
                                 datetime.now(timezone.utc), since=self._aside_at.get(store_id))
        if self._alerted.get(f"{store_id}|{kind}") == alert.alert_id:
            return
        for topic, value in ((topics.ALERTS, encode(alert)), (topics.INVENTORY_COMMANDS, encode(AlertRecord.of(alert)))):
            await (await self.producer.send(topic, key=store_id.encode(), value=value))
        self._alerted[f"{store_id}|{kind}"] = alert.alert_id

    async def _store(self, store_id: str, changes: list[InventoryChange], commands: list[StorefrontCommand]) -> None:
        storefront = self.storefronts.get(store_id)
        if storefront is None:
            if changes:
                metrics.CHANGES.labels("NONE", "NO_ACCOUNT").inc(len(changes))
            for command in commands:
                metrics.COMMANDS.labels(command.type.value, "NO_ACCOUNT").inc()
            log.debug("store %s has no storefront account: %d changes, %d commands skipped",
                      store_id, len(changes), len(commands))
            return
        platform = storefront.platform
        if store_id in self._aside:  # its shop is tried in the background (probe_loop), not here
            raise StoreUnavailable(store_id, "set aside: its shop failed every try and has not answered since")
        async with self.limit:
            if changes:
                outcome: PushOutcome = await self._until_done(
                    store_id, f"push of {len(changes)} changes to store {store_id}", platform,
                    lambda: storefront.push(changes, self.catalogue),
                )
                for result, n in outcome.changes.items():
                    metrics.CHANGES.labels(platform, result).inc(n)
                for (kind, result), n in outcome.writes.items():
                    metrics.WRITES.labels(platform, kind, result).inc(n)
            for command in commands:
                result = await self._until_done(
                    store_id, f"{command.type.value} {command.command_id} of store {store_id}", platform,
                    lambda: storefront.show_tracking(command),
                )
                metrics.COMMANDS.labels(command.type.value, result).inc()
                log.info("store %s order %s: tracking %s", store_id, command.order_id, result)


def storefronts_of(accounts: Mapping[str, Any]) -> dict[str, Storefront]:
    return {store_id: build_storefront(store_id, account) for store_id, account in accounts.items()}


def reconcile_targets(storefronts: Mapping[str, Storefront], settings: StorefrontSettings) -> list[Target]:
    """The shops to reconcile, through their adapters' clients (one rate limit per shop)."""
    targets = []
    for storefront in storefronts.values():
        if isinstance(storefront, ShopifyStorefront):
            targets.append(shopify_reconcile.target(
                storefront.client, interval_s=settings.shopify_reconcile_interval_s,
                lookback_s=settings.shopify_reconcile_lookback_s))
        elif isinstance(storefront, WooCommerceStorefront):
            targets.append(woocommerce_reconcile.target(
                storefront.client, interval_s=settings.woocommerce_reconcile_interval_s,
                lookback_s=settings.woocommerce_reconcile_lookback_s))
    return targets


async def run_storefront(
    settings: Settings,
    storefront_settings: StorefrontSettings,
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
) -> None:
    if settings.embedded_broker:
        from streams.embedded import install_end_offset_fix

        install_end_offset_fix()  # the catalogue is read to its real end
    storefronts = storefronts_of(storefront_settings.storefront_accounts)
    catalogue = CatalogueIndex()
    catalogue_ready = asyncio.Event()
    follower = asyncio.create_task(follow(settings, catalogue, catalogue_ready, stop))
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all",
                                enable_idempotence=settings.producer_idempotence,
                                max_request_size=topics.WEBHOOKS_INBOUND_MAX_MESSAGE_BYTES)
    consumer = group_consumer(settings, "storefront", max_poll_records=500)
    async def replay_set_aside(store_id: str, since: datetime) -> bool:
        """A set-aside store's shop answers again: its STOREFRONT_UNAVAILABLE dead letters
        refused ``since`` go back."""
        try:
            sent = await replay_store(settings, DeadLetterReason.STOREFRONT_UNAVAILABLE.value, store_id, since)
            log.warning("store %s: %d set-aside record(s) replayed from deadletter", store_id, sent)
            return True
        except Exception:  # they stay in deadletter: ops-engine deadletter replay --reason STOREFRONT_UNAVAILABLE
            log.exception("store %s: replaying its set-aside records failed; replay them by hand", store_id)
            return False

    async def recheck_set_aside() -> None:
        """A restart forgets which stores were set aside: the stores with recent
        STOREFRONT_UNAVAILABLE dead letters are probed, and replayed once they answer."""
        lookback = storefront_settings.storefront_recheck_lookback_s
        if not lookback:
            return
        since = datetime.now(timezone.utc) - timedelta(seconds=lookback)
        try:
            letters = select(await read_all(settings), reason=DeadLetterReason.STOREFRONT_UNAVAILABLE.value,
                             since=since)
            stores = {s.key.decode(errors="replace") for s in letters if s.key is not None}
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reading deadletter for stores set aside before the start failed; "
                          "replay them with ops-engine deadletter replay --reason STOREFRONT_UNAVAILABLE")
            return
        if stores:
            log.warning("%d store(s) with STOREFRONT_UNAVAILABLE dead letters of the last %.0f s: probed, "
                        "those letters replayed once their shop answers", len(stores), lookback)
            runner.recheck(stores, since)

    runner = StorefrontRunner(storefronts, catalogue, producer, stop, storefront_settings.storefront_concurrency,
                              unavailable_s=storefront_settings.storefront_unavailable_s,
                              probe_interval_s=storefront_settings.storefront_probe_interval_s,
                              on_back=replay_set_aside)
    await producer.start()
    pool = None
    reconciler: asyncio.Task[None] | None = None
    prober = asyncio.create_task(runner.probe_loop())
    rechecking = asyncio.create_task(recheck_set_aside())
    try:
        shops = reconcile_targets(storefronts, storefront_settings)
        if shops and settings.database_url:
            pool = await create_pool(settings.database_url, max_size=2)

            async def publish(hooks: list[InboundWebhook]) -> None:
                futures = [await producer.send(topics.WEBHOOKS_INBOUND, key=message_key(h), value=encode(h)) for h in hooks]
                for future in futures:
                    await future

            reconciler = asyncio.create_task(reconcile_loop(pool, shops, publish, stop))
        elif shops:
            log.warning("OPS_DATABASE_URL is not set: the reconciliation of the stores' orders (lost webhooks) is off")
        while not catalogue_ready.is_set() and not stop.is_set():
            if follower.done():
                follower.result()  # raises what stopped it
            try:
                await asyncio.wait_for(catalogue_ready.wait(), 0.2)
            except TimeoutError:
                pass
        await consumer.start()
        consumer.subscribe([topics.INVENTORY_CHANGES, topics.STOREFRONT_COMMANDS])
        if ready is not None:
            ready.set()
        log.info("storefront running for %d stores", len(storefronts))
        while not stop.is_set():
            if follower.done():
                follower.result()
            runner.take_back()
            batch = await consumer.getmany(timeout_ms=200, max_records=500)
            fetched_at = time.monotonic()
            messages = [m for records in batch.values() for m in records]
            if not messages:
                continue
            started = time.perf_counter()
            try:
                await runner.handle(messages, fetched_at)
            except Stopped:
                break
            metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
            done: dict[TopicPartition, OffsetAndMetadata] = {}
            for tp, records in batch.items():
                done[tp] = OffsetAndMetadata(records[-1].offset + 1, "")
            await commit(consumer, done)
    finally:
        stop.set()
        follower.cancel()
        prober.cancel()
        rechecking.cancel()
        await runner.close()
        if reconciler is not None:
            reconciler.cancel()
        await asyncio.gather(follower, prober, rechecking, *([reconciler] if reconciler else []),
                             return_exceptions=True)
        if pool is not None:
            await pool.close()
        await consumer.stop()
        await producer.stop()
        for storefront in storefronts.values():
            await storefront.aclose()
