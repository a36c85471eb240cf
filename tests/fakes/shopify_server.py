"""A fake Shopify GraphQL Admin API: one real HTTP server on loopback, many shops.

A shop's API lives at ``{url}/{shop_domain}/admin/api/{version}/graphql.json``
(give the client ``admin_url = fake.admin_url(shop)``). Like Shopify it

* checks ``X-Shopify-Access-Token`` (401 otherwise);
* ENFORCES the cost-based throttle: one leaky bucket per shop
  (``maximum_available`` points, ``restore_rate`` points/s). A request whose cost
  exceeds what is available answers ``errors[{extensions: {code: THROTTLED}}]``
  and does nothing; every answer carries ``extensions.cost`` with
  ``requestedQueryCost``, ``actualQueryCost`` and ``throttleStatus``. Costs: 10 per
  mutation (each alias counts), 1 + the objects asked for a query;
* runs ``inventorySetQuantities`` with compare-and-set (``compareQuantity``, or
  ``changeFromQuantity``; ``ignoreCompareQuantity: true`` skips it): a stale one
  answers the userError ``COMPARE_QUANTITY_STALE`` and changes nothing; with
  ``@idempotent(key:)`` the same key answers the first answer again and changes
  nothing. Mutations of one document run in order, aliases allowed;
* coerces ``inventorySetQuantities``' quantities (``quantity``, ``compareQuantity``)
  to GraphQL's ``Int`` (32-bit) first: a value beyond it refuses the whole
  document with top-level ``errors`` (no ``data``), and nothing of it runs;
* coerces ``productVariantsBulkUpdate``'s ``price`` and ``compareAtPrice`` to
  ``Money`` (a plain decimal string, ``"12.50"``; not ``"1E+3"``) the same way;
  ``refuse_prices_of`` refuses the documents of chosen products so too.

It has no GraphQL parser: it finds the root fields it knows in the query text
and reads ``variables``. Known: mutations ``inventorySetQuantities``,
``productVariantsBulkUpdate``, ``fulfillmentCreate``,
``webhookSubscriptionCreate``; queries ``shop { id }``, ``nodes`` (variants, or inventory items
with the available quantity at a location), ``order`` (fulfillments and fulfillment
orders), ``orders`` (``query: "updated_at:>'...'"``, ``first``, ``after``; cursor
pagination), ``webhookSubscriptions``.

Every applied write is recorded (``writes(shop)``) for the tests to compare;
so are refused ones' counts (``stats``). Seed a shop with ``add_shop``,
``add_variant``, ``add_order``; ``sell`` moves a quantity as a sale in the shop would.

In a test::

    with FakeShopifyServer() as fake:
        fake.add_shop("s1.myshopify.com", token="shpat_1", maximum_available=100, restore_rate=50)
        fake.add_variant("s1.myshopify.com", variant="11", product="1", item="111", price="9.99", quantity=5)
        fake.admin_url("s1.myshopify.com")
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOCATION = "gid://shopify/Location/1"
MUTATION_COST = 10
_PATH = re.compile(r"^/(?P<shop>[a-z0-9.-]+)/admin/api/(?P<version>[0-9a-z-]+)/graphql\.json$")
_MONEY = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_SET_QUANTITIES = re.compile(
    r"(?:(\w+)\s*:\s*)?inventorySetQuantities\s*\(\s*input:\s*\$(\w+)\s*\)(?:\s*@idempotent\(\s*key:\s*\$(\w+)\s*\))?"
)


def gid(kind: str, value: str | int) -> str:
    text = str(value)
    return text if text.startswith("gid://") else f"gid://shopify/{kind}/{text}"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


INT_MAX = 2**31 - 1


class GraphQLErrors(Exception):
    """The document is refused before it runs (a variable GraphQL cannot coerce): top-level ``errors``."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["message"])
        self.errors = errors


class Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Bucket:
    maximum: float
    rate: float
    available: float
    stamp: float = field(default_factory=time.monotonic)

    def refill(self) -> float:
        now = time.monotonic()
        self.available = min(self.maximum, self.available + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.available

    def status(self) -> dict[str, float]:
        return {"maximumAvailable": self.maximum, "currentlyAvailable": round(self.refill(), 3), "restoreRate": self.rate}


@dataclass
class Shop:
    domain: str
    token: str
    bucket: Bucket
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # variant gid -> {price, compareAtPrice, product, item}
    levels: dict[tuple[str, str], int] = field(default_factory=dict)  # (item gid, location gid) -> available
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)  # order gid -> order
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    idempotent: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> first answer (of that mutation)
    writes: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1


class FakeShopify:
    """The shops and what they do with a request (no HTTP here)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.shops: dict[str, Shop] = {}
        self._ids = 1000
        #: answer 503 to this many of the next requests (before doing anything)
        self.fail_next = 0
        #: empty the shop's bucket before this many of the next requests (another app used it up): THROTTLED
        self.drain_next = 0
        #: units of an item (gid) sold right after each read of its quantity: a shop selling as fast as it is read
        self.sell_after_read: dict[str, int] = {}
        #: shops (domain) that answer 503 to every request: down
        self.down: set[str] = set()
        self._calls: dict[str, int] = {}  # domain -> requests received, answered or not
        #: products (gid) whose price documents are refused as a whole (top-level ``errors``)
        self.refuse_prices_of: set[str] = set()

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    # -- seeding ------------------------------------------------------------------------
    def add_shop(self, domain: str, token: str, maximum_available: float = 1000, restore_rate: float = 50) -> None:
        with self.lock:
            self.shops[domain] = Shop(domain, token, Bucket(maximum_available, restore_rate, maximum_available))

    def add_variant(
        self, domain: str, variant: str, product: str, item: str, price: str = "0.00", quantity: int = 0,
        location: str = LOCATION,
    ) -> None:
        with self.lock:
            shop = self.shops[domain]
            shop.variants[gid("ProductVariant", variant)] = {
                "price": price, "compareAtPrice": None, "product": gid("Product", product), "item": gid("InventoryItem", item),
            }
            shop.levels[(gid("InventoryItem", item), location)] = quantity

    def add_order(
        self, domain: str, order: str, lines: list[tuple[str, str, int]], *, paid: bool = True, price: str = "10.00",
    ) -> None:
        """An order with line items ``(line_item_id, variant_id, quantity)`` at ``price`` each, one
        fulfillment order holding them all, a customer and a shipping address."""
        with self.lock:
            shop = self.shops[domain]
            fo = {
                "id": gid("FulfillmentOrder", self.next_id()), "status": "OPEN",
                "lineItems": [
                    {"id": gid("FulfillmentOrderLineItem", self.next_id()), "remainingQuantity": qty,
                     "lineItem": {"id": gid("LineItem", line)}, "variant": gid("ProductVariant", variant)}
                    for line, variant, qty in lines
                ],
            }
            total = str(sum(Decimal(price) * qty for _, _, qty in lines))
            money = lambda amount: {"shopMoney": {"amount": amount, "currencyCode": "USD"}}  # noqa: E731
            node = {
                "id": gid("Order", order), "name": f"#{order}", "email": "buyer@example.com", "phone": None,
                "createdAt": _now(), "cancelledAt": None, "cancelReason": None,
                "displayFinancialStatus": "PAID" if paid else "PENDING", "currencyCode": "USD",
                "subtotalPriceSet": money(total), "totalPriceSet": money(total), "totalTaxSet": money("0.00"),
                "totalShippingPriceSet": money("0.00"),
                "customer": {"firstName": "Ada", "lastName": "Buyer", "email": "buyer@example.com", "phone": None},
                "shippingAddress": {"name": "Ada Buyer", "firstName": "Ada", "lastName": "Buyer", "address1": "1 Main St",
                                    "address2": None, "city": "Austin", "province": "Texas", "provinceCode": "TX",
                                    "zip": "78701", "countryCodeV2": "US", "phone": None},
                "lineItems": {"nodes": [
                    {"id": gid("LineItem", line), "title": f"item {line}", "quantity": qty,
                     "variant": {"id": gid("ProductVariant", variant)},
                     "product": {"id": shop.variants.get(gid("ProductVariant", variant), {}).get("product")},
                     "originalUnitPriceSet": money(price)}
                    for line, variant, qty in lines
                ]},
            }
            shop.orders[gid("Order", order)] = {
                "id": gid("Order", order), "updatedAt": _now(), "fulfillments": [], "fulfillmentOrders": [fo], "node": node,
            }

    def sell(self, domain: str, item: str, units: int, location: str = LOCATION) -> None:
        with self.lock:
            key = (gid("InventoryItem", item), location)
            self.shops[domain].levels[key] -= units

    # -- reading, for the tests ---------------------------------------------------------
    def writes(self, domain: str, op: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(w) for w in self.shops[domain].writes if op is None or w["op"] == op]

    def quantity(self, domain: str, item: str, location: str = LOCATION) -> int:
        with self.lock:
            return self.shops[domain].levels[(gid("InventoryItem", item), location)]

    def price(self, domain: str, variant: str) -> str:
        with self.lock:
            return str(self.shops[domain].variants[gid("ProductVariant", variant)]["price"])

    def calls(self, domain: str) -> int:
        """Requests the shop received, whatever it answered (a down shop's too)."""
        with self.lock:
            return self._calls.get(domain, 0)

    def stats(self, domain: str) -> dict[str, int]:
        with self.lock:
            return dict(self.shops[domain].stats)

    def fulfillments(self, domain: str, order: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(f) for f in self.shops[domain].orders[gid("Order", order)]["fulfillments"]]

    # -- a request ----------------------------------------------------------------------
    def handle(self, domain: str, token: str | None, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self._calls[domain] = self._calls.get(domain, 0) + 1
            if domain in self.down:
                raise Refusal(503, "Service Unavailable")
            if self.fail_next > 0:
                self.fail_next -= 1
                raise Refusal(503, "Service Unavailable")
            shop = self.shops.get(domain)
            if shop is None:
                raise Refusal(404, "Not Found")
            if token != shop.token:
                raise Refusal(401, "[API] Invalid API key or access token (unrecognized login or wrong password)")
            query = str(body.get("query") or "")
            variables = body.get("variables") or {}
            cost = self._cost(query, variables)
            extensions = {"cost": {"requestedQueryCost": cost, "actualQueryCost": None}}
            if cost > shop.bucket.maximum:
                shop.count("MAX_COST_EXCEEDED")
                extensions["cost"]["throttleStatus"] = shop.bucket.status()
                return {"errors": [{"message": "Query cost exceeds the maximum", "extensions": {"code": "MAX_COST_EXCEEDED"}}],
                        "extensions": extensions}
            if self.drain_next > 0:
                self.drain_next -= 1
                shop.bucket.refill()
                shop.bucket.available = 0
            if shop.bucket.refill() < cost:
                shop.count("THROTTLED")
                extensions["cost"]["throttleStatus"] = shop.bucket.status()
                return {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}], "extensions": extensions}
            shop.bucket.available -= cost
            shop.count("REQUESTS")
            try:
                data = self._run(shop, query, variables)
            except GraphQLErrors as refused:
                shop.count("GRAPHQL_ERRORS")
                extensions["cost"]["throttleStatus"] = shop.bucket.status()
                return {"errors": refused.errors, "extensions": extensions}
            extensions["cost"]["actualQueryCost"] = cost
            extensions["cost"]["throttleStatus"] = shop.bucket.status()
            return {"data": data, "extensions": extensions}

    @staticmethod
    def _cost(query: str, variables: dict[str, Any]) -> int:
        if query.lstrip().startswith("mutation"):
            return MUTATION_COST * max(1, len(_SET_QUANTITIES.findall(query)))
        if "nodes(ids:" in query and "order(" not in query:  # an inventory item's level and quantities cost more
            return 1 + (3 if "on InventoryItem" in query else 1) * len(variables.get("ids") or [])
        if re.search(r"\borders\(", query) or "webhookSubscriptions(" in query:
            return 1 + int(variables.get("first") or 50)
        if re.search(r"\border\(", query):
            return 25
        return 3

    def _run(self, shop: Shop, query: str, v: dict[str, Any]) -> dict[str, Any]:
        if "inventorySetQuantities" in query:
            self._coerce_quantities([v[input_var] for _, input_var, _ in _SET_QUANTITIES.findall(query)])
            data = {}
            for alias, input_var, key_var in _SET_QUANTITIES.findall(query):
                key = v.get(key_var) if key_var else None
                data[alias or "inventorySetQuantities"] = self._set_quantities(shop, v[input_var], key)
            return data
        if "productVariantsBulkUpdate" in query:
            self._coerce_prices(v["productId"], v["variants"])
            return {"productVariantsBulkUpdate": self._prices(shop, v["productId"], v["variants"])}
        if "fulfillmentCreate" in query:
            return {"fulfillmentCreate": self._fulfill(shop, v["fulfillment"])}
        if "webhookSubscriptionCreate" in query:
            return {"webhookSubscriptionCreate": self._subscribe(shop, v["topic"], v["webhookSubscription"])}
        if "webhookSubscriptions(" in query:
            return {"webhookSubscriptions": self._page(shop.webhooks, v)}
        if re.search(r"\borders\(", query):
            shop.count("ORDERS_PULLS")
            return {"orders": self._orders(shop, v)}
        if re.search(r"\border\(", query):
            return {"order": self._order(shop, v["id"])}
        if re.search(r"\bshop\s*\{", query):
            return {"shop": {"id": gid("Shop", 1)}}
        if "nodes(ids:" in query and "on InventoryItem" in query:
            return {"nodes": [self._read_level(shop, i, v["locationId"]) for i in v["ids"]]}
        if "nodes(ids:" in query:
            return {"nodes": [self._variant(shop, i) for i in v["ids"]]}
        raise Refusal(400, "the fake does not know this query")

    def _coerce_prices(self, product: str, variants: list[dict[str, Any]]) -> None:
        if product in self.refuse_prices_of:
            raise GraphQLErrors([{"message": f"Invalid global id '{product}'", "extensions": {"code": "argumentLiteralsIncompatible"}}])
        errors = [
            {"message": (f"Variable $variants of type [ProductVariantsBulkInput!]! was provided invalid value for "
                         f"{i}.{name} (Could not coerce value {entry[name]!r} to Money)")}
            for i, entry in enumerate(variants) for name in ("price", "compareAtPrice")
            if entry.get(name) is not None and not _MONEY.fullmatch(str(entry[name]))
        ]
        if errors:
            raise GraphQLErrors(errors)

    @staticmethod
    def _coerce_quantities(inputs: list[dict[str, Any]]) -> None:
        """GraphQL's Int is 32-bit: a quantity beyond it refuses the document before it runs."""
        errors = []
        for n, data in enumerate(inputs):
            for i, q in enumerate(data.get("quantities") or []):
                for name in ("quantity", "compareQuantity"):
                    value = q.get(name)
                    if value is not None and (not isinstance(value, int) or not -INT_MAX - 1 <= value <= INT_MAX):
                        errors.append({
                            "message": (f"Variable $input{n} of type InventorySetQuantitiesInput! was provided invalid"
                                        f" value for quantities.{i}.{name} (Could not coerce value {value} to Int)"),
                            "extensions": {"problems": [{"path": ["quantities", i, name],
                                                         "explanation": f"Could not coerce value {value} to Int"}]},
                        })
        if errors:
            raise GraphQLErrors(errors)

    # -- mutations ----------------------------------------------------------------------
    def _set_quantities(self, shop: Shop, data: dict[str, Any], key: str | None) -> dict[str, Any]:
        if key is not None and key in shop.idempotent:
            shop.count("IDEMPOTENT_REPLAYS")
            return shop.idempotent[key]
        answer = self._apply_quantities(shop, data, key)
        if key is not None:
            shop.idempotent[key] = answer
        return answer

    def _apply_quantities(self, shop: Shop, data: dict[str, Any], key: str | None) -> dict[str, Any]:
        errors = []
        if data.get("name") != "available":
            errors.append({"field": ["input", "name"], "message": "only available is supported", "code": "INVALID_NAME"})
        if not data.get("reason"):
            errors.append({"field": ["input", "reason"], "message": "reason is required", "code": "INVALID_REASON"})
        ignore = bool(data.get("ignoreCompareQuantity"))
        quantities = data.get("quantities") or []
        for i, q in enumerate(quantities):
            level = (q.get("inventoryItemId"), q.get("locationId"))
            if level not in shop.levels:
                errors.append({"field": ["input", "quantities", str(i), "inventoryItemId"],
                               "message": "the item is not stocked at the location", "code": "ITEM_NOT_STOCKED_AT_LOCATION"})
                continue
            compare = q.get("compareQuantity", q.get("changeFromQuantity"))
            if not ignore and compare is None:
                errors.append({"field": ["input", "quantities", str(i), "compareQuantity"],
                               "message": "compareQuantity is required", "code": "INVALID_COMPARE_QUANTITY"})
            elif not ignore and shop.levels[level] != compare:
                errors.append({"field": ["input", "quantities", str(i), "compareQuantity"],
                               "message": "The compareQuantity argument no longer matches the persisted quantity.",
                               "code": "COMPARE_QUANTITY_STALE"})
        if errors:
            shop.count("USER_ERRORS")
            return {"inventoryAdjustmentGroup": None, "userErrors": errors}
        for q in quantities:
            shop.levels[(q["inventoryItemId"], q["locationId"])] = int(q["quantity"])
            shop.writes.append({"op": "quantity", "item": q["inventoryItemId"], "quantity": int(q["quantity"]),
                                "compare": q.get("compareQuantity"), "key": key,
                                "reference": data.get("referenceDocumentUri")})
        return {"inventoryAdjustmentGroup": {"id": gid("InventoryAdjustmentGroup", self.next_id())}, "userErrors": []}

    def _prices(self, shop: Shop, product: str, variants: list[dict[str, Any]]) -> dict[str, Any]:
        errors = []
        for i, entry in enumerate(variants):
            node = shop.variants.get(entry.get("id"))
            if node is None or node["product"] != product:
                errors.append({"field": ["variants", str(i), "id"], "message": "Product variant does not exist",
                               "code": "PRODUCT_VARIANT_DOES_NOT_EXIST"})
            elif "price" in entry and Decimal(str(entry["price"])) < 0:
                errors.append({"field": ["variants", str(i), "price"], "message": "must be >= 0", "code": "INVALID"})
        if errors:
            shop.count("USER_ERRORS")
            return {"productVariants": None, "userErrors": errors}
        out = []
        for entry in variants:
            node = shop.variants[entry["id"]]
            if "price" in entry:
                node["price"] = str(entry["price"])
            if "compareAtPrice" in entry:
                node["compareAtPrice"] = entry["compareAtPrice"]
            shop.writes.append({"op": "price", "variant": entry["id"], "price": node["price"],
                                "compareAtPrice": node["compareAtPrice"]})
            out.append({"id": entry["id"], "price": node["price"], "compareAtPrice": node["compareAtPrice"]})
        return {"productVariants": out, "userErrors": []}

    def _fulfill(self, shop: Shop, data: dict[str, Any]) -> dict[str, Any]:
        groups = data.get("lineItemsByFulfillmentOrder") or []
        tracking = data.get("trackingInfo") or {}
        if not groups:
            return {"fulfillment": None, "userErrors": [{"field": ["fulfillment"], "message": "no line items", "code": "INVALID"}]}
        order = None
        for candidate in shop.orders.values():
            if any(fo["id"] == groups[0].get("fulfillmentOrderId") for fo in candidate["fulfillmentOrders"]):
                order = candidate
        if order is None:
            return {"fulfillment": None, "userErrors": [{"field": ["fulfillment"], "message": "fulfillment order not found",
                                                         "code": "NOT_FOUND"}]}
        fos = {fo["id"]: fo for fo in order["fulfillmentOrders"]}
        for group in groups:  # check everything first: a refused create changes nothing
            fo = fos.get(group.get("fulfillmentOrderId"))
            if fo is None or fo["status"] not in ("OPEN", "IN_PROGRESS"):
                return {"fulfillment": None, "userErrors": [{"field": ["fulfillment"], "message": "fulfillment order is not open",
                                                             "code": "INVALID"}]}
            lines = {line["id"]: line for line in fo["lineItems"]}
            for wanted in group.get("fulfillmentOrderLineItems") or []:
                line = lines.get(wanted.get("id"))
                if line is None or int(wanted.get("quantity") or 0) > line["remainingQuantity"]:
                    return {"fulfillment": None, "userErrors": [{"field": ["fulfillment"], "message": "bad line or quantity",
                                                                 "code": "INVALID"}]}
        for group in groups:
            fo = fos[group["fulfillmentOrderId"]]
            lines = {line["id"]: line for line in fo["lineItems"]}
            for wanted in group["fulfillmentOrderLineItems"]:
                lines[wanted["id"]]["remainingQuantity"] -= int(wanted["quantity"])
            fo["status"] = "CLOSED" if all(line["remainingQuantity"] == 0 for line in fo["lineItems"]) else "IN_PROGRESS"
        info = {"number": tracking.get("number"), "company": tracking.get("company"), "url": tracking.get("url")}
        fulfillment = {"id": gid("Fulfillment", self.next_id()), "status": "SUCCESS", "trackingInfo": [info],
                       "notifyCustomer": bool(data.get("notifyCustomer")),
                       "lines": [w["id"] for g in groups for w in g["fulfillmentOrderLineItems"]]}
        order["fulfillments"].append(fulfillment)
        order["updatedAt"] = _now()
        shop.writes.append({"op": "fulfillment", "order": order["id"], "tracking": info["number"],
                            "notifyCustomer": fulfillment["notifyCustomer"], "lines": fulfillment["lines"]})
        return {"fulfillment": {"id": fulfillment["id"], "status": "SUCCESS", "trackingInfo": [info]}, "userErrors": []}

    def _subscribe(self, shop: Shop, topic: str, sub: dict[str, Any]) -> dict[str, Any]:
        url = sub.get("callbackUrl") or sub.get("uri")
        if not re.match(r"^[A-Z_]+$", str(topic)) or not url:
            return {"webhookSubscription": None, "userErrors": [{"field": ["topic"], "message": "invalid", "code": "INVALID"}]}
        if any(w["topic"] == topic and w["endpoint"]["callbackUrl"] == url for w in shop.webhooks):
            return {"webhookSubscription": None,
                    "userErrors": [{"field": ["callbackUrl"], "message": "Address for this topic has already been taken",
                                    "code": "TAKEN"}]}
        hook = {"id": gid("WebhookSubscription", self.next_id()), "topic": topic,
                "endpoint": {"__typename": "WebhookHttpEndpoint", "callbackUrl": url}}
        shop.webhooks.append(hook)
        shop.writes.append({"op": "webhook", "topic": topic, "callbackUrl": url})
        return {"webhookSubscription": hook, "userErrors": []}

    # -- queries ------------------------------------------------------------------------
    @staticmethod
    def _page(items: list[dict[str, Any]], v: dict[str, Any]) -> dict[str, Any]:
        start = int(v["after"]) if v.get("after") else 0
        first = int(v.get("first") or 50)
        chunk = items[start:start + first]
        end = start + len(chunk)
        return {"nodes": chunk, "pageInfo": {"hasNextPage": end < len(items), "endCursor": str(end) if chunk else None}}

    def _orders(self, shop: Shop, v: dict[str, Any]) -> dict[str, Any]:
        since = None
        match = re.search(r"updated_at:>'?([0-9TZ:+.-]+)'?", str(v.get("query") or ""))
        if match:
            since = match.group(1)
        chosen = sorted((o for o in shop.orders.values() if since is None or o["updatedAt"] > since),
                        key=lambda o: (o["updatedAt"], o["id"]))
        nodes = [{**o["node"], "updatedAt": o["updatedAt"], "fulfillments": [
            {"id": f["id"], "updatedAt": o["updatedAt"], "trackingInfo": f["trackingInfo"],
             "fulfillmentLineItems": {"nodes": [{"lineItem": {"id": line["lineItem"]["id"], "variant": {"id": line["variant"]}}}
                                                for fo in o["fulfillmentOrders"] for line in fo["lineItems"]
                                                if line["id"] in f["lines"]]}}
            for f in o["fulfillments"]]} for o in chosen]
        return self._page(nodes, v)

    @staticmethod
    def _order(shop: Shop, order_id: str) -> dict[str, Any] | None:
        order = shop.orders.get(order_id)
        if order is None:
            return None
        return {
            "id": order["id"],
            "fulfillments": [{"id": f["id"], "trackingInfo": f["trackingInfo"]} for f in order["fulfillments"]],
            "fulfillmentOrders": {"nodes": [
                {"id": fo["id"], "status": fo["status"], "lineItems": {"nodes": [
                    {"id": line["id"], "remainingQuantity": line["remainingQuantity"], "lineItem": line["lineItem"]}
                    for line in fo["lineItems"]]}}
                for fo in order["fulfillmentOrders"]
            ]},
        }

    def _read_level(self, shop: Shop, item: str, location: str) -> dict[str, Any] | None:
        level = self._level(shop, item, location)
        if level is not None and self.sell_after_read.get(item):
            shop.levels[(item, location)] -= self.sell_after_read[item]
        return level

    @staticmethod
    def _level(shop: Shop, item: str, location: str) -> dict[str, Any] | None:
        if (item, location) not in shop.levels:
            return None
        return {"id": item, "inventoryLevel": {"quantities": [{"name": "available", "quantity": shop.levels[(item, location)]}]}}

    @staticmethod
    def _variant(shop: Shop, variant_id: str) -> dict[str, Any] | None:
        node = shop.variants.get(variant_id)
        if node is None:
            return None
        return {"id": variant_id, "price": node["price"], "compareAtPrice": node["compareAtPrice"],
                "product": {"id": node["product"]}, "inventoryItem": {"id": node["item"]}}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle on, each reply waits ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _answer(self, status: int, payload: Any) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        match = _PATH.match(self.path)
        if match is None:
            self._answer(404, {"errors": "Not Found"})
            return
        try:
            body = json.loads(raw)
            answer = self.server.fake.handle(match["shop"], self.headers.get("X-Shopify-Access-Token"), body)
        except Refusal as refusal:
            self._answer(refusal.status, {"errors": refusal.message})
            return
        except (ValueError, KeyError, TypeError) as exc:
            self._answer(400, {"errors": f"bad request: {type(exc).__name__}: {exc}"})
            return
        self._answer(200, answer)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeShopify


class FakeShopifyServer(FakeShopify):
    """The fake behind a real HTTP server on 127.0.0.1 (a background thread)."""

    def __init__(self) -> None:
        super().__init__()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-shopify", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def admin_url(self, domain: str) -> str:
        return f"{self.url}/{domain}"

    def __enter__(self) -> FakeShopifyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
