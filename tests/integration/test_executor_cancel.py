"""A cancel the supplier cannot take now (it is down) must not hold up the executor:
the other orders' commands go on, and the cancel is carried out once the supplier
answers again, even across a restart of the executor."""

from __future__ import annotations

import asyncio
import socket

from aiokafka.partitioner import murmur2

from models.orders import CommandType, SupplierOrderCommand, SupplierOrderPlaced
from streams import topics
from tests.fakes.clients import supplier_env
from tests.fakes.supplier_server import FakeSupplierServer
from tests.harness import Worker, produce_raw, wait_for
from tests.integration.test_executor import at_supplier, command, run

PARTITIONS = 8  # OPS_PARTITIONS' default: the topics the executor creates


def partition_of(order_id: str) -> int:
    return (murmur2(order_id.encode()) & 0x7FFFFFFF) % PARTITIONS


def unreachable_url() -> str:
    """A loopback address nothing listens on: the supplier is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/spocket"


def test_a_cancel_the_supplier_cannot_take_now_holds_up_nothing_and_is_done_later(  # type: ignore[no-untyped-def]
    broker, spawn, pg_dsn
) -> None:
    with FakeSupplierServer(seed=3, tracking_delay_s=3600) as fake:  # not shipped: cancellable
        to_cancel = command("o-cancel", "SPOCKET")
        placed = run(pg_dsn, fake, lambda executor, pool: executor.run(to_cancel))
        assert isinstance(placed, SupplierOrderPlaced)

        # Spocket is down; the executor runs one command at a time.
        env = {**supplier_env(fake, read_timeout=1.0), "OPS_SPOCKET_BASE_URL": unreachable_url()}
        common = {"command": "executor", "OPS_DATABASE_URL": pg_dsn, "OPS_EXECUTOR_METRICS_PORT": "0",
                  "OPS_TRACKING_POLL_INTERVAL": "36000", "OPS_EXECUTOR_CONCURRENCY": "1"}
        down: Worker = spawn("x1", **common, **env)

        cancel = command("o-cancel", "SPOCKET", kind=CommandType.CANCEL_SUPPLIER_ORDER).model_copy(
            update={"supplier_order_id": placed.supplier_order_id})
        # Other orders' places, on the cancel's partition and on the others.
        same = [o for o in (f"o-{i}" for i in range(400)) if partition_of(o) == partition_of("o-cancel")][:8]
        other = [o for o in (f"p-{i}" for i in range(400)) if partition_of(o) != partition_of("o-cancel")][:8]
        places = [command(o) for o in same + other]  # CJ: up

        def send(*commands: SupplierOrderCommand) -> None:
            records = [(c.order_id.encode(), c.model_dump_json().encode()) for c in commands]
            asyncio.run(produce_raw(broker, topics.ORDERS_COMMANDS, records))

        send(cancel, *places[:8])
        wait_for(lambda: sum(at_supplier(fake, "CJ_DROPSHIPPING", c.reference) for c in places[:8]) >= 3,
                 timeout=60, what="the executor at work")
        send(*places[8:])  # later, on the other partitions

        def missing() -> list[str]:
            return [c.order_id for c in places if at_supplier(fake, "CJ_DROPSHIPPING", c.reference) != 1]

        try:
            wait_for(lambda: not missing(), timeout=90, what="every other order placed while Spocket is down")
        except TimeoutError as exc:
            raise AssertionError(f"not placed: {missing()}\n{down.log_tail(20)}") from exc
        assert [o["cancelled"] for o in fake.orders()["orders"] if o["reference"] == to_cancel.reference] == [False]

        # Spocket is back, after a restart of the executor: the cancel is carried out.
        down.kill()
        spawn("x2", **common, **supplier_env(fake, read_timeout=1.0))
        wait_for(lambda: [o["cancelled"] for o in fake.orders()["orders"]
                          if o["reference"] == to_cancel.reference] == [True],
                 timeout=90, what="the cancel carried out once Spocket answers")
    assert all(at_supplier(fake, "CJ_DROPSHIPPING", c.reference) == 1 for c in places)

