"""AliExpress dropshipping orders (AliExpress Open Platform, ``/sync`` gateway).

Every call is a ``POST {base_url}/sync`` with form parameters: the system ones
(``method``, ``app_key``, ``access_token``, ``timestamp`` in ms, ``sign_method=sha256``)
and the API's own, signed with ``sign``: every parameter but ``sign``, sorted by
name, concatenated as ``key1value1key2value2...``, HMAC-SHA256 with the app
secret, uppercase hex (``sign_request``). Answers are JSON:
``{"<method_with_underscores>_response": {...}}`` or, for a gateway/business
failure, ``{"error_response": {"type", "code", "msg", "sub_code", "request_id"}}``
(the newer IOP gateway puts ``type``/``code``/``message`` at the top level; both
are read).

Methods used:

* ``aliexpress.trade.buy.placeorder`` with ``param_place_order_request4_open_api_d_t_o``
  (JSON: ``out_order_id`` = our reference, ``logistics_address``, ``product_items``);
  answer ``result = {is_success, order_list: {number: [...]}, error_code, error_msg}``.
* ``aliexpress.trade.ds.order.get`` with ``single_order_query`` (JSON ``{order_id}``
  or ``{out_order_id}``); answer ``result = {order_id, out_order_id, order_status,
  logistics_info_list: {ae_order_logistics_info: [{logistics_no, logistics_service}]}}``.
* ``aliexpress.logistics.ds.trackinginfo.query`` (``logistics_no``, ``origin=ESCROW``,
  ``out_ref``, ``service_name``, ``to_area``); answer ``{result_success,
  official_website, details: {details: [{event_desc, status, event_date}]}}``.

Assumptions (not confirmed from AliExpress's primary docs; checked against
public SDK models where possible):

* Looking an order up by *our* reference (``single_order_query.out_order_id``)
  is assumed supported; the documented query is by AliExpress order id. If the
  real API lacks it, the executor's lookup-before-retry needs another source
  (a list of recent orders matched on ``order_memo``, which carries the
  reference too).
* ``aliexpress.trade.ds.order.cancel`` (``order_id``) is an assumed method name:
  no public dropshipper cancel API was found.
* AliExpress may split one placement into several orders (one per seller);
  ``supplier_order_id`` is then their ids joined with ``,`` and tracking follows
  the first.
* Throttling is recognised by codes such as ``ApiCallLimit``/``AppCallLimit``
  (or TOP's ``7`` / ``accesscontrol.*``); "system busy" by ``type`` ISP/SYSTEM,
  ``isp.*`` sub-codes or codes like ``ServiceUnavailable``/``InternalError``.
* Delivered: ``order_status`` ``FINISH`` or a tracking event with status
  ``DELIVERED``/``SIGNIN``.

Products (``SupplierCatalog``): ``aliexpress.ds.product.get`` with
``product_id``, ``ship_to_country``, ``target_currency``, ``target_language``,
one product per call (``max_batch = 1``: no batch product API is known for
dropshippers), at most ``fetch_concurrency`` calls at once behind the same
token bucket as the order calls. Assumed answer (checked only against
third-party code that parses it, not against AliExpress's docs)::

    {"aliexpress_ds_product_get_response": {"rsp_code": 200, "result": {
        "ae_item_base_info_dto": {"product_id", "subject", "product_status_type",
                                  "currency_code"},
        "ae_item_sku_info_dtos": {"ae_item_sku_info_d_t_o": [
            {"sku_id", "sku_attr", "sku_price", "offer_sale_price",
             "sku_available_stock", "currency_code"}]},
        "ae_multimedia_info_dto": {"image_urls": "url1;url2"}}}}

* cost = ``offer_sale_price`` (the price we would pay) else ``sku_price``,
  decimal strings read as ``Decimal``; variant id = ``sku_attr`` (what an
  order's ``sku_attr`` takes), else ``sku_id``.
* Gone: an error whose code/message says the product does not exist / was
  removed, or ``product_status_type`` other than ``onSelling`` (e.g.
  ``offline``), or a product answered without SKUs.
* Shipping is not in this answer (``logistics_info_dto`` gives delivery time
  and destination, not a fee): ``shipping_cost`` is 0 here, and each SKU's
  ``sku_id`` is its ``freight_ref`` for the freight query below.

Freight (``SupplierFreight``): ``aliexpress.ds.freight.query`` with
``queryDeliveryReq`` (JSON: ``productId``, ``selectedSkuId`` = the SKU's
``sku_id``, ``quantity`` 1, ``shipToCountry``, ``currency``, ``language``/``locale``
``en_US``), signed and rate-limited like every other call. Assumed answer
(from third-party clients and captures of it, not AliExpress's docs)::

    {"aliexpress_ds_freight_query_response": {"result": {
        "success": true, "code": 200, "msg": "Call succeeds",
        "delivery_options": {"delivery_option_d_t_o": [
            {"code", "company", "shipping_fee_cent", "shipping_fee_currency",
             "shipping_fee_format", "free_shipping", "min_delivery_days",
             "max_delivery_days", "tracking", "ship_from_country"}]}}}}

* the fee is ``shipping_fee_cent``, which despite its name is in the
  currency's units (captures show ``"0.99"`` formatted ``0,99€``), a decimal
  string read as ``Decimal``; ``free_shipping`` true is 0; an option without
  those may carry an older ``freight: {amount, currency_code}``, read too;
  an option whose fee cannot be read is skipped (all of them: an unreadable
  answer);
* the quote is the cheapest option in the requested currency (``models.freight.cheapest``);
  an empty list means no delivery to that country (None); options only in
  another currency are an answer we cannot use (``OutcomeUnknown``);
* ``success`` false is the supplier's refusal, read like a business error
  (a "product not exist" message, throttling and busy codes as elsewhere).

``find_order`` answers None only on the supplier's word that there is no such
order (``rsp_code`` 404 or an "order not found/not exist" error); any other
odd answer raises, since None lets the executor place the order again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
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
    dumps,
    json_body,
    read_with_retries,
    supplier_busy,
)
from models.freight import FreightOption, cheapest
from models.orders import Address, Customer, SupplierLine

log = logging.getLogger(__name__)

PROVIDER = "ALIEXPRESS"
DEFAULT_BASE_URL = "https://api-sg.aliexpress.com"

M_PLACE = "aliexpress.trade.buy.placeorder"
M_GET = "aliexpress.trade.ds.order.get"
M_TRACK = "aliexpress.logistics.ds.trackinginfo.query"
M_CANCEL = "aliexpress.trade.ds.order.cancel"  # assumed, see the module docstring
M_PRODUCT = "aliexpress.ds.product.get"
M_FREIGHT = "aliexpress.ds.freight.query"

_THROTTLE_CODES = {"apicalllimit", "appcalllimit", "accesscontrollimit", "7", "ratelimit"}
_BUSY_CODES = {"serviceunavailable", "internalerror", "servicetimeout", "systemerror", "system_error", "15", "isp"}
# "no such order" only: a "not found" about anything else (an API path, an app)
# must not read as "the order does not exist" (the executor would place it again).
_NOT_FOUND = re.compile(r"order[\w .-]*?(not[ _-]?(found|exist)|does ?n[o']?t exist)", re.I)

_CARRIERS = {
    "CAINIAO": ("Cainiao", "https://global.cainiao.com/detail.htm?mailNoList={n}"),
    "YANWEN": ("Yanwen", "https://track.yw56.com.cn/en/querydel?nums={n}"),
    "4PX": ("4PX", "https://track.4px.com/#/result/0/{n}"),
    "USPS": ("USPS", "https://tools.usps.com/go/TrackConfirmAction?tLabels={n}"),
}


def sign_request(params: Mapping[str, str], app_secret: str, api_path: str | None = None) -> str:
    """The AliExpress ``sign`` of ``params`` (``sign`` itself excluded): sorted
    ``key+value`` concatenation (prefixed by the API path for ``/``-style system
    APIs), HMAC-SHA256 with the app secret, uppercase hex."""
    text = "".join(f"{key}{params[key]}" for key in sorted(params) if key != "sign")
    if api_path and api_path.startswith("/"):
        text = api_path + text
    return hmac.new(app_secret.encode(), text.encode(), hashlib.sha256).hexdigest().upper()


class AliExpressOrders:
    """``SupplierOrders`` and ``SupplierCatalog`` over the AliExpress dropshipping API."""

    provider = PROVIDER
    max_batch = 1

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        app_key: str,
        app_secret: str,
        access_token: str,
        timeout: httpx.Timeout | float | None = None,
        rate_per_s: float = 10.0,
        burst: float | None = None,
        breaker: CircuitBreaker | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        read_attempts: int = 3,
        logistics_service_name: str | None = None,
        ship_to_country: str = "US",
        currency: str = "USD",
        fetch_concurrency: int = DEFAULT_FETCH_CONCURRENCY,
    ) -> None:
        if not (app_key and app_secret and access_token):
            raise ValueError("AliExpress needs app_key, app_secret and access_token")
        self._app_key = app_key
        self._app_secret = app_secret
        self._access_token = access_token
        self.read_attempts = read_attempts
        self.logistics_service_name = logistics_service_name
        self.ship_to_country = ship_to_country
        self.currency = currency
        self.fetch_concurrency = fetch_concurrency
        self.http = SupplierHttp(
            PROVIDER,
            base_url,
            timeout=timeout,
            rate_per_s=rate_per_s,
            burst=burst,
            breaker=breaker,
            transport=transport,
            headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
        )
        self._country: dict[str, str] = {}  # order id -> destination, for the tracking query

    def __repr__(self) -> str:  # never the secrets
        return f"AliExpressOrders(base_url={self.http.base_url!r}, app_key={self._app_key!r})"

    # ----------------------------------------------------------------- calls

    def _signed(self, method: str, api_params: Mapping[str, Any]) -> dict[str, str]:
        params = {
            "method": method,
            "app_key": self._app_key,
            "access_token": self._access_token,
            "timestamp": str(int(time.time() * 1000)),
            "sign_method": "sha256",
        }
        for key, value in api_params.items():
            if value is not None:
                params[key] = value if isinstance(value, str) else dumps(value)
        params["sign"] = sign_request(params, self._app_secret)
        return params

    async def _call(self, method: str, api_params: Mapping[str, Any]) -> dict[str, Any]:
        """One signed call; the ``..._response`` object, or the port's error."""
        response = await self.http.request("POST", "/sync", data=self._signed(method, api_params))
        body = json_body(response)
        if not isinstance(body, dict):
            raise OutcomeUnknown("unexpected answer shape")
        error = body.get("error_response")
        if error is None and body.get("type") and str(body.get("code", "0")) != "0":
            error = body  # IOP style
        if isinstance(error, dict):
            raise _gateway_error(error)
        key = method.replace(".", "_") + "_response"
        inner = body.get(key, body)
        if not isinstance(inner, dict):
            raise OutcomeUnknown(f"unexpected answer shape for {method}")
        return inner

    # ------------------------------------------------------------------ port

    async def place_order(
        self, reference: str, lines: Sequence[SupplierLine], address: Address, customer: Customer
    ) -> PlacedOrder:
        request = {
            "out_order_id": reference,
            "logistics_address": _address(address, customer),
            "product_items": [self._item(line, reference) for line in lines],
        }
        inner = await self._call(M_PLACE, {"param_place_order_request4_open_api_d_t_o": request})
        result = inner.get("result")
        if not isinstance(result, dict):
            raise OutcomeUnknown("placeorder answer without a result")
        if not _truthy(result.get("is_success")):
            raise _business_error(result.get("error_code"), result.get("error_msg"))
        ids = _numbers(result.get("order_list"))
        if not ids:
            raise OutcomeUnknown("placeorder succeeded without an order id")
        order_id = ",".join(ids)
        self._country[ids[0]] = address.country_code
        return PlacedOrder(supplier_order_id=order_id, reference=reference, status="PLACE_ORDER_SUCCESS")

    async def find_order(self, reference: str) -> PlacedOrder | None:
        result = await read_with_retries(lambda: self._get({"out_order_id": reference}), attempts=self.read_attempts)
        if result is None:
            return None
        found_ref = result.get("out_order_id")
        if found_ref not in (None, "", reference):
            log.warning("aliexpress: lookup of a reference returned another order; treated as absent")
            return None
        order_id = result.get("order_id")
        if order_id in (None, ""):
            return None
        return PlacedOrder(str(order_id), reference, str(result.get("order_status") or "UNKNOWN"))

    async def get_tracking(self, order: PlacedOrder) -> TrackingInfo | None:
        order_id = order.supplier_order_id.split(",")[0]
        result = await read_with_retries(lambda: self._get({"order_id": order_id}), attempts=self.read_attempts)
        if result is None:
            return None
        infos = _logistics(result.get("logistics_info_list"))
        info = next((i for i in infos if i.get("logistics_no")), None)
        if info is None:
            return None
        number = str(info["logistics_no"])
        service = str(info.get("logistics_service") or "")
        carrier, url_pattern = _carrier(service, number)
        delivered = str(result.get("order_status") or "").upper() == "FINISH"
        url = url_pattern.format(n=number) if url_pattern else None
        to_area = self._country.get(order_id) or _country_of(result)
        params = {"logistics_no": number, "origin": "ESCROW", "out_ref": order_id, "service_name": service}
        if to_area:
            params["to_area"] = to_area
        try:
            detail = await self._call(M_TRACK, params)
        except SupplierError as err:  # the number is known; the events can wait
            log.info("aliexpress: tracking details unavailable: %s", err.reason)
        else:
            url = str(detail.get("official_website") or url or "") or None
            delivered = delivered or _delivered(detail)
        return TrackingInfo(number=number, carrier=carrier, url=url, delivered=delivered)

    async def cancel_order(self, order: PlacedOrder) -> bool:
        cancelled = True
        for order_id in order.supplier_order_id.split(","):
            try:
                inner = await self._call(M_CANCEL, {"order_id": order_id})
            except BusinessRejected as err:
                log.info("aliexpress: cancel refused: %s", err.reason)
                cancelled = False
                continue
            result = inner.get("result")
            if isinstance(result, dict) and not _truthy(result.get("is_success", True)):
                cancelled = False
        return cancelled

    async def aclose(self) -> None:
        await self.http.aclose()

    # --------------------------------------------------------------- catalog

    async def fetch_products(self, source_ids: Sequence[str], country: str | None = None) -> list[SupplierProduct]:
        destination = country or self.ship_to_country  # prices and stock are per destination

        async def fetch_batch(ids: list[str]) -> list[SupplierProduct]:
            products: list[SupplierProduct] = []
            for source_id in ids:
                products += await read_with_retries(
                    lambda: self._product(source_id, destination), attempts=self.read_attempts
                )
            return products

        return await fetch_batched(source_ids, self.max_batch, fetch_batch, concurrency=self.fetch_concurrency)

    async def _product(self, source_id: str, country: str) -> list[SupplierProduct]:
        params = {
            "product_id": source_id,
            "ship_to_country": country,
            "target_currency": self.currency,
            "target_language": "en",
        }
        try:
            inner = await self._call(M_PRODUCT, params)
        except Rejected as err:
            if PRODUCT_GONE.search(err.reason):
                return [SupplierProduct.gone(source_id, self.currency)]
            raise
        result = inner.get("result")
        if not isinstance(result, dict):
            rsp_msg = str(inner.get("rsp_msg") or "")
            if PRODUCT_GONE.search(rsp_msg):
                return [SupplierProduct.gone(source_id, self.currency)]
            raise supplier_busy(f"product get answered without a result ({inner.get('rsp_code')}: {rsp_msg})")
        return _products_of(source_id, result, self.currency)

    # --------------------------------------------------------------- freight

    async def quote_freight(self, source_id: str, ref: str | None, country: str) -> FreightOption | None:
        return await read_with_retries(lambda: self._freight(source_id, ref, country), attempts=self.read_attempts)

    async def _freight(self, source_id: str, ref: str | None, country: str) -> FreightOption | None:
        request: dict[str, Any] = {
            "productId": source_id,
            "quantity": 1,
            "shipToCountry": country,
            "currency": self.currency,
            "language": "en_US",
            "locale": "en_US",
        }
        if ref:
            request["selectedSkuId"] = ref
        inner = await self._call(M_FREIGHT, {"queryDeliveryReq": request})
        result = inner.get("result")
        if not isinstance(result, dict):
            raise supplier_busy(f"freight query answered without a result ({inner.get('rsp_code')})")
        if result.get("success") is not None and not _truthy(result.get("success")):
            raise _business_error(result.get("code"), result.get("msg") or result.get("message"))
        raw = _logistics(result.get("delivery_options"))  # the same {"wrapper": [...]} shape
        options = [o for o in (_freight_option(r, self.currency) for r in raw) if o is not None]
        if raw and not options:
            raise OutcomeUnknown("freight query: no readable delivery option")
        best = cheapest(options, self.currency)
        if best is None and options:
            raise OutcomeUnknown(f"freight query: options only in {sorted({o.currency for o in options})}")
        return best

    # ---------------------------------------------------------------- helpers

    async def _get(self, query: dict[str, str]) -> dict[str, Any] | None:
        try:
            inner = await self._call(M_GET, {"single_order_query": query})
        except BusinessRejected as err:
            if _NOT_FOUND.search(err.reason):
                return None
            raise
        result = inner.get("result")
        if isinstance(result, dict) and result:
            return result
        # No order: only on the supplier's word that there is none.
        rsp_code, rsp_msg = str(inner.get("rsp_code") or ""), str(inner.get("rsp_msg") or "")
        if rsp_code == "404" or _NOT_FOUND.search(rsp_msg):
            return None
        raise supplier_busy(f"order query answered without a result ({rsp_code}: {rsp_msg})")

    def _item(self, line: SupplierLine, reference: str) -> dict[str, Any]:
        item: dict[str, Any] = {"product_id": line.source_id, "product_count": line.quantity}
        if line.source_variant_id:
            item["sku_attr"] = line.source_variant_id
        if self.logistics_service_name:
            item["logistics_service_name"] = self.logistics_service_name
        item["order_memo"] = f"ref {reference}"
        return item


# --------------------------------------------------------------------------- #


def _address(address: Address, customer: Customer) -> dict[str, str]:
    fields = {
        "contact_person": address.name,
        "full_name": address.name,
        "address": address.line1,
        "address2": address.line2,
        "city": address.city,
        "province": address.province,
        "zip": address.postal_code,
        "country": address.country_code,
        "mobile_no": address.phone or customer.phone,
        "locale": "en_US",
    }
    return {k: v for k, v in fields.items() if v}


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _numbers(order_list: Any) -> list[str]:
    if isinstance(order_list, dict):  # TOP's {"number": [...]} wrapping
        order_list = next(iter(order_list.values()), None)
    if isinstance(order_list, (list, tuple)):
        return [str(n) for n in order_list if n not in (None, "")]
    if order_list not in (None, ""):
        return [str(order_list)]
    return []


def _logistics(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        value = next(iter(value.values()), None)
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _country_of(result: Mapping[str, Any]) -> str | None:
    address = result.get("receipt_address") or result.get("logistics_address")
    if isinstance(address, dict):
        country = address.get("country")
        return str(country) if country else None
    return None


def _carrier(service: str, number: str) -> tuple[str | None, str | None]:
    upper = service.upper()
    for key, (name, url) in _CARRIERS.items():
        if key in upper:
            return name, url
    if number.startswith("LP"):
        return _CARRIERS["CAINIAO"]
    if number.startswith("YT"):
        return _CARRIERS["YANWEN"]
    return (service or None), None


def _delivered(detail: Mapping[str, Any]) -> bool:
    events = detail.get("details")
    if isinstance(events, dict):
        events = next(iter(events.values()), None)
    if not isinstance(events, list):
        return False
    for event in events:
        if isinstance(event, dict) and str(event.get("status", "")).upper() in ("DELIVERED", "SIGNIN", "SIGNED"):
            return True
    return False


def _products_of(source_id: str, result: Mapping[str, Any], currency: str) -> list[SupplierProduct]:
    base = result.get("ae_item_base_info_dto")
    base = base if isinstance(base, dict) else {}
    title = text_or_none(base.get("subject"))
    status = str(base.get("product_status_type") or "onSelling")
    skus = _logistics(result.get("ae_item_sku_info_dtos"))  # same {"wrapper": [...]} shape
    if status.lower() != "onselling" or not skus:
        return [SupplierProduct.gone(source_id, currency, title)]
    media = result.get("ae_multimedia_info_dto")
    images = image_list(media.get("image_urls")) if isinstance(media, dict) else ()
    products = []
    for sku in skus:
        price = sku.get("offer_sale_price")
        if price in (None, ""):
            price = sku.get("sku_price")
        variant = sku.get("sku_attr") or sku.get("id") or sku.get("sku_id")
        products.append(
            SupplierProduct(
                source_id=source_id,
                source_variant_id=str(variant) if variant not in (None, "") else None,
                available=True,
                stock=stock(sku.get("sku_available_stock", 0), "sku_available_stock"),
                cost_price=money(price, "offer_sale_price"),
                shipping_cost=Decimal("0"),
                currency=str(sku.get("currency_code") or base.get("currency_code") or currency).upper(),
                title=title,
                images=images,
                freight_ref=text_or_none(sku.get("sku_id"), 100),
            )
        )
    return products


def _freight_option(raw: Mapping[str, Any], currency: str) -> FreightOption | None:
    """One ``delivery_option_d_t_o`` as a ``FreightOption``; None when its fee cannot be read."""
    service = str(raw.get("code") or raw.get("company") or raw.get("service_name") or "?")[:200]
    fee_currency = str(raw.get("shipping_fee_currency") or "").upper()
    try:
        if _truthy(raw.get("free_shipping")):
            amount = Decimal("0")
        elif raw.get("shipping_fee_cent") not in (None, ""):
            amount = money(raw.get("shipping_fee_cent"), "shipping_fee_cent")
        elif isinstance(raw.get("freight"), dict) and raw["freight"].get("amount") not in (None, ""):
            amount = money(raw["freight"]["amount"], "freight.amount")
            fee_currency = str(raw["freight"].get("currency_code") or fee_currency).upper()
        else:
            return None
        return FreightOption(service, amount, fee_currency or currency)
    except (OutcomeUnknown, ValueError):
        log.info("aliexpress: freight option %s with an unreadable fee skipped", clean_reason(service, 60))
        return None


def _retry_after_of(message: str) -> float | None:
    match = re.search(r"(\d+(?:\.\d+)?)\s*(?:more\s*)?seconds?", message)
    return float(match.group(1)) if match else None


def _gateway_error(error: Mapping[str, Any]) -> SupplierError:
    code = str(error.get("code") or "")
    sub_code = str(error.get("sub_code") or "")
    kind = str(error.get("type") or "").upper()
    msg = str(error.get("msg") or error.get("message") or error.get("sub_msg") or "")
    text = clean_reason(f"{code or kind}{'/' + sub_code if sub_code else ''}: {msg}")
    low_code, low_sub = code.lower(), sub_code.lower()
    if low_code in _THROTTLE_CODES or "calllimit" in low_code or low_sub.startswith("accesscontrol"):
        return RateLimited(text, _retry_after_of(msg))
    if kind in ("ISP", "SYSTEM") or low_code in _BUSY_CODES or low_sub.startswith("isp."):
        return supplier_busy(text)
    if _NOT_FOUND.search(msg) or _NOT_FOUND.search(sub_code) or _NOT_FOUND.search(code):
        return BusinessRejected(text)
    return Rejected(text)  # signature, app key, session, permission: not a business refusal


def _business_error(code: Any, msg: Any) -> SupplierError:
    code_s = str(code or "UNKNOWN")
    text = clean_reason(f"{code_s}: {msg or ''}")
    low = code_s.lower()
    if "limit" in low and ("call" in low or "rate" in low or "frequen" in low):
        return RateLimited(text)
    if low in _BUSY_CODES or "system" in low or "busy" in low or "timeout" in low:
        return supplier_busy(text)
    return BusinessRejected(text)
