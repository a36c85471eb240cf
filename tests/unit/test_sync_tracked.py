"""A sync request's products come from an index of each store's keys (agents/sync.py
``StoreKeys``), not a scan of the table: it must see every product of the store
however it got into the table -- the agent's own snapshots, or recovery and
standby writes the agent does not see."""

from __future__ import annotations

from collections import namedtuple
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import orjson

from models.events import SupplierSnapshot, default_settings
from models.inventory import apply_snapshot
from models.product import encode_state, product_key
from tests.unit.test_inventory_resend import processor

AT = datetime(2026, 11, 1, tzinfo=timezone.utc)
TP = namedtuple("TP", "topic partition")


def page(store: str, products: range, minute: int = 0) -> object:
    value = orjson.dumps([
        {"store_id": store, "product_id": f"p{n}", "provider": "SPOCKET", "source_id": f"S{n}", "available": True,
         "stock": 10 + n, "cost_price": "4.00", "currency": "USD",
         "captured_at": (AT + timedelta(minutes=minute)).isoformat()}
        for n in products
    ])
    return type("Msg", (), {"value": value, "key": store.encode(), "topic": "supplier.snapshots", "partition": 0,
                            "offset": minute})()


def recovered(store: str, n: int) -> tuple[str, bytes]:
    """A product record as recovery writes it into the table (behind the agent's back)."""
    snap = SupplierSnapshot(store_id=store, product_id=f"r{n}", provider="CJ_DROPSHIPPING", source_id=f"CJ{n}",
                            available=True, stock=3, cost_price=Decimal("2.00"), currency="USD", captured_at=AT)
    state = apply_snapshot(None, snap, default_settings(store)).state
    assert state is not None
    return product_key(store, f"r{n}", None), encode_state(state)


def ids(proc, store: str) -> list[str]:
    return [t.product_id for t in proc.sync.tracked(store)]


def test_a_sync_request_sees_every_product_of_its_store_and_no_other() -> None:
    proc, _ = processor()
    proc._tp = TP("supplier.snapshots", 0)
    proc.on_snapshots(page("a", range(3)))
    proc.on_snapshots(page("b", range(2)))
    assert ids(proc, "a") == ["p0", "p1", "p2"]
    assert ids(proc, "b") == ["p0", "p1"]
    assert ids(proc, "c") == []

    proc.on_snapshots(page("a", range(2, 5), minute=1))  # p2 again, p3 and p4 new: added by the agent
    assert ids(proc, "a") == ["p0", "p1", "p2", "p3", "p4"]
    tracked = {t.product_id: t for t in proc.sync.tracked("a")}
    assert tracked["p3"].stock == 13 and tracked["p3"].source_id == "S3"


def test_products_written_behind_the_agents_back_are_found_too() -> None:
    proc, _ = processor()
    proc._tp = TP("supplier.snapshots", 0)
    proc.on_snapshots(page("a", range(2)))
    assert ids(proc, "a") == ["p0", "p1"]

    key, raw = recovered("a", 1)  # recovery adds a key: the table's size tells
    proc.products.data[key] = raw
    assert ids(proc, "a") == ["p0", "p1", "r1"]

    # A rebalance drops one store's product and recovery brings another's: same size.
    del proc.products.data[product_key("a", "p0", None)]
    key, raw = recovered("b", 7)
    proc.products.data[key] = raw
    proc.store_keys.forget()  # what the agent's rebalance and recovery hooks do
    assert ids(proc, "a") == ["p1", "r1"]
    assert ids(proc, "b") == ["r7"]
