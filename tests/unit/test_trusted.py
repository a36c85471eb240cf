"""``models.events.trusted`` builds the records of a transition without pydantic's
per-field loop: each use must name every field, and give the very model that
``model_construct`` and validation give."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from pydantic import BaseModel

from models.alerts import open_alert
from models.events import Alert, AlertType, InventoryChange, ProductView, SupplierSnapshot, default_settings, trusted
from models.inventory import apply_snapshot
from models.sync import SyncItem, SyncRequest, SyncTier, TrackedProduct, start_run

AT = datetime(2026, 11, 1, tzinfo=timezone.utc)


def snap(stock: int, cost: str, minutes: int) -> SupplierSnapshot:
    return SupplierSnapshot(store_id="s1", product_id="p1", provider="CJ_DROPSHIPPING", source_id="CJ1",
                            available=True, stock=stock, cost_price=Decimal(cost), currency="USD",
                            captured_at=AT + timedelta(minutes=minutes), sync_run_id="run-1")


def built() -> list[BaseModel]:
    """Every record a NEW product and a later stock-out with a price rise build with ``trusted``."""
    settings = default_settings("s1")
    first = apply_snapshot(None, snap(10, "5.00", 0), settings)
    later = apply_snapshot(first.state, snap(0, "9.00", 1), settings)
    assert first.change is not None and later.change is not None and later.change.before is not None
    assert {a.type for a in later.opened} == {AlertType.STOCK_OUT, AlertType.PRICE_INCREASE}
    request = SyncRequest(request_id="s1:MANUAL:1", store_id="s1", tier=SyncTier.MANUAL, requested_at=AT)
    tracked = [TrackedProduct("p1", None, "CJ_DROPSHIPPING", "CJ1", Decimal("5.00"), 10, True),
               TrackedProduct("p2", "v2", "SPOCKET", "S2", Decimal("1"), 0, False)]
    jobs = start_run(None, request, tracked, AT, 10, 1800).jobs
    items = [item for job in jobs for item in job.items]
    assert [type(i) for i in items] == [SyncItem, SyncItem]
    return [first.change, first.change.after, later.change, later.change.before, later.change.after, *later.opened,
            *items]


@pytest.mark.parametrize("record", built(), ids=lambda r: type(r).__name__)
def test_each_record_names_every_field_and_equals_the_validated_model(record: BaseModel) -> None:
    cls = type(record)
    assert set(record.__dict__) == set(cls.model_fields)
    assert record.model_fields_set == set(cls.model_fields)
    assert cls.model_validate_json(record.model_dump_json()) == record
    assert cls.model_construct(**record.__dict__) == record


def test_trusted_is_model_construct_for_complete_values() -> None:
    alert = open_alert(subject_key="s1|p1", store_id="s1", product_id="p1", variant_id=None,
                       alert_type=AlertType.STOCK_LOW, title="t", message="m", metadata={"k": "v"}, at=AT,
                       trigger_micros=7)
    values = dict(alert.__dict__)
    assert trusted(Alert, **values) == Alert.model_construct(**values) == alert
    assert {ProductView, InventoryChange} <= {type(r) for r in built()}
