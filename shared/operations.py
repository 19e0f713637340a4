"""Operator commands: `check` (the successor of the predecessor's network-testing scripts), `retry-failed`,
and a terminal progress helper for long commands.

`check` answers "can this deployment work?" one line per check, each failure with its cause and its fix;
`retry-failed` puts failed files back in incoming with their attempts reset and records who did it.
"""

from __future__ import annotations

import dataclasses
import getpass
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from azure.core.exceptions import AzureError

from shared.logcontext import brief_error
from shared.settings import Settings, SettingsError
from shared.state import FileRecord, FileState, JobKind, Outcome, RunRecord, utcnow

if TYPE_CHECKING:
    from shared.jobs import JobRun

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1  # shared.cli.EXIT_FAILED (not imported: cli imports this module lazily, keep it one-way)

# ------------------------------------------------------------------------------------- progress

_quiet_override: bool | None = None


def set_quiet(quiet: bool | None) -> None:
    """The CLI calls this with True under --json; None returns to detection (TTY and argv)."""
    global _quiet_override
    _quiet_override = quiet


@dataclass
class Progress:
    """`update(done, total)` redraws one status line on stderr, at most 10 times a second; `close()` erases it.

    Silent (every call a no-op) unless stderr is a terminal and the command is not printing JSON, so logs,
    pipes and `--json` output never see carriage returns.
    """

    label: str
    enabled: bool
    stream: TextIO
    interval: float = 0.1
    _last: float = field(default=0.0, init=False)
    _shown: bool = field(default=False, init=False)

    def __call__(self, done: int, total: int | None = None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self.interval and (total is None or done < total):
            return
        self._last = now
        text = f"{self.label}: {done}" + (f" of {total}" if total else "")
        self.stream.write(f"\r{text}\033[K")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._shown = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(label: str, *, stream: TextIO | None = None, quiet: bool | None = None) -> Progress:
    """A progress line for a long operation (paging users, draining a backlog, moving many files)."""
    stream = stream or sys.stderr
    if quiet is None:
        quiet = _quiet_override if _quiet_override is not None else "--json" in sys.argv[1:]
    enabled = not quiet and bool(getattr(stream, "isatty", lambda: False)())
    return Progress(label, enabled, stream)


# ------------------------------------------------------------------------------------- check


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
    def exit_code(self) -> int:
        return EXIT_OK if all(c.ok for c in self.checks) else EXIT_FAILED

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


def run_checks(settings: Settings, *, athoc_client: Any = None) -> CheckReport:
    """Every check, independent ones run even when another failed. `athoc_client` is for tests."""
    checks = [Check(CHECK_SETTINGS, True, _settings_summary(settings))]
    storage_ok = _check_storage(settings, checks)
    if storage_ok:
        _check_layout(settings, checks)
    else:
        checks.append(Check(CHECK_LAYOUT, False, "skipped: storage unreachable"))
    _check_athoc(settings, checks, athoc_client)
    return CheckReport(checks)


def _settings_summary(settings: Settings) -> str:
    storage = "managed identity" if settings.storage.uses_identity else "connection string"
    return (
        f"valid (AtHoc {settings.athoc.server_url} org {settings.athoc.org_code}, storage by {storage}, "
        f"time zone {settings.timezone_name})"
    )


def _check_storage(settings: Settings, checks: list[Check]) -> bool:
    from shared.report import probe_storage

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
    from shared.report import unavailable_cause

    return unavailable_cause(error).removeprefix("storage unreachable: ").removeprefix("status failed: ")


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path.rstrip('/')}"  # no query: a SAS would sit there


def _check_athoc(settings: Settings, checks: list[Check], client: Any) -> None:
    from shared.athoc_client import AtHocAuthError, AtHocClient, AtHocError

    athoc = settings.athoc
    # One retry at most and a short budget: `check` diagnoses, it does not wait out an outage.
    quick = dataclasses.replace(athoc, max_retries=min(athoc.max_retries, 1), call_budget_seconds=30.0)
    try:
        client = client or AtHocClient(quick)
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


def _auth_fix(error: Any) -> str:
    if getattr(error, "kind", "") == "tls":
        return "set ATHOC_CA_BUNDLE to the CA that signed the AtHoc certificate, or correct ATHOC_SERVER_URL's host"
    if getattr(error, "status", None) == 403:
        return "give the service account the User Manager role in the organization"
    return (
        "correct the AtHoc credentials named above (Key Vault secrets ATHOC_PASSWORD / ATHOC_CLIENT_SECRET in "
        "Azure), then run check again"
    )


def _skip_attributes(settings: Settings, checks: list[Check]) -> None:
    checks.append(Check(CHECK_DUTY, False, f"skipped: no token ({settings.athoc.duty_field} not checked)"))
    checks.append(Check(CHECK_COLLAR, False, f"skipped: no token ({settings.athoc.collar_field} not checked)"))


def _connection_detail(info: Any) -> str:
    tls = info.tls_version or "none (plain http: only for a local test server)"
    refresh = "refresh token given" if info.refresh_token else "no refresh token"
    return (
        f"token obtained for org {info.org_code} in {info.elapsed_seconds:.1f} s "
        f"(expires in {info.expires_in:.0f} s, {refresh}); TLS: {tls}; proxy: {info.proxy or 'none'}; "
        f"certificate trust: {info.verify}"
    )


def _check_attribute(client: Any, check_name: str, attribute: str, setting: str) -> Check:
    from shared.athoc_client import AtHocError

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


# ------------------------------------------------------------------------------------- retry-failed


@dataclass
class RetryResult:
    """`retry-failed`: exit non-zero when a named file was not in the failed container (nothing hidden)."""

    moved: list[dict[str, str]] = field(default_factory=list)  # {"name": failed name, "incoming": new name}
    not_found: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    operator: str = ""
    run_id: str = ""

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.not_found or self.errors else EXIT_OK

    @property
    def failure(self) -> str:
        if self.errors:
            return f"retry-failed: {self.errors[0]}"
        if self.not_found:
            return f"retry-failed: not in the failed container: {', '.join(self.not_found[:10])}"
        return ""

    def to_json(self) -> dict[str, Any]:
        return {
            "moved": len(self.moved),
            "names": [m["name"] for m in self.moved],
            "incoming_names": [m["incoming"] for m in self.moved],
            "not_found": list(self.not_found),
            "errors": list(self.errors),
            "operator": self.operator,
            "run_id": self.run_id,
        }

    def text_lines(self) -> list[str]:
        lines = [f"moved {len(self.moved)} file{'s' if len(self.moved) != 1 else ''} back to incoming"]
        lines += [f"  {m['name']}" + (f" -> {m['incoming']}" if m["incoming"] != m["name"] else "") for m in self.moved]
        lines += [f"not in the failed container: {name}" for name in self.not_found]
        lines += [f"error: {error}" for error in self.errors]
        if self.moved:
            lines.append("they are processed by the next sweep (every 5 minutes), or now: python -m shared.cli process")
        return lines


def operator_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): fall back to the environment
        return os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"


def retry_failed(runtime: Any, names: list[str] | None = None, *, operator: str | None = None) -> RetryResult:
    """Move the named failed files (all with None) back to incoming, attempts reset, and log who did it."""
    from shared.jobs import start_job  # here: `check` and the command line's start stay light

    runtime.ensure_ready()
    with start_job(JobKind.RETRY_FAILED, trigger="cli") as job:
        result = RetryResult(operator=operator or operator_name(), run_id=job.run_id)
        started = utcnow()
        settings = runtime.settings
        failed = runtime.storage.container(settings.failed_container)
        available = {b.name: b for b in failed.list_blobs() if not b.name.startswith(".")}
        wanted = sorted(available) if names is None else list(dict.fromkeys(names))
        result.not_found = [name for name in wanted if name not in available]
        records = runtime.state.failed_files()
        records |= {r.destination: r for r in list(records.values()) if r.destination}
        with progress("moving failed files to incoming") as show:
            for done, name in enumerate((n for n in wanted if n in available), start=1):
                _retry_one(runtime, available[name], records, result)
                show(done, len(wanted) - len(result.not_found))
        _record_retry(runtime, job, result, started)
        return result


def _retry_one(runtime: Any, blob: Any, records: dict[str, FileRecord], result: RetryResult) -> None:
    settings = runtime.settings
    record = _record_for(settings, blob.name, records)
    # Back under the name the exporter gave it, when the failed copy carries a collision suffix.
    preferred = record.name if record is not None else blob.name
    try:
        incoming_name, etag, size = move_to_incoming(runtime, blob, preferred)
    except (AzureError, RuntimeError) as error:
        result.errors.append(f"{blob.name}: {brief_error(error)}")
        log.error("retry-failed: could not move %s: %s", blob.name, brief_error(error))
        return
    now = utcnow()
    fresh = FileRecord(name=incoming_name, state=FileState.WAITING, attempts=0, size=size, etag=etag, first_seen=now)
    fresh.last_error = f"retried by {result.operator} at {now.isoformat()}"
    runtime.state.save_files([fresh])
    result.moved.append({"name": blob.name, "incoming": incoming_name})
    log.info("retry-failed: %s moved back to incoming as %s by %s", blob.name, incoming_name, result.operator)


def _record_for(settings: Settings, failed_name: str, records: dict[str, FileRecord]) -> FileRecord | None:
    """The record of the file now lying in failed under `failed_name` (its name may carry a suffix)."""
    destination = f"{settings.failed_container}/{failed_name}"
    match = records.get(destination)  # the caller also keys records by destination
    return match or records.get(failed_name)


def move_to_incoming(runtime: Any, blob: Any, preferred_name: str, now: datetime | None = None) -> tuple[str, str, int]:
    """Move a failed blob back to incoming with Storage.move's safety (never overwrite, verify, delete if
    unchanged, an interrupted earlier retry's copy reused). Returns (incoming name, incoming ETag, size)."""
    from shared.storage import IncomingBlob

    settings, storage = runtime.settings, runtime.storage
    props = storage.container(settings.failed_container).get_blob_client(blob.name).get_blob_properties()
    source = IncomingBlob(blob.name, props.etag, props.size, props.last_modified)
    moved = storage.move(
        source,
        settings.incoming_container,
        {"retried_from": f"{settings.failed_container}/{blob.name}"},
        now=now or utcnow(),
        source_container=settings.failed_container,
        preferred_name=preferred_name,
    )
    if not moved.source_deleted:
        log.warning("retry-failed: %s changed while it was copied; the failed copy stays too", blob.name)
    copied = storage.incoming.get_blob_client(moved.destination_name).get_blob_properties()
    return moved.destination_name, copied.etag, copied.size


def _record_retry(runtime: Any, job: JobRun, result: RetryResult, started: datetime) -> None:
    outcome = Outcome.FAILED if result.errors else Outcome.SUCCESS
    run = RunRecord(
        kind=JobKind.RETRY_FAILED,
        run_id=result.run_id,
        started_at=started,
        finished_at=utcnow(),
        outcome=outcome,
        error="; ".join(result.errors + [f"not found: {n}" for n in result.not_found])[:8000],
        trigger="cli",
        counts={
            "moved": len(result.moved),
            "operator": result.operator,
            "names": [m["name"] for m in result.moved],
            "incoming_names": [m["incoming"] for m in result.moved],
            "not_found": result.not_found,
        },
    )
    runtime.state.finish_run(run)
    job.log_summary(
        log,
        str(outcome),
        f"retry-failed by {result.operator}: {len(result.moved)} files moved back to incoming",
        failed=bool(result.errors),
        operator=result.operator,
        moved=len(result.moved),
        not_found=len(result.not_found),
    )
