"""What this app last set in AtHoc per employee (`last_applied`): what `explain` shows and what the drift check
compares AtHoc with. It lives as extra properties on the employee's watermark entity, written in the
watermark transactions (no extra request); cleanup and reconcile update it for the users they set.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared.history import HistoryEntry, HistoryWriter, as_utc
from shared.logcontext import brief_error
from shared.records import decode_key, encode_key
from shared.state import MAPPING_PARTITION_PREFIX, WATERMARK_PARTITION_PREFIX, StateStore, employee_partition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LastApplied:
    """What this app last set in AtHoc for an employee. `event_time` is None after a stale clear."""

    value: str
    event_time: datetime | None
    applied_at: datetime
    login: str

    def properties(self) -> dict[str, Any]:
        """Extra properties of the watermark entity (merged: the watermark itself is left as it is)."""
        return {
            "last_value": self.value,
            "last_event_time": self.event_time.isoformat() if self.event_time is not None else "",
            "last_applied_at": self.applied_at.astimezone(UTC),
            "last_login": self.login,
        }

    @classmethod
    def from_entity(cls, entity: Mapping[str, Any]) -> LastApplied | None:
        if entity.get("last_applied_at") is None:
            return None
        event_time = entity.get("last_event_time")
        return cls(
            value=str(entity.get("last_value") or ""),
            event_time=datetime.fromisoformat(str(event_time)) if event_time else None,
            applied_at=as_utc(entity["last_applied_at"]),
            login=str(entity.get("last_login") or ""),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "event_time": self.event_time.isoformat() if self.event_time is not None else None,
            "applied_at": self.applied_at.isoformat(),
        }


def _employee_row(state: StateStore, suffix: str, prefix: str, employee_id: str) -> Mapping[str, Any] | None:
    """One point read of an employee's row in a hashed table (watermarks, mappings); None when absent."""
    try:
        return state.table(suffix).get_entity(employee_partition(prefix, employee_id), encode_key(employee_id))
    except ResourceNotFoundError:
        return None


def last_applied_of(state: StateStore, employee_id: str) -> LastApplied | None:
    entity = _employee_row(state, "watermarks", WATERMARK_PARTITION_PREFIX, employee_id)
    return LastApplied.from_entity(entity) if entity is not None else None


def all_last_applied(state: StateStore) -> dict[str, LastApplied]:
    """employee id -> last applied, for every employee this app ever set (one paged query)."""
    found: dict[str, LastApplied] = {}
    for entity in state._query_all("watermarks", WATERMARK_PARTITION_PREFIX):
        applied = LastApplied.from_entity(entity)
        if applied is not None:
            found[decode_key(str(entity["RowKey"]))] = applied
    return found


def save_last_applied(state: StateStore, applied: Mapping[str, LastApplied]) -> int:
    """Merge `last_applied` into the employees' watermark entities (cleanup and reconcile; the pipeline
    passes them with its watermarks instead). Returns the number of requests."""
    operations = [
        (
            "upsert",
            {
                "PartitionKey": employee_partition(WATERMARK_PARTITION_PREFIX, employee_id),
                "RowKey": encode_key(employee_id),
                **value.properties(),
            },
        )
        for employee_id, value in sorted(applied.items())
    ]
    return state._transact("watermarks", operations)


def record_set_outside_pipeline(state: StateStore, changes: Iterable[tuple[HistoryEntry, LastApplied]]) -> int:
    """Cleanup and reconcile, after AtHoc confirmed: `last_applied` first (the drift baseline), then the
    history entries. Storage failures are logged, never raised (AtHoc already holds the values).
    Returns how many history entries could not be written."""
    changes = list(changes)
    if not changes:
        return 0
    try:
        save_last_applied(state, {entry.employee_id: applied for entry, applied in changes})
    except AzureError as error:
        log.warning("could not save last_applied of %d users: %s", len(changes), brief_error(error))
    writer = HistoryWriter(state)
    writer.add_all(entry for entry, _ in changes)
    writer.flush()
    return writer.not_written


def mapped_login(state: StateStore, employee_id: str) -> str | None:
    entity = _employee_row(state, "mappings", MAPPING_PARTITION_PREFIX, employee_id)
    return str(entity.get("login") or "") or None if entity is not None else None


def employees_by_login(mappings: Mapping[str, str]) -> dict[str, str]:
    """casefolded login -> employee id (the mapping turned round, for cleanup and reconcile)."""
    return {login.casefold(): employee_id for employee_id, login in mappings.items()}
