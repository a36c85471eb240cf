"""Reading and replaying the ``deadletter`` topic (``ops-engine deadletter list|replay``).

A dead letter holds the refused record's original key and value (base64) and
where it came from. Once the cause is fixed (a catalogue mapping added, a
producer corrected, a bug fixed), ``replay`` sends chosen records again to
their original topic, byte for byte, with their original key. Everything
downstream is idempotent (event ids, dedup keys, snapshot times), so a record
replayed twice, or one that had been handled after all, changes nothing more.

A replayed record carries the header :data:`REPLAYED` (``deadletter:{partition}:{offset}``
of its dead letter), for a reader to whom an old record replayed out of order
means something else: the storefront process asks for a replayed
``inventory.changes`` record's current values instead of pushing the old ones.

Listing prints ids, reasons and details only, never the values: they may hold
personal data.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from models.events import DeadLetter
from streams import topics
from streams.settings import Settings


#: The header a replayed record carries: where its dead letter is.
REPLAYED = "ops-replayed-from"


def replayed_from(headers: Iterable[tuple[str, bytes]] | None) -> str | None:
    """The dead letter a consumed record was replayed from (``deadletter:P:O``), or None."""
    for name, value in headers or ():
        if name == REPLAYED:
            return value.decode(errors="replace")
    return None


@dataclass(frozen=True)
class Stored:
    partition: int
    offset: int
    letter: DeadLetter

    @property
    def at(self) -> str:
        """Where the dead letter itself is: ``partition:offset`` of the deadletter topic."""
        return f"{self.partition}:{self.offset}"

    @property
    def key(self) -> bytes | None:
        """The refused record's original key (the store, for the store-keyed topics)."""
        return None if self.letter.key is None else base64.b64decode(self.letter.key)


async def read_all(settings: Settings, timeout: float = 30.0) -> list[Stored]:
    """Every dead letter, partition by partition in offset order."""
    if settings.embedded_broker:
        from streams.embedded import install_end_offset_fix

        install_end_offset_fix()  # the embedded broker's end offsets are wrong otherwise
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topics.DEADLETTER) or set()
        tps = [TopicPartition(topics.DEADLETTER, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[Stored] = []
        remaining = {tp for tp in tps if ends[tp] > 0}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while remaining and loop.time() < deadline:
            batch = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    try:
                        letter = DeadLetter.model_validate_json(record.value or b"")
                    except ValidationError:
                        continue  # not ours: nothing to replay
                    out.append(Stored(record.partition, record.offset, letter))
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return sorted(out, key=lambda s: (s.partition, s.offset))
    finally:
        await consumer.stop()


def select(
    stored: Iterable[Stored], at: Iterable[str] = (), reason: str | None = None, topic: str | None = None,
    since: datetime | None = None,
) -> list[Stored]:
    """The dead letters at the given ``partition:offset`` places, or of a reason and/or
    topic, refused at or after ``since`` if given."""
    wanted = set(at)
    out = []
    for s in stored:
        if wanted and s.at not in wanted:
            continue
        if reason and s.letter.reason.value != reason.upper():
            continue
        if topic and s.letter.topic != topic:
            continue
        if since is not None and s.letter.refused_at < since:
            continue
        out.append(s)
    return out


async def replay(settings: Settings, chosen: list[Stored]) -> int:
    """Send each chosen record again to its original topic with its original key."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap, acks="all", enable_idempotence=settings.producer_idempotence
    )
    await producer.start()
    try:
        futures = []
        for s in chosen:
            value = base64.b64decode(s.letter.value)
            headers = [(REPLAYED, f"deadletter:{s.at}".encode())]
            futures.append(await producer.send(s.letter.topic, key=s.key, value=value, headers=headers))
        for future in futures:
            await future
    finally:
        await producer.stop()
    return len(chosen)


async def replay_store(settings: Settings, reason: str, store_id: str, since: datetime | None = None) -> int:
    """Replay every dead letter of ``reason`` whose original key is ``store_id`` (the
    store-keyed topics'), refused at or after ``since`` if given; how many were sent."""
    key = store_id.encode()
    mine = [s for s in select(await read_all(settings), reason=reason, since=since) if s.key == key]
    return await replay(settings, mine) if mine else 0
