"""The notifier as a process (``ops-engine notifier``), end to end: the embedded
broker, PostgreSQL (``pg_dsn``) and a real SMTP server (aiosmtpd) on loopback.

What test_notify.py checks piece by piece is checked here through the real
Kafka loop: a notification published three times is e-mailed once, an admin
notification goes to the store's e-mail target, alerts become one digest per
store once the window closes, a SIGKILL and a restart resend nothing, and a
garbage record goes to ``deadletter`` without stopping the notifier.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg

from connectors.broker import EmbeddedBroker, create_topics
from models.events import Alert, AlertStatus, AlertType, Severity
from models.notifications import digest_id, digest_window
from streams import topics
from streams.codecs import encode
from streams.settings import Settings
from tests.harness import Worker, produce_raw, read_json, wait_for
from tests.integration.test_notify import Inbox, Mail, intervention, shipped, smtp, store_settings  # noqa: F401

UTC = timezone.utc
WINDOW_S = 2
FROM = "ops@shop.example"
PLATFORM_ADMIN = "platform@ops.example"
STORE_ADMIN = "boss@shop.example"


def notifier_env(pg_dsn: str, port: int) -> dict[str, str]:
    return {
        "command": "notifier",
        "OPS_DATABASE_URL": pg_dsn,
        "OPS_SMTP_HOST": "127.0.0.1",
        "OPS_SMTP_PORT": str(port),
        "OPS_SMTP_FROM": FROM,
        "OPS_SMTP_TIMEOUT": "10",
        "OPS_ADMIN_EMAIL": PLATFORM_ADMIN,
        "OPS_DIGEST_WINDOW_S": str(WINDOW_S),
        "OPS_DIGEST_INTERVAL_S": "0.5",
    }


def produce(broker: EmbeddedBroker, topic: str, records: list[tuple[str, bytes]]) -> None:
    asyncio.run(produce_raw(broker, topic, [(key.encode(), value) for key, value in records]))


def query(pg_dsn: str, sql: str, *args: Any) -> list[Any]:
    async def main() -> list[Any]:
        conn = await asyncpg.connect(pg_dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(main())


def mails_for(inbox: Inbox, nid: str) -> list[Mail]:
    with inbox.lock:
        return [m for m in inbox.mails if m.message["X-Ops-Notification-Id"] == nid]


def body_of(mail: Mail) -> str:
    return str(mail.message.get_payload(decode=True).decode())


def until(worker: Worker, predicate: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """``wait_for``, failing at once if the notifier died, and with its log when it times out."""

    def check() -> Any:
        if worker.proc is not None and worker.proc.poll() is not None:
            raise AssertionError(f"notifier {worker.name} exited {worker.proc.returncode}:\n{worker.log_tail()}")
        return predicate()

    try:
        return wait_for(check, timeout=timeout, what=what)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n--- {worker.name} log ---\n{worker.log_tail()}") from None


def alert(i: int, store: str, at: datetime) -> Alert:
    return Alert(
        alert_id=f"{store}-a{i}",
        store_id=store,
        product_id=f"p-{i}",
        type=AlertType.STOCK_OUT if i % 2 else AlertType.STOCK_LOW,
        severity=Severity.HIGH,
        status=AlertStatus.ACTIVE,
        title=f"{store} product {i} is short",
        message="m",
        created_at=at,
        updated_at=at,
    )


def fresh_window_start() -> datetime:
    """Now, just after a digest window opened (so the notifier records a store's alerts well before it closes)."""
    while True:
        now = datetime.now(UTC)
        into = (now - digest_window(now, WINDOW_S)).total_seconds()
        if into < 0.3:
            return now
        time.sleep(WINDOW_S - into + 0.01)


def test_the_notifier_process_end_to_end(
    pg_dsn: str, smtp: tuple[Inbox, int], broker: EmbeddedBroker, spawn: Any  # noqa: F811
) -> None:
    inbox, port = smtp
    specs = topics.specs()
    # The notifier creates these at start too (same partition count): whoever is first, nothing is auto-created.
    partitions = Settings().partitions
    asyncio.run(
        create_topics(broker.bootstrap, {s.name: partitions for s in specs}, configs={s.name: s.config for s in specs})
    )
    env = notifier_env(pg_dsn, port)
    n1 = spawn("n1", **env)

    # -- the store's e-mail target, applied before anything is told to its admin ---------------
    produce(broker, topics.STORE_SETTINGS, [("s-1", encode(store_settings("s-1", [STORE_ADMIN], datetime.now(UTC))))])
    until(n1, lambda: query(pg_dsn, "SELECT emails FROM store_contacts WHERE store_id = 's-1'"),
          "store settings applied (group joined)")

    # -- one customer notification three times, then an admin one (one partition: in order) ---
    customer = encode(shipped("n-1"))
    produce(broker, topics.NOTIFICATIONS, [("s-1", customer)] * 3 + [("s-1", encode(intervention("n-admin", "s-1")))])
    until(n1, lambda: mails_for(inbox, "n-admin"), "the admin e-mail")
    # The admin record follows the three customer records on its partition: all handled now.
    assert len(mails_for(inbox, "n-1")) == 1
    assert len(mails_for(inbox, "n-admin")) == 1
    [to_customer] = mails_for(inbox, "n-1")
    assert to_customer.mail_from == FROM and to_customer.rcpt_tos == ["ada@example.com"]
    assert to_customer.message["Subject"] == "Your order #1001 has shipped"
    assert "Good news: your order #1001 is on its way." in body_of(to_customer)
    assert "Tracking number: JD014600003SE" in body_of(to_customer)
    [to_admin] = mails_for(inbox, "n-admin")
    assert to_admin.rcpt_tos == [STORE_ADMIN]  # the store's target, not OPS_ADMIN_EMAIL
    assert to_admin.message["Subject"] == "[ops-engine] Order #1001 needs attention"
    assert "Reason: address refused" in body_of(to_admin)
    rows = query(pg_dsn, "SELECT notification_id, status FROM notifications_sent ORDER BY notification_id")
    assert [tuple(r) for r in rows] == [("n-1", "SENT"), ("n-admin", "SENT")]

    # -- alerts: 5 for s-1, 2 for s-2, all in one window; one digest per store once it closes --
    now = fresh_window_start()
    window = digest_window(now, WINDOW_S)
    produce(broker, topics.ALERTS, [("s-1", encode(alert(i, "s-1", now))) for i in range(5)])
    produce(broker, topics.ALERTS, [("s-2", encode(alert(i, "s-2", now))) for i in range(2)])
    digests = {store: digest_id(store, window) for store in ("s-1", "s-2")}
    until(n1, lambda: all(mails_for(inbox, d) for d in digests.values()), "two digests", timeout=15)
    assert datetime.now(UTC) >= window + timedelta(seconds=WINDOW_S)  # not before the window closed
    time.sleep(3 * 0.5 + 0.5)  # a few more digest rounds: nothing more goes out
    with inbox.lock:
        assert len(inbox.mails) == 4
    [digest_1] = mails_for(inbox, digests["s-1"])
    [digest_2] = mails_for(inbox, digests["s-2"])
    assert digest_1.rcpt_tos == [STORE_ADMIN] and digest_2.rcpt_tos == [PLATFORM_ADMIN]
    assert digest_1.message["Subject"].startswith("[ops-engine] 5 alerts for store s-1 since ")
    assert digest_2.message["Subject"].startswith("[ops-engine] 2 alerts for store s-2 since ")
    text_1 = body_of(digest_1)
    assert "STOCK_LOW: 3 (3 new)" in text_1 and "STOCK_OUT: 2 (2 new)" in text_1
    assert all(f"s-1 product {i} is short" in text_1 for i in range(5))
    assert all(f"s-2 product {i} is short" in body_of(digest_2) for i in range(2))
    items = query(pg_dsn, "SELECT DISTINCT window_start FROM alert_digest_items")
    assert [r["window_start"] for r in items] == [window]

    # -- SIGKILL, a new notifier: a replay sends nothing; garbage goes to deadletter -----------
    assert n1.kill() is not None
    n2 = spawn("n2", **env)
    produce(
        broker,
        topics.NOTIFICATIONS,
        [("s-1", customer), ("s-1", b"{not json"), ("s-1", encode(shipped("n-2", data={"order_number": "#1002"})))],
    )
    until(n2, lambda: mails_for(inbox, "n-2"), "the notification after the garbage", timeout=30)
    assert n2.proc is not None and n2.proc.poll() is None
    assert len(mails_for(inbox, "n-1")) == 1  # republished before n-2 on its partition: handled, not resent
    [later] = mails_for(inbox, "n-2")
    assert later.message["Subject"] == "Your order #1002 has shipped" and later.rcpt_tos == ["ada@example.com"]
    dead = read_json(broker, topics.DEADLETTER)
    assert len(dead) == 1
    assert dead[0]["topic"] == topics.NOTIFICATIONS and dead[0]["reason"] == "INVALID_JSON"
    assert dead[0]["value"] == "e25vdCBqc29u"  # base64 of the original bytes, b"{not json"
    time.sleep(1.0)  # the restarted notifier's digest rounds: the sent digests stay sent
    with inbox.lock:
        assert len(inbox.mails) == 5
    rows = query(pg_dsn, "SELECT kind, count(*) AS n FROM notifications_sent WHERE status = 'SENT' GROUP BY kind")
    assert {r["kind"]: r["n"] for r in rows} == {"CUSTOMER_SHIPPED": 2, "ADMIN_INTERVENTION": 1, "ALERT_DIGEST": 2}
    assert n2.stop() == 0, n2.log_tail()  # SIGTERM: a clean stop
