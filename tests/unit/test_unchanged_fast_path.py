"""apply_unchanged (parsed JSON, no full validation) never decides differently from the full path.

Property: whatever JSON object arrives, when the fast path answers, full
validation accepts the object and apply_snapshot_encoded gives the same result
and the same bytes. And it does answer for the common case it exists for.
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
from models.inventory import SnapshotResult, apply_snapshot_encoded, apply_unchanged, item_product_key

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
    "title": ["Lamp", None, "", "x" * 2001, 5, MISSING],
    "images": [MISSING, [], ["a.jpg"], "a.jpg", [1], ["x" * 2001]],
    "sync_run_id": [MISSING, None, "run-2", 7, "r" * 201],
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


@settings(max_examples=2000, deadline=None)
@given(later_item())
def test_the_fast_path_agrees_with_validation_and_the_full_diff(item: dict[str, Any]) -> None:
    raw = stored(BASE)
    item = orjson.loads(orjson.dumps(item))  # as it arrives: parsed JSON
    key = item_product_key(item)
    if key != "s|p|":
        return  # the agent finds no state under another key: full path
    fast = apply_unchanged(raw, item)
    if fast is None:
        return
    snap = SupplierSnapshot.model_validate_json(orjson.dumps(item))  # must not raise
    full, encoded = apply_snapshot_encoded(raw, snap, SETTINGS)
    assert fast[0].result is full.result
    assert fast[1] == encoded


def test_it_answers_for_a_repeat_and_a_stale_repeat() -> None:
    raw = stored(BASE)
    later = {**BASE, "captured_at": "2026-11-01T01:00:00Z", "sync_run_id": "run-2"}
    outcome, encoded = apply_unchanged(raw, later)  # type: ignore[misc]
    assert outcome.result is SnapshotResult.UNCHANGED
    full, expected = apply_snapshot_encoded(raw, SupplierSnapshot.model_validate(later), SETTINGS)
    assert encoded == expected
    assert apply_unchanged(raw, BASE) == (apply_snapshot_encoded(raw, SupplierSnapshot.model_validate(BASE), SETTINGS))


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
    assert apply_unchanged(stored(BASE), item) is None


def test_an_empty_variant_is_not_the_key_of_no_variant() -> None:
    assert item_product_key({**BASE, "variant_id": ""}) is None
    assert item_product_key({**BASE, "variant_id": None}) == "s|p|"
    with pytest.raises(ValidationError):
        SupplierSnapshot.model_validate({**BASE, "variant_id": ""})
