"""The ingest pipeline: incoming CSV files -> one batch of AtHoc duty updates -> processed or failed.

`ingest_blob` (the blob trigger), `drain` (the sweep timer and `process` command) run this same code:

    take the batch lock (or return) -> wait the batch window -> loop:
      list incoming -> read + parse each file (streaming) -> latest event per employee
      -> mappings and watermarks loaded once -> plan -> SyncByCommonNames in chunks -> classify rows per file
      -> watermarks (with last_applied) -> history -> rejects files -> moves (copy, verify, delete)
      -> file records -> run log
    -> release the lock -> look once more for files that landed meanwhile

Crash safety, line by line: AtHoc is told before the watermark is written and the watermark before the
move, so a crash anywhere makes the next run either resend the same (not an older) value or find the
events stale and just finish the move. A file leaves incoming only after its copy is complete.
The decision history (shared/history.py) is written after the watermarks, beside the moves: the batch's
"history pending" marker is deleted only in its last transaction, so a crash before that leaves the marker,
which the next sweep reports as a gap; a crash with the files not yet moved makes the next run decide them
again (their events then recorded as stale), so no decision is left unexplained without the gap being named.
"""

from __future__ import annotations

import contextvars
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from azure.core.exceptions import AzureError

from shared.batch_files import FileWork, finish_files, outcome_word, read_files, retry, set_aside
from shared.decisions import (
    PlannedUpdate,
    SourcedEvent,
    Watermark,
    latest_per_employee,
    outcome_of_rows,
    plan_updates,
    unconfirmed_watermark,
)
from shared.errors import ErrorKind, most_urgent
from shared.history import HistoryOutcome, HistoryWriter, event_entry, row_outcome, take_history_gaps
from shared.jobs import JobEnd, JobRun, capped, start_job
from shared.last_applied import LastApplied
from shared.logcontext import brief_error
from shared.process_report import ProcessReport
from shared.records import FileRecord, FileState, JobKind, Outcome, utcnow
from shared.runtime import Runtime
from shared.storage import BatchLock, IncomingBlob

log = logging.getLogger(__name__)


def ingest_blob(runtime: Runtime, name: str, *, trigger: str = "ingest_csv") -> ProcessReport | None:
    """The blob trigger's work: note the file, then drain as one batch if the lock is free.

    Returns None when the blob is already gone (a duplicate or late event for a file already moved).
    Never raises: failures are recorded and logged, and the file waits for the sweep.
    """
    try:
        runtime.ensure_ready()
        blob = runtime.storage.get_incoming(name)
        if blob is None:
            log.info("file %s is no longer in incoming (already handled)", name)
            return None
        runtime.state.record_seen(blob.name, blob.etag, blob.size)
    except AzureError as error:
        log.error("storage unavailable while noting %s: %s; the sweep will pick it up", name, brief_error(error))
        return None
    return drain(runtime, trigger=trigger, wait_window=True)


def drain(
    runtime: Runtime,
    *,
    trigger: str = "sweep_incoming",
    dry_run: bool = False,
    wait_window: bool = False,
    wait_for_lock: float = 0.0,
) -> ProcessReport:
    """Process everything waiting in incoming, batch after batch, while this caller holds the lock.

    Returns at once (with `lock_busy`) when another batcher holds the lock and `wait_for_lock` is 0;
    that batcher will also pick up the files of this caller. A dry run takes no lock and changes nothing.
    """
    with start_job(JobKind.PROCESS, trigger=trigger) as job:
        total = ProcessReport(dry_run=dry_run, run_id=job.run_id)
        try:
            runtime.ensure_ready()
            if dry_run:
                blobs = runtime.storage.list_incoming(limit=runtime.settings.batch_max_files)
                if blobs:
                    total.add(_process_batch(runtime, blobs, job.run_id, dry_run=True))
                _log_summary(job, total)
                return total
            # The blob trigger leaves the gap check to the sweep: it runs once a minute and more, and every
            # storage request of a burst counts (docs/history.md).
            _drain_with_lock(
                runtime,
                total,
                job.run_id,
                wait_window=wait_window,
                wait_for_lock=wait_for_lock,
                check_gaps=trigger != "ingest_csv",
            )
            if not total.lock_busy:
                _note_backlog(runtime, total)
        except AzureError as error:
            total.storage_error = brief_error(error)
            total.errors.append(f"storage unavailable: {total.storage_error}")
            total.error_kind = ErrorKind.STORAGE
            log.error("process run failed: storage unavailable: %s", total.storage_error)
        if not total.lock_busy:
            _record_run(runtime, job, total)
        _log_summary(job, total)
        return total


def _drain_with_lock(
    runtime: Runtime,
    total: ProcessReport,
    run_id: str,
    *,
    wait_window: bool,
    wait_for_lock: float,
    check_gaps: bool = True,
) -> None:
    settings = runtime.settings
    deadline = time.monotonic() + settings.drain_budget_seconds
    attempted: set[str] = set()
    lock_wait_until = time.monotonic() + wait_for_lock
    while True:
        lock = runtime.storage.batch_lock()
        if not lock.acquire_within(max(0.0, lock_wait_until - time.monotonic())):
            total.lock_busy = total.batches == 0
            return
        try:
            if wait_window and settings.batch_window_seconds > 0:
                time.sleep(settings.batch_window_seconds)
            wait_window = False
            if check_gaps:
                _report_history_gaps(runtime, total, run_id)
                check_gaps = False
            while time.monotonic() < deadline and not lock.lost.is_set():
                waiting = [b for b in runtime.storage.list_incoming() if b.name not in attempted]
                if not waiting:
                    break
                batch = waiting[: settings.batch_max_files]
                report = _process_batch(runtime, batch, run_id, lock=lock)
                total.add(report)
                attempted.update(b.name for b in batch)
                if report.files_retry:
                    # A failed AtHoc call may still have been applied. Its files must compete with newer
                    # arrivals in the same batch next time; a later batch without them could send an older
                    # event. So this drain ends here and the sweep (or the next trigger) reads them together.
                    return
        finally:
            lock.release()
        # A file that landed after our last listing saw the lock taken and returned; look once more.
        if time.monotonic() >= deadline or not any(b.name not in attempted for b in runtime.storage.list_incoming()):
            return
        lock_wait_until = time.monotonic()  # do not wait: if someone else holds it now, they drain


def _report_history_gaps(runtime: Runtime, total: ProcessReport, run_id: str) -> None:
    """While holding the lock, no other batch is live: markers older than the lease are of dead batches."""
    older_than = utcnow() - timedelta(seconds=runtime.settings.lock_lease_seconds)
    try:
        gaps = take_history_gaps(runtime.state, older_than, run_id)
    except AzureError as error:
        log.warning("could not look for history gaps: %s", brief_error(error))
        return
    for gap in gaps:
        log.warning(gap.message)
    total.history_gaps += len(gaps)
    total.errors += capped([gap.message for gap in gaps], what="history gaps")


@dataclass
class _Batch:
    """What every step of one batch shares."""

    runtime: Runtime
    run_id: str
    batch_id: str
    now: datetime
    report: ProcessReport
    history: HistoryWriter
    dry_run: bool
    lock: BatchLock | None

    def superseded(self, sourced: SourcedEvent) -> None:
        self.history.add(event_entry(sourced, HistoryOutcome.SUPERSEDED, self.now, self.run_id))


def _process_batch(
    runtime: Runtime, blobs: list[IncomingBlob], run_id: str, *, dry_run: bool = False, lock: BatchLock | None = None
) -> ProcessReport:
    """One batch, in the order of the module docstring: files -> winners -> decide and send -> history -> moves."""
    now = utcnow()
    batch = _Batch(
        runtime,
        run_id,
        batch_id=f"{run_id}-{now.strftime('%H%M%S%f')}",
        now=now,
        report=ProcessReport(dry_run=dry_run, batches=1),
        history=HistoryWriter(runtime.state, enabled=not dry_run, threads=runtime.settings.io_threads),
        dry_run=dry_run,
        lock=lock,
    )
    works = _files_of(runtime, blobs, now)
    winners = _read_winners(batch, works)
    works = [w for w in works if not w.skipped]
    batch.report.files_seen = len(works)
    if winners:
        works = _decide_and_send(batch, winners, works)
    report = batch.report
    for work in works:
        report.rows_read += work.rows_read
        report.rows_rejected += work.rows_rejected
        if work.outcome is None:
            work.outcome = FileState.PROCESSED
    if dry_run:
        report.files = [{"name": w.name, "outcome": "would be " + outcome_word(w), "reason": w.reason} for w in works]
        return report
    # The history and the moves touch different tables and blobs, so they go side by side: on Azurite a day's
    # backlog writes 21,600 history entries, which one after the other added about half to the batch's time.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bobo-history") as pool:
        history = pool.submit(contextvars.copy_context().run, _write_history, batch.history)
        finish_files(runtime, works, batch.batch_id, report)
        report.history_not_written += history.result()  # counted and logged as a warning, not a run error
    return report


def _files_of(runtime: Runtime, blobs: list[IncomingBlob], now: datetime) -> list[FileWork]:
    """Each blob with its file record; a name not ending .csv fails at once."""
    known = runtime.state.waiting_files()
    works: list[FileWork] = []
    for blob in blobs:
        record = known.get(blob.name)
        if record is None or record.etag != blob.etag:
            # First sight (a missed trigger event) or a replaced file: a new file, attempts from zero.
            record = FileRecord(name=blob.name, etag=blob.etag, size=blob.size, first_seen=now)
        record.size = blob.size
        work = FileWork(blob=blob, record=record)
        if not work.name.lower().endswith(".csv"):
            work.outcome, work.reason = FileState.FAILED, "not a .csv file"
        works.append(work)
    return works


def _read_winners(batch: _Batch, works: list[FileWork]) -> dict[str, SourcedEvent]:
    """Read the .csv files; the latest event per employee over the batch, or nothing if it must wait."""
    history = batch.history
    csv_works = [w for w in works if w.outcome is None]
    read_files(batch.runtime, csv_works, batch.superseded)
    # Merged in listing order: the same winners whichever read finished first.
    winners = latest_per_employee(
        (
            sourced
            for work in csv_works
            if work.outcome is None and not work.skipped
            for sourced in work.winners.values()
        ),
        on_superseded=batch.superseded,
    )
    if any(w.outcome is FileState.WAITING for w in csv_works):
        # A file we could not read may hold the newest event of someone in this batch: send nothing now,
        # and leave the readable files untouched (not attempted) for the next batch.
        set_aside(csv_works)
        winners = {}
        history.discard_unwritten()  # not decided: the next batch decides (and records) these rows
    if winners and batch.lock is not None and batch.lock.lost.is_set():
        set_aside(csv_works)  # another batcher may hold the lock now: it will take these files
        winners = {}
        history.discard_unwritten()
    for work in works:
        if work.skipped or work.outcome is not None:
            history.discard_file(work.name)  # read but not decided here: its superseded rows are not news
    return winners


def _decide_and_send(batch: _Batch, winners: dict[str, SourcedEvent], works: list[FileWork]) -> list[FileWork]:
    """Mappings, watermarks, the plan, its history, and the AtHoc call; the files still in this batch."""
    runtime, report, history = batch.runtime, batch.report, batch.history
    # No batch is decided on a mapping that never synced (docs/design.md#mapping-sync-safety-rules). Only
    # files with events wait for it; an empty or all-rejected file has nothing to send and finishes now.
    mappings, mapping_error = _mappings_for_batch(runtime, dry_run=batch.dry_run)
    if mapping_error:
        for work in works:
            if work.winners:
                retry(work, mapping_error)
        report.errors.append(mapping_error)
        report.error_kind = most_urgent(report.error_kind, ErrorKind.MAPPING)
        history.discard_unwritten()
        return works
    watermarks = {emp: Watermark.from_text(text) for emp, text in runtime.state.load_watermarks().items()}
    plan = plan_updates(winners, mappings, watermarks, runtime.settings.athoc.datetime_format)
    report.unmapped_employees = len(plan.unmapped)
    report.stale_events = len(plan.stale)
    for sourced in plan.unmapped:
        log.debug("employee %s has no AtHoc mapping (file %s)", sourced.event.employee_id, sourced.file_name)
    for outcome, events in (
        (HistoryOutcome.STALE, plan.stale),
        (HistoryOutcome.UNMAPPED, plan.unmapped),
        (HistoryOutcome.SUPERSEDED, plan.superseded),
    ):
        history.add_all(event_entry(sourced, outcome, batch.now, batch.run_id) for sourced in events)
    if batch.dry_run:
        report.updates_sent = len(plan.updates)  # `process --dry-run`: the updates that would be sent
        report.updates = [
            {"login": u.login, "value": u.value, "employee_id": u.employee_id, "file": u.source.file_name}
            for u in plan.updates
        ]
    elif plan.updates and batch.lock is not None and not batch.lock.confirm():
        # The lock may be someone else's now, and their batch may hold newer events of these employees:
        # send nothing, leave the files for the next run (those already decided still finish).
        set_aside(works)
        works = [w for w in works if not w.skipped]
        report.files_seen, report.unmapped_employees, report.stale_events = len(works), 0, 0
        history.discard_unwritten()
    elif plan.updates:
        history.open_marker(batch.batch_id, batch.run_id, plan.updates[0].employee_id, batch.now)
        _send(runtime, plan.updates, works, report, history, batch.run_id)
    return works


def _note_backlog(runtime: Runtime, total: ProcessReport) -> None:
    """What still waits after the drain, for the summary line (the 'file waiting too long' alert reads it)."""
    waiting = runtime.storage.list_incoming()
    total.files_pending = len(waiting)
    if waiting:
        oldest = min(blob.last_modified for blob in waiting)
        total.oldest_pending_seconds = max(0, int((utcnow() - oldest).total_seconds()))


def _mappings_for_batch(runtime: Runtime, *, dry_run: bool) -> tuple[dict[str, str], str | None]:
    """The mapping to decide a batch with, or why there is none (the files with events then wait).

    Before the first batch ever, a mapping sync must have succeeded, so one runs now.
    A dry run changes nothing, so it reads AtHoc's users and builds the mapping in memory instead: it then
    shows what a real run would send.
    """
    state = runtime.state
    if state.job_status(JobKind.SYNC_MAPPINGS).last_success is not None:
        return state.load_mappings(), None
    from shared.mapping_sync import preview_mappings, run_mapping_sync

    if dry_run:
        return preview_mappings(runtime)
    log.info("no mapping sync has ever succeeded: running one before the batch")
    result = run_mapping_sync(runtime, force=True, trigger="pipeline")
    if result.status == Outcome.SUCCESS:
        return state.load_mappings(), None
    return {}, f"mapping sync has never succeeded ({result.error or result.status}); files wait"


def _send(
    runtime: Runtime,
    updates: list[PlannedUpdate],
    works: list[FileWork],
    report: ProcessReport,
    history: HistoryWriter,
    run_id: str,
) -> None:
    by_file = {w.name: w for w in works}
    try:
        # The whole send must end inside the function's time: at most the drain budget (functionTimeout is 30 min).
        deadline = time.monotonic() + runtime.settings.drain_budget_seconds
        result = runtime.athoc.sync_duty_values([(u.login, u.value) for u in updates], deadline=deadline)
    except Exception as error:  # the trigger must never raise for AtHoc: treat it as a failed call
        log.exception("AtHoc update failed unexpectedly")
        failure = f"AtHoc update failed: {error.__class__.__name__}"
        for update in updates:
            work = by_file[update.source.file_name]
            retry(work, failure)
            work.unconfirmed[update.employee_id] = unconfirmed_watermark(update)
        report.errors.append(failure)
        report.error_kind = most_urgent(report.error_kind, ErrorKind.INTERNAL)
        decided = utcnow()
        history.add_all(
            event_entry(u.source, HistoryOutcome.PENDING, decided, run_id, value_sent=u.value, login=u.login)
            for u in updates
        )
        return
    report.athoc_requests += result.requests
    outcome = outcome_of_rows(updates, result.rows)
    for file_name, reason in outcome.retry_reasons.items():
        retry(by_file[file_name], reason)
    for file_name, unconfirmed in outcome.unconfirmed.items():
        by_file[file_name].unconfirmed.update(unconfirmed)
    for login in outcome.updated_logins:
        log.debug("AtHoc confirmed the update of %s", login)
    report.updates_sent += outcome.answered
    report.users_not_found += outcome.not_found
    report.users_denied += outcome.denied
    report.updated_logins |= outcome.updated_logins
    report.users_updated = len(report.updated_logins)
    report.error_kind = most_urgent(report.error_kind, outcome.error_kind)
    # The answer's time: a drift check whose AtHoc read began before it may have read the older value.
    decided = utcnow()
    statuses = {row.login: row.status for row in result.rows}
    applied: dict[str, dict[str, object]] = {}
    for update in updates:
        status = statuses.get(update.login)
        history.add(
            event_entry(
                update.source, row_outcome(status), decided, run_id, value_sent=update.value, login=update.login
            )
        )
        if row_outcome(status) is HistoryOutcome.APPLIED:
            last = LastApplied(update.value, update.source.event.event_time, decided, update.login)
            applied[update.employee_id] = last.properties()
    if outcome.settled:
        marks = {emp: mark.to_text() for emp, mark in outcome.settled.items()}
        runtime.state.save_watermarks(marks, extra=applied)
    report.errors += capped(outcome.failures, what="AtHoc row errors")


def _write_history(history: HistoryWriter) -> int:
    """After AtHoc and the watermarks, beside the moves (see the module docstring); never fails the batch.
    Returns how many entries could not be written."""
    history.flush()
    return history.not_written


def _record_run(runtime: Runtime, job: JobRun, total: ProcessReport) -> None:
    if total.files_seen == 0 and not total.errors:
        return  # an empty sweep is not worth a run-log entry every five minutes
    outcome = Outcome.FAILED if total.errors else Outcome.SUCCESS
    job.finish(runtime, JobEnd(outcome, total.counts(), error="; ".join(total.errors), error_kind=total.error_kind))


def _log_summary(job: JobRun, total: ProcessReport) -> None:
    if total.lock_busy:
        log.info("process: another batcher holds the lock; it will take these files", extra={"trigger": job.trigger})
        return
    outcome = "failed" if total.errors else "success"
    text = (
        f"process {outcome}: {total.files_seen} files ({total.files_processed} processed, {total.files_failed} "
        f"failed, {total.files_retry} retry), {total.rows_read} rows, {total.updates_sent} updates sent"
    )
    backlog = (
        {"files_pending": total.files_pending, "oldest_pending_seconds": total.oldest_pending_seconds}
        if total.files_pending >= 0
        else {}
    )
    job.log_summary(
        log,
        outcome,
        text,
        failed=bool(total.errors),
        error_kind=total.error_kind,
        dry_run=total.dry_run,
        **backlog,
        **total.counts(),
    )
