"""`python -m bench [all|backlog|burst|bigfile|mapping|cleanup|upload|chaos] [--latency-ms 0,300] [--size small|full]
[--json-out bench-results/NAME.json]`: run benchmarks against Azurite and the AtHoc simulator, print a
table, write JSON. Figures are printed, never asserted: a slow machine gives slow figures, not failures.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import ROOT, machine

ORDER = ("backlog", "burst", "bigfile", "mapping", "cleanup", "upload", "chaos")


def _print_table(title: str, rows: list[tuple[str, str, str, str]]) -> None:
    print(f"\n== {title}")
    widths = [max(len(str(r[i])) for r in [("metric", "value", "target", "verdict"), *rows]) for i in range(4)]
    widths[1] = min(widths[1], 70)
    header = ("metric", "value", "target", "verdict")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))


def _chaos_summary(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    kill = result.get("kill", {})
    restart = result.get("azurite_restart", {})
    failed = result.get("failed_files") or {}
    rows = [
        ("files uploaded", str(result["files_uploaded"]), "-", "n/a"),
        ("run time", f"{result['seconds']} s", "-", "n/a"),
        ("batches", str(result.get("batches_run")), "-", "n/a"),
        ("worker SIGKILL", f"{kill.get('worker')} at {kill.get('phase')} after {kill.get('at_seconds')} s",
         "mid-batch", "met" if kill.get("mid_batch") else "MISSED"),
        ("Azurite restart", f"at {restart.get('at_seconds')} s, {restart.get('seconds')} s until it answered again",
         "during a batch", "met" if restart.get("hit_running_batch") else "MISSED"),
        ("faults served", ", ".join(f"{k} {v}" for k, v in result.get("faults_served", {}).items()), "-", "n/a"),
        ("failed files", ", ".join(sorted(failed)) or "none", "only the expected ones",
         "met" if sorted(failed) == sorted(result.get("expected_failed") or {}) else "MISSED"),
        ("AtHoc requests", ", ".join(f"{k} {v}" for k, v in result["athoc_requests"].items() if v), "-", "n/a"),
        ("problems", str(len(result["problems"])), "0", "met" if result["ok"] else "FAILED"),
    ]  # fmt: skip
    rows += [("problem", p[:300], "", "") for p in result["problems"]]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", nargs="?", default="all", choices=("all", *ORDER))
    parser.add_argument("--latency-ms", default="0,300", help="AtHoc latency per request, comma-separated")
    parser.add_argument("--size", default="full", choices=("small", "full"), help="small: a quick smoke run")
    parser.add_argument("--json-out", type=Path, default=None, help="default bench-results/<scenario>-<size>.json")
    parser.add_argument("--seed", type=int, default=0, help="chaos: random seed (default: random)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")

    latencies = [float(x) for x in args.latency_ms.split(",") if x.strip()] or [0.0]
    scenarios = [s for s in ORDER if s != "chaos"] if args.scenario == "all" else [args.scenario]
    if args.scenario == "all":
        scenarios.append("chaos")
    out_path = args.json_out or ROOT / "bench-results" / f"{args.scenario}-{args.size}.json"

    from bench.scenarios import LATENCY_SCENARIOS, SCENARIOS
    from tools.azurite import start_azurite

    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "size": args.size,
        "machine": machine(),
        "storage": "Azurite (in memory, loopback) for the benchmarks; Azurite --location for the chaos run",
        "scenarios": {},
    }
    failures = 0
    azurite = None
    try:
        for name in scenarios:
            started = time.perf_counter()
            if name == "chaos":
                from bench.chaos import run_chaos

                result = run_chaos("full" if args.size == "full" else "small", seed=args.seed)
                results["scenarios"]["chaos"] = result
                _print_table(f"chaos ({args.size}, seed {result['config']['seed']})", _chaos_summary(result))
                failures += 0 if result["ok"] else 1
                continue
            runs = latencies if name in LATENCY_SCENARIOS else latencies[:1]
            for latency in runs:
                label = f"{name} @ {latency:g} ms" if name in LATENCY_SCENARIOS else name
                # A fresh, empty Azurite per run: its in-memory lookups slow down with everything stored
                # before (measured: a second backlog on the same emulator ran ~20 s slower), which would
                # charge one run for the data of the previous ones.
                azurite = start_azurite()
                try:
                    result = SCENARIOS[name](azurite, latency, args.size)
                except Exception as error:  # a benchmark that breaks is reported and the others still run
                    logging.exception("%s failed", label)
                    result = {
                        "error": f"{error.__class__.__name__}: {error}",
                        "summary": [("error", str(error)[:200], "", "FAILED")],
                    }
                    failures += 1
                finally:
                    azurite.cleanup()
                    azurite = None
                result["seconds_total"] = round(time.perf_counter() - started, 1)
                results["scenarios"][label] = result
                _print_table(label, result["summary"])
                out_path.parent.mkdir(parents=True, exist_ok=True)
                out_path.write_text(json.dumps(results, indent=1, default=str))
    finally:
        if azurite is not None:
            azurite.cleanup()
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nmachine: {json.dumps(results['machine'])}\nJSON: {out_path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
