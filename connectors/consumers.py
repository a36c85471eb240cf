"""The consumer every engine process outside the workers starts with (executor, notifier, recorder)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from streams.settings import Settings

log = logging.getLogger(__name__)


def group_consumer(settings: Settings, role: str, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer in group ``{app_id}-{role}`` that commits by hand (after its work) and
    starts a new group at the earliest offset; ``overrides`` go to aiokafka as they are."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap,
        "group_id": f"{settings.app_id}-{role}",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": int(settings.session_timeout * 1000),
        "heartbeat_interval_ms": int(settings.heartbeat_interval * 1000),
        **overrides,
    }
    return AIOKafkaConsumer(*topics, **options)


async def commit(consumer: AIOKafkaConsumer, done: dict[Any, Any]) -> bool:
    """Commit ``done`` (partition -> OffsetAndMetadata); False when a rebalance took the
    partitions first: their new owner replays what was not committed, which every
    process here makes harmless (its writes are idempotent)."""
    if not done:
        return True
    try:
        await consumer.commit(done)
    except KafkaError as exc:
        log.warning("commit failed (%s); the uncommitted records will be replayed", exc)
        return False
    return True


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


async def backoff(stop: asyncio.Event, seconds: float, most: float) -> float | None:
    """After a failure: pause ``seconds`` unless stopping; the next pause (doubled, at
    most ``most``), or None when ``stop`` is set (give up, commit nothing more)."""
    if stop.is_set():
        return None
    await pause(stop, seconds)
    return None if stop.is_set() else min(seconds * 2, most)
