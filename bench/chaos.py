"""The chaos run (issue 8 point 2): files keep landing while several worker processes ingest them, the sweep
runs, AtHoc misbehaves, a worker is SIGKILLed mid-batch and Azurite restarts; then everything is checked.

Set-up: a persistent Azurite (`--location`, so a restart keeps blobs, tables and leases), the AtHoc
simulator in this process (workers reach it over HTTP; faults are injected here), `ingest_workers`
processes running `bench.chaos_worker ingest` (each a thread pool, like a host instance) and one
`bench.chaos_worker sweep` process. Every upload is delivered to one worker (sometimes to two, as Event
Grid may duplicate; sometimes to none, as events can be lost: the sweep must find those files).

Checks at the end (after faults stop and a final drain): incoming is empty; every uploaded name is in
processed or failed (a `-YYYYMMDDTHHMMSSZ` suffix only on a copy of the same bytes), every copy has the
bytes that were uploaded under its name; failed is empty (retries are set high, faults are bounded);
no invocation raised; AtHoc's final duty values equal the latest event per employee (event time, then
DateTime_Created; BOF -> ""); and each user's history in the simulator never moves back to an older event.
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
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from bench.common import DATETIME_FORMAT, DUTY, ROOT, child_env, login_of, make_env, row, runtime_of, seed_users


@dataclass
class ChaosConfig:
    files: int = 50
    employees: int = 25
    upload_interval: float = 0.4
    ingest_workers: int = 3
    threads: int = 4
    sweep_interval: float = 2.0
    lease_seconds: int = 15
    window_seconds: float = 1.0
    latency: float = 0.02
    kill_after: float = 5.0
    restart_after: float = 12.0
    fault_every: tuple[float, float] = (0.8, 2.0)
    max_retry_attempts: int = 50
    seed: int = 0


SIZES = {
    # The suite's size: ~20 s of uploads, a short lease so the killed worker's lock expires in <= 15 s.
    "test": ChaosConfig(),
    "small": ChaosConfig(files=30, employees=15, upload_interval=0.3, kill_after=3.0, restart_after=6.0),
    # The benchmark's size: hundreds of files, the production lease (60 s) and batch window (2 s).
    "full": ChaosConfig(
        files=400,
        employees=200,
        upload_interval=0.25,
        ingest_workers=4,
        lease_seconds=60,
        window_seconds=2.0,
        kill_after=20.0,
        restart_after=50.0,
    ),
}

SUFFIX = re.compile(r"^(?P<stem>.*)-\d{8}T\d{6}Z(?:-\d+)?(?P<ext>\.csv)$", re.IGNORECASE)


# --- events ------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Event:
    time: datetime
    created: datetime
    action: str  # BON / BOF
    employee: int = field(compare=False)


class EventSource:
    """Files of BOBO rows for a fixed set of employees at increasing times, with some older rows and
    duplicates. Event times are unique per employee, so each duty value names exactly one event."""

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

    def expected(self) -> dict[int, str | None]:
        out: dict[int, str | None] = {}
        for employee, events in self.events.items():
            if not events:
                out[employee] = None
                continue
            latest = max(events)
            out[employee] = latest.time.strftime(DATETIME_FORMAT) if latest.action == "BON" else ""
        return out

    def history_problems(self, employee: int, history: list[str | None]) -> list[str]:
        """Each successive value must belong to an event not older than the previous value's event."""
        ordered = sorted(self.events[employee])
        position = -1
        problems = []
        for value in history:
            if value is None:
                problems.append(f"employee {employee}: null written (history {history})")
                continue
            if value == "":
                candidates = [i for i, e in enumerate(ordered) if e.action == "BOF" and i >= position]
                if not candidates:
                    problems.append(f"employee {employee}: went back to an older BOF (history {history})")
                    continue
                position = candidates[0]
                continue
            try:
                when = datetime.strptime(value, DATETIME_FORMAT)
            except ValueError:
                problems.append(f"employee {employee}: unparsable value {value!r}")
                continue
            matches = [i for i, e in enumerate(ordered) if e.action == "BON" and e.time == when]
            if not matches:
                problems.append(f"employee {employee}: value {value!r} matches no BON event")
                continue
            if matches[0] < position:
                problems.append(
                    f"employee {employee}: moved back to {value!r} after a newer event "
                    f"({ordered[position].action} {ordered[position].time}); history {history}"
                )
            position = max(position, matches[0])
        return problems


# --- workers -----------------------------------------------------------------------------------------


class Worker:
    """One worker process and what it reported."""

    def __init__(self, label: str, mode: str, cfg: ChaosConfig, env: dict[str, str], log_dir: Path, run: ChaosRun):
        self.label, self.mode, self.run = label, mode, run
        self.stderr_path = log_dir / f"{label}.stderr.log"
        args = [sys.executable, "-m", "bench.chaos_worker", mode, "--lease-seconds", str(cfg.lease_seconds)]
        args += ["--threads", str(cfg.threads)] if mode == "ingest" else ["--interval", str(cfg.sweep_interval)]
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
        self.in_batch = False
        self.last_event = ""
        self.batch_started = threading.Event()
        self._write_lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, name=f"read-{label}", daemon=True)
        self.reader.start()

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
            if name == "batch_start":
                self.in_batch = True
                self.batch_started.set()
            elif name == "batch_end":
                self.in_batch = False
            self.run.record(self.label, event)
        self.in_batch = False

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, name: str) -> bool:
        try:
            with self._write_lock:
                assert self.proc.stdin is not None
                self.proc.stdin.write(name + "\n")
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
        self.seed = cfg.seed
        self.log_dir = log_dir or Path(ROOT / "bench-results" / "chaos-logs" / f"seed-{cfg.seed}")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.events: list[dict[str, Any]] = []
        self._events_lock = threading.Lock()
        self.notes: list[str] = []
        self.faults: Counter[str] = Counter()
        self.stats: dict[str, Any] = {}
        self.uploaded: dict[str, bytes] = {}
        self.stop_faults = threading.Event()
        self.workers: list[Worker] = []
        self._workers_lock = threading.Lock()
        self._worker_seq = 0

    def record(self, label: str, event: dict[str, Any]) -> None:
        with self._events_lock:
            self.events.append({"worker": label, **event})

    def note(self, text: str) -> None:
        self.notes.append(f"{time.monotonic() - self.t0:6.1f}s {text}")

    # -- processes --
    def _spawn(self, mode: str) -> Worker:
        with self._workers_lock:
            self._worker_seq += 1
            worker = Worker(f"{mode}-{self._worker_seq}", mode, self.cfg, self.env, self.log_dir, self)
            self.workers.append(worker)
            return worker

    def _ingest_workers(self) -> list[Worker]:
        with self._workers_lock:
            return [w for w in self.workers if w.mode == "ingest" and w.alive]

    def _dispatch(self, name: str) -> None:
        workers = self._ingest_workers()
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
        source = self.source
        names: list[str] = []
        for i in range(self.cfg.files):
            roll = self.rng.random()
            if roll < 0.04 and names:
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
            if name not in names:
                names.append(name)
            self._upload(name, body)
            self._dispatch(name)
            time.sleep(self.cfg.upload_interval * self.rng.uniform(0.3, 1.7))
        self.uploads_done = time.monotonic()

    def _fault_injector(self) -> None:
        sim, rng = self.sim, self.rng
        while not self.stop_faults.wait(rng.uniform(*self.cfg.fault_every)):
            choice = rng.randrange(7)
            if choice == 0:
                sim.fail_next(rng.randint(1, 2), status=429, retry_after=1, kinds=("sync", "search"))
                self.faults["AtHoc 429 (Retry-After 1)"] += 1
            elif choice == 1:
                sim.fail_next(rng.randint(1, 2), status=503, kinds=("sync",))
                self.faults["AtHoc 503"] += 1
            elif choice == 2:
                sim.revoke_tokens()
                self.faults["AtHoc tokens revoked"] += 1
            elif choice == 3:
                sim.drop_next(1, kinds=("sync",))
                self.faults["AtHoc connection dropped before apply"] += 1
            elif choice == 4:
                sim.drop_next(1, kinds=("sync",), after_apply=True)
                self.faults["AtHoc connection dropped after apply"] += 1
            elif choice == 5:
                sim.fail_next(1, status=503, kinds=("token",))
                self.faults["AtHoc token endpoint 503"] += 1
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
        time.sleep(self.cfg.kill_after)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            busy = [w for w in list(self.workers) if w.alive and w.in_batch]
            if not busy:
                time.sleep(0.02)
                continue
            victim = self.rng.choice(busy)
            time.sleep(self.rng.uniform(0.0, 0.3))
            if not victim.in_batch:
                continue
            phase, lease = victim.last_event, self._lease_state()
            victim.kill()
            self.stats["kill"] = {"worker": victim.label, "mid_batch": True, "last_event": phase, "lease": lease}
            self.note(f"SIGKILL {victim.label} mid-batch (last event {phase}, lock lease {lease})")
            self._replaced.add(victim.label)
            self._spawn(victim.mode)
            return
        victim = self._ingest_workers()[0]
        victim.kill()
        self.stats["kill"] = {"worker": victim.label, "mid_batch": False, "last_event": victim.last_event}
        self.note(f"SIGKILL {victim.label} (no batch seen running within 30 s)")
        self._replaced.add(victim.label)
        self._spawn(victim.mode)

    def _restarter(self) -> None:
        time.sleep(self.cfg.restart_after)
        # Prefer restarting while a batch runs, so a lock holder sees its storage vanish mid-batch.
        wait_until = time.monotonic() + 8
        while time.monotonic() < wait_until and not any(w.alive and w.in_batch for w in list(self.workers)):
            time.sleep(0.02)
        started = time.monotonic()
        busy = [w.label for w in self.workers if w.alive and w.in_batch]
        self.azurite.restart()
        self.stats["azurite_restart"] = {"seconds": round(time.monotonic() - started, 2), "batches_running": busy}
        self.note(f"Azurite restarted in {time.monotonic() - started:.1f} s (batches running: {busy})")
        # A host whose worker died with the storage would be restarted by the platform; ours survive.
        for worker in list(self.workers):
            if not worker.alive and worker.mode in ("ingest", "sweep") and worker.label not in self._replaced:
                self._replaced.add(worker.label)
                self.note(f"{worker.label} exited (code {worker.proc.returncode}); starting a new one")
                self._spawn(worker.mode)

    # -- the whole run --
    def run(self) -> dict[str, Any]:
        from azure.storage.blob import BlobServiceClient

        from shared.pipeline import drain
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
            self.note("uploads finished, faults stopped")
            self._settle(drain)
            return self._check()
        finally:
            for worker in list(self.workers):
                if worker.alive:
                    worker.kill()
            self.sim.stop()
            self.azurite.cleanup()

    def _settle(self, drain: Any) -> None:
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
        finals = []
        for _ in range(10):
            report = drain(self.runtime, trigger="chaos-final", wait_for_lock=self.cfg.lease_seconds + 15)
            finals.append({k: v for k, v in report.counts().items() if v} | {"errors": report.errors[:5]})
            if not self.runtime.storage.list_incoming():
                break
        self.stats["final_drains"] = finals
        self.note(f"final drain: {len(finals)} run(s)")

    def _check(self) -> dict[str, Any]:
        runtime, settings = self.runtime, self.runtime.settings
        problems: list[str] = []

        def blobs(container: str) -> dict[str, bytes]:
            client = runtime.storage.container(container)
            return {b.name: client.download_blob(b.name).readall() for b in client.list_blobs()}

        incoming = blobs(settings.incoming_container)
        processed = blobs(settings.processed_container)
        failed = blobs(settings.failed_container)
        if incoming:
            problems.append(f"{len(incoming)} file(s) still in incoming: {sorted(incoming)[:10]}")
        for name in sorted(failed):
            meta = runtime.storage.container(settings.failed_container).get_blob_client(name).get_blob_properties()
            problems.append(f"file in failed: {name}: {meta.metadata.get('error', '?')}")
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
        regressions = []
        for employee in self.source.employees:
            regressions += self.source.history_problems(employee, self.sim.history(login_of(employee)))
        if regressions:
            problems.append(f"{len(regressions)} history regression(s): {regressions[:10]}")
        self._dump(regressions, wrong)
        raised = [e for e in self.events if e.get("event") == "invocation_error"]
        if raised:
            problems.append(f"{len(raised)} invocation(s) raised: {[e['error'] for e in raised[:5]]}")
            self.stats["invocation_errors"] = raised[:5]

        if "kill" not in self.stats:
            problems.append("no worker was killed")
        if "azurite_restart" not in self.stats:
            problems.append("Azurite was not restarted")

        kinds = Counter(e.get("event") for e in self.events)
        writes = sum(len(h) for h in (self.sim.history(login_of(e)) for e in self.source.employees))
        return {
            "config": asdict(self.cfg),
            "seconds": round(time.monotonic() - self.t0, 1),
            "files_uploaded": len(self.uploaded),
            "uploads": self.cfg.files,
            "rows": self.source.kinds["rows"],
            "older_rows": self.source.kinds["older"],
            "processed_blobs": len(processed),
            "failed_blobs": len(failed),
            "names_with_several_copies": extra_copies,
            "athoc_requests": self.sim.counts(),
            "athoc_duty_writes": writes,
            "faults": dict(self.faults),
            "worker_events": {k: v for k, v in kinds.items() if k},
            "lock_lost_events": kinds.get("lock_lost", 0),
            "notes": self.notes,
            **self.stats,
            "problems": problems,
            "ok": not problems,
        }

    def _dump(self, regressions: list[str], wrong: list[str]) -> None:
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
                        "port": request.client_port,
                        "status": request.status,
                        "fault": request.fault,
                        "rows": rows,
                    }
                )
        timeline = {
            e: [f"{ev.time} {ev.action} created {ev.created}" for ev in sorted(self.source.events[e])] for e in suspects
        }
        files_with = {
            login_of(e): [n for n, body in self.uploaded.items() if f",{e:05d}," in body.decode()] for e in suspects
        }
        dump = {
            "seed": self.cfg.seed,
            "notes": self.notes,
            "regressions": regressions,
            "wrong": wrong,
            "timelines": timeline,
            "files_with": files_with,
            "syncs": syncs,
            "worker_events": [
                {**e, "t": round(e["t"] - self.wall_t0, 3)} for e in self.events if e.get("event") != "ready"
            ],
        }
        path = self.log_dir / f"chaos-{self.cfg.seed}.json"
        path.write_text(json.dumps(dump, indent=1, default=str))
        self.stats["diagnostics"] = str(path)


def run_chaos(size: str = "test", *, seed: int = 0, log_dir: Path | None = None) -> dict[str, Any]:
    cfg = ChaosConfig(**{**asdict(SIZES[size]), "seed": seed or random.randrange(1, 10**6)})
    return ChaosRun(cfg, log_dir=log_dir).run()
