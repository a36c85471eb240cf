"""Unit tests of the event contract (``models.events``), decoded as the engine does.

Every record is decoded from bytes with ``model_validate_json``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from models.events import StoreSettings, SupplierSnapshot, SyncFrequency, default_settings
from models.pricing import PriceEnding, PricingRules, Strategy

D = Decimal
UTC = timezone.utc
_MISSING = object()


def snapshot_dict(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "store_id": "store-1",
        "product_id": "prod-1",
        "provider": "ALIEXPRESS",
        "source_id": "AE-100",
        "stock": 7,
        "cost_price": "12.50",
        "currency": "USD",
        "captured_at": "2024-05-01T12:00:00Z",
    }
    for name, value in overrides.items():
        if value is _MISSING:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def raw(**overrides: Any) -> bytes:
    """JSON bytes of a snapshot; Python floats become JSON numbers (``12.5``)."""
    return json.dumps(snapshot_dict(**overrides)).encode()


def decode(data: bytes) -> SupplierSnapshot:
    return SupplierSnapshot.model_validate_json(data)


def error_locs(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[Any, ...]]:
    return [tuple(e["loc"]) for e in exc.value.errors()]


# --------------------------------------------------------------------------- #
# SupplierSnapshot: refused
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("overrides", "loc", "needle"),
    [
        pytest.param({"stock": -1}, ("stock",), "greater than or equal to 0", id="negative-stock"),
        pytest.param({"stock": 2**31}, ("stock",), "less than or equal to 2147483647", id="stock-beyond-int32"),
        pytest.param({"stock": "many"}, ("stock",), "integer", id="stock-not-a-number"),
        pytest.param({"cost_price": 12.5}, ("cost_price",), "not a float", id="float-cost"),
        pytest.param({"cost_price": 12.0}, ("cost_price",), "not a float", id="float-cost-integral-value"),
        pytest.param({"shipping_cost": 1.5}, ("shipping_cost",), "not a float", id="float-shipping"),
        pytest.param({"cost_price": "-1.00"}, ("cost_price",), "greater than or equal to 0", id="negative-cost"),
        pytest.param({"cost_price": "1.1234567"}, ("cost_price",), "decimal places", id="too-many-places"),
        pytest.param({"cost_price": "abc"}, ("cost_price",), "decimal", id="cost-not-decimal"),
        pytest.param({"currency": "XYZ"}, ("currency",), "unknown currency", id="unknown-currency"),
        pytest.param({"currency": "US"}, ("currency",), "should match pattern", id="short-currency"),
        pytest.param({"captured_at": "2024-05-01T12:00:00"}, ("captured_at",), "timezone", id="naive-datetime"),
        pytest.param({"store_id": "store|1"}, ("store_id",), "pattern", id="pipe-in-store-id"),
        pytest.param({"product_id": "prod|1"}, ("product_id",), "pattern", id="pipe-in-product-id"),
        pytest.param({"variant_id": "v|1"}, ("variant_id",), "pattern", id="pipe-in-variant-id"),
        pytest.param({"store_id": "store 1"}, ("store_id",), "pattern", id="space-in-store-id"),
        pytest.param({"store_id": ""}, ("store_id",), "at least 1", id="empty-store-id"),
        pytest.param({"provider": ""}, ("provider",), "at least 1", id="empty-provider"),
        pytest.param({"cost_price": _MISSING}, ("cost_price",), "required", id="missing-cost"),
        pytest.param({"captured_at": _MISSING}, ("captured_at",), "required", id="missing-time"),
    ],
)
def test_snapshot_refused(overrides: dict[str, Any], loc: tuple[Any, ...], needle: str) -> None:
    with pytest.raises(ValidationError) as exc:
        decode(raw(**overrides))
    assert loc in error_locs(exc)
    messages = " ".join(e["msg"] for e in exc.value.errors() if tuple(e["loc"]) == loc)
    assert needle in messages


def test_blank_provider_is_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        decode(raw(provider="   "))
    assert ("provider",) in error_locs(exc)


def test_float_money_is_refused_as_a_json_number_in_raw_bytes() -> None:
    data = raw().replace(b'"cost_price": "12.50"', b'"cost_price": 12.5')
    assert b'"cost_price": 12.5' in data
    with pytest.raises(ValidationError) as exc:
        decode(data)
    assert error_locs(exc) == [("cost_price",)]


def test_invalid_json_is_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        decode(b'{"store_id": ')
    assert exc.value.errors()[0]["type"] == "json_invalid"


# --------------------------------------------------------------------------- #
# SupplierSnapshot: accepted and normalised
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        pytest.param("cost_price", "12.50", D("12.50"), id="decimal-string"),
        pytest.param("cost_price", 12, D(12), id="integer"),
        pytest.param("cost_price", "0", D(0), id="zero"),
        pytest.param("cost_price", "0.000001", D("0.000001"), id="six-places"),
        pytest.param("shipping_cost", "3.20", D("3.20"), id="shipping-string"),
        pytest.param("shipping_cost", 4, D(4), id="shipping-integer"),
        pytest.param("currency", "usd", "USD", id="lowercase-currency"),
        pytest.param("currency", "Eur", "EUR", id="mixed-case-currency"),
        pytest.param("provider", "aliexpress", "ALIEXPRESS", id="provider-lower"),
        pytest.param("provider", " cj_dropshipping ", "CJ_DROPSHIPPING", id="provider-padded"),
        pytest.param("provider", "MyWholesaler", "MYWHOLESALER", id="provider-other"),
        pytest.param("stock", 0, 0, id="zero-stock"),
        pytest.param("available", False, False, id="unavailable"),
        pytest.param("variant_id", "v-1", "v-1", id="variant"),
    ],
)
def test_snapshot_field_accepted(field: str, value: Any, expected: Any) -> None:
    snap = decode(raw(**{field: value}))
    got = getattr(snap, field)
    assert got == expected
    assert type(got) is type(expected)
    if isinstance(expected, Decimal):
        assert str(got) == str(expected)  # the scale the supplier sent is kept


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC), id="z"),
        pytest.param("2024-05-01T12:00:00+00:00", datetime(2024, 5, 1, 12, tzinfo=UTC), id="zero-offset"),
        pytest.param("2024-05-01T14:00:00+02:00", datetime(2024, 5, 1, 12, tzinfo=UTC), id="plus-2"),
        pytest.param("2024-05-01T07:30:00-04:30", datetime(2024, 5, 1, 12, tzinfo=UTC), id="minus-4h30"),
        pytest.param("2024-05-02T01:00:00.123456+13:00", datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC), id="plus-13-us"),
    ],
)
def test_captured_at_normalised_to_utc(text: str, expected: datetime) -> None:
    snap = decode(raw(captured_at=text))
    assert snap.captured_at == expected
    assert snap.captured_at.utcoffset() == timedelta(0)
    assert snap.captured_at.tzinfo is UTC
    assert (snap.captured_at.hour, snap.captured_at.microsecond) == (expected.hour, expected.microsecond)


def test_snapshot_defaults() -> None:
    snap = decode(raw())
    assert snap.variant_id is None
    assert snap.available is True
    assert snap.shipping_cost == D(0)
    assert snap.title is None
    assert snap.images == ()
    assert snap.sync_run_id is None


def test_unknown_fields_are_ignored() -> None:
    snap = decode(raw(color="red", extra={"nested": [1, 2]}, cost_price="9.99"))
    assert snap.cost_price == D("9.99")
    assert "color" not in snap.model_dump()
    assert not hasattr(snap, "color")
    assert snap.model_extra is None
    assert snap == decode(raw(cost_price="9.99"))


def test_snapshot_is_frozen() -> None:
    snap = decode(raw())
    with pytest.raises(ValidationError):
        snap.stock = 3  # type: ignore[misc]


PAGE = TypeAdapter(list[SupplierSnapshot])


def test_page_decodes_as_a_json_array() -> None:
    data = json.dumps(
        [
            snapshot_dict(product_id="p-1", stock=1, cost_price="1.10"),
            snapshot_dict(product_id="p-2", stock=2, cost_price=2, currency="eur"),
            snapshot_dict(product_id="p-3", stock=3, variant_id="v-3", captured_at="2024-05-01T13:00:00+01:00"),
        ]
    ).encode()
    page = PAGE.validate_json(data)
    assert [s.product_id for s in page] == ["p-1", "p-2", "p-3"]
    assert [s.stock for s in page] == [1, 2, 3]
    assert [s.cost_price for s in page] == [D("1.10"), D(2), D("12.50")]
    assert [s.currency for s in page] == ["USD", "EUR", "USD"]
    assert page[2].variant_id == "v-3"
    assert page[2].captured_at == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert all(isinstance(s, SupplierSnapshot) for s in page)


def test_empty_page_decodes() -> None:
    assert PAGE.validate_json(b"[]") == []


def test_page_error_names_the_item() -> None:
    data = json.dumps([snapshot_dict(), snapshot_dict(cost_price=1.5)]).encode()
    with pytest.raises(ValidationError) as exc:
        PAGE.validate_json(data)
    assert error_locs(exc) == [(1, "cost_price")]


# --------------------------------------------------------------------------- #
# StoreSettings
# --------------------------------------------------------------------------- #


def test_store_settings_defaults() -> None:
    before = datetime.now(UTC)
    cfg = StoreSettings.model_validate_json(b'{"store_id": "store-1"}')
    assert cfg.store_id == "store-1"
    assert cfg.low_stock_threshold == 5
    assert cfg.price_alert_threshold_pct == D(10)
    assert cfg.sync_frequency is SyncFrequency.STANDARD
    assert cfg.currency == "USD"
    assert cfg.notification_targets == ()
    assert cfg.pricing == PricingRules()
    assert cfg.pricing.strategy is Strategy.PERCENT_MARKUP
    assert cfg.pricing.markup_percent == D(50)
    assert cfg.pricing.ending is PriceEnding.NINETY_NINE
    assert cfg.pricing.include_shipping is True
    assert cfg.pricing.compare_at_percent is None
    assert cfg.updated_at.tzinfo is not None
    assert before <= cfg.updated_at <= datetime.now(UTC)


def test_default_settings_of_a_silent_store() -> None:
    cfg = default_settings("store-9")
    assert cfg.store_id == "store-9"
    assert cfg.updated_at == datetime(1970, 1, 1, tzinfo=UTC)
    assert (cfg.low_stock_threshold, cfg.price_alert_threshold_pct) == (5, D(10))


@pytest.mark.parametrize(
    ("body", "attr", "expected"),
    [
        pytest.param({"low_stock_threshold": 10}, "low_stock_threshold", 10, id="threshold-10"),
        pytest.param({"low_stock_threshold": 0}, "low_stock_threshold", 0, id="threshold-0"),
        pytest.param({"price_alert_threshold_pct": "12.5"}, "price_alert_threshold_pct", D("12.5"), id="pct-string"),
        pytest.param({"price_alert_threshold_pct": 25}, "price_alert_threshold_pct", D(25), id="pct-integer"),
        pytest.param({"currency": "gbp"}, "currency", "GBP", id="currency-lower"),
        pytest.param({"sync_frequency": "HIGH"}, "sync_frequency", SyncFrequency.HIGH, id="sync-high"),
        pytest.param(
            {"updated_at": "2024-05-01T14:00:00+02:00"}, "updated_at", datetime(2024, 5, 1, 12, tzinfo=UTC), id="updated-at-utc"
        ),
    ],
)
def test_store_settings_accepted(body: dict[str, Any], attr: str, expected: Any) -> None:
    cfg = StoreSettings.model_validate_json(json.dumps({"store_id": "store-1", **body}).encode())
    assert getattr(cfg, attr) == expected


def test_store_settings_nested_pricing() -> None:
    body = {"store_id": "s", "pricing": {"markup_percent": "80", "ending": ".95", "include_shipping": False}}
    cfg = StoreSettings.model_validate_json(json.dumps(body).encode())
    assert cfg.pricing == PricingRules(markup_percent=D(80), ending=PriceEnding.NINETY_FIVE, include_shipping=False)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        pytest.param({"low_stock_threshold": -1}, ("low_stock_threshold",), id="negative-threshold"),
        pytest.param({"price_alert_threshold_pct": 12.5}, ("price_alert_threshold_pct",), id="float-pct"),
        pytest.param({"price_alert_threshold_pct": "0"}, ("price_alert_threshold_pct",), id="zero-pct"),
        pytest.param({"currency": "XYZ"}, ("currency",), id="unknown-currency"),
        pytest.param({"store_id": "a|b"}, ("store_id",), id="pipe-in-store-id"),
        pytest.param({"updated_at": "2024-05-01T12:00:00"}, ("updated_at",), id="naive-updated-at"),
        pytest.param({"pricing": {"markup_percent": 50.5}}, ("pricing", "markup_percent"), id="float-markup"),
    ],
)
def test_store_settings_refused(body: dict[str, Any], loc: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as exc:
        StoreSettings.model_validate_json(json.dumps({"store_id": "store-1", **body}).encode())
    assert loc in error_locs(exc)
