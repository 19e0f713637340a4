"""The status report: one answer to "is it working, and if not, why?" for `status --json`, the `status`
HTTP function and its HTML page (shared/status_page.py renders it as text and HTML).

Everything comes from storage the jobs already write (containers, file records, the run log, the job
status rows); building the report makes no AtHoc call, so it answers while AtHoc is down and says so.
The report is a tree of frozen dataclasses; `StatusReport.to_json()` is the one place it becomes JSON
(docs/design.md#command-line). Times in JSON are ISO 8601 UTC; the readable reasons and the page show them in
`BOBO_TIMEZONE`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from shared import SERVICE_NAME, __version__
from shared.drift import DriftStatus, load_drift_status, verdict_reason
from shared.drift import status_json as drift_json
from shared.jobs import PROCESS_DAY_COUNTS, ProcessDayCounts
from shared.records import FileRecord, JobKind, JobStatus, Outcome, RunRecord, utcnow
from shared.storage import probe_storage

if TYPE_CHECKING:
    from shared.runtime import Runtime

# Jobs `status` lists under `last_runs` (retry-failed runs show in `recent_runs` instead).
REPORTED_JOBS = (JobKind.PROCESS, JobKind.SYNC_MAPPINGS, JobKind.CLEANUP)
# Files arrive every minute and the sweep runs every 5: a file older than this is stuck, not just queued.
BACKLOG_ALERT_SECONDS = 15 * 60
FAILED_FILES_LISTED = 500
RECENT_RUNS_LISTED = 10
HOURS = 24


# ------------------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class FailedFile:
    """A file lying in the failed container: what retry-failed acts on."""

    name: str
    reason: str
    attempts: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "reason": self.reason, "attempts": self.attempts}


@dataclass(frozen=True)
class LastRun:
    """A job's very last run (a skip included) and its last success, as `status` reports it."""

    status: Outcome
    finished_at: datetime | None
    error: str | None  # only when the last run failed
    last_success: datetime | None
    failing_since: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "finished_at": iso_utc(self.finished_at),
            "error": self.error,
            "last_success": iso_utc(self.last_success),
            "failing_since": iso_utc(self.failing_since),
        }


@dataclass  # not frozen: it extends the (mutable) process counts, so the two lists of names are one
class DayTotals(ProcessDayCounts):
    """Counts summed over the last 24 hours of process runs, and how many runs of any job there were.
    The field order is the JSON's."""

    runs: int = 0
    runs_failed: int = 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class HourBucket:
    """One hour of process runs; `label` is the hour's start in the org's time zone ("07:00")."""

    hour: datetime
    label: str
    files_processed: int = 0
    files_failed: int = 0
    files_retry: int = 0
    rows_read: int = 0
    users_updated: int = 0

    def to_json(self) -> dict[str, Any]:
        counts = {key: getattr(self, key) for key in HOUR_COUNTS}
        return {"hour": iso_utc(self.hour), "label": self.label, **counts}


# The run log's counts that DayTotals and HourBucket sum, read off their fields so the lists cannot drift apart.
DAY_COUNTS = PROCESS_DAY_COUNTS
HOUR_COUNTS = tuple(f.name for f in dataclasses.fields(HourBucket) if f.name not in {"hour", "label"})


@dataclass(frozen=True)
class RunSummary:
    kind: str
    run_id: str
    started_at: datetime
    duration_seconds: float
    outcome: str
    trigger: str
    error: str | None  # the first 300 characters

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "run_id": self.run_id,
            "started_at": iso_utc(self.started_at),
            "duration_seconds": self.duration_seconds,
            "outcome": self.outcome,
            "trigger": self.trigger,
            "error": self.error,
        }


@dataclass(frozen=True)
class Health:
    """The verdict: healthy unless something needs an operator; each reason is a sentence to act on."""

    healthy: bool
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "reasons": list(self.reasons)}


# What a report carries until `verdict` has judged it (build_status always replaces it).
_NOT_JUDGED = Health(healthy=False, reasons=("not judged yet",))


@dataclass(frozen=True)
class StatusReport:
    """Contract section 6 (mappings_total, files_pending, files_failed, failed_files, last_runs) plus the
    operator's extras. `failed_files` lists at most FAILED_FILES_LISTED; `files_failed` counts them all."""

    service: str
    version: str
    generated_at: datetime
    timezone: str  # the IANA name of BOBO_TIMEZONE
    health: Health
    mappings_total: int
    mappings_last_sync: datetime | None
    files_pending: int
    files_retrying: int
    oldest_pending_age_seconds: int | None
    oldest_pending_name: str | None
    files_failed: int
    failed_files: tuple[FailedFile, ...]
    last_runs: dict[JobKind, LastRun]  # REPORTED_JOBS, in that order
    last_24h: DayTotals
    hourly: tuple[HourBucket, ...]  # HOURS buckets, oldest first, the last one the current (partial) hour
    recent_runs: tuple[RunSummary, ...]  # newest first
    drift: DriftStatus | None = None  # the last drift check (None before the first): docs/history.md

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def to_json(self) -> dict[str, Any]:
        """The report as `status --json` and the HTTP function print it; the key order is the documented one."""
        return {
            "service": self.service,
            "version": self.version,
            "generated_at": iso_utc(self.generated_at),
            "timezone": self.timezone,
            "health": self.health.to_json(),  # first after the header, for readers of the raw JSON
            "mappings_total": self.mappings_total,
            "mappings_last_sync": iso_utc(self.mappings_last_sync),
            "files_pending": self.files_pending,
            "files_retrying": self.files_retrying,
            "oldest_pending_age_seconds": self.oldest_pending_age_seconds,
            "oldest_pending_name": self.oldest_pending_name,
            "files_failed": self.files_failed,
            "failed_files": [f.to_json() for f in self.failed_files],
            "last_runs": {kind.value: run.to_json() for kind, run in self.last_runs.items()},
            "last_24h": self.last_24h.to_json(),
            "hourly": [bucket.to_json() for bucket in self.hourly],
            "recent_runs": [run.to_json() for run in self.recent_runs],
            "drift": drift_json(self.drift),
        }


def build_status(runtime: Runtime, now: datetime | None = None) -> StatusReport:
    """The status report for this deployment at `now` (default: the current time)."""
    runtime.ensure_ready()
    now = now or utcnow()
    settings, state, storage = runtime.settings, runtime.state, runtime.storage

    incoming = storage.list_incoming()
    waiting = state.waiting_files()
    failed = _failed_files(runtime)
    jobs = state.all_job_status()
    runs = state.runs_since(now - timedelta(hours=HOURS), now=now)

    oldest_age = int((now - incoming[0].last_modified).total_seconds()) if incoming else None
    report = StatusReport(
        service=SERVICE_NAME,
        version=__version__,
        generated_at=now,
        timezone=settings.timezone_name,
        health=_NOT_JUDGED,
        mappings_total=int(state.mapping_count()),
        mappings_last_sync=jobs[JobKind.SYNC_MAPPINGS].last_success,
        files_pending=len(incoming),
        files_retrying=sum(1 for b in incoming if (r := waiting.get(b.name)) and r.attempts > 0),
        oldest_pending_age_seconds=max(oldest_age, 0) if oldest_age is not None else None,
        oldest_pending_name=incoming[0].name if incoming else None,
        files_failed=len(failed),
        failed_files=tuple(failed[:FAILED_FILES_LISTED]),
        last_runs={kind: _last_run(jobs[kind]) for kind in REPORTED_JOBS},
        last_24h=_day_totals(runs),
        hourly=_hourly(runs, now, settings.timezone),
        recent_runs=tuple(_run_summary(run) for run in runs[:RECENT_RUNS_LISTED]),
        drift=load_drift_status(state),
    )
    health = verdict(report, jobs, settings.mapping_max_age_days, settings.timezone, now)
    return dataclasses.replace(report, health=health)


def _failed_files(runtime: Runtime) -> list[FailedFile]:
    """What lies in the failed container (what retry-failed acts on), newest first, with reason and attempts.

    The reason is the file record's last error; the pipeline also writes it into the blob's metadata, which
    covers records already purged or a file moved there by hand.
    """
    settings = runtime.settings
    records = runtime.state.failed_files()
    by_destination = {r.destination: r for r in records.values() if r.destination}
    items = []
    for blob in runtime.storage.container(settings.failed_container).list_blobs(include=["metadata"]):
        record = by_destination.get(f"{settings.failed_container}/{blob.name}") or records.get(blob.name)
        metadata = blob.metadata or {}
        items.append((blob.last_modified, _failed_entry(blob.name, record, metadata)))
    items.sort(key=lambda item: item[0], reverse=True)
    return [entry for _, entry in items]


def _failed_entry(name: str, record: FileRecord | None, metadata: dict[str, str]) -> FailedFile:
    reason = (record.last_error if record is not None else "") or metadata.get("error", "") or "unknown"
    attempts = record.attempts if record is not None else _int(metadata.get("attempts"))
    return FailedFile(name=name, reason=reason, attempts=attempts)


def _int(value: Any) -> int:
    """A count as stored (int, float, text or nothing): a bad value counts as 0."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _last_run(status: JobStatus) -> LastRun:
    last = status.last_run_status or status.last_status
    state = Outcome(last) if last in {o.value for o in Outcome} else Outcome.NEVER
    finished = None if state == Outcome.NEVER else (status.last_run_finished or status.last_finished)
    return LastRun(
        status=state,
        finished_at=finished,
        error=(status.last_error or None) if state == Outcome.FAILED else None,
        last_success=status.last_success,
        failing_since=status.failing_since,
    )


def _process_runs(runs: Iterable[RunRecord]) -> list[RunRecord]:
    return [run for run in runs if run.kind == JobKind.PROCESS]


def _day_totals(runs: list[RunRecord]) -> DayTotals:
    process = _process_runs(runs)
    return DayTotals(
        **{key: sum(_int(run.counts.get(key)) for run in process) for key in DAY_COUNTS},
        runs=len(runs),
        runs_failed=sum(1 for run in runs if run.outcome == Outcome.FAILED),
    )


def _hourly(runs: list[RunRecord], now: datetime, zone: ZoneInfo) -> tuple[HourBucket, ...]:
    """HOURS hourly buckets, oldest first, the last one being the current (partial) hour."""
    current = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    starts = [current - timedelta(hours=HOURS - 1 - i) for i in range(HOURS)]
    counts = [dict.fromkeys(HOUR_COUNTS, 0) for _ in starts]
    for run in _process_runs(runs):
        index = int((run.started_at - starts[0]).total_seconds() // 3600)
        if 0 <= index < HOURS:
            for key in HOUR_COUNTS:
                counts[index][key] += _int(run.counts.get(key))
    return tuple(
        HourBucket(hour=start, label=start.astimezone(zone).strftime("%H:00"), **hour_counts)
        for start, hour_counts in zip(starts, counts, strict=True)
    )


def _run_summary(run: RunRecord) -> RunSummary:
    return RunSummary(
        kind=run.kind,
        run_id=run.run_id,
        started_at=run.started_at,
        duration_seconds=run.duration_seconds,
        outcome=run.outcome,
        trigger=run.trigger,
        error=run.error[:300] or None,
    )


# ------------------------------------------------------------------------------------- the verdict


def verdict(
    report: StatusReport, jobs: dict[str, JobStatus], mapping_max_age_days: float, zone: ZoneInfo, now: datetime
) -> Health:
    """Healthy unless something needs an operator; each reason is a sentence an operator can act on."""
    reasons: list[str] = []
    auth_failing = [job for job in (jobs[k] for k in REPORTED_JOBS) if _auth_failure(job)]
    if auth_failing:
        since = local_time(min((j.failing_since or j.last_finished or now) for j in auth_failing), zone, now)
        reasons.append(f"AtHoc authentication failing since {since}: {_auth_cause(auth_failing[0].last_error)}")
    reasons += _mapping_reasons(jobs[JobKind.SYNC_MAPPINGS], mapping_max_age_days, auth_failing, zone, now)
    reasons += _job_reasons(jobs, auth_failing, zone, now)
    reasons += _file_reasons(report)
    if report.drift is not None:
        drifted = verdict_reason(report.drift, local_time(report.drift.checked_at, zone, now))
        reasons += [drifted] if drifted else []
    return Health(healthy=not reasons, reasons=tuple(reasons))


def _auth_failure(job: JobStatus) -> bool:
    # The kind, never the text: credentials or trust an operator must fix, not a busy AtHoc.
    kind = job.last_error_kind
    return job.last_status == Outcome.FAILED and kind is not None and kind.needs_settings_fix


def _auth_cause(error: str) -> str:
    # "AtHoc request failed: AtHoc token request failed: invalid_grant: wrong ..." -> "invalid_grant: wrong ..."
    _, marker, rest = error.partition("token request failed: ")
    return brief(rest if marker else error)


def _mapping_reasons(
    status: JobStatus, max_age_days: float, auth_failing: list[JobStatus], zone: ZoneInfo, now: datetime
) -> list[str]:
    if status.last_success is None:
        # Files wait until a first mapping sync succeeds (docs/design.md#mapping-sync-safety-rules).
        return ["mapping sync has never succeeded: files wait until it does"]
    reasons = []
    age = now - status.last_success
    if age > timedelta(days=max_age_days):
        reasons.append(f"mapping sync has not succeeded for {duration_text(age)}")
    if status.last_status == Outcome.FAILED and status not in auth_failing and not reasons:
        since = local_time(status.failing_since or status.last_finished or now, zone, now)
        reasons.append(f"mapping sync failing since {since}: {brief(status.last_error)}")
    return reasons


def _job_reasons(jobs: dict[str, JobStatus], auth_failing: list[JobStatus], zone: ZoneInfo, now: datetime) -> list[str]:
    reasons = []
    cleanup = jobs[JobKind.CLEANUP]
    if cleanup.last_status == Outcome.FAILED and cleanup not in auth_failing:
        since = local_time(cleanup.failing_since or cleanup.last_finished or now, zone, now)
        reasons.append(f"stale duty cleanup failing since {since}: {brief(cleanup.last_error)}")
    process = jobs[JobKind.PROCESS]
    # A process run "fails" when one bad file fails; only a failure with a kind (AtHoc, storage, no mapping)
    # is a job-level problem (bad files are counted below).
    if process.last_status == Outcome.FAILED and process not in auth_failing and process.last_error_kind is not None:
        since = local_time(process.failing_since or process.last_finished or now, zone, now)
        reasons.append(f"file processing failing since {since}: {brief(process.last_error)}")
    return reasons


def _file_reasons(report: StatusReport) -> list[str]:
    reasons = []
    age = report.oldest_pending_age_seconds
    if age is not None and age > BACKLOG_ALERT_SECONDS:
        count = report.files_pending
        reasons.append(
            f"{count} file{'s' if count != 1 else ''} waiting, oldest {duration_text(timedelta(seconds=age))}"
        )
    failed_today = report.last_24h.files_failed
    if failed_today:
        reasons.append(
            f"{failed_today} file{'s' if failed_today != 1 else ''} failed in the last 24 hours "
            "(see failed files; fix and run retry-failed)"
        )
    return reasons


# ------------------------------------------------------------------------------------- wording of times


def brief(error: str) -> str:
    """An error text on one line, at most 160 characters."""
    text = " ".join(error.split())
    return text if len(text) <= 160 else text[:157] + "..."


def duration_text(delta: timedelta) -> str:
    """ "45 seconds", "47 minutes", "30 hours", "3 days": the coarsest unit that still reads precisely."""
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} seconds"
    if seconds < 2 * 3600:
        return f"{seconds // 60} minutes"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} hours"
    return f"{seconds // 86400} days"


def local_time(moment: datetime, zone: ZoneInfo, now: datetime) -> str:
    """HH:MM today, else with the date: operators read the org's local time."""
    local = moment.astimezone(zone)
    if local.date() == now.astimezone(zone).date():
        return local.strftime("%H:%M")
    return local.strftime("%d %b %H:%M")


def iso_utc(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, as every time in the JSON is written."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment is not None else None


# ------------------------------------------------------------------------------------- command result


@dataclass
class StatusResult:
    """`status`: exit 0 whenever the report could be built, healthy or not (it did its job)."""

    report: StatusReport
    exit_code: int = 0
    failure: str = ""

    def to_json(self) -> dict[str, Any]:
        return self.report.to_json()

    def text_lines(self) -> list[str]:
        # Imported here: status_page imports this module for the report's types.
        from shared.status_page import text_lines

        return text_lines(self.report)


def status_result(runtime: Runtime) -> StatusResult:
    probe_storage(runtime.settings)  # fail in a second, not after the SDK's minute of retries
    return StatusResult(build_status(runtime))
