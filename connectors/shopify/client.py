"""A client of Shopify's GraphQL Admin API for one shop.

``POST {admin_url}/admin/api/{version}/graphql.json`` with the shop's
``X-Shopify-Access-Token``; one ``httpx.AsyncClient`` per shop (per client
object), explicit timeouts, no redirects.

Rate limit: the cost-based leaky bucket of ``throttle.py``. A request waits
until the bucket holds its estimated cost; each answer's
``extensions.cost.throttleStatus`` corrects the bucket. An answer THROTTLED
(``errors[].extensions.code``) did nothing: the client waits until the bucket
has refilled enough for the request's ``requestedQueryCost`` and sends it
again (``max_throttled`` times at most).

Failures, after the rule of connectors/suppliers/http.py (its
``classify_exception`` / ``classify_response`` give the error):

* 5xx, 429, timeouts and transport errors are retried with full-jitter
  exponential backoff (Retry-After honoured) when the call is marked
  ``retry=True``: reads, and writes that carry an idempotency key or set an
  absolute value. A write that is neither (``fulfillmentCreate``) is sent once;
  its caller looks before it tries again. What remains is raised:
  ``OutcomeUnknown`` (the shop may have acted) or ``Unavailable`` (it did not).
* other 4xx (bad token, unknown shop, ...) and GraphQL ``errors`` other than
  THROTTLED: :class:`ShopifyRejected`, not retried; for GraphQL ``errors`` its
  subclass :class:`DocumentRejected` (the shop refused this document, a value
  it cannot take, say: nothing of it ran; another document may pass).
* a mutation's ``userErrors``: :class:`UserErrors` (typed: field, message,
  code), raised by :func:`check_user_errors` for the caller that wants it.

The access token never appears in a log line or an error.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.shopify import metrics
from connectors.shopify.throttle import CostBucket
from connectors.storefront.base import ACCOUNT_STATUSES, AccountRefused
from connectors.suppliers.base import OutcomeUnknown, RateLimited, Rejected, SupplierError
from connectors.suppliers.http import classify_exception, classify_response, clean_reason

log = logging.getLogger(__name__)

DEFAULT_API_VERSION = "2025-07"
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=10.0, pool=10.0)
THROTTLED = "THROTTLED"


class ShopifyRejected(Rejected):
    """The shop refused the request (4xx, or GraphQL errors): it did nothing."""


class ShopifyAccountRefused(ShopifyRejected, AccountRefused):
    """HTTP 401/403: the shop refused the app's token itself (wrong, revoked, the app
    uninstalled); no request of this shop can pass until a person fixes it."""


class DocumentRejected(ShopifyRejected):
    """The shop answered the request with GraphQL ``errors`` (not THROTTLED): it refused the
    document as a whole (a variable it cannot coerce, a cost beyond its bucket) and ran nothing of it."""


@dataclass(frozen=True)
class UserError:
    field: tuple[str, ...]
    message: str
    code: str | None = None


class UserErrors(Rejected):
    """A mutation answered with ``userErrors`` (typed)."""

    def __init__(self, operation: str, errors: Sequence[UserError]) -> None:
        self.operation = operation
        self.errors = tuple(errors)
        text = "; ".join(f"{e.code or '-'} {'.'.join(e.field)}: {e.message}" for e in self.errors[:5])
        super().__init__(clean_reason(f"{operation}: {text}"))

    @property
    def codes(self) -> set[str]:
        return {e.code for e in self.errors if e.code}


def user_errors_of(payload: Mapping[str, Any] | None) -> list[UserError]:
    """The ``userErrors`` of one mutation's payload."""
    out = []
    for raw in (payload or {}).get("userErrors") or []:
        out.append(UserError(
            field=tuple(str(f) for f in raw.get("field") or ()),
            message=str(raw.get("message") or ""),
            code=raw.get("code"),
        ))
    return out


def check_user_errors(operation: str, payload: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The payload, or :class:`UserErrors` when it has any."""
    errors = user_errors_of(payload)
    if errors:
        raise UserErrors(operation, errors)
    return payload or {}


def gid(kind: str, value: str | int) -> str:
    """A Shopify global id (``gid://shopify/Kind/123``); a gid is kept as it is."""
    text = str(value)
    return text if text.startswith("gid://") else f"gid://shopify/{kind}/{text}"


class ShopifyClient:
    """The GraphQL Admin API of one shop."""

    def __init__(
        self,
        shop_domain: str,
        access_token: str,
        *,
        api_version: str = DEFAULT_API_VERSION,
        admin_url: str | None = None,
        timeout: httpx.Timeout | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        attempts: int = 5,
        base_delay: float = 0.2,
        max_delay: float = 10.0,
        max_throttled: int = 50,
        bucket: CostBucket | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.shop_domain = shop_domain
        self.api_version = api_version
        self.bucket = bucket or CostBucket()
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_throttled = max_throttled
        self.rng = rng or random.Random()
        self.path = f"/admin/api/{api_version}/graphql.json"
        self.client = httpx.AsyncClient(
            base_url=(admin_url or f"https://{shop_domain}").rstrip("/"),
            timeout=timeout or DEFAULT_TIMEOUT,
            headers={
                "X-Shopify-Access-Token": access_token,
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": "ops-engine/0.1",
            },
            follow_redirects=False,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    def _backoff(self, attempt: int) -> float:
        return self.rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))

    async def execute(
        self,
        operation: str,
        query: str,
        variables: Mapping[str, Any] | None = None,
        *,
        cost: float = 10.0,
        retry: bool = True,
    ) -> dict[str, Any]:
        """Run one GraphQL document (``operation`` is its operation name); its ``data``.

        ``cost``: the request's estimated cost (the shop's ``requestedQueryCost``
        replaces it after a THROTTLED answer). ``retry``: may it be sent again after
        a 5xx or a timeout (see the module docstring)."""
        body = {"query": query, "variables": dict(variables or {}), "operationName": operation}
        failures = throttled = 0
        while True:
            waited = await self.bucket.acquire(cost)
            metrics.THROTTLE_WAIT_SECONDS.observe(waited)
            started = time.perf_counter()
            try:
                response = await self.client.post(self.path, json=body)
            except httpx.HTTPError as exc:
                err: SupplierError = classify_exception(exc)
                metrics.REQUESTS.labels(operation, "TRANSPORT_ERROR").inc()
                failures += 1
                if not retry or failures >= self.attempts:
                    raise err from exc
                log.info("shopify %s %s: %s; retrying", self.shop_domain, operation, err.reason)
                await asyncio.sleep(self._backoff(failures))
                continue
            finally:
                metrics.REQUEST_SECONDS.observe(time.perf_counter() - started)
            status_error = classify_response(response)
            if status_error is not None:
                if isinstance(status_error, (RateLimited, OutcomeUnknown)):
                    metrics.REQUESTS.labels(operation, "SERVER_ERROR").inc()
                    failures += 1
                    if not retry or failures >= self.attempts:
                        raise status_error
                    pause = self._backoff(failures)
                    if isinstance(status_error, RateLimited) and status_error.retry_after is not None:
                        pause = max(pause, min(status_error.retry_after, self.max_delay))
                    await asyncio.sleep(pause)
                    continue
                metrics.REQUESTS.labels(operation, "REJECTED").inc()
                if getattr(status_error, "http_status", None) in ACCOUNT_STATUSES:
                    raise ShopifyAccountRefused(f"{self.shop_domain} {operation}: {status_error.reason}")
                raise ShopifyRejected(f"{operation}: {status_error.reason}")
            try:
                answer = response.json()
            except ValueError:
                metrics.REQUESTS.labels(operation, "SERVER_ERROR").inc()
                raise OutcomeUnknown(f"{operation}: unreadable answer (not JSON)") from None
            cost_info = ((answer.get("extensions") or {}).get("cost")) or {}
            if cost_info.get("throttleStatus"):
                self.bucket.update(cost_info["throttleStatus"])
            errors = answer.get("errors") or []
            if errors:
                codes = {((e or {}).get("extensions") or {}).get("code") for e in errors}
                if THROTTLED in codes:
                    metrics.REQUESTS.labels(operation, "THROTTLED").inc()
                    throttled += 1
                    if throttled > self.max_throttled:
                        raise OutcomeUnknown(f"{operation}: still throttled after {throttled - 1} waits")
                    cost = float(cost_info.get("requestedQueryCost") or cost)
                    await asyncio.sleep(self.bucket.delay(cost))
                    continue
                metrics.REQUESTS.labels(operation, "REJECTED").inc()
                text = "; ".join(str((e or {}).get("message")) for e in errors[:3])
                raise DocumentRejected(clean_reason(f"{operation}: {text}"))
            metrics.REQUESTS.labels(operation, "OK").inc()
            return dict(answer.get("data") or {})
