"""Pure parts of the history and drift (docs/history.md): entries, outcomes, comparison, verdict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.athoc import RowStatus
from shared.drift import DriftStatus, find_drift, verdict_reason
from shared.history import INVERTED_BASE, HistoryEntry, HistoryOutcome, row_outcome
from shared.last_applied import LastApplied

READ = datetime(2025, 10, 22, 12, 0, tzinfo=UTC)
DUTY = "On-Duty-DTG"


def applied(value: str, login: str, at: datetime = READ - timedelta(hours=1)) -> LastApplied:
    return LastApplied(value, datetime(2025, 10, 22, 10, 0), at, login)


def test_find_drift_compares_only_users_this_app_set() -> None:
    users = [
        {"LOGIN_ID": "a@x", DUTY: "22/10/2025 10:00:00"},  # in sync
        {"LOGIN_ID": "B@X", DUTY: "01/01/2020 00:00:00"},  # drift (login case ignored)
        {"LOGIN_ID": "c@x"},  # unset equals "": in sync with a BOF
        {"LOGIN_ID": "d@x", DUTY: None},  # null equals "" too, but this app set a value: drift
        {"LOGIN_ID": "never@x", DUTY: "01/01/2020 00:00:00"},  # never set by this app: never drift
        {"LOGIN_ID": "late@x", DUTY: ""},  # applied after the read began: not compared
    ]
    last = {
        "1": applied("22/10/2025 10:00:00", "a@x"),
        "2": applied("22/10/2025 10:00:00", "b@x"),
        "3": applied("", "c@x"),
        "4": applied("22/10/2025 10:00:00", "d@x"),
        "6": applied("22/10/2025 11:00:00", "late@x", at=READ),
    }
    check = find_drift(users, last, DUTY, READ)
    assert (check.users_checked, check.in_sync, check.drifted, check.too_recent) == (6, 2, 2, 1)
    assert [(d.employee_id, d.login, d.athoc_value, d.expected_value) for d in check.drift] == [
        ("2", "B@X", "01/01/2020 00:00:00", "22/10/2025 10:00:00"),
        ("4", "d@x", "", "22/10/2025 10:00:00"),
    ]
    assert check.drift[0].to_json()["last_event_time"] == "2025-10-22T10:00:00"


def test_verdict_names_drift_left_unrepaired() -> None:
    assert verdict_reason(None, "12:00") is None
    assert verdict_reason(DriftStatus(READ, 3, 3), "12:00") is None
    reason = verdict_reason(DriftStatus(READ, 3, 1), "12:00")
    assert reason is not None and reason.startswith("2 users'") and "reconcile --apply" in reason
    assert "(checked 12:00)" in reason
    assert DriftStatus(READ, 3, 1).to_json() == {"checked_at": "2025-10-22T12:00:00Z", "drifted": 3, "repaired": 1}


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (RowStatus.UPDATED, "applied"),
        (RowStatus.NOT_FOUND, "not_found"),
        (RowStatus.DENIED, "denied"),
        (RowStatus.ERROR, "error"),
        (RowStatus.MISSING, "pending"),
        (RowStatus.FAILED, "pending"),
        (None, "pending"),
    ],
)
def test_row_outcome(status: RowStatus | None, outcome: str) -> None:
    assert row_outcome(status).value == outcome


def test_entry_round_trip_and_newest_first_keys() -> None:
    older = HistoryEntry("00 7/x", HistoryOutcome.APPLIED, READ, "r1", datetime(2025, 10, 22, 7), "BON", "a.csv", 3, "")
    newer = HistoryEntry("00 7/x", HistoryOutcome.STALE, READ + timedelta(milliseconds=1), "r2")
    old_entity, new_entity = older.to_entity(), newer.to_entity()
    assert new_entity["RowKey"] < old_entity["RowKey"]  # newest first within the employee's range
    assert new_entity["PartitionKey"] == old_entity["PartitionKey"]
    assert old_entity["RowKey"].split("|")[1] == f"{INVERTED_BASE - int(READ.timestamp() * 1000):013d}"
    assert "/" not in old_entity["RowKey"]
    assert HistoryEntry.from_entity(old_entity) == older  # value_sent "" survives, None stays None
    assert HistoryEntry.from_entity(new_entity).to_json()["value_sent"] is None


def test_one_employees_entries_of_a_batch_share_an_entity_and_read_back_whole() -> None:
    from shared.history import GROUP_TEXT_LIMIT, HistoryOutcome, group_entities

    batch = datetime(2025, 10, 22, 12, 0, tzinfo=UTC)
    answered = batch + timedelta(seconds=2)
    superseded = [
        HistoryEntry("7", HistoryOutcome.SUPERSEDED, batch, "run", datetime(2025, 10, 22, 7, n), "BON", "a.csv", n)
        for n in range(1, 40)
    ]
    winner = HistoryEntry(
        "7", HistoryOutcome.APPLIED, answered, "run", datetime(2025, 10, 22, 8), "BOF", "b.csv", 3, ""
    )
    alone = HistoryEntry("8", HistoryOutcome.STALE, batch, "run", datetime(2025, 10, 22, 6), "BON", "a.csv", 9)
    entities = group_entities([*superseded, winner, alone])

    assert len(entities) == 2  # employee 7's forty entries in one entity, employee 8's one stored plainly
    grouped = next(e for e in entities if "events" in e)
    assert (grouped["outcome"], grouped["decided_at"]) == ("applied", answered)  # the newest entry's
    assert "events" not in next(e for e in entities if e is not grouped)
    read_back = [entry for entity in entities for entry in HistoryEntry.entries_of(entity)]
    assert sorted(read_back, key=repr) == sorted([*superseded, winner, alone], key=repr)

    # Past the text limit a group continues in another entity; nothing is lost.
    long_name = "x" * 2000 + ".csv"
    many = [HistoryEntry("9", HistoryOutcome.SUPERSEDED, batch, "run", None, "BON", long_name, n) for n in range(40)]
    split = group_entities(many)
    assert len(split) > 1 and all(len(e["events"]) <= GROUP_TEXT_LIMIT for e in split)
    assert [entry for entity in split for entry in HistoryEntry.entries_of(entity)] == many
