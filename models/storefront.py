"""What the storefront push writes for an inventory change, and the rules it follows (pure, no I/O).

The storefront process (connectors/storefront/runner.py) calls these with the
changes it consumed and what the shop answered; the adapters (Shopify,
WooCommerce) only carry the writes out.

Quantities
----------
The quantity a storefront shows for a product is :func:`pushed_quantity`: its
stock while it is ACTIVE and available, else 0 (OUT_OF_STOCK, removed).

A quantity write is a compare-and-set: "set it to ``after``, if the shop still
shows what the engine last pushed (``before``)". A NEW product has no
``before``: its first write sets the quantity whatever the shop shows.

When the shop's quantity is not the one expected (the shop sold units since
the last push, or a person edited it), the **supplier's count is the truth**:
the engine's stock comes from the supplier's latest snapshot, which is newer
than what the shop shows, so the push reads the shop's current quantity and
sets the engine's quantity with that as the new comparison
(:func:`after_stale`). Nothing the shop did is lost silently: a sale in the
shop becomes an order, and the supplier's next count reflects it once the
order is placed there. If the shop already shows the engine's quantity (an
earlier delivery of the same change wrote it), nothing is written.

Each write carries an idempotency key made from the change id and the attempt
(:func:`idempotency_key`), never from the clock: a redelivered change sends
the same key, and the shop answers the first write's outcome without applying
it twice.

Prices
------
A price write sets the variant's price (and compare-at price) to the change's
``after``; the push reads the variants' current prices first and writes only
those that differ, so a redelivered change writes nothing.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, time, timezone
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from models.alerts import open_alert
from models.events import Alert, AlertType, ChangedField, InventoryChange, ProductStatus, ProductView
from models.product import to_micros

#: Fields whose change moves the quantity a storefront shows.
QUANTITY_FIELDS = frozenset({ChangedField.STOCK, ChangedField.AVAILABILITY, ChangedField.STATUS})
#: Fields whose change moves a storefront price.
PRICE_FIELDS = frozenset({ChangedField.SELLING_PRICE, ChangedField.COMPARE_AT_PRICE})


def pushed_quantity(view: ProductView) -> int:
    """The quantity a storefront shows for a product in this state."""
    if view.status is ProductStatus.ACTIVE and view.available:
        return max(0, view.stock)
    return 0


@dataclass(frozen=True)
class QuantityWrite:
    """Set one product's quantity to ``quantity`` if the shop shows ``compare``
    (None: whatever it shows); ``reread``: compared with a quantity read from the
    shop after a stale comparison (:func:`after_stale`)."""

    change_id: str
    quantity: int
    compare: int | None
    reread: bool = False


@dataclass(frozen=True)
class PriceWrite:
    change_id: str
    price: Decimal
    compare_at_price: Decimal | None


def quantity_write(change: InventoryChange) -> QuantityWrite | None:
    """The quantity write of a change, or None when its shown quantity did not move."""
    if change.before is not None and not (set(change.changed) & QUANTITY_FIELDS):
        return None
    target = pushed_quantity(change.after)
    if change.before is None:
        return QuantityWrite(change.change_id, target, None)
    expected = pushed_quantity(change.before)
    if expected == target:
        return None
    return QuantityWrite(change.change_id, target, expected)


def decimal_string(amount: Decimal) -> str:
    """A price as the storefronts take it (Shopify's ``Money``, WooCommerce's price
    strings): a plain decimal string, never a float or an exponent
    (``Decimal("1E+1")`` -> ``"10"``, where ``str`` gives ``"1E+1"``)."""
    return format(amount, "f")


def price_write(change: InventoryChange) -> PriceWrite | None:
    """The price write of a change (a NEW product's price too), or None."""
    if change.before is not None and not (set(change.changed) & PRICE_FIELDS):
        return None
    return PriceWrite(change.change_id, change.after.selling_price, change.after.compare_at_price)


def after_stale(write: QuantityWrite, current: int) -> QuantityWrite | None:
    """The shop shows ``current``, not ``write.compare``: the next attempt (the
    engine's quantity, compared with what the shop shows now), or None when the
    shop already shows the engine's quantity."""
    if current == write.quantity:
        return None
    return QuantityWrite(write.change_id, write.quantity, current, reread=True)


def idempotency_key(change_id: str, what: str, attempt: int | str = 0) -> str:
    """The key of one write of one change: the same for every delivery of the change.
    ``what`` names the write (``qty``, ``price``); ``attempt`` tells the writes of one
    change apart (``quantity_key``: by the quantity compared with)."""
    digest = hashlib.sha256(change_id.encode()).hexdigest()[:40]
    return f"ops-{what}-{digest}-{attempt}"


def quantity_key(write: QuantityWrite) -> str:
    """The key of a quantity write: its change, the quantity it is compared with, and
    whether that quantity was read from the shop after a stale comparison.

    A delivery of the change again meets the key of the same write (the shop
    answers as before), and a write compared with another quantity (the shop sold
    meanwhile) has a key of its own. A key per attempt number instead was burnt
    by a busy shop: once every attempt had gone stale, each later try of the
    change replayed the stored STALE answers and could never write it. A write
    compared with a re-read quantity has its own keys too: two changes of one
    product in a batch, the earlier one stale, made the later one's re-read find
    exactly the quantity its first, stale write had been compared with, and the
    shop replayed STALE to it for good.
    """
    if write.compare is None:
        return idempotency_key(write.change_id, "qty", "any")
    return idempotency_key(write.change_id, "qty", f"{'r' if write.reread else 'c'}{write.compare}")


def newest_per_variant(changes: Iterable[InventoryChange]) -> list[InventoryChange]:
    """The last change of each (store, product, variant), in their order of arrival."""
    last: dict[tuple[str, str, str | None], InventoryChange] = {}
    for change in changes:
        key = (change.store_id, change.product_id, change.variant_id)
        last.pop(key, None)
        last[key] = change
    return list(last.values())


def numeric_id(value: str | int | None) -> str | None:
    """The numeric tail of a Shopify id (``gid://shopify/Order/12`` or ``12``), else None."""
    if value is None:
        return None
    tail = str(value).rsplit("/", 1)[-1]
    return tail if tail.isdigit() else None


def shopify_order_number(order_id: str) -> str | None:
    """The Shopify order id inside one of our order ids (``shopify-{id}``), else None."""
    return numeric_id(order_id.removeprefix("shopify-")) if order_id.startswith("shopify-") else None


@dataclass(frozen=True)
class OpenLine:
    fulfillment_order_id: str
    line_item_id: str  # numeric
    fulfillment_order_line_item_id: str
    remaining: int


def lines_to_fulfill(open_lines: Sequence[OpenLine], line_ids: Sequence[str]) -> dict[str, list[tuple[str, int]]]:
    """The fulfillment order lines a shipment covers: fulfillment order id ->
    [(fulfillment order line item id, quantity)], for the lines of ``line_ids``
    (all open lines when it is empty) that still have a remaining quantity."""
    wanted = {numeric_id(line) or line for line in line_ids}
    out: dict[str, list[tuple[str, int]]] = {}
    for line in open_lines:
        if line.remaining <= 0 or (wanted and line.line_item_id not in wanted):
            continue
        out.setdefault(line.fulfillment_order_id, []).append((line.fulfillment_order_line_item_id, line.remaining))
    return out


_STOREFRONT_ALERTS = {
    AlertType.STOREFRONT_REFUSED: (
        "{platform} refuses the account of store {store_id}",
        "{shop} answers the engine's writes with {reason} (on {day}, UTC). No stock, price or tracking "
        "reaches the shop until the store's access token is fixed; the refused records wait in deadletter "
        "(STOREFRONT_REFUSED): replay them with ops-engine deadletter replay once it is.",
    ),
    AlertType.STOREFRONT_UNAVAILABLE: (
        "{platform} shop of store {store_id} unavailable",
        "{shop} has failed every try of the engine's writes: {reason} (on {day}, UTC). The store's stock, "
        "price and tracking writes wait in deadletter (STOREFRONT_UNAVAILABLE); the storefront process "
        "tries the shop again now and then and replays them itself once it answers.",
    ),
}


def storefront_alert(
    kind: AlertType, store_id: str, platform: str, shop: str, reason: str, now: datetime,
    since: datetime | None = None,
) -> Alert:
    """The store's STOREFRONT_REFUSED (the shop refuses its account, HTTP 401/403) or
    STOREFRONT_UNAVAILABLE (the shop failed every try) alert: one a day (UTC) while it
    lasts. Its id and times are the day's, so the storefront process sending it again
    (each such batch, a restart) sends the same alert, and a person's acknowledgement of
    it stands for that day. ``since``: when the condition began (a store set aside), if
    that was today: the alert's id and times are that moment's instead of midnight's, so
    a second outage on a day whose first one was resolved is an alert of its own (a
    resolved alert's record is newer than the day's)."""
    day = datetime.combine(now.astimezone(timezone.utc).date(), time(0), tzinfo=timezone.utc)
    at = day if since is None or since <= day else since.astimezone(timezone.utc)
    title, message = _STOREFRONT_ALERTS[kind]
    names = {"platform": platform.title(), "store_id": store_id, "shop": shop, "reason": reason[:200],
             "day": day.date().isoformat()}
    return open_alert(
        subject_key=f"storefront|{store_id}|{kind.value}", store_id=store_id, product_id=None, variant_id=None,
        alert_type=kind, title=title.format(**names), message=message.format(**names),
        metadata={"platform": platform, "shop": shop}, at=at, trigger_micros=to_micros(at),
    )
