"""What a worker can say about its own consumption: lag and queue depths.

Read from the Faust app's live objects, cheaply enough for a gauge refresh or
a ``/health`` request; no broker round trip.

- **Consumer lag** per input topic and partition this worker owns: the high
  watermark the last fetch reported minus the offset the group committed
  (before the first commit: the position after the last message read, or
  the consumer's position; an empty partition lags by 0). The high watermark
  comes from Fetch responses, which are right on the embedded broker too
  (its ListOffsets answer is not: docs in streams/embedded.py). Changelog
  partitions (standbys, recovery) are not consumer-group input and are left
  out.
- **Stream buffers**: events fetched and handed to an agent's stream, not yet
  taken by the agent, per agent, with the buffer's capacity.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust


@dataclass(frozen=True)
class Buffer:
    agent: str
    events: int
    capacity: int


def _is_changelog(topic: str) -> bool:
    return topic.endswith("-changelog")


async def consumer_lag(app: faust.App) -> dict[tuple[str, int], int]:
    """(topic, partition) -> messages not committed, for the input partitions this worker owns."""
    consumer = app.consumer
    committed_offsets = getattr(consumer, "_committed_offset", {})
    read_offsets = getattr(consumer, "_read_offset", {})
    lag: dict[tuple[str, int], int] = {}
    for tp in sorted(app.assignor.assigned_actives()):
        if _is_changelog(tp.topic):
            continue
        try:
            high = consumer.highwater(tp)
        except Exception:  # not fetched from yet, or assignment just changed
            continue
        if high is None:
            continue
        committed = committed_offsets.get(tp)  # .get: the defaultdict must not grow here
        if committed is None and int(high) == 0:
            committed = 0  # an empty partition: nothing to lag behind
        if committed is None:
            # Not committed yet: the position after the last message handed to the
            # streams, known in this thread. Asking the consumer thread (position())
            # waits behind its fetching: with a backlog, 30 ms per partition, and
            # /health took over a second.
            read = read_offsets.get(tp)
            committed = None if read is None else read + 1
        if committed is None:
            try:
                committed = await consumer.position(tp)
            except Exception:
                continue
            if committed is None:
                continue
        lag[(tp.topic, tp.partition)] = max(0, int(high) - int(committed))
    return lag


def stream_buffers(app: faust.App) -> list[Buffer]:
    """Events waiting in each agent's stream queues (summed over its actors)."""
    buffers = []
    for name, agent in sorted(app.agents.items()):
        events = 0
        capacity = 0
        for actor in list(getattr(agent, "_actors", ())):
            queue = getattr(getattr(actor.stream, "channel", None), "queue", None)
            if queue is None:
                continue
            events += queue.qsize()
            capacity += queue.maxsize or app.conf.stream_buffer_maxsize
        buffers.append(Buffer(agent=name.rsplit(".", 1)[-1], events=events, capacity=capacity))
    return buffers
