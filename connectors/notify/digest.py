"""Digests of the ``alerts`` topic: one e-mail per store per window, not one per product.

``record_alert`` keeps each alert record in ``alert_digest_items`` under the
window of its ``updated_at``; ``send_due_digests`` sends, for every (store,
window) whose window has closed and that has no ``notifications_sent`` row,
one digest through the sender's at-most-once path (its id is
``digest_id(store, window)``, so two runs, or two notifiers, send it once).

A record that arrives after its window's digest was claimed (a lagging
consumer) goes to the next window still open, not into a digest already
sent. Claim and late record are serialised by an advisory lock on the
digest's id: the claim holds it exclusively, ``record_alert`` shared, so a
record either commits before the claim (and the digest, which reads its items
after the claim, tells it) or sees the claim and moves on.

Acknowledged and dismissed records are not digested: they are the admin's own
doing. Records older than ``max_age_s`` are not digested either, so a first
start on a topic with a month of history does not mail that history.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from connectors.notify.sender import LOCK_SHARED, SENT, NotificationSender, TransientDeliveryError
from connectors.notify.smtp import valid_email
from models.events import Alert, AlertStatus, NotificationChannel, StoreSettings, utcnow
from models.notifications import digest_id, digest_window, render_digest
from models.orders import Audience, Notification, NotificationKind

log = logging.getLogger(__name__)

DIGESTED_STATUSES = frozenset({AlertStatus.ACTIVE, AlertStatus.RESOLVED})
DEFAULT_MAX_AGE_S = 86400
#: Digests a round goes past when the server defers their recipients, before it stops.
DEFERRED_PER_ROUND = 5

_INSERT_ITEM = """
INSERT INTO alert_digest_items (alert_id, updated_at, store_id, window_start, body)
VALUES ($1, $2, $3, $4, $5::text::jsonb)
ON CONFLICT (alert_id, updated_at) DO NOTHING
"""
# digest_id() in SQL: 'digest:' || store || ':' || epoch seconds of the window.
_DUE = """
SELECT DISTINCT i.store_id, i.window_start
FROM alert_digest_items i
WHERE i.window_start >= $1 AND i.window_start <= $2
  AND NOT EXISTS (
    SELECT 1 FROM notifications_sent n
    WHERE n.notification_id = 'digest:' || i.store_id || ':' || floor(extract(epoch FROM i.window_start))::bigint::text
  )
ORDER BY i.window_start, i.store_id
LIMIT $3
"""
_ITEMS = """
SELECT body::text AS body FROM alert_digest_items
WHERE store_id = $1 AND window_start = $2
ORDER BY updated_at, alert_id
"""
_UPSERT_CONTACTS = """
INSERT INTO store_contacts (store_id, emails, updated_at) VALUES ($1, $2::text[], $3)
ON CONFLICT (store_id) DO UPDATE SET emails = EXCLUDED.emails, updated_at = EXCLUDED.updated_at
WHERE store_contacts.updated_at < EXCLUDED.updated_at
"""


async def record_alert(
    pool: Any,
    alert: Alert,
    window_s: int,
    *,
    now: datetime | None = None,
    max_age_s: int = DEFAULT_MAX_AGE_S,
) -> bool:
    """Keep ``alert`` for the digest of its store; True if it was new (False: a replay, or not digested)."""
    now = now or utcnow()
    if alert.status not in DIGESTED_STATUSES or alert.updated_at < now - timedelta(seconds=max_age_s):
        return False
    width = timedelta(seconds=window_s)
    window = digest_window(alert.updated_at, window_s)
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(
            "SELECT 1 FROM alert_digest_items WHERE alert_id = $1 AND updated_at = $2", alert.alert_id, alert.updated_at
        ):
            return False  # a replay: kept already
        while True:
            did = digest_id(alert.store_id, window)
            await conn.execute(LOCK_SHARED, did)
            if not await conn.fetchval("SELECT 1 FROM notifications_sent WHERE notification_id = $1", did):
                break
            # That window's digest is claimed (sent or being sent): the next open one.
            window = max(window + width, digest_window(now, window_s))
        status = await conn.execute(
            _INSERT_ITEM, alert.alert_id, alert.updated_at, alert.store_id, window, alert.model_dump_json()
        )
    return status.endswith(" 1")


async def record_store_settings(pool: Any, settings: StoreSettings) -> bool:
    """Keep the store's EMAIL notification targets; True if applied (False: older than what is kept)."""
    emails: list[str] = []
    for target in settings.notification_targets:
        address = target.address.strip()
        if target.channel is NotificationChannel.EMAIL and address not in emails:
            if valid_email(address):
                emails.append(address)
            else:
                log.warning("store %s: e-mail target %r is not a usable address; ignored", settings.store_id, address)
    status = await pool.execute(_UPSERT_CONTACTS, settings.store_id, emails, settings.updated_at)
    return status.endswith(" 1")


async def send_due_digests(
    pool: Any,
    sender: NotificationSender,
    now: datetime,
    window_s: int,
    *,
    max_age_s: int = DEFAULT_MAX_AGE_S,
    limit: int = 1000,
) -> int:
    """Send the digest of every (store, window) closed by ``now`` and not sent yet; return how many were SENT.

    A digest that could not reach the SMTP server is left for the next call
    (which this round stops at: the server is likely down for the rest too).
    One whose recipients the server deferred (a store owner's full mailbox) is
    left for the next call too, and the round goes on with the other stores,
    unless ``DEFERRED_PER_ROUND`` were deferred already (then the server likely
    defers everyone: a throttle).
    """
    width = timedelta(seconds=window_s)
    await sender.release_pending()  # a digest whose claim is still held is not due
    due = await pool.fetch(_DUE, now - timedelta(seconds=max_age_s) - width, now - width, limit)
    sent = deferred = 0
    for row in due:
        store_id: str = row["store_id"]
        window_start: datetime = row["window_start"]
        notification = Notification(
            notification_id=digest_id(store_id, window_start),
            kind=NotificationKind.ALERT_DIGEST,
            audience=Audience.ADMIN,
            store_id=store_id,
            data={"store_id": store_id},
            created_at=now,
        )

        async def render(store_id: str = store_id, window_start: datetime = window_start) -> tuple[str, str]:
            # Read after the claim: every record committed before it is told.
            rows = await pool.fetch(_ITEMS, store_id, window_start)
            alerts = [Alert.model_validate_json(r["body"]) for r in rows]
            return render_digest(store_id, window_start, alerts)

        try:
            result = await sender.deliver_with(notification, render, lock=True)
        except TransientDeliveryError as exc:
            log.warning("digest %s not sent, tried again later: %s", notification.notification_id, exc)
            deferred += exc.recipients_deferred
            if exc.recipients_deferred and deferred < DEFERRED_PER_ROUND:
                continue  # this store's recipients: the others may take mail
            break
        if result == SENT:
            sent += 1
    return sent
