"""The chaos run (docs/verification.md#the-chaos-run).

Files keep landing while several worker processes ingest them, the sweep runs, AtHoc misbehaves, a worker
is SIGKILLed mid-batch and Azurite restarts; then everything is checked.

Set-up: a persistent Azurite (`--location`, so a restart keeps blobs, tables and leases), the AtHoc
simulator in this process (workers reach it over HTTP; faults are injected here), `ingest_workers`
processes running `bench.chaos_worker ingest` (each a thread pool, like a host instance) and one
`bench.chaos_worker sweep` process. Every upload is delivered to one worker (sometimes to two, as Event
Grid may duplicate; sometimes to none, as events can be lost: the sweep must find those files). Among
the uploads are a `.txt` file (with rows that must never reach AtHoc), a `.csv` with no valid row and an
empty `.csv`.

Schedule: at `kill_after` every worker is armed to stop at one phase of a batch (`kill_phase`, or one
picked from the seed; see bench.chaos_worker.KILL_PHASES); the first to reach it is SIGKILLed there and
replaced. Its lease then blocks all batching for up to `lease_seconds`, so the Azurite restart waits
until that lease has surely expired (plus `restart_margin`), then waits (bounded) for a batch to start
and restarts Azurite while it runs. AtHoc faults are injected one at a time, the next only once the last
was served, so the run's requests actually meet them.

Checks at the end (after faults stop and a final drain): incoming is empty; every uploaded name is in
processed or failed (a `-YYYYMMDDTHHMMSSZ` suffix only on a copy of the same bytes), every copy has the
bytes that were uploaded under its name; failed holds exactly the `.txt` file and the file with no valid
row, each with its documented reason in its `error` metadata; no invocation raised; AtHoc's final duty
values equal the latest event per employee (event time, then DateTime_Created; BOF -> ""); and every
value in each user's AtHoc history is attributed, through the request that wrote it, to the update a
batcher sent and so to a concrete event, whose (event time, DateTime_Created) never decrease.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from bench.chaos_worker import KILL_PHASES, SEND_ID_HEADER
from bench.common import DATETIME_FORMAT, DUTY, ROOT, child_env, login_of, make_env, row, runtime_of, seed_users


@dataclass
class ChaosConfig:
    files: int = 70
    employees: int = 25
    upload_interval: float = 0.4
    ingest_workers: int = 3
    threads: int = 4
    sweep_interval: float = 2.0
    lease_seconds: int = 15
    window_seconds: float = 1.0
    latency: float = 0.02
    kill_after: float = 2.0
    kill_phase: str | None = None  # None: picked from the seed
    kill_wait: float = 30.0  # how long the armed workers may take to reach the phase
    restart_margin: float = 2.0  # seconds after the killed worker's lease has surely expired
    restart_aim_seconds: float = 10.0  # how long the restart waits for a batch to start
    uploads_after_restart: float = 12.0  # files keep landing at least this long after the restart
    fault_every: tuple[float, float] = (0.3, 1.0)
    max_retry_attempts: int = 50
    # Batches outside the final drain: fewer and the faults, the kill and the restart had too little to act
    # on (a problem). The suite's size typically runs 8-14: ~2 before the kill, the rest once its lease expired.
    min_batches: int = 5
    seed: int = 0


SIZES = {
    # The suite's size: ~30 s of uploads, a short lease (the minimum, 15 s) so the killed worker's lock
    # expires early enough for the restart to hit a batch and for the rest to drain within the test.
    "test": ChaosConfig(),
    "small": ChaosConfig(files=40, employees=15, upload_interval=0.3, uploads_after_restart=5.0, min_batches=5),
    # The benchmark's size: hundreds of files, the production lease (60 s) and batch window (2 s).
    "full": ChaosConfig(
        files=400,
        employees=200,
        upload_interval=0.25,
        ingest_workers=4,
        lease_seconds=60,
        window_seconds=2.0,
        kill_after=20.0,
        restart_margin=5.0,
        uploads_after_restart=20.0,
        fault_every=(0.5, 1.5),
        min_batches=20,
    ),
}

SUFFIX = re.compile(r"^(?P<stem>.*)-\d{8}T\d{6}Z(?:-\d+)?(?P<ext>\.[^.]+)$", re.IGNORECASE)
NOT_CSV_REASON = "not a .csv file"
NO_VALID_ROW_REASON = "no valid row"


# --- events ------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Event:
    time: datetime
    created: datetime
    action: str  # BON / BOF
    employee: int = field(compare=False)


class EventSource:
    """Files of BOBO rows for a fixed set of employees at increasing times, with some older rows and
    duplicates. Event times are unique per employee, so each BON value names exactly one event."""

    def __init__(self, employees: int, rng: random.Random) -> None:
        self.rng = rng
        self.employees = list(range(1, employees + 1))
        self.clock = datetime(2025, 10, 22, 6, 0, 0)
        self.used: set[tuple[int, datetime]] = set()
        self.events: dict[int, set[Event]] = {e: set() for e in self.employees}
        self.kinds: Counter[str] = Counter()

    def _new_time(self) -> datetime:
        self.clock += timedelta(seconds=2)
        return self.clock

    def _older_time(self, employee: int) -> datetime | None:
        past = [e.time for e in self.events[employee]]
        if not past:
            return None
        for _ in range(10):
            candidate = self.rng.choice(past) - timedelta(seconds=1)  # odd seconds: never a "new" time
            if (employee, candidate) not in self.used:
                return candidate
        return None

    def next_body(self) -> bytes:
        rows = []
        for _ in range(self.rng.randint(3, 8)):
            employee = self.rng.choice(self.employees)
            when = None
            if self.rng.random() < 0.25:
                when = self._older_time(employee)
                if when is not None:
                    self.kinds["older"] += 1
            if when is None:
                when = self._new_time()
            self.used.add((employee, when))
            created = when + timedelta(seconds=self.rng.randint(0, 3))
            action = "BON" if self.rng.random() < 0.6 else "BOF"
            self.events[employee].add(Event(when, created, action, employee))
            rows.append(row(action, employee, when.strftime("%Y%m%d%H%M%S"), created.strftime("%Y%m%d%H%M%S")))
        self.kinds["rows"] += len(rows)
        return ("\r\n".join(rows) + "\r\n").encode()

    def not_csv_body(self) -> bytes:
        """Valid BOBO rows, newer than any event, in a file that must go to failed unread: if they ever
        reached AtHoc, the final values would show it."""
        when = datetime(2030, 1, 1, 12, 0, 0).strftime("%Y%m%d%H%M%S")
        rows = [row("BON", employee, when) for employee in self.employees[:3]]
        return ("\r\n".join(rows) + "\r\n").encode()

    @staticmethod
    def no_valid_row_body() -> bytes:
        rows = [
            "XXX,00001,P00001,20251022,060000,20251022060000,0,0,0,0",  # unknown transaction type
            "BON,00002,P00002,20251399,060000,20251022060000,0,0,0,0",  # invalid date
            "BON,,P00003,20251022,060000,20251022060000,0,0,0,0",  # empty employee id
        ]
        return ("\r\n".join(rows) + "\r\n").encode()

    def expected(self) -> dict[int, str | None]:
        out: dict[int, str | None] = {}
        for employee, events in self.events.items():
            if not events:
                out[employee] = None
                continue
            latest = max(events)
            out[employee] = latest.time.strftime(DATETIME_FORMAT) if latest.action == "BON" else ""
        return out


# --- the history check -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentUpdate:
    """One update a batcher sent to AtHoc, with the event behind it, as its worker recorded it before sending."""

    send_id: str
    login: str
    value: str
    employee: int
    action: str  # BON / BOF
    event_time: datetime
    created: datetime | None
    file: str = ""

    @property
    def key(self) -> tuple[datetime, datetime]:
        """The order across batches: event time, then DateTime_Created, absent = event time
        (docs/design.md#staleness-and-watermarks)."""
        return (self.event_time, self.created or self.event_time)

    @classmethod
    def from_record(cls, send_id: str, record: Mapping[str, Any]) -> SentUpdate:
        return cls(
            send_id=send_id,
            login=record["login"],
            value=record["value"],
            employee=int(record["employee"]),
            action=record["action"],
            event_time=datetime.fromisoformat(record["event_time"]),
            created=datetime.fromisoformat(record["created"]) if record.get("created") else None,
            file=record.get("file", ""),
        )

    def describe(self) -> str:
        return f"{self.action} {self.event_time} (created {self.created}, file {self.file}, send {self.send_id})"


@dataclass(frozen=True)
class AppliedValue:
    """One value AtHoc applied to a user's duty field, and the send whose request wrote it (None: untagged)."""

    value: str | None
    send_id: str | None


def history_problems(
    employee: int,
    applied: Sequence[AppliedValue],
    sent: Mapping[tuple[str, str], SentUpdate],
    events: Iterable[Event] | None = None,
    *,
    datetime_format: str = DATETIME_FORMAT,
) -> list[str]:
    """What is wrong with one user's AtHoc history: each value must come from an update a batcher sent for
    this user (found by the request's send id, not by the value: every BOF writes ""), carry that update's
    value, belong to an uploaded event (when `events` is given), and the events so attributed must never
    move back in (event time, DateTime_Created)."""
    login = login_of(employee)
    uploaded = {(e.time, e.created, e.action) for e in events} if events is not None else None
    problems: list[str] = []
    previous: SentUpdate | None = None
    values = [a.value for a in applied]
    for position, entry in enumerate(applied):
        where = f"employee {employee}: history[{position}] {entry.value!r}"
        if entry.value is None:
            problems.append(f"{where}: null written (history {values})")
            continue
        update = sent.get((entry.send_id, login)) if entry.send_id is not None else None
        if update is None:
            problems.append(f"{where}: written by no recorded update of this user (send {entry.send_id})")
            continue
        if update.value != entry.value:
            problems.append(f"{where}: the update sent was {update.value!r} ({update.describe()})")
            continue
        expected_value = update.event_time.strftime(datetime_format) if update.action == "BON" else ""
        if update.value != expected_value:
            problems.append(f"{where}: {update.describe()} should write {expected_value!r}")
        if uploaded is not None and (update.event_time, update.created, update.action) not in uploaded:
            problems.append(f"{where}: {update.describe()} is no uploaded event")
        if previous is not None and update.key < previous.key:
            problems.append(
                f"{where}: moved back to {update.describe()} after {previous.describe()} (history {values})"
            )
        if previous is None or update.key > previous.key:
            previous = update
    return problems


def send_id_of(request: Any) -> str | None:
    if request is None:
        return None
    for name, value in (request.headers or {}).items():
        if name.lower() == SEND_ID_HEADER.lower():
            return str(value)
    return None


# --- faults served -----------------------------------------------------------------------------------

API_KINDS = ("sync", "search")
REVOCATION_RECOVERED = "token revoked: 401, then recovered"


def served_faults(requests: Iterable[Any]) -> dict[str, int]:
    """Faults the simulator actually answered with (its request log), not those queued: `<kind> <status>`
    for injected statuses, `<kind> dropped before/after apply`, and 401s on the API with their recovery
    (a later successful API request, after a new token)."""
    served: Counter[str] = Counter()
    waiting_for_recovery = False
    for request in sorted(requests, key=lambda r: r.seq):
        if request.fault == "fail":
            served[f"{request.kind} {request.status}"] += 1
        elif request.fault == "drop":
            served[f"{request.kind} dropped before apply"] += 1
        elif request.fault == "drop_after_apply":
            served[f"{request.kind} dropped after apply"] += 1
        elif request.fault is not None:
            served[f"{request.kind} {request.fault}"] += 1
        elif request.kind in API_KINDS and request.status == 401:
            served["API 401"] += 1
            waiting_for_recovery = True
        elif waiting_for_recovery and request.kind in API_KINDS and request.status and 200 <= request.status < 300:
            served[REVOCATION_RECOVERED] += 1
            waiting_for_recovery = False
    return dict(sorted(served.items()))


def fault_classes(served: Mapping[str, int]) -> dict[str, int]:
    """The four fault classes the issue names, summed from `served_faults`."""
    return {
        "429": sum(n for k, n in served.items() if k.endswith(" 429")),
        "503": sum(n for k, n in served.items() if k.endswith(" 503")),
        "token revocation": served.get(REVOCATION_RECOVERED, 0),
        "dropped connection": sum(n for k, n in served.items() if " dropped " in k),
    }


# --- workers -----------------------------------------------------------------------------------------


class Worker:
    """One worker process and what it reported."""

    def __init__(self, label: str, mode: str, cfg: ChaosConfig, env: dict[str, str], log_dir: Path, run: ChaosRun):
        self.label, self.mode, self.run = label, mode, run
        self.stderr_path = log_dir / f"{label}.stderr.log"
        args = [sys.executable, "-m", "bench.chaos_worker", mode, "--lease-seconds", str(cfg.lease_seconds)]
        if mode == "ingest":
            args += ["--threads", str(cfg.threads)]
        elif mode == "sweep":
            args += ["--interval", str(cfg.sweep_interval)]
        self._stderr: IO[bytes] = open(self.stderr_path, "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            args,
            env=child_env(env),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        self.open_batches: set[int] = set()
        self.ready = threading.Event()
        self.last_event = ""
        self._write_lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, name=f"read-{label}", daemon=True)
        self.reader.start()

    @property
    def in_batch(self) -> bool:
        return bool(self.open_batches)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            name = event.get("event", "")
            if name.startswith(("batch_", "athoc_", "lock_")):
                self.last_event = name
            if name == "ready":
                self.ready.set()
            elif name == "batch_start":
                self.open_batches.add(event["batch"])
            elif name == "batch_end":
                self.open_batches.discard(event["batch"])
            self.run.record(self, event)
        self.open_batches.clear()
        # The process is gone (exited or killed): a batch it had open ended here.
        self.run.record(self, {"event": "process_gone", "t": time.time()})

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, line: str) -> bool:
        try:
            with self._write_lock:
                assert self.proc.stdin is not None
                self.proc.stdin.write(line + "\n")
                self.proc.stdin.flush()
            return True
        except (OSError, ValueError):
            return False  # the process died: the event is lost, the sweep must find the file

    def close_input(self) -> None:
        with contextlib.suppress(OSError, ValueError), self._write_lock:
            assert self.proc.stdin is not None
            self.proc.stdin.close()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def close(self, timeout: float) -> None:
        self.close_input()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.run.note(f"{self.label} did not exit within {timeout:.0f} s; killed")
            self.kill()
        self.reader.join(timeout=5)
        self._stderr.close()


# --- the run -----------------------------------------------------------------------------------------


class ChaosRun:
    def __init__(self, cfg: ChaosConfig, log_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed or None)
        self.kill_phase = cfg.kill_phase or self.rng.choice(KILL_PHASES)
        if self.kill_phase not in KILL_PHASES:
            raise ValueError(f"kill_phase must be one of {KILL_PHASES}")
        self.log_dir = log_dir or Path(ROOT / "bench-results" / "chaos-logs" / f"seed-{cfg.seed}")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.events: list[dict[str, Any]] = []
        self._events_lock = threading.Lock()
        self.notes: list[str] = []
        self.faults: Counter[str] = Counter()
        self.stats: dict[str, Any] = {}
        self.uploaded: dict[str, bytes] = {}
        self.expected_failed: dict[str, str] = {}  # name -> the reason its `error` metadata must give
        self.stop_faults = threading.Event()
        self.workers: list[Worker] = []
        self._workers_lock = threading.Lock()
        self._worker_seq = 0
        self.batch_starts = 0
        self.paused = threading.Event()
        self.paused_worker: Worker | None = None
        self.killed = threading.Event()
        self.kill_time = 0.0
        self.restarted = threading.Event()
        self.restart_time = 0.0

    def record(self, worker: Worker, event: dict[str, Any]) -> None:
        with self._events_lock:
            self.events.append({"worker": worker.label, **event})
            if event.get("event") == "batch_start":
                self.batch_starts += 1
            elif event.get("event") == "paused" and self.paused_worker is None:
                self.paused_worker = worker
                self.paused.set()

    def note(self, text: str) -> None:
        self.notes.append(f"{time.monotonic() - self.t0:6.1f}s {text}")

    # -- processes --
    def _spawn(self, mode: str) -> Worker:
        with self._workers_lock:
            self._worker_seq += 1
            worker = Worker(f"{mode}-{self._worker_seq}", mode, self.cfg, self.env, self.log_dir, self)
            self.workers.append(worker)
            return worker

    def _live(self, *modes: str) -> list[Worker]:
        with self._workers_lock:
            return [w for w in self.workers if w.mode in modes and w.alive]

    def _dispatch(self, name: str) -> None:
        workers = self._live("ingest")
        if not workers:
            return
        roll = self.rng.random()
        if roll < 0.05:
            self.faults["event lost"] += 1
            return
        targets = self.rng.sample(workers, 2 if roll > 0.92 and len(workers) > 1 else 1)
        if len(targets) > 1:
            self.faults["event duplicated"] += 1
        for worker in targets:
            worker.send(name)

    # -- threads --
    def _upload(self, name: str, body: bytes) -> None:
        deadline = time.monotonic() + 120
        while True:
            try:
                self.uploads.upload_blob(name, body, overwrite=True)
                return
            except Exception as error:
                if time.monotonic() > deadline:
                    raise
                self.faults["upload retried"] += 1
                self.note(f"upload of {name} failed ({error.__class__.__name__}); retrying")
                time.sleep(0.5)

    def _uploader(self) -> None:
        source, cfg = self.source, self.cfg
        names: list[str] = []
        # Files that must end in failed, at positions picked from the seed.
        specials = dict(
            zip(
                self.rng.sample(range(cfg.files), 3),
                ("not csv", "no valid row", "empty"),
                strict=True,
            )
        )
        i = 0
        # Files keep landing until `uploads_after_restart` seconds after the restart (at most twice the
        # planned number), so batches run on both sides of it.
        while i < cfg.files or (not self._uploaded_past_restart() and i < 2 * cfg.files):
            roll = self.rng.random()
            special = specials.get(i)
            if special == "not csv":
                name, body = f"bobo-{i:05d}.txt", source.not_csv_body()
                self.expected_failed[name] = NOT_CSV_REASON
            elif special == "no valid row":
                name, body = f"bobo-{i:05d}-no-valid-row.csv", source.no_valid_row_body()
                self.expected_failed[name] = NO_VALID_ROW_REASON
            elif special == "empty":
                name, body = f"bobo-{i:05d}-empty.csv", b""  # nothing to do: processed, not failed
            elif roll < 0.04 and names:
                name = self.rng.choice(names)  # the exporter sends a file again, same name and bytes
                body = self.uploaded[name]
                self.faults["same name re-uploaded"] += 1
            elif roll < 0.10 and names:
                name = f"bobo-{i:05d}.csv"  # a copy of an earlier file under a new name: duplicate events
                body = self.uploaded[self.rng.choice(names)]
                self.faults["duplicate file"] += 1
            else:
                name = f"bobo-{i:05d}.csv"
                body = source.next_body()
            self.uploaded[name] = body
            if special is None and name not in names:
                names.append(name)
            self._upload(name, body)
            self._dispatch(name)
            i += 1
            time.sleep(cfg.upload_interval * self.rng.uniform(0.3, 1.7))
        self.note(f"uploads finished ({i} files)")

    def _uploaded_past_restart(self) -> bool:
        return self.restarted.is_set() and time.monotonic() >= self.restart_time + self.cfg.uploads_after_restart

    def _fault_plan(self, first: bool) -> list[str]:
        required = ["429", "503", "revoke", "drop before apply"]
        others = ["drop after apply", "revoke + token 503", "applied, then lost for good"]
        self.rng.shuffle(required)
        self.rng.shuffle(others)
        # The first round serves the four classes the issue names before anything else.
        return required + others if first else self.rng.sample(required + others, len(required + others))

    def _fault_injector(self) -> None:
        sim, rng = self.sim, self.rng
        plan = self._fault_plan(first=True)
        revoked_at: float | None = None
        while not self.stop_faults.wait(rng.uniform(*self.cfg.fault_every)):
            # One fault at a time: a new one only once the last was served, so faults are met while the
            # run goes on instead of piling up in a queue that is cleared at the end.
            if sim.pending_faults():
                continue
            if revoked_at is not None:
                after = [r for r in reversed(sim.requests) if r.started >= revoked_at and r.kind in API_KINDS]
                if not after:
                    continue  # not met yet: no API request since
                if not any(r.status == 401 for r in after):
                    # Every token in use was issued after the revocation (none had been issued yet): again.
                    plan.insert(0, "revoke")
                revoked_at = None
            if not plan:
                plan = self._fault_plan(first=False)
            fault = plan.pop(0)
            if fault == "429":
                sim.fail_next(rng.randint(1, 2), status=429, retry_after=1, kinds=("sync",))
                self.faults["AtHoc 429 (Retry-After 1)"] += 1
            elif fault == "503":
                sim.fail_next(rng.randint(1, 2), status=503, kinds=("sync",))
                self.faults["AtHoc 503"] += 1
            elif fault == "revoke":
                revoked_at = time.monotonic()
                sim.revoke_tokens()
                self.faults["AtHoc tokens revoked"] += 1
            elif fault == "drop before apply":
                sim.drop_next(1, kinds=("sync",))
                self.faults["AtHoc connection dropped before apply"] += 1
            elif fault == "drop after apply":
                sim.drop_next(1, kinds=("sync",), after_apply=True)
                self.faults["AtHoc connection dropped after apply"] += 1
            elif fault == "revoke + token 503":
                revoked_at = time.monotonic()
                sim.fail_next(1, status=503, kinds=("token",))
                sim.revoke_tokens()
                self.faults["AtHoc tokens revoked, then token endpoint 503"] += 1
            else:
                # A call that fails for good (ATHOC_MAX_RETRIES=2) after AtHoc applied it: the value is
                # in AtHoc, the watermark is not; the files wait for a retry.
                sim.drop_next(1, kinds=("sync",), after_apply=True)
                sim.fail_next(2, status=429, retry_after=1, kinds=("sync",))
                self.faults["AtHoc sync applied, then answer lost and 2 x 429"] += 1

    def _lease_state(self) -> str:
        try:
            lock = self.runtime.storage.batch_lock().container
            return str(lock.get_container_properties().lease.state)
        except Exception as error:
            return f"unknown ({error.__class__.__name__})"

    def _killer(self) -> None:
        try:
            self._kill_one()
        finally:
            self.kill_time = time.monotonic()
            self.killed.set()

    def _kill_one(self) -> None:
        time.sleep(self.cfg.kill_after)
        phase = self.kill_phase
        armed = self._live("ingest", "sweep")
        for worker in armed:
            worker.send(f"!arm {phase}")
        self.note(f"workers armed to stop at {phase}")
        self.paused.wait(self.cfg.kill_wait)
        victim = self.paused_worker
        for worker in armed:
            if worker is not victim:
                worker.send("!disarm")  # also lets a second thread that paused meanwhile go on
        if victim is not None:
            in_batch, lease = victim.in_batch, self._lease_state()
            victim.kill()
            self.stats["kill"] = {
                "worker": victim.label,
                "phase": phase,
                "phase_requested": phase,
                "mid_batch": in_batch,
                "last_event": phase,
                "lease": lease,
                "at_seconds": round(time.monotonic() - self.t0, 1),
            }
            self.note(f"SIGKILL {victim.label} at {phase} (in batch: {in_batch}, lock lease {lease})")
        else:
            busy = [w for w in self._live("ingest", "sweep") if w.in_batch] or self._live("ingest")
            victim = busy[0]
            in_batch = victim.in_batch
            victim.kill()
            self.stats["kill"] = {
                "worker": victim.label,
                "phase": None,
                "phase_requested": phase,
                "mid_batch": in_batch,
                "last_event": victim.last_event,
                "at_seconds": round(time.monotonic() - self.t0, 1),
            }
            self.note(f"SIGKILL {victim.label}: no worker reached {phase} within {self.cfg.kill_wait:.0f} s")
        self._replaced.add(victim.label)
        self._spawn(victim.mode)

    def _restarter(self) -> None:
        try:
            self._restart_azurite()
        finally:
            self.restart_time = time.monotonic()
            self.restarted.set()

    def _restart_azurite(self) -> None:
        cfg = self.cfg
        self.killed.wait(cfg.kill_after + cfg.kill_wait + 30)
        # The killed worker's lease blocks every batch until it expires (at most lease_seconds after its last
        # renewal); a restart before then would find no batch running.
        time.sleep(max(0.0, self.kill_time + cfg.lease_seconds + cfg.restart_margin - time.monotonic()))
        # Aim at a batch that has just started, so it is still running when the storage goes away.
        starts, aim_until = self.batch_starts, time.monotonic() + cfg.restart_aim_seconds
        while self.batch_starts == starts and time.monotonic() < aim_until:
            time.sleep(0.005)
        aimed = self.batch_starts > starts
        started = time.monotonic()
        stop_wall = time.time()
        self.azurite.stop()
        down_wall = time.time()
        self.azurite.start()
        up_wall = time.time()
        self.stats["azurite_restart"] = {
            "seconds": round(time.monotonic() - started, 2),
            "at_seconds": round(started - self.t0, 1),
            "aimed_at_a_batch_start": aimed,
            "stop_seconds": round(down_wall - stop_wall, 2),
            "stop_t": stop_wall,
            "down_t": down_wall,
            "up_t": up_wall,
        }
        self.note(f"Azurite restarted in {time.monotonic() - started:.1f} s (aimed at a batch start: {aimed})")
        # A host whose worker died with the storage would be restarted by the platform; ours survive.
        for worker in list(self.workers):
            if not worker.alive and worker.mode in ("ingest", "sweep") and worker.label not in self._replaced:
                self._replaced.add(worker.label)
                self.note(f"{worker.label} exited (code {worker.proc.returncode}); starting a new one")
                self._spawn(worker.mode)

    # -- the whole run --
    def run(self) -> dict[str, Any]:
        from azure.storage.blob import BlobServiceClient

        from tools.athoc_sim import AtHocSimulator
        from tools.azurite import start_azurite

        cfg = self.cfg
        self.t0 = time.monotonic()
        self.sim_t0 = time.monotonic()
        self.wall_t0 = time.time()
        self._replaced: set[str] = set()
        self.azurite = start_azurite(persistent=True)
        self.sim = AtHocSimulator().start()
        try:
            self.sim.latency = cfg.latency
            self.env = make_env(
                self.azurite.connection_string,
                self.sim.url,
                BOBO_BATCH_WINDOW_SECONDS=str(cfg.window_seconds),
                BOBO_MAX_RETRY_ATTEMPTS=str(cfg.max_retry_attempts),
                ATHOC_CALL_BUDGET_SECONDS="20",
                ATHOC_MAX_RETRIES="2",
                BOBO_LOCK_LEASE_SECONDS=str(cfg.lease_seconds),
                LOG_LEVEL="WARNING",
            )
            self.runtime = runtime_of(self.env)
            # The exporter's own client: no SDK retries (their backoff would stall uploads while Azurite
            # restarts); _upload retries every 0.5 s instead.
            self.uploads = BlobServiceClient.from_connection_string(
                self.azurite.connection_string, retry_total=0
            ).get_container_client(self.runtime.settings.incoming_container)
            self.source = EventSource(cfg.employees, self.rng)
            seed_users(self.sim, self.runtime, self.source.employees)
            for _ in range(cfg.ingest_workers):
                self._spawn("ingest")
            self._spawn("sweep")
            # Uploads and the kill timer start once every worker can take work (imports take seconds on
            # 2 cores), so batches run before the kill too.
            for worker in list(self.workers):
                worker.ready.wait(60)
            self.note("workers ready")
            threads = [
                threading.Thread(target=self._fault_injector, name="faults", daemon=True),
                threading.Thread(target=self._killer, name="killer", daemon=True),
                threading.Thread(target=self._restarter, name="restarter", daemon=True),
            ]
            for t in threads:
                t.start()
            self._uploader()
            self.stop_faults.set()
            for t in threads:
                t.join(timeout=120)
            self.sim.clear_faults()
            self.sim.latency = cfg.latency
            self.note("faults stopped")
            self._settle()
            return self._check()
        finally:
            for worker in list(self.workers):
                if worker.alive:
                    worker.kill()
            self.sim.stop()
            self.azurite.cleanup()

    def _settle(self) -> None:
        """Let the workers finish, stop them, then drain whatever is left (the final sweep)."""
        deadline = time.monotonic() + self.cfg.lease_seconds + 45
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if not list(self.runtime.storage.list_incoming()) and not any(w.in_batch for w in self.workers):
                    break
            time.sleep(0.5)
        for worker in list(self.workers):
            if worker.alive:
                worker.close(timeout=self.cfg.lease_seconds + 60)
        self.stats["worker_exit_codes"] = {w.label: w.proc.returncode for w in self.workers}
        final = self._spawn("final")
        final.close(timeout=10 * (self.cfg.lease_seconds + 30))
        drains = [e for e in self.events if e.get("event") == "final_drain"]
        self.stats["final_drains"] = [{**e["counts"], "errors": e["errors"]} for e in drains]
        self.note(f"final drain: {len(drains)} run(s)")

    def _batches(self) -> dict[tuple[str, int], dict[str, Any]]:
        """Every batch a worker started: (worker, number) -> start and end times (end None: never ended)."""
        batches: dict[tuple[str, int], dict[str, Any]] = {}
        for e in self.events:
            if e.get("event") == "batch_start":
                batches[(e["worker"], e["batch"])] = {"start": e["t"], "end": None, "files": len(e["files"])}
            elif e.get("event") == "batch_end" and (e["worker"], e["batch"]) in batches:
                batch = batches[(e["worker"], e["batch"])]
                batch.update(end=e["t"], processed=e["processed"], retry=e["retry"], errors=e["errors"][:2])
                if "raised" in e:
                    batch["raised"] = e["raised"]
            elif e.get("event") == "process_gone":
                for (worker, _), batch in batches.items():
                    if worker == e["worker"] and batch["end"] is None:
                        batch.update(end=e["t"], died=True)
        return batches

    def _restart_outcome(self, batches: Mapping[tuple[str, int], dict[str, Any]]) -> None:
        restart = self.stats.get("azurite_restart")
        if restart is None:
            return
        stop_t, down_t = restart.pop("stop_t"), restart.pop("down_t")
        restart.pop("up_t")
        running = {
            f"{worker}#{n}": b
            for (worker, n), b in batches.items()
            if b["start"] <= stop_t and (b["end"] is None or b["end"] >= stop_t)
        }
        # Hit: a batch that began before Azurite was stopped and was still running once it had exited.
        hit = {k: b for k, b in running.items() if b["end"] is None or b["end"] >= down_t}
        restart["batches_running"] = sorted(running)
        restart["hit_running_batch"] = bool(hit)
        restart["batches_hit"] = {
            k: {key: b.get(key) for key in ("files", "processed", "retry", "errors", "raised") if key in b}
            for k, b in sorted(hit.items())
        }

    def _check(self) -> dict[str, Any]:
        runtime, settings = self.runtime, self.runtime.settings
        problems: list[str] = []

        def blobs(container: str) -> dict[str, bytes]:
            client = runtime.storage.container(container)
            return {b.name: client.download_blob(b.name).readall() for b in client.list_blobs()}

        incoming = blobs(settings.incoming_container)
        processed = blobs(settings.processed_container)
        failed = blobs(settings.failed_container)
        rejects = {b.name for b in runtime.storage.container(settings.rejects_container).list_blobs()}
        if incoming:
            problems.append(f"{len(incoming)} file(s) still in incoming: {sorted(incoming)[:10]}")
        failed_reasons = {}
        for name in sorted(failed):
            meta = runtime.storage.container(settings.failed_container).get_blob_client(name).get_blob_properties()
            failed_reasons[name] = meta.metadata.get("error", "")
        # Failed only where the rules say so: exactly the .txt file and the file with no valid row.
        for name, reason in failed_reasons.items():
            wanted = self.expected_failed.get(name)
            if wanted is None:
                problems.append(f"file in failed that the rules do not send there: {name}: {reason}")
            elif not reason.startswith(wanted):
                problems.append(f"failed/{name}: error {reason!r}, the documented reason is {wanted!r}")
        for name in sorted(set(self.expected_failed) - set(failed_reasons)):
            where = "processed" if name in processed else "nowhere"
            problems.append(f"{name} should be in failed ({self.expected_failed[name]}), is {where}")
        for name, reason in self.expected_failed.items():
            if reason == NO_VALID_ROW_REASON and f"{name}.rejects.csv" not in rejects:
                problems.append(f"no rejects report for {name}")
        copies: dict[str, list[str]] = {}
        for where, content in (("processed", processed), ("failed", failed)):
            for name, data in content.items():
                match = SUFFIX.match(name)
                base = name if name in self.uploaded else (match["stem"] + match["ext"] if match else name)
                copies.setdefault(base, []).append(f"{where}/{name}")
                if base not in self.uploaded:
                    problems.append(f"{where}/{name} was never uploaded")
                elif data != self.uploaded[base]:
                    problems.append(f"{where}/{name} differs from the bytes uploaded as {base}")
        missing = sorted(set(self.uploaded) - set(copies))
        if missing:
            problems.append(f"{len(missing)} uploaded file(s) missing everywhere: {missing[:10]}")
        extra_copies = {k: v for k, v in copies.items() if len(v) > 1}

        expected = self.source.expected()
        wrong = []
        for employee, value in expected.items():
            user = self.sim.get_user(login_of(employee)) or {}
            actual = user.get(DUTY)
            if actual != value:
                wrong.append(f"employee {employee}: AtHoc {actual!r}, events say {value!r}")
        if wrong:
            problems.append(f"{len(wrong)} final AtHoc value(s) wrong: {wrong[:10]}")

        sent = self._sent_updates()
        requests_by_seq = {r.seq: r for r in self.sim.requests}
        regressions: list[str] = []
        writes = 0
        for employee in self.source.employees:
            entries = self.sim.history_entries(login_of(employee))
            writes += len(entries)
            applied = [AppliedValue(e.value, send_id_of(requests_by_seq.get(e.request_seq))) for e in entries]
            regressions += history_problems(employee, applied, sent, self.source.events[employee])
        if regressions:
            problems.append(f"{len(regressions)} history problem(s): {regressions[:10]}")
        raised = [e for e in self.events if e.get("event") == "invocation_error"]
        if raised:
            problems.append(f"{len(raised)} invocation(s) raised: {[e['error'] for e in raised[:5]]}")
            self.stats["invocation_errors"] = raised[:5]

        kill = self.stats.get("kill")
        if kill is None:
            problems.append("no worker was killed")
        elif not kill["mid_batch"] or kill["phase"] != kill["phase_requested"]:
            problems.append(f"the kill missed its point: {kill}")
        batches = self._batches()
        self._restart_outcome(batches)
        restart = self.stats.get("azurite_restart")
        if restart is None:
            problems.append("Azurite was not restarted")
        elif not restart["hit_running_batch"]:
            problems.append(f"the Azurite restart hit no running batch: {restart}")
        finals = {w.label for w in self.workers if w.mode == "final"}
        batches_run = sum(1 for (worker, _), b in batches.items() if worker not in finals and not b.get("died"))
        if batches_run < self.cfg.min_batches:
            problems.append(
                f"only {batches_run} batch(es) ran before the final drain (at least {self.cfg.min_batches})"
            )
        served = served_faults(self.sim.requests)
        classes = fault_classes(served)
        unserved = [name for name, n in classes.items() if not n]
        if unserved:
            problems.append(f"fault classes never served: {unserved} (served: {served})")
        self._dump(regressions, wrong, sent)

        kinds = Counter(e.get("event") for e in self.events)
        return {
            "config": asdict(self.cfg),
            "seconds": round(time.monotonic() - self.t0, 1),
            "files_uploaded": len(self.uploaded),
            "uploads": self.cfg.files,
            "rows": self.source.kinds["rows"],
            "older_rows": self.source.kinds["older"],
            "processed_blobs": len(processed),
            "failed_blobs": len(failed),
            "failed_files": failed_reasons,
            "expected_failed": dict(self.expected_failed),
            "names_with_several_copies": extra_copies,
            "athoc_requests": self.sim.counts(),
            "athoc_duty_writes": writes,
            "athoc_sends": len({send_id for send_id, _ in sent}),
            "batches_run": batches_run,
            "batches_final": sum(1 for (worker, _) in batches if worker in finals),
            "faults": dict(self.faults),
            "faults_served": served,
            "fault_classes_served": classes,
            "worker_events": {k: v for k, v in kinds.items() if k},
            "lock_lost_events": kinds.get("lock_lost", 0),
            "notes": self.notes,
            **self.stats,
            "problems": problems,
            "ok": not problems,
        }

    def _sent_updates(self) -> dict[tuple[str, str], SentUpdate]:
        sent: dict[tuple[str, str], SentUpdate] = {}
        for e in self.events:
            if e.get("event") == "athoc_send":
                for record in e["updates"]:
                    sent[(e["send_id"], record["login"])] = SentUpdate.from_record(e["send_id"], record)
        return sent

    def _dump(self, regressions: list[str], wrong: list[str], sent: Mapping[tuple[str, str], SentUpdate]) -> None:
        """Everything needed to explain a failed check: worker events, AtHoc sync requests, timelines."""
        suspects = {int(m) for m in re.findall(r"employee (\d+)", " ".join(regressions + wrong))}
        logins = {login_of(e): e for e in suspects}
        syncs = []
        for request in self.sim.requests:
            if request.kind != "sync" or not isinstance(request.body, list):
                continue
            rows = [r for r in request.body if r.get("LOGIN_ID") in logins]
            if rows:
                syncs.append(
                    {
                        "t": round(request.started - self.sim_t0, 3),
                        "seq": request.seq,
                        "send": send_id_of(request),
                        "port": request.client_port,
                        "status": request.status,
                        "fault": request.fault,
                        "rows": rows,
                    }
                )
        timeline = {
            e: [f"{ev.time} {ev.action} created {ev.created}" for ev in sorted(self.source.events[e])] for e in suspects
        }
        histories = {
            login: [
                {"value": h.value, "t": round(h.applied_at - self.sim_t0, 3), "seq": h.request_seq}
                for h in self.sim.history_entries(login)
            ]
            for login in logins
        }
        sends = {
            login: [u.describe() for (_, sent_login), u in sent.items() if sent_login == login] for login in logins
        }
        files_with = {
            login_of(e): [n for n, body in self.uploaded.items() if f",{e:05d}," in body.decode()] for e in suspects
        }
        dump = {
            "seed": self.cfg.seed,
            "kill_phase": self.kill_phase,
            "notes": self.notes,
            "regressions": regressions,
            "wrong": wrong,
            "timelines": timeline,
            "histories": histories,
            "sends": sends,
            "files_with": files_with,
            "syncs": syncs,
            "worker_events": [
                {**e, "t": round(e["t"] - self.wall_t0, 3)} for e in self.events if e.get("event") != "ready"
            ],
        }
        path = self.log_dir / f"chaos-{self.cfg.seed}.json"
        path.write_text(json.dumps(dump, indent=1, default=str))
        self.stats["diagnostics"] = str(path)


def run_chaos(
    size: str = "test", *, seed: int = 0, kill_phase: str | None = None, log_dir: Path | None = None
) -> dict[str, Any]:
    """Run the chaos run at `size`; `seed` 0 picks one at random, `kill_phase` None picks one from the seed."""
    overrides: dict[str, Any] = {"seed": seed or random.randrange(1, 10**6)}
    if kill_phase is not None:
        overrides["kill_phase"] = kill_phase
    cfg = ChaosConfig(**{**asdict(SIZES[size]), **overrides})
    return ChaosRun(cfg, log_dir=log_dir).run()
