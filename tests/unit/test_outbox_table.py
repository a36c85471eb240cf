"""streams/outbox.py's OutboxTable (the orders, webhook and video agents' tables).

A changelog record carries the outputs of its transition (its outbox) until
the input offset is committed, so the state and its outputs become durable
together. Recovery and compaction keep only the newest record of a key, and
the records of one flush land in no guaranteed order: a record must carry the
outputs of the key's older records too until they are known delivered. A
recovered record that still carries an outbox is sent again.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson
from faust.types import TP

from streams.outbox import Output, OutboxTable
from tests.unit.test_inventory_resend import FakeTable, RefusingOutputs, ValueOutputs

INPUT = "orders.events"
CHANGELOG = "orders-changelog"


def output(n: int) -> Output:
    return ("orders.commands", f"o{n}".encode(), orjson.dumps({"command_id": f"c{n}"}))


def message(offset: int, partition: int = 3) -> Any:
    return SimpleNamespace(
        topic=INPUT, partition=partition, offset=offset, tp=TP(topic=INPUT, partition=partition),
    )


class FakeApp:
    """What ``OutboxTable.attach`` hooks into: Faust's table manager callbacks."""

    def __init__(self) -> None:
        async def on_rebalance(assigned: Any, revoked: Any, newly_assigned: Any, generation_id: int = 0) -> None:
            pass

        self.tables = SimpleNamespace(
            on_commit=lambda offsets: None, on_rebalance=on_rebalance, on_partitions_revoked=lambda revoked: None,
        )

    def commit(self, offsets: dict[Any, int]) -> None:
        self.tables.on_commit(offsets)

    async def assigned(self, assigned: set[Any]) -> None:
        await self.tables.on_rebalance(assigned, set(), assigned)

    def assign(self, assigned: set[Any]) -> None:
        asyncio.run(self.assigned(assigned))

    def revoke(self, revoked: set[Any]) -> None:
        self.tables.on_partitions_revoked(revoked)


def store() -> tuple[OutboxTable, ValueOutputs, FakeApp]:
    outputs = ValueOutputs()
    table = OutboxTable(FakeTable("orders"), outputs)
    app = FakeApp()
    table.attach(app)  # type: ignore[arg-type]
    app.assign({TP(topic=INPUT, partition=3), TP(topic=CHANGELOG, partition=3)})
    return table, outputs, app


def records(outputs: ValueOutputs, key: str = "k") -> list[bytes]:
    return [v for t, k, v in outputs.values if t == CHANGELOG and k == key and v is not None]


def outbox(raw: bytes) -> list[Output]:
    return OutboxTable.outbox_of(orjson.loads(raw))


def sent(outputs: ValueOutputs) -> list[Output]:
    return [(t, k.encode(), v) for t, k, v in outputs.values if t != CHANGELOG and v is not None]


# --------------------------------------------------------------------------- #
# a record carries the outputs of the key's records not known delivered
# --------------------------------------------------------------------------- #


def test_a_record_carries_the_outputs_of_the_keys_unconfirmed_records_each_once() -> None:
    table, outputs, app = store()
    table.write(message(10), "k", {"n": 1}, [output(1)])
    # The next transition emits output 1 again (same bytes) and a new one.
    table.write(message(11), "k", {"n": 2}, [output(1), output(2)])
    assert outbox(records(outputs)[-1]) == [output(1), output(2)]
    assert table.table.data["k"] == OutboxTable.encode({"n": 2}, [])  # memory holds the plain value

    app.commit({TP(topic=INPUT, partition=3): 12})  # delivered: the record is written plain, nothing is carried any more
    assert outbox(records(outputs)[-1]) == []
    table.write(message(12), "k", {"n": 3}, [output(3)])
    assert outbox(records(outputs)[-1]) == [output(3)]


def test_a_message_still_in_hand_after_a_revocation_carries_the_outputs_forward() -> None:
    """Its record replaces the older one for the next owner, who sends again only
    what the newest record carries."""
    table, outputs, app = store()
    tp = TP(topic=INPUT, partition=3)
    table.write(message(10), "k", {"n": 1}, [output(1)])
    app.revoke({tp, TP(topic=CHANGELOG, partition=3)})
    table.write(message(11), "k", {"n": 2}, [output(2)])
    assert outbox(records(outputs)[-1]) == [output(1), output(2)]
    app.commit({tp: 12})  # Faust's last commit: the records keep their outboxes for the next owner
    assert outbox(records(outputs)[-1]) == [output(1), output(2)]

    # The partition comes back (recovered meanwhile): those outputs no longer ride along.
    app.assign({tp})
    table.write(message(12), "k", {"n": 3}, [output(3)])
    assert outbox(records(outputs)[-1]) == [output(3)]
    app.commit({tp: 13})
    assert outbox(records(outputs)[-1]) == []


def test_letting_go_of_one_partition_keeps_carrying_on_the_others() -> None:
    table, outputs, app = store()
    tp, other = TP(topic=INPUT, partition=3), TP(topic=INPUT, partition=5)
    app.assign({tp, other})
    table.write(message(20, partition=5), "j", {"n": 1}, [output(1)])
    app.revoke({tp, TP(topic=CHANGELOG, partition=3)})
    app.assign({other})
    table.write(message(21, partition=5), "j", {"n": 2}, [output(2)])
    assert outbox(records(outputs, "j")[-1]) == [output(1), output(2)]


def test_recovery_keeps_the_outputs_of_consecutive_records_with_outboxes() -> None:
    """Records written before the writer carried outputs forward: recovery merges them;
    a plain record between means what came before it was delivered."""
    first = OutboxTable.encode({"n": 1}, [output(1)])
    second = OutboxTable.encode({"n": 2}, [output(2)])
    plain = OutboxTable.encode({"n": 1}, [])

    heir, heir_outputs, _ = store()
    for raw in (first, second):
        heir.table.data["k"] = raw
        heir.on_changelog_record("k", 3, raw)
    assert asyncio.run(heir.resend_recovered({3})) == 1
    assert sent(heir_outputs) == [output(1), output(2)]
    assert outbox(records(heir_outputs)[-1]) == []

    heir2, heir2_outputs, _ = store()
    for raw in (first, plain, second):
        heir2.table.data["k"] = raw
        heir2.on_changelog_record("k", 3, raw)
    assert asyncio.run(heir2.resend_recovered({3})) == 1
    assert sent(heir2_outputs) == [output(2)]


def test_records_of_partitions_not_owned_wait_for_their_owner() -> None:
    heir, outputs, _ = store()
    raw = OutboxTable.encode({"n": 1}, [output(1)])
    heir.table.data["k"] = raw
    heir.on_changelog_record("k", 3, raw)
    assert asyncio.run(heir.resend_recovered({0, 1})) == 0
    assert outputs.values == []
    assert "k" in heir.recovered


# --------------------------------------------------------------------------- #
# a resend the broker refuses is retried, while the partitions are ours
# --------------------------------------------------------------------------- #


async def recovered_store() -> tuple[OutboxTable, RefusingOutputs, FakeApp]:
    """A worker that recovered a record of partition 3 still carrying its outbox (output 1)."""
    outputs = RefusingOutputs()
    table = OutboxTable(FakeTable("orders"), outputs)
    table.resend_backoff_s = (0.001, 0.005)
    app = FakeApp()
    table.attach(app)  # type: ignore[arg-type]
    await app.assigned({TP(topic=INPUT, partition=3), TP(topic=CHANGELOG, partition=3)})
    raw = OutboxTable.encode({"n": 1}, [output(1)])
    table.table.data["k"] = raw
    table.on_changelog_record("k", 3, raw)
    return table, outputs, app


async def settled(table: OutboxTable) -> None:
    task = table._resend_task
    assert task is not None
    await asyncio.wait([task], timeout=5)
    assert task.done()


def test_a_refused_resend_is_retried_until_acknowledged_then_the_record_is_written_plain() -> None:
    async def scenario() -> None:
        table, outputs, _ = await recovered_store()

        assert await table.resend_recovered({3}) == 0  # refused: Faust's recovery goes on
        assert ("refused",) in outputs.events
        while outputs.events.count(("refused",)) < 3:
            await asyncio.sleep(0.001)
        assert records(outputs) == []  # nothing plain before an acknowledgement
        outputs.refuse = False
        await settled(table)

        acked = outputs.events.index(("acked",))
        writes = [i for i, e in enumerate(outputs.events) if e == ("add", CHANGELOG, "k")]
        assert writes and all(i > acked for i in writes)
        assert outbox(records(outputs)[-1]) == []
        assert output(1) in sent(outputs)
        assert table.recovered == {}

    asyncio.run(scenario())


def test_a_newer_record_carries_the_outputs_being_resent_and_its_commit_waits_for_their_ack() -> None:
    async def scenario() -> None:
        table, outputs, app = await recovered_store()
        tp = TP(topic=INPUT, partition=3)
        await table.resend_recovered({3})

        table.write(message(20), "k", {"n": 2}, [output(2)])  # the streams resumed: a newer transition
        newer = records(outputs)[-1]
        assert outbox(newer) == [output(1), output(2)]
        app.commit({tp: 21})  # delivered its own outputs only: the record keeps its outbox
        assert records(outputs)[-1] == newer

        outputs.refuse = False
        await settled(table)
        assert outbox(records(outputs)[-1]) == []
        table.write(message(22), "k", {"n": 3}, [output(3)])
        assert outbox(records(outputs)[-1]) == [output(3)]  # nothing carried any more

    asyncio.run(scenario())


def test_an_assignment_that_keeps_the_partition_keeps_carrying_the_outputs_being_resent() -> None:
    async def scenario() -> None:
        table, outputs, app = await recovered_store()
        tp = TP(topic=INPUT, partition=3)
        await table.resend_recovered({3})
        await app.assigned({tp, TP(topic=CHANGELOG, partition=3)})  # a rebalance that revoked nothing
        table.write(message(20), "k", {"n": 2}, [output(2)])
        assert outbox(records(outputs)[-1]) == [output(1), output(2)]
        table._stop_resend_retry()

    asyncio.run(scenario())


def test_letting_the_partition_go_stops_the_retry_and_keeps_the_outbox_for_the_next_recovery() -> None:
    async def scenario() -> None:
        table, outputs, app = await recovered_store()
        tp = TP(topic=INPUT, partition=3)
        await table.resend_recovered({3})
        task = table._resend_task

        app.revoke({tp, TP(topic=CHANGELOG, partition=3)})
        await asyncio.wait([task], timeout=5)  # type: ignore[list-item]
        assert task is not None and task.cancelled()
        assert table.recovered["k"] == (3, [output(1)])
        assert records(outputs) == []

        # The partition comes back and the broker answers: sent again then.
        await app.assigned({tp, TP(topic=CHANGELOG, partition=3)})
        outputs.refuse = False
        assert await table.resend_recovered({3}) == 1
        assert outbox(records(outputs)[-1]) == []

    asyncio.run(scenario())


def test_a_stop_ends_a_retry_that_waits_on_a_send_that_never_returns() -> None:
    async def scenario() -> None:
        table, outputs, app = await recovered_store()
        table.resend_wait_s = 0.01
        outputs.hang = True
        # Gave up waiting: Faust's recovery goes on (wait_for: a callback that never returns fails the test).
        assert await asyncio.wait_for(table.resend_recovered({3}), 5) == 0
        task = table._resend_task
        assert task is not None and not task.done()

        app.revoke({TP(topic=INPUT, partition=3), TP(topic=CHANGELOG, partition=3)})  # a stop lets every partition go
        await asyncio.wait([task], timeout=5)
        assert task.cancelled()
        assert "k" in table.recovered

    asyncio.run(scenario())
