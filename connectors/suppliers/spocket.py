"""Spocket orders (REST, JSON, ``Authorization: Bearer <api key>``).

Endpoints used (under ``{base_url}/api/v1``):

* ``POST /orders``: ``{external_id, line_items: [{product_id, variant_id,
  quantity}], shipping_address: {...}, customer: {...}}`` -> 201 ``{"order": {...}}``.
* ``GET /orders?external_id=``: ``{"orders": [...]}``.
* ``GET /orders/{id}``: ``{"order": {id, external_id, status, tracking:
  {number, carrier, url, status} | null}}``.
* ``POST /orders/{id}/cancel``: 200 ``{"order": {...}}``; 409/422 when the order
  can no longer be cancelled (shipped).

An order object: ``{id, external_id, status, created_at, tracking}``.

Assumptions: Spocket publishes no public order API that could be checked; this
shape (paths, ``external_id`` filter, status codes, the default host
``https://api.spocket.co``) is a plausible REST design and must be confirmed
against the account's API documentation. Errors are HTTP statuses: 401/403
credentials, 404 unknown order, 409/422 business refusals, 429 with
``Retry-After``, 5xx. When several orders carry one ``external_id`` (the
supplier does not dedupe), ``find_order`` returns the oldest not cancelled.

Products (``SupplierCatalog``), equally assumed: ``GET /products?ids=<id,...>``
(``max_batch`` = 50 ids a call) -> ``{"products": [{id, title, status
("active" | "inactive"), currency, images: [{src}], shipping: {cost},
variants: [{id, title, price, inventory_quantity}]}]}``, prices as decimal
strings. A product absent from the answer, or not ``active``, or without
variants, is gone. ``shipping.cost`` is the product's shipping cost.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from connectors.suppliers.base import OutcomeUnknown, PlacedOrder, SupplierProduct, TrackingInfo
from connectors.suppliers.catalog import (
    DEFAULT_FETCH_CONCURRENCY,
    fetch_batched,
    image_list,
    money,
    stock,
    text_or_none,
)
from connectors.suppliers.http import BusinessRejected, CircuitBreaker, SupplierHttp, json_body, read_with_retries
from models.orders import Address, Customer, SupplierLine

log = logging.getLogger(__name__)

PROVIDER = "SPOCKET"
DEFAULT_BASE_URL = "https://api.spocket.co"
API = "/api/v1"
#: ids per products call (assumed)
LIST_BATCH = 50
CURRENCY = "USD"


class SpocketOrders:
    """``SupplierOrders`` and ``SupplierCatalog`` over Spocket's REST API."""

    provider = PROVIDER

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: str,
        timeout: httpx.Timeout | float | None = None,
        rate_per_s: float = 5.0,
        burst: float | None = None,
        breaker: CircuitBreaker | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        read_attempts: int = 3,
        batch_size: int = LIST_BATCH,
        fetch_concurrency: int = DEFAULT_FETCH_CONCURRENCY,
    ) -> None:
        if not api_key:
            raise ValueError("Spocket needs an API key")
        if not 1 <= batch_size <= LIST_BATCH:
            raise ValueError(f"batch_size must be in 1..{LIST_BATCH}")
        self.max_batch = batch_size
        self.fetch_concurrency = fetch_concurrency
        self.read_attempts = read_attempts
        self.http = SupplierHttp(
            PROVIDER,
            base_url,
            timeout=timeout,
            rate_per_s=rate_per_s,
            burst=burst,
            breaker=breaker,
            transport=transport,
            headers={"Authorization": f"Bearer {api_key}"},
        )

    def __repr__(self) -> str:
        return f"SpocketOrders(base_url={self.http.base_url!r})"

    async def place_order(
        self, reference: str, lines: Sequence[SupplierLine], address: Address, customer: Customer
    ) -> PlacedOrder:
        payload = {
            "external_id": reference,
            "line_items": [
                {"product_id": line.source_id, "variant_id": line.source_variant_id, "quantity": line.quantity}
                for line in lines
            ],
            "shipping_address": {
                "name": address.name,
                "address1": address.line1,
                "address2": address.line2,
                "city": address.city,
                "province": address.province,
                "zip": address.postal_code,
                "country_code": address.country_code,
                "phone": address.phone,
            },
            "customer": {"name": customer.name, "email": customer.email, "phone": customer.phone},
        }
        response = await self.http.request("POST", f"{API}/orders", json=payload)
        order = _order_of(json_body(response))
        if order is None or not order.get("id"):
            raise OutcomeUnknown("order create answered without an order id")
        return PlacedOrder(str(order["id"]), reference, str(order.get("status") or "pending"))

    async def find_order(self, reference: str) -> PlacedOrder | None:
        async def lookup() -> Any:
            response = await self.http.request("GET", f"{API}/orders", params={"external_id": reference})
            return json_body(response)

        body = await read_with_retries(lookup, attempts=self.read_attempts)
        orders = body.get("orders") if isinstance(body, dict) else body
        if not isinstance(orders, list):
            raise OutcomeUnknown("order list answer without orders")
        matching = [o for o in orders if isinstance(o, dict) and o.get("external_id") == reference and o.get("id")]
        if not matching:
            return None
        if len(matching) > 1:
            log.warning("spocket: %d orders carry one reference", len(matching))
        live = [o for o in matching if str(o.get("status", "")).lower() != "cancelled"] or matching
        order = min(live, key=lambda o: (str(o.get("created_at") or ""), str(o["id"])))
        return PlacedOrder(str(order["id"]), reference, str(order.get("status") or "unknown"))

    async def get_tracking(self, order: PlacedOrder) -> TrackingInfo | None:
        async def lookup() -> Any:
            path = f"{API}/orders/{quote(order.supplier_order_id, safe='')}"
            return json_body(await self.http.request("GET", path))

        found = _order_of(await read_with_retries(lookup, attempts=self.read_attempts))
        if found is None:
            raise OutcomeUnknown("order answer without an order")
        tracking = found.get("tracking")
        if not isinstance(tracking, dict) or not tracking.get("number"):
            return None
        return TrackingInfo(
            number=str(tracking["number"]),
            carrier=str(tracking.get("carrier") or "") or None,
            url=str(tracking.get("url") or "") or None,
            delivered=str(tracking.get("status") or found.get("status") or "").lower() == "delivered",
        )

    async def cancel_order(self, order: PlacedOrder) -> bool:
        path = f"{API}/orders/{quote(order.supplier_order_id, safe='')}/cancel"
        try:
            await self.http.request("POST", path)
        except BusinessRejected as err:  # 409/422: already shipped
            log.info("spocket: cancel refused: %s", err.reason)
            return False
        return True

    async def aclose(self) -> None:
        await self.http.aclose()

    async def fetch_products(self, source_ids: Sequence[str], country: str | None = None) -> list[SupplierProduct]:
        # ``country`` is not asked for: Spocket's product answers do not depend on the destination.
        return await fetch_batched(source_ids, self.max_batch, self._fetch_batch, concurrency=self.fetch_concurrency)

    async def _fetch_batch(self, ids: list[str]) -> list[SupplierProduct]:
        async def lookup() -> Any:
            response = await self.http.request("GET", f"{API}/products", params={"ids": ",".join(ids)})
            return json_body(response)

        body = await read_with_retries(lookup, attempts=self.read_attempts)
        rows = body.get("products") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise OutcomeUnknown("products answer without products")
        found = {str(row.get("id")): row for row in rows if isinstance(row, dict) and row.get("id") is not None}
        products: list[SupplierProduct] = []
        for source_id in ids:
            row = found.get(source_id)
            products += _products_of(source_id, row) if row is not None else [SupplierProduct.gone(source_id, CURRENCY)]
        return products


def _products_of(source_id: str, row: Mapping[str, Any]) -> list[SupplierProduct]:
    title = text_or_none(row.get("title"))
    currency = str(row.get("currency") or CURRENCY).upper()
    variants = [v for v in row.get("variants") or [] if isinstance(v, dict)]
    if str(row.get("status") or "active").lower() != "active" or not variants:
        return [SupplierProduct.gone(source_id, currency, title)]
    shipping = row.get("shipping")
    cost = shipping.get("cost") if isinstance(shipping, dict) else None
    shipping_cost = money(cost, "shipping.cost") if cost not in (None, "") else Decimal("0")
    images = image_list(row.get("images"))
    return [
        SupplierProduct(
            source_id=source_id,
            source_variant_id=str(v["id"]) if v.get("id") not in (None, "") else None,
            available=True,
            stock=stock(v.get("inventory_quantity", 0), "inventory_quantity"),
            cost_price=money(v.get("price"), "price"),
            shipping_cost=shipping_cost,
            currency=currency,
            title=title,
            images=images,
        )
        for v in variants
    ]


def _order_of(body: Any) -> dict[str, Any] | None:
    if isinstance(body, dict):
        order = body.get("order", body)
        if isinstance(order, dict):
            return order
    return None

