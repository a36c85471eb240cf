"""Workarounds that are switched on only when the app runs against the embedded (Tansu) broker.

Call :func:`install_end_offset_fix` once, early (before the Faust worker starts), **only** when
the embedded broker is in use (``OPS_EMBEDDED_BROKER=true``). Against real Kafka it is never
installed. See its docstring and ``/work/shared/notes/embedded-broker.md``.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiokafka
from aiokafka.consumer import fetcher as _fetcher_mod
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.structs import TopicPartition

__all__ = [
    "END_OFFSET_FIX_STATS",
    "FIX_TIMEOUT_S",
    "FETCH_MAX_WAIT_MS",
    "end_offset_fix_installed",
    "fetch_high_watermarks",
    "install_end_offset_fix",
    "uninstall_end_offset_fix",
]

log = logging.getLogger(__name__)

#: ``max_wait_ms`` of the correcting Fetch. The broker answers a Fetch with ``max_wait_ms=0``
#: with *no partitions at all*; with a wait it answers at once when the fetch offset holds
#: data (it always does here, see below) and after this long otherwise.
FETCH_MAX_WAIT_MS = 100

#: Upper bound (seconds) for the correcting Fetch. On timeout or error the broker's own
#: ListOffsets answer is returned unchanged and a warning is logged.
FIX_TIMEOUT_S = 10.0

#: Counters for tests and diagnostics: ``calls`` (ListOffsets(latest) requests seen),
#: ``partitions`` (partitions checked), ``corrected`` (partitions whose end moved up),
#: ``fallbacks`` (partitions left at the ListOffsets answer because the Fetch failed).
END_OFFSET_FIX_STATS: collections.Counter[str] = collections.Counter()

_LATEST = _fetcher_mod.OffsetResetStrategy.LATEST  # -1
_READ_COMMITTED = 1
_MARKER = "__ops_engine_end_offset_fix__"
_install_lock = threading.Lock()
_original: Callable[..., Awaitable[dict[TopicPartition, tuple[int, Any]]]] | None = None


async def fetch_high_watermarks(
    client: Any,
    node_id: int,
    ends: Mapping[TopicPartition, int],
    *,
    isolation_level: int = 0,
    max_wait_ms: int = FETCH_MAX_WAIT_MS,
) -> dict[TopicPartition, int]:
    """Ask ``node_id`` (the partitions' leader) for the real end of each partition in ``ends``.

    ``ends`` maps each partition to a ListOffsets(latest) answer ``L >= 1``. One FetchRequest
    covers all of them: it fetches at ``L - 1`` (on this broker the base offset of the last
    batch, so it always holds data and the broker answers without waiting) with
    ``max_bytes=1`` (the broker still sends the first batch of the first partition, about one
    batch in total, and a high watermark for every partition). Returns ``{tp: end}``: the high
    watermark, or the last stable offset when ``isolation_level`` is read_committed (1).
    Partitions missing from the answer or answered with an error are left out.
    """
    by_topic: dict[str, list[tuple[int, int, int]]] = collections.defaultdict(list)
    for tp, end in ends.items():
        by_topic[tp.topic].append((tp.partition, max(end - 1, 0), 1))
    request = FetchRequest(max_wait_ms, 1, 1, isolation_level, list(by_topic.items()))
    response = await client.send(node_id, request)
    result: dict[TopicPartition, int] = {}
    for topic, partitions in response.topics:
        for partition, error_code, highwater, *rest in partitions:
            tp = TopicPartition(topic, partition)
            if error_code != 0:
                log.debug("end-offset fix: fetch error %s for %s", error_code, tp)
                continue
            end = highwater
            # v4+: rest[0] is the last stable offset.
            if isolation_level == _READ_COMMITTED and response.API_VERSION >= 4:
                if rest and rest[0] is not None and rest[0] >= 0:
                    end = rest[0]
            result[tp] = end
    return result


async def _proc_offset_request_fixed(
    self: Any, node_id: int, topic_data: Mapping[str, list[tuple[int, int]]]
) -> dict[TopicPartition, tuple[int, Any]]:
    """Replacement for ``aiokafka.consumer.fetcher.Fetcher._proc_offset_request``."""
    assert _original is not None
    offsets = await _original(self, node_id, topic_data)
    latest: dict[TopicPartition, int] = {}
    for topic, partitions in topic_data.items():
        for partition, timestamp in partitions:
            tp = TopicPartition(topic, partition)
            if timestamp != _LATEST or tp not in offsets:
                continue
            answer = offsets[tp][0]
            # 0 means an empty partition (the broker's wrong answer is always >= 1 once
            # anything was written); -1 (unknown) is left for aiokafka to handle.
            if answer is not None and answer > 0:
                latest[tp] = answer
    if not latest:
        return offsets
    END_OFFSET_FIX_STATS["calls"] += 1
    END_OFFSET_FIX_STATS["partitions"] += len(latest)
    try:
        ends = await asyncio.wait_for(
            fetch_high_watermarks(
                self._client,
                node_id,
                latest,
                isolation_level=getattr(self, "_isolation_level", 0),
            ),
            timeout=FIX_TIMEOUT_S,
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure: keep the broker's answer
        END_OFFSET_FIX_STATS["fallbacks"] += len(latest)
        log.warning(
            "end-offset fix: Fetch to node %s failed (%r); using the broker's ListOffsets "
            "answer for %d partition(s), which may be too low after multi-record batches",
            node_id,
            exc,
            len(latest),
        )
        return offsets
    missing = []
    for tp, answer in latest.items():
        end = ends.get(tp)
        if end is None or end < answer:
            # No high watermark, or one below the ListOffsets answer (never seen): keep it.
            missing.append((tp, answer, end))
            continue
        if end != answer:
            END_OFFSET_FIX_STATS["corrected"] += 1
            log.debug("end-offset fix: %s ListOffsets=%s high watermark=%s", tp, answer, end)
            offsets[tp] = (end, offsets[tp][1])
    if missing:
        END_OFFSET_FIX_STATS["fallbacks"] += len(missing)
        log.warning(
            "end-offset fix: no usable high watermark for %s; kept the ListOffsets answer",
            ", ".join(
                f"{tp.topic}[{tp.partition}] (ListOffsets={a}, hw={e})" for tp, a, e in missing
            ),
        )
    return offsets


setattr(_proc_offset_request_fixed, _MARKER, True)


def install_end_offset_fix() -> None:
    """Make every aiokafka consumer's "latest offset" the partition's real high watermark.

    **Switch it on only for the embedded broker** (``OPS_EMBEDDED_BROKER=true``); never install
    it against real Kafka (there it would only add one cheap Fetch per lookup, but it is a
    patch of a private aiokafka method and must not ride along in production).

    The bug
    -------
    The embedded broker (Tansu 0.6.0, memory storage) answers ListOffsets(timestamp=latest)
    with "base offset of the partition's last record batch + 1" instead of the high watermark.
    After a batch holding records 0..9 it says 1 (true: 10); after 10..19 it says 11 (true:
    20). Producers (Faust's included) write multi-record batches, so the answer is usually too
    low. The high watermark in a Fetch response is right. Faust takes a changelog partition's
    recovery highwater from ``consumer.highwaters()`` ->
    ``AIOKafkaConsumerThread._highwaters`` -> ``AIOKafkaConsumer.end_offsets`` (ListOffsets),
    so:

    - memory store: recovery stops before the changelog's tail; the last updates are silently
      lost (a 20,000-event count came back smaller after worker restarts);
    - RocksDB store: restart can crash with ``ConsistencyError: The persisted offset ... is
      higher than the last offset in that topic (highwater)``;
    - ``seek_to_end()``, ``auto_offset_reset='latest'`` and an out-of-range reset to latest
      position the consumer inside the last batch, re-delivering its tail.

    Faust's consumer-lag figures (``Monitor.track_tp_end_offset``) already use the Fetch high
    watermark (``AIOKafkaConsumer.highwater``) and are right without this fix.

    The fix, and where it sits
    --------------------------
    Exactly one place is patched: ``aiokafka.consumer.fetcher.Fetcher._proc_offset_request``
    (aiokafka 0.14.0), the per-leader coroutine that sends every ListOffsets request of an
    ``AIOKafkaConsumer``. Both paths that ask for "latest" go through it:
    ``Fetcher._retrieve_offsets`` (``end_offsets()``, hence Faust table recovery and standby
    highwaters) and ``Fetcher._update_fetch_positions`` (``seek_to_end()``, reset policy
    ``latest``). After the original request returns, every partition asked for LATEST whose
    answer ``L`` is >= 1 is re-checked with ONE FetchRequest to the same leader (all partitions
    of that request together): fetch at ``L - 1`` (inside the last batch, so it holds data and
    the broker answers immediately), ``max_bytes=1``, ``max_wait_ms=FETCH_MAX_WAIT_MS`` (100;
    the broker answers a 0 ms fetch with no partitions at all), and the partition's high
    watermark (last stable offset for read_committed consumers) replaces ``L``. ``L == 0``
    means an empty partition and needs no Fetch (a single-record batch at offset 0 gives 1,
    which is right, and is confirmed by the Fetch anyway). EARLIEST and timestamp lookups are
    untouched. Cost measured on the embedded broker: one extra round trip per ListOffsets
    request, whatever the number of partitions (``end_offsets`` of 6 partitions 0.36 -> 0.70
    ms, of 32 partitions 0.49 -> 1.27 ms), and at most about one record batch of payload.
    Faust calls it once per recovery (active and standby changelogs), not per event.

    Robustness: the Fetch is bounded by ``FIX_TIMEOUT_S``; on timeout, a Kafka error, a
    partition missing from the answer, or a high watermark below ``L``, the ListOffsets answer
    is kept and a warning is logged (``END_OFFSET_FIX_STATS['fallbacks']`` counts them).
    Cancellation propagates. Concurrent lookups each send their own Fetch; there is no shared
    mutable state besides the counters. The patch is on the class, so consumers created before
    the call are covered too; it is process-wide (every ``AIOKafkaConsumer`` in the process),
    which is another reason to install it only for the embedded broker. Not covered:
    ``AIOKafkaAdminClient`` offset lookups and ``offsets_for_times``.

    Idempotent and thread-safe: a second call does nothing. Raises ``RuntimeError`` if the
    installed aiokafka no longer has the patched method with the expected signature.
    """
    global _original
    with _install_lock:
        cls = _fetcher_mod.Fetcher
        current = cls.__dict__.get("_proc_offset_request")
        if current is None:
            raise RuntimeError(
                "aiokafka.consumer.fetcher.Fetcher._proc_offset_request not found "
                f"(aiokafka {aiokafka.__version__}); the end-offset fix must be re-verified"
            )
        if getattr(current, _MARKER, False):
            return
        params = list(inspect.signature(current).parameters)
        if params != ["self", "node_id", "topic_data"] or not inspect.iscoroutinefunction(
            current
        ):
            raise RuntimeError(
                f"unexpected Fetcher._proc_offset_request{inspect.signature(current)} in "
                f"aiokafka {aiokafka.__version__}; the end-offset fix must be re-verified"
            )
        if not aiokafka.__version__.startswith("0.14."):
            log.warning(
                "end-offset fix was written for aiokafka 0.14.x, found %s", aiokafka.__version__
            )
        _original = current
        cls._proc_offset_request = _proc_offset_request_fixed
        log.info(
            "end-offset fix installed (embedded broker): ListOffsets(latest) answers are "
            "replaced by Fetch high watermarks"
        )


def uninstall_end_offset_fix() -> None:
    """Restore aiokafka's original method (for tests). No-op when not installed."""
    global _original
    with _install_lock:
        cls = _fetcher_mod.Fetcher
        if _original is not None and getattr(
            cls.__dict__.get("_proc_offset_request"), _MARKER, False
        ):
            cls._proc_offset_request = _original
        _original = None


def end_offset_fix_installed() -> bool:
    """True while :func:`install_end_offset_fix` is in effect."""
    return bool(getattr(_fetcher_mod.Fetcher.__dict__.get("_proc_offset_request"), _MARKER, False))


#: Fetch wait for the worker's consumer against the embedded broker. The broker holds a
#: Fetch for (about) its whole ``max_wait_ms`` even when records arrive meanwhile: measured
#: here with one record every 50 ms, a consumer saw them late by p50 127 ms at aiokafka's
#: default 500 ms, 51 ms at 200, 17 ms at 100, 2-3 ms at 50 and below. Faust asks for
#: 1,500 ms. Shorter is not free: a worker loading pages of snapshots did 45,700/s at 500 ms,
#: 41,400/s at 100 ms and 26,800/s at 20 ms (300,000 products). 100 ms is the worker's
#: compromise; the executor, whose few commands are all latency, asks for 20 ms.
#: Real Kafka answers as soon as data arrives, so this is only for the embedded broker.
EMBEDDED_FETCH_WAIT_MS = 100
EMBEDDED_LOW_LATENCY_FETCH_WAIT_MS = 20

_fetch_wait_original: Any = None


def install_fetch_wait_fix(wait_ms: int = EMBEDDED_FETCH_WAIT_MS) -> None:
    """Make every aiokafka consumer created from now on ask for at most ``wait_ms`` of fetch wait.

    Faust's driver builds its consumer with ``fetch_max_wait_ms=1500`` hard-coded
    (faust/transport/drivers/aiokafka.py), so the limit is applied where aiokafka
    takes the argument. Embedded broker only, like the end-offset fix. Idempotent.
    """
    global _fetch_wait_original
    with _install_lock:
        if _fetch_wait_original is not None:
            return
        original = aiokafka.AIOKafkaConsumer.__init__
        _fetch_wait_original = original

        def __init__(self: Any, *topics: Any, **kwargs: Any) -> None:
            kwargs["fetch_max_wait_ms"] = min(int(kwargs.get("fetch_max_wait_ms", 500)), wait_ms)
            original(self, *topics, **kwargs)

        aiokafka.AIOKafkaConsumer.__init__ = __init__  # type: ignore[method-assign]
