"""CJ Dropshipping orders (API 2.0).

Every call carries the ``CJ-Access-Token`` header; answers are
``{"code", "result", "message", "data", "requestId"}`` and a call failed when
``result`` is false or ``code`` is not 200, even with HTTP 200.

Endpoints used (under ``{base_url}/api2.0/v1``):

* ``POST /shopping/order/createOrderV2``: JSON with our ``orderNumber`` (the
  reference), ``shipping*`` address fields, ``logisticName``, ``fromCountryCode``
  and ``products: [{vid, quantity}]``; ``data = {orderId, orderNumber, orderStatus}``.
* ``GET /shopping/order/getOrderDetail?orderId=`` / ``?orderNumber=``: ``data =
  {orderId, orderNumber, orderStatus, trackNumber, logisticName}`` (``null`` or a
  "not exist" error when there is none).
* ``GET /logistic/trackInfo?trackNumber=``: ``data = [{trackingNumber,
  logisticName, trackingStatus, ...}]``.
* ``DELETE /shopping/order/deleteOrder?orderId=``: cancel (CJ deletes an order
  that is not yet paid/shipped).

Assumptions (CJ's docs were not available to check):

* ``getOrderDetail`` accepts ``orderNumber`` (our reference); CJ documents a
  lookup by ``orderId``, and a list query. If only the list is supported, change
  ``_detail`` to the list query filtered on ``orderNumber``.
* Error codes: ``1600001``-``1600003`` authentication; ``1600200`` too many
  requests (throttling); ``1600500``/``500`` or a "busy"/"system error" message:
  internal; any other ``16xxxxx``: a business refusal.
* A product line's CJ variant id (``vid``) is ``source_variant_id``, else
  ``source_id``.
* Delivered: ``trackingStatus`` containing "delivered". The tracking URL is a
  generic tracker (17track), CJ's own page not being known.

Products (``SupplierCatalog``). CJ's default limit is 1 request/s, so ids go
in batches:

* ``GET /product/list?pids=<id,id,...>&pageSize=<n>`` (the batch list query,
  ``max_batch`` = 20 ids a call): ``data = {pageNum, pageSize, total, list:
  [product]}``; a product absent from ``list`` is gone. **Assumed**: CJ's list
  query is documented (third-party code) with ``pageNum``/``pageSize``/
  ``keyword`` filters; a filter on a list of ``pids`` is an assumption to
  confirm. With ``batch_size=1`` the adapter uses only the documented
  per-product query below.
* ``GET /product/query?pid=``: ``data = product``; an error whose message says
  the product does not exist / was removed means gone.

A product: ``{pid, productNameEn, productImageSet: [url], sellPrice,
variants: [{vid, variantNameEn, variantSellPrice, inventories: [{areaEn,
totalInventory}]}]}`` (field names as seen in third-party clients of API 2.0;
not checked against CJ's docs). Cost = ``variantSellPrice`` (a JSON number,
read through ``str`` into a ``Decimal``); stock = the sum of
``totalInventory`` over the warehouses (``variantStock``/``inventoryNum`` when
there are no ``inventories``); currency USD. A product with no variants is
gone. Shipping is not in the answer: ``shipping_cost`` is 0 here, and each
variant's ``vid`` is its ``freight_ref`` for the freight calculation below.

Freight (``SupplierFreight``): ``POST /logistic/freightCalculate`` with
``{startCountryCode: from_country_code (CN), endCountryCode, products:
[{quantity: 1, vid}]}``, behind the same token bucket (CJ's 1 request/s is
shared with the product fetch). Assumed answer (field names from third-party
clients, not CJ's docs): ``data = [{logisticName, logisticPrice,
logisticAging, ...}]``, ``logisticPrice`` a JSON number in USD. The quote is
the cheapest option (``models.freight.cheapest``); an empty list means no
delivery to that country (None); an option without a readable
``logisticPrice`` is skipped (all of them: an unreadable answer). Errors as
for every call (``code`` not 200: throttling, busy, business refusals).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import httpx

from connectors.suppliers.base import (
    OutcomeUnknown,
    PlacedOrder,
    RateLimited,
    Rejected,
    SupplierError,
    SupplierProduct,
    TrackingInfo,
)
from connectors.suppliers.catalog import (
    DEFAULT_FETCH_CONCURRENCY,
    PRODUCT_GONE,
    fetch_batched,
    image_list,
    money,
    stock,
    text_or_none,
)
from connectors.suppliers.http import (
    BusinessRejected,
    CircuitBreaker,
    SupplierHttp,
    clean_reason,
    json_body,
    read_with_retries,
    supplier_busy,
)
from models.freight import FreightOption, cheapest
from models.orders import Address, Customer, SupplierLine

log = logging.getLogger(__name__)

PROVIDER = "CJ_DROPSHIPPING"
DEFAULT_BASE_URL = "https://developers.cjdropshipping.com"
API = "/api2.0/v1"
#: ids per batch list query (assumed; see the module docstring)
LIST_BATCH = 20
CURRENCY = "USD"

AUTH_CODES = {1600001, 1600002, 1600003}
THROTTLE_CODES = {1600200, 429}
BUSY_CODES = {1600500, 500, 502, 503}
# "no such order" only (see aliexpress._NOT_FOUND): "interface does not exist" is no answer.
_NOT_FOUND = re.compile(r"order[\w .-]*?(not[ _-]?(found|exist)|does ?n[o']?t exist)", re.I)
_BUSY = re.compile(r"busy|system error|internal|try again later", re.I)
_THROTTLE = re.compile(r"too many|rate limit|qps|frequen", re.I)


class CJOrders:
    """``SupplierOrders`` and ``SupplierCatalog`` over the CJ Dropshipping API 2.0."""

    provider = PROVIDER

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        access_token: str,
        timeout: httpx.Timeout | float | None = None,
        rate_per_s: float = 1.0,
        burst: float | None = None,
        breaker: CircuitBreaker | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        read_attempts: int = 3,
        logistic_name: str = "CJPacket Ordinary",
        from_country_code: str = "CN",
        pay_type: int | None = None,
        batch_size: int = LIST_BATCH,
        fetch_concurrency: int = DEFAULT_FETCH_CONCURRENCY,
    ) -> None:
        if not access_token:
            raise ValueError("CJ needs an access token")
        if not 1 <= batch_size <= LIST_BATCH:
            raise ValueError(f"batch_size must be in 1..{LIST_BATCH}")
        #: ids per call: the batch list query's size, or 1 (the per-product query)
        self.max_batch = batch_size
        self.fetch_concurrency = fetch_concurrency
        self.read_attempts = read_attempts
        self.logistic_name = logistic_name
        self.from_country_code = from_country_code
        self.pay_type = pay_type
        self.http = SupplierHttp(
            PROVIDER,
            base_url,
            timeout=timeout,
            rate_per_s=rate_per_s,
            burst=burst,
            breaker=breaker,
            transport=transport,
            headers={"CJ-Access-Token": access_token},
        )

    def __repr__(self) -> str:
        return f"CJOrders(base_url={self.http.base_url!r})"

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call; its ``data``, or the port's error."""
        response = await self.http.request(method, API + path, **kwargs)
        body = json_body(response)
        if not isinstance(body, dict):
            raise OutcomeUnknown("unexpected answer shape")
        code = _int(body.get("code"))
        if body.get("result") is False or (code is not None and code != 200):
            raise _business_error(code, body.get("message"))
        return body.get("data")

    # ------------------------------------------------------------------ port

    async def place_order(
        self, reference: str, lines: Sequence[SupplierLine], address: Address, customer: Customer
    ) -> PlacedOrder:
        payload: dict[str, Any] = {
            "orderNumber": reference,
            "shippingCountryCode": address.country_code,
            "shippingCountry": address.country_code,
            "shippingProvince": address.province or "",
            "shippingCity": address.city,
            "shippingAddress": address.line1,
            "shippingAddress2": address.line2 or "",
            "shippingZip": address.postal_code or "",
            "shippingCustomerName": address.name,
            "shippingPhone": address.phone or customer.phone or "",
            "email": customer.email or "",
            "logisticName": self.logistic_name,
            "fromCountryCode": self.from_country_code,
            "remark": f"ref {reference}",
            "products": [{"vid": line.source_variant_id or line.source_id, "quantity": line.quantity} for line in lines],
        }
        if self.pay_type is not None:
            payload["payType"] = self.pay_type
        data = await self._call("POST", "/shopping/order/createOrderV2", json=payload)
        order_id = data.get("orderId") if isinstance(data, dict) else None
        if not order_id:
            raise OutcomeUnknown("createOrderV2 succeeded without an orderId")
        return PlacedOrder(str(order_id), reference, str(data.get("orderStatus") or "CREATED"))

    async def find_order(self, reference: str) -> PlacedOrder | None:
        data = await read_with_retries(lambda: self._detail(orderNumber=reference), attempts=self.read_attempts)
        if data is None or not data.get("orderId"):
            return None
        if data.get("orderNumber") not in (None, "", reference):
            log.warning("cj: lookup of a reference returned another order; treated as absent")
            return None
        return PlacedOrder(str(data["orderId"]), reference, str(data.get("orderStatus") or "UNKNOWN"))

    async def get_tracking(self, order: PlacedOrder) -> TrackingInfo | None:
        data = await read_with_retries(
            lambda: self._detail(orderId=order.supplier_order_id), attempts=self.read_attempts
        )
        if data is None:
            return None
        number = str(data.get("trackNumber") or "").strip()
        if not number:
            return None
        carrier = str(data.get("logisticName") or "") or None
        delivered = False
        try:
            infos = await self._call("GET", "/logistic/trackInfo", params={"trackNumber": number})
        except SupplierError as err:  # the number is known; the events can wait
            log.info("cj: tracking details unavailable: %s", err.reason)
        else:
            for info in infos if isinstance(infos, list) else [infos] if isinstance(infos, dict) else []:
                if not isinstance(info, dict):
                    continue
                carrier = str(info.get("logisticName") or carrier or "") or None
                if "delivered" in str(info.get("trackingStatus") or "").lower():
                    delivered = True
        url = f"https://www.17track.net/en/track?nums={number}"
        return TrackingInfo(number=number, carrier=carrier, url=url, delivered=delivered)

    async def cancel_order(self, order: PlacedOrder) -> bool:
        try:
            await self._call("DELETE", "/shopping/order/deleteOrder", params={"orderId": order.supplier_order_id})
        except BusinessRejected as err:
            log.info("cj: cancel refused: %s", err.reason)
            return False
        return True

    async def aclose(self) -> None:
        await self.http.aclose()

    # --------------------------------------------------------------- catalog

    async def fetch_products(self, source_ids: Sequence[str], country: str | None = None) -> list[SupplierProduct]:
        # ``country`` is not asked for: CJ's product answers do not depend on the destination.
        return await fetch_batched(source_ids, self.max_batch, self._fetch_batch, concurrency=self.fetch_concurrency)

    async def _fetch_batch(self, ids: list[str]) -> list[SupplierProduct]:
        if self.max_batch == 1:
            return await read_with_retries(lambda: self._query(ids[0]), attempts=self.read_attempts)
        return await read_with_retries(lambda: self._list(ids), attempts=self.read_attempts)

    async def _query(self, pid: str) -> list[SupplierProduct]:
        try:
            data = await self._call("GET", "/product/query", params={"pid": pid})
        except BusinessRejected as err:
            if PRODUCT_GONE.search(err.reason):
                return [SupplierProduct.gone(pid, CURRENCY)]
            raise
        if data is None:
            return [SupplierProduct.gone(pid, CURRENCY)]
        if not isinstance(data, dict):
            raise OutcomeUnknown("product query answer without a product")
        return _products_of(pid, data)

    async def _list(self, pids: list[str]) -> list[SupplierProduct]:
        data = await self._call(
            "GET", "/product/list", params={"pids": ",".join(pids), "pageNum": 1, "pageSize": len(pids)}
        )
        rows = data.get("list") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise OutcomeUnknown("product list answer without a list")
        found = {str(row.get("pid")): row for row in rows if isinstance(row, dict) and row.get("pid")}
        products: list[SupplierProduct] = []
        for pid in pids:
            row = found.get(pid)
            products += _products_of(pid, row) if row is not None else [SupplierProduct.gone(pid, CURRENCY)]
        return products

    # --------------------------------------------------------------- freight

    async def quote_freight(self, source_id: str, ref: str | None, country: str) -> FreightOption | None:
        return await read_with_retries(lambda: self._freight(ref or source_id, country), attempts=self.read_attempts)

    async def _freight(self, vid: str, country: str) -> FreightOption | None:
        payload = {
            "startCountryCode": self.from_country_code,
            "endCountryCode": country,
            "products": [{"quantity": 1, "vid": vid}],
        }
        data = await self._call("POST", "/logistic/freightCalculate", json=payload)
        if data is None:
            return None
        if not isinstance(data, list):
            raise OutcomeUnknown("freightCalculate answer is not a list")
        options = []
        for row in data:
            if not isinstance(row, dict) or row.get("logisticPrice") in (None, ""):
                continue
            try:
                amount = money(row["logisticPrice"], "logisticPrice")
                options.append(FreightOption(str(row.get("logisticName") or "?")[:200], amount, CURRENCY))
            except (OutcomeUnknown, ValueError):
                log.info("cj: freight option with an unreadable logisticPrice skipped")
        if data and not options:
            raise OutcomeUnknown("freightCalculate: no readable option")
        return cheapest(options, CURRENCY)

    async def _detail(self, **query: str) -> dict[str, Any] | None:
        try:
            data = await self._call("GET", "/shopping/order/getOrderDetail", params=query)
        except BusinessRejected as err:
            if _NOT_FOUND.search(err.reason):
                return None
            raise
        return data if isinstance(data, dict) and data else None


def _products_of(pid: str, data: Mapping[str, Any]) -> list[SupplierProduct]:
    title = text_or_none(data.get("productNameEn") or data.get("productName"))
    images = image_list(data.get("productImageSet") or data.get("productImage"))
    variants = [v for v in data.get("variants") or [] if isinstance(v, dict)]
    if not variants:
        return [SupplierProduct.gone(pid, CURRENCY, title)]
    products = []
    for variant in variants:
        vid = variant.get("vid")
        images_v = images or image_list(variant.get("variantImage"))
        products.append(
            SupplierProduct(
                source_id=pid,
                source_variant_id=str(vid) if vid not in (None, "") else None,
                available=True,
                stock=_variant_stock(variant),
                cost_price=money(variant.get("variantSellPrice"), "variantSellPrice"),
                shipping_cost=Decimal("0"),
                currency=CURRENCY,
                title=title,
                images=images_v,
                freight_ref=str(vid) if vid not in (None, "") else None,
            )
        )
    return products


def _variant_stock(variant: Mapping[str, Any]) -> int:
    inventories = variant.get("inventories")
    if isinstance(inventories, list) and inventories:
        return sum(
            stock(i.get("totalInventory", i.get("totalInventoryNum", 0)), "totalInventory")
            for i in inventories
            if isinstance(i, dict)
        )
    for key in ("variantStock", "inventoryNum", "totalInventoryNum"):
        if variant.get(key) is not None:
            return stock(variant[key], key)
    return 0


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _business_error(code: int | None, message: Any) -> SupplierError:
    msg = str(message or "")
    text = clean_reason(f"CJ {code}: {msg}")
    if code in THROTTLE_CODES or _THROTTLE.search(msg):
        return RateLimited(text)
    if code in BUSY_CODES or _BUSY.search(msg):
        return supplier_busy(text)
    if code in AUTH_CODES:
        return Rejected(text)
    return BusinessRejected(text)

