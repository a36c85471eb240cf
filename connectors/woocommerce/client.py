"""A WooCommerce REST API (v3) client for one site, over httpx.

Built on the supplier adapters' plumbing (connectors/suppliers/http.py): one
``httpx.AsyncClient`` per site with explicit timeouts, a token bucket
(``rate_per_s`` of the account), a circuit breaker, and the same error types
(``Rejected`` for a 4xx, ``RateLimited`` for a 429, ``OutcomeUnknown`` for a
5xx or a lost answer, ``Unavailable`` when the request never left).

Authentication (connectors/woocommerce/settings.py): HTTP Basic with the
consumer key and secret, or both in the query string; https only. With query
auth the ``consumer_secret`` would show in httpx's request log line, so a log
filter on the ``httpx`` logger masks it.

Retries: the batch updates set absolute values and the status update sets a
status, so repeating them is harmless: they are retried on 429 and 5xx
(``read_with_retries``, jittered backoff, Retry-After honoured). Adding a note
is not idempotent at WooCommerce, so :meth:`add_order_note` makes one attempt;
the adapter makes it idempotent by listing the notes first. The same for
creating a webhook (:meth:`create_webhook`: one attempt; the registration
lists the site's webhooks first), while :meth:`update_webhook` sets values and
is retried.

Collections (the orders the reconciliation pulls, the webhooks) are read a
page at a time (:meth:`page`, retried), with the ``X-WP-Total`` and
``X-WP-TotalPages`` counts WordPress sends along.

Batch answers carry an outcome per item: ``{"update": [{...the product...} |
{"id": 7, "error": {"code", "message", "data": {"status"}}}]}``; they are
returned as they are (:func:`item_error` reads one).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.suppliers.base import Rejected
from connectors.suppliers.http import SupplierHttp, json_body, read_with_retries
from connectors.woocommerce.settings import WooCommerceAccount

log = logging.getLogger(__name__)

#: WooCommerce refuses a batch of more than 100 objects (``woocommerce_rest_batch_items_limit``).
BATCH_LIMIT = 100
#: The most items WordPress returns in one page of a collection (``per_page`` is 1..100).
PER_PAGE = 100
_SECRET_IN_URL = re.compile(r"(consumer_secret=)[^&\s\"']+")


class _MaskQuerySecret(logging.Filter):
    """httpx logs each request's URL at INFO: mask a ``consumer_secret`` in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any("consumer_secret=" in str(a) for a in record.args):
            record.args = tuple(
                _SECRET_IN_URL.sub(r"\1***", str(a)) if "consumer_secret=" in str(a) else a for a in record.args
            )
        if isinstance(record.msg, str) and "consumer_secret=" in record.msg:
            record.msg = _SECRET_IN_URL.sub(r"\1***", record.msg)
        return True


def _mask_query_secrets() -> None:
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _MaskQuerySecret) for f in logger.filters):
            logger.addFilter(_MaskQuerySecret())


@dataclass(frozen=True)
class Page:
    """One page of a collection and WordPress's counts of the whole collection."""

    items: list[dict[str, Any]]
    total: int | None
    total_pages: int | None


def _count(value: str | None) -> int | None:
    try:
        return max(0, int(value)) if value is not None else None
    except ValueError:
        return None


def item_error(item: Mapping[str, Any]) -> str | None:
    """The error of one item of a batch answer, or None when it was applied."""
    error = item.get("error")
    if not error:
        return None
    if isinstance(error, Mapping):
        return f"{error.get('code') or 'error'}: {error.get('message') or ''}".strip()
    return str(error)


class WooCommerceClient:
    """The REST calls the storefront push needs, for one site."""

    def __init__(
        self,
        account: WooCommerceAccount,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        attempts: int = 3,
        base_delay: float = 0.2,
    ) -> None:
        self.account = account
        self.attempts = attempts
        self.base_delay = base_delay
        key = account.consumer_key.get_secret_value()
        secret = account.consumer_secret.get_secret_value()
        self.http = SupplierHttp(
            f"WOOCOMMERCE {account.site}",
            account.api_url,
            timeout=httpx.Timeout(connect=5.0, read=account.timeout_s, write=10.0, pool=5.0),
            rate_per_s=account.rate_per_s,
            transport=transport,
            max_connections=8,
        )
        self._params: dict[str, str] = {}
        if account.auth == "basic":
            self.http.client.auth = httpx.BasicAuth(key, secret)
        else:
            _mask_query_secrets()
            self._params = {"consumer_key": key, "consumer_secret": secret}

    async def _answer(
        self, method: str, path: str, json: Any = None, params: Mapping[str, Any] | None = None
    ) -> tuple[Any, httpx.Headers]:
        response = await self.http.request(method, path, json=json, params={**(params or {}), **self._params})
        return json_body(response), response.headers

    async def _call(self, method: str, path: str, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        return (await self._answer(method, path, json=json, params=params))[0]

    async def _retried(self, method: str, path: str, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        return await read_with_retries(
            lambda: self._call(method, path, json=json, params=params),
            attempts=self.attempts, base_delay=self.base_delay,
        )

    async def page(self, path: str, params: Mapping[str, Any]) -> Page:
        """One page of a collection (``GET``, retried): its items and the
        ``X-WP-Total`` / ``X-WP-TotalPages`` WordPress sends with it (None when absent)."""
        body, headers = await read_with_retries(
            lambda: self._answer("GET", path, params=params), attempts=self.attempts, base_delay=self.base_delay,
        )
        if not isinstance(body, list):
            raise Rejected(f"GET {path} of {self.account.site} answered no list")
        return Page([i for i in body if isinstance(i, dict)], _count(headers.get("X-WP-Total")),
                    _count(headers.get("X-WP-TotalPages")))

    # -- products -------------------------------------------------------------------
    async def _batch_update(self, path: str, updates: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for start in range(0, len(updates), BATCH_LIMIT):
            chunk = [dict(u) for u in updates[start : start + BATCH_LIMIT]]
            answer = await self._retried("POST", path, json={"update": chunk})
            items = answer.get("update") if isinstance(answer, Mapping) else None
            if not isinstance(items, list):
                raise Rejected(f"batch answer without an update list from {self.account.site}")
            results.extend(i if isinstance(i, dict) else {"error": str(i)} for i in items)
        return results

    async def update_products(self, updates: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``POST /products/batch`` ``{"update": [{"id": 93, ...}]}``, 100 at a time; one answer per item."""
        return await self._batch_update("/products/batch", updates)

    async def update_variations(self, product_id: str | int, updates: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``POST /products/{id}/variations/batch``, 100 at a time; one answer per item."""
        return await self._batch_update(f"/products/{int(product_id)}/variations/batch", updates)

    # -- orders ---------------------------------------------------------------------
    async def order(self, order_id: str | int) -> dict[str, Any]:
        return dict(await self._retried("GET", f"/orders/{int(order_id)}"))

    async def order_notes(self, order_id: str | int) -> list[dict[str, Any]]:
        """Every note of the order (private and customer ones)."""
        notes = await self._retried("GET", f"/orders/{int(order_id)}/notes", params={"type": "any"})
        return [n for n in notes if isinstance(n, dict)] if isinstance(notes, list) else []

    async def add_order_note(self, order_id: str | int, note: str, customer_note: bool) -> dict[str, Any]:
        """``POST /orders/{id}/notes``: one attempt (a repeat would add a second note)."""
        return dict(await self._call("POST", f"/orders/{int(order_id)}/notes",
                                     json={"note": note, "customer_note": customer_note}))

    async def set_order_status(self, order_id: str | int, status: str) -> dict[str, Any]:
        return dict(await self._retried("PUT", f"/orders/{int(order_id)}", json={"status": status}))

    # -- webhooks -------------------------------------------------------------------
    async def webhooks(self) -> list[dict[str, Any]]:
        """Every webhook of the site, whatever its status, with its secret (``context=edit``)."""
        found: list[dict[str, Any]] = []
        number = 1
        while True:
            page = await self.page("/webhooks", {"per_page": PER_PAGE, "page": number, "context": "edit"})
            found.extend(page.items)
            if len(page.items) < PER_PAGE or (page.total_pages is not None and number >= page.total_pages):
                return found
            number += 1

    async def create_webhook(self, webhook: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /webhooks``: one attempt (a repeat would create a second webhook)."""
        return dict(await self._call("POST", "/webhooks", json=dict(webhook)))

    async def update_webhook(self, webhook_id: int, fields: Mapping[str, Any]) -> dict[str, Any]:
        """``PUT /webhooks/{id}``: sets values, so it is retried."""
        return dict(await self._retried("PUT", f"/webhooks/{int(webhook_id)}", json=dict(fields)))

    async def aclose(self) -> None:
        await self.http.aclose()
