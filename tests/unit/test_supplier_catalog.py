"""The product fetch's pure parts: reading supplier values at the edge, the
batching helper, the supplier product -> ``SupplierSnapshot`` mapping, and the
registry's catalogs (no network)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from pydantic import ValidationError

from connectors.suppliers.base import OutcomeUnknown, Rejected, SupplierProduct
from connectors.suppliers.catalog import (
    PRODUCT_GONE,
    chunks,
    fetch_batched,
    image_list,
    money,
    stock,
    unique_ids,
)
from connectors.suppliers.snapshots import NoCostKnown, snapshot_of

CAPTURED = datetime(2026, 11, 24, 7, 0, tzinfo=timezone.utc)


def product(**changes: object) -> SupplierProduct:
    values: dict[str, object] = {
        "source_id": "1005001",
        "source_variant_id": "14:193#Red",
        "available": True,
        "stock": 7,
        "cost_price": Decimal("12.30"),
        "shipping_cost": Decimal("1.50"),
        "currency": "USD",
        "title": "Red mug",
        "images": ("https://img.test/1.jpg",),
    }
    values.update(changes)
    return SupplierProduct(**values)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- #
# Values at the edge
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("12.30", Decimal("12.30")), (12.3, Decimal("12.3")), (0.1, Decimal("0.1")), (7, Decimal("7")), (" 5.00 ", Decimal("5.00"))],
)
def test_money_reads_numbers_and_strings_through_str(raw: object, expected: Decimal) -> None:
    value = money(raw, "price")
    assert value == expected and isinstance(value, Decimal)
    assert value.as_tuple() == expected.as_tuple()  # 0.1 is 0.1, not 0.1000000000000000055...


@pytest.mark.parametrize("raw", [None, True, "", "2.09 -- 7.46", "-1", "NaN", "Infinity", "abc", float("nan")])
def test_money_refuses_what_is_not_a_price(raw: object) -> None:
    with pytest.raises(OutcomeUnknown, match="unreadable price"):
        money(raw, "price")


def test_stock_reads_counts() -> None:
    assert stock(5) == 5 and stock("12") == 12 and stock(-3) == 0 and stock(4.0) == 4
    for bad in (2.5, "x", None, False):
        with pytest.raises(OutcomeUnknown):
            stock(bad)


@pytest.mark.parametrize(
    ("reason", "gone"),
    [
        ("isv.product-not-exist: The product does not exist or has been removed", True),
        ("CJ 1605001: Product does not exist or has been removed", True),
        ("Item is offline", True),
        ("product has been delisted", True),
        ("InvalidApiPath: The specified API 'aliexpress.ds.product.get' is not found", False),
        ("CJ 1603001: Order does not exist", False),
        ("CJ 1600001: Invalid API key or access token", False),
        ("IncompleteSignature: The request signature does not conform to platform standards", False),
    ],
)
def test_product_gone_is_about_products_only(reason: str, gone: bool) -> None:
    assert bool(PRODUCT_GONE.search(reason)) is gone


def test_image_list_shapes() -> None:
    assert image_list("https://a.test/1.jpg;https://a.test/2.jpg") == ("https://a.test/1.jpg", "https://a.test/2.jpg")
    assert image_list([{"src": "https://a.test/1.jpg"}, {"url": "https://a.test/1.jpg"}, "ftp://x", 3]) == (
        "https://a.test/1.jpg",
    )
    assert image_list(None) == ()


def test_supplier_product_guards_money_and_stock() -> None:
    with pytest.raises(ValueError, match="Decimal"):
        product(cost_price=12.3)
    with pytest.raises(ValueError, match="stock"):
        product(stock=-1)
    with pytest.raises(ValueError, match="cost price"):
        product(cost_price=None)
    gone = SupplierProduct.gone("1005001", "USD")
    assert (gone.available, gone.stock, gone.cost_price, gone.source_variant_id) == (False, 0, None, None)


# --------------------------------------------------------------------------- #
# Batching
# --------------------------------------------------------------------------- #


def test_unique_ids_and_chunks() -> None:
    assert unique_ids(["b", "a", "b", " a ", "c"]) == ["b", "a", "c"]
    with pytest.raises(ValueError):
        unique_ids(["a", " "])
    assert chunks(["a", "b", "c", "d", "e"], 2) == [["a", "b"], ["c", "d"], ["e"]]
    with pytest.raises(ValueError):
        chunks(["a"], 0)


def test_fetch_batched_dedupes_splits_bounds_and_keeps_order() -> None:
    calls: list[list[str]] = []
    in_flight = peak = 0

    async def fetch_batch(ids: list[str]) -> list[SupplierProduct]:
        nonlocal in_flight, peak
        calls.append(ids)
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01 * (5 - len(calls) % 5))  # finish out of order
        in_flight -= 1
        # answer in reverse, two variants each
        return [product(source_id=i, source_variant_id=f"{i}-{v}") for i in reversed(ids) for v in (1, 2)]

    ids = [f"p{n}" for n in range(11)] + ["p3", "p0"]
    got = asyncio.run(fetch_batched(ids, 3, fetch_batch, concurrency=2))
    assert sorted(calls) == sorted([["p0", "p1", "p2"], ["p3", "p4", "p5"], ["p6", "p7", "p8"], ["p9", "p10"]])
    assert peak == 2
    assert [p.source_variant_id for p in got] == [f"p{n}-{v}" for n in range(11) for v in (1, 2)]


def test_fetch_batched_fails_with_the_port_error_and_stops_the_rest() -> None:
    finished: list[str] = []

    async def fetch_batch(ids: list[str]) -> list[SupplierProduct]:
        if ids == ["b"]:
            raise Rejected("HTTP 401: bad key")
        await asyncio.sleep(0.2)
        finished.append(ids[0])
        return []

    with pytest.raises(Rejected, match="bad key"):  # the port's error itself, not an ExceptionGroup
        asyncio.run(fetch_batched(["a", "b", "c"], 1, fetch_batch, concurrency=3))
    assert finished == []  # the other calls were cancelled


# --------------------------------------------------------------------------- #
# SupplierProduct -> SupplierSnapshot
# --------------------------------------------------------------------------- #


def test_snapshot_of_an_available_variant() -> None:
    snap = snapshot_of(
        product(), provider="aliexpress", store_id="s1", product_id="P1", variant_id="V1",
        captured_at=CAPTURED, sync_run_id="run-7",
    )
    assert (snap.store_id, snap.product_id, snap.variant_id, snap.provider) == ("s1", "P1", "V1", "ALIEXPRESS")
    assert (snap.source_id, snap.available, snap.stock) == ("1005001", True, 7)
    assert snap.cost_price == Decimal("12.30") and snap.shipping_cost == Decimal("1.50")
    assert (snap.currency, snap.title, snap.images, snap.sync_run_id) == ("USD", "Red mug", ("https://img.test/1.jpg",), "run-7")
    assert snap.captured_at == CAPTURED
    # money travels as decimal strings on the wire
    wire = json.loads(snap.model_dump_json())
    assert wire["cost_price"] == "12.30" and wire["shipping_cost"] == "1.50"


def test_snapshot_of_a_removed_product_keeps_the_last_cost() -> None:
    gone = SupplierProduct.gone("1005001", "USD")
    snap = snapshot_of(
        gone, provider="CJ_DROPSHIPPING", store_id="s1", product_id="P1", variant_id=None,
        captured_at=CAPTURED, last_known_cost=Decimal("8.10"),
    )
    assert (snap.available, snap.stock, snap.cost_price) == (False, 0, Decimal("8.10"))


def test_snapshot_of_a_removed_product_with_a_price_and_stock_still_says_zero() -> None:
    delisted = product(available=False, stock=4, cost_price=Decimal("3.00"))
    snap = snapshot_of(
        delisted, provider="SPOCKET", store_id="s1", product_id="P1", variant_id="V1",
        captured_at=CAPTURED, last_known_cost=Decimal("9.99"),
    )
    assert (snap.available, snap.stock, snap.cost_price) == (False, 0, Decimal("3.00"))


def test_snapshot_of_a_removed_product_without_any_cost_is_refused() -> None:
    with pytest.raises(NoCostKnown):
        snapshot_of(
            SupplierProduct.gone("1005001", "USD"), provider="SPOCKET", store_id="s1", product_id="P1",
            variant_id=None, captured_at=CAPTURED,
        )


def test_snapshot_times_are_aware_and_utc() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        snapshot_of(product(), provider="SPOCKET", store_id="s1", product_id="P1", variant_id=None,
                    captured_at=datetime(2026, 11, 24, 7, 0))
    paris = datetime(2026, 11, 24, 8, 0, tzinfo=timezone(timedelta(hours=1)))
    snap = snapshot_of(product(), provider="SPOCKET", store_id="s1", product_id="P1", variant_id=None,
                       captured_at=paris)
    assert snap.captured_at == CAPTURED and snap.captured_at.utcoffset() == timedelta(0)


def test_snapshot_refuses_ids_the_event_refuses() -> None:
    with pytest.raises(ValidationError):
        snapshot_of(product(), provider="SPOCKET", store_id="s|1", product_id="P1", variant_id=None,
                    captured_at=CAPTURED)


# --------------------------------------------------------------------------- #
# Registry
# --------------------------------------------------------------------------- #


def test_catalogs_are_the_order_clients(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from connectors.suppliers.registry import SupplierAccounts, build_catalogs, build_clients, catalogs_of

    monkeypatch.delenv("OPS_SUPPLIER_SECRETS_FILE", raising=False)
    for name in ("OPS_ALIEXPRESS_APP_KEY", "OPS_ALIEXPRESS_APP_SECRET", "OPS_ALIEXPRESS_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPS_CJ_ACCESS_TOKEN", "cj-token")
    monkeypatch.setenv("OPS_SPOCKET_API_KEY", "sp-key")
    monkeypatch.setenv("OPS_CJ_PRODUCT_BATCH", "1")
    monkeypatch.setenv("OPS_SUPPLIER_FETCH_CONCURRENCY", "2")
    accounts = SupplierAccounts.load()
    clients = build_clients(accounts)
    catalogs = catalogs_of(clients)
    assert sorted(catalogs) == ["CJ_DROPSHIPPING", "SPOCKET"]
    assert all(catalogs[p] is clients[p] for p in catalogs)  # one bucket and breaker per account
    assert catalogs["CJ_DROPSHIPPING"].max_batch == 1 and catalogs["SPOCKET"].max_batch == 50
    assert catalogs["SPOCKET"].fetch_concurrency == 2  # type: ignore[attr-defined]
    others = build_catalogs(accounts)
    assert sorted(others) == ["CJ_DROPSHIPPING", "SPOCKET"]
    for client in [*clients.values(), *others.values()]:
        asyncio.run(client.aclose())  # type: ignore[attr-defined]
    monkeypatch.setenv("OPS_CJ_PRODUCT_BATCH", "21")
    with pytest.raises(SystemExit, match="OPS_CJ_PRODUCT_BATCH"):
        SupplierAccounts.load()
