"""The table of every setting: name, default, parser (with its bounds), secret, help; rendered for docs.

`SETTING_TABLE` is the one place a setting is declared. `shared.settings` builds `Settings` from it; the
settings doc's table (`settings_markdown`) and `local.settings.json.example` (`example_local_settings`)
are rendered from it, and tests hold the doc, the example file and infra to it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from shared.settings_parsers import (
    DEVELOPMENT_STORAGE,
    Boolean,
    Bounded,
    Choice,
    ContainerName,
    DatetimeFormat,
    Integer,
    Missing,
    NotValid,
    Number,
    OptionalFile,
    Parser,
    Rejected,
    StorageConnectionSetting,
    TablePrefix,
    Text,
    TimeZoneName,
    Url,
)

# Storage connection name shared by the trigger bindings and the code (docs/design.md#containers).
STORAGE_CONNECTION = "BOBO_STORAGE"

BLOB_TRIGGER_SOURCES = ("EventGrid", "LogsAndContainerScan")
RECONCILE_MODES = ("report", "apply", "off")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# The Functions host's own settings, as local.settings.json.example sets them for `func start`.
FUNCTIONS_HOST_LOCAL_SETTINGS = {"FUNCTIONS_WORKER_RUNTIME": "python", "AzureWebJobsStorage": DEVELOPMENT_STORAGE}


class Scope(StrEnum):
    """Who reads a setting.

    APP: the function app (app settings in Azure, local.settings.json locally): `Settings.from_env`, the
    example file, infra and the settings doc's table cover exactly these.
    UPLOADER: read only by `python -m shared.uploader` on the BOBO server (docs/uploader.md); the app
    settings it shares (BOBO_STORAGE, BOBO_INCOMING_CONTAINER, LOG_LEVEL) stay APP.
    """

    APP = "app"
    UPLOADER = "uploader"


@dataclass(frozen=True)
class SettingSpec:
    """One setting: everything the code, the docs, the example file and the infra checks know of it."""

    name: str
    default: str | None  # None: required
    meaning: str  # one line of Markdown, as the settings doc shows it
    parser: Parser  # text to value; bounds live in the parser (Integer(1, 32))
    attribute: str | None = None  # the Settings attribute it fills ("athoc.page_size"); None: only the host reads it
    secret: bool = False  # never echoed; a placeholder in the example file
    binding: bool = False  # a trigger binding reads %NAME%: the host has no default for it, so it is always set
    local: str | None = None  # the value local.settings.json.example suggests, where it is not the default
    scope: Scope = Scope.APP

    @property
    def required(self) -> bool:
        return self.default is None

    def text(self, env: Mapping[str, str]) -> str | None:
        """The stripped value in `env`, else the default (a blank value counts as unset)."""
        value = env.get(self.name)
        if value is None or not value.strip():
            return self.default
        return value.strip()

    def read(self, env: Mapping[str, str]) -> object:
        """The parsed value; raises Rejected with whole messages (a secret's value is never in them)."""
        text = self.text(env)
        try:
            return self.parser.parse(self.name, text, env)
        except Missing:
            raise Rejected(f"{self.name} is required") from None
        except NotValid as bad:
            shown = "<hidden>" if self.secret else repr(text)
            raise Rejected(f"{self.name}={shown} is not {bad.expected}") from None


# The single table of settings: Settings.from_env, the settings doc, local.settings.json.example and the
# infra checks all read it. Order is the doc's order and the order problems are reported in.
SETTING_TABLE: tuple[SettingSpec, ...] = (
    SettingSpec(
        "ATHOC_SERVER_URL",
        None,
        "AtHoc base URL, e.g. `https://alerts.example.com` (`http://` only for loopback test servers, with a warning)",
        Url(),
        "athoc.server_url",
    ),
    SettingSpec("ATHOC_ORG_CODE", None, "organization code (tenant)", Text(), "athoc.org_code"),
    SettingSpec("ATHOC_CLIENT_ID", None, "API application client id", Text(), "athoc.client_id"),
    SettingSpec(
        "ATHOC_CLIENT_SECRET",
        None,
        "API application client secret (Key Vault in Azure)",
        Text(),
        "athoc.client_secret",
        secret=True,
    ),
    SettingSpec("ATHOC_USERNAME", None, "service account with the User Manager role", Text(), "athoc.username"),
    SettingSpec(
        "ATHOC_PASSWORD", None, "service account password (Key Vault in Azure)", Text(), "athoc.password", secret=True
    ),
    SettingSpec(
        "ATHOC_SCOPE",
        "openid profile athoc.iws.web.api",
        "token scope; add `offline_access` to use refresh tokens",
        Text(),
        "athoc.scope",
    ),
    SettingSpec(
        "ATHOC_DUTY_FIELD", "On-Duty-DTG", "common name of the duty date-time attribute", Text(), "athoc.duty_field"
    ),
    SettingSpec(
        "ATHOC_COLLAR_FIELD", "Collar-Number", "common name of the employee id attribute", Text(), "athoc.collar_field"
    ),
    SettingSpec(
        "ATHOC_DATETIME_FORMAT",
        "%d/%m/%Y %H:%M:%S",
        "how duty values are written and read",
        DatetimeFormat(),
        "athoc.datetime_format",
    ),
    SettingSpec(
        "ATHOC_VERIFY_TLS", "true", "`false` only for test servers (logged loudly)", Boolean(), "athoc.verify_tls"
    ),
    SettingSpec(
        "ATHOC_CA_BUNDLE",
        "",
        "PEM file of a private CA that signed the AtHoc certificate",
        OptionalFile(),
        "athoc.ca_bundle",
    ),
    SettingSpec(
        "ATHOC_SYNC_CHUNK_SIZE",
        "1000",
        "rows per SyncByCommonNames request",
        Integer(1, 10000),
        "athoc.sync_chunk_size",
    ),
    SettingSpec(
        "ATHOC_PAGE_SIZE",
        "1000",
        "users per users/search/basic page, AtHoc caps it",
        Integer(1, 1000),
        "athoc.page_size",
    ),
    SettingSpec(
        "ATHOC_CONNECT_TIMEOUT_SECONDS",
        "10",
        "TCP/TLS connect timeout per request",
        Number(0.1),
        "athoc.connect_timeout",
    ),
    SettingSpec("ATHOC_READ_TIMEOUT_SECONDS", "60", "read timeout per request", Number(0.1), "athoc.read_timeout"),
    SettingSpec(
        "ATHOC_CALL_BUDGET_SECONDS",
        "120",
        "total time of one AtHoc call including retries (keeps a run inside the function timeout)",
        Number(1),
        "athoc.call_budget_seconds",
    ),
    SettingSpec(
        "ATHOC_MAX_RETRIES",
        "5",
        "retries of one transient AtHoc failure within the budget",
        Integer(0, 20),
        "athoc.max_retries",
    ),
    SettingSpec(
        "BOBO_STORAGE",
        None,
        "storage connection string, or identity-based `BOBO_STORAGE__blobServiceUri`, `__queueServiceUri`, "
        "`__tableServiceUri`, optional `__clientId`",
        StorageConnectionSetting(),
        "storage",
        secret=True,
        local=DEVELOPMENT_STORAGE,
    ),
    SettingSpec(
        "BOBO_INCOMING_CONTAINER",
        "bobo-incoming",
        "files waiting (the exporter writes here and only here)",
        ContainerName(),
        "incoming_container",
        binding=True,
    ),
    SettingSpec(
        "BOBO_PROCESSED_CONTAINER", "bobo-processed", "files AtHoc confirmed", ContainerName(), "processed_container"
    ),
    SettingSpec(
        "BOBO_FAILED_CONTAINER", "bobo-failed", "files that cannot succeed", ContainerName(), "failed_container"
    ),
    SettingSpec(
        "BOBO_REJECTS_CONTAINER",
        "bobo-rejects",
        "`NAME.rejects.csv` for each file with rejected rows",
        ContainerName(),
        "rejects_container",
    ),
    SettingSpec("BOBO_TABLE_PREFIX", "bobo", "prefix of every table name", TablePrefix(), "table_prefix"),
    SettingSpec(
        "BOBO_TIMEZONE", "UTC", "IANA zone of BOBO clock times and of the AtHoc org", TimeZoneName(), "timezone_name"
    ),
    SettingSpec(
        "BOBO_AUTO_CLEANUP_HOURS", "24", "duty values older than this are cleared", Number(0.01), "auto_cleanup_hours"
    ),
    SettingSpec(
        "BOBO_MAX_RETRY_ATTEMPTS", "5", "attempts before a file goes to failed", Integer(1, 1000), "max_retry_attempts"
    ),
    SettingSpec(
        "BOBO_MAPPING_SYNC_HOUR",
        "20",
        "the daily mapping sync runs after this hour (in `BOBO_TIMEZONE`)",
        Integer(0, 23),
        "mapping_sync_hour",
    ),
    SettingSpec(
        "BOBO_MAPPING_MAX_AGE_DAYS",
        "2",
        "a mapping older than this is refreshed at once",
        Number(0.01),
        "mapping_max_age_days",
    ),
    SettingSpec(
        "BOBO_MAPPING_MAX_REMOVE_PERCENT",
        "50",
        "a mapping sync that would remove more of the mappings is refused",
        Number(0, 100),
        "mapping_max_remove_percent",
    ),
    SettingSpec(
        "BOBO_BATCH_WINDOW_SECONDS",
        "2",
        "the batcher waits this long after taking the lock",
        Number(0, 50),
        "batch_window_seconds",
    ),
    SettingSpec(
        "BOBO_BATCH_MAX_FILES", "2000", "files read into one batch at most", Integer(1, 100000), "batch_max_files"
    ),
    SettingSpec(
        "BOBO_DRAIN_BUDGET_SECONDS",
        "480",
        "a drain starts no new batch after this, and one batch's AtHoc send ends within it (functionTimeout is 30 min)",
        Number(1),
        "drain_budget_seconds",
    ),
    SettingSpec(
        "BOBO_IO_THREADS",
        "4",
        "files read and moved at once within a batch "
        "(storage calls are network waits; 2-4 measured best on 2 cores against Azurite)",
        Integer(1, 32),
        "io_threads",
    ),
    SettingSpec(
        "BOBO_LOCK_LEASE_SECONDS",
        "60",
        "lease of the batch lock (15-60 s): how soon a killed batcher's lock frees itself",
        Integer(15, 60),
        "lock_lease_seconds",
    ),
    SettingSpec(
        "BOBO_BLOB_TRIGGER_SOURCE",
        "EventGrid",
        "`EventGrid` (Azure, Flex Consumption) or `LogsAndContainerScan` (local); read when the app is indexed",
        Choice(BLOB_TRIGGER_SOURCES),
        "blob_trigger_source",
        local="LogsAndContainerScan",
    ),
    SettingSpec("BOBO_SWEEP_SCHEDULE", "0 */5 * * * *", "NCRONTAB (UTC) of `sweep_incoming`", Text(), binding=True),
    SettingSpec(
        "BOBO_MAPPING_SCHEDULE",
        "0 5 * * * *",
        "NCRONTAB (UTC) of `sync_mappings` (it decides itself whether a sync is due)",
        Text(),
        binding=True,
    ),
    SettingSpec("BOBO_CLEANUP_SCHEDULE", "0 15 * * * *", "NCRONTAB (UTC) of `clear_stale_duty`", Text(), binding=True),
    SettingSpec(
        "BOBO_LOG_RETENTION_DAYS",
        "30",
        "run-log entries and file records kept this long",
        Integer(1),
        "log_retention_days",
    ),
    SettingSpec(
        "BOBO_PROCESSED_RETENTION_DAYS",
        "30",
        "processed blobs kept this long (`0` = keep); failed blobs are never deleted automatically",
        Integer(0),
        "processed_retention_days",
    ),
    SettingSpec(
        "LOG_LEVEL",
        "INFO",
        "`DEBUG`, `INFO`, `WARNING` or `ERROR` (in Azure, DEBUG lines also need the host to pass them: app setting "
        "`AzureFunctionsJobHost__logging__logLevel__Function=Debug`, because `host.json` lets function logs through "
        "from Information)",
        Choice(LOG_LEVELS, upper=True),
        "log_level",
    ),
    SettingSpec(
        "BOBO_HISTORY_DAYS",
        "30",
        "how long each employee's decided events are kept for `explain` (fractions allowed: `0.5` is 12 hours)",
        Number(0.01),
        "history_days",
    ),
    SettingSpec(
        "BOBO_RECONCILE",
        "report",
        "what the daily drift check does: `report`, `apply` (set drifted users back) or `off`",
        Choice(RECONCILE_MODES),
        "reconcile_mode",
    ),
    SettingSpec(
        "BOBO_UPLOAD_URL",
        "",
        "the incoming container's URL, optionally with a SAS token (without one: Entra ID); empty: `BOBO_STORAGE`",
        Text(),
        secret=True,
        scope=Scope.UPLOADER,
    ),
    SettingSpec(
        "BOBO_UPLOAD_SETTLE_SECONDS",
        "5",
        "a file is uploaded once its size and modification time have not changed for this long",
        Number(0, 3600),
        scope=Scope.UPLOADER,
    ),
    SettingSpec(
        "BOBO_UPLOAD_INTERVAL_SECONDS",
        "10",
        "`--watch`: seconds between passes",
        Number(1, 86400),
        scope=Scope.UPLOADER,
    ),
)

# The function app's settings (everything infra and local.settings.json set).
SETTINGS = tuple(spec for spec in SETTING_TABLE if spec.scope is Scope.APP)
SETTING_NAMES = frozenset(spec.name for spec in SETTINGS)
SECRET_SETTINGS = frozenset(spec.name for spec in SETTING_TABLE if spec.secret)
SPEC_BY_NAME = {spec.name: spec for spec in SETTING_TABLE}


# --- rendered from the table: the settings doc's table and local.settings.json.example ------------------

MARKDOWN_HEADER = "| setting | default | meaning |\n|---|---|---|\n"


def _default_markdown(spec: SettingSpec) -> str:
    if spec.default is None:
        return "(required)"
    return f"`{spec.default}`" if spec.default else "(empty)"


def settings_markdown(scope: Scope = Scope.APP) -> str:
    """The settings doc's table (setting | default | meaning) for the settings of `scope`."""
    rows = (
        f"| `{spec.name}` | {_default_markdown(spec)} | {spec.meaning}{_bounds_markdown(spec)} |\n"
        for spec in SETTING_TABLE
        if spec.scope is scope
    )
    return MARKDOWN_HEADER + "".join(rows)


def _bounds_markdown(spec: SettingSpec) -> str:
    """` (1-1,000)`, ` (at least 1)`, ...: the parser's bounds, so the doc can never disagree with them."""
    parser = spec.parser
    if not isinstance(parser, Bounded) or (parser.minimum is None and parser.maximum is None):
        return ""
    low, high = (f"{bound:,g}" if bound is not None else None for bound in (parser.minimum, parser.maximum))
    if high is None:
        return f" (at least {low})"
    return f" (at most {high})" if low is None else f" ({low}-{high})"


def _example_value(spec: SettingSpec) -> str:
    """What local.settings.json.example sets: the local value, the default, or a placeholder to replace."""
    if spec.local is not None:
        return spec.local
    if spec.default is not None:
        return spec.default
    meaning = spec.meaning.replace("`", "")
    if spec.secret:
        return f"<required secret: {meaning}; never commit it>"
    return f"<required: {meaning}>"


def example_local_settings() -> str:
    """local.settings.json.example: every app setting (bindings need them all) and the host's own."""
    values = dict(FUNCTIONS_HOST_LOCAL_SETTINGS)
    values.update({spec.name: _example_value(spec) for spec in SETTINGS})
    return json.dumps({"IsEncrypted": False, "Values": values}, indent=2, ensure_ascii=False) + "\n"
