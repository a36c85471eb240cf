"""The supplier order executor against real PostgreSQL and the fake supplier on
loopback: each supplier order placed exactly once, whatever fails and however
often a command is repeated."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import asyncpg
import pytest

from connectors.fulfillment.executor import Executor
from connectors.fulfillment.tracking import poll_once
from connectors.postgres.pool import create_pool
from models.orders import (
    Address,
    CommandType,
    Customer,
    OrderEvent,
    SupplierLine,
    SupplierOrderCommand,
    SupplierOrderFailed,
    SupplierOrderPlaced,
    TrackingReceived,
    supplier_key,
)
from tests.fakes.clients import PROVIDERS, make_adapter
from tests.fakes.supplier_server import FakeCredentials, FakeSupplierServer


@pytest.fixture(scope="module")
def server() -> Iterator[FakeSupplierServer]:
    with FakeSupplierServer(seed=7) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeSupplierServer) -> FakeSupplierServer:
    server.reset()
    return server


def command(order: str, provider: str = "CJ_DROPSHIPPING", kind: CommandType = CommandType.PLACE_SUPPLIER_ORDER,
            attempt: int = 1) -> SupplierOrderCommand:
    key = supplier_key(order, provider)
    return SupplierOrderCommand(
        command_id=f"{key}:{kind.value}:{attempt}", type=kind, idempotency_key=key, reference=key,
        order_id=order, store_id="s1", order_number="#1", group_id=provider, provider=provider, attempt=attempt,
        lines=(SupplierLine(line_id="l1", product_id="p1", source_id="SRC-1", quantity=1),),
        shipping_address=Address(name="Ada", line1="1 Main St", city="Austin", country_code="US"),
        customer=Customer(name="Ada", email="ada@example.com"), issued_at=datetime.now(timezone.utc),
    )


def at_supplier(fake: FakeSupplierServer, provider: str, reference: str) -> int:
    return sum(r["count"] for r in fake.orders()["by_reference"]
               if r["provider"] == provider and r["reference"] == reference)


async def _with_executor(dsn: str, fake: FakeSupplierServer, body: Any, creds: FakeCredentials | None = None) -> Any:
    pool = await create_pool(dsn, max_size=10)
    clients = {p: make_adapter(p, fake, **({"creds": creds} if creds else {})) for p in PROVIDERS}
    try:
        return await body(Executor(pool, clients), pool)
    finally:
        await pool.close()
        for client in clients.values():
            await client.aclose()


def run(dsn: str, fake: FakeSupplierServer, body: Any, **kw: Any) -> Any:
    return asyncio.run(_with_executor(dsn, fake, body, **kw))


async def status(pool: asyncpg.Pool, key: str) -> str:
    return str(await pool.fetchval("SELECT status FROM supplier_orders WHERE idempotency_key = $1", key))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_places_once_and_reports_again_on_repeat(pg_dsn: str, fake: FakeSupplierServer, provider: str) -> None:
    cmd = command("o1", provider)

    async def body(executor: Executor, pool: asyncpg.Pool) -> list[OrderEvent | None]:
        return [await executor.run(cmd), await executor.run(cmd), await executor.run(cmd)]

    events = run(pg_dsn, fake, body)
    assert all(isinstance(e, SupplierOrderPlaced) for e in events)
    assert len({e.supplier_order_id for e in events}) == 1 and len({e.event_id for e in events}) == 1
    assert at_supplier(fake, provider, cmd.reference) == 1


def test_concurrent_repeats_place_once(pg_dsn: str, fake: FakeSupplierServer) -> None:
    cmd = command("o2")

    async def body(executor: Executor, pool: asyncpg.Pool) -> list[OrderEvent | None]:
        return list(await asyncio.gather(*(executor.run(cmd) for _ in range(8))))

    events = run(pg_dsn, fake, body)
    assert all(isinstance(e, SupplierOrderPlaced) for e in events)
    assert at_supplier(fake, "CJ_DROPSHIPPING", cmd.reference) == 1


def test_500_after_the_supplier_recorded_it_is_found_not_placed_again(pg_dsn: str, fake: FakeSupplierServer) -> None:
    fake.configure(next_failures=["500_after_record"])
    cmd = command("o3")

    async def body(executor: Executor, pool: asyncpg.Pool) -> tuple[OrderEvent | None, OrderEvent | None]:
        return await executor.run(cmd), await executor.run(cmd)

    first, second = run(pg_dsn, fake, body)
    assert isinstance(first, SupplierOrderPlaced) and isinstance(second, SupplierOrderPlaced)
    assert at_supplier(fake, "CJ_DROPSHIPPING", cmd.reference) == 1


@pytest.mark.parametrize("kind", ["500", "timeout"])
def test_unknown_outcome_not_there_fails_retryable_then_the_retry_looks_first(
    pg_dsn: str, fake: FakeSupplierServer, kind: str
) -> None:
    fake.configure(next_failures=[kind])
    first_cmd, retry_cmd = command("o4"), command("o4", attempt=2)

    async def body(executor: Executor, pool: asyncpg.Pool) -> tuple[Any, str, Any, str]:
        first = await executor.run(first_cmd)
        after_first = await status(pool, first_cmd.idempotency_key)
        second = await executor.run(retry_cmd)
        return first, after_first, second, await status(pool, first_cmd.idempotency_key)

    first, after_first, second, after_second = run(pg_dsn, fake, body)
    assert isinstance(first, SupplierOrderFailed) and first.retryable and "not found at the supplier" in first.error
    assert after_first == "UNKNOWN"
    assert isinstance(second, SupplierOrderPlaced) and second.attempt == 2 and after_second == "PLACED"
    assert at_supplier(fake, "CJ_DROPSHIPPING", first_cmd.reference) == 1


def test_rate_limited_fails_retryable_and_is_placed_next_time(pg_dsn: str, fake: FakeSupplierServer) -> None:
    fake.configure(next_failures=["429"])

    async def body(executor: Executor, pool: asyncpg.Pool) -> tuple[Any, Any]:
        return await executor.run(command("o5")), await executor.run(command("o5", attempt=2))

    first, second = run(pg_dsn, fake, body)
    assert isinstance(first, SupplierOrderFailed) and first.retryable and first.event_id.endswith(":failed:1")
    assert isinstance(second, SupplierOrderPlaced)


def test_rejection_fails_for_good(pg_dsn: str, fake: FakeSupplierServer) -> None:
    bad = FakeCredentials(cj_access_token="wrong")

    async def body(executor: Executor, pool: asyncpg.Pool) -> Any:
        return await executor.run(command("o6"))

    event = run(pg_dsn, fake, body, creds=bad)
    assert isinstance(event, SupplierOrderFailed) and not event.retryable
    assert at_supplier(fake, "CJ_DROPSHIPPING", command("o6").reference) == 0


def test_crash_during_the_call_is_resolved_by_lookup(pg_dsn: str, fake: FakeSupplierServer) -> None:
    """An executor died after the supplier took the order, before recording it: IN_FLIGHT."""
    cmd = command("o7", "ALIEXPRESS")

    async def body(executor: Executor, pool: asyncpg.Pool) -> Any:
        adapter = executor.clients["ALIEXPRESS"]
        await adapter.place_order(cmd.reference, cmd.lines, cmd.shipping_address, cmd.customer)
        await pool.execute(
            "INSERT INTO supplier_orders (idempotency_key, order_id, store_id, group_id, provider, reference, status)"
            " VALUES ($1, $2, 's1', $3, $3, $1, 'IN_FLIGHT')", cmd.idempotency_key, cmd.order_id, cmd.provider)
        return await executor.run(cmd)

    event = run(pg_dsn, fake, body)
    assert isinstance(event, SupplierOrderPlaced)
    assert at_supplier(fake, "ALIEXPRESS", cmd.reference) == 1


def test_cancel_before_placement_blocks_it_and_cancel_after_cancels_there(pg_dsn: str, fake: FakeSupplierServer) -> None:
    fake.configure(tracking_delay_s=3600)  # not shipped yet, so cancellable
    early = command("o8")
    late = command("o9", "SPOCKET")

    async def body(executor: Executor, pool: asyncpg.Pool) -> tuple[Any, str, Any, str]:
        assert await executor.run(command("o8", kind=CommandType.CANCEL_SUPPLIER_ORDER)) is None
        refused = await executor.run(early)
        placed = await executor.run(late)
        assert isinstance(placed, SupplierOrderPlaced)
        await executor.run(command("o9", "SPOCKET", kind=CommandType.CANCEL_SUPPLIER_ORDER))
        return refused, await status(pool, early.idempotency_key), placed, await status(pool, late.idempotency_key)

    refused, early_status, placed, late_status = run(pg_dsn, fake, body)
    assert isinstance(refused, SupplierOrderFailed) and not refused.retryable
    assert early_status == "CANCELLED" and at_supplier(fake, "CJ_DROPSHIPPING", early.reference) == 0
    assert late_status == "CANCELLED"
    assert [o["cancelled"] for o in fake.orders()["orders"] if o["reference"] == late.reference] == [True]


def test_no_account_for_a_provider_fails_for_good(pg_dsn: str, fake: FakeSupplierServer) -> None:
    async def body(executor: Executor, pool: asyncpg.Pool) -> Any:
        return await executor.run(command("o10", "NEWSUPPLIER"))

    event = run(pg_dsn, fake, body)
    assert isinstance(event, SupplierOrderFailed) and not event.retryable and "NEWSUPPLIER" in event.error


def test_tracking_poller_publishes_tracking_once_per_round(pg_dsn: str, fake: FakeSupplierServer) -> None:
    published: list[OrderEvent] = []

    async def publish(events: list[OrderEvent]) -> None:
        published.extend(events)

    async def body(executor: Executor, pool: asyncpg.Pool) -> tuple[int, int]:
        await executor.run(command("o11", "ALIEXPRESS"))
        first = await poll_once(pool, executor.clients, publish, interval=3600)
        second = await poll_once(pool, executor.clients, publish, interval=3600)  # checked just now: nothing
        return first, second

    first, second = run(pg_dsn, fake, body)
    assert (first, second) == (1, 0)
    (event,) = published
    assert isinstance(event, TrackingReceived) and event.group_id == "ALIEXPRESS"
    assert event.event_id == f"{supplier_key('o11', 'ALIEXPRESS')}:tracking:{event.tracking_number}"


def _unreachable_url() -> str:
    """A loopback address nothing listens on: the supplier is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/down"


class _Down:
    """Where an adapter is pointed when its supplier is down."""

    def __init__(self) -> None:
        self.url = _unreachable_url()

    def base_url(self, provider: str) -> str:
        return self.url


def test_a_cancelling_row_blocks_placement_and_is_cancelled_when_the_supplier_answers(
    pg_dsn: str, fake: FakeSupplierServer
) -> None:
    fake.configure(tracking_delay_s=3600)  # not shipped: cancellable
    order = command("o-down", "SPOCKET")

    async def body(executor: Executor, pool: asyncpg.Pool) -> None:
        placed = await executor.run(order)
        assert isinstance(placed, SupplierOrderPlaced)
        down = make_adapter("SPOCKET", _Down(), read_attempts=1)
        try:
            cancel = command("o-down", "SPOCKET", kind=CommandType.CANCEL_SUPPLIER_ORDER)
            assert await Executor(pool, {"SPOCKET": down}).run(cancel) is None  # done, not raised
        finally:
            await down.aclose()
        assert await status(pool, order.idempotency_key) == "CANCELLING"
        # A placement of it (a replay, a late re-issue) never passes a wanted cancel.
        again = await executor.run(command("o-down", "SPOCKET", attempt=2))
        assert isinstance(again, SupplierOrderFailed) and not again.retryable
        # The supplier answers again: the reconciler carries the cancel out, once.
        assert await executor.retry_cancels(0.0) == 1
        assert await status(pool, order.idempotency_key) == "CANCELLED"
        assert await executor.retry_cancels(0.0) == 0

    run(pg_dsn, fake, body)
    assert [o["cancelled"] for o in fake.orders()["orders"] if o["reference"] == order.reference] == [True]


def test_a_cancelling_row_the_supplier_refuses_for_good_is_not_tried_again(
    pg_dsn: str, fake: FakeSupplierServer
) -> None:
    fake.configure(tracking_delay_s=3600)
    order = command("o-gone", "SPOCKET")

    async def body(executor: Executor, pool: asyncpg.Pool) -> None:
        assert isinstance(await executor.run(order), SupplierOrderPlaced)
        down = make_adapter("SPOCKET", _Down(), read_attempts=1)
        try:
            await Executor(pool, {"SPOCKET": down}).run(command("o-gone", "SPOCKET", kind=CommandType.CANCEL_SUPPLIER_ORDER))
        finally:
            await down.aclose()
        assert await status(pool, order.idempotency_key) == "CANCELLING"
        fake.reset()  # the supplier no longer knows the order: its cancel is a 404, refused for good
        assert await executor.retry_cancels(0.0) == 1
        assert await status(pool, order.idempotency_key) == "PLACED"
        assert await executor.retry_cancels(0.0) == 0

    run(pg_dsn, fake, body)
