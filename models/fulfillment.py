"""The order state machine (pure): ``decide(state, event, config) -> Decision``.

No I/O here. The agent (agents/orders.py) decodes an ``orders.events`` record,
calls ``decide``, sends the decision's outputs and then writes the new state to
the ``orders`` table. Everything the machine needs is in the state and the
event; every time it records is the event's ``occurred_at``. So the table's
state is a fold of the order's events, and replaying them (at-least-once)
gives the same state: an ``event_id`` already seen changes nothing.

How an event is handled, in the order of the checks:

1. ``event_id`` already seen (applied, refused or parked): nothing.
2. The event cannot apply *yet* but may later (a payment before its order,
   tracking before the supplier order is placed, ...): it is **parked** in the
   state and tried again after every later transition. Out-of-order delivery
   (webhooks) is normal, so a shuffled stream reaches the same state as the
   clean one. Parked events still waiting when the order ends are refused.
3. The event is invalid in the current state (a second payment, a retry of an
   order that needs none, ...): nothing changes, the refusal is noted in the
   history and the decision carries a dead-letter reason.
4. Otherwise it applies: the groups change, the order's status is derived
   from them, and the outputs (supplier order commands, notifications,
   storefront commands, alerts) are returned.

Supplier groups: the items of one provider are one supplier order, with an
idempotency key made from the order and the group (``supplier_key``). Every
wait on the outside world has a deadline the engine's scanner turns into a
``TIMER`` event (``deadlines``): the outcome of a command (re-issued with the
same key when overdue), a retry's backoff, tracking after placement
(intervention when overdue), delivery after shipment (an ORDER_ISSUE alert),
the payment of a created order (a PAYMENT_ISSUE alert), and the order itself
when its other events came first (a PAYMENT_ISSUE alert).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum

from pydantic import Field

from models import carriers
from models.alerts import open_alert
from models.events import Alert, AlertType, Event
from models.ids import name_uuid
from models.orders import (
    Address,
    Audience,
    CancelRequested,
    CommandType,
    Customer,
    Delivered,
    Notification,
    NotificationKind,
    OrderCreated,
    OrderEvent,
    OrderItem,
    PaymentConfirmed,
    DataRequested,
    PaymentStatus,
    RedactRequested,
    RefundRequested,
    Retry,
    StorefrontCommand,
    StorefrontCommandType,
    SupplierLine,
    SupplierOrderCommand,
    SupplierOrderFailed,
    SupplierOrderPlaced,
    Timer,
    TimerKind,
    Tracking,
    TrackingReceived,
    supplier_key,
)

_NS = uuid.UUID("0b7f3c9e-2d41-4f6a-9a57-4c3e1d2b8f10")
#: The provider of items the storefront could not map to a supplier source
#: (models/webhook_routing.py): their group needs a person from the start.
UNMAPPED = "UNMAPPED"
REDACTED = "[redacted]"


class OrderStatus(str, Enum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    AWAITING_SHIPMENT = "AWAITING_SHIPMENT"
    PARTIALLY_SHIPPED = "PARTIALLY_SHIPPED"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    INTERVENTION_REQUIRED = "INTERVENTION_REQUIRED"
    CANCELLED = "CANCELLED"
    REFUNDED = "REFUNDED"


TERMINAL = frozenset({OrderStatus.DELIVERED, OrderStatus.CANCELLED, OrderStatus.REFUNDED})
#: Statuses in which nothing more is expected from the outside world.
CLOSED = frozenset({OrderStatus.CANCELLED, OrderStatus.REFUNDED})


class GroupStatus(str, Enum):
    PENDING = "PENDING"  # not asked of the supplier yet (order not paid)
    PLACING = "PLACING"  # a PLACE command is out; its outcome is awaited
    RETRY_WAIT = "RETRY_WAIT"  # a retryable failure; the next attempt waits its backoff
    FAILED = "FAILED"  # gave up: needs a person (RETRY re-issues)
    PLACED = "PLACED"  # the supplier has the order; tracking is awaited
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"


UNPLACED = frozenset({GroupStatus.PENDING, GroupStatus.PLACING, GroupStatus.RETRY_WAIT, GroupStatus.FAILED})
SHIPPED_OR_DELIVERED = frozenset({GroupStatus.SHIPPED, GroupStatus.DELIVERED})


@dataclass(frozen=True)
class MachineConfig:
    """The machine's clocks, in seconds (settings OPS_ORDER_*)."""

    retry_backoff_s: tuple[float, ...] = (60.0, 300.0, 900.0)
    outcome_timeout_s: float = 120.0
    #: The longest wait for an outcome: each re-issue of a command without one doubles the
    #: wait, up to this (an executor down for a day re-issues about 30 times, not 700).
    outcome_timeout_max_s: float = 3600.0
    tracking_timeout_s: float = 7 * 24 * 3600.0
    order_missing_s: float = 24 * 3600.0
    #: After this, the events of an order that never arrived are refused (to deadletter) and
    #: the record waits on nothing: the archive sweep takes it (models/archive.py).
    order_abandon_s: float = 30 * 24 * 3600.0
    payment_timeout_s: float = 72 * 3600.0
    delivery_timeout_s: float = 45 * 24 * 3600.0

    @property
    def max_retries(self) -> int:
        return len(self.retry_backoff_s)


class SupplierGroup(Event):
    """One supplier order of an order: the items of one provider."""

    group_id: str
    provider: str
    status: GroupStatus = GroupStatus.PENDING
    line_ids: tuple[str, ...]
    idempotency_key: str
    supplier_order_id: str | None = None
    attempt: int = 0  # the attempt of the command out (or last out); 0 before the first
    retries: int = 0  # retryable failures in the current series (RETRY resets)
    last_error: str | None = None
    problem: str | None = None  # why this group needs a person
    tracking: Tracking | None = None
    placed_at: datetime | None = None
    shipped_at: datetime | None = None
    delivered_at: datetime | None = None
    next_retry_at: datetime | None = None
    outcome_due_at: datetime | None = None
    reissues: int = 0  # times the command of this attempt was re-issued for want of an outcome
    tracking_due_at: datetime | None = None
    delivery_alerted: bool = False


class Transition(Event):
    """One line of an order's history."""

    at: datetime
    event_id: str
    event: str
    from_status: OrderStatus | None = Field(None, alias="from")
    to_status: OrderStatus | None = Field(None, alias="to")
    note: str | None = None


class OrderState(Event):
    """An order as the ``orders`` table keeps it (key ``order_id``)."""

    order_id: str
    store_id: str
    created: bool = False  # False: only events that came before the order
    status: OrderStatus = OrderStatus.PENDING
    paid: bool = False
    paid_at: datetime | None = None
    payment_alerted: bool = False
    created_at: datetime | None = None  # the ORDER_CREATED event's time
    order_number: str | None = None
    customer: Customer | None = None
    shipping_address: Address | None = None
    items: tuple[OrderItem, ...] = ()
    currency: str | None = None
    subtotal: Decimal | None = None
    shipping_total: Decimal | None = None
    tax_total: Decimal | None = None
    total: Decimal | None = None
    refunded: Decimal = Decimal("0")  # partial refunds so far (REFUND_REQUESTED with an amount under the total)
    groups: tuple[SupplierGroup, ...] = ()
    problem: str | None = None  # order-level reason for intervention
    redacted: bool = False  # the customer's personal data was removed
    first_seen_at: datetime
    missing_alerted: bool = False
    abandoned: bool = False  # never created: its parked events were refused (order_abandon_s)
    seen: tuple[str, ...] = ()  # event ids handled (applied or refused)
    parked: tuple[OrderEvent, ...] = ()  # events waiting for a prerequisite
    history: tuple[Transition, ...] = ()
    updated_at: datetime

    def group(self, group_id: str) -> SupplierGroup | None:
        for g in self.groups:
            if g.group_id == group_id:
                return g
        return None

    @property
    def reason(self) -> str | None:
        """Why the order needs a person (None when it does not)."""
        reasons = ([self.problem] if self.problem else []) + [
            f"{g.group_id}: {g.problem}" for g in self.groups if g.problem
        ]
        return "; ".join(reasons) or None


@dataclass
class Decision:
    """What ``decide`` returns: the new state and what to tell the world."""

    state: OrderState
    applied: bool = False
    duplicate: bool = False
    parked: bool = False
    ignored: bool = False
    refused: list[str] = field(default_factory=list)  # dead-letter reasons (this event or released parked ones)
    refused_events: list[tuple[OrderEvent, str]] = field(default_factory=list)  # parked events refused
    commands: list[SupplierOrderCommand] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    storefront: list[StorefrontCommand] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    transitions: list[tuple[OrderStatus | None, OrderStatus]] = field(default_factory=list)
    placed_groups: list[SupplierGroup] = field(default_factory=list)  # groups that became PLACED

    @property
    def changed(self) -> bool:
        return not self.duplicate


class _Park(Exception):
    """The event cannot apply yet; keep it."""


class _Refuse(Exception):
    """The event is invalid in the current state."""


class _Ignore(Exception):
    """The event is moot (a timer whose deadline moved): seen, nothing else."""


# --------------------------------------------------------------------------- #
# entry point
# --------------------------------------------------------------------------- #


def initial(event: OrderEvent) -> OrderState:
    """The state of an order before any of its events (only ids and the clock)."""
    return OrderState(
        order_id=event.order_id,
        store_id=event.store_id,
        first_seen_at=event.occurred_at,
        updated_at=event.occurred_at,
    )


def order_output_id(order_id: str, *parts: str) -> str:
    """The deterministic id of an order's output (a command, a notification): the
    same parts of the same order give the same id, so a replay dedupes."""
    return name_uuid(_NS, "|".join((order_id, *parts)))


def customer_data(customer: Customer | None, address: Address | None) -> dict[str, str]:
    """The customer's personal data an order holds, as the ADMIN_DATA_REQUEST notice
    carries it (empty strings for what it lacks)."""
    customer = customer or Customer()
    lines = [] if address is None else [
        address.name, address.line1, address.line2, address.city, address.province, address.postal_code,
        address.country_code, address.phone,
    ]
    return {
        "customer_name": customer.name or "",
        "customer_email": customer.email or "",
        "customer_phone": customer.phone or "",
        "shipping_address": ", ".join(p for p in lines if p),
    }


def data_request_id_parts(event: DataRequested) -> tuple[str, ...]:
    """The id parts (after ``notify``, the kind) of a data request's notice: one notice per request."""
    return ("data-request", event.event_id)


def redacted_customer() -> tuple[Customer, Callable[[str], Address]]:
    """What a redaction leaves of the customer (nothing) and of a shipping address (its country)."""
    return Customer(), lambda country: Address(name=REDACTED, line1=REDACTED, city=REDACTED, country_code=country)


def decide(state: OrderState | None, event: OrderEvent, config: MachineConfig = MachineConfig()) -> Decision:
    """Apply one event to an order (``state`` None: the order's first event)."""
    current = state if state is not None else initial(event)
    if event.event_id in current.seen or any(p.event_id == event.event_id for p in current.parked):
        return Decision(state=current, duplicate=True)
    out = Decision(state=current)
    step = _Step(out, config)
    step.handle(event, fresh=True)
    return out


# --------------------------------------------------------------------------- #
# deadlines (what the engine's scanner turns into TIMER events)
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Deadline:
    kind: TimerKind
    group_id: str | None
    due_at: datetime

    def event_id(self, order_id: str) -> str:
        return f"timer:{order_id}:{self.kind.value}:{self.group_id or '-'}:{self.due_at.isoformat()}"

    def timer(self, state: OrderState, now: datetime) -> Timer:
        return Timer(
            event_id=self.event_id(state.order_id),
            order_id=state.order_id,
            store_id=state.store_id,
            occurred_at=now,
            timer=self.kind,
            group_id=self.group_id,
            due_at=self.due_at,
        )


def deadlines(state: OrderState, config: MachineConfig = MachineConfig()) -> list[Deadline]:
    """Every deadline the order waits on, earliest first."""
    out: list[Deadline] = []
    if not state.created:
        if not state.missing_alerted:
            out.append(
                Deadline(TimerKind.ORDER_MISSING, None, state.first_seen_at + timedelta(seconds=config.order_missing_s))
            )
        elif not state.abandoned and state.parked:  # the second ORDER_MISSING: give up on the order
            out.append(Deadline(TimerKind.ORDER_MISSING, None, _abandon_at(state, config)))
        return out
    if state.status in CLOSED:
        return out
    if not state.paid and not state.payment_alerted and state.created_at is not None:
        out.append(
            Deadline(TimerKind.PAYMENT_OVERDUE, None, state.created_at + timedelta(seconds=config.payment_timeout_s))
        )
    for g in state.groups:
        if g.status is GroupStatus.PLACING and g.outcome_due_at:
            out.append(Deadline(TimerKind.OUTCOME_OVERDUE, g.group_id, g.outcome_due_at))
        elif g.status is GroupStatus.RETRY_WAIT and g.next_retry_at:
            out.append(Deadline(TimerKind.RETRY_DUE, g.group_id, g.next_retry_at))
        elif g.status is GroupStatus.PLACED and g.tracking_due_at and not g.problem:
            out.append(Deadline(TimerKind.TRACKING_OVERDUE, g.group_id, g.tracking_due_at))
        elif g.status is GroupStatus.SHIPPED and g.shipped_at and not g.delivery_alerted:
            due = g.shipped_at + timedelta(seconds=config.delivery_timeout_s)
            out.append(Deadline(TimerKind.DELIVERY_OVERDUE, g.group_id, due))
    return sorted(out, key=lambda d: d.due_at)


def _abandon_s(config: MachineConfig) -> float:
    """How long after its first event an order that never arrived is given up (never
    before its PAYMENT_ISSUE alert)."""
    return max(config.order_abandon_s, config.order_missing_s)


def _abandon_at(state: OrderState, config: MachineConfig) -> datetime:
    return state.first_seen_at + timedelta(seconds=_abandon_s(config))


def next_deadline(state: OrderState, config: MachineConfig = MachineConfig()) -> datetime | None:
    found = deadlines(state, config)
    return found[0].due_at if found else None


# --------------------------------------------------------------------------- #
# the step: one event (and the parked events it releases)
# --------------------------------------------------------------------------- #


def _group_id(provider: str) -> str:
    return provider


def supplier_groups(order_id: str, items: Iterable[OrderItem]) -> tuple[SupplierGroup, ...]:
    by_provider: dict[str, list[OrderItem]] = {}
    for item in items:
        by_provider.setdefault(_group_id(item.provider), []).append(item)
    groups = []
    for gid, group_items in sorted(by_provider.items()):
        group = SupplierGroup(
            group_id=gid,
            provider=gid,
            line_ids=tuple(i.line_id for i in group_items),
            idempotency_key=supplier_key(order_id, gid),
        )
        if gid == UNMAPPED:
            what = ", ".join(f"{i.title or i.line_id} ({i.source_id})" for i in group_items)
            group = group.model_copy(
                update={"status": GroupStatus.FAILED, "problem": f"no catalogue mapping for {what}"}
            )
        groups.append(group)
    return tuple(groups)


class _Step:
    def __init__(self, out: Decision, config: MachineConfig) -> None:
        self.out = out
        self.config = config

    # -- plumbing ---------------------------------------------------------- #

    @property
    def state(self) -> OrderState:
        return self.out.state

    def _set(self, **changes: object) -> None:
        self.out.state = self.state.model_copy(update=changes)

    def _set_group(self, group: SupplierGroup, **changes: object) -> SupplierGroup:
        new = group.model_copy(update=changes)
        self._set(groups=tuple(new if g.group_id == group.group_id else g for g in self.state.groups))
        return new

    def _note(self, event: OrderEvent, note: str | None, before: OrderStatus | None) -> None:
        entry = Transition(
            at=event.occurred_at,
            event_id=event.event_id,
            event=event.type.value,
            **{"from": before, "to": self.state.status if self.state.created else None},
            note=note,
        )
        self._set(history=self.state.history + (entry,))

    def handle(self, event: OrderEvent, fresh: bool) -> bool:
        """Apply one event; True if it applied. ``fresh``: not a parked one."""
        before = self.state.status if self.state.created else None
        try:
            note = self._apply(event)
        except _Park:
            if fresh:
                self._set(parked=self.state.parked + (event,), updated_at=max(self.state.updated_at, event.occurred_at))
                self.out.parked = True
            return False
        except _Ignore:
            self._set(seen=self.state.seen + (event.event_id,))
            if not fresh:
                self._unpark(event)
            self.out.ignored = True
            return False
        except _Refuse as refusal:
            reason = str(refusal)
            self._set(seen=self.state.seen + (event.event_id,))
            self._note(event, f"refused: {reason}", before)
            if fresh:
                self.out.refused.append(reason)
            else:
                self._unpark(event)
                self.out.refused_events.append((event, reason))
            return False
        if not fresh:
            self._unpark(event)
        self._set(seen=self.state.seen + (event.event_id,), updated_at=max(self.state.updated_at, event.occurred_at))
        self._derive_status(event, note, before)
        if fresh:
            self.out.applied = True
            self._release_parked()
        return True

    def _unpark(self, event: OrderEvent) -> None:
        self._set(parked=tuple(p for p in self.state.parked if p.event_id != event.event_id))

    def _release_parked(self) -> None:
        """Try the parked events again, oldest first, until none applies."""
        progress = True
        while progress and self.state.parked:
            progress = False
            for parked in sorted(self.state.parked, key=lambda e: (e.occurred_at, e.event_id)):
                if self.handle(parked, fresh=False):
                    progress = True
                    break
                if parked.event_id not in {p.event_id for p in self.state.parked}:
                    progress = True  # refused and removed: the list changed
                    break
        if self.state.created and self.state.status in TERMINAL and self.state.parked:
            # Nothing more will come for them: an ended order refuses what still waits.
            self._refuse_parked(f"the order ended {self.state.status.value}", self.state.status)

    def _refuse_parked(self, why: str, before: OrderStatus | None) -> None:
        """Refuse every parked event (seen, noted, to deadletter with its value): ``why``
        none of them will ever apply."""
        for parked in list(self.state.parked):
            reason = f"{parked.type.value} never applied: {why}"
            self._set(seen=self.state.seen + (parked.event_id,))
            self._unpark(parked)
            self._note(parked, f"refused: {reason}", before)
            self.out.refused_events.append((parked, reason))

    def _derive_status(self, event: OrderEvent, note: str | None, before: OrderStatus | None) -> None:
        state = self.state
        status = state.status
        if state.created and status not in CLOSED:
            active = [g for g in state.groups if g.status is not GroupStatus.CANCELLED]
            if not state.paid:
                status = OrderStatus.PENDING
            elif active and all(g.status is GroupStatus.DELIVERED for g in active):
                status = OrderStatus.DELIVERED
            elif state.reason:
                status = OrderStatus.INTERVENTION_REQUIRED
            elif active and all(g.status in SHIPPED_OR_DELIVERED for g in active):
                status = OrderStatus.SHIPPED
            elif any(g.status in SHIPPED_OR_DELIVERED for g in active):
                status = OrderStatus.PARTIALLY_SHIPPED
            elif active and all(g.status not in UNPLACED for g in active):
                status = OrderStatus.AWAITING_SHIPMENT
            else:
                status = OrderStatus.PROCESSING
        self._set(status=status)
        if state.created and status is not before:
            self.out.transitions.append((before, status))
            if status is OrderStatus.INTERVENTION_REQUIRED:
                self._intervention(event)
            if status is OrderStatus.DELIVERED:
                self._notify(event, NotificationKind.CUSTOMER_DELIVERED, "delivered")
        self._note(event, note, before)

    # -- outputs ------------------------------------------------------------ #

    def _command(self, event: OrderEvent, group: SupplierGroup, kind: CommandType) -> None:
        state = self.state
        assert state.shipping_address is not None and state.customer is not None
        items = {i.line_id: i for i in state.items}
        lines = tuple(
            SupplierLine(
                line_id=items[lid].line_id,
                product_id=items[lid].product_id,
                variant_id=items[lid].variant_id,
                source_id=items[lid].source_id,
                source_variant_id=items[lid].source_variant_id,
                quantity=items[lid].quantity,
                title=items[lid].title,
            )
            for lid in group.line_ids
        )
        self.out.commands.append(
            SupplierOrderCommand(
                command_id=f"{group.idempotency_key}:{kind.value.lower()}:{group.attempt}",
                type=kind,
                idempotency_key=group.idempotency_key,
                reference=group.idempotency_key,
                order_id=state.order_id,
                store_id=state.store_id,
                order_number=state.order_number or state.order_id,
                group_id=group.group_id,
                provider=group.provider,
                attempt=max(group.attempt, 1),
                lines=lines,
                shipping_address=state.shipping_address,
                customer=state.customer,
                supplier_order_id=group.supplier_order_id,
                issued_at=event.occurred_at,
            )
        )

    def _place(self, event: OrderEvent, group: SupplierGroup, attempt: int, reissues: int = 0) -> SupplierGroup:
        """Send the PLACE command of ``attempt`` (again, ``reissues`` > 0: its outcome is
        overdue; the wait for it doubles each time, up to ``outcome_timeout_max_s``)."""
        wait = min(self.config.outcome_timeout_s * 2 ** min(reissues, 32), self.config.outcome_timeout_max_s)
        group = self._set_group(
            group,
            status=GroupStatus.PLACING,
            attempt=attempt,
            reissues=reissues,
            next_retry_at=None,
            outcome_due_at=event.occurred_at + timedelta(seconds=max(wait, self.config.outcome_timeout_s)),
        )
        self._command(event, group, CommandType.PLACE_SUPPLIER_ORDER)
        return group

    def _cancel_unshipped(self, event: OrderEvent) -> list[str]:
        cancelled = []
        for group in self.state.groups:
            tried = group.status in (GroupStatus.RETRY_WAIT, GroupStatus.FAILED) and group.attempt >= 1
            if group.status in (GroupStatus.PLACED, GroupStatus.PLACING) or tried:
                # PLACING: the place may land after this; the executor cancels by reference.
                # RETRY_WAIT, FAILED after an attempt: the supplier may hold it all the same
                # (an unknown outcome whose lookup failed is a retryable failure): the
                # executor looks it up by reference, cancels it or marks the key CANCELLED.
                self._command(event, group, CommandType.CANCEL_SUPPLIER_ORDER)
            if group.status not in SHIPPED_OR_DELIVERED and group.status is not GroupStatus.CANCELLED:
                self._set_group(
                    group, status=GroupStatus.CANCELLED, outcome_due_at=None, next_retry_at=None, problem=None
                )
                cancelled.append(group.group_id)
        return cancelled

    def _id(self, *parts: str) -> str:
        return order_output_id(self.state.order_id, *parts)

    def _notify(
        self,
        event: OrderEvent,
        kind: NotificationKind,
        *id_parts: str,
        group: SupplierGroup | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        state = self.state
        admin = (NotificationKind.ADMIN_INTERVENTION, NotificationKind.ADMIN_DATA_REQUEST, NotificationKind.ADMIN_REDACTED)
        audience = Audience.ADMIN if kind in admin else Audience.CUSTOMER
        data = {
            "order_id": state.order_id,
            "store_id": state.store_id,
            "order_number": state.order_number or state.order_id,
            "customer_name": (state.customer.name if state.customer else None) or "",
            "groups_total": str(len([g for g in state.groups if g.status is not GroupStatus.CANCELLED])),
            "groups_shipped": str(len([g for g in state.groups if g.status in SHIPPED_OR_DELIVERED])),
        }
        if group is not None and group.tracking is not None:
            data.update(
                carrier=group.tracking.carrier or "",
                tracking_number=group.tracking.number,
                tracking_url=group.tracking.url or "",
            )
        if kind is NotificationKind.ADMIN_INTERVENTION:
            data["reason"] = state.reason or ""
        data.update(extra or {})
        self.out.notifications.append(
            Notification(
                notification_id=self._id("notify", kind.value, *id_parts),
                kind=kind,
                audience=audience,
                store_id=state.store_id,
                order_id=state.order_id,
                recipient=state.customer.email if (audience is Audience.CUSTOMER and state.customer) else None,
                data=data,
                created_at=event.occurred_at,
            )
        )

    def _alert(self, event: OrderEvent, alert_type: AlertType, title: str, message: str) -> None:
        state = self.state
        self.out.alerts.append(
            order_alert(state.order_id, state.store_id, state.order_number, event, alert_type, title, message)
        )

    def _intervention(self, event: OrderEvent) -> None:
        reason = self.state.reason or "unknown"
        number = self.state.order_number or self.state.order_id
        self._alert(event, AlertType.ORDER_ISSUE, f"Order {number} needs intervention", reason)
        self._notify(event, NotificationKind.ADMIN_INTERVENTION, "intervention", event.event_id)

    # -- the events ---------------------------------------------------------- #

    def _apply(self, event: OrderEvent) -> str | None:
        state = self.state
        if isinstance(event, OrderCreated):
            return self._created(event)
        if isinstance(event, Timer) and event.timer is TimerKind.ORDER_MISSING:
            return self._order_missing(event)
        if not state.created:
            if isinstance(event, (Timer, RedactRequested, DataRequested)):
                raise _Ignore  # deadlines of an order that does not exist yet are moot
            raise _Park
        if isinstance(event, PaymentConfirmed):
            return self._payment(event)
        if isinstance(event, SupplierOrderPlaced):
            return self._placed(event)
        if isinstance(event, SupplierOrderFailed):
            return self._failed(event)
        if isinstance(event, TrackingReceived):
            return self._tracking(event)
        if isinstance(event, Delivered):
            return self._delivered(event)
        if isinstance(event, CancelRequested):
            return self._cancel(event)
        if isinstance(event, RefundRequested):
            return self._refund(event)
        if isinstance(event, Retry):
            return self._retry(event)
        if isinstance(event, RedactRequested):
            return self._redact(event)
        if isinstance(event, DataRequested):
            return self._data_request(event)
        if isinstance(event, Timer):
            return self._timer(event)
        raise _Refuse(f"unknown event type {event.type}")  # pragma: no cover

    def _created(self, event: OrderCreated) -> str | None:
        state = self.state
        if state.created:
            if event.payment_status is PaymentStatus.PAID and not state.paid and state.status not in CLOSED:
                self._pay(event)
                return "order update says paid"
            raise _Refuse("order already created")
        if event.store_id != state.store_id:
            raise _Refuse(f"store {event.store_id} differs from the order's earlier events ({state.store_id})")
        self._set(
            created=True,
            order_number=event.order_number,
            customer=event.customer,
            shipping_address=event.shipping_address,
            items=event.items,
            currency=event.currency,
            subtotal=event.subtotal,
            shipping_total=event.shipping_total,
            tax_total=event.tax_total,
            total=event.total,
            groups=supplier_groups(state.order_id, event.items),
            status=OrderStatus.PENDING,
            created_at=event.occurred_at,
        )
        if event.fulfilled_in_store:
            # First heard of once the store had shipped it (by hand, before the app, a
            # reconciliation's pull): placing it would send a second parcel. A person decides
            # (RETRY places it); the store's own tracking, when it comes, ships the group.
            for group in self.state.groups:
                self._set_group(
                    group,
                    status=GroupStatus.FAILED,
                    problem="the store had fulfilled the order when the engine first heard of it: "
                    "not placed at the supplier (RETRY places it)",
                )
        if event.payment_status is PaymentStatus.PAID:
            self._pay(event)
            return "created paid"
        return None

    def _pay(self, event: OrderEvent) -> None:
        self._set(paid=True, paid_at=event.occurred_at)
        for group in self.state.groups:
            if group.status is GroupStatus.PENDING:
                self._place(event, group, attempt=1)

    def _payment(self, event: PaymentConfirmed) -> str | None:
        state = self.state
        if state.status in CLOSED:
            self._alert(
                event,
                AlertType.PAYMENT_ISSUE,
                f"Payment for closed order {state.order_number}",
                f"a payment arrived for an order that is {state.status.value}: refund it",
            )
            raise _Refuse(f"payment for an order that is {state.status.value}")
        if state.paid:
            raise _Refuse("payment already confirmed")
        self._pay(event)
        return None

    def _placed(self, event: SupplierOrderPlaced) -> str | None:
        group = self.state.group(event.group_id)
        if group is None:
            raise _Refuse(f"no supplier group {event.group_id}")
        if group.status is GroupStatus.PENDING:
            raise _Park  # the payment that asked for it has not arrived yet
        if group.status is GroupStatus.CANCELLED:
            # Placed after the order was cancelled (the command was in flight): cancel it there.
            if group.supplier_order_id:
                raise _Refuse("supplier order already recorded for a cancelled group")
            group = self._set_group(group, supplier_order_id=event.supplier_order_id)
            self._command(event, group, CommandType.CANCEL_SUPPLIER_ORDER)
            return f"{group.group_id} placed after cancellation: cancel sent"
        if group.status in (GroupStatus.PLACED, GroupStatus.SHIPPED, GroupStatus.DELIVERED):
            if group.supplier_order_id == event.supplier_order_id:
                raise _Refuse(f"{group.group_id} already placed")
            problem = (
                f"supplier reports a second order {event.supplier_order_id} "
                f"(first {group.supplier_order_id}): cancel one"
            )
            self._set_group(group, problem=problem)
            return problem
        group = self._set_group(
            group,
            status=GroupStatus.PLACED,
            supplier_order_id=event.supplier_order_id,
            placed_at=event.occurred_at,
            outcome_due_at=None,
            next_retry_at=None,
            last_error=None,
            problem=None,
            tracking_due_at=event.occurred_at + timedelta(seconds=self.config.tracking_timeout_s),
        )
        self.out.placed_groups.append(group)
        return f"{group.group_id} placed as {event.supplier_order_id}"

    def _failed(self, event: SupplierOrderFailed) -> str | None:
        group = self.state.group(event.group_id)
        if group is None:
            raise _Refuse(f"no supplier group {event.group_id}")
        if group.status is GroupStatus.PENDING:
            raise _Park
        if group.status is not GroupStatus.PLACING or event.attempt != group.attempt:
            raise _Refuse(
                f"failure of attempt {event.attempt} of {group.group_id}, which is {group.status.value}"
                f" at attempt {group.attempt}"
            )
        if event.retryable and group.retries < self.config.max_retries:
            delay = self.config.retry_backoff_s[group.retries]
            self._set_group(
                group,
                status=GroupStatus.RETRY_WAIT,
                retries=group.retries + 1,
                last_error=event.error,
                outcome_due_at=None,
                next_retry_at=event.occurred_at + timedelta(seconds=delay),
            )
            return f"{group.group_id} attempt {event.attempt} failed ({event.error}); retry in {delay:g}s"
        why = "not retryable" if not event.retryable else f"{group.retries + 1} attempts failed"
        self._set_group(
            group,
            status=GroupStatus.FAILED,
            last_error=event.error,
            outcome_due_at=None,
            next_retry_at=None,
            problem=f"supplier order failed ({why}): {event.error}",
        )
        return f"{group.group_id} failed: {event.error}"

    def _tracking(self, event: TrackingReceived) -> str | None:
        group = self.state.group(event.group_id)
        if group is None:
            raise _Refuse(f"no supplier group {event.group_id}")
        if self.state.status in CLOSED or group.status is GroupStatus.CANCELLED:
            raise _Refuse(f"tracking for a {self.state.status.value} order")
        number = carriers.normalise(event.tracking_number)
        carrier = event.carrier or carriers.detect(number)
        tracking = Tracking(number=number, carrier=carrier, url=event.tracking_url or carriers.tracking_url(carrier, number))
        if group.status in SHIPPED_OR_DELIVERED:
            if group.tracking and group.tracking.number == number:
                raise _Refuse(f"{group.group_id} already has tracking {number}")
            group = self._set_group(group, tracking=tracking)
            self._show_tracking(event, group)
            return f"{group.group_id} tracking changed to {number}"
        if group.status is not GroupStatus.PLACED and event.source == "SUPPLIER":
            raise _Park  # the supplier's answer to the placement is still on its way
        # Placed, or the store fulfilled it by hand (the machine does not fight it).
        group = self._set_group(
            group,
            status=GroupStatus.SHIPPED,
            tracking=tracking,
            shipped_at=event.occurred_at,
            tracking_due_at=None,
            outcome_due_at=None,
            next_retry_at=None,
            problem=None,
        )
        self._show_tracking(event, group)
        active = [g for g in self.state.groups if g.status is not GroupStatus.CANCELLED]
        everything = all(g.status in SHIPPED_OR_DELIVERED for g in active)
        kind = NotificationKind.CUSTOMER_SHIPPED if everything else NotificationKind.CUSTOMER_PARTIALLY_SHIPPED
        self._notify(event, kind, "shipped", group.group_id, group=group)
        return f"{group.group_id} shipped: {carrier or 'carrier unknown'} {number}"

    def _show_tracking(self, event: OrderEvent, group: SupplierGroup) -> None:
        assert group.tracking is not None
        self.out.storefront.append(
            StorefrontCommand(
                command_id=self._id("storefront", group.group_id, group.tracking.number),
                type=StorefrontCommandType.SHOW_TRACKING,
                store_id=self.state.store_id,
                order_id=self.state.order_id,
                order_number=self.state.order_number or self.state.order_id,
                group_id=group.group_id,
                line_ids=group.line_ids,
                tracking_number=group.tracking.number,
                carrier=group.tracking.carrier,
                tracking_url=group.tracking.url,
                issued_at=event.occurred_at,
            )
        )

    def _delivered(self, event: Delivered) -> str | None:
        if self.state.status in CLOSED:
            raise _Refuse(f"delivery for a {self.state.status.value} order")
        if event.group_id is not None:
            group = self.state.group(event.group_id)
            if group is None:
                raise _Refuse(f"no supplier group {event.group_id}")
            targets = [group]
        else:
            targets = [g for g in self.state.groups if g.status is not GroupStatus.CANCELLED]
        if all(g.status is GroupStatus.DELIVERED for g in targets):
            raise _Refuse("already delivered")
        if any(g.status not in SHIPPED_OR_DELIVERED and g.status is not GroupStatus.CANCELLED for g in targets):
            raise _Park  # delivered before its tracking arrived here
        for group in targets:
            if group.status is GroupStatus.SHIPPED:
                self._set_group(group, status=GroupStatus.DELIVERED, delivered_at=event.occurred_at)
        return "delivered: " + ", ".join(g.group_id for g in targets)

    def _cancel(self, event: CancelRequested) -> str | None:
        state = self.state
        if state.status in TERMINAL:
            raise _Refuse(f"cancel of an order that is {state.status.value}")
        shipped = [g.group_id for g in state.groups if g.status in SHIPPED_OR_DELIVERED]
        if shipped:
            number = state.order_number or state.order_id
            self._alert(
                event,
                AlertType.ORDER_ISSUE,
                f"Cancel refused for order {number}",
                f"cancel requested after shipment of {', '.join(shipped)}: refund or return by hand",
            )
            raise _Refuse(f"cancel after shipment of {', '.join(shipped)}")
        cancelled = self._cancel_unshipped(event)
        self._set(status=OrderStatus.CANCELLED, problem=None)
        return f"cancelled ({event.reason or 'no reason given'}); groups {', '.join(cancelled) or 'none'}"

    def _refund(self, event: RefundRequested) -> str | None:
        """A refund of the whole order (no amount, or the refunds so far reach the total)
        cancels what is not shipped and ends it REFUNDED. A partial one (a line, the
        shipping, a goodwill amount: Shopify's refunds/create comes for each) is added
        up and alerted, and the order goes on."""
        state = self.state
        if state.status is OrderStatus.REFUNDED:
            raise _Refuse("order already refunded")
        reason = event.reason or "no reason given"
        if event.amount is not None and state.total is not None:
            refunded = state.refunded + event.amount
            self._set(refunded=refunded)
            if refunded < state.total:
                currency = f" {state.currency}" if state.currency else ""
                self._alert(
                    event,
                    AlertType.PAYMENT_ISSUE,
                    f"Order {state.order_number or state.order_id}: partial refund",
                    f"{event.amount}{currency} refunded ({reason}); {refunded} of {state.total}{currency} "
                    "refunded in all. The order goes on: cancel it if it should not ship.",
                )
                return f"partial refund of {event.amount} ({refunded} of {state.total} in all): the order goes on"
        cancelled = self._cancel_unshipped(event)
        self._set(status=OrderStatus.REFUNDED, problem=None)
        return f"refunded ({reason}); unshipped groups cancelled: {', '.join(cancelled) or 'none'}"

    def _retry(self, event: Retry) -> str | None:
        state = self.state
        if state.status is not OrderStatus.INTERVENTION_REQUIRED:
            raise _Refuse(f"retry of an order that is {state.status.value}")
        reissued = []
        for group in state.groups:
            if group.provider == UNMAPPED:
                continue  # a catalogue fix and the order again, not a retry, places these
            if group.status in UNPLACED and group.status is not GroupStatus.PENDING:
                group = self._set_group(group, retries=0, problem=None, last_error=None)
                self._place(event, group, attempt=group.attempt + 1)
                reissued.append(group.group_id)
            elif group.problem:
                # Placed but silent (tracking overdue): wait again from now.
                due = event.occurred_at + timedelta(seconds=self.config.tracking_timeout_s)
                self._set_group(group, problem=None, tracking_due_at=due if group.status is GroupStatus.PLACED else None)
        self._set(problem=None)
        return f"retry by {event.requested_by or 'an operator'}; re-issued {', '.join(reissued) or 'none'}"

    def _data_request(self, event: DataRequested) -> str | None:
        """Tell the store owner what the order holds of the customer (nothing, once redacted)."""
        state = self.state
        extra = customer_data(state.customer, state.shipping_address)
        self._notify(event, NotificationKind.ADMIN_DATA_REQUEST, *data_request_id_parts(event), extra=extra)
        return "customer data sent to the store owner" + (" (already redacted)" if state.redacted else "")

    def _redact(self, event: RedactRequested) -> str | None:
        """Names, e-mail, phone and street go; ids, items, amounts and the country stay."""
        state = self.state
        if state.redacted:
            raise _Ignore
        address = state.shipping_address
        customer, redacted_address = redacted_customer()
        self._set(
            customer=customer,
            shipping_address=None if address is None else redacted_address(address.country_code),
            redacted=True,
        )
        # After the change: the notice carries no name (the notifier redacts its records on it).
        self._notify(event, NotificationKind.ADMIN_REDACTED, "redacted", extra={"reason": event.reason or "requested"})
        return f"personal data redacted ({event.reason or 'requested'})"

    def _timer(self, event: Timer) -> str | None:
        state = self.state
        if event.timer is TimerKind.PAYMENT_OVERDUE:
            due = state.created_at + timedelta(seconds=self.config.payment_timeout_s) if state.created_at else None
            if state.paid or state.payment_alerted or state.status in CLOSED or due != event.due_at:
                raise _Ignore
            hours = self.config.payment_timeout_s / 3600
            self._alert(
                event,
                AlertType.PAYMENT_ISSUE,
                f"Order {state.order_number} unpaid",
                f"no payment {hours:g} hours after the order was created",
            )
            self._set(payment_alerted=True)
            return "payment overdue: alerted"
        group = self.state.group(event.group_id) if event.group_id else None
        if group is None or self.state.status in CLOSED:
            raise _Ignore
        if event.timer is TimerKind.RETRY_DUE:
            if group.status is not GroupStatus.RETRY_WAIT or group.next_retry_at != event.due_at:
                raise _Ignore
            self._place(event, group, attempt=group.attempt + 1)
            return f"{group.group_id} retry, attempt {group.attempt + 1}"
        if event.timer is TimerKind.OUTCOME_OVERDUE:
            if group.status is not GroupStatus.PLACING or group.outcome_due_at != event.due_at:
                raise _Ignore
            group = self._place(event, group, attempt=group.attempt, reissues=group.reissues + 1)  # same key
            return f"{group.group_id} outcome of attempt {group.attempt} overdue: command re-issued ({group.reissues})"
        if event.timer is TimerKind.TRACKING_OVERDUE:
            if group.status is not GroupStatus.PLACED or group.tracking_due_at != event.due_at or group.problem:
                raise _Ignore
            days = self.config.tracking_timeout_s / 86400
            self._set_group(group, problem=f"no tracking {days:g} days after placement")
            return f"{group.group_id} has no tracking"
        if event.timer is TimerKind.DELIVERY_OVERDUE:
            due = group.shipped_at + timedelta(seconds=self.config.delivery_timeout_s) if group.shipped_at else None
            if group.status is not GroupStatus.SHIPPED or group.delivery_alerted or due != event.due_at:
                raise _Ignore
            days = self.config.delivery_timeout_s / 86400
            number = state.order_number or state.order_id
            tracking = group.tracking.number if group.tracking else "?"
            self._alert(
                event,
                AlertType.ORDER_ISSUE,
                f"Order {number} not delivered",
                f"{group.group_id} shipped {days:g} days ago ({tracking}) and is not delivered",
            )
            self._set_group(group, delivery_alerted=True)
            return f"{group.group_id} delivery overdue: alerted"
        raise _Refuse(f"timer {event.timer.value} does not apply")  # pragma: no cover

    def _order_missing(self, event: Timer) -> str | None:
        state = self.state
        if state.created or state.abandoned:
            raise _Ignore
        if state.missing_alerted:
            return self._abandon(event)
        self._alert(
            event,
            AlertType.PAYMENT_ISSUE,
            f"Events for unknown order {state.order_id}",
            f"{len(state.parked)} event(s) wait for an order that never arrived",
        )
        self._set(missing_alerted=True)
        return "order never arrived: alerted"

    def _abandon(self, event: Timer) -> str | None:
        """The order has not arrived ``order_abandon_s`` after its first event: its parked
        events are refused (each to deadletter, with its value: nothing is lost) and the
        record waits on nothing more, for the archive sweep. A late ORDER_CREATED then
        meets the archive marker (deadletter ARCHIVED)."""
        state = self.state
        if event.occurred_at < _abandon_at(state, self.config):
            raise _Ignore  # an early or replayed timer
        self._refuse_parked(f"its order never arrived in {_abandon_s(self.config) / 86400:g} days", None)
        self._set(abandoned=True)
        return "order never arrived: its events refused"


def order_alert(
    order_id: str, store_id: str, order_number: str | None, event: OrderEvent, alert_type: AlertType, title: str,
    message: str,
) -> Alert:
    """The alert an order raises on ``event``: its id comes from the order and the event, so
    a replay of the event is the same alert (an archived order's uses it too: models/archive.py)."""
    return open_alert(
        subject_key=f"order|{order_id}|{event.event_id}",
        store_id=store_id,
        product_id=None,
        variant_id=None,
        alert_type=alert_type,
        title=title,
        message=message,
        metadata={"order_id": order_id, "order_number": order_number or "", "event": event.type.value},
        at=event.occurred_at,
        trigger_micros=int(event.occurred_at.timestamp() * 1_000_000),
    )


def canonical(state: OrderState) -> dict[str, object]:
    """The state without what depends on the order events arrived in (history
    order, the receipt bookkeeping): two deliveries of the same events compare
    equal on this."""
    body = state.model_dump(mode="json", exclude={"history", "seen", "parked", "updated_at", "first_seen_at"})
    body["history_events"] = sorted(t.event_id for t in state.history)
    body["seen"] = sorted(state.seen)
    body["parked"] = sorted(p.event_id for p in state.parked)
    return body
