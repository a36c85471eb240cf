"""Sync runs (models/sync.py) and a page's snapshots (connectors/sync/pages.py): pure rules."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from decimal import Decimal

import pytest

from connectors.suppliers.base import SupplierProduct
from connectors.sync.pages import pick, snapshots_of_page
from models.events import AlertType, Severity, SyncFrequency
from models.sync import (
    HISTORY,
    RunStatus,
    Schedule,
    StoreRuns,
    SyncDeadline,
    SyncProgress,
    SyncRequest,
    SyncTier,
    TrackedProduct,
    apply_deadline,
    apply_progress,
    due_request,
    parse_time_of_day,
    run_id_of,
    start_run,
)

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=timezone.utc)
TIMEOUT = 1800.0


def tracked(n: int) -> list[TrackedProduct]:
    return [
        TrackedProduct(f"p{i}", None, "CJ_DROPSHIPPING", f"src{i}", Decimal("5.00"), 10, True) for i in range(n)
    ]


def request(rid: str = "s:MANUAL:1", at: datetime = T0, tier: SyncTier = SyncTier.MANUAL) -> SyncRequest:
    return SyncRequest(request_id=rid, store_id="s", tier=tier, requested_at=at)


def progress(run_id: str, page: int, fetched: int, failed: int = 0, changed: int = 0, error: str | None = None,
             at: datetime = T0 + timedelta(seconds=5)) -> SyncProgress:
    return SyncProgress(run_id=run_id, store_id="s", page=page, fetched=fetched, failed=failed, changed=changed,
                        error=error, at=at)


def started(n: int = 5, page_size: int = 2) -> StoreRuns:
    outcome = start_run(None, request(), tracked(n), T0, page_size, TIMEOUT)
    assert outcome.runs is not None
    return outcome.runs


def test_a_request_starts_a_run_cut_into_pages() -> None:
    outcome = start_run(None, request(), tracked(5), T0, 2, TIMEOUT)
    run = outcome.runs.current  # type: ignore[union-attr]
    assert outcome.result == "STARTED"
    assert run.run_id == run_id_of("s:MANUAL:1") and run.status is RunStatus.RUNNING
    assert (run.total, run.pages, run.done) == (5, 3, 0)
    assert run.deadline_at == T0 + timedelta(seconds=TIMEOUT)
    assert [len(j.items) for j in outcome.jobs] == [2, 2, 1]
    assert {j.pages for j in outcome.jobs} == {3} and [j.page for j in outcome.jobs] == [0, 1, 2]
    assert outcome.published == (run,)


def test_the_same_request_again_is_the_same_run_and_resends_its_pages_while_it_runs() -> None:
    runs = started()
    again = start_run(runs, request(), tracked(5), T0 + timedelta(seconds=1), 2, TIMEOUT)
    assert again.result == "DUPLICATE" and again.runs is None
    assert [j.run_id for j in again.jobs] == [runs.current.run_id] * 3  # type: ignore[union-attr]


def test_a_busy_store_refuses_another_request() -> None:
    runs = started()
    other = start_run(runs, request("s:MANUAL:2"), tracked(5), T0 + timedelta(seconds=1), 2, TIMEOUT)
    assert (other.result, other.runs, other.jobs) == ("REFUSED", None, ())


def test_a_request_long_after_it_was_made_is_expired() -> None:
    late = start_run(None, request(at=T0), tracked(1), T0 + timedelta(seconds=TIMEOUT + 1), 2, TIMEOUT)
    assert (late.result, late.runs) == ("EXPIRED", None)


def test_pages_count_once_and_the_last_one_completes_the_run() -> None:
    runs = started()
    run_id = runs.current.run_id  # type: ignore[union-attr]
    one = apply_progress(runs, progress(run_id, 0, 2, changed=1))
    assert one.result == "PROGRESS" and one.runs.current.done == 2  # type: ignore[union-attr]
    again = apply_progress(one.runs, progress(run_id, 0, 2, changed=1))
    assert (again.result, again.runs) == ("DUPLICATE", None)
    two = apply_progress(one.runs, progress(run_id, 2, 1))
    end = apply_progress(two.runs, progress(run_id, 1, 1, failed=1, changed=1, at=T0 + timedelta(seconds=9)))
    run = end.runs.current  # type: ignore[union-attr]
    assert end.result == "COMPLETED" and run.status is RunStatus.COMPLETED
    assert (run.done, run.failed, run.changed, run.total) == (5, 1, 2, 5)
    assert run.finished_at == T0 + timedelta(seconds=9) and run.duration_s == 9.0
    assert end.alerts == () and end.finished == (run,)
    # The last page delivered again: the end's records are sent again, counted nothing.
    replay = apply_progress(end.runs, progress(run_id, 1, 1, failed=1, changed=1))
    assert replay.result == "DUPLICATE" and replay.runs is None and replay.published == (run,)


def test_a_failed_page_fails_the_run_with_its_reason_and_a_critical_alert() -> None:
    runs = started(n=2, page_size=1)
    run_id = runs.current.run_id  # type: ignore[union-attr]
    one = apply_progress(runs, progress(run_id, 0, 0, failed=1, error="SPOCKET: OutcomeUnknown: timeout"))
    end = apply_progress(one.runs, progress(run_id, 1, 1))
    run = end.runs.current  # type: ignore[union-attr]
    assert run.status is RunStatus.FAILED and run.error == "page 0: SPOCKET: OutcomeUnknown: timeout"
    (alert,) = end.alerts
    assert (alert.type, alert.severity, alert.metadata["run_id"]) == (AlertType.SYNC_FAILURE, Severity.CRITICAL, run_id)
    # Replayed: the same alert id.
    replay = apply_progress(end.runs, progress(run_id, 1, 1))
    assert [a.alert_id for a in replay.alerts] == [alert.alert_id]


def test_a_long_supplier_error_is_cut_to_what_the_run_record_holds() -> None:
    runs = started(n=1, page_size=1)
    run_id = runs.current.run_id  # type: ignore[union-attr]
    end = apply_progress(runs, progress(run_id, 0, 0, failed=1, error="x" * 2000))
    assert end.runs is not None
    again = StoreRuns.model_validate_json(end.runs.model_dump_json())  # the table value reads back
    assert again.current.status is RunStatus.FAILED and len(again.current.error or "") == 2000  # type: ignore[union-attr]


def test_a_run_past_its_deadline_fails_and_a_late_page_changes_nothing() -> None:
    runs = started()
    run_id = runs.current.run_id  # type: ignore[union-attr]
    early = apply_deadline(runs, SyncDeadline(run_id=run_id, store_id="s", at=T0 + timedelta(seconds=60)))
    assert (early.result, early.runs) == ("EARLY", None)
    late_at = T0 + timedelta(seconds=TIMEOUT)
    failed = apply_deadline(runs, SyncDeadline(run_id=run_id, store_id="s", at=late_at))
    run = failed.runs.current  # type: ignore[union-attr]
    assert run.status is RunStatus.FAILED and "timed out" in (run.error or "") and len(failed.alerts) == 1
    assert apply_progress(failed.runs, progress(run_id, 0, 2)).result == "LATE"


def test_a_request_to_a_store_whose_run_is_overdue_fails_that_run_and_starts_anew() -> None:
    runs = started()
    at = T0 + timedelta(seconds=TIMEOUT + 1)
    outcome = start_run(runs, request("s:MANUAL:2", at=at), tracked(5), at, 2, TIMEOUT)
    assert outcome.result == "STARTED" and len(outcome.alerts) == 1
    assert [r.status for r in outcome.published] == [RunStatus.FAILED, RunStatus.RUNNING]
    assert outcome.runs.history[0].status is RunStatus.FAILED  # type: ignore[union-attr]


def test_a_store_with_nothing_tracked_completes_at_once_and_history_is_bounded() -> None:
    runs: StoreRuns | None = None
    for i in range(HISTORY + 3):
        at = T0 + timedelta(minutes=i)
        outcome = start_run(runs, request(f"s:MANUAL:{i}", at=at), [], at, 2, TIMEOUT)
        assert outcome.runs.current.status is RunStatus.COMPLETED  # type: ignore[union-attr]
        runs = outcome.runs
    assert len(runs.history) == HISTORY  # type: ignore[union-attr]


def test_a_stale_progress_of_an_older_run_is_not_counted() -> None:
    runs = started(n=0)
    outcome = apply_progress(runs, progress("someone-else", 0, 1))
    assert (outcome.result, outcome.runs) == ("UNKNOWN_RUN", None)


# --------------------------------------------------------------------------- #
# the schedule
# --------------------------------------------------------------------------- #

SCHEDULE = Schedule(high_interval_s=900, standard_interval_s=3600, full_at=time(3, 0))


def after_full(at: datetime) -> StoreRuns:
    return StoreRuns(store_id="s", last_started={SyncTier.FULL: at})


def test_full_sync_is_due_once_a_day_at_03_00_utc() -> None:
    day = datetime(2026, 5, 4, tzinfo=timezone.utc)
    # Never synced: the last 03:00 slot (yesterday's, before 03:00 today).
    first = due_request("s", SyncFrequency.STANDARD, None, day.replace(hour=2), SCHEDULE)
    assert first is not None and first.tier is SyncTier.FULL and first.request_id == "s:FULL:2026-05-03"
    runs = after_full(day.replace(hour=2))
    assert due_request("s", SyncFrequency.STANDARD, runs, day.replace(hour=2, minute=30), SCHEDULE) is None
    at3 = due_request("s", SyncFrequency.STANDARD, runs, day.replace(hour=3, minute=0, second=5), SCHEDULE)
    assert at3 is not None and at3.request_id == "s:FULL:2026-05-04"


def test_high_every_15_minutes_standard_hourly_with_deterministic_ids() -> None:
    day = datetime(2026, 5, 4, tzinfo=timezone.utc)
    runs = after_full(day.replace(hour=3))
    at = day.replace(hour=10, minute=7)
    high = due_request("s", SyncFrequency.HIGH, runs, at, SCHEDULE)
    assert high is not None and high.tier is SyncTier.HIGH
    slot = int(day.replace(hour=10, minute=0).timestamp())
    assert high.request_id == f"s:HIGH:{slot}"
    # Two workers asking in the same slot: the same request (one run).
    assert due_request("s", SyncFrequency.HIGH, runs, at + timedelta(minutes=5), SCHEDULE).request_id == high.request_id  # type: ignore[union-attr]
    ran = StoreRuns(store_id="s", last_started={SyncTier.FULL: day.replace(hour=3), SyncTier.HIGH: at})
    assert due_request("s", SyncFrequency.HIGH, ran, at + timedelta(minutes=7), SCHEDULE) is None
    assert due_request("s", SyncFrequency.HIGH, ran, day.replace(hour=10, minute=15), SCHEDULE) is not None
    assert due_request("s", SyncFrequency.STANDARD, ran, day.replace(hour=10, minute=59), SCHEDULE) is None
    standard = due_request("s", SyncFrequency.STANDARD, ran, day.replace(hour=11, minute=1), SCHEDULE)
    assert standard is not None and standard.tier is SyncTier.STANDARD
    # A manual run in the slot counts as the slot's run.
    manual = StoreRuns(store_id="s", last_started={SyncTier.FULL: day.replace(hour=3),
                                                   SyncTier.MANUAL: day.replace(hour=11, minute=2)})
    assert due_request("s", SyncFrequency.STANDARD, manual, day.replace(hour=11, minute=30), SCHEDULE) is None


def test_time_of_day_setting() -> None:
    assert parse_time_of_day("03:00") == time(3, 0) and parse_time_of_day("23:45") == time(23, 45)


# --------------------------------------------------------------------------- #
# a page's snapshots
# --------------------------------------------------------------------------- #


def sp(variant: str | None, stock: int, cost: str, available: bool = True) -> SupplierProduct:
    return SupplierProduct("SRC", variant, available, stock, Decimal(cost), Decimal("1.00"), "USD")


def test_pick_one_entry_then_our_variant_else_the_product_summed_at_its_highest_cost() -> None:
    assert pick([], None) is None
    only = sp("v1", 4, "3.00")
    assert pick([only], "anything") is only
    two = [sp("v1", 4, "3.00"), sp("v2", 6, "5.00")]
    assert pick(two, "v2") is two[1]
    merged = pick(two + [sp("v3", 0, "9.00", available=False)], None)
    assert merged is not None and (merged.stock, merged.cost_price, merged.available) == (10, Decimal("9.00"), True)


def test_page_snapshots_carry_the_run_and_count_changed_and_failed() -> None:
    from models.sync import SyncItem

    items = (
        SyncItem(product_id="a", provider="CJ_DROPSHIPPING", source_id="A", last_cost=Decimal("3.00"), last_stock=4,
                 last_available=True),
        SyncItem(product_id="b", provider="CJ_DROPSHIPPING", source_id="B", last_cost=Decimal("2.00"), last_stock=1,
                 last_available=True),
        SyncItem(product_id="c", provider="SPOCKET", source_id="C", last_cost=Decimal("2.00"), last_stock=1,
                 last_available=True),
    )
    fetched = {"CJ_DROPSHIPPING": {
        "A": [SupplierProduct("A", None, True, 4, Decimal("3.00"), Decimal("0"), "USD")],
        "B": [SupplierProduct.gone("B", "USD")],
    }}
    at = datetime(2026, 5, 4, 12, tzinfo=timezone.utc)
    result = snapshots_of_page("s", "run-1", items, fetched, {"SPOCKET": "OutcomeUnknown: timeout"}, at)
    assert [s.product_id for s in result.snapshots] == ["a", "b"]
    assert {s.sync_run_id for s in result.snapshots} == {"run-1"}
    removed = result.snapshots[1]
    assert (removed.available, removed.stock, removed.cost_price) == (False, 0, Decimal("2.00"))  # last cost kept
    assert (result.changed, result.failed, result.errors) == (1, 1, ["SPOCKET: OutcomeUnknown: timeout"])


@pytest.mark.parametrize("bad", ["3", "24:00", "ab:cd"])
def test_full_at_setting_is_validated(bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.settings import Settings

    monkeypatch.setenv("OPS_SYNC_FULL_AT", bad)
    with pytest.raises(Exception):
        Settings()
