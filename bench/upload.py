"""Benchmark of issue 16: a day's backlog of BOBO exports (1,440 files) uploaded by the uploader in one pass.

The uploader runs as the BOBO server runs it, `python -m shared.uploader --folder DIR --once --json` in a
child process, against Azurite on loopback; its wall time includes interpreter start and imports, which
the in-pass figure (from the log's first and last line) leaves out.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import ROOT, child_env, row


def upload(azurite: Any, latency_ms: float, size: str) -> dict[str, Any]:
    files, rows_per_file = (1440, 15) if size == "full" else (120, 15)
    folder = Path(tempfile.mkdtemp(prefix="bobo-out-"))
    try:
        rng = random.Random(16)
        start = datetime(2025, 10, 22, 0, 0, 0)
        old = time.time() - 3600  # a backlog: every file long settled
        total_bytes = 0
        for i in range(files):
            minute = start + timedelta(minutes=i)
            lines = [
                row(
                    "BON" if rng.random() < 0.6 else "BOF",
                    rng.randint(1, 5000),
                    f"{minute + timedelta(seconds=3 * r):%Y%m%d%H%M%S}",
                )
                for r in range(rows_per_file)
            ]
            path = folder / f"bobo-{minute:%Y%m%d-%H%M}.csv"
            path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
            total_bytes += path.stat().st_size
            os.utime(path, (old + i, old + i))
        env = {"BOBO_STORAGE": azurite.connection_string, "BOBO_INCOMING_CONTAINER": "bobo-incoming"}
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "shared.uploader", "--folder", str(folder), "--once", "--json"],
            env=child_env(env),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"uploader failed ({proc.returncode}): {proc.stderr[-2000:]}")
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        archived = len(list((folder / "uploaded").glob("*.csv")))
        in_pass = _pass_seconds(folder / "uploaded" / "uploader.log")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ok = report["uploaded"] == files and archived == files and report["failed"] == 0
    result = {
        "files": files,
        "bytes": total_bytes,
        "wall_seconds": round(wall, 2),
        "files_per_second": round(files / wall, 1),
        "pass_seconds_from_log": in_pass,
        "report": report,
        "archived": archived,
    }
    result["summary"] = [
        ("backlog", f"{files} files, {total_bytes // 1024} KiB", "-", "n/a"),
        ("uploaded + archived", f"{report['uploaded']} + {archived}", f"{files} + {files}", "met" if ok else "MISSED"),
        ("wall time (process)", f"{wall:.1f} s", "-", "n/a"),
        ("files/s (process)", f"{result['files_per_second']}", "-", "n/a"),
        ("pass time (log, s resolution)", f"{in_pass} s", "-", "n/a"),
    ]
    return result


def _pass_seconds(log_file: Path) -> float | None:
    """Seconds between the log's first and last line (whole-second stamps): the pass without start-up."""
    lines = log_file.read_text(encoding="utf-8").splitlines()
    if len(lines) < 2:
        return None
    first, last = (datetime.strptime(line.split(" ", 1)[0], "%Y-%m-%dT%H:%M:%SZ") for line in (lines[0], lines[-1]))
    return (last - first).total_seconds()
