"""The supplier HTTP plumbing: token bucket, error classification, read
retries, circuit breaker, and the adapters' business-error mapping (on
``httpx.MockTransport``: no network)."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from urllib.parse import parse_qsl

import httpx
import pytest

from connectors.suppliers.aliexpress import AliExpressOrders, sign_request
from connectors.suppliers.base import OutcomeUnknown, RateLimited, Rejected, SupplierError, Unavailable
from connectors.suppliers.cj import CJOrders
from connectors.suppliers.http import (
    BusinessRejected,
    CircuitBreaker,
    SupplierHttp,
    TokenBucket,
    classify,
    classify_exception,
    classify_response,
    parse_retry_after,
    read_with_retries,
)
from connectors.suppliers.spocket import SpocketOrders
from models.orders import Address, Customer, SupplierLine

REQ = httpx.Request("POST", "https://supplier.test/x")
LINES = [SupplierLine(line_id="l1", product_id="p1", source_id="1005001", source_variant_id="v1", quantity=1)]
ADDRESS = Address(name="Ann Lee", line1="1 Main St", city="Austin", postal_code="78701", country_code="US")
CUSTOMER = Customer(email="ann@example.com")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- #
# Token bucket
# --------------------------------------------------------------------------- #


def test_bucket_allows_burst_then_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, burst=3, clock=clock)
    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]
    assert bucket.delay() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.try_acquire()
    assert not bucket.try_acquire()
    clock.now += 100  # saves up no more than the burst
    assert bucket.tokens == pytest.approx(3)


def test_bucket_default_burst_and_validation() -> None:
    assert TokenBucket(10).burst == 10
    assert TokenBucket(0.5).burst == 1
    with pytest.raises(ValueError):
        TokenBucket(0)
    with pytest.raises(ValueError):
        TokenBucket(1, burst=0.5)


def test_bucket_acquire_waits_for_tokens() -> None:
    async def run() -> float:
        bucket = TokenBucket(20.0, burst=1)
        start = time.monotonic()
        await asyncio.gather(*(bucket.acquire() for _ in range(5)))
        return time.monotonic() - start

    elapsed = asyncio.run(run())
    assert 0.18 <= elapsed < 1.0  # 1 at once, 4 more at 20/s


# --------------------------------------------------------------------------- #
# Classification
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused", request=REQ), Unavailable),
        (httpx.ConnectTimeout("connect timed out", request=REQ), Unavailable),
        (httpx.UnsupportedProtocol("ftp", request=REQ), Unavailable),
        (httpx.ReadTimeout("read timed out", request=REQ), OutcomeUnknown),
        (httpx.WriteTimeout("write timed out", request=REQ), OutcomeUnknown),
        (httpx.PoolTimeout("no connection", request=REQ), OutcomeUnknown),
        (httpx.RemoteProtocolError("Server disconnected without sending a response.", request=REQ), OutcomeUnknown),
        (httpx.ReadError("[Errno 104] Connection reset by peer", request=REQ), OutcomeUnknown),
        (httpx.WriteError("broken pipe", request=REQ), OutcomeUnknown),
    ],
)
def test_classify_exception(exc: Exception, expected: type[SupplierError]) -> None:
    err = classify_exception(exc)
    assert type(err) is expected
    assert err.outcome_known is (expected is not OutcomeUnknown)
    assert err.retryable
    assert classify(exc).__class__ is expected


def _response(status: int, body: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
    content = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    return httpx.Response(status, content=content, headers=headers, request=REQ)


def test_classify_success_is_none() -> None:
    assert classify_response(_response(200, {})) is None
    assert classify_response(_response(201, {})) is None
    assert classify(_response(204)) is None


def test_classify_429_with_retry_after_seconds() -> None:
    err = classify_response(_response(429, {"message": "slow down"}, {"Retry-After": "7"}))
    assert isinstance(err, RateLimited)
    assert err.retry_after == 7.0
    assert err.retryable and err.outcome_known


def test_classify_429_with_http_date_and_without() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    err = classify_response(_response(429, headers={"Retry-After": when}))
    assert isinstance(err, RateLimited)
    assert err.retry_after is not None and 25 <= err.retry_after <= 31
    err = classify_response(_response(429))
    assert isinstance(err, RateLimited) and err.retry_after is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_classify_5xx_is_outcome_unknown(status: int) -> None:
    err = classify_response(_response(status, {"error": "boom"}))
    assert isinstance(err, OutcomeUnknown)
    assert not err.outcome_known and err.retryable


def test_classify_4xx_is_rejected_with_supplier_message() -> None:
    err = classify_response(_response(400, {"message": "shippingZip is\r\ninvalid"}))
    assert type(err) is Rejected
    assert not err.retryable
    assert "shippingZip is invalid" in err.reason and "\n" not in err.reason
    err = classify_response(_response(401, {"error": "unauthorized"}))
    assert type(err) is Rejected and "unauthorized" in err.reason
    err = classify_response(_response(422, {"error": {"message": "already shipped"}}))
    assert isinstance(err, BusinessRejected) and "already shipped" in err.reason
    err = classify_response(_response(404, b"<html>nope</html>"))
    assert type(err) is Rejected and "nope" in err.reason


def test_classify_408_is_unavailable() -> None:
    assert isinstance(classify_response(_response(408)), Unavailable)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("3", 3.0), ("1.5", 1.5), ("-4", 0.0), ("soon", None), ("nan", None)],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


# --------------------------------------------------------------------------- #
# Retries of reads
# --------------------------------------------------------------------------- #


def _flaky(errors: list[SupplierError]) -> tuple[Callable[[], object], list[int]]:
    calls = [0]

    async def call() -> str:
        calls[0] += 1
        if errors:
            raise errors.pop(0)
        return "ok"

    return call, calls


def test_read_retries_on_429_honouring_retry_after() -> None:
    call, calls = _flaky([RateLimited("429", retry_after=0.2)])
    start = time.monotonic()
    assert asyncio.run(read_with_retries(call, base_delay=0.01)) == "ok"  # type: ignore[arg-type]
    assert calls[0] == 2
    assert time.monotonic() - start >= 0.19


def test_read_retries_on_5xx_then_gives_up() -> None:
    errors = [classify_response(_response(503)) for _ in range(5)]
    call, calls = _flaky(errors)  # type: ignore[arg-type]
    with pytest.raises(OutcomeUnknown):
        asyncio.run(read_with_retries(call, attempts=3, base_delay=0.01))  # type: ignore[arg-type]
    assert calls[0] == 3


def test_read_does_not_retry_rejected_timeouts_or_long_retry_after() -> None:
    for err in (
        Rejected("bad"),
        classify_exception(httpx.ReadTimeout("t", request=REQ)),
        Unavailable("down"),
        RateLimited("429", retry_after=60),
    ):
        call, calls = _flaky([err])
        with pytest.raises(type(err)):
            asyncio.run(read_with_retries(call, base_delay=0.01, max_delay=5))  # type: ignore[arg-type]
        assert calls[0] == 1


# --------------------------------------------------------------------------- #
# Circuit breaker
# --------------------------------------------------------------------------- #


def test_breaker_opens_after_consecutive_failures_and_half_opens() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("X", failure_threshold=3, cooldown_s=10, clock=clock)
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure()
    breaker.before_call()
    breaker.record_success()  # a success resets the count
    for _ in range(3):
        breaker.before_call()
        breaker.record_failure()
    assert breaker.state == "open"
    with pytest.raises(Unavailable, match="circuit open"):
        breaker.before_call()
    clock.now += 10
    assert breaker.state == "half-open"
    breaker.before_call()  # the one probe
    with pytest.raises(Unavailable):
        breaker.before_call()  # others wait for it
    breaker.record_failure()  # the probe failed: open again
    assert breaker.state == "open"
    clock.now += 10
    breaker.before_call()
    breaker.record_success()
    assert breaker.state == "closed"
    breaker.before_call()


def _http(handler: Callable[[httpx.Request], httpx.Response], breaker: CircuitBreaker | None = None) -> SupplierHttp:
    return SupplierHttp("X", "https://supplier.test", rate_per_s=1000, breaker=breaker,
                        transport=httpx.MockTransport(handler))


def test_request_makes_one_attempt_and_feeds_the_breaker() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("Connection refused", request=request)

    async def run() -> None:
        http = _http(handler, CircuitBreaker("X", failure_threshold=2, cooldown_s=60))
        for _ in range(2):
            with pytest.raises(Unavailable, match="cannot connect"):
                await http.request("POST", "/orders", json={})
        with pytest.raises(Unavailable, match="circuit open"):
            await http.request("POST", "/orders", json={})
        await http.aclose()

    asyncio.run(run())
    assert len(calls) == 2  # no retry inside, and none while open


def test_request_5xx_is_one_attempt_and_4xx_does_not_open_the_breaker() -> None:
    statuses = [500, 400, 400, 400]
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(statuses[len(calls) - 1], json={"message": "no"})

    async def run() -> None:
        breaker = CircuitBreaker("X", failure_threshold=2, cooldown_s=60)
        http = _http(handler, breaker)
        with pytest.raises(OutcomeUnknown):
            await http.request("POST", "/orders")
        for _ in range(3):
            with pytest.raises(Rejected):
                await http.request("POST", "/orders")
        assert breaker.state == "closed"
        await http.aclose()

    asyncio.run(run())
    assert len(calls) == 4


def test_request_timeout_is_outcome_unknown() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async def run() -> None:
        http = _http(handler)
        with pytest.raises(OutcomeUnknown):
            await http.request("POST", "/orders")
        await http.aclose()

    asyncio.run(run())


# --------------------------------------------------------------------------- #
# Adapters: business errors in a 200, and signing
# --------------------------------------------------------------------------- #


def test_aliexpress_signature() -> None:
    params = {"method": "m", "app_key": "k", "timestamp": "1", "sign_method": "sha256", "b": "2", "a": "1"}
    expected = hmac.new(b"s", b"a1app_keykb2methodmsign_methodsha256timestamp1", hashlib.sha256).hexdigest().upper()
    assert sign_request(params, "s") == expected
    assert sign_request({**params, "sign": "X"}, "s") == expected
    assert sign_request(params, "s", api_path="/auth/token/create") == hmac.new(
        b"s", b"/auth/token/createa1app_keykb2methodmsign_methodsha256timestamp1", hashlib.sha256
    ).hexdigest().upper()


def _aliexpress(body: dict[str, object], seen: list[dict[str, str]] | None = None) -> AliExpressOrders:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(dict(parse_qsl(request.content.decode())))
        return httpx.Response(200, json=body)

    return AliExpressOrders("https://ae.test", app_key="k", app_secret="s", access_token="t", rate_per_s=1000,
                            transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"type": "ISV", "code": "ApiCallLimit", "msg": "This ban will last 2 more seconds"}, RateLimited),
        ({"type": "ISP", "code": "ServiceUnavailable", "msg": "system busy"}, OutcomeUnknown),
        ({"code": "15", "msg": "Remote service error", "sub_code": "isp.remote-service-timeout"}, OutcomeUnknown),
        ({"type": "ISV", "code": "IncompleteSignature", "msg": "bad sign"}, Rejected),
    ],
)
def test_aliexpress_error_response_mapping(error: dict[str, str], expected: type[SupplierError]) -> None:
    async def run() -> SupplierError:
        adapter = _aliexpress({"error_response": error})
        try:
            await adapter.place_order("r1", LINES, ADDRESS, CUSTOMER)
        except SupplierError as err:
            return err
        finally:
            await adapter.aclose()
        raise AssertionError("no error")

    err = asyncio.run(run())
    assert isinstance(err, expected)
    if expected is RateLimited:
        assert err.retry_after == 2.0  # type: ignore[attr-defined]


def test_aliexpress_business_failure_is_rejected_and_request_is_signed() -> None:
    seen: list[dict[str, str]] = []
    body = {"aliexpress_trade_buy_placeorder_response": {"result": {
        "is_success": False, "error_code": "B_DROPSHIPPER_DELIVERY_ADDRESS_VALIDATE_FAIL", "error_msg": "bad zip"}}}

    async def run() -> None:
        adapter = _aliexpress(body, seen)
        with pytest.raises(Rejected, match="ADDRESS_VALIDATE_FAIL") as info:
            await adapter.place_order("r1", LINES, ADDRESS, CUSTOMER)
        assert not info.value.retryable
        await adapter.aclose()

    asyncio.run(run())
    form = seen[0]
    assert form["method"] == "aliexpress.trade.buy.placeorder" and form["sign_method"] == "sha256"
    assert form["sign"] == sign_request(form, "s")
    dto = json.loads(form["param_place_order_request4_open_api_d_t_o"])
    assert dto["out_order_id"] == "r1" and dto["product_items"][0]["product_count"] == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"code": 1600200, "result": False, "message": "Too Many Requests"}, RateLimited),
        ({"code": 1600500, "result": False, "message": "System busy, try again later"}, OutcomeUnknown),
        ({"code": 1600100, "result": False, "message": "Param error"}, BusinessRejected),
        ({"code": 1600001, "result": False, "message": "Invalid API key or access token"}, Rejected),
        ({"code": 200, "result": True, "message": "Success", "data": {}}, OutcomeUnknown),  # no orderId
    ],
)
def test_cj_body_mapping(body: dict[str, object], expected: type[SupplierError]) -> None:
    async def run() -> SupplierError:
        adapter = CJOrders("https://cj.test", access_token="t", rate_per_s=1000,
                           transport=httpx.MockTransport(lambda r: httpx.Response(200, json=body)))
        try:
            await adapter.place_order("r1", LINES, ADDRESS, CUSTOMER)
        except SupplierError as err:
            return err
        finally:
            await adapter.aclose()
        raise AssertionError("no error")

    assert isinstance(asyncio.run(run()), expected)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"error_response": {"code": "isv.order-not-found", "msg": "order not found"}}, None),
        ({"aliexpress_trade_ds_order_get_response": {"rsp_code": 404, "rsp_msg": "order not found"}}, None),
        ({"error_response": {"code": "InvalidApiPath", "msg": "The specified API is not found"}}, Rejected),
        ({"aliexpress_trade_ds_order_get_response": {"rsp_code": 500, "rsp_msg": "oops"}}, OutcomeUnknown),
    ],
)
def test_aliexpress_find_is_none_only_when_the_order_is_missing(
    body: dict[str, object], expected: type[SupplierError] | None
) -> None:
    async def run() -> object:
        adapter = _aliexpress(body)
        adapter.read_attempts = 1
        try:
            return await adapter.find_order("r1")
        except SupplierError as err:
            return err
        finally:
            await adapter.aclose()

    result = asyncio.run(run())
    assert result is None if expected is None else isinstance(result, expected)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"code": 1603001, "result": False, "message": "Order does not exist"}, None),
        ({"code": 1600404, "result": False, "message": "Interface does not exist"}, BusinessRejected),
    ],
)
def test_cj_find_is_none_only_when_the_order_is_missing(
    body: dict[str, object], expected: type[SupplierError] | None
) -> None:
    async def run() -> object:
        adapter = CJOrders("https://cj.test", access_token="t", rate_per_s=1000,
                           transport=httpx.MockTransport(lambda r: httpx.Response(200, json=body)))
        try:
            return await adapter.find_order("r1")
        except SupplierError as err:
            return err
        finally:
            await adapter.aclose()

    result = asyncio.run(run())
    assert result is None if expected is None else isinstance(result, expected)


def test_spocket_unreadable_2xx_on_create_is_outcome_unknown() -> None:
    async def run() -> None:
        adapter = SpocketOrders("https://sp.test", api_key="k", rate_per_s=1000,
                                transport=httpx.MockTransport(lambda r: httpx.Response(201, content=b"<html>")))
        with pytest.raises(OutcomeUnknown):
            await adapter.place_order("r1", LINES, ADDRESS, CUSTOMER)
        await adapter.aclose()

    asyncio.run(run())


def test_adapters_do_not_show_secrets() -> None:
    adapter = AliExpressOrders("https://ae.test", app_key="k", app_secret="SECRET-1", access_token="TOKEN-1")
    assert "SECRET-1" not in repr(adapter) and "TOKEN-1" not in repr(adapter)
    asyncio.run(adapter.aclose())


# --------------------------------------------------------------------------- #
# Accounts from the environment
# --------------------------------------------------------------------------- #


def test_accounts_env_wins_over_secrets_file(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from connectors.suppliers.registry import SupplierAccounts, build_clients

    for name in ("OPS_CJ_ACCESS_TOKEN", "OPS_SPOCKET_API_KEY", "OPS_ALIEXPRESS_APP_KEY", "OPS_CJ_RATE_PER_S"):
        monkeypatch.delenv(name, raising=False)
    secrets = tmp_path / "suppliers.json"
    secrets.write_text(json.dumps({"cj_access_token": "from-file", "spocket_api_key": "sp-file", "cj_rate_per_s": 2}))
    secrets.chmod(0o600)
    monkeypatch.setenv("OPS_SUPPLIER_SECRETS_FILE", str(secrets))
    monkeypatch.setenv("OPS_SPOCKET_API_KEY", "sp-env")
    accounts = SupplierAccounts.load()
    assert accounts.cj_access_token is not None and accounts.cj_access_token.get_secret_value() == "from-file"
    assert accounts.spocket_api_key is not None and accounts.spocket_api_key.get_secret_value() == "sp-env"
    assert accounts.cj_rate_per_s == 2 and accounts.aliexpress_rate_per_s == 10
    assert "from-file" not in repr(accounts) and "sp-env" not in str(accounts)
    clients = build_clients(accounts)
    assert sorted(clients) == ["CJ_DROPSHIPPING", "SPOCKET"]
    for client in clients.values():
        asyncio.run(client.aclose())


def test_accounts_partial_credentials_fail_without_showing_secrets(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from connectors.suppliers.registry import SupplierAccounts, SupplierSettingsError, build_clients

    monkeypatch.delenv("OPS_SUPPLIER_SECRETS_FILE", raising=False)
    monkeypatch.setenv("OPS_ALIEXPRESS_APP_KEY", "key")
    monkeypatch.setenv("OPS_ALIEXPRESS_APP_SECRET", "very-secret")
    monkeypatch.delenv("OPS_ALIEXPRESS_ACCESS_TOKEN", raising=False)
    with pytest.raises(SupplierSettingsError, match="OPS_ALIEXPRESS_ACCESS_TOKEN") as info:
        build_clients(SupplierAccounts.load())
    assert "very-secret" not in str(info.value)
    monkeypatch.setenv("OPS_CJ_RATE_PER_S", "-1")
    with pytest.raises(SupplierSettingsError, match="OPS_CJ_RATE_PER_S"):
        SupplierAccounts.load()
