"""Every setting of the app, read and validated in one place, as `shared.settings_table` declares it.

`Settings.from_env(mapping)` builds an immutable object from any mapping (``os.environ`` in Azure and
under ``func start``; a plain dict in tests). Validation collects every problem and raises one
``SettingsError`` naming each missing or malformed setting, never echoing a secret's value.
``python -m shared.settings --example`` prints local.settings.json.example, ``--markdown`` the settings
doc's table, both rendered from the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from shared.settings_parsers import ContainerName, Rejected, StorageConnection
from shared.settings_table import (
    SECRET_SETTINGS,
    SETTING_NAMES,
    SETTING_TABLE,
    SETTINGS,
    STORAGE_CONNECTION,
    SettingSpec,
    example_local_settings,
    settings_markdown,
)

# Re-exported: the rest of the code and the tests import these from here.
__all__ = [
    "SECRET_SETTINGS",
    "SETTINGS",
    "SETTING_NAMES",
    "SETTING_TABLE",
    "STORAGE_CONNECTION",
    "AtHocSettings",
    "SettingSpec",
    "Settings",
    "SettingsError",
    "StorageConnection",
    "describe",
    "load_local_settings",
]


class SettingsError(ValueError):
    """One or more settings are missing or malformed; the message names each of them."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid settings: " + "; ".join(problems))


# A table attribute "athoc.page_size" fills Settings.athoc.page_size.
_ATHOC = "athoc."


@dataclass(frozen=True)
class AtHocSettings:
    """How to reach and write AtHoc. Each field is one setting's parsed value (SETTING_TABLE's attribute)."""

    server_url: str
    org_code: str
    client_id: str
    client_secret: str = field(repr=False)
    username: str
    password: str = field(repr=False)
    scope: str
    duty_field: str
    collar_field: str
    datetime_format: str
    verify_tls: bool
    ca_bundle: str | None
    sync_chunk_size: int
    page_size: int
    connect_timeout: float
    read_timeout: float
    call_budget_seconds: float
    max_retries: int


@dataclass(frozen=True)
class Settings:
    """Every setting of the function app, parsed; field types are the table's parser types (a test checks)."""

    athoc: AtHocSettings
    storage: StorageConnection
    incoming_container: str
    processed_container: str
    failed_container: str
    rejects_container: str
    table_prefix: str
    timezone_name: str
    auto_cleanup_hours: float
    max_retry_attempts: int
    mapping_sync_hour: int
    mapping_max_age_days: float
    mapping_max_remove_percent: float
    batch_window_seconds: float
    batch_max_files: int
    drain_budget_seconds: float
    io_threads: int
    lock_lease_seconds: int
    blob_trigger_source: str
    log_retention_days: int
    processed_retention_days: int
    log_level: str
    history_days: float
    reconcile_mode: str

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone_name)

    @property
    def containers(self) -> tuple[str, str, str, str]:
        return (self.incoming_container, self.processed_container, self.failed_container, self.rejects_container)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: the process environment). Raises SettingsError."""
        source = os.environ if env is None else env
        # Any: the table pairs each attribute with its parser; a test holds parser and field types equal.
        values: dict[str, Any] = {}
        problems: list[str] = []
        for spec in SETTINGS:
            if spec.attribute is None:
                continue  # read by the Functions host only (a %NAME% binding)
            try:
                values[spec.attribute] = spec.read(source)
            except Rejected as rejected:
                problems.extend(rejected.problems)
        problems.extend(_container_problems(source))
        if problems:
            raise SettingsError(problems)
        athoc = {name.removeprefix(_ATHOC): value for name, value in values.items() if name.startswith(_ATHOC)}
        others = {name: value for name, value in values.items() if not name.startswith(_ATHOC)}
        return cls(athoc=AtHocSettings(**athoc), **others)


def _container_problems(env: Mapping[str, str]) -> list[str]:
    """Rules across settings: the four containers must differ (compared as written, valid or not)."""
    names = [spec.text(env) for spec in SETTINGS if isinstance(spec.parser, ContainerName)]
    given = [name for name in names if name]
    if len(set(given)) != len(given):
        return ["BOBO_*_CONTAINER: the four containers must have different names"]
    return []


def load_local_settings(root: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for command-line runs: `local.settings.json` Values, overridden by the environment."""
    merged: dict[str, str] = {}
    path = root / "local.settings.json"
    if path.is_file():
        try:
            values = json.loads(path.read_text(encoding="utf-8")).get("Values", {})
        except (OSError, json.JSONDecodeError) as error:
            raise SettingsError([f"{path} is not readable JSON ({error.__class__.__name__})"]) from None
        merged.update({str(k): str(v) for k, v in values.items() if v is not None})
    merged.update(os.environ if env is None else env)
    return merged


def describe(settings: Settings) -> dict[str, object]:
    """A secret-free view of the settings, for `check` and debugging."""
    athoc = {f.name: getattr(settings.athoc, f.name) for f in fields(settings.athoc) if f.repr}
    return {
        "athoc": athoc,
        "storage": repr(settings.storage),
        "containers": list(settings.containers),
        "table_prefix": settings.table_prefix,
        "timezone": settings.timezone_name,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.settings", description="Print what is rendered from the settings table."
    )
    output = parser.add_mutually_exclusive_group(required=True)
    output.add_argument("--example", action="store_true", help="local.settings.json.example")
    output.add_argument("--markdown", action="store_true", help="the settings doc's table")
    args = parser.parse_args(argv)
    sys.stdout.write(example_local_settings() if args.example else settings_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
