"""The inventory diff: a supplier snapshot against the last known state (pure).

``apply_snapshot(state, snapshot, settings)`` decides everything: the new
state, the change record (``inventory.changes``) and the alerts to open or
close. ``reprice(state, settings)`` is the same for a change of a store's
settings. No I/O here; ``agents/inventory.py`` reads and writes the tables.

Rules (docs/events.md has them for readers):

- The first snapshot of a product is its baseline: ACTIVE if available and in
  stock, else OUT_OF_STOCK; priced; a NEW change; no alert.
- A snapshot not newer than the last applied one is STALE and changes nothing.
- In stock -> 0: OUT_OF_STOCK, STOCK_OUT (HIGH). ``available=false``:
  OUT_OF_STOCK, PRODUCT_REMOVED (HIGH). Back in stock: ACTIVE, STOCK_RESTORED
  (LOW), and the open STOCK_OUT / PRODUCT_REMOVED become RESOLVED. An open
  STOCK_RESTORED resolves when the product goes out again.
- Crossing down to the low-stock threshold (still > 0): STOCK_LOW (MEDIUM),
  resolved when the stock rises above the threshold.
- A cost change reprices; a change of at least the store's threshold percent
  opens PRICE_INCREASE / PRICE_DECREASE (MEDIUM). An ACKNOWLEDGED price alert
  of that type is resolved (superseded) by the new one.
- While an alert of a type is ACTIVE for a product, the same condition opens
  no second one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import Enum
from functools import lru_cache
from typing import Annotated, Any

import msgspec
import orjson
from pydantic import ValidationError

from models import alerts as alert_rules
from models.ids import name_uuid
from models.events import (
    Alert,
    AlertStatus,
    AlertType,
    ChangedField,
    ChangeReason,
    InventoryChange,
    ProductStatus,
    RUN_ID_MAX,
    StoreSettings,
    SupplierSnapshot,
    ProductCommand,
    StorefrontStock,
    SupplierUpdate,
    TEXT_MAX,
    trusted,
    validate_snapshot_tail,
)
from models.pricing import PriceQuote, price_change_percent, quote
from models.product import (
    OpenAlert,
    ProductState,
    compact,
    encode_state,
    from_micros,
    product_key,
    state_fields,
    state_of_fields,
    to_micros,
)

_CHANGE_NS = uuid.UUID("0b7f3c1e-2d4a-4c55-9a67-5e2f8d1c4b90")
ALL_FIELDS = tuple(ChangedField)


class SnapshotResult(str, Enum):
    NEW = "NEW"
    CHANGED = "CHANGED"
    UNCHANGED = "UNCHANGED"
    STALE = "STALE"


@dataclass(frozen=True, slots=True)
class AlertClose:
    """Move an open alert (known by id) to a final or acknowledged status."""

    alert_id: str
    status: AlertStatus


@dataclass(frozen=True, slots=True)
class ChangeDraft:
    """A change record before it is a model. ``model()`` is the ``InventoryChange``;
    ``json()`` its JSON bytes, built without the model (the same bytes as
    ``streams.codecs.encode(model())``: tests/unit/test_change_draft.py). The agent
    needs the bytes only: about 3.4 us instead of 6.3 per changed product."""

    change_id: str
    store_id: str
    product_id: str
    variant_id: str | None
    reason: ChangeReason
    changed: tuple[ChangedField, ...]
    before: ProductState | None
    after: ProductState

    def model(self) -> InventoryChange:
        after = self.after
        return trusted(
            InventoryChange,
            change_id=self.change_id,
            store_id=self.store_id,
            product_id=self.product_id,
            variant_id=self.variant_id,
            provider=after.provider,
            source_id=after.source_id,
            reason=self.reason,
            changed=self.changed,
            before=None if self.before is None else self.before.view(),
            after=after.view(),
            captured_at=after.captured_at,
            sync_run_id=after.sync_run_id,
        )

    def json(self) -> bytes:
        after = self.after
        # Right-sized (``compact``): the agent keeps the record until its commit.
        return compact(orjson.dumps({
            "change_id": self.change_id,
            "store_id": self.store_id,
            "product_id": self.product_id,
            "variant_id": self.variant_id,
            "provider": after.provider,
            "source_id": after.source_id,
            "reason": self.reason,  # orjson writes an enum as its value
            "changed": self.changed,
            "before": None if self.before is None else _view_json(self.before),
            "after": _view_json(after),
            "captured_at": _rfc3339(after.captured_at_us),
            "sync_run_id": after.sync_run_id,
        }))


@lru_cache(maxsize=4096)
def _rfc3339(micros: int) -> str:
    """Microseconds since the epoch in RFC 3339 form, for a change record: a sync page's
    changes share one snapshot time, formatted once."""
    return from_micros(micros).isoformat().replace("+00:00", "Z")


def _view_json(state: ProductState) -> dict[str, object]:
    """``ProductView``'s JSON form of a state (``ProductState.view``, serialised)."""
    compare_at = state.compare_at_price
    return {
        "status": state.status,
        "available": state.available,
        "stock": state.stock,
        "cost_price": str(state.cost_price),
        "shipping_cost": str(state.shipping_cost),
        "currency": state.currency,
        "selling_price": str(state.selling_price),
        "compare_at_price": None if compare_at is None else str(compare_at),
    }


@dataclass(slots=True)
class Outcome:
    result: SnapshotResult
    #: The new state; None when nothing is to be stored (STALE).
    state: ProductState | None
    #: True when the state must reach the changelog (anything but the time moved).
    durable: bool = False
    #: The change record (``change`` is its model, ``draft.json()`` its bytes).
    draft: ChangeDraft | None = None
    opened: list[Alert] = field(default_factory=list)
    closed: list[AlertClose] = field(default_factory=list)

    @property
    def change(self) -> InventoryChange | None:
        return None if self.draft is None else self.draft.model()


def change_id(key: str, reason: ChangeReason, micros: int) -> str:
    return name_uuid(_CHANGE_NS, f"{key}|{reason.value}|{micros}")


def status_of(available: bool, stock: int) -> ProductStatus:
    return ProductStatus.ACTIVE if available and stock > 0 else ProductStatus.OUT_OF_STOCK


_COMPARED = (
    ("stock", ChangedField.STOCK),
    ("available", ChangedField.AVAILABILITY),
    ("cost_price", ChangedField.COST),
    ("shipping_cost", ChangedField.SHIPPING),
    ("currency", ChangedField.CURRENCY),
    ("selling_price", ChangedField.SELLING_PRICE),
    ("compare_at_price", ChangedField.COMPARE_AT_PRICE),
    ("status", ChangedField.STATUS),
)


def _diff_fields(before: ProductState, after: ProductState) -> tuple[ChangedField, ...]:
    return tuple(kind for name, kind in _COMPARED if getattr(before, name) != getattr(after, name))


def _price(cost: Decimal, shipping: Decimal, settings: StoreSettings) -> PriceQuote:
    return quote(cost, shipping, settings.pricing)


def _make_change(
    key: str,
    snap_store: str,
    snap_product: str,
    snap_variant: str | None,
    reason: ChangeReason,
    changed: tuple[ChangedField, ...],
    before: ProductState | None,
    after: ProductState,
    id_micros: int,
    ident: str | None = None,
) -> ChangeDraft:
    return ChangeDraft(ident or change_id(key, reason, id_micros), snap_store, snap_product, snap_variant,
                       reason, changed, before, after)


def apply_snapshot(state: ProductState | None, snap: SupplierSnapshot, settings: StoreSettings) -> Outcome:
    """Diff one snapshot against the product's last state."""
    micros = to_micros(snap.captured_at)
    if state is not None and micros <= state.captured_at_us:
        return Outcome(SnapshotResult.STALE, None)

    key = product_key(snap.store_id, snap.product_id, snap.variant_id)
    available = snap.available
    stock = snap.stock
    status = status_of(available, stock)

    if state is None:
        q = _price(snap.cost_price, snap.shipping_cost, settings)
        new = ProductState(
            provider=snap.provider,
            source_id=snap.source_id,
            available=available,
            stock=stock,
            cost_price=snap.cost_price,
            shipping_cost=snap.shipping_cost,
            currency=snap.currency,
            selling_price=q.selling_price,
            compare_at_price=q.compare_at_price,
            status=status,
            captured_at_us=micros,
            alerts={},
            sync_run_id=snap.sync_run_id,
        )
        change = _make_change(
            key, snap.store_id, snap.product_id, snap.variant_id, ChangeReason.NEW, ALL_FIELDS, None, new, micros
        )
        return Outcome(SnapshotResult.NEW, new, durable=True, draft=change)

    # Fast path: the supplier says what it said last time; only the time moves.
    if (
        available == state.available
        and stock == state.stock
        and snap.cost_price == state.cost_price
        and snap.shipping_cost == state.shipping_cost
        and snap.currency == state.currency
        and snap.provider == state.provider
        and snap.source_id == state.source_id
    ):
        moved = ProductState(
            state.provider,
            state.source_id,
            state.available,
            state.stock,
            state.cost_price,
            state.shipping_cost,
            state.currency,
            state.selling_price,
            state.compare_at_price,
            state.status,
            micros,
            state.alerts,
            snap.sync_run_id,
        )
        return Outcome(SnapshotResult.UNCHANGED, moved)

    if (
        snap.cost_price != state.cost_price
        or snap.shipping_cost != state.shipping_cost
        or snap.currency != state.currency
    ):
        q = _price(snap.cost_price, snap.shipping_cost, settings)
        selling, compare_at = q.selling_price, q.compare_at_price
    else:
        selling, compare_at = state.selling_price, state.compare_at_price

    alerts = dict(state.alerts)
    opened: list[Alert] = []
    closed: list[AlertClose] = []

    def close(alert_type: AlertType, target: AlertStatus = AlertStatus.RESOLVED) -> None:
        current = alerts.pop(alert_type, None)
        if current is not None:
            closed.append(AlertClose(current.alert_id, target))

    def open_(alert_type: AlertType, title: str, message: str, metadata: dict[str, str]) -> None:
        current = alerts.get(alert_type)
        if current is not None and current.status is AlertStatus.ACTIVE:
            return  # the same condition is already alerted
        if current is not None:  # acknowledged: superseded by the new one
            close(alert_type)
        alert = alert_rules.open_alert(
            subject_key=key,
            store_id=snap.store_id,
            product_id=snap.product_id,
            variant_id=snap.variant_id,
            alert_type=alert_type,
            title=title,
            message=message,
            metadata=metadata,
            at=snap.captured_at,
            trigger_micros=micros,
        )
        alerts[alert_type] = OpenAlert(alert.alert_id, AlertStatus.ACTIVE)
        opened.append(alert)

    label = snap.title or snap.product_id
    # Why a product is out: removed by the supplier, or out of stock; None = in stock.
    was_out = _out_reason(state.available, state.stock)
    now_out = _out_reason(available, stock)
    if now_out != was_out:
        if now_out is None:
            close(AlertType.STOCK_OUT)
            close(AlertType.PRODUCT_REMOVED)
            open_(
                AlertType.STOCK_RESTORED,
                f"Back in stock: {label}",
                f"{label} is available again with {stock} in stock.",
                {"stock": str(stock), "previous_stock": str(state.stock)},
            )
        else:
            close(AlertType.STOCK_RESTORED)
            if now_out is AlertType.PRODUCT_REMOVED:
                open_(
                    AlertType.PRODUCT_REMOVED,
                    f"Removed by supplier: {label}",
                    f"{snap.provider} no longer offers {label} ({snap.source_id}); it is now out of stock.",
                    {"provider": snap.provider, "source_id": snap.source_id},
                )
            else:
                close(AlertType.PRODUCT_REMOVED)
                open_(
                    AlertType.STOCK_OUT,
                    f"Out of stock: {label}",
                    f"{label} has run out of stock at {snap.provider}.",
                    {"previous_stock": str(state.stock), "provider": snap.provider},
                )

    threshold = settings.low_stock_threshold
    if available and 0 < stock <= threshold < state.stock:
        open_(
            AlertType.STOCK_LOW,
            f"Low stock: {label}",
            f"{label} is down to {stock} (threshold {threshold}).",
            {"stock": str(stock), "threshold": str(threshold), "previous_stock": str(state.stock)},
        )
    elif stock > threshold and AlertType.STOCK_LOW in alerts:
        close(AlertType.STOCK_LOW)

    if snap.cost_price != state.cost_price:
        pct = price_change_percent(state.cost_price, snap.cost_price)
        # Compare the exact change with the threshold: the rounded figure is for people.
        exact = (
            (snap.cost_price - state.cost_price) * 100 / state.cost_price if state.cost_price else Decimal(100)
        )
        if abs(exact) >= settings.price_alert_threshold_pct:
            kind = AlertType.PRICE_INCREASE if pct > 0 else AlertType.PRICE_DECREASE
            word = "rose" if pct > 0 else "fell"
            open_(
                kind,
                f"Supplier cost {word} {abs(pct)}%: {label}",
                f"Cost of {label} {word} from {state.cost_price} to {snap.cost_price} {snap.currency} "
                f"({pct:+}%); new selling price {selling}.",
                {
                    "previous_cost": str(state.cost_price),
                    "new_cost": str(snap.cost_price),
                    "change_percent": str(pct),
                    "new_selling_price": str(selling),
                    "previous_selling_price": str(state.selling_price),
                    "currency": snap.currency,
                },
            )

    new = ProductState(
        provider=snap.provider,
        source_id=snap.source_id,
        available=available,
        stock=stock,
        cost_price=snap.cost_price,
        shipping_cost=snap.shipping_cost,
        currency=snap.currency,
        selling_price=selling,
        compare_at_price=compare_at,
        status=status,
        captured_at_us=micros,
        alerts=alerts,
        sync_run_id=snap.sync_run_id,
    )
    changed = _diff_fields(state, new)
    change = None
    if changed:
        change = _make_change(
            key, snap.store_id, snap.product_id, snap.variant_id, ChangeReason.SNAPSHOT, changed, state, new, micros
        )
    result = SnapshotResult.CHANGED if changed else SnapshotResult.UNCHANGED
    return Outcome(result, new, durable=True, draft=change, opened=opened, closed=closed)


def _out_reason(available: bool, stock: int) -> AlertType | None:
    if not available:
        return AlertType.PRODUCT_REMOVED
    if stock <= 0:
        return AlertType.STOCK_OUT
    return None


def reprice(key: str, state: ProductState, settings: StoreSettings) -> tuple[ProductState, InventoryChange | None]:
    """Reprice a tracked product under new settings (reason SETTINGS_CHANGED)."""
    q = _price(state.cost_price, state.shipping_cost, settings)
    if q.selling_price == state.selling_price and q.compare_at_price == state.compare_at_price:
        return state, None
    new = replace(state, selling_price=q.selling_price, compare_at_price=q.compare_at_price)
    store_id, product_id, variant_id = key.split("|", 2)
    change = _make_change(
        key,
        store_id,
        product_id,
        variant_id or None,
        ChangeReason.SETTINGS_CHANGED,
        _diff_fields(state, new),
        state,
        new,
        to_micros(settings.updated_at),
    ).model()
    return new, change


def apply_alert_status(state: ProductState | None, alert: Alert) -> ProductState | None:
    """Keep a product's open-alert map in step with an alert's new status."""
    if state is None or alert.type not in state.alerts:
        return state
    current = state.alerts[alert.type]
    if current.alert_id != alert.alert_id:
        return state
    alerts = dict(state.alerts)
    if alert.status in (AlertStatus.RESOLVED, AlertStatus.DISMISSED):
        del alerts[alert.type]
    else:
        alerts[alert.type] = OpenAlert(alert.alert_id, alert.status)
    return state.with_alerts(alerts)


def snapshot_of_update(state: ProductState, update: SupplierUpdate) -> SupplierSnapshot | None:
    """A supplier's webhook news of one product as a snapshot: what it says, and
    the rest from the product's current state. None when the product is fed by
    another supplier product now (the catalogue moved it; the news is not its)."""
    if update.provider != state.provider or update.source_id != state.source_id:
        return None
    cost, currency = state.cost_price, state.currency
    if update.cost_price is not None:
        cost, currency = update.cost_price, update.currency or state.currency
    return SupplierSnapshot.model_construct(
        store_id=update.store_id,
        product_id=update.product_id,
        variant_id=update.variant_id,
        provider=state.provider,
        source_id=state.source_id,
        available=state.available if update.available is None else update.available,
        stock=state.stock if update.stock is None else update.stock,
        cost_price=cost,
        shipping_cost=state.shipping_cost,
        currency=currency,
        captured_at=update.captured_at,
        title=None,
        images=(),
        sync_run_id=None,
    )


def republished_change(key: str, state: ProductState, command: ProductCommand, reason: ChangeReason) -> InventoryChange:
    """The change that shows a product's current values on the storefront again (a
    variant newly mapped to it: MAPPED; a resend: RESENT): no ``before`` (the
    storefront sets the quantity whatever it shows, and the price). Its id comes
    from the command and the state's snapshot time: a replay of the command is the
    same change, another command (or the same after the product moved) another."""
    ident = name_uuid(_CHANGE_NS, f"{key}|{reason.value}|{command.command_id}|{state.captured_at_us}")
    return _make_change(key, command.store_id, command.product_id, command.variant_id, reason,
                        ALL_FIELDS, None, state, state.captured_at_us, ident).model()


def engine_stock(state: ProductState) -> int:
    """The stock the engine says the storefront should show."""
    return state.stock if state.available else 0


def check_storefront_stock(
    key: str, state: ProductState, report: StorefrontStock, settings: StoreSettings
) -> Outcome:
    """The storefront's own count against the engine's: open a STOCK_DRIFT alert
    when they differ by more than the store's tolerance (once, while it stays
    active), resolve it when a report agrees. ``durable`` when the state moved."""
    expected = engine_stock(state)
    alerts = dict(state.alerts)
    current = alerts.get(AlertType.STOCK_DRIFT)
    opened: list[Alert] = []
    closed: list[AlertClose] = []
    if abs(report.available - expected) > settings.stock_drift_tolerance:
        if current is not None and current.status is AlertStatus.ACTIVE:
            return Outcome(SnapshotResult.UNCHANGED, None)
        if current is not None:  # acknowledged: superseded by the new one
            closed.append(AlertClose(current.alert_id, AlertStatus.RESOLVED))
        where = f" at location {report.location_id}" if report.location_id else ""
        alert = alert_rules.open_alert(
            subject_key=key,
            store_id=report.store_id,
            product_id=report.product_id,
            variant_id=report.variant_id,
            alert_type=AlertType.STOCK_DRIFT,
            title=f"Storefront stock differs: {report.product_id}",
            message=(
                f"The storefront shows {report.available}{where}; the engine computed {expected} "
                f"from {state.provider} (tolerance {settings.stock_drift_tolerance})."
            ),
            metadata={"storefront": str(report.available), "engine": str(expected),
                      "location_id": report.location_id or ""},
            at=report.reported_at,
            trigger_micros=int(report.reported_at.timestamp() * 1_000_000),
        )
        alerts[AlertType.STOCK_DRIFT] = OpenAlert(alert.alert_id, AlertStatus.ACTIVE)
        opened.append(alert)
    elif current is not None:
        del alerts[AlertType.STOCK_DRIFT]
        closed.append(AlertClose(current.alert_id, AlertStatus.RESOLVED))
    else:
        return Outcome(SnapshotResult.UNCHANGED, None)
    return Outcome(SnapshotResult.CHANGED, state.with_alerts(alerts), durable=True, opened=opened, closed=closed)


_STALE = Outcome(SnapshotResult.STALE, None)
_UNCHANGED = Outcome(SnapshotResult.UNCHANGED, None)


def apply_snapshot_encoded(
    raw: bytes | None, snap: SupplierSnapshot, settings: StoreSettings
) -> tuple[Outcome, bytes | None]:
    """``apply_snapshot`` on a table value: (outcome, new encoded state or None).

    The same decision as ``apply_snapshot`` (a property test holds them equal),
    with a fast path for the common case -- the supplier says what it said last
    time -- that compares the encoded fields without building a ProductState.
    The outcome of that path carries no state: the encoded bytes are the state.
    """
    if raw is None:
        out = apply_snapshot(None, snap, settings)
        assert out.state is not None
        return out, encode_state(out.state)
    fields = state_fields(raw)
    micros = to_micros(snap.captured_at)
    if micros <= fields[11]:
        return _STALE, None
    if (
        snap.stock == fields[4]
        and snap.available is fields[3]
        and snap.currency == fields[7]
        and snap.provider == fields[1]
        and snap.source_id == fields[2]
        and str(snap.cost_price) == fields[5]
        and str(snap.shipping_cost) == fields[6]
    ):
        fields[11] = micros
        fields[13] = snap.sync_run_id
        return _UNCHANGED, compact(orjson.dumps(fields))
    out = apply_snapshot(state_of_fields(fields), snap, settings)
    return out, None if out.state is None else encode_state(out.state)


# --------------------------------------------------------------------------- #
# The fast path: a page decoded in one pass, and a snapshot that says what the state says
# --------------------------------------------------------------------------- #

_SNAPSHOT_FIELDS = SupplierSnapshot.model_fields
_AVAILABLE_DEFAULT = _SNAPSHOT_FIELDS["available"].default
_SHIPPING_DEFAULT = str(_SNAPSHOT_FIELDS["shipping_cost"].default)
_VARIANT_DEFAULT = _SNAPSHOT_FIELDS["variant_id"].default
_FreeText = Annotated[str, msgspec.Meta(max_length=TEXT_MAX)]
_RunId = Annotated[str, msgspec.Meta(max_length=RUN_ID_MAX)]


class PageItem(msgspec.Struct):
    """A snapshot object of a ``supplier.snapshots`` message as the fast path reads it.

    msgspec decodes a whole page into these in one pass (``decode_page``), about
    a third of what parsing it with orjson and validating each object's tail
    with pydantic took. The fields the state keeps arrive as the JSON values
    they are (``Any``: the fast path compares them with the stored ones, type
    included); the tail fields the state does not keep are checked here, with
    the limits of ``SupplierSnapshot`` (title, images, sync_run_id; captured_at
    goes through pydantic's own validation, once per distinct value:
    ``_captured_micros``). A page msgspec refuses (one object over a limit,
    not an object) takes the full path whole (``agents/inventory.py``). A field
    absent from the JSON is ``UNSET``, or the model's default where the model
    has one, so ``as_dict`` hands pydantic what it would have read from the JSON.
    Unknown fields are dropped, as the model ignores them.
    """

    store_id: Any = msgspec.UNSET
    product_id: Any = msgspec.UNSET
    variant_id: Any = _VARIANT_DEFAULT
    provider: Any = msgspec.UNSET
    source_id: Any = msgspec.UNSET
    available: Any = _AVAILABLE_DEFAULT
    stock: Any = msgspec.UNSET
    cost_price: Any = msgspec.UNSET
    shipping_cost: Any = _SHIPPING_DEFAULT
    currency: Any = msgspec.UNSET
    captured_at: Any = msgspec.UNSET
    title: _FreeText | None | msgspec.UnsetType = msgspec.UNSET
    images: tuple[_FreeText, ...] | msgspec.UnsetType = msgspec.UNSET
    sync_run_id: _RunId | None | msgspec.UnsetType = msgspec.UNSET

    def as_dict(self) -> dict[str, Any]:
        """The object for full validation: every field the JSON had (or defaulted to).

        msgspec leaves ``UNSET`` fields out (0.28 us, a third of a comprehension's
        time); images come as a list, which the model takes as it takes the JSON's."""
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]


_PAGE_DECODER = msgspec.json.Decoder(list[PageItem] | PageItem)
#: The model's core validator, without the TypeAdapter wrapper's Python call.
_VALIDATE_SNAPSHOT = SupplierSnapshot.__pydantic_validator__.validate_python


def validate_item(item: PageItem | dict[str, Any]) -> SupplierSnapshot:
    """A decoded (or parsed) snapshot object validated in full; raises ``ValidationError``."""
    return _VALIDATE_SNAPSHOT(item.as_dict() if type(item) is PageItem else item)


def decode_page(raw: bytes) -> list[tuple[int | None, PageItem]] | None:
    """A message's snapshot objects with their page index (None: the message is one object),
    or None when msgspec refuses the message (not JSON, not objects, a tail field over its limit)."""
    try:
        decoded = _PAGE_DECODER.decode(raw)
    except msgspec.DecodeError:
        return None
    if type(decoded) is list:
        return list(enumerate(decoded))
    return [(None, decoded)]


def item_product_key(item: PageItem) -> str | None:
    """The product key of a decoded snapshot object, or None when its ids are not plain strings.

    A key found in the product table was built from ids that passed validation
    (no separator, no blank, not empty), so an item whose key is found has valid
    ids. An empty variant_id would build the key of "no variant": refused here.
    """
    store_id, product_id, variant_id = item.store_id, item.product_id, item.variant_id
    if type(store_id) is not str or type(product_id) is not str:
        return None
    if variant_id is not None and (type(variant_id) is not str or not variant_id):
        return None
    return product_key(store_id, product_id, variant_id)


def _validated_micros(sent: object) -> int | None:
    """``to_micros`` of captured_at as ``SupplierSnapshot`` validates it, or None if it refuses it.

    pydantic's validation of the field itself (``validate_snapshot_tail``, without the
    conversion to UTC: microseconds since the epoch are the same in any offset)."""
    try:
        tail = validate_snapshot_tail({} if sent is msgspec.UNSET else {"captured_at": sent})
    except ValidationError:
        return None
    return to_micros(tail["captured_at"])


#: A string's verdict, remembered: a sync's page sends one time for all its snapshots,
#: and validating and converting it costs about 0.6 us.
_validated_micros_of_text = lru_cache(maxsize=4096)(_validated_micros)


def _captured_micros(sent: object) -> int | None:
    """``_validated_micros``, remembered for strings (other values may not be hashable)."""
    if type(sent) is str:
        return _validated_micros_of_text(sent)
    return _validated_micros(sent)


def apply_unchanged(raw: bytes, item: PageItem) -> tuple[Outcome, bytes | None] | None:
    """The outcome of a decoded snapshot object that repeats the product's state, or None.

    90 % of a sync's snapshots say what the supplier said last time. The values
    kept in the state (provider, source_id, available, stock, cost and shipping
    as decimal strings, currency) were validated when they were applied, so an
    item carrying the very same JSON values (same types) validates to the same
    values again; the fields the state does not keep were checked by the page's
    decoder (``PageItem``) and captured_at by pydantic (``_captured_micros``).
    That skips validating the whole snapshot and building a ProductState.

    ``raw`` is the product's table value for ``item_product_key(item)``. Returns
    None when the item needs the full path (``SupplierSnapshot`` validation of
    ``item.as_dict()``, then ``apply_snapshot_encoded``); otherwise exactly what
    that path returns (a property test holds them equal): STALE, or UNCHANGED
    with the state whose snapshot time and sync run moved.
    """
    fields = state_fields(raw)
    stock = item.stock
    if (
        type(stock) is not int
        or stock != fields[4]
        or item.available is not fields[3]
        or item.cost_price != fields[5]
        or item.shipping_cost != fields[6]
        or item.currency != fields[7]
        or item.provider != fields[1]
        or item.source_id != fields[2]
    ):
        return None
    micros = _captured_micros(item.captured_at)
    if micros is None:
        return None  # the full path refuses it, with the reasons
    if micros <= fields[11]:
        return _STALE, None
    fields[11] = micros
    run = item.sync_run_id
    fields[13] = None if run is msgspec.UNSET else run
    return _UNCHANGED, compact(orjson.dumps(fields))
