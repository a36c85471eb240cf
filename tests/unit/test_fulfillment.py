"""The order state machine (models/fulfillment.py): every (state, event) pair,
then the behaviours the fulfillment issue asks for, one story each."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import timedelta
from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.events import AlertType
from models.fulfillment import (
    Decision,
    GroupStatus,
    MachineConfig,
    OrderState,
    OrderStatus,
    canonical,
    deadlines,
    decide,
)
from models.orders import (
    CommandType,
    NotificationKind,
    OrderEvent,
    OrderEventType,
    StorefrontCommandType,
    TimerKind,
    supplier_key,
)
from tests.unit.order_events import (
    ORDER,
    at,
    cancel,
    created,
    delivered,
    event,
    failed,
    paid,
    placed,
    refund,
    retry,
    timer,
    tracking,
)

A, B = "ALIEXPRESS", "CJ_DROPSHIPPING"
CONFIG = MachineConfig()


def run(events: Sequence[OrderEvent], state: OrderState | None = None) -> tuple[OrderState, list[Decision]]:
    decisions = []
    for e in events:
        d = decide(state, e, CONFIG)
        decisions.append(d)
        state = d.state
    assert state is not None
    return state, decisions


# --------------------------------------------------------------------------- #
# every (state, event) pair
# --------------------------------------------------------------------------- #

#: A script that leads to each state (NOT_CREATED: only a payment, waiting).
STATES: dict[str, Callable[[], list[OrderEvent]]] = {
    "NOT_CREATED": lambda: [paid()],
    "PENDING": lambda: [created()],
    "PROCESSING": lambda: [created(), paid()],
    "AWAITING_SHIPMENT": lambda: [created(), paid(), placed(A), placed(B)],
    "PARTIALLY_SHIPPED": lambda: [created(), paid(), placed(A), placed(B), tracking(A)],
    "SHIPPED": lambda: [created(), paid(), placed(A), placed(B), tracking(A), tracking(B, "1Z999AA10123456784")],
    "DELIVERED": lambda: [
        created(), paid(), placed(A), placed(B), tracking(A), tracking(B, "1Z999AA10123456784"), delivered(),
    ],
    "INTERVENTION_REQUIRED": lambda: [created(), paid(), failed(A, 1, retryable=False)],
    "CANCELLED": lambda: [created(), paid(), cancel()],
    "REFUNDED": lambda: [created(), paid(), refund()],
}

#: One event of each type, with ids none of the scripts use.
EVENTS: dict[str, Callable[[], OrderEvent]] = {
    "ORDER_CREATED": lambda: created(10, event_id="created-2"),
    "PAYMENT_CONFIRMED": lambda: paid(10, event_id="paid-2"),
    "SUPPLIER_ORDER_PLACED": lambda: event(
        OrderEventType.SUPPLIER_ORDER_PLACED, "placed-2", 10, group_id=A, supplier_order_id=f"so-{A}", attempt=1
    ),
    "SUPPLIER_ORDER_FAILED": lambda: event(
        OrderEventType.SUPPLIER_ORDER_FAILED, "failed-2", 10, group_id=A, error="HTTP 503", retryable=True, attempt=1
    ),
    "TRACKING_RECEIVED": lambda: tracking(A, seconds=10, event_id="track-2"),
    "DELIVERED": lambda: event(OrderEventType.DELIVERED, "delivered-2", 10),
    "CANCEL_REQUESTED": lambda: cancel(10, "cancel-2"),
    "REFUND_REQUESTED": lambda: refund(10, "refund-2"),
    "RETRY": lambda: retry(10, "retry-2"),
    "REDACT_REQUESTED": lambda: event(OrderEventType.REDACT_REQUESTED, "redact-2", 10, reason="customers/redact"),
    "DATA_REQUESTED": lambda: event(OrderEventType.DATA_REQUESTED, "data-2", 10, request_id="dr-1"),
    "TIMER": lambda: timer(TimerKind.RETRY_DUE, A, at(70), 70),
}

P, R, I = "parked", "refused", "ignored"  # noqa: E741
#: state -> event -> expected outcome (a status: applied, ending in that status).
EXPECTED: dict[str, dict[str, str]] = {
    "NOT_CREATED": {
        "ORDER_CREATED": "PROCESSING",  # the waiting payment applies with it
        "PAYMENT_CONFIRMED": P, "SUPPLIER_ORDER_PLACED": P, "SUPPLIER_ORDER_FAILED": P, "TRACKING_RECEIVED": P,
        "DELIVERED": P, "CANCEL_REQUESTED": P, "REFUND_REQUESTED": P, "RETRY": P, "TIMER": I, "REDACT_REQUESTED": I, "DATA_REQUESTED": I,
    },
    "PENDING": {
        "ORDER_CREATED": R, "PAYMENT_CONFIRMED": "PROCESSING", "SUPPLIER_ORDER_PLACED": P,
        "SUPPLIER_ORDER_FAILED": P, "TRACKING_RECEIVED": P, "DELIVERED": P, "CANCEL_REQUESTED": "CANCELLED",
        "REFUND_REQUESTED": "REFUNDED", "RETRY": R, "TIMER": I, "REDACT_REQUESTED": "PENDING", "DATA_REQUESTED": "PENDING",
    },
    "PROCESSING": {
        "ORDER_CREATED": R, "PAYMENT_CONFIRMED": R, "SUPPLIER_ORDER_PLACED": "PROCESSING",
        "SUPPLIER_ORDER_FAILED": "PROCESSING", "TRACKING_RECEIVED": P, "DELIVERED": P,
        "CANCEL_REQUESTED": "CANCELLED", "REFUND_REQUESTED": "REFUNDED", "RETRY": R, "TIMER": I, "REDACT_REQUESTED": "PROCESSING", "DATA_REQUESTED": "PROCESSING",
    },
    "AWAITING_SHIPMENT": {
        "ORDER_CREATED": R, "PAYMENT_CONFIRMED": R, "SUPPLIER_ORDER_PLACED": R, "SUPPLIER_ORDER_FAILED": R,
        "TRACKING_RECEIVED": "PARTIALLY_SHIPPED", "DELIVERED": P, "CANCEL_REQUESTED": "CANCELLED",
        "REFUND_REQUESTED": "REFUNDED", "RETRY": R, "TIMER": I, "REDACT_REQUESTED": "AWAITING_SHIPMENT", "DATA_REQUESTED": "AWAITING_SHIPMENT",
    },
    "PARTIALLY_SHIPPED": {
        "ORDER_CREATED": R, "PAYMENT_CONFIRMED": R, "SUPPLIER_ORDER_PLACED": R, "SUPPLIER_ORDER_FAILED": R,
        "TRACKING_RECEIVED": R, "DELIVERED": P, "CANCEL_REQUESTED": R, "REFUND_REQUESTED": "REFUNDED",
        "RETRY": R, "TIMER": I, "REDACT_REQUESTED": "PARTIALLY_SHIPPED", "DATA_REQUESTED": "PARTIALLY_SHIPPED",
    },
    "SHIPPED": {
        "ORDER_CREATED": R, "PAYMENT_CONFIRMED": R, "SUPPLIER_ORDER_PLACED": R, "SUPPLIER_ORDER_FAILED": R,
        "TRACKING_RECEIVED": R, "DELIVERED": "DELIVERED", "CANCEL_REQUESTED": R, "REFUND_REQUESTED": "REFUNDED",
        "RETRY": R, "TIMER": I, "REDACT_REQUESTED": "SHIPPED", "DATA_REQUESTED": "SHIPPED",
    },
    "DELIVERED": {
        "ORDER_CREATED": R, "PAYMENT_CONFIRMED": R, "SUPPLIER_ORDER_PLACED": R, "SUPPLIER_ORDER_FAILED": R,
        "TRACKING_RECEIVED": R, "DELIVERED": R, "CANCEL_REQUESTED": R, "REFUND_REQUESTED": "REFUNDED",
        "RETRY": R, "TIMER": I, "REDACT_REQUESTED": "DELIVERED", "DATA_REQUESTED": "DELIVERED",
    },
    "INTERVENTION_REQUIRED": {
        "ORDER_CREATED": R, "PAYMENT_CONFIRMED": R,
        "SUPPLIER_ORDER_PLACED": "PROCESSING",  # found after all; the other group is still being placed
        "SUPPLIER_ORDER_FAILED": R, "TRACKING_RECEIVED": P, "DELIVERED": P, "CANCEL_REQUESTED": "CANCELLED",
        "REFUND_REQUESTED": "REFUNDED", "RETRY": "PROCESSING", "TIMER": I, "REDACT_REQUESTED": "INTERVENTION_REQUIRED", "DATA_REQUESTED": "INTERVENTION_REQUIRED",
    },
    "CANCELLED": {
        "ORDER_CREATED": R, "PAYMENT_CONFIRMED": R,
        "SUPPLIER_ORDER_PLACED": "CANCELLED",  # placed while the cancel was on its way: cancel it there
        "SUPPLIER_ORDER_FAILED": R, "TRACKING_RECEIVED": R, "DELIVERED": R, "CANCEL_REQUESTED": R,
        "REFUND_REQUESTED": "REFUNDED", "RETRY": R, "TIMER": I, "REDACT_REQUESTED": "CANCELLED", "DATA_REQUESTED": "CANCELLED",
    },
    "REFUNDED": {
        "ORDER_CREATED": R, "PAYMENT_CONFIRMED": R, "SUPPLIER_ORDER_PLACED": "REFUNDED",
        "SUPPLIER_ORDER_FAILED": R, "TRACKING_RECEIVED": R, "DELIVERED": R, "CANCEL_REQUESTED": R,
        "REFUND_REQUESTED": R, "RETRY": R, "TIMER": I, "REDACT_REQUESTED": "REFUNDED", "DATA_REQUESTED": "REFUNDED",
    },
}


def test_the_table_covers_every_status_and_event_type() -> None:
    assert set(EXPECTED) == {s.value for s in OrderStatus} | {"NOT_CREATED"}
    assert set(EVENTS) == {t.value for t in OrderEventType}
    assert all(set(row) == set(EVENTS) for row in EXPECTED.values())


@pytest.mark.parametrize("state_name", sorted(STATES))
def test_scripts_reach_their_state(state_name: str) -> None:
    state, _ = run(STATES[state_name]())
    expected = OrderStatus.PENDING if state_name == "NOT_CREATED" else OrderStatus(state_name)
    assert state.status is expected
    assert state.created is (state_name != "NOT_CREATED")


@pytest.mark.parametrize("event_name", sorted(EVENTS))
@pytest.mark.parametrize("state_name", sorted(STATES))
def test_every_state_and_event(state_name: str, event_name: str) -> None:
    before, _ = run(STATES[state_name]())
    e = EVENTS[event_name]()
    d = decide(before, e, CONFIG)
    expected = EXPECTED[state_name][event_name]
    after = d.state
    if expected == P:
        assert d.parked and not d.applied and not d.refused
        assert [p.event_id for p in after.parked][-1] == e.event_id
        assert after.model_copy(update={"parked": before.parked, "updated_at": before.updated_at}) == before
    elif expected == R:
        assert d.refused and not d.applied
        assert not d.commands and not d.notifications and not d.storefront
        # Nothing changes but the note in the history and the id in the seen list.
        assert after.history[-1].event_id == e.event_id and after.history[-1].note.startswith("refused: ")
        assert after.model_copy(update={"history": before.history, "seen": before.seen}) == before
        assert after.status is before.status
    elif expected == I:
        assert d.ignored and not d.applied and not d.refused
        assert after.model_copy(update={"seen": before.seen}) == before
    else:
        assert d.applied and not d.refused, d
        assert after.status is OrderStatus(expected)
        assert after.history[-1].event_id in {e.event_id} | {p.event_id for p in before.parked}
    # The same event again changes nothing at all.
    again = decide(after, e, CONFIG)
    assert again.duplicate and again.state == after
    assert not again.commands and not again.notifications and not again.alerts


# --------------------------------------------------------------------------- #
# stories
# --------------------------------------------------------------------------- #


def test_paid_order_places_one_command_per_supplier_with_durable_keys() -> None:
    state, (c, p) = run([created(), paid()])
    assert state.status is OrderStatus.PROCESSING
    assert [(cmd.type, cmd.group_id, cmd.attempt) for cmd in p.commands] == [
        (CommandType.PLACE_SUPPLIER_ORDER, A, 1),
        (CommandType.PLACE_SUPPLIER_ORDER, B, 1),
    ]
    assert [cmd.idempotency_key for cmd in p.commands] == [supplier_key(ORDER, A), supplier_key(ORDER, B)]
    assert p.commands[0].lines[0].source_id == "src-l0" and p.commands[0].shipping_address.country_code == "US"
    assert not c.commands
    # An order created already paid places at once.
    state2, (c2,) = run([created(paid=True)])
    assert state2.status is OrderStatus.PROCESSING and len(c2.commands) == 2


def test_happy_path_to_delivered_with_notifications_and_storefront() -> None:
    state, ds = run(
        [created(), paid(), placed(A), placed(B), tracking(A), tracking(B, "1Z999AA10123456784"), delivered()]
    )
    assert [d.state.status for d in ds] == [
        OrderStatus.PENDING, OrderStatus.PROCESSING, OrderStatus.PROCESSING, OrderStatus.AWAITING_SHIPMENT,
        OrderStatus.PARTIALLY_SHIPPED, OrderStatus.SHIPPED, OrderStatus.DELIVERED,
    ]
    kinds = [n.kind for d in ds for n in d.notifications]
    assert kinds == [
        NotificationKind.CUSTOMER_PARTIALLY_SHIPPED, NotificationKind.CUSTOMER_SHIPPED,
        NotificationKind.CUSTOMER_DELIVERED,
    ]
    first = ds[4].notifications[0]
    assert first.recipient == "ada@example.com" and first.data["tracking_number"] == "LP00123456789012CN"
    assert first.data["carrier"] == "Cainiao" and first.data["tracking_url"].startswith("https://")
    shows = [s for d in ds for s in d.storefront]
    assert [(s.type, s.group_id, s.tracking_number) for s in shows] == [
        (StorefrontCommandType.SHOW_TRACKING, A, "LP00123456789012CN"),
        (StorefrontCommandType.SHOW_TRACKING, B, "1Z999AA10123456784"),
    ]
    assert state.group(B).tracking.carrier == "UPS"
    assert [(t.from_status, t.to_status) for t in state.history][:2] == [
        (None, OrderStatus.PENDING), (OrderStatus.PENDING, OrderStatus.PROCESSING)
    ]
    # Replayed, the ids of what is told are the same (the senders dedupe on them).
    _, again = run([created(), paid(), placed(A), placed(B), tracking(A), tracking(B, "1Z999AA10123456784"), delivered()])
    assert [n.notification_id for d in again for n in d.notifications] == [
        n.notification_id for d in ds for n in d.notifications
    ]
    assert deadlines(state, CONFIG) == []


def test_payment_before_its_order_waits_and_applies_when_the_order_arrives() -> None:
    state, (p, c) = run([paid(0), created(1)])
    assert p.parked and p.state.status is OrderStatus.PENDING and not p.state.created
    assert c.applied and state.status is OrderStatus.PROCESSING and not state.parked
    assert len(c.commands) == 2
    assert "paid" in state.seen


def test_retryable_failures_back_off_then_need_a_person_and_retry_reissues() -> None:
    state, _ = run([created(providers=(A,)), paid()])
    dues = []
    for attempt in (1, 2, 3):
        d = decide(state, failed(A, attempt, seconds=attempt * 1000), CONFIG)
        group = d.state.group(A)
        assert group.status is GroupStatus.RETRY_WAIT and d.state.status is OrderStatus.PROCESSING
        dues.append((group.next_retry_at - at(attempt * 1000)).total_seconds())
        (deadline,) = deadlines(d.state, CONFIG)
        assert deadline.kind is TimerKind.RETRY_DUE and deadline.due_at == group.next_retry_at
        t = decide(d.state, timer(TimerKind.RETRY_DUE, A, group.next_retry_at, attempt * 1000 + 950), CONFIG)
        assert [(c.attempt, c.idempotency_key) for c in t.commands] == [(attempt + 1, supplier_key(ORDER, A))]
        state = t.state
    assert dues == [60, 300, 900]
    d = decide(state, failed(A, 4, seconds=9000), CONFIG)
    assert d.state.status is OrderStatus.INTERVENTION_REQUIRED and d.state.group(A).status is GroupStatus.FAILED
    assert "4 attempts failed" in d.state.reason
    assert [a.type for a in d.alerts] == [AlertType.ORDER_ISSUE]
    assert [n.kind for n in d.notifications] == [NotificationKind.ADMIN_INTERVENTION]
    assert d.notifications[0].data["reason"] == d.state.reason
    r = decide(d.state, retry(9100), CONFIG)
    assert r.state.status is OrderStatus.PROCESSING and r.state.group(A).retries == 0
    assert [(c.attempt, c.idempotency_key) for c in r.commands] == [(5, supplier_key(ORDER, A))]


def test_non_retryable_failure_needs_a_person_at_once() -> None:
    state, ds = run([created(), paid(), placed(B), failed(A, 1, retryable=False)])
    assert state.status is OrderStatus.INTERVENTION_REQUIRED
    assert ds[-1].transitions == [(OrderStatus.PROCESSING, OrderStatus.INTERVENTION_REQUIRED)]
    # RETRY re-issues only the group not placed.
    r = decide(state, retry(), CONFIG)
    assert [c.group_id for c in r.commands] == [A]


def test_a_command_whose_outcome_never_came_back_is_reissued_with_the_same_key() -> None:
    state, (_, p) = run([created(providers=(A,)), paid(1)])
    (deadline,) = deadlines(state, CONFIG)
    assert deadline.kind is TimerKind.OUTCOME_OVERDUE and deadline.due_at == at(1 + CONFIG.outcome_timeout_s)
    d = decide(state, timer(TimerKind.OUTCOME_OVERDUE, A, deadline.due_at, 200), CONFIG)
    assert [(c.command_id, c.idempotency_key) for c in d.commands] == [
        (p.commands[0].command_id, p.commands[0].idempotency_key)
    ]
    assert d.state.group(A).outcome_due_at == at(200 + 2 * CONFIG.outcome_timeout_s)  # waits twice as long
    # The old deadline's timer, delivered again late, is moot.
    stale = decide(d.state, timer(TimerKind.OUTCOME_OVERDUE, A, deadline.due_at, 201).model_copy(
        update={"event_id": "timer-again"}), CONFIG)
    assert stale.ignored and not stale.commands


def test_no_tracking_in_time_needs_a_person_and_late_tracking_clears_it() -> None:
    state, _ = run([created(providers=(A,)), paid(), placed(A, seconds=2)])
    (deadline,) = deadlines(state, CONFIG)
    assert deadline.kind is TimerKind.TRACKING_OVERDUE and deadline.due_at == at(2) + timedelta(days=7)
    d = decide(state, timer(TimerKind.TRACKING_OVERDUE, A, deadline.due_at, 7 * 86400 + 5), CONFIG)
    assert d.state.status is OrderStatus.INTERVENTION_REQUIRED and "no tracking 7 days" in d.state.reason
    t = decide(d.state, tracking(A, seconds=8 * 86400), CONFIG)
    assert t.state.status is OrderStatus.SHIPPED and t.state.reason is None


def test_cancel_before_shipment_cancels_placed_and_in_flight_groups() -> None:
    state, ds = run([created(), paid(), placed(A), cancel()])
    assert state.status is OrderStatus.CANCELLED
    assert {(c.type, c.group_id, c.supplier_order_id) for c in ds[-1].commands} == {
        (CommandType.CANCEL_SUPPLIER_ORDER, A, f"so-{A}"),
        (CommandType.CANCEL_SUPPLIER_ORDER, B, None),
    }
    assert {g.status for g in state.groups} == {GroupStatus.CANCELLED}
    assert deadlines(state, CONFIG) == []
    # The in-flight one lands after all: it is cancelled there too.
    late = decide(state, placed(B, seconds=9), CONFIG)
    assert [(c.type, c.supplier_order_id) for c in late.commands] == [
        (CommandType.CANCEL_SUPPLIER_ORDER, f"so-{B}")
    ]


def test_cancel_after_shipment_is_refused_with_an_alert() -> None:
    state, _ = run([created(), paid(), placed(A), placed(B), tracking(A)])
    d = decide(state, cancel(), CONFIG)
    assert d.refused and d.state.status is OrderStatus.PARTIALLY_SHIPPED
    assert [a.type for a in d.alerts] == [AlertType.ORDER_ISSUE]


def test_refund_cancels_only_unshipped_groups() -> None:
    state, ds = run([created(), paid(), placed(A), placed(B), tracking(A), refund()])
    assert state.status is OrderStatus.REFUNDED
    assert [(c.type, c.group_id) for c in ds[-1].commands] == [(CommandType.CANCEL_SUPPLIER_ORDER, B)]
    assert state.group(A).status is GroupStatus.SHIPPED and state.group(B).status is GroupStatus.CANCELLED


def test_cancel_or_refund_after_a_failed_attempt_still_cancels_at_the_supplier() -> None:
    """A failed attempt may have left an order at the supplier: the executor reports
    a retryable failure when a call's outcome was unknown and the lookup by our
    reference failed too (connectors/fulfillment/executor.py ``_find``), and a
    FAILED group may end such a series. Cancelling the order must reach the
    executor for those groups (it looks the order up by reference and cancels it,
    or marks the key CANCELLED so nothing places it later); a group never tried
    (attempt 0) needs nothing."""
    for story in (
        [created(providers=(A,)), paid(), failed(A, 1)],  # RETRY_WAIT
        [created(providers=(A,)), paid(), failed(A, 1, retryable=False)],  # FAILED
    ):
        for ending in (cancel(), refund()):
            state, ds = run([*story, ending])
            assert state.group(A).status is GroupStatus.CANCELLED
            assert [(c.type, c.group_id, c.idempotency_key) for c in ds[-1].commands] == [
                (CommandType.CANCEL_SUPPLIER_ORDER, A, supplier_key(ORDER, A))
            ], (story[-1].event_id, ending.type)
    # Unpaid, never tried: nothing to cancel anywhere.
    state, ds = run([created(providers=(A,)), cancel()])
    assert state.status is OrderStatus.CANCELLED and ds[-1].commands == []

def test_store_fulfilled_by_hand_ships_a_group_not_placed_by_us() -> None:
    state, _ = run([created(), paid(), placed(B), tracking(A, source="STOREFRONT")])
    assert state.group(A).status is GroupStatus.SHIPPED and state.status is OrderStatus.PARTIALLY_SHIPPED


def test_second_supplier_order_for_a_group_needs_a_person() -> None:
    state, _ = run([created(providers=(A,)), paid(), placed(A)])
    d = decide(state, event(
        OrderEventType.SUPPLIER_ORDER_PLACED, "placed-again", 5, group_id=A, supplier_order_id="so-other"), CONFIG)
    assert d.state.status is OrderStatus.INTERVENTION_REQUIRED and "second order so-other" in d.state.reason


def test_events_of_an_order_that_never_arrives_raise_a_payment_issue() -> None:
    state, _ = run([paid(0)])
    (deadline,) = deadlines(state, CONFIG)
    assert deadline.kind is TimerKind.ORDER_MISSING
    d = decide(state, timer(TimerKind.ORDER_MISSING, None, deadline.due_at, 86400), CONFIG)
    assert [a.type for a in d.alerts] == [AlertType.PAYMENT_ISSUE] and d.state.missing_alerted
    # Only the giving up is left (test below).
    assert [(dl.kind, dl.due_at - state.first_seen_at) for dl in deadlines(d.state, CONFIG)] == [
        (TimerKind.ORDER_MISSING, timedelta(seconds=CONFIG.order_abandon_s))]
    # The order arrives later after all: everything applies.
    c = decide(d.state, created(86500), CONFIG)
    assert c.state.status is OrderStatus.PROCESSING


def test_events_still_waiting_when_the_order_ends_are_refused() -> None:
    state, ds = run([created(), tracking(A), cancel()])
    assert state.status is OrderStatus.CANCELLED and not state.parked
    assert [e.event_id for e, _ in ds[-1].refused_events] == ["track-ALIEXPRESS"]


# --------------------------------------------------------------------------- #
# out of order and duplicated
# --------------------------------------------------------------------------- #

CLEAN_STORIES: list[list[OrderEvent]] = [
    [created(0), paid(1), placed(A, 2), placed(B, 3), tracking(A, seconds=4),
     tracking(B, "1Z999AA10123456784", seconds=5), delivered(A, 6), delivered(B, 7)],
    [created(0, paid=True, providers=(A,)), placed(A, 2), tracking(A, seconds=3), delivered(None, 4)],
    [created(0), paid(1), placed(A, 2), tracking(A, seconds=3), placed(B, 4)],
    [created(0, providers=(A, B, "SPOCKET")), paid(1), placed("SPOCKET", 2), placed(A, 3),
     tracking("SPOCKET", "YT1234567890123456", seconds=4)],
]


@settings(max_examples=300, deadline=None)
@given(story=st.sampled_from(range(len(CLEAN_STORIES))), seed=st.integers(0, 2**32 - 1))
def test_shuffled_and_duplicated_delivery_reaches_the_clean_state(story: int, seed: int) -> None:
    clean = CLEAN_STORIES[story]
    expected, _ = run(clean)
    rng = random.Random(seed)
    delivered_events = [e for e in clean for _ in range(rng.randint(1, 3))]
    rng.shuffle(delivered_events)
    got, decisions = run(delivered_events)
    assert canonical(got) == canonical(expected)
    assert not any(d.refused or d.refused_events for d in decisions)
    # Each supplier group was asked for exactly once, whatever the order.
    assert sorted(c.group_id for d in decisions for c in d.commands) == sorted(g.group_id for g in expected.groups)


def test_an_unpaid_order_raises_one_payment_issue() -> None:
    state, _ = run([created(0)])
    (deadline,) = deadlines(state, CONFIG)
    assert deadline.kind is TimerKind.PAYMENT_OVERDUE and deadline.due_at == at(CONFIG.payment_timeout_s)
    d = decide(state, timer(TimerKind.PAYMENT_OVERDUE, None, deadline.due_at, CONFIG.payment_timeout_s + 1), CONFIG)
    assert [a.type for a in d.alerts] == [AlertType.PAYMENT_ISSUE] and d.state.status is OrderStatus.PENDING
    assert deadlines(d.state, CONFIG) == []
    # Paid late after all: it goes on as usual.
    assert decide(d.state, paid(CONFIG.payment_timeout_s + 5), CONFIG).state.status is OrderStatus.PROCESSING


def test_a_shipment_never_delivered_raises_one_order_issue() -> None:
    state, _ = run([created(providers=(A,)), paid(), placed(A), tracking(A, seconds=10)])
    (deadline,) = deadlines(state, CONFIG)
    assert deadline.kind is TimerKind.DELIVERY_OVERDUE and deadline.due_at == at(10 + CONFIG.delivery_timeout_s)
    d = decide(state, timer(TimerKind.DELIVERY_OVERDUE, A, deadline.due_at, 10 + CONFIG.delivery_timeout_s), CONFIG)
    assert [a.type for a in d.alerts] == [AlertType.ORDER_ISSUE] and d.state.status is OrderStatus.SHIPPED
    assert deadlines(d.state, CONFIG) == []
    assert decide(d.state, delivered(A, 10 + CONFIG.delivery_timeout_s + 9), CONFIG).state.status is OrderStatus.DELIVERED


def test_items_without_a_catalogue_mapping_need_a_person_once_paid() -> None:
    state, ds = run([created(providers=(A, "UNMAPPED")), paid()])
    assert state.status is OrderStatus.INTERVENTION_REQUIRED
    assert "no catalogue mapping for" in state.reason and "src-l1" in state.reason
    assert [c.group_id for c in ds[-1].commands] == [A]  # the mapped group is placed all the same
    assert [a.type for a in ds[-1].alerts] == [AlertType.ORDER_ISSUE]
    # RETRY re-issues the mapped group still in flight, never the one with no supplier.
    assert [c.group_id for c in decide(state, retry(), CONFIG).commands] == [A]


def test_redaction_removes_personal_data_and_keeps_the_rest() -> None:
    state, _ = run([created(), paid(), placed(A)])
    d = decide(state, event(OrderEventType.REDACT_REQUESTED, "redact", 9, reason="customers/redact"), CONFIG)
    after = d.state
    assert after.redacted and after.customer.email is None and after.customer.name is None
    assert after.shipping_address.line1 == "[redacted]" and after.shipping_address.country_code == "US"
    assert after.items == state.items and after.groups == state.groups and after.status is state.status
    dumped = after.model_dump_json()
    assert "ada@example.com" not in dumped and "1 Main St" not in dumped and "Ada" not in dumped
    # The store owner is told, and the notifier redacts its own records on that notice.
    (notice,) = d.notifications
    assert notice.kind is NotificationKind.ADMIN_REDACTED and notice.order_id == state.order_id
    assert notice.recipient is None and notice.data["reason"] == "customers/redact"
    assert "Ada" not in notice.model_dump_json() and "ada@example.com" not in notice.model_dump_json()
    # A second request changes nothing and tells nobody again.
    assert decide(after, event(OrderEventType.REDACT_REQUESTED, "redact-b", 10), CONFIG).notifications == []
    # Shipping later tells nobody by e-mail: there is no address left to tell.
    t = decide(after, tracking(A, seconds=20), CONFIG)
    assert [n.recipient for n in t.notifications] == [None]


def test_a_data_request_tells_the_store_owner_what_the_order_holds() -> None:
    state, _ = run([created(), paid()])
    d = decide(state, event(OrderEventType.DATA_REQUESTED, "dr", 9, request_id="dr-1"), CONFIG)
    (note,) = d.notifications
    assert note.kind is NotificationKind.ADMIN_DATA_REQUEST and note.recipient is None
    assert note.data["customer_email"] == "ada@example.com" and "1 Main St" in note.data["shipping_address"]
    assert d.state.status is state.status


def test_a_partial_refund_is_alerted_and_the_order_goes_on_until_the_refunds_reach_the_total() -> None:
    """Shopify sends refunds/create for every refund (a line, the shipping, a goodwill
    amount): a 5.00 refund of a 39.98 order cancels nothing. Refunds adding up to the
    total refund the order; a replay of a refund counts once."""
    from models.webhook_routing import route

    routed = route("SHOPIFY", "refunds/create", "demo.myshopify.com",
                   {"id": 77, "order_id": 1, "transactions": [{"kind": "refund", "amount": "5.00"}]},
                   at(9), lambda shop, variant: None)
    (routed_refund,) = routed.events
    assert routed_refund.type is OrderEventType.REFUND_REQUESTED and str(routed_refund.amount) == "5.00"
    state, _ = run([created(), paid(), placed(A), placed(B)])
    assert state.total == Decimal("39.98")

    first = event(OrderEventType.REFUND_REQUESTED, "shopify-refund-77", 9, reason="shipping", amount="5.00")
    d = decide(state, first, CONFIG)
    assert d.state.status is state.status and d.commands == []
    assert all(g.status is GroupStatus.PLACED for g in d.state.groups)
    assert d.state.refunded == Decimal("5.00")
    (alert,) = d.alerts
    assert alert.type is AlertType.PAYMENT_ISSUE and "5.00 USD refunded (shipping)" in alert.message
    assert "5.00 of 39.98 USD" in alert.message
    assert decide(d.state, first, CONFIG).duplicate  # the same refund again: counted once

    rest = event(OrderEventType.REFUND_REQUESTED, "shopify-refund-78", 10, reason="the rest", amount="34.98")
    full = decide(d.state, rest, CONFIG)
    assert full.state.status is OrderStatus.REFUNDED and full.state.refunded == Decimal("39.98")
    assert sorted(c.type.value for c in full.commands) == ["CANCEL_SUPPLIER_ORDER", "CANCEL_SUPPLIER_ORDER"]
    # No amount (an operator's refund, the store's "refunded" status): the whole order, as before.
    assert decide(state, refund(), CONFIG).state.status is OrderStatus.REFUNDED


def test_an_order_the_store_had_fulfilled_when_first_heard_of_is_not_placed_at_the_supplier() -> None:
    """orders/updated (or a reconciliation's pull) of an order the engine never saw and the
    store already fulfilled: placing it would send a second parcel. It waits for a person
    (RETRY places it); the store's tracking ships its group."""
    from models.webhook_routing import CatalogueVariant, route

    variant = CatalogueVariant(shop_domain="demo.myshopify.com", shopify_variant_id="4001", store_id="store-1",
                               product_id="p-1", provider="CJ_DROPSHIPPING", source_id="CJ-1")
    body = {
        "id": 5001, "name": "#1001", "email": "ada@example.com", "financial_status": "paid",
        "fulfillment_status": "fulfilled", "currency": "USD", "total_price": "10.00", "subtotal_price": "10.00",
        "shipping_address": {"name": "Ada", "address1": "1 Main St", "city": "Austin", "country_code": "US"},
        "line_items": [{"id": 1, "variant_id": 4001, "quantity": 1, "price": "10.00", "title": "Mug"}],
    }
    lookup = lambda shop, v: variant if v == "4001" else None  # noqa: E731
    routed = route("SHOPIFY", "orders/updated", "demo.myshopify.com", body, at(0), lookup)
    assert routed.events[0].fulfilled_in_store is True
    state, commands, alerts = None, [], []
    for e in routed.events:
        d = decide(state, e, CONFIG)
        state, commands, alerts = d.state, commands + d.commands, alerts + d.alerts
    assert state is not None and commands == []
    assert state.status is OrderStatus.INTERVENTION_REQUIRED and "the store had fulfilled" in (state.reason or "")
    assert [a.type for a in alerts] == [AlertType.ORDER_ISSUE]

    # The store's fulfillment webhook brings its tracking: the group is shipped, nothing placed.
    shipped = decide(state, event(OrderEventType.TRACKING_RECEIVED, "store-track", 5, order=state.order_id,
                                  group_id="CJ_DROPSHIPPING", tracking_number="1Z999AA10123456784",
                                  source="STORE"), CONFIG)
    assert shipped.commands == [] and shipped.state.status is OrderStatus.SHIPPED
    # Or a person decides it must be placed after all.
    placed_now = decide(state, event(OrderEventType.RETRY, "retry", 5, order=state.order_id), CONFIG)
    assert [c.type.value for c in placed_now.commands] == ["PLACE_SUPPLIER_ORDER"]

    unfulfilled = route("SHOPIFY", "orders/create", "demo.myshopify.com", {**body, "fulfillment_status": None},
                        at(0), lookup)
    assert unfulfilled.events[0].fulfilled_in_store is False


def test_each_reissue_without_an_outcome_waits_twice_as_long_up_to_the_cap() -> None:
    """An executor down for a day must not make every order re-issue its command every two
    minutes (each adds a history line and a seen id): the waits double up to an hour."""
    state, _ = run([created(providers=(A,)), paid(1)])
    waits, t = [], 1.0
    for n in range(8):
        due = state.group(A).outcome_due_at
        waits.append((due - at(t)).total_seconds())
        t = (due - at(0)).total_seconds()
        d = decide(state, timer(TimerKind.OUTCOME_OVERDUE, A, due, t).model_copy(update={"event_id": f"t{n}"}), CONFIG)
        assert [c.type.value for c in d.commands] == ["PLACE_SUPPLIER_ORDER"]
        state = d.state
    assert waits == [120, 240, 480, 960, 1920, 3600, 3600, 3600]
    assert state.group(A).attempt == 1 and state.group(A).reissues == 8
    # An outcome ends it; the next attempt starts from the short wait again.
    failed_once = decide(state, event(OrderEventType.SUPPLIER_ORDER_FAILED, "f1", t + 1, group_id=A, error="5xx",
                                      retryable=True, attempt=1), CONFIG).state
    again = decide(failed_once, timer(TimerKind.RETRY_DUE, A, failed_once.group(A).next_retry_at, t + 100), CONFIG)
    group = again.state.group(A)
    assert group.attempt == 2 and group.reissues == 0
    assert group.outcome_due_at == at(t + 100 + CONFIG.outcome_timeout_s)


def test_an_order_that_never_arrives_is_given_up_its_events_refused_and_its_record_archivable() -> None:
    """After the PAYMENT_ISSUE alert, a second ORDER_MISSING at order_abandon_s refuses the
    parked events (each to deadletter with its value) and leaves a record that waits on
    nothing: the archive sweep takes it (before, it stayed in the table for good)."""
    from models.archive import archived_detail, order_archivable, order_marker

    config = MachineConfig(order_missing_s=86400, order_abandon_s=30 * 86400)
    payment = paid(0)
    state = decide(None, payment, config).state
    (first,) = deadlines(state, config)
    alerted = decide(state, timer(TimerKind.ORDER_MISSING, None, first.due_at, 86400), config).state
    (second,) = deadlines(alerted, config)
    assert second.kind is TimerKind.ORDER_MISSING and second.due_at == state.first_seen_at + timedelta(days=30)

    # The first timer again (a replay) changes nothing.
    again = decide(alerted, timer(TimerKind.ORDER_MISSING, None, first.due_at, 86400 + 60), config)
    assert not again.refused_events and not again.state.abandoned

    given_up = decide(alerted, timer(TimerKind.ORDER_MISSING, None, second.due_at, 30 * 86400), config)
    assert [(e.event_id, "never arrived in 30 days" in why) for e, why in given_up.refused_events] == [
        (payment.event_id, True)]
    assert given_up.state.abandoned and given_up.state.parked == () and deadlines(given_up.state, config) == []
    assert not given_up.alerts  # the PAYMENT_ISSUE alert was raised a month ago

    body = {"status": None, "since": None, "due": None,
            "state": orjson.loads(given_up.state.model_dump_json(by_alias=True))}
    later = given_up.state.first_seen_at + timedelta(days=91)
    assert not order_archivable({**body, "since": given_up.state.first_seen_at.timestamp()},
                                given_up.state.first_seen_at - timedelta(days=1))
    assert order_archivable({**body, "since": given_up.state.first_seen_at.timestamp()}, later - timedelta(days=90))
    marker = order_marker({**body, "since": given_up.state.first_seen_at.timestamp()}, later)
    assert marker["archived"] is True and marker["status"] is None
    assert "never arrived" in archived_detail("order", given_up.state.order_id, marker)
    # Not given up yet (only alerted): the record stays.
    alerted_body = {**body, "state": orjson.loads(alerted.model_dump_json(by_alias=True)),
                    "since": alerted.first_seen_at.timestamp()}
    assert not order_archivable(alerted_body, later - timedelta(days=90))
