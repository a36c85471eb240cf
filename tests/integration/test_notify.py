"""The notifier against real servers: aiosmtpd on loopback and PostgreSQL (``pg_dsn``).

Each notification is sent at most once (keyed by its id, claimed in
``notifications_sent`` before the send); alert digests go one per store and
window; a refused message is FAILED; a send that never reached the server is
tried again. The Kafka loop itself is not run here; its record handler is.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email import message_from_bytes
from email.message import Message
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from connectors.broker import free_port
from connectors.notify.consumer import DEFERRED_TRIES, RecordHandler, handle_until_done
from connectors.notify.digest import DEFERRED_PER_ROUND, record_alert, record_store_settings, send_due_digests
from connectors.notify.sender import NotificationSender, TransientDeliveryError
from connectors.notify.settings import NotifySettings
from connectors.notify.smtp import message_id
from connectors.postgres.pool import create_pool
from models.events import (
    Alert,
    AlertStatus,
    AlertType,
    NotificationChannel,
    NotificationTarget,
    Severity,
    StoreSettings,
)
from models.notifications import digest_id, digest_window
from models.orders import Audience, Notification, NotificationKind
from streams import topics
from streams.codecs import encode
from tests.fakes.tcp_proxy import TcpProxy

UTC = timezone.utc
WINDOW_S = 300
T = TypeVar("T")


# --------------------------------------------------------------------------- #
# A real SMTP server on loopback
# --------------------------------------------------------------------------- #


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: Message


@dataclass
class Inbox:
    """aiosmtpd handler: keeps what it accepts; refuses what the test says."""

    mails: list[Mail] = field(default_factory=list)
    refuse_rcpt: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    data_delay: float = 0.0
    data_calls: int = 0  # messages that reached the server, accepted or not
    rcpt_calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        self.rcpt_calls += 1
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_calls += 1
        if self.data_reply is not None:
            return self.data_reply
        if self.data_delay:
            await asyncio.sleep(self.data_delay)  # the client gives up first: it cannot know
        with self.lock:
            self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def smtp_auth() -> Iterator[tuple[Inbox, int]]:
    """An SMTP server that wants a login (ops / s3cret), here without TLS (loopback)."""

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"ops", b"s3cret")
        return AuthResult(success=ok)

    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, authenticator=authenticator, auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def notify_settings(port: int, **kw: Any) -> NotifySettings:
    values: dict[str, Any] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_from": "ops@shop.example",
        "smtp_timeout": 10.0,
        "admin_email": None,
        "digest_window_s": WINDOW_S,
        **kw,
    }
    return NotifySettings(**values)


def run(pg_dsn: str, body: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``body(pool)`` in a fresh event loop with a pool on the test's database."""

    async def main() -> T:
        pool = await create_pool(pg_dsn, max_size=8)
        try:
            return await body(pool)
        finally:
            await pool.close()

    return asyncio.run(main())


def shipped(nid: str = "n-1", **kw: Any) -> Notification:
    values: dict[str, Any] = {
        "notification_id": nid,
        "kind": NotificationKind.CUSTOMER_SHIPPED,
        "audience": Audience.CUSTOMER,
        "store_id": "s-1",
        "order_id": "o-1",
        "recipient": "ada@example.com",
        "data": {"order_number": "#1001", "tracking_number": "JD014600003SE", "carrier": "DHL"},
        **kw,
    }
    return Notification(**values)


def intervention(nid: str = "n-admin", store_id: str = "s-1") -> Notification:
    return Notification(
        notification_id=nid,
        kind=NotificationKind.ADMIN_INTERVENTION,
        audience=Audience.ADMIN,
        store_id=store_id,
        order_id="o-1",
        data={"order_number": "#1001", "reason": "address refused"},
    )


async def row(pool: Any, nid: str) -> Any:
    return await pool.fetchrow("SELECT * FROM notifications_sent WHERE notification_id = $1", nid)


# --------------------------------------------------------------------------- #
# At most once
# --------------------------------------------------------------------------- #


def test_a_notification_delivered_twice_is_sent_once(pg_dsn: str, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp

    async def body(pool: Any) -> None:
        sender = NotificationSender(pool, notify_settings(port))
        assert await sender.deliver(shipped()) == "SENT"
        assert await sender.deliver(shipped()) == "ALREADY"
        # A replay is the same record again: still nothing more.
        assert await NotificationSender(pool, notify_settings(port)).deliver(shipped()) == "ALREADY"
        sent = await row(pool, "n-1")
        assert sent["status"] == "SENT" and sent["sent_at"] is not None and sent["error"] is None
        assert sent["recipient"] == "ada@example.com" and sent["kind"] == "CUSTOMER_SHIPPED"

    run(pg_dsn, body)
    assert len(inbox.mails) == 1
    mail = inbox.mails[0]
    assert mail.mail_from == "ops@shop.example" and mail.rcpt_tos == ["ada@example.com"]
    assert mail.message["Subject"] == "Your order #1001 has shipped"
    assert mail.message["Message-ID"] == message_id("n-1", "shop.example")
    assert mail.message["To"] == "ada@example.com"
    assert "JD014600003SE" in mail.message.get_payload(decode=True).decode()


def test_concurrent_deliveries_of_one_notification_send_one_email(pg_dsn: str, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp

    async def body(pool: Any) -> list[str]:
        senders = [NotificationSender(pool, notify_settings(port)) for _ in range(6)]
        return list(await asyncio.gather(*(s.deliver(shipped("n-race")) for s in senders)))

    results = run(pg_dsn, body)
    assert results.count("SENT") == 1
    assert set(results) <= {"SENT", "ALREADY", "SKIPPED_UNKNOWN"}
    assert len(inbox.mails) == 1


def test_a_claimed_but_unsent_notification_is_never_resent(pg_dsn: str, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp

    async def body(pool: Any) -> None:
        # A crash between the claim and the send (or mid-send) left this row.
        await pool.execute(
            "INSERT INTO notifications_sent (notification_id, kind, store_id, recipient, status)"
            " VALUES ('n-crash', 'CUSTOMER_SHIPPED', 's-1', 'ada@example.com', 'SENDING')"
        )
        sender = NotificationSender(pool, notify_settings(port))
        assert await sender.deliver(shipped("n-crash")) == "SKIPPED_UNKNOWN"
        assert await sender.deliver(shipped("n-crash")) == "SKIPPED_UNKNOWN"
        assert (await row(pool, "n-crash"))["status"] == "SENDING"

    run(pg_dsn, body)
    assert inbox.mails == []


def test_a_send_that_never_reached_the_server_is_tried_again(pg_dsn: str, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    closed = free_port()  # nothing listens there

    async def body(pool: Any) -> None:
        down = NotificationSender(pool, notify_settings(closed))
        with pytest.raises(TransientDeliveryError):
            await down.deliver(shipped("n-later"))
        assert await row(pool, "n-later") is None  # the claim was given back
        inbox.data_reply = "451 4.3.0 try again later"  # a 4xx to the message: not accepted
        up = NotificationSender(pool, notify_settings(port))
        with pytest.raises(TransientDeliveryError):
            await up.deliver(shipped("n-later"))
        assert await row(pool, "n-later") is None
        inbox.data_reply = None
        assert await up.deliver(shipped("n-later")) == "SENT"
        assert await up.deliver(shipped("n-later")) == "ALREADY"

    run(pg_dsn, body)
    assert len(inbox.mails) == 1


@dataclass
class Network:
    """The sender's way to PostgreSQL and to the SMTP server, through proxies on loopback."""

    pg: TcpProxy
    smtp: TcpProxy
    smtp_port: int

    def fail_at_next_smtp_connect(self) -> None:
        """The network fails for both servers at once, as the sender connects to SMTP."""

        def cut() -> None:
            self.smtp.on_connect = None
            self.smtp.cut()
            self.pg.cut()

        self.smtp.on_connect = cut

    def restore(self) -> None:
        self.pg.restore()
        self.smtp.restore()


def run_with_network(pg_dsn: str, smtp_port: int, body: Callable[[Any, Network], Awaitable[T]]) -> T:
    """Run ``body(pool, network)``, the pool on the test's database through ``network.pg``."""

    async def main() -> T:
        parts = urlsplit(pg_dsn)
        pg = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
        smtp = TcpProxy("127.0.0.1", smtp_port)
        pg_port = await pg.start()
        network = Network(pg, smtp, await smtp.start())
        pool = await create_pool(
            urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{pg_port}")), min_size=1, max_size=2
        )
        try:
            return await body(pool, network)
        finally:
            network.restore()
            await pool.close()
            await pg.stop()
            await smtp.stop()

    return asyncio.run(main())


def test_a_claim_that_could_not_be_given_back_is_given_back_before_the_next_try(
    pg_dsn: str, smtp: tuple[Inbox, int]
) -> None:
    """The network fails for the SMTP server and PostgreSQL at once: the send certainly
    did not happen, but the claim cannot be given back then. Once the network is back,
    the notification is sent, not left SENDING (never sent) for good."""
    inbox, port = smtp

    async def body(pool: Any, network: Network) -> None:
        sender = NotificationSender(pool, notify_settings(network.smtp_port))
        network.fail_at_next_smtp_connect()
        with pytest.raises(TransientDeliveryError):
            await sender.deliver(shipped("n-outage"))
        network.restore()
        # The consumer tries the record again.
        assert await sender.deliver(shipped("n-outage")) == "SENT"
        assert await sender.deliver(shipped("n-outage")) == "ALREADY"

    run_with_network(pg_dsn, port, body)
    assert len(inbox.mails) == 1 and inbox.mails[0].rcpt_tos == ["ada@example.com"]


def test_a_digest_whose_claim_could_not_be_given_back_is_sent_later(pg_dsn: str, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    start = closed_window()

    async def body(pool: Any, network: Network) -> None:
        await record_alert(pool, make_alert(1, "s-O", start), WINDOW_S)
        sender = NotificationSender(pool, notify_settings(network.smtp_port, admin_email="platform@ops.example"))
        network.fail_at_next_smtp_connect()
        assert await send_due_digests(pool, sender, datetime.now(UTC), WINDOW_S) == 0
        network.restore()
        assert await send_due_digests(pool, sender, datetime.now(UTC), WINDOW_S) == 1
        assert (await row(pool, digest_id("s-O", start)))["status"] == "SENT"

    run_with_network(pg_dsn, port, body)
    assert len(inbox.mails) == 1


def test_a_send_lost_during_data_is_an_unknown_outcome_never_resent(pg_dsn: str, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp

    async def body(pool: Any) -> None:
        inbox.data_delay = 1.5
        sender = NotificationSender(pool, notify_settings(port, smtp_timeout=0.5))
        assert await sender.deliver(shipped("n-lost")) == "SKIPPED_UNKNOWN"
        assert (await row(pool, "n-lost"))["status"] == "SENDING"
        inbox.data_delay = 0.0
        assert await sender.deliver(shipped("n-lost")) == "SKIPPED_UNKNOWN"

    run(pg_dsn, body)
    # The message reached the server once (it may or may not have kept it); never a second time.
    assert inbox.data_calls == 1


# aiosmtpd warns of AUTH without TLS: deliberate here (loopback, a test server).
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_smtp_login(pg_dsn: str, smtp_auth: tuple[Inbox, int]) -> None:
    inbox, port = smtp_auth

    async def body(pool: Any) -> None:
        wrong = NotificationSender(pool, notify_settings(port, smtp_username="ops", smtp_password="nope"))
        with pytest.raises(TransientDeliveryError):  # a configuration problem: waits, nothing lost
            await wrong.deliver(shipped("n-auth"))
        assert await row(pool, "n-auth") is None
        right = NotificationSender(pool, notify_settings(port, smtp_username="ops", smtp_password="s3cret"))
        assert await right.deliver(shipped("n-auth")) == "SENT"

    run(pg_dsn, body)
    assert len(inbox.mails) == 1


def test_a_permanent_refusal_is_failed_and_not_retried(pg_dsn: str, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp

    async def body(pool: Any) -> None:
        sender = NotificationSender(pool, notify_settings(port))
        inbox.refuse_rcpt["gone@example.com"] = "550 5.1.1 mailbox unavailable"
        assert await sender.deliver(shipped("n-550", recipient="gone@example.com")) == "FAILED"
        failed = await row(pool, "n-550")
        assert failed["status"] == "FAILED" and "550" in failed["error"] and failed["sent_at"] is None
        del inbox.refuse_rcpt["gone@example.com"]
        assert await sender.deliver(shipped("n-550", recipient="gone@example.com")) == "ALREADY"

        inbox.data_reply = "554 5.6.0 message content rejected"
        assert await sender.deliver(shipped("n-554")) == "FAILED"
        failed = await row(pool, "n-554")
        assert failed["status"] == "FAILED" and "554" in failed["error"]
        inbox.data_reply = None
        assert await sender.deliver(shipped("n-554")) == "ALREADY"

    run(pg_dsn, body)
    assert inbox.mails == []


def test_a_customer_notification_without_a_usable_recipient_fails(pg_dsn: str, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp

    async def body(pool: Any) -> None:
        sender = NotificationSender(pool, notify_settings(port))
        assert await sender.deliver(shipped("n-none", recipient=None)) == "FAILED"
        assert (await row(pool, "n-none"))["error"] == "no recipient"
        assert await sender.deliver(shipped("n-bad", recipient="ada@example.com\r\nBcc: x@y")) == "FAILED"
        assert (await row(pool, "n-bad"))["error"] == "invalid recipient"
        assert await sender.deliver(shipped("n-none", recipient=None)) == "ALREADY"

    run(pg_dsn, body)
    assert inbox.mails == []


# --------------------------------------------------------------------------- #
# Admin recipients
# --------------------------------------------------------------------------- #


def store_settings(store_id: str, emails: list[str], at: datetime, webhook: bool = True) -> StoreSettings:
    targets = [NotificationTarget(channel=NotificationChannel.EMAIL, address=e) for e in emails]
    if webhook:
        targets.append(NotificationTarget(channel=NotificationChannel.WEBHOOK, address="https://hooks.example/x"))
    return StoreSettings(store_id=store_id, notification_targets=tuple(targets), updated_at=at)


def test_admin_recipients_come_from_the_store_settings(pg_dsn: str, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    t0 = datetime(2026, 5, 1, tzinfo=UTC)

    async def body(pool: Any) -> None:
        assert await record_store_settings(pool, store_settings("s-1", ["boss@shop.example", "ops@shop.example"], t0))
        # Older settings lose; the same ones again change nothing.
        older = store_settings("s-1", ["old@shop.example"], t0 - timedelta(days=1))
        assert not await record_store_settings(pool, older)
        assert not await record_store_settings(pool, store_settings("s-1", ["boss@shop.example"], t0))
        sender = NotificationSender(pool, notify_settings(port, admin_email="platform@ops.example"))
        assert await sender.deliver(intervention("n-a1", "s-1")) == "SENT"
        # A store with no e-mail target: the platform's admin address.
        assert await sender.deliver(intervention("n-a2", "s-2")) == "SENT"
        # Newer settings with no e-mail target: back to the platform's admin.
        assert await record_store_settings(pool, store_settings("s-1", [], t0 + timedelta(days=1)))
        assert await sender.deliver(intervention("n-a3", "s-1")) == "SENT"
        # No target and no OPS_ADMIN_EMAIL: FAILED, nothing sent.
        nobody = NotificationSender(pool, notify_settings(port))
        assert await nobody.deliver(intervention("n-a4", "s-3")) == "FAILED"
        assert (await row(pool, "n-a4"))["error"] == "no admin recipient"

    run(pg_dsn, body)
    assert [sorted(m.rcpt_tos) for m in inbox.mails] == [
        ["boss@shop.example", "ops@shop.example"],
        ["platform@ops.example"],
        ["platform@ops.example"],
    ]
    first = inbox.mails[0].message
    assert first["Subject"] == "[ops-engine] Order #1001 needs attention"
    assert "address refused" in first.get_payload(decode=True).decode()


# --------------------------------------------------------------------------- #
# Digests
# --------------------------------------------------------------------------- #


def make_alert(i: int, store: str, at: datetime, status: AlertStatus = AlertStatus.ACTIVE) -> Alert:
    return Alert(
        alert_id=f"{store}-a{i}",
        store_id=store,
        product_id=f"p-{i}",
        type=AlertType.STOCK_OUT if i % 2 else AlertType.PRICE_INCREASE,
        severity=Severity.HIGH,
        status=status,
        title=f"{store} product {i} changed",
        message="m",
        created_at=at,
        updated_at=at,
    )


def closed_window() -> datetime:
    """Start of a window that closed a little while ago (within the digests' max age)."""
    return digest_window(datetime.now(UTC), WINDOW_S) - timedelta(seconds=2 * WINDOW_S)


def test_one_digest_per_store_and_window_sent_once(pg_dsn: str, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    start = closed_window()

    async def body(pool: Any) -> None:
        settings = notify_settings(port, admin_email="platform@ops.example")
        for i in range(5):
            assert await record_alert(pool, make_alert(i, "s-A", start + timedelta(seconds=10 * i)), WINDOW_S)
        for i in range(2):
            assert await record_alert(pool, make_alert(i, "s-B", start + timedelta(seconds=30 + i)), WINDOW_S)
        # A replayed record is kept once.
        assert not await record_alert(pool, make_alert(0, "s-A", start), WINDOW_S)
        # Acknowledged/dismissed records are the admin's own doing: not digested.
        assert not await record_alert(pool, make_alert(9, "s-A", start, AlertStatus.DISMISSED), WINDOW_S)
        await record_store_settings(pool, store_settings("s-B", ["b-owner@shop.example"], start))

        senders = [NotificationSender(pool, settings) for _ in range(3)]
        # The window is still open at its last second: nothing due.
        assert await send_due_digests(pool, senders[0], start + timedelta(seconds=WINDOW_S - 1), WINDOW_S) == 0
        now = datetime.now(UTC)
        counts = await asyncio.gather(*(send_due_digests(pool, s, now, WINDOW_S) for s in senders))
        assert sum(counts) == 2
        assert await send_due_digests(pool, senders[0], now, WINDOW_S) == 0
        assert await send_due_digests(pool, senders[1], now + timedelta(hours=1), WINDOW_S) == 0
        for store in ("s-A", "s-B"):
            sent = await row(pool, digest_id(store, start))
            assert sent["status"] == "SENT" and sent["kind"] == "ALERT_DIGEST"

    run(pg_dsn, body)
    assert len(inbox.mails) == 2
    by_rcpt = {tuple(m.rcpt_tos): m.message for m in inbox.mails}
    a = by_rcpt[("platform@ops.example",)]
    b = by_rcpt[("b-owner@shop.example",)]
    assert a["Subject"].startswith("[ops-engine] 5 alerts for store s-A")
    assert b["Subject"].startswith("[ops-engine] 2 alerts for store s-B")
    text_a = a.get_payload(decode=True).decode()
    assert all(f"s-A product {i} changed" in text_a for i in range(5))
    assert "STOCK_OUT: 2" in text_a and "PRICE_INCREASE: 3" in text_a and "product 9" not in text_a
    assert a["Message-ID"] == message_id(digest_id("s-A", start), "shop.example")


def test_a_late_alert_goes_to_the_next_digest_not_a_sent_one(pg_dsn: str, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    start = closed_window()

    async def body(pool: Any) -> None:
        sender = NotificationSender(pool, notify_settings(port, admin_email="platform@ops.example"))
        await record_alert(pool, make_alert(1, "s-L", start + timedelta(seconds=5)), WINDOW_S)
        now = datetime.now(UTC)
        assert await send_due_digests(pool, sender, now, WINDOW_S) == 1
        # Arrives after its window's digest went out (a lagging consumer).
        assert await record_alert(pool, make_alert(2, "s-L", start + timedelta(seconds=6)), WINDOW_S, now=now)
        moved = await pool.fetchval("SELECT window_start FROM alert_digest_items WHERE alert_id = 's-L-a2'")
        assert moved == digest_window(now, WINDOW_S)
        assert await send_due_digests(pool, sender, now, WINDOW_S) == 0  # its new window is open
        assert await send_due_digests(pool, sender, moved + timedelta(seconds=WINDOW_S), WINDOW_S) == 1

    run(pg_dsn, body)
    assert len(inbox.mails) == 2
    first, second = (m.message.get_payload(decode=True).decode() for m in inbox.mails)
    assert "s-L product 1" in first and "s-L product 2" not in first
    assert "s-L product 2" in second and "s-L product 1" not in second


def test_old_alerts_are_not_digested(pg_dsn: str, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp

    async def body(pool: Any) -> None:
        old = datetime.now(UTC) - timedelta(days=3)
        assert not await record_alert(pool, make_alert(1, "s-O", old), WINDOW_S, max_age_s=86400)
        sender = NotificationSender(pool, notify_settings(port, admin_email="platform@ops.example"))
        assert await send_due_digests(pool, sender, datetime.now(UTC), WINDOW_S) == 0

    run(pg_dsn, body)
    assert inbox.mails == []


def test_a_digest_is_failed_when_no_admin_can_be_told(pg_dsn: str, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    start = closed_window()

    async def body(pool: Any) -> None:
        await record_alert(pool, make_alert(1, "s-N", start), WINDOW_S)
        sender = NotificationSender(pool, notify_settings(port))  # no OPS_ADMIN_EMAIL
        assert await send_due_digests(pool, sender, datetime.now(UTC), WINDOW_S) == 0
        failed = await row(pool, digest_id("s-N", start))
        assert failed["status"] == "FAILED" and failed["error"] == "no admin recipient"
        # Not looked at again.
        assert await send_due_digests(pool, sender, datetime.now(UTC), WINDOW_S) == 0

    run(pg_dsn, body)
    assert inbox.mails == []


def test_a_digest_whose_send_did_not_reach_the_server_is_sent_later(pg_dsn: str, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    start = closed_window()

    async def body(pool: Any) -> None:
        await record_alert(pool, make_alert(1, "s-T", start), WINDOW_S)
        down = NotificationSender(pool, notify_settings(free_port(), admin_email="platform@ops.example"))
        assert await send_due_digests(pool, down, datetime.now(UTC), WINDOW_S) == 0
        assert await row(pool, digest_id("s-T", start)) is None
        up = NotificationSender(pool, notify_settings(port, admin_email="platform@ops.example"))
        assert await send_due_digests(pool, up, datetime.now(UTC), WINDOW_S) == 1

    run(pg_dsn, body)
    assert len(inbox.mails) == 1


def test_a_store_whose_recipients_are_deferred_does_not_hold_up_the_other_stores_digests(
    pg_dsn: str, smtp: tuple[Inbox, int]
) -> None:
    """One store owner's mailbox is full (452 to RCPT) for days: the other stores'
    digests are still sent, and that store's once its mailbox takes mail again."""
    inbox, port = smtp
    start = closed_window()

    async def body(pool: Any) -> None:
        for store in ("s-A", "s-B", "s-C"):
            await record_alert(pool, make_alert(1, store, start), WINDOW_S)
        await record_store_settings(pool, store_settings("s-A", ["full@shop.example"], start))
        inbox.refuse_rcpt["full@shop.example"] = "452 4.2.2 Mailbox full"
        sender = NotificationSender(pool, notify_settings(port, admin_email="platform@ops.example"))
        assert await send_due_digests(pool, sender, datetime.now(UTC), WINDOW_S) == 2
        assert await row(pool, digest_id("s-A", start)) is None  # not claimed: tried again
        assert await send_due_digests(pool, sender, datetime.now(UTC), WINDOW_S) == 0
        del inbox.refuse_rcpt["full@shop.example"]
        assert await send_due_digests(pool, sender, datetime.now(UTC), WINDOW_S) == 1
        assert (await row(pool, digest_id("s-A", start)))["status"] == "SENT"

    run(pg_dsn, body)
    assert sorted(m.rcpt_tos[0] for m in inbox.mails) == [
        "full@shop.example", "platform@ops.example", "platform@ops.example"
    ]


def test_a_server_that_defers_every_recipient_stops_the_round(pg_dsn: str, smtp: tuple[Inbox, int]) -> None:
    """Every recipient deferred (a relay throttling, say): the round stops after a few,
    rather than knocking once for every due digest; they are all sent later."""
    inbox, port = smtp
    start = closed_window()
    stores = [f"s-{i:02d}" for i in range(DEFERRED_PER_ROUND + 5)]

    async def body(pool: Any) -> None:
        for store in stores:
            await record_alert(pool, make_alert(1, store, start), WINDOW_S)
        inbox.refuse_rcpt["platform@ops.example"] = "451 4.7.1 Too many messages, slow down"
        sender = NotificationSender(pool, notify_settings(port, admin_email="platform@ops.example"))
        assert await send_due_digests(pool, sender, datetime.now(UTC), WINDOW_S) == 0
        assert inbox.rcpt_calls == DEFERRED_PER_ROUND
        del inbox.refuse_rcpt["platform@ops.example"]
        assert await send_due_digests(pool, sender, datetime.now(UTC), WINDOW_S) == len(stores)

    run(pg_dsn, body)
    assert len(inbox.mails) == len(stores)


# --------------------------------------------------------------------------- #
# The consumer's record handler (no broker: records made by hand)
# --------------------------------------------------------------------------- #


@dataclass
class Record:
    topic: str
    value: bytes | None
    key: bytes | None = b"s-1"
    partition: int = 0
    offset: int = 0


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def send_and_wait(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append((topic, key, value))


def test_the_record_handler_routes_and_refuses(pg_dsn: str, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    start = closed_window()

    async def body(pool: Any) -> tuple[list[str], FakeProducer, int]:
        settings = notify_settings(port)
        producer = FakeProducer()
        handler = RecordHandler(pool, NotificationSender(pool, settings), settings, producer)
        results = [
            await handler.handle(Record(topics.NOTIFICATIONS, encode(shipped("n-k1")))),
            await handler.handle(Record(topics.NOTIFICATIONS, encode(shipped("n-k1")), offset=1)),
            await handler.handle(Record(topics.NOTIFICATIONS, b"{not json", offset=2)),
            await handler.handle(Record(topics.NOTIFICATIONS, b'{"kind": "NOPE"}', offset=3)),
            await handler.handle(Record(topics.ALERTS, encode(make_alert(1, "s-1", start)), offset=4)),
            await handler.handle(Record(topics.ALERTS, encode(make_alert(1, "s-1", start)), offset=5)),
            await handler.handle(
                Record(topics.STORE_SETTINGS, encode(store_settings("s-1", ["boss@shop.example"], start)), offset=6)
            ),
            await handler.handle(Record(topics.STORE_SETTINGS, None, offset=7)),
        ]
        return results, producer, handler.invalid

    results, producer, invalid = run(pg_dsn, body)
    assert results == ["SENT", "ALREADY", "INVALID", "INVALID", "RECORDED", "IGNORED", "APPLIED", "TOMBSTONE"]
    assert invalid == 2
    assert [t for t, _, _ in producer.sent] == [topics.DEADLETTER, topics.DEADLETTER]
    assert b'"INVALID_JSON"' in producer.sent[0][2] and b'"SCHEMA_VIOLATION"' in producer.sent[1][2]
    assert len(inbox.mails) == 1


def test_a_redaction_notice_removes_the_customer_address_from_the_records_first(
    pg_dsn: str, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp

    def redacted(nid: str, order_id: str) -> Notification:
        return Notification(
            notification_id=nid, kind=NotificationKind.ADMIN_REDACTED, audience=Audience.ADMIN, store_id="s-1",
            order_id=order_id, data={"order_number": "#1001", "order_id": order_id, "reason": "customers/redact"},
        )

    async def body(pool: Any) -> list[str]:
        settings = notify_settings(port, admin_email="platform@ops.example")
        handler = RecordHandler(pool, NotificationSender(pool, settings), settings, FakeProducer())
        results = [
            await handler.handle(Record(topics.NOTIFICATIONS, encode(shipped("n-r1")))),
            await handler.handle(Record(topics.NOTIFICATIONS, encode(shipped("n-r2", order_id="o-2")), offset=1)),
            await handler.handle(Record(topics.NOTIFICATIONS, encode(intervention("n-r3")), offset=2)),
        ]
        assert (await row(pool, "n-r1"))["recipient"] == "ada@example.com"
        results.append(await handler.handle(Record(topics.NOTIFICATIONS, encode(redacted("n-rx", "o-1")), offset=3)))
        # Delivered again (at least once): nothing more is sent, the records stay redacted.
        results.append(await handler.handle(Record(topics.NOTIFICATIONS, encode(redacted("n-rx", "o-1")), offset=4)))
        assert (await row(pool, "n-r1"))["recipient"] == "[redacted]"
        assert (await row(pool, "n-r1"))["order_id"] == "o-1"
        assert (await row(pool, "n-r2"))["recipient"] == "ada@example.com"  # another order
        assert (await row(pool, "n-r3"))["recipient"] == "platform@ops.example"  # the owner's address stays
        leftover = await pool.fetchval(
            "SELECT count(*) FROM notifications_sent WHERE order_id = 'o-1' AND recipient LIKE '%ada@%'")
        assert leftover == 0
        return results

    assert run(pg_dsn, body) == ["SENT", "SENT", "SENT", "SENT", "ALREADY"]
    notice = inbox.mails[-1].message
    assert notice["Subject"] == "[ops-engine] Personal data removed from order #1001"
    assert "customers/redact" in notice.get_payload(decode=True).decode()
    assert "ada@example.com" not in notice.as_string()


def test_a_data_request_for_an_archived_order_is_answered_from_its_postgresql_row(
    pg_dsn: str, smtp: tuple[Inbox, int]
) -> None:
    """Shopify's customers/data_request for an order archived long ago: the worker's marker holds no
    personal data, so the notifier fills the owner's notice in from the recorder's ``orders`` row.
    An order PostgreSQL never recorded gets a notice that says so."""
    import orjson

    from agents.orders import record_body
    from connectors.postgres.record import rows_of, write_rows
    from models.archive import data_request_archived_order, order_marker
    from models.fulfillment import MachineConfig, decide
    from models.orders import OrderEventType
    from streams import tables
    from streams.outbox import OutboxTable
    from tests.unit.order_events import ORDER, delivered_order, event

    inbox, port = smtp
    state = delivered_order()
    request = event(OrderEventType.DATA_REQUESTED, "shopify:dr-1", 99, request_id="dr-1")
    live = decide(state, request, MachineConfig()).notifications[0]  # what the live order would have sent
    body = orjson.loads(OutboxTable.encode(record_body(state, None), []))
    marker = order_marker(body, datetime(2027, 3, 1, tzinfo=UTC))
    notice = data_request_archived_order(ORDER, marker, request)
    assert notice.notification_id == live.notification_id and notice.data["record"] == "orders"
    assert "ada@example.com" not in notice.model_dump_json()  # the marker has none of it
    unknown = data_request_archived_order("o-never-recorded", {**marker, "order_id": "o-never-recorded"}, request)

    async def body_(pool: Any) -> list[str]:
        await write_rows(pool, rows_of(f"ops-{tables.ORDERS}-changelog", OutboxTable.encode(body, [])))
        settings = notify_settings(port, admin_email="owner@shop.example")
        handler = RecordHandler(pool, NotificationSender(pool, settings), settings, FakeProducer())
        return [
            await handler.handle(Record(topics.NOTIFICATIONS, encode(notice))),
            await handler.handle(Record(topics.NOTIFICATIONS, encode(notice), offset=1)),  # redelivered
            await handler.handle(Record(topics.NOTIFICATIONS, encode(unknown), offset=2)),
        ]

    assert run(pg_dsn, body_) == ["SENT", "ALREADY", "SENT"]
    assert [m.rcpt_tos for m in inbox.mails] == [["owner@shop.example"], ["owner@shop.example"]]
    answered = inbox.mails[0].message.get_payload(decode=True).decode()
    expected = live.data
    for line in (f"E-mail: {expected['customer_email']}", f"Shipping address: {expected['shipping_address']}",
                 f"Name: {expected['customer_name']}", "archived on 2027-03-01",
                 "comes from its durable record in PostgreSQL"):
        assert line in answered, line
    none_found = inbox.mails[1].message.get_payload(decode=True).decode()
    assert "no durable record of it was found" in none_found and "E-mail:" not in none_found


def test_a_notification_whose_recipients_are_deferred_does_not_hold_up_the_next_ones(
    pg_dsn: str, smtp: tuple[Inbox, int]
) -> None:
    """A recipient's mailbox is full (452 to RCPT) for days: after a few tries its
    notification goes to deadletter with the reason (replayable: nothing claimed),
    and the notifications behind it are sent."""
    inbox, port = smtp
    inbox.refuse_rcpt["full@example.com"] = "452 4.2.2 Mailbox full"

    async def body(pool: Any) -> tuple[list[bool], FakeProducer]:
        settings = notify_settings(port)
        producer = FakeProducer()
        handler = RecordHandler(pool, NotificationSender(pool, settings), settings, producer)
        stop = asyncio.Event()
        done = []
        for offset, notification in enumerate([shipped("n-full", recipient="full@example.com"), shipped("n-next")]):
            record = Record(topics.NOTIFICATIONS, encode(notification), offset=offset)
            done.append(await asyncio.wait_for(handle_until_done(handler, record, stop, first_wait=0.01), 30))
        assert await row(pool, "n-full") is None  # given back: a replay sends it
        assert (await row(pool, "n-next"))["status"] == "SENT"
        return done, producer

    done, producer = run(pg_dsn, body)
    assert done == [True, True]
    assert inbox.rcpt_calls == DEFERRED_TRIES + 1
    assert [t for t, _, _ in producer.sent] == [topics.DEADLETTER]
    letter = orjson.loads(producer.sent[0][2])
    assert letter["offset"] == 0 and "452 4.2.2 Mailbox full" in letter["detail"]
    assert [m.rcpt_tos for m in inbox.mails] == [["ada@example.com"]]
