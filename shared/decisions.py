"""Which event counts for each employee, whether it is stale, and what value AtHoc gets
(docs/design.md#latest-wins, docs/design.md#staleness-and-watermarks).

Pure functions over `shared.bobo_csv.DutyEvent`; no I/O.

Ordering within a batch (`EventKey`): event time, then DateTime_Created, then file order (blob
last-modified time, then name), then row number. An event without DateTime_Created (the simple form)
sorts as if it had been created at its event time.

Staleness across batches (`is_stale`): only (event time, DateTime_Created) are compared with the
employee's watermark, because file order means nothing across batches: a re-delivered file gets a new
last-modified time, and a file delivered twice must send nothing twice. An event is stale when that pair
is not greater than the watermark's (equal is stale). A missing DateTime_Created counts as the event time
on both sides.

An *unconfirmed* watermark marks an event that was sent but never confirmed, written when its file is given
up after its retries (AtHoc may or may not have applied it). It blocks strictly older events (they could
undo what AtHoc may hold) but not the same event, so a file put back with `retry-failed` is sent again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from shared.athoc.rows import RowResult, RowStatus
from shared.bobo_csv import Action, DutyEvent
from shared.errors import ErrorKind, most_urgent

UNCONFIRMED = "unconfirmed"


@dataclass(frozen=True, order=True)
class EventKey:
    """Sort key of an event within a batch; the greatest key is the employee's latest event."""

    event_time: datetime
    created: datetime
    file_modified: datetime
    file_name: str
    row_number: int


@dataclass(frozen=True)
class SourcedEvent:
    """An event together with the file that supplied it. `file_modified` must be time-zone aware."""

    event: DutyEvent
    file_name: str
    file_modified: datetime

    def __post_init__(self) -> None:
        # Naive and aware datetimes do not compare; fail where the mistake is made, not in a sort.
        if self.file_modified.tzinfo is None or self.file_modified.utcoffset() is None:
            raise ValueError("file_modified must be time-zone aware (the blob's last-modified time)")

    @property
    def key(self) -> EventKey:
        event = self.event
        return EventKey(
            event.event_time,
            _created_or_event_time(event),
            self.file_modified,
            self.file_name,
            event.row_number,
        )


def latest_per_employee(
    events: Iterable[SourcedEvent], on_superseded: Callable[[SourcedEvent], None] | None = None
) -> dict[str, SourcedEvent]:
    """Employee id -> the event with the greatest `EventKey`, in one pass (memory: one entry per employee).

    The result does not depend on the order of `events`; of two events with equal keys (the same row
    seen twice) the first is kept. `on_superseded` is called once with every event that is not kept, as
    soon as it loses (the history records it without holding the file's rows).
    """
    best: dict[str, tuple[EventKey, SourcedEvent]] = {}
    for sourced in events:
        key = sourced.key
        current = best.get(sourced.event.employee_id)
        if current is None or key > current[0]:
            best[sourced.event.employee_id] = (key, sourced)
            if current is not None and on_superseded is not None:
                on_superseded(current[1])
        elif on_superseded is not None:
            on_superseded(sourced)
    return {employee_id: sourced for employee_id, (_, sourced) in best.items()}


@dataclass(frozen=True)
class Watermark:
    """The last event applied to AtHoc for an employee (persisted between batches).

    Times are naive local wall-clock times, like `DutyEvent.event_time`.
    """

    event_time: datetime
    created: datetime | None
    action: Action
    confirmed: bool = True  # False: sent, answer never confirmed, file given up (see the module docstring)

    def __post_init__(self) -> None:
        for value in (self.event_time, self.created):
            if value is not None and value.tzinfo is not None:
                raise ValueError("watermark times are naive local times, as BOBO records them")

    @classmethod
    def from_event(cls, event: DutyEvent, *, confirmed: bool = True) -> Watermark:
        return cls(event.event_time, event.created, event.action, confirmed)

    def to_text(self) -> str:
        """`<event time ISO>|<created ISO or empty>|<BON/BOF>`, plus `|unconfirmed` for an unconfirmed one;
        `from_text` returns an equal Watermark."""
        created = self.created.isoformat() if self.created is not None else ""
        text = f"{self.event_time.isoformat()}|{created}|{self.action.value}"
        return text if self.confirmed else f"{text}|{UNCONFIRMED}"

    @classmethod
    def from_text(cls, text: str) -> Watermark:
        """Parse `to_text` output; raises ValueError on anything else."""
        parts = text.split("|")
        if len(parts) == 4 and parts[3] == UNCONFIRMED:
            parts, confirmed = parts[:3], False
        elif len(parts) == 3:
            confirmed = True
        else:
            raise ValueError(f"not a watermark: {text!r}")
        event_time_text, created_text, action_text = parts
        return cls(
            datetime.fromisoformat(event_time_text),
            datetime.fromisoformat(created_text) if created_text else None,
            Action(action_text),
            confirmed,
        )

    @property
    def order(self) -> tuple[datetime, datetime]:
        """What `is_stale` compares: (event time, DateTime_Created or event time)."""
        return (self.event_time, self.created if self.created is not None else self.event_time)


def is_stale(event: DutyEvent, watermark: Watermark | None) -> bool:
    """True when `event` is not newer than the watermark: (event time, created) <= the watermark's;
    for an unconfirmed watermark, only when it is older (<): the same event may be sent again."""
    if watermark is None:
        return False
    order = (event.event_time, _created_or_event_time(event))
    return order <= watermark.order if watermark.confirmed else order < watermark.order


def duty_value(event: DutyEvent, datetime_format: str) -> str:
    """The duty attribute value for an event: BON -> the event time as BOBO recorded it, formatted with
    `datetime_format` and no zone conversion; BOF -> "" (the field is cleared)."""
    if event.action is Action.BOOK_ON:
        return event.event_time.strftime(datetime_format)
    return ""


@dataclass(frozen=True)
class PlannedUpdate:
    employee_id: str
    login: str
    value: str
    source: SourcedEvent


@dataclass(frozen=True)
class Plan:
    """What a batch sends. Every winner lands in exactly one list.

    - `updates`: one per mapped, non-stale employee, sorted by login;
    - `stale`: winners not newer than the employee's watermark (checked before the mapping: a stale
      event has nothing to send whoever it maps to), sorted by employee id;
    - `unmapped`: winners whose employee has no mapping, sorted by employee id;
    - `superseded`: winners of employees mapped to a login another employee of the batch also maps to
      (only possible if the mapping breaks its one-login-per-id rule); the later event by `EventKey`
      wins the login, so AtHoc never gets two rows for one user. Sorted by employee id.
    """

    updates: list[PlannedUpdate]
    stale: list[SourcedEvent]
    unmapped: list[SourcedEvent]
    superseded: list[SourcedEvent] = field(default_factory=list)


def plan_updates(
    winners: Mapping[str, SourcedEvent],
    mappings: Mapping[str, str],
    watermarks: Mapping[str, Watermark],
    datetime_format: str,
) -> Plan:
    """Split the batch's winners (from `latest_per_employee`) into updates, stale and unmapped events.

    `mappings` and `watermarks` are keyed by normalised employee id; `mappings` gives the AtHoc login.
    """
    stale: list[SourcedEvent] = []
    unmapped: list[SourcedEvent] = []
    superseded: list[SourcedEvent] = []
    by_login: dict[str, PlannedUpdate] = {}
    for employee_id, sourced in winners.items():
        if is_stale(sourced.event, watermarks.get(employee_id)):
            stale.append(sourced)
            continue
        login = mappings.get(employee_id)
        if not login:
            unmapped.append(sourced)
            continue
        update = PlannedUpdate(employee_id, login, duty_value(sourced.event, datetime_format), sourced)
        # Compared case-insensitively: logins differing only in case may well be one AtHoc user.
        other = by_login.get(login.casefold())
        if other is None:
            by_login[login.casefold()] = update
        elif update.source.key > other.source.key:
            by_login[login.casefold()] = update
            superseded.append(other.source)
        else:
            superseded.append(sourced)

    def by_employee(sourced: SourcedEvent) -> str:
        return sourced.event.employee_id

    return Plan(
        updates=sorted(by_login.values(), key=lambda update: (update.login, update.employee_id)),
        stale=sorted(stale, key=by_employee),
        unmapped=sorted(unmapped, key=by_employee),
        superseded=sorted(superseded, key=by_employee),
    )


# Row results that settle an event: AtHoc applied it, or it can never apply it (the user is gone or out of
# the service account's reach). Either way an older event must not be sent after it.
SETTLED = frozenset({RowStatus.UPDATED, RowStatus.NOT_FOUND, RowStatus.DENIED})


def row_failure_message(row: RowResult) -> str:
    """One line for a row AtHoc did not settle: a failed request is one error for all its rows (the same
    text for each, so lists of distinct messages stay short); a row error names its user."""
    if row.status is RowStatus.FAILED:
        return f"AtHoc request failed: {row.detail}"
    return f"AtHoc {row.status.value} for {row.login}: {row.detail}"


@dataclass
class SendOutcome:
    """What AtHoc's answer to one batch's updates means for the batch's files (docs/design.md#file-outcomes).

    - `settled`: employee -> watermark of every event AtHoc settled (saved before any file moves);
    - `retry_reasons`: file name -> the first reason one of its events was not settled (the file waits);
    - `unconfirmed`: file name -> {employee -> unconfirmed watermark}: kept in case the file is given up;
    - `failures`: the distinct failure messages, in the order met.
    """

    settled: dict[str, Watermark] = field(default_factory=dict)
    updated_logins: set[str] = field(default_factory=set)  # casefolded: distinct users AtHoc updated
    answered: int = 0  # rows AtHoc answered (the request reached it): `updates_sent`
    not_found: int = 0
    denied: int = 0
    retry_reasons: dict[str, str] = field(default_factory=dict)
    unconfirmed: dict[str, dict[str, Watermark]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    error_kind: ErrorKind | None = None


def outcome_of_rows(updates: Sequence[PlannedUpdate], rows: Sequence[RowResult]) -> SendOutcome:
    """Map AtHoc's row results (matched by login) back to the events and files that supplied them."""
    by_login = {update.login: update for update in updates}
    outcome = SendOutcome()
    for row in rows:
        update = by_login.get(row.login)
        if update is None:
            continue
        if row.status is not RowStatus.FAILED:
            outcome.answered += 1
        if row.status in SETTLED:
            outcome.settled[update.employee_id] = Watermark.from_event(update.source.event)
            if row.status is RowStatus.UPDATED:
                outcome.updated_logins.add(row.login.casefold())
            elif row.status is RowStatus.NOT_FOUND:
                outcome.not_found += 1
            else:
                outcome.denied += 1
            continue
        reason = row_failure_message(row)
        file_name = update.source.file_name
        outcome.retry_reasons.setdefault(file_name, reason)
        outcome.unconfirmed.setdefault(file_name, {})[update.employee_id] = unconfirmed_watermark(update)
        kind = row.kind if row.status is RowStatus.FAILED else ErrorKind.ROW
        outcome.error_kind = most_urgent(outcome.error_kind, kind)
        if reason not in outcome.failures:
            outcome.failures.append(reason)
    return outcome


def unconfirmed_watermark(update: PlannedUpdate) -> Watermark:
    """The watermark a given-up file leaves for an event AtHoc never confirmed: older events stay blocked
    (AtHoc may hold this one), the event itself may be sent again after retry-failed."""
    return Watermark.from_event(update.source.event, confirmed=False)


def _created_or_event_time(event: DutyEvent) -> datetime:
    return event.created if event.created is not None else event.event_time
