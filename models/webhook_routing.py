"""What a stored webhook means for the engine (pure): order events, alerts, or a refusal.

``route(source, topic, shop_domain, body, received_at, catalogue)`` maps one
Shopify, WooCommerce or Stripe webhook to ``Routed``: order events for ``orders.events``,
alerts, or the reason it cannot be mapped (dead-lettered by the agent).

Event ids are made from what the webhook is about, not from the delivery, so
the order machine drops a second delivery whatever ids the sender put on it
(the router's own dedup on the delivery id is the first line):

- Shopify orders/create, orders/paid, orders/updated all carry the whole order,
  so each emits ORDER_CREATED with the one id ``shopify:{shop}:order:{id}``:
  whichever arrives first creates the order (a lost orders/create is no
  loss). A paid order also emits PAYMENT_CONFIRMED ``...:paid``.
- WooCommerce order.created / order.updated carry the whole order too (REST
  v3 shape): ORDER_CREATED ``woocommerce:{site}:order:{id}`` (order id
  ``woocommerce-{site}-{id}``: a site's order ids are small integers, so the
  site is part of it), and PAYMENT_CONFIRMED ``...:paid`` once the order is
  paid (status processing or completed, or ``date_paid_gmt`` set); status
  cancelled is CANCEL_REQUESTED ``...:cancelled``, refunded REFUND_REQUESTED
  ``...:refunded``.
- Stripe payment confirmations for one order share ``stripe:paid:{order_id}``
  (a PaymentIntent and its Checkout Session are one payment).

Items are resolved to our products and supplier sources through the
catalogue (Shopify variant id, or WooCommerce variation / product id ->
store product, variant, provider, source ids).
An item with no mapping becomes an item of provider ``UNMAPPED``: the machine
makes that group need a person with the reason, rather than crash or drop it.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from decimal import ROUND_HALF_UP
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from models.alerts import open_alert
from models.events import (
    Alert,
    AlertType,
    Currency,
    Event,
    Money,
    ProductMapped,
    Provider,
    SourceId,
    StorefrontStock,
)
from models.orders import ORDER_EVENT, OrderEvent

UNMAPPED = "UNMAPPED"


Platform = Literal["SHOPIFY", "WOOCOMMERCE"]


class CatalogueVariant(Event):
    """One storefront variant and where it comes from. Topic ``catalog.variants``,
    key ``shop_domain`` (the router reads it on the shop's partition).

    The names are Shopify's, from before there was a second storefront; for
    ``platform`` WOOCOMMERCE, ``shop_domain`` is the site's host (as in
    ``X-WC-Webhook-Source``: ``shop.example.com``) and ``shopify_variant_id``
    the WooCommerce variation id, or the product id of a simple product (one id
    space in WordPress, so they never collide); ``shopify_inventory_item_id``
    is unused. A record without ``platform`` is a Shopify one."""

    platform: Platform = Field("SHOPIFY", description="the storefront: SHOPIFY (default) or WOOCOMMERCE")
    shop_domain: str = Field(description="Shopify shop domain, or the WooCommerce site host")
    shopify_variant_id: str = Field(
        description="Shopify variant id, or the WooCommerce variation id (product id of a simple product)"
    )
    store_id: str
    product_id: str
    variant_id: str | None = None
    provider: str
    source_id: str
    source_variant_id: str | None = None
    title: str | None = None
    shopify_inventory_item_id: str | None = None
    woocommerce_parent_id: str | None = Field(
        None, description="WooCommerce: the parent product id of a variation (None: a simple product)"
    )


def catalogue_key(shop_domain: str, shopify_variant_id: str | int) -> str:
    return f"{shop_domain}|{shopify_variant_id}"


def inventory_item_ref(inventory_item_id: str | int) -> str:
    """The catalogue also files a variant under its Shopify inventory item
    (``inventory_levels/update`` names only that): ``catalogue(shop, ref)``."""
    return f"item:{inventory_item_id}"


Catalogue = Callable[[str, str], CatalogueVariant | None]  # (shop, variant id) -> mapping


class SupplierTracking(Event):
    """A supplier says a parcel of one of our orders moved. Topic ``supplier.tracking``,
    key ``{provider}:{reference or supplier_order_id}``.

    Only the executor knows which order and group a supplier order is (its
    PostgreSQL record, by our reference or the supplier's id), so the router
    hands it this and the executor publishes TRACKING_RECEIVED / DELIVERED with
    the same ids as its tracking poller: a webhook and a poll of one parcel
    are one event."""

    provider: str
    reference: str | None = None
    supplier_order_id: str | None = None
    tracking_number: str
    carrier: str | None = None
    tracking_url: str | None = None
    delivered: bool = False
    received_at: datetime

    @property
    def key(self) -> bytes:
        return f"{self.provider}:{self.reference or self.supplier_order_id}".encode()


def source_key(provider: str, source_id: str) -> str:
    """Where the stores fed by a supplier product are filed (``catalog.sources`` key)."""
    return f"{provider.upper()}|{source_id}"


def variant_source_key(provider: str, source_variant_id: str) -> str:
    """The same, for news that names only the supplier's variant."""
    return f"{provider.upper()}|variant:{source_variant_id}"


class CatalogueSource(Event):
    """The catalogue turned around: which store products one supplier product
    feeds. Topic ``catalog.sources``, key ``index``: ``{PROVIDER}|{source_id}``,
    and ``{PROVIDER}|variant:{source_variant_id}`` for a variant. The router
    files each ``catalog.variants`` record under both (and ``removed`` ones when
    a variant moves to another source), so a supplier's stock or price webhook
    finds the stores it concerns on its own partition."""

    index: str
    provider: Provider
    source_id: SourceId
    catalogue_key: str  # shop|shopify variant id: one storefront variant
    store_id: str
    product_id: str
    variant_id: str | None = None
    source_variant_id: str | None = None
    removed: bool = False

    @property
    def key(self) -> bytes:
        return self.index.encode()


def source_records(catalogue_key: str, variant: CatalogueVariant, removed: bool) -> list[CatalogueSource]:
    """The index records of one storefront variant (models the router's ``catalog.sources`` output)."""
    indexes = [source_key(variant.provider, variant.source_id)]
    if variant.source_variant_id:
        indexes.append(variant_source_key(variant.provider, variant.source_variant_id))
    return [
        CatalogueSource(
            index=index, provider=variant.provider, source_id=variant.source_id, catalogue_key=catalogue_key,
            store_id=variant.store_id, product_id=variant.product_id, variant_id=variant.variant_id,
            source_variant_id=variant.source_variant_id, removed=removed,
        )
        for index in indexes
    ]


def newly_mapped(
    previous: CatalogueVariant | None, variant: CatalogueVariant, command_id: str, at: datetime
) -> ProductMapped | None:
    """The command that has the inventory agent show ``variant``'s store product on the
    storefront, when this catalogue record maps the shop's variant to that product for
    the first time (no mapping before, or one to another product); else None. None
    too for ids the inventory topics cannot key (the product could not be tracked)."""
    if previous is not None and (previous.store_id, previous.product_id, previous.variant_id) == (
        variant.store_id, variant.product_id, variant.variant_id
    ):
        return None
    try:
        return ProductMapped(
            command_id=command_id, store_id=variant.store_id, product_id=variant.product_id,
            variant_id=variant.variant_id, shop_domain=variant.shop_domain,
            storefront_variant_id=variant.shopify_variant_id, mapped_at=at,
        )
    except ValidationError:
        return None


class SupplierProductUpdate(Event):
    """A supplier says one of its products' stock, price or availability changed.
    Topic ``supplier.updates``, key ``{PROVIDER}|{source_id}`` (or
    ``{PROVIDER}|variant:{source_variant_id}`` when it names only a variant). The
    router turns it into a ``SupplierUpdate`` command for each store product the
    catalogue says it feeds; the inventory agent applies it as a snapshot."""

    update_id: str
    provider: Provider
    source_id: SourceId | None = None
    source_variant_id: str | None = None
    available: bool | None = None
    stock: int | None = Field(None, ge=0)
    cost_price: Money | None = None
    currency: Currency | None = None
    captured_at: datetime

    @model_validator(mode="after")
    def _names_a_product(self) -> SupplierProductUpdate:
        if self.source_id is None and not self.source_variant_id:
            raise ValueError("names no product (source_id or source_variant_id)")
        return self

    @property
    def key(self) -> bytes:
        if self.source_id is not None:
            return source_key(self.provider, self.source_id).encode()
        return variant_source_key(self.provider, self.source_variant_id or "").encode()


@dataclass
class Routed:
    events: list[OrderEvent] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    tracking: list[SupplierTracking] = field(default_factory=list)  # for the executor to resolve
    products: list[SupplierProductUpdate] = field(default_factory=list)  # stock and price news
    stock_reports: list[StorefrontStock] = field(default_factory=list)  # the storefront's own counts
    refused: str | None = None  # why it cannot be mapped (dead letter)
    ignored: str | None = None  # a topic we take no action on


class _Unroutable(Exception):
    pass


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _money(value: Any) -> str:
    if value in (None, ""):
        return "0"
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise _Unroutable(f"not an amount: {value!r}") from None
    if amount < 0:
        raise _Unroutable(f"negative amount: {value!r}")
    return str(amount)


def _event(payload: dict[str, Any]) -> OrderEvent:
    try:
        return ORDER_EVENT.validate_python(payload)
    except Exception as exc:  # pydantic's message is the reason
        raise _Unroutable(f"{payload.get('type')}: {exc}") from None


# --------------------------------------------------------------------------- #
# Shopify
# --------------------------------------------------------------------------- #


def _address(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or not raw.get("address1") or not raw.get("country_code"):
        raise _Unroutable("order has no shipping address (address1, country_code)")
    name = raw.get("name") or " ".join(p for p in (raw.get("first_name"), raw.get("last_name")) if p) or "-"
    return {
        "name": name,
        "line1": raw["address1"],
        "line2": raw.get("address2") or None,
        "city": raw.get("city") or "-",
        "province": raw.get("province_code") or raw.get("province") or None,
        "postal_code": raw.get("zip") or None,
        "country_code": raw["country_code"],
        "phone": raw.get("phone") or None,
    }


def _shopify_order_id(order_id: Any) -> str:
    if order_id in (None, ""):
        raise _Unroutable("no order id")
    return f"shopify-{order_id}"


def _shopify_created(
    shop: str, order: dict[str, Any], at: datetime, catalogue: Catalogue
) -> tuple[str, str, list[OrderEvent]]:
    order_id = _shopify_order_id(order.get("id"))
    lines = order.get("line_items") or []
    if not lines:
        raise _Unroutable("order has no line items")
    items, store_id = [], None
    for line in lines:
        variant = str(line.get("variant_id") or "")
        mapped = catalogue(shop, variant) if variant else None
        if mapped is not None:
            store_id = store_id or mapped.store_id
            items.append({
                "line_id": str(line.get("id")), "product_id": mapped.product_id, "variant_id": mapped.variant_id,
                "title": line.get("title") or mapped.title, "quantity": int(line.get("quantity") or 1),
                "unit_price": _money(line.get("price")), "provider": mapped.provider,
                "source_id": mapped.source_id, "source_variant_id": mapped.source_variant_id,
            })
        else:
            items.append({
                "line_id": str(line.get("id")), "product_id": f"shopify-product-{line.get('product_id') or '?'}",
                "variant_id": f"shopify-variant-{variant or '?'}", "title": line.get("title"),
                "quantity": int(line.get("quantity") or 1), "unit_price": _money(line.get("price")),
                "provider": UNMAPPED, "source_id": f"shopify-variant-{variant or 'none'}",
            })
    store_id = store_id or shop
    customer = order.get("customer") or {}
    paid = order.get("financial_status") == "paid"
    shipping = _get(order, "total_shipping_price_set", "shop_money", "amount")
    created = {
        "type": "ORDER_CREATED",
        "event_id": f"shopify:{shop}:order:{order.get('id')}",
        "order_id": order_id,
        "store_id": store_id,
        "occurred_at": at,
        "order_number": str(order.get("name") or order.get("order_number") or order.get("id")),
        "customer": {
            "name": " ".join(p for p in (customer.get("first_name"), customer.get("last_name")) if p) or None,
            "email": order.get("email") or customer.get("email") or None,
            "phone": order.get("phone") or customer.get("phone") or None,
        },
        "shipping_address": _address(order.get("shipping_address")),
        "items": items,
        "subtotal": _money(order.get("subtotal_price")),
        "shipping_total": _money(shipping),
        "tax_total": _money(order.get("total_tax")),
        "total": _money(order.get("total_price")),
        "currency": order.get("currency") or "USD",
        "payment_status": "PAID" if paid else "PENDING",
        "fulfilled_in_store": order.get("fulfillment_status") in ("fulfilled", "partial"),
    }
    events = [_event(created)]
    if paid:
        events.append(_shopify_paid(shop, order, order_id, store_id, at))
    return order_id, store_id, events


def _shopify_paid(shop: str, order: dict[str, Any], order_id: str, store_id: str, at: datetime) -> OrderEvent:
    return _event({
        "type": "PAYMENT_CONFIRMED",
        "event_id": f"shopify:{shop}:order:{order.get('id')}:paid",
        "order_id": order_id,
        "store_id": store_id,
        "occurred_at": at,
        "amount": _money(order.get("total_price")),
        "currency": order.get("currency") or None,
    })


def _store_of(shop: str, body: dict[str, Any], catalogue: Catalogue) -> str:
    for line in body.get("line_items") or []:
        mapped = catalogue(shop, str(line.get("variant_id") or ""))
        if mapped is not None:
            return mapped.store_id
    return shop


def route_shopify(
    topic: str,
    shop: str,
    body: dict[str, Any],
    at: datetime,
    catalogue: Catalogue,
    orders_of: Callable[[str], list[str]] = lambda shop: [],
    stores_of: Callable[[str], list[str]] = lambda shop: [],
) -> Routed:
    if topic in ("orders/create", "orders/paid", "orders/updated"):
        _, _, events = _shopify_created(shop, body, at, catalogue)
        return Routed(events=events)
    if topic == "orders/cancelled":
        order_id = _shopify_order_id(body.get("id"))
        return Routed(events=[_event({
            "type": "CANCEL_REQUESTED", "event_id": f"shopify:{shop}:order:{body.get('id')}:cancelled",
            "order_id": order_id, "store_id": _store_of(shop, body, catalogue), "occurred_at": at,
            "reason": str(body.get("cancel_reason") or "cancelled in the store"),
        })])
    if topic == "refunds/create":
        order_id = _shopify_order_id(body.get("order_id"))
        amount = sum(
            (Decimal(str(t.get("amount") or "0")) for t in body.get("transactions") or [] if t.get("kind") == "refund"),
            Decimal("0"),
        )
        return Routed(events=[_event({
            "type": "REFUND_REQUESTED", "event_id": f"shopify:{shop}:refund:{body.get('id')}",
            "order_id": order_id, "store_id": shop, "occurred_at": at,
            "reason": str(body.get("note") or "refunded in the store"), "amount": str(amount) if amount else None,
        })])
    if topic in ("fulfillments/create", "fulfillments/update"):
        order_id = _shopify_order_id(body.get("order_id"))
        number = body.get("tracking_number") or next(iter(body.get("tracking_numbers") or []), None)
        if not number:
            return Routed(ignored="fulfillment without a tracking number")
        groups = []
        for line in body.get("line_items") or []:
            mapped = catalogue(shop, str(line.get("variant_id") or ""))
            group = mapped.provider if mapped is not None else UNMAPPED
            if group not in groups:
                groups.append(group)
        if not groups:
            raise _Unroutable("fulfillment names no line items")
        store_id = _store_of(shop, body, catalogue)
        return Routed(events=[
            _event({
                "type": "TRACKING_RECEIVED",
                "event_id": f"shopify:{shop}:fulfillment:{body.get('id')}:{group}:{number}",
                "order_id": order_id, "store_id": store_id, "occurred_at": at, "group_id": group,
                "tracking_number": number, "carrier": body.get("tracking_company") or None,
                "tracking_url": body.get("tracking_url") or None, "source": "STOREFRONT",
            })
            for group in groups
        ])
    if topic == "inventory_levels/update":
        return _storefront_stock(shop, body, at, catalogue)
    if topic == "app/uninstalled":
        micros = int(at.timestamp() * 1_000_000)
        return Routed(alerts=[
            open_alert(
                subject_key=f"shopify|{shop}|app", store_id=store_id, product_id=None, variant_id=None,
                alert_type=AlertType.APP_UNINSTALLED, title=f"App uninstalled from {shop}",
                message=(f"Shopify says the app was uninstalled from {shop}: the storefront no longer takes the "
                         "engine's writes. Paid orders are still placed at the suppliers; Shopify sends shop/redact "
                         "48 hours later, and the engine then removes the customers' personal data."),
                metadata={"shop_domain": shop}, at=at, trigger_micros=micros,
            )
            for store_id in (stores_of(shop) or [shop])
        ])
    if topic == "shop/redact":
        # 48 h after an uninstall: every order of the shop the engine has seen.
        order_ids = orders_of(shop)
        return Routed(events=[
            _event({
                "type": "REDACT_REQUESTED", "event_id": f"shopify:{shop}:shop-redact:{order_id}",
                "order_id": order_id, "store_id": shop, "occurred_at": at, "reason": "shop/redact",
            })
            for order_id in order_ids
        ], ignored=None if order_ids else "shop/redact: no orders of this shop seen")
    if topic == "customers/data_request":
        requested = body.get("orders_requested") or []
        request_id = str(_get(body, "data_request", "id") or "")
        return Routed(events=[
            _event({
                "type": "DATA_REQUESTED", "event_id": f"shopify:{shop}:data-request:{request_id}:{order}",
                "order_id": _shopify_order_id(order), "store_id": shop, "occurred_at": at,
                "request_id": request_id,
            })
            for order in requested
        ], ignored=None if requested else "customers/data_request names no orders")
    if topic == "customers/redact":
        orders = body.get("orders_to_redact") or []
        return Routed(events=[
            _event({
                "type": "REDACT_REQUESTED", "event_id": f"shopify:{shop}:redact:{order}", "order_id":
                _shopify_order_id(order), "store_id": shop, "occurred_at": at, "reason": "customers/redact",
            })
            for order in orders
        ], ignored=None if orders else "customers/redact names no orders")
    return Routed(ignored=f"no action for Shopify topic {topic}")


def _storefront_stock(shop: str, body: dict[str, Any], at: datetime, catalogue: Catalogue) -> Routed:
    item = body.get("inventory_item_id")
    if item in (None, ""):
        raise _Unroutable("inventory_levels/update names no inventory_item_id")
    mapped = catalogue(shop, inventory_item_ref(item))
    if mapped is None:
        return Routed(ignored=f"inventory item {item} is not in the catalogue")
    available = body.get("available")
    if available is None:  # Shopify does not track this item's stock
        return Routed(ignored=f"inventory item {item}: stock not tracked")
    if isinstance(available, bool) or not isinstance(available, int):
        raise _Unroutable(f"inventory_levels/update: available is not an integer: {available!r}")
    reported = at
    if isinstance(body.get("updated_at"), str):
        try:
            reported = datetime.fromisoformat(body["updated_at"].replace("Z", "+00:00"))
        except ValueError:
            raise _Unroutable(f"inventory_levels/update: updated_at is not a time: {body['updated_at']!r}") from None
        if reported.tzinfo is None:
            raise _Unroutable("inventory_levels/update: updated_at has no offset")
    location = body.get("location_id")
    return Routed(stock_reports=[StorefrontStock(
        command_id=f"shopify:{shop}:inventory:{item}:{location}:{int(reported.timestamp() * 1_000_000)}",
        store_id=mapped.store_id, product_id=mapped.product_id, variant_id=mapped.variant_id,
        available=available, location_id=None if location is None else str(location), reported_at=reported,
    )])


# --------------------------------------------------------------------------- #
# WooCommerce
# --------------------------------------------------------------------------- #

#: Statuses in which WooCommerce has the payment (or, for cash on delivery, takes the order as paid).
WOO_PAID_STATUSES = ("processing", "completed")
#: Orders not yet placed by a customer (the block checkout's draft) or in the bin.
WOO_IGNORED_STATUSES = ("checkout-draft", "auto-draft", "trash")
_MICRO = Decimal("0.000001")


def woocommerce_order_id(site: str, order_id: Any) -> str:
    """Our order id of a WooCommerce order: ``woocommerce-{site}-{id}``."""
    if order_id in (None, "") or isinstance(order_id, bool):
        raise _Unroutable("no order id")
    return f"woocommerce-{site}-{order_id}"


def woocommerce_item_ref(line: dict[str, Any]) -> str:
    """The catalogue id of a WooCommerce line: its variation, else its product."""
    for name in ("variation_id", "product_id"):
        value = line.get(name)
        if value not in (None, "", 0, "0") and not isinstance(value, bool):
            return str(value)
    return ""


def _six_places(amount: Decimal) -> Decimal:
    exponent = amount.as_tuple().exponent
    return amount.quantize(_MICRO, rounding=ROUND_HALF_UP) if isinstance(exponent, int) and exponent < -6 else amount


def _woo_unit_price(line: dict[str, Any]) -> str:
    """A line's unit price: its ``subtotal`` (a decimal string, before coupons)
    over its quantity; ``price`` (a JSON number in REST v3) only without one."""
    quantity = max(int(line.get("quantity") or 1), 1)
    subtotal = line.get("subtotal")
    if isinstance(subtotal, str) and subtotal.strip():
        try:
            return _money(_six_places(Decimal(subtotal) / quantity))
        except InvalidOperation:
            raise _Unroutable(f"not an amount: {subtotal!r}") from None
    price = line.get("price")
    if isinstance(price, float):
        return _money(_six_places(Decimal(repr(price))))
    return _money(price)


def _woo_address(order: dict[str, Any]) -> dict[str, Any]:
    """The shipping address, else the billing one (a store that ships to the billing address)."""
    for part in ("shipping", "billing"):
        raw = order.get(part)
        if isinstance(raw, dict) and raw.get("address_1") and raw.get("country"):
            name = " ".join(p for p in (raw.get("first_name"), raw.get("last_name")) if p) or raw.get("company") or "-"
            phone = raw.get("phone") or _get(order, "billing", "phone") or None
            return {
                "name": name, "line1": raw["address_1"], "line2": raw.get("address_2") or None,
                "city": raw.get("city") or "-", "province": raw.get("state") or None,
                "postal_code": raw.get("postcode") or None, "country_code": raw["country"], "phone": phone,
            }
    raise _Unroutable("order has no shipping or billing address (address_1, country)")


def _woo_paid(order: dict[str, Any]) -> bool:
    """Paid: status processing or completed, or a payment date (not for a failed payment)."""
    if order.get("status") == "failed":
        return False
    return order.get("status") in WOO_PAID_STATUSES or bool(order.get("date_paid_gmt") or order.get("date_paid"))


def _woo_items(site: str, order: dict[str, Any], catalogue: Catalogue) -> tuple[list[dict[str, Any]], str | None]:
    lines = order.get("line_items") or []
    if not lines:
        raise _Unroutable("order has no line items")
    items, store_id = [], None
    for line in lines:
        if not isinstance(line, dict):
            raise _Unroutable("a line item is not a JSON object")
        ref = woocommerce_item_ref(line)
        mapped = catalogue(site, ref) if ref else None
        if mapped is not None and mapped.platform != "WOOCOMMERCE":
            mapped = None  # a Shopify record under this host: not this site's product
        quantity = int(line.get("quantity") or 1)
        title = html.unescape(str(line.get("name"))) if line.get("name") else None  # "Hoodie &ndash; Blue"
        if mapped is not None:
            store_id = store_id or mapped.store_id
            items.append({
                "line_id": str(line.get("id")), "product_id": mapped.product_id, "variant_id": mapped.variant_id,
                "title": title or mapped.title, "quantity": quantity, "unit_price": _woo_unit_price(line),
                "provider": mapped.provider, "source_id": mapped.source_id,
                "source_variant_id": mapped.source_variant_id,
            })
        else:
            kind = "variation" if line.get("variation_id") not in (None, "", 0, "0") else "product"
            items.append({
                "line_id": str(line.get("id")), "product_id": f"woocommerce-product-{line.get('product_id') or '?'}",
                "variant_id": f"woocommerce-{kind}-{ref or '?'}", "title": title or line.get("sku") or None,
                "quantity": quantity, "unit_price": _woo_unit_price(line), "provider": UNMAPPED,
                "source_id": f"woocommerce {kind} {ref or 'none'} at {site}, sku {line.get('sku') or '-'}",
            })
    return items, store_id


def _woo_store(site: str, order: dict[str, Any], catalogue: Catalogue) -> str:
    for line in order.get("line_items") or []:
        ref = woocommerce_item_ref(line) if isinstance(line, dict) else ""
        mapped = catalogue(site, ref) if ref else None
        if mapped is not None and mapped.platform == "WOOCOMMERCE":
            return mapped.store_id
    return site


def _woo_created(site: str, order: dict[str, Any], at: datetime, catalogue: Catalogue) -> list[OrderEvent]:
    woo_id = order.get("id")
    order_id = woocommerce_order_id(site, woo_id)
    items, store_id = _woo_items(site, order, catalogue)
    store_id = store_id or site
    billing = order.get("billing") if isinstance(order.get("billing"), dict) else {}
    subtotal = sum((Decimal(_money(line.get("total"))) for line in order.get("line_items") or []), Decimal("0"))
    paid = _woo_paid(order)
    created = {
        "type": "ORDER_CREATED",
        "event_id": f"woocommerce:{site}:order:{woo_id}",
        "order_id": order_id,
        "store_id": store_id,
        "occurred_at": at,
        "order_number": str(order.get("number") or woo_id),
        "customer": {
            "name": " ".join(p for p in (billing.get("first_name"), billing.get("last_name")) if p) or None,
            "email": billing.get("email") or None,
            "phone": billing.get("phone") or None,
        },
        "shipping_address": _woo_address(order),
        "items": items,
        "subtotal": str(subtotal),
        "shipping_total": _money(order.get("shipping_total")),
        "tax_total": _money(order.get("total_tax")),
        "total": _money(order.get("total")),
        "currency": order.get("currency") or "USD",
        "payment_status": "PAID" if paid else "PENDING",
        "fulfilled_in_store": order.get("status") == "completed",
    }
    events = [_event(created)]
    if paid:
        events.append(_event({
            "type": "PAYMENT_CONFIRMED",
            "event_id": f"woocommerce:{site}:order:{woo_id}:paid",
            "order_id": order_id,
            "store_id": store_id,
            "occurred_at": at,
            "amount": _money(order.get("total")),
            "currency": order.get("currency") or None,
            "payment_id": str(order.get("transaction_id") or "")[:200] or None,
        }))
    return events


def route_woocommerce(topic: str, site: str, body: dict[str, Any], at: datetime, catalogue: Catalogue) -> Routed:
    """order.created / order.updated (/ order.restored) by the order's status."""
    if topic in ("order.created", "order.updated", "order.restored"):
        status = str(body.get("status") or "")
        woo_id = body.get("id")
        if status in WOO_IGNORED_STATUSES:
            return Routed(ignored=f"WooCommerce order {woo_id} is {status}")
        if status == "cancelled":
            return Routed(events=[_event({
                "type": "CANCEL_REQUESTED", "event_id": f"woocommerce:{site}:order:{woo_id}:cancelled",
                "order_id": woocommerce_order_id(site, woo_id), "store_id": _woo_store(site, body, catalogue),
                "occurred_at": at, "reason": "cancelled in the store",
            })])
        if status == "refunded":
            refunds = [r for r in body.get("refunds") or [] if isinstance(r, dict)]
            amount = sum((abs(Decimal(str(r.get("total") or "0"))) for r in refunds), Decimal("0"))
            reason = next((str(r["reason"]) for r in refunds if r.get("reason")), "refunded in the store")
            return Routed(events=[_event({
                "type": "REFUND_REQUESTED", "event_id": f"woocommerce:{site}:order:{woo_id}:refunded",
                "order_id": woocommerce_order_id(site, woo_id), "store_id": _woo_store(site, body, catalogue),
                "occurred_at": at, "reason": reason[:2000],
                "amount": str(amount) if amount else _money(body.get("total")),
            })])
        return Routed(events=_woo_created(site, body, at, catalogue))
    if topic == "order.deleted":
        return Routed(ignored="order.deleted: an order moved to the bin is not a cancellation (cancel it in the store)")
    return Routed(ignored=f"no action for WooCommerce topic {topic}")


# --------------------------------------------------------------------------- #
# Stripe
# --------------------------------------------------------------------------- #


def _cents(amount: Any, currency: str | None) -> str:
    # Stripe amounts are in the currency's smallest unit; zero-decimal currencies have none.
    zero_decimal = {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
                    "XAF", "XOF", "XPF"}
    value = Decimal(int(amount or 0))
    return str(value if (currency or "").upper() in zero_decimal else value / 100)


def _payment_alert(event_id: str, store_id: str, order_id: str, title: str, message: str, at: datetime) -> Alert:
    return open_alert(
        subject_key=f"stripe|{event_id}", store_id=store_id, product_id=None, variant_id=None,
        alert_type=AlertType.PAYMENT_ISSUE, title=title, message=message,
        metadata={"order_id": order_id, "stripe_event": event_id}, at=at,
        trigger_micros=int(at.timestamp() * 1_000_000),
    )


def route_stripe(body: dict[str, Any], at: datetime) -> Routed:
    kind = body.get("type")
    event_id = str(body.get("id") or "")
    obj = _get(body, "data", "object") or {}
    metadata = obj.get("metadata") or {}
    order_id, store_id = metadata.get("order_id"), metadata.get("store_id")
    paid_kinds = ("payment_intent.succeeded", "checkout.session.completed", "checkout.session.async_payment_succeeded")
    if kind not in paid_kinds + ("payment_intent.payment_failed", "charge.refunded", "charge.dispute.created"):
        return Routed(ignored=f"no action for Stripe event {kind}")
    if not order_id or not store_id:
        raise _Unroutable(f"{kind} {event_id} has no metadata.order_id and metadata.store_id")
    currency = (obj.get("currency") or "").upper() or None
    if kind in paid_kinds:
        if kind == "checkout.session.completed" and obj.get("payment_status") not in ("paid", "no_payment_required"):
            return Routed(ignored=f"checkout session {obj.get('payment_status')}: wait for the async payment")
        amount = obj.get("amount_received", obj.get("amount_total"))
        return Routed(events=[_event({
            "type": "PAYMENT_CONFIRMED", "event_id": f"stripe:paid:{order_id}", "order_id": order_id,
            "store_id": store_id, "occurred_at": at, "amount": _cents(amount, currency) if amount is not None else None,
            "currency": currency, "payment_id": str(obj.get("payment_intent") or obj.get("id") or "") or None,
        })])
    if kind == "payment_intent.payment_failed":
        reason = _get(obj, "last_payment_error", "message") or "payment failed"
        return Routed(alerts=[_payment_alert(event_id, store_id, order_id, "Payment failed", str(reason)[:500], at)])
    if kind == "charge.dispute.created":
        return Routed(alerts=[_payment_alert(
            event_id, store_id, order_id, "Payment disputed",
            f"dispute {obj.get('id')} ({obj.get('reason') or 'no reason'}): respond in the Stripe dashboard", at)])
    # charge.refunded
    refunded, amount = int(obj.get("amount_refunded") or 0), int(obj.get("amount") or 0)
    if amount and refunded >= amount:
        return Routed(events=[_event({
            "type": "REFUND_REQUESTED", "event_id": f"stripe:refund:{obj.get('id')}", "order_id": order_id,
            "store_id": store_id, "occurred_at": at, "reason": "refunded in Stripe",
            "amount": _cents(refunded, currency),
        })])
    return Routed(alerts=[_payment_alert(
        event_id, store_id, order_id, "Partial refund",
        f"{_cents(refunded, currency)} of {_cents(amount, currency)} {currency or ''} refunded; the order goes on", at)])


# --------------------------------------------------------------------------- #
# Suppliers
# --------------------------------------------------------------------------- #

_DELIVERED_WORDS = ("delivered", "signed", "received")
_TRACKING_KINDS = ("ORDER", "LOGISTIC", "LOGISTICS", "TRACKING", "SHIPMENT")
_PRODUCT_KINDS = ("STOCK", "INVENTORY", "PRICE", "PRODUCT", "VARIANT", "PRODUCT_UPDATE", "PRODUCT_REMOVED")
_GONE_WORDS = ("removed", "deleted", "delisted", "offline", "off_shelf", "unavailable", "discontinued")


def _first(params: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = params.get(name)
        if value not in (None, ""):
            return value
    return None


def route_supplier(event: str | None, provider: str, body: dict[str, Any], at: datetime) -> Routed:
    """Tracking, stock and price from a supplier's webhook.

    Shapes (not confirmed from public docs; see connectors/suppliers/*): CJ's
    messages ``{"type": ..., "params": {...}}``, ORDER / LOGISTIC with
    ``orderNumber`` (our reference), ``orderId``, ``trackNumber``,
    ``logisticName``, ``trackingUrl``, ``orderStatus``; STOCK / PRODUCT /
    VARIANT with ``pid``, ``vid``, ``storageNum``, ``sellPrice``, ``status``.
    And a generic form any supplier (or an integration in front of it) can
    send: ``{"event": "tracking", "reference", "supplier_order_id",
    "tracking_number", "carrier", "tracking_url", "delivered"}`` or ``{"event":
    "stock"|"price"|"product", "source_id", "source_variant_id", "stock",
    "price", "currency", "available"}``, the product ones also as a list under
    ``items``.
    """
    params = body.get("params") if isinstance(body.get("params"), dict) else body
    kind = str(body.get("type") or body.get("event") or event or "").upper()
    if kind in _PRODUCT_KINDS:
        items = body.get("items") if isinstance(body.get("items"), list) else [params]
        updates = [_product_update(kind, provider, item, at) for item in items]
        found = [u for u in updates if u is not None]
        return Routed(products=found, ignored=None if found else f"{provider} {kind} says no stock, price or status")
    if kind not in _TRACKING_KINDS:
        return Routed(ignored=f"no action for {provider} webhook {kind or '(no type)'}")
    number = params.get("trackNumber") or params.get("trackingNumber") or params.get("tracking_number")
    if not number:
        return Routed(ignored=f"{provider} {kind} without a tracking number")
    reference = params.get("orderNumber") or params.get("reference") or params.get("out_order_id")
    supplier_order_id = params.get("orderId") or params.get("supplier_order_id")
    if not reference and not supplier_order_id:
        raise _Unroutable(f"{provider} tracking names no order (reference or supplier order id)")
    status = str(params.get("orderStatus") or params.get("trackingStatus") or params.get("status") or "").lower()
    delivered = bool(params.get("delivered")) or any(w in status for w in _DELIVERED_WORDS)
    return Routed(tracking=[SupplierTracking(
        provider=provider, reference=str(reference) if reference else None,
        supplier_order_id=str(supplier_order_id) if supplier_order_id else None,
        tracking_number=str(number), carrier=params.get("logisticName") or params.get("carrier") or None,
        tracking_url=params.get("trackingUrl") or params.get("tracking_url") or None,
        delivered=delivered, received_at=at,
    )])


def _product_update(kind: str, provider: str, item: Any, at: datetime) -> SupplierProductUpdate | None:
    """One product's stock / price / status news, None when it says none of them."""
    if not isinstance(item, dict):
        raise _Unroutable(f"{provider} {kind}: an item is not a JSON object")
    source_id = _first(item, "pid", "productId", "product_id", "source_id")
    variant = _first(item, "vid", "variantId", "variant_id", "source_variant_id")
    if source_id is None and variant is None:
        raise _Unroutable(f"{provider} {kind} names no product (pid, vid, source_id or source_variant_id)")
    stock = _first(item, "storageNum", "inventoryNum", "inventory", "stock", "quantity")
    price = _first(item, "variantSellPrice", "sellPrice", "cost_price", "price")
    status = str(_first(item, "status", "productStatus") or "").lower()
    available = item.get("available")
    if kind == "PRODUCT_REMOVED" or any(word in status for word in _GONE_WORDS):
        available = False
    if stock is None and price is None and available is None:
        return None
    try:
        return SupplierProductUpdate(
            update_id=f"{provider}:{source_id}:{variant or ''}:{int(at.timestamp() * 1_000_000)}",
            provider=provider, source_id=None if source_id is None else str(source_id),
            source_variant_id=None if variant is None else str(variant),
            available=available, stock=stock, cost_price=None if price is None else str(price),
            currency=item.get("currency") or None, captured_at=at,
        )
    except ValidationError as exc:
        raise _Unroutable(f"{provider} {kind} {source_id or variant}: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"


def route(
    source: str,
    topic: str | None,
    shop_domain: str | None,
    body: Any,
    at: datetime,
    catalogue: Catalogue,
    provider: str | None = None,
    orders_of: Callable[[str], list[str]] = lambda shop: [],
    stores_of: Callable[[str], list[str]] = lambda shop: [],
) -> Routed:
    """The meaning of one stored webhook; ``refused`` says why when it has none."""
    if not isinstance(body, dict):
        return Routed(refused="body is not a JSON object")
    try:
        if source == "SHOPIFY":
            if not topic or not shop_domain:
                raise _Unroutable("Shopify webhook without topic or shop domain")
            return route_shopify(topic, shop_domain, body, at, catalogue, orders_of, stores_of)
        if source == "WOOCOMMERCE":
            if not topic or not shop_domain:
                raise _Unroutable("WooCommerce webhook without topic or site")
            return route_woocommerce(topic, shop_domain, body, at, catalogue)
        if source == "STRIPE":
            return route_stripe(body, at)
        if source == "SUPPLIER":
            return route_supplier(topic, provider or "", body, at)
        return Routed(ignored=f"no router for {source} webhooks")
    except _Unroutable as exc:
        return Routed(refused=str(exc))
    except InvalidOperation:  # Decimal of a non-number: its message is a class list, no reason
        return Routed(refused="an amount is not a number")
    except (TypeError, ValueError, AttributeError, ArithmeticError) as exc:  # a payload of an unexpected shape
        return Routed(refused=f"{type(exc).__name__}: {exc}")
