"""OpenTelemetry for the functions and the command line (docs/operations.md).

`configure()` runs once per process. Without APPLICATIONINSIGHTS_CONNECTION_STRING it does nothing and
imports nothing of the exporter: the spans and instruments below then belong to OpenTelemetry's no-op
API providers and cost next to nothing. With it, the Azure Monitor distro exports traces, logs and
metrics, signing in with the managed identity that APPLICATIONINSIGHTS_AUTHENTICATION_STRING names
(`Authorization=AAD;ClientId=...`, read by the exporter; local auth is off on the component). When the
Functions Python worker has configured the distro already (PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true,
the documented Flex Consumption setup) its providers are used as they are: nothing is exported twice.

What the app itself reports:
- one span per job run (`run_span`, opened by shared.jobs.start_job) with run_id, job_kind, trigger and
  the run's counts;
- one CLIENT span per AtHoc HTTP attempt (`athoc_dependency`): Application Insights shows it as a
  dependency whose target is the AtHoc host; never a body, a query string, a token or a secret;
- `bobo.` metrics: files, rows and users counted at the end of each run, the AtHoc call duration, and
  the incoming backlog as observable gauges read from the last process run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation

log = logging.getLogger(__name__)

CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
SERVICE_NAME = "bobo-sync"
# The exporter's HTTP timeouts (seconds): an unreachable or silent endpoint costs at most this per export,
# and the command line's exit waits SHUTDOWN_BUDGET_SECONDS at most in all: an unreachable endpoint may add
# at most 15 s to a run.
EXPORT_TIMEOUT_SECONDS = 5.0
SHUTDOWN_BUDGET_SECONDS = 8.0
# The requests/urllib instrumentations would record AtHoc's full URLs; athoc_dependency reports those
# calls itself, path only.
DISABLED_INSTRUMENTATIONS = ("requests", "urllib", "urllib3", "django", "fastapi", "flask", "psycopg2", "httpx")

_tracer = trace.get_tracer("shared")
_meter = metrics.get_meter("shared")

# The run counts that become counters: count name in shared.jobs -> metric name.
COUNTED = {
    "files_seen": "bobo.files.seen",  # "files in": a file waiting for a retry is seen again by the next run
    "files_processed": "bobo.files.processed",
    "files_failed": "bobo.files.failed",
    "files_retry": "bobo.files.retried",
    "rows_read": "bobo.rows.read",
    "rows_rejected": "bobo.rows.rejected",
    "users_updated": "bobo.users.updated",
    "users_not_found": "bobo.users.not_found",
    "users_denied": "bobo.users.denied",
}
_counters = {name: _meter.create_counter(metric, unit="1") for name, metric in COUNTED.items()}
ATHOC_DURATION = "bobo.athoc.call.duration"
_athoc_duration = _meter.create_histogram(ATHOC_DURATION, unit="s", description="One AtHoc HTTP attempt")


class _Backlog:
    """What the last process run found still waiting in incoming, for the observable gauges."""

    def __init__(self) -> None:
        self.files_pending: int | None = None
        self.oldest_pending_seconds: float = 0.0

    def pending(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [] if self.files_pending is None else [metrics.Observation(self.files_pending)]

    def oldest(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [] if self.files_pending is None else [metrics.Observation(self.oldest_pending_seconds)]


_backlog = _Backlog()
_meter.create_observable_gauge("bobo.files.pending", [_backlog.pending], unit="1")
_meter.create_observable_gauge("bobo.files.oldest_pending_age", [_backlog.oldest], unit="s")


# --- process setup ------------------------------------------------------------------------------------

_configured: str | None = None  # None: not yet; else how: "off", "distro", "worker"
_configure_lock = threading.Lock()


def configure(env: Mapping[str, str] | None = None) -> str:
    """Export to Application Insights when its connection string is set; once per process.

    Returns how telemetry runs: "off" (no connection string), "worker" (the Functions worker configured
    the distro already) or "distro" (configured here). Never raises: telemetry must not stop a run.
    """
    global _configured
    with _configure_lock:
        if _configured is None or _configured == "off":  # "off" is looked at again: a later caller may set it
            _configured = _configure_once(os.environ if env is None else env)
        return _configured


def _configure_once(env: Mapping[str, str]) -> str:
    connection_string = env.get(CONNECTION_STRING, "").strip()
    if not connection_string:
        return "off"
    if _sdk_already_installed():
        _keep_exporter_logs_local()
        return "worker"
    try:
        from azure.monitor.opentelemetry import configure_azure_monitor

        # Before the distro starts: its instrumentations read this when they are loaded.
        os.environ.setdefault("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", ",".join(DISABLED_INSTRUMENTATIONS))
        # The SDK's statistics about itself (to Microsoft, and to our own component) run their own meter
        # providers with azure-core's default 300 s read timeout, and the process's exit waits up to 30 s on
        # each when an endpoint is silent (measured, bench/telemetry.py). Set "false" to have them anyway.
        os.environ.setdefault("APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL", "true")
        os.environ.setdefault("APPLICATIONINSIGHTS_SDKSTATS_DISABLED", "true")
        configure_azure_monitor(
            connection_string=connection_string,
            logger_name="",  # the root logger: every app record, with its run_id and extra fields
            sampling_ratio=1.0,  # every span kept, failed ones included: a few runs a minute is little
            enable_live_metrics=False,
            # Process CPU and memory counters: a second meter provider whose exit waits on its own export; the
            # Functions host reports the instance's counters itself.
            enable_performance_counters=False,
            resource=_resource(),
            timeout=EXPORT_TIMEOUT_SECONDS,  # connecting
            read_timeout=EXPORT_TIMEOUT_SECONDS,  # azure-core waits 300 s for a silent endpoint's answer
            # azure-core's default retry policy retries an unreachable endpoint with back-off for minutes,
            # and the command line's exit waits for it; the next export is the retry.
            retry_total=0,
            disable_offline_storage=True,  # a lost export is lost; no retry files on the instance's disk
        )
    except Exception as error:  # a broken exporter must not fail the run; the logs still go to stderr
        log.warning("telemetry is off: the Azure Monitor exporter could not be configured: %s", type(error).__name__)
        return "off"
    _keep_exporter_logs_local()
    return "distro"


# Loggers whose records must not be exported: the exporter's own "could not send" warning, exported,
# fails again and logs again, and a flush never ends while the endpoint is unreachable.
_OWN_LOGGERS = ("azure.monitor.opentelemetry", "opentelemetry", "azure.core.pipeline")


def _not_from_the_exporter(record: logging.LogRecord) -> bool:
    return not record.name.startswith(_OWN_LOGGERS)


def _keep_exporter_logs_local() -> None:
    """Filter the exporter's own records out of the OpenTelemetry log handlers (stderr still has them)."""
    for handler in logging.getLogger().handlers:
        if type(handler).__name__ == "LoggingHandler" and _not_from_the_exporter not in handler.filters:
            handler.addFilter(_not_from_the_exporter)


def _sdk_already_installed() -> bool:
    """True when the process already has an SDK tracer provider (the Functions worker's distro)."""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def _resource() -> Any:
    from opentelemetry.sdk.resources import Resource

    from shared import __version__

    return Resource.create({"service.name": SERVICE_NAME, "service.version": __version__})


def shutdown(budget_seconds: float = SHUTDOWN_BUDGET_SECONDS) -> None:
    """Export what is buffered and stop the exporters, within `budget_seconds` (the command line's exit).

    The three providers shut down in parallel on daemon threads: each export waits at most the exporter's
    timeout, and the wait here ends at the budget whatever they do. Once started, the SDK's own exit
    handlers find them shut down and return at once, so a silent endpoint cannot hold the exit longer.
    """
    if _configured != "distro":
        return
    from opentelemetry import _logs

    providers = (trace.get_tracer_provider(), _logs.get_logger_provider(), metrics.get_meter_provider())
    stops = [stop for provider in providers if callable(stop := getattr(provider, "shutdown", None))]
    threads = [
        threading.Thread(target=_quietly, args=(stop,), name="bobo-telemetry-exit", daemon=True) for stop in stops
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + budget_seconds
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def _quietly(stop: Any) -> None:
    try:
        stop()
    except Exception:  # an export failure is the exporter's to log, never the run's
        log.debug("telemetry shutdown failed", exc_info=True)


# --- one span per run -----------------------------------------------------------------------------------


@contextlib.contextmanager
def run_span(job_kind: str, run_id: str, trigger: str) -> Iterator[trace.Span]:
    """The span of one job run; the run's log records and AtHoc dependencies are its children."""
    attributes = {"run_id": run_id, "job_kind": str(job_kind), "trigger": trigger}
    with _tracer.start_as_current_span(f"{job_kind} run", kind=SpanKind.INTERNAL, attributes=attributes) as span:
        yield span


def record_run_end(span: trace.Span, job_kind: str, outcome: str, failed: bool, fields: Mapping[str, object]) -> None:
    """The run's counts on its span and in the `bobo.` metrics; the backlog gauges read the last process run."""
    span.set_attribute("outcome", outcome)
    for name, value in fields.items():
        if isinstance(value, bool | int | float | str):
            span.set_attribute(f"bobo.{name}", value)
    if failed:
        span.set_status(Status(StatusCode.ERROR, str(fields.get("error_kind") or outcome)))
    labels = {"job_kind": str(job_kind)}
    for name, counter in _counters.items():
        value = fields.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            counter.add(value, labels)
    pending = fields.get("files_pending")
    if isinstance(pending, int) and pending >= 0:
        _backlog.files_pending = pending
        _backlog.oldest_pending_seconds = float(fields.get("oldest_pending_seconds") or 0)  # type: ignore[arg-type]


# --- AtHoc as a dependency ------------------------------------------------------------------------------


class AtHocCall:
    """The span handle of one AtHoc HTTP attempt; the transport says how it ended with `set_status`."""

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.status_code: int | None = None
        self.outcome = "error"  # until the transport reports a status code

    def set_status(self, status_code: int) -> None:
        self.span.set_attribute("http.response.status_code", status_code)
        self.status_code = status_code
        self.outcome = outcome_of_status(status_code)
        if self.outcome != "success":
            self.span.set_status(Status(StatusCode.ERROR, self.outcome))


def outcome_of_status(status_code: int) -> str:
    """A call's outcome by kind, for the duration histogram and the workbook's errors by kind."""
    if status_code < 400:
        return "success"
    if status_code in (401, 403):
        return "auth"
    if status_code == 429:
        return "throttled"
    return "client_error" if status_code < 500 else "server_error"


def outcome_of_error(error: BaseException) -> str:
    import requests

    if isinstance(error, requests.Timeout):
        return "timeout"
    if isinstance(error, requests.ConnectionError):
        return "connection"
    return "error"


@contextlib.contextmanager
def athoc_dependency(operation: str, method: str, url: str, attempt: int) -> Iterator[AtHocCall]:
    """A CLIENT span around one AtHoc HTTP attempt, and its duration in `bobo.athoc.call.duration`.

    `operation` names the API ("token", "SyncByCommonNames", "users/search/basic"). Only the method,
    host, port and path of `url` are recorded: never its query, a body, a header, a token or a secret.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    attributes: dict[str, str | int] = {
        "http.request.method": method.upper(),
        "server.address": host,
        "server.port": parts.port or (443 if parts.scheme == "https" else 80),
        "url.scheme": parts.scheme,
        "url.path": parts.path or "/",
        "url.full": f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}",
        "bobo.athoc.operation": operation,
        "bobo.athoc.attempt": attempt,
    }
    started = time.monotonic()
    name = f"{method.upper()} {operation}"
    with _tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes) as span:
        call = AtHocCall(span)
        try:
            yield call
        except BaseException as error:
            if call.status_code is None:  # an answer's status says more than what the caller raised after it
                call.outcome = outcome_of_error(error)
            span.set_attribute("error.type", type(error).__name__)
            raise
        finally:
            _athoc_duration.record(
                time.monotonic() - started, {"operation": operation, "outcome": call.outcome, "server.address": host}
            )


# --- the portal ---------------------------------------------------------------------------------------------

WORKBOOK_URL = "MONITORING_WORKBOOK_URL"  # app setting written by infra (workbook.bicep's portal address)


def workbook_url(env: Mapping[str, str] | None = None) -> str:
    """The monitoring workbook's portal address for the status page, or "" where none is deployed (locally)."""
    url = (os.environ if env is None else env).get(WORKBOOK_URL, "").strip()
    return url if url.startswith("https://") else ""
