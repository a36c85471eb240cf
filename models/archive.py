"""Archiving closed orders and video jobs: which records may become a marker, and the marker.

The ``orders`` and ``video-jobs`` tables would otherwise keep every order and
job for good (docs/runbook.md, "Memory of a worker"). A record that is closed
and waits on nothing is replaced, after a keep period, by a small marker:

``{"status", "since", "archived": true, "archived_at", ...who it was}``

Not a tombstone: a late event for an archived key must not start a fresh
order or job. The agent sends such an event to ``deadletter`` (reason
``ARCHIVED``, the detail from ``archived_detail``), except the two requests
about an order's personal data, which reach the full record PostgreSQL's
``orders`` keeps: a redaction (``redact_archived_order``) and a data request
(``data_request_archived_order``). A late event about the order's money (a
payment, a refund, a cancellation) goes to ``deadletter`` with an alert
(``archived_event_alert``): the engine does not act on it, so a person must. ``video_assets`` keeps the
jobs' records.

The functions take the table's JSON value (parsed) and return plain data: no
I/O. Whether the key's outputs are delivered (``OutboxTable.settled``) and
whether its partition is this worker's is the agent's business.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError

from models.fulfillment import (
    TERMINAL,
    customer_data,
    data_request_id_parts,
    order_alert,
    order_output_id,
)
from models.events import Alert, AlertType
from models.orders import (
    Address,
    Audience,
    Customer,
    DataRequested,
    Notification,
    NotificationKind,
    OrderEvent,
    OrderEventType,
    RedactRequested,
)
from models.video import FINAL

ORDER_FINAL = frozenset(s.value for s in TERMINAL)
VIDEO_FINAL = frozenset(s.value for s in FINAL)


def is_archived(body: dict[str, Any] | None) -> bool:
    """Whether a table value is an archive marker."""
    return bool(body) and body.get("archived") is True  # type: ignore[union-attr]


def _waits(body: dict[str, Any]) -> bool:
    """The record still has a deadline or outputs not known delivered."""
    return bool(body.get("due")) or bool(body.get("outbox"))


#: Open statuses in which an order with no deadline waits on nothing the engine
#: expects: unpaid after its PAYMENT_ISSUE alert, shipped with no delivery report
#: after its DELIVERY_OVERDUE alert. Archived like the final ones, or the table
#: would keep them for good. INTERVENTION_REQUIRED stays: it waits on a person.
ORDER_QUIET = frozenset({"PENDING", "SHIPPED", "PARTIALLY_SHIPPED"})


def _abandoned(body: dict[str, Any]) -> bool:
    """An order that never arrived, whose waiting events were refused (``order_abandon_s``)."""
    state = body.get("state")
    return body.get("status") is None and isinstance(state, dict) and state.get("abandoned") is True


def order_archivable(body: dict[str, Any], cutoff: datetime) -> bool:
    """Whether an ``orders`` value may become a marker: a created order with no
    deadline and no outbox, in a final status (DELIVERED, CANCELLED, REFUNDED) or
    a quiet one (``ORDER_QUIET``), which entered that status (``since``, epoch
    seconds) before ``cutoff``; or the record of an order that never arrived and
    was given up (``abandoned``), first seen before ``cutoff``."""
    status = body.get("status")
    if is_archived(body) or _waits(body):
        return False
    if status not in ORDER_FINAL and status not in ORDER_QUIET and not _abandoned(body):
        return False
    since = body.get("since")
    return since is not None and since < cutoff.timestamp()


def order_marker(body: dict[str, Any], at: datetime) -> dict[str, Any]:
    """The marker that replaces an archivable ``orders`` value at ``at``."""
    state = body.get("state") or {}
    return {
        "status": body["status"],  # None: an order that never arrived
        "since": body["since"],
        "archived": True,
        "archived_at": at.isoformat(),
        "order_id": state.get("order_id"),
        "store_id": state.get("store_id"),
        "order_number": state.get("order_number"),
        "redacted": bool(state.get("redacted")),
    }


def redact_archived_order(
    order_id: str, marker: dict[str, Any], event: RedactRequested
) -> tuple[dict[str, Any], Notification] | None:
    """A redaction of an archived order: the marker that says so, and the store
    owner's ADMIN_REDACTED notice (the same id the order machine gives it, so a
    replay is one notice); None when the order is redacted already.

    The marker holds no personal data; PostgreSQL's ``orders`` row does, and the
    recorder redacts it on this marker (connectors/postgres/record.py), as the
    notifier redacts its records of the order's notifications on the notice.
    Redaction must reach them however old the order: it is never refused.
    """
    if marker.get("redacted"):
        return None
    notice = _owner_notice(order_id, marker, event, NotificationKind.ADMIN_REDACTED, ("redacted",),
                           {"reason": event.reason or "requested"})
    return {**marker, "order_id": order_id, "redacted": True}, notice


#: ``data["record"]`` of an ADMIN_DATA_REQUEST notice whose customer data the
#: notifier reads from PostgreSQL's ``orders`` row (the order is archived).
FROM_ORDERS_RECORD = "orders"


def data_request_archived_order(order_id: str, marker: dict[str, Any], event: DataRequested) -> Notification:
    """The store owner's ADMIN_DATA_REQUEST notice for an archived order.

    The marker holds no personal data: the notice names the order and says
    ``record: orders``, and the notifier fills in the customer's data from
    PostgreSQL's ``orders`` row before it sends it (connectors/notify). Same id
    as the live order's notice for the same request, so a replay is one notice.
    A redacted order's notice asks for no lookup: nothing personal is left.
    """
    data = {**customer_data(None, None), "archived_at": str(marker.get("archived_at") or "")}
    if not marker.get("redacted"):
        data["record"] = FROM_ORDERS_RECORD
    kind = NotificationKind.ADMIN_DATA_REQUEST
    return _owner_notice(order_id, marker, event, kind, data_request_id_parts(event), data)


def _owner_notice(
    order_id: str,
    marker: dict[str, Any],
    event: RedactRequested | DataRequested,
    kind: NotificationKind,
    id_parts: tuple[str, ...],
    data: dict[str, str],
) -> Notification:
    """The store owner's notice of ``kind`` about an archived order, with the id the live
    order's machine gives it (``order_output_id``: ``notify``, the kind, ``id_parts``) and
    the order's names from the marker under ``data``."""
    store_id = marker.get("store_id") or event.store_id
    return Notification(
        notification_id=order_output_id(order_id, "notify", kind.value, *id_parts),
        kind=kind,
        audience=Audience.ADMIN,
        store_id=store_id,
        order_id=order_id,
        recipient=None,
        data={
            "order_id": order_id,
            "store_id": store_id,
            "order_number": marker.get("order_number") or order_id,
            "customer_name": "",
            **data,
        },
        created_at=event.occurred_at,
    )


def complete_data_request(notice: Notification, state: dict[str, Any] | None) -> Notification:
    """An archived order's ADMIN_DATA_REQUEST notice (``data["record"] == "orders"``)
    with the customer's data from the order's PostgreSQL record: ``state`` is the
    row's ``state`` (parsed JSON), None when there is no row. The notice says where
    its data came from, or that none was found."""
    data = {k: v for k, v in notice.data.items() if k != "record"}
    archived = data.get("archived_at") or "an earlier date"
    if state is None:
        data["reason"] = (
            f"The order was archived on {archived} and no durable record of it was found in PostgreSQL: "
            "the engine holds none of its customer's data."
        )
        return notice.model_copy(update={"data": data})
    try:
        raw_customer, raw_address = state.get("customer"), state.get("shipping_address")
        customer = None if raw_customer is None else Customer.model_validate(raw_customer)
        address = None if raw_address is None else Address.model_validate(raw_address)
    except ValidationError as exc:
        data["reason"] = (
            f"The order was archived on {archived}; its durable record in PostgreSQL could not be read "
            f"({exc.error_count()} errors): look it up there (orders, order_id {notice.order_id})."
        )
        return notice.model_copy(update={"data": data})
    data.update(customer_data(customer, address))
    data["reason"] = f"The order was archived on {archived}; this comes from its durable record in PostgreSQL." + (
        " Its customer's data was redacted." if state.get("redacted") else ""
    )
    return notice.model_copy(update={"data": data})


def video_archivable(body: dict[str, Any], cutoff: datetime) -> bool:
    """Whether a ``video-jobs`` value may become a marker: a job in a final status
    (COMPLETED, FAILED, CANCELLED) with no deadline and no outbox, last changed
    (``job.updated_at``) before ``cutoff``."""
    if is_archived(body) or body.get("status") not in VIDEO_FINAL or _waits(body):
        return False
    job = body.get("job") or {}
    if job.get("due_at"):
        return False
    updated_at = job.get("updated_at")
    return updated_at is not None and datetime.fromisoformat(updated_at) < cutoff


def video_marker(body: dict[str, Any], at: datetime) -> dict[str, Any]:
    """The marker that replaces an archivable ``video-jobs`` value at ``at``."""
    job = body["job"]
    return {
        "status": body["status"],
        "since": datetime.fromisoformat(job["updated_at"]).timestamp(),
        "archived": True,
        "archived_at": at.isoformat(),
        "video_id": job.get("video_id"),
        "store_id": job.get("store_id"),
        "product_id": job.get("product_id"),
    }


def archived_detail(what: str, key: str, marker: dict[str, Any]) -> str:
    """Why an event for an archived key is refused (the dead letter's detail, a 409's reason)."""
    since = marker.get("since")
    entered = datetime.fromtimestamp(since, timezone.utc).isoformat() if since is not None else "?"
    if marker.get("status") is None:
        return (
            f"{what} {key!r} was archived at {marker.get('archived_at')}: it never arrived (its first event "
            f"{entered}); the events that waited for it went to deadletter"
        )
    return (
        f"{what} {key!r} was archived at {marker.get('archived_at')} "
        f"({marker.get('status')} since {entered}): its full record is in PostgreSQL"
    )


#: Late events for an archived order that a person must hear of: the engine does not act on them.
_MONEY_EVENTS = {
    OrderEventType.PAYMENT_CONFIRMED: (AlertType.PAYMENT_ISSUE, "Payment for archived order {number}",
                                       "nothing was placed at a supplier for it: place the order by hand or refund"),
    OrderEventType.REFUND_REQUESTED: (AlertType.PAYMENT_ISSUE, "Refund of archived order {number}",
                                      "no supplier order was cancelled for it: check what the suppliers still hold"),
    OrderEventType.CANCEL_REQUESTED: (AlertType.ORDER_ISSUE, "Cancellation of archived order {number}",
                                      "no supplier order was cancelled for it: check what the suppliers still hold"),
}


def archived_event_alert(order_id: str, marker: dict[str, Any], event: OrderEvent) -> Alert | None:
    """The alert that goes with a late payment, refund or cancellation of an archived
    order (its dead letter alone would go unseen); None for other events. The id is the
    one the live order's machine would give an alert on that event: a replay is the
    same alert."""
    kind = _MONEY_EVENTS.get(event.type)
    if kind is None:
        return None
    alert_type, title, consequence = kind
    number = marker.get("order_number") or order_id
    amount = getattr(event, "amount", None)
    return order_alert(
        order_id, marker.get("store_id") or event.store_id, str(number), event, alert_type, title.format(number=number),
        f"{event.type.value}{f' of {amount}' if amount is not None else ''} came on "
        f"{event.occurred_at.isoformat()} for {archived_detail('order', order_id, marker)}. "
        f"The engine does not act on an archived order: {consequence}.",
    )
