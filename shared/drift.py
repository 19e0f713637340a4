"""Drift: AtHoc holds a duty value other than the one this app last set (docs/history.md).

Pure comparison (`find_drift`) of AtHoc's users (as the mapping sync or `reconcile` read them, with the duty
field) against `last_applied` (shared/history.py), and the `drift` status row with its verdict sentence.

- Only users this app set are compared (a `last_applied` exists); any other user is never drift.
- Values compare as AtHoc stores them: the same string, an unset or null value equal to "".
- A value applied at or after the moment the AtHoc read began is not drift: the read may predate it.
  `applied_at` is when AtHoc's answer confirmed the value, so "applied after the read began" covers every
  batch that started after it (and a batch that started before but was confirmed after).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared.athoc import LOGIN_FIELD
from shared.history import as_utc
from shared.last_applied import LastApplied
from shared.mapping_sync import field_value

# Drifted users listed in JSON and the run log; the count is always complete.
DRIFT_LISTED = 100
DRIFT_PARTITION = "drift"  # in the jobstatus table, beside (not among) the job rows


@dataclass(frozen=True)
class DriftItem:
    employee_id: str
    login: str
    athoc_value: str
    expected_value: str
    last_event_time: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "employee_id": self.employee_id,
            "login": self.login,
            "athoc_value": self.athoc_value,
            "expected_value": self.expected_value,
            "last_event_time": self.last_event_time.isoformat() if self.last_event_time is not None else None,
        }


@dataclass(frozen=True)
class DriftCheck:
    """What one comparison found. `too_recent`: set by this app after the read began, not compared."""

    users_checked: int
    in_sync: int
    drift: tuple[DriftItem, ...]
    too_recent: int = 0

    @property
    def drifted(self) -> int:
        return len(self.drift)


def athoc_text(raw: Any) -> str:
    """A duty value as AtHoc stores it; unset or null is ""."""
    return "" if raw is None else str(raw)


def find_drift(
    users: Iterable[Mapping[str, Any]],
    last_applied: Mapping[str, LastApplied],
    duty_field: str,
    read_started: datetime,
) -> DriftCheck:
    """Compare every user read with what this app last set for the employee whose login it is."""
    by_login = {applied.login.casefold(): (employee_id, applied) for employee_id, applied in last_applied.items()}
    checked = in_sync = too_recent = 0
    drift: list[DriftItem] = []
    for user in users:
        checked += 1
        login = str(field_value(user, LOGIN_FIELD) or "").strip()
        known = by_login.get(login.casefold()) if login else None
        if known is None:
            continue  # this app never set this user: never drift
        employee_id, applied = known
        if applied.applied_at >= read_started:
            too_recent += 1
            continue
        value = athoc_text(field_value(user, duty_field))
        if value == applied.value:
            in_sync += 1
        else:
            drift.append(DriftItem(employee_id, login, value, applied.value, applied.event_time))
    drift.sort(key=lambda item: (len(item.employee_id), item.employee_id))
    return DriftCheck(checked, in_sync, tuple(drift), too_recent)


# ---------------------------------------------------------------- the status row


@dataclass(frozen=True)
class DriftStatus:
    """The status report's `drift` key: `drifted` as seen at the check, `repaired` how many were set back."""

    checked_at: datetime
    drifted: int
    repaired: int
    listed: tuple[dict[str, Any], ...] = field(default=(), compare=False)  # the first drifted users, for pages

    def to_json(self) -> dict[str, Any]:
        checked_at = self.checked_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return {"checked_at": checked_at, "drifted": self.drifted, "repaired": self.repaired}

    def to_entity(self) -> dict[str, Any]:
        import json

        return {
            "PartitionKey": DRIFT_PARTITION,
            "RowKey": DRIFT_PARTITION,
            "checked_at": self.checked_at,
            "drifted": self.drifted,
            "repaired": self.repaired,
            "listed": json.dumps(list(self.listed[:20]))[:30000],
        }

    @classmethod
    def from_entity(cls, entity: Mapping[str, Any]) -> DriftStatus:
        import json

        return cls(
            checked_at=as_utc(entity["checked_at"]),
            drifted=int(entity.get("drifted", 0)),
            repaired=int(entity.get("repaired", 0)),
            listed=tuple(json.loads(entity.get("listed") or "[]")),
        )


def status_json(drift: DriftStatus | None) -> dict[str, Any] | None:
    """`status --json` `drift`: null before the first check."""
    return drift.to_json() if drift is not None else None


def verdict_reason(drift: DriftStatus | None, checked: str) -> str | None:
    """A sentence for the status verdict when AtHoc still differs from this app, else None.
    `checked` is the check's time as the reader's page shows times (the org's local time)."""
    if drift is None:
        return None
    left = drift.drifted - drift.repaired
    if left <= 0:
        return None
    users = "user's" if left == 1 else "users'"
    return (
        f"{left} {users} duty value in AtHoc differs from what this app last set (checked {checked}); "
        "see `reconcile`, or `reconcile --apply` to set them back"
    )


def save_drift_status(state: Any, drift: DriftStatus) -> None:
    state.table("jobstatus").upsert_entity(drift.to_entity())


def load_drift_status(state: Any) -> DriftStatus | None:
    try:
        return DriftStatus.from_entity(state.table("jobstatus").get_entity(DRIFT_PARTITION, DRIFT_PARTITION))
    except ResourceNotFoundError:
        return None
