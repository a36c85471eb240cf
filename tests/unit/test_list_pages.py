"""The product and alert list views' pages (``models.product.product_page``, ``models.alerts.alert_page``):
every item once, in order, across pages, whatever the page size, with or without a status filter."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from models.alerts import alert_cursor, alert_page
from models.events import ProductStatus
from models.product import ProductState, encode_state, product_cursor, product_key, product_page
from tests.unit.test_product_state import state

STORE = "s1"


def catalogue(products: list[tuple[str, str | None, bool]]) -> dict[str, bytes]:
    """Product table entries of STORE (and of another store, which must never show)."""
    data: dict[str, bytes] = {}
    for product_id, variant_id, active in products:
        st_: ProductState = state(
            stock=5 if active else 0, status=ProductStatus.ACTIVE if active else ProductStatus.OUT_OF_STOCK
        )
        data[product_key(STORE, product_id, variant_id)] = encode_state(st_)
        data[product_key("other", product_id, variant_id)] = encode_state(st_)
    return data


def walk(keys: list[str], data: dict[str, bytes], limit: int, status: ProductStatus | None) -> list[str]:
    """Every page, following ``next`` until there is none."""
    seen: list[str] = []
    totals: set[int] = set()
    after = None
    while True:
        page, more, total = product_page(keys, data, after, limit, status)
        totals.add(total)
        seen.extend(key for key, _ in page)
        if not more:
            assert totals == {len(seen)}  # every page says how many the whole list holds
            return seen
        assert len(page) == limit
        after = product_cursor(page[-1][0])


ids = st.text(alphabet="abAB019-_", min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(ids, st.one_of(st.none(), ids), st.booleans()), unique_by=lambda t: (t[0], t[1] or ""),
             max_size=40),
    st.integers(1, 7),
    st.sampled_from([None, ProductStatus.ACTIVE, ProductStatus.OUT_OF_STOCK]),
)
def test_product_pages_list_every_product_of_the_store_once_in_order(
    products: list[tuple[str, str | None, bool]], limit: int, status: ProductStatus | None
) -> None:
    data = catalogue(products)
    keys = [k for k in data if k.startswith(f"{STORE}|")]
    expected = sorted(
        (product_key(STORE, p, v) for p, v, active in products
         if status is None or (status is ProductStatus.ACTIVE) == active),
        key=lambda k: tuple(k.split("|")[1:]),
    )
    assert walk(keys, data, limit, status) == expected


def test_product_order_is_by_product_then_variant_not_by_key_text() -> None:
    # "p1|" sorts after "p1a|" as text ('|' > 'a'); the list orders p1 (all its variants) first.
    data = catalogue([("p1a", None, True), ("p1", "v2", True), ("p1", None, True), ("p1", "v1", True)])
    keys = [k for k in data if k.startswith(f"{STORE}|")]
    page, more, _ = product_page(keys, data, None, 10)
    assert [k for k, _ in page] == ["s1|p1|", "s1|p1|v1", "s1|p1|v2", "s1|p1a|"]
    assert not more
    page, more, _ = product_page(keys, data, None, 2)
    assert more and product_cursor(page[-1][0]) == "p1|v1"
    rest, more, total = product_page(keys, data, "p1|v1", 2)
    assert [k for k, _ in rest] == ["s1|p1|v2", "s1|p1a|"] and not more and total == 4


def test_a_cursor_survives_products_coming_and_going() -> None:
    data = catalogue([("a", None, True), ("b", None, True), ("c", None, True), ("d", None, True)])
    keys = [k for k in data if k.startswith(f"{STORE}|")]
    page, more, _ = product_page(keys, data, None, 2)
    cursor = product_cursor(page[-1][0])  # "b|"
    del data["s1|b|"]  # the cursor's own product goes, and a new one comes before it
    data["s1|a0|"] = data["s1|a|"]
    keys = [k for k in keys if k in data] + ["s1|a0|"]
    rest, more, _ = product_page(keys, data, cursor, 2)
    assert [k for k, _ in rest] == ["s1|c|", "s1|d|"] and not more


def test_a_key_in_the_index_but_not_in_the_table_is_skipped() -> None:
    data = catalogue([("a", None, True)])
    page, more, total = product_page(["s1|a|", "s1|gone|"], data, None, 5)
    assert [k for k, _ in page] == ["s1|a|"] and not more and total == 1


def alert(created_at: str, alert_id: str) -> dict[str, Any]:
    return {"created_at": created_at, "alert_id": alert_id, "status": "ACTIVE", "type": "STOCK_LOW"}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["2026-11-01T00:00:00Z", "2026-11-01T00:00:01Z", "2026-11-02T09:30:00Z"]),
                       st.uuids().map(str)), unique_by=lambda t: t[1], max_size=30),
    st.integers(1, 6),
)
def test_alert_pages_list_every_alert_once_newest_first(rows: list[tuple[str, str]], limit: int) -> None:
    alerts = [alert(c, a) for c, a in rows]
    seen: list[tuple[str, str]] = []
    after = None
    while True:
        page, more, total = alert_page(alerts, after, limit)
        assert total == len(alerts)
        seen.extend((a["created_at"], a["alert_id"]) for a in page)
        if not more:
            break
        assert len(page) == limit
        after = alert_cursor(page[-1])
    assert seen == sorted(rows, reverse=True)
