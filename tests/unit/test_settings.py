"""Settings: the documented defaults (docs/settings.md), one message naming every problem, secrets never echoed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared.settings import SETTINGS, Settings, SettingsError, load_local_settings

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = {
    "ATHOC_SERVER_URL": "https://alerts.example.com/",
    "ATHOC_ORG_CODE": "ORG1",
    "ATHOC_CLIENT_ID": "client",
    "ATHOC_CLIENT_SECRET": "s3cr3t-client-value",
    "ATHOC_USERNAME": "svc",
    "ATHOC_PASSWORD": "pa55-word-value",
    "BOBO_STORAGE": "UseDevelopmentStorage=true",
}


def test_contract_defaults() -> None:
    settings = Settings.from_env(MINIMAL)
    assert settings.athoc.server_url == "https://alerts.example.com"
    assert settings.athoc.scope == "openid profile athoc.iws.web.api"
    assert settings.athoc.duty_field == "On-Duty-DTG"
    assert settings.athoc.collar_field == "Collar-Number"
    assert settings.athoc.datetime_format == "%d/%m/%Y %H:%M:%S"
    assert settings.athoc.verify_tls is True
    assert settings.timezone_name == "UTC"
    assert settings.auto_cleanup_hours == 24
    assert settings.max_retry_attempts == 5
    assert settings.mapping_sync_hour == 20
    assert settings.mapping_max_age_days == 2
    assert settings.batch_window_seconds == 2
    assert settings.blob_trigger_source == "EventGrid"
    assert settings.log_level == "INFO"
    assert settings.containers == ("bobo-incoming", "bobo-processed", "bobo-failed", "bobo-rejects")
    assert settings.table_prefix == "bobo"


def test_every_problem_named_in_one_message_without_secret_values() -> None:
    env = dict(MINIMAL)
    del env["ATHOC_ORG_CODE"]
    env.update(
        {
            "ATHOC_SERVER_URL": "alerts.example.com",
            "BOBO_MAX_RETRY_ATTEMPTS": "five",
            "BOBO_TIMEZONE": "Mars/Olympus",
            "ATHOC_VERIFY_TLS": "maybe",
            "BOBO_INCOMING_CONTAINER": "Bad_Name",
            "BOBO_STORAGE": "not a connection string",
        }
    )
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    message = str(caught.value)
    for name in (
        "ATHOC_ORG_CODE",
        "ATHOC_SERVER_URL",
        "BOBO_MAX_RETRY_ATTEMPTS",
        "BOBO_TIMEZONE",
        "ATHOC_VERIFY_TLS",
        "BOBO_INCOMING_CONTAINER",
        "BOBO_STORAGE",
    ):
        assert name in message
    assert "not a connection string" not in message
    assert len(caught.value.problems) == 7


def test_secrets_absent_from_repr() -> None:
    env = dict(MINIMAL, BOBO_STORAGE="DefaultEndpointsProtocol=https;AccountName=a;AccountKey=SUPERSECRETKEY==")
    text = repr(Settings.from_env(env))
    for secret in ("s3cr3t-client-value", "pa55-word-value", "SUPERSECRETKEY"):
        assert secret not in text


def test_identity_based_storage() -> None:
    env = {k: v for k, v in MINIMAL.items() if k != "BOBO_STORAGE"}
    env.update(
        {
            "BOBO_STORAGE__blobServiceUri": "https://acct.blob.core.windows.net",
            "BOBO_STORAGE__queueServiceUri": "https://acct.queue.core.windows.net",
            "BOBO_STORAGE__tableServiceUri": "https://acct.table.core.windows.net",
            "BOBO_STORAGE__clientId": "00000000-0000-0000-0000-000000000001",
        }
    )
    storage = Settings.from_env(env).storage
    assert storage.uses_identity
    assert storage.table_service_uri == "https://acct.table.core.windows.net"
    assert storage.client_id == "00000000-0000-0000-0000-000000000001"


def test_missing_storage_is_named() -> None:
    env = {k: v for k, v in MINIMAL.items() if k != "BOBO_STORAGE"}
    with pytest.raises(SettingsError, match="BOBO_STORAGE is required"):
        Settings.from_env(env)


def test_local_settings_read_and_environment_wins(tmp_path: Path) -> None:
    (tmp_path / "local.settings.json").write_text(
        json.dumps({"Values": {"BOBO_TIMEZONE": "Europe/London", "LOG_LEVEL": "DEBUG"}})
    )
    merged = load_local_settings(tmp_path, {"LOG_LEVEL": "WARNING"})
    assert merged["BOBO_TIMEZONE"] == "Europe/London"
    assert merged["LOG_LEVEL"] == "WARNING"


def test_example_file_lists_every_setting() -> None:
    values = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    missing = [spec.name for spec in SETTINGS if spec.name not in values]
    assert missing == []
    # Bindings read these; the Functions host has no defaults for them (docs/settings.md#functions-host-settings).
    for name in ("BOBO_INCOMING_CONTAINER", "BOBO_SWEEP_SCHEDULE", "BOBO_MAPPING_SCHEDULE", "BOBO_CLEANUP_SCHEDULE"):
        assert values[name]


def _section(page: str, heading: str) -> str:
    """The text under a `## heading` of a docs page, up to the next `## ` heading."""
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    assert f"\n## {heading}\n" in text, f"docs/{page} has no '## {heading}' section"
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_the_settings_page_lists_every_setting_with_its_default() -> None:
    """Every setting with its default, in docs/settings.md's "## Every setting" table (none more, none less)."""
    table = _section("settings.md", "Every setting")
    listed = dict(re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]+) \|", table, flags=re.MULTILINE))
    expected = {
        spec.name: "(required)" if spec.required else (f"`{spec.default}`" if spec.default else "(empty)")
        for spec in SETTINGS
    }
    assert {name: text.strip() for name, text in listed.items()} == expected


# The predecessor tool's `.env` names: each must be mapped to its successor or said to be gone.
PREDECESSOR_NAMES = (
    "ATHOC_SERVER_URL", "CLIENT_ID", "CLIENT_SECRET", "APIUSER", "USERNAME", "PASSWORD", "ORG_CODE",
    "GRANT_TYPE", "SCOPE", "DISABLE_SSL_VERIFY", "SSL_CERT_PATH", "HTTP_PROXY", "HTTPS_PROXY", "LOG_LEVEL",
    "LOG_DIRECTORY", "LOG_PURGE_DAYS", "CSV_DIRECTORY", "PROCESSED_DIRECTORY", "MOVE_PROCESSED_FILES",
    "PROCESSED_FILES_PURGE_DAYS", "BATCH_SIZE", "DB_PATH", "SYNC_MAPPINGS", "SYNC_HOUR", "SYNC_RETRY_DAYS",
    "DUTY_STATUS_FIELD", "COLLAR_ID_FIELD", "USER_ATTRIBUTES", "AUTO_CLEANUP_HOURS", "MAX_RETRY_ATTEMPTS",
    "FAILED_FILES_DIRECTORY",
)  # fmt: skip


def test_the_settings_page_maps_every_predecessor_setting() -> None:
    """Each predecessor name has a row naming its successor (a setting that exists) or saying why it is gone."""
    table = _section("settings.md", "From the predecessor's `.env`")
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in table.splitlines()
        if line.startswith("| `")
    ]
    mapped: dict[str, list[str]] = {}
    for predecessor, successor, note in rows:
        for name in re.findall(r"`([A-Z_]+)`", predecessor):
            mapped[name] = [successor, note]
    assert [name for name in PREDECESSOR_NAMES if name not in mapped] == []
    # The standard proxy variables are honoured without being app settings.
    known = {spec.name for spec in SETTINGS} | {"HTTPS_PROXY", "NO_PROXY"}
    for name, (successor, note) in mapped.items():
        if successor == "gone":
            assert note, f"{name}: gone without a reason"
        else:
            successors = re.findall(r"`([A-Z_]+)`", successor)
            assert successors and set(successors) <= known, f"{name} -> {successor}"
