"""Baseline for bench/ingress.py: the least a signed webhook needs to be stored before its 2xx.

A bare ``aiohttp.web`` server (no Faust, no agents, no metrics, no body size
or Content-Type checks) with the ingress's two routes doing the same work per
request: read the body, verify the signature (``models.webhooks.verify_shopify``
/ ``verify_stripe``), check that the body is a JSON object, build the
``InboundWebhook`` record, produce it to ``webhooks.inbound`` keyed by
``message_key`` with one aiokafka producer (acks=all, linger 1 ms) and await
the acknowledgement, then answer 202 ``{"accepted": true, "dedup_key": ...}``.
It is only the floor the worker's ingress is compared with.

Usage: python bench/baseline_ingress.py BOOTSTRAP PORT (secrets from
``OPS_SHOPIFY_WEBHOOK_SECRETS`` (JSON, shop or "*" -> secret or list) and
``OPS_STRIPE_WEBHOOK_SECRETS`` (comma list)). Prints "ready" once it listens
and its producer is up.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.webhooks import (  # noqa: E402
    SHOPIFY_HEADERS,
    STRIPE_EVENT_TYPE,
    InboundWebhook,
    WebhookSource,
    dedup_key,
    message_key,
    safe_id,
    select_headers,
    shopify_delivery_id,
    stripe_delivery_id,
    verify_shopify,
    verify_stripe,
)
from streams.topics import WEBHOOKS_INBOUND, WEBHOOKS_INBOUND_MAX_MESSAGE_BYTES  # noqa: E402

JSON = "application/json"


def _shop_keys() -> dict[str, list[bytes]]:
    raw = json.loads(os.environ.get("OPS_SHOPIFY_WEBHOOK_SECRETS") or "{}")
    return {shop.lower(): [s.encode() for s in ([v] if isinstance(v, str) else v)] for shop, v in raw.items()}


def _stripe_keys() -> list[bytes]:
    return [s.strip().encode() for s in (os.environ.get("OPS_STRIPE_WEBHOOK_SECRETS") or "").split(",") if s.strip()]


def _refuse(status: int, reason: str) -> web.Response:
    return web.Response(body=orjson.dumps({"error": reason}), status=status, content_type=JSON)


def _object(body: bytes) -> dict | None:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) else None


async def serve(bootstrap: str, port: int) -> None:
    shop_keys = _shop_keys()
    stripe_keys = _stripe_keys()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=1,
        max_batch_size=256 * 1024,
        max_request_size=WEBHOOKS_INBOUND_MAX_MESSAGE_BYTES,
    )
    await producer.start()

    async def store(record: InboundWebhook) -> web.Response:
        value = record.__pydantic_serializer__.to_json(record)  # what streams.codecs.encode does
        delivery = await producer.send(WEBHOOKS_INBOUND, key=message_key(record), value=value)
        await delivery
        return web.Response(
            body=orjson.dumps({"accepted": True, "dedup_key": record.dedup_key}), status=202, content_type=JSON
        )

    async def shopify(request: web.Request) -> web.Response:
        shop = (request.headers.get("X-Shopify-Shop-Domain") or "").strip().lower()
        keys = shop_keys.get(shop) or shop_keys.get("*")
        if not shop or not keys:
            return _refuse(401, "unknown shop")
        body = await request.read()
        if not verify_shopify(body, request.headers.get("X-Shopify-Hmac-Sha256"), keys):
            return _refuse(401, "bad signature")
        if _object(body) is None:
            return _refuse(400, "body must be a JSON object")
        topic = safe_id((request.headers.get("X-Shopify-Topic") or "").strip())
        delivery = shopify_delivery_id(request.headers, body)
        headers = select_headers(request.headers, SHOPIFY_HEADERS)
        headers["x-shopify-shop-domain"] = shop
        if topic is not None:
            headers["x-shopify-topic"] = topic
        return await store(InboundWebhook(
            source=WebhookSource.SHOPIFY, topic=topic, delivery_id=delivery,
            dedup_key=dedup_key(WebhookSource.SHOPIFY, delivery, shop_domain=shop), shop_domain=shop,
            headers=headers, body=body.decode("utf-8"), received_at=datetime.now(timezone.utc),
        ))

    async def stripe(request: web.Request) -> web.Response:
        body = await request.read()
        ok, check = verify_stripe(body, request.headers.get("Stripe-Signature"), stripe_keys, time.time())
        if not ok:
            return _refuse(check.status, check.value)
        payload = _object(body)
        if payload is None:
            return _refuse(400, "body must be a JSON object")
        delivery = stripe_delivery_id(payload, body)
        topic = safe_id(payload.get("type"))
        return await store(InboundWebhook(
            source=WebhookSource.STRIPE, topic=topic, delivery_id=delivery,
            dedup_key=dedup_key(WebhookSource.STRIPE, delivery),
            headers={STRIPE_EVENT_TYPE: topic} if topic else {},
            body=body.decode("utf-8"), received_at=datetime.now(timezone.utc),
        ))

    app = web.Application()
    app.router.add_post("/webhooks/shopify", shopify)
    app.router.add_post("/webhooks/stripe", stripe)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await producer.stop()


if __name__ == "__main__":
    import uvloop  # the worker's event loop too (connectors/cli.py)

    uvloop.run(serve(sys.argv[1], int(sys.argv[2])))
