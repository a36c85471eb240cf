"""Shared httpx plumbing of the supplier adapters.

One ``SupplierHttp`` per supplier account: its own ``httpx.AsyncClient`` with
explicit timeouts, a token bucket (the supplier's request rate) and a circuit
breaker. ``classify_exception`` / ``classify_response`` turn an httpx outcome
into the port's errors (``base.py``), and the rule they follow is the one the
executor's exactly-once depends on:

* the request certainly never reached the supplier (connection refused, DNS,
  connect timeout, circuit open)                      -> ``Unavailable``
* it may have reached it and we have no answer (read/write/pool timeout,
  connection reset or protocol error after sending, any 5xx) -> ``OutcomeUnknown``
* HTTP 429                                             -> ``RateLimited`` (Retry-After)
* any other 4xx                                        -> ``Rejected`` (supplier's message)

Nothing here retries a write: ``request`` makes exactly one attempt; a blind
retry of an order create could place it twice (the executor looks the order
up first). ``read_with_retries`` retries *reads* only, on 429/5xx, a few times.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import httpx

from connectors.suppliers.aiohttp_transport import AiohttpTransport

from connectors.suppliers.base import OutcomeUnknown, RateLimited, Rejected, SupplierError, Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Default timeouts of a supplier call, s. Read is long: an order create at a
#: supplier can take a while, and a read timeout there is an OutcomeUnknown.
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=10.0, pool=5.0)

_MAX_REASON = 300


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #


class BusinessRejected(Rejected):
    """The supplier answered and refused on business grounds (a 200 carrying an
    error, or a 409/422): bad address, out of stock, already shipped. Still a
    ``Rejected``; ``cancel_order`` turns it into ``False``."""


def clean_reason(text: object, limit: int = _MAX_REASON) -> str:
    """A supplier message fit for a log line: no CR/LF (CWE-117), bounded."""
    value = re.sub(r"[\r\n\t\x00-\x1f\x7f]+", " ", str(text)).strip()
    return value[:limit] + ("..." if len(value) > limit else "")


def _tag(err: SupplierError, *, status: int | None = None, transport: bool = False) -> SupplierError:
    # http_status: the HTTP status behind the error (None: no response);
    # transport_failure: counts against the circuit breaker.
    err.http_status = status  # type: ignore[attr-defined]
    err.transport_failure = transport  # type: ignore[attr-defined]
    return err


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None when absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
        return None
    return max(0.0, seconds)


def response_message(response: httpx.Response) -> str:
    """The supplier's own error message from a response body, best effort."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        text = response.text if response.content else ""
        return clean_reason(text or response.reason_phrase or f"HTTP {response.status_code}")
    return clean_reason(_message_of(body) or response.reason_phrase or f"HTTP {response.status_code}")


def _message_of(body: Any) -> str | None:
    if isinstance(body, Mapping):
        for key in ("message", "msg", "error_description", "sub_msg", "error_msg", "detail", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, Mapping):
                inner = _message_of(value)
                if inner:
                    return inner
        nested = body.get("error_response")
        if isinstance(nested, Mapping):
            return _message_of(nested)
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(str(_message_of(e) or e) for e in errors[:3])
    return None


def classify_exception(exc: BaseException) -> SupplierError:
    """An httpx exception as the port's error (see the module docstring)."""
    if isinstance(exc, SupplierError):
        return exc
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout):
        # No connection, so nothing was sent.
        return _tag(Unavailable(f"connect timeout: {clean_reason(exc) or name}"), transport=True)
    if isinstance(exc, httpx.TimeoutException):
        # Read/Write/Pool timeout. Pool: nothing was sent either, but it is kept
        # OutcomeUnknown on purpose (conservative: it only costs a lookup).
        return _tag(OutcomeUnknown(f"{name}: no answer in time"), transport=True)
    if isinstance(exc, httpx.ConnectError):
        return _tag(Unavailable(f"cannot connect: {clean_reason(exc) or name}"), transport=True)
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.ProxyError)):
        return _tag(Unavailable(f"{name}: {clean_reason(exc)}"), transport=True)
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        # Reset / closed / garbled after (part of) the request went out.
        return _tag(OutcomeUnknown(f"{name}: {clean_reason(exc) or 'connection lost'}"), transport=True)
    if isinstance(exc, httpx.HTTPError):
        return _tag(OutcomeUnknown(f"{name}: {clean_reason(exc)}"), transport=True)
    if isinstance(exc, OSError):
        return _tag(OutcomeUnknown(f"{name}: {clean_reason(exc)}"), transport=True)
    raise TypeError(f"not an HTTP outcome: {exc!r}")


def classify_response(response: httpx.Response, message: str | None = None) -> SupplierError | None:
    """None for a 2xx/3xx; otherwise the port's error for the status."""
    status = response.status_code
    if status < 400:
        return None
    reason = clean_reason(message) if message else response_message(response)
    text = f"HTTP {status}: {reason}"
    if status == 429:
        return _tag(RateLimited(text, parse_retry_after(response.headers.get("Retry-After"))), status=status)
    if status >= 500:
        return _tag(OutcomeUnknown(text), status=status, transport=True)
    if status == 408:
        # The server gave up waiting for our request: it did not act.
        return _tag(Unavailable(text), status=status)
    if status in (409, 422):
        return _tag(BusinessRejected(text), status=status)
    return _tag(Rejected(text), status=status)


def classify(outcome: httpx.Response | BaseException) -> SupplierError | None:
    """``classify_response`` or ``classify_exception``, whichever applies."""
    if isinstance(outcome, httpx.Response):
        return classify_response(outcome)
    return classify_exception(outcome)


def is_server_error(err: SupplierError) -> bool:
    """A 5xx, or the supplier's own "system busy" answer in a 200 (``busy``)."""
    status = getattr(err, "http_status", None) or 0
    return isinstance(err, OutcomeUnknown) and (status >= 500 or bool(getattr(err, "busy", False)))


def supplier_busy(reason: str) -> OutcomeUnknown:
    """A "system busy"/internal error answered in a 200 body: the supplier may
    have acted (for a create); a read may be retried."""
    err = OutcomeUnknown(clean_reason(reason))
    _tag(err)
    err.busy = True  # type: ignore[attr-defined]
    return err


# --------------------------------------------------------------------------- #
# Rate limiting, circuit breaking
# --------------------------------------------------------------------------- #


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``burst`` saved up.

    ``acquire`` waits for a token; waiters are served in order (the lock is held
    while sleeping). One bucket per supplier account, shared by all its calls.
    """

    def __init__(
        self, rate_per_s: float, burst: float | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be > 0")
        self.rate = float(rate_per_s)
        self.burst = float(burst if burst is not None else max(1.0, rate_per_s))
        if self.burst < 1:
            raise ValueError("burst must be >= 1")
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()
        self._lock: asyncio.Lock | None = None

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    def try_acquire(self, tokens: float = 1.0) -> bool:
        self._refill()
        if self._tokens >= tokens:
            self._tokens -= tokens
            return True
        return False

    def delay(self, tokens: float = 1.0) -> float:
        """Seconds until ``tokens`` are available (0 when they are now)."""
        self._refill()
        return max(0.0, (tokens - self._tokens) / self.rate)

    async def acquire(self, tokens: float = 1.0) -> None:
        if tokens > self.burst:
            raise ValueError("cannot acquire more tokens than the burst")
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            while not self.try_acquire(tokens):
                await asyncio.sleep(self.delay(tokens))


class CircuitBreaker:
    """Open after ``failure_threshold`` consecutive transport failures (connect
    errors, timeouts, resets, 5xx); while open, calls fail with ``Unavailable``
    without being made. After ``cooldown_s`` one trial call goes through
    (half-open): its success closes the breaker, its failure re-opens it."""

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"

    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        self.name = name
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self.failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return self.CLOSED
        if self._clock() - self._opened_at >= self.cooldown_s:
            return self.HALF_OPEN
        return self.OPEN

    def before_call(self) -> None:
        """Raise ``Unavailable`` when the call must not be made."""
        state = self.state
        if state == self.CLOSED:
            return
        if state == self.HALF_OPEN and not self._probing:
            self._probing = True
            return
        assert self._opened_at is not None
        left = max(0.0, self.cooldown_s - (self._clock() - self._opened_at))
        raise _tag(Unavailable(f"circuit open for {self.name} ({self.failures} failures; retry in {left:.1f}s)"))

    def record_success(self) -> None:
        if self._opened_at is not None:
            log.info("supplier %s: circuit closed", self.name)
        self.failures = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        self.failures += 1
        if self._probing or self.failures >= self.failure_threshold:
            if self._opened_at is None or self._probing:
                log.warning("supplier %s: circuit open after %d failures", self.name, self.failures)
            self._opened_at = self._clock()
        self._probing = False

    def release(self) -> None:
        """The call ended neither in success nor in a transport failure (e.g. a 4xx)."""
        if self._probing:
            self.record_success()


# --------------------------------------------------------------------------- #
# The per-account client
# --------------------------------------------------------------------------- #


def make_timeout(timeout: httpx.Timeout | float | None) -> httpx.Timeout:
    if timeout is None:
        return DEFAULT_TIMEOUT
    if isinstance(timeout, httpx.Timeout):
        return timeout
    return httpx.Timeout(float(timeout))


class SupplierHttp:
    """An ``httpx.AsyncClient`` for one supplier account, behind its rate
    limiter and circuit breaker. ``request`` makes exactly one attempt."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        timeout: httpx.Timeout | float | None = None,
        rate_per_s: float = 5.0,
        burst: float | None = None,
        headers: Mapping[str, str] | None = None,
        breaker: CircuitBreaker | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 32,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.bucket = TokenBucket(rate_per_s, burst)
        self.breaker = breaker or CircuitBreaker(provider)
        self.client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=make_timeout(timeout),
            headers={"Accept": "application/json", "User-Agent": "ops-engine/0.1", **(headers or {})},
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
            # aiohttp carries the bytes (aiohttp_transport.py: a fraction of httpcore's CPU).
            transport=transport or AiohttpTransport(max_connections),
        )

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call. Raises the port's error for a transport failure or a
        non-2xx status; returns the 2xx response (its body may still carry a
        business error, which the adapter reads)."""
        self.breaker.before_call()
        try:
            await self.bucket.acquire()
            response = await self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            err = classify_exception(exc)
            self._record(err)
            log.info("supplier %s %s %s: %s", self.provider, method, path, err.reason)
            raise err from exc
        except BaseException:
            self.breaker.release()
            raise
        err = classify_response(response)
        if err is not None:
            self._record(err)
            raise err
        self.breaker.record_success()
        return response

    def _record(self, err: SupplierError) -> None:
        if getattr(err, "transport_failure", False):
            self.breaker.record_failure()
        else:
            self.breaker.release()

    async def aclose(self) -> None:
        await self.client.aclose()


def json_body(response: httpx.Response) -> Any:
    """The JSON body of a 2xx, or ``OutcomeUnknown`` when it is not JSON (the
    supplier answered something we cannot read: it may have acted)."""
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise _tag(OutcomeUnknown("unreadable answer (not JSON)"), status=response.status_code) from exc


async def read_with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int = 3,
    base_delay: float = 0.2,
    max_delay: float = 5.0,
    rng: random.Random | None = None,
) -> T:
    """Run a *read* (``call``), retrying on 429 and 5xx with full-jitter
    exponential backoff; a Retry-After is honoured (waited at least) unless it is
    longer than ``max_delay``, when the error is raised at once. Never use it for
    a write."""
    rand = rng or random
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except RateLimited as err:
            if attempt == attempts:
                raise
            wait = rand.uniform(0, base_delay * 2 ** (attempt - 1))
            if err.retry_after is not None:
                if err.retry_after > max_delay:
                    raise
                wait = max(wait, err.retry_after)
        except OutcomeUnknown as err:
            if attempt == attempts or not is_server_error(err):
                raise
            wait = rand.uniform(0, base_delay * 2 ** (attempt - 1))
        await asyncio.sleep(min(wait, max_delay))
    raise AssertionError("unreachable")


def dumps(value: Any) -> str:
    """Compact JSON for API parameters."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
