"""models.inventory.ChangeDraft: the change record's JSON built without the model is
byte for byte the model's JSON (streams.codecs.encode), whatever the values."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from models.events import ChangedField, ChangeReason, ProductStatus, SupplierSnapshot, default_settings
from models.inventory import ChangeDraft, apply_snapshot
from models.product import ProductState, to_micros
from streams.codecs import encode

money = st.one_of(
    st.decimals(min_value=0, max_value=10**7, places=2, allow_nan=False, allow_infinity=False),
    st.sampled_from([Decimal("0"), Decimal("1E+3"), Decimal("10.500"), Decimal("0.10"), Decimal("12")]),
)
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                       timezones=st.just(timezone.utc))
text = st.text(min_size=1, max_size=12)


@st.composite
def states(draw: st.DrawFn) -> ProductState:
    return ProductState(
        provider=draw(st.sampled_from(["ALIEXPRESS", "CJ_DROPSHIPPING", "SPOCKET"])), source_id=draw(text),
        available=draw(st.booleans()), stock=draw(st.integers(0, 10**6)), cost_price=draw(money),
        shipping_cost=draw(money), currency=draw(st.sampled_from(["USD", "EUR", "JPY"])),
        selling_price=draw(money), compare_at_price=draw(st.one_of(st.none(), money)),
        status=draw(st.sampled_from(list(ProductStatus))), captured_at_us=to_micros(draw(moments)),
        sync_run_id=draw(st.one_of(st.none(), text)),
    )


@settings(max_examples=300, deadline=None)
@given(
    before=st.one_of(st.none(), states()), after=states(), variant=st.one_of(st.none(), text),
    reason=st.sampled_from(list(ChangeReason)),
    changed=st.lists(st.sampled_from(list(ChangedField)), max_size=8, unique=True),
    ids=st.tuples(text, text, text),
)
def test_the_draft_s_json_is_the_model_s(before: ProductState | None, after: ProductState, variant: str | None,
                                         reason: ChangeReason, changed: list[ChangedField],
                                         ids: tuple[str, str, str]) -> None:
    draft = ChangeDraft(ids[0], ids[1], ids[2], variant, reason, tuple(changed), before, after)
    assert draft.json() == encode(draft.model())


def test_a_snapshot_s_change_is_the_same_record_as_before() -> None:
    """Through apply_snapshot: the outcome's change (model) and its bytes agree."""
    store = default_settings("s")

    def snap(stock: int, cost: str, minute: int) -> SupplierSnapshot:
        return SupplierSnapshot(store_id="s", product_id="p", variant_id="v", provider="ALIEXPRESS", source_id="x",
                                stock=stock, cost_price=Decimal(cost), currency="USD",
                                captured_at=datetime(2026, 11, 1, 0, minute, 0, 250_000, tzinfo=timezone.utc),
                                sync_run_id="run-1")

    first = apply_snapshot(None, snap(10, "5.00", 0), store)
    second = apply_snapshot(first.state, snap(4, "7.25", 1), store)
    for outcome in (first, second):
        assert outcome.draft is not None and outcome.change is not None
        assert outcome.draft.json() == encode(outcome.change)
    assert second.change is not None and second.change.before is not None
    assert (second.change.before.stock, second.change.after.stock) == (10, 4)
