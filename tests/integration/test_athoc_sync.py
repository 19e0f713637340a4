"""SyncByCommonNames against the simulator over real HTTP: what is sent, chunking, every row outcome,
answers that confirm nobody by position."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from shared.athoc import AtHocClient, RowStatus
from shared.errors import ErrorKind
from tests.integration.athoc_support import (
    COLLAR,
    DUTY,
    WHEN,
    FakeTime,
    statuses,
    sync_bodies,
)
from tools.athoc_sim import AtHocSimulator

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("clean_environment")]


def test_only_login_and_duty_field_are_sent_to_existing_users_only(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient]
) -> None:
    report = make_client(sim).sync_duty_values([("alice", WHEN), ("bob", "")])
    assert statuses(report) == [RowStatus.UPDATED, RowStatus.UPDATED]
    (request,) = [r for r in sim.requests if r.kind == "sync"]
    assert request.method == "POST"
    assert request.query == {"syncExistingUsersOnly": "true", "AllowPartialUpdate": "false"}
    assert request.body == [{"LOGIN_ID": "alice", DUTY: WHEN}, {"LOGIN_ID": "bob", DUTY: ""}]
    assert request.headers["Content-Type"].startswith("application/json")
    assert sim.history("bob") == [""]  # cleared with an empty string, never null
    alice = sim.get_user("alice")
    assert alice is not None
    assert alice[DUTY] == WHEN
    assert alice[COLLAR] == "5"  # other attributes untouched


def test_chunking_keeps_input_order(
    make_sim: Callable[..., AtHocSimulator], make_client: Callable[..., AtHocClient]
) -> None:
    sim = make_sim()
    logins = [f"user{i:05d}@force.example" for i in range(2500)]
    sim.add_users([{"LOGIN_ID": login} for login in logins[:2400]])  # the last 100 do not exist
    report = make_client(sim).sync_duty_values([(login, WHEN) for login in logins])
    assert [len(body) for body in sync_bodies(sim)] == [1000, 1000, 500]
    assert report.requests == 3
    assert [row.login for row in report.rows] == logins
    counts = report.by_status()
    assert counts[RowStatus.UPDATED] == 2400
    assert counts[RowStatus.NOT_FOUND] == 100
    assert sum(counts.values()) == 2500


def test_every_row_classification(sim: AtHocSimulator, make_client: Callable[..., AtHocClient]) -> None:
    sim.deny("carol")
    report = make_client(sim).sync_duty_values(
        [("alice", WHEN), ("ghost", WHEN), ("carol", WHEN), ("dave", "31/02/2024 25:00:00"), ("bob", "")]
    )
    assert statuses(report) == [
        RowStatus.UPDATED,
        RowStatus.NOT_FOUND,
        RowStatus.DENIED,
        RowStatus.ERROR,
        RowStatus.UPDATED,
    ]
    assert "Invalid value" in report.rows[3].detail
    assert "does not exist" in report.rows[1].detail
    assert sim.get_user("ghost") is None  # never created


def test_unknown_duty_attribute_is_a_row_error_not_not_found(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient]
) -> None:
    report = make_client(sim, duty_field="On-Duty-Typo").sync_duty_values([("alice", WHEN)])
    assert statuses(report) == [RowStatus.ERROR]
    assert "On-Duty-Typo" in report.rows[0].detail


def test_rows_missing_from_the_answer_are_not_confirmed(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient]
) -> None:
    sim.malform_next(1, "drop_rows")
    report = make_client(sim).sync_duty_values([("alice", WHEN), ("ghost", WHEN), ("bob", WHEN)])
    assert statuses(report) == [RowStatus.UPDATED, RowStatus.NOT_FOUND, RowStatus.MISSING]


@pytest.mark.parametrize("mode", ["not_json", "object"])
def test_malformed_answers_fail_the_chunk(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient], fake_time: FakeTime, mode: str
) -> None:
    sim.malform_next(1, mode)
    report = make_client(sim, sync_chunk_size=2).sync_duty_values(
        [("alice", WHEN), ("bob", WHEN), ("carol", WHEN), ("dave", WHEN)]
    )
    assert statuses(report) == [RowStatus.FAILED, RowStatus.FAILED, RowStatus.UPDATED, RowStatus.UPDATED]
    assert all(row.transient and row.kind is ErrorKind.PROTOCOL for row in report.rows[:2])
    assert len(report.errors) == 1
    assert sim.count("sync") == 2  # not retried within the call; the next chunk is unaffected
    assert fake_time.sleeps == []


def test_empty_input_makes_no_request(sim: AtHocSimulator, make_client: Callable[..., AtHocClient]) -> None:
    report = make_client(sim).sync_duty_values([])
    assert report.rows == [] and report.requests == 0
    assert sim.requests == []


def test_info_line_per_call(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="shared.athoc")
    sim.deny("carol")
    make_client(sim).sync_duty_values([("alice", WHEN), ("ghost", WHEN), ("carol", WHEN)])
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("SyncByCommonNames:")]
    assert len(lines) == 1
    assert "3 rows in 1 requests, 1 updated, 1 not found, 1 denied, 0 errors" in lines[0]


def test_sync_rows_without_login_leave_only_their_users_unconfirmed(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient]
) -> None:
    sim.deny("carol")
    sim.malform_next(1, "anonymous_errors")
    client = make_client(sim)
    report = client.sync_duty_values([("alice", WHEN), ("ghost", WHEN), ("carol", WHEN), ("bob", "")])
    assert statuses(report) == [RowStatus.UPDATED, RowStatus.MISSING, RowStatus.MISSING, RowStatus.UPDATED]
    missing = report.rows[1].detail
    assert "not confirmed" in missing and "2 rows named no login sent" in missing
    assert "ghost does not exists" in missing and "Access denied" in missing  # the unattributed texts
    assert report.errors == () and sim.history("alice") == [WHEN]
    # Not a confirmation: the next attempt sends them again and gets their real outcome.
    again = client.sync_duty_values([("ghost", WHEN), ("carol", WHEN)])
    assert statuses(again) == [RowStatus.NOT_FOUND, RowStatus.DENIED]


def test_sync_row_naming_someone_else_confirms_nobody_by_position(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient]
) -> None:
    sim.malform_next(1, "wrong_logins")
    report = make_client(sim).sync_duty_values([("alice", WHEN), ("bob", WHEN)])
    assert statuses(report) == [RowStatus.MISSING, RowStatus.UPDATED]
    assert "not-alice" in report.rows[0].detail


def test_conflicting_rows_for_one_login_are_an_error_not_a_pick(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient]
) -> None:
    sim.malform_next(1, "conflicting_rows")  # alice: OK and Error
    report = make_client(sim).sync_duty_values([("alice", WHEN), ("bob", WHEN)])
    assert statuses(report) == [RowStatus.ERROR, RowStatus.UPDATED]
    assert "2 conflicting rows" in report.rows[0].detail and "Internal error" in report.rows[0].detail
    # The same login sent twice gets its two rows in order, each classified on its own.
    twice = make_client(sim).sync_duty_values([("alice", WHEN), ("alice", "")])
    assert statuses(twice) == [RowStatus.UPDATED, RowStatus.UPDATED]
