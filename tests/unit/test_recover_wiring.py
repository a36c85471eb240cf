"""Every table whose records carry outboxes sends them again when Faust recovers it:
a worker that crashed between a transition and its commit must not lose the outputs
its records still carry (streams/outbox.py, agents/inventory.py)."""

from __future__ import annotations

import asyncio

from streams.bootstrap import bootstrap
from streams.settings import Settings


def test_each_outbox_table_has_a_recovery_callback_that_resends_its_own_outboxes() -> None:
    asyncio.set_event_loop(asyncio.new_event_loop())
    engine = bootstrap(Settings(app_id="wiring-test"))
    tables = engine.tables
    outboxed = [tables.products, tables.webhook_dedup, tables.catalogue, tables.shop_orders, tables.source_index,
                tables.orders, tables.video_jobs]
    missing = [t.name for t in outboxed if not t._recover_callbacks]
    assert missing == [], f"tables whose recovered outboxes nobody sends again: {missing}"
