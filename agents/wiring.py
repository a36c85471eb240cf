"""What the orders agent and the webhook router wire the same way.

- ``run_agent``: a Faust agent that hands each event to a handler, times it
  (``ops_event_processing_seconds{agent}``) and sends the buffered outputs
  when they are due (streams/outputs.py).
- ``dead_letter``: the ``deadletter`` output of a refused record, counted and
  logged by ids (never the value: it may hold personal data).
- ``active_partitions``: the partitions of a topic this worker owns now.

Each agent's handling is timed (``ops_event_processing_seconds{agent}``) and
lets the loop run other tasks (the web server's requests) at least every
``YIELD_AFTER_S`` of handling.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import faust

from connectors import metrics
from models.events import DeadLetter, DeadLetterReason
from streams import topics
from streams.app import Engine
from streams.codecs import encode
from streams.outbox import Output

log = logging.getLogger(__name__)


#: Longest stretch of handling before the agent lets the loop run other tasks, s.
YIELD_AFTER_S = 0.002


def run_agent(engine: Engine, topic: faust.TopicT, name: str, handle: Callable[[faust.EventT], None]) -> Any:
    """An agent ``name`` on ``topic`` calling ``handle`` for each event."""
    outputs = engine.outputs
    observe = metrics.PROCESSING_SECONDS.labels(name).observe

    async def agent(stream: faust.StreamT) -> None:
        # A buffered stream hands its events over without ever yielding to the
        # loop: a fetched batch of a few hundred would hold the web server's
        # requests (the webhook ingress) for tens of milliseconds.
        clock = time.perf_counter
        since = clock()
        async for event in stream.events():
            started = clock()
            handle(event)
            observe(clock() - started)
            if outputs.due():
                await outputs.send()
                since = clock()
            elif clock() - since > YIELD_AFTER_S:
                await asyncio.sleep(0)
                since = clock()

    agent.__name__ = name
    return engine.app.agent(topic, name=name)(agent)


def dead_letter(
    message: Any, reason: DeadLetterReason, detail: str, value: bytes | None = None, log_detail: bool = False
) -> Output:
    """The ``deadletter`` record of ``message`` (``value`` in place of its own, if given)."""
    record = DeadLetter.of(message, reason, detail, value)
    metrics.DEADLETTERS.labels(reason.value).inc()
    extra = detail[:300].replace("\n", " ") if log_detail else ""
    log.warning("deadletter %s[%s]@%s: %s %s", message.topic, message.partition, message.offset, reason.value, extra)
    return (topics.DEADLETTER, message.topic.encode(), encode(record))


def active_partitions(app: faust.App, topic: str) -> set[int]:
    return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}
