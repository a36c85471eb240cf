"""Outboxes in changelog records, dropped once their input offset is committed.

An agent that writes a table entry and sends outputs for one input message
must not keep the one and lose the other in a crash. Faust flushes the
producer before it commits input offsets, but the records of one flush reach
different partitions in no guaranteed order: a crash can leave the changelog
record (the new state) without the output records, and the replayed input is
then a duplicate that changes nothing. So the changelog record carries the
outputs too (its *outbox*) until the input offset is committed, and whoever
recovers a record that still has an outbox sends it again (the outputs' ids
are deterministic, their readers deduplicate). Recovery and compaction keep
only a key's newest record, so each record of a key also carries the outputs
of the key's older records not known delivered (each once), and recovery
merges consecutive records with outboxes (no plain record between).

This ledger remembers which keys were written with an outbox at which input
offset. When Faust commits past that offset, the agent rewrites the record
without the outbox (``rewrite(partition, key)``). Only partitions this worker
still owns are tracked: a record rewritten after its partition was let go
could land after the new owner's writes and roll its state back.

``OutboxTable`` puts the two together for a table of JSON objects (the orders
and webhook agents). The inventory agent (agents/inventory.py) keeps its own
copy of this bookkeeping, fused with its compact encoding on the hot path.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any, Protocol

import faust
import orjson


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


class OutboxTable:
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

    def _rewrite(self, partition: int, key: str) -> None:
        """The input of the key's last record is committed: its outputs are delivered."""
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
        """
        before = {tp.partition for tp in self.ledger.owned if tp.topic in self._inputs}
        for partition in [p for p in self._unconfirmed if p not in before]:
            del self._unconfirmed[partition]
        self.ledger.on_assigned(assigned)

    def on_letting_go(self, revoked: Any) -> None:
        """A revocation or a stop begins: the records of these partitions keep
        their outboxes for the next owner (messages still in hand meanwhile
        carry the outputs forward too)."""
        self.ledger.on_letting_go(revoked)

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
        """Send again the outboxes of recovered records this worker owns; then drop them."""
        resent: list[tuple[int, str]] = []
        for key, (partition, outputs) in list(self.recovered.items()):
            if partition not in active_partitions:
                continue
            del self.recovered[key]
            raw = self.table.data.get(key)
            if raw is None:
                continue
            body = orjson.loads(raw)
            for topic, out_key, value in outputs:
                self.outputs.add(topic, None, out_key, value)
            body["outbox"] = []
            self.table.data[key] = orjson.dumps(body)
            resent.append((partition, key))
        if resent:
            # Delivered first, then the records lose their outboxes.
            await self.outputs.send(wait=True)
            for partition, key in resent:
                self.outputs.add(self.changelog, partition, key.encode(), self.table.data[key])
        return len(resent)
