"""The `process` command's report: what a drain did, summed over its batches (docs/design.md#command-line)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.errors import ErrorKind, ExitCode, most_urgent
from shared.jobs import PROCESS_COUNTS, ProcessCounts


@dataclass
class ProcessReport(ProcessCounts):
    """The `process` command's JSON (docs/design.md#command-line), summed over the batches of a drain."""

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
        if self.history_not_written:
            lines.append(f"history: {self.history_not_written} decisions could not be recorded (see the warnings)")
        lines += [f"error: {e}" for e in self.errors]
        return lines
