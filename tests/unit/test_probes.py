"""streams/probes.py: consumer lag and stream buffers from the app's live objects.

Stand-ins carry only the attributes the probes read (a Faust app needs a broker);
tests/integration/test_observability.py reads the same figures from real workers.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from aiokafka.structs import TopicPartition as TP

from streams import probes


class Consumer:
    def __init__(self, high: dict[TP, int | None], committed: dict[TP, int], positions: dict[TP, int]) -> None:
        self.high = high
        self._committed_offset: defaultdict[TP, int | None] = defaultdict(lambda: None, committed)
        self.positions = positions

    def highwater(self, tp: TP) -> int | None:
        if tp not in self.high:
            raise KeyError(tp)  # not assigned to the fetcher (yet)
        return self.high[tp]

    async def position(self, tp: TP) -> int | None:
        return self.positions.get(tp)


def app(actives: set[TP], consumer: Consumer, agents: dict[str, Any] | None = None) -> Any:
    return SimpleNamespace(
        consumer=consumer,
        assignor=SimpleNamespace(assigned_actives=lambda: actives),
        agents=agents or {},
        conf=SimpleNamespace(stream_buffer_maxsize=100),
    )


def test_lag_is_high_watermark_minus_committed_offset() -> None:
    a0, a1, b0 = TP("orders.events", 0), TP("orders.events", 1), TP("alerts", 0)
    changelog = TP("ops-engine-orders-changelog", 0)
    unfetched = TP("orders.events", 2)
    consumer = Consumer(
        high={a0: 120, a1: 7, b0: None, changelog: 999},
        committed={a0: 100, changelog: 1},
        positions={a1: 5},
    )
    lag = asyncio.run(probes.consumer_lag(app({a0, a1, b0, changelog, unfetched}, consumer)))
    # a1 has no commit yet: its position stands in; b0 was never fetched; changelogs are not input.
    assert lag == {("orders.events", 0): 20, ("orders.events", 1): 2}
    assert unfetched not in consumer._committed_offset  # reading did not grow Faust's defaultdict


def test_lag_never_negative() -> None:
    tp = TP("orders.events", 0)
    consumer = Consumer(high={tp: 10}, committed={tp: 12}, positions={})
    assert asyncio.run(probes.consumer_lag(app({tp}, consumer))) == {("orders.events", 0): 0}


def test_stream_buffers_sum_each_agents_actors() -> None:
    def actor(size: int, maxsize: int) -> Any:
        queue = SimpleNamespace(qsize=lambda: size, maxsize=maxsize)
        return SimpleNamespace(stream=SimpleNamespace(channel=SimpleNamespace(queue=queue)))

    agents = {
        "agents.orders.orders": SimpleNamespace(_actors=[actor(3, 0), actor(4, 0)]),
        "inventory": SimpleNamespace(_actors=[actor(50, 64)]),
    }
    buffers = probes.stream_buffers(app(set(), Consumer({}, {}, {}), agents))
    assert buffers == [
        probes.Buffer(agent="orders", events=7, capacity=200),  # maxsize 0: the app's stream_buffer_maxsize
        probes.Buffer(agent="inventory", events=50, capacity=64),
    ]
