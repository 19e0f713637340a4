"""`retry-failed`: failed files back in incoming with their attempts reset, and who did it in the run log."""

from __future__ import annotations

import getpass
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError

from shared.errors import ExitCode
from shared.jobs import JobEnd, JobRun, start_job
from shared.logcontext import brief_error
from shared.progress import progress
from shared.records import FileRecord, FileState, JobKind, Outcome, utcnow
from shared.settings import Settings

if TYPE_CHECKING:
    from azure.storage.blob import BlobProperties

    from shared.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MovedFile:
    name: str  # in the failed container (it may carry a collision suffix)
    incoming: str  # in incoming: the name the exporter gave it, unless that one is taken


@dataclass
class RetryResult:
    """`retry-failed`: exit non-zero when a named file was not in the failed container (nothing hidden)."""

    moved: list[MovedFile] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    operator: str = ""
    run_id: str = ""

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.FAILED if self.not_found or self.errors else ExitCode.OK

    @property
    def failure(self) -> str:
        if self.errors:
            return f"retry-failed: {self.errors[0]}"
        if self.not_found:
            return f"retry-failed: not in the failed container: {', '.join(self.not_found[:10])}"
        return ""

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.moved]

    @property
    def incoming_names(self) -> list[str]:
        return [m.incoming for m in self.moved]

    def to_json(self) -> dict[str, Any]:
        return {
            "moved": len(self.moved),
            "names": self.names,
            "incoming_names": self.incoming_names,
            "not_found": list(self.not_found),
            "errors": list(self.errors),
            "operator": self.operator,
            "run_id": self.run_id,
        }

    def text_lines(self) -> list[str]:
        lines = [f"moved {len(self.moved)} file{'s' if len(self.moved) != 1 else ''} back to incoming"]
        lines += [f"  {m.name}" + (f" -> {m.incoming}" if m.incoming != m.name else "") for m in self.moved]
        lines += [f"not in the failed container: {name}" for name in self.not_found]
        lines += [f"error: {error}" for error in self.errors]
        if self.moved:
            lines.append("they are processed by the next sweep (every 5 minutes), or now: python -m shared.cli process")
        return lines


def operator_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): fall back to the environment
        return os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"


def retry_failed(runtime: Runtime, names: list[str] | None = None, *, operator: str | None = None) -> RetryResult:
    """Move the named failed files (all with None) back to incoming, attempts reset, and log who did it."""
    runtime.ensure_ready()
    with start_job(JobKind.RETRY_FAILED, trigger="cli") as job:
        result = RetryResult(operator=operator or operator_name(), run_id=job.run_id)
        settings = runtime.settings
        failed = runtime.storage.container(settings.failed_container)
        available = {b.name: b for b in failed.list_blobs() if not b.name.startswith(".")}
        wanted = sorted(available) if names is None else list(dict.fromkeys(names))
        result.not_found = [name for name in wanted if name not in available]
        records = runtime.state.failed_files()
        records |= {r.destination: r for r in list(records.values()) if r.destination}
        with progress("moving failed files to incoming") as show:
            for done, name in enumerate((n for n in wanted if n in available), start=1):
                _retry_one(runtime, available[name], records, result)
                show(done, len(wanted) - len(result.not_found))
        _record_retry(runtime, job, result)
        return result


def _retry_one(runtime: Runtime, blob: BlobProperties, records: dict[str, FileRecord], result: RetryResult) -> None:
    settings = runtime.settings
    record = _record_for(settings, blob.name, records)
    # Back under the name the exporter gave it, when the failed copy carries a collision suffix.
    preferred = record.name if record is not None else blob.name
    try:
        incoming_name, etag, size = move_to_incoming(runtime, blob, preferred)
    except (AzureError, RuntimeError) as error:
        result.errors.append(f"{blob.name}: {brief_error(error)}")
        log.error("retry-failed: could not move %s: %s", blob.name, brief_error(error))
        return
    now = utcnow()
    fresh = FileRecord(name=incoming_name, state=FileState.WAITING, attempts=0, size=size, etag=etag, first_seen=now)
    fresh.last_error = f"retried by {result.operator} at {now.isoformat()}"
    runtime.state.save_files([fresh])
    result.moved.append(MovedFile(name=blob.name, incoming=incoming_name))
    log.info("retry-failed: %s moved back to incoming as %s by %s", blob.name, incoming_name, result.operator)


def _record_for(settings: Settings, failed_name: str, records: dict[str, FileRecord]) -> FileRecord | None:
    """The record of the file now lying in failed under `failed_name` (its name may carry a suffix)."""
    destination = f"{settings.failed_container}/{failed_name}"
    match = records.get(destination)  # the caller also keys records by destination
    return match or records.get(failed_name)


def move_to_incoming(
    runtime: Runtime, blob: BlobProperties, preferred_name: str, now: datetime | None = None
) -> tuple[str, str, int]:
    """Move a failed blob back to incoming with Storage.move's safety (never overwrite, verify, delete if
    unchanged, an interrupted earlier retry's copy reused). Returns (incoming name, incoming ETag, size)."""
    from shared.storage import IncomingBlob

    settings, storage = runtime.settings, runtime.storage
    props = storage.container(settings.failed_container).get_blob_client(blob.name).get_blob_properties()
    source = IncomingBlob(blob.name, props.etag, props.size, props.last_modified)
    moved = storage.move(
        source,
        settings.incoming_container,
        {"retried_from": f"{settings.failed_container}/{blob.name}"},
        now=now or utcnow(),
        source_container=settings.failed_container,
        preferred_name=preferred_name,
    )
    if not moved.source_deleted:
        log.warning("retry-failed: %s changed while it was copied; the failed copy stays too", blob.name)
    copied = storage.incoming.get_blob_client(moved.destination_name).get_blob_properties()
    return moved.destination_name, copied.etag, copied.size


def _record_retry(runtime: Runtime, job: JobRun, result: RetryResult) -> None:
    """The run's bookkeeping: its run log record and its one summary line (the exit code is the result's)."""
    outcome = Outcome.FAILED if result.errors else Outcome.SUCCESS
    counts = {
        "moved": len(result.moved),
        "operator": result.operator,
        "names": result.names,
        "incoming_names": result.incoming_names,
        "not_found": result.not_found,
    }
    error = "; ".join(result.errors + [f"not found: {n}" for n in result.not_found])
    job.finish(runtime, JobEnd(outcome, counts, error=error))
    job.log_summary(
        log,
        str(outcome),
        f"retry-failed by {result.operator}: {len(result.moved)} files moved back to incoming",
        failed=bool(result.errors),
        operator=result.operator,
        moved=len(result.moved),
        not_found=len(result.not_found),
    )
