"""Faust's consumer loop without four asyncio Tasks per message.

``faust.transport.consumer.Consumer._drain_messages`` hands every fetched
message to the conductor with ``await self.wait_first(callback(message),
self.suspend_flow.wait())``: per message that makes four Tasks (the callback,
``suspend_flow.wait`` and the service's ``stopped``/``crashed`` waits), an
``asyncio.wait`` and three cancellations, about 60 us on this kind of machine,
more than our whole handling of a snapshot. It is why a minimal Faust agent
does 6,500-7,500 events/s where plain aiokafka does 170,000.

The callback (the conductor: match the topic, put the event on each stream's
queue) almost never has to wait. :func:`install` replaces the method with a
copy of faust-streaming 0.15.3's that starts the callback's coroutine by hand:

- it finishes without suspending (the common case): done, no Task at all;
- it suspends (a stream queue full, flow control): the rest of it runs in a
  Task, raced against ``suspend_flow`` exactly as Faust does, so a rebalance
  still abandons a message stuck on a full queue.

It also bounds the stream buffer in bytes. Faust bounds it in events
(``stream_buffer_maxsize``): single snapshots want a buffer above one fetch
round (16k-26k records here, or aiokafka's prefetch is dropped and fetched
again), but the same count of pages of 100 snapshots is a gigabyte. So the
loop waits while the values handed over and not yet acknowledged by the stream
exceed ``buffer_bytes`` (``OPS_STREAM_BUFFER_BYTES``; counted for the topics
streams acknowledge, not for changelogs read by recovery); what is not handed over
waits in aiokafka as raw batches. Faust clearing the buffers at a rebalance
resets the count.

Everything else of the loop (read offsets, gaps, ``commit_every``, the yield
every 100 messages, the stop/crash handling) is Faust's, line for line. The
method is private, so :func:`install` refuses any faust-streaming other than
the pinned one; re-check the copy against the new source when upgrading.
Installed for every broker (it changes no semantics); ``OPS_FAST_DRAIN=false``
leaves Faust's own loop in place.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from typing import Any, cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING, Consumer
from mode import Service

log = logging.getLogger(__name__)

#: The faust-streaming version the copy below was made from.
FAUST_VERSION = "0.15.3"
_MARKER = "__ops_engine_fast_drain__"


async def _finish(coro: Coroutine[Any, Any, Any], blocked_on: Any) -> Any:
    """Drive ``coro``, which has already yielded ``blocked_on``, to its end (what a Task does)."""
    while True:
        try:
            if blocked_on is None:  # a bare yield (asyncio.sleep(0))
                await asyncio.sleep(0)
            else:  # a future: wait for it without taking its result; the coroutine takes it
                await asyncio.wait([blocked_on])
        except asyncio.CancelledError:
            if blocked_on is not None:
                blocked_on.cancel()
            try:
                blocked_on = coro.throw(asyncio.CancelledError())
            except StopIteration as stop:
                return stop.value
            raise
        try:
            blocked_on = coro.send(None)
        except StopIteration as stop:
            return stop.value


class ByteBudget:
    """Bytes of message values handed to the streams and not yet acknowledged.

    Kept in hand-over order: one stream takes them in that order, so the
    acknowledged ones are found at the front (``Message.acked``; Faust's
    Cython stream acknowledges without calling ``Consumer.ack``).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.pending: deque[tuple[Any, int]] = deque()

    def take(self, message: Any) -> None:
        size = len(message.value or b"")
        self.pending.append((message, size))
        self.used += size
        self.sweep()

    def sweep(self) -> None:
        pending = self.pending
        while pending and pending[0][0].acked:
            self.used -= pending.popleft()[1]

    def full(self) -> bool:
        if self.used < self.limit:
            return False
        self.sweep()
        return self.used >= self.limit

    def reset(self) -> None:
        self.pending.clear()
        self.used = 0


_budget_limit = 64 * 1024 * 1024


def _budget(consumer: Any) -> ByteBudget:
    budget = consumer.__dict__.get("_ops_budget")
    if budget is None:
        budget = consumer._ops_budget = ByteBudget(_budget_limit)
        flow_control = consumer.app.flow_control
        faust_clear = flow_control.clear

        def clear() -> None:  # a rebalance drops the buffered events unacknowledged
            faust_clear()
            budget.reset()

        flow_control.clear = clear
    return budget


async def _drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover - exercised by every worker
    budget = _budget(self)
    budget_full = budget.full
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = cast(Service, self)._stopped.is_set
    fetcher_should_stop = cast(Service, fetcher)._stopped.is_set

    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    flag_consumer_fetching = CONSUMER_FETCHING
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for
    flow_suspended = self.suspend_flow.is_set

    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep

    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(flag_consumer_fetching)
            ait = cast(AsyncIterator, getmany(timeout=1.0))

            # Sleeping because sometimes getmany is called in a loop
            # never releasing to the event loop
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0

                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        # We have a gap in income messages
                        if gap > 1 and r_offset:
                            acks_enabled = acks_enabled_for(message.topic)
                            if acks_enabled:
                                await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None:
                            if self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                        # --- the change: Faust awaits wait_first(callback(message), ...) here.
                        if acks_enabled_for(message.topic):  # acknowledged by a stream (not a changelog)
                            while budget_full() and not flow_suspended():
                                await sleep(0.001)
                            budget.take(message)
                        if flow_suspended():
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                        else:
                            coro = callback(message)
                            try:
                                blocked_on = coro.send(None)
                            except StopIteration:
                                pass  # handed over without waiting
                            else:
                                rest = asyncio.ensure_future(_finish(coro, blocked_on))
                                await self.wait_first(rest, self.suspend_flow.wait())
                        # --- end of the change.
                        set_read_offset(tp, offset)
                    else:
                        self.log.dev(
                            "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                            offset,
                            message.key,
                            message.value,
                        )
                unset_flag(flag_consumer_fetching)

    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            # we're already stopping so ignore
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            # we're already stopping so ignore
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(flag_consumer_fetching)


setattr(_drain_messages, _MARKER, True)


def install(buffer_bytes: int = _budget_limit) -> None:
    """Replace ``Consumer._drain_messages`` (idempotent).

    Refuses a faust-streaming other than the one the copy was made from.
    """
    global _budget_limit
    _budget_limit = buffer_bytes
    current = Consumer.__dict__.get("_drain_messages")
    if getattr(current, _MARKER, False):
        return
    if faust.__version__ != FAUST_VERSION or current is None:
        raise RuntimeError(
            f"streams/fastdrain.py copies Consumer._drain_messages of faust-streaming {FAUST_VERSION}, "
            f"found {faust.__version__}: compare the copy with the new source, or set OPS_FAST_DRAIN=false"
        )
    Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]
    log.debug("fast drain installed")


def installed() -> bool:
    return bool(getattr(Consumer.__dict__.get("_drain_messages"), _MARKER, False))
