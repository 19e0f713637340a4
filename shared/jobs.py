"""One way to run a job: every job (process, sync-mappings, cleanup, retry-failed, reconcile) starts and ends here.

    with start_job(JobKind.CLEANUP, trigger="clear_stale_duty") as job:
        ... the job's own work, its log lines carry job.run_id ...
        job.finish(runtime, JobEnd(outcome, counts, error=..., error_kind=...))   # run record + job status
        job.log_summary(log, summary_text, JobEnd(...))                           # the one summary line

The count names of every job and the capped lists of error messages are defined here once (the exit codes of
the command line are `shared.errors.ExitCode`). Each run is one OpenTelemetry span (shared.telemetry.run_span)
whose attributes and the `bobo.` metrics take the run's counts from its summary line.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from shared import telemetry
from shared.errors import ErrorKind
from shared.logcontext import log_run_summary, run_context
from shared.records import JobKind, Outcome, RunRecord, utcnow

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from shared.runtime import Runtime


# The counts each job reports (JSON, run log, summary line, status report); named once, read everywhere.


@dataclass
class ProcessDayCounts:
    """The counts of a process run that the status report also sums per day (the field order is the JSON's)."""

    files_processed: int = 0
    files_failed: int = 0
    files_retry: int = 0
    rows_read: int = 0
    rows_rejected: int = 0
    updates_sent: int = 0
    users_updated: int = 0
    users_not_found: int = 0
    users_denied: int = 0
    unmapped_employees: int = 0


@dataclass
class ProcessCounts(ProcessDayCounts):
    """Every count of a process run: the day's counts and the run's own bookkeeping."""

    files_seen: int = 0
    stale_events: int = 0
    batches: int = 0
    athoc_requests: int = 0
    history_not_written: int = 0  # decisions the history could not store (shared/history.py)
    history_gaps: int = 0  # earlier batches that died between their AtHoc call and their history write


PROCESS_DAY_COUNTS = tuple(f.name for f in fields(ProcessDayCounts))
PROCESS_COUNTS = tuple(f.name for f in fields(ProcessCounts))
SYNC_COUNTS = ("users_fetched", "users_without_collar", "mappings_total", "added", "updated", "removed", "conflicts")
CLEANUP_COUNTS = ("users_checked", "stale_found", "cleared", "unparsable", "users_not_found", "users_denied")
RECONCILE_COUNTS = ("users_checked", "in_sync", "drifted", "applied")

# Messages listed per run (the counts stay complete): a bad day must not make a run record unreadable.
ERRORS_LISTED = 20


def capped(messages: Sequence[str], limit: int = ERRORS_LISTED, what: str = "errors") -> list[str]:
    """The first `limit` messages, and one line saying how many more there were."""
    listed = list(messages[:limit])
    if len(messages) > limit:
        listed.append(f"... and {len(messages) - limit} more {what}")
    return listed


@dataclass(frozen=True)
class JobEnd:
    """How a run ended: what goes into its run record, its status row and its summary line."""

    outcome: Outcome
    counts: Mapping[str, object]
    error: str = ""
    error_kind: ErrorKind | None = None
    status_counts: Mapping[str, object] | None = None  # what the status row keeps, if not `counts`
    new_version: bool = False  # sync-mappings: the mapping table changed (the pipeline's cache key)


@dataclass
class JobRun:
    """One run of a job: its id (on every log line while it runs), its trigger and its clock."""

    kind: JobKind
    trigger: str
    run_id: str
    started_at: datetime  # the job's clock at its start (tests pass a fixed instant)
    span: Span | None = field(default=None, repr=False)  # the run's span (start_job sets it)
    _monotonic_start: float = field(default_factory=time.monotonic, repr=False)

    @property
    def elapsed_seconds(self) -> float:
        return time.monotonic() - self._monotonic_start

    @property
    def now(self) -> datetime:
        """The job's clock now: its start plus the time it took."""
        return self.started_at + timedelta(seconds=self.elapsed_seconds)

    def finish(self, runtime: Runtime, end: JobEnd) -> bool:
        """The run-log entry and the job's status row (ETag-checked); False, logged, if storage refused."""
        finished_at = self.now
        run = RunRecord(
            kind=self.kind,
            run_id=self.run_id,
            started_at=self.started_at,
            finished_at=finished_at,
            outcome=end.outcome,
            error=end.error[:8000],
            trigger=self.trigger,
            counts=dict(end.counts),
            error_kind=end.error_kind,
        )
        return runtime.state.finish_run(
            run,
            status_counts=None if end.status_counts is None else dict(end.status_counts),
            new_version=end.new_version,
            at=finished_at,
        )

    def log_summary(
        self,
        logger: logging.Logger,
        outcome: str,
        text: str,
        *,
        failed: bool,
        error_kind: ErrorKind | None = None,
        **fields: object,
    ) -> None:
        """The run's one summary line: ERROR when it failed, with `error_kind` for the alert rules.

        Its fields also go onto the run's span and into the `bobo.` metrics (once per run: every job logs
        one summary line, whether or not it wrote a run record).
        """
        fields = {
            "trigger": self.trigger,
            "duration_seconds": round(self.elapsed_seconds, 3),
            **({"error_kind": str(error_kind)} if error_kind else {}),
            **fields,
        }
        log_run_summary(logger, self.kind, outcome, text, level=logging.ERROR if failed else logging.INFO, **fields)
        if self.span is not None:
            telemetry.record_run_end(self.span, self.kind, outcome, failed, fields)


@contextlib.contextmanager
def start_job(kind: JobKind, *, trigger: str, now: datetime | None = None) -> Iterator[JobRun]:
    """A run of `kind`: a new run id in the log context and one span, for as long as the block runs.

    `kind` may be any JobKind: the span and the metrics take its value as they find it.
    """
    with run_context(kind) as run_id, telemetry.run_span(kind, run_id, trigger) as span:
        clock = now.astimezone(UTC) if now is not None else utcnow()
        yield JobRun(kind=kind, trigger=trigger, run_id=run_id, started_at=clock, span=span)
