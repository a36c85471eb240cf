"""Publishing events as an upstream producer would (``ops-engine publish``).

Each input line is one message: a JSON object, or for ``supplier.snapshots`` a
JSON array (a page of one store's snapshots). Every line is validated against
the contract before anything is sent, and keyed as the contract prescribes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaProducer
from pydantic import TypeAdapter, ValidationError

from models.events import CONTRACT, MESSAGE_KEY, Event, SupplierSnapshot
from models.orders import ORDER_EVENT
from models.video import VideoRequest
from models.webhook_routing import CatalogueVariant
from streams import topics
from streams.settings import Settings

#: Topics an upstream producer may publish to.
PUBLISHABLE = (
    topics.SUPPLIER_SNAPSHOTS, topics.STORE_SETTINGS, topics.ORDERS_EVENTS, topics.CATALOG_VARIANTS,
    topics.VIDEO_REQUESTS,
)
_PAGE = TypeAdapter(list[SupplierSnapshot])


class PublishError(ValueError):
    pass


@dataclass(frozen=True)
class Outgoing:
    key: bytes
    value: bytes


def prepare(topic: str, line: bytes) -> Outgoing:
    """Validate one JSON line for ``topic`` and give it the contract's key."""
    if topic not in PUBLISHABLE:
        raise PublishError(f"topic {topic!r} is not published by producers; use one of {', '.join(PUBLISHABLE)}")
    line = line.strip()
    try:
        if topic == topics.ORDERS_EVENTS:
            key = ORDER_EVENT.validate_json(line).order_id
        elif topic == topics.CATALOG_VARIANTS:
            key = CatalogueVariant.model_validate_json(line).shop_domain
        elif topic == topics.VIDEO_REQUESTS:
            key = VideoRequest.model_validate_json(line).video_id
        elif topic == topics.SUPPLIER_SNAPSHOTS and line[:1] == b"[":
            page = _PAGE.validate_json(line)
            if not page:
                raise PublishError("empty page")
            stores = {s.store_id for s in page}
            if len(stores) != 1:
                raise PublishError(f"a page holds snapshots of one store, not {len(stores)}")
            key = page[0].store_id
        else:
            model: type[Event] = CONTRACT[topic]
            event = model.model_validate_json(line)
            key = getattr(event, MESSAGE_KEY[topic])
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(line)'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise PublishError(problems) from None
    return Outgoing(key=key.encode(), value=line)


def read_lines(stream: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(stream, start=1):
        if line.strip():
            yield number, line


async def send_all(settings: Settings, topic: str, messages: list[Outgoing]) -> int:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap,
        acks="all",
        enable_idempotence=settings.producer_idempotence,
        linger_ms=5,
        compression_type=None,
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, key=m.key, value=m.value) for m in messages]
        for fut in futures:
            await fut
    finally:
        await producer.stop()
    return len(messages)


def to_line(obj: object) -> bytes:
    return orjson.dumps(obj)
