"""The event contract: pydantic v2 models of every record on the wire.

Pydantic lives at the edges: a record is decoded once from bytes with
``model_validate_json`` and encoded with ``to_json`` (see ``models.codec``).
Money is a ``Decimal`` that travels as a decimal string, never a float; times
are timezone-aware and normalised to UTC. Unknown fields are ignored (kept out
of the state), never fatal. ``docs/events.md`` describes these records and
``ops-engine schema`` prints their JSON Schema.
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
)
# pydantic needs typing_extensions' TypedDict before Python 3.12.
from typing_extensions import NotRequired, TypedDict

from models.countries import ISO_3166_ALPHA2
from models.currencies import ISO_4217
from models.pricing import PricingRules

_M = TypeVar("_M", bound=BaseModel)

_set_attribute = object.__setattr__


def trusted(cls: type[_M], **values: Any) -> _M:
    """``cls.model_construct(**values)`` for trusted values that name every field of
    ``cls``: the same instance, without pydantic's loop over each field's aliases and
    defaults (about 6 us -> 2.7 us here; a changed product builds four: the change,
    its before and after views, an alert). For models without aliases, extras or
    post-init; tests/unit/test_trusted.py holds each use equal to ``model_construct``.
    """
    made = cls.__new__(cls)
    _set_attribute(made, "__dict__", values)
    _set_attribute(made, "__pydantic_fields_set__", set(values))
    _set_attribute(made, "__pydantic_extra__", None)
    _set_attribute(made, "__pydantic_private__", None)
    return made


# --------------------------------------------------------------------------- #
# Field types shared by the events
# --------------------------------------------------------------------------- #


def _no_float(value: Any) -> Any:
    # A JSON number arrives as float: money must be a decimal string (or an
    # integer), because a float cannot carry cents exactly.
    if isinstance(value, float):
        raise ValueError("money must be a decimal string such as \"12.50\", not a float")
    return value


def _utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


def _currency(value: str) -> str:
    code = value
    if code not in ISO_4217:
        raise ValueError(f"unknown currency {value!r} (ISO 4217 code expected)")
    return code


def _country(value: str) -> str:
    if value not in ISO_3166_ALPHA2:
        raise ValueError(f"unknown country {value!r} (ISO 3166-1 alpha-2 code expected, e.g. US, GB, DE)")
    return value


MONEY_JSON_SCHEMA = {
    "type": "string",
    "pattern": r"^[0-9]{1,12}(\.[0-9]{1,6})?$",
    "description": "decimal string, e.g. \"12.50\" (an integer is accepted; a JSON float is refused)",
}
Money = Annotated[
    Decimal,
    # Constraints first, so pydantic-core checks them natively (after a Python
    # validator they would run in Python, slower than all the rest of a snapshot).
    Field(ge=0, lt=10**12, max_digits=18, decimal_places=6, allow_inf_nan=False),
    BeforeValidator(_no_float),
    WithJsonSchema(MONEY_JSON_SCHEMA),
]
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]
Currency = Annotated[
    str, StringConstraints(to_upper=True, pattern=r"^[A-Za-z]{3}$"), AfterValidator(_currency)
]
CountryCode = Annotated[
    str, StringConstraints(to_upper=True, pattern=r"^[A-Za-z]{2}$"), AfterValidator(_country)
]
# Ids are joined with "|" into table keys, so the separator is refused in them.
Ident = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^|\s]+$")]
#: Longest free text (a title, an image URL) and sync run id of a snapshot; the inventory
#: fast path's page decoder (models.inventory.PageItem) checks the same limits.
TEXT_MAX = 2000
RUN_ID_MAX = 200
Text = Annotated[str, StringConstraints(max_length=TEXT_MAX)]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Event(BaseModel):
    """Base of every record: frozen, unknown fields ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


# --------------------------------------------------------------------------- #
# supplier.snapshots
# --------------------------------------------------------------------------- #


KNOWN_PROVIDERS = ("ALIEXPRESS", "CJ_DROPSHIPPING", "SPOCKET")


Provider = Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, min_length=1, max_length=64)]
SourceId = Annotated[str, StringConstraints(min_length=1, max_length=200)]


#: The largest stock a supplier may report: what PostgreSQL's ``integer`` and Shopify's
#: GraphQL ``Int`` hold (2**31 - 1). A larger count is a supplier's error, refused at the edge.
MAX_STOCK = 2_147_483_647


class SupplierSnapshot(Event):
    """What a supplier says of one product (or variant) at one moment.

    Topic ``supplier.snapshots``, message key ``store_id``. A message holds one
    snapshot (a JSON object) or a page of snapshots of one store (a JSON array).
    """

    store_id: Ident
    product_id: Ident
    variant_id: Ident | None = None
    provider: Provider = Field(description="ALIEXPRESS, CJ_DROPSHIPPING, SPOCKET, or another name")
    source_id: SourceId
    available: bool = Field(True, description="false when the supplier removed the item")
    stock: int = Field(ge=0, le=MAX_STOCK)
    cost_price: Money
    shipping_cost: Money = Decimal("0")
    currency: Currency
    captured_at: UtcDatetime
    title: Text | None = None
    images: tuple[Annotated[str, StringConstraints(max_length=TEXT_MAX)], ...] = ()
    sync_run_id: Annotated[str, StringConstraints(max_length=RUN_ID_MAX)] | None = None


#: The fields of a snapshot that a product's state does not keep.
SNAPSHOT_TAIL_FIELDS = ("captured_at", "title", "images", "sync_run_id")


def _tail_adapter() -> TypeAdapter[Any]:
    # Built from SupplierSnapshot's own fields (types, constraints, validators,
    # defaults), so it cannot drift from the model. One validator is left out:
    # the conversion of captured_at to UTC, a Python call per snapshot (more
    # than half the cost of this validation) that refuses nothing. The fast
    # path reads captured_at only as microseconds since the epoch, the same in
    # any offset (models.product.to_micros).
    fields = SupplierSnapshot.model_fields
    annotations: dict[str, Any] = {}
    for name in SNAPSHOT_TAIL_FIELDS:
        info = fields[name]
        metadata = [m for m in info.metadata if not (isinstance(m, AfterValidator) and m.func is _utc)]
        typ = Annotated[(info.annotation, *metadata)] if metadata else info.annotation
        annotations[name] = typ if info.is_required() else NotRequired[typ]
    return TypeAdapter(TypedDict("SnapshotTail", annotations))  # type: ignore[operator]


# The core validator itself: TypeAdapter.validate_python's own wrapper costs
# about as much again as this small validation.
_TAIL = _tail_adapter().validator


def validate_snapshot_tail(item: dict[str, Any]) -> dict[str, Any]:
    """Validate only the tail fields of a parsed snapshot object, as SupplierSnapshot would.

    The inventory fast path uses it for the captured_at of a snapshot whose
    other fields are the very values already validated and kept in the
    product's state (its page decoder, ``models.inventory.PageItem``, checks
    the other tail fields with these limits). Raises
    ``ValidationError``; absent optional fields are absent from the result.
    ``captured_at`` keeps the offset it was given (the model's is UTC): the
    same instant.
    """
    return _TAIL.validate_python(item)


# --------------------------------------------------------------------------- #
# store.settings
# --------------------------------------------------------------------------- #


class SyncFrequency(str, Enum):
    HIGH = "HIGH"
    STANDARD = "STANDARD"


class NotificationChannel(str, Enum):
    EMAIL = "EMAIL"
    WEBHOOK = "WEBHOOK"
    SLACK = "SLACK"


class NotificationTarget(Event):
    channel: NotificationChannel
    address: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class StoreSettings(Event):
    """A store's settings. Topic ``store.settings``, key ``store_id``.

    The topic has the partition count of ``supplier.snapshots``, so a store's
    settings and its products live on one partition. The newest ``updated_at``
    wins; an older settings record is ignored.
    """

    store_id: Ident
    pricing: PricingRules = PricingRules()
    low_stock_threshold: int = Field(5, ge=0)
    price_alert_threshold_pct: Annotated[Decimal, BeforeValidator(_no_float), Field(gt=0)] = Decimal("10")
    #: Units the storefront's own stock count may differ from the engine's before a STOCK_DRIFT alert
    #: (sales lower the storefront's count between syncs).
    stock_drift_tolerance: int = Field(5, ge=0)
    sync_frequency: SyncFrequency = SyncFrequency.STANDARD
    currency: Currency = "USD"
    #: Where the store's customers are: the destination of the suppliers' freight quotes
    #: (the shipping cost a sync puts in the snapshots of AliExpress and CJ products).
    ship_to_country: CountryCode = Field(
        "US", description="ISO 3166-1 alpha-2 destination of the suppliers' freight quotes"
    )
    notification_targets: tuple[NotificationTarget, ...] = ()
    auto_video: bool = Field(
        False, description="a product seen for the first time (with images) gets a PRODUCT_SHOWCASE video, once"
    )
    updated_at: UtcDatetime = Field(default_factory=utcnow)


def default_settings(store_id: str) -> StoreSettings:
    """Settings of a store that never published any: the plan's defaults."""
    return StoreSettings(store_id=store_id, updated_at=datetime(1970, 1, 1, tzinfo=timezone.utc))


# --------------------------------------------------------------------------- #
# inventory.changes
# --------------------------------------------------------------------------- #


class ProductStatus(str, Enum):
    ACTIVE = "ACTIVE"
    OUT_OF_STOCK = "OUT_OF_STOCK"


class ChangeReason(str, Enum):
    NEW = "NEW"
    SNAPSHOT = "SNAPSHOT"
    SETTINGS_CHANGED = "SETTINGS_CHANGED"
    MAPPED = "MAPPED"  # the product's current values, for a storefront variant newly mapped to it
    RESENT = "RESENT"  # the product's current values, asked for again (a replayed change: ProductResend)


class ChangedField(str, Enum):
    STOCK = "STOCK"
    AVAILABILITY = "AVAILABILITY"
    COST = "COST"
    SHIPPING = "SHIPPING"
    CURRENCY = "CURRENCY"
    SELLING_PRICE = "SELLING_PRICE"
    COMPARE_AT_PRICE = "COMPARE_AT_PRICE"
    STATUS = "STATUS"


class ProductView(Event):
    """A product's tracked state as the engine sees it (before/after of a change)."""

    status: ProductStatus
    available: bool
    stock: int
    cost_price: Decimal
    shipping_cost: Decimal
    currency: str
    selling_price: Decimal
    compare_at_price: Decimal | None = None


class InventoryChange(Event):
    """One product whose stock, cost, selling price or status changed.

    Topic ``inventory.changes``, key ``store_id``. ``change_id`` is derived from
    the product and the snapshot time, so a replay yields the same id.
    """

    change_id: str
    store_id: str
    product_id: str
    variant_id: str | None = None
    provider: str
    source_id: str
    reason: ChangeReason
    changed: tuple[ChangedField, ...]
    before: ProductView | None = None
    after: ProductView
    captured_at: UtcDatetime
    sync_run_id: str | None = None


# --------------------------------------------------------------------------- #
# alerts
# --------------------------------------------------------------------------- #


class AlertType(str, Enum):
    STOCK_OUT = "STOCK_OUT"
    STOCK_LOW = "STOCK_LOW"
    STOCK_RESTORED = "STOCK_RESTORED"
    PRICE_INCREASE = "PRICE_INCREASE"
    PRICE_DECREASE = "PRICE_DECREASE"
    PRODUCT_REMOVED = "PRODUCT_REMOVED"
    SYNC_FAILURE = "SYNC_FAILURE"
    ORDER_ISSUE = "ORDER_ISSUE"
    PAYMENT_ISSUE = "PAYMENT_ISSUE"
    STOCK_DRIFT = "STOCK_DRIFT"
    APP_UNINSTALLED = "APP_UNINSTALLED"
    STOREFRONT_REFUSED = "STOREFRONT_REFUSED"  # the shop refused the store's account (HTTP 401/403)
    STOREFRONT_UNAVAILABLE = "STOREFRONT_UNAVAILABLE"  # the shop failed every try for OPS_STOREFRONT_UNAVAILABLE_S


class Severity(str, Enum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


class AlertStatus(str, Enum):
    ACTIVE = "ACTIVE"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    RESOLVED = "RESOLVED"
    DISMISSED = "DISMISSED"


TERMINAL_ALERT_STATUSES = frozenset({AlertStatus.RESOLVED, AlertStatus.DISMISSED})


class Alert(Event):
    """An alert and its current status. Topic ``alerts``, key ``store_id``.

    Every status change publishes the whole alert again with the same
    ``alert_id``: a reader keeps the record with the newest ``updated_at``.
    """

    alert_id: str
    store_id: str
    product_id: str | None = None
    variant_id: str | None = None
    type: AlertType
    severity: Severity
    status: AlertStatus
    title: str
    message: str
    metadata: dict[str, str] = Field(default_factory=dict)
    created_at: UtcDatetime
    updated_at: UtcDatetime
    acknowledged_at: UtcDatetime | None = None
    resolved_at: UtcDatetime | None = None


# --------------------------------------------------------------------------- #
# inventory.commands (internal: what the web views ask of the owner of a store)
# --------------------------------------------------------------------------- #


class AlertAction(str, Enum):
    ACKNOWLEDGE = "ACKNOWLEDGE"
    DISMISS = "DISMISS"


class AlertCommand(Event):
    """Acknowledge or dismiss an alert. Topic ``inventory.commands``, key ``store_id``.

    Table writes happen only inside the agent that owns the store's partition,
    so a web view publishes this command rather than writing the table.
    """

    command_id: str
    store_id: Ident
    alert_id: str
    action: AlertAction
    requested_at: UtcDatetime = Field(default_factory=utcnow)


class AlertRecord(Event):
    """Keep an alert raised elsewhere (the orders agent, the webhook router) in the
    store's alert table, so the store's alert views show it too. Topic
    ``inventory.commands``, key ``store_id``. The alert itself was already
    published on ``alerts``; this only records it where the store's alerts live."""

    command_id: str
    store_id: Ident
    record: Alert

    @classmethod
    def of(cls, alert: Alert) -> AlertRecord:
        """The record of ``alert`` for its store's alert table; its id comes from the alert's."""
        return cls(command_id=f"record:{alert.alert_id}", store_id=alert.store_id, record=alert)


class StoreAlertsResolve(Event):
    """Resolve a store's open alerts of one type that concern the store, not a product:
    the condition is over. Topic ``inventory.commands``, key ``store_id``. The storefront
    process sends it for ``STOREFRONT_UNAVAILABLE`` once a set-aside store's shop
    answers again and the store's dead letters have been replayed. The agent moves every
    ACTIVE or ACKNOWLEDGED alert of ``alert_type`` of the store (without a product)
    created at or before ``requested_at`` to RESOLVED and publishes it on ``alerts``; a
    replay finds them resolved already and leaves alerts created later alone."""

    kind: Literal["STORE_ALERTS_RESOLVE"] = "STORE_ALERTS_RESOLVE"
    command_id: str
    store_id: Ident
    alert_type: AlertType
    requested_at: UtcDatetime


class ProductCommand(Event):
    """A command about one store product, on ``inventory.commands`` (key ``store_id``);
    each kind below says what the inventory agent does with it."""

    command_id: str
    store_id: Ident
    product_id: Ident
    variant_id: Ident | None = None


class SupplierUpdate(ProductCommand):
    """A supplier's news of one store product (from its webhook): apply it as a
    snapshot of that product, keeping what the news does not say from the
    product's current state. Topic ``inventory.commands``, key ``store_id``.

    A product the engine has not seen yet is left to the next sync (a snapshot
    needs a price and a stock to start from). A replay applies the same
    snapshot again, which changes nothing."""

    kind: Literal["SUPPLIER_UPDATE"] = "SUPPLIER_UPDATE"
    provider: Provider
    source_id: SourceId
    available: bool | None = None
    stock: int | None = Field(None, ge=0, le=MAX_STOCK)
    cost_price: Money | None = None
    currency: Currency | None = None
    captured_at: UtcDatetime


class StorefrontStock(ProductCommand):
    """What the storefront says it has in stock of one product (Shopify
    ``inventory_levels/update``, resolved through the catalogue). Topic
    ``inventory.commands``, key ``store_id``. The agent compares it with the
    stock the engine computed and opens a STOCK_DRIFT alert when they differ
    by more than the store's ``stock_drift_tolerance``, resolving it when a
    later report agrees."""

    kind: Literal["STOREFRONT_STOCK"] = "STOREFRONT_STOCK"
    available: int  # Shopify's count may be negative (oversold)
    location_id: str | None = None
    reported_at: UtcDatetime


class ProductMapped(ProductCommand):
    """A store product that a ``catalog.variants`` record maps to a storefront
    variant for the first time (the webhook router saw the record). Topic
    ``inventory.commands``, key ``store_id``. The agent publishes the product's
    current values as an ``InventoryChange`` (reason MAPPED, no ``before``), so
    the storefront shows them without waiting for the product's next change. A
    product not tracked yet is left to its first snapshot, whose NEW change is
    pushed. A replay publishes the same change (same id) again."""

    kind: Literal["PRODUCT_MAPPED"] = "PRODUCT_MAPPED"
    shop_domain: str
    storefront_variant_id: str
    mapped_at: UtcDatetime


class ProductResend(ProductCommand):
    """Publish a store product's current values again. Topic ``inventory.commands``,
    key ``store_id``. The storefront process sends it in place of an
    ``inventory.changes`` record replayed from ``deadletter``: such a change is old
    (newer ones may have reached the shop since), so pushing it could put an old
    quantity or price back; the product's current values are right whenever they
    come. The agent publishes them as an ``InventoryChange`` with reason RESENT (no
    ``before``); a product it does not track is left alone."""

    kind: Literal["PRODUCT_RESEND"] = "PRODUCT_RESEND"
    requested_at: UtcDatetime


# --------------------------------------------------------------------------- #
# deadletter
# --------------------------------------------------------------------------- #


class DeadLetterReason(str, Enum):
    INVALID_JSON = "INVALID_JSON"
    SCHEMA_VIOLATION = "SCHEMA_VIOLATION"
    KEY_MISMATCH = "KEY_MISMATCH"
    UNKNOWN_TOPIC = "UNKNOWN_TOPIC"
    PROCESSING_ERROR = "PROCESSING_ERROR"
    INVALID_IN_STATE = "INVALID_IN_STATE"  # an order event the order's state refuses
    UNMAPPABLE = "UNMAPPABLE"  # a webhook the engine cannot turn into events (models/webhook_routing.py)
    ARCHIVED = "ARCHIVED"  # an event for an order or video job already archived (models/archive.py)
    STOREFRONT_REFUSED = "STOREFRONT_REFUSED"  # the shop refused the store's account (401/403): replay once fixed
    STOREFRONT_UNAVAILABLE = "STOREFRONT_UNAVAILABLE"  # the shop failed every try: replayed once it answers


class DeadLetter(Event):
    """A record the engine refused, with why. Topic ``deadletter``.

    ``value`` and ``key`` are the original bytes, base64-encoded, so the record
    can be replayed unchanged once the cause is fixed.
    """

    topic: str
    partition: int
    offset: int
    key: str | None = Field(None, description="original key bytes, base64")
    value: str = Field(description="original value bytes, base64")
    reason: DeadLetterReason
    detail: str
    item_index: int | None = Field(None, description="index of the refused item in a page")
    refused_at: UtcDatetime = Field(default_factory=utcnow)

    @classmethod
    def of(cls, record: Any, reason: DeadLetterReason, detail: str, value: bytes | None = None) -> DeadLetter:
        """The dead letter of a consumed ``record`` (anything with topic, partition,
        offset, key and value: a Kafka message); ``value`` replaces the record's own
        (e.g. one refused event out of several)."""
        key = record.key
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=None if key is None else base64.b64encode(key).decode(),
            value=base64.b64encode((record.value or b"") if value is None else value).decode(),
            reason=reason,
            detail=detail[:2000],
        )


#: Topic name -> the record type a message on it carries (for schema/publish).
CONTRACT: dict[str, type[Event]] = {
    "supplier.snapshots": SupplierSnapshot,
    "store.settings": StoreSettings,
    "inventory.changes": InventoryChange,
    "alerts": Alert,
    "inventory.commands": AlertCommand,
    "deadletter": DeadLetter,
}

#: Topic name -> the field whose value is the message key.
MESSAGE_KEY: dict[str, str] = {
    "supplier.snapshots": "store_id",
    "store.settings": "store_id",
    "inventory.changes": "store_id",
    "alerts": "store_id",
    "inventory.commands": "store_id",
    "deadletter": "topic",
}
