"""`retry-failed`: failed files back to incoming, attempts reset, who and when in the run log."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from shared.cli import main
from shared.pipeline import drain
from shared.records import FileRecord, FileState, JobKind, utcnow
from shared.retry_failed import retry_failed
from shared.runtime import Runtime
from tests.helpers import bon, csv_of, login_of, make_env, read_blob, seed_users, upload, where


def fail_file(runtime: Runtime, name: str, body: bytes, *, stored_as: str | None = None, attempts: int = 5) -> None:
    """A file as the pipeline leaves it in failed: the blob (maybe suffixed), its metadata, its record."""
    settings = runtime.settings
    stored_as = stored_as or name
    runtime.storage.container(settings.failed_container).upload_blob(
        stored_as, body, metadata={"error": "AtHoc unreachable", "attempts": str(attempts)}
    )
    record = FileRecord(
        name=name,
        state=FileState.FAILED,
        attempts=attempts,
        last_error="retries exhausted after 5 attempts: AtHoc unreachable",
        destination=f"{settings.failed_container}/{stored_as}",
        etag="old-etag",
    )
    runtime.state.save_files([record])


@pytest.fixture
def runtime(make_runtime) -> Runtime:
    return make_runtime()


def test_moves_back_with_attempts_reset_and_logs_who(runtime: Runtime, monkeypatch) -> None:
    monkeypatch.setenv("LOGNAME", "duty-officer")
    body = b"BON,00123,1,20251022,074142,20251022074142,0,0,0,0\n"
    fail_file(runtime, "a.csv", body)
    fail_file(runtime, "b.csv", b"other")
    started = utcnow()

    result = retry_failed(runtime, ["a.csv"])

    assert result.exit_code == 0
    assert result.to_json()["moved"] == 1 and result.to_json()["names"] == ["a.csv"]
    assert where(runtime)["incoming"] == ["a.csv"]
    assert where(runtime)["failed"] == ["b.csv"]  # only what was named
    assert read_blob(runtime, runtime.settings.incoming_container, "a.csv") == body
    record = runtime.state.get_file("a.csv")
    assert record is not None
    assert (record.state, record.attempts) == (FileState.WAITING, 0)
    assert record.etag == runtime.storage.get_incoming("a.csv").etag  # the pipeline will treat it as known
    assert runtime.state.get_file("b.csv").state == FileState.FAILED

    runs = [r for r in runtime.state.runs_since(started - timedelta(seconds=5)) if r.kind == JobKind.RETRY_FAILED]
    assert len(runs) == 1
    run = runs[0]
    assert run.trigger == "cli" and run.outcome == "success"
    assert run.counts["operator"] == "duty-officer"
    assert run.counts["names"] == ["a.csv"] and run.counts["moved"] == 1
    assert run.started_at >= started - timedelta(seconds=1)
    assert runtime.state.job_status(JobKind.RETRY_FAILED).last_status == "success"


def test_name_taken_in_incoming_gets_a_suffix(runtime: Runtime) -> None:
    upload(runtime, "a.csv", "a newer export with the same name\n")
    fail_file(runtime, "a.csv", b"the failed one\n")

    result = retry_failed(runtime, ["a.csv"])

    incoming = where(runtime)["incoming"]
    assert len(incoming) == 2 and "a.csv" in incoming
    (suffixed,) = [n for n in incoming if n != "a.csv"]
    assert suffixed.startswith("a-") and suffixed.endswith("Z.csv")
    settings = runtime.settings
    assert read_blob(runtime, settings.incoming_container, "a.csv") == b"a newer export with the same name\n"
    assert read_blob(runtime, settings.incoming_container, suffixed) == b"the failed one\n"
    assert result.to_json()["incoming_names"] == [suffixed]
    assert runtime.state.get_file(suffixed).attempts == 0
    assert where(runtime)["failed"] == []


def test_suffixed_failed_copy_returns_under_its_original_name(runtime: Runtime) -> None:
    fail_file(runtime, "c.csv", b"c\n", stored_as="c-20251021T101010Z.csv")

    result = retry_failed(runtime, ["c-20251021T101010Z.csv"])

    assert result.to_json()["incoming_names"] == ["c.csv"]
    assert where(runtime)["incoming"] == ["c.csv"]
    assert runtime.state.get_file("c.csv").state == FileState.WAITING


def test_all_and_unknown_names(runtime: Runtime) -> None:
    fail_file(runtime, "a.csv", b"a\n")
    fail_file(runtime, "b.csv", b"b\n")

    unknown = retry_failed(runtime, ["a.csv", "nope.csv"])
    assert unknown.exit_code != 0
    assert unknown.to_json()["not_found"] == ["nope.csv"]
    assert unknown.to_json()["names"] == ["a.csv"]  # the known one still moved
    assert "nope.csv" in unknown.failure

    everything = retry_failed(runtime, None)
    assert everything.exit_code == 0 and everything.to_json()["names"] == ["b.csv"]
    assert where(runtime)["incoming"] == ["a.csv", "b.csv"] and where(runtime)["failed"] == []
    assert retry_failed(runtime, None).to_json()["moved"] == 0  # nothing left: still did its job


def test_retried_file_is_processed_by_the_next_drain(runtime: Runtime, athoc_sim) -> None:
    seed_users(athoc_sim, runtime, ["00123"])
    fail_file(runtime, "d.csv", csv_of(bon("00123", "20251022074142")).encode())

    retry_failed(runtime, ["d.csv"])
    report = drain(runtime, trigger="test")

    assert report.files_processed == 1, report.errors
    assert athoc_sim.get_user(login_of("00123"))["On-Duty-DTG"] == "22/10/2025 07:41:42"
    assert where(runtime)["processed"] == ["d.csv"]
    record = runtime.state.get_file("d.csv")
    assert record.state == FileState.PROCESSED and record.attempts == 0


def test_cli_json_and_exit_codes(runtime: Runtime, azurite, athoc_sim, capsys) -> None:
    fail_file(runtime, "a.csv", b"a\n")
    s = runtime.settings
    env = make_env(
        azurite.connection_string,
        athoc_sim.url,
        BOBO_INCOMING_CONTAINER=s.incoming_container,
        BOBO_PROCESSED_CONTAINER=s.processed_container,
        BOBO_FAILED_CONTAINER=s.failed_container,
        BOBO_REJECTS_CONTAINER=s.rejects_container,
        BOBO_TABLE_PREFIX=s.table_prefix,
    )

    assert main(["retry-failed", "--json", "a.csv", "missing.csv"], env=env) != 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out.strip().splitlines()[-1])
    assert payload["moved"] == 1 and payload["names"] == ["a.csv"] and payload["not_found"] == ["missing.csv"]
    assert captured.err.strip().splitlines()[-1] == "retry-failed: not in the failed container: missing.csv"

    assert main(["retry-failed", "--all"], env=env) == 0
    assert capsys.readouterr().out.startswith("moved 0 files back to incoming")
