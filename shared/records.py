"""What the state tables hold, as types: file records, run records, job status rows, mapping entries, and
the key encoding every table shares. Plain data, no storage calls: `shared/state.py` reads and writes them.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote, unquote

from shared.errors import ErrorKind

KEY_LIMIT = 900  # Table keys hold up to 1 KiB; leave room for the hash suffix.
FILES_PARTITION = "file"
STATUS_PARTITION = "job"


class JobKind(StrEnum):
    PROCESS = "process"
    SYNC_MAPPINGS = "sync-mappings"
    CLEANUP = "cleanup"
    RETRY_FAILED = "retry-failed"
    RECONCILE = "reconcile"


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"
    NEVER = "never"


class FileState(StrEnum):
    WAITING = "waiting"
    PROCESSED = "processed"
    FAILED = "failed"


def utcnow() -> datetime:
    return datetime.now(UTC)


def encode_key(text: str) -> str:
    """A Table key for any blob name: `/ \\ # ?`, `%` and control characters percent-encoded; long names hashed."""
    encoded = quote(text, safe=" !$&'()*+,-.:;<=>@[]^_`{|}~")
    if len(encoded) > KEY_LIMIT:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        encoded = f"{encoded[: KEY_LIMIT - 65]}~{digest}"
    return encoded


def decode_key(key: str) -> str:
    return unquote(key)


def as_utc(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)


@dataclass
class FileRecord:
    name: str
    state: FileState = FileState.WAITING
    attempts: int = 0
    size: int = 0
    etag: str = ""
    first_seen: datetime | None = None
    last_attempt: datetime | None = None
    last_error: str = ""
    rows_read: int = 0
    rows_rejected: int = 0
    batch_id: str = ""
    destination: str = ""
    updated_at: datetime | None = None

    def to_entity(self) -> dict[str, Any]:
        entity: dict[str, Any] = {"PartitionKey": FILES_PARTITION, "RowKey": encode_key(self.name)}
        for key, value in asdict(self).items():
            if value is None:
                continue
            entity[key] = value.value if isinstance(value, FileState) else value
        entity["last_error"] = self.last_error[:4000]
        return entity

    @classmethod
    def from_entity(cls, entity: Mapping[str, Any]) -> FileRecord:
        return cls(
            name=str(entity.get("name") or decode_key(entity["RowKey"])),
            state=FileState(entity.get("state", FileState.WAITING)),
            attempts=int(entity.get("attempts", 0)),
            size=int(entity.get("size", 0)),
            etag=str(entity.get("etag", "")),
            first_seen=as_utc(entity.get("first_seen")),
            last_attempt=as_utc(entity.get("last_attempt")),
            last_error=str(entity.get("last_error", "")),
            rows_read=int(entity.get("rows_read", 0)),
            rows_rejected=int(entity.get("rows_rejected", 0)),
            batch_id=str(entity.get("batch_id", "")),
            destination=str(entity.get("destination", "")),
            updated_at=as_utc(entity.get("updated_at")),
        )


@dataclass
class RunRecord:
    kind: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None
    outcome: str = Outcome.SUCCESS
    error: str = ""
    trigger: str = ""
    counts: dict[str, Any] = field(default_factory=dict)
    error_kind: ErrorKind | None = None  # why the run failed, as a type (the verdict never reads `error`)

    @property
    def duration_seconds(self) -> float:
        end = self.finished_at or utcnow()
        return round((end - self.started_at).total_seconds(), 3)

    def to_entity(self) -> dict[str, Any]:
        newest_first = 10**13 - int(self.started_at.timestamp() * 1000)
        return {
            "PartitionKey": self.started_at.strftime("%Y%m%d"),
            "RowKey": f"{newest_first:013d}-{self.run_id}",
            "kind": self.kind,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at or utcnow(),
            "duration_seconds": self.duration_seconds,
            "outcome": str(self.outcome),
            "error": self.error[:8000],
            "error_kind": str(self.error_kind or ""),
            "trigger": self.trigger,
            "counts": json.dumps(self.counts, default=str)[:30000],
        }

    @classmethod
    def from_entity(cls, entity: Mapping[str, Any]) -> RunRecord:
        return cls(
            kind=str(entity.get("kind", "")),
            run_id=str(entity.get("run_id", "")),
            started_at=as_utc(entity.get("started_at")) or utcnow(),
            finished_at=as_utc(entity.get("finished_at")),
            outcome=str(entity.get("outcome", "")),
            error=str(entity.get("error", "")),
            trigger=str(entity.get("trigger", "")),
            counts=json.loads(entity.get("counts") or "{}"),
            error_kind=ErrorKind.parse(entity.get("error_kind")),
        )


@dataclass
class JobStatus:
    kind: str
    last_status: str = Outcome.NEVER
    last_attempt: datetime | None = None
    last_success: datetime | None = None
    last_finished: datetime | None = None
    last_error: str = ""
    last_error_kind: ErrorKind | None = None  # stored beside the message: verdicts and alerts read this
    success_count: int = 0
    failure_count: int = 0
    last_counts: dict[str, Any] = field(default_factory=dict)
    failing_since: datetime | None = None
    version: str = ""  # sync-mappings: changes whenever the mapping table changes
    # The very last run, skipped ones included (`last_status` keeps the last real outcome, which the
    # mapping schedule rule reads): what `status` reports under last_runs.
    last_run_status: str = ""
    last_run_finished: datetime | None = None


@dataclass(frozen=True)
class MappingEntry:
    employee_id: str
    login: str
    collar: str


def status_to_entity(status: JobStatus) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": STATUS_PARTITION, "RowKey": status.kind}
    for key, value in asdict(status).items():
        if key == "kind" or value is None:
            continue
        if key == "last_counts":
            value = json.dumps(value, default=str)
        elif isinstance(value, ErrorKind):
            value = value.value  # plain text in the table
        entity[key] = value
    return entity


def status_from_entity(entity: Mapping[str, Any]) -> JobStatus:
    return JobStatus(
        kind=str(entity["RowKey"]),
        last_status=str(entity.get("last_status", Outcome.NEVER)),
        last_attempt=as_utc(entity.get("last_attempt")),
        last_success=as_utc(entity.get("last_success")),
        last_finished=as_utc(entity.get("last_finished")),
        last_error=str(entity.get("last_error", "")),
        last_error_kind=ErrorKind.parse(entity.get("last_error_kind")),
        success_count=int(entity.get("success_count", 0)),
        failure_count=int(entity.get("failure_count", 0)),
        last_counts=json.loads(entity.get("last_counts") or "{}"),
        failing_since=as_utc(entity.get("failing_since")),
        version=str(entity.get("version", "")),
        last_run_status=str(entity.get("last_run_status", "")),
        last_run_finished=as_utc(entity.get("last_run_finished")),
    )
