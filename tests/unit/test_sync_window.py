"""The syncer's page window (connectors/sync/runner.py): pages start as slots free up, and a
partition's offset is committed only past pages that have all finished."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import TopicPartition

from connectors.sync.runner import PageWindow


@dataclass
class Message:
    topic: str
    partition: int
    offset: int


def test_offsets_advance_only_past_finished_pages_and_slots_refill_at_once() -> None:
    async def main() -> None:
        gates = {offset: asyncio.Event() for offset in range(8)}
        finished: list[int] = []

        async def work(message: Message) -> None:
            await gates[message.offset].wait()
            finished.append(message.offset)

        window = PageWindow(work, size=3)
        for offset in range(3):
            window.start(Message("sync.jobs", 0, offset))
        assert window.room == 0 and window.busy
        tp = TopicPartition("sync.jobs", 0)

        gates[1].set()  # a later page ends first: nothing to commit yet, but its slot is free
        await window.wait_any(None)
        assert finished == [1] and window.done_offsets() == {} and window.room == 1
        window.start(Message("sync.jobs", 0, 3))

        gates[0].set()  # the first ends: commit past 0 and 1, not past 2 (running)
        await window.wait_any(None)
        assert window.done_offsets() == {tp: 2} and window.done_offsets() == {}

        gates[3].set()
        await window.wait_any(None)
        assert window.done_offsets() == {}  # page 2 still runs
        gates[2].set()
        await window.wait_any(None)
        assert window.done_offsets() == {tp: 4} and not window.busy and window.room == 3

        window.start(Message("sync.jobs", 1, 7))  # never finishes: cancelled on stop, not committed
        await window.drain(0.05)
        assert window.done_offsets() == {}
        window.cancel()

    asyncio.run(main())
