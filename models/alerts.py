"""Alerts: deterministic ids, opening, and the status lifecycle (pure)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from models.events import (
    TERMINAL_ALERT_STATUSES,
    Alert,
    AlertAction,
    AlertStatus,
    AlertType,
    Severity,
    trusted,
)
from models.ids import name_uuid

_ALERT_NS = uuid.UUID("6f1d3c52-8f5e-4a8e-9f0e-3c1b6a0d2e71")

SEVERITY: dict[AlertType, Severity] = {
    AlertType.STOCK_OUT: Severity.HIGH,
    AlertType.PRODUCT_REMOVED: Severity.HIGH,
    AlertType.STOCK_LOW: Severity.MEDIUM,
    AlertType.STOCK_RESTORED: Severity.LOW,
    AlertType.PRICE_INCREASE: Severity.MEDIUM,
    AlertType.PRICE_DECREASE: Severity.MEDIUM,
    AlertType.SYNC_FAILURE: Severity.CRITICAL,
    AlertType.ORDER_ISSUE: Severity.HIGH,
    AlertType.PAYMENT_ISSUE: Severity.HIGH,
    AlertType.STOCK_DRIFT: Severity.MEDIUM,
    AlertType.APP_UNINSTALLED: Severity.HIGH,
    AlertType.STOREFRONT_REFUSED: Severity.CRITICAL,
    AlertType.STOREFRONT_UNAVAILABLE: Severity.HIGH,
}

_TRANSITIONS: dict[AlertStatus, frozenset[AlertStatus]] = {
    AlertStatus.ACTIVE: frozenset({AlertStatus.ACKNOWLEDGED, AlertStatus.RESOLVED, AlertStatus.DISMISSED}),
    AlertStatus.ACKNOWLEDGED: frozenset({AlertStatus.RESOLVED, AlertStatus.DISMISSED}),
    AlertStatus.RESOLVED: frozenset(),
    AlertStatus.DISMISSED: frozenset(),
}

ACTION_STATUS: dict[AlertAction, AlertStatus] = {
    AlertAction.ACKNOWLEDGE: AlertStatus.ACKNOWLEDGED,
    AlertAction.DISMISS: AlertStatus.DISMISSED,
}


def alert_id(subject_key: str, alert_type: AlertType, trigger_micros: int) -> str:
    """Same subject, type and triggering moment: same id, however often replayed."""
    return name_uuid(_ALERT_NS, f"{subject_key}|{alert_type.value}|{trigger_micros}")


def open_alert(
    *,
    subject_key: str,
    store_id: str,
    product_id: str | None,
    variant_id: str | None,
    alert_type: AlertType,
    title: str,
    message: str,
    metadata: dict[str, str],
    at: datetime,
    trigger_micros: int,
) -> Alert:
    return trusted(
        Alert,
        alert_id=alert_id(subject_key, alert_type, trigger_micros),
        store_id=store_id,
        product_id=product_id,
        variant_id=variant_id,
        type=alert_type,
        severity=SEVERITY[alert_type],
        status=AlertStatus.ACTIVE,
        title=title,
        message=message,
        metadata=metadata,
        created_at=at,
        updated_at=at,
        acknowledged_at=None,
        resolved_at=None,
    )


_FINAL = frozenset(status.value for status in TERMINAL_ALERT_STATUSES)


def can_transition(current: AlertStatus, target: AlertStatus) -> bool:
    return target in _TRANSITIONS[current]


#: Each status's step in the lifecycle: a status can move only to a higher step
#: (RESOLVED and DISMISSED are both final). Readers that keep the newest state of an
#: alert (the alerts table, PostgreSQL's ``alerts``) order by (updated_at, this).
ALERT_STATUS_RANK: dict[str, int] = {"ACTIVE": 0, "ACKNOWLEDGED": 1, "RESOLVED": 2, "DISMISSED": 2}


def supersedes(at: datetime, status: AlertStatus, current_at: datetime, current_status: AlertStatus) -> bool:
    """Whether an alert's state (``at`` = its ``updated_at``, ``status``) is newer than the current one.

    A later ``updated_at`` is newer. At the same ``updated_at`` (``transition``
    keeps the time when the move is requested for an earlier one), a status the
    current one can move to is newer (a higher ``ALERT_STATUS_RANK``); the same
    state is not.
    """
    if at != current_at:
        return at > current_at
    return can_transition(current_status, status)


def purgeable(alert: dict[str, Any], cutoff: datetime) -> bool:
    """Whether an alert record (parsed JSON) may leave the alerts table: closed
    (RESOLVED or DISMISSED, final) and last changed before ``cutoff``. Open
    alerts (ACTIVE, ACKNOWLEDGED) stay whatever their age: a product's state
    names them, and they still move."""
    if alert.get("status") not in _FINAL:
        return False
    return datetime.fromisoformat(alert["updated_at"]) < cutoff


def transition(alert: Alert, target: AlertStatus, at: datetime) -> Alert | None:
    """The alert in ``target`` status, or None if that move is not allowed.

    ACTIVE -> ACKNOWLEDGED | RESOLVED | DISMISSED; ACKNOWLEDGED -> RESOLVED |
    DISMISSED; RESOLVED and DISMISSED are final. ``updated_at`` never goes
    backwards, so a replayed older transition cannot hide a newer one.
    """
    if not can_transition(alert.status, target):
        return None
    updated_at = max(at, alert.updated_at)
    changes: dict[str, object] = {"status": target, "updated_at": updated_at}
    if target is AlertStatus.ACKNOWLEDGED:
        changes["acknowledged_at"] = updated_at
    if target in TERMINAL_ALERT_STATUSES:
        changes["resolved_at"] = updated_at
    return alert.model_copy(update=changes)


def _newest_first(alert: dict[str, Any]) -> tuple[str, str]:
    return alert["created_at"], alert["alert_id"]


def alert_cursor(alert: dict[str, Any]) -> str:
    """The cursor an alert list continues after: ``created_at|alert_id`` of ``alert``."""
    return "|".join(_newest_first(alert))


def alert_page(
    alerts: list[dict[str, Any]], after: str | None, limit: int
) -> tuple[list[dict[str, Any]], bool, int]:
    """One page of a store's alert list (alert records as parsed JSON), whether more
    follow, and how many alerts the whole list holds.

    Newest first: by ``created_at``, then ``alert_id``, both descending. The
    page starts after the cursor ``after`` (``alert_cursor`` of the last alert
    of the page before) and holds at most ``limit`` alerts.
    """
    ordered = sorted(alerts, key=_newest_first, reverse=True)
    total = len(ordered)
    if after is not None:
        created_at, _, alert_id = after.partition("|")
        ordered = [a for a in ordered if _newest_first(a) < (created_at, alert_id)]
    return ordered[:limit], len(ordered) > limit, total
