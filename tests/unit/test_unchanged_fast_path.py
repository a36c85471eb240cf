"""apply_unchanged (a page decoded by msgspec, no full validation) never decides differently
from the full path.

Property: whatever JSON object arrives, when the fast path answers, full
validation accepts the object and apply_snapshot_encoded gives the same result
and the same bytes; and what the full path validates of a decoded object
(``PageItem.as_dict``) is what it would have read from the JSON. And the fast
path does answer for the common case it exists for.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from models.events import SupplierSnapshot, default_settings
from models.inventory import (
    Outcome,
    PageItem,
    SnapshotResult,
    apply_snapshot_encoded,
    apply_unchanged,
    decode_page,
    item_product_key,
)

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
SETTINGS = default_settings("s")

BASE: dict[str, Any] = {
    "store_id": "s",
    "product_id": "p",
    "provider": "ALIEXPRESS",
    "source_id": "x1",
    "available": True,
    "stock": 7,
    "cost_price": "10.50",
    "shipping_cost": "1.50",
    "currency": "USD",
    "captured_at": "2026-11-01T00:00:00Z",
    "title": "Lamp",
}


def stored(item: dict[str, Any]) -> bytes:
    outcome, encoded = apply_snapshot_encoded(None, SupplierSnapshot.model_validate(item), SETTINGS)
    assert outcome.result is SnapshotResult.NEW and encoded is not None
    return encoded


# Values a field may take in a later snapshot: the same, equal-looking ones of
# other JSON types, other values, invalid ones, and absence.
MISSING = object()
VARIANTS: dict[str, list[Any]] = {
    "store_id": ["s", "S", " s", 5, None],
    "product_id": ["p", "p ", 1, None, "p|x", ""],
    "variant_id": [MISSING, None, "", "v", 3],
    "provider": ["ALIEXPRESS", "aliexpress", " ALIEXPRESS", "SPOCKET", 1, None],
    "source_id": ["x1", "x2", "", 1, None, "x" * 201],
    "available": [True, False, 1, 0, "true", None, MISSING],
    "stock": [7, 7.0, True, "7", 8, -1, 0, None, 2**40],
    "cost_price": ["10.50", "10.5", 10.5, 10, "10.500", "-1", "abc", None],
    "shipping_cost": ["1.50", "1.5", 1.5, "0", MISSING, None],
    "currency": ["USD", "usd", "EUR", "XXQ", 1, None],
    "captured_at": [
        "2026-11-01T00:00:00Z",
        "2026-11-01T01:00:00Z",
        "2026-11-01T01:00:00+01:00",
        "2026-11-01T02:00:00+01:00",
        "2026-11-01T03:00:00",
        "2026-11-01",
        1793494800,
        "yesterday",
        None,
        MISSING,
    ],
    "title": ["Lamp", None, "", "x" * 2001, 5, MISSING, "\U0001f600" * 2000, "\U0001f600" * 2001, "é" * 2000],
    "images": [MISSING, [], ["a.jpg"], "a.jpg", [1], ["x" * 2001], ["x" * 2000], None],
    "sync_run_id": [MISSING, None, "run-2", 7, "r" * 201, "r" * 200, ""],
    "extra": [MISSING, "anything", {"nested": [1, 2]}],
}


@st.composite
def later_item(draw: Any) -> dict[str, Any]:
    item = dict(BASE)
    for name, choices in VARIANTS.items():
        # Mostly the base value, so that the fast path's own case comes up often.
        if draw(st.integers(0, 2)) == 0:
            value = draw(st.sampled_from(choices))
            if value is MISSING:
                item.pop(name, None)
            else:
                item[name] = value
    return item


def decoded(item: dict[str, Any]) -> PageItem | None:
    """The object as the agent's page decoder reads it; None when it refuses the message."""
    page = decode_page(orjson.dumps(item))
    return None if page is None else page[0][1]


def fast(raw: bytes, item: dict[str, Any]) -> tuple[Outcome, bytes | None] | None:
    page_item = decoded(item)
    return None if page_item is None else apply_unchanged(raw, page_item)


@settings(max_examples=2000, deadline=None)
@given(later_item())
def test_the_fast_path_agrees_with_validation_and_the_full_diff(item: dict[str, Any]) -> None:
    raw = stored(BASE)
    page_item = decoded(item)
    if page_item is None:
        return  # the decoder refused the message: the full path takes all of it
    if item_product_key(page_item) != "s|p|":
        return  # the agent finds no state under another key: full path
    answer = apply_unchanged(raw, page_item)
    if answer is None:
        return
    snap = SupplierSnapshot.model_validate_json(orjson.dumps(item))  # must not raise
    full, encoded = apply_snapshot_encoded(raw, snap, SETTINGS)
    assert answer[0].result is full.result
    assert answer[1] == encoded


@settings(max_examples=1000, deadline=None)
@given(later_item())
def test_the_full_path_validates_what_the_json_said(item: dict[str, Any]) -> None:
    """A decoded object's ``as_dict`` validates to the same snapshot (or the same refusal) as its JSON."""
    page_item = decoded(item)
    if page_item is None:
        return
    text = orjson.dumps(item)
    try:
        expected: Any = SupplierSnapshot.model_validate_json(text)
    except ValidationError as exc:
        expected = sorted((e["loc"], e["type"]) for e in exc.errors())
    try:
        got: Any = SupplierSnapshot.model_validate(page_item.as_dict())
    except ValidationError as exc:
        got = sorted((e["loc"], e["type"]) for e in exc.errors())
    assert got == expected


def test_it_answers_for_a_repeat_and_a_stale_repeat() -> None:
    raw = stored(BASE)
    later = {**BASE, "captured_at": "2026-11-01T01:00:00Z", "sync_run_id": "run-2"}
    outcome, encoded = fast(raw, later)  # type: ignore[misc]
    assert outcome.result is SnapshotResult.UNCHANGED
    full, expected = apply_snapshot_encoded(raw, SupplierSnapshot.model_validate(later), SETTINGS)
    assert encoded == expected
    assert fast(raw, BASE) == apply_snapshot_encoded(raw, SupplierSnapshot.model_validate(BASE), SETTINGS)


def test_a_page_decodes_to_its_objects_in_order_and_one_object_to_itself() -> None:
    second = {**BASE, "product_id": "q"}
    page = decode_page(orjson.dumps([BASE, second]))
    assert page is not None and [(i, item_product_key(p)) for i, p in page] == [(0, "s|p|"), (1, "s|q|")]
    single = decode_page(orjson.dumps(BASE))
    assert single is not None and [(i, item_product_key(p)) for i, p in single] == [(None, "s|p|")]


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[1, 2]", b'"text"', orjson.dumps([BASE, {**BASE, "title": "x" * 2001}])],
    ids=["not-json", "not-objects", "a-string", "one-title-too-long"],
)
def test_the_decoder_refuses_what_the_full_path_must_explain(raw: bytes) -> None:
    assert decode_page(raw) is None


@pytest.mark.parametrize(
    "change",
    [
        {"stock": 6},
        {"stock": 7.0},
        {"cost_price": 10.5},
        {"cost_price": "10.5"},
        {"provider": "aliexpress"},
        {"captured_at": "2026-11-01T03:00:00"},
        {"title": "x" * 2001},
    ],
)
def test_it_leaves_anything_else_to_the_full_path(change: dict[str, Any]) -> None:
    item = {**BASE, "captured_at": "2026-11-01T01:00:00Z", **change}
    assert fast(stored(BASE), item) is None


def test_an_empty_variant_is_not_the_key_of_no_variant() -> None:
    assert item_product_key(decoded({**BASE, "variant_id": ""})) is None  # type: ignore[arg-type]
    assert item_product_key(decoded({**BASE, "variant_id": None})) == "s|p|"  # type: ignore[arg-type]
    assert item_product_key(decoded(BASE)) == "s|p|"  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        SupplierSnapshot.model_validate({**BASE, "variant_id": ""})
