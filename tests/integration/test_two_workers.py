"""Two workers split the partitions; either answers for any store (routed to the owner)."""

from __future__ import annotations

from tests.harness import cli_publish, wait_for

STORES = [f"store-{i:02d}" for i in range(16)]


def test_two_workers_split_partitions_and_route_views(broker, spawn) -> None:  # type: ignore[no-untyped-def]
    first = spawn("w1")
    first.wait_ready()
    second = spawn("w2")
    second.wait_ready(timeout=30)

    pages = [
        [
            {
                "store_id": store,
                "product_id": f"p{n}",
                "provider": "SPOCKET",
                "source_id": f"S{n}",
                "stock": 10 + n,
                "cost_price": f"{5 + n}.00",
                "currency": "EUR",
                "captured_at": "2026-11-01T10:00:00Z",
            }
            for n in range(3)
        ]
        for store in STORES
    ]
    assert cli_publish(broker, "supplier.snapshots", pages).returncode == 0

    def both_ready_and_split() -> bool:
        bodies = [w.health() for w in (first, second)]
        return all(b and b["ready"] for b in bodies)

    wait_for(both_ready_and_split, timeout=30, what="both workers ready after the rebalance")

    def all_answered() -> bool:
        for store in STORES:
            for worker in (first, second):
                response = worker.get(f"/stores/{store}/products/p2")
                if response.status_code != 200:
                    return False
        return True

    wait_for(all_answered, timeout=60, what="every store answered by both workers")

    for store in STORES:
        a = first.get(f"/stores/{store}/products/p2").json()
        b = second.get(f"/stores/{store}/products/p2").json()
        assert a == b
        assert a["store_id"] == store and a["stock"] == 12 and a["currency"] == "EUR"
        listing = second.get(f"/stores/{store}/products").json()
        assert listing["count"] == 3

    # The partitions really are split: each worker owns some of them.
    actives = [w.health()["components"]["rebalance"]["detail"] for w in (first, second)]
    counts = [int(detail.split()[0]) for detail in actives]
    assert all(c > 0 for c in counts), actives
