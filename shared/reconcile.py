"""`reconcile [--apply]` and the daily drift check of the mapping sync (docs/history.md).

`run_reconcile` reads every AtHoc user with the collar and duty fields (paged, as the mapping sync does),
compares with `last_applied` (shared/drift.py) and, with `apply`, sets drifted users back in bulk calls.
`check_drift` is the shared step: the mapping sync passes the users it already read (no extra AtHoc call).

Repair rules (where the issue is silent, see docs/history.md):
- The repair holds the pipeline's batch lock from its re-check to its AtHoc call, as the cleanup does: a
  batch cannot decide a newer event for a user in between. Under the lock each drifted user is checked
  again and skipped when anything was decided for them since the read began, or their `last_applied`
  changed (the pipeline already set them).
- Set-back users are recorded as `reconciled`, and their `last_applied` gets the new `applied_at`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from azure.core.exceptions import AzureError

from shared.athoc import AtHocError, RowStatus
from shared.decisions import row_failure_message
from shared.drift import DRIFT_LISTED, DriftCheck, DriftItem, DriftStatus, find_drift, save_drift_status
from shared.errors import ErrorKind, ExitCode
from shared.history import HistoryEntry, HistoryOutcome, employee_history
from shared.jobs import RECONCILE_COUNTS, JobEnd, capped, start_job
from shared.last_applied import LastApplied, all_last_applied, last_applied_of, record_set_outside_pipeline
from shared.logcontext import brief_error
from shared.records import JobKind, Outcome, utcnow
from shared.runtime import Runtime

log = logging.getLogger(__name__)

LOCK_WAIT_SECONDS = 60.0  # as the cleanup: the pipeline holds the lock for one drain


@dataclass
class DriftOutcome:
    """A check, and what its repair did."""

    check: DriftCheck
    applied: int = 0
    skipped: int = 0  # decided anew since the read: left to the pipeline's value
    errors: list[str] = field(default_factory=list)


@dataclass
class ReconcileResult:
    """The `reconcile` command's answer (docs/history.md)."""

    apply: bool
    run_id: str = ""
    outcome: DriftOutcome | None = None
    errors: list[str] = field(default_factory=list)
    exit_code: ExitCode = ExitCode.OK
    error_kind: ErrorKind | None = None

    @property
    def failure(self) -> str:
        return f"reconcile failed: {'; '.join(self.errors)}" if self.exit_code != ExitCode.OK else ""

    def counts(self) -> dict[str, int]:
        check = self.outcome.check if self.outcome else DriftCheck(0, 0, ())
        values = {
            "users_checked": check.users_checked,
            "in_sync": check.in_sync,
            "drifted": check.drifted,
            "applied": self.outcome.applied if self.outcome else 0,
        }
        return {name: values[name] for name in RECONCILE_COUNTS}

    def to_json(self) -> dict[str, Any]:
        drift = self.outcome.check.drift if self.outcome else ()
        return {
            **self.counts(),
            "drift": [item.to_json() for item in drift[:DRIFT_LISTED]],
            "skipped": self.outcome.skipped if self.outcome else 0,
            "errors": list(self.errors),
            "apply": self.apply,
            "run_id": self.run_id,
        }

    def text_lines(self) -> list[str]:
        counts = self.counts()
        lines = [
            f"reconcile: {counts['users_checked']} AtHoc users read, {counts['in_sync']} in sync with what this app "
            f"set, {counts['drifted']} drifted" + (f", {counts['applied']} set back" if self.apply else "")
        ]
        drift = self.outcome.check.drift if self.outcome else ()
        for item in drift[:DRIFT_LISTED]:
            lines.append(
                f"  employee {item.employee_id} ({item.login}): AtHoc has {item.athoc_value!r}, this app set "
                f"{item.expected_value!r}"
            )
        if drift and not self.apply:
            lines.append("run `reconcile --apply` to set them back")
        lines += [f"error: {e}" for e in self.errors]
        return lines


def check_drift(
    runtime: Runtime, users: list[dict[str, Any]], read_started: datetime, run_id: str, *, apply: bool
) -> DriftOutcome:
    """Compare, repair when asked, and record the `drift` status. Storage errors propagate."""
    settings = runtime.settings
    check = find_drift(users, all_last_applied(runtime.state), settings.athoc.duty_field, read_started)
    outcome = DriftOutcome(check)
    for item in check.drift[:DRIFT_LISTED]:
        log.warning(
            "drift: employee %s (%s) has %r in AtHoc, this app last set %r",
            item.employee_id,
            item.login,
            item.athoc_value,
            item.expected_value,
        )
    if apply and check.drift:
        _repair(runtime, outcome, read_started, run_id)
    listed = tuple(item.to_json() for item in check.drift[:20])
    save_drift_status(runtime.state, DriftStatus(utcnow(), check.drifted, outcome.applied, listed))
    return outcome


def _repair(runtime: Runtime, outcome: DriftOutcome, read_started: datetime, run_id: str) -> None:
    lock = runtime.storage.batch_lock()
    if not lock.acquire_within(LOCK_WAIT_SECONDS):
        outcome.errors.append(f"the pipeline's batch lock stayed busy for {LOCK_WAIT_SECONDS:.0f} s; nothing set back")
        return
    try:
        todo = [item for item in outcome.check.drift if _still_drifted(runtime, item, read_started)]
        outcome.skipped = outcome.check.drifted - len(todo)
        if not todo:
            return
        if lock.lost.is_set():
            outcome.errors.append("the batch lock was lost before setting values back; nothing set back")
            return
        report = runtime.athoc.sync_duty_values([(item.login, item.expected_value) for item in todo])
        decided = utcnow()
        by_login = {item.login: item for item in todo}
        changes = []
        for row in report.rows:
            item = by_login.get(row.login)
            if item is None:
                continue
            if row.status is RowStatus.UPDATED:
                entry = HistoryEntry(
                    item.employee_id,
                    HistoryOutcome.RECONCILED,
                    decided,
                    run_id,
                    value_sent=item.expected_value,
                    login=item.login,
                )
                changes.append((entry, LastApplied(item.expected_value, item.last_event_time, decided, item.login)))
            else:
                message = row_failure_message(row)
                if message not in outcome.errors:
                    outcome.errors.append(message)
        outcome.applied = len(changes)
        record_set_outside_pipeline(runtime.state, changes)
    finally:
        lock.release()
    from shared.cleanup import hand_over_waiting_files

    hand_over_waiting_files(runtime)


def _still_drifted(runtime: Runtime, item: DriftItem, read_started: datetime) -> bool:
    """Under the lock: nothing decided for the employee since the read, and the baseline unchanged."""
    current = last_applied_of(runtime.state, item.employee_id)
    if current is None or current.applied_at >= read_started or current.value != item.expected_value:
        return False
    return not employee_history(runtime.state, item.employee_id, read_started)


def run_reconcile(runtime: Runtime, *, apply: bool = False, trigger: str = "cli") -> ReconcileResult:
    """The `reconcile` command. Never raises: AtHoc or storage failures are returned (non-zero exit)."""
    with start_job(JobKind.RECONCILE, trigger=trigger) as job:
        result = ReconcileResult(apply=apply, run_id=job.run_id)
        settings = runtime.settings
        try:
            runtime.ensure_ready()
            read_started = utcnow()
            users = runtime.athoc.search_users([settings.athoc.collar_field, settings.athoc.duty_field])
            result.outcome = check_drift(runtime, users, read_started, job.run_id, apply=apply)
            result.errors += capped(result.outcome.errors, what="AtHoc errors")
        except AtHocError as error:
            result.errors.append(f"AtHoc unreachable: {error}")
            result.exit_code, result.error_kind = ExitCode.FAILED, ErrorKind.parse(error.kind)
        except AzureError as error:
            result.errors.append(f"storage unreachable: {brief_error(error)}")
            result.exit_code, result.error_kind = ExitCode.STORAGE, ErrorKind.STORAGE
        outcome = Outcome.FAILED if result.errors else Outcome.SUCCESS
        if result.exit_code != ExitCode.STORAGE:
            end = JobEnd(outcome, result.counts(), error="; ".join(result.errors), error_kind=result.error_kind)
            job.finish(runtime, end)
        counts = result.counts()
        text = (
            f"reconcile {outcome}: {counts['users_checked']} users, {counts['in_sync']} in sync, "
            f"{counts['drifted']} drifted, {counts['applied']} set back"
        )
        job.log_summary(log, str(outcome), text, failed=bool(result.errors), error_kind=result.error_kind, **counts)
        return result
