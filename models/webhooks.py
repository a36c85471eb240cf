"""Inbound webhooks: the record stored on ``webhooks.inbound`` and the pure
signature checks of Shopify, Stripe and the suppliers. No I/O.

The HTTP ingress (``connectors/ingress/views.py``) verifies a webhook with
the functions here, then stores it raw as an :class:`InboundWebhook`, keyed
by :func:`message_key` (the shop domain for Shopify, else the ``dedup_key``:
every delivery of one webhook lands on one partition), and only then
answers 2xx. Turning stored webhooks into order
events is the routing agent's job, not this module's.

Signatures (``/work/shared/notes/webhooks-and-side-effects.md`` §1, §2, §6):

- Shopify: ``X-Shopify-Hmac-Sha256`` is the base64 HMAC-SHA256 of the raw
  body keyed with the app secret of the shop. Several secrets may be valid at
  once (a rotation takes up to an hour to reach every delivery).
- Stripe: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]``, each ``v1``
  the hex HMAC-SHA256 of ``"{t}.{raw body}"``; any ``v1`` may match any of
  the endpoint secrets. The timestamp must lie within ``tolerance`` seconds
  of now, in the past *or the future* (stripe-python checks only the past).
  **Order of the checks:** the signature first, the window second. A request
  whose signature matches none of the secrets is a 401 whatever its ``t``
  (an unauthenticated sender learns nothing about the window, and a forged
  ``t`` is simply a bad signature); only a genuine signature with a ``t``
  outside the window is "stale" or "future" (400): a replay, or clock skew.
  An unparseable header (no ``t``, a non-numeric ``t``, no ``v1``) is a bad
  signature (401).
- WooCommerce: ``X-WC-Webhook-Signature`` is the base64 HMAC-SHA256 of the raw
  body keyed with the webhook's own secret (the same scheme as Shopify, one
  secret per webhook, so several per site); ``X-WC-Webhook-Source`` (the
  site's URL) names the site. A webhook being created first gets an
  unsigned ping, a form-encoded ``webhook_id=N`` body (:func:`is_woocommerce_ping`).
- Suppliers: a shared-secret HMAC-SHA256 of the raw body in a header of the
  provider's choice, hex or base64, with an optional prefix (``sha256=``).

Every comparison is :func:`hmac.compare_digest` against every secret (no
early exit on the first match).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

from pydantic import Field

from models.events import Event, UtcDatetime

SHOPIFY_HMAC_HEADER = "X-Shopify-Hmac-Sha256"
WOOCOMMERCE_SIGNATURE_HEADER = "X-WC-Webhook-Signature"
WOOCOMMERCE_SOURCE_HEADER = "X-WC-Webhook-Source"
WOOCOMMERCE_TOPIC_HEADER = "X-WC-Webhook-Topic"
STRIPE_SIGNATURE_HEADER = "Stripe-Signature"
STRIPE_DEFAULT_TOLERANCE_S = 300

#: Headers that carry signatures or credentials: never stored, never logged.
SECRET_HEADERS = frozenset(
    {
        "x-shopify-hmac-sha256", "stripe-signature", "authorization", "x-shopify-access-token", "cookie",
        "x-wc-webhook-signature",
    }
)

#: The Shopify headers kept on the record (lower case), and nothing else.
SHOPIFY_HEADERS = (
    "x-shopify-topic",
    "x-shopify-shop-domain",
    "x-shopify-webhook-id",
    "x-shopify-event-id",
    "x-shopify-triggered-at",
    "x-shopify-api-version",
)
#: The WooCommerce headers kept on the record (lower case), and nothing else.
WOOCOMMERCE_HEADERS = (
    "x-wc-webhook-source",
    "x-wc-webhook-topic",
    "x-wc-webhook-resource",
    "x-wc-webhook-event",
    "x-wc-webhook-id",
    "x-wc-webhook-delivery-id",
)
#: The event type of a Stripe event, from its body, kept under this name.
STRIPE_EVENT_TYPE = "stripe-event-type"

MAX_HEADER_VALUE = 256
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:@/-]{1,200}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Lone surrogates: what a header's non-UTF-8 bytes decode to (surrogateescape); not encodable.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_DIGITS = re.compile(r"^[0-9]{1,15}$")
_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]{0,62})(\.[a-z0-9]([a-z0-9-]{0,62}))*$")
_WOO_PING = re.compile(rb"^webhook_id=[0-9]{1,20}$")
#: The largest body a WooCommerce ping can have (``webhook_id=`` and 20 digits).
WOOCOMMERCE_PING_MAX = 64
#: Keys looked up in a supplier body for its event name, in this order.
SUPPLIER_EVENT_FIELDS = ("event", "event_type", "eventType", "type", "topic")


class WebhookSource(str, Enum):
    SHOPIFY = "SHOPIFY"
    STRIPE = "STRIPE"
    SUPPLIER = "SUPPLIER"
    WOOCOMMERCE = "WOOCOMMERCE"


class InboundWebhook(Event):
    """A webhook as received, verified and stored raw.

    Topic ``webhooks.inbound``, message key the shop domain for Shopify (the
    site host for WooCommerce), else
    ``dedup_key`` (``message_key``). Never holds a
    signature header. ``body`` is the raw body as UTF-8 text, byte for byte
    (it was checked to be a JSON object before it was stored).
    """

    source: WebhookSource
    provider: str | None = Field(None, description="supplier provider (SUPPLIER only), e.g. CJ_DROPSHIPPING")
    topic: str | None = Field(
        None,
        description=(
            "Shopify topic, WooCommerce topic (order.updated), Stripe event type, "
            "or the supplier's event name when its body has one"
        ),
    )
    delivery_id: str = Field(
        description=(
            "Shopify X-Shopify-Webhook-Id (else X-Shopify-Event-Id); WooCommerce X-WC-Webhook-Delivery-ID "
            "(else wc:{webhook id}:{resource id}:{date_modified_gmt}); Stripe the event id (evt_...); "
            "supplier the provider's id header; else sha256:<hex of the body>"
        )
    )
    dedup_key: str = Field(
        description=(
            "shopify:{shop}:{delivery_id} | woocommerce:{site}:{delivery_id} | stripe:{delivery_id} | "
            "supplier:{provider}:{delivery_id}"
        )
    )
    shop_domain: str | None = Field(
        None,
        description=(
            "X-Shopify-Shop-Domain (SHOPIFY), or the site host of X-WC-Webhook-Source (WOOCOMMERCE), lower case"
        ),
    )
    headers: dict[str, str] = Field(default_factory=dict, description="allow-listed headers, names in lower case")
    body: str
    received_at: UtcDatetime

    @property
    def key(self) -> bytes:
        """The message key on ``webhooks.inbound``: see :func:`message_key`."""
        return message_key(self)


def message_key(hook: InboundWebhook) -> bytes:
    """The message key of a stored webhook: the shop domain for Shopify and the
    site host for WooCommerce (so a
    shop's webhooks meet its ``catalog.variants`` mapping, keyed so too, on one
    partition: agents/webhooks.py), the ``dedup_key`` otherwise. Either way every
    delivery of one webhook lands on one partition, where its duplicates meet."""
    return (hook.shop_domain or hook.dedup_key).encode()


# --------------------------------------------------------------------------- #
# Signatures
# --------------------------------------------------------------------------- #


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else bytes(secret)


def _usable(secrets: Sequence[str | bytes]) -> list[bytes]:
    return [k for k in (_key(s) for s in secrets) if k]


def _any_digest_matches(body: bytes, given: bytes, secrets: Sequence[str | bytes]) -> bool:
    matched = False
    for key in _usable(secrets):
        expected = hmac.new(key, body, hashlib.sha256).digest()
        matched |= hmac.compare_digest(expected, given)
    return matched


def _b64decode(value: str) -> bytes | None:
    value = value.strip()
    if not value or not value.isascii():
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _hexdecode(value: str) -> bytes | None:
    value = value.strip()
    if not value or not value.isascii() or len(value) % 2 or not _HEX.match(value):
        return None
    return bytes.fromhex(value)


def sign_shopify(body: bytes, secret: str | bytes) -> str:
    """The ``X-Shopify-Hmac-Sha256`` value of ``body`` (for tests and tools)."""
    return base64.b64encode(hmac.new(_key(secret), body, hashlib.sha256).digest()).decode()


def verify_shopify(body: bytes, header_b64: str | None, secrets: Sequence[str | bytes]) -> bool:
    """True when ``header_b64`` is the base64 HMAC-SHA256 of ``body`` under any of
    ``secrets``. A missing or non-base64 header, or no (non-empty) secret: False."""
    if not header_b64 or not _usable(secrets):
        return False
    given = _b64decode(header_b64)
    if given is None or len(given) != hashlib.sha256().digest_size:
        return False
    return _any_digest_matches(body, given, secrets)


def sign_woocommerce(body: bytes, secret: str | bytes) -> str:
    """The ``X-WC-Webhook-Signature`` value of ``body`` (for tests and tools)."""
    return sign_shopify(body, secret)


def verify_woocommerce(body: bytes, header_b64: str | None, secrets: Sequence[str | bytes]) -> bool:
    """True when ``header_b64`` is the base64 HMAC-SHA256 of ``body`` under any of
    ``secrets`` (the scheme is Shopify's: :func:`verify_shopify`)."""
    return verify_shopify(body, header_b64, secrets)


def is_woocommerce_ping(body: bytes) -> bool:
    """The unsigned ping WooCommerce posts when a webhook is created: ``webhook_id=N``."""
    return len(body) <= WOOCOMMERCE_PING_MAX and _WOO_PING.match(body.strip()) is not None


def woocommerce_site(value: str | None) -> str | None:
    """The site a WooCommerce webhook comes from, as its secrets and the
    catalogue name it: the lower-case host of ``X-WC-Webhook-Source``
    (``https://Shop.Example.com/`` -> ``shop.example.com``); a bare host is
    taken as is. Port, path and scheme are dropped, so two WordPress sites on
    one host (a multisite in sub-directories) cannot be told apart. None
    when it is no host."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "@" in text:
        return None
    text = text.rsplit(":", 1)[0] if text.count(":") == 1 else text
    text = text.rstrip(".")
    if not text or len(text) > 253 or not _HOST.match(text):
        return None
    return text


class StripeCheck(str, Enum):
    """The outcome of :func:`verify_stripe`; ``status`` is the HTTP answer."""

    OK = "ok"
    NO_SECRET = "no secret configured"
    MISSING = "missing Stripe-Signature header"
    MALFORMED = "malformed Stripe-Signature header"
    NO_MATCH = "signature does not match"
    STALE = "timestamp older than the tolerance"
    FUTURE = "timestamp ahead of now by more than the tolerance"

    @property
    def status(self) -> int:
        if self is StripeCheck.OK:
            return 200
        return 400 if self in (StripeCheck.STALE, StripeCheck.FUTURE) else 401


def sign_stripe(body: bytes, secret: str | bytes, timestamp: int) -> str:
    """One ``v1`` signature (hex) of ``body`` at ``timestamp`` (for tests and tools)."""
    return hmac.new(_key(secret), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def stripe_header(body: bytes, secrets: Sequence[str | bytes], timestamp: int) -> str:
    """A whole ``Stripe-Signature`` value, one ``v1`` per secret (as during a roll)."""
    return ",".join([f"t={timestamp}", *(f"v1={sign_stripe(body, s, timestamp)}" for s in secrets)])


def parse_stripe_header(header: str) -> tuple[str, list[str]] | None:
    """``(t, [v1, ...])`` of a ``Stripe-Signature`` value, or None when it has not
    exactly one numeric ``t`` and at least one ``v1``. Other schemes (v0) are ignored."""
    timestamps: list[str] = []
    v1: list[str] = []
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            continue
        name, value = name.strip(), value.strip()
        if name == "t":
            timestamps.append(value)
        elif name == "v1" and value:
            v1.append(value)
    if len(timestamps) != 1 or not _DIGITS.match(timestamps[0]) or not v1:
        return None
    return timestamps[0], v1


def verify_stripe(
    body: bytes,
    header: str | None,
    secrets: Sequence[str | bytes],
    now: float,
    tolerance: float = STRIPE_DEFAULT_TOLERANCE_S,
) -> tuple[bool, StripeCheck]:
    """Check a ``Stripe-Signature`` header against ``body``.

    The signature first: unless some ``v1`` is the HMAC of ``"{t}.{body}"``
    under some secret, the answer is a bad signature (401), whatever ``t``.
    Then the window: ``|now - t| <= tolerance`` (inclusive), else STALE or
    FUTURE (400).
    """
    keys = _usable(secrets)
    if not keys:
        return False, StripeCheck.NO_SECRET
    if not header:
        return False, StripeCheck.MISSING
    parsed = parse_stripe_header(header)
    if parsed is None:
        return False, StripeCheck.MALFORMED
    timestamp, candidates = parsed
    signed = timestamp.encode() + b"." + body
    given = [_hexdecode(c) for c in candidates]
    matched = False
    for key in keys:
        expected = hmac.new(key, signed, hashlib.sha256).digest()
        for digest in given:
            if digest is not None:
                matched |= hmac.compare_digest(expected, digest)
    if not matched:
        return False, StripeCheck.NO_MATCH
    age = now - int(timestamp)
    if age > tolerance:
        return False, StripeCheck.STALE
    if -age > tolerance:
        return False, StripeCheck.FUTURE
    return True, StripeCheck.OK


def sign_hmac(body: bytes, secret: str | bytes, encoding: str = "hex") -> str:
    digest = hmac.new(_key(secret), body, hashlib.sha256).digest()
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


def verify_hmac(
    body: bytes,
    header: str | None,
    secrets: Sequence[str | bytes],
    encoding: str = "hex",
    prefix: str = "",
) -> bool:
    """A supplier's shared-secret HMAC-SHA256 of ``body``: ``header`` is
    ``prefix`` + the digest in ``encoding`` (``hex``, any case, or ``base64``)."""
    if not header or not _usable(secrets):
        return False
    value = header.strip()
    if prefix:
        if not value.startswith(prefix):
            return False
        value = value[len(prefix) :]
    given = _hexdecode(value) if encoding == "hex" else _b64decode(value)
    if given is None or len(given) != hashlib.sha256().digest_size:
        return False
    return _any_digest_matches(body, given, secrets)


def verify_hmac_hex(body: bytes, header: str | None, secrets: Sequence[str | bytes], prefix: str = "") -> bool:
    """:func:`verify_hmac` with a hex digest (the common supplier scheme)."""
    return verify_hmac(body, header, secrets, encoding="hex", prefix=prefix)


# --------------------------------------------------------------------------- #
# Ids, keys and the stored headers
# --------------------------------------------------------------------------- #


def body_digest(body: bytes) -> str:
    """The delivery id of a webhook that brings none: ``sha256:<hex>`` of its body."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def safe_id(value: Any) -> str | None:
    """``value`` when it is a short id-like string (letters, digits, ``._:@/-``), else None.

    Everything that goes into a key, a header of the record or a log line
    from a header or a body passes through here or :func:`clean_header`."""
    if isinstance(value, str) and _SAFE_ID.match(value):
        return value
    return None


def clean_header(value: str) -> str:
    """A header value as stored: control characters removed, bytes that were not
    UTF-8 replaced by U+FFFD, capped in length."""
    return _SURROGATE.sub("\ufffd", _CONTROL.sub("", value))[:MAX_HEADER_VALUE]


def shopify_delivery_id(headers: Mapping[str, str], body: bytes) -> str:
    """``X-Shopify-Webhook-Id``, else ``X-Shopify-Event-Id``, else the body's digest.

    ``headers`` is case-insensitive or has lower-case names."""
    for name in ("x-shopify-webhook-id", "x-shopify-event-id"):
        found = safe_id(headers.get(name))
        if found:
            return found
    return body_digest(body)


def woocommerce_delivery_id(headers: Mapping[str, str], payload: Mapping[str, Any], body: bytes) -> str:
    """``X-WC-Webhook-Delivery-ID``, else ``wc:{X-WC-Webhook-ID}:{resource id}:{date_modified_gmt}``
    (the body's ``id`` and ``date_modified_gmt``, or ``date_modified``), else the body's digest.

    WooCommerce makes a new delivery id for each delivery (a hash of the
    webhook id and the second it was sent), so a re-sent webhook is not
    caught here: the order events' own ids (made from the order id) are."""
    found = safe_id((headers.get("x-wc-webhook-delivery-id") or "").strip())
    if found:
        return found
    webhook = safe_id((headers.get("x-wc-webhook-id") or "").strip())
    resource = payload.get("id")
    modified = payload.get("date_modified_gmt") or payload.get("date_modified")
    if webhook and isinstance(resource, (int, str)) and not isinstance(resource, bool) and modified:
        fallback = safe_id(f"wc:{webhook}:{resource}:{modified}")
        if fallback:
            return fallback
    return body_digest(body)


def stripe_delivery_id(payload: Mapping[str, Any], body: bytes) -> str:
    """The event's ``id`` (``evt_...``), else the body's digest."""
    return safe_id(payload.get("id")) or body_digest(body)


def supplier_event(payload: Mapping[str, Any], field: str | None = None) -> str | None:
    """The event name of a supplier body: ``field`` if given, else the first of
    :data:`SUPPLIER_EVENT_FIELDS` that holds an id-like string."""
    for name in (field,) if field else SUPPLIER_EVENT_FIELDS:
        found = safe_id(payload.get(name))
        if found:
            return found
    return None


def dedup_key(
    source: WebhookSource, delivery_id: str, shop_domain: str | None = None, provider: str | None = None
) -> str:
    if source is WebhookSource.SHOPIFY:
        return f"shopify:{shop_domain}:{delivery_id}"
    if source is WebhookSource.WOOCOMMERCE:
        return f"woocommerce:{shop_domain}:{delivery_id}"
    if source is WebhookSource.STRIPE:
        return f"stripe:{delivery_id}"
    return f"supplier:{provider}:{delivery_id}"


def shop_webhook(
    source: WebhookSource, shop: str, topic: str | None, delivery_id: str, headers: dict[str, str], body: str,
    received_at: Any,
) -> InboundWebhook:
    """The record of a storefront's webhook (SHOPIFY: ``shop`` the shop domain;
    WOOCOMMERCE: the site's host), built the one way for what the ingress
    stores of a delivery and what the reconciliation stores of a pulled order
    (models/shopify_orders.py, models/woocommerce_orders.py)."""
    return InboundWebhook(
        source=source,
        topic=topic,
        delivery_id=delivery_id,
        dedup_key=dedup_key(source, delivery_id, shop_domain=shop),
        shop_domain=shop,
        headers=headers,
        body=body,
        received_at=received_at,
    )


def select_headers(
    headers: Mapping[str, str], names: Sequence[str], never: frozenset[str] = SECRET_HEADERS
) -> dict[str, str]:
    """The allow-listed ``names`` (lower case) present in ``headers``, cleaned;
    a name in ``never`` is left out even when allow-listed."""
    kept: dict[str, str] = {}
    for name in names:
        lower = name.lower()
        if lower in never or lower in kept:
            continue
        value = headers.get(lower)
        if value is not None:
            kept[lower] = clean_header(value)
    return kept
