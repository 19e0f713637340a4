"""Benchmark scenarios (docs/performance.md). Each returns a dict of figures (JSON-ready) with a `summary`
list of (metric, value, target, verdict) rows for the printed table.

Measured jobs (backlog, big file, mapping sync, cleanup) run in a fresh child process (`bench.child`), so
wall time and memory are the job's own; the AtHoc simulator and Azurite run outside it. The burst runs in
this process with one thread per trigger invocation, as the Functions host delivers them.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import (
    DATETIME_FORMAT,
    DUTY,
    counter_diff,
    login_of,
    make_env,
    row,
    run_child,
    runtime_of,
    seed_users,
    upload_many,
)
from bench.upload import upload

MB = 2**20


@contextmanager
def simulator(latency_ms: float = 0.0) -> Iterator[Any]:
    from tools.athoc_sim import AtHocSimulator

    sim = AtHocSimulator().start()
    sim.latency = latency_ms / 1000
    try:
        yield sim
    finally:
        sim.stop()


def _athoc_counts(sim: Any) -> dict[str, int]:
    return {k: v for k, v in sim.counts().items() if v and k != "control"}


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "MISSED")


# --- backlog -----------------------------------------------------------------------------------------


def backlog(azurite: Any, latency_ms: float, size: str) -> dict[str, Any]:
    files, rows_per_file, users = (1440, 15, 5000) if size == "full" else (120, 15, 500)
    rng = random.Random(8)
    with simulator(0) as sim:
        env = make_env(azurite.connection_string, sim.url, BOBO_BATCH_WINDOW_SECONDS="0")
        runtime = runtime_of(env)
        seed_users(sim, runtime, range(1, users + 1))
        start = datetime(2025, 10, 22, 0, 0, 0)
        bodies = {}
        for i in range(files):
            minute = start + timedelta(minutes=i)
            lines = []
            for r in range(rows_per_file):
                when = (minute + timedelta(seconds=r * 3)).strftime("%Y%m%d%H%M%S")
                lines.append(row("BON" if rng.random() < 0.6 else "BOF", rng.randint(1, users), when))
            bodies[f"bobo-{minute:%Y%m%d-%H%M}.csv"] = ("\r\n".join(lines) + "\r\n").encode()
        upload_started = time.perf_counter()
        upload_many(runtime, bodies)
        upload_seconds = time.perf_counter() - upload_started
        sim.reset_log()
        sim.latency = latency_ms / 1000
        out = run_child("drain", env)
        athoc = _athoc_counts(sim)
    report, wall = out["report"], out["wall_seconds"]
    storage = out["storage_requests"]
    total_storage = sum(storage.values())
    batches = max(report["batches"], 1)
    distinct = report["updates_sent"] + report["stale_events"] + report["unmapped_employees"]
    sync_limit = batches * -(-max(distinct, 1) // 1000)
    result = {
        "files": files,
        "rows": files * rows_per_file,
        "users_mapped": users,
        "latency_ms": latency_ms,
        "wall_seconds": wall,
        "rows_per_second": round(report["rows_read"] / wall, 1) if wall else None,
        "files_per_second": round(report["files_processed"] / wall, 1) if wall else None,
        "report": report,
        "athoc_requests": athoc,
        "storage_requests": storage,
        "storage_requests_total": total_storage,
        "storage_requests_per_file": round(total_storage / files, 2),
        "storage_requests_per_batch_fixed": None,
        "peak_rss_mb": out["peak_rss_mb"],
        "rss_after_imports_mb": out["rss_after_imports_mb"],
        "memory_measure": "ru_maxrss of the child process running drain() (whole process)",
        "upload_seconds_not_measured": round(upload_seconds, 1),
    }
    target_time = 60 if latency_ms >= 300 else None
    result["summary"] = [
        ("files processed", f"{report['files_processed']}/{files}", str(files),
         _verdict(report["files_processed"] == files)),
        ("wall time", f"{wall:.1f} s", f"< {target_time} s" if target_time else "-",
         _verdict(wall < target_time if target_time and size == "full" else None)),
        ("rows/s", f"{result['rows_per_second']}", "-", "n/a"),
        ("SyncByCommonNames", f"{athoc.get('sync', 0)} ({report['batches']} batch(es), {distinct} users)",
         f"<= {sync_limit}", _verdict(athoc.get("sync", 0) <= sync_limit)),
        ("AtHoc requests", _fmt(athoc), "-", "n/a"),
        ("storage requests/file", f"{result['storage_requests_per_file']}", "small constant", "n/a"),
        ("peak RSS", f"{out['peak_rss_mb']} MB (after imports {out['rss_after_imports_mb']} MB)", "-", "n/a"),
    ]  # fmt: skip
    return result


# --- burst -------------------------------------------------------------------------------------------


def burst(azurite: Any, latency_ms: float, size: str) -> dict[str, Any]:
    from shared import storage as storage_module
    from shared.pipeline import ingest_blob

    repeats = 20 if size == "full" else 3
    window = 2.0
    files, rows_per_file, users = 10, 15, 1000
    rng = random.Random(10)
    with simulator(latency_ms) as sim:
        env = make_env(azurite.connection_string, sim.url, BOBO_BATCH_WINDOW_SECONDS=str(window))
        runtime = runtime_of(env)
        seed_users(sim, runtime, range(1, users + 1))
        latencies: list[float] = []
        per_burst: list[dict[str, int]] = []
        storage_per_burst: list[int] = []
        burst_storage: dict[str, int] = {}
        base = datetime(2025, 10, 22, 8, 0, 0)
        for rep in range(repeats):
            employees = rng.sample(range(1, users + 1), files * rows_per_file)
            expected: dict[str, str] = {}
            bodies: dict[str, bytes] = {}
            for f in range(files):
                lines = []
                for r in range(rows_per_file):
                    employee = employees[f * rows_per_file + r]
                    when = base + timedelta(hours=rep, seconds=f * rows_per_file + r)
                    lines.append(row("BON", employee, when.strftime("%Y%m%d%H%M%S")))
                    expected[login_of(employee)] = when.strftime(DATETIME_FORMAT)
                bodies[f"burst-{rep:02d}-{f:02d}.csv"] = ("\r\n".join(lines) + "\r\n").encode()
            sim.reset_log()
            storage_before = dict(storage_module.REQUEST_COUNTS)
            uploaded_at: list[float] = []
            lock = threading.Lock()

            def deliver(name: str, body: bytes, uploaded: list[float] = uploaded_at, guard: Any = lock) -> None:
                runtime.storage.incoming.upload_blob(name, body, overwrite=True)
                with guard:
                    uploaded.append(time.perf_counter())
                ingest_blob(runtime, name)  # the trigger invocation for this upload

            threads = [threading.Thread(target=deliver, args=item) for item in bodies.items()]
            for t in threads:
                t.start()
            done_at = None
            deadline = time.perf_counter() + 120
            while time.perf_counter() < deadline:
                if len(uploaded_at) == files and all(
                    (sim.get_user(login) or {}).get(DUTY) == value for login, value in expected.items()
                ):
                    done_at = time.perf_counter()
                    break
                time.sleep(0.02)
            for t in threads:
                t.join(timeout=120)
            if done_at is not None:
                latencies.append(done_at - max(uploaded_at))
            per_burst.append(_athoc_counts(sim))
            burst_storage = counter_diff(storage_module.REQUEST_COUNTS, storage_before)
            storage_per_burst.append(sum(burst_storage.values()))
    median = statistics.median(latencies) if latencies else None
    p95 = _percentile(latencies, 95)
    syncs = [c.get("sync", 0) for c in per_burst]
    result = {
        "repeats": repeats,
        "files_per_burst": files,
        "rows_per_file": rows_per_file,
        "batch_window_seconds": window,
        "latency_ms": latency_ms,
        "latencies_seconds": [round(x, 3) for x in latencies],
        "median_seconds": round(median, 3) if median is not None else None,
        "p95_seconds": round(p95, 3) if p95 is not None else None,
        "athoc_requests_per_burst": per_burst,
        "sync_requests_per_burst_max": max(syncs) if syncs else None,
        "storage_requests_per_burst_median": statistics.median(storage_per_burst) if storage_per_burst else None,
        # The last burst by kind, its 10 uploads included (they are the exporter's, counted here too).
        "storage_requests_last_burst": burst_storage,
        "completed": len(latencies),
    }
    result["summary"] = [
        ("bursts completed", f"{len(latencies)}/{repeats}", f"{repeats}", _verdict(len(latencies) == repeats)),
        ("median upload->AtHoc", f"{median:.2f} s" if median is not None else "-", f"<= {window + 2:.0f} s",
         _verdict(median is not None and median <= window + 2)),
        ("p95 upload->AtHoc", f"{p95:.2f} s" if p95 is not None else "-", "-", "n/a"),
        ("AtHoc requests/burst", _fmt(per_burst[-1]) if per_burst else "-", "1 sync", _verdict(max(syncs or [9]) <= 1)),
        ("storage requests/burst", f"{result['storage_requests_per_burst_median']}", "-", "n/a"),
    ]  # fmt: skip
    return result


# --- big file ----------------------------------------------------------------------------------------


def bigfile(azurite: Any, latency_ms: float, size: str) -> dict[str, Any]:
    target_bytes = 100 * MB if size == "full" else 5 * MB
    users = 5000
    with simulator(latency_ms) as sim:
        env = make_env(azurite.connection_string, sim.url, BOBO_BATCH_WINDOW_SECONDS="0")
        runtime = runtime_of(env)
        seed_users(sim, runtime, range(1, users + 1))
        rng = random.Random(100)
        start = datetime(2025, 10, 22, 0, 0, 0)
        rows = 0
        with tempfile.NamedTemporaryFile("wb", suffix=".csv", delete=False) as handle:
            path = handle.name
            written = 0
            while written < target_bytes:
                lines = []
                for _ in range(10_000):
                    when = (start + timedelta(seconds=rows // 20)).strftime("%Y%m%d%H%M%S")
                    lines.append(row("BON" if rng.random() < 0.6 else "BOF", rng.randint(1, users), when))
                    rows += 1
                chunk = ("\r\n".join(lines) + "\r\n").encode()
                handle.write(chunk)
                written += len(chunk)
        try:
            with open(path, "rb") as data:
                runtime.storage.incoming.upload_blob(
                    "bobo-big.csv", data, length=written, overwrite=True, max_concurrency=4
                )
        finally:
            os.unlink(path)
        sim.reset_log()
        out = run_child("drain", env)
        athoc = _athoc_counts(sim)
    report, wall = out["report"], out["wall_seconds"]
    result = {
        "bytes": written,
        "rows": rows,
        "users_mapped": users,
        "wall_seconds": wall,
        "rows_per_second": round(report["rows_read"] / wall, 1) if wall else None,
        "mb_per_second": round(written / MB / wall, 2) if wall else None,
        "peak_rss_mb": out["peak_rss_mb"],
        "rss_after_imports_mb": out["rss_after_imports_mb"],
        "memory_measure": "ru_maxrss of the child process running drain() (whole process)",
        "report": report,
        "athoc_requests": athoc,
        "storage_requests": out["storage_requests"],
    }
    limit = 250
    result["summary"] = [
        ("file", f"{written / MB:.0f} MB, {rows} rows", "-", "n/a"),
        ("processed", f"{report['files_processed']}/1", "1", _verdict(report["files_processed"] == 1)),
        ("wall time", f"{wall:.1f} s", "-", "n/a"),
        ("rows/s", f"{result['rows_per_second']}", "-", "n/a"),
        ("peak RSS", f"{out['peak_rss_mb']} MB", f"< {limit} MB", _verdict(out["peak_rss_mb"] < limit)),
        ("AtHoc requests", _fmt(athoc), "-", "n/a"),
        ("storage requests", _fmt(out["storage_requests"]), "-", "n/a"),
    ]
    return result


# --- mapping sync ------------------------------------------------------------------------------------


def mapping(azurite: Any, latency_ms: float, size: str) -> dict[str, Any]:
    users = 50_000 if size == "full" else 2_000
    runs: dict[str, Any] = {}
    with simulator(latency_ms) as sim:
        env = make_env(azurite.connection_string, sim.url)
        runtime_of(env)
        seed_users(sim, None, range(1, users + 1), mapped=False)
        for label in ("cold", "warm"):
            sim.reset_log()
            out = run_child("mapping", env)
            out["athoc_requests"] = _athoc_counts(sim)
            runs[label] = out
    result: dict[str, Any] = {"users": users, "latency_ms": latency_ms, **runs}
    summary = []
    for label, out in runs.items():
        table_writes = _table_writes(out["storage_requests"])
        out["table_write_requests"] = table_writes
        writes = out["report"].get("mapping_entity_writes")
        summary += [
            (f"{label}: status", str(out["report"].get("status")), "success",
             _verdict(out["report"].get("status") == "success")),
            (f"{label}: wall time", f"{out['wall_seconds']:.1f} s", "-", "n/a"),
            (f"{label}: search requests", str(out["athoc_requests"].get("search", 0)), "-", "n/a"),
            (f"{label}: mapping entity writes", str(writes), "0" if label == "warm" else "-",
             _verdict(writes == 0) if label == "warm" else "n/a"),
            (f"{label}: table write requests", f"{table_writes} (status/run log included)", "-", "n/a"),
        ]  # fmt: skip
    result["summary"] = summary
    return result


# --- cleanup -----------------------------------------------------------------------------------------


def cleanup(azurite: Any, latency_ms: float, size: str) -> dict[str, Any]:
    users = 50_000 if size == "full" else 2_000
    stale_every = 10
    now = datetime.now(UTC).replace(tzinfo=None)
    fresh_value = (now - timedelta(hours=1)).strftime(DATETIME_FORMAT)
    stale_value = (now - timedelta(hours=30)).strftime(DATETIME_FORMAT)
    with simulator(latency_ms) as sim:
        env = make_env(azurite.connection_string, sim.url)
        runtime = runtime_of(env)
        seed_users(
            sim, runtime, range(1, users + 1), duty=lambda e: stale_value if e % stale_every == 0 else fresh_value
        )
        sim.reset_log()
        out = run_child("cleanup", env)
        athoc = _athoc_counts(sim)
        remaining_stale = sum(1 for u in sim.users() if u.get(DUTY) == stale_value)
    report = out["report"]
    expected = users // stale_every
    result = {
        "users": users,
        "stale_seeded": expected,
        "latency_ms": latency_ms,
        "wall_seconds": out["wall_seconds"],
        "report": report,
        "athoc_requests": athoc,
        "storage_requests": out["storage_requests"],
        "stale_left_after": remaining_stale,
        "peak_rss_mb": out["peak_rss_mb"],
    }
    result["summary"] = [
        ("cleared", f"{report.get('cleared')}/{expected}", str(expected), _verdict(report.get("cleared") == expected)),
        ("wall time", f"{out['wall_seconds']:.1f} s", "-", "n/a"),
        ("AtHoc requests", _fmt(athoc), "-", "n/a"),
        ("storage requests", _fmt(out["storage_requests"]), "-", "n/a"),
        ("peak RSS", f"{out['peak_rss_mb']} MB", "-", "n/a"),
    ]
    return result


# --- helpers -----------------------------------------------------------------------------------------


def _table_writes(requests: dict[str, int]) -> int:
    return sum(v for k, v in requests.items() if k.startswith("table ") and not k.startswith("table GET"))


def _percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


SCENARIOS = {"backlog": backlog, "burst": burst, "bigfile": bigfile, "mapping": mapping, "cleanup": cleanup}
SCENARIOS["upload"] = upload  # issue 16: the exporter's uploader, bench/upload.py
LATENCY_SCENARIOS = {"backlog", "burst"}  # run once per --latency-ms value; the others once at the first
