"""One process run exported through azure-monitor-opentelemetry to a local stand-in for ingestion.

The run happens in a child process (the distro is configured once per process): `python -m shared.cli
process` in-process, whose AtHoc calls (token, SyncByCommonNames) go through the transport's one send,
wrapped in `telemetry.athoc_dependency`.
"""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bench.common import SIM_CREDENTIALS
from tests.helpers import bof, bon, csv_of, python, seed_users, settings_env, upload

CHILD = """
import sys
from shared import cli, telemetry
code = cli.main(["process", "--json"])
telemetry.shutdown()
sys.exit(code)
"""

QUIET_SDK = {  # no calls to Microsoft's own endpoints from a test: SDK statistics and control plane off
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
}


class Ingestion:
    """Accepts what the exporter posts, keeps the raw bodies and the decoded envelopes."""

    def __init__(self, status: int = 200) -> None:
        self.raw: list[bytes] = []
        self.envelopes: list[dict[str, Any]] = []
        self.status = status
        ingestion = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip" or body[:2] == b"\x1f\x8b":
                    body = gzip.decompress(body)
                ingestion.raw.append(body)
                text = body.decode("utf-8").strip()
                items = json.loads(text) if text.startswith("[") else [json.loads(x) for x in text.splitlines()]
                ingestion.envelopes += items
                answer = json.dumps({"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []})
                self.send_response(ingestion.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(answer.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def connection_string(self) -> str:
        port = self.server.server_address[1]
        return f"InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:{port}/"

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.envelopes if e.get("data", {}).get("baseType") == kind]


@pytest.fixture
def ingestion() -> Iterator[Ingestion]:
    endpoint = Ingestion()
    try:
        yield endpoint
    finally:
        endpoint.server.shutdown()


def _run_child(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python(), "-c", CHILD], env=settings_env(env), capture_output=True, text=True, timeout=120)


def test_a_process_run_reaches_ingestion_correlated_and_secret_free(
    ingestion, make_test_env, make_runtime, athoc_sim, azurite
) -> None:
    env = make_test_env(APPLICATIONINSIGHTS_CONNECTION_STRING=ingestion.connection_string, **QUIET_SDK)
    runtime = make_runtime(**{k: v for k, v in env.items() if k.startswith("BOBO_")})
    seed_users(athoc_sim, runtime, ["11", "12"])
    upload(runtime, "a.csv", csv_of(bon("11", "20251022074142"), bof("12", "20251022074155")))

    child = _run_child(env)

    assert child.returncode == 0, child.stderr[-2000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report["files_processed"] == 1
    tokens = athoc_sim.issued_tokens
    assert tokens, "the run asked AtHoc for a token"
    run_id = report["run_id"]

    # The run span (a dependency of type InProc in Application Insights) with its counts.
    runs = [e for e in ingestion.of_type("RemoteDependencyData") if e["data"]["baseData"]["name"] == "process run"]
    assert len(runs) == 1 and runs[0]["data"]["baseData"]["properties"]["run_id"] == run_id
    operation_id = runs[0]["tags"]["ai.operation.id"]
    # AtHoc as an HTTP dependency whose target is the AtHoc host.
    athoc_host = f"{athoc_sim.host}:{athoc_sim.port}"
    to_athoc = [
        e
        for e in ingestion.of_type("RemoteDependencyData")
        if e["data"]["baseData"].get("type") == "HTTP" and e["data"]["baseData"].get("target") == athoc_host
    ]
    # Only the transport's own spans: no second, query-bearing span from a requests instrumentation.
    assert all("bobo.athoc.operation" in e["data"]["baseData"]["properties"] for e in to_athoc)
    by_operation = {e["data"]["baseData"]["properties"]["bobo.athoc.operation"]: e for e in to_athoc}
    assert set(by_operation) == {"token", "SyncByCommonNames"}, sorted(by_operation)
    for call in by_operation.values():
        data = call["data"]["baseData"]
        assert data["target"] == athoc_host and data["resultCode"] == "200"
        assert "?" not in data["data"]  # the path only, never a query
        assert call["tags"]["ai.operation.id"] == operation_id  # inside the run's span
    # The run's log lines: run_id in their properties, and the run's operation id.
    traces = [e for e in ingestion.of_type("MessageData") if e["data"]["baseData"]["properties"].get("run_id")]
    assert {t["data"]["baseData"]["properties"]["run_id"] for t in traces} == {run_id}
    assert any("process success" in t["data"]["baseData"]["message"] for t in traces)
    assert {t["tags"]["ai.operation.id"] for t in traces} == {operation_id}
    # The bobo. metrics.
    metric_names = {m["name"] for e in ingestion.of_type("MetricData") for m in e["data"]["baseData"]["metrics"]}
    assert {"bobo.files.processed", "bobo.rows.read", "bobo.files.pending"} <= metric_names

    # No secret anywhere in what was sent.
    sent = b"\n".join(ingestion.raw).decode("utf-8")
    account_key = azurite.connection_string.split("AccountKey=")[1].split(";")[0]
    for secret in (
        SIM_CREDENTIALS["ATHOC_CLIENT_SECRET"],
        SIM_CREDENTIALS["ATHOC_PASSWORD"],
        *tokens,
        account_key,
    ):
        assert secret not in sent


@pytest.mark.parametrize("endpoint", ["refusing", "silent"])
def test_an_unreachable_ingestion_endpoint_never_fails_the_run(
    endpoint, make_test_env, make_runtime, athoc_sim
) -> None:
    # refusing: nothing listens on the port; silent: the connection is accepted and never answered.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        if endpoint == "silent":
            listener.listen(64)
        else:
            listener.close()
        connection = (
            f"InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:{port}/"
        )
        env = make_test_env(APPLICATIONINSIGHTS_CONNECTION_STRING=connection, **QUIET_SDK)
        runtime = make_runtime(**{k: v for k, v in env.items() if k.startswith("BOBO_")})
        seed_users(athoc_sim, runtime, ["21"])
        upload(runtime, "b.csv", csv_of(bon("21", "20251022074142")))

        child = subprocess.run(
            [python(), "-m", "shared.cli", "process", "--json"],
            env=settings_env(env),
            capture_output=True,
            text=True,
            timeout=120,  # a guard against a hang, not a measurement (that is bench/telemetry.py)
        )

    assert child.returncode == 0, child.stderr[-2000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report["files_processed"] == 1 and report["errors"] == []
