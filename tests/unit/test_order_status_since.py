"""agents/orders.py status_since: when an order entered its current status (ops_order_status_age_seconds)."""

from __future__ import annotations

from agents.orders import record_body, status_since
from models.fulfillment import MachineConfig, OrderState, OrderStatus, decide
from models.orders import OrderEvent
from tests.unit.order_events import at, created, paid, placed


def fold(events: list[OrderEvent]) -> OrderState:
    state = None
    for e in events:
        state = decide(state, e, MachineConfig()).state
    assert state is not None
    return state


def test_since_the_last_transition_into_the_status() -> None:
    pending = fold([created(seconds=0)])
    assert pending.status is OrderStatus.PENDING
    assert status_since(pending) == at(0)
    processing = fold([created(seconds=0, providers=("ALIEXPRESS",)), paid(seconds=10)])
    assert processing.status is OrderStatus.PROCESSING
    assert status_since(processing) == at(10)


def test_an_event_that_keeps_the_status_keeps_the_time() -> None:
    two = ("ALIEXPRESS", "CJ_DROPSHIPPING")
    state = fold([created(seconds=0, providers=two), paid(seconds=10)])
    group = state.groups[0].group_id
    later = fold([created(seconds=0, providers=two), paid(seconds=10), placed(group, seconds=500)])
    assert later.updated_at == at(500)
    assert later.status is OrderStatus.PROCESSING  # one group of two placed: still processing
    assert status_since(later) == at(10)


def test_the_table_value_carries_it_in_epoch_seconds() -> None:
    state = fold([created(seconds=0)])
    body = record_body(state, None)
    assert body["status"] == "PENDING"
    assert body["since"] == at(0).timestamp()
