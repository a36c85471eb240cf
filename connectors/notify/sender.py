"""Delivering a notification by e-mail at most once, keyed by its id.

At most once by construction: before anything is sent, one statement claims
the notification's id in ``notifications_sent``::

    INSERT ... status 'SENDING' ON CONFLICT (notification_id) DO NOTHING RETURNING

Only the caller that got the row back sends; any other (a replay, a second
consumer after a rebalance, a restart) finds the row and sends nothing. After
the send the row says SENT, or FAILED with the error when the server refused
the message for good (5xx). A row still SENDING is an unknown outcome (a crash
or a connection lost mid-send): it is logged and counted, never sent again.

The one case where a claim is given back (the row deleted) is a send that
certainly did not reach the server (no connection, a 4xx before the message
was accepted): ``TransientDeliveryError`` tells the caller to try again later,
and the next try claims afresh. When the database cannot be reached to give
it back either (the network down for both), the sender remembers the claim
and gives it back before its next delivery (or the next round of digests):
a notification certainly not sent is not left SENDING for good. Only a
restart in between loses it (left SENDING: never sent, as after a crash).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson
from prometheus_client import Counter

from connectors.notify.settings import NotifySettings
from connectors.notify.smtp import (
    SendProgress,
    SmtpClient,
    SmtpPermanentError,
    SmtpRecipientsDeferred,
    SmtpTransientError,
    SmtpUnknownOutcome,
    build_message,
    valid_email,
)
from models.archive import complete_data_request
from models.fulfillment import REDACTED
from models.notifications import CUSTOMER_KINDS, render_notification
from models.orders import Audience, Notification

log = logging.getLogger(__name__)

SENT = "SENT"
ALREADY = "ALREADY"
SKIPPED_UNKNOWN = "SKIPPED_UNKNOWN"
FAILED = "FAILED"

DELIVERIES = Counter(
    "ops_notifications_total",
    "Notifications handled by the notifier, by kind and result (SENT, ALREADY, SKIPPED_UNKNOWN, FAILED)",
    ["kind", "result"],
)
TRANSIENT = Counter(
    "ops_notification_transient_failures_total",
    "Sends that certainly did not reach the SMTP server and are tried again",
)

Render = Callable[[], Awaitable[tuple[str, str]]]

_REDACT = """
UPDATE notifications_sent SET recipient = $2, error = CASE WHEN error IS NULL THEN NULL ELSE $2 END
WHERE order_id = $1 AND kind = ANY($3::text[]) AND recipient <> $2
"""
_CLAIM = """
INSERT INTO notifications_sent (notification_id, kind, store_id, recipient, order_id, status)
VALUES ($1, $2, $3, $4, $5, 'SENDING')
ON CONFLICT (notification_id) DO NOTHING
RETURNING notification_id
"""
_FAIL_UNSENT = """
INSERT INTO notifications_sent (notification_id, kind, store_id, recipient, order_id, status, error)
VALUES ($1, $2, $3, $4, $5, 'FAILED', $6)
ON CONFLICT (notification_id) DO NOTHING
RETURNING notification_id
"""
_MARK = """
UPDATE notifications_sent SET status = $2, error = $3, sent_at = CASE WHEN $2 = 'SENT' THEN now() END
WHERE notification_id = $1 AND status = 'SENDING'
"""
_RELEASE = "DELETE FROM notifications_sent WHERE notification_id = $1 AND status = 'SENDING'"
_STATUS = "SELECT status FROM notifications_sent WHERE notification_id = $1"
#: Serialises a claim with the digest's late alerts (connectors/notify/digest.py).
LOCK_EXCLUSIVE = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
LOCK_SHARED = "SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))"


#: Failures before the message was handed over that may pass: the claim is given back.
_MAY_PASS = (SmtpTransientError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.CancelledError)


class TransientDeliveryError(Exception):
    """Not sent, and nothing claimed: try the notification again later.

    ``recipients_deferred``: the server works but deferred every recipient of
    this notification (``SmtpRecipientsDeferred``), so other notifications may pass."""

    def __init__(self, reason: str, recipients_deferred: bool = False) -> None:
        super().__init__(reason)
        self.recipients_deferred = recipients_deferred


class NotificationSender:
    """Delivers notifications through ``smtp`` (an ``SmtpClient`` by default), recorded in ``pool``."""

    def __init__(self, pool: Any, settings: NotifySettings, smtp: SmtpClient | None = None) -> None:
        self.pool = pool
        self.settings = settings
        self.smtp = smtp if smtp is not None else SmtpClient(settings)
        #: Claims of sends that certainly did not happen, not given back yet (the database was unreachable).
        self._unreleased: set[str] = set()

    async def release_pending(self) -> None:
        """Give back the claims that could not be given back when their send failed.

        Raises (the database's error) while the database is still unreachable."""
        for nid in sorted(self._unreleased):
            await self.pool.execute(_RELEASE, nid)
            self._unreleased.discard(nid)
            log.info("notification %s: claim given back; it will be sent", nid)

    async def redact_order(self, order_id: str) -> int:
        """Remove the customer's address from the records of an order's notifications
        (the owner's own addresses stay): a redaction. Idempotent; returns the rows changed."""
        done = await self.pool.execute(_REDACT, order_id, REDACTED, list(CUSTOMER_KINDS))
        return int(done.split()[-1])

    async def complete_from_record(self, notification: Notification) -> Notification:
        """An archived order's data request notice with the customer's data of the
        order's ``orders`` row (the recorder's), or saying that there is none."""
        raw = await self.pool.fetchval("SELECT state FROM orders WHERE order_id = $1", notification.order_id)
        state = orjson.loads(raw) if isinstance(raw, (str, bytes)) else raw
        return complete_data_request(notification, state if isinstance(state, dict) else None)

    async def deliver(self, notification: Notification) -> str:
        """Send ``notification`` unless its id was claimed before.

        Returns SENT, ALREADY (claimed before and finished), SKIPPED_UNKNOWN
        (claimed before and still SENDING, or lost mid-send now: never resent)
        or FAILED (no usable recipient, or refused by the server for good).
        Raises ``TransientDeliveryError`` when nothing was sent and the claim
        was given back.
        """
        return await self.deliver_with(notification)

    async def deliver_with(
        self, notification: Notification, render: Render | None = None, *, lock: bool = False
    ) -> str:
        """``deliver``, with the text made by ``render`` after the claim (the template's otherwise).

        ``lock``: take the exclusive advisory lock of the id in the claim's
        transaction (digests: see ``connectors/notify/digest.py``).
        """
        result = await self._deliver(notification, render, lock)
        DELIVERIES.labels(notification.kind.value, result).inc()
        return result

    # -- recipients ------------------------------------------------------------------------
    async def recipients(self, notification: Notification) -> tuple[list[str], str | None]:
        """(addresses, None), or ([], why there is none)."""
        if notification.audience is Audience.CUSTOMER:
            address = (notification.recipient or "").strip()
            if not address:
                return [], "no recipient"
            if not valid_email(address):
                return [], "invalid recipient"
            return [address], None
        emails = await self.pool.fetchval(
            "SELECT emails FROM store_contacts WHERE store_id = $1", notification.store_id
        )
        found = [e for e in (emails or []) if valid_email(e)]
        if found:
            return found, None
        if self.settings.admin_email:
            return [self.settings.admin_email], None
        return [], "no admin recipient"

    # -- the at-most-once path -------------------------------------------------------------
    async def _deliver(self, notification: Notification, render: Render | None, lock: bool) -> str:
        nid = notification.notification_id
        kind = notification.kind.value
        if self._unreleased:
            await self.release_pending()
        recipients, problem = await self.recipients(notification)
        if problem is not None:
            row = await self.pool.fetchrow(
                _FAIL_UNSENT, nid, kind, notification.store_id, "", notification.order_id, problem
            )
            if row is not None:
                log.warning("notification %s (%s) not sent: %s", nid, kind, problem)
                return FAILED
            return await self._claimed_before(nid)

        subject = body = ""
        if render is None:
            subject, body = render_notification(notification)  # pure: before the claim
        if not await self._claim(notification, recipients, lock):
            return await self._claimed_before(nid)

        # Claimed: from here on this call alone may send it.
        progress = SendProgress()
        try:
            if render is not None:
                subject, body = await render()
            message = build_message(
                notification_id=nid,
                sender=self.settings.smtp_from,
                recipients=recipients,
                subject=subject,
                body=body,
            )
            result = await self.smtp.send(message, recipients, progress)
        except SmtpPermanentError as exc:
            await self._mark(nid, FAILED, str(exc))
            log.warning("notification %s (%s) refused by the SMTP server: %s", nid, kind, exc)
            return FAILED
        except SmtpUnknownOutcome as exc:
            log.error("notification %s (%s): outcome unknown, left SENDING and never resent: %s", nid, kind, exc)
            return SKIPPED_UNKNOWN
        except (Exception, asyncio.CancelledError) as exc:
            # SmtpTransientError is "certainly not sent" whatever the phase (a 4xx
            # answer to the message itself included); anything else after DATA
            # began may have reached the server.
            if progress.data_started and not isinstance(exc, SmtpTransientError):
                log.error("notification %s (%s): outcome unknown, left SENDING and never resent: %r", nid, kind, exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return SKIPPED_UNKNOWN
            if not isinstance(exc, _MAY_PASS):
                # Certainly not sent, and trying again cannot help (a bug): FAILED.
                log.exception("notification %s (%s) could not be sent", nid, kind)
                await self._mark(nid, FAILED, repr(exc)[:2000])
                return FAILED
            # Certainly not sent: give the claim back so a later try may send it.
            await asyncio.shield(self._release(nid))
            if isinstance(exc, asyncio.CancelledError):
                raise
            TRANSIENT.inc()
            log.warning("notification %s (%s) not sent, will be tried again: %s", nid, kind, exc)
            reason = str(exc) if isinstance(exc, SmtpTransientError) else repr(exc)
            raise TransientDeliveryError(reason, isinstance(exc, SmtpRecipientsDeferred)) from exc

        refused = "; ".join(f"{r}: {why}" for r, why in result.refused.items()) or None
        await self._mark(nid, SENT, f"refused: {refused}" if refused else None)
        return SENT

    async def _claim(self, notification: Notification, recipients: list[str], lock: bool) -> bool:
        args = (
            notification.notification_id, notification.kind.value, notification.store_id, ", ".join(recipients),
            notification.order_id,
        )
        if not lock:
            return await self.pool.fetchrow(_CLAIM, *args) is not None
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(LOCK_EXCLUSIVE, notification.notification_id)
            return await conn.fetchrow(_CLAIM, *args) is not None

    async def _claimed_before(self, nid: str) -> str:
        status = await self.pool.fetchval(_STATUS, nid)
        if status == "SENDING":
            # A crash (or a concurrent delivery) between claim and mark: never resend.
            log.warning("notification %s is claimed and still SENDING: unknown outcome, not resent", nid)
            return SKIPPED_UNKNOWN
        return ALREADY

    async def _mark(self, nid: str, status: str, error: str | None) -> None:
        try:
            await self.pool.execute(_MARK, nid, status, error)
        except Exception:
            # The row stays SENDING: an unknown outcome, never resent, which is right.
            log.exception("notification %s: could not record %s", nid, status)

    async def _release(self, nid: str) -> None:
        try:
            await self.pool.execute(_RELEASE, nid)
        except Exception as exc:
            self._unreleased.add(nid)
            log.warning("notification %s: could not give the claim back yet (%s); given back before the next try",
                        nid, type(exc).__name__)
