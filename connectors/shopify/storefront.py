"""The Shopify storefront adapter (connectors/storefront/base.py's ``Storefront``).

push
----
For the changes of one store, in order (models/storefront.py decides each write):

1. Mapping: our (store, product, variant) -> the shop's variant and inventory
   item, from the catalogue; changes of unmapped products are counted and skipped.
2. Quantities: ``inventorySetQuantities`` on the account's location, name
   ``available``, one mutation per change with its own ``@idempotent`` key
   (models.storefront.quantity_key: the change and the quantity compared with), up to :data:`QUANTITY_BATCH` of them
   as aliases of one request (Shopify runs a document's mutations in order).
   Each compares with the quantity the engine pushed before; a stale
   comparison (``COMPARE_QUANTITY_STALE``: the shop sold units meanwhile) is
   followed by a read of the shop's quantity and a new attempt compared with
   it (the supplier's count is the truth), at most :data:`STALE_ATTEMPTS` times;
   the stale writes of a push are read and written again in batches too (a shop
   that sold units of many products is not set one product at a time).
   A document the shop refuses as a whole (GraphQL ``errors``: nothing of it ran;
   a quantity beyond GraphQL's Int, say) is sent again one mutation at a time, and
   a change refused alone is counted REJECTED, not raised (the storefront process
   would try the batch again forever, and no store's writes would get past it).
3. Prices: one read of the variants' current prices (``nodes``), then one
   ``productVariantsBulkUpdate`` per product for the variants whose price
   differs from the newest change's. A redelivered change writes nothing.
   A product's prices the shop refuses (``userErrors``, or the document as a
   whole) are counted REJECTED, not raised.

show_tracking
-------------
Reads the order's fulfillments and fulfillment orders (``order``); if one
fulfillment already has the tracking number, nothing is done; else
``fulfillmentCreate`` for the command's lines still open, with the tracking and
the account's ``notify_customer``. The create is sent once (no blind retry:
an unknown outcome raises, and the next try looks first).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from connectors.shopify.client import (
    DocumentRejected,
    ShopifyClient,
    UserErrors,
    check_user_errors,
    gid,
    user_errors_of,
)
from connectors.storefront.base import CatalogueLookup, PushOutcome
from connectors.storefront.settings import ShopifyAccount
from models.events import InventoryChange
from models.orders import StorefrontCommand
from models.storefront import (
    OpenLine,
    QuantityWrite,
    after_stale,
    decimal_string,
    lines_to_fulfill,
    newest_per_variant,
    numeric_id,
    price_write,
    quantity_key,
    quantity_write,
    shopify_order_number,
)
from models.webhook_routing import CatalogueVariant

log = logging.getLogger(__name__)

STALE = "COMPARE_QUANTITY_STALE"
QUANTITY_BATCH = 10
NODES_BATCH = 100
STALE_ATTEMPTS = 5
MUTATION_COST = 10

VARIANTS_QUERY = """query VariantPrices($ids: [ID!]!) {
  nodes(ids: $ids) { ... on ProductVariant { id price compareAtPrice product { id } inventoryItem { id } } }
}"""

AVAILABLE_QUERY = """query AvailableQuantities($ids: [ID!]!, $locationId: ID!) {
  nodes(ids: $ids) {
    ... on InventoryItem { id inventoryLevel(locationId: $locationId) { quantities(names: ["available"]) { name quantity } } }
  }
}"""
AVAILABLE_NODE_COST = 3  # a node: the item, its level, the quantities

PRICES_MUTATION = """mutation UpdatePrices($productId: ID!, $variants: [ProductVariantsBulkInput!]!) {
  productVariantsBulkUpdate(productId: $productId, variants: $variants) {
    productVariants { id price compareAtPrice }
    userErrors { field message code }
  }
}"""

ORDER_QUERY = """query OrderFulfillment($id: ID!) {
  order(id: $id) {
    id
    fulfillments(first: 50) { id trackingInfo { number company url } }
    fulfillmentOrders(first: 20) {
      nodes { id status lineItems(first: 100) { nodes { id remainingQuantity lineItem { id } } } }
    }
  }
}"""

FULFILLMENT_MUTATION = """mutation CreateFulfillment($fulfillment: FulfillmentInput!) {
  fulfillmentCreate(fulfillment: $fulfillment) {
    fulfillment { id status trackingInfo { number company url } }
    userErrors { field message code }
  }
}"""


def set_quantities_document(count: int) -> str:
    """``count`` aliased ``inventorySetQuantities`` mutations, each with its own key."""
    params = ", ".join(f"$input{i}: InventorySetQuantitiesInput!, $key{i}: String!" for i in range(count))
    fields = "\n".join(
        f"  q{i}: inventorySetQuantities(input: $input{i}) @idempotent(key: $key{i}) "
        "{ inventoryAdjustmentGroup { id } userErrors { field message code } }"
        for i in range(count)
    )
    return f"mutation SetQuantities({params}) {{\n{fields}\n}}"


@dataclass
class _Pending:
    change: InventoryChange
    write: QuantityWrite
    item: str  # inventory item gid


class ShopifyStorefront:
    platform = "SHOPIFY"

    def __init__(self, store_id: str, account: ShopifyAccount, client: ShopifyClient | None = None) -> None:
        self.store_id = store_id
        self.account = account
        self.location = gid("Location", account.location_id)
        self.client = client or ShopifyClient(
            account.shop_domain,
            account.access_token.get_secret_value(),
            api_version=account.api_version,
            admin_url=account.admin_url,
        )

    @classmethod
    def of(cls, store_id: str, account: Any) -> ShopifyStorefront:
        return cls(store_id, account)

    @property
    def shop(self) -> str:
        return self.account.shop_domain

    async def reachable(self) -> None:
        await self.client.execute("ShopProbe", "query ShopProbe { shop { id } }", cost=1)

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- push ---------------------------------------------------------------------------
    async def push(self, changes: Sequence[InventoryChange], catalogue: CatalogueLookup) -> PushOutcome:
        outcome = PushOutcome()
        mapped: list[tuple[InventoryChange, CatalogueVariant]] = []
        for change in changes:
            variant = catalogue.variant(change.store_id, change.product_id, change.variant_id)
            if variant is None or variant.shop_domain != self.account.shop_domain:
                outcome.change("UNMAPPED")
                log.debug("store %s product %s/%s: not in the catalogue of %s; skipped", change.store_id,
                          change.product_id, change.variant_id, self.account.shop_domain)
                continue
            mapped.append((change, variant))
        prices = newest_per_variant_pairs([(c, v) for c, v in mapped if price_write(c) is not None])
        # one read: the current prices, and the inventory items the catalogue does not name
        to_read = [v.shopify_variant_id for _, v in prices]
        to_read += [v.shopify_variant_id for _, v in mapped if v.shopify_inventory_item_id is None]
        nodes = await self._variants(to_read) if to_read else {}
        pending: list[_Pending] = []
        for change, variant in mapped:
            write = quantity_write(change)
            wrote_something = write is not None or price_write(change) is not None
            outcome.change("PUSHED" if wrote_something else "NOTHING")
            if write is None:
                continue
            item = variant.shopify_inventory_item_id or _item_of(nodes.get(gid("ProductVariant", variant.shopify_variant_id)))
            if item is None:
                outcome.write("quantity", "REJECTED")
                log.warning("store %s: variant %s has no inventory item in %s", self.store_id,
                            variant.shopify_variant_id, self.account.shop_domain)
                continue
            pending.append(_Pending(change, write, gid("InventoryItem", item)))
        await self._set_quantities(pending, outcome)
        await self._set_prices(prices, nodes, outcome)
        return outcome

    async def _variants(self, variant_ids: list[str]) -> dict[str, dict[str, Any]]:
        ids = sorted({gid("ProductVariant", v) for v in variant_ids})
        return await self._nodes("VariantPrices", VARIANTS_QUERY, ids, node_cost=1)

    async def _nodes(
        self, operation: str, query: str, ids: list[str], node_cost: int, **variables: Any
    ) -> dict[str, dict[str, Any]]:
        """The nodes of ``ids`` by id, read with ``query`` (a ``nodes(ids: $ids)`` query) in
        requests of up to :data:`NODES_BATCH` ids, none costing more than the shop's bucket
        (a read costs 1 + ``node_cost`` per id)."""
        out: dict[str, dict[str, Any]] = {}
        size = max(1, min(NODES_BATCH, (int(self.client.bucket.maximum) - 1) // node_cost))
        for start in range(0, len(ids), size):
            chunk = ids[start:start + size]
            data = await self.client.execute(
                operation, query, {"ids": chunk, **variables}, cost=1 + node_cost * len(chunk)
            )
            for node in data.get("nodes") or []:
                if node and node.get("id"):
                    out[node["id"]] = node
        return out

    def _input(self, p: _Pending) -> dict[str, Any]:
        quantity: dict[str, Any] = {"inventoryItemId": p.item, "locationId": self.location, "quantity": p.write.quantity}
        if p.write.compare is not None:
            quantity["compareQuantity"] = p.write.compare
        return {
            "name": "available",
            "reason": "correction",
            "referenceDocumentUri": f"ops-engine://inventory-change/{p.change.change_id}",
            "ignoreCompareQuantity": p.write.compare is None,
            "quantities": [quantity],
        }

    async def _send(self, batch: list[_Pending]) -> list[list[Any]]:
        """One request of aliased mutations; the userErrors of each."""
        variables: dict[str, Any] = {}
        for i, p in enumerate(batch):
            variables[f"input{i}"] = self._input(p)
            variables[f"key{i}"] = quantity_key(p.write)
        data = await self.client.execute(
            "SetQuantities", set_quantities_document(len(batch)), variables, cost=MUTATION_COST * len(batch)
        )
        return [user_errors_of(data.get(f"q{i}")) for i in range(len(batch))]

    async def _send_or_split(self, batch: list[_Pending], outcome: PushOutcome) -> list[tuple[_Pending, list[Any]]]:
        """Each write of ``batch`` with its userErrors. A document the shop refuses as a whole ran
        nothing: its writes are sent again one at a time, and one refused alone is counted
        REJECTED and left out of the answer."""
        try:
            return list(zip(batch, await self._send(batch)))
        except DocumentRejected as err:
            if len(batch) == 1:
                self._refused(batch[0], outcome, err.reason)
                return []
        if self._batch_size() < len(batch):  # the answer told the shop's bucket: batches that fit it
            return await self._send_all(batch, outcome)
        answered: list[tuple[_Pending, list[Any]]] = []
        for p in batch:
            answered += await self._send_or_split([p], outcome)
        return answered

    def _batch_size(self) -> int:
        """Quantity writes per request: :data:`QUANTITY_BATCH`, fewer when the shop's
        bucket holds less (a request costing more than the whole bucket is refused)."""
        return max(1, min(QUANTITY_BATCH, int(self.client.bucket.maximum // MUTATION_COST)))

    def _refused(self, p: _Pending, outcome: PushOutcome, reason: str) -> None:
        """A quantity write the shop refused for good: counted REJECTED and logged, not raised."""
        outcome.write("quantity", "REJECTED")
        log.warning("store %s change %s: quantity refused: %s", self.store_id, p.change.change_id, reason)

    async def _set_quantities(self, pending: list[_Pending], outcome: PushOutcome) -> None:
        stale: list[_Pending] = []
        for p, errors in await self._send_all(pending, outcome):
            if not errors:
                outcome.write("quantity", "OK")
            elif any(e.code == STALE for e in errors):
                outcome.write("quantity", "STALE")
                stale.append(p)
            else:
                self._refused(p, outcome, UserErrors("inventorySetQuantities", errors).reason)
        await self._after_stale(stale, outcome)

    async def _send_all(self, pending: list[_Pending], outcome: PushOutcome) -> list[tuple[_Pending, list[Any]]]:
        """``pending`` in requests of up to :data:`QUANTITY_BATCH` mutations, in order."""
        size = self._batch_size()
        answered: list[tuple[_Pending, list[Any]]] = []
        for start in range(0, len(pending), size):
            answered += await self._send_or_split(pending[start:start + size], outcome)
        return answered

    async def _after_stale(self, stale: list[_Pending], outcome: PushOutcome) -> None:
        """Each stale write again, compared with what the shop shows now, up to
        :data:`STALE_ATTEMPTS` times each. In rounds: one read of the round's items'
        quantities, then their writes in batches. A round holds the earliest stale write
        of each item; a later change of the same item waits for the next round, so it
        compares with the earlier one's result."""
        tries: dict[str, int] = {}  # change id -> reads so far
        while stale:
            round_: list[_Pending] = []
            waiting: list[_Pending] = []
            items: set[str] = set()
            for p in stale:
                (waiting if p.item in items else round_).append(p)
                items.add(p.item)
            for p in round_:
                tries[p.change.change_id] = tries.get(p.change.change_id, 0) + 1
                if tries[p.change.change_id] > STALE_ATTEMPTS:
                    raise RuntimeError(
                        f"change {p.change.change_id}: the shop's quantity kept moving ({STALE_ATTEMPTS} tries)")
            current = await self._available([p.item for p in round_])
            following: list[_Pending] = []
            for p in round_:
                write = after_stale(p.write, current.get(p.item, 0))
                if write is None:
                    outcome.write("quantity", "ALREADY_SET")
                else:
                    following.append(_Pending(p.change, write, p.item))
            again: list[_Pending] = []
            for p, errors in await self._send_all(following, outcome):
                if not errors:
                    outcome.write("quantity", "OK")
                elif any(e.code == STALE for e in errors):
                    again.append(p)
                else:
                    self._refused(p, outcome, UserErrors("inventorySetQuantities", errors).reason)
            stale = again + waiting  # an item's earlier write stays before its later ones

    async def _available(self, items: list[str]) -> dict[str, int]:
        """The ``available`` quantity at the account's location of each inventory item
        (0 when the shop has no level for it)."""
        nodes = await self._nodes("AvailableQuantities", AVAILABLE_QUERY, sorted(set(items)),
                                  node_cost=AVAILABLE_NODE_COST, locationId=self.location)
        return {item: _available_of(node) for item, node in nodes.items()}

    async def _set_prices(
        self, prices: list[tuple[InventoryChange, CatalogueVariant]], nodes: dict[str, dict[str, Any]], outcome: PushOutcome
    ) -> None:
        per_product: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for change, variant in prices:
            write = price_write(change)
            node = nodes.get(gid("ProductVariant", variant.shopify_variant_id))
            if write is None:
                continue
            if node is None:
                outcome.write("price", "REJECTED")
                log.warning("store %s: variant %s not found in %s", self.store_id, variant.shopify_variant_id,
                            self.account.shop_domain)
                continue
            if _same(node.get("price"), write.price) and _same(node.get("compareAtPrice"), write.compare_at_price):
                outcome.write("price", "ALREADY_SET")
                continue
            entry: dict[str, Any] = {"id": node["id"], "price": decimal_string(write.price)}
            entry["compareAtPrice"] = None if write.compare_at_price is None else decimal_string(write.compare_at_price)
            per_product[(node.get("product") or {}).get("id") or ""].append(entry)
        for product_id, variants in per_product.items():
            try:
                data = await self.client.execute(
                    "UpdatePrices", PRICES_MUTATION, {"productId": product_id, "variants": variants}, cost=MUTATION_COST
                )
                check_user_errors("productVariantsBulkUpdate", data.get("productVariantsBulkUpdate"))
                outcome.write("price", "OK", len(variants))
            except (UserErrors, DocumentRejected) as err:
                # refused for good: counted, not raised (the storefront would try the batch forever)
                outcome.write("price", "REJECTED", len(variants))
                log.warning("store %s product %s: prices refused: %s", self.store_id, product_id, err.reason)

    # -- tracking -----------------------------------------------------------------------
    async def show_tracking(self, command: StorefrontCommand) -> str:
        number = shopify_order_number(command.order_id)
        if number is None:
            return "NOT_THIS_PLATFORM"
        data = await self.client.execute("OrderFulfillment", ORDER_QUERY, {"id": gid("Order", number)}, cost=25)
        order = data.get("order")
        if not order:
            return "ORDER_NOT_FOUND"
        for fulfillment in order.get("fulfillments") or []:
            for info in fulfillment.get("trackingInfo") or []:
                if info.get("number") == command.tracking_number:
                    return "ALREADY_SHOWN"
        open_lines = [
            OpenLine(fo["id"], numeric_id(((line.get("lineItem") or {}).get("id"))) or "", line["id"],
                     int(line.get("remainingQuantity") or 0))
            for fo in ((order.get("fulfillmentOrders") or {}).get("nodes") or [])
            if fo.get("status") in ("OPEN", "IN_PROGRESS")  # what fulfillmentCreate accepts
            for line in ((fo.get("lineItems") or {}).get("nodes") or [])
        ]
        chosen = lines_to_fulfill(open_lines, command.line_ids)
        if not chosen:
            return "NOTHING_OPEN"
        fulfillment = {
            "lineItemsByFulfillmentOrder": [
                {"fulfillmentOrderId": fo, "fulfillmentOrderLineItems": [{"id": i, "quantity": q} for i, q in lines]}
                for fo, lines in chosen.items()
            ],
            "trackingInfo": {"number": command.tracking_number, "company": command.carrier, "url": command.tracking_url},
            "notifyCustomer": self.account.notify_customer,
        }
        data = await self.client.execute(
            "CreateFulfillment", FULFILLMENT_MUTATION,
            {"fulfillment": fulfillment}, cost=MUTATION_COST, retry=False,
        )
        try:
            check_user_errors("fulfillmentCreate", data.get("fulfillmentCreate"))
        except UserErrors as err:
            log.warning("store %s order %s: fulfillment refused: %s", self.store_id, command.order_id, err.reason)
            return "REJECTED"
        return "CREATED"


def newest_per_variant_pairs(
    pairs: list[tuple[InventoryChange, CatalogueVariant]],
) -> list[tuple[InventoryChange, CatalogueVariant]]:
    by_change = {id(c): v for c, v in pairs}
    return [(c, by_change[id(c)]) for c in newest_per_variant([c for c, _ in pairs])]


def _item_of(node: dict[str, Any] | None) -> str | None:
    return ((node or {}).get("inventoryItem") or {}).get("id")


def _available_of(node: dict[str, Any]) -> int:
    """An inventory item node's ``available`` quantity (0 when it has no level at the location)."""
    for q in ((node.get("inventoryLevel") or {}).get("quantities")) or []:
        if q.get("name") == "available":
            return int(q.get("quantity") or 0)
    return 0


def _same(value: Any, wanted: Decimal | None) -> bool:
    if value in (None, ""):
        return wanted is None
    if wanted is None:
        return False
    try:
        return Decimal(str(value)) == wanted
    except ArithmeticError:
        return False
