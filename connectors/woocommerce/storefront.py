"""The WooCommerce storefront adapter: the engine's stock and prices, and
shipments' tracking, written to one store's WooCommerce site.

It implements the storefront port (connectors/storefront/base.py,
``Storefront``, registered there for ``platform`` WOOCOMMERCE):
``push(changes, catalogue)``, ``show_tracking(command)``, ``aclose()``,
``platform``, ``store_id``; :meth:`WooCommerceStorefront.of`
builds it from a store's account (connectors/woocommerce/settings.py). What it
writes is models/woocommerce.py.

``push``: the changes of one store, grouped by product of ours (the kinds of
fields any of them moves, with the last one's values), looked up in the catalogue (a
``platform`` WOOCOMMERCE record of this site: a simple product, or a variation
under ``woocommerce_parent_id``), then written with the batch endpoints
(products, and each parent's variations), 100 at a time. Absolute values, so
a redelivered batch writes the same again: idempotent. An item WooCommerce
refuses (its error in the batch answer, or a 4xx for the whole batch) is
counted REJECTED and logged, not raised; a 5xx or a lost answer that
survives the client's retries is raised, and the process tries the batch
again.

``show_tracking``: lists the order's notes and adds the tracking note only
when none names the tracking number yet (a crash between the two: the next
delivery finds the note); then, when the account says so and the shipment
covers every line of the order, sets the order ``completed`` (unless it is).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from connectors.storefront.base import CatalogueLookup, PushOutcome, refuses_account
from connectors.suppliers.base import OutcomeUnknown, Rejected
from connectors.woocommerce.client import WooCommerceClient, item_error
from connectors.woocommerce.settings import WooCommerceAccount
from models.events import InventoryChange
from models.orders import StorefrontCommand
from models.woocommerce import (
    covers_order,
    merged_fields,
    note_shows,
    tracking_note,
    woo_order_id,
)

log = logging.getLogger(__name__)

_STOCK_KEYS = ("stock_quantity", "manage_stock", "stock_status")
_PRICE_KEYS = ("regular_price", "sale_price")


def _kinds(fields: dict[str, Any]) -> list[str]:
    kinds = []
    if any(k in fields for k in _STOCK_KEYS):
        kinds.append("quantity")
    if any(k in fields for k in _PRICE_KEYS):
        kinds.append("price")
    return kinds


class WooCommerceStorefront:
    platform = "WOOCOMMERCE"

    def __init__(self, store_id: str, account: WooCommerceAccount, client: WooCommerceClient | None = None) -> None:
        self.store_id = store_id
        self.account = account
        self.client = client or WooCommerceClient(account)

    @classmethod
    def of(cls, store_id: str, account: WooCommerceAccount) -> WooCommerceStorefront:
        return cls(store_id, account)

    # -- stock and prices ------------------------------------------------------------
    async def push(self, changes: Sequence[InventoryChange], catalogue: CatalogueLookup) -> PushOutcome:
        outcome = PushOutcome()
        grouped: dict[tuple[str, str, str | None], list[InventoryChange]] = {}
        for change in changes:
            grouped.setdefault((change.store_id, change.product_id, change.variant_id), []).append(change)
        products: dict[str, dict[str, Any]] = {}
        variations: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for key, group in grouped.items():
            variant = catalogue.variant(*key)
            if variant is None or variant.platform != "WOOCOMMERCE" or variant.shop_domain != self.account.site:
                outcome.change("UNMAPPED", len(group))
                continue
            parent = variant.woocommerce_parent_id
            if not variant.shopify_variant_id.isdigit() or (parent is not None and not parent.isdigit()):
                # A catalogue record no WooCommerce id can be made of: skipped (raising would stall the store).
                log.warning("woocommerce %s: catalogue record of %s has no numeric WooCommerce id (%s, parent %s)",
                            self.account.site, key, variant.shopify_variant_id[:40], (parent or "-")[:40])
                outcome.change("UNMAPPED", len(group))
                continue
            fields = merged_fields(group)
            if not fields:
                outcome.change("NOTHING", len(group))
                continue
            outcome.change("PUSHED", len(group))
            woo_id = variant.shopify_variant_id
            if variant.woocommerce_parent_id:
                variations[variant.woocommerce_parent_id][woo_id] = fields
            else:
                products[woo_id] = fields
        if products:
            await self._write(outcome, "products", products,
                              lambda updates: self.client.update_products(updates))
        for parent, items in variations.items():
            await self._write(outcome, f"variations of product {parent}", items,
                              lambda updates, parent=parent: self.client.update_variations(parent, updates))
        return outcome

    async def _write(self, outcome: PushOutcome, what: str, items: dict[str, dict[str, Any]], send: Any) -> None:
        updates = [{"id": int(woo_id), **fields} for woo_id, fields in items.items()]
        try:
            answers = await send(updates)
        except Rejected as exc:  # the whole batch refused for good (4xx): counted, not retried forever
            if refuses_account(exc):
                raise  # 401/403: no write of this site can pass; the process dead-letters the store's batch
            log.warning("woocommerce %s: %s of store %s refused: %s", self.account.site, what, self.store_id, exc)
            for fields in items.values():
                for kind in _kinds(fields):
                    outcome.write(kind, "REJECTED")
            return
        by_id = {str(a.get("id")): a for a in answers}
        for woo_id, fields in items.items():
            answer = by_id.get(woo_id)
            error = "no answer for it" if answer is None else item_error(answer)
            result = "OK" if error is None else "REJECTED"
            if error is not None:
                log.warning("woocommerce %s: %s %s of store %s refused: %s",
                            self.account.site, what, woo_id, self.store_id, error[:300])
            for kind in _kinds(fields):
                outcome.write(kind, result)

    # -- tracking --------------------------------------------------------------------
    async def show_tracking(self, command: StorefrontCommand) -> str:
        order_id = woo_order_id(command.order_id, self.account.site)
        if order_id is None:
            return "NOT_THIS_PLATFORM"
        try:
            notes = await self.client.order_notes(order_id)
        except Rejected as exc:
            if getattr(exc, "http_status", None) == 404:
                return "ORDER_NOT_FOUND"
            raise
        result = "ALREADY_SHOWN"
        if not note_shows(notes, command.tracking_number):
            try:
                await self.client.add_order_note(order_id, tracking_note(command), self.account.customer_note)
            except Rejected as exc:
                if refuses_account(exc):
                    raise
                log.warning("woocommerce %s: note on order %s refused: %s", self.account.site, order_id, exc)
                return "REJECTED"
            except OutcomeUnknown:
                # Maybe added: the next delivery lists the notes again before adding.
                raise
            result = "CREATED"
        if self.account.complete_on_tracking:
            order = await self.client.order(order_id)
            if order.get("status") not in ("completed", "cancelled", "refunded") and covers_order(command, order):
                await self.client.set_order_status(order_id, "completed")
        return result

    @property
    def shop(self) -> str:
        return self.account.site

    async def reachable(self) -> None:
        await self.client.page("/orders", {"per_page": 1})

    async def aclose(self) -> None:
        await self.client.aclose()
