"""The Bicep templates' structure, parsed with pycep: what can be checked without compiling Bicep or Azure.

Checked: every file parses; module parameters and outputs line up; every app setting the code reads is
set in infra or has a default; every role the code needs is assigned to the right principal on the right
scope; no secret is an output or a plain parameter default; basic publishing credentials are off.
Each check is a function returning problems, run on the real files and on a broken snippet.
What needs `bicep build` or a subscription (types, API versions, ARM validation) is in docs/deployment.md.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.settings import SETTINGS, STORAGE_CONNECTION
from shared.settings_table import SETTING_TABLE, Scope
from tests.infra.bicep_model import (
    MAIN,
    ROOT,
    BicepFile,
    accessor_chain,
    bicep_files,
    is_secure,
    module_output_references,
    object_keys,
    operator_of,
    parse_text,
    walk,
)
from tests.unit.test_infra_consistency import ROLES  # role definition id -> built-in role name

PROCESSOR = ROOT / "infra" / "app" / "processor.bicep"
RBAC = ROOT / "infra" / "app" / "rbac.bicep"
# The code that runs in the function app. shared/uploader* (a module or a package) runs on the BOBO
# server, with settings of its own (BOBO_UPLOAD_*) that the function app never reads.
APP_CODE = [
    ROOT / "function_app.py",
    *sorted((ROOT / "functions").rglob("*.py")),
    *(
        path
        for path in sorted((ROOT / "shared").rglob("*.py"))
        if not path.relative_to(ROOT / "shared").parts[0].startswith("uploader")
    ),
]
SETTING_NAME = re.compile(r"^(?:ATHOC|BOBO)_[A-Z0-9_]+$|^LOG_LEVEL$")
BINDING_EXPRESSION = re.compile(r"%([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)%")  # %BOBO_X%, not strftime's %H%
SECRET_WORD = re.compile(r"secret|passw(?:or)?d|key(?!_?vault)", re.IGNORECASE)  # keyVault* is no secret
SECRET_FUNCTIONS = re.compile(r"\blist[A-Z]\w*\(|\blistKeys\b|\blistSecrets\b")


# --- what the code reads -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingRead:
    name: str
    where: str
    has_default: bool  # a default in the code itself (os.environ.get(NAME, default))
    binding: bool  # a %NAME% binding expression: the host resolves it, no code default applies


def settings_read_by(paths: Iterable[Path]) -> list[SettingRead]:
    """Setting names the code reads: a call's first argument (reader.text("X"), os.environ.get("X", d),
    SettingSpec("X", ...)), an os.environ["X"] subscript, or a %X% binding expression."""
    reads: list[SettingRead] = []
    for path in paths:
        where = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                name = node.args[0].value
                if isinstance(name, str) and SETTING_NAME.match(name):
                    code_default = isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                    reads.append(SettingRead(name, where, code_default and len(node.args) > 1, False))
            elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                name = node.slice.value
                if isinstance(name, str) and SETTING_NAME.match(name):
                    reads.append(SettingRead(name, where, False, False))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                reads.extend(SettingRead(name, where, False, True) for name in BINDING_EXPRESSION.findall(node.value))
    return reads


def app_setting_names(processor: BicepFile, main: BicepFile) -> set[str]:
    """The app settings infra writes: the keys of processor.bicep's `appsettings` config resource."""
    (config,) = [
        name
        for name, resource in processor.resources.items()
        if resource["type"] == "Microsoft.Web/sites/config" and processor.resource_config(name)["name"] == "appsettings"
    ]
    return object_keys(processor, processor.resource_config(config)["properties"], {processor.path: main})


def unset_setting_problems(reads: Iterable[SettingRead], app_settings: set[str]) -> list[str]:
    defaults = {spec.name: spec.default for spec in SETTINGS}
    problems: list[str] = []
    for read in reads:
        name = read.name
        is_set = name in app_settings or any(key.startswith(f"{name}__") for key in app_settings)
        if is_set:
            continue
        if read.binding:
            problems.append(f"{read.where} binds %{name}%, which no app setting provides (the host fails to index)")
        elif not (read.has_default or defaults.get(name) is not None):
            problems.append(f"{read.where} reads {name}, which has no default and is not set in infra")
    return problems


# --- modules ---------------------------------------------------------------------------------------------


def module_problems(file: BicepFile, load: Callable[[Path], BicepFile] = BicepFile.load) -> list[str]:
    """Every module gets only parameters its file declares, every required one, and only real outputs."""
    problems: list[str] = []
    targets: dict[str, BicepFile] = {}
    for name in file.modules:
        path = file.module_file(name)
        if not path.is_file():
            problems.append(f"module {name}: {path.name} does not exist")
            continue
        target = targets[name] = load(path)
        passed = set(file.module_config(name).get("params", {}))
        for unknown in sorted(passed - set(target.parameters)):
            problems.append(f"module {name} passes {unknown}, which {path.name} does not declare")
        required = {key for key, parameter in target.parameters.items() if parameter.get("default") is None}
        for missing in sorted(required - passed):
            problems.append(f"module {name} does not pass {missing}, which {path.name} requires")
    for module, output in sorted(module_output_references(file.tree)):
        if module in targets and output not in targets[module].outputs:
            problems.append(f"{module}.outputs.{output} is used, but {targets[module].path.name} has no such output")
    return problems


# --- roles -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    principal: str  # the rbac.bicep parameter holding the principal id
    role: str
    scope_type: str
    scope_name: str  # the rbac.bicep parameter naming the scope resource


STORAGE = "Microsoft.Storage/storageAccounts"
# Who needs what, and why. The app: blobs (BOBO files, leases, host locks and the deployment package),
# queues (the blob trigger's bookkeeping and poison queue) and tables (BOBO state, timer state) on both
# accounts; telemetry with Entra ID; the two Key Vault references. The exporter writes into incoming only;
# the deployer sets the AtHoc secrets.
NEEDED_GRANTS = [
    *(
        Grant("identityPrincipalId", role, STORAGE, account)
        for account in ("hostStorageAccountName", "dataStorageAccountName")
        for role in ("Storage Blob Data Owner", "Storage Queue Data Contributor", "Storage Table Data Contributor")
    ),
    Grant(
        "identityPrincipalId",
        "Monitoring Metrics Publisher",
        "Microsoft.Insights/components",
        "applicationInsightsName",
    ),
    Grant("identityPrincipalId", "Key Vault Secrets User", "Microsoft.KeyVault/vaults", "keyVaultName"),
    Grant("deployerPrincipalId", "Key Vault Secrets Officer", "Microsoft.KeyVault/vaults", "keyVaultName"),
    Grant(
        "exporterPrincipalId",
        "Storage Blob Data Contributor",
        "Microsoft.Storage/storageAccounts/blobServices/containers",
        "incomingContainerName",
    ),
]
# What main.bicep must pass to rbac.bicep for those parameters to mean what their names say.
RBAC_WIRING = {
    "identityPrincipalId": ["identity", "outputs", "principalId"],
    "hostStorageAccountName": ["hostStorageAccountName"],
    "dataStorageAccountName": ["dataStorageAccountName"],
    "applicationInsightsName": ["monitoring", "outputs", "applicationInsightsName"],
    "keyVaultName": ["keyVault", "outputs", "name"],
    "exporterPrincipalId": ["exporterPrincipalId"],
    "incomingContainerName": ["boboSettings", "BOBO_INCOMING_CONTAINER"],
}


def role_ids_of(rbac: BicepFile, expression: object, loop: Mapping[str, object]) -> list[str]:
    """Role definition ids an expression stands for: roles.x, a loop variable over a list of them, or ?:."""
    chain = accessor_chain(expression)
    roles = rbac.variables.get("roles", {}).get("value", {})
    if chain and len(chain) == 2 and chain[0] == "roles":
        return [roles.get(chain[1], f"unknown role {chain[1]}")]
    if isinstance(expression, str) and expression in loop:
        return role_ids_of(rbac, loop[expression], {})
    if isinstance(expression, str) and expression in rbac.variables:
        return role_ids_of(rbac, rbac.variables[expression]["value"], {})
    if isinstance(expression, list):
        return [role for item in expression for role in role_ids_of(rbac, item, {})]
    operands = operator_of(expression, "conditional")
    if operands is not None:
        return role_ids_of(rbac, operands["true_value"], {}) + role_ids_of(rbac, operands["false_value"], {})
    return []


def scope_parameter(rbac: BicepFile, symbol: str) -> tuple[str, str]:
    """The resource type and the parameter naming it, for an `existing` resource used as a scope."""
    resource = rbac.resources[symbol]
    return resource["type"], rbac.resource_config(symbol)["name"]


def granted(rbac: BicepFile) -> set[Grant]:
    grants: set[Grant] = set()
    for name, resource in rbac.resources.items():
        if resource["type"] != "Microsoft.Authorization/roleAssignments":
            continue
        loop_detail = resource["config"].get("loop_type", {}).get("detail", {})
        loop = {loop_detail["item_name"]: loop_detail["array_name"]} if loop_detail else {}
        body = rbac.resource_config(name)
        scope_type, scope_name = scope_parameter(rbac, body["scope"])
        definition = body["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        for role_id in role_ids_of(rbac, definition, loop):
            role = ROLES.get(role_id, role_id)
            grants.add(Grant(body["properties"]["principalId"], role, scope_type, scope_name))
    return grants


def role_problems(rbac: BicepFile, main: BicepFile) -> list[str]:
    problems = [f"missing: {grant}" for grant in NEEDED_GRANTS if grant not in granted(rbac)]
    (module,) = [name for name in main.modules if main.module_file(name) == rbac.path]
    params = main.module_config(module)["params"]
    for parameter, expected in RBAC_WIRING.items():
        if accessor_chain(params.get(parameter)) != expected:
            problems.append(f"main.bicep passes {parameter}: {params.get(parameter)!r}, expected {'.'.join(expected)}")
    return problems


# --- secrets ---------------------------------------------------------------------------------------------


def secret_problems(file: BicepFile) -> list[str]:
    """No secret leaves through an output; secret-like parameters are @secure() with an empty default."""
    problems: list[str] = []
    secure = {name for name, parameter in file.parameters.items() if is_secure(parameter)}
    for name, parameter in file.parameters.items():
        secret_like = SECRET_WORD.search(name) and not name.endswith(("Name", "Names"))
        if secret_like and name not in secure:
            problems.append(f"parameter {name} looks like a secret but is not @secure()")
        if (name in secure or secret_like) and parameter.get("default") not in (None, ""):
            problems.append(f"parameter {name} has a default value: a secret must never have one")
    for name, output in file.outputs.items():
        if is_secure(output) or (SECRET_WORD.search(name) and not name.upper().endswith("NAME")):
            problems.append(f"output {name} looks like a secret")
        for value in walk(output.get("value")):
            if isinstance(value, str) and (value in secure or SECRET_FUNCTIONS.search(value)):
                problems.append(f"output {name} carries {value}")
            if isinstance(value, Mapping) and str(value.get("function", {}).get("type", "")).startswith("list"):
                problems.append(f"output {name} calls {value['function']['type']}()")
    return problems


def publishing_problems(processor: BicepFile) -> list[str]:
    policies = {
        processor.resource_config(name)["name"]: processor.resource_config(name)
        for name, resource in processor.resources.items()
        if resource["type"] == "Microsoft.Web/sites/basicPublishingCredentialsPolicies"
    }
    problems = []
    for endpoint in ("scm", "ftp"):
        policy = policies.get(endpoint)
        if policy is None or policy.get("properties", {}).get("allow") is not False:
            problems.append(f"basic publishing credentials for {endpoint} must be a policy with allow: false")
    return problems


# --- the real files --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def main() -> BicepFile:
    return BicepFile.load(MAIN)


@pytest.mark.parametrize("path", bicep_files(), ids=lambda path: path.name)
def test_every_bicep_file_parses(path: Path) -> None:
    tree = BicepFile.load(path).tree
    assert tree.get("resources") or tree.get("modules"), f"{path.name} declares nothing"


@pytest.mark.parametrize("path", bicep_files(), ids=lambda path: path.name)
def test_modules_parameters_and_outputs_line_up(path: Path) -> None:
    assert module_problems(BicepFile.load(path)) == []


def test_main_uses_every_module_file() -> None:
    main = BicepFile.load(MAIN)
    used = {main.module_file(name) for name in main.modules}
    assert {path.resolve() for path in bicep_files() if path != MAIN} == used


def test_every_setting_the_code_reads_is_set_or_has_a_default(main: BicepFile) -> None:
    # The uploader's own settings are declared in the same table but read on the BOBO server, not by the app.
    uploader_only = {spec.name for spec in SETTING_TABLE if spec.scope is Scope.UPLOADER}
    reads = [read for read in settings_read_by(APP_CODE) if read.name not in uploader_only]
    names = {read.name for read in reads}
    # The walk must see the settings table and the timer bindings, or it proves nothing.
    assert {"ATHOC_SERVER_URL", "BOBO_SWEEP_SCHEDULE", STORAGE_CONNECTION} <= names
    assert any(read.binding for read in reads)
    assert unset_setting_problems(reads, app_setting_names(BicepFile.load(PROCESSOR), main)) == []


def test_every_role_the_code_needs_is_assigned_on_its_scope(main: BicepFile) -> None:
    assert role_problems(BicepFile.load(RBAC), main) == []


@pytest.mark.parametrize("path", bicep_files(), ids=lambda path: path.name)
def test_no_secret_is_an_output_or_a_default(path: Path) -> None:
    assert secret_problems(BicepFile.load(path)) == []


def test_basic_publishing_credentials_are_off() -> None:
    assert publishing_problems(BicepFile.load(PROCESSOR)) == []


# --- each check can fail ---------------------------------------------------------------------------------


def snippet(text: str, name: str = "snippet.bicep") -> BicepFile:
    return BicepFile(ROOT / "infra" / name, parse_text(text))


def test_module_check_can_fail() -> None:
    main = snippet(
        "module identity 'app/identity.bicep' = {\n  name: 'identity'\n  params: {\n    nme: 'x'\n  }\n}\n"
        "module ghost 'app/ghost.bicep' = {\n  name: 'ghost'\n}\n"
        "output X string = identity.outputs.principalld\n"
    )
    problems = "\n".join(module_problems(main))
    assert "passes nme, which identity.bicep does not declare" in problems
    assert "does not pass name, which identity.bicep requires" in problems
    assert "ghost.bicep does not exist" in problems
    assert "identity.outputs.principalld is used" in problems


def test_settings_check_can_fail() -> None:
    reads = [
        SettingRead("BOBO_NEW_REQUIRED", "x.py", False, False),
        SettingRead("BOBO_NEW_WITH_DEFAULT", "x.py", True, False),
        SettingRead("BOBO_SWEEP_SCHEDULE", "x.py", False, True),
        SettingRead("ATHOC_SERVER_URL", "x.py", False, False),
        SettingRead("BOBO_STORAGE", "x.py", False, False),
        SettingRead("BOBO_IO_THREADS", "x.py", False, False),
    ]
    problems = "\n".join(unset_setting_problems(reads, {"BOBO_STORAGE__blobServiceUri"}))
    assert "reads BOBO_NEW_REQUIRED, which has no default" in problems
    assert "binds %BOBO_SWEEP_SCHEDULE%" in problems
    assert "reads ATHOC_SERVER_URL" in problems
    for fine in ("BOBO_NEW_WITH_DEFAULT", "BOBO_STORAGE", "BOBO_IO_THREADS"):
        assert fine not in problems


def test_settings_walk_finds_reads(tmp_path: Path) -> None:
    code = tmp_path / "code.py"
    code.write_text(
        "import os\nos.environ.get('BOBO_A')\nos.environ.get('BOBO_B', 'x')\nos.environ['BOBO_C']\n"
        "SCHEDULE = '%BOBO_D%'\nlen('not a setting')\n",
        encoding="utf-8",
    )
    reads = {read.name: read for read in settings_read_by([code])}
    assert set(reads) == {"BOBO_A", "BOBO_B", "BOBO_C", "BOBO_D"}
    assert reads["BOBO_B"].has_default and not reads["BOBO_A"].has_default
    assert reads["BOBO_D"].binding


def test_role_check_can_fail(main: BicepFile) -> None:
    text = RBAC.read_text(encoding="utf-8")
    wrong_scope = text.replace("scope: keyVault\n", "scope: hostStorage\n", 1)
    wrong_role = text.replace("roles.storageQueueDataContributor\n", "roles.storageBlobDataContributor\n", 1)
    assert wrong_scope != text and wrong_role != text
    scope_problems = "\n".join(role_problems(BicepFile(RBAC, parse_text(wrong_scope)), main))
    assert "Key Vault Secrets User" in scope_problems
    role_problems_text = "\n".join(role_problems(BicepFile(RBAC, parse_text(wrong_role)), main))
    assert "Storage Queue Data Contributor" in role_problems_text
    rewired = snippet("module rbac 'app/rbac.bicep' = {\n  name: 'rbac'\n  params: {\n    keyVaultName: 'kv'\n  }\n}\n")
    rewired = BicepFile(MAIN, rewired.tree)
    assert "main.bicep passes keyVaultName" in "\n".join(role_problems(BicepFile.load(RBAC), rewired))


def test_secret_check_can_fail() -> None:
    bad = snippet(
        "param athocPassword string = 'letmein'\n"
        "@secure()\nparam apiKey string = 'abc'\n"
        "param athocPasswordName string = 'athoc-password'\n"
        "resource sa 'Microsoft.Storage/storageAccounts@2024-01-01' existing = {\n  name: 'x'\n}\n"
        "output storageKey string = sa.listKeys().keys[0].value\n"
        "output echoed string = apiKey\n"
        "output ATHOC_PASSWORD_KV_NAME string = athocPasswordName\n"
    )
    problems = "\n".join(secret_problems(bad))
    assert "athocPassword looks like a secret but is not @secure()" in problems
    assert "athocPassword has a default value" in problems
    assert "apiKey has a default value" in problems
    assert "output storageKey" in problems
    assert "output echoed carries apiKey" in problems
    assert "athocPasswordName" not in problems and "ATHOC_PASSWORD_KV_NAME" not in problems


def test_publishing_check_can_fail() -> None:
    bad = snippet(
        "resource site 'Microsoft.Web/sites@2024-04-01' existing = {\n  name: 'x'\n}\n"
        "resource scm 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {\n"
        "  parent: site\n  name: 'scm'\n  properties: {\n    allow: true\n  }\n}\n"
    )
    problems = "\n".join(publishing_problems(bad))
    assert "for scm must be" in problems and "for ftp must be" in problems
