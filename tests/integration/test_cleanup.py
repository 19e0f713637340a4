"""Stale duty cleanup and retention against Azurite and the AtHoc simulator."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from azure.data.tables import UpdateMode
from azure.functions.timer import TimerRequest

from shared.cleanup import CleanupResult, run_cleanup
from shared.records import FileRecord, FileState, JobKind, RunRecord, utcnow
from shared.runtime import Runtime
from shared.settings import Settings
from tools.athoc_sim import AtHocSimulator

LONDON = ZoneInfo("Europe/London")
FMT = "%d/%m/%Y %H:%M:%S"
DUTY = "On-Duty-DTG"
FAST = {"ATHOC_MAX_RETRIES": "1", "ATHOC_CALL_BUDGET_SECONDS": "5"}


def wall(instant: datetime) -> str:
    """The duty value BOBO would have written at `instant`: local wall time in Europe/London."""
    return instant.astimezone(LONDON).strftime(FMT)


def utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


@pytest.fixture
def runtime(make_runtime) -> Runtime:
    return make_runtime(BOBO_TIMEZONE="Europe/London")


def duty(sim: Any, login: str) -> Any:
    return sim.get_user(login).get(DUTY)


def test_23_hours_stays_25_hours_is_cleared(runtime, athoc_sim) -> None:
    now = utc("2025-07-01 12:00")
    athoc_sim.add_user("h23@x", duty=wall(now - timedelta(hours=23)))
    athoc_sim.add_user("h24@x", duty=wall(now - timedelta(hours=24)))  # exactly the limit: not older
    athoc_sim.add_user("h25@x", duty=wall(now - timedelta(hours=25)))
    athoc_sim.add_user("off@x", duty="")
    athoc_sim.add_user("never@x")

    result = run_cleanup(runtime, now=now)

    assert result.status == "success" and result.exit_code == 0, result.errors
    assert (result.users_checked, result.stale_found, result.cleared, result.unparsable) == (3, 1, 1, 0)
    assert athoc_sim.history("h25@x") == [""]
    assert athoc_sim.history("h23@x") == [] and athoc_sim.history("h24@x") == []
    assert athoc_sim.history("off@x") == [] and athoc_sim.history("never@x") == []
    assert result.search == "criteria"
    searches = [r for r in athoc_sim.requests if r.kind == "search"]
    assert all(r.query.get("Criteria") == f"{DUTY} pr" for r in searches)
    # Only LOGIN_ID and the duty field are sent, and the value is "" (never null).
    bodies = [r.body for r in athoc_sim.requests if r.kind == "sync"]
    assert bodies == [[{"LOGIN_ID": "h25@x", DUTY: ""}]]

    again = run_cleanup(runtime, now=now)  # idempotent: nothing stale is left
    assert (again.stale_found, again.cleared) == (0, 0) and athoc_sim.history("h25@x") == [""]


def test_whoever_set_the_value_it_is_cleared(runtime, athoc_sim) -> None:
    now = utc("2025-07-01 12:00")
    athoc_sim.add_user("manual@x", collar="5", duty=wall(now - timedelta(days=3)))  # set by hand in AtHoc
    assert run_cleanup(runtime, now=now).cleared == 1
    assert duty(athoc_sim, "manual@x") == ""


@pytest.mark.parametrize(
    ("value", "now", "stale"),
    [
        # Spring forward (30 March 2025, 01:00 GMT -> 02:00 BST): 24.5 h of wall clock, 23.5 h really.
        ("29/03/2025 12:00:00", utc("2025-03-30 11:30"), False),
        ("29/03/2025 12:00:00", utc("2025-03-30 12:30"), True),
        # Fall back (26 October 2025, 02:00 BST -> 01:00 GMT): 23.5 h of wall clock, 24.5 h really.
        ("25/10/2025 12:00:00", utc("2025-10-26 11:30"), True),
        ("25/10/2025 12:00:00", utc("2025-10-26 10:30"), False),
        # 01:30 happened twice on 26 October: read as the later (GMT) instant, so never cleared early.
        ("26/10/2025 01:30:00", utc("2025-10-27 01:00"), False),
        ("26/10/2025 01:30:00", utc("2025-10-27 01:31"), True),
        # 01:30 never happened on 30 March: read as 01:30 GMT (the later reading).
        ("30/03/2025 01:30:00", utc("2025-03-31 01:00"), False),
        ("30/03/2025 01:30:00", utc("2025-03-31 01:31"), True),
    ],
)
def test_across_daylight_saving_changes(runtime, athoc_sim, value: str, now: datetime, stale: bool) -> None:
    athoc_sim.add_user("dst@x", duty=value)
    result = run_cleanup(runtime, now=now)
    assert result.stale_found == int(stale) and result.cleared == int(stale)
    assert athoc_sim.history("dst@x") == ([""] if stale else [])


def test_unparsable_values_are_reported_never_cleared(runtime, athoc_sim) -> None:
    now = utc("2025-07-01 12:00")
    junk = {"a@x": "yesterday", "b@x": "2025-06-01T10:00:00", "c@x": "31/02/2025 10:00:00"}
    for login, value in junk.items():
        athoc_sim.add_user(login, duty=value)
    athoc_sim.add_user("old@x", duty=wall(now - timedelta(days=2)))

    result = run_cleanup(runtime, now=now)

    assert (result.unparsable, result.stale_found, result.cleared) == (3, 1, 1)
    data = result.to_json()
    assert sorted(v["login"] for v in data["unparsable_values"]) == sorted(junk)
    assert all(athoc_sim.history(login) == [] for login in junk)
    assert all(duty(athoc_sim, login) == value for login, value in junk.items())
    assert result.status == "success"


def test_dry_run_lists_and_changes_nothing(runtime, athoc_sim) -> None:
    now = utc("2025-07-01 12:00")
    athoc_sim.add_user("old@x", duty=wall(now - timedelta(hours=30)))
    athoc_sim.add_user("new@x", duty=wall(now - timedelta(hours=1)))
    before = utcnow() - timedelta(minutes=1)

    result = run_cleanup(runtime, dry_run=True, now=now)

    data = json.loads(json.dumps(result.to_json()))
    assert data["dry_run"] is True and data["stale_found"] == 1 and data["cleared"] == 0
    assert data["stale"] == [{"login": "old@x", "value": wall(now - timedelta(hours=30))}]
    for key in ("users_checked", "stale_found", "cleared", "unparsable"):
        assert type(data[key]) is int
    assert athoc_sim.history("old@x") == [] and athoc_sim.count("sync") == 0
    assert data["retention"]["ran"] is False
    assert runtime.state.job_status(JobKind.CLEANUP).last_status == "never"
    assert [r for r in runtime.state.runs_since(before) if r.kind == JobKind.CLEANUP] == []


def test_run_log_status_and_summary_log(runtime, athoc_sim, caplog) -> None:
    now = utcnow()
    athoc_sim.add_user("old@x", duty=wall(now - timedelta(hours=30)))
    with caplog.at_level("INFO", logger="shared.cleanup"):
        result = run_cleanup(runtime, trigger="test")
    runs = [r for r in runtime.state.runs_since(now - timedelta(minutes=1)) if r.kind == JobKind.CLEANUP]
    assert len(runs) == 1 and runs[0].run_id == result.run_id and runs[0].counts["cleared"] == 1
    status = runtime.state.job_status(JobKind.CLEANUP)
    assert status.last_status == "success" and status.last_counts["stale_found"] == 1
    summary = [r for r in caplog.records if r.name == "shared.cleanup" and r.message.startswith("cleanup success")]
    assert len(summary) == 1 and summary[0].job_kind == "cleanup" and summary[0].cleared == 1


def test_denied_and_vanished_users_are_counted_not_failures(runtime, athoc_sim) -> None:
    now = utc("2025-07-01 12:00")
    athoc_sim.add_user("denied@x", duty=wall(now - timedelta(days=2)))
    athoc_sim.add_user("fine@x", duty=wall(now - timedelta(days=2)))
    athoc_sim.deny("denied@x")
    result = run_cleanup(runtime, now=now)
    assert (result.stale_found, result.cleared, result.users_denied) == (2, 1, 1)
    assert result.status == "success" and result.exit_code == 0


@pytest.fixture
def no_presence_sim(sim_factory) -> tuple[AtHocSimulator, Runtime]:
    return sim_factory(supports_presence=False, env={"BOBO_TIMEZONE": "Europe/London", "ATHOC_PAGE_SIZE": "2"})


def test_a_server_without_pr_is_read_in_full_and_filtered_here(no_presence_sim) -> None:
    sim, runtime = no_presence_sim
    now = utc("2025-07-01 12:00")
    sim.add_user("old@x", duty=wall(now - timedelta(hours=26)))
    sim.add_user("new@x", duty=wall(now - timedelta(hours=2)))
    for i in range(5):
        sim.add_user(f"off{i}@x", duty="" if i % 2 else None)

    result = run_cleanup(runtime, now=now)

    assert result.search == "all users" and result.status == "success"
    assert (result.users_checked, result.stale_found, result.cleared) == (2, 1, 1)
    assert sim.history("old@x") == [""] and sim.history("new@x") == []
    searches = [r for r in sim.requests if r.kind == "search"]
    assert searches[0].status == 400 and "Criteria" in searches[0].query
    assert all("Criteria" not in r.query for r in searches[1:])


@pytest.mark.parametrize("status", [404, 422, 500, 501])
def test_any_failure_of_the_criteria_search_falls_back_to_reading_every_user(
    make_runtime, athoc_sim, caplog, status: int
) -> None:
    runtime = make_runtime(BOBO_TIMEZONE="Europe/London", ATHOC_MAX_RETRIES="5")
    now = utc("2025-07-01 12:00")
    athoc_sim.add_user("old@x", duty=wall(now - timedelta(hours=26)))
    athoc_sim.add_user("new@x", duty=wall(now - timedelta(hours=2)))
    athoc_sim.add_user("off@x")
    athoc_sim.configure(criteria_status=status)

    result = run_cleanup(runtime, now=now)

    assert result.status == "success" and result.search == "all users", result.errors
    assert (result.users_checked, result.stale_found, result.cleared) == (2, 1, 1)
    assert athoc_sim.history("old@x") == [""] and athoc_sim.history("new@x") == []
    with_criteria = [r for r in athoc_sim.requests if r.kind == "search" and "Criteria" in r.query]
    # A transient 500 gets one retry (not ATHOC_MAX_RETRIES=5): the fallback starts quickly.
    assert len(with_criteria) == (2 if status == 500 else 1)
    fallbacks = [r for r in caplog.records if r.name == "shared.cleanup" and "reading every user" in r.getMessage()]
    assert len(fallbacks) == 1 and fallbacks[0].levelname == "WARNING"
    assert str(status) in fallbacks[0].getMessage()


def test_an_authentication_failure_of_the_criteria_search_does_not_fall_back(make_runtime, athoc_sim) -> None:
    runtime = make_runtime(**FAST)
    athoc_sim.add_user("old@x", duty="01/01/2025 00:00:00")
    athoc_sim.configure(criteria_status=403)  # the role is missing: reading every user fails the same way

    result = run_cleanup(runtime)

    assert result.status == "failed" and "403" in result.failure
    assert [("Criteria" in r.query) for r in athoc_sim.requests if r.kind == "search"] == [True]
    assert athoc_sim.history("old@x") == []


def test_athoc_unreachable_fails_but_retention_still_runs(make_runtime, athoc_sim) -> None:
    runtime = make_runtime(**FAST)
    old = RunRecord(kind="process", started_at=utcnow() - timedelta(days=40), finished_at=utcnow() - timedelta(days=40))
    runtime.state.write_run(old)
    athoc_sim.fail_next(50, status=503, kinds=("search",))

    result = run_cleanup(runtime)

    assert result.status == "failed" and result.exit_code == 1
    assert "AtHoc unreachable" in result.failure and "503" in result.failure
    assert result.retention.ran and result.retention.runs_purged == 1
    assert runtime.state.job_status(JobKind.CLEANUP).last_status == "failed"


def test_the_timer_function_never_raises_for_an_outage(make_test_env, athoc_sim, monkeypatch) -> None:
    import shared.runtime
    from functions.maintenance import clear_stale_duty

    runtime = Runtime(Settings.from_env(make_test_env(**FAST)))
    monkeypatch.setattr(shared.runtime, "_process_runtime", runtime)
    athoc_sim.fail_next(50, status=503, kinds=("search",))

    clear_stale_duty.build().get_user_function()(TimerRequest(past_due=True))

    assert runtime.state.job_status(JobKind.CLEANUP).last_status == "failed"


def test_cli_cleanup(make_test_env, athoc_sim, capsys) -> None:
    from shared.cli import main

    env = make_test_env(BOBO_TIMEZONE="Europe/London")
    athoc_sim.add_user("old@x", duty=wall(utcnow() - timedelta(hours=30)))

    assert main(["cleanup", "--dry-run", "--json"], env=env) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (data["dry_run"], data["stale_found"], data["cleared"]) == (True, 1, 0)
    assert athoc_sim.history("old@x") == []

    assert main(["cleanup", "--json"], env=env) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (data["dry_run"], data["cleared"]) == (False, 1)

    athoc_sim.fail_next(50, status=500, kinds=("search",))
    assert main(["cleanup", "--json"], env={**env, **FAST}) != 0
    captured = capsys.readouterr()
    assert "AtHoc unreachable" in captured.err.strip().splitlines()[-1] and "Traceback" not in captured.err


def test_two_concurrent_cleanups_clear_each_value_once(runtime, athoc_sim) -> None:
    now = utc("2025-07-01 12:00")
    logins = [f"u{i}@x" for i in range(12)]
    for login in logins:
        athoc_sim.add_user(login, duty=wall(now - timedelta(days=2)))
    results: list[CleanupResult] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        other = Runtime(runtime.settings)
        barrier.wait()
        results.append(run_cleanup(other, trigger="clear_stale_duty", now=now))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert [r.status for r in results] == ["success", "success"], [r.errors for r in results]
    assert sum(r.cleared for r in results) == len(logins)
    assert all(athoc_sim.history(login) == [""] for login in logins)


def test_cleanup_waits_for_a_running_batch(runtime, athoc_sim, monkeypatch) -> None:
    """A batch in progress holds the lock: the cleanup reads AtHoc only after it ends (no stale read)."""
    import shared.storage

    monkeypatch.setattr(shared.storage, "LOCK_POLL_SECONDS", 0.05)
    now = utcnow()
    athoc_sim.add_user("u@x", duty=wall(now - timedelta(days=2)))
    lock = runtime.storage.batch_lock()
    assert lock.acquire()
    results: list[CleanupResult] = []
    worker = threading.Thread(target=lambda: results.append(run_cleanup(Runtime(runtime.settings), now=now)))
    worker.start()
    worker.join(timeout=0.5)
    assert worker.is_alive() and athoc_sim.count("search") == 0
    athoc_sim.set_attribute("u@x", DUTY, wall(now))  # the batch books u on, then releases the lock
    lock.release()
    worker.join(timeout=30)
    assert results[0].stale_found == 0 and athoc_sim.history("u@x") == []


# ---------------------------------------------------------------- retention


def backdated_file(runtime: Runtime, name: str, state: FileState, age: timedelta) -> None:
    when = utcnow() - age
    record = FileRecord(name=name, state=state, first_seen=when, last_attempt=when, updated_at=when)
    runtime.state.table("files").upsert_entity(record.to_entity(), mode=UpdateMode.REPLACE)


def test_retention_purges_old_run_log_entries_and_file_records(runtime, athoc_sim) -> None:
    for days in (40, 31, 2):
        started = utcnow() - timedelta(days=days)
        runtime.state.write_run(RunRecord(kind="process", run_id=f"r{days}", started_at=started, finished_at=started))
    backdated_file(runtime, "old.csv", FileState.PROCESSED, timedelta(days=40))
    backdated_file(runtime, "recent.csv", FileState.PROCESSED, timedelta(days=2))
    backdated_file(runtime, "waiting.csv", FileState.WAITING, timedelta(days=40))  # still to do: never purged
    backdated_file(runtime, "gave-up.csv", FileState.FAILED, timedelta(days=40))  # an operator's: never purged

    result = run_cleanup(runtime)

    assert result.retention.ran and result.retention.runs_purged == 2 and result.retention.files_purged == 1
    left = {r.run_id for r in runtime.state.runs_since(utcnow() - timedelta(days=60))}
    assert "r2" in left and not {"r40", "r31"} & left
    assert runtime.state.get_file("old.csv") is None
    assert runtime.state.get_file("recent.csv") is not None and runtime.state.get_file("waiting.csv") is not None
    assert runtime.state.get_file("gave-up.csv") is not None
    assert result.to_json()["retention"]["runs_purged"] == 2


def test_retention_deletes_old_processed_blobs_only(runtime, athoc_sim) -> None:
    settings, storage = runtime.settings, runtime.storage
    for name in ("a.csv", "b.csv"):
        storage.write_blob(settings.processed_container, name, b"BON,1\n")
    storage.write_blob(settings.failed_container, "bad.csv", b"junk\n")
    storage.write_blob(settings.rejects_container, "a.csv.rejects.csv", b"row_number,reason,raw_text\r\n")
    storage.write_blob(settings.rejects_container, "bad.csv.rejects.csv", b"row_number,reason,raw_text\r\n")
    lock = storage.batch_lock()  # a lease on the incoming container: no blob of its own anywhere
    assert lock.acquire()
    lock.release()

    def processed() -> list[str]:
        return sorted(b.name for b in storage.container(settings.processed_container).list_blobs())

    # Blobs were written just now: 29 days ahead they are not yet 30 days old, 31 days ahead they are.
    kept = run_cleanup(runtime, now=utcnow() + timedelta(days=29))
    assert kept.retention.processed_blobs_deleted == 0 and processed() == ["a.csv", "b.csv"]

    purged = run_cleanup(runtime, now=utcnow() + timedelta(days=31))
    assert purged.retention.processed_blobs_deleted == 2 and processed() == []
    assert [b.name for b in storage.container(settings.failed_container).list_blobs()] == ["bad.csv"]
    # A rejects report goes with its processed file, and stays while its file waits in failed.
    assert purged.retention.rejects_deleted == 1
    assert [b.name for b in storage.container(settings.rejects_container).list_blobs()] == ["bad.csv.rejects.csv"]


def test_processed_retention_zero_keeps_everything(make_runtime, athoc_sim) -> None:
    runtime = make_runtime(BOBO_PROCESSED_RETENTION_DAYS="0")
    runtime.storage.write_blob(runtime.settings.processed_container, "a.csv", b"x")
    result = run_cleanup(runtime, now=utcnow() + timedelta(days=3650))
    assert result.retention.processed_blobs_deleted == 0
    names = [b.name for b in runtime.storage.container(runtime.settings.processed_container).list_blobs()]
    assert names == ["a.csv"]


def test_files_that_land_while_the_cleanup_holds_the_lock_are_drained(runtime, athoc_sim) -> None:
    """A trigger that found the lock taken went away trusting the holder to drain incoming."""
    from tests.helpers import bon, csv_of, seed_users, upload, where

    seed_users(athoc_sim, runtime, ["7"])
    upload(runtime, "landed.csv", csv_of(bon("7", "20250701100000")))

    result = run_cleanup(runtime, now=utc("2025-07-01 12:00"))

    assert result.status == "success"
    assert where(runtime)["processed"] == ["landed.csv"] and where(runtime)["incoming"] == []
    assert athoc_sim.get_user("user00007@force.example")[DUTY] == "01/07/2025 10:00:00"
