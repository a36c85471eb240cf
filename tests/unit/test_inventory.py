"""Table-driven unit tests of the pure inventory diff (``models.inventory``).

Each table row states one rule of the module docstring of
``models/inventory.py``: a sequence of supplier snapshots is applied from the
baseline, and the outcome of the last one is checked — result, new state,
change record (reason, ``changed`` fields, before/after) and the alerts opened
(type, severity, status) and closed (alert id, final status).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from models import alerts as alert_rules
from models.events import (
    Alert,
    AlertStatus,
    AlertType,
    ChangedField,
    ChangeReason,
    ProductMapped,
    ProductResend,
    ProductStatus,
    Severity,
    StoreSettings,
    SupplierSnapshot,
    SupplierUpdate,
    StorefrontStock,
)
from models.inventory import (
    AlertClose,
    Outcome,
    SnapshotResult,
    apply_alert_status,
    apply_snapshot,
    change_id,
    republished_change,
    reprice,
    snapshot_of_update,
    check_storefront_stock,
)
from models.pricing import PriceEnding, PricingRules, quote
from models.product import OpenAlert, ProductState, product_key, to_micros

D = Decimal
A = ProductStatus.ACTIVE
OOS = ProductStatus.OUT_OF_STOCK
F = ChangedField
T = AlertType
STORE, PRODUCT = "store-1", "prod-1"
KEY = product_key(STORE, PRODUCT, None)
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
SETTINGS_AT = datetime(2024, 4, 1, tzinfo=timezone.utc)

# --------------------------------------------------------------------------- #
# Builders
# --------------------------------------------------------------------------- #


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def snap(**overrides: Any) -> SupplierSnapshot:
    """A validated snapshot: 20 in stock, cost 10.00 + shipping 2.00 USD at T0."""
    data: dict[str, Any] = {
        "store_id": STORE,
        "product_id": PRODUCT,
        "variant_id": None,
        "provider": "ALIEXPRESS",
        "source_id": "AE-100",
        "available": True,
        "stock": 20,
        "cost_price": "10.00",
        "shipping_cost": "2.00",
        "currency": "USD",
        "captured_at": T0,
        "title": "Widget",
        "sync_run_id": "run-0",
    }
    data.update(overrides)
    return SupplierSnapshot.model_validate(data)


def settings(**overrides: Any) -> StoreSettings:
    data: dict[str, Any] = {"store_id": STORE, "updated_at": SETTINGS_AT}
    data.update(overrides)
    return StoreSettings.model_validate(data)


DEFAULT = settings()


def baseline(cfg: StoreSettings = DEFAULT, **overrides: Any) -> ProductState:
    out = apply_snapshot(None, snap(**overrides), cfg)
    assert out.result is SnapshotResult.NEW and out.state is not None
    return out.state


def run(steps: list[dict[str, Any]], cfg: StoreSettings = DEFAULT) -> tuple[ProductState, Outcome]:
    """Apply ``steps`` (snapshot overrides), one minute apart, from the baseline.

    Returns the state before the last step and the outcome of the last step.
    """
    state = baseline(cfg, **steps[0])
    prev, out = state, None
    for i, overrides in enumerate(steps[1:], start=1):
        prev = state
        out = apply_snapshot(state, snap(captured_at=at(i), **overrides), cfg)
        assert out.state is not None
        state = out.state
    assert out is not None, "a case needs at least two steps"
    return prev, out


def opened_of(out: Outcome) -> list[tuple[AlertType, Severity, AlertStatus]]:
    return [(a.type, a.severity, a.status) for a in out.opened]


def view_of(state: ProductState) -> dict[str, Any]:
    return {
        "status": state.status,
        "available": state.available,
        "stock": state.stock,
        "cost_price": state.cost_price,
        "shipping_cost": state.shipping_cost,
        "currency": state.currency,
        "selling_price": state.selling_price,
        "compare_at_price": state.compare_at_price,
    }


def dump_view(view: Any) -> dict[str, Any]:
    """The fields of a change's before/after ``ProductView``, as ``view_of`` gives them."""
    return {name: getattr(view, name) for name in VIEW_FIELDS}


VIEW_FIELDS = tuple(view_of(ProductState("p", "s", True, 0, D(0), D(0), "USD", D(1), None, A, 0)))


# --------------------------------------------------------------------------- #
# Baseline (first snapshot)
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("available", "stock", "status"),
    [
        pytest.param(True, 20, A, id="in-stock"),
        pytest.param(True, 1, A, id="one-left"),
        pytest.param(True, 0, OOS, id="out-of-stock"),
        pytest.param(False, 20, OOS, id="unavailable-with-stock"),
        pytest.param(False, 0, OOS, id="unavailable-empty"),
    ],
)
def test_first_snapshot_is_the_baseline_without_alert(available: bool, stock: int, status: ProductStatus) -> None:
    s = snap(available=available, stock=stock, variant_id="v-1", sync_run_id="run-7")
    out = apply_snapshot(None, s, DEFAULT)

    assert out.result is SnapshotResult.NEW
    assert out.durable is True
    assert out.opened == [] and out.closed == []
    st = out.state
    assert st is not None
    assert (st.status, st.available, st.stock) == (status, available, stock)
    assert (st.cost_price, st.shipping_cost, st.currency) == (D("10.00"), D("2.00"), "USD")
    assert st.selling_price == D("18.99")
    assert st.compare_at_price is None
    assert (st.provider, st.source_id, st.sync_run_id) == ("ALIEXPRESS", "AE-100", "run-7")
    assert st.captured_at_us == to_micros(T0)
    assert st.captured_at == T0
    assert st.alerts == {}

    ch = out.change
    assert ch is not None
    key = product_key(STORE, PRODUCT, "v-1")
    assert ch.reason is ChangeReason.NEW
    assert ch.change_id == change_id(key, ChangeReason.NEW, to_micros(T0))
    assert ch.changed == tuple(ChangedField)
    assert ch.before is None
    assert dump_view(ch.after) == view_of(st)
    assert (ch.store_id, ch.product_id, ch.variant_id) == (STORE, PRODUCT, "v-1")
    assert (ch.provider, ch.source_id, ch.sync_run_id) == ("ALIEXPRESS", "AE-100", "run-7")
    assert ch.captured_at == T0


@pytest.mark.parametrize(
    ("cost", "shipping", "rules", "expected"),
    [
        # 10.00 + 2.00 = 12.00 -> +50 % = 18.00 -> ending .99 -> 18.99
        pytest.param("10.00", "2.00", PricingRules(), "18.99", id="default-cost-plus-shipping"),
        pytest.param("10", "0", PricingRules(), "15.99", id="no-shipping"),
        pytest.param("12.66", "0", PricingRules(), "18.99", id="exactly-on-the-ending"),
        pytest.param("0.50", "0", PricingRules(), "0.99", id="tiny-cost"),
        pytest.param("19.99", "0", PricingRules(), "29.99", id="29.985-rounds-up"),
        pytest.param("10.00", "2.00", PricingRules(include_shipping=False), "15.99", id="shipping-excluded"),
        pytest.param("10.00", "2.00", PricingRules(markup_percent=D(100)), "24.99", id="markup-100"),
        pytest.param("10.00", "2.00", PricingRules(ending=PriceEnding.NONE), "18.00", id="no-ending"),
    ],
)
def test_baseline_selling_price(cost: str, shipping: str, rules: PricingRules, expected: str) -> None:
    st = baseline(settings(pricing=rules), cost_price=cost, shipping_cost=shipping)
    assert st.selling_price == D(expected)
    q = quote(D(cost), D(shipping), rules)
    assert st.selling_price == q.selling_price
    assert st.compare_at_price == q.compare_at_price


def test_baseline_compare_at_price_from_rules() -> None:
    st = baseline(settings(pricing=PricingRules(compare_at_percent=D(20))))
    # 18.99 * 1.2 = 22.788 -> ending .99 -> 22.99
    assert (st.selling_price, st.compare_at_price) == (D("18.99"), D("22.99"))


# --------------------------------------------------------------------------- #
# STALE and UNCHANGED
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("delta", "overrides"),
    [
        pytest.param(timedelta(0), {}, id="same-time-same-values"),
        pytest.param(timedelta(0), {"stock": 0}, id="same-time-out-of-stock"),
        pytest.param(timedelta(microseconds=-1), {"stock": 3}, id="one-us-older"),
        pytest.param(timedelta(days=-1), {"available": False, "cost_price": "50"}, id="a-day-older"),
    ],
)
def test_snapshot_not_newer_is_stale(delta: timedelta, overrides: dict[str, Any]) -> None:
    state = baseline()
    out = apply_snapshot(state, snap(captured_at=T0 + delta, **overrides), DEFAULT)
    assert out.result is SnapshotResult.STALE
    assert out.state is None
    assert out.durable is False
    assert out.change is None
    assert out.opened == [] and out.closed == []


@pytest.mark.parametrize(
    ("delta", "overrides"),
    [
        pytest.param(timedelta(microseconds=1), {}, id="one-us-newer"),
        pytest.param(timedelta(hours=1), {"title": "Renamed", "images": ("http://x/1.jpg",)}, id="title-only"),
        pytest.param(timedelta(days=2), {"cost_price": "10", "shipping_cost": "2.0"}, id="same-amounts-other-scale"),
    ],
)
def test_unchanged_values_move_only_the_time(delta: timedelta, overrides: dict[str, Any]) -> None:
    state = baseline()
    acked = OpenAlert("a-1", AlertStatus.ACKNOWLEDGED)
    state = state.with_alerts({T.STOCK_LOW: acked})
    out = apply_snapshot(state, snap(captured_at=T0 + delta, sync_run_id="run-1", **overrides), DEFAULT)
    assert out.result is SnapshotResult.UNCHANGED
    assert out.durable is False
    assert out.change is None
    assert out.opened == [] and out.closed == []
    assert out.state == replace(state, captured_at_us=to_micros(T0 + delta), sync_run_id="run-1")
    assert out.state is not None and out.state.captured_at == T0 + delta
    assert out.state.alerts == {T.STOCK_LOW: acked}


# --------------------------------------------------------------------------- #
# Stock and availability transitions
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Case:
    steps: list[dict[str, Any]]
    status: ProductStatus
    changed: tuple[ChangedField, ...]
    opened: list[tuple[AlertType, Severity]] = field(default_factory=list)
    #: alert types open before the last step that it closes as RESOLVED
    closed: list[AlertType] = field(default_factory=list)
    #: alert types open (ACTIVE) after the last step
    open_after: set[AlertType] = field(default_factory=set)
    cfg: StoreSettings = DEFAULT


STOCK_CASES = {
    "in-stock-to-zero": Case(
        [{"stock": 20}, {"stock": 0}], OOS, (F.STOCK, F.STATUS),
        opened=[(T.STOCK_OUT, Severity.HIGH)], open_after={T.STOCK_OUT},
    ),
    "low-to-zero-is-stock-out-only": Case(
        [{"stock": 20}, {"stock": 4}, {"stock": 0}], OOS, (F.STOCK, F.STATUS),
        opened=[(T.STOCK_OUT, Severity.HIGH)], open_after={T.STOCK_OUT, T.STOCK_LOW},
    ),
    "unavailable": Case(
        [{"stock": 20}, {"available": False}], OOS, (F.AVAILABILITY, F.STATUS),
        opened=[(T.PRODUCT_REMOVED, Severity.HIGH)], open_after={T.PRODUCT_REMOVED},
    ),
    "unavailable-and-empty": Case(
        [{"stock": 20}, {"available": False, "stock": 0}], OOS, (F.STOCK, F.AVAILABILITY, F.STATUS),
        opened=[(T.PRODUCT_REMOVED, Severity.HIGH)], open_after={T.PRODUCT_REMOVED},
    ),
    "back-in-stock-resolves-stock-out": Case(
        [{"stock": 20}, {"stock": 0}, {"stock": 12}], A, (F.STOCK, F.STATUS),
        opened=[(T.STOCK_RESTORED, Severity.LOW)], closed=[T.STOCK_OUT], open_after={T.STOCK_RESTORED},
    ),
    "back-in-stock-at-low-level-opens-no-stock-low": Case(
        [{"stock": 20}, {"stock": 0}, {"stock": 3}], A, (F.STOCK, F.STATUS),
        opened=[(T.STOCK_RESTORED, Severity.LOW)], closed=[T.STOCK_OUT], open_after={T.STOCK_RESTORED},
    ),
    "baseline-out-of-stock-then-restocked": Case(
        [{"stock": 0}, {"stock": 8}], A, (F.STOCK, F.STATUS),
        opened=[(T.STOCK_RESTORED, Severity.LOW)], open_after={T.STOCK_RESTORED},
    ),
    "available-again-resolves-removed": Case(
        [{"stock": 20}, {"available": False}, {"available": True}], A, (F.AVAILABILITY, F.STATUS),
        opened=[(T.STOCK_RESTORED, Severity.LOW)], closed=[T.PRODUCT_REMOVED], open_after={T.STOCK_RESTORED},
    ),
    "available-again-but-empty": Case(
        [{"stock": 20}, {"available": False}, {"available": True, "stock": 0}], OOS, (F.STOCK, F.AVAILABILITY),
        opened=[(T.STOCK_OUT, Severity.HIGH)], closed=[T.PRODUCT_REMOVED], open_after={T.STOCK_OUT},
    ),
    "out-again-resolves-restored": Case(
        [{"stock": 20}, {"stock": 0}, {"stock": 12}, {"stock": 0}], OOS, (F.STOCK, F.STATUS),
        opened=[(T.STOCK_OUT, Severity.HIGH)], closed=[T.STOCK_RESTORED], open_after={T.STOCK_OUT},
    ),
    "removed-again-resolves-restored": Case(
        [{"stock": 20}, {"stock": 0}, {"stock": 12}, {"available": False, "stock": 12}], OOS,
        (F.AVAILABILITY, F.STATUS),
        opened=[(T.PRODUCT_REMOVED, Severity.HIGH)], closed=[T.STOCK_RESTORED], open_after={T.PRODUCT_REMOVED},
    ),
    "stock-change-while-removed-is-silent": Case(
        [{"stock": 20}, {"available": False}, {"available": False, "stock": 7}], OOS, (F.STOCK,),
        open_after={T.PRODUCT_REMOVED},
    ),
    "in-stock-drop-above-threshold-is-silent": Case(
        [{"stock": 20}, {"stock": 6}], A, (F.STOCK,),
    ),
    # --- STOCK_LOW (default threshold 5) ---
    "cross-down-to-threshold": Case(
        [{"stock": 20}, {"stock": 5}], A, (F.STOCK,),
        opened=[(T.STOCK_LOW, Severity.MEDIUM)], open_after={T.STOCK_LOW},
    ),
    "cross-down-from-just-above": Case(
        [{"stock": 6}, {"stock": 5}], A, (F.STOCK,),
        opened=[(T.STOCK_LOW, Severity.MEDIUM)], open_after={T.STOCK_LOW},
    ),
    "cross-down-to-one": Case(
        [{"stock": 20}, {"stock": 1}], A, (F.STOCK,),
        opened=[(T.STOCK_LOW, Severity.MEDIUM)], open_after={T.STOCK_LOW},
    ),
    "further-drop-while-active-opens-none": Case(
        [{"stock": 20}, {"stock": 4}, {"stock": 2}], A, (F.STOCK,), open_after={T.STOCK_LOW},
    ),
    "rise-above-threshold-resolves-low": Case(
        [{"stock": 20}, {"stock": 4}, {"stock": 6}], A, (F.STOCK,), closed=[T.STOCK_LOW],
    ),
    "rise-to-threshold-keeps-low": Case(
        [{"stock": 20}, {"stock": 3}, {"stock": 5}], A, (F.STOCK,), open_after={T.STOCK_LOW},
    ),
    "starting-at-threshold-opens-none": Case(
        [{"stock": 5}, {"stock": 4}], A, (F.STOCK,),
    ),
    "starting-below-threshold-opens-none": Case(
        [{"stock": 3}, {"stock": 2}], A, (F.STOCK,),
    ),
    "custom-threshold-crossed": Case(
        [{"stock": 20}, {"stock": 10}], A, (F.STOCK,),
        opened=[(T.STOCK_LOW, Severity.MEDIUM)], open_after={T.STOCK_LOW},
        cfg=settings(low_stock_threshold=10),
    ),
    "custom-threshold-not-reached": Case(
        [{"stock": 20}, {"stock": 11}], A, (F.STOCK,), cfg=settings(low_stock_threshold=10),
    ),
    "custom-threshold-below-default": Case(
        [{"stock": 20}, {"stock": 4}], A, (F.STOCK,), cfg=settings(low_stock_threshold=2),
    ),
    "custom-threshold-rise-resolves": Case(
        [{"stock": 20}, {"stock": 10}, {"stock": 11}], A, (F.STOCK,), closed=[T.STOCK_LOW],
        cfg=settings(low_stock_threshold=10),
    ),
    "threshold-zero-never-low": Case(
        [{"stock": 20}, {"stock": 1}], A, (F.STOCK,), cfg=settings(low_stock_threshold=0),
    ),
}


@pytest.mark.parametrize("case", list(STOCK_CASES.values()), ids=list(STOCK_CASES))
def test_stock_and_availability_rules(case: Case) -> None:
    prev, out = run(case.steps, case.cfg)
    last = case.steps[-1]
    st = out.state
    assert st is not None

    assert out.result is SnapshotResult.CHANGED
    assert out.durable is True
    assert st.status is case.status
    assert st.stock == last.get("stock", 20)
    assert st.available is last.get("available", True)
    assert st.selling_price == prev.selling_price == D("18.99")  # no cost change, no repricing

    ch = out.change
    assert ch is not None
    assert ch.reason is ChangeReason.SNAPSHOT
    assert ch.changed == case.changed
    assert dump_view(ch.before) == view_of(prev)
    assert dump_view(ch.after) == view_of(st)
    assert ch.captured_at == st.captured_at
    assert ch.change_id == change_id(KEY, ChangeReason.SNAPSHOT, st.captured_at_us)

    assert [(t, s) for t, s, _ in opened_of(out)] == case.opened
    for alert in out.opened:
        assert alert.status is AlertStatus.ACTIVE
        assert alert.severity is alert_rules.SEVERITY[alert.type]
        assert (alert.store_id, alert.product_id, alert.variant_id) == (STORE, PRODUCT, None)
        assert alert.alert_id == alert_rules.alert_id(KEY, alert.type, st.captured_at_us)
        assert alert.created_at == alert.updated_at == st.captured_at
        assert alert.resolved_at is None and alert.acknowledged_at is None
        assert st.alerts[alert.type] == OpenAlert(alert.alert_id, AlertStatus.ACTIVE)

    assert out.closed == [AlertClose(prev.alerts[t].alert_id, AlertStatus.RESOLVED) for t in case.closed]
    assert set(st.alerts) == case.open_after
    assert all(a.status is AlertStatus.ACTIVE for a in st.alerts.values())


def test_stock_alert_metadata_and_text() -> None:
    _, out = run([{"stock": 20}, {"stock": 0}])
    (alert,) = out.opened
    assert alert.metadata == {"previous_stock": "20", "provider": "ALIEXPRESS"}
    assert alert.title == "Out of stock: Widget"

    _, out = run([{"stock": 20}, {"stock": 0}, {"stock": 12, "title": None}])
    (alert,) = out.opened
    assert alert.type is T.STOCK_RESTORED
    assert alert.metadata == {"stock": "12", "previous_stock": "0"}
    assert alert.title == f"Back in stock: {PRODUCT}"  # no title: the product id

    _, out = run([{"stock": 20}, {"stock": 4}])
    (alert,) = out.opened
    assert alert.metadata == {"stock": "4", "threshold": "5", "previous_stock": "20"}

    _, out = run([{"stock": 20}, {"available": False}])
    (alert,) = out.opened
    assert alert.metadata == {"provider": "ALIEXPRESS", "source_id": "AE-100"}


def test_acknowledged_stock_out_is_resolved_on_restock() -> None:
    _, out = run([{"stock": 20}, {"stock": 0}])
    state = out.state
    assert state is not None
    old = state.alerts[T.STOCK_OUT]
    state = state.with_alerts({T.STOCK_OUT: OpenAlert(old.alert_id, AlertStatus.ACKNOWLEDGED)})
    out = apply_snapshot(state, snap(stock=9, captured_at=at(10)), DEFAULT)
    assert out.closed == [AlertClose(old.alert_id, AlertStatus.RESOLVED)]
    assert opened_of(out) == [(T.STOCK_RESTORED, Severity.LOW, AlertStatus.ACTIVE)]
    assert out.state is not None and set(out.state.alerts) == {T.STOCK_RESTORED}


# --------------------------------------------------------------------------- #
# Cost / shipping changes: repricing and price alerts
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("new_cost", "cfg", "selling", "changed", "alert", "percent"),
    [
        pytest.param("11.00", DEFAULT, "19.99", (F.COST, F.SELLING_PRICE), T.PRICE_INCREASE, "10.00", id="plus-10pct-exactly"),
        pytest.param("10.999", DEFAULT, "19.99", (F.COST, F.SELLING_PRICE), None, None, id="plus-9.99pct"),
        pytest.param("12.00", DEFAULT, "21.99", (F.COST, F.SELLING_PRICE), T.PRICE_INCREASE, "20.00", id="plus-20pct"),
        pytest.param("9.00", DEFAULT, "16.99", (F.COST, F.SELLING_PRICE), T.PRICE_DECREASE, "-10.00", id="minus-10pct-exactly"),
        pytest.param("9.001", DEFAULT, "16.99", (F.COST, F.SELLING_PRICE), None, None, id="minus-9.99pct"),
        pytest.param("5.00", DEFAULT, "10.99", (F.COST, F.SELLING_PRICE), T.PRICE_DECREASE, "-50.00", id="minus-50pct"),
        pytest.param("10.70", DEFAULT, "19.99", (F.COST, F.SELLING_PRICE), None, None, id="plus-7pct-default"),
        pytest.param(
            "10.70", settings(price_alert_threshold_pct="5"), "19.99", (F.COST, F.SELLING_PRICE),
            T.PRICE_INCREASE, "7.00", id="plus-7pct-threshold-5",
        ),
        pytest.param(
            "12.00", settings(price_alert_threshold_pct="25"), "21.99", (F.COST, F.SELLING_PRICE),
            None, None, id="plus-20pct-threshold-25",
        ),
        pytest.param(
            "12.50", settings(price_alert_threshold_pct="25"), "21.99", (F.COST, F.SELLING_PRICE),
            T.PRICE_INCREASE, "25.00", id="plus-25pct-threshold-25",
        ),
        # 12.50 * 1.5 = 18.75 -> 18.99: the price does not move, only the cost
        pytest.param("10.50", DEFAULT, "18.99", (F.COST,), None, None, id="small-rise-same-price"),
    ],
)
def test_cost_change_reprices_and_alerts(
    new_cost: str,
    cfg: StoreSettings,
    selling: str,
    changed: tuple[ChangedField, ...],
    alert: AlertType | None,
    percent: str | None,
) -> None:
    prev, out = run([{}, {"cost_price": new_cost}], cfg)
    st = out.state
    assert st is not None
    assert out.result is SnapshotResult.CHANGED
    assert st.cost_price == D(new_cost)
    assert st.selling_price == D(selling) == quote(D(new_cost), D("2.00"), cfg.pricing).selling_price
    assert st.status is A and st.stock == 20

    ch = out.change
    assert ch is not None
    assert ch.reason is ChangeReason.SNAPSHOT
    assert ch.changed == changed
    assert ch.before is not None
    assert (ch.before.cost_price, ch.before.selling_price) == (D("10.00"), D("18.99"))
    assert (ch.after.cost_price, ch.after.selling_price) == (D(new_cost), D(selling))

    assert out.closed == []
    if alert is None:
        assert out.opened == []
        assert st.alerts == {}
    else:
        assert opened_of(out) == [(alert, Severity.MEDIUM, AlertStatus.ACTIVE)]
        (opened,) = out.opened
        assert opened.metadata["previous_cost"] == "10.00"
        assert opened.metadata["new_cost"] == str(D(new_cost))
        assert opened.metadata["change_percent"] == percent
        assert opened.metadata["new_selling_price"] == selling
        assert opened.metadata["previous_selling_price"] == "18.99"
        assert opened.metadata["currency"] == "USD"
        assert opened.alert_id == alert_rules.alert_id(KEY, alert, st.captured_at_us)
        assert st.alerts == {alert: OpenAlert(opened.alert_id, AlertStatus.ACTIVE)}


@pytest.mark.parametrize(
    "new_cost",
    [
        pytest.param("22.01", id="plus-9.995pct"),  # exactly +9.99500249...%
        pytest.param("18.01", id="minus-9.995pct"),  # exactly -9.99500249...%
    ],
)
def test_change_just_under_threshold_opens_no_price_alert(new_cost: str) -> None:
    _, out = run([{"cost_price": "20.01"}, {"cost_price": new_cost}])
    assert out.change is not None and F.COST in out.change.changed
    assert out.opened == []


def test_second_increase_while_active_opens_none() -> None:
    _, first = run([{}, {"cost_price": "12.00"}])
    state = first.state
    assert state is not None
    (alert,) = first.opened
    out = apply_snapshot(state, snap(cost_price="14.00", captured_at=at(10)), DEFAULT)
    assert out.result is SnapshotResult.CHANGED
    assert out.opened == [] and out.closed == []
    assert out.state is not None
    assert out.state.selling_price == D("24.99")
    assert out.state.alerts == {T.PRICE_INCREASE: OpenAlert(alert.alert_id, AlertStatus.ACTIVE)}
    assert out.change is not None and out.change.changed == (F.COST, F.SELLING_PRICE)


def test_increase_after_acknowledged_increase_supersedes_it() -> None:
    _, first = run([{}, {"cost_price": "12.00"}])
    assert first.state is not None
    (old,) = first.opened
    state = first.state.with_alerts({T.PRICE_INCREASE: OpenAlert(old.alert_id, AlertStatus.ACKNOWLEDGED)})

    out = apply_snapshot(state, snap(cost_price="14.00", captured_at=at(10)), DEFAULT)
    assert opened_of(out) == [(T.PRICE_INCREASE, Severity.MEDIUM, AlertStatus.ACTIVE)]
    (new,) = out.opened
    assert new.alert_id != old.alert_id
    assert new.metadata["previous_cost"] == "12.00"
    assert new.metadata["new_cost"] == "14.00"
    assert new.metadata["change_percent"] == "16.67"
    assert new.metadata["new_selling_price"] == "24.99"
    assert out.closed == [AlertClose(old.alert_id, AlertStatus.RESOLVED)]
    assert out.state is not None
    assert out.state.alerts == {T.PRICE_INCREASE: OpenAlert(new.alert_id, AlertStatus.ACTIVE)}


def test_decrease_while_increase_active_opens_decrease() -> None:
    _, first = run([{}, {"cost_price": "12.00"}])
    assert first.state is not None
    (inc,) = first.opened
    out = apply_snapshot(first.state, snap(cost_price="9.00", captured_at=at(10)), DEFAULT)
    assert opened_of(out) == [(T.PRICE_DECREASE, Severity.MEDIUM, AlertStatus.ACTIVE)]
    assert out.opened[0].metadata["change_percent"] == "-25.00"
    assert out.state is not None
    assert out.state.alerts[T.PRICE_INCREASE] == OpenAlert(inc.alert_id, AlertStatus.ACTIVE)
    assert T.PRICE_DECREASE in out.state.alerts


@pytest.mark.parametrize(
    ("rules", "shipping", "selling", "changed"),
    [
        # 10 + 4 = 14 -> 21.00 -> 21.99
        pytest.param(PricingRules(), "4.00", "21.99", (F.SHIPPING, F.SELLING_PRICE), id="included-rise"),
        # 10 + 0 = 10 -> 15.00 -> 15.99
        pytest.param(PricingRules(), "0", "15.99", (F.SHIPPING, F.SELLING_PRICE), id="included-free-shipping"),
        # the basis is the cost alone: 15.99 before and after
        pytest.param(PricingRules(include_shipping=False), "4.00", "15.99", (F.SHIPPING,), id="excluded"),
    ],
)
def test_shipping_change_reprices_when_included(
    rules: PricingRules, shipping: str, selling: str, changed: tuple[ChangedField, ...]
) -> None:
    prev, out = run([{}, {"shipping_cost": shipping}], settings(pricing=rules))
    assert out.result is SnapshotResult.CHANGED
    assert out.state is not None
    assert out.state.shipping_cost == D(shipping)
    assert out.state.selling_price == D(selling) == quote(D("10.00"), D(shipping), rules).selling_price
    assert out.change is not None and out.change.changed == changed
    assert out.opened == [] and out.closed == []  # shipping alone raises no price alert


def test_combined_change_reports_every_field_and_alert() -> None:
    prev, out = run([{}, {"stock": 0, "cost_price": "12.00", "shipping_cost": "3.00"}])
    assert out.state is not None
    assert out.change is not None
    assert out.change.changed == (F.STOCK, F.COST, F.SHIPPING, F.SELLING_PRICE, F.STATUS)
    # 12 + 3 = 15 -> 22.50 -> 22.99
    assert out.state.selling_price == D("22.99")
    assert [(t, s) for t, s, _ in opened_of(out)] == [
        (T.STOCK_OUT, Severity.HIGH),
        (T.PRICE_INCREASE, Severity.MEDIUM),
    ]


# --------------------------------------------------------------------------- #
# Deterministic ids
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"stock": 0}, id="stock-out"),
        pytest.param({"available": False}, id="removed"),
        pytest.param({"stock": 3}, id="stock-low"),
        pytest.param({"cost_price": "15"}, id="price-increase"),
    ],
)
def test_ids_are_deterministic(overrides: dict[str, Any]) -> None:
    state = baseline()
    s = snap(captured_at=at(5), **overrides)
    one = apply_snapshot(state, s, DEFAULT)
    two = apply_snapshot(state, s, DEFAULT)
    assert one.change is not None and two.change is not None
    assert len(one.opened) == 1
    assert [a.alert_id for a in one.opened] == [a.alert_id for a in two.opened]
    assert one.change.change_id == two.change.change_id
    assert one.state == two.state

    later = apply_snapshot(state, snap(captured_at=at(5) + timedelta(microseconds=1), **overrides), DEFAULT)
    assert later.change is not None
    assert later.opened[0].alert_id != one.opened[0].alert_id
    assert later.change.change_id != one.change.change_id

    other = product_key(STORE, PRODUCT, "v-2")
    assert alert_rules.alert_id(other, one.opened[0].type, to_micros(at(5))) != one.opened[0].alert_id


def test_baseline_change_id_is_deterministic() -> None:
    a = apply_snapshot(None, snap(), DEFAULT)
    b = apply_snapshot(None, snap(), DEFAULT)
    c = apply_snapshot(None, snap(captured_at=at(1)), DEFAULT)
    assert a.change is not None and b.change is not None and c.change is not None
    assert a.change.change_id == b.change.change_id
    assert a.change.change_id != c.change.change_id


# --------------------------------------------------------------------------- #
# reprice (settings change)
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("variant", "rules", "selling", "compare_at", "changed"),
    [
        pytest.param(None, PricingRules(markup_percent=D(100)), "24.99", None, (F.SELLING_PRICE,), id="markup-100"),
        pytest.param("v-1", PricingRules(markup_percent=D(100)), "24.99", None, (F.SELLING_PRICE,), id="variant"),
        pytest.param(None, PricingRules(ending=PriceEnding.NINETY_FIVE), "18.95", None, (F.SELLING_PRICE,), id="ending-95"),
        pytest.param(None, PricingRules(include_shipping=False), "15.99", None, (F.SELLING_PRICE,), id="drop-shipping"),
        pytest.param(
            None, PricingRules(compare_at_percent=D(20)), "18.99", "22.99", (F.COMPARE_AT_PRICE,), id="compare-at-only"
        ),
    ],
)
def test_reprice_under_new_rules(
    variant: str | None, rules: PricingRules, selling: str, compare_at: str | None, changed: tuple[ChangedField, ...]
) -> None:
    key = product_key(STORE, PRODUCT, variant)
    state = baseline(variant_id=variant, stock=4)
    state = state.with_alerts({T.STOCK_OUT: OpenAlert("x", AlertStatus.ACTIVE)})
    new_at = datetime(2024, 6, 1, 8, 30, 0, 250, tzinfo=timezone.utc)
    cfg = settings(pricing=rules, updated_at=new_at)

    new, ch = reprice(key, state, cfg)
    assert new.selling_price == D(selling)
    assert new.compare_at_price == (None if compare_at is None else D(compare_at))
    assert new == replace(state, selling_price=D(selling), compare_at_price=new.compare_at_price)
    assert ch is not None
    assert ch.reason is ChangeReason.SETTINGS_CHANGED
    assert ch.changed == changed
    assert ch.change_id == change_id(key, ChangeReason.SETTINGS_CHANGED, to_micros(new_at))
    assert (ch.store_id, ch.product_id, ch.variant_id) == (STORE, PRODUCT, variant)
    assert ch.before is not None
    assert dump_view(ch.before) == view_of(state)
    assert dump_view(ch.after) == view_of(new)
    assert ch.captured_at == state.captured_at  # the product's time, not the settings'


@pytest.mark.parametrize(
    "rules",
    [
        pytest.param(PricingRules(), id="same-rules"),
        # 12 * 1.55 = 18.60 -> 18.99, as with 50 %
        pytest.param(PricingRules(markup_percent=D("55")), id="same-price-other-markup"),
        pytest.param(PricingRules(min_profit=D("1.00")), id="floor-below-price"),
    ],
)
def test_reprice_unchanged_price_returns_the_state(rules: PricingRules) -> None:
    state = baseline()
    assert quote(D("10.00"), D("2.00"), rules).selling_price == D("18.99")
    new, ch = reprice(KEY, state, settings(pricing=rules))
    assert new is state
    assert ch is None


# --------------------------------------------------------------------------- #
# apply_alert_status
# --------------------------------------------------------------------------- #


def _alert(alert_id: str, status: AlertStatus, alert_type: AlertType = T.STOCK_OUT) -> Alert:
    return Alert.model_construct(
        alert_id=alert_id,
        store_id=STORE,
        product_id=PRODUCT,
        variant_id=None,
        type=alert_type,
        severity=alert_rules.SEVERITY[alert_type],
        status=status,
        title="t",
        message="m",
        metadata={},
        created_at=T0,
        updated_at=T0,
    )


@pytest.mark.parametrize(
    ("alert", "expected"),
    [
        pytest.param(
            _alert("a-1", AlertStatus.ACKNOWLEDGED),
            {T.STOCK_OUT: OpenAlert("a-1", AlertStatus.ACKNOWLEDGED), T.STOCK_LOW: OpenAlert("b-1", AlertStatus.ACTIVE)},
            id="acknowledged-kept",
        ),
        pytest.param(
            _alert("a-1", AlertStatus.RESOLVED), {T.STOCK_LOW: OpenAlert("b-1", AlertStatus.ACTIVE)}, id="resolved-removed"
        ),
        pytest.param(
            _alert("a-1", AlertStatus.DISMISSED), {T.STOCK_LOW: OpenAlert("b-1", AlertStatus.ACTIVE)}, id="dismissed-removed"
        ),
        pytest.param(
            _alert("other", AlertStatus.DISMISSED),
            {T.STOCK_OUT: OpenAlert("a-1", AlertStatus.ACTIVE), T.STOCK_LOW: OpenAlert("b-1", AlertStatus.ACTIVE)},
            id="other-id-ignored",
        ),
        pytest.param(
            _alert("a-1", AlertStatus.RESOLVED, T.PRICE_INCREASE),
            {T.STOCK_OUT: OpenAlert("a-1", AlertStatus.ACTIVE), T.STOCK_LOW: OpenAlert("b-1", AlertStatus.ACTIVE)},
            id="type-not-open-ignored",
        ),
    ],
)
def test_apply_alert_status(alert: Alert, expected: dict[AlertType, OpenAlert]) -> None:
    alerts = {T.STOCK_OUT: OpenAlert("a-1", AlertStatus.ACTIVE), T.STOCK_LOW: OpenAlert("b-1", AlertStatus.ACTIVE)}
    state = baseline().with_alerts(alerts)
    new = apply_alert_status(state, alert)
    assert new is not None
    assert new.alerts == expected
    assert replace(new, alerts={}) == replace(state, alerts={})  # nothing else moves
    assert state.alerts == alerts  # the input is not mutated
    if expected == alerts:
        assert new is state


def test_apply_alert_status_without_state() -> None:
    assert apply_alert_status(None, _alert("a-1", AlertStatus.RESOLVED)) is None


def test_acknowledged_then_resolved_via_outcome_alert() -> None:
    _, out = run([{"stock": 20}, {"stock": 0}])
    assert out.state is not None
    (opened,) = out.opened
    acked = alert_rules.transition(opened, AlertStatus.ACKNOWLEDGED, at(30))
    assert acked is not None
    state = apply_alert_status(out.state, acked)
    assert state is not None
    assert state.alerts == {T.STOCK_OUT: OpenAlert(opened.alert_id, AlertStatus.ACKNOWLEDGED)}
    resolved = alert_rules.transition(acked, AlertStatus.RESOLVED, at(40))
    assert resolved is not None
    state = apply_alert_status(state, resolved)
    assert state is not None and state.alerts == {}


# --------------------------------------------------------------------------- #
# models.alerts.transition
# --------------------------------------------------------------------------- #

S = AlertStatus
ALLOWED = {
    (S.ACTIVE, S.ACKNOWLEDGED),
    (S.ACTIVE, S.RESOLVED),
    (S.ACTIVE, S.DISMISSED),
    (S.ACKNOWLEDGED, S.RESOLVED),
    (S.ACKNOWLEDGED, S.DISMISSED),
}
ALL_MOVES = [(c, t) for c in AlertStatus for t in AlertStatus]


def _opened_alert() -> Alert:
    return alert_rules.open_alert(
        subject_key=KEY,
        store_id=STORE,
        product_id=PRODUCT,
        variant_id=None,
        alert_type=T.STOCK_OUT,
        title="Out of stock: Widget",
        message="m",
        metadata={},
        at=T0,
        trigger_micros=to_micros(T0),
    )


def _in_status(status: AlertStatus) -> Alert:
    alert = _opened_alert()
    if status is S.ACTIVE:
        return alert
    if status is S.ACKNOWLEDGED:
        return alert.model_copy(update={"status": status, "acknowledged_at": T0})
    return alert.model_copy(update={"status": status, "resolved_at": T0})


@pytest.mark.parametrize(("current", "target"), ALL_MOVES, ids=[f"{c.value}->{t.value}" for c, t in ALL_MOVES])
def test_the_status_rank_orders_the_lifecycle(current: AlertStatus, target: AlertStatus) -> None:
    """Readers that keep an alert's newest state order ties of ``updated_at`` by this rank
    (connectors/postgres/record.py in SQL): a higher rank exactly where the move is allowed."""
    rank = alert_rules.ALERT_STATUS_RANK
    assert set(rank) == {s.value for s in AlertStatus}
    assert (rank[target.value] > rank[current.value]) is alert_rules.can_transition(current, target)
    assert alert_rules.supersedes(T0, target, T0, current) is alert_rules.can_transition(current, target)


@pytest.mark.parametrize(("current", "target"), ALL_MOVES, ids=[f"{c.value}->{t.value}" for c, t in ALL_MOVES])
def test_transition_table(current: AlertStatus, target: AlertStatus) -> None:
    alert = _in_status(current)
    when = at(15)
    moved = alert_rules.transition(alert, target, when)
    assert alert_rules.can_transition(current, target) is ((current, target) in ALLOWED)
    if (current, target) not in ALLOWED:
        assert moved is None
        return
    assert moved is not None
    assert moved.status is target
    assert moved.updated_at == when
    assert moved.created_at == T0
    assert moved.alert_id == alert.alert_id
    if target is S.ACKNOWLEDGED:
        assert moved.acknowledged_at == when
        assert moved.resolved_at is None
    else:
        assert moved.resolved_at == when
        # an acknowledgement time survives the final move
        assert moved.acknowledged_at == (T0 if current is S.ACKNOWLEDGED else None)
    assert alert.status is current  # the input is not mutated


@pytest.mark.parametrize("target", [S.ACKNOWLEDGED, S.RESOLVED, S.DISMISSED])
def test_transition_time_never_goes_backwards(target: AlertStatus) -> None:
    alert = _opened_alert().model_copy(update={"updated_at": at(60)})
    moved = alert_rules.transition(alert, target, at(10))
    assert moved is not None
    assert moved.updated_at == at(60)
    stamp = moved.acknowledged_at if target is S.ACKNOWLEDGED else moved.resolved_at
    assert stamp == at(60)


def test_opened_alert_shape() -> None:
    alert = _opened_alert()
    assert alert.alert_id == alert_rules.alert_id(KEY, T.STOCK_OUT, to_micros(T0))
    assert (alert.type, alert.severity, alert.status) == (T.STOCK_OUT, Severity.HIGH, S.ACTIVE)


@pytest.mark.parametrize(
    ("alert_type", "severity"),
    [
        (T.STOCK_OUT, Severity.HIGH),
        (T.PRODUCT_REMOVED, Severity.HIGH),
        (T.STOCK_LOW, Severity.MEDIUM),
        (T.STOCK_RESTORED, Severity.LOW),
        (T.PRICE_INCREASE, Severity.MEDIUM),
        (T.PRICE_DECREASE, Severity.MEDIUM),
    ],
)
def test_inventory_alert_severities(alert_type: AlertType, severity: Severity) -> None:
    assert alert_rules.SEVERITY[alert_type] is severity


# --------------------------------------------------------------------------- #
# a supplier's webhook news as a snapshot
# --------------------------------------------------------------------------- #


def news(**overrides: Any) -> SupplierUpdate:
    data: dict[str, Any] = {"command_id": "n-1", "store_id": STORE, "product_id": PRODUCT, "provider": "ALIEXPRESS",
                            "source_id": "AE-100", "captured_at": at(5)}
    data.update(overrides)
    return SupplierUpdate.model_validate(data)


def test_stock_news_keeps_the_price_and_runs_the_usual_rules() -> None:
    state = baseline()
    made = snapshot_of_update(state, news(stock=0))
    assert made is not None
    assert (made.stock, made.cost_price, made.shipping_cost, made.currency, made.available) == (
        0, D("10.00"), D("2.00"), "USD", True)
    out = apply_snapshot(state, made, DEFAULT)
    assert out.state is not None and out.state.status is OOS
    assert [a.type for a in out.opened] == [T.STOCK_OUT]


def test_price_news_keeps_the_stock_and_takes_the_state_currency_when_it_names_none() -> None:
    made = snapshot_of_update(baseline(), news(cost_price="14.00"))
    assert made is not None and (made.stock, made.cost_price, made.currency) == (20, D("14.00"), "USD")
    priced = snapshot_of_update(baseline(), news(cost_price="14.00", currency="EUR"))
    assert priced is not None and priced.currency == "EUR"
    # A currency without a price says nothing of the price.
    assert snapshot_of_update(baseline(), news(currency="EUR", stock=3)).currency == "USD"  # type: ignore[union-attr]


def test_removal_news_and_news_of_another_source() -> None:
    gone = snapshot_of_update(baseline(), news(available=False))
    assert gone is not None and gone.available is False and gone.stock == 20
    assert snapshot_of_update(baseline(), news(source_id="AE-999", stock=1)) is None
    assert snapshot_of_update(baseline(), news(provider="CJ_DROPSHIPPING", stock=1)) is None


def test_the_same_news_twice_changes_nothing_the_second_time() -> None:
    state = baseline()
    made = snapshot_of_update(state, news(stock=2))
    assert made is not None
    first = apply_snapshot(state, made, DEFAULT)
    assert first.state is not None and first.result is SnapshotResult.CHANGED
    again = apply_snapshot(first.state, made, DEFAULT)
    assert again.result is SnapshotResult.STALE and again.opened == [] and again.change is None


# --------------------------------------------------------------------------- #
# the storefront's own count (Shopify inventory_levels/update)
# --------------------------------------------------------------------------- #


def shelf(available: int, minutes: float = 5) -> StorefrontStock:
    return StorefrontStock(command_id=f"r-{available}-{minutes}", store_id=STORE, product_id=PRODUCT,
                           available=available, location_id="6001", reported_at=at(minutes))


def test_storefront_count_within_tolerance_changes_nothing() -> None:
    state = baseline()  # 20 in stock
    for available in (20, 15, 25):
        assert check_storefront_stock(KEY, state, shelf(available), settings(stock_drift_tolerance=5)).state is None


def test_storefront_drift_opens_one_alert_until_a_count_agrees() -> None:
    state = baseline()
    drift = check_storefront_stock(KEY, state, shelf(3), DEFAULT)
    assert drift.durable and drift.state is not None
    (alert,) = drift.opened
    assert alert.type is T.STOCK_DRIFT and alert.metadata["storefront"] == "3" and alert.metadata["engine"] == "20"
    # Drift again while the alert is active: no second alert.
    assert check_storefront_stock(KEY, drift.state, shelf(2, 6), DEFAULT).state is None
    agreed = check_storefront_stock(KEY, drift.state, shelf(19, 7), DEFAULT)
    assert agreed.state is not None and T.STOCK_DRIFT not in agreed.state.alerts
    assert [(c.alert_id, c.status) for c in agreed.closed] == [(alert.alert_id, AlertStatus.RESOLVED)]


def test_a_removed_product_should_show_nothing_on_the_shelf() -> None:
    gone = apply_snapshot(baseline(), snap(available=False, captured_at=at(1)), DEFAULT).state
    assert gone is not None
    assert check_storefront_stock(KEY, gone, shelf(0), settings(stock_drift_tolerance=0)).state is None
    assert check_storefront_stock(KEY, gone, shelf(20), DEFAULT).opened[0].metadata["engine"] == "0"


# --------------------------------------------------------------------------- #
# A product newly mapped to a storefront variant
# --------------------------------------------------------------------------- #


def mapped(command_id: str = "catalogue:0:7") -> ProductMapped:
    return ProductMapped(command_id=command_id, store_id=STORE, product_id=PRODUCT, shop_domain="s.myshopify.com",
                         storefront_variant_id="41", mapped_at=at(5))


def test_a_mapped_change_shows_the_product_s_current_values_without_before() -> None:
    state = baseline(stock=9)
    change = republished_change(KEY, state, mapped(), ChangeReason.MAPPED)
    assert change.reason is ChangeReason.MAPPED and change.before is None
    assert change.after == state.view() and change.after.stock == 9
    assert set(change.changed) == set(ChangedField)
    assert (change.captured_at, change.sync_run_id, change.source_id) == (T0, "run-0", "AE-100")


def test_a_republished_change_id_is_the_same_for_a_replay_and_new_for_another_command_reason_or_state() -> None:
    state = baseline()
    moved = baseline(captured_at=at(1))
    resend = ProductResend(command_id="catalogue:0:7", store_id=STORE, product_id=PRODUCT, requested_at=at(5))

    def ident(s: ProductState, command: Any, reason: ChangeReason = ChangeReason.MAPPED) -> str:
        return republished_change(KEY, s, command, reason).change_id

    ids = {ident(state, mapped()), ident(state, mapped("catalogue:0:8")), ident(moved, mapped()),
           ident(state, resend, ChangeReason.RESENT)}
    assert ident(state, mapped()) == ident(state, mapped())
    assert len(ids) == 4
    assert change_id(KEY, ChangeReason.NEW, to_micros(T0)) not in ids
    assert republished_change(KEY, state, resend, ChangeReason.RESENT).reason is ChangeReason.RESENT
