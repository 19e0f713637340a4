"""Settings: the documented defaults, one message naming every problem, secrets never echoed."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import get_type_hints

import pytest

from shared.settings import SETTINGS, AtHocSettings, Settings, SettingsError, load_local_settings
from shared.settings_parsers import Integer, Number, Parser
from shared.settings_table import (
    FUNCTIONS_HOST_LOCAL_SETTINGS,
    MARKDOWN_HEADER,
    SETTING_NAMES,
    SettingSpec,
    example_local_settings,
    settings_markdown,
)

ROOT = Path(__file__).resolve().parents[2]
# The doc whose settings table is rendered from the code (the one place to change when the doc moves).
SETTINGS_DOC = "docs/settings.md"
EXAMPLE_FILE = "local.settings.json.example"

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
    values = json.loads((ROOT / EXAMPLE_FILE).read_text())["Values"]
    missing = [spec.name for spec in SETTINGS if spec.name not in values]
    assert missing == []
    # Bindings read these; the Functions host has no defaults for them (docs/settings.md#functions-host-settings).
    for name in ("BOBO_INCOMING_CONTAINER", "BOBO_SWEEP_SCHEDULE", "BOBO_MAPPING_SCHEDULE", "BOBO_CLEANUP_SCHEDULE"):
        assert values[name]


def doc_settings_table() -> str:
    """The settings doc's table: its header line and every table line after it."""
    text = (ROOT / SETTINGS_DOC).read_text(encoding="utf-8")
    header = MARKDOWN_HEADER.splitlines()[0]
    assert text.count(header + "\n") == 1, f"{SETTINGS_DOC} should have one table headed {header}"
    after = text.split(header + "\n", 1)[1]
    lines = [header]
    for line in after.splitlines():
        if not line.startswith("|"):
            break
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_the_settings_page_lists_every_setting_with_its_default() -> None:
    """docs/settings.md lists every setting with its default (its settings table), none more, none less."""
    table = doc_settings_table()
    listed = dict(re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]+) \|", table, flags=re.MULTILINE))
    expected = {
        spec.name: "(required)" if spec.required else (f"`{spec.default}`" if spec.default else "(empty)")
        for spec in SETTINGS
    }
    assert {name: text.strip() for name, text in listed.items()} == expected


# --- the table: one declaration per setting, rendered into the doc and the example file ---------------------


def test_the_settings_doc_table_is_the_rendered_table() -> None:
    assert doc_settings_table() == settings_markdown(), (
        f"{SETTINGS_DOC}'s settings table differs from the code's: paste `python -m shared.settings --markdown`"
    )


def test_rendered_rows_show_required_empty_and_default_values() -> None:
    rows = settings_markdown().splitlines()
    assert rows[:2] == ["| setting | default | meaning |", "|---|---|---|"]
    assert "| `ATHOC_ORG_CODE` | (required) | organization code (tenant) |" in rows
    assert any(row.startswith("| `ATHOC_CA_BUNDLE` | (empty) | ") for row in rows)
    assert any(row.startswith("| `BOBO_TIMEZONE` | `UTC` | ") for row in rows)
    assert len(rows) == 2 + len(SETTINGS)


def test_the_example_file_is_the_rendered_example() -> None:
    text = (ROOT / EXAMPLE_FILE).read_text(encoding="utf-8")
    assert text == example_local_settings(), f"regenerate: python -m shared.settings --example > {EXAMPLE_FILE}"


def test_the_example_sets_what_the_host_needs_and_no_unknown_setting() -> None:
    values = json.loads((ROOT / EXAMPLE_FILE).read_text(encoding="utf-8"))["Values"]
    unknown = sorted(set(values) - SETTING_NAMES - set(FUNCTIONS_HOST_LOCAL_SETTINGS))
    assert unknown == []
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["AzureWebJobsStorage"]
    # Bindings read these as %NAME% and the host has no defaults for them (docs/settings.md#functions-host-settings).
    bound = [spec.name for spec in SETTINGS if spec.binding]
    assert {"BOBO_INCOMING_CONTAINER", "BOBO_SWEEP_SCHEDULE"} <= set(bound)
    for name in bound:
        assert values[name] and not values[name].startswith("<"), f"{name} must be set to a real value"
    # Only the AtHoc placeholders need filling in: with them, the example's values are valid settings.
    placeholders = {name for name, value in values.items() if value.startswith("<")}
    assert placeholders == {name for name in MINIMAL if name.startswith("ATHOC_")}
    settings = Settings.from_env({**values, **{name: MINIMAL[name] for name in placeholders}})
    assert settings.blob_trigger_source == "LogsAndContainerScan"  # polling: no Event Grid under Azurite


def test_binding_settings_are_exactly_those_the_indexed_app_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Index the app as the worker does and collect every %NAME% its bindings name."""
    monkeypatch.delenv("BOBO_BLOB_TRIGGER_SOURCE", raising=False)
    for module in ("function_app", "functions.ingest", "functions.maintenance", "functions.http"):
        sys.modules.pop(module, None)
    app = importlib.import_module("function_app").app
    named: set[str] = set()
    for function in app.get_functions():
        for binding in function.get_dict_repr()["bindings"]:
            for value in binding.values():
                named.update(re.findall(r"%([A-Za-z0-9_]+)%", value) if isinstance(value, str) else ())
    assert named, "no %NAME% binding found: the indexing changed?"
    assert named == {spec.name for spec in SETTINGS if spec.binding}


@pytest.mark.parametrize("flag", ["--example", "--markdown"])
def test_python_m_shared_settings_prints_what_is_rendered(flag: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shared.settings", flag], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout == (example_local_settings() if flag == "--example" else settings_markdown())
    assert done.stdout.strip()


def value_type(parser: Parser) -> object:
    """The type a parser yields: its `parse` annotation when it reads several keys, else its `convert`'s."""
    method = type(parser).parse if type(parser).parse is not Parser.parse else type(parser).convert
    return get_type_hints(method)["return"]


def test_every_field_is_filled_by_one_setting_of_its_type() -> None:
    fields_by_attribute = {f"athoc.{name}": hint for name, hint in get_type_hints(AtHocSettings).items()}
    fields_by_attribute.update({name: hint for name, hint in get_type_hints(Settings).items() if name != "athoc"})
    filled = [spec for spec in SETTINGS if spec.attribute is not None]
    assert sorted(spec.attribute for spec in filled) == sorted(fields_by_attribute)
    for spec in filled:
        assert value_type(spec.parser) == fields_by_attribute[spec.attribute], spec.name
    # Only settings the Functions host alone reads have no attribute.
    assert all(spec.binding for spec in SETTINGS if spec.attribute is None)


def test_each_required_setting_alone_missing_is_named() -> None:
    required = [spec.name for spec in SETTINGS if spec.required]
    assert set(required) == set(MINIMAL)  # the required settings of docs/settings.md and nothing else
    for name in required:
        env = {k: v for k, v in MINIMAL.items() if k != name}
        with pytest.raises(SettingsError) as caught:
            Settings.from_env(env)
        assert len(caught.value.problems) == 1
        assert caught.value.problems[0].startswith(f"{name} is required")


def bounded_cases(spec: SettingSpec) -> list[tuple[str, bool]]:
    """Texts at and just beyond each bound of a number setting, with whether each is accepted."""
    parser = spec.parser
    assert isinstance(parser, Integer | Number)
    step = 1 if isinstance(parser, Integer) else 0.001
    cases: list[tuple[str, bool]] = []
    for bound, outside in ((parser.minimum, -step), (parser.maximum, step)):
        if bound is not None:
            cases += [(str(bound), True), (str(round(bound + outside, 3)), False)]
    return cases


def test_number_settings_accept_their_bounds_and_name_what_lies_beyond() -> None:
    numbers = [spec for spec in SETTINGS if isinstance(spec.parser, Integer | Number)]
    assert numbers
    for spec in numbers:
        cases = bounded_cases(spec)
        assert cases, f"{spec.name} has no bound"
        parser = spec.parser
        assert isinstance(parser, Integer | Number)
        beyond = f"is not between {parser.minimum} and {parser.maximum}"
        for text, accepted in cases:
            env = dict(MINIMAL, **{spec.name: text})
            if accepted:
                Settings.from_env(env)
                continue
            with pytest.raises(SettingsError) as caught:
                Settings.from_env(env)
            assert caught.value.problems == [f"{spec.name}={text!r} {beyond}"]


def _section(page: str, heading: str) -> str:
    """The text under a `## heading` of a docs page, up to the next `## ` heading."""
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    assert f"\n## {heading}\n" in text, f"docs/{page} has no '## {heading}' section"
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


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


def test_the_uploader_page_lists_its_settings_with_the_tables_defaults() -> None:
    """The uploader's settings are rows of the one table (scope uploader); docs/uploader.md shows their defaults."""
    from shared.settings_table import SETTING_TABLE, Scope, settings_markdown

    page = (ROOT / "docs" / "uploader.md").read_text(encoding="utf-8")
    documented = dict(re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]+) \|", page, flags=re.MULTILINE))
    uploader_rows = settings_markdown(Scope.UPLOADER).splitlines()[2:]
    assert len(uploader_rows) == sum(1 for spec in SETTING_TABLE if spec.scope is Scope.UPLOADER) >= 3
    for row in uploader_rows:
        name, default = re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]+) \|", row)[0]
        assert documented.get(name, "").strip() == default.strip(), name


def test_history_and_reconcile_settings() -> None:
    defaults = Settings.from_env(MINIMAL)
    assert (defaults.history_days, defaults.reconcile_mode) == (30, "report")
    chosen = Settings.from_env({**MINIMAL, "BOBO_HISTORY_DAYS": "0.5", "BOBO_RECONCILE": "apply"})
    assert (chosen.history_days, chosen.reconcile_mode) == (0.5, "apply")
    for days in ("0", "-1", "a week"):
        with pytest.raises(SettingsError, match="BOBO_HISTORY_DAYS"):
            Settings.from_env({**MINIMAL, "BOBO_HISTORY_DAYS": days})
    with pytest.raises(SettingsError, match="BOBO_RECONCILE"):
        Settings.from_env({**MINIMAL, "BOBO_RECONCILE": "sometimes"})
