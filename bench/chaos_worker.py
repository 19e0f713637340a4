"""A chaos-run worker process: stands for one Functions host instance.

`python -m bench.chaos_worker ingest --threads 4` reads blob names from stdin, one a line, and runs
`ingest_blob` for each on a thread pool (concurrent invocations, as the host does). `sweep --interval S`
calls `drain` every S seconds (the sweep timer). `final` drains until incoming is empty, then exits (the
driver's last sweep, run in a process of its own so the instrumentation never touches the driver's).
Settings come from the environment. `ingest` and `sweep` exit when stdin closes, after finishing what
they started. Each reports what it does as JSON lines on stdout (batch start/end, every update sent to
AtHoc with its event, AtHoc calls, lock events, invocation errors), which the driver uses to kill it at a
chosen point of a batch, to attribute AtHoc's history to events and to explain failures.

Driver commands on stdin (a blob name never starts with "!"): `!arm PHASE` makes the first thread that
reaches PHASE (one of KILL_PHASES) report `paused` and wait there to be SIGKILLed; `!disarm` cancels
that and lets a paused thread go on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# Where a worker can be stopped for its SIGKILL, in the order a batch passes them:
# - batch_started: the batch began (files about to be read, nothing decided);
# - athoc_sync_started: a SyncByCommonNames request was applied by AtHoc, its answer not yet read;
# - athoc_sync_ended: the AtHoc sync returned (AtHoc applied), no watermark saved, no file moved.
KILL_PHASES = ("batch_started", "athoc_sync_started", "athoc_sync_ended")
# The header naming the pipeline send a SyncByCommonNames request belongs to; the simulator records
# request headers, so each value in a user's history is traced to the send (and the event) behind it.
SEND_ID_HEADER = "X-Chaos-Send"
# A paused thread waits this long at most: long enough for the driver's SIGKILL, short enough that a
# driver bug cannot hold the batch lock for the rest of the run.
PAUSE_LIMIT_SECONDS = 60.0

Emit = Callable[..., None]
_out_lock = threading.Lock()


def emit(event: str, **fields: Any) -> None:
    line = json.dumps(
        {"event": event, "pid": os.getpid(), "t": time.time(), "mono": time.monotonic(), **fields}, default=str
    )
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class KillPoint:
    """Stops the first thread that reaches the armed phase, so the driver's SIGKILL lands exactly there."""

    def __init__(self, report: Emit) -> None:
        self.report = report
        self._lock = threading.Lock()
        self._phase: str | None = None
        self._release = threading.Event()

    def arm(self, phase: str) -> None:
        if phase not in KILL_PHASES:
            raise ValueError(f"unknown kill phase {phase!r}")
        with self._lock:
            self._phase = phase
            self._release = threading.Event()

    def disarm(self) -> None:
        with self._lock:
            self._phase = None
            self._release.set()

    def reached(self, phase: str, **details: Any) -> None:
        with self._lock:
            if self._phase != phase:
                return
            self._phase = None  # one pause per arming
            release = self._release
        self.report("paused", phase=phase, **details)
        if not release.wait(PAUSE_LIMIT_SECONDS):
            self.report("pause_expired", phase=phase)


def _event_fields(update: Any) -> dict[str, Any]:
    event = update.source.event
    return {
        "login": update.login,
        "value": update.value,
        "employee": event.employee_id,
        "action": event.action.value,
        "event_time": event.event_time.isoformat(),
        "created": event.created.isoformat() if event.created is not None else None,
        "file": update.source.file_name,
    }


def instrument(runtime: Any, report: Emit, kill_point: KillPoint | None = None) -> None:
    """Wrap pipeline steps to report them (and pause at `kill_point`); what they do is unchanged.

    Patches module attributes of shared.pipeline and shared.storage: meant for a worker process only.
    """
    from shared import pipeline, storage

    def reached(phase: str, **details: Any) -> None:
        if kill_point is not None:
            kill_point.reached(phase, **details)

    batch_numbers = iter(range(1, 10**9))
    numbers_lock = threading.Lock()
    original_batch = pipeline._process_batch

    def process_batch(rt: Any, blobs: list[Any], run_id: str, **kwargs: Any) -> Any:
        with numbers_lock:
            batch = next(batch_numbers)
        report("batch_start", batch=batch, files=[b.name for b in blobs])
        reached("batch_started", batch=batch)
        try:
            result = original_batch(rt, blobs, run_id, **kwargs)
        except BaseException as error:  # e.g. storage gone mid-batch: drain() records it, the files wait
            report("batch_end", batch=batch, raised=repr(error)[:300], processed=0, failed=0, retry=0, errors=[])
            raise
        report(
            "batch_end",
            batch=batch,
            processed=result.files_processed,
            failed=result.files_failed,
            retry=result.files_retry,
            updates=result.updates_sent,
            errors=result.errors[:5],
            files=[(f["name"], f["outcome"]) for f in result.files],
        )
        return result

    pipeline._process_batch = process_batch  # type: ignore[assignment]

    # Every update sent, with its event, recorded before AtHoc sees it; the send's id travels with each
    # of its HTTP requests (retries included) in SEND_ID_HEADER.
    sending = threading.local()
    send_prefix = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
    send_numbers = iter(range(1, 10**9))
    original_send = pipeline._send

    def send(rt: Any, updates: list[Any], works: Any, batch_report: Any, *rest: Any) -> None:
        with numbers_lock:
            send_id = f"{send_prefix}-{next(send_numbers)}"
        report("athoc_send", send_id=send_id, updates=[_event_fields(u) for u in updates])
        sending.send_id = send_id
        try:
            original_send(rt, updates, works, batch_report, *rest)  # rest: the history writer, the run id
        finally:
            sending.send_id = None
        report("athoc_send_end", send_id=send_id)

    pipeline._send = send  # type: ignore[assignment]

    athoc = runtime.athoc
    original_sync = athoc.sync_duty_values

    def sync_duty_values(pairs: Any, **kwargs: Any) -> Any:
        report("athoc_sync_start", rows=len(pairs))
        result = original_sync(pairs, **kwargs)
        report("athoc_sync_end", requests=result.requests, errors=list(result.errors)[:3])
        reached("athoc_sync_ended")
        return result

    athoc.sync_duty_values = sync_duty_values

    session = athoc._transport._session  # the one Session every AtHoc attempt goes through
    original_request = session.request

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        send_id = getattr(sending, "send_id", None)
        if send_id is not None:
            kwargs["headers"] = {**(kwargs.get("headers") or {}), SEND_ID_HEADER: send_id}
        response = original_request(method, url, *args, **kwargs)
        if send_id is not None and url.split("?", 1)[0].endswith("SyncByCommonNames") and response.ok:
            reached("athoc_sync_started", send_id=send_id)
        return response

    session.request = request

    original_acquire = storage.BatchLock.acquire
    original_renew = storage.BatchLock._renew

    def acquire(self: Any) -> bool:
        got = original_acquire(self)
        if got:
            report("lock_acquired")
        return got

    def renew(self: Any) -> None:
        original_renew(self)
        if self.lost.is_set():
            report("lock_lost")

    storage.BatchLock.acquire = acquire  # type: ignore[method-assign]
    storage.BatchLock._renew = renew  # type: ignore[method-assign]


def _command(line: str, kill_point: KillPoint) -> bool:
    """Handle a driver command; False when the line is a blob name."""
    if not line.startswith("!"):
        return False
    verb, _, argument = line[1:].partition(" ")
    if verb == "arm":
        kill_point.arm(argument.strip())
    elif verb == "disarm":
        kill_point.disarm()
    emit("command", command=line)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("ingest", "sweep", "final"))
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--lease-seconds", type=int, default=60)
    args = parser.parse_args(argv)

    from shared.pipeline import drain, ingest_blob
    from shared.runtime import process_runtime

    runtime = process_runtime()
    kill_point = KillPoint(emit)
    instrument(runtime, emit, kill_point)
    emit("ready", mode=args.mode)

    def guarded(what: str, call: Any, *call_args: Any, **kwargs: Any) -> Any:
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
            return result
        except BaseException as error:  # the host would log the failed invocation and carry on
            emit("invocation_error", what=what, error=repr(error)[:500], tb=traceback.format_exc()[-3000:])
            return None

    if args.mode == "ingest":
        with ThreadPoolExecutor(args.threads) as pool:
            for line in sys.stdin:
                name = line.rstrip("\n")
                if name and not _command(name, kill_point):
                    pool.submit(guarded, f"ingest {name}", ingest_blob, runtime, name, trigger="ingest_csv")
    elif args.mode == "sweep":
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(args.interval):
                guarded("sweep", drain, runtime, trigger="sweep_incoming")

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        for line in sys.stdin:
            _command(line.rstrip("\n"), kill_point)
        stop.set()
        thread.join(timeout=300)
    else:
        # Wait for the lock as long as a stale lease can still block it (a worker that died holding it).
        for _ in range(10):
            report = guarded(
                "final drain", drain, runtime, trigger="chaos-final", wait_for_lock=args.lease_seconds + 15
            )
            counts = {k: v for k, v in report.counts().items() if v} if report is not None else {}
            emit("final_drain", counts=counts, errors=report.errors[:5] if report is not None else ["raised"])
            if not runtime.storage.list_incoming():
                break
    emit("exit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
