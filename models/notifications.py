"""What a notification says: subject and plain-text body, from fixed templates (pure).

A ``Notification`` (models/orders.py) carries a ``kind`` and string ``data``;
its text comes from the template of the kind. Templates are ``string.Template``
and see only the fields of ``FIELDS``: a value is inserted as text, never
evaluated (no attribute access, no format specs), and a field that ``data``
lacks renders empty. A template line marked optional (it starts with ``?``) is
left out when all its fields are empty, so "Tracking number: " does not show
when there is none.

Values are cleaned before they are inserted: control characters go (CR and LF
included, so a value can never start a new header line of the subject or a
new line of the body; only ``reason`` may span lines in the body) and each
value is capped in length.

Digests: the alerts of one store that fall in one window (``digest_window``)
are told in one message, ``render_digest``, whose notification id
``digest_id`` is a pure function of the store and the window, so the sender
sends it at most once.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from string import Template

from models.events import Alert, AlertStatus, AlertType
from models.orders import Notification, NotificationKind

#: The only fields a template may use (and so the only ``data`` keys ever read).
FIELDS: tuple[str, ...] = (
    "order_number",
    "customer_name",
    "carrier",
    "tracking_number",
    "tracking_url",
    "groups_shipped",
    "groups_total",
    "reason",
    "order_id",
    "store_id",
    "customer_email",
    "customer_phone",
    "shipping_address",
)

#: The kinds sent to a customer: their records hold the customer's address.
CUSTOMER_KINDS: tuple[str, ...] = tuple(k.value for k in NotificationKind if k.value.startswith("CUSTOMER_"))

MAX_VALUE_CHARS = 500
MAX_SUBJECT_CHARS = 200
#: Alert lines listed in a digest; the rest are counted ("... and N more").
DIGEST_MAX_LINES = 200

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# C0 and C1 control characters, DEL, and the Unicode line/paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_SPACES = re.compile(r"[ \t]{2,}")


# Templates use ${name} with the names of FIELDS only (checked at import).
_T = Template


_TEMPLATES: dict[NotificationKind, tuple[str, str]] = {
    NotificationKind.CUSTOMER_SHIPPED: (
        "Your order ${order_number} has shipped",
        "?Hello ${customer_name},\n"
        "\n"
        "Good news: your order ${order_number} is on its way.\n"
        "\n"
        "?Carrier: ${carrier}\n"
        "?Tracking number: ${tracking_number}\n"
        "?Track your parcel: ${tracking_url}\n"
        "\n"
        "Thank you for your order.\n",
    ),
    NotificationKind.CUSTOMER_PARTIALLY_SHIPPED: (
        "Part of your order ${order_number} has shipped",
        "?Hello ${customer_name},\n"
        "\n"
        "Part of your order ${order_number} is on its way: "
        "${groups_shipped} of ${groups_total} parcels have shipped.\n"
        "The rest will follow; we will write again when it ships.\n"
        "\n"
        "?Carrier: ${carrier}\n"
        "?Tracking number: ${tracking_number}\n"
        "?Track your parcel: ${tracking_url}\n"
        "\n"
        "Thank you for your order.\n",
    ),
    NotificationKind.CUSTOMER_DELIVERED: (
        "Your order ${order_number} has been delivered",
        "?Hello ${customer_name},\n"
        "\n"
        "Your order ${order_number} has been delivered.\n"
        "\n"
        "?Carrier: ${carrier}\n"
        "?Tracking number: ${tracking_number}\n"
        "\n"
        "We hope you enjoy it. Thank you for your order.\n",
    ),
    NotificationKind.ADMIN_INTERVENTION: (
        "[ops-engine] Order ${order_number} needs attention",
        "Order ${order_number} needs a manual intervention.\n"
        "\n"
        "Reason: ${reason}\n"
        "\n"
        "Store: ${store_id}\n"
        "Order id: ${order_id}\n"
        "\n"
        "Once it is fixed, send a RETRY event for the order to re-issue its supplier orders.\n",
    ),
    NotificationKind.ADMIN_DATA_REQUEST: (
        "[ops-engine] Customer data held for order ${order_number}",
        "A customer asked for the personal data held about them (Shopify customers/data_request).\n"
        "This is what the engine holds for order ${order_number} (${order_id}, store ${store_id}):\n"
        "\n"
        "?Name: ${customer_name}\n"
        "?E-mail: ${customer_email}\n"
        "?Phone: ${customer_phone}\n"
        "?Shipping address: ${shipping_address}\n"
        "\n"
        "?${reason}\n"
        "\n"
        "Send it to the customer as Shopify's data request asks.\n",
    ),
    NotificationKind.ADMIN_REDACTED: (
        "[ops-engine] Personal data removed from order ${order_number}",
        "The customer's personal data was removed from order ${order_number} (${order_id}, store ${store_id}):\n"
        "the order table, the notification records and the e-mail addresses in them.\n"
        "\n"
        "?Why: ${reason}\n",
    ),
    # Digests are rendered by render_digest; this one is for an ALERT_DIGEST
    # notification that arrives on the topic with no alerts attached.
    NotificationKind.ALERT_DIGEST: (
        "[ops-engine] Alert digest for store ${store_id}",
        "There are new alerts for store ${store_id}.\n",
    ),
}


def _check_templates() -> None:
    allowed = set(FIELDS)
    for kind in NotificationKind:
        if kind not in _TEMPLATES:
            raise AssertionError(f"no template for {kind.value}")
        for text in _TEMPLATES[kind]:
            for match in _T.pattern.finditer(text):
                name = match.group("named") or match.group("braced")
                if match.group("invalid") is not None or (name is not None and name not in allowed):
                    raise AssertionError(f"template of {kind.value} uses {match.group(0)!r}, not an allowed field")


_check_templates()


def clean_inline(value: object, limit: int = MAX_VALUE_CHARS) -> str:
    """One line of text: control characters (CR and LF included) become spaces."""
    text = _CONTROL.sub(" ", str(value))
    return _SPACES.sub(" ", text).strip()[:limit]


def clean_text(value: object, limit: int = MAX_VALUE_CHARS) -> str:
    """Text that may span lines: newlines kept (CRLF and CR become LF), other controls become spaces."""
    text = str(value).replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL_BUT_NEWLINE.sub(" ", text).strip()[:limit]


#: Fields that may span lines in a body (never in a subject).
_MULTILINE = frozenset({"reason"})


def _values(data: dict[str, str], *, subject: bool) -> dict[str, str]:
    return {
        name: (clean_text if name in _MULTILINE and not subject else clean_inline)(data.get(name) or "")
        for name in FIELDS
    }


def _render_body(template: str, values: dict[str, str]) -> str:
    lines = []
    for line in template.split("\n"):
        if line.startswith("?"):
            line = line[1:]
            names = [m.group("named") or m.group("braced") for m in _T.pattern.finditer(line)]
            if not any(values[n] for n in names if n):
                continue  # an optional line whose fields are all empty
        # An empty field leaves a double space ("your order  is"): one space.
        lines.append(_SPACES.sub(" ", _T(line).substitute(values)))
    body = "\n".join(lines)
    # Blank runs left by dropped lines collapse into one blank line.
    body = re.sub(r"\n{3,}", "\n\n", body)
    return body.strip("\n") + "\n"


def render_notification(notification: Notification) -> tuple[str, str]:
    """(subject, plain-text body) of a notification, from the template of its kind."""
    subject_t, body_t = _TEMPLATES[notification.kind]
    data = dict(notification.data)
    # The notification's own ids stand in when data lacks them.
    data.setdefault("store_id", notification.store_id)
    if notification.order_id:
        data.setdefault("order_id", notification.order_id)
    if not data.get("order_number") and data.get("order_id"):
        data["order_number"] = data["order_id"]
    subject = _T(subject_t).substitute(_values(data, subject=True))
    subject = clean_inline(subject, MAX_SUBJECT_CHARS)
    body = _render_body(body_t, _values(data, subject=False))
    return subject, body


# --------------------------------------------------------------------------- #
# Digests of the alerts topic
# --------------------------------------------------------------------------- #


def digest_window(at: datetime, window_s: int) -> datetime:
    """Start (UTC) of the window of ``window_s`` seconds that holds ``at``; windows are aligned to the epoch."""
    if window_s <= 0:
        raise ValueError("window_s must be positive")
    if at.tzinfo is None:
        raise ValueError("a timezone-aware datetime is expected")
    width = timedelta(seconds=window_s)
    return _EPOCH + ((at - _EPOCH) // width) * width


def digest_id(store_id: str, window_start: datetime) -> str:
    """Notification id of the digest of one store and window (same inputs, same id).

    ``digest:<store_id>:<window start, epoch seconds>``: the SQL of
    connectors/notify/digest.py builds the same string.
    """
    if window_start.tzinfo is None:
        raise ValueError("a timezone-aware datetime is expected")
    seconds = (window_start - _EPOCH) // timedelta(seconds=1)
    return f"digest:{store_id}:{seconds}"


_STATUS_WORD = {
    AlertStatus.ACTIVE: "new",
    AlertStatus.ACKNOWLEDGED: "acknowledged",
    AlertStatus.RESOLVED: "resolved",
    AlertStatus.DISMISSED: "dismissed",
}


def render_digest(store_id: str, window_start: datetime, alerts: list[Alert]) -> tuple[str, str]:
    """(subject, body) of the digest of one store's alerts in one window.

    Counts by type (and status), then one line per alert record, oldest first,
    at most ``DIGEST_MAX_LINES`` lines and "... and N more".
    """
    store = clean_inline(store_id, 200)
    since = window_start.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    n = len(alerts)
    subject = clean_inline(f"[ops-engine] {n} alert{'s' if n != 1 else ''} for store {store} since {since}",
                           MAX_SUBJECT_CHARS)

    ordered = sorted(alerts, key=lambda a: (a.updated_at, a.alert_id))
    by_type: dict[AlertType, Counter[AlertStatus]] = {}
    for alert in ordered:
        by_type.setdefault(alert.type, Counter())[alert.status] += 1

    lines = [f"Alerts for store {store} since {since}: {n}", "", "By type:"]
    for alert_type in AlertType:  # a fixed order, whatever the arrival order
        counts = by_type.get(alert_type)
        if not counts:
            continue
        parts = ", ".join(f"{counts[s]} {_STATUS_WORD[s]}" for s in AlertStatus if counts[s])
        lines.append(f"  {alert_type.value}: {sum(counts.values())} ({parts})")
    lines += ["", "Alerts:"]
    for alert in ordered[:DIGEST_MAX_LINES]:
        at = alert.updated_at.astimezone(timezone.utc).strftime("%H:%M:%S")
        lines.append(
            f"- {at} [{alert.severity.value}] {alert.type.value} {alert.status.value}: {clean_inline(alert.title, 300)}"
        )
    if n > DIGEST_MAX_LINES:
        lines.append(f"... and {n - DIGEST_MAX_LINES} more")
    return subject, "\n".join(lines) + "\n"
