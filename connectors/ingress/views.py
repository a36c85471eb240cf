"""Webhook endpoints on every worker's web server: verify, refuse, store, answer.

Routes (POST only):

- ``/webhooks/shopify`` (topic from ``X-Shopify-Topic``) and
  ``/webhooks/shopify/{topic...}`` (e.g. ``/webhooks/shopify/orders/create``;
  the header wins when both are there);
- ``/webhooks/woocommerce`` (site from ``X-WC-Webhook-Source``, topic from
  ``X-WC-Webhook-Topic``, else ``{X-WC-Webhook-Resource}.{X-WC-Webhook-Event}``);
- ``/webhooks/stripe``;
- ``/webhooks/suppliers/{provider}`` (``cj_dropshipping`` or ``CJ_DROPSHIPPING``).

What a request goes through, in order, each refusal a JSON ``{"error": reason}``
with nothing written:

1. the source has a secret (for Shopify: the shop in ``X-Shopify-Shop-Domain``
   has one; for WooCommerce: the site host of ``X-WC-Webhook-Source``), else
   401 "no secret configured" / "unknown shop" / "unknown site". WooCommerce's
   ping (an unsigned ``webhook_id=N`` form body, at most 64 bytes, no
   ``X-WC-Webhook-Topic``, sent when a webhook is created and required to get
   a 200) is answered 200 ``{"ping": true}`` here, before the site check (it
   names no site), and nothing is stored;
2. ``Content-Length`` over the limit: 413, before a byte of the body is read;
3. ``Content-Type`` present and not JSON: 415;
4. the signature header is there, else 401;
5. the body is read from ``request.content`` chunk by chunk with a byte
   counter: 413 as soon as it passes the limit (a chunked body without a
   length); 408 when it does not arrive within ``READ_TIMEOUT_S``; 400 when
   the connection breaks it;
6. the signature over the raw bytes: 401; a genuine Stripe signature whose
   ``t`` is more than the tolerance from now: 400 (models/webhooks.py);
7. the body is a JSON object (orjson), else 400;
8. the raw webhook (:class:`InboundWebhook`) is produced to
   ``webhooks.inbound`` keyed by ``message_key`` (the shop domain for
   Shopify, the site host for WooCommerce, else the ``dedup_key``) by a producer of its own
   (acks=all; idempotent when ``OPS_PRODUCER_IDEMPOTENCE``), and the answer
   waits for the acknowledgement: 202 ``{"accepted": true, "dedup_key": ...}``.
   Not acknowledged within ``OPS_WEBHOOK_ACK_TIMEOUT_S`` (broker down, no
   leader, ...): 503 ``{"error": ..., "retry": true}`` with ``Retry-After``, so
   the sender retries. A 503 can still be followed by the record reaching the
   topic (it was in flight): the retry then stores it a second time under
   the same ``dedup_key`` on the same partition, and the router drops the
   duplicate.

Bad input never makes a 500; a 500 is a bug here (its log names the
exception's type and where it was raised, never the request).

Logs carry ids only (source, shop domain, provider, topic, delivery/event id,
the reason of a refusal), never a body, a signature or a secret.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from faust.web import Request, Response, View
from mode import Service

from connectors.ingress import metrics
from connectors.ingress.settings import IngressSettings, SupplierWebhook, provider_name
from models.webhooks import (
    SECRET_HEADERS,
    SHOPIFY_HEADERS,
    SHOPIFY_HMAC_HEADER,
    WOOCOMMERCE_HEADERS,
    WOOCOMMERCE_PING_MAX,
    WOOCOMMERCE_SIGNATURE_HEADER,
    WOOCOMMERCE_SOURCE_HEADER,
    WOOCOMMERCE_TOPIC_HEADER,
    STRIPE_EVENT_TYPE,
    STRIPE_SIGNATURE_HEADER,
    InboundWebhook,
    WebhookSource,
    body_digest,
    dedup_key,
    safe_id,
    select_headers,
    shop_webhook,
    shopify_delivery_id,
    stripe_delivery_id,
    is_woocommerce_ping,
    supplier_event,
    verify_hmac,
    verify_shopify,
    verify_stripe,
    verify_woocommerce,
    woocommerce_delivery_id,
    woocommerce_site,
)
from streams.app import Engine
from streams.codecs import encode
from streams.settings import Settings
from streams.topics import WEBHOOKS_INBOUND, WEBHOOKS_INBOUND_MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

JSON = "application/json"
#: The whole body must arrive within this time (a stalled sender holds a connection).
READ_TIMEOUT_S = 10.0
RETRY_AFTER_S = 5
_SHOP_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]*(\.[a-z0-9-]+)+$")


class Refused(Exception):
    """A refusal: an HTTP status and a short reason of ours (never input)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Seen:
    """The ids of one request, for its log line."""

    source: str
    shop: str | None = None
    site: str | None = None
    provider: str | None = None
    topic: str | None = None
    delivery_id: str | None = None

    def describe(self) -> str:
        parts = [f"source={self.source}"]
        for name in ("shop", "site", "provider", "topic", "delivery_id"):
            value = getattr(self, name)
            if value:
                parts.append(f"{name}={value}")
        return " ".join(parts)


# --------------------------------------------------------------------------- #
# The producer
# --------------------------------------------------------------------------- #


class InboundProducer(Service):
    """The ingress's own aiokafka producer of ``webhooks.inbound``.

    Made and started when the worker starts (``on_start``, in the worker's
    loop; never at import), in the background so a worker never waits on it;
    a request that comes before it is up, or after a failed start, starts it
    (one start at a time) within its ack timeout. Stopped (pending sends
    flushed) when the worker stops.

    acks=all; idempotent when ``OPS_PRODUCER_IDEMPOTENCE`` (real Kafka; the
    embedded broker refuses it; nothing depends on it). ``linger_ms=1``: the
    webhooks of concurrent requests share a produce request.
    """

    def __init__(self, settings: Settings, ack_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.ack_timeout_s = ack_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    def _make(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap,
            client_id="ops-engine-ingress",
            acks="all",
            enable_idempotence=self.settings.producer_idempotence,
            linger_ms=1,
            max_batch_size=256 * 1024,
            max_request_size=WEBHOOKS_INBOUND_MAX_MESSAGE_BYTES,
            # A batch not acknowledged in time expires instead of waiting 40 s.
            request_timeout_ms=int(max(self.ack_timeout_s, 1.0) * 1000),
        )

    async def on_start(self) -> None:
        self.add_future(self._warm())

    async def _warm(self) -> None:
        try:
            await asyncio.wait_for(self.ensure(), timeout=max(self.ack_timeout_s, 10.0))
        except Exception as exc:  # the first request tries again
            log.warning("webhook producer not started yet: %s", type(exc).__name__)

    async def on_stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.stop()
            except Exception as exc:
                log.warning("webhook producer stop: %s", type(exc).__name__)

    async def ensure(self) -> AIOKafkaProducer:
        producer = self._producer
        if producer is not None:
            return producer
        async with self._starting:
            if self._producer is not None:
                return self._producer
            producer = self._make()
            try:
                await producer.start()
            except BaseException:
                try:
                    await producer.stop()
                except Exception:
                    pass
                raise
            self._producer = producer
            return producer

    async def send(self, key: bytes, value: bytes) -> Any:
        """Produce one record and wait for acks=all; raises on failure or timeout."""

        async def produce() -> Any:
            producer = await self.ensure()
            delivery = await producer.send(WEBHOOKS_INBOUND, key=key, value=value)
            # shield: a timeout must not cancel aiokafka's own future.
            return await asyncio.shield(delivery)

        return await asyncio.wait_for(produce(), timeout=self.ack_timeout_s)


# --------------------------------------------------------------------------- #
# The checks
# --------------------------------------------------------------------------- #


def _is_json_type(value: str | None) -> bool:
    if value is None or not value.strip():
        return True  # no Content-Type: the body decides
    mime = value.split(";", 1)[0].strip().lower()
    return mime in ("application/json", "text/json") or (mime.startswith("application/") and mime.endswith("+json"))


def _header(request: Request, name: str) -> str | None:
    value = request.headers.get(name)
    return value if value is None or value.strip() else None


class Ingress:
    """The checks of each source; each returns the record or raises :class:`Refused`."""

    def __init__(self, settings: IngressSettings, producer: InboundProducer) -> None:
        self.settings = settings
        self.producer = producer
        self.max_body = settings.webhook_max_body
        self.shopify_keys = settings.shopify_keys()
        self.woocommerce_keys = settings.woocommerce_keys()
        self.stripe_keys = settings.stripe_keys()
        self.suppliers: dict[str, SupplierWebhook] = dict(settings.supplier_webhook_secrets)

    # -- common ---------------------------------------------------------------------
    def _check_declared(self, request: Request) -> None:
        declared = request.content_length
        if declared is not None and declared > self.max_body:
            raise Refused(413, f"body larger than {self.max_body} bytes")
        if not _is_json_type(request.headers.get("Content-Type")):
            raise Refused(415, "Content-Type must be application/json")

    async def _read(self, request: Request) -> bytes:
        """The raw body, counted as it arrives: 413 as soon as it passes the limit."""
        chunks: list[bytes] = []
        total = 0
        stream = request.content
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                while True:
                    chunk = await stream.readany()
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > self.max_body:
                        raise Refused(413, f"body larger than {self.max_body} bytes")
                    chunks.append(chunk)
        except Refused:
            raise
        except TimeoutError:
            raise Refused(408, "body not received in time") from None
        except Exception:
            raise Refused(400, "body could not be read") from None
        return b"".join(chunks)

    @staticmethod
    def _object(body: bytes) -> dict[str, Any]:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise Refused(400, "body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise Refused(400, "body must be a JSON object")
        return payload

    @staticmethod
    def _now() -> datetime:
        return datetime.now(timezone.utc)

    # -- Shopify ----------------------------------------------------------------------
    async def shopify(self, request: Request, seen: Seen, path_topic: str | None = None) -> InboundWebhook:
        if not self.shopify_keys:
            raise Refused(401, "no secret configured")
        shop = (request.headers.get("X-Shopify-Shop-Domain") or "").strip().lower()
        keys = self.shopify_keys.get(shop) if shop and shop != "*" else None
        if keys is None and shop and _SHOP_DOMAIN.match(shop) and len(shop) <= 255:
            keys = self.shopify_keys.get("*")
        if not keys:
            raise Refused(401, "unknown shop")
        seen.shop = shop
        self._check_declared(request)
        signature = _header(request, SHOPIFY_HMAC_HEADER)
        if signature is None:
            raise Refused(401, "missing X-Shopify-Hmac-Sha256")
        body = await self._read(request)
        if not verify_shopify(body, signature, keys):
            raise Refused(401, "bad signature")
        self._object(body)
        header_topic = _header(request, "X-Shopify-Topic")
        topic: str | None = None
        if header_topic is not None:
            topic = safe_id(header_topic.strip())
            if topic is None:
                raise Refused(400, "bad X-Shopify-Topic")
        elif path_topic:
            topic = safe_id(path_topic.strip("/"))
            if topic is None:
                raise Refused(400, "bad topic in the path")
        seen.topic = topic
        delivery = shopify_delivery_id(request.headers, body)
        seen.delivery_id = delivery
        headers = select_headers(request.headers, SHOPIFY_HEADERS)
        headers["x-shopify-shop-domain"] = shop
        if topic is not None:
            headers["x-shopify-topic"] = topic
        return shop_webhook(WebhookSource.SHOPIFY, shop, topic, delivery, headers, body.decode("utf-8"), self._now())

    # -- WooCommerce ------------------------------------------------------------------
    async def woocommerce(self, request: Request, seen: Seen) -> InboundWebhook | None:
        """A verified WooCommerce webhook, or None for the ping of a webhook being created."""
        if not any(self.woocommerce_keys.values()):
            raise Refused(401, "no secret configured")
        signature = _header(request, WOOCOMMERCE_SIGNATURE_HEADER)
        if signature is None and _header(request, WOOCOMMERCE_TOPIC_HEADER) is None:
            # Maybe the ping: small, announced as such, unsigned. Anything else unsigned is a 401.
            declared = request.content_length
            if declared is not None and 0 < declared <= WOOCOMMERCE_PING_MAX:
                body = await self._read(request)
                if is_woocommerce_ping(body):
                    seen.topic = "ping"
                    return None
            raise Refused(401, f"missing {WOOCOMMERCE_SIGNATURE_HEADER}")
        site = woocommerce_site(request.headers.get(WOOCOMMERCE_SOURCE_HEADER))
        keys = self.woocommerce_keys.get(site) if site else None
        if not keys:
            raise Refused(401, "unknown site")
        seen.site = site
        self._check_declared(request)
        if signature is None:
            raise Refused(401, f"missing {WOOCOMMERCE_SIGNATURE_HEADER}")
        body = await self._read(request)
        if not verify_woocommerce(body, signature, keys):
            raise Refused(401, "bad signature")
        payload = self._object(body)
        topic: str | None = None
        header_topic = _header(request, WOOCOMMERCE_TOPIC_HEADER)
        if header_topic is not None:
            topic = safe_id(header_topic.strip())
            if topic is None:
                raise Refused(400, f"bad {WOOCOMMERCE_TOPIC_HEADER}")
        else:  # the topic is "{resource}.{event}" (order.updated)
            resource = safe_id((request.headers.get("X-WC-Webhook-Resource") or "").strip())
            event = safe_id((request.headers.get("X-WC-Webhook-Event") or "").strip())
            topic = safe_id(f"{resource}.{event}") if resource and event else None
        seen.topic = topic
        delivery = woocommerce_delivery_id(request.headers, payload, body)
        seen.delivery_id = delivery
        headers = select_headers(request.headers, WOOCOMMERCE_HEADERS)
        if topic is not None:
            headers["x-wc-webhook-topic"] = topic
        return shop_webhook(WebhookSource.WOOCOMMERCE, site, topic, delivery, headers, body.decode("utf-8"),
                            self._now())

    # -- Stripe -----------------------------------------------------------------------
    async def stripe(self, request: Request, seen: Seen) -> InboundWebhook:
        if not self.stripe_keys:
            raise Refused(401, "no secret configured")
        self._check_declared(request)
        signature = _header(request, STRIPE_SIGNATURE_HEADER)
        if signature is None:
            raise Refused(401, "missing Stripe-Signature")
        body = await self._read(request)
        ok, check = verify_stripe(
            body, signature, self.stripe_keys, time.time(), self.settings.webhook_stripe_tolerance_s
        )
        if not ok:
            raise Refused(check.status, check.value)
        payload = self._object(body)
        delivery = stripe_delivery_id(payload, body)
        topic = safe_id(payload.get("type"))
        seen.delivery_id, seen.topic = delivery, topic
        return InboundWebhook(
            source=WebhookSource.STRIPE,
            topic=topic,
            delivery_id=delivery,
            dedup_key=dedup_key(WebhookSource.STRIPE, delivery),
            headers={STRIPE_EVENT_TYPE: topic} if topic else {},
            body=body.decode("utf-8"),
            received_at=self._now(),
        )

    # -- suppliers --------------------------------------------------------------------
    async def supplier(self, request: Request, seen: Seen, provider: str = "") -> InboundWebhook:
        name = provider_name(provider)
        config = self.suppliers.get(name)
        keys = config.keys if config is not None else ()
        if config is None or not keys:
            raise Refused(401, "no secret configured")
        seen.provider = name
        self._check_declared(request)
        signature = _header(request, config.header)
        if signature is None:
            raise Refused(401, f"missing {config.header}")
        body = await self._read(request)
        if not verify_hmac(body, signature, keys, config.encoding, config.prefix):
            raise Refused(401, "bad signature")
        payload = self._object(body)
        delivery = None
        if config.id_header:
            delivery = safe_id((request.headers.get(config.id_header) or "").strip())
        delivery = delivery or body_digest(body)
        topic = supplier_event(payload, config.event_field)
        seen.delivery_id, seen.topic = delivery, topic
        never = SECRET_HEADERS | {config.header.lower()}
        headers = select_headers(request.headers, [config.id_header] if config.id_header else [], never=never)
        return InboundWebhook(
            source=WebhookSource.SUPPLIER,
            provider=name,
            topic=topic,
            delivery_id=delivery,
            dedup_key=dedup_key(WebhookSource.SUPPLIER, delivery, provider=name),
            headers=headers,
            body=body.decode("utf-8"),
            received_at=self._now(),
        )

    # -- store and answer ------------------------------------------------------------
    async def store(self, record: InboundWebhook, seen: Seen) -> None:
        value = encode(record)  # outside the try: a record that cannot be encoded is a bug (500), not a 503
        try:
            await self.producer.send(record.key, value)
        except Exception as exc:  # broker down, no leader, timeout: the sender retries
            log.warning("webhook not stored (%s): %s", type(exc).__name__, seen.describe())
            raise Refused(503, "webhook could not be stored; retry later") from None

    async def handle(
        self,
        view: View,
        request: Request,
        source: str,
        check: Callable[..., Awaitable[InboundWebhook | None]],
        **kwargs: Any,
    ) -> Response:
        started = time.perf_counter()
        seen = Seen(source)
        status = 500
        try:
            try:
                record = await check(request, seen, **kwargs)
                if record is None:  # a ping (WooCommerce): answered, nothing stored
                    status = 200
                    return _json(view, {"ping": True}, status=200)
                await self.store(record, seen)
            except Refused as refusal:
                status = refusal.status
                if status != 503:
                    log.info("webhook refused %d %s: %s", status, refusal.reason, seen.describe())
                return _refusal(view, refusal)
            status = 202
            log.debug("webhook stored: %s", seen.describe())
            return _json(view, {"accepted": True, "dedup_key": record.dedup_key}, status=202)
        except Exception as exc:  # a bug: say where, never what the request held
            frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
            where = f"{frame[0].filename}:{frame[0].lineno}" if frame else "?"
            log.error("webhook failed with %s at %s: %s", type(exc).__name__, where, seen.describe())
            status = 500
            return _json(view, {"error": "internal error"}, status=500)
        finally:
            metrics.REQUESTS.labels(source, str(status)).inc()
            metrics.REQUEST_SECONDS.labels(source).observe(time.perf_counter() - started)


def _json(view: View, body: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    return view.bytes(orjson.dumps(body), content_type=JSON, status=status, headers=headers)


def _refusal(view: View, refusal: Refused) -> Response:
    if refusal.status == 503:
        return _json(
            view,
            {"error": refusal.reason, "retry": True},
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    response = _json(view, {"error": refusal.reason}, status=refusal.status)
    if refusal.status in (408, 413):
        # The rest of the body is not wanted: aiohttp drains it (a few seconds at
        # most) and closes the connection instead of reusing it.
        response.force_close()  # type: ignore[attr-defined]
    return response


# --------------------------------------------------------------------------- #
# Registration
# --------------------------------------------------------------------------- #


class _RedactWebhookValues(logging.Filter):
    """aiokafka's producer logs every value it sends at DEBUG ("Sending (key=%s
    value=%s) to %s"): a webhook body holds personal data, so for
    ``webhooks.inbound`` the value is replaced by its size (the key is ids only)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 3 and getattr(args[2], "topic", None) == WEBHOOKS_INBOUND:
            value = args[1]
            size = len(value) if isinstance(value, (bytes, bytearray, str)) else 0
            record.args = (args[0], f"<{size} bytes>", args[2])
        return True


def _redact_producer_debug_log() -> None:
    logger = logging.getLogger("aiokafka.producer.producer")
    if not any(isinstance(f, _RedactWebhookValues) for f in logger.filters):
        logger.addFilter(_RedactWebhookValues())


def register(engine: Engine, settings: IngressSettings | None = None) -> Ingress:
    """Add the webhook routes to ``engine.app`` and its producer to the worker.

    Reads ``IngressSettings`` (``OPS_*`` and the secrets file) unless given; an
    invalid value stops the worker with the variable's name.
    """
    ingress_settings = settings if settings is not None else IngressSettings.load()
    _redact_producer_debug_log()
    producer = InboundProducer(engine.settings, ingress_settings.webhook_ack_timeout_s)
    engine.app.add_dependency(producer)
    ingress = Ingress(ingress_settings, producer)
    app = engine.app

    class ShopifyWebhook(View):
        async def post(self, request: Request, topic: str | None = None) -> Response:
            return await ingress.handle(self, request, "shopify", ingress.shopify, path_topic=topic)

    class ShopifyTopicWebhook(ShopifyWebhook):
        pass

    class WooCommerceWebhook(View):
        async def post(self, request: Request) -> Response:
            return await ingress.handle(self, request, "woocommerce", ingress.woocommerce)

    class StripeWebhook(View):
        async def post(self, request: Request) -> Response:
            return await ingress.handle(self, request, "stripe", ingress.stripe)

    class SupplierWebhookView(View):
        async def post(self, request: Request, provider: str) -> Response:
            return await ingress.handle(self, request, "supplier", ingress.supplier, provider=provider)

    app.page("/webhooks/shopify")(ShopifyWebhook)
    app.page("/webhooks/shopify/{topic:.+}")(ShopifyTopicWebhook)
    app.page("/webhooks/woocommerce")(WooCommerceWebhook)
    app.page("/webhooks/stripe")(StripeWebhook)
    app.page("/webhooks/suppliers/{provider}")(SupplierWebhookView)
    configured = []
    if ingress.shopify_keys:
        configured.append(f"shopify ({len(ingress.shopify_keys)} shops)")
    if ingress.woocommerce_keys:
        configured.append(f"woocommerce ({len(ingress.woocommerce_keys)} sites)")
    if ingress.stripe_keys:
        configured.append("stripe")
    if ingress.suppliers:
        configured.append("suppliers " + ",".join(sorted(ingress.suppliers)))
    log.info("webhook ingress: %s", "; ".join(configured) or "no secret configured (every webhook is refused)")
    return ingress
