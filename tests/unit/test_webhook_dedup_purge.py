"""The webhook router forgets delivery ids after OPS_WEBHOOK_DEDUP_DAYS.

The sweep removes an entry (a tombstone in the changelog) only when it is
older than the keep period, on a partition this worker owns, and its outputs
are known delivered: an entry's outbox is what a recovery sends again.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from agents.webhooks import WebhookRouter
from connectors import metrics
from streams import topics
from streams.settings import Settings
from tests.unit.test_archive import Assignor
from tests.unit.test_inventory_resend import FakeTable, ValueOutputs
from tests.unit.test_outbox_table import FakeApp

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
CHANGELOG = "webhook-dedup-changelog"


def router() -> tuple[WebhookRouter, ValueOutputs, FakeApp]:
    outputs = ValueOutputs()
    engine: Any = SimpleNamespace(
        app=SimpleNamespace(assignor=Assignor()),
        tables=SimpleNamespace(
            webhook_dedup=FakeTable("webhook-dedup"), catalogue=FakeTable("catalogue"),
            shop_orders=FakeTable("shop-orders"), source_index=FakeTable("source-index"),
        ),
        outputs=outputs,
        settings=Settings(partitions=8, webhook_dedup_days=7),
    )
    r = WebhookRouter(engine)
    r.app.assignor.actives = {TP(topic=topics.WEBHOOKS_INBOUND, partition=p) for p in (0, 1)}
    fake = FakeApp()
    r.dedup.attach(fake)  # type: ignore[arg-type]
    fake.assign({TP(topic=topics.WEBHOOKS_INBOUND, partition=p) for p in (0, 1, 2)})
    return r, outputs, fake


def remember(r: WebhookRouter, key: str, partition: int, offset: int, age: timedelta, outputs: bool) -> None:
    message = SimpleNamespace(
        topic=topics.WEBHOOKS_INBOUND, partition=partition, offset=offset,
        tp=TP(topic=topics.WEBHOOKS_INBOUND, partition=partition),
    )
    entry = {"at": (NOW - age).isoformat(), "p": partition}
    r.dedup.write(message, key, entry, [(topics.ORDERS_EVENTS, b"o-1", b"{}")] if outputs else [])


def test_old_delivered_entries_of_owned_partitions_are_forgotten_the_rest_stay() -> None:
    r, outputs, fake = router()
    remember(r, "old", 0, 1, timedelta(days=8), outputs=True)
    remember(r, "old-no-outputs", 1, 1, timedelta(days=9), outputs=False)
    remember(r, "recent", 0, 2, timedelta(days=6), outputs=False)
    remember(r, "other-worker", 2, 1, timedelta(days=30), outputs=False)  # partition 2: not an active of ours
    remember(r, "undelivered", 0, 3, timedelta(days=8), outputs=True)
    # Offsets 1 and 2 of partition 0 and 1 of partition 1 are committed: their outputs are delivered.
    fake.commit({TP(topic=topics.WEBHOOKS_INBOUND, partition=0): 3, TP(topic=topics.WEBHOOKS_INBOUND, partition=1): 2})
    before = metrics.WEBHOOK_DEDUP_PURGED._value.get()
    written = len(outputs.values)

    assert r.purge(list(r.dedup.table.data), NOW) == 2

    assert sorted(r.dedup.table.data) == ["other-worker", "recent", "undelivered"]
    tombstones = [(t, k) for t, k, v in outputs.values[written:] if v is None]
    assert sorted(tombstones) == [(CHANGELOG, "old"), (CHANGELOG, "old-no-outputs")]
    assert metrics.WEBHOOK_DEDUP_PURGED._value.get() == before + 2

    # Once its outputs are delivered, the last one goes too; keys gone meanwhile are skipped.
    fake.commit({TP(topic=topics.WEBHOOKS_INBOUND, partition=0): 4})
    assert r.purge(["undelivered", "old", "never-there"], NOW) == 1
    assert sorted(r.dedup.table.data) == ["other-worker", "recent"]
