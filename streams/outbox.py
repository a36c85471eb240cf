"""Outboxes in changelog records, dropped once their input offset is committed.

An agent that writes a table entry and sends outputs for one input message
must not keep the one and lose the other in a crash. Faust flushes the
producer before it commits input offsets, but the records of one flush reach
different partitions in no guaranteed order: a crash can leave the changelog
record (the new state) without the output records, and the replayed input is
then a duplicate that changes nothing. So the changelog record carries the
outputs too (its *outbox*) until the input offset is committed, and whoever
recovers a record that still has an outbox sends it again (the outputs' ids
are deterministic, their readers deduplicate).

This ledger remembers which keys were written with an outbox at which input
offset. When Faust commits past that offset, the agent rewrites the record
without the outbox (``rewrite(partition, key)``). Only partitions this worker
still owns are tracked: a record rewritten after its partition was let go
could land after the new owner's writes and roll its state back.

The inventory agent (agents/inventory.py) keeps its own copy of this
bookkeeping, fused with its hot path; the orders agent uses this one.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

import faust


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


def hook(app: faust.App, ledger: OutboxLedger) -> None:
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
