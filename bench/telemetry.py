"""`python -m bench.telemetry [--runs 3] [--files 20]`: what telemetry costs a run and a cold start.

1. A whole `python -m shared.cli process` (start to exit, the exporter's final flush included) over the
   same files, with no connection string, a healthy ingestion stand-in, an unreachable endpoint (nothing
   listens) and a silent one (accepts the connection, never answers). The added time is the median's
   difference to "no telemetry" (docs/operations.md: at most 15 s).
2. The cold start: import time and peak resident memory after `import function_app` and the modules the
   first invocation imports (and, with the connection string, the distro configured as the Functions
   worker does with PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY), each in a fresh interpreter.

Figures are printed, never asserted: a slow machine gives slow figures, not failures.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.common import ROOT, child_env, make_env, row, runtime_of, seed_users, upload_many

KEY = "InstrumentationKey=00000000-0000-0000-0000-000000000000"
QUIET_SDK = {"APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true", "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true"}


class _Accepting(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"itemsReceived": 1, "itemsAccepted": 1, "errors": []}')

    def log_message(self, *args: Any) -> None:
        pass


def _endpoints() -> tuple[dict[str, str], list[Any]]:
    """Connection strings by mode, and what to close afterwards."""
    healthy = ThreadingHTTPServer(("127.0.0.1", 0), _Accepting)
    threading.Thread(target=healthy.serve_forever, daemon=True).start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # connections complete in the backlog; nothing is ever read or answered
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # a port nothing listens on: connection refused at once
    modes = {
        "none": "",
        "healthy": f"{KEY};IngestionEndpoint=http://127.0.0.1:{healthy.server_address[1]}/",
        "unreachable": f"{KEY};IngestionEndpoint=http://127.0.0.1:{closed_port}/",
        "silent": f"{KEY};IngestionEndpoint=http://127.0.0.1:{silent.getsockname()[1]}/",
    }
    return modes, [healthy.shutdown, silent.close]


def _one_run(env: dict[str, str], connection: str, files: int, sim: Any) -> float:
    runtime = runtime_of(env)
    upload_many(
        runtime, {f"t{i:04d}.csv": f"{row('BON', i % 50 + 1, '20251022074142')}\n".encode() for i in range(files)}
    )
    run_env = {**env, **QUIET_SDK}
    if connection:
        run_env["APPLICATIONINSIGHTS_CONNECTION_STRING"] = connection
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "shared.cli", "process", "--json"],
        env=child_env(run_env),
        cwd=ROOT,
        capture_output=True,
        timeout=300,
        check=False,
    )
    seconds = time.monotonic() - started
    report = json.loads(done.stdout.decode().strip().splitlines()[-1])
    if done.returncode != 0 or report["files_processed"] != files:
        raise RuntimeError(f"the run failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    return seconds


def run_cost(runs: int, files: int) -> dict[str, Any]:
    from tools.athoc_sim import AtHocSimulator
    from tools.azurite import start_azurite

    azurite, sim = start_azurite(), AtHocSimulator().start()
    modes, closers = _endpoints()
    try:
        env = make_env(azurite.connection_string, sim.url)
        seed_users(sim, runtime_of(env), range(1, 51))
        seconds: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(runs):
            for mode, connection in modes.items():  # interleaved: a slow moment hits every mode alike
                seconds[mode].append(_one_run(env, connection, files, sim))
    finally:
        for close in closers:
            close()
        sim.stop()
        azurite.cleanup()
    medians = {mode: statistics.median(values) for mode, values in seconds.items()}
    return {
        "files_per_run": files,
        "runs": runs,
        "median_seconds": {mode: round(value, 2) for mode, value in medians.items()},
        "added_seconds": {mode: round(medians[mode] - medians["none"], 2) for mode in modes if mode != "none"},
    }


_COLD = """
import os, resource, sys, time
started = time.perf_counter()
import function_app
import shared.pipeline, shared.mapping_sync, shared.cleanup  # what the first invocation imports
if os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
    from shared import telemetry
    telemetry.configure()
seconds = time.perf_counter() - started
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
modules = sum(1 for m in sys.modules if m.startswith(("opentelemetry", "azure.monitor")))
print(f"{seconds:.3f} {rss_mb:.1f} {modules}")
"""


def cold_start(repeats: int = 5) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for mode, extra in (
        ("without", {}),
        ("with", {"APPLICATIONINSIGHTS_CONNECTION_STRING": f"{KEY};IngestionEndpoint=http://127.0.0.1:9/"}),
    ):
        samples = []
        for _ in range(repeats):
            done = subprocess.run(
                [sys.executable, "-c", _COLD], env=child_env({**QUIET_SDK, **extra}), cwd=ROOT,
                capture_output=True, text=True, timeout=120, check=True,
            )  # fmt: skip
            samples.append([float(x) for x in done.stdout.split()])
        results[mode] = {
            "import_seconds": round(statistics.median(s[0] for s in samples), 3),
            "peak_rss_mb": round(statistics.median(s[1] for s in samples), 1),
            "telemetry_modules": int(samples[0][2]),
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.telemetry", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=20)
    args = parser.parse_args(argv)
    cold = cold_start()
    print("cold start (import function_app and the job modules; with: the distro configured too), medians of 5:")
    for mode, figures in cold.items():
        print(f"  {mode:8} connection string: {figures}")
    cost = run_cost(args.runs, args.files)
    print(f"a whole `shared.cli process` of {args.files} files, medians of {args.runs} runs:")
    for mode, seconds in cost["median_seconds"].items():
        print(f"  {mode:12} {seconds:6.2f} s  added {cost['added_seconds'].get(mode, 0.0):+.2f} s")
    print(json.dumps({"cold_start": cold, "run_cost": cost}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
