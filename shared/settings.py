"""Every setting of the app, read and validated in one place.

`Settings.from_env(mapping)` builds an immutable object from any mapping (``os.environ`` in Azure and
under ``func start``; a plain dict in tests). Validation collects every problem and raises one
``SettingsError`` naming each missing or malformed setting, never echoing a secret's value.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SECRET_SETTINGS = frozenset({"ATHOC_CLIENT_SECRET", "ATHOC_PASSWORD", "BOBO_STORAGE"})

# Storage connection name shared by the trigger bindings and the code (contract section 3).
STORAGE_CONNECTION = "BOBO_STORAGE"

BLOB_TRIGGER_SOURCES = ("EventGrid", "LogsAndContainerScan")
RECONCILE_MODES = ("report", "apply", "off")


class SettingsError(ValueError):
    """One or more settings are missing or malformed; the message names each of them."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid settings: " + "; ".join(problems))


@dataclass(frozen=True)
class SettingSpec:
    """A setting's name, default (None = required) and one-line meaning, for docs and infra checks."""

    name: str
    default: str | None
    meaning: str

    @property
    def required(self) -> bool:
        return self.default is None


# The single list of settings: README, local.settings.json.example and infra are checked against it.
SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("ATHOC_SERVER_URL", None, "AtHoc base URL, e.g. https://alerts.example.com"),
    SettingSpec("ATHOC_ORG_CODE", None, "organization code (tenant)"),
    SettingSpec("ATHOC_CLIENT_ID", None, "API application client id"),
    SettingSpec("ATHOC_CLIENT_SECRET", None, "API application client secret (Key Vault in Azure)"),
    SettingSpec("ATHOC_USERNAME", None, "service account with the User Manager role"),
    SettingSpec("ATHOC_PASSWORD", None, "service account password (Key Vault in Azure)"),
    SettingSpec("ATHOC_SCOPE", "openid profile athoc.iws.web.api", "token scope"),
    SettingSpec("ATHOC_DUTY_FIELD", "On-Duty-DTG", "common name of the duty date-time attribute"),
    SettingSpec("ATHOC_COLLAR_FIELD", "Collar-Number", "common name of the employee id attribute"),
    SettingSpec("ATHOC_DATETIME_FORMAT", "%d/%m/%Y %H:%M:%S", "how duty values are written and read"),
    SettingSpec("ATHOC_VERIFY_TLS", "true", "false only for test servers (logged loudly)"),
    SettingSpec("ATHOC_CA_BUNDLE", "", "PEM file of a private CA that signed the AtHoc certificate"),
    SettingSpec("ATHOC_SYNC_CHUNK_SIZE", "1000", "rows per SyncByCommonNames request"),
    SettingSpec("ATHOC_PAGE_SIZE", "1000", "users per users/search/basic page (AtHoc caps at 1000)"),
    SettingSpec("ATHOC_CONNECT_TIMEOUT_SECONDS", "10", "TCP/TLS connect timeout per request"),
    SettingSpec("ATHOC_READ_TIMEOUT_SECONDS", "60", "read timeout per request"),
    SettingSpec("ATHOC_CALL_BUDGET_SECONDS", "120", "total time per AtHoc call including retries"),
    SettingSpec("ATHOC_MAX_RETRIES", "5", "retries of one transient AtHoc failure within the budget"),
    SettingSpec("BOBO_STORAGE", None, "storage connection string, or BOBO_STORAGE__* identity settings"),
    SettingSpec("BOBO_INCOMING_CONTAINER", "bobo-incoming", "files waiting (the exporter writes here)"),
    SettingSpec("BOBO_PROCESSED_CONTAINER", "bobo-processed", "files AtHoc confirmed"),
    SettingSpec("BOBO_FAILED_CONTAINER", "bobo-failed", "files that cannot succeed"),
    SettingSpec("BOBO_REJECTS_CONTAINER", "bobo-rejects", "NAME.rejects.csv for each file with rejected rows"),
    SettingSpec("BOBO_TABLE_PREFIX", "bobo", "prefix of every table name"),
    SettingSpec("BOBO_TIMEZONE", "UTC", "IANA zone of BOBO clock times and of the AtHoc org"),
    SettingSpec("BOBO_AUTO_CLEANUP_HOURS", "24", "duty values older than this are cleared"),
    SettingSpec("BOBO_MAX_RETRY_ATTEMPTS", "5", "attempts before a file goes to failed"),
    SettingSpec("BOBO_MAPPING_SYNC_HOUR", "20", "daily mapping sync runs after this hour (local)"),
    SettingSpec("BOBO_MAPPING_MAX_AGE_DAYS", "2", "a mapping older than this is refreshed at once"),
    SettingSpec("BOBO_MAPPING_MAX_REMOVE_PERCENT", "50", "a sync removing more of the mappings is refused"),
    SettingSpec("BOBO_BATCH_WINDOW_SECONDS", "2", "wait after taking the batch lock"),
    SettingSpec("BOBO_BATCH_MAX_FILES", "2000", "files read into one batch at most"),
    SettingSpec("BOBO_DRAIN_BUDGET_SECONDS", "480", "a drain stops starting batches after this"),
    SettingSpec("BOBO_IO_THREADS", "4", "files read and moved at once within a batch"),
    SettingSpec("BOBO_LOCK_LEASE_SECONDS", "60", "lease of the batch lock (15-60 s), renewed while held"),
    SettingSpec("BOBO_BLOB_TRIGGER_SOURCE", "EventGrid", "EventGrid (Azure) or LogsAndContainerScan (local)"),
    SettingSpec("BOBO_SWEEP_SCHEDULE", "0 */5 * * * *", "NCRONTAB (UTC) of sweep_incoming"),
    SettingSpec("BOBO_MAPPING_SCHEDULE", "0 5 * * * *", "NCRONTAB (UTC) of sync_mappings"),
    SettingSpec("BOBO_CLEANUP_SCHEDULE", "0 15 * * * *", "NCRONTAB (UTC) of clear_stale_duty"),
    SettingSpec("BOBO_LOG_RETENTION_DAYS", "30", "run-log entries and file records kept this long"),
    SettingSpec("BOBO_PROCESSED_RETENTION_DAYS", "30", "processed blobs kept this long (0 = keep)"),
    SettingSpec("BOBO_HISTORY_DAYS", "30", "days each employee's decided events are kept for explain"),
    SettingSpec("BOBO_RECONCILE", "report", "what the daily drift check does: report, apply or off"),
    SettingSpec("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR"),
)

SETTING_NAMES = frozenset(spec.name for spec in SETTINGS)
_DEFAULTS = {spec.name: spec.default for spec in SETTINGS}

_IDENTITY_SUFFIXES = ("blobServiceUri", "queueServiceUri", "tableServiceUri", "clientId", "credential")
_CONTAINER_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_TABLE_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,30}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class StorageConnection:
    """Either a connection string or the identity-based service URIs, as the Functions host reads them."""

    connection_string: str | None = field(default=None, repr=False)
    blob_service_uri: str | None = None
    queue_service_uri: str | None = None
    table_service_uri: str | None = None
    client_id: str | None = None

    @property
    def uses_identity(self) -> bool:
        return self.connection_string is None

    def __repr__(self) -> str:  # the connection string may hold an account key
        if self.connection_string is not None:
            return "StorageConnection(connection_string=<hidden>)"
        return f"StorageConnection(blob_service_uri={self.blob_service_uri!r}, client_id={self.client_id!r})"


@dataclass(frozen=True)
class AtHocSettings:
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
    history_days: float = 30.0
    reconcile_mode: str = "report"

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
        reader = _Reader(source)
        athoc = AtHocSettings(
            server_url=reader.url("ATHOC_SERVER_URL"),
            org_code=reader.text("ATHOC_ORG_CODE"),
            client_id=reader.text("ATHOC_CLIENT_ID"),
            client_secret=reader.text("ATHOC_CLIENT_SECRET"),
            username=reader.text("ATHOC_USERNAME"),
            password=reader.text("ATHOC_PASSWORD"),
            scope=reader.text("ATHOC_SCOPE"),
            duty_field=reader.text("ATHOC_DUTY_FIELD"),
            collar_field=reader.text("ATHOC_COLLAR_FIELD"),
            datetime_format=reader.datetime_format("ATHOC_DATETIME_FORMAT"),
            verify_tls=reader.boolean("ATHOC_VERIFY_TLS"),
            ca_bundle=reader.optional_file("ATHOC_CA_BUNDLE"),
            sync_chunk_size=reader.integer("ATHOC_SYNC_CHUNK_SIZE", minimum=1, maximum=10000),
            page_size=reader.integer("ATHOC_PAGE_SIZE", minimum=1, maximum=1000),
            connect_timeout=reader.number("ATHOC_CONNECT_TIMEOUT_SECONDS", minimum=0.1),
            read_timeout=reader.number("ATHOC_READ_TIMEOUT_SECONDS", minimum=0.1),
            call_budget_seconds=reader.number("ATHOC_CALL_BUDGET_SECONDS", minimum=1),
            max_retries=reader.integer("ATHOC_MAX_RETRIES", minimum=0, maximum=20),
        )
        settings = cls(
            athoc=athoc,
            storage=reader.storage(),
            incoming_container=reader.container("BOBO_INCOMING_CONTAINER"),
            processed_container=reader.container("BOBO_PROCESSED_CONTAINER"),
            failed_container=reader.container("BOBO_FAILED_CONTAINER"),
            rejects_container=reader.container("BOBO_REJECTS_CONTAINER"),
            table_prefix=reader.table_prefix("BOBO_TABLE_PREFIX"),
            timezone_name=reader.timezone("BOBO_TIMEZONE"),
            auto_cleanup_hours=reader.number("BOBO_AUTO_CLEANUP_HOURS", minimum=0.01),
            max_retry_attempts=reader.integer("BOBO_MAX_RETRY_ATTEMPTS", minimum=1, maximum=1000),
            mapping_sync_hour=reader.integer("BOBO_MAPPING_SYNC_HOUR", minimum=0, maximum=23),
            mapping_max_age_days=reader.number("BOBO_MAPPING_MAX_AGE_DAYS", minimum=0.01),
            mapping_max_remove_percent=reader.number("BOBO_MAPPING_MAX_REMOVE_PERCENT", minimum=0, maximum=100),
            batch_window_seconds=reader.number("BOBO_BATCH_WINDOW_SECONDS", minimum=0, maximum=50),
            batch_max_files=reader.integer("BOBO_BATCH_MAX_FILES", minimum=1, maximum=100000),
            drain_budget_seconds=reader.number("BOBO_DRAIN_BUDGET_SECONDS", minimum=1),
            io_threads=reader.integer("BOBO_IO_THREADS", minimum=1, maximum=32),
            # Blob leases last 15 to 60 s; a killed batcher's lock frees itself after this long.
            lock_lease_seconds=reader.integer("BOBO_LOCK_LEASE_SECONDS", minimum=15, maximum=60),
            blob_trigger_source=reader.choice("BOBO_BLOB_TRIGGER_SOURCE", BLOB_TRIGGER_SOURCES),
            log_retention_days=reader.integer("BOBO_LOG_RETENTION_DAYS", minimum=1),
            processed_retention_days=reader.integer("BOBO_PROCESSED_RETENTION_DAYS", minimum=0),
            log_level=reader.choice("LOG_LEVEL", _LOG_LEVELS, upper=True),
            history_days=reader.number("BOBO_HISTORY_DAYS"),
            reconcile_mode=reader.choice("BOBO_RECONCILE", RECONCILE_MODES),
        )
        containers = [c for c in settings.containers if c]
        if not settings.history_days > 0 and "BOBO_HISTORY_DAYS" not in " ".join(reader.problems):
            reader._bad("BOBO_HISTORY_DAYS", "a positive number of days (0.5 is 12 hours)")
        if len(set(containers)) != len(containers):
            reader.problems.append("BOBO_*_CONTAINER: the four containers must have different names")
        if reader.problems:
            raise SettingsError(reader.problems)
        return settings


class _Reader:
    """Reads raw strings, applies defaults, and collects every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or not value.strip():
            return _DEFAULTS.get(name)
        return value.strip()

    def text(self, name: str) -> str:
        value = self.raw(name)
        if value is None:
            self.problems.append(f"{name} is required")
            return ""
        return value

    def _bad(self, name: str, expected: str) -> None:
        # Never echo a secret's value; other values help the operator see the typo.
        shown = "<hidden>" if name in SECRET_SETTINGS else repr(self.raw(name))
        self.problems.append(f"{name}={shown} is not {expected}")

    def url(self, name: str) -> str:
        value = self.text(name)
        if value:
            parsed = urlparse(value)
            if parsed.scheme not in ("https", "http") or not parsed.netloc:
                self._bad(name, "an http(s) URL")
        return value.rstrip("/")

    def integer(self, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
        raw = self.text(name)
        try:
            value = int(raw)
        except ValueError:
            self._bad(name, "a whole number")
            return 0
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self._bad(name, f"between {minimum} and {maximum}")
        return value

    def number(self, name: str, *, minimum: float | None = None, maximum: float | None = None) -> float:
        raw = self.text(name)
        try:
            value = float(raw)
        except ValueError:
            self._bad(name, "a number")
            return 0.0
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self._bad(name, f"between {minimum} and {maximum}")
        return value

    def boolean(self, name: str) -> bool:
        raw = self.text(name).lower()
        if raw in ("true", "1", "yes", "on"):
            return True
        if raw in ("false", "0", "no", "off"):
            return False
        self._bad(name, "true or false")
        return True

    def choice(self, name: str, options: tuple[str, ...], *, upper: bool = False) -> str:
        raw = self.text(name)
        value = raw.upper() if upper else raw
        if value not in options:
            self._bad(name, "one of " + ", ".join(options))
        return value

    def container(self, name: str) -> str:
        value = self.text(name)
        if value and not _CONTAINER_NAME.match(value):
            self._bad(name, "a container name (3-63 lowercase letters, digits, single hyphens)")
        return value

    def table_prefix(self, name: str) -> str:
        value = self.text(name)
        if not _TABLE_PREFIX.match(value):
            self._bad(name, "a table-name prefix (a letter, then up to 30 letters or digits)")
        return value

    def timezone(self, name: str) -> str:
        value = self.text(name)
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            self._bad(name, "an IANA time zone such as Europe/London")
        return value

    def datetime_format(self, name: str) -> str:
        value = self.text(name)
        if "%" not in value:
            self._bad(name, "a strftime format such as %d/%m/%Y %H:%M:%S")
        return value

    def optional_file(self, name: str) -> str | None:
        value = self.raw(name)
        if not value:
            return None
        if not Path(value).is_file():
            self._bad(name, "a readable file")
        return value

    def storage(self) -> StorageConnection:
        connection_string = self.raw(STORAGE_CONNECTION)
        identity = {
            suffix: self.env.get(f"{STORAGE_CONNECTION}__{suffix}", "").strip() for suffix in _IDENTITY_SUFFIXES
        }
        if connection_string:
            if connection_string != "UseDevelopmentStorage=true" and "=" not in connection_string:
                self._bad(STORAGE_CONNECTION, "a storage connection string")
            return StorageConnection(connection_string=connection_string)
        if identity["blobServiceUri"] or identity["tableServiceUri"]:
            for suffix in ("blobServiceUri", "tableServiceUri"):
                if not identity[suffix].startswith("https://"):
                    self.problems.append(
                        f"{STORAGE_CONNECTION}__{suffix} is required (https://) with identity-based storage"
                    )
            return StorageConnection(
                blob_service_uri=identity["blobServiceUri"].rstrip("/") or None,
                queue_service_uri=identity["queueServiceUri"].rstrip("/") or None,
                table_service_uri=identity["tableServiceUri"].rstrip("/") or None,
                client_id=identity["clientId"] or None,
            )
        self.problems.append(
            f"{STORAGE_CONNECTION} is required (a connection string, or {STORAGE_CONNECTION}__blobServiceUri"
            f" and {STORAGE_CONNECTION}__tableServiceUri for a managed identity)"
        )
        return StorageConnection()


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
