"""Pure logic of the mapping sync and the cleanup: the schedule rule, the diff, the safety rule, staleness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.cleanup import DutyValue, classify_values, duty_values, is_stale, parse_duty_value
from shared.mapping_sync import (
    Conflict,
    ScheduleRule,
    daily_moment,
    decide_mapping_sync,
    diff_mappings,
    mappings_from_users,
    shrink_refusal,
)
from shared.records import JobStatus, MappingEntry, Outcome

LONDON = ZoneInfo("Europe/London")
FMT = "%d/%m/%Y %H:%M:%S"


def local(text: str, zone: ZoneInfo = LONDON, fold: int = 0) -> datetime:
    """'2025-07-01 20:05' local wall time -> aware UTC instant."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=zone, fold=fold).astimezone(UTC)


def utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def ok(last_success: datetime, **counts: int) -> JobStatus:
    return JobStatus(
        kind="sync-mappings",
        last_status=Outcome.SUCCESS,
        last_success=last_success,
        last_attempt=last_success,
        last_counts=counts or {"users_fetched": 10, "mappings_total": 8},
    )


NEVER = JobStatus(kind="sync-mappings")
SKIPPED_NEVER_SUCCEEDED = JobStatus(
    kind="sync-mappings", last_status=Outcome.SKIPPED, last_attempt=utc("2025-07-01 10:00")
)
FAILED_AFTER_SUCCESS = JobStatus(
    kind="sync-mappings",
    last_status=Outcome.FAILED,
    last_success=local("2025-07-01 20:05"),
    last_error="AtHoc unreachable",
    last_counts={"users_fetched": 0},
)

LONDON_20 = ScheduleRule(20, 2, "Europe/London")
LONDON_01 = ScheduleRule(1, 2, "Europe/London")
UTC_00 = ScheduleRule(0, 2, "UTC")

# (case, status, now (UTC), rule, expected run?, a word the reason must contain)
SCHEDULE_TABLE = [
    ("never synced", NEVER, local("2025-07-01 09:00"), LONDON_20, True, "never"),
    ("only skips so far", SKIPPED_NEVER_SUCCEEDED, local("2025-07-01 09:00"), LONDON_20, True, "never"),
    ("last attempt failed", FAILED_AFTER_SUCCESS, local("2025-07-01 20:30"), LONDON_20, True, "failed"),
    ("last sync returned no data", ok(local("2025-07-01 20:05"), users_fetched=0), local("2025-07-01 21:00"),
     LONDON_20, True, "no data"),
    ("older than max age, before the hour", ok(local("2025-06-29 08:00")), local("2025-07-01 09:00"), LONDON_20,
     True, "BOBO_MAPPING_MAX_AGE_DAYS"),
    ("exactly max age is not older", ok(local("2025-06-29 09:00")), local("2025-07-01 09:00"), LONDON_20,
     False, "not due"),
    ("fractional max age", ok(utc("2025-07-01 00:00")), utc("2025-07-01 13:00"), ScheduleRule(20, 0.5, "UTC"),
     True, "MAX_AGE"),
    ("before the hour, synced yesterday evening", ok(local("2025-06-30 20:05")), local("2025-07-01 19:59"),
     LONDON_20, False, "after 20:00"),
    ("at the hour exactly", ok(local("2025-06-30 20:05")), local("2025-07-01 20:00"), LONDON_20, True, "daily"),
    ("after the hour, already synced since", ok(local("2025-07-01 20:05")), local("2025-07-01 23:59"), LONDON_20,
     False, "already"),
    ("after the hour, synced this morning only", ok(local("2025-07-01 10:00")), local("2025-07-01 20:30"),
     LONDON_20, True, "daily"),
    ("late evening, synced yesterday", ok(local("2025-06-30 21:00")), local("2025-07-01 23:59"), LONDON_20, True,
     "daily"),
    ("just after local midnight", ok(local("2025-07-01 20:05")), local("2025-07-02 00:30"), LONDON_20, False,
     "not due"),
    # Summer: 19:30 UTC is 20:30 BST, past the hour (a UTC comparison would wait another hour).
    ("BST: the hour is local", ok(local("2025-06-30 20:05")), utc("2025-07-01 19:30"), LONDON_20, True, "daily"),
    ("BST: 18:59 UTC is 19:59 local", ok(local("2025-06-30 20:05")), utc("2025-07-01 18:59"), LONDON_20, False,
     "not due"),
    ("GMT: 19:30 UTC is 19:30 local", ok(local("2025-01-14 20:05")), utc("2025-01-15 19:30"), LONDON_20, False,
     "not due"),
    ("GMT: 20:00 UTC is 20:00 local", ok(local("2025-01-14 20:05")), utc("2025-01-15 20:00"), LONDON_20, True,
     "daily"),
    # Spring forward, 30 March 2025: 01:00 GMT becomes 02:00 BST.
    ("spring day, 20:00 BST = 19:00 UTC", ok(local("2025-03-29 20:05")), utc("2025-03-30 19:00"), LONDON_20, True,
     "daily"),
    ("spring day, 18:59 UTC is before", ok(local("2025-03-29 20:05")), utc("2025-03-30 18:59"), LONDON_20, False,
     "not due"),
    ("hour 01 in the spring gap: before", ok(local("2025-03-29 01:05")), utc("2025-03-30 00:59"), LONDON_01, False,
     "not due"),
    ("hour 01 in the spring gap: first instant after it", ok(local("2025-03-29 01:05")), utc("2025-03-30 01:00"),
     LONDON_01, True, "daily"),
    # Fall back, 26 October 2025: 02:00 BST becomes 01:00 GMT; 01:00 local happens twice.
    ("hour 01 repeated: first occurrence runs", ok(local("2025-10-25 01:05")), utc("2025-10-26 00:00"), LONDON_01,
     True, "daily"),
    ("hour 01 repeated: second occurrence does not rerun", ok(utc("2025-10-26 00:05")), utc("2025-10-26 01:30"),
     LONDON_01, False, "already"),
    ("autumn day, 20:00 GMT = 20:00 UTC", ok(local("2025-10-25 20:05")), utc("2025-10-26 19:59"), LONDON_20, False,
     "not due"),
    ("UTC zone, hour 0 at midnight", ok(utc("2025-07-01 00:10")), utc("2025-07-02 00:00"), UTC_00, True, "daily"),
    ("a success from the future (clock skew)", ok(utc("2025-07-01 23:00")), utc("2025-07-01 21:00"),
     ScheduleRule(20, 2, "UTC"), False, "already"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "now", "rule", "expected", "word"),
    [row[1:] for row in SCHEDULE_TABLE],
    ids=[row[0] for row in SCHEDULE_TABLE],
)
def test_schedule_decision_table(status: JobStatus, now: datetime, rule: ScheduleRule, expected: bool, word: str):
    run, reason = decide_mapping_sync(status, now, rule)
    assert run is expected, reason
    assert word.lower() in reason.lower()


def test_decision_reads_real_settings(make_env_free_settings) -> None:
    status = ok(local("2025-06-30 20:05"))
    assert decide_mapping_sync(status, utc("2025-07-01 19:30"), make_env_free_settings)[0] is True
    assert decide_mapping_sync(status, utc("2025-07-01 18:30"), make_env_free_settings)[0] is False


@pytest.fixture
def make_env_free_settings():
    from shared.settings import Settings

    return Settings.from_env(
        {
            "ATHOC_SERVER_URL": "http://127.0.0.1:1",
            "ATHOC_ORG_CODE": "O",
            "ATHOC_CLIENT_ID": "c",
            "ATHOC_CLIENT_SECRET": "s",
            "ATHOC_USERNAME": "u",
            "ATHOC_PASSWORD": "p",
            "BOBO_STORAGE": "UseDevelopmentStorage=true",
            "BOBO_TIMEZONE": "Europe/London",
        }
    )


def test_daily_moment_in_the_gap_and_the_repeated_hour() -> None:
    assert daily_moment(utc("2025-03-30 12:00"), 1, LONDON) == utc("2025-03-30 01:00")  # = 02:00 BST
    assert daily_moment(utc("2025-10-26 12:00"), 1, LONDON) == utc("2025-10-26 00:00")  # first 01:00 (BST)
    assert daily_moment(utc("2025-07-01 23:30"), 20, LONDON) == utc("2025-07-02 19:00")  # 00:30 BST on the 2nd


instants = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC))
zones = st.sampled_from(["UTC", "Europe/London", "America/New_York", "Australia/Lord_Howe"])


@given(t=instants, zone=zones, hour=st.integers(0, 23))
def test_a_success_is_never_followed_by_a_run_at_once(t: datetime, zone: str, hour: int) -> None:
    assert decide_mapping_sync(ok(t), t, ScheduleRule(hour, 2, zone))[0] is False


@given(t=instants, zone=zones, hour=st.integers(0, 23), age=st.floats(0.05, 5))
def test_older_than_max_age_always_runs(t: datetime, zone: str, hour: int, age: float) -> None:
    rule = ScheduleRule(hour, age, zone)
    assert decide_mapping_sync(ok(t), t + timedelta(days=age, minutes=1), rule)[0] is True


@given(t=instants, zone=zones, hour=st.integers(0, 23))
def test_at_most_one_daily_run_per_local_day(t: datetime, zone: str, hour: int) -> None:
    """Once a daily run succeeded at its moment, nothing is due again before the next day's moment."""
    rule = ScheduleRule(hour, 2, zone)
    moment = daily_moment(t, hour, ZoneInfo(zone))
    status = ok(moment)
    for minutes in (1, 60, 6 * 60, 12 * 60):
        later = moment + timedelta(minutes=minutes)
        if later < daily_moment(later, hour, ZoneInfo(zone)) or later.astimezone(ZoneInfo(zone)).date() == (
            moment.astimezone(ZoneInfo(zone)).date()
        ):
            assert decide_mapping_sync(status, later, rule)[0] is False


# ---------------------------------------------------------------- mappings from AtHoc users


def user(login: str, collar: object = None, field: str = "Collar-Number") -> dict[str, object]:
    row: dict[str, object] = {"LOGIN_ID": login, "USER_ID": 1}
    if collar is not None:
        row[field] = collar
    return row


def test_collar_ids_are_normalised_and_empty_ones_ignored() -> None:
    found = mappings_from_users(
        [user("a", "00123"), user("b", " 456 "), user("c", ""), user("d"), user("e", "   "), user("f", 789)],
        "Collar-Number",
    )
    assert found.wanted == {
        "123": MappingEntry("123", "a", "00123"),
        "456": MappingEntry("456", "b", "456"),
        "789": MappingEntry("789", "f", "789"),
    }
    assert found.users_without_collar == 3 and found.conflicts == ()


def test_field_names_match_case_insensitively() -> None:
    found = mappings_from_users([{"login_id": "a", "collar-number": "7"}], "Collar-Number")
    assert found.wanted == {"7": MappingEntry("7", "a", "7")}


def test_two_users_claiming_one_id_is_a_conflict_and_neither_wins() -> None:
    found = mappings_from_users([user("a", "00123"), user("b", "123"), user("c", "5")], "Collar-Number")
    assert found.conflicts == (Conflict("123", ("a", "b")),)
    assert set(found.wanted) == {"5"}


def test_the_same_login_twice_is_not_a_conflict() -> None:
    found = mappings_from_users([user("a", "9"), user("A", "09")], "Collar-Number")
    assert found.conflicts == () and set(found.wanted) == {"9"}


def test_diff_writes_only_what_changed() -> None:
    current = {
        "1": MappingEntry("1", "one", "1"),
        "2": MappingEntry("2", "two", "2"),
        "3": MappingEntry("3", "three", "3"),
        "4": MappingEntry("4", "four", "4"),
    }
    wanted = {
        "1": MappingEntry("1", "one", "1"),  # unchanged: not written
        "2": MappingEntry("2", "two-new", "2"),  # login changed
        "3": MappingEntry("3", "three", "003"),  # collar text changed
        "5": MappingEntry("5", "five", "5"),
    }
    diff = diff_mappings(current, wanted, frozenset())
    assert [e.employee_id for e in diff.added] == ["5"]
    assert [e.employee_id for e in diff.updated] == ["2", "3"]
    assert diff.removed == ("4",) and diff.unmapped_conflicts == ()
    assert diff_mappings(wanted, wanted, frozenset()).changed is False


def test_diff_separates_conflict_removals_from_users_gone() -> None:
    current = {"1": MappingEntry("1", "a", "1"), "2": MappingEntry("2", "b", "2")}
    diff = diff_mappings(current, {}, frozenset({"1"}))
    assert diff.removed == ("2",) and diff.unmapped_conflicts == ("1",)
    assert diff.deletes == ("2", "1")


@pytest.mark.parametrize(
    ("current", "removed", "limit", "refused"),
    [
        (10, 5, 50, False),  # exactly the limit is allowed: "more than" refuses
        (10, 6, 50, True),
        (0, 0, 50, False),
        (5, 0, 0, False),
        (1, 1, 50, True),
        (4, 4, 100, False),
        (10, 1, 0, True),
        (1000, 501, 50, True),
    ],
)
def test_shrink_rule(current: int, removed: int, limit: float, refused: bool) -> None:
    refusal = shrink_refusal(current, removed, limit)
    assert (refusal is not None) is refused
    if refused:
        assert "BOBO_MAPPING_MAX_REMOVE_PERCENT" in refusal and "unchanged" in refusal


# ---------------------------------------------------------------- duty values and staleness


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("01/07/2025 12:00:00", utc("2025-07-01 11:00")),  # BST
        ("  15/01/2025 12:00:00 ", utc("2025-01-15 12:00")),  # GMT, whitespace tolerated
        ("26/10/2025 01:30:00", datetime(2025, 10, 26, 1, 30, tzinfo=UTC)),  # twice: the later instant (GMT)
        ("30/03/2025 01:30:00", datetime(2025, 3, 30, 1, 30, tzinfo=UTC)),  # never shown: the later reading
        ("yesterday", None),
        ("", None),
        ("31/02/2025 10:00:00", None),
        ("2025-07-01 12:00:00", None),
        ("01/07/2025 12:00", None),
    ],
)
def test_parse_duty_value(value: str, expected: datetime | None) -> None:
    assert parse_duty_value(value, FMT, LONDON) == expected


def test_a_format_with_an_offset_uses_it() -> None:
    assert parse_duty_value("2025-07-01 12:00 +0200", "%Y-%m-%d %H:%M %z", LONDON) == utc("2025-07-01 10:00")


@pytest.mark.parametrize(
    ("age_hours", "stale"),
    [(23, False), (23.99, False), (24, False), (24.01, True), (25, True), (-2, False)],
)
def test_is_stale_is_strictly_older_than(age_hours: float, stale: bool) -> None:
    now = utc("2025-07-01 12:00")
    assert is_stale(now - timedelta(hours=age_hours), now, 24) is stale


def test_classify_sorts_values() -> None:
    now = utc("2025-07-02 12:00")
    values = [
        DutyValue("fresh", "02/07/2025 10:00:00"),
        DutyValue("old", "01/07/2025 10:00:00"),  # 27 h (BST)
        DutyValue("junk", "n/a"),
    ]
    result = classify_values(values, datetime_format=FMT, zone=LONDON, now_utc=now, max_age_hours=24)
    assert result.checked == 3
    assert result.stale == (DutyValue("old", "01/07/2025 10:00:00"),)
    assert result.unparsable == (DutyValue("junk", "n/a"),)


def test_duty_values_skip_empty_and_missing() -> None:
    rows = [
        {"LOGIN_ID": "a", "On-Duty-DTG": "01/07/2025 10:00:00"},
        {"LOGIN_ID": "b", "On-Duty-DTG": ""},
        {"LOGIN_ID": "c", "On-Duty-DTG": None},
        {"LOGIN_ID": "d"},
        {"LOGIN_ID": "e", "on-duty-dtg": "  "},
    ]
    assert duty_values(rows, "On-Duty-DTG") == [DutyValue("a", "01/07/2025 10:00:00")]
