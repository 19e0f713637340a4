"""`check` (the successor of the predecessor's network-testing scripts): "can this deployment work?",
one line per check, each failure with its cause and its fix. Independent checks run even when another failed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.errors import ErrorKind, ExitCode
from shared.settings import Settings, SettingsError

if TYPE_CHECKING:
    from shared.athoc import AtHocAuthError, AtHocClient, ConnectionInfo


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass
class CheckReport:
    """`check`: exit non-zero when any check fails; the last stderr line names the first failure."""

    checks: list[Check]

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if all(c.ok for c in self.checks) else ExitCode.FAILED

    @property
    def failure(self) -> str:
        first = next((c for c in self.checks if not c.ok), None)
        return f"check failed: {first.name}: {first.detail}" if first else ""

    def to_json(self) -> dict[str, Any]:
        return {"checks": [c.to_json() for c in self.checks]}

    def text_lines(self) -> list[str]:
        lines = [f"{'ok  ' if c.ok else 'FAIL'}  {c.name}: {c.detail}" for c in self.checks]
        failed = sum(1 for c in self.checks if not c.ok)
        lines.append("all checks passed" if not failed else f"{failed} of {len(self.checks)} checks failed")
        return lines


CHECK_SETTINGS = "settings"
CHECK_STORAGE = "storage reachable"
CHECK_LAYOUT = "containers and tables"
CHECK_TOKEN = "AtHoc token"  # noqa: S105 - a check name, not a secret
CHECK_DUTY = "duty attribute"
CHECK_COLLAR = "collar attribute"
ALL_CHECKS = (CHECK_SETTINGS, CHECK_STORAGE, CHECK_LAYOUT, CHECK_TOKEN, CHECK_DUTY, CHECK_COLLAR)

FIX_SETTINGS = "set them in the app settings (Azure) or local.settings.json / the environment (command line)"
FIX_STORAGE = (
    "check BOBO_STORAGE (connection string or BOBO_STORAGE__* identity settings), the storage firewall and, "
    "with a managed identity, its Storage Blob Data Owner and Storage Table Data Contributor roles"
)


def _fixed(cause: str, fix: str) -> str:
    return f"{cause}; fix: {fix}"


def settings_failure_result(error: SettingsError) -> CheckReport:
    """`check` with settings that do not validate: the first check fails naming each bad setting."""
    checks = [Check(CHECK_SETTINGS, False, _fixed(str(error), FIX_SETTINGS))]
    checks += [Check(name, False, "skipped: settings invalid") for name in ALL_CHECKS[1:]]
    return CheckReport(checks)


def run_checks(settings: Settings) -> CheckReport:
    """Every check, independent ones run even when another failed."""
    checks = [Check(CHECK_SETTINGS, True, _settings_summary(settings))]
    storage_ok = _check_storage(settings, checks)
    if storage_ok:
        _check_layout(settings, checks)
    else:
        checks.append(Check(CHECK_LAYOUT, False, "skipped: storage unreachable"))
    _check_athoc(settings, checks)
    return CheckReport(checks)


def _settings_summary(settings: Settings) -> str:
    storage = "managed identity" if settings.storage.uses_identity else "connection string"
    return (
        f"valid (AtHoc {settings.athoc.server_url} org {settings.athoc.org_code}, storage by {storage}, "
        f"time zone {settings.timezone_name})"
    )


def _check_storage(settings: Settings, checks: list[Check]) -> bool:
    from shared.storage import probe_storage

    try:
        blob_url, table_url = probe_storage(settings)
    except Exception as error:  # any failure here is "cannot use storage"; the cause is what matters
        checks.append(Check(CHECK_STORAGE, False, _fixed(_storage_cause(error), FIX_STORAGE)))
        return False
    checks.append(Check(CHECK_STORAGE, True, f"blob {_host(blob_url)}, table {_host(table_url)}"))
    return True


def _check_layout(settings: Settings, checks: list[Check]) -> None:
    from shared.state import TABLE_SUFFIXES, StateStore
    from shared.storage import Storage

    try:
        created = Storage(settings).ensure_containers() + StateStore(settings).ensure_tables()
    except Exception as error:
        cause = f"could not create the containers and tables: {_storage_cause(error)}"
        checks.append(Check(CHECK_LAYOUT, False, _fixed(cause, FIX_STORAGE)))
        return
    present = f"{len(settings.containers)} containers and {len(TABLE_SUFFIXES)} tables present"
    checks.append(Check(CHECK_LAYOUT, True, present + (f" (created now: {', '.join(created)})" if created else "")))


def _storage_cause(error: BaseException) -> str:
    from shared.status_page import unavailable_cause

    return unavailable_cause(error).removeprefix("storage unreachable: ").removeprefix("status failed: ")


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path.rstrip('/')}"  # no query: a SAS would sit there


def _check_athoc(settings: Settings, checks: list[Check]) -> None:
    from shared.athoc import AtHocAuthError, AtHocClient, AtHocError

    athoc = settings.athoc
    # One retry at most and a short budget: `check` diagnoses, it does not wait out an outage.
    quick = dataclasses.replace(athoc, max_retries=min(athoc.max_retries, 1), call_budget_seconds=30.0)
    try:
        client = AtHocClient(quick)
        info = client.check_connection()
    except AtHocAuthError as error:
        checks.append(Check(CHECK_TOKEN, False, _fixed(str(error), _auth_fix(error))))
        _skip_attributes(settings, checks)
        return
    except AtHocError as error:
        fix = (
            "check ATHOC_SERVER_URL, DNS and the outbound firewall; behind a proxy set HTTPS_PROXY "
            "(and NO_PROXY for local addresses); if AtHoc is down, files wait and are retried"
        )
        checks.append(Check(CHECK_TOKEN, False, _fixed(f"cannot reach AtHoc: {error}", fix)))
        _skip_attributes(settings, checks)
        return
    checks.append(Check(CHECK_TOKEN, True, _connection_detail(info)))
    for check_name, attribute, setting in (
        (CHECK_DUTY, athoc.duty_field, "ATHOC_DUTY_FIELD"),
        (CHECK_COLLAR, athoc.collar_field, "ATHOC_COLLAR_FIELD"),
    ):
        checks.append(_check_attribute(client, check_name, attribute, setting))


def _auth_fix(error: AtHocAuthError) -> str:
    if error.kind is ErrorKind.TLS:
        return "set ATHOC_CA_BUNDLE to the CA that signed the AtHoc certificate, or correct ATHOC_SERVER_URL's host"
    if error.status == 403:
        return "give the service account the User Manager role in the organization"
    return (
        "correct the AtHoc credentials named above (Key Vault secrets ATHOC_PASSWORD / ATHOC_CLIENT_SECRET in "
        "Azure), then run check again"
    )


def _skip_attributes(settings: Settings, checks: list[Check]) -> None:
    checks.append(Check(CHECK_DUTY, False, f"skipped: no token ({settings.athoc.duty_field} not checked)"))
    checks.append(Check(CHECK_COLLAR, False, f"skipped: no token ({settings.athoc.collar_field} not checked)"))


def _connection_detail(info: ConnectionInfo) -> str:
    tls = info.tls_version or "none (plain http: only for a local test server)"
    refresh = "refresh token given" if info.refresh_token else "no refresh token"
    return (
        f"token obtained for org {info.org_code} in {info.elapsed_seconds:.1f} s "
        f"(expires in {info.expires_in:.0f} s, {refresh}); TLS: {tls}; proxy: {info.proxy or 'none'}; "
        f"certificate trust: {info.verify}"
    )


def _check_attribute(client: AtHocClient, check_name: str, attribute: str, setting: str) -> Check:
    from shared.athoc import AtHocError

    try:
        result = client.attribute_readable(attribute)
    except AtHocError as error:
        return Check(check_name, False, _fixed(f"{attribute}: search failed: {error}", "run check again; see AtHoc"))
    if result.readable:
        return Check(check_name, True, f"{attribute} exists and is readable")
    fix = (
        f"set {setting} to the attribute's common name as AtHoc shows it, or ask the AtHoc administrator to "
        "create it and let the service account read it"
    )
    return Check(check_name, False, _fixed(f"{attribute} is not readable: {result.detail}", fix))
