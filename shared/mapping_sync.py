"""The mapping sync: makes the employee id -> AtHoc login table equal to what AtHoc holds.

`run_mapping_sync` is what the `sync_mappings` timer, the `sync-mappings` command and the pipeline's
first-batch gate call. The timer runs often; `decide_mapping_sync` (pure) says whether a run is due,
the way the predecessor decided (readme "User Mapping Sync Schedule").

Safety (docs/design.md#mapping-sync-safety-rules): an AtHoc answer with no users, an error part-way
through paging, or a result that would remove more than `BOBO_MAPPING_MAX_REMOVE_PERCENT` of the current
mappings leaves the table as it was and records the run as failed. `force` skips the schedule, never these rules.

Decisions beyond the rules (docs/design.md#mapping-sync-schedule):
- A collar id claimed by several users is a conflict: it is left unmapped, and removed if it was
  mapped before (keeping it would keep sending one person's book-ons to a possibly wrong user). Those
  removals do not count toward the shrink rule: they are ambiguity, not users gone, and an ambiguous
  id must never keep the rest of the table from being refreshed.
- A result in which no user has a collar id is "no data" (failed, retried next tick): an empty table
  would leave every employee unmapped.
- The same search reads the duty field unless `BOBO_RECONCILE=off`, and the drift check (shared/reconcile.py)
  compares it with what this app last set: no extra AtHoc call. `apply` sets drifted users back. The
  pipeline's first-batch sync skips the check (it holds the batch lock a repair needs; nothing was set yet).
- The daily run is due once local time has passed today's `BOBO_MAPPING_SYNC_HOUR` and no sync has
  succeeded since that moment (so a forced or catch-up run in the morning does not suppress the
  evening refresh). A sync hour inside a daylight-saving gap means the first instant after the gap;
  inside a repeated hour, its first occurrence.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import TableTransactionError

from shared.athoc import LOGIN_FIELD, AtHocError, field_value
from shared.bobo_csv import normalise_employee_id
from shared.errors import ErrorKind, ExitCode
from shared.jobs import SYNC_COUNTS, JobEnd, JobRun, start_job
from shared.logcontext import brief_error
from shared.records import JobKind, JobStatus, MappingEntry, Outcome, utcnow
from shared.runtime import Runtime

log = logging.getLogger(__name__)

# A concurrent sync may delete a row this one also deletes (a 404 fails the whole transaction):
# re-read the table and apply the remaining difference again, this many times at most.
APPLY_ATTEMPTS = 3
# Conflict details kept in the JSON and the run log (the count is always complete).
CONFLICTS_LISTED = 100


# ---------------------------------------------------------------- the schedule (pure)


class ScheduleSettings(Protocol):
    """What the schedule rule reads; `Settings` has it, tests may pass a small stand-in."""

    @property
    def mapping_sync_hour(self) -> int: ...
    @property
    def mapping_max_age_days(self) -> float: ...
    @property
    def timezone(self) -> ZoneInfo: ...


@dataclass(frozen=True)
class ScheduleRule:
    """A stand-in for `Settings` carrying only the schedule settings (tests, what-if tools)."""

    mapping_sync_hour: int = 20
    mapping_max_age_days: float = 2
    timezone_name: str = "UTC"

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone_name)


def daily_moment(now_utc: datetime, sync_hour: int, zone: ZoneInfo) -> datetime:
    """Today's (local date of `now_utc`) sync hour as a UTC instant.

    fold=0: an hour repeated in autumn means its first occurrence; an hour skipped in spring resolves
    with the pre-gap offset, which lands on the first instant after the gap.
    """
    local_date = now_utc.astimezone(zone).date()
    local = datetime.combine(local_date, clock_time(sync_hour), tzinfo=zone).replace(fold=0)
    return local.astimezone(UTC)


def decide_mapping_sync(status: JobStatus, now_utc: datetime, settings: ScheduleSettings) -> tuple[bool, str]:
    """Whether the mapping sync is due now, and why (the predecessor's rule, in priority order)."""
    now_utc = now_utc.astimezone(UTC)
    if status.last_success is None:
        return True, "never synced successfully"
    if status.last_status == Outcome.FAILED:
        return True, "the last attempt failed" + (f" ({status.last_error})" if status.last_error else "")
    if _returned_no_data(status.last_counts):
        return True, "the last sync returned no data"
    age = now_utc - status.last_success
    max_age = timedelta(days=settings.mapping_max_age_days)
    if age > max_age:
        return (
            True,
            f"last success {_days(age)} ago, more than BOBO_MAPPING_MAX_AGE_DAYS={settings.mapping_max_age_days:g}",
        )
    zone = settings.timezone
    moment = daily_moment(now_utc, settings.mapping_sync_hour, zone)
    hour = f"{settings.mapping_sync_hour:02d}:00 {zone.key}"
    if now_utc < moment:
        return False, f"not due: the daily sync runs after {hour}; last success {_days(age)} ago"
    if status.last_success >= moment:
        return False, f"not due: already synced since {hour} today"
    return True, f"daily sync after {hour}"


def _returned_no_data(counts: Mapping[str, Any]) -> bool:
    fetched = counts.get("users_fetched")
    return isinstance(fetched, int) and fetched == 0


def _days(age: timedelta) -> str:
    hours = age.total_seconds() / 3600
    return f"{hours:.1f} h" if abs(hours) < 48 else f"{hours / 24:.1f} days"


# ---------------------------------------------------------------- the diff (pure)


@dataclass(frozen=True)
class Conflict:
    employee_id: str
    logins: tuple[str, ...]


@dataclass(frozen=True)
class AtHocMappings:
    """What AtHoc says: the wanted table, conflicting ids, and users without a collar id."""

    wanted: dict[str, MappingEntry]
    conflicts: tuple[Conflict, ...]
    users_without_collar: int


@dataclass(frozen=True)
class MappingDiff:
    added: tuple[MappingEntry, ...]
    updated: tuple[MappingEntry, ...]
    removed: tuple[str, ...]  # employee ids no AtHoc user claims any more
    unmapped_conflicts: tuple[str, ...]  # conflicting employee ids that were mapped: removed too

    @property
    def upserts(self) -> tuple[MappingEntry, ...]:
        return self.added + self.updated

    @property
    def deletes(self) -> tuple[str, ...]:
        return self.removed + self.unmapped_conflicts

    @property
    def changed(self) -> bool:
        return bool(self.upserts or self.deletes)


def collar_text(raw: Any) -> str:
    """A collar value as text; a JSON number with a whole value (6.0) is "6", as its string form would be."""
    if raw is None:
        return ""
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw).strip()


def mappings_from_users(users: Sequence[Mapping[str, Any]], collar_field: str) -> AtHocMappings:
    """Group AtHoc users by normalised collar id; an id claimed by several users is a conflict, not mapped."""
    claims: dict[str, dict[str, MappingEntry]] = {}
    without = 0
    for user in users:
        login = str(field_value(user, LOGIN_FIELD) or "").strip()
        collar = collar_text(field_value(user, collar_field))
        employee_id = normalise_employee_id(collar)
        if not login or not employee_id:
            without += 1
            continue
        claims.setdefault(employee_id, {}).setdefault(login.casefold(), MappingEntry(employee_id, login, collar))
    wanted: dict[str, MappingEntry] = {}
    conflicts: list[Conflict] = []
    for employee_id, by_login in claims.items():
        if len(by_login) == 1:
            wanted[employee_id] = next(iter(by_login.values()))
        else:
            conflicts.append(Conflict(employee_id, tuple(sorted(e.login for e in by_login.values()))))
    conflicts.sort(key=lambda c: (len(c.employee_id), c.employee_id))
    return AtHocMappings(wanted, tuple(conflicts), without)


def diff_mappings(
    current: Mapping[str, MappingEntry], wanted: Mapping[str, MappingEntry], conflict_ids: frozenset[str]
) -> MappingDiff:
    """What to write so that the table equals `wanted`: only entries that differ."""
    added = tuple(entry for emp, entry in sorted(wanted.items()) if emp not in current)
    updated = tuple(entry for emp, entry in sorted(wanted.items()) if emp in current and current[emp] != entry)
    gone = sorted(emp for emp in current if emp not in wanted)
    removed = tuple(emp for emp in gone if emp not in conflict_ids)
    unmapped_conflicts = tuple(emp for emp in gone if emp in conflict_ids)
    return MappingDiff(added, updated, removed, unmapped_conflicts)


def shrink_refusal(current_total: int, removed: int, max_remove_percent: float) -> str | None:
    """The safety rule on removals; None when the removal is acceptable."""
    if current_total == 0 or removed == 0:
        return None
    share = 100.0 * removed / current_total
    if share > max_remove_percent:
        return (
            f"refused: the sync would remove {removed} of {current_total} mappings ({share:.0f}%), more than "
            f"BOBO_MAPPING_MAX_REMOVE_PERCENT={max_remove_percent:g}%; the mapping table was left unchanged"
        )
    return None


# ---------------------------------------------------------------- the result


@dataclass(frozen=True)
class MappingSyncResult:
    """The `sync-mappings` command's answer (docs/design.md#command-line) and the job's record."""

    status: str  # an Outcome value: success, skipped or failed
    reason: str = ""  # why it ran or skipped
    forced: bool = False
    users_fetched: int = 0
    users_without_collar: int = 0
    mappings_total: int = 0
    added: int = 0
    updated: int = 0
    removed: int = 0
    conflicts: int = 0
    conflict_ids: tuple[str, ...] = ()
    conflict_details: tuple[Conflict, ...] = ()
    error: str = ""
    run_id: str = ""
    trigger: str = ""
    exit_code: ExitCode = ExitCode.OK
    error_kind: ErrorKind | None = None  # why it failed ("auth" feeds the authentication alert)
    drift: dict[str, Any] | None = None  # the drift check's counts, when one ran (shared/reconcile.py)

    @property
    def failure(self) -> str:
        return f"sync-mappings failed: {self.error}" if self.exit_code != ExitCode.OK else ""

    def counts(self) -> dict[str, int]:
        return {key: int(getattr(self, key)) for key in SYNC_COUNTS}

    def to_json(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            **self.counts(),
            "conflict_ids": list(self.conflict_ids),
            "conflict_details": [
                {"employee_id": c.employee_id, "logins": list(c.logins)}
                for c in self.conflict_details[:CONFLICTS_LISTED]
            ],
            "forced": self.forced,
            "reason": self.reason,
            "error": self.error,
            "run_id": self.run_id,
            "trigger": self.trigger,
            "drift": self.drift,
        }

    def text_lines(self) -> list[str]:
        if self.status == Outcome.SKIPPED:
            return [f"sync-mappings skipped: {self.reason} ({self.mappings_total} mappings in the table)"]
        lines = [
            f"sync-mappings {self.status}: {self.users_fetched} AtHoc users, {self.mappings_total} mappings "
            f"({self.added} added, {self.updated} updated, {self.removed} removed)"
        ]
        if self.users_without_collar:
            lines.append(f"  {self.users_without_collar} users without a collar id (ignored)")
        for conflict in self.conflict_details[:CONFLICTS_LISTED]:
            lines.append(
                f"  conflict: collar id {conflict.employee_id} claimed by {', '.join(conflict.logins)} (left unmapped)"
            )
        if self.error:
            lines.append(f"error: {self.error}")
        return lines


class _Refused(Exception):
    """The sync ran but its safety rules refused to write; the message is the reason."""


# ---------------------------------------------------------------- the job


def run_mapping_sync(
    runtime: Runtime, *, force: bool = False, trigger: str = "cli", now: datetime | None = None
) -> MappingSyncResult:
    """Run the mapping sync if due (or forced). Never raises: failures are recorded and returned.

    `now` is the job's clock (schedule decision and status times); tests pass a fixed instant.
    """
    with start_job(JobKind.SYNC_MAPPINGS, trigger=trigger, now=now) as job:
        base = MappingSyncResult(status=Outcome.FAILED, forced=force, run_id=job.run_id, trigger=trigger)
        try:
            runtime.ensure_ready()
            status = runtime.state.job_status(JobKind.SYNC_MAPPINGS)
            due, reason = (True, "forced") if force else decide_mapping_sync(status, job.started_at, runtime.settings)
            if not due:
                result = _skipped(status, reason, job.run_id, trigger)
                runtime.state.record_job(JobKind.SYNC_MAPPINGS, Outcome.SKIPPED, at=job.started_at)
                _log_summary(job, result)
                return result
            result = _sync(runtime, reason=reason, forced=force, run_id=job.run_id, trigger=trigger)
        except AzureError as error:
            result = replace(
                base,
                error=f"storage unreachable: {brief_error(error)}",
                exit_code=ExitCode.STORAGE,
                error_kind=ErrorKind.STORAGE,
            )
        except Exception as error:  # the timer must never raise; the traceback goes to the log
            log.exception("mapping sync failed unexpectedly")
            result = replace(
                base,
                error=f"unexpected {error.__class__.__name__}: {brief_error(error)}",
                exit_code=ExitCode.FAILED,
                error_kind=ErrorKind.INTERNAL,
            )
        _record(runtime, job, result)
        _log_summary(job, result)
        return result


def _skipped(status: JobStatus, reason: str, run_id: str, trigger: str) -> MappingSyncResult:
    total = status.last_counts.get("mappings_total", 0)
    return MappingSyncResult(
        status=Outcome.SKIPPED,
        reason=reason,
        mappings_total=total if isinstance(total, int) else 0,
        run_id=run_id,
        trigger=trigger,
    )


def _sync(runtime: Runtime, *, reason: str, forced: bool, run_id: str, trigger: str) -> MappingSyncResult:
    settings, state = runtime.settings, runtime.state
    failed = MappingSyncResult(
        status=Outcome.FAILED, reason=reason, forced=forced, run_id=run_id, trigger=trigger, exit_code=ExitCode.FAILED
    )
    drift_mode = "off" if trigger == "pipeline" else settings.reconcile_mode
    fields = [settings.athoc.collar_field] + ([settings.athoc.duty_field] if drift_mode != "off" else [])
    read_started = utcnow()
    try:
        users = runtime.athoc.search_users(fields)
    except AtHocError as error:
        # Paging is all or nothing in the client: nothing was read, so nothing is written.
        return replace(
            failed,
            mappings_total=len(state.mapping_entries()),
            error=f"AtHoc unreachable or refused the user search: {error}; the mapping table was left unchanged",
            error_kind=error.kind,
        )
    drift = (
        _drift_check(runtime, users, read_started, run_id, apply=drift_mode == "apply") if drift_mode != "off" else None
    )
    athoc = mappings_from_users(users, settings.athoc.collar_field)
    conflict_ids = frozenset(c.employee_id for c in athoc.conflicts)
    found = replace(
        failed,
        users_fetched=len(users),
        users_without_collar=athoc.users_without_collar,
        conflicts=len(athoc.conflicts),
        conflict_ids=tuple(c.employee_id for c in athoc.conflicts),
        conflict_details=athoc.conflicts,
        drift=drift,
    )
    for conflict in athoc.conflicts[:CONFLICTS_LISTED]:
        log.warning(
            "collar id %s is claimed by %d AtHoc users (%s): left unmapped until fixed in AtHoc",
            conflict.employee_id,
            len(conflict.logins),
            ", ".join(conflict.logins),
        )
    current = state.mapping_entries()
    try:
        diff = _checked_diff(current, athoc, conflict_ids, len(users), settings.mapping_max_remove_percent)
    except _Refused as refusal:
        return replace(found, mappings_total=len(current), error=str(refusal))
    _apply(runtime, current, athoc.wanted, conflict_ids, diff)
    return replace(
        found,
        status=Outcome.SUCCESS,
        exit_code=ExitCode.OK,
        mappings_total=len(athoc.wanted),
        added=len(diff.added),
        updated=len(diff.updated),
        removed=len(diff.deletes),
    )


def _drift_check(
    runtime: Runtime, users: list[dict[str, Any]], read_started: datetime, run_id: str, *, apply: bool
) -> dict[str, Any] | None:
    """The drift check on the users just read; its failure is logged, never fails the mapping sync."""
    from shared.reconcile import check_drift

    try:
        outcome = check_drift(runtime, users, read_started, run_id, apply=apply)
    except (AzureError, AtHocError) as error:
        log.warning("drift check failed: %s", brief_error(error))
        return None
    check = outcome.check
    return {"drifted": check.drifted, "in_sync": check.in_sync, "repaired": outcome.applied, "errors": outcome.errors}


def _checked_diff(
    current: Mapping[str, MappingEntry],
    athoc: AtHocMappings,
    conflict_ids: frozenset[str],
    users_fetched: int,
    max_remove_percent: float,
) -> MappingDiff:
    if users_fetched == 0:
        raise _Refused("refused: AtHoc returned no users; the mapping table was left unchanged")
    if not athoc.wanted:
        raise _Refused(
            f"refused: none of the {users_fetched} AtHoc users has a collar id of its own (check "
            "ATHOC_COLLAR_FIELD); the mapping table was left unchanged"
        )
    diff = diff_mappings(current, athoc.wanted, conflict_ids)
    refusal = shrink_refusal(len(current), len(diff.removed), max_remove_percent)
    if refusal:
        raise _Refused(refusal)
    return diff


def _apply(
    runtime: Runtime,
    current: Mapping[str, MappingEntry],
    wanted: Mapping[str, MappingEntry],
    conflict_ids: frozenset[str],
    diff: MappingDiff,
) -> None:
    """Write the difference; if a concurrent sync got there first (a delete finds nothing), diff again.

    Upserts and deletes are idempotent, so repeating a difference is harmless; only a delete of a row
    already gone fails its transaction, and the fresh diff no longer contains it.
    """
    for attempt in range(1, APPLY_ATTEMPTS + 1):
        if not diff.changed:
            return
        try:
            runtime.state.apply_mapping_changes(diff.upserts, diff.deletes)
            return
        except (TableTransactionError, ResourceNotFoundError) as error:
            if attempt == APPLY_ATTEMPTS:
                raise
            log.info(
                "mapping table changed underneath (%s); applying the remaining difference again", brief_error(error)
            )
            current = runtime.state.mapping_entries()
            diff = diff_mappings(current, wanted, conflict_ids)


def _record(runtime: Runtime, job: JobRun, result: MappingSyncResult) -> None:
    """The run log entry and the status row; a table change gets a new version (the pipeline's cache key)."""
    changed = result.status == Outcome.SUCCESS and (result.added + result.updated + result.removed) > 0
    counts = {**result.counts(), "conflict_ids": list(result.conflict_ids[:CONFLICTS_LISTED])}
    end = JobEnd(
        Outcome(result.status),
        counts,
        error=result.error,
        error_kind=result.error_kind,
        status_counts=result.counts(),
        new_version=changed,
    )
    job.finish(runtime, end)


def _log_summary(job: JobRun, result: MappingSyncResult) -> None:
    if result.status == Outcome.FAILED:
        text = f"sync-mappings failed: {result.error}"
    elif result.status == Outcome.SKIPPED:
        text = f"sync-mappings skipped: {result.reason}"
    else:
        text = (
            f"sync-mappings success ({result.reason}): {result.users_fetched} users, {result.mappings_total} "
            f"mappings, {result.added} added, {result.updated} updated, {result.removed} removed, "
            f"{result.conflicts} conflicts"
        )
    job.log_summary(
        log,
        str(result.status),
        text,
        failed=result.status == Outcome.FAILED,
        error_kind=result.error_kind,
        forced=result.forced,
        **result.counts(),
    )


def preview_mappings(runtime: Runtime) -> tuple[dict[str, str], str | None]:
    """The mapping a sync would write now, built in memory from AtHoc's users and written nowhere.

    For `process --dry-run` before any mapping sync succeeded: it shows what a real run (which syncs
    first) would send. Returns the mapping, or an empty one and the reason AtHoc could not be read.
    """
    collar_field = runtime.settings.athoc.collar_field
    try:
        users = runtime.athoc.search_users([collar_field])
    except AtHocError as error:
        return {}, f"mapping sync has never succeeded and AtHoc's users could not be read ({error}); files wait"
    return {emp: entry.login for emp, entry in mappings_from_users(users, collar_field).wanted.items()}, None
