"""Outboxes in changelog records, dropped once their input offset is committed.

An agent that writes a table entry and sends outputs for one input message
must not keep the one and lose the other in a crash. Faust flushes the
producer before it commits input offsets, but the records of one flush reach
different partitions in no guaranteed order: a crash can leave the changelog
record (the new state) without the output records, and the replayed input is
then a duplicate that changes nothing. So the changelog record carries the
outputs too (its *outbox*) until the input offset is committed, and whoever
recovers a record that still has an outbox sends it again (the outputs' ids
are deterministic, their readers deduplicate), and writes it plain only once
they are acknowledged; a send the broker refuses or does not acknowledge in
time is retried in the background with a bounded backoff while the partition
stays the worker's (a revocation or a stop hands it back to the next
recovery, and never waits on it). Recovery and compaction keep
only a key's newest record, so each record of a key also carries the outputs
of the key's older records not known delivered (each once), and recovery
merges consecutive records with outboxes (no plain record between).

This ledger remembers which keys were written with an outbox at which input
offset. When Faust commits past that offset, the agent rewrites the record
without the outbox (``rewrite(partition, key)``). Only partitions this worker
still owns are tracked: a record rewritten after its partition was let go
could land after the new owner's writes and roll its state back.

``OutboxTable`` puts the two together for a table of JSON objects (the orders,
webhook and video agents). The inventory agent (agents/inventory.py) keeps its own
copy of this bookkeeping, fused with its compact encoding on the hot path; both
send recovered outboxes again through ``ResendRetry``.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any, Protocol

import faust
import orjson

log = logging.getLogger(__name__)


class OutboxLedger:
    def __init__(self, rewrite: Callable[[int, str], None]) -> None:
        self._rewrite = rewrite
        self._pending: dict[Any, deque[tuple[int, str]]] = defaultdict(deque)
        self._latest: dict[str, tuple[Any, int]] = {}
        self.owned: set[Any] = set()

    def wrote(self, tp: Any, offset: int, key: str) -> None:
        """``key`` was written with an outbox while handling ``tp``@``offset``."""
        if tp in self.owned:
            self._pending[tp].append((offset, key))
            self._latest[key] = (tp, offset)

    def has_pending(self, key: str) -> bool:
        """The record of ``key`` still carries an outbox not known committed."""
        return key in self._latest

    def on_committed(self, offsets: Any) -> None:
        for tp, committed in offsets.items():
            queue = self._pending.get(tp)
            while queue and queue[0][0] < committed:
                offset, key = queue.popleft()
                if self._latest.get(key) == (tp, offset):
                    del self._latest[key]
                    self._rewrite(tp.partition, key)

    def on_assigned(self, assigned: Any) -> None:
        self.owned = set(assigned)

    def on_letting_go(self, revoked: Any) -> None:
        self.owned.difference_update(revoked)
        for tp in revoked:
            for offset, key in self._pending.pop(tp, ()):
                if self._latest.get(key) == (tp, offset):
                    del self._latest[key]


class Follower(Protocol):
    """What ``hook`` feeds: an ``OutboxLedger``, or an ``OutboxTable`` that passes it on."""

    def on_committed(self, offsets: Any) -> None: ...

    def on_assigned(self, assigned: Any) -> None: ...

    def on_letting_go(self, revoked: Any) -> None: ...


def hook(app: faust.App, ledger: Follower) -> None:
    """Feed the ledger Faust's commits, assignments and revocations."""
    tables = app.tables
    faust_on_commit = tables.on_commit
    faust_on_rebalance = tables.on_rebalance
    faust_on_revoked = tables.on_partitions_revoked

    def on_commit(offsets: Any) -> None:
        faust_on_commit(offsets)
        ledger.on_committed(offsets)

    async def on_rebalance(assigned: Any, revoked: Any, newly_assigned: Any, generation_id: int = 0) -> None:
        ledger.on_assigned(assigned)
        await faust_on_rebalance(assigned, revoked, newly_assigned, generation_id=generation_id)

    def on_partitions_revoked(revoked: Any) -> None:
        ledger.on_letting_go(revoked)
        faust_on_revoked(revoked)

    tables.on_commit = on_commit  # type: ignore[method-assign]
    tables.on_rebalance = on_rebalance  # type: ignore[method-assign]
    tables.on_partitions_revoked = on_partitions_revoked  # type: ignore[method-assign]


Output = tuple[str, bytes, bytes]  # topic, key, value

#: How long ``resend_recovered`` waits for the outputs it sends again before it leaves
#: them to its retry task (Faust resumes no stream until every recovery callback returns).
RESEND_WAIT_S = 10.0
#: The retry task's backoff: the first wait, doubled after each failure up to the last.
RESEND_BACKOFF_S = (0.5, 30.0)


class ResendRetry(ABC):
    """Sending recovered outboxes again until the broker acknowledges them.

    Faust awaits the ``on_recover`` callbacks before it resumes any stream, and
    only logs what they raise. So a resend waits at most ``resend_wait_s`` for
    its acknowledgement (``_resend_with_retry``); on a failure or a timeout a
    task retries it with a doubling backoff (``_retry_resend``) while the
    streams go on, until nothing is left, and a revocation or a stop cancels it
    (``_stop_resend_retry``). The class using it keeps the entries being sent
    in ``_resending`` and sends them once in ``_resend_once``. Used by
    ``OutboxTable`` and by the inventory agent (agents/inventory.py).
    """

    _resending: dict[str, Any]  # key -> entry, whose first element is the partition
    outputs: Any
    #: What the log calls the entries ("recovered transitions", ...).
    resend_what = "recovered records"

    def _init_resend_retry(self) -> None:
        self._resend_task: asyncio.Task[None] | None = None
        self.resend_wait_s = RESEND_WAIT_S
        self.resend_backoff_s = RESEND_BACKOFF_S

    @abstractmethod
    def _send_again(self, key: str, entry: Any) -> None:
        """Hand an entry's outputs to ``outputs``."""

    @abstractmethod
    def _sent_again(self, key: str, partition: int) -> None:
        """The entry's outputs are acknowledged: write its record plain (unless a newer one waits)."""

    def _give_back_resends(self, let_go: set[int], recovered: dict[str, Any]) -> None:
        """Partitions let go: their entries being sent again go back to ``recovered`` (the
        next recovery that gives this worker the partition sends them); the retry task
        stops when nothing is left."""
        for key, entry in list(self._resending.items()):
            if entry[0] in let_go:
                del self._resending[key]
                recovered.setdefault(key, entry)
        if not self._resending:
            self._stop_resend_retry()

    async def _resend_once(self) -> int:
        """Send the outboxes of ``_resending`` and wait for their acknowledgement; then
        ``_sent_again`` for each still ours. Returns how many were acknowledged."""
        attempt = list(self._resending.items())
        for key, entry in attempt:
            self._send_again(key, entry)
        await self.outputs.send(wait=True)
        done = 0
        for key, entry in attempt:
            if self._resending.get(key) is not entry:
                continue  # let go meanwhile (or taken again by a later recovery)
            del self._resending[key]
            done += 1
            self._sent_again(key, entry[0])
        if done:
            log.warning("sent again the outputs of %d %s", done, self.resend_what)
        return done

    async def _resend_with_retry(self) -> int:
        """One attempt, waited for at most ``resend_wait_s``; then the retry task's business."""
        self._stop_resend_retry()  # this attempt covers what it was retrying
        try:
            return await asyncio.wait_for(self._resend_once(), self.resend_wait_s)
        except Exception as exc:  # the broker refused or timed out: retried in the background
            log.warning(
                "could not send again the outputs of %d %s (%s: %s): retrying",
                len(self._resending), self.resend_what, type(exc).__name__, exc,
            )
            self._resend_task = asyncio.get_running_loop().create_task(self._retry_resend())
            return 0

    async def _retry_resend(self) -> None:
        """Retry ``_resend_once`` until nothing is left to send again (``_stop_resend_retry`` cancels it).

        A delivery that failed stops every later flush of ``Outputs`` (and so
        every commit, which ends the worker): these attempts then fail until the
        stop lets the partitions go.
        """
        delay, longest = self.resend_backoff_s
        failures = 1
        while self._resending:
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)
            try:
                await self._resend_once()
            except Exception as exc:
                failures += 1
                log.warning(
                    "could not send again the outputs of %d %s, %d failures (%s: %s): retrying in %.1f s",
                    len(self._resending), self.resend_what, failures, type(exc).__name__, exc, delay,
                )
        log.warning("outputs of %s sent again after %d failed attempts", self.resend_what, failures)

    def _stop_resend_retry(self) -> None:
        task, self._resend_task = self._resend_task, None
        if task is not None and not task.done():
            task.cancel()


class OutboxTable(ResendRetry):
    """A table whose values are JSON objects and whose changelog records carry
    ``"outbox": [[topic, key, value], ...]`` until their input is committed.

    ``write`` stores the value (memory keeps it without the outbox), writes the
    changelog record with the outputs of this message and of the key's earlier
    records not yet known delivered, and sends the new outputs through
    ``outputs``. Faust's commits drop the outbox (``OutboxLedger``); a recovered
    record that still has one is sent again by ``resend_recovered``. Values and
    outputs are JSON.
    """

    def __init__(self, table: Any, outputs: Any) -> None:
        self.table = table
        self.outputs = outputs
        self.ledger = OutboxLedger(self._rewrite)
        self._changelog: str | None = None
        #: Per partition, per key: every output the key's records written here
        #: carried since its last plain record (not known delivered). Each new
        #: record of the key carries them all, as it replaces the older ones
        #: (recovery and compaction keep the newest record of a key only, and
        #: the records of one flush land in no guaranteed order). A partition's
        #: entries go at the first assignment that does not find it ours
        #: (``on_assigned``): its records are then the recovering owner's.
        self._unconfirmed: dict[int, dict[str, list[Output]]] = defaultdict(dict)
        #: Topics of the input messages written for (their partitions are the table's).
        self._inputs: set[str] = set()
        #: key -> (partition, outputs) of recovered records that still carry an
        #: outbox, with those of the key's older records read before it without
        #: a plain record between (records written before ``write`` carried them).
        self.recovered: dict[str, tuple[int, list[Output]]] = {}
        #: Recovered entries being sent again, until acknowledged (back to
        #: ``recovered`` if their partition is let go first).
        self._resending: dict[str, tuple[int, list[Output]]] = {}
        self._init_resend_retry()

    @property
    def resend_what(self) -> str:  # type: ignore[override]
        return f"recovered {self.changelog} records"

    @property
    def changelog(self) -> str:
        if self._changelog is None:
            self._changelog = self.table.changelog_topic.get_topic_name()
        return self._changelog

    @staticmethod
    def encode(body: dict[str, Any], outbox: list[Output]) -> bytes:
        return orjson.dumps({**body, "outbox": [[t, k.decode(), orjson.Fragment(v)] for t, k, v in outbox]})

    @staticmethod
    def outbox_of(body: dict[str, Any]) -> list[Output]:
        return [(t, k.encode(), orjson.dumps(v)) for t, k, v in body.get("outbox") or ()]

    def write(self, message: Any, key: str, body: dict[str, Any], new: list[Output]) -> None:
        """Store ``body`` under ``key`` for the message being handled, with its outputs.

        The record also carries the outputs of the key's earlier records not
        known delivered (sent already: carried, not sent again), each once.
        """
        partition = message.partition
        unconfirmed = self._unconfirmed[partition]
        carried = unconfirmed.get(key)
        outbox = carried + [o for o in new if o not in carried] if carried else new
        plain = self.encode(body, [])
        record = self.encode(body, outbox) if outbox else plain
        self.outputs.add(self.changelog, partition, key.encode(), record)
        self.table.data[key] = plain
        if outbox:
            unconfirmed[key] = outbox
            self._inputs.add(message.topic)
            self.ledger.wrote(message.tp, message.offset, key)
        for topic, out_key, value in new:
            self.outputs.add(topic, None, out_key, value)

    def attach(self, app: faust.App, on_record: Callable[[str, dict[str, Any] | None], None] | None = None) -> None:
        """Follow Faust's commits and rebalances (``hook``) and read the records
        recovery and standbys apply; ``on_record(key, body)`` sees each one too."""
        hook(app, self)

        async def on_changelog_event(event: Any) -> None:
            body = self.on_changelog_record(event.key, event.message.partition, event.message.value)
            if on_record is not None:
                on_record(event.key, body)

        self.table._on_changelog_event = on_changelog_event

    def delete(self, partition: int, key: str) -> None:
        """Remove ``key`` (a tombstone in the changelog)."""
        self.table.data.pop(key, None)
        self._unconfirmed[partition].pop(key, None)
        self.outputs.add(self.changelog, partition, key.encode(), None)

    def replace(self, partition: int, key: str, body: dict[str, Any]) -> None:
        """Replace the record of ``key`` by a plain ``body`` (the table and a changelog
        record, no outbox): an archive marker. Only for a ``settled`` key."""
        plain = self.encode(body, [])
        self.table.data[key] = plain
        self._unconfirmed[partition].pop(key, None)
        self.outputs.add(self.changelog, partition, key.encode(), plain)

    def settled(self, key: str) -> bool:
        """Every output of the key's records is known delivered: no outbox written
        here waits for its commit or its plain rewrite, and none recovered waits to
        be sent again."""
        return not (
            self.ledger.has_pending(key)
            or key in self.recovered
            or key in self._resending
            or any(key in unconfirmed for unconfirmed in self._unconfirmed.values())
        )

    def _rewrite(self, partition: int, key: str) -> None:
        """The outputs the key's record carries are delivered: write it plain."""
        if key in self._resending:
            return  # it carries recovered outputs not acknowledged yet: the resend rewrites it
        self._unconfirmed[partition].pop(key, None)
        raw = self.table.data.get(key)
        if raw is not None:
            self.outputs.add(self.changelog, partition, key.encode(), raw)

    # Faust's commits, assignments and revocations (``hook``)

    def on_committed(self, offsets: Any) -> None:
        self.ledger.on_committed(offsets)

    def on_assigned(self, assigned: Any) -> None:
        """A rebalance assigned these partitions.

        Outputs remembered for a partition that was not ours until now were
        written after it was let go (messages still in hand then, whose
        records keep their outboxes for the recovering owner): they must not
        ride into this owner's records should the partition come back.
        Outputs of recovered records still being sent again stay (their
        partitions were not let go, or they would be back in ``recovered``).
        """
        before = {tp.partition for tp in self.ledger.owned if tp.topic in self._inputs}
        before.update(partition for partition, _ in self._resending.values())
        for partition in [p for p in self._unconfirmed if p not in before]:
            del self._unconfirmed[partition]
        self.ledger.on_assigned(assigned)

    def on_letting_go(self, revoked: Any) -> None:
        """A revocation or a stop begins: the records of these partitions keep
        their outboxes for the next owner (messages still in hand meanwhile
        carry the outputs forward too).

        Recovered outboxes of these partitions still being sent again go back
        to ``recovered``: the next recovery that gives this worker the
        partition sends them again. The retry task stops when nothing is left.
        """
        self.ledger.on_letting_go(revoked)
        topics = self._inputs | {self.changelog}
        self._give_back_resends({tp.partition for tp in revoked if tp.topic in topics}, self.recovered)

    # recovery

    def on_changelog_record(self, key: str, partition: int, raw: bytes | None) -> dict[str, Any] | None:
        """Recovery (or a standby) read a record: note whether it carries an outbox; its body.

        A record with an outbox following another one of the key (no plain
        record between: nothing known delivered) keeps the outputs of both.
        """
        if raw is None:
            self.recovered.pop(key, None)
            return None
        body = orjson.loads(raw)
        if body.get("outbox"):
            outputs = self.outbox_of(body)
            previous = self.recovered.get(key)
            if previous is not None:
                outputs = [o for o in previous[1] if o not in outputs] + outputs
            self.recovered[key] = (partition, outputs)
        else:
            self.recovered.pop(key, None)
        return body

    async def resend_recovered(self, active_partitions: set[int]) -> int:
        """Send again the outboxes of recovered records this worker owns.

        The records lose their outboxes in the changelog only once the outputs
        sent again are acknowledged (a plain record durable before them would
        lose them for good). Until then a newer record of the key carries them
        (``_unconfirmed``), and its commit leaves the plain rewrite to the resend.

        Faust awaits this (an ``on_recover`` callback) before it resumes any
        stream, and only logs what it raises. So this waits at most
        ``resend_wait_s`` for the acknowledgement; on a failure or a timeout
        the outboxes stay in ``_resending`` and a task retries them with a
        bounded backoff (``_retry_resend``) while the streams go on. The task
        stops once everything is acknowledged, or once the partitions are let
        go (``on_letting_go``: a revocation or a stop), which hands the
        outboxes back to ``recovered`` for the next recovery.

        Returns the number of records whose outputs were acknowledged now.
        """
        for key, entry in list(self.recovered.items()):
            partition, outputs = entry
            if partition not in active_partitions:
                continue
            del self.recovered[key]
            raw = self.table.data.get(key)
            if raw is not None:  # memory keeps the value without the outbox
                self.table.data[key] = orjson.dumps({**orjson.loads(raw), "outbox": []})
            unconfirmed = self._unconfirmed[partition]
            carried = unconfirmed.get(key) or []
            unconfirmed[key] = carried + [o for o in outputs if o not in carried]
            self._resending[key] = entry
        if not self._resending:
            return 0
        return await self._resend_with_retry()

    def _send_again(self, key: str, entry: tuple[int, list[Output]]) -> None:
        for topic, out_key, value in entry[1]:
            self.outputs.add(topic, None, out_key, value)

    def _sent_again(self, key: str, partition: int) -> None:
        if not self.ledger.has_pending(key):  # else that record's commit rewrites it
            self._rewrite(partition, key)
