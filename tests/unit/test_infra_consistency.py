"""infra/, azure.yaml and the hooks stay in step with the code, without Azure.

Nothing here can compile Bicep or reach Azure, so the checks read the templates as text (regular
expressions) and JSON. Each check is a function that returns a list of problems; the tests run it on
the real files and on a deliberately broken snippet, so every check is shown to be able to fail.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from shared.settings import SETTING_NAMES, SETTINGS, STORAGE_CONNECTION, SettingSpec

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN_BICEP = INFRA / "main.bicep"
PROCESSOR_BICEP = INFRA / "app" / "processor.bicep"
RBAC_BICEP = INFRA / "app" / "rbac.bicep"
APP_SETTINGS_JSON = INFRA / "app" / "app-settings.json"
HOOK_DIR = INFRA / "hooks"
# What azure.yaml runs, and the files that hold the shared steps (the subscription body among them).
HOOKS = tuple(HOOK_DIR / f"{event}.{ext}" for event in ("postprovision", "postdeploy") for ext in ("sh", "ps1"))
HOOK_LIBRARIES = (HOOK_DIR / "common.sh", HOOK_DIR / "common.ps1")
AZURE_YAML = ROOT / "azure.yaml"
MAIN_PARAMETERS = INFRA / "main.parameters.json"

# The function the Event Grid subscription delivers to (the blob extension webhook's functionName).
EVENT_GRID_FUNCTION = "ingest_csv"

# Settings infra leaves unset on purpose, each with its reason.
OPTIONAL = {
    "ATHOC_CA_BUNDLE": "needed only when AtHoc's certificate comes from a private CA; then ship the PEM file in the "
    "package and set the setting through appSettingOverrides (an empty value means the system trust store)",
}
# Secrets: Key Vault references, never a value.
KEY_VAULT_SETTINGS = frozenset({"ATHOC_CLIENT_SECRET", "ATHOC_PASSWORD"})
# Connections that must be identity-based in Azure (shared-key access is off on both storage accounts).
IDENTITY_CONNECTIONS = (STORAGE_CONNECTION, "AzureWebJobsStorage")
IDENTITY_SUFFIXES = ("blobServiceUri", "queueServiceUri", "tableServiceUri", "credential", "clientId")
# App settings the Flex Consumption plan rejects or ignores (runtime and content share are in functionAppConfig).
FLEX_UNSUPPORTED = (
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_TIME_ZONE",
    "AzureWebJobsStorage",
)
# Built-in role definitions the deployment assigns (the same ids in every tenant).
ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
}
# Values azd itself puts in the environment of hooks (not outputs of main.bicep).
AZD_PROVIDED = frozenset({"AZURE_ENV_NAME", "AZURE_LOCATION", "AZURE_SUBSCRIPTION_ID", "AZURE_PRINCIPAL_ID"})
# The hooks' poll counts and intervals, overridable for the offline hook tests (tests/infra).
HOOK_TUNING_PREFIX = "BOBO_HOOK_"
# shared/state.py is the source; this literal is the contract's list for a checkout where it is missing.
FALLBACK_TABLE_SUFFIXES = ("files", "watermarks", "mappings", "runs", "jobstatus")

GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
BICEP_SETTING = re.compile(r"^[ \t]*([A-Z][A-Za-z0-9_]*)[ \t]*:[ \t]*(.+?)[ \t]*$", re.MULTILINE)
AZD_SUBSTITUTION = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*=?\}")  # ${NAME} or ${NAME=} (empty default)
SECRET_NAME = re.compile(r"secret|passw(?:or)?d|key(?!_?vault)", re.IGNORECASE)  # keyVault* names are not secrets
SECRET_MATERIAL = re.compile(r"AccountKey=|SharedAccessSignature=|[?&]sig=|-----BEGIN", re.IGNORECASE)


# --- readers ---------------------------------------------------------------------------------------------


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def strip_bicep_comment(value: str) -> str:
    """The value of a `KEY: value // comment` line, without the comment (a `//` inside quotes stays)."""
    if value.startswith("'"):
        match = re.match(r"'(?:[^'\\]|\\.)*'", value)
        return match.group(0) if match else value
    return value.split(" //", 1)[0].strip()


def bicep_settings(text: str) -> dict[str, str]:
    """App-setting-like `KEY: value` pairs (keys starting with a capital letter), values as written."""
    return {key: strip_bicep_comment(value) for key, value in BICEP_SETTING.findall(text)}


def bicep_literal(value: str) -> str | None:
    """The string a single-quoted Bicep literal without interpolation stands for, else None."""
    if len(value) >= 2 and value[0] == value[-1] == "'" and "${" not in value:
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return None


def bicep_array(text: str, var_name: str) -> list[str]:
    """Items of `var NAME = [ ... ]` (one item per line, as Bicep formats multi-line arrays)."""
    match = re.search(rf"^var {re.escape(var_name)} = \[(.*?)^\]", text, re.MULTILINE | re.DOTALL)
    if not match:
        return []
    return [line.strip() for line in match.group(1).splitlines() if line.strip() and not line.strip().startswith("//")]


def bicep_outputs(text: str) -> set[str]:
    return set(re.findall(r"^output ([A-Za-z_][A-Za-z0-9_]*) ", text, re.MULTILINE))


def table_suffixes() -> tuple[str, ...]:
    try:
        from shared.state import TABLE_SUFFIXES
    except ImportError:
        return FALLBACK_TABLE_SUFFIXES
    return tuple(TABLE_SUFFIXES)


# --- checks: each returns a list of problems -------------------------------------------------------------


def settings_problems(specs: Sequence[SettingSpec], defaults: Mapping[str, str], processor_text: str) -> list[str]:
    """Every setting of the code is set in infra with its default, a parameter, or a Key Vault reference."""
    problems: list[str] = []
    bicep = bicep_settings(processor_text)
    names = {spec.name for spec in specs}
    for spec in specs:
        name = spec.name
        if name in OPTIONAL:
            continue
        if name == STORAGE_CONNECTION:
            continue  # identity-based below
        if spec.default is None:
            value = bicep.get(name)
            if value is None:
                problems.append(f"{name} (required) is not set in {PROCESSOR_BICEP.name}")
            elif name in KEY_VAULT_SETTINGS:
                if not value.startswith("'@Microsoft.KeyVault("):
                    problems.append(f"{name} must be a Key Vault reference, not {value}")
            elif not re.fullmatch(r"[a-z][A-Za-z0-9_]*", value):
                problems.append(f"{name} must come from a parameter, not a literal: {value}")
            continue
        if name not in defaults:
            problems.append(f"{name} is missing from {APP_SETTINGS_JSON.name} (default {spec.default!r})")
        elif defaults[name] != spec.default:
            problems.append(
                f"{name} is {defaults[name]!r} in {APP_SETTINGS_JSON.name}, the code's default is {spec.default!r}"
            )
        if name in bicep and bicep_literal(bicep[name]) != spec.default:
            problems.append(f"{name} is overridden in {PROCESSOR_BICEP.name} with {bicep[name]}")
    for connection in IDENTITY_CONNECTIONS:
        if connection in bicep or connection in defaults:
            problems.append(f"{connection} must be identity-based ({connection}__*), not a connection string")
        for suffix in IDENTITY_SUFFIXES:
            if f"{connection}__{suffix}" not in bicep:
                problems.append(f"{connection}__{suffix} is not set")
        credential = bicep.get(f"{connection}__credential")
        if credential is not None and bicep_literal(credential) != "managedidentity":
            problems.append(f"{connection}__credential must be 'managedidentity', not {credential}")
    if bicep_literal(bicep.get("BOBO_BLOB_TRIGGER_SOURCE", "")) != "EventGrid":
        problems.append("BOBO_BLOB_TRIGGER_SOURCE must be 'EventGrid' in Azure (the only blob source on Flex)")
    known_identity = {f"{STORAGE_CONNECTION}__{suffix}" for suffix in IDENTITY_SUFFIXES}
    for key in sorted(set(defaults) | {k for k in bicep if k.startswith(("ATHOC_", "BOBO_"))}):
        if key not in names and key not in known_identity:
            problems.append(f"{key} is set in infra but the code has no such setting (typo?)")
    for key in FLEX_UNSUPPORTED:
        if key in bicep or key in defaults:
            problems.append(f"{key} must not be an app setting on Flex Consumption")
    return problems


def storage_problems(main_text: str, defaults: Mapping[str, str], suffixes: Iterable[str]) -> list[str]:
    """The containers and tables infra creates are the ones the code uses."""
    problems: list[str] = []
    container_settings = sorted(spec.name for spec in SETTINGS if spec.name.endswith("_CONTAINER"))
    referenced = sorted(
        m.group(1)
        for item in bicep_array(main_text, "boboContainerNames")
        if (m := re.fullmatch(r"boboSettings\.(\w+)", item))
    )
    if referenced != container_settings:
        problems.append(f"boboContainerNames creates {referenced}, the code's containers are {container_settings}")
    infra_suffixes = [bicep_literal(item) for item in bicep_array(main_text, "boboTableSuffixes")]
    if infra_suffixes != list(suffixes):
        problems.append(f"boboTableSuffixes is {infra_suffixes}, shared.state.TABLE_SUFFIXES is {list(suffixes)}")
    if not re.search(r"'\$\{boboSettings\.BOBO_TABLE_PREFIX\}\$\{suffix\}'", main_text):
        problems.append("table names must be BOBO_TABLE_PREFIX + suffix, as the code builds them")
    prefix = defaults.get("BOBO_TABLE_PREFIX", "")
    for suffix in suffixes:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,62}", prefix + suffix):
            problems.append(f"table name {prefix + suffix!r} is not a valid Azure table name")
    return problems


def hook_problems(text: str, known_variables: set[str]) -> list[str]:
    """A hook library subscribes the right function, with the contract's filter, from known azd values."""
    problems: list[str] = []
    targets = set(re.findall(r"functionName=Host\.Functions\.(\w+)", text))
    if targets != {EVENT_GRID_FUNCTION}:
        problems.append(f"the webhook targets {sorted(targets)}, expected only {EVENT_GRID_FUNCTION}")
    if "/runtime/webhooks/blobs?" not in text or "blobs_extension" not in text:
        problems.append("the endpoint must be the blob extension webhook with the blobs_extension key")
    for required in ("Microsoft.Storage.BlobCreated", "/blobServices/default/containers/"):
        if required not in text:
            problems.append(f"the subscription filter lacks {required}")
    # An API list always misses one (SFTP uploads, a new copy API): a blob it misses waits for the sweep.
    if "advancedFilters" in text or "data.api" in text:
        problems.append("the subscription must not filter on data.api: every API that completes a blob counts")
    problems.extend(hook_variable_problems(text, known_variables))
    return problems


def hook_variable_problems(text: str, known_variables: set[str]) -> list[str]:
    """Every AZURE_/BOBO_/ATHOC_ name a hook reads is set by azd: its own, an output or a parameter's value."""
    names = set(re.findall(r"\b(?:AZURE|BOBO|ATHOC)_[A-Z0-9_]+\b", text)) - AZD_PROVIDED
    return [
        f"the hook reads {name}, which azd does not set (not an output of main.bicep nor a parameter value)"
        for name in sorted(names)
        if name not in known_variables and not name.startswith(HOOK_TUNING_PREFIX)
    ]


def azd_variables(main_text: str, parameters_text: str) -> set[str]:
    """main.bicep outputs plus the azd environment values main.parameters.json substitutes (${NAME})."""
    return bicep_outputs(main_text) | set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", parameters_text))


def parameter_file_problems(text: str) -> list[str]:
    """No plain-text secret: *secret*/*password*/*key* values are empty, azd substitutions or Key Vault references."""
    problems: list[str] = []
    parameters = json.loads(text).get("parameters", {})

    def visit(path: str, name: str, value: Any) -> None:
        if isinstance(value, Mapping):
            if "reference" in value and "keyVault" in value["reference"]:
                return  # a Key Vault reference resolved by ARM
            for key, child in value.items():
                visit(f"{path}.{key}", key if key != "value" else name, child)
        elif isinstance(value, list):
            for index, child in enumerate(value):
                visit(f"{path}[{index}]", name, child)
        elif isinstance(value, str):
            if SECRET_MATERIAL.search(value):
                problems.append(f"{path} holds key or SAS material")
            elif SECRET_NAME.search(name) and value and not AZD_SUBSTITUTION.fullmatch(value):
                problems.append(
                    f"{path} looks like a secret in plain text (use an empty azd substitution like ${{NAME=}})"
                )

    for name, parameter in parameters.items():
        visit(name, name, parameter)
        overrides = parameter.get("value") if name == "appSettingOverrides" and isinstance(parameter, Mapping) else None
        for key in overrides or {}:
            if key not in SETTING_NAMES:
                problems.append(f"appSettingOverrides.{key}: the code has no such setting")
    return problems


def role_problems(text: str) -> list[str]:
    """Every role this deployment needs is assigned by id, and every role id is named in a comment on its line."""
    problems: list[str] = []
    for guid, role in ROLES.items():
        if guid not in text:
            problems.append(f"role {role} ({guid}) is not in {RBAC_BICEP.name}")
    for line in text.splitlines():
        for guid in GUID.findall(line):
            role = ROLES.get(guid.lower())
            comment = line.split("//", 1)[1] if "//" in line else ""
            if role is None:
                problems.append(f"unknown role id {guid}: add it to ROLES in this test with its name")
            elif role.lower() not in comment.lower():
                problems.append(f"role id {guid} has no comment naming '{role}'")
    return problems


# --- the real files --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def defaults() -> dict[str, str]:
    return json.loads(read(APP_SETTINGS_JSON))


def test_every_setting_is_set_in_infra(defaults: dict[str, str]) -> None:
    assert settings_problems(SETTINGS, defaults, read(PROCESSOR_BICEP)) == []


def test_optional_settings_are_real_settings_with_a_reason() -> None:
    for name, reason in OPTIONAL.items():
        assert name in SETTING_NAMES, f"OPTIONAL lists {name}, which the code no longer has"
        assert len(reason) > 20


def test_containers_and_tables_match_the_code(defaults: dict[str, str]) -> None:
    assert storage_problems(read(MAIN_BICEP), defaults, table_suffixes()) == []


def test_main_bicep_loads_the_checked_defaults() -> None:
    main = read(MAIN_BICEP)
    assert "loadJsonContent('./app/app-settings.json')" in main
    assert "union(boboSettings, requiredSettings, platformSettings)" in read(PROCESSOR_BICEP)


@pytest.mark.parametrize("library", HOOK_LIBRARIES, ids=lambda path: path.name)
def test_hooks_subscribe_ingest_csv(library: Path) -> None:
    assert hook_problems(read(library), azd_variables(read(MAIN_BICEP), read(MAIN_PARAMETERS))) == []


@pytest.mark.parametrize("hook", HOOKS, ids=lambda path: path.name)
def test_hooks_use_the_shared_steps_and_known_variables(hook: Path) -> None:
    text = read(hook)
    assert "common." in text, f"{hook.name} does not load the shared steps"
    assert hook_variable_problems(text, azd_variables(read(MAIN_BICEP), read(MAIN_PARAMETERS))) == []


def test_azure_yaml_runs_the_hooks_and_deploys_the_tagged_app() -> None:
    text = read(AZURE_YAML)
    for hook in HOOKS:
        assert f"run: ./{hook.relative_to(ROOT).as_posix()}" in text
    service = re.search(r"^services:\n  ([\w-]+):", text, re.MULTILINE)
    assert service, "azure.yaml declares no service"
    assert f"param serviceName string = '{service.group(1)}'" in read(PROCESSOR_BICEP), "azd-service-name tag differs"
    assert re.search(r"^\s+host: function$", text, re.MULTILINE)


def test_event_grid_target_exists_in_the_indexed_app(monkeypatch: pytest.MonkeyPatch) -> None:
    if not (ROOT / "function_app.py").is_file():
        pytest.skip("function_app.py is not written yet: cannot check that the Event Grid target ingest_csv exists")
    monkeypatch.setenv("BOBO_BLOB_TRIGGER_SOURCE", "EventGrid")  # as in Azure (infra sets it)
    for module in ("function_app", "functions.ingest", "functions.maintenance", "functions.http"):
        sys.modules.pop(module, None)
    functions = {
        f.get_function_name(): f.get_dict_repr() for f in importlib.import_module("function_app").app.get_functions()
    }
    assert EVENT_GRID_FUNCTION in functions, f"the hooks target {EVENT_GRID_FUNCTION}, the app has {sorted(functions)}"
    trigger = next(b for b in functions[EVENT_GRID_FUNCTION]["bindings"] if b["type"].endswith("Trigger"))
    # The blobs webhook dispatches only to a blob trigger whose source is Event Grid.
    assert trigger["type"] == "blobTrigger"
    assert trigger.get("source") == "EventGrid"
    assert trigger["connection"] == STORAGE_CONNECTION
    assert trigger["path"] == "%BOBO_INCOMING_CONTAINER%/{name}"
    # The hooks wake the app through the health route.
    health = next((b for b in functions.get("health", {}).get("bindings", []) if b["type"] == "httpTrigger"), None)
    assert health is not None and health.get("route") == "health"
    assert all("/api/health" in read(hook) for hook in HOOKS if hook.stem == "postdeploy")


@pytest.mark.parametrize("path", sorted(INFRA.rglob("*.parameters.json")), ids=lambda path: path.name)
def test_no_plain_text_secret_in_parameter_files(path: Path) -> None:
    assert parameter_file_problems(read(path)) == []


def test_parameter_files_exist() -> None:
    assert sorted(INFRA.rglob("*.parameters.json")), "infra/main.parameters.json is missing"


def test_no_key_or_sas_material_anywhere_in_infra() -> None:
    for path in sorted(INFRA.rglob("*")):
        if path.is_file():
            assert not SECRET_MATERIAL.search(read(path)), f"{path.relative_to(ROOT)} holds key or SAS material"


def test_role_ids_are_present_and_commented() -> None:
    assert role_problems(read(RBAC_BICEP)) == []


# --- each check can fail ---------------------------------------------------------------------------------

BAD_PROCESSOR = """
var requiredSettings = {
  ATHOC_SERVER_URL: 'https://alerts.example.com'
  ATHOC_CLIENT_SECRET: 'hunter2'
  ATHOC_PASSWORD: '@Microsoft.KeyVault(SecretUri=${vaultUri}secrets/athoc-password/)'
}
var platformSettings = {
  AzureWebJobsStorage: 'DefaultEndpointsProtocol=https;AccountName=x'
  BOBO_STORAGE__blobServiceUri: dataBlob
  BOBO_STORAGE__credential: 'accountkey'
  BOBO_BLOB_TRIGGER_SOURCE: 'LogsAndContainerScan'
  BOBO_SWEEP_SCHEDUEL: '0 */5 * * * *'
  FUNCTIONS_WORKER_RUNTIME: 'python'
}
"""


def test_settings_check_can_fail(defaults: dict[str, str]) -> None:
    wrong_defaults = {**defaults, "BOBO_MAX_RETRY_ATTEMPTS": "9"}
    del wrong_defaults["LOG_LEVEL"]
    problems = "\n".join(settings_problems(SETTINGS, wrong_defaults, BAD_PROCESSOR))
    for expected in (
        "ATHOC_SERVER_URL must come from a parameter",
        "ATHOC_CLIENT_SECRET must be a Key Vault reference",
        "ATHOC_ORG_CODE (required) is not set",
        "BOBO_MAX_RETRY_ATTEMPTS is '9'",
        "LOG_LEVEL is missing",
        "AzureWebJobsStorage must be identity-based",
        "BOBO_STORAGE__tableServiceUri is not set",
        "BOBO_STORAGE__credential must be 'managedidentity'",
        "BOBO_BLOB_TRIGGER_SOURCE must be 'EventGrid'",
        "BOBO_SWEEP_SCHEDUEL is set in infra but the code has no such setting",
        "FUNCTIONS_WORKER_RUNTIME must not be an app setting",
    ):
        assert expected in problems


def test_storage_check_can_fail(defaults: dict[str, str]) -> None:
    bad_main = """
var boboContainerNames = [
  boboSettings.BOBO_INCOMING_CONTAINER
  boboSettings.BOBO_FAILED_CONTAINER
]
var boboTableSuffixes = [
  'files'
  'runs'
]
var boboTableNames = [for suffix in boboTableSuffixes: 'bobo${suffix}']
"""
    problems = "\n".join(storage_problems(bad_main, defaults, table_suffixes()))
    assert "boboContainerNames creates" in problems
    assert "boboTableSuffixes is ['files', 'runs']" in problems
    assert "BOBO_TABLE_PREFIX + suffix" in problems


def test_hook_check_can_fail() -> None:
    bad_hook = (
        'url="https://$AZURE_FUNCTION_APP_HOSTNAME/runtime/webhooks/blobs?functionName=Host.Functions.ingest&code=$k"'
    )
    bad_hook += '\n"advancedFilters": [{"key": "data.api", "values": ["PutBlob"]}] sleep "$BOBO_HOOK_KEY_TRIES"'
    problems = "\n".join(hook_problems(bad_hook, {"AZURE_RESOURCE_GROUP"}))
    assert "the webhook targets ['ingest']" in problems
    assert "blobs_extension key" in problems
    assert "lacks Microsoft.Storage.BlobCreated" in problems
    assert "must not filter on data.api" in problems
    assert "reads AZURE_FUNCTION_APP_HOSTNAME, which azd does not set" in problems
    assert "BOBO_HOOK_KEY_TRIES" not in problems


def test_parameter_file_check_can_fail() -> None:
    bad = {
        "parameters": {
            "athocClientSecret": {"value": "hunter2"},
            "athocPassword": {"value": "${ATHOC_PASSWORD=letmein}"},
            "storageKey": {"value": "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=abc=="},
            "appSettingOverrides": {"value": {"ATHOC_PASSWORD": "plain", "BOBO_NOT_A_SETTING": "1"}},
            "fine": {"value": "${ATHOC_CLIENT_SECRET=}"},
            "keyVaultPurgeProtection": {"value": "${BOBO_KEYVAULT_PURGE_PROTECTION=false}"},
            "fromVault": {"reference": {"keyVault": {"id": "/subscriptions/x"}, "secretName": "s"}},
        }
    }
    problems = "\n".join(parameter_file_problems(json.dumps(bad)))
    assert "athocClientSecret.value looks like a secret" in problems
    assert "athocPassword.value looks like a secret" in problems
    assert "storageKey.value holds key or SAS material" in problems
    assert "appSettingOverrides.value.ATHOC_PASSWORD looks like a secret" in problems
    assert "appSettingOverrides.BOBO_NOT_A_SETTING" in problems
    for allowed in ("fine", "fromVault", "keyVaultPurgeProtection"):
        assert allowed not in problems


def test_role_check_can_fail() -> None:
    bad = (
        "var roles = {\n"
        "  owner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'\n"
        "  queue: '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Table Data Contributor\n"
        "  odd: '00000000-0000-0000-0000-000000000001' // Mystery\n"
        "}\n"
    )
    problems = "\n".join(role_problems(bad))
    assert "b7e6dc6d-f1e8-4753-8033-0f276bb0955b has no comment naming 'Storage Blob Data Owner'" in problems
    assert "974c5e8b-45b9-4653-ba55-5f855dd0fb88 has no comment naming 'Storage Queue Data Contributor'" in problems
    assert "unknown role id 00000000-0000-0000-0000-000000000001" in problems
    assert "Key Vault Secrets User (4633458b-17de-408a-b874-0445c86b69e6) is not in" in problems
