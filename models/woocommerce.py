"""What the WooCommerce storefront push writes (pure, no I/O).

The adapter (connectors/woocommerce/storefront.py) carries these writes out
over the REST API (connectors/woocommerce/client.py).

Stock and prices
----------------
WooCommerce's REST API has no compare-and-set and no idempotency key, so every
write sets **absolute values**: a redelivered change writes the same values
again, which changes nothing. For one product of ours (the newest change of
its changes in a batch merged, :func:`merged_fields`) the push writes, on the catalogue's
WooCommerce product (a simple product) or variation:

- when its shown quantity may have moved (a NEW product, or STOCK,
  AVAILABILITY or STATUS changed): ``manage_stock: true``,
  ``stock_quantity`` (its stock while ACTIVE and available, else 0) and
  ``stock_status`` (``instock`` / ``outofstock``);
- when a price may have moved (NEW, SELLING_PRICE or COMPARE_AT_PRICE):
  ``regular_price`` and ``sale_price`` as decimal **strings** (WooCommerce's
  schema types them so). With a compare-at price above the selling price,
  WooCommerce's way of showing "was X, now Y" is ``regular_price`` X and
  ``sale_price`` Y; otherwise ``regular_price`` is the selling price and
  ``sale_price`` is emptied.

Tracking
--------
A shipment becomes an order note (:func:`tracking_note`), a customer note
(WooCommerce e-mails it to the customer) unless the account says otherwise.
Before adding it the adapter lists the order's notes and skips it when one
already names the tracking number (:func:`note_shows`): the same command
delivered twice adds one note. The order is marked ``completed`` when the
account asks for it and the shipment covers every line of the order
(:func:`covers_order`); an order shipped by several suppliers (several
shipments) is left for a person to complete.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from models.events import ChangedField, InventoryChange, ProductStatus, ProductView
from models.orders import StorefrontCommand
from models.storefront import decimal_string

#: Fields whose change moves the quantity a storefront shows.
STOCK_FIELDS = frozenset({ChangedField.STOCK, ChangedField.AVAILABILITY, ChangedField.STATUS})
#: Fields whose change moves a storefront price.
PRICE_FIELDS = frozenset({ChangedField.SELLING_PRICE, ChangedField.COMPARE_AT_PRICE})
#: Our order ids of WooCommerce orders (models/webhook_routing.py).
ORDER_PREFIX = "woocommerce-"


def shown_quantity(view: ProductView) -> int:
    """The quantity the store shows for a product in this state."""
    if view.status is ProductStatus.ACTIVE and view.available:
        return max(0, view.stock)
    return 0


def stock_fields(view: ProductView) -> dict[str, Any]:
    quantity = shown_quantity(view)
    return {"manage_stock": True, "stock_quantity": quantity, "stock_status": "instock" if quantity > 0 else "outofstock"}


def price_fields(view: ProductView) -> dict[str, Any]:
    compare = view.compare_at_price
    if compare is not None and compare > view.selling_price:
        return {"regular_price": decimal_string(compare), "sale_price": decimal_string(view.selling_price)}
    return {"regular_price": decimal_string(view.selling_price), "sale_price": ""}


def update_fields(change: InventoryChange) -> dict[str, Any]:
    """The fields one change sets (empty: nothing the store shows moved)."""
    new = change.before is None
    changed = set(change.changed)
    fields: dict[str, Any] = {}
    if new or changed & STOCK_FIELDS:
        fields.update(stock_fields(change.after))
    if new or changed & PRICE_FIELDS:
        fields.update(price_fields(change.after))
    return fields


def merged_fields(changes: Sequence[InventoryChange]) -> dict[str, Any]:
    """The fields of several changes of one product, in their order: the kinds
    any of them moves (stock, prices), with the values of the last one's
    ``after`` (the newest state)."""
    if not changes:
        return {}
    stock = any(c.before is None or set(c.changed) & STOCK_FIELDS for c in changes)
    price = any(c.before is None or set(c.changed) & PRICE_FIELDS for c in changes)
    latest = changes[-1].after
    fields: dict[str, Any] = {}
    if stock:
        fields.update(stock_fields(latest))
    if price:
        fields.update(price_fields(latest))
    return fields


def woo_order_id(order_id: str, site: str) -> str | None:
    """The WooCommerce order id inside our ``woocommerce-{site}-{id}``, or None
    when the order is not this site's."""
    prefix = f"{ORDER_PREFIX}{site}-"
    if not order_id.startswith(prefix):
        return None
    tail = order_id[len(prefix):]
    return tail if tail.isdigit() else None


def tracking_note(command: StorefrontCommand) -> str:
    """The note that shows a shipment's tracking."""
    parts = [f"Order {command.order_number} has shipped."]
    parts.append(f"Carrier: {command.carrier}." if command.carrier else "")
    parts.append(f"Tracking number: {command.tracking_number}.")
    if command.tracking_url:
        parts.append(f"Track it at {command.tracking_url}")
    return " ".join(p for p in parts if p)


def note_shows(notes: Iterable[Mapping[str, Any]], tracking_number: str) -> bool:
    """True when one of the order's notes already names the tracking number."""
    return any(tracking_number in str(note.get("note") or "") for note in notes)


def covers_order(command: StorefrontCommand, order: Mapping[str, Any]) -> bool:
    """True when the shipment's lines are every line of the WooCommerce order
    (a shipment naming no lines covers the whole order)."""
    lines = {str(line.get("id")) for line in order.get("line_items") or [] if isinstance(line, Mapping)}
    if not command.line_ids:
        return True
    return bool(lines) and lines <= set(command.line_ids)
