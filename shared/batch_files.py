"""The files of one batch: read and parse each (streaming), then count attempts and move each file to
processed or failed, its rejects report beside it (docs/design.md#file-outcomes).

A file leaves incoming only after its copy is complete; one file's failed move never stops the others.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError

from shared.bobo_csv import Rejection, UnreadableFile, read_bobo_csv, rejects_csv
from shared.decisions import SourcedEvent, Watermark, latest_per_employee
from shared.logcontext import brief_error
from shared.parallel import in_parallel
from shared.process_report import ProcessReport
from shared.records import FileRecord, FileState, utcnow
from shared.runtime import Runtime
from shared.storage import IncomingBlob, MoveResult

log = logging.getLogger(__name__)

# Rejected rows kept per file for its rejects file; beyond this only the count is kept (bounded memory).
REJECTS_KEPT_PER_FILE = 10_000
# Files up to this size are downloaded once and moved from memory (one GET per file instead of two),
# within a per-batch budget so a batch of many large files still streams.
SMALL_FILE_BYTES = 1024 * 1024
BATCH_MEMORY_BUDGET = 64 * 1024 * 1024


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


def read_files(
    runtime: Runtime, works: list[FileWork], on_superseded: Callable[[SourcedEvent], None] | None = None
) -> None:
    """Read and parse every file on BOBO_IO_THREADS threads; small files are kept in memory for their move,
    within a per-batch budget so a batch of many large files still streams."""
    memory_left = BATCH_MEMORY_BUDGET
    reads: list[tuple[FileWork, bool]] = []
    for work in works:
        keep = work.blob.size <= SMALL_FILE_BYTES and work.blob.size <= memory_left
        memory_left -= work.blob.size if keep else 0
        reads.append((work, keep))
    in_parallel(
        runtime.settings.io_threads,
        lambda read: _read_file(runtime, read[0], keep_content=read[1], on_superseded=on_superseded),
        reads,
    )


def _read_file(
    runtime: Runtime,
    work: FileWork,
    *,
    keep_content: bool,
    on_superseded: Callable[[SourcedEvent], None] | None = None,
) -> None:
    settings = runtime.settings
    try:
        if keep_content:
            work.content = runtime.storage.read_bytes(settings.incoming_container, work.name, etag=work.blob.etag)
            chunks: Iterable[bytes] = (work.content,)
        else:
            chunks = runtime.storage.read_chunks(settings.incoming_container, work.name, etag=work.blob.etag)
        work.winners = latest_per_employee(_events_of(work, chunks), on_superseded)
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
        retry(work, f"could not read the file: {brief_error(error)}")
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


def retry(work: FileWork, reason: str) -> None:
    if work.outcome is None or work.outcome is FileState.WAITING:
        work.outcome = FileState.WAITING
        work.reason = work.reason or reason


def set_aside(works: list[FileWork]) -> None:
    for work in works:
        if work.outcome is None:
            work.skipped = True
            work.winners.clear()


def finish_files(runtime: Runtime, works: list[FileWork], batch_id: str, report: ProcessReport) -> None:
    """Count attempts, then move every file whose outcome is final (in parallel), then save the records."""
    settings = runtime.settings
    now = utcnow()
    final, given_up = _count_attempts(works, batch_id, now, settings.max_retry_attempts, report)
    if given_up:
        # Before the moves: a crash between the two must not let an older event through later.
        runtime.state.save_watermarks(given_up)

    moves = in_parallel(settings.io_threads, lambda work: _move_file(runtime, work, batch_id, now), final)
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


def _count_attempts(
    works: list[FileWork], batch_id: str, now: datetime, max_attempts: int, report: ProcessReport
) -> tuple[list[FileWork], dict[str, str]]:
    """Each file's record for this attempt; a waiting file past its attempts is given up (failed).
    Returns the files to move now, and the watermarks a given-up file leaves for its unconfirmed events."""
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
            if record.attempts < max_attempts:
                report.files_retry += 1
                log.warning(
                    "file kept for retry: %s (attempt %d of %d): %s",
                    work.name,
                    record.attempts,
                    max_attempts,
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
    return final, given_up


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


def outcome_word(work: FileWork) -> str:
    return {FileState.PROCESSED: "processed", FileState.FAILED: "failed", FileState.WAITING: "retried"}.get(
        work.outcome or FileState.PROCESSED, "processed"
    )
