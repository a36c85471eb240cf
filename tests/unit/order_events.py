"""Builders of order events for the tests (one place, so the tests read as stories)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from models.orders import (
    ORDER_EVENT,
    OrderEvent,
    OrderEventType,
    TimerKind,
)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
ORDER = "o-1"
STORE = "s-1"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def item(line: str, provider: str, qty: int = 1) -> dict[str, Any]:
    return {
        "line_id": line,
        "product_id": f"p-{line}",
        "variant_id": None,
        "quantity": qty,
        "unit_price": "19.99",
        "provider": provider,
        "source_id": f"src-{line}",
    }


def event(kind: OrderEventType | str, event_id: str, seconds: float = 0, order: str = ORDER, **body: Any) -> OrderEvent:
    kind = OrderEventType(kind)
    return ORDER_EVENT.validate_python(
        {"type": kind.value, "event_id": event_id, "order_id": order, "store_id": STORE, "occurred_at": at(seconds), **body}
    )


def created(
    seconds: float = 0, paid: bool = False, providers: tuple[str, ...] = ("ALIEXPRESS", "CJ_DROPSHIPPING"), **kw: Any
) -> OrderEvent:
    items = [item(f"l{i}", p) for i, p in enumerate(providers)]
    return event(
        OrderEventType.ORDER_CREATED,
        kw.pop("event_id", "created"),
        seconds,
        order_number="#1001",
        customer={"name": "Ada", "email": "ada@example.com"},
        shipping_address={"name": "Ada", "line1": "1 Main St", "city": "Springfield", "country_code": "us"},
        items=items,
        subtotal=str(Decimal("19.99") * len(items)),
        total=str(Decimal("19.99") * len(items)),
        currency="USD",
        payment_status="PAID" if paid else "PENDING",
        **kw,
    )


def paid(seconds: float = 1, event_id: str = "paid") -> OrderEvent:
    return event(OrderEventType.PAYMENT_CONFIRMED, event_id, seconds)


def placed(group: str, seconds: float = 2, supplier_order_id: str | None = None, attempt: int = 1) -> OrderEvent:
    return event(
        OrderEventType.SUPPLIER_ORDER_PLACED,
        f"placed-{group}",
        seconds,
        group_id=group,
        supplier_order_id=supplier_order_id or f"so-{group}",
        attempt=attempt,
    )


def failed(group: str, attempt: int, seconds: float = 2, retryable: bool = True) -> OrderEvent:
    return event(
        OrderEventType.SUPPLIER_ORDER_FAILED,
        f"failed-{group}-{attempt}",
        seconds,
        group_id=group,
        error="HTTP 503",
        retryable=retryable,
        attempt=attempt,
    )


def tracking(group: str, number: str = "LP00123456789012CN", seconds: float = 3, **kw: Any) -> OrderEvent:
    return event(
        OrderEventType.TRACKING_RECEIVED, kw.pop("event_id", f"track-{group}"), seconds, group_id=group,
        tracking_number=number, **kw
    )


def delivered(group: str | None = None, seconds: float = 4) -> OrderEvent:
    return event(OrderEventType.DELIVERED, f"delivered-{group or 'all'}", seconds, group_id=group)


def cancel(seconds: float = 5, event_id: str = "cancel") -> OrderEvent:
    return event(OrderEventType.CANCEL_REQUESTED, event_id, seconds, reason="customer asked")


def refund(seconds: float = 5, event_id: str = "refund") -> OrderEvent:
    return event(OrderEventType.REFUND_REQUESTED, event_id, seconds, reason="customer asked")


def retry(seconds: float = 6, event_id: str = "retry") -> OrderEvent:
    return event(OrderEventType.RETRY, event_id, seconds, requested_by="ops")


def timer(kind: TimerKind, group: str | None, due: datetime, seconds: float) -> OrderEvent:
    return event(
        OrderEventType.TIMER,
        f"timer-{kind.value}-{group}-{due.isoformat()}",
        seconds,
        timer=kind.value,
        group_id=group,
        due_at=due,
    )


def delivered_order() -> Any:
    """The state of the default order (``created()``) paid, placed with each supplier and delivered."""
    from models.fulfillment import MachineConfig, decide

    state = None
    for e in (created(), paid()):
        state = decide(state, e, MachineConfig()).state
    assert state is not None
    for e in [event(OrderEventType.SUPPLIER_ORDER_PLACED, f"placed-{g.group_id}", 2, group_id=g.group_id,
                    supplier_order_id=f"SO-{g.group_id}") for g in state.groups] + [delivered()]:
        state = decide(state, e, MachineConfig()).state
    return state
