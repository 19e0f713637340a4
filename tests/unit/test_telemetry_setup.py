"""shared.telemetry's process setup: nothing without a connection string, once with one, never twice."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from shared import telemetry
from tests.helpers import ROOT

CONNECTION = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/"
QUIET = "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL=true APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED=true"


def _child(code: str, *env: str) -> str:
    """Run `code` in a fresh interpreter (the setup is once per process); its last stdout line."""
    environment = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    environment.update(pair.split("=", 1) for pair in " ".join(env).split())
    done = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_without_a_connection_string_nothing_of_the_exporter_is_imported() -> None:
    code = (
        "import sys, function_app, shared.jobs, shared.pipeline\n"
        "from shared import telemetry\n"
        "how = telemetry.configure()\n"
        "print(how, any(m.startswith('azure.monitor') for m in sys.modules))"
    )
    assert _child(code) == "off False"


def test_with_a_connection_string_the_distro_is_configured_once() -> None:
    code = (
        "import sys\n"
        "from shared import telemetry\n"
        "first = telemetry.configure(); second = telemetry.configure()\n"
        "from opentelemetry import trace\n"
        "print(first, second, type(trace.get_tracer_provider()).__module__)"
    )
    assert _child(code, f"APPLICATIONINSIGHTS_CONNECTION_STRING={CONNECTION}", QUIET) == (
        "distro distro opentelemetry.sdk.trace"
    )


def test_providers_set_by_the_functions_worker_are_used_as_they_are() -> None:
    # The worker (PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true) configures the distro before our code runs.
    code = (
        "import sys\n"
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "worker = TracerProvider(); trace.set_tracer_provider(worker)\n"
        "from shared import telemetry\n"
        "how = telemetry.configure()\n"
        "print(how, trace.get_tracer_provider() is worker, 'azure.monitor.opentelemetry' in sys.modules)"
    )
    assert _child(code, f"APPLICATIONINSIGHTS_CONNECTION_STRING={CONNECTION}", QUIET) == "worker True False"


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "success"), (302, "success"), (401, "auth"), (403, "auth"), (429, "throttled"), (404, "client_error"),
     (500, "server_error"), (503, "server_error")],
)  # fmt: skip
def test_outcome_of_an_athoc_status(status: int, outcome: str) -> None:
    assert telemetry.outcome_of_status(status) == outcome


def test_workbook_url_only_from_a_portal_address() -> None:
    url = "https://portal.azure.com/#@tenant/resource/subscriptions/s/providers/microsoft.insights/workbooks/w/workbook"
    assert telemetry.workbook_url({telemetry.WORKBOOK_URL: url}) == url
    assert telemetry.workbook_url({telemetry.WORKBOOK_URL: "javascript:alert(1)"}) == ""
    assert telemetry.workbook_url({}) == ""


def _bicep_setting(name: str) -> str:
    text = (ROOT / "infra" / "app" / "processor.bicep").read_text(encoding="utf-8")
    match = re.search(rf"^\s*{name}: '([^']*)'", text, re.MULTILINE)
    assert match, f"{name} is not set in processor.bicep"
    return match.group(1)


@pytest.mark.parametrize("path", ["worker", "command line"])
def test_every_span_is_kept(path: str) -> None:
    # The worker configures the distro with its defaults and the app settings; the command line through
    # telemetry.configure. Either way the sampler must keep every trace, failed runs included.
    configure = (
        "from azure.monitor.opentelemetry import configure_azure_monitor; configure_azure_monitor()"
        if path == "worker"
        else "from shared import telemetry; telemetry.configure()"
    )
    code = f"{configure}\nfrom opentelemetry import trace\nprint(trace.get_tracer_provider().sampler.get_description())"
    settings = [f"{name}={_bicep_setting(name)}" for name in ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG")]
    environment = [f"APPLICATIONINSIGHTS_CONNECTION_STRING={CONNECTION}", QUIET]
    description = _child(code, *environment, *(settings if path == "worker" else []))
    assert description == "ApplicationInsightsSampler1.0"
