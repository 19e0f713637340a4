"""The ingest pipeline against Azurite and the AtHoc simulator: outcomes, ordering, faults, concurrency."""

from __future__ import annotations

import subprocess
import threading
from typing import Any

import pytest

from shared.pipeline import drain, ingest_blob
from shared.records import FileState, JobKind
from shared.runtime import Runtime
from shared.settings import Settings
from tests.helpers import (
    blob_metadata,
    bof,
    bon,
    csv_of,
    login_of,
    python,
    read_blob,
    seed_users,
    settings_env,
    upload,
    where,
)

DUTY = "On-Duty-DTG"


def duty(sim: Any, employee: str) -> str | None:
    user = sim.get_user(login_of(employee))
    return None if user is None else user.get(DUTY)


def test_bon_sets_bof_clears_and_files_move_to_processed(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["00123", "04711"])
    athoc_sim.set_attribute(login_of("4711"), DUTY, "21/10/2025 07:00:00")
    upload(runtime, "a.csv", csv_of(bon("00123", "20251022074142"), bof("04711", "20251022074155")))

    report = drain(runtime)

    assert duty(athoc_sim, "123") == "22/10/2025 07:41:42"
    assert duty(athoc_sim, "4711") == ""
    assert where(runtime)["processed"] == ["a.csv"] and where(runtime)["incoming"] == []
    assert (report.files_processed, report.rows_read, report.updates_sent, report.users_updated) == (1, 2, 2, 2)
    assert report.errors == []
    meta = blob_metadata(runtime, runtime.settings.processed_container, "a.csv")
    assert meta["rows_read"] == "2" and meta["batch_id"]
    record = runtime.state.get_file("a.csv")
    assert record is not None and record.state is FileState.PROCESSED and record.rows_read == 2
    assert runtime.state.job_status(JobKind.PROCESS).last_status == "success"
    # Only LOGIN_ID and the duty field are ever sent.
    bodies = [r.body for r in athoc_sim.requests if r.kind == "sync"]
    assert all(set(row) == {"LOGIN_ID", DUTY} for body in bodies for row in body)


def test_latest_event_wins_within_a_batch(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["1", "2", "3"])
    # Employee 1: later event time wins even from the earlier file.
    # Employee 2: equal event time, DateTime_Created decides.
    # Employee 3: equal time and created: the later file (by last-modified, then name) wins.
    upload(
        runtime,
        "f1.csv",
        csv_of(
            bon("1", "20251022090000"),
            bon("2", "20251022080000", "20251022080005"),
            bon("3", "20251022070000"),
        ),
    )
    upload(
        runtime,
        "f2.csv",
        csv_of(
            bof("1", "20251022085959"),
            bof("2", "20251022080000", "20251022080001"),
            bof("3", "20251022070000"),
        ),
    )
    report = drain(runtime)
    assert duty(athoc_sim, "1") == "22/10/2025 09:00:00"
    assert duty(athoc_sim, "2") == "22/10/2025 08:00:00"
    assert duty(athoc_sim, "3") == ""
    assert report.updates_sent == 3 and athoc_sim.count("sync") == 1


def test_older_file_in_a_later_batch_never_sets_back(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["7"])
    upload(runtime, "new.csv", csv_of(bon("7", "20251022100000")))
    drain(runtime)
    upload(runtime, "old.csv", csv_of(bof("7", "20251022090000")))
    report = drain(runtime)
    assert duty(athoc_sim, "7") == "22/10/2025 10:00:00"
    assert athoc_sim.history(login_of("7")) == ["22/10/2025 10:00:00"]
    assert report.stale_events == 1 and report.updates_sent == 0 and report.files_processed == 1


def test_file_delivered_twice_sends_nothing_twice_and_keeps_both_copies(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["8"])
    body = csv_of(bon("8", "20251022100000"))
    upload(runtime, "dup.csv", body)
    drain(runtime)
    upload(runtime, "dup.csv", body)
    report = drain(runtime)
    assert athoc_sim.history(login_of("8")) == ["22/10/2025 10:00:00"]
    assert report.updates_sent == 0
    processed = where(runtime)["processed"]
    assert len(processed) == 2 and "dup.csv" in processed
    suffixed = next(n for n in processed if n != "dup.csv")
    assert suffixed.startswith("dup-") and suffixed.endswith("Z.csv")


def test_not_found_denied_and_unmapped_are_counted_not_errors(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["1", "2"])
    athoc_sim.deny(login_of("2"))
    athoc_sim.remove_user(login_of("1"))  # mapped, but gone from AtHoc since the last mapping sync
    upload(
        runtime, "x.csv", csv_of(bon("1", "20251022100000"), bon("2", "20251022100000"), bon("99", "20251022100000"))
    )
    report = drain(runtime)
    assert (report.users_not_found, report.users_denied, report.unmapped_employees) == (1, 1, 1)
    assert report.users_updated == 0 and report.errors == []
    assert where(runtime)["processed"] == ["x.csv"]


def test_malformed_inputs(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["5"])
    upload(
        runtime,
        "mixed.csv",
        "\r\n".join(
            [
                bon("5", "20251022100000"),
                "BON,5,P5,20251022,100000",  # too few columns
                "XYZ,5,P5,20251022,100000,20251022100000,0,0,0,0",  # unknown type
                "BON,,P5,20251022,100000,20251022100000,0,0,0,0",  # empty id
                "BON,5,P5,20251340,100000,20251340100000,0,0,0,0",  # bad date
                '=cmd|"/c calc"!A1,5,P5,20251022,256100,20251022100000,0,0,0,0',  # formula + bad time
                "",
            ]
        ),
    )
    upload(runtime, "empty.csv", b"")
    upload(
        runtime,
        "header-only.csv",
        "Transaction_Type,Employee_ID,Payroll_ID,Clocking_Date,Clocking_Time,"
        "DateTime_Created,Geo_Status,Latitude,Longitude,Accuracy\n",
    )
    upload(runtime, "all-bad.csv", "nonsense\nmore nonsense\n")
    upload(runtime, "notes.txt", "not a csv")
    upload(runtime, "latin.CSV", "BON,5,P5,20251022,090000,20251022090000,Géo £,0,0,0\n".encode("cp1252"))

    report = drain(runtime)

    places = where(runtime)
    assert places["processed"] == ["empty.csv", "header-only.csv", "latin.CSV", "mixed.csv"]
    assert places["failed"] == ["all-bad.csv", "notes.txt"]
    assert places["incoming"] == []
    assert places["rejects"] == ["all-bad.csv.rejects.csv", "mixed.csv.rejects.csv"]
    assert report.rows_read == 6 + 2 + 1 and report.rows_rejected == 5 + 2
    rejects = read_blob(runtime, runtime.settings.rejects_container, "mixed.csv.rejects.csv").decode("utf-8")
    assert rejects.splitlines()[0] == "row_number,reason,raw_text"
    assert "'=cmd" in rejects  # spreadsheet formula defused
    for row in ("2,", "3,", "4,", "5,", "6,"):
        assert any(line.startswith(row) for line in rejects.splitlines())
    assert blob_metadata(runtime, runtime.settings.failed_container, "notes.txt")["error"] == "not a .csv file"
    assert "no valid row" in blob_metadata(runtime, runtime.settings.failed_container, "all-bad.csv")["error"]
    assert any("notes.txt: not a .csv file" in e for e in report.errors)
    assert duty(athoc_sim, "5") == "22/10/2025 10:00:00"


def test_athoc_down_across_runs_until_failed(make_runtime, athoc_sim) -> None:
    runtime = make_runtime(BOBO_MAX_RETRY_ATTEMPTS="3", ATHOC_MAX_RETRIES="1", ATHOC_CALL_BUDGET_SECONDS="3")
    seed_users(athoc_sim, runtime, ["1"])
    upload(runtime, "a.csv", csv_of(bon("1", "20251022100000")))
    athoc_sim.fail_next(1000, status=503, kinds=("sync",))

    first = drain(runtime)
    assert (first.files_retry, first.files_failed) == (1, 0) and first.errors
    assert where(runtime)["incoming"] == ["a.csv"]
    assert runtime.state.get_file("a.csv").attempts == 1
    drain(runtime)
    third = drain(runtime)
    assert third.files_failed == 1
    places = where(runtime)
    assert places["failed"] == ["a.csv"] and places["incoming"] == []
    error = blob_metadata(runtime, runtime.settings.failed_container, "a.csv")["error"]
    assert "retries exhausted after 3 attempts" in error and "503" in error
    assert athoc_sim.get_user(login_of("1")).get(DUTY) in (None, "")


def test_recovery_after_outage_sends_the_latest_value(make_runtime, athoc_sim) -> None:
    runtime = make_runtime(ATHOC_MAX_RETRIES="0", ATHOC_CALL_BUDGET_SECONDS="3")
    seed_users(athoc_sim, runtime, ["1"])
    upload(runtime, "a.csv", csv_of(bon("1", "20251022100000")))
    athoc_sim.drop_next(1, kinds=("sync",))
    assert drain(runtime).files_retry == 1
    upload(runtime, "b.csv", csv_of(bof("1", "20251022110000")))
    report = drain(runtime)
    assert report.files_processed == 2
    assert athoc_sim.history(login_of("1")) == [""]


def test_row_error_fails_only_the_file_that_supplied_it(make_runtime, athoc_sim) -> None:
    # The simulator rejects values that do not parse with its date format: a row error, not "not found".
    runtime = make_runtime(ATHOC_DATETIME_FORMAT="%Y-%m-%dT%H:%M:%S", BOBO_MAX_RETRY_ATTEMPTS="5")
    seed_users(athoc_sim, runtime, ["1", "2"])
    upload(runtime, "bad.csv", csv_of(bon("1", "20251022100000")))
    upload(runtime, "good.csv", csv_of(bof("2", "20251022100000")))
    report = drain(runtime)
    assert where(runtime)["processed"] == ["good.csv"]
    assert where(runtime)["incoming"] == ["bad.csv"]
    assert report.files_retry == 1 and any("Invalid value" in e for e in report.errors)
    # Confirmed users are not sent again on the retry.
    athoc_sim.reset_log()
    drain(runtime)
    sent = [row["LOGIN_ID"] for r in athoc_sim.requests if r.kind == "sync" for row in r.body]
    assert sent == [login_of("1")]


def test_first_batch_runs_mapping_sync_when_none_ever_succeeded(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["00042"], mapped=False)
    upload(runtime, "a.csv", csv_of(bon("00042", "20251022100000")))
    report = drain(runtime)
    assert report.files_processed == 1
    assert duty(athoc_sim, "42") == "22/10/2025 10:00:00"
    assert runtime.state.job_status(JobKind.SYNC_MAPPINGS).last_success is not None


def test_files_wait_when_the_first_mapping_sync_fails(make_runtime, athoc_sim) -> None:
    runtime = make_runtime(ATHOC_MAX_RETRIES="0", ATHOC_CALL_BUDGET_SECONDS="3")
    upload(runtime, "a.csv", csv_of(bon("1", "20251022100000")))
    athoc_sim.fail_next(100, status=500, kinds=("search",))
    report = drain(runtime)
    assert report.files_retry == 1 and report.updates_sent == 0
    assert where(runtime)["incoming"] == ["a.csv"]
    assert any("mapping sync has never succeeded" in e for e in [runtime.state.get_file("a.csv").last_error])


def test_dry_run_sends_and_moves_nothing(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["1"])
    upload(runtime, "a.csv", csv_of(bon("1", "20251022100000")))
    report = drain(runtime, dry_run=True)
    assert report.updates_sent == 1
    assert report.updates == [
        {"login": login_of("1"), "value": "22/10/2025 10:00:00", "employee_id": "1", "file": "a.csv"}
    ]
    assert athoc_sim.count("sync") == 0 and where(runtime)["incoming"] == ["a.csv"]


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing in the pipeline handles it."""


def test_crash_between_athoc_and_move_then_rerun(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["1", "2"])
    upload(runtime, "a.csv", csv_of(bon("1", "20251022100000"), bof("2", "20251022100000")))
    real_move = runtime.storage.move

    def crashing_move(*args: Any, **kwargs: Any) -> Any:
        raise Crash

    runtime.storage.move = crashing_move  # type: ignore[method-assign]
    with pytest.raises(Crash):
        drain(runtime)
    assert where(runtime)["incoming"] == ["a.csv"] and where(runtime)["processed"] == []
    runtime.storage.move = real_move  # type: ignore[method-assign]
    report = drain(runtime)
    assert report.files_processed == 1 and report.updates_sent == 0  # watermarks written before the crash
    assert athoc_sim.history(login_of("1")) == ["22/10/2025 10:00:00"]
    assert where(runtime) == {"incoming": [], "processed": ["a.csv"], "failed": [], "rejects": []}


def test_interrupted_move_is_finished_without_a_second_copy(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["1"])
    upload(runtime, "a.csv", csv_of(bon("1", "20251022100000")))
    real_delete = runtime.storage.delete_if_unchanged

    def crash_before_delete(*args: Any, **kwargs: Any) -> Any:
        raise Crash

    runtime.storage.delete_if_unchanged = crash_before_delete  # type: ignore[method-assign]
    with pytest.raises(Crash):
        drain(runtime)
    runtime.storage.delete_if_unchanged = real_delete  # type: ignore[method-assign]
    drain(runtime)
    assert where(runtime) == {"incoming": [], "processed": ["a.csv"], "failed": [], "rejects": []}


def _ten_files(runtime: Runtime) -> list[str]:
    names = [f"burst-{i:02d}.csv" for i in range(10)]
    for i, name in enumerate(names):
        upload(runtime, name, csv_of(bon(str(i + 1), f"2025102210{i:02d}00")))
    return names


def test_ten_concurrent_trigger_invocations_make_one_batch(make_test_env, athoc_sim, monkeypatch) -> None:
    import azurefunctions.extensions.bindings.blob as blob_ext
    from azurefunctions.extensions.base import Datum
    from azurefunctions.extensions.bindings.blob.blobClientConverter import BlobClientConverter

    import shared.runtime
    from functions.ingest import ingest_csv
    from tests.helpers import model_binding_data

    env = make_test_env(BOBO_BATCH_WINDOW_SECONDS="1")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(shared.runtime, "_process_runtime", None)
    runtime = Runtime(Settings.from_env(env))
    runtime.ensure_ready()
    seed_users(athoc_sim, runtime, [str(i) for i in range(1, 11)])
    names = _ten_files(runtime)

    def invoke(name: str) -> None:
        # The worker decodes the host's model binding data into an azure.storage.blob.BlobClient.
        datum = Datum(value=model_binding_data(runtime.settings, name), type="model_binding_data")
        client = BlobClientConverter.decode(datum, trigger_metadata=None, pytype=blob_ext.BlobClient)
        ingest_csv.build().get_user_function()(client)

    threads = [threading.Thread(target=invoke, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert where(runtime)["processed"] == names
    assert athoc_sim.count("sync") == 1
    batches = {runtime.state.get_file(n).batch_id for n in names}
    assert len(batches) == 1


@pytest.mark.slow
def test_ten_invocations_from_separate_processes_make_one_batch(make_test_env, athoc_sim) -> None:
    env = make_test_env(BOBO_BATCH_WINDOW_SECONDS="2")
    runtime = Runtime(Settings.from_env(env))
    runtime.ensure_ready()
    seed_users(athoc_sim, runtime, [str(i) for i in range(1, 11)])
    names = _ten_files(runtime)
    code = (
        "import sys; from shared.pipeline import ingest_blob; from shared.runtime import process_runtime; "
        "ingest_blob(process_runtime(), sys.argv[1])"
    )
    workers = [
        subprocess.Popen([python(), "-c", code, name], env=settings_env(env), stderr=subprocess.PIPE) for name in names
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err.decode()[-2000:]
    assert where(runtime)["processed"] == names
    assert athoc_sim.count("sync") == 1
    assert len({runtime.state.get_file(n).batch_id for n in names}) == 1


def test_ingest_of_a_blob_already_moved_is_a_no_op(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["1"])
    upload(runtime, "a.csv", csv_of(bon("1", "20251022100000")))
    assert ingest_blob(runtime, "a.csv") is not None
    assert ingest_blob(runtime, "a.csv") is None
    assert athoc_sim.count("sync") == 1


def test_awkward_blob_names_are_safe_as_keys(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["1", "2"])
    awkward = ["dir/sub #1?.csv", "ünïcødé £.csv"]
    upload(runtime, awkward[0], csv_of(bon("1", "20251022100000")))
    upload(runtime, awkward[1], csv_of(bon("2", "20251022100000")))
    report = drain(runtime)
    assert report.files_processed == 2
    assert where(runtime)["processed"] == sorted(awkward)
    assert {runtime.state.get_file(n).state for n in awkward} == {FileState.PROCESSED}


def test_one_summary_line_per_run_with_queryable_fields(make_runtime, athoc_sim, caplog) -> None:
    import logging

    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["1"])
    upload(runtime, "a.csv", csv_of(bon("1", "20251022100000")))
    with caplog.at_level(logging.INFO, logger="shared"):
        report = drain(runtime)
    summaries = [r for r in caplog.records if r.name == "shared.pipeline" and "job_kind=process" in r.getMessage()]
    assert len(summaries) == 1
    line = summaries[0]
    assert f"run_id={report.run_id}" in line.getMessage() and "files_processed=1" in line.getMessage()
    assert line.levelno == logging.INFO and line.files_processed == 1 and line.outcome == "success"


def test_an_applied_but_unconfirmed_update_is_never_undone_by_a_later_batch(make_runtime, athoc_sim) -> None:
    # Found by the chaos run: AtHoc applies the newer value but the answer is lost; the next batch of the
    # same drain must not send an older event for that employee from another file.
    runtime = make_runtime(BOBO_BATCH_MAX_FILES="1", ATHOC_MAX_RETRIES="0", ATHOC_CALL_BUDGET_SECONDS="3")
    seed_users(athoc_sim, runtime, ["1"])
    upload(runtime, "a-newer.csv", csv_of(bon("1", "20251022100000")))
    upload(runtime, "b-older.csv", csv_of(bon("1", "20251022090000")))
    athoc_sim.drop_next(1, kinds=("sync",), after_apply=True)

    first = drain(runtime)
    assert first.files_retry == 1 and first.batches == 1  # the drain stops after a batch with retries
    for _ in range(3):
        drain(runtime)
    assert where(runtime)["processed"] == ["a-newer.csv", "b-older.csv"]
    assert set(athoc_sim.history(login_of("1"))) == {"22/10/2025 10:00:00"}


def test_a_given_up_update_still_guards_against_older_events(make_runtime, athoc_sim) -> None:
    runtime = make_runtime(BOBO_MAX_RETRY_ATTEMPTS="2", ATHOC_MAX_RETRIES="0", ATHOC_CALL_BUDGET_SECONDS="3")
    seed_users(athoc_sim, runtime, ["1"])
    upload(runtime, "a.csv", csv_of(bof("1", "20251022100000")))
    athoc_sim.drop_next(2, kinds=("sync",), after_apply=True)  # applied twice, never confirmed
    drain(runtime)
    drain(runtime)
    assert where(runtime)["failed"] == ["a.csv"]
    upload(runtime, "late.csv", csv_of(bon("1", "20251022090000")))
    report = drain(runtime)
    assert report.stale_events == 1 and report.updates_sent == 0
    assert athoc_sim.history(login_of("1")) == ["", ""]


def test_a_batch_with_an_unreadable_file_sends_nothing(make_runtime, athoc_sim) -> None:
    from azure.core.exceptions import ServiceRequestError

    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["1"])
    upload(runtime, "a.csv", csv_of(bon("1", "20251022090000")))
    upload(runtime, "b.csv", csv_of(bof("1", "20251022100000")))
    real_read = runtime.storage.read_bytes

    def flaky_read(container: str, name: str, etag: str | None = None) -> bytes:
        if name == "b.csv":
            raise ServiceRequestError("connection reset")
        return real_read(container, name, etag)

    runtime.storage.read_bytes = flaky_read  # type: ignore[method-assign]
    report = drain(runtime)
    assert report.updates_sent == 0 and athoc_sim.count("sync") == 0
    assert runtime.state.get_file("b.csv").attempts == 1
    assert runtime.state.get_file("a.csv") is None or runtime.state.get_file("a.csv").attempts == 0
    runtime.storage.read_bytes = real_read  # type: ignore[method-assign]
    drain(runtime)
    assert athoc_sim.history(login_of("1")) == [""]


def test_auth_failure_and_backlog_appear_in_the_summary_fields(make_runtime, athoc_sim, caplog) -> None:
    import logging

    runtime = make_runtime(ATHOC_PASSWORD="wrong-password", ATHOC_MAX_RETRIES="0")
    seed_users(athoc_sim, runtime, ["1"])
    upload(runtime, "a.csv", csv_of(bon("1", "20251022100000")))
    with caplog.at_level(logging.INFO, logger="shared"):
        report = drain(runtime)
    assert report.files_retry == 1 and report.error_kind == "auth"
    line = next(r for r in caplog.records if "job_kind=process" in r.getMessage())
    assert line.levelno == logging.ERROR
    assert "error_kind=auth" in line.getMessage() and "files_pending=1" in line.getMessage()
    assert "wrong-password" not in caplog.text


def test_a_given_up_file_put_back_by_retry_failed_is_sent(make_runtime, athoc_sim) -> None:
    from shared.retry_failed import retry_failed

    # AtHoc unreachable (token endpoint down) until the file is given up: nothing was ever applied.
    runtime = make_runtime(BOBO_MAX_RETRY_ATTEMPTS="2", ATHOC_MAX_RETRIES="0", ATHOC_CALL_BUDGET_SECONDS="3")
    seed_users(athoc_sim, runtime, ["1"])
    upload(runtime, "a.csv", csv_of(bon("1", "20251022100000")))
    athoc_sim.fail_next(2, status=503, kinds=("sync",))
    assert drain(runtime).updates_sent == 0  # nothing reached AtHoc
    drain(runtime)
    assert where(runtime)["failed"] == ["a.csv"] and duty(athoc_sim, "1") in (None, "")

    assert len(retry_failed(runtime, ["a.csv"]).moved) == 1
    report = drain(runtime)

    assert (report.files_processed, report.updates_sent, report.stale_events) == (1, 1, 0)
    assert duty(athoc_sim, "1") == "22/10/2025 10:00:00"
    # The given-up event still guards: an older one arriving later is stale.
    upload(runtime, "late.csv", csv_of(bof("1", "20251022090000")))
    assert drain(runtime).stale_events == 1 and duty(athoc_sim, "1") == "22/10/2025 10:00:00"


def test_files_without_events_finish_even_when_the_first_mapping_sync_fails(make_runtime, athoc_sim) -> None:
    runtime = make_runtime(ATHOC_MAX_RETRIES="0", ATHOC_CALL_BUDGET_SECONDS="3")
    upload(runtime, "empty.csv", b"")
    upload(runtime, "header.csv", "Employee_ID,Status,Timestamp\r\n")
    upload(runtime, "junk.csv", csv_of("not,a,row"))
    upload(runtime, "a.csv", csv_of(bon("1", "20251022100000")))
    athoc_sim.fail_next(100, status=500, kinds=("search",))

    report = drain(runtime)

    places = where(runtime)
    assert places["processed"] == ["empty.csv", "header.csv"]
    assert places["failed"] == ["junk.csv"] and places["rejects"] == ["junk.csv.rejects.csv"]
    assert places["incoming"] == ["a.csv"] and report.files_retry == 1
    assert any("mapping sync has never succeeded" in e for e in report.errors)


def test_a_name_delivered_twice_with_rejected_rows_gets_two_rejects_reports(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["1", "2"])
    upload(runtime, "r.csv", csv_of(bon("1", "20251022100000"), "first-bad"))
    drain(runtime)
    upload(runtime, "r.csv", csv_of(bon("2", "20251022100000"), "second-bad"))
    drain(runtime)

    places = where(runtime)
    assert len(places["processed"]) == 2 and "r.csv" in places["processed"]
    second = next(name for name in places["processed"] if name != "r.csv")
    assert second.startswith("r-") and second.endswith("Z.csv")
    assert places["rejects"] == sorted(["r.csv.rejects.csv", f"{second}.rejects.csv"])
    assert b"first-bad" in read_blob(runtime, runtime.settings.rejects_container, "r.csv.rejects.csv")
    assert b"second-bad" in read_blob(runtime, runtime.settings.rejects_container, f"{second}.rejects.csv")


def test_dry_run_before_any_mapping_sync_shows_what_a_real_run_would_send(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["00001", "2"], mapped=False)
    upload(runtime, "a.csv", csv_of(bon("1", "20251022100000"), bof("2", "20251022100000"), bon("3", "20251022100000")))

    preview = drain(runtime, dry_run=True)

    assert (preview.updates_sent, preview.unmapped_employees) == (2, 1)
    assert athoc_sim.count("sync") == 0 and runtime.state.mapping_count() == 0
    assert runtime.state.job_status(JobKind.SYNC_MAPPINGS).last_status == "never"
    real = drain(runtime)
    assert (real.updates_sent, real.unmapped_employees) == (preview.updates_sent, preview.unmapped_employees)


def test_a_batcher_that_lost_its_lock_before_sending_sends_nothing(make_runtime, athoc_sim) -> None:
    from azure.storage.blob import BlobLeaseClient

    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["1"])
    upload(runtime, "a.csv", csv_of(bon("1", "20251022100000")))
    real_load = runtime.state.load_watermarks

    def lease_taken_meanwhile() -> dict[str, str]:
        # As when the lease lapsed unnoticed (Azurite forgets leases on restart) and another batcher took it.
        incoming = runtime.storage.incoming
        BlobLeaseClient(incoming).break_lease(lease_break_period=0)
        BlobLeaseClient(incoming).acquire(lease_duration=15)
        return real_load()

    runtime.state.load_watermarks = lease_taken_meanwhile  # type: ignore[method-assign]
    report = drain(runtime)

    assert athoc_sim.count("sync") == 0 and report.updates_sent == 0
    assert where(runtime)["incoming"] == ["a.csv"] and report.files_seen == 0


def test_ingest_csv_also_takes_a_classic_input_stream(make_test_env, athoc_sim, monkeypatch) -> None:
    import azure.functions as func

    import shared.runtime
    from functions.ingest import ingest_csv

    env = make_test_env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(shared.runtime, "_process_runtime", None)
    runtime = Runtime(Settings.from_env(env))
    seed_users(athoc_sim, runtime, ["1"])
    upload(runtime, "exports/a.csv", csv_of(bon("1", "20251022100000")))
    # The decorated function as the worker indexes it (app.get_functions() may run only once per app).
    handler = ingest_csv.build().get_user_function()
    body = csv_of(bon("1", "20251022100000")).encode()
    stream = func.blob.InputStream(
        data=body, name=f"{runtime.settings.incoming_container}/exports/a.csv", length=len(body)
    )

    handler(stream)

    assert where(runtime)["processed"] == ["exports/a.csv"]
    assert duty(athoc_sim, "1") == "22/10/2025 10:00:00"
