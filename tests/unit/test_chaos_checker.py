"""The chaos run's history check (bench.chaos.history_problems) and fault count, on synthetic input:
the check must be able to fail, and a BOF must be told apart from another BOF although both write ""."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bench.chaos import AppliedValue, Event, SentUpdate, fault_classes, history_problems, served_faults
from bench.common import DATETIME_FORMAT, login_of

EMPLOYEE = 7
LOGIN = login_of(EMPLOYEE)


def at(hhmm: str) -> datetime:
    return datetime(2025, 10, 22, int(hhmm[:2]), int(hhmm[3:]))


def update(send_id: str, action: str, hhmm: str) -> SentUpdate:
    when = at(hhmm)
    value = when.strftime(DATETIME_FORMAT) if action == "BON" else ""
    return SentUpdate(send_id, LOGIN, value, EMPLOYEE, action, when, when, file=f"{send_id}.csv")


# BOF 06:00, BON 06:05, BOF 06:10: one update each, in sends s1, s2, s3.
UPDATES = {"s1": update("s1", "BOF", "06:00"), "s2": update("s2", "BON", "06:05"), "s3": update("s3", "BOF", "06:10")}
SENT = {(u.send_id, u.login): u for u in UPDATES.values()}
EVENTS = [Event(u.event_time, u.created, u.action, EMPLOYEE) for u in UPDATES.values()]


def applied(*send_ids: str) -> list[AppliedValue]:
    return [AppliedValue(UPDATES[s].value, s) for s in send_ids]


def test_a_history_in_event_order_passes() -> None:
    assert history_problems(EMPLOYEE, applied("s1", "s2", "s3"), SENT, EVENTS) == []
    assert history_problems(EMPLOYEE, applied("s2", "s2", "s3", "s3"), SENT, EVENTS) == []  # resends


def test_a_move_back_from_a_bof_to_an_older_bon_is_reported() -> None:
    # AtHoc went "" (BOF 06:10) -> BON 06:05. Matching by value alone would take "" for the earlier
    # BOF 06:00 and pass; the send id names BOF 06:10.
    history = applied("s3", "s2")
    assert [a.value for a in history] == ["", "22/10/2025 06:05:00"]
    problems = history_problems(EMPLOYEE, history, SENT, EVENTS)
    assert len(problems) == 1
    assert "moved back" in problems[0] and "BON 2025-10-22 06:05:00" in problems[0]
    assert "after BOF 2025-10-22 06:10:00" in problems[0]


def test_a_move_back_is_measured_against_the_newest_event_so_far() -> None:
    problems = history_problems(EMPLOYEE, applied("s3", "s1", "s2"), SENT, EVENTS)
    assert len(problems) == 2 and all("after BOF 2025-10-22 06:10:00" in p for p in problems)


def test_values_no_recorded_update_explains_are_reported() -> None:
    history = [
        AppliedValue("", None),  # a request without a send id
        AppliedValue("", "unknown"),  # a send that recorded no update for this user
        AppliedValue("22/10/2025 06:05:00", "s1"),  # s1 sent "" for this user, not this value
        AppliedValue(None, "s1"),  # null instead of ""
    ]
    problems = history_problems(EMPLOYEE, history, SENT, EVENTS)
    assert len(problems) == 4
    assert "no recorded update" in problems[0] and "no recorded update" in problems[1]
    assert "the update sent was ''" in problems[2] and "null written" in problems[3]


def test_an_update_of_an_event_never_uploaded_is_reported() -> None:
    invented = update("s9", "BON", "06:07")
    problems = history_problems(EMPLOYEE, [AppliedValue(invented.value, "s9")], {("s9", LOGIN): invented}, EVENTS)
    assert len(problems) == 1 and "no uploaded event" in problems[0]


@dataclass
class Request:
    seq: int
    kind: str
    status: int | None
    fault: str | None = None


def test_served_faults_count_what_the_simulator_answered() -> None:
    log = [
        Request(1, "token", 200),
        Request(2, "sync", 429, "fail"),
        Request(3, "sync", 401),  # revoked token
        Request(4, "token", 503, "fail"),
        Request(5, "token", 200),
        Request(6, "sync", 200),  # recovered
        Request(7, "sync", None, "drop"),
        Request(8, "sync", None, "drop_after_apply"),
        Request(9, "sync", 503, "fail"),
        Request(10, "sync", 401),  # not recovered
    ]
    served = served_faults(reversed(log))  # ordered by seq, not by log position
    assert served == {
        "API 401": 2,
        "sync 429": 1,
        "sync 503": 1,
        "sync dropped after apply": 1,
        "sync dropped before apply": 1,
        "token 503": 1,
        "token revoked: 401, then recovered": 1,
    }
    assert fault_classes(served) == {"429": 1, "503": 2, "token revocation": 1, "dropped connection": 2}
    assert fault_classes(served_faults([Request(1, "sync", 200)])) == dict.fromkeys(fault_classes(served), 0)
