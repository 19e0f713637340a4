"""Stale duty cleanup and retention: what the `clear_stale_duty` timer and the `cleanup` command do.

1. Users whose duty field is present are read from AtHoc (Criteria `<field> pr`; a server that answers
   400 to it is asked for every user and filtered here). Each value is parsed with
   `ATHOC_DATETIME_FORMAT` as local time in `BOBO_TIMEZONE`, here, never by the server; values older
   than `BOBO_AUTO_CLEANUP_HOURS` are cleared (""), whoever set them. Unparsable values are reported,
   never cleared, never counted as stale.
   Each cleared user is recorded in the decision history as `cleared_stale` and its `last_applied`
   becomes "" (shared/history.py); a cleared login without a mapping has no employee id to record it under.
2. Retention: run-log entries and file records older than `BOBO_LOG_RETENTION_DAYS`, processed blobs
   older than `BOBO_PROCESSED_RETENTION_DAYS` (0 = keep), history entries decided more than
   `BOBO_HISTORY_DAYS` ago. Failed blobs are never deleted here.

`--dry-run` reads and reports, and changes nothing (neither AtHoc nor storage, nor the run log).

Decisions beyond the rules (docs/design.md#stale-duty-cleanup):
- A local time that occurs twice (autumn) or never (spring gap) is read as the *latest* UTC instant it
  can mean, so a value is never cleared before it is really `BOBO_AUTO_CLEANUP_HOURS` old.
- "Older than" is strict: a value exactly that old stays. A value in the future stays.
- While clearing, the cleanup holds the pipeline's batch lock (read, decide, clear): otherwise a user
  who books on between our read and our clear would have the fresh value wiped. A dry run takes no lock.
  A trigger that found the lock taken trusts its holder to drain incoming, so after releasing it the
  cleanup drains any waiting files itself.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared.athoc import LOGIN_FIELD, AtHocAuthError, AtHocError, RowResult, RowStatus
from shared.decisions import row_failure_message
from shared.errors import ErrorKind, ExitCode
from shared.history import HistoryEntry, HistoryOutcome, purge_history
from shared.jobs import CLEANUP_COUNTS, JobEnd, JobRun, capped, start_job
from shared.last_applied import LastApplied, employees_by_login, record_set_outside_pipeline
from shared.logcontext import brief_error
from shared.mapping_sync import field_value
from shared.records import JobKind, Outcome, utcnow
from shared.runtime import Runtime

log = logging.getLogger(__name__)

# The pipeline holds the batch lock for one drain (seconds, rarely minutes): wait this long for it.
LOCK_WAIT_SECONDS = 60.0
# Values listed in the JSON and the run log; the counts are always complete.
LISTED = 1000


# ---------------------------------------------------------------- staleness (pure)


@dataclass(frozen=True)
class DutyValue:
    login: str
    value: str


@dataclass(frozen=True)
class Classified:
    """The duty values read from AtHoc, sorted into what the cleanup does with them."""

    checked: int
    stale: tuple[DutyValue, ...]
    unparsable: tuple[DutyValue, ...]


def parse_duty_value(value: str, datetime_format: str, zone: ZoneInfo) -> datetime | None:
    """The UTC instant a duty value stands for, or None when it does not parse.

    A naive value is local time in `zone`. One that is ambiguous (an autumn hour that occurs twice) or
    nonexistent (a spring gap) is read as the latest instant it can mean: never cleared early.
    """
    try:
        parsed = datetime.strptime(value.strip(), datetime_format)
    except ValueError:
        return None
    if parsed.tzinfo is not None:  # a format with %z says its own offset
        return parsed.astimezone(UTC)
    local = parsed.replace(tzinfo=zone)
    return max(local.replace(fold=0).astimezone(UTC), local.replace(fold=1).astimezone(UTC))


def is_stale(instant: datetime, now_utc: datetime, max_age_hours: float) -> bool:
    """Strictly older than the limit; a value from the future is not stale."""
    return now_utc - instant > timedelta(hours=max_age_hours)


def duty_values(users: Iterable[Mapping[str, Any]], duty_field: str) -> list[DutyValue]:
    """Users that hold a duty value (None, "" and blanks mean off duty: nothing to clean)."""
    found = []
    for user in users:
        login = str(field_value(user, LOGIN_FIELD) or "").strip()
        raw = field_value(user, duty_field)
        value = "" if raw is None else str(raw)
        if login and value.strip():
            found.append(DutyValue(login, value))
    return found


def classify_values(
    values: Sequence[DutyValue], *, datetime_format: str, zone: ZoneInfo, now_utc: datetime, max_age_hours: float
) -> Classified:
    stale: list[DutyValue] = []
    unparsable: list[DutyValue] = []
    for item in values:
        instant = parse_duty_value(item.value, datetime_format, zone)
        if instant is None:
            unparsable.append(item)
        elif is_stale(instant, now_utc, max_age_hours):
            stale.append(item)
    return Classified(len(values), tuple(stale), tuple(unparsable))


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class RetentionReport:
    ran: bool = False
    runs_purged: int = 0
    files_purged: int = 0
    processed_blobs_deleted: int = 0
    rejects_deleted: int = 0
    history_purged: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "ran": self.ran,
            "runs_purged": self.runs_purged,
            "files_purged": self.files_purged,
            "processed_blobs_deleted": self.processed_blobs_deleted,
            "rejects_deleted": self.rejects_deleted,
            "history_purged": self.history_purged,
        }


@dataclass(frozen=True)
class ClearReport:
    """What happened to the stale values sent to AtHoc."""

    cleared: int = 0
    users_not_found: int = 0
    users_denied: int = 0
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class CleanupResult:
    """The `cleanup` command's answer (docs/design.md#command-line) and the job's record."""

    dry_run: bool
    users_checked: int = 0
    stale_found: int = 0
    cleared: int = 0
    unparsable: int = 0
    users_not_found: int = 0
    users_denied: int = 0
    stale: tuple[DutyValue, ...] = ()
    unparsable_values: tuple[DutyValue, ...] = ()
    search: str = ""  # "criteria" (server-side `pr`) or "all users" (the server refused `pr`)
    retention: RetentionReport = field(default_factory=RetentionReport)
    errors: tuple[str, ...] = ()
    run_id: str = ""
    trigger: str = ""
    exit_code: ExitCode = ExitCode.OK
    error_kind: ErrorKind | None = None  # why it failed ("auth" feeds the authentication alert)

    @property
    def status(self) -> Outcome:
        return Outcome.FAILED if self.errors else Outcome.SUCCESS

    @property
    def error(self) -> str:
        return "; ".join(self.errors)

    @property
    def failure(self) -> str:
        return f"cleanup failed: {self.error}" if self.exit_code != ExitCode.OK else ""

    def counts(self) -> dict[str, int]:
        return {key: int(getattr(self, key)) for key in CLEANUP_COUNTS}

    def to_json(self) -> dict[str, Any]:
        listed = {"stale": [_pair(v) for v in self.stale[:LISTED]]} if self.dry_run else {}
        return {
            "dry_run": self.dry_run,
            **self.counts(),
            **listed,
            "unparsable_values": [_pair(v) for v in self.unparsable_values[:LISTED]],
            "retention": self.retention.to_json(),
            "search": self.search,
            "status": str(self.status),
            "error": self.error,
            "errors": list(self.errors),
            "run_id": self.run_id,
        }

    def text_lines(self) -> list[str]:
        verb = "would clear" if self.dry_run else "cleared"
        done = self.stale_found if self.dry_run else self.cleared
        lines = [
            f"cleanup {'dry run' if self.dry_run else self.status}: {self.users_checked} duty values checked, "
            f"{self.stale_found} stale, {verb} {done}, {self.unparsable} unparsable"
        ]
        if self.dry_run:
            lines += [f"  would clear {v.login} = {v.value!r}" for v in self.stale[:LISTED]]
        lines += [f"  unparsable: {v.login} = {v.value!r} (left alone)" for v in self.unparsable_values[:LISTED]]
        if self.users_not_found or self.users_denied:
            lines.append(f"  {self.users_not_found} users no longer exist, {self.users_denied} denied")
        if self.retention.ran:
            r = self.retention
            lines.append(
                f"retention: {r.runs_purged} run-log entries, {r.files_purged} file records, "
                f"{r.processed_blobs_deleted} processed files deleted, {r.history_purged} history entries purged"
            )
        lines += [f"error: {e}" for e in self.errors]
        return lines


def _pair(value: DutyValue) -> dict[str, str]:
    return {"login": value.login, "value": value.value}


@dataclass
class _Run:
    """What one run gathers on its way; frozen into a CleanupResult at the end."""

    dry_run: bool
    run_id: str = ""
    classified: Classified = field(default_factory=lambda: Classified(0, (), ()))
    clear: ClearReport = field(default_factory=ClearReport)
    retention: RetentionReport = field(default_factory=RetentionReport)
    search: str = ""
    errors: list[str] = field(default_factory=list)
    exit_code: ExitCode = ExitCode.OK
    error_kind: ErrorKind | None = None

    def fail(self, message: str, exit_code: ExitCode = ExitCode.FAILED, kind: ErrorKind | None = None) -> None:
        self.errors.append(message)
        self.exit_code = max(self.exit_code, exit_code)
        self.error_kind = self.error_kind or kind


# ---------------------------------------------------------------- the job


def run_cleanup(
    runtime: Runtime, *, dry_run: bool = False, trigger: str = "cli", now: datetime | None = None
) -> CleanupResult:
    """Clear stale duty values, then purge old records. Never raises: failures are recorded and returned.

    `now` is the job's clock (staleness, retention cutoffs, run times); tests pass a fixed instant.
    """
    with start_job(JobKind.CLEANUP, trigger=trigger, now=now) as job:
        run = _Run(dry_run=dry_run, run_id=job.run_id)
        try:
            runtime.ensure_ready()
        except AzureError as error:
            run.fail(f"storage unreachable: {brief_error(error)}", ExitCode.STORAGE, ErrorKind.STORAGE)
        else:
            _stale_duty(runtime, run, job.started_at)
            if not dry_run:
                # Retention does not depend on AtHoc: an AtHoc outage must not let logs pile up.
                _retention(runtime, run, job.started_at)
        result = CleanupResult(
            dry_run=dry_run,
            users_checked=run.classified.checked,
            stale_found=len(run.classified.stale),
            cleared=run.clear.cleared,
            unparsable=len(run.classified.unparsable),
            users_not_found=run.clear.users_not_found,
            users_denied=run.clear.users_denied,
            stale=run.classified.stale,
            unparsable_values=run.classified.unparsable,
            search=run.search,
            retention=run.retention,
            errors=tuple(run.errors),
            run_id=job.run_id,
            trigger=trigger,
            exit_code=run.exit_code,
            error_kind=run.error_kind,
        )
        if not dry_run and run.exit_code != ExitCode.STORAGE:
            _record(runtime, job, result)
        _log_summary(job, result)
        return result


def _stale_duty(runtime: Runtime, run: _Run, clock: datetime) -> None:
    try:
        if run.dry_run:
            _find_and_clear(runtime, run, clock)
            return
        lock = runtime.storage.batch_lock()
        if not lock.acquire_within(LOCK_WAIT_SECONDS):
            run.fail(f"the pipeline's batch lock stayed busy for {LOCK_WAIT_SECONDS:.0f} s; the next run clears")
            return
        try:
            _find_and_clear(runtime, run, clock, lock_lost=lock.lost.is_set)
        finally:
            lock.release()
        hand_over_waiting_files(runtime)
    except AtHocError as error:
        run.fail(f"AtHoc unreachable: {error}", kind=error.kind)
    except AzureError as error:
        run.fail(f"storage unreachable: {brief_error(error)}", ExitCode.STORAGE, ErrorKind.STORAGE)
    except Exception as error:  # the timer must never raise; the traceback goes to the log
        log.exception("stale duty cleanup failed unexpectedly")
        run.fail(f"unexpected {error.__class__.__name__}: {brief_error(error)}", kind=ErrorKind.INTERNAL)


def hand_over_waiting_files(runtime: Runtime) -> None:
    """The pipeline's rule is "whoever holds the batch lock drains incoming": a trigger that fired while
    the cleanup held the lock went away trusting that, so its file is drained here rather than waiting
    for the next sweep."""
    if not runtime.storage.list_incoming(limit=1):
        return
    from shared.pipeline import drain

    log.info("files arrived while the cleanup held the batch lock: draining them now")
    drain(runtime, trigger="clear_stale_duty")


def _find_and_clear(runtime: Runtime, run: _Run, clock: datetime, lock_lost: Any = None) -> None:
    settings = runtime.settings
    users = _users_with_duty(runtime, run)
    values = duty_values(users, settings.athoc.duty_field)
    run.classified = classify_values(
        values,
        datetime_format=settings.athoc.datetime_format,
        zone=settings.timezone,
        now_utc=clock,
        max_age_hours=settings.auto_cleanup_hours,
    )
    for item in run.classified.unparsable[:LISTED]:
        log.warning("duty value of %s does not parse as %s: %r (left alone)", item.login, _fmt(settings), item.value)
    if run.dry_run or not run.classified.stale:
        return
    if lock_lost is not None and lock_lost():
        run.fail("the batch lock was lost before clearing; the next run clears")
        return
    report = runtime.athoc.sync_duty_values([(item.login, "") for item in run.classified.stale])
    run.clear = _summarise_clear(report.rows)
    for message in run.clear.errors:
        run.fail(message)
    _record_cleared(runtime, run, [row.login for row in report.rows if row.status is RowStatus.UPDATED])


def _record_cleared(runtime: Runtime, run: _Run, logins: Sequence[str]) -> None:
    """`cleared_stale` in the history and "" as `last_applied` of each cleared user this app can name."""
    if not logins:
        return
    decided = utcnow()
    employees = employees_by_login(runtime.state.load_mappings())
    changes = []
    for login in logins:
        employee_id = employees.get(login.casefold())
        if employee_id is None:
            log.info("cleared %s, which no employee id maps to: not in the history", login)
            continue
        entry = HistoryEntry(employee_id, HistoryOutcome.CLEARED_STALE, decided, run.run_id, value_sent="", login=login)
        changes.append((entry, LastApplied("", None, decided, login)))
    not_written = record_set_outside_pipeline(runtime.state, changes)
    if not_written:
        log.warning("%d cleared users are missing from the history (storage refused the write)", not_written)


# The Criteria search is an optimisation: one retry at most, so a server that cannot do it is left quickly.
CRITERIA_SEARCH_RETRIES = 1
# Failures that reading every user would meet again: credentials, TLS, or no time left.
_NO_FALLBACK_KINDS = frozenset({ErrorKind.AUTH, ErrorKind.TLS, ErrorKind.BUDGET})


def _users_with_duty(runtime: Runtime, run: _Run) -> list[dict[str, Any]]:
    duty_field = runtime.settings.athoc.duty_field
    try:
        users = runtime.athoc.search_users(
            [duty_field], criteria=f"{duty_field} pr", max_retries=CRITERIA_SEARCH_RETRIES
        )
        run.search = "criteria"
        return users
    except AtHocError as error:
        if isinstance(error, AtHocAuthError) or error.kind in _NO_FALLBACK_KINDS:
            raise
        # Criteria support is unverified (400, 404, 422, 501, a 500 ...): filter client-side instead.
        log.warning("the search with Criteria '%s pr' failed (%s): reading every user instead", duty_field, error)
    run.search = "all users"
    return runtime.athoc.search_users([duty_field])


def _summarise_clear(rows: Sequence[RowResult]) -> ClearReport:
    counts = {status: 0 for status in RowStatus}
    problems: list[str] = []
    for row in rows:
        counts[row.status] += 1
        if row.status in (RowStatus.UPDATED, RowStatus.NOT_FOUND, RowStatus.DENIED):
            continue
        message = row_failure_message(row)
        if message not in problems:
            problems.append(message)
    return ClearReport(
        cleared=counts[RowStatus.UPDATED],
        users_not_found=counts[RowStatus.NOT_FOUND],
        users_denied=counts[RowStatus.DENIED],
        errors=tuple(capped(problems, what="AtHoc errors")),
    )


# ---------------------------------------------------------------- retention


def _retention(runtime: Runtime, run: _Run, clock: datetime) -> None:
    settings, state = runtime.settings, runtime.state
    try:
        logs_before = clock - timedelta(days=settings.log_retention_days)
        runs_purged = state.purge_runs(logs_before)
        files_purged = state.purge_files(logs_before)
        history_purged = purge_history(state, clock - timedelta(days=settings.history_days))
        blobs_deleted = rejects_deleted = 0
        if settings.processed_retention_days > 0:
            cutoff = clock - timedelta(days=settings.processed_retention_days)
            blobs_deleted = delete_processed_before(runtime, cutoff)
            rejects_deleted = delete_rejects_before(runtime, cutoff)
        run.retention = RetentionReport(
            True, runs_purged, files_purged, blobs_deleted, rejects_deleted, history_purged=history_purged
        )
    except AzureError as error:
        run.fail(f"retention: storage unreachable: {brief_error(error)}", ExitCode.STORAGE, ErrorKind.STORAGE)


def delete_processed_before(runtime: Runtime, before: datetime) -> int:
    """Delete processed blobs last modified before `before`.

    Only the processed container is ever listed here: failed files wait for an operator.
    """
    container = runtime.storage.container(runtime.settings.processed_container)
    deleted = 0
    for blob in container.list_blobs():
        if blob.last_modified >= before:
            continue
        with contextlib.suppress(ResourceNotFoundError):  # a concurrent cleanup deleted it first
            container.delete_blob(blob.name)
            deleted += 1
    return deleted


def delete_rejects_before(runtime: Runtime, before: datetime) -> int:
    """Delete rejects reports older than `before`, except those of files still in failed (kept for an operator)."""
    settings = runtime.settings
    failed = {blob.name for blob in runtime.storage.container(settings.failed_container).list_blobs()}
    container = runtime.storage.container(settings.rejects_container)
    deleted = 0
    for blob in container.list_blobs():
        source = blob.name.removesuffix(".rejects.csv")
        if blob.last_modified >= before or source in failed:
            continue
        with contextlib.suppress(ResourceNotFoundError):
            container.delete_blob(blob.name)
            deleted += 1
    return deleted


# ---------------------------------------------------------------- records and logs


def _record(runtime: Runtime, job: JobRun, result: CleanupResult) -> None:
    retention = {f"retention_{k}": v for k, v in result.retention.to_json().items()}
    end = JobEnd(
        result.status,
        {**result.counts(), **retention},
        error=result.error,
        error_kind=result.error_kind,
        status_counts=result.counts(),
    )
    job.finish(runtime, end)


def _log_summary(job: JobRun, result: CleanupResult) -> None:
    outcome = "dry_run" if result.dry_run else str(result.status)
    retention = result.retention
    text = (
        f"cleanup {outcome}: {result.users_checked} duty values checked, {result.stale_found} stale, "
        f"{result.cleared} cleared, {result.unparsable} unparsable; retention: {retention.runs_purged} runs, "
        f"{retention.files_purged} file records, {retention.processed_blobs_deleted} processed files purged"
        + (f"; error: {result.error}" if result.errors else "")
    )
    job.log_summary(
        log,
        outcome,
        text,
        failed=bool(result.errors),
        error_kind=result.error_kind,
        dry_run=result.dry_run,
        **result.counts(),
        **{f"retention_{k}": v for k, v in retention.to_json().items()},
    )


def _fmt(settings: Any) -> str:
    return str(settings.athoc.datetime_format)
