"""The ingest pipeline: incoming CSV files -> one batch of AtHoc duty updates -> processed or failed.

`ingest_blob` (the blob trigger), `drain` (the sweep timer and `process` command) run this same code:

    take the batch lock (or return) -> wait the batch window -> loop:
      list incoming -> read + parse each file (streaming) -> latest event per employee
      -> mappings and watermarks loaded once -> plan -> SyncByCommonNames in chunks -> classify rows per file
      -> watermarks -> rejects files -> moves (copy, verify, delete) -> file records -> run log
    -> release the lock -> look once more for files that landed meanwhile

Crash safety, line by line: AtHoc is told before the watermark is written and the watermark before the
move, so a crash anywhere makes the next run either resend the same (not an older) value or find the
events stale and just finish the move. A file leaves incoming only after its copy is complete.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError

from shared.bobo_csv import Rejection, UnreadableFile, read_bobo_csv, rejects_csv
from shared.decisions import (
    PlannedUpdate,
    SourcedEvent,
    Watermark,
    latest_per_employee,
    outcome_of_rows,
    plan_updates,
    unconfirmed_watermark,
)
from shared.errors import ErrorKind, ExitCode, most_urgent
from shared.jobs import PROCESS_COUNTS, JobEnd, JobRun, capped, start_job
from shared.logcontext import brief_error
from shared.runtime import Runtime
from shared.state import FileRecord, FileState, JobKind, Outcome, utcnow
from shared.storage import BatchLock, IncomingBlob, MoveResult

log = logging.getLogger(__name__)

# Rejected rows kept per file for its rejects file; beyond this only the count is kept (bounded memory).
REJECTS_KEPT_PER_FILE = 10_000
# Files up to this size are downloaded once and moved from memory (one GET per file instead of two),
# within a per-batch budget so a batch of many large files still streams.
SMALL_FILE_BYTES = 1024 * 1024
BATCH_MEMORY_BUDGET = 64 * 1024 * 1024

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class FileWork:
    """One file's way through a batch."""

    blob: IncomingBlob
    record: FileRecord
    rows_read: int = 0
    rows_rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    winners: dict[str, SourcedEvent] = field(default_factory=dict)
    outcome: FileState | None = None  # None while undecided; WAITING = kept for retry
    reason: str = ""
    skipped: bool = False  # changed while being read: not attempted in this batch
    content: bytes | None = None  # the bytes of a small file, kept for its move
    # Events this file won that AtHoc did not confirm: if the file is given up, they become watermarks, so
    # an older event arriving later cannot undo what AtHoc may have applied.
    unconfirmed: dict[str, Watermark] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.blob.name


@dataclass
class ProcessReport:
    """The `process` command's JSON (docs/design.md#command-line), summed over the batches of a drain."""

    files_seen: int = 0
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
    stale_events: int = 0
    batches: int = 0
    athoc_requests: int = 0
    errors: list[str] = field(default_factory=list)
    # Logins AtHoc confirmed as updated: users_updated counts distinct users over all batches of a drain.
    updated_logins: set[str] = field(default_factory=set)
    files: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, str]] = field(default_factory=list)  # dry run: what would be sent
    dry_run: bool = False
    lock_busy: bool = False
    run_id: str = ""

    def add(self, other: ProcessReport) -> None:
        for name in PROCESS_COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors += other.errors
        self.updated_logins |= other.updated_logins
        self.users_updated = len(self.updated_logins)
        self.error_kind = most_urgent(self.error_kind, other.error_kind)
        self.files += other.files
        self.updates += other.updates

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in PROCESS_COUNTS}

    def to_json(self) -> dict[str, Any]:
        return {
            **self.counts(),
            "errors": list(self.errors),
            "files": list(self.files),
            "dry_run": self.dry_run,
            "run_id": self.run_id,
            **({"updates": self.updates} if self.dry_run else {}),
        }

    storage_error: str = ""
    error_kind: ErrorKind | None = None  # why the run failed as a job, not a file ("auth" feeds an alert)
    files_pending: int = -1  # incoming after the drain (-1: not listed)
    oldest_pending_seconds: int = 0

    # The command protocol of shared.cli: `process` did its job even when files failed or wait for retry
    # (AtHoc unreachable included); not when storage could not be reached.
    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.STORAGE if self.storage_error else ExitCode.OK

    @property
    def failure(self) -> str:
        return f"storage unreachable: {self.storage_error}" if self.storage_error else ""

    def text_lines(self) -> list[str]:
        if self.lock_busy:
            return ["another batcher holds the lock and will process the waiting files; try again shortly"]
        verb = "would send" if self.dry_run else "sent"
        lines = [
            f"files: {self.files_seen} seen, {self.files_processed} processed, {self.files_failed} failed, "
            f"{self.files_retry} waiting for retry",
            f"rows: {self.rows_read} read, {self.rows_rejected} rejected",
            f"AtHoc: {verb} {self.updates_sent} updates; {self.users_updated} users updated, "
            f"{self.users_not_found} not found, {self.users_denied} denied; {self.unmapped_employees} unmapped, "
            f"{self.stale_events} stale",
        ]
        lines += [
            f"  {f['name']}: {f['outcome']}" + (f" ({f['reason']})" if f.get("reason") else "") for f in self.files
        ]
        if self.dry_run:
            lines += [f"  would set {u['login']} = {u['value']!r}" for u in self.updates]
        lines += [f"error: {e}" for e in self.errors]
        return lines


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
            _drain_with_lock(runtime, total, job.run_id, wait_window=wait_window, wait_for_lock=wait_for_lock)
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
    runtime: Runtime, total: ProcessReport, run_id: str, *, wait_window: bool, wait_for_lock: float
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


def _process_batch(
    runtime: Runtime, blobs: list[IncomingBlob], run_id: str, *, dry_run: bool = False, lock: BatchLock | None = None
) -> ProcessReport:
    settings, state = runtime.settings, runtime.state
    batch_id = f"{run_id}-{utcnow().strftime('%H%M%S%f')}"
    report = ProcessReport(dry_run=dry_run, batches=1)
    now = utcnow()
    known = state.waiting_files()
    works: list[FileWork] = []
    for blob in blobs:
        record = known.get(blob.name)
        if record is None or record.etag != blob.etag:
            # First sight (a missed trigger event) or a replaced file: a new file, attempts from zero.
            record = FileRecord(name=blob.name, etag=blob.etag, size=blob.size, first_seen=now)
        record.size = blob.size
        works.append(FileWork(blob=blob, record=record))
    report.files_seen = len(works)

    for work in works:
        if not work.name.lower().endswith(".csv"):
            work.outcome, work.reason = FileState.FAILED, "not a .csv file"

    csv_works = [w for w in works if w.outcome is None]
    memory_left = BATCH_MEMORY_BUDGET
    reads: list[tuple[FileWork, bool]] = []
    for work in csv_works:
        keep = work.blob.size <= SMALL_FILE_BYTES and work.blob.size <= memory_left
        memory_left -= work.blob.size if keep else 0
        reads.append((work, keep))
    _in_parallel(settings.io_threads, lambda read: _read_file(runtime, read[0], keep_content=read[1]), reads)
    # Merged in listing order: the same winners whichever read finished first.
    winners = latest_per_employee(
        sourced for work in csv_works if work.outcome is None and not work.skipped for sourced in work.winners.values()
    )
    if any(w.outcome is FileState.WAITING for w in csv_works):
        # A file we could not read may hold the newest event of someone in this batch: send nothing now,
        # and leave the readable files untouched (not attempted) for the next batch.
        _set_aside(csv_works)
        winners = {}
    if winners and lock is not None and lock.lost.is_set():
        _set_aside(csv_works)  # another batcher may hold the lock now: it will take these files
        winners = {}
    works = [w for w in works if not w.skipped]
    report.files_seen = len(works)

    mappings: dict[str, str] = {}
    if winners:
        # Contract section 2: no batch is decided on a mapping that never synced. Only files with events
        # wait for it; an empty or all-rejected file has nothing to send and finishes now.
        mappings, mapping_error = _mappings_for_batch(runtime, dry_run=dry_run)
        if mapping_error:
            for work in works:
                if work.winners:
                    _retry(work, mapping_error)
            report.errors.append(mapping_error)
            report.error_kind = most_urgent(report.error_kind, ErrorKind.MAPPING)
            winners = {}

    if winners:
        watermarks = {emp: Watermark.from_text(text) for emp, text in state.load_watermarks().items()}
        plan = plan_updates(winners, mappings, watermarks, settings.athoc.datetime_format)
        report.unmapped_employees = len(plan.unmapped)
        report.stale_events = len(plan.stale)
        for sourced in plan.unmapped:
            log.debug("employee %s has no AtHoc mapping (file %s)", sourced.event.employee_id, sourced.file_name)
        if dry_run:
            report.updates_sent = len(plan.updates)  # the contract's "updates that would be sent"
            report.updates = [
                {"login": u.login, "value": u.value, "employee_id": u.employee_id, "file": u.source.file_name}
                for u in plan.updates
            ]
        elif plan.updates and lock is not None and not lock.confirm():
            # The lock may be someone else's now, and their batch may hold newer events of these employees:
            # send nothing, leave the files for the next run (those already decided still finish).
            _set_aside(works)
            works = [w for w in works if not w.skipped]
            report.files_seen, report.unmapped_employees, report.stale_events = len(works), 0, 0
        elif plan.updates:
            _send(runtime, plan.updates, works, report)

    for work in works:
        report.rows_read += work.rows_read
        report.rows_rejected += work.rows_rejected
        if work.outcome is None:
            work.outcome = FileState.PROCESSED
    if dry_run:
        report.files = [{"name": w.name, "outcome": "would be " + _outcome_word(w), "reason": w.reason} for w in works]
        return report
    _finish_files(runtime, works, batch_id, report)
    return report


def _note_backlog(runtime: Runtime, total: ProcessReport) -> None:
    """What still waits after the drain, for the summary line (the 'file waiting too long' alert reads it)."""
    waiting = runtime.storage.list_incoming()
    total.files_pending = len(waiting)
    if waiting:
        oldest = min(blob.last_modified for blob in waiting)
        total.oldest_pending_seconds = max(0, int((utcnow() - oldest).total_seconds()))


def _set_aside(works: list[FileWork]) -> None:
    for work in works:
        if work.outcome is None:
            work.skipped = True
            work.winners.clear()


def _mappings_for_batch(runtime: Runtime, *, dry_run: bool) -> tuple[dict[str, str], str | None]:
    """The mapping to decide a batch with, or why there is none (the files with events then wait).

    Contract section 2: before the first batch ever, a mapping sync must have succeeded, so one runs now.
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


def _read_file(runtime: Runtime, work: FileWork, *, keep_content: bool) -> None:
    settings = runtime.settings
    try:
        if keep_content:
            work.content = runtime.storage.read_bytes(settings.incoming_container, work.name, etag=work.blob.etag)
            chunks: Iterable[bytes] = (work.content,)
        else:
            chunks = runtime.storage.read_chunks(settings.incoming_container, work.name, etag=work.blob.etag)
        work.winners = latest_per_employee(_events_of(work, chunks))
    except UnreadableFile as error:
        work.outcome, work.reason = FileState.FAILED, f"not readable: {error}"
        work.winners.clear()
        return
    except (ResourceModifiedError, ResourceNotFoundError):
        # Replaced or removed while we read it: not this batch's business; a new version gets its own turn.
        work.skipped = True
        work.winners.clear()
        return
    except AzureError as error:
        _retry(work, f"could not read the file: {brief_error(error)}")
        work.winners.clear()
        return
    if work.rows_read > 0 and work.rows_rejected == work.rows_read:
        work.outcome, work.reason = FileState.FAILED, f"no valid row ({work.rows_rejected} rows rejected)"
        work.winners.clear()


def _events_of(work: FileWork, chunks: Iterable[bytes]) -> Iterator[SourcedEvent]:
    """The file's events, streamed; its rows and rejections are counted (and kept, bounded) on the way."""
    for item in read_bobo_csv(chunks):
        work.rows_read += 1
        if isinstance(item, Rejection):
            work.rows_rejected += 1
            if len(work.rejections) < REJECTS_KEPT_PER_FILE:
                work.rejections.append(item)
            continue
        yield SourcedEvent(item, work.name, work.blob.last_modified)


def _send(runtime: Runtime, updates: list[PlannedUpdate], works: list[FileWork], report: ProcessReport) -> None:
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
            _retry(work, failure)
            work.unconfirmed[update.employee_id] = unconfirmed_watermark(update)
        report.errors.append(failure)
        report.error_kind = most_urgent(report.error_kind, ErrorKind.INTERNAL)
        return
    report.athoc_requests += result.requests
    outcome = outcome_of_rows(updates, result.rows)
    for file_name, reason in outcome.retry_reasons.items():
        _retry(by_file[file_name], reason)
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
    if outcome.settled:
        runtime.state.save_watermarks({emp: mark.to_text() for emp, mark in outcome.settled.items()})
    report.errors += capped(outcome.failures, what="AtHoc row errors")


def _retry(work: FileWork, reason: str) -> None:
    if work.outcome is None or work.outcome is FileState.WAITING:
        work.outcome = FileState.WAITING
        work.reason = work.reason or reason


def _finish_files(runtime: Runtime, works: list[FileWork], batch_id: str, report: ProcessReport) -> None:
    """Count attempts, then move every file whose outcome is final (in parallel), then save the records."""
    settings = runtime.settings
    now = utcnow()
    final: list[FileWork] = []
    given_up: dict[str, str] = {}
    for work in works:
        record = work.record
        record.last_attempt = now
        record.batch_id = batch_id
        record.rows_read = work.rows_read
        record.rows_rejected = work.rows_rejected
        if work.outcome is FileState.WAITING:
            record.attempts += 1
            record.last_error = work.reason
            if record.attempts < settings.max_retry_attempts:
                report.files_retry += 1
                log.warning(
                    "file kept for retry: %s (attempt %d of %d): %s",
                    work.name,
                    record.attempts,
                    settings.max_retry_attempts,
                    work.reason,
                    extra={"file_name": work.name},
                )
                report.files.append(
                    {"name": work.name, "outcome": "retry", "attempts": record.attempts, "reason": work.reason}
                )
                continue
            work.outcome = FileState.FAILED
            work.reason = f"retries exhausted after {record.attempts} attempts: {work.reason}"
            given_up.update({emp: mark.to_text() for emp, mark in work.unconfirmed.items()})
        final.append(work)
    if given_up:
        # Before the moves: a crash between the two must not let an older event through later.
        runtime.state.save_watermarks(given_up)

    moves = _in_parallel(settings.io_threads, lambda work: _move_file(runtime, work, batch_id, now), final)
    for work, moved in zip(final, moves, strict=True):
        record = work.record
        if isinstance(moved, AzureError):
            # The file stays in incoming, whole; the next run finishes the move.
            report.files_retry += 1
            record.last_error = f"move failed: {brief_error(moved)}"
            report.errors.append(f"{work.name}: move failed: {brief_error(moved)}")
            log.warning("file kept for retry: %s: move failed: %s", work.name, brief_error(moved))
            continue
        record.state = work.outcome or FileState.PROCESSED
        record.destination = f"{moved.destination_container}/{moved.destination_name}"
        if work.outcome is FileState.FAILED:
            record.last_error = work.reason
            report.files_failed += 1
            report.errors.append(f"{work.name}: {work.reason}")
            log.error("file failed: %s: %s", work.name, work.reason, extra={"file_name": work.name})
        else:
            report.files_processed += 1
        report.files.append(
            {
                "name": work.name,
                "outcome": record.state.value,
                "destination": record.destination,
                "reason": work.reason,
                "attempts": record.attempts,
            }
        )
    runtime.state.save_files(w.record for w in works)


def _move_file(runtime: Runtime, work: FileWork, batch_id: str, now: datetime) -> MoveResult | AzureError:
    """Copy the file to processed or failed (its rejects report beside it), then delete it from incoming.

    A storage error is returned, not raised: one file's failed move must not stop the others.
    """
    settings = runtime.settings
    processed = work.outcome is FileState.PROCESSED
    metadata: dict[str, object] = {
        "batch_id": batch_id,
        "rows_read": work.rows_read,
        "rows_rejected": work.rows_rejected,
        "attempts": work.record.attempts,
    }
    if not processed:
        metadata["error"] = work.reason

    def write_rejects(copy_name: str) -> None:
        _write_rejects(runtime, work, copy_name)

    try:
        return runtime.storage.move(
            work.blob,
            settings.processed_container if processed else settings.failed_container,
            metadata,
            now=now,
            content=work.content,
            before_delete=write_rejects if work.rows_rejected else None,
        )
    except AzureError as error:
        return error


def _in_parallel(threads: int, task: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """`task` over `items` on `threads` threads (BOBO_IO_THREADS), results in the order of `items`.

    Storage calls are mostly network waits (a day's backlog is 1,440 files of 3 requests each), so a small
    pool cuts the wall time; more threads than the service and the instance's CPU keep busy only add
    contention (measured: 2-4 best on 2 cores against Azurite). Each task runs in a copy of the caller's
    context, so its log lines keep the run id. A task's exception is raised here once all tasks ended.
    """
    if threads <= 1 or len(items) <= 1:
        return [task(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(threads, len(items)), thread_name_prefix="bobo-io") as pool:
        futures = [pool.submit(contextvars.copy_context().run, task, item) for item in items]
        return [future.result() for future in futures]


def _write_rejects(runtime: Runtime, work: FileWork, copy_name: str) -> None:
    """`<copy name>.rejects.csv`, named after the file's copy in processed or failed: a name delivered twice
    gets two copies (`a.csv`, `a-<stamp>.csv`) and so two reports, never one overwriting the other."""
    body = rejects_csv(work.rejections)
    omitted = work.rows_rejected - len(work.rejections)
    if omitted > 0:
        body += f"0,{omitted} more rejected rows not listed,\r\n".encode()
    runtime.storage.write_blob(runtime.settings.rejects_container, f"{copy_name}.rejects.csv", body, overwrite=True)
    # One line per file with its reasons by kind: the workbook's "top rejected-row reasons".
    log.info(
        "rows rejected: %s: %d rows, see %s.rejects.csv",
        work.name,
        work.rows_rejected,
        copy_name,
        extra={"file_name": work.name, "rows_rejected": work.rows_rejected, "reject_reasons": reason_kinds(work)},
    )


_VALUES_IN_REASON = re.compile(r"'[^']*'|\"[^\"]*\"|(?<=found )\d+")


def reason_kinds(work: FileWork) -> str:
    """The listed rejections counted by kind of reason (the row's own values left out), as JSON."""
    kinds: Counter[str] = Counter()
    for rejection in work.rejections:
        for problem in rejection.reason.split("; "):
            kinds[_VALUES_IN_REASON.sub("…", problem)] += 1
    return json.dumps(dict(kinds.most_common()), ensure_ascii=False)


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


def _outcome_word(work: FileWork) -> str:
    return {FileState.PROCESSED: "processed", FileState.FAILED: "failed", FileState.WAITING: "retried"}.get(
        work.outcome or FileState.PROCESSED, "processed"
    )
