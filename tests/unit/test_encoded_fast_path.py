"""apply_snapshot_encoded decides exactly as apply_snapshot (property test)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from models.events import SupplierSnapshot, default_settings
from models.inventory import SnapshotResult, apply_snapshot, apply_snapshot_encoded
from models.product import decode_state, encode_state

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
SETTINGS = default_settings("s")

step = st.fixed_dictionaries(
    {
        "minutes": st.integers(min_value=-3, max_value=5),
        "stock": st.sampled_from([0, 1, 3, 5, 6, 20]),
        "available": st.booleans(),
        "cost": st.sampled_from(["10.00", "10.0", "11.00", "9.00", "20.00", "0"]),
        "shipping": st.sampled_from(["0", "1.50", "1.5"]),
        "provider": st.sampled_from(["ALIEXPRESS", "SPOCKET"]),
        "sync": st.sampled_from([None, "run-1"]),
    }
)


def make(i: int, s: dict) -> SupplierSnapshot:  # type: ignore[type-arg]
    return SupplierSnapshot(
        store_id="s",
        product_id="p",
        provider=s["provider"],
        source_id="x",
        available=s["available"],
        stock=s["stock"],
        cost_price=Decimal(s["cost"]),
        shipping_cost=Decimal(s["shipping"]),
        currency="USD",
        captured_at=T0 + timedelta(minutes=i * 2 + s["minutes"]),
        sync_run_id=s["sync"],
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(step, min_size=1, max_size=12))
def test_encoded_path_equals_the_plain_diff(steps: list[dict]) -> None:  # type: ignore[type-arg]
    state = None
    raw = None
    for i, s in enumerate(steps):
        snap = make(i, s)
        plain = apply_snapshot(state, snap, SETTINGS)
        fast, encoded = apply_snapshot_encoded(raw, snap, SETTINGS)
        assert fast.result == plain.result
        assert fast.durable == plain.durable
        assert (fast.change is None) == (plain.change is None)
        if plain.change is not None:
            assert fast.change == plain.change
        assert [a.alert_id for a in fast.opened] == [a.alert_id for a in plain.opened]
        assert fast.closed == plain.closed
        if plain.state is None:
            assert encoded is None
        else:
            assert encoded is not None
            assert decode_state(encoded) == plain.state
            state, raw = plain.state, encoded
        if plain.result is SnapshotResult.UNCHANGED:
            assert encoded == encode_state(plain.state)
