"""Notification templates and alert digests (models/notifications.py): pure, no I/O."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from connectors.notify.smtp import build_message, message_id, valid_email
from models.events import Alert, AlertStatus, AlertType, Severity
from models.notifications import (
    DIGEST_MAX_LINES,
    FIELDS,
    digest_id,
    digest_window,
    render_digest,
    render_notification,
)
from models.orders import Audience, Notification, NotificationKind

UTC = timezone.utc
FULL = {
    "order_number": "#1001",
    "customer_name": "Ada Lovelace",
    "carrier": "DHL",
    "tracking_number": "JD014600003SE",
    "tracking_url": "https://track.example/JD014600003SE",
    "groups_shipped": "1",
    "groups_total": "2",
    "reason": "supplier refused the address",
    "order_id": "o-1",
    "store_id": "s-1",
}


def note(kind: NotificationKind, data: dict[str, str] | None = None, **kw: object) -> Notification:
    admin = kind in (NotificationKind.ADMIN_INTERVENTION, NotificationKind.ALERT_DIGEST)
    audience = Audience.ADMIN if admin else Audience.CUSTOMER
    return Notification(
        notification_id=kw.pop("notification_id", f"n-{kind.value}"),  # type: ignore[arg-type]
        kind=kind,
        audience=audience,
        store_id=kw.pop("store_id", "s-1"),  # type: ignore[arg-type]
        order_id=kw.pop("order_id", "o-1"),  # type: ignore[arg-type]
        recipient="ada@example.com" if audience is Audience.CUSTOMER else None,
        data=FULL if data is None else data,
    )


@pytest.mark.parametrize("kind", list(NotificationKind))
def test_every_kind_renders_with_and_without_data(kind: NotificationKind) -> None:
    for data in (FULL, {}):
        subject, body = render_notification(note(kind, data))
        assert subject and body.endswith("\n")
        assert "$" not in subject + body  # no placeholder left behind
        assert "\r" not in subject + body and "\n" not in subject
        assert "  " not in subject


def test_customer_templates_carry_the_data() -> None:
    subject, body = render_notification(note(NotificationKind.CUSTOMER_SHIPPED))
    assert subject == "Your order #1001 has shipped"
    for value in ("Ada Lovelace", "DHL", "JD014600003SE", "https://track.example/JD014600003SE"):
        assert value in body
    subject, body = render_notification(note(NotificationKind.CUSTOMER_PARTIALLY_SHIPPED))
    assert "Part of your order #1001" in subject
    assert "1 of 2 parcels" in body
    subject, body = render_notification(note(NotificationKind.CUSTOMER_DELIVERED))
    assert subject == "Your order #1001 has been delivered"
    subject, body = render_notification(note(NotificationKind.ADMIN_INTERVENTION))
    assert "#1001" in subject and "supplier refused the address" in body and "o-1" in body and "s-1" in body


def test_missing_fields_render_empty_and_optional_lines_go() -> None:
    _, body = render_notification(note(NotificationKind.CUSTOMER_SHIPPED, {"order_number": "42"}))
    assert "your order 42 is on its way" in body
    assert "Tracking number" not in body and "Carrier" not in body and "Hello" not in body
    _, body = render_notification(note(NotificationKind.CUSTOMER_SHIPPED, {"order_number": "42", "carrier": "UPS"}))
    assert "Carrier: UPS" in body and "Tracking number" not in body


def test_order_number_falls_back_to_the_order_id() -> None:
    subject, _ = render_notification(note(NotificationKind.CUSTOMER_DELIVERED, {}, order_id="o-77"))
    assert subject == "Your order o-77 has been delivered"


def test_values_are_never_evaluated_and_unknown_keys_are_ignored() -> None:
    data = {
        "order_number": "${reason} {0.__class__} %(x)s $$",
        "reason": "SECRET",
        "customer_name": "{customer_name.__init__.__globals__}",
        "password": "hunter2",
    }
    subject, body = render_notification(note(NotificationKind.CUSTOMER_SHIPPED, data))
    assert subject == "Your order ${reason} {0.__class__} %(x)s $$ has shipped"
    assert "SECRET" not in subject + body and "hunter2" not in subject + body
    assert "{customer_name.__init__.__globals__}" in body


def test_header_injection_is_stripped_from_the_subject() -> None:
    data = {**FULL, "order_number": "#1\r\nBcc: victim@example.com\nX-Evil: 1\x00\u2028"}
    for kind in NotificationKind:
        subject, body = render_notification(note(kind, data))
        assert "\r" not in subject and "\n" not in subject and "\x00" not in subject and "\u2028" not in subject
        if kind is not NotificationKind.ALERT_DIGEST:
            assert "Bcc: victim@example.com" in subject  # kept as text, on the one line
            # and no body line starts with it either (inline fields stay on their line)
            assert not any(line.startswith("Bcc:") for line in body.splitlines())
    # The subject survives into a real message as one header.
    subject, body = render_notification(note(NotificationKind.CUSTOMER_SHIPPED, data))
    msg = build_message(notification_id="n-1", sender="ops@shop.example", recipients=["ada@example.com"],
                        subject=subject, body=body)
    raw = msg.as_bytes()
    assert b"\r\nBcc:" not in raw and b"\r\nX-Evil:" not in raw
    assert msg["Bcc"] is None


def test_reason_keeps_its_lines_in_the_body_only() -> None:
    data = {**FULL, "reason": "line one\r\nline two\rline three"}
    subject, body = render_notification(note(NotificationKind.ADMIN_INTERVENTION, data))
    assert "Reason: line one\nline two\nline three\n" in body
    assert "\r" not in body


def test_long_values_are_capped() -> None:
    subject, body = render_notification(note(NotificationKind.CUSTOMER_SHIPPED, {"order_number": "9" * 10_000}))
    assert len(subject) <= 200
    assert len(body) < 2_000


def test_allow_list_is_the_documented_one() -> None:
    assert set(FIELDS) == {
        "order_number", "customer_name", "carrier", "tracking_number", "tracking_url",
        "groups_shipped", "groups_total", "reason", "order_id", "store_id",
        "customer_email", "customer_phone", "shipping_address",  # the data request to the store owner
    }


# --------------------------------------------------------------------------- #
# digests
# --------------------------------------------------------------------------- #


def test_digest_window_is_aligned_to_the_epoch_in_utc() -> None:
    at = datetime(2026, 5, 9, 12, 3, 59, 999_999, tzinfo=UTC)
    assert digest_window(at, 300) == datetime(2026, 5, 9, 12, 0, tzinfo=UTC)
    assert digest_window(datetime(2026, 5, 9, 12, 5, tzinfo=UTC), 300) == datetime(2026, 5, 9, 12, 5, tzinfo=UTC)
    assert digest_window(at, 3600) == datetime(2026, 5, 9, 12, 0, tzinfo=UTC)
    assert digest_window(at, 7) == datetime.fromtimestamp(int(at.timestamp()) // 7 * 7, UTC)
    # Another time zone: the same instant, the same window, given in UTC.
    plus2 = timezone(timedelta(hours=2))
    start = digest_window(datetime(2026, 5, 9, 14, 3, tzinfo=plus2), 300)
    assert start == datetime(2026, 5, 9, 12, 0, tzinfo=UTC) and start.utcoffset() == timedelta(0)
    # Before the epoch, too.
    before = datetime(1969, 12, 31, 23, 59, 1, tzinfo=UTC)
    assert digest_window(before, 300) == datetime(1969, 12, 31, 23, 55, tzinfo=UTC)
    with pytest.raises(ValueError):
        digest_window(datetime(2026, 5, 9, 12, 0), 300)
    with pytest.raises(ValueError):
        digest_window(at, 0)


def test_digest_id_is_deterministic() -> None:
    start = datetime(2026, 5, 9, 12, 0, tzinfo=UTC)
    assert digest_id("s-1", start) == digest_id("s-1", start.astimezone(timezone(timedelta(hours=-5))))
    assert digest_id("s-1", start) == f"digest:s-1:{int(start.timestamp())}"
    assert digest_id("s-1", start) != digest_id("s-2", start)
    assert digest_id("s-1", start) != digest_id("s-1", start + timedelta(seconds=300))


def alert(i: int, *, store: str = "s-1", type_: AlertType = AlertType.STOCK_OUT,
          status: AlertStatus = AlertStatus.ACTIVE, title: str | None = None) -> Alert:
    at = datetime(2026, 5, 9, 12, 0, tzinfo=UTC) + timedelta(seconds=i % 300)
    return Alert(
        alert_id=f"a-{i}", store_id=store, product_id=f"p-{i}", type=type_, severity=Severity.HIGH,
        status=status, title=title if title is not None else f"Product {i} is out of stock",
        message="m", created_at=at, updated_at=at,
    )


def test_digest_counts_by_type_and_lists_every_alert() -> None:
    start = datetime(2026, 5, 9, 12, 0, tzinfo=UTC)
    alerts = [alert(1), alert(2), alert(3, type_=AlertType.PRICE_INCREASE),
              alert(4, status=AlertStatus.RESOLVED)]
    subject, body = render_digest("s-1", start, alerts)
    assert subject == "[ops-engine] 4 alerts for store s-1 since 2026-05-09 12:00 UTC"
    assert "STOCK_OUT: 3 (2 new, 1 resolved)" in body
    assert "PRICE_INCREASE: 1 (1 new)" in body
    for i in (1, 2, 3, 4):
        assert f"Product {i} is out of stock" in body
    assert "more" not in body
    one, _ = render_digest("s-1", start, [alert(1)])
    assert one.startswith("[ops-engine] 1 alert for store")


def test_digest_is_capped_with_and_n_more() -> None:
    start = datetime(2026, 5, 9, 12, 0, tzinfo=UTC)
    alerts = [alert(i) for i in range(DIGEST_MAX_LINES + 37)]
    subject, body = render_digest("s-1", start, alerts)
    listed = [line for line in body.splitlines() if line.startswith("- ")]
    assert len(listed) == DIGEST_MAX_LINES
    assert body.rstrip().endswith("... and 37 more")
    assert f"STOCK_OUT: {DIGEST_MAX_LINES + 37}" in body
    assert f"{DIGEST_MAX_LINES + 37} alerts" in subject


def test_digest_strips_control_characters_from_titles_and_store() -> None:
    start = datetime(2026, 5, 9, 12, 0, tzinfo=UTC)
    subject, body = render_digest("s-1\r\nBcc: x@y", start, [alert(1, title="bad\r\n- 00:00:00 [LOW] forged")])
    assert "\r" not in subject + body and "\n" not in subject
    assert not any(line.startswith("- 00:00:00 [LOW] forged") for line in body.splitlines())


def test_addresses_and_message_id() -> None:
    assert valid_email("ada@example.com") and valid_email("a.b+c@mail.example.co.uk")
    for bad in ("", "ada", "ada@", "@x", "a b@x", "a@x\r\nBcc: y@z", "<a@x>", "a@x,b@y", "ä@x.de"):
        assert not valid_email(bad), bad
    assert message_id("n-1", "shop.example") == message_id("n-1", "shop.example")
    assert message_id("n-1", "shop.example") != message_id("n-2", "shop.example")
    assert message_id("n-1", "shop.example").startswith("<ops.") and message_id("n-1", "shop.example").endswith(
        "@shop.example>"
    )
