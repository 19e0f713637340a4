"""A measured job in a fresh process, so memory figures are the job's own: `python -m bench.child JOB`.

Settings come from the environment. Prints one JSON line: wall time, the job's report, the storage
requests it made (shared.storage.REQUEST_COUNTS) and the process's resident-memory high-water mark
(`ru_maxrss`, the whole process: interpreter and SDKs included) next to the RSS after imports.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any


def _rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except Exception:
        return 0.0


def main(argv: list[str]) -> int:
    job = argv[0]
    from shared import storage
    from shared.runtime import Runtime
    from shared.settings import Settings

    runtime = Runtime(Settings.from_env())
    runtime.ensure_ready()
    baseline = _rss_mb()
    before = dict(storage.REQUEST_COUNTS)
    started = time.perf_counter()
    report: dict[str, Any]
    if job == "drain":
        from shared.pipeline import drain

        result = drain(runtime, trigger="bench")
        report = result.counts() | {"errors": result.errors[:10]}
    elif job == "mapping":
        from shared.mapping_sync import run_mapping_sync
        from shared.state import StateStore

        mapping_writes = []
        original = StateStore.apply_mapping_changes

        def counting(self: Any, upserts: Any, deletes: Any) -> int:
            written = original(self, upserts, deletes)
            mapping_writes.append(written)
            return written

        StateStore.apply_mapping_changes = counting  # type: ignore[method-assign]
        result = run_mapping_sync(runtime, force=True, trigger="bench")
        report = result.to_json() | {"mapping_entity_writes": sum(mapping_writes)}
    elif job == "cleanup":
        from shared.cleanup import run_cleanup

        result = run_cleanup(runtime, trigger="bench")
        report = result.to_json()
        for key in ("stale", "unparsable_values"):
            if isinstance(report.get(key), list):
                report[key] = len(report[key])
    else:
        raise SystemExit(f"unknown job {job}")
    wall = time.perf_counter() - started
    after = dict(storage.REQUEST_COUNTS)
    requests = {k: after.get(k, 0) - before.get(k, 0) for k in sorted(after) if after.get(k, 0) != before.get(k, 0)}
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {
        "job": job,
        "wall_seconds": round(wall, 3),
        "report": report,
        "storage_requests": requests,
        "rss_after_imports_mb": round(baseline, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }
    print(json.dumps(out, default=str), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
