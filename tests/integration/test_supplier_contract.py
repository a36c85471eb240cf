"""One contract for every supplier adapter, against the fake supplier on
loopback (real HTTP, real sockets): what the executor may rely on whichever
supplier it talks to."""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from connectors.suppliers.base import (
    OutcomeUnknown,
    PlacedOrder,
    RateLimited,
    Rejected,
    SupplierCatalog,
    SupplierOrders,
    SupplierProduct,
    Unavailable,
)
from connectors.suppliers.http import BusinessRejected, CircuitBreaker
from models.freight import FreightOption
from models.orders import Address, Customer, SupplierLine
from tests.fakes.clients import PROVIDERS, make_adapter
from tests.fakes.supplier_server import (
    FakeConfig,
    FakeCredentials,
    FakeSupplierServer,
    SupplierServerProcess,
    SupplierState,
    gone_style,
)

T = TypeVar("T")

BAD = FakeCredentials(
    aliexpress_app_secret="wrong-secret",
    cj_access_token="wrong-token",
    spocket_api_key="wrong-key",
)
TRACKING = {
    "ALIEXPRESS": re.compile(r"^(LP\d{14}CN|YT\d{16})$"),
    "CJ_DROPSHIPPING": re.compile(r"^CJPKL\d{10}YQ$"),
    "SPOCKET": re.compile(r"^9400\d{18}$"),
}
LINES = (
    SupplierLine(line_id="l1", product_id="p1", source_id="1005006123", source_variant_id="14:193#Red", quantity=2),
    SupplierLine(line_id="l2", product_id="p2", source_id="1005006456", quantity=1),
)
ADDRESS = Address(
    name="Ann Lee", line1="1 Main St", line2="Apt 4", city="Austin", province="TX", postal_code="78701",
    country_code="us", phone="+15125550100",
)
CUSTOMER = Customer(name="Ann Lee", email="ann@example.com")


def run(provider: str, fake: FakeSupplierServer, body: Callable[[SupplierOrders], Awaitable[T]], **kw: Any) -> T:
    """Run ``body(adapter)`` in a fresh event loop, closing the adapter after."""

    async def main() -> T:
        adapter = make_adapter(provider, fake, **kw)
        try:
            return await body(adapter)
        finally:
            await adapter.aclose()

    return asyncio.run(main())


def place(adapter: SupplierOrders, reference: str) -> Awaitable[PlacedOrder]:
    return adapter.place_order(reference, LINES, ADDRESS, CUSTOMER)


def count(fake: FakeSupplierServer, provider: str, reference: str) -> int:
    return sum(1 for o in fake.orders()["orders"] if o["provider"] == provider and o["reference"] == reference)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeSupplierServer]:
    with FakeSupplierServer(seed=42) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeSupplierServer) -> FakeSupplierServer:
    server.reset()
    return server


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    return request.param


# --------------------------------------------------------------------------- #
# The contract
# --------------------------------------------------------------------------- #


def test_place_then_find_by_reference(provider: str, fake: FakeSupplierServer) -> None:
    async def body(adapter: SupplierOrders) -> tuple[PlacedOrder, PlacedOrder | None]:
        placed = await place(adapter, "ops-ref-1")
        return placed, await adapter.find_order("ops-ref-1")

    placed, found = run(provider, fake, body)
    assert placed.reference == "ops-ref-1" and placed.supplier_order_id
    assert found is not None
    assert found.supplier_order_id == placed.supplier_order_id and found.reference == "ops-ref-1"
    assert count(fake, provider, "ops-ref-1") == 1


def test_find_unknown_reference_is_none(provider: str, fake: FakeSupplierServer) -> None:
    assert run(provider, fake, lambda a: a.find_order("ops-never-placed")) is None


def test_supplier_does_not_dedupe(provider: str, fake: FakeSupplierServer) -> None:
    """Two creates with one reference are two orders: preventing that is the executor's job."""

    async def body(adapter: SupplierOrders) -> tuple[PlacedOrder, PlacedOrder, PlacedOrder | None]:
        first, second = await place(adapter, "ops-dup"), await place(adapter, "ops-dup")
        return first, second, await adapter.find_order("ops-dup")

    first, second, found = run(provider, fake, body)
    assert first.supplier_order_id != second.supplier_order_id
    assert found is not None and found.supplier_order_id == first.supplier_order_id
    snapshot = fake.orders()
    assert snapshot["duplicates"] == [
        {"provider": provider, "reference": "ops-dup", "count": 2,
         "supplier_order_ids": [first.supplier_order_id, second.supplier_order_id]}
    ]


def test_tracking_appears(provider: str, fake: FakeSupplierServer) -> None:
    fake.configure(tracking_delay_s=0.6, delivered_after_s=1.2)

    async def body(adapter: SupplierOrders) -> list[Any]:
        placed = await place(adapter, "ops-track")
        created = time.monotonic()
        before = await adapter.get_tracking(placed)
        await asyncio.sleep(max(0.0, created + 0.65 - time.monotonic()))
        shipped = await adapter.get_tracking(placed)
        await asyncio.sleep(max(0.0, created + 1.25 - time.monotonic()))
        return [before, shipped, await adapter.get_tracking(placed)]

    before, shipped, delivered = run(provider, fake, body)
    assert before is None
    assert shipped is not None and TRACKING[provider].match(shipped.number), shipped
    assert shipped.carrier and shipped.url and shipped.number in shipped.url
    assert not shipped.delivered
    assert delivered is not None and delivered.number == shipped.number and delivered.delivered


def test_tracking_available_at_once_by_default(provider: str, fake: FakeSupplierServer) -> None:
    async def body(adapter: SupplierOrders) -> Any:
        return await adapter.get_tracking(await place(adapter, "ops-track-now"))

    tracking = run(provider, fake, body)
    assert tracking is not None and TRACKING[provider].match(tracking.number)


def test_cancel_before_and_after_shipping(provider: str, fake: FakeSupplierServer) -> None:
    fake.configure(tracking_delay_s=60)

    async def body(adapter: SupplierOrders) -> tuple[bool, PlacedOrder | None]:
        placed = await place(adapter, "ops-cancel")
        return await adapter.cancel_order(placed), await adapter.find_order("ops-cancel")

    cancelled, found = run(provider, fake, body)
    assert cancelled is True
    assert found is not None and "cancel" in found.status.lower()
    assert [o["cancelled"] for o in fake.orders()["orders"]] == [True]

    fake.configure(tracking_delay_s=0)

    async def shipped(adapter: SupplierOrders) -> bool:
        placed = await place(adapter, "ops-shipped")
        assert await adapter.get_tracking(placed) is not None
        return await adapter.cancel_order(placed)

    assert run(provider, fake, shipped) is False


def test_bad_credentials_are_rejected(provider: str, fake: FakeSupplierServer) -> None:
    async def body(adapter: SupplierOrders) -> None:
        with pytest.raises(Rejected) as info:
            await place(adapter, "ops-bad-creds")
        assert not info.value.retryable and info.value.outcome_known
        with pytest.raises(Rejected):
            await adapter.find_order("ops-bad-creds")

    run(provider, fake, body, creds=BAD)
    assert fake.orders()["orders"] == []
    assert fake.orders()["stats"]["auth_failures"] == 2


def test_429_is_rate_limited_with_retry_after(provider: str, fake: FakeSupplierServer) -> None:
    fake.configure(next_failures=["429"], retry_after=2)

    async def body(adapter: SupplierOrders) -> RateLimited:
        with pytest.raises(RateLimited) as info:
            await place(adapter, "ops-429")
        return info.value

    err = run(provider, fake, body)
    assert err.retry_after == 2.0 and err.retryable and err.outcome_known
    assert count(fake, provider, "ops-429") == 0


def test_500_before_record_is_unknown_and_not_found(provider: str, fake: FakeSupplierServer) -> None:
    fake.configure(next_failures=["500"])

    async def body(adapter: SupplierOrders) -> PlacedOrder | None:
        with pytest.raises(OutcomeUnknown) as info:
            await place(adapter, "ops-500")
        assert not info.value.outcome_known and info.value.retryable
        return await adapter.find_order("ops-500")

    assert run(provider, fake, body) is None
    assert fake.orders()["stats"]["failures_injected"]["500"] == 1


def test_500_after_record_is_unknown_and_found(provider: str, fake: FakeSupplierServer) -> None:
    fake.configure(next_failures=["500_after_record"])

    async def body(adapter: SupplierOrders) -> PlacedOrder | None:
        with pytest.raises(OutcomeUnknown):
            await place(adapter, "ops-500-rec")
        return await adapter.find_order("ops-500-rec")

    found = run(provider, fake, body)
    assert found is not None and found.reference == "ops-500-rec"
    assert [o["supplier_order_id"] for o in fake.orders()["orders"]] == [found.supplier_order_id]


def test_timeout_is_unknown(provider: str, fake: FakeSupplierServer) -> None:
    fake.configure(next_failures=["timeout"], timeout_sleep_s=2.0)

    async def body(adapter: SupplierOrders) -> tuple[float, PlacedOrder | None]:
        start = time.monotonic()
        with pytest.raises(OutcomeUnknown):
            await place(adapter, "ops-timeout")
        elapsed = time.monotonic() - start
        return elapsed, await adapter.find_order("ops-timeout")

    elapsed, found = run(provider, fake, body)
    assert 0.4 <= elapsed < 1.8  # the client's read timeout, not the server's sleep
    assert found is None


def test_stopped_server_is_unavailable(provider: str) -> None:
    stopped = FakeSupplierServer().start()
    stopped.stop()

    async def body(adapter: SupplierOrders) -> None:
        with pytest.raises(Unavailable) as info:
            await place(adapter, "ops-down")
        assert info.value.outcome_known and info.value.retryable
        with pytest.raises(Unavailable):
            await adapter.find_order("ops-down")

    run(provider, stopped, body)


def test_circuit_breaker_opens_and_recovers(provider: str, fake: FakeSupplierServer) -> None:
    fake.configure(next_failures=["500", "500", "500"])
    breaker = CircuitBreaker(provider, failure_threshold=3, cooldown_s=0.3)

    async def body(adapter: SupplierOrders) -> PlacedOrder:
        for _ in range(3):
            with pytest.raises(OutcomeUnknown):
                await place(adapter, "ops-breaker")
        with pytest.raises(Unavailable, match="circuit open"):
            await place(adapter, "ops-breaker")
        with pytest.raises(Unavailable, match="circuit open"):
            await adapter.find_order("ops-breaker")
        assert fake.orders()["stats"]["creates_received"] == 3  # the open circuit did not call
        await asyncio.sleep(0.35)
        placed = await place(adapter, "ops-breaker")  # the half-open probe
        assert breaker.state == "closed"
        return placed

    placed = run(provider, fake, body, breaker=breaker)
    assert count(fake, provider, "ops-breaker") == 1 and placed.supplier_order_id


# --------------------------------------------------------------------------- #
# The contract: product fetch (SupplierCatalog)
# --------------------------------------------------------------------------- #

#: the fake's variant field each adapter reports as ``source_variant_id``
VARIANT_KEY = {"ALIEXPRESS": "attr", "CJ_DROPSHIPPING": "id", "SPOCKET": "id"}
IDS = [f"100500{n:04d}" for n in range(1, 40)]


def removed_pair() -> list[str]:
    """Two ids the fake removes in its two ways (not found; delisted)."""
    missing = next(i for i in IDS[20:] if gone_style(i) == "missing")
    delisted = next(i for i in IDS[20:] if gone_style(i) == "delisted")
    return [missing, delisted]


def catalog_run(
    provider: str, fake: Any, body: Callable[[SupplierCatalog], Awaitable[T]], **kw: Any
) -> T:
    return run(provider, fake, body, **kw)  # type: ignore[arg-type]


def fetch(provider: str, fake: Any, ids: list[str], **kw: Any) -> list[SupplierProduct]:
    return catalog_run(provider, fake, lambda a: a.fetch_products(ids), **kw)


def product_requests(fake: FakeSupplierServer, provider: str) -> int:
    return int(fake.requests()["product_requests"][provider])


def assert_matches_fake(provider: str, fake: FakeSupplierServer, source_id: str, got: list[SupplierProduct]) -> None:
    """``got`` (the adapter's entries for ``source_id``) says what the fake's supplier has."""
    truth = fake.product(provider, source_id)
    if truth is None:
        assert len(got) == 1, got
        gone = got[0]
        assert (gone.available, gone.stock, gone.source_variant_id, gone.cost_price) == (False, 0, None, None)
        return
    assert [p.source_variant_id for p in got] == [v[VARIANT_KEY[provider]] for v in truth["variants"]]
    for product, variant in zip(got, truth["variants"]):
        assert product.available is True
        assert product.stock == variant["stock"]
        assert isinstance(product.cost_price, Decimal) and isinstance(product.shipping_cost, Decimal)
        assert product.cost_price == Decimal(variant["price"])
        assert product.cost_price.as_tuple().exponent >= -2  # cents exactly: no float on the way
        assert product.shipping_cost == Decimal(truth["shipping"])
        assert product.currency == truth["currency"]
        assert product.title == truth["title"]
        assert product.images == tuple(truth["images"])


def test_fetch_batch_with_removed_and_duplicate(provider: str, fake: FakeSupplierServer) -> None:
    removed = removed_pair()
    fake.configure(removed_products=removed)
    ids = [IDS[0], removed[0], IDS[1], IDS[0], removed[1], IDS[2], IDS[1]]
    unique = list(dict.fromkeys(ids))

    async def body(adapter: SupplierCatalog) -> tuple[int, list[SupplierProduct]]:
        return adapter.max_batch, await adapter.fetch_products(ids)

    max_batch, got = catalog_run(provider, fake, body)
    assert [p.source_id for p in got] == [i for i in unique for p in got if p.source_id == i]  # grouped, in order
    assert {p.source_id for p in got} == set(unique)
    for source_id in unique:
        assert_matches_fake(provider, fake, source_id, [p for p in got if p.source_id == source_id])
    assert any(len([p for p in got if p.source_id == i]) > 1 for i in unique)  # variants came back
    # each unique id asked once, in calls of max_batch ids
    assert product_requests(fake, provider) == math.ceil(len(unique) / max_batch)


def test_fetch_splits_ids_into_batches(provider: str, fake: FakeSupplierServer) -> None:
    async def body(adapter: SupplierCatalog) -> tuple[int, list[SupplierProduct]]:
        ids = [f"9{n:08d}" for n in range(2 * adapter.max_batch + 1)]
        return adapter.max_batch, await adapter.fetch_products(ids)

    max_batch, got = catalog_run(provider, fake, body)
    ids = [f"9{n:08d}" for n in range(2 * max_batch + 1)]
    assert list(dict.fromkeys(p.source_id for p in got)) == ids
    assert all(p.available for p in got)
    assert product_requests(fake, provider) == 3


def test_fetch_sees_stock_price_changes_and_removal(provider: str, fake: FakeSupplierServer) -> None:
    source_id = IDS[3]
    before = fetch(provider, fake, [source_id])
    assert_matches_fake(provider, fake, source_id, before)
    fake.configure(product_overrides={source_id: {"stock": 0, "price": "9.99"}})
    changed = fetch(provider, fake, [source_id])
    assert_matches_fake(provider, fake, source_id, changed)
    assert {(p.available, p.stock, p.cost_price) for p in changed} == {(True, 0, Decimal("9.99"))}
    assert [p.source_variant_id for p in changed] == [p.source_variant_id for p in before]
    fake.configure(removed_products=[source_id])
    [gone] = fetch(provider, fake, [source_id])
    assert (gone.source_id, gone.available, gone.stock) == (source_id, False, 0)


def test_fetch_of_nothing_calls_nothing(provider: str, fake: FakeSupplierServer) -> None:
    assert fetch(provider, fake, []) == []
    assert product_requests(fake, provider) == 0


def test_fetch_retries_429_honouring_retry_after(provider: str, fake: FakeSupplierServer) -> None:
    fake.configure(next_read_failures=["429"], retry_after=1)
    start = time.monotonic()
    got = fetch(provider, fake, [IDS[4]])
    elapsed = time.monotonic() - start
    assert_matches_fake(provider, fake, IDS[4], got)
    assert elapsed >= 1.0  # waited the Retry-After before the second attempt
    assert product_requests(fake, provider) == 2
    assert fake.orders()["stats"]["read_failures_injected"]["429"] == 1


def test_fetch_retries_500_then_gives_up(provider: str, fake: FakeSupplierServer) -> None:
    fake.configure(next_read_failures=["500"])
    got = fetch(provider, fake, [IDS[5]])
    assert_matches_fake(provider, fake, IDS[5], got)
    assert product_requests(fake, provider) == 2

    fake.reset()
    fake.configure(next_read_failures=["500", "500"])
    with pytest.raises(OutcomeUnknown) as info:
        fetch(provider, fake, [IDS[5]])  # read_attempts=2: both failed
    assert info.value.retryable and getattr(info.value, "http_status", None) == 500
    assert product_requests(fake, provider) == 2


def test_fetch_429_past_the_attempts_is_rate_limited(provider: str, fake: FakeSupplierServer) -> None:
    fake.configure(next_read_failures=["429", "429"], retry_after=0.2)
    with pytest.raises(RateLimited) as info:
        fetch(provider, fake, [IDS[6]])
    assert info.value.retry_after == pytest.approx(0.2)
    assert product_requests(fake, provider) == 2


def test_fetch_timeout_is_unknown_and_not_retried(provider: str, fake: FakeSupplierServer) -> None:
    fake.configure(next_read_failures=["timeout"], timeout_sleep_s=1.5)
    start = time.monotonic()
    with pytest.raises(OutcomeUnknown):
        fetch(provider, fake, [IDS[7]])
    assert time.monotonic() - start < 1.4  # the client's read timeout, not the server's sleep
    assert product_requests(fake, provider) == 1


def test_fetch_with_bad_credentials_is_rejected(provider: str, fake: FakeSupplierServer) -> None:
    with pytest.raises(Rejected) as info:
        fetch(provider, fake, [IDS[8]], creds=BAD)
    assert not info.value.retryable
    assert fake.orders()["stats"]["auth_failures"] == 1


def test_fetch_from_a_stopped_server_is_unavailable(provider: str) -> None:
    stopped = FakeSupplierServer().start()
    stopped.stop()
    with pytest.raises(Unavailable):
        fetch(provider, stopped, [IDS[9]])


def test_rate_limit_holds_at_the_server(provider: str, fake: FakeSupplierServer) -> None:
    """5 requests/s, burst 1, about 3 s of load from fetches and an order lookup
    sharing the account's bucket: no whole second at the fake sees more than
    the rate plus the burst (arrival jitter can move one request across a
    second's edge), and the load took the time the rate implies."""
    rate, burst, calls = 5, 1, 16

    async def body(adapter: SupplierOrders) -> float:
        catalog: Any = adapter
        start = time.monotonic()
        work = [catalog.fetch_products([f"7{n:08d}"]) for n in range(calls - 2)]
        work += [adapter.find_order("ops-rate-1"), adapter.find_order("ops-rate-2")]
        await asyncio.gather(*work)
        return time.monotonic() - start

    elapsed = run(provider, fake, body, rate_per_s=rate, burst=burst)
    per_second = fake.requests()["per_second"][provider]
    assert sum(per_second.values()) == calls
    assert max(per_second.values()) <= rate + burst, per_second
    assert len(per_second) >= 3, per_second  # the load spread over at least 3 seconds
    assert elapsed >= (calls - burst) / rate - 0.05


def test_circuit_breaker_opens_on_fetch_failures_and_closes(provider: str, fake: FakeSupplierServer) -> None:
    """The breaker's own clock is stepped (no sleeping, nothing timing-fragile);
    the calls and the server are real."""
    fake.configure(next_read_failures=["500", "500", "500"])
    now = [1000.0]
    breaker = CircuitBreaker(provider, failure_threshold=3, cooldown_s=30.0, clock=lambda: now[0])

    async def body(adapter: SupplierOrders) -> list[SupplierProduct]:
        catalog: Any = adapter
        for _ in range(3):
            with pytest.raises(OutcomeUnknown):
                await catalog.fetch_products([IDS[10]])
        assert breaker.state == "open"
        now[0] += 29.0
        with pytest.raises(Unavailable, match="circuit open"):
            await catalog.fetch_products([IDS[10]])
        with pytest.raises(Unavailable, match="circuit open"):
            await adapter.find_order("ops-breaker-fetch")  # one breaker per account
        assert product_requests(fake, provider) == 3  # fail fast: the server saw none of those
        now[0] += 1.0  # the cooldown is over
        assert breaker.state == "half-open"
        got = await catalog.fetch_products([IDS[10]])  # the probe
        assert breaker.state == "closed"
        return got

    got = run(provider, fake, body, breaker=breaker, read_attempts=1)
    assert_matches_fake(provider, fake, IDS[10], got)
    assert product_requests(fake, provider) == 4


def test_cj_per_product_query_when_batches_are_off(fake: FakeSupplierServer) -> None:
    removed = removed_pair()
    fake.configure(removed_products=removed)
    ids = [IDS[11], removed[0], IDS[12], removed[1]]
    got = fetch("CJ_DROPSHIPPING", fake, ids, batch_size=1)
    for source_id in ids:
        assert_matches_fake("CJ_DROPSHIPPING", fake, source_id, [p for p in got if p.source_id == source_id])
    assert product_requests(fake, "CJ_DROPSHIPPING") == len(ids)


# --------------------------------------------------------------------------- #
# The contract: freight quotes (SupplierFreight; AliExpress and CJ, whose product
# answers carry no shipping fee)
# --------------------------------------------------------------------------- #

FREIGHT_PROVIDERS = ["ALIEXPRESS", "CJ_DROPSHIPPING"]


@pytest.fixture(params=FREIGHT_PROVIDERS)
def freighter(request: pytest.FixtureRequest) -> str:
    return request.param


def freight_requests(fake: FakeSupplierServer, provider: str) -> int:
    return int(fake.requests()["freight_requests"][provider])


def quotes(
    provider: str, fake: Any, ids: list[str], country: str = "US", **kw: Any
) -> list[tuple[SupplierProduct, FreightOption | None]]:
    """Each variant of ``ids`` fetched, then its freight to ``country`` quoted."""

    async def body(adapter: Any) -> list[tuple[SupplierProduct, FreightOption | None]]:
        products = await adapter.fetch_products(ids)
        return [(p, await adapter.quote_freight(p.source_id, p.freight_ref, country)) for p in products]

    return run(provider, fake, body, **kw)  # type: ignore[arg-type]


def test_freight_is_the_cheapest_option_for_the_variant_and_country(freighter: str, fake: FakeSupplierServer) -> None:
    got = quotes(freighter, fake, IDS[:4], country="DE")
    assert len(got) > 4  # some products have several variants, each quoted
    for product, option in got:
        truth = fake.product(freighter, product.source_id)
        assert truth is not None
        # the id the freight call takes: AliExpress's SKU id (not the sku_attr), CJ's vid
        assert product.freight_ref in {v["id"] for v in truth["variants"]}
        assert option is not None and option.currency == "USD" and isinstance(option.amount, Decimal)
        assert option.amount == Decimal(str(fake.freight(freighter, product.source_id, product.freight_ref, "DE")))
    # the supplier lists the cheapest option anywhere but first: the adapter took the minimum
    assert freight_requests(fake, freighter) == len(got)
    sent = fake.freight_log()[-1]["request"]
    last = got[-1][0]
    if freighter == "ALIEXPRESS":
        assert sent == {"productId": last.source_id, "selectedSkuId": last.freight_ref, "quantity": 1,
                        "shipToCountry": "DE", "currency": "USD", "language": "en_US", "locale": "en_US"}
    else:
        assert sent == {"startCountryCode": "CN", "endCountryCode": "DE",
                        "products": [{"quantity": 1, "vid": last.freight_ref}]}


def test_freight_depends_on_the_country(freighter: str, fake: FakeSupplierServer) -> None:
    us = [option for _, option in quotes(freighter, fake, IDS[:3], country="US")]
    gb = [option for _, option in quotes(freighter, fake, IDS[:3], country="GB")]
    assert us != gb and all(o is not None for o in us + gb)


def test_freight_without_a_delivery_option_is_none(freighter: str, fake: FakeSupplierServer) -> None:
    fake.configure(freight_overrides={IDS[11]: None, IDS[12]: "4.20"})
    got = {p.source_id: option for p, option in quotes(freighter, fake, [IDS[11], IDS[12]])}
    assert got[IDS[11]] is None
    assert got[IDS[12]] is not None and got[IDS[12]].amount == Decimal("4.20")


def test_freight_of_a_removed_product_is_refused_and_not_retried(freighter: str, fake: FakeSupplierServer) -> None:
    async def body(adapter: Any) -> None:
        [product, *_] = await adapter.fetch_products([IDS[13]])
        fake.configure(removed_products=[IDS[13]])
        with pytest.raises(BusinessRejected) as info:
            await adapter.quote_freight(IDS[13], product.freight_ref, "US")
        assert not info.value.retryable

    run(freighter, fake, body)
    assert freight_requests(fake, freighter) == 1


def test_freight_retries_429_honouring_retry_after_then_500_gives_up(freighter: str, fake: FakeSupplierServer) -> None:
    fake.configure(next_freight_failures=["429"], retry_after=1)
    start = time.monotonic()
    got = quotes(freighter, fake, [IDS[14]])
    assert time.monotonic() - start >= 1.0  # waited the Retry-After before the second attempt
    for product, option in got:
        assert option is not None
        assert option.amount == Decimal(str(fake.freight(freighter, IDS[14], product.freight_ref, "US")))
    assert freight_requests(fake, freighter) == len(got) + 1  # the first quote asked twice

    fake.reset()
    fake.configure(next_freight_failures=["500", "500"])

    async def body(adapter: Any) -> None:
        [product, *_] = await adapter.fetch_products([IDS[14]])
        with pytest.raises(OutcomeUnknown) as info:
            await adapter.quote_freight(IDS[14], product.freight_ref, "US")  # read_attempts=2: both failed
        assert getattr(info.value, "http_status", None) == 500

    run(freighter, fake, body)
    assert freight_requests(fake, freighter) == 2


def test_freight_timeout_is_unknown_and_not_retried(freighter: str, fake: FakeSupplierServer) -> None:
    fake.configure(next_freight_failures=["timeout"], timeout_sleep_s=1.5)

    async def body(adapter: Any) -> float:
        [product, *_] = await adapter.fetch_products([IDS[15]])
        start = time.monotonic()
        with pytest.raises(OutcomeUnknown):
            await adapter.quote_freight(IDS[15], product.freight_ref, "US")
        return time.monotonic() - start

    assert run(freighter, fake, body) < 1.4  # the client's read timeout, not the server's sleep
    assert freight_requests(fake, freighter) == 1


def test_freight_with_bad_credentials_is_rejected_and_a_stopped_server_unavailable(freighter: str,
                                                                                   fake: FakeSupplierServer) -> None:
    async def bad(adapter: Any) -> None:
        with pytest.raises(Rejected):
            await adapter.quote_freight(IDS[16], "any-ref", "US")

    run(freighter, fake, bad, creds=BAD)
    assert fake.orders()["stats"]["auth_failures"] == 1
    stopped = FakeSupplierServer().start()
    stopped.stop()

    async def down(adapter: Any) -> None:
        with pytest.raises(Unavailable):
            await adapter.quote_freight(IDS[16], "any-ref", "US")

    run(freighter, stopped, down)


def test_freight_failures_open_the_accounts_one_breaker(freighter: str, fake: FakeSupplierServer) -> None:
    """Freight, product fetch and orders of an account share one circuit breaker."""
    now = [1000.0]
    breaker = CircuitBreaker(freighter, failure_threshold=3, cooldown_s=30.0, clock=lambda: now[0])

    async def body(adapter: Any) -> FreightOption | None:
        [product, *_] = await adapter.fetch_products([IDS[17]])
        fake.configure(next_freight_failures=["500", "500", "500"])
        for _ in range(3):
            with pytest.raises(OutcomeUnknown):
                await adapter.quote_freight(IDS[17], product.freight_ref, "US")
        assert breaker.state == "open"
        with pytest.raises(Unavailable, match="circuit open"):
            await adapter.fetch_products([IDS[17]])
        with pytest.raises(Unavailable, match="circuit open"):
            await adapter.quote_freight(IDS[17], product.freight_ref, "US")
        assert freight_requests(fake, freighter) == 3 and product_requests(fake, freighter) == 1
        now[0] += 30.0
        return await adapter.quote_freight(IDS[17], product.freight_ref, "US")  # the half-open probe

    assert run(freighter, fake, body, breaker=breaker, read_attempts=1) is not None
    assert breaker.state == "closed"


def test_freight_shares_the_accounts_rate_limit_with_product_fetches(freighter: str, fake: FakeSupplierServer) -> None:
    """5 requests/s, burst 1: product fetches and freight quotes of one account together
    never exceed the rate plus the burst in any whole second at the fake."""
    rate, burst = 5, 1

    async def body(adapter: Any) -> float:
        [product, *_] = await adapter.fetch_products([IDS[18]])  # the burst; CJ asks freight by a vid it showed
        start = time.monotonic()
        work = [adapter.fetch_products([f"6{n:08d}"]) for n in range(8)]
        work += [adapter.quote_freight(IDS[18], product.freight_ref, "US") for _ in range(8)]
        results = await asyncio.gather(*work)
        assert all(r is not None for r in results[8:])
        return time.monotonic() - start

    elapsed = run(freighter, fake, body, rate_per_s=rate, burst=burst)
    seen = fake.requests()
    per_second = seen["per_second"][freighter]
    assert (seen["product_requests"][freighter], seen["freight_requests"][freighter]) == (9, 8)
    assert sum(per_second.values()) == 17
    assert max(per_second.values()) <= rate + burst, per_second
    assert len(per_second) >= 3, per_second
    assert elapsed >= 16 / rate - 0.05  # the 16 calls after the burst waited for the bucket's tokens


def test_spocket_quotes_no_freight_its_products_carry_their_shipping(fake: FakeSupplierServer) -> None:
    adapter = make_adapter("SPOCKET", fake)
    assert not hasattr(adapter, "quote_freight")
    asyncio.run(adapter.aclose())
    [product, *_] = fetch("SPOCKET", fake, [IDS[19]])
    assert product.shipping_cost == Decimal(fake.product("SPOCKET", IDS[19])["shipping"])  # type: ignore[index]


# --------------------------------------------------------------------------- #
# The fake itself
# --------------------------------------------------------------------------- #


def test_fake_failures_are_seeded() -> None:
    def plan(seed: int) -> list[str | None]:
        state = SupplierState(FakeConfig(failure_rate=0.3, seed=seed))
        return [state.next_failure("CJ_DROPSHIPPING") for _ in range(200)]

    first = plan(7)
    assert first == plan(7) and first != plan(8)
    assert 30 <= sum(k is not None for k in first) <= 90
    assert {k for k in first if k} == {"500", "timeout", "429", "500_after_record"}


def test_fake_as_a_process_keeps_orders_across_restarts(tmp_path: Path) -> None:
    state_file = tmp_path / "supplier-state.json"
    with SupplierServerProcess(seed=3, state_file=state_file) as proc:
        assert proc.configure(retry_after=5)["retry_after"] == 5
        placed = run("CJ_DROPSHIPPING", proc, lambda a: place(a, "ops-proc"))  # type: ignore[arg-type]
        port = proc.url.rsplit(":", 1)[1]
        proc.kill()  # a crash, not a clean stop
    with SupplierServerProcess(int(port), state_file=state_file) as again:
        found = run("CJ_DROPSHIPPING", again, lambda a: a.find_order("ops-proc"))  # type: ignore[arg-type]
        assert found is not None and found.supplier_order_id == placed.supplier_order_id
        snapshot = again.orders()
        assert snapshot["by_reference"][0]["count"] == 1
        again.reset()
        assert again.orders()["orders"] == []


def test_fake_products_are_seeded_and_its_admin_speaks_http() -> None:
    first = SupplierState(FakeConfig(seed=5)).product("SPOCKET", "sp-1")
    assert first == SupplierState(FakeConfig(seed=5)).product("SPOCKET", "sp-1")
    assert first != SupplierState(FakeConfig(seed=6)).product("SPOCKET", "sp-1")
    assert first is not None and 1 <= len(first["variants"]) <= 3
    with SupplierServerProcess(seed=5) as proc:
        assert proc.product("SPOCKET", "sp-1") == first
        proc.configure(removed_products=["sp-1"], product_overrides={"sp-2": {"stock": 3}})
        assert proc.product("SPOCKET", "sp-1") is None
        got = fetch("SPOCKET", proc, ["sp-1", "sp-2"])
        assert [p.stock for p in got if p.source_id == "sp-2"] == [3] * len(proc.product("SPOCKET", "sp-2")["variants"])
        seen = proc.requests()
        assert seen["product_requests"]["SPOCKET"] == 1
        assert sum(seen["per_second"]["SPOCKET"].values()) == 1
        with pytest.raises(RuntimeError, match="unknown keys"):
            proc.configure(product_overrides={"sp-3": {"colour": "red"}})
        ae = proc.product("ALIEXPRESS", "ae-1")
        assert ae is not None
        ref = ae["variants"][0]["id"]
        truth = SupplierState(FakeConfig(seed=5)).cheapest_freight("ALIEXPRESS", "ae-1", ref, "US")
        assert truth is not None and proc.freight("ALIEXPRESS", "ae-1", ref, "US") == truth
        proc.configure(freight_overrides={"ae-1": None})
        assert proc.freight("ALIEXPRESS", "ae-1", ref, "US") is None


def test_aliexpress_products_are_asked_for_the_given_destination(fake: FakeSupplierServer) -> None:
    """AliExpress prices and stock per destination: a sync asks for its store's country, else the account's."""
    fetch("ALIEXPRESS", fake, IDS[:2])
    catalog_run("ALIEXPRESS", fake, lambda a: a.fetch_products(IDS[2:5], "GB"))
    assert fake.requests()["aliexpress_ship_to"] == {"US": 2, "GB": 3}
    # The other suppliers' answers do not depend on it: the same entries either way.
    for provider in ("CJ_DROPSHIPPING", "SPOCKET"):
        assert catalog_run(provider, fake, lambda a: a.fetch_products(IDS[:3], "GB")) == fetch(provider, fake, IDS[:3])
