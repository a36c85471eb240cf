"""Orders pulled from Shopify, as the webhooks the ingress would have stored (pure, no I/O).

The reconciliation (connectors/shopify/reconcile.py) pulls the orders updated
since its last pull with the GraphQL Admin API and publishes each one on
``webhooks.inbound`` as a synthesized :class:`InboundWebhook`, in the shape the
ingress stores, so the router (agents/webhooks.py) and the order machine treat
it as they treat a webhook:

- the order itself as ``orders/updated`` (the router maps orders/create, paid
  and updated alike: ORDER_CREATED with the event id ``shopify:{shop}:order:{id}``,
  PAYMENT_CONFIRMED ``...:paid`` when paid), its body the REST order shape
  (``line_items[].variant_id``, ``shipping_address``, ``financial_status``, ...);
- a cancelled order also as ``orders/cancelled``;
- each fulfillment with a tracking number as ``fulfillments/create``.

Delivery ids are made from the order (or fulfillment) and its ``updatedAt``
(``reconcile:...``): pulling an unchanged order again is a duplicate the router
drops on its delivery id, and an order whose webhook did arrive is a duplicate
the order machine drops on its event id. Nothing is lost either way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from models.webhooks import InboundWebhook, WebhookSource, shop_webhook


def _tail(gid: Any) -> int | str | None:
    if gid in (None, ""):
        return None
    tail = str(gid).rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else tail


def _money(obj: Any) -> str | None:
    amount = ((obj or {}).get("shopMoney") or {}).get("amount")
    return None if amount is None else str(amount)


def _nodes(connection: Any) -> list[dict[str, Any]]:
    if isinstance(connection, list):
        return connection
    return list((connection or {}).get("nodes") or [])


def rest_order(node: dict[str, Any]) -> dict[str, Any]:
    """A GraphQL ``Order`` node in the REST shape of an ``orders/*`` webhook body
    (the fields models/webhook_routing.py reads)."""
    address = node.get("shippingAddress") or None
    customer = node.get("customer") or {}
    return {
        "id": _tail(node.get("id")),
        "admin_graphql_api_id": node.get("id"),
        "name": node.get("name"),
        "email": node.get("email"),
        "phone": node.get("phone"),
        "created_at": node.get("createdAt"),
        "updated_at": node.get("updatedAt"),
        "cancelled_at": node.get("cancelledAt"),
        "cancel_reason": (node.get("cancelReason") or "").lower() or None,
        "financial_status": (node.get("displayFinancialStatus") or "").lower() or None,
        "currency": node.get("currencyCode"),
        "subtotal_price": _money(node.get("subtotalPriceSet")),
        "total_price": _money(node.get("totalPriceSet")),
        "total_tax": _money(node.get("totalTaxSet")),
        "total_shipping_price_set": {"shop_money": {"amount": _money(node.get("totalShippingPriceSet"))}},
        "customer": {
            "first_name": customer.get("firstName"), "last_name": customer.get("lastName"),
            "email": customer.get("email"), "phone": customer.get("phone"),
        },
        "shipping_address": None if address is None else {
            "name": address.get("name"), "first_name": address.get("firstName"), "last_name": address.get("lastName"),
            "address1": address.get("address1"), "address2": address.get("address2"), "city": address.get("city"),
            "province": address.get("province"), "province_code": address.get("provinceCode"),
            "zip": address.get("zip"), "country_code": address.get("countryCodeV2"), "phone": address.get("phone"),
        },
        "line_items": [
            {
                "id": _tail(line.get("id")), "title": line.get("title"), "quantity": line.get("quantity"),
                "variant_id": _tail((line.get("variant") or {}).get("id")),
                "product_id": _tail((line.get("product") or {}).get("id")),
                "price": _money(line.get("originalUnitPriceSet")),
            }
            for line in _nodes(node.get("lineItems"))
        ],
    }


def rest_fulfillment(order_id: Any, fulfillment: dict[str, Any]) -> dict[str, Any] | None:
    """A fulfillment in the REST shape of a ``fulfillments/*`` body; None without tracking."""
    info = next(iter(fulfillment.get("trackingInfo") or []), None) or {}
    if not info.get("number"):
        return None
    return {
        "id": _tail(fulfillment.get("id")),
        "order_id": _tail(order_id),
        "tracking_number": info.get("number"),
        "tracking_numbers": [i.get("number") for i in fulfillment.get("trackingInfo") or [] if i.get("number")],
        "tracking_company": info.get("company"),
        "tracking_url": info.get("url"),
        "updated_at": fulfillment.get("updatedAt"),
        "line_items": [
            {"id": _tail((n.get("lineItem") or {}).get("id")),
             "variant_id": _tail(((n.get("lineItem") or {}).get("variant") or {}).get("id"))}
            for n in _nodes(fulfillment.get("fulfillmentLineItems"))
        ],
    }


def _hook(shop: str, topic: str, delivery: str, body: dict[str, Any], received_at: datetime) -> InboundWebhook:
    headers = {"x-shopify-topic": topic, "x-shopify-shop-domain": shop}
    return shop_webhook(WebhookSource.SHOPIFY, shop, topic, delivery, headers, orjson.dumps(body).decode(), received_at)


def webhooks_of(shop: str, node: dict[str, Any], received_at: datetime) -> list[InboundWebhook]:
    """The webhooks one pulled order stands for (see the module docstring)."""
    order = rest_order(node)
    oid, stamp = order["id"], node.get("updatedAt") or ""
    hooks = [_hook(shop, "orders/updated", f"reconcile:order:{oid}:{stamp}", order, received_at)]
    if node.get("cancelledAt"):
        hooks.append(_hook(shop, "orders/cancelled", f"reconcile:cancel:{oid}", order, received_at))
    for fulfillment in node.get("fulfillments") or []:
        body = rest_fulfillment(node.get("id"), fulfillment)
        if body is not None:
            delivery = f"reconcile:fulfillment:{body['id']}:{body['tracking_number']}"
            hooks.append(_hook(shop, "fulfillments/create", delivery, body, received_at))
    return hooks
