"""Reading AtHoc user rows (search results and SyncByCommonNames answers), whose key casing is unverified."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TypeAlias

# One user row (or response object) as decoded from JSON.
JsonObject: TypeAlias = dict[str, object]

LOGIN_FIELD = "LOGIN_ID"


def field_value(row: Mapping[str, object], name: str) -> object:
    """A row's value of `name`, matching the key case-insensitively (the server's casing is unverified);
    None when the row has no such key."""
    if name in row:
        return row[name]
    folded = name.casefold()
    for key, value in row.items():
        if isinstance(key, str) and key.casefold() == folded:
            return value
    return None


def has_field(row: Mapping[str, object], name: str) -> bool:
    """Whether the row has the key `name`, case-insensitively (a null value counts as present)."""
    folded = name.casefold()
    return any(isinstance(key, str) and key.casefold() == folded for key in row)


def login_of(row: Mapping[str, object]) -> str | None:
    """A search row's LOGIN_ID, or None when it is missing, null or blank (such a user cannot be updated)."""
    login = field_value(row, LOGIN_FIELD)
    if login is None or not str(login).strip():
        return None
    return str(login)


def row_fingerprint(row: Mapping[str, object]) -> str:
    """Identifies a row without LOGIN_ID across pages (by USER_ID when it has one), so it is counted once."""
    user_id = field_value(row, "USER_ID")
    if user_id is not None:
        return f"USER_ID={user_id}"
    return json.dumps(row, sort_keys=True, default=str)
