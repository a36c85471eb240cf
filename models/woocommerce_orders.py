"""Orders pulled from a WooCommerce site, as the webhooks the ingress would have stored (pure, no I/O).

The reconciliation (connectors/woocommerce/reconcile.py) pulls the orders
modified since its last pull with the REST API (``GET /orders``) and publishes
each one on ``webhooks.inbound`` as the :class:`InboundWebhook` the ingress
(connectors/ingress/views.py) stores for a real ``order.updated`` delivery,
built by the same function (``models.webhooks.shop_webhook``): source WOOCOMMERCE, ``shop_domain`` the site's host (so the message key is the
site's, where its catalogue is), the allow-listed ``x-wc-webhook-*`` headers,
and the order as the body. A WooCommerce order webhook (API version v3)
carries exactly what ``GET /wp-json/wc/v3/orders/{id}`` answers, so the body
is the pulled order as it came.

The router maps order.created and order.updated alike (by the order's status:
ORDER_CREATED ``woocommerce:{site}:order:{id}``, PAYMENT_CONFIRMED ``...:paid``,
CANCEL_REQUESTED, REFUND_REQUESTED), so ``order.updated`` stands for both.

The delivery id is made from the order and its ``date_modified_gmt``
(``reconcile:order:{id}:{date_modified_gmt}``): pulling an unchanged order
again is a duplicate the router drops on its delivery id, and an order whose
webhook did arrive is a duplicate the order machine drops on its event ids.
Nothing is lost either way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from models.webhooks import InboundWebhook, WebhookSource, shop_webhook

#: The webhook a pulled order stands for.
TOPIC = "order.updated"


def modified_of(order: dict[str, Any]) -> str:
    """The order's last modification as WooCommerce writes it (GMT, no zone), or ``""``."""
    return str(order.get("date_modified_gmt") or order.get("date_modified") or "")


def delivery_id_of(order: dict[str, Any]) -> str:
    return f"reconcile:order:{order.get('id')}:{modified_of(order)}"


def webhook_of(site: str, order: dict[str, Any], received_at: datetime) -> InboundWebhook:
    """The ``order.updated`` webhook one pulled order stands for (see the module docstring)."""
    delivery = delivery_id_of(order)
    resource, event = TOPIC.split(".")
    headers = {
        "x-wc-webhook-source": f"https://{site}/",
        "x-wc-webhook-topic": TOPIC,
        "x-wc-webhook-resource": resource,
        "x-wc-webhook-event": event,
        "x-wc-webhook-delivery-id": delivery,
    }
    return shop_webhook(WebhookSource.WOOCOMMERCE, site, TOPIC, delivery, headers, orjson.dumps(order).decode(),
                        received_at)
