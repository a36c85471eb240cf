"""streams/outputs.py: nothing handed to the producer is forgotten before a commit.

A batch the producer refuses stays buffered and goes with the next send; a
delivery that failed stops every later flush (the records it held are lost,
and a commit past them would lose their transitions for good).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from streams.outputs import Outputs


class FakeBatch:
    def __init__(self) -> None:
        self.records: list[bytes] = []

    def append(self, key: bytes, value: bytes | None, timestamp: Any) -> object:
        self.records.append(value or b"")
        return object()


class FakeProducer:
    """Hands over batches like aiokafka's; refuses the next ``refuse`` of them."""

    def __init__(self) -> None:
        self.handed: list[tuple[str, int, list[bytes], asyncio.Future[Any]]] = []
        self.refuse = 0

    def create_batch(self) -> FakeBatch:
        return FakeBatch()

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        await asyncio.sleep(0)
        if self.refuse:
            self.refuse -= 1
            raise TimeoutError("no room for the batch")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.handed.append((topic, partition, list(batch.records), future))
        return future

    def ack_all(self) -> None:
        for *_, future in self.handed:
            if not future.done():
                future.set_result(None)


def outputs() -> tuple[Outputs, FakeProducer]:
    producer = FakeProducer()
    app = SimpleNamespace(producer=SimpleNamespace(_ensure_producer=lambda: producer))
    return Outputs(app), producer


def test_batches_a_refused_send_left_behind_go_with_the_next_send() -> None:
    async def run() -> None:
        out, producer = outputs()
        for p in range(3):
            out.add("changelog", p, b"k", f"r{p}".encode())
        producer.refuse = 1
        with pytest.raises(TimeoutError):
            await out.send()
        assert out.pending > 0
        out.add("changelog", 0, b"k", b"later")

        task = asyncio.ensure_future(out.send(wait=True))
        while len(producer.handed) < 4:
            await asyncio.sleep(0)
        assert not task.done()  # a flush waits for the acknowledgements
        producer.ack_all()
        await task
        sent = [(p, records) for _, p, records, _ in producer.handed]
        assert sorted(r for _, records in sent for r in records) == [b"later", b"r0", b"r1", b"r2"]
        # A partition's records keep their order.
        assert [r for p, records in sent if p == 0 for r in records] == [b"r0", b"later"]

    asyncio.run(run())


def test_a_failed_delivery_stops_every_later_flush() -> None:
    async def run() -> None:
        out, producer = outputs()
        out.add("changelog", 0, b"k", b"lost")
        await out.send()  # a timer's send: nobody waits for it
        producer.handed[0][3].set_exception(ConnectionError("broker gone"))
        with pytest.raises(ConnectionError):
            await out.send(wait=True)
        out.add("changelog", 0, b"k", b"next")
        send = asyncio.ensure_future(out.send(wait=True))
        while len(producer.handed) < 2:
            await asyncio.sleep(0)
        producer.ack_all()
        with pytest.raises(ConnectionError):
            await send

    asyncio.run(run())


def test_a_cancelled_flush_leaves_its_batches_to_the_next() -> None:
    async def run() -> None:
        out, producer = outputs()
        out.add("changelog", 0, b"k", b"r")
        flush = asyncio.ensure_future(out.send(wait=True))
        while not producer.handed:
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        flush.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flush
        again = asyncio.ensure_future(out.delivered())
        await asyncio.sleep(0)
        assert not again.done()  # still waits for the batch the cancelled flush handed over
        producer.ack_all()
        await again

    asyncio.run(run())


def test_partition_for_is_kafkas_default_partitioner_also_from_its_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    from aiokafka.partitioner import DefaultPartitioner

    from streams import outputs as outputs_module

    out, producer = outputs()
    producer.client = SimpleNamespace(cluster=SimpleNamespace(partitions_for_topic=lambda topic: set(range(8))))
    monkeypatch.setattr(outputs_module, "PARTITION_CACHE_KEYS", 5)  # cleared several times below
    keys = [f"store-{i}".encode() for i in range(12)]
    expected = [DefaultPartitioner()(key, list(range(8)), list(range(8))) for key in keys]
    for _ in range(3):  # computed, then remembered (or computed again after a clear)
        assert [out.partition_for("inventory.changes", key) for key in keys] == expected
    assert len(out._partition_of) <= 5
    assert len(set(expected)) > 1  # the keys do not all land on one partition
