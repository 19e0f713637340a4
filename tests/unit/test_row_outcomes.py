"""AtHoc's row results mapped back to events and files (decisions.outcome_of_rows), and the job helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.athoc import RowResult, RowStatus
from shared.bobo_csv import Action, DutyEvent
from shared.decisions import PlannedUpdate, SourcedEvent, Watermark, outcome_of_rows, row_failure_message
from shared.errors import ErrorKind, most_urgent
from shared.jobs import capped

T0 = datetime(2025, 10, 22, 7, 41, 42)
MODIFIED = datetime(2025, 10, 22, 6, 42, tzinfo=UTC)


def update(employee: str, file_name: str, minutes: int = 0) -> PlannedUpdate:
    at = T0 + timedelta(minutes=minutes)
    event = DutyEvent(1, employee, employee.zfill(5), Action.BOOK_ON, at, at)
    return PlannedUpdate(
        employee, f"user{employee}@x", at.strftime("%d/%m/%Y %H:%M:%S"), SourcedEvent(event, file_name, MODIFIED)
    )


def row(u: PlannedUpdate, status: RowStatus, detail: str = "", kind: ErrorKind | None = None) -> RowResult:
    return RowResult(u.login, u.value, status, detail, kind=kind)


def test_settled_rows_become_watermarks_and_counts() -> None:
    a, b, c = update("1", "a.csv"), update("2", "a.csv", 1), update("3", "b.csv", 2)
    outcome = outcome_of_rows(
        [a, b, c], [row(a, RowStatus.UPDATED), row(b, RowStatus.NOT_FOUND), row(c, RowStatus.DENIED)]
    )
    assert outcome.settled == {
        "1": Watermark.from_event(a.source.event),
        "2": Watermark.from_event(b.source.event),
        "3": Watermark.from_event(c.source.event),
    }
    assert (outcome.answered, outcome.not_found, outcome.denied) == (3, 1, 1)
    assert outcome.updated_logins == {"user1@x"}
    assert outcome.retry_reasons == {} and outcome.failures == [] and outcome.error_kind is None


def test_unsettled_rows_keep_their_file_waiting_with_unconfirmed_watermarks() -> None:
    a, b, c = update("1", "a.csv"), update("2", "b.csv", 1), update("3", "b.csv", 2)
    outcome = outcome_of_rows(
        [a, b, c],
        [
            row(a, RowStatus.ERROR, "bad value"),
            row(b, RowStatus.FAILED, "503 after retries", ErrorKind.SERVER),
            row(c, RowStatus.FAILED, "503 after retries", ErrorKind.SERVER),
        ],
    )
    assert outcome.settled == {}
    assert outcome.answered == 1  # a failed request never reached AtHoc; a row error did
    assert outcome.retry_reasons == {
        "a.csv": "AtHoc error for user1@x: bad value",
        "b.csv": "AtHoc request failed: 503 after retries",
    }
    assert outcome.unconfirmed["b.csv"] == {
        "2": Watermark.from_event(b.source.event, confirmed=False),
        "3": Watermark.from_event(c.source.event, confirmed=False),
    }
    # One message per distinct failure: a failed chunk is one error, not one per user.
    assert outcome.failures == ["AtHoc error for user1@x: bad value", "AtHoc request failed: 503 after retries"]
    assert outcome.error_kind is ErrorKind.ROW


def test_an_auth_failure_outranks_other_kinds_and_unknown_logins_are_ignored() -> None:
    a, b = update("1", "a.csv"), update("2", "a.csv", 1)
    stray = RowResult("someone@else", "", RowStatus.UPDATED, "")
    outcome = outcome_of_rows(
        [a, b],
        [
            stray,
            row(a, RowStatus.FAILED, "timed out", ErrorKind.NETWORK),
            row(b, RowStatus.FAILED, "401", ErrorKind.AUTH),
        ],
    )
    assert outcome.error_kind is ErrorKind.AUTH
    assert outcome.answered == 0 and outcome.updated_logins == set()
    assert row_failure_message(RowResult("u@x", "", RowStatus.MISSING, "not in the answer")) == (
        "AtHoc missing for u@x: not in the answer"
    )


def test_most_urgent_keeps_the_first_kind_unless_a_settings_fix_comes() -> None:
    assert most_urgent(None, ErrorKind.NETWORK) is ErrorKind.NETWORK
    assert most_urgent(ErrorKind.NETWORK, ErrorKind.SERVER) is ErrorKind.NETWORK
    assert most_urgent(ErrorKind.NETWORK, ErrorKind.TLS) is ErrorKind.TLS
    assert most_urgent(ErrorKind.AUTH, ErrorKind.TLS) is ErrorKind.AUTH
    assert most_urgent(ErrorKind.AUTH, None) is ErrorKind.AUTH


def test_capped_lists_the_first_messages_and_counts_the_rest() -> None:
    messages = [f"m{i}" for i in range(25)]
    assert capped(messages, 20, "AtHoc errors") == [*messages[:20], "... and 5 more AtHoc errors"]
    assert capped(messages[:20], 20) == messages[:20]


def test_the_status_report_sums_only_counts_that_process_runs_record() -> None:
    from shared.jobs import PROCESS_COUNTS
    from shared.status_report import DAY_COUNTS, HOUR_COUNTS

    assert set(DAY_COUNTS) <= set(PROCESS_COUNTS) and set(HOUR_COUNTS) <= set(DAY_COUNTS)
