"""A chaos-run worker process: stands for one Functions host instance.

`python -m bench.chaos_worker ingest --threads 4` reads blob names from stdin, one a line, and runs
`ingest_blob` for each on a thread pool (concurrent invocations, as the host does). `sweep --interval S`
calls `drain` every S seconds (the sweep timer). Settings come from the environment. Both exit when
stdin closes, after finishing what they started. Each reports what it does as JSON lines on stdout
(batch start/end, AtHoc calls, lock events, invocation errors), which the driver uses to kill it
mid-batch and to explain failures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_out_lock = threading.Lock()


def emit(event: str, **fields: Any) -> None:
    line = json.dumps({"event": event, "pid": os.getpid(), "t": time.time(), **fields}, default=str)
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _instrument(runtime: Any, lease_seconds: int) -> None:
    """Wrap pipeline steps to report them; no behaviour changes (the lease comes from BOBO_LOCK_LEASE_SECONDS)."""
    from shared import pipeline, storage

    original_batch = pipeline._process_batch

    def process_batch(rt: Any, blobs: list[Any], run_id: str, **kwargs: Any) -> Any:
        emit("batch_start", files=[b.name for b in blobs])
        report = original_batch(rt, blobs, run_id, **kwargs)
        emit(
            "batch_end",
            processed=report.files_processed,
            failed=report.files_failed,
            retry=report.files_retry,
            updates=report.updates_sent,
            errors=report.errors[:5],
            files=[(f["name"], f["outcome"]) for f in report.files],
        )
        return report

    pipeline._process_batch = process_batch  # type: ignore[assignment]

    athoc = runtime.athoc
    original_sync = athoc.sync_duty_values

    def sync_duty_values(pairs: Any, **kwargs: Any) -> Any:
        emit("athoc_sync_start", rows=len(pairs))
        result = original_sync(pairs, **kwargs)
        emit("athoc_sync_end", requests=result.requests, errors=list(result.errors)[:3])
        return result

    athoc.sync_duty_values = sync_duty_values

    original_acquire = storage.BatchLock.acquire
    original_renew = storage.BatchLock._renew

    def acquire(self: Any) -> bool:
        got = original_acquire(self)
        if got:
            emit("lock_acquired")
        return got

    def renew(self: Any) -> None:
        original_renew(self)
        if self.lost.is_set():
            emit("lock_lost")

    storage.BatchLock.acquire = acquire  # type: ignore[method-assign]
    storage.BatchLock._renew = renew  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("ingest", "sweep"))
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--lease-seconds", type=int, default=60)
    args = parser.parse_args(argv)

    from shared.pipeline import drain, ingest_blob
    from shared.runtime import process_runtime

    runtime = process_runtime()
    _instrument(runtime, args.lease_seconds)
    emit("ready", mode=args.mode)

    def guarded(what: str, call: Any, *call_args: Any, **kwargs: Any) -> None:
        started = time.monotonic()
        try:
            result = call(*call_args, **kwargs)
            seconds = time.monotonic() - started
            outcome = (
                "gone"
                if result is None
                else "lock busy"
                if getattr(result, "lock_busy", False)
                else f"{getattr(result, 'batches', '?')} batches"
            )
            emit("invocation", what=what, seconds=round(seconds, 2), outcome=outcome)
        except BaseException as error:  # the host would log the failed invocation and carry on
            emit("invocation_error", what=what, error=repr(error)[:500], tb=traceback.format_exc()[-3000:])

    if args.mode == "ingest":
        with ThreadPoolExecutor(args.threads) as pool:
            for line in sys.stdin:
                name = line.rstrip("\n")
                if name:
                    pool.submit(guarded, f"ingest {name}", ingest_blob, runtime, name, trigger="ingest_csv")
    else:
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(args.interval):
                guarded("sweep", drain, runtime, trigger="sweep_incoming")

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        for _ in sys.stdin:
            pass
        stop.set()
        thread.join(timeout=300)
    emit("exit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
