"""The status report (`status --json`, the HTTP `status` function, the page) for a seeded state."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from shared.cleanup import run_cleanup
from shared.cli import main
from shared.errors import ErrorKind
from shared.mapping_sync import run_mapping_sync
from shared.pipeline import drain
from shared.records import FileRecord, FileState, JobKind, MappingEntry, Outcome, RunRecord, utcnow
from shared.runtime import Runtime
from shared.status_page import text_lines
from shared.status_report import Health, build_status
from tests.helpers import bon, csv_of, make_env, seed_users, upload

LONDON = ZoneInfo("Europe/London")
AUTH_ERROR = (
    "AtHoc request failed: AtHoc token request failed: invalid_grant: wrong ATHOC_USERNAME or ATHOC_PASSWORD "
    "(or the account is locked or disabled)"
)
BAD_FILE_REASON = "retries exhausted after 5 attempts: AtHoc error for user00042@force.example: invalid value"


@dataclass
class Seeded:
    runtime: Runtime
    now: datetime  # the report's "now": 47 minutes after the incoming files were written
    auth_failing_since: datetime


def process_run(started: datetime, outcome: str = Outcome.SUCCESS, **counts: int) -> RunRecord:
    return RunRecord(
        kind=JobKind.PROCESS,
        started_at=started,
        finished_at=started + timedelta(seconds=3),
        outcome=outcome,
        trigger="ingest_csv",
        counts=counts,
    )


def seed_state(runtime: Runtime) -> Seeded:
    """A deployment in trouble: stale mappings, a backlog, two failed files, AtHoc refusing the password."""
    settings, state, storage = runtime.settings, runtime.state, runtime.storage
    runtime.ensure_ready()
    for name in ("20251022074142.csv", "20251022074242.csv"):
        storage.write_blob(settings.incoming_container, name, b"BON,00123,1,20251022,074142,20251022074142,0,0,0,0\n")
    now = utcnow() + timedelta(minutes=47, seconds=30)

    state.apply_mapping_changes([MappingEntry(str(i), f"user{i}@x", str(i)) for i in (1, 2, 3)], [])
    state.record_job(JobKind.SYNC_MAPPINGS, Outcome.SUCCESS, new_version=True, at=now - timedelta(days=3, hours=1))

    # A bad file with its record (moved under a suffixed name), and one known only by its blob metadata.
    failed = storage.container(settings.failed_container)
    failed.upload_blob("bad-20251021T101010Z.csv", b"x", metadata={"error": "stale metadata", "attempts": "5"})
    record = FileRecord(
        name="bad.csv",
        state=FileState.FAILED,
        attempts=5,
        last_error=BAD_FILE_REASON,
        destination=f"{settings.failed_container}/bad-20251021T101010Z.csv",
    )
    state.save_files([record])
    failed.upload_blob("notes.txt", b"hello", metadata={"error": "not a .csv file", "attempts": "0"})

    for run in (
        process_run(now - timedelta(hours=30), files_processed=100, rows_read=1000),  # outside the 24 hours
        process_run(now - timedelta(hours=5), files_processed=4, rows_read=40, rows_rejected=2, users_updated=30),
        process_run(now - timedelta(hours=5, minutes=-10), files_processed=2, rows_read=20, users_updated=15),
        process_run(
            now - timedelta(hours=2),
            Outcome.FAILED,
            files_processed=1,
            files_failed=1,
            rows_read=12,
            users_updated=5,
            users_not_found=3,
            unmapped_employees=4,
        ),
    ):
        state.write_run(run)
    auth_since = now - timedelta(hours=1, minutes=20)
    state.write_run(process_run(auth_since, Outcome.FAILED, files_retry=2))
    for at in (auth_since, now - timedelta(minutes=5)):
        state.record_job(JobKind.PROCESS, Outcome.FAILED, error=AUTH_ERROR, error_kind=ErrorKind.AUTH, at=at)
    return Seeded(runtime, now, auth_since)


@pytest.fixture
def seeded(make_runtime) -> Seeded:
    return seed_state(make_runtime(BOBO_TIMEZONE="Europe/London"))


def test_contract_keys_and_types(seeded: Seeded) -> None:
    report = build_status(seeded.runtime, now=seeded.now).to_json()

    # The documented keys (docs/design.md#command-line) and the extras, in the order readers of the JSON see them.
    assert list(report) == [
        "service",
        "version",
        "generated_at",
        "timezone",
        "health",
        "mappings_total",
        "mappings_last_sync",
        "files_pending",
        "files_retrying",
        "oldest_pending_age_seconds",
        "oldest_pending_name",
        "files_failed",
        "failed_files",
        "last_runs",
        "last_24h",
        "hourly",
        "recent_runs",
        "drift",
    ]
    assert report["drift"] is None  # no drift check yet

    assert report["mappings_total"] == 3
    assert report["files_pending"] == 2
    assert report["files_failed"] == 2
    assert all(set(f) == {"name", "reason", "attempts"} for f in report["failed_files"])
    assert set(report["last_runs"]) == {"process", "sync-mappings", "cleanup"}
    for run in report["last_runs"].values():
        assert {"status", "finished_at", "error"} <= set(run)
        assert run["status"] in {"success", "failed", "skipped", "never"}
    assert report["last_runs"]["cleanup"] == {
        "status": "never",
        "finished_at": None,
        "error": None,
        "last_success": None,
        "failing_since": None,
    }
    json.dumps(report)  # JSON-ready as it is


def test_failed_files_reason_from_record_else_metadata(seeded: Seeded) -> None:
    failed = {f["name"]: f for f in build_status(seeded.runtime, now=seeded.now).to_json()["failed_files"]}

    # The record wins over the metadata, and is found through its suffixed destination name.
    assert failed["bad-20251021T101010Z.csv"] == {
        "name": "bad-20251021T101010Z.csv",
        "reason": BAD_FILE_REASON,
        "attempts": 5,
    }
    assert failed["notes.txt"] == {"name": "notes.txt", "reason": "not a .csv file", "attempts": 0}


def test_last_runs_mapping_sync_and_backlog(seeded: Seeded) -> None:
    report = build_status(seeded.runtime, now=seeded.now).to_json()

    process = report["last_runs"]["process"]
    assert process["status"] == "failed"
    assert "invalid_grant" in process["error"]
    assert process["failing_since"].startswith(seeded.auth_failing_since.strftime("%Y-%m-%dT%H:%M"))
    assert report["last_runs"]["sync-mappings"]["status"] == "success"
    expected_sync = seeded.now - timedelta(days=3, hours=1)
    assert report["mappings_last_sync"].startswith(expected_sync.strftime("%Y-%m-%dT%H:%M"))
    assert 47 * 60 <= report["oldest_pending_age_seconds"] < 49 * 60
    assert report["oldest_pending_name"] == "20251022074142.csv"


def test_last_24_hours_and_hourly_series(seeded: Seeded) -> None:
    report = build_status(seeded.runtime, now=seeded.now).to_json()

    day = report["last_24h"]
    # The run 30 hours ago is outside the window; the four others count.
    assert day["files_processed"] == 7
    assert day["files_failed"] == 1
    assert day["files_retry"] == 2
    assert day["rows_read"] == 72
    assert day["rows_rejected"] == 2
    assert day["users_updated"] == 50
    assert day["users_not_found"] == 3
    assert day["unmapped_employees"] == 4
    assert day["runs"] == 4 and day["runs_failed"] == 2

    hourly = report["hourly"]
    assert len(hourly) == 24
    assert sum(h["files_processed"] for h in hourly) == 7
    assert hourly[-1]["hour"] == seeded.now.strftime("%Y-%m-%dT%H:00:00Z")
    two_hours_ago = (seeded.now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:00:00Z")
    bucket = next(h for h in hourly if h["hour"] == two_hours_ago)
    assert (bucket["files_processed"], bucket["files_failed"]) == (1, 1)
    assert bucket["label"] == (seeded.now - timedelta(hours=2)).astimezone(LONDON).strftime("%H:00")


def test_verdict_names_every_problem_in_local_time(seeded: Seeded) -> None:
    health = build_status(seeded.runtime, now=seeded.now).health

    assert health.healthy is False
    since = seeded.auth_failing_since.astimezone(LONDON).strftime("%H:%M")
    if seeded.auth_failing_since.astimezone(LONDON).date() != seeded.now.astimezone(LONDON).date():
        since = seeded.auth_failing_since.astimezone(LONDON).strftime("%d %b %H:%M")
    reasons = health.reasons
    assert any(r.startswith(f"AtHoc authentication failing since {since}: ") for r in reasons), reasons
    assert "mapping sync has not succeeded for 3 days" in reasons
    assert "2 files waiting, oldest 47 minutes" in reasons
    assert any(r.startswith("1 file failed in the last 24 hours") for r in reasons), reasons
    # The auth failure is said once, not again as a generic "file processing failing".
    assert not any(r.startswith("file processing failing") for r in reasons)


def test_healthy_deployment(make_runtime) -> None:
    runtime = make_runtime()
    runtime.state.apply_mapping_changes([MappingEntry("1", "user1@x", "1")], [])
    runtime.state.record_job(JobKind.SYNC_MAPPINGS, Outcome.SUCCESS, new_version=True)
    runtime.state.record_job(JobKind.CLEANUP, Outcome.SUCCESS)
    runtime.state.write_run(process_run(utcnow() - timedelta(minutes=3), files_processed=1, rows_read=3))

    report = build_status(runtime)

    assert report.health == Health(healthy=True, reasons=())
    assert report.to_json()["health"] == {"healthy": True, "reasons": []}
    assert report.files_pending == 0 and report.oldest_pending_age_seconds is None
    assert report.last_runs[JobKind.PROCESS].status == "never"  # the run log alone does not make a status
    assert text_lines(report)[0] == "HEALTHY"


def test_mapping_sync_never_succeeded_is_unhealthy(make_runtime) -> None:
    report = build_status(make_runtime()).to_json()
    assert report["health"]["reasons"] == ["mapping sync has never succeeded: files wait until it does"]
    assert report["last_runs"]["sync-mappings"]["status"] == "never"


def test_cli_status_exits_0_even_when_unhealthy(seeded: Seeded, azurite, athoc_sim, capsys) -> None:
    settings = seeded.runtime.settings
    env = make_env(
        azurite.connection_string,
        athoc_sim.url,
        BOBO_TIMEZONE="Europe/London",
        BOBO_INCOMING_CONTAINER=settings.incoming_container,
        BOBO_PROCESSED_CONTAINER=settings.processed_container,
        BOBO_FAILED_CONTAINER=settings.failed_container,
        BOBO_REJECTS_CONTAINER=settings.rejects_container,
        BOBO_TABLE_PREFIX=settings.table_prefix,
    )

    assert main(["status", "--json"], env=env) == 0
    out = capsys.readouterr().out.strip().splitlines()
    report: dict[str, Any] = json.loads(out[-1])
    assert report["health"]["healthy"] is False
    assert report["files_failed"] == 2 and report["mappings_total"] == 3

    assert main(["status"], env=env) == 0
    text = capsys.readouterr().out
    assert text.startswith("NOT HEALTHY\n")
    assert "AtHoc authentication failing since" in text
    assert "bad-20251021T101010Z.csv" in text and "process: failed" in text
    assert "cleanup: never" in text


def test_last_runs_shows_a_skipped_sync_and_when_each_job_finished(make_runtime, athoc_sim) -> None:
    from shared.mapping_sync import run_mapping_sync

    runtime = make_runtime()
    athoc_sim.add_user("a@x", collar="1")
    started = utcnow()
    athoc_sim.latency = 0.5  # the sync takes at least the token and one search: about a second
    assert run_mapping_sync(runtime, force=True).status == Outcome.SUCCESS
    synced = build_status(runtime).to_json()["last_runs"]["sync-mappings"]
    assert synced["status"] == "success"
    assert datetime.fromisoformat(synced["finished_at"]) >= started + timedelta(seconds=1)  # its end, not start

    athoc_sim.latency = 0
    assert run_mapping_sync(runtime).status == Outcome.SKIPPED  # synced just now: not due
    skipped = build_status(runtime).to_json()["last_runs"]["sync-mappings"]

    assert skipped["status"] == "skipped" and skipped["error"] is None
    assert skipped["finished_at"] >= synced["finished_at"]
    assert skipped["last_success"] == synced["last_success"]


def _decided(reasons: tuple[str, ...]) -> list[str]:
    """The reasons with the quoted error text cut: what the verdict decided, not what it quoted."""
    return [re.sub(r"^(.*? since (?:\d\d \w{3} )?\d\d:\d\d): .*$", r"\1: <quoted>", reason) for reason in reasons]


def test_rewording_every_error_message_never_changes_the_verdict(make_runtime, athoc_sim) -> None:
    """Real failures of every job are recorded; then every stored message is reworded (even into another
    failure's words): the verdict reads the kinds, so it decides exactly the same."""
    runtime = make_runtime(ATHOC_MAX_RETRIES="0")
    seed_users(athoc_sim, runtime, ["00101"])
    upload(runtime, "bad.csv", "not,a,bobo,row\n")
    drain(runtime)  # a bad file: the process job fails without a kind
    upload(runtime, "a.csv", csv_of(bon("00101", "20251022074142")))
    athoc_sim.password = "changed-by-someone"  # the service account's password no longer works
    assert drain(runtime).files_retry == 1  # process: auth
    assert run_mapping_sync(runtime, force=True).status == Outcome.FAILED  # sync-mappings: auth
    athoc_sim.stop()
    assert run_cleanup(runtime).errors  # cleanup: AtHoc unreachable (network)

    table = runtime.state.table("jobstatus")
    rows = list(table.list_entities())
    assert {r["RowKey"]: r.get("last_error_kind") for r in rows if r.get("last_status") == "failed"} == {
        "process": "auth",
        "sync-mappings": "auth",
        "cleanup": "network",
    }
    before = build_status(runtime).health
    original = [str(r.get("last_error", "")) for r in rows]

    # Reword: each failed job gets another job's message (an auth text where the kind is network, and back).
    for index, row in enumerate(rows):
        if row.get("last_error"):
            text = f"zz {original[(index + 1) % len(rows)] or 'storage unavailable: AtHoc TLS failure'} zz"
            table.upsert_entity({"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"], "last_error": text})
    after = build_status(runtime).health

    assert not before.healthy and after.healthy == before.healthy
    assert _decided(after.reasons) == _decided(before.reasons)
    assert [r for r in before.reasons if r.startswith("AtHoc authentication failing since")], before.reasons
    assert [r for r in before.reasons if r.startswith("stale duty cleanup failing since")], before.reasons
