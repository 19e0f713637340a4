"""Decision history and `explain` (docs/history.md) against Azurite and the AtHoc simulator.

Every outcome is produced by a real run and read back through `explain`, never written by hand.
"""

from __future__ import annotations

import json
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.explain import explain
from shared.history import HistoryEntry, HistoryOutcome, HistoryWriter, employee_history
from shared.last_applied import last_applied_of
from shared.pipeline import drain
from shared.runtime import Runtime
from shared.settings import Settings
from tests.helpers import ROOT, bof, bon, csv_of, login_of, python, run_cli, seed_users, settings_env, upload, where

DUTY = "On-Duty-DTG"


def outcomes(runtime: Runtime, employee: str) -> list[tuple[str, str | None, int | None]]:
    """(outcome, file, row) of the employee's events, newest first, as `explain --json` lists them."""
    events = explain(runtime, employee).to_json()["events"]
    return [(e["outcome"], e["file"], e["row"]) for e in events]


def test_each_pipeline_outcome_is_recorded_and_explained(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["1", "2", "3"])
    athoc_sim.deny(login_of("2"))
    athoc_sim.remove_user(login_of("3"))  # still mapped: AtHoc answers "does not exist"
    upload(
        runtime,
        "a.csv",
        csv_of(
            bon("00001", "20251022100000"),
            bof("00001", "20251022110000"),
            bon("2", "20251022100000"),
            bon("3", "20251022100000"),
            bon("9", "20251022100000"),
            "XXX,1,1,20251022,100000,20251022100000,0,0,0,0",  # rejected: not recorded
        ),
    )
    upload(runtime, "b.csv", csv_of(bon("1", "20251022103000")))  # loses to a.csv row 2 in the merge

    report = drain(runtime)
    assert report.files_processed == 2 and report.history_not_written == 0

    assert outcomes(runtime, "1")[0] == ("applied", "a.csv", 2)
    assert sorted(outcomes(runtime, "1")[1:]) == [("superseded", "a.csv", 1), ("superseded", "b.csv", 1)]
    assert outcomes(runtime, "2") == [("denied", "a.csv", 3)]
    assert outcomes(runtime, "3") == [("not_found", "a.csv", 4)]
    assert outcomes(runtime, "9") == [("unmapped", "a.csv", 5)]

    # The same old event delivered again is stale; explain lists it first (newest decision).
    upload(runtime, "c.csv", csv_of(bon("1", "20251022090000")))
    drain(runtime)
    result = explain(runtime, "0001").to_json()
    assert result["employee_id"] == "0001" and result["login"] == login_of("1")
    assert [e["outcome"] for e in result["events"]][:2] == ["stale", "applied"]
    stale, applied = result["events"][0], result["events"][1]
    assert stale == {
        "event_time": "2025-10-22T09:00:00",
        "kind": "BON",
        "file": "c.csv",
        "row": 1,
        "decided_at": stale["decided_at"],
        "outcome": "stale",
        "value_sent": None,
        "run_id": stale["run_id"],
    }
    assert applied["value_sent"] == "" and applied["kind"] == "BOF"
    assert datetime.fromisoformat(stale["decided_at"]) > datetime.fromisoformat(applied["decided_at"])
    assert stale["run_id"] != applied["run_id"]
    last = result["last_applied"]
    assert last["value"] == "" and last["event_time"] == "2025-10-22T11:00:00"
    assert datetime.fromisoformat(last["applied_at"]).tzinfo is not None
    assert explain(runtime, "2").last_applied is None  # denied: nothing was set


def test_error_and_pending_outcomes_and_the_retry_records_again(make_runtime, athoc_sim) -> None:
    # The simulator rejects values that do not parse with its date format: a row error.
    runtime = make_runtime(ATHOC_DATETIME_FORMAT="%Y-%m-%dT%H:%M:%S")
    seed_users(athoc_sim, runtime, ["1", "2"])
    upload(runtime, "bad.csv", csv_of(bon("1", "20251022100000")))
    drain(runtime)
    assert outcomes(runtime, "1") == [("error", "bad.csv", 1)]
    assert explain(runtime, "1").events[0].value_sent == "2025-10-22T10:00:00"

    athoc_sim.fail_next(1000, status=503, kinds=("sync",))
    upload(runtime, "later.csv", csv_of(bof("2", "20251022100000")))
    report = drain(runtime)
    assert report.files_retry >= 1
    assert outcomes(runtime, "2") == [("pending", "later.csv", 1)]
    athoc_sim.clear_faults()
    drain(runtime)  # the retry decides again: recorded again
    assert [o for o, _, _ in outcomes(runtime, "2")] == ["applied", "pending"]


def test_a_dry_run_records_nothing(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["1"])
    upload(runtime, "a.csv", csv_of(bon("1", "20251022100000"), bon("1", "20251022090000")))
    drain(runtime, dry_run=True)
    assert outcomes(runtime, "1") == []
    drain(runtime)
    assert [o for o, _, _ in outcomes(runtime, "1")] == ["applied", "superseded"]


def test_a_big_file_is_written_in_full_transactions(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["1"])
    start = datetime(2025, 10, 22, 6, 0, 0)
    rows = [bon("1", (start + timedelta(seconds=n)).strftime("%Y%m%d%H%M%S")) for n in range(250)]
    upload(runtime, "big.csv", csv_of(*rows))
    drain(runtime)
    events = employee_history(runtime.state, "1", datetime.now(UTC) - timedelta(days=1))
    assert len(events) == 250
    assert [e.outcome for e in events].count(HistoryOutcome.APPLIED) == 1
    assert events[0].outcome is HistoryOutcome.APPLIED and events[0].row == 250


def test_explain_window_and_unknown_employee(make_runtime) -> None:
    runtime = make_runtime()
    now = datetime.now(UTC)
    writer = HistoryWriter(runtime.state)
    for age_days in (1, 3, 10):
        writer.add(HistoryEntry("77", HistoryOutcome.UNMAPPED, now - timedelta(days=age_days), "r1"))
    writer.flush()
    assert len(explain(runtime, "77").events) == 2  # default: 7 days
    assert len(explain(runtime, "077", days=30).events) == 3
    assert len(explain(runtime, "77", days=0.5).events) == 0
    nobody = explain(runtime, "12345").to_json()
    assert nobody == {
        "employee_id": "12345",
        "login": None,
        "last_applied": None,
        "events": [],
        "days": 7.0,
        "errors": [],
    }


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(env, *args)


def test_explain_command_json_text_and_live(make_test_env, athoc_sim: Any) -> None:
    env = make_test_env(BOBO_TIMEZONE="Europe/London")
    runtime = Runtime(Settings.from_env(env))
    seed_users(athoc_sim, runtime, ["42"])
    upload(runtime, "a.csv", csv_of(bon("00042", "20251022100000")))
    drain(runtime)

    done = cli(env, "explain", "  00042 ", "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout.strip().splitlines()[-1])
    assert body["employee_id"] == "  00042 " and body["login"] == login_of("42")
    assert [e["outcome"] for e in body["events"]] == ["applied"]
    assert "athoc_value" not in body

    athoc_sim.set_attribute(login_of("42"), DUTY, "01/01/2020 00:00:00")  # someone edits AtHoc by hand
    athoc_sim.reset_log()
    live = cli(env, "explain", "42", "--live", "--json")
    assert live.returncode == 0, live.stderr
    assert json.loads(live.stdout.strip().splitlines()[-1])["athoc_value"] == "01/01/2020 00:00:00"
    assert athoc_sim.count("search") == 1

    text = cli(env, "explain", "42", "--live")
    assert text.returncode == 0, text.stderr
    assert (
        "DISAGREES" in text.stdout and "a.csv, row 1" in text.stdout and " GMT" in text.stdout
    )  # decided in December: London time is GMT

    nobody = cli(env, "explain", "999", "--json")
    assert nobody.returncode == 0 and json.loads(nobody.stdout.strip().splitlines()[-1])["events"] == []


# ---------------------------------------------------------------- cleanup: cleared_stale and the purge


def test_stale_cleanup_is_recorded_and_becomes_last_applied(make_runtime, athoc_sim) -> None:
    from shared.cleanup import run_cleanup

    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["5", "6"])
    upload(runtime, "a.csv", csv_of(bon("5", "20251022100000"), bon("6", "20251022100000")))
    drain(runtime)
    athoc_sim.add_user("stranger@x", duty="01/01/2020 00:00:00")  # stale too, but no employee maps to it

    result = run_cleanup(runtime, now=datetime(2025, 10, 24, 12, 0, tzinfo=UTC))
    assert result.cleared == 3, result.errors

    explained = explain(runtime, "5").to_json()
    cleared, applied = explained["events"]
    assert cleared["outcome"] == "cleared_stale" and applied["outcome"] == "applied"
    assert (cleared["event_time"], cleared["kind"], cleared["file"], cleared["row"]) == (None, None, None, None)
    assert cleared["value_sent"] == "" and cleared["run_id"] == result.run_id
    assert explained["last_applied"]["value"] == "" and explained["last_applied"]["event_time"] is None
    # The pipeline's watermark is untouched: an older event is still stale after the clear.
    upload(runtime, "old.csv", csv_of(bon("5", "20251022090000")))
    drain(runtime)
    assert explain(runtime, "5").events[0].outcome is HistoryOutcome.STALE


def test_purge_keeps_exactly_history_days(make_runtime) -> None:
    from shared.cleanup import run_cleanup

    runtime = make_runtime(BOBO_HISTORY_DAYS="1.5")
    clock = datetime(2025, 10, 24, 12, 0, tzinfo=UTC)
    limit = clock - timedelta(days=1.5)
    writer = HistoryWriter(runtime.state)
    ages = {
        "inside": limit + timedelta(seconds=1),
        "at-limit": limit,  # exactly BOBO_HISTORY_DAYS old: kept
        "outside": limit - timedelta(seconds=1),
        "old": clock - timedelta(days=40),
    }
    for employee, decided in ages.items():
        writer.add(HistoryEntry(employee, HistoryOutcome.UNMAPPED, decided, "r"))
    writer.flush()

    result = run_cleanup(runtime, now=clock)

    assert result.retention.history_purged == 2
    since = clock - timedelta(days=400)
    left = {e: len(employee_history(runtime.state, e, since)) for e in ages}
    assert left == {"inside": 1, "at-limit": 1, "outside": 0, "old": 0}


# ---------------------------------------------------------------- crash between AtHoc and the history write

# A batcher process that dies (SIGKILL, no cleanup of any kind) the moment its history write begins: AtHoc
# and the watermarks are done, the history and the moves are not.
CRASHING_BATCHER = """
import os, signal
from shared import history
from shared.pipeline import drain
from shared.runtime import Runtime
from shared.settings import Settings

history.HistoryWriter.flush = lambda self: os.kill(os.getpid(), signal.SIGKILL)
drain(Runtime(Settings.from_env()), trigger="cli")
"""


@pytest.mark.slow
def test_a_batcher_killed_before_its_history_write_loses_nothing_and_the_gap_is_named(make_test_env, athoc_sim) -> None:
    env = make_test_env(BOBO_LOCK_LEASE_SECONDS="15")
    runtime = Runtime(Settings.from_env(env))
    seed_users(athoc_sim, runtime, ["1", "2"])
    upload(runtime, "a.csv", csv_of(bon("1", "20251022100000"), bof("2", "20251022100000")))

    killed = subprocess.run([python(), "-c", CRASHING_BATCHER], cwd=ROOT, env=settings_env(env), timeout=120)

    assert killed.returncode == -signal.SIGKILL
    assert athoc_sim.history(login_of("1")) == ["22/10/2025 10:00:00"]  # AtHoc was told
    assert outcomes(runtime, "1") == []  # ... and the history never written
    assert where(runtime)["incoming"] == ["a.csv"]  # the file is still there

    # The next run waits for the dead batcher's lease, finishes the file and names the gap.
    report = drain(runtime, trigger="sweep_incoming", wait_for_lock=60)

    assert report.files_processed == 1 and where(runtime)["processed"] == ["a.csv"]
    assert report.history_gaps == 1
    assert [e for e in report.errors if e.startswith("history gap: batch ")], report.errors
    assert athoc_sim.history(login_of("1")) == ["22/10/2025 10:00:00"]  # not sent again, not regressed
    assert outcomes(runtime, "1") == [("stale", "a.csv", 1)]  # the re-decision is recorded
    assert explain(runtime, "1").last_applied is not None  # written with the watermark, before the crash
    # Named once: the marker is gone.
    upload(runtime, "b.csv", csv_of(bon("1", "20251022110000")))
    assert drain(runtime, trigger="sweep_incoming").history_gaps == 0


def test_explain_http_answers_json_html_and_503(make_runtime, athoc_sim) -> None:
    from shared.explain import explain_http

    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["1"])
    upload(runtime, "a<b>.csv", csv_of(bon("1", "20251022100000")))
    drain(runtime)

    status, body, mimetype = explain_http(lambda: runtime, " 001", False, 7)
    assert (status, mimetype) == (200, "application/json")
    assert json.loads(body)["events"][0]["file"] == "a<b>.csv"
    status, page, mimetype = explain_http(lambda: runtime, "1", True, 7)
    assert (status, mimetype) == (200, "text/html")
    assert "a&lt;b&gt;.csv" in page and "a<b>.csv" not in page and "applied" in page

    def broken() -> Runtime:
        raise RuntimeError("no storage today")

    status, body, _ = explain_http(broken, "1", False, 7)
    assert status == 503 and "no storage today" in json.loads(body)["error"]


def test_a_history_that_cannot_be_written_never_fails_the_batch(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["1", "2"])
    runtime.state.service.delete_table(f"{runtime.settings.table_prefix}history")  # storage refuses history
    upload(runtime, "a.csv", csv_of(bon("1", "20251022100000"), bon("1", "20251022090000"), bof("2", "20251022100000")))

    report = drain(runtime)

    assert report.files_processed == 1 and where(runtime)["processed"] == ["a.csv"]
    assert report.history_not_written == 3 and report.to_json()["history_not_written"] == 3
    assert report.errors == [] and report.users_updated == 2
    assert athoc_sim.history(login_of("1")) == ["22/10/2025 10:00:00"]
    assert last_applied_of(runtime.state, "1") is not None  # the watermark transaction still carried it


def test_rows_of_a_file_not_decided_in_the_batch_are_not_kept(make_runtime) -> None:
    runtime = make_runtime()
    now = datetime.now(UTC)
    writer = HistoryWriter(runtime.state)
    for file_name in ("decided.csv", "replaced.csv"):
        writer.add(HistoryEntry("5", HistoryOutcome.SUPERSEDED, now, "r", file=file_name, row=1))
    writer.discard_file("replaced.csv")
    writer.flush()
    assert [e.file for e in employee_history(runtime.state, "5", now - timedelta(minutes=1))] == ["decided.csv"]


def test_two_ids_mapped_to_one_user_record_the_loser_as_superseded(make_runtime, athoc_sim) -> None:
    from shared.records import MappingEntry

    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["1"])
    # A mapping that breaks its one-login-per-id rule: 7 also points at user 1's login.
    runtime.state.apply_mapping_changes([MappingEntry("7", login_of("1"), "7")], [])
    upload(runtime, "a.csv", csv_of(bon("1", "20251022100000"), bon("7", "20251022110000")))
    drain(runtime)
    assert outcomes(runtime, "7") == [("applied", "a.csv", 2)]
    assert outcomes(runtime, "1") == [("superseded", "a.csv", 1)]
