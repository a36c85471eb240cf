"""The order contract: events on ``orders.events``, commands on ``orders.commands``,
and what the fulfillment machine asks of the outside world (notifications,
storefront updates).

Every order event carries ``event_id`` (unique, set by the producer: a webhook's
own id, a supplier order's idempotency key, ...), ``order_id`` (the message key),
``store_id``, ``type`` and ``occurred_at``; the rest is its body, by type. The
machine (``models/fulfillment.py``) deduplicates on ``event_id``, so a producer
that re-sends an event must re-send it with the same id.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from enum import Enum
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

from models.events import Currency, Event, Ident, Money, Provider, Text, UtcDatetime, utcnow

# --------------------------------------------------------------------------- #
# Parts of an order
# --------------------------------------------------------------------------- #

Email = Annotated[str, StringConstraints(strip_whitespace=True, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
Short = Annotated[str, StringConstraints(max_length=200)]


class Customer(Event):
    name: Short | None = None
    email: Email | None = None
    phone: Short | None = None


class Address(Event):
    name: Short
    line1: Short
    line2: Short | None = None
    city: Short
    province: Short | None = None
    postal_code: Short | None = None
    country_code: Annotated[str, StringConstraints(to_upper=True, pattern=r"^[A-Za-z]{2}$")]
    phone: Short | None = None


class OrderItem(Event):
    """One line of an order, resolved to our product and its supplier source."""

    line_id: Ident
    product_id: Ident
    variant_id: Ident | None = None
    title: Text | None = None
    quantity: int = Field(ge=1, le=10_000)
    unit_price: Money
    provider: Provider
    source_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    source_variant_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None


class PaymentStatus(str, Enum):
    PENDING = "PENDING"
    PAID = "PAID"


class Tracking(Event):
    number: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=64)]
    carrier: Short | None = None
    url: Annotated[str, StringConstraints(max_length=2000)] | None = None


# --------------------------------------------------------------------------- #
# orders.events
# --------------------------------------------------------------------------- #


class OrderEventType(str, Enum):
    ORDER_CREATED = "ORDER_CREATED"
    PAYMENT_CONFIRMED = "PAYMENT_CONFIRMED"
    SUPPLIER_ORDER_PLACED = "SUPPLIER_ORDER_PLACED"
    SUPPLIER_ORDER_FAILED = "SUPPLIER_ORDER_FAILED"
    TRACKING_RECEIVED = "TRACKING_RECEIVED"
    DELIVERED = "DELIVERED"
    CANCEL_REQUESTED = "CANCEL_REQUESTED"
    REFUND_REQUESTED = "REFUND_REQUESTED"
    RETRY = "RETRY"
    REDACT_REQUESTED = "REDACT_REQUESTED"
    DATA_REQUESTED = "DATA_REQUESTED"
    TIMER = "TIMER"


class _OrderEvent(Event):
    event_id: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    order_id: Ident
    store_id: Ident
    occurred_at: UtcDatetime


class OrderCreated(_OrderEvent):
    type: Literal[OrderEventType.ORDER_CREATED] = OrderEventType.ORDER_CREATED
    order_number: Short
    customer: Customer = Customer()
    shipping_address: Address
    items: tuple[OrderItem, ...] = Field(min_length=1, max_length=500)
    subtotal: Money
    shipping_total: Money = Decimal("0")
    tax_total: Money = Decimal("0")
    total: Money
    currency: Currency
    payment_status: PaymentStatus = PaymentStatus.PENDING
    #: The store had fulfilled (some of) the order when the engine first heard of it
    #: (Shopify ``fulfillment_status`` fulfilled or partial, WooCommerce ``completed``):
    #: nothing is placed at a supplier until a person says so (RETRY).
    fulfilled_in_store: bool = False


class PaymentConfirmed(_OrderEvent):
    type: Literal[OrderEventType.PAYMENT_CONFIRMED] = OrderEventType.PAYMENT_CONFIRMED
    amount: Money | None = None
    currency: Currency | None = None
    payment_id: Short | None = None


class SupplierOrderPlaced(_OrderEvent):
    """Published by the executor when the supplier has the order (placed or found)."""

    type: Literal[OrderEventType.SUPPLIER_ORDER_PLACED] = OrderEventType.SUPPLIER_ORDER_PLACED
    group_id: Ident
    supplier_order_id: Short
    attempt: int = Field(1, ge=1)


class SupplierOrderFailed(_OrderEvent):
    type: Literal[OrderEventType.SUPPLIER_ORDER_FAILED] = OrderEventType.SUPPLIER_ORDER_FAILED
    group_id: Ident
    error: Text
    retryable: bool
    attempt: int = Field(1, ge=1)


class TrackingReceived(_OrderEvent):
    """A group's parcel has a tracking number (from the supplier, a webhook or the store)."""

    type: Literal[OrderEventType.TRACKING_RECEIVED] = OrderEventType.TRACKING_RECEIVED
    group_id: Ident
    tracking_number: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=64)]
    carrier: Short | None = None
    tracking_url: Annotated[str, StringConstraints(max_length=2000)] | None = None
    source: Short = "SUPPLIER"


class Delivered(_OrderEvent):
    """A group's parcel was delivered; without ``group_id``, every shipped group."""

    type: Literal[OrderEventType.DELIVERED] = OrderEventType.DELIVERED
    group_id: Ident | None = None


class CancelRequested(_OrderEvent):
    type: Literal[OrderEventType.CANCEL_REQUESTED] = OrderEventType.CANCEL_REQUESTED
    reason: Text = ""


class RefundRequested(_OrderEvent):
    type: Literal[OrderEventType.REFUND_REQUESTED] = OrderEventType.REFUND_REQUESTED
    reason: Text = ""
    amount: Money | None = None


class Retry(_OrderEvent):
    """Manual intervention done: re-issue the supplier orders not yet placed."""

    type: Literal[OrderEventType.RETRY] = OrderEventType.RETRY
    requested_by: Short | None = None


class TimerKind(str, Enum):
    RETRY_DUE = "RETRY_DUE"  # a retryable failure's backoff is over
    OUTCOME_OVERDUE = "OUTCOME_OVERDUE"  # a command's outcome never came back: re-issue it
    TRACKING_OVERDUE = "TRACKING_OVERDUE"  # placed, and no tracking for too long
    ORDER_MISSING = "ORDER_MISSING"  # events of an order that never arrived
    PAYMENT_OVERDUE = "PAYMENT_OVERDUE"  # created, never paid
    DELIVERY_OVERDUE = "DELIVERY_OVERDUE"  # shipped, never delivered


class RedactRequested(_OrderEvent):
    """Remove the customer's personal data from the order (Shopify customers/redact)."""

    type: Literal[OrderEventType.REDACT_REQUESTED] = OrderEventType.REDACT_REQUESTED
    reason: Text = ""


class DataRequested(_OrderEvent):
    """Send the store owner the customer's data held for this order (Shopify
    customers/data_request): an ADMIN_DATA_REQUEST notification."""

    type: Literal[OrderEventType.DATA_REQUESTED] = OrderEventType.DATA_REQUESTED
    request_id: Short = ""


class Timer(_OrderEvent):
    """Internal: a deadline of the order's state has passed (published by the
    engine's deadline scanner, event_id made from the deadline itself)."""

    type: Literal[OrderEventType.TIMER] = OrderEventType.TIMER
    timer: TimerKind
    group_id: Ident | None = None
    due_at: UtcDatetime


OrderEvent = Annotated[
    Union[
        OrderCreated,
        PaymentConfirmed,
        SupplierOrderPlaced,
        SupplierOrderFailed,
        TrackingReceived,
        Delivered,
        CancelRequested,
        RefundRequested,
        Retry,
        RedactRequested,
        DataRequested,
        Timer,
    ],
    Field(discriminator="type"),
]

ORDER_EVENT: TypeAdapter[OrderEvent] = TypeAdapter(OrderEvent)


class OrderEventEnvelope(BaseModel):
    """An order event as one JSON Schema (for ``ops-engine schema`` and ``publish``)."""

    model_config = ConfigDict(frozen=True)
    event: OrderEvent


def decode_order_event(raw: bytes | str) -> OrderEvent:
    return ORDER_EVENT.validate_json(raw)


# --------------------------------------------------------------------------- #
# orders.commands (engine -> supplier order executor)
# --------------------------------------------------------------------------- #


class CommandType(str, Enum):
    PLACE_SUPPLIER_ORDER = "PLACE_SUPPLIER_ORDER"
    CANCEL_SUPPLIER_ORDER = "CANCEL_SUPPLIER_ORDER"


class SupplierLine(Event):
    line_id: str
    product_id: str
    variant_id: str | None = None
    source_id: str
    source_variant_id: str | None = None
    quantity: int
    title: str | None = None


class SupplierOrderCommand(Event):
    """Place (or cancel) one supplier group of an order. Topic ``orders.commands``,
    key ``order_id``.

    ``idempotency_key`` is made from the order and the group (``supplier_key``),
    never at random: every re-issue of the command carries the same key, and the
    executor places the order at most once per key. ``reference`` is the order
    reference the supplier is given (and looked up by).
    """

    command_id: str
    type: CommandType
    idempotency_key: str
    reference: str
    order_id: str
    store_id: str
    order_number: str
    group_id: str
    provider: str
    attempt: int
    lines: tuple[SupplierLine, ...]
    shipping_address: Address
    customer: Customer
    supplier_order_id: str | None = None
    issued_at: UtcDatetime


def supplier_key(order_id: str, group_id: str) -> str:
    """The idempotency key of one supplier group: a pure function of durable ids."""
    digest = hashlib.sha256(f"{order_id}|{group_id}".encode()).hexdigest()
    return f"ops-{digest[:32]}"


# --------------------------------------------------------------------------- #
# notifications and storefront commands
# --------------------------------------------------------------------------- #


class NotificationKind(str, Enum):
    CUSTOMER_SHIPPED = "CUSTOMER_SHIPPED"
    CUSTOMER_PARTIALLY_SHIPPED = "CUSTOMER_PARTIALLY_SHIPPED"
    CUSTOMER_DELIVERED = "CUSTOMER_DELIVERED"
    ADMIN_INTERVENTION = "ADMIN_INTERVENTION"
    ADMIN_DATA_REQUEST = "ADMIN_DATA_REQUEST"
    #: The customer's personal data was removed from an order (Shopify customers/redact,
    #: shop/redact). The notifier removes it from its own records too, then tells the owner.
    ADMIN_REDACTED = "ADMIN_REDACTED"
    ALERT_DIGEST = "ALERT_DIGEST"


class Audience(str, Enum):
    CUSTOMER = "CUSTOMER"
    ADMIN = "ADMIN"


class Notification(Event):
    """Something to tell a person. Topic ``notifications``, key ``store_id``.

    ``notification_id`` is made from what is told (order, group, kind), so a
    replay yields the same id and the sender sends it at most once.
    ``recipient`` is the customer's address; an ADMIN notification leaves it
    empty and the sender uses the store's notification targets.
    """

    notification_id: str
    kind: NotificationKind
    audience: Audience
    store_id: str
    order_id: str | None = None
    recipient: str | None = None
    data: dict[str, str] = Field(default_factory=dict)
    created_at: UtcDatetime = Field(default_factory=utcnow)


class StorefrontCommandType(str, Enum):
    SHOW_TRACKING = "SHOW_TRACKING"


class StorefrontCommand(Event):
    """Ask the storefront to show a shipment's tracking. Topic
    ``storefront.commands``, key ``store_id`` (consumed by the storefront push)."""

    command_id: str
    type: StorefrontCommandType
    store_id: str
    order_id: str
    order_number: str
    group_id: str
    line_ids: tuple[str, ...]
    tracking_number: str
    carrier: str | None = None
    tracking_url: str | None = None
    issued_at: UtcDatetime
