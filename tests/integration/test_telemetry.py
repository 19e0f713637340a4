"""Traces, metrics and logs of real runs (Azurite and the AtHoc simulator), read from in-memory exporters."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from opentelemetry.trace import SpanKind

from shared import telemetry
from shared.logcontext import install as install_log_context
from shared.pipeline import drain
from tests.helpers import bof, bon, csv_of, seed_users, upload
from tests.otel_memory import Memory, counter_value, install


@pytest.fixture
def memory() -> Iterator[Memory]:
    collected = install()
    install_log_context()
    app_logger = logging.getLogger("shared")
    level = app_logger.level
    app_logger.setLevel(logging.INFO)
    collected.clear()
    try:
        yield collected
    finally:
        app_logger.setLevel(level)


def _one_batch(make_runtime: Any, athoc_sim: Any) -> Any:
    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["101", "102"])
    upload(runtime, "good.csv", csv_of(bon("101", "20251022074142"), bof("102", "20251022074155")))
    upload(runtime, "mixed.csv", csv_of(bon("101", "20251022080000"), "BON,not-a-row"))
    return drain(runtime, trigger="sweep_incoming")


def test_one_batch_is_one_span_tree_with_the_report_as_attributes(memory, make_runtime, athoc_sim) -> None:
    before = memory.metric_points()
    report = _one_batch(make_runtime, athoc_sim)
    assert report.files_processed == 2 and report.rows_rejected >= 1  # the run this test describes

    spans = memory.spans.get_finished_spans()
    runs = [s for s in spans if s.name == "process run"]
    assert len(runs) == 1
    run = runs[0]
    assert run.attributes["run_id"] == report.run_id
    assert run.attributes["job_kind"] == "process" and run.attributes["trigger"] == "sweep_incoming"
    for name, value in report.counts().items():
        assert run.attributes[f"bobo.{name}"] == value, name
    assert run.attributes["bobo.files_pending"] == report.files_pending == 0

    # Storage calls are children (or grandchildren) of the run span, through azure-core's tracing.
    by_id = {s.context.span_id: s for s in spans}
    in_run = [s for s in spans if s.context.trace_id == run.context.trace_id and s is not run]
    # One HTTP span per storage request (azure-core marks them with its client request id).
    storage = [s for s in in_run if "az.client_request_id" in s.attributes]
    assert len(storage) >= 5
    assert {"BlobClient", "TableClient"} <= {s.name.split(".")[0] for s in in_run}
    # Each AtHoc attempt is a CLIENT span of the run, from the transport's one send.
    athoc = {s.attributes["bobo.athoc.operation"]: s for s in in_run if "bobo.athoc.operation" in s.attributes}
    assert set(athoc) == {"token", "SyncByCommonNames"}
    assert all(s.kind is SpanKind.CLIENT and s.attributes["http.response.status_code"] == 200 for s in athoc.values())
    assert athoc["SyncByCommonNames"].attributes["url.path"].endswith("/users/SyncByCommonNames")
    for span in in_run:
        parent = span
        while parent.parent is not None and parent.parent.span_id in by_id:
            parent = by_id[parent.parent.span_id]
        assert parent is run, span.name

    # The counters moved by exactly the run's counts; the backlog gauges read this run.
    after = memory.metric_points()
    for count, metric in telemetry.COUNTED.items():
        delta = counter_value(after, metric, job_kind="process") - counter_value(before, metric, job_kind="process")
        assert delta == getattr(report, count), metric
    assert after[("bobo.files.pending", ())].value == report.files_pending
    assert after[("bobo.files.oldest_pending_age", ())].value == report.oldest_pending_seconds

    # Every app log record of the run carries its run id, and is correlated with its trace.
    records = [r for r in memory.logs.get_finished_logs() if r.log_record.trace_id == run.context.trace_id]
    app_records = [r for r in records if str(r.instrumentation_scope.name).startswith(("shared", "functions"))]
    assert len(app_records) >= 3  # the file lines and the summary line at least
    for item in records:
        assert item.log_record.attributes["run_id"] == report.run_id
        assert item.log_record.attributes["job_kind"] == "process"
    rejected = [r.log_record.attributes for r in records if str(r.log_record.body).startswith("rows rejected:")]
    assert len(rejected) == 1 and rejected[0]["file_name"] == "mixed.csv"
    assert sum(json.loads(rejected[0]["reject_reasons"]).values()) == report.rows_rejected
    summary = [r for r in records if "process success" in str(r.log_record.body)]
    assert summary and summary[0].log_record.attributes["files_processed"] == report.files_processed


def test_a_failed_run_is_an_error_span(memory, make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["7"])
    upload(runtime, "a.csv", csv_of(bon("7", "20251022074142")))
    athoc_sim.stop()  # AtHoc unreachable: the run fails as a job, the file waits for a retry

    report = drain(runtime)

    assert report.errors
    run = next(s for s in memory.spans.get_finished_spans() if s.name == "process run")
    assert run.status.status_code.name == "ERROR" and run.attributes["outcome"] == "failed"
    assert run.attributes["bobo.files_retry"] == report.files_retry == 1


def test_athoc_dependency_is_a_client_span_without_query_or_secret(memory, athoc_sim) -> None:
    before = memory.metric_points()
    url = f"{athoc_sim.url}/api/v2/orgs/DEMO/users/search/basic?token=sim-secret-value"
    with telemetry.athoc_dependency("users/search/basic", "get", url, attempt=2) as call:
        answer = requests.get(url, timeout=10)
        call.set_status(answer.status_code)

    span = next(s for s in memory.spans.get_finished_spans() if s.kind.name == "CLIENT")
    host = url.split("//")[1].split(":")[0]
    assert span.attributes["server.address"] == host
    assert span.attributes["url.path"] == "/api/v2/orgs/DEMO/users/search/basic"
    assert span.attributes["http.request.method"] == "GET"
    assert span.attributes["http.response.status_code"] == answer.status_code
    assert span.attributes["bobo.athoc.attempt"] == 2
    assert span.attributes["bobo.athoc.operation"] == "users/search/basic"
    assert not any("sim-secret-value" in str(value) for value in span.attributes.values())
    outcome = telemetry.outcome_of_status(answer.status_code)
    after = memory.metric_points()
    labels = (("operation", "users/search/basic"), ("outcome", outcome), ("server.address", host))
    key = ("bobo.athoc.call.duration", labels)
    assert after[key].count == (before[key].count if key in before else 0) + 1


def test_an_unreachable_athoc_is_a_connection_outcome(memory) -> None:
    url = "http://127.0.0.1:9/AuthServices/Auth/connect/token"  # nothing listens on the discard port
    with pytest.raises(requests.ConnectionError), telemetry.athoc_dependency("token", "POST", url, 1):
        requests.post(url, timeout=5)
    span = next(s for s in memory.spans.get_finished_spans() if s.kind.name == "CLIENT")
    assert span.status.status_code.name == "ERROR" and span.attributes["error.type"] == "ConnectionError"
    points = memory.metric_points()
    labels = (("operation", "token"), ("outcome", "connection"), ("server.address", "127.0.0.1"))
    assert ("bobo.athoc.call.duration", labels) in points


def test_a_status_then_a_raise_keeps_the_status_outcome(memory, athoc_sim) -> None:
    url = f"{athoc_sim.url}/api/v2/orgs/DEMO/SyncByCommonNames"
    with pytest.raises(RuntimeError), telemetry.athoc_dependency("SyncByCommonNames", "POST", url, 3) as call:
        call.set_status(503)
        raise RuntimeError("the transport gives up on a 503")  # as a retry loop's last attempt would
    host = url.split("//")[1].split(":")[0]
    labels = (("operation", "SyncByCommonNames"), ("outcome", "server_error"), ("server.address", host))
    assert ("bobo.athoc.call.duration", labels) in memory.metric_points()
    span = next(s for s in memory.spans.get_finished_spans() if s.kind.name == "CLIENT")
    assert span.attributes["http.response.status_code"] == 503 and span.status.status_code.name == "ERROR"
