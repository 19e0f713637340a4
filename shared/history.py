"""Per-employee decision history (docs/history.md): what happened to each event, kept `BOBO_HISTORY_DAYS`.

Table `<prefix>history`, hashed like the watermarks (`hist-NN`, 8 buckets, by employee id), RowKey
`{encode_key(employee id)}|{inverted decided_at in ms, 13 digits}|{unique suffix}`: one employee's events
over any window are ONE partition range query, newest first.

Writes are buffered by `HistoryWriter`: one employee's entries of a batch share an entity (`group_entities`),
sent at the end of the batch as entity-group transactions of up to 100 operations, the partitions in
parallel (early past MAX_BUFFERED entries, so memory stays bounded). A failed history write is counted and
logged, never fails the batch.

Crash safety: the pipeline tells AtHoc first, then writes watermarks, then history (beside the moves). A
batch that calls AtHoc first writes a "history pending" marker (one entity in a history partition the batch
writes anyway); the marker's delete rides in that partition's last history transaction, sent after all the
others, so it costs one request per batch. A process run holding the lock that finds a marker older than
the lock lease names the gap (`history gap: ...`) and deletes it: that batch's events may be missing from
`explain`.

What this app last set in AtHoc per employee (`last_applied`, the drift baseline) is shared/last_applied.py.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from azure.core.exceptions import AzureError

from shared.athoc import RowStatus
from shared.decisions import SourcedEvent
from shared.logcontext import brief_error
from shared.parallel import in_parallel
from shared.records import decode_key, encode_key
from shared.state import (
    BUCKETS,
    HISTORY_PARTITION_PREFIX,
    TRANSACTION_LIMIT,
    StateStore,
    employee_partition,
)

log = logging.getLogger(__name__)

HISTORY_TABLE = "history"
# Marker RowKeys start with '"', which `encode_key` always escapes (%22): no employee's key can collide.
MARKER_PREFIX = '"pending|'
_ALL_PARTITIONS = f"PartitionKey ge '{HISTORY_PARTITION_PREFIX}-' and PartitionKey lt '{HISTORY_PARTITION_PREFIX}.'"
# Entries held before they are written early (a huge file's superseded rows): bounds a batch's memory.
MAX_BUFFERED = 30_000  # about 30 MB; a day's backlog in one batch is 21,600
# A group entity's `events` text stays below Table Storage's 64 KiB (32K UTF-16 characters) per string.
GROUP_TEXT_LIMIT = 30_000
INVERTED_BASE = 10**13  # 13 digits of milliseconds hold dates until the year 2286


class HistoryOutcome(StrEnum):
    """Contract section 7: what became of an event (or of a value this app set outside the pipeline)."""

    APPLIED = "applied"
    SUPERSEDED = "superseded"
    STALE = "stale"
    UNMAPPED = "unmapped"
    NOT_FOUND = "not_found"
    DENIED = "denied"
    ERROR = "error"
    PENDING = "pending"
    CLEARED_STALE = "cleared_stale"
    RECONCILED = "reconciled"


@dataclass(frozen=True)
class HistoryEntry:
    """One decision about one employee. `event_time` is naive BOBO clock time; `decided_at` is UTC."""

    employee_id: str
    outcome: HistoryOutcome
    decided_at: datetime
    run_id: str
    event_time: datetime | None = None
    kind: str | None = None
    file: str | None = None
    row: int | None = None
    value_sent: str | None = None
    login: str | None = None

    @property
    def partition(self) -> str:
        return employee_partition(HISTORY_PARTITION_PREFIX, self.employee_id)

    def to_entity(self) -> dict[str, Any]:
        inverted = INVERTED_BASE - int(self.decided_at.timestamp() * 1000)
        entity: dict[str, Any] = {
            "PartitionKey": self.partition,
            "RowKey": f"{encode_key(self.employee_id)}|{inverted:013d}|{uuid.uuid4().hex[:10]}",
            "employee_id": self.employee_id,
            "outcome": self.outcome.value,
            "decided_at": self.decided_at.astimezone(UTC),
            "run_id": self.run_id,
        }
        # A missing property reads back as null; "" (a BOF's value) is kept as "".
        entity.update(self.event_fields())
        return entity

    def event_fields(self) -> dict[str, Any]:
        """What differs between the entries of one decision (a group entity keeps a list of these)."""
        fields = {
            "event_time": self.event_time.isoformat() if self.event_time is not None else None,
            "kind": self.kind,
            "file": self.file,
            "row": self.row,
            "value_sent": self.value_sent,
            "login": self.login,
        }
        return {key: value for key, value in fields.items() if value is not None}

    @classmethod
    def entries_of(cls, entity: Mapping[str, Any]) -> list[HistoryEntry]:
        """The entries an entity holds: one, or a decision's group (see `group_entities`)."""
        if "events" not in entity:
            return [cls.from_entity(entity)]
        return [cls.from_entity({**entity, **fields}) for fields in json.loads(str(entity["events"]))]

    @classmethod
    def from_entity(cls, entity: Mapping[str, Any]) -> HistoryEntry:
        event_time = entity.get("event_time")
        row = entity.get("row")
        return cls(
            employee_id=str(entity.get("employee_id") or decode_key(str(entity["RowKey"]).rsplit("|", 2)[0])),
            outcome=HistoryOutcome(str(entity["outcome"])),
            decided_at=as_utc(entity["decided_at"]),
            run_id=str(entity.get("run_id", "")),
            event_time=datetime.fromisoformat(str(event_time)) if event_time else None,
            kind=_text_or_none(entity.get("kind")),
            file=_text_or_none(entity.get("file")),
            row=int(row) if row is not None else None,
            value_sent=None if entity.get("value_sent") is None else str(entity["value_sent"]),
            login=_text_or_none(entity.get("login")),
        )

    def to_json(self) -> dict[str, Any]:
        """The documented event keys (docs/history.md), in that order."""
        return {
            "event_time": self.event_time.isoformat() if self.event_time is not None else None,
            "kind": self.kind,
            "file": self.file,
            "row": self.row,
            "decided_at": self.decided_at.isoformat(),
            "outcome": self.outcome.value,
            "value_sent": self.value_sent,
            "run_id": self.run_id,
        }


def event_entry(
    sourced: SourcedEvent,
    outcome: HistoryOutcome,
    decided_at: datetime,
    run_id: str,
    *,
    value_sent: str | None = None,
    login: str | None = None,
) -> HistoryEntry:
    """The entry for a data row's event as the pipeline decided it."""
    event = sourced.event
    return HistoryEntry(
        employee_id=event.employee_id,
        outcome=outcome,
        decided_at=decided_at,
        run_id=run_id,
        event_time=event.event_time,
        kind=event.action.value,
        file=sourced.file_name,
        row=event.row_number,
        value_sent=value_sent,
        login=login,
    )


def group_entities(entries: list[HistoryEntry]) -> list[dict[str, Any]]:
    """Entities for one partition's entries of one batch: one employee's entries share an entity (their
    fields listed in `events`, up to GROUP_TEXT_LIMIT characters each), so a day's backlog writes about as
    many history entities as watermarks (4,924 instead of 21,600 on the benchmark); explain reads the same
    events back (`entries_of`). The entity carries its newest entry's outcome and decision time: the key
    range of `employee_history` and the purge's filter read those."""
    groups: dict[tuple[str, str], list[HistoryEntry]] = {}
    for entry in entries:
        groups.setdefault((entry.employee_id, entry.run_id), []).append(entry)
    entities: list[dict[str, Any]] = []
    for group in groups.values():
        if len(group) == 1:
            entities.append(group[0].to_entity())
            continue
        group.sort(key=lambda entry: entry.decided_at, reverse=True)
        chunk: list[dict[str, Any]] = []
        size = 2
        for entry in group:
            fields = {
                **entry.event_fields(),
                "outcome": entry.outcome.value,
                "decided_at": entry.decided_at.isoformat(),
            }
            length = len(json.dumps(fields)) + 1
            if chunk and size + length > GROUP_TEXT_LIMIT:
                entities.append(_group_entity(group[0], chunk))
                chunk, size = [], 2
            chunk.append(fields)
            size += length
        entities.append(_group_entity(group[0], chunk))
    return entities


def _group_entity(newest: HistoryEntry, events: list[dict[str, Any]]) -> dict[str, Any]:
    base = {k: v for k, v in newest.to_entity().items() if k not in newest.event_fields()}
    return {**base, "events": json.dumps(events, separators=(",", ":"))}


# AtHoc's answer for a user's row -> the history outcome; no answer at all (None) is pending too.
_ROW_OUTCOMES = {
    RowStatus.UPDATED: HistoryOutcome.APPLIED,
    RowStatus.NOT_FOUND: HistoryOutcome.NOT_FOUND,
    RowStatus.DENIED: HistoryOutcome.DENIED,
    RowStatus.ERROR: HistoryOutcome.ERROR,
    RowStatus.MISSING: HistoryOutcome.PENDING,
    RowStatus.FAILED: HistoryOutcome.PENDING,
}


def row_outcome(status: RowStatus | None) -> HistoryOutcome:
    return HistoryOutcome.PENDING if status is None else _ROW_OUTCOMES[status]


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def as_utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class HistoryWriter:
    """Buffers a batch's entries per partition, then writes them in transactions of up to 100, the partitions
    in parallel on `threads` threads (one batch's history is one round of requests, not one after another).

    Memory stays bounded: past MAX_BUFFERED entries (a huge file's superseded rows) the buffers are written
    at once. Never raises for storage: a failed transaction adds its entries to `not_written` and logs a
    warning. A disabled writer (dry run) records nothing.
    """

    def __init__(self, state: StateStore | None, *, enabled: bool = True, threads: int = 1):
        self.state = state
        self.enabled = enabled and state is not None
        self.threads = threads
        self.buffers: dict[str, list[HistoryEntry]] = {}
        self.buffered = 0
        self.written = 0
        self.not_written = 0
        self.requests = 0
        self.marker: dict[str, str] | None = None
        self._lock = threading.Lock()  # files are read (and their superseded rows added) on several threads

    def add(self, entry: HistoryEntry) -> None:
        if not self.enabled:
            return
        with self._lock:
            self.buffers.setdefault(entry.partition, []).append(entry)
            self.buffered += 1
            full = self.buffered >= MAX_BUFFERED
        if full:
            self._write_buffers()

    def add_all(self, entries: Iterable[HistoryEntry]) -> None:
        for entry in entries:
            self.add(entry)

    def discard_unwritten(self) -> None:
        """Forget what is buffered: the batch was not decided after all (set aside for the next one)."""
        with self._lock:
            self.buffers.clear()
            self.buffered = 0

    def discard_file(self, file_name: str) -> None:
        """Forget the buffered entries of one file: it was not decided in this batch (replaced while read)."""
        with self._lock:
            for partition, operations in self.buffers.items():
                self.buffers[partition] = [entry for entry in operations if entry.file != file_name]
            self.buffered = sum(len(operations) for operations in self.buffers.values())

    def open_marker(self, batch_id: str, run_id: str, employee_id: str, now: datetime) -> None:
        """Before the AtHoc call: note that this batch's history is about to be owed (see the module doc).

        `employee_id` must be one whose entry this batch writes: the marker lives in its partition, so its
        delete joins that partition's last transaction.
        """
        if not self.enabled or self.state is None:
            return
        key = {
            "PartitionKey": employee_partition(HISTORY_PARTITION_PREFIX, employee_id),
            "RowKey": MARKER_PREFIX + batch_id,
        }
        marker = {**key, "batch_id": batch_id, "run_id": run_id, "created_at": now}
        try:
            self.state.table(HISTORY_TABLE).upsert_entity(marker)
            self.requests += 1
            self.marker = key
        except AzureError as error:
            log.warning("could not write the history marker of batch %s: %s", batch_id, brief_error(error))

    def flush(self) -> None:
        """Write everything buffered; the marker's delete rides in its partition's last transaction, which
        goes only after every other transaction ended (a crash before it leaves the marker: a reported gap)."""
        if not self.enabled:
            return
        marker, self.marker = self.marker, None
        chunks = self._take_chunks()
        if marker is not None:
            mine = [c for c in chunks if c[0] == marker["PartitionKey"]]
            last = mine[-1] if mine and len(mine[-1][1]) < TRANSACTION_LIMIT else None
            chunks = [c for c in chunks if c is not last]
            in_parallel(self.threads, lambda chunk: self._submit(*chunk), chunks)
            operations = [*(last[1] if last else []), ("delete", dict(marker))]
            self._submit(marker["PartitionKey"], operations)
            return
        in_parallel(self.threads, lambda chunk: self._submit(*chunk), chunks)

    def _write_buffers(self) -> None:
        """Every buffered entry now (memory bound): transactions of up to 100 per partition, in parallel."""
        in_parallel(self.threads, lambda chunk: self._submit(*chunk), self._take_chunks())

    def _take_chunks(self) -> list[tuple[str, list[tuple[str, dict[str, Any]]]]]:
        with self._lock:
            buffers, self.buffers, self.buffered = self.buffers, {}, 0
        chunks = []
        for partition, entries in buffers.items():
            operations = [("upsert", entity) for entity in group_entities(entries)]
            chunks += [
                (partition, operations[start : start + TRANSACTION_LIMIT])
                for start in range(0, len(operations), TRANSACTION_LIMIT)
            ]
        return chunks

    def _submit(self, partition: str, operations: list[tuple[str, dict[str, Any]]]) -> None:
        assert self.state is not None
        # Events, not entities: a group entity holds several (see group_entities).
        entries = sum(
            len(json.loads(op[1]["events"])) if "events" in op[1] else 1 for op in operations if op[0] == "upsert"
        )
        try:
            requests = self.state._transact(HISTORY_TABLE, operations)
            with self._lock:
                self.requests += requests
                self.written += entries
        except AzureError as error:
            with self._lock:
                self.not_written += entries
            log.warning(
                "history not written for %d events (partition %s): %s; the batch itself is unaffected",
                entries,
                partition,
                brief_error(error),
            )


# ---------------------------------------------------------------- markers (gaps)


@dataclass(frozen=True)
class HistoryGap:
    batch_id: str
    run_id: str
    created_at: datetime

    @property
    def message(self) -> str:
        return (
            f"history gap: batch {self.batch_id} of run {self.run_id} (started {self.created_at.isoformat()}) "
            "was not recorded; its events may be missing from explain"
        )


def take_history_gaps(state: StateStore, older_than: datetime, own_run_id: str) -> list[HistoryGap]:
    """Markers of batches that died between the AtHoc call and the history write: returned and deleted."""
    table = state.table(HISTORY_TABLE)
    gaps: list[HistoryGap] = []
    deletes: list[tuple[str, dict[str, Any]]] = []
    # One key-range query per partition (every RowKey starting with '"'): a range across partitions would
    # make the service walk every entry of the table, 30 days of history, at every sweep.
    partitions = (f"{HISTORY_PARTITION_PREFIX}-{n:02d}" for n in range(BUCKETS[HISTORY_PARTITION_PREFIX]))
    markers = (
        entity
        for partition in partitions
        for entity in table.query_entities(f"PartitionKey eq '{partition}' and RowKey ge '\"' and RowKey lt '#'")
    )
    for entity in markers:
        created = as_utc(entity.get("created_at") or entity["Timestamp"])
        if created >= older_than or str(entity.get("run_id", "")) == own_run_id:
            continue
        gaps.append(HistoryGap(str(entity.get("batch_id", "")), str(entity.get("run_id", "")), created))
        deletes.append(("delete", {"PartitionKey": entity["PartitionKey"], "RowKey": entity["RowKey"]}))
    if deletes:
        state._transact(HISTORY_TABLE, deletes)
    return sorted(gaps, key=lambda gap: gap.created_at)


# ---------------------------------------------------------------- reading


def employee_history(state: StateStore, employee_id: str, since: datetime) -> list[HistoryEntry]:
    """The employee's entries decided at or after `since`, newest first: one partition range query."""
    key = encode_key(employee_id)
    newest_allowed = INVERTED_BASE - int(since.timestamp() * 1000)
    query = (
        f"PartitionKey eq '{employee_partition(HISTORY_PARTITION_PREFIX, employee_id)}' "
        f"and RowKey ge '{_odata(key)}|' and RowKey lt '{_odata(key)}|{newest_allowed + 1:013d}'"
    )
    entries = [
        entry
        for entity in state.table(HISTORY_TABLE).query_entities(query, results_per_page=1000)
        if str(entity.get("employee_id", employee_id)) == employee_id  # an id containing "|" shares the range
        for entry in HistoryEntry.entries_of(entity)
        if entry.decided_at >= since  # a group entity may hold a few entries decided just before its newest
    ]
    # Within one decision (same instant) the newer event first, so the winner tops its superseded rows.
    entries.sort(key=lambda e: (e.decided_at, e.event_time or datetime.min, e.row or 0), reverse=True)
    return entries


def purge_history(state: StateStore, before: datetime) -> int:
    """Delete entries decided before `before` (the retention pass); markers are left to the gap check."""
    table = state.table(HISTORY_TABLE)
    query = (
        f"{_ALL_PARTITIONS} and decided_at lt datetime'{before.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z'"
    )
    old = [
        ("delete", {"PartitionKey": e["PartitionKey"], "RowKey": e["RowKey"]})
        for e in table.query_entities(query, select=["PartitionKey", "RowKey", "decided_at"], results_per_page=1000)
        if not str(e["RowKey"]).startswith(MARKER_PREFIX) and as_utc(e["decided_at"]) < before
    ]
    state._transact(HISTORY_TABLE, old)
    return len(old)


def _odata(text: str) -> str:
    return text.replace("'", "''")
